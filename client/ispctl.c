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
#include "output.h"
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
                output_json(o);
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
               "  help [COMMAND]        Show this help, or that command's own\n"
               "\n"
               "TARGET is nodeN or N (1-254), legacy, or a name from stcispd.conf;\n"
               "comma lists work (1,2,node7).\n"
               "\n"
               "Options:\n"
               "  -h --help              Show this help ('ispctl help COMMAND' or\n"
               "                         'ispctl COMMAND --help': that command's)\n"
               "     --version           Show the version\n"
               "     --json[=MODE]       Print only JSON on standard output: short (one\n"
               "                         line, the default) or pretty\n"
               "     --no-legend         Tables without their header and footer lines\n"
               "     --ask-password      Let polkit ask for a password where a rule wants\n"
               "                         one (an authentication agent must run)\n"
               "     --no-ask-password   Never (the default): refused instead\n"
               "  -q --quiet             Print only what was asked for and errors\n"
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

/* Each command's own help: 'ispctl help VERB' and 'ispctl VERB --help'. */
static const struct verb {
        const char *name;
        int (*run)(int argc, char *argv[], const struct ispctl_args *args);
        const char *synopsis, *summary, *options, *example;
} verbs[] = {
        { "flash", verb_flash, "flash [OPTIONS...] TARGET... FILE\n       ispctl flash [OPTIONS...] --all FILE",
          "Validate FILE, flash it to the targets and wait for the end.",
          "     --format FORMAT   hex or bin (default: from the file)\n"
          "     --no-block        Queue the jobs and print their paths, do not wait\n"
          "     --timeout T       Stop waiting after T (30s, 500ms, 2min)\n"
          "     --no-reboot       Leave the nodes in their ISP afterwards\n"
          "     --no-verify       Skip verification (the entry is still last)\n"
          "     --full            Rewrite every sector, even those that hold the image\n"
          "     --force           Also nodes that hold the image already\n"
          "     --dry-run         Change nothing, show what each node would get\n"
          "     --require-boot    A node whose application does not confirm its boot fails\n"
          "     --canary N        The first N nodes first, the others when they succeeded\n"
          "     --all             Every extended node the daemon knows\n"
          "     --no-legend       The summary table without its header and count\n"
          "  -q --quiet           No phase lines in a pipe, no summary\n",
          "ispctl flash node3,node4 app.hex" },
        { "verify", verb_verify, "verify [OPTIONS...] TARGET... FILE\n       ispctl verify [OPTIONS...] --all FILE",
          "Compare the targets with FILE, changing nothing (exit status 8: a node differs).",
          "     --format FORMAT   hex or bin (default: from the file)\n"
          "     --timeout T       Stop waiting after T (30s, 500ms, 2min)\n"
          "     --all             Every extended node the daemon knows\n"
          "     --no-legend       No count line after the nodes\n"
          "  -q --quiet           No phase lines in a pipe, no count line\n",
          "ispctl verify --all app.hex" },
        { "read", verb_read, "read [OPTIONS...] TARGET FILE",
          "Read one node's application back into FILE (written whole or not at all).",
          "     --format FORMAT   hex or bin (default: bin for .bin and .img, else hex)\n"
          "     --timeout T       Stop waiting after T (30s, 500ms, 2min)\n",
          "ispctl read node3 backup.hex" },
        { "reboot", verb_reboot, "reboot [OPTIONS...] TARGET...\n       ispctl reboot [OPTIONS...] --all",
          "Reboot nodes from their ISP into their application.",
          "     --no-block        Queue the jobs and print their paths, do not wait\n"
          "     --timeout T       Stop waiting after T (30s, 500ms, 2min)\n"
          "     --all             Every extended node the daemon knows\n",
          "ispctl reboot node3" },
        { "status", verb_status, "status [TARGET]",
          "Show the daemon and its bus, or one node with every detail.",
          "",
          "ispctl status node3" },
        { "list", verb_list, "list [OPTIONS...]",
          "List the nodes the daemon knows; long cells are cut (\"…\"), 'status' has them whole.",
          "     --no-legend       No header and no \"N nodes listed.\" footer\n"
          "  -q --quiet           The rows alone\n",
          "ispctl list --no-legend" },
        { "scan", verb_scan, "scan [OPTIONS...]",
          "Find the boards, in their ISP or running, and list what each runs.",
          "     --no-block        Queue the scan and print its path, do not wait\n"
          "     --timeout T       Stop waiting after T (30s, 500ms, 2min)\n"
          "     --no-legend       No header and no footer\n"
          "  -q --quiet           The rows alone\n",
          "ispctl scan" },
        { "jobs", verb_jobs, "jobs [OPTIONS...]",
          "List queued, running and recent jobs; errors are cut, 'ispctl --json jobs' has them whole.",
          "     --no-legend       No header and no \"N jobs listed.\" footer\n"
          "  -q --quiet           The rows alone\n",
          "ispctl jobs" },
        { "cancel", verb_cancel, "cancel JOB...",
          "Cancel jobs, given by id or object path ('ispctl jobs' lists them).",
          "  -q --quiet           No \"Job N cancelled.\" lines\n",
          "ispctl cancel 12" },
        { "wait", verb_wait, "wait [OPTIONS...] JOB...",
          "Follow queued or running jobs (id or object path) to their end, shown as flash shows its own.",
          "     --timeout T       Stop waiting after T (30s, 500ms, 2min)\n",
          "ispctl --timeout 10min wait 12" },
        { "monitor", verb_monitor, "monitor",
          "Follow every job live until interrupted (Ctrl-C).",
          "  -q --quiet           No \"Monitoring jobs ...\" line\n",
          "ispctl --json monitor" },
        { "inspect", verb_inspect, "inspect [OPTIONS...] FILE",
          "Validate an Intel HEX or BIN image offline and show what a node's flash will hold.",
          "     --format FORMAT   hex or bin (default: from the file)\n",
          "ispctl inspect app.hex" },
        { "help", NULL, "help [COMMAND]",
          "Show the help, or that command's own.",
          "",
          "ispctl help flash" },
};

