/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus.h"
#include "log.h"
#include "manager.h"
#include "stcisp-dbus.h"
#include "util.h"

#define LINE_STATUS_INTERVAL_USEC (1000 * 1000ULL)

static unsigned line_index(Manager *m, const Line *l) {
        for (unsigned i = 0; i < m->n_lines; i++)
                if (m->lines[i] == l)
                        return i;
        return 0;
}

static uint32_t all_lines_mask(Manager *m) {
        return m->n_lines >= 32 ? UINT32_MAX : (1u << m->n_lines) - 1;
}

Line *manager_find_line(Manager *m, const char *interface) {
        for (unsigned i = 0; i < m->n_lines; i++)
                if (strcmp(m->lines[i]->interface, interface) == 0)
                        return m->lines[i];
        return NULL;
}

/* The lines job j runs on, a bit each: every line for a scan (interface
 * NULL), else the lines of its nodes. A line no longer configured has no
 * bit (fail_orphaned_jobs() fails such jobs). */
static uint32_t job_lines(Manager *m, const Job *j) {
        uint32_t mask = 0;

        if (j->kind == SESSION_SCAN && !j->interface) {
                /* Every line that is there: an absent interface (an adapter
                 * not plugged in) has no boards to find, and waiting for it
                 * would hold the scan forever. A part already started stays
                 * in (its line went away meanwhile: it pauses). With every
                 * line absent the scan waits for one, as other jobs do. */
                for (unsigned i = 0; i < m->n_lines; i++)
                        if (!m->lines[i]->absent || (j->lines_started & (1u << i)))
                                mask |= 1u << i;
                return mask ?: all_lines_mask(m);
        }
        if (j->kind == SESSION_SCAN) {
                Line *l = manager_find_line(m, j->interface);

                return l ? 1u << line_index(m, l) : 0;
        }
        for (unsigned i = 0; i < j->n_nodes; i++) {
                Line *l = j->nodes[i].interface ? manager_find_line(m, j->nodes[i].interface) : NULL;

                if (l && job_node_in_stage(j, i))
                        mask |= 1u << line_index(m, l);
        }
        return mask;
}

/* The first line j needs that is not configured, NULL if none. */
static const char *job_missing_line(Manager *m, const Job *j) {
        if (j->kind == SESSION_SCAN)
                return j->interface && !manager_find_line(m, j->interface) ? j->interface : NULL;
        for (unsigned i = 0; i < j->n_nodes; i++)
                if (!j->nodes[i].interface || !manager_find_line(m, j->nodes[i].interface))
                        return j->nodes[i].interface ?: "(none)";
        return NULL;
}

static bool node_on(const struct job_node *n, const Line *l) {
        return n->interface && strcmp(n->interface, l->interface) == 0;
}

Job *manager_find_job(Manager *m, uint32_t id) {
        return job_store_find(m->store, id);
}

unsigned manager_line_queue_length(Manager *m, const Line *l) {
        uint32_t bit = 1u << line_index(m, l);
        unsigned n = 0;

        for (Job *j = m->store->queue_head; j; j = j->next)
                if ((job_lines(m, j) & bit) && !(j->lines_done & bit))
                        n++;
        return n;
}

static void schedule_dispatch(Manager *m) {
        if (m->dispatch)
                (void) sd_event_source_set_enabled(m->dispatch, SD_EVENT_ONESHOT);
}

static bool line_busy(Manager *m) {
        for (unsigned i = 0; i < m->n_lines; i++)
                if (m->lines[i]->job)
                        return true;
        return false;
}

static void arm_line_status(Manager *m) {
        int enabled = SD_EVENT_OFF;

        if (!m->line_status || sd_event_source_get_enabled(m->line_status, &enabled) < 0 || enabled != SD_EVENT_OFF)
                return;
        (void) sd_event_source_set_time_relative(m->line_status, LINE_STATUS_INTERVAL_USEC);
        (void) sd_event_source_set_enabled(m->line_status, SD_EVENT_ONESHOT);
}

static void schedule_nodes_save(Manager *m) {
        if (m->nodes_save)
                (void) sd_event_source_set_enabled(m->nodes_save, SD_EVENT_ONESHOT);
}

/* ---- names: targets.c ---- */

struct targets_context manager_targets(Manager *m) {
        return (struct targets_context) {
                .config = &m->config, .nodes = m->nodes, .lines = m->lines, .n_lines = m->n_lines,
        };
}

char *manager_node_canonical(Manager *m, const Line *line, uint8_t node) {
        struct targets_context c = manager_targets(m);

        return targets_canonical(&c, line, node);
}

