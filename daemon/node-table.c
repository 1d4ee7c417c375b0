/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"
#include "node-table.h"
#include "store.h"
#include "util.h"

#define NODE_TABLE_VERSION 1
/* Far above any real table (255 nodes on a line is a few hundred KiB), so
 * that a file this large can only be damage, never a read to give up on. */
#define NODE_TABLE_SIZE_MAX (16u << 20)
#define WHY_MAX 256

static const char *const node_state_table[_NODE_STATE_MAX] = {
        [NODE_UNKNOWN]       = "unknown",
        [NODE_ISP]           = "isp",
        [NODE_APPLICATION]   = "application",
        [NODE_NOT_ANSWERING] = "not-answering",
};

const char *node_state_to_string(enum node_state s) {
        return (unsigned) s < _NODE_STATE_MAX ? node_state_table[s] : "unknown";
}

int node_state_from_string(const char *s) {
        if (!s)
                return -EINVAL;
        for (int i = 0; i < _NODE_STATE_MAX; i++)
                if (strcmp(s, node_state_table[i]) == 0)
                        return i;
        return -EINVAL;
}

static size_t digit_run(const char *s) {
        size_t n = 0;

        while (s[n] >= '0' && s[n] <= '9')
                n++;
        return n;
}

static int sign(int c) {
        return (c > 0) - (c < 0);
}

int interface_name_compare(const char *a, const char *b) {
        const char *p = a, *q = b;

        while (*p && *q) {
                size_t np = digit_run(p), nq = digit_run(q);

                if (np > 0 && nq > 0) {
                        /* Leading zeros do not count; one digit stays. */
                        size_t zp = 0, zq = 0;
                        int c;

                        while (zp + 1 < np && p[zp] == '0')
                                zp++;
                        while (zq + 1 < nq && q[zq] == '0')
                                zq++;
                        if (np - zp != nq - zq)
                                return np - zp < nq - zq ? -1 : 1;
                        c = memcmp(p + zp, q + zq, np - zp);
                        if (c != 0)
                                return sign(c);
                        p += np;
                        q += nq;
                        continue;
                }
                if (*p != *q)
                        return (unsigned char) *p < (unsigned char) *q ? -1 : 1;
                p++;
                q++;
        }
        if (*p || *q)
                return *p ? 1 : -1;
        /* "can01" and "can1" are equal as numbers but not the same name. */
        return sign(strcmp(a, b));
}

static int key_compare(const NodeEntry *e, const char *interface, uint8_t id) {
        int c = interface_name_compare(e->interface, interface);

        if (c != 0)
                return c;
        return e->id < id ? -1 : e->id > id;
}

void node_entry_format_uid(const NodeEntry *e, char buf[static 9]) {
        if (!e->known || e->legacy) {
                buf[0] = '\0';
                return;
        }
        snprintf(buf, 9, "%02X%02X%02X%02X", e->info.uid[0], e->info.uid[1], e->info.uid[2], e->info.uid[3]);
}

int node_entry_set_flash_result(NodeEntry *e, const char *result, uint64_t when_usec) {
        char *copy = NULL;

        if (result) {
                copy = strdup(result);
                if (!copy)
                        return -ENOMEM;
        }
        free(e->last_flash_result);
        e->last_flash_result = copy;
        e->last_flash_usec = when_usec;
        return 0;
}

static NodeEntry *node_entry_free(NodeEntry *e) {
        if (!e)
                return NULL;
        free(e->interface);
        free(e->last_flash_result);
        free(e->last_flash_name);
        free(e);
        return NULL;
}

static void node_entry_freep(NodeEntry **e) {
        node_entry_free(*e);
}

static void json_object_putp(json_object **o) {
        json_object_put(*o);
}

static void json_tokener_freep(json_tokener **tok) {
        if (*tok)
                json_tokener_free(*tok);
}

int node_table_new(NodeTable **ret, int state_dir_fd, const char *state_dir) {
        NodeTable *t;

        if (!ret || !state_dir)
                return -EINVAL;
        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->state_dir = strdup(state_dir);
        if (!t->state_dir) {
                free(t);
                return -ENOMEM;
        }
        t->state_dir_fd = state_dir_fd;
        *ret = t;
        return 0;
}

