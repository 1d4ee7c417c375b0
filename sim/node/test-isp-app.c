/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The application helper (isp-app.h) frame by frame on the node core's
 * RAM flash: ENTER_ISP into a real core's boot decision, IDENTIFY's exact
 * reply frames, the image CRC against docs/protocol.md 12.1 and the
 * host's own code, and every request it must ignore. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "isp-app.h"
#include "isp-crc32.h"
#include "isp-frame.h"
#include "isp-image.h"
#include "isp-node-ram.h"
#include "isp-node.h"

#define EFF ISP_NODE_FRAME_EXTENDED
#define REQ(cmd, arg) ISP_NODE_REQUEST_ID(cmd, arg)

/* Calls of isp_app_poll() the whole CRC takes. */
#define POLLS (ISP_APP_IMAGE_SIZE / ISP_APP_POLL_BYTES)

typedef struct Bench {
        struct isp_node_ram ram;
        struct isp_app app;
        struct isp_app_ops ops;         /* isp_node_ram_app_ops, reads recorded */
        uint8_t reads[ISP_NODE_FLASH_SIZE];     /* how often each byte was read */
        unsigned long n_read_calls;
        uint8_t max_read_len;
} Bench;

static Bench *b;

static const uint8_t UID[4] = { 0xA4, 0x91, 0x70, 0x69 };

/* docs/protocol.md 12.1 */
static const char APP_HEX[] =
        ":03000000021234B5\n"
        ":0812340075810712001080FE15\n"
        ":0200000400FEFC\n"
        ":04010000AABBCCDDED\n"
        ":00000001FF\n";

static void recording_read(void *userdata, uint32_t offset, uint8_t *buf, uint8_t len) {
        assert_ptr_equal(userdata, &b->ram);
        assert_true(len >= 1 && len <= 8);
        assert_true(offset + len <= ISP_NODE_FLASH_SIZE);
        for (uint8_t i = 0; i < len; i++)
                b->reads[offset + i]++;
        b->n_read_calls++;
        if (len > b->max_read_len)
                b->max_read_len = len;
        isp_node_ram_app_ops.flash_read(userdata, offset, buf, len);
}

static void app_init(uint8_t id, uint32_t app_version) {
        struct isp_app_config config = {
                .node_id = id,
                .uid = { UID[0], UID[1], UID[2], UID[3] },
                .app_version = app_version,
        };

        assert_int_equal(isp_app_init(&b->app, &config, &b->ops, &b->ram), 0);
}

static int setup(void **state) {
        b = calloc(1, sizeof(*b));
        assert_non_null(b);
        isp_node_ram_init(&b->ram);
        b->ops = isp_node_ram_app_ops;
        b->ops.flash_read = recording_read;
        return 0;
}

static int teardown(void **state) {
        free(b);
        b = NULL;
        return 0;
}

static struct isp_node_frame make_frame(uint32_t id, int dlc, va_list ap) {
        struct isp_node_frame f = { .id = id, .dlc = (uint8_t) dlc };

        for (int i = 0; i < dlc && i < 8; i++)
                f.data[i] = (uint8_t) va_arg(ap, int);
        return f;
}

/* Deliver a request (extended flag added); returns the helper's result. */
static int rx(uint32_t id, int dlc, ...) {
        struct isp_node_frame f;
        va_list ap;

        va_start(ap, dlc);
        f = make_frame(id | EFF, dlc, ap);
        va_end(ap);
        return isp_app_receive(&b->app, &f);
}

static void expect(uint32_t id, int dlc, ...) {
        struct isp_node_frame want, got;
        va_list ap;

        va_start(ap, dlc);
        want = make_frame(id | EFF, dlc, ap);
        va_end(ap);
        assert_true(isp_node_ram_pop(&b->ram, &got));
        assert_int_equal(got.id, want.id);
        assert_int_equal(got.dlc, want.dlc);
        assert_memory_equal(got.data, want.data, 8);
}

