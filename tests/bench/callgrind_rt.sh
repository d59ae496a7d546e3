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

. tests/bench/callgrind_lib.sh
server_cmd() { echo "$PP svc --url tcp://127.0.0.1:0 --mode $MODE --once"; }
client_cmd() { echo "$PP clt --url tcp://127.0.0.1:$1 --mode $MODE --count $2 --warmup 0"; }

cg_run svc clt "$LO"
cg_run svc clt "$HI"
cg_report "$MODE" "round trip" svc clt
