#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The bash completion for ispctl, in a non-interactive bash: COMP_WORDS,
# COMP_CWORD, COMP_LINE and COMP_POINT are set as readline would set them
# (with bash's default COMP_WORDBREAKS, which splits at '=', ':' and '@'),
# _ispctl
# runs, COMPREPLY is compared. A stub ispctl first in PATH stands in for
# the daemon.
#
# Usage: test-completion.sh [completions/ispctl.bash]
set -uo pipefail

completion=${1:-$(dirname "$0")/../../completions/ispctl.bash}
completion=$(realpath -- "$completion") || exit 1

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The stub: what `ispctl list --json` and `ispctl jobs --json` print when a
# daemon runs, every call logged. ISPCTL_STUB_FAIL makes it act like
# ispctl without a daemon (exit status 6, JSON error on stdout).
mkdir "$tmp/bin"
cat >"$tmp/bin/ispctl" <<'EOF'
#!/bin/sh
echo "$*" >>"$ISPCTL_STUB_LOG"
if [ -n "${ISPCTL_STUB_FAIL:-}" ]; then
        echo '{"error":"Cannot connect to the system bus: No such file or directory"}'
        exit 6
fi
for a in "$@"; do
        case $a in
        list)
                echo '{"nodes":[{"id":3,"name":"pump","form":"extended","state":"isp"},{"id":7, "name" : "node7","form":"extended"},{"id":0,"name":"legacy","form":"legacy"}]}'
                exit 0 ;;
        jobs)
                echo '{"jobs":[{"id":12,"kind":"flash","target":"node3","state":"succeeded"},{"id":5,"kind":"scan","target":"bus"},{"id":13,"kind":"reboot","target":"node7"}]}'
                exit 0 ;;
        esac
done
exit 2
EOF
chmod +x "$tmp/bin/ispctl"
export PATH="$tmp/bin:$PATH"
export ISPCTL_STUB_LOG="$tmp/log"
: >"$ISPCTL_STUB_LOG"

# Files for file name completion.
mkdir "$tmp/files"
touch "$tmp/files/app.hex" "$tmp/files/app.bin" "$tmp/files/readme.txt"
cd "$tmp/files" || exit 1

# shellcheck source=/dev/null
source "$completion" || { echo "cannot source $completion"; exit 1; }
complete -p ispctl >/dev/null || { echo "no completion registered for ispctl"; exit 1; }

passed=0
failed=0

