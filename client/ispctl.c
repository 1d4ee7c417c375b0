/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ispctl.h"
#include "util.h"

void ispctl_error(const struct ispctl_args *args, const char *file, int line, bool with_line,
                  const char *fmt, ...) {
        char msg[1024];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);

        fprintf(stderr, "%s\n", msg);

        if (args && args->json) {
                json_object *o = json_object_new_object();

                if (!o)
                        return;
                json_object_object_add(o, "error", json_object_new_string(msg));
                if (file)
                        json_object_object_add(o, "file", json_object_new_string(file));
                if (with_line)
                        json_object_object_add(o, "line", line > 0 ? json_object_new_int(line) : NULL);
                puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
                json_object_put(o);
        }
}

int ispctl_parse_timespan(const char *s, uint64_t *ret_usec) {
        static const struct {
                const char *suffix;
                uint64_t usec;
        } units[] = {
                { "",    1000000ULL },
                { "s",   1000000ULL },
                { "sec", 1000000ULL },
                { "ms",  1000ULL },
                { "m",   60000000ULL },
                { "min", 60000000ULL },
                { "h",   3600000000ULL },
        };
        unsigned long long n;
        char *end;

        if (!isdigit((unsigned char) s[0]))
                return -EINVAL;
        errno = 0;
        n = strtoull(s, &end, 10);
        if (errno || n == 0)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (strcmp(end, units[i].suffix) == 0) {
                        if (n > UINT64_MAX / units[i].usec)
                                return -EINVAL;
                        *ret_usec = n * units[i].usec;
                        return 0;
                }
        return -EINVAL;
}

/* The commands that follow jobs, and so take --timeout. */
static bool verb_waits(const char *verb) {
        static const char *const waiting[] = { "flash", "verify", "read", "reboot", "scan", "wait" };

        for (size_t i = 0; i < ELEMENTSOF(waiting); i++)
                if (strcmp(verb, waiting[i]) == 0)
                        return true;
        return false;
}

static void help(void) {
        printf("Usage: ispctl [OPTIONS...] COMMAND ...\n"
               "\n"
               "Update the firmware of STC32G boards on a CAN bus through stcispd.\n"
               "\n"
               "Commands:\n"
               "  flash TARGET... FILE  Validate FILE, flash it to the targets and wait\n"
               "  verify TARGET... FILE Compare the targets with FILE, changing nothing\n"
               "  read TARGET FILE      Read a node's application back into FILE\n"
               "  reboot TARGET...      Reboot nodes from their ISP into their application\n"
               "  status [TARGET]       Show the daemon and its bus, or one node\n"
               "  list                  List the nodes the daemon knows\n"
               "  scan                  Find the boards, in their ISP or running, and what each runs\n"
               "  jobs                  List queued, running and recent jobs\n"
               "  cancel JOB...         Cancel jobs (id or object path)\n"
               "  wait JOB...           Follow queued or running jobs to their end\n"
               "  monitor               Follow jobs live until interrupted\n"
               "  inspect FILE          Validate an Intel HEX or BIN image offline and show\n"
               "                        what a node's flash will hold (no daemon needed)\n"
               "\n"
               "TARGET is nodeN or N (1-254), legacy, or a name from stcispd.conf;\n"
               "comma lists work (1,2,node7).\n"
               "\n"
               "Options:\n"
               "  -h --help              Show this help\n"
               "     --version           Show the version\n"
               "     --json              Print only JSON on standard output\n"
               "     --format FORMAT     Image format: hex or bin (default: from the file;\n"
               "                         read: bin for .bin and .img, else hex)\n"
               "     --no-block          Queue the jobs and print their paths, do not wait\n"
               "     --timeout T         Stop waiting after T (30s, 500ms, 2min); the jobs go on\n"
               "     --no-reboot         flash: leave the nodes in their ISP afterwards\n"
               "     --no-verify         flash: skip verification (the entry is still last)\n"
               "     --full              flash: rewrite every sector of the image, even those\n"
               "                         that already hold it\n"
               "     --force             flash: also nodes that hold the image already\n"
               "     --dry-run           flash: change nothing, show what each node would get\n"
               "     --require-boot      flash: a node whose new application does not confirm\n"
               "                         its boot fails\n"
               "     --canary N          flash: the first N nodes first, the others only when\n"
               "                         they all succeeded\n"
               "     --all               flash, verify, reboot: every extended node the daemon\n"
               "                         knows\n"
               "  -H --host [USER@]HOST  Talk to the daemon on HOST over SSH\n"
               "     --address ADDRESS   Talk to the D-Bus bus at ADDRESS\n"
               "\n"
               "Exit status: 0 success, 1 invalid image, 2 usage error, 3 job failed,\n"
               "4 node not found, 5 access denied, 6 daemon not reachable, 7 other\n"
               "daemon error, 8 verify: a node differs, 9 --timeout expired, 130 interrupted.\n"
               "See ispctl(1).\n");
}

static const struct {
        const char *name;
        int (*run)(int argc, char *argv[], const struct ispctl_args *args);
} verbs[] = {
        { "flash",   verb_flash   },
        { "verify",  verb_verify  },
        { "read",    verb_read    },
        { "reboot",  verb_reboot  },
        { "status",  verb_status  },
        { "list",    verb_list    },
        { "scan",    verb_scan    },
        { "jobs",    verb_jobs    },
        { "cancel",  verb_cancel  },
        { "wait",    verb_wait    },
        { "monitor", verb_monitor },
        { "inspect", verb_inspect },
};

