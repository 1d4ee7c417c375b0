/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "isp-node-ram.h"
#include "sim-can-bits.h"
#include "sim-fleet.h"

/* One transmitter's frames waiting for the bus, FIFO. */
typedef struct TxEntry {
        struct isp_node_frame frame;
        uint64_t ready;
} TxEntry;

typedef struct TxQueue {
        TxEntry *items;
        size_t head, len, cap;
} TxQueue;

struct SimNode {
        SimFleet *fleet;
        struct isp_node core;
        char label[16];
        uint8_t id;
        SimFault fault;
        uint8_t rx_depth;
        uint8_t *flash;

        /* receive buffer: the CAN controller's FIFO */
        struct isp_node_frame *rx;
        unsigned rx_head, rx_len;

        TxQueue tx;
        uint64_t rng;

        uint64_t n_received; /* frames that reached the controller */
        uint64_t n_taken;    /* frames taken from the receive buffer */

        bool powered;
        bool power_cut_done;
        uint64_t restart_at;
        uint64_t busy_until;

        /* while the core runs: what it did */
        unsigned long n_programmed, n_erased;
        struct isp_node_frame pending[2];
        unsigned n_pending;

        /* while the core is in application mode: what runs instead */
        enum {
                APP_NONE,        /* nothing that answers (no-helper, not up yet) */
                APP_HELPER,      /* the helper, sim/node/isp-app.h */
                APP_LEGACY,      /* a legacy node's application: ENTER_ISP only */
        } app_kind;
        struct isp_app app;
        uint64_t app_crc_at;     /* when the helper's image CRC is done */
        uint64_t crash_at;       /* boot-fail: when the application resets */

        bool dirty;
        uint64_t writeback_at;
};

struct SimFleet {
        SimTiming timing;
        uint8_t rx_depth;
        uint64_t seed;
        FILE *log;
        SimFleetCallbacks callbacks;
        void *userdata;

        SimNode **nodes;
        size_t n_nodes;

        TxQueue host;

        bool bus_busy;
        bool bus_request;
        struct isp_node_frame bus_frame;
        uint64_t bus_end;

        uint64_t now;
        SimFleetStats stats;
};

/* ---- small pieces ---- */

static uint64_t splitmix64(uint64_t *state) {
        uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));

        z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
        return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double random_unit(uint64_t *state) {
        return (double) (splitmix64(state) >> 11) * 0x1.0p-53;
}

static uint64_t min_u64(uint64_t a, uint64_t b) {
        return a < b ? a : b;
}

static uint64_t max_u64(uint64_t a, uint64_t b) {
        return a > b ? a : b;
}

static int txq_push(TxQueue *q, const struct isp_node_frame *frame, uint64_t ready) {
        if (q->len == q->cap) {
                size_t cap = q->cap ? q->cap * 2 : 16;
                TxEntry *items = malloc(cap * sizeof(TxEntry));

                if (!items)
                        return -ENOMEM;
                for (size_t i = 0; i < q->len; i++)
                        items[i] = q->items[(q->head + i) % q->cap];
                free(q->items);
                q->items = items;
                q->cap = cap;
                q->head = 0;
        }
        q->items[(q->head + q->len) % q->cap] = (TxEntry) { .frame = *frame, .ready = ready };
        q->len++;
        return 0;
}

static const TxEntry *txq_peek(const TxQueue *q) {
        return q->len > 0 ? &q->items[q->head] : NULL;
}

static void txq_pop(TxQueue *q) {
        q->head = (q->head + 1) % q->cap;
        q->len--;
}

static void txq_clear(TxQueue *q) {
        q->head = 0;
        q->len = 0;
}

static bool frame_equal(const struct isp_node_frame *a, const struct isp_node_frame *b) {
        return a->id == b->id && a->dlc == b->dlc && memcmp(a->data, b->data, a->dlc) == 0;
}

static uint64_t frame_nsec(SimFleet *fleet, const struct isp_node_frame *frame) {
        if (fleet->timing.bitrate == 0)
                return 0;
        return sim_can_bits_to_nsec(sim_can_frame_bits(frame), fleet->timing.bitrate);
}

static bool timing_on(SimFleet *fleet) {
        return fleet->timing.bitrate > 0;
}

static void frame_format(const struct isp_node_frame *f, char *buf, size_t len) {
        int n = snprintf(buf, len, "%08" PRIX32 "#", (uint32_t) (f->id & ISP_NODE_FRAME_ID_MASK));

        for (unsigned i = 0; i < f->dlc && i < 8 && n > 0 && (size_t) n + 2 < len; i++)
                n += snprintf(buf + n, len - (size_t) n, "%02X", f->data[i]);
}