char *manager_node_display_name(Manager *m, const Line *line, uint8_t node) {
        struct targets_context c = manager_targets(m);

        return targets_display_name(&c, line, node);
}

int manager_resolve_target(Manager *m, const char *target, struct target *ret, char **ret_why) {
        struct targets_context c = manager_targets(m);

        return targets_resolve_target(&c, target, ret, ret_why);
}

static char *line_list(Manager *m) {
        struct targets_context c = manager_targets(m);

        return targets_line_list(&c);
}

/* ---- the node table ---- */

static NodeEntry *node_get(Manager *m, Line *l, uint8_t node) {
        NodeEntry *e;

        if (node_table_add(m->nodes, l->interface, node, &e) < 0) {
                log_error("%s: out of memory for the node table", l->interface);
                return NULL;
        }
        return e;
}

static void node_changed(Manager *m, Line *l, NodeEntry *e) {
        schedule_nodes_save(m);
        arm_line_status(m);
        bus_emit_node_changed(m, e);
}

static void on_node_seen(void *userdata, Line *l, const struct session_node_info *info) {
        Manager *m = userdata;
        NodeEntry *e;

        /* An ANNOUNCE is one frame anyone can send: on its own it makes no
         * row for an id never configured, never seen answering and not in
         * the running job (issue 12: foreign traffic). */
        if (info->announce && !node_table_find(m->nodes, l->interface, info->node) &&
            !config_node_name(&m->config, info->node) &&
            !(l->job && job_find_node(l->job, l->interface, info->node))) {
                log_debug("%s: node%u announced itself, but was never configured nor seen answering: "
                          "no node-table row until it answers", l->interface, info->node);
                return;
        }
        e = node_get(m, l, info->node);
        if (!e)
                return;
        /* A scan that sees this id answer (again) clears a conflict an
         * earlier job found; a second UID in this one sets it again. */
        if (e->conflict && l->job && l->job->kind == SESSION_SCAN && l->job->id != e->conflict_job &&
            !info->announce) {
                log_info("%s: node%u: one board answers on this id again", l->interface, info->node);
                e->conflict = false;
        }
        if (info->application) {
                /* a running application: IDENTIFY */
                e->known = true;
                e->legacy = false;
                e->state = NODE_APPLICATION;
                if (info->has_identity) {
                        memcpy(e->info.uid, info->identity.uid, 4);
                        e->has_image_crc = true;
                        e->image_crc = info->identity.image_crc;
                }
                if (info->has_about)
                        e->app_version = info->about.app_version;
                e->last_seen_usec = now_usec(CLOCK_REALTIME);
                if (e->first_seen_usec == 0)
                        e->first_seen_usec = e->last_seen_usec;
                node_changed(m, l, e);
                return;
        }
        e->known = true;
        e->legacy = info->legacy;
        if (!info->legacy)
                e->info = info->info;
        e->state = NODE_ISP;
        e->last_seen_usec = now_usec(CLOCK_REALTIME);
        if (e->first_seen_usec == 0)
                e->first_seen_usec = e->last_seen_usec;
        node_changed(m, l, e);
}

static void on_node_conflict(void *userdata, Line *l, Job *j, uint8_t node, const uint8_t a[4], const uint8_t b[4]) {
        Manager *m = userdata;
        NodeEntry *e = node_get(m, l, node);

        if (!e)
                return;
        e->conflict = true;
        memcpy(e->conflict_uids[0], a, 4);
        memcpy(e->conflict_uids[1], b, 4);
        e->conflict_job = j ? j->id : 0;
        node_changed(m, l, e);
}

static void on_job_read(void *userdata, Line *l, Job *j, uint8_t node, const struct isp_image *img) {
        Manager *m = userdata;

        (void) job_store_save_read(m->store, j, img);
}

/* A scan on l ended: nodes in ISP there that did not answer it are gone. */
static void scan_mark_missing(Manager *m, Line *l) {
        for (size_t i = 0; i < m->nodes->n_entries; i++) {
                NodeEntry *e = m->nodes->entries[i];

                /* A board running its application is silent to DISCOVER;
                 * only one whose application answered IDENTIFY before
                 * (it has the helper) is gone when it is silent now. */
                if (strcmp(e->interface, l->interface) != 0 || !e->known ||
                    (e->state != NODE_ISP && !(e->state == NODE_APPLICATION && e->has_image_crc)))
                        continue;
                if (l->seen[e->id / 8] & (1u << (e->id % 8)))
                        continue;
                e->state = NODE_NOT_ANSWERING;
                node_changed(m, l, e);
        }
}

