#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Lines and state: one daemon on two CAN interfaces flashing a node on
each at the same time; the node table surviving kill -9; damaged state
files set aside. Real SocketCAN (vcan0, vcan1), a real dbus-daemon,
stcisp-sim, busctl and ispctl as clients."""

import concurrent.futures
import glob
import json
import os
import signal
import subprocess
import time
import unittest

from daemon_env import BUS, EXAMPLES, PATH, SLOW, SIM, Env, check_commit_order, expected_flash

ISPCTL = os.environ["ISPCTL"]
BLINK = os.path.join(EXAMPLES, "blink.hex")
BIG = os.path.join(EXAMPLES, "big.hex")
LINE = "org.stcisp.ispd1.Line"


class TwoLines(unittest.TestCase):
    """vcan0 has nodes 1-3, vcan1 has nodes 3-5: node3 is on both."""

    def setUp(self):
        e = self.env = Env("vcan0")
        e.start_sim("--nodes", "1-3")
        self.flash_dir1 = os.path.join(e.dir, "flash1")
        os.mkdir(self.flash_dir1)
        self.sim1 = e.spawn([SIM, "--interface", "vcan1", "--flash-dir", self.flash_dir1, "--nodes", "3-5"],
                            "sim1.log")
        e.wait_for("stcisp-sim on vcan1", lambda: "ready" in e.log("sim1.log"), 30)
        e.start_daemon("--interface", "vcan1")

    def tearDown(self):
        self.env.close()

    def flash_file1(self, node):
        self.sim1.send_signal(signal.SIGUSR1)
        time.sleep(0.5 * SLOW)
        with open(os.path.join(self.flash_dir1, f"node{node}.bin"), "rb") as f:
            return f.read()

    def scan(self):
        e = self.env
        job = e.call("Scan")["data"][0]
        self.assertEqual(e.wait_job(job), "succeeded", e.job(job, "Error"))

    def test_parallel_flash(self):
        """A node on each line, flashed at the same time: both byte-exact,
        and the two jobs overlap in time."""
        e = self.env
        self.scan()
        before0, before1 = e.flash_file(2), self.flash_file1(4)
        untouched1 = self.flash_file1(3)
        # Both queued at once: a QUIET flash of a blank node may end before
        # a second busctl with 50,000 arguments has even started.
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            f0 = pool.submit(e.flash, "vcan0/node2", BIG)
            f1 = pool.submit(e.flash, "vcan1/node4", BIG)
            job0, job1 = f0.result(), f1.result()
        self.assertEqual(e.job(job0, "Target"), "vcan0/node2")
        self.assertEqual(e.job(job1, "Interface"), "vcan1")
        for job in (job0, job1):
            self.assertEqual(e.wait_job(job, timeout=600), "succeeded", e.job(job, "Error"))
        self.assertEqual(e.flash_file(2), expected_flash(BIG, before0))
        self.assertEqual(self.flash_file1(4), expected_flash(BIG, before1))
        self.assertEqual(self.flash_file1(3), untouched1, "vcan1/node3 was touched")
        check_commit_order(e.sim_lines("node2"))

        s0, f0 = e.job(job0, "StartedUSec"), e.job(job0, "FinishedUSec")
        s1, f1 = e.job(job1, "StartedUSec"), e.job(job1, "FinishedUSec")
        self.assertLess(s0, f1, "job 0 started after job 1 had finished")
        self.assertLess(s1, f0, "job 1 started after job 0 had finished")

    def test_flash_all_on_both_lines(self):
        """ispctl flash --all: one job for every node on every line (a part
        per line; needs the multicast engine), node3 on each of its two
        lines, by its canonical name."""
        e = self.env
        self.scan()
        p = e.run([ISPCTL, "--json", "flash", "--all", BLINK], check=False, timeout=600)
        result = json.loads(p.stdout)
        self.assertEqual(result["result"], "succeeded", p.stdout)
        self.assertEqual(len(result["jobs"]), 1)
        self.assertEqual(sorted(n["name"] for n in result["nodes"]),
                         ["vcan0/node1", "vcan0/node2", "vcan0/node3", "vcan1/node3", "vcan1/node4", "vcan1/node5"])

    def test_targets_and_lines(self):
        e = self.env
        self.scan()
        # node3 answers on both lines: a bare name is refused, naming both
        # (gdbus, unlike busctl, prints the error's name)
        p = e.run(["gdbus", "call", "--system", "--dest", BUS, "--object-path", PATH,
                   "--method", "org.stcisp.ispd1.Manager.Status", "node3"], check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("org.stcisp.ispd1.Error.AmbiguousNode: 'node3' is on several lines: "
                      "name one of vcan0/node3, vcan1/node3", p.stderr)
        # node5 is only on vcan1
        st = e.call("Status", "s", "node5")["data"][0]
        self.assertEqual(st["Interface"]["data"], "vcan1")
        self.assertEqual(st["Form"]["data"], "extended")
        p = e.call("Status", "s", "can7/node1", check=False)
        self.assertIn("No line 'can7': stcispd works on vcan0, vcan1", p.stderr)

        rows = e.call("ListNodes")["data"][0]
        self.assertEqual(sorted(r[1] for r in rows),
                         ["vcan0/node1", "vcan0/node2", "vcan0/node3", "vcan1/node3", "vcan1/node4", "vcan1/node5"])

        # one Line object per interface, with properties, and Status("") lists both
        tree = e.run(["busctl", "--system", "--list", "tree", BUS]).stdout.split()
        self.assertIn(PATH + "/line/vcan0", tree)
        self.assertIn(PATH + "/line/vcan1", tree)
        self.assertEqual(e.busctl("get-property", BUS, PATH + "/line/vcan1", LINE, "LinkState")["data"], "up")
        self.assertEqual(e.busctl("get-property", BUS, PATH + "/line/vcan1", LINE, "QueueLength")["data"], 0)
        sent = e.busctl("get-property", BUS, PATH + "/line/vcan1", LINE, "FramesSent")["data"]
        self.assertGreater(sent, 0)
        self.assertEqual(e.busctl("get-property", BUS, PATH + "/line/vcan1", LINE, "RxDropped")["data"], 0)
        st = e.call("Status", "s", "")["data"][0]
        self.assertEqual(sorted(st["Lines"]["data"].keys()), ["vcan0", "vcan1"])
        self.assertEqual(st["Lines"]["data"]["vcan1"]["LinkState"]["data"], "up")

        p = e.run([ISPCTL, "status"])
        self.assertIn("  Interface: vcan0 (link up)", p.stdout)
        self.assertIn("  Interface: vcan1 (link up)", p.stdout)


class State(unittest.TestCase):
    """One line; what the daemon knows survives it."""

    def setUp(self):
        self.env = Env("vcan0")
        self.env.start_sim("--nodes", "1-3")
        self.env.start_daemon()

    def tearDown(self):
        self.env.close()

    def test_node_table_survives_kill(self):
        e = self.env
        job = e.call("Scan")["data"][0]
        self.assertEqual(e.wait_job(job), "succeeded")
        job = e.flash("node3", BLINK)
        self.assertEqual(e.wait_job(job), "succeeded", e.job(job, "Error"))
        before = {n: e.call("Status", "s", f"node{n}")["data"][0] for n in (1, 2, 3)}
        listed = json.loads(e.run([ISPCTL, "--json", "list"]).stdout)

        e.kill_daemon(signal.SIGKILL)
        e.start_daemon()
        # no scan: straight from the state directory
        for n in (1, 2, 3):
            st = e.call("Status", "s", f"node{n}")["data"][0]
            self.assertEqual(st["UID"]["data"], before[n]["UID"]["data"])
            self.assertEqual(len(st["UID"]["data"]), 8)
            self.assertEqual(st["LastFlashResult"]["data"], before[n]["LastFlashResult"]["data"])
            self.assertEqual(st["State"]["data"], before[n]["State"]["data"])
            self.assertEqual(st["LastSeenUSec"]["data"], before[n]["LastSeenUSec"]["data"])
        self.assertEqual(before[3]["LastFlashResult"]["data"], "succeeded")
        self.assertNotEqual(before[3]["LastFlashCRC"]["data"], 0)
        self.assertEqual(json.loads(e.run([ISPCTL, "--json", "list"]).stdout), listed)

    def test_failed_start_does_not_stall_the_queue(self):
        """A job that fails as it starts (its stored image no longer
        matches its CRC) is failed with a message naming the file, and the
        queue goes on with the next job."""
        e = self.env
        e.run(["ip", "link", "set", "vcan0", "down"])
        e.wait_for("link down", lambda: e.call("Status", "s", "")["data"][0]["LinkState"]["data"] == "down", 30)
        bad = e.flash("node3", BLINK)
        good = e.flash("node2", BLINK)
        image = os.path.join(e.state_dir, "jobs", bad.rsplit("/", 1)[1] + ".image")
        with open(image, "r+b") as f:
            text = f.read().replace(b":10", b":0F", 1)     # still HEX, other bytes
            f.seek(0)
            f.write(text)
        before = e.flash_file(2)
        e.run(["ip", "link", "set", "vcan0", "up"])
        self.assertEqual(e.wait_job(bad), "failed")
        self.assertIn(image, e.job(bad, "Error"))
        self.assertEqual(e.wait_job(good), "succeeded", e.job(good, "Error"))
        self.assertEqual(e.flash_file(2), expected_flash(BLINK, before))

    def test_client_does_not_hang_when_the_daemon_dies(self):
        """kill -9 of stcispd while ispctl flash follows the job: ispctl
        ends within seconds with the unreachable status and says what
        happened; the daemon, started again, finishes the job."""
        e = self.env
        p = subprocess.Popen([ISPCTL, "flash", "node2", BIG], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=e.env)
        e.wait_for("programming", lambda: "Job 1 (flash node2): program" in e.log("stcispd.log"), 120)
        e.kill_daemon(signal.SIGKILL)
        t0 = time.monotonic()
        out, err = p.communicate(timeout=30 * SLOW)
        # ispctl waits 3 s for the daemon to come back (a restart), then gives up
        self.assertLess(time.monotonic() - t0, 3 + 5 * SLOW, "ispctl took too long to notice")
        self.assertEqual(p.returncode, 6, err)
        self.assertIn("ispctl: stcispd left the bus while job 1 was running; the job stays queued and resumes when "
                      "stcispd is back ('ispctl wait 1' follows it again)", err)
        e.start_daemon()
        job = PATH + "/job/1"
        self.assertEqual(e.wait_job(job, timeout=600), "succeeded", e.job(job, "Error"))
        self.assertEqual(e.job(job, "Attempts"), 2)

    def test_damaged_state_set_aside(self):
        e = self.env
        job = e.call("Scan")["data"][0]
        self.assertEqual(e.wait_job(job), "succeeded")
        e.kill_daemon(signal.SIGTERM)
        for name, junk in (("nodes.json", b'{"version":1,"nodes":[{"interface":'),
                           ("history.json", b"\x00\xff garbage \x01")):
            with open(os.path.join(e.state_dir, name), "wb") as f:
                f.write(junk)
        e.start_daemon()
        log = e.log("stcispd.log")
        for name in ("nodes.json", "history.json"):
            aside = glob.glob(os.path.join(e.state_dir, name + ".damaged-*"))
            self.assertEqual(len(aside), 1, f"{name} was not set aside")
            self.assertIn(f"{e.state_dir}/{name} is damaged", log)
            self.assertIn(aside[0], log)
        # the daemon works: a scan and a flash go through and are kept
        job = e.call("Scan")["data"][0]
        self.assertEqual(e.wait_job(job), "succeeded")
        with open(os.path.join(e.state_dir, "nodes.json")) as f:
            self.assertEqual(len(json.load(f)["nodes"]), 3)


if __name__ == "__main__":
    unittest.main(verbosity=2)
