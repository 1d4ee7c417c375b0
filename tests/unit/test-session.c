/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The protocol engine against real node cores (sim/node) on RAM flash,
 * frame by frame, on a virtual clock: every frame the session sends goes
 * to every node on the bench, every reply comes back, and when nothing is
 * on the wire the clock jumps to session_deadline(). Faults (lost frames,
 * power cuts, write failures, foreign traffic) are injected on the way.
 *
 * What is asserted is what a user checks: the bytes in the node's flash,
 * whether it boots its application, the job's end state and error text.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include <cmocka.h>

#include "isp-crc32.h"
#include "isp-frame.h"
#include "hex-writer.h"
#include "isp-image.h"
#include "isp-node-ram.h"
#include "isp-node.h"
#include "session.h"

#define MAX_NODES 4
#define QUEUE_MAX 4096
#define MSEC 1000ULL
#define FRAME_USEC 200ULL       /* bus time charged per frame */

typedef struct Bench Bench;

struct queue {
        struct isp_can_frame f[QUEUE_MAX];
        unsigned head, n;
};

struct Bench {
        struct isp_node_ram ram[MAX_NODES];
        struct isp_node node[MAX_NODES];
        unsigned n_nodes;

        struct isp_image *img;
        struct session_config cfg;
        struct session *s;
        uint64_t now;

        struct queue tx;                /* session → nodes */
        struct queue rx;                /* nodes → session */

        /* Everything the session sent, in order. */
        struct isp_can_frame *log;
        size_t n_log, log_cap;

        /* Callback records */
        unsigned n_finished;
        enum session_state fin_state;
        char fin_error[512];
        enum session_phase phases[64];
        unsigned n_phases;
        struct session_node_info seen[64];
        unsigned n_seen;
        uint64_t prog_done, prog_total;
        enum session_phase prog_phase;
        uint8_t phase_nodes[64];        /* the node each phase change named */
        uint8_t prog_node;
        unsigned n_prog_reports;
        bool prog_node_mixed;           /* progress named different nodes */
        struct session_target_result results[MAX_NODES];
        char result_errors[MAX_NODES][512];
        unsigned n_results;
        char logs[64][256];             /* the first 64 log messages */
        int log_levels[64];
        unsigned n_logs;

        /* PROGRAM frames sent and not yet acknowledged to the session */
        int outstanding, max_outstanding;

        /* Faults */
        unsigned drop_tx_every, drop_rx_every;
        unsigned n_tx, n_rx, n_dropped;
        unsigned power_cut_every;       /* node 0: power-cycle after every k-th frame it gets */
        unsigned n_delivered;           /* frames delivered to node 0 */
        unsigned n_power_cuts;
        bool check_commit_order;        /* after every frame: valid entry ⇒ flash complete */
        uint8_t *old_flash;             /* the old application, if one was installed */
        int send_error;                 /* ops->send returns it, when non-zero */
        bool link_down;                 /* frames sent are lost */
        int info_caps;                  /* >= 0: rewrite INFO capabilities */
        int info_version;               /* >= 0: rewrite INFO version */
        /* Late reply: the reply to the n-th PROGRAM frame is held back
         * for delay_usec; the next PROGRAM frame to another offset then
         * fails once (a legacy node stays silent). */
        unsigned late_nth_program, n_program_delivered;
        uint64_t late_usec;
        bool late_fail_next;            /* inject that one-shot failure */
        bool late_armed, late_offset_set, late_failed_once;
        uint32_t late_offset;
        uint64_t late_release;          /* UINT64_MAX: that reply was delivered */
        /* Replies held back, with their release times */
        struct { uint64_t release; struct isp_can_frame f; } held[64];
        unsigned n_held;
        uint64_t reply_delay_usec[MAX_NODES];   /* a slow node answers late */
        bool no_helper;                 /* the applications ignore IDENTIFY */
        bool no_echo;                   /* nodes added from now on: firmware from before ECHO */
        bool drop_opcode_frames;        /* PROGRAMs of FF:1000 never reach the nodes */
        char last_notice[512];          /* the last message of LOG_NOTICE or above */
        unsigned drop_cmd_replies;      /* bit cmd: replies of that command are lost */
        bool boot_fail;                 /* node 0's new application resets into ISP at once */
        /* node_conflict callbacks */
        unsigned n_conflicts;
        uint8_t conflict_node;
        uint8_t conflict_uids[2][4];
        /* Called after each frame delivered to the nodes. */
        void (*hook)(Bench *b, const struct isp_can_frame *f);
        /* Called on each phase change. */
        void (*phase_hook)(Bench *b, enum session_phase phase);
        unsigned hook_state;
};

static Bench *b;

/* ------------------------------------------------------------------------ */
/* Queues and frame conversion */

static void q_push(struct queue *q, const struct isp_can_frame *f) {
        assert_true(q->n < QUEUE_MAX);
        q->f[(q->head + q->n++) % QUEUE_MAX] = *f;
}

static bool q_pop(struct queue *q, struct isp_can_frame *ret) {
        if (q->n == 0)
                return false;
        *ret = q->f[q->head];
        q->head = (q->head + 1) % QUEUE_MAX;
        q->n--;
        return true;
}

static struct isp_node_frame to_node(const struct isp_can_frame *f) {
        struct isp_node_frame n = { .id = f->id, .dlc = f->len };

        if (f->flags & ISP_FRAME_EXTENDED)
                n.id |= ISP_NODE_FRAME_EXTENDED;
        if (f->flags & ISP_FRAME_FLAG_RTR)
                n.id |= ISP_NODE_FRAME_RTR;
        memcpy(n.data, f->data, 8);
        return n;
}

static struct isp_can_frame from_node(const struct isp_node_frame *n) {
        struct isp_can_frame f = {
                .id = n->id & ISP_NODE_FRAME_ID_MASK,
                .flags = (n->id & ISP_NODE_FRAME_EXTENDED) ? ISP_FRAME_EXTENDED : 0,
                .len = n->dlc,
        };

        memcpy(f.data, n->data, 8);
        return f;
}

static unsigned frame_cmd(const struct isp_can_frame *f) {
        return (f->id & ISP_ID_CMD_MASK) >> ISP_ID_CMD_SHIFT;
}

/* ------------------------------------------------------------------------ */
/* Session callbacks */

static int on_send(void *userdata, const struct isp_can_frame *f) {
        Bench *bb = userdata;

        if (bb->send_error)
                return bb->send_error;
        if (bb->n_log == bb->log_cap) {
                bb->log_cap = bb->log_cap ? bb->log_cap * 2 : 1024;
                bb->log = realloc(bb->log, bb->log_cap * sizeof(*bb->log));
                assert_non_null(bb->log);
        }
        bb->log[bb->n_log++] = *f;
        if (frame_cmd(f) == ISP_CMD_PROGRAM) {
                bb->outstanding++;
                if (bb->outstanding > bb->max_outstanding)
                        bb->max_outstanding = bb->outstanding;
        }
        if (!bb->link_down)
                q_push(&bb->tx, f);
        return 0;
}

static void on_phase(void *userdata, uint8_t node, enum session_phase phase) {
        Bench *bb = userdata;

        assert_true(bb->n_phases < 64);
        bb->phase_nodes[bb->n_phases] = node;
        bb->phases[bb->n_phases++] = phase;
        if (bb->phase_hook)
                bb->phase_hook(bb, phase);
}

static void on_progress(void *userdata, uint8_t node, uint64_t done, uint64_t total) {
        Bench *bb = userdata;

        assert_true(done <= total);
        if (bb->n_prog_reports++ > 0 && node != bb->prog_node)
                bb->prog_node_mixed = true;
        bb->prog_node = node;
        bb->prog_done = done;
        bb->prog_total = total;
        bb->prog_phase = session_get_phase(bb->s);
}

static void on_node_seen(void *userdata, const struct session_node_info *n) {
        Bench *bb = userdata;

        assert_true(bb->n_seen < 64);
        bb->seen[bb->n_seen++] = *n;
}

static void on_target_finished(void *userdata, const struct session_target_result *result) {
        Bench *bb = userdata;
        unsigned i = bb->n_results++;

        assert_true(i < MAX_NODES);
        assert_int_equal(bb->n_finished, 0);    /* before `finished` */
        assert_int_not_equal(result->state, SESSION_RUNNING);
        bb->results[i] = *result;
        bb->results[i].name = NULL;             /* valid during the call only */
        assert_non_null(result->name);
        if (result->error)
                snprintf(bb->result_errors[i], sizeof(bb->result_errors[i]), "%s", result->error);
        bb->results[i].error = result->error ? bb->result_errors[i] : NULL;
}

static void on_log(void *userdata, int level, const char *message) {
        Bench *bb = userdata;

        if (level <= LOG_NOTICE)
                snprintf(bb->last_notice, sizeof(bb->last_notice), "%s", message);
        if (bb->n_logs < 64) {
                snprintf(bb->logs[bb->n_logs], sizeof(bb->logs[0]), "%s", message);
                bb->log_levels[bb->n_logs] = level;
        }
        bb->n_logs++;
}

static void on_finished(void *userdata, enum session_state state, const char *error) {
        Bench *bb = userdata;

        /* every target reported first; a scan has none */
        assert_int_equal(bb->n_results, session_get_n_targets(bb->s));
        bb->n_finished++;
        bb->fin_state = state;
        if (state == SESSION_FAILED) {
                assert_non_null(error);
                snprintf(bb->fin_error, sizeof(bb->fin_error), "%s", error);
        } else
                assert_null(error);
}

static void on_node_conflict(void *userdata, uint8_t node, const uint8_t a[4], const uint8_t c[4]) {
        Bench *bb = userdata;

        bb->n_conflicts++;
        bb->conflict_node = node;
        memcpy(bb->conflict_uids[0], a, 4);
        memcpy(bb->conflict_uids[1], c, 4);
}

static const struct session_ops ops = {
        .node_conflict = on_node_conflict,
        .send = on_send,
        .phase = on_phase,
        .progress = on_progress,
        .node_seen = on_node_seen,
        .target_finished = on_target_finished,
        .finished = on_finished,
        .log = on_log,
};

/* ------------------------------------------------------------------------ */
/* Images */

static uint32_t lcg(uint32_t *state) {
        *state = *state * 1103515245u + 12345u;
        return *state >> 16;
}

/* An example-like application: LJMP FF:1100 at FF:0000, code at FF:1100, a
 * string at FF:1200, 1 KiB of filler at FF:1300 (with 0xFF data bytes in
 * it, and a run of them), a 1 KiB table in the low bank at FE:0000, and 8
 * bytes at the very end of the flash. `variant` changes the bytes. */
static struct isp_image *make_image(unsigned variant) {
        struct hex_writer h = HEX_WRITER_INIT;
        struct isp_image_error e;
        struct isp_image *img;
        uint8_t buf[1024];
        uint32_t rng = 0x5C15 + variant;
        static const uint8_t ljmp[3] = { 0x02, 0x11, 0x00 };
        static const uint8_t blink[8] = { 0xB2, 0x90, 0x7F, 0x00, 0xDF, 0xFE, 0x80, 0xF8 };
        char str[32];
        int r;

        hex_writer_data(&h, 0x0000, ljmp, 3);

        memcpy(buf, blink, 8);
        for (unsigned i = 8; i < 100; i++)
                buf[i] = (uint8_t) (lcg(&rng) + variant);
        hex_writer_data(&h, 0x1100, buf, 100);

        snprintf(str, sizeof(str), "stcisp test image v%u", variant);
        hex_writer_data(&h, 0x1200, (const uint8_t *) str, strlen(str) + 1);

        for (unsigned i = 0; i < 1024; i++)
                buf[i] = (i % 13 == 5 || (i >= 300 && i < 316)) ? 0xFF : (uint8_t) lcg(&rng);
        hex_writer_data(&h, 0x1300, buf, 1024);

        for (unsigned i = 0; i < 1024; i++) {
                buf[i] = (uint8_t) (128 + (int) (100.0 * ((i * 7 + variant) % 64) / 64.0) - 50);
                if (buf[i] == 0xFF)
                        buf[i] = 0xFE;
        }
        hex_writer_data(&h, 0xFE0000, buf, 1024);

        for (unsigned i = 0; i < 8; i++)
                buf[i] = (uint8_t) (0xA0 + i + variant);
        hex_writer_data(&h, 0xFFFFF8, buf, 8);

        hex_writer_eof(&h);
        assert_int_equal(h.error, 0);

        img = malloc(sizeof(*img));
        assert_non_null(img);
        r = isp_image_load(img, h.text, h.len, ISP_IMAGE_HEX, &e);
        if (r < 0)
                fail_msg("test image does not load: line %u: %s", e.line, e.message);
        free(h.text);
        return img;
}

/* ------------------------------------------------------------------------ */
/* Bench */

static int setup(void **state) {
        b = calloc(1, sizeof(*b));
        assert_non_null(b);
        session_config_init(&b->cfg);
        b->info_caps = -1;
        b->info_version = -1;
        b->late_release = UINT64_MAX;
        b->img = make_image(1);
        return 0;
}

static int teardown(void **state) {
        session_free(b->s);
        free(b->old_flash);
        free(b->img);
        free(b->log);
        free(b);
        b = NULL;
        return 0;
}

/* Add a node, powered on (an extended node in ISP sends ANNOUNCE, which is
 * dropped here: nobody was listening yet). Returns its index. */
static unsigned add_node(uint8_t id, uint8_t rx_depth) {
        struct isp_node_config config = {
                .node_id = id,
                .isp_version = 3,
                .rx_depth = rx_depth,
                .uid = { 0xC0, 0xFF, 0xEE, id },
                .echo = !b->no_echo,
        };
        unsigned i = b->n_nodes++;
        struct isp_node_frame f;

        assert_true(i < MAX_NODES);
        isp_node_ram_init(&b->ram[i]);
        assert_int_equal(isp_node_init(&b->node[i], &config, &isp_node_ram_ops, &b->ram[i]), 0);
        (void) isp_node_power_on(&b->node[i]);
        while (isp_node_ram_pop(&b->ram[i], &f))
                ;
        return i;
}

