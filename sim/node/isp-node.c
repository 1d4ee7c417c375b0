/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The node side of the ISP-over-CAN protocol. See isp-node.h.
 *
 * Written for small parts: int may be 16 bits wide, so every offset and
 * length is computed in uint32_t, and every byte is widened before it is
 * shifted.
 */
#include "isp-node.h"

#define CHUNK 8U

/* A legacy node decodes only ID bits 16..0 as its offset (docs/protocol.md
 * 3.2): the application note's ISP masks the 17-bit flash address out of
 * the identifier. */
#define LEGACY_OFFSET_MASK 0x1FFFFUL

/* CONNECT carries the target in ID bits 7..0; bits 19..8 must be zero, or
 * the request is not one (docs/protocol.md 2.2). */
#define TARGET_RESERVED_MASK 0xFFF00UL

static uint32_t get_be24(const uint8_t *p) {
        return ((uint32_t) p[0] << 16) | ((uint32_t) p[1] << 8) | (uint32_t) p[2];
}

static bool is_legacy(const struct isp_node *node) {
        return node->config.node_id == 0;
}

/* Whether [offset, offset + len) may be programmed or erased: inside the
 * flash and clear of the ISP area. A range that only touches either is
 * refused as a whole. */
static bool range_is_writable(uint32_t offset, uint32_t len) {
        if (offset >= ISP_NODE_FLASH_SIZE || len > ISP_NODE_FLASH_SIZE - offset)
                return false;
        if (offset < ISP_NODE_ISP_END && offset + len > ISP_NODE_ISP_START)
                return false;
        return true;
}

/* Whether [offset, offset + len) may be read (READ, CRC): the offset
 * itself must lie in the flash, even for len 0, and so must every byte. */
static bool range_is_readable(uint32_t offset, uint32_t len) {
        return offset < ISP_NODE_FLASH_SIZE && len <= ISP_NODE_FLASH_SIZE - offset;
}

static void send_reply(struct isp_node *node, uint8_t cmd, uint8_t dlc, const uint8_t *data) {
        struct isp_node_frame f;
        uint8_t i;

        f.id = ISP_NODE_FRAME_EXTENDED | ISP_NODE_REPLY_ID(cmd, node->config.node_id);
        f.dlc = dlc;
        for (i = 0; i < 8; i++)
                f.data[i] = i < dlc ? data[i] : 0;
        node->ops->send(node->userdata, &f);
}

static void send_status(struct isp_node *node, uint8_t cmd, uint8_t status) {
        send_reply(node, cmd, 1, &status);
}

static void send_info(struct isp_node *node, uint8_t cmd) {
        uint8_t info[8];

        isp_node_get_info(node, info);
        send_reply(node, cmd, 8, info);
}

bool isp_node_entry_is_valid(const uint8_t entry[3]) {
        uint16_t target;

        if (entry[0] != 0x02)
                return false;
        target = (uint16_t) (((uint16_t) entry[1] << 8) | entry[2]);
        return target >= ISP_NODE_ENTRY_MIN_TARGET;
}

static bool entry_is_valid(struct isp_node *node) {
        uint8_t entry[3];

        node->ops->flash_read(node->userdata, ISP_NODE_ENTRY, entry, 3);
        return isp_node_entry_is_valid(entry);
}

uint32_t isp_node_crc32(uint32_t crc, const uint8_t *data, size_t len) {
        uint8_t bit;

        crc = ~crc;
        while (len > 0) {
                crc ^= *data++;
                for (bit = 0; bit < 8; bit++)
                        crc = (crc & 1U) ? (crc >> 1) ^ 0xEDB88320UL : crc >> 1;
                len--;
        }
        return ~crc;
}