_printf_(2, 3)
static void node_log(SimNode *node, const char *format, ...) {
        char line[512];
        va_list ap;
        int n;

        if (!node->fleet->log)
                return;
        n = snprintf(line, sizeof(line), "%s: ", node->label);
        va_start(ap, format);
        (void) vsnprintf(line + n, sizeof(line) - (size_t) n, format, ap);
        va_end(ap);
        fprintf(node->fleet->log, "%s\n", line);
        fflush(node->fleet->log);
}

/* ---- the node's board: flash in memory, sends collected ---- */

static void op_flash_read(void *userdata, uint32_t offset, uint8_t *buf, uint8_t len) {
        SimNode *node = userdata;

        memcpy(buf, node->flash + offset, len);
}

static int op_flash_program(void *userdata, uint32_t offset, const uint8_t *data, uint8_t len) {
        SimNode *node = userdata;

        for (uint8_t i = 0; i < len; i++)
                node->flash[offset + i] &= data[i];
        node->n_programmed += len;
        return 0;
}

static int op_flash_erase_sector(void *userdata, uint32_t offset) {
        SimNode *node = userdata;

        memset(node->flash + offset, 0xFF, ISP_NODE_SECTOR_SIZE);
        node->n_erased++;
        return 0;
}

static void op_send(void *userdata, const struct isp_node_frame *frame) {
        SimNode *node = userdata;

        /* The core sends at most one frame per call; keep room for two. */
        if (node->n_pending < ELEMENTSOF(node->pending))
                node->pending[node->n_pending++] = *frame;
}

static const struct isp_node_ops sim_node_ops = {
        .flash_read = op_flash_read,
        .flash_program = op_flash_program,
        .flash_erase_sector = op_flash_erase_sector,
        .send = op_send,
};

/* ---- the application, while the core runs it ---- */

static void node_app_stop(SimNode *node) {
        node->app_kind = APP_NONE;
        node->app_crc_at = SIM_NSEC_INFINITY;
        node->crash_at = SIM_NSEC_INFINITY;
}

/* What the STC application note's application code does on ENTER_ISP:
 * DfuFlag into XRAM, IAP_CONTR = 0x20. The ISP then sends ANNOUNCE. */
static void node_app_enter_isp(SimNode *node) {
        node_app_stop(node);
        isp_node_set_dfu_flag(&node->core);
        (void) isp_node_soft_reset(&node->core);
}

static void op_enter_isp(void *userdata) {
        node_app_enter_isp(userdata);
}

static const struct isp_app_ops sim_app_ops = {
        .flash_read = op_flash_read,
        .send = op_send,
        .enter_isp = op_enter_isp,
};

/* Queue what the core sent during its last call, ready at the given time. */
static void node_flush_pending(SimNode *node, uint64_t ready) {
        for (unsigned i = 0; i < node->n_pending; i++)
                if (txq_push(&node->tx, &node->pending[i], ready) < 0)
                        node_log(node, "out of memory, reply lost");
        node->n_pending = 0;
}

static void node_writeback(SimNode *node) {
        SimFleet *fleet = node->fleet;

        node->dirty = false;
        node->writeback_at = SIM_NSEC_INFINITY;
        if (fleet->callbacks.writeback)
                (void) fleet->callbacks.writeback(fleet, node, fleet->userdata);
}

static SimNode *node_free(SimNode *node) {
        if (!node)
                return NULL;
        free(node->tx.items);
        free(node->rx);
        free(node->flash);
        free(node);
        return NULL;
}

