/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stcisp-dbus.h"
#include "targets.h"
#include "util.h"

static Line *find_line(const struct targets_context *c, const char *interface) {
        for (unsigned i = 0; i < c->n_lines; i++)
                if (strcmp(c->lines[i]->interface, interface) == 0)
                        return c->lines[i];
        return NULL;
}

/* The entry of the board with this UID on a configured line (`only`, or
 * any), seen last; its line in *ret_line. NULL if none. */
static NodeEntry *find_board(const struct targets_context *c, const Line *only, const uint8_t uid[static 4],
                             Line **ret_line) {
        NodeEntry *best = NULL;

        for (unsigned i = 0; c->nodes && i < c->n_lines; i++) {
                NodeEntry *e;

                if (only && c->lines[i] != only)
                        continue;
                e = node_table_find_uid(c->nodes, c->lines[i]->interface, uid);
                if (e && (!best || e->last_seen_usec > best->last_seen_usec)) {
                        best = e;
                        *ret_line = c->lines[i];
                }
        }
        return best;
}

/* ---- names ---- */

char *targets_canonical(const struct targets_context *c, const Line *line, uint8_t node) {
        char *s;
        int r;

        if (c->n_lines > 1)
                r = node == ISP_NODE_LEGACY ? asprintf(&s, "%s/legacy", line->interface)
                                            : asprintf(&s, "%s/node%u", line->interface, node);
        else
                r = node == ISP_NODE_LEGACY ? asprintf(&s, "legacy") : asprintf(&s, "node%u", node);
        return r < 0 ? NULL : s;
}

char *targets_display_name(const struct targets_context *c, const Line *line, uint8_t node) {
        NodeEntry *e = c->nodes ? node_table_find(c->nodes, line->interface, node) : NULL;
        const char *name;
        Line *l;

        /* A UID name only where the board is now: where targets_resolve_target()
         * finds it, not at an old entry it left behind. */
        if (e && e->known && !e->legacy && (name = config_uid_name(c->config, e->info.uid)) &&
            find_board(c, NULL, e->info.uid, &l) == e)
                return strdup(name);
        name = config_node_name(c->config, node);
        if (name)
                return strdup(name);
        return targets_canonical(c, line, node);
}

void target_done(struct target *t) {
        free(t->canonical);
        *t = (struct target) {};
}

/* "3", "node3", "legacy" or a configured name: the node id. */
static int resolve_id(const struct targets_context *c, const char *s) {
        const char *digits = s;
        unsigned long id;
        char *end;
        int r;

        if (strcmp(s, "legacy") == 0)
                return ISP_NODE_LEGACY;
        r = config_lookup_name(c->config, s);
        if (r >= 0)
                return r;
        if (strncmp(s, "node", 4) == 0)
                digits = s + 4;
        if (*digits < '0' || *digits > '9')
                return -ENOENT;
        errno = 0;
        id = strtoul(digits, &end, 10);
        if (errno != 0 || *end != '\0' || id < ISP_NODE_MIN || id > ISP_NODE_MAX)
                return -EINVAL;
        return (int) id;
}

/* Append to a ", "-separated list; *list NULL starts it. */
static int list_append(char **list, const char *a, const char *b) {
        char *t;

        if (asprintf(&t, "%s%s%s%s", strempty(*list), *list ? ", " : "", a, strempty(b)) < 0)
                return -ENOMEM;
        free(*list);
        *list = t;
        return 0;
}

char *targets_line_list(const struct targets_context *c) {
        char *s = NULL;

        for (unsigned i = 0; i < c->n_lines; i++)
                if (list_append(&s, c->lines[i]->interface, NULL) < 0)
                        return free(s), NULL;
        return s;
}

/* A name bound to a UID: the board's entry, wherever it was seen last
 * (on `line` if the target named one). */
static int resolve_uid(const struct targets_context *c, const char *target, const struct config_node_name *n,
                       Line *line, struct target *ret, char **ret_why) {
        Line *found = NULL;
        NodeEntry *e = find_board(c, line, n->uid, &found);

        if (!e) {
                if (ret_why && asprintf(ret_why, "'%s' (board %02X%02X%02X%02X) has not been seen on %s: run 'ispctl scan'",
                                        target, n->uid[0], n->uid[1], n->uid[2], n->uid[3],
                                        line ? line->interface : "any line") < 0)
                        *ret_why = NULL;
                return -ENOENT;
        }
        *ret = (struct target) { .line = found, .node = e->id };
        ret->canonical = targets_canonical(c, found, e->id);
        return ret->canonical ? 0 : -ENOMEM;
}

