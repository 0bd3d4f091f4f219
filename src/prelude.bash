# trc's bash prelude: runs one task of a trc.d group. See src/shell.rs for how it is called.
# $0 is trc's path and "$@" the task's arguments; the _TRC_* variables say what to run.
_trc_kind=$_TRC_KIND _trc_src=$_TRC_SRC _trc_state=$_TRC_STATE _trc_save_to=$_TRC_SAVE ns=$_TRC_NS
_trc_untrapped=$_TRC_UNTRAPPED _trc_after=$_TRC_AFTER
# The task's arguments come quoted in _TRC_ARGS (off the command line, which names the task).
if [[ -v _TRC_ARGS ]]; then eval "set -- $_TRC_ARGS"; fi
# Its short name for top and ps -e (bash's own is "bash"); exec'ing a program replaces it.
if [[ -n ${_TRC_COMM-} ]]; then builtin printf '%s' "$_TRC_COMM" 2>/dev/null >/proc/self/comm || :; fi
# TrivialRC runs boot in its main shell: its `log` lines show main's pid.
if [[ $_trc_kind == boot-* ]]; then _trc_logpid=$MAINPID; else _trc_logpid=; fi
unset _TRC_KIND _TRC_SRC _TRC_STATE _TRC_SAVE _TRC_NS _TRC_UNTRAPPED _TRC_AFTER _TRC_ARGS _TRC_COMM

# TrivialRC's integrated functions, with the same output (printf %()T instead of forking date).
say() { if [[ "${RC_VERBOSE-}" = "true" ]]; then builtin command echo "$@"; fi; }
log() {
    local _trc_ts
    builtin printf -v _trc_ts '%(%Y-%m-%d %H:%M:%S)T' -1
    say "${_trc_ts} ${SELF_NAME-trc} [${ns}/${_trc_logpid:-$BASHPID}]: $@"
}
warn() { log "$@" >&2; }
err() { warn "$@"; exit 1; }
debug() { if [[ "${RC_VERBOSE_EXTRA-}" = "true" ]]; then log " - $@"; fi; }
run() { builtin command "$@"; }

# Async and sync tasks exit at the first failing command and on a signal, as TrivialRC's
# subshells do (so a task's own EXIT trap still runs when it is stopped). The task's stop
# signal ($_trc_untrapped, when trc gives one) keeps its default action instead: a signal bash
# traps is lost if it comes while bash starts a program (see src/shell.rs), its default action
# ends the task with the same 128+N, and bash still runs the EXIT trap.
_trc_traps() {
    trap '_trc_es=$?; trap - ERR; exit $_trc_es' ERR
    @TRAPS@
}