void isp_node_get_info(const struct isp_node *node, uint8_t ret_info[8]) {
        ret_info[0] = ISP_NODE_PROTOCOL_VERSION;
        ret_info[1] = is_legacy(node) ? 0 :
                (uint8_t) (ISP_NODE_CAP_CRC | ISP_NODE_CAP_SECTOR_ERASE | ISP_NODE_CAP_QUIET |
                           (node->config.echo ? ISP_NODE_CAP_ECHO : 0));
        ret_info[2] = node->config.isp_version;
        ret_info[3] = node->config.rx_depth > 0 ? node->config.rx_depth : 1;
        ret_info[4] = node->config.uid[0];
        ret_info[5] = node->config.uid[1];
        ret_info[6] = node->config.uid[2];
        ret_info[7] = node->config.uid[3];
}

int isp_node_init(struct isp_node *node, const struct isp_node_config *config,
                  const struct isp_node_ops *ops, void *userdata) {
        node->ops = ops;
        node->userdata = userdata;
        node->config = *config;
        node->mode = ISP_NODE_MODE_OFF;
        node->selected = 0;
        node->quiet = 0;
        node->echo = 0;
        node->dfu_flag = 0;

        if (config->node_id == 0xFF || !ops || !ops->flash_read || !ops->flash_program ||
            !ops->flash_erase_sector || !ops->send) {
                node->ops = NULL;
                return -1;
        }
        return 0;
}

enum isp_node_mode isp_node_boot(struct isp_node *node, bool dfu_flag) {
        if (!node->ops)
                return ISP_NODE_MODE_OFF;

        node->selected = 0;
        node->quiet = 0;
        node->echo = 0;
        node->dfu_flag = 0;

        if (!dfu_flag && entry_is_valid(node)) {
                node->mode = ISP_NODE_MODE_APPLICATION;
                return ISP_NODE_MODE_APPLICATION;
        }

        node->mode = ISP_NODE_MODE_ISP;
        /* The application note's ISP has no ANNOUNCE. */
        if (!is_legacy(node))
                send_info(node, ISP_NODE_CMD_ANNOUNCE);
        return ISP_NODE_MODE_ISP;
}

enum isp_node_mode isp_node_power_on(struct isp_node *node) {
        return isp_node_boot(node, false);
}

void isp_node_power_off(struct isp_node *node) {
        node->mode = ISP_NODE_MODE_OFF;
        node->selected = 0;
        node->quiet = 0;
        node->echo = 0;
        node->dfu_flag = 0;
}

void isp_node_set_dfu_flag(struct isp_node *node) {
        /* XRAM holds nothing while the power is off. */
        if (node->mode != ISP_NODE_MODE_OFF)
                node->dfu_flag = 1;
}

enum isp_node_mode isp_node_soft_reset(struct isp_node *node) {
        return isp_node_boot(node, node->dfu_flag != 0);
}

void isp_node_run_application(struct isp_node *node) {
        if (!node->ops)
                return;
        node->mode = ISP_NODE_MODE_APPLICATION;
        node->selected = 0;
        node->quiet = 0;
        node->echo = 0;
        node->dfu_flag = 0;
}

enum isp_node_mode isp_node_get_mode(const struct isp_node *node) {
        return (enum isp_node_mode) node->mode;
}

bool isp_node_is_selected(const struct isp_node *node) {
        /* A legacy node cannot tell requests apart: it acts on all. */
        if (node->mode != ISP_NODE_MODE_ISP)
                return false;
        return is_legacy(node) || node->selected;
}

bool isp_node_is_quiet(const struct isp_node *node) {
        return isp_node_is_selected(node) && node->quiet;
}

bool isp_node_is_legacy(const struct isp_node *node) {
        return is_legacy(node);
}

