/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The benchmarks' virtual bus: one host (the protocol engine, or a host a
 * benchmark writes itself) and a simulated fleet (sim/sim-fleet.c) on one
 * virtual clock in nanoseconds. No socket, no wall clock: the same code
 * gives the same figures on any machine.
 *
 * The host's latency is modelled in each direction apart:
 *   latency_in   a reply's end on the bus → the host sees it;
 *   latency_out  the host sends → the frame is queued for the bus.
 * A host with both 0 is ideal: it sees a reply the moment it ends on the
 * bus and what it sends is queued at once.
 */

#include <stdbool.h>
#include <stdint.h>

#include "isp-frame.h"
#include "sim-fleet.h"

/* A run taking longer than this in virtual time is stuck. */
#define BENCH_MAX_VIRTUAL_NSEC (3600 * NSEC_PER_SEC)

struct bench_wire_config {
        SimTiming timing;               /* the nodes' times and the bitrate */
        uint8_t rx_depth;               /* the nodes' receive depth */
        uint64_t seed;                  /* the fleet's seed (the drop faults) */
        uint64_t latency_in;            /* ns */
        uint64_t latency_out;           /* ns */
};

/* What drives the protocol. `now_usec` is the wire's clock in µs, the
 * engine's unit. */
struct bench_host_ops {
        void (*receive)(void *host, const struct isp_can_frame *frame, uint64_t now_usec);
        uint64_t (*deadline)(void *host);               /* µs; UINT64_MAX: none */
        void (*timeout)(void *host, uint64_t now_usec);
        bool (*done)(void *host);
};

/* The engine as a host: `host` is a struct session *. */
void bench_session_receive(void *host, const struct isp_can_frame *frame, uint64_t now_usec);
uint64_t bench_session_deadline(void *host);
void bench_session_timeout(void *host, uint64_t now_usec);
bool bench_session_done(void *host);
extern const struct bench_host_ops bench_session_host;

/* Frames and bus time since bench_wire_power_on(), by direction. */
struct bench_wire_stats {
        uint64_t requests;              /* host frames queued for the bus */
        uint64_t replies;               /* reply frames ended on the bus */
        uint64_t request_bus_nsec;      /* their bit times, stuff bits included */
        uint64_t reply_bus_nsec;
};

struct bench_wire;

int bench_wire_new(struct bench_wire **ret, const struct bench_wire_config *cfg);
struct bench_wire *bench_wire_free(struct bench_wire *w);

/* Add nodes to it and load their flash before bench_wire_power_on(). */
SimFleet *bench_wire_get_fleet(struct bench_wire *w);

/* Power the fleet on and let the start-up traffic pass before the host
 * listens. With enter_isp, nodes that start their application (a valid
 * entry in flash) are first sent ENTER_ISP to all, as a host would, so
 * every node is in its ISP with its old application still in flash.
 * Returns the start time, on a whole µs (the engine's clock unit); the
 * statistics count from there. */
uint64_t bench_wire_power_on(struct bench_wire *w, bool enter_isp);

uint64_t bench_wire_get_now(const struct bench_wire *w);       /* ns */
uint64_t bench_wire_get_start(const struct bench_wire *w);     /* ns */
void bench_wire_get_stats(const struct bench_wire *w, struct bench_wire_stats *ret);
/* Bus time of one frame at the wire's bitrate. */
uint64_t bench_wire_frame_nsec(const struct bench_wire *w, const struct isp_can_frame *frame);

/* The host puts a frame on the bus at the wire's now (after latency_out).
 * Returns 0 or -ENOMEM. */
int bench_wire_send(struct bench_wire *w, const struct isp_can_frame *frame);

/* Run until ops->done(host): whichever comes first of a reply reaching the
 * host, a sent frame reaching the bus, the fleet's next event and the
 * host's deadline. Returns 0, -EDEADLK when nothing is left to happen,
 * -ETIME after BENCH_MAX_VIRTUAL_NSEC, or -ENOMEM. */
int bench_wire_run(struct bench_wire *w, const struct bench_host_ops *ops, void *host);

/* After the host is done: let what it sent still reach the bus and the
 * nodes, so that every frame is accounted for and the nodes settle.
 * Replies are no longer delivered. */
void bench_wire_drain(struct bench_wire *w);

/* Conversions between the engine's frames and the node core's. */
struct isp_node_frame bench_frame_to_node(const struct isp_can_frame *f);
struct isp_can_frame bench_frame_from_node(const struct isp_node_frame *n);

static inline unsigned bench_frame_cmd(uint32_t id) {
        return (id & ISP_ID_CMD_MASK) >> ISP_ID_CMD_SHIFT;
}
