/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "output.h"
#include "stcisp-dbus.h"
#include "util.h"

void output_json(json_object *o) {
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        fflush(stdout);
        json_object_put(o);
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

/* The display width of UTF-8 text, taking every character as one column. */
static size_t text_width(const char *s) {
        size_t w = 0;

        for (; *s; s++)
                w += ((unsigned char) *s & 0xC0) != 0x80;
        return w;
}

/* One table cell, padded to `width` columns (no padding when last);
 * longer text is cut to width - 1 columns and ends with "…". */
static void print_cell(const char *s, size_t width, bool last) {
        size_t w = text_width(s);

        if (w > width) {
                size_t cols = 0, i = 0;

                while (s[i] && cols < width - 1) {
                        i++;
                        while (((unsigned char) s[i] & 0xC0) == 0x80)
                                i++;
                        cols++;
                }
                printf("%.*s…", (int) i, s);
                w = width;
        } else
                fputs(s, stdout);
        if (!last)
                printf("%*s", (int) (width - w + 1), "");
}

/* A column as wide as its widest cell, at least `min`, at most `max`. */
static void widen(size_t *width, const char *cell, size_t max) {
        size_t w = text_width(cell);

        if (w > *width)
                *width = w < max ? w : max;
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
                const char *name, *uid, *running;
                char uid_buf[64], pv[8], fv[8], ago[32];
        } *cells = NULL;
        /* wide enough for "app.hex, flashed 2026-12-01 10:02" and two UIDs */
        size_t n = 0, w_name = 14, w_uid = 8, w_running = strlen("RUNNING");
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
                /* versions come from INFO: a legacy node has none, nor a
                 * board only ever seen running its application */
                if (strcmp(rows[i].form, "extended") == 0 && rows[i].proto > 0) {
                        snprintf(c->pv, sizeof(c->pv), "%u", rows[i].proto);
                        snprintf(c->fv, sizeof(c->fv), "%u", rows[i].fw);
                } else
                        strcpy(c->pv, "-"), strcpy(c->fv, "-");
                format_ago(rows[i].seen, c->ago, sizeof(c->ago));
                widen(&w_name, c->name, 24);
                widen(&w_uid, c->uid, 17);
                widen(&w_running, c->running, 36);
        }

        printf("%-3s ", "ID");
        print_cell("NAME", w_name, false);
        printf("%-8s %-13s %-5s %-3s ", "FORM", "STATE", "PROTO", "ISP");
        print_cell("UID", w_uid, false);
        print_cell("RUNNING", w_running, false);
        printf("%-10s %s\n", "LAST SEEN", "LAST FLASH");
        for (size_t i = 0; i < n; i++) {
                printf("%-3u ", rows[i].id);
                print_cell(cells[i].name, w_name, false);
                printf("%-8s %-13s %-5s %-3s ", rows[i].form, rows[i].state, cells[i].pv, cells[i].fv);
                print_cell(cells[i].uid, w_uid, false);
                print_cell(cells[i].running, w_running, false);
                printf("%-10s %s\n", cells[i].ago, *rows[i].result ? rows[i].result : "-");
        }
        printf("\n%zu node%s listed.%s\n", n, n == 1 ? "" : "s",
               n == 0 ? " 'ispctl scan' asks the bus which boards there are." : "");
        free(cells);
        node_rows_free(rows, n);
        return 0;
}
