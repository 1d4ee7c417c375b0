/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The manager object, /org/stcisp/ispd1, and the connection to the bus.
 * Handlers validate their input, then call the manager. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.h"
#include "isp-crc32.h"
#include "log.h"
#include "manager.h"
#include "stcisp-dbus.h"
#include "util.h"

static void image_freep(struct isp_image **p) {
        free(*p);
}

/* Target resolution is targets.c's, over the manager's configuration,
 * node table and lines. */
static int resolve_target(Manager *m, const char *target, struct target *ret, sd_bus_error *error) {
        struct targets_context c = manager_targets(m);

        return targets_resolve_one(&c, target, ret, error);
}

static int reply_job(Manager *m, sd_bus_message *msg, Job *j, sd_bus_error *error) {
        _cleanup_free_ char *path = NULL;
        int r = manager_enqueue(m, j);

        if (r == -EBUSY) {
                job_free(j);
                return sd_bus_error_setf(error, STCISP_ERROR_BUSY,
                                         "The queue is full (%d jobs): wait for jobs to finish or cancel some",
                                         JOB_STORE_QUEUE_MAX);
        }
        if (r < 0) {
                job_free(j);
                return sd_bus_error_setf(error, STCISP_ERROR_STORAGE, "Cannot store the job in %s: %s",
                                         m->config.state_dir, strerror(-r));
        }
        path = bus_job_path(j);
        if (!path)
                return -ENOMEM;
        return sd_bus_reply_method_return(msg, "o", path);
}

struct flash_options {
        bool reboot, verify, full, force, dry_run, require_boot;
        uint32_t canary;
        int format;
        char *name;
};

/* Which options a method takes. */
enum {
        OPTS_NONE,
        OPTS_IMAGE,             /* format, name (Verify) */
        OPTS_FLASH,             /* and the flash options */
};

static int read_option(sd_bus_message *msg, const char *key, int set, struct flash_options *o,
                       sd_bus_error *error) {
        const struct {
                const char *key;
                bool *value;
        } bools[] = {
                { "reboot", &o->reboot },
                { "verify", &o->verify },
                { "full", &o->full },
                { "force", &o->force },
                { "dry-run", &o->dry_run },
                { "require-boot", &o->require_boot },
        };
        const char *s;
        int b, r;

        for (size_t i = 0; set == OPTS_FLASH && i < ELEMENTSOF(bools); i++) {
                if (strcmp(key, bools[i].key) != 0)
                        continue;
                r = sd_bus_message_read(msg, "v", "b", &b);
                if (r < 0)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Option '%s' must be a boolean (b)", key);
                *bools[i].value = b;
                return 0;
        }
        if (set == OPTS_FLASH && strcmp(key, "canary") == 0) {
                r = sd_bus_message_read(msg, "v", "u", &o->canary);
                if (r < 0)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Option 'canary' must be an unsigned number (u)");
                return 0;
        }
        if (set >= OPTS_IMAGE && (strcmp(key, "format") == 0 || strcmp(key, "name") == 0)) {
                r = sd_bus_message_read(msg, "v", "s", &s);
                if (r < 0)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Option '%s' must be a string (s)", key);
                if (key[0] == 'n') {
                        free(o->name);
                        o->name = strdup(s);
                        return o->name ? 0 : -ENOMEM;
                }
                o->format = isp_image_format_from_string(s);
                if (o->format < 0)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Unknown image format '%s': use \"hex\", \"bin\" or \"auto\"", s);
                return 0;
        }
        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown option '%s'%s", key,
                                 set == OPTS_FLASH ? " (known: canary, dry-run, force, format, full, name, reboot, "
                                                     "require-boot, verify)" :
                                 set == OPTS_IMAGE ? " (known: format, name)" : "");
}

static int read_options(sd_bus_message *msg, int flash, struct flash_options *o, sd_bus_error *error) {
        int r;

        r = sd_bus_message_enter_container(msg, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(msg, 'e', "sv")) > 0) {
                const char *key;

                r = sd_bus_message_read(msg, "s", &key);
                if (r < 0)
                        return r;
                r = read_option(msg, key, flash, o, error);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(msg);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(msg);
}

/* The whole image is validated before anything is queued: nothing reaches
 * the bus from an image with an error in it. */