/* Program len bytes, all or nothing as far as the checks go. */
static uint8_t do_program(struct isp_node *node, uint32_t offset, const uint8_t *data, uint8_t len) {
        uint8_t cur[CHUNK];
        uint8_t i;

        if (len == 0)
                return ISP_NODE_STATUS_BAD_ARGUMENT;
        if (!range_is_writable(offset, len))
                return ISP_NODE_STATUS_RANGE;

        /* Check every byte before touching any, so a refused frame changes
         * nothing and a retransmitted one (bytes equal) is harmless. */
        node->ops->flash_read(node->userdata, offset, cur, len);
        for (i = 0; i < len; i++)
                if (cur[i] != data[i] && cur[i] != 0xFF)
                        return ISP_NODE_STATUS_WRITE_FAILED;

        if (node->ops->flash_program(node->userdata, offset, data, len) != 0)
                return ISP_NODE_STATUS_WRITE_FAILED;

        node->ops->flash_read(node->userdata, offset, cur, len);
        for (i = 0; i < len; i++)
                if (cur[i] != data[i])
                        return ISP_NODE_STATUS_WRITE_FAILED;

        return ISP_NODE_STATUS_OK;
}

/* Whether the sector at offset reads back all 0xFF. */
static bool sector_is_erased(struct isp_node *node, uint32_t offset) {
        uint8_t buf[CHUNK];
        uint32_t o;
        uint8_t i;

        for (o = 0; o < ISP_NODE_SECTOR_SIZE; o += CHUNK) {
                node->ops->flash_read(node->userdata, offset + o, buf, CHUNK);
                for (i = 0; i < CHUNK; i++)
                        if (buf[i] != 0xFF)
                                return false;
        }
        return true;
}

/* Erase and verify sector by sector; stop at the first sector that the IAP
 * refuses or that does not read back all 0xFF (status 2). */
static uint8_t erase_range(struct isp_node *node, uint32_t start, uint32_t end) {
        uint32_t offset;

        for (offset = start; offset < end; offset += ISP_NODE_SECTOR_SIZE)
                if (node->ops->flash_erase_sector(node->userdata, offset) != 0 ||
                    !sector_is_erased(node, offset))
                        return ISP_NODE_STATUS_WRITE_FAILED;
        return ISP_NODE_STATUS_OK;
}

/* Every sector outside the ISP area: 128 below it, 120 above it. */
/* The entry sector goes first: a power cut during a full erase then leaves
 * a node that stays in its ISP, never a valid entry over an application
 * that is half erased (docs/protocol.md, the commit rule). */
static uint8_t erase_all(struct isp_node *node) {
        uint8_t status;

        status = erase_range(node, ISP_NODE_ENTRY, ISP_NODE_ENTRY + ISP_NODE_SECTOR_SIZE);
        if (status != ISP_NODE_STATUS_OK)
                return status;
        status = erase_range(node, 0, ISP_NODE_ISP_START);
        if (status != ISP_NODE_STATUS_OK)
                return status;
        return erase_range(node, ISP_NODE_ENTRY + ISP_NODE_SECTOR_SIZE, ISP_NODE_FLASH_SIZE);
}

/* ECHO (INFO capability bit 3): a request's 24-bit start offset, as its
 * data bytes 0-2 gave it when its DLC was `dlc`, FF FF FF otherwise. */
static void echo_start(const struct isp_node_frame *frame, uint8_t dlc, uint8_t out[3]) {
        uint8_t i;

        for (i = 0; i < 3; i++)
                out[i] = frame->dlc == dlc ? frame->data[i] : 0xFFU;
}

static uint8_t do_erase(struct isp_node *node, const struct isp_node_frame *frame) {
        uint32_t start, len;

        if (frame->dlc == 0)
                return erase_all(node);
        if (frame->dlc != 4)
                return ISP_NODE_STATUS_BAD_ARGUMENT;

        start = get_be24(frame->data);
        len = (uint32_t) frame->data[3] * ISP_NODE_SECTOR_SIZE;
        if (len == 0 || start % ISP_NODE_SECTOR_SIZE != 0)
                return ISP_NODE_STATUS_BAD_ARGUMENT;
        if (!range_is_writable(start, len))
                return ISP_NODE_STATUS_RANGE;
        return erase_range(node, start, start + len);
}

