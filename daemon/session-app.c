/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The protocol engine and running applications (docs/protocol.md 4.9):
 * IDENTIFY while connecting (is it running, and what?), two boards on
 * one id, the boot check after REBOOT, and how a target's work ends.
 */

#include <stdio.h>
#include <string.h>

#include "session-internal.h"

/* How long a target listens after an IDENTITY answer for a second board
 * answering on its id, and how often the boot check asks. */
#define IDENTIFY_SETTLE_MS 100u
#define BOOT_POLL_MS 250u

static void format_uid(char buf[static 9], const uint8_t uid[4]) {
        snprintf(buf, 9, "%02X%02X%02X%02X", uid[0], uid[1], uid[2], uid[3]);
}

static uint32_t image_crc(const struct session *s) {
        return s->image ? isp_image_app_crc32(s->image) : 0;
}

void report_conflict(struct session *s, uint8_t node, const uint8_t a[4], const uint8_t b[4]) {
        char sa[9], sb[9];

        format_uid(sa, a);
        format_uid(sb, b);
        session_log(s, LOG_WARNING, "node%u: two boards answer on this id (UIDs %s and %s)", node, sa, sb);
        if (s->ops.node_conflict)
                s->ops.node_conflict(s->userdata, node, a, b);
}

/* The UID t is known by: from its INFO once connected, else from its
 * application's IDENTITY. */
static const uint8_t *known_uid(const struct session_target *t) {
        if (t->connected && !t->legacy)
                return t->info.uid;
        if (t->identified)
                return t->identity.uid;
        return NULL;
}

bool check_uid(struct session *s, struct session_target *t, const uint8_t uid[4]) {
        const uint8_t *mine = known_uid(t);
        char sa[9], sb[9];

        if (!mine || memcmp(mine, uid, 4) == 0)
                return true;

        report_conflict(s, t->id, mine, uid);
        format_uid(sa, mine);
        format_uid(sb, uid);
        target_reset_requests(t);
        session_fail(s, t, SESSION_REASON_CONFLICT, 0,
                     "%s is claimed by two boards (UIDs %s and %s): give one of them another node id, "
                     "then 'ispctl scan'; %s",
                     t->name, sa, sb,
                     t->erase_sent ? "stopped (the commit rule keeps both in ISP)" : "nothing was erased or written");
        return false;
}

/* --- IDENTIFY while connecting --- */

void start_identify(struct session *s, struct session_target *t) {
        struct isp_request req = {
                .cmd = ISP_CMD_IDENTIFY,
                .u.identify = { .target = t->id, .variant = ISP_IDENTIFY_IDENTITY },
        };

        set_phase(s, t, SESSION_PHASE_CONNECT);
        target_reset_requests(t);
        clear_wait(t);
        t->identify_done = true;
        t->step = STEP_IDENTIFY;
        (void) target_request(s, t, &req, ms_to_usec(s->cfg.timeout_ms));
}

void send_enter_isp(struct session *s, struct session_target *t) {
        struct isp_request req = {
                .cmd = ISP_CMD_ENTER_ISP,
                .u.enter_isp.target = t->id,
        };

        target_reset_requests(t);
        if (!t->entered_isp)
                t->identify_before_enter = t->identify_done;
        t->entered_isp = true;
        t->enter_isp_count++;
        t->connect_round = 2;
        t->step = STEP_ENTER_ISP;
        set_phase(s, t, SESSION_PHASE_CONNECT);
        if (send_request_raw(s, t, &req) < 0)
                return;
        set_wait(s, t, ms_to_usec(2ULL * s->cfg.timeout_ms));
}

/* What the running application's answer means for the job. */
static void identify_decide(struct session *s, struct session_target *t) {
        bool same = t->identity.image_crc == image_crc(s);

        clear_wait(t);
        switch (s->kind) {
        case SESSION_VERIFY:
                target_finish_ok(s, t, same ? SESSION_OUTCOME_MATCHES : SESSION_OUTCOME_DIFFERS);
                return;
        case SESSION_FLASH:
                if (same && !s->cfg.full) {
                        /* running the image already: left alone */
                        t->up_to_date = true;
                        target_finish_ok(s, t, SESSION_OUTCOME_UP_TO_DATE);
                        return;
                }
                if (s->cfg.dry_run) {
                        /* it would enter its ISP and get the whole image */
                        plan_erase_sectors(&s->plan, &t->differing);
                        estimate_flash(s, t);
                        target_finish_ok(s, t, SESSION_OUTCOME_WOULD_FLASH);
                        return;
                }
                send_enter_isp(s, t);
                return;
        default:
                send_enter_isp(s, t);
                return;
        }
}

