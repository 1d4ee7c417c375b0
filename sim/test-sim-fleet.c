/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The fleet model without a socket: bus timing, arbitration, receive
 * buffers, node busy times and every fault, frame by frame with exact
 * times. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "isp-node-ram.h"
#include "sim-can-bits.h"
#include "sim-fleet.h"

#define EFF ISP_NODE_FRAME_EXTENDED
#define REQ(cmd, arg) ISP_NODE_REQUEST_ID(cmd, arg)
#define REP(cmd, node) ISP_NODE_REPLY_ID(cmd, node)
#define T0 UINT64_C(1000000000)
#define US UINT64_C(1000)
#define MS UINT64_C(1000000)

typedef struct Out {
        struct isp_node_frame frame;
        uint64_t t;
} Out;

typedef struct Bench {
        SimFleet *fleet;
        Out out[512];
        size_t n_out, next_out;
        char writebacks[64][16];
        size_t n_writebacks;
        char *log;
        size_t log_size;
        FILE *log_file;
} Bench;

static Bench *b;

static void on_output(SimFleet *fleet, const struct isp_node_frame *frame, void *userdata) {
        assert_ptr_equal(userdata, b);
        assert_true(b->n_out < ELEMENTSOF(b->out));
        b->out[b->n_out++] = (Out) { .frame = *frame, .t = sim_fleet_get_now(fleet) };
}

static int on_writeback(SimFleet *fleet, SimNode *node, void *userdata) {
        if (b->n_writebacks < ELEMENTSOF(b->writebacks))
                snprintf(b->writebacks[b->n_writebacks++], sizeof(b->writebacks[0]), "%s", sim_node_get_label(node));
        return 0;
}

static const SimFleetCallbacks callbacks = {
        .output = on_output,
        .writeback = on_writeback,
};

static const SimTiming timing_500k = {
        .bitrate = 500000,
        .erase_sector = 5 * MS,
        .program_byte = 6 * US,
        .crc_byte = 3 * US,
        .handle_frame = 10 * US,
        .writeback_delay = 100 * MS,
};

static int setup(void **state) {
        b = calloc(1, sizeof(Bench));
        assert_non_null(b);
        b->log_file = open_memstream(&b->log, &b->log_size);
        assert_non_null(b->log_file);
        return 0;
}

static int teardown(void **state) {
        sim_fleet_free(b->fleet);
        fclose(b->log_file);
        free(b->log);
        free(b);
        b = NULL;
        return 0;
}

static void fleet(const SimTiming *timing, uint8_t rx_depth) {
        assert_int_equal(sim_fleet_new(&b->fleet, timing, rx_depth, 1, b->log_file, &callbacks, b), 0);
}

static void add(uint8_t id, const SimFault *fault) {
        assert_int_equal(sim_fleet_add_node(b->fleet, id, fault), 0);
}

static struct isp_node_frame make(uint32_t id, int dlc, va_list ap) {
        struct isp_node_frame f = { .id = id | EFF, .dlc = (uint8_t) dlc };

        for (int i = 0; i < dlc; i++)
                f.data[i] = (uint8_t) va_arg(ap, int);
        return f;
}

/* The host puts a request on the bus at time t. */
static void send_at(uint64_t t, uint32_t id, int dlc, ...) {
        struct isp_node_frame f;
        va_list ap;

        va_start(ap, dlc);
        f = make(id, dlc, ap);
        va_end(ap);
        sim_fleet_receive(b->fleet, &f, t);
}

/* Bus time of a frame at 500 kbit/s. */
static uint64_t bus(uint32_t id, int dlc, ...) {
        struct isp_node_frame f;
        va_list ap;

        va_start(ap, dlc);
        f = make(id, dlc, ap);
        va_end(ap);
        return sim_can_bits_to_nsec(sim_can_frame_bits(&f), 500000);
}

static void run_until(uint64_t t) {
        sim_fleet_advance(b->fleet, t);
}

