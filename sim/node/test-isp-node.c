/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Frame-by-frame tests of the node core: every command of both forms and
 * every status, against exact reply frames and flash contents. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "isp-node.h"
#include "isp-node-ram.h"

#define EFF ISP_NODE_FRAME_EXTENDED
#define REQ(cmd, arg) ISP_NODE_REQUEST_ID(cmd, arg)
#define REP(cmd, node) ISP_NODE_REPLY_ID(cmd, node)
#define IGNORED ISP_NODE_IGNORED

#define MAX_NODES 4

typedef struct Bench {
        struct isp_node_ram ram[MAX_NODES];
        struct isp_node node[MAX_NODES];
        size_t n;
} Bench;

static Bench *b;

static const uint8_t UID[4] = { 0xC0, 0xFF, 0xEE, 0x00 };

static void bench_add(uint8_t id, uint8_t rx_depth) {
        struct isp_node_config config = {
                .node_id = id,
                .isp_version = 0x12,
                .rx_depth = rx_depth,
                .uid = { UID[0], UID[1], UID[2], id },
        };
        size_t i = b->n++;

        assert_true(i < MAX_NODES);
        isp_node_ram_init(&b->ram[i]);
        assert_int_equal(isp_node_init(&b->node[i], &config, &isp_node_ram_ops, &b->ram[i]), 0);
}

static int setup(void **state) {
        b = calloc(1, sizeof(*b));
        assert_non_null(b);
        return 0;
}

static int teardown(void **state) {
        free(b);
        b = NULL;
        return 0;
}

/* A frame from a list of byte values. */
static struct isp_node_frame make_frame(uint32_t id, int dlc, va_list ap) {
        struct isp_node_frame f = { .id = id, .dlc = (uint8_t) dlc };

        for (int i = 0; i < dlc && i < 8; i++)
                f.data[i] = (uint8_t) va_arg(ap, int);
        return f;
}

/* Deliver a request (extended flag added) to node i; returns its result. */
static int rx(size_t i, uint32_t id, int dlc, ...) {
        struct isp_node_frame f;
        va_list ap;

        va_start(ap, dlc);
        f = make_frame(id | EFF, dlc, ap);
        va_end(ap);
        return isp_node_receive(&b->node[i], &f);
}

/* Deliver a request to every node on the bench, as a bus does. */
static void rx_all(uint32_t id, int dlc, ...) {
        struct isp_node_frame f;
        va_list ap;

        va_start(ap, dlc);
        f = make_frame(id | EFF, dlc, ap);
        va_end(ap);
        for (size_t i = 0; i < b->n; i++)
                (void) isp_node_receive(&b->node[i], &f);
}

/* Assert that node i's next sent frame is exactly this one. */
static void expect(size_t i, uint32_t id, int dlc, ...) {
        struct isp_node_frame want, got;
        va_list ap;

        va_start(ap, dlc);
        want = make_frame(id | EFF, dlc, ap);
        va_end(ap);

        assert_true(isp_node_ram_pop(&b->ram[i], &got));
        assert_int_equal(got.id, want.id);
        assert_int_equal(got.dlc, want.dlc);
        /* bytes past dlc are zero: compare all 8 */
        assert_memory_equal(got.data, want.data, 8);
}

static void expect_nothing(size_t i) {
        struct isp_node_frame f;

        assert_false(isp_node_ram_pop(&b->ram[i], &f));
}

static void expect_info(size_t i, uint32_t id, uint8_t node_id, uint8_t depth) {
        expect(i, id, 8, 1, 0x07, 0x12, depth, UID[0], UID[1], UID[2], node_id);
}

static uint8_t *flash(size_t i) {
        return b->ram[i].flash;
}

/* Assert that [offset, offset + len) of node i is erased. */
static void assert_erased(size_t i, uint32_t offset, uint32_t len) {
        for (uint32_t o = offset; o < offset + len; o++)
                if (flash(i)[o] != 0xFF)
                        fail_msg("offset 0x%05x is 0x%02x, expected erased", o, flash(i)[o]);
}

static void assert_isp_intact(size_t i) {
        for (uint32_t o = ISP_NODE_ISP_START; o < ISP_NODE_ISP_END; o++)
                if (flash(i)[o] != isp_node_isp_pattern(o))
                        fail_msg("ISP byte at 0x%05x changed to 0x%02x", o, flash(i)[o]);
}

static void fill(size_t i, uint32_t offset, uint32_t len, uint8_t value) {
        memset(flash(i) + offset, value, len);
}

static void put_entry(size_t i, uint8_t op, uint8_t hi, uint8_t lo) {
        flash(i)[ISP_NODE_ENTRY] = op;
        flash(i)[ISP_NODE_ENTRY + 1] = hi;
        flash(i)[ISP_NODE_ENTRY + 2] = lo;
}

/* One extended node with id 3, powered on in ISP, ANNOUNCE consumed. */
static void one_node(uint8_t id) {
        bench_add(id, 4);
        assert_int_equal(isp_node_power_on(&b->node[0]), ISP_NODE_MODE_ISP);
        expect_info(0, REP(7, id), id, 4);
        expect_nothing(0);
}

/* ... and selected. */
static void one_selected(uint8_t id, uint8_t flags) {
        one_node(id);
        assert_int_equal(rx(0, REQ(0, id), 1, flags), ISP_NODE_STATUS_OK);
        expect_info(0, REP(0, id), id, 4);
        assert_true(isp_node_is_selected(&b->node[0]));
}

static void one_legacy(void) {
        bench_add(0, 1);
        assert_int_equal(isp_node_power_on(&b->node[0]), ISP_NODE_MODE_ISP);
        expect_nothing(0);
}

/* ---- pure helpers ---- */

static void test_crc32(void **state) {
        const uint8_t check[] = "123456789";

        assert_int_equal(isp_node_crc32(0, check, 9), 0xCBF43926UL);
        assert_int_equal(isp_node_crc32(0, check, 0), 0);
        /* in pieces, as zlib */
        assert_int_equal(isp_node_crc32(isp_node_crc32(0, check, 4), check + 4, 5), 0xCBF43926UL);
        /* zlib.crc32(b"\xff" * 512) */
        uint8_t ff[512];
        memset(ff, 0xFF, sizeof(ff));
        assert_int_equal(isp_node_crc32(0, ff, sizeof(ff)), 0xBD7BC39FUL);
}

static void test_entry_validity(void **state) {
        assert_true(isp_node_entry_is_valid((const uint8_t[]) { 0x02, 0x10, 0x03 }));
        assert_true(isp_node_entry_is_valid((const uint8_t[]) { 0x02, 0xFF, 0xFF }));
        assert_false(isp_node_entry_is_valid((const uint8_t[]) { 0x02, 0x10, 0x02 }));
        assert_false(isp_node_entry_is_valid((const uint8_t[]) { 0x02, 0x00, 0x00 }));
        assert_false(isp_node_entry_is_valid((const uint8_t[]) { 0xFF, 0xFF, 0xFF }));
        assert_false(isp_node_entry_is_valid((const uint8_t[]) { 0x12, 0x10, 0x03 }));
}

static void test_isp_pattern(void **state) {
        struct isp_node_ram *ram = &b->ram[0];

        isp_node_ram_init(ram);
        for (uint32_t o = ISP_NODE_ISP_START; o < ISP_NODE_ISP_END; o++)
                assert_int_not_equal(ram->flash[o], 0xFF);
        assert_erased(0, 0, ISP_NODE_ISP_START);
        assert_erased(0, ISP_NODE_ISP_END, ISP_NODE_FLASH_SIZE - ISP_NODE_ISP_END);
        /* the values docs/simulator.md gives (zlib over the same bytes) */
        assert_int_equal(isp_node_crc32(0, ram->flash + ISP_NODE_ISP_START, ISP_NODE_ISP_END - ISP_NODE_ISP_START),
                         0x65287BECUL);
        assert_int_equal(isp_node_crc32(0, ram->flash, ISP_NODE_FLASH_SIZE), 0x0E1320A7UL);
        assert_int_equal(isp_node_isp_pattern(0x10000), 0xA5);
        assert_int_equal(isp_node_isp_pattern(0x10123), 0x23 ^ 0x01 ^ 0xA5);
}

static void test_init_rejects(void **state) {
        struct isp_node node;
        struct isp_node_config config = { .node_id = 255 };
        struct isp_node_ops no_send = isp_node_ram_ops;

        assert_int_equal(isp_node_init(&node, &config, &isp_node_ram_ops, &b->ram[0]), -1);
        assert_int_equal(isp_node_power_on(&node), ISP_NODE_MODE_OFF);

        config.node_id = 3;
        no_send.send = NULL;
        assert_int_equal(isp_node_init(&node, &config, &no_send, &b->ram[0]), -1);
        assert_int_equal(isp_node_power_on(&node), ISP_NODE_MODE_OFF);
}

/* ---- start-up ---- */

static void test_off_until_boot(void **state) {
        bench_add(3, 4);
        assert_int_equal(isp_node_get_mode(&b->node[0]), ISP_NODE_MODE_OFF);
        assert_int_equal(rx(0, REQ(0, 0xFF), 0), IGNORED);
        assert_int_equal(rx(0, REQ(0, 3), 0), IGNORED);
        expect_nothing(0);
}

static void test_power_on_erased_announces(void **state) {
        bench_add(3, 4);
        assert_int_equal(isp_node_power_on(&b->node[0]), ISP_NODE_MODE_ISP);
        expect(0, 0x1B700003, 8, 0x01, 0x07, 0x12, 0x04, 0xC0, 0xFF, 0xEE, 0x03);
        expect_nothing(0);
        assert_false(isp_node_is_selected(&b->node[0]));
        assert_false(isp_node_is_legacy(&b->node[0]));
}

static void test_power_on_valid_entry_starts_application(void **state) {
        bench_add(9, 2);
        put_entry(0, 0x02, 0x10, 0x03);
        assert_int_equal(isp_node_power_on(&b->node[0]), ISP_NODE_MODE_APPLICATION);
        expect_nothing(0);
        /* The application answers no ISP request. */
        assert_int_equal(rx(0, REQ(0, 9), 0), IGNORED);
        assert_int_equal(rx(0, REQ(0, 0xFF), 0), IGNORED);
        assert_int_equal(rx(0, REQ(0, 0), 0), IGNORED);
        assert_int_equal(rx(0, REQ(1, 0x11000), 0), IGNORED);
        expect_nothing(0);
}

