/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fleet: how close a flash comes to what the bus and the nodes allow, case
 * by case, against goals (issue 9). The real protocol engine
 * (daemon/session.c) flashes nodes of the simulator's timing model
 * (sim/sim-fleet.c) in virtual time, through the virtual bus the
 * benchmarks share (bench-wire.h); so does a seed-style host written here,
 * for comparison.
 *
 * Each case has a floor, worked out from the image and the node's times
 * alone (docs/performance.md):
 *   B = the bus time of the image's PROGRAM frames, as the engine's plan
 *       cuts them (plan.c), exact bit counts with stuff bits
 *       (sim-can-bits.h);
 *   F = B + erase time x the image's sectors + CRC time x 126976 (the
 *       124 KiB application area).
 * A row prints its floor, the ratio to it, its goal and whether it is met;
 * a goal that is missed says why. Every run is checked first: the flash
 * succeeded on every node and every node holds exactly the image, entry
 * included. A broken run fails the program and prints no table.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-image.h"
#include "bench-util.h"
#include "bench-wire.h"
#include "isp-frame.h"
#include "isp-image.h"
#include "isp-node.h"
#include "plan.h"
#include "session.h"
#include "sim-can-bits.h"
#include "sim-fleet.h"
#include "sim-options.h"

#define FIRST_NODE 1
#define MAX_NODES 64
#define APP_AREA_BYTES 126976u
#define ENTRY_SECTOR (ISP_ENTRY_OFFSET / ISP_SECTOR_SIZE)
/* The 1-sector change: FF:8000, in the middle of the upper bank. */
#define PATCH_SECTOR (0x18000 / ISP_SECTOR_SIZE)
#define MULTICAST_KIB 60
#define UPDATE_KIB 60
#define LOSS_KIB 56
#define SEED_KIB 56
/* The seed-style host's time-outs and tries. */
#define SEED_TIMEOUT_USEC 500000u
#define SEED_ERASE_USEC_PER_SECTOR 50000u
#define SEED_TRIES 4

enum case_kind {
        CASE_FULL,
        CASE_LATENCY,
        CASE_LOSS,
        CASE_MULTICAST,
        CASE_UPDATE,
        CASE_SEED,
        _CASE_MAX,
};

static const char *const case_names[_CASE_MAX] = {
        [CASE_FULL] = "full",
        [CASE_LATENCY] = "latency",
        [CASE_LOSS] = "loss",
        [CASE_MULTICAST] = "multicast",
        [CASE_UPDATE] = "update",
        [CASE_SEED] = "seed",
};

/* ------------------------------------------------------------------------ */
/* Options */

struct options {
        bool json;
        bool cases[_CASE_MAX];
        unsigned bitrates[BENCH_MAX_LIST], n_bitrates;
        unsigned sizes[BENCH_MAX_LIST], n_sizes;        /* KiB, the full and latency rows */
        unsigned nodes[BENCH_MAX_LIST], n_nodes;        /* the multicast rows */
        double losses[BENCH_MAX_LIST];
        unsigned n_losses;
        SimTiming timing;                               /* the nodes' times; bitrate per row */
        uint64_t host_latency;                          /* ns, each way, in the latency rows */
        unsigned depth;
        unsigned window;                                /* 0: the engine's default */
        uint64_t seed;
};

/* ------------------------------------------------------------------------ */
/* Images: generated once, each with the different one the nodes hold */

struct image {
        char label[32];
        enum bench_content content;
        unsigned kib;
        bool patched;                   /* the 1-sector change of `old` */
        struct isp_image *img;          /* what is flashed */
        struct isp_image *old;          /* what the nodes hold before */
};

struct images {
        struct image items[32];
        size_t n;
};

static uint64_t image_seed(enum bench_content content, unsigned kib) {
        return UINT64_C(0x5EED0000) + (uint64_t) kib * 4 + (uint64_t) content;
}

static int get_image(struct images *set, enum bench_content content, unsigned kib, bool patched,
                     const struct image **ret) {
        struct image *im;
        uint64_t seed = image_seed(content, kib);
        int r;

        for (size_t i = 0; i < set->n; i++)
                if (set->items[i].content == content && set->items[i].kib == kib && set->items[i].patched == patched) {
                        *ret = &set->items[i];
                        return 0;
                }
        if (set->n >= ELEMENTSOF(set->items))
                return -E2BIG;
        im = &set->items[set->n];
        *im = (struct image) { .content = content, .kib = kib, .patched = patched };
        snprintf(im->label, sizeof(im->label), "%s-%uk%s", bench_content_to_string(content), kib, patched ? "'" : "");
        if (patched) {
                /* the nodes hold A; A' differs from it in one sector */
                r = bench_image_generate(content, kib, seed, -1, 0, &im->old);
                if (r >= 0)
                        r = bench_image_generate(content, kib, seed, PATCH_SECTOR, seed ^ 0xA5A5, &im->img);
        } else {
                /* the nodes hold another build of the same size and layout */
                r = bench_image_generate(content, kib, seed, -1, 0, &im->img);
                if (r >= 0)
                        r = bench_image_generate(content, kib, ~seed, -1, 0, &im->old);
        }
        if (r < 0) {
                free(im->img);
                free(im->old);
                return r;
        }
        set->n++;
        *ret = im;
        return 0;
}

static void images_free(struct images *set) {
        for (size_t i = 0; i < set->n; i++) {
                free(set->items[i].img);
                free(set->items[i].old);
        }
}

/* ------------------------------------------------------------------------ */
/* Floors */

struct floors {
        uint64_t program_frames;        /* the plan's PROGRAM frames counted */
        uint64_t program_bytes;         /* their payload */
        uint64_t stuff_bits;            /* the stuff bits among program_bits */
        uint64_t program_bits;          /* their exact bits on the bus: 64 + 8N + 3 (IFS) + stuff bits each */
        uint64_t program_nsec;          /* B */
        unsigned erase_sectors;
        uint64_t erase_nsec;
        uint64_t crc_nsec;
        uint64_t total_nsec;            /* F */
};

static bool chunk_in(const struct plan_chunk *c, const struct plan_sectors *only) {
        return !only || plan_sectors_test(only, c->offset / ISP_SECTOR_SIZE) ||
                plan_sectors_test(only, (c->offset + c->len - 1) / ISP_SECTOR_SIZE);
}

/* The floors of flashing `img` where `only` (NULL: every sector) must be
 * written and `erase` sectors erased (0: the image's). */
static int compute_floors(const struct isp_image *img, const struct plan_sectors *only, unsigned erase,
                          uint32_t bitrate, const SimTiming *timing, struct floors *ret) {
        struct plan p;
        int r;

        r = plan_init(&p, img);
        if (r < 0)
                return r;
        *ret = (struct floors) {};
        for (unsigned i = 0; i < p.n_chunks; i++) {
                const struct plan_chunk *c = &p.chunks[i];
                struct isp_node_frame f = {
                        .id = ISP_NODE_FRAME_EXTENDED | isp_request_id(ISP_CMD_PROGRAM, c->offset),
                        .dlc = c->len,
                };

                if (!chunk_in(c, only))
                        continue;
                memcpy(f.data, img->flash + c->offset, c->len);
                ret->program_frames++;
                ret->program_bytes += c->len;
                ret->stuff_bits += sim_can_stuff_bits(&f);
                ret->program_bits += sim_can_frame_bits(&f);
        }
        if (erase == 0)
                for (unsigned sec = 0; sec < ISP_SECTORS; sec++)
                        erase += plan_sectors_test(&p.image_sectors, sec);
        plan_done(&p);

        ret->program_nsec = (ret->program_bits * NSEC_PER_SEC + bitrate - 1) / bitrate;
        ret->erase_sectors = erase;
        ret->erase_nsec = erase * timing->erase_sector;
        ret->crc_nsec = APP_AREA_BYTES * timing->crc_byte;
        ret->total_nsec = ret->program_nsec + ret->erase_nsec + ret->crc_nsec;
        return 0;
}

