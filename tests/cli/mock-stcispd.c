/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A stand-in for stcispd on a private bus, for ispctl's own tests: the
 * D-Bus API of docs/dbus-api.md with canned answers, no CAN. Every job is
 * created already finished, and how it ends depends on the node's name:
 *
 *   flash    node1 flashed, boot confirmed    node2 up-to-date
 *            node3 failed                     node4 flashed, no boot (--no-reboot)
 *            node7 not-started (canary)       with dry-run: node1 would-flash,
 *                                             node2 up-to-date
 *   verify   node1 matches    node2 differs (FE:0200 FE:0400 FF:1000)
 *            node5 differs (a running board, ImageCRC 1C291CA3)
 *            node9 failed
 *   read     node3 succeeds with the image of docs/protocol.md 12.1
 *            node4 succeeds with an image that has bytes in FE:xxxx
 *            node6 fails (no application)
 *   flash    node10 runs and never ends (programming) until cancelled
 *            node11 runs for 1.5 s, then is flashed (PropertiesChanged)
 *
 * Job state can be changed by CancelJob(u) and Job.Cancel() (logged as
 * "CancelJob 12", "Cancel 12"). SIGUSR1 makes the mock drop its bus name
 * and take it again 0.5 s later, its jobs kept (a daemon restarting);
 * SIGTERM ends it (a daemon gone).
 *
 * A call for the target "stuck" is never answered (a daemon that hangs).
 * node6's flash runs and moves from connect to erase while the client
 * reads it (see on_incoming()), then succeeds.
 * Any other name is NodeNotFound. Every method call is logged, with its
 * options, to the file MOCK_LOG names, one line each:
 * "FlashNodes node1,node2 dry-run=true format=hex name=app.hex ...".
 *
 * Usage: mock-stcispd ADDRESS (prints "ready" once it owns the name)
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>
#include <time.h>

#include "stcisp-dbus.h"
#include "util.h"

#define MAX_JOBS 256
#define SLOW_USEC (1500 * 1000ULL)
#define AWAY_USEC (500 * 1000ULL)
#define MAX_NODES 8

struct mock_node {
        const char *name;
        uint8_t id;
        const char *state, *phase, *error, *outcome, *boot;
        uint64_t total;
        uint32_t written, skipped, to_erase;
        uint64_t estimate;
        const uint32_t *differing;
        size_t n_differing;
};

struct mock_job {
        uint32_t id;
        char kind[16];
        char target[128];
        char state[16];
        char phase[16];
        char error[256];
        struct mock_node nodes[MAX_NODES];
        size_t n_nodes;
        const char *image;              /* read: GetImage() */
};

static struct mock_job jobs[MAX_JOBS];
static size_t n_jobs;
static sd_bus *the_bus;
static sd_event *the_event;

/* docs/protocol.md 12.1 */
static const char image_12_1[] =
        ":03000000021234B5\n"
        ":0812340075810712001080FE15\n"
        ":0200000400FEFC\n"
        ":04010000AABBCCDDED\n"
        ":00000001FF\n";

/* FF:2000 and FE:0200 besides the LJMP */
static const char image_low_bank[] =
        ":03000000022000DB\n"
        ":02200000740169\n"
        ":0200000400FEFC\n"
        ":02020000A55AFD\n"
        ":00000001FF\n";

static const uint32_t differing_node2[] = { 0x00200, 0x00400, 0x11000 };

static int node_id(const char *name) {
        static const char *const known[] = { "node1", "node2", "node3", "node4", "node5", "node6", "node7", "node9",
                                             "node10", "node11" };

        for (size_t i = 0; i < ELEMENTSOF(known); i++)
                if (strcmp(name, known[i]) == 0)
                        return (int) strtoul(name + 4, NULL, 10);
        return -ENOENT;
}

static void log_call(const char *method, const char *targets, const char *options) {
        const char *path = getenv("MOCK_LOG");
        FILE *f = path ? fopen(path, "ae") : NULL;

        if (!f)
                return;
        fprintf(f, "%s %s%s%s\n", method, targets, *options ? " " : "", options);
        fclose(f);
}