static void test_power_on_invalid_entry_stays_in_isp(void **state) {
        bench_add(9, 2);
        put_entry(0, 0x02, 0x0F, 0xFF); /* jumps into the ISP area */
        assert_int_equal(isp_node_power_on(&b->node[0]), ISP_NODE_MODE_ISP);
        expect_info(0, REP(7, 9), 9, 2);
}

static void test_rx_depth_zero_reported_as_one(void **state) {
        bench_add(5, 0);
        assert_int_equal(isp_node_power_on(&b->node[0]), ISP_NODE_MODE_ISP);
        expect_info(0, REP(7, 5), 5, 1);
}

/* ---- what is not ISP traffic ---- */

static void test_non_isp_frames_ignored(void **state) {
        struct isp_node_frame f = { .id = REQ(0, 3), .dlc = 0 };

        one_node(3);
        /* standard id */
        assert_int_equal(isp_node_receive(&b->node[0], &f), IGNORED);
        /* RTR */
        f.id = REQ(0, 3) | EFF | ISP_NODE_FRAME_RTR;
        assert_int_equal(isp_node_receive(&b->node[0], &f), IGNORED);
        /* DLC > 8 */
        f.id = REQ(0, 3) | EFF;
        f.dlc = 9;
        assert_int_equal(isp_node_receive(&b->node[0], &f), IGNORED);
        /* another node's reply, other prefixes */
        assert_int_equal(rx(0, REP(0, 3), 0), IGNORED);
        assert_int_equal(rx(0, 0x0A000003, 0), IGNORED);
        assert_int_equal(rx(0, 0x1C000003, 0), IGNORED);
        expect_nothing(0);
        assert_false(isp_node_is_selected(&b->node[0]));
}

static void test_unknown_commands_ignored(void **state) {
        one_selected(3, 0);
        assert_int_equal(rx(0, REQ(6, 0), 0), IGNORED);
        assert_int_equal(rx(0, REQ(7, 3), 4, 0x12, 0xAB, 0xCD, 0x34), IGNORED); /* ENTER_ISP is the application's */
        assert_int_equal(rx(0, REQ(8, 0), 0), IGNORED);
        assert_int_equal(rx(0, REQ(15, 0xFFFFF), 8, 1, 2, 3, 4, 5, 6, 7, 8), IGNORED);
        expect_nothing(0);
        assert_int_equal(isp_node_get_mode(&b->node[0]), ISP_NODE_MODE_ISP);
}

/* ---- selection ---- */

static void test_unselected_node_ignores_commands(void **state) {
        one_node(3);
        fill(0, 0x2000, 0x200, 0x00);
        put_entry(0, 0x02, 0x10, 0x03);

        assert_int_equal(rx(0, REQ(1, 0x2000), 0), IGNORED);
        assert_int_equal(rx(0, REQ(2, 0x3000), 8, 1, 2, 3, 4, 5, 6, 7, 8), IGNORED);
        assert_int_equal(rx(0, REQ(3, 0), 0), IGNORED);
        assert_int_equal(rx(0, REQ(3, 0), 4, 0x00, 0x20, 0x00, 1), IGNORED);
        assert_int_equal(rx(0, REQ(5, 0), 6, 0, 0, 0, 0, 0, 9), IGNORED);
        assert_int_equal(rx(0, REQ(4, 0), 0), IGNORED);
        expect_nothing(0);
        assert_int_equal(flash(0)[0x2000], 0x00);
        assert_erased(0, 0x3000, 8);
        assert_int_equal(isp_node_get_mode(&b->node[0]), ISP_NODE_MODE_ISP);
}

static void test_connect_own_id_selects(void **state) {
        one_node(3);
        assert_int_equal(rx(0, REQ(0, 3), 0), ISP_NODE_STATUS_OK);
        expect(0, 0x1B000003, 8, 0x01, 0x07, 0x12, 0x04, 0xC0, 0xFF, 0xEE, 0x03);
        assert_true(isp_node_is_selected(&b->node[0]));
        assert_false(isp_node_is_quiet(&b->node[0]));

        /* again with QUIET: selected and quiet; and without: not quiet */
        assert_int_equal(rx(0, REQ(0, 3), 1, ISP_NODE_CONNECT_QUIET), ISP_NODE_STATUS_OK);
        expect_info(0, REP(0, 3), 3, 4);
        assert_true(isp_node_is_quiet(&b->node[0]));
        assert_int_equal(rx(0, REQ(0, 3), 1, 0), ISP_NODE_STATUS_OK);
        expect_info(0, REP(0, 3), 3, 4);
        assert_false(isp_node_is_quiet(&b->node[0]));
}

static void test_connect_other_id_deselects(void **state) {
        one_selected(3, ISP_NODE_CONNECT_QUIET);
        assert_int_equal(rx(0, REQ(0, 4), 0), ISP_NODE_STATUS_OK);
        expect_nothing(0);
        assert_false(isp_node_is_selected(&b->node[0]));
        assert_false(isp_node_is_quiet(&b->node[0]));
}

static void test_connect_other_id_with_join_keeps_selection(void **state) {
        one_selected(3, ISP_NODE_CONNECT_QUIET);
        assert_int_equal(rx(0, REQ(0, 4), 1, ISP_NODE_CONNECT_JOIN), ISP_NODE_STATUS_OK);
        expect_nothing(0);
        assert_true(isp_node_is_selected(&b->node[0]));
        assert_true(isp_node_is_quiet(&b->node[0]));

        /* JOIN to another id does not select an unselected node */
        assert_int_equal(rx(0, REQ(0, 4), 0), ISP_NODE_STATUS_OK);
        assert_int_equal(rx(0, REQ(0, 5), 1, ISP_NODE_CONNECT_JOIN | ISP_NODE_CONNECT_QUIET), ISP_NODE_STATUS_OK);
        expect_nothing(0);
        assert_false(isp_node_is_selected(&b->node[0]));
}

static void test_connect_legacy_target_selects(void **state) {
        one_node(77);
        assert_int_equal(rx(0, REQ(0, 0), 0), ISP_NODE_STATUS_OK);
        expect(0, 0x1B00004D, 8, 0x01, 0x07, 0x12, 0x04, 0xC0, 0xFF, 0xEE, 77);
        assert_true(isp_node_is_selected(&b->node[0]));
        assert_false(isp_node_is_quiet(&b->node[0]));
}

static void test_discover_keeps_selection(void **state) {
        one_node(3);
        assert_int_equal(rx(0, REQ(0, 0xFF), 0), ISP_NODE_STATUS_OK);
        expect_info(0, REP(0, 3), 3, 4);
        assert_false(isp_node_is_selected(&b->node[0]));

        assert_int_equal(rx(0, REQ(0, 3), 1, ISP_NODE_CONNECT_QUIET), ISP_NODE_STATUS_OK);
        expect_info(0, REP(0, 3), 3, 4);
        /* DISCOVER without JOIN neither deselects nor changes QUIET */
        assert_int_equal(rx(0, REQ(0, 0xFF), 1, 0), ISP_NODE_STATUS_OK);
        expect_info(0, REP(0, 3), 3, 4);
        assert_true(isp_node_is_selected(&b->node[0]));
        assert_true(isp_node_is_quiet(&b->node[0]));
}

static void test_connect_ignores_extra_bytes(void **state) {
        one_node(3);
        /* bytes after the flags are ignored */
        assert_int_equal(rx(0, REQ(0, 3), 3, ISP_NODE_CONNECT_QUIET, 0xAA, 0xBB), ISP_NODE_STATUS_OK);
        expect_info(0, REP(0, 3), 3, 4);
        assert_true(isp_node_is_selected(&b->node[0]));
        assert_true(isp_node_is_quiet(&b->node[0]));
}

/* docs/protocol.md 2.2: an extended node ignores a CONNECT whose ID bits
 * 19..8 are not zero: no reply, and neither selection nor QUIET change,
 * whatever bits 7..0 say (own id, 0, 0xFF or another id). */
static void test_connect_with_upper_arg_bits_ignored(void **state) {
        one_node(3);
        /* an unselected node is not selected by them */
        assert_int_equal(rx(0, REQ(0, 0x00103), 0), IGNORED);
        assert_int_equal(rx(0, REQ(0, 0x80003), 1, ISP_NODE_CONNECT_QUIET), IGNORED);
        assert_int_equal(rx(0, REQ(0, 0x00100), 0), IGNORED);
        assert_int_equal(rx(0, REQ(0, 0x001FF), 0), IGNORED);
        expect_nothing(0);
        assert_false(isp_node_is_selected(&b->node[0]));

        /* a selected one is not deselected, nor its QUIET flag changed */
        assert_int_equal(rx(0, REQ(0, 3), 1, ISP_NODE_CONNECT_QUIET), ISP_NODE_STATUS_OK);
        expect_info(0, REP(0, 3), 3, 4);
        assert_int_equal(rx(0, REQ(0, 0x00104), 0), IGNORED);
        assert_int_equal(rx(0, REQ(0, 0xFFF04), 0), IGNORED);
        assert_int_equal(rx(0, REQ(0, 0x00503), 1, 0), IGNORED);
        assert_int_equal(rx(0, REQ(0, 0x00400), 1, 0), IGNORED);
        expect_nothing(0);
        assert_true(isp_node_is_selected(&b->node[0]));
        assert_true(isp_node_is_quiet(&b->node[0]));
}

/* Three nodes on one bench: JOIN builds a multicast group, every member
 * acks with its own id, a plain CONNECT breaks the group up. */
