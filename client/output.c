/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "output.h"
#include "stcisp-dbus.h"
#include "util.h"

static int json_flags = JSON_C_TO_STRING_PLAIN;

void output_set_json_flags(int flags) {
        json_flags = flags;
}

const char *output_json_string(json_object *o) {
        return json_object_to_json_string_ext(o, json_flags | JSON_C_TO_STRING_NOSLASHESCAPE);
}

void output_json(json_object *o) {
        puts(output_json_string(o));
        fflush(stdout);
        json_object_put(o);
}

unsigned output_columns(void) {
        const char *e = getenv("COLUMNS");
        struct winsize ws;

        if (e) {
                char *end;
                unsigned long c;

                errno = 0;
                c = strtoul(e, &end, 10);
                if (isdigit((unsigned char) *e) && !*end && errno == 0 && c > 0 && c <= 0xFFFF)
                        return (unsigned) c;
        }
        if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) >= 0 && ws.ws_col > 0)
                return ws.ws_col;
        return 80;
}

static bool env_is(const char *value, const char *const *words) {
        for (; *words; words++)
                if (strcasecmp(value, *words) == 0)
                        return true;
        return false;
}

bool output_colors(void) {
        static int cached = -1;
        const char *e;

        if (cached >= 0)
                return cached;
        e = getenv("SYSTEMD_COLORS");
        /* no-color.org: NO_COLOR set, whatever its value, means none */
        if (getenv("NO_COLOR"))
                cached = false;
        else if (e && env_is(e, (const char *const[]) { "0", "false", "no", "off", NULL }))
                cached = false;
        else if (e && env_is(e, (const char *const[]) { "1", "true", "yes", "on", "16", "256", "24bit", NULL }))
                cached = true;
        else
                cached = isatty(STDOUT_FILENO) && !(getenv("TERM") && strcmp(getenv("TERM"), "dumb") == 0);
        return cached;
}

/* systemd's palette: bold green for what went well, bold red for what
 * failed or needs a person, bold yellow for what is under way or not done. */
#define ANSI_GREEN  "\033[0;1;32m"
#define ANSI_RED    "\033[0;1;31m"
#define ANSI_YELLOW "\033[0;1;33m"

const char *output_color_of(const char *word) {
        static const struct {
                const char *word, *color;
        } palette[] = {
                { "succeeded",     ANSI_GREEN  },
                { "matches",       ANSI_GREEN  },
                { "up-to-date",    ANSI_GREEN  },
                { "confirmed",     ANSI_GREEN  },
                { "isp",           ANSI_GREEN  },
                { "application",   ANSI_GREEN  },
                { "failed",        ANSI_RED    },
                { "conflict",      ANSI_RED    },
                { "differs",       ANSI_RED    },
                { "not-answering", ANSI_RED    },
                { "running",       ANSI_YELLOW },
                { "cancelled",     ANSI_YELLOW },
                { "not-started",   ANSI_YELLOW },
                { "unconfirmed",   ANSI_YELLOW },
                { "would",         ANSI_YELLOW },
        };
        size_t len;

        if (!word || !output_colors())
                return "";
        /* the first word: "failed: ...", "succeeded (boot confirmed)" */
        len = strcspn(word, ": (");
        for (size_t i = 0; i < ELEMENTSOF(palette); i++)
                if (strlen(palette[i].word) == len && strncmp(word, palette[i].word, len) == 0)
                        return palette[i].color;
        return "";
}

const char *format_timestamp(uint64_t usec, char *buf, size_t n) {
        time_t t = (time_t) (usec / 1000000);
        struct tm tm;

        if (usec == 0) {
                snprintf(buf, n, "never");
                return buf;
        }
        if (!localtime_r(&t, &tm) || strftime(buf, n, "%Y-%m-%d %H:%M:%S %Z", &tm) == 0)
                snprintf(buf, n, "%llu", (unsigned long long) usec);
        return buf;
}

const char *format_ago(uint64_t usec, char *buf, size_t n) {
        uint64_t now, d;

        if (usec == 0) {
                snprintf(buf, n, "never");
                return buf;
        }
        now = now_usec(CLOCK_REALTIME);
        d = now > usec ? (now - usec) / 1000000 : 0;
        if (d < 60)
                snprintf(buf, n, "%llus ago", (unsigned long long) d);
        else if (d < 3600)
                snprintf(buf, n, "%llumin ago", (unsigned long long) d / 60);
        else if (d < 86400)
                snprintf(buf, n, "%lluh ago", (unsigned long long) d / 3600);
        else
                snprintf(buf, n, "%llud ago", (unsigned long long) d / 86400);
        return buf;
}