static void run_all(void) {
        uint64_t t;

        while ((t = sim_fleet_next_event(b->fleet)) != SIM_NSEC_INFINITY)
                sim_fleet_advance(b->fleet, t);
}

/* The next reply on the bus: its ID (flags included) and, unless t is 0,
 * the exact time it finished. Returns it for more checks. */
static const Out *expect_out(uint32_t id, uint64_t t) {
        const Out *o;

        if (b->next_out >= b->n_out)
                fail_msg("expected reply %08X, none came", id);
        o = &b->out[b->next_out++];
        if (o->frame.id != (id | EFF))
                fail_msg("expected reply %08X, got %08X", id, (unsigned) (o->frame.id & ISP_NODE_FRAME_ID_MASK));
        if (t != 0 && o->t != t)
                fail_msg("reply %08X at %llu ns, expected %llu ns (off by %lld)", id,
                         (unsigned long long) (o->t - T0), (unsigned long long) (t - T0),
                         (long long) (o->t - t));
        return o;
}

static void expect_no_more(void) {
        if (b->next_out < b->n_out)
                fail_msg("unexpected reply %08X", (unsigned) (b->out[b->next_out].frame.id & ISP_NODE_FRAME_ID_MASK));
}

static bool log_has(const char *line) {
        fflush(b->log_file);
        return b->log && strstr(b->log, line);
}

#define assert_log(line)                                                        \
        do {                                                                    \
                if (!log_has(line))                                             \
                        fail_msg("log lacks \"%s\"; it has:\n%s", line, b->log ? b->log : ""); \
        } while (0)

/* Start the fleet at T0 and let the start-up ANNOUNCEs go out. */
static void start(void) {
        sim_fleet_start(b->fleet, T0);
        run_all();
}

/* ---- timing off ---- */

static void test_timing_off(void **state) {
        SimTiming off = timing_500k;

        off.bitrate = 0;
        fleet(&off, 4);
        add(1, NULL);
        add(2, NULL);
        add(3, NULL);
        sim_fleet_start(b->fleet, T0);
        run_until(T0);
        expect_out(REP(7, 1), T0);
        expect_out(REP(7, 2), T0);
        expect_out(REP(7, 3), T0);

        send_at(T0 + 5 * US, REQ(0, 0xFF), 0);
        expect_out(REP(0, 1), T0 + 5 * US);
        expect_out(REP(0, 2), T0 + 5 * US);
        expect_out(REP(0, 3), T0 + 5 * US);

        /* no erase time either */
        send_at(T0 + 6 * US, REQ(0, 2), 0);
        send_at(T0 + 6 * US, REQ(3, 0), 0);
        expect_out(REP(0, 2), T0 + 6 * US);
        expect_out(REP(3, 2), T0 + 6 * US);
        expect_no_more();
        assert_int_equal(sim_fleet_next_event(b->fleet), T0 + 6 * US + 100 * MS); /* write-back */
}

/* ---- the bus ---- */

static void test_announce_takes_bus_time(void **state) {
        uint64_t announce;

        fleet(&timing_500k, 4);
        add(3, NULL);
        sim_fleet_start(b->fleet, T0);
        assert_int_equal(sim_fleet_next_event(b->fleet), T0);
        run_all();
        announce = sim_can_bits_to_nsec(sim_can_frame_bits(&b->out[0].frame), 500000);
        assert_true(announce >= 131 * 2 * US); /* 2 us a bit, at least 131 bits */
        expect_out(REP(7, 3), T0 + announce);
        expect_no_more();
        assert_int_equal(sim_fleet_next_event(b->fleet), SIM_NSEC_INFINITY);
}

