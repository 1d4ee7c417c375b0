/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The CRC sector probe. See probe.h.
 */

#include <errno.h>

#include "probe.h"

static int push(struct probe *p, unsigned first, unsigned count) {
        if (p->n_runs >= PROBE_RUNS_MAX)
                return -ENOBUFS;
        p->runs[p->n_runs++] = (struct plan_run) { .first = (uint16_t) first, .count = (uint16_t) count };
        return 0;
}

void probe_init(struct probe *p, const struct plan_sectors *set, probe_expected_t expected, const void *userdata) {
        struct plan_run found[ISP_SECTORS];
        unsigned n = 0, cursor = 0;

        *p = (struct probe) { .expected = expected, .userdata = userdata };
        while (n < ISP_SECTORS && plan_sectors_next_run(set, &cursor, ISP_SECTORS, &found[n]))
                n++;
        /* highest first, so they pop in address order */
        while (n > 0)
                (void) push(p, found[n - 1].first, found[n - 1].count), n--;
}

bool probe_next(const struct probe *p, struct plan_run *ret) {
        if (p->n_runs == 0)
                return false;
        *ret = p->runs[p->n_runs - 1];
        return true;
}

int probe_answer(struct probe *p, uint32_t crc, struct probe_outcome *ret) {
        struct plan_run run;
        unsigned half;
        int r;

        if (!probe_next(p, &run))
                return -EINVAL;
        p->n_runs--;
        *ret = (struct probe_outcome) {
                .run = run,
                .expected = p->expected(p->userdata, run.first, run.count),
        };
        if (crc == ret->expected) {
                ret->verdict = PROBE_MATCHED;
                return 0;
        }
        if (run.count == 1) {
                ret->verdict = PROBE_MISMATCH;
                return 0;
        }

        /* the upper half first: the lower pops next */
        ret->verdict = PROBE_SPLIT;
        half = run.count / 2u;
        r = push(p, run.first + half, run.count - half);
        if (r < 0)
                return r;
        return push(p, run.first, half);
}

uint64_t probe_sectors_left(const struct probe *p) {
        uint64_t n = 0;

        for (unsigned i = 0; i < p->n_runs; i++)
                n += p->runs[i].count;
        return n;
}
