/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <string.h>

#include "sim-util.h"

void log_msg(const char *format, ...) {
        char line[1024];
        va_list ap;

        va_start(ap, format);
        (void) vsnprintf(line, sizeof(line), format, ap);
        va_end(ap);
        /* one write per line, so lines do not interleave with a test's output */
        fprintf(stderr, "stcisp-sim: %s\n", line);
}

int log_error_errno(int err, const char *format, ...) {
        char line[1024];
        va_list ap;

        if (err < 0)
                err = -err;
        va_start(ap, format);
        (void) vsnprintf(line, sizeof(line), format, ap);
        va_end(ap);
        fprintf(stderr, "stcisp-sim: %s: %s\n", line, strerror(err));
        return -err;
}
