/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The protocol engine: one session per job, speaking docs/protocol.md to a
 * node. Pure code: it reads no clock and does no I/O. The caller (the
 * manager in the daemon, or a unit test driving node cores frame by
 * frame) feeds it received frames and the current time, arms one timer at
 * session_deadline(), and puts on the bus what ops->send hands it.
 *
 * A session works on a set of target nodes; today that set always holds
 * one node (multicast to a group of nodes is a later step, and the
 * per-node state is kept apart for it).
 */

#include <stdbool.h>
#include <stdint.h>

#include "isp-frame.h"
#include "isp-image.h"

enum session_kind {
        SESSION_FLASH,          /* connect, erase, program, verify, commit, reboot */
        SESSION_REBOOT,         /* connect, reboot */
        SESSION_SCAN,           /* discover: every node that answers */
        _SESSION_KIND_MAX,
};

enum session_phase {
        SESSION_PHASE_NONE,
        SESSION_PHASE_CONNECT,
        SESSION_PHASE_ERASE,
        SESSION_PHASE_PROGRAM,
        SESSION_PHASE_VERIFY,
        SESSION_PHASE_COMMIT,
        SESSION_PHASE_REBOOT,
        SESSION_PHASE_DISCOVER,
        _SESSION_PHASE_MAX,
};

enum session_state {
        SESSION_RUNNING,
        SESSION_SUCCEEDED,
        SESSION_FAILED,
        SESSION_CANCELLED,
};

struct session_config {
        uint32_t timeout_ms;            /* reply time-out for one request (default 500) */
        uint32_t erase_timeout_ms;      /* extra time-out per erased sector (default 50) */
        unsigned retries;               /* retransmissions of one request before failing (default 3) */
        unsigned window;                /* PROGRAM frames in flight, capped by the node's rx depth (default 8) */
        uint32_t discover_ms;           /* how long a scan listens for INFO (default 300) */
        bool verify;                    /* flash: verify before commit (default true) */
        bool reboot;                    /* flash: REBOOT after commit (default true) */
};

void session_config_init(struct session_config *cfg);  /* the defaults above */

/* Time-outs derived from the configuration:
 *   ERASE            timeout_ms + sectors * erase_timeout_ms (full ERASE: 248 sectors)
 *   CRC              timeout_ms + 5 ms per 512-byte sector
 *   ENTER_ISP        wait 2 * timeout_ms for ANNOUNCE, then CONNECT again
 *   after CONNECT    listen min(timeout_ms, 100 ms) for conflicting answers
 *                    before anything is erased
 * A request answered only after a retransmission holds the next request of
 * the same command back for that request's time-out (a second answer must
 * not be taken for the next one's). */

/* What the session learnt about a node: from CONNECT, DISCOVER or an
 * unsolicited ANNOUNCE seen while it ran. */
struct session_node_info {
        uint8_t node;                   /* 0 = the legacy node */
        bool legacy;
        bool announce;                  /* it was an ANNOUNCE (node restarted into ISP) */
        struct isp_info info;           /* zero for a legacy node */
};

struct session_stats {
        uint64_t frames_sent;
        uint64_t retransmissions;
        uint64_t timeouts;
        uint64_t stray_replies;         /* unexpected, duplicate or malformed replies, ignored */
        uint64_t ignored_frames;        /* not ISP replies at all (other traffic, requests), ignored */
        uint64_t restarts;              /* the target restarted (ANNOUNCE) and the flash started over */
};

/* Apart from `finished`, callbacks must not call into the session. */
struct session_ops {
        /* Put a frame on the bus. Returns 0, or a negative errno: the link
         * queues frames it cannot send at once (ENOBUFS), so an error here
         * is final for the session, which then fails. */
        int (*send)(void *userdata, const struct isp_can_frame *frame);
        /* The phase changed. It goes back to SESSION_PHASE_CONNECT when the
         * target restarted (ANNOUNCE) mid-flash and the flash starts over. */
        void (*phase)(void *userdata, enum session_phase phase);
        /* Progress within the current phase, in bytes (program, verify) or
         * sectors (erase). */
        void (*progress)(void *userdata, uint64_t done, uint64_t total);
        /* A node answered CONNECT or DISCOVER, or sent ANNOUNCE. */
        void (*node_seen)(void *userdata, const struct session_node_info *node);
        /* The session ended (state is no longer SESSION_RUNNING). Called
         * once; the session may be freed from inside this callback. */
        void (*finished)(void *userdata, enum session_state state, const char *error);
};

struct session;

/* Create a session. `node` is the target node id, 1-254, or 0 for the
 * legacy node; ignored for SESSION_SCAN. `image` is borrowed for the
 * session's lifetime (SESSION_FLASH only, else NULL). `name` is how
 * error messages call the node ("node3", "legacy", a configured name).
 * Returns 0 or a negative errno. */
int session_new(struct session **ret, enum session_kind kind, uint8_t node, const char *name,
                const struct isp_image *image, const struct session_config *cfg,
                const struct session_ops *ops, void *userdata);
struct session *session_free(struct session *s);

/* Send the first request. Returns 0, or a negative errno when that
 * failed (ops->send's error; -EBUSY if already started): the session is
 * then SESSION_FAILED with session_get_error() set, and ops->finished is
 * NOT called for it (the caller handles the return value). */
int session_start(struct session *s, uint64_t now_usec);

/* A frame from the bus, any frame (the session ignores and counts what is
 * not for it). */
void session_receive(struct session *s, const struct isp_can_frame *frame, uint64_t now_usec);

/* When the session wants to be woken (absolute, µs, same clock as the
 * now_usec arguments); UINT64_MAX when it waits for nothing. Re-read it
 * after every call into the session. */
uint64_t session_deadline(const struct session *s);

/* The deadline has passed: retransmit or fail. */
void session_timeout(struct session *s, uint64_t now_usec);

/* The link went down: stop the clock. session_resume() re-sends what was
 * in flight and re-arms its time-outs from now_usec. */
void session_pause(struct session *s);
void session_resume(struct session *s, uint64_t now_usec);

/* Stop at once; sends nothing. ops->finished is called with
 * SESSION_CANCELLED (and a NULL error) if the session was running. The
 * commit rule keeps the node in its ISP: the entry is only ever written
 * after everything else is verified. */
void session_cancel(struct session *s);

enum session_state session_get_state(const struct session *s);
enum session_phase session_get_phase(const struct session *s);
const char *session_get_error(const struct session *s);        /* NULL unless failed */
const struct session_stats *session_get_stats(const struct session *s);
enum session_kind session_get_kind(const struct session *s);
const char *session_get_name(const struct session *s);          /* as used in messages */
/* The target's INFO once it answered CONNECT (legacy: info all zero).
 * Returns false before that, and always for SESSION_SCAN. */
bool session_get_target_info(const struct session *s, struct session_node_info *ret);

const char *session_phase_to_string(enum session_phase phase);  /* "connect", "erase", ... */
const char *session_kind_to_string(enum session_kind kind);     /* "flash", "reboot", "scan" */
const char *session_state_to_string(enum session_state state);  /* "running", "succeeded", ... */
