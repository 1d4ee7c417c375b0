/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Images for the benchmarks. See bench-image.h.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench-image.h"
#include "hex-writer.h"
#include "isp-node-ram.h"
#include "read-file.h"
#include "util.h"

#define MAX_IMAGE_FILE (4u << 20)
/* The application area: 0x11000-0x1FFFF, then 0x00000-0x0FFFF. */
#define UPPER_BYTES (ISP_FLASH_SIZE - ISP_ENTRY_OFFSET)
#define AREA_BYTES (UPPER_BYTES + ISP_AREA_START)

uint64_t bench_splitmix64(uint64_t *state) {
        uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));

        z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
        return z ^ (z >> 31);
}

static unsigned pick(uint64_t *rng, unsigned n) {
        return (unsigned) (bench_splitmix64(rng) % n);
}

/* HEX text → image, through the real loader. */
static int image_from_hex(struct hex_writer *h, const char *what, struct isp_image **ret) {
        struct isp_image_error e;
        struct isp_image *img;
        int r;

        hex_writer_eof(h);
        r = h->error;
        if (r < 0)
                goto out;
        img = malloc(sizeof(*img));
        if (!img) {
                r = -ENOMEM;
                goto out;
        }
        r = isp_image_load(img, h->text, h->len, ISP_IMAGE_HEX, &e);
        if (r < 0) {
                fprintf(stderr, "%s: generated %s does not load: line %u: %s\n",
                        program_invocation_short_name, what, e.line, e.message);
                free(img);
                goto out;
        }
        *ret = img;
out:
        free(h->text);
        h->text = NULL;
        return r;
}

/* The filler comes from another generator than Python's, so the bytes (and
 * with them the stuff bits) differ a little from the example images; the
 * sizes and addresses are the same. */
int bench_image_example(unsigned kib, struct isp_image **ret) {
        static const uint8_t blink[8] = { 0xB2, 0x90, 0x7F, 0x00, 0xDF, 0xFE, 0x80, 0xF8 };
        static const uint8_t ljmp[3] = { 0x02, 0x11, 0x00 };
        struct hex_writer h = HEX_WRITER_INIT;
        size_t filler_len = (size_t) kib * 1024 - 0x300;
        uint8_t *filler, table[1024];
        uint64_t rng = 0x5C15 + kib;
        char version[64], what[32];

        filler = malloc(filler_len);
        if (!filler)
                return -ENOMEM;
        for (size_t i = 0; i < filler_len; i++)
                filler[i] = (uint8_t) bench_splitmix64(&rng);
        for (unsigned i = 0; i < 1024; i++)
                table[i] = (uint8_t) (127.5 + 127.5 * sin(2 * M_PI * (i % 256) / 256));
        snprintf(version, sizeof(version), "stcisp example blink %u KiB", kib);

        hex_writer_data(&h, 0xFF0000, ljmp, sizeof(ljmp));
        hex_writer_data(&h, 0xFF1100, blink, sizeof(blink));
        hex_writer_data(&h, 0xFF1200, (const uint8_t *) version, strlen(version) + 1);
        hex_writer_data(&h, 0xFF1300, filler, filler_len);
        hex_writer_data(&h, 0xFE0000, table, sizeof(table));
        free(filler);

        snprintf(what, sizeof(what), "%u KiB image", kib);
        return image_from_hex(&h, what, ret);
}

/* ---- 8051-like code ---- */

enum operand {
        OP_NONE,
        OP_IMM,         /* #data: small numbers mostly */
        OP_DIR,         /* a direct address: an SFR or low RAM */
        OP_DIR_IMM,
        OP_REL,         /* a short jump, mostly backwards (loops) */
        OP_IMM_REL,
        OP_BIT,
        OP_BIT_REL,
        OP_XADDR,       /* MOV DPTR,#: XDATA, or a table in code */
        OP_CODE,        /* LCALL/LJMP: into the application */
};

