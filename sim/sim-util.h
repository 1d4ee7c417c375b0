/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* The cleanup helpers are the project's (lib/util.h); these are the
 * simulator's own: nanosecond units and its log functions. */
#include "util.h"

#define NSEC_PER_USEC UINT64_C(1000)
#define NSEC_PER_MSEC UINT64_C(1000000)
#define NSEC_PER_SEC  UINT64_C(1000000000)

/* Messages go to stderr, prefixed with the program name. */
void log_msg(const char *format, ...) _printf_(1, 2);

/* Log "message: strerror(err)" and return -|err|, for "return log_error_errno(r, ...)". */
int log_error_errno(int err, const char *format, ...) _printf_(2, 3);
