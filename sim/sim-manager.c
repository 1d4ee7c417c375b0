/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <limits.h>
#include <linux/can.h>
#include <linux/can/error.h>
#include <linux/can/raw.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sim-flash-file.h"
#include "sim-manager.h"

/* Room for some thousands of frames (an skb of a CAN frame takes about
 * 1 KiB of buffer). */
#define SIM_RCVBUF_BYTES (8 << 20)

static uint64_t now_nsec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * NSEC_PER_SEC + (uint64_t) ts.tv_nsec;
}

static int flash_path(Manager *m, SimNode *node, char *buf, size_t len) {
        if ((size_t) snprintf(buf, len, "%s/%s.bin", m->config->flash_dir, sim_node_get_label(node)) >= len) {
                log_msg("%s: flash directory path too long", m->config->flash_dir);
                return -ENAMETOOLONG;
        }
        return 0;
}

static int on_writeback(SimFleet *fleet, SimNode *node, void *userdata) {
        Manager *m = userdata;
        char path[PATH_MAX];
        int r;

        r = flash_path(m, node, path, sizeof(path));
        if (r < 0)
                return r;
        return sim_flash_file_save(path, sim_node_get_flash(node));
}

/* ---- output: replies to the socket, in order ---- */

static int out_push(Manager *m, const struct isp_node_frame *frame) {
        if (m->out_len == m->out_cap) {
                size_t cap = m->out_cap ? m->out_cap * 2 : 64;
                struct isp_node_frame *out = malloc(cap * sizeof(*out));

                if (!out)
                        return -ENOMEM;
                for (size_t i = 0; i < m->out_len; i++)
                        out[i] = m->out[(m->out_head + i) % m->out_cap];
                free(m->out);
                m->out = out;
                m->out_cap = cap;
                m->out_head = 0;
        }
        m->out[(m->out_head + m->out_len) % m->out_cap] = *frame;
        m->out_len++;
        return 0;
}

static void update_io_events(Manager *m) {
        int r;

        r = sd_event_source_set_io_events(m->io_source, EPOLLIN | (m->out_len > 0 ? EPOLLOUT : 0));
        if (r < 0)
                (void) log_error_errno(r, "%s: cannot update poll events, ignoring", m->config->interface);
}

/* Write queued replies until the socket pushes back. */
static void flush_output(Manager *m) {
        while (m->out_len > 0) {
                const struct isp_node_frame *f = &m->out[m->out_head];
                struct can_frame cf = {
                        .can_id = f->id,
                        .len = f->dlc,
                };
                ssize_t n;

                memcpy(cf.data, f->data, sizeof(cf.data));
                n = write(m->fd, &cf, sizeof(cf));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == ENOBUFS)
                                break; /* wait for POLLOUT */
                        (void) log_error_errno(errno, "%s: cannot send reply %08X, dropping it",
                                               m->config->interface, (unsigned) (f->id & CAN_EFF_MASK));
                }
                m->out_head = (m->out_head + 1) % m->out_cap;
                m->out_len--;
        }
        if (m->io_source)
                update_io_events(m);
}

static void on_output(SimFleet *fleet, const struct isp_node_frame *frame, void *userdata) {
        Manager *m = userdata;

        if (out_push(m, frame) < 0)
                (void) log_error_errno(ENOMEM, "%s: reply %08X lost", m->config->interface,
                                       (unsigned) (frame->id & CAN_EFF_MASK));
}

/* ---- the model's clock ---- */

