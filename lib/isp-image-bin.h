/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "isp-image.h"

/*
 * Write an image back as a raw binary in the layout docs/protocol.md 10.2
 * reads: when the image has a byte below FF:0000, byte i of the file is at
 * FE:0000 + i (the file is then longer than 64 KiB, the LJMP at file
 * offset 0x10000); otherwise byte i is at FF:i (the LJMP at offset 0).
 * The LJMP goes back to FF:0000, FF:1000-FF:1002 stay 0xFF, every byte the
 * image does not define is 0xFF, and the file ends with the last byte
 * that is not. isp_image_load() of the result gives an image whose node
 * bytes (isp_image_node_byte()) and CRC are those of `img`; bytes of value
 * 0xFF are blank in a BIN, so they are not in its `used` bitmap.
 * Pure code: the bytes are built in memory.
 *
 * Returns 0 with a buffer the caller frees, or -ENOMEM.
 */
int isp_image_write_bin(const struct isp_image *img, uint8_t **ret_data, size_t *ret_len);
