/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The protocol engine: the steps that work on a connected target. They
 * send what the plan (plan.c) says, in the order the commit rule needs:
 *
 * - Erase (protocol.md 9): the entry sector alone first; then, on a node
 *   with CRC and sector erase, the image's sectors plus those of the other
 *   sectors the probe finds not blank, in runs of at most 255 sectors.
 *   Otherwise a full ERASE (after the entry sector when sector erase
 *   exists).
 *
 * - Verify: by the probe over the image's sectors, narrowed down to the
 *   sector on a mismatch so the message names it; else by READ of every
 *   8-byte block holding image bytes. Both expect the entry bytes still
 *   erased. The entry itself is checked by READ after the commit, even
 *   with cfg.verify off.
 */

#include <stdio.h>
#include <string.h>

#include "session-internal.h"

static void start_program(struct session *s, struct session_target *t);
static void start_verify(struct session *s, struct session_target *t);

void format_bytes(char *buf, size_t size, const uint8_t *bytes, const bool *mask, unsigned n) {
        size_t k = 0;

        buf[0] = '\0';
        for (unsigned i = 0; i < n && k < size; i++) {
                int w = (mask && !mask[i])
                        ? snprintf(buf + k, size - k, "%s--", i ? " " : "")
                        : snprintf(buf + k, size - k, "%s%02X", i ? " " : "", bytes[i]);
                if (w < 0)
                        break;
                k += (size_t) w;
        }
}

void format_sectors(char *buf, size_t size, unsigned first, unsigned count) {
        char a[ISP_ADDR_STRING_MAX], b[ISP_ADDR_STRING_MAX];

        snprintf(buf, size, "%s-%s",
                 isp_offset_to_string(first * ISP_SECTOR_SIZE, a),
                 isp_offset_to_string((first + count) * ISP_SECTOR_SIZE - 1, b));
}

static void format_erase(char *buf, size_t size, const struct isp_request *req) {
        if (req->u.erase.whole)
                snprintf(buf, size, "the whole application area");
        else
                format_sectors(buf, size, SECTOR_OF(req->u.erase.offset), req->u.erase.count);
}

void fail_status(struct session *s, struct session_target *t, const char *what, uint32_t offset, uint8_t status) {
        char a[ISP_ADDR_STRING_MAX];

        session_fail(s, t, SESSION_REASON_REFUSED, offset, "%s: %s at %s failed with status %u: %s", t->name, what,
                     isp_offset_to_string(offset, a), status, isp_status_to_string(status));
}

