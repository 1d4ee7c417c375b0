#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Measure the application helper (isp-app.c) on the 8051 with sdcc and
print the figures docs/firmware.md quotes.

Usage: measure-mcs51.py SDCC SOURCE-DIR OUTPUT-DIR

- code: the helper's own code segment (isp-app.rel), and what it adds to a
  program: a tiny main linked twice, with and without the helper, the same
  ops in both, the bytes of the two .ihx files compared (so sdcc's runtime
  routines the helper pulls in are counted, the ops are not);
- RAM: struct isp_app in XDATA (the XSEG of the two links compared), and
  the deepest stack (internal RAM) a call of isp_app_init, isp_app_receive
  or isp_app_poll reaches, from a static analysis of the compiled code:
  every push, pop and stack pointer change along the code, every call,
  plus the return address. Not counted: what the board's ops put on the
  stack themselves, and the pushes of sdcc's runtime routines (__gptrget
  and friends only use registers; ___memcpy runs once, in init).

It fails if sdcc fails or if the code does not have the shape the
analysis understands (unbalanced pushes, more than one return), so a
figure it prints is one it could check.
"""
import os
import re
import subprocess
import sys

SDCC, SRC, OUT = sys.argv[1], os.path.abspath(sys.argv[2]), os.path.abspath(sys.argv[3])
FLAGS = ['-mmcs51', '--std-c99', '--model-large', '--stack-auto']

MAIN = r'''
#include "isp-app.h"

/* A board's ops, as small as they come: the figures are the helper's. */
static struct isp_node_frame rx, last;
static volatile uint8_t rx_pending;

static void flash_read(void *userdata, uint32_t offset, uint8_t *buf, uint8_t len) {
        (void) userdata;
        while (len--)
                *buf++ = (uint8_t) offset++;
}

static void send(void *userdata, const struct isp_node_frame *frame) {
        (void) userdata;
        last = *frame;
}

static void enter_isp(void *userdata) {
        (void) userdata;
        for (;;)
                ;
}

static const struct isp_app_ops ops = { flash_read, send, enter_isp };

#ifdef WITH_HELPER
static const struct isp_app_config config = { 3, { 1, 2, 3, 4 }, 0x00010002UL };
static struct isp_app app;
#endif

void main(void) {
#ifdef WITH_HELPER
        (void) isp_app_init(&app, &config, &ops, 0);
#endif
        for (;;) {
#ifdef WITH_HELPER
                (void) isp_app_poll(&app);
#endif
                if (rx_pending) {
                        rx_pending = 0;
#ifdef WITH_HELPER
                        (void) isp_app_receive(&app, &rx);
#endif
                        /* the ops are linked in both programs */
                        ops.flash_read(0, 0, rx.data, 8);
                        ops.send(0, &rx);
                        ops.enter_isp(0);
                }
        }
}
'''


def die(msg):
    print(f'measure-mcs51: {msg}', file=sys.stderr)
    sys.exit(1)


def sdcc(*args):
    p = subprocess.run([SDCC, *FLAGS, '-I', SRC, *args], cwd=OUT, capture_output=True, text=True)
    if p.returncode != 0 or p.stderr.strip():
        die(f'sdcc {" ".join(args)} failed:\n{p.stdout}{p.stderr}')


def ihx_bytes(path):
    n = 0
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith(':') and line[7:9] == '00':
                n += int(line[1:3], 16)
    return n


def map_segment(path, name):
    with open(path) as f:
        for line in f:
            m = re.match(rf'{name}\s+[0-9A-F]+\s+[0-9A-F]+\s+=\s+(\d+)\. bytes', line)
            if m:
                return int(m.group(1))
    return 0


def rel_segment(path, name):
    with open(path) as f:
        for line in f:
            m = re.match(rf'A {name} size ([0-9A-F]+) ', line)
            if m:
                return int(m.group(1), 16)
    die(f'{path}: no segment {name}')


def parse_functions(asm_path):
    """The asm's instructions, function by function: {name: [(op, args)]}."""
    funcs, cur = {}, None
    with open(asm_path) as f:
        for line in f:
            line = line.split(';', 1)[0].rstrip()
            if not line:
                continue
            m = re.match(r'^(_[A-Za-z0-9_]+):$', line)
            if m:
                cur = funcs.setdefault(m.group(1), [])
                continue
            if cur is None:
                continue
            m = re.match(r'^(\d+\$):$', line)
            if m:
                cur.append(('label', m.group(1)))
                continue
            parts = line.split(None, 1)
            if parts and line[0] in ' \t' and not parts[0].startswith('.'):
                cur.append((parts[0], parts[1].replace(' ', '') if len(parts) > 1 else ''))
    return funcs


JUMPS = {'sjmp', 'ljmp', 'ajmp', 'jz', 'jnz', 'jc', 'jnc', 'jb', 'jnb', 'jbc', 'cjne', 'djnz'}
UNCONDITIONAL = {'sjmp', 'ljmp', 'ajmp', 'ret'}