/* The instruction mix of compiled STC32G/8051 code, by rough frequency. */
static const struct {
        uint8_t opcode;
        uint8_t regs;           /* 8: the opcode's low 3 bits pick R0-R7 */
        uint8_t operand;
        uint8_t weight;
} instructions[] = {
        { 0x74, 1, OP_IMM, 10 },        /* MOV A,#data */
        { 0xE5, 1, OP_DIR, 8 },         /* MOV A,direct */
        { 0xF5, 1, OP_DIR, 8 },         /* MOV direct,A */
        { 0x75, 1, OP_DIR_IMM, 6 },     /* MOV direct,#data */
        { 0x90, 1, OP_XADDR, 6 },       /* MOV DPTR,#data16 */
        { 0xE0, 1, OP_NONE, 6 },        /* MOVX A,@DPTR */
        { 0xF0, 1, OP_NONE, 5 },        /* MOVX @DPTR,A */
        { 0xA3, 1, OP_NONE, 5 },        /* INC DPTR */
        { 0x12, 1, OP_CODE, 7 },        /* LCALL addr16 */
        { 0x02, 1, OP_CODE, 1 },        /* LJMP addr16 */
        { 0x80, 1, OP_REL, 3 },         /* SJMP rel */
        { 0x60, 1, OP_REL, 3 },         /* JZ rel */
        { 0x70, 1, OP_REL, 3 },         /* JNZ rel */
        { 0xB4, 1, OP_IMM_REL, 2 },     /* CJNE A,#data,rel */
        { 0xD8, 8, OP_REL, 2 },         /* DJNZ Rn,rel */
        { 0xE8, 8, OP_NONE, 6 },        /* MOV A,Rn */
        { 0xF8, 8, OP_NONE, 6 },        /* MOV Rn,A */
        { 0x78, 8, OP_IMM, 4 },         /* MOV Rn,#data */
        { 0xE4, 1, OP_NONE, 4 },        /* CLR A */
        { 0xC3, 1, OP_NONE, 2 },        /* CLR C */
        { 0x24, 1, OP_IMM, 2 },         /* ADD A,#data */
        { 0x34, 1, OP_IMM, 1 },         /* ADDC A,#data */
        { 0x94, 1, OP_IMM, 1 },         /* SUBB A,#data */
        { 0x54, 1, OP_IMM, 2 },         /* ANL A,#data */
        { 0x44, 1, OP_IMM, 2 },         /* ORL A,#data */
        { 0x28, 8, OP_NONE, 2 },        /* ADD A,Rn */
        { 0x04, 1, OP_NONE, 2 },        /* INC A */
        { 0x08, 8, OP_NONE, 2 },        /* INC Rn */
        { 0xC0, 1, OP_DIR, 2 },         /* PUSH direct */
        { 0xD0, 1, OP_DIR, 2 },         /* POP direct */
        { 0xC2, 1, OP_BIT, 2 },         /* CLR bit */
        { 0xD2, 1, OP_BIT, 2 },         /* SETB bit */
        { 0x20, 1, OP_BIT_REL, 1 },     /* JB bit,rel */
        { 0x30, 1, OP_BIT_REL, 1 },     /* JNB bit,rel */
        { 0x93, 1, OP_NONE, 1 },        /* MOVC A,@A+DPTR */
        { 0x00, 1, OP_NONE, 1 },        /* NOP */
};

static const uint8_t sfrs[] = {
        0x80, 0x81, 0x82, 0x83, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x8E, 0x90, 0x98, 0x99,
        0xA0, 0xA8, 0xB0, 0xB8, 0xC8, 0xD0, 0xE0, 0xF0, 0xF1, 0xF2,
};

static uint8_t small_number(uint64_t *rng) {
        static const uint8_t common[] = { 0x00, 0x00, 0x00, 0x01, 0x01, 0xFF, 0x02, 0x0A, 0x10, 0x80 };
        unsigned k = pick(rng, 4);

        if (k < 2)
                return common[pick(rng, ELEMENTSOF(common))];
        if (k == 2)
                return (uint8_t) pick(rng, 32);
        return (uint8_t) bench_splitmix64(rng);
}

static uint8_t direct(uint64_t *rng) {
        return pick(rng, 2) ? sfrs[pick(rng, ELEMENTSOF(sfrs))] : (uint8_t) (0x08 + pick(rng, 0x78));
}

static uint8_t relative(uint64_t *rng) {
        return (uint8_t) (pick(rng, 4) ? -(int) (2 + pick(rng, 40)) : (int) (2 + pick(rng, 30)));
}

