#!/usr/bin/env bash
# A small supervisor in bash with TrivialRC's structure, the "bash way" that bench/suite.sh
# compares trc with (written for the benchmark; not TrivialRC's code, but the same moving parts,
# so that it costs what TrivialRC costs):
#   - one main shell; boot tasks are sourced/eval'ed in it (set -e)
#   - every async task runs in a background subshell `( traps; eval "$cmd" ) &`, every sync task
#     and the trailing command in a foreground subshell, each with EXIT/ERR/signal traps
#   - the tasks of each stage are listed with `ls`; every log line forks `date` (printed only
#     with RC_VERBOSE=true, as TrivialRC does)
#   - wait_any: a task's exit hook sends SIGTERM to the main shell; the main shell traps the
#     terminating signals, and its EXIT hook stops the async tasks (TERM to each subshell and its
#     children, polled with `ps` every second, a 5 s budget shared by all, then KILL), kills
#     what is left with `pkill -P`, runs the halt tasks and exits
#   - wait_all/wait_err: `wait` for the async tasks; wait_forever: a `sleep 1` loop
# Usage: bench/trivialrc-like.sh [-w DIR] [-B CMDS]... [-H CMDS]... [-D CMDS]... [-F CMDS]...
#                                [COMMAND [ARGS...]]
# Env:   RC_WAIT_POLICY (wait_any), RC_VERBOSE=true; needs ps, pgrep, pkill (procps).
# shellcheck disable=SC1090 # task files are sourced, as TrivialRC does
set +e
signals=(HUP INT ILL TRAP ABRT BUS FPE USR1 SEGV USR2 PIPE ALRM TERM XCPU XFSZ VTALRM SYS)

say() { [ "$RC_VERBOSE" != true ] || echo "$@"; }
log() { say "$(date '+%Y-%m-%d %H:%M:%S') $SELF_NAME [$ns/$BASHPID]: $*"; }
# stage_files STAGE: the task files of a stage, as `ls` orders them
stage_files() { ls "$work_dir"/trc."$1".* "$work_dir"/trc.d/"$1".* 2>/dev/null; }

# The traps of a task subshell: its exit is logged, and under wait_any it ends the group.
task_traps() {
    trap 'rc=$?; trap - EXIT; task_exit "$rc"' EXIT
    trap 'exit $?' "${signals[@]}"
    trap 'exit $?' ERR
}
task_exit() {
    log "Exiting (exitcode=$1): $label"
    if [ "$RC_WAIT_POLICY" = wait_any ] && ps -p "$MAINPID" >/dev/null 2>&1; then
        kill -TERM "$MAINPID" 2>/dev/null
    fi
    exit "$1"
}

# The main shell's EXIT hook: stop the async tasks, then halt.
main_exit() {
    local rc=$1 pid kids list budget=5 halt_rc='' f
    # From here on a signal changes nothing (the tasks' exit hooks send TERM to this shell).
    trap : "${signals[@]}"
    log "Trying to terminate sub-processes..."
    for pid in $child_pids; do
        ps -p "$pid" >/dev/null 2>&1 || continue
        kids=$(pgrep -P "$pid" -d ' ')
        # shellcheck disable=SC2086 # a list of pids
        kill -TERM "$pid" $kids 2>/dev/null
        list=$pid${kids:+,${kids// /,}}
        while ps -p "$list" >/dev/null 2>&1 && [ "$budget" -gt 0 ]; do
            sleep 1
            budget=$((budget - 1))
        done
        # shellcheck disable=SC2086
        ps -p "$list" >/dev/null 2>&1 && kill -KILL "$pid" $kids 2>/dev/null
    done
    pkill -KILL -P "$MAINPID" >/dev/null 2>&1
    if [ "$booted" = 1 ]; then
        for f in $(stage_files halt); do
            (set -e; ns=halt; _exit_status=$rc; . "$f"); halt_rc=$?
        done
        for cmd in "${halt_cmds[@]}"; do
            (set -e; ns=halt; _exit_status=$rc; eval "$cmd"); halt_rc=$?
        done
    fi
    log "Exited (exitcode=${halt_rc:-$rc})"
    exit "${halt_rc:-$rc}"
}

main() {
    trap 'rc=$?; trap - EXIT; main_exit "$rc"' EXIT
    trap 'exit $?' "${signals[@]}"
    trap '[ "$RC_WAIT_POLICY" != wait_err ] || exit $?' ERR
    export SELF_NAME MAINPID=$BASHPID RC_WAIT_POLICY=${RC_WAIT_POLICY:-wait_any}
    SELF_NAME=$(basename "$0" .sh)
    ns=main child_pids='' booted=0 halt_cmds=() status=0 work_dir=$PWD
    log "The wait policy: $RC_WAIT_POLICY"
    if [ "$1" = -w ] || [ "$1" = --workdir ]; then work_dir=$2; shift 2; fi

    set -e
    for f in $(stage_files boot); do log "Launching in the boot: $f"; . "$f"; done
    while [ "$1" = -B ]; do log "Launching in the boot: $2"; eval "$2"; shift 2; done
    set +e
    booted=1
    while [ "$1" = -H ]; do halt_cmds+=("$2"); shift 2; done

    for f in $(stage_files async); do
        { (task_traps; ns=async label=$f; log "Launching in the background: $f"; . "$f") & } 2>/dev/null
        child_pids+=" $!"
    done
    while [ "$1" = -D ]; do
        { (task_traps; ns=async label=$2; log "Launching in the background: $2"; eval "$2") & } 2>/dev/null
        child_pids+=" $!"
        shift 2
    done
    for f in $(stage_files sync); do
        (task_traps; ns=sync label=$f; log "Launching in the foreground: $f"; . "$f"); status=$?
    done
    while [ "$1" = -F ]; do
        (task_traps; ns=sync label=$2; log "Launching in the foreground: $2"; eval "$2"); status=$?
        shift 2
    done
    if [ $# -gt 0 ]; then
        (set -e; task_traps; ns=sync label="$*"; log "Launching in the foreground: $*"; "$@"); status=$?
    fi

    case $RC_WAIT_POLICY in
        wait_any | wait_all | wait_err)
            # shellcheck disable=SC2086 # a list of pids
            wait $child_pids || status=$?
            ;;
        wait_forever) while :; do sleep 1; done ;;
    esac
    return "$status"
}

main "$@"
