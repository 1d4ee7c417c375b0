/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The few helpers every program here uses: cleanup attributes in the
 * spirit of systemd's, which libsystemd does not export. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
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

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)

static inline const char *strna(const char *s) {
        return s ? s : "n/a";
}

static inline const char *strempty(const char *s) {
        return s ? s : "";
}
