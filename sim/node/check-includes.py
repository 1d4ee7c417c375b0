#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Fail if the portable node core or the application helper includes
anything but the freestanding C99 headers they are allowed (and their own
headers)."""
import re
import sys

ALLOWED = {'<stdint.h>', '<stddef.h>', '<stdbool.h>', '"isp-node.h"', '"isp-app.h"'}

bad = 0
for path in sys.argv[1:]:
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            m = re.match(r'\s*#\s*include\s*([<"][^>"]+[>"])', line)
            if m and m.group(1) not in ALLOWED:
                print(f'{path}:{lineno}: includes {m.group(1)}, '
                      f'the node core and the helper may only include {", ".join(sorted(ALLOWED))}')
                bad += 1
sys.exit(1 if bad else 0)
