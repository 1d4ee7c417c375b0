/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The protocol engine. See session.h for the interface and
 * docs/protocol.md for the protocol it speaks.
 *
 * How it is built:
 *
 * - The session holds its targets; every piece of per-node state is in the
 *   target (session-internal.h), and replies are routed to the target by
 *   node id. This file: life cycle, routing of replies and time, the end
 *   of a target and of the session.
 *
 * - A target walks through steps (enum step), each of which sends one kind
 *   of request: connecting, conflicts and restarts in session-connect.c,
 *   erase, program, verify, commit and reboot in session-flash.c. What
 *   they send comes from the plan (plan.c), worked out once per session;
 *   "which sectors hold what I expect" is the probe (probe.c).
 *
 * - The requests in flight are the target's transport (transport.c): each
 *   has its own deadline; a time-out retransmits it, at most cfg.retries
 *   times, then the step's exhaustion rule applies (mostly: fail naming the
 *   node and the address). After a retransmitted request is answered the
 *   transport holds the next request of the same command off for that
 *   request's time-out; a retransmission therefore costs one time-out of
 *   extra waiting, nothing else does.
 *
 * - ops->target_finished and ops->finished are only called as the last
 *   statement of a public entry point (finish_if_done()), because the
 *   caller may free the session in `finished`.
 */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session-internal.h"
#include "util.h"

/* ------------------------------------------------------------------------ */
/* Ending */

/* The session ends with its last target: failed if one failed, else
 * cancelled if one was, else succeeded. */
static void update_state(struct session *s) {
        bool failed = false, cancelled = false;

        for (unsigned i = 0; i < s->n_targets; i++) {
                if (target_running(&s->targets[i]))
                        return;
                failed = failed || s->targets[i].state == SESSION_FAILED;
                cancelled = cancelled || s->targets[i].state == SESSION_CANCELLED;
        }
        s->state = failed ? SESSION_FAILED : cancelled ? SESSION_CANCELLED : SESSION_SUCCEEDED;
}

static void target_end(struct session *s, struct session_target *t, enum session_state state,
                       enum session_reason reason) {
        t->state = state;
        t->reason = reason;
        t->step = STEP_DONE;
        t->wait_deadline = UINT64_MAX;
        transport_reset(&t->tp);
        unit_member_gone(s, t);
        t->unit_done = false;
        update_state(s);
}

_Pragma("GCC diagnostic push")
_Pragma("GCC diagnostic ignored \"-Wformat-nonliteral\"")
void session_fail(struct session *s, struct session_target *t, enum session_reason reason, uint32_t offset,
                  const char *fmt, ...) {
        va_list ap;

        if (!target_running(t))
                return;

        va_start(ap, fmt);
        vsnprintf(t->error, sizeof(t->error), fmt, ap);
        va_end(ap);

        t->error_offset = offset;
        target_end(s, t, SESSION_FAILED, reason);
}

void session_log(struct session *s, int level, const char *fmt, ...) {
        char buf[SESSION_ERROR_MAX];
        va_list ap;

        if (!s->ops.log)
                return;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        s->ops.log(s->userdata, level, buf);
}
_Pragma("GCC diagnostic pop")

void session_succeed(struct session *s, struct session_target *t) {
        if (!target_running(t))
                return;
        target_end(s, t, SESSION_SUCCEEDED, SESSION_REASON_NONE);
}

static void target_result(const struct session_target *t, struct session_target_result *ret) {
        *ret = (struct session_target_result) {
                .node = t->id,
                .name = t->name,
                .state = t->state,
                .reason = t->reason,
                .phase = t->phase,
                .error = t->state == SESSION_FAILED ? t->error : NULL,
                .offset = t->state == SESSION_FAILED ? t->error_offset : 0,
                .connected = t->connected,
                .flash_touched = t->erase_sent,
                .multicast = t->multicast,
                .bytes_done = t->prog_done,
                .bytes_total = t->prog_total,
                .sectors_written = t->sectors_written,
                .sectors_skipped = t->sectors_skipped,
                .sectors_erased = t->sectors_erased,
                .repairs = t->repairs,
                .retransmissions = t->retransmissions,
                .outcome = t->state == SESSION_SUCCEEDED ? t->outcome : SESSION_OUTCOME_NONE,
                .boot = t->boot,
                .identified = t->identified,
                .image_crc = t->identified ? t->identity.image_crc : 0,
                .sectors_to_erase = t->sectors_to_erase,
                .estimate_usec = t->estimate_usec,
        };
        memcpy(ret->differing, t->differing.map, sizeof(ret->differing));
        if (t->connected)
                ret->info = (struct session_node_info) {
                        .node = t->id,
                        .legacy = t->legacy,
                        .info = t->info,
                };
}

