/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "link-watch.h"
#include "log.h"

struct link_watch {
        int fd;
        sd_event_source *io;
        link_watch_handler_t handler;
        void *userdata;
};

static void parse_link(struct link_watch *w, const struct nlmsghdr *h) {
        const struct ifinfomsg *ifi = NLMSG_DATA(h);
        int len = (int) h->nlmsg_len - (int) NLMSG_LENGTH(sizeof(*ifi));
        char name[IFNAMSIZ] = "";

        if (len < 0)
                return;
        for (const struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len))
                if (a->rta_type == IFLA_IFNAME) {
                        size_t n = RTA_PAYLOAD(a);

                        if (n >= sizeof(name))
                                n = sizeof(name) - 1;
                        memcpy(name, RTA_DATA(a), n);
                        name[n] = 0;
                }
        if (!name[0])
                return;
        w->handler(w->userdata, &(struct link_event) {
                .ifname = name,
                .ifindex = ifi->ifi_index,
                .removed = h->nlmsg_type == RTM_DELLINK,
                .running = (ifi->ifi_flags & IFF_UP) && (ifi->ifi_flags & IFF_RUNNING),
        });
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct link_watch *w = userdata;
        /* aligned for struct nlmsghdr, as netlink(7) does */
        char buf[16384] __attribute__((aligned(__alignof__(struct nlmsghdr))));

        for (;;) {
                struct sockaddr_nl sa;
                struct iovec iov = { buf, sizeof(buf) };
                struct msghdr msg = { .msg_name = &sa, .msg_namelen = sizeof(sa), .msg_iov = &iov, .msg_iovlen = 1 };
                ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT);

                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return 0;
                        if (errno == ENOBUFS) {
                                /* The kernel dropped notifications: whatever
                                 * they said, every line looks again. */
                                log_debug("rtnetlink: notifications lost, looking at every interface again");
                                w->handler(w->userdata, &(struct link_event) { .ifname = NULL });
                                continue;
                        }
                        log_warning("rtnetlink: receive failed: %s, ignoring", strerror(errno));
                        return 0;
                }
                if (sa.nl_pid != 0)
                        continue;       /* only the kernel tells about links */
                for (const struct nlmsghdr *h = (const struct nlmsghdr *) buf; NLMSG_OK(h, (size_t) n);
                     h = NLMSG_NEXT(h, n))
                        if (h->nlmsg_type == RTM_NEWLINK || h->nlmsg_type == RTM_DELLINK)
                                parse_link(w, h);
        }
}

int link_watch_new(struct link_watch **ret, sd_event *event, link_watch_handler_t handler, void *userdata) {
        struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK };
        struct link_watch *w;
        int r;

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->handler = handler;
        w->userdata = userdata;
        w->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
        if (w->fd < 0 || bind(w->fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                r = -errno;
                goto fail;
        }
        r = sd_event_add_io(event, &w->io, w->fd, EPOLLIN, on_io, w);
        if (r < 0)
                goto fail;
        *ret = w;
        return 0;
fail:
        link_watch_free(w);
        return r;
}

struct link_watch *link_watch_free(struct link_watch *w) {
        if (!w)
                return NULL;
        sd_event_source_disable_unref(w->io);
        if (w->fd >= 0)
                close(w->fd);
        free(w);
        return NULL;
}