static void expect_nothing(void) {
        struct isp_node_frame f;

        if (isp_node_ram_pop(&b->ram, &f))
                fail_msg("unexpected frame %08X", (unsigned) (f.id & ISP_NODE_FRAME_ID_MASK));
}

/* Poll until the CRC is done; returns the number of calls. */
static unsigned long poll_to_end(void) {
        unsigned long n = 0;

        while (isp_app_poll(&b->app)) {
                n++;
                assert_true(n <= POLLS);
        }
        return n + 1;
}

/* The flash of docs/protocol.md 12.1 after a complete update, written
 * byte by byte from the example's text. */
static void put_example_image(void) {
        static const uint8_t at_11234[8] = { 0x75, 0x81, 0x07, 0x12, 0x00, 0x10, 0x80, 0xFE };
        static const uint8_t at_00100[4] = { 0xAA, 0xBB, 0xCC, 0xDD };

        b->ram.flash[0x11000] = 0x02;
        b->ram.flash[0x11001] = 0x12;
        b->ram.flash[0x11002] = 0x34;
        memcpy(b->ram.flash + 0x11234, at_11234, 8);
        memcpy(b->ram.flash + 0x00100, at_00100, 4);
}

/* zlib's crc32(flash[0:0x10000] + flash[0x11000:0x20000]), by lib/. */
static uint32_t host_app_crc(const uint8_t *flash) {
        return isp_crc32_update(isp_crc32(flash, 0x10000), flash + 0x11000, 0xF000);
}

static struct isp_can_frame to_host(const struct isp_node_frame *f) {
        struct isp_can_frame h = {
                .id = f->id & ISP_NODE_FRAME_ID_MASK,
                .flags = (f->id & ISP_NODE_FRAME_EXTENDED) ? ISP_FRAME_EXTENDED : 0,
                .len = f->dlc,
        };

        memcpy(h.data, f->data, 8);
        return h;
}

/* ---- set-up ---- */

static void test_init_rejects(void **state) {
        struct isp_app_config config = { .node_id = 0 };
        struct isp_app_ops ops = isp_node_ram_app_ops;

        assert_int_equal(isp_app_init(&b->app, &config, &isp_node_ram_app_ops, &b->ram), -1);
        config.node_id = 255;
        assert_int_equal(isp_app_init(&b->app, &config, &isp_node_ram_app_ops, &b->ram), -1);
        config.node_id = 3;
        assert_int_equal(isp_app_init(&b->app, &config, NULL, &b->ram), -1);
        ops.enter_isp = NULL;
        assert_int_equal(isp_app_init(&b->app, &config, &ops, &b->ram), -1);
        ops = isp_node_ram_app_ops;
        ops.send = NULL;
        assert_int_equal(isp_app_init(&b->app, &config, &ops, &b->ram), -1);
        ops = isp_node_ram_app_ops;
        ops.flash_read = NULL;
        assert_int_equal(isp_app_init(&b->app, &config, &ops, &b->ram), -1);

        /* a refused helper does nothing at all */
        assert_false(isp_app_poll(&b->app));
        assert_false(isp_app_crc_is_done(&b->app));
        assert_int_equal(rx(REQ(6, 3), 1, 0x01), ISP_APP_IGNORED);
        assert_int_equal(rx(REQ(7, 3), 4, 0x12, 0xAB, 0xCD, 0x34), ISP_APP_IGNORED);
        expect_nothing();
        assert_int_equal(b->ram.n_enter_isp, 0);

        config.node_id = 1;
        assert_int_equal(isp_app_init(&b->app, &config, &isp_node_ram_app_ops, &b->ram), 0);
        config.node_id = 254;
        assert_int_equal(isp_app_init(&b->app, &config, &isp_node_ram_app_ops, &b->ram), 0);
        /* init sends nothing and reads nothing */
        expect_nothing();
        assert_int_equal(b->ram.n_read, 0);
}

/* ---- ENTER_ISP ---- */

/* The op writes DfuFlag as the chip stores it; a core booted with what it
 * wrote stays in ISP and announces, one booted without starts the
 * application again. */
