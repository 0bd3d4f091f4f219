#!/usr/bin/env bash
# Readiness latency: the time from a task becoming ready to the start of the task that depends
# on it, for s6 and trc, measured side by side in one run (not a test: nothing is asserted).
#
# Two tasks, a and b; b depends on a. Both are the small static program bench/ready_stamp.c
# (built here with cc), run as the `#!` interpreter of their task file, so that the kernel execs
# it directly for both tools and no shell start-up is inside the measured time:
#   a: sleeps 20 ms (DELAY_US), reads CLOCK_MONOTONIC, then at once signals readiness: a newline
#      on fd 3, the line "ready" on its stdout, or one sd_notify datagram "READY=1" on
#      $NOTIFY_SOCKET; then reports that time and waits to be stopped
#   b: reads CLOCK_MONOTONIC as the first thing in main(), reports it and exits
# Each run's sample is b's time minus a's: from a's readiness write to b's first instruction.
#
#   s6:  a fresh scan dir per run, under `s6-svscan`: a/run is a's file with `notification-fd` 3;
#        b/run is s6's idiom for a dependency, `#!/bin/sh`, `s6-svwait -U ../a || exit`, then
#        `exec` b's file. Both start down: b is brought up (`s6-svc -u`) once a's supervisor is
#        up, and a once b's s6-svwait has subscribed to a's events (its FIFO is in a/event/),
#        so b is waiting before a is ready, as a dependent in s6 is. The group is stopped with
#        SIGTERM to s6-svscan (as `s6-svscanctl -t`).
#   trc: `trc -w DIR --wait-policy wait_any`, a fresh trc per run, with DIR/trc.d/async.a (a's
#        file with `# ready: fd 3`, `# ready: log ^ready$` or `# ready: notify` in its header
#        block; s6 has no sd_notify: its row is the fd one) and
#        DIR/trc.d/async.b (b's file with `# after: a`). b's exit ends the group (wait_any).
#   floor: no supervisor, the least any one must do: a C parent (ready_stamp pair) runs a with
#        a pipe on fd 3, blocks in read() on it, then forks and execs b.
# The same a and b files, byte for byte, for s6, trc and the floor: the trc header block is
# comments. a and b report their times as "a NS" / "b NS" lines on a FIFO that this script holds
# open, so nothing polls (a blocks its stop signals from its ready write until it has reported).
# The runs take turns (s6, trc fd, trc log, trc notify, floor, s6, ...), after a warm-up run each, so machine
# noise hits every row alike. Each row: the median and p90 (nearest rank) in µs.
#
# Usage: bench/ready.sh [-n N] [--smoke] [--markdown]
#   -n N        timed runs per row (default 100)
#   --smoke     5 runs: shows that the script works end to end (CI), not numbers to compare
#   --markdown  print the table as Markdown, with a line of parameters, for BENCHMARKS.md
# Env:   TRC=path/to/trc (default: `cargo build --release`, then target/release/trc, or
#        $CARGO_TARGET_DIR/release/trc), DELAY_US (a's delay before readiness, default 20000),
#        TIMEOUT (seconds for a run's steps, default 10), ROWS (the rows, default
#        "s6 trc-fd trc-log trc-notify floor"), KEEP=1 (keep the temp dir, for debugging).
# Needs: cc (to build the helper), setsid; s6 for its row: `apt-get install -y s6`. Without s6
#        the s6 row is skipped (a "skipped: s6 not installed" line) and trc's rows still run.
# Every process it starts (in sessions of their own, each group under a child-subreaper, so no
# orphan is left to PID 1) is stopped on exit, also on Ctrl-C or failure; then the temp dir goes.
set -euo pipefail
runs=100
warmup=1
markdown=0
while [ $# -gt 0 ]; do
    case $1 in
        -n)
            if [ $# -lt 2 ] || ! [[ $2 =~ ^[1-9][0-9]*$ ]]; then
                echo "-n needs a number >= 1" >&2
                exit 2
            fi
            runs=$2
            shift ;;
        --smoke) runs=5 ;;
        --markdown) markdown=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
delay_us=${DELAY_US:-20000}
timeout=${TIMEOUT:-10}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

say() { echo "::: $*" >&2; }

# ----- what it needs --------------------------------------------------------------------------
for cmd in cc setsid; do
    command -v "$cmd" > /dev/null || { echo "$cmd is required" >&2; exit 1; }
done
have_s6=1
for cmd in s6-svscan s6-supervise s6-svwait s6-svc; do
    command -v "$cmd" > /dev/null || have_s6=0