static void table_clear(NodeTable *t) {
        for (size_t i = 0; i < t->n_entries; i++)
                node_entry_free(t->entries[i]);
        free(t->entries);
        t->entries = NULL;
        t->n_entries = 0;
}

NodeTable *node_table_free(NodeTable *t) {
        if (!t)
                return NULL;
        table_clear(t);
        free(t->state_dir);
        free(t);
        return NULL;
}

static void node_table_freep(NodeTable **t) {
        node_table_free(*t);
}

/* The index of (interface, id) if *ret_found, else where it belongs. */
static size_t table_search(const NodeTable *t, const char *interface, uint8_t id, bool *ret_found) {
        size_t lo = 0, hi = t->n_entries;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = key_compare(t->entries[mid], interface, id);

                if (c == 0) {
                        *ret_found = true;
                        return mid;
                }
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        *ret_found = false;
        return lo;
}

/* Takes e on success only. */
static int table_insert(NodeTable *t, size_t idx, NodeEntry *e) {
        NodeEntry **p = reallocarray(t->entries, t->n_entries + 1, sizeof(*p));

        if (!p)
                return -ENOMEM;
        t->entries = p;
        memmove(p + idx + 1, p + idx, (t->n_entries - idx) * sizeof(*p));
        p[idx] = e;
        t->n_entries++;
        return 0;
}

NodeEntry *node_table_find(NodeTable *t, const char *interface, uint8_t id) {
        bool found;
        size_t idx;

        if (!interface)
                return NULL;
        idx = table_search(t, interface, id, &found);
        return found ? t->entries[idx] : NULL;
}

int node_table_add(NodeTable *t, const char *interface, uint8_t id, NodeEntry **ret) {
        _cleanup_(node_entry_freep) NodeEntry *e = NULL;
        bool found;
        size_t idx;
        int r;

        if (!ifname_is_valid(interface) || id > ISP_NODE_MAX)
                return -EINVAL;
        idx = table_search(t, interface, id, &found);
        if (found) {
                if (ret)
                        *ret = t->entries[idx];
                return 0;
        }

        e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        e->interface = strdup(interface);
        if (!e->interface)
                return -ENOMEM;
        e->id = id;
        e->legacy = id == ISP_NODE_LEGACY;
        e->state = NODE_UNKNOWN;

        r = table_insert(t, idx, e);
        if (r < 0)
                return r;
        if (ret)
                *ret = e;
        TAKE_PTR(e);
        return 1;
}

int node_table_remove(NodeTable *t, const char *interface, uint8_t id) {
        bool found;
        size_t idx;

        if (!interface)
                return -ENOENT;
        idx = table_search(t, interface, id, &found);
        if (!found)
                return -ENOENT;
        node_entry_free(t->entries[idx]);
        memmove(t->entries + idx, t->entries + idx + 1, (t->n_entries - idx - 1) * sizeof(*t->entries));
        t->n_entries--;
        return 0;
}

/* ---- nodes.json: writing ---- */