static int node_new(SimFleet *fleet, uint8_t id, unsigned instance, const SimFault *fault, SimNode **ret) {
        _cleanup_(freep) SimNode *node = NULL;
        struct isp_node_config config = {};
        uint64_t uid_state;
        uint32_t uid;

        node = calloc(1, sizeof(SimNode));
        if (!node)
                return -ENOMEM;

        node->fleet = fleet;
        node->id = id;
        node->fault = *fault;
        if (instance > 0)
                /* the second node of a duplicate pair is a healthy board
                 * that runs the same application */
                node->fault = (SimFault) {
                        .rx_depth = fault->rx_depth,
                        .application = fault->application,
                        .app_version = fault->app_version,
                        .no_echo = fault->no_echo,
                };
        node->rx_depth = fault->rx_depth ? fault->rx_depth : fleet->rx_depth;
        (void) snprintf(node->label, sizeof(node->label), instance ? "node%u-dup" : "node%u", id);
        node->restart_at = SIM_NSEC_INFINITY;
        node->writeback_at = SIM_NSEC_INFINITY;
        node_app_stop(node);
        node->rng = fleet->seed ^ ((uint64_t) id << 32) ^ ((uint64_t) instance << 48);

        node->flash = malloc(ISP_NODE_FLASH_SIZE);
        node->rx = calloc(node->rx_depth, sizeof(struct isp_node_frame));
        if (!node->flash || !node->rx) {
                free(node->flash);
                free(node->rx);
                return -ENOMEM;
        }
        memset(node->flash, 0xFF, ISP_NODE_FLASH_SIZE);
        isp_node_fill_isp_pattern(node->flash);

        /* A chip's UID is its own: it depends on the node, not on --seed. */
        uid_state = UINT64_C(0x5354433332470000) | ((uint64_t) instance << 8) | id;
        uid = (uint32_t) splitmix64(&uid_state);
        config.node_id = id;
        config.isp_version = 1;
        config.rx_depth = node->rx_depth;
        config.echo = !node->fault.no_echo;
        config.uid[0] = (uint8_t) (uid >> 24);
        config.uid[1] = (uint8_t) (uid >> 16);
        config.uid[2] = (uint8_t) (uid >> 8);
        config.uid[3] = (uint8_t) uid;
        if (isp_node_init(&node->core, &config, &sim_node_ops, node) < 0) {
                free(node->flash);
                free(node->rx);
                return -EINVAL;
        }

        *ret = TAKE_PTR(node);
        return 0;
}

/* ---- fleet ---- */

int sim_fleet_new(SimFleet **ret, const SimTiming *timing, uint8_t rx_depth, uint64_t seed,
                  FILE *log, const SimFleetCallbacks *callbacks, void *userdata) {
        SimFleet *fleet;

        fleet = calloc(1, sizeof(SimFleet));
        if (!fleet)
                return -ENOMEM;
        fleet->timing = *timing;
        fleet->rx_depth = rx_depth ? rx_depth : 1;
        fleet->seed = seed;
        fleet->log = log;
        if (callbacks)
                fleet->callbacks = *callbacks;
        fleet->userdata = userdata;
        *ret = fleet;
        return 0;
}

SimFleet *sim_fleet_free(SimFleet *fleet) {
        if (!fleet)
                return NULL;
        for (size_t i = 0; i < fleet->n_nodes; i++)
                node_free(fleet->nodes[i]);
        free(fleet->nodes);
        free(fleet->host.items);
        free(fleet);
        return NULL;
}

static int fleet_append(SimFleet *fleet, SimNode *node) {
        SimNode **nodes = realloc(fleet->nodes, (fleet->n_nodes + 1) * sizeof(SimNode *));

        if (!nodes)
                return -ENOMEM;
        fleet->nodes = nodes;
        fleet->nodes[fleet->n_nodes++] = node;
        return 0;
}

int sim_fleet_add_node(SimFleet *fleet, uint8_t id, const SimFault *fault) {
        static const SimFault no_fault = {};
        unsigned instances;
        int r;

        if (id == 0xFF)
                return -EINVAL;
        if (!fault)
                fault = &no_fault;

        instances = fault->duplicate ? 2 : 1;
        for (unsigned i = 0; i < instances; i++) {
                SimNode *node;

                r = node_new(fleet, id, i, fault, &node);
                if (r < 0)
                        return r;
                r = fleet_append(fleet, node);
                if (r < 0) {
                        node_free(node);
                        return r;
                }
        }
        return 0;
}

size_t sim_fleet_get_n_nodes(SimFleet *fleet) {
        return fleet->n_nodes;
}

SimNode *sim_fleet_get_node(SimFleet *fleet, size_t i) {
        return i < fleet->n_nodes ? fleet->nodes[i] : NULL;
}

SimNode *sim_fleet_find_node(SimFleet *fleet, uint8_t id) {
        for (size_t i = 0; i < fleet->n_nodes; i++)
                if (fleet->nodes[i]->id == id)
                        return fleet->nodes[i];
        return NULL;
}

/* The core has just started the application, at time t: through its boot
 * decision or a REBOOT (by_isp), or because the node runs it from the
 * start (the `app` fault). */
