/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef ISP_APP_H
#define ISP_APP_H

/*
 * isp-app: the application helper, what a firmware author links into the
 * *application* of an STC32G board (not into the ISP) so that the running
 * application takes part in the protocol (docs/protocol.md 4.8, 4.9):
 *
 *   - ENTER_ISP: write DfuFlag and soft-reset, so the ISP starts, stays
 *     and sends ANNOUNCE;
 *   - IDENTIFY: answer IDENTITY (the chip's UID and the CRC-32 of the
 *     application area, docs/protocol.md 11) and ABOUT (versions and
 *     capabilities) without disturbing the application.
 *
 * docs/firmware.md says how to port it and what it costs. Like the node
 * core it is plain C99 with <stdint.h>, <stddef.h> and <stdbool.h> only;
 * it allocates nothing, has no tables and no recursion, keeps at most one
 * frame or one 8-byte buffer on the stack, and never assumes that int is
 * wider than 16 bits.
 *
 * It includes isp-node.h for struct isp_node_frame and the protocol's
 * constants (identifiers, DfuFlag value, memory map) and nothing else of
 * the core: no code of isp-node.c is linked. One frame type for the ISP
 * and the application means one conversion from the CAN controller's
 * registers in a board's code, and a simulator hands the same frame to
 * either.
 *
 * Usage:
 *
 *     static struct isp_app app;           (static storage: 29 bytes on an 8051)
 *
 *     isp_app_init(&app, &config, &ops, NULL);  once, after reset
 *     for (;;) {
 *             isp_app_poll(&app);          bounded work, see below
 *             ... the application's own work ...
 *     }
 *     isp_app_receive(&app, &frame);       for each CAN frame received
 *
 * Work per call: isp_app_receive() checks one frame and sends at most one
 * reply; isp_app_poll() feeds ISP_APP_POLL_BYTES flash bytes into the
 * image CRC until the CRC is done (126,976 bytes: 1984 calls of 64
 * bytes), sending at most one frame (the answer to an IDENTITY that
 * came before the CRC was done), and costs nothing but the check once
 * the CRC is done.
 *
 * Where to call them: both from the main loop is always safe. A board
 * may instead call isp_app_receive() from its CAN receive interrupt and
 * isp_app_poll() from the main loop; then ops->send runs in the
 * interrupt and, once, for a pending IDENTITY, in the main loop, so it
 * must be safe to call from both (e.g. with the CAN interrupt masked
 * while the main loop fills the transmit buffer). The state the two
 * share is declared volatile and each flag is one byte, which an 8-bit
 * core writes in one instruction. Never call isp_app_poll() from an
 * interrupt.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "isp-node.h"

/* IDENTIFY (docs/protocol.md 4.9). The reply ID is
 * ISP_NODE_REPLY_ID(ISP_NODE_CMD_IDENTIFY, node) | variant << 8. */
#define ISP_APP_VARIANT_IDENTITY 0x00U
#define ISP_APP_VARIANT_ABOUT    0x01U

/* ABOUT reply: data[0], the capabilities in data[1], the flags in data[3]. */
#define ISP_APP_IDENTIFY_VERSION     1U
#define ISP_APP_ABOUT_CAP_ENTER_ISP  0x01U
#define ISP_APP_ABOUT_CAP_IDENTITY   0x02U
#define ISP_APP_ABOUT_FLAG_CRC_READY 0x01U

/* ABOUT data[2]: this helper's version. */
#define ISP_APP_HELPER_VERSION 1U

/* The image CRC covers flash offsets 0x00000-0x0FFFF, then 0x11000-0x1FFFF. */
#define ISP_APP_IMAGE_SIZE 0x1F000UL

/* Flash bytes isp_app_poll() feeds into the CRC per call: a multiple of 8
 * that divides 4096, so that no call straddles the ISP area. Override it
 * with -DISP_APP_POLL_BYTES=256 to finish sooner with longer calls. */
#ifndef ISP_APP_POLL_BYTES
#define ISP_APP_POLL_BYTES 64U
#endif