static int load_image(const void *data, size_t size, int format, struct isp_image **ret, sd_bus_error *error) {
        _cleanup_(image_freep) struct isp_image *img = NULL;
        struct isp_image_error e;

        if (size > JOB_IMAGE_FILE_MAX)
                return sd_bus_error_setf(error, STCISP_ERROR_INVALID_IMAGE,
                                         "Image file of %zu bytes is larger than the %u MiB stcispd accepts",
                                         size, JOB_IMAGE_FILE_MAX >> 20);
        img = malloc(sizeof(*img));
        if (!img)
                return -ENOMEM;
        if (format == ISP_IMAGE_AUTO)
                format = isp_image_detect_format(NULL, data, size);
        if (isp_image_load(img, data, size, (enum isp_image_format) format, &e) < 0) {
                if (e.line > 0)
                        return sd_bus_error_setf(error, STCISP_ERROR_INVALID_IMAGE, "line %u: %s", e.line, e.message);
                return sd_bus_error_setf(error, STCISP_ERROR_INVALID_IMAGE, "%s", e.message);
        }
        *ret = TAKE_PTR(img);
        return 0;
}

/* Flash, FlashNodes: the nodes of one job, a group's members, "all" too
 * where allowed. */
static int resolve_node_set(Manager *m, const char *const *specs, size_t n_specs, bool allow_all,
                            struct node_set *ret, sd_bus_error *error) {
        struct targets_context c = manager_targets(m);

        return targets_resolve(&c, specs, n_specs, TARGETS_GROUPS | (allow_all ? TARGETS_ALL : 0), ret, error);
}

/* A method for one node: a group is refused ("'pumps' is a group of 3
 * nodes: name one node"). */
static int resolve_one_node(Manager *m, const char *target, struct node_set *ret, sd_bus_error *error) {
        struct targets_context c = manager_targets(m);

        return targets_resolve(&c, &target, 1, /* flags= */ 0, ret, error);
}

/* One job for every node of ns: its target is their canonical names,
 * comma-separated (a list ispctl takes back), its interface theirs when
 * they share one line. */
static Job *new_node_job(Manager *m, enum session_kind kind, const struct node_set *ns, uid_t uid) {
        _cleanup_free_ char *target = NULL;
        bool one_line = true;
        Job *j;

        for (size_t i = 0; i < ns->n; i++) {
                char *t;

                if (asprintf(&t, "%s%s%s", strempty(target), i > 0 ? "," : "", ns->v[i].canonical) < 0)
                        return NULL;
                free(target);
                target = t;
                one_line = one_line && ns->v[i].line == ns->v[0].line;
        }
        j = job_new(m, 0, kind, target, ns->v[0].node);
        if (!j)
                return NULL;
        for (size_t i = 0; i < ns->n; i++)
                if (job_add_node(j, ns->v[i].line->interface, ns->v[i].node, ns->v[i].canonical) < 0)
                        return job_free(j);
        if (one_line && !(j->interface = strdup(ns->v[0].line->interface)))
                return job_free(j);
        j->requested_by = (uint32_t) uid;
        return j;
}

/* Flash and FlashNodes, after the targets: the image, the options, the
 * job. Everything is checked before anything is queued. */
static int queue_image_job(Manager *m, sd_bus_message *msg, enum session_kind kind,
                           const char *const *specs, size_t n_specs, bool allow_all,
                           uid_t uid, sd_bus_error *error) {
        _cleanup_(image_freep) struct isp_image *img = NULL;
        _cleanup_(node_set_done) struct node_set ns = {};
        struct flash_options o = { .reboot = true, .verify = true, .format = ISP_IMAGE_AUTO };
        const void *data;
        size_t size;
        Job *j;
        int r;

        r = resolve_node_set(m, specs, n_specs, allow_all, &ns, error);
        if (r >= 0)
                r = sd_bus_message_read_array(msg, 'y', &data, &size);
        if (r >= 0)
                r = read_options(msg, kind == SESSION_FLASH ? OPTS_FLASH : OPTS_IMAGE, &o, error);
        if (r >= 0)
                r = load_image(data, size, o.format, &img, error);
        if (r >= 0 && o.canary > 0 && o.canary >= ns.n)
                r = sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                      "canary %u: a canary rollout needs more nodes than canaries (%zu node%s given)",
                                      o.canary, ns.n, ns.n == 1 ? "" : "s");
        if (r < 0) {
                free(o.name);
                return r;
        }

        j = new_node_job(m, kind, &ns, uid);
        if (!j) {
                free(o.name);
                return -ENOMEM;
        }
        j->opt_reboot = o.reboot;
        j->opt_verify = o.verify;
        j->opt_full = o.full;
        j->opt_force = o.force;
        j->opt_dry_run = o.dry_run;
        j->opt_require_boot = o.require_boot;
        j->opt_canary = o.canary;
        j->image_name = o.name;
        j->app_crc = isp_image_app_crc32(img);
        j->image = TAKE_PTR(img);
        return reply_job(m, msg, j, error);
}

