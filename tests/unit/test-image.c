/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "isp-crc32.h"
#include "isp-image.h"
#include "isp-image-bin.h"

/* A HEX file under construction. */
struct hexfile {
        char text[8192];
        unsigned lines;
};

/* Append one record; `data` is hex text. Returns the line number. */
static unsigned rec(struct hexfile *h, uint8_t type, uint16_t addr, const char *data) {
        uint8_t bytes[64];
        size_t n = strlen(data) / 2;
        uint8_t sum;
        char *p = h->text + strlen(h->text);

        for (size_t i = 0; i < n; i++) {
                unsigned b;
                assert_int_equal(sscanf(data + 2 * i, "%2x", &b), 1);
                bytes[i] = (uint8_t) b;
        }
        sum = (uint8_t) (n + (addr >> 8) + (addr & 0xFF) + type);
        p += sprintf(p, ":%02X%04X%02X", (unsigned) n, addr, type);
        for (size_t i = 0; i < n; i++) {
                p += sprintf(p, "%02X", bytes[i]);
                sum = (uint8_t) (sum + bytes[i]);
        }
        sprintf(p, "%02X\n", (uint8_t) -sum);
        return ++h->lines;
}

static unsigned raw(struct hexfile *h, const char *line) {
        strcat(h->text, line);
        strcat(h->text, "\n");
        return ++h->lines;
}

static unsigned eof(struct hexfile *h) {
        return rec(h, 0x01, 0, "");
}

static struct isp_image *img_new(void) {
        struct isp_image *img = malloc(sizeof(*img));
        assert_non_null(img);
        return img;
}

static void load_ok(struct isp_image *img, const void *buf, size_t len, enum isp_image_format fmt) {
        struct isp_image_error e;
        int r = isp_image_load(img, buf, len, fmt, &e);
        if (r < 0)
                fail_msg("unexpected error at line %u: %s", e.line, e.message);
}

static void load_fails(const void *buf, size_t len, enum isp_image_format fmt, unsigned line, const char *message) {
        struct isp_image *img = img_new();
        struct isp_image_error e;

        assert_int_equal(isp_image_load(img, buf, len, fmt, &e), -EINVAL);
        if (e.line != line || !strstr(e.message, message))
                fail_msg("expected line %u \"%s\", got line %u \"%s\"", line, message, e.line, e.message);
        free(img);
}

static void hex_fails(struct hexfile *h, unsigned line, const char *message) {
        load_fails(h->text, strlen(h->text), ISP_IMAGE_HEX, line, message);
}

/* A minimal valid image: LJMP 0x1234 at FF:0000 (plain 16-bit form). */
static void base_image(struct hexfile *h) {
        rec(h, 0x00, 0x0000, "021234");
        rec(h, 0x00, 0x1234, "7401F5");
}

static void test_hex_minimal(void **state) {
        struct hexfile h = {};
        struct isp_image *img = img_new();

        base_image(&h);
        eof(&h);
        load_ok(img, h.text, strlen(h.text), ISP_IMAGE_AUTO);

        assert_int_equal(img->format, ISP_IMAGE_HEX);
        assert_int_equal(img->entry_target, 0x1234);
        assert_memory_equal(img->entry, "\x02\x12\x34", 3);
        assert_int_equal(img->data_bytes, 6);
        /* The LJMP is held apart: FF:0000 and FF:1000 stay blank in the picture. */
        assert_int_equal(img->flash[0x10000], 0xFF);
        assert_int_equal(img->flash[0x11000], 0xFF);
        assert_false(isp_image_byte_used(img, 0x10000));
        assert_false(isp_image_byte_used(img, 0x11000));
        assert_int_equal(isp_image_node_byte(img, 0x11000), 0x02);
        assert_int_equal(isp_image_node_byte(img, 0x11002), 0x34);
        assert_memory_equal(img->flash + 0x11234, "\x74\x01\xF5", 3);
        assert_true(isp_image_byte_used(img, 0x11236));
        /* FF:1000 (sector 0x88) and FF:1234 (0x89); FF:0000's sector does not count. */
        assert_int_equal(isp_image_sector_count(img), 2);
        assert_true(isp_image_sector_used(img, 0x89));
        assert_true(isp_image_sector_used(img, 0x11000 / 512));
        assert_false(isp_image_sector_used(img, 0x10000 / 512));
        free(img);
}

