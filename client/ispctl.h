/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

struct isp_image;

/* Exit statuses, documented in ispctl(1); scripts rely on them. */
enum {
        ISPCTL_EXIT_SUCCESS       = 0,
        ISPCTL_EXIT_INVALID_IMAGE = 1,  /* also: image file unreadable; read: FILE not writable */
        ISPCTL_EXIT_USAGE         = 2,
        ISPCTL_EXIT_JOB_FAILED    = 3,  /* failed or cancelled */
        ISPCTL_EXIT_NODE_NOT_FOUND = 4,
        ISPCTL_EXIT_ACCESS_DENIED = 5,
        ISPCTL_EXIT_UNREACHABLE   = 6,
        ISPCTL_EXIT_DAEMON_ERROR  = 7,
        ISPCTL_EXIT_DIFFERS       = 8,  /* verify: a node differs from the image, none failed */
        ISPCTL_EXIT_TIMEOUT       = 9,  /* --timeout expired: the jobs go on in the daemon */
        /* interrupted while following: 128 + the signal, as a shell says it */
        ISPCTL_EXIT_SIGINT        = 128 + 2,
        ISPCTL_EXIT_SIGTERM       = 128 + 15,
};

struct ispctl_args {
        bool json;
        bool json_pretty;       /* --json=pretty */
        bool no_legend;         /* --no-legend: tables without header and footer */
        bool ask_password;      /* --ask-password: ALLOW_INTERACTIVE_AUTHORIZATION on calls */
        bool quiet;             /* -q: no informational lines */
        bool no_block;
        bool no_reboot;
        bool no_verify;
        bool full;
        bool force;
        bool dry_run;
        bool require_boot;
        unsigned canary;        /* --canary, 0 = none */
        bool all;
        const char *format;     /* --format, NULL = from the file */
        const char *host;       /* -H */
        const char *address;    /* --address */
        const char *timeout;    /* --timeout as given, NULL = none */
        uint64_t deadline_usec; /* --timeout: when following stops, CLOCK_MONOTONIC; 0 = never */
};

int verb_inspect(int argc, char *argv[], const struct ispctl_args *args);
int verb_flash(int argc, char *argv[], const struct ispctl_args *args);
int verb_verify(int argc, char *argv[], const struct ispctl_args *args);
int verb_read(int argc, char *argv[], const struct ispctl_args *args);
int verb_reboot(int argc, char *argv[], const struct ispctl_args *args);
int verb_scan(int argc, char *argv[], const struct ispctl_args *args);
int verb_status(int argc, char *argv[], const struct ispctl_args *args);
int verb_list(int argc, char *argv[], const struct ispctl_args *args);
int verb_jobs(int argc, char *argv[], const struct ispctl_args *args);
int verb_cancel(int argc, char *argv[], const struct ispctl_args *args);
int verb_wait(int argc, char *argv[], const struct ispctl_args *args);
int verb_monitor(int argc, char *argv[], const struct ispctl_args *args);

/* Print an error: the message on stderr; with --json also an object
 * {"error": message, ...} on stdout. With with_line, "file" and "line"
 * (null where line <= 0) are added. */
void ispctl_error(const struct ispctl_args *args, const char *file, int line, bool with_line,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Load FILE as an image, reporting errors the ispctl way. Returns 0, or an
 * exit status. ret_data/ret_size (optional) get the raw file. */
int ispctl_load_image(const char *path, const struct ispctl_args *args, struct isp_image **ret,
                      char **ret_data, size_t *ret_size);

/* read: the format FILE is written in: --format, else BIN for the
 * extensions .bin and .img, else HEX. Returns it, or -EINVAL (reported). */
int ispctl_save_format(const char *path, const struct ispctl_args *args);

/* read: check, before the daemon is asked, that FILE can be written (its
 * directory takes a new file; FILE is no directory). Returns 0 or an exit
 * status (reported). */
int ispctl_save_check(const char *path, const struct ispctl_args *args);

/* read: load `hex` (the node image as Job.GetImage() gives it) into
 * ret_img and write it to FILE in `format`, atomically: FILE is replaced
 * whole or not at all. `what` names the node in messages. Returns 0 or an
 * exit status (reported). */
int ispctl_save_image(const char *path, int format, const char *hex, size_t len, const char *what,
                      const struct ispctl_args *args, struct isp_image *ret_img);

/* "30", "30s", "500ms", "2min", "1h": a positive time span in µs, the
 * way systemd writes them (one number, one unit). Returns 0 or -EINVAL. */
int ispctl_parse_timespan(const char *s, uint64_t *ret_usec);

/* Connect to the bus the options name. Returns 0 or an exit status. */
int ispctl_connect(const struct ispctl_args *args, sd_bus **ret);

/* Report a failed call: a message a person can act on, the exit status
 * that fits the D-Bus error. */
int ispctl_bus_error(const struct ispctl_args *args, const char *what, const sd_bus_error *error, int r);
