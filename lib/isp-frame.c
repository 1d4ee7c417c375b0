/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "isp-frame.h"

static void put_be24(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t) (v >> 16);
        p[1] = (uint8_t) (v >> 8);
        p[2] = (uint8_t) v;
}

static uint32_t get_be24(const uint8_t *p) {
        return (uint32_t) p[0] << 16 | (uint32_t) p[1] << 8 | p[2];
}

static void put_be32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t) (v >> 24);
        put_be24(p + 1, v);
}

static uint32_t get_be32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | get_be24(p + 1);
}

static bool cmd_known(unsigned cmd) {
        return cmd <= ISP_CMD_ENTER_ISP;
}

/* A range [offset, offset+len) that lies inside the 128 KiB flash. */
static bool range_in_flash(uint32_t offset, uint32_t len) {
        return offset < ISP_FLASH_SIZE && len <= ISP_FLASH_SIZE - offset;
}

static void frame_init(struct isp_can_frame *f, uint32_t id, uint8_t len) {
        *f = (struct isp_can_frame) {
                .id = id,
                .flags = ISP_FRAME_EXTENDED,
                .len = len,
        };
}

int isp_request_build(const struct isp_request *req, struct isp_can_frame *ret) {
        struct isp_can_frame f;

        switch (req->cmd) {
        case ISP_CMD_CONNECT:
                if (!req->u.connect.with_flags && req->u.connect.flags != 0)
                        return -EINVAL;
                frame_init(&f, isp_request_id(ISP_CMD_CONNECT, req->u.connect.target),
                           req->u.connect.with_flags ? 1 : 0);
                f.data[0] = req->u.connect.flags;
                break;

        case ISP_CMD_READ:
                if (!range_in_flash(req->u.read.offset, 8))
                        return -EINVAL;
                frame_init(&f, isp_request_id(ISP_CMD_READ, req->u.read.offset), 0);
                break;

        case ISP_CMD_PROGRAM:
                if (req->u.program.len < 1 || req->u.program.len > 8 ||
                    !range_in_flash(req->u.program.offset, req->u.program.len))
                        return -EINVAL;
                frame_init(&f, isp_request_id(ISP_CMD_PROGRAM, req->u.program.offset), req->u.program.len);
                memcpy(f.data, req->u.program.data, req->u.program.len);
                break;

        case ISP_CMD_ERASE:
                if (req->u.erase.whole) {
                        frame_init(&f, isp_request_id(ISP_CMD_ERASE, 0), 0);
                        break;
                }
                if (req->u.erase.count == 0 || req->u.erase.offset % ISP_SECTOR_SIZE != 0 ||
                    !range_in_flash(req->u.erase.offset, (uint32_t) req->u.erase.count * ISP_SECTOR_SIZE))
                        return -EINVAL;
                frame_init(&f, isp_request_id(ISP_CMD_ERASE, 0), 4);
                put_be24(f.data, req->u.erase.offset);
                f.data[3] = req->u.erase.count;
                break;

        case ISP_CMD_REBOOT:
                frame_init(&f, isp_request_id(ISP_CMD_REBOOT, 0), 0);
                break;

        case ISP_CMD_CRC:
                if (!range_in_flash(req->u.crc.offset, req->u.crc.length))
                        return -EINVAL;
                frame_init(&f, isp_request_id(ISP_CMD_CRC, 0), 6);
                put_be24(f.data, req->u.crc.offset);
                put_be24(f.data + 3, req->u.crc.length);
                break;

        case ISP_CMD_ENTER_ISP:
                frame_init(&f, isp_request_id(ISP_CMD_ENTER_ISP, req->u.enter_isp.target), 4);
                put_be32(f.data, ISP_DFU_MAGIC);
                break;

        case ISP_CMD_IDENTIFY:
                if (req->u.identify.target == ISP_NODE_LEGACY ||
                    req->u.identify.variant > ISP_IDENTIFY_ABOUT)
                        return -EINVAL;
                frame_init(&f, isp_request_id(ISP_CMD_IDENTIFY, req->u.identify.target), 1);
                f.data[0] = req->u.identify.variant;
                break;

        default:
                return -EINVAL;
        }

        *ret = f;
        return 0;
}

