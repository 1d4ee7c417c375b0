/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * HEX files written at test time by srec_cat (srecord), a tool nobody here
 * wrote, from random binaries, in several line lengths and address forms,
 * must load to exactly the bytes of the binary.
 */
#include <errno.h>
#include <setjmp.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "isp-crc32.h"
#include "isp-image.h"
#include "read-file.h"

extern char **environ;

static char tmpdir[] = "/tmp/test-srecord.XXXXXX";
static const char *srec_cat;

static void run(char *const argv[]) {
        pid_t pid;
        int status;

        assert_int_equal(posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ), 0);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fail_msg("%s failed (status 0x%x)", argv[0], status);
}

static void write_file(const char *path, const void *buf, size_t len) {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(buf, 1, len, f), len);
        assert_int_equal(fclose(f), 0);
}

/* A random 128 KiB flash picture that obeys the image rules, with a hole
 * [hole_begin, hole_end) left out of the HEX. */
struct picture {
        uint8_t bytes[ISP_FLASH_SIZE];
        uint32_t hole_begin, hole_end;
};

static void picture_random(struct picture *p, unsigned seed) {
        srand(seed);
        for (size_t i = 0; i < ISP_FLASH_SIZE; i++)
                p->bytes[i] = (uint8_t) (rand() >> 7);
        memset(p->bytes + 0x10000, 0xFF, 0x1003 + 0x3);
        p->bytes[0x10000] = 0x02;
        p->bytes[0x10001] = (uint8_t) (0x10 + rand() % 0xEF);
        p->bytes[0x10002] = (uint8_t) rand();
        p->hole_begin = 0x12000 + (uint32_t) (rand() % 0x4000);
        p->hole_end = p->hole_begin + 1 + (uint32_t) (rand() % 3000);
}

static bool in_hex(const struct picture *p, uint32_t offset, bool low_bank) {
        if (!low_bank && offset < 0x10000)
                return false;
        if (offset >= 0x10003 && offset < 0x11003)
                return false;
        return offset < p->hole_begin || offset >= p->hole_end;
}

static void check_loaded(const struct picture *p, const struct isp_image *img, bool low_bank) {
        uint8_t node[ISP_FLASH_SIZE];
        size_t count = 0;

        memset(node, 0xFF, sizeof(node));
        for (uint32_t o = 0; o < ISP_FLASH_SIZE; o++) {
                bool expected = in_hex(p, o, low_bank) && (o < 0x10000 || o >= 0x10003);

                if (isp_image_byte_used(img, o) != expected)
                        fail_msg("offset 0x%05X: used=%d, expected %d", o, isp_image_byte_used(img, o), expected);
                if (img->flash[o] != (expected ? p->bytes[o] : 0xFF))
                        fail_msg("offset 0x%05X: 0x%02X, expected 0x%02X", o, img->flash[o], p->bytes[o]);
                if (expected) {
                        node[o] = p->bytes[o];
                        count++;
                }
        }
        memcpy(node + 0x11000, p->bytes + 0x10000, 3);
        assert_memory_equal(img->entry, p->bytes + 0x10000, 3);
        assert_int_equal(img->data_bytes, count + 3);
        assert_int_equal(isp_image_app_crc32(img),
                         isp_crc32_update(isp_crc32(node, 0x10000), node + 0x11000, 0xF000));
}

static void load_hex_file(const char *path, struct isp_image *img) {
        struct isp_image_error e;
        char *data;
        size_t size;

        assert_int_equal(read_full_file(path, 4 << 20, &data, &size), 0);
        if (isp_image_load(img, data, size, ISP_IMAGE_AUTO, &e) < 0)
                fail_msg("%s:%u: %s", path, e.line, e.message);
        assert_int_equal(img->format, ISP_IMAGE_HEX);
        free(data);
}

