#!/bin/sh
# Runs each cmocka test binary under a timeout, shows its output, lists every
# skipped test by name, and ends with one summary line:
#     tests: N passed, N failed, N skipped
# (cases, counted from cmocka's own summary lines). Exits non-zero if any
# binary failed, crashed or hung. A skip is never counted as a pass. Under CI
# (CI=true) the tests themselves turn a skip for a missing interop peer
# (python3-msgpack, python3-websockets, the openssl command) into a failure
# (tests/util/mw_test.h, mw_test_require).
# Usage: tests/run.sh BIN...
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
TEST_TIMEOUT="${TEST_TIMEOUT:-240}"
pass=0; fail=0; skipped=0; bad_bins=""
tmp=$(mktemp); skips=$(mktemp)
trap 'rm -f "$tmp" "$skips"' EXIT
# sums the N of every "[  <word>  ] N test(s)" line of the output in $tmp
count() {
    sed -n "s/^\[  $1 *\] \([0-9]*\) test.*/\1/p" "$tmp" | awk '{s+=$1} END {print s+0}'
}
for t in "$@"; do
    name=$(basename "$t")
    echo "== $name"
    timeout -k 5 "$TEST_TIMEOUT" "$t" >"$tmp" 2>&1
    rc=$?
    cat "$tmp"
    p=$(count PASSED); f=$(count FAILED); s=$(count SKIPPED)
    pass=$((pass + p)); fail=$((fail + f)); skipped=$((skipped + s))
    # cmocka lists each skipped test as "[  SKIPPED ] name" (once when it
    # runs, once in the summary): one line per test, by binary.
    sed -n 's/^\[  SKIPPED \] \([^ ]*\)$/\1/p' "$tmp" | sort -u | sed "s/^/  $name: /" >>"$skips"
    if [ "$rc" -eq 0 ] && [ $((p + f + s)) -eq 0 ]; then
        # exit 0 but no cmocka summary read back: the output is lost or the
        # binary ran no test; either way nothing was shown to pass
        echo "!! $name: exit 0 but no test summary in its output"
        rc=1
    fi
    if [ "$rc" -ne 0 ]; then
        [ "$rc" -eq 124 ] && echo "!! $name timed out after ${TEST_TIMEOUT}s"
        [ "$f" -eq 0 ] && fail=$((fail + 1))   # crash or hang: count it
        bad_bins="$bad_bins $name"
    fi
done
echo
if [ -s "$skips" ]; then
    echo "skipped tests:"
    cat "$skips"
fi
[ -n "$bad_bins" ] && echo "failing binaries:$bad_bins"
echo "tests: $pass passed, $fail failed, $skipped skipped"
[ -z "$bad_bins" ] && [ "$fail" -eq 0 ]