void on_identify_reply(struct session *s, struct session_target *t, const struct isp_reply *r) {
        enum transport_miss miss;
        struct pending *p;

        if (r->variant != ISP_IDENTIFY_IDENTITY) {
                session_ignore_reply(s, t, r, "is not an IDENTITY answer");
                return;
        }
        if (!check_uid(s, t, r->u.identity.uid))
                return;

        if (t->step == STEP_BOOT) {
                /* the application that was just started */
                t->identified = true;
                t->identity = r->u.identity;
                if (s->kind == SESSION_FLASH && r->u.identity.image_crc != image_crc(s)) {
                        t->boot = SESSION_BOOT_FAILED;
                        session_fail(s, t, SESSION_REASON_VERIFY_FAILED, 0,
                                     "%s: boot failed: its application answers with image %08X, "
                                     "the image flashed is %08X", t->name,
                                     (unsigned) r->u.identity.image_crc, (unsigned) image_crc(s));
                        return;
                }
                t->boot = SESSION_BOOT_CONFIRMED;
                if (t->after_lost)
                        session_log(s, LOG_NOTICE, "%s, but its new application answers IDENTIFY with the image: "
                                    "flashed", t->lost_error);
                target_finish_ok(s, t, SESSION_OUTCOME_NONE);
                return;
        }

        p = transport_match(&t->tp, r, s->now, &miss);
        if (p)
                transport_done(&t->tp, p, s->now);
        if (t->identified) {
                /* the same board again */
                session_ignore_reply(s, t, r, "repeats an answer already seen");
                return;
        }
        t->identified = true;
        t->identity = r->u.identity;
        {
                struct session_node_info n = {
                        .node = t->id,
                        .application = true,
                        .has_identity = true,
                        .identity = r->u.identity,
                };

                if (s->ops.node_seen)
                        s->ops.node_seen(s->userdata, &n);
        }
        /* a second board on this id answers right behind it */
        set_wait(s, t, ms_to_usec(IDENTIFY_SETTLE_MS));
}

void identify_exhausted(struct session *s, struct session_target *t) {
        unsigned tries = s->cfg.retries + 1;

        target_reset_requests(t);
        if (t->recheck) {
                /* not back in its application either: the failure as it stands */
                connect_exhausted(s, t);
                return;
        }
        if (!t->connect_tried) {
                /* IDENTIFY came first (it was running): perhaps it is in
                 * its ISP now */
                start_connect(s, t);
                return;
        }
        if (s->kind == SESSION_FLASH && !s->cfg.dry_run) {
                /* a board without the helper may still honour ENTER_ISP */
                send_enter_isp(s, t);
                return;
        }
        session_fail(s, t, SESSION_REASON_NOT_ANSWERING, 0,
                     "%s answered neither CONNECT nor IDENTIFY within %u ms (%u tries each): "
                     "is it powered and on the bus? 'ispctl scan' lists the nodes that answer",
                     t->name, s->cfg.timeout_ms, tries);
}

/* After ENTER_ISP went unanswered: one IDENTIFY (no retransmission: the
 * question is only whether it fell back into its application). */
void start_recheck(struct session *s, struct session_target *t) {
        struct isp_request req = {
                .cmd = ISP_CMD_IDENTIFY,
                .u.identify = { .target = t->id, .variant = ISP_IDENTIFY_IDENTITY },
        };

        target_reset_requests(t);
        t->recheck = true;
        t->identified = false;
        t->step = STEP_IDENTIFY;
        if (send_request_raw(s, t, &req) < 0)
                return;
        set_wait(s, t, ms_to_usec(s->cfg.timeout_ms));
}

/* The IDENTIFY step's wait: the settle after its answer, or (recheck) the
 * answer that did not come. */
void identify_wait_expired(struct session *s, struct session_target *t) {
        if (t->identified)
                identify_decide(s, t);
        else if (t->recheck)
                connect_exhausted(s, t);
}