void fail_unanswered(struct session *s, struct session_target *t, const struct pending *p) {
        char a[ISP_ADDR_STRING_MAX], range[32];
        const char *cmd = isp_cmd_to_string(p->req.cmd);
        const enum session_reason reason = SESSION_REASON_NO_REPLY;
        /* what would help on a lossy bus */
        const char *hint = SESSION_LOSS_HINT;

        /* The last steps of a flash: the node may have lost power, or its
         * answer may have been lost, after the entry was written. A new
         * application that answers IDENTIFY with the image says what the
         * board really holds; only without one does the flash fail. */
        if (s->kind == SESSION_FLASH && !t->legacy && s->cfg.boot_timeout_ms > 0 && !t->after_lost &&
            (p->req.cmd == ISP_CMD_REBOOT ||
             (p->req.cmd == ISP_CMD_PROGRAM && p->req.u.program.offset == ISP_ENTRY_OFFSET) ||
             t->step == STEP_COMMIT_CHECK)) {
                snprintf(t->lost_error, sizeof(t->lost_error), "%s: %s%s%s not %s after %u retransmissions",
                         t->name, cmd, p->req.cmd == ISP_CMD_REBOOT ? "" : " at ",
                         p->req.cmd == ISP_CMD_REBOOT ? "" : "FF:1000",
                         p->req.cmd == ISP_CMD_PROGRAM ? "acknowledged" : "answered", p->retransmissions);
                t->after_lost = true;
                start_boot_wait(s, t);
                return;
        }

        switch (p->req.cmd) {
        case ISP_CMD_PROGRAM:
                session_fail(s, t, reason, p->req.u.program.offset,
                             "%s: %s at %s not acknowledged after %u retransmissions%s",
                             t->name, cmd, isp_offset_to_string(p->req.u.program.offset, a), p->retransmissions,
                             t->legacy ? " (a legacy node does not report write errors: it stays silent)" : hint);
                return;
        case ISP_CMD_READ:
                session_fail(s, t, reason, p->req.u.read.offset, "%s: READ at %s not answered after %u retransmissions%s",
                             t->name, isp_offset_to_string(p->req.u.read.offset, a), p->retransmissions, hint);
                return;
        case ISP_CMD_CRC:
                format_sectors(range, sizeof(range), SECTOR_OF(p->req.u.crc.offset), p->req.u.crc.length / ISP_SECTOR_SIZE);
                session_fail(s, t, reason, p->req.u.crc.offset, "%s: CRC of %s not answered after %u retransmissions%s",
                             t->name, range, p->retransmissions, hint);
                return;
        case ISP_CMD_ERASE:
                format_erase(range, sizeof(range), &p->req);
                session_fail(s, t, reason, p->req.u.erase.whole ? 0 : p->req.u.erase.offset,
                             "%s: ERASE of %s not acknowledged after %u retransmissions (%llu ms each)%s",
                             t->name, range, p->retransmissions, (unsigned long long) (p->timeout_usec / USEC_PER_MSEC),
                             hint);
                return;
        case ISP_CMD_REBOOT:
                if (s->kind == SESSION_FLASH)
                        session_fail(s, t, reason, 0,
                                     "%s: REBOOT not answered after %u retransmissions: the image is written, "
                                     "verified and committed, but whether the application started is unknown "
                                     "(power-cycle the node)", t->name, p->retransmissions);
                else
                        session_fail(s, t, reason, 0, "%s: REBOOT not answered after %u retransmissions",
                                     t->name, p->retransmissions);
                return;
        default:
                session_fail(s, t, reason, 0, "%s: %s not answered after %u retransmissions%s",
                             t->name, cmd, p->retransmissions, hint);
                return;
        }
}

/* --- CRC probes: the blank check and the CRC verify --- */

static uint32_t expect_blank(const void *userdata, unsigned first, unsigned count) {
        (void) userdata;
        (void) first;
        return plan_blank_crc(count);
}

static uint32_t expect_image(const void *userdata, unsigned first, unsigned count) {
        return plan_expected_crc(userdata, first, count);
}

/* Ask for the CRC of the probe's next run; false when the probe is done. */
static bool probe_request_next(struct session *s, struct session_target *t) {
        struct isp_request req = { .cmd = ISP_CMD_CRC };
        struct plan_run run;

        if (!probe_next(&t->probe, &run))
                return false;
        req.u.crc.offset = run.first * ISP_SECTOR_SIZE;
        req.u.crc.length = run.count * ISP_SECTOR_SIZE;
        (void) target_request(s, t, &req,
                              ms_to_usec(s->cfg.timeout_ms + (uint64_t) run.count * SESSION_CRC_MS_PER_SECTOR));
        return true;
}

static void erase_runs_next(struct session *s, struct session_target *t);

static void erase_check_next(struct session *s, struct session_target *t) {
        struct plan_sectors image;

        if (probe_request_next(s, t))
                return;
        /* Erase the image's sectors and the ones found not blank. */
        plan_erase_sectors(&s->plan, &image);
        plan_sectors_union(&t->erase_set, &image);
        t->erase_cursor = 0;
        t->step = STEP_ERASE_RUNS;
        erase_runs_next(s, t);
}

static void verify_crc_next(struct session *s, struct session_target *t) {
        if (!probe_request_next(s, t))
                start_commit(s, t);
}