/* A node's flash ended: the node table keeps its result. */
static void record_flash(Manager *m, Line *l, Job *j, const struct job_node *n) {
        NodeEntry *e = node_table_find(m->nodes, l->interface, n->id);

        /* an id that never answered gets no row: there may be no board */
        if (!e && n->state != JOB_SUCCEEDED)
                return;
        if (!e)
                e = node_get(m, l, n->id);
        if (!e)
                return;
        if (n->identified) {
                e->has_image_crc = true;
                e->image_crc = n->image_crc;
        }
        /* a dry run changes nothing; a node left alone keeps its last flash */
        if (j->opt_dry_run || n->outcome == SESSION_OUTCOME_NOT_STARTED) {
                node_changed(m, l, e);
                return;
        }
        if (n->state == JOB_SUCCEEDED && n->outcome == SESSION_OUTCOME_UP_TO_DATE) {
                if (n->boot == SESSION_BOOT_CONFIRMED || !n->identified) {
                        e->has_image_crc = n->boot == SESSION_BOOT_CONFIRMED || e->has_image_crc;
                        if (n->boot == SESSION_BOOT_CONFIRMED)
                                e->image_crc = j->app_crc;
                }
                if (j->opt_reboot || n->identified) {
                        e->known = true;
                        e->state = NODE_APPLICATION;
                }
                node_changed(m, l, e);
                return;
        }
        free(e->last_flash_result);
        if (n->state == JOB_SUCCEEDED)
                e->last_flash_result = strdup("succeeded");
        else if (asprintf(&e->last_flash_result, "%s: %s", job_state_to_string(n->state), strna(n->error)) < 0)
                e->last_flash_result = NULL;
        e->last_flash_usec = now_usec(CLOCK_REALTIME);
        if (n->state == JOB_SUCCEEDED) {
                e->last_flash_crc = j->app_crc;
                e->has_flash_crc = true;
                free(e->last_flash_name);
                e->last_flash_name = j->image_name ? strdup(j->image_name) : NULL;
                if (j->opt_reboot) {
                        e->known = true;
                        e->state = NODE_APPLICATION;
                }
                if (n->boot == SESSION_BOOT_CONFIRMED) {
                        e->has_image_crc = true;
                        e->image_crc = j->app_crc;
                }
        } else if (n->boot == SESSION_BOOT_FAILED && !n->identified) {
                /* it came back in its ISP */
                e->state = NODE_ISP;
        }
        node_changed(m, l, e);
}

static void on_job_target(void *userdata, Line *l, Job *j, const struct session_target_result *r) {
        Manager *m = userdata;
        NodeEntry *e = node_table_find(m->nodes, l->interface, r->node);

        /* The session knows why: a node that did not answer is not
         * answering; a refusal or a failed verify says nothing of that,
         * and neither does a silent ISP when the application answered. */
        if (e && e->known && r->reason == SESSION_REASON_NOT_ANSWERING && !r->identified) {
                e->state = NODE_NOT_ANSWERING;
                node_changed(m, l, e);
        }
        /* each node's end, with its fields, for a job of several */
        if (j->n_nodes > 1) {
                const struct job_node *n = job_find_node(j, l->interface, r->node);
                const struct log_fields f = {
                        .job_id = j->id,
                        .node = n ? n->name : NULL,
                        .interface = l->interface,
                        .phase = session_phase_to_string(r->phase),
                        .result = session_state_to_string(r->state),
                        .message_id = LOG_MESSAGE_NODE_DONE,
                };

                if (r->error)
                        log_job_warning(&f, "Job %u (%s %s): %s %s: %s", j->id, session_kind_to_string(j->kind),
                                        j->target, n ? n->name : "?", session_state_to_string(r->state), r->error);
                else
                        log_job_info(&f, "Job %u (%s %s): %s %s%s%s", j->id, session_kind_to_string(j->kind),
                                     j->target, n ? n->name : "?", session_state_to_string(r->state),
                                     r->outcome ? ", " : "", session_outcome_to_string(r->outcome));
        }
        bus_emit_job_changed(m, j, "Phase", "BytesDone", "BytesTotal", "Nodes", NULL);
}

/* ---- the life of a job ---- */

