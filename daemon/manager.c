/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "manager.h"
#include "job-store.h"
#include "util.h"

#define PROGRESS_INTERVAL_USEC (100 * 1000ULL)  /* BytesDone at most 10 times a second */

static uint64_t now_realtime(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

static uint64_t now_monotonic(Manager *m) {
        uint64_t t;
        if (sd_event_now(m->event, CLOCK_MONOTONIC, &t) < 0) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                t = (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
        }
        return t;
}

const char *node_state_to_string(enum node_state s) {
        static const char *const table[_NODE_STATE_MAX] = {
                [NODE_UNKNOWN]        = "unknown",
                [NODE_ISP]            = "isp",
                [NODE_APPLICATION]    = "application",
                [NODE_NOT_ANSWERING]  = "not-answering",
        };
        return s < _NODE_STATE_MAX ? table[s] : "unknown";
}

Job *manager_find_job(Manager *m, uint32_t id) {
        return job_store_find(m->store, id);
}

/* ---- node table ---- */

const char *manager_node_display_name(Manager *m, uint8_t node, char buf[static 16]) {
        const char *name = config_node_name(&m->config, node);

        if (name)
                return name;
        if (node == ISP_NODE_LEGACY)
                return "legacy";
        snprintf(buf, 16, "node%u", node);
        return buf;
}

int manager_resolve_target(Manager *m, const char *target, char **ret_canonical) {
        unsigned long id;
        const char *digits = target;
        char *end;
        int r;

        if (strcmp(target, "legacy") == 0) {
                id = 0;
                goto found;
        }
        r = config_lookup_name(&m->config, target);
        if (r >= 0) {
                id = (unsigned long) r;
                goto found;
        }
        if (strncmp(target, "node", 4) == 0)
                digits = target + 4;
        if (*digits < '0' || *digits > '9')
                return -ENOENT;
        errno = 0;
        id = strtoul(digits, &end, 10);
        if (errno != 0 || *end != '\0' || id < ISP_NODE_MIN || id > ISP_NODE_MAX)
                return -EINVAL;
found:
        if (ret_canonical) {
                if (id == 0)
                        *ret_canonical = strdup("legacy");
                else if (asprintf(ret_canonical, "node%lu", id) < 0)
                        *ret_canonical = NULL;
                if (!*ret_canonical)
                        return -ENOMEM;
        }
        return (int) id;
}

static void node_update_seen(Manager *m, const struct session_node_info *info) {
        Node *n = &m->nodes[info->node];

        n->known = true;
        n->id = info->node;
        n->legacy = info->legacy;
        if (!info->legacy)
                n->info = info->info;
        n->state = NODE_ISP;
        n->last_seen_usec = now_realtime();
        manager_emit_node_changed(m, info->node);
}

/* ---- running a job ---- */

static void session_rearm(Manager *m) {
        uint64_t deadline;

        if (!m->session || !m->session_timer)
                return;
        deadline = session_deadline(m->session);
        if (deadline == UINT64_MAX) {
                (void) sd_event_source_set_enabled(m->session_timer, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_time(m->session_timer, deadline);
        (void) sd_event_source_set_enabled(m->session_timer, SD_EVENT_ONESHOT);
}

static void schedule_dispatch(Manager *m) {
        if (m->dispatch)
                (void) sd_event_source_set_enabled(m->dispatch, SD_EVENT_ONESHOT);
}

static void emit_progress(Manager *m, Job *j) {
        j->progress_pending = false;
        j->progress_emitted_usec = now_monotonic(m);
        manager_emit_job_changed(m, j, "BytesDone", "BytesTotal", NULL);
}

static int on_progress_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        if (m->current && m->current->progress_pending)
                emit_progress(m, m->current);
        return 0;
}

static int session_send(void *userdata, const struct isp_can_frame *frame) {
        Manager *m = userdata;
        int r = can_link_send(m->link, frame);

        /* While the link is down the session is paused and re-sends on resume. */
        return r == -ENETDOWN ? 0 : r;
}

static void session_phase_changed(void *userdata, enum session_phase phase) {
        Manager *m = userdata;
        Job *j = m->current;

        if (!j)
                return;
        if (j->progress_pending)
                emit_progress(m, j);
        j->phase = phase;
        j->bytes_done = 0;
        j->bytes_total = 0;
        log_info("Job %u (%s %s): %s", j->id, session_kind_to_string(j->kind), j->target, session_phase_to_string(phase));
        manager_emit_job_changed(m, j, "Phase", "BytesDone", "BytesTotal", NULL);
}

static void session_progress(void *userdata, uint64_t done, uint64_t total) {
        Manager *m = userdata;
        Job *j = m->current;
        uint64_t now;

        if (!j)
                return;
        j->bytes_done = done;
        j->bytes_total = total;
        now = now_monotonic(m);
        if (done == total || now >= j->progress_emitted_usec + PROGRESS_INTERVAL_USEC) {
                emit_progress(m, j);
                return;
        }
        if (!j->progress_pending) {
                j->progress_pending = true;
                (void) sd_event_source_set_time(m->progress_timer, j->progress_emitted_usec + PROGRESS_INTERVAL_USEC);
                (void) sd_event_source_set_enabled(m->progress_timer, SD_EVENT_ONESHOT);
        }
}

static void session_node_seen(void *userdata, const struct session_node_info *info) {
        node_update_seen(userdata, info);
}

static void job_finish(Manager *m, Job *j, enum job_state state, const char *error) {
        const char *result = job_state_to_string(state);

        if (j->progress_pending)
                emit_progress(m, j);

        j->state = state;
        free(j->error);
        j->error = error ? strdup(error) : NULL;
        j->finished_usec = now_realtime();

        if (j->kind == SESSION_FLASH) {
                Node *n = &m->nodes[j->node];
                free(n->last_flash_result);
                if (state == JOB_SUCCEEDED)
                        n->last_flash_result = strdup("succeeded");
                else if (asprintf(&n->last_flash_result, "%s: %s", result, strna(error)) < 0)
                        n->last_flash_result = NULL;
                n->last_flash_usec = j->finished_usec;
                n->id = j->node;
                if (state == JOB_SUCCEEDED && j->opt_reboot) {
                        n->known = true;
                        n->state = NODE_APPLICATION;
                }
                manager_emit_node_changed(m, j->node);
        }
        if (j->kind == SESSION_REBOOT && state == JOB_SUCCEEDED) {
                m->nodes[j->node].state = NODE_APPLICATION;
                manager_emit_node_changed(m, j->node);
        }
        if (j->kind != SESSION_SCAN && state == JOB_FAILED && j->phase == SESSION_PHASE_CONNECT &&
            m->nodes[j->node].known) {
                m->nodes[j->node].state = NODE_NOT_ANSWERING;
                manager_emit_node_changed(m, j->node);
        }
        if (j->kind == SESSION_SCAN && state == JOB_SUCCEEDED)
                for (unsigned i = 0; i < 256; i++)
                        if (m->nodes[i].known && !m->scan_seen[i] && m->nodes[i].state == NODE_ISP) {
                                m->nodes[i].state = NODE_NOT_ANSWERING;
                                manager_emit_node_changed(m, (uint8_t) i);
                        }

        if (error)
                log_warning("Job %u (%s %s) %s: %s", j->id, session_kind_to_string(j->kind), j->target, result, error);
        else
                log_info("Job %u (%s %s) %s", j->id, session_kind_to_string(j->kind), j->target, result);

        /* Signals first: the store may free j (History=0). */
        manager_emit_job_changed(m, j, "State", "Phase", "Error", "FinishedUSec", NULL);
        manager_emit_job_removed(m, j);
        job_store_finish(m->store, j);
}

static void session_finished(void *userdata, enum session_state state, const char *error) {
        Manager *m = userdata;
        Job *j = m->current;
        enum job_state js = state == SESSION_SUCCEEDED ? JOB_SUCCEEDED :
                            state == SESSION_CANCELLED ? JOB_CANCELLED : JOB_FAILED;

        if (!j)
                return;
        m->current = NULL;
        /* The session is freed from the dispatcher, not from inside its own callback. */
        job_finish(m, j, js, error);
        schedule_dispatch(m);
}

static const struct session_ops session_ops = {
        .send = session_send,
        .phase = session_phase_changed,
        .progress = session_progress,
        .node_seen = session_node_seen,
        .finished = session_finished,
};

static int on_session_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        if (m->session && session_get_state(m->session) == SESSION_RUNNING) {
                session_timeout(m->session, usec);
                session_rearm(m);
        }
        return 0;
}

static void job_start(Manager *m, Job *j) {
        struct session_config cfg = m->config.session;
        char buf[16];
        int r;

        if (j->kind == SESSION_FLASH) {
                _cleanup_free_ char *why = NULL;

                r = job_store_load_image(m->store, j, &why);
                if (r < 0) {
                        job_finish(m, j, JOB_FAILED, why ?: "cannot load the stored image");
                        return;
                }
        }

        j->state = JOB_RUNNING;
        j->attempts++;
        j->started_usec = now_realtime();
        j->phase = SESSION_PHASE_NONE;
        j->bytes_done = j->bytes_total = 0;
        free(j->error);
        j->error = NULL;
        m->current = j;
        if (j->kind == SESSION_SCAN)
                memset(m->scan_seen, 0, sizeof(m->scan_seen));

        /* Running is on disk before the first frame: a crash from here on
         * restarts the job. */
        r = job_store_save(m->store, j);
        if (r < 0) {
                m->current = NULL;
                job_finish(m, j, JOB_FAILED, "cannot save the job's state to disk");
                return;
        }
        manager_emit_job_changed(m, j, "State", "Phase", "StartedUSec", "Attempts", NULL);
        log_info("Job %u (%s %s) started%s", j->id, session_kind_to_string(j->kind), j->target,
                 j->attempts > 1 ? " again" : "");

        if (j->kind == SESSION_FLASH) {
                cfg.reboot = j->opt_reboot;
                cfg.verify = j->opt_verify;
        }
        r = session_new(&m->session, j->kind, j->node, manager_node_display_name(m, j->node, buf),
                        j->kind == SESSION_FLASH ? j->image : NULL, &cfg, &session_ops, m);
        if (r < 0) {
                m->current = NULL;
                job_finish(m, j, JOB_FAILED, "cannot create a protocol session");
                return;
        }
        r = session_start(m->session, now_monotonic(m));
        if (r < 0 && m->current == j) {
                m->current = NULL;
                job_finish(m, j, JOB_FAILED, session_get_error(m->session) ?: "cannot start the protocol session");
        }
        session_rearm(m);
}

static int on_dispatch(sd_event_source *s, void *userdata) {
        Manager *m = userdata;

        if (m->session && (!m->current || session_get_state(m->session) != SESSION_RUNNING)) {
                m->session = session_free(m->session);
                (void) sd_event_source_set_enabled(m->session_timer, SD_EVENT_OFF);
        }
        if (m->current || !m->link || !can_link_is_up(m->link))
                return 0;

        for (Job *j = m->store->queue_head; j; j = j->next)
                if (j->state == JOB_QUEUED) {
                        job_start(m, j);
                        break;
                }
        return 0;
}

int manager_enqueue(Manager *m, Job *j) {
        int r;

        j->manager = m;
        r = job_store_enqueue(m->store, j);
        if (r < 0)
                return r;
        manager_emit_job_new(m, j);
        schedule_dispatch(m);
        return 0;
}

int manager_cancel_job(Manager *m, uint32_t id) {
        Job *j = manager_find_job(m, id);

        if (!j)
                return -ENOENT;
        if (job_state_is_final(j->state))
                return -EALREADY;
        if (j == m->current && m->session) {
                session_cancel(m->session);
                /* the session reports SESSION_CANCELLED through finished() */
                if (m->current == j) {
                        m->current = NULL;
                        job_finish(m, j, JOB_CANCELLED, "cancelled");
                        schedule_dispatch(m);
                }
                return 0;
        }
        job_finish(m, j, JOB_CANCELLED, "cancelled before it started");
        return 0;
}

/* ---- the CAN link's callbacks ---- */

static void on_frame(void *userdata, const struct isp_can_frame *frame) {
        Manager *m = userdata;
        struct isp_reply reply;

        if (isp_reply_parse(frame, &reply) >= 0 && m->current && m->current->kind == SESSION_SCAN)
                m->scan_seen[reply.node] = true;

        if (m->session && session_get_state(m->session) == SESSION_RUNNING) {
                session_receive(m->session, frame, now_monotonic(m));
                session_rearm(m);
                return;
        }

        /* Between jobs only ANNOUNCE means something: a node (re)started into its ISP. */
        if (isp_reply_parse(frame, &reply) >= 0 && reply.cmd == ISP_CMD_ENTER_ISP) {
                struct session_node_info info = { .node = reply.node, .announce = true, .info = reply.u.info };
                log_info("node%u announced itself (ISP firmware %u)", reply.node, reply.u.info.firmware);
                node_update_seen(m, &info);
        }
}

static void on_link_changed(void *userdata, bool up) {
        Manager *m = userdata;

        if (m->session && session_get_state(m->session) == SESSION_RUNNING) {
                if (up)
                        session_resume(m->session, now_monotonic(m));
                else
                        session_pause(m->session);
                session_rearm(m);
        }
        if (up)
                schedule_dispatch(m);
}

static const struct can_link_ops link_ops = {
        .frame = on_frame,
        .link_changed = on_link_changed,
};

/* ---- life cycle ---- */

int manager_new(Manager **ret, const struct config *config) {
        Manager *m = calloc(1, sizeof(*m));
        int r;

        if (!m)
                return -ENOMEM;
        m->config = *config;            /* takes the config's allocations */
        for (unsigned i = 0; i < 256; i++) {
                m->nodes[i].manager = m;
                m->nodes[i].id = (uint8_t) i;
        }

        r = sd_event_default(&m->event);
        if (r < 0)
                goto fail;
        r = sd_event_add_defer(m->event, &m->dispatch, on_dispatch, m);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_enabled(m->dispatch, SD_EVENT_OFF);
        r = sd_event_add_time(m->event, &m->session_timer, CLOCK_MONOTONIC, UINT64_MAX, 1000, on_session_timer, m);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_enabled(m->session_timer, SD_EVENT_OFF);
        r = sd_event_add_time(m->event, &m->progress_timer, CLOCK_MONOTONIC, UINT64_MAX, 10000, on_progress_timer, m);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_enabled(m->progress_timer, SD_EVENT_OFF);

        *ret = m;
        return 0;
fail:
        manager_free(m);
        return r;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;

        m->session = session_free(m->session);
        sd_event_source_disable_unref(m->session_timer);
        sd_event_source_disable_unref(m->progress_timer);
        sd_event_source_disable_unref(m->dispatch);
        m->store = job_store_free(m->store);
        for (unsigned i = 0; i < 256; i++)
                free(m->nodes[i].last_flash_result);
        sd_bus_flush_close_unref(m->bus);
        m->link = can_link_free(m->link);
        config_done(&m->config);
        sd_event_unref(m->event);
        free(m);
        return NULL;
}

int manager_start(Manager *m) {
        int r;

        r = job_store_new(&m->store, m->config.state_dir, m->config.history, MANAGER_MAX_ATTEMPTS);
        if (r < 0)
                return r;
        r = job_store_load(m->store);
        if (r < 0)
                return log_error_errno(r, "Cannot load the job queue from %s: %m", m->config.state_dir);
        for (Job *j = m->store->queue_head; j; j = j->next)
                j->manager = m;
        for (Job *j = m->store->history_head; j; j = j->next)
                j->manager = m;

        r = can_link_new(&m->link, m->event, m->config.interface, m->config.bitrate, m->config.restart_ms,
                         &link_ops, m);
        if (r < 0)
                return r;

        r = manager_connect_bus(m);
        if (r < 0)
                return r;

        r = sd_event_add_signal(m->event, NULL, SIGTERM, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGINT, NULL, NULL);
        if (r < 0)
                return log_error_errno(r, "Cannot watch signals: %m");

        r = sd_event_set_watchdog(m->event, true);
        if (r < 0)
                log_warning_errno(r, "Cannot enable the watchdog, ignoring: %m");
        return 0;
}

int manager_run(Manager *m) {
        int r = sd_event_loop(m->event);

        (void) sd_notify(false, "STOPPING=1\nSTATUS=Shutting down");
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        return 0;
}