static void node_app_start(SimNode *node, uint64_t t, bool by_isp) {
        SimFleet *fleet = node->fleet;
        struct isp_app_config config = {
                .node_id = node->id,
                .app_version = node->fault.app_version,
        };
        uint8_t info[8];

        node_app_stop(node);
        if (by_isp && node->fault.boot_fail) {
                node->crash_at = t + SIM_BOOT_FAIL_DELAY;
                node_log(node, "its application does not come up (boot-fail): back in ISP in %" PRIu64 " ms",
                         SIM_BOOT_FAIL_DELAY / NSEC_PER_MSEC);
                return;
        }
        if (node->fault.no_helper) {
                node_log(node, "its application has no helper (no-helper): it answers nothing");
                return;
        }
        if (isp_node_is_legacy(&node->core)) {
                node->app_kind = APP_LEGACY;
                return;
        }

        isp_node_get_info(&node->core, info);
        memcpy(config.uid, info + 4, 4);
        if (isp_app_init(&node->app, &config, &sim_app_ops, node) < 0) {
                /* cannot happen: node ids are 1-254 here */
                node_log(node, "the application helper refused its configuration");
                return;
        }
        node->app_kind = APP_HELPER;
        node->app_crc_at = timing_on(fleet) ? t + fleet->timing.app_crc : t;
}

/* The helper's image CRC is done: run its polls to the end at once (the
 * time they take is app_crc); the last one answers a pending IDENTITY.
 * Silent otherwise: a node's last log line stays the last thing the host
 * made it do. */
static void node_app_finish_crc(SimNode *node, uint64_t t) {
        node->app_crc_at = SIM_NSEC_INFINITY;
        node->n_pending = 0;
        while (isp_app_poll(&node->app))
                ;
        if (node->n_pending > 0) {
                const uint8_t *d = node->pending[0].data;

                node_log(node, "IDENTIFY -> UID %02X%02X%02X%02X, image %02X%02X%02X%02X (waited for the CRC)",
                         d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]);
        }
        node_flush_pending(node, t);
}

/* boot-fail: the application crashed; a watchdog resets the chip, and
 * DfuFlag (set by the failed start, as a real board's crash handler or
 * boot counter would) keeps the ISP there. */
static void node_boot_fail_reset(SimNode *node, uint64_t t) {
        node->crash_at = SIM_NSEC_INFINITY;
        node->n_pending = 0;
        isp_node_set_dfu_flag(&node->core);
        (void) isp_node_soft_reset(&node->core);
        node_log(node, "its application did not come up: reset into ISP%s",
                 isp_node_is_legacy(&node->core) ? " (legacy, no ANNOUNCE)" : ", ANNOUNCE");
        node_flush_pending(node, t);
}

/* A legacy node's application knows only ENTER_ISP, for target 0 or all;
 * its ISP does not announce. */
static int legacy_app_receive(SimNode *node, const struct isp_node_frame *frame) {
        uint32_t id = frame->id & ISP_NODE_FRAME_ID_MASK;
        uint32_t target = id & 0xFFFFF;
        static const uint8_t magic[4] = { 0x12, 0xAB, 0xCD, 0x34 };

        if (((id >> 20) & 0xF) != ISP_NODE_CMD_ENTER_ISP ||
            (target != ISP_NODE_TARGET_LEGACY && target != ISP_NODE_TARGET_ALL) ||
            frame->dlc != 4 || memcmp(frame->data, magic, 4) != 0)
                return ISP_APP_IGNORED;
        node_app_enter_isp(node);
        return ISP_APP_ENTERED_ISP;
}

/* A frame for whatever runs while the core is in application mode. The
 * frame is an extended ISP request (sim_fleet_receive() checked). */
static int node_app_receive(SimNode *node, const struct isp_node_frame *frame) {
        switch (node->app_kind) {
        case APP_HELPER:
                return isp_app_receive(&node->app, frame);
        case APP_LEGACY:
                return legacy_app_receive(node, frame);
        default:
                return ISP_APP_IGNORED;
        }
}

static void node_power_on(SimNode *node, uint64_t t) {
        enum isp_node_mode mode;
        uint8_t info[8];

        node->powered = true;
        node->restart_at = SIM_NSEC_INFINITY;
        node->busy_until = t;
        node->rx_len = 0;
        mode = isp_node_power_on(&node->core);
        node_flush_pending(node, t);

        isp_node_get_info(&node->core, info);
        if (mode == ISP_NODE_MODE_APPLICATION) {
                node_log(node, "power on -> application (valid entry at FF:1000)");
                node_app_start(node, t, /* by_isp= */ true);
        } else if (isp_node_is_legacy(&node->core))
                node_log(node, "power on -> ISP (legacy, no ANNOUNCE)");
        else
                node_log(node, "power on -> ISP, ANNOUNCE uid %02X%02X%02X%02X receive depth %u",
                         info[4], info[5], info[6], info[7], info[3]);
}