/* A bare id with several lines: the one line that knows it. */
static int resolve_line(const struct targets_context *c, const char *target, uint8_t id, Line **ret, char **ret_why) {
        _cleanup_free_ char *list = NULL, *suffix = NULL;
        Line *candidates[CONFIG_LINES_MAX];
        unsigned n = 0;

        if (c->n_lines == 1) {
                *ret = c->lines[0];
                return 0;
        }
        for (unsigned i = 0; i < c->n_lines; i++)
                if (node_table_find(c->nodes, c->lines[i]->interface, id))
                        candidates[n++] = c->lines[i];
        if (n == 1) {
                *ret = candidates[0];
                return 0;
        }
        if (asprintf(&suffix, "/%s", target) < 0)
                return -ENOMEM;
        for (unsigned i = 0; i < (n ? n : c->n_lines); i++)
                if (list_append(&list, (n ? candidates[i] : c->lines[i])->interface, suffix) < 0)
                        return -ENOMEM;
        if (ret_why && asprintf(ret_why, n ? "'%s' is on several lines: name one of %s"
                                           : "'%s' has not been seen on any line: name it as one of %s, or run 'ispctl scan'",
                                target, list) < 0)
                *ret_why = NULL;
        return n ? -EADDRINUSE : -ENOENT;
}

int targets_resolve_target(const struct targets_context *c, const char *target, struct target *ret, char **ret_why) {
        const char *slash = strchr(target, '/'), *node_part = target;
        const struct config_node_name *name;
        const struct config_group *group;
        Line *line = NULL;
        int id, r;

        if (slash) {
                _cleanup_free_ char *ifname = strndup(target, (size_t) (slash - target));

                if (!ifname)
                        return -ENOMEM;
                line = find_line(c, ifname);
                if (!line) {
                        _cleanup_free_ char *list = targets_line_list(c);

                        if (ret_why && asprintf(ret_why, "No line '%s': stcispd works on %s", ifname, strna(list)) < 0)
                                *ret_why = NULL;
                        return -ENOENT;
                }
                node_part = slash + 1;
        }
        name = config_find_name(c->config, node_part);
        if (name && name->by_uid)
                return resolve_uid(c, target, name, line, ret, ret_why);
        group = config_find_group(c->config, node_part);
        if (group) {
                if (ret_why && (slash ? asprintf(ret_why, "'%s': '%s' is a group, which is named without 'INTERFACE/'",
                                                 target, node_part)
                                      : asprintf(ret_why, "'%s' is a group of %u node%s: name one node", target,
                                                 group->n_members, group->n_members == 1 ? "" : "s")) < 0)
                        *ret_why = NULL;
                return slash ? -ENOENT : -E2BIG;
        }
        id = resolve_id(c, node_part);
        if (id < 0)
                return id;
        if (!line) {
                r = resolve_line(c, node_part, (uint8_t) id, &line, ret_why);
                if (r < 0)
                        return r;
        }
        *ret = (struct target) { .line = line, .node = (uint8_t) id };
        ret->canonical = targets_canonical(c, line, (uint8_t) id);
        return ret->canonical ? 0 : -ENOMEM;
}

/* ---- what the bus glue gets ---- */

int targets_resolve_one(const struct targets_context *c, const char *target, struct target *ret, sd_bus_error *error) {
        _cleanup_free_ char *why = NULL;
        int r = targets_resolve_target(c, target, ret, &why);

        if (r == -ENOMEM)
                return r;
        if (r == -EADDRINUSE)
                return sd_bus_error_setf(error, STCISP_ERROR_AMBIGUOUS_NODE, "%s", why ? why : target);
        if (r == -E2BIG)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "%s", why ? why : target);
        if (r < 0 && why)
                return sd_bus_error_setf(error, STCISP_ERROR_NODE_NOT_FOUND, "%s", why);
        if (r < 0)
                return sd_bus_error_setf(error, STCISP_ERROR_NODE_NOT_FOUND,
                                         "No node '%s': a target is nodeN or N (N = 1-254), 'legacy', or a name from [Nodes] in stcispd.conf%s",
                                         target, c->n_lines > 1 ? ", each optionally after 'INTERFACE/'" : "");
        return 0;
}

void node_set_done(struct node_set *ns) {
        for (size_t i = 0; i < ns->n; i++)
                target_done(&ns->v[i]);
        free(ns->v);
        free(ns->spec);
        free(ns->group);
        *ns = (struct node_set) {};
}

static int node_set_add_from(struct node_set *ns, struct target *t, const char *spec, const char *group) {
        struct target *v = realloc(ns->v, (ns->n + 1) * sizeof(*v));
        const char **sp = NULL, **g = NULL;

        if (v)
                ns->v = v;
        sp = v ? realloc(ns->spec, (ns->n + 1) * sizeof(*sp)) : NULL;
        if (sp)
                ns->spec = sp;
        g = sp ? realloc(ns->group, (ns->n + 1) * sizeof(*g)) : NULL;
        if (!g) {
                target_done(t);
                return -ENOMEM;
        }
        ns->group = g;
        ns->v[ns->n] = *t;
        ns->spec[ns->n] = spec;
        ns->group[ns->n++] = group;
        *t = (struct target) {};
        return 0;
}

int node_set_add(struct node_set *ns, struct target *t, const char *spec) {
        return node_set_add_from(ns, t, spec, NULL);
}

/* A group's members, each resolved as if named on its own; a member that
 * cannot be is the call's error, naming the group. */