/* The sectors a differential update from `old` to `img` must write: those
 * whose bytes differ, and the entry sector, which is always rewritten. */
static void changed_sectors(const struct isp_image *old, const struct isp_image *img, struct plan_sectors *ret,
                            unsigned *ret_count) {
        *ret = (struct plan_sectors) {};
        *ret_count = 0;
        for (unsigned sec = 0; sec < ISP_SECTORS; sec++) {
                bool differ = sec == ENTRY_SECTOR;

                if (plan_is_isp_sector(sec))
                        continue;
                for (uint32_t o = sec * ISP_SECTOR_SIZE; !differ && o < (sec + 1) * ISP_SECTOR_SIZE; o++)
                        differ = isp_image_node_byte(old, o) != isp_image_node_byte(img, o);
                if (differ) {
                        plan_sectors_add(ret, sec);
                        (*ret_count)++;
                }
        }
}

/* ------------------------------------------------------------------------ */
/* Rows */

struct node_figures {
        uint8_t id;
        enum session_phase phase;
        uint64_t since;
        uint64_t phase_nsec[_SESSION_PHASE_MAX];
        struct session_target_result result;    /* name and error not kept */
};

struct outcome {
        uint64_t total_nsec;
        uint64_t program_nsec;                  /* the slowest node's time in the program phase */
        uint64_t phase_nsec[_SESSION_PHASE_MAX];        /* the first node's */
        uint64_t request_bus_nsec[_SESSION_PHASE_MAX];  /* bus time by the first node's phase */
        uint64_t reply_bus_nsec[_SESSION_PHASE_MAX];
        uint64_t program_frames_nsec;           /* bus time of every PROGRAM frame sent, resends included */
        struct session_stats session;
        struct bench_wire_stats wire;
        SimFleetStats fleet;
        struct node_figures nodes[MAX_NODES];
        unsigned n_nodes;
};

struct row {
        enum case_kind kind;
        const struct image *image;
        uint32_t bitrate;
        unsigned n_nodes;
        uint64_t latency;                       /* each way */
        double loss;
        bool seed_host;                         /* the seed-style host, not the engine */
        bool full;                              /* config.full */

        struct floors floors;

        bool supported;
        char unsupported[160];
        struct outcome out;                     /* the engine's, or the seed-style host's */
        struct outcome engine;                  /* seed rows: the engine on the same image */

        /* the goal */
        char goal[40];
        bool judged, met;
        double value;                           /* the goal's measured ratio */
        char reason[256];
};

_printf_(2, 3)
static int fail(const struct row *row, const char *format, ...) {
        va_list ap;

        fprintf(stderr, "fleet: %s %s at %" PRIu32 " bit/s, %u node%s%s: ", case_names[row->kind], row->image->label,
                row->bitrate, row->n_nodes, row->n_nodes == 1 ? "" : "s", row->seed_host ? ", seed-style host" : "");
        va_start(ap, format);
        vfprintf(stderr, format, ap);
        va_end(ap);
        fputc('\n', stderr);
        return -EIO;
}

static int setup_wire(const struct options *opt, const struct row *row, struct bench_wire **ret) {
        struct bench_wire_config wcfg = {
                .timing = opt->timing,
                .rx_depth = (uint8_t) opt->depth,
                .seed = opt->seed,
                .latency_in = row->latency,
                .latency_out = row->latency,
        };
        struct bench_wire *w;
        SimFleet *fleet;
        int r;

        wcfg.timing.bitrate = row->bitrate;
        r = bench_wire_new(&w, &wcfg);
        if (r < 0)
                return r;
        fleet = bench_wire_get_fleet(w);
        for (unsigned i = 0; i < row->n_nodes; i++) {
                r = sim_fleet_add_node(fleet, (uint8_t) (FIRST_NODE + i), &(SimFault) { .drop_rate = row->loss });
                if (r < 0) {
                        bench_wire_free(w);
                        return r;
                }
                bench_flash_load(sim_node_get_flash(sim_fleet_get_node(fleet, i)), row->image->old);
        }
        *ret = w;
        return 0;
}

/* Every node holds exactly the image and runs it. */
static int check_nodes(const struct row *row, struct bench_wire *w) {
        SimFleet *fleet = bench_wire_get_fleet(w);

        for (size_t i = 0; i < sim_fleet_get_n_nodes(fleet); i++) {
                SimNode *node = sim_fleet_get_node(fleet, i);
                const uint8_t *flash = sim_node_get_flash(node);
                uint32_t first;
                unsigned bad = bench_flash_diff(flash, row->image->img, &first);

                if (bad > 0)
                        return fail(row, "%s: the flash differs from the image in %u bytes, the first at offset "
                                    "0x%05" PRIX32 " (0x%02X, expected 0x%02X)", sim_node_get_label(node), bad, first,
                                    flash[first], bench_expected_byte(row->image->img, first));
                if (isp_node_get_mode(sim_node_get_core(node)) != ISP_NODE_MODE_APPLICATION)
                        return fail(row, "%s: did not start its application after REBOOT", sim_node_get_label(node));
        }
        return 0;
}

/* ---- the engine ---- */

struct engine_run {
        struct bench_wire *wire;
        struct session *s;
        struct outcome *out;
        enum session_phase phase0;              /* the first node's phase, for the bus split */
        struct bench_wire_stats at_phase0;
        bool finished;
};

static struct node_figures *find_node(struct engine_run *e, uint8_t id) {
        unsigned i = (unsigned) id - FIRST_NODE;

        return id >= FIRST_NODE && i < e->out->n_nodes ? &e->out->nodes[i] : NULL;
}

static void account_bus(struct engine_run *e) {
        struct bench_wire_stats st;

        bench_wire_get_stats(e->wire, &st);
        e->out->request_bus_nsec[e->phase0] += st.request_bus_nsec - e->at_phase0.request_bus_nsec;
        e->out->reply_bus_nsec[e->phase0] += st.reply_bus_nsec - e->at_phase0.reply_bus_nsec;
        e->at_phase0 = st;
}

static void enter_phase(struct engine_run *e, struct node_figures *n, enum session_phase phase) {
        uint64_t now = bench_wire_get_now(e->wire);

        n->phase_nsec[n->phase] += now - n->since;
        n->since = now;
        n->phase = phase;
        if (n == &e->out->nodes[0]) {
                account_bus(e);
                e->phase0 = phase;
        }
}

static int on_send(void *userdata, const struct isp_can_frame *f) {
        struct engine_run *e = userdata;

        if (bench_frame_cmd(f->id) == ISP_CMD_PROGRAM && e->phase0 == SESSION_PHASE_PROGRAM)
                e->out->program_frames_nsec += bench_wire_frame_nsec(e->wire, f);
        return bench_wire_send(e->wire, f);
}

static void on_phase(void *userdata, uint8_t node, enum session_phase phase) {
        struct engine_run *e = userdata;
        struct node_figures *n = find_node(e, node);

        if (n)
                enter_phase(e, n, phase);
}

static void on_finished(void *userdata, enum session_state state, const char *error) {
        struct engine_run *e = userdata;

        for (unsigned i = 0; i < e->out->n_nodes; i++)
                enter_phase(e, &e->out->nodes[i], SESSION_PHASE_NONE);
        e->finished = true;
}