/* Takes v, also on failure; a NULL v is an allocation that failed. */
static int add(json_object *o, const char *key, json_object *v) {
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static json_object *entry_to_json(const NodeEntry *e) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();
        char uid[9];

        if (!o)
                return NULL;
        /* Always all eight digits, even for a legacy node: the file keeps
         * the entry exactly, node_entry_format_uid() decides what to show. */
        snprintf(uid, sizeof(uid), "%02X%02X%02X%02X", e->info.uid[0], e->info.uid[1], e->info.uid[2], e->info.uid[3]);

        if (add(o, "interface", json_object_new_string(e->interface)) < 0 ||
            add(o, "id", json_object_new_int(e->id)) < 0 ||
            add(o, "form", json_object_new_string(e->legacy ? "legacy" : "extended")) < 0 ||
            add(o, "known", json_object_new_boolean(e->known)) < 0 ||
            add(o, "state", json_object_new_string(node_state_to_string(e->state))) < 0 ||
            add(o, "protocol_version", json_object_new_int(e->info.version)) < 0 ||
            add(o, "firmware_version", json_object_new_int(e->info.firmware)) < 0 ||
            add(o, "capabilities", json_object_new_int(e->info.capabilities)) < 0 ||
            add(o, "receive_depth", json_object_new_int(e->info.rx_depth)) < 0 ||
            add(o, "uid", json_object_new_string(uid)) < 0 ||
            add(o, "first_seen_usec", json_object_new_uint64(e->first_seen_usec)) < 0 ||
            add(o, "last_seen_usec", json_object_new_uint64(e->last_seen_usec)) < 0)
                return NULL;
        if (e->last_flash_result &&
            add(o, "last_flash_result", json_object_new_string(e->last_flash_result)) < 0)
                return NULL;
        if (add(o, "last_flash_usec", json_object_new_uint64(e->last_flash_usec)) < 0)
                return NULL;
        if (e->has_flash_crc &&
            add(o, "last_flash_crc", json_object_new_int64(e->last_flash_crc)) < 0)
                return NULL;
        if (e->last_flash_name &&
            add(o, "last_flash_name", json_object_new_string(e->last_flash_name)) < 0)
                return NULL;
        if (e->has_image_crc &&
            add(o, "image_crc", json_object_new_int64(e->image_crc)) < 0)
                return NULL;
        if (e->app_version && add(o, "app_version", json_object_new_int64(e->app_version)) < 0)
                return NULL;
        if (e->conflict) {
                json_object *a = json_object_new_array();

                for (unsigned i = 0; a && i < 2; i++) {
                        char u[9];

                        snprintf(u, sizeof(u), "%02X%02X%02X%02X", e->conflict_uids[i][0], e->conflict_uids[i][1],
                                 e->conflict_uids[i][2], e->conflict_uids[i][3]);
                        if (json_object_array_add(a, json_object_new_string(u)) < 0) {
                                json_object_put(a);
                                return NULL;
                        }
                }
                if (add(o, "conflict_uids", a) < 0 ||
                    add(o, "conflict_job", json_object_new_int64(e->conflict_job)) < 0)
                        return NULL;
        }
        return TAKE_PTR(o);
}

static char *table_to_json(const NodeTable *t) {
        _cleanup_(json_object_putp) json_object *root = json_object_new_object();
        json_object *nodes = json_object_new_array();
        const char *s;
        char *text;

        if (!root || add(root, "version", json_object_new_int(NODE_TABLE_VERSION)) < 0) {
                json_object_put(nodes);
                return NULL;
        }
        if (add(root, "nodes", nodes) < 0)
                return NULL;
        for (size_t i = 0; i < t->n_entries; i++) {
                json_object *o = entry_to_json(t->entries[i]);

                if (!o || json_object_array_add(nodes, o) < 0) {
                        json_object_put(o);
                        return NULL;
                }
        }
        s = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                           JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!s || asprintf(&text, "%s\n", s) < 0)
                return NULL;
        return text;
}

int node_table_save(NodeTable *t) {
        _cleanup_free_ char *text = table_to_json(t);
        int r;

        if (!text)
                return log_error_errno(-ENOMEM, "Failed to format %s/%s: %m", t->state_dir, NODE_TABLE_FILE);
        r = write_file_atomic(t->state_dir_fd, NODE_TABLE_FILE, text, strlen(text));
        if (r < 0)
                return log_error_errno(r, "Failed to write %s/%s, the previous version stays: %m",
                                       t->state_dir, NODE_TABLE_FILE);
        return 0;
}

/* ---- nodes.json: reading ---- */

/* Fills why and returns -EBADMSG: the content is damaged. */
_printf_(2, 3)
static int damaged(char why[static WHY_MAX], const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(why, WHY_MAX, fmt, ap);
        va_end(ap);
        return -EBADMSG;
}

/* 1 and *ret if key is there with that type, 0 if absent (or null where
 * null_ok), -EBADMSG if it has another type. */
static int field(json_object *o, const char *key, json_type type, bool null_ok,
                 json_object **ret, char why[static WHY_MAX]) {
        json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || (!v && null_ok))
                return 0;
        if (!json_object_is_type(v, type))
                return damaged(why, "\"%s\" is %s, expected %s", key,
                               json_type_to_name(json_object_get_type(v)), json_type_to_name(type));
        *ret = v;
        return 1;
}

