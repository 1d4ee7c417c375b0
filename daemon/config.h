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

struct config_node_name {
        char *name;             /* e.g. "pump-controller" */
        uint8_t node;           /* 0 = legacy, 1-254 */
};

struct config {
        char *interface;        /* [Bus] Interface= */
        uint32_t bitrate;       /* [Bus] Bitrate=, 0 = leave the interface as it is */
        uint32_t restart_ms;    /* [Bus] RestartMs=, 0 = leave as it is */
        char *flash_group;      /* [Access] FlashGroup= */
        char *state_dir;        /* not in the file: --state-dir */
        unsigned history;       /* [Daemon] History= finished jobs kept */
        struct session_config session;  /* [Protocol] Timeout= EraseTimeout= Retries= Window= DiscoverTime= */
        struct config_node_name *names;  /* [Nodes] name = id */
        unsigned n_names;
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

/* Node id for a configured name, or -ENOENT. */
int config_lookup_name(const struct config *c, const char *name);
/* Configured name of a node id, or NULL. */
const char *config_node_name(const struct config *c, uint8_t node);