static void test_enter_isp_into_core(void **state) {
        struct isp_node_config config = { .node_id = 3, .isp_version = 1, .rx_depth = 4,
                                          .uid = { UID[0], UID[1], UID[2], UID[3] } };
        struct isp_node node;
        struct isp_node_frame f;
        uint32_t xdata;

        put_example_image();
        assert_int_equal(isp_node_init(&node, &config, &isp_node_ram_ops, &b->ram), 0);
        assert_int_equal(isp_node_power_on(&node), ISP_NODE_MODE_APPLICATION);
        expect_nothing();

        app_init(3, 0);
        assert_int_equal(rx(REQ(7, 3), 4, 0x12, 0xAB, 0xCD, 0x34), ISP_APP_ENTERED_ISP);
        assert_int_equal(b->ram.n_enter_isp, 1);
        assert_memory_equal(b->ram.xdata_dfu_flag, ((const uint8_t[]) { 0x12, 0xAB, 0xCD, 0x34 }), 4);
        expect_nothing(); /* ENTER_ISP has no reply */

        /* the ISP's reset entry reads XDATA 1FFC-1FFF */
        xdata = (uint32_t) b->ram.xdata_dfu_flag[0] << 24 | (uint32_t) b->ram.xdata_dfu_flag[1] << 16 |
                (uint32_t) b->ram.xdata_dfu_flag[2] << 8 | b->ram.xdata_dfu_flag[3];
        assert_int_equal(isp_node_boot(&node, xdata == ISP_NODE_DFU_MAGIC), ISP_NODE_MODE_ISP);
        assert_true(isp_node_ram_pop(&b->ram, &f));
        assert_int_equal(f.id, EFF | 0x1B700003);
        assert_int_equal(f.dlc, 8);
        assert_memory_equal(f.data, ((const uint8_t[]) { 0x01, 0x07, 0x01, 0x04, 0xA4, 0x91, 0x70, 0x69 }), 8);
        expect_nothing();

        /* without it the same core starts the application */
        assert_int_equal(isp_node_boot(&node, false), ISP_NODE_MODE_APPLICATION);
        expect_nothing();

        /* target 0xFF too */
        memset(b->ram.xdata_dfu_flag, 0, 4);
        assert_int_equal(rx(REQ(7, 0xFF), 4, 0x12, 0xAB, 0xCD, 0x34), ISP_APP_ENTERED_ISP);
        assert_int_equal(b->ram.n_enter_isp, 2);
        assert_memory_equal(b->ram.xdata_dfu_flag, ((const uint8_t[]) { 0x12, 0xAB, 0xCD, 0x34 }), 4);
        expect_nothing();
}

