/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <stdlib.h>

#include "log.h"

int log_max_level = 6;

/* "<N>" priority prefixes only where journald reads our stderr (it sets
 * JOURNAL_STREAM for services); on a terminal they are noise. */
static int use_prefix(void) {
        static int cached = -1;

        if (cached < 0)
                cached = getenv("JOURNAL_STREAM") != NULL;
        return cached;
}

int log_internal(const char *prefix, int error, const char *fmt, ...) {
        int saved = errno;
        va_list ap;

        /* prefix is "<N>" */
        if (prefix[1] - '0' <= log_max_level) {
                /* %m prints the error we were given, not whatever errno is now. */
                errno = error < 0 ? -error : error;
                if (use_prefix())
                        fputs(prefix, stderr);
                va_start(ap, fmt);
                vfprintf(stderr, fmt, ap);
                va_end(ap);
                fputc('\n', stderr);
        }
        errno = saved;
        return error < 0 ? error : -error;
}
