/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "line.h"
#include "link-watch.h"
#include "log.h"
#include "util.h"

#define PROGRESS_INTERVAL_USEC (100 * 1000ULL)  /* BytesDone at most 10 times a second */

static uint64_t now_monotonic(Line *l) {
        uint64_t t;

        if (sd_event_now(l->event, CLOCK_MONOTONIC, &t) < 0)
                t = now_usec(CLOCK_MONOTONIC);
        return t;
}

static void session_rearm(Line *l) {
        uint64_t deadline;

        if (!l->session || !l->session_timer)
                return;
        deadline = session_deadline(l->session);
        if (deadline == UINT64_MAX) {
                (void) sd_event_source_set_enabled(l->session_timer, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_time(l->session_timer, deadline);
        (void) sd_event_source_set_enabled(l->session_timer, SD_EVENT_ONESHOT);
}

static bool session_running(Line *l) {
        return l->session && session_get_state(l->session) == SESSION_RUNNING;
}

static bool job_has_nodes(const Job *j) {
        return j->n_nodes > 1;
}

/* The running job's node with this id on this line, NULL for a scan. */
static struct job_node *job_node(Line *l, uint8_t node) {
        return l->job ? job_find_node(l->job, l->interface, node) : NULL;
}

/* Checkpoints of a QUIET stream unanswered at most where no bus clock
 * paces it: 2 × 64 frames, well within a default socket buffer. */
#define LINE_UNPACED_CHECKPOINTS 2u

/* ---- progress, throttled ---- */

/* The session's per-target figures (sectors, PROGRAM bytes) into the
 * job's nodes; with_end, also the end of targets that ended without
 * target_finished (a session that failed to start). Only where the
 * session may be called: not from inside its callbacks, but finished. */
static void read_target_results(Line *l, bool with_end) {
        unsigned n = l->session ? session_get_n_targets(l->session) : 0;

        for (unsigned i = 0; i < n; i++) {
                struct session_target_result r;
                struct job_node *jn;

                if (!session_get_target_result(l->session, i, &r) || !(jn = job_node(l, r.node)))
                        continue;
                job_node_update(jn, &r, with_end);
        }
        if (l->job && job_has_nodes(l->job))
                job_summarize_nodes(l->job);
}

static void emit_progress(Line *l) {
        l->progress_pending = false;
        l->progress_emitted_usec = now_monotonic(l);
        if (l->job)
                l->ops->job_progress(l->userdata, l, l->job);
}

static int on_progress_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Line *l = userdata;

        if (l->progress_pending) {
                read_target_results(l, /* with_end= */ false);
                emit_progress(l);
        }
        return 0;
}

/* ---- the session's callbacks ---- */

static int session_send(void *userdata, const struct isp_can_frame *frame) {
        Line *l = userdata;
        int r;

        if (!l->link)
                return 0;       /* removed: the session is paused and re-sends when it is back */
        r = can_link_send(l->link, frame);

        /* While the link is down the session is paused and re-sends on resume. */
        return r == -ENETDOWN ? 0 : r;
}

static void session_phase(void *userdata, uint8_t node, enum session_phase phase) {
        Line *l = userdata;
        Job *j = l->job;
        struct job_node *jn = job_node(l, node);

        if (!j)
                return;
        if (l->progress_pending)
                emit_progress(l);
        if (jn && !job_state_is_final(jn->state)) {
                jn->state = JOB_RUNNING;
                jn->phase = phase;
        }
        if (job_has_nodes(j))
                job_summarize_nodes(j);
        else {
                j->phase = phase;
                j->bytes_done = 0;
                j->bytes_total = 0;
        }
        l->ops->job_phase(l->userdata, l, j, jn);
}

static void session_progress(void *userdata, uint8_t node, uint64_t done, uint64_t total) {
        Line *l = userdata;
        Job *j = l->job;
        struct job_node *jn = job_node(l, node);
        uint64_t now;

        if (!j)
                return;
        /* What an engine without per-target figures tells: while it
         * programs, the progress is the PROGRAM bytes. */
        if (jn && jn->phase == SESSION_PHASE_PROGRAM) {
                jn->bytes_done = done;
                jn->bytes_total = total;
        }
        if (job_has_nodes(j))
                job_summarize_nodes(j);
        else {
                j->bytes_done = done;
                j->bytes_total = total;
        }
        now = now_monotonic(l);
        if (done == total || now >= l->progress_emitted_usec + PROGRESS_INTERVAL_USEC) {
                emit_progress(l);
                return;
        }
        if (!l->progress_pending) {
                l->progress_pending = true;
                (void) sd_event_source_set_time(l->progress_timer, l->progress_emitted_usec + PROGRESS_INTERVAL_USEC);
                (void) sd_event_source_set_enabled(l->progress_timer, SD_EVENT_ONESHOT);
        }
}

static void session_node_seen(void *userdata, const struct session_node_info *info) {
        Line *l = userdata;

        if (!info->announce)
                l->seen[info->node / 8] |= (uint8_t) (1u << (info->node % 8));
        l->ops->node_seen(l->userdata, l, info);
}

static void session_node_conflict(void *userdata, uint8_t node, const uint8_t a[4], const uint8_t b[4]) {
        Line *l = userdata;

        l->ops->node_conflict(l->userdata, l, l->job, node, a, b);
}

static void session_target_finished(void *userdata, const struct session_target_result *r) {
        Line *l = userdata;
        struct job_node *jn = job_node(l, r->node);

        if (!l->job)
                return;
        if (l->job->kind == SESSION_READ && r->state == SESSION_SUCCEEDED)
                for (unsigned i = 0; i < session_get_n_targets(l->session); i++) {
                        struct session_target_result ri;
                        const struct isp_image *img = session_get_read_image(l->session, i);

                        if (img && session_get_target_result(l->session, i, &ri) && ri.node == r->node)
                                l->ops->job_read(l->userdata, l, l->job, r->node, img);
                }
        if (jn)
                job_node_update(jn, r, /* with_end= */ true);
        if (job_has_nodes(l->job))
                job_summarize_nodes(l->job);
        l->ops->job_target(l->userdata, l, l->job, r);
}

/* Called from the session's `finished`, where it may be read, or with
 * no session running. */
static void job_done(Line *l, enum job_state state, const char *error) {
        Job *j = l->job;

        if (!j)
                return;
        read_target_results(l, /* with_end= */ true);
        if (l->progress_pending)
                emit_progress(l);
        l->job = NULL;
        /* The session may not be freed from inside its own callback. */
        (void) sd_event_source_set_enabled(l->reap, SD_EVENT_ONESHOT);
        l->ops->job_done(l->userdata, l, j, state, error);
}

static void session_finished(void *userdata, enum session_state state, const char *error) {
        Line *l = userdata;

        job_done(l, state == SESSION_SUCCEEDED ? JOB_SUCCEEDED :
                    state == SESSION_CANCELLED ? JOB_CANCELLED : JOB_FAILED, error);
}

static void session_log(void *userdata, int level, const char *message) {
        Line *l = userdata;
        /* the "<N>" prefix log_internal() takes, N the syslog priority */
        char prefix[] = { '<', (char) ('0' + (level >= LOG_EMERG && level <= LOG_DEBUG ? level : LOG_WARNING)), '>', 0 };

        (void) log_internal(prefix, 0, "%s: %s", l->interface, message);
}

static const struct session_ops session_ops = {
        .send = session_send,
        .phase = session_phase,
        .progress = session_progress,
        .node_seen = session_node_seen,
        .target_finished = session_target_finished,
        .finished = session_finished,
        .log = session_log,
        .node_conflict = session_node_conflict,
};

/* ---- event sources ---- */

static int on_session_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Line *l = userdata;

        if (session_running(l)) {
                session_timeout(l->session, usec);
                session_rearm(l);
        }
        return 0;
}