static void test_request_reply_timing(void **state) {
        uint64_t t = T0 + 10 * MS, req, rep;
        const Out *o;

        fleet(&timing_500k, 4);
        add(3, NULL);
        start();
        expect_out(REP(7, 3), 0);

        /* CONNECT: request on the bus, 10 us to take it in, INFO on the bus */
        req = bus(REQ(0, 3), 0);
        send_at(t, REQ(0, 3), 0);
        run_until(t + 5 * MS);
        o = expect_out(REP(0, 3), 0);
        rep = sim_can_bits_to_nsec(sim_can_frame_bits(&o->frame), 500000);
        assert_int_equal(o->t, t + req + 10 * US + rep);

        /* PROGRAM 8 bytes: + 8 x 6 us */
        t += 10 * MS;
        send_at(t, REQ(2, 0x11200), 8, 1, 2, 3, 4, 5, 6, 7, 8);
        run_until(t + 5 * MS);
        expect_out(REP(2, 3), t + bus(REQ(2, 0x11200), 8, 1, 2, 3, 4, 5, 6, 7, 8) + 10 * US + 48 * US +
                   bus(REP(2, 3), 4, 0, 0x01, 0x12, 0x00));

        /* ERASE 3 sectors: + 3 x 5 ms */
        t += 10 * MS;
        /* (the model runs only up to each request: a write-back is due
         * 100 ms after every flash change) */
        send_at(t, REQ(3, 0), 4, 0x00, 0x10, 0x00, 3);
        run_until(t + 19 * MS);
        expect_out(REP(3, 3), t + bus(REQ(3, 0), 4, 0x00, 0x10, 0x00, 3) + 10 * US + 15 * MS + bus(REP(3, 3), 1, 0));

        /* full ERASE: 248 sectors, 1.24 s */
        t += 20 * MS;
        send_at(t, REQ(3, 0), 0);
        run_until(t + 1300 * MS);
        expect_out(REP(3, 3), t + bus(REQ(3, 0), 0) + 10 * US + 248 * 5 * MS + bus(REP(3, 3), 1, 0));

        /* CRC of 0x100 bytes: + 256 x 3 us */
        t += 2000 * MS;
        send_at(t, REQ(5, 0), 6, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00);
        run_all();
        o = expect_out(REP(5, 3), 0);
        assert_int_equal(o->t, t + bus(REQ(5, 0), 6, 0, 0, 0, 0, 1, 0) + 10 * US + 256 * 3 * US +
                         sim_can_bits_to_nsec(sim_can_frame_bits(&o->frame), 500000));
        expect_no_more();
}

/* Replies of many nodes to one request go out back to back in ID order. */
static void test_replies_arbitrate_by_id(void **state) {
        uint64_t t = T0 + 10 * MS, end;

        fleet(&timing_500k, 4);
        add(9, NULL);
        add(4, NULL);
        add(200, NULL);
        start();
        expect_out(REP(7, 4), 0);
        expect_out(REP(7, 9), 0);
        expect_out(REP(7, 200), 0);

        send_at(t, REQ(0, 0xFF), 0);
        run_all();
        end = t + bus(REQ(0, 0xFF), 0) + 10 * US;
        for (int i = 0; i < 3; i++) {
                static const uint8_t ids[] = { 4, 9, 200 };
                const Out *o = expect_out(REP(0, ids[i]), 0);

                end += sim_can_bits_to_nsec(sim_can_frame_bits(&o->frame), 500000);
                assert_int_equal(o->t, end);
        }
        expect_no_more();
}

/* A reply waits for the bus, and loses arbitration to a request (lower ID)
 * that is waiting when the bus comes free. */
