/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The CAN link: one raw SocketCAN socket on the sd-event loop, with kernel
 * filters so that only ISP replies (0x1B...) and error frames wake the
 * daemon, a send queue that waits for POLLOUT on ENOBUFS instead of
 * dropping frames, link-down detection, and libsocketcan for bitrate,
 * restart-ms, controller state and error counters.
 */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "isp-frame.h"

struct can_link;

struct can_link_status {
        const char *interface;
        bool up;                        /* the interface is up and the socket works */
        uint32_t bitrate;               /* 0 = unknown (vcan has none) */
        const char *controller_state;   /* "error-active", "bus-off", ..., "unknown" */
        int rx_errors, tx_errors;       /* controller error counters, -1 = unknown */
        uint64_t error_frames;          /* error frames seen */
        uint64_t bus_off;               /* bus-off events */
        uint64_t restarts;              /* controller restarts done by us */
        uint64_t frames_sent, frames_received;
        uint64_t send_queue_waits;      /* times the kernel queue was full (ENOBUFS) */
        uint32_t rx_dropped;            /* frames the kernel dropped on receive (SO_RXQ_OVFL) */
        const char *last_error;         /* last decoded error frame, "" if none */
};

struct can_link_ops {
        /* An ISP reply, or another host's PROGRAM, ERASE or CRC request,
         * arrived (already filtered by the kernel). */
        void (*frame)(void *userdata, const struct isp_can_frame *frame);
        /* The link went down (ENETDOWN) or came back up. */
        void (*link_changed)(void *userdata, bool up);
};

/* Open the socket on `ifname` and attach it to the event loop. Where
 * bitrate or restart_ms are non-zero they are set through libsocketcan
 * first (the interface must be down for that; it is brought down and up
 * again). Returns 0 or a negative errno, with a message logged. */
int can_link_new(struct can_link **ret, sd_event *event, const char *ifname,
                 uint32_t bitrate, uint32_t restart_ms,
                 const struct can_link_ops *ops, void *userdata);
struct can_link *can_link_free(struct can_link *l);

/* Queue a frame for the bus: sent at once where the kernel takes it,
 * else when the socket is writable again. Returns 0, -ENETDOWN while the
 * link is down, or another negative errno. */
int can_link_send(struct can_link *l, const struct isp_can_frame *frame);

bool can_link_is_up(const struct can_link *l);
/* The interface's flags changed (rtnetlink said so): look at them now
 * rather than at the next poll. */
void can_link_recheck(struct can_link *l);
/* query_driver: also ask libsocketcan for bitrate, controller state and
 * error counters (netlink requests); else those are left unknown. */
void can_link_get_status(struct can_link *l, bool query_driver, struct can_link_status *ret);
/* Its rx_dropped alone: cheap enough for every received frame. */
uint32_t can_link_rx_dropped(const struct can_link *l);
