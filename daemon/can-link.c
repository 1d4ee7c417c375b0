/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <libsocketcan.h>
#include <linux/can.h>
#include <linux/can/error.h>
#include <linux/can/netlink.h>
#include <linux/can/raw.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "can-link.h"
#include "isp-socketcan.h"
#include "log.h"
#include "util.h"

#define SEND_QUEUE_MAX 4096
#define LINK_POLL_USEC (500 * 1000ULL)
#define RESTART_BACKOFF_MIN_USEC (100 * 1000ULL)
#define RESTART_BACKOFF_MAX_USEC (30 * 1000 * 1000ULL)

struct can_link {
        sd_event *event;
        char *ifname;
        int fd;
        sd_event_source *io;
        sd_event_source *poll_timer;    /* while down: wait for the link */
        sd_event_source *restart_timer; /* bus-off without automatic restart */
        uint64_t restart_backoff;
        uint32_t restart_ms;

        const struct can_link_ops *ops;
        void *userdata;
        bool up;

        /* Frames the kernel could not take yet (ENOBUFS), oldest first. */
        struct can_frame *queue;
        size_t queue_head, queue_len;

        uint32_t bitrate;
        const char *state_from_errors;
        uint64_t error_frames, bus_off, restarts;
        uint64_t frames_sent, frames_received, send_queue_waits;
        uint32_t rx_dropped;            /* the kernel's SO_RXQ_OVFL counter */
        char last_error[96];
};

/* One frame, and the kernel's drop counter from its control message. */

/* libsocketcan reports what it cannot find ("no link data found" on
 * vcan) on stderr, which is the daemon's log: its calls run with stderr
 * pointed at /dev/null; what they return says what the daemon logs. */
static int stderr_mute(void) {
        int saved, null;

        fflush(stderr);
        saved = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
        if (saved < 0)
                return -1;
        null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (null < 0 || dup2(null, STDERR_FILENO) < 0) {
                if (null >= 0)
                        close(null);
                close(saved);
                return -1;
        }
        close(null);
        return saved;
}

static void stderr_unmute(int saved) {
        if (saved < 0)
                return;
        fflush(stderr);
        (void) dup2(saved, STDERR_FILENO);
        close(saved);
}

#define QUIET(call) ({                                  \
                int _saved = stderr_mute();             \
                int _r = (call);                        \
                stderr_unmute(_saved);                  \
                _r;                                     \
        })

static ssize_t read_frame(struct can_link *l, int fd, struct can_frame *cf) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(uint32_t))];
        } control;
        struct iovec iov = { .iov_base = cf, .iov_len = sizeof(*cf) };
        struct msghdr msg = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = &control,
                .msg_controllen = sizeof(control),
        };
        ssize_t n = recvmsg(fd, &msg, 0);

        if (n < 0)
                return n;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
                        uint32_t dropped;

                        memcpy(&dropped, CMSG_DATA(c), sizeof(dropped));
                        if (dropped != l->rx_dropped)
                                log_warning("%s: the kernel dropped %u received frame(s) (receive queue full)",
                                            l->ifname, dropped - l->rx_dropped);
                        l->rx_dropped = dropped;
                }
        return n;
}

static int link_watch(struct can_link *l, uint32_t events) {
        return sd_event_source_set_io_events(l->io, events);
}

static void link_set_up(struct can_link *l, bool up);
static int on_restart_timer(sd_event_source *s, uint64_t usec, void *userdata);