static void test_join_group_multicast(void **state) {
        for (uint8_t id = 1; id <= 3; id++) {
                bench_add(id, 4);
                assert_int_equal(isp_node_power_on(&b->node[id - 1]), ISP_NODE_MODE_ISP);
                expect_info(id - 1, REP(7, id), id, 4);
        }

        rx_all(REQ(0, 1), 0);
        rx_all(REQ(0, 2), 1, ISP_NODE_CONNECT_JOIN);
        rx_all(REQ(0, 3), 1, ISP_NODE_CONNECT_JOIN);
        expect_info(0, REP(0, 1), 1, 4);
        expect_info(1, REP(0, 2), 2, 4);
        expect_info(2, REP(0, 3), 3, 4);
        for (size_t i = 0; i < 3; i++) {
                expect_nothing(i);
                assert_true(isp_node_is_selected(&b->node[i]));
        }

        rx_all(REQ(2, 0x00100), 2, 0x55, 0xAA);
        for (size_t i = 0; i < 3; i++) {
                expect(i, REP(2, i + 1), 4, 0, 0x00, 0x01, 0x00);
                assert_int_equal(flash(i)[0x100], 0x55);
                assert_int_equal(flash(i)[0x101], 0xAA);
        }

        /* DISCOVER: everyone answers, nobody's selection changes */
        rx_all(REQ(0, 0xFF), 0);
        for (size_t i = 0; i < 3; i++) {
                expect_info(i, REP(0, i + 1), (uint8_t) (i + 1), 4);
                assert_true(isp_node_is_selected(&b->node[i]));
        }

        rx_all(REQ(0, 2), 0);
        expect_info(1, REP(0, 2), 2, 4);
        assert_false(isp_node_is_selected(&b->node[0]));
        assert_true(isp_node_is_selected(&b->node[1]));
        assert_false(isp_node_is_selected(&b->node[2]));

        rx_all(REQ(2, 0x00200), 1, 0x11);
        expect_nothing(0);
        expect(1, REP(2, 2), 4, 0, 0x00, 0x02, 0x00);
        expect_nothing(2);
        assert_int_equal(flash(0)[0x200], 0xFF);
        assert_int_equal(flash(1)[0x200], 0x11);
        assert_int_equal(flash(2)[0x200], 0xFF);
}

/* ---- READ ---- */

static void test_read(void **state) {
        one_selected(3, 0);
        for (int i = 0; i < 8; i++)
                flash(0)[0x11200 + i] = (uint8_t) (0x10 + i);

        assert_int_equal(rx(0, REQ(1, 0x11200), 0), ISP_NODE_STATUS_OK);
        expect(0, 0x1B100003, 8, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17);

        /* the ISP area may be read */
        assert_int_equal(rx(0, REQ(1, 0x10000), 0), ISP_NODE_STATUS_OK);
        expect(0, REP(1, 3), 8, 0xA5, 0xA4, 0xA7, 0xA6, 0xA1, 0xA0, 0xA3, 0xA2);

        /* the last 8 bytes */
        assert_int_equal(rx(0, REQ(1, 0x1FFF8), 0), ISP_NODE_STATUS_OK);
        expect(0, REP(1, 3), 8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF);

        /* unaligned reads are fine */
        assert_int_equal(rx(0, REQ(1, 0x11203), 0), ISP_NODE_STATUS_OK);
        expect(0, REP(1, 3), 8, 0x13, 0x14, 0x15, 0x16, 0x17, 0xFF, 0xFF, 0xFF);
        expect_nothing(0);
}

static void test_read_refused(void **state) {
        one_selected(3, 0);
        assert_int_equal(rx(0, REQ(1, 0x1FFF9), 0), ISP_NODE_STATUS_RANGE);
        expect(0, 0x1B100003, 1, 1);
        assert_int_equal(rx(0, REQ(1, 0x20000), 0), ISP_NODE_STATUS_RANGE);
        expect(0, 0x1B100003, 1, 1);
        assert_int_equal(rx(0, REQ(1, 0xFFFFF), 0), ISP_NODE_STATUS_RANGE);
        expect(0, 0x1B100003, 1, 1);
        expect_nothing(0);
}

/* ---- PROGRAM ---- */

static void test_program(void **state) {
        one_selected(3, 0);
        assert_int_equal(rx(0, REQ(2, 0x11200), 8, 1, 2, 3, 4, 5, 6, 7, 8), ISP_NODE_STATUS_OK);
        expect(0, 0x1B200003, 4, 0x00, 0x01, 0x12, 0x00);
        assert_memory_equal(flash(0) + 0x11200, ((const uint8_t[]) { 1, 2, 3, 4, 5, 6, 7, 8 }), 8);
        assert_int_equal(flash(0)[0x111FF], 0xFF);
        assert_int_equal(flash(0)[0x11208], 0xFF);

        /* one byte, low 64 KiB */
        assert_int_equal(rx(0, REQ(2, 0x0ABCD), 1, 0x42), ISP_NODE_STATUS_OK);
        expect(0, REP(2, 3), 4, 0x00, 0x00, 0xAB, 0xCD);
        assert_int_equal(flash(0)[0xABCD], 0x42);

        /* the last byte of flash, and the first after the ISP area */
        assert_int_equal(rx(0, REQ(2, 0x1FFFF), 1, 0x00), ISP_NODE_STATUS_OK);
        expect(0, REP(2, 3), 4, 0x00, 0x01, 0xFF, 0xFF);
        assert_int_equal(rx(0, REQ(2, 0x11000), 3, 0x02, 0x10, 0x03), ISP_NODE_STATUS_OK);
        expect(0, REP(2, 3), 4, 0x00, 0x01, 0x10, 0x00);
        /* and the last before it */
        assert_int_equal(rx(0, REQ(2, 0x0FFF8), 8, 9, 9, 9, 9, 9, 9, 9, 9), ISP_NODE_STATUS_OK);
        expect(0, REP(2, 3), 4, 0x00, 0x00, 0xFF, 0xF8);
        expect_nothing(0);
        assert_isp_intact(0);
}

static void test_program_retransmit_is_harmless(void **state) {
        one_selected(3, 0);
        assert_int_equal(rx(0, REQ(2, 0x300), 4, 0x12, 0x00, 0xF0, 0xFF), ISP_NODE_STATUS_OK);
        expect(0, REP(2, 3), 4, 0, 0x00, 0x03, 0x00);
        assert_int_equal(rx(0, REQ(2, 0x300), 4, 0x12, 0x00, 0xF0, 0xFF), ISP_NODE_STATUS_OK);
        expect(0, REP(2, 3), 4, 0, 0x00, 0x03, 0x00);
        /* the 0xFF byte is still erased and may take anything */
        assert_int_equal(rx(0, REQ(2, 0x300), 4, 0x12, 0x00, 0xF0, 0x5A), ISP_NODE_STATUS_OK);
        expect(0, REP(2, 3), 4, 0, 0x00, 0x03, 0x00);
        assert_memory_equal(flash(0) + 0x300, ((const uint8_t[]) { 0x12, 0x00, 0xF0, 0x5A }), 4);
}

/* Programming can only clear bits, and the node does not even allow what
 * AND would give: a byte that is neither erased nor equal fails. */
static void test_program_and_failure(void **state) {
        one_selected(3, 0);
        flash(0)[0x400] = 0xF0;
        flash(0)[0x403] = 0x0F;

        /* 0xF0 -> 0x30 would be reachable by AND; still status 2 */
        assert_int_equal(rx(0, REQ(2, 0x400), 1, 0x30), ISP_NODE_STATUS_WRITE_FAILED);
        expect(0, 0x1B200003, 4, 0x02, 0x00, 0x04, 0x00);
        assert_int_equal(flash(0)[0x400], 0xF0);

        /* one bad byte in a frame: nothing of the frame is written */
        assert_int_equal(rx(0, REQ(2, 0x400), 4, 0xF0, 0x11, 0x22, 0xFF), ISP_NODE_STATUS_WRITE_FAILED);
        expect(0, REP(2, 3), 4, 0x02, 0x00, 0x04, 0x00);
        assert_memory_equal(flash(0) + 0x400, ((const uint8_t[]) { 0xF0, 0xFF, 0xFF, 0x0F }), 4);

        /* 0x0F -> 0x1F would need a bit set */
        assert_int_equal(rx(0, REQ(2, 0x403), 1, 0x1F), ISP_NODE_STATUS_WRITE_FAILED);
        expect(0, REP(2, 3), 4, 0x02, 0x00, 0x04, 0x03);
        assert_int_equal(flash(0)[0x403], 0x0F);
        expect_nothing(0);
}

static void test_program_iap_error_and_readback(void **state) {
        one_selected(3, 0);
        b->ram[0].fail_program = 1;
        assert_int_equal(rx(0, REQ(2, 0x500), 2, 0x01, 0x02), ISP_NODE_STATUS_WRITE_FAILED);
        expect(0, REP(2, 3), 4, 0x02, 0x00, 0x05, 0x00);
        assert_erased(0, 0x500, 2);

        b->ram[0].fail_program = 0;
        b->ram[0].corrupt_program = 1;
        assert_int_equal(rx(0, REQ(2, 0x500), 2, 0x01, 0x03), ISP_NODE_STATUS_WRITE_FAILED);
        expect(0, REP(2, 3), 4, 0x02, 0x00, 0x05, 0x00);
        assert_int_equal(flash(0)[0x501], 0x02);
}

static void test_program_dlc0(void **state) {
        one_selected(3, 0);
        assert_int_equal(rx(0, REQ(2, 0x11200), 0), ISP_NODE_STATUS_BAD_ARGUMENT);
        expect(0, 0x1B200003, 4, 0x03, 0x01, 0x12, 0x00);
        expect_nothing(0);
}

