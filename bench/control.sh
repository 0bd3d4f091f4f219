#!/usr/bin/env bash
# Process-manager round trips, measured side by side in one run (not a test: nothing asserted).
#   list:     `trcctl list` against a trc with TASKS sleeping tasks, vs `sv status` of as many
#             runit services and `supervisorctl status` of as many supervisord programs
#   ensure:   registering ENSURE new services until each one runs: `trcctl ensure NAME -- CMD`
#             one by one, vs runit (service dirs made atomically, then waiting for runsvdir's
#             scan and `sv status` to say "run"), vs supervisord (program sections, then
#             `supervisorctl update`, then waiting for RUNNING)
# Usage: bench/control.sh [RUNS] [TASKS] [ENSURE]   (defaults: 50 runs, 10 tasks, 100 ensured)
# Env:   TRC=path/to/trc, TRCCTL=path/to/trcctl (default target/release/...),
#        BASELINES (what to compare trc with: "runit supervisord"),
#        BENCH_SMOKE=1 (a smoke run, which only shows that the script works end to end: no
#        hyperfine warm-ups, and BASELINES defaults to none, since runsvdir looks for new
#        services every 5 s and supervisorctl is a slow Python start on a busy machine).
#        Installs the baselines' packages and hyperfine with apt-get when missing and run as root.
set -euo pipefail
runs=${1:-50}
tasks=${2:-10}
ensure=${3:-100}
if [ "${BENCH_SMOKE:-}" = 1 ]; then
    warmup=0
    baselines=${BASELINES-}
else
    warmup=5
    baselines=${BASELINES-runit supervisord}
fi
for b in $baselines; do
    case $b in runit | supervisord) ;; *) echo "BASELINES: unknown baseline $b (runit, supervisord)" >&2; exit 2 ;; esac
done
want() { [[ " $baselines " == *" $1 "* ]]; }
trc=${TRC:-target/release/trc}
trcctl=${TRCCTL:-target/release/trcctl}
for bin in "$trc" "$trcctl"; do
    [ -x "$bin" ] || { echo "build first: cargo build --release (or set TRC=/TRCCTL=)" >&2; exit 1; }
