#!/usr/bin/env bash
# Runs the fuzz targets one at a time, single-threaded (the machine has 2 cores).
#   fuzz/run.sh TARGET SECONDS     one target
#   fuzz/run.sh all SECONDS        every target in turn
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). New corpus entries go
# to fuzz/corpus/TARGET; a crash goes to fuzz/artifacts/TARGET and stops the run.
set -euo pipefail
cd "$(dirname "$0")"
targets=(header control_request cli_reparse values)
[ $# -eq 2 ] || { echo "usage: $0 TARGET|all SECONDS (targets: ${targets[*]})" >&2; exit 2; }
if [ "$1" = all ]; then run=("${targets[@]}"); else run=("$1"); fi
for target in "${run[@]}"; do
    echo "== $target for $2 s"
    mkdir -p "corpus/$target"
    cargo +nightly fuzz run -O "$target" "corpus/$target" -- \
        -max_total_time="$2" -jobs=1 -workers=1 -max_len=4096 -timeout=10 -print_final_stats=1
done
