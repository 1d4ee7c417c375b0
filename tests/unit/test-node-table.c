/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <json-c/json.h>

#include "node-table.h"

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

/* One state directory per test, as the daemon has it: a path for the
 * messages and an fd the table borrows. */
typedef struct Fixture {
        char dir[64];
        int dir_fd;
        NodeTable *t;
        int saved_stderr, log_fd;
} Fixture;

static int setup(void **state) {
        Fixture *f = calloc(1, sizeof(*f));

        if (!f)
                return -1;
        strcpy(f->dir, "/tmp/test-node-table-XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        f->dir_fd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (f->dir_fd < 0 || node_table_new(&f->t, f->dir_fd, f->dir) < 0)
                return -1;
        f->saved_stderr = f->log_fd = -1;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;
        struct dirent *de;
        DIR *d;

        node_table_free(f->t);
        d = fdopendir(f->dir_fd);
        if (d) {
                while ((de = readdir(d)))
                        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
                            unlinkat(dirfd(d), de->d_name, 0) < 0)
                                (void) unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR);
                closedir(d);
        }
        (void) rmdir(f->dir);
        free(f);
        return 0;
}

static void write_at(Fixture *f, const char *name, const void *data, size_t len) {
        int fd = openat(f->dir_fd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, len), (ssize_t) len);
        assert_int_equal(close(fd), 0);
}

static char *read_at(Fixture *f, const char *name) {
        int fd = openat(f->dir_fd, name, O_RDONLY | O_CLOEXEC);
        char *buf = calloc(1, 1 << 16);
        ssize_t n;

        assert_true(fd >= 0);
        assert_non_null(buf);
        n = read(fd, buf, (1 << 16) - 1);
        assert_true(n >= 0);
        close(fd);
        return buf;
}

/* The directory's names, sorted and joined by spaces, with the damaged
 * files' timestamps replaced by "*": what `ls` would show a user. */
static char *listing(Fixture *f) {
        struct dirent **names;
        char *out = calloc(1, 4096);
        int n;

        assert_non_null(out);
        n = scandir(f->dir, &names, NULL, alphasort);
        assert_true(n >= 0);
        for (int i = 0; i < n; i++) {
                const char *s = names[i]->d_name;
                const char *damaged = strstr(s, ".damaged-");

                if (strcmp(s, ".") != 0 && strcmp(s, "..") != 0) {
                        if (*out)
                                strcat(out, " ");
                        if (damaged && strspn(damaged + 9, "0123456789") == strlen(damaged + 9)) {
                                strncat(out, s, (size_t) (damaged - s) + 9);
                                strcat(out, "*");
                        } else
                                strcat(out, s);
                }
                free(names[i]);
        }
        free(names);
        return out;
}

static void assert_listing(Fixture *f, const char *expected) {
        char *l = listing(f);

        assert_string_equal(l, expected);
        free(l);
}

/* The name of the one nodes.json.damaged-<time> file. */
static char *damaged_name(Fixture *f) {
        struct dirent **names;
        char *found = NULL;
        int n = scandir(f->dir, &names, NULL, alphasort);

        assert_true(n >= 0);
        for (int i = 0; i < n; i++) {
                if (strncmp(names[i]->d_name, "nodes.json.damaged-", 19) == 0) {
                        assert_null(found);
                        found = strdup(names[i]->d_name);
                }
                free(names[i]);
        }
        free(names);
        assert_non_null(found);
        return found;
}

/* What the daemon writes to stderr, which is what ends up in the journal. */
static void capture_stderr(Fixture *f) {
        fflush(stderr);
        f->log_fd = memfd_create("stderr", MFD_CLOEXEC);
        assert_true(f->log_fd >= 0);
        f->saved_stderr = dup(STDERR_FILENO);
        assert_true(f->saved_stderr >= 0);
        assert_true(dup2(f->log_fd, STDERR_FILENO) >= 0);
}

