#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Fleet flashing on the wire: one FlashNodes job multicast to many
simulated nodes on vcan0, with candump as the independent witness of
what went over the bus, and the nodes' flash files (compared with an
image computed by python3-intelhex) as the witness of what they hold."""

import os
import subprocess
import time
import unittest

from intelhex import IntelHex

from daemon_env import EXAMPLES, SLOW, Env, check_commit_order, expected_flash

BLINK = os.path.join(EXAMPLES, "blink.hex")
ENTRY_SECTOR = 0x11000 // 512

# Nodes: a(ssyssttuuus)
IFACE, NAME, ID, STATE, PHASE, DONE, TOTAL, WRITTEN, SKIPPED, REPAIRS, ERROR = range(11)


def program_frames(dump):
    """PROGRAM requests (ID 0x1A2xxxxx) in a candump -L log."""
    n = 0
    for line in dump.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].startswith("1A2"):
            n += 1
    return n


class Fleet(unittest.TestCase):
    def start(self, n, *faults):
        e = self.env = Env("vcan0")
        e.start_sim("--nodes", f"1-{n}", "--seed", "3", *faults)
        e.start_daemon()
        job = e.call("Scan")["data"][0]
        self.assertEqual(e.wait_job(job), "succeeded", e.job(job, "Error"))

    def tearDown(self):
        self.env.close()

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
            return f.read()

    def flash_all(self, nodes, path, *options):
        e = self.env
        before = {n: e.flash_file(n) for n in nodes}
        d = self.dump_start()
        job = e.flash_nodes([f"node{n}" for n in nodes], path, *options)
        state = e.wait_job(job, timeout=900)
        dump = self.dump_stop(d)
        return job, state, before, dump

    def nodes(self, job):
        return {n[ID]: n for n in self.env.job(job, "Nodes")}

    def test_16_nodes_one_stream(self):
        """16 nodes in one job: each byte-exact, entry last on each, and
        about one image's worth of PROGRAM frames on the bus (counted
        against a flash of one node alone)."""
        self.start(17)
        e = self.env
        before = e.flash_file(17)
        d = self.dump_start()
        job = e.flash("node17", BLINK)
        self.assertEqual(e.wait_job(job, timeout=900), "succeeded", e.job(job, "Error"))
        one = program_frames(self.dump_stop(d))
        self.assertEqual(e.flash_file(17), expected_flash(BLINK, before))
        self.assertGreater(one, 1000)

        job, state, before, dump = self.flash_all(range(1, 17), BLINK)
        self.assertEqual(state, "succeeded", e.job(job, "Error"))
        for n in range(1, 17):
            self.assertEqual(e.flash_file(n), expected_flash(BLINK, before[n]), f"node{n}")
            check_commit_order(e.sim_lines(f"node{n}"))
        nodes = self.nodes(job)
        self.assertEqual(sorted(nodes), list(range(1, 17)))
        for n in nodes.values():
            self.assertEqual(n[STATE], "succeeded", n)
            self.assertEqual(n[ERROR], "")
        many = program_frames(dump)
        self.assertLessEqual(many, 1.2 * one, f"{many} PROGRAM frames for 16 nodes, {one} for one")

    def test_lossy_members(self):
        """1% of the requests to three of 8 nodes lost: all byte-exact."""
        self.start(8, "--fault", "2:drop-rate=1%", "--fault", "5:drop-rate=1%", "--fault", "7:drop-rate=1%")
        e = self.env
        job, state, before, dump = self.flash_all(range(1, 9), BLINK)
        self.assertEqual(state, "succeeded", e.job(job, "Error"))
        for n in range(1, 9):
            self.assertEqual(e.flash_file(n), expected_flash(BLINK, before[n]), f"node{n}")
        self.assertIn("drop", e.log("sim.log"))

    def test_dead_node_fails_alone(self):
        """One silent node among 8: 7 succeed, the job fails naming it."""
        self.start(8, "--fault", "5:dead")
        e = self.env
        job, state, before, dump = self.flash_all(range(1, 9), BLINK)
        self.assertEqual(state, "failed")
        nodes = self.nodes(job)
        for n in range(1, 9):
            if n == 5:
                continue
            self.assertEqual(nodes[n][STATE], "succeeded", nodes[n])
            self.assertEqual(e.flash_file(n), expected_flash(BLINK, before[n]), f"node{n}")
        self.assertEqual(nodes[5][STATE], "failed")
        self.assertIn("node5", nodes[5][ERROR])
        self.assertIn("did not answer CONNECT", nodes[5][ERROR])
        self.assertIn("1 of 8 nodes failed", e.job(job, "Error"))
        self.assertIn("node5", e.job(job, "Error"))

    def test_one_sector_change(self):
        """A 1-sector change flashed again to 8 nodes: at most 2 sectors'
        worth of PROGRAM frames on the bus (the changed sector and the
        entry sector, which is always written last), the rest skipped."""
        self.start(8)
        e = self.env
        job, state, _, _ = self.flash_all(range(1, 9), BLINK)
        self.assertEqual(state, "succeeded", e.job(job, "Error"))

        ih = IntelHex(BLINK)
        # the last byte of the image: logical FF:xxxx, far from the entry sector
        target = max(ih.addresses())
        self.assertNotEqual((target - 0xFE0000) // 512, ENTRY_SECTOR)
        ih[target] = ih[target] ^ 0x5A
        changed = os.path.join(e.dir, "blink-changed.hex")
        ih.write_hex_file(changed)

        job, state, before, dump = self.flash_all(range(1, 9), changed)
        self.assertEqual(state, "succeeded", e.job(job, "Error"))
        for n in range(1, 9):
            self.assertEqual(e.flash_file(n), expected_flash(changed, before[n]), f"node{n}")
        frames = program_frames(dump)
        self.assertLessEqual(frames, 2 * 512 // 8 + 8 * 2, f"{frames} PROGRAM frames")
        for n in self.nodes(job).values():
            self.assertEqual(n[WRITTEN], 2, n)
            self.assertGreater(n[SKIPPED], 10, n)


if __name__ == "__main__":
    unittest.main(verbosity=2)
