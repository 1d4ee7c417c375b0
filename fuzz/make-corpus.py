#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Write the seed corpora of the fuzz targets into fuzz/corpus/.

  corpus/image/  image files, valid and broken, as ispctl would read them
  corpus/frame/  CAN frames in fuzz-frame.c's input layout
  corpus/session/    benches and faults in fuzz-session.c's input layout
  corpus/job-store/  state directories in fuzz-job-store.c's layout
  corpus/config/     stcispd.conf texts

The files are committed; run this again after changing it
(/usr/bin/python3 fuzz/make-corpus.py). Only the files named here are
written: regression inputs saved next to them stay untouched.
"""

import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def hex_record(address, rtype, data=b""):
    body = bytes([len(data), address >> 8 & 0xFF, address & 0xFF, rtype]) + bytes(data)
    return ":" + body.hex().upper() + "%02X" % (-sum(body) & 0xFF)


def ext_linear(upper):
    return hex_record(0, 0x04, bytes([upper >> 8, upper & 0xFF]))


EOF = hex_record(0, 0x01)
LJMP_1003 = hex_record(0x0000, 0x00, b"\x02\x10\x03")    # FF:0000: LJMP FF:1003
CODE = bytes(range(0x10, 0x30))                            # 32 bytes of "code"


def hex_file(lines, newline="\n"):
    return (newline.join(lines) + newline).encode()


def image_seeds():
    seeds = {}

    # Accepted.
    seeds["valid-plain.hex"] = hex_file([
        LJMP_1003,
        hex_record(0x1003, 0x00, CODE[:16]),
        hex_record(0x1013, 0x00, CODE[16:]),
        EOF,
    ])
    seeds["valid-logical-crlf.hex"] = hex_file([
        ext_linear(0x00FE),
        hex_record(0x0000, 0x00, CODE[:16]),
        hex_record(0xFFF8, 0x00, CODE[:8]),                # up to FE:FFFF
        ext_linear(0x00FF),
        hex_record(0x0000, 0x00, b"\x02\x12\x34"),
        hex_record(0x1234, 0x00, CODE),
        hex_record(0xFFF0, 0x00, CODE[:16]),               # the last flash bytes
        hex_record(0, 0x05, b"\x00\xFF\x12\x34"),          # start address: ignored
        EOF,
    ], newline="\r\n")
    seeds["valid-segment.hex"] = hex_file([
        hex_record(0, 0x02, b"\x00\x00"),
        LJMP_1003,
        hex_record(0, 0x02, b"\x01\x00"),                  # base 0x1000
        hex_record(0x0003, 0x00, CODE[:8]),                # FF:1003
        hex_record(0, 0x03, b"\x00\x00\x10\x03"),
        "",                                                # blank lines are skipped
        EOF,
    ])
    seeds["valid-overlap-same.hex"] = hex_file([
        LJMP_1003,
        LJMP_1003,                                         # identical overlap is fine
        hex_record(0x2000, 0x00, CODE[:8]),
        hex_record(0x2004, 0x00, CODE[4:12]),
        EOF,
    ])
    seeds["valid.bin"] = b"\x02\x10\x03" + b"\xFF" * (0x1000 - 3) + CODE
    seeds["valid-short.bin"] = b"\x02\x20\x00"             # the LJMP alone

    # Refused.
    seeds["bad-checksum.hex"] = hex_file([LJMP_1003[:-2] + "00", EOF])
    seeds["missing-eof.hex"] = hex_file([LJMP_1003])
    seeds["isp-area.hex"] = hex_file([LJMP_1003, hex_record(0x0100, 0x00, b"\x00"), EOF])
    seeds["entry-reserved.hex"] = hex_file([LJMP_1003, hex_record(0x1000, 0x00, b"\x02"), EOF])
    seeds["overlap-differs.hex"] = hex_file([
        LJMP_1003,
        hex_record(0x2000, 0x00, b"\x01\x02"),
        hex_record(0x2001, 0x00, b"\x03"),
        EOF,
    ])
    seeds["no-ljmp.hex"] = hex_file([hex_record(0x1003, 0x00, CODE[:4]), EOF])
    seeds["incomplete-ljmp.hex"] = hex_file([hex_record(0x0000, 0x00, b"\x02\x10"), EOF])
    seeds["low-target.hex"] = hex_file([hex_record(0x0000, 0x00, b"\x02\x0F\xFF"), EOF])
    seeds["not-ljmp.hex"] = hex_file([hex_record(0x0000, 0x00, b"\x12\x10\x03"), EOF])
    seeds["outside.hex"] = hex_file([LJMP_1003, ext_linear(0x0002), hex_record(0x0000, 0x00, b"\x00"), EOF])
    seeds["bad-type.hex"] = hex_file([LJMP_1003, hex_record(0, 0x06, b"\x00"), EOF])
    seeds["bad-eof-length.hex"] = hex_file([LJMP_1003, hex_record(0, 0x01, b"\x00")])
    seeds["bad-digit.hex"] = hex_file([LJMP_1003, ":0G000001FF", EOF])
    seeds["odd-digits.hex"] = hex_file([LJMP_1003, ":00000001F", EOF])
    seeds["short-record.hex"] = hex_file([LJMP_1003, ":00000001", EOF])
    seeds["length-mismatch.hex"] = hex_file([LJMP_1003, ":0500000001FA", EOF])
    seeds["empty.hex"] = b""
    seeds["low-target.bin"] = b"\x02\x10\x00"
    seeds["isp-area.bin"] = b"\x02\x10\x03" + b"\xFF" * 13 + b"\x00"
    seeds["entry-reserved.bin"] = b"\x02\x10\x03" + b"\xFF" * (0x1000 - 3) + b"\x00"
    seeds["blank.bin"] = b"\xFF" * 64
    return seeds


# fuzz-frame.c's layout: ID (u32 LE), flags, len, 8 data bytes; then the
# fields of a request and of a reply to build.
EXT = 0x01
RTR = 0x02
FD = 0x04


def frame(can_id, data=b"", flags=EXT, length=None):
    data = bytes(data)
    return struct.pack("<IBB", can_id, flags, len(data) if length is None else length) + data.ljust(8, b"\0")


def req_id(cmd, arg=0):
    return 0x1A000000 | cmd << 20 | arg


def rep_id(cmd, node):
    return 0x1B000000 | cmd << 20 | node


def build_request(cmd, *fields):
    return bytes([cmd]) + b"".join(fields)


def build_reply(cmd, node, legacy, status, union=b""):
    return bytes([cmd, node, legacy, status]) + bytes(union).ljust(8, b"\0")


def u32(v):
    return struct.pack("<I", v)


INFO = bytes([1, 0x07, 0x12, 4, 0xDE, 0xAD, 0xBE, 0xEF])
MAGIC = b"\x12\xAB\xCD\x34"


def frame_seeds():
    no_build = build_request(8) + build_reply(8, 0, 0, 0)     # cmd 8: nothing to build
    seeds = {
        # Requests.
        "req-connect-discover": frame(req_id(0, 0xFF), b"\x00"),
        "req-connect-legacy": frame(req_id(0, 0)),
        "req-connect-quiet": frame(req_id(0, 5), b"\x03"),
        "req-read": frame(req_id(1, 0x11000)),
        "req-read-end": frame(req_id(1, 0x1FFF8)),
        "req-program": frame(req_id(2, 0x11003), CODE[:8]),
        "req-program-last": frame(req_id(2, 0x1FFFF), b"\xAA"),
        "req-erase-whole": frame(req_id(3)),
        "req-erase-sectors": frame(req_id(3), b"\x01\x10\x00\x04"),
        "req-reboot": frame(req_id(4)),
        "req-crc": frame(req_id(5), b"\x00\x00\x00\x01\x00\x00"),
        "req-enter-isp": frame(req_id(7, 0xFF), MAGIC),
        "req-identify-all": frame(req_id(6, 0xFF), b"\x00"),
        "req-identify-about": frame(req_id(6, 3), b"\x01"),
        # Replies.
        "rep-connect-info": frame(rep_id(0, 3), INFO),
        "rep-connect-legacy": frame(rep_id(0, 0)),
        "rep-connect-legacy-payload": frame(rep_id(0, 0), b"\x01\x02"),
        "rep-read-data": frame(rep_id(1, 7), CODE[:8]),
        "rep-read-legacy": frame(rep_id(1, 0), CODE[8:16]),
        "rep-read-refused": frame(rep_id(1, 7), b"\x01"),
        "rep-program": frame(rep_id(2, 9), b"\x00\x01\x10\x03"),
        "rep-program-legacy": frame(rep_id(2, 0)),
        "rep-erase": frame(rep_id(3, 9), b"\x00"),
        "rep-reboot-no-app": frame(rep_id(4, 9), b"\x05"),
        "rep-crc": frame(rep_id(5, 254), b"\x00\xCB\xF4\x39\x26"),
        "rep-announce": frame(rep_id(7, 1), INFO),
        "rep-identity": frame(rep_id(6, 3), b"\x01\x02\x03\x04\x59\x07\x57\x1D"),
        "rep-about": frame(rep_id(6, 3) | 1 << 8, b"\x01\x03\x01\x01\x00\x01\x00\x02"),
        "bad-identify-variant": frame(rep_id(6, 3) | 2 << 8, INFO),
        "bad-identify-node0": frame(rep_id(6, 0), INFO),
        # Refused.
        "bad-standard-id": frame(0x123, b"\x01", flags=0),
        "bad-rtr": frame(req_id(4), flags=EXT | RTR),
        "bad-fd": frame(req_id(4), flags=EXT | FD),
        "bad-dlc-9": frame(req_id(2, 0x11003), CODE[:8], length=9),
        "bad-dlc-255": frame(rep_id(1, 7), CODE[:8], length=255),
        "bad-magic": frame(req_id(7, 3), b"\x12\xAB\xCD\x35"),
        "bad-unknown-cmd": frame(req_id(8)),
        "bad-erase-unaligned": frame(req_id(3), b"\x01\x10\x01\x01"),
        "bad-crc-range": frame(req_id(5), b"\x01\xFF\xFF\x00\x00\x02"),
        "bad-reply-broadcast": frame(rep_id(0, 0xFF), INFO),
        "bad-reply-stray-bits": frame(rep_id(2, 0x109), b"\x00\x01\x10\x03"),
    }
    for name in seeds:
        seeds[name] += no_build

    # Struct → frame: requests and replies to build, after a frame that
    # parses as nothing.
    junk = frame(0)
    seeds["build-program"] = junk + build_request(2, u32(0x11003), b"\x08", CODE[:8]) + build_reply(2, 9, 0, 0, u32(0x11003))
    seeds["build-erase"] = junk + build_request(3, b"\x00", u32(0x400), b"\x02") + build_reply(3, 0, 1, 0)
    seeds["build-crc"] = junk + build_request(5, u32(0x11000), u32(0xF000)) + build_reply(5, 4, 0, 0, u32(0x12345678))
    seeds["build-connect"] = junk + build_request(0, b"\x05\x02\x01") + build_reply(0, 5, 0, 0, INFO)
    seeds["build-read"] = junk + build_request(1, u32(0x1FFF8)) + build_reply(1, 0, 1, 0, CODE[:8])
    seeds["build-read-refused"] = junk + build_request(1, u32(0x20000)) + build_reply(1, 12, 0, 1)
    seeds["build-enter-isp"] = junk + build_request(7, b"\xFF") + build_reply(7, 2, 0, 0, INFO)
    # IDENTIFY: the reply's variant comes after its status
    seeds["build-identify"] = junk + build_request(6, b"\x03\x00") + \
        bytes([6, 3, 0, 0, 0]) + b"\x01\x02\x03\x04\x59\x07\x57\x1D"
    seeds["build-identify-about"] = junk + build_request(6, b"\xFF\x01") + \
        bytes([6, 3, 0, 0, 1]) + b"\x01\x03\x01\x01\x00\x01\x00\x02"

    # Regressions: inputs that made fuzz-frame abort.
    #
    # isp_reply_build() turns a READ refusal (status != 0) from node 0 with
    # legacy = false into 1B100000#01, which isp_reply_parse() refuses as
    # a bad DLC: node 0 is legacy and has no status to send.
    seeds["regress-build-read-status-node0"] = junk + build_request(6) + build_reply(1, 0, 0, 1)
    # isp_reply_parse() takes 1B500000 (a CRC reply from node 0) for an
    # extended node's reply, legacy = false, which isp_reply_build()
    # refuses; protocol.md section 6 makes every node 0 reply legacy, and
    # a legacy node has no CRC.
    seeds["regress-parse-crc-node0"] = frame(rep_id(5, 0), b"\x00\xCB\xF4\x39\x26") + no_build
    return seeds


# fuzz-session.c's layout: flags, timing, image seed (u32 LE), image
# shape, two bytes per core (8 cores), then faults of 3 bytes: steps to
# wait, kind, argument.
S_NO_QUIET, S_FULL, S_NO_REBOOT, S_BOOT_CHECK = 0x01, 0x02, 0x04, 0x08
C_TARGET, C_OLD, C_IMAGE, C_TORN, C_APP, C_APP_SPEC = 0x08, 0x10, 0x20, 0x30, 0x40, 0x80
F_DROP_TX, F_DROP_TX_ONE, F_DROP_RX, F_DUP_RX, F_DELAY_RX, F_SPOOF, F_STALE, F_POWER_CUT, F_CLOCK_JUMP, F_FOREIGN = range(10)


def bench(cores, flags=0, window=8, retries=3, timeout=1, seed=1, sectors=2, density=1, faults=()):
    """cores: (id, bits, caps_cleared) per core."""
    head = bytes([flags | (window - 1) << 4, retries | timeout << 2 | (len(cores) - 1) << 4])
    head += struct.pack("<I", seed) + bytes([sectors | density << 3])
    for i in range(8):
        node, bits, caps = cores[i] if i < len(cores) else (0, 0, 0)
        head += bytes([node | bits, caps | 3 << 3 | (i & 3) << 6])
    return head + b"".join(bytes([wait, kind, arg]) for wait, kind, arg in faults)


def session_seeds():
    one = [(3, C_TARGET, 0)]
    group = [(1, C_TARGET, 0), (2, C_TARGET, 0), (3, C_TARGET, 0)]
    return {
        "one-blank": bench(one),
        "one-acked-window": bench(one, flags=S_NO_QUIET, window=4),
        "one-full-erase": bench(one, flags=S_FULL),
        "one-no-crc": bench([(3, C_TARGET, 0x01)]),
        "one-no-sector-erase": bench([(3, C_TARGET, 0x06)]),
        "one-old-differential": bench([(3, C_TARGET | C_OLD, 0)], sectors=5),
        "one-up-to-date": bench([(3, C_TARGET | C_IMAGE, 0)]),
        "one-torn": bench([(3, C_TARGET | C_TORN, 0)]),
        "one-in-application": bench([(3, C_TARGET | C_OLD | C_APP | C_APP_SPEC, 0)], flags=S_BOOT_CHECK),
        "one-in-application-unknown": bench([(3, C_TARGET | C_OLD | C_APP, 0)]),
        "one-large-sectors": bench(one, sectors=7, density=2),
        "legacy": bench([(0, C_TARGET, 0)]),
        "legacy-torn": bench([(0, C_TARGET | C_TORN, 0)]),
        "legacy-beside-extended": bench([(3, C_TARGET, 0), (0, 0, 0)]),
        "legacy-target-beside-extended": bench([(0, C_TARGET, 0), (3, 0, 0)]),
        "duplicate-id": bench([(3, C_TARGET, 0), (3, 0, 0)]),
        "duplicate-id-in-application": bench([(3, C_TARGET, 0), (3, C_OLD | C_APP, 0)]),
        "group-of-three": bench(group),
        "group-mixed-caps": bench([(1, C_TARGET, 0), (2, C_TARGET | C_OLD, 0x04), (3, C_TARGET | C_IMAGE, 0)]),
        "group-beside-foreign": bench(group + [(5, C_OLD, 0), (6, 0, 0)]),
        "eight-cores": bench([(i % 7 + 1, C_TARGET if i % 2 == 0 else 0, 0) for i in range(8)], sectors=3),
        "fault-drop-tx": bench(one, faults=[(5, F_DROP_TX, 0), (20, F_DROP_TX, 0)]),
        "fault-drop-rx": bench(one, faults=[(8, F_DROP_RX, 0), (3, F_DROP_RX, 0)]),
        "fault-group-drop-one": bench(group, faults=[(12, F_DROP_TX_ONE, 1), (4, F_DROP_TX_ONE, 2)]),
        "fault-dup-delay": bench(one, flags=S_NO_QUIET, faults=[(10, F_DUP_RX, 0), (5, F_DELAY_RX, 60)]),
        "fault-spoof": bench(one, faults=[(10, F_SPOOF, 0x00), (5, F_SPOOF, 0x02), (5, F_SPOOF, 0x01)]),
        "fault-stale": bench(group, faults=[(30, F_STALE, 1), (10, F_STALE, 3), (10, F_STALE, 0)]),
        "fault-power-cut": bench([(3, C_TARGET | C_OLD, 0)], faults=[(25, F_POWER_CUT, 0x08)]),
        "fault-power-cut-long": bench([(3, C_TARGET | C_OLD, 0)], faults=[(25, F_POWER_CUT, 0x20)]),
        "fault-power-cut-commit": bench([(3, C_TARGET, 0)], sectors=0, faults=[(45, F_POWER_CUT, 0x00), (10, F_POWER_CUT, 0x00)]),
        "fault-power-cut-group": bench(group, faults=[(40, F_POWER_CUT, 0x11), (60, F_POWER_CUT, 0x02)]),
        "fault-clock-jump": bench(one, faults=[(15, F_CLOCK_JUMP, 40), (15, F_CLOCK_JUMP, 200)]),
        "fault-foreign": bench(one, faults=[(3, F_FOREIGN, i) for i in range(8)]),
        "fault-legacy-loss": bench([(0, C_TARGET | C_TORN, 0)], faults=[(6, F_DROP_RX, 0), (9, F_POWER_CUT, 0x40)]),
    }


def job_store_files(files, history=None):
    text = b"" if history is None else history.encode()
    for name, content in files:
        text += b"--- " + name.encode() + b"\n" + content.encode()
    return text


def job_record(id, state="queued", kind="flash", attempts=0, extra=""):
    nodes = '"nodes": [{"id": 3, "name": "node3", "state": "%s", "phase": "program"}]' % state
    return ('{"id": %d, "kind": "%s", "target": "node3", "node": 3, "state": "%s", "phase": "program",'
            ' "attempts": %d, "image_crc": 0, "interface": "vcan0", %s%s}\n' % (id, kind, state, attempts, nodes, extra))


IMAGE_HEX = ":03000000021003E8\n:00000001FF\n"


def job_store_seeds():
    done = job_record(1, "succeeded").strip()
    return {
        "empty": job_store_files([], '{"next_id": 1, "jobs": []}\n'),
        "history": job_store_files([("next-id", "3\n")], '{"next_id": 3, "jobs": [%s, %s]}\n' % (done, job_record(2, "failed", extra=', "error": "x"').strip())),
        "history-cut-short": job_store_files([], '{"next_id": 3, "jobs": [%s, {"id": 2, "ki' % done),
        "history-not-json": job_store_files([], "\x00\xff garbage"),
        "history-no-jobs": job_store_files([], '{"next_id": 9}'),
        "history-queued-entry": job_store_files([], '{"jobs": [%s]}' % job_record(4, "queued").strip()),
        "queued": job_store_files([("next-id", "5\n"), ("jobs/4.json", job_record(4)), ("jobs/4.image", IMAGE_HEX)]),
        "queued-bad-image": job_store_files([("jobs/4.json", job_record(4)), ("jobs/4.image", ":0300\n")]),
        "queued-no-image": job_store_files([("jobs/4.json", job_record(4))]),
        "running": job_store_files([("jobs/7.json", job_record(7, "running", attempts=1)), ("jobs/7.image", IMAGE_HEX)]),
        "running-too-often": job_store_files([("jobs/7.json", job_record(7, "running", attempts=3))]),
        "finished-record": job_store_files([("jobs/8.json", job_record(8, "succeeded"))], '{"next_id": 9, "jobs": []}'),
        "finished-in-history-too": job_store_files([("jobs/1.json", job_record(1, "succeeded"))], '{"next_id": 2, "jobs": [%s]}' % done),
        "id-mismatch": job_store_files([("jobs/5.json", job_record(6))]),
        "bad-names": job_store_files([("jobs/05.json", job_record(5)), ("jobs/x.json", "{}"), ("jobs/99999999999.json", "{}")]),
        "wrapped-ids": job_store_files([("next-id", "4294967295\n"), ("jobs/4294967295.json", job_record(4294967295, kind="reboot")),
                                        ("jobs/1.json", job_record(1, kind="scan"))]),
        "bad-next-id": job_store_files([("next-id", "zero\n"), ("jobs/2.json", job_record(2, kind="verify"))]),
        "old-record-no-nodes": job_store_files([("jobs/3.json", '{"id": 3, "kind": "reboot", "target": "node3", "node": 3, "state": "queued"}')]),
        "record-not-an-object": job_store_files([("jobs/3.json", "[1, 2, 3]")]),
        "read-job": job_store_files([("jobs/6.json", job_record(6, kind="read")), ("jobs/6.read", IMAGE_HEX)]),
    }


CONFIG_EXAMPLE = os.path.join(HERE, "..", "daemon", "stcispd.conf")


def config_seeds():
    seeds = {
        "empty": b"",
        "full": b"""[Bus]
