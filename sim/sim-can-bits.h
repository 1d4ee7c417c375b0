/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdint.h>

#include "isp-node.h"

/*
 * How long a frame occupies a classical CAN bus.
 *
 * Counted as the design page counts it: 67 + 8N bits for an extended data
 * frame with N data bytes, 3 bits of interframe space, and the stuff bits
 * the frame really needs: the transmitter inserts one after every 5 equal
 * bits from SOF to the end of the CRC field (54 + 8N bits, at most
 * floor((53 + 8N) / 4) stuff bits). They are computed from the frame's
 * identifier, DLC, data and its CRC-15, exactly as a controller would.
 * An 8-byte frame takes 131 bits with no stuffing, 160 at worst.
 */

/* Stuff bits of an extended data frame (the ID's flag bits are ignored). */
unsigned sim_can_stuff_bits(const struct isp_node_frame *frame);

/* 67 + 8N + 3 + sim_can_stuff_bits(frame). */
unsigned sim_can_frame_bits(const struct isp_node_frame *frame);

/* Time for that many bits at bitrate bit/s, in nanoseconds, rounded up. */
uint64_t sim_can_bits_to_nsec(unsigned bits, uint32_t bitrate);