/* --- the boot after REBOOT --- */

/* CONNECT selects one node and deselects the rest: it may go out only
 * while no other target of the session relies on being selected. */
static bool selection_free(struct session *s, struct session_target *t) {
        for (unsigned i = 0; i < s->n_targets; i++) {
                struct session_target *u = &s->targets[i];

                if (u != t && target_running(u) &&
                    u->step != STEP_BOOT && u->step != STEP_IDENTIFY && u->step != STEP_IDLE)
                        return false;
        }
        return true;
}

/* After the commit's or REBOOT's answers were lost: an application that
 * answers IDENTIFY tells what the board runs; an ISP that answers CONNECT
 * (the board did not start its application) is asked what its entry
 * holds. */
static void look_poll(struct session *s, struct session_target *t) {
        struct isp_request req = { .cmd = ISP_CMD_CONNECT, .u.connect.target = t->id };

        if (t->after_lost && !t->looked && selection_free(s, t))
                (void) send_request_raw(s, t, &req);
}

void boot_poll(struct session *s, struct session_target *t) {
        struct isp_request req = {
                .cmd = ISP_CMD_IDENTIFY,
                .u.identify = { .target = t->id, .variant = ISP_IDENTIFY_IDENTITY },
        };
        uint64_t left = t->boot_until > s->now ? t->boot_until - s->now : 0;
        uint64_t poll = ms_to_usec(BOOT_POLL_MS);

        if (send_request_raw(s, t, &req) < 0)
                return;
        look_poll(s, t);
        set_wait(s, t, left < poll ? left : poll);
}

void boot_isp_answered(struct session *s, struct session_target *t, const struct isp_reply *r) {
        struct isp_request req;

        if (!t->after_lost || t->looked) {
                session_ignore_reply(s, t, r, "while it boots");
                return;
        }
        /* It is in its ISP, selected alone: READ what the commit left at
         * FF:1000. */
        t->looked = true;
        clear_wait(t);
        target_reset_requests(t);
        plan_commit_request(&s->plan, PLAN_COMMIT_CHECK, &req);
        t->step = STEP_LOOK;
        (void) target_request(s, t, &req, target_short_timeout(s, t));
}

void on_look_reply(struct session *s, struct session_target *t, struct pending *p, const struct isp_reply *r) {
        char got_s[32];
        uint8_t expected[8];

        transport_done(&t->tp, p, s->now);
        format_bytes(got_s, sizeof(got_s), r->u.data, NULL, 3);
        plan_commit_expected(&s->plan, expected);
        if (r->status == ISP_STATUS_OK && memcmp(r->u.data, expected, 8) == 0) {
                /* The commit landed, its answers did not: start the new
                 * application as if they had come. */
                session_log(s, LOG_NOTICE, "%s, but its ISP answers and FF:1000 holds the new entry (%s): committed",
                            t->lost_error, got_s);
                t->after_lost = false;
                if (s->cfg.reboot)
                        start_reboot(s, t);
                else
                        target_finish_ok(s, t, SESSION_OUTCOME_FLASHED);
                return;
        }
        t->boot = SESSION_BOOT_FAILED;
        if (r->status != ISP_STATUS_OK)
                session_fail(s, t, SESSION_REASON_NO_REPLY, 0,
                             "%s; its ISP answers, but READ of FF:1000 failed with status %u: %s",
                             t->lost_error, r->status, isp_status_to_string(r->status));
        else
                session_fail(s, t, SESSION_REASON_NO_REPLY, 0,
                             "%s; its ISP answers and FF:1000 reads %s: the entry was not written, the "
                             "board stays in its ISP (every other sector holds the image): flash it again",
                             t->lost_error, got_s);
}

void start_boot_wait(struct session *s, struct session_target *t) {
        set_phase(s, t, SESSION_PHASE_BOOT);
        target_reset_requests(t);
        /* its unit goes on with the others meanwhile */
        t->unit_done = false;
        t->in_unit = false;
        t->identified = false;
        t->step = STEP_BOOT;
        t->boot_until = s->now + ms_to_usec(s->cfg.boot_timeout_ms);
        boot_poll(s, t);
}