/* Leaves *ret alone when the key is absent (or null where null_ok). */
static int get_uint(json_object *o, const char *key, uint64_t max, bool null_ok,
                    uint64_t *ret, char why[static WHY_MAX]) {
        json_object *v;
        uint64_t u;
        int r;

        r = field(o, key, json_type_int, null_ok, &v, why);
        if (r <= 0)
                return r;
        if (json_object_get_int64(v) < 0)
                return damaged(why, "\"%s\" is negative", key);
        u = json_object_get_uint64(v);
        if (u > max)
                return damaged(why, "\"%s\" is %llu, more than %llu", key,
                               (unsigned long long) u, (unsigned long long) max);
        *ret = u;
        return 1;
}

static int get_u8(json_object *o, const char *key, uint8_t *ret, char why[static WHY_MAX]) {
        uint64_t u = *ret;
        int r = get_uint(o, key, UINT8_MAX, /* null_ok= */ false, &u, why);

        *ret = (uint8_t) u;
        return r;
}

/* A string without NUL bytes, which a C string could not hold. */
static int get_string(json_object *o, const char *key, bool null_ok, const char **ret, char why[static WHY_MAX]) {
        json_object *v;
        int r;

        r = field(o, key, json_type_string, null_ok, &v, why);
        if (r <= 0)
                return r;
        if (strlen(json_object_get_string(v)) != (size_t) json_object_get_string_len(v))
                return damaged(why, "\"%s\" contains a NUL byte", key);
        *ret = json_object_get_string(v);
        return 1;
}

static int get_bool(json_object *o, const char *key, bool *ret, char why[static WHY_MAX]) {
        json_object *v;
        int r;

        r = field(o, key, json_type_boolean, /* null_ok= */ false, &v, why);
        if (r > 0)
                *ret = json_object_get_boolean(v);
        return r;
}

static int parse_key(json_object *o, NodeEntry *e, char why[static WHY_MAX]) {
        const char *interface = NULL;
        uint64_t id;
        int r;

        r = get_string(o, "interface", /* null_ok= */ false, &interface, why);
        if (r < 0)
                return r;
        if (r == 0)
                return damaged(why, "no \"interface\"");
        if (!ifname_is_valid(interface))
                return damaged(why, "\"%s\" is not a valid interface name (1-15 bytes, no '/', ':' or whitespace)",
                               interface);
        r = get_uint(o, "id", ISP_NODE_MAX, /* null_ok= */ false, &id, why);
        if (r < 0)
                return r;
        if (r == 0)
                return damaged(why, "no \"id\"");

        e->interface = strdup(interface);
        if (!e->interface)
                return -ENOMEM;
        e->id = (uint8_t) id;
        e->legacy = e->id == ISP_NODE_LEGACY;
        return 0;
}

static int parse_form_and_state(json_object *o, NodeEntry *e, char why[static WHY_MAX]) {
        const char *s = NULL;
        int r;

        r = get_string(o, "form", /* null_ok= */ false, &s, why);
        if (r < 0)
                return r;
        if (r > 0) {
                if (strcmp(s, "legacy") != 0 && strcmp(s, "extended") != 0)
                        return damaged(why, "\"form\" is \"%s\", expected \"legacy\" or \"extended\"", s);
                e->legacy = strcmp(s, "legacy") == 0;
        }
        r = get_string(o, "state", /* null_ok= */ false, &s, why);
        if (r < 0)
                return r;
        if (r > 0) {
                int state = node_state_from_string(s);
                if (state < 0)
                        return damaged(why, "\"state\" is \"%s\", not a node state", s);
                e->state = state;
        }
        return get_bool(o, "known", &e->known, why);
}

static int parse_uid(json_object *o, NodeEntry *e, char why[static WHY_MAX]) {
        const char *s = NULL;
        int r;

        r = get_string(o, "uid", /* null_ok= */ false, &s, why);
        if (r <= 0)
                return r;
        if (strlen(s) != 8 || strspn(s, "0123456789abcdefABCDEF") != 8)
                return damaged(why, "\"uid\" is \"%s\", expected 8 hexadecimal digits", s);
        for (size_t i = 0; i < 4; i++) {
                char byte[3] = { s[2 * i], s[2 * i + 1], 0 };
                e->info.uid[i] = (uint8_t) strtoul(byte, NULL, 16);
        }
        return 0;
}

