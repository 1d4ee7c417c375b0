/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Small pieces the benchmarks' command lines and output share. */

#include <stdint.h>

#define BENCH_MAX_LIST 16

/* A decimal number in [min, max], nothing else. Returns 0 or -EINVAL. */
int bench_parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *ret);
/* "1,2,4": at most BENCH_MAX_LIST numbers in [min, max]. Returns 0 or -EINVAL. */
int bench_parse_list(const char *s, unsigned long min, unsigned long max, unsigned *list, unsigned *n);

/* A JSON string literal on stdout. */
void bench_json_string(const char *s);

static inline double bench_ms(uint64_t nsec) {
        return (double) nsec / 1e6;
}

static inline double bench_ratio(uint64_t a, uint64_t b) {
        return b ? (double) a / (double) b : 0.0;
}
