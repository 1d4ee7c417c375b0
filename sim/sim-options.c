/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim-options.h"

#ifndef SIM_VERSION
#define SIM_VERSION "unknown"
#endif

_printf_(3, 4)
static int fail(char *err, size_t errlen, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        (void) vsnprintf(err, errlen, format, ap);
        va_end(ap);
        return -EINVAL;
}

int sim_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret, char *err, size_t errlen) {
        unsigned long long v;
        char *end;

        /* strtoull would take "-1", " 1" and "0x10" */
        if (!s || s[0] < '0' || s[0] > '9')
                return fail(err, errlen, "'%s' is not a decimal number", s ? s : "");
        errno = 0;
        v = strtoull(s, &end, 10);
        if (*end != '\0')
                return fail(err, errlen, "'%s' is not a decimal number", s);
        if (errno == ERANGE || v < min || v > max)
                return fail(err, errlen, "%s is out of range %" PRIu64 "-%" PRIu64, s, min, max);
        *ret = v;
        return 0;
}

int sim_parse_duration(const char *s, uint64_t *ret_nsec, char *err, size_t errlen) {
        static const struct {
                const char *name;
                uint64_t nsec;
        } units[] = {
                { "ns", 1 },
                { "us", NSEC_PER_USEC },
                { "ms", NSEC_PER_MSEC },
                { "s",  NSEC_PER_SEC },
        };
        uint64_t whole = 0, frac = 0, frac_scale = 1, unit = 0;
        const char *p = s;

        if (strcmp(s, "0") == 0) {
                *ret_nsec = 0;
                return 0;
        }
        if (*p < '0' || *p > '9')
                return fail(err, errlen, "'%s' is not a duration (e.g. 5ms, 6us, 1.5s)", s);
        for (; *p >= '0' && *p <= '9'; p++) {
                if (whole > UINT64_MAX / 10 / NSEC_PER_SEC)
                        return fail(err, errlen, "%s is too long", s);
                whole = whole * 10 + (uint64_t) (*p - '0');
        }
        if (*p == '.') {
                p++;
                if (*p < '0' || *p > '9')
                        return fail(err, errlen, "'%s' is not a duration (e.g. 5ms, 6us, 1.5s)", s);
                for (; *p >= '0' && *p <= '9'; p++)
                        if (frac_scale < NSEC_PER_SEC) {
                                frac = frac * 10 + (uint64_t) (*p - '0');
                                frac_scale *= 10;
                        }
        }
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (strcmp(p, units[i].name) == 0)
                        unit = units[i].nsec;
        if (unit == 0)
                return fail(err, errlen, "'%s' needs a unit: ns, us, ms or s (e.g. 5ms)", s);

        *ret_nsec = whole * unit + frac * unit / frac_scale;
        return 0;
}

int sim_parse_fraction(const char *s, double *ret, char *err, size_t errlen) {
        char buf[64];
        size_t len = strlen(s);
        bool percent = len > 0 && s[len - 1] == '%';
        char *end;
        double v;

        if (len == 0 || len >= sizeof(buf) || s[0] < '0' || s[0] > '9')
                return fail(err, errlen, "'%s' is not a fraction (e.g. 0.1 or 10%%)", s);
        memcpy(buf, s, len + 1);
        if (percent)
                buf[len - 1] = '\0';
        errno = 0;
        v = strtod(buf, &end);
        if (*end != '\0' || errno != 0 || !isfinite(v))
                return fail(err, errlen, "'%s' is not a fraction (e.g. 0.1 or 10%%)", s);
        if (percent)
                v /= 100;
        if (v < 0 || v > 1)
                return fail(err, errlen, "%s is not between 0 and 1 (0%%-100%%)", s);
        *ret = v;
        return 0;
}

/* strtok_r() skips empty items: "1,,2" and ",1" would pass unnoticed. */
static bool has_empty_item(const char *s) {
        size_t len = strlen(s);

        return len == 0 || s[0] == ',' || s[len - 1] == ',' || strstr(s, ",,");
}

