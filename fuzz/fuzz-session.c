/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Invariant fuzzing of the protocol engine (daemon/session*.c): the input
 * drives one flash session over 1-8 real node cores (sim/node/isp-node.c
 * on RAM flash, the application helper where they run their application)
 * on a virtual clock, with faults on the way: frames lost in either
 * direction, replies duplicated and delayed (so reordered), forged
 * replies (spoofed ids, hashed payloads), stale replies (a node's own
 * earlier replies, sent again), clock jumps (time-outs), and power cuts
 * of node cores, which come back as on a real power-up.
 *
 * After every step (a frame delivered to the cores, a reply delivered to
 * the session, a time-out), and on the way, abort() on:
 *
 *   a) a core getting its entry opcode (PROGRAM of 0x02 at flash offset
 *      0x11000) while any other application byte of its flash differs
 *      from the image: checked on the core's RAM flash as the frame is
 *      delivered;
 *   b) an ERASE or PROGRAM frame delivered to a core that executes it
 *      (selected, in its ISP; a legacy core executes everything) and is
 *      not a live target of the session when the frame was sent: not a
 *      target, a target already finished, a second core with a target's
 *      id, a legacy core while extended targets are flashed;
 *   c) an ERASE or PROGRAM touching the ISP area 0x10000-0x10FFF or
 *      anything at or above 0x20000;
 *   d) a session that does not end (finished callback) within a bound of
 *      steps and virtual time (the bound grows with the faults injected);
 *   e) a core that boots, after a power cut or at the end, an entry over
 *      bytes that are neither the image nor what it held before (BRICK).
 *
 * The harness knows the protocol from docs/protocol.md and the image from
 * lib/, never the engine's internals: what it asserts is the flash of
 * the cores and the frames on the bus, not a request sequence.
 *
 * One thing no host can see is kept out: where two boards could answer
 * for one id (duplicate ids, a legacy core beside others), the replies
 * that tell them apart (CONNECT, IDENTIFY, ANNOUNCE) are never lost or
 * delayed, and the requests that select and deselect (CONNECT) reach
 * every core or none; a legacy core beside others gets no power cut (its
 * ISP comes back silent). Each of those would hide a board from any
 * host (docs/protocol.md 4.1, 6), which is not a defect of the engine.
 * Identical frames two cores send at once are one frame, as on CAN, and
 * a bench has one legacy core at most (a second one gets id 7).
 *
 * Input layout (short inputs are zero-padded; see fuzz/README.md):
 *   0      flags: bit 0 QUIET off, 1 full, 2 no reboot, 3 boot check,
 *          4-7 window - 1
 *   1      bits 0-1 retries, 2-3 time-out (50, 100, 200, 500 ms),
 *          4-6 cores - 1
 *   2-5    image seed
 *   6      bits 0-2: image sectors beside the entry's, 3-4 density
 *   7-22   two bytes per core (8 cores):
 *          A: bits 0-2 id (0 = legacy), 3 a target, 4-5 flash (blank,
 *             old image, the image, torn: old with its entry erased),
 *             6 runs its application (if its entry is valid),
 *             7 the target is given as running its application
 *          B: bits 0-2 capabilities cleared from INFO (CRC, SECTOR_ERASE,
 *             QUIET), 3-5 rx depth - 1, 6-7 UID variant
 *   23-    faults, 3 bytes each: steps to wait, kind, argument
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "isp-frame.h"
#include "isp-image.h"
#include "isp-node-ram.h"
#include "isp-node.h"
#include "session.h"

#define MAX_CORES 8
#define QUEUE_MAX 4096
#define HELD_MAX 64
#define STALE_MAX 64
#define MSEC 1000ULL
#define FRAME_USEC 200ULL               /* bus time per frame */

/* (d): the bound. A fault-free flash of the largest image here takes a few
 * thousand steps and seconds; every fault may cost a time-out or a restart
 * of the flash, and power cuts and clock jumps add their own time. */
#define STEPS_BASE 200000u
#define STEPS_PER_FAULT 20000u
#define USEC_BASE (600ULL * 1000 * MSEC)
#define USEC_PER_FAULT (60ULL * 1000 * MSEC)

enum fault {
        FAULT_DROP_TX,          /* the next request reaches no core */
        FAULT_DROP_TX_ONE,      /* ... not core arg % n (never a CONNECT) */
        FAULT_DROP_RX,          /* the next reply is lost */
        FAULT_DUP_RX,           /* the next reply comes twice */
        FAULT_DELAY_RX,         /* the next reply comes arg * 4 ms late */
        FAULT_SPOOF,            /* a forged reply */
        FAULT_STALE,            /* an earlier reply of a node, again */
        FAULT_POWER_CUT,        /* core arg % n loses power for (arg / 8) * 50 ms */
        FAULT_CLOCK_JUMP,       /* the clock jumps arg * 10 ms */
        FAULT_FOREIGN,          /* a frame of other traffic */
        _FAULT_MAX,
};

struct queued {
        struct isp_can_frame f;
        unsigned live_version;          /* the live targets when it was sent */
};

struct queue {
        struct queued q[QUEUE_MAX];
        unsigned head, n;
};

struct core {
        struct isp_node_ram ram;
        struct isp_node node;
        uint8_t id;
        bool target;
        uint8_t caps_clear;
        uint64_t power_on_at;           /* off until then; 0 = powered */
        uint8_t old[ISP_FLASH_SIZE];    /* the flash it started with */
};