static char *captured_stderr(Fixture *f) {
        char *buf = calloc(1, 8192);
        ssize_t n;

        assert_non_null(buf);
        fflush(stderr);
        assert_true(dup2(f->saved_stderr, STDERR_FILENO) >= 0);
        close(f->saved_stderr);
        n = pread(f->log_fd, buf, 8191, 0);
        assert_true(n >= 0);
        close(f->log_fd);
        f->saved_stderr = f->log_fd = -1;
        fputs(buf, stderr);     /* still visible in the test log */
        return buf;
}

static NodeEntry *add_full(NodeTable *t, const char *interface, uint8_t id, uint32_t uid) {
        NodeEntry *e;

        assert_int_equal(node_table_add(t, interface, id, &e), 1);
        e->known = true;
        e->legacy = id == 0;
        e->state = NODE_ISP;
        e->info = (struct isp_info) {
                .version = 1, .capabilities = ISP_CAP_CRC | ISP_CAP_QUIET, .firmware = 0x23, .rx_depth = 16,
                .uid = { uid >> 24, uid >> 16, uid >> 8, uid },
        };
        e->first_seen_usec = 1700000000000000ull + id;
        e->last_seen_usec = 1800000000000000ull + id;
        return e;
}

static void assert_entry_equal(const NodeEntry *a, const NodeEntry *b) {
        assert_string_equal(a->interface, b->interface);
        assert_int_equal(a->id, b->id);
        assert_int_equal(a->legacy, b->legacy);
        assert_int_equal(a->known, b->known);
        assert_int_equal(a->state, b->state);
        assert_memory_equal(&a->info, &b->info, sizeof(a->info));
        assert_int_equal(a->first_seen_usec, b->first_seen_usec);
        assert_int_equal(a->last_seen_usec, b->last_seen_usec);
        if (a->last_flash_result)
                assert_string_equal(a->last_flash_result, b->last_flash_result);
        else
                assert_null(b->last_flash_result);
        assert_int_equal(a->last_flash_usec, b->last_flash_usec);
        assert_int_equal(a->has_flash_crc, b->has_flash_crc);
        assert_int_equal(a->last_flash_crc, b->last_flash_crc);
}

static NodeTable *load_fresh(Fixture *f) {
        NodeTable *t;

        assert_int_equal(node_table_new(&t, f->dir_fd, f->dir), 0);
        assert_int_equal(node_table_load(t), 0);
        return t;
}

static void test_save_load_identical(void **state) {
        Fixture *f = *state;
        NodeEntry *e;
        NodeTable *t;
        char uid[9];

        e = add_full(f->t, "can1", 7, 0xA4917069);
        assert_int_equal(node_entry_set_flash_result(e, "succeeded", 1900000000000000ull), 0);
        e->last_flash_crc = 0xFFFFFFFF;
        e->has_flash_crc = true;
        e->state = NODE_APPLICATION;
        e = add_full(f->t, "can0", 0, 0);
        assert_int_equal(node_entry_set_flash_result(e, "failed: \"PROGRAM\" at FF:1200\nnot acknowledged/ü",
                                                     UINT64_MAX), 0);
        e->state = NODE_NOT_ANSWERING;
        e = add_full(f->t, "can0", 254, 0x00000001);
        e->last_seen_usec = UINT64_MAX;
        /* Flashed and failed before it ever answered. */
        assert_int_equal(node_table_add(f->t, "vcan0", 3, &e), 1);
        assert_int_equal(node_entry_set_flash_result(e, "cancelled", 5), 0);
        assert_int_equal(node_table_save(f->t), 0);
        assert_listing(f, "nodes.json");

        t = load_fresh(f);
        assert_int_equal(t->n_entries, 4);
        for (size_t i = 0; i < 4; i++)
                assert_entry_equal(f->t->entries[i], t->entries[i]);
        assert_string_equal(t->entries[0]->interface, "can0");
        assert_int_equal(t->entries[0]->id, 0);
        assert_int_equal(t->entries[1]->id, 254);
        assert_string_equal(t->entries[2]->interface, "can1");
        node_entry_format_uid(t->entries[2], uid);
        assert_string_equal(uid, "A4917069");
        assert_string_equal(t->entries[2]->last_flash_result, "succeeded");
        assert_int_equal(t->entries[2]->last_flash_crc, 0xFFFFFFFF);
        node_table_free(t);
}