static void test_reply_waits_and_loses_to_request(void **state) {
        uint64_t t = T0 + 10 * MS, a, c_start, c_end;

        fleet(&timing_500k, 4);
        add(3, NULL);
        add(4, NULL);
        start();
        expect_out(REP(7, 3), 0);
        expect_out(REP(7, 4), 0);

        /* A: DISCOVER at t. Node 3 and 4 take it in at t+a, reply ready at t+a+10us. */
        a = bus(REQ(0, 0xFF), 0);
        send_at(t, REQ(0, 0xFF), 0);
        /* B at t+a+5us: the bus is free, B goes out at once and is still on
         * the bus when the replies are ready */
        send_at(t + a + 5 * US, REQ(1, 0x100), 0);
        /* C while B is on the bus: when B ends, C (0x1A...) beats the replies (0x1B...) */
        send_at(t + a + 20 * US, REQ(1, 0x108), 0);
        run_all();

        c_start = t + a + 5 * US + bus(REQ(1, 0x100), 0);
        c_end = c_start + bus(REQ(1, 0x108), 0);
        {
                const Out *o = expect_out(REP(0, 3), 0);
                assert_int_equal(o->t, c_end + sim_can_bits_to_nsec(sim_can_frame_bits(&o->frame), 500000));
        }
        expect_out(REP(0, 4), 0);
        expect_no_more();
}

/* A request that finds the receive buffer full is lost. */
static void test_receive_buffer_overrun(void **state) {
        uint64_t t = T0 + 10 * MS;
        SimFleetStats stats;

        fleet(&timing_500k, 2);
        add(3, NULL);
        start();
        expect_out(REP(7, 3), 0);
        send_at(t, REQ(0, 3), 0);
        run_all();
        expect_out(REP(0, 3), 0);

        /* one sector erase (5 ms) and five READs right behind it */
        t += 10 * MS;
        send_at(t, REQ(3, 0), 4, 0x00, 0x10, 0x00, 1);
        for (int i = 0; i < 5; i++)
                send_at(t, REQ(1, 0x100 + 8 * i), 0);
        run_all();

        expect_out(REP(3, 3), 0);
        assert_int_equal(expect_out(REP(1, 3), 0)->frame.dlc, 8);
        assert_int_equal(expect_out(REP(1, 3), 0)->frame.dlc, 8);
        expect_no_more();
        sim_fleet_get_stats(b->fleet, &stats);
        assert_int_equal(stats.lost_overrun, 3);
        assert_log("node3: receive buffer full (2 frames), request 1A100110# lost");
        assert_log("node3: receive buffer full (2 frames), request 1A100118# lost");
        assert_log("node3: receive buffer full (2 frames), request 1A100120# lost");
}

/* The receive depth is the node's INFO byte 3; per node via the fault. */
static void test_rx_depth_in_info(void **state) {
        SimFault f = { .rx_depth = 9 };

        fleet(&timing_500k, 2);
        add(1, NULL);
        add(2, &f);
        start();
        assert_int_equal(expect_out(REP(7, 1), 0)->frame.data[3], 2);
        assert_int_equal(expect_out(REP(7, 2), 0)->frame.data[3], 9);
}

/* With a deep enough buffer nothing is lost, and a pipelined PROGRAM
 * window is acked in order. */
static void test_pipelined_program(void **state) {
        uint64_t t = T0 + 10 * MS;
        SimFleetStats stats;

        fleet(&timing_500k, 8);
        add(3, NULL);
        start();
        send_at(t, REQ(0, 3), 0);
        run_all();
        for (int i = 0; i < 8; i++)
                send_at(t + 5 * MS, REQ(2, 0x2000 + 8 * i), 8, i, i, i, i, i, i, i, i);
        run_all();
        expect_out(REP(7, 3), 0);
        expect_out(REP(0, 3), 0);
        for (int i = 0; i < 8; i++) {
                const Out *o = expect_out(REP(2, 3), 0);
                assert_int_equal(o->frame.data[0], 0);
                assert_int_equal(o->frame.data[3], (uint8_t) (8 * i));
                assert_int_equal(sim_node_get_flash(sim_fleet_find_node(b->fleet, 3))[0x2000 + 8 * i], i);
        }
        expect_no_more();
        sim_fleet_get_stats(b->fleet, &stats);
        assert_int_equal(stats.lost_overrun, 0);
        assert_log("node3: PROGRAM 0x02038 len 8 -> ok");
}

