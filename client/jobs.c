/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* flash, verify, read, reboot, scan: queue jobs, then follow them to
 * their end with a live progress display (terminal), one line per phase
 * change (pipe), or one JSON object at the end (--json). A job of several
 * nodes (FlashNodes, Verify) is shown as one line per node, from its Nodes
 * property; a job of one node takes its outcome from there too. */
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "isp-image.h"
#include "stcisp-dbus.h"
#include "ispctl.h"
#include "output.h"
#include "util.h"

#define REDRAW_USEC (100 * 1000ULL)
/* How long stcispd may be off the bus before ispctl gives up following:
 * long enough for 'systemctl restart stcispd' (or a name dropped and taken
 * again), short enough that a crash (restarted after RestartSec=5s) ends
 * ispctl within a few seconds. */
#define GRACE_USEC (3 * 1000 * 1000ULL)
/* Job.Nodes, and the same before issue 10 (a daemon on another host may
 * be older): the first 11 fields are common. */
#define NODES_FIELDS "ssyssttuuusssutau"
#define NODES_FIELDS_V1 "ssyssttuuus"
#define NODES_STRUCT "(" NODES_FIELDS ")"
#define NODES_STRUCT_V1 "(" NODES_FIELDS_V1 ")"
/* the differing sectors listed in a line; the rest are counted */
#define DIFFERING_SHOWN 8

/* One line of the display: a job, or one node of a job of several. */
struct row {
        char *label;                    /* the target, or the node's name */
        char state[16];
        char phase[16];
        char *error;
        uint64_t done, total;
        uint64_t phase_start;           /* CLOCK_MONOTONIC µs */
        char printed_phase[16];         /* pipe mode: the last phase printed */
        bool final;
};

struct watched_node {
        struct row row;
        char *interface;
        uint8_t id;
        unsigned sectors_written, sectors_skipped, repairs;
        char outcome[16];               /* "" while it runs or when it failed */
        char boot[16];                  /* confirmed, unconfirmed, failed; "" none */
        unsigned sectors_to_erase;
        uint64_t estimate_usec;         /* dry run */
        uint32_t *differing;            /* flash offsets of differing sectors */
        size_t n_differing;
        uint32_t board_crc;             /* verify: its ImageCRC, asked once */
        bool board_crc_asked;
};

struct watched_job {
        struct row row;
        char *path;
        uint32_t id;
        bool by_node;                   /* shown as its nodes */
        bool label_from_target;         /* wait: labelled by its Target, as it was queued */
        char kind[16];                  /* Kind: flash, verify, ... */
        struct watched_node *nodes;     /* Nodes: also for a job of one node */
        size_t n_nodes;
        /* The GetAll reply the job was last read from: a signal its sender
         * sent before it (a lower serial) is older than what we know. */
        char *read_from;
        uint64_t read_cookie;
};

/* What the verb asked for: how the end of a job of several nodes is summed up. */
enum waiter_mode {
        WAITER_FLASH,                   /* flash, reboot, scan */
        WAITER_DRY_RUN,
        WAITER_VERIFY,
};

struct waiter {
        const struct ispctl_args *args;
        sd_bus *bus;
        sd_event *event;
        struct watched_job *jobs;
        size_t n_jobs;
        bool tty;
        unsigned lines_drawn;
        bool dirty;
        bool quiet;             /* no display, no JSON: the caller reports */
        bool daemon_gone;       /* stcispd left the bus while we followed */
        bool finishing;         /* the last draw, after the final states are read */
        enum waiter_mode mode;
        const char *file;       /* verify: the image file, for messages */
        uint32_t file_crc;      /* verify: its CRC-32 (ispctl inspect's) */
        bool keep_json;         /* leave the result in `json` for the caller to complete */
        json_object *json;
        sd_event_source *redraw;
        sd_event_source *grace;         /* stcispd is off the bus: until it gives up */
        sd_event_source *timeout;       /* --timeout */
        sd_event_source *sigint, *sigterm;
        sigset_t old_mask;
        bool mask_set;
        bool timed_out;
        int signal;                     /* SIGINT or SIGTERM ended the following */
        int status;                     /* an exit status reported from a callback, 0 none */
};

static bool state_is_final(const char *s) {
        return strcmp(s, "succeeded") == 0 || strcmp(s, "failed") == 0 || strcmp(s, "cancelled") == 0;
}

static struct watched_job *find_job(struct waiter *w, const char *path) {
        for (size_t i = 0; i < w->n_jobs; i++)
                if (w->jobs[i].path && strcmp(w->jobs[i].path, path) == 0)
                        return &w->jobs[i];
        return NULL;
}

static void row_set_phase(struct row *row, const char *phase) {
        if (strcmp(row->phase, phase) != 0)
                row->phase_start = now_usec(CLOCK_MONOTONIC);
        snprintf(row->phase, sizeof(row->phase), "%s", phase);
}

static void row_set_error(struct row *row, const char *error) {
        free(row->error);
        row->error = *error ? strdup(error) : NULL;
}

static void watched_node_done(struct watched_node *nd) {
        free(nd->row.label);
        free(nd->row.error);
        free(nd->interface);
        free(nd->differing);
}

/* Keep the first n nodes, drop the rest. */
static void watched_nodes_truncate(struct watched_job *j, size_t n) {
        while (j->n_nodes > n)
                watched_node_done(&j->nodes[--j->n_nodes]);
}

static int watched_nodes_append(struct watched_job *j, const char *ifname, const char *name, uint8_t id) {
        struct watched_node *v = realloc(j->nodes, (j->n_nodes + 1) * sizeof(*v)), *nd;

        if (!v)
                return -ENOMEM;
        j->nodes = v;
        nd = &v[j->n_nodes];
        *nd = (struct watched_node) { .id = id, .row.phase_start = now_usec(CLOCK_MONOTONIC) };
        nd->row.label = strdup(name);
        nd->interface = strdup(ifname);
        if (!nd->row.label || !nd->interface) {
                watched_node_done(nd);
                return -ENOMEM;
        }
        j->n_nodes++;
        return 0;
}

/* The differing sector offsets (au) of one Nodes entry. */
static int read_differing(sd_bus_message *m, struct watched_node *nd) {
        uint32_t off;
        int r;

        nd->differing = mfree(nd->differing);
        nd->n_differing = 0;
        r = sd_bus_message_enter_container(m, 'a', "u");
        while (r >= 0 && (r = sd_bus_message_read_basic(m, 'u', &off)) > 0) {
                uint32_t *v = realloc(nd->differing, (nd->n_differing + 1) * sizeof(*v));

                if (!v)
                        return -ENOMEM;
                nd->differing = v;
                nd->differing[nd->n_differing++] = off;
        }
        return r < 0 ? r : sd_bus_message_exit_container(m);
}

/* Nodes: a(ssyssttuuusssutau). The daemon never reorders them, so an
 * entry keeps its place from one signal to the next, and with it its
 * phase start and what was printed for it. */