/* a{sv} of booleans, strings and uint32s into "key=value key=value". */
static int read_options(sd_bus_message *m, char *buf, size_t n, bool *ret_dry_run) {
        size_t k = 0;
        int r;

        buf[0] = '\0';
        *ret_dry_run = false;
        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key, *contents, *s;
                uint32_t u;
                int b;

                r = sd_bus_message_read(m, "s", &key);
                if (r >= 0)
                        r = sd_bus_message_peek_type(m, NULL, &contents);
                if (r < 0)
                        return r;
                if (strcmp(contents, "b") == 0) {
                        r = sd_bus_message_read(m, "v", "b", &b);
                        k += (size_t) snprintf(buf + k, n - k, "%s%s=%s", k ? " " : "", key, b ? "true" : "false");
                        if (strcmp(key, "dry-run") == 0)
                                *ret_dry_run = b;
                } else if (strcmp(contents, "s") == 0) {
                        r = sd_bus_message_read(m, "v", "s", &s);
                        k += (size_t) snprintf(buf + k, n - k, "%s%s=%s", k ? " " : "", key, s);
                } else if (strcmp(contents, "u") == 0) {
                        r = sd_bus_message_read(m, "v", "u", &u);
                        k += (size_t) snprintf(buf + k, n - k, "%s%s=%u", k ? " " : "", key, u);
                } else
                        return -EINVAL;
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
                if (k >= n)
                        return -ENOBUFS;
        }
        return r < 0 ? r : sd_bus_message_exit_container(m);
}

static struct mock_node node_for(const char *kind, const char *name, bool dry_run) {
        struct mock_node nd = { .name = name, .id = (uint8_t) node_id(name), .state = "succeeded", .phase = "reboot",
                                .error = "", .outcome = "", .boot = "" };

        if (strcmp(kind, "flash") == 0 && dry_run) {
                if (nd.id == 1)
                        nd.outcome = "would-flash", nd.to_erase = 12, nd.total = 5432, nd.estimate = 1234567;
                else
                        nd.outcome = "up-to-date";
        } else if (strcmp(kind, "flash") == 0) {
                switch (nd.id) {
                case 1: nd.outcome = "flashed", nd.boot = "confirmed", nd.written = 5, nd.skipped = 1, nd.total = 2048, nd.to_erase = 5; break;
                case 2: nd.outcome = "up-to-date", nd.skipped = 6; break;
                case 4: nd.outcome = "flashed", nd.written = 3, nd.total = 1024, nd.to_erase = 3; break;
                case 7: nd.outcome = "not-started", nd.state = "cancelled"; break;
                case 10: case 11: nd.state = "running", nd.phase = "program", nd.total = 4096; break;
                case 6: nd.state = "running", nd.phase = "connect"; break;
                default: nd.state = "failed", nd.error = "node3 did not answer CONNECT within 1000 ms"; break;
                }
        } else if (strcmp(kind, "verify") == 0) {
                switch (nd.id) {
                case 1: nd.outcome = "matches"; break;
                case 2: nd.outcome = "differs", nd.differing = differing_node2, nd.n_differing = ELEMENTSOF(differing_node2); break;
                case 5: nd.outcome = "differs"; break;
                default: nd.state = "failed", nd.error = "node9 answers neither its ISP nor IDENTIFY"; break;
                }
        } else if (strcmp(kind, "read") == 0) {
                if (nd.id == 3 || nd.id == 4)
                        nd.outcome = "read";
                else
                        nd.state = "failed", nd.error = "node6 holds no application: the entry at FF:1000 is FF FF FF";
        }
        return nd;
}

static void job_path(const struct mock_job *j, char *buf, size_t n) {
        snprintf(buf, n, STCISP_JOB_PREFIX "/%u", j->id);
}

static void job_changed(sd_bus *bus, struct mock_job *j) {
        char path[64];

        job_path(j, path, sizeof(path));
        (void) sd_bus_emit_properties_changed(bus, path, STCISP_JOB_IFACE, "State", "Phase", "Error", "Nodes", NULL);
}

