/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What the unit files share: session-unit.c (members, group requests,
 * selecting, scheduling), session-unit-erase.c (checks, erase) and
 * session-unit-stream.c (stream, verify, repair, commits). Not for use
 * outside them.
 */

#include "session-internal.h"

#define BLOCK_SIZE 64u
#define BLOCKS_PER_SECTOR (ISP_SECTOR_SIZE / BLOCK_SIZE)
/* An adapted CRC deadline is never shorter than this. */
#define UNIT_MIN_CRC_TIMEOUT_USEC (20 * USEC_PER_MSEC)
/* Nor one learnt from a CONNECT's round trip. */
#define UNIT_MIN_FAST_TIMEOUT_USEC (25 * USEC_PER_MSEC)

static inline uint64_t max_u64(uint64_t a, uint64_t b) {
        return a > b ? a : b;
}

static inline uint64_t min_u64(uint64_t a, uint64_t b) {
        return a < b ? a : b;
}

static inline bool sectors_equal(const struct plan_sectors *a, const struct plan_sectors *b) {
        return memcmp(a->map, b->map, sizeof(a->map)) == 0;
}

static inline unsigned sectors_count(const struct plan_sectors *set) {
        unsigned n = 0;

        for (unsigned i = 0; i < ISP_SECTORS; i++)
                n += plan_sectors_test(set, i);
        return n;
}

/* session-unit.c */
bool unit_running(const struct session *s);
void unit_phase(struct session *s, enum session_phase phase);
void unit_progress(struct session *s, uint64_t done, uint64_t total);
void fail_member(struct session *s, struct session_target *t, enum session_reason reason, uint32_t offset,
                 const char *what);
int unit_send(struct session *s, const struct isp_can_frame *frame);
int unit_send_request(struct session *s, const struct isp_request *req);
void batch_begin(struct session *s);
void batch_add(struct session *s, const struct isp_request *req);
bool batch_full(const struct session *s);
void batch_send(struct session *s);
void batch_drop_refusals(struct session *s);
void crc_request(struct isp_request *req, uint32_t offset, uint32_t length);
void start_select(struct session *s, enum unit_step then);

/* session-unit-erase.c */
void start_precheck(struct session *s);
void start_erase_entry(struct session *s);
void on_precheck_blank(struct session *s);
void on_precheck_image(struct session *s);
void on_erase_entry(struct session *s);
void on_erase_run(struct session *s);
void erase_poll(struct session *s);

/* session-unit-stream.c */
void start_stream(struct session *s);
void stream_poll(struct session *s);
void on_checkpoint(struct session *s, struct session_target *t, const struct isp_reply *r);
void on_stream_program(struct session *s, struct session_target *t, const struct isp_reply *r);
void checkpoint_timeouts(struct session *s);
void on_verify_runs(struct session *s);
void on_verify_sectors(struct session *s);
void on_locate(struct session *s);
void on_repair_erase(struct session *s);
void start_repair_round(struct session *s);
void members_poll(struct session *s);