/* Report the ends, once each. Must be the last thing a public entry point
 * does: `finished` may free the session. */
static void finish_if_done(struct session *s) {
        for (unsigned i = 0; i < s->n_targets; i++) {
                struct session_target *t = &s->targets[i];
                struct session_target_result result;

                if (target_running(t) || t->reported)
                        continue;
                t->reported = true;
                if (s->kind == SESSION_SCAN || !s->ops.target_finished)
                        continue;
                target_result(t, &result);
                s->ops.target_finished(s->userdata, &result);
        }

        if (s->state == SESSION_RUNNING || s->finish_reported)
                return;
        s->finish_reported = true;
        if (s->ops.finished)
                s->ops.finished(s->userdata, s->state, session_get_error(s));
}

/* ------------------------------------------------------------------------ */
/* Callbacks */

void set_phase(struct session *s, struct session_target *t, enum session_phase phase) {
        if (t->phase == phase)
                return;
        t->phase = phase;
        if (s->ops.phase)
                s->ops.phase(s->userdata, t->id, phase);
}

void report_progress(struct session *s, struct session_target *t) {
        if (t->done > t->total)
                t->done = t->total;
        if (s->ops.progress)
                s->ops.progress(s->userdata, t->id, t->done, t->total);
}

/* `t` may be NULL for an ANNOUNCE, which is reported every time. */
void report_node(struct session *s, struct session_target *t, uint8_t node, const struct isp_reply *r, bool announce) {
        struct session_node_info n = {
                .node = node,
                .legacy = node == ISP_NODE_LEGACY,
                .announce = announce,
        };

        if (!announce) {
                if (bit_test(t->seen, node))
                        return;
                bit_set(t->seen, node);
        }
        if (!n.legacy)
                n.info = r->u.info;
        if (s->ops.node_seen)
                s->ops.node_seen(s->userdata, &n);
}

/* How messages name the session when no one target is concerned. */
static const char *session_label(const struct session *s) {
        return s->n_targets == 1 ? s->targets[0].name : "session";
}

/* `t` NULL: the reply is for no target. */
void session_ignore_reply(struct session *s, const struct session_target *t, const struct isp_reply *r,
                          const char *why) {
        char from[16];

        s->stats.stray_replies++;
        /* An answer without ECHO that answers nothing in flight may have
         * been taken, in its place, for an answer to something else (a
         * CAN frame received twice, a late answer, another host's): the
         * checks before the erase cannot be trusted, verify covers all. */
        if ((r->cmd == ISP_CMD_CRC || r->cmd == ISP_CMD_ERASE) && !r->echo && s->kind == SESSION_FLASH &&
            !s->cfg.dry_run && s->foreign_writes++ == 0)
                snprintf(s->foreign_write, sizeof(s->foreign_write), "a %s answer from node%u to no request",
                         isp_cmd_to_string(r->cmd), r->node);
        if (!s->ops.log)
                return;
        if (r->node == ISP_NODE_LEGACY)
                snprintf(from, sizeof(from), "the legacy node");
        else
                snprintf(from, sizeof(from), "node%u", r->node);
        session_log(s, LOG_DEBUG, "%s: %s reply from %s %s, ignoring",
                    t ? t->name : session_label(s), isp_cmd_to_string(r->cmd), from, why);
}

/* ------------------------------------------------------------------------ */
/* Sending */

int session_put_frame(struct session *s, const struct isp_can_frame *frame) {
        int r;

        r = s->ops.send(s->userdata, frame);
        if (r < 0) {
                if (s->send_error == 0)
                        s->send_error = r;
                return r;
        }
        s->stats.frames_sent++;
        s->seq++;
        return 0;
}

void session_fail_link(struct session *s, struct session_target *t, const struct isp_can_frame *frame, int error) {
        char buf[ISP_FRAME_STRING_MAX];

        session_fail(s, t, SESSION_REASON_LINK, 0, "%s: cannot send %s on the bus: %s",
                     t->name, isp_frame_to_string(frame, buf), strerror(-error));
}

