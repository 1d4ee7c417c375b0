#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Write the seed corpora of the fuzz targets into fuzz/corpus/.

  corpus/image/  image files, valid and broken, as ispctl would read them
  corpus/frame/  CAN frames in fuzz-frame.c's input layout

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


def write(directory, seeds):
    os.makedirs(directory, exist_ok=True)
    for name, data in sorted(seeds.items()):
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")
    write(os.path.join(out, "image"), image_seeds())
    write(os.path.join(out, "frame"), frame_seeds())


if __name__ == "__main__":
    main()