done
if [ "$have_s6" = 0 ]; then
    echo "skipped: s6 not installed (install it with: apt-get install -y s6)"
fi

if [ -n "${TRC:-}" ]; then
    trc_src=$(realpath "$TRC")
else
    say "building trc: cargo build --release"
    (cd "$repo" && cargo build --release --quiet)
    target=${CARGO_TARGET_DIR:-target}
    trc_src=$(cd "$repo" && realpath -m "$target/release/trc")
fi
[ -x "$trc_src" ] || { echo "$trc_src: not an executable (build first, or set TRC=...)" >&2; exit 1; }

# ----- processes, and cleaning them up --------------------------------------------------------
tmp=$(mktemp -d -t trc-ready.XXXXXX)
xdg=
leader=     # the subreaper of the group that runs now (a child of this script)
fifo_fd=
nap_fd=
cleanup() {
    local i env pid ppid key value pass
    trap - EXIT INT TERM
    if [ -n "$leader" ]; then
        # The subreaper passes the TERM on to s6-svscan or trc, which stop their tasks.
        kill -TERM "$leader" 2> /dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$leader" 2> /dev/null || break
            sleep 0.03
        done
    fi
    # What is left: every process whose environment names this run's FIFO; the subreapers
    # (this script's children) last, so that they reap the others first.
    for pass in 1 2; do
        for env in /proc/[0-9]*/environ; do
            grep -qsF "BENCH_FIFO=$tmp/" "$env" || continue
            pid=${env#/proc/}
            pid=${pid%/environ}
            ppid=
            while read -r key value; do
                [ "$key" != PPid: ] || { ppid=$value; break; }
            done < "/proc/$pid/status" 2> /dev/null || true
            if [ "$pass" = 2 ] || [ "$ppid" != $$ ]; then
                kill -KILL "$pid" 2> /dev/null || true
            fi
        done
        sleep 0.05
    done
    wait 2> /dev/null || true
    [ -z "$fifo_fd" ] || exec {fifo_fd}>&-
    [ -z "$nap_fd" ] || exec {nap_fd}>&-
    [ -n "${KEEP:-}" ] || rm -rf "$tmp" ${xdg:+"$xdg"}
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# trc's runtime dir (FIFOs, socket, pid file) in a temp dir of its own, on a tmpfs when there is
# one, as XDG_RUNTIME_DIR and /run are on a host (as bench/suite.sh does).
if [ "$(stat -f -c %T /dev/shm 2> /dev/null)" = tmpfs ] && [ -w /dev/shm ]; then
    xdg=$(mktemp -d -p /dev/shm trc-ready.XXXXXX)
else
    xdg=$tmp/xdg
    mkdir "$xdg"
fi
export XDG_RUNTIME_DIR=$xdg

# The binary measured is a copy: a rebuild during the run changes nothing.
trc=$tmp/trc
cp "$trc_src" "$trc"
stamp=$tmp/ready_stamp
cc -O2 -static -o "$stamp" "$here/ready_stamp.c" 2> /dev/null ||
    cc -O2 -o "$stamp" "$here/ready_stamp.c"

# The FIFO a and b report on, held open read-write here: it never blocks a writer, never EOFs.
mkfifo "$tmp/stamps.fifo" "$tmp/nap.fifo"
exec {fifo_fd}<> "$tmp/stamps.fifo"
exec {nap_fd}<> "$tmp/nap.fifo"   # nothing is ever written: `read -t` on it is a fork-free sleep
nap() { read -r -t "$1" -u "$nap_fd" _ || true; }

# The task files, the same for both tools.
cat > "$tmp/a.fd" << EOF
#!$stamp fd
### BEGIN TRC
# ready: fd 3
### END TRC
EOF
cat > "$tmp/a.log" << EOF
#!$stamp log
### BEGIN TRC
# ready: log ^ready\$
### END TRC
EOF
cat > "$tmp/a.notify" << EOF
#!$stamp notify
### BEGIN TRC
# ready: notify
### END TRC
EOF
cat > "$tmp/b" << EOF
#!$stamp b
### BEGIN TRC
# after: a
### END TRC
EOF
chmod +x "$tmp/a.fd" "$tmp/a.log" "$tmp/a.notify" "$tmp/b"

# launch NAME CMD...: the group, in a session of its own under the subreaper (a Ctrl-C on the
# terminal is for this script, which stops everything), this run's output in $tmp/NAME.log.
launch() {
    local name=$1
    shift
    BENCH_FIFO=$tmp/stamps.fifo BENCH_DELAY_US=$delay_us \
        setsid "$stamp" reap "$@" < /dev/null > "$tmp/$name.log" 2>&1 &
    leader=$!
}

fail() {
    echo "$1: $2" >&2
    [ ! -s "$tmp/$1.log" ] || { echo "--- $1's output:" >&2; tail -n 30 "$tmp/$1.log" >&2; }
    exit 1
}

# collect NAME: reads a's and b's reports of this run, appends b - a (ns) to $tmp/NAME.samples
# unless WARM is set.
collect() {
    local name=$1 line part='' i=0
    a='' b=''
    while [ -z "$a" ] || [ -z "$b" ]; do
        # A read that times out keeps what it had read of a line (its timer may fire between
        # two bytes when this script is preempted): the rest comes with the next read.
        if read -r -t 0.1 -u "$fifo_fd" line; then
            report "$name" "$part$line"
            part=''
            continue
        fi
        part+=$line
        if ! kill -0 "$leader" 2> /dev/null; then
            # The group is gone: what its tasks reported is in the FIFO already.
            while { [ -z "$a" ] || [ -z "$b" ]; } && read -r -t 0 -u "$fifo_fd"; do
                read -r -u "$fifo_fd" line
                report "$name" "$part$line"
                part=''
            done
            [ -z "$a" ] || [ -z "$b" ] || break
            status=0
            wait "$leader" || status=$?
            leader=
            if [ "$status" = 78 ] && grep -q 'unknown directive' "$tmp/$name.log"; then
                fail "$name" "this trc does not know the ready:/after: directives (exit 78)"
            fi
            fail "$name" "ended (status $status) before a and b reported (a: ${a:-none}, b: ${b:-none})"
        fi
        i=$((i + 1))
        [ "$i" -lt $((timeout * 10)) ] || fail "$name" "no report from a or b within $timeout s"
    done
    [ "$b" -gt "$a" ] || fail "$name" "b started before a was ready (a $a, b $b)"
    [ -n "${WARM:-}" ] || echo $((b - a)) >> "$tmp/$name.samples"
}

# report NAME LINE: one line read from the FIFO ("a NS" or "b NS"), into $a or $b.
report() {
    case $2 in
        "a "[0-9]*) a=${2#a } ;;
        "b "[0-9]*) b=${2#b } ;;
        *) fail "$1" "unexpected report: $2" ;;
    esac
}

# finish NAME: waits for the group's leader to be gone; its status in $status.
finish() {
    local name=$1 i
    for ((i = 0; i < timeout * 200; i++)); do
        kill -0 "$leader" 2> /dev/null || break
        nap 0.005
    done
    kill -0 "$leader" 2> /dev/null && fail "$name" "still running $timeout s after its end"
    status=0
    wait "$leader" || status=$?
    leader=
}

drain() {
    while read -r -t 0 -u "$fifo_fd"; do read -r -u "$fifo_fd" _; done
}

# await NAME WHAT CMD...: runs CMD until it succeeds, for up to $timeout s.
await() {
    local name=$1 what=$2 i
    shift 2
    for ((i = 0; ; i++)); do
        "$@" && return 0
        [ "$i" -lt $((timeout * 1000)) ] || fail "$name" "$what: not within $timeout s"
        nap 0.001
    done
}

run_s6() {
    local d=$tmp/s6-scan
    rm -rf "$d"
    mkdir -p "$d/a" "$d/b"
    cp "$tmp/a.fd" "$d/a/run"
    echo 3 > "$d/a/notification-fd"
    printf '#!/bin/sh\ns6-svwait -U ../a || exit\nexec %s\n' "$tmp/b" > "$d/b/run"
    chmod +x "$d/b/run"
    touch "$d/a/down" "$d/b/down"
    drain
    launch s6 s6-svscan "$d"
    # b up once a's supervisor has written a's status (s6-svwait reads it), then a up once
    # b's s6-svwait has subscribed to a's events (its FIFO is in a's event dir).
    await s6 "a's supervise/status" test -e "$d/a/supervise/status"
    await s6 "s6-svc -u b" s6-svc -u "$d/b" 2>> "$tmp/s6.log"
    await s6 "b's s6-svwait subscribed" compgen -G "$d/a/event/ftrig1*" > /dev/null
    await s6 "s6-svc -u a" s6-svc -u "$d/a" 2>> "$tmp/s6.log"
    collect s6
    kill -TERM "$leader"
    finish s6
}

run_floor() {
    drain
    launch floor "$stamp" pair "$tmp/a.fd" "$tmp/b"
    collect floor
    finish floor
    [ "$status" = 0 ] || fail floor "exited with $status"
}

# run_trc fd|log|notify
run_trc() {
    local v=$1 d=$tmp/trc-$1
    if [ ! -d "$d" ]; then
        mkdir -p "$d/trc.d"
        cp "$tmp/a.$v" "$d/trc.d/async.a"
        cp "$tmp/b" "$d/trc.d/async.b"
    fi
    drain
    launch "trc-$v" "$trc" -w "$d" --wait-policy wait_any
    collect "trc-$v"
    finish "trc-$v"
    [ "$status" = 0 ] || fail "trc-$v" "trc exited with $status"
}

# ----- the measurement ------------------------------------------------------------------------
rows=()
for row in ${ROWS:-s6 trc-fd trc-log trc-notify floor}; do
    case $row in
        s6) [ "$have_s6" = 0 ] || rows+=(s6) ;;
        trc-fd | trc-log | trc-notify | floor) rows+=("$row") ;;
        *) echo "ROWS: unknown row $row (s6, trc-fd, trc-log, trc-notify, floor)" >&2; exit 2 ;;
    esac
