#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""stcispd end to end: real SocketCAN (vcan), a real dbus-daemon with the
project's policy, stcisp-sim as the nodes, busctl and gdbus as clients."""

import os
import re
import signal
import socket
import struct
import subprocess
import time
import unittest
import xml.etree.ElementTree as ET

from daemon_env import (BUS, EXAMPLES, JOB, PATH, SIM, SLOW, SRC, Env, check_commit_order,
                        expected_flash)

BLINK = os.path.join(EXAMPLES, "blink.hex")
BLINK2 = os.path.join(EXAMPLES, "blink-v2.hex")
BIG = os.path.join(EXAMPLES, "big.hex")


class Extended(unittest.TestCase):
    """Three extended nodes on vcan0."""

    def setUp(self):
        self.env = Env("vcan0")
        self.env.start_sim("--nodes", "1-3")
        self.env.start_daemon()

    def tearDown(self):
        self.env.close()

    def test_flash_busctl(self):
        e = self.env
        before = e.flash_file(3)
        others = [e.flash_file(n) for n in (1, 2)]
        job = e.flash("node3", BLINK)
        self.assertRegex(job, r"^/org/stcisp/ispd1/job/\d+$")
        self.assertEqual(e.wait_job(job), "succeeded", e.job(job, "Error"))
        # the last phase is the boot check: the new application answered IDENTIFY
        self.assertEqual(e.job(job, "Phase"), "boot")
        self.assertEqual(e.job(job, "Nodes")[0][12], "confirmed")
        self.assertEqual(e.flash_file(3), expected_flash(BLINK, before))
        self.assertEqual([e.flash_file(n) for n in (1, 2)], others, "other nodes were touched")
        check_commit_order(e.sim_lines("node3"))
        self.assertIn("REBOOT -> ok, application started", e.sim_lines("node3"))

        nodes = e.call("ListNodes")["data"][0]
        row = [n for n in nodes if n[0] == 3][0]
        self.assertEqual(row[1:4], ["node3", "extended", "application"])
        self.assertEqual(row[7], "succeeded")

        st = e.call("Status", "s", "node3")["data"][0]
        self.assertEqual(st["Form"]["data"], "extended")
        self.assertEqual(st["LastFlashResult"]["data"], "succeeded")
        self.assertEqual(len(st["UID"]["data"]), 8)

    def test_flash_gdbus_options(self):
        """gdbus, a second client nobody here wrote, with reboot=false."""
        e = self.env
        before = e.flash_file(2)
        with open(BLINK2, "rb") as f:
            data = f.read()
        literal = "b'" + data.decode().replace("\n", "\\n") + "'"
        p = e.run(["gdbus", "call", "--system", "--dest", BUS, "--object-path", PATH,
                   "--method", "org.stcisp.ispd1.Manager.Flash", "2", literal,
                   "{'reboot': <false>, 'format': <'hex'>}"])
        job = re.search(r"objectpath '([^']+)'", p.stdout).group(1)
        self.assertEqual(e.wait_job(job), "succeeded", e.job(job, "Error"))
        self.assertEqual(e.flash_file(2), expected_flash(BLINK2, before))
        self.assertFalse(any(l.startswith("REBOOT") for l in e.sim_lines("node2")))

    def test_reboot_and_status(self):
        e = self.env
        job = e.call("Reboot", "sa{sv}", "node1", "0")["data"][0]
        # node1 has no application yet: the node says so and the job fails
        self.assertEqual(e.wait_job(job), "failed")
        self.assertIn("no valid application", e.job(job, "Error"))

        job = e.flash("1", BLINK, "reboot", "b", "false")
        self.assertEqual(e.wait_job(job), "succeeded", e.job(job, "Error"))
        job = e.call("Reboot", "sa{sv}", "node1", "0")["data"][0]
        self.assertEqual(e.wait_job(job), "succeeded", e.job(job, "Error"))

        st = e.call("Status", "s", "")["data"][0]
        self.assertEqual(st["Interface"]["data"], "vcan0")
        self.assertEqual(st["LinkState"]["data"], "up")
        self.assertEqual(st["ControllerState"]["data"], "unknown")   # vcan has no controller
        self.assertEqual(st["QueueLength"]["data"], 0)
        self.assertGreater(st["FramesSent"]["data"], 0)

    def test_access_denied(self):
        """A caller outside the group is refused and nothing reaches the bus."""
        e = self.env
        dump = subprocess.Popen(["candump", "-L", e.interface + ",1A000000:1F000000"],
                                stdout=subprocess.PIPE, text=True)
        time.sleep(0.5 * SLOW)
        with open(BLINK2, "rb") as f:
            data = f.read()
        p = e.run(["gdbus", "call", "--system", "--dest", BUS, "--object-path", PATH,
                   "--method", "org.stcisp.ispd1.Manager.Flash", "node1",
                   "b'" + data.decode().replace("\n", "\\n") + "'", "{}"], check=False, user="nobody")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("org.stcisp.ispd1.Error.AccessDenied", p.stderr)
        self.assertIn("only root and members of group 'stcisp'", p.stderr)
        for method, sig, args in (("Scan", "", []), ("Reboot", "sa{sv}", ["node1", "0"]), ("CancelJob", "u", ["1"])):
            p = e.call(method, sig, *args, check=False, user="nobody")
            self.assertNotEqual(p.returncode, 0, method)
            self.assertIn("may not change nodes", p.stderr, method)
        # reading is open to everyone
        self.assertEqual(e.call("ListJobs", user="nobody")["data"][0], [])
        time.sleep(0.5 * SLOW)
        dump.terminate()
        out, _ = dump.communicate(timeout=10)
        self.assertEqual(out.strip(), "", "frames reached the bus after a refused call")

    def test_invalid_image_refused(self):
        e = self.env
        broken = os.path.join(e.dir, "broken.hex")
        with open(BLINK) as f:
            lines = f.read().splitlines()
        lines[4] = lines[4][:11] + ("1" if lines[4][11] == "0" else "0") + lines[4][12:]
        with open(broken, "w") as f:
            f.write("\n".join(lines) + "\n")
        p = e.run(["gdbus", "call", "--system", "--dest", BUS, "--object-path", PATH,
                   "--method", "org.stcisp.ispd1.Manager.Flash", "node1",
                   "b'" + "\\n".join(lines) + "\\n'", "{}"], check=False)
        self.assertIn("org.stcisp.ispd1.Error.InvalidImage", p.stderr)
        self.assertIn("line 5: bad checksum", p.stderr)
        p = e.call("Flash", "saya{sv}", "node77x", "1", "0", "0", check=False)
        self.assertIn("No node 'node77x'", p.stderr)
        self.assertEqual(e.call("ListJobs")["data"][0], [])

    def test_dead_node_then_next_job(self):
        """A node that never answers fails its job clearly; the next job runs."""
        e = self.env
        dead = e.flash("node9", BLINK)
        good = e.flash("node1", BLINK)
        self.assertEqual(e.wait_job(dead), "failed")
        self.assertRegex(e.job(dead, "Error"), r"node9 did not answer CONNECT")
        self.assertEqual(e.job(dead, "Phase"), "connect")
        self.assertEqual(e.wait_job(good), "succeeded", e.job(good, "Error"))

    def test_unrelated_traffic(self):
        """cangen on standard and extended non-ISP IDs during a flash."""
        e = self.env
        before = e.flash_file(3)
        gens = [subprocess.Popen(["cangen", e.interface, "-g", "1", "-I", "123"]),
                subprocess.Popen(["cangen", e.interface, "-g", "1", "-e", "-I", "12345678", "-L", "8"]),
                subprocess.Popen(["cangen", e.interface, "-g", "2", "-e", "-I", "1C000003"]),
                subprocess.Popen(["cangen", e.interface, "-g", "3", "-R"])]
        try:
            job = e.flash("node3", BLINK)
            self.assertEqual(e.wait_job(job), "succeeded", e.job(job, "Error"))
        finally:
            for g in gens:
                g.terminate()
                g.wait()
        self.assertEqual(e.flash_file(3), expected_flash(BLINK, before))

    def test_stray_program_fails_verify(self):
        """Another host writes into a sector blink.hex leaves blank, after
        the blank check (at the daemon's first PROGRAM frame): the daemon
        hears it, verifies the whole application area, and fails; the entry
        stays erased, so the node stays in its ISP."""
        import threading
        import can
        from intelhex import IntelHex

        e = self.env
        used = {(a - 0xFE0000) // 512 for a in IntelHex(BLINK).addresses() if a >= 0xFE0000}
        sector = min(set(range(0x80)) - used)
        offset = sector * 512 + 0x10
        bus = can.Bus(channel=e.interface, interface="socketcan")
        sent = threading.Event()

        def inject():
            while not sent.is_set():
                m = bus.recv(timeout=0.2)
                if m is not None and m.is_extended_id and (m.arbitration_id & 0x1FF00000) == 0x1A200000:
                    bus.send(can.Message(arbitration_id=0x1A200000 | offset, data=b"\x12\x34", is_extended_id=True))
                    sent.set()

        th = threading.Thread(target=inject, daemon=True)
        th.start()
        try:
            job = e.flash("node3", BLINK)
            self.assertEqual(e.wait_job(job), "failed")
        finally:
            sent.set()
            th.join()
            bus.shutdown()
        err = e.job(job, "Error")
        lo, hi = sector * 512, sector * 512 + 511
        self.assertIn(f"node3: verify failed: sector FE:{lo:04X}-FE:{hi:04X}, which the image leaves blank, has CRC 0x", err)
        self.assertIn(f"instead of 0xBD7BC39F: another host wrote to it (PROGRAM at FE:{offset:04X} "
                      f"(1A2{offset:05X}#1234) on the bus during this flash); the entry is not written", err)
        flash = e.flash_file(3)
        self.assertEqual(flash[offset:offset + 2], b"\x12\x34")
        self.assertEqual(flash[0x11000], 0xFF, "the entry was written")

    def test_link_down_pauses_the_job(self):
        """The interface goes down mid-programming: the job pauses, the
        daemon says so, and it resumes and succeeds when the link is back."""
        e = self.env
        before = e.flash_file(2)
        job = e.flash("node2", BIG)
        e.wait_for("programming", lambda: e.job(job, "Phase") == "program" and e.job(job, "BytesDone") > 1000, 120)
        e.run(["ip", "link", "set", e.interface, "down"])
        try:
            e.wait_for("the daemon to see the link down",
                       lambda: e.call("Status", "s", "")["data"][0]["LinkState"]["data"] == "down", 30)
            time.sleep(2 * SLOW)
            self.assertEqual(e.job(job, "State"), "running")
        finally:
            e.run(["ip", "link", "set", e.interface, "up"])
        self.assertEqual(e.wait_job(job), "succeeded", e.job(job, "Error"))
        self.assertEqual(e.call("Status", "s", "")["data"][0]["LinkState"]["data"], "up")
        self.assertEqual(e.flash_file(2), expected_flash(BIG, before))
        self.assertIn("link is down, pausing", e.log("stcispd.log"))

    def test_cancel(self):
        e = self.env
        job = e.flash("node2", BIG)
        e.wait_for("programming", lambda: e.job(job, "Phase") == "program" and e.job(job, "BytesDone") > 0, 120)
        e.call("CancelJob", "u", job.rsplit("/", 1)[1])
        self.assertEqual(e.wait_job(job), "cancelled")
        flash = e.flash_file(2)
        self.assertEqual(flash[0x11000], 0xFF, "a cancelled flash left an entry behind")
        # the cancellation carries its reason, on the job and in the node table
        reason = "cancelled by a client ('ispctl cancel' or CancelJob)"
        self.assertEqual(e.job(job, "Error"), reason)
        self.assertEqual(e.job(job, "Nodes")[0][10], reason)
        status = e.call("Status", "s", "node2")["data"][0]
        self.assertEqual(status["LastFlashResult"]["data"], "cancelled: " + reason)

    def test_unknown_id_gets_no_row(self):
        """A flash to an id nothing answers on leaves no row in the node
        table: there may be no board at all."""
        e = self.env
        job = e.flash("node77", BLINK)
        self.assertEqual(e.wait_job(job), "failed")
        self.assertNotIn(77, [r[1] for r in e.call("ListNodesEx")["data"][0]])

    def test_foreign_announce_gets_no_row(self):
        """An ANNOUNCE is one frame anyone can send: from an id never
        configured nor seen answering it makes no row; a second one from
        a real board (node 1, in the table since the scan) still counts."""
        e = self.env
        job = e.call("Scan")["data"][0]
        self.assertEqual(e.wait_job(job), "succeeded")
        # INFO of protocol.md 4.2: version 1, caps, firmware, depth, UID
        subprocess.run(["cansend", e.interface, "1B700063#0107010410203040"], check=True)
        time.sleep(0.5 * SLOW)
        ids = [r[1] for r in e.call("ListNodesEx")["data"][0]]
        self.assertNotIn(99, ids)
        self.assertIn(1, ids)

    def test_introspection_matches_xml(self):
        e = self.env
        job = e.call("Scan")["data"][0]
        e.wait_job(job)
        live = {}
        for path in (PATH, job):
            xml = e.run(["busctl", "--system", "introspect", "--xml-interface", BUS, path]).stdout
            for iface in ET.fromstring(xml).findall("interface"):
                if iface.get("name").startswith("org.stcisp."):
                    live[iface.get("name")] = iface
        node = e.call("ListNodes")["data"][0][0][0]
        for path in (f"{PATH}/node/{node}", f"{PATH}/line/vcan0"):
            xml = e.run(["busctl", "--system", "introspect", "--xml-interface", BUS, path]).stdout
            for iface in ET.fromstring(xml).findall("interface"):
                if iface.get("name").startswith("org.stcisp."):
                    live[iface.get("name")] = iface
        doc = {i.get("name"): i for i in ET.parse(os.path.join(SRC, "dbus", "org.stcisp.ispd1.xml")).getroot()}
        self.assertEqual(sorted(live), sorted(doc))

        def canon(el):
            return (el.tag, tuple(sorted(el.attrib.items())), tuple(canon(c) for c in el))
        for name in live:
            self.assertEqual(canon(live[name]), canon(doc[name]), name)


class Crash(unittest.TestCase):
    def setUp(self):
        self.env = Env("vcan0")
        self.env.start_sim("--nodes", "2")
        self.env.start_daemon()

    def tearDown(self):
        self.env.close()

    def test_kill9_during_programming(self):
        e = self.env
        before = e.flash_file(2)
        job = e.flash("node2", BIG)
        e.wait_for("programming", lambda: e.job(job, "Phase") == "program" and e.job(job, "BytesDone") > 2000, 120)
        e.kill_daemon(signal.SIGKILL)
        # the node is in its ISP with the entry erased, not on a half-written application
        self.assertEqual(e.flash_file(2)[0x11000], 0xFF)
        e.start_daemon()
        self.assertEqual(e.wait_job(job), "succeeded", e.job(job, "Error"))
        self.assertEqual(e.job(job, "Attempts"), 2)
        # the restart says where the job was
        self.assertRegex(e.log("stcispd.log"), r"Job \d+ \(flash node2\) was interrupted in phase program, restarting")
        self.assertEqual(e.flash_file(2), expected_flash(BIG, before))
        check_commit_order(e.sim_lines("node2"))


class Journal(unittest.TestCase):
    """Under systemd, stderr is the journal (JOURNAL_STREAM names it): job
    messages then go to the journal natively, with fields to filter on.
    The guest has no journald, so the test takes the journal's socket
    itself and reads the entries as journald would receive them (the
    native protocol: KEY=value lines, or KEY, a 64-bit length and the
    value)."""

    SOCKET = "/run/systemd/journal/socket"

    def setUp(self):
        if os.path.exists(self.SOCKET):
            self.skipTest("a real journald owns " + self.SOCKET)
        os.makedirs(os.path.dirname(self.SOCKET), exist_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.SOCKET)
        self.sock.settimeout(0.2)
        self.env = Env("vcan0")
        self.env.start_sim("--nodes", "1-3")

    def tearDown(self):
        self.env.close()
        self.sock.close()
        os.unlink(self.SOCKET)

    def entries(self):
        out = []
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                return out
            fields, i = {}, 0
            while i < len(data):
                nl = data.index(b"\n", i)
                line = data[i:nl]
                if b"=" in line:
                    k, v = line.split(b"=", 1)
                    i = nl + 1
                else:
                    k = line
                    n = struct.unpack("<Q", data[nl + 1:nl + 9])[0]
                    v = data[nl + 9:nl + 9 + n]
                    i = nl + 9 + n + 1
                fields[k.decode()] = v.decode()
            out.append(fields)

    def test_job_fields(self):
        e = self.env
        log = os.path.join(e.dir, "stcispd.log")
        open(log, "ab").close()
        st = os.stat(log)
        e.env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        e.start_daemon()
        e.call("Status", "s", "")          # asks the driver (libsocketcan) on vcan
        job = e.flash("node3", BLINK)
        self.assertEqual(e.wait_job(job), "succeeded", e.job(job, "Error"))
        job_id = job.rsplit("/", 1)[1]
        time.sleep(0.5 * SLOW)
        got = [f for f in self.entries() if f.get("JOB_ID") == job_id]
        self.assertTrue(got, "no journal entry with JOB_ID=" + job_id)
        for f in got:
            self.assertEqual(f["SYSLOG_IDENTIFIER"], "stcispd")
            self.assertEqual(f["NODE"], "node3", f)
            self.assertEqual(f["INTERFACE"], "vcan0", f)
        ids = [f.get("MESSAGE_ID") for f in got]
        self.assertIn("6516b44de1154374b2ce198fc6c2d153", ids)      # started
        self.assertEqual(ids[-1], "ad0c8b19d1f447cbbde521b4da30bfdc")  # finished
        self.assertEqual(got[-1]["RESULT"], "succeeded")
        self.assertEqual(got[-1]["PRIORITY"], "6")
        self.assertIn(f"Job {job_id} (flash node3) succeeded", got[-1]["MESSAGE"])
        self.assertIn("program", [f.get("PHASE") for f in got])
        # what went to the journal is not also a plain line; libsocketcan says nothing
        text = e.log("stcispd.log")
        self.assertNotIn(f"Job {job_id} (flash node3) succeeded", text)
        self.assertNotIn("no link data found", text)


class AbsentInterface(unittest.TestCase):
    """An interface that does not exist when stcispd starts (a USB adapter
    plugged in later) is not fatal: the line is `absent`, its jobs wait,
    and it is attached when it appears, without a restart."""

    IF = "vcan7"

    def setUp(self):
        subprocess.run(["ip", "link", "del", self.IF], capture_output=True)
        self.env = Env(self.IF)

    def tearDown(self):
        self.env.close()
        subprocess.run(["ip", "link", "del", self.IF], capture_output=True)

    def test_attached_when_it_appears(self):
        e = self.env
        e.start_daemon()
        status = e.call("Status", "s", "")["data"][0]
        self.assertEqual(status["LinkState"]["data"], "absent")
        self.assertIn(f"{self.IF}: no such interface (yet): waiting for it to appear", e.log("stcispd.log"))
        job = e.call("Scan")["data"][0]
        time.sleep(1.5 * SLOW)
        self.assertEqual(e.job(job, "State"), "queued")        # waits for its line
        subprocess.run(["ip", "link", "add", self.IF, "type", "vcan"], check=True)
        subprocess.run(["ip", "link", "set", self.IF, "up"], check=True)
        e.start_sim("--nodes", "1-2")
        self.assertEqual(e.wait_job(job), "succeeded", e.job(job, "Error"))
        self.assertEqual(e.call("Status", "s", "")["data"][0]["LinkState"]["data"], "up")
        self.assertIn(f"{self.IF}: the interface appeared: attached", e.log("stcispd.log"))
        self.assertIsNone(e.daemon.poll())

    def test_scan_skips_an_absent_line(self):
        """A scan of every line scans those that are there: the absent one
        (an adapter not plugged in) does not hold it forever."""
        e = self.env
        e.start_daemon("--interface", "vcan1")
        e.spawn([SIM, "--interface", "vcan1", "--flash-dir", e.flash_dir, "--nodes", "4"], "sim1.log")
        e.wait_for("stcisp-sim on vcan1", lambda: "ready" in e.log("sim1.log"), 30)
        job = e.call("Scan")["data"][0]
        self.assertEqual(e.wait_job(job, timeout=60), "succeeded", e.job(job, "Error"))
        self.assertIn(["vcan1", 4], [[r[0], r[1]] for r in e.call("ListNodesEx")["data"][0]])

    def test_removed_and_back(self):
        """An adapter unplugged and plugged in again (the interface deleted
        and created anew, with a new index): the line goes `absent`, then
        attaches to the new interface, and a flash runs on it."""
        e = self.env
        subprocess.run(["ip", "link", "add", self.IF, "type", "vcan"], check=True)
        subprocess.run(["ip", "link", "set", self.IF, "up"], check=True)
        e.start_daemon()
        self.assertEqual(e.call("Status", "s", "")["data"][0]["LinkState"]["data"], "up")

        link_state = lambda: e.call("Status", "s", "")["data"][0]["LinkState"]["data"]
        subprocess.run(["ip", "link", "del", self.IF], check=True)
        e.wait_for("the line to be absent", lambda: link_state() == "absent", 10)
        self.assertIn(f"{self.IF}: the interface was removed: waiting for it to come back", e.log("stcispd.log"))

        subprocess.run(["ip", "link", "add", self.IF, "type", "vcan"], check=True)
        subprocess.run(["ip", "link", "set", self.IF, "up"], check=True)
        e.wait_for("the line to be up", lambda: link_state() == "up", 10)
        e.start_sim("--nodes", "1")
        before = e.flash_file(1)
        job = e.flash("node1", BLINK)
        self.assertEqual(e.wait_job(job), "succeeded", e.job(job, "Error"))
        self.assertEqual(e.flash_file(1), expected_flash(BLINK, before))
        self.assertEqual(e.log("stcispd.log").count(f"{self.IF}: the interface appeared: attached"), 1)
        self.assertIsNone(e.daemon.poll())


class Legacy(unittest.TestCase):
    def setUp(self):
        self.env = Env("vcan1")
        self.env.start_sim("--legacy")
        self.env.start_daemon()

    def tearDown(self):
        self.env.close()

    def test_flash_legacy(self):
        e = self.env
        before = e.flash_file(0)
        job = e.flash("legacy", BLINK)
        self.assertEqual(e.wait_job(job), "succeeded", e.job(job, "Error"))
        self.assertEqual(e.flash_file(0), expected_flash(BLINK, before) [:0x10000] + before[0x10000:0x11000] +
                         expected_flash(BLINK, before)[0x11000:])
        lines = e.sim_lines("legacy") or e.sim_lines("node0")
        self.assertTrue(any(l.startswith("ERASE all") for l in lines))
        check_commit_order(lines)


if __name__ == "__main__":
    unittest.main(verbosity=2)
