/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The protocol engine. See session.h for the interface and
 * docs/protocol.md for the protocol it speaks.
 *
 * How it is built:
 *
 * - A session walks through steps (enum step), each of which sends one kind
 *   of request. Requests waiting for a reply are `struct pending` entries of
 *   the target; most steps keep one in flight (stop-and-wait), PROGRAM to an
 *   extended node keeps a window of them, matched by the offset its acks
 *   echo.
 *
 * - Every request has its own deadline; a time-out retransmits it, at most
 *   cfg.retries times, then the step's exhaustion rule applies (mostly: fail
 *   naming the node and the address).
 *
 * - Replies that carry nothing to tell them apart (READ, CRC, ERASE, REBOOT,
 *   and every legacy ack) could be taken for the answer to the next request
 *   of the same command when the reply to a retransmitted request arrives
 *   twice. After such a request is answered the target keeps a quiet period
 *   as long as that request's time-out: the next request of the same
 *   command is held back until it ends, and replies meanwhile are strays.
 *   A retransmission therefore costs one time-out of extra waiting; nothing
 *   else does.
 *
 * - Erase (protocol.md 9): the entry sector alone first; then, on a node
 *   with CRC and sector erase, the image's sectors plus those of the other
 *   sectors a CRC shows are not blank (runs of blank-checked sectors, split
 *   in halves on a mismatch), in runs of at most 255 sectors. Otherwise a
 *   full ERASE (after the entry sector when sector erase exists).
 *
 * - Verify: by CRC over runs of the image's sectors, split in halves down
 *   to the sector on a mismatch so the message names it; else by READ of
 *   every 8-byte block holding image bytes. Both expect the entry bytes
 *   still erased. The entry itself is checked by READ after the commit,
 *   even with cfg.verify off.
 *
 * - ops->finished is only called as the last statement of a public entry
 *   point (finish_if_done()), because the caller may free the session in
 *   it.
 */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isp-crc32.h"
#include "session.h"

#define USEC_PER_MSEC 1000ULL

/* Largest PROGRAM window: the rx depth in INFO is one byte. */
#define SESSION_MAX_WINDOW 255u

/* After the first answer to CONNECT, listen this long (at most; never more
 * than the reply time-out) for a second answer that would be a conflict:
 * a legacy node next to the target, or extended nodes answering a legacy
 * CONNECT. Nothing is erased before it ends. */
#define SESSION_SETTLE_MAX_MS 100u

/* Extra CRC time-out per 512-byte sector: a node computes the CRC bit by
 * bit from flash (protocol.md 4.7, "hosts allow for it"). */
#define SESSION_CRC_MS_PER_SECTOR 5u

/* How often the target may restart (ANNOUNCE) during one flash before the
 * session gives up. */
#define SESSION_MAX_RESTARTS 2u

/* CONNECTs to an absent id, to deselect extended nodes a legacy CONNECT
 * selected by mistake. */
#define SESSION_DESELECT_TRIES 3u

#define APP_SECTORS ((ISP_FLASH_SIZE - (ISP_AREA_END - ISP_AREA_START)) / ISP_SECTOR_SIZE)     /* 248 */
#define SECTOR_OF(offset) ((offset) / ISP_SECTOR_SIZE)
#define ENTRY_SECTOR SECTOR_OF(ISP_ENTRY_OFFSET)
#define RUN_STACK_MAX 320u

enum step {
        STEP_IDLE,
        STEP_CONNECT,           /* CONNECT in flight */
        STEP_ENTER_ISP,         /* ENTER_ISP sent, waiting for ANNOUNCE */
        STEP_SETTLE,            /* connected, listening for conflicting answers */
        STEP_DESELECT,          /* conflict: CONNECT to an absent id, then fail */
        STEP_ERASE_ENTRY,       /* ERASE of the entry sector */
        STEP_ERASE_CHECK,       /* CRCs of the sectors the image leaves blank */
        STEP_ERASE_RUNS,        /* ERASE of sector runs */
        STEP_ERASE_ALL,         /* full ERASE */
        STEP_PROGRAM,
        STEP_VERIFY_CRC,
        STEP_VERIFY_READ,
        STEP_COMMIT_TARGET,     /* PROGRAM hh ll at 0x11001 */
        STEP_COMMIT_OPCODE,     /* PROGRAM 02 at 0x11000 */
        STEP_COMMIT_CHECK,      /* READ 0x11000 */
        STEP_REBOOT,
        STEP_DISCOVER,
        STEP_DONE,
};

struct pending {
        struct isp_request req;
        struct isp_can_frame frame;
        bool sent;                      /* false: held back by the quiet period */
        uint64_t deadline;
        uint64_t timeout_usec;
        unsigned retransmissions;       /* counted against cfg.retries */
        unsigned sends;                 /* every transmission, resume included */
        uint64_t seq;                   /* of the latest transmission */
};

struct sector_run {
        uint16_t first;
        uint16_t count;
};

/* Everything the session knows about one target node. Today a session has
 * exactly one; multicast would hold several. */
struct session_target {
        uint8_t id;                     /* 0: the legacy node */
        bool legacy;
        bool connected;
        struct isp_info info;
        unsigned window;

        unsigned connect_round;         /* 1, or 2 after ENTER_ISP */
        bool malformed_info;            /* it answered CONNECT, but not with an 8-byte INFO */
        bool entered_isp;
        unsigned restarts;
        bool erase_sent;                /* flash may have changed */

        struct pending pend[SESSION_MAX_WINDOW];
        unsigned n_pend;

        bool quiet;
        enum isp_cmd quiet_cmd;
        uint64_t quiet_until;

        /* Sectors to erase after the entry sector (bitmap). */
        uint8_t erase_map[ISP_SECTORS / 8];
        unsigned erase_cursor;          /* next sector to look at */
        unsigned n_dirty;               /* non-image sectors found not blank */

        /* Sector runs still to check by CRC (blank check or verify). */
        struct sector_run runs[RUN_STACK_MAX];
        unsigned n_runs;

        uint32_t cursor;                /* PROGRAM / READ-verify position */
        uint64_t done, total;           /* progress within the phase */

        /* STEP_DESELECT */
        uint8_t conflict_node;          /* first extended node that answered */
        bool conflict_at_connect;       /* it answered the legacy CONNECT */
        uint8_t answered[32];           /* extended ids seen answering */
        uint8_t deselect_id;
        unsigned deselect_tries;
};

struct session {
        enum session_kind kind;
        enum session_state state;
        enum session_phase phase;
        enum step step;

        char *name;
        const struct isp_image *image;
        struct session_config cfg;
        struct session_ops ops;
        void *userdata;

        struct session_stats stats;
        char error[512];
        int send_error;                 /* the first failed ops->send */

        bool started;
        bool paused;
        bool finish_reported;

        uint64_t now;
        uint64_t seq;
        uint64_t wait_deadline;         /* UINT64_MAX: none */
        uint64_t wait_usec;             /* its length, to re-arm on resume */

        uint8_t seen[32];               /* nodes reported through node_seen (not ANNOUNCE) */

        struct session_target targets[1];
        unsigned n_targets;
};

static uint64_t ms_to_usec(uint64_t ms) {
        return ms * USEC_PER_MSEC;
}

static bool bit_test(const uint8_t *map, unsigned bit) {
        return (map[bit / 8] >> (bit % 8)) & 1;
}

static void bit_set(uint8_t *map, unsigned bit) {
        map[bit / 8] |= (uint8_t) (1u << (bit % 8));
}

static bool is_isp_sector(unsigned sector) {
        return sector >= SECTOR_OF(ISP_AREA_START) && sector < SECTOR_OF(ISP_AREA_END);
}

static bool is_entry_byte(uint32_t offset) {
        return offset >= ISP_ENTRY_OFFSET && offset < ISP_ENTRY_OFFSET + ISP_ENTRY_SIZE;
}