static void test_enter_isp_ignored(void **state) {
        struct isp_node_frame f = { .id = REQ(7, 3), .dlc = 4, .data = { 0x12, 0xAB, 0xCD, 0x34 } };

        app_init(3, 0);
        /* other targets, the legacy target, stray ID bits */
        assert_int_equal(rx(REQ(7, 4), 4, 0x12, 0xAB, 0xCD, 0x34), ISP_APP_IGNORED);
        assert_int_equal(rx(REQ(7, 0), 4, 0x12, 0xAB, 0xCD, 0x34), ISP_APP_IGNORED);
        assert_int_equal(rx(REQ(7, 254), 4, 0x12, 0xAB, 0xCD, 0x34), ISP_APP_IGNORED);
        assert_int_equal(rx(REQ(7, 0x00103), 4, 0x12, 0xAB, 0xCD, 0x34), ISP_APP_IGNORED);
        assert_int_equal(rx(REQ(7, 0x001FF), 4, 0x12, 0xAB, 0xCD, 0x34), ISP_APP_IGNORED);
        assert_int_equal(rx(REQ(7, 0x80003), 4, 0x12, 0xAB, 0xCD, 0x34), ISP_APP_IGNORED);
        /* wrong data, wrong DLC */
        assert_int_equal(rx(REQ(7, 3), 4, 0x12, 0xAB, 0xCD, 0x35), ISP_APP_IGNORED);
        assert_int_equal(rx(REQ(7, 3), 4, 0x34, 0xCD, 0xAB, 0x12), ISP_APP_IGNORED);
        assert_int_equal(rx(REQ(7, 3), 4, 0x13, 0xAB, 0xCD, 0x34), ISP_APP_IGNORED);
        assert_int_equal(rx(REQ(7, 3), 3, 0x12, 0xAB, 0xCD), ISP_APP_IGNORED);
        assert_int_equal(rx(REQ(7, 3), 5, 0x12, 0xAB, 0xCD, 0x34, 0x00), ISP_APP_IGNORED);
        assert_int_equal(rx(REQ(7, 3), 8, 0x12, 0xAB, 0xCD, 0x34, 0, 0, 0, 0), ISP_APP_IGNORED);
        assert_int_equal(rx(REQ(7, 3), 0), ISP_APP_IGNORED);
        /* the ANNOUNCE ID is a reply, not a request */
        assert_int_equal(rx(0x1B700003, 4, 0x12, 0xAB, 0xCD, 0x34), ISP_APP_IGNORED);
        /* not ISP traffic: standard ID, RTR, DLC > 8 */
        assert_int_equal(isp_app_receive(&b->app, &f), ISP_APP_IGNORED);
        f.id = REQ(7, 3) | EFF | ISP_NODE_FRAME_RTR;
        assert_int_equal(isp_app_receive(&b->app, &f), ISP_APP_IGNORED);
        f.id = REQ(7, 3) | EFF;
        f.dlc = 9;
        assert_int_equal(isp_app_receive(&b->app, &f), ISP_APP_IGNORED);
        expect_nothing();
        assert_int_equal(b->ram.n_enter_isp, 0);

        /* the frame itself is fine */
        f.dlc = 4;
        assert_int_equal(isp_app_receive(&b->app, &f), ISP_APP_ENTERED_ISP);
        assert_int_equal(b->ram.n_enter_isp, 1);
}

/* ---- the image CRC ---- */

/* docs/protocol.md 12.1: crc32 = 0x5907571D, from the host's image loader
 * and from zlib's crc32 over the two parts, and from the helper. */
static void test_crc_of_example_image(void **state) {
        static struct isp_image img;
        struct isp_image_error err;

        assert_int_equal(isp_image_load(&img, APP_HEX, strlen(APP_HEX), ISP_IMAGE_HEX, &err), 0);
        assert_int_equal(isp_image_app_crc32(&img), 0x5907571D);
        put_example_image();
        for (uint32_t o = 0; o < ISP_NODE_FLASH_SIZE; o++)
                if (o < ISP_NODE_ISP_START || o >= ISP_NODE_ISP_END)
                        assert_int_equal(b->ram.flash[o], isp_image_node_byte(&img, o));
        assert_int_equal(host_app_crc(b->ram.flash), 0x5907571D);

        app_init(3, 0);
        assert_false(isp_app_crc_is_done(&b->app));
        assert_int_equal(isp_app_get_image_crc(&b->app), 0);
        assert_int_equal(poll_to_end(), POLLS);
        assert_true(isp_app_crc_is_done(&b->app));
        assert_int_equal(isp_app_get_image_crc(&b->app), 0x5907571D);
        expect_nothing();

        /* done: further polls read nothing */
        b->n_read_calls = 0;
        assert_false(isp_app_poll(&b->app));
        assert_int_equal(b->n_read_calls, 0);
}

/* Every byte of the application area read once, 8 at a time, the ISP
 * area never; ISP_APP_POLL_BYTES per call. */