/* node11's job, SLOW_USEC after it started: flashed. */
static int on_slow_job_done(sd_event_source *s, uint64_t usec, void *userdata) {
        struct mock_job *j = userdata;

        if (strcmp(j->state, "running") != 0)
                return 0;
        j->nodes[0].state = "succeeded";
        j->nodes[0].phase = "reboot";
        j->nodes[0].outcome = "flashed";
        j->nodes[0].written = 4;
        snprintf(j->state, sizeof(j->state), "succeeded");
        snprintf(j->phase, sizeof(j->phase), "none");
        job_changed(the_bus, j);
        return 0;
}

/* node6's job moves on while the client reads it: the PropertiesChanged
 * of the phase before (connect) is sent before GetAll's reply, which
 * already says erase. A client that applies signals older than what it
 * read goes back to connect. */
static int on_incoming(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const char *path = sd_bus_message_get_path(m);
        unsigned id;

        if (!sd_bus_message_is_method_call(m, "org.freedesktop.DBus.Properties", "GetAll") || !path ||
            sscanf(path, STCISP_JOB_PREFIX "/%u", &id) != 1 || id == 0 || id > n_jobs)
                return 0;
        if (jobs[id - 1].nodes[0].id != 6 || strcmp(jobs[id - 1].phase, "connect") != 0)
                return 0;
        job_changed(the_bus, &jobs[id - 1]);
        (void) sd_bus_flush(the_bus);
        jobs[id - 1].nodes[0].phase = "erase";
        snprintf(jobs[id - 1].phase, sizeof(jobs[id - 1].phase), "erase");
        return 0;       /* the vtable answers the call */
}

/* A job of `kind` for the targets, finished unless a node runs (node10,
 * node11); replies with its path. */
static int reply_job(sd_bus_message *m, const char *kind, char **targets, size_t n, bool dry_run) {
        struct mock_job *j;
        unsigned failed = 0, running = 0;
        char path[64];

        if (n_jobs >= MAX_JOBS || n > MAX_NODES)
                return sd_bus_reply_method_errorf(m, STCISP_ERROR_BUSY, "the mock's queue is full");
        for (size_t i = 0; i < n; i++)
                if (node_id(targets[i]) < 0)
                        return sd_bus_reply_method_errorf(m, STCISP_ERROR_NODE_NOT_FOUND,
                                                          "'%s' is not a node: give nodeN, N, legacy or a configured name",
                                                          targets[i]);
        j = &jobs[n_jobs];
        *j = (struct mock_job) { .id = (uint32_t) n_jobs + 1 };
        snprintf(j->kind, sizeof(j->kind), "%s", kind);
        for (size_t i = 0; i < n; i++) {
                size_t k = strlen(j->target);

                snprintf(j->target + k, sizeof(j->target) - k, "%s%s", i ? "," : "", targets[i]);
                j->nodes[i] = node_for(kind, strdup(targets[i]), dry_run);
                if (strcmp(j->nodes[i].state, "running") == 0)
                        running++;
                else if (strcmp(j->nodes[i].state, "succeeded") != 0 && strcmp(j->nodes[i].outcome, "not-started") != 0)
                        failed++;
        }
        j->n_nodes = n;
        snprintf(j->state, sizeof(j->state), "%s", running ? "running" : failed ? "failed" : "succeeded");
        snprintf(j->phase, sizeof(j->phase), "%s", running ? "program" : "none");
        if (running && j->nodes[0].id == 6)
                snprintf(j->phase, sizeof(j->phase), "connect");
        if (running && (j->nodes[0].id == 11 || j->nodes[0].id == 6) &&
            sd_event_add_time_relative(the_event, NULL, CLOCK_MONOTONIC, SLOW_USEC, 0, on_slow_job_done, j) < 0)
                return sd_bus_reply_method_errorf(m, STCISP_ERROR_BUSY, "the mock has no timer");
        for (size_t i = 0; failed && i < n; i++)
                if (*j->nodes[i].error) {
                        if (n > 1)
                                snprintf(j->error, sizeof(j->error), "%u of %zu nodes failed: %s", failed, n, j->nodes[i].error);
                        else
                                snprintf(j->error, sizeof(j->error), "%s", j->nodes[i].error);
                        break;
                }
        if (strcmp(kind, "read") == 0 && !failed)
                j->image = j->nodes[0].id == 3 ? image_12_1 : image_low_bank;
        n_jobs++;
        job_path(j, path, sizeof(path));
        return sd_bus_reply_method_return(m, "o", path);
}

