#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Run trials_state.py's trials alone, inside tools/with-vcan (as root:
the disk-full trial mounts a tmpfs):

    tools/with-vcan -- tests/faults/run-state-trials.py [--build DIR] [--seed N] [--long] [KIND...]

Prints the seed, one JSON record per trial and each kind's time; exits 1
on any FAIL."""

import argparse
import json
import os
import random
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
src = os.path.dirname(os.path.dirname(here))


def main():
    ap = argparse.ArgumentParser(description="Run the state-directory and status-client fault trials.")
    ap.add_argument("--build", default=os.path.join(src, "build-tests"), help="meson build directory")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--long", action="store_true", help="more and larger trials")
    ap.add_argument("kinds", nargs="*", help="disk-full, corrupt-state, status-clients (default: all)")
    a = ap.parse_args()
    b = os.path.abspath(a.build)
    for k, v in (("SOURCE_ROOT", src), ("STCISPD", f"{b}/daemon/stcispd"), ("STCISP_SIM", f"{b}/sim/stcisp-sim"),
                 ("ISPCTL", f"{b}/client/ispctl"), ("EXAMPLES_DIR", f"{b}/examples")):
        os.environ.setdefault(k, v)
    sys.path.insert(0, here)
    sys.path.insert(0, os.path.join(src, "tests", "integration"))
    import daemon_env
    import trials_state

    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 32)
    print(f"seed {seed}", flush=True)
    failed = 0
    for kind, fn in trials_state.TRIALS:
        if a.kinds and kind not in a.kinds:
            continue
        t = time.monotonic()
        records = fn(random.Random(f"{seed}:{kind}"), a.long, daemon_env.Env)
        for r in records:
            print(json.dumps(r), flush=True)
            failed += r["result"] != "ok"
        print(f"{kind}: {len(records)} trials, {sum(r['result'] != 'ok' for r in records)} FAIL, "
              f"{time.monotonic() - t:.1f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
