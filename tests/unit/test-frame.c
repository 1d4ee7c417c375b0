/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "isp-crc32.h"
#include "isp-frame.h"

static struct isp_can_frame ext(uint32_t id, uint8_t len, const char *hex) {
        struct isp_can_frame f = { .id = id, .flags = ISP_FRAME_EXTENDED, .len = len };

        for (unsigned i = 0; hex && hex[2 * i]; i++) {
                unsigned b;
                assert_int_equal(sscanf(hex + 2 * i, "%2x", &b), 1);
                f.data[i] = (uint8_t) b;
        }
        return f;
}

static void assert_frame(const struct isp_can_frame *f, const char *expected) {
        char buf[ISP_FRAME_STRING_MAX];
        assert_string_equal(isp_frame_to_string(f, buf), expected);
}

/* Build, check the exact wire form, parse back, compare. */
static void request_roundtrip(const struct isp_request *req, const char *wire) {
        struct isp_can_frame f;
        struct isp_request back;

        assert_int_equal(isp_request_build(req, &f), 0);
        assert_frame(&f, wire);
        assert_int_equal(isp_request_parse(&f, &back), 0);
        assert_int_equal(back.cmd, req->cmd);
        assert_memory_equal(&back.u, &req->u, sizeof(req->u));
}

static void reply_roundtrip(const struct isp_reply *reply, const char *wire) {
        struct isp_can_frame f;
        struct isp_reply back;

        assert_int_equal(isp_reply_build(reply, &f), 0);
        assert_frame(&f, wire);
        assert_int_equal(isp_reply_parse(&f, &back), 0);
        assert_int_equal(back.cmd, reply->cmd);
        assert_int_equal(back.node, reply->node);
        assert_int_equal(back.legacy, reply->legacy);
        assert_int_equal(back.status, reply->status);
        assert_memory_equal(&back.u, &reply->u, sizeof(reply->u));
}

static void test_request_roundtrip(void **state) {
        struct isp_request r;

        r = (struct isp_request) { .cmd = ISP_CMD_CONNECT, .u.connect = { .target = 0 } };
        request_roundtrip(&r, "1A000000#");
        r = (struct isp_request) { .cmd = ISP_CMD_CONNECT, .u.connect = { .target = 0xFF } };
        request_roundtrip(&r, "1A0000FF#");
        r = (struct isp_request) { .cmd = ISP_CMD_CONNECT,
                .u.connect = { .target = 3, .flags = ISP_CONNECT_JOIN | ISP_CONNECT_QUIET, .with_flags = true } };
        request_roundtrip(&r, "1A000003#03");
        r = (struct isp_request) { .cmd = ISP_CMD_CONNECT, .u.connect = { .target = 254, .with_flags = true } };
        request_roundtrip(&r, "1A0000FE#00");

        r = (struct isp_request) { .cmd = ISP_CMD_READ, .u.read.offset = 0x1FFF8 };
        request_roundtrip(&r, "1A11FFF8#");

        for (uint8_t len = 1; len <= 8; len++) {
                char wire[40];
                r = (struct isp_request) { .cmd = ISP_CMD_PROGRAM, .u.program = { .offset = 0x11000, .len = len } };
                strcpy(wire, "1A211000#");
                for (uint8_t i = 0; i < len; i++) {
                        r.u.program.data[i] = (uint8_t) (0xA0 + i);
                        sprintf(wire + strlen(wire), "%02X", 0xA0 + i);
                }
                request_roundtrip(&r, wire);
        }

        r = (struct isp_request) { .cmd = ISP_CMD_ERASE, .u.erase.whole = true };
        request_roundtrip(&r, "1A300000#");
        r = (struct isp_request) { .cmd = ISP_CMD_ERASE, .u.erase = { .offset = 0x11000, .count = 8 } };
        request_roundtrip(&r, "1A300000#01100008");
        r = (struct isp_request) { .cmd = ISP_CMD_ERASE, .u.erase = { .offset = 0x1FE00, .count = 1 } };
        request_roundtrip(&r, "1A300000#01FE0001");

        r = (struct isp_request) { .cmd = ISP_CMD_REBOOT };
        request_roundtrip(&r, "1A400000#");

        r = (struct isp_request) { .cmd = ISP_CMD_CRC, .u.crc = { .offset = 0x11000, .length = 0xF000 } };
        request_roundtrip(&r, "1A500000#01100000F000");

        r = (struct isp_request) { .cmd = ISP_CMD_ENTER_ISP, .u.enter_isp.target = 0xFF };
        request_roundtrip(&r, "1A7000FF#12ABCD34");
        r = (struct isp_request) { .cmd = ISP_CMD_ENTER_ISP, .u.enter_isp.target = 7 };
        request_roundtrip(&r, "1A700007#12ABCD34");

        /* IDENTIFY, protocol.md 4.9 */
        r = (struct isp_request) { .cmd = ISP_CMD_IDENTIFY, .u.identify = { 0xFF, ISP_IDENTIFY_IDENTITY } };
        request_roundtrip(&r, "1A6000FF#00");
        r = (struct isp_request) { .cmd = ISP_CMD_IDENTIFY, .u.identify = { 3, ISP_IDENTIFY_ABOUT } };
        request_roundtrip(&r, "1A600003#01");
}

