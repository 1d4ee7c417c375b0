#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Write the example firmware image the demo and the docs use.

The image is laid out like a Keil C251 build for the STC32G12K128, in
Intel HEX with logical addresses (type 04 records for FE: and FF:):

  FF:0000  LJMP FF:1100          the reset vector; the host moves it to FF:1000
  FF:1100  a blink loop          real 8051 code: toggle P1.0, busy-wait, repeat
  FF:1200  a version string      "stcisp example blink v<N>"
  FF:1300- pseudo-code filler    deterministic bytes standing in for a program
  FE:0000- a sine lookup table   data in the low bank, as a real build places it

Everything is computed from --version and fixed rules, so two runs give
the same file byte for byte. Usage: make-example-image.py [--version N]
[--size KIB] OUTPUT
"""

import argparse
import math
import random
import sys


def records(base, data, width=16):
    """Data records for `data` at logical address `base`, with type 04
    records whenever the upper 16 bits change."""
    out, upper = [], None
    for off in range(0, len(data), width):
        addr = base + off
        chunk = data[off:off + width]
        if addr >> 16 != upper:
            upper = addr >> 16
            out.append(record(0, 4, bytes([upper >> 8, upper & 0xFF])))
        # a record never crosses a 64 KiB boundary
        room = 0x10000 - (addr & 0xFFFF)
        out.append(record(addr & 0xFFFF, 0, chunk[:room]))
        if room < len(chunk):
            out.extend(records(addr + room, chunk[room:], width))
            upper = (addr + len(chunk)) >> 16
    return out


def record(addr, rtype, data):
    body = bytes([len(data), addr >> 8, addr & 0xFF, rtype]) + data
    return ":" + (body + bytes([-sum(body) & 0xFF])).hex().upper()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--version", type=int, default=1)
    ap.add_argument("--size", type=int, default=16, help="application size in KiB (default 16)")
    ap.add_argument("output")
    args = ap.parse_args()

    entry = 0x1100
    # MAIN: CPL P1.0 (B2 90); MOV R7,#0 (7F 00); DJNZ R7,$ (DF FE); SJMP MAIN (80 F8)
    blink = bytes([0xB2, 0x90, 0x7F, 0x00, 0xDF, 0xFE, 0x80, 0xF8])
    version = f"stcisp example blink v{args.version}\0".encode()
    rng = random.Random(0x5C15 + args.version)
    filler = bytes(rng.randrange(256) for _ in range(args.size * 1024 - 0x300))
    table = bytes(int(127.5 + 127.5 * math.sin(2 * math.pi * i / 256)) for i in range(256)) * 4

    lines = []
    lines += records(0xFF0000, bytes([0x02, entry >> 8, entry & 0xFF]))
    lines += records(0xFF0000 + entry, blink)
    lines += records(0xFF1200, version)
    lines += records(0xFF1300, filler)
    lines += records(0xFE0000, table)
    lines.append(record(0, 1, b""))

    with open(args.output, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