/* ---- faults ---- */

static void test_drop_every(void **state) {
        SimFault f = { .drop_every = 3 };
        SimFleetStats stats;

        fleet(&timing_500k, 4);
        add(3, &f);
        start();
        expect_out(REP(7, 3), 0);
        for (int i = 0; i < 6; i++) {
                send_at(T0 + (uint64_t) (i + 1) * MS, REQ(1, 0x100), 0); /* not selected: ignored */
                send_at(T0 + (uint64_t) (i + 1) * MS + 500 * US, REQ(0, 0xFF), 0);
        }
        run_all();
        /* received frames 3, 6, 9 and 12 are dropped; the even-numbered
         * ones are the DISCOVERs, so two of the six go unanswered */
        for (int i = 0; i < 4; i++)
                expect_out(REP(0, 3), 0);
        expect_no_more();
        sim_fleet_get_stats(b->fleet, &stats);
        assert_int_equal(stats.lost_dropped, 4);
        assert_log("node3: request 1A0000FF# dropped (drop-every=3)");
        assert_log("node3: request 1A100100# dropped (drop-every=3)");
}

static size_t count_drop_rate_replies(double rate, uint64_t seed) {
        SimFault f = { .drop_rate = rate };
        size_t n;

        sim_fleet_free(b->fleet);
        b->n_out = b->next_out = 0;
        assert_int_equal(sim_fleet_new(&b->fleet, &timing_500k, 4, seed, NULL, &callbacks, b), 0);
        add(3, &f);
        sim_fleet_start(b->fleet, T0);
        run_all();
        n = b->n_out;
        for (int i = 0; i < 200; i++)
                send_at(T0 + (uint64_t) (i + 1) * MS, REQ(0, 0xFF), 0);
        run_all();
        return b->n_out - n;
}

static void test_drop_rate(void **state) {
        size_t a, c;
        Out first[256];

        assert_int_equal(count_drop_rate_replies(0, 1), 200);
        assert_int_equal(count_drop_rate_replies(1, 1), 0);

        a = count_drop_rate_replies(0.25, 7);
        assert_true(a > 120 && a < 180);
        memcpy(first, b->out, sizeof(first));
        /* the same seed loses the same frames */
        c = count_drop_rate_replies(0.25, 7);
        assert_int_equal(a, c);
        for (size_t i = 0; i < a; i++)
                assert_int_equal(first[i].t, b->out[i].t);
        /* another seed, others */
        c = count_drop_rate_replies(0.25, 8);
        assert_true(c > 120 && c < 180);
        assert_true(a != c || memcmp(first, b->out, sizeof(first)) != 0);
}