static void new_session(enum session_kind kind, uint8_t node) {
        assert_int_equal(session_new(&b->s, kind, node, NULL,
                                     kind == SESSION_FLASH || kind == SESSION_VERIFY ? b->img : NULL,
                                     &b->cfg, &ops, b), 0);
}

/* A second board with id `id` (another UID) next to the node at index i. */
static unsigned add_duplicate(uint8_t id) {
        unsigned i = add_node(id, 4);

        b->node[i].config.uid[0] = 0x5D;
        return i;
}

static void hold(const struct isp_can_frame *f, uint64_t usec) {
        assert_true(b->n_held < 64);
        b->held[b->n_held].release = b->now + usec;
        b->held[b->n_held].f = *f;
        b->n_held++;
}

/* Move held replies whose time has come to the receive queue. */
static void release_held(void) {
        for (unsigned i = 0; i < b->n_held;) {
                if (b->held[i].release > b->now) {
                        i++;
                        continue;
                }
                q_push(&b->rx, &b->held[i].f);
                if (b->late_release == b->held[i].release)
                        b->late_release = UINT64_MAX;
                memmove(&b->held[i], &b->held[i + 1], (b->n_held - i - 1) * sizeof(b->held[0]));
                b->n_held--;
        }
}

static uint64_t next_release(void) {
        uint64_t d = UINT64_MAX;

        for (unsigned i = 0; i < b->n_held; i++)
                if (b->held[i].release < d)
                        d = b->held[i].release;
        return d;
}

static void collect_replies(void) {
        struct isp_can_frame got[MAX_NODES * 8];
        unsigned n = 0;

        for (unsigned i = 0; i < b->n_nodes; i++) {
                struct isp_node_frame nf;

                while (isp_node_ram_pop(&b->ram[i], &nf)) {
                        struct isp_can_frame f = from_node(&nf);

                        if (b->reply_delay_usec[i]) {
                                hold(&f, b->reply_delay_usec[i]);
                                continue;
                        }
                        assert_true(n < MAX_NODES * 8);
                        got[n++] = f;
                }
        }
        /* arbitration: lowest ID first */
        for (unsigned i = 1; i < n; i++)
                for (unsigned j = i; j > 0 && got[j].id < got[j - 1].id; j--) {
                        struct isp_can_frame x = got[j];
                        got[j] = got[j - 1];
                        got[j - 1] = x;
                }

        for (unsigned i = 0; i < n; i++) {
                struct isp_can_frame *f = &got[i];
                unsigned cmd = frame_cmd(f);

                b->n_rx++;
                if (b->late_armed) {
                        b->late_armed = false;
                        hold(f, b->late_usec);
                        b->late_release = b->now + b->late_usec;
                        continue;
                }
                if ((b->drop_rx_every && b->n_rx % b->drop_rx_every == 0) || ((b->drop_cmd_replies >> cmd) & 1)) {
                        b->n_dropped++;
                        continue;
                }
                if ((cmd == ISP_CMD_CONNECT || cmd == ISP_CMD_ENTER_ISP) && f->len == 8) {
                        if (b->info_caps >= 0)
                                f->data[1] = (uint8_t) b->info_caps;
                        if (b->info_version >= 0)
                                f->data[0] = (uint8_t) b->info_version;
                }
                q_push(&b->rx, f);
        }
}

/* The node's flash is exactly what the image says a node holds after the
 * update, and the ISP area is untouched. */
static bool flash_is_new(unsigned i, const struct isp_image *img) {
        for (uint32_t o = 0; o < ISP_FLASH_SIZE; o++) {
                uint8_t want = (o >= ISP_AREA_START && o < ISP_AREA_END) ? isp_node_isp_pattern(o)
                                                                          : isp_image_node_byte(img, o);
                if (b->ram[i].flash[o] != want)
                        return false;
        }
        return true;
}

/* What a node may boot: the complete new image, or the old application
 * untouched. */
static bool flash_complete(unsigned i, const struct isp_image *img) {
        if (flash_is_new(i, img))
                return true;
        return i == 0 && b->old_flash && memcmp(b->ram[0].flash, b->old_flash, ISP_FLASH_SIZE) == 0;
}

static void assert_flash_is_image(unsigned i, const struct isp_image *img) {
        for (uint32_t o = 0; o < ISP_FLASH_SIZE; o++) {
                uint8_t want = (o >= ISP_AREA_START && o < ISP_AREA_END) ? isp_node_isp_pattern(o)
                                                                          : isp_image_node_byte(img, o);
                if (b->ram[i].flash[o] != want)
                        fail_msg("flash offset 0x%05X holds 0x%02X, expected 0x%02X",
                                 (unsigned) o, b->ram[i].flash[o], want);
        }
}

static bool entry_valid(unsigned i) {
        return isp_node_entry_is_valid(b->ram[i].flash + ISP_ENTRY_OFFSET);
}

static void deliver_to_nodes(const struct isp_can_frame *f) {
        struct isp_node_frame nf = to_node(f);
        bool fail_once = false;

        b->n_tx++;
        if (b->drop_opcode_frames && frame_cmd(f) == ISP_CMD_PROGRAM &&
            (f->id & ISP_ID_ARG_MASK) == ISP_ENTRY_OFFSET) {
                b->n_dropped++;
                return;
        }
        if (b->drop_tx_every && b->n_tx % b->drop_tx_every == 0) {
                b->n_dropped++;
                return;
        }

        if (b->late_nth_program && frame_cmd(f) == ISP_CMD_PROGRAM) {
                uint32_t off = f->id & ISP_ID_ARG_MASK;

                if (++b->n_program_delivered == b->late_nth_program) {
                        b->late_armed = true;
                        b->late_offset = off;
                        b->late_offset_set = true;
                } else if (b->late_fail_next && b->late_offset_set && off != b->late_offset &&
                           !b->late_failed_once) {
                        b->late_failed_once = true;
                        fail_once = true;
                }
        }

        if (fail_once)
                b->ram[0].fail_program = 1;
        for (unsigned i = 0; i < b->n_nodes; i++) {
                if (b->no_helper && frame_cmd(f) == ISP_CMD_IDENTIFY)
                        continue;
                (void) isp_node_ram_receive(&b->ram[i], &b->node[i], &nf);
        }
        if (b->boot_fail && b->n_nodes > 0 && isp_node_get_mode(&b->node[0]) == ISP_NODE_MODE_APPLICATION &&
            frame_cmd(f) == ISP_CMD_REBOOT) {
                /* a crash right after the start: the watchdog, DfuFlag set */
                isp_node_set_dfu_flag(&b->node[0]);
                (void) isp_node_soft_reset(&b->node[0]);
        }
        if (fail_once)
                b->ram[0].fail_program = 0;

        if (b->n_nodes > 0 && b->check_commit_order && entry_valid(0) && !flash_complete(0, b->img))
                fail_msg("after frame %u the entry is valid but the flash is not complete", b->n_tx);

        b->n_delivered++;
        if (b->n_nodes > 0 && b->power_cut_every && b->n_delivered % b->power_cut_every == 0) {
                isp_node_power_off(&b->node[0]);
                if (isp_node_power_on(&b->node[0]) == ISP_NODE_MODE_APPLICATION && !flash_complete(0, b->img))
                        fail_msg("after a power cut at frame %u the node boots an incomplete application", b->n_tx);
                b->n_power_cuts++;
        }

        if (b->hook)
                b->hook(b, f);
        collect_replies();
}

/* Run the bus until the session ends (or, with max_frames, until that
 * many frames went to the nodes). */
static void run_until(unsigned max_frames) {
        unsigned frames = 0;

        for (unsigned iter = 0; iter < 10000000; iter++) {
                struct isp_can_frame f;
                uint64_t d;

                if (session_get_state(b->s) != SESSION_RUNNING)
                        return;
                if (max_frames && frames >= max_frames)
                        return;

                if (q_pop(&b->tx, &f)) {
                        b->now += FRAME_USEC;
                        deliver_to_nodes(&f);
                        frames++;
                        continue;
                }
                release_held();
                if (q_pop(&b->rx, &f)) {
                        b->now += FRAME_USEC;
                        if (frame_cmd(&f) == ISP_CMD_PROGRAM && (f.id & ISP_ID_KIND_MASK) == ISP_ID_REPLY)
                                b->outstanding--;
                        session_receive(b->s, &f, b->now);
                        continue;
                }
                d = session_deadline(b->s);
                if (next_release() < d) {
                        b->now = next_release() > b->now ? next_release() : b->now;
                        continue;
                }
                if (d == UINT64_MAX)
                        fail_msg("session waits for nothing but is still running (phase %s)",
                                 session_phase_to_string(session_get_phase(b->s)));
                if (d > b->now)
                        b->now = d;
                session_timeout(b->s, b->now);
        }
        fail_msg("session did not end");
}

static void run(void) {
        run_until(0);
}

static void start_and_run(void) {
        assert_int_equal(session_start(b->s, b->now), 0);
        run();
}

static unsigned count_sent(unsigned cmd) {
        unsigned n = 0;

        for (size_t i = 0; i < b->n_log; i++)
                n += frame_cmd(&b->log[i]) == cmd;
        return n;
}

static void assert_succeeded(void) {
        if (session_get_state(b->s) != SESSION_SUCCEEDED)
                fail_msg("session %s: %s", session_state_to_string(session_get_state(b->s)),
                         session_get_error(b->s) ? session_get_error(b->s) : "(no error)");
        assert_int_equal(b->n_finished, 1);
        assert_int_equal(b->fin_state, SESSION_SUCCEEDED);
        assert_null(session_get_error(b->s));
}

static void assert_failed_with(enum session_phase phase, const char *a, const char *c) {
        assert_int_equal(session_get_state(b->s), SESSION_FAILED);
        assert_int_equal(b->n_finished, 1);
        assert_int_equal(b->fin_state, SESSION_FAILED);
        assert_string_equal(b->fin_error, session_get_error(b->s));
        if (!strstr(b->fin_error, a) || (c && !strstr(b->fin_error, c)))
                fail_msg("error \"%s\" does not say \"%s\"%s%s", b->fin_error, a, c ? " and " : "", c ? c : "");
        if (phase != _SESSION_PHASE_MAX && session_get_phase(b->s) != phase)
                fail_msg("failed in phase %s, expected %s (%s)", session_phase_to_string(session_get_phase(b->s)),
                         session_phase_to_string(phase), b->fin_error);
        assert_int_equal(session_deadline(b->s), UINT64_MAX);
}

/* Power-cycle node i: does it start its application? */
static bool boots_application(unsigned i) {
        struct isp_node_frame f;
        enum isp_node_mode mode;

        isp_node_power_off(&b->node[i]);
        mode = isp_node_power_on(&b->node[i]);
        while (isp_node_ram_pop(&b->ram[i], &f))
                ;
        return mode == ISP_NODE_MODE_APPLICATION;
}

/* A whole successful flash of node i, as the user sees it. */
static void assert_flashed(unsigned i) {
        assert_succeeded();
        assert_flash_is_image(i, b->img);
        assert_true(boots_application(i));
        assert_int_equal(b->prog_done, b->prog_total);
}

/* ERASEs of the entry sector alone. */
static unsigned count_entry_erases(void) {
        static const uint8_t entry[4] = { 0x01, 0x10, 0x00, 0x01 };
        unsigned n = 0;

        for (size_t i = 0; i < b->n_log; i++)
                n += frame_cmd(&b->log[i]) == ISP_CMD_ERASE && b->log[i].len == 4 &&
                     memcmp(b->log[i].data, entry, 4) == 0;
        return n;
}

/* How many `cmd` frames went out before the first `before` frame. */
static unsigned count_sent_before(unsigned cmd, unsigned before) {
        unsigned n = 0;

        for (size_t i = 0; i < b->n_log && frame_cmd(&b->log[i]) != before; i++)
                n += frame_cmd(&b->log[i]) == cmd;
        return n;
}

/* The frame sent right after the first `cmd` frame. */
static const struct isp_can_frame *next_sent_after(unsigned cmd) {
        for (size_t i = 0; i + 1 < b->n_log; i++)
                if (frame_cmd(&b->log[i]) == cmd)
                        return &b->log[i + 1];
        fail_msg("no frame after the first %s", isp_cmd_to_string((enum isp_cmd) cmd));
        return NULL;
}

static const struct isp_can_frame *first_sent(unsigned cmd) {
        for (size_t i = 0; i < b->n_log; i++)
                if (frame_cmd(&b->log[i]) == cmd)
                        return &b->log[i];
        return NULL;
}

/* Prefill the application area of node i with an old image (and its
 * entry), so the node starts that application at its next boot. */
static void install_old_application(unsigned i, unsigned variant) {
        struct isp_image *old = make_image(variant);

        for (uint32_t o = 0; o < ISP_FLASH_SIZE; o++)
                if (o < ISP_AREA_START || o >= ISP_AREA_END)
                        b->ram[i].flash[o] = isp_image_node_byte(old, o);
        /* and an old sector the new image does not use */
        memset(b->ram[i].flash + 0x08000, 0x5A, 300);
        free(old);
        if (i == 0) {
                free(b->old_flash);
                b->old_flash = malloc(ISP_FLASH_SIZE);
                assert_non_null(b->old_flash);
                memcpy(b->old_flash, b->ram[0].flash, ISP_FLASH_SIZE);
        }
}

/* Node i holds exactly the bench's image, as a flash leaves it. */
static void install_image(unsigned i) {
        for (uint32_t o = 0; o < ISP_FLASH_SIZE; o++)
                if (o < ISP_AREA_START || o >= ISP_AREA_END)
                        b->ram[i].flash[o] = isp_image_node_byte(b->img, o);
}

/* ------------------------------------------------------------------------ */
/* Flash: the good path */