static void on_probe_outcome(struct session *s, struct session_target *t, const struct probe_outcome *o,
                             uint32_t crc, const char *range) {
        switch (o->verdict) {
        case PROBE_MATCHED:
                t->done += t->step == STEP_ERASE_CHECK ? o->run.count : (uint64_t) o->run.count * ISP_SECTOR_SIZE;
                report_progress(s, t);
                return;
        case PROBE_MISMATCH:
                if (t->step == STEP_ERASE_CHECK) {
                        plan_sectors_add(&t->erase_set, o->run.first);
                        t->n_dirty++;
                } else if (s->foreign_writes > 0)
                        session_fail(s, t, SESSION_REASON_VERIFY_FAILED, o->run.first * ISP_SECTOR_SIZE,
                                     "%s: verify failed: sector %s has CRC 0x%08X instead of 0x%08X: %s (%s "
                                     "on the bus during this flash); the entry is not written",
                                     t->name, range, (unsigned) crc, (unsigned) o->expected, foreign_cause(s),
                                     s->foreign_write);
                else if (plan_sectors_test(&s->plan.blank_sectors, o->run.first))
                        /* checked blank (or erased) before the program:
                         * something else wrote to it since */
                        session_fail(s, t, SESSION_REASON_VERIFY_FAILED, o->run.first * ISP_SECTOR_SIZE,
                                     "%s: verify failed: sector %s, which the image leaves blank, has CRC 0x%08X "
                                     "instead of blank's 0x%08X: something wrote to it after its blank check or "
                                     "erase, not this flash", t->name, range, (unsigned) crc, (unsigned) o->expected);
                else
                        session_fail(s, t, SESSION_REASON_VERIFY_FAILED, o->run.first * ISP_SECTOR_SIZE,
                                     "%s: verify failed: sector %s has CRC 0x%08X, the image gives 0x%08X",
                                     t->name, range, (unsigned) crc, (unsigned) o->expected);
                return;
        case PROBE_SPLIT:
                /* the halves are asked next (verify: to name the sector) */
                return;
        }
}

/* A CRC reply in the blank check or the CRC verify. */
static void on_crc_reply(struct session *s, struct session_target *t, struct pending *p, const struct isp_reply *r) {
        struct probe_outcome o;
        struct plan_run run;
        char range[32];

        transport_done(&t->tp, p, s->now);
        if (!probe_next(&t->probe, &run)) {
                session_fail(s, t, SESSION_REASON_INTERNAL, 0, "%s: internal error: CRC reply with no run to check", t->name);
                return;
        }
        format_sectors(range, sizeof(range), run.first, run.count);
        if (r->status != ISP_STATUS_OK) {
                session_fail(s, t, SESSION_REASON_REFUSED, run.first * ISP_SECTOR_SIZE,
                             "%s: CRC of %s failed with status %u: %s", t->name, range, r->status,
                             isp_status_to_string(r->status));
                return;
        }
        if (probe_answer(&t->probe, r->u.crc, &o) < 0) {
                session_fail(s, t, SESSION_REASON_INTERNAL, 0, "%s: internal error: sector run stack full", t->name);
                return;
        }
        on_probe_outcome(s, t, &o, r->u.crc, range);

        if (!target_running(t))
                return;
        if (t->step == STEP_ERASE_CHECK)
                erase_check_next(s, t);
        else
                verify_crc_next(s, t);
}

/* --- erase --- */

static void request_erase_all(struct session *s, struct session_target *t) {
        struct isp_request req = { .cmd = ISP_CMD_ERASE, .u.erase.whole = true };

        t->step = STEP_ERASE_ALL;
        (void) target_request(s, t, &req,
                              ms_to_usec(s->cfg.timeout_ms + (uint64_t) APP_SECTORS * s->cfg.erase_timeout_ms));
}

