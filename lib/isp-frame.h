/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The ISP-over-CAN frame codec: every request and reply of docs/protocol.md,
 * legacy and extended form, built from and parsed into typed structs.
 *
 * Pure code: no I/O, no allocation, no Linux headers. A CAN frame is
 * described by struct isp_can_frame; the daemon and the simulator convert
 * to and from the kernel's struct can_frame (see isp-socketcan.h).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ISP_ID_REQUEST          0x1A000000u
#define ISP_ID_REPLY            0x1B000000u
#define ISP_ID_KIND_MASK        0x1F000000u
#define ISP_ID_CMD_SHIFT        20
#define ISP_ID_CMD_MASK         0x00F00000u
#define ISP_ID_ARG_MASK         0x000FFFFFu
#define ISP_ID_NODE_MASK        0x000000FFu

#define ISP_FLASH_SIZE          0x20000u        /* 128 KiB, offsets 0x00000-0x1FFFF */
#define ISP_SECTOR_SIZE         512u
#define ISP_SECTORS             (ISP_FLASH_SIZE / ISP_SECTOR_SIZE)
#define ISP_AREA_START          0x10000u        /* FF:0000, the ISP itself */
#define ISP_AREA_END            0x11000u        /* first offset after the ISP */
#define ISP_ENTRY_OFFSET        0x11000u        /* FF:1000, application entry */
#define ISP_ENTRY_SIZE          3u
#define ISP_ENTRY_MIN_TARGET    0x1003u
#define ISP_LOGICAL_BASE        0xFE0000u       /* logical address of offset 0 */

#define ISP_NODE_LEGACY         0x00    /* CONNECT target / reply node of the legacy form */
#define ISP_NODE_ALL            0xFF    /* CONNECT target 0xFF = DISCOVER; ENTER_ISP to all */
#define ISP_NODE_MIN            1
#define ISP_NODE_MAX            254

#define ISP_CONNECT_JOIN        0x01
#define ISP_CONNECT_QUIET       0x02
#define ISP_CONNECT_ECHO        0x04    /* a target with ISP_CAP_ECHO echoes start offsets */

#define ISP_CAP_CRC             0x01
#define ISP_CAP_SECTOR_ERASE    0x02
#define ISP_CAP_QUIET           0x04
#define ISP_CAP_ECHO            0x08    /* CRC and ERASE replies echo the request's start offset */
#define ISP_ECHO_NONE           0xFFFFFFu       /* what ECHO gives for a full erase */

#define ISP_PROTOCOL_VERSION    1
#define ISP_DFU_MAGIC           0x12ABCD34u

/* IDENTIFY (cmd 6), answered by a running application (docs/protocol.md
 * 4.9). The variant is the request's data[0]; the reply carries it in ID
 * bits 15..8. */
#define ISP_IDENTIFY_IDENTITY   0x00    /* UID and the image's CRC-32 */
#define ISP_IDENTIFY_ABOUT      0x01    /* version, capabilities, application version */
#define ISP_IDENTIFY_VERSION    1
#define ISP_APP_CAP_ENTER_ISP   0x01
#define ISP_APP_CAP_IDENTITY    0x02
#define ISP_APP_FLAG_IDENTITY_READY 0x01    /* the image CRC is computed: IDENTITY answers at once */
#define ISP_ID_VARIANT_SHIFT    8
#define ISP_ID_VARIANT_MASK     0x0000FF00u

enum isp_cmd {
        ISP_CMD_CONNECT   = 0,
        ISP_CMD_READ      = 1,
        ISP_CMD_PROGRAM   = 2,
        ISP_CMD_ERASE     = 3,
        ISP_CMD_REBOOT    = 4,
        ISP_CMD_CRC       = 5,
        ISP_CMD_IDENTIFY  = 6,   /* to a running application, never to the ISP */
        ISP_CMD_ENTER_ISP = 7,   /* its reply ID is ANNOUNCE */
};

enum isp_status {
        ISP_STATUS_OK           = 0,
        ISP_STATUS_RANGE        = 1,    /* outside the writable range */
        ISP_STATUS_WRITE_FAILED = 2,    /* byte not erased and different */
        ISP_STATUS_BAD_ARGUMENT = 3,
        ISP_STATUS_NO_APP       = 5,    /* REBOOT without a valid entry */
};

/* Why a frame is not a valid ISP request or reply. Parsers return the
 * negated value. */
enum isp_frame_error {
        ISP_FRAME_OK = 0,
        ISP_FRAME_STANDARD_ID,          /* 11-bit ID: never ISP traffic */
        ISP_FRAME_RTR,
        ISP_FRAME_FD,
        ISP_FRAME_NOT_ISP,              /* extended ID outside 0x1A/0x1B (or the other direction) */
        ISP_FRAME_UNKNOWN_CMD,
        ISP_FRAME_BAD_DLC,
        ISP_FRAME_BAD_ADDRESS,          /* outside the 17-bit flash range */
        ISP_FRAME_BAD_ARGUMENT,         /* unaligned, zero count, bad magic, stray ID bits */
        _ISP_FRAME_ERROR_MAX,
};