static void test_power_cut(void **state) {
        SimFault f = { .power_cut_after = 3, .restart_delay = 200 * MS, .restart_delay_set = true };
        uint64_t t = T0 + 10 * MS, cut;
        SimNode *node;

        fleet(&timing_500k, 4);
        add(3, &f);
        start();
        expect_out(REP(7, 3), 0);
        node = sim_fleet_find_node(b->fleet, 3);

        send_at(t, REQ(0, 3), 0);                                   /* 1 */
        send_at(t + 1 * MS, REQ(2, 0x100), 2, 0x12, 0x34);          /* 2 */
        send_at(t + 2 * MS, REQ(2, 0x102), 2, 0x56, 0x78);          /* 3: cut while handling */
        cut = t + 2 * MS + bus(REQ(2, 0x102), 2, 0x56, 0x78);
        send_at(t + 3 * MS, REQ(0, 3), 0);                          /* off: nothing */
        run_until(t + 100 * MS);
        expect_out(REP(0, 3), 0);
        expect_out(REP(2, 3), 0);
        expect_no_more();
        assert_false(sim_node_is_powered(node));
        assert_int_equal(isp_node_get_mode(sim_node_get_core(node)), ISP_NODE_MODE_OFF);
        /* the third frame's bytes made it, its ack did not */
        assert_memory_equal(sim_node_get_flash(node) + 0x100, ((const uint8_t[]) { 0x12, 0x34, 0x56, 0x78 }), 4);
        assert_int_equal(b->n_writebacks, 1);
        assert_string_equal(b->writebacks[0], "node3");
        assert_log("node3: power cut after 3 frames; power returns in 200 ms");

        /* power returns: no valid entry, so ISP and ANNOUNCE */
        assert_int_equal(sim_fleet_next_event(b->fleet), cut + 200 * MS);
        run_all();
        {
                const Out *o = expect_out(REP(7, 3), 0);
                assert_int_equal(o->t, cut + 200 * MS + sim_can_bits_to_nsec(sim_can_frame_bits(&o->frame), 500000));
        }
        assert_true(sim_node_is_powered(node));
        assert_false(isp_node_is_selected(sim_node_get_core(node)));

        /* only once */
        t = cut + 300 * MS;
        for (int i = 0; i < 5; i++)
                send_at(t + (uint64_t) i * MS, REQ(0, 3), 0);
        run_all();
        for (int i = 0; i < 5; i++)
                expect_out(REP(0, 3), 0);
        expect_no_more();
}

/* A power cut with a valid entry boots the application: no ANNOUNCE. */
static void test_power_cut_with_valid_entry(void **state) {
        SimFault f = { .power_cut_after = 2, .restart_delay = 0, .restart_delay_set = true };
        SimNode *node;

        fleet(&timing_500k, 4);
        add(3, &f);
        node = sim_fleet_find_node(b->fleet, 3);
        start();
        expect_out(REP(7, 3), 0);
        send_at(T0 + 10 * MS, REQ(0, 3), 0);
        send_at(T0 + 11 * MS, REQ(2, 0x11000), 3, 0x02, 0x10, 0x03);
        run_all();
        expect_out(REP(0, 3), 0);
        expect_no_more();
        assert_int_equal(isp_node_get_mode(sim_node_get_core(node)), ISP_NODE_MODE_APPLICATION);
        assert_log("node3: power on -> application (valid entry at FF:1000)");
}

static void test_dead(void **state) {
        SimFault f = { .dead = true };

        fleet(&timing_500k, 4);
        add(1, NULL);
        add(2, &f);
        start();
        expect_out(REP(7, 1), 0);
        send_at(T0 + 10 * MS, REQ(0, 0xFF), 0);
        send_at(T0 + 11 * MS, REQ(0, 2), 0);
        run_all();
        expect_out(REP(0, 1), 0);
        expect_no_more();
        assert_log("node2: dead: will never answer");
}

