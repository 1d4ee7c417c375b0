/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The D-Bus API: vtables and nothing else. See dbus/org.stcisp.ispd1.xml
 * and docs/dbus-api.md. */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "manager.h"
#include "util.h"

#define BUS_NAME        "org.stcisp.ispd1"
#define OBJECT_PATH     "/org/stcisp/ispd1"
#define JOB_PREFIX      "/org/stcisp/ispd1/job"
#define NODE_PREFIX     "/org/stcisp/ispd1/node"
#define MANAGER_IFACE   "org.stcisp.ispd1.Manager"
#define JOB_IFACE       "org.stcisp.ispd1.Job"
#define NODE_IFACE      "org.stcisp.ispd1.Node"

#define ERROR_NODE_NOT_FOUND    "org.stcisp.ispd1.Error.NodeNotFound"
#define ERROR_INVALID_IMAGE     "org.stcisp.ispd1.Error.InvalidImage"
#define ERROR_ACCESS_DENIED     "org.stcisp.ispd1.Error.AccessDenied"
#define ERROR_BUSY              "org.stcisp.ispd1.Error.Busy"
#define ERROR_NO_SUCH_JOB       "org.stcisp.ispd1.Error.NoSuchJob"
#define ERROR_JOB_FINISHED      "org.stcisp.ispd1.Error.JobFinished"
#define ERROR_STORAGE           "org.stcisp.ispd1.Error.StorageFailed"

static void node_free_image(struct isp_image **p) {
        free(*p);
}

/* Flash, Reboot, Scan and CancelJob: uid 0 and members of the flash group.
 * Checked here from the caller's credentials; the bus policy lets the call
 * through so that the refusal carries our error name and text. */
static int check_access(Manager *m, sd_bus_message *msg, sd_bus_error *error) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        const char *group = m->config.flash_group;
        uid_t uid;
        int r;

        r = sd_bus_query_sender_creds(msg, SD_BUS_CREDS_EUID | SD_BUS_CREDS_UID, &creds);
        if (r < 0)
                return r;
        r = sd_bus_creds_get_euid(creds, &uid);
        if (r < 0)
                r = sd_bus_creds_get_uid(creds, &uid);
        if (r < 0)
                return r;
        if (uid == 0)
                return 0;

        if (group && *group) {
                struct group *gr = getgrnam(group);
                struct passwd *pw = getpwuid(uid);

                if (gr && pw) {
                        gid_t groups[256];
                        int n = (int) ELEMENTSOF(groups);

                        if (pw->pw_gid == gr->gr_gid)
                                return 0;
                        if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &n) >= 0)
                                for (int i = 0; i < n; i++)
                                        if (groups[i] == gr->gr_gid)
                                                return 0;
                }
        }
        return sd_bus_error_setf(error, ERROR_ACCESS_DENIED,
                                 "uid %u may not change nodes: only root and members of group '%s' may flash, reboot, scan or cancel",
                                 (unsigned) uid, strna(group));
}

static int resolve_target(Manager *m, const char *target, char **ret, sd_bus_error *error) {
        int r = manager_resolve_target(m, target, ret);

        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return sd_bus_error_setf(error, ERROR_NODE_NOT_FOUND,
                                         "No node '%s': a target is nodeN or N (N = 1-254), 'legacy', or a name from [Nodes] in stcispd.conf",
                                         target);
        return r;
}

static int reply_job(Manager *m, sd_bus_message *msg, Job *j, sd_bus_error *error) {
        _cleanup_free_ char *path = NULL;
        int r = manager_enqueue(m, j);

        if (r == -EBUSY) {
                job_free(j);
                return sd_bus_error_setf(error, ERROR_BUSY, "The queue is full (%d jobs): wait for jobs to finish or cancel some",
                                         JOB_STORE_QUEUE_MAX);
        }
        if (r < 0) {
                job_free(j);
                return sd_bus_error_setf(error, ERROR_STORAGE, "Cannot store the job in %s: %s",
                                         m->config.state_dir, strerror(-r));
        }
        path = job_object_path(j);
        if (!path)
                return -ENOMEM;
        return sd_bus_reply_method_return(msg, "o", path);
}

/* ret_format: the "format" option of a flash job (NULL = auto); it points
 * into msg. */
