#!/bin/sh
# make bench: raw-socket baselines and msgwire side by side (see run_bench.py).
# The syscall section needs strace: installed here when missing (as root),
# otherwise run_bench.py skips that section and says so.
set -e
cd "$(dirname "$0")/../.."
if ! command -v strace >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "bench: installing strace (syscall counts)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends strace >/dev/null \
        || echo "bench: could not install strace; the syscall section will be skipped"
fi
exec /usr/bin/python3 tests/bench/run_bench.py --json build/bench/results.json "$@"