# Writes what a boot task set, for every later task: variables (exported or not, and even its
# `local` ones, which TrivialRC's boot leaves in its main() for every later task), functions
# (exported or not), shell options, umask and cwd as bash code in $_trc_save_to.sh; the
# rewritten argv and the RC_* variables NUL-separated in $_trc_save_to.nul, which trc reads.
#
# A write that fails (a full runtime dir) is not bash's noise on the task's stderr (a line per
# variable) but one reason in $_trc_save_to.failed, which trc reports as its own error. bash
# builtins say a write error but still return 0, so what they say is the test: the writing runs
# in a command substitution only to catch that.
_trc_save() {
    set +eu
    local _trc_err _trc_l
    _trc_err=$(_trc_write_state 2>&1 >/dev/null)
    [[ -z $_trc_err ]] && return 0
    _trc_err=${_trc_err%%$'\n'*}
    _trc_err=${_trc_err##*: }
    # Frees what the partial files took, so that the reason fits.
    for _trc_l in opts vars funcs sh nul; do
        if [[ -e $_trc_save_to.$_trc_l ]]; then : 2>/dev/null > "$_trc_save_to.$_trc_l"; fi
    done
    builtin umask 077
    if ! { builtin printf '%s\n' "$_trc_err" > "$_trc_save_to.failed"; } 2>/dev/null; then
        builtin printf 'trc: cannot save the boot state in %s: %s\n' "${_trc_save_to%/*}" "$_trc_err" >&2
        exit 78
    fi
}
_trc_write_state() {
    # The files are trc's alone (0600), whatever the task's umask (which the state keeps).
    local _trc_l _trc_n _trc_x _trc_mask
    _trc_mask=$(builtin umask -p)
    builtin umask 077
    { set +o; shopt -p; } > "$_trc_save_to.opts"
    declare -p > "$_trc_save_to.vars"
    declare -F > "$_trc_save_to.funcs"
    {
        while IFS= read -r _trc_l; do
            [[ $_trc_l =~ ^declare\ -[a-zA-Z-]*\ ([A-Za-z_][A-Za-z_0-9]*) ]] || continue
            case ${BASH_REMATCH[1]} in
                _trc_* | _TRC_* | TRC_* | BASH | BASH_* | BASHOPTS | BASHPID | COMP_* | COLUMNS | LINES | \
                DIRSTACK | EPOCHREALTIME | EPOCHSECONDS | EUID | FUNCNAME | GROUPS | HISTCMD | HOSTNAME | \
                HOSTTYPE | LINENO | MACHTYPE | OLDPWD | OPTERR | OPTIND | OSTYPE | PIPESTATUS | PPID | PWD | \
                RANDOM | SECONDS | SHELLOPTS | SHLVL | SRANDOM | UID | _ | MAINPID | SELF_NAME | RC_WORK_DIR | \
                RC_RUNTIME_DIR | NOTIFY_SOCKET | WATCHDOG_USEC | ns | _exit_status) continue ;;
            esac
            builtin printf '%s\n' "$_trc_l"
        done < "$_trc_save_to.vars"
        while IFS= read -r _trc_l; do
            [[ $_trc_l =~ ^declare\ -f(x?)\ (.*)$ ]] || continue
            _trc_x=${BASH_REMATCH[1]} _trc_n=${BASH_REMATCH[2]}
            case $_trc_n in _trc_*) continue ;; esac
            declare -f -- "$_trc_n"
            if [[ -n $_trc_x ]]; then builtin printf 'declare -fx -- %q\n' "$_trc_n"; fi
        done < "$_trc_save_to.funcs"
        while IFS= read -r _trc_l; do
            case $_trc_l in *\ errexit | *\ xtrace | *\ login_shell | *\ restricted_shell | *\ monitor) continue ;; esac
            builtin printf '%s 2>/dev/null\n' "$_trc_l"
        done < "$_trc_save_to.opts"
        builtin printf '%s\n' "$_trc_mask"
        builtin printf 'builtin cd -- %q 2>/dev/null\n' "$PWD"
    } > "$_trc_save_to.sh"
    {
        builtin printf '%s\0' "${#_trc_args[@]}" "${_trc_args[@]}"
        for _trc_n in ${!RC_@}; do builtin printf '%s=%s\0' "$_trc_n" "${!_trc_n}"; done
    } > "$_trc_save_to.nul"
}

if [[ -n $_trc_state ]]; then . "$_trc_state"; fi
# The task's own cwd:, umask:, env: and user's HOME win over what boot saved.
if [[ -n $_trc_after ]]; then eval "$_trc_after"; fi
unset _trc_after
if [[ $_trc_kind == halt-* ]]; then _exit_status=${TRC_EXIT_STATUS-0}; fi
_trc_xtrace() { if [[ "${RC_DEBUG-}" = "true" ]]; then set -x; fi; }

case $_trc_kind in
    boot-file) set -e; _trc_main() { _trc_xtrace; . "$_trc_src"; _trc_args=("$@"); _trc_save; }; _trc_main "$@" ;;
    boot-cmd) set -e; _trc_main() { _trc_xtrace; eval "$_trc_src"; _trc_args=("$@"); _trc_save; }; _trc_main "$@" ;;
    task-file) _trc_main() { _trc_traps; _trc_xtrace; . "$_trc_src"; }; _trc_main "$@" ;;
    task-cmd) _trc_main() { _trc_traps; _trc_xtrace; eval "$_trc_src"; }; _trc_main "$@" ;;
    halt-file) set -e; _trc_main() { _trc_xtrace; . "$_trc_src"; }; _trc_main "$@" ;;
    halt-cmd) set -e; _trc_main() { _trc_xtrace; eval "$_trc_src"; }; _trc_main "$@" ;;
    exec) exec -- "$_trc_src" ;;
    argv)
        if [[ $(type -t -- "$1") == file ]]; then exec -- "$@"; fi
        "$@" ;;
    *) echo "trc: internal error: unknown task kind '$_trc_kind'" >&2; exit 70 ;;
esac
