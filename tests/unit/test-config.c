/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "config.h"

static char tmpdir[] = "/tmp/test-config-XXXXXX";
static unsigned n_files;

/* Each test writes its files here; removed in teardown. */
static int setup_dir(void **state) {
        return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state) {
        char path[512];

        for (unsigned i = 0; i < n_files; i++) {
                snprintf(path, sizeof(path), "%s/%u.conf", tmpdir, i);
                (void) unlink(path);
        }
        return rmdir(tmpdir);
}

static char *write_conf(const char *text, size_t len) {
        char *path;
        FILE *f;

        assert_true(asprintf(&path, "%s/%u.conf", tmpdir, n_files++) > 0);
        f = fopen(path, "we");
        assert_non_null(f);
        assert_int_equal(fwrite(text, 1, len, f), len);
        assert_int_equal(fclose(f), 0);
        return path;
}

/* Replaces every `from` in `s` with `to`, in a new string. */
static char *replace_all(const char *s, const char *from, const char *to) {
        size_t n = 0, lf = strlen(from), lt = strlen(to);
        char *out, *o;

        for (const char *p = s; (p = strstr(p, from)); p += lf)
                n++;
        out = malloc(strlen(s) + n * lt + 1);
        assert_non_null(out);
        o = out;
        for (const char *p = s, *q; *p; p = q + lf) {
                q = strstr(p, from);
                if (!q) {
                        strcpy(o, p);
                        return out;
                }
                memcpy(o, p, (size_t) (q - p));
                o += q - p;
                memcpy(o, to, lt);
                o += lt;
        }
        *o = '\0';
        return out;
}

/*
 * config_load() with fd 2 redirected to a file. Returns its result and,
 * in *ret_err, what it printed: the file's path replaced by "FILE" and the
 * "<N>" priority prefixes journald reads taken off each line.
 */
