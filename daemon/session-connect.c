/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The protocol engine: connecting to a target, the conflicts another node
 * answering in its place means, and the target restarting (ANNOUNCE).
 */

#include <stdio.h>

#include "session-internal.h"

/* After the first answer to CONNECT, listen this long (at most; never more
 * than the reply time-out) for a second answer that would be a conflict:
 * a legacy node next to the target, or extended nodes answering a legacy
 * CONNECT. Nothing is erased before it ends. */
#define SESSION_SETTLE_MAX_MS 100u

/* How often the target may restart (ANNOUNCE) during one flash before the
 * session gives up. */
#define SESSION_MAX_RESTARTS 2u

/* CONNECTs to an absent id, to deselect extended nodes a legacy CONNECT
 * selected by mistake. */
#define SESSION_DESELECT_TRIES 3u

void start_connect(struct session *s, struct session_target *t) {
        struct isp_request req = {
                .cmd = ISP_CMD_CONNECT,
                .u.connect.target = t->id,
        };

        /* A board last seen running its application is asked who it is
         * first: it may hold the image already, and a compare must not
         * disturb it. */
        if (t->app_hint && !t->identify_done && !t->legacy &&
            (s->kind == SESSION_FLASH || s->kind == SESSION_VERIFY)) {
                start_identify(s, t);
                return;
        }
        /* Rebooting a board that runs its application restarts it: into
         * its ISP first, then REBOOT. */
        if (t->app_hint && !t->entered_isp && !t->legacy && s->kind == SESSION_REBOOT) {
                send_enter_isp(s, t);
                return;
        }

        for (unsigned i = 0; i < s->n_targets; i++)
                s->targets[i].alone = false;

        set_phase(s, t, SESSION_PHASE_CONNECT);
        target_reset_requests(t);
        clear_wait(t);
        t->connected = false;
        t->connect_tried = true;
        t->step = STEP_CONNECT;
        (void) target_request(s, t, &req, ms_to_usec(s->cfg.timeout_ms));
}

void connect_exhausted(struct session *s, struct session_target *t) {
        unsigned tries = s->cfg.retries + 1;

        target_reset_requests(t);

        if (t->malformed_info) {
                session_fail(s, t, SESSION_REASON_PROTOCOL, 0,
                             "%s answered CONNECT only with malformed INFO (not 8 data bytes): "
                             "is it running an ISP that speaks this protocol?", t->name);
                return;
        }

        /* Not in its ISP: perhaps running its application, which says what
         * it runs (a flash may find it up to date, a compare needs no
         * more). */
        if ((s->kind == SESSION_FLASH || s->kind == SESSION_VERIFY) && !t->legacy && !t->identify_done) {
                start_identify(s, t);
                return;
        }
        if (s->kind == SESSION_VERIFY || (s->kind == SESSION_FLASH && s->cfg.dry_run)) {
                identify_exhausted(s, t);
                return;
        }

        /* An application that takes part restarts into its ISP on ENTER_ISP
         * and ANNOUNCEs itself; a legacy node has neither. */
        if ((s->kind == SESSION_FLASH || s->kind == SESSION_READ || s->kind == SESSION_REBOOT) &&
            !t->legacy && !t->entered_isp) {
                struct isp_request req = {
                        .cmd = ISP_CMD_ENTER_ISP,
                        .u.enter_isp.target = t->id,
                };

                t->entered_isp = true;
                t->connect_round = 2;
                t->step = STEP_ENTER_ISP;
                if (send_request_raw(s, t, &req) < 0)
                        return;
                set_wait(s, t, ms_to_usec(2ULL * s->cfg.timeout_ms));
                return;
        }

        /* No ANNOUNCE and no answer after ENTER_ISP: a reset or power cut
         * then brings a board back into its application (DfuFlag is
         * lost). If it answers IDENTIFY as one, ENTER_ISP once more. */
        if (t->connect_round > 1 && !t->recheck && t->enter_isp_count < 2 &&
            (s->kind == SESSION_FLASH || s->kind == SESSION_READ || s->kind == SESSION_REBOOT)) {
                start_recheck(s, t);
                return;
        }

        if (t->connect_round > 1 && t->enter_isp_count > 1)
                session_fail(s, t, SESSION_REASON_NOT_ANSWERING, 0,
                             "%s did not enter its ISP: after ENTER_ISP it came back running its application "
                             "(a reset or power cut during ENTER_ISP?), and after a second ENTER_ISP it did not "
                             "answer CONNECT within %u ms (%u tries): power-cycle it, then flash it again",
                             t->name, s->cfg.timeout_ms, tries);
        else if (t->connect_round > 1)
                session_fail(s, t, SESSION_REASON_NOT_ANSWERING, 0,
                             "%s did not answer CONNECT within %u ms (%u tries, then %sENTER_ISP and %u more%s): "
                             "is it powered and on the bus? 'ispctl scan' lists the nodes that answer",
                             t->name, s->cfg.timeout_ms, tries, t->identify_before_enter ? "IDENTIFY, " : "", tries,
                             t->recheck ? ", then IDENTIFY" : "");
        else if (t->legacy)
                session_fail(s, t, SESSION_REASON_NOT_ANSWERING, 0,
                             "%s did not answer CONNECT within %u ms (%u tries): "
                             "is it powered, in its ISP and on the bus? 'ispctl scan' lists the nodes that answer",
                             t->name, s->cfg.timeout_ms, tries);
        else
                session_fail(s, t, SESSION_REASON_NOT_ANSWERING, 0,
                             "%s did not answer CONNECT within %u ms (%u tries): "
                             "is it powered and on the bus (a node running its application does not answer)? "
                             "'ispctl scan' lists the nodes that answer",
                             t->name, s->cfg.timeout_ms, tries);
}

