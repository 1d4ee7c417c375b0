/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Fuzz target for the configuration parser (daemon/config.c, with
 * Debian's libinih), the code stcispd runs on /etc/stcispd/stcispd.conf.
 *
 * The input is the text of a configuration file, read through a memfd
 * by the real config_load(), over the defaults and then a second time
 * over what the first load left. Whatever the text:
 *
 *   - config_load() returns 0 or -EINVAL (an unreadable file is not
 *     possible here), and a refused file changes nothing: the
 *     configuration is the one it was loaded over, field by field;
 *   - an accepted one holds what config.h promises: every name found by
 *     config_find_name(), a name bound to an id is that id's name and
 *     looks up to it, no two names for one id or one UID, every group
 *     found with 1 or more members, the session values in their ranges,
 *     one line per interface;
 *   - nothing leaks (LeakSanitizer) and nothing is read out of bounds.
 *
 * The parser's messages go to stderr at log level 3 (errors); set
 * FUZZ_VERBOSE=1 to see them, they are silenced otherwise for speed.
 */

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"
#include "log.h"

#define INPUT_MAX (64 * 1024)

static bool str_eq(const char *a, const char *b) {
        return a == b || (a && b && strcmp(a, b) == 0);
}

/* What a refused load must leave as it was. */
static bool config_equal(const struct config *a, const struct config *b) {
        if (!str_eq(a->interface, b->interface) || a->bitrate != b->bitrate || a->restart_ms != b->restart_ms ||
            !str_eq(a->flash_group, b->flash_group) || !str_eq(a->flash_group_where, b->flash_group_where) ||
            !str_eq(a->state_dir, b->state_dir) || a->history != b->history ||
            a->max_attempts != b->max_attempts || a->n_names != b->n_names || a->n_groups != b->n_groups ||
            a->n_overrides != b->n_overrides)
                return false;
        if (memcmp(&a->session, &b->session, sizeof(a->session)) != 0)
                return false;
        for (unsigned i = 0; i < a->n_names; i++)
                if (!str_eq(a->names[i].name, b->names[i].name) || a->names[i].node != b->names[i].node ||
                    a->names[i].by_uid != b->names[i].by_uid ||
                    (a->names[i].by_uid && memcmp(a->names[i].uid, b->names[i].uid, 4) != 0))
                        return false;
        for (unsigned i = 0; i < a->n_groups; i++) {
                if (!str_eq(a->groups[i].name, b->groups[i].name) ||
                    a->groups[i].n_members != b->groups[i].n_members)
                        return false;
                for (unsigned k = 0; k < a->groups[i].n_members; k++)
                        if (!str_eq(a->groups[i].members[k], b->groups[i].members[k]))
                                return false;
        }
        for (unsigned i = 0; i < a->n_overrides; i++)
                if (!str_eq(a->overrides[i].interface, b->overrides[i].interface) ||
                    a->overrides[i].has_bitrate != b->overrides[i].has_bitrate ||
                    a->overrides[i].has_restart_ms != b->overrides[i].has_restart_ms ||
                    a->overrides[i].bitrate != b->overrides[i].bitrate ||
                    a->overrides[i].restart_ms != b->overrides[i].restart_ms)
                        return false;
        return true;
}

static void check_accepted(const struct config *c) {
        struct config_line *lines = NULL;
        unsigned n_lines = 0, n_words = 1;
        int r;

        fuzz_check(c->interface && c->interface[0], "accepted configuration without an interface");
        fuzz_check(c->flash_group && c->state_dir, "accepted configuration lost a string");
        for (const char *p = c->interface; *p; p++)
                n_words += *p == ' ';
        fuzz_check(c->session.timeout_ms >= 10 && c->session.timeout_ms <= 60000,
                   "Timeout= %u ms accepted", (unsigned) c->session.timeout_ms);
        fuzz_check(c->session.window >= 1 && c->session.window <= 64, "Window= %u accepted", c->session.window);
        fuzz_check(c->session.retries <= 20, "Retries= %u accepted", c->session.retries);
        fuzz_check(c->max_attempts >= 1 && c->max_attempts <= 1000, "MaxAttempts= %u accepted", c->max_attempts);
        fuzz_check(c->history <= 100000, "History= %u accepted", c->history);

        for (unsigned i = 0; i < c->n_names; i++) {
                const struct config_node_name *n = &c->names[i];

                fuzz_check(n->name && n->name[0], "name %u is empty", i);
                fuzz_check(config_find_name(c, n->name) == n, "name %s does not find its own entry", n->name);
                if (n->by_uid) {
                        fuzz_check(str_eq(config_uid_name(c, n->uid), n->name),
                                   "uid name %s is not its UID's name", n->name);
                        fuzz_check(config_lookup_name(c, n->name) == -ENOENT, "uid name %s looks up to an id", n->name);
                } else {
                        fuzz_check(n->node <= 254, "name %s for node %u", n->name, n->node);
                        fuzz_check(config_lookup_name(c, n->name) == n->node, "name %s does not look up to node %u",
                                   n->name, n->node);
                        fuzz_check(str_eq(config_node_name(c, n->node), n->name),
                                   "node %u has another name than %s", n->node, n->name);
                }
                fuzz_check(!config_find_group(c, n->name), "%s is a node name and a group", n->name);
        }
        for (unsigned i = 0; i < c->n_groups; i++) {
                const struct config_group *g = &c->groups[i];

                fuzz_check(g->name && config_find_group(c, g->name) == g, "group %u does not find itself", i);
                fuzz_check(g->n_members >= 1, "group %s has no members", g->name);
                for (unsigned k = 0; k < g->n_members; k++)
                        fuzz_check(g->members[k] && g->members[k][0], "group %s: member %u is empty", g->name, k);
        }

        r = config_get_lines(c, &lines, &n_lines);
        fuzz_check(r == 0, "config_get_lines() failed: %d", r);
        fuzz_check(n_lines == n_words && n_lines <= CONFIG_LINES_MAX, "%u lines for interfaces \"%s\"",
                   n_lines, c->interface);
        for (unsigned i = 0; i < n_lines; i++)
                fuzz_check(lines[i].interface && lines[i].interface[0], "line %u has no interface", i);
        config_lines_free(lines, n_lines);
}

/* Load `path` over `c`; a refusal must leave `c` as it was. */
static int load_checked(struct config *c, struct config *before, const char *path) {
        int r;

        r = config_load(c, path, /* must_exist= */ true);
        fuzz_check(r == 0 || r == -EINVAL, "config_load() returned %d (%s)", r, strerror(r < 0 ? -r : r));
        if (r < 0)
                fuzz_check(config_equal(c, before), "a refused file changed the configuration");
        else
                check_accepted(c);
        return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static bool verbose, initialized;
        struct config c, before;
        char path[64];
        int fd, r, k;

        if (!initialized) {
                verbose = getenv("FUZZ_VERBOSE") != NULL;
                initialized = true;
        }
        log_max_level = verbose ? 7 : -1;

        if (size > INPUT_MAX)
                return 0;

        fd = memfd_create("stcispd.conf", MFD_CLOEXEC);
        fuzz_check(fd >= 0, "memfd_create: %s", strerror(errno));
        fuzz_check(write(fd, data, size) == (ssize_t) size, "write: %s", strerror(errno));
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);

        /* Over the defaults. config_load() works on a copy and swaps it in
         * only on success, so a shallow copy is what to compare a refusal
         * with. */
        fuzz_check(config_init(&c) == 0, "config_init() failed");
        before = c;
        r = load_checked(&c, &before, path);

        /* Again over what it left, as a second file in a row. Names and
         * groups are then given twice, which is refused; without them the
         * text must load again to the same configuration as a fresh load. */
        before = c;
        k = load_checked(&c, &before, path);
        if (r == 0 && c.n_names == 0 && c.n_groups == 0) {
                struct config fresh, fresh_before;

                fuzz_check(k == 0, "the file loads over the defaults but not over itself");
                fuzz_check(config_init(&fresh) == 0, "config_init() failed");
                fresh_before = fresh;
                fuzz_check(load_checked(&fresh, &fresh_before, path) == 0, "the file loads once, then not");
                fuzz_check(config_equal(&c, &fresh), "loading the file twice differs from loading it once");
                config_done(&fresh);
        }

        config_done(&c);
        close(fd);
        return 0;
}