/* What a board's application said and two UIDs on one id survive a
 * restart; what it runs reads as people are told. */
static void test_application_and_conflict_round_trip(void **state) {
        Fixture *f = *state;
        NodeEntry *e;
        NodeTable *t;
        char conflict[24];
        char *running;

        e = add_full(f->t, "can0", 3, 0xA4917069);
        e->state = NODE_APPLICATION;
        assert_int_equal(node_entry_set_flash_result(e, "succeeded", 1796126520000000ull), 0);
        e->last_flash_crc = 0x5907571D;
        e->has_flash_crc = true;
        e->last_flash_name = strdup("app.hex");
        e->has_image_crc = true;
        e->image_crc = 0x5907571D;
        e->app_version = 0x00010002;
        e = add_full(f->t, "can0", 5, 0x01020304);
        e->conflict = true;
        memcpy(e->conflict_uids[0], "\x01\x02\x03\x04", 4);
        memcpy(e->conflict_uids[1], "\x5D\x0C\x33\xE1", 4);
        e->conflict_job = 17;
        assert_int_equal(node_table_save(f->t), 0);

        t = load_fresh(f);
        assert_int_equal(t->n_entries, 2);
        e = t->entries[0];
        assert_string_equal(e->last_flash_name, "app.hex");
        assert_true(e->has_image_crc);
        assert_int_equal(e->image_crc, 0x5907571D);
        assert_int_equal(e->app_version, 0x00010002);
        assert_false(e->conflict);
        running = node_entry_running(e);
        assert_non_null(running);
        assert_true(strncmp(running, "app.hex, flashed 2026-12-0", 26) == 0);
        free(running);
        /* it answers with another image now: the raw identity */
        e->image_crc = 0x1C291CA3;
        running = node_entry_running(e);
        assert_string_equal(running, "image 1C291CA3");
        free(running);

        e = t->entries[1];
        assert_true(e->conflict);
        assert_int_equal(e->conflict_job, 17);
        node_entry_format_conflict(e, conflict);
        assert_string_equal(conflict, "01020304 and 5D0C33E1");
        running = node_entry_running(e);
        assert_string_equal(running, "");
        free(running);
        node_table_free(t);
}

/* The file is for people too: the documented names and forms. */
static void test_file_format(void **state) {
        Fixture *f = *state;
        json_object *root, *nodes, *o, *v;
        NodeEntry *e;
        char *text;

        e = add_full(f->t, "can0", 5, 0xA4917069);
        e->has_flash_crc = true;
        e->last_flash_crc = 0x1234ABCD;
        assert_int_equal(node_table_add(f->t, "can0", 6, NULL), 1);
        assert_int_equal(node_table_save(f->t), 0);

        text = read_at(f, "nodes.json");
        assert_non_null(strstr(text, "\n  \"nodes\""));          /* pretty-printed */
        assert_int_equal(text[strlen(text) - 1], '\n');
        root = json_tokener_parse(text);
        assert_non_null(root);
        assert_true(json_object_object_get_ex(root, "version", &v));
        assert_int_equal(json_object_get_int(v), 1);
        assert_true(json_object_object_get_ex(root, "nodes", &nodes));
        assert_int_equal(json_object_array_length(nodes), 2);

        o = json_object_array_get_idx(nodes, 0);
        assert_true(json_object_object_get_ex(o, "interface", &v));
        assert_string_equal(json_object_get_string(v), "can0");
        assert_true(json_object_object_get_ex(o, "form", &v));
        assert_string_equal(json_object_get_string(v), "extended");
        assert_true(json_object_object_get_ex(o, "state", &v));
        assert_string_equal(json_object_get_string(v), "isp");
        assert_true(json_object_object_get_ex(o, "uid", &v));
        assert_string_equal(json_object_get_string(v), "A4917069");
        assert_true(json_object_object_get_ex(o, "receive_depth", &v));
        assert_int_equal(json_object_get_int(v), 16);
        assert_true(json_object_object_get_ex(o, "last_flash_crc", &v));
        assert_true(json_object_is_type(v, json_type_int));
        assert_int_equal(json_object_get_int64(v), 0x1234ABCD);
        assert_false(json_object_object_get_ex(o, "last_flash_result", &v));

        o = json_object_array_get_idx(nodes, 1);
        assert_true(json_object_object_get_ex(o, "state", &v));
        assert_string_equal(json_object_get_string(v), "unknown");
        assert_false(json_object_object_get_ex(o, "last_flash_crc", &v));
        json_object_put(root);
        free(text);
}

