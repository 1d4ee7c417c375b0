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

Job *job_free(Job *j) {
        if (!j)
                return NULL;
        free(j->target);
        free(j->error);
        free(j->interface);
        free(j->image_name);
        free(j->image);
        free(j->part_error);
        free(j);
        return NULL;
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
        if (j->kind == SESSION_FLASH) {
                json_object_object_add(o, "reboot", json_object_new_boolean(j->opt_reboot));
                json_object_object_add(o, "verify", json_object_new_boolean(j->opt_verify));
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

int job_from_json(Manager *m, const char *json, Job **ret) {
        json_object *o = json_tokener_parse(json);
        const char *kind, *target, *state, *error, *interface, *image_name;
        int kind_i = -1, state_i;
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
        for (int p = 0; p < _SESSION_PHASE_MAX; p++)
                if (strcmp(session_phase_to_string((enum session_phase) p), strna(get_str(o, "phase"))) == 0)
                        j->phase = (enum session_phase) p;
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
        if (j->kind == SESSION_FLASH) {
                json_object *v;
                j->opt_reboot = json_object_object_get_ex(o, "reboot", &v) ? json_object_get_boolean(v) : true;
                j->opt_verify = json_object_object_get_ex(o, "verify", &v) ? json_object_get_boolean(v) : true;
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
