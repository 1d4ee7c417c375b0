/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdint.h>

/*
 * A node's flash as a raw 128 KiB file: byte i is flash offset i, so
 * offset 0 is FE:0000 and offset 0x11000 is FF:1000.
 */

/* Read path into flash[ISP_NODE_FLASH_SIZE]. If it does not exist, fill
 * flash erased with the ISP area patterned (isp_node_fill_isp_pattern())
 * and create the file. Returns 1 if created, 0 if read, or a negative
 * errno after logging why. */
int sim_flash_file_load(const char *path, uint8_t *flash);

/* Write flash to path atomically: a temporary file in the same
 * directory, fsync'd, renamed over it. Returns 0 or a negative errno
 * after logging why. */
int sim_flash_file_save(const char *path, const uint8_t *flash);

/* Create dir (one level) if it is missing. Returns 0 or a negative errno
 * after logging why. */
int sim_flash_dir_prepare(const char *dir);
