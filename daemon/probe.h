/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * "Which of these sectors hold what I expect?", asked by CRC: the runs of
 * consecutive sectors of a set are checked one CRC each, and a run whose
 * CRC differs is split in halves until the differing sectors are found.
 * The blank check before the erase and the CRC verify both ask it; only
 * what they expect differs (erased flash, or the image).
 *
 * Pure: the caller sends the CRC request for probe_next()'s run and hands
 * the node's answer to probe_answer().
 */

#include <stdbool.h>
#include <stdint.h>

#include "plan.h"

/* Runs waiting: the initial ones (at most 128 in 256 sectors) and the
 * halves of splits (one more per level, 8 levels). */
#define PROBE_RUNS_MAX 320u

/* The CRC-32 a run must have. */
typedef uint32_t (*probe_expected_t)(const void *userdata, unsigned first, unsigned count);

enum probe_verdict {
        PROBE_MATCHED,          /* the whole run holds what is expected */
        PROBE_MISMATCH,         /* a single sector that does not */
        PROBE_SPLIT,            /* the run differs somewhere: its halves are checked next */
};

struct probe_outcome {
        enum probe_verdict verdict;
        struct plan_run run;            /* the run answered */
        uint32_t expected;              /* its expected CRC */
};

struct probe {
        struct plan_run runs[PROBE_RUNS_MAX];   /* a stack: the next run on top */
        unsigned n_runs;
        probe_expected_t expected;
        const void *userdata;
};

/* Check the sectors of `set`, run by run in address order. */
void probe_init(struct probe *p, const struct plan_sectors *set, probe_expected_t expected, const void *userdata);

/* The run whose CRC to ask for next; false when every run is answered. */
bool probe_next(const struct probe *p, struct plan_run *ret);

/* The node's CRC of probe_next()'s run. Returns 0, or -ENOBUFS when the
 * split does not fit (cannot happen with 256 sectors). */
int probe_answer(struct probe *p, uint32_t crc, struct probe_outcome *ret);

/* Sectors still to be answered, split halves included. */
uint64_t probe_sectors_left(const struct probe *p);