int sim_parse_node_list(const char *s, bool ids[256], char *err, size_t errlen) {
        char *copy, *item, *save = NULL;
        int r = 0;

        if (!s || !*s)
                return fail(err, errlen, "empty node list");
        copy = strdup(s);
        if (!copy)
                return -ENOMEM;

        for (item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
                char *dash = strchr(item, '-');
                uint64_t lo, hi;

                if (dash)
                        *dash = '\0';
                r = sim_parse_uint(item, 1, 254, &lo, err, errlen);
                if (r < 0)
                        break;
                hi = lo;
                if (dash) {
                        r = sim_parse_uint(dash + 1, 1, 254, &hi, err, errlen);
                        if (r < 0)
                                break;
                        if (hi < lo) {
                                r = fail(err, errlen, "range %" PRIu64 "-%" PRIu64 " runs backwards", lo, hi);
                                break;
                        }
                }
                for (uint64_t id = lo; id <= hi; id++) {
                        if (ids[id]) {
                                r = fail(err, errlen, "node %" PRIu64 " is listed twice", id);
                                break;
                        }
                        ids[id] = true;
                }
                if (r < 0)
                        break;
        }
        if (r == 0 && has_empty_item(s))
                r = fail(err, errlen, "'%s' has an empty item", s);

        free(copy);
        return r;
}

static int apply_fault(SimFault *f, const char *spec, char *err, size_t errlen) {
        const char *eq = strchr(spec, '=');
        size_t keylen = eq ? (size_t) (eq - spec) : strlen(spec);
        const char *value = eq ? eq + 1 : NULL;
        char sub[200];
        uint64_t v;
        int r;

#define KEY(k) (keylen == strlen(k) && strncmp(spec, k, keylen) == 0)
#define NEEDS_VALUE(k) do { if (!value) return fail(err, errlen, "%s needs a value: %s=...", k, k); } while (0)
#define NO_VALUE(k) do { if (value) return fail(err, errlen, "%s takes no value", k); } while (0)

        if (KEY("drop-every")) {
                NEEDS_VALUE("drop-every");
                r = sim_parse_uint(value, 1, UINT32_MAX, &v, sub, sizeof(sub));
                if (r < 0)
                        return fail(err, errlen, "drop-every: %s", sub);
                f->drop_every = (uint32_t) v;
        } else if (KEY("drop-rate")) {
                NEEDS_VALUE("drop-rate");
                r = sim_parse_fraction(value, &f->drop_rate, sub, sizeof(sub));
                if (r < 0)
                        return fail(err, errlen, "drop-rate: %s", sub);
        } else if (KEY("power-cut")) {
                NEEDS_VALUE("power-cut");
                r = sim_parse_uint(value, 1, UINT32_MAX, &v, sub, sizeof(sub));
                if (r < 0)
                        return fail(err, errlen, "power-cut: %s", sub);
                f->power_cut_after = (uint32_t) v;
        } else if (KEY("restart-delay")) {
                NEEDS_VALUE("restart-delay");
                r = sim_parse_duration(value, &f->restart_delay, sub, sizeof(sub));
                if (r < 0)
                        return fail(err, errlen, "restart-delay: %s", sub);
                f->restart_delay_set = true;
        } else if (KEY("rx-depth")) {
                NEEDS_VALUE("rx-depth");
                r = sim_parse_uint(value, 1, 255, &v, sub, sizeof(sub));
                if (r < 0)
                        return fail(err, errlen, "rx-depth: %s", sub);
                f->rx_depth = (uint8_t) v;
        } else if (KEY("dead")) {
                NO_VALUE("dead");
                f->dead = true;
        } else if (KEY("duplicate")) {
                NO_VALUE("duplicate");
                f->duplicate = true;
        } else if (KEY("app")) {
                NO_VALUE("app");
                f->application = true;
        } else if (KEY("no-helper")) {
                NO_VALUE("no-helper");
                f->no_helper = true;
        } else if (KEY("boot-fail")) {
                NO_VALUE("boot-fail");
                f->boot_fail = true;
        } else if (KEY("no-echo")) {
                NO_VALUE("no-echo");
                f->no_echo = true;
        } else if (KEY("app-version")) {
                NEEDS_VALUE("app-version");
                r = sim_parse_uint(value, 0, UINT32_MAX, &v, sub, sizeof(sub));
                if (r < 0)
                        return fail(err, errlen, "app-version: %s", sub);
                f->app_version = (uint32_t) v;
        } else
                return fail(err, errlen, "unknown fault '%.*s' (known: drop-every=N, drop-rate=P, "
                            "power-cut=N, restart-delay=T, rx-depth=N, dead, duplicate, app, "
                            "no-helper, boot-fail, app-version=N, no-echo)",
                            (int) keylen, spec);
        return 0;

#undef KEY
#undef NEEDS_VALUE
#undef NO_VALUE
}

