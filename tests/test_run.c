/* test_run.c - tests/run.sh, the runner behind `make test`: its one summary
 * line counts passed, failed and skipped tests; every skipped test is listed
 * by name; and under CI (CI=true) a missing interop peer is a failure, not a
 * skip. The peer is made to look missing with MW_TEST_PRETEND_MISSING
 * (tests/util/mw_test.h), so nothing has to be uninstalled. */
#include "mw_test.h"

#include <stdio.h>
#include <string.h>

#define INTEROP MW_BUILD_DIR "/san/tests/test_ws_interop"

/* Runs tests/run.sh on one test binary with the given environment settings;
 * returns its exit status, output in out. */
static int run_sh(const char *env, const char *bin, char *out, size_t cap) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cd %s && env -u CI -u MW_TEST_PRETEND_MISSING %s sh tests/run.sh %s 2>&1",
             MW_SRC_ROOT, env, bin);
    return mw_run(cmd, out, cap);
}

/* The last line of out (the summary), into line. */
static void last_line(const char *out, char *line, size_t cap) {
    size_t n = strlen(out);
    while (n && out[n - 1] == '\n') n--;
    size_t b = n;
    while (b && out[b - 1] != '\n') b--;
    snprintf(line, cap, "%.*s", (int)(n - b), out + b);
}

static void test_run_sh_counts_passed_tests_in_one_summary_line(void **state) {
    (void)state;
    static char out[1 << 16];
    char line[256];
    int rc = run_sh("", MW_BUILD_DIR "/san/tests/test_url", out, sizeof out);
    last_line(out, line, sizeof line);
    if (rc != 0) fail_msg("run.sh test_url: status %d: %s", rc, line);
    int p = -1, f = -1, s = -1;
    if (sscanf(line, "tests: %d passed, %d failed, %d skipped", &p, &f, &s) != 3)
        fail_msg("summary line \"%s\" is not \"tests: N passed, N failed, N skipped\"", line);
    assert_true(p > 0);
    assert_int_equal(f, 0);
    assert_int_equal(s, 0);
    assert_null(strstr(out, "skipped tests:"));
}

static void test_run_sh_counts_and_lists_each_skipped_test(void **state) {
    (void)state;
    static char out[1 << 16];
    char line[256];
    int rc = run_sh("MW_TEST_PRETEND_MISSING=websockets", INTEROP, out, sizeof out);
    last_line(out, line, sizeof line);
    /* (only the summary line: the runner's own output would be counted by the outer run.sh) */
    if (rc != 0) fail_msg("a skip made run.sh fail (status %d): %s", rc, line);
    assert_string_equal(line, "tests: 0 passed, 0 failed, 2 skipped");
    assert_non_null(strstr(out, "\nskipped tests:\n"));
    assert_non_null(strstr(out, "  test_ws_interop: test_ws_interop_our_client_with_python_echo_server\n"));
    assert_non_null(strstr(out, "  test_ws_interop: test_ws_interop_python_client_with_our_echo_server\n"));
}

static void test_run_sh_under_ci_a_missing_interop_peer_fails(void **state) {
    (void)state;
    static char out[1 << 16];
    char line[256];
    int rc = run_sh("CI=true MW_TEST_PRETEND_MISSING=websockets", INTEROP, out, sizeof out);
    last_line(out, line, sizeof line);
    assert_int_not_equal(rc, 0);
    assert_string_equal(line, "tests: 0 passed, 2 failed, 0 skipped");
    assert_non_null(strstr(out, "CI=true"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_sh_counts_passed_tests_in_one_summary_line),
        cmocka_unit_test(test_run_sh_counts_and_lists_each_skipped_test),
        cmocka_unit_test(test_run_sh_under_ci_a_missing_interop_peer_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