static int read_options(sd_bus_message *msg, Job *j, bool flash, const char **ret_format, sd_bus_error *error) {
        int r;

        r = sd_bus_message_enter_container(msg, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(msg, 'e', "sv")) > 0) {
                const char *key;

                r = sd_bus_message_read(msg, "s", &key);
                if (r < 0)
                        return r;
                if (flash && (strcmp(key, "reboot") == 0 || strcmp(key, "verify") == 0)) {
                        int b;
                        r = sd_bus_message_read(msg, "v", "b", &b);
                        if (r < 0)
                                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Option '%s' must be a boolean (b)", key);
                        if (key[0] == 'r')
                                j->opt_reboot = b;
                        else
                                j->opt_verify = b;
                } else if (flash && strcmp(key, "format") == 0) {
                        const char *f;
                        r = sd_bus_message_read(msg, "v", "s", &f);
                        if (r < 0)
                                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Option 'format' must be a string (s)");
                        if (isp_image_format_from_string(f) < 0)
                                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                         "Unknown image format '%s': use \"hex\", \"bin\" or \"auto\"", f);
                        *ret_format = f;
                } else if (flash && strcmp(key, "name") == 0) {
                        const char *name;
                        r = sd_bus_message_read(msg, "v", "s", &name);
                        if (r < 0)
                                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Option 'name' must be a string (s)");
                        free(j->image_name);
                        j->image_name = strdup(name);
                        if (!j->image_name)
                                return -ENOMEM;
                } else
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown option '%s'%s", key,
                                                 flash ? " (known: format, name, reboot, verify)" : "");
                r = sd_bus_message_exit_container(msg);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(msg);
}

static uint32_t sender_uid(sd_bus_message *msg) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        uid_t uid = (uid_t) -1;

        if (sd_bus_query_sender_creds(msg, SD_BUS_CREDS_EUID | SD_BUS_CREDS_UID, &creds) >= 0 &&
            sd_bus_creds_get_euid(creds, &uid) < 0)
                (void) sd_bus_creds_get_uid(creds, &uid);
        return (uint32_t) uid;
}

static int method_flash(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        _cleanup_(node_free_image) struct isp_image *img = NULL;
        _cleanup_free_ char *canonical = NULL;
        struct isp_image_error e;
        const char *target, *format_option = NULL;
        const void *data;
        size_t size;
        int node, format, r;
        Job *j;

        r = check_access(m, msg, error);
        if (r < 0)
                return r;

        r = sd_bus_message_read(msg, "s", &target);
        if (r < 0)
                return r;
        r = sd_bus_message_read_array(msg, 'y', &data, &size);
        if (r < 0)
                return r;

        node = resolve_target(m, target, &canonical, error);
        if (node < 0)
                return node;

        j = job_new(m, 0, SESSION_FLASH, canonical, (uint8_t) node);
        if (!j)
                return -ENOMEM;
        r = read_options(msg, j, true, &format_option, error);
        if (r < 0) {
                job_free(j);
                return r;
        }

        /* The whole image is validated before it is queued: nothing reaches
         * the bus from an image with an error in it. */
        if (size > JOB_IMAGE_FILE_MAX) {
                job_free(j);
                return sd_bus_error_setf(error, ERROR_INVALID_IMAGE, "Image file of %zu bytes is larger than the %u MiB stcispd accepts",
                                         size, JOB_IMAGE_FILE_MAX >> 20);
        }
        img = malloc(sizeof(*img));
        if (!img) {
                job_free(j);
                return -ENOMEM;
        }
        format = isp_image_format_from_string(format_option);
        if (format == ISP_IMAGE_AUTO)
                format = isp_image_detect_format(NULL, data, size);
        if (isp_image_load(img, data, size, (enum isp_image_format) format, &e) < 0) {
                job_free(j);
                if (e.line > 0)
                        return sd_bus_error_setf(error, ERROR_INVALID_IMAGE, "line %u: %s", e.line, e.message);
                return sd_bus_error_setf(error, ERROR_INVALID_IMAGE, "%s", e.message);
        }

        /* Only the parsed image is kept: the store writes what the node
         * will hold, never the uploaded file. */
        j->image = TAKE_PTR(img);
        j->requested_by = sender_uid(msg);

        return reply_job(m, msg, j, error);
}

