/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Logging to stderr with sd-daemon priority prefixes, which journald turns
 * into priorities when we run under systemd. log_*_errno() return the
 * negative errno they were given, so "return log_error_errno(r, ...)"
 * logs and fails in one line; "%m" in the format prints that error.
 */

#include <errno.h>
#include <stdint.h>
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

/* Fields for the journal, to filter on (journalctl -u stcispd NODE=node3);
 * stcispd(8) documents them. NULL or 0: the field is left out. */
struct log_fields {
        uint32_t job_id;                /* JOB_ID= */
        const char *node;               /* NODE=: canonical, "node3", "can1/node3" */
        const char *interface;          /* INTERFACE= */
        const char *phase;              /* PHASE= */
        const char *result;             /* RESULT=: succeeded, failed, cancelled */
        const char *message_id;         /* MESSAGE_ID=, one of LOG_MESSAGE_* */
};

/* The catalogue's MESSAGE_IDs (journalctl MESSAGE_ID=...). */
#define LOG_MESSAGE_JOB_STARTED  "6516b44de1154374b2ce198fc6c2d153"
#define LOG_MESSAGE_JOB_FINISHED "ad0c8b19d1f447cbbde521b4da30bfdc"
#define LOG_MESSAGE_JOB_FAILED   "e5c4405113ef44ecba39ac21614baecb"
#define LOG_MESSAGE_NODE_DONE    "724bfb58090c4c0a83a1b84b8827815a"

/* Like log_internal(), with fields: sent natively to the journal when
 * stderr is the journal (JOURNAL_STREAM names it), else a plain line on
 * stderr as any other message. */
int log_fields_internal(const char *prefix, const struct log_fields *fields, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

#define log_job_info(f, ...)    (void) log_fields_internal(SD_INFO, (f), __VA_ARGS__)
#define log_job_notice(f, ...)  (void) log_fields_internal(SD_NOTICE, (f), __VA_ARGS__)
#define log_job_warning(f, ...) (void) log_fields_internal(SD_WARNING, (f), __VA_ARGS__)
