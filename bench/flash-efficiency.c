/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * flash-efficiency: how long a flash takes, and where the time goes, with
 * the real protocol engine (daemon/session.c) against the real timing
 * model of the simulator (sim/sim-fleet.c), entirely in virtual time: no
 * socket, no wall clock. The numbers depend on nothing but the code, so
 * two runs give the same table on any machine, loaded or not.
 *
 * For each image, window and node receive depth it flashes one node and
 * reports the modelled time per phase, the bus-limited lower bound of the
 * program phase (the bit times of the PROGRAM frames alone, stuff bits
 * included, from sim/sim-can-bits.h), bus utilisation while programming
 * and the frame counts. A run whose flash did not succeed, or whose node
 * does not hold exactly the image afterwards, fails the benchmark: no
 * number is printed from a broken run.
 *
 * The host is ideal unless --host-latency is given: a reply reaches the
 * engine the moment it ends on the bus, and what the engine sends is
 * queued for the bus at once.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
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
#include "session.h"
#include "sim-can-bits.h"
#include "sim-fleet.h"
#include "sim-options.h"

#define NODE_ID 3
#define MAX_LIST BENCH_MAX_LIST
#define MAX_IMAGES 16
/* An 8-byte extended data frame without stuff bits: 64 + 64 + 3 bits. */
#define FRAME8_BITS 131u

/* ------------------------------------------------------------------------ */
/* Options */

struct options {
        bool json;
        uint32_t bitrate;
        SimTiming timing;                       /* the node's times; bitrate set from .bitrate */
        uint64_t host_latency_nsec;
        double drop_rate;                       /* the fleet's drop-rate fault on the node */
        unsigned windows[MAX_LIST], n_windows;
        unsigned depths[MAX_LIST], n_depths;
        unsigned sizes[MAX_IMAGES], n_sizes;            /* generated images, KiB */
        const char *files[MAX_IMAGES];
        unsigned n_files;
};

struct image_spec {
        char label[64];
        struct isp_image *img;
};

/* ------------------------------------------------------------------------ */
/* One run's figures */

struct result {
        const struct image_spec *image;
        unsigned window, depth;
        unsigned max_in_flight;                 /* distinct PROGRAM frames unacknowledged, measured */

        uint64_t total_nsec;
        uint64_t phase_nsec[_SESSION_PHASE_MAX];

        uint64_t payload;                       /* bytes carried by distinct PROGRAM frames (program phase) */
        uint64_t program_frames;                /* PROGRAM frames sent in the program phase, resends included */
        uint64_t program_frames_distinct;
        uint64_t bound_nsec;                    /* bus time of the distinct PROGRAM frames */
        uint64_t ack_nsec;                      /* bus time of their first acks */
        uint64_t program_busy_nsec;             /* bus busy during the program phase, all traffic */

        struct session_stats session;
        SimFleetStats fleet;
};

/* ------------------------------------------------------------------------ */
/* The run: the engine on the virtual bus (bench-wire.h), and what it sees */

struct run {
        const struct options *opt;
        struct bench_wire *wire;
        struct session *s;

        enum session_phase phase;
        uint64_t phase_start;
        uint64_t busy_at_program_start;
        bool in_program;

        uint8_t sent_map[ISP_FLASH_SIZE / 8];   /* PROGRAM offsets sent in the program phase */
        uint8_t acked_map[ISP_FLASH_SIZE / 8];
        unsigned in_flight;

        bool finished;
        enum session_state state;
        char error_text[512];

        struct result *res;
};

static bool map_test_and_set(uint8_t *map, uint32_t offset) {
        uint8_t bit = (uint8_t) (1u << (offset % 8));
        bool was = map[offset / 8] & bit;

        map[offset / 8] |= bit;
        return was;
}

static uint64_t frame_nsec(const struct run *run, const struct isp_can_frame *f) {
        return bench_wire_frame_nsec(run->wire, f);
}