static int send_frame(struct session *s, struct session_target *t, const struct isp_can_frame *frame) {
        int r;

        r = session_put_frame(s, frame);
        if (r < 0)
                session_fail_link(s, t, frame, r);
        return r;
}

/* The transport's way onto the bus. */
static int target_send(void *userdata, const struct isp_can_frame *frame, uint64_t *ret_seq) {
        struct session_target *t = userdata;
        int r;

        r = send_frame(t->session, t, frame);
        if (r < 0)
                return r;
        *ret_seq = t->session->seq;
        return 0;
}

/* A request nobody answers (ENTER_ISP) or whose answers are collected
 * apart (DISCOVER, the deselecting CONNECT). */
int send_request_raw(struct session *s, struct session_target *t, const struct isp_request *req) {
        struct isp_can_frame f;
        int r;

        r = isp_request_build(req, &f);
        if (r < 0) {
                session_fail(s, t, SESSION_REASON_INTERNAL, 0, "%s: internal error: cannot build a %s request",
                             t->name, isp_cmd_to_string(req->cmd));
                return r;
        }
        return send_frame(s, t, &f);
}

int target_request(struct session *s, struct session_target *t, const struct isp_request *req, uint64_t timeout_usec) {
        struct pending *p;
        int r;

        if (transport_full(&t->tp)) {
                session_fail(s, t, SESSION_REASON_INTERNAL, 0, "%s: internal error: too many requests in flight", t->name);
                return -ENOBUFS;
        }
        r = transport_add(&t->tp, req, timeout_usec, &p);
        if (r < 0) {
                session_fail(s, t, SESSION_REASON_INTERNAL, 0, "%s: internal error: cannot build a %s request",
                             t->name, isp_cmd_to_string(req->cmd));
                return r;
        }
        return transport_send(&t->tp, p, s->now);
}

void target_reset_requests(struct session_target *t) {
        transport_reset(&t->tp);
}

void set_wait(struct session *s, struct session_target *t, uint64_t usec) {
        t->wait_usec = usec;
        t->wait_deadline = s->now + usec;
}

void clear_wait(struct session_target *t) {
        t->wait_deadline = UINT64_MAX;
}

/* ------------------------------------------------------------------------ */
/* Receiving */

static struct session_target *find_target(struct session *s, uint8_t node) {
        for (unsigned i = 0; i < s->n_targets; i++)
                if (s->targets[i].id == node)
                        return &s->targets[i];
        return NULL;
}

/* The legacy node acts on every request, so a session with it has no
 * other target. */
static struct session_target *legacy_target(struct session *s) {
        return s->n_targets == 1 && s->targets[0].legacy ? &s->targets[0] : NULL;
}

/* A legacy reply while the targets are extended nodes: every one of them
 * stops. */
static void conflict_legacy_all(struct session *s, const struct isp_reply *r_or_null) {
        for (unsigned i = 0; i < s->n_targets; i++)
                if (target_running(&s->targets[i]))
                        conflict_legacy(s, &s->targets[i], r_or_null);
}

static void on_announce(struct session *s, const struct isp_reply *r) {
        struct session_target *t;

        report_node(s, NULL, r->node, r, /* announce= */ true);
        if (s->kind == SESSION_SCAN)
                return;
        t = find_target(s, r->node);
        if (!t || t->legacy || !target_running(t))
                return;
        if (!check_uid(s, t, r->u.info.uid))
                return;
        on_target_announce(s, t);
}

/* A scan's answers carry a UID (INFO, IDENTITY): a second UID on one id
 * is a second board there. Returns false for an answer seen before. */
static bool scan_uid(struct session *s, uint8_t node, const uint8_t uid[4]) {
        if (!bit_test(s->scan_has_uid, node)) {
                bit_set(s->scan_has_uid, node);
                memcpy(s->scan_uid[node], uid, 4);
                return true;
        }
        if (memcmp(s->scan_uid[node], uid, 4) == 0)
                return false;
        if (!bit_test(s->scan_conflict, node)) {
                bit_set(s->scan_conflict, node);
                report_conflict(s, node, s->scan_uid[node], uid);
        }
        return false;
}