static int method_flash(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *target;
        uid_t uid;
        int r;

        r = access_check(&m->access, msg, ACCESS_ACTION_FLASH, &uid, error);
        if (r != 0)
                return r;
        r = sd_bus_message_read(msg, "s", &target);
        if (r < 0)
                return r;
        return queue_image_job(m, msg, SESSION_FLASH, &target, 1, /* allow_all= */ false, uid, error);
}

static int node_list_method(sd_bus_message *msg, void *userdata, enum session_kind kind, sd_bus_error *error) {
        Manager *m = userdata;
        _cleanup_free_ const char **specs = NULL;
        const char *s;
        size_t n = 0;
        uid_t uid;
        int r;

        r = access_check(&m->access, msg, ACCESS_ACTION_FLASH, &uid, error);
        if (r != 0)
                return r;
        /* the strings stay in msg, which outlives the call */
        r = sd_bus_message_enter_container(msg, 'a', "s");
        while (r >= 0 && (r = sd_bus_message_read(msg, "s", &s)) > 0) {
                const char **v = realloc(specs, (n + 1) * sizeof(*v));

                if (!v)
                        return -ENOMEM;
                specs = v;
                specs[n++] = s;
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(msg);
        if (r < 0)
                return r;
        return queue_image_job(m, msg, kind, specs, n, /* allow_all= */ true, uid, error);
}

static int method_flash_nodes(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return node_list_method(msg, userdata, SESSION_FLASH, error);
}

static int method_verify(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return node_list_method(msg, userdata, SESSION_VERIFY, error);
}

/* Read and Reboot: one node (a group is refused), no options yet. */
static int one_node_method(sd_bus_message *msg, void *userdata, enum session_kind kind, sd_bus_error *error) {
        Manager *m = userdata;
        _cleanup_(node_set_done) struct node_set ns = {};
        struct flash_options o = {};
        const char *target;
        uid_t uid;
        Job *j;
        int r;

        r = access_check(&m->access, msg, kind == SESSION_READ ? ACCESS_ACTION_READ : ACCESS_ACTION_REBOOT,
                         &uid, error);
        if (r != 0)
                return r;
        r = sd_bus_message_read(msg, "s", &target);
        if (r >= 0)
                r = resolve_one_node(m, target, &ns, error);
        if (r >= 0)
                r = read_options(msg, OPTS_NONE, &o, error);
        if (r < 0)
                return r;
        j = new_node_job(m, kind, &ns, uid);
        if (!j)
                return -ENOMEM;
        return reply_job(m, msg, j, error);
}

static int method_read(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return one_node_method(msg, userdata, SESSION_READ, error);
}

static int method_reboot(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return one_node_method(msg, userdata, SESSION_REBOOT, error);
}

static int method_scan(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        uid_t uid;
        Job *j;
        int r;

        r = access_check(&m->access, msg, ACCESS_ACTION_SCAN, &uid, error);
        if (r != 0)
                return r;
        /* interface NULL: every line takes part */
        j = job_new(m, 0, SESSION_SCAN, "bus", 0);
        if (!j)
                return -ENOMEM;
        j->requested_by = (uint32_t) uid;
        return reply_job(m, msg, j, error);
}

static int method_cancel_job(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        uint32_t id;
        int r = sd_bus_message_read(msg, "u", &id);

        if (r < 0)
                return r;
        return bus_cancel_job(userdata, msg, id, error);
}

/* The first line's status at the top level, as before there were
 * several; "Lines" has every line's. The driver is asked once a line. */
static int append_daemon_status(Manager *m, sd_bus_message *reply) {
        struct can_link_status st[CONFIG_LINES_MAX];
        int r;

        for (unsigned i = 0; i < m->n_lines; i++)
                line_get_status(m->lines[i], true, &st[i]);

        r = sd_bus_message_open_container(reply, 'a', "{sv}");
        if (r >= 0 && m->n_lines > 0)
                r = bus_line_append_status(m, reply, m->lines[0], &st[0]);
        if (r >= 0)
                r = sd_bus_message_append(reply, "{sv}{sv}",
                                          "Version", "s", PROJECT_VERSION,
                                          "HistoryLength", "u", m->store->history_len);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append(reply, "s", "Lines");
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'v', "a{sa{sv}}");
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "{sa{sv}}");
        for (unsigned i = 0; r >= 0 && i < m->n_lines; i++) {
                r = sd_bus_message_open_container(reply, 'e', "sa{sv}");
                if (r >= 0)
                        r = sd_bus_message_append(reply, "s", m->lines[i]->interface);
                if (r >= 0)
                        r = sd_bus_message_open_container(reply, 'a', "{sv}");
                if (r >= 0)
                        r = bus_line_append_status(m, reply, m->lines[i], &st[i]);
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
        }
        for (unsigned k = 0; r >= 0 && k < 4; k++)
                r = sd_bus_message_close_container(reply);
        return r;
}

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

        if (*target == '\0' || strcmp(target, "bus") == 0)
                r = append_daemon_status(m, reply);
        else {
                _cleanup_(target_done) struct target t = {};

                r = resolve_target(m, target, &t, error);
                if (r < 0)
                        return r;
                r = bus_node_append_properties(m, reply, t.line, t.node);
        }
        if (r < 0)
                return r;
        return sd_bus_message_send(reply);
}