static void test_load_missing_is_empty(void **state) {
        Fixture *f = *state;

        assert_int_equal(node_table_add(f->t, "can0", 1, NULL), 1);
        assert_int_equal(node_table_load(f->t), 0);
        assert_int_equal(f->t->n_entries, 0);
        assert_listing(f, "");
}

static void assert_set_aside_and_recovers(Fixture *f, const void *junk, size_t len) {
        NodeEntry *e;
        NodeTable *t;
        char *log, *aside, *kept;

        write_at(f, "nodes.json", junk, len);
        assert_int_equal(node_table_add(f->t, "can9", 9, NULL), 1);

        capture_stderr(f);
        assert_int_equal(node_table_load(f->t), 0);
        log = captured_stderr(f);
        assert_int_equal(f->t->n_entries, 0);
        assert_listing(f, "nodes.json.damaged-*");
        aside = damaged_name(f);
        assert_non_null(strstr(log, "nodes.json is damaged"));
        assert_non_null(strstr(log, aside));
        kept = read_at(f, aside);
        assert_memory_equal(kept, junk, len);   /* the evidence, byte for byte */

        add_full(f->t, "can0", 3, 0xDEADBEEF);
        assert_int_equal(node_table_save(f->t), 0);
        assert_listing(f, "nodes.json nodes.json.damaged-*");
        t = load_fresh(f);
        assert_int_equal(t->n_entries, 1);
        e = node_table_find(t, "can0", 3);
        assert_non_null(e);
        assert_int_equal(e->info.uid[0], 0xDE);
        node_table_free(t);
        free(aside);
        free(kept);
        free(log);
}

static void test_truncated_json_set_aside(void **state) {
        Fixture *f = *state;
        const char *text = "{\n  \"version\": 1,\n  \"nodes\": [\n    {\n      \"interface\": \"can0\",\n      \"id\": 3,\n      \"uid\": \"A49";

        assert_set_aside_and_recovers(f, text, strlen(text));
}

static void test_binary_junk_set_aside(void **state) {
        Fixture *f = *state;
        uint8_t junk[512];

        for (size_t i = 0; i < sizeof(junk); i++)
                junk[i] = (uint8_t) (i * 37 + 11);
        junk[100] = 0;
        assert_set_aside_and_recovers(f, junk, sizeof(junk));
}

/* A whole valid table, then a NUL and more: what a torn write of an
 * older, longer file would look like without write_file_atomic(). */
static void test_nul_after_valid_json_set_aside(void **state) {
        static const char text[] = "{ \"version\": 1, \"nodes\": [] }\0\0\0{ \"interface\": \"can0\" }";

        assert_set_aside_and_recovers(*state, text, sizeof(text) - 1);
}

static void test_empty_file_set_aside(void **state) {
        assert_set_aside_and_recovers(*state, "", 0);
}

