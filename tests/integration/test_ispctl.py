#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""ispctl as people and scripts use it, against a real stcispd on vcan
with stcisp-sim: every command with and without --json, every documented
exit status provoked for real, the live progress display under a
pseudo-terminal, and the plain lines off a terminal."""

import json
import os
import re
import signal
import subprocess
import unittest

from daemon_env import EXAMPLES, SLOW, Env, expected_flash

ISPCTL = os.environ["ISPCTL"]
BLINK = os.path.join(EXAMPLES, "blink.hex")
BIG = os.path.join(EXAMPLES, "big.hex")


class Ispctl(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = Env("vcan0")
        # A QUIET stream writes 16 KiB in about half a second at 500
        # kbit/s; at 125 kbit/s the terminal test has time to see the
        # progress line. (A slower node than the bus would overrun its
        # receive buffer, and the flash would need repairs.)
        cls.env.start_sim("--nodes", "1-4", "--fault", "4:app", "--bitrate", "125000")
        cls.env.start_daemon(config="[Protocol]\nTimeout=%d\n[Nodes]\npump = 2\n" % (200 * SLOW))

    @classmethod
    def tearDownClass(cls):
        cls.env.close()

    def ispctl(self, *args, user=None, env=None):
        cmd = [ISPCTL, *args]
        if user:
            cmd = ["setpriv", "--reuid=" + user, "--regid=nogroup", "--clear-groups", "--"] + cmd
        return subprocess.run(cmd, capture_output=True, text=True, env=env or self.env.env, timeout=600 * SLOW)

    def json_of(self, p):
        """stdout must be exactly one JSON object and nothing else."""
        lines = p.stdout.splitlines()
        self.assertEqual(len(lines), 1, p.stdout)
        subprocess.run(["/usr/bin/python3", "-m", "json.tool"], input=p.stdout, text=True, check=True,
                       capture_output=True)
        return json.loads(lines[0])

    # ---- the happy paths, human and JSON ----

    def test_01_scan_list_status(self):
        p = self.ispctl("scan")
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.splitlines()
        self.assertEqual(lines[0].split(), ["ID", "NAME", "FORM", "STATE", "UID", "RUNNING", "LAST", "SEEN", "LAST",
                                            "FLASH"])
        self.assertRegex(p.stdout, r"(?m)^1 +node1 +extended +isp +[0-9A-F]{8} ")
        self.assertRegex(p.stdout, r"(?m)^2 +pump +extended +isp ")
        # node4 runs its application: found by IDENTIFY, with the image it runs
        self.assertRegex(p.stdout, r"(?m)^4 +node4 +extended +application +[0-9A-F]{8} +image [0-9A-F]{8} ")
        self.assertIn("4 nodes listed.", p.stdout)

        o = self.json_of(self.ispctl("--json", "scan"))
        self.assertEqual(o["job"]["state"], "succeeded")
        self.assertEqual(sorted(n["id"] for n in o["nodes"]), [1, 2, 3, 4])

        o = self.json_of(self.ispctl("list", "--json"))
        n2 = [n for n in o["nodes"] if n["id"] == 2][0]
        self.assertEqual((n2["name"], n2["form"], n2["state"], n2["protocol_version"]), ("pump", "extended", "isp", 1))

        p = self.ispctl("status")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("  Interface: vcan0 (link up)", p.stdout)
        self.assertIn(" Controller: unknown", p.stdout)
        o = self.json_of(self.ispctl("status", "--json"))
        self.assertEqual((o["interface"], o["link_state"], o["controller_state"]), ("vcan0", "up", "unknown"))

        p = self.ispctl("status", "pump")
        self.assertIn("         Node: pump (id 2, extended)", p.stdout)
        self.assertRegex(p.stdout, r"          UID: [0-9A-F]{8}")
        o = self.json_of(self.ispctl("--json", "status", "2"))
        self.assertEqual((o["name"], o["form"], o["receive_depth"]), ("pump", "extended", 4))

    def test_02_flash_plain_lines(self):
        """Off a terminal: one line per phase change, then the result; the
        node named canonically (node1), not as typed (1)."""
        before = self.env.flash_file(1)
        p = self.ispctl("flash", "1", BLINK)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.splitlines(), ["node1: connect", "node1: erase", "node1: program", "node1: verify",
                                                 "node1: commit", "node1: reboot", "node1: boot",
                                                 "node1: succeeded (boot confirmed)"])
        self.assertEqual(self.env.flash_file(1), expected_flash(BLINK, before))
        p = self.ispctl("list")
        self.assertRegex(p.stdout, r"(?m)^1 +node1 +extended +application .* succeeded$")

    def test_03_flash_json_several_targets(self):
        """Several targets are one job (FlashNodes: needs the multicast
        engine), with one result per node."""
        o = self.json_of(self.ispctl("--json", "flash", "pump,3", "--no-reboot", BLINK))
        self.assertEqual(o["result"], "succeeded", o)
        self.assertEqual([(j["target"], j["state"]) for j in o["jobs"]], [("node2,node3", "succeeded")])
        self.assertEqual([(n["name"], n["state"]) for n in o["nodes"]], [("node2", "succeeded"), ("node3", "succeeded")])

    def tmux_screens(self, width, command):
        """Runs `command` in a tmux pane `width` columns wide (a real
        terminal) and returns every screen seen until it printed EXIT=N."""
        env = dict(self.env.env, TERM="xterm")
        tmux = ["tmux", "-L", "ispctl-test%d-%d" % (width, os.getpid())]
        subprocess.run(tmux + ["new-session", "-d", "-x", str(width), "-y", "20",
                               f"{command}; echo EXIT=$?; sleep 600"], env=env, check=True)
        screens = []
        try:
            def finished():
                screen = subprocess.run(tmux + ["capture-pane", "-p"], capture_output=True, text=True,
                                        env=env).stdout
                screens.append(screen)
                return "EXIT=" in screen
            self.env.wait_for("ispctl in tmux", finished, 300)
        finally:
            subprocess.run(tmux + ["kill-server"], env=env)
        return screens

    def test_04_progress_on_a_terminal(self):
        """The live display in a real terminal (tmux): progress redrawn in
        place while it runs, and the final screen."""
        screens = self.tmux_screens(120, f"{ISPCTL} flash --full node3 {BLINK}")
        final = [l for l in screens[-1].splitlines() if l.strip()]
        self.assertEqual(final, ["node3      succeeded (boot confirmed)", "EXIT=0"])
        # while it ran, one line redrawn in place: bytes, rate and ETA
        running = [s for s in screens if re.search(r"node3 +program +[0-9.]+ KiB/16.3 KiB", s)]
        self.assertTrue(running, "no progress line seen")
        for s in running:
            self.assertEqual(len([l for l in s.splitlines() if l.strip()]), 1, s)
        self.assertTrue(any(re.search(r"KiB/s  ETA \d+:\d\d", s) for s in running), running[-1])

    def test_04b_failure_on_80_columns(self):
        """A failure message longer than the terminal, on an 80-column tmux
        pane: each line is cut to the width (the whole text stays in
        'status' and --json), nothing wraps, nothing is drawn twice."""
        screens = self.tmux_screens(80, f"{ISPCTL} flash node1 node9 {BLINK}")
        for s in screens:
            lines = [l for l in s.splitlines() if l.strip()]
            for l in lines:
                self.assertLessEqual(len(l), 79, s)
            # the live line of each target once (and its row in the summary)
            self.assertLessEqual(len([l for l in lines if re.match(r"node9 +failed: ", l)]), 1, s)
            self.assertLessEqual(len([l for l in lines if re.match(r"node9 +(connect|identify)", l)]), 1, s)
        final = [l for l in screens[-1].splitlines() if l.strip()]
        self.assertEqual(len(final), 7, screens[-1])
        # node1 holds the image since test_02, or is flashed now
        self.assertRegex(final[0], r"^node1 +(succeeded|up-to-date)")
        self.assertRegex(final[1], r"^node9 +failed: node9 did not answer .*…$")
        # (a BOOT column only when a node was rebooted)
        self.assertEqual(final[2].split()[:5], ["NODE", "RESULT", "WRITTEN", "SKIPPED", "REPAIRS"])
        self.assertRegex(final[5], r"^2 nodes: .*\b1 failed\b")
        self.assertEqual(final[6], "EXIT=3")
        # the whole message is still there
        p = self.ispctl("--json", "jobs")
        errors = [j["error"] for j in self.json_of(p)["jobs"] if "node9" in j["target"] and j["error"]]
        shown = final[1].split("failed: ", 1)[1][:-1]
        self.assertTrue(errors and len(errors[-1]) > 80 and shown in errors[-1], (errors, final[1]))

    def test_05_no_block_jobs_cancel(self):
        p = self.ispctl("flash", "--no-block", "node2", BIG)
        self.assertEqual(p.returncode, 0, p.stderr)
        path = p.stdout.strip()
        self.assertRegex(path, r"^/org/stcisp/ispd1/job/\d+$")
        job_id = path.rsplit("/", 1)[1]
        o = self.json_of(self.ispctl("jobs", "--json"))
        self.assertIn(int(job_id), [j["id"] for j in o["jobs"]])
        p = self.ispctl("jobs")
        self.assertRegex(p.stdout, rf"(?m)^{job_id} +flash +node2 ")
        o = self.json_of(self.ispctl("--json", "cancel", job_id))
        self.assertEqual(o["cancelled"], [int(job_id)])
        self.env.wait_job(path)
        self.assertEqual(self.env.job(path, "State"), "cancelled")
        # a second cancel: the job is finished
        p = self.ispctl("cancel", path)
        self.assertEqual(p.returncode, 2)
        self.assertIn("has already finished", p.stderr)

    def test_06_monitor(self):
        mon = subprocess.Popen([ISPCTL, "monitor", "--json"], stdout=subprocess.PIPE, text=True, env=self.env.env)
        try:
            self.env.wait_for("monitor", lambda: True, 1)
            import time
            time.sleep(1 * SLOW)
            p = self.ispctl("scan")
            self.assertEqual(p.returncode, 0, p.stderr)
            time.sleep(1 * SLOW)
        finally:
            mon.terminate()
            out, _ = mon.communicate(timeout=30)
        events = [json.loads(l) for l in out.splitlines()]      # every line is one JSON object
        kinds = [e["event"] for e in events]
        self.assertIn("job-new", kinds)
        self.assertIn("job-removed", kinds)
        self.assertEqual([e["result"] for e in events if e["event"] == "job-removed"][-1], "succeeded")
        self.assertIn("running", [e.get("state") for e in events if e["event"] == "job-changed"])

    # ---- every exit status, for real ----

    def test_10_exit_invalid_image(self):
        broken = os.path.join(self.env.dir, "broken.hex")
        with open(BLINK) as f:
            lines = f.read().splitlines()
        lines[6] = lines[6][:11] + ("1" if lines[6][11] == "0" else "0") + lines[6][12:]
        with open(broken, "w") as f:
            f.write("\n".join(lines) + "\n")
        frames_before = self.json_of(self.ispctl("--json", "status"))["frames_sent"]
        p = self.ispctl("flash", "node1", broken)
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr, rf"^{re.escape(broken)}:7: bad checksum 0x[0-9A-F]{{2}}, expected 0x[0-9A-F]{{2}}\n$")
        o = self.json_of(self.ispctl("--json", "flash", "node1", broken))
        self.assertEqual(o["line"], 7)
        # refused before anything reached the daemon: no job, no frame
        self.assertEqual(self.json_of(self.ispctl("--json", "status"))["frames_sent"], frames_before)

    def test_11_exit_usage(self):
        for args in (["flash", "node1"], ["bogus"], ["--frobnicate"], ["status", "a", "b"], ["cancel", "x1"]):
            p = self.ispctl(*args)
            self.assertEqual(p.returncode, 2, args)
            o = self.json_of(self.ispctl("--json", *args))
            self.assertIn("error", o)

    def test_12_exit_job_failed(self):
        p = self.ispctl("flash", "node9", BLINK)
        self.assertEqual(p.returncode, 3, p.stdout + p.stderr)
        self.assertRegex(p.stdout, r"node9: failed: node9 did not answer CONNECT within \d+ ms")
        self.assertIn("ispctl scan", p.stdout)
        o = self.json_of(self.ispctl("--json", "reboot", "9"))
        self.assertEqual(o["result"], "failed")
        self.assertEqual(self.ispctl("--json", "reboot", "9").returncode, 3)

    def test_13_exit_node_not_found(self):
        p = self.ispctl("flash", "conveyor", BLINK)
        self.assertEqual(p.returncode, 4)
        self.assertIn("No node 'conveyor'", p.stderr)
        o = self.json_of(self.ispctl("--json", "status", "node300"))
        self.assertIn("No node 'node300'", o["error"])

    def test_14_exit_access_denied(self):
        p = self.ispctl("flash", "node1", BLINK, user="nobody")
        self.assertEqual(p.returncode, 5, p.stderr)
        self.assertIn("access denied", p.stderr)
        self.assertEqual(self.ispctl("--json", "scan", user="nobody").returncode, 5)
        # reading is open to everyone
        self.assertEqual(self.ispctl("list", user="nobody").returncode, 0)

    def test_15_exit_unreachable(self):
        env = dict(self.env.env, DBUS_SYSTEM_BUS_ADDRESS="unix:path=" + os.path.join(self.env.dir, "nobus"))
        p = self.ispctl("list", env=env)
        self.assertEqual(p.returncode, 6)
        self.assertIn("Cannot connect to the system bus", p.stderr)
        # the bus is there but stcispd is not on it
        p = self.ispctl("--address", self.env.env["DBUS_SYSTEM_BUS_ADDRESS"], "status")
        self.assertEqual(p.returncode, 0, p.stderr)
        p = subprocess.run(["busctl", "--system", "call", "org.freedesktop.DBus", "/org/freedesktop/DBus",
                            "org.freedesktop.DBus", "GetId"], capture_output=True, env=self.env.env)
        self.assertEqual(p.returncode, 0)

    def test_07_flash_node_in_its_application(self):
        """node4 runs its application: the flash brings it into its ISP with
        ENTER_ISP, waits for its ANNOUNCE, and goes on."""
        p = self.ispctl("--json", "flash", "node4", BLINK)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        lines = self.env.sim_lines("node4")
        self.assertTrue(any(l.startswith("ENTER_ISP") for l in lines), lines)

    def test_08_ctrl_c_leaves_the_job_running(self):
        """Ctrl-C while ispctl follows a flash: one line saying the job goes
        on and how to stop it, status 130; the job then succeeds."""
        e = self.env
        p = subprocess.Popen([ISPCTL, "flash", "--full", "node3", BIG], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=e.env)
        e.wait_for("the flash to run", lambda: any(j[3] == "running" for j in e.call("ListJobs")["data"][0]), 60)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30 * SLOW)
        self.assertEqual(p.returncode, 130, out + err)
        m = re.search(r"ispctl: interrupted: job (\d+) goes on in the daemon \('ispctl cancel \1' stops it", err)
        self.assertIsNotNone(m, err)
        self.assertEqual(e.wait_job(f"/org/stcisp/ispd1/job/{m.group(1)}", timeout=600), "succeeded")

    def test_09_reboot_of_a_running_board(self):
        """ispctl reboot of a node just flashed restarts it (ENTER_ISP, then
        REBOOT), and its state stays truthful."""
        e = self.env
        p = self.ispctl("flash", "node3", BLINK)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        p = self.ispctl("reboot", "node3")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("node3: succeeded (boot confirmed)", p.stdout)
        lines = e.sim_lines("node3")
        last_enter = max(i for i, l in enumerate(lines) if l.startswith("ENTER_ISP"))
        self.assertTrue(any(l.startswith("REBOOT -> ok") for l in lines[last_enter:]), lines[last_enter:])
        o = self.json_of(self.ispctl("--json", "status", "node3"))
        self.assertEqual(o["state"], "application")

    def test_99_exit_daemon_error(self):
        """Last: the daemon cannot store a job once its state directory is
        gone (StorageFailed), an error of the daemon's own."""
        import shutil
        shutil.rmtree(os.path.join(self.env.state_dir, "jobs"))
        p = self.ispctl("flash", "node1", BLINK)
        self.assertEqual(p.returncode, 7, p.stderr)
        self.assertIn("Cannot store the job", p.stderr)
        o = self.json_of(self.ispctl("--json", "reboot", "node1"))
        self.assertIn("Cannot store the job", o["error"])


class Unreachable(unittest.TestCase):
    def test_daemon_not_running(self):
        e = Env("vcan0")
        try:
            p = subprocess.run([ISPCTL, "status"], capture_output=True, text=True, env=e.env)
            self.assertEqual(p.returncode, 6)
            self.assertIn("stcispd is not reachable", p.stderr)
            self.assertIn("systemctl status stcispd", p.stderr)
            p = subprocess.run([ISPCTL, "--json", "list"], capture_output=True, text=True, env=e.env)
            self.assertEqual(p.returncode, 6)
            self.assertIn("error", json.loads(p.stdout))
        finally:
            e.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
