#!/usr/bin/env bash
# Restart latency, measured side by side in one run (not a test: nothing is asserted).
# A supervised service is killed with SIGKILL; the time counted is from just before the kill to
# the moment its next run has started (its first command has run). Every supervisor runs the
# same run script, byte for byte, with the same interpreter (/bin/dash, exec'd directly):
#
#   echo "$$" > "$BENCH_FIFO"                # "started", with its pid (the sleep keeps it: exec)
#   [ -z "$BENCH_S6_READY" ] || echo >&3     # readiness on fd 3, only in the "s6, readiness" row
#   exec sleep 86400
#
#   trc:           `trc -w DIR`, the script as trc.d/async.svcN with `restart: always`,
#                  `restart-delay: 0`, `start-limit: none` (RC_WAIT_POLICY=wait_forever)
#   runit:         `runsv DIR/svcN`, the script as `run`
#   s6, readiness: `s6-supervise DIR/svcN` with `notification-fd` 3, the script as `run`
#   s6:            `s6-supervise DIR/svc`, the script as `run`, default settings
#   supervisord:   `supervisord -n`, one [program] with autorestart=true, startsecs=0
#   dash loop:     `dash -c 'while :; do run; done'`: no supervisor at all, the floor
#
# A python3 helper reads each supervisor's FIFO (one per supervisor, held open for reading and
# writing so it never sees EOF), takes the time just before os.kill(pid, SIGKILL), and the time
# when select() wakes up with the new run's line. Waits are on events, with a deadline.
#
# Fairness: runsv sleeps 1 s before a restart when the run lasted less than 1 s, and s6-supervise
# restarts at once only when the service reported readiness over 1 s ago; so every service, of
# every supervisor, is killed only once it has run GUARD seconds (default 1.1). To collect samples
# faster, each supervisor runs SERVICES copies of the service (default 8), killed in turn. The
# supervisors take turns (the one furthest behind goes next), so machine noise hits all alike.
# s6 without readiness notification always waits 1 s after a death, and supervisord reaps at once
# but starts the new run only after its next 1 s poll: those two rows cost a second per sample,
# so they get fewer (SLOW_SAMPLES, default 10, after 1 warm-up).
#
# Usage: bench/restart_latency.sh [N] [WARMUP]   (defaults: 200 timed restarts per supervisor
#        after 5 warm-up restarts)
# Env:   TRC=path/to/trc (default: `cargo build --release`, then target/release/trc),
#        SERVICES (8), GUARD (1.1 s), SLOW_SAMPLES (10), TIMEOUT (10 s per restart),
#        SUPERVISORS (which to compare with trc: "runit s6 supervisord loop"),
#        TRC_EXTRA="LABEL=path ..." (more trc builds, each a row "trc (LABEL)": a change vs HEAD),
#        BENCH_SMOKE=1: a smoke run, which only shows that the script works end to end (CI:
#        `BENCH_SMOKE=1 bench/restart_latency.sh 3 0`, a few seconds even on a busy machine): the
#        defaults become SUPERVISORS="loop" (runit, s6 and supervisord cost a second or more per
#        restart by design), SERVICES=2 and GUARD=0 (no fairness wait before a kill).
# Needs: dash, python3, setsid; runit, s6 and supervisor for their rows. As root, missing Debian
#        packages of the rows asked for are installed with apt-get; otherwise a missing
#        supervisor's row is skipped.
set -euo pipefail
samples=${1:-200}
warmup=${2:-5}
if [ "${BENCH_SMOKE:-}" = 1 ]; then
    services=${SERVICES:-2}
    guard=${GUARD:-0}
    only=${SUPERVISORS:-loop}
else
    services=${SERVICES:-8}
    guard=${GUARD:-1.1}
    only=${SUPERVISORS:-runit s6 supervisord loop}
fi
slow_samples=${SLOW_SAMPLES:-10}
timeout=${TIMEOUT:-10}
[ "$samples" -ge 1 ] || { echo "N must be at least 1" >&2; exit 2; }
[ "$slow_samples" -le "$samples" ] || slow_samples=$samples
repo=$(cd "$(dirname "$0")/.." && pwd)

# ----- what it needs ------------------------------------------------------------------------
# command -> Debian package
declare -A package=([dash]=dash [python3]=python3 [setsid]=util-linux [runsv]=runit
    [s6-supervise]=s6 [supervisord]=supervisor)
want() { [[ " $only " == *" $1 "* ]]; }
needed=(dash python3 setsid)
want runit && needed+=(runsv)
want s6 && needed+=(s6-supervise)
want supervisord && needed+=(supervisord)
missing=()
for cmd in "${needed[@]}"; do
    command -v "$cmd" >/dev/null || missing+=("${package[$cmd]}")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "installing: ${missing[*]}" >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    else
        echo "missing packages (not root, not installing): ${missing[*]}" >&2
    fi
fi
for cmd in dash python3 setsid; do
    command -v "$cmd" >/dev/null || { echo "$cmd is required" >&2; exit 1; }
