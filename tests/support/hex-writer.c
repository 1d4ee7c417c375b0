/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "hex-writer.h"

void hex_writer_record(struct hex_writer *h, uint16_t addr, uint8_t type, const uint8_t *data, size_t n) {
        uint8_t sum = (uint8_t) (n + (addr >> 8) + (addr & 0xFF) + type);

        if (h->error)
                return;
        /* a record is at most 11 + 2 * 255 characters and a newline */
        if (h->len + 12 + 2 * n + 1 > h->cap) {
                size_t cap = h->cap ? h->cap * 2 : 65536;
                char *p = realloc(h->text, cap);

                if (!p) {
                        h->error = -ENOMEM;
                        return;
                }
                h->text = p;
                h->cap = cap;
        }
        h->len += (size_t) sprintf(h->text + h->len, ":%02X%04X%02X", (unsigned) n, addr, type);
        for (size_t i = 0; i < n; i++) {
                h->len += (size_t) sprintf(h->text + h->len, "%02X", data[i]);
                sum = (uint8_t) (sum + data[i]);
        }
        h->len += (size_t) sprintf(h->text + h->len, "%02X\n", (uint8_t) -sum);
}

void hex_writer_data(struct hex_writer *h, uint32_t addr, const uint8_t *data, size_t n) {
        while (n > 0) {
                size_t k = n < 16 ? n : 16;

                if ((long) (addr >> 16) != h->upper) {
                        uint8_t up[2] = { (uint8_t) (addr >> 24), (uint8_t) (addr >> 16) };

                        h->upper = (long) (addr >> 16);
                        hex_writer_record(h, 0, 0x04, up, 2);
                }
                if ((addr & 0xFFFF) + k > 0x10000)
                        k = 0x10000 - (addr & 0xFFFF);
                hex_writer_record(h, (uint16_t) addr, 0x00, data, k);
                addr += (uint32_t) k;
                data += k;
                n -= k;
        }
}