struct bench {
        unsigned n;
        bool conflict_possible;         /* duplicate ids, or a legacy core and others */
        bool legacy_target;

        struct isp_image img;
        struct session_config cfg;
        struct session *s;
        uint64_t now;
        unsigned steps;

        struct queue tx, rx;
        struct { uint64_t release; struct isp_can_frame f; } held[HELD_MAX];
        unsigned n_held;
        struct isp_can_frame stale[STALE_MAX];  /* replies the cores sent, a ring */
        unsigned n_stale;

        /* live[v][id]: the live targets as of version v; a version per
         * target_finished call */
        bool live[MAX_CORES + 2][256];
        unsigned live_version;

        unsigned n_finished;
        unsigned n_target_finished;

        /* the fault to apply, and when */
        struct fuzz_input *in;
        unsigned fault_wait;
        int fault;                      /* -1: none pending */
        uint8_t fault_arg;
        unsigned n_faults;
        uint64_t injected_usec;
        uint32_t hash;
        uint32_t last_program_offset;

        uint8_t want[ISP_FLASH_SIZE];   /* what the image leaves in a node's flash, ISP area included */
        struct core core[MAX_CORES];    /* last: set up by setup_cores() only as far as used */
};

static struct bench *b;
static int verbose;             /* FUZZ_VERBOSE: 1 the end, 2 every frame too */

static void trace(const char *what, const struct isp_can_frame *f) {
        char buf[ISP_FRAME_STRING_MAX];

        if (verbose >= 2)
                fprintf(stderr, "%10.3f ms  %-12s %s\n", (double) b->now / MSEC - 1000, what, isp_frame_to_string(f, buf));
}

/* ------------------------------------------------------------------------ */

static void q_push(struct queue *q, const struct isp_can_frame *f, unsigned version) {
        fuzz_check(q->n < QUEUE_MAX, "queue overflow: the engine sent more than %u frames without a reply", QUEUE_MAX);
        q->q[(q->head + q->n++) % QUEUE_MAX] = (struct queued) { .f = *f, .live_version = version };
}

static bool q_pop(struct queue *q, struct queued *ret) {
        if (q->n == 0)
                return false;
        *ret = q->q[q->head];
        q->head = (q->head + 1) % QUEUE_MAX;
        q->n--;
        return true;
}

static unsigned frame_cmd(const struct isp_can_frame *f) {
        return (f->id >> 20) & 0x0F;
}

static bool is_request(const struct isp_can_frame *f) {
        return (f->id & 0x1F000000u) == 0x1A000000u;
}

/* A hash of what the fuzzer chose, for forged payloads: libFuzzer's
 * comparison tracing cannot turn it into the CRC or data the engine
 * expects, which would be a forgery no bus sees by chance. */
static uint32_t mix(uint32_t x) {
        b->hash = (b->hash ^ x) * 0x9E3779B1u;
        b->hash ^= b->hash >> 15;
        b->hash *= 0x85EBCA77u;
        b->hash ^= b->hash >> 13;
        return b->hash;
}

static bool app_offset(uint32_t o) {
        return o < ISP_AREA_START || o >= ISP_AREA_END;
}

/* ------------------------------------------------------------------------ */
/* The image: a seed, a number of sectors, a density; the harness's own
 * HEX writer, so the image goes through the loader the daemon uses. */

struct hex {
        char *text;
        size_t len, cap;
        uint32_t upper;
};

static void hex_line(struct hex *h, uint16_t addr, uint8_t type, const uint8_t *data, uint8_t n) {
        uint8_t sum = (uint8_t) (n + (addr >> 8) + (addr & 0xFF) + type);

        if (h->len + 16 + 2 * n > h->cap) {
                h->cap = (h->cap + 64 + 2 * n) * 2;
                h->text = realloc(h->text, h->cap);
                fuzz_check(h->text, "out of memory");
        }
        h->len += (size_t) sprintf(h->text + h->len, ":%02X%04X%02X", n, addr, type);
        for (unsigned i = 0; i < n; i++) {
                h->len += (size_t) sprintf(h->text + h->len, "%02X", data[i]);
                sum = (uint8_t) (sum + data[i]);
        }
        h->len += (size_t) sprintf(h->text + h->len, "%02X\n", (uint8_t) -sum);
}

/* Bytes at a logical address 0xFE0000-0xFFFFFF. */
static void hex_data(struct hex *h, uint32_t address, const uint8_t *data, size_t n) {
        while (n > 0) {
                uint8_t chunk = (uint8_t) (n > 16 ? 16 : n);
                uint8_t ext[2];

                if (chunk > 0x10000 - (address & 0xFFFF))
                        chunk = (uint8_t) (0x10000 - (address & 0xFFFF));
                if (address >> 16 != h->upper) {
                        h->upper = address >> 16;
                        ext[0] = (uint8_t) (h->upper >> 8);
                        ext[1] = (uint8_t) h->upper;
                        hex_line(h, 0, 0x04, ext, 2);
                }
                hex_line(h, (uint16_t) address, 0x00, data, chunk);
                address += chunk;
                data += chunk;
                n -= chunk;
        }
}

static uint32_t lcg(uint32_t *state) {
        *state = *state * 1103515245u + 12345u;
        return *state >> 16;
}

/* The 248 application sectors: 0-127 in FE:, 136-255 in FF: (the entry's
 * is 136). */