static void on_scan_reply(struct session *s, struct session_target *t, const struct isp_reply *r) {
        if (t->step != STEP_DISCOVER || (r->cmd != ISP_CMD_CONNECT && r->cmd != ISP_CMD_IDENTIFY)) {
                session_ignore_reply(s, t, r, "is not an answer to DISCOVER or IDENTIFY");
                return;
        }
        if (r->cmd == ISP_CMD_IDENTIFY) {
                struct session_node_info n = { .node = r->node, .application = true };

                if (r->variant == ISP_IDENTIFY_IDENTITY) {
                        if (!scan_uid(s, r->node, r->u.identity.uid) && bit_test(s->seen_app, r->node)) {
                                session_ignore_reply(s, t, r, "repeats an answer already seen");
                                return;
                        }
                        bit_set(s->seen_app, r->node);
                        n.has_identity = true;
                        n.identity = r->u.identity;
                } else {
                        n.has_about = true;
                        n.about = r->u.about;
                }
                if (s->ops.node_seen)
                        s->ops.node_seen(s->userdata, &n);
                return;
        }
        if (r->node != ISP_NODE_LEGACY)
                (void) scan_uid(s, r->node, r->u.info.uid);
        if (bit_test(t->seen, r->node)) {
                session_ignore_reply(s, t, r, "repeats an answer already seen");
                return;
        }
        report_node(s, t, r->node, r, false);
}

static const char *miss_to_string(enum transport_miss miss) {
        switch (miss) {
        case TRANSPORT_HOLDOFF:           return "during hold-off";
        case TRANSPORT_NO_MATCH:          return "matches no request in flight";
        case TRANSPORT_NOTHING_IN_FLIGHT:
        case TRANSPORT_MATCHED:           break;
        }
        return "with no request in flight";
}

static void on_reply(struct session *s, const struct isp_reply *r) {
        enum transport_miss miss;
        struct session_target *t;
        struct pending *p;

        if (r->cmd == ISP_CMD_ENTER_ISP) {
                on_announce(s, r);
                return;
        }
        if (s->kind == SESSION_SCAN) {
                on_scan_reply(s, &s->targets[0], r);
                return;
        }

        t = find_target(s, r->node);
        if (!t) {
                if (r->node == ISP_NODE_LEGACY)
                        conflict_legacy_all(s, r);
                else if (legacy_target(s))
                        conflict_extended(s, legacy_target(s), r);
                else
                        session_ignore_reply(s, NULL, r, s->n_targets == 1 ? "does not match the target"
                                                                           : "matches no target");
                return;
        }
        if (!target_running(t)) {
                session_ignore_reply(s, t, r, "after its work ended");
                return;
        }
        if (t->step == STEP_DESELECT) {
                session_ignore_reply(s, t, r, "while deselecting");
                return;
        }
        /* Another board answering on this id: nothing more is sent to it. */
        if (r->cmd == ISP_CMD_CONNECT && !t->legacy && !check_uid(s, t, r->u.info.uid))
                return;
        if (r->cmd == ISP_CMD_IDENTIFY) {
                if (t->step == STEP_IDENTIFY || t->step == STEP_BOOT)
                        on_identify_reply(s, t, r);
                else if (r->variant != ISP_IDENTIFY_IDENTITY || check_uid(s, t, r->u.identity.uid))
                        session_ignore_reply(s, t, r, "with no IDENTIFY in flight");
                return;
        }
        if (t->step == STEP_UNIT && unit_on_reply(s, t, r))
                return;
        if (t->step == STEP_WAIT) {
                session_ignore_reply(s, t, r, "while it waits for its turn");
                return;
        }
        if (t->step == STEP_BOOT && r->cmd == ISP_CMD_CONNECT) {
                boot_isp_answered(s, t, r);
                return;
        }
        if (t->step == STEP_COMMIT_SELECT && r->cmd == ISP_CMD_CONNECT) {
                unit_commit_selected(s, t, r);
                return;
        }
        if (r->cmd == ISP_CMD_CONNECT) {
                on_target_connect_reply(s, t, r);
                return;
        }

        p = transport_match(&t->tp, r, s->now, &miss);
        if (!p) {
                session_ignore_reply(s, t, r, miss_to_string(miss));
                return;
        }
        on_target_reply(s, t, p, r);
}

/* An ISP reply ID from node 0 whose payload did not parse: still a legacy
 * reply ("whatever its DLC or data", protocol.md 6). */