static const struct session_ops engine_ops = {
        .send = on_send,
        .phase = on_phase,
        .finished = on_finished,
};

static bool engine_done(void *host) {
        return ((struct engine_run *) host)->finished;
}

static void engine_receive(void *host, const struct isp_can_frame *f, uint64_t now_usec) {
        session_receive(((struct engine_run *) host)->s, f, now_usec);
}

static uint64_t engine_deadline(void *host) {
        return session_deadline(((struct engine_run *) host)->s);
}

static void engine_timeout(void *host, uint64_t now_usec) {
        session_timeout(((struct engine_run *) host)->s, now_usec);
}

static const struct bench_host_ops engine_host = {
        .receive = engine_receive,
        .deadline = engine_deadline,
        .timeout = engine_timeout,
        .done = engine_done,
};

static int wire_error(const struct row *row, int r, const char *where) {
        if (r == -EDEADLK)
                return fail(row, "stalled in %s: nothing left to happen", where);
        if (r == -ETIME)
                return fail(row, "still running after %" PRIu64 " s of virtual time",
                            BENCH_MAX_VIRTUAL_NSEC / NSEC_PER_SEC);
        return fail(row, "%s", strerror(-r));
}

/* Sanity: the bus is one wire, and every frame sent was on it. */
static int check_bus(const struct row *row, const struct outcome *out, struct bench_wire *w, uint64_t frames_sent) {
        /* the longest frame: 8 data bytes, every stuff bit */
        uint64_t max_frame = sim_can_bits_to_nsec(131 + (53 + 64) / 4, row->bitrate);
        struct bench_wire_stats st;

        if (out->fleet.busy_nsec > out->total_nsec + max_frame)
                return fail(row, "the bus was busy %" PRIu64 " ns during a flash of %" PRIu64 " ns",
                            out->fleet.busy_nsec, out->total_nsec);
        bench_wire_drain(w);
        bench_wire_get_stats(w, &st);
        if (st.requests != frames_sent)
                return fail(row, "the host sent %" PRIu64 " frames, the bus carried %" PRIu64,
                            frames_sent, st.requests);
        return 0;
}

static int run_engine(const struct options *opt, struct row *row, struct outcome *out) {
        struct session_target_spec specs[MAX_NODES];
        struct engine_run e = { .out = out };
        struct session_config cfg;
        SimFleetStats at_start;
        uint64_t start;
        int r;

        *out = (struct outcome) { .n_nodes = row->n_nodes };
        r = setup_wire(opt, row, &e.wire);
        if (r < 0)
                return fail(row, "%s", strerror(-r));
        start = bench_wire_power_on(e.wire, /* enter_isp= */ true);
        sim_fleet_get_stats(bench_wire_get_fleet(e.wire), &at_start);
        for (unsigned i = 0; i < row->n_nodes; i++) {
                specs[i] = (struct session_target_spec) { .node = (uint8_t) (FIRST_NODE + i) };
                out->nodes[i] = (struct node_figures) { .id = specs[i].node, .since = start };
        }

        session_config_init(&cfg);
        cfg.full = row->full;
        if (opt->window > 0)
                cfg.window = opt->window;
        r = session_new_targets(&e.s, SESSION_FLASH, specs, row->n_nodes, row->image->img, &cfg, &engine_ops, &e);
        if (r == -EOPNOTSUPP) {
                /* the engine cannot do it yet: a missed goal, not a broken run */
                row->supported = false;
                snprintf(row->unsupported, sizeof(row->unsupported),
                         "not supported by the engine (session_new_targets with %u target%s: %s)",
                         row->n_nodes, row->n_nodes == 1 ? "" : "s", strerror(-r));
                r = 0;
                goto out;
        }
        if (r < 0) {
                r = fail(row, "the session could not be created: %s", strerror(-r));
                goto out;
        }
        r = session_start(e.s, start / NSEC_PER_USEC);
        if (r < 0) {
                r = fail(row, "the session did not start: %s", session_get_error(e.s));
                goto out;
        }
        r = bench_wire_run(e.wire, &engine_host, &e);
        if (r < 0) {
                r = wire_error(row, r, session_phase_to_string(e.phase0));
                goto out;
        }

        out->total_nsec = bench_wire_get_now(e.wire) - start;
        out->session = *session_get_stats(e.s);
        bench_wire_get_stats(e.wire, &out->wire);
        sim_fleet_get_stats(bench_wire_get_fleet(e.wire), &out->fleet);
        out->fleet.busy_nsec -= at_start.busy_nsec;
        out->fleet.requests -= at_start.requests;
        out->fleet.replies -= at_start.replies;
        memcpy(out->phase_nsec, out->nodes[0].phase_nsec, sizeof(out->phase_nsec));
        for (unsigned i = 0; i < row->n_nodes; i++) {
                struct node_figures *n = &out->nodes[i];

                (void) session_get_target_result(e.s, i, &n->result);
                if (n->result.state != SESSION_SUCCEEDED) {
                        r = fail(row, "node%u %s: %s", n->id, session_state_to_string(n->result.state),
                                 n->result.error ?: "(no message)");
                        goto out;
                }
                n->result.name = n->result.error = NULL;
                if (n->phase_nsec[SESSION_PHASE_PROGRAM] > out->program_nsec)
                        out->program_nsec = n->phase_nsec[SESSION_PHASE_PROGRAM];
        }
        if (session_get_state(e.s) != SESSION_SUCCEEDED) {
                r = fail(row, "the flash %s: %s", session_state_to_string(session_get_state(e.s)),
                         session_get_error(e.s) ?: "(no message)");
                goto out;
        }
        if (out->session.restarts > 0) {
                /* the figures would mix two attempts */
                r = fail(row, "a node restarted %" PRIu64 " times during the flash", out->session.restarts);
                goto out;
        }
        r = check_bus(row, out, e.wire, out->session.frames_sent);
        if (r < 0)
                goto out;
        r = check_nodes(row, e.wire);
        if (r < 0)
                goto out;
        row->supported = true;
out:
        session_free(e.s);
        bench_wire_free(e.wire);
        return r;
}

/* ---- the seed-style host ----
 *
 * What a first host does: CONNECT, a full ERASE, every PROGRAM frame on its
 * own (the next one only after the ack), no verify, the entry last (its
 * address bytes, then the opcode: the commit rule), REBOOT. It writes each
 * 8-byte block of the flash that holds image bytes from the first of them
 * to the last, 0xFF values included. */

enum seed_step {
        SEED_CONNECT,
        SEED_ERASE,
        SEED_PROGRAM,
        SEED_ENTRY_TARGET,
        SEED_ENTRY_OPCODE,
        SEED_REBOOT,
        SEED_DONE,
        SEED_FAILED,
};

struct seed_host {
        struct bench_wire *wire;
        const struct isp_image *img;
        uint8_t node;
        enum seed_step step;
        uint32_t cursor;                /* the next 8-byte block to look at */
        struct isp_request req;
        uint64_t deadline;              /* µs */
        unsigned tries;
        uint64_t frames_sent;
        char error[160];
};

static bool programmable(const struct isp_image *img, uint32_t o) {
        return isp_image_byte_used(img, o) && (o < ISP_ENTRY_OFFSET || o >= ISP_ENTRY_OFFSET + ISP_ENTRY_SIZE);
}