# check NAME LINE EXPECTED WORD...: complete LINE (cursor at its end),
# which readline splits into WORD... (the last one the current word), and
# expect COMPREPLY, sorted, to be EXPECTED (words separated by spaces).
check() {
        local name=$1 line=$2 expected=$3
        shift 3
        COMP_WORDS=("$@")
        COMP_CWORD=$(($# - 1))
        COMP_LINE=$line
        COMP_POINT=${#line}
        COMPREPLY=()
        _ispctl ispctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
        local got
        got=$(printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ')
        got=${got% }
        if [[ $got == "$expected" ]]; then
                passed=$((passed + 1))
                echo "ok - $name"
        else
                failed=$((failed + 1))
                echo "not ok - $name"
                echo "#   line:     '$line'"
                echo "#   expected: '$expected'"
                echo "#   got:      '$got'"
        fi
}

# Commands.
check 'commands' 'ispctl ' \
        'cancel flash help inspect jobs list monitor read reboot scan status verify wait' ispctl ''
check 'commands starting with r' 'ispctl r' \
        'read reboot' ispctl r
check 'commands starting with s' 'ispctl s' \
        'scan status' ispctl s
check 'command after a global option' 'ispctl --json l' \
        'list' ispctl --json l
check 'command after -H and its argument' 'ispctl -H pi@plc7 mo' \
        'monitor' ispctl -H pi @ plc7 mo

# --format values, as a separate word and after '='.
check '--format values' 'ispctl inspect --format ' \
        'bin hex' ispctl inspect --format ''
check '--format h' 'ispctl --format h' \
        'hex' ispctl --format h
check '--format= values' 'ispctl flash --format=' \
        'bin hex' ispctl flash --format =
check '--format=b' 'ispctl flash --format=b' \
        'bin' ispctl flash --format = b
check 'command after --format=hex' 'ispctl --format=hex ins' \
        'inspect' ispctl --format = hex ins

# --address: the kinds of address; after a ':' only the rest of the match
# replaces the last piece readline split off.
check '--address kinds' 'ispctl --address u' \
        'unix:abstract= unix:path=' ispctl --address u
check '--address=unix:p' 'ispctl --address=unix:p' \
        'path=' ispctl --address = unix : p

# -H: host names (from HOSTFILE), also after USER@. After an '@', readline
# replaces the text from the '@' on: the matches start with it.
printf '127.0.0.1 localhost\n10.0.0.7 plc7 plc7.example.org\n10.0.0.8 plc8\n' >"$tmp/hosts"
export HOSTFILE="$tmp/hosts"
check '-H hosts' 'ispctl -H plc' \
        'plc7 plc7.example.org plc8' ispctl -H plc
check '-H USER@host' 'ispctl -H pi@plc7' \
        '@plc7 @plc7.example.org' ispctl -H pi @ plc7
check '--host=USER@' 'ispctl --host=pi@' \
        '@localhost @plc7 @plc7.example.org @plc8' ispctl --host = pi @

# Options starting with --no-, per command.
check '--canary takes a number' 'ispctl flash --canary ' \
        '' ispctl flash --canary ''
check '--canary= takes a number' 'ispctl flash --canary=' \
        '' ispctl flash --canary =
check '--timeout takes a time span' 'ispctl flash --timeout ' \
        '' ispctl flash --timeout ''
check '--t for wait' 'ispctl wait --t' \
        '--timeout' ispctl wait --t
check '--t for list: no --timeout' 'ispctl list --t' \
        '' ispctl list --t
check 'reboot target after --timeout T' 'ispctl reboot --timeout 30s n' \
        'node7' ispctl reboot --timeout 30s n
check '--no- before the command' 'ispctl --no-' \
        '--no-ask-password --no-block --no-legend --no-reboot --no-verify' ispctl --no-
check '--no- for flash' 'ispctl flash --no-' \
        '--no-block --no-legend --no-reboot --no-verify' ispctl flash --no-
check '--f for flash' 'ispctl flash --f' \
        '--force --format --full' ispctl flash --f
check '--d for flash' 'ispctl flash --d' \
        '--dry-run' ispctl flash --d
check '--re for flash' 'ispctl flash --re' \
        '--require-boot' ispctl flash --re
check '--c for flash' 'ispctl flash --c' \
        '--canary' ispctl flash --c
check '--f for verify: no --full, no --force' 'ispctl verify --f' \
        '--format' ispctl verify --f
check '--d for verify: no --dry-run' 'ispctl verify --d' \
        '' ispctl verify --d
check 'options of read' 'ispctl read --' \
        '--address --format --help --host --json --quiet --timeout --version' ispctl read --
check '--f for reboot: no --full' 'ispctl reboot --f' \
        '' ispctl reboot --f
check '--no- for reboot' 'ispctl reboot --no-' \
        '--no-block' ispctl reboot --no-
check '--no- for scan' 'ispctl scan --no-' \
        '--no-block --no-legend' ispctl scan --no-
check '--no- for list' 'ispctl list --no-' \
        '--no-legend' ispctl list --no-
check '--no- for jobs' 'ispctl jobs --no-' \
        '--no-legend' ispctl jobs --no-
check '--no- for verify' 'ispctl verify --no-' \
        '--no-block --no-legend' ispctl verify --no-
check '-q for list' 'ispctl list -' \
        '--address --help --host --json --no-legend --quiet --version -H -h -q' ispctl list -

# --json's MODE after '=' only.
check '--json= modes' 'ispctl --json=' \
        'pretty short' ispctl --json =
check '--json=p' 'ispctl list --json=p' \
        'pretty' ispctl list --json = p
check 'command after --json=pretty' 'ispctl --json=pretty li' \
        'list' ispctl --json = pretty li

# help COMMAND.
check 'help commands' 'ispctl help re' \
        'read reboot' ispctl help re
check 'help takes one command' 'ispctl help flash ' \
        '' ispctl help flash ''
check 'options of inspect' 'ispctl inspect --' \
        '--address --format --help --host --json --quiet --version' ispctl inspect --

# Targets: node names from the daemon, plus legacy.
check 'flash targets' 'ispctl flash ' \
        'legacy node7 pump' ispctl flash ''
check 'reboot targets starting with n' 'ispctl reboot n' \
        'node7' ispctl reboot n
check 'status target' 'ispctl status p' \
        'pump' ispctl status p
check 'status takes one target' 'ispctl status pump ' \
        '' ispctl status pump ''
check 'target in a comma list' 'ispctl reboot 1,node7,p' \
        '1,node7,pump' ispctl reboot 1,node7,p
check 'reboot --all takes no target' 'ispctl reboot --all ' \
        '' ispctl reboot --all ''

# flash: after a target, more targets or the file; with --all, the file.
check 'flash target or file' 'ispctl flash pump ' \
        'app.bin app.hex legacy node7 pump readme.txt' ispctl flash pump ''
check 'flash file' 'ispctl flash pump app.h' \
        'app.hex' ispctl flash pump app.h
check 'flash --all file' 'ispctl flash --all ' \
        'app.bin app.hex readme.txt' ispctl flash --all ''
check 'flash target after --canary N' 'ispctl flash --canary 2 n' \
        'node7' ispctl flash --canary 2 n
check 'verify target or file' 'ispctl verify pump ' \
        'app.bin app.hex legacy node7 pump readme.txt' ispctl verify pump ''
check 'verify --all file' 'ispctl verify --all app.b' \
        'app.bin' ispctl verify --all app.b
check 'read target' 'ispctl read p' \
        'pump' ispctl read p
check 'read file' 'ispctl read pump ' \
        'app.bin app.hex readme.txt' ispctl read pump ''
check 'read takes one target, one file' 'ispctl read pump out.hex ' \
        '' ispctl read pump out.hex ''
check 'inspect file' 'ispctl inspect app' \
        'app.bin app.hex' ispctl inspect app
check 'inspect takes one file' 'ispctl inspect app.hex ' \
        '' ispctl inspect app.hex ''

# Job ids for cancel.
check 'cancel job ids' 'ispctl cancel ' \
        '12 13 5' ispctl cancel ''
check 'cancel job ids starting with 1' 'ispctl cancel 1' \
        '12 13' ispctl cancel 1
check 'wait job ids' 'ispctl wait ' \
        '12 13 5' ispctl wait ''
check 'wait job ids after --timeout T' 'ispctl --timeout 1min wait 1' \
        '12 13' ispctl --timeout 1min wait 1

# The daemon is asked through the same -H/--address as the command line.
: >"$ISPCTL_STUB_LOG"
check 'targets over -H' 'ispctl -H pi@plc7 reboot ' \
        'legacy node7 pump' ispctl -H pi @ plc7 reboot ''
check 'targets over --address=' 'ispctl --address=unix:path=/run/b reboot p' \
        'pump' ispctl --address = unix : path = /run/b reboot p
log=$(cat "$ISPCTL_STUB_LOG")
expected_log='-H pi@plc7 list --json
--address=unix:path=/run/b list --json'
if [[ $log == "$expected_log" ]]; then
        passed=$((passed + 1))
        echo "ok - -H and --address passed to ispctl"
else
        failed=$((failed + 1))
        echo "not ok - -H and --address passed to ispctl"
        echo "#   expected: '$expected_log'"
        echo "#   got:      '$log'"
fi

# No daemon: still legacy, no error text among the matches.
export ISPCTL_STUB_FAIL=1
check 'targets without a daemon' 'ispctl flash ' \
        'legacy' ispctl flash ''
check 'job ids without a daemon' 'ispctl cancel ' \
        '' ispctl cancel ''
unset ISPCTL_STUB_FAIL

echo "# $passed passed, $failed failed"
((failed == 0))
