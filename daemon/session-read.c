/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The protocol engine: reading a node's application area back. A CRC per
 * sector tells the blank ones (left out); every other sector is read with
 * READ, one request at a time (a READ answer carries no offset), and
 * checked against the node's own CRC of it. The result is an image whose
 * entry bytes are held apart, as the loader gives it, so that it is
 * written out as the file it came from.
 */

#include <stdlib.h>
#include <string.h>

#include "isp-crc32.h"
#include "session-internal.h"

/* A sector whose READs do not give the node's CRC is read again this
 * often before the read-back fails. */
#define READ_TRIES 3u

static bool app_sector(unsigned sec) {
        return !plan_is_isp_sector(sec);
}

static void read_next_sector(struct session *s, struct session_target *t);

static void read_finish(struct session *s, struct session_target *t) {
        struct isp_image *img = t->read_img;
        const uint8_t *e = img->flash + ISP_ENTRY_OFFSET;
        uint16_t target = (uint16_t) (e[1] << 8 | e[2]);
        size_t bytes = 0;

        if (e[0] != 0x02 || target < ISP_ENTRY_MIN_TARGET) {
                session_fail(s, t, SESSION_REASON_NO_APPLICATION, ISP_ENTRY_OFFSET,
                             "%s holds no application: the entry at FF:1000 is %02X %02X %02X "
                             "(a valid one is 02 hh ll with hhll >= 1003)", t->name, e[0], e[1], e[2]);
                return;
        }
        memcpy(img->entry, e, ISP_ENTRY_SIZE);
        img->entry_target = target;
        memset(img->flash + ISP_ENTRY_OFFSET, 0xFF, ISP_ENTRY_SIZE);
        memset(img->used, 0, sizeof(img->used));
        for (uint32_t o = 0; o < ISP_FLASH_SIZE; o++)
                if (img->flash[o] != 0xFF) {
                        img->used[o / 8] |= (uint8_t) (1u << (o % 8));
                        bytes++;
                }
        img->data_bytes = bytes + ISP_ENTRY_SIZE;
        img->format = ISP_IMAGE_HEX;

        /* it was running its application: back into it */
        if (t->entered_isp) {
                start_reboot(s, t);
                return;
        }
        target_finish_ok(s, t, SESSION_OUTCOME_READ);
}

static void read_crc(struct session *s, struct session_target *t) {
        struct isp_request req = {
                .cmd = ISP_CMD_CRC,
                .u.crc = { .offset = t->read_sector * ISP_SECTOR_SIZE, .length = ISP_SECTOR_SIZE },
        };

        t->step = STEP_READ_CRC;
        (void) target_request(s, t, &req,
                              ms_to_usec(s->cfg.timeout_ms) + ms_to_usec(SESSION_CRC_MS_PER_SECTOR));
}

static void read_data(struct session *s, struct session_target *t) {
        struct isp_request req = { .cmd = ISP_CMD_READ, .u.read.offset = t->cursor };

        t->step = STEP_READ_DATA;
        (void) target_request(s, t, &req, ms_to_usec(s->cfg.timeout_ms));
}

static void read_next_sector(struct session *s, struct session_target *t) {
        while (t->read_sector < ISP_SECTORS && !app_sector(t->read_sector))
                t->read_sector++;
        if (t->read_sector >= ISP_SECTORS) {
                read_finish(s, t);
                return;
        }
        t->read_tries = 0;
        read_crc(s, t);
}

void start_read(struct session *s, struct session_target *t) {
        clear_wait(t);
        target_reset_requests(t);
        if (!t->read_img) {
                t->read_img = malloc(sizeof(*t->read_img));
                if (!t->read_img) {
                        session_fail(s, t, SESSION_REASON_INTERNAL, 0, "%s: out of memory for the read-back", t->name);
                        return;
                }
        }
        memset(t->read_img, 0, sizeof(*t->read_img));
        memset(t->read_img->flash, 0xFF, sizeof(t->read_img->flash));
        set_phase(s, t, SESSION_PHASE_READ);
        t->read_sector = 0;
        t->done = 0;
        t->total = APP_SECTORS;
        report_progress(s, t);
        read_next_sector(s, t);
}

static void sector_read(struct session *s, struct session_target *t) {
        t->done++;
        report_progress(s, t);
        t->read_sector++;
        read_next_sector(s, t);
}

void on_read_reply(struct session *s, struct session_target *t, struct pending *p, const struct isp_reply *r) {
        uint32_t base = t->read_sector * ISP_SECTOR_SIZE;
        char a[ISP_ADDR_STRING_MAX];

        transport_done(&t->tp, p, s->now);
        if (r->status != ISP_STATUS_OK) {
                fail_status(s, t, isp_cmd_to_string(r->cmd),
                            r->cmd == ISP_CMD_READ ? t->cursor : base, r->status);
                return;
        }

        if (t->step == STEP_READ_CRC) {
                t->read_crc = r->u.crc;
                if (r->u.crc == plan_blank_crc(1)) {
                        memset(t->read_img->flash + base, 0xFF, ISP_SECTOR_SIZE);
                        sector_read(s, t);
                        return;
                }
                t->cursor = base;
                read_data(s, t);
                return;
        }

        memcpy(t->read_img->flash + t->cursor, r->u.data, 8);
        t->cursor += 8;
        if (t->cursor < base + ISP_SECTOR_SIZE) {
                read_data(s, t);
                return;
        }
        if (isp_crc32(t->read_img->flash + base, ISP_SECTOR_SIZE) == t->read_crc) {
                sector_read(s, t);
                return;
        }
        /* an answer was lost or taken for another's: read it again */
        if (++t->read_tries < READ_TRIES) {
                session_log(s, LOG_DEBUG, "%s: read-back of the sector at %s does not match its CRC, reading it again",
                            t->name, isp_offset_to_string(base, a));
                read_crc(s, t);
                return;
        }
        session_fail(s, t, SESSION_REASON_VERIFY_FAILED, base,
                     "%s: read-back of the sector at %s does not match the node's CRC of it (%u tries)",
                     t->name, isp_offset_to_string(base, a), READ_TRIES);
}
