/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The flash plan (daemon/plan.c) against what it replaces and against the
 * CRC computed directly: the PROGRAM chunks must be exactly what the
 * engine's old per-frame byte scan gave (the benchmark's frame counts rest
 * on it), the expected CRCs exactly what a node computes over the bytes.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "isp-crc32.h"
#include "isp-image.h"
#include "plan.h"

/* ------------------------------------------------------------------------ */
/* The engine's chunking before the plan, verbatim: rescans from the
 * cursor for every PROGRAM frame. */

static bool old_is_entry_byte(uint32_t offset) {
        return offset >= ISP_ENTRY_OFFSET && offset < ISP_ENTRY_OFFSET + ISP_ENTRY_SIZE;
}

static bool old_byte_to_program(const struct isp_image *img, uint32_t offset) {
        if (offset >= ISP_AREA_START && offset < ISP_AREA_END)
                return false;
        return isp_image_byte_used(img, offset) && !old_is_entry_byte(offset);
}

static bool old_next_chunk(const struct isp_image *img, uint32_t *cursor, uint32_t *ret_offset, uint8_t *ret_len) {
        uint32_t o = *cursor, start, last;

        while (o < ISP_FLASH_SIZE) {
                if (o % 8 == 0 && img->used[o / 8] == 0) {
                        o += 8;
                        continue;
                }
                if (old_byte_to_program(img, o) && img->flash[o] != 0xFF)
                        break;
                o++;
        }
        if (o >= ISP_FLASH_SIZE) {
                *cursor = ISP_FLASH_SIZE;
                return false;
        }

        start = last = o;
        for (o = start + 1; o < ISP_FLASH_SIZE && o - start < 8 && old_byte_to_program(img, o); o++)
                if (img->flash[o] != 0xFF)
                        last = o;

        *ret_offset = start;
        *ret_len = (uint8_t) (last - start + 1);
        *cursor = last + 1;
        return true;
}

/* ------------------------------------------------------------------------ */
/* Images, built in memory */

static uint32_t lcg(uint32_t *state) {
        *state = *state * 1103515245u + 12345u;
        return *state >> 16;
}

static struct isp_image *new_image(void) {
        struct isp_image *img = calloc(1, sizeof(*img));

        assert_non_null(img);
        memset(img->flash, 0xFF, sizeof(img->flash));
        /* LJMP FF:1100 */
        img->entry[0] = 0x02;
        img->entry[1] = 0x11;
        img->entry[2] = 0x00;
        img->entry_target = 0x1100;
        return img;
}

static void put(struct isp_image *img, uint32_t offset, uint8_t byte) {
        img->flash[offset] = byte;
        img->used[offset / 8] |= (uint8_t) (1u << (offset % 8));
}

static void put_range(struct isp_image *img, uint32_t offset, uint32_t len, uint32_t *rng, unsigned ff_every) {
        for (uint32_t i = 0; i < len; i++)
                put(img, offset + i, ff_every && lcg(rng) % ff_every == 0 ? 0xFF : (uint8_t) lcg(rng));
}

enum image_kind {
        IMAGE_ENTRY_ONLY,       /* nothing but the entry bytes */
        IMAGE_DENSE,            /* 16 KiB of code, few 0xFF */
        IMAGE_FF_RUNS,          /* runs of 0xFF of every length inside the data */
        IMAGE_GAPS,             /* scattered bytes and blocks, partial 8-byte blocks */
        IMAGE_ALTERNATE,        /* every other byte used: the most chunks */
        IMAGE_EDGES,            /* bytes next to and inside the ISP area, at the flash's ends */
        _IMAGE_KIND_MAX,
};

static struct isp_image *make_image(enum image_kind kind) {
        struct isp_image *img = new_image();
        uint32_t rng = 0xC0DE + kind;

        put(img, ISP_ENTRY_OFFSET, img->entry[0]);
        put(img, ISP_ENTRY_OFFSET + 1, img->entry[1]);
        put(img, ISP_ENTRY_OFFSET + 2, img->entry[2]);

