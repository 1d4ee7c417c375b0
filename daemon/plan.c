/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The flash plan. See plan.h.
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "isp-crc32.h"
#include "plan.h"

#define SECTOR_OF(offset) ((offset) / ISP_SECTOR_SIZE)
#define ENTRY_SECTOR SECTOR_OF(ISP_ENTRY_OFFSET)

bool plan_is_isp_sector(unsigned sector) {
        return sector >= SECTOR_OF(ISP_AREA_START) && sector < SECTOR_OF(ISP_AREA_END);
}

static bool is_entry_byte(uint32_t offset) {
        return offset >= ISP_ENTRY_OFFSET && offset < ISP_ENTRY_OFFSET + ISP_ENTRY_SIZE;
}

bool plan_sectors_test(const struct plan_sectors *set, unsigned sector) {
        return sector < ISP_SECTORS && (set->map[sector / 8] >> (sector % 8)) & 1;
}

void plan_sectors_add(struct plan_sectors *set, unsigned sector) {
        set->map[sector / 8] |= (uint8_t) (1u << (sector % 8));
}

void plan_sectors_remove(struct plan_sectors *set, unsigned sector) {
        set->map[sector / 8] &= (uint8_t) ~(1u << (sector % 8));
}

void plan_sectors_union(struct plan_sectors *set, const struct plan_sectors *other) {
        for (unsigned i = 0; i < sizeof(set->map); i++)
                set->map[i] |= other->map[i];
}

bool plan_sectors_next_run(const struct plan_sectors *set, unsigned *cursor, unsigned max, struct plan_run *ret) {
        unsigned first, count;

        for (first = *cursor; first < ISP_SECTORS; first++)
                if (plan_sectors_test(set, first))
                        break;
        if (first >= ISP_SECTORS) {
                *cursor = ISP_SECTORS;
                return false;
        }
        /* A run never spans the ISP area: it is not the node's to erase or
         * to check. */
        for (count = 1; first + count < ISP_SECTORS && count < max &&
                        plan_sectors_test(set, first + count) && !plan_is_isp_sector(first + count); count++)
                ;
        *cursor = first + count;
        *ret = (struct plan_run) { .first = (uint16_t) first, .count = (uint16_t) count };
        return true;
}

void plan_erase_sectors(const struct plan *p, struct plan_sectors *ret) {
        *ret = p->image_sectors;
        plan_sectors_remove(ret, ENTRY_SECTOR);
}

/* A byte PROGRAM sends: in the image, not an entry byte (the commit writes
 * those), never in the ISP area. */
static bool byte_to_program(const struct isp_image *img, uint32_t offset) {
        if (offset >= ISP_AREA_START && offset < ISP_AREA_END)
                return false;
        return isp_image_byte_used(img, offset) && !is_entry_byte(offset);
}

/* The PROGRAM frames: up to 8 consecutive image bytes each, starting and
 * ending with a byte that is not 0xFF (erased flash already holds 0xFF;
 * verify still covers those bytes). One pass over the image; fills `ret`
 * when not NULL. Returns the number of chunks. */
static unsigned build_chunks(const struct isp_image *img, struct plan_chunk *ret) {
        unsigned n = 0;
        uint32_t o = 0;

        while (o < ISP_FLASH_SIZE) {
                uint32_t start, last;

                if (o % 8 == 0 && img->used[o / 8] == 0) {
                        o += 8;
                        continue;
                }
                if (!byte_to_program(img, o) || img->flash[o] == 0xFF) {
                        o++;
                        continue;
                }
                start = last = o;
                for (o = start + 1; o < ISP_FLASH_SIZE && o - start < 8 && byte_to_program(img, o); o++)
                        if (img->flash[o] != 0xFF)
                                last = o;
                if (ret)
                        ret[n] = (struct plan_chunk) { .offset = start, .len = (uint8_t) (last - start + 1) };
                n++;
                o = last + 1;
        }
        return n;
}

