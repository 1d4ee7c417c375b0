/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "util.h"

static const char *const job_state_table[_JOB_STATE_MAX] = {
        [JOB_QUEUED]    = "queued",
        [JOB_RUNNING]   = "running",
        [JOB_SUCCEEDED] = "succeeded",
        [JOB_FAILED]    = "failed",
        [JOB_CANCELLED] = "cancelled",
};

const char *job_state_to_string(enum job_state s) {
        return s < _JOB_STATE_MAX ? job_state_table[s] : "unknown";
}

int job_state_from_string(const char *s) {
        for (int i = 0; i < _JOB_STATE_MAX; i++)
                if (s && strcmp(s, job_state_table[i]) == 0)
                        return i;
        return -EINVAL;
}

bool job_state_is_final(enum job_state s) {
        return s == JOB_SUCCEEDED || s == JOB_FAILED || s == JOB_CANCELLED;
}

Job *job_new(Manager *m, uint32_t id, enum session_kind kind, const char *target, uint8_t node) {
        Job *j = calloc(1, sizeof(*j));

        if (!j)
                return NULL;
        j->manager = m;
        j->id = id;
        j->kind = kind;
        j->node = node;
        j->opt_reboot = j->opt_verify = true;
        j->target = strdup(target);
        if (!j->target)
                return job_free(j);
        return j;
}

static void job_node_done(struct job_node *n) {
        free(n->interface);
        free(n->name);
        free(n->error);
}

int job_add_node(Job *j, const char *interface, uint8_t id, const char *name) {
        struct job_node *v = realloc(j->nodes, (j->n_nodes + 1) * sizeof(*v)), *n;

        if (!v)
                return -ENOMEM;
        j->nodes = v;
        n = &v[j->n_nodes];
        *n = (struct job_node) { .id = id, .state = JOB_QUEUED };
        n->interface = interface ? strdup(interface) : NULL;
        n->name = strdup(name);
        if ((interface && !n->interface) || !n->name) {
                job_node_done(n);
                return -ENOMEM;
        }
        j->n_nodes++;
        return 0;
}

struct job_node *job_find_node(Job *j, const char *interface, uint8_t id) {
        for (unsigned i = 0; i < j->n_nodes; i++)
                if (j->nodes[i].id == id && j->nodes[i].interface && interface &&
                    strcmp(j->nodes[i].interface, interface) == 0)
                        return &j->nodes[i];
        return NULL;
}

void job_reset_nodes(Job *j) {
        for (unsigned i = 0; i < j->n_nodes; i++) {
                struct job_node *n = &j->nodes[i];

                n->state = JOB_QUEUED;
                n->phase = SESSION_PHASE_NONE;
                n->bytes_done = n->bytes_total = 0;
                n->sectors_written = n->sectors_skipped = n->repairs = 0;
                n->error = mfree(n->error);
                n->outcome = SESSION_OUTCOME_NONE;
                n->boot = SESSION_BOOT_NONE;
                n->sectors_to_erase = 0;
                n->estimate_usec = 0;
                memset(n->differing, 0, sizeof(n->differing));
                n->identified = false;
                n->image_crc = 0;
        }
}

static enum job_state job_state_from_session(enum session_state s) {
        return s == SESSION_SUCCEEDED ? JOB_SUCCEEDED :
               s == SESSION_FAILED ? JOB_FAILED :
               s == SESSION_CANCELLED ? JOB_CANCELLED : JOB_RUNNING;
}

void job_node_update(struct job_node *n, const struct session_target_result *r, bool with_end) {
        if (r->bytes_total > 0) {
                n->bytes_done = r->bytes_done;
                n->bytes_total = r->bytes_total;
        }
        n->sectors_written = r->sectors_written;
        n->sectors_skipped = r->sectors_skipped;
        n->repairs = r->repairs;
        n->boot = r->boot;
        n->sectors_to_erase = r->sectors_to_erase;
        n->estimate_usec = r->estimate_usec;
        memcpy(n->differing, r->differing, sizeof(n->differing));
        if (r->identified) {
                n->identified = true;
                n->image_crc = r->image_crc;
        }
        if (!with_end || r->state == SESSION_RUNNING || job_state_is_final(n->state))
                return;
        n->outcome = r->outcome;
        n->state = job_state_from_session(r->state);
        n->phase = r->phase;
        free(n->error);
        n->error = r->error ? strdup(r->error) : NULL;
}

bool job_node_in_stage(const Job *j, unsigned i) {
        if (j->kind != SESSION_FLASH || j->opt_canary == 0 || j->opt_canary >= j->n_nodes)
                return true;
        return j->stage == 0 ? i < j->opt_canary : i >= j->opt_canary;
}