static void test_duplicate(void **state) {
        SimFault f = { .duplicate = true, .drop_every = 1, .rx_depth = 3 };
        SimFleetStats stats;
        const Out *o1, *o2;

        fleet(&timing_500k, 4);
        add(3, &f);
        assert_int_equal(sim_fleet_get_n_nodes(b->fleet), 2);
        assert_string_equal(sim_node_get_label(sim_fleet_get_node(b->fleet, 0)), "node3");
        assert_string_equal(sim_node_get_label(sim_fleet_get_node(b->fleet, 1)), "node3-dup");
        start();
        /* two ANNOUNCEs with the same ID and different UIDs; the second
         * node shares the receive depth, not the other faults */
        o1 = expect_out(REP(7, 3), 0);
        o2 = expect_out(REP(7, 3), 0);
        assert_memory_not_equal(o1->frame.data + 4, o2->frame.data + 4, 4);
        assert_int_equal(o1->frame.data[3], 3);
        assert_int_equal(o2->frame.data[3], 3);
        assert_int_equal(sim_node_get_fault(sim_fleet_get_node(b->fleet, 1))->drop_every, 0);

        /* the first loses everything (drop-every=1); the second answers */
        send_at(T0 + 10 * MS, REQ(0, 3), 0);
        run_all();
        assert_memory_equal(expect_out(REP(0, 3), 0)->frame.data, o2->frame.data, 8);
        expect_no_more();
        sim_fleet_free(b->fleet);

        /* without drops: both are selected and both program; their
         * identical acks are one frame on the bus */
        f.drop_every = 0;
        b->n_out = b->next_out = 0;
        fleet(&timing_500k, 4);
        add(3, &f);
        start();
        expect_out(REP(7, 3), 0);
        expect_out(REP(7, 3), 0);
        send_at(T0 + 10 * MS, REQ(0, 3), 0);
        send_at(T0 + 11 * MS, REQ(2, 0x40), 1, 0xAA);
        run_all();
        expect_out(REP(0, 3), 0);
        expect_out(REP(0, 3), 0);
        expect_out(REP(2, 3), 0);
        expect_no_more();
        sim_fleet_get_stats(b->fleet, &stats);
        assert_int_equal(stats.merged, 1);
        assert_int_equal(sim_node_get_flash(sim_fleet_get_node(b->fleet, 0))[0x40], 0xAA);
        assert_int_equal(sim_node_get_flash(sim_fleet_get_node(b->fleet, 1))[0x40], 0xAA);
}

static void test_application(void **state) {
        SimFault f = { .application = true };
        uint64_t t = T0 + 10 * MS;

        fleet(&timing_500k, 4);
        add(5, &f);
        start();
        expect_no_more();
        assert_log("node5: running its application");

        send_at(t, REQ(0, 0xFF), 0);
        send_at(t + 1 * MS, REQ(7, 5), 4, 0x12, 0xAB, 0xCD, 0x34);
        run_all();
        {
                const Out *o = expect_out(REP(7, 5), 0);
                assert_int_equal(o->t, t + 1 * MS + bus(REQ(7, 5), 4, 0x12, 0xAB, 0xCD, 0x34) + 10 * US +
                                 sim_can_bits_to_nsec(sim_can_frame_bits(&o->frame), 500000));
        }
        expect_no_more();
        assert_log("node5: ENTER_ISP 5 -> reset into ISP, ANNOUNCE");
}

static void test_legacy_among_extended(void **state) {
        fleet(&timing_500k, 4);
        add(0, NULL);
        add(1, NULL);
        start();
        expect_out(REP(7, 1), 0);
        send_at(T0 + 10 * MS, REQ(0, 0xFF), 0);
        run_all();
        /* node 0's reply has the lower ID */
        assert_int_equal(expect_out(0x1B000000, 0)->frame.dlc, 0);
        assert_int_equal(expect_out(REP(0, 1), 0)->frame.dlc, 8);
        expect_no_more();
        assert_log("node0: power on -> ISP (legacy, no ANNOUNCE)");
        assert_log("node0: CONNECT -> ok (legacy)");
}

static void test_writeback(void **state) {
        uint64_t t = T0 + 10 * MS;

        fleet(&timing_500k, 4);
        add(3, NULL);
        add(4, NULL);
        start();
        send_at(t, REQ(0, 3), 0);
        send_at(t + 1 * MS, REQ(2, 0x100), 1, 0x00);
        run_until(t + 50 * MS);
        assert_int_equal(b->n_writebacks, 0);
        /* a second burst pushes the write-back out */
        send_at(t + 50 * MS, REQ(2, 0x101), 1, 0x00);
        run_until(t + 120 * MS);
        assert_int_equal(b->n_writebacks, 0);
        run_until(t + 151 * MS);
        assert_int_equal(b->n_writebacks, 1);
        assert_string_equal(b->writebacks[0], "node3");

        /* REBOOT writes back at once */
        send_at(t + 200 * MS, REQ(4, 0), 0);
        run_until(t + 201 * MS);
        assert_int_equal(b->n_writebacks, 2);
        assert_log("node3: REBOOT -> status 5 (no valid application), stays in ISP");

        assert_int_equal(sim_fleet_writeback_all(b->fleet), 0);
        assert_int_equal(b->n_writebacks, 4);
        assert_string_equal(b->writebacks[3], "node4");
}

