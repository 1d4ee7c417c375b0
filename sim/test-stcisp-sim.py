#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""stcisp-sim on real SocketCAN, against Python's own AF_CAN socket and
zlib as independent peers. TAP output.

Usage: test-stcisp-sim.py PATH-TO-stcisp-sim [INTERFACE]

Meant to run inside tools/with-vcan (the integration suite does): it
fails, never skips, when there is no CAN interface to talk to.
"""
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib

SIM = sys.argv[1] if len(sys.argv) > 1 else 'stcisp-sim'
IFACE = sys.argv[2] if len(sys.argv) > 2 else 'vcan0'
EFF = 0x80000000
FMT = '=IB3x8s'
TIMEOUT = 10.0  # a qemu guest is slow: room, not precision

results = []


def tap_bail(msg):
    print(f'Bail out! {msg}')
    sys.exit(1)


def req_id(cmd, arg):
    return 0x1A000000 | cmd << 20 | arg


def rep_id(cmd, node):
    return 0x1B000000 | cmd << 20 | node


class Bus:
    def __init__(self):
        self.s = socket.socket(socket.AF_CAN, socket.SOCK_RAW, socket.CAN_RAW)
        # replies only
        self.s.setsockopt(socket.SOL_CAN_RAW, socket.CAN_RAW_FILTER,
                          struct.pack('=II', 0x1B000000 | EFF, 0x1F000000 | EFF | 0x40000000))
        self.s.bind((IFACE,))

    def send(self, can_id, data=b''):
        self.s.send(struct.pack(FMT, can_id | EFF, len(data), data.ljust(8, b'\0')))

    def recv(self, timeout=TIMEOUT):
        self.s.settimeout(timeout)
        try:
            frame = self.s.recv(16)
        except socket.timeout:
            return None
        can_id, dlc, data = struct.unpack(FMT, frame)
        return can_id & 0x1FFFFFFF, data[:dlc]

    def expect(self, can_id, timeout=TIMEOUT):
        got = self.recv(timeout)
        if got is None:
            raise AssertionError(f'no reply {can_id:08X} within {timeout} s')
        if got[0] != can_id:
            raise AssertionError(f'expected {can_id:08X}, got {got[0]:08X}#{got[1].hex()}')
        return got[1]

    def expect_silence(self, timeout=1.0):
        got = self.recv(timeout)
        if got is not None:
            raise AssertionError(f'unexpected {got[0]:08X}#{got[1].hex()}')

    def request(self, cmd, arg, data, reply_node):
        self.send(req_id(cmd, arg), data)
        return self.expect(rep_id(cmd, reply_node))


class Sim:
    def __init__(self, args, flash_dir):
        self.flash_dir = flash_dir
        self.log_path = os.path.join(flash_dir, 'sim.log')
        self.log = open(self.log_path, 'w')
        self.p = subprocess.Popen([SIM, '--interface', IFACE, '--flash-dir', flash_dir] + args,
                                  stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + TIMEOUT
        while 'ready' not in self.text():
            if self.p.poll() is not None or time.monotonic() > deadline:
                tap_bail(f'stcisp-sim did not get ready: {self.text()!r}')
            time.sleep(0.05)

    def text(self):
        with open(self.log_path) as f:
            return f.read()

    def flash(self, name):
        with open(os.path.join(self.flash_dir, name + '.bin'), 'rb') as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM):
        self.p.send_signal(sig)
        rc = self.p.wait(TIMEOUT)
        self.log.close()
        return rc


def test(fn):
    results.append(fn)
    return fn


def isp_pattern(offset):
    b = (offset ^ (offset >> 8) ^ 0xA5) & 0xFF
    return 0 if b == 0xFF else b


def run_all():
    print(f'1..{len(results)}')
    failed = 0
    for i, fn in enumerate(results, 1):
        try:
            fn()
            print(f'ok {i} - {fn.__name__}')
        except Exception as e:  # noqa: BLE001 - report every failure as TAP
            failed += 1
            print(f'not ok {i} - {fn.__name__}')
            for line in str(e).splitlines() or [repr(e)]:
                print(f'# {line}')
        sys.stdout.flush()
    return failed


# ---------------------------------------------------------------------------

state = {}
temp_dirs = []


@test
def announce_discover_and_flash_files():
    bus = Bus()  # listening before the sim starts: sees the ANNOUNCEs
    d = tempfile.mkdtemp(prefix='stcisp-sim-test-')
    temp_dirs.append(d)
    sim = Sim(['--nodes', '1-3', '--legacy'], d)
    state.update(bus=bus, sim=sim, dir=d)

    uids = {}
    for n in (1, 2, 3):
        info = bus.expect(rep_id(7, n))
        assert len(info) == 8 and info[0] == 1 and info[1] == 0x0F and info[3] == 4, info.hex()
        uids[n] = info[4:]
    assert len(set(uids.values())) == 3, 'UIDs are not distinct'
    state['uids'] = uids

    bus.send(req_id(0, 0xFF))
    assert bus.expect(rep_id(0, 0)) == b''  # the legacy node answers too, first
    for n in (1, 2, 3):
        assert bus.expect(rep_id(0, n))[4:] == uids[n]

    for name in ('node0', 'node1', 'node2', 'node3'):
        flash = sim.flash(name)
        assert len(flash) == 0x20000, (name, len(flash))
        assert flash[:0x10000] == b'\xff' * 0x10000 and flash[0x11000:] == b'\xff' * 0xF000
        assert all(flash[o] == isp_pattern(o) for o in range(0x10000, 0x11000))


@test
def program_read_crc_against_zlib():
    bus, sim = state['bus'], state['sim']
    bus.send(req_id(0, 2))
    bus.expect(rep_id(0, 0))  # legacy node, ignored from here on by reading past it
    bus.expect(rep_id(0, 2))
    data = bytes(range(0x40, 0x48))
    bus.send(req_id(2, 0x11200), data)
    acks = {bus.recv()[0], bus.recv()[0]}
    assert acks == {rep_id(2, 0), rep_id(2, 2)}, acks
    bus.send(req_id(1, 0x11200))
    got = {bus.recv(), bus.recv()}
    assert (rep_id(1, 2), data) in got and (rep_id(1, 0), data) in got, got

    bus.send(req_id(5, 0), bytes([0x01, 0x12, 0x00, 0x00, 0x00, 0x08]))
    crc = bus.expect(rep_id(5, 2))
    assert crc == b'\x00' + struct.pack('>I', zlib.crc32(data)), crc.hex()

    # the ISP area may be CRC'd: zlib over the pattern
    bus.send(req_id(5, 0), bytes([0x01, 0x00, 0x00, 0x00, 0x10, 0x00]))
    crc = bus.expect(rep_id(5, 2))
    want = zlib.crc32(bytes(isp_pattern(o) for o in range(0x10000, 0x11000)))
    assert crc == b'\x00' + struct.pack('>I', want), crc.hex()


@test
def refusals_and_and_rule():
    bus = state['bus']
    bus.send(req_id(2, 0x10FFC), bytes(8))          # partly in the ISP area
    assert bus.expect(rep_id(2, 2)) == bytes([1, 0x01, 0x0F, 0xFC])
    bus.send(req_id(2, 0x11200), b'\x41')           # 0x40 -> 0x41 needs a bit set
    assert bus.expect(rep_id(2, 2)) == bytes([2, 0x01, 0x12, 0x00])
    bus.expect_silence(0.5)  # the legacy node says nothing on failure
    bus.send(req_id(3, 0), bytes([0x01, 0x10, 0x01, 1]))  # unaligned
    assert bus.expect(rep_id(3, 2)) == b'\x03'
    # the legacy node knows no sector erase: any ERASE erases it all
    assert bus.expect(rep_id(3, 0)) == b''
    bus.expect_silence(0.5)


@test
def reboot_writes_flash_file():
    bus, sim = state['bus'], state['sim']
    # deselect the legacy node's noise: it answers everything, so expect it
    bus.send(req_id(4, 0))
    got = {bus.recv(), bus.recv()}
    assert (rep_id(4, 2), b'\x05') in got and (rep_id(4, 0), b'') in got, got
    time.sleep(0.2)
    flash = sim.flash('node2')
    assert flash[0x11200:0x11208] == bytes(range(0x40, 0x48)), flash[0x11200:0x11208].hex()


@test
def erase_takes_model_time():
    bus, sim = state['bus'], state['sim']
    t = time.monotonic()
    bus.send(req_id(3, 0), bytes([0x01, 0x12, 0x00, 4]))  # 4 sectors: 20 ms at 5 ms each
    # the legacy node erases everything (248 sectors, 1.24 s) and answers later
    assert bus.expect(rep_id(3, 2)) == b'\x00'
    assert time.monotonic() - t >= 0.020
    assert bus.expect(rep_id(3, 0)) == b''
    assert time.monotonic() - t >= 1.24, time.monotonic() - t
    bus.send(req_id(1, 0x11200))
    got = {bus.recv(), bus.recv()}
    assert (rep_id(1, 2), b'\xff' * 8) in got, got


@test
def application_and_enter_isp():
    bus, sim = state['bus'], state['sim']
    bus.send(req_id(2, 0x11000), b'\x02\x10\x03')
    got = {bus.recv(), bus.recv()}
    assert (rep_id(2, 2), bytes([0, 1, 0x10, 0])) in got, got
    bus.send(req_id(4, 0))
    got = {bus.recv(), bus.recv()}
    assert (rep_id(4, 2), b'\x00') in got, got   # node 2 runs its application
    assert (rep_id(4, 0), b'') in got, got       # so does the legacy node
    bus.send(req_id(0, 0xFF))
    assert bus.expect(rep_id(0, 1))
    assert bus.expect(rep_id(0, 3))
    bus.expect_silence(0.5)
    # node 2's application helper: its UID and zlib's CRC of what its
    # flash holds (written back at the REBOOT); the legacy application
    # and the ISPs of nodes 1 and 3 say nothing
    bus.send(req_id(6, 0xFF), b'\x00')
    flash = sim.flash('node2')
    want = state['uids'][2] + struct.pack('>I', zlib.crc32(flash[:0x10000] + flash[0x11000:]))
    assert bus.expect(0x1B600002) == want
    bus.send(req_id(6, 2), b'\x01')
    assert bus.expect(0x1B600102) == bytes([1, 0x03, 1, 0x01, 0, 0, 0, 0])
    bus.expect_silence(0.5)
    assert 'node2: IDENTIFY -> UID ' + state['uids'][2].hex().upper() in sim.text()
    bus.send(req_id(7, 2), bytes([0x12, 0xAB, 0xCD, 0x34]))
    info = bus.expect(rep_id(7, 2))
    assert info[0] == 1 and len(info) == 8
    bus.send(req_id(7, 0xFF), bytes([0x12, 0xAB, 0xCD, 0x34]))  # the legacy app: into ISP, silently
    bus.expect_silence(0.5)


@test
def sigusr1_and_sigterm_write_back():
    bus, sim = state['bus'], state['sim']
    bus.send(req_id(0, 3))
    bus.expect(rep_id(0, 0))
    bus.expect(rep_id(0, 3))
    bus.send(req_id(2, 0x00010), b'\x5a')
    bus.expect(rep_id(2, 0))
    bus.expect(rep_id(2, 3))
    sim.p.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + TIMEOUT
    while sim.flash('node3')[0x10] != 0x5A:
        assert time.monotonic() < deadline, 'SIGUSR1 did not write node3.bin'
        time.sleep(0.05)
    bus.send(req_id(2, 0x00011), b'\xa5')
    bus.expect(rep_id(2, 0))
    bus.expect(rep_id(2, 3))
    rc = sim.stop()
    assert rc == 0, rc
    assert sim.flash('node3')[0x11] == 0xA5
    assert 'flash written back' in sim.text()


@test
def power_cycle_keeps_flash():
    bus, d = state['bus'], state['dir']
    sim = Sim(['--nodes', '3', '--quiet'], d)
    state['sim'] = sim
    # node3's entry is erased: back in ISP, announced; its bytes survived
    bus.expect(rep_id(7, 3))
    bus.send(req_id(0, 3))
    bus.expect(rep_id(0, 3))
    bus.send(req_id(1, 0x00010))
    assert bus.expect(rep_id(1, 3))[:2] == b'\x5a\xa5'
    assert 'node3' not in sim.text()  # --quiet: no per-command lines
    assert sim.stop(signal.SIGINT) == 0


@test
def faults():
    bus = state['bus']
    d = tempfile.mkdtemp(prefix='stcisp-sim-faults-')
    temp_dirs.append(d)
    # node 6 holds a valid entry: its application starts at power-up and
    # does not come up
    flash = bytearray(b'\xff' * 0x20000)
    for o in range(0x10000, 0x11000):
        flash[o] = isp_pattern(o)
    flash[0x11000:0x11003] = b'\x02\x10\x03'
    with open(os.path.join(d, 'node6.bin'), 'wb') as f:
        f.write(flash)
    sim = Sim(['--nodes', '1-6', '--fault', '1:dead', '--fault', '2:duplicate',
               '--fault', '3:app,app-version=7', '--fault', '4:power-cut=2,restart-delay=300ms',
               '--fault', '4:drop-every=100', '--fault', '5:app,no-helper', '--fault', '6:boot-fail'], d)
    state['sim'] = sim
    got = sorted([bus.recv(), bus.recv(), bus.recv(), bus.recv()])
    assert [g[0] for g in got] == [rep_id(7, 2), rep_id(7, 2), rep_id(7, 4), rep_id(7, 6)], got
    assert got[0][1] != got[1][1], 'the two node 2s share a UID'
    bus.expect_silence(0.5)
    assert 'node6: its application did not come up: reset into ISP, ANNOUNCE' in sim.text()

    bus.send(req_id(0, 0xFF))  # node 4's 1st frame
    got = sorted([bus.recv(), bus.recv(), bus.recv(), bus.recv()])
    assert [g[0] for g in got] == [rep_id(0, 2), rep_id(0, 2), rep_id(0, 4), rep_id(0, 6)], got
    bus.expect_silence(0.5)

    t = time.monotonic()
    bus.send(req_id(0, 4))  # 2nd: the power goes while node 4 handles it
    info = bus.expect(rep_id(7, 4))  # its reply never comes; ANNOUNCE when power returns
    assert time.monotonic() - t >= 0.3, time.monotonic() - t
    bus.expect_silence(0.5)
    assert 'node4: power cut after 2 frames' in sim.text()

    # only node 3's application answers IDENTIFY: node 5's has no helper
    bus.send(req_id(6, 0xFF), b'\x01')
    about = bus.expect(0x1B600103)
    assert about[:3] == bytes([1, 0x03, 1]) and about[4:] == bytes([0, 0, 0, 7]), about.hex()
    bus.expect_silence(0.5)
    bus.send(req_id(7, 5), bytes([0x12, 0xAB, 0xCD, 0x34]))
    bus.expect_silence(0.5)

    assert sim.stop() == 0
    for name in ('node1', 'node2', 'node2-dup', 'node3', 'node4', 'node5', 'node6'):
        assert len(sim.flash(name)) == 0x20000


def main():
    if os.environ.get('STCISP_VCAN') not in ('netns', 'qemu'):
        tap_bail('STCISP_VCAN is not set: run through tools/with-vcan (the integration suite does)')
    if not os.path.exists(f'/sys/class/net/{IFACE}'):
        tap_bail(f'{IFACE} does not exist')
    failed = run_all()
    sim = state.get('sim')
    if sim and sim.p.poll() is None:
        sim.stop()
    for d in temp_dirs:
        shutil.rmtree(d, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()