static uint8_t do_crc(struct isp_node *node, const struct isp_node_frame *frame, uint32_t *ret_crc) {
        uint8_t buf[CHUNK];
        uint32_t offset, len, crc = 0;
        uint8_t n;

        *ret_crc = 0;
        if (frame->dlc != 6)
                return ISP_NODE_STATUS_BAD_ARGUMENT;
        offset = get_be24(frame->data);
        len = get_be24(frame->data + 3);
        if (!range_is_readable(offset, len))
                return ISP_NODE_STATUS_RANGE;

        while (len > 0) {
                n = len < CHUNK ? (uint8_t) len : (uint8_t) CHUNK;
                node->ops->flash_read(node->userdata, offset, buf, n);
                crc = isp_node_crc32(crc, buf, n);
                offset += n;
                len -= n;
        }
        *ret_crc = crc;
        return ISP_NODE_STATUS_OK;
}

/* Reply, then start the application if its entry is valid. */
static uint8_t do_reboot(struct isp_node *node) {
        bool valid = entry_is_valid(node);
        uint8_t status = valid ? ISP_NODE_STATUS_OK : ISP_NODE_STATUS_NO_APP;

        if (is_legacy(node))
                send_reply(node, ISP_NODE_CMD_REBOOT, 0, NULL);
        else
                send_status(node, ISP_NODE_CMD_REBOOT, status);

        if (valid)
                isp_node_run_application(node);
        return status;
}

static int handle_connect(struct isp_node *node, const struct isp_node_frame *frame, uint32_t arg) {
        uint8_t target = (uint8_t) (arg & 0xFFU);
        uint8_t flags = frame->dlc > 0 ? frame->data[0] : 0;

        /* The application note's ISP answers every CONNECT, whatever its
         * identifier's low bits. */
        if (is_legacy(node)) {
                send_reply(node, ISP_NODE_CMD_CONNECT, 0, NULL);
                return ISP_NODE_STATUS_OK;
        }

        /* Not a CONNECT of this protocol: no reply, no change of state. */
        if (arg & TARGET_RESERVED_MASK)
                return ISP_NODE_IGNORED;

        if (target == ISP_NODE_TARGET_ALL) {
                send_info(node, ISP_NODE_CMD_CONNECT);
                return ISP_NODE_STATUS_OK;
        }

        if (target == node->config.node_id || target == ISP_NODE_TARGET_LEGACY) {
                node->selected = 1;
                node->quiet = (flags & ISP_NODE_CONNECT_QUIET) ? 1 : 0;
                /* ECHO only for a host that asks for it */
                node->echo = (node->config.echo && (flags & ISP_NODE_CONNECT_ECHO)) ? 1 : 0;
                send_info(node, ISP_NODE_CMD_CONNECT);
                return ISP_NODE_STATUS_OK;
        }

        if (!(flags & ISP_NODE_CONNECT_JOIN)) {
                node->selected = 0;
                node->quiet = 0;
                node->echo = 0;
        node->echo = 0;
        }
        return ISP_NODE_STATUS_OK;
}

static int handle_legacy(struct isp_node *node, const struct isp_node_frame *frame, uint8_t cmd, uint32_t arg) {
        uint8_t buf[CHUNK];
        uint8_t status;

        arg &= LEGACY_OFFSET_MASK;
        switch (cmd) {
        case ISP_NODE_CMD_READ:
                /* Past the end the application note's behaviour is not
                 * known (hosts never ask): this one stays silent. */
                if (!range_is_readable(arg, CHUNK))
                        return ISP_NODE_STATUS_RANGE;
                node->ops->flash_read(node->userdata, arg, buf, CHUNK);
                send_reply(node, ISP_NODE_CMD_READ, CHUNK, buf);
                return ISP_NODE_STATUS_OK;

        case ISP_NODE_CMD_PROGRAM:
                status = do_program(node, arg, frame->data, frame->dlc);
                if (status == ISP_NODE_STATUS_OK)
                        send_reply(node, ISP_NODE_CMD_PROGRAM, 0, NULL);
                return status;

        case ISP_NODE_CMD_ERASE:
                /* The application note's ISP knows only the full erase and
                 * looks at no payload. */
                status = erase_all(node);
                if (status == ISP_NODE_STATUS_OK)
                        send_reply(node, ISP_NODE_CMD_ERASE, 0, NULL);
                return status;

        case ISP_NODE_CMD_REBOOT:
                return do_reboot(node);

        default:
                return ISP_NODE_IGNORED;
        }
}

