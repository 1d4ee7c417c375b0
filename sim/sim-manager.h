/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <systemd/sd-event.h>

#include "sim-fleet.h"
#include "sim-options.h"

/* The simulator process: the event loop, the CAN socket and the fleet. */
typedef struct Manager {
        const SimConfig *config;

        sd_event *event;
        sd_event_source *io_source;
        sd_event_source *timer_source;

        int fd;
        SimFleet *fleet;

        /* replies the socket did not take yet (ENOBUFS/EAGAIN): sent in
         * order once it signals POLLOUT, never dropped */
        struct isp_node_frame *out;
        size_t out_head, out_len, out_cap;
} Manager;

/* Set up the loop, its signal sources and the fleet. Returns 0 or a
 * negative errno after logging why. */
int manager_new(Manager **ret, const SimConfig *config);
Manager *manager_free(Manager *m);

static inline void manager_freep(Manager **m) {
        if (*m)
                manager_free(*m);
}

/* Open and bind the CAN socket (takes no fd: opens its own). */
int manager_open_can(Manager *m);

/* Load the nodes' flash files, creating missing ones (erased, ISP area
 * patterned). Returns 0 or a negative errno after logging why. */
int manager_load_flash(Manager *m);

/* Print the ready line, power the nodes on and run until SIGINT/SIGTERM;
 * then write every flash file back. Returns 0 or a negative errno. */
int manager_run(Manager *m);