static void test_flash_extended_window(void **state) {
        struct session_node_info info;
        unsigned n;
        const struct isp_can_frame *f;

        add_node(3, /* rx_depth= */ 4);
        b->cfg.window = 8;
        b->cfg.quiet = false;           /* the acknowledged window */
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_flashed(0);
        assert_true(session_get_target_info(b->s, &info));
        assert_int_equal(info.node, 3);
        assert_int_equal(info.info.capabilities, ISP_CAP_CRC | ISP_CAP_SECTOR_ERASE | ISP_CAP_QUIET | ISP_CAP_ECHO);
        /* window = min(rx depth 4, configured 8), and it was used */
        assert_int_equal(b->max_outstanding, 4);

        n = 0;
        assert_int_equal(b->phases[n++], SESSION_PHASE_CONNECT);
        assert_int_equal(b->phases[n++], SESSION_PHASE_ERASE);
        assert_int_equal(b->phases[n++], SESSION_PHASE_PROGRAM);
        assert_int_equal(b->phases[n++], SESSION_PHASE_VERIFY);
        assert_int_equal(b->phases[n++], SESSION_PHASE_COMMIT);
        assert_int_equal(b->phases[n++], SESSION_PHASE_REBOOT);
        assert_int_equal(b->n_phases, n);

        /* first request CONNECT 3 with DLC 0; the first ERASE is the entry
         * sector alone */
        assert_int_equal(b->log[0].id, 0x1A000003);
        assert_int_equal(b->log[0].len, 0);
        f = first_sent(ISP_CMD_ERASE);
        assert_non_null(f);
        assert_int_equal(f->len, 4);
        assert_memory_equal(f->data, ((uint8_t[]) { 0x01, 0x10, 0x00, 0x01 }), 4);
        /* sector erase only: far fewer than 248 sectors */
        assert_true(b->ram[0].n_erased < 20);
        /* verify by CRC, no READ but the entry check */
        assert_true(count_sent(ISP_CMD_CRC) > 0);
        assert_int_equal(count_sent(ISP_CMD_READ), 1);

        assert_int_equal(session_get_stats(b->s)->retransmissions, 0);
        assert_int_equal(session_get_stats(b->s)->stray_replies, 0);
        assert_int_equal(b->n_seen, 1);
        assert_int_equal(b->seen[0].node, 3);
        assert_false(b->seen[0].legacy);
        assert_false(b->seen[0].announce);
        assert_int_equal(b->seen[0].info.rx_depth, 4);
        assert_int_equal(b->seen[0].info.uid[3], 3);
}

static void test_flash_extended_window_1(void **state) {
        add_node(7, /* rx_depth= */ 16);
        b->cfg.window = 1;
        b->cfg.quiet = false;
        new_session(SESSION_FLASH, 7);
        start_and_run();

        assert_flashed(0);
        assert_int_equal(b->max_outstanding, 1);
}

static void test_flash_legacy(void **state) {
        const struct isp_can_frame *f;

        add_node(0, 1);
        new_session(SESSION_FLASH, 0);
        start_and_run();

        assert_flashed(0);
        assert_int_equal(b->log[0].id, 0x1A000000);
        assert_int_equal(b->log[0].len, 0);
        /* one full ERASE, no CRC, READ-back verify */
        assert_int_equal(count_sent(ISP_CMD_ERASE), 1);
        f = first_sent(ISP_CMD_ERASE);
        assert_int_equal(f->len, 0);
        assert_int_equal(count_sent(ISP_CMD_CRC), 0);
        assert_true(count_sent(ISP_CMD_READ) > 100);
        assert_int_equal(b->max_outstanding, 1);
        assert_int_equal(b->n_seen, 1);
        assert_true(b->seen[0].legacy);
}

/* An extended node that announces neither CRC nor sector erase gets the
 * legacy treatment: full ERASE and READ-back verify. */
static void test_flash_without_capabilities(void **state) {
        add_node(4, 2);
        b->info_caps = 0;
        new_session(SESSION_FLASH, 4);
        start_and_run();

        assert_flashed(0);
        assert_int_equal(count_sent(ISP_CMD_CRC), 0);
        assert_int_equal(count_sent(ISP_CMD_ERASE), 1);
        assert_int_equal(first_sent(ISP_CMD_ERASE)->len, 0);
        assert_true(count_sent(ISP_CMD_READ) > 100);
        assert_int_equal(b->max_outstanding, 2);
}

/* Sector erase without CRC: the entry sector first, then a full ERASE
 * (nothing cheap tells which other sectors are blank). */
static void test_flash_sector_erase_without_crc(void **state) {
        const struct isp_can_frame *f;

        add_node(4, 2);
        b->info_caps = ISP_CAP_SECTOR_ERASE;
        new_session(SESSION_FLASH, 4);
        start_and_run();

        assert_flashed(0);
        assert_int_equal(count_sent(ISP_CMD_CRC), 0);
        assert_int_equal(count_sent(ISP_CMD_ERASE), 2);
        f = first_sent(ISP_CMD_ERASE);
        assert_int_equal(f->len, 4);
        assert_memory_equal(f->data, ((uint8_t[]) { 0x01, 0x10, 0x00, 0x01 }), 4);
}

/* A node running an old application: CONNECT goes unanswered, ENTER_ISP
 * brings it into its ISP, and after the update nothing of the old
 * application is left, also in sectors the new image does not use. */
static void test_flash_node_running_old_application(void **state) {
        add_node(3, 4);
        install_old_application(0, 9);
        assert_true(boots_application(0));

        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_flashed(0);
        assert_int_equal(count_sent(ISP_CMD_ENTER_ISP), 1);
        /* four CONNECTs unanswered; IDENTIFY, answered by the old
         * application with its own image; ENTER_ISP, then one CONNECT
         * answered */
        assert_int_equal(count_sent_before(ISP_CMD_CONNECT, ISP_CMD_ENTER_ISP), 4);
        assert_int_equal(count_sent_before(ISP_CMD_IDENTIFY, ISP_CMD_ENTER_ISP), 1);
        assert_int_equal(frame_cmd(next_sent_after(ISP_CMD_ENTER_ISP)), ISP_CMD_CONNECT);
        assert_true(b->n_seen >= 2);
        assert_true(b->seen[0].application && b->seen[0].has_identity);
        assert_int_equal(b->seen[0].node, 3);
        assert_int_not_equal(b->seen[0].identity.image_crc, isp_image_app_crc32(b->img));
        assert_true(b->seen[1].announce);
        assert_int_equal(b->seen[1].node, 3);
        /* the stale sector was found by CRC and erased, the others left */
        assert_true(b->ram[0].n_erased < 30);
}

static void test_flash_no_verify_no_reboot(void **state) {
        add_node(3, 4);
        b->cfg.verify = false;
        b->cfg.reboot = false;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_succeeded();
        assert_flash_is_image(0, b->img);
        /* QUIET still verifies (that is how lost frames are found); the
         * entry is checked; no REBOOT: the node stays in ISP. READs: the
         * stream's last checkpoint and the entry check. */
        assert_true(count_sent(ISP_CMD_CRC) > 0);
        assert_int_equal(count_sent(ISP_CMD_READ), 2);
        assert_int_equal(count_sent(ISP_CMD_REBOOT), 0);
        assert_int_equal(isp_node_get_mode(&b->node[0]), ISP_NODE_MODE_ISP);
        assert_int_equal(b->phases[b->n_phases - 1], SESSION_PHASE_COMMIT);
        assert_true(boots_application(0));
}

/* ------------------------------------------------------------------------ */
/* Lost frames */

static void test_flash_lossy_extended(void **state) {
        const struct session_stats *st;

        add_node(3, 8);
        b->drop_tx_every = 7;
        b->drop_rx_every = 11;  /* not the REBOOT reply: a node that starts its application does not answer again */
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_flashed(0);
        st = session_get_stats(b->s);
        assert_true(b->n_dropped > 20);
        assert_true(st->retransmissions > 0);
        assert_true(st->timeouts > 0);
}

static void test_flash_lossy_legacy(void **state) {
        const struct session_stats *st;

        add_node(0, 1);
        b->drop_tx_every = 9;
        b->drop_rx_every = 7;
        new_session(SESSION_FLASH, 0);
        start_and_run();

        assert_flashed(0);
        st = session_get_stats(b->s);
        assert_true(st->retransmissions > 0);
        assert_true(st->timeouts > 0);
}

/* The ack of a frame that was retransmitted arrives twice: the second is
 * a stray. */
static void dup_first_ack_hook(Bench *bb, const struct isp_can_frame *f) {
        struct isp_node_frame nf;

        if (bb->hook_state || frame_cmd(f) != ISP_CMD_PROGRAM)
                return;
        /* the node's ack is in its ram: put it twice */
        if (bb->ram[0].n_sent == 1) {
                nf = bb->ram[0].sent[0];
                bb->ram[0].sent[bb->ram[0].n_sent++] = nf;
                bb->hook_state = 1;
        }
}

static void test_duplicate_ack_ignored(void **state) {
        add_node(3, 4);
        b->hook = dup_first_ack_hook;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_flashed(0);
        assert_int_equal(b->hook_state, 1);
        assert_int_equal(session_get_stats(b->s)->stray_replies, 1);
}

/* A legacy ack arrives after the time-out, when the retransmitted frame
 * has already been acknowledged: it must not be taken for the ack of the
 * next frame (which, here, the node failed to write and did not ack). */
static void test_late_ack_legacy(void **state) {
        add_node(0, 1);
        b->late_nth_program = 10;
        b->late_usec = 600 * MSEC;      /* time-out 500 ms */
        b->late_fail_next = true;
        new_session(SESSION_FLASH, 0);
        start_and_run();

        assert_true(b->late_failed_once);
        assert_int_equal(b->late_release, UINT64_MAX);
        assert_flashed(0);
        assert_int_equal(session_get_stats(b->s)->retransmissions, 2);
        assert_true(session_get_stats(b->s)->stray_replies >= 1);
}

/* The same on an extended node: acks carry the offset. The ack of the
 * next frame shows the missing one was lost (the node answers in order),
 * so it is resent at once, no time-out needed; the late ack is a stray. */
static void test_late_ack_extended(void **state) {
        add_node(3, 4);
        b->late_nth_program = 10;
        b->late_usec = 50 * MSEC;
        b->cfg.quiet = false;           /* acks to be late */
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_int_equal(b->late_release, UINT64_MAX);
        assert_flashed(0);
        assert_int_equal(session_get_stats(b->s)->retransmissions, 1);
        assert_int_equal(session_get_stats(b->s)->timeouts, 0);
        assert_int_equal(session_get_stats(b->s)->stray_replies, 1);
}

/* Foreign traffic mid-flash: standard frames, RTR, other hosts' requests,
 * replies from another node, a malformed reply. */
static void foreign_traffic_hook(Bench *bb, const struct isp_can_frame *f) {
        static const struct isp_can_frame junk[] = {
                { .id = 0x123, .flags = 0, .len = 2, .data = { 1, 2 } },
                { .id = 0x1B200003, .flags = ISP_FRAME_EXTENDED | ISP_FRAME_FLAG_RTR, .len = 0 },
                { .id = 0x1A200100, .flags = ISP_FRAME_EXTENDED, .len = 1, .data = { 0 } },
                { .id = 0x18FF0001, .flags = ISP_FRAME_EXTENDED, .len = 8 },
                { .id = 0x1B200007, .flags = ISP_FRAME_EXTENDED, .len = 4, .data = { 0, 0, 0x01, 0x00 } },
                { .id = 0x1B200003, .flags = ISP_FRAME_EXTENDED, .len = 3, .data = { 0, 0, 0 } },
                { .id = 0x1B000009, .flags = ISP_FRAME_EXTENDED, .len = 8, .data = { 1, 7, 1, 1, 0, 0, 0, 9 } },
        };

        if (frame_cmd(f) != ISP_CMD_PROGRAM || bb->hook_state++ % 10 != 0)
                return;
        for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
                q_push(&bb->rx, &junk[i]);
}

static void test_foreign_traffic_ignored(void **state) {
        const struct session_stats *st;

        add_node(3, 4);
        b->hook = foreign_traffic_hook;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_flashed(0);
        st = session_get_stats(b->s);
        assert_true(st->ignored_frames >= 4 * 10);
        assert_true(st->stray_replies >= 3 * 10);
}


/* ------------------------------------------------------------------------ */
/* Knowing what a node holds: up to date, verify, dry run, read-back, two
 * boards on one id */

/* A node that holds the image already is neither erased nor written: only
 * rebooted into it. */
static void test_flash_up_to_date(void **state) {
        add_node(3, 4);
        install_image(0);
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_succeeded();
        assert_int_equal(b->results[0].outcome, SESSION_OUTCOME_UP_TO_DATE);
        assert_int_equal(count_sent(ISP_CMD_ERASE), 0);
        assert_int_equal(count_sent(ISP_CMD_PROGRAM), 0);
        assert_int_equal(count_sent(ISP_CMD_REBOOT), 1);
        assert_int_equal(b->ram[0].n_erased, 0);
        assert_flash_is_image(0, b->img);
        assert_true(boots_application(0));
}

/* full (force) rewrites it anyway */
static void test_flash_up_to_date_full(void **state) {
        add_node(3, 4);
        install_image(0);
        b->cfg.full = true;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_flashed(0);
        assert_int_equal(b->results[0].outcome, SESSION_OUTCOME_FLASHED);
        assert_true(count_sent(ISP_CMD_ERASE) > 0);
        assert_true(count_sent(ISP_CMD_PROGRAM) > 0);
}

/* In a group, the member that holds the image is left alone, the other
 * flashed; the one left alone is never erased along with the other. */
static void test_flash_group_one_up_to_date(void **state) {
        const struct session_target_spec specs[] = { { .node = 3 }, { .node = 5 } };

        add_node(3, 4);
        add_node(5, 4);
        install_image(0);
        assert_int_equal(session_new_targets(&b->s, SESSION_FLASH, specs, 2, b->img, &b->cfg, &ops, b), 0);
        start_and_run();

        assert_succeeded();
        assert_int_equal(b->n_results, 2);
        for (unsigned i = 0; i < 2; i++) {
                const struct session_target_result *r = &b->results[i];

                assert_int_equal(r->outcome, r->node == 3 ? SESSION_OUTCOME_UP_TO_DATE : SESSION_OUTCOME_FLASHED);
        }
        assert_int_equal(b->ram[0].n_erased, 0);
        assert_true(b->ram[1].n_erased > 0);
        assert_flash_is_image(0, b->img);
        assert_flash_is_image(1, b->img);
        assert_true(boots_application(0));
        assert_true(boots_application(1));
}

