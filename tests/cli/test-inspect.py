#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""ispctl inspect against images written by other tools (python3-intelhex,
srec_cat, hex-to-bin conversions), with the expected figures computed here
independently: zlib for the CRC, plain Python for bytes and sectors."""

import json
import os
import random
import subprocess
import sys
import tempfile
import unittest
import zlib

from intelhex import IntelHex

ISPCTL = os.environ.get("ISPCTL", "ispctl")
SREC_CAT = os.environ.get("SREC_CAT", "srec_cat")


def run(*args, check_json=True):
    p = subprocess.run([ISPCTL, *args], capture_output=True, text=True)
    return p


def rec(addr, rtype, data=b""):
    """One Intel HEX record with a correct checksum."""
    body = bytes([len(data), addr >> 8, addr & 0xFF, rtype]) + bytes(data)
    return ":" + (body + bytes([-sum(body) & 0xFF])).hex().upper() + "\n"


LJMP = rec(0x0000, 0, b"\x02\x12\x34")
EOF = rec(0, 1)


def expected_figures(mem):
    """mem: {flash offset: byte} with the LJMP at 0x10000-0x10002."""
    ljmp = bytes(mem[0x10000 + i] for i in range(3))
    node = bytearray(b"\xff" * 0x20000)
    used = set()
    for off, b in mem.items():
        if 0x10000 <= off < 0x10003:
            continue
        node[off] = b
        used.add(off)
    node[0x11000:0x11003] = ljmp
    used.update(range(0x11000, 0x11003))
    return {
        "bytes": len(mem),
        "sectors": len({o // 512 for o in used}),
        "entry_target": ljmp[1] << 8 | ljmp[2],
        "crc32": zlib.crc32(bytes(node[:0x10000]) + bytes(node[0x11000:])),
    }


def random_mem(rng, low_bank):
    mem = {0x10000: 0x02, 0x10001: rng.randrange(0x10, 0x100), 0x10002: rng.randrange(256)}
    regions = [(0x11003, rng.randrange(0x11100, 0x18000))]
    if low_bank:
        start = rng.randrange(0, 0x8000)
        regions.append((start, start + rng.randrange(1, 0x4000)))
    for a, b in regions:
        for off in range(a, b):
            mem[off] = rng.randrange(256)
    return mem


class Inspect(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def inspect_json(self, path, *extra):
        p = run("inspect", "--json", *extra, path)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr, "")
        return json.loads(p.stdout)

    def assert_figures(self, got, fmt, want):
        self.assertEqual(got["format"], fmt)
        for k in ("bytes", "sectors", "entry_target", "crc32"):
            self.assertEqual(got[k], want[k], k)

    def test_intelhex_logical_and_plain(self):
        rng = random.Random(7)
        for i in range(6):
            low = i % 2 == 0
            mem = random_mem(rng, low)
            ih = IntelHex()
            for off, b in mem.items():
                # logical addresses when the low bank is used, plain 16-bit otherwise
                ih[(0xFE0000 + off) if low else (off - 0x10000)] = b
            path = os.path.join(self.dir, f"ih{i}.hex")
            ih.write_hex_file(path, byte_count=[16, 32, 8][i % 3])
            self.assert_figures(self.inspect_json(path), "hex", expected_figures(mem))

    def test_hex_to_bin(self):
        """intelhex's hex2bin fill leaves 0xFF in the ISP area: blank in a BIN."""
        rng = random.Random(11)
        for low in (False, True):
            mem = random_mem(rng, low)
            ih = IntelHex()
            for off, b in mem.items():
                ih[off if low else off - 0x10000] = b
            path = os.path.join(self.dir, "app.bin")
            ih.tobinfile(path, start=0, pad=0xFF)
            # What a BIN can say: 0xFF bytes are blank.
            want_mem = {o: b for o, b in mem.items() if b != 0xFF or 0x10000 <= o < 0x10003}
            self.assert_figures(self.inspect_json(path), "bin", expected_figures(want_mem))

    def test_srec_cat_hex(self):
        rng = random.Random(3)
        mem = random_mem(rng, True)
        binary = bytearray(b"\xff" * 0x20000)
        for off, b in mem.items():
            binary[off] = b
        src = os.path.join(self.dir, "flash.bin")
        with open(src, "wb") as f:
            f.write(binary)
        out = os.path.join(self.dir, "srec.hex")
        subprocess.run([SREC_CAT, src, "-binary", "-unfill", "0xFF", "1",
                        "-offset", "0xFE0000", "-o", out, "-intel"], check=True)
        want_mem = {o: b for o, b in mem.items() if b != 0xFF or 0x10000 <= o < 0x10003}
        got = self.inspect_json(out)
        self.assertEqual(got["crc32"], expected_figures(want_mem)["crc32"])
        self.assertEqual(got["entry_target"], expected_figures(want_mem)["entry_target"])
        self.assertEqual(got["sectors"], expected_figures(want_mem)["sectors"])

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_broken_hex_line(self):
        good = rec(0x1234, 0, b"\x74\x01\x0f")
        bad = good[:-3] + "3F\n"
        expected = good[-3:-1]
        path = self.write("broken.hex", LJMP + bad + EOF)
        p = run("inspect", "--json", path)
        self.assertEqual(p.returncode, 1)
        obj = json.loads(p.stdout)
        self.assertEqual(obj["line"], 2)
        self.assertIn(f"bad checksum 0x3F, expected 0x{expected}", obj["error"])
        self.assertIn(f"{path}:2: bad checksum 0x3F, expected 0x{expected}", p.stderr)

        p = run("inspect", path)
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stdout, "")
        self.assertEqual(p.stderr, f"{path}:2: bad checksum 0x3F, expected 0x{expected}\n")

    def test_rule_errors(self):
        cases = [
            (LJMP + rec(0x0003, 0, b"\xff") + EOF, 2, "data at FF:0003 is inside the ISP area"),
            (LJMP + rec(0x1000, 0, b"\x00") + EOF, 2, "data at FF:1000"),
            (rec(0, 0, b"\x02\x10\x02") + EOF, 1, "LJMP target 0x1002 is below 0x1003"),
            (LJMP + rec(0x2000, 0, b"\x00"), 2, "missing EOF record"),
            (LJMP + rec(0x0000, 6, b"\x00") + EOF, 2, "unknown record type 0x06"),
            (LJMP + rec(0x2000, 0, b"\x01\x02") + rec(0x2001, 0, b"\x03") + EOF, 3,
             "overlapping records with different data at FF:2001"),
            (LJMP + "\n\n" + rec(0x2000, 0, b"\x01").replace("01", "0x", 1) + EOF, 4, "bad hex digit"),
        ]
        for text, line, message in cases:
            p = run("inspect", "--json", self.write("r.hex", text))
            self.assertEqual(p.returncode, 1, text)
            obj = json.loads(p.stdout)
            self.assertEqual(obj["line"], line, text)
            self.assertIn(message, obj["error"])

        p = run("inspect", "--json", self.write("nolj.hex", rec(0x2000, 0, b"\x55") + EOF))
        self.assertEqual(p.returncode, 1)
        obj = json.loads(p.stdout)
        self.assertIsNone(obj["line"])
        self.assertIn("no reset vector", obj["error"])

    def test_missing_file(self):
        p = run("inspect", "--json", os.path.join(self.dir, "nope.hex"))
        self.assertEqual(p.returncode, 1)
        obj = json.loads(p.stdout)
        self.assertIn("nope.hex: cannot read: No such file or directory", obj["error"])
        self.assertIsNone(obj["line"])

    def test_usage_errors(self):
        for args in (["inspect"], ["inspect", "a", "b"], ["frobnicate"], ["--bogus", "inspect", "x"], [],
                     ["inspect", "--format", "srec", "x"]):
            p = run(*args)
            self.assertEqual(p.returncode, 2, args)
            self.assertEqual(p.stdout, "", args)
            self.assertNotEqual(p.stderr, "", args)
            p = run("--json", *args)
            self.assertEqual(p.returncode, 2, args)
            self.assertIn("error", json.loads(p.stdout), args)

    def test_format_option(self):
        """A .txt HEX file is detected from its content; --format bin overrides."""
        path = self.write("app.txt", LJMP + EOF)
        self.assertEqual(self.inspect_json(path)["format"], "hex")
        p = run("inspect", "--json", "--format", "bin", path)
        self.assertEqual(p.returncode, 1)
        self.assertIn("data at FF:0003 (file offset 0x3) is inside the ISP area", json.loads(p.stdout)["error"])

    def test_human_output(self):
        path = self.write("app.hex", LJMP + rec(0x1234, 0, b"\x74\x01\x0f") + EOF)
        p = run("inspect", path)
        self.assertEqual(p.returncode, 0, p.stderr)
        node = bytearray(b"\xff" * 0x20000)
        node[0x11000:0x11003] = b"\x02\x12\x34"
        node[0x11234:0x11237] = b"\x74\x01\x0f"
        crc = zlib.crc32(bytes(node[:0x10000]) + bytes(node[0x11000:]))
        self.assertEqual(p.stdout.splitlines(), [
            f"      File: {path}",
            "    Format: Intel HEX",
            "    Ranges: FF:1000-FF:1002       3 bytes span",
            "            FF:1234-FF:1236       3 bytes span",
            "      Data: 6 bytes (LJMP included)",
            "   Sectors: 2 of 248 (512 bytes each)",
            "     Entry: LJMP FF:1234, moved from FF:0000 to FF:1000",
            f"    CRC-32: 0x{crc:08X} (application area, 124 KiB)",
        ])


if __name__ == "__main__":
    unittest.main(verbosity=2)