done
[ ${#rows[@]} -gt 0 ] || exit 0
say "${rows[*]}: $runs runs each after $warmup warm-up, a ready ${delay_us} µs after its start"
for ((r = 0; r < warmup + runs; r++)); do
    WARM=
    [ "$r" -ge "$warmup" ] || WARM=1
    for row in "${rows[@]}"; do
        case $row in
            s6) run_s6 ;;
            trc-fd) run_trc fd ;;
            trc-log) run_trc log ;;
            trc-notify) run_trc notify ;;
            floor) run_floor ;;
        esac
    done
done

# ----- the table ------------------------------------------------------------------------------
# stats FILE: "median p90 n" in µs (nearest rank for p90; median of an even count: the mean of
# the two middle values).
stats() {
    sort -n "$1" | awk '{ v[NR] = $1 }
        END {
            n = NR
            med = n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
            k = int((9 * n + 9) / 10); if (k < 1) k = 1; if (k > n) k = n   # ceil(0.9 n)
            printf "%.0f %.0f %d\n", med / 1000, v[k] / 1000, n
        }'
}
commas() { printf '%s' "$1" | sed -e :a -e 's/\([0-9]\)\([0-9]\{3\}\)\($\|,\)/\1,\2\3/; ta'; }

declare -A tool=([s6]=s6 [trc-fd]=trc [trc-log]=trc [trc-notify]=trc [floor]=floor)
declare -A variant=([s6]='notification-fd 3, b: s6-svwait -U ../a'
    [trc-fd]='ready: fd 3, b: after: a' [trc-log]='ready: log ^ready$, b: after: a'
    [trc-notify]='ready: notify (READY=1), b: after: a'
    [floor]='fd 3 read by a C parent, then fork + exec b')
