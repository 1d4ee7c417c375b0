/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * Fuzz target for the ISP frame codec.
 *
 * Input layout (short inputs are zero-padded):
 *   0-3    CAN ID, little-endian (any 32-bit value, flag bits included)
 *   4      flags (ISP_FRAME_EXTENDED | ISP_FRAME_FLAG_*, other bits too)
 *   5      len (any value: the parsers must reject len > 8)
 *   6-13   data
 *   14-    fields of a request and a reply to build (see build_*_from())
 *
 * Frame → struct: when a parse succeeds, building the struct back must
 * give an extended frame of len <= 8 that parses to the same struct, and
 * that frame is the canonical form of the input (same ID and payload),
 * except for the legacy replies whose payload the parser ignores.
 *
 * Struct → frame: when a build succeeds, the frame must parse, to the
 * same struct, and re-build to the same frame.
 */

#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "isp-frame.h"

static const char *frame_str(const struct isp_can_frame *f, char buf[static ISP_FRAME_STRING_MAX]) {
        struct isp_can_frame g = *f;

        g.len = g.len > 8 ? 8 : g.len;  /* isp_frame_to_string() trusts len */
        return isp_frame_to_string(&g, buf);
}

/* Equal in every field the command carries; the union's other bytes and
 * the padding mean nothing. */
static bool request_equal(const struct isp_request *a, const struct isp_request *b) {
        if (a->cmd != b->cmd)
                return false;

        switch (a->cmd) {
        case ISP_CMD_CONNECT:
                return a->u.connect.target == b->u.connect.target &&
                       a->u.connect.flags == b->u.connect.flags &&
                       a->u.connect.with_flags == b->u.connect.with_flags;
        case ISP_CMD_READ:
                return a->u.read.offset == b->u.read.offset;
        case ISP_CMD_PROGRAM:
                return a->u.program.offset == b->u.program.offset &&
                       a->u.program.len == b->u.program.len &&
                       a->u.program.len <= 8 &&
                       memcmp(a->u.program.data, b->u.program.data, a->u.program.len) == 0;
        case ISP_CMD_ERASE:
                if (a->u.erase.whole != b->u.erase.whole)
                        return false;
                return a->u.erase.whole ||
                       (a->u.erase.offset == b->u.erase.offset && a->u.erase.count == b->u.erase.count);
        case ISP_CMD_REBOOT:
                return true;
        case ISP_CMD_CRC:
                return a->u.crc.offset == b->u.crc.offset && a->u.crc.length == b->u.crc.length;
        case ISP_CMD_ENTER_ISP:
                return a->u.enter_isp.target == b->u.enter_isp.target;
        case ISP_CMD_IDENTIFY:
                return a->u.identify.target == b->u.identify.target &&
                       a->u.identify.variant == b->u.identify.variant;
        }
        return false;
}

/* The legacy replies whose frame carries nothing but the command: node 0,
 * any DLC, any data. */
static bool reply_is_short_legacy(const struct isp_reply *r) {
        return r->node == ISP_NODE_LEGACY &&
               (r->cmd == ISP_CMD_CONNECT || r->cmd == ISP_CMD_PROGRAM ||
                r->cmd == ISP_CMD_ERASE || r->cmd == ISP_CMD_REBOOT);
}

static bool reply_equal(const struct isp_reply *a, const struct isp_reply *b) {
        if (a->cmd != b->cmd || a->node != b->node || a->legacy != b->legacy)
                return false;
        if (reply_is_short_legacy(a))
                return true;

        switch (a->cmd) {
        case ISP_CMD_CONNECT:
        case ISP_CMD_ENTER_ISP:
                return memcmp(&a->u.info, &b->u.info, sizeof(a->u.info)) == 0;   /* all uint8_t: no padding */
        case ISP_CMD_READ:
                if (a->status != b->status)
                        return false;
                return a->status != ISP_STATUS_OK || memcmp(a->u.data, b->u.data, 8) == 0;
        case ISP_CMD_PROGRAM:
                return a->status == b->status && a->u.offset == b->u.offset;
        case ISP_CMD_ERASE:
        case ISP_CMD_REBOOT:
                return a->status == b->status;
        case ISP_CMD_CRC:
                return a->status == b->status && a->u.crc == b->u.crc;
        case ISP_CMD_IDENTIFY:
                if (a->variant != b->variant)
                        return false;
                if (a->variant == ISP_IDENTIFY_IDENTITY)
                        return memcmp(a->u.identity.uid, b->u.identity.uid, 4) == 0 &&
                               a->u.identity.image_crc == b->u.identity.image_crc;
                return a->u.about.version == b->u.about.version &&
                       a->u.about.capabilities == b->u.about.capabilities &&
                       a->u.about.helper == b->u.about.helper &&
                       a->u.about.flags == b->u.about.flags &&
                       a->u.about.app_version == b->u.about.app_version;
        }
        return false;
}

