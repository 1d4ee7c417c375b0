#!/usr/bin/env bash
# Checks the SocketCAN harness itself (tools/with-vcan).  Meant to run
# INSIDE it:  tools/with-vcan tests/integration/test-with-vcan.sh
# If it ever runs outside, that is a wiring mistake, and it fails loudly
# rather than skipping: a suite that silently skips its CAN tests looks
# green while testing nothing.
#
# What it proves: vcan0 exists, is a vcan device and is up, and a frame
# sent by can-utils' cansend is received, with its exact 29-bit ID, by
# candump, i.e. real kernel SocketCAN (af_can, can-raw, vcan) works.
set -euo pipefail

fail() {
	printf 'FAIL: %s\n' "$*" >&2
	exit 1
}

case ${STCISP_VCAN:-} in
netns | qemu) echo "running under with-vcan (STCISP_VCAN=$STCISP_VCAN)" ;;
'') fail "STCISP_VCAN is not set: run this test through tools/with-vcan, not directly" ;;
*) fail "STCISP_VCAN='$STCISP_VCAN' is neither netns nor qemu" ;;
esac

for tool in ip candump cansend timeout; do
	command -v "$tool" >/dev/null || fail "$tool not found in PATH"
done

# --- vcan0 exists, is a vcan, is up
link=$(ip -d -o link show dev vcan0 2>&1) || fail "vcan0 does not exist: $link"
[[ $link == *" vcan "* ]] || fail "vcan0 is not a vcan device: $link"
flags=${link#*<}
flags=${flags%%>*}
[[ ,$flags, == *,UP,* ]] || fail "vcan0 is not up (flags <$flags>)"
echo "ok: vcan0 is a vcan device and up <$flags>"

# --- a frame sent with cansend is seen by candump with the exact ID
work=$(mktemp -d)
dump_pid=
cleanup() {
	[[ -z $dump_pid ]] || kill "$dump_pid" 2>/dev/null || true
	rm -rf -- "$work"
}
trap cleanup EXIT

# -L: log format "(time) vcan0 1A000003#", easy to match exactly.  No
# receive filter: the ID check must be ours, not the kernel's.  The
# time-out only guards against a hang; under software emulation
# everything is slow, so it is generous.
timeout 60 candump -L -n 1 vcan0 >"$work/dump" 2>"$work/dump.err" &
dump_pid=$!

# Wait until candump's raw socket is registered on vcan0 (it shows in
# the af_can receive lists) rather than sleeping and hoping: a frame sent
# before that would be lost and the test would flake.
registered=
for ((i = 0; i < 300; i++)); do
	if grep -qE '^ +vcan0 ' /proc/net/can/rcvlist_all 2>/dev/null; then
		registered=1
		break
	fi
	kill -0 "$dump_pid" 2>/dev/null ||
		fail "candump exited early: $(cat "$work/dump.err")"
	sleep 0.1
done
[[ -n $registered ]] || fail "candump did not start listening on vcan0 within 30 s"

cansend vcan0 1A000003# || fail "cansend vcan0 1A000003# failed"

rc=0
wait "$dump_pid" || rc=$?
dump_pid=
[[ $rc -eq 0 ]] ||
	fail "candump did not receive the frame (status $rc): $(cat "$work/dump.err")"

read -r _ iface frame rest <"$work/dump" || fail "candump printed nothing"
[[ $iface == vcan0 && $frame == 1A000003# && -z $rest ]] ||
	fail "candump saw '$(cat "$work/dump")', expected 'vcan0 1A000003#'"
echo "ok: candump received '$iface $frame'"

echo "PASS"