Interface=can0 can1
Bitrate=250000
RestartMs=100
Bitrate.can1=125000
RestartMs.can1=50
[Protocol]
Timeout=200
EraseTimeout=20
Retries=5
Window=16
DiscoverTime=500
BootTimeout=0
[Access]
FlashGroup=wheel
[Daemon]
History=10
MaxAttempts=2
[Nodes]
pump = 3
old-board = legacy
spare = uid:A4917069
[Groups]
pumps = pump spare can1/7 node9
""",
        "no-names": b"[Bus]\nInterface=vcan0\n[Protocol]\nWindow=1 # a comment\n",
        "bad-section": b"[Bogus]\nKey=1\n",
        "bad-key": b"[Bus]\nInterfaces=can0\n",
        "bad-number": b"[Protocol]\nTimeout=5\nRetries=-1\nWindow=0x10\n",
        "duplicate-name": b"[Nodes]\na = 3\nb = 3\na = 4\n",
        "reserved-name": b"[Nodes]\nlegacy = 3\nnode5 = 5\nall = 7\n",
        "bad-uid": b"[Nodes]\nx = uid:XYZ\ny = uid:A4917069\nz = uid:a4917069\n",
        "group-errors": b"[Nodes]\np = 3\n[Groups]\ng = p p\nh = g\ni = legacy\nj = all\nk =\n",
        "no-section": b"Interface=can0\n",
        "bad-line": b"[Bus\n=x\nnovalue\n",
        "long-line": b"[Bus]\nInterface=" + b"a" * 5000 + b"\n",
        "crlf-nul": b"[Bus]\r\nInterface=can0\r\n\x00[Protocol]\n",
        "overrides-unknown": b"[Bus]\nInterface=can0\nBitrate.can9=500000\nRestartMs.=1\n",
        "many-interfaces": b"[Bus]\nInterface=" + b" ".join(b"can%d" % i for i in range(20)) + b"\n",
    }
    with open(CONFIG_EXAMPLE, "rb") as f:
        seeds["example"] = f.read()
    return seeds


def write(directory, seeds):
    os.makedirs(directory, exist_ok=True)
    for name, data in sorted(seeds.items()):
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")
    write(os.path.join(out, "image"), image_seeds())
    write(os.path.join(out, "frame"), frame_seeds())
    write(os.path.join(out, "session"), session_seeds())
    write(os.path.join(out, "job-store"), {k: v if isinstance(v, bytes) else v.encode() for k, v in job_store_seeds().items()})
    write(os.path.join(out, "config"), config_seeds())


if __name__ == "__main__":
    main()