/* isp_app_receive() results. */
enum {
        ISP_APP_IGNORED  = -1, /* not a request for this application: nothing sent
                                * (the value of ISP_NODE_IGNORED) */
        ISP_APP_ANSWERED = 0,  /* IDENTIFY answered (one frame sent) */
        ISP_APP_PENDING  = 1,  /* IDENTITY before the CRC is done: isp_app_poll() answers it */
        ISP_APP_ENTERED_ISP = 2, /* ENTER_ISP: ops->enter_isp returned (a simulator's does) */
};

/* Hooks to the board. `userdata` is the pointer given to isp_app_init().
 * The helper calls them only from isp_app_receive() and isp_app_poll(). */
struct isp_app_ops {
        /* Copy len (1-8) flash bytes at flash offset `offset` (logical
         * address - 0xFE0000) into buf. The helper reads only
         * 0x00000-0x0FFFF and 0x11000-0x1FFFF. Cannot fail. */
        void (*flash_read)(void *userdata, uint32_t offset, uint8_t *buf, uint8_t len);

        /* Put a frame on the bus (ISP_NODE_FRAME_EXTENDED set, bytes past
         * dlc zero). The frame is only valid during the call. */
        void (*send)(void *userdata, const struct isp_node_frame *frame);

        /* Write ISP_NODE_DFU_MAGIC to DfuFlag (XDATA 0x1FFC-0x1FFF,
         * big-endian) and soft-reset the chip (IAP_CONTR = 0x20). Does not
         * return on a board; a simulator's may, and the helper then
         * returns ISP_APP_ENTERED_ISP and is done: init it again when the
         * application starts again. */
        void (*enter_isp)(void *userdata);
};

struct isp_app_config {
        /* 1-254, the same id as the board's ISP; 0 and 255 are refused. */
        uint8_t node_id;
        /* The first 4 bytes of the chip's unique ID, as the ISP's INFO. */
        uint8_t uid[4];
        /* ABOUT data[4..7]: the application's version, defined by its
         * author; 0 = none. */
        uint32_t app_version;
};

/* The helper's state. Allocate it yourself (static storage is fine); the
 * fields are private: use the functions below. */
struct isp_app {
        struct isp_app_config config;
        const struct isp_app_ops *ops;
        void *userdata;
        uint32_t crc_offset;            /* next flash offset to CRC */
        uint32_t crc_register;          /* running CRC, before the final XOR */
        /* shared with a receive interrupt: */
        volatile uint32_t image_crc;    /* valid once crc_done is set */
        volatile uint8_t crc_done;
        volatile uint8_t identity_pending;
};

/* Set the helper up and start the image CRC from the beginning: call it
 * once each time the application starts. Sends nothing. Returns 0, or -1
 * if config->node_id is 0 or 255 or an op is missing (then the helper
 * ignores every frame and poll does nothing). */
int isp_app_init(struct isp_app *app, const struct isp_app_config *config,
                 const struct isp_app_ops *ops, void *userdata);

/* Handle one received CAN frame, sending at most one frame.
 *
 * ENTER_ISP (ID 0x1A700000 | target, target this node's id or 0xFF, ID
 * bits 19..8 zero, DLC 4, data 12 AB CD 34 exactly) calls ops->enter_isp.
 * IDENTIFY (ID 0x1A600000 | target, same targets and ID rule, DLC 1)
 * with variant ABOUT is answered at once; with variant IDENTITY it is
 * answered at once if the CRC is done, else remembered and answered by
 * the isp_app_poll() call that finishes the CRC (several such requests
 * get that one answer). Everything else is ignored: other commands and
 * targets, other DLCs and data, other variants, stray ID bits, standard,
 * RTR and reply frames.
 *
 * Returns ISP_APP_IGNORED, ISP_APP_ANSWERED, ISP_APP_PENDING or (only if
 * ops->enter_isp returns) ISP_APP_ENTERED_ISP. */
int isp_app_receive(struct isp_app *app, const struct isp_node_frame *frame);

/* Do a bounded piece of the image CRC: ISP_APP_POLL_BYTES flash bytes,
 * read through ops->flash_read 8 at a time. The call that finishes the
 * CRC answers a pending IDENTITY. Returns true while the CRC is not done
 * (call again), false once it is (further calls return at once). */
bool isp_app_poll(struct isp_app *app);

/* Whether the image CRC is done, and the CRC itself (0 until then). */
bool isp_app_crc_is_done(const struct isp_app *app);
uint32_t isp_app_get_image_crc(const struct isp_app *app);

#endif
