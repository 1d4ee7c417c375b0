#!/usr/bin/env bash
# The systemd unit as systemd itself judges it: `systemd-analyze verify`
# passes, and `systemd-analyze security --offline=yes` rates the
# sandboxing at an exposure of 2.5 or lower (the README records the
# number). Usage: test-unit.sh BUILT_UNIT STCISPD_BINARY
set -euo pipefail

unit=$1
binary=$(realpath "$2")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# Verify the unit as installed, with ExecStart= pointing at the binary we built.
sed "s|^ExecStart=.*/stcispd|ExecStart=$binary|" "$unit" >"$dir/stcispd.service"
out=$(systemd-analyze verify --man=no "$dir/stcispd.service" 2>&1) || {
        echo "systemd-analyze verify failed:"; echo "$out"; exit 1; }
if [[ -n "$out" ]]; then
        echo "systemd-analyze verify complained:"; echo "$out"; exit 1
fi

report=$(systemd-analyze security --offline=yes "$dir/stcispd.service" 2>&1 | tail -1)
echo "$report"
exposure=$(sed -n 's/.*Overall exposure level for stcispd.service: \([0-9.]*\).*/\1/p' <<<"$report")
[[ -n "$exposure" ]] || { echo "no exposure level in: $report"; exit 1; }
awk -v e="$exposure" 'BEGIN { exit !(e <= 2.5) }' || { echo "exposure $exposure is above 2.5"; exit 1; }
echo "ok: exposure $exposure"