void job_summarize_nodes(Job *j) {
        enum session_phase least = _SESSION_PHASE_MAX;

        j->bytes_done = j->bytes_total = 0;
        for (unsigned i = 0; i < j->n_nodes; i++) {
                const struct job_node *n = &j->nodes[i];

                j->bytes_done += n->bytes_done;
                j->bytes_total += n->bytes_total;
                if (n->state == JOB_RUNNING && n->phase < least)
                        least = n->phase;
        }
        if (least != _SESSION_PHASE_MAX)
                j->phase = least;
}

Job *job_free(Job *j) {
        if (!j)
                return NULL;
        for (unsigned i = 0; i < j->n_nodes; i++)
                job_node_done(&j->nodes[i]);
        free(j->nodes);
        free(j->target);
        free(j->error);
        free(j->interface);
        free(j->image_name);
        free(j->image);
        free(j->part_error);
        free(j);
        return NULL;
}

static json_object *node_to_json(const struct job_node *n) {
        json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        if (n->interface)
                json_object_object_add(o, "interface", json_object_new_string(n->interface));
        json_object_object_add(o, "id", json_object_new_int(n->id));
        json_object_object_add(o, "name", json_object_new_string(n->name));
        json_object_object_add(o, "state", json_object_new_string(job_state_to_string(n->state)));
        json_object_object_add(o, "phase", json_object_new_string(session_phase_to_string(n->phase)));
        json_object_object_add(o, "bytes_done", json_object_new_int64((int64_t) n->bytes_done));
        json_object_object_add(o, "bytes_total", json_object_new_int64((int64_t) n->bytes_total));
        json_object_object_add(o, "sectors_written", json_object_new_int64(n->sectors_written));
        json_object_object_add(o, "sectors_skipped", json_object_new_int64(n->sectors_skipped));
        json_object_object_add(o, "repairs", json_object_new_int64(n->repairs));
        if (n->error)
                json_object_object_add(o, "error", json_object_new_string(n->error));
        if (n->outcome != SESSION_OUTCOME_NONE)
                json_object_object_add(o, "outcome", json_object_new_string(session_outcome_to_string(n->outcome)));
        if (n->boot != SESSION_BOOT_NONE)
                json_object_object_add(o, "boot", json_object_new_string(session_boot_to_string(n->boot)));
        if (n->sectors_to_erase)
                json_object_object_add(o, "sectors_to_erase", json_object_new_int64(n->sectors_to_erase));
        if (n->estimate_usec)
                json_object_object_add(o, "estimate_usec", json_object_new_int64((int64_t) n->estimate_usec));
        if (n->identified)
                json_object_object_add(o, "image_crc", json_object_new_int64(n->image_crc));
        {
                json_object *a = NULL;

                for (unsigned sec = 0; sec < ISP_SECTORS; sec++)
                        if ((n->differing[sec / 8] >> (sec % 8)) & 1) {
                                if (!a)
                                        a = json_object_new_array();
                                if (a)
                                        json_object_array_add(a, json_object_new_int64((int64_t) sec * ISP_SECTOR_SIZE));
                        }
                if (a)
                        json_object_object_add(o, "differing", a);
        }
        return o;
}

char *job_to_json(const Job *j) {
        json_object *o = json_object_new_object();
        char *s;

        if (!o)
                return NULL;
        json_object_object_add(o, "id", json_object_new_int64(j->id));
        json_object_object_add(o, "kind", json_object_new_string(session_kind_to_string(j->kind)));
        json_object_object_add(o, "target", json_object_new_string(j->target));
        json_object_object_add(o, "node", json_object_new_int(j->node));
        json_object_object_add(o, "state", json_object_new_string(job_state_to_string(j->state)));
        json_object_object_add(o, "phase", json_object_new_string(session_phase_to_string(j->phase)));
        json_object_object_add(o, "bytes_done", json_object_new_int64((int64_t) j->bytes_done));
        json_object_object_add(o, "bytes_total", json_object_new_int64((int64_t) j->bytes_total));
        if (j->error)
                json_object_object_add(o, "error", json_object_new_string(j->error));
        json_object_object_add(o, "created_usec", json_object_new_int64((int64_t) j->created_usec));
        json_object_object_add(o, "started_usec", json_object_new_int64((int64_t) j->started_usec));
        json_object_object_add(o, "finished_usec", json_object_new_int64((int64_t) j->finished_usec));
        json_object_object_add(o, "requested_by", json_object_new_int64(j->requested_by));
        json_object_object_add(o, "attempts", json_object_new_int64(j->attempts));
        if (j->interface)
                json_object_object_add(o, "interface", json_object_new_string(j->interface));
        if (j->n_nodes > 0) {
                json_object *a = json_object_new_array();

                for (unsigned i = 0; a && i < j->n_nodes; i++) {
                        json_object *n = node_to_json(&j->nodes[i]);

                        /* a record missing a node would be a different job */
                        if (!n || json_object_array_add(a, n) < 0) {
                                json_object_put(n);
                                json_object_put(a);
                                a = NULL;
                        }
                }
                if (!a) {
                        json_object_put(o);
                        return NULL;
                }
                json_object_object_add(o, "nodes", a);
        }
        if (job_has_image(j)) {
                json_object_object_add(o, "reboot", json_object_new_boolean(j->opt_reboot));
                json_object_object_add(o, "verify", json_object_new_boolean(j->opt_verify));
                json_object_object_add(o, "full", json_object_new_boolean(j->opt_full));
                json_object_object_add(o, "force", json_object_new_boolean(j->opt_force));
                json_object_object_add(o, "dry_run", json_object_new_boolean(j->opt_dry_run));
                json_object_object_add(o, "require_boot", json_object_new_boolean(j->opt_require_boot));
                json_object_object_add(o, "canary", json_object_new_int64(j->opt_canary));
                if (j->image_name)
                        json_object_object_add(o, "image_name", json_object_new_string(j->image_name));
                json_object_object_add(o, "image_crc", json_object_new_int64(j->image_crc));
                json_object_object_add(o, "app_crc", json_object_new_int64(j->app_crc));
        }

        s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
        return s;
}