/* ------------------------------------------------------------------------ */
/* Strings */

const char *session_phase_to_string(enum session_phase phase) {
        switch (phase) {
        case SESSION_PHASE_NONE:     return "none";
        case SESSION_PHASE_CONNECT:  return "connect";
        case SESSION_PHASE_ERASE:    return "erase";
        case SESSION_PHASE_PROGRAM:  return "program";
        case SESSION_PHASE_VERIFY:   return "verify";
        case SESSION_PHASE_COMMIT:   return "commit";
        case SESSION_PHASE_REBOOT:   return "reboot";
        case SESSION_PHASE_DISCOVER: return "discover";
        case _SESSION_PHASE_MAX:     break;
        }
        return "unknown";
}

const char *session_kind_to_string(enum session_kind kind) {
        switch (kind) {
        case SESSION_FLASH:     return "flash";
        case SESSION_REBOOT:    return "reboot";
        case SESSION_SCAN:      return "scan";
        case _SESSION_KIND_MAX: break;
        }
        return "unknown";
}

const char *session_state_to_string(enum session_state state) {
        switch (state) {
        case SESSION_RUNNING:   return "running";
        case SESSION_SUCCEEDED: return "succeeded";
        case SESSION_FAILED:    return "failed";
        case SESSION_CANCELLED: return "cancelled";
        }
        return "unknown";
}

void session_config_init(struct session_config *cfg) {
        *cfg = (struct session_config) {
                .timeout_ms = 500,
                .erase_timeout_ms = 50,
                .retries = 3,
                .window = 8,
                .discover_ms = 300,
                .verify = true,
                .reboot = true,
        };
}

/* ------------------------------------------------------------------------ */
/* Ending */

_Pragma("GCC diagnostic push")
_Pragma("GCC diagnostic ignored \"-Wformat-nonliteral\"")
__attribute__((format(printf, 2, 3)))
static void session_fail(struct session *s, const char *fmt, ...) {
        va_list ap;

        if (s->state != SESSION_RUNNING)
                return;

        va_start(ap, fmt);
        vsnprintf(s->error, sizeof(s->error), fmt, ap);
        va_end(ap);

        s->state = SESSION_FAILED;
        s->step = STEP_DONE;
        s->wait_deadline = UINT64_MAX;
        for (unsigned i = 0; i < s->n_targets; i++)
                s->targets[i].n_pend = 0;
}
_Pragma("GCC diagnostic pop")

static void session_succeed(struct session *s) {
        if (s->state != SESSION_RUNNING)
                return;
        s->state = SESSION_SUCCEEDED;
        s->step = STEP_DONE;
        s->wait_deadline = UINT64_MAX;
        for (unsigned i = 0; i < s->n_targets; i++)
                s->targets[i].n_pend = 0;
}

/* Report the end, once. Must be the last thing a public entry point does:
 * the callback may free the session. */
static void finish_if_done(struct session *s) {
        if (s->state == SESSION_RUNNING || s->finish_reported)
                return;
        s->finish_reported = true;
        if (s->ops.finished)
                s->ops.finished(s->userdata, s->state,
                                s->state == SESSION_FAILED ? s->error : NULL);
}

/* ------------------------------------------------------------------------ */
/* Callbacks */

static void set_phase(struct session *s, enum session_phase phase) {
        if (s->phase == phase)
                return;
        s->phase = phase;
        if (s->ops.phase)
                s->ops.phase(s->userdata, phase);
}

static void report_progress(struct session *s, struct session_target *t) {
        if (s->ops.progress)
                s->ops.progress(s->userdata, t->done, t->total);
}

static void report_node(struct session *s, uint8_t node, const struct isp_reply *r, bool announce) {
        struct session_node_info n = {
                .node = node,
                .legacy = node == ISP_NODE_LEGACY,
                .announce = announce,
        };

        if (!announce) {
                if (bit_test(s->seen, node))
                        return;
                bit_set(s->seen, node);
        }
        if (!n.legacy)
                n.info = r->u.info;
        if (s->ops.node_seen)
                s->ops.node_seen(s->userdata, &n);
}

/* ------------------------------------------------------------------------ */
/* Sending */

static int send_frame(struct session *s, const struct isp_can_frame *frame) {
        char buf[ISP_FRAME_STRING_MAX];
        int r;

        r = s->ops.send(s->userdata, frame);
        if (r < 0) {
                s->send_error = r;
                session_fail(s, "%s: cannot send %s on the bus: %s",
                             s->name, isp_frame_to_string(frame, buf), strerror(-r));
                return r;
        }
        s->stats.frames_sent++;
        s->seq++;
        return 0;
}

/* A request nobody answers (ENTER_ISP) or whose answers are collected
 * apart (DISCOVER, the deselecting CONNECT). */
static int send_request_raw(struct session *s, const struct isp_request *req) {
        struct isp_can_frame f;
        int r;

        r = isp_request_build(req, &f);
        if (r < 0) {
                session_fail(s, "%s: internal error: cannot build a %s request", s->name, isp_cmd_to_string(req->cmd));
                return r;
        }
        return send_frame(s, &f);
}

static int pending_transmit(struct session *s, struct pending *p) {
        int r;

        r = send_frame(s, &p->frame);
        if (r < 0)
                return r;
        p->sent = true;
        p->sends++;
        p->seq = s->seq;
        p->deadline = s->now + p->timeout_usec;
        return 0;
}

/* Whether replies to `cmd` say which request they answer. */
static bool reply_is_matched(const struct session_target *t, enum isp_cmd cmd) {
        return cmd == ISP_CMD_PROGRAM && !t->legacy;
}

static int target_request(struct session *s, struct session_target *t,
                          const struct isp_request *req, uint64_t timeout_usec) {
        struct pending *p;
        int r;

        if (t->n_pend >= SESSION_MAX_WINDOW) {
                session_fail(s, "%s: internal error: too many requests in flight", s->name);
                return -ENOBUFS;
        }
        p = &t->pend[t->n_pend];
        *p = (struct pending) {
                .req = *req,
                .timeout_usec = timeout_usec,
        };
        r = isp_request_build(req, &p->frame);
        if (r < 0) {
                session_fail(s, "%s: internal error: cannot build a %s request", s->name, isp_cmd_to_string(req->cmd));
                return r;
        }
        t->n_pend++;

        if (t->quiet && req->cmd == t->quiet_cmd && s->now < t->quiet_until && !reply_is_matched(t, req->cmd)) {
                p->deadline = t->quiet_until;
                return 0;
        }
        return pending_transmit(s, p);
}

static void pending_remove(struct session_target *t, struct pending *p) {
        unsigned i = (unsigned) (p - t->pend);

        t->pend[i] = t->pend[--t->n_pend];
}

/* The reply to `p` arrived: drop it, and if it went out more than once,
 * start the quiet period for its command. */
static void pending_done(struct session *s, struct session_target *t, struct pending *p) {
        if (p->sends > 1 && !reply_is_matched(t, p->req.cmd)) {
                t->quiet = true;
                t->quiet_cmd = p->req.cmd;
                t->quiet_until = s->now + p->timeout_usec;
        }
        pending_remove(t, p);
}

static void target_reset_requests(struct session_target *t) {
        t->n_pend = 0;
        t->quiet = false;
}

static struct pending *pending_find(struct session_target *t, const struct isp_reply *r) {
        for (unsigned i = 0; i < t->n_pend; i++) {
                struct pending *p = &t->pend[i];

                if (!p->sent || p->req.cmd != r->cmd)
                        continue;
                if (reply_is_matched(t, r->cmd) && p->req.u.program.offset != r->u.offset)
                        continue;
                return p;
        }
        return NULL;
}

static int retransmit(struct session *s, struct pending *p) {
        p->retransmissions++;
        s->stats.retransmissions++;
        return pending_transmit(s, p);
}