static int handle_extended(struct isp_node *node, const struct isp_node_frame *frame, uint8_t cmd, uint32_t arg) {
        uint8_t buf[CHUNK];
        uint8_t status;
        uint32_t crc;

        switch (cmd) {
        case ISP_NODE_CMD_READ:
                if (!range_is_readable(arg, CHUNK)) {
                        send_status(node, ISP_NODE_CMD_READ, ISP_NODE_STATUS_RANGE);
                        return ISP_NODE_STATUS_RANGE;
                }
                node->ops->flash_read(node->userdata, arg, buf, CHUNK);
                send_reply(node, ISP_NODE_CMD_READ, CHUNK, buf);
                return ISP_NODE_STATUS_OK;

        case ISP_NODE_CMD_PROGRAM:
                status = do_program(node, arg, frame->data, frame->dlc);
                if (status != ISP_NODE_STATUS_OK || !node->quiet) {
                        buf[0] = status;
                        buf[1] = (uint8_t) (arg >> 16);
                        buf[2] = (uint8_t) (arg >> 8);
                        buf[3] = (uint8_t) arg;
                        send_reply(node, ISP_NODE_CMD_PROGRAM, 4, buf);
                }
                return status;

        case ISP_NODE_CMD_ERASE:
                status = do_erase(node, frame);
                buf[0] = status;
                if (!node->echo) {
                        send_reply(node, ISP_NODE_CMD_ERASE, 1, buf);
                        return status;
                }
                /* ECHO: the start offset, FF FF FF for a full erase */
                echo_start(frame, 4, buf + 1);
                send_reply(node, ISP_NODE_CMD_ERASE, 4, buf);
                return status;

        case ISP_NODE_CMD_REBOOT:
                return do_reboot(node);

        case ISP_NODE_CMD_CRC:
                status = do_crc(node, frame, &crc);
                buf[0] = status;
                buf[1] = (uint8_t) (crc >> 24);
                buf[2] = (uint8_t) (crc >> 16);
                buf[3] = (uint8_t) (crc >> 8);
                buf[4] = (uint8_t) crc;
                if (!node->echo) {
                        send_reply(node, ISP_NODE_CMD_CRC, 5, buf);
                        return status;
                }
                /* ECHO: the offset the CRC starts at */
                echo_start(frame, 6, buf + 5);
                send_reply(node, ISP_NODE_CMD_CRC, 8, buf);
                return status;

        default:
                return ISP_NODE_IGNORED;
        }
}

int isp_node_receive(struct isp_node *node, const struct isp_node_frame *frame) {
        uint32_t id, arg;
        uint8_t cmd;

        if (!node->ops || node->mode == ISP_NODE_MODE_OFF)
                return ISP_NODE_IGNORED;
        if (!(frame->id & ISP_NODE_FRAME_EXTENDED) || (frame->id & ISP_NODE_FRAME_RTR) || frame->dlc > 8)
                return ISP_NODE_IGNORED;

        id = frame->id & ISP_NODE_FRAME_ID_MASK;
        if ((id & 0x1F000000UL) != ISP_NODE_REQUEST_BASE)
                return ISP_NODE_IGNORED;
        cmd = (uint8_t) ((id >> 20) & 0x0FU);
        arg = id & 0xFFFFFUL;

        /* The ISP does not run while the application does: whatever the
         * application answers is its own code's (isp-app.h). */
        if (node->mode == ISP_NODE_MODE_APPLICATION)
                return ISP_NODE_IGNORED;

        if (cmd == ISP_NODE_CMD_CONNECT)
                return handle_connect(node, frame, arg);

        if (is_legacy(node))
                return handle_legacy(node, frame, cmd, arg);

        if (!node->selected)
                return ISP_NODE_IGNORED;
        return handle_extended(node, frame, cmd, arg);
}
