/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sim-fleet.h"

#define SIM_DEFAULT_BITRATE        500000U
#define SIM_DEFAULT_RX_DEPTH       4U
#define SIM_DEFAULT_SEED           1U
#define SIM_DEFAULT_ERASE_TIME     (5U * NSEC_PER_MSEC)
#define SIM_DEFAULT_PROGRAM_TIME   (6U * NSEC_PER_USEC)
#define SIM_DEFAULT_CRC_TIME       (3U * NSEC_PER_USEC)
#define SIM_DEFAULT_HANDLE_TIME    (10U * NSEC_PER_USEC)
#define SIM_DEFAULT_WRITEBACK_DELAY (100U * NSEC_PER_MSEC)
#define SIM_DEFAULT_RESTART_DELAY  (1U * NSEC_PER_SEC)
#define SIM_DEFAULT_APP_CRC_TIME   (50U * NSEC_PER_MSEC)

typedef struct SimConfig {
        const char *interface;
        const char *flash_dir;
        bool node[256];          /* node[id]: simulate node id; node[0]: --legacy */
        SimFault fault[256];     /* per node id */
        SimTiming timing;
        uint8_t rx_depth;
        uint64_t seed;
        bool quiet;
} SimConfig;

/* Parse the command line into *config (filled with defaults first).
 * Returns 1 if it should run, 0 if --help or --version was printed (exit
 * 0), or -EINVAL after printing what is wrong to stderr (exit 2). */
int sim_parse_argv(int argc, char *argv[], SimConfig *config);

void sim_config_defaults(SimConfig *config);

/* The pieces, for tests. Each returns 0 or -EINVAL/-ERANGE with an
 * explanation in err[errlen]. */

/* "1-3,7": ids 1-254 into ids[256]; an id listed twice is an error. */
int sim_parse_node_list(const char *s, bool ids[256], char *err, size_t errlen);

/* "ID:SPEC[,SPEC...]" merged into faults[ID]; returns the id. */
int sim_parse_fault(const char *s, SimFault faults[256], char *err, size_t errlen);

/* A duration: a decimal number and a unit (ns, us, ms, s), or "0". */
int sim_parse_duration(const char *s, uint64_t *ret_nsec, char *err, size_t errlen);

/* An unsigned decimal number in [min, max]. */
int sim_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret, char *err, size_t errlen);

/* A fraction 0-1, decimal ("0.25") or percent ("25%"). */
int sim_parse_fraction(const char *s, double *ret, char *err, size_t errlen);
