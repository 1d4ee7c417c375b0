/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef ISP_NODE_H
#define ISP_NODE_H

/*
 * isp-node: the node side of the STC32G ISP-over-CAN protocol.
 *
 * This is a reference implementation of what runs on the board: the user
 * ISP that lives at FF:0000-FF:0FFF, both in the "legacy" form of STC's
 * application note (node id 0) and in this project's extended form (node
 * ids 1-254). It is written to be ported to the part itself and to be
 * driven by host-side tests and by the simulator, so it:
 *
 *   - is plain C99 and includes only <stdint.h>, <stddef.h> and
 *     <stdbool.h>; it allocates nothing, has no tables and no recursion,
 *     and uses at most a few dozen bytes of stack (an 8-byte buffer);
 *   - never assumes that int is wider than 16 bits;
 *   - does no I/O of its own: frames come in through isp_node_receive(),
 *     replies go out through ops->send(), flash is reached through the
 *     three flash callbacks in struct isp_node_ops;
 *   - knows nothing about time: it runs a command to its end before it
 *     returns. Whoever calls it (a firmware main loop, a simulator with a
 *     timing model, a unit test) decides how long that took.
 *
 * Porting to a board: implement the ops with the chip's IAP registers
 * (flash_read with MOVC or a far pointer, flash_program / flash_erase_sector
 * with IAP_CMD 2 / 3 and a read-back) and the CAN controller (send), call
 * isp_node_init() once, isp_node_boot() at reset with the DfuFlag you read
 * from XDATA 1FFC-1FFF (clear it there afterwards), and isp_node_receive()
 * for every frame the CAN controller delivers. When isp_node_mode() turns
 * ISP_NODE_MODE_APPLICATION, jump to the entry at FF:1000.
 *
 * In application mode the ISP is not running, so the core ignores every
 * frame: what a running application answers (ENTER_ISP, IDENTIFY) is the
 * application's own code, the helper in isp-app.h. A simulator or a test
 * that plays a board hands frames to that helper while
 * isp_node_get_mode() says ISP_NODE_MODE_APPLICATION, and models its
 * ENTER_ISP with isp_node_set_dfu_flag() and isp_node_soft_reset().
 *
 * All multi-byte numbers on the wire are big-endian. Offsets are flash
 * offsets: logical address - 0xFE0000, 0x00000-0x1FFFF.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Frame. `id` is the 29-bit identifier plus the flags below (the same
 * layout as Linux's struct can_frame can_id, so a SocketCAN frame converts
 * by copying). Only extended data frames (ISP_NODE_FRAME_EXTENDED set,
 * ISP_NODE_FRAME_RTR clear) with dlc <= 8 are ISP traffic; the core
 * ignores everything else. Every frame it sends has ISP_NODE_FRAME_EXTENDED
 * set and data bytes past dlc zeroed. */
#define ISP_NODE_FRAME_EXTENDED 0x80000000UL
#define ISP_NODE_FRAME_RTR      0x40000000UL
#define ISP_NODE_FRAME_ID_MASK  0x1FFFFFFFUL

struct isp_node_frame {
        uint32_t id;
        uint8_t dlc;
        uint8_t data[8];
};

/* Identifiers: request = 0x1A000000 | cmd << 20 | arg (20 bits),
 *              reply   = 0x1B000000 | cmd << 20 | node id. */
#define ISP_NODE_REQUEST_BASE 0x1A000000UL
#define ISP_NODE_REPLY_BASE   0x1B000000UL
#define ISP_NODE_REQUEST_ID(cmd, arg) \
        (ISP_NODE_REQUEST_BASE | ((uint32_t) (cmd) << 20) | ((uint32_t) (arg) & 0xFFFFFUL))
#define ISP_NODE_REPLY_ID(cmd, node) \
        (ISP_NODE_REPLY_BASE | ((uint32_t) (cmd) << 20) | ((uint32_t) (node) & 0xFFUL))

enum {
        ISP_NODE_CMD_CONNECT   = 0, /* also DISCOVER (target 0xFF); reply INFO */
        ISP_NODE_CMD_READ      = 1,
        ISP_NODE_CMD_PROGRAM   = 2,
        ISP_NODE_CMD_ERASE     = 3,
        ISP_NODE_CMD_REBOOT    = 4,
        ISP_NODE_CMD_CRC       = 5, /* extended only */
        ISP_NODE_CMD_IDENTIFY  = 6, /* to the application (isp-app.h); the ISP ignores it */
        ISP_NODE_CMD_ENTER_ISP = 7, /* request, to the application; reply id = ANNOUNCE */
        ISP_NODE_CMD_ANNOUNCE  = 7,
};

