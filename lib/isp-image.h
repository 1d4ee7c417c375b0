/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The image loader: turns an Intel HEX or raw BIN file (already in memory)
 * into exactly the bytes a node's flash must hold, following the image
 * rules of docs/protocol.md. Pure code: the caller reads the file.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "isp-frame.h"

enum isp_image_format {
        ISP_IMAGE_AUTO = 0,
        ISP_IMAGE_HEX,
        ISP_IMAGE_BIN,
};

struct isp_image {
        enum isp_image_format format;
        /* The flash picture, offsets 0x00000-0x1FFFF; 0xFF where nothing is
         * programmed. The entry bytes are not in it: they are held apart in
         * `entry` because the commit rule writes them last. */
        uint8_t flash[ISP_FLASH_SIZE];
        uint8_t used[ISP_FLASH_SIZE / 8];       /* bitmap: bytes to program */
        uint8_t entry[ISP_ENTRY_SIZE];          /* 02 hh ll, for FF:1000 */
        uint16_t entry_target;
        size_t data_bytes;                      /* data bytes in the file, LJMP included */
};

#define ISP_IMAGE_ERROR_MAX 256

struct isp_image_error {
        unsigned line;                          /* HEX line number, 0 where none applies */
        char message[ISP_IMAGE_ERROR_MAX];      /* without file name or line */
};

/* Load an image. Returns 0, or -EINVAL with `ret_error` filled in. On
 * failure `img` holds no usable image. */
int isp_image_load(struct isp_image *img, const void *buf, size_t len,
                   enum isp_image_format format, struct isp_image_error *ret_error);

/* The format a file should be read as: from the file name's extension
 * (.hex .ihx .ihex .h86 / .bin .img), else from the content (a first
 * non-blank character ':' followed by hex digits means HEX). */
enum isp_image_format isp_image_detect_format(const char *filename, const void *buf, size_t len);

const char *isp_image_format_to_string(enum isp_image_format format);
/* "hex"/"bin" → format; ISP_IMAGE_AUTO for "auto" or NULL; -EINVAL otherwise. */
int isp_image_format_from_string(const char *s);

static inline bool isp_image_byte_used(const struct isp_image *img, uint32_t offset) {
        return offset < ISP_FLASH_SIZE && (img->used[offset / 8] >> (offset % 8)) & 1;
}

/* Whether the node will have sector N programmed (the entry sector always). */
bool isp_image_sector_used(const struct isp_image *img, unsigned sector);
unsigned isp_image_sector_count(const struct isp_image *img);

/* Byte `offset` exactly as the node will hold it after the update: the
 * entry bytes at FF:1000, 0xFF where nothing is programmed. */
uint8_t isp_image_node_byte(const struct isp_image *img, uint32_t offset);

/* CRC-32 of [offset, offset+len) as the node will hold it. */
uint32_t isp_image_crc32(const struct isp_image *img, uint32_t offset, uint32_t len);

/* CRC-32 of the 124 KiB application area: offsets 0x00000-0x0FFFF followed
 * by 0x11000-0x1FFFF. */
uint32_t isp_image_app_crc32(const struct isp_image *img);

/* Find the first run of programmed bytes at or after `from` (the entry
 * bytes included). Returns false when there is none. */
bool isp_image_next_range(const struct isp_image *img, uint32_t from,
                          uint32_t *ret_begin, uint32_t *ret_end);