int sim_parse_fault(const char *s, SimFault faults[256], char *err, size_t errlen) {
        const char *colon = strchr(s, ':');
        char idbuf[8], sub[200];
        char *copy, *item, *save = NULL;
        SimFault f;
        uint64_t id;
        int r = 0;

        if (!colon || colon == s || (size_t) (colon - s) >= sizeof(idbuf))
                return fail(err, errlen, "'%s' is not ID:FAULT[,FAULT...] (e.g. 3:drop-every=5)", s);
        memcpy(idbuf, s, (size_t) (colon - s));
        idbuf[colon - s] = '\0';
        r = sim_parse_uint(idbuf, 0, 254, &id, sub, sizeof(sub));
        if (r < 0)
                return fail(err, errlen, "node id: %s", sub);
        if (has_empty_item(colon + 1))
                return fail(err, errlen, "'%s' has an empty fault", s);

        copy = strdup(colon + 1);
        if (!copy)
                return -ENOMEM;
        /* all or nothing: a bad item leaves faults[id] as it was */
        f = faults[id];
        for (item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
                r = apply_fault(&f, item, err, errlen);
                if (r < 0)
                        break;
        }
        free(copy);
        if (r < 0)
                return r;
        faults[id] = f;
        return (int) id;
}

void sim_config_defaults(SimConfig *config) {
        *config = (SimConfig) {
                .timing = {
                        .bitrate = SIM_DEFAULT_BITRATE,
                        .erase_sector = SIM_DEFAULT_ERASE_TIME,
                        .program_byte = SIM_DEFAULT_PROGRAM_TIME,
                        .crc_byte = SIM_DEFAULT_CRC_TIME,
                        .handle_frame = SIM_DEFAULT_HANDLE_TIME,
                        .writeback_delay = SIM_DEFAULT_WRITEBACK_DELAY,
                        .app_crc = SIM_DEFAULT_APP_CRC_TIME,
                },
                .rx_depth = SIM_DEFAULT_RX_DEPTH,
                .seed = SIM_DEFAULT_SEED,
        };
}

static void help(void) {
        printf("Usage: stcisp-sim --interface IF --flash-dir DIR [--nodes LIST] [--legacy] [OPTION...]\n"
               "\n"
               "Simulates STC32G boards running the ISP-over-CAN node firmware on a SocketCAN\n"
               "interface: extended nodes with ids 1-254 and/or one legacy node (id 0).\n"
               "\n"
               "  -i, --interface IF        CAN interface to serve (e.g. vcan0)\n"
               "  -n, --nodes LIST          extended node ids: ids and ranges, e.g. 1-3,7\n"
               "  -l, --legacy              also simulate one legacy node (id 0, the application\n"
               "                            note's ISP: DLC-0 replies, silent on failure)\n"
               "  -d, --flash-dir DIR       node N's flash is the raw 128 KiB file DIR/nodeN.bin\n"
               "                            (offset 0 = FE:0000); created erased, ISP area\n"
               "                            patterned, if missing; written back on SIGUSR1, at\n"
               "                            exit, on REBOOT, on a power cut and --writeback-delay\n"
               "                            after the last erase/program\n"
               "  -b, --bitrate BPS         bus bitrate of the timing model (default %u);\n"
               "                            0 turns the timing model off: no bus, flash or\n"
               "                            handling time, replies go out at once\n"
               "      --rx-depth N          frames a node's receive buffer holds, its INFO\n"
               "                            receive depth, 1-255 (default %u)\n"
               "      --erase-time T        time to erase one 512-byte sector (default 5ms)\n"
               "      --program-time T      time to program one byte (default 6us)\n"
               "      --crc-time T          time to CRC one byte (default 3us)\n"
               "      --handle-time T       time to take any request frame in (default 10us)\n"
               "      --writeback-delay T   write a node's flash file back this long after its\n"
               "                            last erase/program (default 100ms; 0: at once)\n"
               "      --app-crc-time T      time a started application's helper takes for its\n"
               "                            image CRC; IDENTITY waits for it (default 50ms)\n"
               "  -f, --fault ID:FAULT[,FAULT...]\n"
               "                            inject faults into node ID (repeatable):\n"
               "                              drop-every=N     lose every Nth request received\n"
               "                              drop-rate=P      lose a random fraction P (0-1 or\n"
               "                                               N%%) of the requests received\n"
               "                              power-cut=N      cut the power while the node\n"
               "                                               handles its Nth request (its\n"
               "                                               reply is lost), once\n"
               "                              restart-delay=T  power returns T later (default\n"
               "                                               1s); the node boots as after a\n"
               "                                               real power-up\n"
               "                              rx-depth=N       this node's receive buffer depth\n"
               "                              dead             never answers, never announces\n"
               "                              duplicate        a second node with the same id\n"
               "                                               (flash DIR/nodeN-dup.bin)\n"
               "                              app              runs its application at start\n"
               "                                               (with the duplicate: both do)\n"
               "                              no-helper        its application has no helper:\n"
               "                                               answers neither IDENTIFY nor\n"
               "                                               ENTER_ISP\n"
               "                              boot-fail        an application its ISP starts\n"
               "                                               does not come up: 50 ms later\n"
               "                                               the node is back in ISP and\n"
               "                                               announces\n"
               "                              app-version=N    the application version its\n"
               "                                               helper reports in ABOUT\n"
               "                                               (0-4294967295, default 0)\n"
               "                              no-echo          ISP firmware from before ECHO:\n"
               "                                               CRC and ERASE replies do not\n"
               "                                               repeat the request's offset\n"
               "  -s, --seed N              seed for random drops (default %u)\n"
               "  -q, --quiet               no log line per command and per fault\n"
               "  -h, --help                show this help\n"
               "      --version             show the version\n"
               "\n"
               "T is a duration with a unit: ns, us, ms or s (e.g. 5ms, 1.5s).\n"
               "Once listening it prints \"stcisp-sim: N nodes on IF ready\" on stderr.\n"
               "SIGINT and SIGTERM end it (flash written back), SIGUSR1 writes flash back.\n",
               SIM_DEFAULT_BITRATE, SIM_DEFAULT_RX_DEPTH, SIM_DEFAULT_SEED);
}

