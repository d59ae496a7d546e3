#!/bin/sh
# Runs each libFuzzer target for SECONDS seconds, one after another, and
# prints a table: executions, corpus size (libFuzzer's count of the inputs
# that make up its coverage), and the result. Seeds come from
# tests/fuzz/corpus/<name> (read only); inputs libFuzzer finds are kept in
# build/fuzz/corpus/<name> for the next run; a crash, leak, timeout or
# failed property leaves its input in build/fuzz/artifacts/ and fails the run.
# Usage: tests/fuzz/run_fuzz.sh SECONDS NAME...   (from the source root)
# Environment: FUZZ_ARGS adds libFuzzer flags (e.g. -jobs=2 -workers=2).
secs=${1:-30}; shift
B=${MW_BUILD_DIR:-build}
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
mkdir -p "$B/fuzz/artifacts" "$B/fuzz/logs"
summary=""; bad=""
for name in "$@"; do
    mkdir -p "$B/fuzz/corpus/$name"
    dict=""; [ -f "tests/fuzz/$name.dict" ] && dict="-dict=tests/fuzz/$name.dict"
    log="$B/fuzz/logs/$name.log"
    echo "== fuzz_$name for ${secs}s"
    # shellcheck disable=SC2086
    "$B/fuzz/fuzz_$name" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$B/fuzz/artifacts/$name-" $dict $FUZZ_ARGS \
        "$B/fuzz/corpus/$name" "tests/fuzz/corpus/$name" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | awk '{s+=$1} END {print s+0}')
    corpus=$(grep -o 'corp: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
    res=ok
    if [ "$rc" -ne 0 ]; then
        res="FAILED (rc $rc, see $log)"
        bad="$bad $name"
        grep -E "^==[0-9]+==ERROR|SUMMARY|property failed|Test unit written" "$log" | head -5
    fi
    line=$(printf '%-26s %9s execs, corpus %5s inputs  %s' "fuzz_$name" "$execs" "${corpus:-?}" "$res")
    echo "$line"
    summary="$summary
$line"
done
echo
echo "fuzz summary (${secs}s per target):$summary"
[ -z "$bad" ] || { echo "failing targets:$bad"; exit 1; }
