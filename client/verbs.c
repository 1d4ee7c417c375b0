/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* status, list, jobs, cancel, monitor */
#include <errno.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-event.h>
#include <time.h>

#include "ispctl.h"
#include "stcisp-dbus.h"
#include "output.h"
#include "util.h"


/* One Status() value, kept for display. "Lines" (a{sa{sv}}) holds one
 * list of values per line: `sub`, named by `s`, chained through `next`. */
struct status_value {
        char key[32];
        char type;              /* the D-Bus type; 'A' as, 'L' Lines, 0 skipped */
        char *s;
        char **strv;            /* as */
        size_t n_strv;
        int64_t i;
        uint64_t u;
        struct status_value *sub;
        size_t n_sub;
        struct status_value *next;
};

static void status_values_free(struct status_value *v, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(v[i].s);
                for (size_t k = 0; k < v[i].n_strv; k++)
                        free(v[i].strv[k]);
                free(v[i].strv);
                status_values_free(v[i].sub, v[i].n_sub);
                if (v[i].next)
                        status_values_free(v[i].next, 1);
        }
        free(v);
}

static int read_status(sd_bus_message *m, struct status_value **ret, size_t *ret_n);

/* An as value, such as ConflictUIDs. */
static int read_strv(sd_bus_message *m, struct status_value *v) {
        const char *s;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "s");
        while (r >= 0 && (r = sd_bus_message_read_basic(m, 's', &s)) > 0) {
                char **p = realloc(v->strv, (v->n_strv + 1) * sizeof(*p));

                if (!p)
                        return -ENOMEM;
                v->strv = p;
                p[v->n_strv] = strdup(s);
                if (!p[v->n_strv])
                        return -ENOMEM;
                v->n_strv++;
        }
        return r < 0 ? r : sd_bus_message_exit_container(m);
}

/* Lines: a{sa{sv}}, into a chain of entries whose `sub` is a line's status. */
static int read_lines(sd_bus_message *m, struct status_value *v) {
        struct status_value **tail = &v->next;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sa{sv}}");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "sa{sv}")) > 0) {
                const char *name;
                struct status_value *line = calloc(1, sizeof(*line));

                if (!line)
                        return -ENOMEM;
                *tail = line;
                tail = &line->next;
                r = sd_bus_message_read(m, "s", &name);
                if (r >= 0 && !(line->s = strdup(name)))
                        r = -ENOMEM;
                if (r >= 0)
                        r = read_status(m, &line->sub, &line->n_sub);
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        return r < 0 ? r : sd_bus_message_exit_container(m);
}

static const struct status_value *status_get(const struct status_value *v, size_t n, const char *key) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(v[i].key, key) == 0)
                        return &v[i];
        return NULL;
}

