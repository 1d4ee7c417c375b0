/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Targets: how the API names nodes, and what the strings a client sends
 * ("node3", "3", "can1/node3", "legacy", a name from [Nodes] given to an
 * id or to a board's UID, a group from [Groups], "all", "can1/all") name:
 * a line and a node id each. docs/dbus-api.md "Targets".
 *
 * No bus connection, no event loop: it reads the configuration, the node
 * table and the lines, borrowed for the call (struct targets_context), so
 * that the unit tests drive it with a table and lines of their own. What
 * a client did wrong is set in an sd_bus_error (which needs no bus) for
 * the bus glue to return as it is.
 */

#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#include "config.h"
#include "line.h"
#include "node-table.h"

/* What resolution reads; all borrowed. Of a line only its interface is
 * read. */
struct targets_context {
        const struct config *config;
        NodeTable *nodes;
        Line *const *lines;             /* in the configuration's order */
        unsigned n_lines;
};

/* A resolved target: the line and node id it names. */
struct target {
        Line *line;
        uint8_t node;                   /* 0 = legacy */
        char *canonical;                /* "node3", or "can1/node3" with several lines */
};
void target_done(struct target *t);

/* The nodes of one job, resolved, each with the target string that named
 * it and the group it came from (NULL: named on its own), for messages;
 * both borrowed, from the caller and from the configuration. */
struct node_set {
        struct target *v;
        const char **spec;
        const char **group;
        size_t n;
};
void node_set_done(struct node_set *ns);
/* Append t (takes its allocations, also on failure), named by spec. */
int node_set_add(struct node_set *ns, struct target *t, const char *spec);

/* What targets_resolve() accepts besides single nodes. */
enum {
        TARGETS_ALL    = 1 << 0,        /* "all", "IF/all": every known extended node */
        TARGETS_GROUPS = 1 << 1,        /* a group from [Groups]: its members */
};

/* Resolve "nodeN", "N", "legacy", a configured name, each optionally
 * prefixed by "IF/". A name bound to a UID is the node table's entry with
 * that UID seen last (on IF only, with "IF/"), whatever its id. Returns 0,
 * -ENOENT (no such node or line, a board not seen: `ret_why` says which),
 * -EADDRINUSE (a bare id several lines could mean: `ret_why` names the
 * candidates), -E2BIG (a group, which names several: `ret_why` says so),
 * -EINVAL or -ENOMEM. */
int targets_resolve_target(const struct targets_context *c, const char *target, struct target *ret, char **ret_why);

/* The same, with the error a client gets in `error`:
 * org.stcisp.ispd1.Error.AmbiguousNode, NodeNotFound (naming the forms a
 * target takes), or InvalidArgs for a group ("'pumps' is a group of 3
 * nodes: name one node"). Returns 0, or a negative errno with `error` set
 * (-ENOMEM without). */
int targets_resolve_one(const struct targets_context *c, const char *target, struct target *ret, sd_bus_error *error);

/* The nodes of a job: every spec as targets_resolve_one() takes it, with
 * TARGETS_ALL "all" and "IF/all" (every extended node the node table
 * knows there), with TARGETS_GROUPS a group's members in their order (a
 * member that does not resolve fails the call, its message after "Group
 * 'pumps': "). A node named twice, also through a group, and the legacy
 * node among others (it answers for every node, so it is only ever
 * flashed alone) are refused with InvalidArgs, and so is an empty list. Returns 0 or a negative
 * errno with `error` set (-ENOMEM without); `ret` holds what was resolved
 * either way: free it with node_set_done(). */
int targets_resolve(const struct targets_context *c, const char *const *specs, size_t n_specs, unsigned flags,
                    struct node_set *ret, sd_bus_error *error);

/* How the API calls a node: "node3", "can1/node3" with several lines,
 * "legacy", "can1/legacy". NULL when out of memory. */
char *targets_canonical(const struct targets_context *c, const Line *line, uint8_t node);
/* How messages and the Node's Name call it: the name bound to the UID of
 * the board there (if this is where the board was seen last), else the
 * name of its id, else the canonical one. NULL when out of memory. */
char *targets_display_name(const struct targets_context *c, const Line *line, uint8_t node);

/* The lines' interfaces, ", "-separated, for messages. NULL when out of
 * memory. */
char *targets_line_list(const struct targets_context *c);