static int read_nodes(sd_bus_message *m, struct watched_job *j) {
        const char *contents, *ifname, *name, *state, *phase, *error, *outcome = "", *boot = "";
        uint64_t done, total, estimate = 0;
        uint32_t written, skipped, repairs, to_erase = 0;
        size_t n = 0;
        uint8_t id;
        bool v1;
        int r;

        r = sd_bus_message_peek_type(m, NULL, &contents);
        if (r < 0)
                return r;
        v1 = strcmp(contents, "a" NODES_STRUCT_V1) == 0;
        if (!v1 && strcmp(contents, "a" NODES_STRUCT) != 0)
                return sd_bus_message_skip(m, "v");     /* a newer daemon's: no nodes shown */

        r = sd_bus_message_enter_container(m, 'v', contents);
        if (r >= 0)
                r = sd_bus_message_enter_container(m, 'a', contents + 1);
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'r', v1 ? NODES_FIELDS_V1 : NODES_FIELDS)) > 0) {
                struct watched_node *nd;

                r = sd_bus_message_read(m, "ssyssttuuus", &ifname, &name, &id, &state, &phase, &done, &total,
                                        &written, &skipped, &repairs, &error);
                if (r >= 0 && !v1)
                        r = sd_bus_message_read(m, "ssut", &outcome, &boot, &to_erase, &estimate);
                if (r < 0)
                        return r;
                if (n >= j->n_nodes || strcmp(j->nodes[n].row.label, name) != 0 ||
                    strcmp(j->nodes[n].interface, ifname) != 0) {
                        watched_nodes_truncate(j, n);
                        r = watched_nodes_append(j, ifname, name, id);
                        if (r < 0)
                                return r;
                }
                nd = &j->nodes[n++];
                snprintf(nd->row.state, sizeof(nd->row.state), "%s", state);
                row_set_phase(&nd->row, phase);
                row_set_error(&nd->row, error);
                nd->row.done = done;
                nd->row.total = total;
                nd->row.final = state_is_final(state);
                nd->sectors_written = written;
                nd->sectors_skipped = skipped;
                nd->repairs = repairs;
                snprintf(nd->outcome, sizeof(nd->outcome), "%s", outcome);
                snprintf(nd->boot, sizeof(nd->boot), "%s", boot);
                nd->sectors_to_erase = to_erase;
                nd->estimate_usec = estimate;
                r = v1 ? 0 : read_differing(m, nd);
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        watched_nodes_truncate(j, n);
        return 0;
}

/* Read an a{sv} of Job properties (GetAll reply or PropertiesChanged). */
static int read_job_props(sd_bus_message *m, struct watched_job *j) {
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key, *s;
                uint64_t t;
                uint32_t u;

                r = sd_bus_message_read(m, "s", &key);
                if (r < 0)
                        return r;
                if (strcmp(key, "State") == 0 || strcmp(key, "Phase") == 0 || strcmp(key, "Error") == 0) {
                        r = sd_bus_message_read(m, "v", "s", &s);
                        if (r < 0)
                                return r;
                        if (key[0] == 'S')
                                snprintf(j->row.state, sizeof(j->row.state), "%s", s);
                        else if (key[0] == 'P')
                                row_set_phase(&j->row, s);
                        else
                                row_set_error(&j->row, s);
                } else if (strcmp(key, "BytesDone") == 0 || strcmp(key, "BytesTotal") == 0) {
                        r = sd_bus_message_read(m, "v", "t", &t);
                        if (r < 0)
                                return r;
                        if (key[5] == 'D')
                                j->row.done = t;
                        else
                                j->row.total = t;
                } else if (strcmp(key, "Kind") == 0) {
                        r = sd_bus_message_read(m, "v", "s", &s);
                        if (r < 0)
                                return r;
                        snprintf(j->kind, sizeof(j->kind), "%s", s);
                } else if (strcmp(key, "Id") == 0) {
                        r = sd_bus_message_read(m, "v", "u", &u);
                        if (r < 0)
                                return r;
                        j->id = u;
                } else if (strcmp(key, "Target") == 0 && (j->by_node || j->label_from_target)) {
                        r = sd_bus_message_read(m, "v", "s", &s);
                        if (r < 0)
                                return r;
                        free(j->row.label);
                        j->row.label = strdup(s);
                        if (!j->row.label)
                                return -ENOMEM;
                } else if (strcmp(key, "Nodes") == 0) {
                        r = read_nodes(m, j);
                        if (r < 0)
                                return r;
                        /* one target that names several nodes (a group): node by node */
                        if (j->n_nodes > 1)
                                j->by_node = true;
                } else {
                        r = sd_bus_message_skip(m, "v");
                        if (r < 0)
                                return r;
                }
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

static int fetch_job(struct waiter *w, struct watched_job *j) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call_method(w->bus, STCISP_BUS_NAME, j->path, "org.freedesktop.DBus.Properties", "GetAll",
                               &error, &reply, "s", STCISP_JOB_IFACE);
        if (sd_bus_error_has_name(&error, "org.freedesktop.DBus.Error.UnknownObject") ||
            sd_bus_error_has_name(&error, "org.freedesktop.DBus.Error.UnknownInterface") ||
            sd_bus_error_has_name(&error, STCISP_ERROR_NO_SUCH_JOB)) {
                /* as cancel says it: a wrong id is the caller's mistake */
                ispctl_error(w->args, NULL, 0, false, "Job %" PRIu32 " does not exist: 'ispctl jobs' lists the jobs stcispd knows",
                             j->id);
                return ISPCTL_EXIT_USAGE;
        }
        if (r < 0)
                return ispctl_bus_error(w->args, "Reading the job", &error, r);
        r = read_job_props(reply, j);
        if (r < 0)
                return ispctl_bus_error(w->args, "Reading the job", NULL, r);
        j->row.final = state_is_final(j->row.state);
        free(j->read_from);
        j->read_from = sd_bus_message_get_sender(reply) ? strdup(sd_bus_message_get_sender(reply)) : NULL;
        if (!j->read_from || sd_bus_message_get_cookie(reply, &j->read_cookie) < 0)
                j->read_cookie = 0;
        return 0;
}

/* Signals that were on their way while GetAll was answered are
 * dispatched after its reply: those sent before it are stale. Serials
 * grow along one connection; a daemon restarted is another sender. */
static bool signal_is_stale(const struct watched_job *j, sd_bus_message *m) {
        const char *sender = sd_bus_message_get_sender(m);
        uint64_t cookie;

        return j->read_cookie > 0 && sender && strcmp(sender, j->read_from) == 0 &&
               sd_bus_message_get_cookie(m, &cookie) >= 0 && cookie < j->read_cookie;
}

static void format_size(uint64_t v, char *buf, size_t n) {
        if (v < 1024)
                snprintf(buf, n, "%llu B", (unsigned long long) v);
        else
                snprintf(buf, n, "%.1f KiB", (double) v / 1024.0);
}

/* The board's ImageCRC (what its application answered IDENTIFY with),
 * from the node's properties; 0 when it has none or the call fails. */
static uint32_t node_image_crc(sd_bus *bus, const char *target) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        uint32_t crc = 0;
        int r;

        r = sd_bus_call_method(bus, STCISP_BUS_NAME, STCISP_OBJECT_PATH, STCISP_MANAGER_IFACE, "Status", NULL, &reply,
                               "s", target);
        if (r >= 0)
                r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                const char *key;

                r = sd_bus_message_read(reply, "s", &key);
                if (r >= 0 && strcmp(key, "ImageCRC") == 0)
                        r = sd_bus_message_read(reply, "v", "u", &crc);
                else if (r >= 0)
                        r = sd_bus_message_skip(reply, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        return crc;
}

/* "differs: 3 sectors (FE:0200 FE:0400 FF:1000)"; a running board, which
 * is compared by its image CRC: "differs: runs image 1C291CA3, app.hex is
 * 5907571D". */
static void differs_text(struct waiter *w, struct watched_node *nd, char *buf, size_t n) {
        size_t k;

        if (nd->n_differing > 0) {
                k = (size_t) snprintf(buf, n, "differs: %zu sector%s (", nd->n_differing, nd->n_differing == 1 ? "" : "s");
                for (size_t i = 0; i < nd->n_differing && i < DIFFERING_SHOWN && k < n; i++) {
                        char a[ISP_ADDR_STRING_MAX];

                        k += (size_t) snprintf(buf + k, n - k, "%s%s", i ? " " : "",
                                               isp_offset_to_string(nd->differing[i], a));
                }
                if (nd->n_differing > DIFFERING_SHOWN && k < n)
                        k += (size_t) snprintf(buf + k, n - k, " and %zu more", nd->n_differing - DIFFERING_SHOWN);
                if (k < n)
                        snprintf(buf + k, n - k, ")");
                return;
        }
        if (w->file && !nd->board_crc_asked) {
                nd->board_crc = node_image_crc(w->bus, nd->row.label);
                nd->board_crc_asked = true;
        }
        if (w->file && nd->board_crc)
                snprintf(buf, n, "differs: runs image %08" PRIX32 ", %s is %08" PRIX32, nd->board_crc, w->file,
                         w->file_crc);
        else
                snprintf(buf, n, "differs");
}

