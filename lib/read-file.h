/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>

/* Read a whole file ("-" = standard input) into a new buffer of at most
 * max_size bytes. Returns 0 or a negative errno (-EFBIG when larger). The
 * buffer is NUL-terminated (not counted in ret_size); caller frees it. */
int read_full_file(const char *path, size_t max_size, char **ret_data, size_t *ret_size);
