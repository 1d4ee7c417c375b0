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

/* docs/protocol.md 12.1's image, as the node holds it after an update. */
static void put_example_image(SimNode *node) {
        uint8_t *flash = sim_node_get_flash(node);

        memcpy(flash + 0x11000, ((const uint8_t[]) { 0x02, 0x12, 0x34 }), 3);
        memcpy(flash + 0x11234, ((const uint8_t[]) { 0x75, 0x81, 0x07, 0x12, 0x00, 0x10, 0x80, 0xFE }), 8);
        memcpy(flash + 0x00100, ((const uint8_t[]) { 0xAA, 0xBB, 0xCC, 0xDD }), 4);
}

/* The node's UID, as its INFO gives it. */
static void uid_of(SimNode *node, uint8_t ret[4]) {
        uint8_t info[8];

        isp_node_get_info(sim_node_get_core(node), info);
        memcpy(ret, info + 4, 4);
}

/* The next reply is IDENTITY from `id` with this node's UID and that CRC. */
static const Out *expect_identity(uint8_t id, SimNode *node, uint32_t crc, uint64_t t) {
        const Out *o = expect_out(0x1B600000 | id, t);
        uint8_t want[8];

        uid_of(node, want);
        want[4] = (uint8_t) (crc >> 24);
        want[5] = (uint8_t) (crc >> 16);
        want[6] = (uint8_t) (crc >> 8);
        want[7] = (uint8_t) crc;
        assert_int_equal(o->frame.dlc, 8);
        assert_memory_equal(o->frame.data, want, 8);
        return o;
}

/* CRC-32 of an erased application area (126,976 bytes of 0xFF). */
#define ERASED_APP_CRC 0xAE228DC0

/* The `app` fault: the helper runs from the start and answers IDENTIFY
 * and ENTER_ISP, nothing of the ISP's. */
static void test_application(void **state) {
        SimFault f = { .application = true, .app_version = 0x00010002 };
        uint64_t t = T0 + 10 * MS;
        SimNode *node;
        char line[64];
        uint8_t uid[4];

        fleet(&timing_500k, 4);
        add(5, &f);
        node = sim_fleet_find_node(b->fleet, 5);
        start();
        expect_no_more();
        assert_log("node5: running its application");
        assert_non_null(sim_node_get_app(node));

        /* the ISP's commands go unanswered */
        send_at(t, REQ(0, 0xFF), 0);
        send_at(t + 1 * MS, REQ(0, 5), 0);
        run_all();
        expect_no_more();

        /* IDENTITY: the UID of its INFO and the CRC of its flash */
        send_at(t + 2 * MS, REQ(6, 5), 1, 0x00);
        run_all();
        {
                const Out *o = expect_identity(5, node, ERASED_APP_CRC, 0);
                assert_int_equal(o->t, t + 2 * MS + bus(REQ(6, 5), 1, 0x00) + 10 * US +
                                 sim_can_bits_to_nsec(sim_can_frame_bits(&o->frame), 500000));
        }
        uid_of(node, uid);
        snprintf(line, sizeof(line), "node5: IDENTIFY -> UID %02X%02X%02X%02X, image AE228DC0\n",
                 uid[0], uid[1], uid[2], uid[3]);
        assert_log(line);

        /* ABOUT, to all: the app-version fault's version, CRC ready */
        send_at(t + 3 * MS, REQ(6, 0xFF), 1, 0x01);
        run_all();
        assert_memory_equal(expect_out(0x1B600105, 0)->frame.data,
                            ((const uint8_t[]) { 0x01, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00, 0x02 }), 8);
        assert_log("node5: IDENTIFY ABOUT -> helper 1, application version 0x00010002, image CRC computed\n");

        /* another node's, and an unknown variant */
        send_at(t + 4 * MS, REQ(6, 6), 1, 0x00);
        send_at(t + 5 * MS, REQ(6, 5), 1, 0x02);
        run_all();
        expect_no_more();

        /* ENTER_ISP: reset into ISP, ANNOUNCE */
        send_at(t + 6 * MS, REQ(7, 5), 4, 0x12, 0xAB, 0xCD, 0x34);
        run_all();
        {
                const Out *o = expect_out(REP(7, 5), 0);
                assert_int_equal(o->t, t + 6 * MS + bus(REQ(7, 5), 4, 0x12, 0xAB, 0xCD, 0x34) + 10 * US +
                                 sim_can_bits_to_nsec(sim_can_frame_bits(&o->frame), 500000));
                assert_memory_equal(o->frame.data + 4, uid, 4);
        }
        expect_no_more();
        assert_log("node5: ENTER_ISP 5 -> reset into ISP, ANNOUNCE");
        assert_int_equal(isp_node_get_mode(sim_node_get_core(node)), ISP_NODE_MODE_ISP);
        assert_null(sim_node_get_app(node));

        /* now the ISP answers, and the application's commands do not */
        send_at(t + 10 * MS, REQ(6, 5), 1, 0x00);
        send_at(t + 11 * MS, REQ(7, 0xFF), 4, 0x12, 0xAB, 0xCD, 0x34);
        send_at(t + 12 * MS, REQ(0, 0xFF), 0);
        run_all();
        expect_out(REP(0, 5), 0);
        expect_no_more();
}