/* The next block's PROGRAM request; false when there is none. */
static bool seed_next_block(struct seed_host *h, struct isp_request *ret) {
        for (; h->cursor < ISP_FLASH_SIZE; h->cursor += 8) {
                uint32_t first = UINT32_MAX, last = 0;

                for (uint32_t o = h->cursor; o < h->cursor + 8; o++)
                        if (programmable(h->img, o)) {
                                if (first == UINT32_MAX)
                                        first = o;
                                last = o;
                        }
                if (first == UINT32_MAX)
                        continue;
                *ret = (struct isp_request) {
                        .cmd = ISP_CMD_PROGRAM,
                        .u.program = { .offset = first, .len = (uint8_t) (last - first + 1) },
                };
                memcpy(ret->u.program.data, h->img->flash + first, last - first + 1);
                h->cursor += 8;
                return true;
        }
        return false;
}

static void seed_transmit(struct seed_host *h, uint64_t now_usec) {
        struct isp_can_frame f;
        uint64_t timeout = SEED_TIMEOUT_USEC;

        if (isp_request_build(&h->req, &f) < 0) {
                h->step = SEED_FAILED;
                snprintf(h->error, sizeof(h->error), "could not build a %s request", isp_cmd_to_string(h->req.cmd));
                return;
        }
        if (h->req.cmd == ISP_CMD_ERASE)
                timeout += (uint64_t) (APP_AREA_BYTES / ISP_SECTOR_SIZE) * SEED_ERASE_USEC_PER_SECTOR;
        h->tries++;
        h->frames_sent++;
        h->deadline = now_usec + timeout;
        if (bench_wire_send(h->wire, &f) < 0) {
                h->step = SEED_FAILED;
                snprintf(h->error, sizeof(h->error), "out of memory");
        }
}

/* Go on to the step after the current one, and send its request. */
static void seed_advance(struct seed_host *h, uint64_t now_usec) {
        h->tries = 0;
        switch (h->step) {
        case SEED_CONNECT:
                h->step = SEED_ERASE;
                h->req = (struct isp_request) { .cmd = ISP_CMD_ERASE, .u.erase.whole = true };
                break;
        case SEED_ERASE:
        case SEED_PROGRAM:
                if (seed_next_block(h, &h->req)) {
                        h->step = SEED_PROGRAM;
                        break;
                }
                h->step = SEED_ENTRY_TARGET;
                h->req = (struct isp_request) {
                        .cmd = ISP_CMD_PROGRAM,
                        .u.program = { .offset = ISP_ENTRY_OFFSET + 1, .len = 2,
                                       .data = { h->img->entry[1], h->img->entry[2] } },
                };
                break;
        case SEED_ENTRY_TARGET:
                h->step = SEED_ENTRY_OPCODE;
                h->req = (struct isp_request) {
                        .cmd = ISP_CMD_PROGRAM,
                        .u.program = { .offset = ISP_ENTRY_OFFSET, .len = 1, .data = { h->img->entry[0] } },
                };
                break;
        case SEED_ENTRY_OPCODE:
                h->step = SEED_REBOOT;
                h->req = (struct isp_request) { .cmd = ISP_CMD_REBOOT };
                break;
        default:
                h->step = SEED_DONE;
                h->deadline = UINT64_MAX;
                return;
        }
        seed_transmit(h, now_usec);
}

static void seed_receive(void *host, const struct isp_can_frame *f, uint64_t now_usec) {
        struct seed_host *h = host;
        struct isp_reply rep;

        if (isp_reply_parse(f, &rep) < 0 || rep.node != h->node || rep.cmd != h->req.cmd ||
            h->step >= SEED_DONE)
                return;
        if (rep.cmd == ISP_CMD_PROGRAM && rep.u.offset != h->req.u.program.offset)
                return;         /* the ack of an earlier frame, sent again */
        if (rep.cmd != ISP_CMD_CONNECT && rep.status != ISP_STATUS_OK) {
                h->step = SEED_FAILED;
                snprintf(h->error, sizeof(h->error), "%s answered %s", isp_cmd_to_string(rep.cmd),
                         isp_status_to_string(rep.status));
                return;
        }
        seed_advance(h, now_usec);
}

static uint64_t seed_deadline(void *host) {
        return ((struct seed_host *) host)->deadline;
}

static void seed_timeout(void *host, uint64_t now_usec) {
        struct seed_host *h = host;

        if (h->tries >= SEED_TRIES) {
                h->step = SEED_FAILED;
                snprintf(h->error, sizeof(h->error), "%s not answered after %u tries",
                         isp_cmd_to_string(h->req.cmd), h->tries);
                return;
        }
        seed_transmit(h, now_usec);
}

static bool seed_done(void *host) {
        return ((struct seed_host *) host)->step >= SEED_DONE;
}

static const struct bench_host_ops seed_host_ops = {
        .receive = seed_receive,
        .deadline = seed_deadline,
        .timeout = seed_timeout,
        .done = seed_done,
};

static int run_seed(const struct options *opt, struct row *row, struct outcome *out) {
        struct seed_host h = { .img = row->image->img, .node = FIRST_NODE };
        SimFleetStats at_start;
        uint64_t start;
        int r;

        *out = (struct outcome) { .n_nodes = 1 };
        r = setup_wire(opt, row, &h.wire);
        if (r < 0)
                return fail(row, "%s", strerror(-r));
        start = bench_wire_power_on(h.wire, /* enter_isp= */ true);
        sim_fleet_get_stats(bench_wire_get_fleet(h.wire), &at_start);

        h.req = (struct isp_request) { .cmd = ISP_CMD_CONNECT, .u.connect.target = h.node };
        seed_transmit(&h, start / NSEC_PER_USEC);
        r = bench_wire_run(h.wire, &seed_host_ops, &h);
        if (r < 0) {
                r = wire_error(row, r, "the seed-style host");
                goto out;
        }
        if (h.step != SEED_DONE) {
                r = fail(row, "the seed-style host failed: %s", h.error);
                goto out;
        }
        out->total_nsec = bench_wire_get_now(h.wire) - start;
        out->session.frames_sent = h.frames_sent;
        out->session.retransmissions = 0;
        bench_wire_get_stats(h.wire, &out->wire);
        sim_fleet_get_stats(bench_wire_get_fleet(h.wire), &out->fleet);
        out->fleet.busy_nsec -= at_start.busy_nsec;
        out->fleet.requests -= at_start.requests;
        out->fleet.replies -= at_start.replies;
        r = check_bus(row, out, h.wire, h.frames_sent);
        if (r < 0)
                goto out;
        r = check_nodes(row, h.wire);
        if (r < 0)
                goto out;
        row->supported = true;
out:
        bench_wire_free(h.wire);
        return r;
}

/* ------------------------------------------------------------------------ */
/* Goals */

static const enum session_phase table_phases[] = {
        SESSION_PHASE_CONNECT, SESSION_PHASE_ERASE, SESSION_PHASE_PROGRAM,
        SESSION_PHASE_VERIFY, SESSION_PHASE_COMMIT, SESSION_PHASE_REBOOT,
};

/* Where a run spends its time beyond the floor: the program phase against
 * B, erase and verify together against the erase and CRC floors (the
 * engine checks blank sectors by CRC while it erases), and connect, commit
 * and reboot against nothing. The two largest excesses, for a reason. */