static int read_targets(sd_bus_message *m, bool array, char ***ret, size_t *ret_n, char *joined, size_t n_joined) {
        char **v = calloc(MAX_NODES + 1, sizeof(char *));
        const char *s;
        size_t n = 0, k = 0;
        int r;

        if (!v)
                return -ENOMEM;
        joined[0] = '\0';
        r = array ? sd_bus_message_enter_container(m, 'a', "s") : 1;
        while (r >= 0 && n < MAX_NODES && (r = sd_bus_message_read_basic(m, 's', &s)) > 0) {
                v[n++] = strdup(s);
                k += (size_t) snprintf(joined + k, n_joined - k, "%s%s", k ? "," : "", s);
                if (!array)
                        break;
        }
        if (r >= 0 && array)
                r = sd_bus_message_exit_container(m);
        *ret = v;
        *ret_n = n;
        return r;
}

static void strv_free(char **v) {
        for (size_t i = 0; v && v[i]; i++)
                free(v[i]);
        free(v);
}

static int method_job(sd_bus_message *m, const char *method, const char *kind, bool array, bool image) {
        char **targets = NULL, joined[256], options[512];
        const void *data;
        size_t n = 0, size;
        bool dry_run;
        int r;

        r = read_targets(m, array, &targets, &n, joined, sizeof(joined));
        if (r >= 0 && image)
                r = sd_bus_message_read_array(m, 'y', &data, &size);
        if (r >= 0)
                r = read_options(m, options, sizeof(options), &dry_run);
        if (r < 0) {
                strv_free(targets);
                return r;
        }
        log_call(method, joined, options);
        /* "stuck": a daemon that takes the call and never answers it */
        if (n == 1 && strcmp(targets[0], "stuck") == 0) {
                strv_free(targets);
                (void) sd_bus_message_ref(m);   /* held, never answered */
                return 1;
        }
        /* "all": what the node table would give */
        if (n == 1 && strcmp(targets[0], "all") == 0) {
                free(targets[0]);
                targets[0] = strdup("node1");
                targets[1] = strdup("node2");
                n = 2;
        }
        r = reply_job(m, kind, targets, n, dry_run);
        strv_free(targets);
        return r;
}

static int method_flash(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return method_job(m, "Flash", "flash", false, true);
}

static int method_flash_nodes(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return method_job(m, "FlashNodes", "flash", true, true);
}

static int method_verify(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return method_job(m, "Verify", "verify", true, true);
}

static int method_read(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return method_job(m, "Read", "read", false, false);
}

/* Status(s): a node's properties, as on its Node object. */
static int method_status(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *target;
        int id, r;

        r = sd_bus_message_read(m, "s", &target);
        if (r < 0)
                return r;
        log_call("Status", target, "");
        id = node_id(target);
        if (id < 0)
                return sd_bus_reply_method_errorf(m, STCISP_ERROR_NODE_NOT_FOUND, "'%s' is not a node", target);
        r = sd_bus_message_new_method_return(m, &reply);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'a', "{sv}");
        if (r >= 0)
                r = sd_bus_message_append(reply, "{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}{sv}",
                                          "Id", "y", (uint8_t) id,
                                          "Name", "s", target,
                                          "Form", "s", "extended",
                                          "State", "s", id == 3 ? "conflict" : id == 5 ? "application" : "isp",
                                          "UID", "s", "A4917069",
                                          "ImageCRC", "u", (uint32_t) (id == 5 ? 0x1C291CA3 : 0),
                                          "AppVersion", "u", (uint32_t) (id == 5 ? 0x00010002 : 0),
                                          "Running", "s", id == 5 ? "app.hex, flashed 2026-12-01 10:02" : "",
                                          "LastFlashName", "s", id == 5 ? "app.hex" : "",
                                          "LastFlashResult", "s", id == 5 ? "succeeded" : "",
                                          "LastFlashUSec", "t", (uint64_t) (id == 5 ? 1796112120000000ULL : 0));
        if (r >= 0)
                r = id == 3 ? sd_bus_message_append(reply, "{sv}", "ConflictUIDs", "as", 2, "A4917069", "5D0C33E1")
                            : sd_bus_message_append(reply, "{sv}", "ConflictUIDs", "as", 0);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

