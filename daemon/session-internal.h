/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The protocol engine's insides, shared by session.c (life cycle, routing
 * replies and time to the targets, ending), session-connect.c (connecting,
 * conflicts, restarts) and session-flash.c (erase, program, verify,
 * commit, reboot). Not for use outside the engine.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <syslog.h>

#include "plan.h"
#include "probe.h"
#include "session.h"
#include "transport.h"

#define USEC_PER_MSEC 1000ULL

#define APP_SECTORS ((ISP_FLASH_SIZE - (ISP_AREA_END - ISP_AREA_START)) / ISP_SECTOR_SIZE)     /* 248 */
#define SECTOR_OF(offset) ((offset) / ISP_SECTOR_SIZE)

#define SESSION_ERROR_MAX 512

/* After a loss failure: what would help on a lossy bus. */
#define SESSION_LOSS_HINT "; a lossy bus may need more: Retries= (or Timeout=) in stcispd.conf(5)"

/* Extra CRC time-out per 512-byte sector: a node computes the CRC bit by
 * bit from flash (protocol.md 4.7, "hosts allow for it"). */
#define SESSION_CRC_MS_PER_SECTOR 5u

#define ENTRY_SECTOR SECTOR_OF(ISP_ENTRY_OFFSET)

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
        STEP_COMMIT_ADDR_CHECK, /* legacy: READ 0x11000 before the opcode (its acks say nothing) */
        STEP_REBOOT,
        STEP_DISCOVER,
        STEP_WAIT,              /* connected: waits for its unit or its turn */
        STEP_UNIT,              /* a member of the running unit, which drives it */
        STEP_COMMIT_SELECT,     /* CONNECT alone (flags 0) before its commit */
        STEP_IDENTIFY,          /* IDENTIFY in flight: is it running its application? */
        STEP_BOOT,              /* after REBOOT: IDENTIFY until the application answers */
        STEP_LOOK,              /* answers lost at the end, its ISP answers: READ of the entry */
        STEP_READ_CRC,          /* read-back: a CRC per sector (blank ones are left out) */
        STEP_READ_DATA,         /* read-back: READ of a sector that is not blank */
        STEP_DONE,
};

/* At most this many requests of a group batch in flight (CRCs answered in
 * order by every member). */
#define UNIT_BATCH_MAX 8u
/* Checkpoints of a PROGRAM stream in flight, at most. */
#define UNIT_CKPT_MAX 16u

enum unit_step {
        U_IDLE,
        U_SELECT_FIRST,         /* CONNECT of the first member (JOIN clear) */
        U_SELECT_REST,          /* CONNECT JOIN of the others */
        U_PRECHECK_BLANK,       /* CRCs of the sectors the image leaves blank */
        U_PRECHECK_IMAGE,       /* differential: a CRC per image sector */
        U_ERASE_ENTRY,          /* ERASE of the entry sector, after the settle time */
        U_ERASE,                /* ERASE of sector runs, per class of members */
        U_STREAM,               /* the PROGRAM stream */
        U_VERIFY_RUNS,          /* a CRC per run of written sectors */
        U_VERIFY_SECTORS,       /* a CRC per sector of a run that differed */
        U_REPAIR_LOCATE,        /* a CRC per 64-byte block of the sectors that differ */
        U_REPAIR_ERASE,         /* last round: ERASE the sectors that still differ */
        U_REPAIR_CHECK,         /* a CRC per repaired sector */
        U_MEMBERS,              /* member by member: repair, commit, reboot */
        U_DONE,
};

struct unit_ckpt {
        uint8_t node;                   /* the member that answers it */
        uint64_t sent;
        uint64_t deadline;
        unsigned sends;
        uint64_t bytes;                 /* stream bytes before it */
        bool final;                     /* the READ after the last frame of the stream */
        bool answered;
        struct isp_can_frame frame;
};

/* Everything the session knows about one target node. A scan has one
 * target too: the broadcast id, standing for whoever answers. */
struct session_target {
        struct session *session;
        uint8_t id;                     /* 0: the legacy node */
        bool legacy;
        char *name;                     /* owned; as in messages */

        enum session_state state;
        enum session_reason reason;
        enum session_phase phase;
        enum step step;
        char error[SESSION_ERROR_MAX];
        uint32_t error_offset;
        bool reported;                  /* through ops->target_finished */

        uint64_t wait_deadline;         /* UINT64_MAX: none */
        uint64_t wait_usec;             /* its length, to re-arm on resume */
        uint8_t seen[32];               /* nodes reported through node_seen (not ANNOUNCE) */

        bool connected;
        struct isp_info info;
        unsigned window;
        unsigned connect_round;         /* 1, or 2 after ENTER_ISP */
        bool malformed_info;            /* it answered CONNECT, but not with an 8-byte INFO */
        bool entered_isp;
        unsigned restarts;
        bool erase_sent;                /* flash may have changed */