/* The parsers look at the 29 bits of an extended ID only: bits 29-31 of
 * `id` are outside the frame's contract and may be lost. */
#define EXTENDED_ID_MASK 0x1FFFFFFFu

static void check_built_frame(const struct isp_can_frame *f, const char *what) {
        fuzz_check(f->flags == ISP_FRAME_EXTENDED, "%s: flags 0x%02X", what, f->flags);
        fuzz_check(f->len <= 8, "%s: len %u", what, f->len);
        fuzz_check(f->id <= EXTENDED_ID_MASK, "%s: ID 0x%X is not a 29-bit ID", what, (unsigned) f->id);
}

static void check_frames_equal(const struct isp_can_frame *a, const struct isp_can_frame *b, bool payload, const char *what) {
        char sa[ISP_FRAME_STRING_MAX], sb[ISP_FRAME_STRING_MAX];

        fuzz_check((a->id & EXTENDED_ID_MASK) == (b->id & EXTENDED_ID_MASK) &&
                   (!payload || (a->len == b->len && memcmp(a->data, b->data, a->len) == 0)),
                   "%s: %s became %s", what, frame_str(a, sa), frame_str(b, sb));
}

static void fuzz_request_parse(const struct isp_can_frame *f) {
        struct isp_request first, second;
        struct isp_can_frame built;
        char s[ISP_FRAME_STRING_MAX];
        int r;

        r = isp_request_parse(f, &first);
        fuzz_check(r <= 0 && r > -_ISP_FRAME_ERROR_MAX, "request parse of %s returned %d", frame_str(f, s), r);
        (void) isp_frame_error_to_string(r);
        if (r < 0)
                return;

        (void) isp_cmd_to_string(first.cmd);
        r = isp_request_build(&first, &built);
        fuzz_check(r == 0, "request %s parsed but does not build back: %d", frame_str(f, s), r);
        check_built_frame(&built, "request");
        check_frames_equal(f, &built, /* payload= */ true, "request");

        r = isp_request_parse(&built, &second);
        fuzz_check(r == 0, "built request %s does not parse: %s", frame_str(&built, s), isp_frame_error_to_string(r));
        fuzz_check(request_equal(&first, &second), "request %s changed in a round trip", frame_str(f, s));
}

static void fuzz_reply_parse(const struct isp_can_frame *f) {
        struct isp_reply first, second;
        struct isp_can_frame built;
        char s[ISP_FRAME_STRING_MAX];
        int r;

        r = isp_reply_parse(f, &first);
        fuzz_check(r <= 0 && r > -_ISP_FRAME_ERROR_MAX, "reply parse of %s returned %d", frame_str(f, s), r);
        if (r < 0)
                return;

        fuzz_check(first.legacy == (first.node == ISP_NODE_LEGACY), "reply %s: legacy %d for node %u",
                   frame_str(f, s), first.legacy, first.node);
        (void) isp_status_to_string(first.status);
        r = isp_reply_build(&first, &built);
        fuzz_check(r == 0, "reply %s parsed but does not build back: %d", frame_str(f, s), r);
        check_built_frame(&built, "reply");
        check_frames_equal(f, &built, /* payload= */ !reply_is_short_legacy(&first), "reply");

        r = isp_reply_parse(&built, &second);
        fuzz_check(r == 0, "built reply %s does not parse: %s", frame_str(&built, s), isp_frame_error_to_string(r));
        fuzz_check(reply_equal(&first, &second), "reply %s changed in a round trip", frame_str(f, s));
}

static void build_request_from(struct fuzz_input *in, struct isp_request *req) {
        *req = (struct isp_request) { .cmd = (enum isp_cmd) (fuzz_u8(in) & 0x0F) };  /* 8-15: unknown */

        switch (req->cmd) {
        case ISP_CMD_CONNECT:
                req->u.connect.target = fuzz_u8(in);
                req->u.connect.flags = fuzz_u8(in);
                req->u.connect.with_flags = fuzz_u8(in) & 1;
                break;
        case ISP_CMD_READ:
                req->u.read.offset = fuzz_u32(in);
                break;
        case ISP_CMD_PROGRAM:
                req->u.program.offset = fuzz_u32(in);
                req->u.program.len = fuzz_u8(in);
                for (unsigned i = 0; i < 8; i++)
                        req->u.program.data[i] = fuzz_u8(in);
                break;
        case ISP_CMD_ERASE:
                req->u.erase.whole = fuzz_u8(in) & 1;
                req->u.erase.offset = fuzz_u32(in);
                req->u.erase.count = fuzz_u8(in);
                break;
        case ISP_CMD_CRC:
                req->u.crc.offset = fuzz_u32(in);
                req->u.crc.length = fuzz_u32(in);
                break;
        case ISP_CMD_ENTER_ISP:
                req->u.enter_isp.target = fuzz_u8(in);
                break;
        case ISP_CMD_IDENTIFY:
                req->u.identify.target = fuzz_u8(in);
                req->u.identify.variant = fuzz_u8(in);
                break;
        default:
                break;
        }
}

