/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Who may change anything (Flash, Reboot, Scan, CancelJob): uid 0 and
 * the members of the flash group. The group's name is resolved once, at
 * start-up; a call is decided from the caller's credentials as the bus
 * reports them (uid, gid, supplementary groups), without an NSS lookup.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-bus.h>

typedef struct Access {
        char *group;            /* [Access] FlashGroup=, may be empty */
        gid_t gid;
        bool have_gid;          /* the group exists */
} Access;

/* Resolve the group (logs a warning when it does not exist: then only
 * root may change anything). Returns 0 or -ENOMEM. */
int access_init(Access *a, const char *group);
void access_done(Access *a);

/* 0 if the sender of msg may change nodes and jobs, with its uid in
 * ret_uid (may be NULL); otherwise an org.stcisp.ispd1.Error.AccessDenied
 * error in `error` (negative return), or the negative errno of a failed
 * credentials query. One query for both: it may be a call to the bus. */
int access_check(const Access *a, sd_bus_message *msg, uid_t *ret_uid, sd_bus_error *error);