static bool is_node0_reply(const struct isp_can_frame *f) {
        unsigned cmd = (f->id & ISP_ID_CMD_MASK) >> ISP_ID_CMD_SHIFT;

        return (f->flags & ISP_FRAME_EXTENDED) && !(f->flags & (ISP_FRAME_FLAG_RTR | ISP_FRAME_FLAG_FD)) &&
               (f->id & ISP_ID_KIND_MASK) == ISP_ID_REPLY && (f->id & ISP_ID_ARG_MASK) == 0 &&
               cmd <= ISP_CMD_REBOOT;
}

static void on_malformed(struct session *s, const struct isp_can_frame *frame, int k) {
        const char *name = session_label(s);
        char buf[ISP_FRAME_STRING_MAX];

        if (k == -ISP_FRAME_STANDARD_ID || k == -ISP_FRAME_RTR || k == -ISP_FRAME_FD || k == -ISP_FRAME_NOT_ISP) {
                /* not a reply at all: other traffic */
                s->stats.ignored_frames++;
                return;
        }
        if (!s->paused && s->kind != SESSION_SCAN && !legacy_target(s) && is_node0_reply(frame)) {
                conflict_legacy_all(s, NULL);
                return;
        }

        s->stats.stray_replies++;
        for (unsigned i = 0; s->kind != SESSION_SCAN && i < s->n_targets; i++) {
                struct session_target *t = &s->targets[i];

                if (!t->legacy && frame->id == isp_reply_id(ISP_CMD_CONNECT, t->id)) {
                        t->malformed_info = true;
                        name = t->name;
                }
        }
        session_log(s, LOG_DEBUG, "%s: malformed reply %s, ignoring", name, isp_frame_to_string(frame, buf));
}

/* A PROGRAM or ERASE request on the bus: this session's own frames are
 * not received back (CAN_RAW_RECV_OWN_MSGS is off), so another host sent
 * it, and every node this session has selected took it. */
static bool is_foreign_request(const struct isp_can_frame *f) {
        unsigned cmd = (f->id & ISP_ID_CMD_MASK) >> ISP_ID_CMD_SHIFT;

        return (f->flags & ISP_FRAME_EXTENDED) && !(f->flags & (ISP_FRAME_FLAG_RTR | ISP_FRAME_FLAG_FD)) &&
               (f->id & ISP_ID_KIND_MASK) == ISP_ID_REQUEST &&
               (cmd == ISP_CMD_PROGRAM || cmd == ISP_CMD_ERASE || cmd == ISP_CMD_CRC);
}

/* A node without ECHO answers another host's CRC in a form that cannot
 * be told from the answer to this session's own CRC. */
static bool targets_without_echo(const struct session *s) {
        for (unsigned i = 0; i < s->n_targets; i++) {
                const struct session_target *t = &s->targets[i];

                if (target_running(t) && !t->legacy && t->connected && !t->echo_on)
                        return true;
        }
        return false;
}

static void on_foreign_request(struct session *s, const struct isp_can_frame *frame) {
        unsigned cmd = (frame->id & ISP_ID_CMD_MASK) >> ISP_ID_CMD_SHIFT;

        if (s->kind != SESSION_FLASH || s->cfg.dry_run || (cmd == ISP_CMD_CRC && !targets_without_echo(s))) {
                s->stats.ignored_frames++;
                return;
        }
        if (s->foreign_writes++ == 0) {
                char raw[ISP_FRAME_STRING_MAX], at[ISP_ADDR_STRING_MAX];

                isp_frame_to_string(frame, raw);
                s->foreign_wrote = cmd != ISP_CMD_CRC;
                if (cmd == ISP_CMD_PROGRAM)
                        snprintf(s->foreign_write, sizeof(s->foreign_write), "PROGRAM at %s (%s)",
                                 isp_offset_to_string(frame->id & ISP_ID_ARG_MASK, at), raw);
                else
                        snprintf(s->foreign_write, sizeof(s->foreign_write), "%s (%s)",
                                 cmd == ISP_CMD_ERASE ? "ERASE" : "CRC", raw);
                session_log(s, LOG_WARNING, "%s: another host sent %s on the bus during this flash: verify will "
                            "check every sector", session_label(s), s->foreign_write);
        }
}

void session_note_rx_dropped(struct session *s, uint32_t n) {
        if (!s || !s->started || s->state != SESSION_RUNNING || s->kind != SESSION_FLASH || s->cfg.dry_run || n == 0)
                return;
        if (s->foreign_writes++ == 0) {
                snprintf(s->foreign_write, sizeof(s->foreign_write), "%u frame(s) the kernel dropped unread", n);
                session_log(s, LOG_WARNING, "%s: the kernel dropped %u received frame(s) during this flash: verify "
                            "will check every sector", session_label(s), n);
        }
}