static void test_not_requests_ignored(void **state) {
        struct isp_node_frame f = { .id = REQ(0, 0xFF), .dlc = 0 };
        SimFleetStats stats;

        fleet(&timing_500k, 4);
        add(3, NULL);
        start();
        expect_out(REP(7, 3), 0);
        sim_fleet_receive(b->fleet, &f, T0 + 10 * MS);                   /* standard ID */
        f.id = REQ(0, 0xFF) | EFF | ISP_NODE_FRAME_RTR;
        sim_fleet_receive(b->fleet, &f, T0 + 10 * MS);                   /* RTR */
        send_at(T0 + 10 * MS, REP(0, 0xFF), 0);                          /* a reply */
        send_at(T0 + 10 * MS, 0x0A0000FF, 0);
        run_all();
        expect_no_more();
        sim_fleet_get_stats(b->fleet, &stats);
        assert_int_equal(stats.requests, 0);
        assert_int_equal(stats.replies, 1);
}

static void test_log_lines(void **state) {
        uint64_t t = T0 + 10 * MS;

        fleet(&timing_500k, 4);
        add(3, NULL);
        start();
        send_at(t, REQ(0, 3), 1, ISP_NODE_CONNECT_QUIET);
        send_at(t + 1 * MS, REQ(2, 0x11200), 8, 1, 2, 3, 4, 5, 6, 7, 8);
        send_at(t + 2 * MS, REQ(2, 0x10000), 1, 0);
        send_at(t + 3 * MS, REQ(1, 0x1FFFC), 0);
        send_at(t + 4 * MS, REQ(3, 0), 4, 0x01, 0x10, 0x00, 2);
        send_at(t + 20 * MS, REQ(3, 0), 3, 0, 0, 0);
        send_at(t + 21 * MS, REQ(5, 0), 6, 0x01, 0x12, 0x00, 0x00, 0x00, 0x08);
        send_at(t + 22 * MS, REQ(0, 4), 0);
        run_all();

        assert_log("node3: power on -> ISP, ANNOUNCE uid ");
        assert_log("node3: CONNECT 3 -> selected quiet\n");
        assert_log("node3: PROGRAM 0x11200 len 8 -> ok (quiet, no ack)\n");
        assert_log("node3: PROGRAM 0x10000 len 1 -> status 1 (outside the writable range)\n");
        assert_log("node3: READ 0x1FFFC -> status 1 (outside flash)\n");
        assert_log("node3: ERASE 0x11000 count 2 -> ok\n");
        assert_log("node3: ERASE with DLC 3 -> status 3 (bad length or argument)\n");
        assert_log("node3: CRC 0x11200 len 0x00008 -> ok 0x");
        assert_log("node3: CONNECT 4 -> deselected\n");
}

int main(void) {
#define T(x) cmocka_unit_test_setup_teardown(x, setup, teardown)
        const struct CMUnitTest tests[] = {
                T(test_timing_off),
                T(test_announce_takes_bus_time),
                T(test_request_reply_timing),
                T(test_replies_arbitrate_by_id),
                T(test_reply_waits_and_loses_to_request),
                T(test_receive_buffer_overrun),
                T(test_rx_depth_in_info),
                T(test_pipelined_program),
                T(test_drop_every),
                T(test_drop_rate),
                T(test_power_cut),
                T(test_power_cut_with_valid_entry),
                T(test_dead),
                T(test_duplicate),
                T(test_application),
                T(test_legacy_among_extended),
                T(test_writeback),
                T(test_not_requests_ignored),
                T(test_log_lines),
        };

        return cmocka_run_group_tests_name("sim-fleet", tests, NULL, NULL);
}