static int method_reboot(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        _cleanup_free_ char *canonical = NULL;
        const char *target;
        int node, r;
        Job *j;

        r = check_access(m, msg, error);
        if (r < 0)
                return r;
        r = sd_bus_message_read(msg, "s", &target);
        if (r < 0)
                return r;
        node = resolve_target(m, target, &canonical, error);
        if (node < 0)
                return node;
        j = job_new(m, 0, SESSION_REBOOT, canonical, (uint8_t) node);
        if (!j)
                return -ENOMEM;
        r = read_options(msg, j, false, NULL, error);
        if (r < 0) {
                job_free(j);
                return r;
        }
        j->requested_by = sender_uid(msg);
        return reply_job(m, msg, j, error);
}

static int method_scan(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        Job *j;
        int r;

        r = check_access(m, msg, error);
        if (r < 0)
                return r;
        j = job_new(m, 0, SESSION_SCAN, "bus", 0);
        if (!j)
                return -ENOMEM;
        j->requested_by = sender_uid(msg);
        return reply_job(m, msg, j, error);
}

static int cancel(Manager *m, sd_bus_message *msg, uint32_t id, sd_bus_error *error) {
        int r = check_access(m, msg, error);

        if (r < 0)
                return r;
        r = manager_cancel_job(m, id);
        if (r == -ENOENT)
                return sd_bus_error_setf(error, ERROR_NO_SUCH_JOB, "No job %u: 'ispctl jobs' lists the jobs", id);
        if (r == -EALREADY)
                return sd_bus_error_setf(error, ERROR_JOB_FINISHED, "Job %u has already finished", id);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_cancel_job(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        uint32_t id;
        int r = sd_bus_message_read(msg, "u", &id);

        if (r < 0)
                return r;
        return cancel(userdata, msg, id, error);
}

static int append_node_props(Manager *m, sd_bus_message *reply, uint8_t id);

static int method_status(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = userdata;
        const char *target;
        int r;

        r = sd_bus_message_read(msg, "s", &target);
        if (r < 0)
                return r;
        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;

        if (*target == '\0' || strcmp(target, "bus") == 0) {
                struct can_link_status st;

                can_link_get_status(m->link, &st);
                r = sd_bus_message_append(reply, "a{sv}", 15,
                        "Version", "s", PROJECT_VERSION,
                        "Interface", "s", st.interface,
                        "LinkState", "s", st.up ? "up" : "down",
                        "Bitrate", "u", st.bitrate ? st.bitrate : m->config.bitrate,
                        "ControllerState", "s", st.controller_state,
                        "RxErrors", "i", st.rx_errors,
                        "TxErrors", "i", st.tx_errors,
                        "ErrorFrames", "t", st.error_frames,
                        "BusOffCount", "t", st.bus_off,
                        "FramesSent", "t", st.frames_sent,
                        "FramesReceived", "t", st.frames_received,
                        "LastError", "s", st.last_error,
                        "QueueLength", "u", m->store->queue_len,
                        "RunningJob", "u", m->current ? m->current->id : 0,
                        "HistoryLength", "u", m->store->history_len);
        } else {
                int node = resolve_target(m, target, NULL, error);
                if (node < 0)
                        return node;
                r = append_node_props(m, reply, (uint8_t) node);
        }
        if (r < 0)
                return r;
        return sd_bus_message_send(reply);
}

static int method_list_nodes(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = userdata;
        int r;

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "(ysssyyts)");
        if (r < 0)
                return r;
        for (unsigned i = 0; i < 256; i++) {
                const Node *n = &m->nodes[i];
                char buf[16];

                if (!n->known && !n->last_flash_result)
                        continue;
                r = sd_bus_message_append(reply, "(ysssyyts)", (uint8_t) i,
                                          manager_node_display_name(m, (uint8_t) i, buf),
                                          n->known ? (n->legacy ? "legacy" : "extended") : "unknown",
                                          node_state_to_string(n->state),
                                          n->info.version, n->info.firmware, n->last_seen_usec,
                                          n->last_flash_result ? n->last_flash_result : "");
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_message_send(reply);
}

static int append_job_row(sd_bus_message *reply, Job *j) {
        _cleanup_free_ char *path = job_object_path(j);

        if (!path)
                return -ENOMEM;
        return sd_bus_message_append(reply, "(ussssttso)", j->id, session_kind_to_string(j->kind), j->target,
                                     job_state_to_string(j->state), session_phase_to_string(j->phase),
                                     j->bytes_done, j->bytes_total, j->error ? j->error : "", path);
}

static int method_list_jobs(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = userdata;
        int r;

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "(ussssttso)");
        if (r < 0)
                return r;
        for (Job *j = m->store->history_head; j; j = j->next)
                if ((r = append_job_row(reply, j)) < 0)
                        return r;
        for (Job *j = m->store->queue_head; j; j = j->next)
                if ((r = append_job_row(reply, j)) < 0)
                        return r;
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_message_send(reply);
}

