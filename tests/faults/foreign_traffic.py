#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Foreign traffic on a CAN interface while a flash runs, seeded, through
python3-can: random extended ids outside the ISP range, spoofed replies
from the target's id, replies from node ids nobody configured, foreign
ISP requests that change nothing (DISCOVER, READ, CRC: the nodes answer
these, and a CRC reply carries no offset to tie it to its request), and
a flood paced at RATE frames/s. Never PROGRAM or ERASE: a foreign writer
can destroy a board whatever the daemon does.

Usage: foreign_traffic.py INTERFACE SEED RATE TARGET [TARGET...]
Runs until SIGTERM, then prints "sent N frames in T s"."""

import random
import signal
import sys
import time

import can


def frame(rng, targets):
    kind = rng.random()
    if kind < 0.35:
        # random extended id, not 0x1A...... or 0x1B...... (not ISP)
        while True:
            cid = rng.getrandbits(29)
            if cid >> 24 not in (0x1A, 0x1B):
                break
        return cid, bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 8)))
    if kind < 0.6:
        # a spoofed reply from a target: PROGRAM ack, CRC, INFO, READ data
        node = rng.choice(targets)
        cmd = rng.choice((0, 1, 2, 3, 5))
        dlc = {0: 8, 1: 8, 2: 4, 3: 1, 5: 5}[cmd]
        data = bytes(rng.getrandbits(8) for _ in range(dlc))
        if cmd in (2, 3, 5) and rng.random() < 0.5:
            data = b"\x00" + data[1:]       # looks like a success
        return 0x1B000000 | cmd << 20 | node, data
    if kind < 0.75:
        # a reply from a node id nobody has (200-254): INFO, ANNOUNCE, CRC
        node = rng.randint(200, 254)
        cmd = rng.choice((0, 7, 5))
        return 0x1B000000 | cmd << 20 | node, bytes(rng.getrandbits(8) for _ in range(8 if cmd != 5 else 5))
    # foreign ISP requests that change no flash: DISCOVER, READ, CRC
    cmd = rng.choice(("discover", "read", "crc", "crc"))
    if cmd == "discover":
        return 0x1A0000FF, b""
    if cmd == "read":
        return 0x1A100000 | rng.randrange(0, 0x20000 - 8), b""
    off = rng.randrange(0, 0x20000, 512)
    length = rng.choice((512, 1024, 0x1000))
    return 0x1A500000, off.to_bytes(3, "big") + min(length, 0x20000 - off).to_bytes(3, "big")


def main():
    interface, seed, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    targets = [int(t) for t in sys.argv[4:]]
    rng = random.Random(seed)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    bus = can.interface.Bus(channel=interface, interface="socketcan")
    print("started", flush=True)
    sent = 0
    start = time.monotonic()
    period = 1.0 / rate
    due = start
    while not stop:
        cid, data = frame(rng, targets)
        try:
            bus.send(can.Message(arbitration_id=cid, is_extended_id=True, data=data), timeout=0.1)
            sent += 1
        except can.CanError:
            pass
        due += period
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -0.5:
            due = time.monotonic()      # fell behind: do not burst to catch up
    took = time.monotonic() - start
    bus.shutdown()
    print(f"sent {sent} frames in {took:.2f} s", flush=True)


if __name__ == "__main__":
    main()