static void error_frame(struct can_link *l, const struct can_frame *cf) {
        canid_t e = cf->can_id & CAN_ERR_MASK;

        l->error_frames++;

        if (e & CAN_ERR_BUSOFF) {
                l->bus_off++;
                l->state_from_errors = "bus-off";
                snprintf(l->last_error, sizeof(l->last_error), "bus-off");
                log_warning("%s: controller is bus-off", l->ifname);
                if (l->restart_ms == 0 && !l->restart_timer) {
                        /* Nobody restarts it for us: do it, with a growing back-off
                         * so a shorted bus does not make us flood it. */
                        int r;

                        l->restart_backoff = l->restart_backoff ? l->restart_backoff * 2 : RESTART_BACKOFF_MIN_USEC;
                        if (l->restart_backoff > RESTART_BACKOFF_MAX_USEC)
                                l->restart_backoff = RESTART_BACKOFF_MAX_USEC;
                        r = sd_event_add_time_relative(l->event, &l->restart_timer, CLOCK_MONOTONIC,
                                                       l->restart_backoff, 0, on_restart_timer, l);
                        if (r < 0)
                                log_warning("%s: cannot schedule controller restart: %s", l->ifname, strerror(-r));
                }
                return;
        }
        if (e & CAN_ERR_RESTARTED) {
                l->state_from_errors = "error-active";
                snprintf(l->last_error, sizeof(l->last_error), "controller restarted");
                return;
        }
        if (e & CAN_ERR_CRTL) {
                uint8_t c = cf->data[1];

                if (c & (CAN_ERR_CRTL_RX_PASSIVE | CAN_ERR_CRTL_TX_PASSIVE))
                        l->state_from_errors = "error-passive";
                else if (c & (CAN_ERR_CRTL_RX_WARNING | CAN_ERR_CRTL_TX_WARNING))
                        l->state_from_errors = "error-warning";
                else if (c & CAN_ERR_CRTL_ACTIVE)
                        l->state_from_errors = "error-active";
                snprintf(l->last_error, sizeof(l->last_error), "controller problem 0x%02X%s%s", c,
                         (c & CAN_ERR_CRTL_RX_OVERFLOW) ? " (rx buffer overflow)" : "",
                         (c & CAN_ERR_CRTL_TX_OVERFLOW) ? " (tx buffer overflow)" : "");
        }
        if (e & CAN_ERR_ACK)
                snprintf(l->last_error, sizeof(l->last_error), "no acknowledgement on transmission (no other node on the bus?)");
        if (e & CAN_ERR_PROT)
                snprintf(l->last_error, sizeof(l->last_error), "protocol violation 0x%02X at 0x%02X", cf->data[2], cf->data[3]);
        if (e & CAN_ERR_TX_TIMEOUT)
                snprintf(l->last_error, sizeof(l->last_error), "transmission time-out");
}

static int flush_queue(struct can_link *l) {
        while (l->queue_len > 0) {
                struct can_frame *cf = &l->queue[l->queue_head];

                if (write(l->fd, cf, sizeof(*cf)) < 0) {
                        if (errno == EAGAIN || errno == ENOBUFS) {
                                l->send_queue_waits++;
                                return link_watch(l, EPOLLIN | EPOLLOUT);
                        }
                        if (errno == ENETDOWN) {
                                link_set_up(l, false);
                                return -ENETDOWN;
                        }
                        return log_error_errno(-errno, "%s: cannot send frame: %m", l->ifname);
                }
                l->frames_sent++;
                l->queue_head = (l->queue_head + 1) % SEND_QUEUE_MAX;
                l->queue_len--;
        }
        return link_watch(l, EPOLLIN);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct can_link *l = userdata;

        if (revents & EPOLLOUT)
                (void) flush_queue(l);

        if (!(revents & (EPOLLIN | EPOLLERR)))
                return 0;

        /* Drain what is there now; the loop comes back for the rest. */
        for (unsigned i = 0; i < 64; i++) {
                struct can_frame cf;
                struct isp_can_frame f;
                ssize_t n;

                n = read_frame(l, fd, &cf);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return 0;
                        if (errno == ENETDOWN) {
                                link_set_up(l, false);
                                return 0;
                        }
                        log_warning("%s: receive failed: %s, ignoring", l->ifname, strerror(errno));
                        return 0;
                }
                if ((size_t) n != sizeof(cf))
                        continue;       /* not a classical CAN frame */

                if (cf.can_id & CAN_ERR_FLAG) {
                        error_frame(l, &cf);
                        continue;
                }
                l->frames_received++;
                if (!l->up)
                        link_set_up(l, true);
                isp_frame_from_socketcan(&cf, &f);
                l->ops->frame(l->userdata, &f);
        }
        return 0;
}

