/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Requests in flight to one node. See transport.h.
 */

#include "transport.h"

void transport_init(struct transport *tp, transport_send_t send, void *userdata,
                    uint64_t *retransmissions, uint64_t *retransmissions_node, uint64_t *timeouts,
                    bool echoes_offset) {
        tp->send = send;
        tp->userdata = userdata;
        tp->retransmissions = retransmissions;
        tp->retransmissions_node = retransmissions_node;
        tp->timeouts = timeouts;
        tp->echoes_offset = echoes_offset;
        transport_reset(tp);
}

void transport_reset(struct transport *tp) {
        tp->n_pend = 0;
        tp->holdoff = false;
}

bool transport_full(const struct transport *tp) {
        return tp->n_pend >= TRANSPORT_MAX_WINDOW;
}

/* Whether replies to `cmd` say which request they answer. */
static bool reply_is_matched(const struct transport *tp, enum isp_cmd cmd) {
        return cmd == ISP_CMD_PROGRAM && tp->echoes_offset;
}

int transport_add(struct transport *tp, const struct isp_request *req, uint64_t timeout_usec,
                  struct pending **ret) {
        struct pending *p = &tp->pend[tp->n_pend];
        int r;

        *p = (struct pending) {
                .req = *req,
                .timeout_usec = timeout_usec,
        };
        r = isp_request_build(req, &p->frame);
        if (r < 0)
                return r;
        tp->n_pend++;
        *ret = p;
        return 0;
}

static int transmit(struct transport *tp, struct pending *p, uint64_t now) {
        uint64_t seq;
        int r;

        r = tp->send(tp->userdata, &p->frame, &seq);
        if (r < 0)
                return r;
        p->sent = true;
        p->sends++;
        p->seq = seq;
        p->deadline = now + p->timeout_usec;
        return 0;
}

int transport_send(struct transport *tp, struct pending *p, uint64_t now) {
        if (tp->holdoff && p->req.cmd == tp->holdoff_cmd && now < tp->holdoff_until &&
            !reply_is_matched(tp, p->req.cmd)) {
                p->deadline = tp->holdoff_until;
                return 0;
        }
        return transmit(tp, p, now);
}

int transport_retransmit(struct transport *tp, struct pending *p, uint64_t now) {
        p->retransmissions++;
        (*tp->retransmissions)++;
        (*tp->retransmissions_node)++;
        return transmit(tp, p, now);
}

uint32_t transport_request_start(const struct isp_request *req) {
        switch (req->cmd) {
        case ISP_CMD_CRC:
                return req->u.crc.offset;
        case ISP_CMD_ERASE:
                return req->u.erase.whole ? ISP_ECHO_NONE : req->u.erase.offset;
        default:
                return ISP_ECHO_NONE;
        }
}

struct pending *transport_match(const struct transport *tp, const struct isp_reply *reply, uint64_t now,
                                enum transport_miss *ret_miss) {
        bool in_flight = false;

        for (unsigned i = 0; i < tp->n_pend; i++) {
                const struct pending *p = &tp->pend[i];

                if (!p->sent || p->req.cmd != reply->cmd)
                        continue;
                in_flight = true;
                if (reply_is_matched(tp, reply->cmd) && p->req.u.program.offset != reply->u.offset)
                        continue;
                /* ECHO: a CRC or ERASE answer says where its request starts */
                if (reply->echo && transport_request_start(&p->req) != reply->echo_offset)
                        continue;
                *ret_miss = TRANSPORT_MATCHED;
                return (struct pending *) p;
        }

        if (in_flight)
                *ret_miss = TRANSPORT_NO_MATCH;
        else if (tp->holdoff && reply->cmd == tp->holdoff_cmd && now < tp->holdoff_until)
                *ret_miss = TRANSPORT_HOLDOFF;
        else
                *ret_miss = TRANSPORT_NOTHING_IN_FLIGHT;
        return NULL;
}

void transport_done(struct transport *tp, struct pending *p, uint64_t now) {
        unsigned i = (unsigned) (p - tp->pend);

        if (p->sends > 1 && !reply_is_matched(tp, p->req.cmd)) {
                tp->holdoff = true;
                tp->holdoff_cmd = p->req.cmd;
                tp->holdoff_until = now + p->timeout_usec;
        }
        tp->pend[i] = tp->pend[--tp->n_pend];
}

uint64_t transport_deadline(const struct transport *tp) {
        uint64_t d = UINT64_MAX;

        for (unsigned i = 0; i < tp->n_pend; i++)
                if (tp->pend[i].deadline < d)
                        d = tp->pend[i].deadline;
        return d;
}

/* A failed send resets the transport through its owner (n_pend drops to
 * 0), which ends the loops below. */
struct pending *transport_timeout(struct transport *tp, uint64_t now, unsigned retries) {
        for (unsigned i = 0; i < tp->n_pend; i++) {
                struct pending *p = &tp->pend[i];

                if (p->deadline > now)
                        continue;
                if (!p->sent) {
                        /* hold-off over */
                        tp->holdoff = false;
                        (void) transmit(tp, p, now);
                        continue;
                }
                (*tp->timeouts)++;
                if (p->retransmissions < retries) {
                        (void) transport_retransmit(tp, p, now);
                        continue;
                }
                return p;
        }
        return NULL;
}

struct pending *transport_resend_before(struct transport *tp, uint64_t seq, uint64_t now, unsigned retries) {
        for (unsigned i = 0; i < tp->n_pend; i++) {
                struct pending *q = &tp->pend[i];

                if (!q->sent || q->seq >= seq)
                        continue;
                if (q->retransmissions >= retries)
                        return q;
                (void) transport_retransmit(tp, q, now);
        }
        return NULL;
}

void transport_resend_all(struct transport *tp, uint64_t now) {
        tp->holdoff = false;
        for (unsigned i = 0; i < tp->n_pend; i++) {
                struct pending *p = &tp->pend[i];

                if (p->sent) {
                        (*tp->retransmissions)++;
                        (*tp->retransmissions_node)++;
                }
                (void) transmit(tp, p, now);
        }
}