static void test_wrong_top_level_set_aside(void **state) {
        static const char *const texts[] = {
                "[]",
                "{\"nodes\": []}",
                "{\"version\": 2, \"nodes\": []}",
                "{\"version\": \"1\", \"nodes\": []}",
                "{\"version\": 1}",
                "{\"version\": 1, \"nodes\": {}}",
                "{\"version\": 1, \"nodes\": []} trailing",
                "{\"version\": 1, \"nodes\": [], /* comment */}",
        };
        Fixture *f = *state;

        for (size_t i = 0; i < ELEMENTSOF(texts); i++) {
                char *aside;

                write_at(f, "nodes.json", texts[i], strlen(texts[i]));
                assert_int_equal(node_table_load(f->t), 0);
                assert_int_equal(f->t->n_entries, 0);
                assert_listing(f, "nodes.json.damaged-*");
                /* quarantine_file() names by the second: make room for the next. */
                aside = damaged_name(f);
                assert_int_equal(unlinkat(f->dir_fd, aside, 0), 0);
                free(aside);
        }
}

static const char bad_entries_json[] =
        "{ \"version\": 1, \"nodes\": [\n"
        "  { \"interface\": \"can0\", \"id\": 1, \"known\": true, \"state\": \"isp\", \"uid\": \"A4917069\",\n"
        "    \"last_flash_result\": \"succeeded\", \"last_flash_crc\": 305441741 },\n"
        "  { \"interface\": \"can0\", \"id\": 300 },\n"
        "  { \"interface\": \"can0/x\", \"id\": 2 },\n"
        "  { \"interface\": \"can0\", \"id\": 3, \"state\": 5 },\n"
        "  { \"id\": 4 },\n"
        "  { \"interface\": \"can0\", \"id\": 5, \"uid\": \"A49170\" },\n"
        "  { \"interface\": \"can0\", \"id\": 6, \"first_seen_usec\": -1 },\n"
        "  { \"interface\": \"can0\", \"id\": 7, \"last_flash_crc\": 4294967296 },\n"
        "  { \"interface\": \"can0\", \"id\": 8, \"state\": \"sleeping\" },\n"
        "  { \"interface\": \"can0\", \"id\": 9, \"known\": 1 },\n"
        "  \"can0 node 10\",\n"
        "  { \"interface\": \"a-very-long-name\", \"id\": 11 },\n"
        "  { \"interface\": \"can1\", \"id\": 2, \"form\": \"legacy\", \"last_flash_crc\": null },\n"
        "  { \"interface\": \"can0\", \"id\": 1, \"uid\": \"00000000\" }\n"
        "] }\n";

static void test_bad_entries_keep_the_good_ones(void **state) {
        Fixture *f = *state;
        NodeEntry *e;
        NodeTable *t;
        char uid[9], *log, *aside, *kept;

        write_at(f, "nodes.json", bad_entries_json, strlen(bad_entries_json));
        capture_stderr(f);
        assert_int_equal(node_table_load(f->t), 0);
        log = captured_stderr(f);

        assert_int_equal(f->t->n_entries, 2);
        e = node_table_find(f->t, "can0", 1);
        assert_non_null(e);
        node_entry_format_uid(e, uid);
        assert_string_equal(uid, "A4917069");           /* the first, not the repeat */
        assert_string_equal(e->last_flash_result, "succeeded");
        assert_true(e->has_flash_crc);
        assert_int_equal(e->last_flash_crc, 305441741);
        e = node_table_find(f->t, "can1", 2);
        assert_non_null(e);
        assert_true(e->legacy);
        assert_false(e->has_flash_crc);
        assert_int_equal(e->state, NODE_UNKNOWN);

        /* Each damaged entry is named with its cause. */
        assert_non_null(strstr(log, "nodes[1] is damaged (\"id\" is 300, more than 254)"));
        assert_non_null(strstr(log, "nodes[2] is damaged (\"can0/x\" is not a valid interface name (1-15 bytes"));
        assert_non_null(strstr(log, "nodes[3] is damaged (\"state\" is int, expected string)"));
        assert_non_null(strstr(log, "nodes[4] is damaged (no \"interface\")"));
        assert_non_null(strstr(log, "nodes[13] repeats can0 node 1"));
        assert_non_null(strstr(log, "12 of 14 node entries damaged"));

        /* The original is kept as evidence; a clean file holds the two. */
        assert_listing(f, "nodes.json nodes.json.damaged-*");
        aside = damaged_name(f);
        kept = read_at(f, aside);
        assert_string_equal(kept, bad_entries_json);
        t = load_fresh(f);
        assert_int_equal(t->n_entries, 2);
        assert_entry_equal(f->t->entries[0], t->entries[0]);
        assert_entry_equal(f->t->entries[1], t->entries[1]);
        assert_listing(f, "nodes.json nodes.json.damaged-*");
        node_table_free(t);
        free(aside);
        free(kept);
        free(log);
}