static const struct verb *find_verb(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (strcmp(name, verbs[i].name) == 0)
                        return &verbs[i];
        return NULL;
}

static void verb_help(const struct verb *v) {
        printf("Usage: ispctl %s\n\n%s\n", v->synopsis, v->summary);
        if (*v->options)
                printf("\nOptions:\n%s", v->options);
        printf("\nThe global options (--json, -H, --address ...) work too: 'ispctl --help'.\n"
               "\nExample:\n  %s\n", v->example);
}

/* "help" and "help VERB"; exit status 0, or 2 for a command that is not one. */
static int run_help(int argc, char *argv[], const struct ispctl_args *args) {
        const struct verb *v;

        if (argc == 1) {
                help();
                return ISPCTL_EXIT_SUCCESS;
        }
        v = argc == 2 ? find_verb(argv[1]) : NULL;
        if (!v) {
                if (argc == 2)
                        ispctl_error(args, NULL, 0, false, "ispctl: unknown command '%s' (see 'ispctl --help')", argv[1]);
                else
                        ispctl_error(args, NULL, 0, false, "Usage: ispctl help [COMMAND]");
                return ISPCTL_EXIT_USAGE;
        }
        verb_help(v);
        return ISPCTL_EXIT_SUCCESS;
}

/* --json, --json=short, --json=pretty; false for another MODE. */
static bool parse_json_mode(const char *mode, struct ispctl_args *args) {
        if (!mode || strcmp(mode, "short") == 0)
                args->json_pretty = false;
        else if (strcmp(mode, "pretty") == 0)
                args->json_pretty = true;
        else
                return false;
        args->json = true;
        return true;
}

/* The option as typed, up to an "=": "--frobnicate" of "--frobnicate=1". */
static void print_option_error(const struct ispctl_args *args, const char *what, const char *arg, const char *after) {
        ispctl_error(args, NULL, 0, false, "ispctl: %s '%.*s'%s (see 'ispctl --help')", what, (int) strcspn(arg, "="), arg,
                     after);
}