        struct transport tp;

        struct plan_sectors erase_set;  /* to erase after the entry sector */
        unsigned erase_cursor;          /* next sector to look at */
        unsigned n_dirty;               /* non-image sectors found not blank */
        struct probe probe;             /* blank check or CRC verify */

        uint32_t cursor;                /* PROGRAM: chunk index; READ verify: offset */
        uint64_t done, total;           /* progress within the phase */

        /* STEP_DESELECT */
        uint8_t conflict_node;          /* first extended node that answered */
        bool conflict_at_connect;       /* it answered the legacy CONNECT */
        uint8_t answered[32];           /* extended ids seen answering */
        uint8_t deselect_id;
        unsigned deselect_tries;

        /* The unit flow (session-unit.c) */
        bool in_unit;                   /* a member of the running unit */
        bool unit_done;                 /* its unit work is over: its commit and reboot follow */
        bool selected;                  /* answered the unit's selecting CONNECT */
        bool erase_handled;             /* U_ERASE: its class is erased */
        bool commit_selecting;          /* STEP_COMMIT_SELECT: the CONNECT is out */
        bool turn;                      /* it works alone now: connecting goes straight on */
        bool alone;                     /* selected alone by its CONNECT, nothing selected since */
        uint64_t settle_until;          /* nothing is erased before this */
        uint64_t last_heard;            /* its latest reply */
        uint32_t batch_crc[UNIT_BATCH_MAX];     /* its answers to the unit's batch */
        uint8_t batch_status[UNIT_BATCH_MAX];
        unsigned batch_n;
        /* Answers carry no offset: a member slower than the deadline may
         * still be answering the first transmission when the batch goes
         * out again. A retransmission is therefore preceded by a READ;
         * what a member answers before its READ answer is dropped. */
        bool batch_flushed;
        struct plan_sectors write_set;  /* sectors it gets programmed */
        struct plan_sectors skip_set;   /* image sectors that already hold the image */
        struct plan_sectors bad_set;    /* verify: sectors that differ from the image */
        unsigned stray;                 /* verify: 1 + the first sector outside write_set that differs, or 0 */
        uint32_t stray_crc;             /* its CRC */
        bool echo_on;                   /* selected with ISP_CONNECT_ECHO: its CRC and ERASE answers say what they answer */
        struct plan_sectors erase_bad;  /* repair: sectors to erase first */
        uint8_t bad_blocks[ISP_SECTORS];        /* repair: bit b: 64-byte block b of the sector differs */
        unsigned repair_round;
        uint64_t fast_timeout_usec;     /* commit and reboot: learnt from the round trip (0: the configured one) */
        bool multicast;
        uint64_t prog_done, prog_total;
        unsigned sectors_written, sectors_skipped, sectors_erased, repairs;
        uint64_t retransmissions;

        /* applications (session-app.c) */
        bool app_hint;                  /* last seen running its application: IDENTIFY first */
        bool identify_done;             /* IDENTIFY was tried during this connect */
        bool connect_tried;             /* a CONNECT went out */
        unsigned enter_isp_count;       /* ENTER_ISPs sent */
        bool recheck;                   /* after ENTER_ISP: asked again whether it runs its application */
        bool identify_before_enter;     /* IDENTIFY went out before the first ENTER_ISP */
        bool identified;                /* its application answered IDENTITY */
        bool after_lost;                /* STEP_BOOT after the commit or REBOOT went unanswered */
        bool looked;                    /* after_lost: its entry was READ (STEP_LOOK) */
        char lost_error[SESSION_ERROR_MAX];     /* the failure, if its application does not answer */
        struct isp_identity identity;
        bool up_to_date;                /* holds the image: no erase, no write */
        enum session_outcome outcome;
        enum session_boot boot;
        uint64_t boot_until;            /* STEP_BOOT: gives up then */
        struct plan_sectors differing;  /* verify, dry run */
        unsigned sectors_to_erase;
        uint64_t estimate_usec;

        /* read-back (session-read.c) */
        struct isp_image *read_img;     /* owned */
        unsigned read_sector;
        unsigned read_tries;
        uint32_t read_crc;              /* the node's CRC of the sector being read */
};

/* A set of members selected together and worked on together: a QUIET
 * group (one or more nodes), or one node with acknowledged PROGRAMs. */
struct unit {
        enum unit_step step;
        bool quiet;
        struct session_target **m;      /* the members still in it; owned array */
        unsigned n;
        struct session_target **all;    /* every member it started with */
        unsigned n_all;
        unsigned next_member;           /* U_MEMBERS: index into `all` */
        unsigned member_pass;           /* U_MEMBERS: 1 repairs, 2 commits */
        unsigned window;                /* batch size: the smallest receive depth */

