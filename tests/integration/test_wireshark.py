#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""contrib/wireshark's dissector on a real capture: dumpcap on vcan0 and
vcan1 while the daemon scans and flashes simulated boards (one in its
ISP, one running its application, a legacy node on vcan1) and while
cansend puts requests on the bus that a node refuses; then one tshark
run decodes the file with the dissector and every ISP frame is checked.

What a frame must show is worked out here from its CAN ID and data, as
docs/protocol.md lays them out, not taken from the dissector."""

import os
import signal
import subprocess
import time
import unittest
import zlib

from daemon_env import SIM, SLOW, SRC, Env, expected_flash

LUA = os.path.join(SRC, "contrib", "wireshark", "stcisp.lua")
# docs/protocol.md 12.1: three sectors, image CRC 0x5907571D. A small image
# keeps the capture short: tshark is slow in the emulated guest.
APP_HEX = """:03000000021234B5
:0812340075810712001080FE15
:0200000400FEFC
:04010000AABBCCDDED
:00000001FF
"""
APP_CRC = "0x5907571d"

NAMES = {0: "CONNECT", 1: "READ", 2: "PROGRAM", 3: "ERASE", 4: "REBOOT", 5: "CRC", 6: "IDENTIFY",
         7: "ENTER_ISP"}
STATUS = {0: "OK", 1: "RANGE", 2: "WRITE_FAILED", 3: "BAD_ARGUMENT", 5: "NO_APP"}

FIELDS = ["frame.number", "frame.interface_name", "can.id", "can.flags.xtd", "can.len", "_ws.col.Protocol",
          "stcisp.kind", "stcisp.cmd", "stcisp.command", "stcisp.node", "stcisp.target", "stcisp.offset",
          "stcisp.address", "stcisp.length", "stcisp.status", "stcisp.status.name", "stcisp.form",
          "stcisp.request_in", "stcisp.commit", "stcisp.erase.all", "stcisp.identify.variant", "stcisp.uid",
          "stcisp.identify.image_crc", "stcisp.about.app_version", "stcisp.crc", "stcisp.data", "stcisp.payload",
          "_ws.expert.severity", "_ws.expert.message"]
KEYS = ["no", "iface", "id", "xtd", "dlc", "proto", "kind", "cmd", "command", "node", "target", "offset",
        "address", "length", "status", "status_name", "form", "request_in", "commit", "erase_all", "variant",
        "uid", "image_crc", "app_version", "crc", "data", "payload", "severity", "expert"]
WARN, ERROR = str(6 << 20), str(8 << 20)

# Requests cansend puts on vcan0 for node 3, which sits in its ISP with an
# empty flash: (frame, the reply's status, docs/protocol.md's reason)
REFUSALS = [
    ("1A000003#", None),                  # CONNECT node 3: selected, INFO
    ("1A210FFC#0011223344", 1),           # PROGRAM touching the ISP area (4.4 check 2)
    ("1A300000#01000001", 1),             # ERASE of the ISP's first sector (4.5 check 2)
    ("1A300000#00010001", 3),             # ERASE at an unaligned start (4.5 check 1)
    ("1A11FFFC#", 1),                     # READ past the flash end (4.3)
    ("1A500000#01FFFC000010", 1),         # CRC past the flash end (4.7)
    ("1A200100#AA", 0),                   # PROGRAM into erased flash: ok
    ("1A200100#00", 2),                   # PROGRAM over a programmed byte (4.4 check 3)
    ("1A400000#", 5),                     # REBOOT without a valid entry (4.6)
]


def address(offset):
    logical = 0xFE0000 + offset
    return "%02X:%04X" % (logical >> 16 & 0xFF, logical & 0xFFFF)


def app_area(flash):
    return flash[:0x10000] + flash[0x11000:]


class Wireshark(unittest.TestCase):
    def setUp(self):
        e = self.env = Env("vcan0")
        # node 1 in its ISP, node 2 running an application (version 0x102),
        # node 3 in its ISP for cansend; a legacy node alone on vcan1
        e.start_sim("--nodes", "1-3", "--fault", "2:app,app-version=258")
        self.flash_dir1 = os.path.join(e.dir, "flash1")
        os.mkdir(self.flash_dir1)
        e.spawn([SIM, "--interface", "vcan1", "--flash-dir", self.flash_dir1, "--legacy"], "sim1.log")
        e.wait_for("stcisp-sim on vcan1", lambda: "ready" in e.log("sim1.log"), 30)
        e.start_daemon("--interface", "vcan1")
        self.image = os.path.join(e.dir, "app.hex")
        with open(self.image, "w") as f:
            f.write(APP_HEX)

    def tearDown(self):
        self.env.close()

    def capture(self):
        path = os.path.join(self.env.dir, "isp.pcapng")
        err = os.path.join(self.env.dir, "dumpcap.log")
        with open(err, "w") as f:
            p = subprocess.Popen(["dumpcap", "-q", "-i", "vcan0", "-i", "vcan1", "-w", path], stderr=f)
        self.env.procs.append(p)
        self.env.wait_for("dumpcap", lambda: p.poll() is not None or "Capturing on" in self.env.log("dumpcap.log"),
                          30)
        self.assertIsNone(p.poll(), self.env.log("dumpcap.log"))
        return p, path

    def decode(self, path):
        env = dict(self.env.env, HOME=self.env.dir, XDG_CONFIG_HOME=os.path.join(self.env.dir, "config"))
        args = ["tshark", "-n", "-r", path, "-X", "lua_script:" + LUA, "-T", "fields",
                "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=;"]
        for f in FIELDS:
            args += ["-e", f]
        p = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120 * SLOW)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn("Lua", p.stderr)
        return [dict(zip(KEYS, line.split("\t"))) for line in p.stdout.splitlines()]

    def test_capture_of_a_flash(self):
        e = self.env
        t0 = time.monotonic()
        dumpcap, path = self.capture()

        job = e.call("Scan")["data"][0]
        self.assertEqual(e.wait_job(job), "succeeded", e.job(job, "Error"))
        before1 = e.flash_file(1)
        job = e.flash_nodes(["vcan0/node1", "vcan0/node2"], self.image)
        legacy = e.flash("vcan1/legacy", self.image)
        self.assertEqual(e.wait_job(job), "succeeded", e.job(job, "Error"))
        self.assertEqual(e.wait_job(legacy), "succeeded", e.job(legacy, "Error"))
        self.assertEqual(e.flash_file(1), expected_flash(self.image, before1))

        for frame, _ in REFUSALS:
            e.run(["cansend", "vcan0", frame])
            time.sleep(0.1 * SLOW)
        # the last reply on the wire, then the capture ends
        e.wait_for("the REBOOT refusal", lambda: "REBOOT" in "".join(e.sim_lines("node3")), 10)
        time.sleep(0.5 * SLOW)
        dumpcap.send_signal(signal.SIGTERM)
        dumpcap.wait(timeout=30 * SLOW)
        t1 = time.monotonic()

        rows = self.decode(path)
        t2 = time.monotonic()
        print(f"capture {t1 - t0:.1f} s, tshark decode {t2 - t1:.1f} s, {len(rows)} frames", flush=True)
        by_no = {r["no"]: r for r in rows}

        isp = [r for r in rows if r["xtd"] == "1" and int(r["id"], 0) >> 24 in (0x1A, 0x1B)]
        self.assertGreater(len(isp), 50)
        # only ISP traffic is on these buses, and all of it is decoded
        self.assertEqual([r for r in rows if r not in isp], [])
        for r in isp:
            self.check_frame(r, by_no)

        vcan0 = [r for r in isp if r["iface"] == "vcan0"]
        vcan1 = [r for r in isp if r["iface"] == "vcan1"]
        self.check_flash(vcan0)
        self.check_legacy(vcan1)
        self.check_refusals(vcan0, by_no)

    # ---- what every frame shows ----

    def check_frame(self, r, by_no):
        ident = int(r["id"], 0)
        dlc = int(r["dlc"])
        cmd = ident >> 20 & 0xF
        arg = ident & 0xFFFFF
        request = ident >> 24 == 0x1A
        data = bytes.fromhex(r["payload"])
        with self.subTest(frame=r["no"], id=r["id"]):
            self.assertEqual(r["proto"], "STCISP")
            self.assertEqual(r["kind"], "0" if request else "1")
            self.assertEqual(r["cmd"], str(cmd))
            if request:
                name = NAMES[cmd]
                if cmd == 0 and arg == 0xFF:
                    name = "DISCOVER"
                self.assertEqual(r["command"], name)
                if cmd in (0, 6, 7):
                    self.assertEqual(r["target"], str(arg))
                    if 1 <= arg <= 254:
                        self.assertEqual(r["node"], str(arg))
                if cmd in (1, 2):
                    self.assertEqual(r["offset"], "0x%08x" % arg)
                    self.assertEqual(r["address"], address(arg))
                    self.assertEqual(r["length"], "8" if cmd == 1 else str(dlc))
                if cmd in (3, 5) and dlc in (4, 6):
                    self.assertEqual(r["offset"], "0x%08x" % int.from_bytes(data[:3], "big"))
                    self.assertEqual(r["address"], address(int.from_bytes(data[:3], "big")))
                if cmd == 3 and dlc == 0:
                    self.assertEqual(r["erase_all"], "1")
                return
            node = ident & 0xFF
            self.assertEqual(r["node"], str(node))
            self.assertEqual(r["form"], "legacy" if node == 0 and cmd != 6 else "extended")
            if cmd == 7:
                self.assertEqual(r["command"], "ANNOUNCE")
            elif cmd != 0:
                self.assertEqual(r["command"], NAMES[cmd])
            # the request it answers: the same command, earlier, and for
            # READ, PROGRAM, CRC and a sector ERASE its offset
            if cmd != 7:
                req = by_no[r["request_in"]]
                self.assertLess(int(req["no"]), int(r["no"]))
                self.assertEqual(req["cmd"], r["cmd"])
                self.assertEqual(req["iface"], r["iface"])
                if cmd == 0:
                    self.assertEqual(r["command"], req["command"])
                if cmd in (1, 2, 3, 5):
                    self.assertEqual(r["offset"], req["offset"])
                    self.assertEqual(r["address"], req["address"])
            if node != 0 and (cmd in (2, 3, 4, 5) or cmd == 1 and dlc == 1):
                self.assertEqual(r["status"], str(data[0]))
                self.assertEqual(r["status_name"], STATUS[data[0]])
            if node != 0 and cmd == 2:
                self.assertEqual(r["offset"], "0x%08x" % int.from_bytes(data[1:4], "big"))
            if cmd == 5:
                self.assertEqual(r["crc"], "0x%08x" % int.from_bytes(data[1:5], "big"))
            if cmd in (0, 7) and node != 0:
                self.assertEqual(r["uid"], data[4:8].hex())
            if cmd == 6:
                self.assertEqual(r["variant"], str(ident >> 8 & 0xFF))

    # ---- the flash on vcan0 ----

    def check_flash(self, rows):
        def find(**kw):
            return [r for r in rows if all(r[k] == v for k, v in kw.items())]

        # scan: DISCOVER answered by nodes 1 and 3; IDENTIFY both variants
        # answered by node 2's application
        disc = find(kind="0", command="DISCOVER")
        self.assertTrue(disc)
        self.assertLessEqual({"1", "3"}, {r["node"] for r in find(kind="1", command="DISCOVER")})
        for variant in ("0", "1"):
            self.assertTrue(find(kind="0", command="IDENTIFY", target="255", variant=variant))
        about = find(kind="1", command="IDENTIFY", node="2", variant="1")
        self.assertTrue(about)
        self.assertEqual(about[0]["app_version"], "0x00000102")

        # the daemon's own traffic draws no warning and no error
        daemon = rows[:-2 * len(REFUSALS)]
        self.assertEqual([r for r in daemon if r["severity"] in (WARN, ERROR)], [])
        # the commit: FF:1001-FF:1002, then the opcode alone
        commit = find(kind="0", command="PROGRAM", commit="1")
        self.assertEqual(len(commit), 2)
        self.assertTrue(all(r["data"] == "02" and r["address"] == "FF:1000" for r in commit))
        self.assertEqual(len(find(kind="0", command="PROGRAM", address="FF:1001")), 2)
        for n in ("1", "2"):
            with self.subTest(node=n):
                self.assertTrue(find(kind="0", command="CONNECT", node=n))
                info = find(kind="1", command="CONNECT", node=n)
                self.assertTrue(info)
                self.assertRegex(info[0]["uid"], r"^[0-9a-f]{8}$")
                acks = find(kind="1", command="PROGRAM", node=n, address="FF:1000")
                self.assertEqual([r["status_name"] for r in acks], ["OK"])
                self.assertTrue(find(kind="1", command="ERASE", node=n, status_name="OK"))
                crc = find(kind="1", command="CRC", node=n, status_name="OK")
                self.assertTrue(crc)
                self.assertTrue(all(r["crc"].startswith("0x") for r in crc))
                self.assertEqual([r["status_name"] for r in find(kind="1", command="REBOOT", node=n)], ["OK"])
                # after REBOOT the application says which image it runs
                ident = find(kind="1", command="IDENTIFY", node=n, variant="0")
                self.assertTrue(ident)
                self.assertEqual(ident[-1]["image_crc"], APP_CRC)
                self.assertEqual(ident[-1]["image_crc"], "0x%08x" % zlib.crc32(app_area(self.env.flash_file(int(n)))))
        # the entry sector is erased first
        self.assertTrue(find(kind="0", command="ERASE", address="FF:1000"))
        # node 2 ran its application: ENTER_ISP, then its ANNOUNCE
        self.assertTrue(find(kind="0", command="ENTER_ISP"))
        self.assertTrue(find(kind="1", command="ANNOUNCE", node="2"))

    def check_legacy(self, rows):
        replies = [r for r in rows if r["kind"] == "1"]
        self.assertTrue(replies)
        self.assertEqual({r["node"] for r in replies}, {"0"})
        self.assertEqual({r["form"] for r in replies}, {"legacy"})
        self.assertTrue(all("legacy node" in r["expert"] for r in replies))
        commands = {r["command"] for r in replies}
        self.assertTrue({"CONNECT", "ERASE", "PROGRAM", "REBOOT"} <= commands, commands)
        self.assertTrue([r for r in rows if r["command"] == "ERASE" and r["erase_all"] == "1"])
        acks = [r for r in replies if r["command"] == "PROGRAM"]
        self.assertTrue(all(r["address"] and r["status_name"] == "OK" for r in acks))
        self.assertIn("FF:1000", {r["address"] for r in acks})

    def check_refusals(self, rows, by_no):
        # the cansend frames are the last requests on vcan0, in order
        requests = [r for r in rows if r["kind"] == "0"][-len(REFUSALS):]
        for (frame, status), req in zip(REFUSALS, requests):
            with self.subTest(frame=frame):
                ident, data = frame.split("#")
                self.assertEqual(int(req["id"], 0), int(ident, 16))
                replies = [r for r in rows if r["kind"] == "1" and r["request_in"] == req["no"]]
                self.assertEqual(len(replies), 1, req)
                rep = replies[0]
                self.assertEqual(rep["node"], "3")
                if status is None:
                    self.assertEqual(rep["command"], "CONNECT")
                    continue
                self.assertEqual(rep["status"], str(status))
                self.assertEqual(rep["status_name"], STATUS[status])
                name = NAMES[int(ident[2], 16)]
                if status == 0:
                    self.assertEqual(rep["expert"], "")
                elif status == 2:
                    self.assertEqual(rep["severity"], ERROR)
                    self.assertEqual(rep["expert"], f"{name} failed on node 3: status 2, write failed")
                else:
                    self.assertEqual(rep["severity"], WARN)
                    text = {1: "outside the allowed range", 3: "bad length or argument",
                            5: "no valid application"}[status]
                    self.assertEqual(rep["expert"], f"{name} refused by node 3: status {status}, {text}")
                if status in (1, 3):
                    # the request itself is flagged: the node will refuse it
                    self.assertIn("the node refuses it with status", req["expert"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
