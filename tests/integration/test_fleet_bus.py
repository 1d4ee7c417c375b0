#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""One job for several nodes: FlashNodes, the Job's Nodes property, the
errors a fleet call can get, and ispctl flash with several targets.
Real SocketCAN (vcan0, vcan1), a real dbus-daemon, stcisp-sim, busctl,
gdbus and ispctl as clients.

The tests marked "multicast engine" need a session of several targets
on one line (session_new_targets() with n > 1); without it their job
fails with "cannot create a protocol session for N nodes: Operation not
supported"."""

import json
import os
import signal
import subprocess
import time
import unittest

from daemon_env import BUS, EXAMPLES, PATH, SIM, SLOW, Env, expected_flash

ISPCTL = os.environ["ISPCTL"]
BLINK = os.path.join(EXAMPLES, "blink.hex")
BIG = os.path.join(EXAMPLES, "big.hex")

# Nodes: a(ssyssttuuus)
IFACE, NAME, ID, STATE, PHASE, DONE, TOTAL, WRITTEN, SKIPPED, REPAIRS, ERROR = range(11)


class Fleet(unittest.TestCase):
    """Nodes 1-3 on vcan0."""

    def setUp(self):
        self.env = Env("vcan0")
        self.env.start_sim("--nodes", "1-3")
        self.env.start_daemon()

    def tearDown(self):
        self.env.close()

    def scan(self):
        e = self.env
        job = e.call("Scan")["data"][0]
        self.assertEqual(e.wait_job(job), "succeeded", e.job(job, "Error"))

    def link(self, state):
        e = self.env
        e.run(["ip", "link", "set", e.interface, state])
        e.wait_for("link " + state,
                   lambda: e.call("Status", "s", "")["data"][0]["LinkState"]["data"] == state, 30)

    def refused(self, targets, *options, user=None):
        """A FlashNodes call that must be refused: gdbus prints the error's name."""
        with open(BLINK, "rb") as f:
            data = f.read()
        opts = "{" + ", ".join(f"'{k}': <{v}>" for k, v in options) + "}"
        cmd = ["gdbus", "call", "--system", "--dest", BUS, "--object-path", PATH,
               "--method", "org.stcisp.ispd1.Manager.FlashNodes", repr(list(targets)) if targets else "@as []",
               "b'" + data.decode().replace("\n", "\\n") + "'", opts]
        if user:
            cmd = ["setpriv", "--reuid=" + user, "--regid=nogroup", "--clear-groups", "--"] + cmd
        p = subprocess.run(cmd, capture_output=True, text=True, env=self.env.env, timeout=60 * SLOW)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        return p.stderr

    def ispctl(self, *args):
        return subprocess.run([ISPCTL, *args], capture_output=True, text=True, env=self.env.env, timeout=600 * SLOW)

    def test_queued_job_and_its_nodes_survive_kill9(self):
        self.scan()
        self.link("down")
        try:
            self.queued_job_and_its_nodes_survive_kill9()
        finally:
            # vcan0 is shared with the tests that follow
            self.env.run(["ip", "link", "set", self.env.interface, "up"])

    def queued_job_and_its_nodes_survive_kill9(self):
        e = self.env
        job = e.flash_nodes(["node1", "2", "vcan0/node3"], BLINK, "full", "b", "true")
        self.assertEqual(e.job(job, "Kind"), "flash")
        self.assertEqual(e.job(job, "Target"), "node1,node2,node3")
        self.assertEqual(e.job(job, "Interface"), "vcan0")
        self.assertEqual(e.job(job, "State"), "queued")
        queued = [["vcan0", f"node{n}", n, "queued", "none", 0, 0, 0, 0, 0, "", "", "", 0, 0, []] for n in (1, 2, 3)]
        self.assertEqual(e.job(job, "Nodes"), queued)
        rows = e.call("ListJobs")["data"][0]          # the scan, then this job
        self.assertEqual([(r[0], r[1], r[2], r[3]) for r in rows[1:]],
                         [(int(job.rsplit("/", 1)[1]), "flash", "node1,node2,node3", "queued")])

        e.kill_daemon(signal.SIGKILL)
        with open(os.path.join(e.state_dir, "jobs", job.rsplit("/", 1)[1] + ".json")) as f:
            record = json.load(f)
        self.assertEqual([(n["interface"], n["id"], n["name"]) for n in record["nodes"]],
                         [("vcan0", 1, "node1"), ("vcan0", 2, "node2"), ("vcan0", 3, "node3")])
        self.assertTrue(record["full"])

        e.start_daemon()                # the link is still down: the job waits
        self.assertEqual(e.job(job, "State"), "queued")
        self.assertEqual(e.job(job, "Nodes"), queued)
        e.call("CancelJob", "u", job.rsplit("/", 1)[1])
        self.assertEqual(e.wait_job(job), "cancelled")
        self.assertEqual([(n[NAME], n[STATE], n[ERROR]) for n in e.job(job, "Nodes")],
                         [(f"node{n}", "cancelled", "cancelled before it started") for n in (1, 2, 3)])

    def test_refused_calls(self):
        e = self.env
        # before any scan the node table is empty: 'all' names nothing
        err = self.refused(["all"])
        self.assertIn("org.stcisp.ispd1.Error.NodeNotFound: 'all': stcispd knows no extended node: "
                      "'ispctl scan' looks for them", err)
        self.scan()
        frames = e.call("Status", "s", "")["data"][0]["FramesSent"]["data"]

        err = self.refused(["node1", "1"])
        self.assertIn("org.freedesktop.DBus.Error.InvalidArgs: 'node1' and '1' both name node1: name each node once",
                      err)
        err = self.refused(["node2", "node2"])
        self.assertIn("'node2' is given twice: name each node once", err)
        err = self.refused(["all", "node3"])
        self.assertIn("'all' and 'node3' both name node3", err)
        err = self.refused(["node1", "conveyor", "node2"])
        self.assertIn("org.stcisp.ispd1.Error.NodeNotFound: No node 'conveyor'", err)
        err = self.refused(["node1", "can7/node2"])
        self.assertIn("No line 'can7': stcispd works on vcan0", err)
        err = self.refused(["legacy", "node1"])
        self.assertIn("'legacy' is the legacy node, which answers for every node on its line: "
                      "it cannot be in a job with other nodes", err)
        err = self.refused([])
        self.assertIn("InvalidArgs: No target given", err)
        err = self.refused(["node1", "node2"], ("fast", "true"))
        self.assertIn("Unknown option 'fast' (known: canary, dry-run, force, format, full, name, reboot, require-boot, verify)", err)
        err = self.refused(["node1", "node2"], user="nobody")
        self.assertIn("org.stcisp.ispd1.Error.AccessDenied", err)

        # nothing queued, nothing sent
        self.assertEqual(e.call("ListJobs")["data"][0][-1][1], "scan")
        self.assertEqual(len(e.call("ListJobs")["data"][0]), 1)
        self.assertEqual(e.call("Status", "s", "")["data"][0]["FramesSent"]["data"], frames)

    def test_one_node_job_has_one_node(self):
        """FlashNodes with one target, and Flash: a job whose Nodes has that
        node, with its figures and end; kept in the history across a restart."""
        e = self.env
        before = e.flash_file(2)
        job = e.flash_nodes(["node2"], BLINK)
        self.assertEqual(e.wait_job(job), "succeeded", e.job(job, "Error"))
        self.assertEqual(e.job(job, "Target"), "node2")
        self.assertEqual(e.flash_file(2), expected_flash(BLINK, before))
        [n] = e.job(job, "Nodes")
        self.assertEqual(n[:PHASE + 1], ["vcan0", "node2", 2, "succeeded", "boot"])
        self.assertGreater(n[TOTAL], 0)
        self.assertEqual(n[DONE], n[TOTAL])
        self.assertEqual(n[ERROR], "")

        dead = e.flash("node9", BLINK)
        self.assertEqual(e.wait_job(dead), "failed")
        [n] = e.job(dead, "Nodes")
        self.assertEqual((n[NAME], n[STATE], n[PHASE]), ("node9", "failed", "connect"))
        self.assertIn("node9 did not answer CONNECT", n[ERROR])
        self.assertEqual(n[ERROR], e.job(dead, "Error"))

        e.kill_daemon(signal.SIGTERM)
        e.start_daemon()
        self.assertEqual(e.job(job, "Nodes")[0][STATE], "succeeded")
        self.assertIn("node9 did not answer CONNECT", e.job(dead, "Nodes")[0][ERROR])

    # ---- multicast engine ----

    def test_flash_nodes_every_node_gets_the_bytes(self):
        """multicast engine: FlashNodes(all) writes the image on every node."""
        e = self.env
        self.scan()
        before = {n: e.flash_file(n) for n in (1, 2, 3)}
        job = e.flash_nodes(["all"], BIG)
        self.assertEqual(e.job(job, "Target"), "node1,node2,node3")
        self.assertEqual(e.wait_job(job, timeout=600), "succeeded", e.job(job, "Error"))
        for n in (1, 2, 3):
            self.assertEqual(e.flash_file(n), expected_flash(BIG, before[n]), f"node{n}")
        nodes = e.job(job, "Nodes")
        self.assertEqual([(n[NAME], n[STATE], n[ERROR]) for n in nodes],
                         [(f"node{n}", "succeeded", "") for n in (1, 2, 3)])
        for n in nodes:
            self.assertGreater(n[WRITTEN], 0, n)
            self.assertEqual(n[DONE], n[TOTAL], n)
        self.assertEqual(e.job(job, "BytesTotal"), sum(n[TOTAL] for n in nodes))

    def test_ispctl_json_per_node(self):
        """multicast engine: ispctl flash with several targets is one job, and
        --json has one object per node; a node that fails makes the exit
        status 3 while the others succeed."""
        e = self.env
        self.scan()
        p = self.ispctl("--json", "flash", "node1,node2", "3", BLINK)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        o = json.loads(p.stdout)
        self.assertEqual(len(o["jobs"]), 1)
        self.assertEqual(o["jobs"][0]["target"], "node1,node2,node3")
        self.assertEqual(o["result"], "succeeded")
        self.assertEqual([(n["interface"], n["name"], n["id"], n["state"], n["error"]) for n in o["nodes"]],
                         [("vcan0", f"node{n}", n, "succeeded", None) for n in (1, 2, 3)])
        for n in o["nodes"]:
            self.assertEqual(sorted(n), ["boot", "bytes_done", "bytes_total", "differing", "error", "estimate_usec",
                                         "id", "interface", "job_id", "name", "outcome", "phase", "repairs",
                                         "sectors_skipped", "sectors_to_erase", "sectors_written", "state"])
            self.assertEqual((n["outcome"], n["boot"]), ("flashed", "confirmed"), n)
            self.assertGreater(n["sectors_written"] + n["sectors_skipped"], 0, n)

        p = self.ispctl("--json", "flash", "--full", "node1,node9", BLINK)
        self.assertEqual(p.returncode, 3, p.stdout + p.stderr)
        o = json.loads(p.stdout)
        self.assertEqual(o["result"], "failed")
        by_name = {n["name"]: n for n in o["nodes"]}
        self.assertEqual(by_name["node1"]["state"], "succeeded")
        self.assertEqual(by_name["node9"]["state"], "failed")
        self.assertIn("node9 did not answer CONNECT", by_name["node9"]["error"])
        self.assertRegex(o["jobs"][0]["error"], r"^1 of 2 nodes failed: node9 did not answer CONNECT")

    def test_ispctl_plain_lines_and_summary(self):
        """multicast engine: off a terminal, a line per node per phase, then
        the summary per node."""
        self.scan()
        p = self.ispctl("flash", "1,2", BLINK)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        lines = p.stdout.splitlines()
        for n in ("node1", "node2"):
            mine = [l for l in lines if l.startswith(n + ": ")]
            self.assertEqual(mine[0], n + ": connect")
            self.assertEqual(mine[-1], n + ": succeeded (boot confirmed)")
        self.assertIn("NODE", lines[-4])
        self.assertRegex(lines[-3], r"^node1 +succeeded +\d+ +\d+ +\d+ +confirmed$")
        self.assertRegex(lines[-2], r"^node2 +succeeded +\d+ +\d+ +\d+ +confirmed$")
        self.assertEqual(lines[-1], "2 nodes: 2 succeeded, 0 failed")