        /* the group request in flight: one ERASE, or a batch of CRCs */
        struct isp_request req[UNIT_BATCH_MAX];
        struct isp_can_frame frame[UNIT_BATCH_MAX];
        unsigned n_req;
        unsigned batch_gen;             /* counts batch_begin() */
        bool req_out;
        uint64_t req_deadline;
        uint64_t req_timeout;
        uint64_t req_extra;             /* the first send's allowance for frames queued ahead */
        unsigned req_tries;
        bool req_retransmitted;
        uint64_t req_sent_at;
        uint64_t req_extra_pending;     /* for the next batch: frames queued ahead of it */
        uint64_t holdoff_until;         /* the next batch waits: late answers may still come */
        uint64_t usec_per_sector;       /* learnt CRC answer time per sector (0: none yet) */
        enum unit_step after_select;

        struct probe probe;             /* group verdict: a run matches when it matches on every member */
        unsigned cursor;                /* sector or chunk cursor of the step */
        struct plan_sectors erase_done; /* U_ERASE: members' erase sets already handled */
        struct plan_sectors class_set;  /* U_ERASE: the erase set of the class being erased */
        bool class_active;
        struct session_target **class_saved;    /* the unit's members while a class is selected; owned */
        unsigned n_class_saved;
        unsigned erase_cursor;
        unsigned erase_cursor_repair;
        bool reselect;                  /* a class was selected alone: select the unit again before the stream */
        bool dropped;                   /* a member left, maybe still selected: select again before erasing */
        bool repairing;                 /* the unit is one member being repaired */

        /* stream */
        struct plan_sectors stream_set;
        uint64_t stream_bytes;
        uint64_t bytes_sent;
        unsigned since_ckpt;
        bool final_sent;
        unsigned rr;                    /* next member to answer a checkpoint */
        struct unit_ckpt ckpt[UNIT_CKPT_MAX];
        unsigned n_ckpt;
        uint64_t unconfirmed;           /* frames sent after the last answered checkpoint */
        struct plan_sectors verify_set;
        struct plan_sectors suspect;    /* verify: sectors of runs that differed on some member */
};

struct session {
        enum session_kind kind;
        enum session_state state;

        const struct isp_image *image;
        struct plan plan;               /* SESSION_FLASH only */
        struct session_config cfg;
        struct session_ops ops;
        void *userdata;

        struct session_stats stats;
        int send_error;                 /* the first failed ops->send */

        bool started;
        bool paused;
        bool finish_reported;

        uint64_t now;
        uint64_t seq;                   /* frames sent */

        struct session_target *targets; /* owned */
        unsigned n_targets;

        struct unit unit;
        bool unit_started;              /* the group (if any) has had its turn */

        /* SESSION_SCAN: the UID each id answered with, to see two boards on one id */
        uint8_t scan_uid[256][4];
        uint8_t scan_has_uid[32];
        uint8_t scan_conflict[32];
        uint8_t seen_app[32];           /* ids reported with IDENTITY */
        bool connect_phase;             /* FLASH: every target connects first, then the work is scheduled */

        /* PROGRAM or ERASE requests another host put on the bus: verify
         * then covers every sector, and erases no leftover */
        uint64_t foreign_writes;
        bool foreign_wrote;             /* the first was a PROGRAM or ERASE (else a CRC, or frames lost) */
        char foreign_write[80];         /* the first one, e.g. "PROGRAM at FE:0410 (1A200410#1234)" */
};

static inline uint64_t ms_to_usec(uint64_t ms) {
        return ms * USEC_PER_MSEC;
}

static inline bool bit_test(const uint8_t *map, unsigned bit) {
        return (map[bit / 8] >> (bit % 8)) & 1;
}

static inline void bit_set(uint8_t *map, unsigned bit) {
        map[bit / 8] |= (uint8_t) (1u << (bit % 8));
}

static inline uint64_t target_short_timeout(const struct session *s, const struct session_target *t) {
        return t->fast_timeout_usec > 0 ? t->fast_timeout_usec : ms_to_usec(s->cfg.timeout_ms);
}

/* Why verify found a sector changed that the session did not write, once
 * it heard another host on the bus. */
static inline const char *foreign_cause(const struct session *s) {
        return s->foreign_wrote ? "another host wrote to it"
                                : "it changed after its check";
}

static inline bool target_echo_capable(const struct session_target *t) {
        return !t->legacy && (t->info.capabilities & ISP_CAP_ECHO);
}

static inline bool target_running(const struct session_target *t) {
        return t->state == SESSION_RUNNING;
}

/* session.c */
__attribute__((format(printf, 5, 6)))
void session_fail(struct session *s, struct session_target *t, enum session_reason reason, uint32_t offset,
                  const char *fmt, ...);
void session_succeed(struct session *s, struct session_target *t);
/* Put a frame on the bus and count it; a negative errno when ops->send
 * failed (recorded as the session's send error). */
