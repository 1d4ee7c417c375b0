/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The owner: one per process. It holds the event loop, the bus
 * connection, the lines (one per CAN interface), the job store and the
 * node table, and decides which job runs where: each idle line takes the
 * first queued job that is for it (docs/architecture.md).
 */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "access.h"
#include "config.h"
#include "job-store.h"
#include "line.h"
#include "node-table.h"
#include "link-watch.h"
#include "targets.h"

typedef struct Manager Manager;

struct Manager {
        sd_event *event;
        sd_bus *bus;
        struct config config;
        Access access;

        Line **lines;                   /* in the order the configuration names them */
        unsigned n_lines;

        JobStore *store;
        NodeTable *nodes;
        sd_event_source *dispatch;      /* deferred: start what can start */
        sd_event_source *nodes_save;    /* deferred: write the node table */
        sd_event_source *line_status;   /* periodic: counters' change signals */
        struct link_watch *link_watch;  /* interfaces appearing and going (NULL: lines poll) */
};

/* Takes the configuration's allocations, also on failure. */
int manager_new(Manager **ret, const struct config *config);
Manager *manager_free(Manager *m);

/* Load the state, open the lines, connect to the bus, take the name, and
 * say READY=1 once it is ours. */
int manager_start(Manager *m);
int manager_run(Manager *m);

/* Target resolution and names (targets.h) over m's configuration, node
 * table and lines, borrowed: valid until one of them changes. */
struct targets_context manager_targets(Manager *m);
/* targets_resolve_target() over manager_targets(m). */
int manager_resolve_target(Manager *m, const char *target, struct target *ret, char **ret_why);

/* How messages and the API call a node: targets_display_name() and
 * targets_canonical(). */
char *manager_node_display_name(Manager *m, const Line *line, uint8_t node);
char *manager_node_canonical(Manager *m, const Line *line, uint8_t node);
Line *manager_find_line(Manager *m, const char *interface);
unsigned manager_line_queue_length(Manager *m, const Line *l);

/* The bus name is ours: READY=1, and jobs may start. */
void manager_ready(Manager *m);

/* Queue a job (takes it on success). It is on disk before this returns 0. */
int manager_enqueue(Manager *m, Job *j);
int manager_cancel_job(Manager *m, uint32_t id);
Job *manager_find_job(Manager *m, uint32_t id);