static void test_crc_reads_the_application_area_once(void **state) {
        app_init(9, 0);
        assert_true(isp_app_poll(&b->app));
        assert_int_equal(b->n_read_calls, ISP_APP_POLL_BYTES / 8);
        (void) poll_to_end();
        assert_int_equal(b->n_read_calls, ISP_APP_IMAGE_SIZE / 8);
        assert_int_equal(b->max_read_len, 8);
        for (uint32_t o = 0; o < ISP_NODE_FLASH_SIZE; o++) {
                uint8_t want = (o >= ISP_NODE_ISP_START && o < ISP_NODE_ISP_END) ? 0 : 1;

                if (b->reads[o] != want)
                        fail_msg("flash offset 0x%05X read %u times, expected %u", (unsigned) o, b->reads[o], want);
        }
        /* an erased application area: 0xFF throughout */
        assert_int_equal(isp_app_get_image_crc(&b->app), host_app_crc(b->ram.flash));
}

/* The CRC follows the application area and only it. */
static void test_crc_follows_flash(void **state) {
        uint32_t erased, crc;

        app_init(9, 0);
        (void) poll_to_end();
        erased = isp_app_get_image_crc(&b->app);

        /* the ISP area does not count */
        memset(b->ram.flash + ISP_NODE_ISP_START, 0x00, ISP_NODE_ISP_END - ISP_NODE_ISP_START);
        app_init(9, 0);
        (void) poll_to_end();
        assert_int_equal(isp_app_get_image_crc(&b->app), erased);

        /* the first and last bytes of both parts do */
        static const uint32_t edges[] = { 0x00000, 0x0FFFF, 0x11000, 0x1FFFF };
        for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
                b->ram.flash[edges[i]] = 0x5A;
                app_init(9, 0);
                (void) poll_to_end();
                crc = isp_app_get_image_crc(&b->app);
                assert_int_not_equal(crc, erased);
                assert_int_equal(crc, host_app_crc(b->ram.flash));
                b->ram.flash[edges[i]] = 0xFF;
        }

        /* init starts over */
        put_example_image();
        app_init(9, 0);
        assert_true(isp_app_poll(&b->app));
        app_init(9, 0);
        assert_int_equal(poll_to_end(), POLLS);
        assert_int_equal(isp_app_get_image_crc(&b->app), 0x5907571D);
}

/* ---- IDENTIFY ---- */

static void test_identity_after_crc(void **state) {
        struct isp_node_frame f;
        struct isp_can_frame h;
        struct isp_reply r;

        put_example_image();
        app_init(3, 0);
        (void) poll_to_end();
        assert_int_equal(rx(REQ(6, 3), 1, 0x00), ISP_APP_ANSWERED);
        expect(0x1B600003, 8, 0xA4, 0x91, 0x70, 0x69, 0x59, 0x07, 0x57, 0x1D);
        expect_nothing();

        /* the host's codec reads it as the helper meant it */
        assert_int_equal(rx(REQ(6, 0xFF), 1, 0x00), ISP_APP_ANSWERED);
        assert_true(isp_node_ram_pop(&b->ram, &f));
        h = to_host(&f);
        assert_int_equal(isp_reply_parse(&h, &r), 0);
        assert_int_equal(r.cmd, ISP_CMD_IDENTIFY);
        assert_int_equal(r.variant, ISP_IDENTIFY_IDENTITY);
        assert_int_equal(r.node, 3);
        assert_memory_equal(r.u.identity.uid, UID, 4);
        assert_int_equal(r.u.identity.image_crc, 0x5907571D);
        expect_nothing();
}

/* An IDENTITY before the CRC is done is answered by the poll that
 * finishes it, once however often it was asked; ABOUT at once. */
static void test_identity_pending(void **state) {
        put_example_image();
        app_init(3, 0);
        assert_int_equal(rx(REQ(6, 3), 1, 0x00), ISP_APP_PENDING);
        expect_nothing();
        for (unsigned long i = 0; i < POLLS / 2; i++)
                assert_true(isp_app_poll(&b->app));
        expect_nothing();
        assert_int_equal(rx(REQ(6, 0xFF), 1, 0x00), ISP_APP_PENDING);
        assert_int_equal(rx(REQ(6, 3), 1, 0x01), ISP_APP_ANSWERED);
        expect(0x1B600103, 8, 0x01, 0x03, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00);
        for (unsigned long i = POLLS / 2; i < POLLS - 1; i++)
                assert_true(isp_app_poll(&b->app));
        expect_nothing();

        assert_false(isp_app_poll(&b->app));
        expect(0x1B600003, 8, 0xA4, 0x91, 0x70, 0x69, 0x59, 0x07, 0x57, 0x1D);
        expect_nothing();
        assert_false(isp_app_poll(&b->app));
        expect_nothing();

        /* from now on at once */
        assert_int_equal(rx(REQ(6, 3), 1, 0x00), ISP_APP_ANSWERED);
        expect(0x1B600003, 8, 0xA4, 0x91, 0x70, 0x69, 0x59, 0x07, 0x57, 0x1D);
}

