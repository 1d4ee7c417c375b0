/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The benchmarks' virtual bus. See bench-wire.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bench-wire.h"
#include "isp-node.h"
#include "session.h"
#include "sim-can-bits.h"

#define T0_NSEC (1 * NSEC_PER_SEC)

/* Frames on their way, FIFO, in time order (one latency per direction
 * keeps them so). */
struct timed_frame {
        struct isp_node_frame frame;
        uint64_t at;
};

struct frame_queue {
        struct timed_frame *items;
        size_t head, len, cap;
};

struct bench_wire {
        struct bench_wire_config cfg;
        SimFleet *fleet;
        uint64_t now, start;
        struct frame_queue in;          /* replies on their way to the host */
        struct frame_queue out;         /* the host's frames on their way to the bus */
        bool listening;                 /* false while the fleet powers up */
        struct bench_wire_stats stats;
        int error;                      /* -ENOMEM from a callback */
};

static int queue_push(struct frame_queue *q, const struct isp_node_frame *frame, uint64_t at) {
        if (q->head + q->len == q->cap) {
                if (q->head > 0) {
                        memmove(q->items, q->items + q->head, q->len * sizeof(*q->items));
                        q->head = 0;
                } else {
                        size_t cap = q->cap ? q->cap * 2 : 64;
                        struct timed_frame *items = realloc(q->items, cap * sizeof(*items));

                        if (!items)
                                return -ENOMEM;
                        q->items = items;
                        q->cap = cap;
                }
        }
        q->items[q->head + q->len++] = (struct timed_frame) { .frame = *frame, .at = at };
        return 0;
}

static uint64_t queue_next(const struct frame_queue *q) {
        return q->len > 0 ? q->items[q->head].at : SIM_NSEC_INFINITY;
}

static struct isp_node_frame queue_pop(struct frame_queue *q) {
        q->len--;
        return q->items[q->head++].frame;
}

struct isp_node_frame bench_frame_to_node(const struct isp_can_frame *f) {
        struct isp_node_frame n = { .id = f->id, .dlc = f->len };

        if (f->flags & ISP_FRAME_EXTENDED)
                n.id |= ISP_NODE_FRAME_EXTENDED;
        if (f->flags & ISP_FRAME_FLAG_RTR)
                n.id |= ISP_NODE_FRAME_RTR;
        memcpy(n.data, f->data, sizeof(n.data));
        return n;
}

struct isp_can_frame bench_frame_from_node(const struct isp_node_frame *n) {
        struct isp_can_frame f = {
                .id = (uint32_t) (n->id & ISP_NODE_FRAME_ID_MASK),
                .flags = (n->id & ISP_NODE_FRAME_EXTENDED) ? ISP_FRAME_EXTENDED : 0,
                .len = n->dlc,
        };

        memcpy(f.data, n->data, sizeof(f.data));
        return f;
}

static uint64_t node_frame_nsec(const struct bench_wire *w, const struct isp_node_frame *f) {
        return sim_can_bits_to_nsec(sim_can_frame_bits(f), w->cfg.timing.bitrate);
}

uint64_t bench_wire_frame_nsec(const struct bench_wire *w, const struct isp_can_frame *frame) {
        struct isp_node_frame n = bench_frame_to_node(frame);

        return node_frame_nsec(w, &n);
}

/* Fleet → host: a reply ended on the bus at the fleet's now. Only queued
 * here: the host must not be entered from inside the fleet. */
static void on_output(SimFleet *fleet, const struct isp_node_frame *frame, void *userdata) {
        struct bench_wire *w = userdata;
        int r;

        if (!w->listening)
                return;
        w->stats.replies++;
        w->stats.reply_bus_nsec += node_frame_nsec(w, frame);
        r = queue_push(&w->in, frame, sim_fleet_get_now(fleet) + w->cfg.latency_in);
        if (r < 0)
                w->error = r;
}

static const SimFleetCallbacks fleet_callbacks = {
        .output = on_output,
};

int bench_wire_new(struct bench_wire **ret, const struct bench_wire_config *cfg) {
        struct bench_wire *w;
        int r;

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->cfg = *cfg;
        r = sim_fleet_new(&w->fleet, &w->cfg.timing, cfg->rx_depth, cfg->seed, NULL, &fleet_callbacks, w);
        if (r < 0) {
                free(w);
                return r;
        }
        *ret = w;
        return 0;
}

struct bench_wire *bench_wire_free(struct bench_wire *w) {
        if (!w)
                return NULL;
        sim_fleet_free(w->fleet);
        free(w->in.items);
        free(w->out.items);
        free(w);
        return NULL;
}

SimFleet *bench_wire_get_fleet(struct bench_wire *w) {
        return w->fleet;
}

static void advance_all(SimFleet *fleet) {
        uint64_t t;

        while ((t = sim_fleet_next_event(fleet)) != SIM_NSEC_INFINITY)
                sim_fleet_advance(fleet, t);
}

