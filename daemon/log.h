/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Logging to stderr with sd-daemon priority prefixes, which journald turns
 * into priorities when we run under systemd. log_*_errno() return the
 * negative errno they were given, so "return log_error_errno(r, ...)"
 * logs and fails in one line; "%m" in the format prints that error.
 */

#include <errno.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

int log_internal(const char *prefix, int error, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_debug(...)   (void) log_internal(SD_DEBUG, 0, __VA_ARGS__)
#define log_info(...)    (void) log_internal(SD_INFO, 0, __VA_ARGS__)
#define log_notice(...)  (void) log_internal(SD_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) (void) log_internal(SD_WARNING, 0, __VA_ARGS__)
#define log_error(...)   (void) log_internal(SD_ERR, 0, __VA_ARGS__)
#define log_error_errno(error, ...)   log_internal(SD_ERR, (error), __VA_ARGS__)
#define log_warning_errno(error, ...) log_internal(SD_WARNING, (error), __VA_ARGS__)

extern int log_max_level;       /* 7 = debug; default 6 = info */