class TwoLines(unittest.TestCase):
    """vcan0 has nodes 1-2, vcan1 has node 4: one job, one part per line."""

    def setUp(self):
        e = self.env = Env("vcan0")
        # 250 kbit/s: the cancel test needs both parts programming at once
        e.start_sim("--nodes", "1-2", "--bitrate", "250000")
        self.flash_dir1 = os.path.join(e.dir, "flash1")
        os.mkdir(self.flash_dir1)
        self.sim1 = e.spawn([SIM, "--interface", "vcan1", "--flash-dir", self.flash_dir1, "--nodes", "4", "--bitrate", "250000"], "sim1.log")
        e.wait_for("stcisp-sim on vcan1", lambda: "ready" in e.log("sim1.log"), 30)
        e.start_daemon("--interface", "vcan1")

    def tearDown(self):
        self.env.close()

    def flash_file1(self, node):
        self.sim1.send_signal(signal.SIGUSR1)
        time.sleep(0.5 * SLOW)
        with open(os.path.join(self.flash_dir1, f"node{node}.bin"), "rb") as f:
            return f.read()

    def test_one_node_per_line(self):
        """A node on each line: two parts of one job, each a session of one
        node (no multicast needed), both byte-exact."""
        e = self.env
        before0, before1 = e.flash_file(1), self.flash_file1(4)
        job = e.flash_nodes(["vcan0/node1", "vcan1/node4"], BLINK)
        self.assertEqual(e.job(job, "Interface"), "")
        self.assertEqual(e.job(job, "Target"), "vcan0/node1,vcan1/node4")
        self.assertEqual(e.wait_job(job, timeout=600), "succeeded", e.job(job, "Error"))
        self.assertEqual(e.flash_file(1), expected_flash(BLINK, before0))
        self.assertEqual(self.flash_file1(4), expected_flash(BLINK, before1))
        self.assertEqual([(n[IFACE], n[NAME], n[STATE]) for n in e.job(job, "Nodes")],
                         [("vcan0", "vcan0/node1", "succeeded"), ("vcan1", "vcan1/node4", "succeeded")])
        for n in (("vcan0", 1), ("vcan1", 4)):
            st = e.call("Status", "s", f"{n[0]}/node{n[1]}")["data"][0]
            self.assertEqual(st["LastFlashResult"]["data"], "succeeded")
        # both lines are free again and the queue is empty
        for line in ("vcan0", "vcan1"):
            self.assertEqual(e.busctl("get-property", BUS, PATH + "/line/" + line, "org.stcisp.ispd1.Line",
                                      "QueueLength")["data"], 0)

    def test_cancel_stops_every_part(self):
        e = self.env
        job = e.flash_nodes(["vcan0/node2", "vcan1/node4"], BIG)
        # both parts programming (a QUIET flash is quick: waiting for the
        # job's sum could let one node finish first)
        e.wait_for("programming", lambda: all(n[PHASE] == "program" and n[DONE] > 0
                                              for n in e.job(job, "Nodes")), 120)
        e.call("CancelJob", "u", job.rsplit("/", 1)[1])
        self.assertEqual(e.wait_job(job), "cancelled")
        self.assertEqual([n[STATE] for n in e.job(job, "Nodes")], ["cancelled", "cancelled"])
        self.assertEqual(e.flash_file(2)[0x11000], 0xFF, "a cancelled flash left an entry behind")
        self.assertEqual(self.flash_file1(4)[0x11000], 0xFF, "a cancelled flash left an entry behind")


if __name__ == "__main__":
    unittest.main(verbosity=2)