void session_receive(struct session *s, const struct isp_can_frame *frame, uint64_t now_usec) {
        struct isp_reply r;
        int k;

        if (!s || !frame || !s->started || s->state != SESSION_RUNNING)
                return;
        s->now = now_usec;

        if (is_foreign_request(frame)) {
                on_foreign_request(s, frame);
                return;
        }
        k = isp_reply_parse(frame, &r);
        if (k < 0) {
                on_malformed(s, frame, k);
                session_schedule(s);
                finish_if_done(s);
                return;
        }

        if (s->paused) {
                /* The link is down: whatever this answers is re-sent on
                 * resume. */
                session_ignore_reply(s, s->kind == SESSION_SCAN ? NULL : find_target(s, r.node), &r,
                                     "while the link is down");
                return;
        }

        on_reply(s, &r);
        session_schedule(s);
        finish_if_done(s);
}

/* ------------------------------------------------------------------------ */
/* Time */

uint64_t session_deadline(const struct session *s) {
        uint64_t d = UINT64_MAX;

        if (!s || !s->started || s->paused || s->state != SESSION_RUNNING)
                return UINT64_MAX;

        for (unsigned i = 0; i < s->n_targets; i++) {
                const struct session_target *t = &s->targets[i];
                uint64_t td = transport_deadline(&t->tp);

                if (!target_running(t))
                        continue;
                if (t->wait_deadline < d)
                        d = t->wait_deadline;
                if (td < d)
                        d = td;
        }
        if (unit_deadline(s) < d)
                d = unit_deadline(s);
        return d;
}

static void on_wait_expired(struct session *s, struct session_target *t) {
        clear_wait(t);
        if (t->step == STEP_DISCOVER)
                session_succeed(s, t);
        else
                on_connect_wait_expired(s, t);
}

static void target_timeout(struct session *s, struct session_target *t) {
        struct pending *p;

        if (!target_running(t))
                return;

        p = transport_timeout(&t->tp, s->now, s->cfg.retries);
        if (p) {
                if (t->step == STEP_CONNECT)
                        connect_exhausted(s, t);
                else if (t->step == STEP_IDENTIFY)
                        identify_exhausted(s, t);
                else
                        fail_unanswered(s, t, p);
                return;
        }

        if (target_running(t) && t->wait_deadline <= s->now)
                on_wait_expired(s, t);
}

void session_timeout(struct session *s, uint64_t now_usec) {
        if (!s || !s->started || s->paused || s->state != SESSION_RUNNING)
                return;
        s->now = now_usec;

        for (unsigned i = 0; i < s->n_targets; i++)
                target_timeout(s, &s->targets[i]);
        unit_timeout(s);

        session_schedule(s);
        finish_if_done(s);
}

void session_pause(struct session *s) {
        if (!s || !s->started || s->state != SESSION_RUNNING)
                return;
        s->paused = true;
}

static void target_resume(struct session *s, struct session_target *t) {
        if (!target_running(t))
                return;

        /* Frames and replies may have been lost while the link was down:
         * send again what is in flight. */
        transport_resend_all(&t->tp, s->now);

        if (target_running(t) && t->wait_deadline != UINT64_MAX) {
                if (t->step == STEP_DISCOVER) {
                        struct isp_request req = { .cmd = ISP_CMD_CONNECT, .u.connect.target = ISP_NODE_ALL };
                        (void) send_request_raw(s, t, &req);
                } else
                        connect_resume(s, t);
                set_wait(s, t, t->wait_usec);
        }
}

void session_resume(struct session *s, uint64_t now_usec) {
        if (!s || !s->paused || s->state != SESSION_RUNNING)
                return;
        s->paused = false;
        s->now = now_usec;

        for (unsigned i = 0; i < s->n_targets; i++)
                target_resume(s, &s->targets[i]);
        unit_resume(s);

        session_schedule(s);
        finish_if_done(s);
}

void session_cancel(struct session *s) {
        if (!s || s->state != SESSION_RUNNING)
                return;
        /* Nothing is sent: the entry is written only after everything
         * else verified, so the node is in ISP or still has its old
         * application. */
        for (unsigned i = 0; i < s->n_targets; i++)
                if (target_running(&s->targets[i]))
                        target_end(s, &s->targets[i], SESSION_CANCELLED, SESSION_REASON_CANCELLED);
        /* even where some target failed before: the caller stopped it */
        s->state = SESSION_CANCELLED;
        finish_if_done(s);
}

