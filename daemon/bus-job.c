/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Job objects: /org/stcisp/ispd1/job/<id>. Vtable and getters only. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "manager.h"
#include "stcisp-dbus.h"
#include "util.h"

char *bus_job_path(const Job *j) {
        char *p;

        if (asprintf(&p, STCISP_JOB_PREFIX "/%u", j->id) < 0)
                return NULL;
        return p;
}

int bus_job_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                 void **found, sd_bus_error *error) {
        Manager *m = userdata;
        const char *p = path + strlen(STCISP_JOB_PREFIX);
        unsigned long id;
        char *end;
        Job *j;

        if (*p != '/' || p[1] < '1' || p[1] > '9')
                return 0;
        errno = 0;
        id = strtoul(p + 1, &end, 10);
        if (*end || errno != 0 || id > UINT32_MAX)
                return 0;
        j = manager_find_job(m, (uint32_t) id);
        if (!j)
                return 0;
        *found = j;
        return 1;
}

int bus_job_enumerate(sd_bus *bus, const char *path, void *userdata, char ***nodes, sd_bus_error *error) {
        Manager *m = userdata;
        char **l;
        size_t n = 0;

        l = calloc(m->store->queue_len + m->store->history_len + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (Job *j = m->store->history_head; j; j = j->next)
                if ((l[n] = bus_job_path(j)))
                        n++;
        for (Job *j = m->store->queue_head; j; j = j->next)
                if ((l[n] = bus_job_path(j)))
                        n++;
        *nodes = l;
        return 1;
}

#define JOB_PROPERTY(name, sig, expr)                                                           \
        static int property_get_job_##name(sd_bus *bus, const char *path, const char *iface,   \
                                           const char *prop, sd_bus_message *reply,             \
                                           void *userdata, sd_bus_error *error) {               \
                Job *j = userdata;                                                              \
                return sd_bus_message_append(reply, sig, expr);                                 \
        }

JOB_PROPERTY(id, "u", j->id)
JOB_PROPERTY(kind, "s", session_kind_to_string(j->kind))
JOB_PROPERTY(target, "s", j->target)
JOB_PROPERTY(interface, "s", strempty(j->interface))
JOB_PROPERTY(state, "s", job_state_to_string(j->state))
JOB_PROPERTY(phase, "s", session_phase_to_string(j->phase))
JOB_PROPERTY(bytes_done, "t", j->bytes_done)
JOB_PROPERTY(bytes_total, "t", j->bytes_total)
JOB_PROPERTY(error, "s", strempty(j->error))
JOB_PROPERTY(created, "t", j->created_usec)
JOB_PROPERTY(started, "t", j->started_usec)
JOB_PROPERTY(finished, "t", j->finished_usec)
JOB_PROPERTY(attempts, "u", j->attempts)
JOB_PROPERTY(requested_by, "u", j->requested_by)

/* Nodes: a(ssyssttuuusssutau), one entry per node (docs/dbus-api.md). */
static int property_get_job_nodes(sd_bus *bus, const char *path, const char *iface, const char *prop,
                                  sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Job *j = userdata;
        int r;

        r = sd_bus_message_open_container(reply, 'a', "(ssyssttuuusssutau)");
        for (unsigned i = 0; r >= 0 && i < j->n_nodes; i++) {
                const struct job_node *n = &j->nodes[i];

                r = sd_bus_message_open_container(reply, 'r', "ssyssttuuusssutau");
                if (r >= 0)
                        r = sd_bus_message_append(reply, "ssyssttuuusssut", strempty(n->interface), n->name, n->id,
                                                  job_state_to_string(n->state), session_phase_to_string(n->phase),
                                                  n->bytes_done, n->bytes_total, n->sectors_written,
                                                  n->sectors_skipped, n->repairs, strempty(n->error),
                                                  session_outcome_to_string(n->outcome),
                                                  session_boot_to_string(n->boot), n->sectors_to_erase,
                                                  n->estimate_usec);
                if (r >= 0)
                        r = sd_bus_message_open_container(reply, 'a', "u");
                for (unsigned sec = 0; r >= 0 && sec < ISP_SECTORS; sec++)
                        if ((n->differing[sec / 8] >> (sec % 8)) & 1)
                                r = sd_bus_message_append(reply, "u", (uint32_t) (sec * ISP_SECTOR_SIZE));
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
        }
        return r < 0 ? r : sd_bus_message_close_container(reply);
}