static int property_get_interface(sd_bus *bus, const char *path, const char *interface, const char *property,
                                  sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        return sd_bus_message_append(reply, "s", m->config.interface);
}

static int property_get_version(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", PROJECT_VERSION);
}

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Interface", "s", property_get_interface, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_METHOD_WITH_ARGS("Flash",
                                SD_BUS_ARGS("s", target, "ay", image, "a{sv}", options),
                                SD_BUS_RESULT("o", job),
                                method_flash, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Reboot",
                                SD_BUS_ARGS("s", target, "a{sv}", options),
                                SD_BUS_RESULT("o", job),
                                method_reboot, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Scan",
                                SD_BUS_NO_ARGS,
                                SD_BUS_RESULT("o", job),
                                method_scan, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Status",
                                SD_BUS_ARGS("s", target),
                                SD_BUS_RESULT("a{sv}", status),
                                method_status, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListNodes",
                                SD_BUS_NO_ARGS,
                                SD_BUS_RESULT("a(ysssyyts)", nodes),
                                method_list_nodes, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ListJobs",
                                SD_BUS_NO_ARGS,
                                SD_BUS_RESULT("a(ussssttso)", jobs),
                                method_list_jobs, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("CancelJob",
                                SD_BUS_ARGS("u", id),
                                SD_BUS_NO_RESULT,
                                method_cancel_job, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("JobNew",
                                SD_BUS_ARGS("u", id, "o", job, "s", target), 0),
        SD_BUS_SIGNAL_WITH_ARGS("JobRemoved",
                                SD_BUS_ARGS("u", id, "o", job, "s", target, "s", result), 0),
        SD_BUS_VTABLE_END
};

/* ---- Job objects ---- */

static int job_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                    void **found, sd_bus_error *error) {
        Manager *m = userdata;
        const char *p = path + strlen(JOB_PREFIX);
        unsigned long id;
        char *end;
        Job *j;

        if (*p != '/' || p[1] < '1' || p[1] > '9')
                return 0;
        id = strtoul(p + 1, &end, 10);
        if (*end || id > UINT32_MAX)
                return 0;
        j = manager_find_job(m, (uint32_t) id);
        if (!j)
                return 0;
        *found = j;
        return 1;
}

static int job_enumerate(sd_bus *bus, const char *path, void *userdata, char ***nodes, sd_bus_error *error) {
        Manager *m = userdata;
        char **l;
        size_t n = 0;

        l = calloc(m->store->queue_len + m->store->history_len + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (Job *j = m->store->history_head; j; j = j->next)
                if ((l[n] = job_object_path(j)))
                        n++;
        for (Job *j = m->store->queue_head; j; j = j->next)
                if ((l[n] = job_object_path(j)))
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
JOB_PROPERTY(state, "s", job_state_to_string(j->state))
JOB_PROPERTY(phase, "s", session_phase_to_string(j->phase))
JOB_PROPERTY(bytes_done, "t", j->bytes_done)
JOB_PROPERTY(bytes_total, "t", j->bytes_total)
JOB_PROPERTY(error, "s", j->error ? j->error : "")
JOB_PROPERTY(created, "t", j->created_usec)
JOB_PROPERTY(started, "t", j->started_usec)
JOB_PROPERTY(finished, "t", j->finished_usec)
JOB_PROPERTY(attempts, "u", j->attempts)
JOB_PROPERTY(requested_by, "u", j->requested_by)

static int method_job_cancel(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Job *j = userdata;
        return cancel(j->manager, msg, j->id, error);
}

static const sd_bus_vtable job_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "u", property_get_job_id, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Kind", "s", property_get_job_kind, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Target", "s", property_get_job_target, 0, SD_BUS_VTABLE_PROPERTY_CONST),
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
        SD_BUS_METHOD_WITH_ARGS("Cancel", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT,
                                method_job_cancel, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};

/* ---- Node objects: /org/stcisp/ispd1/node/<id>, id 0 = legacy ---- */

static int node_find(sd_bus *bus, const char *path, const char *interface, void *userdata,
                     void **found, sd_bus_error *error) {
        Manager *m = userdata;
        const char *p = path + strlen(NODE_PREFIX);
        unsigned long id;
        char *end;

        if (*p != '/' || p[1] < '0' || p[1] > '9' || (p[1] == '0' && p[2]))
                return 0;
        id = strtoul(p + 1, &end, 10);
        if (*end || id > ISP_NODE_MAX)
                return 0;
        if (!m->nodes[id].known && !m->nodes[id].last_flash_result)
                return 0;
        *found = &m->nodes[id];
        return 1;
}

static int node_enumerate(sd_bus *bus, const char *path, void *userdata, char ***nodes, sd_bus_error *error) {
        Manager *m = userdata;
        char **l = calloc(257, sizeof(char *));
        size_t n = 0;

        if (!l)
                return -ENOMEM;
        for (unsigned i = 0; i < 256; i++)
                if ((m->nodes[i].known || m->nodes[i].last_flash_result) &&
                    asprintf(&l[n], NODE_PREFIX "/%u", i) >= 0)
                        n++;
        *nodes = l;
        return 1;
}

#define NODE_PROPERTY(name, sig, expr)                                                          \
        static int property_get_node_##name(sd_bus *bus, const char *path, const char *iface,  \
                                            const char *prop, sd_bus_message *reply,            \
                                            void *userdata, sd_bus_error *error) {              \
                Node *n = userdata;                                                             \
                Manager *m = n->manager;                                                   \
                char buf[16];                                                                   \
                (void) m; (void) buf;                                                           \
                return sd_bus_message_append(reply, sig, expr);                                 \
        }

