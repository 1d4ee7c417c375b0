#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# ispctl's errors name the real cause: no system bus at the address it
# tried; an SSH connection that failed (where ssh is installed).
# Usage: test-ispctl-errors.sh ISPCTL
set -uo pipefail
ispctl=$1
fail=0

out=$(DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent/bus "$ispctl" list 2>&1); status=$?
want="Cannot connect to the system bus at unix:path=/nonexistent/bus (No such file or directory): is dbus running?"
if [[ $status -ne 6 || "$out" != "$want"* ]]; then
        echo "not ok - no system bus: status $status, output: $out"; fail=1
else
        echo "ok - no system bus"
fi

if command -v ssh >/dev/null; then
        out=$(timeout 60 "$ispctl" -H nosuchhost.invalid list 2>&1); status=$?
        if [[ $status -ne 6 || "$out" != *"Cannot reach nosuchhost.invalid over SSH: 'ssh -xT nosuchhost.invalid systemd-stdio-bridge' ended"* ]]; then
                echo "not ok - ssh to an unknown host: status $status, output: $out"; fail=1
        else
                echo "ok - ssh to an unknown host"
        fi
else
        echo "ok - ssh to an unknown host # SKIP no ssh on this machine"
fi
exit $fail