int bus_cancel_job(Manager *m, sd_bus_message *msg, uint32_t id, sd_bus_error *error) {
        int r = access_check(&m->access, msg, ACCESS_ACTION_CANCEL, NULL, error);

        if (r != 0)
                return r;
        r = manager_cancel_job(m, id);
        if (r == -ENOENT)
                return sd_bus_error_setf(error, STCISP_ERROR_NO_SUCH_JOB, "No job %u: 'ispctl jobs' lists the jobs", id);
        if (r == -EALREADY)
                return sd_bus_error_setf(error, STCISP_ERROR_JOB_FINISHED, "Job %u has already finished", id);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_job_get_image(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ char *text = NULL;
        Job *j = userdata;
        size_t len = 0;
        int r;

        /* a node's firmware: for those who may read it off the bus */
        r = access_check(&j->manager->access, msg, ACCESS_ACTION_READ, NULL, error);
        if (r != 0)
                return r;
        if (j->kind != SESSION_READ || j->state != JOB_SUCCEEDED)
                return sd_bus_error_setf(error, STCISP_ERROR_NO_IMAGE,
                                         "Job %u is a %s job that %s: only a read job that succeeded has an image",
                                         j->id, session_kind_to_string(j->kind),
                                         j->state == JOB_SUCCEEDED ? "succeeded" : "did not succeed");
        r = job_store_load_read(j->manager->store, j, &text, &len);
        if (r < 0)
                return sd_bus_error_setf(error, STCISP_ERROR_NO_IMAGE, "What job %u read is no longer stored: %s",
                                         j->id, strerror(-r));
        r = sd_bus_message_new_method_return(msg, &reply);
        if (r >= 0)
                r = sd_bus_message_append_array(reply, 'y', text, len);
        if (r < 0)
                return r;
        return sd_bus_message_send(reply);
}

static int method_job_cancel(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Job *j = userdata;

        return bus_cancel_job(j->manager, msg, j->id, error);
}

const sd_bus_vtable bus_job_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "u", property_get_job_id, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Kind", "s", property_get_job_kind, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Target", "s", property_get_job_target, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Interface", "s", property_get_job_interface, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("State", "s", property_get_job_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Phase", "s", property_get_job_phase, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("BytesDone", "t", property_get_job_bytes_done, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("BytesTotal", "t", property_get_job_bytes_total, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Error", "s", property_get_job_error, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("CreatedUSec", "t", property_get_job_created, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("StartedUSec", "t", property_get_job_started, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("FinishedUSec", "t", property_get_job_finished, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Attempts", "u", property_get_job_attempts, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("RequestedBy", "u", property_get_job_requested_by, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Nodes", "a(ssyssttuuusssutau)", property_get_job_nodes, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_METHOD_WITH_ARGS("GetImage", SD_BUS_NO_ARGS, SD_BUS_RESULT("ay", image),
                                method_job_get_image, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Cancel", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT,
                                method_job_cancel, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};

/* ---- signals ---- */

void bus_emit_job_new(Manager *m, Job *j) {
        _cleanup_free_ char *path = bus_job_path(j);

        if (m->bus && path)
                (void) sd_bus_emit_signal(m->bus, STCISP_OBJECT_PATH, STCISP_MANAGER_IFACE, "JobNew", "uos",
                                          j->id, path, j->target);
}

void bus_emit_job_removed(Manager *m, Job *j) {
        _cleanup_free_ char *path = bus_job_path(j);

        if (m->bus && path)
                (void) sd_bus_emit_signal(m->bus, STCISP_OBJECT_PATH, STCISP_MANAGER_IFACE, "JobRemoved", "uoss",
                                          j->id, path, j->target, job_state_to_string(j->state));
}

void bus_emit_job_changed(Manager *m, Job *j, const char *property, ...) {
        _cleanup_free_ char *path = bus_job_path(j);
        va_list ap;

        va_start(ap, property);
        bus_emit_changed_va(m, path, STCISP_JOB_IFACE, property, ap);
        va_end(ap);
}
