#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""ispctl against mock-stcispd, a stand-in for the daemon on a private
dbus-daemon: the verbs and options of issue 10 (verify, read, flash
--dry-run/--force/--require-boot/--canary, the new Nodes and ListNodesEx
fields), their lines, JSON and exit statuses, from the documented API
(docs/dbus-api.md) alone. What the real daemon does on a real bus is the
integration suite's; what each canned node answers is in mock-stcispd.c."""

import json
import os
import pty
import select
import signal
import stat
import subprocess
import tempfile
import time
import unittest
import zlib

ISPCTL = os.environ.get("ISPCTL", "ispctl")
MOCK = os.environ.get("MOCK_STCISPD", "mock-stcispd")

# docs/protocol.md 12.1: crc32 0x5907571D
APP_HEX = (":03000000021234B5\n:0812340075810712001080FE15\n:0200000400FEFC\n"
           ":04010000AABBCCDDED\n:00000001FF\n")

NODE_KEYS = ["boot", "bytes_done", "bytes_total", "differing", "error", "estimate_usec", "id", "interface", "job_id",
             "name", "outcome", "phase", "repairs", "sectors_skipped", "sectors_to_erase", "sectors_written", "state"]


class Mock(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        d = cls.dir = cls.tmp.name
        cls.address = f"unix:path={d}/bus"
        cls.log = f"{d}/calls.log"
        cls.bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--nopidfile", "--address=" + cls.address],
                                   stdout=subprocess.DEVNULL)
        for _ in range(100):
            if os.path.exists(f"{d}/bus"):
                break
            time.sleep(0.05)
        cls.mock = subprocess.Popen([MOCK, cls.address], stdout=subprocess.PIPE, text=True,
                                    env=dict(os.environ, MOCK_LOG=cls.log))
        assert cls.mock.stdout.readline() == "ready\n", "mock-stcispd did not start"
        cls.app = f"{d}/app.hex"
        with open(cls.app, "w") as f:
            f.write(APP_HEX)

    @classmethod
    def tearDownClass(cls):
        cls.mock.terminate()
        cls.mock.wait()
        cls.bus.terminate()
        cls.bus.wait()
        cls.tmp.cleanup()

    def setUp(self):
        open(self.log, "w").close()
        self.work = tempfile.mkdtemp(dir=self.dir)

    def env(self, **extra):
        """The tests' own terminal settings never reach ispctl."""
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR", "SYSTEMD_COLORS", "TERM")}
        return dict(env, **extra)

    def ispctl(self, *args, address=None, **env):
        return subprocess.run([ISPCTL, "--address=" + (address or self.address), *args], capture_output=True,
                              text=True, timeout=60, env=self.env(**env))

    def ispctl_pty(self, *args, status=0, **env):
        """ispctl with its stdout on a pseudo-terminal of 80 columns."""
        master, slave = pty.openpty()
        p = subprocess.Popen([ISPCTL, "--address=" + self.address, *args], stdout=slave, stderr=subprocess.PIPE,
                             env=self.env(TERM="xterm", **env))
        os.close(slave)
        out = b""
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            if not ready:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:         # EIO: the other end is closed
                break
            if not chunk:
                break
            out += chunk
        os.close(master)
        self.assertEqual(p.wait(timeout=30), status, p.stderr.read())
        p.stderr.close()
        return out.decode().replace("\r\n", "\n")

    def assert_fits(self, text, columns=80):
        for line in text.splitlines():
            self.assertLessEqual(len(line), columns, text)

    def json_of(self, p):
        """stdout must be exactly one JSON object and nothing else."""
        self.assertEqual(len(p.stdout.splitlines()), 1, p.stdout + p.stderr)
        return json.loads(p.stdout)

    def calls(self):
        with open(self.log) as f:
            return f.read().splitlines()

    # ---- list, scan, status ----

    def test_list(self):
        p = self.ispctl("list")
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.splitlines()
        # the versions are left to status and --json: the rows fit 80 columns
        self.assertEqual(lines[0], "ID  NAME     FORM     STATE         UID            RUNNING LAST SEEN  LAST FLASH")
        self.assertRegex(lines[1], r"^1   node1    extended application   01020304       app\.he… +\S+ ago +succeeded$")
        # the long failure and the two UIDs are cut, the columns stay put
        self.assertRegex(lines[2], r"^3   node3    extended conflict      A4917069,5D0C… -       +\S+ ago +failed: n…$")
        self.assertRegex(lines[3], r"^5   the-pum… extended application   01AABBCC       image … ")
        self.assertEqual(lines[4], "0   legacy   legacy   not-answering -              -       never      -")
        self.assertEqual(lines[-2:], ["", "4 nodes listed."])
        self.assert_fits(p.stdout)
        # a wider terminal gets more of each cell, but never the whole 300 characters
        p = self.ispctl("list", COLUMNS="200")
        self.assertIn(" app.hex, flashed 2026-12-01 10:02 ", p.stdout)
        self.assertIn(" the-pump-in-the-basemen… ", p.stdout)
        self.assertIn(" failed: node3 did not answer CONNECT wi…\n", p.stdout)
        self.assert_fits(p.stdout, 200)
        # whole in --json
        o = self.json_of(self.ispctl("--json", "list"))
        self.assertTrue([n for n in o["nodes"] if n["id"] == 3][0]["last_flash_result"].endswith("scan' again"))

    def test_list_legend_quiet(self):
        full = self.ispctl("list").stdout.splitlines()
        for opt in ("--no-legend", "-q", "--quiet"):
            p = self.ispctl("list", opt)
            self.assertEqual((p.returncode, p.stdout.splitlines()), (0, full[1:5]), opt)

    def test_jobs(self):
        p = self.ispctl("jobs")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.splitlines(), [
            "ID    KIND    TARGET       STATE      PHASE     PROGRESS      ERROR",
            "7     flash   node1        running    program   4096/16384",
            "8     flash   node3        failed     connect   -             node3 did not ans…",
            "9     reboot  the-pump-in… queued     -         -",
            "",
            "3 jobs listed."])
        self.assert_fits(p.stdout)
        for opt in ("--no-legend", "-q"):
            p = self.ispctl("jobs", opt)
            self.assertEqual(p.stdout.splitlines(), self.ispctl("jobs").stdout.splitlines()[1:4], opt)
        o = self.json_of(self.ispctl("--json", "jobs"))
        self.assertTrue(o["jobs"][1]["error"].endswith("run 'ispctl scan' again"))
        self.assertGreater(len(o["jobs"][1]["error"]), 250)

    # ---- options, help, colour ----

    def test_live_display_fits(self):
        """On a terminal the lines are redrawn in place: none may wrap."""
        sgr = __import__("re").compile("\033\\[[0-9;]*[A-Za-z]")
        out = self.ispctl_pty("flash", "node1,node2", "node3", "node7", self.app, status=3, COLUMNS="40")
        self.assertIn("node3      \033[0;1;31mfailed: node3 did not answe…\033[0m\n", out)
        for line in sgr.sub("", out).split("\n"):
            self.assertLessEqual(len(line.lstrip("\r")), 60, out)
            if line.startswith("\r"):
                self.assertLessEqual(len(line.lstrip("\r")), 39, out)
        out = self.ispctl_pty("flash", "node1,node2", "node3", "node7", self.app, status=3, COLUMNS="40",
                              NO_COLOR="1")
        self.assertNotIn("\033[0;1;", out)
        self.assertIn("\rnode3      failed: node3 did not answe…\n", out.replace("\033[K", ""))

    def test_flash_legend_quiet(self):
        p = self.ispctl("flash", "--no-legend", "node1,node2", "node3", "node7", self.app)
        self.assertEqual(p.returncode, 3, p.stdout + p.stderr)
        self.assertEqual(p.stdout.splitlines(), [
            "node1: succeeded (boot confirmed)",
            "node2: up-to-date",
            "node3: failed: node3 did not answer CONNECT within 1000 ms",
            "node7: not-started",
            "",
            "node1      succeeded         5       1       0 confirmed",
            "node2      up-to-date        0       6       0 -",
            "node3      failed            0       0       0 -",
            "node7      not-started       0       0       0 -"])
        p = self.ispctl("-q", "flash", "node1,node2", "node3", "node7", self.app)
        self.assertEqual(p.returncode, 3, p.stdout + p.stderr)
        self.assertEqual(p.stdout.splitlines(), [
            "node1: succeeded (boot confirmed)",
            "node2: up-to-date",
            "node3: failed: node3 did not answer CONNECT within 1000 ms",
            "node7: not-started"])
        for opt in ("--no-legend", "--quiet"):
            p = self.ispctl("verify", opt, "node1,node2", self.app)
            self.assertEqual((p.returncode, p.stdout.splitlines()), (8, [
                "node1: matches", "node2: differs: 3 sectors (FE:0200 FE:0400 FF:1000)"]), opt)

    def test_json_modes(self):
        short = self.ispctl("--json", "jobs")
        self.assertEqual(self.ispctl("--json=short", "jobs").stdout, short.stdout)
        p = self.ispctl("--json=pretty", "jobs")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertGreater(len(p.stdout.splitlines()), 10, p.stdout)
        self.assertEqual(json.loads(p.stdout), json.loads(short.stdout))
        self.assertIn('\n  "jobs": [\n', p.stdout)
        # after the command too, and for errors
        p = self.ispctl("jobs", "--json=pretty", address=f"unix:path={self.work}/none")
        self.assertEqual(p.returncode, 6, p.stderr)
        self.assertIn("error", json.loads(p.stdout))
        p = self.ispctl("--json=bogus", "list")
        self.assertEqual(p.returncode, 2)
        self.assertEqual(p.stderr, "ispctl: --json takes short or pretty, not 'bogus' (see 'ispctl --help')\n")
        self.assertEqual(json.loads(p.stdout)["error"], p.stderr.strip())

    def test_version(self):
        p = self.ispctl("--version")
        self.assertRegex(p.stdout, r"^ispctl \S+\n$")
        version = p.stdout.split()[1]
        for args in (["--version", "--json"], ["--json", "--version"], ["--json=short", "--version"]):
            p = self.ispctl(*args)
            self.assertEqual((p.returncode, p.stdout), (0, '{"version":"%s"}\n' % version), args)
        p = self.ispctl("--json=pretty", "--version")
        self.assertEqual(p.stdout, '{\n  "version": "%s"\n}\n' % version)

    def test_unknown_options(self):
        for args, message in ((["--frobnicate", "list"], "unknown option '--frobnicate'"),
                              (["list", "--frobnicate=3"], "unknown option '--frobnicate'"),
                              (["-z", "list"], "unknown option '-z'"),
                              (["list", "--version=1"], "option '--version' takes no argument"),
                              (["list", "-H"], "missing argument for option '-H'"),
                              (["flash", "node1", self.app, "--canary"], "missing argument for option '--canary'")):
            p = self.ispctl(*args)
            self.assertEqual((p.returncode, p.stdout, p.stderr),
                             (2, "", f"ispctl: {message} (see 'ispctl --help')\n"), args)
        p = self.ispctl("--json", "-z", "list")
        self.assertEqual(json.loads(p.stdout), {"error": "ispctl: unknown option '-z' (see 'ispctl --help')"})

    def test_help(self):
        p = self.ispctl("help")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, self.ispctl("--help").stdout)
        self.assertTrue(p.stdout.startswith("Usage: ispctl [OPTIONS...] COMMAND ...\n"))
        self.assertIn("  help [COMMAND]        Show this help, or that command's own\n", p.stdout)
        flash = self.ispctl("help", "flash")
        self.assertEqual(flash.returncode, 0, flash.stderr)
        self.assertTrue(flash.stdout.startswith("Usage: ispctl flash [OPTIONS...] TARGET... FILE\n"), flash.stdout)
        self.assertIn("     --canary N ", flash.stdout)
        self.assertIn("\nExample:\n  ispctl flash node3,node4 app.hex\n", flash.stdout)
        self.assertNotIn("Commands:", flash.stdout)
        for args in (["flash", "--help"], ["flash", "node1", "-h"], ["--help", "flash"]):
            p = self.ispctl(*args)
            self.assertEqual((p.returncode, p.stdout), (0, flash.stdout), args)
        self.assertEqual(self.calls(), [])
        p = self.ispctl("help", "list")
        self.assertTrue(p.stdout.startswith("Usage: ispctl list [OPTIONS...]\n"), p.stdout)
        self.assertIn("--no-legend", p.stdout)
        for args in (["help", "nosuch"], ["nosuch", "--help"]):
            p = self.ispctl(*args)
            self.assertEqual((p.returncode, p.stdout, p.stderr),
                             (2, "", "ispctl: unknown command 'nosuch' (see 'ispctl --help')\n"), args)

    def test_colour(self):
        RED, GREEN, YELLOW, NORMAL = "\033[0;1;31m", "\033[0;1;32m", "\033[0;1;33m", "\033[0m"
        out = self.ispctl_pty("list")
        self.assertIn(f" {GREEN}application{NORMAL}   01020304 ", out)
        self.assertIn(f" {RED}conflict{NORMAL}      A4917069", out)
        self.assertIn(f" {RED}not-answering{NORMAL} ", out)
        self.assertIn(f" {GREEN}succeeded{NORMAL}\n", out)
        # the padding is on the visible width: the columns stay put
        plain = self.ispctl("list").stdout
        self.assertEqual(out.replace(RED, "").replace(GREEN, "").replace(NORMAL, ""), plain)
        out = self.ispctl_pty("jobs")
        self.assertIn(f" {YELLOW}running{NORMAL}    program ", out)
        self.assertIn(f" {RED}failed{NORMAL}     connect ", out)
        # none with NO_COLOR (any value), SYSTEMD_COLORS=0, in a pipe, in JSON
        for env in ({"NO_COLOR": "1"}, {"NO_COLOR": ""}, {"SYSTEMD_COLORS": "0"}, {"SYSTEMD_COLORS": "false"}):
            out = self.ispctl_pty("list", **env)
            self.assertNotIn("\033[", out, env)
            self.assertEqual(out, plain, env)
        self.assertNotIn("\033[", plain)
        self.assertNotIn("\033[", self.ispctl_pty("--json", "list"))
        self.assertIn(f"        State: {RED}conflict{NORMAL}\n", self.ispctl_pty("status", "node3"))
        self.assertIn("        State: conflict\n", self.ispctl_pty("status", "node3", NO_COLOR="yes"))
        # the summaries of flash and verify
        out = self.ispctl_pty("flash", "node1,node7", self.app, status=3)
        self.assertIn(f"node1      {GREEN}succeeded{NORMAL}         5       1       0 {GREEN}confirmed{NORMAL}\n", out)
        self.assertIn(f"node7      {YELLOW}not-started{NORMAL}       0       0       0 -\n", out)
        out = self.ispctl_pty("verify", "node1,node2", self.app, status=8)
        self.assertIn(f"node2      {RED}differs: 3 sectors", out)
        # a pipe can ask for it, as with systemd
        self.assertIn(RED, self.ispctl("list", SYSTEMD_COLORS="1").stdout)

    def test_list_json(self):
        o = self.json_of(self.ispctl("--json", "list"))
        by_id = {n["id"]: n for n in o["nodes"]}
        self.assertEqual((by_id[1]["image_crc"], by_id[1]["app_version"], by_id[1]["last_flash_name"],
                          by_id[1]["running"], by_id[1]["conflict_uids"]),
                         (0x5907571D, 0x00010002, "app.hex", "app.hex, flashed 2026-12-01 10:02", []))
        self.assertEqual((by_id[3]["state"], by_id[3]["conflict_uids"]), ("conflict", ["A4917069", "5D0C33E1"]))
        self.assertEqual((by_id[0]["image_crc"], by_id[0]["running"], by_id[0]["last_flash_name"]), (None, None, None))

    def test_status_node(self):
        p = self.ispctl("status", "node3")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("        State: conflict\n"
                      "     Conflict: two boards answer on this id: UIDs A4917069 and 5D0C33E1\n", p.stdout)
        p = self.ispctl("status", "node5")
        self.assertIn("      Running: app.hex, flashed 2026-12-01 10:02 (image 1C291CA3)\n", p.stdout)
        self.assertIn("  App version: 0x00010002\n", p.stdout)
        self.assertRegex(p.stdout, r"   Last flash: succeeded, 2026-12-01 .*, app\.hex\n")
        o = self.json_of(self.ispctl("--json", "status", "node3"))
        self.assertEqual((o["state"], o["conflict_uids"], o["image_crc"]), ("conflict", ["A4917069", "5D0C33E1"], 0))

    # ---- flash ----

    def test_flash_one_node(self):
        p = self.ispctl("flash", "node1", self.app)
        self.assertEqual((p.returncode, p.stdout), (0, "node1: succeeded (boot confirmed)\n"), p.stderr)
        # one target: the call itself checks it (a group name is one too)
        self.assertEqual(self.calls(), ["Flash node1 format=hex name=app.hex reboot=true verify=true"])
        p = self.ispctl("flash", "node2", self.app)
        self.assertEqual((p.returncode, p.stdout), (0, "node2: up-to-date\n"), p.stderr)
        p = self.ispctl("flash", "--no-reboot", "node4", self.app)
        self.assertEqual((p.returncode, p.stdout), (0, "node4: succeeded\n"), p.stderr)

    def test_flash_several_nodes(self):
        p = self.ispctl("flash", "node1,node2", "node3", "node7", self.app)
        self.assertEqual(p.returncode, 3, p.stdout + p.stderr)
        self.assertEqual(p.stdout.splitlines(), [
            "node1: succeeded (boot confirmed)",
            "node2: up-to-date",
            "node3: failed: node3 did not answer CONNECT within 1000 ms",
            "node7: not-started",
            "",
            "NODE       RESULT      WRITTEN SKIPPED REPAIRS BOOT",
            "node1      succeeded         5       1       0 confirmed",
            "node2      up-to-date        0       6       0 -",
            "node3      failed            0       0       0 -",
            "node7      not-started       0       0       0 -",
            "4 nodes: 1 succeeded, 1 failed, 1 up-to-date, 1 not-started"])
        # without a rebooted node there is no BOOT column
        p = self.ispctl("flash", "--no-reboot", "node4,node2", self.app)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(p.stdout.splitlines()[-4:], ["NODE       RESULT      WRITTEN SKIPPED REPAIRS",
                                                      "node4      succeeded         3       0       0",
                                                      "node2      up-to-date        0       6       0",
                                                      "2 nodes: 1 succeeded, 0 failed, 1 up-to-date"])

    def test_flash_json(self):
        p = self.ispctl("--json", "flash", "node1,node7", self.app)
        self.assertEqual(p.returncode, 3, p.stdout + p.stderr)
        o = self.json_of(p)
        self.assertEqual(o["result"], "failed")
        for n in o["nodes"]:
            self.assertEqual(sorted(n), NODE_KEYS)
        self.assertEqual([(n["name"], n["state"], n["outcome"], n["boot"]) for n in o["nodes"]],
                         [("node1", "succeeded", "flashed", "confirmed"), ("node7", "cancelled", "not-started", None)])
        # a job of one node has its entry too
        o = self.json_of(self.ispctl("--json", "flash", "node2", self.app))
        self.assertEqual((o["result"], [n["outcome"] for n in o["nodes"]]), ("succeeded", ["up-to-date"]))

    def test_flash_dry_run(self):
        p = self.ispctl("flash", "--dry-run", "node1,node2", self.app)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(p.stdout.splitlines(), [
            "node1: would erase 12 sectors, write 5432 bytes (about 1.2 s)",
            "node2: up-to-date",
            "",
            "2 nodes: 1 would-flash, 0 failed, 1 up-to-date"])
        self.assertEqual(self.calls(), ["FlashNodes node1,node2 format=hex name=app.hex reboot=true verify=true "
                                        "dry-run=true"])
        o = self.json_of(self.ispctl("--json", "flash", "--dry-run", "node1", self.app))
        n = o["nodes"][0]
        self.assertEqual((n["outcome"], n["sectors_to_erase"], n["bytes_total"], n["estimate_usec"]),
                         ("would-flash", 12, 5432, 1234567))

    def test_flash_options(self):
        p = self.ispctl("flash", "--force", "--require-boot", "--canary", "1", "--full", "node1,node2", self.app)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(self.calls(), ["FlashNodes node1,node2 format=hex name=app.hex reboot=true verify=true "
                                        "full=true force=true require-boot=true canary=1"])
        for bad in ("x", "-1", "", "2x", "99999999999"):
            p = self.ispctl("flash", "--canary", bad, "node1,node2", self.app)
            self.assertEqual(p.returncode, 2, bad)
            self.assertIn(f"--canary takes a number of nodes, not '{bad}'", p.stderr)

    # ---- verify ----

    def test_verify(self):
        p = self.ispctl("verify", "node1", self.app)
        self.assertEqual((p.returncode, p.stdout), (0, "node1: matches\n"), p.stderr)
        self.assertEqual(self.calls(), ["Verify node1 format=hex name=app.hex"])

        p = self.ispctl("verify", "node1,node2", "node5", self.app)
        self.assertEqual(p.returncode, 8, p.stdout + p.stderr)
        self.assertEqual(p.stdout.splitlines(), [
            "node1: matches",
            "node2: differs: 3 sectors (FE:0200 FE:0400 FF:1000)",
            f"node5: differs: runs image 1C291CA3, {self.app} is 5907571D",
            "",
            "3 nodes: 1 matches, 2 differs, 0 failed"])

        p = self.ispctl("verify", "node2,node9", self.app)
        self.assertEqual(p.returncode, 3, p.stdout + p.stderr)
        self.assertIn("node9: failed: node9 answers neither its ISP nor IDENTIFY\n", p.stdout)

    def test_verify_json(self):
        p = self.ispctl("--json", "verify", "node1,node2", self.app)
        self.assertEqual(p.returncode, 8, p.stdout + p.stderr)
        o = self.json_of(p)
        self.assertEqual((o["result"], o["file"], o["crc32"]), ("differs", self.app, 0x5907571D))
        self.assertEqual([(n["name"], n["outcome"], n["differing"]) for n in o["nodes"]],
                         [("node1", "matches", []), ("node2", "differs", [0xFE0200, 0xFE0400, 0xFF1000])])
        o = self.json_of(self.ispctl("--json", "verify", "node1", self.app))
        self.assertEqual(o["result"], "matches")
        o = self.json_of(self.ispctl("--json", "verify", "node1,node9", self.app))
        self.assertEqual(o["result"], "failed")

    def test_verify_bad_image(self):
        bad = f"{self.work}/bad.hex"
        with open(bad, "w") as f:
            f.write(":03000000021234B6\n:00000001FF\n")
        p = self.ispctl("verify", "node1", bad)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn(f"{bad}:1: bad checksum", p.stderr)
        self.assertEqual(self.calls(), [])
        p = self.ispctl("verify", self.app)
        self.assertEqual(p.returncode, 2)
        self.assertIn("Usage: ispctl verify TARGET... FILE", p.stderr)

    # ---- read ----

    def assert_no_leftovers(self):
        self.assertEqual([f for f in os.listdir(self.work) if f.startswith(".#")], [])

    def test_read_hex(self):
        out = f"{self.work}/node3.hex"
        p = self.ispctl("read", "node3", out)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(p.stdout.splitlines(), ["node3: succeeded",
                                                 f"node3: read 3 sectors (15 bytes, image 5907571D) to {out}"])
        with open(out) as f:
            self.assertEqual(f.read(), APP_HEX)
        self.assertEqual(self.calls(), ["Read node3"])
        self.assert_no_leftovers()
        # a new file gets the mode a new file gets, not mkstemp's 0600
        umask = os.umask(0)
        os.umask(umask)
        self.assertEqual(stat.S_IMODE(os.stat(out).st_mode), 0o666 & ~umask)

    def test_read_bin(self):
        out = f"{self.work}/node4.bin"
        o = self.json_of(self.ispctl("--json", "read", "node4", out))
        self.assertEqual((o["result"], o["file"], o["format"], o["sectors"], o["bytes"]),
                         ("succeeded", out, "bin", 3, 7))
        with open(out, "rb") as f:
            data = f.read()
        # FE:0200 is in it: the > 64 KiB form, byte i at FE:0000 + i
        self.assertEqual(len(data), 0x12002)
        self.assertEqual(data[0x200:0x202], b"\xa5\x5a")
        self.assertEqual(data[0x10000:0x10003], b"\x02\x20\x00")
        self.assertEqual(data[0x12000:0x12002], b"\x74\x01")
        self.assertEqual(set(data[0x202:0x10000] + data[0x10003:0x12000]), {0xFF})
        node = bytearray(b"\xff" * 0x20000)
        node[0x200:0x202] = b"\xa5\x5a"
        node[0x11000:0x11003] = b"\x02\x20\x00"
        node[0x12000:0x12002] = b"\x74\x01"
        crc = zlib.crc32(bytes(node[:0x10000]) + bytes(node[0x11000:]))
        self.assertEqual(o["crc32"], crc)
        inspected = self.json_of(subprocess.run([ISPCTL, "--json", "inspect", out], capture_output=True, text=True))
        self.assertEqual((inspected["format"], inspected["crc32"]), ("bin", crc))

        # --format decides over the extension; the <= 64 KiB form
        out = f"{self.work}/node3.img.hex"
        p = self.ispctl("read", "--format", "bin", "node3", out)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        inspected = self.json_of(subprocess.run([ISPCTL, "--json", "inspect", "--format", "bin", out],
                                                capture_output=True, text=True))
        self.assertEqual(inspected["crc32"], 0x5907571D)
        self.assert_no_leftovers()

    def test_read_failed_job(self):
        out = f"{self.work}/old.hex"
        with open(out, "w") as f:
            f.write("what was there\n")
        p = self.ispctl("read", "node6", out)
        self.assertEqual(p.returncode, 3, p.stdout + p.stderr)
        self.assertEqual(p.stdout, "node6: failed: node6 holds no application: the entry at FF:1000 is FF FF FF\n")
        with open(out) as f:
            self.assertEqual(f.read(), "what was there\n")
        self.assert_no_leftovers()
        o = self.json_of(self.ispctl("--json", "read", "node6", out))
        self.assertEqual(o["result"], "failed")

    def test_read_unwritable(self):
        """FILE is checked before the daemon is asked: nothing is read
        from a node into a file that cannot be written."""
        blocker = f"{self.work}/a-file"
        open(blocker, "w").close()
        for out in (f"{self.work}/no/such/dir/x.hex", f"{blocker}/x.hex"):
            p = self.ispctl("read", "node3", out)
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            self.assertIn(f"{out}: cannot write: ", p.stderr)
            o = self.json_of(self.ispctl("--json", "read", "node3", out))
            self.assertEqual(o["file"], out)
            self.assertIn("cannot write", o["error"])
        p = self.ispctl("read", "node3", self.work)
        self.assertEqual(p.returncode, 1)
        self.assertIn(f"{self.work}: is a directory", p.stderr)
        self.assertEqual(self.calls(), [])
        # even without a daemon
        p = self.ispctl("read", "node3", f"{self.work}/no/x.hex", address=f"unix:path={self.work}/none")
        self.assertEqual(p.returncode, 1, p.stderr)

    def test_read_usage(self):
        out = f"{self.work}/x.hex"
        for args in (["read", "node3"], ["read", "node3,node4", out], ["read", "node3", "node4", out],
                     ["read", "--all", out], ["read", "--no-block", "node3", out], ["read", "node3", "-"],
                     ["read", "--format", "srec", "node3", out]):
            p = self.ispctl(*args)
            self.assertEqual(p.returncode, 2, args)
            self.assertEqual(p.stdout, "", args)
        p = self.ispctl("read", "node8", out)
        self.assertEqual(p.returncode, 4, p.stdout + p.stderr)
        self.assertFalse(os.path.exists(out))
        self.assertEqual(self.calls(), ["Read node8"])

    # ---- following: --timeout, wait, Ctrl-C, the daemon leaving (issue 11) ----

    def follow(self, *args, address=None):
        """ispctl in the background, once it follows: its first line (the
        job's phase) has come; with --json, which prints nothing before
        the end, once the job is queued and a moment more."""
        p = subprocess.Popen([ISPCTL, "--address=" + (address or self.address), *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait()))
        if "--json" not in args:
            return p, p.stdout.readline()
        for _ in range(100):
            if any(c.startswith("Flash") for c in self.calls()):
                break
            time.sleep(0.05)
        time.sleep(0.3)
        return p, ""

    def private_mock(self):
        """A bus and a mock of this test's own, to stop or disturb."""
        address = f"unix:path={self.work}/bus"
        bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--nopidfile", "--address=" + address],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: (bus.terminate(), bus.wait()))
        for _ in range(100):
            if os.path.exists(f"{self.work}/bus"):
                break
            time.sleep(0.05)
        mock = subprocess.Popen([MOCK, address], stdout=subprocess.PIPE, text=True, env=dict(os.environ, MOCK_LOG=self.log))
        self.addCleanup(lambda: (mock.terminate(), mock.wait(), mock.stdout.close()))
        self.assertEqual(mock.stdout.readline(), "ready\n")
        return address, mock

    def job_id(self, *args):
        p = self.ispctl("--no-block", *args)
        self.assertEqual(p.returncode, 0, p.stderr)
        return int(p.stdout.strip().rsplit("/", 1)[1])

    def last_job(self):
        """The id of the last job queued: the one before a new one."""
        return self.job_id("flash", "node1", self.app) - 1

    def test_timeout(self):
        t0 = time.monotonic()
        p = self.ispctl("--timeout", "1", "flash", "node10", self.app)
        self.assertLess(time.monotonic() - t0, 2.5)
        self.assertEqual((p.returncode, p.stdout), (9, "node10: program\n"), p.stderr)
        n = self.last_job()
        self.assertEqual(p.stderr, f"ispctl: timed out after 1s: job {n} is still running and goes on in the daemon "
                                   f"('ispctl cancel {n}' stops it)\n")
        # JSON: one object, the jobs as far as they got
        p = self.ispctl("--json", "--timeout", "300ms", "flash", "node10,node11", self.app)
        self.assertEqual(p.returncode, 9, p.stderr)
        o = self.json_of(p)
        self.assertEqual((o["result"], o["jobs"][0]["state"], [n["name"] for n in o["nodes"]]),
                         ("timeout", "running", ["node10", "node11"]))
        self.assertIn("timed out after 300ms: job ", o["error"])
        # a job that ends in time: as without --timeout
        p = self.ispctl("--timeout", "1min", "flash", "node1", self.app)
        self.assertEqual((p.returncode, p.stdout), (0, "node1: succeeded (boot confirmed)\n"), p.stderr)
        self.assertNotIn("CancelJob", " ".join(self.calls()))

    def test_phases_in_order(self):
        """A signal the daemon sent before the state ispctl read with GetAll
        is older than that state: the pipe's phase lines never go back."""
        p = self.ispctl("flash", "node6", self.app)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, "node6: erase\nnode6: succeeded\n")

    def test_timeout_queueing(self):
        """--timeout bounds the call that queues the job too: a daemon that
        never answers it does not hold ispctl for sd-bus's 25 s."""
        t0 = time.monotonic()
        p = self.ispctl("--timeout", "1", "flash", "stuck", self.app)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual((p.returncode, p.stdout), (9, ""), p.stderr)
        self.assertEqual(p.stderr, "Flashing stuck: --timeout 1s expired before stcispd answered; "
                                   "the request may still be carried out: 'ispctl jobs' shows the queue\n")

    def test_timeout_usage(self):
        for bad in ("0", "", "x", "1.5s", "-1", "10 s", "5sec2", "2mins", "1d", "99999999999999999999"):
            p = self.ispctl("--timeout", bad, "flash", "node1", self.app)
            self.assertEqual((p.returncode, p.stdout), (2, ""), bad)
            self.assertEqual(p.stderr, "ispctl: --timeout takes a time span more than 0 (30, 30s, 500ms, 2min, 1h), "
                                       f"not '{bad}'\n")
        p = self.ispctl("--timeout", "5s", "--no-block", "flash", "node1", self.app)
        self.assertEqual(p.returncode, 2)
        self.assertEqual(p.stderr, "ispctl: --timeout and --no-block do not go together: --no-block does not wait\n")
        p = self.ispctl("--timeout", "5s", "list")
        self.assertEqual(p.returncode, 2)
        self.assertEqual(p.stderr, "ispctl: --timeout is for the commands that wait for jobs "
                                   "(flash, verify, read, reboot, scan, wait), not 'list'\n")
        o = self.json_of(self.ispctl("--json", "--timeout", "soon", "wait", "1"))
        self.assertIn("not 'soon'", o["error"])
        self.assertEqual(self.calls(), [])

    def test_wait(self):
        done = self.job_id("flash", "node1", self.app)
        p = self.ispctl("wait", str(done))
        self.assertEqual((p.returncode, p.stdout), (0, "node1: succeeded (boot confirmed)\n"), p.stderr)
        failed = self.job_id("flash", "node3", self.app)
        p = self.ispctl("wait", f"/org/stcisp/ispd1/job/{failed}")
        self.assertEqual((p.returncode, p.stdout), (3, "node3: failed: node3 did not answer CONNECT within 1000 ms\n"))
        # running, then flashed 1.5 s later (PropertiesChanged)
        slow = self.job_id("flash", "node11", self.app)
        t0 = time.monotonic()
        p = self.ispctl("wait", str(slow), str(done))
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual((p.returncode, p.stdout.splitlines()),
                         (0, ["node11: program", "node1: succeeded (boot confirmed)", "node11: succeeded"]), p.stderr)
        # a verify job is summed up as verify does
        verify = self.job_id("verify", "node1,node2", self.app)
        p = self.ispctl("wait", str(verify))
        self.assertEqual(p.stdout.splitlines()[-1], "2 nodes: 1 matches, 1 differs, 0 failed", p.stdout)
        o = self.json_of(self.ispctl("--json", "wait", str(done)))
        self.assertEqual((o["result"], o["jobs"][0]["id"], o["jobs"][0]["target"]), ("succeeded", done, "node1"))

    def test_wait_unknown(self):
        p = self.ispctl("wait", "999")
        self.assertEqual((p.returncode, p.stdout), (2, ""))
        self.assertEqual(p.stderr, "Job 999 does not exist: 'ispctl jobs' lists the jobs stcispd knows\n")
        for bad in ("x", "0", "+3", "3x", "/org/stcisp/ispd1/job/"):
            p = self.ispctl("wait", bad)
            self.assertEqual(p.returncode, 2, bad)
            self.assertIn(f"'{bad}' is not a job", p.stderr)
        p = self.ispctl("wait")
        self.assertEqual(p.returncode, 2)
        self.assertIn("Usage: ispctl wait JOB...", p.stderr)

    def test_interrupted(self):
        for sig, status, word in ((signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")):
            open(self.log, "w").close()
            p, first = self.follow("flash", "node10", self.app)
            self.assertEqual(first, "node10: program\n")
            p.send_signal(sig)
            out, err = p.communicate(timeout=5)
            n = self.last_job()
            self.assertEqual(p.returncode, status, err)
            self.assertEqual(err, f"ispctl: {word}: job {n} goes on in the daemon ('ispctl cancel {n}' stops it, "
                                  f"'ispctl wait {n}' follows it again)\n")
            # ispctl never cancels: the job still runs
            self.assertFalse([c for c in self.calls() if "Cancel" in c], self.calls())
            o = self.json_of(self.ispctl("--json", "--timeout", "100ms", "wait", str(n)))
            self.assertEqual(o["jobs"][0]["state"], "running")
        # --json: one object on stdout
        open(self.log, "w").close()
        p, first = self.follow("--json", "flash", "node10,node11", self.app)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=5)
        self.assertEqual(p.returncode, 130, err)
        o = json.loads(first + out)
        self.assertEqual((o["result"], o["jobs"][0]["state"]), ("interrupted", "running"))
        self.assertRegex(o["error"], r"^ispctl: interrupted: job \d+ goes on in the daemon")

    def test_daemon_leaves(self):
        address, mock = self.private_mock()
        p, first = self.follow("flash", "node10", self.app, address=address)
        self.assertEqual(first, "node10: program\n")
        mock.terminate()
        t0 = time.monotonic()
        out, err = p.communicate(timeout=10)
        # the 3 s grace for it to come back, then no longer
        self.assertLess(time.monotonic() - t0, 5)
        self.assertGreater(time.monotonic() - t0, 2.5)
        self.assertEqual(p.returncode, 6, err)
        self.assertEqual(err, "ispctl: stcispd left the bus while job 1 was running; the job stays queued and resumes "
                              "when stcispd is back ('ispctl wait 1' follows it again)\n")

    def test_daemon_comes_back(self):
        """The name dropped for 0.5 s (a restart): ispctl follows on, and
        gets the end that came while it was away too."""
        address, mock = self.private_mock()
        p, first = self.follow("flash", "node11", self.app, address=address)
        self.assertEqual(first, "node11: program\n")
        mock.send_signal(signal.SIGUSR1)
        out, err = p.communicate(timeout=10)
        self.assertEqual((p.returncode, out, err), (0, "node11: succeeded\n", ""))
        # with --json too
        open(self.log, "w").close()
        p, first = self.follow("--json", "flash", "node11", self.app, address=address)
        mock.send_signal(signal.SIGUSR1)
        out, err = p.communicate(timeout=10)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(json.loads(first + out)["result"], "succeeded")


if __name__ == "__main__":
    unittest.main(verbosity=2)