static void test_reply_roundtrip(void **state) {
        struct isp_reply r;
        const struct isp_info info = { 1, ISP_CAP_CRC | ISP_CAP_SECTOR_ERASE | ISP_CAP_QUIET, 4, 8, { 0xDE, 0xAD, 0xBE, 0xEF } };

        r = (struct isp_reply) { .cmd = ISP_CMD_CONNECT, .node = 3, .u.info = info };
        reply_roundtrip(&r, "1B000003#01070408DEADBEEF");
        r = (struct isp_reply) { .cmd = ISP_CMD_CONNECT, .node = 0, .legacy = true };
        reply_roundtrip(&r, "1B000000#");
        r = (struct isp_reply) { .cmd = ISP_CMD_ENTER_ISP, .node = 254, .u.info = info };
        reply_roundtrip(&r, "1B7000FE#01070408DEADBEEF");

        r = (struct isp_reply) { .cmd = ISP_CMD_READ, .node = 5, .u.data = { 1, 2, 3, 4, 5, 6, 7, 8 } };
        reply_roundtrip(&r, "1B100005#0102030405060708");
        r = (struct isp_reply) { .cmd = ISP_CMD_READ, .node = 0, .legacy = true, .u.data = { 0xFF, 2, 3, 4, 5, 6, 7, 0 } };
        reply_roundtrip(&r, "1B100000#FF02030405060700");
        r = (struct isp_reply) { .cmd = ISP_CMD_READ, .node = 5, .status = ISP_STATUS_RANGE };
        reply_roundtrip(&r, "1B100005#01");

        r = (struct isp_reply) { .cmd = ISP_CMD_PROGRAM, .node = 9, .status = ISP_STATUS_WRITE_FAILED, .u.offset = 0x11200 };
        reply_roundtrip(&r, "1B200009#02011200");
        r = (struct isp_reply) { .cmd = ISP_CMD_PROGRAM, .node = 0, .legacy = true };
        reply_roundtrip(&r, "1B200000#");

        r = (struct isp_reply) { .cmd = ISP_CMD_ERASE, .node = 1, .status = ISP_STATUS_BAD_ARGUMENT };
        reply_roundtrip(&r, "1B300001#03");
        r = (struct isp_reply) { .cmd = ISP_CMD_ERASE, .node = 0, .legacy = true };
        reply_roundtrip(&r, "1B300000#");

        r = (struct isp_reply) { .cmd = ISP_CMD_REBOOT, .node = 2, .status = ISP_STATUS_NO_APP };
        reply_roundtrip(&r, "1B400002#05");
        r = (struct isp_reply) { .cmd = ISP_CMD_REBOOT, .node = 0, .legacy = true };
        reply_roundtrip(&r, "1B400000#");

        r = (struct isp_reply) { .cmd = ISP_CMD_CRC, .node = 0x42, .u.crc = 0xCBF43926 };
        reply_roundtrip(&r, "1B500042#00CBF43926");
        /* ECHO: the start offset after the CRC, after an ERASE's status */
        r = (struct isp_reply) { .cmd = ISP_CMD_CRC, .node = 0x42, .u.crc = 0xBD7BC39F, .echo = true,
                                 .echo_offset = 0x11200 };
        reply_roundtrip(&r, "1B500042#00BD7BC39F011200");
        r = (struct isp_reply) { .cmd = ISP_CMD_ERASE, .node = 3, .echo = true, .echo_offset = 0x011000 };
        reply_roundtrip(&r, "1B300003#00011000");
        r = (struct isp_reply) { .cmd = ISP_CMD_ERASE, .node = 3, .echo = true, .echo_offset = ISP_ECHO_NONE };
        reply_roundtrip(&r, "1B300003#00FFFFFF");

        /* IDENTIFY: the variant is in ID bits 15..8 (protocol.md 4.9, the examples) */
        r = (struct isp_reply) { .cmd = ISP_CMD_IDENTIFY, .node = 3, .variant = ISP_IDENTIFY_IDENTITY,
                                 .u.identity = { { 0x01, 0x02, 0x03, 0x04 }, 0x5907571D } };
        reply_roundtrip(&r, "1B600003#010203045907571D");
        r = (struct isp_reply) { .cmd = ISP_CMD_IDENTIFY, .node = 3, .variant = ISP_IDENTIFY_ABOUT,
                                 .u.about = { 1, ISP_APP_CAP_ENTER_ISP | ISP_APP_CAP_IDENTITY, 1,
                                              ISP_APP_FLAG_IDENTITY_READY, 0x00010002 } };
        reply_roundtrip(&r, "1B600103#0103010100010002");
}