static bool interface_running(struct can_link *l) {
        struct ifreq ifr = {};

        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", l->ifname);
        if (ioctl(l->fd, SIOCGIFFLAGS, &ifr) < 0)
                return false;
        return (ifr.ifr_flags & IFF_UP) && (ifr.ifr_flags & IFF_RUNNING);
}

static int on_poll_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct can_link *l = userdata;

        if (interface_running(l)) {
                link_set_up(l, true);
                return 0;
        }
        return sd_event_source_set_time_relative(s, LINK_POLL_USEC) < 0 ? 0 :
               sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

static void start_link_poll(struct can_link *l) {
        if (!l->poll_timer &&
            sd_event_add_time_relative(l->event, &l->poll_timer, CLOCK_MONOTONIC,
                                       LINK_POLL_USEC, 0, on_poll_timer, l) < 0)
                log_warning("%s: cannot watch the link", l->ifname);
}

static void link_set_up(struct can_link *l, bool up) {
        if (l->up == up)
                return;
        l->up = up;

        if (up) {
                log_info("%s: link is up", l->ifname);
                l->poll_timer = sd_event_source_disable_unref(l->poll_timer);
        } else {
                log_warning("%s: link is down, pausing until it is back", l->ifname);
                /* The session re-sends what was in flight once the link is back. */
                l->queue_head = l->queue_len = 0;
                (void) link_watch(l, EPOLLIN);
                start_link_poll(l);
        }
        l->ops->link_changed(l->userdata, up);
}

static int on_restart_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct can_link *l = userdata;
        int r;

        l->restart_timer = sd_event_source_disable_unref(l->restart_timer);
        r = QUIET(can_do_restart(l->ifname));
        if (r < 0)
                log_warning("%s: controller restart after bus-off failed, next try in %llu ms",
                            l->ifname, (unsigned long long) l->restart_backoff / 1000);
        else {
                l->restarts++;
                log_info("%s: controller restarted after bus-off", l->ifname);
        }
        return 0;
}

static void configure(struct can_link *l, uint32_t bitrate, uint32_t restart_ms) {
        bool changed = false;

        if (bitrate == 0 && restart_ms == 0)
                return;

        /* Bit timing can only change while the interface is down. */
        (void) QUIET(can_do_stop(l->ifname));
        if (bitrate > 0) {
                if (QUIET(can_set_bitrate(l->ifname, bitrate)) < 0)
                        log_warning("%s: cannot set bitrate %u (driver without bit timing, e.g. vcan?), ignoring",
                                    l->ifname, bitrate);
                else
                        changed = true;
        }
        if (restart_ms > 0) {
                if (QUIET(can_set_restart_ms(l->ifname, restart_ms)) < 0)
                        log_warning("%s: cannot set restart-ms %u, ignoring", l->ifname, restart_ms);
                else
                        changed = true;
        }
        if (QUIET(can_do_start(l->ifname)) < 0)
                log_warning("%s: cannot bring the interface up again", l->ifname);
        if (changed)
                log_info("%s: configured%s%s", l->ifname, bitrate ? " bitrate" : "", restart_ms ? " restart-ms" : "");
}

