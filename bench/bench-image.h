/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Images for the benchmarks: generated (always through Intel HEX and the
 * real loader, so they obey every image rule) or read from a file, and the
 * check that a node holds exactly an image.
 */

#include <stdbool.h>
#include <stdint.h>

#include "isp-image.h"

/* The layout of examples/make-example-image.py --size KIB (1-60): LJMP
 * FF:1100 at FF:0000, the blink loop at FF:1100, a version string at
 * FF:1200, pseudo-random filler from FF:1300 up to FF:1000 + KIB KiB, and
 * a 1 KiB sine table at FE:0000. */
int bench_image_example(unsigned kib, struct isp_image **ret);

enum bench_content {
        BENCH_CODE,             /* 8051-like machine code with its tables and strings */
        BENCH_DATA,             /* uniformly random bytes */
};

/* A full image of KIB KiB (1-124) of that content: the application area
 * filled from FF:1000 (offset 0x11000) upwards, then from FE:0000 when
 * KIB > 60; KIB 124 is the whole area. The LJMP at FF:0000 (moved to the
 * entry) counts in the size. `seed` picks the bytes; with `patch_sector`
 * >= 0 that one sector gets the bytes `patch_seed` would give it (an image
 * differing from the seed's in exactly that sector). */
int bench_image_generate(enum bench_content content, unsigned kib, uint64_t seed,
                         int patch_sector, uint64_t patch_seed, struct isp_image **ret);

const char *bench_content_to_string(enum bench_content content);       /* "code", "data" */

/* An image file (HEX or BIN, by name and content). Messages go to stderr. */
int bench_image_load(const char *path, struct isp_image **ret);

/* What a node holds after a complete update with `img`: the image (entry
 * included), 0xFF elsewhere, the ISP area's pattern untouched. */
uint8_t bench_expected_byte(const struct isp_image *img, uint32_t offset);

/* Put `img` into a node's flash as a completed update would have left it. */
void bench_flash_load(uint8_t *flash, const struct isp_image *img);

/* The bytes of `flash` that differ from what `img` leaves: returns how
 * many, and the first of them in *ret_first. */
unsigned bench_flash_diff(const uint8_t *flash, const struct isp_image *img, uint32_t *ret_first);

uint64_t bench_splitmix64(uint64_t *state);