static unsigned app_sector(uint32_t *rng) {
        unsigned k = lcg(rng) % 247;

        return k < 128 ? k : k + 9;             /* 137-255 */
}

static void make_image(struct isp_image *img, uint32_t seed, uint8_t shape) {
        struct hex h = { .upper = 0xFFFFFFFF };
        struct isp_image_error e;
        unsigned n_sectors = shape & 7, density = (shape >> 3) & 3;
        uint32_t rng = seed;
        uint16_t target = (uint16_t) (0x1003 + lcg(&rng) % 0x100);
        uint8_t ljmp[3] = { 0x02, (uint8_t) (target >> 8), (uint8_t) target };
        uint8_t buf[ISP_SECTOR_SIZE];
        bool used[ISP_SECTORS] = {};
        int r;

        hex_data(&h, 0xFF0000, ljmp, 3);
        /* the rest of the entry sector, from the entry's target on */
        for (unsigned i = 0; i < 64; i++)
                buf[i] = (uint8_t) lcg(&rng);
        hex_data(&h, 0xFF0000 + target, buf, 64);

        for (unsigned k = 0; k < n_sectors; k++) {
                unsigned sector = app_sector(&rng);
                uint32_t offset = sector * ISP_SECTOR_SIZE;
                unsigned len = density == 0 ? 8 : density == 1 ? 64 : ISP_SECTOR_SIZE;

                if (used[sector])
                        continue;       /* fewer sectors, rather than records that overlap */
                used[sector] = true;

                for (unsigned i = 0; i < len; i++) {
                        uint32_t v = lcg(&rng);
                        /* 0xFF bytes inside, as real code has them */
                        buf[i] = v % 11 == 0 ? 0xFF : (uint8_t) v;
                }
                hex_data(&h, 0xFE0000 + offset + (len < ISP_SECTOR_SIZE ? lcg(&rng) % (ISP_SECTOR_SIZE - len) : 0),
                         buf, len);
        }
        hex_line(&h, 0, 0x01, NULL, 0);

        r = isp_image_load(img, h.text, h.len, ISP_IMAGE_HEX, &e);
        fuzz_check(r == 0, "the harness's image does not load: line %u: %s", e.line, e.message);
        free(h.text);
}

/* ------------------------------------------------------------------------ */
/* Cores */

static uint8_t image_byte(uint32_t o) {
        return b->want[o];
}

/* The flash a node holds after the update, and its old contents, compared
 * over the application area: the two ranges around the ISP. */
static bool app_equal(const uint8_t *x, const uint8_t *y) {
        return memcmp(x, y, ISP_AREA_START) == 0 &&
               memcmp(x + ISP_AREA_END, y + ISP_AREA_END, ISP_FLASH_SIZE - ISP_AREA_END) == 0;
}

/* An older application: the image with some sectors changed, one stray
 * sector, and a valid entry of its own. */
static void install_old(struct core *c, uint32_t seed) {
        uint32_t rng = seed | 1;

        memcpy(c->ram.flash, b->want, ISP_AREA_START);
        memcpy(c->ram.flash + ISP_AREA_END, b->want + ISP_AREA_END, ISP_FLASH_SIZE - ISP_AREA_END);
        for (unsigned k = 0; k < 3; k++) {
                unsigned sector = app_sector(&rng);

                if (lcg(&rng) & 1) {
                        uint32_t at = sector * ISP_SECTOR_SIZE + lcg(&rng) % 256;

                        memset(c->ram.flash + at, (uint8_t) lcg(&rng), 32);
                } else
                        c->ram.flash[sector * ISP_SECTOR_SIZE + lcg(&rng) % ISP_SECTOR_SIZE] ^= 0x5A;
        }
        /* an old entry: LJMP to somewhere else in its entry sector */
        c->ram.flash[ISP_ENTRY_OFFSET] = 0x02;
        c->ram.flash[ISP_ENTRY_OFFSET + 1] = 0x10;
        c->ram.flash[ISP_ENTRY_OFFSET + 2] = (uint8_t) (0x03 + lcg(&rng) % 0xF0);
}

static bool entry_valid(const struct core *c) {
        return isp_node_entry_is_valid(c->ram.flash + ISP_ENTRY_OFFSET);
}

static bool flash_is_image(const struct core *c) {
        return app_equal(c->ram.flash, b->want);
}

static bool flash_is_old(const struct core *c) {
        return app_equal(c->ram.flash, c->old);
}

/* (e): a valid entry only over the image or the old contents. */
static void check_not_brick(const struct core *c, const char *when) {
        if (!entry_valid(c))
                return;
        fuzz_check(flash_is_image(c) || flash_is_old(c),
                   "(e) %s: core %u (id %u) has a valid entry over bytes that are neither the image nor its old contents (BRICK)",
                   when, (unsigned) (c - b->core), c->id);
        fuzz_check(memcmp(c->ram.flash + ISP_AREA_START, c->old + ISP_AREA_START, ISP_AREA_END - ISP_AREA_START) == 0,
                   "(c) core %u: the ISP area changed", (unsigned) (c - b->core));
}

static void power_on(struct core *c) {
        c->power_on_at = 0;
        (void) isp_node_power_on(&c->node);
        check_not_brick(c, "after a power cut");
}

/* ------------------------------------------------------------------------ */
/* Faults */

