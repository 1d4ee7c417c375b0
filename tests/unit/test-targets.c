/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* daemon/targets.c: what a target string names, over a configuration, a
 * node table and lines of the test's own, without a bus. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "stcisp-dbus.h"
#include "targets.h"

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

static const char config_text[] =
        "[Nodes]\n"
        "fan = 3\n"
        "old-board = legacy\n"
        "pump = uid:A4917069\n"
        "tank = uid:00C0FFEE\n"
        "[Groups]\n"
        "pumps = pump 5 fan\n"
        "wet = tank pump\n"
        "one = 5\n"
        "both-threes = can0/3 can1/3\n"
        "threes = node3 5\n";

typedef struct Fixture {
        char dir[64];
        int dir_fd;
        struct config config;
        NodeTable *nodes;
        Line can0, can1;
        Line *lines[2];
        struct targets_context c;
} Fixture;

static NodeEntry *seen(Fixture *f, const char *interface, uint8_t id, uint32_t uid, uint64_t when) {
        NodeEntry *e;

        assert_true(node_table_add(f->nodes, interface, id, &e) >= 0);
        e->known = true;
        e->legacy = id == 0;
        e->state = NODE_ISP;
        e->info.uid[0] = (uint8_t) (uid >> 24);
        e->info.uid[1] = (uint8_t) (uid >> 16);
        e->info.uid[2] = (uint8_t) (uid >> 8);
        e->info.uid[3] = (uint8_t) uid;
        e->first_seen_usec = e->last_seen_usec = when;
        return e;
}

static int setup(void **state) {
        Fixture *f = calloc(1, sizeof(*f));
        char path[128];
        FILE *file;

        if (!f)
                return -1;
        strcpy(f->dir, "/tmp/test-targets-XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        f->dir_fd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (f->dir_fd < 0 || node_table_new(&f->nodes, f->dir_fd, f->dir) < 0)
                return -1;
        snprintf(path, sizeof(path), "%s/stcispd.conf", f->dir);
        file = fopen(path, "we");
        if (!file || fputs(config_text, file) < 0 || fclose(file) != 0)
                return -1;
        if (config_init(&f->config) < 0 || config_load(&f->config, path, true) < 0)
                return -1;
        (void) unlink(path);

        f->can0.interface = (char *) "can0";
        f->can1.interface = (char *) "can1";
        f->lines[0] = &f->can0;
        f->lines[1] = &f->can1;
        /* one line unless a test adds can1 */
        f->c = (struct targets_context) { .config = &f->config, .nodes = f->nodes, .lines = f->lines, .n_lines = 1 };
        *state = f;
        return 0;
}

static int teardown(void **state) {
        Fixture *f = *state;

        node_table_free(f->nodes);
        config_done(&f->config);
        close(f->dir_fd);
        (void) rmdir(f->dir);
        free(f);
        return 0;
}

/* targets_resolve_one(): 0 and the canonical name, or the error. */
static void assert_one(Fixture *f, const char *target, const char *canonical) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        struct target t = {};
        int r = targets_resolve_one(&f->c, target, &t, &error);

        if (r < 0)
                print_error("%s: %s\n", target, error.message);
        assert_int_equal(r, 0);
        assert_string_equal(t.canonical, canonical);
        target_done(&t);
        sd_bus_error_free(&error);
}

static void assert_one_fails(Fixture *f, const char *target, const char *name, const char *message) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        struct target t = {};
        int r = targets_resolve_one(&f->c, target, &t, &error);

        assert_true(r < 0);
        assert_string_equal(error.name, name);
        assert_string_equal(error.message, message);
        target_done(&t);
        sd_bus_error_free(&error);
}

/* targets_resolve(): the canonical names, comma-separated, or the error. */
static char *resolve(Fixture *f, unsigned flags, const char *name, const char *message, size_t n, ...) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *specs[8];
        struct node_set ns = {};
        char *out = calloc(1, 512);
        va_list ap;
        int r;

        assert_non_null(out);
        assert_true(n <= ELEMENTSOF(specs));
        va_start(ap, n);
        for (size_t i = 0; i < n; i++)
                specs[i] = va_arg(ap, const char *);
        va_end(ap);

        r = targets_resolve(&f->c, specs, n, flags, &ns, &error);
        if (name) {
                assert_true(r < 0);
                if (strcmp(error.message, message) != 0)
                        print_error("got: %s\n", error.message);
                assert_string_equal(error.name, name);
                assert_string_equal(error.message, message);
        } else {
                if (r < 0)
                        print_error("%s\n", error.message);
                assert_int_equal(r, 0);
                for (size_t i = 0; i < ns.n; i++)
                        sprintf(out + strlen(out), "%s%s", i ? "," : "", ns.v[i].canonical);
        }
        node_set_done(&ns);
        sd_bus_error_free(&error);
        return out;
}

#define assert_resolves(f, flags, expected, ...) do {                                  \
                const char *_specs[] = { __VA_ARGS__ };                                 \
                char *_got = resolve(f, flags, NULL, NULL, ELEMENTSOF(_specs), __VA_ARGS__); \
                assert_string_equal(_got, expected);                                    \
                free(_got);                                                             \
        } while (0)