/* How a row ended, for people: "succeeded (boot confirmed)", "up-to-date",
 * "not-started", "would erase 12 sectors, write 5432 bytes (about 1.2 s)",
 * "matches", "differs: …", "failed: <error>", "cancelled". The state and
 * error are the row's; the outcome is its node's (nd, NULL when the job
 * has no node entry: a scan, or an older daemon). */
static void result_text(struct waiter *w, const struct row *row, struct watched_node *nd, char *buf, size_t n) {
        const char *outcome = nd ? nd->outcome : "";
        const char *boot = nd ? nd->boot : "";

        /* a canary failed first: whatever state the daemon gives it */
        if (strcmp(outcome, "not-started") == 0) {
                snprintf(buf, n, "not-started");
                return;
        }
        if (strcmp(row->state, "succeeded") != 0) {
                snprintf(buf, n, "%s%s%s", row->state, row->error ? ": " : "", strempty(row->error));
                return;
        }

        if (strcmp(outcome, "would-flash") == 0) {
                int k = snprintf(buf, n, "would erase %u sector%s, write %llu byte%s", nd->sectors_to_erase,
                                 nd->sectors_to_erase == 1 ? "" : "s", (unsigned long long) nd->row.total,
                                 nd->row.total == 1 ? "" : "s");

                if (nd->estimate_usec > 0 && k >= 0 && (size_t) k < n)
                        snprintf(buf + k, n - (size_t) k, " (about %.1f s)", (double) nd->estimate_usec / 1e6);
        } else if (strcmp(outcome, "differs") == 0)
                differs_text(w, nd, buf, n);
        else if (strcmp(outcome, "matches") == 0 || strcmp(outcome, "up-to-date") == 0)
                snprintf(buf, n, "%s%s%s%s", outcome, *boot ? " (boot " : "", boot, *boot ? ")" : "");
        else
                /* flashed, rebooted, read, or no outcome (an older daemon) */
                snprintf(buf, n, "succeeded%s%s%s", *boot ? " (boot " : "", boot, *boot ? ")" : "");
}

/* The node entry that tells how a job of one node ended, NULL if none. */
static struct watched_node *job_node(struct watched_job *j) {
        return j->n_nodes == 1 ? &j->nodes[0] : NULL;
}

/* "node3    program    12.0 KiB/16.3 KiB   5.1 KiB/s  ETA 0:01". A node's
 * figures are its PROGRAM bytes (program_only): shown while it programs. */
static void row_line(struct waiter *w, const struct row *j, struct watched_node *nd, int width, bool program_only,
                     char *buf, size_t n) {
        char a[32], b[32], rate[32];
        uint64_t elapsed = now_usec(CLOCK_MONOTONIC) - j->phase_start;

        if (j->final) {
                char result[384];

                result_text(w, j, nd, result, sizeof(result));
                snprintf(buf, n, "%-*s %s%s%s", width, j->label, output_color_of(result), result,
                         *output_color_of(result) ? ANSI_NORMAL : "");
                return;
        }
        if (strcmp(j->state, "queued") == 0) {
                snprintf(buf, n, "%-*s queued", width, j->label);
                return;
        }
        if (j->total == 0 || (program_only && strcmp(j->phase, "program") != 0)) {
                snprintf(buf, n, "%-*s %-8s", width, j->label, j->phase);
                return;
        }
        if (strcmp(j->phase, "erase") == 0) {
                snprintf(buf, n, "%-*s %-8s %llu/%llu sectors", width, j->label, j->phase,
                         (unsigned long long) j->done, (unsigned long long) j->total);
                return;
        }
        format_size(j->done, a, sizeof(a));
        format_size(j->total, b, sizeof(b));
        if (elapsed > 200000 && j->done > 0) {
                double bps = (double) j->done * 1e6 / (double) elapsed;
                unsigned eta = (unsigned) ((double) (j->total - j->done) / bps + 0.5);

                format_size((uint64_t) bps, rate, sizeof(rate));
                snprintf(buf, n, "%-*s %-8s %10s/%-10s %10s/s  ETA %u:%02u", width, j->label, j->phase, a, b,
                         rate, eta / 60, eta % 60);
        } else
                snprintf(buf, n, "%-*s %-8s %10s/%-10s", width, j->label, j->phase, a, b);
}

static int nodes_width(const struct watched_job *j) {
        size_t w = 10;

        for (size_t i = 0; i < j->n_nodes; i++)
                if (strlen(j->nodes[i].row.label) > w)
                        w = strlen(j->nodes[i].row.label);
        return (int) w;
}

/* Pipe mode: a line when the row enters a phase, and one at its end. The
 * end of a job of one node waits for its node entry, which says how it
 * ended (up-to-date, the boot), unless this is the last draw. */
static void row_print_change(struct waiter *w, struct row *r, struct watched_node *nd) {
        const char *what = r->final ? r->state : r->phase;
        char result[384];

        if (!*what || strcmp(what, "none") == 0 || strcmp(r->printed_phase, what) == 0)
                return;
        if (r->final && nd && !nd->row.final && !w->finishing)
                return;
        /* -q: the end of each row, not the phases on the way */
        if (!r->final && w->args->quiet)
                return;
        if (r->final) {
                result_text(w, r, nd, result, sizeof(result));
                printf("%s: %s\n", r->label, result);
        } else
                printf("%s: %s\n", r->label, what);
        snprintf(r->printed_phase, sizeof(r->printed_phase), "%s", what);
}

static void draw(struct waiter *w) {
        if (w->args->json || w->quiet)
                return;

        if (w->tty) {
                /* a line that wrapped would throw the cursor-up redraw off:
                 * each is cut one column short of the terminal's width */
                size_t cols = output_columns() - 1;
                unsigned lines = 0;

                /* back to the first of our lines, then rewrite them all */
                if (w->lines_drawn > 0)
                        printf("\033[%uA", w->lines_drawn);
                for (size_t i = 0; i < w->n_jobs; i++) {
                        struct watched_job *j = &w->jobs[i];
                        char line[512];

                        if (!j->by_node) {
                                row_line(w, &j->row, job_node(j), 10, /* program_only= */ false, line, sizeof(line));
                                printf("\r\033[K");
                                print_cut(line, cols);
                                printf("\n");
                                lines++;
                                continue;
                        }
                        for (size_t k = 0; k < j->n_nodes; k++) {
                                row_line(w, &j->nodes[k].row, &j->nodes[k], nodes_width(j), /* program_only= */ true,
                                         line, sizeof(line));
                                printf("\r\033[K");
                                print_cut(line, cols);
                                printf("\n");
                                lines++;
                        }
                }
                w->lines_drawn = lines;
        } else
                for (size_t i = 0; i < w->n_jobs; i++) {
                        struct watched_job *j = &w->jobs[i];

                        if (!j->by_node)
                                row_print_change(w, &j->row, job_node(j));
                        for (size_t k = 0; j->by_node && k < j->n_nodes; k++)
                                row_print_change(w, &j->nodes[k].row, &j->nodes[k]);
                }
        fflush(stdout);
        w->dirty = false;
}

static void check_done(struct waiter *w) {
        for (size_t i = 0; i < w->n_jobs; i++)
                if (!w->jobs[i].row.final)
                        return;
        (void) sd_event_exit(w->event, 0);
}

static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        struct waiter *w = userdata;
        struct watched_job *j = find_job(w, sd_bus_message_get_path(m));
        const char *iface;

        if (!j || sd_bus_message_read(m, "s", &iface) < 0 || strcmp(iface, STCISP_JOB_IFACE) != 0)
                return 0;
        if (signal_is_stale(j, m))
                return 0;
        if (read_job_props(m, j) < 0)
                return 0;
        j->row.final = state_is_final(j->row.state);
        w->dirty = true;
        if (!w->tty || j->row.final)
                draw(w);
        check_done(w);
        return 0;
}

/* stcispd stayed away for the whole grace period. */
static int on_grace(sd_event_source *s, uint64_t usec, void *userdata) {
        struct waiter *w = userdata;

        w->daemon_gone = true;
        (void) sd_event_exit(w->event, 0);
        return 0;
}

/* The daemon's name lost its owner (stopped, crashed, killed): nothing
 * more will come from it. Rather than wait forever, wait GRACE_USEC for
 * it to come back (a restart), then stop following. When it is back, its
 * jobs are read again: what changed meanwhile was not signalled to us. */