/* Engine → bus. */
static int on_send(void *userdata, const struct isp_can_frame *f) {
        struct run *run = userdata;

        if (run->phase == SESSION_PHASE_PROGRAM && bench_frame_cmd(f->id) == ISP_CMD_PROGRAM) {
                uint32_t offset = f->id & ISP_ID_ARG_MASK;

                run->res->program_frames++;
                if (offset < ISP_FLASH_SIZE && !map_test_and_set(run->sent_map, offset)) {
                        /* a resend is the same frame still in flight */
                        run->in_flight++;
                        if (run->in_flight > run->res->max_in_flight)
                                run->res->max_in_flight = run->in_flight;
                        run->res->program_frames_distinct++;
                        run->res->payload += f->len;
                        run->res->bound_nsec += frame_nsec(run, f);
                }
        }
        return bench_wire_send(run->wire, f);
}

static void on_phase(void *userdata, uint8_t node, enum session_phase phase) {
        struct run *run = userdata;
        uint64_t now = bench_wire_get_now(run->wire);
        SimFleetStats st;

        run->res->phase_nsec[run->phase] += now - run->phase_start;
        sim_fleet_get_stats(bench_wire_get_fleet(run->wire), &st);
        if (run->in_program) {
                /* The fleet counts a frame's bus time when it starts. The
                 * phase ends on its last ack, so the bus is idle then,
                 * unless a stray reply is on it (at most one frame more). */
                run->res->program_busy_nsec += st.busy_nsec - run->busy_at_program_start;
                run->in_program = false;
        }
        if (phase == SESSION_PHASE_PROGRAM) {
                run->busy_at_program_start = st.busy_nsec;
                run->in_program = true;
                run->in_flight = 0;
        }
        run->phase = phase;
        run->phase_start = now;
}

static void on_finished(void *userdata, enum session_state state, const char *error) {
        struct run *run = userdata;
        uint64_t now = bench_wire_get_now(run->wire);

        run->res->phase_nsec[run->phase] += now - run->phase_start;
        run->phase_start = now;
        run->finished = true;
        run->state = state;
        snprintf(run->error_text, sizeof(run->error_text), "%s", error ? error : "");
}

static const struct session_ops session_ops = {
        .send = on_send,
        .phase = on_phase,
        .finished = on_finished,
};

/* A reply reaches the engine: the acks are counted on the way. */
static void run_receive(void *host, const struct isp_can_frame *f, uint64_t now_usec) {
        struct run *run = host;

        if (run->phase == SESSION_PHASE_PROGRAM && bench_frame_cmd(f->id) == ISP_CMD_PROGRAM &&
            (f->id & ISP_ID_KIND_MASK) == ISP_ID_REPLY && f->len >= 4) {
                /* extended ack: status, then the offset it answers */
                uint32_t offset = (uint32_t) f->data[1] << 16 | (uint32_t) f->data[2] << 8 | f->data[3];

                if (offset < ISP_FLASH_SIZE && !map_test_and_set(run->acked_map, offset)) {
                        run->res->ack_nsec += frame_nsec(run, f);
                        if (run->in_flight > 0)
                                run->in_flight--;
                }
        }
        session_receive(run->s, f, now_usec);
}

static uint64_t run_deadline(void *host) {
        return session_deadline(((struct run *) host)->s);
}

static void run_timeout(void *host, uint64_t now_usec) {
        session_timeout(((struct run *) host)->s, now_usec);
}

static bool run_done(void *host) {
        return ((struct run *) host)->finished;
}

static const struct bench_host_ops run_host = {
        .receive = run_receive,
        .deadline = run_deadline,
        .timeout = run_timeout,
        .done = run_done,
};

_printf_(2, 3)
static int fail(const struct result *res, const char *format, ...) {
        va_list ap;

        fprintf(stderr, "flash-efficiency: %s, window %u, depth %u: ", res->image->label, res->window, res->depth);
        va_start(ap, format);
        vfprintf(stderr, format, ap);
        va_end(ap);
        fputc('\n', stderr);
        return -EIO;
}

/* What the node must hold after the update: the image as the node will
 * hold it, the ISP area untouched. */
static int check_flash(const struct result *res, SimNode *node, const struct isp_image *img) {
        const uint8_t *flash = sim_node_get_flash(node);
        uint32_t first;
        unsigned bad = bench_flash_diff(flash, img, &first);

        if (bad > 0)
                return fail(res, "the node's flash differs from the image in %u bytes, the first at offset "
                            "0x%05" PRIX32 " (0x%02X, expected 0x%02X)", bad, first, flash[first],
                            bench_expected_byte(img, first));
        return 0;
}

