#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""stcisp-sim's command line, no CAN needed: --help lists every option,
bad arguments exit 2 with a message naming the problem, a missing CAN
interface exits 1 before any flash file is created. TAP output."""
import os
import shutil
import subprocess
import sys
import tempfile

SIM = sys.argv[1]
OK = ['--interface', 'nosuch0', '--flash-dir']

cases = []
temp_dirs = []


def case(fn):
    cases.append(fn)
    return fn


def run(*args):
    return subprocess.run([SIM, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)


@case
def help_lists_every_option():
    p = run('--help')
    assert p.returncode == 0, p.returncode
    for opt in ('--interface', '--nodes', '--legacy', '--flash-dir', '--bitrate', '--seed', '--fault',
                '--quiet', '--rx-depth', '--erase-time', '--program-time', '--crc-time', '--handle-time',
                '--writeback-delay', '--app-crc-time', '--help', '--version', 'drop-every=N', 'drop-rate=P',
                'power-cut=N', 'restart-delay=T', 'rx-depth=N', 'dead', 'duplicate', 'app', 'no-helper',
                'boot-fail', 'app-version=N'):
        assert opt in p.stdout, f'--help does not mention {opt}'
    assert p.stderr == ''


@case
def version():
    p = run('--version')
    assert p.returncode == 0 and p.stdout.startswith('stcisp-sim '), (p.returncode, p.stdout)


@case
def bad_arguments_exit_2():
    d = tempfile.mkdtemp()
    temp_dirs.append(d)
    for args, message in [
        ((), '--interface is missing'),
        (('--interface', 'vcan0', '--nodes', '1'), '--flash-dir is missing'),
        (('--interface', 'vcan0', '--flash-dir', d), 'no nodes'),
        ((*OK, d, '--nodes', '1-300'), '--nodes 1-300: 300 is out of range 1-254'),
        ((*OK, d, '--nodes', '3-1'), 'runs backwards'),
        ((*OK, d, '--nodes', '1,1'), 'node 1 is listed twice'),
        ((*OK, d, '--nodes', '1', '--bitrate', 'fast'), "--bitrate: 'fast' is not a decimal number"),
        ((*OK, d, '--nodes', '1', '--erase-time', '5'), "--erase-time: '5' needs a unit"),
        ((*OK, d, '--nodes', '1', '--fault', '2:dead'), 'node 2 is not in --nodes'),
        ((*OK, d, '--nodes', '1', '--fault', '0:dead'), 'add --legacy'),
        ((*OK, d, '--nodes', '1', '--fault', '1:explode'), "unknown fault 'explode'"),
        ((*OK, d, '--nodes', '1', '--fault', '1:drop-rate=2'), 'drop-rate: 2 is not between 0 and 1'),
        ((*OK, d, '--nodes', '1', '--fault', '1:dead,boot-fail'), 'dead and boot-fail exclude each other'),
        ((*OK, d, '--nodes', '1', '--fault', '1:app-version=-1'), "app-version: '-1' is not a decimal number"),
        ((*OK, d, '--nodes', '1', '--app-crc-time', '50'), "--app-crc-time: '50' needs a unit"),
        ((*OK, d, '--nodes', '1', '--fault', '1'), 'is not ID:FAULT'),
        ((*OK, d, '--nodes', '1', '--bogus'), 'unknown option --bogus'),
        ((*OK, d, '--nodes', '1', 'stray'), "unexpected argument 'stray'"),
        ((*OK, d, '--nodes'), '--nodes needs an argument'),
    ]:
        p = run(*args)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        assert message in p.stderr, (args, p.stderr)
        assert p.stdout == '', (args, p.stdout)
    assert os.listdir(d) == []


@case
def no_can_interface_exits_1_without_side_effects():
    temp_dirs.append(tempfile.mkdtemp())
    d = os.path.join(temp_dirs[-1], 'flash')
    p = run(*OK, d, '--nodes', '1-3')
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert 'CAN' in p.stderr, p.stderr
    assert not os.path.exists(d)


def main():
    print(f'1..{len(cases)}')
    failed = 0
    for i, fn in enumerate(cases, 1):
        try:
            fn()
            print(f'ok {i} - {fn.__name__}')
        except Exception as e:  # noqa: BLE001 - every failure is reported as TAP
            failed += 1
            print(f'not ok {i} - {fn.__name__}')
            for line in str(e).splitlines() or [repr(e)]:
                print(f'# {line}')
    for d in temp_dirs:
        shutil.rmtree(d, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()