static bool target_crc_capable(const struct session_target *t) {
        return !t->legacy && t->connected && (t->info.capabilities & ISP_CAP_CRC);
}

static void after_settle(struct session *s, struct session_target *t) {
        clear_wait(t);
        switch (s->kind) {
        case SESSION_FLASH:
                if (s->cfg.dry_run) {
                        /* no CRC to tell what it holds: the whole image */
                        plan_erase_sectors(&s->plan, &t->differing);
                        estimate_flash(s, t);
                        target_finish_ok(s, t, SESSION_OUTCOME_WOULD_FLASH);
                        return;
                }
                start_erase(s, t);
                return;
        case SESSION_VERIFY:
                session_fail(s, t, SESSION_REASON_PROTOCOL, 0,
                             "%s cannot be compared: its ISP has no CRC command%s", t->name,
                             t->legacy ? " (the legacy node)" : "");
                return;
        case SESSION_READ:
                session_fail(s, t, SESSION_REASON_PROTOCOL, 0,
                             "%s cannot be read back: its ISP has no CRC command to check what was read%s",
                             t->name, t->legacy ? " (the legacy node)" : "");
                return;
        default:
                start_reboot(s, t);
                return;
        }
}

static uint64_t settle_usec(const struct session *s) {
        return ms_to_usec(s->cfg.timeout_ms < SESSION_SETTLE_MAX_MS ? s->cfg.timeout_ms : SESSION_SETTLE_MAX_MS);
}

/* Connected, and it is its turn to work: a node with CRC and sector
 * erase goes into a unit of its own (whose checks overlap the listening
 * for conflicts: nothing is erased before it ends); any other listens,
 * then erases or reboots. */
void after_connected_turn(struct session *s, struct session_target *t) {
        if (t->up_to_date) {
                /* it holds the image: only back into its application */
                if (s->cfg.reboot)
                        start_reboot(s, t);
                else
                        target_finish_ok(s, t, SESSION_OUTCOME_UP_TO_DATE);
                return;
        }
        if (s->kind == SESSION_READ && target_crc_capable(t)) {
                t->step = STEP_SETTLE;
                if (t->settle_until > s->now) {
                        set_wait(s, t, t->settle_until - s->now);
                        return;
                }
                start_read(s, t);
                return;
        }
        if (target_unit_capable(s, t)) {
                unit_start(s, &t, 1, target_quiet_capable(s, t));
                return;
        }
        t->step = STEP_SETTLE;
        if (t->settle_until <= s->now) {
                after_settle(s, t);
                return;
        }
        set_wait(s, t, t->settle_until - s->now);
}

