/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>

struct isp_image;

/* Exit statuses, documented in ispctl(1); scripts rely on them. */
enum {
        ISPCTL_EXIT_SUCCESS       = 0,
        ISPCTL_EXIT_INVALID_IMAGE = 1,  /* also: image file unreadable */
        ISPCTL_EXIT_USAGE         = 2,
};

struct ispctl_args {
        bool json;
        const char *format;     /* --format, NULL = from the file */
};

int verb_inspect(int argc, char *argv[], const struct ispctl_args *args);

/* Print an error: the message on stderr; with --json also an object
 * {"error": message, ...extra} on stdout. `line` < 0 prints "line": null
 * when with_line is set. */
void ispctl_error(const struct ispctl_args *args, const char *file, int line, bool with_line,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
int ispctl_load_image(const char *path, const struct ispctl_args *args, struct isp_image **ret);