static const char *node_form(const Node *n) {
        return n->known ? (n->legacy ? "legacy" : "extended") : "unknown";
}

static const char *node_uid(const Node *n, char buf[static 16]) {
        if (!n->known || n->legacy)
                return "";
        snprintf(buf, 16, "%02X%02X%02X%02X", n->info.uid[0], n->info.uid[1], n->info.uid[2], n->info.uid[3]);
        return buf;
}

NODE_PROPERTY(id, "y", n->id)
NODE_PROPERTY(name, "s", manager_node_display_name(m, n->id, buf))
NODE_PROPERTY(form, "s", node_form(n))
NODE_PROPERTY(state, "s", node_state_to_string(n->state))
NODE_PROPERTY(protocol, "y", n->info.version)
NODE_PROPERTY(firmware, "y", n->info.firmware)
NODE_PROPERTY(caps, "y", n->info.capabilities)
NODE_PROPERTY(depth, "y", n->info.rx_depth)
NODE_PROPERTY(uid, "s", node_uid(n, buf))
NODE_PROPERTY(last_seen, "t", n->last_seen_usec)
NODE_PROPERTY(last_result, "s", n->last_flash_result ? n->last_flash_result : "")
NODE_PROPERTY(last_flash, "t", n->last_flash_usec)

static const sd_bus_vtable node_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "y", property_get_node_id, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Name", "s", property_get_node_name, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Form", "s", property_get_node_form, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("State", "s", property_get_node_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ProtocolVersion", "y", property_get_node_protocol, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("FirmwareVersion", "y", property_get_node_firmware, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Capabilities", "y", property_get_node_caps, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ReceiveDepth", "y", property_get_node_depth, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("UID", "s", property_get_node_uid, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LastSeenUSec", "t", property_get_node_last_seen, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LastFlashResult", "s", property_get_node_last_result, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LastFlashUSec", "t", property_get_node_last_flash, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_VTABLE_END
};

static int append_node_props(Manager *m, sd_bus_message *reply, uint8_t id) {
        const Node *n = &m->nodes[id];
        char name[16], uid[16];

        return sd_bus_message_append(reply, "a{sv}", 12,
                "Id", "y", id,
                "Name", "s", manager_node_display_name(m, id, name),
                "Form", "s", node_form(n),
                "State", "s", node_state_to_string(n->state),
                "ProtocolVersion", "y", n->info.version,
                "FirmwareVersion", "y", n->info.firmware,
                "Capabilities", "y", n->info.capabilities,
                "ReceiveDepth", "y", n->info.rx_depth,
                "UID", "s", node_uid(n, uid),
                "LastSeenUSec", "t", n->last_seen_usec,
                "LastFlashResult", "s", n->last_flash_result ? n->last_flash_result : "",
                "LastFlashUSec", "t", n->last_flash_usec);
}

/* ---- signals ---- */

