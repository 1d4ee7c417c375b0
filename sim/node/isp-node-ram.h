/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef ISP_NODE_RAM_H
#define ISP_NODE_RAM_H

/*
 * A node core on a RAM flash, for host-side tests: unit tests of the node
 * core and of the daemon's protocol engine drive an isp_node frame by
 * frame with no bus, and read what it sent and what its flash holds here.
 *
 *     static struct isp_node_ram ram;   (128 KiB: not on the stack)
 *     struct isp_node node;
 *     struct isp_node_frame reply;
 *
 *     isp_node_ram_init(&ram);
 *     isp_node_init(&node, &config, &isp_node_ram_ops, &ram);
 *     isp_node_power_on(&node);             -> ANNOUNCE queued in ram
 *     isp_node_receive(&node, &request);
 *     while (isp_node_ram_pop(&ram, &reply)) ...
 *
 * isp_node_ram_receive() plays the whole board instead: the ISP, or the
 * application with its helper (isp-app.h) when the core has started it.
 *
 * Plain C99 like the core; it uses <string.h>.
 */

#include "isp-app.h"
#include "isp-node.h"

#define ISP_NODE_RAM_MAX_SENT 64

struct isp_node_ram {
        uint8_t flash[ISP_NODE_FLASH_SIZE];

        /* Frames the node sent and nobody popped yet, oldest first. Past
         * ISP_NODE_RAM_MAX_SENT the oldest are dropped and n_overflow
         * counts them. */
        struct isp_node_frame sent[ISP_NODE_RAM_MAX_SENT];
        size_t n_sent;
        size_t n_overflow;

        /* What the flash ops did, for timing models and tests. */
        unsigned long n_programmed; /* bytes passed to flash_program */
        unsigned long n_erased;     /* sectors erased */
        unsigned long n_read;       /* bytes passed to flash_read */

        /* Fault injection: while non-zero, flash_program (or
         * flash_erase_sector) returns an IAP error and changes nothing. */
        int fail_program;
        int fail_erase;
        /* While non-zero, flash_program clears bit 0 of every byte it
         * writes, so the core's read-back differs. */
        int corrupt_program;

        /* The application side (isp_node_ram_app_ops): XDATA 1FFC-1FFF as
         * its enter_isp op last wrote it, and how often it was called. */
        uint8_t xdata_dfu_flag[4];
        unsigned long n_enter_isp;
        /* If set, enter_isp also does what the chip does next: this core's
         * DfuFlag is set and it is soft-reset (an extended ISP sends
         * ANNOUNCE into `sent`). */
        struct isp_node *core;
};

/* flash_read/flash_program/flash_erase_sector on ram->flash, send into
 * ram->sent. Pass the struct isp_node_ram as the userdata. */
extern const struct isp_node_ops isp_node_ram_ops;

/* Zero the struct, erase the flash (0xFF) and fill the ISP area with
 * isp_node_isp_pattern(). */
void isp_node_ram_init(struct isp_node_ram *ram);

/* The deterministic stand-in for the ISP's own code at offsets
 * 0x10000-0x10FFF: (offset ^ offset >> 8 ^ 0xA5) & 0xFF, with 0xFF
 * replaced by 0x00, so no byte of it looks erased. The simulator uses
 * the same pattern for new flash files. */
uint8_t isp_node_isp_pattern(uint32_t offset);

/* Fill the ISP area of a 128 KiB flash image with that pattern. */
void isp_node_fill_isp_pattern(uint8_t *flash);

/* Take the oldest sent frame. Returns false if there is none. */
bool isp_node_ram_pop(struct isp_node_ram *ram, struct isp_node_frame *ret);

/* The application helper's ops (isp-app.h) on the same board: flash_read
 * on ram->flash, send into ram->sent, enter_isp as described at
 * ram->core. Pass the struct isp_node_ram as the userdata. */
extern const struct isp_app_ops isp_node_ram_app_ops;

/* Hand one frame to whatever runs on the board of `node` (whose ops'
 * userdata is `ram`): its ISP core, or, while the core is in application
 * mode, an application that links the helper with the core's node id and
 * UID and application version 0. That helper is set up afresh for every
 * frame, its CRC computed to the end before an IDENTIFY, so it answers
 * like one that has long been running; its ENTER_ISP soft-resets the core
 * into ISP (ram->core is set to node for that). A legacy node's
 * application (node id 0) has no helper and ignores everything. Returns
 * what isp_node_receive() or isp_app_receive() returned. */
int isp_node_ram_receive(struct isp_node_ram *ram, struct isp_node *node, const struct isp_node_frame *frame);

#endif