static unsigned count_differing(const struct session_target_result *r) {
        unsigned n = 0;

        for (unsigned sec = 0; sec < ISP_SECTORS; sec++)
                n += (r->differing[sec / 8] >> (sec % 8)) & 1;
        return n;
}

static void assert_nothing_changed_sent(void) {
        assert_int_equal(count_sent(ISP_CMD_ERASE), 0);
        assert_int_equal(count_sent(ISP_CMD_PROGRAM), 0);
        assert_int_equal(count_sent(ISP_CMD_ENTER_ISP), 0);
        assert_int_equal(count_sent(ISP_CMD_REBOOT), 0);
}

static void test_verify_matches(void **state) {
        add_node(3, 4);
        install_image(0);
        new_session(SESSION_VERIFY, 3);
        start_and_run();

        assert_succeeded();
        assert_int_equal(b->results[0].outcome, SESSION_OUTCOME_MATCHES);
        assert_int_equal(count_differing(&b->results[0]), 0);
        assert_nothing_changed_sent();
}

/* An old application differs in the sectors the images do not share, and
 * in the sector only the old one uses; nothing is changed. */
static void test_verify_differs(void **state) {
        uint8_t before[ISP_FLASH_SIZE];

        add_node(3, 4);
        install_old_application(0, 9);
        memcpy(before, b->ram[0].flash, sizeof(before));
        new_session(SESSION_VERIFY, 3);
        start_and_run();

        assert_succeeded();
        assert_int_equal(b->results[0].outcome, SESSION_OUTCOME_DIFFERS);
        assert_true(count_differing(&b->results[0]) > 0);
        /* the old sector at 0x08000 the new image does not have */
        assert_true((b->results[0].differing[0x40 / 8] >> (0x40 % 8)) & 1);
        assert_nothing_changed_sent();
        assert_memory_equal(before, b->ram[0].flash, sizeof(before));
}

/* A dry run says what a flash would do and changes nothing. */
static void test_dry_run(void **state) {
        const struct session_target_result *r;
        uint8_t before[ISP_FLASH_SIZE];

        add_node(3, 4);
        install_old_application(0, 9);
        memcpy(before, b->ram[0].flash, sizeof(before));
        b->cfg.dry_run = true;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_succeeded();
        r = &b->results[0];
        assert_int_equal(r->outcome, SESSION_OUTCOME_WOULD_FLASH);
        assert_true(r->sectors_to_erase > 0);
        assert_true(r->bytes_total > 0);
        assert_true(r->estimate_usec > 0);
        assert_nothing_changed_sent();
        assert_memory_equal(before, b->ram[0].flash, sizeof(before));
}

static void test_dry_run_up_to_date(void **state) {
        add_node(3, 4);
        install_image(0);
        b->cfg.dry_run = true;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_succeeded();
        assert_int_equal(b->results[0].outcome, SESSION_OUTCOME_UP_TO_DATE);
        assert_nothing_changed_sent();
}

/* Read-back: every sector that is not blank, checked by its CRC; the
 * result is the image the node holds, entry apart. */
static void test_read_back(void **state) {
        const struct isp_image *img;
        unsigned used = 0;

        add_node(3, 4);
        install_image(0);
        new_session(SESSION_READ, 3);
        start_and_run();

        assert_succeeded();
        assert_int_equal(b->results[0].outcome, SESSION_OUTCOME_READ);
        img = session_get_read_image(b->s, 0);
        assert_non_null(img);
        for (uint32_t o = 0; o < ISP_FLASH_SIZE; o++)
                assert_int_equal(isp_image_node_byte(img, o),
                                 o >= ISP_AREA_START && o < ISP_AREA_END ? 0xFF : b->ram[0].flash[o]);
        assert_int_equal(isp_image_app_crc32(img), isp_image_app_crc32(b->img));
        assert_memory_equal(img->entry, b->img->entry, ISP_ENTRY_SIZE);
        for (unsigned sec = 0; sec < ISP_SECTORS; sec++)
                used += isp_image_sector_used(b->img, sec);
        /* a CRC per application sector, 64 READs per sector that is not blank */
        assert_int_equal(count_sent(ISP_CMD_CRC), 248);
        assert_int_equal(count_sent(ISP_CMD_READ), used * 64);
        assert_nothing_changed_sent();
}

/* Lost answers make a sector's READs disagree with its CRC: read again. */
static void test_read_back_lossy(void **state) {
        const struct isp_image *img;

        add_node(3, 4);
        install_image(0);
        b->drop_rx_every = 13;
        new_session(SESSION_READ, 3);
        start_and_run();

        assert_succeeded();
        img = session_get_read_image(b->s, 0);
        assert_non_null(img);
        assert_int_equal(isp_image_app_crc32(img), isp_image_app_crc32(b->img));
}

static void test_read_no_application(void **state) {
        add_node(3, 4);
        new_session(SESSION_READ, 3);
        start_and_run();

        assert_failed_with(SESSION_PHASE_READ, "node3 holds no application: the entry at FF:1000 is FF FF FF", NULL);
        assert_null(session_get_read_image(b->s, 0));
}

/* Two boards on one id: the second INFO fails the target before anything
 * is erased, naming both UIDs. */
static void test_conflict_at_connect(void **state) {
        add_node(3, 4);
        add_duplicate(3);
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_failed_with(SESSION_PHASE_CONNECT,
                           "node3 is claimed by two boards (UIDs C0FFEE03 and 5DFFEE03)",
                           "nothing was erased or written");
        assert_int_equal(count_sent(ISP_CMD_ERASE), 0);
        assert_int_equal(count_sent(ISP_CMD_PROGRAM), 0);
        assert_int_equal(b->results[0].reason, SESSION_REASON_CONFLICT);
        assert_int_equal(b->n_conflicts, 1);
        assert_int_equal(b->conflict_node, 3);
        assert_int_equal(b->ram[0].n_erased + b->ram[1].n_erased, 0);
}

static void test_scan_conflict(void **state) {
        add_node(3, 4);
        add_duplicate(3);
        add_node(5, 4);
        new_session(SESSION_SCAN, 0);
        start_and_run();

        assert_succeeded();
        assert_int_equal(b->n_conflicts, 1);
        assert_int_equal(b->conflict_node, 3);
        assert_memory_equal(b->conflict_uids[0], ((uint8_t[]) { 0xC0, 0xFF, 0xEE, 3 }), 4);
        assert_memory_equal(b->conflict_uids[1], ((uint8_t[]) { 0x5D, 0xFF, 0xEE, 3 }), 4);
}


/* ------------------------------------------------------------------------ */
/* Running applications: IDENTIFY, the boot check */

/* After REBOOT the new application answers IDENTIFY with the image: the
 * boot is confirmed. */
static void test_boot_confirmed(void **state) {
        add_node(3, 4);
        b->cfg.boot_timeout_ms = 2000;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_flashed(0);
        assert_int_equal(b->results[0].boot, SESSION_BOOT_CONFIRMED);
        assert_int_equal(b->results[0].phase, SESSION_PHASE_BOOT);
        assert_int_equal(count_sent_before(ISP_CMD_IDENTIFY, ISP_CMD_REBOOT), 0);
        assert_true(count_sent(ISP_CMD_IDENTIFY) >= 1);
        /* answered at once: no more asking */
        assert_true(b->now < 1000 * MSEC + 200 * MSEC * 60);
}

static void test_boot_unconfirmed(void **state) {
        add_node(3, 4);
        b->cfg.boot_timeout_ms = 2000;
        b->no_helper = true;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_flashed(0);
        assert_int_equal(b->results[0].boot, SESSION_BOOT_UNCONFIRMED);
        /* asked every 250 ms for 2 s */
        assert_true(count_sent(ISP_CMD_IDENTIFY) >= 8);
}

static void test_boot_unconfirmed_required(void **state) {
        add_node(3, 4);
        b->cfg.boot_timeout_ms = 2000;
        b->cfg.require_boot = true;
        b->no_helper = true;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_failed_with(SESSION_PHASE_BOOT, "node3: boot unconfirmed: its application did not answer IDENTIFY "
                           "within 2000 ms after REBOOT", "docs/firmware.md");
        assert_int_equal(b->results[0].boot, SESSION_BOOT_UNCONFIRMED);
        assert_flash_is_image(0, b->img);
}

static void test_boot_failed_back_in_isp(void **state) {
        add_node(3, 4);
        b->cfg.boot_timeout_ms = 2000;
        b->boot_fail = true;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_failed_with(SESSION_PHASE_BOOT, "node3: boot failed: it came back in its ISP after REBOOT", NULL);
        assert_int_equal(b->results[0].boot, SESSION_BOOT_FAILED);
}

/* A board running the image already, known to run its application: asked
 * with IDENTIFY first, left alone: no CONNECT, no ENTER_ISP. */
static void test_running_board_up_to_date(void **state) {
        const struct session_target_spec spec = { .node = 3, .application = true };

        add_node(3, 4);
        install_image(0);
        assert_true(boots_application(0));
        assert_int_equal(session_new_targets(&b->s, SESSION_FLASH, &spec, 1, b->img, &b->cfg, &ops, b), 0);
        start_and_run();

        assert_succeeded();
        assert_int_equal(b->results[0].outcome, SESSION_OUTCOME_UP_TO_DATE);
        assert_true(b->results[0].identified);
        assert_int_equal(b->results[0].image_crc, isp_image_app_crc32(b->img));
        assert_int_equal(count_sent(ISP_CMD_CONNECT), 0);
        assert_nothing_changed_sent();
        assert_int_equal(isp_node_get_mode(&b->node[0]), ISP_NODE_MODE_APPLICATION);
}

/* Not known to run: CONNECT first, then IDENTIFY; a board that runs
 * another image is put into its ISP and flashed. */
static void test_running_board_other_image(void **state) {
        add_node(3, 4);
        install_old_application(0, 9);
        assert_true(boots_application(0));
        b->cfg.boot_timeout_ms = 2000;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_flashed(0);
        assert_int_equal(b->results[0].outcome, SESSION_OUTCOME_FLASHED);
        assert_int_equal(b->results[0].boot, SESSION_BOOT_CONFIRMED);
        assert_int_equal(count_sent(ISP_CMD_ENTER_ISP), 1);
}

static void test_verify_running_board(void **state) {
        const struct session_target_spec spec = { .node = 3, .application = true };

        add_node(3, 4);
        install_old_application(0, 9);
        assert_true(boots_application(0));
        assert_int_equal(session_new_targets(&b->s, SESSION_VERIFY, &spec, 1, b->img, &b->cfg, &ops, b), 0);
        start_and_run();

        assert_succeeded();
        assert_int_equal(b->results[0].outcome, SESSION_OUTCOME_DIFFERS);
        assert_nothing_changed_sent();
        assert_int_equal(isp_node_get_mode(&b->node[0]), ISP_NODE_MODE_APPLICATION);
}

/* A dry run of a running board that differs: it would enter its ISP; it
 * is not entered. */
static void test_dry_run_running_board(void **state) {
        const struct session_target_spec spec = { .node = 3, .application = true };

        add_node(3, 4);
        install_old_application(0, 9);
        assert_true(boots_application(0));
        b->cfg.dry_run = true;
        assert_int_equal(session_new_targets(&b->s, SESSION_FLASH, &spec, 1, b->img, &b->cfg, &ops, b), 0);
        start_and_run();

        assert_succeeded();
        assert_int_equal(b->results[0].outcome, SESSION_OUTCOME_WOULD_FLASH);
        assert_true(b->results[0].estimate_usec > 0);
        assert_nothing_changed_sent();
        assert_int_equal(isp_node_get_mode(&b->node[0]), ISP_NODE_MODE_APPLICATION);
}

/* Two running boards on one id answer IDENTIFY with their own UIDs: a
 * conflict, and neither is put into its ISP. */
static void test_conflict_running_boards(void **state) {
        const struct session_target_spec spec = { .node = 3, .application = true };

        add_node(3, 4);
        add_duplicate(3);
        install_old_application(0, 9);
        install_old_application(1, 9);
        assert_true(boots_application(0));
        assert_true(boots_application(1));
        assert_int_equal(session_new_targets(&b->s, SESSION_FLASH, &spec, 1, b->img, &b->cfg, &ops, b), 0);
        start_and_run();

        assert_failed_with(_SESSION_PHASE_MAX, "node3 is claimed by two boards (UIDs C0FFEE03 and 5DFFEE03)", NULL);
        assert_int_equal(b->n_conflicts, 1);
        assert_nothing_changed_sent();
}

/* ------------------------------------------------------------------------ */
/* Failures */

static void test_connect_no_answer(void **state) {
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_failed_with(SESSION_PHASE_CONNECT,
                           "node3 did not answer CONNECT within 500 ms (4 tries",
                           "'ispctl scan' lists the nodes that answer");
        /* CONNECT, then IDENTIFY (is it running its application?), then
         * ENTER_ISP and CONNECT again */
        assert_int_equal(count_sent(ISP_CMD_CONNECT), 8);
        /* and one IDENTIFY after: did it fall back into its application? */
        assert_int_equal(count_sent(ISP_CMD_IDENTIFY), 5);
        assert_int_equal(count_sent_before(ISP_CMD_IDENTIFY, ISP_CMD_ENTER_ISP), 4);
        assert_int_equal(count_sent(ISP_CMD_ENTER_ISP), 1);
        assert_int_equal(b->n_log, 14);
        assert_int_equal(session_get_stats(b->s)->timeouts, 12);
        assert_non_null(strstr(b->fin_error, "(4 tries, then IDENTIFY, ENTER_ISP and 4 more, then IDENTIFY)"));
}

static void test_connect_no_answer_legacy(void **state) {
        add_node(0, 1);
        isp_node_power_off(&b->node[0]);
        new_session(SESSION_FLASH, 0);
        start_and_run();

        assert_failed_with(SESSION_PHASE_CONNECT, "legacy did not answer CONNECT within 500 ms (4 tries)",
                           "ispctl scan");
        /* a legacy node has no ENTER_ISP */
        assert_int_equal(count_sent(ISP_CMD_ENTER_ISP), 0);
        assert_int_equal(b->n_log, 4);
}

