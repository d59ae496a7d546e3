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

. tests/bench/callgrind_lib.sh
server_cmd() { echo "$FL recv --url tcp://127.0.0.1:0 --mode $MODE"; }
client_cmd() { echo "$FL send --url tcp://127.0.0.1:$1 --mode $MODE --count $2"; }
check() { grep -q "msgs in" "$OUT/recv.$1.log" || { echo "flood recv failed: $(cat "$OUT/recv.$1.err")" >&2; exit 1; }; }

cg_run recv send "$LO" && check "$LO"
cg_run recv send "$HI" && check "$HI"
cg_report "flood $MODE" message recv send
