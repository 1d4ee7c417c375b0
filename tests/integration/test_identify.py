#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Knowing what every board runs, on real SocketCAN: boards running their
application found by IDENTIFY, the boot check after REBOOT, two boards on
one id, compares and dry runs that change nothing, read-back, canaries.

The witnesses are independent of the daemon: candump for what went over
the bus, the simulator's log for what each node did, its flash files for
what each node holds, srec_cat for the read-back file."""

import json
import os
import subprocess
import time
import unittest

from daemon_env import EXAMPLES, SLOW, Env, expected_flash

ISPCTL = os.environ["ISPCTL"]
BLINK = os.path.join(EXAMPLES, "blink.hex")
BLINK2 = os.path.join(EXAMPLES, "blink-v2.hex")
BIG = os.path.join(EXAMPLES, "big.hex")

# Job.Nodes: a(ssyssttuuusssutau)
(IFACE, NAME, ID, STATE, PHASE, DONE, TOTAL, WRITTEN, SKIPPED, REPAIRS, ERROR,
 OUTCOME, BOOT, TO_ERASE, ESTIMATE, DIFFERING) = range(16)
# ListNodesEx: a(sysssyyyysttstuouussas)
(L_IFACE, L_ID, L_NAME, L_FORM, L_STATE, L_PROTO, L_FW, L_CAPS, L_DEPTH, L_UID, L_FIRST, L_LAST, L_RESULT,
 L_WHEN, L_CRC, L_PATH, L_IMAGE_CRC, L_APP_VERSION, L_FLASH_NAME, L_RUNNING, L_CONFLICT) = range(21)

# Requests that change a node: PROGRAM, ERASE, ENTER_ISP (and REBOOT)
CHANGING = ("1A2", "1A3", "1A7")


def app_area(flash):
    return flash[:0x10000] + flash[0x11000:]


class Identify(unittest.TestCase):
    def start(self, *sim_args, config=None):
        e = self.env = Env("vcan0")
        e.start_sim(*sim_args)
        e.start_daemon(config=config)
        return e

    def tearDown(self):
        self.env.close()

    # ---- helpers ----

    def ispctl(self, *args):
        return subprocess.run([ISPCTL, *args], capture_output=True, text=True, env=self.env.env,
                              timeout=600 * SLOW)

    def scan(self):
        e = self.env
        job = e.call("Scan")["data"][0]
        self.assertEqual(e.wait_job(job), "succeeded", e.job(job, "Error"))
        # a late IDENTIFY answer (a board still computing its CRC) is taken between jobs too
        time.sleep(1.0 * SLOW)
        return {n[L_ID]: n for n in e.call("ListNodesEx")["data"][0]}

    def nodes(self, job):
        return {n[ID]: n for n in self.env.job(job, "Nodes")}

    def run_job(self, method, signature, *args):
        e = self.env
        job = e.call(method, signature, *args)["data"][0]
        return job, e.wait_job(job, timeout=900)

    def image_args(self, path):
        with open(path, "rb") as f:
            data = f.read()
        return [str(len(data)), *[str(b) for b in data]]

    def flash_nodes(self, nodes, path, *options):
        e = self.env
        job = e.flash_nodes([f"node{n}" for n in nodes], path, *options)
        return job, e.wait_job(job, timeout=900)

    def dump_start(self):
        path = os.path.join(self.env.dir, "candump-%d.log" % time.monotonic_ns())
        f = open(path, "w")
        p = subprocess.Popen(["candump", "-L", "-r", str(8 << 20), self.env.interface + ",1A000000:1F000000"],
                             stdout=f)
        time.sleep(0.5 * SLOW)
        return p, f, path

    def dump_stop(self, d):
        p, f, path = d
        time.sleep(0.5 * SLOW)
        p.terminate()
        p.wait()
        f.close()
        with open(path) as f:
            return [l.split()[2] for l in f.read().splitlines() if len(l.split()) == 3]

    def assert_nothing_changing(self, frames):
        bad = [f for f in frames if f.startswith(CHANGING) or f.startswith("1A4")]
        self.assertEqual(bad, [], "ERASE, PROGRAM, ENTER_ISP or REBOOT on the bus")

    def changes_of(self, node):
        """What a node's flash went through, from the simulator's log."""
        return [l for l in self.env.sim_lines(f"node{node}") if l.startswith(("ERASE", "PROGRAM", "ENTER_ISP"))]

    # ---- tests ----

    def test_scan_finds_running_boards_then_all_updates_them(self):
        """A fleet mixing boards in their ISP and boards running their
        application: scan lists each with what it runs; --all updates the
        ones that need it and leaves the one that holds the image alone."""
        e = self.start("--nodes", "1-4", "--fault", "3:app", "--fault", "4:app")
        self.scan()
        job = e.flash("node2", BLINK, "name", "s", "blink.hex")
        self.assertEqual(e.wait_job(job), "succeeded", e.job(job, "Error"))
        self.assertEqual(self.nodes(job)[2][BOOT], "confirmed")

        rows = self.scan()
        self.assertEqual(sorted(rows), [1, 2, 3, 4])
        self.assertEqual(rows[1][L_STATE], "isp")
        for n in (2, 3, 4):
            self.assertEqual(rows[n][L_STATE], "application", rows[n])
            self.assertRegex(rows[n][L_UID], r"^[0-9A-F]{8}$")
        self.assertRegex(rows[2][L_RUNNING], r"^blink\.hex, flashed \d{4}-\d\d-\d\d \d\d:\d\d$")
        self.assertRegex(rows[3][L_RUNNING], r"^image [0-9A-F]{8}$")
        p = self.ispctl("list")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout, r"(?m)^3 +node3 +extended +application ")
        self.assertIn("blink.hex, flashed", p.stdout)

        before = {n: e.flash_file(n) for n in (1, 3, 4)}
        before2 = self.changes_of(2)
        job = e.flash_nodes(["all"], BLINK)
        self.assertEqual(e.wait_job(job, timeout=900), "succeeded", e.job(job, "Error"))
        nodes = self.nodes(job)
        self.assertEqual(sorted(nodes), [1, 2, 3, 4])
        for n in (1, 3, 4):
            self.assertEqual(nodes[n][OUTCOME], "flashed", nodes[n])
            self.assertEqual(nodes[n][BOOT], "confirmed", nodes[n])
            self.assertEqual(e.flash_file(n), expected_flash(BLINK, before[n]))
        # node2 ran blink already: asked with IDENTIFY, neither entered nor erased
        self.assertEqual(nodes[2][OUTCOME], "up-to-date", nodes[2])
        self.assertEqual(self.changes_of(2), before2)
        # and again: every one of them is up to date now
        job = e.flash_nodes(["all"], BLINK)
        self.assertEqual(e.wait_job(job, timeout=900), "succeeded", e.job(job, "Error"))
        for n, node in self.nodes(job).items():
            self.assertEqual(node[OUTCOME], "up-to-date", node)

    def test_boot_confirmed_failed_unconfirmed(self):
        e = self.start("--nodes", "1-4", "--fault", "2:boot-fail", "--fault", "3:no-helper", "--fault", "4:no-helper")
        self.scan()
        job, state = self.flash_nodes([1], BLINK)
        self.assertEqual(state, "succeeded", e.job(job, "Error"))
        self.assertEqual(self.nodes(job)[1][BOOT], "confirmed")

        job, state = self.flash_nodes([2], BLINK)
        self.assertEqual(state, "failed")
        n = self.nodes(job)[2]
        self.assertEqual(n[BOOT], "failed")
        self.assertIn("node2: boot failed: it came back in its ISP after REBOOT", n[ERROR])

        job, state = self.flash_nodes([3], BLINK)
        self.assertEqual(state, "succeeded", e.job(job, "Error"))
        self.assertEqual(self.nodes(job)[3][BOOT], "unconfirmed")
        # (a board without the helper honours no ENTER_ISP either: node3
        # cannot be flashed again without a power cycle; node4 is fresh)
        job, state = self.flash_nodes([4], BLINK, "require-boot", "b", "true")
        self.assertEqual(state, "failed")
        n = self.nodes(job)[4]
        self.assertEqual(n[BOOT], "unconfirmed")
        self.assertIn("node4: boot unconfirmed: its application did not answer IDENTIFY", n[ERROR])

    def test_two_boards_on_one_id(self):
        """Scan reports the conflict with both UIDs; a flash of that id
        fails naming them, and neither board is erased or programmed."""
        e = self.start("--nodes", "1-2", "--fault", "2:duplicate")
        rows = self.scan()
        self.assertEqual(rows[2][L_STATE], "conflict")
        self.assertEqual(len(rows[2][L_CONFLICT]), 2)
        self.assertNotEqual(rows[2][L_CONFLICT][0], rows[2][L_CONFLICT][1])
        uids = " and ".join(rows[2][L_CONFLICT])

        d = self.dump_start()
        job, state = self.flash_nodes([2], BLINK)
        frames = self.dump_stop(d)
        self.assertEqual(state, "failed")
        self.assertIn(f"node2 is claimed by two boards (UIDs {uids})", e.job(job, "Error"))
        self.assert_nothing_changing(frames)

        # with another node in the job: that one is flashed, the pair is not touched
        before = e.flash_file(1)
        job, state = self.flash_nodes([1, 2], BLINK)
        self.assertEqual(state, "failed")
        nodes = self.nodes(job)
        self.assertEqual(nodes[1][STATE], "succeeded", nodes[1])
        self.assertEqual(nodes[2][STATE], "failed")
        self.assertEqual(e.flash_file(1), expected_flash(BLINK, before))
        self.assertEqual(self.changes_of(2), [])

    def test_conflict_seen_while_connecting(self):
        """Never scanned: the second INFO while connecting is the conflict."""
        e = self.start("--nodes", "1-2", "--fault", "2:duplicate")
        job, state = self.flash_nodes([2], BLINK)
        self.assertEqual(state, "failed")
        self.assertIn("node2 is claimed by two boards (UIDs ", e.job(job, "Error"))
        self.assertEqual(self.changes_of(2), [])
        status = e.call("Status", "s", "node2")["data"][0]
        self.assertEqual(status["State"]["data"], "conflict")

    def test_verify_and_dry_run_change_nothing(self):
        e = self.start("--nodes", "1-3", "--fault", "3:app")
        self.scan()
        job, state = self.flash_nodes([1], BLINK)
        self.assertEqual(state, "succeeded", e.job(job, "Error"))
        before = {n: e.flash_file(n) for n in (1, 2, 3)}

        d = self.dump_start()
        p = self.ispctl("verify", "node1", BLINK)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        p = self.ispctl("verify", "node1", BLINK2)
        self.assertEqual(p.returncode, 8, p.stdout + p.stderr)
        p = self.ispctl("--json", "verify", "node1", "node2", "node3", BLINK)
        self.assertEqual(p.returncode, 8, p.stdout + p.stderr)
        job, state = self.run_job("Verify", "asaya{sv}", "3", "node1", "node2", "node3", *self.image_args(BLINK), "0")
        self.assertEqual(state, "succeeded", e.job(job, "Error"))
        nodes = self.nodes(job)
        self.assertEqual(nodes[1][OUTCOME], "matches")
        self.assertEqual(nodes[2][OUTCOME], "differs")
        self.assertIn(0x11000, nodes[2][DIFFERING])     # a blank node: the entry sector too
        self.assertEqual(nodes[3][OUTCOME], "differs")  # a running board, by its IDENTIFY answer

        job, state = self.flash_nodes([1, 2, 3], BIG, "dry-run", "b", "true")
        frames = self.dump_stop(d)
        self.assertEqual(state, "succeeded", e.job(job, "Error"))
        nodes = self.nodes(job)
        for n in (1, 2, 3):
            self.assertEqual(nodes[n][OUTCOME], "would-flash", nodes[n])
            self.assertGreater(nodes[n][TO_ERASE], 0)
            self.assertGreater(nodes[n][TOTAL], 0)
            self.assertGreater(nodes[n][ESTIMATE], 0)
        self.assert_nothing_changing(frames)
        for n in (1, 2, 3):
            self.assertEqual(e.flash_file(n), before[n])
        # and a dry run of what node1 holds: up to date
        job, state = self.flash_nodes([1], BLINK, "dry-run", "b", "true")
        self.assertEqual(self.nodes(job)[1][OUTCOME], "up-to-date")

    def test_flash_of_an_image_held_erases_nothing(self):
        e = self.start("--nodes", "1")
        self.scan()
        job, state = self.flash_nodes([1], BIG)
        self.assertEqual(state, "succeeded", e.job(job, "Error"))
        before = self.changes_of(1)
        d = self.dump_start()
        job, state = self.flash_nodes([1], BIG)
        frames = self.dump_stop(d)
        self.assertEqual(state, "succeeded", e.job(job, "Error"))
        self.assertEqual(self.nodes(job)[1][OUTCOME], "up-to-date")
        self.assertEqual([f for f in frames if f.startswith(("1A2", "1A3"))], [])
        self.assertEqual(self.changes_of(1), before)
        # force rewrites it
        job, state = self.flash_nodes([1], BIG, "force", "b", "true")
        self.assertEqual(state, "succeeded", e.job(job, "Error"))
        self.assertEqual(self.nodes(job)[1][OUTCOME], "flashed")

    def test_read_back_then_flash_another_node(self):
        e = self.start("--nodes", "1-2")
        self.scan()
        job, state = self.flash_nodes([1], BIG)
        self.assertEqual(state, "succeeded", e.job(job, "Error"))
        hex_path = os.path.join(e.dir, "node1.hex")
        bin_path = os.path.join(e.dir, "node1.bin")
        p = self.ispctl("read", "node1", hex_path)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        p = self.ispctl("read", "node1", bin_path)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        # an independent loader reads it
        p = subprocess.run(["srec_cat", hex_path, "-intel", "-o", os.path.join(e.dir, "x.bin"), "-binary"],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        # the project's loader too, with the node's own figures
        p = self.ispctl("--json", "inspect", hex_path)
        self.assertEqual(p.returncode, 0, p.stderr)
        crc = json.loads(p.stdout)["crc32"]
        p = self.ispctl("--json", "inspect", BIG)
        self.assertEqual(json.loads(p.stdout)["crc32"], crc)

        for path in (hex_path, bin_path):
            job, state = self.flash_nodes([2], path, "force", "b", "true")
            self.assertEqual(state, "succeeded", e.job(job, "Error"))
            self.assertEqual(app_area(e.flash_file(2)), app_area(e.flash_file(1)))

    def test_canary_failure_leaves_the_others_untouched(self):
        e = self.start("--nodes", "1-4", "--fault", "1:boot-fail")
        self.scan()
        before = {n: e.flash_file(n) for n in (2, 3, 4)}
        job, state = self.flash_nodes([1, 2, 3, 4], BLINK, "canary", "u", "1")
        self.assertEqual(state, "failed")
        nodes = self.nodes(job)
        self.assertEqual(nodes[1][STATE], "failed")
        for n in (2, 3, 4):
            self.assertEqual(nodes[n][OUTCOME], "not-started", nodes[n])
            self.assertIn("not started: the canary node1 failed", nodes[n][ERROR])
            self.assertEqual(e.flash_file(n), before[n])
            self.assertEqual(self.changes_of(n), [])

    def test_canary_success_then_the_rest(self):
        e = self.start("--nodes", "1-3")
        self.scan()
        job, state = self.flash_nodes([1, 2, 3], BLINK, "canary", "u", "1", "require-boot", "b", "true")
        self.assertEqual(state, "succeeded", e.job(job, "Error"))
        nodes = self.nodes(job)
        for n in (1, 2, 3):
            self.assertEqual(nodes[n][OUTCOME], "flashed")
            self.assertEqual(nodes[n][BOOT], "confirmed")
        # the canary booted before anything was erased on the others
        lines = self.env.log("sim.log").splitlines()
        canary_boot = max(i for i, l in enumerate(lines) if l.startswith("node1: ") and "IDENTIFY" in l)
        first_other = min(i for i, l in enumerate(lines) if l.startswith(("node2: ERASE", "node3: ERASE")))
        self.assertLess(canary_boot, first_other)

    def test_names_bound_to_uids_and_groups(self):
        """A name bound to a board's UID follows the board, whatever id it
        has; a group is a target like any other."""
        e = self.start("--nodes", "1-3")
        rows = self.scan()
        uid3 = rows[3][L_UID]
        e.kill_daemon()
        conf = ("[Protocol]\nTimeout=%d\n[Nodes]\npump = uid:%s\n[Groups]\npumps = pump 1\n"
                % (200 * SLOW, uid3.lower()))
        e.start_daemon(config=conf)
        status = e.call("Status", "s", "pump")["data"][0]
        self.assertEqual(status["Id"]["data"], 3)
        self.assertEqual(status["Name"]["data"], "pump")
        before = {n: e.flash_file(n) for n in (1, 2, 3)}
        p = self.ispctl("flash", "pumps", BLINK)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("node3: succeeded", p.stdout)
        self.assertIn("node1: succeeded", p.stdout)
        self.assertEqual(e.flash_file(3), expected_flash(BLINK, before[3]))
        self.assertEqual(e.flash_file(1), expected_flash(BLINK, before[1]))
        self.assertEqual(e.flash_file(2), before[2])
        # a group and one of its members: refused before anything is queued
        p = self.ispctl("flash", "pumps", "node3", BLINK)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn("both name node3: name each node once", p.stderr)
        # a group is no node for read
        p = self.ispctl("read", "pumps", os.path.join(e.dir, "x.hex"))
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("'pumps' is a group of 2 nodes: name one node", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