static void set_wait(struct session *s, uint64_t usec) {
        s->wait_usec = usec;
        s->wait_deadline = s->now + usec;
}

static void clear_wait(struct session *s) {
        s->wait_deadline = UINT64_MAX;
}

/* ------------------------------------------------------------------------ */
/* Image helpers */

/* What the node must hold before the commit: the image, entry bytes still
 * erased. */
static uint8_t image_byte_pre_commit(const struct isp_image *img, uint32_t offset) {
        return is_entry_byte(offset) ? 0xFF : img->flash[offset];
}

static uint32_t image_crc_pre_commit(const struct isp_image *img, uint32_t offset, uint32_t len) {
        uint8_t buf[ISP_SECTOR_SIZE];
        uint32_t crc = 0;

        while (len > 0) {
                uint32_t n = len < sizeof(buf) ? len : sizeof(buf);

                for (uint32_t i = 0; i < n; i++)
                        buf[i] = image_byte_pre_commit(img, offset + i);
                crc = isp_crc32_update(crc, buf, n);
                offset += n;
                len -= n;
        }
        return crc;
}

static uint32_t blank_crc(unsigned sectors) {
        uint8_t buf[ISP_SECTOR_SIZE];
        uint32_t crc = 0;

        memset(buf, 0xFF, sizeof(buf));
        for (unsigned i = 0; i < sectors; i++)
                crc = isp_crc32_update(crc, buf, sizeof(buf));
        return crc;
}

/* A byte PROGRAM sends: in the image, not an entry byte (the commit writes
 * those), never in the ISP area. */
static bool byte_to_program(const struct isp_image *img, uint32_t offset) {
        if (offset >= ISP_AREA_START && offset < ISP_AREA_END)
                return false;
        return isp_image_byte_used(img, offset) && !is_entry_byte(offset);
}

/* The next PROGRAM frame at or after *cursor: up to 8 consecutive image
 * bytes, starting and ending with a byte that is not 0xFF (erased flash
 * already holds 0xFF; verify still covers those bytes). */
static bool next_chunk(const struct isp_image *img, uint32_t *cursor, uint32_t *ret_offset, uint8_t *ret_len) {
        uint32_t o = *cursor, start, last;

        while (o < ISP_FLASH_SIZE) {
                if (o % 8 == 0 && img->used[o / 8] == 0) {
                        o += 8;
                        continue;
                }
                if (byte_to_program(img, o) && img->flash[o] != 0xFF)
                        break;
                o++;
        }
        if (o >= ISP_FLASH_SIZE) {
                *cursor = ISP_FLASH_SIZE;
                return false;
        }

        start = last = o;
        for (o = start + 1; o < ISP_FLASH_SIZE && o - start < 8 && byte_to_program(img, o); o++)
                if (img->flash[o] != 0xFF)
                        last = o;

        *ret_offset = start;
        *ret_len = (uint8_t) (last - start + 1);
        *cursor = last + 1;
        return true;
}

static uint64_t program_total(const struct isp_image *img) {
        uint32_t cursor = 0, offset;
        uint64_t total = 0;
        uint8_t len;

        while (next_chunk(img, &cursor, &offset, &len))
                total += len;
        return total;
}

/* The next 8-byte aligned block holding image bytes, for READ verify. */
static bool next_block(const struct isp_image *img, uint32_t *cursor, uint32_t *ret_offset) {
        for (uint32_t i = *cursor / 8; i < ISP_FLASH_SIZE / 8; i++)
                if (img->used[i] != 0) {
                        *ret_offset = i * 8;
                        *cursor = i * 8 + 8;
                        return true;
                }
        *cursor = ISP_FLASH_SIZE;
        return false;
}

static void format_bytes(char *buf, size_t size, const uint8_t *bytes, const bool *mask, unsigned n) {
        size_t k = 0;

        buf[0] = '\0';
        for (unsigned i = 0; i < n && k < size; i++) {
                int w = (mask && !mask[i])
                        ? snprintf(buf + k, size - k, "%s--", i ? " " : "")
                        : snprintf(buf + k, size - k, "%s%02X", i ? " " : "", bytes[i]);
                if (w < 0)
                        break;
                k += (size_t) w;
        }
}

static void format_sectors(char *buf, size_t size, unsigned first, unsigned count) {
        char a[ISP_ADDR_STRING_MAX], b[ISP_ADDR_STRING_MAX];

        snprintf(buf, size, "%s-%s",
                 isp_offset_to_string(first * ISP_SECTOR_SIZE, a),
                 isp_offset_to_string((first + count) * ISP_SECTOR_SIZE - 1, b));
}

/* ------------------------------------------------------------------------ */
/* Sector-run stack (CRC checks, split in halves on a mismatch) */

static void runs_push(struct session *s, struct session_target *t, unsigned first, unsigned count) {
        if (t->n_runs >= RUN_STACK_MAX) {
                session_fail(s, "%s: internal error: sector run stack full", s->name);
                return;
        }
        t->runs[t->n_runs++] = (struct sector_run) { .first = (uint16_t) first, .count = (uint16_t) count };
}

/* Push the runs of consecutive sectors for which `want(sector)` holds,
 * highest first, so they pop in address order. */
static void runs_push_all(struct session *s, struct session_target *t, bool image_sectors) {
        struct sector_run found[ISP_SECTORS];
        unsigned n = 0;

        for (unsigned sec = 0; sec < ISP_SECTORS; sec++) {
                bool want;

                if (is_isp_sector(sec))
                        continue;
                want = isp_image_sector_used(s->image, sec) == image_sectors;
                if (!want)
                        continue;
                if (n > 0 && found[n - 1].first + found[n - 1].count == sec && !is_isp_sector(sec - 1))
                        found[n - 1].count++;
                else
                        found[n++] = (struct sector_run) { .first = (uint16_t) sec, .count = 1 };
        }
        t->n_runs = 0;
        while (n > 0)
                runs_push(s, t, found[n - 1].first, found[n - 1].count), n--;
}

static void runs_split(struct session *s, struct session_target *t, struct sector_run run) {
        unsigned half = run.count / 2u;

        /* the upper half first: the lower pops next */
        runs_push(s, t, run.first + half, run.count - half);
        runs_push(s, t, run.first, half);
}

static int request_crc(struct session *s, struct session_target *t, const struct sector_run *run) {
        struct isp_request req = {
                .cmd = ISP_CMD_CRC,
                .u.crc = {
                        .offset = run->first * ISP_SECTOR_SIZE,
                        .length = run->count * ISP_SECTOR_SIZE,
                },
        };

        return target_request(s, t, &req,
                              ms_to_usec(s->cfg.timeout_ms + (uint64_t) run->count * SESSION_CRC_MS_PER_SECTOR));
}

/* ------------------------------------------------------------------------ */
/* The steps */

static void start_connect(struct session *s, struct session_target *t);
static void start_erase(struct session *s, struct session_target *t);
static void erase_runs_next(struct session *s, struct session_target *t);
static void start_program(struct session *s, struct session_target *t);
static void start_verify(struct session *s, struct session_target *t);
static void start_commit(struct session *s, struct session_target *t);
static void start_reboot(struct session *s, struct session_target *t);

static void start_connect(struct session *s, struct session_target *t) {
        struct isp_request req = {
                .cmd = ISP_CMD_CONNECT,
                .u.connect.target = t->id,
        };

        set_phase(s, SESSION_PHASE_CONNECT);
        target_reset_requests(t);
        clear_wait(s);
        t->connected = false;
        s->step = STEP_CONNECT;
        (void) target_request(s, t, &req, ms_to_usec(s->cfg.timeout_ms));
}