static int read_status(sd_bus_message *m, struct status_value **ret, size_t *ret_n) {
        struct status_value *v = NULL;
        size_t n = 0;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                struct status_value *p = realloc(v, (n + 1) * sizeof(*v));
                const char *key, *contents;
                char type;

                if (!p) {
                        r = -ENOMEM;
                        break;
                }
                v = p;
                v[n] = (struct status_value) {};
                r = sd_bus_message_read(m, "s", &key);
                if (r < 0)
                        break;
                snprintf(v[n].key, sizeof(v[n].key), "%s", key);
                r = sd_bus_message_peek_type(m, &type, &contents);
                if (r < 0)
                        break;
                v[n].type = contents[0];
                r = sd_bus_message_enter_container(m, 'v', contents);
                if (r < 0)
                        break;
                switch (contents[0]) {
                case 's': {
                        const char *s;
                        r = sd_bus_message_read_basic(m, 's', &s);
                        if (r >= 0 && !(v[n].s = strdup(s)))
                                r = -ENOMEM;
                        break;
                }
                case 'u': { uint32_t x; r = sd_bus_message_read_basic(m, 'u', &x); v[n].u = x; break; }
                case 'i': { int32_t x; r = sd_bus_message_read_basic(m, 'i', &x); v[n].i = x; break; }
                case 'y': { uint8_t x; r = sd_bus_message_read_basic(m, 'y', &x); v[n].u = x; break; }
                case 't': { uint64_t x; r = sd_bus_message_read_basic(m, 't', &x); v[n].u = x; break; }
                case 'a':
                        if (strcmp(contents, "a{sa{sv}}") == 0 && strcmp(key, "Lines") == 0) {
                                v[n].type = 'L';
                                r = read_lines(m, &v[n]);
                                break;
                        }
                        if (strcmp(contents, "as") == 0) {
                                v[n].type = 'A';
                                r = read_strv(m, &v[n]);
                                break;
                        }
                        _fallthrough_;
                default:
                        /* a newer daemon's value this client does not know */
                        r = sd_bus_message_skip(m, contents);
                        v[n].type = 0;
                        break;
                }
                n++;
                if (r < 0)
                        break;
                r = sd_bus_message_exit_container(m);
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r < 0) {
                status_values_free(v, n);
                return r;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

static json_object *status_to_json(const struct status_value *v, size_t n, const char *target) {
        json_object *o = json_object_new_object();

        if (target && o)
                json_object_object_add(o, "target", json_object_new_string(target));
        for (size_t i = 0; o && i < n; i++) {
                char key[48];

                camel_to_snake(v[i].key, key, sizeof(key));
                switch (v[i].type) {
                case 0:   break;
                case 's': json_object_object_add(o, key, json_object_new_string(v[i].s)); break;
                case 'A': {
                        json_object *a = json_object_new_array();

                        for (size_t k = 0; k < v[i].n_strv; k++)
                                json_object_array_add(a, json_object_new_string(v[i].strv[k]));
                        json_object_object_add(o, key, a);
                        break;
                }
                case 'i': json_object_object_add(o, key, json_object_new_int64(v[i].i)); break;
                case 'L': {
                        json_object *lines = json_object_new_object();

                        for (const struct status_value *l = v[i].next; l; l = l->next)
                                json_object_object_add(lines, l->s, status_to_json(l->sub, l->n_sub, NULL));
                        json_object_object_add(o, key, lines);
                        break;
                }
                default:  json_object_object_add(o, key, json_object_new_int64((int64_t) v[i].u)); break;
                }
        }
        return o;
}

static void status_json(const struct status_value *v, size_t n, const char *target) {
        output_json(status_to_json(v, n, target));
}

#define S(k) (status_get(v, n, k) ? strna(status_get(v, n, k)->s) : "n/a")
#define U(k) (status_get(v, n, k) ? (unsigned long long) status_get(v, n, k)->u : 0ULL)
#define I(k) (status_get(v, n, k) ? (long long) status_get(v, n, k)->i : -1LL)
/* "" where an older daemon has no such key */
#define S0(k) (status_get(v, n, k) ? strempty(status_get(v, n, k)->s) : "")

/* One line's block: the interface, its bus and its queue. */
static void status_line_human(const struct status_value *v, size_t n) {
        char counters[64];

        printf("  Interface: %s (link %s)\n", S("Interface"), S("LinkState"));
        if (U("Bitrate"))
                printf("    Bitrate: %llu bit/s\n", U("Bitrate"));
        else
                printf("    Bitrate: unknown (the driver has no bit timing)\n");
        if (I("RxErrors") >= 0)
                snprintf(counters, sizeof(counters), " (rx errors %lld, tx errors %lld)", I("RxErrors"), I("TxErrors"));
        else
                counters[0] = '\0';
        printf(" Controller: %s%s\n", S("ControllerState"), counters);
        printf("     Errors: %llu error frame%s, %llu bus-off%s%s\n", U("ErrorFrames"), U("ErrorFrames") == 1 ? "" : "s",
               U("BusOffCount"), *S("LastError") ? "; last: " : "", S("LastError"));
        printf("     Frames: %llu sent, %llu received\n", U("FramesSent"), U("FramesReceived"));
        if (U("RunningJob"))
                printf("      Queue: %llu job%s, job %llu running\n", U("QueueLength"), U("QueueLength") == 1 ? "" : "s",
                       U("RunningJob"));
        else
                printf("      Queue: %llu job%s, none running\n", U("QueueLength"), U("QueueLength") == 1 ? "" : "s");
}

static void status_bus_human(const struct status_value *v, size_t n) {
        const struct status_value *lines = status_get(v, n, "Lines");

        printf("     Daemon: stcispd %s\n", S("Version"));
        /* The top level is the first line's; with several, each its own. */
        if (!lines || !lines->next || !lines->next->next)
                status_line_human(v, n);
        else
                for (const struct status_value *l = lines->next; l; l = l->next) {
                        status_line_human(l->sub, l->n_sub);
                        if (l->next)
                                printf("\n");
                }
        printf("    History: %llu finished job%s kept\n", U("HistoryLength"), U("HistoryLength") == 1 ? "" : "s");
}

static void status_node_human(const struct status_value *v, size_t n) {
        char a[64], b[32];
        unsigned caps = (unsigned) U("Capabilities");
        bool extended = strcmp(S("Form"), "extended") == 0;
        const struct status_value *uids = status_get(v, n, "ConflictUIDs");

        printf("         Node: %s (id %llu, %s)\n", S("Name"), U("Id"), S("Form"));
        printf("        State: %s%s%s\n", output_color_of(S("State")), S("State"),
               *output_color_of(S("State")) ? ANSI_NORMAL : "");
        if (uids && uids->n_strv > 0) {
                printf("     Conflict: %s boards answer on this id: UIDs ", uids->n_strv == 2 ? "two" : "several");
                for (size_t i = 0; i < uids->n_strv; i++)
                        printf("%s%s", i == 0 ? "" : i + 1 == uids->n_strv ? " and " : ", ", uids->strv[i]);
                printf("\n");
        }
        if (*S0("Running")) {
                char crc[16];

                /* "image 5907571D" says the CRC already, "app.hex, flashed …" does not */
                snprintf(crc, sizeof(crc), "%08llX", U("ImageCRC"));
                if (U("ImageCRC") && !strstr(S0("Running"), crc))
                        printf("      Running: %s (image %s)\n", S0("Running"), crc);
                else
                        printf("      Running: %s\n", S0("Running"));
        }
        if (U("AppVersion"))
                printf("  App version: 0x%08llX\n", U("AppVersion"));
        if (extended && U("ProtocolVersion")) {
                printf("     Protocol: %llu, ISP firmware %llu\n", U("ProtocolVersion"), U("FirmwareVersion"));
                printf(" Capabilities:%s%s%s%s\n", caps & 1 ? " crc" : "", caps & 2 ? " sector-erase" : "",
                       caps & 4 ? " quiet" : "", caps ? "" : " none");
                printf("Receive depth: %llu frames\n", U("ReceiveDepth"));
        }
        if (extended)
                /* (a board seen only running its application: its ISP's INFO is not known yet) */
                printf("          UID: %s\n", S("UID"));
        if (U("LastSeenUSec"))
                printf("    Last seen: %s (%s)\n", format_timestamp(U("LastSeenUSec"), a, sizeof(a)),
                       format_ago(U("LastSeenUSec"), b, sizeof(b)));
        else
                printf("    Last seen: never\n");
        if (*S("LastFlashResult") && *S0("LastFlashName"))
                printf("   Last flash: %s, %s, %s\n", S("LastFlashResult"), format_timestamp(U("LastFlashUSec"), a, sizeof(a)),
                       S0("LastFlashName"));
        else if (*S("LastFlashResult"))
                printf("   Last flash: %s, %s\n", S("LastFlashResult"), format_timestamp(U("LastFlashUSec"), a, sizeof(a)));
        else
                printf("   Last flash: none\n");
}

int verb_status(int argc, char *argv[], const struct ispctl_args *args) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *target = argc > 1 ? argv[1] : "";
        struct status_value *v = NULL;
        size_t n = 0;
        int r;

        if (argc > 2) {
                ispctl_error(args, NULL, 0, false, "Usage: ispctl status [TARGET]");
                return ISPCTL_EXIT_USAGE;
        }
        r = ispctl_connect(args, &bus);
        if (r != 0)
                return r;
        r = sd_bus_call_method(bus, STCISP_BUS_NAME, STCISP_OBJECT_PATH, STCISP_MANAGER_IFACE, "Status", &error, &reply, "s", target);
        if (r < 0)
                return ispctl_bus_error(args, *target ? target : "Status", &error, r);
        r = read_status(reply, &v, &n);
        if (r < 0)
                return ispctl_bus_error(args, "Reading the status", NULL, r);

        if (args->json)
                status_json(v, n, *target ? target : NULL);
        else if (*target)
                status_node_human(v, n);
        else
                status_bus_human(v, n);
        status_values_free(v, n);
        return ISPCTL_EXIT_SUCCESS;
}