/* docs/protocol.md 4.9's example: 1B600103#0103010100010002 */
static void test_about(void **state) {
        struct isp_node_frame f;
        struct isp_can_frame h;
        struct isp_reply r;

        app_init(3, 0x00010002);
        assert_int_equal(rx(REQ(6, 3), 1, 0x01), ISP_APP_ANSWERED);
        expect(0x1B600103, 8, 0x01, 0x03, 0x01, 0x00, 0x00, 0x01, 0x00, 0x02); /* CRC not ready */
        (void) poll_to_end();
        expect_nothing();
        assert_int_equal(rx(REQ(6, 3), 1, 0x01), ISP_APP_ANSWERED);
        expect(0x1B600103, 8, 0x01, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00, 0x02);

        /* to all, and through the host's codec */
        app_init(200, 0xFEDCBA98);
        (void) poll_to_end();
        assert_int_equal(rx(REQ(6, 0xFF), 1, 0x01), ISP_APP_ANSWERED);
        assert_true(isp_node_ram_pop(&b->ram, &f));
        assert_int_equal(f.id, EFF | 0x1B6001C8);
        h = to_host(&f);
        assert_int_equal(isp_reply_parse(&h, &r), 0);
        assert_int_equal(r.cmd, ISP_CMD_IDENTIFY);
        assert_int_equal(r.variant, ISP_IDENTIFY_ABOUT);
        assert_int_equal(r.node, 200);
        assert_int_equal(r.u.about.version, ISP_IDENTIFY_VERSION);
        assert_int_equal(r.u.about.capabilities, ISP_APP_CAP_ENTER_ISP | ISP_APP_CAP_IDENTITY);
        assert_int_equal(r.u.about.helper, ISP_APP_HELPER_VERSION);
        assert_int_equal(r.u.about.flags, ISP_APP_FLAG_IDENTITY_READY);
        assert_int_equal(r.u.about.app_version, 0xFEDCBA98);
        expect_nothing();
}

/* Everything that is not an IDENTIFY for this node: no reply, and no
 * IDENTITY left pending either. */
