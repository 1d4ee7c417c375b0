/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* read: the node image the daemon read, written to the user's FILE as
 * Intel HEX or BIN, atomically: a temporary file in the same directory,
 * renamed over FILE once it is complete, so FILE is never half written. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "isp-image-bin.h"
#include "ispctl.h"
#include "read-file.h"
#include "util.h"

int ispctl_save_format(const char *path, const struct ispctl_args *args) {
        int format = isp_image_format_from_string(args->format);

        if (format < 0) {
                ispctl_error(args, NULL, 0, false, "unknown image format '%s' (expected hex or bin)", args->format);
                return -EINVAL;
        }
        if (format != ISP_IMAGE_AUTO)
                return format;
        /* the loader's extensions; anything else is written as HEX, the
         * form the daemon gives */
        return isp_image_detect_format(path, ":00", 3);
}

/* A new temporary file beside `path`: ".#NAME.XXXXXX" in its directory.
 * Returns the fd, or a negative errno; ret_tmp gets its name. */
static int open_temporary(const char *path, char **ret_tmp) {
        _cleanup_free_ char *dir_copy = strdup(path), *base_copy = strdup(path);
        char *tmp;
        int fd;

        if (!dir_copy || !base_copy)
                return -ENOMEM;
        if (asprintf(&tmp, "%s/.#%s.XXXXXX", dirname(dir_copy), basename(base_copy)) < 0)
                return -ENOMEM;
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0) {
                int r = -errno;
                free(tmp);
                return r;
        }
        *ret_tmp = tmp;
        return fd;
}

/* FILE must be a file, not a directory; "-" would be standard output,
 * which carries the progress lines. */
static int check_target(const char *path, const struct ispctl_args *args) {
        struct stat st;

        if (strcmp(path, "-") == 0) {
                ispctl_error(args, path, -1, false, "read: FILE cannot be standard output ('-'): name a file");
                return ISPCTL_EXIT_USAGE;
        }
        if (stat(path, &st) >= 0 && S_ISDIR(st.st_mode)) {
                ispctl_error(args, path, -1, false, "%s: is a directory: name the file to write", path);
                return ISPCTL_EXIT_INVALID_IMAGE;
        }
        return 0;
}

int ispctl_save_check(const char *path, const struct ispctl_args *args) {
        _cleanup_free_ char *tmp = NULL;
        int fd, r;

        r = check_target(path, args);
        if (r != 0)
                return r;
        fd = open_temporary(path, &tmp);
        if (fd < 0) {
                ispctl_error(args, path, -1, false, "%s: cannot write: %s", path, strerror(-fd));
                return ISPCTL_EXIT_INVALID_IMAGE;
        }
        (void) unlink(tmp);
        (void) close(fd);
        return 0;
}

/* Write the whole file under a temporary name, then rename it over
 * `path`. Signals that end ispctl wait until the temporary file is
 * either renamed or removed. */
static int write_atomic(const char *path, const void *data, size_t size) {
        _cleanup_free_ char *tmp = NULL;
        _cleanup_free_ char *dir_copy = strdup(path);
        sigset_t block, saved;
        mode_t mask;
        int fd, r = 0;

        if (!dir_copy)
                return -ENOMEM;
        sigemptyset(&block);
        sigaddset(&block, SIGINT);
        sigaddset(&block, SIGTERM);
        sigaddset(&block, SIGHUP);
        sigaddset(&block, SIGPIPE);
        sigprocmask(SIG_BLOCK, &block, &saved);

        fd = open_temporary(path, &tmp);
        if (fd < 0) {
                sigprocmask(SIG_SETMASK, &saved, NULL);
                return fd;
        }
        /* mkostemp() makes it 0600: give it the mode a new file gets */
        mask = umask(0);
        umask(mask);
        if (fchmod(fd, 0666 & ~mask) < 0)
                r = -errno;
        if (r >= 0)
                r = write_full_fd(fd, data, size);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (close(fd) < 0 && r >= 0)
                r = -errno;
        if (r >= 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                (void) unlink(tmp);
        else {
                /* the rename itself made durable */
                _cleanup_close_ int dir_fd = open(dirname(dir_copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);

                if (dir_fd >= 0)
                        (void) fsync(dir_fd);
        }
        sigprocmask(SIG_SETMASK, &saved, NULL);
        return r;
}

int ispctl_save_image(const char *path, int format, const char *hex, size_t len,
                      const char *what, const struct ispctl_args *args, struct isp_image *ret_img) {
        _cleanup_free_ uint8_t *bin = NULL;
        struct isp_image_error error;
        const void *data = hex;
        size_t size = len;
        int r;

        r = isp_image_load(ret_img, hex, len, ISP_IMAGE_HEX, &error);
        if (r < 0) {
                if (error.line > 0)
                        ispctl_error(args, NULL, 0, false, "%s: the image stcispd read does not load: line %u: %s", what,
                                     error.line, error.message);
                else
                        ispctl_error(args, NULL, 0, false, "%s: the image stcispd read does not load: %s", what,
                                     error.message);
                return ISPCTL_EXIT_DAEMON_ERROR;
        }
        if (format == ISP_IMAGE_BIN) {
                r = isp_image_write_bin(ret_img, &bin, &size);
                if (r < 0) {
                        ispctl_error(args, path, -1, false, "%s: cannot write: %s", path, strerror(-r));
                        return ISPCTL_EXIT_INVALID_IMAGE;
                }
                data = bin;
        }

        r = check_target(path, args);
        if (r != 0)
                return r;
        r = write_atomic(path, data, size);
        if (r < 0) {
                ispctl_error(args, path, -1, false, "%s: cannot write: %s", path, strerror(-r));
                return ISPCTL_EXIT_INVALID_IMAGE;
        }
        return 0;
}