static void connect_exhausted(struct session *s, struct session_target *t) {
        unsigned tries = s->cfg.retries + 1;

        target_reset_requests(t);

        if (t->malformed_info) {
                session_fail(s, "%s answered CONNECT only with malformed INFO (not 8 data bytes): "
                             "is it running an ISP that speaks this protocol?", s->name);
                return;
        }

        /* An application that takes part restarts into its ISP on ENTER_ISP
         * and ANNOUNCEs itself; a legacy node has neither. */
        if (s->kind == SESSION_FLASH && !t->legacy && !t->entered_isp) {
                struct isp_request req = {
                        .cmd = ISP_CMD_ENTER_ISP,
                        .u.enter_isp.target = t->id,
                };

                t->entered_isp = true;
                t->connect_round = 2;
                s->step = STEP_ENTER_ISP;
                if (send_request_raw(s, &req) < 0)
                        return;
                set_wait(s, ms_to_usec(2ULL * s->cfg.timeout_ms));
                return;
        }

        if (t->connect_round > 1)
                session_fail(s, "%s did not answer CONNECT within %u ms (%u tries, then ENTER_ISP and %u more): "
                             "is it powered and on the bus? 'ispctl scan' lists the nodes that answer",
                             s->name, s->cfg.timeout_ms, tries, tries);
        else if (t->legacy)
                session_fail(s, "%s did not answer CONNECT within %u ms (%u tries): "
                             "is it powered, in its ISP and on the bus? 'ispctl scan' lists the nodes that answer",
                             s->name, s->cfg.timeout_ms, tries);
        else
                session_fail(s, "%s did not answer CONNECT within %u ms (%u tries): "
                             "is it powered and on the bus (a node running its application does not answer)? "
                             "'ispctl scan' lists the nodes that answer",
                             s->name, s->cfg.timeout_ms, tries);
}

static void after_settle(struct session *s, struct session_target *t) {
        clear_wait(s);
        if (s->kind == SESSION_FLASH)
                start_erase(s, t);
        else
                start_reboot(s, t);
}

static void on_connected(struct session *s, struct session_target *t, const struct isp_reply *r) {
        target_reset_requests(t);

        if (!t->legacy) {
                if (r->u.info.version != ISP_PROTOCOL_VERSION) {
                        session_fail(s, "%s speaks ISP protocol version %u, stcispd speaks version %u: "
                                     "update stcispd or the node's ISP; nothing was sent to it",
                                     s->name, r->u.info.version, ISP_PROTOCOL_VERSION);
                        return;
                }
                t->info = r->u.info;
        }
        t->connected = true;
        s->step = STEP_SETTLE;
        set_wait(s, ms_to_usec(s->cfg.timeout_ms < SESSION_SETTLE_MAX_MS ? s->cfg.timeout_ms : SESSION_SETTLE_MAX_MS));
}

/* --- conflicts --- */

static void deselect_next(struct session *s, struct session_target *t) {
        struct isp_request req = { .cmd = ISP_CMD_CONNECT };
        unsigned id;

        /* An id that did not answer: CONNECT to it (JOIN clear) deselects
         * every other extended node in ISP. */
        for (id = ISP_NODE_MAX; id >= ISP_NODE_MIN; id--)
                if (!bit_test(t->answered, id))
                        break;

        t->deselect_id = (uint8_t) id;
        t->deselect_tries++;
        req.u.connect.target = (uint8_t) id;
        if (send_request_raw(s, &req) < 0)
                return;
        set_wait(s, ms_to_usec(s->cfg.timeout_ms));
}

static void conflict_fail(struct session *s, struct session_target *t, bool deselected) {
        char other[16];

        snprintf(other, sizeof(other), "node%u", t->conflict_node);
        session_fail(s, "%s: conflict: %s, an extended node, answered %s, so the bus has extended nodes in ISP: "
                     "flash %s by its id, or make the legacy node the only node in ISP on its bus. "
                     "Stopped%s; %s",
                     s->name, other,
                     t->conflict_at_connect ? "the legacy CONNECT" : "while the legacy node was being worked on",
                     other,
                     t->erase_sent ? " (the legacy node stays in ISP)" : " before anything was written",
                     deselected ? "the extended nodes that answered have been deselected again"
                                : "the extended nodes that answered may still be selected");
}

/* A reply from an extended node while the target is the legacy node. The
 * legacy CONNECT (target 0) selects every extended node in ISP, so it
 * answers and would act on everything that follows. */
static void conflict_extended(struct session *s, struct session_target *t, const struct isp_reply *r) {
        if (s->step == STEP_DESELECT) {
                if (r->cmd == ISP_CMD_CONNECT && r->node == t->deselect_id) {
                        /* that id exists after all, and is selected now */
                        bit_set(t->answered, r->node);
                        if (t->deselect_tries >= SESSION_DESELECT_TRIES) {
                                conflict_fail(s, t, false);
                                return;
                        }
                        deselect_next(s, t);
                } else
                        s->stats.stray_replies++;
                return;
        }

        if (r->cmd == ISP_CMD_CONNECT)
                report_node(s, r->node, r, false);
        bit_set(t->answered, r->node);
        t->conflict_node = r->node;
        t->conflict_at_connect = s->step == STEP_CONNECT || s->step == STEP_SETTLE;

        /* Nothing more but the deselecting CONNECTs goes out. */
        target_reset_requests(t);
        s->step = STEP_DESELECT;
        t->deselect_tries = 0;
        deselect_next(s, t);
}

/* A legacy reply while the target is an extended node: stop at once. */
static void conflict_legacy(struct session *s, struct session_target *t, const struct isp_reply *r_or_null) {
        if (r_or_null && r_or_null->cmd == ISP_CMD_CONNECT)
                report_node(s, ISP_NODE_LEGACY, r_or_null, false);
        session_fail(s, "%s: conflict: a legacy node (node id 0) answered on the bus. A legacy node acts on every "
                     "request, so it must be the only node in ISP on its bus; stopped %s",
                     s->name,
                     t->erase_sent ? "(the commit rule keeps the nodes in ISP)" : "before anything was written");
}

/* --- erase --- */

static void start_erase(struct session *s, struct session_target *t) {
        struct isp_request req = { .cmd = ISP_CMD_ERASE };

        set_phase(s, SESSION_PHASE_ERASE);
        target_reset_requests(t);
        memset(t->erase_map, 0, sizeof(t->erase_map));
        t->n_dirty = 0;
        t->done = 0;
        t->total = APP_SECTORS;
        report_progress(s, t);
        t->erase_sent = true;

        if (t->legacy || !(t->info.capabilities & ISP_CAP_SECTOR_ERASE)) {
                /* An extended node's full erase starts with the entry
                 * sector; a legacy node's order is its firmware's. */
                s->step = STEP_ERASE_ALL;
                req.u.erase.whole = true;
                (void) target_request(s, t, &req,
                                      ms_to_usec(s->cfg.timeout_ms + (uint64_t) APP_SECTORS * s->cfg.erase_timeout_ms));
                return;
        }

        /* The commit rule: the entry sector before anything else. */
        s->step = STEP_ERASE_ENTRY;
        req.u.erase.offset = ISP_ENTRY_OFFSET;
        req.u.erase.count = 1;
        (void) target_request(s, t, &req, ms_to_usec(s->cfg.timeout_ms + s->cfg.erase_timeout_ms));
}

static void erase_check_next(struct session *s, struct session_target *t) {
        if (t->n_runs == 0) {
                /* Erase the image's sectors and the ones found not blank. */
                for (unsigned sec = 0; sec < ISP_SECTORS; sec++)
                        if (!is_isp_sector(sec) && sec != ENTRY_SECTOR && isp_image_sector_used(s->image, sec))
                                bit_set(t->erase_map, sec);
                t->erase_cursor = 0;
                s->step = STEP_ERASE_RUNS;
                erase_runs_next(s, t);
                return;
        }
        (void) request_crc(s, t, &t->runs[t->n_runs - 1]);
}

