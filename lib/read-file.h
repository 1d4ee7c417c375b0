/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>

/* Read until len bytes or end of file, retrying on EINTR. Returns 0 or a
 * negative errno; ret_len gets the bytes read. */
int read_full_fd(int fd, void *buf, size_t len, size_t *ret_len);

/* Write all len bytes, retrying on EINTR and short writes. */
int write_full_fd(int fd, const void *buf, size_t len);

/* Read a whole file ("-" = standard input) into a new buffer of at most
 * max_size bytes. Returns 0 or a negative errno (-EFBIG when larger). The
 * buffer is NUL-terminated (not counted in ret_size); caller frees it. */
int read_full_file(const char *path, size_t max_size, char **ret_data, size_t *ret_size);