/* ListNodes: what ispctl --all asks. */
static int method_list_nodes(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return sd_bus_reply_method_return(m, "a(ysssyyts)", 2,
                                          1, "node1", "extended", "isp", 1, 1, (uint64_t) 0, "",
                                          2, "node2", "extended", "isp", 1, 1, (uint64_t) 0, "");
}

/* A failure as long as the daemon's longest: tables cut it, --json has it whole. */
#define LONG_ERROR "failed: node3 did not answer CONNECT within 1000 ms after 3 tries: is it powered and on " \
        "the bus, and does its id match? Two boards answer on this id (UIDs A4917069 and 5D0C33E1): give " \
        "one of them another id with its DIP switches, or power it off, then run 'ispctl scan' again"

/* ListJobs: one running with progress, one failed at length, one queued. */
static int method_list_jobs(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return sd_bus_reply_method_return(m, "a(ussssttso)", 3,
                (uint32_t) 7, "flash", "node1", "running", "program", (uint64_t) 4096, (uint64_t) 16384, "",
                STCISP_JOB_PREFIX "/7",
                (uint32_t) 8, "flash", "node3", "failed", "connect", (uint64_t) 0, (uint64_t) 16384,
                LONG_ERROR + strlen("failed: "), STCISP_JOB_PREFIX "/8",
                (uint32_t) 9, "reboot", "the-pump-in-the-basement-left", "queued", "none", (uint64_t) 0,
                (uint64_t) 0, "", STCISP_JOB_PREFIX "/9");
}

/* ListNodesEx: a node that runs what was flashed there, a conflicting id,
 * a name too long for the table, a legacy node. */
static int method_list_nodes_ex(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return sd_bus_reply_method_return(m, "a(sysssyyyysttstuouussas)", 4,
                "vcan0", 1, "node1", "extended", "application", 1, 1, 7, 4, "01020304",
                (uint64_t) 1, (uint64_t) 2, "succeeded", (uint64_t) 3, (uint32_t) 0x5907571D,
                STCISP_NODE_PREFIX "/1", (uint32_t) 0x5907571D, (uint32_t) 0x00010002, "app.hex",
                "app.hex, flashed 2026-12-01 10:02", 0,
                "vcan0", 3, "node3", "extended", "conflict", 1, 1, 7, 4, "A4917069",
                (uint64_t) 1, (uint64_t) 2, LONG_ERROR, (uint64_t) 0, (uint32_t) 0,
                STCISP_NODE_PREFIX "/3", (uint32_t) 0, (uint32_t) 0, "", "", 2, "A4917069", "5D0C33E1",
                "vcan0", 5, "the-pump-in-the-basement-left", "extended", "application", 1, 1, 7, 4, "01AABBCC",
                (uint64_t) 1, (uint64_t) 2, "", (uint64_t) 0, (uint32_t) 0,
                STCISP_NODE_PREFIX "/5", (uint32_t) 0x1C291CA3, (uint32_t) 0, "",
                "image 1C291CA3, a name longer than the column", 0,
                "vcan0", 0, "legacy", "legacy", "not-answering", 0, 0, 0, 0, "",
                (uint64_t) 0, (uint64_t) 0, "", (uint64_t) 0, (uint32_t) 0,
                STCISP_NODE_PREFIX "/0", (uint32_t) 0, (uint32_t) 0, "", "", 0);
}

static struct mock_job *job_by_id(uint32_t id) {
        return id >= 1 && id <= n_jobs ? &jobs[id - 1] : NULL;
}