static void reschedule(Manager *m) {
        uint64_t t = sim_fleet_next_event(m->fleet);
        int r;

        if (t == SIM_NSEC_INFINITY) {
                r = sd_event_source_set_enabled(m->timer_source, SD_EVENT_OFF);
                if (r < 0)
                        (void) log_error_errno(r, "cannot disable timer, ignoring");
                return;
        }
        r = sd_event_source_set_time(m->timer_source, (t + NSEC_PER_USEC - 1) / NSEC_PER_USEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(m->timer_source, SD_EVENT_ONESHOT);
        if (r < 0)
                (void) log_error_errno(r, "cannot arm timer, ignoring");
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        sim_fleet_advance(m->fleet, now_nsec());
        flush_output(m);
        reschedule(m);
        return 0;
}

/* ---- input ---- */

static void log_error_frame(Manager *m, const struct can_frame *cf) {
        if (cf->can_id & CAN_ERR_BUSOFF)
                log_msg("%s: bus-off", m->config->interface);
        else if (cf->can_id & CAN_ERR_RESTARTED)
                log_msg("%s: controller restarted", m->config->interface);
        else if (cf->can_id & CAN_ERR_CRTL)
                log_msg("%s: controller problem 0x%02X", m->config->interface, cf->data[1]);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Manager *m = userdata;

        if (revents & (EPOLLIN | EPOLLERR)) {
                for (;;) {
                        struct can_frame cf;
                        struct isp_node_frame f;
                        ssize_t n = read(fd, &cf, sizeof(cf));

                        if (n < 0) {
                                if (errno == EINTR)
                                        continue;
                                if (errno != EAGAIN)
                                        (void) log_error_errno(errno, "%s: read failed, ignoring",
                                                               m->config->interface);
                                break;
                        }
                        if (n != sizeof(cf))
                                continue;
                        if (cf.can_id & CAN_ERR_FLAG) {
                                log_error_frame(m, &cf);
                                continue;
                        }

                        f.id = cf.can_id;
                        f.dlc = cf.len;
                        memcpy(f.data, cf.data, sizeof(f.data));
                        sim_fleet_receive(m->fleet, &f, now_nsec());
                }
        }

        flush_output(m);
        reschedule(m);
        return 0;
}

/* ---- signals ---- */

static int on_exit_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        if (!m->config->quiet)
                log_msg("%s, exiting", strsignal((int) si->ssi_signo));
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

static int on_sigusr1(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        sim_fleet_advance(m->fleet, now_nsec());
        if (sim_fleet_writeback_all(m->fleet) >= 0 && !m->config->quiet)
                log_msg("flash written back to %s", m->config->flash_dir);
        flush_output(m);
        reschedule(m);
        return 0;
}

/* ---- set-up ---- */

int manager_load_flash(Manager *m) {
        int r;

        r = sim_flash_dir_prepare(m->config->flash_dir);
        if (r < 0)
                return r;

        for (size_t i = 0; i < sim_fleet_get_n_nodes(m->fleet); i++) {
                SimNode *node = sim_fleet_get_node(m->fleet, i);
                char path[PATH_MAX];

                r = flash_path(m, node, path, sizeof(path));
                if (r < 0)
                        return r;
                r = sim_flash_file_load(path, sim_node_get_flash(node));
                if (r < 0)
                        return r;
                if (!m->config->quiet)
                        log_msg("%s: flash %s (%s)", sim_node_get_label(node), path,
                                r > 0 ? "created erased" : "loaded");
        }
        return 0;
}

int manager_new(Manager **ret, const SimConfig *config) {
        static const SimFleetCallbacks callbacks = {
                .output = on_output,
                .writeback = on_writeback,
        };
        _cleanup_(manager_freep) Manager *m = NULL;
        sigset_t mask;
        int r;

        m = calloc(1, sizeof(Manager));
        if (!m)
                return log_error_errno(ENOMEM, "cannot allocate the manager");
        m->config = config;
        m->fd = -1;

        r = sd_event_default(&m->event);
        if (r < 0)
                return log_error_errno(r, "cannot create the event loop");

        /* sd-event takes signals through a signalfd: block them first. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGUSR1);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(errno, "cannot block signals");

        r = sd_event_add_signal(m->event, NULL, SIGINT, on_exit_signal, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGTERM, on_exit_signal, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGUSR1, on_sigusr1, m);
        if (r < 0)
                return log_error_errno(r, "cannot watch signals");

        r = sim_fleet_new(&m->fleet, &config->timing, config->rx_depth, config->seed,
                          config->quiet ? NULL : stderr, &callbacks, m);
        if (r < 0)
                return log_error_errno(r, "cannot set up the fleet");

        for (unsigned id = 0; id < 255; id++) {
                if (!config->node[id])
                        continue;
                r = sim_fleet_add_node(m->fleet, (uint8_t) id, &config->fault[id]);
                if (r < 0)
                        return log_error_errno(r, "node%u: cannot set up", id);
        }

        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        sd_event_source_disable_unref(m->timer_source);
        sd_event_source_disable_unref(m->io_source);
        if (m->fd >= 0)
                (void) close(m->fd);
        sim_fleet_free(m->fleet);
        free(m->out);
        sd_event_unref(m->event);
        free(m);
        return NULL;
}

int manager_open_can(Manager *m) {
        _cleanup_(closep) int fd = -1;
        const char *ifname = m->config->interface;
        struct can_filter filter = {
                /* requests only: extended data frames 0x1A000000-0x1AFFFFFF */
                .can_id = 0x1A000000U | CAN_EFF_FLAG,
                .can_mask = 0x1F000000U | CAN_EFF_FLAG | CAN_RTR_FLAG,
        };
        can_err_mask_t err_mask = CAN_ERR_BUSOFF | CAN_ERR_CRTL | CAN_ERR_RESTARTED;
        struct sockaddr_can addr = { .can_family = AF_CAN };
        unsigned ifindex;
        int r;

        fd = socket(PF_CAN, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, CAN_RAW);
        if (fd < 0) {
                if (errno == EAFNOSUPPORT)
                        return log_error_errno(errno, "cannot open a CAN socket (this kernel has no CAN "
                                               "support; tools/with-vcan runs a command where it has)");
                return log_error_errno(errno, "cannot open a CAN socket");
        }

        ifindex = if_nametoindex(ifname);
        if (ifindex == 0)
                return log_error_errno(errno, "%s: no such CAN interface", ifname);

        if (setsockopt(fd, SOL_CAN_RAW, CAN_RAW_FILTER, &filter, sizeof(filter)) < 0)
                return log_error_errno(errno, "%s: cannot set the request filter", ifname);
        if (setsockopt(fd, SOL_CAN_RAW, CAN_RAW_ERR_FILTER, &err_mask, sizeof(err_mask)) < 0)
                return log_error_errno(errno, "%s: cannot set the error filter", ifname);
        /* vcan hands over a host's frames as fast as it writes them (a
         * QUIET stream is hundreds at once); the model queues them for
         * its own bus, but only what the kernel did not drop first. */
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &(int) { SIM_RCVBUF_BYTES }, sizeof(int)) < 0 &&
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &(int) { SIM_RCVBUF_BYTES }, sizeof(int)) < 0)
                (void) log_error_errno(errno, "%s: cannot enlarge the receive buffer (a fast host may lose "
                                       "frames), going on", ifname);

        addr.can_ifindex = (int) ifindex;
        if (bind(fd, (struct sockaddr *) &addr, sizeof(addr)) < 0)
                return log_error_errno(errno, "%s: cannot bind", ifname);

        r = sd_event_add_io(m->event, &m->io_source, fd, EPOLLIN, on_io, m);
        if (r < 0)
                return log_error_errno(r, "%s: cannot watch the socket", ifname);

        r = sd_event_add_time(m->event, &m->timer_source, CLOCK_MONOTONIC, 0, 1, on_timer, m);
        if (r >= 0)
                r = sd_event_source_set_enabled(m->timer_source, SD_EVENT_OFF);
        if (r < 0)
                return log_error_errno(r, "cannot set up the model's timer");

        m->fd = TAKE_FD(fd); /* the manager owns the fd from here */
        return 0;
}

int manager_run(Manager *m) {
        size_t n = sim_fleet_get_n_nodes(m->fleet);
        SimFleetStats stats;
        int r, k;

        fprintf(stderr, "stcisp-sim: %zu node%s on %s ready\n", n, n == 1 ? "" : "s", m->config->interface);

        sim_fleet_start(m->fleet, now_nsec());
        sim_fleet_advance(m->fleet, now_nsec());
        flush_output(m);
        reschedule(m);

        r = sd_event_loop(m->event);
        if (r < 0)
                (void) log_error_errno(r, "event loop failed");

        k = sim_fleet_writeback_all(m->fleet);
        if (k < 0 && r >= 0)
                r = k;

        if (!m->config->quiet) {
                sim_fleet_get_stats(m->fleet, &stats);
                log_msg("%llu requests, %llu replies, %llu requests lost to full receive buffers, "
                        "%llu dropped by faults; flash written back to %s",
                        (unsigned long long) stats.requests, (unsigned long long) stats.replies,
                        (unsigned long long) stats.lost_overrun, (unsigned long long) stats.lost_dropped,
                        m->config->flash_dir);
        }
        return r;
}
