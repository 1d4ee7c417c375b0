#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# tools/install-deps' profiles, in its dry mode: the demo installs no
# test-only tool, every profile is a part of the next, and a bad profile
# is refused.
set -euo pipefail
deps=$1
fail() { echo "not ok - $*"; exit 1; }

list() { "$deps" --profile "$1" --dry-run | sed 's/^[* ] //'; }
build=$(list build)
demo=$(list demo)
test=$(list test)

for tool in clang libclang-rt-14-dev libcmocka-dev sdcc srecord valgrind tmux python3-can python3-intelhex tshark ansible-core; do
        grep -qx "$tool" <<<"$demo" && fail "the demo profile installs $tool, which only the tests use"
        grep -qx "$tool" <<<"$test" || fail "the test profile lacks $tool"
done
for pkg in meson gcc libsystemd-dev scdoc; do
        grep -qx "$pkg" <<<"$build" || fail "the build profile lacks $pkg"
done
for pkg in qemu-system-x86 linux-image-amd64 can-utils dbus; do
        grep -qx "$pkg" <<<"$build" && fail "the build profile installs $pkg"
        grep -qx "$pkg" <<<"$demo" || fail "the demo profile lacks $pkg"
done
while read -r p; do grep -qx "$p" <<<"$demo" || fail "$p is in build but not in demo"; done <<<"$build"
while read -r p; do grep -qx "$p" <<<"$test" || fail "$p is in demo but not in test"; done <<<"$demo"
# the default is the test profile
[[ "$("$deps" --dry-run | sed 's/^[* ] //')" == "$test" ]] || fail "the default profile is not test"
if out=$("$deps" --profile nope --dry-run 2>&1); then fail "an unknown profile was accepted"; fi
[[ "$out" == "install-deps: unknown profile 'nope': use build, demo or test" ]] || fail "message: $out"
# Installs without recommended packages: as a user who may not install,
# on a machine where nothing is installed (a dpkg-query that knows no
# package), it prints the exact line to run.
fake=$(mktemp -d)
trap 'rm -rf "$fake"' EXIT
printf '#!/bin/sh\nexit 1\n' >"$fake/dpkg-query"
chmod 755 "$fake/dpkg-query"
chmod 755 "$fake"
runas=()
[[ $(id -u) -eq 0 ]] && runas=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
if out=$(PATH="$fake:$PATH" "${runas[@]}" "$deps" --profile build 2>&1); then fail "install-deps succeeded with nothing installed"; fi
[[ "$out" == *"apt-get update && apt-get install -y --no-install-recommends meson ninja-build gcc libc6-dev "* ]] ||
        fail "install line: $out"
echo "ok - install-deps profiles ($(wc -l <<<"$build") build, $(wc -l <<<"$demo") demo, $(wc -l <<<"$test") test packages)"