static int load_captured(struct config *c, const char *path, bool must_exist, char **ret_err) {
        char buf[16384], *out = buf;
        int saved, fd, r;
        ssize_t n;

        fflush(stderr);
        fd = open(tmpdir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        saved = dup(STDERR_FILENO);
        assert_true(saved >= 0);
        assert_true(dup2(fd, STDERR_FILENO) >= 0);

        r = config_load(c, path, must_exist);

        fflush(stderr);
        assert_true(dup2(saved, STDERR_FILENO) >= 0);
        close(saved);
        n = pread(fd, buf, sizeof(buf) - 1, 0);
        assert_true(n >= 0);
        buf[n] = '\0';
        close(fd);

        /* Drop "<3>" at the start of each line. */
        for (char *in = buf; *in; ) {
                if (in[0] == '<' && in[1] >= '0' && in[1] <= '7' && in[2] == '>')
                        in += 3;
                while (*in && *in != '\n')
                        *out++ = *in++;
                if (*in == '\n')
                        *out++ = *in++;
        }
        *out = '\0';

        *ret_err = replace_all(buf, path, "FILE");
        return r;
}

static int load_text(struct config *c, const char *text, char **ret_err) {
        char *path = write_conf(text, strlen(text));
        int r = load_captured(c, path, true, ret_err);

        free(path);
        return r;
}

static void assert_defaults(const struct config *c) {
        assert_string_equal(c->interface, "can0");
        assert_int_equal(c->bitrate, 0);
        assert_int_equal(c->restart_ms, 0);
        assert_string_equal(c->flash_group, "stcisp");
        assert_string_equal(c->state_dir, "/var/lib/stcispd");
        assert_int_equal(c->history, 100);
        assert_int_equal(c->session.timeout_ms, 500);
        assert_int_equal(c->session.erase_timeout_ms, 50);
        assert_int_equal(c->session.retries, 3);
        assert_int_equal(c->session.window, 8);
        assert_int_equal(c->session.discover_ms, 300);
        assert_int_equal(c->session.boot_timeout_ms, 5000);
        assert_true(c->session.verify);
        assert_true(c->session.reboot);
        assert_int_equal(c->n_names, 0);
        assert_int_equal(c->n_groups, 0);
}

static void test_defaults(void **state) {
        struct config c;

        assert_int_equal(config_init(&c), 0);
        assert_defaults(&c);
        assert_int_equal(config_lookup_name(&c, "pump"), -ENOENT);
        assert_null(config_node_name(&c, 3));
        assert_null(config_node_name(&c, 0));
        config_done(&c);
        config_done(&c);  /* twice is fine */
}

/* Several interfaces, each with its own bitrate where one is given. */
static void test_lines(void **state) {
        struct config_line *lines = NULL;
        unsigned n = 0;
        struct config c;
        char *err;

        assert_int_equal(config_init(&c), 0);
        assert_int_equal(config_get_lines(&c, &lines, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(lines[0].interface, "can0");
        config_lines_free(lines, n);

        assert_int_equal(load_text(&c,
                "[Bus]\n"
                "Interface=can0   can1\tvcan2 # three lines\n"
                "Bitrate=500000\n"
                "Bitrate.can1=250000\n"
                "RestartMs.vcan2=100\n"
                "[Daemon]\n"
                "MaxAttempts=5\n", &err), 0);
        assert_string_equal(err, "");
        free(err);
        assert_string_equal(c.interface, "can0 can1 vcan2");
        assert_int_equal(c.max_attempts, 5);
        assert_int_equal(config_get_lines(&c, &lines, &n), 0);
        assert_int_equal(n, 3);
        assert_string_equal(lines[0].interface, "can0");
        assert_int_equal(lines[0].bitrate, 500000);
        assert_int_equal(lines[0].restart_ms, 0);
        assert_string_equal(lines[1].interface, "can1");
        assert_int_equal(lines[1].bitrate, 250000);
        assert_string_equal(lines[2].interface, "vcan2");
        assert_int_equal(lines[2].bitrate, 500000);
        assert_int_equal(lines[2].restart_ms, 100);
        config_lines_free(lines, n);

        /* --interface replaces the list; an override of a line not used is ignored */
        assert_int_equal(config_set_interfaces(&c, (char *[]) { "vcan0", "can1" }, 2), 0);
        assert_string_equal(c.interface, "vcan0 can1");
        assert_int_equal(config_get_lines(&c, &lines, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(lines[0].bitrate, 500000);
        assert_int_equal(lines[1].bitrate, 250000);
        config_lines_free(lines, n);
        assert_int_equal(config_set_interfaces(&c, (char *[]) { "vcan0", "vcan0" }, 2), -EINVAL);
        assert_int_equal(config_set_interfaces(&c, (char *[]) { "a/b" }, 1), -EINVAL);
        assert_string_equal(c.interface, "vcan0 can1");

        assert_int_equal(load_text(&c, "[Bus]\nInterface=can0 can0\n", &err), -EINVAL);
        assert_string_equal(err, "FILE:2: Interface=can0 can0: can0 is named twice\n");
        free(err);
        assert_int_equal(load_text(&c, "[Bus]\nBitrate.can1=12\n", &err), -EINVAL);
        assert_string_equal(err, "FILE:2: Bitrate.can1=12: out of range, expected 0 (leave the interface as it is) "
                                 "or 10000-1000000 bit/s\n");
        free(err);
        assert_int_equal(load_text(&c, "[Bus]\nInterface=can0 bad/name\n", &err), -EINVAL);
        assert_string_equal(err, "FILE:2: Interface=bad/name: expected a network interface name, "
                                 "1-15 characters without '/' or ':'\n");
        free(err);
        assert_int_equal(load_text(&c, "[Daemon]\nMaxAttempts=0\n", &err), -EINVAL);
        assert_string_equal(err, "FILE:2: MaxAttempts=0: out of range, expected 1-1000 starts\n");
        free(err);
        config_done(&c);
}

static void test_every_key(void **state) {
        struct config c;
        char *err;

        assert_int_equal(config_init(&c), 0);
        assert_int_equal(load_text(&c,
                "[Bus]\n"
                "Interface=vcan7\n"
                "Bitrate=125000\n"
                "RestartMs=250\n"
                "[Protocol]\n"
                "Timeout=1200\n"
                "EraseTimeout=0\n"
                "Retries=0\n"
                "Window=64\n"
                "DiscoverTime=10\n"
                "[Access]\n"
                "FlashGroup=plc-admins\n"
                "[Daemon]\n"
                "History=0\n"
                "[Nodes]\n"
                "pump = 3\n"
                "conveyor = 7\n"
                "old-board = legacy\n"
                "Z.9_x-y = 254\n"
                "a = 1\n", &err), 0);
        assert_string_equal(err, "");
        free(err);

        assert_string_equal(c.interface, "vcan7");
        assert_int_equal(c.bitrate, 125000);
        assert_int_equal(c.restart_ms, 250);
        assert_int_equal(c.session.timeout_ms, 1200);
        assert_int_equal(c.session.erase_timeout_ms, 0);
        assert_int_equal(c.session.retries, 0);
        assert_int_equal(c.session.window, 64);
        assert_int_equal(c.session.discover_ms, 10);
        assert_string_equal(c.flash_group, "plc-admins");
        assert_int_equal(c.history, 0);
        /* Not in the file: untouched. */
        assert_string_equal(c.state_dir, "/var/lib/stcispd");
        assert_true(c.session.verify);
        assert_true(c.session.reboot);

        assert_int_equal(c.n_names, 5);
        assert_int_equal(config_lookup_name(&c, "pump"), 3);
        assert_int_equal(config_lookup_name(&c, "conveyor"), 7);
        assert_int_equal(config_lookup_name(&c, "old-board"), 0);
        assert_int_equal(config_lookup_name(&c, "Z.9_x-y"), 254);
        assert_int_equal(config_lookup_name(&c, "a"), 1);
        config_done(&c);
}

static void test_range_limits(void **state) {
        struct config c;
        char *err;

        /* The other end of every range. */
        assert_int_equal(config_init(&c), 0);
        assert_int_equal(load_text(&c,
                "[Bus]\nBitrate=10000\nRestartMs=60000\n"
                "[Protocol]\nTimeout=10\nEraseTimeout=60000\nRetries=20\nWindow=1\nDiscoverTime=60000\n"
                "[Daemon]\nHistory=100000\n", &err), 0);
        assert_string_equal(err, "");
        free(err);
        assert_int_equal(c.bitrate, 10000);
        assert_int_equal(c.restart_ms, 60000);
        assert_int_equal(c.session.timeout_ms, 10);
        assert_int_equal(c.session.erase_timeout_ms, 60000);
        assert_int_equal(c.session.retries, 20);
        assert_int_equal(c.session.window, 1);
        assert_int_equal(c.session.discover_ms, 60000);
        assert_int_equal(c.history, 100000);

        assert_int_equal(load_text(&c,
                "[Bus]\nBitrate=1000000\nRestartMs=1\n[Protocol]\nTimeout=60000\nDiscoverTime=10\n", &err), 0);
        assert_string_equal(err, "");
        free(err);
        assert_int_equal(c.bitrate, 1000000);
        assert_int_equal(c.restart_ms, 1);
        assert_int_equal(c.session.timeout_ms, 60000);
        assert_int_equal(load_text(&c, "[Bus]\nBitrate=0\n", &err), 0);
        free(err);
        assert_int_equal(c.bitrate, 0);
        config_done(&c);
}

/* A key given twice is an error naming both lines, even in another
 * section of the same name; the file is not used. */
static void test_key_given_twice(void **state) {
        struct config c;
        char *err;

        assert_int_equal(config_init(&c), 0);
        assert_int_equal(load_text(&c, "[Bus]\nBitrate=250000\n[Protocol]\nTimeout=800\n"
                                       "[Bus]\nBitrate=500000\n", &err), -EINVAL);
        assert_string_equal(err, "FILE:6: Bitrate=500000: Bitrate= is already given on line 2; give each key once\n");
        free(err);
        assert_int_equal(c.bitrate, 0);         /* nothing of the file is used */
        /* the same key in two sections is two keys */
        assert_int_equal(load_text(&c, "[Protocol]\nTimeout=800\nRetries=5\n[Daemon]\nHistory=5\n", &err), 0);
        free(err);
        config_done(&c);
}

static void test_comments_and_layout(void **state) {
        static const char text[] =
                "\xEF\xBB\xBF# a byte order mark, then a comment\r\n"
                "; another comment\n"
                "\n"
                "   [Bus]   \n"
                "\tInterface = can1   # inline comment\n"
                "  Bitrate=250000 ; inline comment\n"
                "# RestartMs=1\n"
                "RestartMs=40\r\n"
                "[Protocol]\n"
                "Timeout=700#not a comment without a space before it\n"
                "Retries=4\n"
                "  Window=2\n"  /* indented: not a continuation of Retries */
                "[Nodes]\n"
                "   spaced-name   =   9   # comment\n";
        struct config c;
        char *err;

        assert_int_equal(config_init(&c), 0);
        /* "700#not..." is a bad number: '#' starts a comment only after a space. */
        assert_int_equal(load_text(&c, text, &err), -EINVAL);
        assert_string_equal(err,
                "FILE:10: Timeout=700#not a comment without a space before it: not a number, expected 10-60000 ms\n");
        free(err);
        assert_defaults(&c);

        char *fixed = replace_all(text, "700#not", "700 #not");
        assert_int_equal(load_text(&c, fixed, &err), 0);
        free(fixed);
        assert_string_equal(err, "");
        free(err);
        assert_string_equal(c.interface, "can1");
        assert_int_equal(c.bitrate, 250000);
        assert_int_equal(c.restart_ms, 40);
        assert_int_equal(c.session.timeout_ms, 700);
        assert_int_equal(c.session.retries, 4);
        assert_int_equal(c.session.window, 2);
        assert_int_equal(config_lookup_name(&c, "spaced-name"), 9);
        config_done(&c);
}

struct bad {
        const char *text;
        const char *message;    /* everything printed, FILE for the path */
};

static const struct bad bad_files[] = {
        /* Numbers */
        { "[Bus]\nBitrate=12\n",
          "FILE:2: Bitrate=12: out of range, expected 0 (leave the interface as it is) or 10000-1000000 bit/s\n" },
        { "[Bus]\nBitrate=9999\n",
          "FILE:2: Bitrate=9999: out of range, expected 0 (leave the interface as it is) or 10000-1000000 bit/s\n" },
        { "[Bus]\nBitrate=1000001\n",
          "FILE:2: Bitrate=1000001: out of range, expected 0 (leave the interface as it is) or 10000-1000000 bit/s\n" },
        { "[Bus]\nBitrate=99999999999999999999999\n",
          "FILE:2: Bitrate=99999999999999999999999: out of range, expected 0 (leave the interface as it is) or 10000-1000000 bit/s\n" },
        { "[Bus]\nBitrate=4294967296\n",
          "FILE:2: Bitrate=4294967296: out of range, expected 0 (leave the interface as it is) or 10000-1000000 bit/s\n" },
        { "[Bus]\nBitrate=-1\n",
          "FILE:2: Bitrate=-1: not a number, expected 0 (leave the interface as it is) or 10000-1000000 bit/s\n" },
        { "[Bus]\nBitrate=+500000\n",
          "FILE:2: Bitrate=+500000: not a number, expected 0 (leave the interface as it is) or 10000-1000000 bit/s\n" },
        { "[Bus]\nBitrate=0x7A120\n",
          "FILE:2: Bitrate=0x7A120: not a number, expected 0 (leave the interface as it is) or 10000-1000000 bit/s\n" },
        { "[Bus]\nBitrate=500k\n",
          "FILE:2: Bitrate=500k: not a number, expected 0 (leave the interface as it is) or 10000-1000000 bit/s\n" },
        { "[Bus]\nBitrate=\n",
          "FILE:2: Bitrate=: empty value; remove the line to use the default\n" },
        { "[Bus]\nRestartMs=60001\n",
          "FILE:2: RestartMs=60001: out of range, expected 0 (leave the interface as it is) or 1-60000 ms\n" },
        { "[Protocol]\nTimeout=9\n",
          "FILE:2: Timeout=9: out of range, expected 10-60000 ms\n" },
        { "[Protocol]\nTimeout=60001\n",
          "FILE:2: Timeout=60001: out of range, expected 10-60000 ms\n" },
        { "[Protocol]\nTimeout=0\n",
          "FILE:2: Timeout=0: out of range, expected 10-60000 ms\n" },
        { "[Protocol]\nTimeout=5s\n",
          "FILE:2: Timeout=5s: not a number, expected 10-60000 ms\n" },
        { "[Protocol]\nTimeout=1 000\n",
          "FILE:2: Timeout=1 000: not a number, expected 10-60000 ms\n" },
        { "[Protocol]\nEraseTimeout=60001\n",
          "FILE:2: EraseTimeout=60001: out of range, expected 0-60000 ms per sector\n" },
        { "[Protocol]\nRetries=21\n",
          "FILE:2: Retries=21: out of range, expected 0-20\n" },
        { "[Protocol]\nRetries=three\n",
          "FILE:2: Retries=three: not a number, expected 0-20\n" },
        { "[Protocol]\nWindow=0\n",
          "FILE:2: Window=0: out of range, expected 1-64 frames\n" },
        { "[Protocol]\nWindow=65\n",
          "FILE:2: Window=65: out of range, expected 1-64 frames\n" },
        { "[Protocol]\nDiscoverTime=9\n",
          "FILE:2: DiscoverTime=9: out of range, expected 10-60000 ms\n" },
        { "[Daemon]\nHistory=100001\n",
          "FILE:2: History=100001: out of range, expected 0-100000 jobs\n" },
        { "[Daemon]\nHistory=-0\n",
          "FILE:2: History=-0: not a number, expected 0-100000 jobs\n" },

        /* Strings */
        { "[Bus]\nInterface=can-interface-16\n",
          "FILE:2: Interface=can-interface-16: expected a network interface name, 1-15 characters without '/' or ':'\n" },
        { "[Bus]\nInterface=can/0\n",
          "FILE:2: Interface=can/0: expected a network interface name, 1-15 characters without '/' or ':'\n" },
        { "[Bus]\nInterface=..\n",
          "FILE:2: Interface=..: expected a network interface name, 1-15 characters without '/' or ':'\n" },
        { "[Bus]\nInterface=\n",
          "FILE:2: Interface=: empty value; remove the line to use the default\n" },
        { "[Access]\nFlashGroup=1000\n",
          "FILE:2: FlashGroup=1000: expected a group name, a letter or '_' then letters, digits, '_', '-' or '.', at most 32 characters\n" },
        { "[Access]\nFlashGroup=a group\n",
          "FILE:2: FlashGroup=a group: expected a group name, a letter or '_' then letters, digits, '_', '-' or '.', at most 32 characters\n" },
        { "[Access]\nFlashGroup=abcdefghijklmnopqrstuvwxyz0123456\n",
          "FILE:2: FlashGroup=abcdefghijklmnopqrstuvwxyz0123456: expected a group name, a letter or '_' then letters, digits, '_', '-' or '.', at most 32 characters\n" },

        /* Sections and keys */
        { "[Bus]\nBitRate=500000\n",
          "FILE:2: unknown key BitRate= in [Bus], expected Interface=, Bitrate= or RestartMs=\n" },
        { "[Protocol]\nTimeOut=100\n",
          "FILE:2: unknown key TimeOut= in [Protocol], expected Timeout=, EraseTimeout=, Retries=, Window=, DiscoverTime= or BootTimeout=\n" },
        { "[Access]\nGroup=wheel\n",
          "FILE:2: unknown key Group= in [Access], expected FlashGroup=\n" },
        { "[Daemon]\nHistory=1\nStateDirectory=/tmp\n",
          "FILE:3: unknown key StateDirectory= in [Daemon], expected History= or MaxAttempts=\n" },
        { "[Bus]\nInterface=can0\n[Busses]\nInterface=can1\nBitrate=1\n",
          "FILE:3: unknown section [Busses], expected [Bus], [Protocol], [Access], [Daemon], [Nodes] or [Groups]\n" },
        { "[bus]\nInterface=can1\n",
          "FILE:1: unknown section [bus], expected [Bus], [Protocol], [Access], [Daemon], [Nodes] or [Groups]\n" },
        { "# comment\nTimeout=100\n[Protocol]\n",
          "FILE:2: Timeout=100: outside a section, put it under [Bus], [Protocol], [Access], [Daemon], [Nodes] or [Groups]\n" },
        { "[Bus\nInterface=can1\n",
          "FILE:1: [Bus: missing ']' after the section name\n" },
        { "[Bus] [Protocol]\nInterface=can1\n",
          "FILE:1: [Bus] [Protocol]: text after ']'\n" },
        { "[Bus]\nInterface can1\n",
          "FILE:2: \"Interface can1\": expected Key=value, a [Section] or a comment\n" },
        { "[Bus]\nInterface: can1\n",
          "FILE:2: \"Interface: can1\": expected Key=value, a [Section] or a comment\n" },
        { "[Bus]\n= can1\n",
          "FILE:2: \"= can1\": missing key before '='\n" },
        { "[Bus]\nInter face=can1\n",
          "FILE:2: \"Inter face\": invalid key, expected letters, digits, '_', '-' or '.'\n" },
        { "[Nodes]\nold:board=3\n",
          "FILE:2: \"old:board\": invalid key, expected letters, digits, '_', '-' or '.'\n" },
        { "[Bus]\nInterface=can1\nfoo\n",
          "FILE:3: \"foo\": expected Key=value, a [Section] or a comment\n" },

        /* Nodes */
        { "[Nodes]\n3pump=3\n",
          "FILE:2: 3pump=3: invalid node name, expected a letter, then letters, digits, '_', '-' or '.'\n" },
        { "[Nodes]\n_pump=3\n",
          "FILE:2: _pump=3: invalid node name, expected a letter, then letters, digits, '_', '-' or '.'\n" },
        { "[Nodes]\n42=3\n",
          "FILE:2: 42=3: invalid node name, expected a letter, then letters, digits, '_', '-' or '.'\n" },
        { "[Nodes]\nnode3=3\n",
          "FILE:2: node3=3: node name \"node3\" is reserved, \"legacy\" and \"nodeN\" already name nodes\n" },
        { "[Nodes]\nNODE017=4\n",
          "FILE:2: NODE017=4: node name \"NODE017\" is reserved, \"legacy\" and \"nodeN\" already name nodes\n" },
        { "[Nodes]\nlegacy=legacy\n",
          "FILE:2: legacy=legacy: node name \"legacy\" is reserved, \"legacy\" and \"nodeN\" already name nodes\n" },
        { "[Nodes]\nLegacy=5\n",
          "FILE:2: Legacy=5: node name \"Legacy\" is reserved, \"legacy\" and \"nodeN\" already name nodes\n" },
        { "[Nodes]\nabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklm=5\n",
          "FILE:2: abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklm=5: node name longer than 64 characters\n" },
        { "[Nodes]\npump=0\n",
          "FILE:2: pump=0: expected a node id 1-254, legacy or uid:XXXXXXXX (the board's UID)\n" },
        { "[Nodes]\npump=255\n",
          "FILE:2: pump=255: expected a node id 1-254, legacy or uid:XXXXXXXX (the board's UID)\n" },
        { "[Nodes]\npump=-3\n",
          "FILE:2: pump=-3: expected a node id 1-254, legacy or uid:XXXXXXXX (the board's UID)\n" },
        { "[Nodes]\npump=node3\n",
          "FILE:2: pump=node3: expected a node id 1-254, legacy or uid:XXXXXXXX (the board's UID)\n" },
        { "[Nodes]\npump=LEGACY\n",
          "FILE:2: pump=LEGACY: expected a node id 1-254, legacy or uid:XXXXXXXX (the board's UID)\n" },
        { "[Nodes]\npump=\n",
          "FILE:2: pump=: expected a node id 1-254, legacy or uid:XXXXXXXX (the board's UID)\n" },
        { "[Nodes]\npump=3\nfan=4\npump=3\n",
          "FILE:4: pump=3: duplicate node name \"pump\", first given on line 2\n" },
        { "[Nodes]\npump=3\n\n# the same board\nwater-pump=3\n",
          "FILE:5: water-pump=3: node 3 is already named \"pump\" on line 2; a node has one name\n" },
        { "[Nodes]\nold=legacy\nolder=legacy\n",
          "FILE:3: older=legacy: node legacy is already named \"old\" on line 2; a node has one name\n" },

        /* Nodes named by UID */
        { "[Nodes]\npump=uid:A491706\n",
          "FILE:2: pump=uid:A491706: expected uid: and the board's UID, 8 hexadecimal digits as 'ispctl list' shows it\n" },
        { "[Nodes]\npump=uid:A4917069F\n",
          "FILE:2: pump=uid:A4917069F: expected uid: and the board's UID, 8 hexadecimal digits as 'ispctl list' shows it\n" },
        { "[Nodes]\npump=uid:G4917069\n",
          "FILE:2: pump=uid:G4917069: expected uid: and the board's UID, 8 hexadecimal digits as 'ispctl list' shows it\n" },
        { "[Nodes]\npump=uid:0xA49170\n",
          "FILE:2: pump=uid:0xA49170: expected uid: and the board's UID, 8 hexadecimal digits as 'ispctl list' shows it\n" },
        { "[Nodes]\npump=uid:\n",
          "FILE:2: pump=uid:: expected uid: and the board's UID, 8 hexadecimal digits as 'ispctl list' shows it\n" },
        { "[Nodes]\npump=UID:A4917069\n",
          "FILE:2: pump=UID:A4917069: expected a node id 1-254, legacy or uid:XXXXXXXX (the board's UID)\n" },
        { "[Nodes]\npump=A4917069\n",
          "FILE:2: pump=A4917069: expected a node id 1-254, legacy or uid:XXXXXXXX (the board's UID)\n" },
        { "[Nodes]\npump=uid:A4917069\nfan=3\ntank=uid:a4917069\n",
          "FILE:4: tank=uid:a4917069: board A4917069 is already named \"pump\" on line 2; a board has one name\n" },
        { "[Nodes]\npump=uid:A4917069\npump=3\n",
          "FILE:3: pump=3: duplicate node name \"pump\", first given on line 2\n" },
        { "[Nodes]\nnode7=uid:A4917069\n",
          "FILE:2: node7=uid:A4917069: node name \"node7\" is reserved, \"legacy\" and \"nodeN\" already name nodes\n" },

        /* Groups: names */
        { "[Groups]\n3pumps=3\n",
          "FILE:2: 3pumps=3: invalid group name, expected a letter, then letters, digits, '_', '-' or '.'\n" },
        { "[Groups]\nabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklm=5\n",
          "FILE:2: abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklm=5: group name longer than 64 characters\n" },
        { "[Groups]\nnode3=3 4\n",
          "FILE:2: node3=3 4: group name \"node3\" is reserved, \"legacy\" and \"nodeN\" already name nodes\n" },
        { "[Groups]\nlegacy=3 4\n",
          "FILE:2: legacy=3 4: group name \"legacy\" is reserved, \"legacy\" and \"nodeN\" already name nodes\n" },
        { "[Groups]\nall=3 4\n",
          "FILE:2: all=3 4: group name \"all\" is reserved, \"all\" already means every node\n" },
        { "[Groups]\nAll=3 4\n",
          "FILE:2: All=3 4: group name \"All\" is reserved, \"all\" already means every node\n" },
        { "[Groups]\npumps=3 4\nfans=5\npumps=6\n",
          "FILE:4: pumps=6: duplicate group name \"pumps\", first given on line 2\n" },
        { "[Nodes]\npump=3\n[Groups]\npump=3 4\n",
          "FILE:4: pump=3 4: \"pump\" is already a node name, given on line 2\n" },
        { "[Groups]\npumps=3 4\n[Nodes]\npumps=3\n",
          "FILE:4: pumps=3: \"pumps\" is already a group name, given on line 2\n" },
        { "[Groups]\npumps=\n",
          "FILE:2: pumps=: empty group, expected the nodes it holds, separated by spaces\n" },
        { "[Groups]\npumps=   # only a comment\n",
          "FILE:2: pumps=: empty group, expected the nodes it holds, separated by spaces\n" },

        /* Groups: members, checked once the whole file is read */
        { "[Groups]\npumps=pump 5\n",
          "FILE:2: pumps=pump 5: \"pump\" is not a node: expected a name from [Nodes], nodeN or N (N = 1-254), each optionally after INTERFACE/\n" },
        { "[Nodes]\nPump=3\n[Groups]\npumps=pump 5\n",
          "FILE:4: pumps=pump 5: \"pump\" is not a node: expected a name from [Nodes], nodeN or N (N = 1-254), each optionally after INTERFACE/\n" },
        { "[Groups]\npumps=5 all\n",
          "FILE:2: pumps=5 all: \"all\": a group cannot hold \"all\", name its nodes\n" },
        { "[Groups]\npumps=5 can1/all\n",
          "FILE:2: pumps=5 can1/all: \"can1/all\": a group cannot hold \"all\", name its nodes\n" },
        { "[Groups]\npumps=5 legacy\n",
          "FILE:2: pumps=5 legacy: \"legacy\" is the legacy node, which is flashed alone: it cannot be in a group\n" },
        { "[Groups]\npumps=can0/legacy 5\n",
          "FILE:2: pumps=can0/legacy 5: \"can0/legacy\" is the legacy node, which is flashed alone: it cannot be in a group\n" },
        { "[Nodes]\nold-board=legacy\n[Groups]\nboards=3 old-board\n",
          "FILE:4: boards=3 old-board: \"old-board\" is the legacy node, which is flashed alone: it cannot be in a group\n" },
        { "[Groups]\nleft=3 4\nall-pumps=left 5\n",
          "FILE:3: all-pumps=left 5: \"left\" is a group: a group holds nodes, not groups\n" },
        { "[Groups]\nloop=loop 5\n",
          "FILE:2: loop=loop 5: \"loop\" is a group: a group holds nodes, not groups\n" },
        { "[Groups]\npumps=node0 node255 0 300 3x\n",
          "FILE:2: pumps=node0 node255 0 300 3x: \"node0\": expected a node id 1-254\n"
          "FILE:2: pumps=node0 node255 0 300 3x: \"node255\": expected a node id 1-254\n"
          "FILE:2: pumps=node0 node255 0 300 3x: \"0\": expected a node id 1-254\n"
          "FILE:2: pumps=node0 node255 0 300 3x: \"300\": expected a node id 1-254\n"
          "FILE:2: pumps=node0 node255 0 300 3x: \"3x\": expected a node id 1-254\n" },
        { "[Groups]\npumps=NODE3 4\n",
          "FILE:2: pumps=NODE3 4: \"NODE3\" is not a node: expected a name from [Nodes], nodeN or N (N = 1-254), each optionally after INTERFACE/\n" },
        { "[Groups]\npumps=can-interface-16/node3 4\n",
          "FILE:2: pumps=can-interface-16/node3 4: \"can-interface-16/node3\": \"can-interface-16\" is not a network interface name\n" },
        { "[Groups]\npumps=/node3 4\n",
          "FILE:2: pumps=/node3 4: \"/node3\": \"\" is not a network interface name\n" },
        { "[Groups]\npumps=can0/ 4\n",
          "FILE:2: pumps=can0/ 4: \"can0/\" is not a node: expected a name from [Nodes], nodeN or N (N = 1-254), each optionally after INTERFACE/\n" },
        { "[Groups]\npumps=can0/can1/node3 4\n",
          "FILE:2: pumps=can0/can1/node3 4: \"can0/can1/node3\" is not a node: expected a name from [Nodes], nodeN or N (N = 1-254), each optionally after INTERFACE/\n" },
        { "[Groups]\npumps=4 5 4\n",
          "FILE:2: pumps=4 5 4: \"4\" is given twice: name each node once\n" },
        { "[Nodes]\npump=3\n[Groups]\npumps=pump 5 node3\n",
          "FILE:4: pumps=pump 5 node3: \"pump\" and \"node3\" both name node3: name each node once\n" },
        { "[Groups]\npumps=can1/3 5 can1/node3\n",
          "FILE:2: pumps=can1/3 5 can1/node3: \"can1/3\" and \"can1/node3\" both name can1/node3: name each node once\n" },
        { "[Nodes]\npump=uid:A4917069\n[Groups]\npumps=pump 5 pump\n",
          "FILE:4: pumps=pump 5 pump: \"pump\" is given twice: name each node once\n" },

        /* Every error in a file, each at its line. */
        { "[Bus]\n"
          "Bitrate=1\n"
          "[Bogus]\n"
          "Whatever=1\n"
          "[Protocol]\n"
          "Window=0   # comment\n"
          "Timeout=100\n"
          "[Nodes]\n"
          "node1=1\n"
          "ok=2\n"
          "ok=3\n",
          "FILE:2: Bitrate=1: out of range, expected 0 (leave the interface as it is) or 10000-1000000 bit/s\n"
          "FILE:3: unknown section [Bogus], expected [Bus], [Protocol], [Access], [Daemon], [Nodes] or [Groups]\n"
          "FILE:6: Window=0: out of range, expected 1-64 frames\n"
          "FILE:9: node1=1: node name \"node1\" is reserved, \"legacy\" and \"nodeN\" already name nodes\n"
          "FILE:11: ok=3: duplicate node name \"ok\", first given on line 10\n" },

        /* Groups' members last, each at its group's line, in the order of
         * the groups. */
        { "[Groups]\n"
          "first=fan 3\n"
          "second=1 all\n"
          "[Nodes]\n"
          "pump=3\n"
          "node2=2\n"
          "[Groups]\n"
          "third=pump 1 pump\n",
          "FILE:6: node2=2: node name \"node2\" is reserved, \"legacy\" and \"nodeN\" already name nodes\n"
          "FILE:2: first=fan 3: \"fan\" is not a node: expected a name from [Nodes], nodeN or N (N = 1-254), each optionally after INTERFACE/\n"
          "FILE:3: second=1 all: \"all\": a group cannot hold \"all\", name its nodes\n"
          "FILE:8: third=pump 1 pump: \"pump\" is given twice: name each node once\n" },
};

static void test_errors(void **state) {
        for (size_t i = 0; i < sizeof(bad_files) / sizeof(bad_files[0]); i++) {
                struct config c;
                char *err;
                int r;

                assert_int_equal(config_init(&c), 0);
                r = load_text(&c, bad_files[i].text, &err);
                if (r != -EINVAL || strcmp(err, bad_files[i].message) != 0)
                        print_error("file %zu:\n%s\nreturned %d, printed:\n%s", i, bad_files[i].text, r, err);
                assert_int_equal(r, -EINVAL);
                assert_string_equal(err, bad_files[i].message);
                free(err);
                /* A file with an error changes nothing, not even its good lines. */
                assert_defaults(&c);
                config_done(&c);
        }
}

static void test_long_line_and_nul(void **state) {
        char text[1024], *err, *path;
        struct config c;

        assert_int_equal(config_init(&c), 0);

        /* inih's line buffer is limited; an overlong line is one error at
         * its own line, and the lines after it still count. */
        snprintf(text, sizeof(text), "[Bus]\nInterface=%0500d\nBitrate=1\n", 0);
        assert_int_equal(load_text(&c, text, &err), -EINVAL);
        assert_non_null(strstr(err, "FILE:2: line too long, at most "));
        assert_non_null(strstr(err, "FILE:3: Bitrate=1: out of range"));
        free(err);

        /* A long comment is fine: comments are gone before inih sees the line. */
        snprintf(text, sizeof(text), "[Bus]\n# %0500d\nInterface=can2 # %0300d\n", 0, 0);
        assert_int_equal(load_text(&c, text, &err), 0);
        assert_string_equal(err, "");
        free(err);
        assert_string_equal(c.interface, "can2");

        static const char with_nul[] = "[Bus]\nInterface=can\0003\nBitrate=1\n";
        path = write_conf(with_nul, sizeof(with_nul) - 1);
        assert_int_equal(load_captured(&c, path, true, &err), -EINVAL);
        assert_string_equal(err,
                "FILE:2: NUL byte in the line; this is not a text file\n"
                "FILE:3: Bitrate=1: out of range, expected 0 (leave the interface as it is) or 10000-1000000 bit/s\n");
        free(err);
        free(path);
        assert_string_equal(c.interface, "can2");
        config_done(&c);
}

static void test_missing_file(void **state) {
        struct config c;
        char *path, *err;

        assert_true(asprintf(&path, "%s/does-not-exist.conf", tmpdir) > 0);
        assert_int_equal(config_init(&c), 0);

        assert_int_equal(load_captured(&c, path, false, &err), 0);
        assert_string_equal(err, "");
        free(err);
        assert_defaults(&c);

        assert_int_equal(load_captured(&c, path, true, &err), -ENOENT);
        assert_string_equal(err, "FILE: cannot open: No such file or directory\n");
        free(err);
        assert_defaults(&c);

        /* Only a missing file is tolerated, not one that cannot be read. */
        assert_int_equal(load_captured(&c, tmpdir, false, &err), -EISDIR);
        assert_string_equal(err, "FILE: cannot read: Is a directory\n");
        free(err);
        assert_defaults(&c);

        free(path);
        config_done(&c);
}

static void test_load_over(void **state) {
        struct config c;
        char *err;

        assert_int_equal(config_init(&c), 0);
        assert_int_equal(load_text(&c, "[Protocol]\nTimeout=100\n[Nodes]\npump=3\n", &err), 0);
        free(err);
        assert_int_equal(load_text(&c, "[Protocol]\nRetries=5\n[Nodes]\nfan=4\n", &err), 0);
        free(err);
        assert_int_equal(c.session.timeout_ms, 100);
        assert_int_equal(c.session.retries, 5);
        assert_int_equal(config_lookup_name(&c, "pump"), 3);
        assert_int_equal(config_lookup_name(&c, "fan"), 4);

        assert_int_equal(load_text(&c, "[Protocol]\nRetries=6\n[Nodes]\npump=9\n", &err), -EINVAL);
        assert_string_equal(err, "FILE:4: pump=9: duplicate node name \"pump\", given in an earlier file\n");
        free(err);
        assert_int_equal(load_text(&c, "[Nodes]\nwater=3\n", &err), -EINVAL);
        assert_string_equal(err,
                "FILE:2: water=3: node 3 is already named \"pump\" in an earlier file; a node has one name\n");
        free(err);
        assert_int_equal(c.session.retries, 5);
        assert_int_equal(c.n_names, 2);
        config_done(&c);
}

static void test_lookup(void **state) {
        struct config c;
        char *err;

        assert_int_equal(config_init(&c), 0);
        assert_int_equal(load_text(&c, "[Nodes]\npump=3\nold-board=legacy\nlast=254\n", &err), 0);
        free(err);

        assert_int_equal(config_lookup_name(&c, "pump"), 3);
        assert_int_equal(config_lookup_name(&c, "old-board"), 0);
        assert_int_equal(config_lookup_name(&c, "last"), 254);
        assert_int_equal(config_lookup_name(&c, "Pump"), -ENOENT);  /* names are case-sensitive */
        assert_int_equal(config_lookup_name(&c, "pum"), -ENOENT);
        assert_int_equal(config_lookup_name(&c, ""), -ENOENT);
        assert_int_equal(config_lookup_name(&c, NULL), -ENOENT);

        assert_string_equal(config_node_name(&c, 3), "pump");
        assert_string_equal(config_node_name(&c, 0), "old-board");
        assert_string_equal(config_node_name(&c, 254), "last");
        assert_null(config_node_name(&c, 4));
        assert_null(config_node_name(&c, 255));
        config_done(&c);
}

static void test_uid_names(void **state) {
        static const uint8_t pump_uid[4] = { 0xA4, 0x91, 0x70, 0x69 }, tank_uid[4] = { 0x00, 0xC0, 0xFF, 0xEE },
                             other_uid[4] = { 0xA4, 0x91, 0x70, 0x6A };
        const struct config_node_name *n;
        struct config c;
        char *err;

        assert_int_equal(config_init(&c), 0);
        /* A UID name and an id name may name different boards side by side,
         * and a UID name takes no id, not even the legacy node's. */
        assert_int_equal(load_text(&c,
                "[Nodes]\n"
                "pump = uid:a4917069\n"
                "tank = uid:00C0FFEE   # upper case\n"
                "fan = 3\n", &err), 0);
        assert_string_equal(err, "");
        free(err);

        n = config_find_name(&c, "pump");
        assert_non_null(n);
        assert_true(n->by_uid);
        assert_memory_equal(n->uid, pump_uid, 4);
        n = config_find_name(&c, "fan");
        assert_non_null(n);
        assert_false(n->by_uid);
        assert_int_equal(n->node, 3);
        assert_null(config_find_name(&c, "Pump"));
        assert_null(config_find_name(&c, NULL));

        assert_string_equal(config_uid_name(&c, pump_uid), "pump");
        assert_string_equal(config_uid_name(&c, tank_uid), "tank");
        assert_null(config_uid_name(&c, other_uid));
        /* UID names are no names of an id */
        assert_int_equal(config_lookup_name(&c, "pump"), -ENOENT);
        assert_int_equal(config_lookup_name(&c, "fan"), 3);
        assert_null(config_node_name(&c, 0));
        assert_string_equal(config_node_name(&c, 3), "fan");

        /* A later file: a board keeps one name across files too. */
        assert_int_equal(load_text(&c, "[Nodes]\nbig-pump=uid:A4917069\n", &err), -EINVAL);
        assert_string_equal(err,
                "FILE:2: big-pump=uid:A4917069: board A4917069 is already named \"pump\" in an earlier file; a board has one name\n");
        free(err);
        assert_int_equal(load_text(&c, "[Nodes]\nvalve=uid:A491706A\n", &err), 0);
        free(err);
        assert_string_equal(config_uid_name(&c, other_uid), "valve");
        assert_int_equal(c.n_names, 4);
        config_done(&c);
}

static void test_groups(void **state) {
        const struct config_group *g;
        struct config c;
        char *err;

        assert_int_equal(config_init(&c), 0);
        /* [Groups] before the [Nodes] it names; every target form. */
        assert_int_equal(load_text(&c,
                "[Groups]\n"
                "pumps = pump 5  can1/node7\tnode9 # four\n"
                "all-of-can1 = can1/pump can1/5 can1/tank\n"
                "one = tank\n"
                "[Nodes]\n"
                "pump = uid:A4917069\n"
                "tank = 12\n", &err), 0);
        assert_string_equal(err, "");
        free(err);

        assert_int_equal(c.n_groups, 3);
        g = config_find_group(&c, "pumps");
        assert_non_null(g);
        assert_string_equal(g->name, "pumps");
        assert_int_equal(g->n_members, 4);
        assert_string_equal(g->members[0], "pump");
        assert_string_equal(g->members[1], "5");
        assert_string_equal(g->members[2], "can1/node7");
        assert_string_equal(g->members[3], "node9");
        g = config_find_group(&c, "all-of-can1");
        assert_non_null(g);
        assert_int_equal(g->n_members, 3);
        assert_string_equal(g->members[2], "can1/tank");
        assert_int_equal(config_find_group(&c, "one")->n_members, 1);
        assert_null(config_find_group(&c, "Pumps"));
        assert_null(config_find_group(&c, "pump"));
        assert_null(config_find_group(&c, NULL));
        /* a group is no node name */
        assert_null(config_find_name(&c, "pumps"));

        /* A later file: its groups may name the earlier nodes; names stay
         * apart from groups across files. */
        assert_int_equal(load_text(&c, "[Groups]\nwet=pump tank\n", &err), 0);
        assert_string_equal(err, "");
        free(err);
        assert_int_equal(config_find_group(&c, "wet")->n_members, 2);
        assert_int_equal(load_text(&c, "[Nodes]\npumps=3\n", &err), -EINVAL);
        assert_string_equal(err, "FILE:2: pumps=3: \"pumps\" is already a group name, given in an earlier file\n");
        free(err);
        assert_int_equal(load_text(&c, "[Groups]\ntank=3 4\n", &err), -EINVAL);
        assert_string_equal(err, "FILE:2: tank=3 4: \"tank\" is already a node name, given in an earlier file\n");
        free(err);
        assert_int_equal(load_text(&c, "[Groups]\npumps=3 4\n", &err), -EINVAL);
        assert_string_equal(err, "FILE:2: pumps=3 4: duplicate group name \"pumps\", given in an earlier file\n");
        free(err);
        assert_int_equal(load_text(&c, "[Groups]\nmore=pumps 3\n", &err), -EINVAL);
        assert_string_equal(err, "FILE:2: more=pumps 3: \"pumps\" is a group: a group holds nodes, not groups\n");
        free(err);
        assert_int_equal(c.n_groups, 4);
        assert_int_equal(c.n_names, 2);
        config_done(&c);
}

/* "#Key=value", a capital right after the '#': a commented-out default.
 * The "#pump = 3" lines are examples, not defaults. */
static bool is_commented_default(const char *line) {
        const char *eq = strchr(line, '=');

        if (line[0] != '#' || !isupper((unsigned char) line[1]) || !eq)
                return false;
        for (const char *c = line + 1; c < eq; c++)
                if (!isalpha((unsigned char) *c))
                        return false;
        return true;
}

/* The installed example: it loads, and every "#Key=value" in it is the
 * real default, so uncommenting it changes nothing. */
static void test_example_file(void **state) {
        const char *example = getenv("STCISPD_CONF_EXAMPLE");
        char text[16384], out[16384], *o = out, *err, *path;
        struct config c;
        unsigned uncommented = 0;
        size_t n;
        FILE *f;

        if (!example)
                fail_msg("STCISPD_CONF_EXAMPLE is not set (meson sets it to daemon/stcispd.conf)");
        f = fopen(example, "re");
        assert_non_null(f);
        n = fread(text, 1, sizeof(text) - 1, f);
        fclose(f);
        text[n] = '\0';

        assert_int_equal(config_init(&c), 0);
        assert_int_equal(load_captured(&c, example, true, &err), 0);
        assert_string_equal(err, "");
        free(err);
        assert_defaults(&c);

        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
                if (is_commented_default(line)) {
                        line++;
                        uncommented++;
                }
                o += sprintf(o, "%s\n", line);
        }
        assert_int_equal(uncommented, 12);  /* every key */
        path = write_conf(out, strlen(out));
        assert_int_equal(load_captured(&c, path, true, &err), 0);
        assert_string_equal(err, "");
        free(err);
        free(path);
        assert_defaults(&c);
        config_done(&c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_every_key),
                cmocka_unit_test(test_lines),
                cmocka_unit_test(test_range_limits),
                cmocka_unit_test(test_key_given_twice),
                cmocka_unit_test(test_comments_and_layout),
                cmocka_unit_test(test_errors),
                cmocka_unit_test(test_long_line_and_nul),
                cmocka_unit_test(test_missing_file),
                cmocka_unit_test(test_load_over),
                cmocka_unit_test(test_lookup),
                cmocka_unit_test(test_uid_names),
                cmocka_unit_test(test_groups),
                cmocka_unit_test(test_example_file),
        };

        return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
