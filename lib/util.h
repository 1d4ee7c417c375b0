/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The few helpers every program here uses: cleanup attributes in the
 * spirit of systemd's, which libsystemd does not export. */

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _fallthrough_ __attribute__((fallthrough))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

/* Hand a pointer over: returns it and leaves NULL behind. */
#define TAKE_PTR(p) ({                          \
        __typeof__(p) _ptr_ = (p);              \
        (p) = NULL;                             \
        _ptr_;                                  \
})

#define TAKE_FD(fd) ({                          \
        int _fd_ = (fd);                        \
        (fd) = -EBADF;                          \
        _fd_;                                   \
})

static inline void freep(void *p) {
        free(*(void **) p);
}

static inline void closep(int *fd) {
        if (*fd >= 0) {
                int saved = errno;
                (void) close(*fd);
                errno = saved;
        }
}

static inline void fclosep(FILE **f) {
        if (*f)
                (void) fclose(*f);
}

/* free() that returns NULL, so that a field is reset in one line. */
static inline void *mfree(void *p) {
        free(p);
        return NULL;
}

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)

static inline const char *strna(const char *s) {
        return s ? s : "n/a";
}

static inline const char *strempty(const char *s) {
        return s ? s : "";
}

/* The clock `clock` now, in µs. */
static inline uint64_t now_usec(clockid_t clock) {
        struct timespec ts;

        clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000;
}

/* A network interface name as the kernel's dev_valid_name() takes it:
 * 1-15 characters (IFNAMSIZ is 16 with the NUL), not "." or "..", no
 * '/', ':', white space or control characters. */
static inline bool ifname_is_valid(const char *s) {
        if (!s || s[0] == '\0' || strnlen(s, 16) >= 16 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
                return false;
        for (; *s; s++)
                if (*s == '/' || *s == ':' || !isgraph((unsigned char) *s))
                        return false;
        return true;
}