uint64_t bench_wire_power_on(struct bench_wire *w, bool enter_isp) {
        size_t n = sim_fleet_get_n_nodes(w->fleet);
        bool any_application = false;

        /* The start-up ANNOUNCEs go out before anyone listens. */
        sim_fleet_start(w->fleet, T0_NSEC);
        advance_all(w->fleet);

        for (size_t i = 0; i < n; i++)
                if (isp_node_get_mode(sim_node_get_core(sim_fleet_get_node(w->fleet, i))) == ISP_NODE_MODE_APPLICATION)
                        any_application = true;
        if (enter_isp && any_application) {
                struct isp_request req = { .cmd = ISP_CMD_ENTER_ISP, .u.enter_isp.target = ISP_NODE_ALL };
                struct isp_can_frame f;
                struct isp_node_frame nf;

                if (isp_request_build(&req, &f) == 0) {
                        nf = bench_frame_to_node(&f);
                        sim_fleet_receive(w->fleet, &nf, sim_fleet_get_now(w->fleet));
                        advance_all(w->fleet);
                }
        }

        /* Start on a whole microsecond, the engine's clock unit. */
        w->start = (sim_fleet_get_now(w->fleet) / NSEC_PER_USEC + 1) * NSEC_PER_USEC;
        sim_fleet_advance(w->fleet, w->start);
        w->now = w->start;
        w->stats = (struct bench_wire_stats) {};
        w->listening = true;
        return w->start;
}

uint64_t bench_wire_get_now(const struct bench_wire *w) {
        return w->now;
}

uint64_t bench_wire_get_start(const struct bench_wire *w) {
        return w->start;
}

void bench_wire_get_stats(const struct bench_wire *w, struct bench_wire_stats *ret) {
        *ret = w->stats;
}

static void to_bus(struct bench_wire *w, const struct isp_node_frame *nf) {
        w->stats.requests++;
        w->stats.request_bus_nsec += node_frame_nsec(w, nf);
        sim_fleet_receive(w->fleet, nf, w->now);
}

int bench_wire_send(struct bench_wire *w, const struct isp_can_frame *frame) {
        struct isp_node_frame nf = bench_frame_to_node(frame);

        if (w->cfg.latency_out == 0) {
                to_bus(w, &nf);
                return 0;
        }
        return queue_push(&w->out, &nf, w->now + w->cfg.latency_out);
}

static uint64_t usec_to_nsec(uint64_t usec) {
        return usec == UINT64_MAX ? SIM_NSEC_INFINITY : usec * NSEC_PER_USEC;
}

static uint64_t min_u64(uint64_t a, uint64_t b) {
        return a < b ? a : b;
}

int bench_wire_run(struct bench_wire *w, const struct bench_host_ops *ops, void *host) {
        while (!ops->done(host) && w->error == 0) {
                uint64_t td = queue_next(&w->in);
                uint64_t to = queue_next(&w->out);
                uint64_t tf = sim_fleet_next_event(w->fleet);
                uint64_t ts = usec_to_nsec(ops->deadline(host));
                uint64_t t = min_u64(min_u64(td, to), min_u64(tf, ts));

                if (t == SIM_NSEC_INFINITY)
                        return -EDEADLK;
                if (t - w->start > BENCH_MAX_VIRTUAL_NSEC)
                        return -ETIME;
                w->now = t;
                sim_fleet_advance(w->fleet, t);
                if (t == td) {
                        struct isp_node_frame nf = queue_pop(&w->in);
                        struct isp_can_frame f = bench_frame_from_node(&nf);

                        ops->receive(host, &f, t / NSEC_PER_USEC);
                } else if (t == to) {
                        struct isp_node_frame nf = queue_pop(&w->out);

                        to_bus(w, &nf);
                } else if (t != tf)
                        ops->timeout(host, t / NSEC_PER_USEC);
        }
        return w->error;
}

void bench_wire_drain(struct bench_wire *w) {
        for (;;) {
                uint64_t to = queue_next(&w->out);
                uint64_t tf = sim_fleet_next_event(w->fleet);
                uint64_t t = min_u64(to, tf);

                if (t == SIM_NSEC_INFINITY || t - w->start > BENCH_MAX_VIRTUAL_NSEC)
                        break;
                w->now = t;
                sim_fleet_advance(w->fleet, t);
                if (t == to) {
                        struct isp_node_frame nf = queue_pop(&w->out);

                        to_bus(w, &nf);
                }
        }
        w->in.head = w->in.len = 0;
}

void bench_session_receive(void *host, const struct isp_can_frame *frame, uint64_t now_usec) {
        session_receive(host, frame, now_usec);
}

uint64_t bench_session_deadline(void *host) {
        return session_deadline(host);
}

void bench_session_timeout(void *host, uint64_t now_usec) {
        session_timeout(host, now_usec);
}

bool bench_session_done(void *host) {
        return session_get_state(host) != SESSION_RUNNING;
}

const struct bench_host_ops bench_session_host = {
        .receive = bench_session_receive,
        .deadline = bench_session_deadline,
        .timeout = bench_session_timeout,
        .done = bench_session_done,
};