void manager_emit_job_new(Manager *m, Job *j) {
        _cleanup_free_ char *path = job_object_path(j);

        if (m->bus && path)
                (void) sd_bus_emit_signal(m->bus, OBJECT_PATH, MANAGER_IFACE, "JobNew", "uos", j->id, path, j->target);
}

void manager_emit_job_removed(Manager *m, Job *j) {
        _cleanup_free_ char *path = job_object_path(j);

        if (m->bus && path)
                (void) sd_bus_emit_signal(m->bus, OBJECT_PATH, MANAGER_IFACE, "JobRemoved", "uoss",
                                          j->id, path, j->target, job_state_to_string(j->state));
}

void manager_emit_job_changed(Manager *m, Job *j, const char *property, ...) {
        _cleanup_free_ char *path = job_object_path(j);
        const char *props[16];
        size_t n = 0;
        va_list ap;

        if (!m->bus || !path)
                return;
        va_start(ap, property);
        for (const char *p = property; p && n < ELEMENTSOF(props) - 1; p = va_arg(ap, const char *))
                props[n++] = p;
        va_end(ap);
        props[n] = NULL;
        (void) sd_bus_emit_properties_changed_strv(m->bus, path, JOB_IFACE, (char **) props);
}

void manager_emit_node_changed(Manager *m, uint8_t node) {
        char path[64];

        if (!m->bus)
                return;
        snprintf(path, sizeof(path), NODE_PREFIX "/%u", node);
        (void) sd_bus_emit_properties_changed(m->bus, path, NODE_IFACE,
                                              "Form", "State", "ProtocolVersion", "FirmwareVersion",
                                              "Capabilities", "ReceiveDepth", "UID", "LastSeenUSec",
                                              "LastFlashResult", "LastFlashUSec", NULL);
}

/* ---- start-up ---- */

static int on_name_acquired(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        if (e) {
                log_error("Cannot own the bus name " BUS_NAME ": %s%s", e->message,
                          sd_bus_error_has_name(e, SD_BUS_ERROR_ACCESS_DENIED) ?
                          " (is dbus/org.stcisp.ispd1.conf installed in /usr/share/dbus-1/system.d?)" : "");
                return sd_event_exit(m->event, -EACCES);
        }

        log_info("Ready: " BUS_NAME " on %s, state in %s", m->config.interface, m->config.state_dir);
        (void) sd_notifyf(false, "READY=1\nSTATUS=Serving %s, %u job(s) queued", m->config.interface, m->store->queue_len);
        if (m->dispatch)
                (void) sd_event_source_set_enabled(m->dispatch, SD_EVENT_ONESHOT);
        return 0;
}

int manager_connect_bus(Manager *m) {
        int r;

        /* sd_bus_open_system() honours DBUS_SYSTEM_BUS_ADDRESS. */
        r = sd_bus_open_system(&m->bus);
        if (r < 0)
                return log_error_errno(r, "Cannot connect to the system bus: %m");

        r = sd_bus_add_object_vtable(m->bus, NULL, OBJECT_PATH, MANAGER_IFACE, manager_vtable, m);
        if (r < 0)
                return log_error_errno(r, "Cannot add the manager object: %m");
        r = sd_bus_add_fallback_vtable(m->bus, NULL, JOB_PREFIX, JOB_IFACE, job_vtable, job_find, m);
        if (r < 0)
                return log_error_errno(r, "Cannot add the job objects: %m");
        r = sd_bus_add_node_enumerator(m->bus, NULL, JOB_PREFIX, job_enumerate, m);
        if (r < 0)
                return log_error_errno(r, "Cannot add the job enumerator: %m");
        r = sd_bus_add_fallback_vtable(m->bus, NULL, NODE_PREFIX, NODE_IFACE, node_vtable, node_find, m);
        if (r < 0)
                return log_error_errno(r, "Cannot add the node objects: %m");
        r = sd_bus_add_node_enumerator(m->bus, NULL, NODE_PREFIX, node_enumerate, m);
        if (r < 0)
                return log_error_errno(r, "Cannot add the node enumerator: %m");

        r = sd_bus_request_name_async(m->bus, NULL, BUS_NAME, 0, on_name_acquired, m);
        if (r < 0)
                return log_error_errno(r, "Cannot request the bus name: %m");
        r = sd_bus_attach_event(m->bus, m->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return log_error_errno(r, "Cannot attach the bus to the event loop: %m");
        return 0;
}