static void job_finish(Manager *m, Job *j, enum job_state state, const char *error) {
        j->state = state;
        free(j->error);
        j->error = error ? strdup(error) : state == JOB_CANCELLED ? strdup(JOB_CANCELLED_REASON) : NULL;
        error = j->error;
        j->finished_usec = now_usec(CLOCK_REALTIME);
        /* nodes whose part never ran (cancelled, failed to start) end with the job */
        for (unsigned i = 0; i < j->n_nodes; i++)
                if (!job_state_is_final(j->nodes[i].state)) {
                        j->nodes[i].state = state;
                        free(j->nodes[i].error);
                        j->nodes[i].error = error ? strdup(error) : NULL;
                }

        {
                const struct log_fields f = {
                        .job_id = j->id,
                        .node = j->n_nodes == 1 ? j->nodes[0].name : NULL,
                        .interface = j->interface,
                        .phase = session_phase_to_string(j->phase),
                        .result = job_state_to_string(state),
                        .message_id = state == JOB_SUCCEEDED ? LOG_MESSAGE_JOB_FINISHED : LOG_MESSAGE_JOB_FAILED,
                };

                if (error)
                        log_job_warning(&f, "Job %u (%s %s) %s: %s", j->id, session_kind_to_string(j->kind), j->target,
                                        job_state_to_string(state), error);
                else
                        log_job_info(&f, "Job %u (%s %s) %s", j->id, session_kind_to_string(j->kind), j->target,
                                     job_state_to_string(state));
        }

        /* On disk first: a job reported finished never runs again. */
        job_store_finish(m->store, j);
        bus_emit_job_changed(m, j, "State", "Phase", "Error", "FinishedUSec", "Nodes", NULL);
        bus_emit_job_removed(m, j);
        for (unsigned i = 0; i < m->n_lines; i++)
                bus_emit_line_changed(m, m->lines[i], "QueueLength", NULL);
        /* Only now may History= drop it. */
        job_store_trim(m->store);
        schedule_dispatch(m);
}

static void on_job_phase(void *userdata, Line *l, Job *j, const struct job_node *n) {
        Manager *m = userdata;

        /* on disk too, so that after a crash the log says where it was */
        if (j->phase != j->saved_phase) {
                j->saved_phase = j->phase;
                (void) job_store_save(m->store, j);
        }

        if (j->n_nodes > 1 && n)
                log_job_info(&((const struct log_fields) { .job_id = j->id, .node = n->name, .interface = l->interface,
                                                           .phase = session_phase_to_string(n->phase) }),
                             "Job %u (%s %s): %s: %s", j->id, session_kind_to_string(j->kind), j->target, n->name,
                             session_phase_to_string(n->phase));
        else
                log_job_info(&((const struct log_fields) { .job_id = j->id,
                                                           .node = j->n_nodes == 1 ? j->nodes[0].name : NULL,
                                                           .interface = l->interface,
                                                           .phase = session_phase_to_string(j->phase) }),
                             "Job %u (%s %s): %s", j->id, session_kind_to_string(j->kind), j->target,
                             session_phase_to_string(j->phase));
        bus_emit_job_changed(m, j, "Phase", "BytesDone", "BytesTotal", "Nodes", NULL);
}

static void on_job_progress(void *userdata, Line *l, Job *j) {
        bus_emit_job_changed(userdata, j, "BytesDone", "BytesTotal", "Nodes", NULL);
}

/* One line's part of j ended: its nodes' ends go to the node table. */
static void part_done(Manager *m, Line *l, Job *j, enum job_state state, const char *error) {
        for (unsigned i = 0; i < j->n_nodes; i++) {
                struct job_node *n = &j->nodes[i];

                if (!node_on(n, l) || !job_node_in_stage(j, i))
                        continue;
                /* a part that ended without this node's own end (it did
                 * not start, it was cancelled) ends the node alike */
                if (!job_state_is_final(n->state)) {
                        n->state = state;
                        free(n->error);
                        n->error = error && state != JOB_SUCCEEDED ? strdup(error) : NULL;
                }
                /* a cancellation always says why */
                if (n->state == JOB_CANCELLED && !n->error)
                        n->error = strdup(error ?: JOB_CANCELLED_REASON);
                if (j->kind == SESSION_FLASH)
                        record_flash(m, l, j, n);
                else if (j->kind == SESSION_VERIFY && n->identified) {
                        NodeEntry *e = node_get(m, l, n->id);

                        if (e) {
                                e->has_image_crc = true;
                                e->image_crc = n->image_crc;
                                node_changed(m, l, e);
                        }
                }
                else if (j->kind == SESSION_REBOOT && n->state == JOB_SUCCEEDED) {
                        NodeEntry *e = node_get(m, l, n->id);

                        if (e) {
                                e->state = NODE_APPLICATION;
                                node_changed(m, l, e);
                        }
                }
        }
        if (j->kind == SESSION_SCAN && state == JOB_SUCCEEDED)
                scan_mark_missing(m, l);
        if (state != JOB_SUCCEEDED && j->part_state == JOB_SUCCEEDED) {
                j->part_state = state;
                free(j->part_error);
                j->part_error = error ? strdup(error) : NULL;
        }
}