/* Status byte of extended replies, and return value of isp_node_receive(). */
enum {
        ISP_NODE_STATUS_OK           = 0,
        ISP_NODE_STATUS_RANGE        = 1, /* outside the writable (or readable) range */
        ISP_NODE_STATUS_WRITE_FAILED = 2, /* byte not erased and different, or read-back differs */
        ISP_NODE_STATUS_BAD_ARGUMENT = 3, /* bad length or argument */
        ISP_NODE_STATUS_NO_APP       = 5, /* REBOOT: no valid application entry */
};

/* isp_node_receive() return value for a frame that is not for this node:
 * not ISP traffic, a command this form does not know, a request to an
 * extended node that is not selected, ENTER_ISP while in ISP, ... */
#define ISP_NODE_IGNORED (-1)

/* CONNECT flags (data[0]) */
#define ISP_NODE_CONNECT_JOIN  0x01U
#define ISP_NODE_CONNECT_QUIET 0x02U
#define ISP_NODE_CONNECT_ECHO  0x04U /* the target echoes start offsets in CRC and ERASE replies (INFO bit 3) */

/* CONNECT / ENTER_ISP targets */
#define ISP_NODE_TARGET_LEGACY 0x00U
#define ISP_NODE_TARGET_ALL    0xFFU

/* INFO capability bits */
#define ISP_NODE_CAP_CRC          0x01U
#define ISP_NODE_CAP_SECTOR_ERASE 0x02U
#define ISP_NODE_CAP_QUIET        0x04U
#define ISP_NODE_CAP_ECHO         0x08U /* CRC and ERASE replies echo the request's start offset */

#define ISP_NODE_PROTOCOL_VERSION 1U

/* The STC32G12K128 memory map, as flash offsets. */
#define ISP_NODE_FLASH_SIZE  0x20000UL
#define ISP_NODE_SECTOR_SIZE 0x200UL
#define ISP_NODE_ISP_START   0x10000UL /* FF:0000 */
#define ISP_NODE_ISP_END     0x11000UL /* FF:1000, first byte after the ISP */
#define ISP_NODE_ENTRY       0x11000UL /* FF:1000: 02 hh ll, valid when hhll >= 0x1003 */
#define ISP_NODE_ENTRY_MIN_TARGET 0x1003U

/* ENTER_ISP payload and the DfuFlag value it stores in XDATA 1FFC-1FFF. */
#define ISP_NODE_DFU_MAGIC 0x12ABCD34UL

enum isp_node_mode {
        ISP_NODE_MODE_OFF = 0,         /* not powered: ignores every frame */
        ISP_NODE_MODE_ISP = 1,
        ISP_NODE_MODE_APPLICATION = 2, /* the application runs: the core ignores every frame */
};

/* Hooks to the board. `userdata` is the pointer given to isp_node_init().
 * The core calls them only from inside isp_node_boot(), isp_node_power_on(),
 * isp_node_receive() and isp_node_soft_reset(). */
struct isp_node_ops {
        /* Copy len (1-8) flash bytes at offset into buf. offset + len is at
         * most ISP_NODE_FLASH_SIZE. Cannot fail. */
        void (*flash_read)(void *userdata, uint32_t offset, uint8_t *buf, uint8_t len);

        /* Program len (1-8) bytes at offset, none of them in the ISP area.
         * The core has already checked that every byte is either erased
         * (0xFF) or equal to its data, so "new = old AND data" and "new =
         * data" agree. Return 0 on success, non-zero if the IAP reported an
         * error. The core reads the bytes back afterwards. */
        int (*flash_program)(void *userdata, uint32_t offset, const uint8_t *data, uint8_t len);

        /* Erase the 512-byte sector that starts at offset (sector-aligned,
         * never in the ISP area) to 0xFF. Return 0 on success, non-zero on
         * an IAP error. The core reads the sector back afterwards: a byte
         * other than 0xFF fails the ERASE (status 2). */
        int (*flash_erase_sector)(void *userdata, uint32_t offset);

        /* Put a frame on the bus. The frame is only valid during the call.
         * The core sends at most one frame per isp_node_receive() or
         * isp_node_boot() call. */
        void (*send)(void *userdata, const struct isp_node_frame *frame);
};

struct isp_node_config {
        /* 0: a legacy node (the application note's ISP: DLC-0 replies, no
         * node id, silent on failure, no CRC/sector erase/ANNOUNCE).
         * 1-254: an extended node. 255 is invalid. */
        uint8_t node_id;
        /* INFO[2]: the ISP firmware's own version. */
        uint8_t isp_version;
        /* INFO[3]: how many frames the node's receive path buffers (>= 1;
         * 0 is reported as 1). The core itself buffers nothing; this is the
         * number the host uses to size its send window. */
        uint8_t rx_depth;
        /* INFO[4..7]: the first 4 bytes of the chip's unique ID. */
        uint8_t uid[4];
        /* 1: the ECHO capability (INFO bit 3): selected by a CONNECT with
         * the ECHO flag, CRC replies of DLC 8 and ERASE replies of DLC 4
         * end with the request's start offset.
         * 0: as the first firmware, DLC 5 and 1, nothing to tie them to a
         * request. */
        uint8_t echo;
};

