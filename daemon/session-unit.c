/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The protocol engine: units. This file: members, group requests,
 * selecting, replies and time, and the scheduling of units and targets;
 * the checks and the erase are in session-unit-erase.c, the stream,
 * verify, repair and the member-by-member commit in
 * session-unit-stream.c, the declarations they share in session-unit.h.
 *
 * A unit is a set of extended nodes (with CRC
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
 * the batch again, after a READ (everyone answers again; a member's
 * answers count from its READ answer on, so a late answer to the first
 * transmission is never taken for another request's), at most
 * cfg.retries times. CRC deadlines adapt to the answer times seen
 * (the node's CRC speed and the bus), so a lost request costs little.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isp-crc32.h"
#include "session-unit.h"


bool target_unit_capable(const struct session *s, const struct session_target *t) {
        const uint8_t need = ISP_CAP_CRC | ISP_CAP_SECTOR_ERASE;

        return (s->kind == SESSION_FLASH || s->kind == SESSION_VERIFY) && !t->legacy && t->connected &&
               (t->info.capabilities & need) == need;
}

bool target_quiet_capable(const struct session *s, const struct session_target *t) {
        return target_unit_capable(s, t) && s->cfg.quiet && (t->info.capabilities & ISP_CAP_QUIET);
}

bool unit_running(const struct session *s) {
        return s->unit.step != U_IDLE && s->unit.step != U_DONE;
}

void unit_phase(struct session *s, enum session_phase phase) {
        struct unit *u = &s->unit;

        for (unsigned i = 0; i < u->n; i++)
                set_phase(s, u->m[i], phase);
}

void unit_progress(struct session *s, uint64_t done, uint64_t total) {
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
        /* It may still be selected (it only stopped answering, or its
         * answers were refused): it must not be erased or programmed
         * along with the others. The unit is selected again before the
         * next erase or the stream. */
        if (u->step >= U_SELECT_FIRST && u->step < U_STREAM && !u->repairing && u->quiet)
                u->dropped = true;
        /* its checkpoints are no one's now */
        for (unsigned i = 0; i < u->n_ckpt;)
                if (u->ckpt[i].node == t->id) {
                        memmove(u->ckpt + i, u->ckpt + i + 1, (u->n_ckpt - i - 1) * sizeof(*u->ckpt));
                        u->n_ckpt--;
                } else
                        i++;
}

void fail_member(struct session *s, struct session_target *t, enum session_reason reason, uint32_t offset,
                        const char *what) {
        session_fail(s, t, reason, offset, "%s: %s", t->name, what);
}

/* ------------------------------------------------------------------------ */
/* Sending */

int unit_send(struct session *s, const struct isp_can_frame *frame) {
        struct unit *u = &s->unit;
        int r;

        r = session_put_frame(s, frame);
        if (r < 0)
                /* a group frame: every member fails */
                while (u->n > 0) {
                        struct session_target *t = u->m[0];

                        unit_member_gone(s, t);
                        session_fail_link(s, t, frame, r);
                }
        return r;
}

int unit_send_request(struct session *s, const struct isp_request *req) {
        struct isp_can_frame f;

        if (isp_request_build(req, &f) < 0)
                return -EINVAL;
        return unit_send(s, &f);
}

/* ------------------------------------------------------------------------ */
/* Group requests: an ERASE, or a batch of CRCs */

void batch_begin(struct session *s) {
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

void batch_add(struct session *s, const struct isp_request *req) {
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

bool batch_full(const struct session *s) {
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
static uint64_t batch_timeout_tries(const struct session *s, unsigned tries) {
        const struct unit *u = &s->unit;
        uint64_t configured, floor;

        if (u->req[0].cmd != ISP_CMD_CRC)
                return u->req_timeout;
        configured = ms_to_usec(s->cfg.timeout_ms) + u->req_timeout;
        if (u->usec_per_sector == 0 || tries >= s->cfg.retries)
                /* nothing learnt yet, or the last try */
                return configured;
        /* never less than every member's answers take on a slow bus */
        floor = max_u64(UNIT_MIN_CRC_TIMEOUT_USEC, (uint64_t) u->n_req * (u->n + 1) * s->cfg.frame_us);
        /* doubled with every retransmission: a slow node is not a lost frame */
        return min_u64(configured, max_u64(floor, 4 * u->usec_per_sector * batch_crc_sectors(u)) << tries);
}

static uint64_t batch_timeout(const struct session *s) {
        return batch_timeout_tries(s, s->unit.req_tries);
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
void batch_send(struct session *s) {
        struct unit *u = &s->unit;

        if (u->n_req == 0 || u->req_out || !batch_may_send(s))
                return;
        for (unsigned i = 0; i < u->n; i++) {
                u->m[i]->batch_n = 0;
                /* a retransmission is counted from each member's answer
                 * to a READ sent before it (see batch_flushed) */
                u->m[i]->batch_flushed = u->req_tries == 0;
                if (u->req[0].cmd == ISP_CMD_ERASE)
                        u->m[i]->erase_sent = true;
        }
        if (u->req_tries > 0) {
                struct isp_request flush = { .cmd = ISP_CMD_READ, .u.read.offset = ISP_ENTRY_OFFSET };

                if (unit_send_request(s, &flush) < 0)
                        return;
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

        if (u->req_out && !t->batch_flushed) {
                session_ignore_reply(s, t, r, "answers an earlier transmission");
                return;
        }
        if (!u->req_out || k >= u->n_req || u->req[k].cmd != r->cmd) {
                session_ignore_reply(s, t, r, "matches no group request in flight");
                return;
        }
        if (r->echo && transport_request_start(&u->req[k]) != r->echo_offset) {
                /* ECHO: it answers another host's request */
                session_ignore_reply(s, t, r, "echoes the start of no group request in flight");
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
                /* it may have been slowness, not loss: learn slower */
                u->usec_per_sector += u->usec_per_sector / 2;
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
                char what[256];

                if (t->batch_n >= u->n_req) {
                        i++;
                        continue;
                }
                if (q->cmd == ISP_CMD_ERASE)
                        snprintf(what, sizeof(what), "ERASE at %s not answered after %u retransmissions%s",
                                 isp_offset_to_string(q->u.erase.offset, a), u->req_tries, SESSION_LOSS_HINT);
                else
                        snprintf(what, sizeof(what), "CRC at %s not answered after %u retransmissions%s",
                                 isp_offset_to_string(q->u.crc.offset, a), u->req_tries, SESSION_LOSS_HINT);
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
        if (u->req_retransmitted)
                /* no sample from it (its answers may be the first
                 * transmission's); nothing stale is left either: what
                 * came before each member's READ was dropped */
                return;
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
void batch_drop_refusals(struct session *s) {
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

void crc_request(struct isp_request *req, uint32_t offset, uint32_t length) {
        *req = (struct isp_request) { .cmd = ISP_CMD_CRC, .u.crc = { .offset = offset, .length = length } };
}

/* ------------------------------------------------------------------------ */
/* Selecting */


static void select_send(struct session *s, struct session_target *t, bool first) {
        struct isp_request req = {
                .cmd = ISP_CMD_CONNECT,
                .u.connect = {
                        .target = t->id,
                        .with_flags = s->unit.quiet || !first || target_echo_capable(t),
                        .flags = (uint8_t) ((s->unit.quiet ? ISP_CONNECT_QUIET : 0) | (first ? 0 : ISP_CONNECT_JOIN) |
                                            (target_echo_capable(t) ? ISP_CONNECT_ECHO : 0)),
                },
        };

        t->selected = false;
        t->echo_on = target_echo_capable(t);
        (void) target_request(s, t, &req, ms_to_usec(s->cfg.timeout_ms));
}

/* Select `members` of the unit (the first alone, the others joining) and
 * go on with `then`. */
void start_select(struct session *s, enum unit_step then) {
        struct unit *u = &s->unit;

        u->after_select = then;
        u->dropped = false;
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
        case U_ERASE_ENTRY:
                start_erase_entry(s);
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
                if (u->req_out && !t->batch_flushed) {
                        /* the READ before a retransmitted batch: what it
                         * answers next is the retransmission's */
                        t->batch_flushed = true;
                        return true;
                }
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

                if (u->n == 0 && u->n_class_saved > 0) {
                        /* an erase class, selected alone, lost its last
                         * member: the unit's other members go on */
                        for (unsigned i = 0; i < u->n_class_saved; i++)
                                if (u->class_saved[i]->in_unit)
                                        u->m[u->n++] = u->class_saved[i];
                        u->n_class_saved = 0;
                        u->class_active = false;
                        u->req_out = false;
                        u->n_req = 0;
                        /* the one gone may still be selected */
                        u->dropped = true;
                        u->step = U_ERASE;
                        continue;
                }
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

                        /* (one waiting for its boot is not on the bus) */
                        if (target_running(t) && t->step != STEP_WAIT && t->step != STEP_BOOT)
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
