# callgrind_lib.sh - sourced by callgrind_rt.sh and callgrind_flood.sh: a
# server and a client both under callgrind on core 0, run at two counts, and
# the difference of their instruction totals per unit (start-up and teardown
# cancel out). The caller sets OUT, LO, HI and defines server_cmd N and
# client_cmd PORT N (the programs without valgrind), and names the two sides.

# cg_run SERVER CLIENT N: runs server_cmd under callgrind, waits for its
# "listening on PORT" line, then client_cmd; writes OUT/SIDE.N.{out,log,err}.
cg_run() {
    sv=$1 cl=$2 n=$3
    rm -f "$OUT/$sv.$n.out" "$OUT/$cl.$n.out"
    : >"$OUT/$sv.$n.log"
    # shellcheck disable=SC2046
    taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$OUT/$sv.$n.out" \
        $(server_cmd "$n") >"$OUT/$sv.$n.log" 2>"$OUT/$sv.$n.err" &
    spid=$!
    port=""
    i=0
    while [ -z "$port" ] && [ $i -lt 600 ]; do
        port=$(sed -n 's/^listening on \([0-9]*\).*/\1/p' "$OUT/$sv.$n.log")
        [ -n "$port" ] || sleep 0.05
        i=$((i + 1))
    done
    [ -n "$port" ] || { kill "$spid"; echo "$sv did not start: $(cat "$OUT/$sv.$n.err")" >&2; exit 1; }
    # shellcheck disable=SC2046
    taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$OUT/$cl.$n.out" \
        $(client_cmd "$port" "$n") >"$OUT/$cl.$n.log" 2>"$OUT/$cl.$n.err"
    wait "$spid"
}

cg_total() { # callgrind file -> total Ir
    sed -n 's/^summary: \([0-9]*\).*/\1/p' "$1"
}

# cg_report LABEL UNIT SIDE...: one line per side.
cg_report() {
    label=$1 unit=$2
    shift 2
    for side in "$@"; do
        lo=$(cg_total "$OUT/$side.$LO.out")
        hi=$(cg_total "$OUT/$side.$HI.out")
        echo "$label $side: $(((hi - lo) / (HI - LO))) instructions per $unit ($lo at $LO, $hi at $HI)"
    done
    echo "files: $OUT"
}