/* The end of a job of several nodes: failed if one failed, and then the
 * first failed node's error (which names it) says why. */
static enum job_state nodes_outcome(Job *j, char **ret_error) {
        const struct job_node *first = NULL;
        unsigned failed = 0;

        for (unsigned i = 0; i < j->n_nodes; i++)
                if (j->nodes[i].state == JOB_FAILED) {
                        failed++;
                        first = first ?: &j->nodes[i];
                }
        if (j->part_state == JOB_CANCELLED || failed == 0) {
                *ret_error = TAKE_PTR(j->part_error);
                return j->part_state;
        }
        if (asprintf(ret_error, "%u of %u nodes failed: %s", failed, j->n_nodes,
                     first->error ?: "(no reason given)") < 0)
                *ret_error = NULL;
        j->part_error = mfree(j->part_error);
        return JOB_FAILED;
}

/* The canaries of j are done: if every one succeeded, the others' turn
 * (true); else they are not started at all. */
static bool canary_next_stage(Manager *m, Job *j) {
        const struct job_node *failed = NULL;

        if (j->kind != SESSION_FLASH || j->opt_canary == 0 || j->opt_canary >= j->n_nodes || j->stage != 0)
                return false;
        for (unsigned i = 0; i < j->opt_canary && !failed; i++)
                if (j->nodes[i].state != JOB_SUCCEEDED)
                        failed = &j->nodes[i];
        if (!failed && j->part_state != JOB_CANCELLED) {
                log_info("Job %u (%s %s): %u canar%s succeeded, now the other %u node%s", j->id,
                         session_kind_to_string(j->kind), j->target, j->opt_canary, j->opt_canary == 1 ? "y" : "ies",
                         j->n_nodes - j->opt_canary, j->n_nodes - j->opt_canary == 1 ? "" : "s");
                j->stage = 1;
                j->lines_started = j->lines_done = 0;
                bus_emit_job_changed(m, j, "Phase", "BytesDone", "BytesTotal", "Nodes", NULL);
                schedule_dispatch(m);
                return true;
        }
        for (unsigned i = j->opt_canary; i < j->n_nodes; i++) {
                struct job_node *n = &j->nodes[i];

                n->state = JOB_CANCELLED;
                n->outcome = SESSION_OUTCOME_NOT_STARTED;
                free(n->error);
                if (asprintf(&n->error, "not started: the canary %s %s", failed ? failed->name : "run",
                             failed ? job_state_to_string(failed->state) : "was cancelled") < 0)
                        n->error = NULL;
        }
        return false;
}

static void on_job_done(void *userdata, Line *l, Job *j, enum job_state state, const char *error) {
        Manager *m = userdata;
        _cleanup_free_ char *e = NULL;
        enum job_state outcome;

        bus_emit_line_changed(m, l, "RunningJob", NULL);

        /* One line's part; the job ends with the last, as the first part
         * that did not succeed. */
        j->lines_done |= 1u << line_index(m, l);
        j->lines_running--;
        part_done(m, l, j, state, error);
        if (j->n_nodes > 1)
                job_summarize_nodes(j);
        if ((j->lines_done & job_lines(m, j)) != job_lines(m, j) || j->lines_running > 0) {
                bus_emit_job_changed(m, j, "Phase", "BytesDone", "BytesTotal", "Nodes", NULL);
                schedule_dispatch(m);
                return;
        }
        if (canary_next_stage(m, j))
                return;
        if (j->n_nodes > 1)
                outcome = nodes_outcome(j, &e);
        else {
                outcome = j->part_state;
                e = TAKE_PTR(j->part_error);
        }
        job_finish(m, j, outcome, e);
}

static void on_line_changed(void *userdata, Line *l) {
        Manager *m = userdata;

        bus_emit_line_changed(m, l, "LinkState", "RunningJob", NULL);
        arm_line_status(m);
        schedule_dispatch(m);
}

static const struct line_ops line_ops = {
        .job_phase = on_job_phase,
        .job_progress = on_job_progress,
        .job_target = on_job_target,
        .job_done = on_job_done,
        .node_seen = on_node_seen,
        .node_conflict = on_node_conflict,
        .job_read = on_job_read,
        .changed = on_line_changed,
};

/* First start (not a later part): running, on disk before the first
 * frame, so that a crash from here on restarts it. */
