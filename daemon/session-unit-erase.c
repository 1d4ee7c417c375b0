/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The protocol engine, units (session-unit.c): the read-only checks
 * before the erase (the blank check, and unless cfg.full the
 * differential check of every image sector) and the erase itself (the
 * entry sector on every member first, then class by class).
 */

#include <string.h>

#include "session-unit.h"

static void start_erase_classes(struct session *s);

/* ------------------------------------------------------------------------ */
/* Checking before the erase */

static uint32_t expect_blank_crc(const void *userdata, unsigned first, unsigned count) {
        (void) userdata;
        (void) first;
        return plan_blank_crc(count);
}

static void precheck_blank_next(struct session *s);
static void precheck_image_next(struct session *s);

void start_precheck(struct session *s) {
        struct unit *u = &s->unit;

        unit_phase(s, SESSION_PHASE_ERASE);
        for (unsigned i = 0; i < u->n; i++) {
                struct session_target *t = u->m[i];

                memset(&t->erase_set, 0, sizeof(t->erase_set));
                memset(&t->skip_set, 0, sizeof(t->skip_set));
                t->n_dirty = 0;
                t->done = 0;
                t->total = APP_SECTORS;
                report_progress(s, t);
        }
        probe_init(&u->probe, &s->plan.blank_sectors, expect_blank_crc, NULL);
        u->step = U_PRECHECK_BLANK;
        precheck_blank_next(s);
}

static void precheck_blank_next(struct session *s) {
        struct unit *u = &s->unit;
        struct isp_request req;
        struct plan_run run;

        if (!probe_next(&u->probe, &run)) {
                u->step = U_PRECHECK_IMAGE;
                u->cursor = 0;
                precheck_image_next(s);
                return;
        }
        batch_begin(s);
        crc_request(&req, run.first * ISP_SECTOR_SIZE, run.count * ISP_SECTOR_SIZE);
        batch_add(s, &req);
        batch_send(s);
}

void on_precheck_blank(struct session *s) {
        struct unit *u = &s->unit;
        struct probe_outcome o;
        struct plan_run run;
        uint32_t expected = 0, crc;
        bool all_match = true;

        (void) probe_next(&u->probe, &run);
        expected = plan_blank_crc(run.count);
        crc = expected;
        for (unsigned i = 0; i < u->n; i++)
                if (u->m[i]->batch_crc[0] != expected) {
                        all_match = false;
                        crc = u->m[i]->batch_crc[0];
                }
        (void) probe_answer(&u->probe, crc, &o);
        if (o.verdict == PROBE_MISMATCH)
                for (unsigned i = 0; i < u->n; i++)
                        if (u->m[i]->batch_crc[0] != expected) {
                                plan_sectors_add(&u->m[i]->erase_set, run.first);
                                u->m[i]->n_dirty++;
                        }
        if (all_match || o.verdict == PROBE_MISMATCH)
                for (unsigned i = 0; i < u->n; i++) {
                        u->m[i]->done += run.count;
                        report_progress(s, u->m[i]);
                }
        precheck_blank_next(s);
}

/* The image's sectors, the entry sector excepted (always erased and
 * written last): one CRC each, to tell those that already hold the image
 * (skipped) and those that are blank (programmed without an erase) from
 * the rest. With cfg.full, none is checked and all are erased. */
static void precheck_image_next(struct session *s) {
        struct unit *u = &s->unit;
        struct isp_request req;

        if (s->cfg.full) {
                struct plan_sectors image;

                plan_erase_sectors(&s->plan, &image);
                for (unsigned i = 0; i < u->n; i++)
                        plan_sectors_union(&u->m[i]->erase_set, &image);
                u->cursor = ISP_SECTORS;
        }

        batch_begin(s);
        for (; u->cursor < ISP_SECTORS && !batch_full(s); u->cursor++) {
                if (u->cursor == ENTRY_SECTOR || !plan_sectors_test(&s->plan.image_sectors, u->cursor))
                        continue;
                crc_request(&req, u->cursor * ISP_SECTOR_SIZE, ISP_SECTOR_SIZE);
                batch_add(s, &req);
        }
        if (u->n_req > 0) {
                batch_send(s);
                return;
        }

        /* Checked: what each member needs written, and what all need. */
        memset(&u->stream_set, 0, sizeof(u->stream_set));
        for (unsigned i = 0; i < u->n; i++) {
                struct session_target *t = u->m[i];

                t->write_set = s->plan.image_sectors;
                t->sectors_skipped = 0;
                for (unsigned sec = 0; sec < ISP_SECTORS; sec++)
                        if (plan_sectors_test(&t->skip_set, sec)) {
                                plan_sectors_remove(&t->write_set, sec);
                                t->sectors_skipped++;
                        }
                plan_sectors_union(&u->stream_set, &t->write_set);
        }

        start_erase_entry(s);
}

/* The entry sector on every member: the first ERASE (protocol.md 9). A
 * member dropped meanwhile is deselected first. */
