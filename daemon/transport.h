/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The requests in flight to one node: sending them, retransmitting them at
 * their time-out, and telling which one a reply answers. Pure: the owner
 * passes the time and puts the frames on the bus (transport.send).
 *
 * Replies that carry nothing to tell them apart (READ, CRC, ERASE, REBOOT,
 * and every legacy ack) could be taken for the answer to the next request
 * of the same command when the reply to a retransmitted request arrives
 * twice. So after such a request is answered the transport holds off as
 * long as that request's time-out: the next request of the same command is
 * held back until the hold-off ends, and replies meanwhile match nothing.
 * (This is not the protocol's QUIET flag, which suppresses PROGRAM acks.)
 */

#include <stdbool.h>
#include <stdint.h>

#include "isp-frame.h"

/* Largest PROGRAM window: the rx depth in INFO is one byte. */
#define TRANSPORT_MAX_WINDOW 255u

struct pending {
        struct isp_request req;
        struct isp_can_frame frame;
        bool sent;                      /* false: held back by the hold-off */
        uint64_t deadline;
        uint64_t timeout_usec;
        unsigned retransmissions;       /* counted against the retries */
        unsigned sends;                 /* every transmission, resume included */
        uint64_t seq;                   /* of the latest transmission */
};

/* Puts a frame on the bus; returns 0 and the transmission's sequence
 * number (increasing over all frames the owner sends), or a negative
 * errno (the owner has dealt with the failure then). */
typedef int (*transport_send_t)(void *userdata, const struct isp_can_frame *frame, uint64_t *ret_seq);

struct transport {
        transport_send_t send;
        void *userdata;
        uint64_t *retransmissions;      /* counters the transport adds to */
        uint64_t *retransmissions_node; /* the same, for its node alone */
        uint64_t *timeouts;
        bool echoes_offset;             /* PROGRAM acks echo the offset (an extended node) */

        struct pending pend[TRANSPORT_MAX_WINDOW];
        unsigned n_pend;

        bool holdoff;
        enum isp_cmd holdoff_cmd;
        uint64_t holdoff_until;
};

/* Why a reply matched no request. */
enum transport_miss {
        TRANSPORT_MATCHED,
        TRANSPORT_NOTHING_IN_FLIGHT,    /* no request of that command was sent */
        TRANSPORT_HOLDOFF,              /* a second answer to a retransmitted request, probably */
        TRANSPORT_NO_MATCH,             /* requests of that command in flight, none this one */
};

void transport_init(struct transport *tp, transport_send_t send, void *userdata,
                    uint64_t *retransmissions, uint64_t *retransmissions_node, uint64_t *timeouts,
                    bool echoes_offset);
/* Forget every request and the hold-off. */
void transport_reset(struct transport *tp);
bool transport_full(const struct transport *tp);

/* Queue a request (builds its frame); returns 0 or isp_request_build()'s
 * error. transport_send() then puts it on the bus, or holds it back. */
int transport_add(struct transport *tp, const struct isp_request *req, uint64_t timeout_usec,
                  struct pending **ret);
int transport_send(struct transport *tp, struct pending *p, uint64_t now);
int transport_retransmit(struct transport *tp, struct pending *p, uint64_t now);

/* The request `reply` answers, or NULL and why not. */
/* Where a CRC or ERASE request starts, as an ECHO answer repeats it
 * (ISP_ECHO_NONE for a full erase). */
uint32_t transport_request_start(const struct isp_request *req);
struct pending *transport_match(const struct transport *tp, const struct isp_reply *reply, uint64_t now,
                                enum transport_miss *ret_miss);
/* `p` is answered: drop it, and hold off if it went out more than once. */
void transport_done(struct transport *tp, struct pending *p, uint64_t now);

/* The earliest deadline of a request, UINT64_MAX for none. */
uint64_t transport_deadline(const struct transport *tp);
/* Time `now` has come: send what was held back and is due, retransmit what
 * timed out. Returns the first request that timed out with no retries
 * left (the owner fails it), else NULL. Stops early if a send fails. */
struct pending *transport_timeout(struct transport *tp, uint64_t now, unsigned retries);
/* The node answers in order: requests sent before transmission `seq` and
 * still unanswered were lost (or their replies were). Resend them now;
 * returns the first with no retries left, else NULL. */
struct pending *transport_resend_before(struct transport *tp, uint64_t seq, uint64_t now, unsigned retries);
/* The link came back: send everything in flight again. A re-send does not
 * count against the retries, but may be answered twice, so it counts as a
 * transmission (and arms the hold-off). */
void transport_resend_all(struct transport *tp, uint64_t now);