#define assert_refused(f, flags, name, message, ...) do {                              \
                const char *_specs[] = { __VA_ARGS__ };                                 \
                free(resolve(f, flags, name, message, ELEMENTSOF(_specs), __VA_ARGS__)); \
        } while (0)

static char *display(Fixture *f, Line *l, uint8_t node) {
        char *s = targets_display_name(&f->c, l, node);

        assert_non_null(s);
        return s;
}

#define assert_display(f, l, node, expected) do {                                      \
                char *_s = display(f, l, node);                                         \
                assert_string_equal(_s, expected);                                      \
                free(_s);                                                               \
        } while (0)

/* ---- single targets ---- */

static void test_forms_one_line(void **state) {
        Fixture *f = *state;

        assert_one(f, "3", "node3");
        assert_one(f, "node3", "node3");
        assert_one(f, "fan", "node3");
        assert_one(f, "can0/fan", "node3");
        assert_one(f, "legacy", "legacy");
        assert_one(f, "old-board", "legacy");
        assert_one_fails(f, "node255", STCISP_ERROR_NODE_NOT_FOUND,
                         "No node 'node255': a target is nodeN or N (N = 1-254), 'legacy', or a name from [Nodes] in stcispd.conf");
        assert_one_fails(f, "can7/node3", STCISP_ERROR_NODE_NOT_FOUND, "No line 'can7': stcispd works on can0");
}

/* A UID name is the board, whatever id it has. */
static void test_uid_name(void **state) {
        Fixture *f = *state;

        assert_one_fails(f, "pump", STCISP_ERROR_NODE_NOT_FOUND,
                         "'pump' (board A4917069) has not been seen on any line: run 'ispctl scan'");
        (void) seen(f, "can0", 7, 0xA4917069, 100);
        (void) seen(f, "can0", 8, 0x12345678, 200);
        assert_one(f, "pump", "node7");
        assert_one(f, "can0/pump", "node7");

        /* re-addressed to 12: its old entry keeps the UID, the new one is
         * where it is */
        (void) seen(f, "can0", 12, 0xA4917069, 300);
        assert_one(f, "pump", "node12");
        /* another board answers at 12 (its INFO overwrites the UID): the
         * old entry is all that is left */
        (void) seen(f, "can0", 12, 0x0BADF00D, 400);
        assert_one(f, "pump", "node7");

        /* an entry that never answered has no UID to go by */
        node_table_find(f->nodes, "can0", 7)->known = false;
        assert_one_fails(f, "pump", STCISP_ERROR_NODE_NOT_FOUND,
                         "'pump' (board A4917069) has not been seen on any line: run 'ispctl scan'");
}

static void test_uid_name_lines(void **state) {
        Fixture *f = *state;

        f->c.n_lines = 2;
        (void) seen(f, "can0", 3, 0xA4917069, 100);
        (void) seen(f, "can1", 9, 0xA4917069, 200);     /* moved to can1 */
        (void) seen(f, "can2", 4, 0xA4917069, 300);     /* a line not configured any more */
        assert_one(f, "pump", "can1/node9");
        assert_one(f, "can0/pump", "can0/node3");
        assert_one(f, "can1/pump", "can1/node9");
        assert_one_fails(f, "can1/tank", STCISP_ERROR_NODE_NOT_FOUND,
                         "'can1/tank' (board 00C0FFEE) has not been seen on can1: run 'ispctl scan'");
        /* The id name still names id 3, the board there or not: it is on
         * one line only, so a bare "fan" is can0's. */
        assert_one(f, "fan", "can0/node3");
}

static void test_group_is_not_one_node(void **state) {
        Fixture *f = *state;

        assert_one_fails(f, "pumps", SD_BUS_ERROR_INVALID_ARGS, "'pumps' is a group of 3 nodes: name one node");
        assert_one_fails(f, "one", SD_BUS_ERROR_INVALID_ARGS, "'one' is a group of 1 node: name one node");
        assert_one_fails(f, "can0/pumps", STCISP_ERROR_NODE_NOT_FOUND,
                         "'can0/pumps': 'pumps' is a group, which is named without 'INTERFACE/'");
        /* and so for a job of one node */
        assert_refused(f, 0, SD_BUS_ERROR_INVALID_ARGS, "'pumps' is a group of 3 nodes: name one node", "pumps");
        assert_refused(f, TARGETS_ALL, SD_BUS_ERROR_INVALID_ARGS, "'wet' is a group of 2 nodes: name one node",
                       "node1", "wet");
}

/* ---- a job's nodes ---- */

static void test_group_members(void **state) {
        Fixture *f = *state;

        (void) seen(f, "can0", 7, 0xA4917069, 100);
        (void) seen(f, "can0", 9, 0x00C0FFEE, 100);
        assert_resolves(f, TARGETS_GROUPS, "node7,node5,node3", "pumps");
        assert_resolves(f, TARGETS_GROUPS, "node1,node7,node5,node3,node2", "1", "pumps", "node2");
        assert_resolves(f, TARGETS_GROUPS, "node9,node7,node5", "wet", "one");
        assert_resolves(f, TARGETS_GROUPS | TARGETS_ALL, "node7,node9", "all");
}