#define ISP_FRAME_EXTENDED      0x01
#define ISP_FRAME_FLAG_RTR      0x02
#define ISP_FRAME_FLAG_FD       0x04

/* A classical CAN frame as seen on the wire. `id` holds the bare 11- or
 * 29-bit identifier, never the kernel's flag bits. */
struct isp_can_frame {
        uint32_t id;
        uint8_t flags;          /* ISP_FRAME_EXTENDED | ISP_FRAME_FLAG_* */
        uint8_t len;            /* DLC, 0-8 */
        uint8_t data[8];
};

struct isp_info {
        uint8_t version;
        uint8_t capabilities;
        uint8_t firmware;
        uint8_t rx_depth;
        uint8_t uid[4];
};

/* IDENTIFY, variant ISP_IDENTIFY_IDENTITY */
struct isp_identity {
        uint8_t uid[4];                 /* the same 4 bytes as INFO's */
        uint32_t image_crc;             /* CRC-32 of the application area, as ispctl inspect gives it */
};

/* IDENTIFY, variant ISP_IDENTIFY_ABOUT */
struct isp_about {
        uint8_t version;                /* ISP_IDENTIFY_VERSION */
        uint8_t capabilities;           /* ISP_APP_CAP_* */
        uint8_t helper;                 /* the application helper's version */
        uint8_t flags;                  /* ISP_APP_FLAG_* */
        uint32_t app_version;           /* defined by the firmware author, 0 = none */
};

struct isp_request {
        enum isp_cmd cmd;
        union {
                struct {
                        uint8_t target;         /* node id, 0 legacy, 0xFF discover */
                        uint8_t flags;          /* ISP_CONNECT_* */
                        bool with_flags;        /* DLC 1 rather than 0 */
                } connect;
                struct {
                        uint32_t offset;
                } read;
                struct {
                        uint32_t offset;
                        uint8_t len;            /* 1-8 */
                        uint8_t data[8];
                } program;
                struct {
                        bool whole;             /* DLC 0: the whole area */
                        uint32_t offset;        /* sector aligned */
                        uint8_t count;          /* 1-255 sectors */
                } erase;
                struct {
                        uint32_t offset;
                        uint32_t length;
                } crc;
                struct {
                        uint8_t target;         /* node id or 0xFF */
                } enter_isp;
                struct {
                        uint8_t target;         /* node id or 0xFF */
                        uint8_t variant;        /* ISP_IDENTIFY_* */
                } identify;
        } u;
};

struct isp_reply {
        enum isp_cmd cmd;
        uint8_t node;           /* 0 = legacy node */
        bool legacy;            /* the DLC-0 / short form of a legacy node */
        uint8_t status;         /* ISP_STATUS_*; 0 where the form has none */
        uint8_t variant;        /* IDENTIFY: ISP_IDENTIFY_*, else 0 */
        /* CRC and ERASE of a node with ISP_CAP_ECHO: the request's start
         * offset (ISP_ECHO_NONE for a full erase or a malformed request) */
        bool echo;
        uint32_t echo_offset;
        union {
                struct isp_info info;   /* CONNECT (extended), ANNOUNCE */
                struct isp_identity identity;   /* IDENTIFY, variant IDENTITY */
                struct isp_about about;         /* IDENTIFY, variant ABOUT */
                uint8_t data[8];        /* READ */
                uint32_t offset;        /* PROGRAM (extended), echoed */
                uint32_t crc;           /* CRC */
        } u;
};

/* Build a frame. Returns 0, or -EINVAL for a request the protocol cannot
 * express (bad length, address outside flash, unaligned erase ...). */
int isp_request_build(const struct isp_request *req, struct isp_can_frame *ret);
int isp_reply_build(const struct isp_reply *reply, struct isp_can_frame *ret);

/* Parse a frame. Returns 0, or -enum isp_frame_error. */
int isp_request_parse(const struct isp_can_frame *frame, struct isp_request *ret);
int isp_reply_parse(const struct isp_can_frame *frame, struct isp_reply *ret);

const char *isp_frame_error_to_string(int error);      /* accepts either sign */
const char *isp_cmd_to_string(enum isp_cmd cmd);
const char *isp_status_to_string(uint8_t status);

/* can-utils notation ("1A211000#021234", "123#R"); returns buf. */
#define ISP_FRAME_STRING_MAX 32
char *isp_frame_to_string(const struct isp_can_frame *frame, char buf[static ISP_FRAME_STRING_MAX]);

/* "FF:1000" for flash offset 0x11000. */
#define ISP_ADDR_STRING_MAX 16
char *isp_offset_to_string(uint32_t offset, char buf[static ISP_ADDR_STRING_MAX]);

static inline uint32_t isp_request_id(enum isp_cmd cmd, uint32_t arg) {
        return ISP_ID_REQUEST | ((uint32_t) cmd << ISP_ID_CMD_SHIFT) | (arg & ISP_ID_ARG_MASK);
}

static inline uint32_t isp_reply_id(enum isp_cmd cmd, uint8_t node) {
        return ISP_ID_REPLY | ((uint32_t) cmd << ISP_ID_CMD_SHIFT) | node;
}