int can_link_new(struct can_link **ret, sd_event *event, const char *ifname,
                 uint32_t bitrate, uint32_t restart_ms,
                 const struct can_link_ops *ops, void *userdata) {
        /* Only extended data frames with the reply prefix 0x1B: other
         * traffic on the bus never wakes us. */
        /* The replies, and the PROGRAM, ERASE and CRC requests of other
         * hosts (this socket's own are not received back): a session that
         * hears one verifies every sector (session.c). */
        const struct can_filter filter[] = {
                {
                        .can_id = ISP_ID_REPLY | CAN_EFF_FLAG,
                        .can_mask = ISP_ID_KIND_MASK | CAN_EFF_FLAG | CAN_RTR_FLAG,
                }, {
                        .can_id = ISP_ID_REQUEST | (uint32_t) ISP_CMD_PROGRAM << ISP_ID_CMD_SHIFT | CAN_EFF_FLAG,
                        .can_mask = ISP_ID_KIND_MASK | ISP_ID_CMD_MASK | CAN_EFF_FLAG | CAN_RTR_FLAG,
                }, {
                        .can_id = ISP_ID_REQUEST | (uint32_t) ISP_CMD_ERASE << ISP_ID_CMD_SHIFT | CAN_EFF_FLAG,
                        .can_mask = ISP_ID_KIND_MASK | ISP_ID_CMD_MASK | CAN_EFF_FLAG | CAN_RTR_FLAG,
                }, {
                        /* answered by nodes without ECHO in a form like ours */
                        .can_id = ISP_ID_REQUEST | (uint32_t) ISP_CMD_CRC << ISP_ID_CMD_SHIFT | CAN_EFF_FLAG,
                        .can_mask = ISP_ID_KIND_MASK | ISP_ID_CMD_MASK | CAN_EFF_FLAG | CAN_RTR_FLAG,
                },
        };
        const can_err_mask_t err_mask = CAN_ERR_TX_TIMEOUT | CAN_ERR_CRTL | CAN_ERR_PROT |
                                        CAN_ERR_ACK | CAN_ERR_BUSOFF | CAN_ERR_RESTARTED;
        struct sockaddr_can addr = { .can_family = AF_CAN };
        struct can_link *l;
        unsigned idx;
        int r;

        if (strlen(ifname) >= IFNAMSIZ)
                return log_error_errno(-EINVAL, "CAN interface name '%s' is too long", ifname);

        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->fd = -EBADF;
        l->event = sd_event_ref(event);
        l->ops = ops;
        l->userdata = userdata;
        l->restart_ms = restart_ms;
        l->state_from_errors = "unknown";
        l->ifname = strdup(ifname);
        l->queue = calloc(SEND_QUEUE_MAX, sizeof(*l->queue));
        if (!l->ifname || !l->queue) {
                can_link_free(l);
                return -ENOMEM;
        }

        /* Before libsocketcan, which prints its own noise for a missing device. */
        idx = if_nametoindex(ifname);
        if (idx == 0) {
                r = log_error_errno(-ENODEV, "CAN interface %s not found: check [Bus] Interface= in stcispd.conf "
                                    "or --interface ('ip -br link' lists the interfaces)", ifname);
                goto fail;
        }
        addr.can_ifindex = (int) idx;

        configure(l, bitrate, restart_ms);

        l->fd = socket(PF_CAN, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, CAN_RAW);
        if (l->fd < 0) {
                r = log_error_errno(-errno, "Cannot open a CAN socket: %m%s",
                                    errno == EAFNOSUPPORT ? " (the kernel has no CAN support)" : "");
                goto fail;
        }

        if (setsockopt(l->fd, SOL_CAN_RAW, CAN_RAW_FILTER, filter, sizeof(filter)) < 0 ||
            setsockopt(l->fd, SOL_CAN_RAW, CAN_RAW_ERR_FILTER, &err_mask, sizeof(err_mask)) < 0) {
                r = log_error_errno(-errno, "%s: cannot set CAN filters: %m", ifname);
                goto fail;
        }
        /* The kernel counts the frames it dropped for us (a full receive
         * queue), as candump reports them. */
        if (setsockopt(l->fd, SOL_SOCKET, SO_RXQ_OVFL, &(int) { 1 }, sizeof(int)) < 0) {
                r = log_error_errno(-errno, "%s: cannot enable SO_RXQ_OVFL: %m", ifname);
                goto fail;
        }
        if (bind(l->fd, (struct sockaddr *) &addr, sizeof(addr)) < 0) {
                r = log_error_errno(-errno, "%s: cannot bind CAN socket: %m", ifname);
                goto fail;
        }

        r = sd_event_add_io(event, &l->io, l->fd, EPOLLIN, on_io, l);
        if (r < 0)
                goto fail;

        /* No callback yet: the caller does not hold the link until we return. */
        l->up = interface_running(l);
        if (!l->up) {
                log_warning("%s: link is down, waiting for it", ifname);
                start_link_poll(l);
        }

        *ret = l;
        return 0;

fail:
        can_link_free(l);
        return r;
}

