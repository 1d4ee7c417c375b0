/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The application helper. See isp-app.h.
 *
 * Written for small parts, like the node core: int may be 16 bits wide,
 * so offsets are uint32_t and every byte is widened before it is shifted.
 */
#include "isp-app.h"

#define CHUNK 8U

/* IDENTIFY and ENTER_ISP carry the target in ID bits 7..0; bits 19..8 must
 * be zero, or the request is not one (docs/protocol.md 2.2). */
#define TARGET_RESERVED_MASK 0xFFF00UL

/* request_cmd() for a frame that is not a request to this node. */
#define NOT_FOR_US 0xFFU

/* ISP_APP_POLL_BYTES must be a multiple of CHUNK that divides 4096, so a
 * call never reads into the ISP area; a wrong value fails the build. */
typedef char isp_app_poll_bytes_is_valid[(ISP_APP_POLL_BYTES % CHUNK == 0 &&
                                          ISP_APP_POLL_BYTES > 0 &&
                                          4096U % ISP_APP_POLL_BYTES == 0) ? 1 : -1];

static void put_be32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t) (v >> 24);
        p[1] = (uint8_t) (v >> 16);
        p[2] = (uint8_t) (v >> 8);
        p[3] = (uint8_t) v;
}

/* One IDENTIFY reply, built in place: the frame is the only buffer on the
 * stack while ops->send runs (internal RAM is scarce on an 8051). */
static void send_reply(struct isp_app *app, uint8_t variant) {
        struct isp_node_frame f;

        f.id = ISP_NODE_FRAME_EXTENDED | ISP_NODE_REPLY_ID(ISP_NODE_CMD_IDENTIFY, app->config.node_id) |
                ((uint32_t) variant << 8);
        f.dlc = 8;
        if (variant == ISP_APP_VARIANT_IDENTITY) {
                f.data[0] = app->config.uid[0];
                f.data[1] = app->config.uid[1];
                f.data[2] = app->config.uid[2];
                f.data[3] = app->config.uid[3];
                put_be32(f.data + 4, app->image_crc);
        } else {
                f.data[0] = ISP_APP_IDENTIFY_VERSION;
                f.data[1] = ISP_APP_ABOUT_CAP_ENTER_ISP | ISP_APP_ABOUT_CAP_IDENTITY;
                f.data[2] = ISP_APP_HELPER_VERSION;
                f.data[3] = app->crc_done ? ISP_APP_ABOUT_FLAG_CRC_READY : 0U;
                put_be32(f.data + 4, app->config.app_version);
        }
        app->ops->send(app->userdata, &f);
}

int isp_app_init(struct isp_app *app, const struct isp_app_config *config,
                 const struct isp_app_ops *ops, void *userdata) {
        app->config = *config;
        app->ops = ops;
        app->userdata = userdata;
        app->crc_offset = 0;
        app->crc_register = 0xFFFFFFFFUL;
        app->image_crc = 0;
        app->crc_done = 0;
        app->identity_pending = 0;

        /* 0 is a legacy node, which has no id to answer with; 255 is
         * "every node" (docs/protocol.md 2.2). */
        if (config->node_id == ISP_NODE_TARGET_LEGACY || config->node_id == ISP_NODE_TARGET_ALL ||
            !ops || !ops->flash_read || !ops->send || !ops->enter_isp) {
                app->ops = NULL;
                return -1;
        }
        return 0;
}

static bool is_enter_isp_magic(const struct isp_node_frame *frame) {
        return frame->dlc == 4 &&
                frame->data[0] == (uint8_t) (ISP_NODE_DFU_MAGIC >> 24) &&
                frame->data[1] == (uint8_t) (ISP_NODE_DFU_MAGIC >> 16) &&
                frame->data[2] == (uint8_t) (ISP_NODE_DFU_MAGIC >> 8) &&
                frame->data[3] == (uint8_t) ISP_NODE_DFU_MAGIC;
}

/* The command of a request to this node (target its id or 0xFF, ID bits
 * 19..8 zero), or NOT_FOR_US for any other frame. A function of its own
 * so that the 32-bit identifier is off the stack when a reply is sent. */
