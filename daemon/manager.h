/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "can-link.h"
#include "config.h"
#include "job-store.h"
#include "job.h"
#include "session.h"

/* Starts of a job the daemon was stopped or crashed in before it fails. */
#define MANAGER_MAX_ATTEMPTS 3

enum node_state {
        NODE_UNKNOWN,           /* never seen */
        NODE_ISP,               /* answered CONNECT/DISCOVER or announced itself */
        NODE_APPLICATION,       /* rebooted into its application by us */
        NODE_NOT_ANSWERING,     /* known, but did not answer the last scan or job */
        _NODE_STATE_MAX,
};

typedef struct Manager Manager;

typedef struct Node {
        Manager *manager;
        bool known;
        uint8_t id;             /* 0 = legacy */
        bool legacy;
        enum node_state state;
        struct isp_info info;
        uint64_t last_seen_usec;        /* CLOCK_REALTIME */
        char *last_flash_result;        /* "succeeded", "failed: ...", NULL */
        uint64_t last_flash_usec;
} Node;

struct Manager {
        sd_event *event;
        sd_bus *bus;
        struct can_link *link;
        struct config config;
        /* Queued and running jobs in queue order; one runs at a time,
         * because the node selection model allows one session on a bus. */
        JobStore *store;

        Job *current;
        struct session *session;
        sd_event_source *session_timer;
        sd_event_source *dispatch;      /* deferred: start the next job */
        sd_event_source *progress_timer;

        Node nodes[256];
        bool scan_seen[256];    /* nodes that answered the running scan */
};

int manager_new(Manager **ret, const struct config *config);
Manager *manager_free(Manager *m);

/* Open the CAN link, load the queue from disk, connect to the bus, take
 * the name, and say READY=1 once it is ours. */
int manager_start(Manager *m);
int manager_run(Manager *m);

/* Resolve "nodeN", "N", a configured name or "legacy". Returns the node id
 * (0 = legacy) or -ENOENT / -EINVAL. ret_canonical gets "node3"/"legacy". */
int manager_resolve_target(Manager *m, const char *target, char **ret_canonical);
const char *manager_node_display_name(Manager *m, uint8_t node, char buf[static 16]);

/* Queue a job (takes it). It is persisted before this returns 0. */
int manager_enqueue(Manager *m, Job *j);
int manager_cancel_job(Manager *m, uint32_t id);
Job *manager_find_job(Manager *m, uint32_t id);

const char *node_state_to_string(enum node_state s);

/* From bus.c: the D-Bus glue. */
int manager_connect_bus(Manager *m);
void manager_emit_job_new(Manager *m, Job *j);
void manager_emit_job_removed(Manager *m, Job *j);
void manager_emit_job_changed(Manager *m, Job *j, const char *property, ...);
void manager_emit_node_changed(Manager *m, uint8_t node);