/* An IDENTITY before the helper's CRC is done waits for it; ABOUT does
 * not. */
static void test_identify_waits_for_crc(void **state) {
        SimTiming timing = timing_500k;
        SimFault f = { .application = true };
        SimNode *node;

        timing.app_crc = 50 * MS;
        fleet(&timing, 4);
        add(5, &f);
        node = sim_fleet_find_node(b->fleet, 5);
        put_example_image(node);
        sim_fleet_start(b->fleet, T0);

        send_at(T0 + 10 * MS, REQ(6, 5), 1, 0x00);
        send_at(T0 + 20 * MS, REQ(6, 5), 1, 0x01);
        run_until(T0 + 49 * MS);
        assert_memory_equal(expect_out(0x1B600105, 0)->frame.data,
                            ((const uint8_t[]) { 0x01, 0x03, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00 }), 8);
        expect_no_more();
        assert_log("node5: IDENTIFY -> waits for the image CRC\n");
        assert_log("node5: IDENTIFY ABOUT -> helper 1, application version 0x00000000, image CRC not yet computed\n");

        run_all();
        {
                const Out *o = expect_identity(5, node, 0x5907571D, 0);
                assert_int_equal(o->t, T0 + 50 * MS + sim_can_bits_to_nsec(sim_can_frame_bits(&o->frame), 500000));
        }
        expect_no_more();
        assert_log(", image 5907571D (waited for the CRC)\n");

        /* without the timing model, at once */
        sim_fleet_free(b->fleet);
        b->n_out = b->next_out = 0;
        timing.bitrate = 0;
        fleet(&timing, 4);
        add(5, &f);
        node = sim_fleet_find_node(b->fleet, 5);
        sim_fleet_start(b->fleet, T0);
        send_at(T0, REQ(6, 0xFF), 1, 0x00);
        expect_identity(5, node, ERASED_APP_CRC, T0);
        expect_no_more();
}

/* The ISP starts the application (REBOOT, or a power-up with a valid
 * entry): the helper runs it, with the CRC of what was flashed. */