void camel_to_snake(const char *in, char *out, size_t n) {
        size_t o = 0;

        for (size_t i = 0; in[i] && o + 2 < n; i++) {
                /* systemd's "USec" suffix is one word: "LastSeenUSec" → "last_seen_usec" */
                if (strcmp(in + i, "USec") == 0) {
                        snprintf(out + o, n - o, "%susec", o > 0 ? "_" : "");
                        return;
                }
                unsigned char c = (unsigned char) in[i];
                /* the plural 's' of an acronym is part of it: "ConflictUIDs" */
                bool plural = in[i + 1] == 's' && (!in[i + 2] || isupper((unsigned char) in[i + 2]));
                /* "UID" stays "uid", "RxErrors" becomes "rx_errors" */
                if (isupper(c) && i > 0 && (islower((unsigned char) in[i - 1]) ||
                                            (in[i + 1] && islower((unsigned char) in[i + 1]) && !plural)))
                        out[o++] = '_';
                out[o++] = (char) tolower(c);
        }
        out[o] = '\0';
}

/* One row of ListNodesEx, the strings pointing into the reply. */
struct node_row {
        const char *ifname, *name, *form, *state, *uid, *result, *running, *last_name;
        uint8_t id, proto, fw;
        uint64_t first_seen, seen, flashed;
        uint32_t crc, image_crc, app_version;
        const char **conflict_uids;     /* NULL-terminated */
        size_t n_conflict_uids;
};

static void node_rows_free(struct node_row *rows, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(rows[i].conflict_uids);
        free(rows);
}

static json_object *node_row_json(const struct node_row *row) {
        json_object *o = json_object_new_object(), *uids = json_object_new_array();

        json_object_object_add(o, "id", json_object_new_int(row->id));
        json_object_object_add(o, "name", json_object_new_string(row->name));
        json_object_object_add(o, "interface", json_object_new_string(row->ifname));
        json_object_object_add(o, "form", json_object_new_string(row->form));
        json_object_object_add(o, "state", json_object_new_string(row->state));
        json_object_object_add(o, "protocol_version", json_object_new_int(row->proto));
        json_object_object_add(o, "firmware_version", json_object_new_int(row->fw));
        json_object_object_add(o, "uid", *row->uid ? json_object_new_string(row->uid) : NULL);
        json_object_object_add(o, "first_seen_usec", json_object_new_int64((int64_t) row->first_seen));
        json_object_object_add(o, "last_seen_usec", json_object_new_int64((int64_t) row->seen));
        json_object_object_add(o, "last_flash_result", *row->result ? json_object_new_string(row->result) : NULL);
        json_object_object_add(o, "last_flash_usec", json_object_new_int64((int64_t) row->flashed));
        json_object_object_add(o, "last_flash_crc", row->crc ? json_object_new_int64(row->crc) : NULL);
        json_object_object_add(o, "image_crc", row->image_crc ? json_object_new_int64(row->image_crc) : NULL);
        json_object_object_add(o, "app_version", row->app_version ? json_object_new_int64(row->app_version) : NULL);
        json_object_object_add(o, "last_flash_name", *row->last_name ? json_object_new_string(row->last_name) : NULL);
        json_object_object_add(o, "running", *row->running ? json_object_new_string(row->running) : NULL);
        for (size_t i = 0; i < row->n_conflict_uids; i++)
                json_object_array_add(uids, json_object_new_string(row->conflict_uids[i]));
        json_object_object_add(o, "conflict_uids", uids);
        return o;
}

/* The length of an SGR sequence at s, 0 if none is there. */
static size_t sgr_length(const char *s) {
        size_t i = 2;

        if (s[0] != '\033' || s[1] != '[')
                return 0;
        while (s[i] && (isdigit((unsigned char) s[i]) || s[i] == ';'))
                i++;
        return s[i] == 'm' ? i + 1 : 0;
}

size_t text_width(const char *s) {
        size_t w = 0;

        while (*s) {
                size_t k = sgr_length(s);

                if (k > 0) {
                        s += k;
                        continue;
                }
                w += ((unsigned char) *s & 0xC0) != 0x80;
                s++;
        }
        return w;
}

