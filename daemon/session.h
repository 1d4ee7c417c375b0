/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The protocol engine: one session per job, speaking docs/protocol.md to a
 * node. Pure code: it reads no clock and does no I/O. The caller (the
 * manager in the daemon, or a unit test driving node cores frame by
 * frame) feeds it received frames and the current time, arms one timer at
 * session_deadline(), and puts on the bus what ops->send hands it.
 *
 * A session works on a set of target nodes, each with its own state, its
 * own requests in flight and its own end (ops->target_finished); replies
 * are routed to the target by node id.
 *
 * A flash of several targets is one multicast where it can be: the
 * extended nodes with the QUIET capability (and CRC and sector erase) form
 * a group that is erased, programmed (one PROGRAM stream for all) and
 * verified together; each member is then repaired, committed and rebooted
 * on its own. The other targets are flashed one by one in the same
 * session. A member that fails leaves the group and fails alone.
 */

#include <stdbool.h>
#include <stdint.h>

#include "isp-frame.h"
#include "isp-image.h"

enum session_kind {
        SESSION_FLASH,          /* connect, erase, program, verify, commit, reboot */
        SESSION_REBOOT,         /* connect, reboot */
        SESSION_SCAN,           /* discover and identify: every node that answers */
        SESSION_VERIFY,         /* compare with the image: CRCs in ISP, IDENTIFY in the application */
        SESSION_READ,           /* read the application area back */
        _SESSION_KIND_MAX,
};

enum session_phase {
        SESSION_PHASE_NONE,
        SESSION_PHASE_CONNECT,
        SESSION_PHASE_ERASE,
        SESSION_PHASE_PROGRAM,
        SESSION_PHASE_VERIFY,
        SESSION_PHASE_REPAIR,           /* QUIET: resending what verify found missing */
        SESSION_PHASE_COMMIT,
        SESSION_PHASE_REBOOT,
        SESSION_PHASE_DISCOVER,
        SESSION_PHASE_BOOT,             /* after REBOOT: waiting for the application's IDENTIFY */
        SESSION_PHASE_READ,             /* read-back */
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
        bool full;                      /* flash: rewrite every image sector, no differential (default false) */
        bool quiet;                     /* flash: QUIET streaming and multicast where nodes have it (default true) */
        unsigned stream_frames;         /* QUIET: PROGRAM frames between two checkpoints (default 64) */
        unsigned stream_checkpoints;    /* QUIET: checkpoints unanswered at most (default 8) */
        unsigned repair_rounds;         /* QUIET: rounds of repairing a node's lost frames (default 3) */
        uint32_t frame_us;              /* time-out allowance per frame queued ahead of a request
                                         * (default 1300: an 8-byte frame at 125 kbit/s, worst case) */
        bool dry_run;                   /* flash: change nothing, say what would be done (default false) */
        uint32_t boot_timeout_ms;       /* after REBOOT, wait this long for IDENTIFY; 0 = don't (default 0;
                                         * stcispd's [Flash] BootTimeoutSec= is 5 s) */
        bool require_boot;              /* an unconfirmed boot fails the node (default false) */
};

/* How a node's boot after REBOOT turned out. */
enum session_boot {
        SESSION_BOOT_NONE,              /* no REBOOT, or not checked */
        SESSION_BOOT_CONFIRMED,         /* the new image answered IDENTIFY */
        SESSION_BOOT_UNCONFIRMED,       /* nothing answered: no application helper? */
        SESSION_BOOT_FAILED,            /* back in its ISP, or another image answers */
        _SESSION_BOOT_MAX,
};

/* What a target's work came to, beyond succeeded/failed. */
enum session_outcome {
        SESSION_OUTCOME_NONE,
        SESSION_OUTCOME_FLASHED,
        SESSION_OUTCOME_UP_TO_DATE,     /* held the image already: nothing written */
        SESSION_OUTCOME_REBOOTED,
        SESSION_OUTCOME_WOULD_FLASH,    /* dry run */
        SESSION_OUTCOME_MATCHES,        /* verify */
        SESSION_OUTCOME_DIFFERS,        /* verify */
        SESSION_OUTCOME_READ,
        SESSION_OUTCOME_NOT_STARTED,    /* stcispd: a canary failed before its turn (never the engine's) */
        _SESSION_OUTCOME_MAX,
};

void session_config_init(struct session_config *cfg);  /* the defaults above */

/* Time-outs derived from the configuration (per target):
 *   ERASE            timeout_ms + sectors * erase_timeout_ms (full ERASE: 248 sectors)
 *   CRC              timeout_ms + 5 ms per 512-byte sector
 *   ENTER_ISP        wait 2 * timeout_ms for ANNOUNCE, then CONNECT again
 *   after CONNECT    listen min(timeout_ms, 100 ms) for conflicting answers
 *                    before anything is erased
 * A request answered only after a retransmission holds the next request of
 * the same command back for that request's time-out, the hold-off (a
 * second answer must not be taken for the next one's). */