void start_erase(struct session *s, struct session_target *t) {
        struct isp_request req = { .cmd = ISP_CMD_ERASE };

        set_phase(s, t, SESSION_PHASE_ERASE);
        target_reset_requests(t);
        memset(&t->erase_set, 0, sizeof(t->erase_set));
        t->n_dirty = 0;
        t->done = 0;
        t->total = APP_SECTORS;
        report_progress(s, t);
        t->erase_sent = true;

        if (t->legacy || !(t->info.capabilities & ISP_CAP_SECTOR_ERASE)) {
                /* An extended node's full erase starts with the entry
                 * sector; a legacy node's order is its firmware's. */
                request_erase_all(s, t);
                return;
        }

        /* The commit rule: the entry sector before anything else. */
        t->step = STEP_ERASE_ENTRY;
        req.u.erase.offset = ISP_ENTRY_OFFSET;
        req.u.erase.count = 1;
        (void) target_request(s, t, &req, ms_to_usec(s->cfg.timeout_ms + s->cfg.erase_timeout_ms));
}

static void erase_runs_next(struct session *s, struct session_target *t) {
        struct isp_request req = { .cmd = ISP_CMD_ERASE };
        struct plan_run run;

        if (!plan_sectors_next_run(&t->erase_set, &t->erase_cursor, 255, &run)) {
                start_program(s, t);
                return;
        }
        req.u.erase.offset = run.first * ISP_SECTOR_SIZE;
        req.u.erase.count = (uint8_t) run.count;
        (void) target_request(s, t, &req,
                              ms_to_usec(s->cfg.timeout_ms + (uint64_t) run.count * s->cfg.erase_timeout_ms));
}

static void on_erase_reply(struct session *s, struct session_target *t, struct pending *p, const struct isp_reply *r) {
        struct isp_request req = p->req;
        char range[40];

        transport_done(&t->tp, p, s->now);

        if (!t->legacy && r->status != ISP_STATUS_OK) {
                format_erase(range, sizeof(range), &req);
                session_fail(s, t, SESSION_REASON_REFUSED, req.u.erase.whole ? 0 : req.u.erase.offset,
                             "%s: ERASE of %s failed with status %u: %s", t->name,
                             range, r->status, isp_status_to_string(r->status));
                return;
        }

        switch (t->step) {
        case STEP_ERASE_ALL:
                t->done = APP_SECTORS;
                report_progress(s, t);
                start_program(s, t);
                return;

        case STEP_ERASE_ENTRY:
                t->done = 1;
                report_progress(s, t);
                if (t->info.capabilities & ISP_CAP_CRC) {
                        /* Sectors the image leaves blank must be blank too
                         * (protocol.md 9, step 2): check them by CRC and
                         * erase only those that are not. */
                        probe_init(&t->probe, &s->plan.blank_sectors, expect_blank, NULL);
                        t->step = STEP_ERASE_CHECK;
                        erase_check_next(s, t);
                } else
                        /* Nothing cheap tells blank sectors apart: erase
                         * everything (the entry sector is already done). */
                        request_erase_all(s, t);
                return;

        case STEP_ERASE_RUNS:
                t->done += req.u.erase.count;
                report_progress(s, t);
                erase_runs_next(s, t);
                return;

        default:
                return;
        }
}

/* --- program --- */

static void program_fill(struct session *s, struct session_target *t) {
        while (target_running(t) && t->tp.n_pend < t->window && t->cursor < s->plan.n_chunks) {
                const struct plan_chunk *c = &s->plan.chunks[t->cursor++];
                struct isp_request req = {
                        .cmd = ISP_CMD_PROGRAM,
                        .u.program = { .offset = c->offset, .len = c->len },
                };

                memcpy(req.u.program.data, s->image->flash + c->offset, c->len);
                if (target_request(s, t, &req, ms_to_usec(s->cfg.timeout_ms)) < 0)
                        return;
        }

        if (target_running(t) && t->tp.n_pend == 0) {
                if (s->cfg.verify || s->foreign_writes > 0)
                        start_verify(s, t);
                else
                        start_commit(s, t);
        }
}

