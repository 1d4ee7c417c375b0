/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "isp-node-ram.h"
#include "sim-flash-file.h"
#include "read-file.h"
#include "sim-util.h"

int sim_flash_file_load(const char *path, uint8_t *flash) {
        _cleanup_(closep) int fd = -1;
        struct stat st;
        size_t len = 0;
        int r;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                if (errno != ENOENT)
                        return log_error_errno(errno, "%s: cannot open flash file", path);

                memset(flash, 0xFF, ISP_NODE_FLASH_SIZE);
                isp_node_fill_isp_pattern(flash);
                r = sim_flash_file_save(path, flash);
                return r < 0 ? r : 1;
        }

        if (fstat(fd, &st) < 0)
                return log_error_errno(errno, "%s: cannot stat flash file", path);
        if (!S_ISREG(st.st_mode) || st.st_size != (off_t) ISP_NODE_FLASH_SIZE) {
                log_msg("%s: %lld bytes, a flash file must be a regular file of exactly %lu bytes",
                        path, (long long) st.st_size, (unsigned long) ISP_NODE_FLASH_SIZE);
                return -EBADMSG;
        }

        r = read_full_fd(fd, flash, ISP_NODE_FLASH_SIZE, &len);
        if (r < 0)
                return log_error_errno(r, "%s: cannot read flash file", path);
        if (len != ISP_NODE_FLASH_SIZE) {
                log_msg("%s: short read (%zu of %lu bytes)", path, len, (unsigned long) ISP_NODE_FLASH_SIZE);
                return -EBADMSG;
        }
        return 0;
}

int sim_flash_file_save(const char *path, const uint8_t *flash) {
        _cleanup_(closep) int fd = -1;
        char tmp[PATH_MAX];
        int r;

        if (snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path) >= (int) sizeof(tmp)) {
                log_msg("%s: path too long", path);
                return -ENAMETOOLONG;
        }
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return log_error_errno(errno, "%s: cannot create temporary file", tmp);

        r = write_full_fd(fd, flash, ISP_NODE_FLASH_SIZE);
        if (r >= 0 && fchmod(fd, 0644) < 0)
                r = -errno;
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0) {
                (void) unlink(tmp);
                return log_error_errno(r, "%s: cannot write flash file", path);
        }
        return 0;
}

int sim_flash_dir_prepare(const char *dir) {
        struct stat st;

        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return log_error_errno(errno, "%s: cannot create flash directory", dir);
        if (stat(dir, &st) < 0)
                return log_error_errno(errno, "%s: cannot stat flash directory", dir);
        if (!S_ISDIR(st.st_mode)) {
                log_msg("%s: not a directory", dir);
                return -ENOTDIR;
        }
        return 0;
}
