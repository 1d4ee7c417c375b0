/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The simulated fleet: node cores on one modelled CAN bus, with no I/O.
 *
 * Time is a plain nanosecond count passed in by the caller (the simulator
 * passes CLOCK_MONOTONIC; tests pass whatever they like). The caller feeds
 * the host's requests in with sim_fleet_receive(), lets time pass with
 * sim_fleet_advance(), and asks sim_fleet_next_event() when it must call
 * again. Replies come out through the output callback at the time the
 * model says they finish on the bus.
 *
 * The model: one shared bus on which every frame (the host's requests and
 * the nodes' replies) occupies sim_can_frame_bits() bit times; frames
 * waiting for the bus go out in CAN arbitration order (lowest ID first
 * among the transmitters' queue heads, each transmitter in FIFO order); a
 * node takes a request from its receive buffer when it is idle, is busy
 * for the handling time plus the flash work it did (erase per sector,
 * program per byte, CRC per byte), and queues its reply at the end of
 * that; a request that finds the receive buffer full is lost.
 *
 * A node whose core runs its application (ISP_NODE_MODE_APPLICATION) runs
 * the application helper (sim/node/isp-app.h) instead: the frames go to
 * it, its image CRC is done `app_crc` after the application started, and
 * its ENTER_ISP sets the core's DfuFlag and soft-resets it into ISP.
 */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "isp-app.h"
#include "isp-node.h"
#include "sim-util.h"

#define SIM_NSEC_INFINITY UINT64_MAX

/* boot-fail: how long an application that does not come up takes before
 * the node is back in its ISP (a watchdog's time-out, say). */
#define SIM_BOOT_FAIL_DELAY (50 * NSEC_PER_MSEC)

typedef struct SimTiming {
        uint32_t bitrate;        /* bit/s; 0: no timing model at all */
        uint64_t erase_sector;   /* ns per 512-byte sector erased */
        uint64_t program_byte;   /* ns per byte programmed */
        uint64_t crc_byte;       /* ns per byte CRC'd */
        uint64_t handle_frame;   /* ns to take any request frame in */
        uint64_t writeback_delay; /* ns after the last flash change before write-back */
        uint64_t app_crc;        /* ns from an application's start until its helper's image CRC is done */
} SimTiming;

typedef struct SimFault {
        uint32_t drop_every;     /* lose every Nth received frame; 0: off */
        double drop_rate;        /* lose this fraction of received frames at random */
        uint32_t power_cut_after; /* power cut after taking N frames in; 0: off */
        uint64_t restart_delay;  /* ns from a power cut to power-up ... */
        bool restart_delay_set;  /* ... if set; else power returns at once */
        bool dead;               /* never answers, never announces */
        bool duplicate;          /* a second node with the same id */
        bool application;        /* runs its application at start */
        bool no_helper;          /* its application has no helper: answers nothing */
        bool boot_fail;          /* an application the ISP starts resets back into the ISP */
        uint32_t app_version;    /* the helper's application version (ABOUT) */
        uint8_t rx_depth;        /* 0: the fleet's default */
        bool no_echo;            /* firmware from before ECHO: CRC and ERASE replies without the offset */
} SimFault;

typedef struct SimFleet SimFleet;
typedef struct SimNode SimNode;

typedef struct SimFleetCallbacks {
        /* A reply has finished on the bus: put it on the real one. */
        void (*output)(SimFleet *fleet, const struct isp_node_frame *frame, void *userdata);
        /* The node's flash should be written back now. Returns 0 or a negative errno. */
        int (*writeback)(SimFleet *fleet, SimNode *node, void *userdata);
} SimFleetCallbacks;

/* log: where the per-command lines go, NULL for none. */
int sim_fleet_new(SimFleet **ret, const SimTiming *timing, uint8_t rx_depth, uint64_t seed,
                  FILE *log, const SimFleetCallbacks *callbacks, void *userdata);
SimFleet *sim_fleet_free(SimFleet *fleet);

static inline void sim_fleet_freep(SimFleet **f) {
        if (*f)
                sim_fleet_free(*f);
}

/* Add node id (0: legacy) with its faults; a fault with duplicate set
 * adds two nodes (the second keeps only rx_depth, application and
 * app_version). Nodes start with erased flash (ISP area patterned) and
 * powered off; load their flash, then sim_fleet_start(). */
int sim_fleet_add_node(SimFleet *fleet, uint8_t id, const SimFault *fault);

size_t sim_fleet_get_n_nodes(SimFleet *fleet);
SimNode *sim_fleet_get_node(SimFleet *fleet, size_t i);
/* The first node with that id (NULL if none). */
SimNode *sim_fleet_find_node(SimFleet *fleet, uint8_t id);

/* Power every node on at time now (a node with the application fault
 * starts in its application instead, a dead one stays silent). */
void sim_fleet_start(SimFleet *fleet, uint64_t now);

/* Run the model up to and including time now. */
void sim_fleet_advance(SimFleet *fleet, uint64_t now);

/* A frame the host put on the bus at time now (advances to now). Frames
 * that are not ISP requests (standard IDs, RTR, other prefixes) are
 * ignored. */
void sim_fleet_receive(SimFleet *fleet, const struct isp_node_frame *frame, uint64_t now);

/* The model's time: where the last advance left it; during a callback,
 * the time of the event. */
uint64_t sim_fleet_get_now(SimFleet *fleet);

/* When the model next has something to do, or SIM_NSEC_INFINITY. */
uint64_t sim_fleet_next_event(SimFleet *fleet);

/* Write every node's flash back through the callback, dirty or not.
 * Returns the first error. */
int sim_fleet_writeback_all(SimFleet *fleet);

typedef struct SimFleetStats {
        uint64_t requests;       /* request frames put on the bus */
        uint64_t replies;        /* reply frames put on the bus */
        uint64_t merged;         /* identical replies sent at once by nodes sharing an id */
        uint64_t busy_nsec;      /* bus time used */
        uint64_t lost_overrun;   /* requests lost to full receive buffers */
        uint64_t lost_dropped;   /* requests dropped by drop faults */
} SimFleetStats;

void sim_fleet_get_stats(SimFleet *fleet, SimFleetStats *ret);

const char *sim_node_get_label(SimNode *node);   /* "node3", "node3-dup" */
uint8_t sim_node_get_id(SimNode *node);
uint8_t *sim_node_get_flash(SimNode *node);      /* ISP_NODE_FLASH_SIZE bytes */
struct isp_node *sim_node_get_core(SimNode *node);
/* The node's application helper while it runs one, else NULL. */
const struct isp_app *sim_node_get_app(SimNode *node);
bool sim_node_is_powered(SimNode *node);
const SimFault *sim_node_get_fault(SimNode *node);