done
trc=$(realpath "$trc")
trcctl=$(realpath "$trcctl")
need=()
want runit && ! command -v runsvdir > /dev/null && need+=(runit)
want supervisord && ! command -v supervisord > /dev/null && need+=(supervisor)
command -v hyperfine > /dev/null || need+=(hyperfine)
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { echo "missing: ${need[*]} (install them, or run as root)" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" > /dev/null
fi

out=$(mktemp -d)
pids=()
cleanup() {
    [ -n "${sup_conf-}" ] && supervisorctl -c "$sup_conf" shutdown > /dev/null 2>&1 || true
    for pid in "${pids[@]}"; do kill -HUP "$pid" 2> /dev/null || true; kill -TERM "$pid" 2> /dev/null || true; done
    # runsvdir's HUP stops every runsv; wait for all of them before removing their dirs.
    for _ in $(seq 100); do pgrep -f "$out" > /dev/null || break; sleep 0.1; done
    pkill -KILL -f "$out" 2> /dev/null || true
    rm -rf "$out"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
now() { date +%s%N; }
# wait_until DESC CMD...: polls CMD (every 20 ms, up to 60 s)
wait_until() {
    local desc=$1; shift
    for _ in $(seq 3000); do "$@" && return 0; sleep 0.02; done
    echo "timed out waiting for $desc" >&2
    exit 1
}

# --- trc ------------------------------------------------------------------------------------
export XDG_RUNTIME_DIR=$out/xdg
mkdir -p "$XDG_RUNTIME_DIR" "$out/app/trc.d"
for i in $(seq "$tasks"); do printf 'exec sleep 100000\n' > "$out/app/trc.d/async.t$i"; done
"$trc" -w "$out/app" --wait-policy wait_forever > "$out/trc.log" 2>&1 &
pids+=($!)
trc_running() { [ "$("$trcctl" --instance app list 2> /dev/null | grep -c ' running ')" -ge "$1" ]; }
wait_until "trc's tasks" trc_running "$tasks"

# --- runit ----------------------------------------------------------------------------------
sv_running() { [ "$(SVDIR=$out/sv sv status "$out"/sv/* 2> /dev/null | grep -c '^run:')" -ge "$1" ]; }
if want runit; then
    mkdir -p "$out/sv"
    for i in $(seq "$tasks"); do
        mkdir -p "$out/sv/t$i"
        printf '#!/bin/sh\nexec sleep 100000\n' > "$out/sv/t$i/run"
        chmod +x "$out/sv/t$i/run"
    done
    runsvdir "$out/sv" > /dev/null 2>&1 &
    pids+=($!)
    wait_until "runit's services" sv_running "$tasks"
fi

# --- supervisord ----------------------------------------------------------------------------
sup_running() { [ "$(supervisorctl -c "$sup_conf" status 2> /dev/null | grep -c RUNNING)" -ge "$1" ]; }
if want supervisord; then
    sup_conf=$out/supervisord.conf
    {
        printf '[unix_http_server]\nfile=%s/supervisor.sock\n\n' "$out"
        printf '[supervisord]\nlogfile=%s/supervisord.log\npidfile=%s/supervisord.pid\nchildlogdir=%s\nnodaemon=false\n\n' "$out" "$out" "$out"
        printf '[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n'
        printf '[supervisorctl]\nserverurl=unix://%s/supervisor.sock\n\n' "$out"
        printf '[include]\nfiles = %s/conf.d/*.conf\n' "$out"
    } > "$sup_conf"
    mkdir -p "$out/conf.d"
    for i in $(seq "$tasks"); do printf '[program:t%s]\ncommand=sleep 100000\n' "$i" > "$out/conf.d/t$i.conf"; done
    supervisord -c "$sup_conf"
    wait_until "supervisord's programs" sup_running "$tasks"
fi

# --- list round trips -------------------------------------------------------------------------
commands=(-n trcctl "$trcctl --instance app list")
# shellcheck disable=SC2046 # one word per service dir
want runit && commands+=(-n "sv status" "env SVDIR=$out/sv sv status $(printf "$out/sv/t%s " $(seq "$tasks"))")
want supervisord && commands+=(-n supervisorctl "supervisorctl -c $sup_conf status")
hyperfine -N --warmup "$warmup" --runs "$runs" --style none --export-json "$out/list.json" "${commands[@]}" \
    > /dev/null 2> "$out/hyperfine.err" || { cat "$out/hyperfine.err" >&2; exit 1; }

# --- ensure N new services, each one running ---------------------------------------------------
ensure_trc() {
    for i in $(seq "$ensure"); do "$trcctl" --instance app ensure "e$i" -- sleep 100000 > /dev/null; done
    wait_until "ensured trc tasks" trc_running $((tasks + ensure))
}
ensure_runit() {
    for i in $(seq "$ensure"); do
        mkdir -p "$out/sv/.e$i"
        printf '#!/bin/sh\nexec sleep 100000\n' > "$out/sv/.e$i/run"
        chmod +x "$out/sv/.e$i/run"
        mv "$out/sv/.e$i" "$out/sv/e$i"
    done
    wait_until "ensured runit services" sv_running $((tasks + ensure))
}
ensure_supervisord() {
    for i in $(seq "$ensure"); do printf '[program:e%s]\ncommand=sleep 100000\n' "$i" > "$out/conf.d/e$i.conf"; done
    supervisorctl -c "$sup_conf" update > /dev/null
    wait_until "ensured supervisord programs" sup_running $((tasks + ensure))
}
ensure_ms=()
for name in trc $baselines; do
    a=$(now); "ensure_$name"; b=$(now)
    ensure_ms+=("$name $(( (b - a) / 1000000 ))")
done

# --- the table ----------------------------------------------------------------------------------
python3 - "$out/list.json" "$tasks" "$ensure" "${ensure_ms[@]}" << 'EOF'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
tasks, ensure = sys.argv[2], sys.argv[3]
ms = {r["command"]: r["median"] * 1000 for r in results}
print(f"| round trip ({tasks} tasks running) | median | trcctl ÷ this |")
print("|---|---:|---:|")
for name, value in ms.items():
    print(f"| `{name}` | {value:.2f} ms | {ms['trcctl'] / value:.2f} |")
print()
print(f"| ensure {ensure} new services until all run | time | trc ÷ this |")
print("|---|---:|---:|")
ens = dict((e.split()[0], int(e.split()[1])) for e in sys.argv[4:])
for name, value in ens.items():
    print(f"| {name} | {value} ms | {ens['trc'] / value:.2f} |")
EOF
echo
echo "(hyperfine, $runs runs after $warmup warm-ups; $(nproc) CPUs; $(uname -sr))"