static void excess_text(const struct row *row, char *buf, size_t size) {
        const struct outcome *o = &row->out;
        struct { const char *what; double ms; } parts[] = {
                { "program", bench_ms(o->phase_nsec[SESSION_PHASE_PROGRAM]) - bench_ms(row->floors.program_nsec) },
                { "erase+verify", bench_ms(o->phase_nsec[SESSION_PHASE_ERASE] + o->phase_nsec[SESSION_PHASE_VERIFY]) -
                                  bench_ms(row->floors.erase_nsec + row->floors.crc_nsec) },
                { "connect", bench_ms(o->phase_nsec[SESSION_PHASE_CONNECT]) },
                { "commit", bench_ms(o->phase_nsec[SESSION_PHASE_COMMIT]) },
                { "reboot", bench_ms(o->phase_nsec[SESSION_PHASE_REBOOT]) },
        };
        size_t k = 0;

        buf[0] = '\0';
        for (unsigned shown = 0; shown < 2; shown++) {
                size_t best = ELEMENTSOF(parts);

                for (size_t i = 0; i < ELEMENTSOF(parts); i++)
                        if (parts[i].ms > 0.05 && (best == ELEMENTSOF(parts) || parts[i].ms > parts[best].ms))
                                best = i;
                if (best == ELEMENTSOF(parts))
                        break;
                k += (size_t) snprintf(buf + k, size > k ? size - k : 0, "%s%s +%.1f ms", shown ? ", " : "",
                                       parts[best].what, parts[best].ms);
                parts[best].ms = 0;
        }
}

static void append(char *buf, size_t size, const char *format, ...) _printf_(3, 4);
static void append(char *buf, size_t size, const char *format, ...) {
        size_t k = strlen(buf);
        va_list ap;

        if (k >= size)
                return;
        va_start(ap, format);
        (void) vsnprintf(buf + k, size - k, format, ap);
        va_end(ap);
}

/* total <= limit x F, and for a full flash program <= 1.03 B. */
static void judge_floor(struct row *row, double limit, bool program_too) {
        const struct outcome *o = &row->out;
        double tot = bench_ratio(o->total_nsec, row->floors.total_nsec);
        double prg = bench_ratio(o->program_nsec, row->floors.program_nsec);
        char excess[128];

        snprintf(row->goal, sizeof(row->goal), program_too ? "tot<=%.2fF prg<=1.03B" : "tot<=%.2fF", limit);
        row->judged = true;
        row->value = tot;
        row->met = tot <= limit && (!program_too || prg <= 1.03);
        if (row->met)
                return;
        if (tot > limit) {
                excess_text(row, excess, sizeof(excess));
                append(row->reason, sizeof(row->reason), "total %.2f F > %.2f F (%s)", tot, limit, excess);
        }
        if (program_too && prg > 1.03)
                append(row->reason, sizeof(row->reason), "%sprogram %.2f B > 1.03 B (acks %.2f B on the bus)",
                       row->reason[0] ? "; " : "", prg,
                       bench_ratio(o->reply_bus_nsec[SESSION_PHASE_PROGRAM], row->floors.program_nsec));
        if (row->loss > 0)
                append(row->reason, sizeof(row->reason), "; %" PRIu64 " requests lost, %" PRIu64 " resent, %"
                       PRIu64 " time-outs", o->fleet.lost_dropped, o->session.retransmissions, o->session.timeouts);
}

static const struct row *find_reference(const struct row *rows, size_t n, const struct row *row) {
        for (size_t i = 0; i < n; i++)
                if (rows[i].kind == CASE_MULTICAST && rows[i].n_nodes == 1 && rows[i].bitrate == row->bitrate &&
                    rows[i].image == row->image)
                        return &rows[i];
        return NULL;
}

static void judge(struct row *rows, size_t n, struct row *row) {
        if (!row->supported) {
                snprintf(row->goal, sizeof(row->goal), row->kind == CASE_MULTICAST ? "tot<=1.05x1node" : "-");
                row->judged = true;
                row->met = false;
                snprintf(row->reason, sizeof(row->reason), "%s", row->unsupported);
                return;
        }
        switch (row->kind) {
        case CASE_FULL:
                judge_floor(row, 1.05, true);
                break;
        case CASE_LATENCY:
                judge_floor(row, 1.08, false);
                break;
        case CASE_LOSS:
                if (row->loss <= 0.001 + 1e-12)
                        judge_floor(row, 1.15, false);
                else if (row->loss <= 0.01 + 1e-12)
                        judge_floor(row, 1.5, false);
                else
                        snprintf(row->goal, sizeof(row->goal), "none");
                break;
        case CASE_UPDATE:
                judge_floor(row, 1.10, false);
                break;
        case CASE_MULTICAST: {
                const struct row *ref;

                if (row->n_nodes == 1) {
                        judge_floor(row, 1.05, true);
                        break;
                }
                snprintf(row->goal, sizeof(row->goal), "tot<=1.05x1node");
                row->judged = true;
                ref = find_reference(rows, n, row);
                if (!ref || !ref->supported) {
                        row->met = false;
                        snprintf(row->reason, sizeof(row->reason), "no one-node run to compare with");
                        break;
                }
                row->value = bench_ratio(row->out.total_nsec, ref->out.total_nsec);
                row->met = row->value <= 1.05;
                if (!row->met) {
                        char excess[128];

                        excess_text(row, excess, sizeof(excess));
                        snprintf(row->reason, sizeof(row->reason), "total %.2f x one node (%.1f ms) > 1.05 (%s)",
                                 row->value, bench_ms(ref->out.total_nsec), excess);
                }
                break;
        }
        case CASE_SEED: {
                double limit = row->latency > 0 ? 0.30 : 0.65;

                snprintf(row->goal, sizeof(row->goal), "stcispd/seed<=%.2f", limit);
                row->judged = true;
                row->value = bench_ratio(row->engine.total_nsec, row->out.total_nsec);
                row->met = row->value <= limit;
                if (!row->met)
                        snprintf(row->reason, sizeof(row->reason), "stcispd/seed %.3f > %.2f (stcispd %.1f ms)",
                                 row->value, limit, bench_ms(row->engine.total_nsec));
                break;
        }
        default:
                break;
        }
}

/* ------------------------------------------------------------------------ */
/* Output */

static void host_text(const struct row *row, char *buf, size_t size) {
        if (row->loss > 0)
                snprintf(buf, size, "loss %g%%", 100.0 * row->loss);
        else if (row->latency > 0)
                snprintf(buf, size, "%gms", (double) row->latency / 1e6);
        else
                snprintf(buf, size, "ideal");
}

/* A ratio in 5 columns, however large. */
static void print_ratio(double v) {
        printf(v < 10 ? "%5.2f" : v < 100 ? "%5.1f" : "%5.0f", v);
}

static bool awaits_engine(const struct row *row) {
        return !row->supported;
}