static int job_begin(Manager *m, Job *j) {
        int r;

        j->state = JOB_RUNNING;
        j->attempts++;
        j->started_usec = now_usec(CLOCK_REALTIME);
        j->phase = SESSION_PHASE_NONE;
        j->bytes_done = j->bytes_total = 0;
        j->error = mfree(j->error);
        j->lines_started = j->lines_done = 0;
        j->lines_running = 0;
        j->part_state = JOB_SUCCEEDED;
        j->part_error = mfree(j->part_error);
        job_reset_nodes(j);
        j->stage = 0;

        r = job_store_save(m->store, j);
        if (r < 0) {
                job_finish(m, j, JOB_FAILED, "cannot save the job's state to disk");
                return r;
        }
        if (job_has_image(j)) {
                _cleanup_free_ char *why = NULL;

                r = job_store_load_image(m->store, j, &why);
                if (r < 0) {
                        job_finish(m, j, JOB_FAILED, why ? why : "the stored image cannot be read");
                        return r;
                }
        }
        bus_emit_job_changed(m, j, "State", "Phase", "StartedUSec", "Attempts", "Nodes", NULL);
        log_job_info(&((const struct log_fields) { .job_id = j->id,
                                                   .node = j->n_nodes == 1 ? j->nodes[0].name : NULL,
                                                   .interface = j->interface,
                                                   .message_id = LOG_MESSAGE_JOB_STARTED }),
                     "Job %u (%s %s) started%s", j->id, session_kind_to_string(j->kind), j->target,
                     j->attempts > 1 ? " again" : "");
        return 0;
}

static void target_specs_free(struct session_target_spec *v, unsigned n) {
        for (unsigned i = 0; i < n; i++)
                free((char *) v[i].name);
        free(v);
}