static int on_name_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        struct waiter *w = userdata;
        const char *name, *old_owner, *new_owner;
        int r;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0 || strcmp(name, STCISP_BUS_NAME) != 0)
                return 0;
        if (!*new_owner) {
                if (w->grace)
                        return 0;
                r = sd_event_add_time_relative(w->event, &w->grace, CLOCK_MONOTONIC, GRACE_USEC, 0, on_grace, w);
                if (r < 0)
                        /* no timer: give up at once rather than never */
                        return on_grace(NULL, 0, w);
                return 0;
        }
        if (!w->grace)
                return 0;
        w->grace = sd_event_source_disable_unref(w->grace);
        for (size_t i = 0; i < w->n_jobs; i++) {
                if (w->jobs[i].row.final)
                        continue;
                r = fetch_job(w, &w->jobs[i]);
                if (r != 0) {
                        w->status = r;
                        (void) sd_event_exit(w->event, 0);
                        return 0;
                }
        }
        w->dirty = true;
        draw(w);
        check_done(w);
        return 0;
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        struct waiter *w = userdata;

        w->timed_out = true;
        (void) sd_event_exit(w->event, 0);
        return 0;
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        struct waiter *w = userdata;

        w->signal = (int) si->ssi_signo;
        (void) sd_event_exit(w->event, 0);
        return 0;
}

static int on_redraw(sd_event_source *s, uint64_t usec, void *userdata) {
        struct waiter *w = userdata;

        if (w->dirty)
                draw(w);
        /* the rate and ETA move even without new signals */
        w->dirty = true;
        (void) sd_event_source_set_time(s, usec + REDRAW_USEC);
        return 0;
}

static void waiter_done(struct waiter *w) {
        for (size_t i = 0; i < w->n_jobs; i++) {
                free(w->jobs[i].row.label);
                free(w->jobs[i].row.error);
                free(w->jobs[i].path);
                free(w->jobs[i].read_from);
                watched_nodes_truncate(&w->jobs[i], 0);
                free(w->jobs[i].nodes);
        }
        free(w->jobs);
        json_object_put(w->json);
        sd_event_source_disable_unref(w->redraw);
        sd_event_source_disable_unref(w->grace);
        sd_event_source_disable_unref(w->timeout);
        sd_event_source_disable_unref(w->sigint);
        sd_event_source_disable_unref(w->sigterm);
        sd_event_unref(w->event);
        /* a signal that came after the following ended acts as always */
        if (w->mask_set)
                (void) sigprocmask(SIG_SETMASK, &w->old_mask, NULL);
}
static int waiter_init(struct waiter *w, const struct ispctl_args *args, sd_bus *bus, size_t n) {
        int r;

        *w = (struct waiter) {
                .args = args,
                .bus = bus,
                .tty = !args->json && isatty(STDOUT_FILENO),
        };
        w->jobs = calloc(n ? n : 1, sizeof(*w->jobs));
        if (!w->jobs)
                return -ENOMEM;
        r = sd_event_new(&w->event);
        if (r < 0)
                return r;
        r = sd_bus_attach_event(bus, w->event, 0);
        if (r < 0)
                return r;
        /* The final job states are read after the loop ends: keep the bus. */
        r = sd_bus_set_close_on_exit(bus, false);
        if (r < 0)
                return r;
        /* A lost connection to the bus ends the loop, too. */
        r = sd_bus_set_exit_on_disconnect(bus, true);
        if (r < 0)
                return r;
        r = sd_bus_add_match(bus, NULL,
                             "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                             "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='" STCISP_BUS_NAME "'",
                             on_name_owner_changed, w);
        if (r < 0)
                return r;
        /* Subscribed before the first job exists, so no change is missed. */
        return sd_bus_match_signal(bus, NULL, STCISP_BUS_NAME, NULL, "org.freedesktop.DBus.Properties",
                                   "PropertiesChanged", on_properties_changed, w);
}

/* by_node: the job is one for several nodes, shown node by node. */
static int waiter_add(struct waiter *w, const char *target, const char *path, bool by_node) {
        struct watched_job *j = &w->jobs[w->n_jobs];
        const char *slash = strrchr(path, '/');

        j->row.label = strdup(target);
        j->path = strdup(path);
        if (!j->row.label || !j->path)
                return -ENOMEM;
        j->id = slash ? (uint32_t) strtoul(slash + 1, NULL, 10) : 0;
        j->by_node = by_node;
        snprintf(j->row.state, sizeof(j->row.state), "queued");
        j->row.phase_start = now_usec(CLOCK_MONOTONIC);
        w->n_jobs++;
        return 0;
}

static json_object *job_json(const struct watched_job *j) {
        json_object *o = json_object_new_object();

        json_object_object_add(o, "id", json_object_new_int64(j->id));
        json_object_object_add(o, "job", json_object_new_string(j->path));
        json_object_object_add(o, "target", json_object_new_string(j->row.label));
        json_object_object_add(o, "state", json_object_new_string(j->row.state));
        json_object_object_add(o, "phase", json_object_new_string(*j->row.phase ? j->row.phase : "none"));
        json_object_object_add(o, "error", j->row.error ? json_object_new_string(j->row.error) : NULL);
        return o;
}

static json_object *node_json(const struct watched_job *j, const struct watched_node *nd) {
        json_object *o = json_object_new_object(), *differing;

        json_object_object_add(o, "interface", json_object_new_string(nd->interface));
        json_object_object_add(o, "name", json_object_new_string(nd->row.label));
        json_object_object_add(o, "id", json_object_new_int(nd->id));
        json_object_object_add(o, "job_id", json_object_new_int64(j->id));
        json_object_object_add(o, "state", json_object_new_string(nd->row.state));
        json_object_object_add(o, "phase", json_object_new_string(*nd->row.phase ? nd->row.phase : "none"));
        json_object_object_add(o, "bytes_done", json_object_new_int64((int64_t) nd->row.done));
        json_object_object_add(o, "bytes_total", json_object_new_int64((int64_t) nd->row.total));
        json_object_object_add(o, "sectors_written", json_object_new_int64(nd->sectors_written));
        json_object_object_add(o, "sectors_skipped", json_object_new_int64(nd->sectors_skipped));
        json_object_object_add(o, "repairs", json_object_new_int64(nd->repairs));
        json_object_object_add(o, "error", nd->row.error ? json_object_new_string(nd->row.error) : NULL);
        json_object_object_add(o, "outcome", *nd->outcome ? json_object_new_string(nd->outcome) : NULL);
        json_object_object_add(o, "boot", *nd->boot ? json_object_new_string(nd->boot) : NULL);
        json_object_object_add(o, "sectors_to_erase", json_object_new_int64(nd->sectors_to_erase));
        json_object_object_add(o, "estimate_usec", json_object_new_int64((int64_t) nd->estimate_usec));
        /* logical addresses, as inspect's "ranges" give them */
        differing = json_object_new_array();
        for (size_t i = 0; i < nd->n_differing; i++)
                json_object_array_add(differing, json_object_new_int64(ISP_LOGICAL_BASE + nd->differing[i]));
        json_object_object_add(o, "differing", differing);
        return o;
}

/* {"jobs": [...], "nodes": [...] (when the jobs have node entries)} */
static json_object *jobs_json(const struct waiter *w) {
        json_object *o = json_object_new_object(), *a = json_object_new_array(), *nodes = NULL;

        for (size_t i = 0; i < w->n_jobs; i++) {
                const struct watched_job *j = &w->jobs[i];

                json_object_array_add(a, job_json(j));
                if (j->n_nodes > 0 && !nodes)
                        nodes = json_object_new_array();
                for (size_t k = 0; k < j->n_nodes; k++)
                        json_object_array_add(nodes, node_json(j, &j->nodes[k]));
        }
        json_object_object_add(o, "jobs", a);
        if (nodes)
                json_object_object_add(o, "nodes", nodes);
        return o;
}