        switch (kind) {
        case IMAGE_ENTRY_ONLY:
                break;
        case IMAGE_DENSE:
                put_range(img, 0x11003, 16 * 1024, &rng, 97);
                break;
        case IMAGE_FF_RUNS:
                put_range(img, 0x00000, 4096, &rng, 0);
                for (uint32_t len = 1, o = 16; len <= 40 && o < 4000; o += len + 13, len++)
                        for (uint32_t i = 0; i < len; i++)
                                img->flash[o + i] = 0xFF;
                put_range(img, 0x11100, 1024, &rng, 3);
                break;
        case IMAGE_GAPS:
                for (unsigned i = 0; i < 600; i++)
                        put(img, (lcg(&rng) * 7u) % ISP_FLASH_SIZE, (uint8_t) lcg(&rng));
                for (unsigned i = 0; i < 40; i++)
                        put_range(img, (lcg(&rng) * 13u) % (ISP_FLASH_SIZE - 64), 1 + lcg(&rng) % 50, &rng, 5);
                break;
        case IMAGE_ALTERNATE:
                for (uint32_t o = 0x12000; o < 0x16000; o += 2)
                        put(img, o, (uint8_t) (o & 0x7F));
                break;
        case IMAGE_EDGES:
                put_range(img, 0x00000, 11, &rng, 0);
                put_range(img, ISP_AREA_START - 5, 20, &rng, 0);       /* into the ISP area */
                put_range(img, ISP_AREA_END - 5, 12, &rng, 0);         /* out of it, over the entry */
                put_range(img, ISP_FLASH_SIZE - 7, 7, &rng, 0);
                break;
        case _IMAGE_KIND_MAX:
                break;
        }
        return img;
}

/* ------------------------------------------------------------------------ */

static void test_chunks_equal_byte_scan(void **state) {
        for (unsigned k = 0; k < _IMAGE_KIND_MAX; k++) {
                struct isp_image *img = make_image(k);
                struct plan p;
                uint32_t cursor = 0, offset;
                uint64_t bytes = 0;
                unsigned n = 0;
                uint8_t len;

                assert_int_equal(plan_init(&p, img), 0);
                while (old_next_chunk(img, &cursor, &offset, &len)) {
                        if (n >= p.n_chunks)
                                fail_msg("image %u: the plan has %u chunks, the byte scan more", k, p.n_chunks);
                        if (p.chunks[n].offset != offset || p.chunks[n].len != len)
                                fail_msg("image %u: chunk %u is 0x%05X+%u, the byte scan gives 0x%05X+%u", k, n,
                                         (unsigned) p.chunks[n].offset, p.chunks[n].len, (unsigned) offset, len);
                        bytes += len;
                        n++;
                }
                assert_int_equal(p.n_chunks, n);
                assert_int_equal(p.program_bytes, bytes);
                if (k == IMAGE_ENTRY_ONLY)
                        assert_int_equal(n, 0);
                else
                        assert_true(n > 0);
                plan_done(&p);
                free(img);
        }
}

/* What no chunk may touch: the ISP area, the entry bytes; and every chunk
 * starts and ends with a byte that is not 0xFF. */
static void test_chunks_rules(void **state) {
        for (unsigned k = 0; k < _IMAGE_KIND_MAX; k++) {
                struct isp_image *img = make_image(k);
                struct plan p;

                assert_int_equal(plan_init(&p, img), 0);
                for (unsigned i = 0; i < p.n_chunks; i++) {
                        const struct plan_chunk *c = &p.chunks[i];
                        uint32_t end = c->offset + c->len;

                        assert_true(c->len >= 1 && c->len <= 8);
                        assert_true(end <= ISP_FLASH_SIZE);
                        assert_false(c->offset < ISP_AREA_END && end > ISP_AREA_START);
                        assert_false(c->offset < ISP_ENTRY_OFFSET + ISP_ENTRY_SIZE && end > ISP_ENTRY_OFFSET);
                        assert_int_not_equal(img->flash[c->offset], 0xFF);
                        assert_int_not_equal(img->flash[end - 1], 0xFF);
                        if (i > 0)
                                assert_true(p.chunks[i - 1].offset + p.chunks[i - 1].len <= c->offset);
                }
                plan_done(&p);
                free(img);
        }
}

