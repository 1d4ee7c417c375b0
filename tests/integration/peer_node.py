#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""peer_node: an independent emulator of extended CAN ISP nodes.

Written from docs/protocol.md alone (sections 2-9 and 12), without
looking at the project's simulator or daemon, so that a test run
against it shows where the host relies on what the project's own
simulator happens to do rather than on the document.

Several extended nodes live in one process on one SocketCAN bus
(python3-can, plain socket defaults). Each has 128 KiB of flash with
the ISP area 0x10000-0x10FFF holding a fixed pattern, everything else
0xFF at start; INFO version 1, capabilities 0x07, firmware version
PEER_FW, receive depth 4, a UID per node.

Timing (13.3, a guidance the document asks simulators to expose as
settings): a sector erase takes --erase-ms (default 5 ms), a CRC
--crc-ms-per-kib per KiB (default 0.5 ms); while busy a node buffers at
most `depth` request frames and loses the rest (logged as LOST).

Log (stdout or --log FILE), one line per event, each starting with
"nodeN: ":
    ANNOUNCE
    CONNECT target T flags F -> selected S quiet Q
    PROGRAM 0xOOOOO len L status S wrote W      (W: bytes changed)
    ERASE all status S | ERASE 0xOOOOO count C status S
    READ 0xOOOOO status S
    CRC 0xOOOOO len 0xLLLLL status S
    REBOOT status S
    RUN (the application runs) | ENTER_ISP
    BUFFERED cmd C during ERASE|CRC (a request received while busy)
    LOST cmd C during ERASE|CRC (received while busy, the buffer full)
    IGNORED why
