/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>
#include <stdint.h>

/*
 * CRC-32 as zlib, IEEE 802.3 and the ISP's CRC command compute it:
 * reflected polynomial 0x04C11DB7, initial value and final xor 0xFFFFFFFF.
 *
 * isp_crc32_update() continues a running CRC: start with crc = 0 and feed
 * the pieces in order, exactly like zlib's crc32(crc, buf, len).
 */
uint32_t isp_crc32_update(uint32_t crc, const void *buf, size_t len);

static inline uint32_t isp_crc32(const void *buf, size_t len) {
        return isp_crc32_update(0, buf, len);
}
