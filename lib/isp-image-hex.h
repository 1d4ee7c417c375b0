/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>

#include "isp-image.h"

/*
 * Write an image back as Intel HEX: exactly the bytes the node will hold,
 * so that isp_image_load() of the text gives the same image (the same
 * flash picture, used bitmap and entry). The LJMP goes to FF:0000, where
 * the loader expects it; data is at logical addresses, 16 bytes a record.
 * Pure code: the text is built in memory.
 *
 * Returns 0 with a NUL-terminated text the caller frees, or -ENOMEM.
 */
int isp_image_write_hex(const struct isp_image *img, char **ret_text, size_t *ret_len);
