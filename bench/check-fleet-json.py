#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Run `fleet --json` on a small subset and check what scripts rely on:
every row has its floor (F = B + erase + CRC, to the nanosecond), a goal
that is met or says why not, and a row the engine cannot run yet is a
missed goal that says so, never a missing row."""

import json
import subprocess
import sys

ARGS = ['--bitrate', '1000000', '--sizes', '16', '--nodes', '2', '--loss', '1%']
CASES = {'full', 'latency', 'loss', 'multicast', 'update', 'seed'}


def main():
    fleet = sys.argv[1]
    out = subprocess.run([fleet, '--json'] + ARGS, check=True, capture_output=True, text=True).stdout
    doc = json.loads(out)
    rows = doc['rows']
    problems = []
    seen = set()
    for i, r in enumerate(rows):
        name = f"row {i} ({r['case']} {r['image']} {r['nodes']} nodes)"
        seen.add(r['case'])
        f = r['floor']
        if f['total_ns'] != f['program_ns'] + f['erase_ns'] + f['crc_ns']:
            problems.append(f'{name}: F is not B + erase + CRC')
        if f['crc_ns'] != 126976 * doc['timing_ns']['crc_byte']:
            problems.append(f'{name}: the CRC floor is not over the 124 KiB area')
        if f['erase_ns'] != f['erase_sectors'] * doc['timing_ns']['erase_sector']:
            problems.append(f'{name}: the erase floor is not per sector')
        if f['program_bits'] != 67 * f['program_frames'] + 8 * f['program_bytes'] + f['stuff_bits']:
            problems.append(f'{name}: the PROGRAM bits are not 67 + 8N + stuff bits a frame')
        if f['program_ns'] != -(-f['program_bits'] * 10**9 // r['bitrate']):
            problems.append(f'{name}: B is not the bits at the bitrate')
        if f['program_ns'] <= 0 or f['program_frames'] <= 0:
            problems.append(f'{name}: no PROGRAM frames in the floor')
        goal = r['goal']
        if goal is None:
            problems.append(f'{name}: no goal')
            continue
        if not goal['met'] and not goal['reason']:
            problems.append(f'{name}: a missed goal without a reason')
        if not r['supported']:
            if goal['met'] or 'not supported by the engine' not in goal['reason']:
                problems.append(f'{name}: an unsupported row must be a missed goal that says so')
        elif r['run']['total_ns'] <= 0:
            problems.append(f'{name}: no total')
    if seen != CASES:
        problems.append(f'cases {sorted(CASES - seen)} missing')
    print(f'1..1')
    if problems:
        for p in problems:
            print(f'# {p}')
        print('not ok 1 - fleet --json')
        return 1
    print(f'ok 1 - fleet --json: {len(rows)} rows')
    return 0


if __name__ == '__main__':
    sys.exit(main())