static void test_hex_forms(void **state) {
        struct isp_image *a = img_new(), *b = img_new();
        struct hexfile h1 = {}, h2 = {};

        /* Plain 16-bit addresses, LF. */
        rec(&h1, 0x00, 0x0000, "024000");
        rec(&h1, 0x00, 0x4000, "DEADBEEF");
        rec(&h1, 0x00, 0x4004, "CAFE");
        eof(&h1);
        load_ok(a, h1.text, strlen(h1.text), ISP_IMAGE_HEX);

        /* Logical addresses through a type 04 record, out of order, lower
         * case, CRLF, a type 05 and a type 03 record, an identical overlap,
         * blank lines and junk after EOF. */
        rec(&h2, 0x04, 0, "00FF");
        rec(&h2, 0x00, 0x4004, "CAFE");
        rec(&h2, 0x05, 0, "00001234");
        rec(&h2, 0x03, 0, "12345678");
        rec(&h2, 0x00, 0x4000, "DEADBEEF");
        rec(&h2, 0x00, 0x4002, "BEEF");
        rec(&h2, 0x00, 0x0000, "024000");
        raw(&h2, "");
        eof(&h2);
        raw(&h2, "this is ignored after the EOF record");
        for (char *p = h2.text; *p; p++)
                if (*p >= 'A' && *p <= 'F')
                        *p = (char) (*p - 'A' + 'a');
        {
                char crlf[sizeof(h2.text) * 2], *q = crlf;
                for (const char *p = h2.text; *p; p++) {
                        if (*p == '\n')
                                *q++ = '\r';
                        *q++ = *p;
                }
                *q = 0;
                load_ok(b, crlf, strlen(crlf), ISP_IMAGE_AUTO);
        }

        assert_memory_equal(a->flash, b->flash, sizeof(a->flash));
        assert_memory_equal(a->used, b->used, sizeof(a->used));
        assert_memory_equal(a->entry, b->entry, 3);
        assert_int_equal(a->data_bytes, 9);
        assert_int_equal(b->data_bytes, 9);     /* the identical overlap counts once */
        assert_int_equal(isp_image_app_crc32(a), isp_image_app_crc32(b));
        free(a);
        free(b);
}

static void test_hex_segment_and_low_bank(void **state) {
        struct isp_image *img = img_new();
        struct hexfile h = {};

        /* FE:xxxx through type 04 0x00FE, then back to plain addresses
         * through a type 02 segment of 0x0000, and FF:8000 through a type 02
         * segment 0x0800 + offset 0. */
        rec(&h, 0x04, 0, "00FE");
        rec(&h, 0x00, 0x0100, "11223344");
        rec(&h, 0x02, 0, "0000");
        rec(&h, 0x00, 0x0000, "021003");
        rec(&h, 0x02, 0, "0800");
        rec(&h, 0x00, 0x0000, "55");
        eof(&h);
        load_ok(img, h.text, strlen(h.text), ISP_IMAGE_HEX);
        assert_memory_equal(img->flash + 0x00100, "\x11\x22\x33\x44", 4);
        assert_int_equal(img->flash[0x18000], 0x55);
        assert_int_equal(img->entry_target, 0x1003);
        /* sectors: FE:0100, FF:1000 (entry), FF:8000 */
        assert_int_equal(isp_image_sector_count(img), 3);
        assert_int_equal(img->data_bytes, 8);
        free(img);
}