static void on_connected(struct session *s, struct session_target *t, const struct isp_reply *r) {
        target_reset_requests(t);

        if (!t->legacy) {
                if (r->u.info.version != ISP_PROTOCOL_VERSION) {
                        session_fail(s, t, SESSION_REASON_PROTOCOL, 0,
                                     "%s speaks ISP protocol version %u, stcispd speaks version %u: "
                                     "update stcispd or the node's ISP; nothing was sent to it",
                                     t->name, r->u.info.version, ISP_PROTOCOL_VERSION);
                        return;
                }
                t->info = r->u.info;
        }
        t->connected = true;
        t->settle_until = s->now + settle_usec(s);
        for (unsigned i = 0; i < s->n_targets; i++)
                s->targets[i].alone = false;
        t->alone = true;
        if (t->turn) {
                after_connected_turn(s, t);
                return;
        }
        /* session_schedule() decides what comes next */
        t->step = STEP_WAIT;
}

void on_target_connect_reply(struct session *s, struct session_target *t, const struct isp_reply *r) {
        report_node(s, t, r->node, r, false);
        if (t->step == STEP_CONNECT || t->step == STEP_ENTER_ISP) {
                /* In STEP_ENTER_ISP: a late answer to the first round. */
                on_connected(s, t, r);
                return;
        }
        session_ignore_reply(s, t, r, "with no CONNECT in flight");
}

/* --- conflicts --- */

static void deselect_next(struct session *s, struct session_target *t) {
        struct isp_request req = { .cmd = ISP_CMD_CONNECT };
        unsigned id;

        /* An id that did not answer: CONNECT to it (JOIN clear) deselects
         * every other extended node in ISP. */
        for (id = ISP_NODE_MAX; id >= ISP_NODE_MIN; id--)
                if (!bit_test(t->answered, id))
                        break;

        t->deselect_id = (uint8_t) id;
        t->deselect_tries++;
        req.u.connect.target = (uint8_t) id;
        if (send_request_raw(s, t, &req) < 0)
                return;
        set_wait(s, t, ms_to_usec(s->cfg.timeout_ms));
}

static void conflict_fail(struct session *s, struct session_target *t, bool deselected) {
        char other[16];

        snprintf(other, sizeof(other), "node%u", t->conflict_node);
        session_fail(s, t, SESSION_REASON_CONFLICT, 0,
                     "%s: conflict: %s, an extended node, answered %s, so the bus has extended nodes in ISP: "
                     "flash %s by its id, or make the legacy node the only node in ISP on its bus. "
                     "Stopped%s; %s",
                     t->name, other,
                     t->conflict_at_connect ? "the legacy CONNECT" : "while the legacy node was being worked on",
                     other,
                     t->erase_sent ? " (the legacy node stays in ISP)" : " before anything was written",
                     deselected ? "the extended nodes that answered have been deselected again"
                                : "the extended nodes that answered may still be selected");
}

/* A reply from an extended node while the target is the legacy node. The
 * legacy CONNECT (target 0) selects every extended node in ISP, so it
 * answers and would act on everything that follows. */
void conflict_extended(struct session *s, struct session_target *t, const struct isp_reply *r) {
        if (t->step == STEP_DESELECT) {
                if (r->cmd == ISP_CMD_CONNECT && r->node == t->deselect_id) {
                        /* that id exists after all, and is selected now */
                        bit_set(t->answered, r->node);
                        if (t->deselect_tries >= SESSION_DESELECT_TRIES) {
                                conflict_fail(s, t, false);
                                return;
                        }
                        deselect_next(s, t);
                } else
                        session_ignore_reply(s, t, r, "while deselecting");
                return;
        }

        if (r->cmd == ISP_CMD_CONNECT)
                report_node(s, t, r->node, r, false);
        bit_set(t->answered, r->node);
        t->conflict_node = r->node;
        t->conflict_at_connect = t->step == STEP_CONNECT || t->step == STEP_SETTLE;

        /* Nothing more but the deselecting CONNECTs goes out. */
        target_reset_requests(t);
        t->step = STEP_DESELECT;
        t->deselect_tries = 0;
        deselect_next(s, t);
}

