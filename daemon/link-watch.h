/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Network interfaces coming and going, from the kernel's rtnetlink
 * link notifications (RTMGRP_LINK), so that an interface created or
 * plugged in after the daemon started (a USB-CAN adapter, `ip link add`)
 * is attached at once, and one removed is let go. The manager owns the
 * watch and hands each event to the line of that name.
 */

#include <stdbool.h>
#include <systemd/sd-event.h>

struct link_event {
        const char *ifname;     /* NULL: notifications were lost, look at every line again */
        int ifindex;
        bool removed;           /* RTM_DELLINK */
        bool running;           /* IFF_UP and IFF_RUNNING */
};

typedef void (*link_watch_handler_t)(void *userdata, const struct link_event *ev);

struct link_watch;

int link_watch_new(struct link_watch **ret, sd_event *event, link_watch_handler_t handler, void *userdata);
struct link_watch *link_watch_free(struct link_watch *w);