static void start_program(struct session *s, struct session_target *t) {
        unsigned depth;

        set_phase(s, t, SESSION_PHASE_PROGRAM);
        target_reset_requests(t);
        t->step = STEP_PROGRAM;

        /* A legacy ack says nothing about which frame it belongs to: one
         * frame at a time, and the READ-back verify makes it safe. */
        depth = t->info.rx_depth > 0 ? t->info.rx_depth : 1;
        t->window = t->legacy ? 1 : (depth < s->cfg.window ? depth : s->cfg.window);
        if (t->window == 0)
                t->window = 1;
        if (t->window > TRANSPORT_MAX_WINDOW)
                t->window = TRANSPORT_MAX_WINDOW;

        t->cursor = 0;
        t->done = 0;
        t->total = s->plan.program_bytes;
        report_progress(s, t);
        program_fill(s, t);
}

static void on_program_ack(struct session *s, struct session_target *t, struct pending *p, const struct isp_reply *r) {
        uint32_t offset = p->req.u.program.offset;
        uint8_t len = p->req.u.program.len;
        uint64_t seq = p->seq;
        struct pending *q;

        if (!t->legacy && r->status != ISP_STATUS_OK) {
                fail_status(s, t, "PROGRAM", offset, r->status);
                return;
        }
        transport_done(&t->tp, p, s->now);
        t->done += len;
        report_progress(s, t);

        /* The node answers in order: an unanswered frame sent before the
         * one just acknowledged was lost, or its ack was. Resend it now
         * rather than at its time-out. */
        q = transport_resend_before(&t->tp, seq, s->now, s->cfg.retries);
        if (q) {
                fail_unanswered(s, t, q);
                return;
        }

        if (target_running(t))
                program_fill(s, t);
}

/* --- verify --- */

static void verify_read_next(struct session *s, struct session_target *t) {
        struct isp_request req = { .cmd = ISP_CMD_READ };
        uint32_t offset;

        if (!plan_next_read_block(&s->plan, &t->cursor, &offset)) {
                start_commit(s, t);
                return;
        }
        req.u.read.offset = offset;
        (void) target_request(s, t, &req, ms_to_usec(s->cfg.timeout_ms));
}

static void start_verify(struct session *s, struct session_target *t) {
        set_phase(s, t, SESSION_PHASE_VERIFY);
        target_reset_requests(t);
        t->done = 0;
        t->total = 0;

        if (!t->legacy && (t->info.capabilities & ISP_CAP_CRC)) {
                /* The image's sectors; the whole application area (two
                 * CRCs when nothing differs) once another host's PROGRAM
                 * or ERASE was heard: a sector found blank before may
                 * have been written since. */
                probe_init(&t->probe, s->foreign_writes > 0 ? &s->plan.app_sectors : &s->plan.image_sectors,
                           expect_image, &s->plan);
                t->total = probe_sectors_left(&t->probe) * ISP_SECTOR_SIZE;
                t->step = STEP_VERIFY_CRC;
                report_progress(s, t);
                verify_crc_next(s, t);
                return;
        }

        t->total = s->plan.read_bytes;
        t->cursor = 0;
        t->step = STEP_VERIFY_READ;
        report_progress(s, t);
        verify_read_next(s, t);
}

static void on_verify_read_reply(struct session *s, struct session_target *t, struct pending *p, const struct isp_reply *r) {
        uint32_t offset = p->req.u.read.offset;
        uint8_t expected[8];
        bool mask[8];
        char a[ISP_ADDR_STRING_MAX], b[ISP_ADDR_STRING_MAX], got_s[32], want_s[32];
        int bad = -1;

        transport_done(&t->tp, p, s->now);
        if (r->status != ISP_STATUS_OK) {
                fail_status(s, t, "READ", offset, r->status);
                return;
        }

        plan_read_expected(&s->plan, offset, expected, mask);
        for (unsigned i = 0; i < 8 && bad < 0; i++)
                if (mask[i] && r->u.data[i] != expected[i])
                        bad = (int) i;
        if (bad >= 0) {
                format_bytes(got_s, sizeof(got_s), r->u.data, NULL, 8);
                format_bytes(want_s, sizeof(want_s), expected, mask, 8);
                session_fail(s, t, SESSION_REASON_VERIFY_FAILED, offset + (uint32_t) bad,
                             "%s: verify failed at %s: the node holds %s at %s, the image gives %s",
                             t->name, isp_offset_to_string(offset + (uint32_t) bad, a), got_s,
                             isp_offset_to_string(offset, b), want_s);
                return;
        }

        t->done += 8;
        report_progress(s, t);
        verify_read_next(s, t);
}

