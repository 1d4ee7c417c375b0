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

/* The checks are done: what each member holds. A compare (verify, dry
 * run) ends here; a flash leaves the members that hold the image alone.
 * Returns true when the unit's work is over. */
static bool precheck_verdicts(struct session *s) {
        struct unit *u = &s->unit;
        struct session_target *members[ISP_NODE_MAX];
        unsigned n = u->n;
        bool compare = s->kind == SESSION_VERIFY || s->cfg.dry_run;

        memcpy(members, u->m, n * sizeof(*members));
        for (unsigned i = 0; i < n; i++) {
                struct session_target *t = members[i];
                struct plan_sectors differing = t->erase_set;
                bool up;

                for (unsigned sec = 0; sec < ISP_SECTORS; sec++)
                        if (plan_sectors_test(&s->plan.image_sectors, sec) && !plan_sectors_test(&t->skip_set, sec))
                                plan_sectors_add(&differing, sec);
                up = !s->cfg.full && sectors_count(&differing) == 0;

                if (s->kind == SESSION_VERIFY) {
                        t->differing = differing;
                        target_finish_ok(s, t, up ? SESSION_OUTCOME_MATCHES : SESSION_OUTCOME_DIFFERS);
                        continue;
                }
                if (s->cfg.dry_run) {
                        t->differing = differing;
                        if (up)
                                target_finish_ok(s, t, SESSION_OUTCOME_UP_TO_DATE);
                        else {
                                estimate_flash(s, t);
                                target_finish_ok(s, t, SESSION_OUTCOME_WOULD_FLASH);
                        }
                        continue;
                }
                if (up) {
                        /* holds the image: its turn (a REBOOT) comes after the unit */
                        t->up_to_date = true;
                        unit_member_gone(s, t);
                        t->step = STEP_WAIT;
                        t->alone = false;
                        continue;
                }
                /* the entry sector is erased first and written last, whatever it holds */
                plan_sectors_remove(&t->skip_set, ENTRY_SECTOR);
                plan_sectors_remove(&t->erase_set, ENTRY_SECTOR);
        }
        if (compare) {
                u->step = U_MEMBERS;
                u->next_member = 0;
                return true;
        }
        return false;
}
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

/* The image's sectors: one CRC each, to tell those that already hold the
 * image (skipped) and those that are blank (programmed without an erase)
 * from the rest. The entry sector is compared with what it holds after
 * the commit: a member that holds all of the image is up to date and
 * not erased at all; any other gets its entry sector erased first and
 * written last. With cfg.full, none is checked and all are erased. */
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
                if (!plan_sectors_test(&s->plan.image_sectors, u->cursor))
                        continue;
                crc_request(&req, u->cursor * ISP_SECTOR_SIZE, ISP_SECTOR_SIZE);
                batch_add(s, &req);
        }
        if (u->n_req > 0) {
                batch_send(s);
                return;
        }

        if (precheck_verdicts(s))
                return;

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

        if (u->n == 0) {
                /* every member was up to date */
                u->step = U_MEMBERS;
                u->next_member = 0;
                return;
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
                /* the entry sector as the commit leaves it */
                uint32_t want = sec == ENTRY_SECTOR ? isp_image_crc32(s->image, ISP_ENTRY_OFFSET, ISP_SECTOR_SIZE)
                                                    : plan_expected_crc(&s->plan, sec, 1);

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
        if (in_class == u->n && !u->dropped) {
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

