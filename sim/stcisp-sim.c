/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* stcisp-sim: a fleet of simulated STC32G ISP nodes on a SocketCAN interface. */
#include <stdlib.h>

#include "sim-manager.h"
#include "sim-options.h"

static SimConfig config;

int main(int argc, char *argv[]) {
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        r = sim_parse_argv(argc, argv, &config);
        if (r < 0)
                return 2;
        if (r == 0)
                return EXIT_SUCCESS;

        r = manager_new(&m, &config);
        if (r < 0)
                return EXIT_FAILURE;

        r = manager_open_can(m);
        if (r < 0)
                return EXIT_FAILURE;

        r = manager_load_flash(m);
        if (r < 0)
                return EXIT_FAILURE;

        r = manager_run(m);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
