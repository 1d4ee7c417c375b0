/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "manager.h"
#include "util.h"

#define EXIT_CONFIG 78  /* EX_CONFIG from sysexits.h */

static void help(void) {
        printf("Usage: stcispd [OPTIONS...]\n"
               "\n"
               "Update the firmware of STC32G boards on a CAN bus; serve the\n"
               "org.stcisp.ispd1 D-Bus API on the system bus.\n"
               "\n"
               "  -h --help             Show this help\n"
               "     --version          Show the version\n"
               "  -c --config FILE      Configuration file (default: " CONFIG_DEFAULT_PATH ")\n"
               "  -i --interface IF     CAN interface; repeat it for several (overrides\n"
               "                        [Bus] Interface=)\n"
               "     --state-dir DIR    Where the job queue and history live\n"
               "                        (default: $STATE_DIRECTORY, else " CONFIG_DEFAULT_STATE_DIR ")\n"
               "  -d --debug            Log debug messages\n"
               "\n"
               "The system bus is the one DBUS_SYSTEM_BUS_ADDRESS names, when set.\n"
               "See stcispd(8) and stcispd.conf(5).\n");
}

struct arguments {
        const char *config_path, *state_dir;
        char *interfaces[CONFIG_LINES_MAX];
        unsigned n_interfaces;
};

/* Returns -1 to go on, else the exit status. */
static int parse_argv(int argc, char *argv[], struct arguments *a) {
        enum { ARG_VERSION = 0x100, ARG_STATE_DIR };
        static const struct option options[] = {
                { "help",      no_argument,       NULL, 'h'           },
                { "version",   no_argument,       NULL, ARG_VERSION   },
                { "config",    required_argument, NULL, 'c'           },
                { "interface", required_argument, NULL, 'i'           },
                { "state-dir", required_argument, NULL, ARG_STATE_DIR },
                { "debug",     no_argument,       NULL, 'd'           },
                {}
        };
        int c;

        while ((c = getopt_long(argc, argv, "hc:i:d", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case ARG_VERSION:
                        printf("stcispd " PROJECT_VERSION "\n");
                        return EXIT_SUCCESS;
                case 'c':
                        a->config_path = optarg;
                        break;
                case 'i':
                        if (a->n_interfaces >= CONFIG_LINES_MAX) {
                                fprintf(stderr, "stcispd: at most %d --interface options\n", CONFIG_LINES_MAX);
                                return 2;
                        }
                        a->interfaces[a->n_interfaces++] = optarg;
                        break;
                case ARG_STATE_DIR:
                        a->state_dir = optarg;
                        break;
                case 'd':
                        log_max_level = 7;
                        break;
                default:
                        fprintf(stderr, "Try 'stcispd --help'.\n");
                        return 2;
                }
        if (optind < argc) {
                fprintf(stderr, "stcispd takes no arguments ('%s'). Try 'stcispd --help'.\n", argv[optind]);
                return 2;
        }
        return -1;
}

/* The file, then the command line over it. Returns -1 to go on, else the
 * exit status. */
static int load_config(struct config *config, const struct arguments *a) {
        const char *state_dir = a->state_dir;
        int r;

        r = config_init(config);
        if (r < 0)
                return EXIT_FAILURE;
        /* An explicitly named file must exist; the default one may not. A
         * bad configuration exits with EX_CONFIG, which the unit's
         * RestartPreventExitStatus= keeps from a restart loop. */
        r = config_load(config, a->config_path ? a->config_path : CONFIG_DEFAULT_PATH, a->config_path != NULL);
        if (r < 0) {
                config_done(config);
                return EXIT_CONFIG;
        }
        /* A group named in the file must exist: else nobody but root could
         * ever flash, and nothing would say why. (The default group may be
         * created later.) */
        if (config->flash_group_where && !getgrnam(config->flash_group)) {
                log_error("%s: FlashGroup=%s: no such group ('getent group %s' finds none): create it "
                          "(groupadd --system %s) or name an existing one",
                          config->flash_group_where, config->flash_group, config->flash_group, config->flash_group);
                config_done(config);
                return EXIT_CONFIG;
        }
        if (!state_dir)
                state_dir = getenv("STATE_DIRECTORY");  /* systemd's StateDirectory= */
        if (a->n_interfaces > 0) {
                r = config_set_interfaces(config, a->interfaces, a->n_interfaces);
                if (r < 0) {
                        config_done(config);
                        return r == -ENOMEM ? EXIT_FAILURE : 2;
                }
        }
        if (state_dir && !(free(config->state_dir), config->state_dir = strdup(state_dir))) {
                config_done(config);
                log_error("Out of memory");
                return EXIT_FAILURE;
        }
        return -1;
}

int main(int argc, char *argv[]) {
        struct arguments a = {};
        struct config config;
        Manager *m = NULL;
        sigset_t mask;
        int r;

        r = parse_argv(argc, argv, &a);
        if (r >= 0)
                return r;
        r = load_config(&config, &a);
        if (r >= 0)
                return r;

        /* Signals are handled by sd-event, which needs them blocked. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        r = manager_new(&m, &config);          /* takes config, also on failure */
        if (r < 0) {
                log_error_errno(r, "Cannot set up: %m");
                return EXIT_FAILURE;
        }
        r = manager_start(m);
        if (r >= 0)
                r = manager_run(m);
        manager_free(m);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