static int parse_hex_uid(const char *s, uint8_t uid[4]) {
        if (!s || strlen(s) != 8 || strspn(s, "0123456789abcdefABCDEF") != 8)
                return -EINVAL;
        for (size_t i = 0; i < 4; i++) {
                char byte[3] = { s[2 * i], s[2 * i + 1], 0 };
                uid[i] = (uint8_t) strtoul(byte, NULL, 16);
        }
        return 0;
}

/* What its application said, and a conflict on its id. */
static int parse_app(json_object *o, NodeEntry *e, char why[static WHY_MAX]) {
        const char *name = NULL;
        json_object *a;
        uint64_t v;
        int r;

        r = get_string(o, "last_flash_name", /* null_ok= */ true, &name, why);
        if (r < 0)
                return r;
        if (r > 0 && !(e->last_flash_name = strdup(name)))
                return -ENOMEM;
        r = get_uint(o, "image_crc", UINT32_MAX, /* null_ok= */ true, &v, why);
        if (r < 0)
                return r;
        e->has_image_crc = r > 0;
        e->image_crc = r > 0 ? (uint32_t) v : 0;
        r = get_uint(o, "app_version", UINT32_MAX, /* null_ok= */ true, &v, why);
        if (r < 0)
                return r;
        e->app_version = r > 0 ? (uint32_t) v : 0;
        r = field(o, "conflict_uids", json_type_array, /* null_ok= */ true, &a, why);
        if (r < 0)
                return r;
        if (r > 0) {
                if (json_object_array_length(a) != 2)
                        return damaged(why, "\"conflict_uids\" has %zu entries, expected 2", json_object_array_length(a));
                for (size_t i = 0; i < 2; i++) {
                        json_object *u = json_object_array_get_idx(a, i);

                        if (!json_object_is_type(u, json_type_string) ||
                            parse_hex_uid(json_object_get_string(u), e->conflict_uids[i]) < 0)
                                return damaged(why, "\"conflict_uids\" holds something else than 8 hexadecimal digits");
                }
                e->conflict = true;
                r = get_uint(o, "conflict_job", UINT32_MAX, /* null_ok= */ true, &v, why);
                if (r < 0)
                        return r;
                e->conflict_job = r > 0 ? (uint32_t) v : 0;
        }
        return 0;
}

static int parse_flash(json_object *o, NodeEntry *e, char why[static WHY_MAX]) {
        const char *result = NULL;
        uint64_t crc;
        int r;

        r = get_string(o, "last_flash_result", /* null_ok= */ true, &result, why);
        if (r < 0)
                return r;
        if (r > 0) {
                e->last_flash_result = strdup(result);
                if (!e->last_flash_result)
                        return -ENOMEM;
        }
        r = get_uint(o, "last_flash_crc", UINT32_MAX, /* null_ok= */ true, &crc, why);
        if (r < 0)
                return r;
        e->has_flash_crc = r > 0;
        e->last_flash_crc = r > 0 ? (uint32_t) crc : 0;
        return 0;
}

/* Returns 0, -EBADMSG with why, or -ENOMEM. Absent optional fields keep
 * the defaults of a new entry; present ones must be right. */
static int entry_from_json(json_object *o, NodeEntry **ret, char why[static WHY_MAX]) {
        _cleanup_(node_entry_freep) NodeEntry *e = NULL;
        int r;

        if (!json_object_is_type(o, json_type_object))
                return damaged(why, "it is %s, expected an object", json_type_to_name(json_object_get_type(o)));
        e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;

        r = parse_key(o, e, why);
        if (r >= 0)
                r = parse_form_and_state(o, e, why);
        if (r >= 0)
                r = parse_uid(o, e, why);
        if (r >= 0 &&
            (get_u8(o, "protocol_version", &e->info.version, why) < 0 ||
             get_u8(o, "firmware_version", &e->info.firmware, why) < 0 ||
             get_u8(o, "capabilities", &e->info.capabilities, why) < 0 ||
             get_u8(o, "receive_depth", &e->info.rx_depth, why) < 0 ||
             get_uint(o, "first_seen_usec", UINT64_MAX, false, &e->first_seen_usec, why) < 0 ||
             get_uint(o, "last_seen_usec", UINT64_MAX, false, &e->last_seen_usec, why) < 0 ||
             get_uint(o, "last_flash_usec", UINT64_MAX, false, &e->last_flash_usec, why) < 0))
                r = -EBADMSG;
        if (r >= 0)
                r = parse_flash(o, e, why);
        if (r >= 0)
                r = parse_app(o, e, why);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(e);
        return 0;
}