void start_erase_entry(struct session *s) {
        struct unit *u = &s->unit;
        struct isp_request req = {
                .cmd = ISP_CMD_ERASE,
                .u.erase = { .offset = ISP_ENTRY_OFFSET, .count = 1 },
        };

        if (u->dropped) {
                start_select(s, U_ERASE_ENTRY);
                return;
        }
        batch_begin(s);
        batch_add(s, &req);
        u->step = U_ERASE_ENTRY;
        batch_send(s);
}

void on_precheck_image(struct session *s) {
        struct unit *u = &s->unit;
        const uint32_t blank = plan_blank_crc(1);

        for (unsigned k = 0; k < u->n_req; k++) {
                unsigned sec = SECTOR_OF(u->req[k].u.crc.offset);
                uint32_t want = plan_expected_crc(&s->plan, sec, 1);

                for (unsigned i = 0; i < u->n; i++) {
                        struct session_target *t = u->m[i];

                        if (t->batch_crc[k] == want)
                                plan_sectors_add(&t->skip_set, sec);
                        else if (t->batch_crc[k] != blank)
                                plan_sectors_add(&t->erase_set, sec);
                }
        }
        precheck_image_next(s);
}

/* ------------------------------------------------------------------------ */
/* Erasing */

void on_erase_entry(struct session *s) {
        struct unit *u = &s->unit;

        batch_drop_refusals(s);
        for (unsigned i = 0; i < u->n; i++) {
                u->m[i]->sectors_erased = 1;
                u->m[i]->done++;
                report_progress(s, u->m[i]);
        }
        start_erase_classes(s);
}

/* Members with the same erase set are a class; a class that is not the
 * whole unit is selected alone for its erase. */
static void start_erase_classes(struct session *s) {
        struct unit *u = &s->unit;

        for (unsigned i = 0; i < u->n; i++)
                u->m[i]->erase_handled = false;
        u->reselect = false;
        u->step = U_ERASE;
        u->class_active = false;
}

void erase_poll(struct session *s) {
        struct unit *u = &s->unit;
        struct session_target *lead = NULL;
        struct isp_request req = { .cmd = ISP_CMD_ERASE };
        struct plan_run run;
        unsigned in_class = 0;

        if (u->req_out || u->n_req > 0)
                return;

        if (u->class_active) {
                if (plan_sectors_next_run(&u->class_set, &u->erase_cursor, 255, &run)) {
                        batch_begin(s);
                        req.u.erase.offset = run.first * ISP_SECTOR_SIZE;
                        req.u.erase.count = (uint8_t) run.count;
                        batch_add(s, &req);
                        batch_send(s);
                        return;
                }
                for (unsigned i = 0; i < u->n; i++)
                        if (sectors_equal(&u->m[i]->erase_set, &u->class_set))
                                u->m[i]->erase_handled = true;
                u->class_active = false;
                /* the class was the selection: give the unit back its members */
                if (u->n_class_saved > 0) {
                        u->n = 0;
                        for (unsigned i = 0; i < u->n_class_saved; i++)
                                if (u->class_saved[i]->in_unit)
                                        u->m[u->n++] = u->class_saved[i];
                        u->n_class_saved = 0;
                }
        }

        for (unsigned i = 0; i < u->n && !lead; i++)
                if (!u->m[i]->erase_handled)
                        lead = u->m[i];
        if (!lead) {
                if (u->reselect || u->dropped)
                        start_select(s, U_STREAM);
                else
                        start_stream(s);
                return;
        }

        u->class_set = lead->erase_set;
        u->erase_cursor = 0;
        u->class_active = true;
        for (unsigned i = 0; i < u->n; i++)
                in_class += sectors_equal(&u->m[i]->erase_set, &u->class_set);

        if (sectors_count(&u->class_set) == 0) {
                /* nothing to erase for them */
                u->erase_cursor = ISP_SECTORS;
                erase_poll(s);
                return;
        }
        if (in_class == u->n) {
                /* the whole unit: no selecting */
                erase_poll(s);
                return;
        }
        {
                /* select the class alone for its erase */
                memcpy(u->class_saved, u->m, u->n * sizeof(*u->m));
                u->n_class_saved = u->n;
                u->n = 0;
                for (unsigned i = 0; i < u->n_class_saved; i++)
                        if (sectors_equal(&u->class_saved[i]->erase_set, &u->class_set))
                                u->m[u->n++] = u->class_saved[i];
                u->reselect = true;
                start_select(s, U_ERASE);
        }
}

void on_erase_run(struct session *s) {
        struct unit *u = &s->unit;
        unsigned count = u->req[0].u.erase.count;

        batch_drop_refusals(s);
        for (unsigned i = 0; i < u->n; i++) {
                u->m[i]->sectors_erased += count;
                u->m[i]->done += count;
                report_progress(s, u->m[i]);
        }
        u->n_req = 0;
}

