/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "isp-image-bin.h"

/* Whether the byte at `offset` must be in the file: a BIN has no way to
 * say "programmed 0xFF", and needs no byte to say "blank". */
static bool byte_in_file(const struct isp_image *img, uint32_t offset) {
        return isp_image_byte_used(img, offset) && img->flash[offset] != 0xFF;
}

int isp_image_write_bin(const struct isp_image *img, uint8_t **ret_data, size_t *ret_len) {
        uint32_t start = ISP_AREA_START, end = ISP_AREA_START + ISP_ENTRY_SIZE;
        uint8_t *data;

        for (uint32_t off = 0; off < ISP_FLASH_SIZE; off++) {
                if (!byte_in_file(img, off))
                        continue;
                if (off < ISP_AREA_START)
                        start = 0;
                if (off >= end)
                        end = off + 1;
        }

        /* With start 0 the file is at least 0x10003 bytes long, so a reader
         * takes it for the >64 KiB form, as it must. */
        data = malloc(end - start);
        if (!data)
                return -ENOMEM;
        memset(data, 0xFF, end - start);
        for (uint32_t off = start; off < end; off++)
                if (byte_in_file(img, off))
                        data[off - start] = img->flash[off];
        memcpy(data + (ISP_AREA_START - start), img->entry, ISP_ENTRY_SIZE);

        *ret_data = data;
        *ret_len = end - start;
        return 0;
}
