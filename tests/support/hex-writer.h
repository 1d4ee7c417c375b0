/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Writes Intel HEX text in memory, for tests and benchmarks that make
 * their own images: 16 data bytes a record, a type 04 record whenever the
 * upper 16 address bits change, no record across a 64 KiB boundary. */

#include <stddef.h>
#include <stdint.h>

struct hex_writer {
        char *text;             /* NUL-terminated; free() it */
        size_t len, cap;
        long upper;             /* current type 04 value, -1 none yet */
        int error;              /* -ENOMEM once an allocation failed */
};

#define HEX_WRITER_INIT { .upper = -1 }

void hex_writer_record(struct hex_writer *h, uint16_t addr, uint8_t type, const uint8_t *data, size_t n);

/* Data at a full HEX address: 0x0000xxxx means FF:xxxx, 0x00FExxxx and
 * 0x00FFxxxx are logical addresses. */
void hex_writer_data(struct hex_writer *h, uint32_t addr, const uint8_t *data, size_t n);

static inline void hex_writer_eof(struct hex_writer *h) {
        hex_writer_record(h, 0, 0x01, NULL, 0);
}