static int64_t get_int(json_object *o, const char *key, int64_t def) {
        json_object *v;
        return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : def;
}

static const char *get_str(json_object *o, const char *key) {
        json_object *v;
        return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string) ?
               json_object_get_string(v) : NULL;
}

static int phase_from_string(const char *s) {
        for (int p = 0; p < _SESSION_PHASE_MAX; p++)
                if (s && strcmp(session_phase_to_string((enum session_phase) p), s) == 0)
                        return p;
        return SESSION_PHASE_NONE;
}

static unsigned get_unsigned(json_object *o, const char *key) {
        int64_t v = get_int(o, key, 0);

        return v > 0 && v <= UINT32_MAX ? (unsigned) v : 0;
}

/* One entry of "nodes": -EINVAL unless it has an id and a name. */
static int node_from_json(Job *j, json_object *o) {
        const char *name = get_str(o, "name"), *error = get_str(o, "error");
        int64_t id = get_int(o, "id", -1);
        struct job_node *n;
        int state, r;

        if (!json_object_is_type(o, json_type_object) || !name || id < 0 || id > 255)
                return -EINVAL;
        r = job_add_node(j, get_str(o, "interface"), (uint8_t) id, name);
        if (r < 0)
                return r;
        n = &j->nodes[j->n_nodes - 1];
        state = job_state_from_string(get_str(o, "state"));
        n->state = state >= 0 ? (enum job_state) state : JOB_QUEUED;
        n->phase = (enum session_phase) phase_from_string(get_str(o, "phase"));
        n->bytes_done = (uint64_t) get_int(o, "bytes_done", 0);
        n->bytes_total = (uint64_t) get_int(o, "bytes_total", 0);
        n->sectors_written = get_unsigned(o, "sectors_written");
        n->sectors_skipped = get_unsigned(o, "sectors_skipped");
        n->repairs = get_unsigned(o, "repairs");
        if (error && !(n->error = strdup(error)))
                return -ENOMEM;
        for (int k = 0; k < _SESSION_OUTCOME_MAX; k++)
                if (get_str(o, "outcome") && strcmp(get_str(o, "outcome"), session_outcome_to_string((enum session_outcome) k)) == 0)
                        n->outcome = (enum session_outcome) k;
        for (int k = 0; k < _SESSION_BOOT_MAX; k++)
                if (get_str(o, "boot") && strcmp(get_str(o, "boot"), session_boot_to_string((enum session_boot) k)) == 0)
                        n->boot = (enum session_boot) k;
        n->sectors_to_erase = get_unsigned(o, "sectors_to_erase");
        n->estimate_usec = (uint64_t) get_int(o, "estimate_usec", 0);
        {
                json_object *a, *v;

                if (json_object_object_get_ex(o, "image_crc", &v)) {
                        n->identified = true;
                        n->image_crc = (uint32_t) json_object_get_int64(v);
                }
                if (json_object_object_get_ex(o, "differing", &a) && json_object_is_type(a, json_type_array))
                        for (size_t k = 0; k < json_object_array_length(a); k++) {
                                int64_t off = json_object_get_int64(json_object_array_get_idx(a, k));

                                if (off >= 0 && off < ISP_FLASH_SIZE)
                                        n->differing[off / ISP_SECTOR_SIZE / 8] |= (uint8_t) (1u << (off / ISP_SECTOR_SIZE % 8));
                        }
        }
        return 0;
}