int verb_list(int argc, char *argv[], const struct ispctl_args *args) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        json_object *nodes = NULL;
        int r;

        if (argc != 1) {
                ispctl_error(args, NULL, 0, false, "Usage: ispctl list");
                return ISPCTL_EXIT_USAGE;
        }
        r = ispctl_connect(args, &bus);
        if (r != 0)
                return r;
        r = output_node_table(args, bus, args->json ? &nodes : NULL);
        if (r == 0 && args->json) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "nodes", nodes);
                output_json(o);
        }
        return r;
}

int verb_jobs(int argc, char *argv[], const struct ispctl_args *args) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        json_object *arr = args->json ? json_object_new_array() : NULL;
        const char *kind, *target, *state, *phase, *err, *path;
        enum { COL_ID, COL_KIND, COL_TARGET, COL_STATE, COL_PHASE, COL_PROGRESS, COL_ERROR };
        static const char *const headers[] = { "ID", "KIND", "TARGET", "STATE", "PHASE", "PROGRESS", "ERROR" };
        /* the strings point into the reply */
        struct job_row {
                const char *kind, *target, *state, *phase, *error;
                char id[12], progress[32];
        };
        _cleanup_free_ struct job_row *rows = NULL;
        size_t w[] = { 5, 7, 12, 10, 9, 13, 5 };
        const size_t min[] = { 5, 7, 12, 10, 9, 13, 10 };
        uint64_t done, total;
        unsigned n = 0;
        uint32_t id;
        int r;

        if (argc != 1) {
                ispctl_error(args, NULL, 0, false, "Usage: ispctl jobs");
                json_object_put(arr);
                return ISPCTL_EXIT_USAGE;
        }
        r = ispctl_connect(args, &bus);
        if (r != 0) {
                json_object_put(arr);
                return r;
        }
        r = sd_bus_call_method(bus, STCISP_BUS_NAME, STCISP_OBJECT_PATH, STCISP_MANAGER_IFACE, "ListJobs", &error, &reply, "");
        if (r < 0) {
                json_object_put(arr);
                return ispctl_bus_error(args, "Listing the jobs", &error, r);
        }
        r = sd_bus_message_enter_container(reply, 'a', "(ussssttso)");
        while (r >= 0 && (r = sd_bus_message_read(reply, "(ussssttso)", &id, &kind, &target, &state, &phase,
                                                   &done, &total, &err, &path)) > 0) {
                if (args->json) {
                        json_object *o = json_object_new_object();
                        json_object_object_add(o, "id", json_object_new_int64(id));
                        json_object_object_add(o, "kind", json_object_new_string(kind));
                        json_object_object_add(o, "target", json_object_new_string(target));
                        json_object_object_add(o, "state", json_object_new_string(state));
                        json_object_object_add(o, "phase", json_object_new_string(phase));
                        json_object_object_add(o, "bytes_done", json_object_new_int64((int64_t) done));
                        json_object_object_add(o, "bytes_total", json_object_new_int64((int64_t) total));
                        json_object_object_add(o, "error", *err ? json_object_new_string(err) : NULL);
                        json_object_object_add(o, "job", json_object_new_string(path));
                        json_object_array_add(arr, o);
                        n++;
                        continue;
                }
                struct job_row *v = realloc(rows, (n + 1) * sizeof(*rows));

                if (!v) {
                        r = -ENOMEM;
                        break;
                }
                rows = v;
                rows[n] = (struct job_row) { .kind = kind, .target = target, .state = state, .error = *err ? err : "",
                                             .phase = strcmp(state, "queued") == 0 ? "-" : phase };
                snprintf(rows[n].id, sizeof(rows[n].id), "%u", id);
                snprintf(rows[n].progress, sizeof(rows[n].progress), "-");
                if (total > 0 && strcmp(state, "running") == 0)
                        snprintf(rows[n].progress, sizeof(rows[n].progress), "%llu/%llu", (unsigned long long) done,
                                 (unsigned long long) total);
                widen(&w[COL_ID], rows[n].id, 10);
                widen(&w[COL_KIND], kind, 8);
                widen(&w[COL_TARGET], target, 24);
                widen(&w[COL_STATE], state, 10);
                widen(&w[COL_PHASE], rows[n].phase, 10);
                widen(&w[COL_PROGRESS], rows[n].progress, 13);
                widen(&w[COL_ERROR], rows[n].error, 60);
                n++;
        }
        if (r < 0) {
                json_object_put(arr);
                return ispctl_bus_error(args, "Listing the jobs", NULL, r);
        }
        if (args->json) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "jobs", arr);
                output_json(o);
                return ISPCTL_EXIT_SUCCESS;
        }

        /* the whole error is in --json: here a row fits the terminal */
        fit_columns(w, min, ELEMENTSOF(w), (const size_t[]) { COL_TARGET, COL_ERROR }, 2, output_columns());
        if (!args->no_legend && !args->quiet) {
                for (size_t k = 0; k < ELEMENTSOF(w); k++)
                        print_cell(headers[k], "", w[k], k + 1 == ELEMENTSOF(w));
                printf("\n");
        }
        for (unsigned i = 0; i < n; i++) {
                const struct job_row *j = &rows[i];

                print_cell(j->id, "", w[COL_ID], false);
                print_cell(j->kind, "", w[COL_KIND], false);
                print_cell(j->target, "", w[COL_TARGET], false);
                print_cell(j->state, output_color_of(j->state), w[COL_STATE], false);
                print_cell(j->phase, "", w[COL_PHASE], false);
                print_cell(j->progress, "", w[COL_PROGRESS], !*j->error);
                if (*j->error)
                        print_cell(j->error, "", w[COL_ERROR], true);
                printf("\n");
        }
        if (!args->no_legend && !args->quiet)
                printf("\n%u job%s listed.\n", n, n == 1 ? "" : "s");
        return ISPCTL_EXIT_SUCCESS;
}