int main(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_JSON, ARG_FORMAT, ARG_NO_BLOCK, ARG_NO_REBOOT,
               ARG_NO_VERIFY, ARG_FULL, ARG_FORCE, ARG_DRY_RUN, ARG_REQUIRE_BOOT, ARG_CANARY, ARG_ALL,
               ARG_ADDRESS, ARG_NO_LEGEND, ARG_TIMEOUT, ARG_ASK_PASSWORD, ARG_NO_ASK_PASSWORD };
        static const struct option options[] = {
                { "help",      no_argument,       NULL, 'h'           },
                { "version",   no_argument,       NULL, ARG_VERSION   },
                { "json",      optional_argument, NULL, ARG_JSON      },
                { "no-legend", no_argument,       NULL, ARG_NO_LEGEND },
                { "ask-password", no_argument,    NULL, ARG_ASK_PASSWORD },
                { "no-ask-password", no_argument, NULL, ARG_NO_ASK_PASSWORD },
                { "quiet",     no_argument,       NULL, 'q'           },
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
        bool want_help = false, want_version = false;
        uint64_t timeout_usec = 0;
        const struct verb *v;
        int c;

        /* Scan for --json first so even an early usage error is JSON. */
        for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
                if (strcmp(argv[i], "--json") == 0 || strncmp(argv[i], "--json=", strlen("--json=")) == 0)
                        /* a bad MODE is still a wish for JSON: its error is JSON too */
                        if (!parse_json_mode(argv[i][6] ? argv[i] + 7 : NULL, &args))
                                args.json = true;
        output_set_json_flags(args.json_pretty ? JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED :
                                                 JSON_C_TO_STRING_PLAIN);

        /* ':' first: a missing argument is told apart from an unknown option */
        opterr = 0;
        while ((c = getopt_long(argc, argv, ":hqH:", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        want_help = true;
                        break;
                case ARG_VERSION:
                        want_version = true;
                        break;
                case ARG_JSON:
                        if (!parse_json_mode(optarg, &args)) {
                                ispctl_error(&args, NULL, 0, false,
                                             "ispctl: --json takes short or pretty, not '%s' (see 'ispctl --help')", optarg);
                                return ISPCTL_EXIT_USAGE;
                        }
                        break;
                case ARG_NO_LEGEND:
                        args.no_legend = true;
                        break;
                case ARG_ASK_PASSWORD:
                        args.ask_password = true;
                        break;
                case ARG_NO_ASK_PASSWORD:
                        args.ask_password = false;
                        break;
                case 'q':
                        args.quiet = true;
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
                case ':':
                        /* a long option, or a short one alone or last in "-xH" */
                        if (optopt >= 0x100 || strncmp(argv[optind - 1], "--", 2) == 0)
                                print_option_error(&args, "missing argument for option", argv[optind - 1], "");
                        else
                                ispctl_error(&args, NULL, 0, false,
                                             "ispctl: missing argument for option '-%c' (see 'ispctl --help')", optopt);
                        return ISPCTL_EXIT_USAGE;
                case '?':
                        if (optopt >= 0x100 || optopt == 'h' || optopt == 'q')
                                /* a long option that takes none: "--version=1" */
                                print_option_error(&args, "option", argv[optind - 1], " takes no argument");
                        else if (optopt)
                                ispctl_error(&args, NULL, 0, false, "ispctl: unknown option '-%c' (see 'ispctl --help')",
                                             optopt);
                        else
                                print_option_error(&args, "unknown option", argv[optind - 1], "");
                        return ISPCTL_EXIT_USAGE;
                }

        if (want_help) {
                /* 'ispctl flash --help': getopt has put the command first */
                if (optind >= argc) {
                        help();
                        return ISPCTL_EXIT_SUCCESS;
                }
                v = find_verb(argv[optind]);
                if (!v) {
                        ispctl_error(&args, NULL, 0, false, "ispctl: unknown command '%s' (see 'ispctl --help')",
                                     argv[optind]);
                        return ISPCTL_EXIT_USAGE;
                }
                verb_help(v);
                return ISPCTL_EXIT_SUCCESS;
        }
        if (want_version) {
                if (args.json) {
                        json_object *o = json_object_new_object();

                        json_object_object_add(o, "version", json_object_new_string(PROJECT_VERSION));
                        output_json(o);
                } else
                        printf("ispctl " PROJECT_VERSION "\n");
                return ISPCTL_EXIT_SUCCESS;
        }

        if (optind >= argc) {
                ispctl_error(&args, NULL, 0, false, "ispctl: missing command (see 'ispctl --help')");
                return ISPCTL_EXIT_USAGE;
        }

        v = find_verb(argv[optind]);
        if (v && v->run && args.timeout) {
                if (args.no_block) {
                        ispctl_error(&args, NULL, 0, false,
                                     "ispctl: --timeout and --no-block do not go together: --no-block does not wait");
                        return ISPCTL_EXIT_USAGE;
                }
                if (!verb_waits(v->name)) {
                        ispctl_error(&args, NULL, 0, false,
                                     "ispctl: --timeout is for the commands that wait for jobs "
                                     "(flash, verify, read, reboot, scan, wait), not '%s'", v->name);
                        return ISPCTL_EXIT_USAGE;
                }
                /* The time counts from the start: queueing is part of the wait. */
                args.deadline_usec = now_usec(CLOCK_MONOTONIC) + timeout_usec;
        }
        if (v && v->run)
                return v->run(argc - optind, argv + optind, &args);
        if (v)
                return run_help(argc - optind, argv + optind, &args);

        ispctl_error(&args, NULL, 0, false, "ispctl: unknown command '%s' (see 'ispctl --help')", argv[optind]);
        return ISPCTL_EXIT_USAGE;
}
