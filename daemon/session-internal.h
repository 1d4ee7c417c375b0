/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The protocol engine's insides, shared by session.c (life cycle, routing
 * replies and time to the targets, ending), session-connect.c (connecting,
 * conflicts, restarts) and session-flash.c (erase, program, verify,
 * commit, reboot). Not for use outside the engine.
 */

#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>

#include "plan.h"
#include "probe.h"
#include "session.h"
#include "transport.h"

#define USEC_PER_MSEC 1000ULL

#define APP_SECTORS ((ISP_FLASH_SIZE - (ISP_AREA_END - ISP_AREA_START)) / ISP_SECTOR_SIZE)     /* 248 */
#define SECTOR_OF(offset) ((offset) / ISP_SECTOR_SIZE)

#define SESSION_ERROR_MAX 512

enum step {
        STEP_IDLE,
        STEP_CONNECT,           /* CONNECT in flight */
        STEP_ENTER_ISP,         /* ENTER_ISP sent, waiting for ANNOUNCE */
        STEP_SETTLE,            /* connected, listening for conflicting answers */
        STEP_DESELECT,          /* conflict: CONNECT to an absent id, then fail */
        STEP_ERASE_ENTRY,       /* ERASE of the entry sector */
        STEP_ERASE_CHECK,       /* CRCs of the sectors the image leaves blank */
        STEP_ERASE_RUNS,        /* ERASE of sector runs */
        STEP_ERASE_ALL,         /* full ERASE */
        STEP_PROGRAM,
        STEP_VERIFY_CRC,
        STEP_VERIFY_READ,
        STEP_COMMIT_TARGET,     /* PROGRAM hh ll at 0x11001 */
        STEP_COMMIT_OPCODE,     /* PROGRAM 02 at 0x11000 */
        STEP_COMMIT_CHECK,      /* READ 0x11000 */
        STEP_REBOOT,
        STEP_DISCOVER,
        STEP_DONE,
};

/* Everything the session knows about one target node. A scan has one
 * target too: the broadcast id, standing for whoever answers. */
struct session_target {
        struct session *session;
        uint8_t id;                     /* 0: the legacy node */
        bool legacy;
        char *name;                     /* owned; as in messages */

        enum session_state state;
        enum session_reason reason;
        enum session_phase phase;
        enum step step;
        char error[SESSION_ERROR_MAX];
        uint32_t error_offset;
        bool reported;                  /* through ops->target_finished */

        uint64_t wait_deadline;         /* UINT64_MAX: none */
        uint64_t wait_usec;             /* its length, to re-arm on resume */
        uint8_t seen[32];               /* nodes reported through node_seen (not ANNOUNCE) */

        bool connected;
        struct isp_info info;
        unsigned window;
        unsigned connect_round;         /* 1, or 2 after ENTER_ISP */
        bool malformed_info;            /* it answered CONNECT, but not with an 8-byte INFO */
        bool entered_isp;
        unsigned restarts;
        bool erase_sent;                /* flash may have changed */

        struct transport tp;

        struct plan_sectors erase_set;  /* to erase after the entry sector */
        unsigned erase_cursor;          /* next sector to look at */
        unsigned n_dirty;               /* non-image sectors found not blank */
        struct probe probe;             /* blank check or CRC verify */

        uint32_t cursor;                /* PROGRAM: chunk index; READ verify: offset */
        uint64_t done, total;           /* progress within the phase */

        /* STEP_DESELECT */
        uint8_t conflict_node;          /* first extended node that answered */
        bool conflict_at_connect;       /* it answered the legacy CONNECT */
        uint8_t answered[32];           /* extended ids seen answering */
        uint8_t deselect_id;
        unsigned deselect_tries;
};

struct session {
        enum session_kind kind;
        enum session_state state;

        const struct isp_image *image;
        struct plan plan;               /* SESSION_FLASH only */
        struct session_config cfg;
        struct session_ops ops;
        void *userdata;

        struct session_stats stats;
        int send_error;                 /* the first failed ops->send */

        bool started;
        bool paused;
        bool finish_reported;

        uint64_t now;
        uint64_t seq;                   /* frames sent */

        struct session_target *targets; /* owned */
        unsigned n_targets;
};

static inline uint64_t ms_to_usec(uint64_t ms) {
        return ms * USEC_PER_MSEC;
}

static inline bool bit_test(const uint8_t *map, unsigned bit) {
        return (map[bit / 8] >> (bit % 8)) & 1;
}

static inline void bit_set(uint8_t *map, unsigned bit) {
        map[bit / 8] |= (uint8_t) (1u << (bit % 8));
}

static inline bool target_running(const struct session_target *t) {
        return t->state == SESSION_RUNNING;
}

/* session.c */
__attribute__((format(printf, 5, 6)))
void session_fail(struct session *s, struct session_target *t, enum session_reason reason, uint32_t offset,
                  const char *fmt, ...);
void session_succeed(struct session *s, struct session_target *t);
__attribute__((format(printf, 3, 4)))
void session_log(struct session *s, int level, const char *fmt, ...);
void session_ignore_reply(struct session *s, const struct session_target *t, const struct isp_reply *r,
                          const char *why);
void set_phase(struct session *s, struct session_target *t, enum session_phase phase);
void report_progress(struct session *s, struct session_target *t);
void report_node(struct session *s, struct session_target *t, uint8_t node, const struct isp_reply *r, bool announce);
int send_request_raw(struct session *s, struct session_target *t, const struct isp_request *req);
int target_request(struct session *s, struct session_target *t, const struct isp_request *req, uint64_t timeout_usec);
void target_reset_requests(struct session_target *t);
void set_wait(struct session *s, struct session_target *t, uint64_t usec);
void clear_wait(struct session_target *t);

/* session-connect.c */
void start_connect(struct session *s, struct session_target *t);
void connect_exhausted(struct session *s, struct session_target *t);
void on_target_connect_reply(struct session *s, struct session_target *t, const struct isp_reply *r);
void conflict_extended(struct session *s, struct session_target *t, const struct isp_reply *r);
void conflict_legacy(struct session *s, struct session_target *t, const struct isp_reply *r_or_null);
void on_target_announce(struct session *s, struct session_target *t);
void on_connect_wait_expired(struct session *s, struct session_target *t);
void connect_resume(struct session *s, struct session_target *t);

/* session-flash.c */
void start_erase(struct session *s, struct session_target *t);
void start_reboot(struct session *s, struct session_target *t);
void fail_unanswered(struct session *s, struct session_target *t, const struct pending *p);
void on_target_reply(struct session *s, struct session_target *t, struct pending *p, const struct isp_reply *r);