static int run_one(const struct options *opt, const struct image_spec *image, unsigned window, unsigned depth,
                   struct result *res) {
        struct bench_wire_config wcfg = {
                .timing = opt->timing,
                .rx_depth = (uint8_t) depth,
                .seed = SIM_DEFAULT_SEED,
                /* the host's whole round trip, charged on the way in */
                .latency_in = opt->host_latency_nsec,
        };
        struct session_config cfg;
        struct run *run;
        /* the longest frame: 8 data bytes, every stuff bit */
        uint64_t max_frame_nsec = sim_can_bits_to_nsec(FRAME8_BITS + (53 + 64) / 4, opt->bitrate);
        SimNode *node;
        uint64_t start, sum = 0;
        int r;

        *res = (struct result) { .image = image, .window = window, .depth = depth };
        wcfg.timing.bitrate = opt->bitrate;

        run = calloc(1, sizeof(*run));
        if (!run)
                return -ENOMEM;
        run->opt = opt;
        run->res = res;

        r = bench_wire_new(&run->wire, &wcfg);
        if (r < 0)
                goto out;
        r = sim_fleet_add_node(bench_wire_get_fleet(run->wire), NODE_ID, &(SimFault) { .drop_rate = opt->drop_rate });
        if (r < 0)
                goto out;
        node = sim_fleet_find_node(bench_wire_get_fleet(run->wire), NODE_ID);

        start = bench_wire_power_on(run->wire, /* enter_isp= */ false);
        run->phase_start = start;

        session_config_init(&cfg);
        cfg.window = window;
        cfg.quiet = false;      /* this sweep is about the acknowledged window */
        r = session_new(&run->s, SESSION_FLASH, NODE_ID, NULL, image->img, &cfg, &session_ops, run);
        if (r < 0)
                goto out;
        r = session_start(run->s, start / NSEC_PER_USEC);
        if (r < 0) {
                r = fail(res, "the session did not start: %s", session_get_error(run->s));
                goto out;
        }

        r = bench_wire_run(run->wire, &run_host, run);
        if (r == -EDEADLK) {
                r = fail(res, "stalled in phase %s: nothing left to happen", session_phase_to_string(run->phase));
                goto out;
        }
        if (r == -ETIME) {
                r = fail(res, "still running after %" PRIu64 " s of virtual time", BENCH_MAX_VIRTUAL_NSEC / NSEC_PER_SEC);
                goto out;
        }
        if (r < 0) {
                r = fail(res, "%s", strerror(-r));
                goto out;
        }

        res->total_nsec = bench_wire_get_now(run->wire) - start;
        res->session = *session_get_stats(run->s);
        sim_fleet_get_stats(bench_wire_get_fleet(run->wire), &res->fleet);

        /* Sanity: a broken run gives no numbers. */
        if (run->state != SESSION_SUCCEEDED) {
                r = fail(res, "the flash %s: %s", session_state_to_string(run->state), run->error_text);
                goto out;
        }
        r = check_flash(res, node, image->img);
        if (r < 0)
                goto out;
        if (isp_node_get_mode(sim_node_get_core(node)) != ISP_NODE_MODE_APPLICATION) {
                r = fail(res, "the node did not start its application after REBOOT");
                goto out;
        }
        for (unsigned i = 0; i < _SESSION_PHASE_MAX; i++)
                sum += res->phase_nsec[i];
        if (sum != res->total_nsec) {
                r = fail(res, "the phases add up to %" PRIu64 " ns, the flash took %" PRIu64 " ns", sum, res->total_nsec);
                goto out;
        }
        if (res->session.frames_sent != res->fleet.requests) {
                r = fail(res, "the engine sent %" PRIu64 " frames, the bus carried %" PRIu64,
                         res->session.frames_sent, res->fleet.requests);
                goto out;
        }
        if (res->session.restarts > 0) {
                /* the figures would mix two attempts */
                r = fail(res, "the node restarted %" PRIu64 " times during the flash", res->session.restarts);
                goto out;
        }
        if (res->payload == 0 || res->bound_nsec == 0 ||
            res->phase_nsec[SESSION_PHASE_PROGRAM] < res->bound_nsec + res->ack_nsec ||
            res->program_busy_nsec > res->phase_nsec[SESSION_PHASE_PROGRAM] + max_frame_nsec) {
                r = fail(res, "impossible program phase: %" PRIu64 " ns, PROGRAM frames alone %" PRIu64
                         " ns, with acks %" PRIu64 " ns, bus busy %" PRIu64 " ns",
                         res->phase_nsec[SESSION_PHASE_PROGRAM], res->bound_nsec,
                         res->bound_nsec + res->ack_nsec, res->program_busy_nsec);
                goto out;
        }
        if (res->max_in_flight > window || res->max_in_flight > depth) {
                r = fail(res, "%u PROGRAM frames in flight, more than the window or the depth", res->max_in_flight);
                goto out;
        }
        r = 0;
out:
        session_free(run->s);
        bench_wire_free(run->wire);
        free(run);
        return r;
}