/* One instruction into p (room >= 3). Returns its length. */
static size_t emit_instruction(uint64_t *rng, uint8_t *p) {
        unsigned total = 0, w;
        size_t i, n = 1;

        for (i = 0; i < ELEMENTSOF(instructions); i++)
                total += instructions[i].weight;
        w = pick(rng, total);
        for (i = 0; w >= instructions[i].weight; i++)
                w -= instructions[i].weight;

        p[0] = (uint8_t) (instructions[i].opcode + (instructions[i].regs > 1 ? pick(rng, 8) : 0));
        switch (instructions[i].operand) {
        case OP_NONE:
                break;
        case OP_IMM:
                p[n++] = small_number(rng);
                break;
        case OP_DIR:
                p[n++] = direct(rng);
                break;
        case OP_DIR_IMM:
                p[n++] = direct(rng);
                p[n++] = small_number(rng);
                break;
        case OP_REL:
                p[n++] = relative(rng);
                break;
        case OP_IMM_REL:
                p[n++] = small_number(rng);
                p[n++] = relative(rng);
                break;
        case OP_BIT:
                p[n++] = (uint8_t) (pick(rng, 2) ? 0x80 + pick(rng, 0x80) : pick(rng, 0x80));
                break;
        case OP_BIT_REL:
                p[n++] = (uint8_t) (pick(rng, 2) ? 0x80 + pick(rng, 0x80) : pick(rng, 0x80));
                p[n++] = relative(rng);
                break;
        case OP_XADDR:
                p[n++] = (uint8_t) pick(rng, 0x20);     /* XDATA 0000-1FFF */
                p[n++] = (uint8_t) bench_splitmix64(rng);
                break;
        case OP_CODE:
                p[n++] = (uint8_t) (0x11 + pick(rng, 0xEF));
                p[n++] = (uint8_t) bench_splitmix64(rng);
                break;
        }
        return n;
}

static const char *const words[] = {
        "error", "timeout", "sensor", "motor", "speed", "temp", "config", "version",
        "calibration", "fault", "ok", "ready", "channel", "value", "limit", "PWM",
        "ADC", "CAN", "UART", "%d", "%u", "0x%04X", "=", ":", "\r\n",
};

/* A run of code, strings, tables and zeroed data as a linker lays out
 * compiled C. */
static void fill_code(uint8_t *buf, size_t len, uint64_t seed) {
        uint64_t rng = seed;
        size_t i = 0;

        while (i < len) {
                uint8_t block[300];
                size_t n = 0;
                unsigned kind = pick(&rng, 100);

                if (kind < 80) {
                        /* a function */
                        unsigned count = 5 + pick(&rng, 60);

                        for (unsigned k = 0; k < count && n + 4 < sizeof(block); k++)
                                n += emit_instruction(&rng, block + n);
                        block[n++] = 0x22;      /* RET */
                } else if (kind < 90) {
                        /* a string */
                        unsigned count = 1 + pick(&rng, 6);

                        for (unsigned k = 0; k < count; k++) {
                                const char *word = words[pick(&rng, ELEMENTSOF(words))];
                                size_t wl = strlen(word);

                                if (n + wl + 2 >= sizeof(block))
                                        break;
                                memcpy(block + n, word, wl);
                                n += wl;
                                block[n++] = ' ';
                        }
                        block[n - 1] = '\0';
                } else if (kind < 96) {
                        /* a table: a curve, small numbers or code addresses */
                        unsigned count = 16 + pick(&rng, 200), shape = pick(&rng, 3);

                        for (unsigned k = 0; k < count; k++)
                                block[n++] = shape == 0 ? (uint8_t) (127.5 + 127.5 * sin(2 * M_PI * k / count))
                                           : shape == 1 ? (uint8_t) pick(&rng, 16)
                                           : (k % 2 == 0) ? (uint8_t) (0x11 + pick(&rng, 0xEF))
                                           : (uint8_t) bench_splitmix64(&rng);
                } else {
                        /* initialised data: zeros */
                        n = 8 + pick(&rng, 56);
                        memset(block, 0, n);
                }
                if (n > len - i)
                        n = len - i;
                memcpy(buf + i, block, n);
                i += n;
        }
}

static void fill_data(uint8_t *buf, size_t len, uint64_t seed) {
        uint64_t rng = seed;

        for (size_t i = 0; i < len; i++)
                buf[i] = (uint8_t) bench_splitmix64(&rng);
}

