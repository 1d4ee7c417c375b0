/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * What a flash does to a node's memory, worked out once from the image:
 * which sectors hold the image and which it leaves blank, the PROGRAM
 * frames, the READ-verify blocks, the CRCs a node must answer before the
 * commit, and the commit itself (protocol.md 9). Pure: no clock, no I/O;
 * the steps of the engine consume it.
 */

#include <stdbool.h>
#include <stdint.h>

#include "isp-frame.h"
#include "isp-image.h"

/* A set of the flash's 256 sectors (bit n: sector n). */
struct plan_sectors {
        uint8_t map[ISP_SECTORS / 8];
};

/* Consecutive sectors. */
struct plan_run {
        uint16_t first;
        uint16_t count;
};

/* One PROGRAM frame: 1-8 image bytes, first and last not 0xFF. */
struct plan_chunk {
        uint32_t offset;
        uint8_t len;
};

struct plan {
        const struct isp_image *image;          /* borrowed */
        struct plan_sectors image_sectors;      /* application sectors holding image bytes (entry sector too) */
        struct plan_sectors blank_sectors;      /* application sectors the image leaves blank */
        struct plan_sectors app_sectors;        /* both: the whole application area, which verify covers */
        struct plan_chunk *chunks;              /* owned */
        unsigned n_chunks;
        uint64_t program_bytes;                 /* sum of the chunks' lengths */
        uint64_t read_bytes;                    /* 8 per READ-verify block */
};

/* The commit (protocol.md 9, step 4): the entry's address bytes hh ll at
 * FF:1001 first, then the opcode alone at FF:1000 (one byte write turns
 * "invalid" into "valid"), then a READ of FF:1000 to check it. */
enum plan_commit_step {
        PLAN_COMMIT_TARGET,
        PLAN_COMMIT_OPCODE,
        PLAN_COMMIT_CHECK,
        _PLAN_COMMIT_MAX,
};

/* Works out the plan for `image` (borrowed for the plan's lifetime).
 * Returns 0 or -ENOMEM. */
int plan_init(struct plan *p, const struct isp_image *image);
void plan_done(struct plan *p);

bool plan_sectors_test(const struct plan_sectors *set, unsigned sector);
void plan_sectors_add(struct plan_sectors *set, unsigned sector);
void plan_sectors_remove(struct plan_sectors *set, unsigned sector);
void plan_sectors_union(struct plan_sectors *set, const struct plan_sectors *other);
/* The next run of consecutive sectors in `set` at or after *cursor, at most
 * `max` long; advances *cursor past it. Returns false when there is none. */
bool plan_sectors_next_run(const struct plan_sectors *set, unsigned *cursor, unsigned max, struct plan_run *ret);
bool plan_is_isp_sector(unsigned sector);

/* The sectors an erase must cover after the entry sector: the image's, but
 * the entry sector (erased first, on its own). */
void plan_erase_sectors(const struct plan *p, struct plan_sectors *ret);

/* The next 8-byte aligned block holding image bytes at or after *cursor
 * (a byte offset), for READ verify; advances *cursor past it. */
bool plan_next_read_block(const struct plan *p, uint32_t *cursor, uint32_t *ret_offset);
/* What a READ of the block at `offset` must give before the commit, and
 * which of its 8 bytes are checked (image bytes, not entry bytes). */
void plan_read_expected(const struct plan *p, uint32_t offset, uint8_t ret_bytes[static 8], bool ret_mask[static 8]);

/* CRC-32 of a sector run as the node holds it before the commit: the
 * image, 0xFF elsewhere and in the entry bytes. */
uint32_t plan_expected_crc(const struct plan *p, unsigned first, unsigned count);
/* CRC-32 of `count` erased sectors. */
uint32_t plan_blank_crc(unsigned count);

void plan_commit_request(const struct plan *p, enum plan_commit_step step, struct isp_request *ret);
/* What a READ of FF:1000 gives after the commit. */
void plan_commit_expected(const struct plan *p, uint8_t ret_bytes[static 8]);