static int list_nodes(sd_bus_message *msg, Manager *m, bool ex) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', ex ? "(sysssyyyysttstuouussas)" : "(ysssyyts)");
        for (size_t i = 0; r >= 0 && i < m->nodes->n_entries; i++)
                r = ex ? bus_node_append_row_ex(m, reply, m->nodes->entries[i])
                       : bus_node_append_row(m, reply, m->nodes->entries[i]);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_message_send(reply);
}

static int method_list_nodes(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return list_nodes(msg, userdata, /* ex= */ false);
}

static int method_list_nodes_ex(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return list_nodes(msg, userdata, /* ex= */ true);
}

static int append_job_row(sd_bus_message *reply, Job *j) {
        _cleanup_free_ char *path = bus_job_path(j);

        if (!path)
                return -ENOMEM;
        return sd_bus_message_append(reply, "(ussssttso)", j->id, session_kind_to_string(j->kind), j->target,
                                     job_state_to_string(j->state), session_phase_to_string(j->phase),
                                     j->bytes_done, j->bytes_total, strempty(j->error), path);
}

static int method_list_jobs(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = userdata;
        int r;

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "(ussssttso)");
        for (Job *j = m->store->history_head; r >= 0 && j; j = j->next)
                r = append_job_row(reply, j);
        for (Job *j = m->store->queue_head; r >= 0 && j; j = j->next)
                r = append_job_row(reply, j);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_message_send(reply);
}

static int property_get_interface(sd_bus *bus, const char *path, const char *interface, const char *property,
                                  sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        return sd_bus_message_append(reply, "s", m->n_lines > 0 ? m->lines[0]->interface : "");
}

static int property_get_interfaces(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r;

        r = sd_bus_message_open_container(reply, 'a', "s");
        for (unsigned i = 0; r >= 0 && i < m->n_lines; i++)
                r = sd_bus_message_append(reply, "s", m->lines[i]->interface);
        return r < 0 ? r : sd_bus_message_close_container(reply);
}