static int cancel_job(sd_bus_message *m, struct mock_job *j, uint32_t id) {
        if (!j)
                return sd_bus_reply_method_errorf(m, STCISP_ERROR_NO_SUCH_JOB, "there is no job %u", id);
        if (strcmp(j->state, "running") != 0)
                return sd_bus_reply_method_errorf(m, STCISP_ERROR_JOB_FINISHED, "job %u has finished", id);
        snprintf(j->state, sizeof(j->state), "cancelled");
        snprintf(j->error, sizeof(j->error), "cancelled by a client");
        for (size_t i = 0; i < j->n_nodes; i++)
                j->nodes[i].state = "cancelled", j->nodes[i].error = "cancelled by a client";
        job_changed(sd_bus_message_get_bus(m), j);
        return sd_bus_reply_method_return(m, "");
}

static int method_cancel_job(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        char id_text[16];
        uint32_t id;
        int r;

        r = sd_bus_message_read(m, "u", &id);
        if (r < 0)
                return r;
        snprintf(id_text, sizeof(id_text), "%u", id);
        log_call("CancelJob", id_text, "");
        return cancel_job(m, job_by_id(id), id);
}

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("Flash", "saya{sv}", "o", method_flash, 0),
        SD_BUS_METHOD("FlashNodes", "asaya{sv}", "o", method_flash_nodes, 0),
        SD_BUS_METHOD("Verify", "asaya{sv}", "o", method_verify, 0),
        SD_BUS_METHOD("Read", "sa{sv}", "o", method_read, 0),
        SD_BUS_METHOD("Status", "s", "a{sv}", method_status, 0),
        SD_BUS_METHOD("CancelJob", "u", "", method_cancel_job, 0),
        SD_BUS_METHOD("ListNodes", "", "a(ysssyyts)", method_list_nodes, 0),
        SD_BUS_METHOD("ListNodesEx", "", "a(sysssyyyysttstuouussas)", method_list_nodes_ex, 0),
        SD_BUS_METHOD("ListJobs", "", "a(ussssttso)", method_list_jobs, 0),
        SD_BUS_VTABLE_END
};

/* ---- jobs ---- */

static int find_job(sd_bus *bus, const char *path, const char *interface, void *userdata, void **ret_found,
                    sd_bus_error *error) {
        const char *id = path + strlen(STCISP_JOB_PREFIX "/");

        if (strncmp(path, STCISP_JOB_PREFIX "/", strlen(STCISP_JOB_PREFIX "/")) != 0)
                return 0;
        for (size_t i = 0; i < n_jobs; i++)
                if ((uint32_t) strtoul(id, NULL, 10) == jobs[i].id) {
                        *ret_found = &jobs[i];
                        return 1;
                }
        return 0;
}

static int property_get_nodes(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        struct mock_job *j = userdata;
        int r;

        r = sd_bus_message_open_container(reply, 'a', "(ssyssttuuusssutau)");
        for (size_t i = 0; r >= 0 && i < j->n_nodes; i++) {
                const struct mock_node *nd = &j->nodes[i];
                bool done = strcmp(nd->state, "succeeded") == 0;

                r = sd_bus_message_open_container(reply, 'r', "ssyssttuuusssutau");
                if (r >= 0)
                        r = sd_bus_message_append(reply, "ssyssttuuusssut", "vcan0", nd->name, nd->id, nd->state,
                                                  nd->phase, done ? nd->total : (uint64_t) 0, nd->total, nd->written,
                                                  nd->skipped, (uint32_t) 0, nd->error, nd->outcome, nd->boot,
                                                  nd->to_erase, nd->estimate);
                if (r >= 0)
                        r = sd_bus_message_append_array(reply, 'u', nd->differing, nd->n_differing * sizeof(uint32_t));
                if (r >= 0)
                        r = sd_bus_message_close_container(reply);
        }
        return r < 0 ? r : sd_bus_message_close_container(reply);
}

/* The job's strings are arrays in it: sd-bus's own getter wants a char *. */
static int property_get_inline_string(sd_bus *bus, const char *path, const char *interface, const char *property,
                                      sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append_basic(reply, 's', userdata);
}