void sim_fleet_start(SimFleet *fleet, uint64_t now) {
        fleet->now = now;
        for (size_t i = 0; i < fleet->n_nodes; i++) {
                SimNode *node = fleet->nodes[i];

                if (node->fault.dead) {
                        node_log(node, "dead: will never answer");
                        continue;
                }
                if (node->fault.application) {
                        node->powered = true;
                        node->busy_until = now;
                        isp_node_run_application(&node->core);
                        node_log(node, "running its application");
                        node_app_start(node, now, /* by_isp= */ false);
                        continue;
                }
                node_power_on(node, now);
        }
}

static void node_power_cut(SimNode *node, uint64_t t) {
        uint64_t delay = node->fault.restart_delay_set ? node->fault.restart_delay : 0;

        node->power_cut_done = true;
        node->powered = false;
        isp_node_power_off(&node->core);
        node_app_stop(node);
        node->rx_len = 0;
        node->n_pending = 0;
        /* Replies not yet on the bus die with the node. */
        txq_clear(&node->tx);
        node->busy_until = t;
        node->restart_at = t + delay;
        node_log(node, "power cut after %" PRIu64 " frames; power returns in %" PRIu64 " ms",
                 node->n_taken, delay / NSEC_PER_MSEC);
        node_writeback(node);
}

static const char *status_text(int status) {
        switch (status) {
        case ISP_NODE_STATUS_OK:           return "ok";
        case ISP_NODE_STATUS_RANGE:        return "status 1 (outside the writable range)";
        case ISP_NODE_STATUS_WRITE_FAILED: return "status 2 (write failed)";
        case ISP_NODE_STATUS_BAD_ARGUMENT: return "status 3 (bad length or argument)";
        case ISP_NODE_STATUS_NO_APP:       return "status 5 (no valid application)";
        default:                           return "unknown status";
        }
}

static uint32_t be24(const uint8_t *p) {
        return (uint32_t) p[0] << 16 | (uint32_t) p[1] << 8 | p[2];
}

/* One line per handled command. */
static void log_command(SimNode *node, const struct isp_node_frame *frame, int r, bool was_selected) {
        uint32_t id = frame->id & ISP_NODE_FRAME_ID_MASK;
        unsigned cmd = (id >> 20) & 0xF, target = id & 0xFF;
        bool legacy = isp_node_is_legacy(&node->core);
        /* the offset as the node decodes it: a legacy node takes ID bits 16..0 */
        uint32_t arg = id & (legacy ? 0x1FFFF : 0xFFFFF);
        bool replied = node->n_pending > 0;
        const struct isp_node_frame *reply = &node->pending[0];
        const char *silent = legacy && !replied ? ", no reply (legacy)" : "";
        uint8_t flags = frame->dlc > 0 ? frame->data[0] : 0;

        if (!node->fleet->log || r == ISP_NODE_IGNORED)
                return;

        switch (cmd) {
        case ISP_NODE_CMD_CONNECT:
                if (legacy)
                        node_log(node, "CONNECT -> ok (legacy)");
                else if (target == ISP_NODE_TARGET_ALL)
                        node_log(node, "DISCOVER -> INFO");
                else if (target == node->id || target == ISP_NODE_TARGET_LEGACY)
                        node_log(node, "CONNECT %u%s -> selected%s", target,
                                 target == 0 ? " (legacy form)" : "",
                                 isp_node_is_quiet(&node->core) ? " quiet" : "");
                else if (was_selected && !isp_node_is_selected(&node->core))
                        node_log(node, "CONNECT %u -> deselected", target);
                else if (was_selected)
                        node_log(node, "CONNECT %u%s -> stays selected", target,
                                 flags & ISP_NODE_CONNECT_JOIN ? " join" : "");
                break;

        case ISP_NODE_CMD_READ:
                node_log(node, "READ 0x%05" PRIX32 " -> %s%s", arg,
                         r == ISP_NODE_STATUS_RANGE ? "status 1 (outside flash)" : status_text(r), silent);
                break;

        case ISP_NODE_CMD_PROGRAM:
                node_log(node, "PROGRAM 0x%05" PRIX32 " len %u -> %s%s%s", arg, frame->dlc, status_text(r),
                         r == ISP_NODE_STATUS_OK && !legacy && !replied ? " (quiet, no ack)" : "", silent);
                break;

        case ISP_NODE_CMD_ERASE:
                if (frame->dlc == 0 || legacy)
                        node_log(node, "ERASE all -> %s%s", status_text(r), silent);
                else if (frame->dlc == 4)
                        node_log(node, "ERASE 0x%05" PRIX32 " count %u -> %s", be24(frame->data),
                                 frame->data[3], status_text(r));
                else
                        node_log(node, "ERASE with DLC %u -> %s", frame->dlc, status_text(r));
                break;

        case ISP_NODE_CMD_REBOOT:
                if (r == ISP_NODE_STATUS_OK)
                        node_log(node, "REBOOT -> ok, application started");
                else
                        node_log(node, "REBOOT -> %s, stays in ISP", status_text(r));
                break;

        case ISP_NODE_CMD_CRC:
                if (frame->dlc != 6)
                        node_log(node, "CRC with DLC %u -> %s", frame->dlc, status_text(r));
                else if (r == ISP_NODE_STATUS_OK && replied)
                        node_log(node, "CRC 0x%05" PRIX32 " len 0x%05" PRIX32 " -> ok 0x%02X%02X%02X%02X",
                                 be24(frame->data), be24(frame->data + 3),
                                 reply->data[1], reply->data[2], reply->data[3], reply->data[4]);
                else
                        node_log(node, "CRC 0x%05" PRIX32 " len 0x%05" PRIX32 " -> %s",
                                 be24(frame->data), be24(frame->data + 3), status_text(r));
                break;

        default:
                break;
        }
}

