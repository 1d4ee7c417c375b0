/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * stcispd's configuration: /etc/stcispd/stcispd.conf, read with inih,
 * then overridden by command-line options. See stcispd.conf(5).
 */

#include <stdbool.h>
#include <stdint.h>

#include "session.h"

#define CONFIG_DEFAULT_PATH      "/etc/stcispd/stcispd.conf"
#define CONFIG_DEFAULT_INTERFACE "can0"
#define CONFIG_DEFAULT_STATE_DIR "/var/lib/stcispd"
#define CONFIG_DEFAULT_GROUP     "stcisp"
#define CONFIG_DEFAULT_HISTORY   100
#define CONFIG_DEFAULT_MAX_ATTEMPTS 3
#define CONFIG_DEFAULT_BOOT_TIMEOUT_MS 5000  /* [Protocol] BootTimeout=: verified boot after REBOOT */
#define CONFIG_LINES_MAX         16

/* [Nodes] name = id, name = legacy or name = uid:XXXXXXXX. */
struct config_node_name {
        char *name;             /* e.g. "pump-controller" */
        uint8_t node;           /* 0 = legacy, 1-254; 0 and unused when by_uid */
        bool by_uid;            /* names one board whatever its id and line */
        uint8_t uid[4];         /* by_uid: the first 4 bytes of its UID, as INFO and IDENTIFY report them */
};

/* [Groups] name = targets: several nodes under one name. The members are
 * kept as written; config_load() has checked that each names one node
 * (a [Nodes] name, nodeN or N, optionally after IF/) and that none is the
 * legacy node, "all" or another group. */
struct config_group {
        char *name;
        char **members;
        unsigned n_members;
};

/* [Bus] Bitrate.IF= and RestartMs.IF=: one interface's own values. */
struct config_override {
        char *interface;
        bool has_bitrate, has_restart_ms;
        uint32_t bitrate, restart_ms;
};

/* One CAN interface the daemon owns, with the values that apply to it. */
struct config_line {
        char *interface;
        uint32_t bitrate;       /* 0 = leave the interface as it is */
        uint32_t restart_ms;    /* 0 = leave as it is */
};

struct config {
        char *interface;        /* [Bus] Interface=: one or more names, separated by single spaces */
        uint32_t bitrate;       /* [Bus] Bitrate=, 0 = leave the interface as it is */
        uint32_t restart_ms;    /* [Bus] RestartMs=, 0 = leave as it is */
        struct config_override *overrides;      /* [Bus] Bitrate.IF= RestartMs.IF= */
        unsigned n_overrides;
        char *flash_group;      /* [Access] FlashGroup= */
        char *flash_group_where;        /* "FILE:LINE" where it was given; NULL: the default */
        char *state_dir;        /* not in the file: --state-dir */
        unsigned history;       /* [Daemon] History= finished jobs kept */
        unsigned max_attempts;  /* [Daemon] MaxAttempts= starts of a job the daemon's end interrupted */
        struct session_config session;  /* [Protocol] Timeout= EraseTimeout= Retries= Window= DiscoverTime= */
        struct config_node_name *names;  /* [Nodes] name = id, name = uid:XXXXXXXX */
        unsigned n_names;
        struct config_group *groups;     /* [Groups] name = targets */
        unsigned n_groups;
};

/* Defaults. Returns 0 or -ENOMEM. */
int config_init(struct config *c);
void config_done(struct config *c);

/* Read a file over the current values. A missing file is fine when
 * `must_exist` is false (the daemon runs on defaults). Errors (unknown
 * section or key, bad value, duplicate name) are printed on stderr as
 * "FILE:LINE: message" and return -EINVAL; an unreadable file returns
 * its negative errno with a message. */
int config_load(struct config *c, const char *path, bool must_exist);

/* Replace the interface list (stcispd --interface, which may repeat).
 * Returns 0, -EINVAL for an invalid or repeated name (logged), -ENOMEM. */
int config_set_interfaces(struct config *c, char *const *names, unsigned n);

/* The lines: one per interface, with its bitrate and restart time (its
 * own where Bitrate.IF=/RestartMs.IF= name it). An override for an
 * interface that is not in the list is logged and ignored. Free with
 * config_lines_free(). Returns 0 or -ENOMEM. */
int config_get_lines(const struct config *c, struct config_line **ret, unsigned *ret_n);
void config_lines_free(struct config_line *lines, unsigned n);

/* The [Nodes] entry of a name, NULL if none. */
const struct config_node_name *config_find_name(const struct config *c, const char *name);
/* Node id for a configured name, or -ENOENT (also for a name bound to a
 * UID, which has no id: see config_find_name()). */
int config_lookup_name(const struct config *c, const char *name);
/* Configured name of a node id, or NULL. Names bound to a UID are not
 * names of an id: config_uid_name(). */
const char *config_node_name(const struct config *c, uint8_t node);
/* The name bound to a UID (uid:XXXXXXXX), or NULL. */
const char *config_uid_name(const struct config *c, const uint8_t uid[static 4]);
/* The [Groups] entry of a name, NULL if none. */
const struct config_group *config_find_group(const struct config *c, const char *name);