static void test_identify_ignored(void **state) {
        struct isp_node_frame f = { .id = REQ(6, 3), .dlc = 1, .data = { 0x00 } };

        app_init(3, 0);
        /* other targets */
        assert_int_equal(rx(REQ(6, 4), 1, 0x00), ISP_APP_IGNORED);
        assert_int_equal(rx(REQ(6, 4), 1, 0x01), ISP_APP_IGNORED);
        assert_int_equal(rx(REQ(6, 0), 1, 0x00), ISP_APP_IGNORED);
        assert_int_equal(rx(REQ(6, 254), 1, 0x01), ISP_APP_IGNORED);
        /* DLC other than 1 */
        assert_int_equal(rx(REQ(6, 3), 0), ISP_APP_IGNORED);
        assert_int_equal(rx(REQ(6, 3), 2, 0x00, 0x00), ISP_APP_IGNORED);
        assert_int_equal(rx(REQ(6, 3), 2, 0x01, 0x00), ISP_APP_IGNORED);
        assert_int_equal(rx(REQ(6, 3), 8, 0x00, 0, 0, 0, 0, 0, 0, 0), ISP_APP_IGNORED);
        assert_int_equal(rx(REQ(6, 0xFF), 8, 0x01, 0, 0, 0, 0, 0, 0, 0), ISP_APP_IGNORED);
        /* variants 2-255 */
        for (int v = 2; v <= 255; v++) {
                assert_int_equal(rx(REQ(6, 3), 1, v), ISP_APP_IGNORED);
                assert_int_equal(rx(REQ(6, 0xFF), 1, v), ISP_APP_IGNORED);
        }
        /* ID bits 19..8 set, also where they would look like a variant */
        assert_int_equal(rx(REQ(6, 0x00103), 1, 0x00), ISP_APP_IGNORED);
        assert_int_equal(rx(REQ(6, 0x00203), 1, 0x01), ISP_APP_IGNORED);
        assert_int_equal(rx(REQ(6, 0x001FF), 1, 0x00), ISP_APP_IGNORED);
        assert_int_equal(rx(REQ(6, 0x80003), 1, 0x00), ISP_APP_IGNORED);
        assert_int_equal(rx(REQ(6, 0xFFF03), 1, 0x01), ISP_APP_IGNORED);
        /* the ISP's requests, to this node's id or to all */
        for (uint32_t cmd = 0; cmd <= 15; cmd++) {
                if (cmd == ISP_NODE_CMD_IDENTIFY || cmd == ISP_NODE_CMD_ENTER_ISP)
                        continue;
                assert_int_equal(rx(REQ(cmd, 3), 1, 0x00), ISP_APP_IGNORED);
                assert_int_equal(rx(REQ(cmd, 0xFF), 1, 0x01), ISP_APP_IGNORED);
                assert_int_equal(rx(REQ(cmd, 0), 0), ISP_APP_IGNORED);
        }
        assert_int_equal(rx(REQ(1, 0x11000), 0), ISP_APP_IGNORED);
        assert_int_equal(rx(REQ(5, 0), 6, 0x00, 0x00, 0x00, 0x01, 0xF0, 0x00), ISP_APP_IGNORED);
        /* replies, among them another node's IDENTIFY reply */
        assert_int_equal(rx(0x1B600003, 1, 0x00), ISP_APP_IGNORED);
        assert_int_equal(rx(0x1B600104, 8, 1, 3, 1, 1, 0, 0, 0, 0), ISP_APP_IGNORED);
        assert_int_equal(rx(0x0A600003, 1, 0x00), ISP_APP_IGNORED);
        /* standard ID, RTR */
        assert_int_equal(isp_app_receive(&b->app, &f), ISP_APP_IGNORED);
        f.id = REQ(6, 3) | EFF | ISP_NODE_FRAME_RTR;
        assert_int_equal(isp_app_receive(&b->app, &f), ISP_APP_IGNORED);
        expect_nothing();

        (void) poll_to_end();
        expect_nothing();
        assert_int_equal(b->ram.n_enter_isp, 0);

        /* and once done, still nothing */
        assert_int_equal(rx(REQ(6, 4), 1, 0x00), ISP_APP_IGNORED);
        assert_int_equal(rx(REQ(6, 3), 1, 0x02), ISP_APP_IGNORED);
        assert_int_equal(rx(REQ(6, 3), 0), ISP_APP_IGNORED);
        expect_nothing();
}

static void test_target_all_answered(void **state) {
        app_init(77, 5);
        (void) poll_to_end();
        assert_int_equal(rx(REQ(6, 0xFF), 1, 0x00), ISP_APP_ANSWERED);
        expect(0x1B60004D, 8, 0xA4, 0x91, 0x70, 0x69, 0xAE, 0x22, 0x8D, 0xC0);
        assert_int_equal(rx(REQ(6, 0xFF), 1, 0x01), ISP_APP_ANSWERED);
        expect(0x1B60014D, 8, 0x01, 0x03, 0x01, 0x01, 0x00, 0x00, 0x00, 0x05);
        expect_nothing();
}

/* ---- the whole board on the RAM bench ---- */

/* isp_node_ram_receive(): the ISP core until it starts the application,
 * then the helper, whose ENTER_ISP soft-resets the core. */
