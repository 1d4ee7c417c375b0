#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""contrib/wireshark/stcisp.lua as tshark runs it, without a CAN bus: a
pcap (SocketCAN link type 227) of frames written here from the layouts
and worked examples of docs/protocol.md, one of every kind (both forms,
refusals and failures, frames that are not ISP traffic), decoded once
with -T fields and compared field by field."""

import os
import struct
import subprocess
import sys
import tempfile
import unittest

TSHARK = os.environ.get("TSHARK", "tshark")
LUA = os.path.join(os.environ["SOURCE_ROOT"], "contrib", "wireshark", "stcisp.lua")

CAN_EFF_FLAG = 0x80000000
CAN_RTR_FLAG = 0x40000000
CANFD_FDF = 0x04
# _ws.expert.severity as tshark prints it (epan/proto.h PI_CHAT ... PI_ERROR)
CHAT, NOTE, WARN, ERROR = (str(v << 20) for v in (2, 4, 6, 8))

FIELDS = ["frame.number", "_ws.col.Protocol", "stcisp.kind", "stcisp.command", "stcisp.node",
          "stcisp.target", "stcisp.offset", "stcisp.address", "stcisp.length", "stcisp.status",
          "stcisp.status.name", "stcisp.form", "stcisp.request_in", "stcisp.flags.join",
          "stcisp.flags.quiet", "stcisp.crc", "stcisp.uid", "stcisp.info.caps", "stcisp.info.depth",
          "stcisp.identify.variant", "stcisp.identify.image_crc", "stcisp.about.caps",
          "stcisp.about.app_version", "stcisp.erase.all", "stcisp.erase.count", "stcisp.commit",
          "stcisp.data", "stcisp.echo", "_ws.expert.severity", "_ws.expert.message"]
KEYS = ["no", "proto", "kind", "command", "node", "target", "offset", "address", "length", "status",
        "status_name", "form", "request_in", "join", "quiet", "crc", "uid", "caps", "depth", "variant",
        "image_crc", "about_caps", "app_version", "erase_all", "count", "commit", "data", "echo",
        "severity", "expert"]

# (frame in cansend notation, with "R" for RTR and "##" for CAN FD; what
# the dissector must show). Fields not named must be empty.
FRAMES = [
    # 12.2: one extended node, the whole update
    ("1A0000FF#", dict(kind="0", command="DISCOVER", target="255")),
    ("1B000003#0107010401020304", dict(kind="1", command="DISCOVER", node="3", form="extended", request_in="1",
                                       uid="01020304", caps="0x07", depth="4")),
    ("1A000003#", dict(kind="0", command="CONNECT", node="3", target="3")),
    ("1B000003#0107010401020304", dict(kind="1", command="CONNECT", node="3", form="extended", request_in="3",
                                       uid="01020304", caps="0x07", depth="4")),
    ("1A300000#01100001", dict(kind="0", command="ERASE", offset="0x00011000", address="FF:1000", length="512",
                               count="1")),
    ("1B300003#00", dict(kind="1", command="ERASE", node="3", form="extended", request_in="5", offset="0x00011000",
                         address="FF:1000", length="512", status="0", status_name="OK")),
    ("1A300000#", dict(kind="0", command="ERASE", erase_all="1")),
    ("1B300003#00", dict(kind="1", command="ERASE", node="3", form="extended", request_in="7", erase_all="1",
                         status="0", status_name="OK")),
    ("1A200100#AABBCCDD", dict(kind="0", command="PROGRAM", offset="0x00000100", address="FE:0100", length="4",
                               data="aabbccdd")),
    ("1B200003#00000100", dict(kind="1", command="PROGRAM", node="3", form="extended", request_in="9",
                               offset="0x00000100", address="FE:0100", status="0", status_name="OK")),
    ("1A500000#000000010000", dict(kind="0", command="CRC", offset="0x00000000", address="FE:0000",
                                   length="65536")),
    ("1B500003#00F3A0806D", dict(kind="1", command="CRC", node="3", form="extended", request_in="11",
                                 offset="0x00000000", address="FE:0000", length="65536", status="0",
                                 status_name="OK", crc="0xf3a0806d")),
    ("1A211001#1234", dict(kind="0", command="PROGRAM", offset="0x00011001", address="FF:1001", length="2",
                           data="1234")),
    ("1B200003#00011001", dict(kind="1", command="PROGRAM", node="3", form="extended", request_in="13",
                               offset="0x00011001", address="FF:1001", status="0", status_name="OK")),
    ("1A211000#02", dict(kind="0", command="PROGRAM", offset="0x00011000", address="FF:1000", length="1",
                         data="02", commit="1", severity=CHAT,
                         expert="Commit: the LJMP opcode at FF:1000 makes the application bootable")),
    ("1B200003#00011000", dict(kind="1", command="PROGRAM", node="3", form="extended", request_in="15",
                               offset="0x00011000", address="FF:1000", status="0", status_name="OK")),
    ("1A111000#", dict(kind="0", command="READ", offset="0x00011000", address="FF:1000", length="8")),
    ("1B100003#021234FFFFFFFFFF", dict(kind="1", command="READ", node="3", form="extended", request_in="17",
                                       offset="0x00011000", address="FF:1000", data="021234ffffffffff")),
    ("1A400000#", dict(kind="0", command="REBOOT")),
    ("1B400003#00", dict(kind="1", command="REBOOT", node="3", form="extended", request_in="19", status="0",
                         status_name="OK")),
    # 12.3: refusals and failures
    ("1A11FFFC#", dict(kind="0", command="READ", offset="0x0001fffc", address="FF:FFFC", length="8",
                       severity=WARN,
                       expert="READ reaches past the flash end (0x1FFFF): the node refuses it with status 1")),
    ("1B100003#01", dict(kind="1", command="READ", node="3", form="extended", request_in="21",
                         offset="0x0001fffc", address="FF:FFFC", status="1", status_name="RANGE",
                         severity=WARN,
                         expert="READ refused by node 3: status 1, outside the allowed range")),
    ("1A210FFC#0011223344", dict(kind="0", command="PROGRAM", offset="0x00010ffc", address="FF:0FFC",
                                 length="5", data="0011223344", severity=WARN,
                                 expert="PROGRAM touches the ISP area FF:0000-FF:0FFF: "
                                        "the node refuses it with status 1")),
    ("1B200003#01010FFC", dict(kind="1", command="PROGRAM", node="3", form="extended", request_in="23",
                               offset="0x00010ffc", address="FF:0FFC", status="1", status_name="RANGE",
                               severity=WARN,
                               expert="PROGRAM refused by node 3: status 1, outside the allowed range")),
    ("1A200100#00", dict(kind="0", command="PROGRAM", offset="0x00000100", address="FE:0100", length="1",
                         data="00")),
    ("1B200003#02000100", dict(kind="1", command="PROGRAM", node="3", form="extended", request_in="25",
                               offset="0x00000100", address="FE:0100", status="2", status_name="WRITE_FAILED",
                               severity=ERROR, expert="PROGRAM failed on node 3: status 2, write failed")),
    ("1A300000#00010001", dict(kind="0", command="ERASE", offset="0x00000100", address="FE:0100", length="512",
                               count="1", severity=ERROR,
                               expert="ERASE with a count of 0 or an unaligned start: "
                                      "the node refuses it with status 3")),
    ("1B300003#03", dict(kind="1", command="ERASE", node="3", form="extended", request_in="27",
                         offset="0x00000100", address="FE:0100", length="512", status="3",
                         status_name="BAD_ARGUMENT", severity=WARN,
                         expert="ERASE refused by node 3: status 3, bad length or argument")),
    ("1A400000#", dict(kind="0", command="REBOOT")),
    ("1B400003#05", dict(kind="1", command="REBOOT", node="3", form="extended", request_in="29", status="5",
                         status_name="NO_APP", severity=WARN,
                         expert="REBOOT refused by node 3: status 5, no valid application")),
    ("1A500000#01FFFC000010", dict(kind="0", command="CRC", offset="0x0001fffc", address="FF:FFFC", length="16",
                                   severity=WARN,
                                   expert="CRC reaches past the flash end (0x1FFFF): "
                                          "the node refuses it with status 1")),
    ("1B500003#0100000000", dict(kind="1", command="CRC", node="3", form="extended", request_in="31",
                                 offset="0x0001fffc", address="FF:FFFC", length="16", status="1",
                                 status_name="RANGE", crc="0x00000000", severity=WARN,
                                 expert="CRC refused by node 3: status 1, outside the allowed range")),
    # 12.4: QUIET multicast
    ("1A000005#03", dict(kind="0", command="CONNECT", node="5", target="5", join="1", quiet="1")),
    ("1B000005#0107010401AABBCC", dict(kind="1", command="CONNECT", node="5", form="extended", request_in="33",
                                       uid="01aabbcc", caps="0x07", depth="4")),
    # 12.5 and 4.9: running applications
    ("1A7000FF#12ABCD34", dict(kind="0", command="ENTER_ISP", target="255")),
    ("1B700003#0107010401020304", dict(kind="1", command="ANNOUNCE", node="3", form="extended", request_in="35",
                                       uid="01020304", caps="0x07", depth="4")),
    ("1A6000FF#00", dict(kind="0", command="IDENTIFY", target="255", variant="0")),
    ("1B600003#010203045907571D", dict(kind="1", command="IDENTIFY", node="3", form="extended", request_in="37",
                                       variant="0", uid="01020304", image_crc="0x5907571d")),
    ("1B600005#01AABBCC1C291CA3", dict(kind="1", command="IDENTIFY", node="5", form="extended", request_in="37",
                                       variant="0", uid="01aabbcc", image_crc="0x1c291ca3")),
    ("1A600003#01", dict(kind="0", command="IDENTIFY", node="3", target="3", variant="1")),
    ("1B600103#0103010100010002", dict(kind="1", command="IDENTIFY", node="3", form="extended", request_in="40",
                                       variant="1", about_caps="0x03", app_version="0x00010002")),
    # 12.6: a legacy node
    ("1A000000#", dict(kind="0", command="CONNECT", target="0", form="legacy")),
    ("1B000000#", dict(kind="1", command="CONNECT", node="0", form="legacy", request_in="42", severity=NOTE,
                       expert="Reply from a legacy node (node 0): it must be the only node in ISP on this bus "
                              "(protocol.md 6)")),
    ("1A211234#75810712001080FE", dict(kind="0", command="PROGRAM", offset="0x00011234", address="FF:1234",
                                       length="8", data="75810712001080fe")),
    ("1B200000#", dict(kind="1", command="PROGRAM", node="0", form="legacy", request_in="44", offset="0x00011234",
                       address="FF:1234", status="0", status_name="OK", severity=NOTE,
                       expert="Reply from a legacy node (node 0): it must be the only node in ISP on this bus "
                              "(protocol.md 6)")),
    # ECHO (capability bit 3): CRC and ERASE replies repeat the start offset;
    # one that repeats another offset answers another host's request
    ("1A500000#000400000200", dict(kind="0", command="CRC", offset="0x00000400", address="FE:0400", length="512")),
    ("1B500003#00BD7BC39F000400", dict(kind="1", command="CRC", node="3", form="extended", request_in="46",
                                       offset="0x00000400", address="FE:0400", length="512", status="0",
                                       status_name="OK", crc="0xbd7bc39f", echo="0x000400")),
    ("1A500000#000400000200", dict(kind="0", command="CRC", offset="0x00000400", address="FE:0400", length="512")),
    ("1B500003#00BD7BC39F000600", dict(kind="1", command="CRC", node="3", form="extended", request_in="48",
                                       offset="0x00000400", address="FE:0400", length="512", status="0",
                                       status_name="OK", crc="0xbd7bc39f", echo="0x000600", severity=ERROR,
                                       expert="echoes 0x000600, the request in this capture started at "
                                              "0x000400: it answers another request")),
    ("1A300000#", dict(kind="0", command="ERASE", erase_all="1")),
    ("1B300003#00FFFFFF", dict(kind="1", command="ERASE", node="3", form="extended", request_in="50",
                               erase_all="1", status="0", status_name="OK", echo="0xffffff")),
    # malformed and unknown: a reply whose ID has stray bits 19..8, an
    # unknown command
    ("1B300103#00", dict(kind="1", command="ERASE", node="3", form="extended", status="0", status_name="OK",
                         severity=ERROR, expert="reply ID bits 19..8 are not zero: hosts ignore it")),
    ("1A900000#11", dict(kind="0", command="UNKNOWN", data="11", severity=WARN,
                         expert="Command 9 is not defined (protocol.md 3): nodes ignore it")),
    # not ISP traffic (2.1): an 11-bit ID, RTR, CAN FD, another 29-bit ID
    ("123#0102", None),
    ("1A0000FF#R", None),
    ("1A100000##", None),
    ("18DAF110#0102", None),
]


def frame_bytes(text):
    """One packet of link type 227: the ID big-endian with the kernel's
    flags, the DLC, flags, two reserved bytes, the data padded."""
    ident, data = text.split("#", 1)
    can_id = int(ident, 16)
    if len(ident) == 8:
        can_id |= CAN_EFF_FLAG
    fd = data.startswith("#")
    if fd:
        data = data[1:]
    if data == "R":
        can_id |= CAN_RTR_FLAG
        data = ""
    payload = bytes.fromhex(data)
    head = struct.pack(">IBBBB", can_id, len(payload), CANFD_FDF if fd else 0, 0, 0)
    return head + payload.ljust(64 if fd else 8, b"\0")


def write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 227))
        for i, text in enumerate(frames):
            pkt = frame_bytes(text)
            f.write(struct.pack("<IIII", 1700000000 + i, 0, len(pkt), len(pkt)) + pkt)


class Dissector(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        pcap = os.path.join(cls.tmp.name, "isp.pcap")
        write_pcap(pcap, [f for f, _ in FRAMES])
        # a private HOME: no personal plugin or preference changes the decode
        env = dict(os.environ, HOME=cls.tmp.name, XDG_CONFIG_HOME=os.path.join(cls.tmp.name, ".config"))
        args = [TSHARK, "-n", "-r", pcap, "-X", "lua_script:" + LUA, "-T", "fields",
                "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=;"]
        for f in FIELDS:
            args += ["-e", f]
        p = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
        cls.stderr = p.stderr
        if p.returncode != 0:
            raise AssertionError(f"tshark failed ({p.returncode}): {p.stderr}")
        cls.rows = [dict(zip(KEYS, line.split("\t"))) for line in p.stdout.splitlines()]

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_no_lua_error(self):
        self.assertNotIn("Lua", self.stderr)
        self.assertNotIn("rror", self.stderr.replace("Running as user", ""))

    def test_every_frame(self):
        self.assertEqual(len(self.rows), len(FRAMES))
        for row, (text, want) in zip(self.rows, FRAMES):
            with self.subTest(frame=row["no"], can=text):
                if want is None:
                    self.assertNotEqual(row["proto"], "STCISP")
                    self.assertEqual(row["command"], "", "not ISP traffic, yet decoded")
                    continue
                self.assertEqual(row["proto"], "STCISP")
                got = {k: v for k, v in row.items() if k not in ("no", "proto") and v != ""}
                self.assertEqual(got, want)


if __name__ == "__main__":
    unittest.main(verbosity=2, argv=[sys.argv[0]])