/* ------------------------------------------------------------------------ */
/* Output */

static double bytes_per_sec(uint64_t bytes, uint64_t nsec) {
        return nsec ? (double) bytes * 1e9 / (double) nsec : 0.0;
}

/* Payload of back-to-back 8-byte frames with no stuff bits and nothing
 * else on the bus: 8 bytes per FRAME8_BITS bit times. */
static double frame_limit(uint32_t bitrate) {
        return 8.0 * bitrate / FRAME8_BITS;
}

static const enum session_phase table_phases[] = {
        SESSION_PHASE_CONNECT, SESSION_PHASE_ERASE, SESSION_PHASE_PROGRAM,
        SESSION_PHASE_VERIFY, SESSION_PHASE_COMMIT, SESSION_PHASE_REBOOT,
};

static void print_table(const struct options *opt, const struct result *res, size_t n) {
        printf("flash-efficiency: daemon/session.c against sim/sim-fleet.c in virtual time, %" PRIu32 " bit/s\n",
               opt->bitrate);
        printf("node: erase %.1f ms/sector, program %.1f us/byte, CRC %.1f us/byte, %.1f us/frame; "
               "host latency %.1f us; requests dropped: %g%%\n",
               bench_ms(opt->timing.erase_sector), (double) opt->timing.program_byte / 1e3,
               (double) opt->timing.crc_byte / 1e3, (double) opt->timing.handle_frame / 1e3,
               (double) opt->host_latency_nsec / 1e3, 100.0 * opt->drop_rate);
        printf("8-byte frame payload limit: %.0f B/s (%u bits a frame, no stuff bits)\n\n",
               frame_limit(opt->bitrate), FRAME8_BITS);

        printf("%-12s %6s %3s %3s %3s | %8s %7s %7s %7s %6s %6s %6s | %7s %5s %5s %4s | %6s %4s | %5s %4s %3s\n",
               "image", "bytes", "win", "dep", "fly",
               "total", "connect", "erase", "program", "verify", "commit", "reboot",
               "bound", "p/bnd", "p/ack", "bus%", "B/s", "eff%", "frames", "retx", "ovr");
        for (size_t i = 0; i < n; i++) {
                const struct result *r = &res[i];

                printf("%-12.12s %6" PRIu64 " %3u %3u %3u | %8.1f", r->image->label, r->payload,
                       r->window, r->depth, r->max_in_flight, bench_ms(r->total_nsec));
                for (size_t j = 0; j < ELEMENTSOF(table_phases); j++)
                        printf(j == 0 ? " %7.1f" : j < 3 ? " %7.1f" : " %6.1f", bench_ms(r->phase_nsec[table_phases[j]]));
                printf(" | %7.1f %5.2f %5.2f %4.0f | %6.0f %4.1f | %5" PRIu64 " %4" PRIu64 " %3" PRIu64 "\n",
                       bench_ms(r->bound_nsec),
                       bench_ratio(r->phase_nsec[SESSION_PHASE_PROGRAM], r->bound_nsec),
                       bench_ratio(r->phase_nsec[SESSION_PHASE_PROGRAM], r->bound_nsec + r->ack_nsec),
                       100.0 * bench_ratio(r->program_busy_nsec, r->phase_nsec[SESSION_PHASE_PROGRAM]),
                       bytes_per_sec(r->payload, r->total_nsec),
                       100.0 * bytes_per_sec(r->payload, r->total_nsec) / frame_limit(opt->bitrate),
                       r->session.frames_sent, r->session.retransmissions, r->fleet.lost_overrun);
        }
        printf("\n"
               "times in ms of virtual time. bytes: payload of the PROGRAM frames; win: configured window;\n"
               "dep: node receive depth; fly: most PROGRAM frames seen unacknowledged at once.\n"
               "bound: bus time of the PROGRAM frames alone (stuff bits included); p/bnd: program time / bound;\n"
               "p/ack: program time / (PROGRAM frames + their acks); bus%%: bus busy while programming.\n"
               "B/s: payload / total time; eff%%: that against the 8-byte frame payload limit.\n"
               "frames: frames the engine sent; retx: retransmissions; ovr: frames lost to full receive buffers.\n");
}