/* Checks shared by both directions: the frame kind and the ID prefix. */
static int frame_check(const struct isp_can_frame *f, uint32_t kind) {
        if (!(f->flags & ISP_FRAME_EXTENDED))
                return -ISP_FRAME_STANDARD_ID;
        /* Flag bits in the ID mean a caller forgot to mask CAN_EFF_FLAG & co. */
        if (f->id > 0x1FFFFFFFu)
                return -ISP_FRAME_NOT_ISP;
        if (f->flags & ISP_FRAME_FLAG_FD)
                return -ISP_FRAME_FD;
        if (f->flags & ISP_FRAME_FLAG_RTR)
                return -ISP_FRAME_RTR;
        if (f->len > 8)
                return -ISP_FRAME_BAD_DLC;
        if ((f->id & ISP_ID_KIND_MASK) != kind)
                return -ISP_FRAME_NOT_ISP;
        if (!cmd_known((f->id & ISP_ID_CMD_MASK) >> ISP_ID_CMD_SHIFT))
                return -ISP_FRAME_UNKNOWN_CMD;
        return 0;
}

int isp_request_parse(const struct isp_can_frame *f, struct isp_request *ret) {
        struct isp_request r = {};
        uint32_t arg;
        int k;

        k = frame_check(f, ISP_ID_REQUEST);
        if (k < 0)
                return k;

        r.cmd = (enum isp_cmd) ((f->id & ISP_ID_CMD_MASK) >> ISP_ID_CMD_SHIFT);
        arg = f->id & ISP_ID_ARG_MASK;

        switch (r.cmd) {
        case ISP_CMD_CONNECT:
                if (f->len > 1)
                        return -ISP_FRAME_BAD_DLC;
                if (arg > ISP_ID_NODE_MASK)
                        return -ISP_FRAME_BAD_ARGUMENT;
                r.u.connect.target = (uint8_t) arg;
                r.u.connect.with_flags = f->len == 1;
                r.u.connect.flags = f->len == 1 ? f->data[0] : 0;
                break;

        case ISP_CMD_READ:
                if (f->len != 0)
                        return -ISP_FRAME_BAD_DLC;
                if (!range_in_flash(arg, 8))
                        return -ISP_FRAME_BAD_ADDRESS;
                r.u.read.offset = arg;
                break;

        case ISP_CMD_PROGRAM:
                if (f->len == 0)
                        return -ISP_FRAME_BAD_DLC;
                if (!range_in_flash(arg, f->len))
                        return -ISP_FRAME_BAD_ADDRESS;
                r.u.program.offset = arg;
                r.u.program.len = f->len;
                memcpy(r.u.program.data, f->data, f->len);
                break;

        case ISP_CMD_ERASE:
                if (arg != 0)
                        return -ISP_FRAME_BAD_ARGUMENT;
                if (f->len == 0) {
                        r.u.erase.whole = true;
                        break;
                }
                if (f->len != 4)
                        return -ISP_FRAME_BAD_DLC;
                r.u.erase.offset = get_be24(f->data);
                r.u.erase.count = f->data[3];
                if (r.u.erase.count == 0 || r.u.erase.offset % ISP_SECTOR_SIZE != 0)
                        return -ISP_FRAME_BAD_ARGUMENT;
                if (!range_in_flash(r.u.erase.offset, (uint32_t) r.u.erase.count * ISP_SECTOR_SIZE))
                        return -ISP_FRAME_BAD_ADDRESS;
                break;

        case ISP_CMD_REBOOT:
                if (arg != 0)
                        return -ISP_FRAME_BAD_ARGUMENT;
                if (f->len != 0)
                        return -ISP_FRAME_BAD_DLC;
                break;

        case ISP_CMD_CRC:
                if (arg != 0)
                        return -ISP_FRAME_BAD_ARGUMENT;
                if (f->len != 6)
                        return -ISP_FRAME_BAD_DLC;
                r.u.crc.offset = get_be24(f->data);
                r.u.crc.length = get_be24(f->data + 3);
                if (!range_in_flash(r.u.crc.offset, r.u.crc.length))
                        return -ISP_FRAME_BAD_ADDRESS;
                break;

        case ISP_CMD_ENTER_ISP:
                if (arg > ISP_ID_NODE_MASK)
                        return -ISP_FRAME_BAD_ARGUMENT;
                if (f->len != 4)
                        return -ISP_FRAME_BAD_DLC;
                if (get_be32(f->data) != ISP_DFU_MAGIC)
                        return -ISP_FRAME_BAD_ARGUMENT;
                r.u.enter_isp.target = (uint8_t) arg;
                break;

        case ISP_CMD_IDENTIFY:
                if (arg > ISP_ID_NODE_MASK || arg == ISP_NODE_LEGACY)
                        return -ISP_FRAME_BAD_ARGUMENT;
                if (f->len != 1)
                        return -ISP_FRAME_BAD_DLC;
                if (f->data[0] > ISP_IDENTIFY_ABOUT)
                        return -ISP_FRAME_BAD_ARGUMENT;
                r.u.identify.target = (uint8_t) arg;
                r.u.identify.variant = f->data[0];
                break;
        }

        *ret = r;
        return 0;
}