struct can_link *can_link_free(struct can_link *l) {
        if (!l)
                return NULL;
        sd_event_source_disable_unref(l->restart_timer);
        sd_event_source_disable_unref(l->poll_timer);
        sd_event_source_disable_unref(l->io);
        if (l->fd >= 0)
                close(l->fd);
        sd_event_unref(l->event);
        free(l->queue);
        free(l->ifname);
        free(l);
        return NULL;
}

int can_link_send(struct can_link *l, const struct isp_can_frame *frame) {
        if (!l->up)
                return -ENETDOWN;
        if (l->queue_len >= SEND_QUEUE_MAX)
                return log_error_errno(-ENOBUFS, "%s: send queue full (%d frames): is the bus working?",
                                       l->ifname, SEND_QUEUE_MAX);

        isp_frame_to_socketcan(frame, &l->queue[(l->queue_head + l->queue_len) % SEND_QUEUE_MAX]);
        l->queue_len++;
        if (l->queue_len > 1)
                return 0;       /* already waiting for POLLOUT */
        return flush_queue(l) == -ENETDOWN ? -ENETDOWN : 0;
}

bool can_link_is_up(const struct can_link *l) {
        return l->up;
}

void can_link_recheck(struct can_link *l) {
        link_set_up(l, interface_running(l));
}

uint32_t can_link_rx_dropped(const struct can_link *l) {
        return l->rx_dropped;
}

void can_link_get_status(struct can_link *l, bool query_driver, struct can_link_status *ret) {
        static const char *const states[] = {
                [CAN_STATE_ERROR_ACTIVE]  = "error-active",
                [CAN_STATE_ERROR_WARNING] = "error-warning",
                [CAN_STATE_ERROR_PASSIVE] = "error-passive",
                [CAN_STATE_BUS_OFF]       = "bus-off",
                [CAN_STATE_STOPPED]       = "stopped",
                [CAN_STATE_SLEEPING]      = "sleeping",
        };
        struct can_berr_counter berr;
        struct can_bittiming bt;
        int state;

        *ret = (struct can_link_status) {
                .interface = l->ifname,
                .up = l->up,
                .controller_state = l->state_from_errors,
                .rx_errors = -1,
                .tx_errors = -1,
                .error_frames = l->error_frames,
                .bus_off = l->bus_off,
                .restarts = l->restarts,
                .frames_sent = l->frames_sent,
                .frames_received = l->frames_received,
                .send_queue_waits = l->send_queue_waits,
                .rx_dropped = l->rx_dropped,
                .last_error = l->last_error,
        };

        if (!query_driver)
                return;
        /* Drivers without these (vcan) simply fail: the values stay unknown. */
        if (QUIET(can_get_state(l->ifname, &state)) == 0 && state >= 0 &&
            (size_t) state < ELEMENTSOF(states) && states[state])
                ret->controller_state = states[state];
        if (QUIET(can_get_berr_counter(l->ifname, &berr)) == 0) {
                ret->rx_errors = berr.rxerr;
                ret->tx_errors = berr.txerr;
        }
        if (QUIET(can_get_bittiming(l->ifname, &bt)) == 0)
                ret->bitrate = bt.bitrate;
}