static void test_srec_cat_forms(void **state) {
        static struct picture p;
        struct isp_image *img = malloc(sizeof(*img));
        const char *block_sizes[] = { "8", "16", "32", "64", "255" };
        char bin[128], hex[128], hole_b[16], hole_e[16];

        assert_non_null(img);
        snprintf(bin, sizeof(bin), "%s/flash.bin", tmpdir);
        snprintf(hex, sizeof(hex), "%s/out.hex", tmpdir);

        for (unsigned seed = 1; seed <= 5; seed++) {
                const char *obs = block_sizes[seed - 1];

                picture_random(&p, seed);
                snprintf(hole_b, sizeof(hole_b), "0x%X", p.hole_begin);
                snprintf(hole_e, sizeof(hole_e), "0x%X", p.hole_end);

                /* 128 KiB, logical FE:0000-FF:FFFF addresses (type 04 records). */
                write_file(bin, p.bytes, ISP_FLASH_SIZE);
                run((char *[]) { (char *) srec_cat, bin, "-binary",
                                 "-exclude", "0x10003", "0x11003", "-exclude", hole_b, hole_e,
                                 "-offset", "0xFE0000",
                                 "-o", hex, "-intel", "-address-length=4", "-obs", (char *) obs, NULL });
                load_hex_file(hex, img);
                check_loaded(&p, img, true);

                /* The upper 64 KiB with plain 16-bit addresses, in each of
                 * srec_cat's three address forms (i8hex, i16hex, i32hex). */
                write_file(bin, p.bytes + 0x10000, 0x10000);
                snprintf(hole_b, sizeof(hole_b), "0x%X", p.hole_begin - 0x10000);
                snprintf(hole_e, sizeof(hole_e), "0x%X", p.hole_end - 0x10000);
                for (const char *const *al = (const char *const[]) { "-address-length=2", "-address-length=3",
                                                                    "-address-length=4", NULL }; *al; al++) {
                        run((char *[]) { (char *) srec_cat, bin, "-binary",
                                         "-exclude", "0x0003", "0x1003", "-exclude", hole_b, hole_e,
                                         "-o", hex, "-intel", (char *) *al, "-obs", (char *) obs, NULL });
                        load_hex_file(hex, img);
                        check_loaded(&p, img, false);
                }
        }
        free(img);
}

/* hex → bin, the way people feed a hex2bin output to the tool: the ISP area
 * comes back as 0xFF fill, which a BIN treats as blank. */
static void test_srec_cat_hex_to_bin(void **state) {
        static struct picture p;
        struct isp_image *from_hex = malloc(sizeof(*from_hex)), *from_bin = malloc(sizeof(*from_bin));
        struct isp_image_error e;
        char bin[128], hex[128], out[128];
        char *data;
        size_t size;

        assert_non_null(from_hex);
        assert_non_null(from_bin);
        snprintf(bin, sizeof(bin), "%s/flash.bin", tmpdir);
        snprintf(hex, sizeof(hex), "%s/app.hex", tmpdir);
        snprintf(out, sizeof(out), "%s/app.bin", tmpdir);

        picture_random(&p, 42);
        write_file(bin, p.bytes, ISP_FLASH_SIZE);
        run((char *[]) { (char *) srec_cat, bin, "-binary", "-exclude", "0x10003", "0x11003",
                         "-offset", "0xFE0000", "-o", hex, "-intel", NULL });
        run((char *[]) { (char *) srec_cat, hex, "-intel", "-offset", "-0xFE0000",
                         "-fill", "0xFF", "0", "0x20000", "-o", out, "-binary", NULL });

        load_hex_file(hex, from_hex);
        assert_int_equal(read_full_file(out, 1 << 20, &data, &size), 0);
        assert_int_equal(size, ISP_FLASH_SIZE);
        if (isp_image_load(from_bin, data, size, ISP_IMAGE_AUTO, &e) < 0)
                fail_msg("%s: %s", out, e.message);
        free(data);

        assert_int_equal(from_bin->format, ISP_IMAGE_BIN);
        for (uint32_t o = 0; o < ISP_FLASH_SIZE; o++)
                assert_int_equal(isp_image_node_byte(from_bin, o), isp_image_node_byte(from_hex, o));
        assert_int_equal(isp_image_app_crc32(from_bin), isp_image_app_crc32(from_hex));
        free(from_hex);
        free(from_bin);
}

static int setup(void **state) {
        srec_cat = getenv("SREC_CAT");
        if (!srec_cat)
                srec_cat = "srec_cat";
        return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_srec_cat_forms),
                cmocka_unit_test(test_srec_cat_hex_to_bin),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