static int on_reap(sd_event_source *s, void *userdata) {
        Line *l = userdata;

        if (l->session && !session_running(l)) {
                l->session = session_free(l->session);
                (void) sd_event_source_set_enabled(l->session_timer, SD_EVENT_OFF);
        }
        l->ops->changed(l->userdata, l);
        return 0;
}

/* ---- the CAN link's callbacks ---- */

static void on_frame(void *userdata, const struct isp_can_frame *frame) {
        Line *l = userdata;
        struct isp_reply reply;

        if (session_running(l)) {
                /* frames the kernel dropped for us may have been another
                 * host's writes: the session's verify then checks all */
                uint32_t dropped = can_link_rx_dropped(l->link);

                if (dropped != l->rx_dropped_seen) {
                        /* a link attached again counts from 0 */
                        if (dropped > l->rx_dropped_seen)
                                session_note_rx_dropped(l->session, dropped - l->rx_dropped_seen);
                        l->rx_dropped_seen = dropped;
                }
                session_receive(l->session, frame, now_monotonic(l));
                session_rearm(l);
                return;
        }

        if (isp_reply_parse(frame, &reply) < 0)
                return;

        /* Between jobs a late IDENTIFY answer (an application that was
         * still computing its image CRC) still says what a board runs. */
        if (reply.cmd == ISP_CMD_IDENTIFY) {
                struct session_node_info info = {
                        .node = reply.node,
                        .application = true,
                        .has_identity = reply.variant == ISP_IDENTIFY_IDENTITY,
                        .has_about = reply.variant == ISP_IDENTIFY_ABOUT,
                };

                if (info.has_identity)
                        info.identity = reply.u.identity;
                else
                        info.about = reply.u.about;
                l->ops->node_seen(l->userdata, l, &info);
                return;
        }

        /* Between jobs only ANNOUNCE means something: a node (re)started into its ISP. */
        if (reply.cmd == ISP_CMD_ENTER_ISP) {
                struct session_node_info info = {
                        .node = reply.node,
                        .announce = true,
                        .info = reply.u.info,
                };

                log_info("%s: node%u announced itself (ISP firmware %u)", l->interface, reply.node, reply.u.info.firmware);
                l->ops->node_seen(l->userdata, l, &info);
        }
}