static void erase_runs_next(struct session *s, struct session_target *t) {
        struct isp_request req = { .cmd = ISP_CMD_ERASE };
        unsigned first, count;

        for (first = t->erase_cursor; first < ISP_SECTORS; first++)
                if (bit_test(t->erase_map, first))
                        break;
        if (first >= ISP_SECTORS) {
                start_program(s, t);
                return;
        }
        for (count = 1; first + count < ISP_SECTORS && count < 255 &&
                        bit_test(t->erase_map, first + count) && !is_isp_sector(first + count); count++)
                ;

        t->erase_cursor = first + count;
        req.u.erase.offset = first * ISP_SECTOR_SIZE;
        req.u.erase.count = (uint8_t) count;
        (void) target_request(s, t, &req,
                              ms_to_usec(s->cfg.timeout_ms + (uint64_t) count * s->cfg.erase_timeout_ms));
}

static void on_erase_reply(struct session *s, struct session_target *t, struct pending *p, const struct isp_reply *r) {
        struct isp_request req = p->req;
        char where[40];

        pending_done(s, t, p);

        if (!t->legacy && r->status != ISP_STATUS_OK) {
                if (req.u.erase.whole)
                        snprintf(where, sizeof(where), "of the whole application area");
                else {
                        char range[32];
                        format_sectors(range, sizeof(range), SECTOR_OF(req.u.erase.offset), req.u.erase.count);
                        snprintf(where, sizeof(where), "of %s", range);
                }
                session_fail(s, "%s: ERASE %s failed with status %u: %s", s->name, where, r->status,
                             isp_status_to_string(r->status));
                return;
        }

        switch (s->step) {
        case STEP_ERASE_ALL:
                t->done = APP_SECTORS;
                report_progress(s, t);
                start_program(s, t);
                return;

        case STEP_ERASE_ENTRY:
                t->done = 1;
                report_progress(s, t);
                if (t->info.capabilities & ISP_CAP_CRC) {
                        /* Sectors the image leaves blank must be blank too
                         * (protocol.md 9, step 2): check them by CRC and
                         * erase only those that are not. */
                        runs_push_all(s, t, /* image_sectors= */ false);
                        s->step = STEP_ERASE_CHECK;
                        erase_check_next(s, t);
                } else {
                        /* Nothing cheap tells blank sectors apart: erase
                         * everything (the entry sector is already done). */
                        s->step = STEP_ERASE_ALL;
                        req = (struct isp_request) { .cmd = ISP_CMD_ERASE, .u.erase.whole = true };
                        (void) target_request(s, t, &req,
                                              ms_to_usec(s->cfg.timeout_ms + (uint64_t) APP_SECTORS * s->cfg.erase_timeout_ms));
                }
                return;

        case STEP_ERASE_RUNS:
                t->done += req.u.erase.count;
                report_progress(s, t);
                erase_runs_next(s, t);
                return;

        default:
                return;
        }
}

static void on_blank_check_reply(struct session *s, struct session_target *t, struct pending *p, const struct isp_reply *r) {
        struct sector_run run = t->runs[t->n_runs - 1];
        char range[32];

        pending_done(s, t, p);
        format_sectors(range, sizeof(range), run.first, run.count);
        if (r->status != ISP_STATUS_OK) {
                session_fail(s, "%s: CRC of %s failed with status %u: %s", s->name, range, r->status,
                             isp_status_to_string(r->status));
                return;
        }

        t->n_runs--;
        if (r->u.crc == blank_crc(run.count)) {
                t->done += run.count;
                report_progress(s, t);
        } else if (run.count == 1) {
                bit_set(t->erase_map, run.first);
                t->n_dirty++;
        } else
                runs_split(s, t, run);

        if (s->state == SESSION_RUNNING)
                erase_check_next(s, t);
}

/* --- program --- */

static void program_fill(struct session *s, struct session_target *t) {
        while (s->state == SESSION_RUNNING && t->n_pend < t->window) {
                struct isp_request req = { .cmd = ISP_CMD_PROGRAM };
                uint32_t offset;
                uint8_t len;

                if (!next_chunk(s->image, &t->cursor, &offset, &len))
                        break;
                req.u.program.offset = offset;
                req.u.program.len = len;
                memcpy(req.u.program.data, s->image->flash + offset, len);
                if (target_request(s, t, &req, ms_to_usec(s->cfg.timeout_ms)) < 0)
                        return;
        }

        if (s->state == SESSION_RUNNING && t->n_pend == 0) {
                if (s->cfg.verify)
                        start_verify(s, t);
                else
                        start_commit(s, t);
        }
}

static void start_program(struct session *s, struct session_target *t) {
        unsigned depth;

        set_phase(s, SESSION_PHASE_PROGRAM);
        target_reset_requests(t);
        s->step = STEP_PROGRAM;

        /* A legacy ack says nothing about which frame it belongs to: one
         * frame at a time, and the READ-back verify makes it safe. */
        depth = t->info.rx_depth > 0 ? t->info.rx_depth : 1;
        t->window = t->legacy ? 1 : (depth < s->cfg.window ? depth : s->cfg.window);
        if (t->window == 0)
                t->window = 1;
        if (t->window > SESSION_MAX_WINDOW)
                t->window = SESSION_MAX_WINDOW;

        t->cursor = 0;
        t->done = 0;
        t->total = program_total(s->image);
        report_progress(s, t);
        program_fill(s, t);
}

static void fail_status(struct session *s, const char *what, uint32_t offset, uint8_t status) {
        char a[ISP_ADDR_STRING_MAX];

        session_fail(s, "%s: %s at %s failed with status %u: %s", s->name, what,
                     isp_offset_to_string(offset, a), status, isp_status_to_string(status));
}

static void fail_unanswered(struct session *s, struct session_target *t, const struct pending *p) {
        char a[ISP_ADDR_STRING_MAX], range[32];
        const char *cmd = isp_cmd_to_string(p->req.cmd);

        switch (p->req.cmd) {
        case ISP_CMD_PROGRAM:
                session_fail(s, "%s: %s at %s not acknowledged after %u retransmissions%s",
                             s->name, cmd, isp_offset_to_string(p->req.u.program.offset, a), p->retransmissions,
                             t->legacy ? " (a legacy node does not report write errors: it stays silent)" : "");
                return;
        case ISP_CMD_READ:
                session_fail(s, "%s: READ at %s not answered after %u retransmissions",
                             s->name, isp_offset_to_string(p->req.u.read.offset, a), p->retransmissions);
                return;
        case ISP_CMD_CRC:
                format_sectors(range, sizeof(range), SECTOR_OF(p->req.u.crc.offset), p->req.u.crc.length / ISP_SECTOR_SIZE);
                session_fail(s, "%s: CRC of %s not answered after %u retransmissions",
                             s->name, range, p->retransmissions);
                return;
        case ISP_CMD_ERASE:
                if (p->req.u.erase.whole)
                        snprintf(range, sizeof(range), "the whole application area");
                else
                        format_sectors(range, sizeof(range), SECTOR_OF(p->req.u.erase.offset), p->req.u.erase.count);
                session_fail(s, "%s: ERASE of %s not acknowledged after %u retransmissions (%llu ms each)",
                             s->name, range, p->retransmissions, (unsigned long long) (p->timeout_usec / USEC_PER_MSEC));
                return;
        case ISP_CMD_REBOOT:
                if (s->kind == SESSION_FLASH)
                        session_fail(s, "%s: REBOOT not answered after %u retransmissions: the image is written, "
                                     "verified and committed, but whether the application started is unknown "
                                     "(power-cycle the node)", s->name, p->retransmissions);
                else
                        session_fail(s, "%s: REBOOT not answered after %u retransmissions", s->name, p->retransmissions);
                return;
        default:
                session_fail(s, "%s: %s not answered after %u retransmissions", s->name, cmd, p->retransmissions);
                return;
        }
}