enum {
        ARG_RX_DEPTH = 0x100,
        ARG_ERASE_TIME,
        ARG_PROGRAM_TIME,
        ARG_CRC_TIME,
        ARG_HANDLE_TIME,
        ARG_WRITEBACK_DELAY,
        ARG_APP_CRC_TIME,
        ARG_VERSION,
};

static int usage_error(const char *format, ...) _printf_(1, 2);
static int usage_error(const char *format, ...) {
        char line[512];
        va_list ap;

        va_start(ap, format);
        (void) vsnprintf(line, sizeof(line), format, ap);
        va_end(ap);
        fprintf(stderr, "stcisp-sim: %s\nTry 'stcisp-sim --help' for more information.\n", line);
        return -EINVAL;
}

int sim_parse_argv(int argc, char *argv[], SimConfig *config) {
        static const struct option options[] = {
                { "interface",       required_argument, NULL, 'i' },
                { "nodes",           required_argument, NULL, 'n' },
                { "legacy",          no_argument,       NULL, 'l' },
                { "flash-dir",       required_argument, NULL, 'd' },
                { "bitrate",         required_argument, NULL, 'b' },
                { "seed",            required_argument, NULL, 's' },
                { "fault",           required_argument, NULL, 'f' },
                { "quiet",           no_argument,       NULL, 'q' },
                { "help",            no_argument,       NULL, 'h' },
                { "rx-depth",        required_argument, NULL, ARG_RX_DEPTH },
                { "erase-time",      required_argument, NULL, ARG_ERASE_TIME },
                { "program-time",    required_argument, NULL, ARG_PROGRAM_TIME },
                { "crc-time",        required_argument, NULL, ARG_CRC_TIME },
                { "handle-time",     required_argument, NULL, ARG_HANDLE_TIME },
                { "writeback-delay", required_argument, NULL, ARG_WRITEBACK_DELAY },
                { "app-crc-time",    required_argument, NULL, ARG_APP_CRC_TIME },
                { "version",         no_argument,       NULL, ARG_VERSION },
                {}
        };
        bool faulted[256] = {}, any_node = false;
        char err[256];
        uint64_t v;
        int c, r;

        sim_config_defaults(config);

        /* getopt keeps state across calls (tests call us more than once) */
        optind = 0;
        opterr = 0;
        while ((c = getopt_long(argc, argv, ":i:n:ld:b:s:f:qh", options, NULL)) >= 0) {
                switch (c) {
                case 'i':
                        if (strlen(optarg) == 0 || strlen(optarg) >= IFNAMSIZ)
                                return usage_error("--interface: '%s' is not an interface name", optarg);
                        config->interface = optarg;
                        break;
                case 'n':
                        r = sim_parse_node_list(optarg, config->node, err, sizeof(err));
                        if (r < 0)
                                return usage_error("--nodes %s: %s", optarg, err);
                        break;
                case 'l':
                        config->node[0] = true;
                        break;
                case 'd':
                        if (strlen(optarg) == 0)
                                return usage_error("--flash-dir: empty path");
                        config->flash_dir = optarg;
                        break;
                case 'b':
                        r = sim_parse_uint(optarg, 0, 1000000, &v, err, sizeof(err));
                        if (r < 0)
                                return usage_error("--bitrate: %s (bit/s; classical CAN goes up to 1000000)", err);
                        if (v > 0 && v < 1000)
                                return usage_error("--bitrate: %" PRIu64 " bit/s is too slow to model (0 or 1000-1000000)", v);
                        config->timing.bitrate = (uint32_t) v;
                        break;
                case 's':
                        r = sim_parse_uint(optarg, 0, UINT64_MAX, &config->seed, err, sizeof(err));
                        if (r < 0)
                                return usage_error("--seed: %s", err);
                        break;
                case 'f':
                        r = sim_parse_fault(optarg, config->fault, err, sizeof(err));
                        if (r < 0)
                                return usage_error("--fault %s: %s", optarg, err);
                        faulted[r] = true;
                        break;
                case 'q':
                        config->quiet = true;
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("stcisp-sim " SIM_VERSION "\n");
                        return 0;
                case ARG_RX_DEPTH:
                        r = sim_parse_uint(optarg, 1, 255, &v, err, sizeof(err));
                        if (r < 0)
                                return usage_error("--rx-depth: %s", err);
                        config->rx_depth = (uint8_t) v;
                        break;
                case ARG_ERASE_TIME:
                case ARG_PROGRAM_TIME:
                case ARG_CRC_TIME:
                case ARG_HANDLE_TIME:
                case ARG_WRITEBACK_DELAY:
                case ARG_APP_CRC_TIME: {
                        static const char *const names[] = {
                                "--erase-time", "--program-time", "--crc-time", "--handle-time", "--writeback-delay",
                                "--app-crc-time",
                        };
                        uint64_t *const fields[] = {
                                &config->timing.erase_sector, &config->timing.program_byte,
                                &config->timing.crc_byte, &config->timing.handle_frame,
                                &config->timing.writeback_delay, &config->timing.app_crc,
                        };

                        r = sim_parse_duration(optarg, fields[c - ARG_ERASE_TIME], err, sizeof(err));
                        if (r < 0)
                                return usage_error("%s: %s", names[c - ARG_ERASE_TIME], err);
                        break;
                }
                case ':':
                        return usage_error("%s needs an argument", argv[optind - 1]);
                case '?':
                default:
                        if (optopt)
                                return usage_error("unknown option -%c", optopt);
                        return usage_error("unknown option %s", argv[optind - 1]);
                }
        }

        if (optind < argc)
                return usage_error("unexpected argument '%s'", argv[optind]);
        if (!config->interface)
                return usage_error("--interface is missing");
        if (!config->flash_dir)
                return usage_error("--flash-dir is missing");
        for (unsigned id = 0; id < 255; id++)
                any_node = any_node || config->node[id];
        if (!any_node)
                return usage_error("no nodes: give --nodes LIST and/or --legacy");

        for (unsigned id = 0; id < 255; id++) {
                const SimFault *f = &config->fault[id];

                if (!faulted[id])
                        continue;
                if (!config->node[id])
                        return id == 0 ? usage_error("--fault 0:...: node 0 is the legacy node: add --legacy")
                                       : usage_error("--fault %u:...: node %u is not in --nodes", id, id);
                if (f->dead && (f->application || f->no_helper || f->boot_fail))
                        return usage_error("--fault %u: dead and %s exclude each other", id,
                                           f->application ? "app" : f->no_helper ? "no-helper" : "boot-fail");
                if (f->restart_delay_set && f->power_cut_after == 0)
                        return usage_error("--fault %u: restart-delay needs power-cut=N", id);
        }
        for (unsigned id = 0; id < 255; id++)
                if (!config->fault[id].restart_delay_set) {
                        config->fault[id].restart_delay = SIM_DEFAULT_RESTART_DELAY;
                        config->fault[id].restart_delay_set = true;
                }

        return 1;
}