/* The node's state. Allocate it yourself (static storage is fine); the
 * fields are private: use the functions below. */
struct isp_node {
        struct isp_node_config config;
        const struct isp_node_ops *ops;
        void *userdata;
        uint8_t mode;      /* enum isp_node_mode */
        uint8_t selected;  /* extended: executes READ/PROGRAM/ERASE/REBOOT/CRC */
        uint8_t quiet;     /* extended: no PROGRAM success acks */
        uint8_t echo;      /* extended, with config.echo: selected with the ECHO flag */
        uint8_t dfu_flag;  /* models XDATA 1FFC-1FFF == ISP_NODE_DFU_MAGIC */
};

/* Set the node up, powered off: no frame is sent and none is handled
 * (isp_node_receive() ignores frames until a boot). Returns 0, or -1 if
 * config->node_id is 255 or an op is missing (then the node stays off). */
int isp_node_init(struct isp_node *node, const struct isp_node_config *config,
                  const struct isp_node_ops *ops, void *userdata);

/* Reset entry of the ISP: the boot decision. If dfu_flag is false and the
 * entry at FF:1000 is valid, the node starts its application
 * (ISP_NODE_MODE_APPLICATION, sends nothing). Otherwise it stays in ISP,
 * clears DfuFlag, is not selected, and an extended node sends ANNOUNCE
 * (0x1B700000 | id, DLC 8, INFO); a legacy node starts silently.
 * Returns the new mode. */
enum isp_node_mode isp_node_boot(struct isp_node *node, bool dfu_flag);

/* Power-up after a power cut (or the first power-up): XRAM, and with it
 * DfuFlag, does not survive, so this is isp_node_boot(node, false). Flash
 * keeps its contents; everything else starts afresh. */
enum isp_node_mode isp_node_power_on(struct isp_node *node);

/* Power cut: the node goes silent and ignores every frame until the next
 * isp_node_power_on(). Flash keeps its contents. */
void isp_node_power_off(struct isp_node *node);

/* Soft reset (IAP_CONTR = 0x20): XRAM survives, so DfuFlag as last set
 * decides. */
enum isp_node_mode isp_node_soft_reset(struct isp_node *node);

/* Model of what a running application does to XDATA 1FFC-1FFF: on
 * ENTER_ISP it stores ISP_NODE_DFU_MAGIC there (the helper's enter_isp op,
 * isp-app.h), and the next isp_node_soft_reset() then stays in ISP. A
 * board's ISP never calls this: it reads XDATA itself and passes what it
 * found to isp_node_boot(). A power cut clears the flag, and so does
 * every boot. */
void isp_node_set_dfu_flag(struct isp_node *node);

/* Make the node run its application now, whatever the entry at FF:1000
 * holds, as if the ISP had just jumped to it. A simulator uses this for a
 * node that is already running its application when the simulation
 * starts. DfuFlag is cleared, nothing is sent. */
void isp_node_run_application(struct isp_node *node);

/* Handle one received frame, sending at most one reply through ops->send.
 *
 * Returns ISP_NODE_IGNORED if the frame is not for this node, or the
 * status of the handled command (ISP_NODE_STATUS_*): also for a legacy
 * node, which sends nothing on failure, and for CONNECT (always
 * ISP_NODE_STATUS_OK, including a CONNECT to another node that deselects
 * this one or leaves it unchanged). An extended node ignores a CONNECT
 * whose ID bits 19..8 are not zero; a legacy node answers every CONNECT
 * and takes only ID bits 16..0 as the offset of READ and PROGRAM. In
 * application mode (and while off) every frame is ignored. */
int isp_node_receive(struct isp_node *node, const struct isp_node_frame *frame);

enum isp_node_mode isp_node_get_mode(const struct isp_node *node);
bool isp_node_is_selected(const struct isp_node *node);
bool isp_node_is_quiet(const struct isp_node *node);
bool isp_node_is_legacy(const struct isp_node *node);

/* Fill ret_info[8] with this node's INFO (the data of a CONNECT reply,
 * DISCOVER reply and ANNOUNCE). */
void isp_node_get_info(const struct isp_node *node, uint8_t ret_info[8]);

/* Whether the 3 bytes at FF:1000 are a valid application entry
 * (0x02 followed by a big-endian target >= 0x1003). */
bool isp_node_entry_is_valid(const uint8_t entry[3]);

/* CRC-32 as zlib's crc32(): start with crc = 0, feed the data in any
 * number of pieces. Bitwise, no table. isp_node_crc32(0, "123456789", 9)
 * is 0xCBF43926. */
uint32_t isp_node_crc32(uint32_t crc, const uint8_t *data, size_t len);

#endif