static void test_unreadable_is_an_error_not_damage(void **state) {
        Fixture *f = *state;
        char *log;

        assert_int_equal(mkdirat(f->dir_fd, "nodes.json", 0700), 0);
        assert_int_equal(node_table_add(f->t, "can0", 1, NULL), 1);

        capture_stderr(f);
        assert_int_equal(node_table_load(f->t), -EISDIR);
        log = captured_stderr(f);
        assert_non_null(strstr(log, "Failed to read"));
        assert_non_null(strstr(log, "not damaged content"));
        assert_null(strstr(log, "damaged-"));
        assert_listing(f, "nodes.json");
        assert_int_equal(f->t->n_entries, 1);           /* unchanged */
        free(log);
}

static void test_save_failure_is_reported(void **state) {
        Fixture *f = *state;

        assert_int_equal(node_table_add(f->t, "can0", 1, NULL), 1);
        assert_int_equal(mkdirat(f->dir_fd, "nodes.json", 0700), 0);
        assert_true(node_table_save(f->t) < 0);
        assert_listing(f, "nodes.json");
        assert_int_equal(unlinkat(f->dir_fd, "nodes.json", AT_REMOVEDIR), 0);
        assert_int_equal(node_table_save(f->t), 0);
}

static void test_load_replaces_entries(void **state) {
        Fixture *f = *state;
        NodeTable *t;

        add_full(f->t, "can0", 1, 1);
        assert_int_equal(node_table_save(f->t), 0);
        assert_int_equal(node_table_new(&t, f->dir_fd, f->dir), 0);
        assert_int_equal(node_table_add(t, "can5", 5, NULL), 1);
        assert_int_equal(node_table_load(t), 0);
        assert_int_equal(t->n_entries, 1);
        assert_null(node_table_find(t, "can5", 5));
        assert_non_null(node_table_find(t, "can0", 1));
        node_table_free(t);
}

static void test_sorted_after_random_adds(void **state) {
        static const struct { const char *interface; uint8_t id; } order[] = {
                { "can0", 0 }, { "can0", 1 }, { "can0", 2 }, { "can0", 10 }, { "can0", 254 },
                { "can1", 5 }, { "can2", 5 }, { "can10", 0 }, { "can10", 5 }, { "vcan0", 1 },
        };
        Fixture *f = *state;
        size_t perm[ELEMENTSOF(order)];

        for (size_t i = 0; i < ELEMENTSOF(order); i++)
                perm[i] = i;
        srand(42);
        for (size_t i = ELEMENTSOF(order) - 1; i > 0; i--) {
                size_t j = (size_t) rand() % (i + 1), tmp = perm[i];
                perm[i] = perm[j];
                perm[j] = tmp;
        }
        for (size_t i = 0; i < ELEMENTSOF(order); i++)
                assert_int_equal(node_table_add(f->t, order[perm[i]].interface, order[perm[i]].id, NULL), 1);

        assert_int_equal(f->t->n_entries, ELEMENTSOF(order));
        for (size_t i = 0; i < ELEMENTSOF(order); i++) {
                assert_string_equal(f->t->entries[i]->interface, order[i].interface);
                assert_int_equal(f->t->entries[i]->id, order[i].id);
                assert_ptr_equal(node_table_find(f->t, order[i].interface, order[i].id), f->t->entries[i]);
        }

        /* The order survives a save and a load. */
        assert_int_equal(node_table_save(f->t), 0);
        node_table_free(f->t);
        f->t = load_fresh(f);
        for (size_t i = 0; i < ELEMENTSOF(order); i++) {
                assert_string_equal(f->t->entries[i]->interface, order[i].interface);
                assert_int_equal(f->t->entries[i]->id, order[i].id);
        }
}

