/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The protocol engine, units (session-unit.c): the PROGRAM stream and
 * its checkpoints (or the acknowledged window of a unit without QUIET),
 * verify, the repair of a member verify found short, and the members'
 * commits, one by one, after every member holds the whole image.
 */

#include <stdio.h>
#include <string.h>

#include "isp-crc32.h"
#include "session-unit.h"

static void start_members(struct session *s);
static void next_repair_round(struct session *s);

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

void start_stream(struct session *s) {
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
                req.u.connect.flags = ISP_CONNECT_QUIET | ISP_CONNECT_JOIN |
                                      (target_echo_capable(t) ? ISP_CONNECT_ECHO : 0);
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

/* The stream's next PROGRAM frame; false at its end. */
static bool next_program(struct session *s, struct isp_request *ret) {
        struct unit *u = &s->unit;

        while (u->cursor < s->plan.n_chunks) {
                const struct plan_chunk *c = &s->plan.chunks[u->cursor++];

                if (!chunk_wanted(s, c))
                        continue;
                *ret = (struct isp_request) {
                        .cmd = ISP_CMD_PROGRAM,
                        .u.program = { .offset = c->offset, .len = c->len },
                };
                memcpy(ret->u.program.data, s->image->flash + c->offset, c->len);
                return true;
        }
        return false;
}

/* QUIET: send what the checkpoints allow. */
static void stream_fill_quiet(struct session *s) {
        struct unit *u = &s->unit;
        struct isp_request req;
        unsigned k = s->cfg.stream_frames > 0 ? s->cfg.stream_frames : 1;
        unsigned c_max = s->cfg.stream_checkpoints > 0 ? s->cfg.stream_checkpoints : 1;

        if (c_max > UNIT_CKPT_MAX)
                c_max = UNIT_CKPT_MAX;
        while (u->n > 0 && u->n_ckpt < c_max && next_program(s, &req)) {
                if (unit_send_request(s, &req) < 0)
                        return;
                u->bytes_sent += req.u.program.len;
                u->unconfirmed++;
                if (++u->since_ckpt >= k)
                        send_checkpoint(s, false);
        }
        if (u->n == 0 || u->cursor < s->plan.n_chunks)
                return;

        /* All sent: the program phase ends when the READ after the last
         * frame is answered. */
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
        struct isp_request req;

        if (u->n == 0)
                return;
        t = u->m[0];
        while (target_running(t) && t->tp.n_pend < t->window && next_program(s, &req)) {
                if (target_request(s, t, &req, ms_to_usec(s->cfg.timeout_ms)) < 0)
                        return;
                u->bytes_sent += req.u.program.len;
        }
        if (target_running(t) && t->tp.n_pend == 0 && u->cursor >= s->plan.n_chunks)
                start_verify(s);
}

void stream_poll(struct session *s) {
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

void on_checkpoint(struct session *s, struct session_target *t, const struct isp_reply *r) {
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

void checkpoint_timeouts(struct session *s) {
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
void on_stream_program(struct session *s, struct session_target *t, const struct isp_reply *r) {
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
        if (!u->quiet && !s->cfg.verify && !u->repairing && s->foreign_writes == 0) {
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
        /* What was streamed: every other sector was checked (blank, or
         * holding the image) before, and only a PROGRAM or ERASE on the
         * bus changes a sector; this session hears every frame another
         * host sends. If it heard one (or lost frames it could not
         * hear), the whole application area, two CRCs when nothing
         * differs. */
        u->verify_set = s->foreign_writes > 0 ? s->plan.app_sectors : u->stream_set;
        memset(&u->suspect, 0, sizeof(u->suspect));
        for (unsigned i = 0; i < u->n; i++) {
                memset(&u->m[i]->bad_set, 0, sizeof(u->m[i]->bad_set));
                u->m[i]->stray = 0;
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

void on_verify_runs(struct session *s) {
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

void on_verify_sectors(struct session *s) {
        struct unit *u = &s->unit;

        batch_drop_refusals(s);
        for (unsigned k = 0; k < u->n_req; k++) {
                unsigned sec = SECTOR_OF(u->req[k].u.crc.offset);
                uint32_t want = plan_expected_crc(&s->plan, sec, 1);

                for (unsigned i = 0; i < u->n; i++) {
                        struct session_target *t = u->m[i];

                        if (t->batch_crc[k] != want) {
                                /* A sector this flash did not write (left
                                 * blank, or skipped as holding the image)
                                 * is not repaired: something else wrote it */
                                if (!u->repairing && !plan_sectors_test(&t->write_set, sec)) {
                                        if (t->stray == 0) {
                                                t->stray = sec + 1;
                                                t->stray_crc = t->batch_crc[k];
                                        }
                                        continue;
                                }
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
void start_repair_round(struct session *s) {
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

void on_locate(struct session *s) {
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

void on_repair_erase(struct session *s) {
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

/* A member whose verify found a sector changed that this flash did not
 * write fails before any repair or commit. */
static void fail_stray(struct session *s, struct session_target *t) {
        unsigned sec = t->stray - 1;
        bool blank = plan_sectors_test(&s->plan.blank_sectors, sec);
        char range[40];

        format_sectors(range, sizeof(range), sec, 1);
        if (s->foreign_writes > 0)
                session_fail(s, t, SESSION_REASON_VERIFY_FAILED, sec * ISP_SECTOR_SIZE,
                             "%s: verify failed: sector %s, which %s, has CRC 0x%08X instead of 0x%08X: %s "
                             "(%s on the bus during this flash); the entry is not written",
                             t->name, range, blank ? "the image leaves blank" : "already held the image",
                             (unsigned) t->stray_crc, (unsigned) plan_expected_crc(&s->plan, sec, 1),
                             foreign_cause(s), s->foreign_write);
        else
                session_fail(s, t, SESSION_REASON_VERIFY_FAILED, sec * ISP_SECTOR_SIZE,
                             "%s: verify failed: sector %s, which %s, has CRC 0x%08X instead of 0x%08X: something "
                             "wrote to it after its %s, not this flash", t->name, range,
                             blank ? "the image leaves blank" : "already held the image and was not rewritten",
                             (unsigned) t->stray_crc, (unsigned) plan_expected_crc(&s->plan, sec, 1),
                             blank ? "blank check or erase" : "check");
}

static void start_members(struct session *s) {
        struct unit *u = &s->unit;
        struct session_target *members[ISP_NODE_MAX];
        unsigned n = u->n;

        u->step = U_MEMBERS;
        u->next_member = 0;
        u->member_pass = 1;
        memcpy(members, u->m, n * sizeof(*members));
        for (unsigned i = 0; i < n; i++)
                members[i]->in_unit = false;
        u->n = 0;
        for (unsigned i = 0; i < n; i++)
                if (!u->repairing && members[i]->stray > 0) {
                        fail_stray(s, members[i]);
                        members[i]->stray = 0;
                }
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
        t->echo_on = false;     /* flags 0 */
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

void members_poll(struct session *s) {
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