static void next_fault(void) {
        if (b->in->pos + 3 > b->in->size) {
                b->fault = -1;
                return;
        }
        b->fault_wait = fuzz_u8(b->in);
        b->fault = fuzz_u8(b->in) % _FAULT_MAX;
        b->fault_arg = fuzz_u8(b->in);
        b->n_faults++;
}

/* The fault due at this step, if it is of one of the kinds in `mask`;
 * -1 otherwise. A fault waits for the next step it applies to. */
static int take_fault(unsigned mask) {
        int f;

        if (b->fault < 0 || b->fault_wait > 0 || !((mask >> b->fault) & 1))
                return -1;
        f = b->fault;
        next_fault();
        return f;
}

static void tick(void) {
        b->steps++;
        if (b->fault >= 0 && b->fault_wait > 0)
                b->fault_wait--;
}

/* CRC and ERASE replies, and every legacy reply, carry nothing that ties
 * them to their request (docs/protocol.md 5, 6): a host that receives one twice can only
 * take the copy for the answer to its next request. FUZZ_SESSION_TIED=1
 * leaves out the faults that do just that (a second copy, a stale one, a
 * late one, a forged one from a target's id), so that fuzzing can look past that
 * known weakness while the engine has it (issue 12, item 3). */
static bool tied_only;

static bool untied_reply(const struct isp_can_frame *f) {
        return tied_only && (frame_cmd(f) == ISP_CMD_CRC || frame_cmd(f) == ISP_CMD_ERASE ||
                             (f->id & 0xFF) == 0);      /* a legacy reply: no node, no offset */
}

/* A reply that tells two boards apart where that matters. */
static bool protected_reply(const struct isp_can_frame *f) {
        unsigned cmd = frame_cmd(f);

        return b->conflict_possible &&
               (cmd == ISP_CMD_CONNECT || cmd == ISP_CMD_IDENTIFY || cmd == ISP_CMD_ENTER_ISP);
}

static void hold(const struct isp_can_frame *f, uint64_t usec) {
        if (b->n_held == HELD_MAX) {
                q_push(&b->rx, f, 0);
                return;
        }
        b->held[b->n_held].release = b->now + usec;
        b->held[b->n_held].f = *f;
        b->n_held++;
}

static void release_held(void) {
        for (unsigned i = 0; i < b->n_held;) {
                if (b->held[i].release > b->now) {
                        i++;
                        continue;
                }
                q_push(&b->rx, &b->held[i].f, 0);
                memmove(&b->held[i], &b->held[i + 1], (b->n_held - i - 1) * sizeof(b->held[0]));
                b->n_held--;
        }
}

static uint64_t next_event(void) {
        uint64_t d = UINT64_MAX;

        for (unsigned i = 0; i < b->n_held; i++)
                if (b->held[i].release < d)
                        d = b->held[i].release;
        for (unsigned i = 0; i < b->n; i++)
                if (b->core[i].power_on_at && b->core[i].power_on_at < d)
                        d = b->core[i].power_on_at;
        return d;
}

static void power_ons(void) {
        for (unsigned i = 0; i < b->n; i++)
                if (b->core[i].power_on_at && b->core[i].power_on_at <= b->now)
                        power_on(&b->core[i]);
}

/* A forged reply: from a target's id or any id, with a hashed payload. */
static void spoof(uint8_t arg) {
        static const uint8_t cmds[] = { ISP_CMD_PROGRAM, ISP_CMD_ERASE, ISP_CMD_CRC, ISP_CMD_READ,
                                        ISP_CMD_CONNECT, ISP_CMD_REBOOT, ISP_CMD_ENTER_ISP, ISP_CMD_IDENTIFY };
        uint8_t cmd = cmds[arg & 7], node;
        struct isp_can_frame f = { .flags = ISP_FRAME_EXTENDED };
        uint32_t h = mix(arg);

        node = (arg & 0x08) ? (uint8_t) (h >> 24) : b->core[(arg >> 4) % b->n].id;
        f.id = 0x1B000000u | (uint32_t) cmd << 20 | node;
        if (!(arg & 0x08) && untied_reply(&f))
                return;
        for (unsigned i = 0; i < 8; i++)
                f.data[i] = (uint8_t) (mix(i) >> 8);
        switch (cmd) {
        case ISP_CMD_PROGRAM:           /* an ack of the last PROGRAM sent, or of anything */
                f.len = node ? 4 : 0;
                f.data[0] = (arg & 0x80) ? f.data[0] & 3 : 0;
                if (!(arg & 0x40)) {
                        f.data[1] = (uint8_t) (b->last_program_offset >> 16);
                        f.data[2] = (uint8_t) (b->last_program_offset >> 8);
                        f.data[3] = (uint8_t) b->last_program_offset;
                }
                break;
        case ISP_CMD_ERASE:
        case ISP_CMD_REBOOT:
                f.len = node ? 1 : 0;
                f.data[0] = (arg & 0x80) ? f.data[0] & 7 : 0;
                break;
        case ISP_CMD_CRC:
                f.len = 5;
                f.data[0] = 0;
                break;
        default:
                f.len = 8;
                break;
        }
        q_push(&b->rx, &f, 0);
}

/* ------------------------------------------------------------------------ */
/* Session callbacks */

/* (c) on every frame the engine sends; decoded by the harness itself
 * (docs/protocol.md 5), not by lib/'s parser. */
