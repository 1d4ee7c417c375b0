# SPDX-License-Identifier: LGPL-2.1-or-later
# bash completion for ispctl(1).
#
# Self-contained: it needs nothing from the bash-completion package, but
# uses its _filedir for file names when that is loaded. Node names and job
# ids come from the running daemon (ispctl list/jobs --json), asked through
# the same -H/--address as the command line being completed.

# Options for every command.
__ispctl_opts_global='-h --help --version --json -q --quiet -H --host --address'

# Options that make sense after each command, beyond the global ones.
__ispctl_opts_for() {
        case $1 in
        flash)   echo '--format --no-block --timeout --no-reboot --no-verify --full --force --dry-run --require-boot --canary --all --no-legend' ;;
        verify)  echo '--format --no-block --timeout --all --no-legend' ;;
        read)    echo '--format --timeout' ;;
        reboot)  echo '--no-block --timeout --all' ;;
        scan)    echo '--no-block --timeout --no-legend' ;;
        wait)    echo '--timeout' ;;
        list|jobs) echo '--no-legend' ;;
        inspect) echo '--format' ;;
        '')      echo '--format --no-block --timeout --no-reboot --no-verify --full --force --dry-run --require-boot --canary --all --no-legend --ask-password --no-ask-password' ;;
        esac
}

__ispctl_commands='flash verify read reboot status list scan jobs cancel wait monitor inspect help'