/* What the session learnt about a node: from CONNECT, DISCOVER or an
 * unsolicited ANNOUNCE seen while it ran. */
struct session_node_info {
        uint8_t node;                   /* 0 = the legacy node */
        bool legacy;
        bool announce;                  /* it was an ANNOUNCE (node restarted into ISP) */
        struct isp_info info;           /* zero for a legacy node; not valid for an application */
        bool application;               /* a running application answered IDENTIFY */
        bool has_identity;              /* application: `identity` is valid */
        struct isp_identity identity;
        bool has_about;                 /* application: `about` is valid */
        struct isp_about about;
};

struct session_stats {
        uint64_t frames_sent;
        uint64_t retransmissions;
        uint64_t timeouts;
        uint64_t stray_replies;         /* unexpected, duplicate or malformed replies, ignored */
        uint64_t ignored_frames;        /* not ISP replies at all (other traffic, requests), ignored */
        uint64_t restarts;              /* the target restarted (ANNOUNCE) and the flash started over */
};

enum session_reason {
        SESSION_REASON_NONE,            /* succeeded */
        SESSION_REASON_CANCELLED,
        SESSION_REASON_NOT_ANSWERING,   /* CONNECT (and ENTER_ISP) never answered */
        SESSION_REASON_NO_REPLY,        /* a later request unanswered after its retries */
        SESSION_REASON_REFUSED,         /* the node answered with a failure status */
        SESSION_REASON_VERIFY_FAILED,   /* the node's flash differs from the image */
        SESSION_REASON_CONFLICT,        /* another node answered in its place (legacy/extended) */
        SESSION_REASON_PROTOCOL,        /* version mismatch, malformed INFO */
        SESSION_REASON_NO_APPLICATION,  /* REBOOT: no valid application */
        SESSION_REASON_RESTARTED,       /* restarted (ANNOUNCE) too often */
        SESSION_REASON_LINK,            /* the frame could not be sent (ops->send failed) */
        SESSION_REASON_INTERNAL,
        _SESSION_REASON_MAX,
};

/* How one target's work ended. */
struct session_target_result {
        uint8_t node;                   /* 0 = legacy */
        const char *name;               /* as in messages */
        enum session_state state;       /* SUCCEEDED, FAILED or CANCELLED */
        enum session_reason reason;
        enum session_phase phase;       /* the phase it ended in */
        const char *error;              /* NULL unless failed: the full message, as today */
        uint32_t offset;                /* where it applies (VERIFY_FAILED, REFUSED, NO_REPLY), else 0 */
        bool connected;                 /* it answered CONNECT */
        struct session_node_info info;  /* valid when connected */
        bool flash_touched;             /* an ERASE went out: its flash may no longer hold what it did */

        /* flash figures, valid while running too */
        bool multicast;                 /* flashed as a member of a QUIET group */
        uint64_t bytes_done;            /* PROGRAM bytes sent to it (a group's stream counts for every member) */
        uint64_t bytes_total;           /* PROGRAM bytes it needs (differential: of the sectors written) */
        unsigned sectors_written;       /* application sectors programmed (entry sector included) */
        unsigned sectors_skipped;       /* sectors that already held the image: neither erased nor written */
        unsigned sectors_erased;
        unsigned repairs;               /* sectors repaired after verify found them short */
        uint64_t retransmissions;       /* of requests to it alone */

        enum session_outcome outcome;   /* valid once it succeeded */
        enum session_boot boot;
        bool identified;                /* its application answered IDENTIFY: image_crc is valid */
        uint32_t image_crc;             /* what it answered */
        unsigned sectors_to_erase;      /* dry run: would be erased */
        uint64_t estimate_usec;         /* dry run: the flash would take about this long */
        uint8_t differing[ISP_SECTORS / 8];     /* verify, dry run: bit per sector that differs */
};

/* The strings and pointers passed to callbacks are valid during the call
 * only. Apart from `finished`, callbacks must not call into the session.
 * `node` is the target's id (0: the legacy node; ISP_NODE_ALL in a
 * scan). */
