#!/bin/sh
# Runs each cmocka test binary under a timeout, shows its output, and ends with
# one summary line: "tests: N passed, N failed" (cases, counted from cmocka's
# own summary lines). Exits non-zero if any binary failed, crashed or hung.
# Usage: tests/run.sh BIN...
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
TEST_TIMEOUT="${TEST_TIMEOUT:-240}"
pass=0; fail=0; bad_bins=""
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
for t in "$@"; do
    name=$(basename "$t")
    echo "== $name"
    timeout -k 5 "$TEST_TIMEOUT" "$t" >"$tmp" 2>&1
    rc=$?
    cat "$tmp"
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$tmp" | awk '{s+=$1} END {print s+0}')
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$tmp" | awk '{s+=$1} END {print s+0}')
    pass=$((pass + p)); fail=$((fail + f))
    if [ "$rc" -ne 0 ]; then
        [ "$rc" -eq 124 ] && echo "!! $name timed out after ${TEST_TIMEOUT}s"
        [ "$f" -eq 0 ] && fail=$((fail + 1))   # crash or hang: count it
        bad_bins="$bad_bins $name"
    fi
done
echo
[ -n "$bad_bins" ] && echo "failing binaries:$bad_bins"
echo "tests: $pass passed, $fail failed"
[ -z "$bad_bins" ] && [ "$fail" -eq 0 ]
