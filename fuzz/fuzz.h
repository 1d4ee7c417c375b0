/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Shared by the fuzz targets and fuzz-main.c, the standalone driver that
 * replays a corpus where libFuzzer is not available (gcc builds).
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant of the code under test: on violation, say which one and
 * abort(), so libFuzzer keeps the input as a crash artifact. */
#define fuzz_check(expr, ...)                                                   \
        do {                                                                    \
                if (!(expr)) {                                                  \
                        fprintf(stderr, "%s:%d: invariant violated: %s: ",      \
                                __FILE__, __LINE__, #expr);                     \
                        fprintf(stderr, __VA_ARGS__);                           \
                        fputc('\n', stderr);                                    \
                        abort();                                                \
                }                                                               \
        } while (0)

/* Reads the fuzz input as a stream of fields; past the end it yields
 * zeroes, so every input decodes to something. */
struct fuzz_input {
        const uint8_t *data;
        size_t size;
        size_t pos;
};

static inline uint8_t fuzz_u8(struct fuzz_input *in) {
        return in->pos < in->size ? in->data[in->pos++] : 0;
}

static inline uint32_t fuzz_u32(struct fuzz_input *in) {
        uint32_t v = 0;

        for (unsigned i = 0; i < 4; i++)
                v |= (uint32_t) fuzz_u8(in) << (8 * i);         /* little-endian */
        return v;
}