/* A node that answers CONNECT with 4 bytes instead of INFO is not used. */
static void short_info_hook(Bench *bb, const struct isp_can_frame *f) {
        struct isp_node_frame nf;

        if (frame_cmd(f) == ISP_CMD_CONNECT && isp_node_ram_pop(&bb->ram[0], &nf)) {
                nf.dlc = 4;
                bb->ram[0].sent[bb->ram[0].n_sent++] = nf;
        }
}

static void test_connect_malformed_info(void **state) {
        add_node(3, 4);
        b->hook = short_info_hook;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_failed_with(SESSION_PHASE_CONNECT, "node3 answered CONNECT only with malformed INFO", NULL);
        assert_int_equal(session_get_stats(b->s)->stray_replies, 4);
        assert_int_equal(count_sent(ISP_CMD_ERASE), 0);
}

static void test_program_write_failure(void **state) {
        add_node(3, 4);
        b->ram[0].fail_program = 1;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_failed_with(SESSION_PHASE_PROGRAM, "node3: PROGRAM at FE:0000 failed with status 2",
                           "write failed");
        assert_false(entry_valid(0));
        assert_false(boots_application(0));
}

static void test_program_write_failure_legacy(void **state) {
        add_node(0, 1);
        b->ram[0].fail_program = 1;
        new_session(SESSION_FLASH, 0);
        start_and_run();

        assert_failed_with(SESSION_PHASE_PROGRAM,
                           "legacy: PROGRAM at FE:0000 not acknowledged after 3 retransmissions", NULL);
        assert_false(boots_application(0));
}

static void test_erase_failure(void **state) {
        add_node(3, 4);
        b->ram[0].fail_erase = 1;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_failed_with(SESSION_PHASE_ERASE, "node3: ERASE of FF:1000-FF:11FF failed with status 2", NULL);
        assert_int_equal(count_sent(ISP_CMD_PROGRAM), 0);
}

static void test_protocol_version(void **state) {
        add_node(3, 4);
        b->info_version = 2;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_failed_with(SESSION_PHASE_CONNECT, "node3 speaks ISP protocol version 2", NULL);
        assert_int_equal(count_sent(ISP_CMD_ERASE), 0);
}

/* A byte goes bad between PROGRAM and verify. */
static void corrupt_on_verify(Bench *bb, enum session_phase phase) {
        if (phase == SESSION_PHASE_VERIFY)
                bb->ram[0].flash[0x11305] &= 0x7F;  /* FF:1305 */
}

/* A byte changed behind the node's back before verify: verify finds the
 * sector, the repair finds it cannot be programmed (status 2), erases the
 * sector and writes it again. */
static void test_verify_crc_mismatch_repaired(void **state) {
        struct session_target_result r;

        add_node(3, 4);
        b->phase_hook = corrupt_on_verify;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_flashed(0);
        assert_true(session_get_target_result(b->s, 0, &r));
        assert_int_equal(r.repairs, 1);
}

/* A bit that stays stuck at 0: the repair rounds end, and the failure
 * names the node and the sector; the entry was never written. */
static void stuck_bit_hook(Bench *bb, const struct isp_can_frame *f) {
        if (bb->phases[bb->n_phases - 1] >= SESSION_PHASE_VERIFY)
                bb->ram[0].flash[0x11305] &= 0x7F;
}

static void test_verify_crc_mismatch(void **state) {
        add_node(3, 4);
        b->hook = stuck_bit_hook;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_failed_with(SESSION_PHASE_REPAIR, "node3: verify failed: sector FF:1200-FF:13FF still differs "
                           "from the image after 3 repair rounds", NULL);
        assert_false(entry_valid(0));
        assert_false(boots_application(0));
}

/* A host that is not this session writes into a sector the image leaves
 * blank, after the blank check: a PROGRAM frame on the bus that every
 * selected node takes. Verify covers the whole application area, so the
 * flash fails there, names the sector, and the entry is never written. */
static unsigned stray_sector(void) {
        for (unsigned sec = 0; sec < 0x80; sec++)
                if (!isp_image_sector_used(b->img, sec))
                        return sec;
        fail_msg("the test image leaves no sector of FE:0000-FE:FFFF blank");
        return 0;
}

static void stray_program_hook(Bench *bb, const struct isp_can_frame *sent) {
        struct isp_can_frame f = { .id = ISP_ID_REQUEST | ((uint32_t) ISP_CMD_PROGRAM << ISP_ID_CMD_SHIFT),
                                   .flags = ISP_FRAME_EXTENDED, .len = 2,
                                   .data = { 0x12, 0x34 } };
        struct isp_node_frame nf;

        /* right after the session's first PROGRAM: the blank check is over
         * and the node is selected */
        if (frame_cmd(sent) != ISP_CMD_PROGRAM || bb->hook_state)
                return;
        bb->hook_state = 1;
        f.id |= stray_sector() * ISP_SECTOR_SIZE + 0x10;
        nf = to_node(&f);
        for (unsigned i = 0; i < bb->n_nodes; i++)
                (void) isp_node_ram_receive(&bb->ram[i], &bb->node[i], &nf);
        /* the session's socket hears it too, as on a real bus */
        if (bb->hook_state == 1)
                session_receive(bb->s, &f, bb->now);
}

static void assert_failed_on_stray(void) {
        char range[128];
        unsigned sec = stray_sector();

        snprintf(range, sizeof(range), "verify failed: sector FE:%04X-FE:%04X", sec * ISP_SECTOR_SIZE,
                 sec * ISP_SECTOR_SIZE + ISP_SECTOR_SIZE - 1);
        assert_int_equal(b->hook_state, 1);
        assert_failed_with(SESSION_PHASE_VERIFY, range, "another host wrote to it (PROGRAM ");
        assert_non_null(strstr(b->fin_error, "on the bus during this flash); the entry is not written"));
        assert_int_equal(b->ram[0].flash[sec * ISP_SECTOR_SIZE + 0x10], 0x12);
        assert_false(entry_valid(0));
        assert_false(boots_application(0));
}

static void test_verify_stray_program_in_blank_sector(void **state) {
        add_node(3, 4);
        b->hook = stray_program_hook;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_failed_on_stray();
}

/* The same on a node without QUIET: the engine's own path, acknowledged. */
static void test_verify_stray_program_in_blank_sector_acked(void **state) {
        add_node(3, 4);
        b->info_caps = ISP_CAP_CRC | ISP_CAP_SECTOR_ERASE;
        b->hook = stray_program_hook;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_failed_on_stray();
}

/* Another host's CRC answer, of a blank sector, arrives before the node's
 * answer to the session's first blank check CRC, whose run holds bytes an
 * older image left there. Taken for the session's own, it would make the
 * run look blank: those bytes would never be erased, and the node would
 * commit over them. */
static unsigned leftover_sector(void) {
        for (unsigned sec = 0x80; sec-- > 0;)
                if (!isp_image_sector_used(b->img, sec))
                        return sec;
        fail_msg("the test image leaves no sector of FE:0000-FE:FFFF blank");
        return 0;
}

static void foreign_crc_answer_hook(Bench *bb, const struct isp_can_frame *sent) {
        uint8_t blank[ISP_SECTOR_SIZE];
        uint32_t offset, length;
        struct isp_can_frame r = { .flags = ISP_FRAME_EXTENDED };

        if (frame_cmd(sent) != ISP_CMD_CRC || bb->hook_state)
                return;
        bb->hook_state = 1;
        offset = (uint32_t) sent->data[0] << 16 | (uint32_t) sent->data[1] << 8 | sent->data[2];
        length = (uint32_t) sent->data[3] << 16 | (uint32_t) sent->data[4] << 8 | sent->data[5];
        memset(blank, 0xFF, sizeof(blank));
        /* the CRC of `length` blank bytes, for a range elsewhere */
        uint32_t crc = 0;
        for (uint32_t n = 0; n < length; n += ISP_SECTOR_SIZE)
                crc = isp_crc32_update(crc, blank, ISP_SECTOR_SIZE);
        r.id = ISP_ID_REPLY | ((uint32_t) ISP_CMD_CRC << ISP_ID_CMD_SHIFT) | bb->node[0].config.node_id;
        r.data[0] = 0;
        r.data[1] = (uint8_t) (crc >> 24);
        r.data[2] = (uint8_t) (crc >> 16);
        r.data[3] = (uint8_t) (crc >> 8);
        r.data[4] = (uint8_t) crc;
        if (bb->node[0].config.echo) {
                uint32_t other = offset == 0 ? 0x11000 : 0;

                r.len = 8;
                r.data[5] = (uint8_t) (other >> 16);
                r.data[6] = (uint8_t) (other >> 8);
                r.data[7] = (uint8_t) other;
        } else {
                /* the node's firmware predates ECHO: and the session
                 * hears the other host's request, as on a real bus */
                struct isp_can_frame q = { .id = ISP_ID_REQUEST | ((uint32_t) ISP_CMD_CRC << ISP_ID_CMD_SHIFT),
                                           .flags = ISP_FRAME_EXTENDED, .len = 6,
                                           .data = { 0x01, 0xFE, 0x00, 0x00, 0x02, 0x00 } };

                session_receive(bb->s, &q, bb->now);
                r.len = 5;
        }
        q_push(&bb->rx, &r);
}

static void put_leftover(void) {
        unsigned sec = leftover_sector();

        memset(b->ram[0].flash + sec * ISP_SECTOR_SIZE + 0x40, 0x5A, 16);
}

static void test_foreign_crc_answer_echo_ignored(void **state) {
        add_node(3, 4);
        put_leftover();
        b->hook = foreign_crc_answer_hook;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_int_equal(b->hook_state, 1);
        assert_flashed(0);
        assert_true(session_get_stats(b->s)->stray_replies >= 1);
}

/* The same with firmware from before ECHO: the answers cannot be told
 * apart, but the session heard the other host's CRC request, so verify
 * covers the whole area, finds the leftover and the flash fails before
 * the commit (no node boots over bytes that are not the image). */
static void test_foreign_crc_answer_without_echo(void **state) {
        char want[96];
        unsigned sec;

        b->no_echo = true;
        add_node(3, 4);
        put_leftover();
        sec = leftover_sector();
        b->hook = foreign_crc_answer_hook;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_int_equal(b->hook_state, 1);
        snprintf(want, sizeof(want), "verify failed: sector FE:%04X-FE:%04X", sec * ISP_SECTOR_SIZE,
                 sec * ISP_SECTOR_SIZE + ISP_SECTOR_SIZE - 1);
        assert_failed_with(SESSION_PHASE_VERIFY, want, "it changed after its check (CRC (1A500000#01FE00000200) "
                           "on the bus during this flash); the entry is not written");
        assert_false(entry_valid(0));
        assert_false(boots_application(0));
}

static void test_verify_read_mismatch_legacy(void **state) {
        char expected[160];
        const uint8_t *got = b->img->flash + 0x11300;  /* before the hook runs: image == flash */

        add_node(0, 1);
        b->phase_hook = corrupt_on_verify;
        new_session(SESSION_FLASH, 0);
        start_and_run();

        snprintf(expected, sizeof(expected),
                 "verify failed at FF:1305: the node holds %02X %02X %02X %02X %02X %02X %02X %02X at FF:1300",
                 got[0], got[1], got[2], got[3], got[4], got[5] & 0x7F, got[6], got[7]);
        assert_failed_with(SESSION_PHASE_VERIFY, expected, "the image gives");
        assert_false(boots_application(0));
}

static void test_send_error(void **state) {
        add_node(3, 4);
        new_session(SESSION_FLASH, 3);
        b->send_error = -ENETDOWN;
        assert_int_equal(session_start(b->s, b->now), -ENETDOWN);
        assert_int_equal(session_get_state(b->s), SESSION_FAILED);
        assert_non_null(strstr(session_get_error(b->s), "cannot send"));
        assert_int_equal(b->n_finished, 0);

        /* and mid-flash: the session fails and reports it */
        session_free(b->s);
        b->s = NULL;
        b->send_error = 0;
        new_session(SESSION_FLASH, 3);
        assert_int_equal(session_start(b->s, b->now), 0);
        run_until(50);
        b->send_error = -ENOBUFS;
        run();
        assert_int_equal(session_get_state(b->s), SESSION_FAILED);
        assert_int_equal(b->n_finished, 1);
        assert_non_null(strstr(b->fin_error, "node3: cannot send"));
        assert_false(boots_application(0));
}

/* ------------------------------------------------------------------------ */
/* The commit rule */

static void commit_order_run(uint8_t node, unsigned power_cut_every) {
        b->check_commit_order = true;
        b->power_cut_every = power_cut_every;
        new_session(SESSION_FLASH, node);
        start_and_run();

        if (session_get_state(b->s) == SESSION_SUCCEEDED)
                assert_flash_is_image(0, b->img);
        /* whatever happened, the node never runs a half-written image */
        if (boots_application(0))
                assert_true(flash_complete(0, b->img));
        else
                assert_false(entry_valid(0));
}

static void test_commit_order_extended(void **state) {
        static const unsigned cuts[] = { 0, 3, 17, 61, 150, 311, 401, 997 };
        unsigned succeeded = 0, failed = 0;

        for (size_t k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++) {
                teardown(state);
                setup(state);
                add_node(3, 4);
                install_old_application(0, 5);
                (void) isp_node_boot(&b->node[0], /* dfu_flag= */ true);
                collect_replies();
                b->rx.n = 0;
                commit_order_run(3, cuts[k]);
                if (session_get_state(b->s) == SESSION_SUCCEEDED)
                        succeeded++;
                else {
                        failed++;
                        assert_true(cuts[k] > 0);
                }
                if (cuts[k] == 0)
                        assert_int_equal(session_get_state(b->s), SESSION_SUCCEEDED);
        }
        /* both outcomes were exercised */
        assert_true(succeeded >= 2);
        assert_true(failed >= 2);
}

static void test_commit_order_legacy(void **state) {
        static const unsigned cuts[] = { 0, 5, 41, 233, 1201 };

        for (size_t k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++) {
                teardown(state);
                setup(state);
                add_node(0, 1);
                commit_order_run(0, cuts[k]);
                if (cuts[k] == 0)
                        assert_int_equal(session_get_state(b->s), SESSION_SUCCEEDED);
        }
}

/* The two entry frames: hh ll at FF:1001 first, then 02 alone at FF:1000,
 * both after every other PROGRAM, then a READ of FF:1000. */