static void print_table(const struct options *opt, const struct row *rows, size_t n) {
        unsigned met = 0, missed = 0, unsupported = 0;

        printf("fleet: daemon/session.c against sim/sim-fleet.c in virtual time, every run byte-exact on every node\n");
        printf("node: erase %.1f ms/sector, program %.1f us/byte, CRC %.1f us/byte, %.1f us/frame; receive depth %u; "
               "engine window %s\n",
               bench_ms(opt->timing.erase_sector), (double) opt->timing.program_byte / 1e3,
               (double) opt->timing.crc_byte / 1e3, (double) opt->timing.handle_frame / 1e3, opt->depth,
               opt->window ? "set" : "default");
        printf("floors: B = bus time of the image's PROGRAM frames (exact bits, stuff bits included);\n"
               "        F = B + erase time x image sectors + CRC time x %u bytes; update rows: their own B and F\n\n",
               APP_AREA_BYTES);
        printf("%-9s %-10s %6s %5s %-9s | %9s %9s | %9s %9s | %5s %5s | %-21s | %s\n",
               "case", "image", "kbit/s", "nodes", "host", "total", "program", "B", "F", "tot/F", "prg/B",
               "goal", "result");
        for (size_t i = 0; i < n; i++) {
                const struct row *r = &rows[i];
                char host[24], nodes[16];

                if (i > 0 && r->kind != rows[i - 1].kind)
                        putchar('\n');
                host_text(r, host, sizeof(host));
                snprintf(nodes, sizeof(nodes), "%u", r->n_nodes);
                printf("%-9s %-10s %6" PRIu32 " %5s %-9s | ", case_names[r->kind], r->image->label, r->bitrate / 1000,
                       nodes, host);
                if (r->supported && r->seed_host)
                        printf("%9.1f %9s | ", bench_ms(r->out.total_nsec), "-");
                else if (r->supported)
                        printf("%9.1f %9.1f | ", bench_ms(r->out.total_nsec), bench_ms(r->out.program_nsec));
                else
                        printf("%9s %9s | ", "-", "-");
                printf("%9.1f %9.1f | ", bench_ms(r->floors.program_nsec), bench_ms(r->floors.total_nsec));
                if (r->supported) {
                        print_ratio(bench_ratio(r->out.total_nsec, r->floors.total_nsec));
                        if (r->seed_host)
                                printf(" %5s | ", "-");
                        else {
                                putchar(' ');
                                print_ratio(bench_ratio(r->out.program_nsec, r->floors.program_nsec));
                                printf(" | ");
                        }
                } else
                        printf("%5s %5s | ", "-", "-");
                printf("%-21s | ", r->goal);
                if (!r->judged)
                        printf("no goal\n");
                else if (r->met && r->kind == CASE_SEED)
                        printf("met (stcispd/seed %.3f, stcispd %.1f ms)\n", r->value, bench_ms(r->engine.total_nsec));
                else if (r->met)
                        printf("met\n");
                else
                        printf("MISSED: %s%s\n", r->reason, awaits_engine(r) ? " [awaits the engine]" : "");
                if (r->judged && r->met)
                        met++;
                else if (r->judged && !r->supported)
                        unsupported++;
                else if (r->judged)
                        missed++;
        }
        printf("\n%zu rows: %u goals met, %u missed, %u not supported by the engine (missed too)\n",
               n, met, missed, unsupported);
        printf("times in ms of virtual time. host: ideal, its latency each way, or the requests lost at random\n"
               "(seeded). seed rows: the seed-style host written in the benchmark (stop-and-wait, full ERASE,\n"
               "no verify), the engine's total on the same image and host against its. program: the slowest\n"
               "node's time in the program phase. [awaits the engine]: the engine cannot run the case yet.\n");
}

static void print_phases_json(const uint64_t *phase_nsec) {
        printf("{");
        for (size_t j = 0; j < ELEMENTSOF(table_phases); j++)
                printf("%s\"%s\":%" PRIu64, j ? "," : "", session_phase_to_string(table_phases[j]),
                       phase_nsec[table_phases[j]]);
        printf("}");
}

static void print_outcome_json(const struct outcome *o, bool engine) {
        printf("{\"total_ns\":%" PRIu64 ",\"program_ns\":%" PRIu64 ",\"phases_ns\":", o->total_nsec, o->program_nsec);
        print_phases_json(o->phase_nsec);
        printf(",\"frames_sent\":%" PRIu64 ",\"retransmissions\":%" PRIu64 ",\"timeouts\":%" PRIu64
               ",\"bus_requests\":%" PRIu64 ",\"bus_replies\":%" PRIu64 ",\"request_bus_ns\":%" PRIu64
               ",\"reply_bus_ns\":%" PRIu64 ",\"bus_busy_ns\":%" PRIu64 ",\"dropped\":%" PRIu64
               ",\"overruns\":%" PRIu64 ",\"program_frames_bus_ns\":%" PRIu64,
               o->session.frames_sent, o->session.retransmissions, o->session.timeouts, o->fleet.requests,
               o->fleet.replies, o->wire.request_bus_nsec, o->wire.reply_bus_nsec, o->fleet.busy_nsec,
               o->fleet.lost_dropped, o->fleet.lost_overrun, o->program_frames_nsec);
        if (engine) {
                printf(",\"nodes\":[");
                for (unsigned i = 0; i < o->n_nodes; i++) {
                        const struct node_figures *n = &o->nodes[i];
                        const struct session_target_result *t = &n->result;

                        printf("%s{\"node\":%u,\"state\":\"%s\",\"phases_ns\":", i ? "," : "", n->id,
                               session_state_to_string(t->state));
                        print_phases_json(n->phase_nsec);
                        printf(",\"multicast\":%s,\"bytes_done\":%" PRIu64 ",\"bytes_total\":%" PRIu64
                               ",\"sectors_written\":%u,\"sectors_skipped\":%u,\"sectors_erased\":%u"
                               ",\"repairs\":%u,\"retransmissions\":%" PRIu64 "}",
                               t->multicast ? "true" : "false", t->bytes_done, t->bytes_total, t->sectors_written,
                               t->sectors_skipped, t->sectors_erased, t->repairs, t->retransmissions);
                }
                printf("]");
        }
        printf("}");
}

static void print_json(const struct options *opt, const struct row *rows, size_t n) {
        printf("{\"timing_ns\":{\"erase_sector\":%" PRIu64 ",\"program_byte\":%" PRIu64 ",\"crc_byte\":%" PRIu64
               ",\"handle_frame\":%" PRIu64 "},\"rx_depth\":%u,\"window\":",
               opt->timing.erase_sector, opt->timing.program_byte, opt->timing.crc_byte, opt->timing.handle_frame,
               opt->depth);
        if (opt->window)
                printf("%u", opt->window);
        else
                printf("null");         /* the engine's default */
        printf(",\"host_latency_ns\":%" PRIu64 ",\"seed\":%" PRIu64 ",\"rows\":[", opt->host_latency, opt->seed);
        for (size_t i = 0; i < n; i++) {
                const struct row *r = &rows[i];
                const struct floors *f = &r->floors;

                printf("%s{\"case\":\"%s\",\"image\":", i ? "," : "", case_names[r->kind]);
                bench_json_string(r->image->label);
                printf(",\"content\":\"%s\",\"kib\":%u,\"image_bytes\":%zu,\"bitrate\":%" PRIu32 ",\"nodes\":%u"
                       ",\"host\":\"%s\",\"host_latency_ns\":%" PRIu64 ",\"drop_rate\":%g,\"full\":%s",
                       bench_content_to_string(r->image->content), r->image->kib, r->image->img->data_bytes,
                       r->bitrate, r->n_nodes, r->seed_host ? "seed-style" : "stcispd", r->latency, r->loss,
                       r->full ? "true" : "false");
                printf(",\"floor\":{\"program_frames\":%" PRIu64 ",\"program_bytes\":%" PRIu64
                       ",\"stuff_bits\":%" PRIu64 ",\"program_bits\":%" PRIu64 ",\"program_ns\":%" PRIu64
                       ",\"erase_sectors\":%u,\"erase_ns\":%" PRIu64 ",\"crc_ns\":%" PRIu64 ",\"total_ns\":%" PRIu64 "}",
                       f->program_frames, f->program_bytes, f->stuff_bits, f->program_bits, f->program_nsec,
                       f->erase_sectors, f->erase_nsec, f->crc_nsec, f->total_nsec);
                printf(",\"supported\":%s", r->supported ? "true" : "false");
                if (r->supported) {
                        printf(",\"total_over_floor\":%.4f", bench_ratio(r->out.total_nsec, f->total_nsec));
                        if (!r->seed_host)
                                printf(",\"program_over_floor\":%.4f", bench_ratio(r->out.program_nsec, f->program_nsec));
                        printf(",\"run\":");
                        print_outcome_json(&r->out, !r->seed_host);
                        if (r->seed_host) {
                                printf(",\"engine_run\":");
                                print_outcome_json(&r->engine, true);
                        }
                }
                printf(",\"goal\":");
                if (!r->judged)
                        printf("null");
                else {
                        printf("{\"text\":");
                        bench_json_string(r->goal);
                        printf(",\"value\":%.4f,\"met\":%s,\"reason\":", r->value, r->met ? "true" : "false");
                        bench_json_string(r->reason);
                        printf("}");
                }
                printf("}");
        }
        printf("]}\n");
}