void print_cut(const char *s, size_t width) {
        size_t cols = 0, i = 0;
        bool colored = false;

        if (text_width(s) <= width) {
                fputs(s, stdout);
                return;
        }
        while (s[i]) {
                size_t k = sgr_length(s + i);

                if (k > 0) {
                        colored = strncmp(s + i, ANSI_NORMAL, k) != 0;
                        i += k;
                        continue;
                }
                if (cols + 1 >= width)
                        break;
                i++;
                while (((unsigned char) s[i] & 0xC0) == 0x80)
                        i++;
                cols++;
        }
        printf("%.*s%s%s", (int) i, s, width > 0 ? "…" : "", colored ? ANSI_NORMAL : "");
}

void print_cell(const char *s, const char *color, size_t width, bool last) {
        size_t w = text_width(s);

        fputs(color, stdout);
        print_cut(s, width);
        if (*color)
                fputs(ANSI_NORMAL, stdout);
        if (!last)
                printf("%*s", (int) ((w > width ? 0 : width - w) + 1), "");
}

void widen(size_t *width, const char *cell, size_t max) {
        size_t w = text_width(cell);

        if (w > *width)
                *width = w < max ? w : max;
}

void fit_columns(size_t *w, const size_t *min, size_t n, const size_t *order, size_t n_order, size_t budget) {
        size_t total = n > 0 ? n - 1 : 0;

        for (size_t i = 0; i < n; i++)
                total += w[i];
        for (size_t k = 0; k < n_order && total > budget; k++) {
                size_t i = order[k], cut;

                if (w[i] <= min[i])
                        continue;
                cut = w[i] - min[i] < total - budget ? w[i] - min[i] : total - budget;
                w[i] -= cut;
                total -= cut;
        }
}

/* ListNodesEx a(sysssyyyysttstuouussas), and before issue 10 (an older
 * daemon over -H) the first 16 fields alone. */
#define NODES_EX_FIELDS "sysssyyyysttstuouussas"
#define NODES_EX_FIELDS_V1 "sysssyyyysttstuo"

static int read_node_rows(sd_bus_message *reply, struct node_row **ret, size_t *ret_n) {
        struct node_row *rows = NULL;
        const char *contents;
        size_t n = 0;
        bool v1;
        int r;

        r = sd_bus_message_peek_type(reply, NULL, &contents);
        if (r < 0)
                return r;
        v1 = strcmp(contents, "(" NODES_EX_FIELDS_V1 ")") == 0;
        r = sd_bus_message_enter_container(reply, 'a', v1 ? "(" NODES_EX_FIELDS_V1 ")" : "(" NODES_EX_FIELDS ")");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'r', v1 ? NODES_EX_FIELDS_V1 : NODES_EX_FIELDS)) > 0) {
                struct node_row *v = realloc(rows, (n + 1) * sizeof(*rows)), *row;

                if (!v) {
                        r = -ENOMEM;
                        break;
                }
                rows = v;
                row = &rows[n++];
                *row = (struct node_row) { .running = "", .last_name = "" };
                r = sd_bus_message_read(reply, NODES_EX_FIELDS_V1, &row->ifname, &row->id, &row->name, &row->form,
                                        &row->state, &row->proto, &row->fw, NULL, NULL, &row->uid, &row->first_seen,
                                        &row->seen, &row->result, &row->flashed, &row->crc, NULL);
                if (r >= 0 && !v1)
                        r = sd_bus_message_read(reply, "uuss", &row->image_crc, &row->app_version, &row->last_name,
                                                &row->running);
                if (r >= 0 && !v1)
                        r = sd_bus_message_enter_container(reply, 'a', "s");
                while (r > 0 && !v1) {
                        const char *uid;
                        const char **u;

                        r = sd_bus_message_read_basic(reply, 's', &uid);
                        if (r <= 0)
                                break;
                        u = realloc(row->conflict_uids, (row->n_conflict_uids + 2) * sizeof(*u));
                        if (!u) {
                                r = -ENOMEM;
                                break;
                        }
                        row->conflict_uids = u;
                        u[row->n_conflict_uids++] = uid;
                        u[row->n_conflict_uids] = NULL;
                }
                if (r >= 0 && !v1)
                        r = sd_bus_message_exit_container(reply);
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(reply);
        if (r < 0) {
                node_rows_free(rows, n);
                return r;
        }
        *ret = rows;
        *ret_n = n;
        return 0;
}

/* The UID cell: both UIDs of a conflicting id, "A4917069,5D0C33E1". */
static void uid_cell(const struct node_row *row, char *buf, size_t n) {
        size_t k = 0;

        if (row->n_conflict_uids == 0) {
                snprintf(buf, n, "%s", *row->uid ? row->uid : "-");
                return;
        }
        buf[0] = '\0';
        for (size_t i = 0; i < row->n_conflict_uids && k < n; i++)
                k += (size_t) snprintf(buf + k, n - k, "%s%s", i ? "," : "", row->conflict_uids[i]);
}