/* One line per frame the application took. */
static void log_application(SimNode *node, const struct isp_node_frame *frame, int r) {
        uint32_t id = frame->id & ISP_NODE_FRAME_ID_MASK;
        unsigned target = id & 0xFF;
        const uint8_t *d = node->pending[0].data;

        switch (r) {
        case ISP_APP_ENTERED_ISP:
                node_log(node, "ENTER_ISP %u -> reset into ISP%s", target,
                         node->n_pending > 0 ? ", ANNOUNCE" : " (legacy, no ANNOUNCE)");
                break;
        case ISP_APP_PENDING:
                node_log(node, "IDENTIFY -> waits for the image CRC");
                break;
        case ISP_APP_ANSWERED:
                if (node->n_pending == 0)
                        break;
                if (frame->data[0] == ISP_APP_VARIANT_IDENTITY)
                        node_log(node, "IDENTIFY -> UID %02X%02X%02X%02X, image %02X%02X%02X%02X",
                                 d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]);
                else
                        node_log(node, "IDENTIFY ABOUT -> helper %u, application version 0x%02X%02X%02X%02X, "
                                 "image CRC %s", d[2], d[4], d[5], d[6], d[7],
                                 d[3] & ISP_APP_ABOUT_FLAG_CRC_READY ? "computed" : "not yet computed");
                break;
        default:
                break;
        }
}

/* Take one frame out of the receive buffer and run the core on it. */
static void node_handle_one(SimNode *node, uint64_t t) {
        SimFleet *fleet = node->fleet;
        struct isp_node_frame frame = node->rx[node->rx_head];
        bool was_selected = isp_node_is_selected(&node->core);
        enum isp_node_mode was_mode = isp_node_get_mode(&node->core);
        uint64_t cost = 0;
        uint32_t id = frame.id & ISP_NODE_FRAME_ID_MASK;
        unsigned cmd = (id >> 20) & 0xF;
        int r;

        node->rx_head = (node->rx_head + 1) % node->rx_depth;
        node->rx_len--;
        node->n_taken++;

        node->n_programmed = 0;
        node->n_erased = 0;
        node->n_pending = 0;
        /* While the application runs, the ISP does not: the frame is the
         * application's. */
        if (was_mode == ISP_NODE_MODE_APPLICATION)
                r = node_app_receive(node, &frame);
        else
                r = isp_node_receive(&node->core, &frame);

        if (timing_on(fleet)) {
                cost = fleet->timing.handle_frame +
                        node->n_programmed * fleet->timing.program_byte +
                        node->n_erased * fleet->timing.erase_sector;
                if (cmd == ISP_NODE_CMD_CRC && r == ISP_NODE_STATUS_OK)
                        cost += (uint64_t) be24(frame.data + 3) * fleet->timing.crc_byte;
        }
        node->busy_until = t + cost;

        if (was_mode == ISP_NODE_MODE_APPLICATION)
                log_application(node, &frame, r);
        else
                log_command(node, &frame, r, was_selected);

        if (node->fault.power_cut_after > 0 && !node->power_cut_done &&
            node->n_taken >= node->fault.power_cut_after) {
                /* The command's flash work is done; its reply never leaves. */
                node_power_cut(node, t);
                return;
        }

        node_flush_pending(node, t + cost);
        /* REBOOT: the application starts once the reply is on its way. */
        if (was_mode != ISP_NODE_MODE_APPLICATION &&
            isp_node_get_mode(&node->core) == ISP_NODE_MODE_APPLICATION)
                node_app_start(node, t + cost, /* by_isp= */ true);

        if (node->n_programmed > 0 || node->n_erased > 0) {
                node->dirty = true;
                node->writeback_at = t + cost + fleet->timing.writeback_delay;
        }
        /* A test reads the file after REBOOT: it must be there by then. */
        if (cmd == ISP_NODE_CMD_REBOOT && r != ISP_NODE_IGNORED)
                node_writeback(node);
}