# ispctl, with the -H/--address of the command line being completed.
__ispctl_query() {
        local -a conn=()
        local i w
        for ((i = 1; i < ${#__ispctl_words[@]}; i++)); do
                w=${__ispctl_words[i]}
                case $w in
                -H|--host|--address)
                        ((i + 1 < __ispctl_cword)) && conn+=("$w" "${__ispctl_words[i + 1]}")
                        ((i++)) ;;
                --host=*|--address=*|-H?*)
                        conn+=("$w") ;;
                esac
        done
        ispctl "${conn[@]}" "$@" </dev/null 2>/dev/null
}

__ispctl_nodes() {
        {
                __ispctl_query list --json |
                        grep -o '"name"[[:space:]]*:[[:space:]]*"[^"]*"' |
                        sed 's/^"name"[[:space:]]*:[[:space:]]*"//; s/"$//'
                echo legacy
        } | sort -u
}

__ispctl_jobs() {
        __ispctl_query jobs --json |
                grep -o '"id"[[:space:]]*:[[:space:]]*[0-9][0-9]*' |
                sed 's/.*:[[:space:]]*//' | sort -n -u
}

# Targets, also inside a comma list: "1,node7,pu" completes "pu".
__ispctl_targets() {
        local cur=$1 head='' t
        if [[ $cur == *,* ]]; then
                head=${cur%,*},
                cur=${cur##*,}
        fi
        while IFS= read -r t; do
                [[ $t == "$cur"* ]] && COMPREPLY+=("$head$t")
        done < <(__ispctl_nodes)
}

__ispctl_files() {
        local cur=$1
        if declare -F _filedir >/dev/null; then
                _filedir
        else
                compopt -o filenames 2>/dev/null
                local f
                while IFS= read -r f; do
                        COMPREPLY+=("$f")
                done < <(compgen -f -- "$cur")
        fi
}

__ispctl_hosts() {
        local cur=$1 user=''
        if [[ $cur == *@* ]]; then
                user=${cur%%@*}@
                cur=${cur#*@}
        fi
        local h
        while IFS= read -r h; do
                COMPREPLY+=("$user$h")
        done < <(compgen -A hostname -- "$cur")
}

# Split the command line into words the way ispctl sees them: readline
# also breaks words at '=', ':' and '@' (COMP_WORDBREAKS), so
# "--format=hex" is three COMP_WORDS and "pi@plc7" three more; glue the
# pieces back together where no blank separates them. Sets
# __ispctl_words, __ispctl_cword.
__ispctl_reassemble() {
        local line=$COMP_LINE i w gap sep='^[=:@]+$'
        __ispctl_words=()
        __ispctl_cword=0
        for ((i = 0; i < ${#COMP_WORDS[@]}; i++)); do
                w=${COMP_WORDS[i]}
                gap=0
                if [[ $line =~ ^[[:blank:]]+ ]]; then
                        gap=1
                        line=${line:${#BASH_REMATCH}}
                fi
                if ((i > 1 && !gap)) &&
                   [[ $w =~ $sep || ${COMP_WORDS[i - 1]} =~ $sep ]]; then
                        __ispctl_words[-1]+=$w
                else
                        __ispctl_words+=("$w")
                fi
                if [[ $line == "$w"* ]]; then
                        line=${line:${#w}}
                else
                        line=${line#*"$w"}
                fi
                ((i == COMP_CWORD)) && __ispctl_cword=$((${#__ispctl_words[@]} - 1))
        done
}

_ispctl() {
        local cur prev raw i w
        local -a __ispctl_words
        local __ispctl_cword

        __ispctl_reassemble
        cur=${__ispctl_words[__ispctl_cword]}
        prev=${__ispctl_words[__ispctl_cword - 1]}
        COMPREPLY=()

        # --format=he, --host=pi@ho: complete the value after the '='.
        local eq=0
        if [[ $cur == --*=* ]]; then
                prev=${cur%%=*}
                cur=${cur#*=}
                eq=1
        fi

        __ispctl_complete "$cur" "$prev" "$eq"

        # readline replaces only the last piece of the word: what follows
        # the last '=' or ':', or the last '@' and what follows it (bash
        # keeps '@' in the text it completes). Cut the rest off every match.
        raw=${COMP_WORDS[COMP_CWORD]}
        if [[ $raw =~ ^[=:@]+$ ]]; then
                [[ $raw == *@ ]] && raw='@' || raw=''
        elif ((COMP_CWORD > 1)) && [[ ${COMP_WORDS[COMP_CWORD - 1]} =~ ^[=:@]*@$ ]]; then
                raw=@$raw
        fi
        local cut=$((${#cur} - ${#raw}))
        if ((cut > 0)); then
                for i in "${!COMPREPLY[@]}"; do
                        COMPREPLY[i]=${COMPREPLY[i]:cut}
                done
        fi
        return 0
}

__ispctl_complete() {
        local cur=$1 prev=$2 eq=$3 i w

        case $prev in
        --json)
                # its MODE only after '=': "--json list" is the option, then a command
                if ((eq)); then
                        mapfile -t COMPREPLY < <(compgen -W 'short pretty' -- "$cur")
                        return 0
                fi ;;
        --format)
                mapfile -t COMPREPLY < <(compgen -W 'hex bin' -- "$cur")
                return 0 ;;
        -H|--host)
                __ispctl_hosts "$cur"
                return 0 ;;
        --address)
                mapfile -t COMPREPLY < <(compgen -W 'unix:path= unix:abstract= tcp:host=' -- "$cur")
                compopt -o nospace 2>/dev/null
                return 0 ;;
        --canary|--timeout)
                # a number of nodes, a time span: nothing to offer
                return 0 ;;
        esac

        # The command and its arguments so far, skipping options and theirs.
        local verb='' all=0
        local -a args=()
        for ((i = 1; i < __ispctl_cword; i++)); do
                w=${__ispctl_words[i]}
                case $w in
                --all) all=1 ;;
                --format|-H|--host|--address|--canary|--timeout) ((i++)) ;;
                -*) ;;
                *)
                        if [[ -z $verb ]]; then
                                verb=$w
                        else
                                args+=("$w")
                        fi ;;
                esac
        done

        if [[ $cur == -* ]]; then
                mapfile -t COMPREPLY < <(compgen -W "$__ispctl_opts_global $(__ispctl_opts_for "$verb")" -- "$cur")
                return 0
        fi

        case $verb in
        '')
                mapfile -t COMPREPLY < <(compgen -W "$__ispctl_commands" -- "$cur") ;;
        flash|verify)
                # TARGET... FILE: a target first, then targets or the file.
                if ((all || ${#args[@]} > 0)); then
                        __ispctl_files "$cur"
                fi
                if ((!all)); then
                        __ispctl_targets "$cur"
                fi ;;
        read)
                # TARGET FILE
                case ${#args[@]} in
                0) __ispctl_targets "$cur" ;;
                1) __ispctl_files "$cur" ;;
                esac ;;
        reboot)
                ((all)) || __ispctl_targets "$cur" ;;
        status)
                ((${#args[@]} == 0)) && __ispctl_targets "$cur" ;;
        cancel|wait)
                mapfile -t COMPREPLY < <(compgen -W "$(__ispctl_jobs)" -- "$cur") ;;
        help)
                ((${#args[@]} == 0)) && mapfile -t COMPREPLY < <(compgen -W "$__ispctl_commands" -- "$cur") ;;
        inspect)
                ((${#args[@]} == 0)) && __ispctl_files "$cur" ;;
        esac
}

complete -F _ispctl ispctl