/* --- commit --- */

static void request_commit_step(struct session *s, struct session_target *t, enum plan_commit_step step) {
        static const enum step steps[_PLAN_COMMIT_MAX] = {
                [PLAN_COMMIT_TARGET] = STEP_COMMIT_TARGET,
                [PLAN_COMMIT_OPCODE] = STEP_COMMIT_OPCODE,
                [PLAN_COMMIT_CHECK] = STEP_COMMIT_CHECK,
        };
        struct isp_request req;

        plan_commit_request(&s->plan, step, &req);
        t->step = steps[step];
        (void) target_request(s, t, &req, target_short_timeout(s, t));
}

void start_commit(struct session *s, struct session_target *t) {
        set_phase(s, t, SESSION_PHASE_COMMIT);
        target_reset_requests(t);
        request_commit_step(s, t, PLAN_COMMIT_TARGET);
}

static void on_commit_ack(struct session *s, struct session_target *t, struct pending *p, const struct isp_reply *r) {
        uint32_t offset = p->req.u.program.offset;

        if (!t->legacy && r->status != ISP_STATUS_OK) {
                fail_status(s, t, "PROGRAM of the entry", offset, r->status);
                return;
        }
        transport_done(&t->tp, p, s->now);

        if (t->legacy && t->step == STEP_COMMIT_TARGET) {
                /* A legacy ack is DLC 0: one that is late, received
                 * twice or another host's looks the same. hh ll must be
                 * there before the opcode makes the entry valid, or the
                 * node would jump to FF:FFFF. */
                struct isp_request req = { .cmd = ISP_CMD_READ, .u.read.offset = ISP_ENTRY_OFFSET };

                t->step = STEP_COMMIT_ADDR_CHECK;
                (void) target_request(s, t, &req, target_short_timeout(s, t));
                return;
        }

        /* The opcode alone, last: "invalid" becomes "valid" in one byte
         * write (protocol.md 9, step 4). Then read it back. */
        request_commit_step(s, t, t->step == STEP_COMMIT_TARGET ? PLAN_COMMIT_OPCODE : PLAN_COMMIT_CHECK);
}

static void on_commit_addr_check(struct session *s, struct session_target *t, struct pending *p,
                                 const struct isp_reply *r) {
        uint8_t expected[8];
        char got_s[32];

        transport_done(&t->tp, p, s->now);
        plan_commit_expected(&s->plan, expected);
        if (r->u.data[0] != 0xFF || r->u.data[1] != expected[1] || r->u.data[2] != expected[2]) {
                format_bytes(got_s, sizeof(got_s), r->u.data, NULL, 3);
                session_fail(s, t, SESSION_REASON_VERIFY_FAILED, ISP_ENTRY_OFFSET + 1,
                             "%s: before the commit's opcode FF:1000 reads %s, not FF %02X %02X: the entry's "
                             "address was not written (its acknowledgement was not this write's); the opcode "
                             "is not written", t->name, got_s, expected[1], expected[2]);
                return;
        }
        request_commit_step(s, t, PLAN_COMMIT_OPCODE);
}