def stack_use(name, funcs, memo):
    """Deepest stack in bytes below the caller's return address."""
    if name in memo:
        return memo[name]
    memo[name] = None  # recursion would show up here
    depth, deepest, bp_depth, returns = 0, 0, None, 0
    label_depth, prev = {}, None
    code = funcs[name]
    for i, (op, args) in enumerate(code):
        if op == 'label':
            if args in label_depth and label_depth[args] != depth:
                if prev not in UNCONDITIONAL:
                    die(f'{name}: stack depth {depth} falls into {args}, jumped to at {label_depth[args]}')
                depth = label_depth[args]
            label_depth[args] = depth
            prev = op
            continue
        if op == 'push':
            depth += 1
        elif op == 'pop':
            depth -= 1
        elif op == 'inc' and args == 'sp':
            depth += 1
        elif op == 'dec' and args == 'sp':
            depth -= 1
        elif op == 'mov' and args == '_bp,sp':
            bp_depth = depth
        elif op == 'mov' and args == 'sp,_bp':
            depth = bp_depth
        elif op == 'mov' and args == 'sp,a':
            a, b = code[i - 2], code[i - 1]
            if a != ('mov', 'a,sp') or b[0] != 'add' or not b[1].startswith('a,#'):
                die(f'{name}: sp set from something other than sp + constant')
            n = int(b[1][3:], 0)
            depth += n - 256 if n >= 128 else n
        elif op == 'lcall':
            target = args
            if target in funcs:
                callee = stack_use(target, funcs, memo)
                if callee is None:
                    die(f'{name}: recursion through {target}')
                deepest = max(deepest, depth + 2 + callee)
            else:
                # a trampoline into an op (its frame is the board's), or a
                # runtime routine: the return address
                deepest = max(deepest, depth + 2)
        elif op == 'ret':
            if depth == 0:
                returns += 1
            elif depth >= 2:
                depth -= 2  # push target; ret: the jump of a call through a pointer
            else:
                die(f'{name}: returns with {depth} bytes still on the stack')
        elif op in JUMPS:
            target = args.rsplit(',', 1)[-1]
            if re.match(r'^\d+\$$', target):
                if target in label_depth and label_depth[target] != depth:
                    die(f'{name}: jumps back to {target} at depth {depth}, not {label_depth[target]}')
                label_depth.setdefault(target, depth)
        if depth < 0:
            die(f'{name}: pops more than it pushed')
        deepest = max(deepest, depth)
        prev = op
    if returns != 1:
        die(f'{name}: {returns} returns, the analysis expects exactly one')
    memo[name] = deepest
    return deepest


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, 'main.c'), 'w') as f:
        f.write(MAIN)

    sdcc('-c', os.path.join(SRC, 'isp-app.c'), '-o', 'isp-app.rel')
    sdcc('-DWITH_HELPER', '-c', 'main.c', '-o', 'main-with.rel')
    sdcc('-c', 'main.c', '-o', 'main-without.rel')
    sdcc('main-with.rel', 'isp-app.rel', '-o', 'with.ihx')
    sdcc('main-without.rel', '-o', 'without.ihx')

    version = subprocess.run([SDCC, '--version'], capture_output=True, text=True).stdout.splitlines()[0]
    version = re.sub(r'^SDCC : \S+ ', '', version)
    module = rel_segment(os.path.join(OUT, 'isp-app.rel'), 'CSEG')
    added = ihx_bytes(os.path.join(OUT, 'with.ihx')) - ihx_bytes(os.path.join(OUT, 'without.ihx'))
    xdata = (map_segment(os.path.join(OUT, 'with.map'), 'XSEG') -
             map_segment(os.path.join(OUT, 'without.map'), 'XSEG'))

    funcs = parse_functions(os.path.join(OUT, 'isp-app.asm'))
    memo = {}
    stack = {}
    for fn in ('isp_app_init', 'isp_app_receive', 'isp_app_poll'):
        if '_' + fn not in funcs:
            die(f'isp-app.asm has no function _{fn}')
        # + the caller's lcall: its return address
        stack[fn] = 2 + stack_use('_' + fn, funcs, memo)

    if module <= 0 or added <= 0 or xdata <= 0:
        die(f'implausible figures: module {module}, added {added}, xdata {xdata}')

    print(f'isp-app on the 8051: sdcc {version}, {" ".join(FLAGS)}')
    print(f'code: {module} bytes of its own (isp-app.rel CSEG); '
          f'{added} bytes added to a program that links it, sdcc runtime routines included')
    print(f'RAM: {xdata} bytes of XDATA for struct isp_app; stack (internal RAM) at most '
          + ', '.join(f'{v} bytes in {k}()' for k, v in stack.items())
          + ', the ops\' own frames not included')


if __name__ == '__main__':
    main()