static void test_ram_board(void **state) {
        struct isp_node_config config = { .node_id = 3, .isp_version = 1, .rx_depth = 4,
                                          .uid = { UID[0], UID[1], UID[2], UID[3] } };
        struct isp_node node;
        struct isp_node_frame f = { .id = EFF | REQ(6, 3), .dlc = 1, .data = { 0x00 } };
        unsigned long n_read;

        put_example_image();
        assert_int_equal(isp_node_init(&node, &config, &isp_node_ram_ops, &b->ram), 0);
        assert_int_equal(isp_node_power_on(&node), ISP_NODE_MODE_APPLICATION);
        n_read = b->ram.n_read;
        assert_int_equal(isp_node_ram_receive(&b->ram, &node, &f), ISP_APP_ANSWERED);
        expect(0x1B600003, 8, 0xA4, 0x91, 0x70, 0x69, 0x59, 0x07, 0x57, 0x1D);
        /* the application's CRC is not the ISP's flash work */
        assert_int_equal(b->ram.n_read, n_read);

        f = (struct isp_node_frame) { .id = EFF | REQ(7, 0xFF), .dlc = 4, .data = { 0x12, 0xAB, 0xCD, 0x34 } };
        assert_int_equal(isp_node_ram_receive(&b->ram, &node, &f), ISP_APP_ENTERED_ISP);
        assert_int_equal(isp_node_get_mode(&node), ISP_NODE_MODE_ISP);
        expect(0x1B700003, 8, 0x01, 0x07, 0x01, 0x04, 0xA4, 0x91, 0x70, 0x69);
        expect_nothing();

        /* in ISP: the core's, and IDENTIFY is not */
        f = (struct isp_node_frame) { .id = EFF | REQ(6, 3), .dlc = 1, .data = { 0x00 } };
        assert_int_equal(isp_node_ram_receive(&b->ram, &node, &f), ISP_NODE_IGNORED);
        f = (struct isp_node_frame) { .id = EFF | REQ(0, 3), .dlc = 0 };
        assert_int_equal(isp_node_ram_receive(&b->ram, &node, &f), ISP_NODE_STATUS_OK);
        expect(0x1B000003, 8, 0x01, 0x07, 0x01, 0x04, 0xA4, 0x91, 0x70, 0x69);
        expect_nothing();
}

/* A legacy node's application has no helper. */
static void test_ram_board_legacy(void **state) {
        struct isp_node_config config = { .node_id = 0, .rx_depth = 1 };
        struct isp_node node;
        struct isp_node_frame f = { .id = EFF | REQ(7, 0), .dlc = 4, .data = { 0x12, 0xAB, 0xCD, 0x34 } };

        put_example_image();
        assert_int_equal(isp_node_init(&node, &config, &isp_node_ram_ops, &b->ram), 0);
        assert_int_equal(isp_node_power_on(&node), ISP_NODE_MODE_APPLICATION);
        assert_int_equal(isp_node_ram_receive(&b->ram, &node, &f), ISP_NODE_IGNORED);
        f.id = EFF | REQ(7, 0xFF);
        assert_int_equal(isp_node_ram_receive(&b->ram, &node, &f), ISP_NODE_IGNORED);
        assert_int_equal(isp_node_get_mode(&node), ISP_NODE_MODE_APPLICATION);
        assert_int_equal(b->ram.n_enter_isp, 0);
        expect_nothing();
}

#define T(x) cmocka_unit_test_setup_teardown(x, setup, teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                T(test_init_rejects),
                T(test_enter_isp_into_core),
                T(test_enter_isp_ignored),
                T(test_crc_of_example_image),
                T(test_crc_reads_the_application_area_once),
                T(test_crc_follows_flash),
                T(test_identity_after_crc),
                T(test_identity_pending),
                T(test_about),
                T(test_identify_ignored),
                T(test_target_all_answered),
                T(test_ram_board),
                T(test_ram_board_legacy),
        };

        return cmocka_run_group_tests_name("isp-app", tests, NULL, NULL);
}