static void test_program_isp_area_refused(void **state) {
        uint8_t before[ISP_NODE_FLASH_SIZE];

        one_selected(3, 0);
        memcpy(before, flash(0), sizeof(before));

        /* inside */
        assert_int_equal(rx(0, REQ(2, 0x10000), 1, 0xA5), ISP_NODE_STATUS_RANGE);
        expect(0, 0x1B200003, 4, 0x01, 0x01, 0x00, 0x00);
        assert_int_equal(rx(0, REQ(2, 0x10FF8), 8, 0, 0, 0, 0, 0, 0, 0, 0), ISP_NODE_STATUS_RANGE);
        expect(0, REP(2, 3), 4, 0x01, 0x01, 0x0F, 0xF8);
        /* partly overlapping at the start: the bytes below it stay erased */
        assert_int_equal(rx(0, REQ(2, 0x0FFFC), 8, 1, 2, 3, 4, 5, 6, 7, 8), ISP_NODE_STATUS_RANGE);
        expect(0, REP(2, 3), 4, 0x01, 0x00, 0xFF, 0xFC);
        /* partly overlapping at the end: FF:1000.. stays erased */
        assert_int_equal(rx(0, REQ(2, 0x10FFD), 6, 1, 2, 3, 0x02, 0x10, 0x03), ISP_NODE_STATUS_RANGE);
        expect(0, REP(2, 3), 4, 0x01, 0x01, 0x0F, 0xFD);
        /* running past the end of flash */
        assert_int_equal(rx(0, REQ(2, 0x1FFFC), 8, 1, 2, 3, 4, 5, 6, 7, 8), ISP_NODE_STATUS_RANGE);
        expect(0, REP(2, 3), 4, 0x01, 0x01, 0xFF, 0xFC);
        /* beyond it (the 20-bit arg allows it) */
        assert_int_equal(rx(0, REQ(2, 0x20000), 1, 0), ISP_NODE_STATUS_RANGE);
        expect(0, REP(2, 3), 4, 0x01, 0x02, 0x00, 0x00);
        assert_int_equal(rx(0, REQ(2, 0xFFFFF), 1, 0), ISP_NODE_STATUS_RANGE);
        expect(0, REP(2, 3), 4, 0x01, 0x0F, 0xFF, 0xFF);
        expect_nothing(0);

        assert_memory_equal(flash(0), before, sizeof(before));
        assert_int_equal(b->ram[0].n_programmed, 0);
}

static void test_program_quiet(void **state) {
        one_selected(3, ISP_NODE_CONNECT_QUIET);
        assert_int_equal(rx(0, REQ(2, 0x800), 2, 0x12, 0x34), ISP_NODE_STATUS_OK);
        expect_nothing(0);
        assert_int_equal(flash(0)[0x801], 0x34);

        /* failures are still reported, each status */
        assert_int_equal(rx(0, REQ(2, 0x800), 1, 0x13), ISP_NODE_STATUS_WRITE_FAILED);
        expect(0, REP(2, 3), 4, 0x02, 0x00, 0x08, 0x00);
        assert_int_equal(rx(0, REQ(2, 0x10800), 1, 0x13), ISP_NODE_STATUS_RANGE);
        expect(0, REP(2, 3), 4, 0x01, 0x01, 0x08, 0x00);
        assert_int_equal(rx(0, REQ(2, 0x900), 0), ISP_NODE_STATUS_BAD_ARGUMENT);
        expect(0, REP(2, 3), 4, 0x03, 0x00, 0x09, 0x00);

        /* QUIET touches only PROGRAM: READ, ERASE, CRC still answer */
        assert_int_equal(rx(0, REQ(1, 0x800), 0), ISP_NODE_STATUS_OK);
        expect(0, REP(1, 3), 8, 0x12, 0x34, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF);
        assert_int_equal(rx(0, REQ(3, 0), 4, 0x00, 0x08, 0x00, 1), ISP_NODE_STATUS_OK);
        expect(0, REP(3, 3), 1, 0);
        expect_nothing(0);
}

/* ---- ERASE ---- */

static void test_erase_all(void **state) {
        one_selected(3, 0);
        fill(0, 0, ISP_NODE_ISP_START, 0x00);
        fill(0, ISP_NODE_ISP_END, ISP_NODE_FLASH_SIZE - ISP_NODE_ISP_END, 0x5A);

        assert_int_equal(rx(0, REQ(3, 0), 0), ISP_NODE_STATUS_OK);
        expect(0, 0x1B300003, 1, 0x00);
        expect_nothing(0);
        assert_erased(0, 0, ISP_NODE_ISP_START);
        assert_erased(0, ISP_NODE_ISP_END, ISP_NODE_FLASH_SIZE - ISP_NODE_ISP_END);
        assert_isp_intact(0);
        assert_int_equal(b->ram[0].n_erased, 248);
}

/* The order the core erases sectors in, through the ops. */
static uint32_t erase_log[ISP_NODE_FLASH_SIZE / ISP_NODE_SECTOR_SIZE];
static unsigned n_erase_log;

static int recording_erase(void *userdata, uint32_t offset) {
        if (n_erase_log < sizeof(erase_log) / sizeof(erase_log[0]))
                erase_log[n_erase_log++] = offset;
        return isp_node_ram_ops.flash_erase_sector(userdata, offset);
}

/* A full erase clears the entry sector first, so a power cut during it
 * never leaves a valid entry over a half-erased application. */
static void test_erase_all_entry_first(void **state) {
        static struct isp_node_ram ram;
        struct isp_node_ops ops = isp_node_ram_ops;
        struct isp_node_config cfg = { .node_id = 3, .isp_version = 1, .rx_depth = 4 };
        struct isp_node_frame f = { .id = ISP_NODE_REQUEST_ID(0, 3) | ISP_NODE_FRAME_EXTENDED };
        struct isp_node node;

        ops.flash_erase_sector = recording_erase;
        isp_node_ram_init(&ram);
        assert_int_equal(isp_node_init(&node, &cfg, &ops, &ram), 0);
        isp_node_power_on(&node);
        assert_int_equal(isp_node_receive(&node, &f), ISP_NODE_STATUS_OK);     /* CONNECT 3 */
        n_erase_log = 0;
        f.id = ISP_NODE_REQUEST_ID(3, 0) | ISP_NODE_FRAME_EXTENDED;
        assert_int_equal(isp_node_receive(&node, &f), ISP_NODE_STATUS_OK);     /* ERASE all */
        assert_int_equal(n_erase_log, 248);
        assert_int_equal(erase_log[0], ISP_NODE_ENTRY);
        for (unsigned i = 1; i < n_erase_log; i++)
                assert_int_not_equal(erase_log[i], ISP_NODE_ENTRY);
}

static void test_erase_range(void **state) {
        one_selected(3, 0);
        fill(0, 0, ISP_NODE_ISP_START, 0x00);
        fill(0, ISP_NODE_ISP_END, ISP_NODE_FLASH_SIZE - ISP_NODE_ISP_END, 0x00);

        /* the sector holding FF:1000 */
        assert_int_equal(rx(0, REQ(3, 0), 4, 0x01, 0x10, 0x00, 1), ISP_NODE_STATUS_OK);
        expect(0, 0x1B300003, 1, 0x00);
        assert_erased(0, 0x11000, 0x200);
        assert_int_equal(flash(0)[0x11200], 0x00);
        assert_int_equal(flash(0)[0x10FFF], isp_node_isp_pattern(0x10FFF));

        /* three sectors in the low half */
        assert_int_equal(rx(0, REQ(3, 0), 4, 0x00, 0x04, 0x00, 3), ISP_NODE_STATUS_OK);
        expect(0, REP(3, 3), 1, 0x00);
        assert_int_equal(flash(0)[0x3FF], 0x00);
        assert_erased(0, 0x400, 0x600);
        assert_int_equal(flash(0)[0xA00], 0x00);

        /* up to the ISP area, and from its end to the end of flash */
        assert_int_equal(rx(0, REQ(3, 0), 4, 0x00, 0xFE, 0x00, 1), ISP_NODE_STATUS_OK);
        expect(0, REP(3, 3), 1, 0x00);
        assert_erased(0, 0xFE00, 0x200);
        assert_int_equal(rx(0, REQ(3, 0), 4, 0x01, 0x10, 0x00, 120), ISP_NODE_STATUS_OK);
        expect(0, REP(3, 3), 1, 0x00);
        assert_erased(0, 0x11000, 0xF000);

        /* 255 sectors from 0 */
        fill(0, 0, ISP_NODE_ISP_START, 0x00);
        assert_int_equal(rx(0, REQ(3, 0), 4, 0x00, 0x00, 0x00, 255), ISP_NODE_STATUS_RANGE); /* 0x1FE00 > ISP */
        expect(0, REP(3, 3), 1, 0x01);
        assert_int_equal(flash(0)[0], 0x00);
        assert_int_equal(rx(0, REQ(3, 0), 4, 0x00, 0x00, 0x00, 128), ISP_NODE_STATUS_OK);
        expect(0, REP(3, 3), 1, 0x00);
        assert_erased(0, 0, ISP_NODE_ISP_START);
        assert_isp_intact(0);
        expect_nothing(0);
}

static void test_erase_bad_arguments(void **state) {
        one_selected(3, 0);
        fill(0, 0, ISP_NODE_ISP_START, 0x00);

        /* unaligned */
        assert_int_equal(rx(0, REQ(3, 0), 4, 0x00, 0x01, 0x00, 1), ISP_NODE_STATUS_BAD_ARGUMENT);
        expect(0, 0x1B300003, 1, 0x03);
        assert_int_equal(rx(0, REQ(3, 0), 4, 0x00, 0x00, 0x01, 1), ISP_NODE_STATUS_BAD_ARGUMENT);
        expect(0, REP(3, 3), 1, 0x03);
        /* zero count */
        assert_int_equal(rx(0, REQ(3, 0), 4, 0x00, 0x02, 0x00, 0), ISP_NODE_STATUS_BAD_ARGUMENT);
        expect(0, REP(3, 3), 1, 0x03);
        /* wrong DLC */
        for (int dlc = 1; dlc <= 8; dlc++) {
                if (dlc == 4)
                        continue;
                assert_int_equal(rx(0, REQ(3, 0), dlc, 0, 0, 0, 1, 0, 0, 0, 0), ISP_NODE_STATUS_BAD_ARGUMENT);
                expect(0, REP(3, 3), 1, 0x03);
        }
        expect_nothing(0);
        assert_int_equal(b->ram[0].n_erased, 0);
        assert_int_equal(flash(0)[0], 0x00);
}