int verb_cancel(int argc, char *argv[], const struct ispctl_args *args) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        json_object *arr = NULL;
        int r;

        if (argc < 2) {
                ispctl_error(args, NULL, 0, false, "Usage: ispctl cancel JOB... (a job id or object path; 'ispctl jobs' lists them)");
                return ISPCTL_EXIT_USAGE;
        }
        /* All ids are checked before the first is cancelled. */
        for (int i = 1; i < argc; i++) {
                const char *s = strrchr(argv[i], '/') ? strrchr(argv[i], '/') + 1 : argv[i];
                char *end;
                unsigned long id;

                errno = 0;
                id = strtoul(s, &end, 10);
                if (!*s || *end || errno || id == 0 || id > UINT32_MAX || *s == '-' || *s == '+') {
                        ispctl_error(args, NULL, 0, false, "'%s' is not a job: give its id or object path ('ispctl jobs' lists them)", argv[i]);
                        return ISPCTL_EXIT_USAGE;
                }
        }
        r = ispctl_connect(args, &bus);
        if (r != 0)
                return r;
        arr = json_object_new_array();
        for (int i = 1; i < argc; i++) {
                _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
                const char *s = strrchr(argv[i], '/') ? strrchr(argv[i], '/') + 1 : argv[i];
                uint32_t id = (uint32_t) strtoul(s, NULL, 10);
                char what[64];

                snprintf(what, sizeof(what), "Cancelling job %u", id);
                r = sd_bus_call_method(bus, STCISP_BUS_NAME, STCISP_OBJECT_PATH, STCISP_MANAGER_IFACE, "CancelJob", &error, NULL, "u", id);
                if (r < 0) {
                        json_object_put(arr);
                        if (sd_bus_error_has_name(&error, STCISP_ERROR_NO_SUCH_JOB) ||
                            sd_bus_error_has_name(&error, STCISP_ERROR_JOB_FINISHED)) {
                                ispctl_error(args, NULL, 0, false, "%s", error.message);
                                return ISPCTL_EXIT_USAGE;
                        }
                        return ispctl_bus_error(args, what, &error, r);
                }
                json_object_array_add(arr, json_object_new_int64(id));
                if (!args->json && !args->quiet)
                        printf("Job %u cancelled.\n", id);
        }
        if (args->json) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "cancelled", arr);
                output_json(o);
        } else
                json_object_put(arr);
        return ISPCTL_EXIT_SUCCESS;
}