static void test_hex_errors(void **state) {
        struct hexfile h;
        unsigned line;
        char *p;

        h = (struct hexfile) {};
        base_image(&h);
        line = rec(&h, 0x00, 0x2000, "0102");
        p = strrchr(h.text, '\n') - 2;          /* corrupt the checksum */
        p[0] = '0', p[1] = '0';
        eof(&h);
        hex_fails(&h, line, "bad checksum 0x00, expected 0xDB");

        h = (struct hexfile) {};
        base_image(&h);
        line = raw(&h, ":03200000010291");       /* says 3 data bytes, holds 2 */
        eof(&h);
        hex_fails(&h, line, "bad record length: length field says 3 data bytes, the line holds 2");

        h = (struct hexfile) {};
        base_image(&h);
        line = raw(&h, ":02200000010G1C");
        eof(&h);
        hex_fails(&h, line, "bad hex digit 'G' in column 13");

        h = (struct hexfile) {};
        line = raw(&h, "020000000102FB");
        hex_fails(&h, line, "line does not start with ':'");

        h = (struct hexfile) {};
        base_image(&h);
        line = rec(&h, 0x06, 0x0000, "00");
        eof(&h);
        hex_fails(&h, line, "unknown record type 0x06");

        h = (struct hexfile) {};
        base_image(&h);
        line = rec(&h, 0x00, 0x2000, "AA");
        hex_fails(&h, line, "missing EOF record");

        h = (struct hexfile) {};
        base_image(&h);
        rec(&h, 0x00, 0x2000, "AABBCC");
        line = rec(&h, 0x00, 0x2002, "CD");
        eof(&h);
        hex_fails(&h, line, "overlapping records with different data at FF:2002: 0xCD here, 0xCC before");

        h = (struct hexfile) {};
        base_image(&h);
        line = rec(&h, 0x00, 0x0003, "00");
        eof(&h);
        hex_fails(&h, line, "data at FF:0003 is inside the ISP area");

        h = (struct hexfile) {};
        base_image(&h);
        line = rec(&h, 0x00, 0x0FFE, "0000");
        eof(&h);
        hex_fails(&h, line, "data at FF:0FFE is inside the ISP area");

        h = (struct hexfile) {};
        base_image(&h);
        line = rec(&h, 0x00, 0x1002, "00");
        eof(&h);
        hex_fails(&h, line, "data at FF:1002: FF:1000-FF:1002 is reserved");

        h = (struct hexfile) {};
        rec(&h, 0x00, 0x2000, "AA");
        eof(&h);
        hex_fails(&h, 0, "no reset vector");

        h = (struct hexfile) {};
        line = rec(&h, 0x00, 0x0000, "021002");
        eof(&h);
        hex_fails(&h, line, "LJMP target 0x1002 is below 0x1003");

        h = (struct hexfile) {};
        line = rec(&h, 0x00, 0x0000, "121234");
        eof(&h);
        hex_fails(&h, line, "FF:0000 holds 0x12, expected an LJMP");

        h = (struct hexfile) {};
        line = rec(&h, 0x00, 0x0000, "0212");
        eof(&h);
        hex_fails(&h, line, "incomplete reset vector");

        h = (struct hexfile) {};
        base_image(&h);
        rec(&h, 0x04, 0, "0001");
        line = rec(&h, 0x00, 0x0000, "AA");
        eof(&h);
        hex_fails(&h, line, "address 0x010000 is outside flash");

        h = (struct hexfile) {};
        base_image(&h);
        line = rec(&h, 0x00, 0xFFFE, "AABBCC");   /* runs past FF:FFFF */
        eof(&h);
        hex_fails(&h, line, "address 0x010000 is outside flash");

        h = (struct hexfile) {};
        eof(&h);
        hex_fails(&h, 0, "empty image");

        h = (struct hexfile) {};
        base_image(&h);
        line = rec(&h, 0x01, 0, "00");
        hex_fails(&h, line, "bad record length: EOF record with 1 data bytes");

        h = (struct hexfile) {};
        base_image(&h);
        line = rec(&h, 0x04, 0, "FF");
        eof(&h);
        hex_fails(&h, line, "bad record length: extended linear address record");

        h = (struct hexfile) {};
        base_image(&h);
        line = raw(&h, ":0100");
        hex_fails(&h, line, "bad record length: record of 2 bytes is shorter");

        h = (struct hexfile) {};
        base_image(&h);
        line = raw(&h, ":0100000");
        hex_fails(&h, line, "odd number of hex digits");
}