/* "nodes", or for a record from before it the one node the record names,
 * which has the job's end. */
static int nodes_from_json(Job *j, json_object *o) {
        json_object *a;
        int r;

        if (j->kind == SESSION_SCAN)
                return 0;
        if (!json_object_object_get_ex(o, "nodes", &a)) {
                r = job_add_node(j, j->interface, j->node, j->target);
                if (r < 0)
                        return r;
                if (job_state_is_final(j->state)) {
                        j->nodes[0].state = j->state;
                        j->nodes[0].phase = j->phase;
                        if (j->error && !(j->nodes[0].error = strdup(j->error)))
                                return -ENOMEM;
                }
                return 0;
        }
        if (!json_object_is_type(a, json_type_array) || json_object_array_length(a) == 0)
                return -EINVAL;
        for (size_t i = 0; i < json_object_array_length(a); i++) {
                r = node_from_json(j, json_object_array_get_idx(a, i));
                if (r < 0)
                        return r;
        }
        return 0;
}

int job_from_json(Manager *m, const char *json, Job **ret) {
        json_object *o = json_tokener_parse(json);
        const char *kind, *target, *state, *error, *interface, *image_name;
        int kind_i = -1, state_i, r;
        int64_t id, node;
        Job *j;

        if (!o || !json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                return -EBADMSG;
        }

        id = get_int(o, "id", 0);
        node = get_int(o, "node", -1);
        kind = get_str(o, "kind");
        target = get_str(o, "target");
        state = get_str(o, "state");
        for (int k = 0; k < _SESSION_KIND_MAX; k++)
                if (kind && strcmp(kind, session_kind_to_string((enum session_kind) k)) == 0)
                        kind_i = k;
        state_i = job_state_from_string(state);
        if (id <= 0 || id > UINT32_MAX || node < 0 || node > 255 || kind_i < 0 || state_i < 0 || !target) {
                json_object_put(o);
                return -EINVAL;
        }

        j = job_new(m, (uint32_t) id, (enum session_kind) kind_i, target, (uint8_t) node);
        if (!j) {
                json_object_put(o);
                return -ENOMEM;
        }
        j->state = (enum job_state) state_i;
        j->phase = (enum session_phase) phase_from_string(get_str(o, "phase"));
        j->bytes_done = (uint64_t) get_int(o, "bytes_done", 0);
        j->bytes_total = (uint64_t) get_int(o, "bytes_total", 0);
        j->created_usec = (uint64_t) get_int(o, "created_usec", 0);
        j->started_usec = (uint64_t) get_int(o, "started_usec", 0);
        j->finished_usec = (uint64_t) get_int(o, "finished_usec", 0);
        j->requested_by = (uint32_t) get_int(o, "requested_by", 0);
        j->attempts = (unsigned) get_int(o, "attempts", 0);
        error = get_str(o, "error");
        if (error && !(j->error = strdup(error)))
                goto oom;
        /* Records from before "interface" existed load with NULL: the
         * manager runs such a flash or reboot job on its first line. */
        interface = get_str(o, "interface");
        if (interface && !(j->interface = strdup(interface)))
                goto oom;
        r = nodes_from_json(j, o);
        if (r < 0) {
                json_object_put(o);
                job_free(j);
                return r;
        }
        if (job_has_image(j)) {
                json_object *v;
                j->opt_reboot = json_object_object_get_ex(o, "reboot", &v) ? json_object_get_boolean(v) : true;
                j->opt_verify = json_object_object_get_ex(o, "verify", &v) ? json_object_get_boolean(v) : true;
                j->opt_full = json_object_object_get_ex(o, "full", &v) && json_object_get_boolean(v);
                j->opt_force = json_object_object_get_ex(o, "force", &v) && json_object_get_boolean(v);
                j->opt_dry_run = json_object_object_get_ex(o, "dry_run", &v) && json_object_get_boolean(v);
                j->opt_require_boot = json_object_object_get_ex(o, "require_boot", &v) && json_object_get_boolean(v);
                j->opt_canary = get_unsigned(o, "canary");
                image_name = get_str(o, "image_name");
                if (image_name && !(j->image_name = strdup(image_name)))
                        goto oom;
                j->image_crc = (uint32_t) get_int(o, "image_crc", 0);
                j->app_crc = (uint32_t) get_int(o, "app_crc", 0);
        }
        json_object_put(o);
        *ret = j;
        return 0;
oom:
        json_object_put(o);
        job_free(j);
        return -ENOMEM;
}