/* ------------------------------------------------------------------------ */
/* Life cycle */

static int target_init(struct session *s, struct session_target *t, uint8_t id, const char *name) {
        char defname[16];

        *t = (struct session_target) {
                .session = s,
                .id = id,
                .legacy = s->kind != SESSION_SCAN && id == ISP_NODE_LEGACY,
                .state = SESSION_RUNNING,
                .phase = SESSION_PHASE_NONE,
                .step = STEP_IDLE,
                .wait_deadline = UINT64_MAX,
                .connect_round = 1,
                .window = 1,
        };
        if (!name || !*name) {
                if (s->kind == SESSION_SCAN)
                        snprintf(defname, sizeof(defname), "scan");
                else if (t->legacy)
                        snprintf(defname, sizeof(defname), "legacy");
                else
                        snprintf(defname, sizeof(defname), "node%u", id);
                name = defname;
        }
        t->name = strdup(name);
        if (!t->name)
                return -ENOMEM;
        transport_init(&t->tp, target_send, t, &s->stats.retransmissions, &t->retransmissions,
                       &s->stats.timeouts, /* echoes_offset= */ !t->legacy);
        return 0;
}

static int check_targets(enum session_kind kind, const struct session_target_spec *targets, unsigned n_targets) {
        if (kind == SESSION_SCAN)
                return 0;
        if (n_targets == 0 || !targets)
                return -EINVAL;
        for (unsigned i = 0; i < n_targets; i++) {
                if (targets[i].node == ISP_NODE_ALL)
                        return -EINVAL;
                /* the legacy node answers for everyone: it must be alone */
                if (targets[i].node == ISP_NODE_LEGACY && n_targets > 1)
                        return -EINVAL;
                for (unsigned j = 0; j < i; j++)
                        if (targets[j].node == targets[i].node)
                                return -EINVAL;
        }
        return n_targets > ISP_NODE_MAX ? -E2BIG : 0;
}

int session_new_targets(struct session **ret, enum session_kind kind,
                        const struct session_target_spec *targets, unsigned n_targets,
                        const struct isp_image *image, const struct session_config *cfg,
                        const struct session_ops *ops, void *userdata) {
        struct session *s;
        int r;

        if (!ret || !cfg || !ops || !ops->send)
                return -EINVAL;
        if ((unsigned) kind >= _SESSION_KIND_MAX)
                return -EINVAL;
        if ((kind == SESSION_FLASH || kind == SESSION_VERIFY) && !image)
                return -EINVAL;
        if (cfg->timeout_ms == 0)
                return -EINVAL;
        r = check_targets(kind, targets, n_targets);
        if (r < 0)
                return r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->kind = kind;
        s->state = SESSION_RUNNING;
        s->image = kind == SESSION_FLASH || kind == SESSION_VERIFY ? image : NULL;
        s->cfg = *cfg;
        if (s->cfg.window == 0)
                s->cfg.window = 1;
        s->ops = *ops;
        s->userdata = userdata;

        /* A scan has one target standing for whoever answers. */
        s->n_targets = kind == SESSION_SCAN ? 1 : n_targets;
        s->targets = calloc(s->n_targets, sizeof(*s->targets));
        if (!s->targets) {
                free(s);
                return -ENOMEM;
        }
        for (unsigned i = 0; i < s->n_targets; i++) {
                bool named = i < n_targets && targets;

                r = target_init(s, &s->targets[i], kind == SESSION_SCAN ? ISP_NODE_ALL : targets[i].node,
                                named ? targets[i].name : NULL);
                if (r < 0) {
                        session_free(s);
                        return r;
                }
                s->targets[i].app_hint = named && targets[i].application;
        }
        s->unit.m = calloc(s->n_targets, sizeof(*s->unit.m));
        s->unit.all = calloc(s->n_targets, sizeof(*s->unit.all));
        s->unit.class_saved = calloc(s->n_targets, sizeof(*s->unit.class_saved));
        if (!s->unit.m || !s->unit.all || !s->unit.class_saved) {
                session_free(s);
                return -ENOMEM;
        }
        if (s->image) {
                r = plan_init(&s->plan, s->image);
                if (r < 0) {
                        session_free(s);
                        return r;
                }
        }

        *ret = s;
        return 0;
}