/* A node's result in one word, as the summary counts it. */
static const char *result_word(const struct watched_node *nd) {
        if (strcmp(nd->outcome, "not-started") == 0)
                return "not-started";
        if (strcmp(nd->row.state, "succeeded") != 0)
                return strcmp(nd->row.state, "cancelled") == 0 ? "cancelled" : "failed";
        if (strcmp(nd->outcome, "would-flash") == 0 || strcmp(nd->outcome, "matches") == 0 ||
            strcmp(nd->outcome, "differs") == 0 || strcmp(nd->outcome, "up-to-date") == 0)
                return nd->outcome;
        return "succeeded";
}

/* How a job's end is summed up: as the verb asked; a verify job that
 * wait follows, as verify does. */
static enum waiter_mode job_mode(const struct waiter *w, const struct watched_job *j) {
        return w->mode == WAITER_FLASH && strcmp(j->kind, "verify") == 0 ? WAITER_VERIFY : w->mode;
}

/* "3 nodes: 1 succeeded, 1 failed, 1 up-to-date": the words the mode is
 * about, then "failed", always; the others where a node has them. */
static void print_node_count(const struct waiter *w, const struct watched_job *j) {
        static const char *const words[] = { "succeeded", "would-flash", "matches", "differs", "failed",
                                             "up-to-date", "not-started", "cancelled" };
        const char *always[3] = { "failed" };
        bool first = true;

        switch (job_mode(w, j)) {
        case WAITER_FLASH:   always[1] = "succeeded"; break;
        case WAITER_DRY_RUN: always[1] = "would-flash"; break;
        case WAITER_VERIFY:  always[1] = "matches"; always[2] = "differs"; break;
        }
        printf("%zu node%s:", j->n_nodes, j->n_nodes == 1 ? "" : "s");
        for (size_t i = 0; i < ELEMENTSOF(words); i++) {
                unsigned count = 0;
                bool show = false;

                for (size_t k = 0; k < j->n_nodes; k++)
                        count += strcmp(result_word(&j->nodes[k]), words[i]) == 0;
                for (size_t a = 0; a < ELEMENTSOF(always); a++)
                        show = show || (always[a] && strcmp(always[a], words[i]) == 0);
                if (count == 0 && !show)
                        continue;
                printf("%s %u %s", first ? "" : ",", count, words[i]);
                first = false;
        }
        printf("\n");
}

/* After the live lines, what each node of a job of several got. A flash:
 * a table (the sectors, the boot where a node was rebooted) and a count;
 * a dry run or a verify: the lines said it all, a count. */
static void print_node_summary(const struct waiter *w, const struct watched_job *j) {
        int width = nodes_width(j);
        bool boot = false;

        if (w->args->quiet)
                return;
        if (job_mode(w, j) != WAITER_FLASH) {
                if (j->n_nodes > 1 && !w->args->no_legend) {
                        printf("\n");
                        print_node_count(w, j);
                }
                return;
        }
        for (size_t k = 0; k < j->n_nodes; k++)
                boot = boot || *j->nodes[k].boot;

        printf("\n");
        if (!w->args->no_legend)
                printf("%-*s %-11s %7s %7s %7s%s\n", width, "NODE", "RESULT", "WRITTEN", "SKIPPED", "REPAIRS",
                       boot ? " BOOT" : "");
        for (size_t k = 0; k < j->n_nodes; k++) {
                const struct watched_node *nd = &j->nodes[k];
                const char *b = *nd->boot ? nd->boot : "-";

                printf("%-*s ", width, nd->row.label);
                print_cell(result_word(nd), output_color_of(result_word(nd)), 11, false);
                printf("%7u %7u %7u", nd->sectors_written, nd->sectors_skipped, nd->repairs);
                if (boot) {
                        printf(" ");
                        print_cell(b, output_color_of(b), strlen(b), true);
                }
                printf("\n");
        }
        if (!w->args->no_legend)
                print_node_count(w, j);
}

static bool job_succeeded(const struct watched_job *j) {
        if (strcmp(j->row.state, "succeeded") != 0)
                return false;
        for (size_t k = 0; k < j->n_nodes; k++)
                if (strcmp(j->nodes[k].row.state, "succeeded") != 0 || strcmp(j->nodes[k].outcome, "not-started") == 0)
                        return false;
        return true;
}

/* The ids of the jobs not finished: "12, 13" into list, "12 13" into
 * args (for a command line); returns how many. None unfinished (a race
 * with the end): all of them. */
static size_t unfinished_ids(const struct waiter *w, char *list, char *args, size_t n) {
        size_t count = 0, kl = 0, ka = 0;
        bool all = true;

        for (size_t i = 0; i < w->n_jobs; i++)
                all = all && w->jobs[i].row.final;
        list[0] = args[0] = '\0';
        for (size_t i = 0; i < w->n_jobs && kl + 16 < n && ka + 16 < n; i++) {
                if (w->jobs[i].row.final && !all)
                        continue;
                kl += (size_t) snprintf(list + kl, n - kl, "%s%" PRIu32, count ? ", " : "", w->jobs[i].id);
                ka += (size_t) snprintf(args + ka, n - ka, "%s%" PRIu32, count ? " " : "", w->jobs[i].id);
                count++;
        }
        return count;
}

/* Following ended before the jobs did (the daemon left, --timeout, a
 * signal): the message on stderr; with --json one object on stdout, the
 * jobs as far as they got, "result" saying why and "error" the message.
 * Returns status. */
static int waiter_abort(struct waiter *w, int status, const char *result) {
        char list[256], ids[256], msg[1024], timeout[64];
        size_t n = unfinished_ids(w, list, ids, sizeof(list));
        bool one = n == 1;

        /* --timeout as given, a bare number in its unit: "1" is "1s" */
        if (w->args->timeout)
                snprintf(timeout, sizeof(timeout), "%s%s", w->args->timeout,
                         w->args->timeout[strspn(w->args->timeout, "0123456789")] ? "" : "s");

        if (status == ISPCTL_EXIT_UNREACHABLE)
                snprintf(msg, sizeof(msg),
                         "ispctl: stcispd left the bus while job%s %s %s running; the job%s stay%s queued and resume%s "
                         "when stcispd is back ('ispctl wait %s' follows %s again)",
                         one ? "" : "s", list, one ? "was" : "were", one ? "" : "s", one ? "s" : "", one ? "s" : "",
                         ids, one ? "it" : "them");
        else if (status == ISPCTL_EXIT_TIMEOUT)
                snprintf(msg, sizeof(msg),
                         "ispctl: timed out after %s: job%s %s %s still running and go%s on in the daemon "
                         "('ispctl cancel %s' stops %s)",
                         timeout, one ? "" : "s", list, one ? "is" : "are", one ? "es" : "", ids,
                         one ? "it" : "them");
        else
                snprintf(msg, sizeof(msg),
                         "ispctl: %s: job%s %s go%s on in the daemon ('ispctl cancel %s' stops %s, "
                         "'ispctl wait %s' follows %s again)",
                         w->signal == SIGTERM ? "terminated" : "interrupted", one ? "" : "s", list, one ? "es" : "",
                         ids, one ? "it" : "them", ids, one ? "it" : "them");

        if (w->tty) {
                w->dirty = true;
                draw(w);
        }
        fflush(stdout);
        fprintf(stderr, "%s\n", msg);
        if (w->args->json) {
                json_object *o = jobs_json(w);

                json_object_object_add(o, "result", json_object_new_string(result));
                json_object_object_add(o, "error", json_object_new_string(msg));
                output_json(o);
        }
        return status;
}