/* Position in the fill order (0x11000 upwards, then 0x00000 upwards) of a
 * flash offset. */
static uint32_t area_position(uint32_t offset) {
        return offset >= ISP_ENTRY_OFFSET ? offset - ISP_ENTRY_OFFSET : UPPER_BYTES + offset;
}

const char *bench_content_to_string(enum bench_content content) {
        return content == BENCH_CODE ? "code" : "data";
}

int bench_image_generate(enum bench_content content, unsigned kib, uint64_t seed,
                         int patch_sector, uint64_t patch_seed, struct isp_image **ret) {
        struct hex_writer h = HEX_WRITER_INIT;
        size_t len = (size_t) kib * 1024;
        uint8_t *buf, *patch = NULL, ljmp[3] = { 0x02, 0x11, 0x00 };
        void (*fill)(uint8_t *, size_t, uint64_t) = content == BENCH_CODE ? fill_code : fill_data;
        char what[64];

        if (kib == 0 || len > AREA_BYTES)
                return -EINVAL;
        buf = malloc(len);
        if (!buf)
                return -ENOMEM;
        fill(buf, len, seed);
        if (patch_sector >= 0) {
                uint32_t pos = area_position((uint32_t) patch_sector * ISP_SECTOR_SIZE);

                patch = malloc(len);
                if (!patch || pos + ISP_SECTOR_SIZE > len) {
                        free(buf);
                        free(patch);
                        return patch ? -EINVAL : -ENOMEM;
                }
                fill(patch, len, patch_seed);
                memcpy(buf + pos, patch + pos, ISP_SECTOR_SIZE);
                free(patch);
        }

        /* The first 3 bytes are the entry: the LJMP at FF:0000, which the
         * loader moves there. It jumps past the entry, to FF:1100. */
        hex_writer_data(&h, 0xFF0000, ljmp, sizeof(ljmp));
        if (len > 3)
                hex_writer_data(&h, 0xFF0000 + ISP_ENTRY_OFFSET + 3 - ISP_AREA_START,
                                buf + 3, (len < UPPER_BYTES ? len : UPPER_BYTES) - 3);
        if (len > UPPER_BYTES)
                hex_writer_data(&h, 0xFE0000, buf + UPPER_BYTES, len - UPPER_BYTES);
        free(buf);

        snprintf(what, sizeof(what), "%u KiB %s image", kib, bench_content_to_string(content));
        return image_from_hex(&h, what, ret);
}

int bench_image_load(const char *path, struct isp_image **ret) {
        struct isp_image_error e;
        struct isp_image *img;
        char *data = NULL;
        size_t size;
        int r;

        r = read_full_file(path, MAX_IMAGE_FILE, &data, &size);
        if (r < 0) {
                fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, path, strerror(-r));
                return r;
        }
        img = malloc(sizeof(*img));
        if (!img) {
                free(data);
                return -ENOMEM;
        }
        r = isp_image_load(img, data, size, isp_image_detect_format(path, data, size), &e);
        free(data);
        if (r < 0) {
                if (e.line > 0)
                        fprintf(stderr, "%s: %s:%u: %s\n", program_invocation_short_name, path, e.line, e.message);
                else
                        fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, path, e.message);
                free(img);
                return r;
        }
        *ret = img;
        return 0;
}

uint8_t bench_expected_byte(const struct isp_image *img, uint32_t offset) {
        if (offset >= ISP_AREA_START && offset < ISP_AREA_END)
                return isp_node_isp_pattern(offset);
        return isp_image_node_byte(img, offset);
}

void bench_flash_load(uint8_t *flash, const struct isp_image *img) {
        for (uint32_t o = 0; o < ISP_FLASH_SIZE; o++)
                if (o < ISP_AREA_START || o >= ISP_AREA_END)
                        flash[o] = isp_image_node_byte(img, o);
}

unsigned bench_flash_diff(const uint8_t *flash, const struct isp_image *img, uint32_t *ret_first) {
        unsigned bad = 0;

        *ret_first = 0;
        for (uint32_t o = 0; o < ISP_FLASH_SIZE; o++)
                if (flash[o] != bench_expected_byte(img, o) && bad++ == 0)
                        *ret_first = o;
        return bad;
}