static void test_identify_malformed(void **state) {
        struct isp_reply reply;
        struct isp_request req;
        struct isp_can_frame f;

        /* requests: DLC 1 only, a node id or 0xFF, no stray ID bits, known variants */
        f = (struct isp_can_frame) { .id = 0x1A600003, .flags = ISP_FRAME_EXTENDED, .len = 0 };
        assert_int_equal(isp_request_parse(&f, &req), -ISP_FRAME_BAD_DLC);
        f.len = 2;
        assert_int_equal(isp_request_parse(&f, &req), -ISP_FRAME_BAD_DLC);
        f = (struct isp_can_frame) { .id = 0x1A600103, .flags = ISP_FRAME_EXTENDED, .len = 1 };
        assert_int_equal(isp_request_parse(&f, &req), -ISP_FRAME_BAD_ARGUMENT);
        f = (struct isp_can_frame) { .id = 0x1A600000, .flags = ISP_FRAME_EXTENDED, .len = 1 };
        assert_int_equal(isp_request_parse(&f, &req), -ISP_FRAME_BAD_ARGUMENT);
        f = (struct isp_can_frame) { .id = 0x1A600003, .flags = ISP_FRAME_EXTENDED, .len = 1, .data = { 2 } };
        assert_int_equal(isp_request_parse(&f, &req), -ISP_FRAME_BAD_ARGUMENT);
        req = (struct isp_request) { .cmd = ISP_CMD_IDENTIFY, .u.identify = { 3, 7 } };
        assert_int_equal(isp_request_build(&req, &f), -EINVAL);
        req = (struct isp_request) { .cmd = ISP_CMD_IDENTIFY, .u.identify = { 0, 0 } };
        assert_int_equal(isp_request_build(&req, &f), -EINVAL);

        /* replies: never from node 0 (an ISP or a legacy node), DLC 8, a known variant */
        f = (struct isp_can_frame) { .id = 0x1B600000, .flags = ISP_FRAME_EXTENDED, .len = 8 };
        assert_int_equal(isp_reply_parse(&f, &reply), -ISP_FRAME_BAD_ARGUMENT);
        f = (struct isp_can_frame) { .id = 0x1B600003, .flags = ISP_FRAME_EXTENDED, .len = 5 };
        assert_int_equal(isp_reply_parse(&f, &reply), -ISP_FRAME_BAD_DLC);
        f = (struct isp_can_frame) { .id = 0x1B600203, .flags = ISP_FRAME_EXTENDED, .len = 8 };
        assert_int_equal(isp_reply_parse(&f, &reply), -ISP_FRAME_BAD_ARGUMENT);
        f = (struct isp_can_frame) { .id = 0x1B610003, .flags = ISP_FRAME_EXTENDED, .len = 8 };
        assert_int_equal(isp_reply_parse(&f, &reply), -ISP_FRAME_BAD_ARGUMENT);
        /* the variant bits are IDENTIFY's alone */
        f = (struct isp_can_frame) { .id = 0x1B500103, .flags = ISP_FRAME_EXTENDED, .len = 5 };
        assert_int_equal(isp_reply_parse(&f, &reply), -ISP_FRAME_BAD_ARGUMENT);
        reply = (struct isp_reply) { .cmd = ISP_CMD_CRC, .node = 3, .variant = 1 };
        assert_int_equal(isp_reply_build(&reply, &f), -EINVAL);
        reply = (struct isp_reply) { .cmd = ISP_CMD_IDENTIFY, .node = 0, .legacy = true };
        assert_int_equal(isp_reply_build(&reply, &f), -EINVAL);
        assert_string_equal(isp_cmd_to_string(ISP_CMD_IDENTIFY), "IDENTIFY");
}

