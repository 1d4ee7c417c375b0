/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Asking polkit whether the sender of a method call may do an action
 * (org.freedesktop.PolicyKit1.Authority.CheckAuthorization, subject
 * "system-bus-name" = the caller's unique name), without blocking the
 * event loop, the way systemd's own daemons do it:
 *
 *   the first time a method call is checked, the question goes out
 *   asynchronously and polkit_check() returns 1: the method handler
 *   returns 1 too (handled, no reply yet). When polkit answers, the same
 *   message is queued on the bus again (sd_bus_enqueue_for_read()), the
 *   handler runs a second time, and polkit_check() now returns the
 *   stored answer.
 *
 * Interactive authentication is asked for only when the caller set the
 * ALLOW_INTERACTIVE_AUTHORIZATION flag on its call (ispctl
 * --ask-password).
 */

#include <stdbool.h>
#include <systemd/sd-bus.h>

#define POLKIT_BUS_NAME "org.freedesktop.PolicyKit1"

typedef struct PolkitQuery PolkitQuery;

typedef struct Polkit {
        sd_bus *bus;
        PolkitQuery *queries;   /* asked or answered, not yet taken */
} Polkit;

/* Whether polkit is on the bus or can be activated there. A synchronous
 * call to the bus driver: for start-up only. */
bool polkit_available(sd_bus *bus);

void polkit_init(Polkit *p, sd_bus *bus);
void polkit_done(Polkit *p);

/* Returns 1 while the answer for `msg` is pending (msg comes back later),
 * 0 if polkit authorized the action, -EACCES if it refused,
 * -EKEYREJECTED if it would authorize after an authentication the caller
 * did not allow, another negative errno if polkit could not be asked or
 * failed (the caller then decides by itself). */
int polkit_check(Polkit *p, sd_bus_message *msg, const char *action);
