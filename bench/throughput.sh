#!/usr/bin/env bash
# Prefixed log throughput, measured side by side in one run (not a test: nothing is asserted).
#   trc:  a task writes LINES lines; trc prefixes each one ("async-1: ...") into a file
#   sed:  the same lines through `sed 's/^/x: /'` into a file
#   bash: TrivialRC's way, a `while read` loop that echoes "x: $line" (fewer lines: it is slow;
#         the rate is what is compared)
# Usage: bench/throughput.sh [LINES] [RUNS]   (defaults: 3000000 lines, 5 runs; medians)
# Env:   TRC=path/to/trc (default target/release/trc), BASH_LINES (default LINES/20)
set -euo pipefail
lines=${1:-3000000}
runs=${2:-5}
bash_lines=${BASH_LINES:-$((lines / 20))}
trc=${TRC:-target/release/trc}
[ -x "$trc" ] || { echo "build first: cargo build --release (or set TRC=...)" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mkdir "$out/empty"

now() { date +%s.%N; }
# median of the numbers on stdin
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# time_it NAME N CMD...: runs CMD `runs` times (plus one warm-up) and prints "NAME N median_s"
time_it() {
    local name=$1 n=$2; shift 2
    "$@" > "$out/warm"
    local t=()
    for _ in $(seq "$runs"); do
        local a b; a=$(now); "$@" > "$out/$name"; b=$(now)
        t+=("$(awk -v a="$a" -v b="$b" 'BEGIN { print b - a }')")
    done
    local got; got=$(wc -l < "$out/$name")
    [ "$got" -eq "$n" ] || { echo "$name: $got lines out of $n" >&2; exit 1; }
    printf '%s %s %s\n' "$name" "$n" "$(printf '%s\n' "${t[@]}" | median)"
}

run_trc() { "$trc" -w "$out/empty" -D "seq $lines"; }
run_sed() { seq "$lines" | sed 's/^/x: /'; }
run_bash() { seq "$bash_lines" | while IFS= read -r l; do echo "x: $l"; done; }

results=$( time_it trc "$lines" run_trc; time_it sed "$lines" run_sed; time_it bash "$bash_lines" run_bash )
rate() { awk -v n="$2" -v s="$3" 'BEGIN { printf "%.0f", n / s }'; }
trc_rate=$(echo "$results" | awk '$1 == "trc" { printf "%.0f", $2 / $3 }')
echo "| prefixer | lines | median time | lines/s | trc's rate ÷ this |"
echo "|---|---:|---:|---:|---:|"
echo "$results" | while read -r name n secs; do
    r=$(rate "$name" "$n" "$secs")
    printf '| %s | %s | %.3f s | %s | %s |\n' "$name" "$n" "$secs" "$r" "$(awk -v a="$trc_rate" -v b="$r" 'BEGIN { printf "%.1f×", a / b }')"
done
echo
echo "($runs runs each after a warm-up; $(nproc) CPUs; $(uname -sr))"