/* ------------------------------------------------------------------------ */
/* The table's rows */

struct rows {
        struct row *items;
        size_t n, cap;
};

static int add_row(struct rows *rs, const struct row *row) {
        if (rs->n == rs->cap) {
                size_t cap = rs->cap ? rs->cap * 2 : 64;
                struct row *items = realloc(rs->items, cap * sizeof(*items));

                if (!items)
                        return -ENOMEM;
                rs->items = items;
                rs->cap = cap;
        }
        rs->items[rs->n++] = *row;
        return 0;
}

static int plan_rows(const struct options *opt, struct images *imgs, struct rows *rs) {
        const struct image *im;
        int r;

        for (unsigned b = 0; b < opt->n_bitrates; b++) {
                uint32_t bitrate = opt->bitrates[b];

                for (unsigned k = CASE_FULL; k <= CASE_LATENCY; k++) {
                        if (!opt->cases[k])
                                continue;
                        for (unsigned s = 0; s < opt->n_sizes; s++)
                                for (unsigned c = BENCH_CODE; c <= BENCH_DATA; c++) {
                                        r = get_image(imgs, c, opt->sizes[s], false, &im);
                                        if (r < 0)
                                                return r;
                                        r = add_row(rs, &(struct row) {
                                                .kind = k, .image = im, .bitrate = bitrate, .n_nodes = 1, .full = true,
                                                .latency = k == CASE_LATENCY ? opt->host_latency : 0,
                                        });
                                        if (r < 0)
                                                return r;
                                }
                }
                if (opt->cases[CASE_LOSS]) {
                        r = get_image(imgs, BENCH_CODE, LOSS_KIB, false, &im);
                        if (r < 0)
                                return r;
                        for (unsigned l = 0; l < opt->n_losses; l++) {
                                r = add_row(rs, &(struct row) {
                                        .kind = CASE_LOSS, .image = im, .bitrate = bitrate, .n_nodes = 1, .full = true,
                                        .loss = opt->losses[l],
                                });
                                if (r < 0)
                                        return r;
                        }
                }
                if (opt->cases[CASE_MULTICAST]) {
                        r = get_image(imgs, BENCH_CODE, MULTICAST_KIB, false, &im);
                        if (r < 0)
                                return r;
                        /* one node first: what the others are measured against */
                        r = add_row(rs, &(struct row) {
                                .kind = CASE_MULTICAST, .image = im, .bitrate = bitrate, .n_nodes = 1, .full = true,
                        });
                        for (unsigned m = 0; r >= 0 && m < opt->n_nodes; m++)
                                r = add_row(rs, &(struct row) {
                                        .kind = CASE_MULTICAST, .image = im, .bitrate = bitrate,
                                        .n_nodes = opt->nodes[m], .full = true,
                                });
                        if (r < 0)
                                return r;
                }
                if (opt->cases[CASE_UPDATE]) {
                        r = get_image(imgs, BENCH_CODE, UPDATE_KIB, true, &im);
                        if (r >= 0)
                                r = add_row(rs, &(struct row) {
                                        .kind = CASE_UPDATE, .image = im, .bitrate = bitrate, .n_nodes = 1, .full = false,
                                });
                        if (r < 0)
                                return r;
                }
                if (opt->cases[CASE_SEED]) {
                        r = get_image(imgs, BENCH_CODE, SEED_KIB, false, &im);
                        if (r < 0)
                                return r;
                        for (unsigned lat = 0; lat < 2; lat++) {
                                r = add_row(rs, &(struct row) {
                                        .kind = CASE_SEED, .image = im, .bitrate = bitrate, .n_nodes = 1, .full = true,
                                        .seed_host = true, .latency = lat ? opt->host_latency : 0,
                                });
                                if (r < 0)
                                        return r;
                        }
                }
        }
        return 0;
}

static int run_row(const struct options *opt, struct row *row) {
        int r;

        if (row->kind == CASE_UPDATE) {
                struct plan_sectors written;
                unsigned count;

                changed_sectors(row->image->old, row->image->img, &written, &count);
                r = compute_floors(row->image->img, &written, count, row->bitrate, &opt->timing, &row->floors);
        } else
                r = compute_floors(row->image->img, NULL, 0, row->bitrate, &opt->timing, &row->floors);
        if (r < 0)
                return fail(row, "%s", strerror(-r));

        if (!row->seed_host)
                return run_engine(opt, row, &row->out);

        r = run_seed(opt, row, &row->out);
        if (r < 0)
                return r;
        /* the engine's run on the same image, bus and host */
        {
                struct row engine_row = *row;

                engine_row.seed_host = false;
                r = run_engine(opt, &engine_row, &row->engine);
                if (r >= 0 && !engine_row.supported) {
                        row->supported = false;
                        snprintf(row->unsupported, sizeof(row->unsupported), "%s", engine_row.unsupported);
                }
        }
        return r;
}

/* ------------------------------------------------------------------------ */
/* Command line */

static void usage(FILE *f) {
        fprintf(f,
                "Usage: fleet [OPTION...]\n"
                "\n"
                "Flash simulated nodes with the protocol engine in virtual time, case by case,\n"
                "and report each case against its floor and its goal (docs/performance.md).\n"
                "\n"
                "      --json               one JSON object instead of the table\n"
                "      --cases LIST         of full,latency,loss,multicast,update,seed (default: all)\n"
                "      --bitrate LIST       bus bitrates in bit/s (default 125000,500000,1000000)\n"
                "      --sizes LIST         image sizes in KiB for the full and latency rows, 1-124\n"
                "                           (default 16,56,124)\n"
                "      --nodes LIST         node counts for the multicast rows, 2-%u (default 8,32)\n"
                "      --loss LIST          request loss for the loss rows, as 0.001 or 0.1%% (default\n"
                "                           0.1%%,1%%; seeded, so the same frames every run)\n"
                "      --host-latency T     the latency rows' host, each way (default 1ms)\n"
                "      --depth N            node receive depth (default %u)\n"
                "      --window N           engine window (default: the engine's)\n"
                "      --erase-time T       node: erase one 512-byte sector (default 5ms)\n"
                "      --program-time T     node: program one byte (default 6us)\n"
                "      --crc-time T         node: CRC one byte (default 3us)\n"
                "      --handle-time T      node: take any request frame in (default 10us)\n"
                "      --seed N             the simulator's seed for the losses (default %u)\n"
                "  -h, --help               this text\n"
                "\n"
                "T is a duration as stcisp-sim takes it: 250us, 1.5ms, 0. The exit status is 0\n"
                "when every run was correct, goals met or not; 1 when a run was broken.\n",
                MAX_NODES, SIM_DEFAULT_RX_DEPTH, SIM_DEFAULT_SEED);
}

static int parse_cases(const char *s, bool cases[_CASE_MAX]) {
        char buf[256], *save = NULL, *tok;

        if (snprintf(buf, sizeof(buf), "%s", s) >= (int) sizeof(buf))
                return -EINVAL;
        memset(cases, 0, _CASE_MAX * sizeof(bool));
        for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                unsigned k;

                for (k = 0; k < _CASE_MAX && strcmp(tok, case_names[k]) != 0; k++)
                        ;
                if (k == _CASE_MAX)
                        return -EINVAL;
                cases[k] = true;
        }
        return 0;
}