static void test_commit_frames(void **state) {
        size_t last_program = 0, i;

        add_node(3, 4);
        new_session(SESSION_FLASH, 3);
        start_and_run();
        assert_flashed(0);

        for (i = 0; i < b->n_log; i++)
                if (frame_cmd(&b->log[i]) == ISP_CMD_PROGRAM)
                        last_program = i;
        assert_true(last_program >= 2);
        assert_int_equal(b->log[last_program - 1].id, 0x1A211001);
        assert_int_equal(b->log[last_program - 1].len, 2);
        assert_memory_equal(b->log[last_program - 1].data, ((uint8_t[]) { 0x11, 0x00 }), 2);
        assert_int_equal(b->log[last_program].id, 0x1A211000);
        assert_int_equal(b->log[last_program].len, 1);
        assert_int_equal(b->log[last_program].data[0], 0x02);
        assert_int_equal(b->log[last_program + 1].id, 0x1A111000);
        assert_int_equal(b->log[last_program + 2].id, 0x1A400000);

        /* no other frame touches the entry bytes */
        for (i = 0; i + 1 < last_program; i++) {
                const struct isp_can_frame *f = &b->log[i];
                uint32_t off = f->id & ISP_ID_ARG_MASK;

                if (frame_cmd(f) == ISP_CMD_PROGRAM)
                        assert_true(off + f->len <= ISP_ENTRY_OFFSET || off >= ISP_ENTRY_OFFSET + ISP_ENTRY_SIZE);
        }
}

/* ------------------------------------------------------------------------ */
/* Cancel, pause, restarts */

static void test_cancel_mid_program(void **state) {
        size_t n_log;

        add_node(3, 4);
        new_session(SESSION_FLASH, 3);
        assert_int_equal(session_start(b->s, b->now), 0);
        while (count_sent(ISP_CMD_PROGRAM) < 40)
                run_until(1);
        assert_int_equal(session_get_phase(b->s), SESSION_PHASE_PROGRAM);

        n_log = b->n_log;
        session_cancel(b->s);
        assert_int_equal(session_get_state(b->s), SESSION_CANCELLED);
        assert_int_equal(b->n_finished, 1);
        assert_int_equal(b->fin_state, SESSION_CANCELLED);
        assert_null(session_get_error(b->s));
        assert_int_equal(session_deadline(b->s), UINT64_MAX);

        /* nothing is sent on cancel, nor afterwards */
        session_timeout(b->s, b->now + 60 * 1000 * MSEC);
        session_cancel(b->s);
        assert_int_equal(b->n_log, n_log);
        assert_int_equal(b->n_finished, 1);

        assert_false(entry_valid(0));
        assert_false(boots_application(0));
        assert_int_equal(isp_node_get_mode(&b->node[0]), ISP_NODE_MODE_ISP);
}

static void test_pause_resume(void **state) {
        add_node(3, 4);
        new_session(SESSION_FLASH, 3);
        assert_int_equal(session_start(b->s, b->now), 0);
        while (count_sent(ISP_CMD_PROGRAM) < 30)
                run_until(1);

        /* the link goes down: what is on the wire is lost */
        session_pause(b->s);
        b->tx.n = 0;
        b->rx.n = 0;
        b->outstanding = 0;
        assert_int_equal(session_deadline(b->s), UINT64_MAX);
        b->now += 20 * 1000 * MSEC;
        session_timeout(b->s, b->now);
        assert_int_equal(session_get_state(b->s), SESSION_RUNNING);

        session_resume(b->s, b->now);
        assert_true(b->tx.n > 0);
        assert_true(session_deadline(b->s) > b->now);
        run();

        assert_flashed(0);
        assert_int_equal(session_get_stats(b->s)->timeouts, 0);
}

/* Power cut after the 60th frame: the node restarts into ISP and
 * ANNOUNCEs; the session connects again and starts over. */
static void cut_once_hook(Bench *bb, const struct isp_can_frame *f) {
        if (bb->n_delivered == 60 && bb->hook_state == 0) {
                bb->hook_state = 1;
                isp_node_power_off(&bb->node[0]);
                assert_int_equal(isp_node_power_on(&bb->node[0]), ISP_NODE_MODE_ISP);
        }
}

static void test_announce_mid_flash(void **state) {
        bool announced = false;

        add_node(3, 4);
        b->hook = cut_once_hook;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_flashed(0);
        assert_int_equal(session_get_stats(b->s)->restarts, 1);
        for (unsigned i = 0; i < b->n_seen; i++)
                if (b->seen[i].announce && b->seen[i].node == 3)
                        announced = true;
        assert_true(announced);
        /* the erase was done twice, entry sector first both times */
        assert_int_equal(count_entry_erases(), 2);
}

static void test_restarts_bounded(void **state) {
        add_node(3, 4);
        b->power_cut_every = 40;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        /* in whatever phase the third cut landed */
        assert_failed_with(_SESSION_PHASE_MAX, "node3 restarted 3 times during the flash", NULL);
        assert_int_equal(session_get_stats(b->s)->restarts, 3);
        assert_false(boots_application(0));
}

/* ANNOUNCE from another node: reported, nothing else. */
static void other_announce_hook(Bench *bb, const struct isp_can_frame *f) {
        struct isp_can_frame a = {
                .id = 0x1B700009, .flags = ISP_FRAME_EXTENDED, .len = 8,
                .data = { 1, 7, 1, 4, 0xC0, 0xFF, 0xEE, 9 },
        };

        if (frame_cmd(f) == ISP_CMD_PROGRAM && bb->hook_state++ == 5)
                q_push(&bb->rx, &a);
}

static void test_announce_other_node(void **state) {
        add_node(3, 4);
        b->hook = other_announce_hook;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_flashed(0);
        assert_int_equal(session_get_stats(b->s)->restarts, 0);
        assert_int_equal(b->n_seen, 2);
        assert_int_equal(b->seen[1].node, 9);
        assert_true(b->seen[1].announce);
        assert_int_equal(b->seen[1].info.rx_depth, 4);
}

/* ------------------------------------------------------------------------ */
/* Conflicts */

static void test_conflict_legacy_at_connect(void **state) {
        add_node(3, 4);
        add_node(0, 1);
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_failed_with(SESSION_PHASE_CONNECT, "node3: conflict: a legacy node", "before anything was written");
        assert_int_equal(count_sent(ISP_CMD_ERASE), 0);
        assert_int_equal(count_sent(ISP_CMD_PROGRAM), 0);
        assert_int_equal(b->ram[0].n_erased + b->ram[1].n_erased, 0);
}

/* A legacy node that answers CONNECT 20 ms after the target: the session
 * still sees it before it erases anything (the legacy node would erase
 * itself along). */
static void test_conflict_slow_legacy_node(void **state) {
        add_node(3, 4);
        add_node(0, 1);
        b->reply_delay_usec[1] = 20 * MSEC;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        /* the read-only checks had begun while it listened for conflicts */
        assert_failed_with(SESSION_PHASE_ERASE, "node3: conflict: a legacy node", "before anything was written");
        assert_int_equal(count_sent(ISP_CMD_ERASE), 0);
        assert_int_equal(b->ram[0].n_erased + b->ram[1].n_erased, 0);
}

static void legacy_reply_hook(Bench *bb, const struct isp_can_frame *f) {
        static const struct isp_can_frame legacy_ack = { .id = 0x1B200000, .flags = ISP_FRAME_EXTENDED };

        if (frame_cmd(f) == ISP_CMD_PROGRAM && bb->hook_state++ == 20)
                q_push(&bb->rx, &legacy_ack);
}

static void test_conflict_legacy_mid_flash(void **state) {
        size_t n_log = 0;

        add_node(3, 4);
        b->hook = legacy_reply_hook;
        new_session(SESSION_FLASH, 3);
        assert_int_equal(session_start(b->s, b->now), 0);
        while (session_get_state(b->s) == SESSION_RUNNING) {
                n_log = b->n_log;
                run_until(1);
        }
        assert_failed_with(SESSION_PHASE_PROGRAM, "node3: conflict: a legacy node", NULL);
        /* nothing sent in reaction */
        assert_true(b->n_log <= n_log + 4);
        assert_false(boots_application(0));
}

/* The legacy CONNECT (target 0) selects every extended node: node 5
 * answers, the session deselects it again and fails. */
static void test_conflict_extended_in_legacy_session(void **state) {
        add_node(5, 4);
        new_session(SESSION_FLASH, 0);
        start_and_run();

        assert_failed_with(SESSION_PHASE_CONNECT, "legacy: conflict: node5, an extended node, answered the legacy CONNECT",
                           "have been deselected again");
        assert_false(isp_node_is_selected(&b->node[0]));
        assert_int_equal(count_sent(ISP_CMD_ERASE), 0);
        /* the deselecting CONNECT went to an absent id, flags 0 */
        assert_int_equal(b->log[b->n_log - 1].id & ~0xFFu, 0x1A000000);
        assert_int_not_equal(b->log[b->n_log - 1].id & 0xFF, 0);
        assert_int_not_equal(b->log[b->n_log - 1].id & 0xFF, 5);
        assert_int_equal(b->log[b->n_log - 1].len, 0);
}

static void test_conflict_both_in_legacy_session(void **state) {
        add_node(0, 1);
        add_node(6, 4);
        new_session(SESSION_FLASH, 0);
        start_and_run();

        assert_failed_with(SESSION_PHASE_CONNECT, "legacy: conflict: node6", NULL);
        assert_false(isp_node_is_selected(&b->node[1]));
        assert_int_equal(count_sent(ISP_CMD_ERASE), 0);
        assert_int_equal(b->ram[0].n_erased, 0);
}

/* ------------------------------------------------------------------------ */
/* Reboot sessions */

static void test_reboot_with_application(void **state) {
        struct isp_node_frame f;

        add_node(3, 4);
        install_old_application(0, 2);
        (void) isp_node_boot(&b->node[0], /* dfu_flag= */ true);
        while (isp_node_ram_pop(&b->ram[0], &f))
                ;
        new_session(SESSION_REBOOT, 3);
        start_and_run();

        assert_succeeded();
        assert_int_equal(isp_node_get_mode(&b->node[0]), ISP_NODE_MODE_APPLICATION);
        assert_int_equal(count_sent(ISP_CMD_REBOOT), 1);
        assert_int_equal(count_sent(ISP_CMD_ERASE) + count_sent(ISP_CMD_PROGRAM), 0);
}

static void test_reboot_without_application(void **state) {
        add_node(3, 4);
        new_session(SESSION_REBOOT, 3);
        start_and_run();

        assert_failed_with(SESSION_PHASE_REBOOT, "node3 has no valid application", NULL);
        assert_int_equal(isp_node_get_mode(&b->node[0]), ISP_NODE_MODE_ISP);
        /* no ENTER_ISP for a reboot */
        assert_int_equal(count_sent(ISP_CMD_ENTER_ISP), 0);
}

static void test_reboot_legacy(void **state) {
        add_node(0, 1);
        install_old_application(0, 2);
        new_session(SESSION_REBOOT, 0);
        start_and_run();

        assert_succeeded();
        assert_int_equal(isp_node_get_mode(&b->node[0]), ISP_NODE_MODE_APPLICATION);
}

static void test_reboot_no_answer(void **state) {
        new_session(SESSION_REBOOT, 12);
        start_and_run();

        assert_failed_with(SESSION_PHASE_CONNECT, "node12 did not answer CONNECT", "then ENTER_ISP and 4 more");
        /* a board that runs its application would have restarted into its ISP */
        assert_int_equal(count_sent(ISP_CMD_ENTER_ISP), 1);
}

/* A power cut during ENTER_ISP: the board comes back running its old
 * application (DfuFlag is lost), answers IDENTIFY, and gets ENTER_ISP
 * once more. */
static void cut_at_enter_isp_hook(Bench *bb, const struct isp_can_frame *f) {
        struct isp_node_frame nf;

        if (frame_cmd(f) != ISP_CMD_ENTER_ISP || bb->hook_state++ > 0)
                return;
        isp_node_power_off(&bb->node[0]);
        assert_int_equal(isp_node_power_on(&bb->node[0]), ISP_NODE_MODE_APPLICATION);
        while (isp_node_ram_pop(&bb->ram[0], &nf))
                ;       /* its ANNOUNCE, lost with the power */
}

static void test_power_cut_during_enter_isp(void **state) {
        add_node(3, 4);
        install_old_application(0, 9);
        assert_true(boots_application(0));
        b->hook = cut_at_enter_isp_hook;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_flashed(0);
        assert_int_equal(count_sent(ISP_CMD_ENTER_ISP), 2);
}

/* Rebooting a board that runs its application restarts it: ENTER_ISP,
 * CONNECT, REBOOT, and its application answers again. */
static void test_reboot_running_board(void **state) {
        const struct session_target_spec spec = { .node = 3, .application = true };

        add_node(3, 4);
        install_image(0);
        assert_true(boots_application(0));
        b->cfg.boot_timeout_ms = 2000;
        assert_int_equal(session_new_targets(&b->s, SESSION_REBOOT, &spec, 1, NULL, &b->cfg, &ops, b), 0);
        start_and_run();

        assert_succeeded();
        assert_int_equal(b->results[0].outcome, SESSION_OUTCOME_REBOOTED);
        assert_int_equal(b->results[0].boot, SESSION_BOOT_CONFIRMED);
        assert_int_equal(frame_cmd(first_sent(ISP_CMD_ENTER_ISP)), ISP_CMD_ENTER_ISP);
        assert_int_equal(count_sent_before(ISP_CMD_CONNECT, ISP_CMD_ENTER_ISP), 0);
        assert_int_equal(count_sent(ISP_CMD_REBOOT), 1);
        assert_int_equal(count_sent(ISP_CMD_ERASE), 0);
        assert_int_equal(isp_node_get_mode(&b->node[0]), ISP_NODE_MODE_APPLICATION);
}

/* The answers to REBOOT are lost: the new application answering
 * IDENTIFY with the image says the flash took. */