static void print_json(const struct options *opt, const struct result *res, size_t n) {
        printf("{\"bitrate\":%" PRIu32 ",\"timing_ns\":{\"erase_sector\":%" PRIu64 ",\"program_byte\":%" PRIu64
               ",\"crc_byte\":%" PRIu64 ",\"handle_frame\":%" PRIu64 "},\"host_latency_ns\":%" PRIu64 ",\"drop_rate\":%g"
               ",\"frame_limit_bytes_per_sec\":%.1f,\"runs\":[",
               opt->bitrate, opt->timing.erase_sector, opt->timing.program_byte,
               opt->timing.crc_byte, opt->timing.handle_frame, opt->host_latency_nsec, opt->drop_rate,
               frame_limit(opt->bitrate));
        for (size_t i = 0; i < n; i++) {
                const struct result *r = &res[i];
                uint64_t prog = r->phase_nsec[SESSION_PHASE_PROGRAM];

                printf("%s{\"image\":", i ? "," : "");
                bench_json_string(r->image->label);
                printf(",\"image_data_bytes\":%zu,\"payload_bytes\":%" PRIu64 ",\"window\":%u,\"rx_depth\":%u"
                       ",\"max_in_flight\":%u,\"result\":\"succeeded\",\"total_ns\":%" PRIu64 ",\"phases_ns\":{",
                       r->image->img->data_bytes, r->payload, r->window, r->depth, r->max_in_flight, r->total_nsec);
                for (size_t j = 0; j < ELEMENTSOF(table_phases); j++)
                        printf("%s\"%s\":%" PRIu64, j ? "," : "", session_phase_to_string(table_phases[j]),
                               r->phase_nsec[table_phases[j]]);
                printf("},\"program_bound_ns\":%" PRIu64 ",\"program_ack_bound_ns\":%" PRIu64
                       ",\"program_over_bound\":%.4f,\"program_over_ack_bound\":%.4f"
                       ",\"program_bus_busy_ns\":%" PRIu64 ",\"program_bus_utilisation\":%.4f"
                       ",\"bytes_per_sec\":%.1f,\"efficiency\":%.4f"
                       ",\"frames_sent\":%" PRIu64 ",\"program_frames\":%" PRIu64 ",\"program_frames_distinct\":%" PRIu64
                       ",\"retransmissions\":%" PRIu64 ",\"timeouts\":%" PRIu64 ",\"bus_requests\":%" PRIu64
                       ",\"bus_replies\":%" PRIu64 ",\"overruns\":%" PRIu64 ",\"dropped\":%" PRIu64
                       ",\"bus_busy_ns\":%" PRIu64 "}",
                       r->bound_nsec, r->bound_nsec + r->ack_nsec,
                       bench_ratio(prog, r->bound_nsec), bench_ratio(prog, r->bound_nsec + r->ack_nsec),
                       r->program_busy_nsec, bench_ratio(r->program_busy_nsec, prog),
                       bytes_per_sec(r->payload, r->total_nsec),
                       bytes_per_sec(r->payload, r->total_nsec) / frame_limit(opt->bitrate),
                       r->session.frames_sent, r->program_frames, r->program_frames_distinct,
                       r->session.retransmissions, r->session.timeouts, r->fleet.requests,
                       r->fleet.replies, r->fleet.lost_overrun, r->fleet.lost_dropped, r->fleet.busy_nsec);
        }
        printf("]}\n");
}

/* ------------------------------------------------------------------------ */
/* Command line */