static void test_isp_starts_helper(void **state) {
        uint64_t t = T0 + 10 * MS;
        SimNode *node, *other;

        fleet(&timing_500k, 4);
        add(3, NULL);
        add(4, NULL);
        node = sim_fleet_find_node(b->fleet, 3);
        other = sim_fleet_find_node(b->fleet, 4);
        put_example_image(other);
        start();
        expect_out(REP(7, 3), 0);
        expect_no_more();
        assert_log("node4: power on -> application (valid entry at FF:1000)");
        assert_int_equal(isp_node_get_mode(sim_node_get_core(other)), ISP_NODE_MODE_APPLICATION);

        send_at(t, REQ(0, 3), 0);
        for (uint32_t o = 0; o < 0x20000; o += 8) {
                uint8_t *flash = sim_node_get_flash(other);

                if (o >= 0x11000 && o < 0x11008)
                        continue;
                if (memcmp(flash + o, "\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF", 8) != 0 && (o < 0x10000 || o >= 0x11000))
                        send_at(t + 1 * MS + o * US / 8, REQ(2, o), 8, flash[o], flash[o + 1], flash[o + 2],
                                flash[o + 3], flash[o + 4], flash[o + 5], flash[o + 6], flash[o + 7]);
        }
        send_at(t + 100 * MS, REQ(2, 0x11001), 2, 0x12, 0x34);
        send_at(t + 101 * MS, REQ(2, 0x11000), 1, 0x02);
        send_at(t + 102 * MS, REQ(4, 0), 0);
        /* both applications answer IDENTIFY to all, lower id first */
        send_at(t + 110 * MS, REQ(6, 0xFF), 1, 0x00);
        run_all();
        expect_out(REP(0, 3), 0);
        expect_out(REP(2, 3), 0); /* 0x00100 */
        expect_out(REP(2, 3), 0); /* 0x11230 and 0x11238: the 8 bytes at 0x11234 */
        expect_out(REP(2, 3), 0);
        expect_out(REP(2, 3), 0); /* the entry, hh ll then the opcode */
        expect_out(REP(2, 3), 0);
        assert_int_equal(expect_out(REP(4, 3), 0)->frame.data[0], 0);
        expect_identity(3, node, 0x5907571D, 0);
        expect_identity(4, other, 0x5907571D, 0);
        expect_no_more();
        assert_log("node3: REBOOT -> ok, application started");
        assert_memory_equal(sim_node_get_flash(node), sim_node_get_flash(other), 0x20000);
}

/* no-helper: the application answers nothing; its ISP still works. */
static void test_no_helper(void **state) {
        SimFault f = { .application = true, .no_helper = true };
        uint64_t t = T0 + 10 * MS;
        SimNode *node;

        fleet(&timing_500k, 4);
        add(5, &f);
        node = sim_fleet_find_node(b->fleet, 5);
        start();
        assert_log("node5: its application has no helper (no-helper): it answers nothing");
        assert_null(sim_node_get_app(node));
        send_at(t, REQ(6, 5), 1, 0x00);
        send_at(t + 1 * MS, REQ(6, 0xFF), 1, 0x01);
        send_at(t + 2 * MS, REQ(7, 5), 4, 0x12, 0xAB, 0xCD, 0x34);
        send_at(t + 3 * MS, REQ(7, 0xFF), 4, 0x12, 0xAB, 0xCD, 0x34);
        run_all();
        expect_no_more();
        assert_int_equal(isp_node_get_mode(sim_node_get_core(node)), ISP_NODE_MODE_APPLICATION);

        /* in its ISP (after a power cycle without a valid entry), REBOOT
         * works; the application it starts is as silent */
        sim_fleet_free(b->fleet);
        b->n_out = b->next_out = 0;
        f.application = false;
        fleet(&timing_500k, 4);
        add(5, &f);
        node = sim_fleet_find_node(b->fleet, 5);
        start();
        expect_out(REP(7, 5), 0);
        send_at(t, REQ(0, 5), 0);
        send_at(t + 1 * MS, REQ(2, 0x11000), 3, 0x02, 0x12, 0x34);
        send_at(t + 2 * MS, REQ(4, 0), 0);
        send_at(t + 3 * MS, REQ(6, 5), 1, 0x00);
        send_at(t + 4 * MS, REQ(7, 5), 4, 0x12, 0xAB, 0xCD, 0x34);
        run_all();
        expect_out(REP(0, 5), 0);
        expect_out(REP(2, 5), 0);
        assert_int_equal(expect_out(REP(4, 5), 0)->frame.data[0], 0);
        expect_no_more();
        assert_int_equal(isp_node_get_mode(sim_node_get_core(node)), ISP_NODE_MODE_APPLICATION);
}

/* boot-fail: every application the ISP starts is back in ISP 50 ms
 * later, announced; one running from the start (`app`) is fine. */