static int add_group(const struct targets_context *c, const struct config_group *g, struct node_set *ns,
                     sd_bus_error *error) {
        int r;

        for (unsigned i = 0; i < g->n_members; i++) {
                _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
                struct target t = {};

                r = targets_resolve_one(c, g->members[i], &t, &e);
                if (r < 0) {
                        target_done(&t);
                        if (!sd_bus_error_is_set(&e))
                                return r;
                        return sd_bus_error_setf(error, e.name, "Group '%s': %s", g->name, e.message);
                }
                r = node_set_add_from(ns, &t, g->members[i], g->name);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* How messages call the i-th node of ns: "'node3'", or "'pump' (in group
 * 'pumps')". */
static char *node_label(const struct node_set *ns, size_t i) {
        char *s;

        if (ns->group[i])
                return asprintf(&s, "'%s' (in group '%s')", ns->spec[i], ns->group[i]) < 0 ? NULL : s;
        return asprintf(&s, "'%s'", ns->spec[i]) < 0 ? NULL : s;
}

/* "all" or "IF/all": NULL when spec is neither, else the line ("" for
 * every line). */
static const char *all_nodes_line(const char *spec, char buf[static 16]) {
        const char *slash = strchr(spec, '/');

        if (strcmp(spec, "all") == 0)
                return "";
        if (!slash || strcmp(slash + 1, "all") != 0 || (size_t) (slash - spec) >= 16)
                return NULL;
        memcpy(buf, spec, (size_t) (slash - spec));
        buf[slash - spec] = '\0';
        return buf;
}

/* Every extended node the node table has, on one line or on every line. */
static int add_all_nodes(const struct targets_context *c, const char *spec, const char *ifname, struct node_set *ns,
                         sd_bus_error *error) {
        size_t before = ns->n;
        int r;

        if (*ifname && !find_line(c, ifname)) {
                _cleanup_(target_done) struct target t = {};

                /* the resolver's message for an unknown line */
                return targets_resolve_one(c, spec, &t, error);
        }
        for (unsigned li = 0; li < c->n_lines; li++) {
                Line *l = c->lines[li];

                if (*ifname && strcmp(l->interface, ifname) != 0)
                        continue;
                for (size_t i = 0; i < c->nodes->n_entries; i++) {
                        const NodeEntry *e = c->nodes->entries[i];
                        struct target t = { .line = l, .node = e->id };

                        if (strcmp(e->interface, l->interface) != 0 || !e->known || e->legacy)
                                continue;
                        t.canonical = targets_canonical(c, l, e->id);
                        if (!t.canonical)
                                return -ENOMEM;
                        r = node_set_add(ns, &t, spec);
                        if (r < 0)
                                return r;
                }
        }
        if (ns->n == before)
                return sd_bus_error_setf(error, STCISP_ERROR_NODE_NOT_FOUND,
                                         "'%s': stcispd knows no extended node%s%s: 'ispctl scan' looks for them",
                                         spec, *ifname ? " on " : "", ifname);
        return 0;
}

int targets_resolve(const struct targets_context *c, const char *const *specs, size_t n_specs, unsigned flags,
                    struct node_set *ret, sd_bus_error *error) {
        int r;

        if (n_specs == 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "No target given: name nodes (node3, 3, can1/node3, a configured name) or 'all'");
        for (size_t i = 0; i < n_specs; i++) {
                const struct config_group *g = flags & TARGETS_GROUPS ? config_find_group(c->config, specs[i]) : NULL;
                struct target t = {};
                const char *all_line;
                char buf[16];

                if (g) {
                        r = add_group(c, g, ret, error);
                        if (r < 0)
                                return r;
                        continue;
                }
                all_line = flags & TARGETS_ALL ? all_nodes_line(specs[i], buf) : NULL;
                if (all_line) {
                        r = add_all_nodes(c, specs[i], all_line, ret, error);
                        if (r < 0)
                                return r;
                        continue;
                }
                r = targets_resolve_one(c, specs[i], &t, error);
                if (r < 0) {
                        target_done(&t);
                        return r;
                }
                r = node_set_add(ret, &t, specs[i]);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < ret->n; i++) {
                if (ret->v[i].node == ISP_NODE_LEGACY && ret->n > 1)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "'%s' is the legacy node, which answers for every node on its line: "
                                                 "it cannot be in a job with other nodes; flash it on its own", ret->spec[i]);
                for (size_t k = 0; k < i; k++) {
                        _cleanup_free_ char *first = NULL, *second = NULL;

                        if (ret->v[k].line != ret->v[i].line || ret->v[k].node != ret->v[i].node)
                                continue;
                        if (strcmp(ret->spec[k], ret->spec[i]) == 0 && ret->group[k] == ret->group[i])
                                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                         "'%s' is given twice: name each node once",
                                                         ret->group[i] ?: ret->spec[i]);
                        first = node_label(ret, k);
                        second = node_label(ret, i);
                        if (!first || !second)
                                return -ENOMEM;
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "%s and %s both name %s: name each node once",
                                                 first, second, ret->v[i].canonical);
                }
        }
        return 0;
}