static void assert_request_error(struct isp_can_frame f, enum isp_frame_error expected) {
        struct isp_request r;
        assert_int_equal(isp_request_parse(&f, &r), -(int) expected);
}

static void assert_reply_error(struct isp_can_frame f, enum isp_frame_error expected) {
        struct isp_reply r;
        assert_int_equal(isp_reply_parse(&f, &r), -(int) expected);
}

static void test_request_malformed(void **state) {
        struct isp_can_frame f;

        /* Frame kinds that are never ISP traffic. */
        f = ext(0x1A000003, 0, NULL);
        f.flags = 0;
        f.id = 0x1A0;
        assert_request_error(f, ISP_FRAME_STANDARD_ID);
        f = ext(0x1A000003, 0, NULL);
        f.flags |= ISP_FRAME_FLAG_RTR;
        assert_request_error(f, ISP_FRAME_RTR);
        f = ext(0x1A000003, 0, NULL);
        f.flags |= ISP_FRAME_FLAG_FD;
        assert_request_error(f, ISP_FRAME_FD);
        assert_request_error(ext(0x1B000003, 0, NULL), ISP_FRAME_NOT_ISP);
        assert_request_error(ext(0x0A000003, 0, NULL), ISP_FRAME_NOT_ISP);
        assert_request_error(ext(0x12345678, 0, NULL), ISP_FRAME_NOT_ISP);

        /* Unknown commands: 8-15. */
        for (uint32_t cmd = 8; cmd <= 15; cmd++)
                assert_request_error(ext(0x1A000000 | cmd << 20, 0, NULL), ISP_FRAME_UNKNOWN_CMD);

        /* Wrong DLC for each command. */
        assert_request_error(ext(0x1A000003, 2, "0300"), ISP_FRAME_BAD_DLC);
        assert_request_error(ext(0x1A100000, 1, "00"), ISP_FRAME_BAD_DLC);
        assert_request_error(ext(0x1A211000, 0, NULL), ISP_FRAME_BAD_DLC);
        assert_request_error(ext(0x1A300000, 3, "011000"), ISP_FRAME_BAD_DLC);
        assert_request_error(ext(0x1A300000, 5, "0110000100"), ISP_FRAME_BAD_DLC);
        assert_request_error(ext(0x1A400000, 1, "00"), ISP_FRAME_BAD_DLC);
        assert_request_error(ext(0x1A500000, 5, "0110000010"), ISP_FRAME_BAD_DLC);
        assert_request_error(ext(0x1A7000FF, 3, "12ABCD"), ISP_FRAME_BAD_DLC);
        f = ext(0x1A211000, 8, "0102030405060708");
        f.len = 9;
        assert_request_error(f, ISP_FRAME_BAD_DLC);

        /* Addresses outside the 17-bit flash range. */
        assert_request_error(ext(0x1A120000, 0, NULL), ISP_FRAME_BAD_ADDRESS);
        assert_request_error(ext(0x1A11FFF9, 0, NULL), ISP_FRAME_BAD_ADDRESS);
        assert_request_error(ext(0x1A220000, 1, "00"), ISP_FRAME_BAD_ADDRESS);
        assert_request_error(ext(0x1A2FFFFF, 1, "00"), ISP_FRAME_BAD_ADDRESS);
        assert_request_error(ext(0x1A21FFFC, 8, "0102030405060708"), ISP_FRAME_BAD_ADDRESS);
        assert_request_error(ext(0x1A300000, 4, "01FE0002"), ISP_FRAME_BAD_ADDRESS);
        assert_request_error(ext(0x1A300000, 4, "02000001"), ISP_FRAME_BAD_ADDRESS);
        assert_request_error(ext(0x1A500000, 6, "01FFFF000002"), ISP_FRAME_BAD_ADDRESS);

        /* Bad arguments. */
        assert_request_error(ext(0x1A300000, 4, "01100100"), ISP_FRAME_BAD_ARGUMENT);   /* zero count */
        assert_request_error(ext(0x1A300000, 4, "01100101"), ISP_FRAME_BAD_ARGUMENT);   /* unaligned */
        assert_request_error(ext(0x1A7000FF, 4, "12ABCD35"), ISP_FRAME_BAD_ARGUMENT);   /* magic */
        assert_request_error(ext(0x1A000100, 0, NULL), ISP_FRAME_BAD_ARGUMENT);         /* target > 8 bits */
}