/* A request has finished on the bus: every powered node's controller
 * receives it, or loses it. */
static void deliver_request(SimFleet *fleet, const struct isp_node_frame *frame) {
        char text[32];

        for (size_t i = 0; i < fleet->n_nodes; i++) {
                SimNode *node = fleet->nodes[i];
                unsigned slot;

                if (!node->powered || node->fault.dead)
                        continue;

                node->n_received++;
                if (node->fault.drop_every > 0 && node->n_received % node->fault.drop_every == 0) {
                        frame_format(frame, text, sizeof(text));
                        node_log(node, "request %s dropped (drop-every=%" PRIu32 ")", text, node->fault.drop_every);
                        fleet->stats.lost_dropped++;
                        continue;
                }
                if (node->fault.drop_rate > 0 && random_unit(&node->rng) < node->fault.drop_rate) {
                        frame_format(frame, text, sizeof(text));
                        node_log(node, "request %s dropped (drop-rate=%g)", text, node->fault.drop_rate);
                        fleet->stats.lost_dropped++;
                        continue;
                }
                if (node->rx_len >= node->rx_depth) {
                        frame_format(frame, text, sizeof(text));
                        node_log(node, "receive buffer full (%u frames), request %s lost", node->rx_depth, text);
                        fleet->stats.lost_overrun++;
                        continue;
                }
                slot = (node->rx_head + node->rx_len) % node->rx_depth;
                node->rx[slot] = *frame;
                node->rx_len++;
        }
}

/* The bus is idle at time t: the lowest ID among the transmitters' ready
 * queue heads wins arbitration. Identical frames from nodes sharing an ID
 * go out as one, as they would on a real bus. */
static void arbitrate(SimFleet *fleet, uint64_t t) {
        const TxEntry *host = txq_peek(&fleet->host), *best = NULL;
        SimNode *winner = NULL;
        uint32_t best_id = 0;

        if (host && host->ready <= t) {
                best = host;
                best_id = host->frame.id & ISP_NODE_FRAME_ID_MASK;
        }
        for (size_t i = 0; i < fleet->n_nodes; i++) {
                SimNode *node = fleet->nodes[i];
                const TxEntry *e = txq_peek(&node->tx);
                uint32_t id;

                if (!node->powered || !e || e->ready > t)
                        continue;
                id = e->frame.id & ISP_NODE_FRAME_ID_MASK;
                if (!best || id < best_id) {
                        best = e;
                        best_id = id;
                        winner = node;
                }
        }
        if (!best)
                return;

        fleet->bus_frame = best->frame;
        fleet->bus_request = !winner;
        if (winner) {
                txq_pop(&winner->tx);
                for (size_t i = 0; i < fleet->n_nodes; i++) {
                        SimNode *node = fleet->nodes[i];
                        const TxEntry *e = txq_peek(&node->tx);

                        if (node != winner && node->powered && e && e->ready <= t &&
                            frame_equal(&e->frame, &fleet->bus_frame)) {
                                txq_pop(&node->tx);
                                fleet->stats.merged++;
                        }
                }
                fleet->stats.replies++;
        } else {
                txq_pop(&fleet->host);
                fleet->stats.requests++;
        }

        fleet->bus_busy = true;
        fleet->bus_end = t + frame_nsec(fleet, &fleet->bus_frame);
        fleet->stats.busy_nsec += fleet->bus_end - t;
}