static void test_bin(void **state) {
        struct isp_image *img = img_new();
        uint8_t *buf = malloc(ISP_FLASH_SIZE + 1);

        assert_non_null(buf);

        /* 64 KiB or less starts at FF:0000. */
        memset(buf, 0xFF, 0x2000);
        memcpy(buf, "\x02\x12\xFF", 3);        /* hh ll with a 0xFF byte still counts */
        buf[0x1003] = 0x00;
        buf[0x1FFF] = 0x42;
        load_ok(img, buf, 0x2000, ISP_IMAGE_BIN);
        assert_int_equal(img->format, ISP_IMAGE_BIN);
        assert_int_equal(img->entry_target, 0x12FF);
        assert_int_equal(img->flash[0x11003], 0x00);
        assert_int_equal(img->flash[0x11FFF], 0x42);
        assert_false(isp_image_byte_used(img, 0x11004));      /* 0xFF is blank */
        assert_int_equal(img->data_bytes, 5);
        assert_int_equal(isp_image_sector_count(img), 2);

        /* More than 64 KiB starts at FE:0000. */
        memset(buf, 0xFF, 0x10004);
        buf[0] = 0x5A;
        memcpy(buf + 0x10000, "\x02\x20\x00", 3);
        load_ok(img, buf, 0x10004, ISP_IMAGE_BIN);
        assert_int_equal(img->flash[0], 0x5A);
        assert_int_equal(img->entry_target, 0x2000);
        assert_int_equal(img->data_bytes, 4);

        /* Errors name the address and the file offset. */
        memset(buf, 0xFF, 0x2000);
        memcpy(buf, "\x02\x12\x34", 3);
        buf[0x0800] = 0;
        load_fails(buf, 0x2000, ISP_IMAGE_BIN, 0, "data at FF:0800 (file offset 0x800) is inside the ISP area");
        buf[0x0800] = 0xFF;
        buf[0x1001] = 0;
        load_fails(buf, 0x2000, ISP_IMAGE_BIN, 0, "data at FF:1001 (file offset 0x1001): FF:1000-FF:1002 is reserved");
        buf[0x1001] = 0xFF;
        buf[0] = 0xFF;
        load_fails(buf, 0x2000, ISP_IMAGE_BIN, 0, "FF:0000 holds 0xFF, expected an LJMP");
        memset(buf, 0xFF, 0x2000);
        load_fails(buf, 0x2000, ISP_IMAGE_BIN, 0, "FF:0000 holds 0xFF");
        load_fails(buf, 0, ISP_IMAGE_BIN, 0, "empty image");
        load_fails(buf, 2, ISP_IMAGE_BIN, 0, "incomplete reset vector");
        memset(buf, 0xFF, ISP_FLASH_SIZE + 1);
        load_fails(buf, ISP_FLASH_SIZE + 1, ISP_IMAGE_BIN, 0, "binary image of 131073 bytes is larger than the 128 KiB flash");

        free(buf);
        free(img);
}

static void test_crc_and_ranges(void **state) {
        struct isp_image *img = img_new();
        static uint8_t node[ISP_FLASH_SIZE];
        struct hexfile h = {};
        uint32_t crc, b, e;

        rec(&h, 0x04, 0, "00FE");
        rec(&h, 0x00, 0x0000, "A5A5");
        rec(&h, 0x04, 0, "00FF");
        rec(&h, 0x00, 0x0000, "023000");
        rec(&h, 0x00, 0x3000, "0102030405");
        eof(&h);
        load_ok(img, h.text, strlen(h.text), ISP_IMAGE_HEX);

        memset(node, 0xFF, sizeof(node));
        node[0] = node[1] = 0xA5;
        memcpy(node + 0x11000, "\x02\x30\x00", 3);
        memcpy(node + 0x13000, "\x01\x02\x03\x04\x05", 5);
        crc = isp_crc32_update(isp_crc32(node, 0x10000), node + 0x11000, 0xF000);
        assert_int_equal(isp_image_app_crc32(img), crc);
        assert_int_equal(isp_image_crc32(img, 0x11000, 512), isp_crc32(node + 0x11000, 512));
        assert_int_equal(isp_image_crc32(img, 0x11001, 2), isp_crc32(node + 0x11001, 2));
        assert_int_equal(isp_image_crc32(img, 0x10FFE, 4), isp_crc32(node + 0x10FFE, 4));

        assert_true(isp_image_next_range(img, 0, &b, &e));
        assert_int_equal(b, 0);
        assert_int_equal(e, 2);
        assert_true(isp_image_next_range(img, e, &b, &e));
        assert_int_equal(b, 0x11000);
        assert_int_equal(e, 0x11003);
        assert_true(isp_image_next_range(img, e, &b, &e));
        assert_int_equal(b, 0x13000);
        assert_int_equal(e, 0x13005);
        assert_false(isp_image_next_range(img, e, &b, &e));
        free(img);
}