static void usage(FILE *f) {
        fprintf(f,
                "Usage: flash-efficiency [OPTION...] [IMAGE.hex|IMAGE.bin...]\n"
                "\n"
                "Flash one simulated node with the protocol engine in virtual time and report\n"
                "where the time goes. Without IMAGE or --size: generated images laid out like\n"
                "the example images of 16 and 56 KiB.\n"
                "\n"
                "      --json               one JSON object instead of the table\n"
                "      --bitrate BPS        bus bitrate (default %u)\n"
                "      --windows LIST       engine windows, e.g. 1,2,4,8 (default)\n"
                "      --depths LIST        node receive depths, e.g. 2,4,8 (default)\n"
                "      --size KIB           a generated example-like image of KIB KiB (1-60;\n"
                "                           repeatable)\n"
                "      --host-latency T     from a reply's end on the bus to the engine (default 0)\n"
                "      --erase-time T       node: erase one 512-byte sector (default 5ms)\n"
                "      --program-time T     node: program one byte (default 6us)\n"
                "      --crc-time T         node: CRC one byte (default 3us)\n"
                "      --handle-time T      node: take any request frame in (default 10us)\n"
                "      --drop-rate F        node: lose this fraction of requests (0.01 or 1%%;\n"
                "                           seeded, so the same frames every run)\n"
                "  -h, --help               this text\n"
                "\n"
                "T is a duration as stcisp-sim takes it: 250us, 1.5ms, 0.\n",
                SIM_DEFAULT_BITRATE);
}

