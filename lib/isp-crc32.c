/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "isp-crc32.h"

/* Half-byte table: small enough to read at a glance and to need no
 * run-time initialisation, and fast enough for 128 KiB images. */
static const uint32_t crc_nibble[16] = {
        0x00000000, 0x1DB71064, 0x3B6E20C8, 0x26D930AC,
        0x76DC4190, 0x6B6B51F4, 0x4DB26158, 0x5005713C,
        0xEDB88320, 0xF00F9344, 0xD6D6A3E8, 0xCB61B38C,
        0x9B64C2B0, 0x86D3D2D4, 0xA00AE278, 0xBDBDF21C,
};

uint32_t isp_crc32_update(uint32_t crc, const void *buf, size_t len) {
        const uint8_t *p = buf;

        crc = ~crc;
        while (len--) {
                crc ^= *p++;
                crc = crc_nibble[crc & 0x0F] ^ (crc >> 4);
                crc = crc_nibble[crc & 0x0F] ^ (crc >> 4);
        }
        return ~crc;
}