/* Follow every job to its end. Returns an exit status. */
static int waiter_run(struct waiter *w) {
        bool failed = false;
        int r;

        if (w->args->no_block) {
                if (w->args->json)
                        output_json(jobs_json(w));
                else
                        for (size_t i = 0; i < w->n_jobs; i++)
                                printf("%s\n", w->jobs[i].path);
                return ISPCTL_EXIT_SUCCESS;
        }

        /* Ctrl-C and SIGTERM while following: say what goes on, then exit
         * 128 + the signal. Blocked here, so the event loop gets them. */
        {
                sigset_t mask;

                sigemptyset(&mask);
                sigaddset(&mask, SIGINT);
                sigaddset(&mask, SIGTERM);
                if (sigprocmask(SIG_BLOCK, &mask, &w->old_mask) >= 0) {
                        w->mask_set = true;
                        (void) sd_event_add_signal(w->event, &w->sigint, SIGINT, on_signal, w);
                        (void) sd_event_add_signal(w->event, &w->sigterm, SIGTERM, on_signal, w);
                }
        }
        if (w->args->deadline_usec > 0) {
                r = sd_event_add_time(w->event, &w->timeout, CLOCK_MONOTONIC, w->args->deadline_usec, 0, on_timeout, w);
                if (r < 0)
                        return ispctl_bus_error(w->args, "Setting up --timeout", NULL, r);
        }

        for (size_t i = 0; i < w->n_jobs; i++) {
                r = fetch_job(w, &w->jobs[i]);
                if (r != 0)
                        return r;
        }
        draw(w);
        if (w->tty) {
                r = sd_event_add_time_relative(w->event, &w->redraw, CLOCK_MONOTONIC, REDRAW_USEC, 0, on_redraw, w);
                if (r >= 0)
                        (void) sd_event_source_set_enabled(w->redraw, SD_EVENT_ON);
        }
        check_done(w);
        r = sd_event_loop(w->event);
        if (r < 0)
                return ispctl_bus_error(w->args, "Following the jobs", NULL, r);
        if (w->status != 0)
                return w->status;
        if (w->signal)
                return waiter_abort(w, 128 + w->signal, "interrupted");
        if (w->timed_out)
                return waiter_abort(w, ISPCTL_EXIT_TIMEOUT, "timeout");
        if (w->daemon_gone)
                return waiter_abort(w, ISPCTL_EXIT_UNREACHABLE, "unreachable");

        /* The last word comes from the job objects themselves. */
        for (size_t i = 0; i < w->n_jobs; i++) {
                r = fetch_job(w, &w->jobs[i]);
                if (r != 0)
                        return r;
                if (!job_succeeded(&w->jobs[i]))
                        failed = true;
        }
        w->dirty = true;
        w->finishing = true;
        draw(w);
        if (!w->args->json && !w->quiet)
                for (size_t i = 0; i < w->n_jobs; i++)
                        if (w->jobs[i].by_node)
                                print_node_summary(w, &w->jobs[i]);

        if (w->args->json && !w->quiet) {
                json_object *o = jobs_json(w);

                json_object_object_add(o, "result", json_object_new_string(failed ? "failed" : "succeeded"));
                if (w->keep_json)
                        w->json = o;
                else
                        output_json(o);
        }
        return failed ? ISPCTL_EXIT_JOB_FAILED : ISPCTL_EXIT_SUCCESS;
}

/* ---- targets ---- */

struct targets {
        char **v;
        size_t n;
};

static void targets_done(struct targets *t) {
        for (size_t i = 0; i < t->n; i++)
                free(t->v[i]);
        free(t->v);
}

static int targets_add(struct targets *t, const char *s, size_t len) {
        char **v = realloc(t->v, (t->n + 1) * sizeof(char *));

        if (!v)
                return -ENOMEM;
        t->v = v;
        t->v[t->n] = strndup(s, len);
        if (!t->v[t->n])
                return -ENOMEM;
        t->n++;
        return 0;
}

/* "1,2,node7" → three targets. --all: every extended node the daemon
 * knows, asked here (ListNodes) unless all_for_daemon: then the target
 * "all", which FlashNodes resolves itself. */
static int collect_targets(const struct ispctl_args *args, sd_bus *bus, char **argv, int argc, bool all_for_daemon,
                           struct targets *ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        for (int i = 0; i < argc; i++)
                for (const char *p = argv[i]; *p; ) {
                        size_t len = strcspn(p, ",");
                        if (len > 0 && targets_add(ret, p, len) < 0)
                                return -ENOMEM;
                        p += len + (p[len] == ',');
                }

        if (args->all && all_for_daemon) {
                if (targets_add(ret, "all", strlen("all")) < 0)
                        return -ENOMEM;
        } else if (args->all) {
                uint8_t id;
                const char *name, *form;

                r = sd_bus_call_method(bus, STCISP_BUS_NAME, STCISP_OBJECT_PATH, STCISP_MANAGER_IFACE, "ListNodes", &error, &reply, "");
                if (r < 0)
                        return ispctl_bus_error(args, "Listing the nodes", &error, r);
                r = sd_bus_message_enter_container(reply, 'a', "(ysssyyts)");
                while (r >= 0 && (r = sd_bus_message_read(reply, "(ysssyyts)", &id, &name, &form, NULL, NULL, NULL, NULL, NULL)) > 0) {
                        char buf[64];
                        if (strcmp(form, "extended") != 0)
                                continue;
                        /* with several lines the daemon names a node by its line */
                        if (strchr(name, '/'))
                                snprintf(buf, sizeof(buf), "%s", name);
                        else
                                snprintf(buf, sizeof(buf), "node%u", id);
                        if (targets_add(ret, buf, strlen(buf)) < 0)
                                return -ENOMEM;
                }
                if (r < 0)
                        return ispctl_bus_error(args, "Listing the nodes", NULL, r);
                if (ret->n == 0) {
                        ispctl_error(args, NULL, 0, false, "--all: the daemon knows no extended node; 'ispctl scan' looks for them");
                        return ISPCTL_EXIT_NODE_NOT_FOUND;
                }
        }
        if (ret->n == 0) {
                ispctl_error(args, NULL, 0, false, "No target given: name nodes (node3, 3, legacy, a configured name) or use --all");
                return ISPCTL_EXIT_USAGE;
        }
        return 0;
}

/* Every target must exist before anything is queued: Status resolves them. */
static int check_targets(const struct ispctl_args *args, sd_bus *bus, const struct targets *t) {
        for (size_t i = 0; i < t->n; i++) {
                _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
                int r = sd_bus_call_method(bus, STCISP_BUS_NAME, STCISP_OBJECT_PATH, STCISP_MANAGER_IFACE, "Status", &error, &reply,
                                           "s", t->v[i]);
                if (r < 0)
                        return ispctl_bus_error(args, t->v[i], &error, r);
        }
        return 0;
}

/* Builds the method call that queues one job for `target`. */
typedef int (*job_call_t)(sd_bus *bus, const char *target, const struct ispctl_args *args,
                          void *userdata, sd_bus_message **ret);

/* flash and reboot: resolve every target, queue one job each, follow them. */
static int queue_and_follow(const struct ispctl_args *args, sd_bus *bus, char **target_args, int n_target_args,
                            const char *doing, job_call_t make_call, void *userdata) {
        struct targets targets = {};
        struct waiter w = {};
        int r;

        r = collect_targets(args, bus, target_args, n_target_args, /* all_for_daemon= */ false, &targets);
        /* One target: its own call checks it before anything is queued, and
         * takes forms Status refuses (a group from [Groups], for Flash). */
        if (r == 0 && targets.n > 1)
                r = check_targets(args, bus, &targets);
        if (r != 0)
                goto finish;

        r = waiter_init(&w, args, bus, targets.n);
        if (r < 0) {
                r = ispctl_bus_error(args, "Watching the jobs", NULL, r);
                goto finish;
        }

        for (size_t i = 0; i < targets.n; i++) {
                _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
                const char *path;
                char what[300];

                snprintf(what, sizeof(what), "%s %s", doing, targets.v[i]);
                r = make_call(bus, targets.v[i], args, userdata, &m);
                if (r >= 0)
                        r = sd_bus_call(bus, m, 0, &error, &reply);
                if (r >= 0)
                        r = sd_bus_message_read(reply, "o", &path);
                if (r < 0) {
                        r = ispctl_bus_error(args, what, &error, r);
                        goto finish;
                }
                r = waiter_add(&w, targets.v[i], path, /* by_node= */ false);
                if (r < 0)
                        goto finish;
                /* lines name the node canonically (node1 for '1'), as the daemon does */
                w.jobs[w.n_jobs - 1].label_from_target = true;
        }

        r = waiter_run(&w);
finish:
        waiter_done(&w);
        targets_done(&targets);
        return r;
}

