#!/bin/sh
# Builds (see build.sh) and runs the engine benchmarks; writes bench/results/engine-DATE.json.
set -eu

cd "$(dirname "$0")/.."
./scripts/build.sh --no-demo >/dev/null
mkdir -p bench/results
BLOWFISH_MEMNODE=build/memnode/blowfish-memnode \
    exec build/bench/engine-bench --json "bench/results/engine-$(date -u +%F).json" "$@"