int session_new(struct session **ret, enum session_kind kind, uint8_t node, const char *name,
                const struct isp_image *image, const struct session_config *cfg,
                const struct session_ops *ops, void *userdata) {
        struct session_target_spec spec = { .node = node, .name = name };

        return session_new_targets(ret, kind, &spec, 1, image, cfg, ops, userdata);
}

struct session *session_free(struct session *s) {
        if (!s)
                return NULL;
        plan_done(&s->plan);
        unit_free(s);
        for (unsigned i = 0; s->targets && i < s->n_targets; i++) {
                free(s->targets[i].name);
                free(s->targets[i].read_img);
        }
        free(s->targets);
        free(s);
        return NULL;
}

int session_start(struct session *s, uint64_t now_usec) {
        struct session_target *t;

        if (!s)
                return -EINVAL;
        if (s->started || s->state != SESSION_RUNNING)
                return -EBUSY;
        s->started = true;
        s->now = now_usec;

        if (s->kind == SESSION_SCAN) {
                /* Nodes in ISP answer DISCOVER, running applications
                 * IDENTIFY: who, what image, and which version. */
                const struct isp_request reqs[] = {
                        { .cmd = ISP_CMD_CONNECT, .u.connect.target = ISP_NODE_ALL },
                        { .cmd = ISP_CMD_IDENTIFY, .u.identify = { ISP_NODE_ALL, ISP_IDENTIFY_IDENTITY } },
                        { .cmd = ISP_CMD_IDENTIFY, .u.identify = { ISP_NODE_ALL, ISP_IDENTIFY_ABOUT } },
                };

                t = &s->targets[0];
                set_phase(s, t, SESSION_PHASE_DISCOVER);
                t->step = STEP_DISCOVER;
                for (unsigned i = 0; i < ELEMENTSOF(reqs) && target_running(t); i++)
                        (void) send_request_raw(s, t, &reqs[i]);
                if (target_running(t))
                        set_wait(s, t, ms_to_usec(s->cfg.discover_ms));
        } else {
                for (unsigned i = 0; i < s->n_targets; i++)
                        start_connect(s, &s->targets[i]);
                session_schedule(s);
        }

        if (s->state != SESSION_RUNNING) {
                /* Reported through the return value, not the callbacks. */
                s->finish_reported = true;
                for (unsigned i = 0; i < s->n_targets; i++)
                        s->targets[i].reported = true;
                return s->send_error < 0 ? s->send_error : -EIO;
        }
        return 0;
}

enum session_state session_get_state(const struct session *s) {
        return s->state;
}

enum session_phase session_get_phase(const struct session *s) {
        enum session_phase phase = _SESSION_PHASE_MAX;

        for (unsigned i = 0; i < s->n_targets; i++)
                if (target_running(&s->targets[i]) && s->targets[i].phase < phase)
                        phase = s->targets[i].phase;
        return phase != _SESSION_PHASE_MAX ? phase : s->targets[0].phase;
}

const char *session_get_error(const struct session *s) {
        if (s->state != SESSION_FAILED)
                return NULL;
        for (unsigned i = 0; i < s->n_targets; i++)
                if (s->targets[i].state == SESSION_FAILED)
                        return s->targets[i].error;
        return NULL;
}

const struct session_stats *session_get_stats(const struct session *s) {
        return &s->stats;
}

enum session_kind session_get_kind(const struct session *s) {
        return s->kind;
}

const char *session_get_name(const struct session *s) {
        return s->targets[0].name;
}

bool session_get_target_info(const struct session *s, struct session_node_info *ret) {
        struct session_target_result result;

        if (s->kind == SESSION_SCAN || !s->targets[0].connected)
                return false;
        target_result(&s->targets[0], &result);
        *ret = result.info;
        return true;
}

unsigned session_get_n_targets(const struct session *s) {
        return s->kind == SESSION_SCAN ? 0 : s->n_targets;
}

const struct isp_image *session_get_read_image(const struct session *s, unsigned i) {
        if (s->kind != SESSION_READ || i >= s->n_targets || s->targets[i].state != SESSION_SUCCEEDED)
                return NULL;
        return s->targets[i].read_img;
}

bool session_get_target_result(const struct session *s, unsigned i, struct session_target_result *ret) {
        if (i >= session_get_n_targets(s))
                return false;
        target_result(&s->targets[i], ret);
        return true;
}