static void test_erase_isp_area_refused(void **state) {
        uint8_t before[ISP_NODE_FLASH_SIZE];

        one_selected(3, 0);
        fill(0, 0, ISP_NODE_ISP_START, 0x00);
        fill(0, ISP_NODE_ISP_END, ISP_NODE_FLASH_SIZE - ISP_NODE_ISP_END, 0x00);
        memcpy(before, flash(0), sizeof(before));

        /* inside */
        assert_int_equal(rx(0, REQ(3, 0), 4, 0x01, 0x00, 0x00, 1), ISP_NODE_STATUS_RANGE);
        expect(0, 0x1B300003, 1, 0x01);
        assert_int_equal(rx(0, REQ(3, 0), 4, 0x01, 0x0E, 0x00, 1), ISP_NODE_STATUS_RANGE);
        expect(0, REP(3, 3), 1, 0x01);
        /* starting below, reaching in */
        assert_int_equal(rx(0, REQ(3, 0), 4, 0x00, 0xFE, 0x00, 2), ISP_NODE_STATUS_RANGE);
        expect(0, REP(3, 3), 1, 0x01);
        /* starting inside, reaching out */
        assert_int_equal(rx(0, REQ(3, 0), 4, 0x01, 0x0E, 0x00, 2), ISP_NODE_STATUS_RANGE);
        expect(0, REP(3, 3), 1, 0x01);
        /* spanning it */
        assert_int_equal(rx(0, REQ(3, 0), 4, 0x00, 0xF0, 0x00, 100), ISP_NODE_STATUS_RANGE);
        expect(0, REP(3, 3), 1, 0x01);
        /* past the end of flash, and beyond it */
        assert_int_equal(rx(0, REQ(3, 0), 4, 0x01, 0xFE, 0x00, 2), ISP_NODE_STATUS_RANGE);
        expect(0, REP(3, 3), 1, 0x01);
        assert_int_equal(rx(0, REQ(3, 0), 4, 0x02, 0x00, 0x00, 1), ISP_NODE_STATUS_RANGE);
        expect(0, REP(3, 3), 1, 0x01);
        assert_int_equal(rx(0, REQ(3, 0), 4, 0xFF, 0xFE, 0x00, 1), ISP_NODE_STATUS_RANGE);
        expect(0, REP(3, 3), 1, 0x01);
        expect_nothing(0);

        assert_memory_equal(flash(0), before, sizeof(before));
        assert_int_equal(b->ram[0].n_erased, 0);
}

static void test_erase_iap_error(void **state) {
        one_selected(3, 0);
        b->ram[0].fail_erase = 1;
        assert_int_equal(rx(0, REQ(3, 0), 4, 0x00, 0x02, 0x00, 1), ISP_NODE_STATUS_WRITE_FAILED);
        expect(0, REP(3, 3), 1, 0x02);
        assert_int_equal(rx(0, REQ(3, 0), 0), ISP_NODE_STATUS_WRITE_FAILED);
        expect(0, REP(3, 3), 1, 0x02);
        expect_nothing(0);
}

/* An erase that the IAP reports as done but that leaves one bit set to 0
 * in the sector at stuck_sector: only the read-back can tell. */
static uint32_t stuck_sector;

static int stuck_erase(void *userdata, uint32_t offset) {
        struct isp_node_ram *ram = userdata;
        int r = isp_node_ram_ops.flash_erase_sector(userdata, offset);

        if (r == 0 && offset == stuck_sector)
                ram->flash[offset + 0x1F7] = 0xFB;
        return r;
}

/* docs/protocol.md 4.5 check 3: a sector that does not read back all 0xFF
 * after erasing fails the ERASE with status 2, for both forms of ERASE; the
 * node stops at that sector. A legacy node says nothing. */
static void test_erase_readback(void **state) {
        static struct isp_node_ops ops;
        struct isp_node_config config = { .node_id = 3, .isp_version = 0x12, .rx_depth = 4,
                                          .uid = { UID[0], UID[1], UID[2], 3 } };

        ops = isp_node_ram_ops;
        ops.flash_erase_sector = stuck_erase;

        bench_add(3, 4);
        assert_int_equal(isp_node_init(&b->node[0], &config, &ops, &b->ram[0]), 0);
        assert_int_equal(isp_node_power_on(&b->node[0]), ISP_NODE_MODE_ISP);
        expect_info(0, REP(7, 3), 3, 4);
        assert_int_equal(rx(0, REQ(0, 3), 0), ISP_NODE_STATUS_OK);
        expect_info(0, REP(0, 3), 3, 4);
        fill(0, 0, ISP_NODE_ISP_START, 0x00);

        /* sector range: the second of three sectors sticks */
        stuck_sector = 0x600;
        assert_int_equal(rx(0, REQ(3, 0), 4, 0x00, 0x04, 0x00, 3), ISP_NODE_STATUS_WRITE_FAILED);
        expect(0, REP(3, 3), 1, 0x02);
        assert_erased(0, 0x400, 0x200);
        assert_int_equal(flash(0)[0x7F7], 0xFB);
        assert_int_equal(flash(0)[0x800], 0x00); /* stopped there */

        /* a range that does not touch it erases fine */
        assert_int_equal(rx(0, REQ(3, 0), 4, 0x00, 0x08, 0x00, 1), ISP_NODE_STATUS_OK);
        expect(0, REP(3, 3), 1, 0x00);

        /* full erase */
        stuck_sector = 0x1FE00;
        assert_int_equal(rx(0, REQ(3, 0), 0), ISP_NODE_STATUS_WRITE_FAILED);
        expect(0, REP(3, 3), 1, 0x02);
        expect_nothing(0);

        /* legacy: the same failure, silent */
        config.node_id = 0;
        assert_int_equal(isp_node_init(&b->node[0], &config, &ops, &b->ram[0]), 0);
        assert_int_equal(isp_node_power_on(&b->node[0]), ISP_NODE_MODE_ISP);
        assert_int_equal(rx(0, REQ(3, 0), 0), ISP_NODE_STATUS_WRITE_FAILED);
        expect_nothing(0);
        stuck_sector = 0x1; /* no sector */
        assert_int_equal(rx(0, REQ(3, 0), 0), ISP_NODE_STATUS_OK);
        expect(0, 0x1B300000, 0);
        assert_isp_intact(0);
}

/* ---- CRC ---- */

/* ECHO (INFO capability bit 3): CRC replies of DLC 8 and ERASE replies
 * of DLC 4 end with the start offset of the request they answer. */
static void test_echo(void **state) {
        struct isp_node_config config = {
                .node_id = 3, .isp_version = 0x12, .rx_depth = 4, .uid = { UID[0], UID[1], UID[2], 3 }, .echo = 1,
        };

        isp_node_ram_init(&b->ram[0]);
        assert_int_equal(isp_node_init(&b->node[0], &config, &isp_node_ram_ops, &b->ram[0]), 0);
        b->n = 1;
        assert_int_equal(isp_node_power_on(&b->node[0]), ISP_NODE_MODE_ISP);
        expect(0, REP(7, 3), 8, 1, 0x0F, 0x12, 4, UID[0], UID[1], UID[2], 3);
        /* a host that does not ask for it gets the first firmware's replies */
        assert_int_equal(rx(0, REQ(0, 3), 0), ISP_NODE_STATUS_OK);
        expect(0, REP(0, 3), 8, 1, 0x0F, 0x12, 4, UID[0], UID[1], UID[2], 3);
        assert_int_equal(rx(0, REQ(5, 0), 6, 0x01, 0x12, 0x00, 0x00, 0x02, 0x00), ISP_NODE_STATUS_OK);
        expect(0, REP(5, 3), 5, 0x00, 0xBD, 0x7B, 0xC3, 0x9F);
        assert_int_equal(rx(0, REQ(3, 0), 0), ISP_NODE_STATUS_OK);
        expect(0, REP(3, 3), 1, 0x00);

        /* CONNECT with the ECHO flag */
        assert_int_equal(rx(0, REQ(0, 3), 1, ISP_NODE_CONNECT_ECHO), ISP_NODE_STATUS_OK);
        expect(0, REP(0, 3), 8, 1, 0x0F, 0x12, 4, UID[0], UID[1], UID[2], 3);
        assert_int_equal(rx(0, REQ(5, 0), 6, 0x01, 0x12, 0x00, 0x00, 0x02, 0x00), ISP_NODE_STATUS_OK);
        expect(0, REP(5, 3), 8, 0x00, 0xBD, 0x7B, 0xC3, 0x9F, 0x01, 0x12, 0x00);
        /* refused: the status, a CRC of 0, the offset asked */
        assert_int_equal(rx(0, REQ(5, 0), 6, 0x01, 0xFF, 0x00, 0x00, 0x02, 0x00), ISP_NODE_STATUS_RANGE);
        expect(0, REP(5, 3), 8, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01, 0xFF, 0x00);
        /* malformed: nothing to echo */
        assert_int_equal(rx(0, REQ(5, 0), 2, 0x01, 0x12), ISP_NODE_STATUS_BAD_ARGUMENT);
        expect(0, REP(5, 3), 8, 0x03, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF);

        assert_int_equal(rx(0, REQ(3, 0), 4, 0x00, 0x04, 0x00, 2), ISP_NODE_STATUS_OK);
        expect(0, REP(3, 3), 4, 0x00, 0x00, 0x04, 0x00);
        assert_int_equal(rx(0, REQ(3, 0), 0), ISP_NODE_STATUS_OK);
        expect(0, REP(3, 3), 4, 0x00, 0xFF, 0xFF, 0xFF);
        /* a CONNECT with JOIN to another id keeps it; one without, to
         * itself, clears it */
        assert_int_equal(rx(0, REQ(0, 9), 1, ISP_NODE_CONNECT_JOIN), ISP_NODE_STATUS_OK);
        assert_int_equal(rx(0, REQ(5, 0), 6, 0x01, 0x12, 0x00, 0x00, 0x02, 0x00), ISP_NODE_STATUS_OK);
        expect(0, REP(5, 3), 8, 0x00, 0xBD, 0x7B, 0xC3, 0x9F, 0x01, 0x12, 0x00);
        assert_int_equal(rx(0, REQ(0, 3), 1, 0), ISP_NODE_STATUS_OK);
        expect(0, REP(0, 3), 8, 1, 0x0F, 0x12, 4, UID[0], UID[1], UID[2], 3);
        assert_int_equal(rx(0, REQ(5, 0), 6, 0x01, 0x12, 0x00, 0x00, 0x02, 0x00), ISP_NODE_STATUS_OK);
        expect(0, REP(5, 3), 5, 0x00, 0xBD, 0x7B, 0xC3, 0x9F);
        expect_nothing(0);
}