static void check_request_range(const struct isp_can_frame *f) {
        unsigned cmd = frame_cmd(f);
        uint32_t begin, end;

        if (!is_request(f) || (cmd != ISP_CMD_PROGRAM && cmd != ISP_CMD_ERASE))
                return;
        fuzz_check(f->flags == ISP_FRAME_EXTENDED && f->len <= 8, "the engine sent a malformed %s frame",
                   cmd == ISP_CMD_PROGRAM ? "PROGRAM" : "ERASE");
        if (cmd == ISP_CMD_PROGRAM) {
                begin = f->id & 0xFFFFF;
                end = begin + f->len;
                fuzz_check(f->len >= 1, "the engine sent an empty PROGRAM");
        } else {
                if (f->len == 0)
                        return;         /* full ERASE: the node spares its ISP */
                fuzz_check(f->len == 4, "the engine sent an ERASE of DLC %u", f->len);
                begin = (uint32_t) f->data[0] << 16 | (uint32_t) f->data[1] << 8 | f->data[2];
                end = begin + (uint32_t) f->data[3] * ISP_SECTOR_SIZE;
        }
        fuzz_check(end <= ISP_FLASH_SIZE && (end <= ISP_AREA_START || begin >= ISP_AREA_END),
                   "(c) the engine sent %s of 0x%05X-0x%05X: the ISP area or beyond the flash",
                   cmd == ISP_CMD_PROGRAM ? "PROGRAM" : "ERASE", (unsigned) begin, (unsigned) end);
}

static int on_send(void *userdata, const struct isp_can_frame *f) {
        (void) userdata;
        check_request_range(f);
        if (frame_cmd(f) == ISP_CMD_PROGRAM)
                b->last_program_offset = f->id & 0xFFFFF;
        trace("sent", f);
        q_push(&b->tx, f, b->live_version);
        return 0;
}

static void on_target_finished(void *userdata, const struct session_target_result *r) {
        unsigned v = b->live_version + 1;

        (void) userdata;
        fuzz_check(b->n_finished == 0, "a target finished after the session");
        fuzz_check(r->state != SESSION_RUNNING, "target %u finished running", r->node);
        fuzz_check(b->live[b->live_version][r->node], "target %u finished twice, or was never one", r->node);
        fuzz_check(v < MAX_CORES + 2, "more target ends than targets");
        memcpy(b->live[v], b->live[b->live_version], sizeof(b->live[v]));
        b->live[v][r->node] = false;
        b->live_version = v;
        b->n_target_finished++;
}

static void on_finished(void *userdata, enum session_state state, const char *error) {
        (void) userdata;
        fuzz_check(state != SESSION_RUNNING, "finished while running");
        fuzz_check((state == SESSION_FAILED) == (error != NULL), "finished %s with error %s",
                   session_state_to_string(state), error ? error : "(null)");
        b->n_finished++;
}

static const struct session_ops ops = {
        .send = on_send,
        .target_finished = on_target_finished,
        .finished = on_finished,
};

/* ------------------------------------------------------------------------ */
/* The bus */

static struct isp_node_frame to_node(const struct isp_can_frame *f) {
        struct isp_node_frame n = { .id = f->id | ISP_NODE_FRAME_EXTENDED, .dlc = f->len };

        memcpy(n.data, f->data, 8);
        return n;
}

/* Does core c execute this READ/PROGRAM/ERASE: powered, in its ISP,
 * selected (a legacy core executes all)? */
static bool executes(const struct core *c) {
        return isp_node_get_mode(&c->node) == ISP_NODE_MODE_ISP && isp_node_is_selected(&c->node);
}

/* (b) */
static void check_receivers(const struct queued *q) {
        const bool *live = b->live[q->live_version];
        const char *what = frame_cmd(&q->f) == ISP_CMD_PROGRAM ? "PROGRAM" : "ERASE";

        for (unsigned i = 0; i < b->n; i++) {
                const struct core *c = &b->core[i];

                if (!executes(c))
                        continue;
                fuzz_check(live[c->id], "(b) %s 0x%08X reached core %u (id %u, %s), which is not a live target",
                           what, (unsigned) q->f.id, i, c->id,
                           !c->target ? "not a target" : "its target had finished");
                fuzz_check(c->id != 0 || b->legacy_target, "(b) %s reached the legacy core %u while extended nodes are flashed",
                           what, i);
                for (unsigned k = 0; k < b->n; k++)
                        fuzz_check(k == i || b->core[k].id != c->id || !executes(&b->core[k]),
                                   "(b) %s 0x%08X reached cores %u and %u, both with id %u", what,
                                   (unsigned) q->f.id, i, k, c->id);
        }
}

/* (a): the frame writes the entry opcode at FF:1000. */
static bool writes_opcode(const struct isp_can_frame *f) {
        uint32_t offset = f->id & 0xFFFFF;

        return is_request(f) && frame_cmd(f) == ISP_CMD_PROGRAM && offset <= ISP_ENTRY_OFFSET &&
               offset + f->len > ISP_ENTRY_OFFSET && f->data[ISP_ENTRY_OFFSET - offset] == 0x02;
}

static void check_commit(const struct core *c, const struct isp_can_frame *f) {
        uint32_t begin = f->id & 0xFFFFF, end = begin + f->len;

        for (uint32_t o = 0; o < ISP_FLASH_SIZE; o++) {
                if (o == 0 || o == ISP_AREA_END + 8) {
                        /* the common case, at memcmp speed: a run that matches */
                        uint32_t run = o == 0 ? ISP_AREA_START : ISP_FLASH_SIZE - o;

                        if (memcmp(c->ram.flash + o, b->want + o, run) == 0) {
                                o += run - 1;
                                continue;
                        }
                }
                if (!app_offset(o) || (o >= begin && o < end))
                        continue;
                fuzz_check(c->ram.flash[o] == image_byte(o),
                           "(a) core %u (id %u) gets its entry opcode while flash offset 0x%05X holds 0x%02X, not the image's 0x%02X",
                           (unsigned) (c - b->core), c->id, (unsigned) o, c->ram.flash[o], image_byte(o));
        }
}