static void test_reboot_answer_lost_boot_confirms(void **state) {
        add_node(3, 4);
        b->cfg.boot_timeout_ms = 2000;
        b->drop_cmd_replies = 1u << ISP_CMD_REBOOT;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_flashed(0);
        assert_int_equal(b->results[0].boot, SESSION_BOOT_CONFIRMED);
        assert_int_equal(b->results[0].outcome, SESSION_OUTCOME_FLASHED);
        /* sent, sent again, never answered; then IDENTIFY */
        assert_int_equal(count_sent(ISP_CMD_REBOOT), b->cfg.retries + 1);
        assert_true(count_sent_before(ISP_CMD_IDENTIFY, ISP_CMD_REBOOT) == 0 && count_sent(ISP_CMD_IDENTIFY) >= 1);
}

/* The node writes the opcode, but its answers are lost, and it stays in
 * its ISP (no REBOOT came): no application answers IDENTIFY, its ISP
 * answers CONNECT, READ of FF:1000 shows the new entry, and the flash
 * ends as if the answers had come: REBOOT, the boot confirmed. */
static void lose_opcode_answers_hook(Bench *bb, const struct isp_can_frame *f) {
        struct isp_node_frame nf;

        if (frame_cmd(f) == ISP_CMD_PROGRAM && (f->id & ISP_ID_ARG_MASK) == ISP_ENTRY_OFFSET)
                while (isp_node_ram_pop(&bb->ram[0], &nf))
                        bb->hook_state++;
}

static void test_commit_answer_lost_entry_read(void **state) {
        add_node(3, 4);
        b->cfg.boot_timeout_ms = 2000;
        b->hook = lose_opcode_answers_hook;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_flashed(0);
        assert_int_equal(b->results[0].boot, SESSION_BOOT_CONFIRMED);
        assert_int_equal(b->hook_state, b->cfg.retries + 1);   /* every answer to the opcode lost */
        assert_true(count_sent_before(ISP_CMD_REBOOT, ISP_CMD_IDENTIFY) == 0);
        assert_int_equal(count_sent(ISP_CMD_REBOOT), 1);
        assert_non_null(strstr(b->last_notice, "node3: PROGRAM at FF:1000 not acknowledged after 3 retransmissions, "
                                                "but its ISP answers and FF:1000 holds the new entry (02 "));
}

/* The same in a group: the look (a CONNECT, which deselects the others)
 * waits until no other member needs its selection; all end flashed. */
static void test_commit_answer_lost_in_group(void **state) {
        const struct session_target_spec specs[] = { { .node = 3 }, { .node = 5 }, { .node = 6 } };

        add_node(3, 4);
        add_node(5, 4);
        add_node(6, 4);
        b->cfg.boot_timeout_ms = 2000;
        b->hook = lose_opcode_answers_hook;
        assert_int_equal(session_new_targets(&b->s, SESSION_FLASH, specs, 3, b->img, &b->cfg, &ops, b), 0);
        start_and_run();

        assert_succeeded();
        assert_int_equal(b->n_results, 3);
        for (unsigned i = 0; i < 3; i++) {
                assert_int_equal(b->results[i].outcome, SESSION_OUTCOME_FLASHED);
                assert_int_equal(b->results[i].boot, SESSION_BOOT_CONFIRMED);
                assert_flash_is_image(i, b->img);
        }
        assert_int_equal(b->hook_state, b->cfg.retries + 1);
        assert_int_equal(count_sent(ISP_CMD_REBOOT), 3);
}

/* The opcode never reaches the node: the entry stays invalid, the board
 * in its ISP; the READ says so, and the job fails saying what it holds. */
static void test_commit_lost_entry_not_written(void **state) {
        add_node(3, 4);
        b->cfg.boot_timeout_ms = 2000;
        b->drop_opcode_frames = true;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_failed_with(SESSION_PHASE_BOOT, "node3: PROGRAM at FF:1000 not acknowledged after 3 retransmissions; "
                           "its ISP answers and FF:1000 reads FF ", "the entry was not written, the board stays in "
                           "its ISP (every other sector holds the image): flash it again");
        assert_false(entry_valid(0));
        assert_int_equal(count_sent(ISP_CMD_REBOOT), 0);
        /* well before the boot wait ran out */
        assert_true(b->results[0].boot == SESSION_BOOT_FAILED);
}

/* Without a boot check the lost answers still fail it, and say what to
 * change. */
static void test_reboot_answer_lost_no_boot_check(void **state) {
        add_node(3, 4);
        b->drop_cmd_replies = 1u << ISP_CMD_REBOOT;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_failed_with(SESSION_PHASE_REBOOT, "node3: REBOOT not answered after 3 retransmissions", NULL);
}

/* A lossy CRC: the message names the setting that would help. */
static void test_loss_failure_names_retries(void **state) {
        add_node(3, 4);
        b->drop_cmd_replies = 1u << ISP_CMD_CRC;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_failed_with(_SESSION_PHASE_MAX, "not answered after 3 retransmissions",
                           "a lossy bus may need more: Retries= (or Timeout=) in stcispd.conf(5)");
}

/* ------------------------------------------------------------------------ */
/* Scan */

static void test_scan_three(void **state) {
        bool found[256] = { false };

        add_node(9, 2);
        add_node(3, 4);
        add_node(5, 8);
        new_session(SESSION_SCAN, 0);
        start_and_run();

        assert_succeeded();
        assert_int_equal(b->phases[0], SESSION_PHASE_DISCOVER);
        /* DISCOVER, then IDENTIFY (IDENTITY, ABOUT) for running applications */
        assert_int_equal(b->n_log, 3);
        assert_int_equal(b->log[0].id, 0x1A0000FF);
        assert_int_equal(b->log[1].id, 0x1A6000FF);
        assert_int_equal(b->log[1].data[0], ISP_IDENTIFY_IDENTITY);
        assert_int_equal(b->log[2].data[0], ISP_IDENTIFY_ABOUT);
        assert_int_equal(b->n_seen, 3);
        for (unsigned i = 0; i < b->n_seen; i++) {
                assert_false(b->seen[i].legacy);
                assert_false(b->seen[i].announce);
                assert_int_equal(b->seen[i].info.version, 1);
                assert_int_equal(b->seen[i].info.uid[3], b->seen[i].node);
                found[b->seen[i].node] = true;
        }
        assert_true(found[3] && found[5] && found[9]);
        /* nobody got selected by a scan */
        for (unsigned i = 0; i < 3; i++)
                assert_false(isp_node_is_selected(&b->node[i]));
        /* it listened for discover_ms */
        assert_true(b->now >= 300 * MSEC);
}

static void test_scan_none(void **state) {
        new_session(SESSION_SCAN, 0);
        start_and_run();

        assert_succeeded();
        assert_int_equal(b->n_seen, 0);
}

static void test_scan_legacy(void **state) {
        add_node(0, 1);
        add_node(4, 1);
        new_session(SESSION_SCAN, 0);
        start_and_run();

        assert_succeeded();
        assert_int_equal(b->n_seen, 2);
        assert_int_equal(b->seen[0].node, 0);
        assert_true(b->seen[0].legacy);
        assert_int_equal(b->seen[1].node, 4);
}

/* ------------------------------------------------------------------------ */
/* Per-target results, node ids in callbacks, logged strays */

/* The one target's end, as ops->target_finished gave it. */
static const struct session_target_result *assert_target_ended(enum session_state state, enum session_reason reason,
                                                               enum session_phase phase, uint32_t offset) {
        const struct session_target_result *res = &b->results[0];
        struct session_target_result again;

        assert_int_equal(b->n_results, 1);
        if (res->reason != reason)
                fail_msg("reason %s, expected %s (%s)", session_reason_to_string(res->reason),
                         session_reason_to_string(reason), res->error ? res->error : "no error");
        assert_int_equal(res->state, state);
        if (phase != _SESSION_PHASE_MAX)        /* any phase */
                assert_int_equal(res->phase, phase);
        assert_int_equal(res->offset, offset);
        if (state == SESSION_FAILED) {
                assert_non_null(res->error);
                assert_string_equal(res->error, b->fin_error);
        } else
                assert_null(res->error);

        /* the getter says the same */
        assert_true(session_get_target_result(b->s, 0, &again));
        assert_int_equal(again.reason, reason);
        assert_int_equal(again.node, res->node);
        assert_false(session_get_target_result(b->s, 1, &again));
        return res;
}

static void test_result_succeeded(void **state) {
        const struct session_target_result *res;

        add_node(3, 4);
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_flashed(0);
        res = assert_target_ended(SESSION_SUCCEEDED, SESSION_REASON_NONE, SESSION_PHASE_REBOOT, 0);
        assert_int_equal(res->node, 3);
        assert_true(res->connected);
        assert_int_equal(res->info.node, 3);
        assert_false(res->info.legacy);
        assert_int_equal(res->info.info.rx_depth, 4);
        assert_int_equal(res->info.info.version, ISP_PROTOCOL_VERSION);
        assert_true(res->flash_touched);
}

static void test_result_not_answering(void **state) {
        const struct session_target_result *res;

        new_session(SESSION_FLASH, 3);
        start_and_run();

        res = assert_target_ended(SESSION_FAILED, SESSION_REASON_NOT_ANSWERING, SESSION_PHASE_CONNECT, 0);
        assert_int_equal(res->node, 3);
        assert_false(res->connected);
        assert_false(res->flash_touched);
}

static void test_result_refused(void **state) {
        add_node(3, 4);
        b->ram[0].fail_program = 1;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        /* FE:0000 */
        assert_true(assert_target_ended(SESSION_FAILED, SESSION_REASON_REFUSED, SESSION_PHASE_PROGRAM, 0x00000)
                    ->flash_touched);
}

static void test_result_refused_erase(void **state) {
        add_node(3, 4);
        b->ram[0].fail_erase = 1;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_target_ended(SESSION_FAILED, SESSION_REASON_REFUSED, SESSION_PHASE_ERASE, ISP_ENTRY_OFFSET);
}

static void test_result_no_reply(void **state) {
        add_node(0, 1);
        b->ram[0].fail_program = 1;
        new_session(SESSION_FLASH, 0);
        start_and_run();

        assert_int_equal(assert_target_ended(SESSION_FAILED, SESSION_REASON_NO_REPLY, SESSION_PHASE_PROGRAM, 0)->node, 0);
}

static void test_result_protocol(void **state) {
        add_node(3, 4);
        b->info_version = 2;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_false(assert_target_ended(SESSION_FAILED, SESSION_REASON_PROTOCOL, SESSION_PHASE_CONNECT, 0)
                     ->flash_touched);
}

static void test_result_verify_failed_crc(void **state) {
        add_node(3, 4);
        b->hook = stuck_bit_hook;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        /* the sector FF:1200-FF:13FF */
        assert_target_ended(SESSION_FAILED, SESSION_REASON_VERIFY_FAILED, SESSION_PHASE_REPAIR, 0x11200);
}

static void test_result_verify_failed_read(void **state) {
        add_node(0, 1);
        b->phase_hook = corrupt_on_verify;
        new_session(SESSION_FLASH, 0);
        start_and_run();

        /* the byte FF:1305 */
        assert_target_ended(SESSION_FAILED, SESSION_REASON_VERIFY_FAILED, SESSION_PHASE_VERIFY, 0x11305);
}

static void test_result_conflict(void **state) {
        const struct session_target_result *res;

        add_node(3, 4);
        add_node(0, 1);
        new_session(SESSION_FLASH, 3);
        start_and_run();

        res = assert_target_ended(SESSION_FAILED, SESSION_REASON_CONFLICT, SESSION_PHASE_CONNECT, 0);
        assert_false(res->flash_touched);
}

static void test_result_conflict_extended(void **state) {
        add_node(0, 1);
        add_node(5, 4);
        new_session(SESSION_FLASH, 0);
        start_and_run();

        assert_int_equal(assert_target_ended(SESSION_FAILED, SESSION_REASON_CONFLICT, _SESSION_PHASE_MAX, 0)->node, 0);
}

static void test_result_cancelled(void **state) {
        add_node(3, 4);
        new_session(SESSION_FLASH, 3);
        assert_int_equal(session_start(b->s, b->now), 0);
        while (count_sent(ISP_CMD_PROGRAM) < 40)
                run_until(1);
        session_cancel(b->s);

        assert_int_equal(b->n_finished, 1);
        assert_true(assert_target_ended(SESSION_CANCELLED, SESSION_REASON_CANCELLED, SESSION_PHASE_PROGRAM, 0)
                    ->flash_touched);
}

static void test_result_no_application(void **state) {
        add_node(3, 4);
        new_session(SESSION_REBOOT, 3);
        start_and_run();

        assert_false(assert_target_ended(SESSION_FAILED, SESSION_REASON_NO_APPLICATION, SESSION_PHASE_REBOOT, 0)
                     ->flash_touched);
}

static void test_result_link(void **state) {
        add_node(3, 4);
        new_session(SESSION_FLASH, 3);
        assert_int_equal(session_start(b->s, b->now), 0);
        run_until(50);
        b->send_error = -ENOBUFS;
        run();

        assert_target_ended(SESSION_FAILED, SESSION_REASON_LINK, _SESSION_PHASE_MAX, 0);
}

/* session_start() failing reports nothing through the callbacks, but the
 * result is there. */
static void test_result_start_failure(void **state) {
        struct session_target_result res;

        new_session(SESSION_FLASH, 3);
        b->send_error = -ENETDOWN;
        assert_int_equal(session_start(b->s, b->now), -ENETDOWN);
        assert_int_equal(b->n_results, 0);
        assert_true(session_get_target_result(b->s, 0, &res));
        assert_int_equal(res.reason, SESSION_REASON_LINK);
        assert_int_equal(res.state, SESSION_FAILED);
        assert_string_equal(res.error, session_get_error(b->s));
}

static void test_callbacks_name_the_node(void **state) {
        add_node(3, 4);
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_flashed(0);
        assert_true(b->n_phases >= 6);
        for (unsigned i = 0; i < b->n_phases; i++)
                assert_int_equal(b->phase_nodes[i], 3);
        assert_true(b->n_prog_reports > 0);
        assert_false(b->prog_node_mixed);
        assert_int_equal(b->prog_node, 3);
}