# shellcheck disable=SC2016 # backquotes for Markdown
declare -A mdvariant=([s6]='`notification-fd` 3; b: `s6-svwait -U ../a`, then `exec`'
    [trc-fd]='`ready: fd 3`; b: `after: a`' [trc-log]='`ready: log ^ready$`; b: `after: a`'
    [trc-notify]='`ready: notify` (`READY=1`); b: `after: a`'
    [floor]='fd 3 read by a C parent, then `fork` + `exec` b (no supervisor)')

versions="trc $("$trc" --version 2> /dev/null | head -1 | awk '{ print $NF }')"
[ "$have_s6" = 0 ] || versions+=", s6 $(dpkg-query -W -f='${Version}' s6 2> /dev/null || echo '?')"
cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
params="a ready $((delay_us / 1000)) ms after its start; $runs runs per row after $warmup warm-up, rows interleaved; $versions; $(nproc) CPUs, ${cpu:-unknown CPU}; $(uname -sr)"

if [ "$markdown" = 1 ]; then
    echo "| tool | readiness; dependency | median | p90 | runs |"
    echo "|---|---|---:|---:|---:|"
    for row in "${rows[@]}"; do
        read -r med p90 n < <(stats "$tmp/$row.samples")
        echo "| ${tool[$row]} | ${mdvariant[$row]} | $(commas "$med") µs | $(commas "$p90") µs | $n |"
    done
    echo
    echo "($params)"
else
    printf '%-5s %-42s %11s %11s %5s\n' tool variant 'median µs' 'p90 µs' runs
    for row in "${rows[@]}"; do
        read -r med p90 n < <(stats "$tmp/$row.samples")
        printf '%-5s %-42s %10s %10s %5s\n' "${tool[$row]}" "${variant[$row]}" "$(commas "$med")" "$(commas "$p90")" "$n"
    done
    echo "($params)"
fi