/* ---- monitor ---- */

struct monitor {
        const struct ispctl_args *args;
        uint64_t last_progress[64];     /* per job id % 64: throttle progress lines */
};

static void monitor_time(char *buf, size_t n) {
        struct timespec ts;
        struct tm tm;

        clock_gettime(CLOCK_REALTIME, &ts);
        localtime_r(&ts.tv_sec, &tm);
        strftime(buf, n, "%H:%M:%S", &tm);
}

static int on_job_new(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        struct monitor *mon = userdata;
        const char *path, *target;
        uint32_t id;
        char t[16];

        if (sd_bus_message_read(m, "uos", &id, &path, &target) < 0)
                return 0;
        if (mon->args->json) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "event", json_object_new_string("job-new"));
                json_object_object_add(o, "id", json_object_new_int64(id));
                json_object_object_add(o, "job", json_object_new_string(path));
                json_object_object_add(o, "target", json_object_new_string(target));
                output_json(o);
        } else {
                monitor_time(t, sizeof(t));
                printf("%s job %u queued for %s\n", t, id, target);
                fflush(stdout);
        }
        return 0;
}

static int on_job_removed(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        struct monitor *mon = userdata;
        const char *path, *target, *result;
        uint32_t id;
        char t[16];

        if (sd_bus_message_read(m, "uoss", &id, &path, &target, &result) < 0)
                return 0;
        if (mon->args->json) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "event", json_object_new_string("job-removed"));
                json_object_object_add(o, "id", json_object_new_int64(id));
                json_object_object_add(o, "job", json_object_new_string(path));
                json_object_object_add(o, "target", json_object_new_string(target));
                json_object_object_add(o, "result", json_object_new_string(result));
                output_json(o);
        } else {
                monitor_time(t, sizeof(t));
                printf("%s job %u (%s) %s\n", t, id, target, result);
                fflush(stdout);
        }
        return 0;
}

