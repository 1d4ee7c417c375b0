/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "sim-can-bits.h"

/* ISO 11898-1: SOF to the end of EOF of an extended data frame. */
#define CAN_FRAME_BITS(n) (64U + 8U * (n))
#define CAN_INTERFRAME_BITS 3U

struct bit_stream {
        uint8_t bits[64 + 54 + 8]; /* SOF .. CRC of an 8-byte frame: 118 */
        unsigned len;
};

static void put_bits(struct bit_stream *s, uint32_t value, unsigned count) {
        while (count-- > 0)
                s->bits[s->len++] = (uint8_t) ((value >> count) & 1U);
}

/* ISO 11898-1 CRC-15, polynomial 0x4599, over the unstuffed bits. */
static uint16_t crc15(const struct bit_stream *s) {
        uint16_t crc = 0;

        for (unsigned i = 0; i < s->len; i++) {
                unsigned next = s->bits[i] ^ ((crc >> 14) & 1U);

                crc = (uint16_t) ((crc << 1) & 0x7FFF);
                if (next)
                        crc ^= 0x4599;
        }
        return crc;
}

unsigned sim_can_stuff_bits(const struct isp_node_frame *frame) {
        struct bit_stream s = { .len = 0 };
        uint32_t id = frame->id & ISP_NODE_FRAME_ID_MASK;
        unsigned dlc = frame->dlc > 8 ? 8 : frame->dlc;
        unsigned stuffed = 0, run = 0;
        int prev = -1;

        put_bits(&s, 0, 1);                 /* SOF */
        put_bits(&s, id >> 18, 11);         /* base identifier */
        put_bits(&s, 1, 1);                 /* SRR, recessive */
        put_bits(&s, 1, 1);                 /* IDE, recessive: extended */
        put_bits(&s, id & 0x3FFFFU, 18);    /* identifier extension */
        put_bits(&s, 0, 1);                 /* RTR, dominant: data frame */
        put_bits(&s, 0, 2);                 /* r1, r0 */
        put_bits(&s, dlc, 4);
        for (unsigned i = 0; i < dlc; i++)
                put_bits(&s, frame->data[i], 8);
        put_bits(&s, crc15(&s), 15);

        for (unsigned i = 0; i < s.len; i++) {
                if (s.bits[i] == prev)
                        run++;
                else {
                        prev = s.bits[i];
                        run = 1;
                }
                if (run == 5) {
                        /* The stuff bit is the complement and starts the next run. */
                        stuffed++;
                        prev = !prev;
                        run = 1;
                }
        }
        return stuffed;
}

unsigned sim_can_frame_bits(const struct isp_node_frame *frame) {
        unsigned dlc = frame->dlc > 8 ? 8 : frame->dlc;

        return CAN_FRAME_BITS(dlc) + CAN_INTERFRAME_BITS + sim_can_stuff_bits(frame);
}

uint64_t sim_can_bits_to_nsec(unsigned bits, uint32_t bitrate) {
        if (bitrate == 0)
                return 0;
        return ((uint64_t) bits * UINT64_C(1000000000) + bitrate - 1) / bitrate;
}
