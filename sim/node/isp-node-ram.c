/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "isp-node-ram.h"

static void ram_read(void *userdata, uint32_t offset, uint8_t *buf, uint8_t len) {
        struct isp_node_ram *ram = userdata;

        memcpy(buf, ram->flash + offset, len);
        ram->n_read += len;
}

static int ram_program(void *userdata, uint32_t offset, const uint8_t *data, uint8_t len) {
        struct isp_node_ram *ram = userdata;
        uint8_t i;

        if (ram->fail_program)
                return -1;
        for (i = 0; i < len; i++) {
                uint8_t b = data[i];

                if (ram->corrupt_program)
                        b &= 0xFE;
                /* What the cell does: bits only go from 1 to 0. */
                ram->flash[offset + i] &= b;
        }
        ram->n_programmed += len;
        return 0;
}

static int ram_erase_sector(void *userdata, uint32_t offset) {
        struct isp_node_ram *ram = userdata;

        if (ram->fail_erase)
                return -1;
        memset(ram->flash + offset, 0xFF, ISP_NODE_SECTOR_SIZE);
        ram->n_erased++;
        return 0;
}

static void ram_send(void *userdata, const struct isp_node_frame *frame) {
        struct isp_node_ram *ram = userdata;

        if (ram->n_sent == ISP_NODE_RAM_MAX_SENT) {
                memmove(ram->sent, ram->sent + 1, sizeof(ram->sent[0]) * (ISP_NODE_RAM_MAX_SENT - 1));
                ram->n_sent--;
                ram->n_overflow++;
        }
        ram->sent[ram->n_sent++] = *frame;
}

const struct isp_node_ops isp_node_ram_ops = {
        ram_read,
        ram_program,
        ram_erase_sector,
        ram_send,
};

uint8_t isp_node_isp_pattern(uint32_t offset) {
        uint8_t b = (uint8_t) ((offset ^ (offset >> 8) ^ 0xA5U) & 0xFFU);

        return b == 0xFF ? 0x00 : b;
}

void isp_node_fill_isp_pattern(uint8_t *flash) {
        uint32_t offset;

        for (offset = ISP_NODE_ISP_START; offset < ISP_NODE_ISP_END; offset++)
                flash[offset] = isp_node_isp_pattern(offset);
}

void isp_node_ram_init(struct isp_node_ram *ram) {
        memset(ram, 0, sizeof(*ram));
        memset(ram->flash, 0xFF, sizeof(ram->flash));
        isp_node_fill_isp_pattern(ram->flash);
}

bool isp_node_ram_pop(struct isp_node_ram *ram, struct isp_node_frame *ret) {
        if (ram->n_sent == 0)
                return false;
        *ret = ram->sent[0];
        ram->n_sent--;
        memmove(ram->sent, ram->sent + 1, sizeof(ram->sent[0]) * ram->n_sent);
        return true;
}

static void ram_enter_isp(void *userdata) {
        struct isp_node_ram *ram = userdata;

        ram->xdata_dfu_flag[0] = (uint8_t) (ISP_NODE_DFU_MAGIC >> 24);
        ram->xdata_dfu_flag[1] = (uint8_t) (ISP_NODE_DFU_MAGIC >> 16);
        ram->xdata_dfu_flag[2] = (uint8_t) (ISP_NODE_DFU_MAGIC >> 8);
        ram->xdata_dfu_flag[3] = (uint8_t) ISP_NODE_DFU_MAGIC;
        ram->n_enter_isp++;
        if (ram->core) {
                isp_node_set_dfu_flag(ram->core);
                (void) isp_node_soft_reset(ram->core);
        }
}

const struct isp_app_ops isp_node_ram_app_ops = {
        ram_read,
        ram_send,
        ram_enter_isp,
};

int isp_node_ram_receive(struct isp_node_ram *ram, struct isp_node *node, const struct isp_node_frame *frame) {
        struct isp_app_config config;
        struct isp_app app;
        uint8_t info[8];
        unsigned long n_read;

        if (isp_node_get_mode(node) != ISP_NODE_MODE_APPLICATION)
                return isp_node_receive(node, frame);
        if (isp_node_is_legacy(node))
                return ISP_APP_IGNORED;

        isp_node_get_info(node, info);
        memset(&config, 0, sizeof(config));
        config.node_id = node->config.node_id;
        memcpy(config.uid, info + 4, 4);
        ram->core = node;
        if (isp_app_init(&app, &config, &isp_node_ram_app_ops, ram) < 0)
                return ISP_APP_IGNORED;
        /* Only IDENTIFY depends on the CRC: spare every other frame 124 KiB
         * of reads (benches send thousands to nodes that run their
         * application). The reads are the application's, not the ISP's
         * flash work, so n_read does not count them. */
        if (((frame->id >> 20) & 0x0FU) == ISP_NODE_CMD_IDENTIFY) {
                n_read = ram->n_read;
                while (isp_app_poll(&app))
                        ;
                ram->n_read = n_read;
        }
        return isp_app_receive(&app, frame);
}