uint64_t sim_fleet_next_event(SimFleet *fleet) {
        uint64_t t = SIM_NSEC_INFINITY;
        const TxEntry *e;

        if (fleet->bus_busy)
                t = fleet->bus_end;
        else if ((e = txq_peek(&fleet->host)))
                t = e->ready;

        for (size_t i = 0; i < fleet->n_nodes; i++) {
                SimNode *node = fleet->nodes[i];

                if (node->powered) {
                        if (!fleet->bus_busy && (e = txq_peek(&node->tx)))
                                t = min_u64(t, e->ready);
                        if (node->rx_len > 0)
                                t = min_u64(t, node->busy_until);
                }
                t = min_u64(t, node->restart_at);
                t = min_u64(t, node->app_crc_at);
                t = min_u64(t, node->crash_at);
                if (node->dirty)
                        t = min_u64(t, node->writeback_at);
        }

        return t == SIM_NSEC_INFINITY ? t : max_u64(t, fleet->now);
}

static void step(SimFleet *fleet, uint64_t t) {
        fleet->now = t;

        if (fleet->bus_busy && fleet->bus_end <= t) {
                fleet->bus_busy = false;
                if (fleet->bus_request)
                        deliver_request(fleet, &fleet->bus_frame);
                else if (fleet->callbacks.output)
                        fleet->callbacks.output(fleet, &fleet->bus_frame, fleet->userdata);
        }

        for (size_t i = 0; i < fleet->n_nodes; i++) {
                SimNode *node = fleet->nodes[i];

                if (node->restart_at <= t)
                        node_power_on(node, t);
                if (node->crash_at <= t)
                        node_boot_fail_reset(node, t);
                if (node->app_crc_at <= t)
                        node_app_finish_crc(node, t);
                if (node->powered && node->rx_len > 0 && node->busy_until <= t)
                        node_handle_one(node, t);
                if (node->dirty && node->writeback_at <= t)
                        node_writeback(node);
        }

        if (!fleet->bus_busy)
                arbitrate(fleet, t);
}

void sim_fleet_advance(SimFleet *fleet, uint64_t now) {
        for (;;) {
                uint64_t t = sim_fleet_next_event(fleet);

                if (t > now)
                        break;
                step(fleet, t);
        }
        fleet->now = max_u64(fleet->now, now);
}

void sim_fleet_receive(SimFleet *fleet, const struct isp_node_frame *frame, uint64_t now) {
        uint32_t id = frame->id & ISP_NODE_FRAME_ID_MASK;

        sim_fleet_advance(fleet, now);

        if (!(frame->id & ISP_NODE_FRAME_EXTENDED) || (frame->id & ISP_NODE_FRAME_RTR) ||
            frame->dlc > 8 || (id & 0x1F000000UL) != ISP_NODE_REQUEST_BASE)
                return;

        if (txq_push(&fleet->host, frame, now) < 0) {
                fprintf(stderr, "stcisp-sim: out of memory, request lost\n");
                return;
        }
        sim_fleet_advance(fleet, now);
}

int sim_fleet_writeback_all(SimFleet *fleet) {
        int r = 0;

        for (size_t i = 0; i < fleet->n_nodes; i++) {
                SimNode *node = fleet->nodes[i];
                int k;

                node->dirty = false;
                node->writeback_at = SIM_NSEC_INFINITY;
                if (!fleet->callbacks.writeback)
                        continue;
                k = fleet->callbacks.writeback(fleet, node, fleet->userdata);
                if (k < 0 && r == 0)
                        r = k;
        }
        return r;
}

uint64_t sim_fleet_get_now(SimFleet *fleet) {
        return fleet->now;
}

void sim_fleet_get_stats(SimFleet *fleet, SimFleetStats *ret) {
        *ret = fleet->stats;
}

const char *sim_node_get_label(SimNode *node) {
        return node->label;
}

uint8_t sim_node_get_id(SimNode *node) {
        return node->id;
}

uint8_t *sim_node_get_flash(SimNode *node) {
        return node->flash;
}

struct isp_node *sim_node_get_core(SimNode *node) {
        return &node->core;
}

const struct isp_app *sim_node_get_app(SimNode *node) {
        return node->app_kind == APP_HELPER ? &node->app : NULL;
}

bool sim_node_is_powered(SimNode *node) {
        return node->powered;
}

const SimFault *sim_node_get_fault(SimNode *node) {
        return &node->fault;
}
