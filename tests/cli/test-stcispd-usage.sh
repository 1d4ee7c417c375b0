#!/usr/bin/env bash
# stcispd's command line and exit statuses as stcispd(8) documents them:
# 0 for --help, 2 for a bad option, 78 (EX_CONFIG) for a configuration
# error named by FILE:LINE, 1 for a failure such as no system bus.
# Needs no CAN and no bus. Usage: test-stcispd-usage.sh STCISPD
set -uo pipefail

stcispd=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail=0

expect() {      # expect STATUS PATTERN -- ARGS...
        local want=$1 pattern=$2 out status
        shift 3
        out=$("$stcispd" "$@" 2>&1)
        status=$?
        if [[ $status -ne $want ]] || ! grep -qE -- "$pattern" <<<"$out"; then
                echo "FAIL: stcispd $* -> $status (want $want), output:"
                echo "$out"
                fail=1
        else
                echo "ok: stcispd $* -> $status"
        fi
}

: >"$dir/empty.conf"
printf '[Bus]\nInterface=can0\nBitrate=12\n' >"$dir/bad.conf"

expect 0 '^Usage: stcispd'                                   -- --help
expect 0 '^stcispd [0-9]'                                    -- --version
expect 2 "Try 'stcispd --help'"                              -- --frobnicate
expect 2 'takes no arguments'                                -- extra
expect 78 "^$dir/bad.conf:3: Bitrate=12: out of range"       -- --config "$dir/bad.conf"
expect 78 "$dir/missing.conf"                                -- --config "$dir/missing.conf"
# A missing interface is not fatal: the line waits for it (here the
# daemon then fails on the system bus, which this test has none of).
DBUS_SYSTEM_BUS_ADDRESS="unix:path=$dir/no-bus" \
expect 1 'nosuch0: no such interface \(yet\): waiting for it to appear' \
        -- --config "$dir/empty.conf" --interface nosuch0 --state-dir "$dir/state"
exit $fail