struct flash_call {
        const struct isp_image *img;
        const char *name;               /* the file's name, for the daemon's records */
        const char *data;
        size_t size;
};

/* Flash or FlashNodes: the targets (one string, or an array), the image,
 * the options. "full", "force", "dry-run", "require-boot" and "canary"
 * only when asked: a daemon from before them refuses options it does not
 * know. */
static int append_flash_call(sd_bus *bus, const char *method, const struct targets *targets, const char *target,
                             const struct ispctl_args *args, const struct flash_call *c, sd_bus_message **ret) {
        int r;

        r = sd_bus_message_new_method_call(bus, ret, STCISP_BUS_NAME, STCISP_OBJECT_PATH, STCISP_MANAGER_IFACE, method);
        if (r >= 0 && targets) {
                r = sd_bus_message_open_container(*ret, 'a', "s");
                for (size_t i = 0; r >= 0 && i < targets->n; i++)
                        r = sd_bus_message_append(*ret, "s", targets->v[i]);
                if (r >= 0)
                        r = sd_bus_message_close_container(*ret);
        } else if (r >= 0)
                r = sd_bus_message_append(*ret, "s", target);
        if (r >= 0)
                r = sd_bus_message_append_array(*ret, 'y', c->data, c->size);
        if (r >= 0)
                r = sd_bus_message_open_container(*ret, 'a', "{sv}");
        if (r >= 0)
                r = sd_bus_message_append(*ret, "{sv}{sv}{sv}{sv}",
                                          "format", "s", c->img->format == ISP_IMAGE_HEX ? "hex" : "bin",
                                          "name", "s", c->name,
                                          "reboot", "b", !args->no_reboot,
                                          "verify", "b", !args->no_verify);
        if (r >= 0 && args->full)
                r = sd_bus_message_append(*ret, "{sv}", "full", "b", true);
        if (r >= 0 && args->force)
                r = sd_bus_message_append(*ret, "{sv}", "force", "b", true);
        if (r >= 0 && args->dry_run)
                r = sd_bus_message_append(*ret, "{sv}", "dry-run", "b", true);
        if (r >= 0 && args->require_boot)
                r = sd_bus_message_append(*ret, "{sv}", "require-boot", "b", true);
        if (r >= 0 && args->canary > 0)
                r = sd_bus_message_append(*ret, "{sv}", "canary", "u", (uint32_t) args->canary);
        if (r >= 0)
                r = sd_bus_message_close_container(*ret);
        return r;
}

static int make_flash_call(sd_bus *bus, const char *target, const struct ispctl_args *args,
                           void *userdata, sd_bus_message **ret) {
        return append_flash_call(bus, "Flash", NULL, target, args, userdata, ret);
}

/* Several targets, or --all: one FlashNodes job for all of them, which
 * the daemon resolves and checks as a whole, followed node by node. */
static int flash_nodes(const struct ispctl_args *args, sd_bus *bus, struct targets *targets, const struct flash_call *c) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_free_ char *label = NULL;
        struct waiter w = {};
        const char *path;
        int r;

        r = waiter_init(&w, args, bus, 1);
        if (r < 0) {
                r = ispctl_bus_error(args, "Watching the job", NULL, r);
                goto finish;
        }
        w.mode = args->dry_run ? WAITER_DRY_RUN : WAITER_FLASH;
        r = append_flash_call(bus, "FlashNodes", targets, NULL, args, c, &m);
        if (r >= 0)
                r = sd_bus_call(bus, m, 0, &error, &reply);
        if (r >= 0)
                r = sd_bus_message_read(reply, "o", &path);
        if (r < 0) {
                r = ispctl_bus_error(args, "Flashing", &error, r);
                goto finish;
        }
        /* the label is the job's Target, read with its other properties */
        r = waiter_add(&w, "", path, /* by_node= */ true);
        if (r < 0) {
                r = ispctl_bus_error(args, "Watching the job", NULL, r);
                goto finish;
        }
        r = waiter_run(&w);
finish:
        waiter_done(&w);
        return r;
}

int verb_flash(int argc, char *argv[], const struct ispctl_args *args) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ struct isp_image *img = NULL;
        _cleanup_free_ char *data = NULL;
        struct targets targets = {};
        struct flash_call c;
        size_t size;
        int r;

        if (argc < 2 || (argc < 3 && !args->all)) {
                ispctl_error(args, NULL, 0, false, "Usage: ispctl flash TARGET... FILE (or --all FILE)");
                return ISPCTL_EXIT_USAGE;
        }

        /* The image is checked here first: a broken file never reaches the daemon. */
        r = ispctl_load_image(argv[argc - 1], args, &img, &data, &size);
        if (r != 0)
                return r;
        c = (struct flash_call) { .img = img, .name = basename(argv[argc - 1]), .data = data, .size = size };

        r = ispctl_connect(args, &bus);
        if (r != 0)
                return r;
        r = collect_targets(args, bus, argv + 1, argc - 2, /* all_for_daemon= */ true, &targets);
        if (r == 0 && targets.n == 1 && !args->all) {
                /* one node: a Flash job, as always */
                targets_done(&targets);
                return queue_and_follow(args, bus, argv + 1, argc - 2, "Flashing", make_flash_call, &c);
        }
        if (r == 0)
                r = flash_nodes(args, bus, &targets, &c);
        targets_done(&targets);
        return r;
}

/* Verify: compare the nodes with the image, one job, followed node by
 * node. Exit status 8 when a node differs and none failed. */
int verb_verify(int argc, char *argv[], const struct ispctl_args *args) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_free_ struct isp_image *img = NULL;
        _cleanup_free_ char *data = NULL;
        struct targets targets = {};
        struct waiter w = {};
        const char *file = argv[argc - 1], *path;
        bool differs = false;
        size_t size;
        int r;

        if (argc < 2 || (argc < 3 && !args->all)) {
                ispctl_error(args, NULL, 0, false, "Usage: ispctl verify TARGET... FILE (or --all FILE)");
                return ISPCTL_EXIT_USAGE;
        }
        r = ispctl_load_image(file, args, &img, &data, &size);
        if (r != 0)
                return r;
        r = ispctl_connect(args, &bus);
        if (r != 0)
                return r;
        r = collect_targets(args, bus, argv + 1, argc - 2, /* all_for_daemon= */ true, &targets);
        if (r != 0)
                goto finish;

        r = waiter_init(&w, args, bus, 1);
        if (r < 0) {
                r = ispctl_bus_error(args, "Watching the job", NULL, r);
                goto finish;
        }
        w.mode = WAITER_VERIFY;
        w.file = file;
        w.file_crc = isp_image_app_crc32(img);
        w.keep_json = true;

        r = sd_bus_message_new_method_call(bus, &m, STCISP_BUS_NAME, STCISP_OBJECT_PATH, STCISP_MANAGER_IFACE, "Verify");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "s");
        for (size_t i = 0; r >= 0 && i < targets.n; i++)
                r = sd_bus_message_append(m, "s", targets.v[i]);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_append_array(m, 'y', data, size);
        if (r >= 0)
                r = sd_bus_message_append(m, "a{sv}", 2,
                                          "format", "s", img->format == ISP_IMAGE_HEX ? "hex" : "bin",
                                          "name", "s", basename(file));
        if (r >= 0)
                r = sd_bus_call(bus, m, 0, &error, &reply);
        if (r >= 0)
                r = sd_bus_message_read(reply, "o", &path);
        if (r < 0) {
                r = ispctl_bus_error(args, "Verifying", &error, r);
                goto finish;
        }
        r = waiter_add(&w, "", path, /* by_node= */ true);
        if (r < 0) {
                r = ispctl_bus_error(args, "Watching the job", NULL, r);
                goto finish;
        }
        r = waiter_run(&w);

        for (size_t k = 0; k < w.jobs[0].n_nodes; k++)
                differs = differs || strcmp(w.jobs[0].nodes[k].outcome, "differs") == 0;
        if (r == 0 && differs)
                r = ISPCTL_EXIT_DIFFERS;
        if (w.json) {
                json_object_object_add(w.json, "result", json_object_new_string(
                        r == ISPCTL_EXIT_JOB_FAILED ? "failed" : differs ? "differs" : "matches"));
                json_object_object_add(w.json, "file", json_object_new_string(file));
                json_object_object_add(w.json, "crc32", json_object_new_int64(w.file_crc));
                output_json(TAKE_PTR(w.json));
        }
