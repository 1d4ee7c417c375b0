/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stddef.h>

/* Replace dir/name atomically and durably: a temporary file in the same
 * directory, written and fsync()ed, renamed over the old one, and the
 * directory fsync()ed, so a crash leaves either the old or the new file,
 * never a torn one. Returns 0 or a negative errno. */
int write_file_atomic(int dir_fd, const char *name, const void *data, size_t size);

/* Read dir/name whole (at most max bytes), NUL-terminated. */
int read_file_at(int dir_fd, const char *name, size_t max, char **ret, size_t *ret_size);

/* Remove dir/name; a missing file is fine. The directory is fsync()ed. */
int unlink_durable(int dir_fd, const char *name);

/* Set a damaged dir/name aside as "name.damaged-<unix time>", so that
 * nothing is silently dropped and the daemon starts; logs a warning that
 * names both files (`dir_path` is how messages call dir_fd) and `why`.
 * Returns 0 or a negative errno. */
int quarantine_file(int dir_fd, const char *dir_path, const char *name, const char *why);