/* j's nodes on line l, named as messages call them. */
static int target_specs(Manager *m, Line *l, Job *j, struct session_target_spec **ret, unsigned *ret_n) {
        struct session_target_spec *v = calloc(j->n_nodes ?: 1, sizeof(*v));
        unsigned n = 0;

        if (!v)
                return -ENOMEM;
        for (unsigned i = 0; i < j->n_nodes; i++) {
                struct job_node *jn = &j->nodes[i];
                const NodeEntry *e;

                if (!node_on(jn, l) || !job_node_in_stage(j, i))
                        continue;
                e = node_table_find(m->nodes, l->interface, jn->id);
                if (e && e->conflict && j->kind != SESSION_SCAN) {
                        /* two boards on that id: nothing goes to it */
                        char uids[24];

                        node_entry_format_conflict(e, uids);
                        jn->state = JOB_FAILED;
                        free(jn->error);
                        if (asprintf(&jn->error, "%s is claimed by two boards (UIDs %s): give one of them another "
                                     "node id, then 'ispctl scan'; nothing was sent to it", jn->name, uids) < 0)
                                jn->error = NULL;
                        log_warning("Job %u (%s %s): %s", j->id, session_kind_to_string(j->kind), j->target,
                                    strna(jn->error));
                        continue;
                }
                v[n].node = jn->id;
                v[n].application = e && e->known && e->state == NODE_APPLICATION;
                v[n].name = manager_node_display_name(m, l, jn->id);
                if (!v[n++].name) {
                        target_specs_free(v, n);
                        return -ENOMEM;
                }
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

static void job_start_on(Manager *m, Line *l, Job *j) {
        struct session_target_spec *specs = NULL;
        unsigned n = 0;

        if (j->state == JOB_QUEUED && job_begin(m, j) < 0)
                return;
        j->lines_started |= 1u << line_index(m, l);
        j->lines_running++;
        if (j->kind != SESSION_SCAN && target_specs(m, l, j, &specs, &n) < 0) {
                on_job_done(m, l, j, JOB_FAILED, "out of memory starting the job");
                return;
        }
        if (j->kind != SESSION_SCAN && n == 0) {
                /* every node of this part was refused (conflicts) */
                const char *why = NULL;

                for (unsigned i = 0; i < j->n_nodes && !why; i++)
                        if (node_on(&j->nodes[i], l) && j->nodes[i].state == JOB_FAILED)
                                why = j->nodes[i].error;
                target_specs_free(specs, n);
                on_job_done(m, l, j, JOB_FAILED, why ?: "no node to work on");
                return;
        }
        line_start_job(l, j, specs, n);
        target_specs_free(specs, n);
        bus_emit_line_changed(m, l, "RunningJob", NULL);
        arm_line_status(m);
}

/* The first job in queue order that has a part on line l not started yet. */
static Job *next_job_for(Manager *m, Line *l) {
        uint32_t bit = 1u << line_index(m, l);

        for (Job *j = m->store->queue_head; j; j = j->next)
                if ((job_lines(m, j) & bit) && !((j->lines_started | j->lines_done) & bit))
                        return j;
        return NULL;
}

static int on_dispatch(sd_event_source *s, void *userdata) {
        Manager *m = userdata;

        for (unsigned i = 0; i < m->n_lines; i++) {
                Line *l = m->lines[i];
                Job *j;

                if (!line_is_idle(l))
                        continue;
                j = next_job_for(m, l);
                if (!j)
                        continue;
                job_start_on(m, l, j);
                /* job_start_on may have finished jobs: look again */
                schedule_dispatch(m);
                return 0;
        }
        return 0;
}

int manager_enqueue(Manager *m, Job *j) {
        int r;

        j->state = JOB_QUEUED;
        j->created_usec = now_usec(CLOCK_REALTIME);
        r = job_store_enqueue(m->store, j);
        if (r < 0)
                return r;
        log_info("Job %u (%s %s) queued", j->id, session_kind_to_string(j->kind), j->target);
        bus_emit_job_new(m, j);
        for (unsigned i = 0; i < m->n_lines; i++)
                bus_emit_line_changed(m, m->lines[i], "QueueLength", NULL);
        schedule_dispatch(m);
        return 0;
}

int manager_cancel_job(Manager *m, uint32_t id) {
        Job *j = manager_find_job(m, id);
        bool running = false;

        if (!j)
                return -ENOENT;
        if (job_state_is_final(j->state))
                return -EALREADY;
        /* the parts not started yet: never any more */
        j->lines_done |= job_lines(m, j) & ~j->lines_started;
        for (unsigned i = 0; i < m->n_lines; i++)
                if (m->lines[i]->job == j) {
                        running = true;
                        line_cancel_job(m->lines[i]);
                        if (manager_find_job(m, id) != j || job_state_is_final(j->state))
                                break;
                }
        if (!running)
                job_finish(m, j, JOB_CANCELLED, j->state == JOB_QUEUED ? "cancelled before it started" : NULL);
        return 0;
}

/* ---- periodic and deferred work ---- */

static int on_nodes_save(sd_event_source *s, void *userdata) {
        Manager *m = userdata;
        int r = node_table_save(m->nodes);

        if (r < 0)
                log_error_errno(r, "Cannot save the node table in %s: %m", m->config.state_dir);
        return 0;
}

/* The counters are signalled once a second while they move; an idle
 * daemon does not wake up for them. */
static int on_line_status(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        bool moved = false;

        for (unsigned i = 0; i < m->n_lines; i++)
                moved |= bus_emit_line_counters(m, m->lines[i]);
        if (moved || line_busy(m)) {
                (void) sd_event_source_set_time(s, usec + LINE_STATUS_INTERVAL_USEC);
                (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        }
        return 0;
}

/* A queued job for a line that is no longer configured can never run. */
static void fail_orphaned_jobs(Manager *m) {
        Job *next;

        for (Job *j = m->store->queue_head; j; j = next) {
                _cleanup_free_ char *why = NULL, *list = NULL;
                const char *missing;

                next = j->next;
                missing = job_missing_line(m, j);
                if (!missing)
                        continue;
                list = line_list(m);
                if (asprintf(&why, "its line %s is not configured any more (Interface=%s)",
                             missing, strna(list)) < 0)
                        why = NULL;
                job_finish(m, j, JOB_FAILED, why ? why : "its line is not configured any more");
        }
}

/* ---- life cycle ---- */

static int add_lines(Manager *m) {
        _cleanup_free_ struct config_line *lines = NULL;
        unsigned n = 0;
        int r;

        r = config_get_lines(&m->config, &lines, &n);
        if (r < 0)
                return r;
        m->lines = calloc(n, sizeof(*m->lines));
        if (!m->lines) {
                config_lines_free(TAKE_PTR(lines), n);
                return -ENOMEM;
        }
        for (unsigned i = 0; i < n; i++) {
                r = line_new(&m->lines[i], m->event, &lines[i], &m->config.session, &line_ops, m);
                if (r < 0)
                        break;
                m->n_lines++;
        }
        config_lines_free(TAKE_PTR(lines), n);
        return r < 0 ? r : 0;
}

int manager_new(Manager **ret, const struct config *config) {
        Manager *m = calloc(1, sizeof(*m));
        int r;

        if (!m)
                return -ENOMEM;
        m->config = *config;            /* takes the config's allocations */

        r = sd_event_default(&m->event);
        if (r >= 0)
                r = access_init(&m->access, m->config.flash_group);
        if (r >= 0)
                r = add_lines(m);
        if (r >= 0)
                r = sd_event_add_defer(m->event, &m->dispatch, on_dispatch, m);
        if (r >= 0)
                r = sd_event_source_set_enabled(m->dispatch, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_add_defer(m->event, &m->nodes_save, on_nodes_save, m);
        if (r >= 0)
                r = sd_event_source_set_enabled(m->nodes_save, SD_EVENT_OFF);
        if (r < 0) {
                manager_free(m);
                return r;
        }
        *ret = m;
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;

        /* Lines first: a session must not outlive the job it runs. */
        for (unsigned i = 0; i < m->n_lines; i++)
                line_free(m->lines[i]);
        free(m->lines);
        m->link_watch = link_watch_free(m->link_watch);
        sd_event_source_disable_unref(m->dispatch);
        sd_event_source_disable_unref(m->nodes_save);
        sd_event_source_disable_unref(m->line_status);
        m->store = job_store_free(m->store);
        m->nodes = node_table_free(m->nodes);
        sd_bus_flush_close_unref(m->bus);
        access_done(&m->access);
        config_done(&m->config);
        sd_event_unref(m->event);
        free(m);
        return NULL;
}

/* A record from before lines names no interface: its node is on the
 * first line, as the job ran there. */
static void job_loaded(Manager *m, Job *j) {
        j->manager = m;
        for (unsigned i = 0; i < j->n_nodes; i++)
                if (!j->nodes[i].interface && m->n_lines > 0 && !(j->nodes[i].interface = strdup(m->lines[0]->interface)))
                        log_error("Job %u: out of memory", j->id);
}

static int load_state(Manager *m) {
        int r;

        r = job_store_new(&m->store, m->config.state_dir, m->config.history, m->config.max_attempts);
        if (r < 0)
                return r;
        r = job_store_load(m->store);
        if (r < 0)
                return log_error_errno(r, "Cannot load the job queue from %s: %m", m->config.state_dir);
        for (Job *j = m->store->queue_head; j; j = j->next)
                job_loaded(m, j);
        for (Job *j = m->store->history_head; j; j = j->next)
                job_loaded(m, j);
        r = node_table_new(&m->nodes, m->store->state_dir_fd, m->config.state_dir);
        if (r < 0)
                return log_error_errno(r, "Cannot set up the node table: %m");
        r = node_table_load(m->nodes);
        if (r < 0)
                return log_error_errno(r, "Cannot load the node table from %s/nodes.json: %m", m->config.state_dir);
        return 0;
}

static void on_link_event(void *userdata, const struct link_event *ev) {
        Manager *m = userdata;

        for (unsigned i = 0; i < m->n_lines; i++)
                line_link_event(m->lines[i], ev);
}

int manager_start(Manager *m) {
        int r;

        r = load_state(m);
        if (r < 0)
                return r;
        /* Before the lines open, so that no link event falls in between. */
        r = link_watch_new(&m->link_watch, m->event, on_link_event, m);
        if (r < 0)
                log_warning("Cannot watch network interfaces through rtnetlink (%s): absent interfaces are "
                            "looked for every second", strerror(-r));
        for (unsigned i = 0; i < m->n_lines; i++) {
                r = line_open(m->lines[i], m->link_watch != NULL);
                if (r < 0)
                        return r;
        }
        fail_orphaned_jobs(m);

        r = manager_connect_bus(m);
        if (r < 0)
                return r;

        r = sd_event_add_signal(m->event, NULL, SIGTERM, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGINT, NULL, NULL);
        if (r < 0)
                return log_error_errno(r, "Cannot watch signals: %m");
        r = sd_event_add_time_relative(m->event, &m->line_status, CLOCK_MONOTONIC, LINE_STATUS_INTERVAL_USEC,
                                       100 * 1000, on_line_status, m);
        if (r >= 0)
                r = sd_event_source_set_enabled(m->line_status, SD_EVENT_ONESHOT);
        if (r < 0)
                return log_error_errno(r, "Cannot start the line status timer: %m");

        r = sd_event_set_watchdog(m->event, true);
        if (r < 0)
                log_warning_errno(r, "Cannot enable the watchdog, ignoring: %m");
        return 0;
}

/* Called by the bus glue once the name is ours. */
void manager_ready(Manager *m) {
        _cleanup_free_ char *list = line_list(m);

        log_info("Ready: " STCISP_BUS_NAME " on %s, state in %s", strna(list), m->config.state_dir);
        (void) sd_notifyf(false, "READY=1\nSTATUS=Serving %s, %u job(s) queued", strna(list), m->store->queue_len);
        schedule_dispatch(m);
}

int manager_run(Manager *m) {
        int r = sd_event_loop(m->event);

        (void) sd_notify(false, "STOPPING=1\nSTATUS=Shutting down");
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        return 0;
}