finish:
        waiter_done(&w);
        targets_done(&targets);
        return r;
}

/* Read: one node's application back into FILE. The FILE is checked
 * before the daemon is asked, and written only when the job succeeded. */
int verb_read(int argc, char *argv[], const struct ispctl_args *args) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL, *image = NULL;
        _cleanup_free_ struct isp_image *img = NULL;
        struct waiter w = {};
        const char *target, *file, *path, *hex;
        char what[300];
        size_t len;
        int format, r;

        if (argc != 3 || args->all || strchr(argv[1], ',')) {
                ispctl_error(args, NULL, 0, false, "Usage: ispctl read TARGET FILE (one node)");
                return ISPCTL_EXIT_USAGE;
        }
        if (args->no_block) {
                ispctl_error(args, NULL, 0, false, "read: --no-block does not fit: ispctl writes FILE when the job has ended");
                return ISPCTL_EXIT_USAGE;
        }
        target = argv[1];
        file = argv[2];
        format = ispctl_save_format(file, args);
        if (format < 0)
                return ISPCTL_EXIT_USAGE;
        r = ispctl_save_check(file, args);
        if (r != 0)
                return r;
        img = malloc(sizeof(*img));
        if (!img) {
                ispctl_error(args, NULL, 0, false, "out of memory");
                return ISPCTL_EXIT_DAEMON_ERROR;
        }

        r = ispctl_connect(args, &bus);
        if (r != 0)
                return r;
        snprintf(what, sizeof(what), "Reading %s", target);
        r = sd_bus_call_method(bus, STCISP_BUS_NAME, STCISP_OBJECT_PATH, STCISP_MANAGER_IFACE, "Read", &error, &reply,
                               "sa{sv}", target, 0);
        if (r >= 0)
                r = sd_bus_message_read(reply, "o", &path);
        if (r < 0)
                return ispctl_bus_error(args, what, &error, r);

        r = waiter_init(&w, args, bus, 1);
        if (r >= 0)
                r = waiter_add(&w, target, path, /* by_node= */ false);
        if (r < 0) {
                r = ispctl_bus_error(args, "Watching the job", NULL, r);
                goto finish;
        }
        w.keep_json = true;
        r = waiter_run(&w);
        if (r != 0) {
                if (w.json)
                        output_json(TAKE_PTR(w.json));
                goto finish;
        }

        r = sd_bus_call_method(bus, STCISP_BUS_NAME, path, STCISP_JOB_IFACE, "GetImage", &error, &image, "");
        if (r >= 0)
                r = sd_bus_message_read_array(image, 'y', (const void **) &hex, &len);
        if (r < 0) {
                r = ispctl_bus_error(args, what, &error, r);
                goto finish;
        }
        r = ispctl_save_image(file, format, hex, len, target, args, img);
        if (r != 0)
                goto finish;

        if (w.json) {
                json_object_object_add(w.json, "file", json_object_new_string(file));
                json_object_object_add(w.json, "format", json_object_new_string(isp_image_format_to_string(format)));
                json_object_object_add(w.json, "sectors", json_object_new_int64(isp_image_sector_count(img)));
                json_object_object_add(w.json, "bytes", json_object_new_int64((int64_t) img->data_bytes));
                json_object_object_add(w.json, "crc32", json_object_new_int64(isp_image_app_crc32(img)));
                output_json(TAKE_PTR(w.json));
        } else
                printf("%s: read %u sector%s (%zu bytes, image %08" PRIX32 ") to %s\n", target,
                       isp_image_sector_count(img), isp_image_sector_count(img) == 1 ? "" : "s", img->data_bytes,
                       isp_image_app_crc32(img), file);
finish:
        waiter_done(&w);
        return r;
}

static int make_reboot_call(sd_bus *bus, const char *target, const struct ispctl_args *args,
                            void *userdata, sd_bus_message **ret) {
        int r = sd_bus_message_new_method_call(bus, ret, STCISP_BUS_NAME, STCISP_OBJECT_PATH, STCISP_MANAGER_IFACE, "Reboot");

        if (r >= 0)
                r = sd_bus_message_append(*ret, "sa{sv}", target, 0);
        return r;
}

int verb_reboot(int argc, char *argv[], const struct ispctl_args *args) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r;

        if (argc < 2 && !args->all) {
                ispctl_error(args, NULL, 0, false, "Usage: ispctl reboot TARGET... (or --all)");
                return ISPCTL_EXIT_USAGE;
        }
        r = ispctl_connect(args, &bus);
        if (r != 0)
                return r;
        return queue_and_follow(args, bus, argv + 1, argc - 1, "Rebooting", make_reboot_call, NULL);
}

int verb_scan(int argc, char *argv[], const struct ispctl_args *args) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        struct waiter w = {};
        json_object *nodes = NULL;
        const char *path;
        int r;

        if (argc != 1) {
                ispctl_error(args, NULL, 0, false, "Usage: ispctl scan");
                return ISPCTL_EXIT_USAGE;
        }
        r = ispctl_connect(args, &bus);
        if (r != 0)
                return r;
        r = sd_bus_call_method(bus, STCISP_BUS_NAME, STCISP_OBJECT_PATH, STCISP_MANAGER_IFACE, "Scan", &error, &reply, "");
        if (r >= 0)
                r = sd_bus_message_read(reply, "o", &path);
        if (r < 0)
                return ispctl_bus_error(args, "Scanning", &error, r);

        r = waiter_init(&w, args, bus, 1);
        if (r >= 0)
                r = waiter_add(&w, "scan", path, /* by_node= */ false);
        if (r < 0) {
                waiter_done(&w);
                return ispctl_bus_error(args, "Watching the scan", NULL, r);
        }
        if (args->no_block) {
                r = waiter_run(&w);
                waiter_done(&w);
                return r;
        }
        /* Quietly wait, then show what answered. */
        w.quiet = true;
        w.tty = false;
        r = waiter_run(&w);
        if (r == ISPCTL_EXIT_JOB_FAILED)
                ispctl_error(args, NULL, 0, false, "Scan %s: %s", w.jobs[0].row.state, strna(w.jobs[0].row.error));
        if (r == 0)
                r = output_node_table(args, bus, args->json ? &nodes : NULL);
        if (r == 0 && args->json) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "job", job_json(&w.jobs[0]));
                json_object_object_add(o, "nodes", nodes);
                output_json(o);
        } else
                json_object_put(nodes);
        waiter_done(&w);
        return r;
}

/* Wait: follow jobs already queued (by id or object path, as cancel takes
 * them) to their end, shown as flash shows its own. */
int verb_wait(int argc, char *argv[], const struct ispctl_args *args) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        struct waiter w = {};
        int r;

        if (argc < 2) {
                ispctl_error(args, NULL, 0, false, "Usage: ispctl wait JOB... (a job id or object path; 'ispctl jobs' lists them)");
                return ISPCTL_EXIT_USAGE;
        }
        if (args->no_block) {
                ispctl_error(args, NULL, 0, false, "wait: --no-block does not fit: waiting is all wait does");
                return ISPCTL_EXIT_USAGE;
        }
        /* All ids are checked before the daemon is asked. */
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
        r = waiter_init(&w, args, bus, (size_t) argc - 1);
        for (int i = 1; r >= 0 && i < argc; i++) {
                const char *s = strrchr(argv[i], '/') ? strrchr(argv[i], '/') + 1 : argv[i];
                char path[sizeof(STCISP_JOB_PREFIX) + 16];

                snprintf(path, sizeof(path), STCISP_JOB_PREFIX "/%lu", strtoul(s, NULL, 10));
                r = waiter_add(&w, "", path, /* by_node= */ false);
                if (r >= 0)
                        w.jobs[w.n_jobs - 1].label_from_target = true;
        }
        if (r < 0)
                r = ispctl_bus_error(args, "Watching the jobs", NULL, r);
        else
                r = waiter_run(&w);
        waiter_done(&w);
        return r;
}