/* A legacy reply while the target is an extended node: stop at once. */
void conflict_legacy(struct session *s, struct session_target *t, const struct isp_reply *r_or_null) {
        if (r_or_null && r_or_null->cmd == ISP_CMD_CONNECT)
                report_node(s, t, ISP_NODE_LEGACY, r_or_null, false);
        session_fail(s, t, SESSION_REASON_CONFLICT, 0,
                     "%s: conflict: a legacy node (node id 0) answered on the bus. A legacy node acts on every "
                     "request, so it must be the only node in ISP on its bus; stopped %s",
                     t->name,
                     t->erase_sent ? "(the commit rule keeps the nodes in ISP)" : "before anything was written");
}

/* --- restarts --- */

/* The target restarted into its ISP (power cut or reset): it is no longer
 * selected and what it was doing is gone. During a flash the session
 * connects again and starts over from the erase; the commit rule makes
 * that safe whatever was done before. A node that keeps restarting fails
 * the job after SESSION_MAX_RESTARTS restarts. */
/* One more restart; false (and failed) when it was one too many. */
static bool count_restart(struct session *s, struct session_target *t) {
        t->restarts++;
        s->stats.restarts++;
        if (t->restarts <= SESSION_MAX_RESTARTS)
                return true;
        session_fail(s, t, SESSION_REASON_RESTARTED, 0,
                     "%s restarted %u times during the %s (power cut or reset?): giving up; "
                     "it stays in ISP until an update completes",
                     t->name, t->restarts, session_kind_to_string(s->kind));
        return false;
}

void on_target_announce(struct session *s, struct session_target *t) {
        t->alone = false;
        if (t->in_unit || t->unit_done || t->step == STEP_UNIT) {
                /* It left its unit; it starts over alone after the unit. */
                unit_member_gone(s, t);
                t->unit_done = false;
                t->commit_selecting = false;
                target_reset_requests(t);
                if (!count_restart(s, t))
                        return;
                t->connected = false;
                t->step = STEP_WAIT;
                set_phase(s, t, SESSION_PHASE_CONNECT);
                return;
        }
        switch (t->step) {
        case STEP_BOOT:
                boot_announced(s, t);
                return;
        case STEP_IDENTIFY:
                /* it was in its application and has just reset into ISP */
                start_connect(s, t);
                return;
        case STEP_WAIT:
                /* not selected any more: its unit or its turn connects it again */
                return;
        case STEP_ENTER_ISP:
        case STEP_CONNECT:
        case STEP_SETTLE:
                /* not connected yet, or just: CONNECT (again) right away */
                start_connect(s, t);
                return;

        case STEP_DESELECT:
        case STEP_DISCOVER:
        case STEP_IDLE:
        case STEP_DONE:
                return;

        default:
                break;
        }

        if (count_restart(s, t))
                start_connect(s, t);
}

/* --- waiting --- */

void on_connect_wait_expired(struct session *s, struct session_target *t) {
        switch (t->step) {
        case STEP_ENTER_ISP:
                /* ANNOUNCE missed or never sent: CONNECT again anyway. */
                start_connect(s, t);
                return;
        case STEP_SETTLE:
                if (s->kind == SESSION_READ && target_crc_capable(t))
                        start_read(s, t);
                else
                        after_settle(s, t);
                return;
        case STEP_IDENTIFY:
                identify_wait_expired(s, t);
                return;
        case STEP_BOOT:
                boot_wait_expired(s, t);
                return;
        case STEP_DESELECT:
                /* Nobody answered the absent id: everyone is deselected. */
                conflict_fail(s, t, true);
                return;
        default:
                return;
        }
}

/* The link came back while waiting: what went out unanswered is sent
 * again (the caller re-arms the wait). */
void connect_resume(struct session *s, struct session_target *t) {
        struct isp_request req = { .cmd = ISP_CMD_CONNECT };

        if (t->step == STEP_ENTER_ISP) {
                req = (struct isp_request) { .cmd = ISP_CMD_ENTER_ISP, .u.enter_isp.target = t->id };
                (void) send_request_raw(s, t, &req);
        } else if (t->step == STEP_DESELECT) {
                req.u.connect.target = t->deselect_id;
                (void) send_request_raw(s, t, &req);
        }
}