void boot_wait_expired(struct session *s, struct session_target *t) {
        if (s->now < t->boot_until) {
                boot_poll(s, t);
                return;
        }
        t->boot = SESSION_BOOT_UNCONFIRMED;
        if (t->after_lost) {
                session_fail(s, t, SESSION_REASON_NO_REPLY, 0,
                             "%s, and no application answered IDENTIFY within %u ms: whether the new image "
                             "runs is unknown (power-cycle the node, then 'ispctl verify')",
                             t->lost_error, s->cfg.boot_timeout_ms);
                return;
        }
        if (s->cfg.require_boot) {
                session_fail(s, t, SESSION_REASON_NO_REPLY, 0,
                             "%s: boot unconfirmed: its application did not answer IDENTIFY within %u ms "
                             "after REBOOT (does it link the application helper? docs/firmware.md)",
                             t->name, s->cfg.boot_timeout_ms);
                return;
        }
        target_finish_ok(s, t, SESSION_OUTCOME_NONE);
}

void boot_announced(struct session *s, struct session_target *t) {
        if (t->after_lost && !t->looked && selection_free(s, t)) {
                /* Reset into its ISP: what does the entry hold? */
                struct isp_request req = { .cmd = ISP_CMD_CONNECT, .u.connect.target = t->id };

                (void) send_request_raw(s, t, &req);
                return;
        }
        t->boot = SESSION_BOOT_FAILED;
        if (t->after_lost) {
                /* reset before the entry was valid: the commit rule kept it in ISP */
                session_fail(s, t, SESSION_REASON_NO_REPLY, 0,
                             "%s, and it came back in its ISP (reset or power cut before the entry was "
                             "written): flash it again", t->lost_error);
                return;
        }
        session_fail(s, t, SESSION_REASON_NO_APPLICATION, 0,
                     "%s: boot failed: it came back in its ISP after REBOOT (the new application did not "
                     "start, or reset itself); it stays in ISP", t->name);
}

/* --- the end --- */

void target_finish_ok(struct session *s, struct session_target *t, enum session_outcome outcome) {
        if (outcome == SESSION_OUTCOME_NONE)
                outcome = t->up_to_date ? SESSION_OUTCOME_UP_TO_DATE :
                          s->kind == SESSION_FLASH ? SESSION_OUTCOME_FLASHED :
                          s->kind == SESSION_READ ? SESSION_OUTCOME_READ :
                          s->kind == SESSION_REBOOT ? SESSION_OUTCOME_REBOOTED : SESSION_OUTCOME_NONE;
        t->outcome = outcome;
        session_succeed(s, t);
}

/* A flash's duration, roughly: its frames at the line's frame time, the
 * erase and CRC times of docs/protocol.md 13.3, and the fixed steps. */
void estimate_flash(struct session *s, struct session_target *t) {
        struct plan_sectors d = t->differing;
        uint64_t bytes = 0, usec;
        unsigned written = 0, erased = 0;

        /* the entry sector is always erased first and written last */
        plan_sectors_add(&d, ENTRY_SECTOR);
        for (unsigned sec = 0; sec < ISP_SECTORS; sec++) {
                if (!plan_sectors_test(&d, sec))
                        continue;
                erased++;
                if (!plan_sectors_test(&s->plan.image_sectors, sec))
                        continue;
                written++;
                for (uint32_t o = sec * ISP_SECTOR_SIZE; o < (sec + 1) * ISP_SECTOR_SIZE; o++)
                        bytes += isp_image_byte_used(s->image, o) ||
                                 (o >= ISP_ENTRY_OFFSET && o < ISP_ENTRY_OFFSET + ISP_ENTRY_SIZE);
        }
        t->sectors_to_erase = erased;
        t->prog_total = bytes;
        t->sectors_written = written;
        usec = (bytes + 7) / 8 * (uint64_t) s->cfg.frame_us;    /* PROGRAM frames */
        usec += (uint64_t) erased * 5 * USEC_PER_MSEC;          /* sector erases */
        usec += (uint64_t) written * SESSION_CRC_MS_PER_SECTOR * USEC_PER_MSEC;     /* verify */
        usec += 150 * USEC_PER_MSEC;                            /* connect, settle, commit, reboot */
        if (t->identified)
                usec += 2ULL * s->cfg.timeout_ms * USEC_PER_MSEC;       /* ENTER_ISP */
        t->estimate_usec = usec;
}