static void test_callbacks_name_the_legacy_node(void **state) {
        add_node(0, 1);
        new_session(SESSION_FLASH, 0);
        start_and_run();

        assert_flashed(0);
        for (unsigned i = 0; i < b->n_phases; i++)
                assert_int_equal(b->phase_nodes[i], 0);
        assert_false(b->prog_node_mixed);
        assert_int_equal(b->prog_node, 0);
}

/* Whether a LOG_DEBUG message says all of `a` (and `c`). */
static bool logged_debug(const char *a, const char *c) {
        for (unsigned i = 0; i < b->n_logs && i < 64; i++)
                if (b->log_levels[i] == LOG_DEBUG && strstr(b->logs[i], a) && (!c || strstr(b->logs[i], c)))
                        return true;
        return false;
}

static void assert_logged_debug(const char *a, const char *c) {
        if (logged_debug(a, c))
                return;
        for (unsigned i = 0; i < b->n_logs && i < 64; i++)
                print_message("# logged <%d> %s\n", b->log_levels[i], b->logs[i]);
        fail_msg("no LOG_DEBUG message says \"%s\"%s%s", a, c ? " and " : "", c ? c : "");
}

static void test_stray_replies_logged(void **state) {
        add_node(3, 4);
        b->hook = foreign_traffic_hook;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_flashed(0);
        assert_logged_debug("node3: PROGRAM reply from node7 does not match the target, ignoring", NULL);
        assert_logged_debug("node3: CONNECT reply from node9 does not match the target, ignoring", NULL);
        assert_logged_debug("node3: malformed reply", ", ignoring");
}

static void test_duplicate_ack_logged(void **state) {
        add_node(3, 4);
        b->hook = dup_first_ack_hook;
        new_session(SESSION_FLASH, 3);
        start_and_run();

        assert_flashed(0);
        assert_int_equal(b->n_logs, 1);
        assert_logged_debug("node3: PROGRAM reply from node3 ", "request in flight, ignoring");
}

/* The late legacy ack comes while the next PROGRAM is held off. */
static void test_holdoff_stray_logged(void **state) {
        add_node(0, 1);
        b->late_nth_program = 10;
        b->late_usec = 600 * MSEC;
        b->late_fail_next = true;
        new_session(SESSION_FLASH, 0);
        start_and_run();

        assert_flashed(0);
        assert_logged_debug("legacy: PROGRAM reply from the legacy node during hold-off, ignoring", NULL);
}

static void test_new_targets(void **state) {
        static const struct session_target_spec two[] = { { .node = 3 }, { .node = 4, .name = "pump" } };
        static const struct session_target_spec dup[] = { { .node = 3 }, { .node = 3 } };
        static const struct session_target_spec with_legacy[] = { { .node = 0 }, { .node = 3 } };
        static const struct session_target_spec one[] = { { .node = 5, .name = "valve" } };
        struct session *s = NULL;

        assert_int_equal(session_new_targets(&s, SESSION_FLASH, two, 2, b->img, &b->cfg, &ops, b), 0);
        assert_int_equal(session_get_n_targets(s), 2);
        s = session_free(s);
        assert_int_equal(session_new_targets(&s, SESSION_REBOOT, two, 2, NULL, &b->cfg, &ops, b), 0);
        s = session_free(s);
        assert_int_equal(session_new_targets(&s, SESSION_FLASH, dup, 2, b->img, &b->cfg, &ops, b), -EINVAL);
        assert_int_equal(session_new_targets(&s, SESSION_FLASH, with_legacy, 2, b->img, &b->cfg, &ops, b), -EINVAL);
        assert_int_equal(session_new_targets(&s, SESSION_FLASH, NULL, 0, b->img, &b->cfg, &ops, b), -EINVAL);

        assert_int_equal(session_new_targets(&s, SESSION_REBOOT, one, 1, NULL, &b->cfg, &ops, b), 0);
        assert_string_equal(session_get_name(s), "valve");
        assert_int_equal(session_get_n_targets(s), 1);
        s = session_free(s);

        assert_int_equal(session_new_targets(&s, SESSION_SCAN, NULL, 0, NULL, &b->cfg, &ops, b), 0);
        assert_string_equal(session_get_name(s), "scan");
        assert_int_equal(session_get_n_targets(s), 0);
        assert_null(session_free(s));
}

/* A scan has no target: no target_finished (on_finished checks it), and
 * its phase names the broadcast id. */
static void test_scan_no_target_result(void **state) {
        add_node(3, 4);
        new_session(SESSION_SCAN, 0);
        start_and_run();

        assert_succeeded();
        assert_int_equal(b->n_results, 0);
        assert_int_equal(b->n_phases, 1);
        assert_int_equal(b->phase_nodes[0], ISP_NODE_ALL);
}

static void test_reason_strings(void **state) {
        static const char *const names[_SESSION_REASON_MAX] = {
                "none", "cancelled", "not-answering", "no-reply", "refused", "verify-failed",
                "conflict", "protocol", "no-application", "restarted", "link", "internal",
        };

        for (unsigned r = 0; r < _SESSION_REASON_MAX; r++)
                assert_string_equal(session_reason_to_string(r), names[r]);
        assert_string_equal(session_reason_to_string(_SESSION_REASON_MAX), "unknown");
}

/* ------------------------------------------------------------------------ */

static void test_strings_and_args(void **state) {
        struct session *s = NULL;
        struct session_config cfg;

        session_config_init(&cfg);
        assert_int_equal(cfg.timeout_ms, 500);
        assert_int_equal(cfg.erase_timeout_ms, 50);
        assert_int_equal(cfg.retries, 3);
        assert_int_equal(cfg.window, 8);
        assert_int_equal(cfg.discover_ms, 300);
        assert_true(cfg.verify);
        assert_true(cfg.reboot);

        assert_string_equal(session_phase_to_string(SESSION_PHASE_PROGRAM), "program");
        assert_string_equal(session_kind_to_string(SESSION_SCAN), "scan");
        assert_string_equal(session_state_to_string(SESSION_CANCELLED), "cancelled");

        assert_int_equal(session_new(&s, SESSION_FLASH, 3, NULL, NULL, &cfg, &ops, b), -EINVAL);
        assert_int_equal(session_new(&s, SESSION_FLASH, 255, NULL, b->img, &cfg, &ops, b), -EINVAL);
        assert_int_equal(session_new(&s, SESSION_REBOOT, 3, "pump", NULL, &cfg, &ops, b), 0);
        assert_string_equal(session_get_name(s), "pump");
        assert_int_equal(session_get_kind(s), SESSION_REBOOT);
        assert_int_equal(session_deadline(s), UINT64_MAX);
        assert_null(session_free(s));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_flash_extended_window, setup, teardown),
                cmocka_unit_test_setup_teardown(test_flash_extended_window_1, setup, teardown),
                cmocka_unit_test_setup_teardown(test_flash_legacy, setup, teardown),
                cmocka_unit_test_setup_teardown(test_flash_without_capabilities, setup, teardown),
                cmocka_unit_test_setup_teardown(test_flash_sector_erase_without_crc, setup, teardown),
                cmocka_unit_test_setup_teardown(test_flash_node_running_old_application, setup, teardown),
                cmocka_unit_test_setup_teardown(test_flash_no_verify_no_reboot, setup, teardown),
                cmocka_unit_test_setup_teardown(test_flash_lossy_extended, setup, teardown),
                cmocka_unit_test_setup_teardown(test_flash_lossy_legacy, setup, teardown),
                cmocka_unit_test_setup_teardown(test_duplicate_ack_ignored, setup, teardown),
                cmocka_unit_test_setup_teardown(test_late_ack_legacy, setup, teardown),
                cmocka_unit_test_setup_teardown(test_late_ack_extended, setup, teardown),
                cmocka_unit_test_setup_teardown(test_foreign_traffic_ignored, setup, teardown),
                cmocka_unit_test_setup_teardown(test_connect_no_answer, setup, teardown),
                cmocka_unit_test_setup_teardown(test_connect_no_answer_legacy, setup, teardown),
                cmocka_unit_test_setup_teardown(test_connect_malformed_info, setup, teardown),
                cmocka_unit_test_setup_teardown(test_program_write_failure, setup, teardown),
                cmocka_unit_test_setup_teardown(test_program_write_failure_legacy, setup, teardown),
                cmocka_unit_test_setup_teardown(test_erase_failure, setup, teardown),
                cmocka_unit_test_setup_teardown(test_protocol_version, setup, teardown),
                cmocka_unit_test_setup_teardown(test_verify_crc_mismatch, setup, teardown),
                cmocka_unit_test_setup_teardown(test_verify_crc_mismatch_repaired, setup, teardown),
                cmocka_unit_test_setup_teardown(test_verify_stray_program_in_blank_sector, setup, teardown),
                cmocka_unit_test_setup_teardown(test_verify_stray_program_in_blank_sector_acked, setup, teardown),
                cmocka_unit_test_setup_teardown(test_foreign_crc_answer_echo_ignored, setup, teardown),
                cmocka_unit_test_setup_teardown(test_foreign_crc_answer_without_echo, setup, teardown),
                cmocka_unit_test_setup_teardown(test_verify_read_mismatch_legacy, setup, teardown),
                cmocka_unit_test_setup_teardown(test_send_error, setup, teardown),
                cmocka_unit_test_setup_teardown(test_commit_order_extended, setup, teardown),
                cmocka_unit_test_setup_teardown(test_commit_order_legacy, setup, teardown),
                cmocka_unit_test_setup_teardown(test_commit_frames, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cancel_mid_program, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),
                cmocka_unit_test_setup_teardown(test_announce_mid_flash, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restarts_bounded, setup, teardown),
                cmocka_unit_test_setup_teardown(test_announce_other_node, setup, teardown),
                cmocka_unit_test_setup_teardown(test_conflict_legacy_at_connect, setup, teardown),
                cmocka_unit_test_setup_teardown(test_conflict_slow_legacy_node, setup, teardown),
                cmocka_unit_test_setup_teardown(test_conflict_legacy_mid_flash, setup, teardown),
                cmocka_unit_test_setup_teardown(test_conflict_extended_in_legacy_session, setup, teardown),
                cmocka_unit_test_setup_teardown(test_conflict_both_in_legacy_session, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reboot_with_application, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reboot_without_application, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reboot_legacy, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reboot_no_answer, setup, teardown),
                cmocka_unit_test_setup_teardown(test_scan_three, setup, teardown),
                cmocka_unit_test_setup_teardown(test_scan_none, setup, teardown),
                cmocka_unit_test_setup_teardown(test_scan_legacy, setup, teardown),
                cmocka_unit_test_setup_teardown(test_result_succeeded, setup, teardown),
                cmocka_unit_test_setup_teardown(test_result_not_answering, setup, teardown),
                cmocka_unit_test_setup_teardown(test_result_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_result_refused_erase, setup, teardown),
                cmocka_unit_test_setup_teardown(test_result_no_reply, setup, teardown),
                cmocka_unit_test_setup_teardown(test_result_protocol, setup, teardown),
                cmocka_unit_test_setup_teardown(test_result_verify_failed_crc, setup, teardown),
                cmocka_unit_test_setup_teardown(test_result_verify_failed_read, setup, teardown),
                cmocka_unit_test_setup_teardown(test_result_conflict, setup, teardown),
                cmocka_unit_test_setup_teardown(test_result_conflict_extended, setup, teardown),
                cmocka_unit_test_setup_teardown(test_result_cancelled, setup, teardown),
                cmocka_unit_test_setup_teardown(test_result_no_application, setup, teardown),
                cmocka_unit_test_setup_teardown(test_result_link, setup, teardown),
                cmocka_unit_test_setup_teardown(test_result_start_failure, setup, teardown),
                cmocka_unit_test_setup_teardown(test_callbacks_name_the_node, setup, teardown),
                cmocka_unit_test_setup_teardown(test_callbacks_name_the_legacy_node, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stray_replies_logged, setup, teardown),
                cmocka_unit_test_setup_teardown(test_duplicate_ack_logged, setup, teardown),
                cmocka_unit_test_setup_teardown(test_holdoff_stray_logged, setup, teardown),
                cmocka_unit_test_setup_teardown(test_new_targets, setup, teardown),
                cmocka_unit_test_setup_teardown(test_scan_no_target_result, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reason_strings, setup, teardown),
                cmocka_unit_test_setup_teardown(test_strings_and_args, setup, teardown),
                cmocka_unit_test_setup_teardown(test_flash_up_to_date, setup, teardown),
                cmocka_unit_test_setup_teardown(test_flash_up_to_date_full, setup, teardown),
                cmocka_unit_test_setup_teardown(test_flash_group_one_up_to_date, setup, teardown),
                cmocka_unit_test_setup_teardown(test_verify_matches, setup, teardown),
                cmocka_unit_test_setup_teardown(test_verify_differs, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dry_run, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dry_run_up_to_date, setup, teardown),
                cmocka_unit_test_setup_teardown(test_read_back, setup, teardown),
                cmocka_unit_test_setup_teardown(test_read_back_lossy, setup, teardown),
                cmocka_unit_test_setup_teardown(test_read_no_application, setup, teardown),
                cmocka_unit_test_setup_teardown(test_conflict_at_connect, setup, teardown),
                cmocka_unit_test_setup_teardown(test_scan_conflict, setup, teardown),
                cmocka_unit_test_setup_teardown(test_boot_confirmed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_boot_unconfirmed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_boot_unconfirmed_required, setup, teardown),
                cmocka_unit_test_setup_teardown(test_boot_failed_back_in_isp, setup, teardown),
                cmocka_unit_test_setup_teardown(test_running_board_up_to_date, setup, teardown),
                cmocka_unit_test_setup_teardown(test_running_board_other_image, setup, teardown),
                cmocka_unit_test_setup_teardown(test_verify_running_board, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dry_run_running_board, setup, teardown),
                cmocka_unit_test_setup_teardown(test_conflict_running_boards, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reboot_running_board, setup, teardown),
                cmocka_unit_test_setup_teardown(test_power_cut_during_enter_isp, setup, teardown),
                cmocka_unit_test_setup_teardown(test_commit_answer_lost_entry_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_lost_entry_not_written, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_answer_lost_in_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reboot_answer_lost_boot_confirms, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reboot_answer_lost_no_boot_check, setup, teardown),
                cmocka_unit_test_setup_teardown(test_loss_failure_names_retries, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
