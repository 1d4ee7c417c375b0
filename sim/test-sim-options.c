/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sim-options.h"

static char err[256];

static void test_node_list(void **state) {
        bool ids[256] = {};

        assert_int_equal(sim_parse_node_list("1-3,7", ids, err, sizeof(err)), 0);
        for (unsigned i = 0; i < 256; i++)
                assert_int_equal(ids[i], i == 1 || i == 2 || i == 3 || i == 7);

        memset(ids, 0, sizeof(ids));
        assert_int_equal(sim_parse_node_list("254", ids, err, sizeof(err)), 0);
        assert_true(ids[254]);
        memset(ids, 0, sizeof(ids));
        assert_int_equal(sim_parse_node_list("1-254", ids, err, sizeof(err)), 0);
        assert_true(ids[1] && ids[254] && !ids[0] && !ids[255]);
        memset(ids, 0, sizeof(ids));
        assert_int_equal(sim_parse_node_list("5-5", ids, err, sizeof(err)), 0);
        assert_true(ids[5]);
}

static void test_node_list_errors(void **state) {
        static const char *const bad[] = {
                "", "0", "255", "1-255", "0-3", "3-1", "a", "1,", ",1", "1,,2", "1-", "-1",
                "1-3,2", "1 ,2", "+1", "0x10", "1-2-3", "99999999999999999999",
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                bool ids[256] = {};

                err[0] = '\0';
                if (sim_parse_node_list(bad[i], ids, err, sizeof(err)) != -EINVAL)
                        fail_msg("'%s' accepted", bad[i]);
                assert_true(strlen(err) > 0);
        }

        bool ids[256] = {};
        assert_int_equal(sim_parse_node_list("1-3,2", ids, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "node 2 is listed twice");
        assert_int_equal(sim_parse_node_list("300", ids, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "300 is out of range 1-254");
}

static void test_duration(void **state) {
        uint64_t v;

        assert_int_equal(sim_parse_duration("0", &v, err, sizeof(err)), 0);
        assert_int_equal(v, 0);
        assert_int_equal(sim_parse_duration("5ms", &v, err, sizeof(err)), 0);
        assert_int_equal(v, 5000000);
        assert_int_equal(sim_parse_duration("6us", &v, err, sizeof(err)), 0);
        assert_int_equal(v, 6000);
        assert_int_equal(sim_parse_duration("6.5us", &v, err, sizeof(err)), 0);
        assert_int_equal(v, 6500);
        assert_int_equal(sim_parse_duration("1.5s", &v, err, sizeof(err)), 0);
        assert_int_equal(v, 1500000000);
        assert_int_equal(sim_parse_duration("250ns", &v, err, sizeof(err)), 0);
        assert_int_equal(v, 250);
        assert_int_equal(sim_parse_duration("0ms", &v, err, sizeof(err)), 0);
        assert_int_equal(v, 0);

        assert_int_equal(sim_parse_duration("5", &v, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "'5' needs a unit: ns, us, ms or s (e.g. 5ms)");
        assert_int_equal(sim_parse_duration("ms", &v, err, sizeof(err)), -EINVAL);
        assert_int_equal(sim_parse_duration("-1ms", &v, err, sizeof(err)), -EINVAL);
        assert_int_equal(sim_parse_duration("1.ms", &v, err, sizeof(err)), -EINVAL);
        assert_int_equal(sim_parse_duration("1 ms", &v, err, sizeof(err)), -EINVAL);
        assert_int_equal(sim_parse_duration("1min", &v, err, sizeof(err)), -EINVAL);
        assert_int_equal(sim_parse_duration("99999999999999s", &v, err, sizeof(err)), -EINVAL);
}

static void test_fraction(void **state) {
        double v;

        assert_int_equal(sim_parse_fraction("0.25", &v, err, sizeof(err)), 0);
        assert_true(v == 0.25);
        assert_int_equal(sim_parse_fraction("10%", &v, err, sizeof(err)), 0);
        assert_true(v == 0.1);
        assert_int_equal(sim_parse_fraction("1", &v, err, sizeof(err)), 0);
        assert_true(v == 1.0);
        assert_int_equal(sim_parse_fraction("0", &v, err, sizeof(err)), 0);
        assert_true(v == 0.0);

        assert_int_equal(sim_parse_fraction("1.5", &v, err, sizeof(err)), -EINVAL);
        assert_int_equal(sim_parse_fraction("150%", &v, err, sizeof(err)), -EINVAL);
        assert_int_equal(sim_parse_fraction("-0.1", &v, err, sizeof(err)), -EINVAL);
        assert_int_equal(sim_parse_fraction("nan", &v, err, sizeof(err)), -EINVAL);
        assert_int_equal(sim_parse_fraction("0.1x", &v, err, sizeof(err)), -EINVAL);
        assert_int_equal(sim_parse_fraction("", &v, err, sizeof(err)), -EINVAL);
        assert_int_equal(sim_parse_fraction("%", &v, err, sizeof(err)), -EINVAL);
}

static void test_fault(void **state) {
        SimFault faults[256] = {};

        assert_int_equal(sim_parse_fault("3:drop-every=5", faults, err, sizeof(err)), 3);
        assert_int_equal(faults[3].drop_every, 5);

        /* repeatable, merged */
        assert_int_equal(sim_parse_fault("3:drop-rate=0.1,power-cut=40,restart-delay=250ms", faults, err, sizeof(err)), 3);
        assert_int_equal(faults[3].drop_every, 5);
        assert_true(faults[3].drop_rate == 0.1);
        assert_int_equal(faults[3].power_cut_after, 40);
        assert_true(faults[3].restart_delay_set);
        assert_int_equal(faults[3].restart_delay, 250000000);

        assert_int_equal(sim_parse_fault("7:dead", faults, err, sizeof(err)), 7);
        assert_true(faults[7].dead);
        assert_int_equal(sim_parse_fault("8:duplicate,app,rx-depth=2", faults, err, sizeof(err)), 8);
        assert_true(faults[8].duplicate);
        assert_true(faults[8].application);
        assert_int_equal(faults[8].rx_depth, 2);
        assert_int_equal(sim_parse_fault("0:app", faults, err, sizeof(err)), 0);
        assert_true(faults[0].application);

        /* the application's faults */
        assert_int_equal(sim_parse_fault("9:no-helper", faults, err, sizeof(err)), 9);
        assert_true(faults[9].no_helper);
        assert_false(faults[9].boot_fail);
        assert_int_equal(sim_parse_fault("9:boot-fail,app-version=65538", faults, err, sizeof(err)), 9);
        assert_true(faults[9].no_helper);
        assert_true(faults[9].boot_fail);
        assert_int_equal(faults[9].app_version, 65538);
        assert_int_equal(sim_parse_fault("9:app-version=4294967295", faults, err, sizeof(err)), 9);
        assert_int_equal(faults[9].app_version, UINT32_MAX);
        assert_int_equal(sim_parse_fault("9:app-version=0", faults, err, sizeof(err)), 9);
        assert_int_equal(faults[9].app_version, 0);
        assert_false(faults[8].no_helper);
        assert_int_equal(faults[8].app_version, 0);
}

static void test_fault_errors(void **state) {
        static const char *const bad[] = {
                "3", ":dead", "3:", "255:dead", "x:dead", "3:bogus", "3:dead=1", "3:drop-every",
                "3:drop-every=0", "3:drop-every=x", "3:drop-rate=2", "3:power-cut=0",
                "3:restart-delay=5", "3:rx-depth=0", "3:rx-depth=256", "3:dead,,app", "3:app=yes",
                "3:no-helper=1", "3:boot-fail=yes", "3:app-version", "3:app-version=4294967296",
                "3:app-version=-1", "3:app-version=0x10", "3:nohelper",
        };
        SimFault faults[256] = {};

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                err[0] = '\0';
                if (sim_parse_fault(bad[i], faults, err, sizeof(err)) >= 0)
                        fail_msg("'%s' accepted", bad[i]);
                assert_true(strlen(err) > 0);
        }

        /* all or nothing */
        assert_int_equal(sim_parse_fault("3:dead,bogus", faults, err, sizeof(err)), -EINVAL);
        assert_false(faults[3].dead);
        assert_string_equal(err, "unknown fault 'bogus' (known: drop-every=N, drop-rate=P, power-cut=N, "
                            "restart-delay=T, rx-depth=N, dead, duplicate, app, no-helper, boot-fail, "
                            "app-version=N, no-echo)");
        assert_int_equal(sim_parse_fault("3:boot-fail,app-version=x", faults, err, sizeof(err)), -EINVAL);
        assert_false(faults[3].boot_fail);
        assert_string_equal(err, "app-version: 'x' is not a decimal number");
}

/* Run the parser on a NULL-terminated argument list, with stdout and
 * stderr silenced. */
#define parse(config, ...) parse_args(config, __VA_ARGS__, (char *) NULL)
static int parse_args(SimConfig *config, ...) {
        char *argv[32];
        va_list ap;
        int argc = 1, saved_out, saved_err, null, r;

        va_start(ap, config);
        argv[0] = (char *) "stcisp-sim";
        while ((argv[argc] = va_arg(ap, char *)))
                assert_true(++argc < 31);
        va_end(ap);

        fflush(stdout);
        fflush(stderr);
        saved_out = dup(STDOUT_FILENO);
        saved_err = dup(STDERR_FILENO);
        null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        assert_true(saved_out >= 0 && saved_err >= 0 && null >= 0);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);

        r = sim_parse_argv(argc, argv, config);

        fflush(stdout);
        fflush(stderr);
        dup2(saved_out, STDOUT_FILENO);
        dup2(saved_err, STDERR_FILENO);
        close(saved_out);
        close(saved_err);
        close(null);
        return r;
}

static void test_argv(void **state) {
        SimConfig c;

        assert_int_equal(parse(&c, "--interface", "vcan0", "--nodes", "1-3,7", "--flash-dir", "/tmp/f"), 1);
        assert_string_equal(c.interface, "vcan0");
        assert_string_equal(c.flash_dir, "/tmp/f");
        assert_true(c.node[1] && c.node[2] && c.node[3] && c.node[7] && !c.node[0] && !c.node[4]);
        assert_int_equal(c.timing.bitrate, 500000);
        assert_int_equal(c.timing.erase_sector, 5000000);
        assert_int_equal(c.timing.program_byte, 6000);
        assert_int_equal(c.timing.crc_byte, 3000);
        assert_int_equal(c.timing.handle_frame, 10000);
        assert_int_equal(c.timing.writeback_delay, 100000000);
        assert_int_equal(c.timing.app_crc, 50000000);
        assert_int_equal(c.rx_depth, 4);
        assert_int_equal(c.seed, 1);
        assert_false(c.quiet);
        assert_int_equal(c.fault[3].restart_delay, 1000000000);

        assert_int_equal(parse(&c, "-i", "can1", "-l", "-d", "d", "--bitrate", "0", "--seed", "42",
                               "--rx-depth", "16", "--erase-time", "4ms", "--program-time", "7.5us",
                               "--crc-time", "1us", "--handle-time", "0", "--writeback-delay", "0",
                               "--app-crc-time", "1.5s", "--quiet", "-f", "0:app"), 1);
        assert_true(c.node[0]);
        assert_int_equal(c.timing.bitrate, 0);
        assert_int_equal(c.seed, 42);
        assert_int_equal(c.rx_depth, 16);
        assert_int_equal(c.timing.erase_sector, 4000000);
        assert_int_equal(c.timing.program_byte, 7500);
        assert_int_equal(c.timing.crc_byte, 1000);
        assert_int_equal(c.timing.handle_frame, 0);
        assert_int_equal(c.timing.writeback_delay, 0);
        assert_int_equal(c.timing.app_crc, 1500000000);
        assert_true(c.quiet);
        assert_true(c.fault[0].application);

        assert_int_equal(parse(&c, "--interface=vcan0", "--nodes=5", "--flash-dir=x",
                               "--fault", "5:power-cut=3", "--fault", "5:restart-delay=20ms",
                               "--fault=5:drop-every=2"), 1);
        assert_int_equal(c.fault[5].power_cut_after, 3);
        assert_int_equal(c.fault[5].restart_delay, 20000000);
        assert_int_equal(c.fault[5].drop_every, 2);

        assert_int_equal(parse(&c, "--help"), 0);
        assert_int_equal(parse(&c, "-h"), 0);
        assert_int_equal(parse(&c, "--version"), 0);
}

static void test_argv_errors(void **state) {
        SimConfig c;

        /* missing pieces */
        assert_int_equal(parse_args(&c, (char *) NULL), -EINVAL);
        assert_int_equal(parse(&c, "--nodes", "1", "--flash-dir", "d"), -EINVAL);
        assert_int_equal(parse(&c, "--interface", "vcan0", "--nodes", "1"), -EINVAL);
        assert_int_equal(parse(&c, "--interface", "vcan0", "--flash-dir", "d"), -EINVAL);
        /* bad values */
        assert_int_equal(parse(&c, "-i", "vcan0", "-d", "d", "--nodes"), -EINVAL);
        assert_int_equal(parse(&c, "-i", "vcan0", "-d", "d", "--nodes", "0"), -EINVAL);
        assert_int_equal(parse(&c, "-i", "an-interface-name-too-long", "-d", "d", "--nodes", "1"), -EINVAL);
        assert_int_equal(parse(&c, "-i", "vcan0", "-d", "d", "-n", "1", "--bitrate", "2000000"), -EINVAL);
        assert_int_equal(parse(&c, "-i", "vcan0", "-d", "d", "-n", "1", "--bitrate", "500"), -EINVAL);
        assert_int_equal(parse(&c, "-i", "vcan0", "-d", "d", "-n", "1", "--bitrate", "fast"), -EINVAL);
        assert_int_equal(parse(&c, "-i", "vcan0", "-d", "d", "-n", "1", "--seed", "-1"), -EINVAL);
        assert_int_equal(parse(&c, "-i", "vcan0", "-d", "d", "-n", "1", "--rx-depth", "0"), -EINVAL);
        assert_int_equal(parse(&c, "-i", "vcan0", "-d", "d", "-n", "1", "--erase-time", "5"), -EINVAL);
        /* faults for nodes that are not there, contradictions */
        assert_int_equal(parse(&c, "-i", "vcan0", "-d", "d", "-n", "1", "--fault", "2:dead"), -EINVAL);
        assert_int_equal(parse(&c, "-i", "vcan0", "-d", "d", "-n", "1", "--fault", "0:dead"), -EINVAL);
        assert_int_equal(parse(&c, "-i", "vcan0", "-d", "d", "-n", "1", "--fault", "1:dead,app"), -EINVAL);
        assert_int_equal(parse(&c, "-i", "vcan0", "-d", "d", "-n", "1", "--fault", "1:dead,no-helper"), -EINVAL);
        assert_int_equal(parse(&c, "-i", "vcan0", "-d", "d", "-n", "1", "--fault", "1:boot-fail",
                               "--fault", "1:dead"), -EINVAL);
        assert_int_equal(parse(&c, "-i", "vcan0", "-d", "d", "-n", "1", "--app-crc-time", "50"), -EINVAL);
        assert_int_equal(parse(&c, "-i", "vcan0", "-d", "d", "-n", "1", "--fault", "1:no-helper,boot-fail,app",
                               "--fault", "1:app-version=7"), 1);
        assert_true(c.fault[1].no_helper && c.fault[1].boot_fail && c.fault[1].application);
        assert_int_equal(c.fault[1].app_version, 7);
        assert_int_equal(parse(&c, "-i", "vcan0", "-d", "d", "-n", "1", "--fault", "1:restart-delay=1s"), -EINVAL);
        /* unknown options and stray arguments */
        assert_int_equal(parse(&c, "-i", "vcan0", "-d", "d", "-n", "1", "--bogus"), -EINVAL);
        assert_int_equal(parse(&c, "-i", "vcan0", "-d", "d", "-n", "1", "-x"), -EINVAL);
        assert_int_equal(parse(&c, "-i", "vcan0", "-d", "d", "-n", "1", "extra"), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_node_list),
                cmocka_unit_test(test_node_list_errors),
                cmocka_unit_test(test_duration),
                cmocka_unit_test(test_fraction),
                cmocka_unit_test(test_fault),
                cmocka_unit_test(test_fault_errors),
                cmocka_unit_test(test_argv),
                cmocka_unit_test(test_argv_errors),
        };

        return cmocka_run_group_tests_name("sim-options", tests, NULL, NULL);
}