static void test_crc_command(void **state) {
        one_selected(3, 0);
        memcpy(flash(0) + 0x2345, "123456789", 9);

        assert_int_equal(rx(0, REQ(5, 0), 6, 0x00, 0x23, 0x45, 0x00, 0x00, 0x09), ISP_NODE_STATUS_OK);
        expect(0, 0x1B500003, 5, 0x00, 0xCB, 0xF4, 0x39, 0x26);

        /* one erased sector: zlib.crc32(b"\xff" * 512) */
        assert_int_equal(rx(0, REQ(5, 0), 6, 0x01, 0x12, 0x00, 0x00, 0x02, 0x00), ISP_NODE_STATUS_OK);
        expect(0, REP(5, 3), 5, 0x00, 0xBD, 0x7B, 0xC3, 0x9F);

        /* empty range */
        assert_int_equal(rx(0, REQ(5, 0), 6, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00), ISP_NODE_STATUS_OK);
        expect(0, REP(5, 3), 5, 0x00, 0x00, 0x00, 0x00, 0x00);
        expect_nothing(0);
}

static void test_crc_whole_flash_and_isp_area(void **state) {
        uint32_t want;
        struct isp_node_frame f;

        one_selected(3, 0);
        memcpy(flash(0) + 0x1FFF7, "123456789", 9);

        /* The ISP area may be CRC'd: the host can check the pattern. */
        want = isp_node_crc32(0, flash(0) + ISP_NODE_ISP_START, ISP_NODE_ISP_END - ISP_NODE_ISP_START);
        assert_int_equal(rx(0, REQ(5, 0), 6, 0x01, 0x00, 0x00, 0x00, 0x10, 0x00), ISP_NODE_STATUS_OK);
        expect(0, REP(5, 3), 5, 0x00, (uint8_t) (want >> 24), (uint8_t) (want >> 16),
               (uint8_t) (want >> 8), (uint8_t) want);

        want = isp_node_crc32(0, flash(0), ISP_NODE_FLASH_SIZE);
        assert_int_equal(rx(0, REQ(5, 0), 6, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00), ISP_NODE_STATUS_OK);
        assert_true(isp_node_ram_pop(&b->ram[0], &f));
        assert_int_equal(f.id, REP(5, 3) | EFF);
        assert_int_equal(f.dlc, 5);
        assert_int_equal(f.data[0], 0);
        assert_int_equal(((uint32_t) f.data[1] << 24) | ((uint32_t) f.data[2] << 16) |
                         ((uint32_t) f.data[3] << 8) | f.data[4], want);

        /* the last 9 bytes */
        assert_int_equal(rx(0, REQ(5, 0), 6, 0x01, 0xFF, 0xF7, 0x00, 0x00, 0x09), ISP_NODE_STATUS_OK);
        expect(0, REP(5, 3), 5, 0x00, 0xCB, 0xF4, 0x39, 0x26);
}

static void test_crc_refused(void **state) {
        unsigned long n_read;

        one_selected(3, 0);
        n_read = b->ram[0].n_read;
        /* DLC other than 6 */
        assert_int_equal(rx(0, REQ(5, 0), 0), ISP_NODE_STATUS_BAD_ARGUMENT);
        expect(0, 0x1B500003, 5, 0x03, 0, 0, 0, 0);
        assert_int_equal(rx(0, REQ(5, 0), 5, 0, 0, 0, 0, 0), ISP_NODE_STATUS_BAD_ARGUMENT);
        expect(0, REP(5, 3), 5, 0x03, 0, 0, 0, 0);
        assert_int_equal(rx(0, REQ(5, 0), 7, 0, 0, 0, 0, 0, 1, 0), ISP_NODE_STATUS_BAD_ARGUMENT);
        expect(0, REP(5, 3), 5, 0x03, 0, 0, 0, 0);
        /* past the end */
        assert_int_equal(rx(0, REQ(5, 0), 6, 0x01, 0xFF, 0xF8, 0x00, 0x00, 0x09), ISP_NODE_STATUS_RANGE);
        expect(0, REP(5, 3), 5, 0x01, 0, 0, 0, 0);
        assert_int_equal(rx(0, REQ(5, 0), 6, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01), ISP_NODE_STATUS_RANGE);
        expect(0, REP(5, 3), 5, 0x01, 0, 0, 0, 0);
        assert_int_equal(rx(0, REQ(5, 0), 6, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF), ISP_NODE_STATUS_RANGE);
        expect(0, REP(5, 3), 5, 0x01, 0, 0, 0, 0);
        expect_nothing(0);
        assert_int_equal(b->ram[0].n_read, n_read);
}

/* docs/protocol.md 4.7: offset >= 0x20000 is status 1 even with length 0;
 * length 0 at an offset inside the flash is CRC 0 with status 0. */
static void test_crc_length0_offset_checked(void **state) {
        one_selected(3, 0);
        assert_int_equal(rx(0, REQ(5, 0), 6, 0x01, 0xFF, 0xFF, 0x00, 0x00, 0x00), ISP_NODE_STATUS_OK);
        expect(0, REP(5, 3), 5, 0x00, 0, 0, 0, 0);
        assert_int_equal(rx(0, REQ(5, 0), 6, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00), ISP_NODE_STATUS_RANGE);
        expect(0, REP(5, 3), 5, 0x01, 0, 0, 0, 0);
        assert_int_equal(rx(0, REQ(5, 0), 6, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00), ISP_NODE_STATUS_RANGE);
        expect(0, REP(5, 3), 5, 0x01, 0, 0, 0, 0);
        /* the range check still comes after the DLC check */
        assert_int_equal(rx(0, REQ(5, 0), 3, 0x02, 0x00, 0x00), ISP_NODE_STATUS_BAD_ARGUMENT);
        expect(0, REP(5, 3), 5, 0x03, 0, 0, 0, 0);
        expect_nothing(0);
}

/* ---- REBOOT ---- */

static void test_reboot_without_application(void **state) {
        one_selected(3, ISP_NODE_CONNECT_QUIET);
        put_entry(0, 0x02, 0x10, 0x02); /* target too low */
        assert_int_equal(rx(0, REQ(4, 0), 0), ISP_NODE_STATUS_NO_APP);
        expect(0, 0x1B400003, 1, 0x05);
        expect_nothing(0);
        assert_int_equal(isp_node_get_mode(&b->node[0]), ISP_NODE_MODE_ISP);
        assert_true(isp_node_is_selected(&b->node[0]));
        assert_true(isp_node_is_quiet(&b->node[0]));

        /* still working */
        assert_int_equal(rx(0, REQ(1, 0x11000), 0), ISP_NODE_STATUS_OK);
        expect(0, REP(1, 3), 8, 0x02, 0x10, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF);
}

static void test_reboot_with_application(void **state) {
        one_selected(3, 0);
        assert_int_equal(rx(0, REQ(2, 0x11000), 3, 0x02, 0x10, 0x03), ISP_NODE_STATUS_OK);
        expect(0, REP(2, 3), 4, 0x00, 0x01, 0x10, 0x00);

        assert_int_equal(rx(0, REQ(4, 0), 0), ISP_NODE_STATUS_OK);
        expect(0, 0x1B400003, 1, 0x00);
        expect_nothing(0);
        assert_int_equal(isp_node_get_mode(&b->node[0]), ISP_NODE_MODE_APPLICATION);
        assert_false(isp_node_is_selected(&b->node[0]));

        /* the application does not answer the ISP */
        assert_int_equal(rx(0, REQ(0, 3), 0), IGNORED);
        assert_int_equal(rx(0, REQ(0, 0xFF), 0), IGNORED);
        assert_int_equal(rx(0, REQ(1, 0x11000), 0), IGNORED);
        assert_int_equal(rx(0, REQ(3, 0), 0), IGNORED);
        expect_nothing(0);
        assert_int_equal(flash(0)[0x11000], 0x02);
}

/* ---- application mode, DfuFlag and ANNOUNCE ---- */

static void app_node(uint8_t id) {
        bench_add(id, 4);
        put_entry(0, 0x02, 0x12, 0x34);
        assert_int_equal(isp_node_power_on(&b->node[0]), ISP_NODE_MODE_APPLICATION);
        expect_nothing(0);
}

/* The ISP does not run while the application does: the core ignores
 * everything, ENTER_ISP and IDENTIFY included (those are the
 * application's, isp-app.h, tested in test-isp-app.c). */
static void test_application_mode_ignores_everything(void **state) {
        app_node(3);
        assert_int_equal(rx(0, REQ(7, 3), 4, 0x12, 0xAB, 0xCD, 0x34), IGNORED);
        assert_int_equal(rx(0, REQ(7, 0xFF), 4, 0x12, 0xAB, 0xCD, 0x34), IGNORED);
        assert_int_equal(rx(0, REQ(6, 3), 1, 0x00), IGNORED);
        assert_int_equal(rx(0, REQ(6, 0xFF), 1, 0x01), IGNORED);
        assert_int_equal(rx(0, REQ(0, 3), 0), IGNORED);
        assert_int_equal(rx(0, REQ(0, 0xFF), 0), IGNORED);
        assert_int_equal(rx(0, REQ(4, 0), 0), IGNORED);
        expect_nothing(0);
        assert_int_equal(isp_node_get_mode(&b->node[0]), ISP_NODE_MODE_APPLICATION);
}

/* What the application's ENTER_ISP does to the chip: DfuFlag, soft reset. */
static void test_dfu_flag_and_soft_reset_announce(void **state) {
        app_node(200);
        isp_node_set_dfu_flag(&b->node[0]);
        assert_int_equal(isp_node_get_mode(&b->node[0]), ISP_NODE_MODE_APPLICATION);
        expect_nothing(0);
        assert_int_equal(isp_node_soft_reset(&b->node[0]), ISP_NODE_MODE_ISP);
        expect_info(0, 0x1B7000C8, 200, 4);
        expect_nothing(0);
        assert_false(isp_node_is_selected(&b->node[0]));

        /* in ISP it is an ordinary node that still has its application */
        assert_int_equal(rx(0, REQ(0, 200), 0), ISP_NODE_STATUS_OK);
        expect_info(0, REP(0, 200), 200, 4);
        assert_int_equal(rx(0, REQ(7, 200), 4, 0x12, 0xAB, 0xCD, 0x34), IGNORED);
        assert_int_equal(rx(0, REQ(6, 200), 1, 0x00), IGNORED);
        assert_int_equal(rx(0, REQ(4, 0), 0), ISP_NODE_STATUS_OK);
        expect(0, REP(4, 200), 1, 0x00);
        assert_int_equal(isp_node_get_mode(&b->node[0]), ISP_NODE_MODE_APPLICATION);
}