int main(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_JSON, ARG_FORMAT, ARG_NO_BLOCK, ARG_NO_REBOOT,
               ARG_NO_VERIFY, ARG_FULL, ARG_FORCE, ARG_DRY_RUN, ARG_REQUIRE_BOOT, ARG_CANARY, ARG_ALL,
               ARG_ADDRESS, ARG_TIMEOUT };
        static const struct option options[] = {
                { "help",      no_argument,       NULL, 'h'           },
                { "version",   no_argument,       NULL, ARG_VERSION   },
                { "json",      no_argument,       NULL, ARG_JSON      },
                { "format",    required_argument, NULL, ARG_FORMAT    },
                { "no-block",  no_argument,       NULL, ARG_NO_BLOCK  },
                { "no-reboot", no_argument,       NULL, ARG_NO_REBOOT },
                { "no-verify", no_argument,       NULL, ARG_NO_VERIFY },
                { "full",      no_argument,       NULL, ARG_FULL      },
                { "force",     no_argument,       NULL, ARG_FORCE     },
                { "dry-run",   no_argument,       NULL, ARG_DRY_RUN   },
                { "require-boot", no_argument,    NULL, ARG_REQUIRE_BOOT },
                { "canary",    required_argument, NULL, ARG_CANARY    },
                { "all",       no_argument,       NULL, ARG_ALL       },
                { "host",      required_argument, NULL, 'H'           },
                { "address",   required_argument, NULL, ARG_ADDRESS   },
                { "timeout",   required_argument, NULL, ARG_TIMEOUT   },
                {}
        };
        struct ispctl_args args = {};
        uint64_t timeout_usec = 0;
        int c;

        /* Scan for --json first so even an early usage error is JSON. */
        for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
                if (strcmp(argv[i], "--json") == 0)
                        args.json = true;

        opterr = 0;
        while ((c = getopt_long(argc, argv, "hH:", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return ISPCTL_EXIT_SUCCESS;
                case ARG_VERSION:
                        printf("ispctl " PROJECT_VERSION "\n");
                        return ISPCTL_EXIT_SUCCESS;
                case ARG_JSON:
                        args.json = true;
                        break;
                case ARG_FORMAT:
                        args.format = optarg;
                        break;
                case ARG_NO_BLOCK:
                        args.no_block = true;
                        break;
                case ARG_NO_REBOOT:
                        args.no_reboot = true;
                        break;
                case ARG_NO_VERIFY:
                        args.no_verify = true;
                        break;
                case ARG_FULL:
                        args.full = true;
                        break;
                case ARG_FORCE:
                        args.force = true;
                        break;
                case ARG_DRY_RUN:
                        args.dry_run = true;
                        break;
                case ARG_REQUIRE_BOOT:
                        args.require_boot = true;
                        break;
                case ARG_CANARY: {
                        char *end;
                        unsigned long n;

                        errno = 0;
                        n = strtoul(optarg, &end, 10);
                        if (!isdigit((unsigned char) optarg[0]) || *end || errno || n > UINT32_MAX) {
                                ispctl_error(&args, NULL, 0, false,
                                             "ispctl: --canary takes a number of nodes, not '%s'", optarg);
                                return ISPCTL_EXIT_USAGE;
                        }
                        args.canary = (unsigned) n;
                        break;
                }
                case ARG_ALL:
                        args.all = true;
                        break;
                case 'H':
                        args.host = optarg;
                        break;
                case ARG_ADDRESS:
                        args.address = optarg;
                        break;
                case ARG_TIMEOUT:
                        if (ispctl_parse_timespan(optarg, &timeout_usec) < 0) {
                                ispctl_error(&args, NULL, 0, false,
                                             "ispctl: --timeout takes a time span more than 0 (30, 30s, 500ms, 2min, 1h), not '%s'",
                                             optarg);
                                return ISPCTL_EXIT_USAGE;
                        }
                        args.timeout = optarg;
                        break;
                case '?':
                        if (optopt)
                                ispctl_error(&args, NULL, 0, false, "ispctl: option '-%c' is unknown or lacks its argument (see 'ispctl --help')", optopt);
                        else
                                ispctl_error(&args, NULL, 0, false, "ispctl: option '%s' is unknown or lacks its argument (see 'ispctl --help')", argv[optind - 1]);
                        return ISPCTL_EXIT_USAGE;
                }

        if (optind >= argc) {
                ispctl_error(&args, NULL, 0, false, "ispctl: missing command (see 'ispctl --help')");
                return ISPCTL_EXIT_USAGE;
        }

        if (args.timeout && args.no_block) {
                ispctl_error(&args, NULL, 0, false, "ispctl: --timeout and --no-block do not go together: --no-block does not wait");
                return ISPCTL_EXIT_USAGE;
        }
        /* The time counts from the start: queueing is part of the wait. */
        if (args.timeout)
                args.deadline_usec = now_usec(CLOCK_MONOTONIC) + timeout_usec;

        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (strcmp(argv[optind], verbs[i].name) == 0) {
                        if (args.timeout && !verb_waits(verbs[i].name)) {
                                ispctl_error(&args, NULL, 0, false,
                                             "ispctl: --timeout is for the commands that wait for jobs "
                                             "(flash, verify, read, reboot, scan, wait), not '%s'", verbs[i].name);
                                return ISPCTL_EXIT_USAGE;
                        }
                        return verbs[i].run(argc - optind, argv + optind, &args);
                }

        ispctl_error(&args, NULL, 0, false, "ispctl: unknown command '%s' (see 'ispctl --help')", argv[optind]);
        return ISPCTL_EXIT_USAGE;
}