static int on_job_changed(sd_bus_message *m, void *userdata, sd_bus_error *e) {
        struct monitor *mon = userdata;
        const char *path = sd_bus_message_get_path(m), *iface, *slash;
        json_object *o;
        uint32_t id;
        bool only_progress = true;
        uint64_t now;
        struct timespec ts;
        int r;

        if (!path || strncmp(path, STCISP_OBJECT_PATH "/job/", strlen(STCISP_OBJECT_PATH "/job/")) != 0)
                return 0;
        if (sd_bus_message_read(m, "s", &iface) < 0 || strcmp(iface, STCISP_JOB_IFACE) != 0)
                return 0;
        slash = strrchr(path, '/');
        id = (uint32_t) strtoul(slash + 1, NULL, 10);

        o = json_object_new_object();
        json_object_object_add(o, "event", json_object_new_string("job-changed"));
        json_object_object_add(o, "id", json_object_new_int64(id));
        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key, *contents, *s;
                char type, k[48];
                uint64_t t;
                uint32_t u;

                if (sd_bus_message_read(m, "s", &key) < 0 || sd_bus_message_peek_type(m, &type, &contents) < 0)
                        break;
                camel_to_snake(key, k, sizeof(k));
                if (strcmp(contents, "s") == 0 && sd_bus_message_read(m, "v", "s", &s) >= 0)
                        json_object_object_add(o, k, json_object_new_string(s));
                else if (strcmp(contents, "t") == 0 && sd_bus_message_read(m, "v", "t", &t) >= 0)
                        json_object_object_add(o, k, json_object_new_int64((int64_t) t));
                else if (strcmp(contents, "u") == 0 && sd_bus_message_read(m, "v", "u", &u) >= 0)
                        json_object_object_add(o, k, json_object_new_int64(u));
                else
                        (void) sd_bus_message_skip(m, "v");
                /* Nodes comes with every progress signal of a job of several nodes */
                if (strcmp(key, "BytesDone") != 0 && strcmp(key, "BytesTotal") != 0 && strcmp(key, "Nodes") != 0)
                        only_progress = false;
                (void) sd_bus_message_exit_container(m);
        }

        /* progress alone at most once a second for a person */
        clock_gettime(CLOCK_MONOTONIC, &ts);
        now = (uint64_t) ts.tv_sec;
        if (!mon->args->json && only_progress && mon->last_progress[id % 64] == now) {
                json_object_put(o);
                return 0;
        }
        mon->last_progress[id % 64] = now;

        if (mon->args->json)
                output_json(o);
        else {
                json_object *v;
                char t[16];

                monitor_time(t, sizeof(t));
                printf("%s job %u", t, id);
                if (json_object_object_get_ex(o, "state", &v))
                        printf(" %s", json_object_get_string(v));
                if (json_object_object_get_ex(o, "phase", &v))
                        printf(" phase %s", json_object_get_string(v));
                if (json_object_object_get_ex(o, "bytes_done", &v)) {
                        json_object *tot;
                        printf(" %s", json_object_get_string(v));
                        if (json_object_object_get_ex(o, "bytes_total", &tot))
                                printf("/%s", json_object_get_string(tot));
                }
                if (json_object_object_get_ex(o, "error", &v) && *json_object_get_string(v))
                        printf(": %s", json_object_get_string(v));
                printf("\n");
                fflush(stdout);
                json_object_put(o);
        }
        return 0;
}