static void test_soft_reset_keeps_dfu_flag_power_on_does_not(void **state) {
        app_node(3);
        /* a soft reset with no DfuFlag set: back into the application */
        assert_int_equal(isp_node_soft_reset(&b->node[0]), ISP_NODE_MODE_APPLICATION);
        expect_nothing(0);

        /* DfuFlag, then a power cut: XRAM (and DfuFlag) is gone, the
         * valid application starts again */
        isp_node_set_dfu_flag(&b->node[0]);
        isp_node_power_off(&b->node[0]);
        assert_int_equal(isp_node_power_on(&b->node[0]), ISP_NODE_MODE_APPLICATION);
        expect_nothing(0);

        /* nothing to set while the power is off */
        isp_node_power_off(&b->node[0]);
        isp_node_set_dfu_flag(&b->node[0]);
        assert_int_equal(isp_node_power_on(&b->node[0]), ISP_NODE_MODE_APPLICATION);
        assert_int_equal(isp_node_soft_reset(&b->node[0]), ISP_NODE_MODE_APPLICATION);
        expect_nothing(0);

        /* DfuFlag survives a soft reset: the ISP stays and announces */
        isp_node_set_dfu_flag(&b->node[0]);
        assert_int_equal(isp_node_soft_reset(&b->node[0]), ISP_NODE_MODE_ISP);
        expect_info(0, REP(7, 3), 3, 4);

        /* explicit boots */
        assert_int_equal(isp_node_boot(&b->node[0], true), ISP_NODE_MODE_ISP);
        expect_info(0, REP(7, 3), 3, 4);
        /* the ISP cleared DfuFlag: the next soft reset runs the application */
        assert_int_equal(isp_node_soft_reset(&b->node[0]), ISP_NODE_MODE_APPLICATION);
        expect_nothing(0);
}

static void test_run_application_forced(void **state) {
        one_selected(3, 0);
        isp_node_run_application(&b->node[0]);
        assert_int_equal(isp_node_get_mode(&b->node[0]), ISP_NODE_MODE_APPLICATION);
        assert_false(isp_node_is_selected(&b->node[0]));
        assert_int_equal(rx(0, REQ(1, 0), 0), IGNORED);
        expect_nothing(0);
        /* entry invalid: a soft reset without DfuFlag leads to ISP and
         * ANNOUNCE all the same */
        assert_int_equal(isp_node_soft_reset(&b->node[0]), ISP_NODE_MODE_ISP);
        expect_info(0, REP(7, 3), 3, 4);
}

/* ---- power cuts and the commit rule ---- */

static void test_power_cut(void **state) {
        one_selected(3, 0);
        isp_node_power_off(&b->node[0]);
        assert_int_equal(isp_node_get_mode(&b->node[0]), ISP_NODE_MODE_OFF);
        assert_false(isp_node_is_selected(&b->node[0]));
        assert_int_equal(rx(0, REQ(0, 3), 0), IGNORED);
        assert_int_equal(rx(0, REQ(2, 0x100), 1, 0), IGNORED);
        expect_nothing(0);
        assert_int_equal(flash(0)[0x100], 0xFF);

        /* back, in ISP, announced, not selected */
        assert_int_equal(isp_node_power_on(&b->node[0]), ISP_NODE_MODE_ISP);
        expect_info(0, REP(7, 3), 3, 4);
        assert_false(isp_node_is_selected(&b->node[0]));
        assert_int_equal(rx(0, REQ(2, 0x100), 1, 0), IGNORED);
}

/* An update interrupted at any point after the first step of the commit
 * rule comes back in ISP; once the entry is in, it boots the new image. */
static void test_commit_rule_interrupted_update(void **state) {
        app_node(3);
        fill(0, 0x0000, 0x100, 0x11); /* the old application */

        /* its ENTER_ISP */
        isp_node_set_dfu_flag(&b->node[0]);
        assert_int_equal(isp_node_soft_reset(&b->node[0]), ISP_NODE_MODE_ISP);
        expect_info(0, REP(7, 3), 3, 4);
        assert_int_equal(rx(0, REQ(0, 3), 0), ISP_NODE_STATUS_OK);
        expect_info(0, REP(0, 3), 3, 4);

        /* 1. erase the entry's sector */
        assert_int_equal(rx(0, REQ(3, 0), 4, 0x01, 0x10, 0x00, 1), ISP_NODE_STATUS_OK);
        expect(0, REP(3, 3), 1, 0);
        /* 2. erase and program some of the rest, then the power goes */
        assert_int_equal(rx(0, REQ(3, 0), 4, 0x00, 0x00, 0x00, 1), ISP_NODE_STATUS_OK);
        expect(0, REP(3, 3), 1, 0);
        assert_int_equal(rx(0, REQ(2, 0x0000), 8, 1, 2, 3, 4, 5, 6, 7, 8), ISP_NODE_STATUS_OK);
        expect(0, REP(2, 3), 4, 0, 0, 0, 0);
        isp_node_power_off(&b->node[0]);

        assert_int_equal(isp_node_power_on(&b->node[0]), ISP_NODE_MODE_ISP);
        expect_info(0, REP(7, 3), 3, 4);
        assert_memory_equal(flash(0), ((const uint8_t[]) { 1, 2, 3, 4, 5, 6, 7, 8 }), 8);

        /* the host reconnects, finishes, 3. writes the entry last */
        assert_int_equal(rx(0, REQ(0, 3), 0), ISP_NODE_STATUS_OK);
        expect_info(0, REP(0, 3), 3, 4);
        assert_int_equal(rx(0, REQ(2, 0x11000), 3, 0x02, 0x10, 0x03), ISP_NODE_STATUS_OK);
        expect(0, REP(2, 3), 4, 0, 0x01, 0x10, 0x00);
        isp_node_power_off(&b->node[0]);
        assert_int_equal(isp_node_power_on(&b->node[0]), ISP_NODE_MODE_APPLICATION);
        expect_nothing(0);
}

/* ---- legacy node ---- */

static void test_legacy_connect(void **state) {
        one_legacy();
        assert_true(isp_node_is_legacy(&b->node[0]));
        /* a legacy node acts on everything, selected or not */
        assert_true(isp_node_is_selected(&b->node[0]));

        assert_int_equal(rx(0, REQ(0, 0), 0), ISP_NODE_STATUS_OK);
        expect(0, 0x1B000000, 0);
        /* it cannot tell targets apart: DISCOVER, other ids, flags */
        assert_int_equal(rx(0, REQ(0, 0xFF), 0), ISP_NODE_STATUS_OK);
        expect(0, 0x1B000000, 0);
        assert_int_equal(rx(0, REQ(0, 5), 1, ISP_NODE_CONNECT_QUIET), ISP_NODE_STATUS_OK);
        expect(0, 0x1B000000, 0);
        expect_nothing(0);
        assert_true(isp_node_is_selected(&b->node[0]));
        assert_false(isp_node_is_quiet(&b->node[0]));
}

