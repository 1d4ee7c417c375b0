/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sim-can-bits.h"

static struct isp_node_frame frame(uint32_t id, uint8_t dlc, const uint8_t *data) {
        struct isp_node_frame f = { .id = id | ISP_NODE_FRAME_EXTENDED, .dlc = dlc };

        if (dlc)
                memcpy(f.data, data, dlc);
        return f;
}

/* Stuff bits worked out bit by bit (SOF .. CRC-15, a stuff bit after five
 * equal bits, counting toward the next run). */
static void test_known_frames(void **state) {
        static const uint8_t zeros[8] = { 0 };
        static const uint8_t ones[8] = { 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF };
        static const uint8_t info[8] = { 1, 7, 0x12, 4, 0xC0, 0xFF, 0xEE, 3 };
        static const uint8_t ack[4] = { 0, 1, 0x12, 0 };
        struct isp_node_frame f;

        f = frame(0x1A000000, 0, NULL);
        assert_int_equal(sim_can_stuff_bits(&f), 6);
        assert_int_equal(sim_can_frame_bits(&f), 73);

        f = frame(0x1A0000FF, 0, NULL);
        assert_int_equal(sim_can_stuff_bits(&f), 5);
        assert_int_equal(sim_can_frame_bits(&f), 72);

        f = frame(0x1B000003, 8, info);
        assert_int_equal(sim_can_frame_bits(&f), 145);

        f = frame(0x1A211200, 8, zeros);
        assert_int_equal(sim_can_frame_bits(&f), 146);
        f = frame(0x1A211200, 8, ones);
        assert_int_equal(sim_can_frame_bits(&f), 147);

        f = frame(0x1B200003, 4, ack);
        assert_int_equal(sim_can_frame_bits(&f), 108);

        f = frame(0x00000000, 8, zeros);
        assert_int_equal(sim_can_stuff_bits(&f), 19);
        f = frame(0x1FFFFFFF, 8, ones);
        assert_int_equal(sim_can_stuff_bits(&f), 18);
}

/* Every frame lies between docs/protocol.md's bounds: 64 + 8N + 3 bits
 * and floor((53 + 8N) / 4) stuff bits more. */
static void test_bounds(void **state) {
        uint64_t x = 0x123456789ABCDEFULL;

        for (int i = 0; i < 20000; i++) {
                struct isp_node_frame f;
                unsigned n, bits;

                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                f.id = (uint32_t) (x & 0x1FFFFFFF) | ISP_NODE_FRAME_EXTENDED;
                f.dlc = (uint8_t) ((x >> 29) % 9);
                memcpy(f.data, &x, 8);
                n = f.dlc;
                bits = sim_can_frame_bits(&f);
                assert_true(bits >= 64 + 8 * n + 3);
                assert_true(bits <= 64 + 8 * n + 3 + (53 + 8 * n) / 4);
        }
}

static void test_nsec(void **state) {
        /* 8-byte frame without stuffing: 131 bits (and 134, the design page's count) */
        assert_int_equal(sim_can_bits_to_nsec(131, 500000), 262000);
        assert_int_equal(sim_can_bits_to_nsec(134, 500000), 268000);
        assert_int_equal(sim_can_bits_to_nsec(134, 1000000), 134000);
        assert_int_equal(sim_can_bits_to_nsec(134, 125000), 1072000);
        assert_int_equal(sim_can_bits_to_nsec(134, 800000), 167500);
        /* rounded up */
        assert_int_equal(sim_can_bits_to_nsec(1, 300000), 3334);
        assert_int_equal(sim_can_bits_to_nsec(134, 0), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_known_frames),
                cmocka_unit_test(test_bounds),
                cmocka_unit_test(test_nsec),
        };

        return cmocka_run_group_tests_name("sim-can-bits", tests, NULL, NULL);
}