static void on_link_changed(void *userdata, bool up) {
        Line *l = userdata;

        if (session_running(l)) {
                if (up)
                        session_resume(l->session, now_monotonic(l));
                else
                        session_pause(l->session);
                session_rearm(l);
        }
        l->ops->changed(l->userdata, l);
}

static const struct can_link_ops link_ops = {
        .frame = on_frame,
        .link_changed = on_link_changed,
};

/* ---- life cycle ---- */

int line_new(Line **ret, sd_event *event, const struct config_line *cfg,
             const struct session_config *session_config, const struct line_ops *ops, void *userdata) {
        Line *l;
        int r;

        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->interface = strdup(cfg->interface);
        if (!l->interface) {
                free(l);
                return -ENOMEM;
        }
        l->bitrate = cfg->bitrate;
        l->restart_ms = cfg->restart_ms;
        l->event = sd_event_ref(event);
        l->session_config = *session_config;
        l->ops = ops;
        l->userdata = userdata;

        r = sd_event_add_time(event, &l->session_timer, CLOCK_MONOTONIC, UINT64_MAX, 1000, on_session_timer, l);
        if (r >= 0)
                r = sd_event_source_set_enabled(l->session_timer, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_add_time(event, &l->progress_timer, CLOCK_MONOTONIC, UINT64_MAX, 10000, on_progress_timer, l);
        if (r >= 0)
                r = sd_event_source_set_enabled(l->progress_timer, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_add_defer(event, &l->reap, on_reap, l);
        if (r >= 0)
                r = sd_event_source_set_enabled(l->reap, SD_EVENT_OFF);
        if (r < 0) {
                line_free(l);
                return r;
        }
        *ret = l;
        return 0;
}

Line *line_free(Line *l) {
        if (!l)
                return NULL;
        l->session = session_free(l->session);
        sd_event_source_disable_unref(l->session_timer);
        sd_event_source_disable_unref(l->progress_timer);
        sd_event_source_disable_unref(l->reap);
        sd_event_source_disable_unref(l->absent_timer);
        l->link = can_link_free(l->link);
        sd_event_unref(l->event);
        free(l->interface);
        free(l);
        return NULL;
}

/* An interface that does not exist yet (a USB adapter not plugged in)
 * is attached when rtnetlink says it appeared, without a restart; where
 * no rtnetlink socket could be had, it is looked for every
 * LINE_ABSENT_POLL_USEC. */
#define LINE_ABSENT_POLL_USEC (1000 * 1000ULL)

static int on_absent_timer(sd_event_source *s, uint64_t usec, void *userdata);

static int attach(Line *l) {
        int r = can_link_new(&l->link, l->event, l->interface, l->bitrate, l->restart_ms, &link_ops, l);

        if (r < 0)
                return r;
        if (l->absent) {
                l->absent = false;
                l->absent_timer = sd_event_source_disable_unref(l->absent_timer);
                log_info("%s: the interface appeared: attached", l->interface);
                /* A job paused when its interface went away goes on. */
                if (session_running(l) && can_link_is_up(l->link)) {
                        session_resume(l->session, now_monotonic(l));
                        session_rearm(l);
                }
        }
        return 0;
}

static int wait_for_interface(Line *l) {
        int r;

        l->absent = true;
        if (l->watched || l->absent_timer)
                return 0;
        r = sd_event_add_time_relative(l->event, &l->absent_timer, CLOCK_MONOTONIC, LINE_ABSENT_POLL_USEC,
                                       100 * 1000, on_absent_timer, l);
        return r < 0 ? log_error_errno(r, "%s: cannot watch for the interface: %m", l->interface) : 0;
}

static int on_absent_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Line *l = userdata;

        if (if_nametoindex(l->interface) == 0 || attach(l) < 0) {
                (void) sd_event_source_set_time_relative(s, LINE_ABSENT_POLL_USEC);
                (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
                return 0;
        }
        l->ops->changed(l->userdata, l);
        return 0;
}

int line_open(Line *l, bool watched) {
        l->watched = watched;
        if (if_nametoindex(l->interface) != 0)
                return attach(l);
        /* Not fatal: the line waits for it, its jobs queue up. */
        log_warning("%s: no such interface (yet): waiting for it to appear ('ip -br link' lists the interfaces; "
                    "check [Bus] Interface= in stcispd.conf or --interface)", l->interface);
        return wait_for_interface(l);
}

void line_link_event(Line *l, const struct link_event *ev) {
        if (ev->ifname && strcmp(ev->ifname, l->interface) != 0)
                return;

        if (!ev->ifname) {
                /* Events were lost: find out for ourselves. */
                if (l->absent && if_nametoindex(l->interface) != 0 && attach(l) >= 0)
                        l->ops->changed(l->userdata, l);
                else if (l->link)
                        can_link_recheck(l->link);
                return;
        }
        if (ev->removed) {
                if (!l->link)
                        return;
                /* Its socket is bound to an index that is gone; a new
                 * interface of that name is a new link. A running job
                 * pauses, as when the link goes down, and goes on when
                 * the interface is back. */
                log_warning("%s: the interface was removed: waiting for it to come back%s", l->interface,
                            l->job ? " (the running job pauses)" : "");
                if (session_running(l)) {
                        session_pause(l->session);
                        session_rearm(l);
                }
                l->link = can_link_free(l->link);
                (void) wait_for_interface(l);
                l->ops->changed(l->userdata, l);
                return;
        }
        if (l->absent) {
                if (attach(l) >= 0)
                        l->ops->changed(l->userdata, l);
                return;
        }
        if (l->link)
                can_link_recheck(l->link);      /* calls on_link_changed() if it moved */
}

bool line_is_up(const Line *l) {
        return l->link && can_link_is_up(l->link);
}

bool line_is_idle(const Line *l) {
        return line_is_up(l) && !l->job && !l->session;
}

void line_start_job(Line *l, Job *j, const struct session_target_spec *targets, unsigned n_targets) {
        struct session_config cfg = l->session_config;
        int r;

        l->job = j;
        l->progress_pending = false;
        memset(l->seen, 0, sizeof(l->seen));
        if (job_has_image(j)) {
                struct can_link_status st;

                cfg.reboot = j->opt_reboot;
                cfg.verify = j->opt_verify;
                cfg.full = j->opt_full || j->opt_force;
                cfg.dry_run = j->opt_dry_run;
                cfg.require_boot = j->opt_require_boot;

                /* On a CAN controller the bus paces a QUIET stream; over an
                 * interface without a bit clock (vcan) the frames reach the
                 * receivers as fast as they are written, and a receiver
                 * reading slower than that loses what its socket buffer
                 * does not hold. Keep the stream's lead within a default
                 * buffer there. */
                can_link_get_status(l->link, /* query_driver= */ true, &st);
                if (st.bitrate == 0 && cfg.stream_checkpoints > LINE_UNPACED_CHECKPOINTS)
                        cfg.stream_checkpoints = LINE_UNPACED_CHECKPOINTS;
        }
        r = session_new_targets(&l->session, j->kind, targets, n_targets,
                                job_has_image(j) ? j->image : NULL, &cfg, &session_ops, l);
        if (r < 0) {
                _cleanup_free_ char *why = NULL;

                if (asprintf(&why, "%s: cannot create a protocol session for %u node%s: %s", l->interface,
                             n_targets, n_targets == 1 ? "" : "s", strerror(-r)) < 0)
                        why = NULL;
                job_done(l, JOB_FAILED, why ?: "cannot create a protocol session");
                return;
        }
        if (l->link)
                l->rx_dropped_seen = can_link_rx_dropped(l->link);
        r = session_start(l->session, now_monotonic(l));
        if (r < 0 && l->job == j)
                /* Reported through the return value, not through finished(). */
                job_done(l, JOB_FAILED, session_get_error(l->session) ?: "cannot start the protocol session");
        session_rearm(l);
}

void line_cancel_job(Line *l) {
        if (!l->job)
                return;
        if (session_running(l))
                /* finished() reports SESSION_CANCELLED */
                session_cancel(l->session);
        if (l->job)
                job_done(l, JOB_CANCELLED, NULL);
}

void line_get_status(Line *l, bool query_driver, struct can_link_status *ret) {
        if (!l->link) {
                /* absent: nothing to ask */
                *ret = (struct can_link_status) {
                        .interface = l->interface,
                        .controller_state = "unknown",
                        .rx_errors = -1,
                        .tx_errors = -1,
                        .last_error = "",
                };
                ret->bitrate = l->bitrate;
                return;
        }
        can_link_get_status(l->link, query_driver, ret);
        if (ret->bitrate == 0)
                ret->bitrate = l->bitrate;
}
