#!/bin/sh
# Instructions per flood message, receiver and sender, under callgrind.
#
#   tests/bench/callgrind_flood.sh [MODE] [LO] [HI] [OUTDIR] [FLOOD]
#
# Runs `flood recv` and `flood send --count N` (tcp://127.0.0.1, fixed
# serdes, 64 B) both under valgrind --tool=callgrind, once with LO and once
# with HI messages (defaults: blocking, 100000, 600000), and prints
# (instructions at HI - instructions at LO) / (HI - LO) per side: the cost
# of one message without start-up and teardown, whatever the machine's load.
# Both processes on core 0. FLOOD: the binary (default build/examples/flood),
# so two builds can be compared. The callgrind files stay in OUTDIR (default:
# a temporary directory) for callgrind_annotate.
set -e
cd "$(dirname "$0")/../.."
MODE=${1:-blocking}
LO=${2:-100000}
HI=${3:-600000}
OUT=${4:-$(mktemp -d)}
FL=${5:-./build/examples/flood}
[ -x "$FL" ] || { echo "build $FL first (make bench-bins)" >&2; exit 1; }
mkdir -p "$OUT"

run() { # n -> recv.N.out, send.N.out
    n=$1
    rm -f "$OUT/recv.$n.out" "$OUT/send.$n.out"
    : >"$OUT/recv.$n.log"
    taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$OUT/recv.$n.out" \
        $FL recv --url tcp://127.0.0.1:0 --mode "$MODE" >"$OUT/recv.$n.log" 2>"$OUT/recv.$n.err" &
    rcv=$!
    port=""
    i=0
    while [ -z "$port" ] && [ $i -lt 600 ]; do
        port=$(sed -n 's/^listening on \([0-9]*\).*/\1/p' "$OUT/recv.$n.log")
        [ -n "$port" ] || sleep 0.05
        i=$((i + 1))
    done
    [ -n "$port" ] || { kill "$rcv"; echo "flood recv did not start" >&2; exit 1; }
    taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$OUT/send.$n.out" \
        $FL send --url "tcp://127.0.0.1:$port" --mode "$MODE" --count "$n" \
        >"$OUT/send.$n.log" 2>"$OUT/send.$n.err"
    wait "$rcv"
    grep -q "msgs in" "$OUT/recv.$n.log" || { echo "flood recv failed: $(cat "$OUT/recv.$n.err")" >&2; exit 1; }
}

total() { # callgrind file -> total Ir
    sed -n 's/^summary: \([0-9]*\).*/\1/p' "$1"
}

run "$LO"
run "$HI"
for side in recv send; do
    lo=$(total "$OUT/$side.$LO.out")
    hi=$(total "$OUT/$side.$HI.out")
    echo "flood $MODE $side: $(( (hi - lo) / (HI - LO) )) instructions per message ($lo at $LO, $hi at $HI)"
done
echo "files: $OUT"