static int parse_losses(const char *s, double *list, unsigned *n) {
        char buf[256], *save = NULL, *tok, err[128];

        if (snprintf(buf, sizeof(buf), "%s", s) >= (int) sizeof(buf))
                return -EINVAL;
        *n = 0;
        for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
                if (*n >= BENCH_MAX_LIST || sim_parse_fraction(tok, &list[(*n)++], err, sizeof(err)) < 0 ||
                    list[*n - 1] <= 0)
                        return -EINVAL;
        return *n > 0 ? 0 : -EINVAL;
}

static int parse_argv(int argc, char *argv[], struct options *opt) {
        enum { ARG_JSON = 0x100, ARG_CASES, ARG_BITRATE, ARG_SIZES, ARG_NODES, ARG_LOSS, ARG_LATENCY, ARG_DEPTH,
               ARG_WINDOW, ARG_ERASE_TIME, ARG_PROGRAM_TIME, ARG_CRC_TIME, ARG_HANDLE_TIME, ARG_SEED };
        /* in the order of the enum: an error names longopts[c - ARG_JSON] */
        static const struct option longopts[] = {
                { "json",         no_argument,       NULL, ARG_JSON },
                { "cases",        required_argument, NULL, ARG_CASES },
                { "bitrate",      required_argument, NULL, ARG_BITRATE },
                { "sizes",        required_argument, NULL, ARG_SIZES },
                { "nodes",        required_argument, NULL, ARG_NODES },
                { "loss",         required_argument, NULL, ARG_LOSS },
                { "host-latency", required_argument, NULL, ARG_LATENCY },
                { "depth",        required_argument, NULL, ARG_DEPTH },
                { "window",       required_argument, NULL, ARG_WINDOW },
                { "erase-time",   required_argument, NULL, ARG_ERASE_TIME },
                { "program-time", required_argument, NULL, ARG_PROGRAM_TIME },
                { "crc-time",     required_argument, NULL, ARG_CRC_TIME },
                { "handle-time",  required_argument, NULL, ARG_HANDLE_TIME },
                { "seed",         required_argument, NULL, ARG_SEED },
                { "help",         no_argument,       NULL, 'h' },
                {}
        };
        static const char *const ranges[] = {
                [ARG_CASES - ARG_JSON] = "a list of full,latency,loss,multicast,update,seed",
                [ARG_BITRATE - ARG_JSON] = "a list of 10000-1000000",
                [ARG_SIZES - ARG_JSON] = "a list of 1-124",
                [ARG_NODES - ARG_JSON] = "a list of 2-64",
                [ARG_LOSS - ARG_JSON] = "a list of fractions above 0",
                [ARG_DEPTH - ARG_JSON] = "1-255",
                [ARG_WINDOW - ARG_JSON] = "1-255",
                [ARG_SEED - ARG_JSON] = "a number",
        };
        char err[256];
        unsigned long v;
        uint64_t *dur;
        int c, r = 0;

        *opt = (struct options) {
                .cases = { true, true, true, true, true, true },
                .bitrates = { 125000, 500000, 1000000 }, .n_bitrates = 3,
                .sizes = { 16, 56, 124 }, .n_sizes = 3,
                .nodes = { 8, 32 }, .n_nodes = 2,
                .losses = { 0.001, 0.01 }, .n_losses = 2,
                /* the simulator's defaults (stcisp-sim --help) */
                .timing = {
                        .erase_sector = SIM_DEFAULT_ERASE_TIME,
                        .program_byte = SIM_DEFAULT_PROGRAM_TIME,
                        .crc_byte = SIM_DEFAULT_CRC_TIME,
                        .handle_frame = SIM_DEFAULT_HANDLE_TIME,
                        .writeback_delay = SIM_DEFAULT_WRITEBACK_DELAY,
                },
                .host_latency = NSEC_PER_MSEC,
                .depth = SIM_DEFAULT_RX_DEPTH,
                .seed = SIM_DEFAULT_SEED,
        };

        while ((c = getopt_long(argc, argv, "h", longopts, NULL)) >= 0) {
                switch (c) {
                case ARG_JSON:
                        opt->json = true;
                        break;
                case ARG_CASES:
                        r = parse_cases(optarg, opt->cases);
                        break;
                case ARG_BITRATE:
                        r = bench_parse_list(optarg, 10000, 1000000, opt->bitrates, &opt->n_bitrates);
                        break;
                case ARG_SIZES:
                        r = bench_parse_list(optarg, 1, 124, opt->sizes, &opt->n_sizes);
                        break;
                case ARG_NODES:
                        r = bench_parse_list(optarg, 2, MAX_NODES, opt->nodes, &opt->n_nodes);
                        break;
                case ARG_LOSS:
                        r = parse_losses(optarg, opt->losses, &opt->n_losses);
                        break;
                case ARG_DEPTH:
                case ARG_WINDOW:
                        r = bench_parse_uint(optarg, 1, 255, &v);
                        if (r >= 0)
                                *(c == ARG_DEPTH ? &opt->depth : &opt->window) = (unsigned) v;
                        break;
                case ARG_SEED:
                        r = bench_parse_uint(optarg, 0, ULONG_MAX, &v);
                        if (r >= 0)
                                opt->seed = v;
                        break;
                case ARG_LATENCY:
                case ARG_ERASE_TIME:
                case ARG_PROGRAM_TIME:
                case ARG_CRC_TIME:
                case ARG_HANDLE_TIME:
                        dur = c == ARG_LATENCY ? &opt->host_latency :
                              c == ARG_ERASE_TIME ? &opt->timing.erase_sector :
                              c == ARG_PROGRAM_TIME ? &opt->timing.program_byte :
                              c == ARG_CRC_TIME ? &opt->timing.crc_byte : &opt->timing.handle_frame;
                        if (sim_parse_duration(optarg, dur, err, sizeof(err)) < 0) {
                                fprintf(stderr, "fleet: --%s: %s\n", longopts[c - ARG_JSON].name, err);
                                return -EINVAL;
                        }
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return -EINVAL;
                }
                if (r < 0) {
                        fprintf(stderr, "fleet: bad value for --%s (%s): '%s'\n", longopts[c - ARG_JSON].name,
                                ranges[c - ARG_JSON], optarg);
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "fleet: unexpected argument '%s'\n", argv[optind]);
                return -EINVAL;
        }
        if (opt->cases[CASE_LATENCY] && opt->host_latency == 0) {
                fprintf(stderr, "fleet: the latency rows need --host-latency above 0\n");
                return -EINVAL;
        }
        return 1;
}

int main(int argc, char *argv[]) {
        struct images imgs = {};
        struct rows rows = {};
        struct options opt;
        int r, ret = EXIT_FAILURE;

        r = parse_argv(argc, argv, &opt);
        if (r <= 0)
                return r == 0 ? EXIT_SUCCESS : 2;

        r = plan_rows(&opt, &imgs, &rows);
        if (r < 0) {
                fprintf(stderr, "fleet: %s\n", strerror(-r));
                goto out;
        }
        for (size_t i = 0; i < rows.n; i++)
                if (run_row(&opt, &rows.items[i]) < 0)
                        goto out;
        for (size_t i = 0; i < rows.n; i++)
                judge(rows.items, rows.n, &rows.items[i]);

        if (opt.json)
                print_json(&opt, rows.items, rows.n);
        else
                print_table(&opt, rows.items, rows.n);
        ret = fflush(stdout) == 0 && !ferror(stdout) ? EXIT_SUCCESS : EXIT_FAILURE;
out:
        free(rows.items);
        images_free(&imgs);
        return ret;
}