static int property_get_version(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", PROJECT_VERSION);
}

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Interface", "s", property_get_interface, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Interfaces", "as", property_get_interfaces, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_METHOD_WITH_ARGS("Flash",
                                SD_BUS_ARGS("s", target, "ay", image, "a{sv}", options),
                                SD_BUS_RESULT("o", job),
                                method_flash, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("FlashNodes",
                                SD_BUS_ARGS("as", targets, "ay", image, "a{sv}", options),
                                SD_BUS_RESULT("o", job),
                                method_flash_nodes, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Verify",
                                SD_BUS_ARGS("as", targets, "ay", image, "a{sv}", options),
                                SD_BUS_RESULT("o", job),
                                method_verify, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Read",
                                SD_BUS_ARGS("s", target, "a{sv}", options),
                                SD_BUS_RESULT("o", job),
                                method_read, SD_BUS_VTABLE_UNPRIVILEGED),
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
        SD_BUS_METHOD_WITH_ARGS("ListNodesEx",
                                SD_BUS_NO_ARGS,
                                SD_BUS_RESULT("a(sysssyyyysttstuouussas)", nodes),
                                method_list_nodes_ex, SD_BUS_VTABLE_UNPRIVILEGED),
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

void bus_emit_changed_va(Manager *m, const char *path, const char *interface, const char *property, va_list ap) {
        const char *props[16];
        size_t n = 0;

        if (!m->bus || !path)
                return;
        for (const char *p = property; p && n < ELEMENTSOF(props) - 1; p = va_arg(ap, const char *))
                props[n++] = p;
        props[n] = NULL;
        (void) sd_bus_emit_properties_changed_strv(m->bus, path, interface, (char **) props);
}

/* ---- start-up ---- */

static int on_name_acquired(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        if (e) {
                log_error("Cannot own the bus name " STCISP_BUS_NAME ": %s%s", e->message,
                          sd_bus_error_has_name(e, SD_BUS_ERROR_ACCESS_DENIED) ?
                          " (is dbus/org.stcisp.ispd1.conf installed in /usr/share/dbus-1/system.d?)" : "");
                return sd_event_exit(m->event, -EACCES);
        }
        manager_ready(m);
        return 0;
}

struct object {
        const char *prefix, *interface;
        const sd_bus_vtable *vtable;
        sd_bus_object_find_t find;
        sd_bus_node_enumerator_t enumerate;
};

int manager_connect_bus(Manager *m) {
        static const struct object objects[] = {
                { STCISP_JOB_PREFIX, STCISP_JOB_IFACE, bus_job_vtable, bus_job_find, bus_job_enumerate },
                { STCISP_NODE_PREFIX, STCISP_NODE_IFACE, bus_node_vtable, bus_node_find, bus_node_enumerate },
                { STCISP_LINE_PREFIX, STCISP_LINE_IFACE, bus_line_vtable, bus_line_find, bus_line_enumerate },
        };
        int r;

        /* sd_bus_open_system() honours DBUS_SYSTEM_BUS_ADDRESS. */
        r = sd_bus_open_system(&m->bus);
        if (r < 0)
                return log_error_errno(r, "Cannot connect to the system bus: %m");

        r = sd_bus_add_object_vtable(m->bus, NULL, STCISP_OBJECT_PATH, STCISP_MANAGER_IFACE, manager_vtable, m);
        if (r < 0)
                return log_error_errno(r, "Cannot add the manager object: %m");
        for (size_t i = 0; i < ELEMENTSOF(objects); i++) {
                r = sd_bus_add_fallback_vtable(m->bus, NULL, objects[i].prefix, objects[i].interface,
                                               objects[i].vtable, objects[i].find, m);
                if (r < 0)
                        return log_error_errno(r, "Cannot add the objects under %s: %m", objects[i].prefix);
                r = sd_bus_add_node_enumerator(m->bus, NULL, objects[i].prefix, objects[i].enumerate, m);
                if (r < 0)
                        return log_error_errno(r, "Cannot add the enumerator of %s: %m", objects[i].prefix);
        }

        access_connect(&m->access, m->bus);

        r = sd_bus_request_name_async(m->bus, NULL, STCISP_BUS_NAME, 0, on_name_acquired, m);
        if (r < 0)
                return log_error_errno(r, "Cannot request the bus name: %m");
        r = sd_bus_attach_event(m->bus, m->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return log_error_errno(r, "Cannot attach the bus to the event loop: %m");
        return 0;
}