static void on_program_ack(struct session *s, struct session_target *t, struct pending *p, const struct isp_reply *r) {
        uint32_t offset = p->req.u.program.offset;
        uint8_t len = p->req.u.program.len;
        uint64_t seq = p->seq;

        if (!t->legacy && r->status != ISP_STATUS_OK) {
                fail_status(s, "PROGRAM", offset, r->status);
                return;
        }
        pending_done(s, t, p);
        t->done += len;
        report_progress(s, t);

        /* The node answers in order: an unanswered frame sent before the
         * one just acknowledged was lost, or its ack was. Resend it now
         * rather than at its time-out. */
        for (unsigned i = 0; i < t->n_pend && s->state == SESSION_RUNNING; i++) {
                struct pending *q = &t->pend[i];

                if (!q->sent || q->seq >= seq)
                        continue;
                if (q->retransmissions >= s->cfg.retries) {
                        fail_unanswered(s, t, q);
                        return;
                }
                (void) retransmit(s, q);
        }

        if (s->state == SESSION_RUNNING)
                program_fill(s, t);
}

/* --- verify --- */

static void verify_crc_next(struct session *s, struct session_target *t) {
        if (t->n_runs == 0) {
                start_commit(s, t);
                return;
        }
        (void) request_crc(s, t, &t->runs[t->n_runs - 1]);
}

static void verify_read_next(struct session *s, struct session_target *t) {
        struct isp_request req = { .cmd = ISP_CMD_READ };
        uint32_t offset;

        if (!next_block(s->image, &t->cursor, &offset)) {
                start_commit(s, t);
                return;
        }
        req.u.read.offset = offset;
        (void) target_request(s, t, &req, ms_to_usec(s->cfg.timeout_ms));
}

static void start_verify(struct session *s, struct session_target *t) {
        set_phase(s, SESSION_PHASE_VERIFY);
        target_reset_requests(t);
        t->done = 0;
        t->total = 0;

        if (!t->legacy && (t->info.capabilities & ISP_CAP_CRC)) {
                runs_push_all(s, t, /* image_sectors= */ true);
                for (unsigned i = 0; i < t->n_runs; i++)
                        t->total += (uint64_t) t->runs[i].count * ISP_SECTOR_SIZE;
                s->step = STEP_VERIFY_CRC;
                report_progress(s, t);
                verify_crc_next(s, t);
                return;
        }

        for (uint32_t i = 0; i < ISP_FLASH_SIZE / 8; i++)
                if (s->image->used[i])
                        t->total += 8;
        t->cursor = 0;
        s->step = STEP_VERIFY_READ;
        report_progress(s, t);
        verify_read_next(s, t);
}

static void on_verify_crc_reply(struct session *s, struct session_target *t, struct pending *p, const struct isp_reply *r) {
        struct sector_run run = t->runs[t->n_runs - 1];
        uint32_t expected;
        char range[32];

        pending_done(s, t, p);
        format_sectors(range, sizeof(range), run.first, run.count);
        if (r->status != ISP_STATUS_OK) {
                session_fail(s, "%s: CRC of %s failed with status %u: %s", s->name, range, r->status,
                             isp_status_to_string(r->status));
                return;
        }

        t->n_runs--;
        expected = image_crc_pre_commit(s->image, run.first * ISP_SECTOR_SIZE, run.count * ISP_SECTOR_SIZE);
        if (r->u.crc == expected) {
                t->done += (uint64_t) run.count * ISP_SECTOR_SIZE;
                report_progress(s, t);
        } else if (run.count == 1) {
                session_fail(s, "%s: verify failed: sector %s has CRC 0x%08X, the image gives 0x%08X",
                             s->name, range, (unsigned) r->u.crc, (unsigned) expected);
                return;
        } else
                /* narrow it down to the sector, for the message */
                runs_split(s, t, run);

        if (s->state == SESSION_RUNNING)
                verify_crc_next(s, t);
}

static void on_verify_read_reply(struct session *s, struct session_target *t, struct pending *p, const struct isp_reply *r) {
        uint32_t offset = p->req.u.read.offset;
        uint8_t expected[8];
        bool mask[8];
        char a[ISP_ADDR_STRING_MAX], b[ISP_ADDR_STRING_MAX], got_s[32], want_s[32];
        int bad = -1;

        pending_done(s, t, p);
        if (r->status != ISP_STATUS_OK) {
                fail_status(s, "READ", offset, r->status);
                return;
        }

        for (unsigned i = 0; i < 8; i++) {
                mask[i] = isp_image_byte_used(s->image, offset + i) && !is_entry_byte(offset + i);
                expected[i] = image_byte_pre_commit(s->image, offset + i);
                if (bad < 0 && mask[i] && r->u.data[i] != expected[i])
                        bad = (int) i;
        }
        if (bad >= 0) {
                format_bytes(got_s, sizeof(got_s), r->u.data, NULL, 8);
                format_bytes(want_s, sizeof(want_s), expected, mask, 8);
                session_fail(s, "%s: verify failed at %s: the node holds %s at %s, the image gives %s",
                             s->name, isp_offset_to_string(offset + (uint32_t) bad, a), got_s,
                             isp_offset_to_string(offset, b), want_s);
                return;
        }

        t->done += 8;
        report_progress(s, t);
        verify_read_next(s, t);
}

/* --- commit --- */

static void start_commit(struct session *s, struct session_target *t) {
        struct isp_request req = {
                .cmd = ISP_CMD_PROGRAM,
                .u.program = {
                        .offset = ISP_ENTRY_OFFSET + 1,
                        .len = 2,
                        .data = { s->image->entry[1], s->image->entry[2] },
                },
        };

        set_phase(s, SESSION_PHASE_COMMIT);
        target_reset_requests(t);
        s->step = STEP_COMMIT_TARGET;
        (void) target_request(s, t, &req, ms_to_usec(s->cfg.timeout_ms));
}

static void on_commit_ack(struct session *s, struct session_target *t, struct pending *p, const struct isp_reply *r) {
        uint32_t offset = p->req.u.program.offset;
        struct isp_request req;

        if (!t->legacy && r->status != ISP_STATUS_OK) {
                fail_status(s, "PROGRAM of the entry", offset, r->status);
                return;
        }
        pending_done(s, t, p);

        if (s->step == STEP_COMMIT_TARGET) {
                /* The opcode alone, last: "invalid" becomes "valid" in one
                 * byte write (protocol.md 9, step 4). */
                req = (struct isp_request) {
                        .cmd = ISP_CMD_PROGRAM,
                        .u.program = { .offset = ISP_ENTRY_OFFSET, .len = 1, .data = { s->image->entry[0] } },
                };
                s->step = STEP_COMMIT_OPCODE;
        } else {
                req = (struct isp_request) { .cmd = ISP_CMD_READ, .u.read.offset = ISP_ENTRY_OFFSET };
                s->step = STEP_COMMIT_CHECK;
        }
        (void) target_request(s, t, &req, ms_to_usec(s->cfg.timeout_ms));
}

static void on_commit_check(struct session *s, struct session_target *t, struct pending *p, const struct isp_reply *r) {
        char got_s[32], want_s[32];
        uint8_t expected[8];

        pending_done(s, t, p);
        if (r->status != ISP_STATUS_OK) {
                fail_status(s, "READ", ISP_ENTRY_OFFSET, r->status);
                return;
        }
        for (unsigned i = 0; i < 8; i++)
                expected[i] = isp_image_node_byte(s->image, ISP_ENTRY_OFFSET + i);
        if (memcmp(r->u.data, expected, 8) != 0) {
                format_bytes(got_s, sizeof(got_s), r->u.data, NULL, 8);
                format_bytes(want_s, sizeof(want_s), expected, NULL, 8);
                session_fail(s, "%s: after the commit FF:1000 reads %s, the image gives %s",
                             s->name, got_s, want_s);
                return;
        }

        if (s->cfg.reboot)
                start_reboot(s, t);
        else
                session_succeed(s);
}

/* --- reboot --- */