struct session_ops {
        /* Put a frame on the bus. Returns 0, or a negative errno: the link
         * queues frames it cannot send at once (ENOBUFS), so an error here
         * is final for the target, which then fails (SESSION_REASON_LINK). */
        int (*send)(void *userdata, const struct isp_can_frame *frame);
        /* The target's phase changed. It goes back to SESSION_PHASE_CONNECT
         * when the target restarted (ANNOUNCE) mid-flash and the flash
         * starts over. */
        void (*phase)(void *userdata, uint8_t node, enum session_phase phase);
        /* The target's progress within its current phase, in bytes
         * (program, verify) or sectors (erase). */
        void (*progress)(void *userdata, uint8_t node, uint64_t done, uint64_t total);
        /* A node answered CONNECT or DISCOVER, or sent ANNOUNCE. */
        void (*node_seen)(void *userdata, const struct session_node_info *node);
        /* One target's work ended. Called once per target, before `finished`
         * (not for SESSION_SCAN, which has no target; not when
         * session_start() fails: see session_get_target_result()). Must not
         * call into the session. */
        void (*target_finished)(void *userdata, const struct session_target_result *result);
        /* The session ended (state is no longer SESSION_RUNNING). Called
         * once; the session may be freed from inside this callback. */
        void (*finished)(void *userdata, enum session_state state, const char *error);
        /* A message for the log: level is a syslog LOG_* priority (LOG_DEBUG
         * for ignored replies, with why they were ignored). May be NULL. */
        void (*log)(void *userdata, int level, const char *message);
        /* Two boards answered on one node id: their UIDs (INFO, ANNOUNCE or
         * IDENTIFY). A target with that id fails (SESSION_REASON_CONFLICT)
         * before anything more is sent to it. May be NULL. */
        void (*node_conflict)(void *userdata, uint8_t node, const uint8_t uid_a[4], const uint8_t uid_b[4]);
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

struct session_target_spec {
        uint8_t node;                   /* 1-254, or 0 for the legacy node */
        const char *name;               /* NULL: "nodeN" or "legacy" */
        bool application;               /* last seen running its application: IDENTIFY before CONNECT */
};

/* The same over a set of targets (copied; names duplicated): distinct ids,
 * the legacy node only alone, at most ISP_NODE_MAX targets. SESSION_SCAN
 * takes none (or one, whose name names the scan). */
int session_new_targets(struct session **ret, enum session_kind kind,
                        const struct session_target_spec *targets, unsigned n_targets,
                        const struct isp_image *image, const struct session_config *cfg,
                        const struct session_ops *ops, void *userdata);
struct session *session_free(struct session *s);

/* Send the first request. Returns 0, or a negative errno when that
 * failed (ops->send's error; -EBUSY if already started): the session is
 * then SESSION_FAILED with session_get_error() set, and ops->finished is
 * NOT called for it (the caller handles the return value). */
int session_start(struct session *s, uint64_t now_usec);

/* A frame from the bus, any frame (the session ignores and counts what is
 * not for it, and logs ignored replies through ops->log). */
void session_receive(struct session *s, const struct isp_can_frame *frame, uint64_t now_usec);
/* The kernel dropped `n` received frames (a full receive queue): any of
 * them may have been another host's PROGRAM, so verify checks every
 * sector of the application area, as after a foreign write heard. */
void session_note_rx_dropped(struct session *s, uint32_t n);

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
/* The phase of the least advanced target still running (else the first
 * target's). */
enum session_phase session_get_phase(const struct session *s);
/* NULL unless failed: the first failed target's message. */
const char *session_get_error(const struct session *s);
const struct session_stats *session_get_stats(const struct session *s);
enum session_kind session_get_kind(const struct session *s);
const char *session_get_name(const struct session *s);          /* the first target's, as used in messages */
/* The target's INFO once it answered CONNECT (legacy: info all zero).
 * Returns false before that, and always for SESSION_SCAN. With several
 * targets: the first one's. */
bool session_get_target_info(const struct session *s, struct session_node_info *ret);
/* The targets, in the order given; SESSION_SCAN has none. A result is
 * final once the target's state is no longer SESSION_RUNNING. Returns false
 * when i is out of range. */
unsigned session_get_n_targets(const struct session *s);
bool session_get_target_result(const struct session *s, unsigned i, struct session_target_result *ret);

/* SESSION_READ, once target i succeeded: its application area as an
 * image (blank sectors and 0xFF bytes left out, the entry bytes in
 * `entry`), valid until the session is freed; NULL otherwise. */
const struct isp_image *session_get_read_image(const struct session *s, unsigned i);

const char *session_phase_to_string(enum session_phase phase);  /* "connect", "erase", ... */
const char *session_boot_to_string(enum session_boot boot);     /* "", "confirmed", "unconfirmed", "failed" */
const char *session_outcome_to_string(enum session_outcome o);  /* "", "flashed", "up-to-date", ... */
const char *session_kind_to_string(enum session_kind kind);     /* "flash", "reboot", "scan" */
const char *session_state_to_string(enum session_state state);  /* "running", "succeeded", ... */
/* "none", "cancelled", "not-answering", "no-reply", "refused", "verify-failed",
 * "conflict", "protocol", "no-application", "restarted", "link", "internal" */
const char *session_reason_to_string(enum session_reason r);