static void info_put(uint8_t *p, const struct isp_info *info) {
        p[0] = info->version;
        p[1] = info->capabilities;
        p[2] = info->firmware;
        p[3] = info->rx_depth;
        memcpy(p + 4, info->uid, 4);
}

static void info_get(const uint8_t *p, struct isp_info *info) {
        info->version = p[0];
        info->capabilities = p[1];
        info->firmware = p[2];
        info->rx_depth = p[3];
        memcpy(info->uid, p + 4, 4);
}

int isp_reply_build(const struct isp_reply *r, struct isp_can_frame *ret) {
        struct isp_can_frame f;

        /* Only node 0 speaks the legacy form; an extended node never uses id 0
         * or 0xFF. */
        if (r->legacy ? r->node != ISP_NODE_LEGACY : (r->node == ISP_NODE_ALL))
                return -EINVAL;
        if (!r->legacy && r->node == ISP_NODE_LEGACY && r->cmd != ISP_CMD_READ)
                return -EINVAL;

        frame_init(&f, isp_reply_id(r->cmd, r->node), 0);
        if (r->cmd != ISP_CMD_IDENTIFY && r->variant != 0)
                return -EINVAL;

        switch (r->cmd) {
        case ISP_CMD_CONNECT:
        case ISP_CMD_ENTER_ISP:
                if (r->legacy) {
                        if (r->cmd == ISP_CMD_ENTER_ISP)
                                return -EINVAL;
                        break;
                }
                f.len = 8;
                info_put(f.data, &r->u.info);
                break;

        case ISP_CMD_READ:
                if (r->status != ISP_STATUS_OK) {
                        /* node 0 is legacy and has no status byte */
                        if (r->legacy || r->node == ISP_NODE_LEGACY)
                                return -EINVAL;
                        f.len = 1;
                        f.data[0] = r->status;
                        break;
                }
                f.len = 8;
                memcpy(f.data, r->u.data, 8);
                break;

        case ISP_CMD_PROGRAM:
                if (r->legacy) {
                        if (r->status != ISP_STATUS_OK)
                                return -EINVAL;   /* a legacy node stays silent */
                        break;
                }
                if (r->u.offset > ISP_ID_ARG_MASK)
                        return -EINVAL;
                f.len = 4;
                f.data[0] = r->status;
                put_be24(f.data + 1, r->u.offset);
                break;

        case ISP_CMD_ERASE:
        case ISP_CMD_REBOOT:
                if (r->legacy) {
                        if (r->status != ISP_STATUS_OK)
                                return -EINVAL;
                        break;
                }
                if (r->echo && (r->cmd != ISP_CMD_ERASE || r->echo_offset > 0xFFFFFFu))
                        return -EINVAL;
                f.len = r->echo ? 4 : 1;
                f.data[0] = r->status;
                if (r->echo)
                        put_be24(f.data + 1, r->echo_offset);
                break;

        case ISP_CMD_CRC:
                if (r->legacy || (r->echo && r->echo_offset > 0xFFFFFFu))
                        return -EINVAL;
                f.len = r->echo ? 8 : 5;
                f.data[0] = r->status;
                put_be32(f.data + 1, r->u.crc);
                if (r->echo)
                        put_be24(f.data + 5, r->echo_offset);
                break;

        case ISP_CMD_IDENTIFY:
                /* Only an application with a node id answers it. */
                if (r->legacy || r->node == ISP_NODE_LEGACY)
                        return -EINVAL;
                f.id |= (uint32_t) r->variant << ISP_ID_VARIANT_SHIFT;
                f.len = 8;
                if (r->variant == ISP_IDENTIFY_IDENTITY) {
                        memcpy(f.data, r->u.identity.uid, 4);
                        put_be32(f.data + 4, r->u.identity.image_crc);
                } else if (r->variant == ISP_IDENTIFY_ABOUT) {
                        f.data[0] = r->u.about.version;
                        f.data[1] = r->u.about.capabilities;
                        f.data[2] = r->u.about.helper;
                        f.data[3] = r->u.about.flags;
                        put_be32(f.data + 4, r->u.about.app_version);
                } else
                        return -EINVAL;
                break;

        default:
                return -EINVAL;
        }

        *ret = f;
        return 0;
}