static void test_legacy_read(void **state) {
        one_legacy();
        memcpy(flash(0) + 0x11200, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
        assert_int_equal(rx(0, REQ(1, 0x11200), 0), ISP_NODE_STATUS_OK);
        expect(0, 0x1B100000, 8, 1, 2, 3, 4, 5, 6, 7, 8);
        /* past the end (undefined: hosts never ask): this one is silent */
        assert_int_equal(rx(0, REQ(1, 0x1FFF9), 0), ISP_NODE_STATUS_RANGE);
        assert_int_equal(rx(0, REQ(1, 0x3FFFF), 0), ISP_NODE_STATUS_RANGE);
        expect_nothing(0);
}

/* docs/protocol.md 3.2: a legacy node decodes only ID bits 16..0 as the
 * offset of READ and PROGRAM; bits 19..17 do not refuse the request. */
static void test_legacy_offset_is_17_bits(void **state) {
        uint8_t before[ISP_NODE_FLASH_SIZE];

        one_legacy();
        /* 0x20100 is offset 0x00100 */
        assert_int_equal(rx(0, REQ(2, 0x20100), 2, 0x12, 0x34), ISP_NODE_STATUS_OK);
        expect(0, 0x1B200000, 0);
        assert_int_equal(flash(0)[0x100], 0x12);
        assert_int_equal(flash(0)[0x101], 0x34);
        /* 0xF1200 is offset 0x11200 */
        assert_int_equal(rx(0, REQ(2, 0xF1200), 1, 0x56), ISP_NODE_STATUS_OK);
        expect(0, 0x1B200000, 0);
        assert_int_equal(flash(0)[0x11200], 0x56);

        assert_int_equal(rx(0, REQ(1, 0x20100), 0), ISP_NODE_STATUS_OK);
        expect(0, 0x1B100000, 8, 0x12, 0x34, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF);
        assert_int_equal(rx(0, REQ(1, 0xE0100), 0), ISP_NODE_STATUS_OK);
        expect(0, 0x1B100000, 8, 0x12, 0x34, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF);
        assert_int_equal(rx(0, REQ(1, 0x31200), 0), ISP_NODE_STATUS_OK);
        expect(0, 0x1B100000, 8, 0x56, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF);

        /* 0x30000 is offset 0x10000: the ISP area, refused silently */
        memcpy(before, flash(0), sizeof(before));
        assert_int_equal(rx(0, REQ(2, 0x30000), 1, 0x00), ISP_NODE_STATUS_RANGE);
        expect_nothing(0);
        assert_memory_equal(flash(0), before, sizeof(before));
}

static void test_legacy_program(void **state) {
        uint8_t before[ISP_NODE_FLASH_SIZE];

        one_legacy();
        assert_int_equal(rx(0, REQ(2, 0x11200), 8, 1, 2, 3, 4, 5, 6, 7, 8), ISP_NODE_STATUS_OK);
        expect(0, 0x1B200000, 0);
        assert_memory_equal(flash(0) + 0x11200, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
        /* retransmission */
        assert_int_equal(rx(0, REQ(2, 0x11200), 8, 1, 2, 3, 4, 5, 6, 7, 8), ISP_NODE_STATUS_OK);
        expect(0, 0x1B200000, 0);

        /* every failure is silent */
        memcpy(before, flash(0), sizeof(before));
        assert_int_equal(rx(0, REQ(2, 0x11200), 1, 0x03), ISP_NODE_STATUS_WRITE_FAILED);
        assert_int_equal(rx(0, REQ(2, 0x11300), 0), ISP_NODE_STATUS_BAD_ARGUMENT);
        assert_int_equal(rx(0, REQ(2, 0x10000), 1, 0x00), ISP_NODE_STATUS_RANGE);
        assert_int_equal(rx(0, REQ(2, 0x0FFFC), 8, 1, 2, 3, 4, 5, 6, 7, 8), ISP_NODE_STATUS_RANGE);
        assert_int_equal(rx(0, REQ(2, 0x10FFD), 6, 1, 2, 3, 2, 0x10, 3), ISP_NODE_STATUS_RANGE);
        assert_int_equal(rx(0, REQ(2, 0x1FFFC), 8, 1, 2, 3, 4, 5, 6, 7, 8), ISP_NODE_STATUS_RANGE);
        b->ram[0].fail_program = 1;
        assert_int_equal(rx(0, REQ(2, 0x11300), 1, 0x00), ISP_NODE_STATUS_WRITE_FAILED);
        expect_nothing(0);
        assert_memory_equal(flash(0), before, sizeof(before));
}

static void test_legacy_erase(void **state) {
        one_legacy();
        fill(0, 0, ISP_NODE_ISP_START, 0x00);
        fill(0, ISP_NODE_ISP_END, ISP_NODE_FLASH_SIZE - ISP_NODE_ISP_END, 0x00);
        assert_int_equal(rx(0, REQ(3, 0), 0), ISP_NODE_STATUS_OK);
        expect(0, 0x1B300000, 0);
        assert_erased(0, 0, ISP_NODE_ISP_START);
        assert_erased(0, ISP_NODE_ISP_END, ISP_NODE_FLASH_SIZE - ISP_NODE_ISP_END);
        assert_isp_intact(0);
        assert_int_equal(b->ram[0].n_erased, 248);

        /* it knows no sector erase: any ERASE is the full erase */
        fill(0, 0x4000, 0x10, 0x00);
        assert_int_equal(rx(0, REQ(3, 0), 4, 0x01, 0x10, 0x00, 1), ISP_NODE_STATUS_OK);
        expect(0, 0x1B300000, 0);
        assert_erased(0, 0x4000, 0x10);
        assert_int_equal(b->ram[0].n_erased, 2 * 248);

        /* silent on failure */
        b->ram[0].fail_erase = 1;
        assert_int_equal(rx(0, REQ(3, 0), 0), ISP_NODE_STATUS_WRITE_FAILED);
        expect_nothing(0);
}

static void test_legacy_reboot(void **state) {
        one_legacy();
        /* no valid application: DLC 0 reply all the same, stays in ISP */
        assert_int_equal(rx(0, REQ(4, 0), 0), ISP_NODE_STATUS_NO_APP);
        expect(0, 0x1B400000, 0);
        assert_int_equal(isp_node_get_mode(&b->node[0]), ISP_NODE_MODE_ISP);
        assert_int_equal(rx(0, REQ(0, 0), 0), ISP_NODE_STATUS_OK);
        expect(0, 0x1B000000, 0);

        assert_int_equal(rx(0, REQ(2, 0x11000), 3, 0x02, 0xFF, 0x00), ISP_NODE_STATUS_OK);
        expect(0, 0x1B200000, 0);
        assert_int_equal(rx(0, REQ(4, 0), 0), ISP_NODE_STATUS_OK);
        expect(0, 0x1B400000, 0);
        assert_int_equal(isp_node_get_mode(&b->node[0]), ISP_NODE_MODE_APPLICATION);
        assert_int_equal(rx(0, REQ(0, 0), 0), IGNORED);
        expect_nothing(0);
}

static void test_legacy_ignores_extended_commands(void **state) {
        one_legacy();
        assert_int_equal(rx(0, REQ(5, 0), 6, 0, 0, 0, 0, 0, 9), IGNORED);
        assert_int_equal(rx(0, REQ(6, 0), 0), IGNORED);
        assert_int_equal(rx(0, REQ(7, 0), 4, 0x12, 0xAB, 0xCD, 0x34), IGNORED);
        assert_int_equal(rx(0, REQ(9, 0), 0), IGNORED);
        expect_nothing(0);
}

static void test_legacy_application(void **state) {
        bench_add(0, 1);
        put_entry(0, 0x02, 0x10, 0x03);
        assert_int_equal(isp_node_power_on(&b->node[0]), ISP_NODE_MODE_APPLICATION);
        assert_int_equal(rx(0, REQ(7, 0), 4, 0x12, 0xAB, 0xCD, 0x34), IGNORED);
        assert_int_equal(rx(0, REQ(0, 0), 0), IGNORED);
        expect_nothing(0);
        assert_int_equal(isp_node_get_mode(&b->node[0]), ISP_NODE_MODE_APPLICATION);

        /* an application that sets DfuFlag: its ISP stays, silently */
        isp_node_set_dfu_flag(&b->node[0]);
        assert_int_equal(isp_node_soft_reset(&b->node[0]), ISP_NODE_MODE_ISP);
        expect_nothing(0);
        assert_int_equal(rx(0, REQ(0, 0), 0), ISP_NODE_STATUS_OK);
        expect(0, 0x1B000000, 0);

        assert_int_equal(rx(0, REQ(4, 0), 0), ISP_NODE_STATUS_OK);
        expect(0, 0x1B400000, 0);
        assert_int_equal(isp_node_get_mode(&b->node[0]), ISP_NODE_MODE_APPLICATION);
}

/* A legacy node among extended ones answers everything, with node 0 in
 * its replies: what the host detects as a conflict. */
static void test_legacy_among_extended(void **state) {
        bench_add(0, 1);
        bench_add(1, 4);
        assert_int_equal(isp_node_power_on(&b->node[0]), ISP_NODE_MODE_ISP);
        assert_int_equal(isp_node_power_on(&b->node[1]), ISP_NODE_MODE_ISP);
        expect_info(1, REP(7, 1), 1, 4);

        rx_all(REQ(0, 0xFF), 0);
        expect(0, 0x1B000000, 0);
        expect_info(1, REP(0, 1), 1, 4);

        rx_all(REQ(0, 1), 0);
        expect(0, 0x1B000000, 0);
        expect_info(1, REP(0, 1), 1, 4);

        rx_all(REQ(2, 0x100), 1, 0x00);
        expect(0, 0x1B200000, 0);
        expect(1, REP(2, 1), 4, 0, 0x00, 0x01, 0x00);
        assert_int_equal(flash(0)[0x100], 0x00);
        assert_int_equal(flash(1)[0x100], 0x00);
}

static void test_ram_send_overflow(void **state) {
        struct isp_node_frame f;

        one_node(3);
        for (int i = 0; i < ISP_NODE_RAM_MAX_SENT + 2; i++)
                assert_int_equal(rx(0, REQ(0, 0xFF), 0), ISP_NODE_STATUS_OK);
        assert_int_equal(b->ram[0].n_overflow, 2);
        assert_int_equal(b->ram[0].n_sent, ISP_NODE_RAM_MAX_SENT);
        assert_true(isp_node_ram_pop(&b->ram[0], &f));
        assert_int_equal(f.id, REP(0, 3) | EFF);
}

#define T(x) cmocka_unit_test_setup_teardown(x, setup, teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                T(test_crc32),
                T(test_entry_validity),
                T(test_isp_pattern),
                T(test_init_rejects),
                T(test_off_until_boot),
                T(test_power_on_erased_announces),
                T(test_power_on_valid_entry_starts_application),
                T(test_power_on_invalid_entry_stays_in_isp),
                T(test_rx_depth_zero_reported_as_one),
                T(test_non_isp_frames_ignored),
                T(test_unknown_commands_ignored),
                T(test_unselected_node_ignores_commands),
                T(test_connect_own_id_selects),
                T(test_connect_other_id_deselects),
                T(test_connect_other_id_with_join_keeps_selection),
                T(test_connect_legacy_target_selects),
                T(test_discover_keeps_selection),
                T(test_connect_ignores_extra_bytes),
                T(test_connect_with_upper_arg_bits_ignored),
                T(test_join_group_multicast),
                T(test_read),
                T(test_read_refused),
                T(test_program),
                T(test_program_retransmit_is_harmless),
                T(test_program_and_failure),
                T(test_program_iap_error_and_readback),
                T(test_program_dlc0),
                T(test_program_isp_area_refused),
                T(test_program_quiet),
                T(test_erase_all),
                cmocka_unit_test(test_erase_all_entry_first),
                T(test_erase_range),
                T(test_erase_bad_arguments),
                T(test_erase_isp_area_refused),
                T(test_erase_iap_error),
                T(test_erase_readback),
                T(test_echo),
                T(test_crc_command),
                T(test_crc_whole_flash_and_isp_area),
                T(test_crc_refused),
                T(test_crc_length0_offset_checked),
                T(test_reboot_without_application),
                T(test_reboot_with_application),
                T(test_application_mode_ignores_everything),
                T(test_dfu_flag_and_soft_reset_announce),
                T(test_soft_reset_keeps_dfu_flag_power_on_does_not),
                T(test_run_application_forced),
                T(test_power_cut),
                T(test_commit_rule_interrupted_update),
                T(test_legacy_connect),
                T(test_legacy_read),
                T(test_legacy_offset_is_17_bits),
                T(test_legacy_program),
                T(test_legacy_erase),
                T(test_legacy_reboot),
                T(test_legacy_ignores_extended_commands),
                T(test_legacy_application),
                T(test_legacy_among_extended),
                T(test_ram_send_overflow),
        };

        return cmocka_run_group_tests_name("isp-node", tests, NULL, NULL);
}
