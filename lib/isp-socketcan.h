/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The one conversion between the codec's frames and SocketCAN's struct
 * can_frame (classical CAN), for every program here that opens a CAN_RAW
 * socket. Pure: no socket is touched. */

#include <linux/can.h>
#include <string.h>

#include "isp-frame.h"

static inline void isp_frame_from_socketcan(const struct can_frame *cf, struct isp_can_frame *ret) {
        *ret = (struct isp_can_frame) {
                .id = cf->can_id & ((cf->can_id & CAN_EFF_FLAG) ? CAN_EFF_MASK : CAN_SFF_MASK),
                .flags = (uint8_t) (((cf->can_id & CAN_EFF_FLAG) ? ISP_FRAME_EXTENDED : 0) |
                                    ((cf->can_id & CAN_RTR_FLAG) ? ISP_FRAME_FLAG_RTR : 0)),
                .len = cf->len > 8 ? 8 : cf->len,
        };
        memcpy(ret->data, cf->data, ret->len);
}

static inline void isp_frame_to_socketcan(const struct isp_can_frame *f, struct can_frame *ret) {
        *ret = (struct can_frame) {
                .can_id = f->id | ((f->flags & ISP_FRAME_EXTENDED) ? CAN_EFF_FLAG : 0) |
                          ((f->flags & ISP_FRAME_FLAG_RTR) ? CAN_RTR_FLAG : 0),
                .len = f->len > 8 ? 8 : f->len,
        };
        memcpy(ret->data, f->data, ret->len);
}
