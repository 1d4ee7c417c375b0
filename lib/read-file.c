/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "read-file.h"
#include "util.h"

int read_full_fd(int fd, void *buf, size_t len, size_t *ret_len) {
        size_t done = 0;

        while (done < len) {
                ssize_t n = read(fd, (char *) buf + done, len - done);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                done += (size_t) n;
        }
        *ret_len = done;
        return 0;
}

int write_full_fd(int fd, const void *buf, size_t len) {
        const char *p = buf;

        while (len > 0) {
                ssize_t n = write(fd, p, len);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

int read_full_file(const char *path, size_t max_size, char **ret_data, size_t *ret_size) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        size_t size = 0, allocated = 0;
        int in;

        if (strcmp(path, "-") == 0)
                in = STDIN_FILENO;
        else {
                fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (fd < 0)
                        return -errno;
                in = fd;
        }

        for (;;) {
                size_t want = allocated ? allocated * 2 : 65536, n;
                char *p;
                int r;

                if (allocated > max_size + 1)
                        return -EFBIG;
                p = realloc(buf, want + 1);
                if (!p)
                        return -ENOMEM;
                buf = p;
                r = read_full_fd(in, buf + size, want - size, &n);
                if (r < 0)
                        return r;
                size += n;
                allocated = want;
                if (size > max_size)
                        return -EFBIG;
                if (size < allocated)
                        break;          /* end of file */
        }

        buf[size] = '\0';
        *ret_data = TAKE_PTR(buf);
        *ret_size = size;
        return 0;
}