static void start_reboot(struct session *s, struct session_target *t) {
        struct isp_request req = { .cmd = ISP_CMD_REBOOT };

        set_phase(s, SESSION_PHASE_REBOOT);
        target_reset_requests(t);
        s->step = STEP_REBOOT;
        (void) target_request(s, t, &req, ms_to_usec(s->cfg.timeout_ms));
}

static void on_reboot_reply(struct session *s, struct session_target *t, struct pending *p, const struct isp_reply *r) {
        pending_done(s, t, p);

        /* A legacy node's reply says nothing about what it did next. An
         * extended node that starts its application goes silent after its
         * status 0: that is the success. */
        if (t->legacy || r->status == ISP_STATUS_OK) {
                session_succeed(s);
                return;
        }
        if (r->status == ISP_STATUS_NO_APP) {
                if (s->kind == SESSION_FLASH)
                        session_fail(s, "%s reports no valid application after commit: it stays in ISP", s->name);
                else
                        session_fail(s, "%s has no valid application (the entry at FF:1000 is not valid): "
                                     "it stays in ISP; flash an image first", s->name);
                return;
        }
        session_fail(s, "%s: REBOOT failed with status %u: %s", s->name, r->status, isp_status_to_string(r->status));
}

/* ------------------------------------------------------------------------ */
/* Receiving */

/* The target restarted into its ISP (power cut or reset): it is no longer
 * selected and what it was doing is gone. During a flash the session
 * connects again and starts over from the erase; the commit rule makes
 * that safe whatever was done before. A node that keeps restarting fails
 * the job after SESSION_MAX_RESTARTS restarts. */
static void on_target_announce(struct session *s, struct session_target *t) {
        switch (s->step) {
        case STEP_ENTER_ISP:
        case STEP_CONNECT:
        case STEP_SETTLE:
                /* not connected yet, or just: CONNECT (again) right away */
                start_connect(s, t);
                return;

        case STEP_DESELECT:
        case STEP_DISCOVER:
        case STEP_IDLE:
        case STEP_DONE:
                return;

        default:
                break;
        }

        t->restarts++;
        s->stats.restarts++;
        if (t->restarts > SESSION_MAX_RESTARTS) {
                session_fail(s, "%s restarted %u times during the %s (power cut or reset?): giving up; "
                             "it stays in ISP until an update completes",
                             s->name, t->restarts, session_kind_to_string(s->kind));
                return;
        }
        start_connect(s, t);
}

static void on_announce(struct session *s, const struct isp_reply *r) {
        struct session_target *t;

        report_node(s, r->node, r, /* announce= */ true);
        if (s->kind == SESSION_SCAN || s->n_targets == 0)
                return;
        t = &s->targets[0];
        if (t->legacy || r->node != t->id)
                return;
        on_target_announce(s, t);
}

static void on_scan_reply(struct session *s, const struct isp_reply *r) {
        if (r->cmd != ISP_CMD_CONNECT || s->step != STEP_DISCOVER) {
                s->stats.stray_replies++;
                return;
        }
        if (bit_test(s->seen, r->node)) {
                s->stats.stray_replies++;
                return;
        }
        report_node(s, r->node, r, false);
}

static void on_target_connect_reply(struct session *s, struct session_target *t, const struct isp_reply *r) {
        report_node(s, r->node, r, false);
        if (s->step == STEP_CONNECT || s->step == STEP_ENTER_ISP) {
                /* In STEP_ENTER_ISP: a late answer to the first round. */
                on_connected(s, t, r);
                return;
        }
        s->stats.stray_replies++;
}

static void on_reply(struct session *s, const struct isp_reply *r) {
        struct session_target *t;
        struct pending *p;

        if (r->cmd == ISP_CMD_ENTER_ISP) {
                on_announce(s, r);
                return;
        }
        if (s->kind == SESSION_SCAN) {
                on_scan_reply(s, r);
                return;
        }

        t = &s->targets[0];
        if (r->node == ISP_NODE_LEGACY) {
                if (!t->legacy) {
                        conflict_legacy(s, t, r);
                        return;
                }
        } else if (t->legacy) {
                conflict_extended(s, t, r);
                return;
        } else if (r->node != t->id) {
                s->stats.stray_replies++;
                return;
        }

        if (s->step == STEP_DESELECT) {
                s->stats.stray_replies++;
                return;
        }
        if (r->cmd == ISP_CMD_CONNECT) {
                on_target_connect_reply(s, t, r);
                return;
        }

        p = pending_find(t, r);
        if (!p) {
                s->stats.stray_replies++;
                return;
        }

        switch (s->step) {
        case STEP_ERASE_ENTRY:
        case STEP_ERASE_RUNS:
        case STEP_ERASE_ALL:
                on_erase_reply(s, t, p, r);
                return;
        case STEP_ERASE_CHECK:
                on_blank_check_reply(s, t, p, r);
                return;
        case STEP_PROGRAM:
                on_program_ack(s, t, p, r);
                return;
        case STEP_VERIFY_CRC:
                on_verify_crc_reply(s, t, p, r);
                return;
        case STEP_VERIFY_READ:
                on_verify_read_reply(s, t, p, r);
                return;
        case STEP_COMMIT_TARGET:
        case STEP_COMMIT_OPCODE:
                on_commit_ack(s, t, p, r);
                return;
        case STEP_COMMIT_CHECK:
                on_commit_check(s, t, p, r);
                return;
        case STEP_REBOOT:
                on_reboot_reply(s, t, p, r);
                return;
        default:
                s->stats.stray_replies++;
                return;
        }
}

/* An ISP reply ID from node 0 whose payload did not parse: still a legacy
 * reply ("whatever its DLC or data", protocol.md 6). */
static bool is_node0_reply(const struct isp_can_frame *f) {
        unsigned cmd = (f->id & ISP_ID_CMD_MASK) >> ISP_ID_CMD_SHIFT;

        return (f->flags & ISP_FRAME_EXTENDED) && !(f->flags & (ISP_FRAME_FLAG_RTR | ISP_FRAME_FLAG_FD)) &&
               (f->id & ISP_ID_KIND_MASK) == ISP_ID_REPLY && (f->id & ISP_ID_ARG_MASK) == 0 &&
               cmd <= ISP_CMD_REBOOT;
}

void session_receive(struct session *s, const struct isp_can_frame *frame, uint64_t now_usec) {
        struct isp_reply r;
        int k;

        if (!s || !frame || !s->started || s->state != SESSION_RUNNING)
                return;
        s->now = now_usec;

        k = isp_reply_parse(frame, &r);
        if (k < 0) {
                if (k == -ISP_FRAME_STANDARD_ID || k == -ISP_FRAME_RTR || k == -ISP_FRAME_FD || k == -ISP_FRAME_NOT_ISP)
                        s->stats.ignored_frames++;
                else if (!s->paused && s->kind != SESSION_SCAN && s->n_targets > 0 &&
                         !s->targets[0].legacy && is_node0_reply(frame))
                        conflict_legacy(s, &s->targets[0], NULL);
                else {
                        s->stats.stray_replies++;
                        if (s->kind != SESSION_SCAN && frame->id == isp_reply_id(ISP_CMD_CONNECT, s->targets[0].id) &&
                            !s->targets[0].legacy)
                                s->targets[0].malformed_info = true;
                }
                finish_if_done(s);
                return;
        }

        if (s->paused) {
                /* The link is down: whatever this answers is re-sent on
                 * resume. */
                s->stats.stray_replies++;
                return;
        }

        on_reply(s, &r);
        finish_if_done(s);
}

/* ------------------------------------------------------------------------ */
/* Time */

uint64_t session_deadline(const struct session *s) {
        uint64_t d;

        if (!s || !s->started || s->paused || s->state != SESSION_RUNNING)
                return UINT64_MAX;

        d = s->wait_deadline;
        for (unsigned i = 0; i < s->n_targets; i++) {
                const struct session_target *t = &s->targets[i];

                for (unsigned j = 0; j < t->n_pend; j++)
                        if (t->pend[j].deadline < d)
                                d = t->pend[j].deadline;
        }
        return d;
}