static void test_add_is_idempotent(void **state) {
        Fixture *f = *state;
        NodeEntry *a, *b;

        assert_int_equal(node_table_add(f->t, "can0", 3, &a), 1);
        assert_int_equal(a->state, NODE_UNKNOWN);
        assert_false(a->known);
        assert_false(a->legacy);
        assert_null(a->last_flash_result);
        a->state = NODE_ISP;
        assert_int_equal(node_table_add(f->t, "can0", 3, &b), 0);
        assert_ptr_equal(a, b);
        assert_int_equal(b->state, NODE_ISP);
        assert_int_equal(f->t->n_entries, 1);

        assert_int_equal(node_table_add(f->t, "can0", 0, &a), 1);
        assert_true(a->legacy);
        assert_int_equal(f->t->n_entries, 2);
}

static void test_add_rejects_bad_keys(void **state) {
        static const char *const bad[] = {
                "", "0123456789abcdef", "can/0", "can 0", "can\t0", "can0:1", ".", "..",
        };
        Fixture *f = *state;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(node_table_add(f->t, bad[i], 1, NULL), -EINVAL);
        assert_int_equal(node_table_add(f->t, NULL, 1, NULL), -EINVAL);
        assert_int_equal(node_table_add(f->t, "can0", 255, NULL), -EINVAL);
        assert_int_equal(f->t->n_entries, 0);

        assert_int_equal(node_table_add(f->t, "0123456789abcde", 1, NULL), 1);
        assert_int_equal(node_table_add(f->t, "...", 254, NULL), 1);
        assert_int_equal(f->t->n_entries, 2);
}

static void test_remove(void **state) {
        Fixture *f = *state;

        assert_int_equal(node_table_add(f->t, "can0", 1, NULL), 1);
        assert_int_equal(node_table_add(f->t, "can0", 2, NULL), 1);
        assert_int_equal(node_table_add(f->t, "can0", 3, NULL), 1);
        assert_int_equal(node_table_remove(f->t, "can1", 2), -ENOENT);
        assert_int_equal(node_table_remove(f->t, "can0", 2), 0);
        assert_int_equal(node_table_remove(f->t, "can0", 2), -ENOENT);
        assert_int_equal(f->t->n_entries, 2);
        assert_int_equal(f->t->entries[0]->id, 1);
        assert_int_equal(f->t->entries[1]->id, 3);
        assert_null(node_table_find(f->t, "can0", 2));
        assert_int_equal(node_table_remove(f->t, "can0", 1), 0);
        assert_int_equal(node_table_remove(f->t, "can0", 3), 0);
        assert_int_equal(f->t->n_entries, 0);
}

static void test_format_uid(void **state) {
        Fixture *f = *state;
        NodeEntry *e;
        char buf[9];

        e = add_full(f->t, "can0", 7, 0xA4917069);
        node_entry_format_uid(e, buf);
        assert_string_equal(buf, "A4917069");
        e->legacy = true;
        node_entry_format_uid(e, buf);
        assert_string_equal(buf, "");
        assert_int_equal(node_table_add(f->t, "can0", 8, &e), 1);
        memcpy(e->info.uid, "\x01\x02\x03\x04", 4);
        node_entry_format_uid(e, buf);
        assert_string_equal(buf, "");                   /* never answered */
}

/* A board is found by its UID wherever it was seen last: an old entry it
 * left behind (re-addressed, moved to another line) keeps its UID. */