static int parse_argv(int argc, char *argv[], struct options *opt) {
        enum { ARG_JSON = 0x100, ARG_BITRATE, ARG_WINDOWS, ARG_DEPTHS, ARG_SIZE, ARG_LATENCY,
               ARG_ERASE_TIME, ARG_PROGRAM_TIME, ARG_CRC_TIME, ARG_HANDLE_TIME, ARG_DROP_RATE };
        /* in the order of the enum: an error names longopts[c - ARG_JSON] */
        static const struct option longopts[] = {
                { "json",         no_argument,       NULL, ARG_JSON },
                { "bitrate",      required_argument, NULL, ARG_BITRATE },
                { "windows",      required_argument, NULL, ARG_WINDOWS },
                { "depths",       required_argument, NULL, ARG_DEPTHS },
                { "size",         required_argument, NULL, ARG_SIZE },
                { "host-latency", required_argument, NULL, ARG_LATENCY },
                { "erase-time",   required_argument, NULL, ARG_ERASE_TIME },
                { "program-time", required_argument, NULL, ARG_PROGRAM_TIME },
                { "crc-time",     required_argument, NULL, ARG_CRC_TIME },
                { "handle-time",  required_argument, NULL, ARG_HANDLE_TIME },
                { "drop-rate",    required_argument, NULL, ARG_DROP_RATE },
                { "help",         no_argument,       NULL, 'h' },
                {}
        };
        char err[256];
        unsigned long v;
        uint64_t *dur;
        int c;

        *opt = (struct options) {
                .bitrate = SIM_DEFAULT_BITRATE,
                /* the simulator's defaults (stcisp-sim --help) */
                .timing = {
                        .erase_sector = SIM_DEFAULT_ERASE_TIME,
                        .program_byte = SIM_DEFAULT_PROGRAM_TIME,
                        .crc_byte = SIM_DEFAULT_CRC_TIME,
                        .handle_frame = SIM_DEFAULT_HANDLE_TIME,
                        .writeback_delay = SIM_DEFAULT_WRITEBACK_DELAY,
                },
                .windows = { 1, 2, 4, 8 }, .n_windows = 4,
                .depths = { 2, 4, 8 }, .n_depths = 3,
        };

        while ((c = getopt_long(argc, argv, "h", longopts, NULL)) >= 0)
                switch (c) {
                case ARG_JSON:
                        opt->json = true;
                        break;
                case ARG_BITRATE:
                        if (bench_parse_uint(optarg, 1000, 1000000, &v) < 0)
                                goto bad;
                        opt->bitrate = (uint32_t) v;
                        break;
                case ARG_WINDOWS:
                        if (bench_parse_list(optarg, 1, 255, opt->windows, &opt->n_windows) < 0)
                                goto bad;
                        break;
                case ARG_DEPTHS:
                        if (bench_parse_list(optarg, 1, 255, opt->depths, &opt->n_depths) < 0)
                                goto bad;
                        break;
                case ARG_SIZE:
                        if (opt->n_sizes >= MAX_IMAGES || bench_parse_uint(optarg, 1, 60, &v) < 0)
                                goto bad;
                        opt->sizes[opt->n_sizes++] = (unsigned) v;
                        break;
                case ARG_LATENCY:
                case ARG_ERASE_TIME:
                case ARG_PROGRAM_TIME:
                case ARG_CRC_TIME:
                case ARG_HANDLE_TIME:
                        dur = c == ARG_LATENCY ? &opt->host_latency_nsec :
                              c == ARG_ERASE_TIME ? &opt->timing.erase_sector :
                              c == ARG_PROGRAM_TIME ? &opt->timing.program_byte :
                              c == ARG_CRC_TIME ? &opt->timing.crc_byte : &opt->timing.handle_frame;
                        if (sim_parse_duration(optarg, dur, err, sizeof(err)) < 0) {
                                fprintf(stderr, "flash-efficiency: --%s: %s\n",
                                        longopts[c - ARG_JSON].name, err);
                                return -EINVAL;
                        }
                        break;
                case ARG_DROP_RATE:
                        if (sim_parse_fraction(optarg, &opt->drop_rate, err, sizeof(err)) < 0) {
                                fprintf(stderr, "flash-efficiency: --drop-rate: %s\n", err);
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

        for (int i = optind; i < argc; i++) {
                if (opt->n_files >= MAX_IMAGES) {
                        fprintf(stderr, "flash-efficiency: at most %u images\n", MAX_IMAGES);
                        return -EINVAL;
                }
                opt->files[opt->n_files++] = argv[i];
        }
        if (opt->n_files == 0 && opt->n_sizes == 0) {
                opt->sizes[opt->n_sizes++] = 16;
                opt->sizes[opt->n_sizes++] = 56;
        }
        if (opt->n_sizes + opt->n_files > MAX_IMAGES) {
                fprintf(stderr, "flash-efficiency: at most %u images\n", MAX_IMAGES);
                return -EINVAL;
        }
        return 1;

bad:
        fprintf(stderr, "flash-efficiency: bad value for --%s: '%s'\n",
                c == ARG_BITRATE ? "bitrate (1000-1000000)" :
                c == ARG_WINDOWS ? "windows (a list of 1-255)" :
                c == ARG_DEPTHS ? "depths (a list of 1-255)" :
                "size (1-60 KiB)", optarg);
        return -EINVAL;
}

int main(int argc, char *argv[]) {
        struct image_spec images[MAX_IMAGES] = {};
        struct options opt;
        struct result *res = NULL;
        size_t n_images = 0, n_res = 0;
        int r, ret = EXIT_FAILURE;

        r = parse_argv(argc, argv, &opt);
        if (r <= 0)
                return r == 0 ? EXIT_SUCCESS : 2;

        for (unsigned i = 0; i < opt.n_sizes; i++) {
                struct image_spec *im = &images[n_images];

                if (bench_image_example(opt.sizes[i], &im->img) < 0)
                        goto out;
                snprintf(im->label, sizeof(im->label), "gen-%uk", opt.sizes[i]);
                n_images++;
        }
        for (unsigned i = 0; i < opt.n_files; i++) {
                struct image_spec *im = &images[n_images];
                const char *base = strrchr(opt.files[i], '/');

                if (bench_image_load(opt.files[i], &im->img) < 0)
                        goto out;
                snprintf(im->label, sizeof(im->label), "%s", base ? base + 1 : opt.files[i]);
                n_images++;
        }

        res = calloc(n_images * opt.n_windows * opt.n_depths, sizeof(*res));
        if (!res)
                goto out;
        for (size_t i = 0; i < n_images; i++)
                for (unsigned d = 0; d < opt.n_depths; d++)
                        for (unsigned w = 0; w < opt.n_windows; w++) {
                                r = run_one(&opt, &images[i], opt.windows[w], opt.depths[d], &res[n_res]);
                                if (r < 0)
                                        goto out;
                                n_res++;
                        }

        if (opt.json)
                print_json(&opt, res, n_res);
        else
                print_table(&opt, res, n_res);
        ret = fflush(stdout) == 0 && !ferror(stdout) ? EXIT_SUCCESS : EXIT_FAILURE;
out:
        free(res);
        for (size_t i = 0; i < n_images; i++)
                free(images[i].img);
        return ret;
}
