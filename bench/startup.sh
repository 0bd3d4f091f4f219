#!/usr/bin/env bash
# Start + teardown of a group of one `true` task, measured side by side with hyperfine (not a
# test: nothing is asserted). Each command starts its supervisor, which runs `true`, sees it
# exit and exits itself:
#   trc:        `trc true` (the trailing command), in an empty work dir, with its runtime dir
#               under a temp XDG_RUNTIME_DIR (on /dev/shm when that is a tmpfs)
#   tini:       `tini -s -- true` (-s: a child subreaper, as trc is; tini is not PID 1 here)
#   dumb-init:  `dumb-init true`
#   bash:       `bench/trivialrc-like.sh true`: TrivialRC's structure (a main shell, the command
#               in a subshell with traps, `ls` per stage, `date` per log line, `ps`/`pkill` in
#               the exit hooks)
#   true:       `true` alone, the floor (no supervisor)
# Usage: bench/startup.sh [RUNS] [WARMUP]   (defaults: 200 runs after 20 warm-up runs)
# Env:   TRC=path/to/trc (default target/release/trc), BENCH_JSON=FILE (also write hyperfine's
#        JSON there), BENCH_SMOKE=1 (a smoke run, which only shows that the script works end to
#        end: without the tini and dumb-init rows). Installs tini, dumb-init and hyperfine with
#        apt-get when missing and root.
set -euo pipefail
runs=${1:-200}
warmup=${2:-20}
smoke=${BENCH_SMOKE:-0}
here=$(cd "$(dirname "$0")" && pwd)
trc=${TRC:-$here/../target/release/trc}
[ -x "$trc" ] || { echo "build first: cargo build --release (or set TRC=...)" >&2; exit 1; }
trc=$(realpath "$trc")
need=()
if [ "$smoke" != 1 ]; then
    command -v tini > /dev/null || need+=(tini)
    command -v dumb-init > /dev/null || need+=(dumb-init)
fi
command -v hyperfine > /dev/null || need+=(hyperfine)
command -v pgrep > /dev/null || need+=(procps)
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { echo "missing: ${need[*]} (install them, or run as root)" >&2; exit 1; }
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

out=$(mktemp -d)
# trc's runtime dir on a tmpfs when there is one, as XDG_RUNTIME_DIR and /run are on a host.
if [ "$(stat -f -c %T /dev/shm 2> /dev/null)" = tmpfs ] && [ -w /dev/shm ]; then
    xdg=$(mktemp -d -p /dev/shm trc-bench.XXXXXX)
else
    xdg=$out/xdg
    mkdir "$xdg"
fi
trap 'rm -rf "$out" "$xdg"' EXIT
mkdir "$out/empty"
cd "$out/empty"
export XDG_RUNTIME_DIR=$xdg

commands=(-n trc "$trc true")
[ "$smoke" = 1 ] || commands+=(-n tini "tini -s -- true" -n dumb-init "dumb-init true")
commands+=(-n bash "$here/trivialrc-like.sh true" -n true "true")
hyperfine -N --warmup "$warmup" --runs "$runs" --style none --export-json "$out/startup.json" "${commands[@]}" \
    > /dev/null 2> "$out/hyperfine.err" || { cat "$out/hyperfine.err" >&2; exit 1; }
[ -z "${BENCH_JSON:-}" ] || cp "$out/startup.json" "$BENCH_JSON"

python3 - "$out/startup.json" << 'EOF'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
labels = {"trc": "trc (`trc true`)", "tini": "tini (`tini -s -- true`)", "dumb-init": "dumb-init (`dumb-init true`)",
          "bash": "bash, TrivialRC-style (`bench/trivialrc-like.sh true`)", "true": "`true` alone (the floor)"}
ms = {r["command"]: r["median"] * 1000 for r in results}
print("| command | median | mean ± σ | min | trc's median ÷ this |")
print("|---|---:|---:|---:|---:|")
for r in results:
    sd = r["stddev"] or 0
    name = r["command"]
    print(f"| {labels.get(name, name)} | {ms[name]:.2f} ms | {r['mean'] * 1000:.2f} ± {sd * 1000:.2f} ms | "
          f"{r['min'] * 1000:.2f} ms | {ms['trc'] / ms[name]:.2f} |")
EOF
echo
echo "(hyperfine -N, $runs runs after $warmup warm-ups; $(nproc) CPUs; $(uname -sr))"
