#!/bin/sh
# Instructions per ping-pong round trip, svc and clt, under callgrind.
#
#   tests/bench/callgrind_rt.sh [MODE] [LO] [HI] [OUTDIR]
#
# Runs `pingpong svc --once` and `pingpong clt` (tcp://127.0.0.1, fixed
# serdes, 64 B, no warm-up) both under valgrind --tool=callgrind, once with
# LO and once with HI round trips (defaults: event, 2000, 12000), and prints
# (instructions at HI - instructions at LO) / (HI - LO) per side: the cost of
# one round trip without start-up and teardown. Instruction counts do not
# depend on the machine's load, unlike times. Both processes on core 0.
# The callgrind files stay in OUTDIR (default: a temporary directory) for
# callgrind_annotate.
set -e
cd "$(dirname "$0")/../.."
MODE=${1:-event}
LO=${2:-2000}
HI=${3:-12000}
OUT=${4:-$(mktemp -d)}
PP=${PP:-./build/examples/pingpong} # PP=path: another build, to compare
[ -x "$PP" ] || { echo "build $PP first (make bench-bins)" >&2; exit 1; }
mkdir -p "$OUT"

run() { # n -> svc.N.out, clt.N.out
    n=$1
    rm -f "$OUT/svc.$n.out" "$OUT/clt.$n.out"
    : >"$OUT/svc.$n.log"
    taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$OUT/svc.$n.out" \
        $PP svc --url tcp://127.0.0.1:0 --mode "$MODE" --once >"$OUT/svc.$n.log" 2>"$OUT/svc.$n.err" &
    svc=$!
    port=""
    i=0
    while [ -z "$port" ] && [ $i -lt 600 ]; do
        port=$(sed -n 's/^listening on \([0-9]*\).*/\1/p' "$OUT/svc.$n.log")
        [ -n "$port" ] || sleep 0.05
        i=$((i + 1))
    done
    [ -n "$port" ] || { kill "$svc"; echo "svc did not start" >&2; exit 1; }
    taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$OUT/clt.$n.out" \
        $PP clt --url "tcp://127.0.0.1:$port" --mode "$MODE" --count "$n" --warmup 0 \
        >"$OUT/clt.$n.log" 2>"$OUT/clt.$n.err"
    wait "$svc"
}

total() { # callgrind file -> total Ir
    sed -n 's/^summary: \([0-9]*\).*/\1/p' "$1"
}

run "$LO"
run "$HI"
for side in svc clt; do
    lo=$(total "$OUT/$side.$LO.out")
    hi=$(total "$OUT/$side.$HI.out")
    echo "$MODE $side: $(( (hi - lo) / (HI - LO) )) instructions per round trip ($lo at $LO, $hi at $HI)"
done
echo "files: $OUT"