static void collect_replies(void) {
        struct isp_can_frame got[MAX_CORES * 4];
        unsigned n = 0;

        for (unsigned i = 0; i < b->n; i++) {
                struct isp_node_frame nf;

                while (isp_node_ram_pop(&b->core[i].ram, &nf)) {
                        struct isp_can_frame f = {
                                .id = nf.id & ISP_NODE_FRAME_ID_MASK,
                                .flags = ISP_FRAME_EXTENDED,
                                .len = nf.dlc,
                        };

                        memcpy(f.data, nf.data, 8);
                        /* capabilities the bench takes away from INFO (CONNECT and ANNOUNCE) */
                        if ((frame_cmd(&f) == ISP_CMD_CONNECT || frame_cmd(&f) == ISP_CMD_ENTER_ISP) && f.len == 8)
                                f.data[1] &= (uint8_t) ~b->core[i].caps_clear;
                        if (n < MAX_CORES * 4)
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
                /* Two boards sending the same frame at once put one frame
                 * on the bus: CAN cannot tell them apart. */
                if (i > 0 && got[i].id == got[i - 1].id && got[i].len == got[i - 1].len &&
                    memcmp(got[i].data, got[i - 1].data, got[i].len) == 0)
                        continue;
                b->stale[b->n_stale++ % STALE_MAX] = got[i];
                q_push(&b->rx, &got[i], 0);
        }
}

static void deliver_to_cores(const struct queued *q) {
        struct isp_node_frame nf = to_node(&q->f);
        unsigned cmd = frame_cmd(&q->f);
        int f = take_fault(1u << FAULT_DROP_TX | 1u << FAULT_DROP_TX_ONE);
        int skip = -1;
        bool opcode = writes_opcode(&q->f);
        bool had_opcode[MAX_CORES];

        if (f == FAULT_DROP_TX && !(b->conflict_possible && cmd == ISP_CMD_CONNECT)) {
                trace("LOST", &q->f);
                return;
        }
        if (f == FAULT_DROP_TX_ONE && cmd != ISP_CMD_CONNECT) {
                skip = (int) (b->fault_arg % b->n);
                if (verbose >= 2)
                        fprintf(stderr, "             not to core %d:\n", skip);
        }
        trace("to cores", &q->f);

        if (is_request(&q->f) && (cmd == ISP_CMD_PROGRAM || cmd == ISP_CMD_ERASE))
                check_receivers(q);

        for (unsigned i = 0; i < b->n; i++) {
                struct core *c = &b->core[i];

                if ((int) i == skip || c->power_on_at)
                        continue;
                had_opcode[i] = c->ram.flash[ISP_ENTRY_OFFSET] == 0x02;
                if (opcode && !had_opcode[i] && executes(c))
                        check_commit(c, &q->f);
                (void) isp_node_ram_receive(&c->ram, &c->node, &nf);
        }
        collect_replies();
}

static void deliver_to_session(const struct queued *q) {
        int f = take_fault(1u << FAULT_DROP_RX | 1u << FAULT_DUP_RX | 1u << FAULT_DELAY_RX);
        uint8_t arg = b->fault_arg;

        if (f == FAULT_DROP_RX && !protected_reply(&q->f)) {
                trace("LOST reply", &q->f);
                return;
        }
        if (f == FAULT_DELAY_RX && !protected_reply(&q->f) && !untied_reply(&q->f)) {
                trace("DELAYED", &q->f);
                hold(&q->f, (uint64_t) (arg + 1) * 4 * MSEC);
                b->injected_usec += (uint64_t) (arg + 1) * 4 * MSEC;
                return;
        }
        trace("to session", &q->f);
        session_receive(b->s, &q->f, b->now);
        if (f == FAULT_DUP_RX && b->n_finished == 0 && !untied_reply(&q->f)) {
                trace("AGAIN", &q->f);
                b->now += FRAME_USEC;
                session_receive(b->s, &q->f, b->now);
        }
}

/* The faults that are not about a frame on its way. */
static void apply_bus_faults(void) {
        int f = take_fault(1u << FAULT_SPOOF | 1u << FAULT_STALE | 1u << FAULT_POWER_CUT |
                           1u << FAULT_CLOCK_JUMP | 1u << FAULT_FOREIGN);
        uint8_t arg = b->fault_arg;
        struct core *c;

        switch (f) {
        case FAULT_SPOOF:
                if (verbose >= 2)
                        fprintf(stderr, "             forged reply:\n");
                spoof(arg);
                break;
        case FAULT_STALE:
                if (b->n_stale > 0 && !untied_reply(&b->stale[(b->n_stale - 1 - arg % (b->n_stale < STALE_MAX ? b->n_stale : STALE_MAX)) % STALE_MAX])) {
                        unsigned n = b->n_stale < STALE_MAX ? b->n_stale : STALE_MAX;

                        if (verbose >= 2)
                                fprintf(stderr, "             stale reply:\n");
                        q_push(&b->rx, &b->stale[(b->n_stale - 1 - arg % n) % STALE_MAX], 0);
                }
                break;
        case FAULT_POWER_CUT:
                c = &b->core[arg % b->n];
                /* A legacy ISP comes back silent: beside other boards,
                 * no host could see it before it executes a request
                 * (docs/protocol.md 6: it must be alone on its bus). */
                if (c->id == 0 && b->n > 1)
                        break;
                if (!c->power_on_at) {
                        if (verbose >= 2)
                                fprintf(stderr, "%10.3f ms  POWER CUT core %u for %u ms\n", (double) b->now / MSEC - 1000,
                                        (unsigned) (c - b->core), (arg / 8) * 50);
                        isp_node_power_off(&c->node);
                        c->power_on_at = b->now + 1 + (uint64_t) (arg / 8) * 50 * MSEC;
                        b->injected_usec += (uint64_t) (arg / 8) * 50 * MSEC;
                }
                break;
        case FAULT_CLOCK_JUMP:
                if (verbose >= 2)
                        fprintf(stderr, "             clock jumps %u ms\n", (arg + 1) * 10);
                b->now += (uint64_t) (arg + 1) * 10 * MSEC;
                b->injected_usec += (uint64_t) (arg + 1) * 10 * MSEC;
                break;
        case FAULT_FOREIGN: {
                struct isp_can_frame x = { .id = mix(arg) & 0x1FFFFFFF, .flags = ISP_FRAME_EXTENDED, .len = arg % 9 };

                for (unsigned i = 0; i < 8; i++)
                        x.data[i] = (uint8_t) mix(i);
                q_push(&b->rx, &x, 0);
                break;
        }
        default:
                break;
        }
}

static void run(void) {
        uint64_t start = b->now;

        while (b->n_finished == 0) {
                struct queued q;
                uint64_t d, e;

                fuzz_check(b->steps < STEPS_BASE + STEPS_PER_FAULT * b->n_faults &&
                           b->now - start < USEC_BASE + USEC_PER_FAULT * b->n_faults + b->injected_usec,
                           "(d) the session has not ended after %u steps and %llu ms (%u faults)",
                           b->steps, (unsigned long long) ((b->now - start) / MSEC), b->n_faults);
                tick();
                apply_bus_faults();
                power_ons();

                if (q_pop(&b->tx, &q)) {
                        b->now += FRAME_USEC;
                        deliver_to_cores(&q);
                        continue;
                }
                release_held();
                if (q_pop(&b->rx, &q)) {
                        b->now += FRAME_USEC;
                        deliver_to_session(&q);
                        continue;
                }
                d = session_deadline(b->s);
                e = next_event();
                if (e < d) {
                        b->now = e > b->now ? e : b->now;
                        continue;
                }
                if (d == UINT64_MAX && verbose)
                        for (unsigned i = 0; i < session_get_n_targets(b->s); i++) {
                                struct session_target_result r;

                                if (session_get_target_result(b->s, i, &r))
                                        fprintf(stderr, "  target %s: %s in phase %s\n", r.name,
                                                session_state_to_string(r.state), session_phase_to_string(r.phase));
                        }
                fuzz_check(d != UINT64_MAX, "(d) the session waits for nothing but has not ended (phase %s)",
                           session_phase_to_string(session_get_phase(b->s)));
                if (d > b->now)
                        b->now = d;
                session_timeout(b->s, b->now);
        }
        fuzz_check(b->n_finished == 1, "finished called %u times", b->n_finished);
        fuzz_check(b->n_target_finished == session_get_n_targets(b->s), "%u of %u targets reported",
                   b->n_target_finished, session_get_n_targets(b->s));
}

/* ------------------------------------------------------------------------ */

static void setup_cores(struct fuzz_input *in) {
        uint8_t cores[MAX_CORES][2];

        for (unsigned i = 0; i < MAX_CORES; i++) {
                cores[i][0] = fuzz_u8(in);
                cores[i][1] = fuzz_u8(in);
        }
        for (unsigned i = 0; i < b->n; i++) {
                struct core *c = &b->core[i];
                uint8_t a = cores[i][0], x = cores[i][1];
                struct isp_node_config config = {
                        .node_id = a & 7,
                        .isp_version = 3,
                        .rx_depth = (uint8_t) (((x >> 3) & 7) + 1),
                        .uid = { 0xC0, (uint8_t) (x >> 6), (uint8_t) i, a & 7 },
                };

                c->id = a & 7;
                /* One legacy core at most: two are one board to any host,
                 * their replies being the same frames. */
                for (unsigned k = 0; k < i; k++)
                        if (c->id == 0 && b->core[k].id == 0)
                                c->id = 7;
                config.node_id = c->id;
                config.uid[3] = c->id;
                c->caps_clear = x & 7;
                c->power_on_at = 0;
                isp_node_ram_init(&c->ram);
                switch ((a >> 4) & 3) {
                case 1:
                        install_old(c, a | (uint32_t) x << 8 | i << 16);
                        break;
                case 2:
                        memcpy(c->ram.flash, b->want, ISP_FLASH_SIZE);
                        break;
                case 3:
                        install_old(c, a | (uint32_t) x << 8 | i << 16);
                        memset(c->ram.flash + ISP_ENTRY_OFFSET, 0xFF, ISP_SECTOR_SIZE);
                        break;
                default:
                        break;
                }
                memcpy(c->old, c->ram.flash, ISP_FLASH_SIZE);
                fuzz_check(isp_node_init(&c->node, &config, &isp_node_ram_ops, &c->ram) == 0, "isp_node_init");
                if ((a & 0x40) && entry_valid(c))
                        isp_node_run_application(&c->node);
                else
                        (void) isp_node_power_on(&c->node);
                c->ram.n_sent = 0;      /* nobody listened yet */
        }
        for (unsigned i = 0; i < b->n; i++)
                for (unsigned k = 0; k < i; k++)
                        if (b->core[i].id == b->core[k].id || b->core[i].id == 0 || b->core[k].id == 0)
                                b->conflict_possible = true;
}

/* The targets: the cores marked so, one spec per id, the legacy node only
 * alone; the first core if none is. */
static unsigned setup_targets(struct fuzz_input *in, struct session_target_spec *specs, const uint8_t *a) {
        unsigned n = 0;
        bool extended = false, seen[256] = {};

        (void) in;
        for (unsigned i = 0; i < b->n; i++)
                if ((a[i] & 0x08) && b->core[i].id != 0)
                        extended = true;
        for (unsigned i = 0; i < b->n; i++) {
                uint8_t id = b->core[i].id;

                if (!(a[i] & 0x08) || seen[id] || (id == 0 && extended))
                        continue;
                seen[id] = true;
                specs[n++] = (struct session_target_spec) { .node = id, .application = (a[i] & 0x80) != 0 };
        }
        if (n == 0) {
                specs[n++] = (struct session_target_spec) { .node = b->core[0].id, .application = (a[0] & 0x80) != 0 };
                seen[b->core[0].id] = true;
        }
        for (unsigned i = 0; i < b->n; i++)
                b->core[i].target = seen[b->core[i].id];
        b->legacy_target = seen[0];
        for (unsigned i = 0; i < n; i++)
                b->live[0][specs[i].node] = true;
        return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct fuzz_input in = { .data = data, .size = size };
        struct session_target_spec specs[MAX_CORES];
        uint8_t flags, timing, shape, a[MAX_CORES];
        uint32_t seed;
        unsigned n_specs;
        int r;

        if (!b) {
                verbose = getenv("FUZZ_VERBOSE") ? atoi(getenv("FUZZ_VERBOSE")) : 0;
                tied_only = getenv("FUZZ_SESSION_TIED") != NULL;
                b = malloc(sizeof(*b));         /* 2 MiB of flash: not on the stack, not per input */
                fuzz_check(b, "out of memory");
        }
        memset(b, 0, offsetof(struct bench, core));
        b->in = &in;
        b->hash = 0x5EED;

        flags = fuzz_u8(&in);
        timing = fuzz_u8(&in);
        seed = fuzz_u32(&in);
        shape = fuzz_u8(&in);
        b->n = ((timing >> 4) & 7) + 1;
        for (unsigned i = 0; i < MAX_CORES; i++)
                a[i] = in.pos + 2 * i < size ? data[in.pos + 2 * i] : 0;

        make_image(&b->img, seed, shape);
        for (uint32_t o = 0; o < ISP_FLASH_SIZE; o++)
                b->want[o] = app_offset(o) ? isp_image_node_byte(&b->img, o) : isp_node_isp_pattern(o);
        setup_cores(&in);

        session_config_init(&b->cfg);
        b->cfg.quiet = !(flags & 0x01);
        b->cfg.full = flags & 0x02;
        b->cfg.reboot = !(flags & 0x04);
        b->cfg.boot_timeout_ms = (flags & 0x08) ? 300 : 0;
        b->cfg.window = ((flags >> 4) & 15) + 1;
        b->cfg.retries = timing & 3;
        b->cfg.timeout_ms = (uint32_t[]) { 50, 100, 200, 500 }[(timing >> 2) & 3];
        b->cfg.verify = true;           /* the promise holds with verify; stcispd always verifies */

        n_specs = setup_targets(&in, specs, a);
        r = session_new_targets(&b->s, SESSION_FLASH, specs, n_specs, &b->img, &b->cfg, &ops, NULL);
        fuzz_check(r == 0, "session_new_targets() refused %u targets: %s", n_specs, strerror(-r));

        next_fault();
        b->now = 1000 * MSEC;
        r = session_start(b->s, b->now);
        if (r == 0)
                run();

        if (verbose) {
                fprintf(stderr, "%u cores, %u targets, %u faults: %s after %u steps, %llu ms%s%s\n", b->n, n_specs,
                        b->n_faults, session_state_to_string(session_get_state(b->s)), b->steps,
                        (unsigned long long) (b->now / MSEC - 1000), session_get_error(b->s) ? ": " : "",
                        session_get_error(b->s) ?: "");
                for (unsigned i = 0; i < b->n; i++)
                        fprintf(stderr, "  core %u id %u%s: %s, entry %s\n", i, b->core[i].id,
                                b->core[i].target ? " (target)" : "",
                                flash_is_image(&b->core[i]) ? "the image" : flash_is_old(&b->core[i]) ? "old" : "other",
                                entry_valid(&b->core[i]) ? "valid" : "invalid");
        }

        /* (e) at the end, and after the power-up a board gets next */
        for (unsigned i = 0; i < b->n; i++) {
                struct core *c = &b->core[i];

                check_not_brick(c, "at the end");
                isp_node_power_off(&c->node);
                power_on(c);
        }
        b->s = session_free(b->s);
        return 0;
}
