/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "isp-image-hex.h"

#define RECORD_DATA_MAX 16

struct hex_out {
        char *text;
        size_t len, cap;
        long upper;             /* current type 04 value, -1 none yet */
};

static void put_hex_byte(struct hex_out *o, uint8_t b) {
        static const char digits[] = "0123456789ABCDEF";

        o->text[o->len++] = digits[b >> 4];
        o->text[o->len++] = digits[b & 0xF];
}

static int put_record(struct hex_out *o, uint16_t addr, uint8_t type, const uint8_t *data, size_t n) {
        uint8_t sum = (uint8_t) (n + (addr >> 8) + (addr & 0xFF) + type);
        size_t need = 1 + 2 * (4 + n + 1) + 1 + 1;      /* ':' fields newline NUL */

        if (o->len + need > o->cap) {
                size_t cap = o->cap ? o->cap * 2 : 16384;
                char *p;

                while (cap < o->len + need)
                        cap *= 2;
                p = realloc(o->text, cap);
                if (!p)
                        return -ENOMEM;
                o->text = p;
                o->cap = cap;
        }
        o->text[o->len++] = ':';
        put_hex_byte(o, (uint8_t) n);
        put_hex_byte(o, (uint8_t) (addr >> 8));
        put_hex_byte(o, (uint8_t) addr);
        put_hex_byte(o, type);
        for (size_t i = 0; i < n; i++) {
                put_hex_byte(o, data[i]);
                sum = (uint8_t) (sum + data[i]);
        }
        put_hex_byte(o, (uint8_t) -sum);
        o->text[o->len++] = '\n';
        o->text[o->len] = '\0';
        return 0;
}

/* Data at a logical address; n never crosses a 64 KiB boundary here. */
static int put_data(struct hex_out *o, uint32_t address, const uint8_t *data, size_t n) {
        int r;

        if ((long) (address >> 16) != o->upper) {
                uint8_t up[2] = { (uint8_t) (address >> 24), (uint8_t) (address >> 16) };

                o->upper = (long) (address >> 16);
                r = put_record(o, 0, 0x04, up, sizeof(up));
                if (r < 0)
                        return r;
        }
        return put_record(o, (uint16_t) address, 0x00, data, n);
}

/* The used bytes of [begin, end), which holds no 64 KiB boundary. */
static int put_used(struct hex_out *o, const struct isp_image *img, uint32_t begin, uint32_t end) {
        uint32_t off = begin;

        while (off < end) {
                size_t n = 0;
                int r;

                if (!isp_image_byte_used(img, off)) {
                        off++;
                        continue;
                }
                while (off + n < end && n < RECORD_DATA_MAX && isp_image_byte_used(img, off + (uint32_t) n))
                        n++;
                r = put_data(o, ISP_LOGICAL_BASE + off, img->flash + off, n);
                if (r < 0)
                        return r;
                off += (uint32_t) n;
        }
        return 0;
}

int isp_image_write_hex(const struct isp_image *img, char **ret_text, size_t *ret_len) {
        struct hex_out o = { .upper = -1 };
        int r;

        /* FE:xxxx, then the LJMP at FF:0000 where the loader takes it from,
         * then FF:1003 on: ascending addresses, as a reader expects them. */
        r = put_used(&o, img, 0, ISP_AREA_START);
        if (r >= 0)
                r = put_data(&o, ISP_LOGICAL_BASE + ISP_AREA_START, img->entry, ISP_ENTRY_SIZE);
        if (r >= 0)
                r = put_used(&o, img, ISP_AREA_END, ISP_FLASH_SIZE);
        if (r >= 0)
                r = put_record(&o, 0, 0x01, NULL, 0);
        if (r < 0) {
                free(o.text);
                return r;
        }
        *ret_text = o.text;
        if (ret_len)
                *ret_len = o.len;
        return 0;
}