static void test_reply_malformed(void **state) {
        struct isp_can_frame f;

        f = ext(0x1B0, 0, NULL);
        f.flags = 0;
        assert_reply_error(f, ISP_FRAME_STANDARD_ID);
        f = ext(0x1B000003, 0, NULL);
        f.flags |= ISP_FRAME_FLAG_RTR;
        assert_reply_error(f, ISP_FRAME_RTR);
        f = ext(0x1B000003, 8, "0107040801020304");
        f.flags |= ISP_FRAME_FLAG_FD;
        assert_reply_error(f, ISP_FRAME_FD);
        assert_reply_error(ext(0x1A000003, 0, NULL), ISP_FRAME_NOT_ISP);
        assert_reply_error(ext(0x1BF00003, 1, "00"), ISP_FRAME_UNKNOWN_CMD);

        assert_reply_error(ext(0x1B000003, 0, NULL), ISP_FRAME_BAD_DLC);        /* extended CONNECT without INFO */
        assert_reply_error(ext(0x1B000003, 7, "01070408010203"), ISP_FRAME_BAD_DLC);
        assert_reply_error(ext(0x1B100003, 4, "01020304"), ISP_FRAME_BAD_DLC);
        assert_reply_error(ext(0x1B100003, 1, "00"), ISP_FRAME_BAD_DLC);        /* refusal without a status */
        assert_reply_error(ext(0x1B200003, 0, NULL), ISP_FRAME_BAD_DLC);        /* legacy form from an extended id */
        assert_reply_error(ext(0x1B200003, 3, "000110"), ISP_FRAME_BAD_DLC);
        assert_reply_error(ext(0x1B300003, 0, NULL), ISP_FRAME_BAD_DLC);
        assert_reply_error(ext(0x1B300003, 2, "0000"), ISP_FRAME_BAD_DLC);
        assert_reply_error(ext(0x1B400003, 0, NULL), ISP_FRAME_BAD_DLC);
        assert_reply_error(ext(0x1B500003, 4, "00CBF439"), ISP_FRAME_BAD_DLC);
        assert_reply_error(ext(0x1B700003, 1, "00"), ISP_FRAME_BAD_DLC);
        assert_reply_error(ext(0x1B700000, 8, "0107040801020304"), ISP_FRAME_BAD_ARGUMENT);
        assert_reply_error(ext(0x1B000103, 8, "0107040801020304"), ISP_FRAME_BAD_ARGUMENT); /* stray ID bits */
        assert_reply_error(ext(0x1B0000FF, 8, "0107040801020304"), ISP_FRAME_BAD_ARGUMENT); /* node 0xFF */
        assert_reply_error(ext(0x1B500000, 5, "00CBF43926"), ISP_FRAME_BAD_ARGUMENT);       /* legacy has no CRC */
        assert_reply_error(ext(0x5B000003, 8, "0107040801020304"), ISP_FRAME_NOT_ISP);      /* flag bits in id */
}

/* Whatever a legacy node puts in its replies, node 0 means legacy. */
static void test_reply_legacy_tolerant(void **state) {
        struct isp_can_frame f;
        struct isp_reply r;

        f = ext(0x1B000000, 8, "0107040801020304");
        assert_int_equal(isp_reply_parse(&f, &r), 0);
        assert_true(r.legacy);
        assert_int_equal(r.cmd, ISP_CMD_CONNECT);
        f = ext(0x1B000000, 3, "414243");
        assert_int_equal(isp_reply_parse(&f, &r), 0);
        assert_true(r.legacy);
        f = ext(0x1B200000, 4, "02011000");
        assert_int_equal(isp_reply_parse(&f, &r), 0);
        assert_true(r.legacy);
        assert_int_equal(r.status, ISP_STATUS_OK);
        f = ext(0x1B300000, 1, "00");
        assert_int_equal(isp_reply_parse(&f, &r), 0);
        assert_true(r.legacy);
        f = ext(0x1B100000, 1, "01");           /* a legacy READ still carries 8 bytes */
        assert_int_equal(isp_reply_parse(&f, &r), -ISP_FRAME_BAD_DLC);
}