static void on_wait_expired(struct session *s, struct session_target *t) {
        clear_wait(s);
        switch (s->step) {
        case STEP_ENTER_ISP:
                /* ANNOUNCE missed or never sent: CONNECT again anyway. */
                start_connect(s, t);
                return;
        case STEP_SETTLE:
                after_settle(s, t);
                return;
        case STEP_DESELECT:
                /* Nobody answered the absent id: everyone is deselected. */
                conflict_fail(s, t, true);
                return;
        case STEP_DISCOVER:
                session_succeed(s);
                return;
        default:
                return;
        }
}

void session_timeout(struct session *s, uint64_t now_usec) {
        struct session_target *t;

        if (!s || !s->started || s->paused || s->state != SESSION_RUNNING)
                return;
        s->now = now_usec;
        t = &s->targets[0];

        for (unsigned i = 0; i < t->n_pend && s->state == SESSION_RUNNING; i++) {
                struct pending *p = &t->pend[i];

                if (p->deadline > now_usec)
                        continue;
                if (!p->sent) {
                        /* quiet period over */
                        t->quiet = false;
                        (void) pending_transmit(s, p);
                        continue;
                }
                s->stats.timeouts++;
                if (p->retransmissions < s->cfg.retries) {
                        (void) retransmit(s, p);
                        continue;
                }
                if (s->step == STEP_CONNECT)
                        connect_exhausted(s, t);
                else
                        fail_unanswered(s, t, p);
                /* the pending set changed under us */
                finish_if_done(s);
                return;
        }

        if (s->state == SESSION_RUNNING && s->wait_deadline <= now_usec)
                on_wait_expired(s, t);

        finish_if_done(s);
}

void session_pause(struct session *s) {
        if (!s || !s->started || s->state != SESSION_RUNNING)
                return;
        s->paused = true;
}

void session_resume(struct session *s, uint64_t now_usec) {
        struct session_target *t;

        if (!s || !s->paused || s->state != SESSION_RUNNING)
                return;
        s->paused = false;
        s->now = now_usec;
        t = &s->targets[0];
        t->quiet = false;

        /* Frames and replies may have been lost while the link was down:
         * send again what is in flight. A re-send does not count against
         * the request's retries, but a second answer to it is possible, so
         * it counts as a transmission (and arms the quiet period). */
        for (unsigned i = 0; i < t->n_pend && s->state == SESSION_RUNNING; i++) {
                struct pending *p = &t->pend[i];

                if (p->sent)
                        s->stats.retransmissions++;
                (void) pending_transmit(s, p);
        }

        if (s->state == SESSION_RUNNING && s->wait_deadline != UINT64_MAX) {
                if (s->step == STEP_DISCOVER) {
                        struct isp_request req = { .cmd = ISP_CMD_CONNECT, .u.connect.target = ISP_NODE_ALL };
                        (void) send_request_raw(s, &req);
                } else if (s->step == STEP_ENTER_ISP) {
                        struct isp_request req = { .cmd = ISP_CMD_ENTER_ISP, .u.enter_isp.target = t->id };
                        (void) send_request_raw(s, &req);
                } else if (s->step == STEP_DESELECT) {
                        struct isp_request req = { .cmd = ISP_CMD_CONNECT, .u.connect.target = t->deselect_id };
                        (void) send_request_raw(s, &req);
                }
                set_wait(s, s->wait_usec);
        }

        finish_if_done(s);
}

void session_cancel(struct session *s) {
        if (!s || s->state != SESSION_RUNNING)
                return;
        /* Nothing is sent: the entry is written only after everything
         * else verified, so the node is in ISP or still has its old
         * application. */
        s->state = SESSION_CANCELLED;
        s->step = STEP_DONE;
        s->wait_deadline = UINT64_MAX;
        for (unsigned i = 0; i < s->n_targets; i++)
                target_reset_requests(&s->targets[i]);
        finish_if_done(s);
}

/* ------------------------------------------------------------------------ */
/* Life cycle */

int session_new(struct session **ret, enum session_kind kind, uint8_t node, const char *name,
                const struct isp_image *image, const struct session_config *cfg,
                const struct session_ops *ops, void *userdata) {
        struct session *s;
        char defname[16];

        if (!ret || !cfg || !ops || !ops->send)
                return -EINVAL;
        if ((unsigned) kind >= _SESSION_KIND_MAX)
                return -EINVAL;
        if (kind == SESSION_FLASH && !image)
                return -EINVAL;
        if (kind != SESSION_SCAN && node == ISP_NODE_ALL)
                return -EINVAL;
        if (cfg->timeout_ms == 0)
                return -EINVAL;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;

        if (!name || !*name) {
                if (kind == SESSION_SCAN)
                        snprintf(defname, sizeof(defname), "scan");
                else if (node == ISP_NODE_LEGACY)
                        snprintf(defname, sizeof(defname), "legacy");
                else
                        snprintf(defname, sizeof(defname), "node%u", node);
                name = defname;
        }
        s->name = strdup(name);
        if (!s->name) {
                free(s);
                return -ENOMEM;
        }

        s->kind = kind;
        s->state = SESSION_RUNNING;
        s->phase = SESSION_PHASE_NONE;
        s->step = STEP_IDLE;
        s->image = kind == SESSION_FLASH ? image : NULL;
        s->cfg = *cfg;
        if (s->cfg.window == 0)
                s->cfg.window = 1;
        s->ops = *ops;
        s->userdata = userdata;
        s->wait_deadline = UINT64_MAX;

        s->n_targets = 1;
        s->targets[0].id = kind == SESSION_SCAN ? ISP_NODE_ALL : node;
        s->targets[0].legacy = kind != SESSION_SCAN && node == ISP_NODE_LEGACY;
        s->targets[0].connect_round = 1;
        s->targets[0].window = 1;

        *ret = s;
        return 0;
}

struct session *session_free(struct session *s) {
        if (!s)
                return NULL;
        free(s->name);
        free(s);
        return NULL;
}

int session_start(struct session *s, uint64_t now_usec) {
        if (!s)
                return -EINVAL;
        if (s->started || s->state != SESSION_RUNNING)
                return -EBUSY;
        s->started = true;
        s->now = now_usec;

        if (s->kind == SESSION_SCAN) {
                struct isp_request req = { .cmd = ISP_CMD_CONNECT, .u.connect.target = ISP_NODE_ALL };

                set_phase(s, SESSION_PHASE_DISCOVER);
                s->step = STEP_DISCOVER;
                if (send_request_raw(s, &req) >= 0)
                        set_wait(s, ms_to_usec(s->cfg.discover_ms));
        } else
                start_connect(s, &s->targets[0]);

        if (s->state != SESSION_RUNNING) {
                /* Reported through the return value, not ops->finished. */
                s->finish_reported = true;
                return s->send_error < 0 ? s->send_error : -EIO;
        }
        return 0;
}

enum session_state session_get_state(const struct session *s) {
        return s->state;
}

enum session_phase session_get_phase(const struct session *s) {
        return s->phase;
}

const char *session_get_error(const struct session *s) {
        return s->state == SESSION_FAILED ? s->error : NULL;
}

const struct session_stats *session_get_stats(const struct session *s) {
        return &s->stats;
}

enum session_kind session_get_kind(const struct session *s) {
        return s->kind;
}

const char *session_get_name(const struct session *s) {
        return s->name;
}

bool session_get_target_info(const struct session *s, struct session_node_info *ret) {
        const struct session_target *t = &s->targets[0];

        if (s->kind == SESSION_SCAN || !t->connected)
                return false;
        *ret = (struct session_node_info) {
                .node = t->id,
                .legacy = t->legacy,
                .info = t->info,
        };
        return true;
}
