/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The protocol engine: units. A unit is a set of extended nodes (with CRC
 * and sector erase) selected together and flashed together:
 *
 * - a QUIET group, one node or many: the first member is selected with
 *   QUIET (JOIN clear: everyone else is deselected), the others with
 *   JOIN|QUIET (protocol.md 4.1). Requests then reach every member, and
 *   every member answers ERASE and CRC (replies carry the node id and
 *   arbitrate), but not a PROGRAM that succeeded: one PROGRAM stream
 *   programs them all.
 * - one node without QUIET: the same steps, PROGRAM frames acknowledged
 *   in a window (the transport, as in session-flash.c).
 *
 * The steps, in the order the commit rule (protocol.md 9) needs:
 *
 *   select → check (read-only: the sectors the image leaves blank, and,
 *   unless cfg.full, every image sector: which already hold the image,
 *   which are blank) → erase the entry sector on every member, once the
 *   conflict-listening time after CONNECT is over → erase what each
 *   member needs (members whose sets differ are selected class by class)
 *   → one PROGRAM stream of the sectors any member needs → verify every
 *   member by CRC → then member by member, selected alone: repair the
 *   sectors verify found short (a CRC per 64-byte block finds the lost
 *   frames, which are sent again; the last round erases and rewrites the
 *   sector), commit, reboot.
 *
 * A member that does not answer, answers with a failure status or
 * restarts leaves the unit; the others go on.
 *
 * The stream is paced by checkpoints: after every cfg.stream_frames
 * PROGRAM frames a CONNECT JOIN|QUIET to one member (in turn), answered
 * only by that member and only after everything before it (protocol.md
 * 4), changing nothing. At most cfg.stream_checkpoints are unanswered.
 * READ or CRC would do the same but draw an answer from every member.
 *
 * A group request (ERASE, or a batch of CRCs answered in order) waits for
 * every member's answers; a member short of answers at the deadline gets
 * the batch again (everyone answers again, answers are collected anew),
 * at most cfg.retries times. CRC deadlines adapt to the answer times seen
 * (the node's CRC speed and the bus), so a lost request costs little.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isp-crc32.h"
#include "session-internal.h"

#define BLOCK_SIZE 64u
#define BLOCKS_PER_SECTOR (ISP_SECTOR_SIZE / BLOCK_SIZE)
/* An adapted CRC deadline is never shorter than this. */
#define UNIT_MIN_CRC_TIMEOUT_USEC (20 * USEC_PER_MSEC)
/* Nor one learnt from a CONNECT's round trip. */
#define UNIT_MIN_FAST_TIMEOUT_USEC (25 * USEC_PER_MSEC)

static uint64_t max_u64(uint64_t a, uint64_t b) {
        return a > b ? a : b;
}

static uint64_t min_u64(uint64_t a, uint64_t b) {
        return a < b ? a : b;
}

bool target_unit_capable(const struct session *s, const struct session_target *t) {
        const uint8_t need = ISP_CAP_CRC | ISP_CAP_SECTOR_ERASE;

        return s->kind == SESSION_FLASH && !t->legacy && t->connected && (t->info.capabilities & need) == need;
}

bool target_quiet_capable(const struct session *s, const struct session_target *t) {
        return target_unit_capable(s, t) && s->cfg.quiet && (t->info.capabilities & ISP_CAP_QUIET);
}

static bool unit_running(const struct session *s) {
        return s->unit.step != U_IDLE && s->unit.step != U_DONE;
}

static void unit_phase(struct session *s, enum session_phase phase) {
        struct unit *u = &s->unit;

        for (unsigned i = 0; i < u->n; i++)
                set_phase(s, u->m[i], phase);
}

static void unit_progress(struct session *s, uint64_t done, uint64_t total) {
        struct unit *u = &s->unit;

        for (unsigned i = 0; i < u->n; i++) {
                u->m[i]->done = done;
                u->m[i]->total = total;
                report_progress(s, u->m[i]);
        }
}

/* ------------------------------------------------------------------------ */
/* Members */

static void remove_member(struct unit *u, struct session_target *t) {
        for (unsigned i = 0; i < u->n; i++)
                if (u->m[i] == t) {
                        memmove(u->m + i, u->m + i + 1, (u->n - i - 1) * sizeof(*u->m));
                        u->n--;
                        return;
                }
}

/* `t` ended or restarted: it is no longer a member. Nothing is sent from
 * here; session_schedule() carries on with the others. */
void unit_member_gone(struct session *s, struct session_target *t) {
        struct unit *u = &s->unit;

        if (!t->in_unit)
                return;
        t->in_unit = false;
        remove_member(u, t);
        /* its checkpoints are no one's now */
        for (unsigned i = 0; i < u->n_ckpt;)
                if (u->ckpt[i].node == t->id) {
                        memmove(u->ckpt + i, u->ckpt + i + 1, (u->n_ckpt - i - 1) * sizeof(*u->ckpt));
                        u->n_ckpt--;
                } else
                        i++;
}

static void fail_member(struct session *s, struct session_target *t, enum session_reason reason, uint32_t offset,
                        const char *what) {
        session_fail(s, t, reason, offset, "%s: %s", t->name, what);
}

/* ------------------------------------------------------------------------ */
/* Sending */

static int unit_send(struct session *s, const struct isp_can_frame *frame) {
        struct unit *u = &s->unit;
        char buf[ISP_FRAME_STRING_MAX];
        int r;

        r = s->ops.send(s->userdata, frame);
        if (r < 0) {
                if (s->send_error == 0)
                        s->send_error = r;
                while (u->n > 0) {
                        struct session_target *t = u->m[0];

                        unit_member_gone(s, t);
                        session_fail(s, t, SESSION_REASON_LINK, 0, "%s: cannot send %s on the bus: %s",
                                     t->name, isp_frame_to_string(frame, buf), strerror(-r));
                }
                return r;
        }
        s->stats.frames_sent++;
        s->seq++;
        return 0;
}

static int unit_send_request(struct session *s, const struct isp_request *req) {
        struct isp_can_frame f;

        if (isp_request_build(req, &f) < 0)
                return -EINVAL;
        return unit_send(s, &f);
}

/* ------------------------------------------------------------------------ */
/* Group requests: an ERASE, or a batch of CRCs */

static void batch_begin(struct session *s) {
        struct unit *u = &s->unit;

        u->batch_gen++;
        u->n_req = 0;
        u->req_timeout = 0;
        u->req_extra = 0;
        u->req_tries = 0;
        u->req_retransmitted = false;
        u->req_out = false;
}

static uint64_t crc_allowance(const struct session *s, uint32_t length) {
        return ms_to_usec((uint64_t) ((length + ISP_SECTOR_SIZE - 1) / ISP_SECTOR_SIZE) * SESSION_CRC_MS_PER_SECTOR);
}

static void batch_add(struct session *s, const struct isp_request *req) {
        struct unit *u = &s->unit;

        u->req[u->n_req] = *req;
        (void) isp_request_build(req, &u->frame[u->n_req]);
        if (req->cmd == ISP_CMD_ERASE)
                u->req_timeout += ms_to_usec(s->cfg.timeout_ms +
                                             (uint64_t) (req->u.erase.whole ? APP_SECTORS : req->u.erase.count) *
                                             s->cfg.erase_timeout_ms);
        else
                u->req_timeout += crc_allowance(s, req->u.crc.length);
        u->n_req++;
}

static bool batch_full(const struct session *s) {
        return s->unit.n_req >= s->unit.window;
}

static uint64_t batch_crc_sectors(const struct unit *u) {
        uint64_t n = 0;

        for (unsigned i = 0; i < u->n_req; i++)
                if (u->req[i].cmd == ISP_CMD_CRC)
                        n += (u->req[i].u.crc.length + ISP_SECTOR_SIZE - 1) / ISP_SECTOR_SIZE + 1;
        return n;
}

/* The deadline of the batch: for CRCs, from the answer times seen (a
 * learnt time per sector, times four), never beyond the configured
 * time-out; for ERASE the configured time-outs. */
static uint64_t batch_timeout(const struct session *s) {
        const struct unit *u = &s->unit;
        uint64_t configured;

        if (u->req[0].cmd != ISP_CMD_CRC)
                return u->req_timeout;
        configured = ms_to_usec(s->cfg.timeout_ms) + u->req_timeout;
        if (u->usec_per_sector == 0)
                return configured;
        return min_u64(configured, max_u64(UNIT_MIN_CRC_TIMEOUT_USEC,
                                           4 * u->usec_per_sector * batch_crc_sectors(u)));
}

static bool batch_may_send(const struct session *s) {
        const struct unit *u = &s->unit;

        if (s->now < u->holdoff_until)
                return false;
        if (u->n_req > 0 && u->req[0].cmd == ISP_CMD_ERASE)
                for (unsigned i = 0; i < u->n; i++)
                        if (s->now < u->m[i]->settle_until)
                                return false;
        return true;
}

/* Sends the batch now, or leaves it for unit_poll() when it must wait
 * (hold-off, conflict listening). */
static void batch_send(struct session *s) {
        struct unit *u = &s->unit;

        if (u->n_req == 0 || u->req_out || !batch_may_send(s))
                return;
        for (unsigned i = 0; i < u->n; i++) {
                u->m[i]->batch_n = 0;
                if (u->req[0].cmd == ISP_CMD_ERASE)
                        u->m[i]->erase_sent = true;
        }
        for (unsigned i = 0; i < u->n_req; i++)
                if (unit_send(s, &u->frame[i]) < 0)
                        return;
        u->req_out = true;
        u->req_sent_at = s->now;
        u->req_deadline = s->now + batch_timeout(s) + (u->req_tries == 0 ? u->req_extra : 0);
}

static uint64_t batch_wait_until(const struct session *s) {
        const struct unit *u = &s->unit;
        uint64_t t = u->holdoff_until;

        if (u->n_req > 0 && u->req[0].cmd == ISP_CMD_ERASE)
                for (unsigned i = 0; i < u->n; i++)
                        t = max_u64(t, u->m[i]->settle_until);
        return t;
}

static bool batch_complete(const struct session *s) {
        const struct unit *u = &s->unit;

        if (!u->req_out)
                return false;
        for (unsigned i = 0; i < u->n; i++)
                if (u->m[i]->batch_n < u->n_req)
                        return false;
        return true;
}

static void batch_answer(struct session *s, struct session_target *t, const struct isp_reply *r) {
        struct unit *u = &s->unit;
        unsigned k = t->batch_n;

        if (!u->req_out || k >= u->n_req || u->req[k].cmd != r->cmd) {
                session_ignore_reply(s, t, r, "matches no group request in flight");
                return;
        }
        t->batch_status[k] = r->status;
        t->batch_crc[k] = r->cmd == ISP_CMD_CRC ? r->u.crc : 0;
        t->batch_n++;
}

/* Keep the first `keep` requests of the batch and move the step's cursor
 * back to the first one dropped, which is then asked again later. */
static bool batch_rewind(struct session *s, unsigned keep) {
        struct unit *u = &s->unit;
        const struct isp_request *q = &u->req[keep];

        if (q->cmd != ISP_CMD_CRC)
                return false;
        switch (u->step) {
        case U_PRECHECK_IMAGE:
        case U_VERIFY_RUNS:
        case U_VERIFY_SECTORS:
        case U_REPAIR_CHECK:
                u->cursor = SECTOR_OF(q->u.crc.offset);
                break;
        case U_REPAIR_LOCATE:
                u->cursor = q->u.crc.offset / BLOCK_SIZE;
                break;
        default:
                return false;
        }
        u->n_req = keep;
        u->req_timeout = 0;
        for (unsigned i = 0; i < keep; i++)
                u->req_timeout += crc_allowance(s, u->req[i].u.crc.length);
        return true;
}

/* The deadline passed with members short of answers. */
static void batch_timeout_expired(struct session *s) {
        struct unit *u = &s->unit;
        char a[ISP_ADDR_STRING_MAX];

        s->stats.timeouts++;
        if (u->req_tries < s->cfg.retries) {
                if (u->n_req > 1 && batch_rewind(s, u->n_req / 2))
                        /* fewer at a time from now on */
                        u->window = u->n_req;
                u->req_tries++;
                u->req_retransmitted = true;
                s->stats.retransmissions++;
                for (unsigned i = 0; i < u->n; i++)
                        if (u->m[i]->batch_n < u->n_req)
                                u->m[i]->retransmissions++;
                u->req_out = false;
                batch_send(s);
                return;
        }

        /* Whoever is still short fails alone. */
        for (unsigned i = 0; i < u->n;) {
                struct session_target *t = u->m[i];
                const struct isp_request *q = &u->req[t->batch_n < u->n_req ? t->batch_n : 0];
                char what[160];

                if (t->batch_n >= u->n_req) {
                        i++;
                        continue;
                }
                if (q->cmd == ISP_CMD_ERASE)
                        snprintf(what, sizeof(what), "ERASE at %s not answered after %u retransmissions",
                                 isp_offset_to_string(q->u.erase.offset, a), u->req_tries);
                else
                        snprintf(what, sizeof(what), "CRC at %s not answered after %u retransmissions",
                                 isp_offset_to_string(q->u.crc.offset, a), u->req_tries);
                unit_member_gone(s, t);
                fail_member(s, t, SESSION_REASON_NO_REPLY, q->cmd == ISP_CMD_ERASE ? q->u.erase.offset : q->u.crc.offset,
                            what);
        }
}

/* A batch is answered by everyone: learn the answer time, arm the
 * hold-off after a retransmission. */
static void batch_done(struct session *s) {
        struct unit *u = &s->unit;
        uint64_t sectors = batch_crc_sectors(u);

        u->req_out = false;
        if (u->req_retransmitted) {
                /* an answer to the first transmission may still come */
                u->holdoff_until = s->now + batch_timeout(s);
                return;
        }
        if (sectors > 0 && u->req[0].cmd == ISP_CMD_CRC && u->req_extra == 0) {
                uint64_t per = (s->now - u->req_sent_at) / sectors + 1;

                u->usec_per_sector = u->usec_per_sector == 0 ? per : (3 * u->usec_per_sector + per) / 4;
        }
}

/* A member answered a request of the batch with a failure status: it
 * fails alone. Returns true if it did. */
static bool member_refused(struct session *s, struct session_target *t, unsigned k) {
        const struct isp_request *q = &s->unit.req[k];
        char range[40], what[200];

        if (t->batch_status[k] == ISP_STATUS_OK)
                return false;
        if (q->cmd == ISP_CMD_ERASE) {
                format_sectors(range, sizeof(range), SECTOR_OF(q->u.erase.offset), q->u.erase.count);
                snprintf(what, sizeof(what), "ERASE of %s failed with status %u: %s", range,
                         t->batch_status[k], isp_status_to_string(t->batch_status[k]));
        } else {
                char a[ISP_ADDR_STRING_MAX];
                snprintf(what, sizeof(what), "CRC at %s failed with status %u: %s",
                         isp_offset_to_string(q->u.crc.offset, a), t->batch_status[k],
                         isp_status_to_string(t->batch_status[k]));
        }
        unit_member_gone(s, t);
        fail_member(s, t, SESSION_REASON_REFUSED, q->cmd == ISP_CMD_ERASE ? q->u.erase.offset : q->u.crc.offset, what);
        return true;
}

/* Drop the members that refused any request of the batch. */
static void batch_drop_refusals(struct session *s) {
        struct unit *u = &s->unit;

        for (unsigned i = 0; i < u->n;) {
                struct session_target *t = u->m[i];
                bool refused = false;

                for (unsigned k = 0; k < u->n_req && !refused; k++)
                        refused = member_refused(s, t, k);
                if (!refused)
                        i++;
        }
}

static void crc_request(struct isp_request *req, uint32_t offset, uint32_t length) {
        *req = (struct isp_request) { .cmd = ISP_CMD_CRC, .u.crc = { .offset = offset, .length = length } };
}

/* ------------------------------------------------------------------------ */
/* Selecting */

static void start_precheck(struct session *s);
static void start_stream(struct session *s);
static void start_erase_classes(struct session *s);
static void start_members(struct session *s);
static void start_repair_round(struct session *s);
static void next_repair_round(struct session *s);

static void select_send(struct session *s, struct session_target *t, bool first) {
        struct isp_request req = {
                .cmd = ISP_CMD_CONNECT,
                .u.connect = {
                        .target = t->id,
                        .with_flags = s->unit.quiet || !first,
                        .flags = (uint8_t) ((s->unit.quiet ? ISP_CONNECT_QUIET : 0) | (first ? 0 : ISP_CONNECT_JOIN)),
                },
        };

        t->selected = false;
        (void) target_request(s, t, &req, ms_to_usec(s->cfg.timeout_ms));
}

/* Select `members` of the unit (the first alone, the others joining) and
 * go on with `then`. */
static void start_select(struct session *s, enum unit_step then) {
        struct unit *u = &s->unit;

        u->after_select = then;
        for (unsigned i = 0; i < u->n; i++)
                u->m[i]->selected = false;
        u->step = U_SELECT_FIRST;
        if (u->n > 0)
                select_send(s, u->m[0], true);
}

static void select_poll(struct session *s) {
        struct unit *u = &s->unit;

        if (u->step == U_SELECT_FIRST) {
                if (u->n == 0)
                        return;
                if (!u->m[0]->selected) {
                        /* the first one left (restarted): the next is first now */
                        if (u->m[0]->tp.n_pend == 0)
                                select_send(s, u->m[0], true);
                        return;
                }
                u->step = U_SELECT_REST;
                for (unsigned i = 1; i < u->n; i++)
                        select_send(s, u->m[i], false);
        }
        for (unsigned i = 0; i < u->n; i++)
                if (!u->m[i]->selected)
                        return;

        switch (u->after_select) {
        case U_PRECHECK_BLANK:
                start_precheck(s);
                return;
        case U_ERASE:
                u->step = U_ERASE;
                u->erase_cursor = 0;
                return;
        case U_STREAM:
                start_stream(s);
                return;
        case U_REPAIR_LOCATE:
                start_repair_round(s);
                return;
        default:
                return;
        }
}

static void on_select_reply(struct session *s, struct session_target *t, const struct isp_reply *r) {
        enum transport_miss miss;
        struct pending *p;

        p = transport_match(&t->tp, r, s->now, &miss);
        if (!p) {
                session_ignore_reply(s, t, r, "with no CONNECT in flight");
                return;
        }
        transport_done(&t->tp, p, s->now);
        if (r->u.info.version != ISP_PROTOCOL_VERSION) {
                unit_member_gone(s, t);
                session_fail(s, t, SESSION_REASON_PROTOCOL, 0,
                             "%s answered CONNECT with ISP protocol version %u, stcispd speaks version %u",
                             t->name, r->u.info.version, ISP_PROTOCOL_VERSION);
                return;
        }
        t->selected = true;
}

/* ------------------------------------------------------------------------ */
/* Checking before the erase */

static uint32_t expect_blank_crc(const void *userdata, unsigned first, unsigned count) {
        (void) userdata;
        (void) first;
        return plan_blank_crc(count);
}

static void precheck_blank_next(struct session *s);
static void precheck_image_next(struct session *s);

static void start_precheck(struct session *s) {
        struct unit *u = &s->unit;

        unit_phase(s, SESSION_PHASE_ERASE);
        for (unsigned i = 0; i < u->n; i++) {
                struct session_target *t = u->m[i];

                memset(&t->erase_set, 0, sizeof(t->erase_set));
                memset(&t->skip_set, 0, sizeof(t->skip_set));
                t->n_dirty = 0;
                t->done = 0;
                t->total = APP_SECTORS;
                report_progress(s, t);
        }
        probe_init(&u->probe, &s->plan.blank_sectors, expect_blank_crc, NULL);
        u->step = U_PRECHECK_BLANK;
        precheck_blank_next(s);
}

static void precheck_blank_next(struct session *s) {
        struct unit *u = &s->unit;
        struct isp_request req;
        struct plan_run run;

        if (!probe_next(&u->probe, &run)) {
                u->step = U_PRECHECK_IMAGE;
                u->cursor = 0;
                precheck_image_next(s);
                return;
        }
        batch_begin(s);
        crc_request(&req, run.first * ISP_SECTOR_SIZE, run.count * ISP_SECTOR_SIZE);
        batch_add(s, &req);
        batch_send(s);
}

static void on_precheck_blank(struct session *s) {
        struct unit *u = &s->unit;
        struct probe_outcome o;
        struct plan_run run;
        uint32_t expected = 0, crc;
        bool all_match = true;

        (void) probe_next(&u->probe, &run);
        expected = plan_blank_crc(run.count);
        crc = expected;
        for (unsigned i = 0; i < u->n; i++)
                if (u->m[i]->batch_crc[0] != expected) {
                        all_match = false;
                        crc = u->m[i]->batch_crc[0];
                }
        (void) probe_answer(&u->probe, crc, &o);
        if (o.verdict == PROBE_MISMATCH)
                for (unsigned i = 0; i < u->n; i++)
                        if (u->m[i]->batch_crc[0] != expected) {
                                plan_sectors_add(&u->m[i]->erase_set, run.first);
                                u->m[i]->n_dirty++;
                        }
        if (all_match || o.verdict == PROBE_MISMATCH)
                for (unsigned i = 0; i < u->n; i++) {
                        u->m[i]->done += run.count;
                        report_progress(s, u->m[i]);
                }
        precheck_blank_next(s);
}

/* The image's sectors, the entry sector excepted (always erased and
 * written last): one CRC each, to tell those that already hold the image
 * (skipped) and those that are blank (programmed without an erase) from
 * the rest. With cfg.full, none is checked and all are erased. */
static void precheck_image_next(struct session *s) {
        struct unit *u = &s->unit;
        struct isp_request req;

        if (s->cfg.full) {
                struct plan_sectors image;

                plan_erase_sectors(&s->plan, &image);
                for (unsigned i = 0; i < u->n; i++)
                        plan_sectors_union(&u->m[i]->erase_set, &image);
                u->cursor = ISP_SECTORS;
        }

        batch_begin(s);
        for (; u->cursor < ISP_SECTORS && !batch_full(s); u->cursor++) {
                if (u->cursor == ENTRY_SECTOR || !plan_sectors_test(&s->plan.image_sectors, u->cursor))
                        continue;
                crc_request(&req, u->cursor * ISP_SECTOR_SIZE, ISP_SECTOR_SIZE);
                batch_add(s, &req);
        }
        if (u->n_req > 0) {
                batch_send(s);
                return;
        }

        /* Checked: what each member needs written, and what all need. */
        memset(&u->stream_set, 0, sizeof(u->stream_set));
        for (unsigned i = 0; i < u->n; i++) {
                struct session_target *t = u->m[i];

                t->write_set = s->plan.image_sectors;
                t->sectors_skipped = 0;
                for (unsigned sec = 0; sec < ISP_SECTORS; sec++)
                        if (plan_sectors_test(&t->skip_set, sec)) {
                                plan_sectors_remove(&t->write_set, sec);
                                t->sectors_skipped++;
                        }
                plan_sectors_union(&u->stream_set, &t->write_set);
        }

        batch_begin(s);
        req = (struct isp_request) {
                .cmd = ISP_CMD_ERASE,
                .u.erase = { .offset = ISP_ENTRY_OFFSET, .count = 1 },
        };
        batch_add(s, &req);
        u->step = U_ERASE_ENTRY;
        batch_send(s);
}

static void on_precheck_image(struct session *s) {
        struct unit *u = &s->unit;
        const uint32_t blank = plan_blank_crc(1);

        for (unsigned k = 0; k < u->n_req; k++) {
                unsigned sec = SECTOR_OF(u->req[k].u.crc.offset);
                uint32_t want = plan_expected_crc(&s->plan, sec, 1);

                for (unsigned i = 0; i < u->n; i++) {
                        struct session_target *t = u->m[i];

                        if (t->batch_crc[k] == want)
                                plan_sectors_add(&t->skip_set, sec);
                        else if (t->batch_crc[k] != blank)
                                plan_sectors_add(&t->erase_set, sec);
                }
        }
        precheck_image_next(s);
}

/* ------------------------------------------------------------------------ */
/* Erasing */

static bool sectors_equal(const struct plan_sectors *a, const struct plan_sectors *b) {
        return memcmp(a->map, b->map, sizeof(a->map)) == 0;
}

static unsigned sectors_count(const struct plan_sectors *set) {
        unsigned n = 0;

        for (unsigned i = 0; i < ISP_SECTORS; i++)
                n += plan_sectors_test(set, i);
        return n;
}

static void on_erase_entry(struct session *s) {
        struct unit *u = &s->unit;

        batch_drop_refusals(s);
        for (unsigned i = 0; i < u->n; i++) {
                u->m[i]->sectors_erased = 1;
                u->m[i]->done++;
                report_progress(s, u->m[i]);
        }
        start_erase_classes(s);
}

/* Members with the same erase set are a class; a class that is not the
 * whole unit is selected alone for its erase. */
static void start_erase_classes(struct session *s) {
        struct unit *u = &s->unit;

        for (unsigned i = 0; i < u->n; i++)
                u->m[i]->erase_handled = false;
        u->reselect = false;
        u->step = U_ERASE;
        u->class_active = false;
}

static void erase_poll(struct session *s) {
        struct unit *u = &s->unit;
        struct session_target *lead = NULL;
        struct isp_request req = { .cmd = ISP_CMD_ERASE };
        struct plan_run run;
        unsigned in_class = 0;

        if (u->req_out || u->n_req > 0)
                return;

        if (u->class_active) {
                if (plan_sectors_next_run(&u->class_set, &u->erase_cursor, 255, &run)) {
                        batch_begin(s);
                        req.u.erase.offset = run.first * ISP_SECTOR_SIZE;
                        req.u.erase.count = (uint8_t) run.count;
                        batch_add(s, &req);
                        batch_send(s);
                        return;
                }
                for (unsigned i = 0; i < u->n; i++)
                        if (sectors_equal(&u->m[i]->erase_set, &u->class_set))
                                u->m[i]->erase_handled = true;
                u->class_active = false;
                /* the class was the selection: give the unit back its members */
                if (u->n_class_saved > 0) {
                        u->n = 0;
                        for (unsigned i = 0; i < u->n_class_saved; i++)
                                if (u->class_saved[i]->in_unit)
                                        u->m[u->n++] = u->class_saved[i];
                        u->n_class_saved = 0;
                }
        }

        for (unsigned i = 0; i < u->n && !lead; i++)
                if (!u->m[i]->erase_handled)
                        lead = u->m[i];
        if (!lead) {
                if (u->reselect)
                        start_select(s, U_STREAM);
                else
                        start_stream(s);
                return;
        }

        u->class_set = lead->erase_set;
        u->erase_cursor = 0;
        u->class_active = true;
        for (unsigned i = 0; i < u->n; i++)
                in_class += sectors_equal(&u->m[i]->erase_set, &u->class_set);

        if (sectors_count(&u->class_set) == 0) {
                /* nothing to erase for them */
                u->erase_cursor = ISP_SECTORS;
                erase_poll(s);
                return;
        }
        if (in_class == u->n) {
                /* the whole unit: no selecting */
                erase_poll(s);
                return;
        }
        {
                /* select the class alone for its erase */
                memcpy(u->class_saved, u->m, u->n * sizeof(*u->m));
                u->n_class_saved = u->n;
                u->n = 0;
                for (unsigned i = 0; i < u->n_class_saved; i++)
                        if (sectors_equal(&u->class_saved[i]->erase_set, &u->class_set))
                                u->m[u->n++] = u->class_saved[i];
                u->reselect = true;
                start_select(s, U_ERASE);
        }
}

static void on_erase_run(struct session *s) {
        struct unit *u = &s->unit;
        unsigned count = u->req[0].u.erase.count;

        batch_drop_refusals(s);
        for (unsigned i = 0; i < u->n; i++) {
                u->m[i]->sectors_erased += count;
                u->m[i]->done += count;
                report_progress(s, u->m[i]);
        }
        u->n_req = 0;
}

/* ------------------------------------------------------------------------ */
/* The PROGRAM stream */

static bool chunk_wanted(const struct session *s, const struct plan_chunk *c) {
        const struct unit *u = &s->unit;
        unsigned first = SECTOR_OF(c->offset), last = SECTOR_OF(c->offset + c->len - 1);

        if (u->repairing) {
                const struct session_target *t = u->m[0];

                for (uint32_t o = c->offset; o < c->offset + c->len; o++) {
                        unsigned sec = SECTOR_OF(o), blk = (o % ISP_SECTOR_SIZE) / BLOCK_SIZE;

                        if (plan_sectors_test(&t->bad_set, sec) &&
                            (plan_sectors_test(&t->erase_bad, sec) || (t->bad_blocks[sec] >> blk) & 1))
                                return true;
                }
                return false;
        }
        return plan_sectors_test(&u->stream_set, first) || plan_sectors_test(&u->stream_set, last);
}

static void start_stream(struct session *s) {
        struct unit *u = &s->unit;

        u->step = U_STREAM;
        u->cursor = 0;
        u->since_ckpt = 0;
        u->n_ckpt = 0;
        u->unconfirmed = 0;
        u->bytes_sent = 0;
        u->stream_bytes = 0;
        u->final_sent = false;
        for (unsigned i = 0; i < s->plan.n_chunks; i++)
                if (chunk_wanted(s, &s->plan.chunks[i]))
                        u->stream_bytes += s->plan.chunks[i].len;

        unit_phase(s, u->repairing ? SESSION_PHASE_REPAIR : SESSION_PHASE_PROGRAM);
        for (unsigned i = 0; i < u->n; i++) {
                struct session_target *t = u->m[i];

                t->multicast = u->n_all > 1;
                target_reset_requests(t);
                if (!u->repairing) {
                        t->prog_total = u->stream_bytes;
                        t->prog_done = 0;
                        t->sectors_written = sectors_count(&t->write_set);
                }
                if (!u->quiet) {
                        unsigned depth = t->info.rx_depth > 0 ? t->info.rx_depth : 1;

                        t->window = depth < s->cfg.window ? depth : s->cfg.window;
                        if (t->window == 0)
                                t->window = 1;
                }
        }
        unit_progress(s, 0, u->stream_bytes);
}

static void send_checkpoint(struct session *s, bool final) {
        struct unit *u = &s->unit;
        struct session_target *t;
        struct unit_ckpt *c;
        struct isp_request req = { .cmd = ISP_CMD_CONNECT };

        if (u->n == 0 || u->n_ckpt >= UNIT_CKPT_MAX)
                return;
        t = u->m[u->rr++ % u->n];
        if (final)
                /* A READ, unlike the CONNECTs before it, answers only
                 * itself: the first READ answer ends the stream. */
                req = (struct isp_request) { .cmd = ISP_CMD_READ, .u.read.offset = ISP_ENTRY_OFFSET };
        else {
                req.u.connect.target = t->id;
                req.u.connect.with_flags = true;
                req.u.connect.flags = ISP_CONNECT_QUIET | ISP_CONNECT_JOIN;
        }

        c = &u->ckpt[u->n_ckpt];
        *c = (struct unit_ckpt) {
                .node = final ? 0 : t->id,     /* the READ is everyone's */
                .sent = s->now,
                .deadline = s->now + ms_to_usec(s->cfg.timeout_ms) + (u->unconfirmed + 1) * s->cfg.frame_us,
                .sends = 1,
                .bytes = u->bytes_sent,
                .final = final,
        };
        (void) isp_request_build(&req, &c->frame);
        u->n_ckpt++;
        u->since_ckpt = 0;
        (void) unit_send(s, &c->frame);
}

static void start_verify(struct session *s);

/* QUIET: send what the checkpoints allow. */
static void stream_fill_quiet(struct session *s) {
        struct unit *u = &s->unit;
        unsigned k = s->cfg.stream_frames > 0 ? s->cfg.stream_frames : 1;
        unsigned c_max = s->cfg.stream_checkpoints > 0 ? s->cfg.stream_checkpoints : 1;

        if (c_max > UNIT_CKPT_MAX)
                c_max = UNIT_CKPT_MAX;
        while (u->n > 0 && u->cursor < s->plan.n_chunks && u->n_ckpt < c_max) {
                const struct plan_chunk *c = &s->plan.chunks[u->cursor++];
                struct isp_request req = {
                        .cmd = ISP_CMD_PROGRAM,
                        .u.program = { .offset = c->offset, .len = c->len },
                };

                if (!chunk_wanted(s, c))
                        continue;
                memcpy(req.u.program.data, s->image->flash + c->offset, c->len);
                if (unit_send_request(s, &req) < 0)
                        return;
                u->bytes_sent += c->len;
                u->unconfirmed++;
                if (++u->since_ckpt >= k)
                        send_checkpoint(s, false);
        }
        if (u->n == 0 || u->cursor < s->plan.n_chunks)
                return;

        /* All sent: the program phase ends when a checkpoint after the
         * last frame is answered (or found lost: a later answer came). */
        if (!u->final_sent) {
                u->final_sent = true;
                send_checkpoint(s, true);
                return;
        }
        for (unsigned i = 0; i < u->n_ckpt; i++)
                if (u->ckpt[i].final)
                        return;         /* start_verify() comes with its answer */
        start_verify(s);
}

/* One node, acknowledged: the transport's window. */
static void stream_fill_acked(struct session *s) {
        struct unit *u = &s->unit;
        struct session_target *t;

        if (u->n == 0)
                return;
        t = u->m[0];
        while (target_running(t) && t->tp.n_pend < t->window && u->cursor < s->plan.n_chunks) {
                const struct plan_chunk *c = &s->plan.chunks[u->cursor++];
                struct isp_request req = {
                        .cmd = ISP_CMD_PROGRAM,
                        .u.program = { .offset = c->offset, .len = c->len },
                };

                if (!chunk_wanted(s, c))
                        continue;
                memcpy(req.u.program.data, s->image->flash + c->offset, c->len);
                if (target_request(s, t, &req, ms_to_usec(s->cfg.timeout_ms)) < 0)
                        return;
                u->bytes_sent += c->len;
        }
        if (target_running(t) && t->tp.n_pend == 0 && u->cursor >= s->plan.n_chunks)
                start_verify(s);
}

static void stream_poll(struct session *s) {
        if (s->unit.quiet)
                stream_fill_quiet(s);
        else
                stream_fill_acked(s);
}

static void report_stream_progress(struct session *s, uint64_t bytes) {
        struct unit *u = &s->unit;

        for (unsigned i = 0; i < u->n; i++) {
                struct session_target *t = u->m[i];

                if (!u->repairing && bytes > t->prog_done)
                        t->prog_done = bytes;
                t->done = bytes;
                t->total = u->stream_bytes;
                report_progress(s, t);
        }
}

/* Answered checkpoints leave from the front only: the stream waits for
 * the oldest, so the answer of the member with the highest id (which
 * loses every arbitration) is never starved by the stream. */
static void ckpt_pop_answered(struct unit *u) {
        unsigned k = 0;

        while (k < u->n_ckpt && u->ckpt[k].answered)
                k++;
        memmove(u->ckpt, u->ckpt + k, (u->n_ckpt - k) * sizeof(*u->ckpt));
        u->n_ckpt -= k;
}

static void on_checkpoint(struct session *s, struct session_target *t, const struct isp_reply *r) {
        struct unit *u = &s->unit;

        if (r->cmd == ISP_CMD_READ) {
                for (unsigned i = 0; i < u->n_ckpt; i++)
                        if (u->ckpt[i].final) {
                                /* the last frame is processed */
                                u->n_ckpt = 0;
                                if (u->step == U_STREAM)
                                        start_verify(s);
                                return;
                        }
                session_ignore_reply(s, t, r, "after the end of the stream");
                return;
        }
        for (unsigned i = 0; i < u->n_ckpt; i++) {
                if (u->ckpt[i].node != t->id || u->ckpt[i].answered || u->ckpt[i].final)
                        continue;
                /* everything before it is processed */
                if (u->step == U_STREAM)
                        report_stream_progress(s, u->ckpt[i].bytes);
                u->ckpt[i].answered = true;
                ckpt_pop_answered(u);
                return;
        }
        session_ignore_reply(s, t, r, "answers no checkpoint in flight");
}

static void checkpoint_timeouts(struct session *s) {
        struct unit *u = &s->unit;

        for (unsigned i = 0; i < u->n_ckpt;) {
                struct unit_ckpt *c = &u->ckpt[i];
                struct session_target *t = NULL;
                unsigned sends;

                if (c->answered || c->deadline > s->now) {
                        i++;
                        continue;
                }
                for (unsigned j = 0; j < u->n; j++)
                        if (u->m[j]->id == c->node)
                                t = u->m[j];
                s->stats.timeouts++;
                if (!c->final && (!t || t->last_heard > c->sent)) {
                        /* It answered later ones: this one was lost on its
                         * way (answers come in order). */
                        c->answered = true;
                        ckpt_pop_answered(u);
                        i = 0;
                        continue;
                }
                if (c->final && c->sends > s->cfg.retries) {
                        /* nobody answers the end of the stream: verify
                         * tells who is still there */
                        c->answered = true;
                        ckpt_pop_answered(u);
                        i = 0;
                        continue;
                }
                if (c->sends <= s->cfg.retries) {
                        c->sends++;
                        c->sent = s->now;
                        c->deadline = s->now + ms_to_usec(s->cfg.timeout_ms) + u->unconfirmed * s->cfg.frame_us;
                        s->stats.retransmissions++;
                        if (t)
                                t->retransmissions++;
                        if (unit_send(s, &c->frame) < 0)
                                return;
                        i++;
                        continue;
                }
                sends = c->sends;
                unit_member_gone(s, t);         /* drops its checkpoints: c is gone */
                session_fail(s, t, SESSION_REASON_NO_REPLY, 0,
                             "%s: fell behind the PROGRAM stream: no answer to a checkpoint after %u tries "
                             "(is it still powered?)", t->name, sends);
                i = 0;
        }
}

/* A PROGRAM answer in the stream: under QUIET only failures answer. */
static void on_stream_program(struct session *s, struct session_target *t, const struct isp_reply *r) {
        struct unit *u = &s->unit;
        enum transport_miss miss;
        struct pending *p, *q;
        uint64_t seq;

        if (u->quiet) {
                if (r->status == ISP_STATUS_OK) {
                        session_ignore_reply(s, t, r, "acknowledges a PROGRAM under QUIET");
                        return;
                }
                if (u->repairing && r->status == ISP_STATUS_WRITE_FAILED) {
                        /* not blank there: erase that sector next round */
                        plan_sectors_add(&t->erase_bad, SECTOR_OF(r->u.offset));
                        return;
                }
                unit_member_gone(s, t);
                fail_status(s, t, "PROGRAM", r->u.offset, r->status);
                return;
        }

        p = transport_match(&t->tp, r, s->now, &miss);
        if (!p) {
                session_ignore_reply(s, t, r, "matches no PROGRAM in flight");
                return;
        }
        if (r->status != ISP_STATUS_OK) {
                if (u->repairing && r->status == ISP_STATUS_WRITE_FAILED) {
                        plan_sectors_add(&t->erase_bad, SECTOR_OF(p->req.u.program.offset));
                        transport_done(&t->tp, p, s->now);
                        return;
                }
                unit_member_gone(s, t);
                fail_status(s, t, "PROGRAM", p->req.u.program.offset, r->status);
                return;
        }
        seq = p->seq;
        report_stream_progress(s, t->done + p->req.u.program.len);
        transport_done(&t->tp, p, s->now);
        q = transport_resend_before(&t->tp, seq, s->now, s->cfg.retries);
        if (q) {
                unit_member_gone(s, t);
                fail_unanswered(s, t, q);
        }
}

/* ------------------------------------------------------------------------ */
/* Verifying */

static uint32_t expect_image_crc(const struct session *s, uint32_t offset, uint32_t length) {
        uint8_t buf[BLOCK_SIZE];
        uint32_t crc = 0;

        if (length % ISP_SECTOR_SIZE == 0 && offset % ISP_SECTOR_SIZE == 0)
                return plan_expected_crc(&s->plan, SECTOR_OF(offset), length / ISP_SECTOR_SIZE);
        for (uint32_t o = offset; o < offset + length; o += sizeof(buf)) {
                uint32_t n = offset + length - o < sizeof(buf) ? offset + length - o : (uint32_t) sizeof(buf);

                for (uint32_t i = 0; i < n; i++)
                        buf[i] = (o + i >= ISP_ENTRY_OFFSET && o + i < ISP_ENTRY_OFFSET + ISP_ENTRY_SIZE)
                                 ? 0xFF : s->image->flash[o + i];
                crc = isp_crc32_update(crc, buf, n);
        }
        return crc;
}

static void verify_runs_next(struct session *s);
static void verify_sectors_next(struct session *s);

static void start_verify(struct session *s) {
        struct unit *u = &s->unit;

        /* everything sent is processed before the first CRC is answered */
        report_stream_progress(s, u->bytes_sent);
        if (!u->quiet && !s->cfg.verify && !u->repairing) {
                /* acknowledged, and asked not to verify (QUIET always
                 * verifies: that is how lost frames are found) */
                start_members(s);
                return;
        }
        if (u->repairing) {
                u->step = U_REPAIR_CHECK;
                u->cursor = 0;
                u->req_extra_pending = 0;
                verify_sectors_next(s);
                return;
        }
        unit_phase(s, SESSION_PHASE_VERIFY);
        u->verify_set = u->stream_set;
        memset(&u->suspect, 0, sizeof(u->suspect));
        for (unsigned i = 0; i < u->n; i++) {
                memset(&u->m[i]->bad_set, 0, sizeof(u->m[i]->bad_set));
                u->m[i]->done = 0;
                u->m[i]->total = (uint64_t) sectors_count(&u->verify_set) * ISP_SECTOR_SIZE;
                report_progress(s, u->m[i]);
        }
        u->step = U_VERIFY_RUNS;
        u->cursor = 0;
        u->req_extra_pending = 0;
        verify_runs_next(s);
}

static void verify_runs_next(struct session *s) {
        struct unit *u = &s->unit;
        struct isp_request req;
        struct plan_run run;

        batch_begin(s);
        u->req_extra = u->req_extra_pending;
        while (!batch_full(s) && plan_sectors_next_run(&u->verify_set, &u->cursor, ISP_SECTORS, &run)) {
                crc_request(&req, run.first * ISP_SECTOR_SIZE, run.count * ISP_SECTOR_SIZE);
                batch_add(s, &req);
        }
        if (u->n_req > 0) {
                u->req_extra_pending = 0;
                batch_send(s);
                return;
        }
        u->step = U_VERIFY_SECTORS;
        u->cursor = 0;
        verify_sectors_next(s);
}

static void on_verify_runs(struct session *s) {
        struct unit *u = &s->unit;

        batch_drop_refusals(s);
        for (unsigned k = 0; k < u->n_req; k++) {
                uint32_t want = expect_image_crc(s, u->req[k].u.crc.offset, u->req[k].u.crc.length);
                unsigned first = SECTOR_OF(u->req[k].u.crc.offset);
                unsigned count = u->req[k].u.crc.length / ISP_SECTOR_SIZE;

                for (unsigned i = 0; i < u->n; i++) {
                        if (u->m[i]->batch_crc[k] == want) {
                                u->m[i]->done += u->req[k].u.crc.length;
                                report_progress(s, u->m[i]);
                                continue;
                        }
                        for (unsigned sec = first; sec < first + count; sec++)
                                plan_sectors_add(&u->suspect, sec);
                }
        }
        verify_runs_next(s);
}

/* The sectors to check one by one: those of runs that differed
 * (verify), the ones repaired (repair check). */
static const struct plan_sectors *sector_check_set(const struct session *s) {
        return s->unit.repairing ? &s->unit.m[0]->bad_set : &s->unit.suspect;
}

static void verify_sectors_next(struct session *s) {
        struct unit *u = &s->unit;
        const struct plan_sectors *set;
        struct isp_request req;

        if (u->n == 0)
                return;
        set = sector_check_set(s);
        batch_begin(s);
        u->req_extra = u->req_extra_pending;
        for (; u->cursor < ISP_SECTORS && !batch_full(s); u->cursor++) {
                if (!plan_sectors_test(set, u->cursor))
                        continue;
                crc_request(&req, u->cursor * ISP_SECTOR_SIZE, ISP_SECTOR_SIZE);
                batch_add(s, &req);
        }
        if (u->n_req > 0) {
                u->req_extra_pending = 0;
                batch_send(s);
                return;
        }

        if (u->repairing) {
                struct session_target *t = u->m[0];

                if (sectors_count(&t->bad_set) == 0) {
                        /* repaired: its commit comes with the others' */
                        u->n = 0;
                        t->in_unit = false;
                        u->repairing = false;
                        u->step = U_MEMBERS;
                        return;
                }
                if (t->repair_round >= s->cfg.repair_rounds) {
                        char range[40];
                        unsigned sec = 0;

                        while (!plan_sectors_test(&t->bad_set, sec))
                                sec++;
                        format_sectors(range, sizeof(range), sec, 1);
                        unit_member_gone(s, t);
                        u->repairing = false;
                        u->step = U_MEMBERS;
                        session_fail(s, t, SESSION_REASON_VERIFY_FAILED, sec * ISP_SECTOR_SIZE,
                                     "%s: verify failed: sector %s still differs from the image after %u repair "
                                     "rounds (%u sectors short)", t->name, range, t->repair_round,
                                     sectors_count(&t->bad_set));
                        return;
                }
                next_repair_round(s);
                return;
        }
        start_members(s);
}

static void on_verify_sectors(struct session *s) {
        struct unit *u = &s->unit;

        batch_drop_refusals(s);
        for (unsigned k = 0; k < u->n_req; k++) {
                unsigned sec = SECTOR_OF(u->req[k].u.crc.offset);
                uint32_t want = plan_expected_crc(&s->plan, sec, 1);

                for (unsigned i = 0; i < u->n; i++) {
                        struct session_target *t = u->m[i];

                        if (t->batch_crc[k] != want) {
                                plan_sectors_add(&t->bad_set, sec);
                                continue;
                        }
                        if (u->repairing) {
                                plan_sectors_remove(&t->bad_set, sec);
                                plan_sectors_remove(&t->erase_bad, sec);
                                t->repairs++;
                        } else {
                                t->done += ISP_SECTOR_SIZE;
                                report_progress(s, t);
                        }
                }
        }
        verify_sectors_next(s);
}

/* ------------------------------------------------------------------------ */
/* Repairing one member */

static void locate_next(struct session *s);

/* A round: find the 64-byte blocks that differ, erase the sectors a
 * PROGRAM found not blank (status 2), send the blocks again, check the
 * sectors. */
static void start_repair_round(struct session *s) {
        struct unit *u = &s->unit;
        struct session_target *t = u->m[0];

        set_phase(s, t, SESSION_PHASE_REPAIR);
        memset(t->bad_blocks, 0, sizeof(t->bad_blocks));
        u->step = U_REPAIR_LOCATE;
        u->cursor = 0;
        u->erase_cursor_repair = 0;
        locate_next(s);
}

/* After a round that left sectors short: the next one, acknowledged
 * (frames lost again are then resent one by one), or give up. */
static void next_repair_round(struct session *s) {
        struct unit *u = &s->unit;
        struct session_target *t = u->m[0];

        t->repair_round++;
        if (u->quiet) {
                u->quiet = false;
                start_select(s, U_REPAIR_LOCATE);
                return;
        }
        start_repair_round(s);
}

static void locate_next(struct session *s) {
        struct unit *u = &s->unit;
        struct session_target *t = u->m[0];
        struct isp_request req;
        struct plan_run run;

        batch_begin(s);
        for (; u->cursor < ISP_SECTORS * BLOCKS_PER_SECTOR && !batch_full(s); u->cursor++) {
                unsigned sec = u->cursor / BLOCKS_PER_SECTOR, blk = u->cursor % BLOCKS_PER_SECTOR;

                if (!plan_sectors_test(&t->bad_set, sec) || plan_sectors_test(&t->erase_bad, sec))
                        continue;
                crc_request(&req, sec * ISP_SECTOR_SIZE + blk * BLOCK_SIZE, BLOCK_SIZE);
                batch_add(s, &req);
        }
        if (u->n_req > 0) {
                batch_send(s);
                return;
        }

        /* sectors to erase first */
        u->step = U_REPAIR_ERASE;
        if (plan_sectors_next_run(&t->erase_bad, &u->erase_cursor_repair, 255, &run)) {
                batch_begin(s);
                req = (struct isp_request) {
                        .cmd = ISP_CMD_ERASE,
                        .u.erase = { .offset = run.first * ISP_SECTOR_SIZE, .count = (uint8_t) run.count },
                };
                batch_add(s, &req);
                batch_send(s);
                return;
        }
        u->erase_cursor_repair = 0;
        start_stream(s);
}

static void on_locate(struct session *s) {
        struct unit *u = &s->unit;
        struct session_target *t = u->m[0];

        batch_drop_refusals(s);
        if (u->n == 0)
                return;
        for (unsigned k = 0; k < u->n_req; k++) {
                uint32_t o = u->req[k].u.crc.offset;

                if (t->batch_crc[k] != expect_image_crc(s, o, BLOCK_SIZE))
                        t->bad_blocks[SECTOR_OF(o)] |= (uint8_t) (1u << ((o % ISP_SECTOR_SIZE) / BLOCK_SIZE));
        }
        locate_next(s);
}

static void on_repair_erase(struct session *s) {
        struct unit *u = &s->unit;

        batch_drop_refusals(s);
        if (u->n == 0)
                return;
        u->m[0]->sectors_erased += u->req[0].u.erase.count;
        u->step = U_REPAIR_LOCATE;
        u->cursor = ISP_SECTORS * BLOCKS_PER_SECTOR;
        locate_next(s);
}

/* ------------------------------------------------------------------------ */
/* Member by member */

static void start_members(struct session *s) {
        struct unit *u = &s->unit;

        u->step = U_MEMBERS;
        u->next_member = 0;
        u->member_pass = 1;
        for (unsigned i = 0; i < u->n; i++)
                u->m[i]->in_unit = false;
        u->n = 0;
}

/* Pass 1 repairs the members verify found short, one by one; pass 2
 * commits and reboots them, one by one. No entry is written before every
 * member holds the whole image: a member that missed the CONNECT that
 * deselects it hears another's commit and REBOOT, which is harmless only
 * over a complete image. */
static void member_start(struct session *s, struct session_target *t) {
        struct unit *u = &s->unit;

        if (u->member_pass == 1) {
                if (sectors_count(&t->bad_set) == 0)
                        return;
                /* select it alone and repair it */
                u->m[0] = t;
                u->n = 1;
                t->in_unit = true;
                t->step = STEP_UNIT;
                t->repair_round = 1;
                u->repairing = true;
                u->quiet = target_quiet_capable(s, t);
                start_select(s, U_REPAIR_LOCATE);
                return;
        }
        t->unit_done = true;
        t->step = STEP_COMMIT_SELECT;
}

/* The commit of a member starts with a CONNECT to it alone, QUIET clear:
 * the commit's PROGRAMs are acknowledged. */
static void commit_select(struct session *s, struct session_target *t) {
        struct isp_request req = { .cmd = ISP_CMD_CONNECT, .u.connect.target = t->id };

        target_reset_requests(t);
        t->commit_selecting = true;
        (void) target_request(s, t, &req, ms_to_usec(s->cfg.timeout_ms));
}

void unit_commit_selected(struct session *s, struct session_target *t, const struct isp_reply *r) {
        enum transport_miss miss;
        struct pending *p;

        p = transport_match(&t->tp, r, s->now, &miss);
        if (!p) {
                session_ignore_reply(s, t, r, "with no CONNECT in flight");
                return;
        }
        /* The commit and reboot are a few small frames whose answers come
         * back at once: their time-out follows this round trip, so that
         * a lost one costs little. */
        if (p->sends == 1) {
                uint64_t rtt = s->now - (p->deadline - p->timeout_usec);

                t->fast_timeout_usec = min_u64(ms_to_usec(s->cfg.timeout_ms),
                                               max_u64(UNIT_MIN_FAST_TIMEOUT_USEC, 8 * rtt));
        }
        transport_done(&t->tp, p, s->now);
        t->commit_selecting = false;
        start_commit(s, t);
}

static void members_poll(struct session *s) {
        struct unit *u = &s->unit;

        for (;;) {
                struct session_target *t;

                if (u->repairing)
                        return;
                if (u->member_pass == 2 && u->next_member > 0) {
                        t = u->all[u->next_member - 1];
                        if (target_running(t) && t->step == STEP_COMMIT_SELECT && !t->commit_selecting) {
                                commit_select(s, t);
                                return;
                        }
                        if (target_running(t) && (t->unit_done || t->in_unit))
                                return;         /* still at it */
                }
                if (u->next_member >= u->n_all) {
                        if (u->member_pass == 1) {
                                u->member_pass = 2;
                                u->next_member = 0;
                                continue;
                        }
                        u->step = U_DONE;
                        return;
                }
                t = u->all[u->next_member++];
                if (!target_running(t) || t->step != STEP_UNIT)
                        continue;               /* failed, or restarted and waiting for its turn */
                member_start(s, t);
        }
}

/* ------------------------------------------------------------------------ */
/* Replies, time */

/* A reply from a member: true if the unit took it. */
bool unit_on_reply(struct session *s, struct session_target *t, const struct isp_reply *r) {
        struct unit *u = &s->unit;

        if (!t->in_unit || !unit_running(s))
                return false;
        t->last_heard = s->now;

        switch (r->cmd) {
        case ISP_CMD_CONNECT:
                if (u->step == U_SELECT_FIRST || u->step == U_SELECT_REST)
                        on_select_reply(s, t, r);
                else
                        on_checkpoint(s, t, r);
                return true;
        case ISP_CMD_PROGRAM:
                if (u->step == U_STREAM)
                        on_stream_program(s, t, r);
                else if (u->quiet && r->status != ISP_STATUS_OK && !u->repairing) {
                        /* a late failure of the stream */
                        unit_member_gone(s, t);
                        fail_status(s, t, "PROGRAM", r->u.offset, r->status);
                } else
                        session_ignore_reply(s, t, r, "after the PROGRAM stream");
                return true;
        case ISP_CMD_CRC:
        case ISP_CMD_ERASE:
                batch_answer(s, t, r);
                return true;
        case ISP_CMD_READ:
                on_checkpoint(s, t, r);
                return true;
        default:
                session_ignore_reply(s, t, r, "is not expected from a member now");
                return true;
        }
}

/* Carry the unit on as far as it goes without waiting. */
static void unit_poll(struct session *s) {
        struct unit *u = &s->unit;

        for (unsigned guard = 0; guard < 100000 && unit_running(s); guard++) {
                enum unit_step before = u->step;
                bool was_out = u->req_out;
                unsigned n_before = u->n;

                if (u->n == 0 && u->step != U_MEMBERS) {
                        if (u->repairing) {
                                u->repairing = false;
                                u->step = U_MEMBERS;
                                continue;
                        }
                        if (u->step < U_MEMBERS) {
                                u->step = U_MEMBERS;
                                u->next_member = 0;
                                continue;
                        }
                }

                if (batch_complete(s)) {
                        unsigned gen = u->batch_gen;

                        batch_done(s);
                        switch (u->step) {
                        case U_PRECHECK_BLANK:  on_precheck_blank(s); break;
                        case U_PRECHECK_IMAGE:  on_precheck_image(s); break;
                        case U_ERASE_ENTRY:     on_erase_entry(s); break;
                        case U_ERASE:           on_erase_run(s); break;
                        case U_VERIFY_RUNS:     on_verify_runs(s); break;
                        case U_VERIFY_SECTORS:
                        case U_REPAIR_CHECK:    on_verify_sectors(s); break;
                        case U_REPAIR_LOCATE:   on_locate(s); break;
                        case U_REPAIR_ERASE:    on_repair_erase(s); break;
                        default:                break;
                        }
                        if (u->batch_gen == gen && !u->req_out)
                                u->n_req = 0;   /* answered, and nothing new asked */
                        continue;
                }
                if (!u->req_out && u->n_req > 0 && batch_may_send(s)) {
                        batch_send(s);
                        if (u->req_out)
                                continue;
                }

                switch (u->step) {
                case U_SELECT_FIRST:
                case U_SELECT_REST:
                        select_poll(s);
                        break;
                case U_ERASE:
                        erase_poll(s);
                        break;
                case U_STREAM:
                        stream_poll(s);
                        break;
                case U_MEMBERS:
                        members_poll(s);
                        break;
                default:
                        break;
                }
                if (u->step == before && u->req_out == was_out && u->n == n_before)
                        return;
        }
}

uint64_t unit_deadline(const struct session *s) {
        const struct unit *u = &s->unit;
        uint64_t d = UINT64_MAX;

        if (!unit_running(s))
                return UINT64_MAX;
        if (u->req_out)
                d = u->req_deadline;
        else if (u->n_req > 0)
                d = batch_wait_until(s);
        for (unsigned i = 0; i < u->n_ckpt; i++)
                d = min_u64(d, u->ckpt[i].deadline);
        return d;
}

void unit_timeout(struct session *s) {
        struct unit *u = &s->unit;

        if (!unit_running(s))
                return;
        if (u->req_out && u->req_deadline <= s->now)
                batch_timeout_expired(s);
        checkpoint_timeouts(s);
}

/* The link came back: send the batch or checkpoints in flight again. */
void unit_resume(struct session *s) {
        struct unit *u = &s->unit;

        if (!unit_running(s))
                return;
        if (u->req_out) {
                u->req_out = false;
                u->req_retransmitted = true;
                batch_send(s);
        }
        for (unsigned i = 0; i < u->n_ckpt; i++) {
                u->ckpt[i].sent = s->now;
                u->ckpt[i].deadline = s->now + ms_to_usec(s->cfg.timeout_ms) + u->unconfirmed * s->cfg.frame_us;
                (void) unit_send(s, &u->ckpt[i].frame);
        }
}

/* ------------------------------------------------------------------------ */
/* Scheduling the targets */

void unit_start(struct session *s, struct session_target **members, unsigned n, bool quiet) {
        struct unit *u = &s->unit;
        unsigned window = UNIT_BATCH_MAX;

        memcpy(u->m, members, n * sizeof(*members));
        memcpy(u->all, members, n * sizeof(*members));
        u->n = u->n_all = n;
        u->quiet = quiet;
        u->repairing = false;
        u->holdoff_until = 0;
        u->usec_per_sector = 0;
        u->n_req = 0;
        u->req_out = false;
        u->n_ckpt = 0;
        u->n_class_saved = 0;
        u->erase_cursor_repair = 0;
        for (unsigned i = 0; i < s->n_targets; i++)
                s->targets[i].alone = false;
        for (unsigned i = 0; i < n; i++) {
                struct session_target *t = members[i];
                unsigned depth = t->info.rx_depth > 0 ? t->info.rx_depth : 1;

                if (depth < window)
                        window = depth;
                t->in_unit = true;
                t->unit_done = false;
                t->step = STEP_UNIT;
                t->sectors_erased = t->sectors_written = t->sectors_skipped = 0;
                t->repair_round = 0;
                memset(&t->bad_set, 0, sizeof(t->bad_set));
                memset(&t->erase_bad, 0, sizeof(t->erase_bad));
                target_reset_requests(t);
        }
        u->window = window;

        if (quiet)
                start_select(s, U_PRECHECK_BLANK);
        else
                start_precheck(s);
}

/* Work that waits for others: the unit after every target connected, the
 * targets flashed one by one after the unit, the next member of the unit.
 * Called at the end of every public entry point. */
void session_schedule(struct session *s) {
        struct session_target *members[ISP_NODE_MAX];
        unsigned n = 0;

        if (s->state != SESSION_RUNNING || !s->started || s->paused)
                return;

        for (unsigned guard = 0; guard < 4 * s->n_targets + 4; guard++) {
                struct session_target *next = NULL;

                if (unit_running(s)) {
                        unit_poll(s);
                        if (unit_running(s))
                                return;
                        continue;
                }

                /* Someone doing its own work has the bus. */
                for (unsigned i = 0; i < s->n_targets; i++) {
                        const struct session_target *t = &s->targets[i];

                        if (target_running(t) && t->step != STEP_WAIT)
                                return;
                }

                if (!s->unit_started) {
                        s->unit_started = true;
                        n = 0;
                        for (unsigned i = 0; i < s->n_targets; i++) {
                                struct session_target *t = &s->targets[i];

                                if (target_running(t) && t->step == STEP_WAIT && target_quiet_capable(s, t))
                                        members[n++] = t;
                        }
                        if (n > 0) {
                                unit_start(s, members, n, /* quiet= */ true);
                                continue;
                        }
                }

                /* the next one alone */
                for (unsigned i = 0; i < s->n_targets && !next; i++)
                        if (target_running(&s->targets[i]) && s->targets[i].step == STEP_WAIT)
                                next = &s->targets[i];
                if (!next)
                        return;
                if (next->connected && next->alone) {
                        /* still selected, alone, from its CONNECT */
                        next->turn = true;
                        after_connected_turn(s, next);
                        continue;
                }
                next->turn = true;
                start_connect(s, next);
                return;
        }
}

void unit_free(struct session *s) {
        free(s->unit.m);
        free(s->unit.all);
        free(s->unit.class_saved);
        s->unit.m = s->unit.all = s->unit.class_saved = NULL;
}