static void on_commit_check(struct session *s, struct session_target *t, struct pending *p, const struct isp_reply *r) {
        char got_s[32], want_s[32];
        uint8_t expected[8];

        transport_done(&t->tp, p, s->now);
        if (r->status != ISP_STATUS_OK) {
                fail_status(s, t, "READ", ISP_ENTRY_OFFSET, r->status);
                return;
        }
        plan_commit_expected(&s->plan, expected);
        if (memcmp(r->u.data, expected, 8) != 0) {
                format_bytes(got_s, sizeof(got_s), r->u.data, NULL, 8);
                format_bytes(want_s, sizeof(want_s), expected, NULL, 8);
                session_fail(s, t, SESSION_REASON_VERIFY_FAILED, ISP_ENTRY_OFFSET,
                             "%s: after the commit FF:1000 reads %s, the image gives %s",
                             t->name, got_s, want_s);
                return;
        }

        if (s->cfg.reboot)
                start_reboot(s, t);
        else
                target_finish_ok(s, t, SESSION_OUTCOME_FLASHED);
}

/* --- reboot --- */

void start_reboot(struct session *s, struct session_target *t) {
        struct isp_request req = { .cmd = ISP_CMD_REBOOT };

        set_phase(s, t, SESSION_PHASE_REBOOT);
        target_reset_requests(t);
        t->step = STEP_REBOOT;
        (void) target_request(s, t, &req, target_short_timeout(s, t));
}

static void on_reboot_reply(struct session *s, struct session_target *t, struct pending *p, const struct isp_reply *r) {
        transport_done(&t->tp, p, s->now);

        /* A legacy node's reply says nothing about what it did next. An
         * extended node that starts its application goes silent after its
         * status 0: that is the success. */
        if (t->legacy || r->status == ISP_STATUS_OK) {
                /* An application with the helper says it is up, and what
                 * it runs (docs/protocol.md 4.9). */
                if (!t->legacy && s->cfg.boot_timeout_ms > 0 && s->kind != SESSION_READ) {
                        start_boot_wait(s, t);
                        return;
                }
                target_finish_ok(s, t, SESSION_OUTCOME_NONE);
                return;
        }
        if (r->status == ISP_STATUS_NO_APP) {
                if (s->kind == SESSION_FLASH)
                        session_fail(s, t, SESSION_REASON_NO_APPLICATION, 0,
                                     "%s reports no valid application after commit: it stays in ISP", t->name);
                else
                        session_fail(s, t, SESSION_REASON_NO_APPLICATION, 0,
                                     "%s has no valid application (the entry at FF:1000 is not valid): "
                                     "it stays in ISP; flash an image first", t->name);
                return;
        }
        session_fail(s, t, SESSION_REASON_REFUSED, 0, "%s: REBOOT failed with status %u: %s",
                     t->name, r->status, isp_status_to_string(r->status));
}

/* --- dispatch --- */

/* A reply that answers `p`, the request in flight it matched. */
void on_target_reply(struct session *s, struct session_target *t, struct pending *p, const struct isp_reply *r) {
        switch (t->step) {
        case STEP_ERASE_ENTRY:
        case STEP_ERASE_RUNS:
        case STEP_ERASE_ALL:
                on_erase_reply(s, t, p, r);
                return;
        case STEP_ERASE_CHECK:
        case STEP_VERIFY_CRC:
                on_crc_reply(s, t, p, r);
                return;
        case STEP_PROGRAM:
                on_program_ack(s, t, p, r);
                return;
        case STEP_VERIFY_READ:
                on_verify_read_reply(s, t, p, r);
                return;
        case STEP_COMMIT_TARGET:
        case STEP_COMMIT_OPCODE:
                on_commit_ack(s, t, p, r);
                return;
        case STEP_COMMIT_CHECK:
                on_commit_check(s, t, p, r);
                return;
        case STEP_COMMIT_ADDR_CHECK:
                on_commit_addr_check(s, t, p, r);
                return;
        case STEP_REBOOT:
                on_reboot_reply(s, t, p, r);
                return;
        case STEP_LOOK:
                on_look_reply(s, t, p, r);
                return;
        case STEP_READ_CRC:
        case STEP_READ_DATA:
                on_read_reply(s, t, p, r);
                return;
        default:
                session_ignore_reply(s, t, r, "is not expected now");
                return;
        }
}