static void test_group_errors(void **state) {
        Fixture *f = *state;

        /* a member that cannot be resolved fails the job, naming the group */
        assert_refused(f, TARGETS_GROUPS, STCISP_ERROR_NODE_NOT_FOUND,
                       "Group 'pumps': 'pump' (board A4917069) has not been seen on any line: run 'ispctl scan'",
                       "pumps");
        (void) seen(f, "can0", 7, 0xA4917069, 100);
        (void) seen(f, "can0", 9, 0x00C0FFEE, 100);

        /* a node twice, through a group too */
        assert_refused(f, TARGETS_GROUPS, SD_BUS_ERROR_INVALID_ARGS,
                       "'pumps' is given twice: name each node once", "pumps", "pumps");
        assert_refused(f, TARGETS_GROUPS, SD_BUS_ERROR_INVALID_ARGS,
                       "'pump' (in group 'pumps') and 'pump' both name node7: name each node once", "pumps", "pump");
        assert_refused(f, TARGETS_GROUPS, SD_BUS_ERROR_INVALID_ARGS,
                       "'node7' and 'pump' (in group 'pumps') both name node7: name each node once", "node7", "pumps");
        assert_refused(f, TARGETS_GROUPS, SD_BUS_ERROR_INVALID_ARGS,
                       "'pump' (in group 'pumps') and 'pump' (in group 'wet') both name node7: name each node once",
                       "pumps", "wet");
        assert_refused(f, TARGETS_GROUPS | TARGETS_ALL, SD_BUS_ERROR_INVALID_ARGS,
                       "'all' and 'pump' (in group 'pumps') both name node7: name each node once", "all", "pumps");
        /* the legacy node is flashed alone */
        assert_refused(f, TARGETS_GROUPS, SD_BUS_ERROR_INVALID_ARGS,
                       "'legacy' is the legacy node, which answers for every node on its line: "
                       "it cannot be in a job with other nodes; flash it on its own", "one", "legacy");
        /* the messages of before groups */
        assert_refused(f, TARGETS_GROUPS, SD_BUS_ERROR_INVALID_ARGS,
                       "'node2' is given twice: name each node once", "node2", "node2");
        assert_refused(f, TARGETS_GROUPS, SD_BUS_ERROR_INVALID_ARGS,
                       "'fan' and '3' both name node3: name each node once", "fan", "3");
        free(resolve(f, TARGETS_GROUPS, SD_BUS_ERROR_INVALID_ARGS,
                     "No target given: name nodes (node3, 3, can1/node3, a configured name) or 'all'", 0));
}

static void test_group_lines(void **state) {
        Fixture *f = *state;

        f->c.n_lines = 2;
        (void) seen(f, "can0", 3, 0x11111111, 100);
        (void) seen(f, "can1", 3, 0x22222222, 100);
        (void) seen(f, "can1", 5, 0x33333333, 100);
        assert_resolves(f, TARGETS_GROUPS, "can0/node3,can1/node3", "both-threes");
        /* a bare id in a group follows the rules of a bare id */
        assert_refused(f, TARGETS_GROUPS, STCISP_ERROR_AMBIGUOUS_NODE,
                       "Group 'threes': 'node3' is on several lines: name one of can0/node3, can1/node3", "threes");
        assert_resolves(f, TARGETS_GROUPS, "can1/node5", "one");
}

/* ---- names ---- */

static void test_display_name(void **state) {
        Fixture *f = *state;
        char *s;

        (void) seen(f, "can0", 3, 0xA4917069, 100);     /* pump, at fan's id */
        (void) seen(f, "can0", 4, 0x55555555, 100);
        assert_display(f, &f->can0, 3, "pump");         /* the board's name wins */
        assert_display(f, &f->can0, 4, "node4");
        assert_display(f, &f->can0, 0, "old-board");
        assert_display(f, &f->can0, 6, "node6");        /* not in the table */

        /* pump moves to 8: its old entry at 3 is fan's id again */
        (void) seen(f, "can0", 8, 0xA4917069, 200);
        assert_display(f, &f->can0, 8, "pump");
        assert_display(f, &f->can0, 3, "fan");

        f->c.n_lines = 2;
        (void) seen(f, "can1", 3, 0x77777777, 100);
        assert_display(f, &f->can1, 3, "fan");          /* id names hold on every line */
        assert_display(f, &f->can1, 4, "can1/node4");
        (void) seen(f, "can1", 20, 0x00C0FFEE, 100);
        assert_display(f, &f->can1, 20, "tank");
        s = targets_canonical(&f->c, &f->can1, 0);
        assert_string_equal(s, "can1/legacy");
        free(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
#define T(x) cmocka_unit_test_setup_teardown(x, setup, teardown)
                T(test_forms_one_line),
                T(test_uid_name),
                T(test_uid_name_lines),
                T(test_group_is_not_one_node),
                T(test_group_members),
                T(test_group_errors),
                T(test_group_lines),
                T(test_display_name),
#undef T
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