static uint8_t request_cmd(const struct isp_app *app, const struct isp_node_frame *frame) {
        uint32_t id = frame->id;
        uint8_t target = (uint8_t) id;

        if (!(id & ISP_NODE_FRAME_EXTENDED) || (id & ISP_NODE_FRAME_RTR) || frame->dlc > 8)
                return NOT_FOR_US;
        if ((id & 0x1F000000UL) != ISP_NODE_REQUEST_BASE || (id & TARGET_RESERVED_MASK))
                return NOT_FOR_US;
        if (target != app->config.node_id && target != ISP_NODE_TARGET_ALL)
                return NOT_FOR_US;
        return (uint8_t) ((id >> 20) & 0x0FU);
}

int isp_app_receive(struct isp_app *app, const struct isp_node_frame *frame) {
        uint8_t cmd;

        if (!app->ops)
                return ISP_APP_IGNORED;
        cmd = request_cmd(app, frame);

        if (cmd == ISP_NODE_CMD_ENTER_ISP) {
                if (!is_enter_isp_magic(frame))
                        return ISP_APP_IGNORED;
                app->ops->enter_isp(app->userdata);
                return ISP_APP_ENTERED_ISP;
        }

        if (cmd != ISP_NODE_CMD_IDENTIFY || frame->dlc != 1)
                return ISP_APP_IGNORED;

        switch (frame->data[0]) {
        case ISP_APP_VARIANT_IDENTITY:
                /* isp_app_poll() sets crc_done before it looks at the
                 * pending flag, so one of the two answers, whichever order
                 * an interrupt puts them in. */
                if (!app->crc_done) {
                        app->identity_pending = 1;
                        return ISP_APP_PENDING;
                }
                send_reply(app, ISP_APP_VARIANT_IDENTITY);
                return ISP_APP_ANSWERED;

        case ISP_APP_VARIANT_ABOUT:
                send_reply(app, ISP_APP_VARIANT_ABOUT);
                return ISP_APP_ANSWERED;

        default:
                return ISP_APP_IGNORED;
        }
}

/* Feed the next ISP_APP_POLL_BYTES flash bytes into the CRC. Returns
 * whether the whole image is done. Its own function so that its buffer
 * is off the stack again when isp_app_poll() sends. */
static bool crc_chunk(struct isp_app *app) {
        uint8_t buf[CHUNK];
        uint32_t crc = app->crc_register;
        uint16_t done;
        uint8_t i, bit;

        for (done = 0; done < ISP_APP_POLL_BYTES; done += CHUNK) {
                app->ops->flash_read(app->userdata, app->crc_offset, buf, CHUNK);
                for (i = 0; i < CHUNK; i++) {
                        crc ^= buf[i];
                        for (bit = 0; bit < 8; bit++)
                                crc = (crc & 1U) ? (crc >> 1) ^ 0xEDB88320UL : crc >> 1;
                }
                app->crc_offset += CHUNK;
        }
        app->crc_register = crc;

        /* The ISP area is not part of the image. */
        if (app->crc_offset == ISP_NODE_ISP_START)
                app->crc_offset = ISP_NODE_ISP_END;
        return app->crc_offset >= ISP_NODE_FLASH_SIZE;
}

bool isp_app_poll(struct isp_app *app) {
        if (!app->ops || app->crc_done)
                return false;
        if (!crc_chunk(app))
                return true;

        app->image_crc = ~app->crc_register;
        app->crc_done = 1;
        if (app->identity_pending) {
                /* cleared first: a request the interrupt takes in after
                 * this line is answered by the interrupt itself */
                app->identity_pending = 0;
                send_reply(app, ISP_APP_VARIANT_IDENTITY);
        }
        return false;
}

bool isp_app_crc_is_done(const struct isp_app *app) {
        return app->crc_done != 0;
}

uint32_t isp_app_get_image_crc(const struct isp_app *app) {
        return app->crc_done ? app->image_crc : 0;
}
