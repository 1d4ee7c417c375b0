/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "read-file.h"
#include "store.h"
#include "util.h"

int write_file_atomic(int dir_fd, const char *name, const void *data, size_t size) {
        _cleanup_close_ int fd = -EBADF;
        char tmp[256];
        int r;

        if ((size_t) snprintf(tmp, sizeof(tmp), ".#%s.%d", name, (int) getpid()) >= sizeof(tmp))
                return -ENAMETOOLONG;

        fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;

        r = write_full_fd(fd, data, size);
        if (r < 0) {
                (void) unlinkat(dir_fd, tmp, 0);
                return r;
        }
        if (fsync(fd) < 0 || renameat(dir_fd, tmp, dir_fd, name) < 0) {
                r = -errno;
                (void) unlinkat(dir_fd, tmp, 0);
                return r;
        }
        return fsync(dir_fd) < 0 ? -errno : 0;
}

int read_file_at(int dir_fd, const char *name, size_t max, char **ret, size_t *ret_size) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        struct stat st;
        size_t done = 0;
        int r;

        fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        if ((uint64_t) st.st_size > max)
                return -EFBIG;

        buf = malloc((size_t) st.st_size + 1);
        if (!buf)
                return -ENOMEM;
        r = read_full_fd(fd, buf, (size_t) st.st_size, &done);
        if (r < 0)
                return r;
        buf[done] = 0;
        *ret = TAKE_PTR(buf);
        if (ret_size)
                *ret_size = done;
        return 0;
}

int unlink_durable(int dir_fd, const char *name) {
        if (unlinkat(dir_fd, name, 0) < 0 && errno != ENOENT)
                return -errno;
        return fsync(dir_fd) < 0 ? -errno : 0;
}

int quarantine_file(int dir_fd, const char *dir_path, const char *name, const char *why) {
        long long now = (long long) time(NULL);
        char aside[256];

        /* Never over an earlier one set aside in the same second: that is
         * evidence too. */
        for (unsigned n = 0; n < 100; n++) {
                int k = n == 0 ? snprintf(aside, sizeof(aside), "%s.damaged-%lld", name, now)
                               : snprintf(aside, sizeof(aside), "%s.damaged-%lld.%u", name, now, n);

                if ((size_t) k >= sizeof(aside))
                        return -ENAMETOOLONG;
                if (renameat2(dir_fd, name, dir_fd, aside, RENAME_NOREPLACE) >= 0) {
                        (void) fsync(dir_fd);
                        log_warning("%s/%s is damaged (%s): set aside as %s/%s", dir_path, name, why, dir_path, aside);
                        return 0;
                }
                if (errno != EEXIST)
                        break;
        }
        return log_warning_errno(-errno, "%s/%s is damaged (%s) and cannot be set aside: %m", dir_path, name, why);
}