static void test_detect_format(void **state) {
        assert_int_equal(isp_image_detect_format("app.HEX", "\x02", 1), ISP_IMAGE_HEX);
        assert_int_equal(isp_image_detect_format("app.ihx", "", 0), ISP_IMAGE_HEX);
        assert_int_equal(isp_image_detect_format("app.bin", ":00000001FF", 11), ISP_IMAGE_BIN);
        assert_int_equal(isp_image_detect_format("dir.hex/app", "\x02\x12\x34", 3), ISP_IMAGE_BIN);
        assert_int_equal(isp_image_detect_format(NULL, "\r\n:00000001FF", 13), ISP_IMAGE_HEX);
        assert_int_equal(isp_image_detect_format("firmware", ":GG", 3), ISP_IMAGE_BIN);
        assert_int_equal(isp_image_format_from_string("hex"), ISP_IMAGE_HEX);
        assert_int_equal(isp_image_format_from_string("BIN"), ISP_IMAGE_BIN);
        assert_int_equal(isp_image_format_from_string(NULL), ISP_IMAGE_AUTO);
        assert_int_equal(isp_image_format_from_string("srec"), -EINVAL);
}

/* Write `img` as a BIN, check where the LJMP went and the file's length,
 * load the BIN back: the node must end up with the same bytes. */
static void bin_roundtrip(const struct isp_image *img, size_t expected_len) {
        struct isp_image *back = img_new();
        uint32_t ljmp_at = expected_len > 0x10000 ? 0x10000 : 0;
        uint8_t *bin = NULL;
        size_t len = 0;

        assert_int_equal(isp_image_write_bin(img, &bin, &len), 0);
        assert_int_equal(len, expected_len);
        assert_memory_equal(bin + ljmp_at, img->entry, ISP_ENTRY_SIZE);
        /* FF:1000-FF:1002 is where the loader puts the LJMP: blank in the file */
        if (ljmp_at + 0x1003 <= len)
                assert_memory_equal(bin + ljmp_at + 0x1000, "\xFF\xFF\xFF", 3);

        load_ok(back, bin, len, ISP_IMAGE_BIN);
        assert_int_equal(back->format, ISP_IMAGE_BIN);
        assert_int_equal(back->entry_target, img->entry_target);
        for (uint32_t off = 0; off < ISP_FLASH_SIZE; off++)
                if (isp_image_node_byte(back, off) != isp_image_node_byte(img, off))
                        fail_msg("offset 0x%05X: 0x%02X after the BIN, 0x%02X before", off,
                                 isp_image_node_byte(back, off), isp_image_node_byte(img, off));
        assert_int_equal(isp_image_app_crc32(back), isp_image_app_crc32(img));
        free(bin);
        free(back);
}

static void test_write_bin(void **state) {
        struct isp_image *img = img_new();
        struct hexfile h = {};

        /* Only FF:xxxx: the <= 64 KiB form, the file ends at the last byte
         * that is not 0xFF (a programmed 0xFF at FF:2000 is blank in a BIN). */
        base_image(&h);                         /* FF:0000 LJMP, FF:1234-FF:1236 */
        rec(&h, 0x00, 0x2000, "FF");
        eof(&h);
        load_ok(img, h.text, strlen(h.text), ISP_IMAGE_HEX);
        bin_roundtrip(img, 0x1237);

        /* A byte in FE:xxxx: the > 64 KiB form, byte i at FE:0000 + i, and
         * the last byte of the flash too. */
        h = (struct hexfile) {};
        base_image(&h);
        rec(&h, 0x00, 0xFFFF, "5A");
        rec(&h, 0x04, 0, "00FE");
        rec(&h, 0x00, 0x0200, "A5A5");
        eof(&h);
        load_ok(img, h.text, strlen(h.text), ISP_IMAGE_HEX);
        bin_roundtrip(img, ISP_FLASH_SIZE);

        /* FE:xxxx and nothing above the LJMP: still longer than 64 KiB, or
         * a reader would place it at FF:0000. */
        h = (struct hexfile) {};
        rec(&h, 0x00, 0x0000, "0212FF");
        rec(&h, 0x04, 0, "00FE");
        rec(&h, 0x00, 0x0000, "01");
        eof(&h);
        load_ok(img, h.text, strlen(h.text), ISP_IMAGE_HEX);
        bin_roundtrip(img, 0x10003);

        free(img);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hex_minimal),
                cmocka_unit_test(test_hex_forms),
                cmocka_unit_test(test_hex_segment_and_low_bank),
                cmocka_unit_test(test_hex_errors),
                cmocka_unit_test(test_bin),
                cmocka_unit_test(test_crc_and_ranges),
                cmocka_unit_test(test_detect_format),
                cmocka_unit_test(test_write_bin),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