static int method_get_image(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        struct mock_job *j = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        if (!j->image)
                return sd_bus_reply_method_errorf(m, STCISP_BUS_NAME ".Error.NoImage",
                                                  "job %u is not a succeeded read job: it has no image", j->id);
        r = sd_bus_message_new_method_return(m, &reply);
        if (r >= 0)
                r = sd_bus_message_append_array(reply, 'y', j->image, strlen(j->image));
        return r < 0 ? r : sd_bus_send(NULL, reply, NULL);
}

static int method_job_cancel(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        struct mock_job *j = userdata;
        char id_text[16];

        snprintf(id_text, sizeof(id_text), "%u", j->id);
        log_call("Cancel", id_text, "");
        return cancel_job(m, j, j->id);
}

static const sd_bus_vtable job_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "u", NULL, offsetof(struct mock_job, id), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Kind", "s", property_get_inline_string, offsetof(struct mock_job, kind), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Target", "s", property_get_inline_string, offsetof(struct mock_job, target), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("State", "s", property_get_inline_string, offsetof(struct mock_job, state), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Phase", "s", property_get_inline_string, offsetof(struct mock_job, phase), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Error", "s", property_get_inline_string, offsetof(struct mock_job, error), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Nodes", "a(ssyssttuuusssutau)", property_get_nodes, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_METHOD("GetImage", "", "ay", method_get_image, 0),
        SD_BUS_METHOD("Cancel", "", "", method_job_cancel, 0),
        SD_BUS_VTABLE_END
};

/* SIGUSR1: off the bus for AWAY_USEC, then back with the same jobs. */
static int on_back(sd_event_source *s, uint64_t usec, void *userdata) {
        int r = sd_bus_request_name(the_bus, STCISP_BUS_NAME, 0);

        if (r < 0)
                fprintf(stderr, "mock-stcispd: taking the name again: %s\n", strerror(-r));
        return 0;
}

static int on_sigusr1(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        int r = sd_bus_release_name(the_bus, STCISP_BUS_NAME);

        if (r < 0)
                fprintf(stderr, "mock-stcispd: dropping the name: %s\n", strerror(-r));
        return sd_event_add_time_relative(the_event, NULL, CLOCK_MONOTONIC, AWAY_USEC, 0, on_back, NULL);
}

int main(int argc, char *argv[]) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        sigset_t mask;
        int r;

        if (argc != 2) {
                fprintf(stderr, "Usage: mock-stcispd ADDRESS\n");
                return 2;
        }
        sigemptyset(&mask);
        sigaddset(&mask, SIGUSR1);
        r = sigprocmask(SIG_BLOCK, &mask, NULL) < 0 ? -errno : 0;
        if (r >= 0)
                r = sd_event_default(&event);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGUSR1, on_sigusr1, NULL);
        if (r >= 0)
                r = sd_bus_new(&bus);
        if (r >= 0)
                r = sd_bus_set_address(bus, argv[1]);
        if (r >= 0)
                r = sd_bus_set_bus_client(bus, true);
        if (r >= 0)
                r = sd_bus_start(bus);
        if (r >= 0)
                r = sd_bus_add_object_vtable(bus, NULL, STCISP_OBJECT_PATH, STCISP_MANAGER_IFACE, manager_vtable, NULL);
        if (r >= 0)
                r = sd_bus_add_fallback_vtable(bus, NULL, STCISP_JOB_PREFIX, STCISP_JOB_IFACE, job_vtable, find_job, NULL);
        if (r >= 0)
                r = sd_bus_add_filter(bus, NULL, on_incoming, NULL);
        if (r >= 0)
                r = sd_bus_request_name(bus, STCISP_BUS_NAME, 0);
        if (r >= 0)
                r = sd_bus_attach_event(bus, event, 0);
        if (r >= 0)
                r = sd_bus_set_exit_on_disconnect(bus, true);
        if (r < 0) {
                fprintf(stderr, "mock-stcispd: %s\n", strerror(-r));
                return 1;
        }
        the_bus = bus;
        the_event = event;
        printf("ready\n");
        fflush(stdout);
        /* ends when the bus goes away (the test's dbus-daemon stops) */
        r = sd_event_loop(event);
        return r < 0 ? 1 : 0;
}