int verb_monitor(int argc, char *argv[], const struct ispctl_args *args) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        struct monitor mon = { .args = args };
        sd_event *event = NULL;
        sigset_t mask;
        int r;

        if (argc != 1) {
                ispctl_error(args, NULL, 0, false, "Usage: ispctl monitor");
                return ISPCTL_EXIT_USAGE;
        }
        r = ispctl_connect(args, &bus);
        if (r != 0)
                return r;
        /* Fail now, not silently later, when the daemon is not there. */
        r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                               "GetNameOwner", &error, NULL, "s", STCISP_BUS_NAME);
        if (r < 0)
                return ispctl_bus_error(args, "Monitoring", &error, r);

        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        sigprocmask(SIG_BLOCK, &mask, NULL);

        r = sd_event_new(&event);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGINT, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGTERM, NULL, NULL);
        if (r >= 0)
                r = sd_bus_attach_event(bus, event, 0);
        if (r >= 0)
                r = sd_bus_match_signal(bus, NULL, STCISP_BUS_NAME, STCISP_OBJECT_PATH, STCISP_MANAGER_IFACE, "JobNew", on_job_new, &mon);
        if (r >= 0)
                r = sd_bus_match_signal(bus, NULL, STCISP_BUS_NAME, STCISP_OBJECT_PATH, STCISP_MANAGER_IFACE, "JobRemoved", on_job_removed, &mon);
        if (r >= 0)
                r = sd_bus_match_signal(bus, NULL, STCISP_BUS_NAME, NULL, "org.freedesktop.DBus.Properties",
                                        "PropertiesChanged", on_job_changed, &mon);
        if (r < 0) {
                sd_event_unref(event);
                return ispctl_bus_error(args, "Monitoring", NULL, r);
        }
        if (!args->json && !args->quiet) {
                printf("Monitoring jobs on %s; Ctrl-C stops.\n", args->host ? args->host : "this machine");
                fflush(stdout);
        }
        r = sd_event_loop(event);
        sd_event_unref(event);
        return r < 0 ? ispctl_bus_error(args, "Monitoring", NULL, r) : ISPCTL_EXIT_SUCCESS;
}