int output_node_table(const struct ispctl_args *args, sd_bus *bus, json_object **ret_json) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        struct node_row *rows = NULL;
        struct cells {
                const char *name, *uid, *running, *result;
                char uid_buf[64], ago[32];
        } *cells = NULL;
        /* The versions (PROTO, ISP) are left to 'status' and --json: with
         * them no row of a fleet fits 80 columns. */
        enum { COL_ID, COL_NAME, COL_FORM, COL_STATE, COL_UID, COL_RUNNING, COL_SEEN, COL_RESULT };
        static const char *const headers[] = { "ID", "NAME", "FORM", "STATE", "UID", "RUNNING", "LAST SEEN",
                                               "LAST FLASH" };
        /* a column is at least as wide as its header, which is never cut */
        size_t w[] = { 3, 4, 4, 5, 3, 7, 9, 10 };
        const size_t min[] = { 3, 8, 4, 5, 8, 7, 9, 10 };
        size_t n = 0;
        int r;

        r = sd_bus_call_method(bus, STCISP_BUS_NAME, STCISP_OBJECT_PATH, STCISP_MANAGER_IFACE,
                               "ListNodesEx", &error, &reply, "");
        if (r < 0)
                return ispctl_bus_error(args, "Listing the nodes", &error, r);
        r = read_node_rows(reply, &rows, &n);
        if (r < 0)
                return ispctl_bus_error(args, "Listing the nodes", NULL, r);

        if (ret_json) {
                json_object *arr = json_object_new_array();

                for (size_t i = 0; i < n; i++)
                        json_object_array_add(arr, node_row_json(&rows[i]));
                node_rows_free(rows, n);
                *ret_json = arr;
                return 0;
        }

        cells = calloc(n ? n : 1, sizeof(*cells));
        if (!cells) {
                node_rows_free(rows, n);
                return ispctl_bus_error(args, "Listing the nodes", NULL, -ENOMEM);
        }
        for (size_t i = 0; i < n; i++) {
                struct cells *c = &cells[i];

                c->name = rows[i].name;
                uid_cell(&rows[i], c->uid_buf, sizeof(c->uid_buf));
                c->uid = c->uid_buf;
                c->running = *rows[i].running ? rows[i].running : "-";
                c->result = *rows[i].result ? rows[i].result : "-";
                format_ago(rows[i].seen, c->ago, sizeof(c->ago));
                widen(&w[COL_NAME], c->name, 24);
                widen(&w[COL_FORM], rows[i].form, 8);
                widen(&w[COL_STATE], rows[i].state, 13);
                widen(&w[COL_UID], c->uid, 17);
                widen(&w[COL_RUNNING], c->running, 36);
                widen(&w[COL_SEEN], c->ago, 10);
                widen(&w[COL_RESULT], c->result, 40);
        }
        /* The whole texts are in 'status' and --json: here each row fits
         * the terminal (80 columns in a pipe), the long cells cut first. */
        fit_columns(w, min, ELEMENTSOF(w), (const size_t[]) { COL_RESULT, COL_RUNNING, COL_NAME, COL_UID },
                    4, output_columns());

        if (!args->no_legend && !args->quiet) {
                for (size_t k = 0; k < ELEMENTSOF(w); k++)
                        print_cell(headers[k], "", w[k], k + 1 == ELEMENTSOF(w));
                printf("\n");
        }
        for (size_t i = 0; i < n; i++) {
                char id[8];

                snprintf(id, sizeof(id), "%u", rows[i].id);
                print_cell(id, "", w[COL_ID], false);
                print_cell(cells[i].name, "", w[COL_NAME], false);
                print_cell(rows[i].form, "", w[COL_FORM], false);
                print_cell(rows[i].state, output_color_of(rows[i].state), w[COL_STATE], false);
                print_cell(cells[i].uid, "", w[COL_UID], false);
                print_cell(cells[i].running, "", w[COL_RUNNING], false);
                print_cell(cells[i].ago, "", w[COL_SEEN], false);
                print_cell(cells[i].result, output_color_of(cells[i].result), w[COL_RESULT], true);
                printf("\n");
        }
        if (!args->no_legend && !args->quiet)
                printf("\n%zu node%s listed.%s\n", n, n == 1 ? "" : "s",
                       n == 0 ? " 'ispctl scan' asks the bus which boards there are." : "");
        free(cells);
        node_rows_free(rows, n);
        return 0;
}