Lines without a node prefix: "ready N nodes", "dump N rx M" (the flash
files are written; N counts the dumps, M the request frames received
so far), "exit".
"""

import argparse
import collections
import os
import signal
import sys
import time
import zlib

import can

FLASH_SIZE = 0x20000
ISP_LO, ISP_HI = 0x10000, 0x10FFF
ENTRY = 0x11000
SECTOR = 0x200
ENTRY_SECTOR = ENTRY // SECTOR
APP_SECTORS = [s for s in range(FLASH_SIZE // SECTOR) if not ISP_LO // SECTOR <= s <= ISP_HI // SECTOR]
# full erase: the entry sector first (4.5, 9)
FULL_ERASE_ORDER = [ENTRY_SECTOR] + [s for s in APP_SECTORS if s != ENTRY_SECTOR]

REQ, REP = 0x1A, 0x1B
CONNECT, READ, PROGRAM, ERASE, REBOOT, CRC, IDENTIFY, ENTER_ISP = 0, 1, 2, 3, 4, 5, 6, 7
ENTER_ISP_MAGIC = bytes([0x12, 0xAB, 0xCD, 0x34])
JOIN, QUIET = 1, 2

PROTO_VERSION = 1
CAPS = 0x07
PEER_FW = 0x42
DEPTH = 4


def isp_pattern():
    """A fixed, recognisable content for the ISP area (never 0xFF)."""
    return bytes((i * 7 + 0x31) % 255 for i in range(0x1000))


def parse_ids(spec):
    ids = set()
    for part in spec.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            ids.update(range(int(lo, 0), int(hi, 0) + 1))
        else:
            ids.add(int(part, 0))
    for n in ids:
        if not 1 <= n <= 254:
            raise SystemExit(f"node id {n} not in 1-254")
    return sorted(ids)


class Node:
    def __init__(self, peer, nid, dead):
        self.peer = peer
        self.id = nid
        self.dead = dead
        self.flash = bytearray(b"\xff" * FLASH_SIZE)
        self.flash[ISP_LO:ISP_HI + 1] = isp_pattern()
        self.uid = bytes([0x50, 0x45, nid, (nid * 37) & 0xFF])
        self.info = bytes([PROTO_VERSION, CAPS, PEER_FW, DEPTH]) + self.uid
        self.in_isp = False
        self.selected = False
        self.quiet = False
        self.dfu_flag = False
        self.busy_until = None      # monotonic time an IAP operation ends
        self.pending = None         # reply to send when it ends
        self.rxbuf = collections.deque()
        self.tx = collections.deque()

    def log(self, text):
        self.peer.log(f"node{self.id}: {text}")

    def reply(self, cmd, data, variant=0):
        if not self.dead:
            self.tx.append(((REP << 24) | (cmd << 20) | (variant << 8) | self.id, bytes(data)))

    # ---- boot (section 8) ----

    def boot(self):
        self.selected = False
        self.quiet = False
        if self.dfu_flag:
            self.dfu_flag = False
            self.in_isp = True
        elif self.entry_valid():
            self.in_isp = False
            self.log("RUN")
            return
        else:
            self.in_isp = True
        if not self.dead:
            self.log("ANNOUNCE")
        self.reply(ENTER_ISP, self.info)

    def entry_valid(self):
        f = self.flash
        return f[ENTRY] == 0x02 and (f[ENTRY + 1] << 8 | f[ENTRY + 2]) >= 0x1003

    # ---- receiving ----

    def receive(self, cmd, arg, data, now):
        if self.dead:
            return
        if self.busy_until is not None:
            if len(self.rxbuf) < DEPTH:
                self.rxbuf.append((cmd, arg, data))
                self.log(f"BUFFERED cmd {cmd} during {self.busy_what}")
            else:
                self.log(f"LOST cmd {cmd} during {self.busy_what}")
            return
        self.execute(cmd, arg, data, now)

    def tick(self, now):
        """End an IAP operation that is due, then work off the buffer."""
        while self.busy_until is not None and now >= self.busy_until:
            self.busy_until = None
            if self.pending:
                self.reply(*self.pending)
                self.pending = None
            while self.rxbuf and self.busy_until is None:
                self.execute(*self.rxbuf.popleft(), now)

    def busy(self, now, seconds, cmd, data):
        if seconds <= 0:
            self.reply(cmd, data)
            return
        self.busy_what = "ERASE" if cmd == ERASE else "CRC"
        self.busy_until = now + seconds
        self.pending = (cmd, data)

    def execute(self, cmd, arg, data, now):
        if not self.in_isp:
            # the application: ENTER_ISP (4.8) and IDENTIFY (4.9)
            if cmd == ENTER_ISP and arg >> 8 == 0 and (arg & 0xFF) in (self.id, 0xFF) and data == ENTER_ISP_MAGIC:
                self.log("ENTER_ISP")
                self.dfu_flag = True
                self.boot()
            elif cmd == IDENTIFY and arg >> 8 == 0 and (arg & 0xFF) in (self.id, 0xFF) and len(data) == 1:
                if data[0] == 0:
                    # the CRC-32 of the application area, as section 11 defines it
                    crc = zlib.crc32(bytes(self.flash[0:0x10000]) + bytes(self.flash[0x11000:]))
                    self.log(f"IDENTIFY image {crc:08X}")
                    self.reply(IDENTIFY, self.uid + crc.to_bytes(4, "big"), variant=0)
                elif data[0] == 1:
                    self.log("IDENTIFY about")
                    self.reply(IDENTIFY, [1, 0x03, PEER_FW, 0x01, 0, 0, 0, 0], variant=1)
            return
        if cmd == CONNECT:
            self.connect(arg, data)
            return
        if cmd not in (READ, PROGRAM, ERASE, REBOOT, CRC):
            return          # 6-15 (7 too: an ISP ignores ENTER_ISP)
        if not self.selected:
            return
        if cmd == READ:
            self.read(arg)
        elif cmd == PROGRAM:
            self.program(arg, data)
        elif cmd == ERASE:
            self.erase(data, now)
        elif cmd == REBOOT:
            self.reboot()
        elif cmd == CRC:
            self.crc(data, now)

    def connect(self, arg, data):
        if arg >> 8:
            self.log(f"IGNORED CONNECT arg 0x{arg:05x}")
            return
        target = arg & 0xFF
        flags = data[0] if data else 0
        if target == self.id or target == 0:
            self.selected = True
            self.quiet = bool(flags & QUIET)
            answer = True
        elif target == 0xFF:
            answer = True
        else:
            if not flags & JOIN:
                self.selected = False
            answer = False
        self.log(f"CONNECT target {target} flags {flags} -> selected {int(self.selected)} quiet {int(self.quiet)}")
        if answer:
            self.reply(CONNECT, self.info)

    def read(self, off):
        if off + 7 <= 0x1FFFF:
            self.reply(READ, self.flash[off:off + 8])
            status = 0
        else:
            self.reply(READ, [1])
            status = 1
        self.log(f"READ 0x{off:05x} status {status}")

    def program(self, off, data):
        wrote = 0
        if len(data) == 0:
            status = 3
        elif any(ISP_LO <= o <= ISP_HI or o >= FLASH_SIZE for o in range(off, off + len(data))):
            status = 1
        elif any(self.flash[off + i] != b and self.flash[off + i] != 0xFF for i, b in enumerate(data)):
            status = 2
        else:
            for i, b in enumerate(data):
                if self.flash[off + i] != b:
                    self.flash[off + i] = b     # 0xFF -> b: clears bits only
                    wrote += 1
            status = 0 if self.flash[off:off + len(data)] == data else 2
        self.log(f"PROGRAM 0x{off:05x} len {len(data)} status {status} wrote {wrote}")
        if status or not self.quiet:
            self.reply(PROGRAM, [status, off >> 16 & 0xFF, off >> 8 & 0xFF, off & 0xFF])

    def erase(self, data, now):
        if len(data) == 0:
            sectors = FULL_ERASE_ORDER
            what = "ERASE all"
            status = 0
        elif len(data) == 4:
            start = data[0] << 16 | data[1] << 8 | data[2]
            count = data[3]
            what = f"ERASE 0x{start:05x} count {count}"
            end = start + count * SECTOR - 1
            if start % SECTOR or count == 0:
                status = 3
            elif (start <= ISP_HI and end >= ISP_LO) or end >= FLASH_SIZE:
                status = 1
            else:
                status = 0
            sectors = [s for s in range(start // SECTOR, start // SECTOR + count)] if status == 0 else []
        else:
            what = f"ERASE dlc {len(data)}"
            status = 3
            sectors = []
        for s in sectors:
            self.flash[s * SECTOR:(s + 1) * SECTOR] = b"\xff" * SECTOR
        self.log(f"{what} status {status}")
        self.busy(now, len(sectors) * self.peer.erase_s, ERASE, [status])

    def reboot(self):
        if self.entry_valid():
            self.log("REBOOT status 0")
            self.reply(REBOOT, [0])
            # after the reply is transmitted, the application starts
            self.in_isp = False
            self.selected = False
            self.quiet = False
            self.peer.dump(self)
            self.log("RUN")
        else:
            self.log("REBOOT status 5")
            self.reply(REBOOT, [5])

    def crc(self, data, now):
        if len(data) != 6:
            status, off, length = 3, 0, 0
        else:
            off = data[0] << 16 | data[1] << 8 | data[2]
            length = data[3] << 16 | data[4] << 8 | data[5]
            status = 1 if off >= FLASH_SIZE or off + length > FLASH_SIZE else 0
        value = zlib.crc32(self.flash[off:off + length]) if status == 0 else 0
        self.log(f"CRC 0x{off:05x} len 0x{length:05x} status {status}")
        self.busy(now, length / 1024 * self.peer.crc_s_per_kib if status == 0 else 0,
                  CRC, [status] + list(value.to_bytes(4, "big")))


class Peer:
    def __init__(self, args):
        self.erase_s = args.erase_ms / 1000
        self.crc_s_per_kib = args.crc_ms_per_kib / 1000
        self.flash_dir = args.flash_dir
        self.dumps = 0
        self.rx = 0
        self.signals = set()
        self.logf = open(args.log, "a") if args.log else sys.stdout
        dead = set(parse_ids(args.dead)) if args.dead else set()
        self.nodes = [Node(self, n, n in dead) for n in parse_ids(args.nodes)]
        self.bus = can.Bus(interface="socketcan", channel=args.interface,
                           can_filters=[{"can_id": REQ << 24, "can_mask": 0x1F000000, "extended": True}])

    def log(self, text):
        self.logf.write(text + "\n")

    def flush_log(self):
        self.logf.flush()

    def dump(self, node):
        if not self.flash_dir:
            return
        path = os.path.join(self.flash_dir, f"node{node.id}.bin")
        with open(path + ".tmp", "wb") as f:
            f.write(node.flash)
        os.replace(path + ".tmp", path)

    def dump_all(self):
        for n in self.nodes:
            self.dump(n)
        self.dumps += 1
        self.log(f"dump {self.dumps} rx {self.rx}")
        self.flush_log()

    def transmit(self):
        """Every node's queued replies, in CAN arbitration order: of the
        frames at the head of the nodes' transmit queues the lowest ID
        goes first; one node's frames stay in their order."""
        while True:
            heads = [n for n in self.nodes if n.tx]
            if not heads:
                return
            n = min(heads, key=lambda n: n.tx[0][0])
            ident, data = n.tx.popleft()
            msg = can.Message(arbitration_id=ident, is_extended_id=True, data=data)
            for attempt in range(100):
                try:
                    self.bus.send(msg)
                    break
                except can.CanError as e:      # ENOBUFS: the queue is full for a moment
                    if attempt == 99:
                        self.log(f"node{n.id}: SEND FAILED {e}")
                    time.sleep(0.001)

    def run(self):
        for n in self.nodes:
            n.boot()
        self.transmit()
        self.dump_all()
        self.log(f"ready {len(self.nodes)} nodes")
        self.flush_log()
        while True:
            now = time.monotonic()
            due = [n.busy_until for n in self.nodes if n.busy_until is not None]
            timeout = max(0.0, min(due) - now) if due else 0.2
            msg = self.bus.recv(timeout=timeout)
            if self.signals:
                if signal.SIGUSR1 in self.signals:
                    self.dump_all()
                if self.signals & {signal.SIGTERM, signal.SIGINT}:
                    return
                self.signals.clear()
            now = time.monotonic()
            for n in self.nodes:
                n.tick(now)
            self.transmit()
            if msg is None:
                self.flush_log()
                continue
            if (not msg.is_extended_id or msg.is_remote_frame or msg.is_fd or msg.is_error_frame
                    or msg.arbitration_id >> 24 != REQ):
                continue
            self.rx += 1
            cmd = msg.arbitration_id >> 20 & 0xF
            arg = msg.arbitration_id & 0xFFFFF
            data = bytes(msg.data[:msg.dlc])
            for n in self.nodes:
                n.receive(cmd, arg, data, now)
            self.transmit()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--interface", default="vcan0")
    ap.add_argument("--nodes", required=True, help="ids, e.g. 1-8 or 1,3,5")
    ap.add_argument("--dead", help="ids of nodes that never answer")
    ap.add_argument("--flash-dir", help="write DIR/nodeN.bin at start, on REBOOT, on SIGUSR1 and at exit")
    ap.add_argument("--log", help="log file (default stdout)")
    ap.add_argument("--erase-ms", type=float, default=5.0, help="time of one sector erase")
    ap.add_argument("--crc-ms-per-kib", type=float, default=0.5, help="CRC time per KiB")
    args = ap.parse_args()
    peer = Peer(args)

    # handled in the main loop, at most 0.2 s later (never inside a write)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(sig, lambda s, f: peer.signals.add(s))
    try:
        peer.run()
    finally:
        peer.dump_all()
        peer.log("exit")
        peer.flush_log()
        peer.bus.shutdown()


if __name__ == "__main__":
    main()