static void test_boot_fail(void **state) {
        SimFault f = { .application = true, .boot_fail = true };
        uint64_t t = T0 + 10 * MS, started;
        SimNode *node;

        fleet(&timing_500k, 4);
        add(5, &f);
        node = sim_fleet_find_node(b->fleet, 5);
        put_example_image(node);
        start();
        send_at(t, REQ(6, 5), 1, 0x00);
        run_all();
        expect_identity(5, node, 0x5907571D, 0);

        /* ENTER_ISP, then REBOOT into the (same, valid) image */
        send_at(t + 1 * MS, REQ(7, 5), 4, 0x12, 0xAB, 0xCD, 0x34);
        send_at(t + 2 * MS, REQ(0, 5), 0);
        send_at(t + 3 * MS, REQ(4, 0), 0);
        started = t + 3 * MS + bus(REQ(4, 0), 0) + 10 * US;
        /* the application that does not come up answers nothing */
        send_at(t + 20 * MS, REQ(6, 5), 1, 0x00);
        send_at(t + 21 * MS, REQ(7, 5), 4, 0x12, 0xAB, 0xCD, 0x34);
        run_until(started + SIM_BOOT_FAIL_DELAY - 1);
        expect_out(REP(7, 5), 0);
        expect_out(REP(0, 5), 0);
        assert_int_equal(expect_out(REP(4, 5), 0)->frame.data[0], 0);
        expect_no_more();
        assert_int_equal(isp_node_get_mode(sim_node_get_core(node)), ISP_NODE_MODE_APPLICATION);
        assert_log("node5: its application does not come up (boot-fail): back in ISP in 50 ms\n");

        run_all();
        {
                const Out *o = expect_out(REP(7, 5), 0);
                assert_int_equal(o->t, started + 50 * MS + sim_can_bits_to_nsec(sim_can_frame_bits(&o->frame), 500000));
        }
        expect_no_more();
        assert_log("node5: its application did not come up: reset into ISP, ANNOUNCE\n");
        assert_int_equal(isp_node_get_mode(sim_node_get_core(node)), ISP_NODE_MODE_ISP);
        assert_false(isp_node_is_selected(sim_node_get_core(node)));

        /* it stays there: an ISP like any other */
        send_at(started + 100 * MS, REQ(0, 0xFF), 0);
        run_all();
        expect_out(REP(0, 5), 0);
        expect_no_more();
}

/* boot-fail on a power-up with a valid entry, and on a legacy node. */
static void test_boot_fail_power_up(void **state) {
        SimFault f = { .boot_fail = true };

        fleet(&timing_500k, 4);
        add(0, &f);
        add(5, &f);
        put_example_image(sim_fleet_find_node(b->fleet, 0));
        put_example_image(sim_fleet_find_node(b->fleet, 5));
        sim_fleet_start(b->fleet, T0);
        run_until(T0 + 49 * MS);
        expect_no_more();
        run_all();
        {
                const Out *o = expect_out(REP(7, 5), 0);
                assert_int_equal(o->t, T0 + 50 * MS + sim_can_bits_to_nsec(sim_can_frame_bits(&o->frame), 500000));
        }
        expect_no_more();
        assert_log("node0: its application did not come up: reset into ISP (legacy, no ANNOUNCE)\n");
        assert_int_equal(isp_node_get_mode(sim_node_get_core(sim_fleet_find_node(b->fleet, 0))), ISP_NODE_MODE_ISP);
}

/* Both boards of a duplicate pair run the helper: two IDENTITY frames
 * with their own UIDs, one ABOUT (identical, so one frame on the bus). */
static void test_duplicate_application(void **state) {
        SimFault f = { .duplicate = true, .application = true, .app_version = 9 };
        SimNode *first, *second;
        SimFleetStats stats;
        uint8_t uid1[4], uid2[4];

        fleet(&timing_500k, 4);
        add(3, &f);
        first = sim_fleet_get_node(b->fleet, 0);
        second = sim_fleet_get_node(b->fleet, 1);
        start();
        expect_no_more();
        assert_non_null(sim_node_get_app(first));
        assert_non_null(sim_node_get_app(second));
        uid_of(first, uid1);
        uid_of(second, uid2);
        assert_memory_not_equal(uid1, uid2, 4);

        send_at(T0 + 10 * MS, REQ(6, 3), 1, 0x00);
        run_all();
        expect_identity(3, first, ERASED_APP_CRC, 0);
        expect_identity(3, second, ERASED_APP_CRC, 0);
        expect_no_more();

        send_at(T0 + 20 * MS, REQ(6, 0xFF), 1, 0x01);
        run_all();
        assert_memory_equal(expect_out(0x1B600103, 0)->frame.data,
                            ((const uint8_t[]) { 0x01, 0x03, 0x01, 0x01, 0x00, 0x00, 0x00, 0x09 }), 8);
        expect_no_more();
        sim_fleet_get_stats(b->fleet, &stats);
        assert_int_equal(stats.merged, 1);

        /* and both go into ISP on ENTER_ISP */
        send_at(T0 + 30 * MS, REQ(7, 3), 4, 0x12, 0xAB, 0xCD, 0x34);
        run_all();
        assert_memory_equal(expect_out(REP(7, 3), 0)->frame.data + 4, uid1, 4);
        assert_memory_equal(expect_out(REP(7, 3), 0)->frame.data + 4, uid2, 4);
        expect_no_more();
}