static void build_reply_from(struct fuzz_input *in, struct isp_reply *reply) {
        *reply = (struct isp_reply) {
                .cmd = (enum isp_cmd) (fuzz_u8(in) & 0x0F),
                .node = fuzz_u8(in),
                .legacy = fuzz_u8(in) & 1,
                .status = fuzz_u8(in),
        };
        if (reply->cmd == ISP_CMD_IDENTIFY)
                reply->variant = fuzz_u8(in) & 3;       /* 2, 3: unknown */
        for (unsigned i = 0; i < 8; i++)
                reply->u.data[i] = fuzz_u8(in);         /* covers info, offset, crc, identity, about too */
}

static void fuzz_request_build(const struct isp_request *req) {
        struct isp_can_frame f, again;
        struct isp_request back;
        char s[ISP_FRAME_STRING_MAX];
        int r;

        r = isp_request_build(req, &f);
        fuzz_check(r == 0 || r == -EINVAL, "request build returned %d", r);
        if (r < 0)
                return;
        check_built_frame(&f, "request");

        r = isp_request_parse(&f, &back);
        fuzz_check(r == 0, "built %s request %s does not parse: %s",
                   isp_cmd_to_string(req->cmd), frame_str(&f, s), isp_frame_error_to_string(r));
        fuzz_check(request_equal(req, &back), "%s request built as %s parses to something else",
                   isp_cmd_to_string(req->cmd), frame_str(&f, s));
        r = isp_request_build(&back, &again);
        fuzz_check(r == 0, "parsed request does not build: %d", r);
        check_frames_equal(&f, &again, /* payload= */ true, "request rebuild");
}

static void fuzz_reply_build(const struct isp_reply *reply) {
        struct isp_can_frame f, again;
        struct isp_reply back, want;
        char s[ISP_FRAME_STRING_MAX];
        int r;

        r = isp_reply_build(reply, &f);
        fuzz_check(r == 0 || r == -EINVAL, "reply build returned %d", r);
        if (r < 0)
                return;
        check_built_frame(&f, "reply");

        r = isp_reply_parse(&f, &back);
        fuzz_check(r == 0, "built %s reply (node %u, legacy %d, status %u) %s does not parse: %s",
                   isp_cmd_to_string(reply->cmd), reply->node, reply->legacy, reply->status,
                   frame_str(&f, s), isp_frame_error_to_string(r));

        /* What the wire can tell: node 0 is legacy whatever the struct
         * said, and the forms without a status byte read as status 0. */
        want = *reply;
        want.legacy = reply->node == ISP_NODE_LEGACY;
        if (want.cmd == ISP_CMD_CONNECT || want.cmd == ISP_CMD_ENTER_ISP || want.cmd == ISP_CMD_IDENTIFY)
                want.status = ISP_STATUS_OK;
        fuzz_check(reply_equal(&want, &back), "%s reply built as %s parses to something else",
                   isp_cmd_to_string(reply->cmd), frame_str(&f, s));

        r = isp_reply_build(&back, &again);
        fuzz_check(r == 0, "parsed reply does not build: %d", r);
        check_frames_equal(&f, &again, /* payload= */ true, "reply rebuild");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct fuzz_input in = { .data = data, .size = size };
        struct isp_can_frame f = {};
        struct isp_request req;
        struct isp_reply reply;
        char s[ISP_FRAME_STRING_MAX], a[ISP_ADDR_STRING_MAX];

        f.id = fuzz_u32(&in);
        f.flags = fuzz_u8(&in);
        f.len = fuzz_u8(&in);
        for (unsigned i = 0; i < 8; i++)
                f.data[i] = fuzz_u8(&in);

        /* Both directions, as the daemon and the simulator see every frame. */
        fuzz_request_parse(&f);
        fuzz_reply_parse(&f);

        (void) isp_frame_to_string(&f, s);      /* must cope with any len */
        (void) isp_offset_to_string(f.id, a);

        build_request_from(&in, &req);
        fuzz_request_build(&req);
        build_reply_from(&in, &reply);
        fuzz_reply_build(&reply);

        return 0;
}