int plan_init(struct plan *p, const struct isp_image *image) {
        unsigned n;

        *p = (struct plan) { .image = image };

        for (unsigned sec = 0; sec < ISP_SECTORS; sec++) {
                if (plan_is_isp_sector(sec))
                        continue;
                plan_sectors_add(isp_image_sector_used(image, sec) ? &p->image_sectors : &p->blank_sectors, sec);
                plan_sectors_add(&p->app_sectors, sec);
        }

        n = build_chunks(image, NULL);
        if (n > 0) {
                p->chunks = calloc(n, sizeof(*p->chunks));
                if (!p->chunks)
                        return -ENOMEM;
        }
        p->n_chunks = build_chunks(image, p->chunks);
        for (unsigned i = 0; i < p->n_chunks; i++)
                p->program_bytes += p->chunks[i].len;

        for (uint32_t i = 0; i < ISP_FLASH_SIZE / 8; i++)
                if (image->used[i])
                        p->read_bytes += 8;
        return 0;
}

void plan_done(struct plan *p) {
        free(p->chunks);
        p->chunks = NULL;
        p->n_chunks = 0;
}

bool plan_next_read_block(const struct plan *p, uint32_t *cursor, uint32_t *ret_offset) {
        for (uint32_t i = *cursor / 8; i < ISP_FLASH_SIZE / 8; i++)
                if (p->image->used[i] != 0) {
                        *ret_offset = i * 8;
                        *cursor = i * 8 + 8;
                        return true;
                }
        *cursor = ISP_FLASH_SIZE;
        return false;
}

/* What the node must hold before the commit: the image, entry bytes still
 * erased. */
static uint8_t byte_pre_commit(const struct isp_image *img, uint32_t offset) {
        return is_entry_byte(offset) ? 0xFF : img->flash[offset];
}

void plan_read_expected(const struct plan *p, uint32_t offset, uint8_t ret_bytes[static 8], bool ret_mask[static 8]) {
        for (unsigned i = 0; i < 8; i++) {
                ret_mask[i] = isp_image_byte_used(p->image, offset + i) && !is_entry_byte(offset + i);
                ret_bytes[i] = byte_pre_commit(p->image, offset + i);
        }
}

uint32_t plan_expected_crc(const struct plan *p, unsigned first, unsigned count) {
        uint8_t buf[ISP_SECTOR_SIZE];
        uint32_t offset = first * ISP_SECTOR_SIZE, len = count * ISP_SECTOR_SIZE;
        uint32_t crc = 0;

        while (len > 0) {
                uint32_t n = len < sizeof(buf) ? len : sizeof(buf);

                for (uint32_t i = 0; i < n; i++)
                        buf[i] = byte_pre_commit(p->image, offset + i);
                crc = isp_crc32_update(crc, buf, n);
                offset += n;
                len -= n;
        }
        return crc;
}

uint32_t plan_blank_crc(unsigned count) {
        uint8_t buf[ISP_SECTOR_SIZE];
        uint32_t crc = 0;

        memset(buf, 0xFF, sizeof(buf));
        for (unsigned i = 0; i < count; i++)
                crc = isp_crc32_update(crc, buf, sizeof(buf));
        return crc;
}

void plan_commit_request(const struct plan *p, enum plan_commit_step step, struct isp_request *ret) {
        const uint8_t *entry = p->image->entry;

        switch (step) {
        case PLAN_COMMIT_TARGET:
                *ret = (struct isp_request) {
                        .cmd = ISP_CMD_PROGRAM,
                        .u.program = { .offset = ISP_ENTRY_OFFSET + 1, .len = 2, .data = { entry[1], entry[2] } },
                };
                return;
        case PLAN_COMMIT_OPCODE:
                *ret = (struct isp_request) {
                        .cmd = ISP_CMD_PROGRAM,
                        .u.program = { .offset = ISP_ENTRY_OFFSET, .len = 1, .data = { entry[0] } },
                };
                return;
        case PLAN_COMMIT_CHECK:
        case _PLAN_COMMIT_MAX:
                break;
        }
        *ret = (struct isp_request) { .cmd = ISP_CMD_READ, .u.read.offset = ISP_ENTRY_OFFSET };
}

void plan_commit_expected(const struct plan *p, uint8_t ret_bytes[static 8]) {
        for (unsigned i = 0; i < 8; i++)
                ret_bytes[i] = isp_image_node_byte(p->image, ISP_ENTRY_OFFSET + i);
}