/* A legacy node's application has no helper but honours ENTER_ISP for
 * target 0 or all, and its ISP does not announce. */
static void test_legacy_application(void **state) {
        SimFault f = { .application = true };
        SimNode *node;

        fleet(&timing_500k, 4);
        add(0, &f);
        node = sim_fleet_find_node(b->fleet, 0);
        start();
        assert_null(sim_node_get_app(node));
        send_at(T0 + 10 * MS, REQ(6, 0xFF), 1, 0x00);
        send_at(T0 + 11 * MS, REQ(6, 0), 1, 0x00);
        send_at(T0 + 12 * MS, REQ(7, 5), 4, 0x12, 0xAB, 0xCD, 0x34);
        send_at(T0 + 13 * MS, REQ(7, 0x100), 4, 0x12, 0xAB, 0xCD, 0x34);
        send_at(T0 + 14 * MS, REQ(7, 0), 4, 0x12, 0xAB, 0xCD, 0x35);
        run_all();
        expect_no_more();
        assert_int_equal(isp_node_get_mode(sim_node_get_core(node)), ISP_NODE_MODE_APPLICATION);

        send_at(T0 + 20 * MS, REQ(7, 0), 4, 0x12, 0xAB, 0xCD, 0x34);
        run_all();
        expect_no_more();
        assert_int_equal(isp_node_get_mode(sim_node_get_core(node)), ISP_NODE_MODE_ISP);
        assert_log("node0: ENTER_ISP 0 -> reset into ISP (legacy, no ANNOUNCE)");

        send_at(T0 + 30 * MS, REQ(0, 0), 0);
        run_all();
        assert_int_equal(expect_out(0x1B000000, 0)->frame.dlc, 0);
}

/* A power cut while the application runs: it comes back with the power
 * and computes its CRC afresh. */
static void test_power_cut_in_application(void **state) {
        SimTiming timing = timing_500k;
        SimFault f = { .application = true, .power_cut_after = 1, .restart_delay = 100 * MS,
                       .restart_delay_set = true };
        SimNode *node;

        timing.app_crc = 30 * MS;
        fleet(&timing, 4);
        add(5, &f);
        node = sim_fleet_find_node(b->fleet, 5);
        put_example_image(node);
        sim_fleet_start(b->fleet, T0);
        /* taken before the CRC is done, and lost with the power */
        send_at(T0 + 10 * MS, REQ(6, 5), 1, 0x00);
        run_until(T0 + 60 * MS);
        expect_no_more();
        assert_false(sim_node_is_powered(node));
        assert_null(sim_node_get_app(node));

        run_all();
        expect_no_more();
        assert_int_equal(isp_node_get_mode(sim_node_get_core(node)), ISP_NODE_MODE_APPLICATION);
        send_at(T0 + 300 * MS, REQ(6, 5), 1, 0x00);
        run_all();
        expect_identity(5, node, 0x5907571D, 0);
        expect_no_more();
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
                T(test_identify_waits_for_crc),
                T(test_isp_starts_helper),
                T(test_no_helper),
                T(test_boot_fail),
                T(test_boot_fail_power_up),
                T(test_duplicate_application),
                T(test_legacy_application),
                T(test_power_cut_in_application),
                T(test_legacy_among_extended),
                T(test_writeback),
                T(test_not_requests_ignored),
                T(test_log_lines),
        };

        return cmocka_run_group_tests_name("sim-fleet", tests, NULL, NULL);
}