int isp_reply_parse(const struct isp_can_frame *f, struct isp_reply *ret) {
        struct isp_reply r = {};
        int k;

        k = frame_check(f, ISP_ID_REPLY);
        if (k < 0)
                return k;

        r.cmd = (enum isp_cmd) ((f->id & ISP_ID_CMD_MASK) >> ISP_ID_CMD_SHIFT);
        /* ID bits 19..8 are zero, but for IDENTIFY's variant in 15..8. */
        if (r.cmd == ISP_CMD_IDENTIFY)
                r.variant = (uint8_t) ((f->id & ISP_ID_VARIANT_MASK) >> ISP_ID_VARIANT_SHIFT);
        if (f->id & ISP_ID_ARG_MASK & ~ISP_ID_NODE_MASK & ~(r.cmd == ISP_CMD_IDENTIFY ? ISP_ID_VARIANT_MASK : 0u))
                return -ISP_FRAME_BAD_ARGUMENT;
        r.node = (uint8_t) (f->id & ISP_ID_NODE_MASK);
        if (r.node == ISP_NODE_ALL)
                return -ISP_FRAME_BAD_ARGUMENT;

        /* Node 0 is the legacy node whatever the DLC: its firmware defines no
         * payload for these replies, so any payload is ignored rather than
         * taken for an extended node's status. */
        if (r.node == ISP_NODE_LEGACY &&
            (r.cmd == ISP_CMD_CONNECT || r.cmd == ISP_CMD_PROGRAM ||
             r.cmd == ISP_CMD_ERASE || r.cmd == ISP_CMD_REBOOT)) {
                r.legacy = true;
                *ret = r;
                return 0;
        }

        switch (r.cmd) {
        case ISP_CMD_CONNECT:
                if (f->len != 8)
                        return -ISP_FRAME_BAD_DLC;
                info_get(f->data, &r.u.info);
                break;

        case ISP_CMD_ENTER_ISP:
                if (r.node == ISP_NODE_LEGACY)
                        return -ISP_FRAME_BAD_ARGUMENT;
                if (f->len != 8)
                        return -ISP_FRAME_BAD_DLC;
                info_get(f->data, &r.u.info);
                break;

        case ISP_CMD_READ:
                r.legacy = r.node == ISP_NODE_LEGACY;
                if (f->len == 8) {
                        memcpy(r.u.data, f->data, 8);
                        break;
                }
                /* Only an extended node refuses a READ with a status. */
                if (r.legacy || f->len != 1 || f->data[0] == ISP_STATUS_OK)
                        return -ISP_FRAME_BAD_DLC;
                r.status = f->data[0];
                break;

        case ISP_CMD_PROGRAM:
                if (f->len != 4)
                        return -ISP_FRAME_BAD_DLC;
                r.status = f->data[0];
                r.u.offset = get_be24(f->data + 1);
                if (r.u.offset > ISP_ID_ARG_MASK)
                        return -ISP_FRAME_BAD_ADDRESS;
                break;

        case ISP_CMD_ERASE:
                /* DLC 4: ECHO, the start offset after the status */
                if (f->len != 1 && f->len != 4)
                        return -ISP_FRAME_BAD_DLC;
                r.status = f->data[0];
                if (f->len == 4) {
                        r.echo = true;
                        r.echo_offset = get_be24(f->data + 1);
                }
                break;

        case ISP_CMD_REBOOT:
                if (f->len != 1)
                        return -ISP_FRAME_BAD_DLC;
                r.status = f->data[0];
                break;

        case ISP_CMD_CRC:
                /* The legacy node has no CRC command. */
                if (r.node == ISP_NODE_LEGACY)
                        return -ISP_FRAME_BAD_ARGUMENT;
                /* DLC 8: ECHO, the start offset after the CRC */
                if (f->len != 5 && f->len != 8)
                        return -ISP_FRAME_BAD_DLC;
                r.status = f->data[0];
                r.u.crc = get_be32(f->data + 1);
                if (f->len == 8) {
                        r.echo = true;
                        r.echo_offset = get_be24(f->data + 5);
                }
                break;

        case ISP_CMD_IDENTIFY:
                /* Answered by an application, which always has a node id; a
                 * variant this host does not know is ignored. */
                if (r.node == ISP_NODE_LEGACY || r.variant > ISP_IDENTIFY_ABOUT)
                        return -ISP_FRAME_BAD_ARGUMENT;
                if (f->len != 8)
                        return -ISP_FRAME_BAD_DLC;
                if (r.variant == ISP_IDENTIFY_IDENTITY) {
                        memcpy(r.u.identity.uid, f->data, 4);
                        r.u.identity.image_crc = get_be32(f->data + 4);
                } else {
                        r.u.about.version = f->data[0];
                        r.u.about.capabilities = f->data[1];
                        r.u.about.helper = f->data[2];
                        r.u.about.flags = f->data[3];
                        r.u.about.app_version = get_be32(f->data + 4);
                }
                break;
        }

        *ret = r;
        return 0;
}