static void test_sector_sets(void **state) {
        for (unsigned k = 0; k < _IMAGE_KIND_MAX; k++) {
                struct isp_image *img = make_image(k);
                struct plan_sectors erase;
                struct plan p;

                assert_int_equal(plan_init(&p, img), 0);
                plan_erase_sectors(&p, &erase);
                for (unsigned sec = 0; sec < ISP_SECTORS; sec++) {
                        bool isp = sec >= ISP_AREA_START / ISP_SECTOR_SIZE && sec < ISP_AREA_END / ISP_SECTOR_SIZE;
                        bool used = isp_image_sector_used(img, sec);

                        assert_int_equal(plan_is_isp_sector(sec), isp);
                        assert_int_equal(plan_sectors_test(&p.image_sectors, sec), !isp && used);
                        assert_int_equal(plan_sectors_test(&p.blank_sectors, sec), !isp && !used);
                        assert_int_equal(plan_sectors_test(&erase, sec),
                                         !isp && used && sec != ISP_ENTRY_OFFSET / ISP_SECTOR_SIZE);
                }
                /* the entry sector always holds the image */
                assert_true(plan_sectors_test(&p.image_sectors, ISP_ENTRY_OFFSET / ISP_SECTOR_SIZE));
                plan_done(&p);
                free(img);
        }
}

static void test_sector_runs(void **state) {
        struct plan_sectors all = { { 0 } }, none = { { 0 } };
        struct plan_run run;
        unsigned cursor = 0, n = 0, covered = 0;

        for (unsigned sec = 0; sec < ISP_SECTORS; sec++)
                if (!plan_is_isp_sector(sec))
                        plan_sectors_add(&all, sec);

        /* at most `max` sectors per run, never across the ISP area */
        while (plan_sectors_next_run(&all, &cursor, 100, &run)) {
                assert_true(run.count >= 1 && run.count <= 100);
                for (unsigned s = run.first; s < run.first + run.count; s++)
                        assert_false(plan_is_isp_sector(s));
                covered += run.count;
                n++;
        }
        assert_int_equal(covered, ISP_SECTORS - (ISP_AREA_END - ISP_AREA_START) / ISP_SECTOR_SIZE);
        /* 0-127 in two runs of at most 100, 136-255 in two */
        assert_int_equal(n, 4);

        cursor = 0;
        assert_false(plan_sectors_next_run(&none, &cursor, 255, &run));
        assert_int_equal(cursor, ISP_SECTORS);
}

static void test_expected_crcs(void **state) {
        static const struct plan_run runs[] = {
                { 0, 1 }, { 0, 8 }, { 2, 3 }, { 136, 1 }, { 136, 4 }, { 137, 119 }, { 255, 1 }, { 0, 128 },
        };
        static uint8_t buf[ISP_FLASH_SIZE];

        for (unsigned k = 0; k < _IMAGE_KIND_MAX; k++) {
                struct isp_image *img = make_image(k);
                struct plan p;

                assert_int_equal(plan_init(&p, img), 0);
                for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
                        uint32_t first = runs[i].first * ISP_SECTOR_SIZE, len = runs[i].count * ISP_SECTOR_SIZE;

                        /* before the commit: the image, 0xFF where it has
                         * nothing and in the entry bytes */
                        for (uint32_t o = 0; o < len; o++) {
                                uint32_t a = first + o;
                                bool entry = a >= ISP_ENTRY_OFFSET && a < ISP_ENTRY_OFFSET + ISP_ENTRY_SIZE;

                                buf[o] = entry || !isp_image_byte_used(img, a) ? 0xFF : img->flash[a];
                        }
                        assert_int_equal(plan_expected_crc(&p, runs[i].first, runs[i].count), isp_crc32(buf, len));
                }
                plan_done(&p);
                free(img);
        }

        memset(buf, 0xFF, sizeof(buf));
        for (unsigned n = 0; n <= ISP_SECTORS; n += 17)
                assert_int_equal(plan_blank_crc(n), isp_crc32(buf, n * ISP_SECTOR_SIZE));
        assert_int_equal(plan_blank_crc(1), isp_crc32(buf, ISP_SECTOR_SIZE));
}

