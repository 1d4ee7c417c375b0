/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * A line: one CAN interface and what runs on it. It owns its CAN link,
 * the protocol session that holds the bus, the session's timer and the
 * throttle for progress signals. Lines run in parallel; on one line one
 * session holds the bus at a time, because the node selection model
 * (docs/protocol.md) allows nothing else.
 *
 * The line knows nothing of the queue, the node table or D-Bus: it tells
 * its owner (the manager) through line_ops what happened, and the owner
 * decides. It is the session's only caller in the daemon.
 */

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "can-link.h"
#include "config.h"
#include "job.h"
#include "session.h"

typedef struct Line Line;

struct line_ops {
        /* A node of the running job entered a phase (`n`, NULL for a
         * scan), or the job's progress moved (at most ~10 times a second,
         * and always at the end of a phase). The line has updated the job
         * and its nodes (j->nodes) before. */
        void (*job_phase)(void *userdata, Line *l, Job *j, const struct job_node *n);
        void (*job_progress)(void *userdata, Line *l, Job *j);
        /* A target of the running job ended (the typed reason is in r; its
         * node in j->nodes is updated already). */
        void (*job_target)(void *userdata, Line *l, Job *j, const struct session_target_result *r);
        /* The running job's work on this line ended: state is final.
         * `error` is NULL on success. The line is idle when this runs. */
        void (*job_done)(void *userdata, Line *l, Job *j, enum job_state state, const char *error);
        /* A node answered CONNECT or DISCOVER, or announced itself; or a
         * running application answered IDENTIFY (info->application). */
        void (*node_seen)(void *userdata, Line *l, const struct session_node_info *info);
        /* Two boards answered on one node id (their UIDs). `j` is the
         * running job that saw it. */
        void (*node_conflict)(void *userdata, Line *l, Job *j, uint8_t node, const uint8_t a[4], const uint8_t b[4]);
        /* A target of a read job succeeded: what it read (valid during the
         * call). */
        void (*job_read)(void *userdata, Line *l, Job *j, uint8_t node, const struct isp_image *img);
        /* The link went up or down, or the line became idle: a new job
         * may start, properties may have changed. */
        void (*changed)(void *userdata, Line *l);
};

struct Line {
        char *interface;
        uint32_t bitrate, restart_ms;   /* as configured, 0 = leave as it is */
        sd_event *event;
        struct can_link *link;
        uint32_t rx_dropped_seen;       /* the link's rx_dropped when a session last heard of it */
        struct session_config session_config;

        Job *job;                       /* running here, NULL when idle */
        struct session *session;
        sd_event_source *session_timer;
        sd_event_source *progress_timer;
        sd_event_source *reap;          /* frees a finished session outside its callbacks */
        sd_event_source *absent_timer;  /* the interface does not exist (yet): look for it */
        bool absent;
        bool watched;                   /* link events come from rtnetlink */
        uint64_t progress_emitted_usec;
        bool progress_pending;

        /* Nodes that answered (CONNECT, DISCOVER) during the running job. */
        uint8_t seen[256 / 8];

        /* What the last Line PropertiesChanged told about the counters
         * (bus-line.c), so that they are signalled only when they move. */
        struct can_link_status emitted;

        const struct line_ops *ops;
        void *userdata;
};

int line_new(Line **ret, sd_event *event, const struct config_line *cfg,
             const struct session_config *session_config, const struct line_ops *ops, void *userdata);
Line *line_free(Line *l);

/* Open the CAN link (and set the bitrate where configured). */
/* `watched`: the owner hands rtnetlink's link events to line_link_event();
 * otherwise an absent interface is looked for every second. */
int line_open(Line *l, bool watched);
/* An interface appeared, changed or was removed (link-watch.h); events
 * for other interfaces are ignored, ev->ifname NULL means "look again". */
struct link_event;
void line_link_event(Line *l, const struct link_event *ev);

bool line_is_up(const Line *l);
/* Up and running nothing: line_start_job() would succeed. */
bool line_is_idle(const Line *l);

/* Start j here, on `targets` (its nodes on this line; none for a scan;
 * their names are how messages call them): one session for all of them.
 * A flash job must have its image loaded. On failure (the session cannot
 * be made or its first frame cannot be sent) ops->job_done reports it
 * before this returns, so the caller handles both the same way. */
void line_start_job(Line *l, Job *j, const struct session_target_spec *targets, unsigned n_targets);

/* Cancel the job running here; ops->job_done follows (JOB_CANCELLED). */
void line_cancel_job(Line *l);

/* query_driver: also ask the driver (libsocketcan) for bitrate,
 * controller state and error counters, which costs netlink requests. */
void line_get_status(Line *l, bool query_driver, struct can_link_status *ret);
