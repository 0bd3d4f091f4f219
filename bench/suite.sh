#!/usr/bin/env bash
# The benchmark suite (issue #6): trc against tini, dumb-init, runit, s6, supervisord and a bash
# supervisor with TrivialRC's structure, every measurement on this machine in this run:
#   1. start + teardown of a group with one `true` task   bench/startup.sh (hyperfine)
#   2. prefixed log throughput                            bench/throughput.sh
#   3. memory with 3, 100 and 1,000 sleeping services     bench/supervisors.py memory
#   4. restart latency                                    bench/restart_latency.sh
#   5. teardown of 5 and 100 TERM-responsive services     bench/supervisors.py teardown
#   6. idle CPU time and wakeups with 100 services        bench/supervisors.py idle
#   7. readiness to the start of a dependent (vs s6)     bench/ready.sh
# It prints a table of medians and of trc ÷ baseline, the goals of the issue (met or not) and
# each measurement's table, with the machine's description; the full run writes the same to
# BENCHMARKS.md. Nothing is asserted: a goal not met does not fail the suite (a measurement that
# cannot run does).
#
# Usage: bench/suite.sh [--smoke] [--out FILE]
#   (default)  the full suite, some minutes; writes BENCHMARKS.md at the repository's root
#   --smoke    shows that every measurement still works end to end, not numbers to compare (CI
#              runs it so that the suite never rots): trc's rows and the floors (`true`, sed, the
#              bash and dash loops, the TrivialRC-style bash supervisor) at tiny sizes, once, with
#              no settling waits and no other supervisor (no package of theirs is needed): about
#              7 s on 2 CPUs, 13 s with both kept busy; writes no file unless --out is given
#   --out FILE write the report to FILE instead
# Env:   TRC=path/to/trc (default: the static build, target/<host>/release/trc, built with
#        RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target <host>).
#        Run as root: missing baselines are installed with apt-get (tini dumb-init runit s6
#        supervisor hyperfine, and dash procps python3 util-linux that the scripts use; with
#        --smoke only the latter and hyperfine).
set -euo pipefail
smoke=0
out_file=
while [ $# -gt 0 ]; do
    case $1 in
        --smoke) smoke=1 ;;
        --out) [ $# -ge 2 ] || { echo "--out needs a file" >&2; exit 2; }; out_file=$2; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
[ "$smoke" = 1 ] || out_file=${out_file:-$repo/BENCHMARKS.md}
[ -z "$out_file" ] || out_file=$(realpath -m "$out_file")

say() { echo "::: $*" >&2; }

# ----- what it needs --------------------------------------------------------------------------
# command -> Debian package
declare -A package=([hyperfine]=hyperfine [dash]=dash [python3]=python3 [pgrep]=procps
    [pkill]=procps [ps]=procps [setsid]=util-linux)
if [ "$smoke" = 0 ]; then
    package+=([tini]=tini [dumb-init]=dumb-init [runsvdir]=runit [runsv]=runit [s6-svscan]=s6
        [s6-supervise]=s6 [supervisord]=supervisor [supervisorctl]=supervisor)
else
    # Every step runs its smoke variant: trc and the floors only, no settling waits.
    export BENCH_SMOKE=1
fi
missing=()
for cmd in "${!package[@]}"; do
    command -v "$cmd" > /dev/null || missing+=("${package[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    if [ "$(id -u)" -eq 0 ] && command -v apt-get > /dev/null; then
        say "installing: ${missing[*]}"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    else
        echo "missing packages: ${missing[*]} (run as root to install them with apt-get)" >&2
        exit 1
    fi
fi

if [ -z "${TRC:-}" ]; then
    # The build to ship in a container: statically linked (README, "Static build").
    host=$(rustc -vV | sed -n 's/^host: //p')
    TRC=$repo/target/$host/release/trc
    say "building trc (static): cargo build --release --target $host, crt-static"
    (cd "$repo" && RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --quiet --target "$host")
fi
[ -x "$TRC" ] || { echo "$TRC: not an executable (set TRC=...)" >&2; exit 1; }
export TRC_BUILD
TRC_BUILD=$(python3 "$here/elf_kind.py" "$TRC")

# ----- processes, and cleaning them up --------------------------------------------------------
tmp=$(mktemp -d -t trc-suite.XXXXXX)
xdg=
step_pid=
cleanup() {
    trap - EXIT INT TERM
    if [ -n "$step_pid" ]; then
        # Each step cleans up after itself on SIGTERM (its own processes, its temp dir).
        kill -TERM "$step_pid" 2> /dev/null || true
        wait "$step_pid" 2> /dev/null || true
    fi
    rm -rf "$tmp" ${xdg:+"$xdg"}
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# trc's runtime dir (its FIFOs, socket, pid file) in a temp dir of its own, on a tmpfs when there
# is one, as XDG_RUNTIME_DIR and /run are on a host (startup.sh and supervisors.py make their own).
if [ "$(stat -f -c %T /dev/shm 2> /dev/null)" = tmpfs ] && [ -w /dev/shm ]; then
    xdg=$(mktemp -d -p /dev/shm trc-suite.XXXXXX)
else
    xdg=$tmp/xdg
    mkdir "$xdg"
fi
export XDG_RUNTIME_DIR=$xdg

# The binary measured is a copy: a rebuild during the run changes nothing.
cp "$TRC" "$tmp/trc"
export TRC=$tmp/trc
results=$tmp/results
mkdir "$results"

# step NAME CMD...: runs one measurement, its table (stdout) into $results/NAME.md. In the
# background, so that a signal to the suite is handled at once (and passed on to the step).
step() {
    local name=$1 start=$SECONDS
    shift
    say "$name: $*"
    "$@" > "$results/$name.md" &
    step_pid=$!
    wait "$step_pid"
    step_pid=
    say "$name: done in $((SECONDS - start)) s"
}

# shellcheck disable=SC2054 # "3,100,1000" is one argument
if [ "$smoke" = 1 ]; then
    params="smoke (trc and the floors only): 1 hyperfine run; 20,000 lines; memory with 3 services; 3 restarts; teardown of 2 services; idle 5 services for 1 s"
    startup=(1 1) throughput=(20000 1) memory=(--sizes 3 --runs 1) restart=(3 0)
    teardown=(--sizes 2 --runs 1) idle=(--tasks 5 --window 1) ready=(--smoke)
    export SERVICES=2
else
    params="hyperfine 200 runs after 20 warm-ups; 3,000,000 lines, 5 runs; memory 3 runs; 100 restarts after 5 warm-ups; teardown 5 runs; idle 10 s"
    startup=(200 20) throughput=(3000000 5) memory=(--sizes 3,100,1000 --runs 3) restart=(100 5)
    teardown=(--sizes 5,100 --runs 5) idle=(--tasks 100 --window 10) ready=(-n 100)
fi
echo "$params" > "$results/params"

step startup env BENCH_JSON="$results/startup.json" "$here/startup.sh" "${startup[@]}"
step throughput "$here/throughput.sh" "${throughput[@]}"
step memory python3 "$here/supervisors.py" memory "${memory[@]}" --json "$results/memory.json"
step restart "$here/restart_latency.sh" "${restart[@]}"
step teardown python3 "$here/supervisors.py" teardown "${teardown[@]}" --json "$results/teardown.json"
step idle python3 "$here/supervisors.py" idle "${idle[@]}" --json "$results/idle.json"
step ready "$here/ready.sh" "${ready[@]}" --markdown

report=(python3 "$here/report.py" "$results" "$TRC")
[ "$smoke" = 0 ] || report+=(--smoke)
"${report[@]}" > "$tmp/report.md"
cat "$tmp/report.md"
if [ -n "$out_file" ]; then
    cp "$tmp/report.md" "$out_file"
    say "written: $out_file"
fi
