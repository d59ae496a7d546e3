#!/bin/sh
# make bench: raw-socket baselines and msgwire side by side (see run_bench.py).
set -e
cd "$(dirname "$0")/../.."
exec /usr/bin/python3 tests/bench/run_bench.py --json build/bench/results.json "$@"
