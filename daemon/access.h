/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Who may change anything (Flash, Reboot, Read, Scan, CancelJob): uid 0
 * always; anyone else as polkit decides, when polkit is on the bus
 * (daemon/polkit.c: the actions of dbus/org.stcisp.ispd1.policy, granted
 * to the flash group by polkit/stcispd.rules); without polkit, or when it
 * fails to answer, the members of the flash group. The group's name is
 * resolved once, at start-up; the group rule decides from the caller's
 * credentials as the bus reports them (uid, gid, supplementary groups).
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>

#include "polkit.h"

/* polkit action ids (dbus/org.stcisp.ispd1.policy) */
#define ACCESS_ACTION_FLASH  "org.stcisp.ispd1.flash"
#define ACCESS_ACTION_REBOOT "org.stcisp.ispd1.reboot"
#define ACCESS_ACTION_READ   "org.stcisp.ispd1.read"
#define ACCESS_ACTION_SCAN   "org.stcisp.ispd1.scan"
#define ACCESS_ACTION_CANCEL "org.stcisp.ispd1.cancel"

typedef struct Access {
        char *group;            /* [Access] FlashGroup=, may be empty */
        gid_t gid;
        bool have_gid;          /* the group exists */
        bool use_polkit;
        Polkit polkit;
} Access;

/* Resolve the group (logs a warning when it does not exist: then only
 * root may change anything). Returns 0 or -ENOMEM. */
int access_init(Access *a, const char *group);
void access_done(Access *a);

/* Once connected: polkit if it is on the bus (or activatable), else the
 * group rule; logs which. */
void access_connect(Access *a, sd_bus *bus);

/* 0 if the sender of msg may do `action`, with its uid in ret_uid (may
 * be NULL); 1 if polkit has been asked: the handler returns 1 at once
 * and is called again with the same message when the answer is in;
 * otherwise an org.stcisp.ispd1.Error.AccessDenied error in `error`
 * (negative return), or the negative errno of a failed credentials
 * query. Call it before reading any of msg's arguments. */
int access_check(Access *a, sd_bus_message *msg, const char *action, uid_t *ret_uid, sd_bus_error *error);