done
dash=$(command -v dash)
python=$(command -v python3)

if [ -n "${TRC:-}" ]; then
    trc=$(realpath "$TRC")
else
    (cd "$repo" && cargo build --release --quiet)
    trc=$repo/target/release/trc
fi
[ -x "$trc" ] || { echo "$trc: not an executable (build first, or set TRC=...)" >&2; exit 1; }

# ----- processes, and cleaning them up --------------------------------------------------------
tmp=$(mktemp -d)
supervisors=()
held=()   # this script's own fds on the FIFOs
measurer=
cleanup() {
    local pid left i fd
    trap - EXIT INT TERM
    [ -z "$measurer" ] || kill -TERM "$measurer" 2>/dev/null || true
    for pid in "${supervisors[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    # Each one stops its services and exits; what is still there after 5 s is killed (as
    # supervisord, when the TERM came between its fork and exec: it waits for its stopwaitsecs).
    for ((i = 0; i < 100; i++)); do
        left=()
        for pid in "${supervisors[@]}"; do kill -0 "$pid" 2>/dev/null && left+=("$pid"); done
        [ ${#left[@]} -gt 0 ] || break
        sleep 0.05
    done
    for pid in "${supervisors[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    # Runs of the service left behind (a supervisor killed before it stopped them): they are
    # the processes whose environment names this run's directory.
    for env in /proc/[0-9]*/environ; do
        if grep -qsF "BENCH_FIFO=$tmp/" "$env"; then
            pid=${env#/proc/}
            kill -KILL "${pid%/environ}" 2>/dev/null || true
        fi
    done
    wait 2>/dev/null || true
    for fd in "${held[@]}"; do exec {fd}>&-; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD...: starts a supervisor in a session of its own (a Ctrl-C on the terminal is
# for this script, which stops everything), its services telling their starts to $tmp/NAME.fifo.
start() {
    local name=$1; shift
    if [ ! -p "$tmp/$name.fifo" ]; then
        mkfifo "$tmp/$name.fifo"
        # Held open (read-write) here too: a service that starts while the measurer is gone
        # (at the end) never blocks on opening it.
        local fd
        exec {fd}<>"$tmp/$name.fifo"
        held+=("$fd")
    fi
    BENCH_FIFO=$tmp/$name.fifo setsid "$@" </dev/null >>"$tmp/$name.log" 2>&1 &
    supervisors+=("$!")
    disown "$!"   # no "Killed" line from bash if it has to be killed at the end
}

# The run script, the same file for every supervisor.
cat > "$tmp/run" <<EOF
#!$dash
### BEGIN TRC
# restart: always
# restart-delay: 0
# start-limit: none
### END TRC
echo "\$\$" > "\$BENCH_FIFO"
[ -z "\$BENCH_S6_READY" ] || echo >&3
exec sleep 86400
EOF
chmod +x "$tmp/run"

rows=()   # NAME|LABEL|INSTANCES|TIMED|WARMUP, in table order (trc first)
# start_trc NAME LABEL BINARY
start_trc() {
    mkdir -p "$tmp/$1/trc.d"
    for ((i = 1; i <= services; i++)); do cp "$tmp/run" "$tmp/$1/trc.d/async.svc$i"; done
    RC_WAIT_POLICY=wait_forever start "$1" "$3" -w "$tmp/$1"
    rows+=("$1|$2|$services|$samples|$warmup")
}
start_trc trc trc "$trc"
n=0
for extra in ${TRC_EXTRA:-}; do
    n=$((n + 1))
    start_trc "trc$n" "trc (${extra%%=*})" "$(realpath "${extra#*=}")"
done

if want runit && command -v runsv >/dev/null; then
    for ((i = 1; i <= services; i++)); do
        mkdir -p "$tmp/runit/svc$i"
        cp "$tmp/run" "$tmp/runit/svc$i/run"
        start runit runsv "$tmp/runit/svc$i"
    done
    rows+=("runit|runit|$services|$samples|$warmup")
fi

if want s6 && command -v s6-supervise >/dev/null; then
    for ((i = 1; i <= services; i++)); do
        mkdir -p "$tmp/s6r/svc$i"
        cp "$tmp/run" "$tmp/s6r/svc$i/run"
        echo 3 > "$tmp/s6r/svc$i/notification-fd"
        BENCH_S6_READY=1 start s6r s6-supervise "$tmp/s6r/svc$i"
    done
    rows+=("s6r|s6, readiness|$services|$samples|$warmup")
    mkdir -p "$tmp/s6/svc"
    cp "$tmp/run" "$tmp/s6/svc/run"
    start s6 s6-supervise "$tmp/s6/svc"
    rows+=("s6|s6|1|$slow_samples|$((warmup > 0 ? 1 : 0))")
fi

if want supervisord && command -v supervisord >/dev/null; then
    mkdir -p "$tmp/supervisord"
    cat > "$tmp/supervisord/supervisord.conf" <<EOF
[supervisord]
nodaemon=true
logfile=$tmp/supervisord/supervisord.log
pidfile=$tmp/supervisord/supervisord.pid
childlogdir=$tmp/supervisord

[program:svc]
command=$tmp/run
autorestart=true
startsecs=0
startretries=1000000
stdout_logfile=NONE
stderr_logfile=NONE
EOF
    start supervisord supervisord -n -c "$tmp/supervisord/supervisord.conf"
    rows+=("supervisord|supervisord|1|$slow_samples|$((warmup > 0 ? 1 : 0))")
fi

if want loop; then
    # The floor: no supervisor at all, a shell that runs the script again when it ends.
    for ((i = 1; i <= services; i++)); do
        # shellcheck disable=SC2016 # $1 is for dash
        start loop "$dash" -c 'while :; do "$1"; done' loop "$tmp/run"
    done
    rows+=("loop|dash \`while\` loop (floor)|$services|$samples|$warmup")
fi

# ----- the measurement ------------------------------------------------------------------------
# In the background, so that a signal to this script is handled at once (`wait` returns).
"$python" - "$tmp" "$guard" "$timeout" "${rows[@]}" <<'PY' &
import os, select, signal, sys, time

tmp, guard, timeout = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
guard_ns = int(guard * 1e9)


class Row:
    def __init__(self, spec):
        name, self.label, instances, timed, warm = spec.split("|")
        self.name, self.instances = name, int(instances)
        self.timed, self.warm = int(timed), int(warm)
        self.fd = os.open(f"{tmp}/{name}.fifo", os.O_RDWR | os.O_NONBLOCK)
        self.buf = b""
        self.read_ns = 0  # when the bytes in buf were read
        self.live = []  # [started_ns, pid] of each running service
        self.lat = []  # every restart's latency in ns, warm-ups first

    def pending(self):
        return self.buf or select.select([self.fd], [], [], 0)[0]

    def next_start(self, deadline):
        """(pid, ns) of the next service run that starts: ns is when select() woke up with it."""
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                log = f"{tmp}/{self.name}.log"
                tail = open(log, errors="replace").read()[-2000:] if os.path.exists(log) else ""
                sys.exit(f"{self.label}: no service (re)start within {timeout:g} s\n{tail}")
            self.read_ns = time.perf_counter_ns()
            self.buf += os.read(self.fd, 4096)
        line, self.buf = self.buf.split(b"\n", 1)
        return int(line), self.read_ns

    def done(self):
        return len(self.lat) >= self.warm + self.timed


rows = [Row(spec) for spec in sys.argv[4:]]
for row in rows:
    deadline = time.monotonic() + timeout
    for _ in range(row.instances):
        pid, ns = row.next_start(deadline)
        row.live.append([ns, pid])

while not all(row.done() for row in rows):
    # The supervisor furthest behind whose oldest service has run long enough goes next.
    now = time.perf_counter_ns()
    todo = [r for r in rows if not r.done()]
    ready = [r for r in todo if now - min(r.live)[0] >= guard_ns]
    if not ready:
        time.sleep((min(min(r.live)[0] for r in todo) + guard_ns - now) / 1e9)
        continue
    row = min(ready, key=lambda r: len(r.lat) / (r.warm + r.timed))
    victim = min(row.live)
    if row.pending():
        sys.exit(f"{row.label}: a service started that was not killed (it exited by itself?)")
    t0 = time.perf_counter_ns()
    os.kill(victim[1], signal.SIGKILL)
    pid, t1 = row.next_start(time.monotonic() + timeout)
    if pid == victim[1]:
        sys.exit(f"{row.label}: the same pid {pid} started again?")
    row.lat.append(t1 - t0)
    victim[:] = [t1, pid]


def stats(values):
    v = sorted(values)
    rank = lambda q: v[min(len(v) - 1, max(0, -(-len(v) * q // 100) - 1))]  # nearest rank
    n = len(v)
    median = v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
    return median / 1e3, rank(90) / 1e3, v[0] / 1e3


ratio = lambda r: f"{r:.2f}" if r >= 0.1 else f"{r:.2g}"
print("| supervisor | restarts timed | median | p90 | min | trc's median ÷ this |")
print("|---|---:|---:|---:|---:|---:|")
trc_median = stats(rows[0].lat[rows[0].warm:])[0]
for row in rows:
    timed = row.lat[row.warm:]
    if not timed:
        continue
    med, p90, lo = stats(timed)
    fmt = lambda us: f"{us:,.0f} µs"
    print(f"| {row.label} | {len(timed)} | {fmt(med)} | {fmt(p90)} | {fmt(lo)} | {ratio(trc_median / med)} |")
PY
measurer=$!
wait "$measurer"
measurer=

cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
versions=$("$trc" --version 2>/dev/null | head -1)
for pkg in runit s6 supervisor dash; do
    v=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null) && versions+=", $pkg $v"
done
echo
echo "(each service killed after running ${guard} s; $services services per supervisor, killed in turn;"
echo " $versions; $(nproc) CPUs, ${cpu:-unknown CPU}; $(uname -sr))"