/* Every intact entry of the array goes into t (empty); the damaged ones
 * are logged, dropped and counted. Fails only on -ENOMEM. */
static int load_entries(NodeTable *t, json_object *nodes, size_t *ret_damaged) {
        size_t n = json_object_array_length(nodes), n_damaged = 0;

        for (size_t i = 0; i < n; i++) {
                _cleanup_(node_entry_freep) NodeEntry *e = NULL;
                char why[WHY_MAX];
                bool found;
                size_t idx;
                int r;

                r = entry_from_json(json_object_array_get_idx(nodes, i), &e, why);
                if (r == -EBADMSG) {
                        log_warning("%s/%s: nodes[%zu] is damaged (%s), dropping it",
                                    t->state_dir, NODE_TABLE_FILE, i, why);
                        n_damaged++;
                        continue;
                }
                if (r < 0)
                        return r;

                idx = table_search(t, e->interface, e->id, &found);
                if (found) {
                        log_warning("%s/%s: nodes[%zu] repeats %s node %u, keeping the first one",
                                    t->state_dir, NODE_TABLE_FILE, i, e->interface, e->id);
                        n_damaged++;
                        continue;
                }
                r = table_insert(t, idx, e);
                if (r < 0)
                        return r;
                TAKE_PTR(e);
        }
        *ret_damaged = n_damaged;
        return 0;
}

/* The one JSON value of the file, or -EBADMSG with why. */
static int parse_document(const char *text, size_t size, json_object **ret, char why[static WHY_MAX]) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        enum json_tokener_error err;
        json_object *o;

        if (size == 0)
                return damaged(why, "it is empty");
        /* The tokener would take a NUL as the end of the input and accept
         * whatever came before it. */
        if (strlen(text) != size)
                return damaged(why, "NUL byte at offset %zu", strlen(text));
        tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);

        o = json_tokener_parse_ex(tok, text, (int) size);
        err = json_tokener_get_error(tok);
        if (!o && err == json_tokener_continue)
                return damaged(why, "it ends in the middle of the JSON, truncated");
        if (!o)
                return damaged(why, "not JSON: %s at offset %zu", json_tokener_error_desc(err),
                               json_tokener_get_parse_end(tok));
        /* JSON_TOKENER_STRICT refuses anything after the value but white
         * space, and a NUL byte cannot get here. */
        *ret = o;
        return 0;
}

static int check_top_level(json_object *root, json_object **ret_nodes, char why[static WHY_MAX]) {
        json_object *v;

        if (!json_object_is_type(root, json_type_object))
                return damaged(why, "the top level is %s, expected an object",
                               json_type_to_name(json_object_get_type(root)));
        if (!json_object_object_get_ex(root, "version", &v))
                return damaged(why, "no \"version\"");
        if (!json_object_is_type(v, json_type_int))
                return damaged(why, "\"version\" is %s, expected int", json_type_to_name(json_object_get_type(v)));
        if (json_object_get_int64(v) != NODE_TABLE_VERSION)
                return damaged(why, "version %s, this daemon reads version %d",
                               json_object_to_json_string(v), NODE_TABLE_VERSION);
        if (!json_object_object_get_ex(root, "nodes", &v) || !json_object_is_type(v, json_type_array))
                return damaged(why, "no \"nodes\" array");
        *ret_nodes = v;
        return 0;
}

/* Nothing is wrong with the content: say so, and touch nothing. */
static int read_failed(NodeTable *t, int r) {
        struct stat st;

        /* read_file_at() refuses anything but a regular file with -EBADFD,
         * whose text ("File descriptor in bad state") would mislead. */
        if (r == -EBADFD && fstatat(t->state_dir_fd, NODE_TABLE_FILE, &st, AT_SYMLINK_NOFOLLOW) >= 0 &&
            S_ISDIR(st.st_mode))
                r = -EISDIR;
        if (r == -EBADFD)
                return log_error_errno(r, "Failed to read %s/%s: not a regular file; it is left as it is, "
                                       "remove or replace it", t->state_dir, NODE_TABLE_FILE);
        return log_error_errno(r, "Failed to read %s/%s (a read error, not damaged content; the file is left "
                               "as it is): %m", t->state_dir, NODE_TABLE_FILE);
}