static void test_build_rejects(void **state) {
        struct isp_can_frame f;
        struct isp_request r;
        struct isp_reply y;

        r = (struct isp_request) { .cmd = ISP_CMD_PROGRAM, .u.program = { .offset = 0x11000, .len = 0 } };
        assert_int_equal(isp_request_build(&r, &f), -EINVAL);
        r.u.program.len = 9;
        assert_int_equal(isp_request_build(&r, &f), -EINVAL);
        r = (struct isp_request) { .cmd = ISP_CMD_PROGRAM, .u.program = { .offset = 0x1FFFF, .len = 2 } };
        assert_int_equal(isp_request_build(&r, &f), -EINVAL);
        r = (struct isp_request) { .cmd = ISP_CMD_READ, .u.read.offset = 0x20000 };
        assert_int_equal(isp_request_build(&r, &f), -EINVAL);
        r = (struct isp_request) { .cmd = ISP_CMD_ERASE, .u.erase = { .offset = 0x11001, .count = 1 } };
        assert_int_equal(isp_request_build(&r, &f), -EINVAL);
        r = (struct isp_request) { .cmd = ISP_CMD_ERASE, .u.erase = { .offset = 0x11000, .count = 0 } };
        assert_int_equal(isp_request_build(&r, &f), -EINVAL);
        r = (struct isp_request) { .cmd = ISP_CMD_CRC, .u.crc = { .offset = 0x1F000, .length = 0x1001 } };
        assert_int_equal(isp_request_build(&r, &f), -EINVAL);
        r = (struct isp_request) { .cmd = (enum isp_cmd) 6 };
        assert_int_equal(isp_request_build(&r, &f), -EINVAL);

        y = (struct isp_reply) { .cmd = ISP_CMD_PROGRAM, .node = 0, .legacy = true, .status = ISP_STATUS_WRITE_FAILED };
        assert_int_equal(isp_reply_build(&y, &f), -EINVAL);     /* a legacy node is silent on failure */
        y = (struct isp_reply) { .cmd = ISP_CMD_CONNECT, .node = 3, .legacy = true };
        assert_int_equal(isp_reply_build(&y, &f), -EINVAL);
        y = (struct isp_reply) { .cmd = ISP_CMD_READ, .node = 0, .status = ISP_STATUS_RANGE };
        assert_int_equal(isp_reply_build(&y, &f), -EINVAL);     /* node 0 cannot refuse with a status */
        y = (struct isp_reply) { .cmd = ISP_CMD_CRC, .node = 0xFF };
        assert_int_equal(isp_reply_build(&y, &f), -EINVAL);
}

static void test_strings(void **state) {
        char buf[ISP_ADDR_STRING_MAX], fb[ISP_FRAME_STRING_MAX];
        struct isp_can_frame f = { .id = 0x123, .flags = ISP_FRAME_FLAG_RTR };

        assert_string_equal(isp_offset_to_string(0x11000, buf), "FF:1000");
        assert_string_equal(isp_offset_to_string(0x00000, buf), "FE:0000");
        assert_string_equal(isp_offset_to_string(0x1FFFF, buf), "FF:FFFF");
        assert_string_equal(isp_frame_to_string(&f, fb), "123#R");
        assert_string_equal(isp_frame_error_to_string(-ISP_FRAME_BAD_DLC), "wrong data length for the command");
        assert_string_equal(isp_frame_error_to_string(ISP_FRAME_FD), "CAN FD frame");
        assert_string_equal(isp_status_to_string(ISP_STATUS_NO_APP), "no valid application");
        assert_string_equal(isp_cmd_to_string(ISP_CMD_ENTER_ISP), "ENTER_ISP");
}

static void test_crc32_check_value(void **state) {
        /* The published check value of CRC-32 (zlib, IEEE 802.3). */
        assert_int_equal(isp_crc32("123456789", 9), 0xCBF43926);
        assert_int_equal(isp_crc32("", 0), 0);
        /* Continuing a running CRC equals one pass. */
        assert_int_equal(isp_crc32_update(isp_crc32("1234", 4), "56789", 5), 0xCBF43926);
        /* zlib: crc32(0, 0xFF x 4) */
        assert_int_equal(isp_crc32("\xff\xff\xff\xff", 4), 0xFFFFFFFF);
        assert_int_equal(isp_crc32("The quick brown fox jumps over the lazy dog", 43), 0x414FA339);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_request_roundtrip),
                cmocka_unit_test(test_reply_roundtrip),
                cmocka_unit_test(test_request_malformed),
                cmocka_unit_test(test_reply_malformed),
                cmocka_unit_test(test_identify_malformed),
                cmocka_unit_test(test_reply_legacy_tolerant),
                cmocka_unit_test(test_build_rejects),
                cmocka_unit_test(test_strings),
                cmocka_unit_test(test_crc32_check_value),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