static void test_read_blocks(void **state) {
        for (unsigned k = 0; k < _IMAGE_KIND_MAX; k++) {
                struct isp_image *img = make_image(k);
                uint32_t cursor = 0, offset, next = 0;
                uint64_t bytes = 0;
                struct plan p;

                assert_int_equal(plan_init(&p, img), 0);
                while (plan_next_read_block(&p, &cursor, &offset)) {
                        uint8_t want[8];
                        bool mask[8];

                        assert_int_equal(offset % 8, 0);
                        assert_true(offset >= next);
                        /* no block holding image bytes skipped */
                        for (uint32_t o = next; o < offset; o += 8)
                                assert_int_equal(img->used[o / 8], 0);
                        assert_int_not_equal(img->used[offset / 8], 0);

                        plan_read_expected(&p, offset, want, mask);
                        for (unsigned i = 0; i < 8; i++) {
                                uint32_t a = offset + i;
                                bool entry = a >= ISP_ENTRY_OFFSET && a < ISP_ENTRY_OFFSET + ISP_ENTRY_SIZE;

                                assert_int_equal(mask[i], isp_image_byte_used(img, a) && !entry);
                                if (mask[i])
                                        assert_int_equal(want[i], img->flash[a]);
                        }
                        next = offset + 8;
                        bytes += 8;
                }
                assert_int_equal(p.read_bytes, bytes);
                plan_done(&p);
                free(img);
        }
}

/* protocol.md 9, step 4: hh ll at FF:1001, then the opcode alone at
 * FF:1000, then READ FF:1000. */
static void test_commit_rule(void **state) {
        struct isp_image *img = make_image(IMAGE_DENSE);
        struct isp_request req;
        uint8_t want[8];
        struct plan p;

        assert_int_equal(plan_init(&p, img), 0);

        plan_commit_request(&p, PLAN_COMMIT_TARGET, &req);
        assert_int_equal(req.cmd, ISP_CMD_PROGRAM);
        assert_int_equal(req.u.program.offset, 0x11001);
        assert_int_equal(req.u.program.len, 2);
        assert_int_equal(req.u.program.data[0], 0x11);
        assert_int_equal(req.u.program.data[1], 0x00);

        plan_commit_request(&p, PLAN_COMMIT_OPCODE, &req);
        assert_int_equal(req.cmd, ISP_CMD_PROGRAM);
        assert_int_equal(req.u.program.offset, 0x11000);
        assert_int_equal(req.u.program.len, 1);
        assert_int_equal(req.u.program.data[0], 0x02);

        plan_commit_request(&p, PLAN_COMMIT_CHECK, &req);
        assert_int_equal(req.cmd, ISP_CMD_READ);
        assert_int_equal(req.u.read.offset, 0x11000);

        plan_commit_expected(&p, want);
        for (unsigned i = 0; i < 8; i++)
                assert_int_equal(want[i], isp_image_node_byte(img, ISP_ENTRY_OFFSET + i));
        assert_int_equal(want[0], 0x02);

        plan_done(&p);
        free(img);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_chunks_equal_byte_scan),
                cmocka_unit_test(test_chunks_rules),
                cmocka_unit_test(test_sector_sets),
                cmocka_unit_test(test_sector_runs),
                cmocka_unit_test(test_expected_crcs),
                cmocka_unit_test(test_read_blocks),
                cmocka_unit_test(test_commit_rule),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