static void table_take_entries(NodeTable *t, NodeTable *from) {
        table_clear(t);
        t->entries = TAKE_PTR(from->entries);
        t->n_entries = from->n_entries;
        from->n_entries = 0;
}

int node_table_load(NodeTable *t) {
        _cleanup_(node_table_freep) NodeTable *fresh = NULL;
        _cleanup_(json_object_putp) json_object *root = NULL;
        _cleanup_free_ char *text = NULL;
        json_object *nodes = NULL;
        char why[WHY_MAX];
        size_t size = 0, n_damaged = 0, n_total;
        int r;

        r = read_file_at(t->state_dir_fd, NODE_TABLE_FILE, NODE_TABLE_SIZE_MAX, &text, &size);
        if (r == -ENOENT) {
                table_clear(t);
                return 0;
        }
        if (r == -EFBIG)
                r = damaged(why, "larger than %u MiB", NODE_TABLE_SIZE_MAX >> 20);
        else if (r < 0)
                return read_failed(t, r);
        else
                r = parse_document(text, size, &root, why);
        if (r >= 0)
                r = check_top_level(root, &nodes, why);
        if (r == -EBADMSG) {
                /* The daemon must start: keep the evidence, forget the content. */
                (void) quarantine_file(t->state_dir_fd, t->state_dir, NODE_TABLE_FILE, why);
                table_clear(t);
                return 0;
        }
        if (r < 0)
                return log_error_errno(r, "Failed to load %s/%s: %m", t->state_dir, NODE_TABLE_FILE);

        r = node_table_new(&fresh, t->state_dir_fd, t->state_dir);
        if (r >= 0)
                r = load_entries(fresh, nodes, &n_damaged);
        if (r < 0)
                return log_error_errno(r, "Failed to load %s/%s: %m", t->state_dir, NODE_TABLE_FILE);
        n_total = json_object_array_length(nodes);
        table_take_entries(t, fresh);
        if (n_damaged == 0)
                return 0;

        (void) snprintf(why, sizeof(why), "%zu of %zu node entries damaged, the other %zu kept",
                        n_damaged, n_total, n_total - n_damaged);
        /* Write the kept entries at once so that they survive a crash before
         * the next save; never over a file that could not be set aside. */
        if (quarantine_file(t->state_dir_fd, t->state_dir, NODE_TABLE_FILE, why) >= 0 && t->n_entries > 0)
                (void) node_table_save(t);
        return 0;
}

void node_entry_format_conflict(const NodeEntry *e, char buf[static 24]) {
        const uint8_t (*u)[4] = e->conflict_uids;

        if (!e->conflict) {
                buf[0] = 0;
                return;
        }
        snprintf(buf, 24, "%02X%02X%02X%02X and %02X%02X%02X%02X",
                 u[0][0], u[0][1], u[0][2], u[0][3], u[1][0], u[1][1], u[1][2], u[1][3]);
}

char *node_entry_running(const NodeEntry *e) {
        char when[32] = "", *s;

        if (!e->has_image_crc)
                return strdup("");
        if (e->has_flash_crc && e->last_flash_crc == e->image_crc && e->last_flash_usec > 0) {
                time_t t = (time_t) (e->last_flash_usec / 1000000);
                struct tm tm;

                if (localtime_r(&t, &tm))
                        strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
                if (asprintf(&s, "%s, flashed %s", e->last_flash_name ?: "the image flashed last", when) < 0)
                        return NULL;
                return s;
        }
        if (asprintf(&s, "image %08X", (unsigned) e->image_crc) < 0)
                return NULL;
        return s;
}

/* ---- lookup by UID ---- */

NodeEntry *node_table_find_uid(NodeTable *t, const char *interface, const uint8_t uid[static 4]) {
        NodeEntry *best = NULL;

        for (size_t i = 0; i < t->n_entries; i++) {
                NodeEntry *e = t->entries[i];

                if (!e->known || e->legacy || memcmp(e->info.uid, uid, sizeof(e->info.uid)) != 0)
                        continue;
                if (interface && strcmp(e->interface, interface) != 0)
                        continue;
                if (!best || e->last_seen_usec > best->last_seen_usec)
                        best = e;
        }
        return best;
}