const char *isp_frame_error_to_string(int error) {
        static const char *const table[_ISP_FRAME_ERROR_MAX] = {
                [ISP_FRAME_OK]           = "valid ISP frame",
                [ISP_FRAME_STANDARD_ID]  = "standard 11-bit ID, ISP frames use 29-bit IDs",
                [ISP_FRAME_RTR]          = "remote (RTR) frame",
                [ISP_FRAME_FD]           = "CAN FD frame",
                [ISP_FRAME_NOT_ISP]      = "ID outside the ISP range for this direction",
                [ISP_FRAME_UNKNOWN_CMD]  = "unknown command",
                [ISP_FRAME_BAD_DLC]      = "wrong data length for the command",
                [ISP_FRAME_BAD_ADDRESS]  = "address outside the 128 KiB flash",
                [ISP_FRAME_BAD_ARGUMENT] = "invalid argument",
        };

        if (error < 0)
                error = -error;
        if (error >= _ISP_FRAME_ERROR_MAX)
                return "unknown error";
        return table[error];
}

const char *isp_cmd_to_string(enum isp_cmd cmd) {
        switch (cmd) {
        case ISP_CMD_CONNECT:   return "CONNECT";
        case ISP_CMD_READ:      return "READ";
        case ISP_CMD_PROGRAM:   return "PROGRAM";
        case ISP_CMD_ERASE:     return "ERASE";
        case ISP_CMD_REBOOT:    return "REBOOT";
        case ISP_CMD_CRC:       return "CRC";
        case ISP_CMD_ENTER_ISP: return "ENTER_ISP";
        case ISP_CMD_IDENTIFY:  return "IDENTIFY";
        }
        return "UNKNOWN";
}

const char *isp_status_to_string(uint8_t status) {
        switch (status) {
        case ISP_STATUS_OK:           return "ok";
        case ISP_STATUS_RANGE:        return "address outside the writable range";
        case ISP_STATUS_WRITE_FAILED: return "write failed (byte not erased, or read-back differs)";
        case ISP_STATUS_BAD_ARGUMENT: return "bad length or argument";
        case ISP_STATUS_NO_APP:       return "no valid application";
        }
        return "unknown status";
}

char *isp_frame_to_string(const struct isp_can_frame *f, char buf[static ISP_FRAME_STRING_MAX]) {
        size_t n;

        n = (size_t) snprintf(buf, ISP_FRAME_STRING_MAX,
                              (f->flags & ISP_FRAME_EXTENDED) ? "%08X#" : "%03X#", (unsigned) f->id);
        if (f->flags & ISP_FRAME_FLAG_RTR) {
                snprintf(buf + n, ISP_FRAME_STRING_MAX - n, "R");
                return buf;
        }
        for (unsigned i = 0; i < f->len && i < 8; i++)
                n += (size_t) snprintf(buf + n, ISP_FRAME_STRING_MAX - n, "%02X", f->data[i]);
        return buf;
}

char *isp_offset_to_string(uint32_t offset, char buf[static ISP_ADDR_STRING_MAX]) {
        uint32_t logical = ISP_LOGICAL_BASE + offset;

        snprintf(buf, ISP_ADDR_STRING_MAX, "%02X:%04X",
                 (unsigned) (logical >> 16) & 0xFFu, (unsigned) logical & 0xFFFFu);
        return buf;
}