static void test_find_uid(void **state) {
        static const uint8_t uid[4] = { 0xA4, 0x91, 0x70, 0x69 }, none[4] = { 0xA4, 0x91, 0x70, 0x6A };
        Fixture *f = *state;
        NodeEntry *old, *moved, *other, *e;

        assert_null(node_table_find_uid(f->t, NULL, uid));
        old = add_full(f->t, "can0", 3, 0xA4917069);
        other = add_full(f->t, "can0", 4, 0x11223344);
        assert_ptr_equal(node_table_find_uid(f->t, NULL, uid), old);
        assert_ptr_equal(node_table_find_uid(f->t, "can0", uid), old);
        assert_null(node_table_find_uid(f->t, "can1", uid));
        assert_null(node_table_find_uid(f->t, NULL, none));

        moved = add_full(f->t, "can1", 9, 0xA4917069);
        moved->last_seen_usec = old->last_seen_usec + 1;
        assert_ptr_equal(node_table_find_uid(f->t, NULL, uid), moved);
        assert_ptr_equal(node_table_find_uid(f->t, "can0", uid), old);
        assert_ptr_equal(node_table_find_uid(f->t, "can1", uid), moved);
        /* seen at its old place again */
        old->last_seen_usec = moved->last_seen_usec + 1;
        assert_ptr_equal(node_table_find_uid(f->t, NULL, uid), old);
        /* a tie: the first in table order */
        moved->last_seen_usec = old->last_seen_usec;
        assert_ptr_equal(node_table_find_uid(f->t, NULL, uid), old);

        /* Only what answered with that UID: not an entry that never
         * answered (its info is not valid), not the legacy node (no UID). */
        old->known = false;
        assert_ptr_equal(node_table_find_uid(f->t, NULL, uid), moved);
        moved->legacy = true;
        assert_null(node_table_find_uid(f->t, NULL, uid));
        assert_int_equal(node_table_add(f->t, "can2", 5, &e), 1);
        memcpy(e->info.uid, uid, 4);
        assert_null(node_table_find_uid(f->t, NULL, uid));
        assert_ptr_equal(node_table_find_uid(f->t, NULL, (const uint8_t[]) { 0x11, 0x22, 0x33, 0x44 }), other);
}

static void test_state_strings(void **state) {
        static const char *const names[] = { "unknown", "isp", "application", "not-answering" };

        for (int s = 0; s < _NODE_STATE_MAX; s++) {
                assert_string_equal(node_state_to_string(s), names[s]);
                assert_int_equal(node_state_from_string(names[s]), s);
        }
        assert_string_equal(node_state_to_string(_NODE_STATE_MAX), "unknown");
        assert_int_equal(node_state_from_string("ISP"), -EINVAL);
        assert_int_equal(node_state_from_string(""), -EINVAL);
        assert_int_equal(node_state_from_string(NULL), -EINVAL);
}

static void test_interface_order(void **state) {
        assert_true(interface_name_compare("can2", "can10") < 0);
        assert_true(interface_name_compare("can10", "can2") > 0);
        assert_true(interface_name_compare("can", "can0") < 0);
        assert_true(interface_name_compare("can0", "vcan0") < 0);
        assert_true(interface_name_compare("can01", "can1") != 0);
        assert_int_equal(interface_name_compare("can01", "can1"), -interface_name_compare("can1", "can01"));
        assert_int_equal(interface_name_compare("can1", "can1"), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
#define T(x) cmocka_unit_test_setup_teardown(x, setup, teardown)
                T(test_save_load_identical),
                T(test_application_and_conflict_round_trip),
                T(test_file_format),
                T(test_load_missing_is_empty),
                T(test_truncated_json_set_aside),
                T(test_binary_junk_set_aside),
                T(test_nul_after_valid_json_set_aside),
                T(test_empty_file_set_aside),
                T(test_wrong_top_level_set_aside),
                T(test_bad_entries_keep_the_good_ones),
                T(test_unreadable_is_an_error_not_damage),
                T(test_save_failure_is_reported),
                T(test_load_replaces_entries),
                T(test_sorted_after_random_adds),
                T(test_add_is_idempotent),
                T(test_add_rejects_bad_keys),
                T(test_remove),
                T(test_format_uid),
                T(test_find_uid),
                T(test_state_strings),
                T(test_interface_order),
#undef T
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