int session_put_frame(struct session *s, const struct isp_can_frame *frame);
/* `t` fails because `frame` could not be sent. */
void session_fail_link(struct session *s, struct session_target *t, const struct isp_can_frame *frame, int error);
__attribute__((format(printf, 3, 4)))
void session_log(struct session *s, int level, const char *fmt, ...);
void session_ignore_reply(struct session *s, const struct session_target *t, const struct isp_reply *r,
                          const char *why);
void set_phase(struct session *s, struct session_target *t, enum session_phase phase);
void report_progress(struct session *s, struct session_target *t);
void report_node(struct session *s, struct session_target *t, uint8_t node, const struct isp_reply *r, bool announce);
int send_request_raw(struct session *s, struct session_target *t, const struct isp_request *req);
int target_request(struct session *s, struct session_target *t, const struct isp_request *req, uint64_t timeout_usec);
void target_reset_requests(struct session_target *t);
void set_wait(struct session *s, struct session_target *t, uint64_t usec);
void clear_wait(struct session_target *t);

/* session-connect.c */
void start_connect(struct session *s, struct session_target *t);
void connect_exhausted(struct session *s, struct session_target *t);
void on_target_connect_reply(struct session *s, struct session_target *t, const struct isp_reply *r);
void conflict_extended(struct session *s, struct session_target *t, const struct isp_reply *r);
void conflict_legacy(struct session *s, struct session_target *t, const struct isp_reply *r_or_null);
void on_target_announce(struct session *s, struct session_target *t);
void on_connect_wait_expired(struct session *s, struct session_target *t);
void after_connected_turn(struct session *s, struct session_target *t);
void connect_resume(struct session *s, struct session_target *t);

/* session-flash.c */
void start_commit(struct session *s, struct session_target *t);
void start_erase(struct session *s, struct session_target *t);
void start_reboot(struct session *s, struct session_target *t);
void fail_unanswered(struct session *s, struct session_target *t, const struct pending *p);
void on_target_reply(struct session *s, struct session_target *t, struct pending *p, const struct isp_reply *r);
void fail_status(struct session *s, struct session_target *t, const char *what, uint32_t offset, uint8_t status);
void format_sectors(char *buf, size_t size, unsigned first, unsigned count);

/* session-app.c: IDENTIFY while connecting, conflicts of UIDs, the boot */
void start_identify(struct session *s, struct session_target *t);
void on_identify_reply(struct session *s, struct session_target *t, const struct isp_reply *r);
void identify_exhausted(struct session *s, struct session_target *t);
void identify_wait_expired(struct session *s, struct session_target *t);
void start_recheck(struct session *s, struct session_target *t);
void send_enter_isp(struct session *s, struct session_target *t);
void start_boot_wait(struct session *s, struct session_target *t);
void boot_wait_expired(struct session *s, struct session_target *t);
void boot_poll(struct session *s, struct session_target *t);
void boot_announced(struct session *s, struct session_target *t);
void boot_isp_answered(struct session *s, struct session_target *t, const struct isp_reply *r);
/* "02 12 34"; a byte whose mask is false is "--" */
void format_bytes(char *buf, size_t size, const uint8_t *bytes, const bool *mask, unsigned n);
void on_look_reply(struct session *s, struct session_target *t, struct pending *p, const struct isp_reply *r);
/* A reply with a UID (INFO, ANNOUNCE, IDENTITY) from t's id: false (and t
 * failed) when another board answered than the one t connected to. */
bool check_uid(struct session *s, struct session_target *t, const uint8_t uid[4]);
void report_conflict(struct session *s, uint8_t node, const uint8_t a[4], const uint8_t b[4]);
/* The end of a target whose work is done: the outcome, and the boot
 * check first where a REBOOT went out. */
void target_finish_ok(struct session *s, struct session_target *t, enum session_outcome outcome);
void estimate_flash(struct session *s, struct session_target *t);

/* session-read.c */
void start_read(struct session *s, struct session_target *t);
void on_read_reply(struct session *s, struct session_target *t, struct pending *p, const struct isp_reply *r);

/* session-unit.c */
bool target_unit_capable(const struct session *s, const struct session_target *t);
void session_schedule(struct session *s);
bool unit_on_reply(struct session *s, struct session_target *t, const struct isp_reply *r);
uint64_t unit_deadline(const struct session *s);
void unit_timeout(struct session *s);
void unit_resume(struct session *s);
void unit_member_gone(struct session *s, struct session_target *t);
void unit_start(struct session *s, struct session_target **members, unsigned n, bool quiet);
bool target_quiet_capable(const struct session *s, const struct session_target *t);
void unit_commit_selected(struct session *s, struct session_target *t, const struct isp_reply *r);
void unit_free(struct session *s);
