/* test_tools.c - what the command-line tools show a user:
 *   - the latency chart (tool_svg_histogram): a 1 % tail at milliseconds is
 *     visible (log-scale counts, a percentile panel up to 1 - 1/n), the
 *     title is escaped and kept whole, the file is well-formed XML (checked
 *     by Python's own parser), empty input is refused;
 *   - pingpong as a user runs it (build/examples/pingpong, children started
 *     and reaped by a Python helper with timeouts, PIDs only): a clt whose
 *     --serdes differs from the svc's says that --serdes must match on both
 *     sides; --plot writes a chart titled with URL, transport, mode, serdes
 *     and size.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mw_test.h"
#include "tool.h"

#ifndef MW_BUILD_DIR
#define MW_BUILD_DIR "build"
#endif
#define PINGPONG MW_BUILD_DIR "/examples/pingpong"

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return buf;
}

static int count_of(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

static void tmp_path(char *path, size_t cap, const char *tag) {
    snprintf(path, cap, "/tmp/mw_tools_%s_%ld.svg", tag, (long)getpid());
}

static void assert_xml_ok(const char *path) {
    char cmd[512], out[256];
    snprintf(cmd, sizeof cmd, MW_PYTHON " -c 'import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1]); "
                              "print(\"xml ok\")' %s 2>&1", path);
    int rc = mw_run(cmd, out, sizeof out);
    if (rc != 0 || !strstr(out, "xml ok")) fail_msg("%s is not well-formed XML: %s", path, out);
}

/* 9,900 round trips near 10 us and 100 (1 %) between 2 and 5 ms. */
static void test_chart_shows_a_one_percent_tail_at_milliseconds(void **state) {
    (void)state;
    enum { N = 10000, SLOW = 100 };
    uint64_t *v = malloc(N * sizeof *v);
    assert_non_null(v);
    for (int i = 0; i < N; i++)
        v[i] = i < N - SLOW ? 9000 + (uint64_t)(i % 97) * 31 : 2000000 + (uint64_t)(i % 31) * 97000;
    tool_pct_t p;
    tool_percentiles(v, N, &p);
    assert_true(p.p99 < 1000000);  /* the tail starts just past p99 */
    assert_true(p.p999 > 2000000); /* and p99.9 is in it */
    char path[128];
    tmp_path(path, sizeof path, "tail");
    assert_int_equal(tool_svg_histogram(path, v, N, &p, "tail test"), 0);
    const char *svg = slurp(path);
    assert_non_null(strstr(svg, "100 over 1 ms (1.000%)"));
    /* log-scale counts: decades labelled up to the peak bucket */
    assert_non_null(strstr(svg, ">1</text>"));
    assert_non_null(strstr(svg, ">1k</text>"));
    /* the percentile panel reaches 99.99 % (n = 10^4: the slowest is 1 - 1/n) */
    assert_non_null(strstr(svg, "Latency by percentile"));
    assert_non_null(strstr(svg, ">99.9%</text>"));
    assert_non_null(strstr(svg, ">99.99%</text>"));
    assert_null(strstr(svg, ">99.999%</text>"));
    /* every histogram bucket with samples is a bar: the tail has its own */
    assert_true(count_of(svg, "<rect x=") >= 5);
    assert_int_equal(count_of(svg, "<circle"), 4); /* p50, p90, p99, p99.9 */
    assert_xml_ok(path);
    unlink(path);
    free(v);
}

static void test_chart_title_is_escaped_and_kept_whole(void **state) {
    (void)state;
    uint64_t v[] = {5000, 6000, 7000, 8000};
    tool_pct_t p;
    tool_percentiles(v, 4, &p);
    char path[128];
    tmp_path(path, sizeof path, "title");
    const char *title = "msgwire pingpong: ws://127.0.0.1:1/a<b>&c, ws transport, event mode, msgpack serdes, "
                        "ping64 (64 bytes)";
    assert_int_equal(tool_svg_histogram(path, v, 4, &p, title), 0);
    const char *svg = slurp(path);
    assert_non_null(strstr(svg, "ws://127.0.0.1:1/a&lt;b&gt;&amp;c"));
    assert_null(strstr(svg, "a<b>"));
    /* long: two lines, nothing lost */
    assert_non_null(strstr(svg, "event mode"));
    assert_non_null(strstr(svg, "msgpack serdes"));
    assert_non_null(strstr(svg, "ping64 (64 bytes)"));
    assert_non_null(strstr(svg, "0 over 1 ms (0.000%)"));
    assert_xml_ok(path);
    unlink(path);
}

static void test_chart_refuses_no_samples(void **state) {
    (void)state;
    tool_pct_t p = {0};
    uint64_t v[1] = {1};
    char path[128];
    tmp_path(path, sizeof path, "empty");
    errno = 0;
    assert_int_equal(tool_svg_histogram(path, v, 0, &p, "x"), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(access(path, F_OK), -1);
}

/* Runs a svc with svc_args and a clt with clt_args against it; out gets the
 * clt's exit status, stdout and stderr as Python prints them. */
static int run_pair(const char *svc_args, const char *clt_args, char *out, size_t cap) {
    static const char script[] =
        "import subprocess, sys\n"
        "pp, svc_args, clt_args = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()\n"
        "svc = subprocess.Popen([pp, 'svc', '--url', 'tcp://127.0.0.1:0', '--once'] + svc_args,\n"
        "                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)\n"
        "try:\n"
        "    port = svc.stdout.readline().split()[2]\n"
        "    r = subprocess.run([pp, 'clt', '--url', 'tcp://127.0.0.1:' + port] + clt_args,\n"
        "                       capture_output=True, text=True, timeout=60)\n"
        "    print('rc=%d' % r.returncode)\n"
        "    print('stdout=' + r.stdout)\n"
        "    print('stderr=' + r.stderr)\n"
        "finally:\n"
        "    svc.kill()\n"
        "    svc.wait(timeout=30)\n";
    char path[128];
    snprintf(path, sizeof path, "/tmp/mw_tools_pair_%ld.py", (long)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(script, f);
    fclose(f);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "timeout -k 5 120 " MW_PYTHON " %s %s '%s' '%s' 2>&1", path, PINGPONG, svc_args,
             clt_args);
    int rc = mw_run(cmd, out, cap);
    unlink(path);
    return rc;
}

static void test_pingpong_clt_says_serdes_must_match(void **state) {
    (void)state;
    char out[8192];
    assert_int_equal(run_pair("--serdes fixed --mode blocking", "--serdes msgpack --mode blocking --count 10", out,
                              sizeof out),
                     0);
    if (!strstr(out, "rc=2") || !strstr(out, "after 0 round trips") ||
        !strstr(out, "must use the same --serdes (this clt: msgpack)"))
        fail_msg("pingpong clt output:\n%s", out);
}

static void test_pingpong_plot_title_names_the_run(void **state) {
    (void)state;
    char out[8192], svg_path[128], args[256];
    tmp_path(svg_path, sizeof svg_path, "pp");
    snprintf(args, sizeof args, "--serdes msgpack --mode event --size 100 --count 200 --warmup 10 --plot %s",
             svg_path);
    assert_int_equal(run_pair("--serdes msgpack --mode event", args, out, sizeof out), 0);
    if (!strstr(out, "rc=0")) fail_msg("pingpong clt output:\n%s", out);
    const char *svg = slurp(svg_path);
    if (!strstr(svg, "msgwire pingpong: tcp://127.0.0.1:") || !strstr(svg, "tcp transport") ||
        !strstr(svg, "event mode") || !strstr(svg, "msgpack serdes") || !strstr(svg, "(128 bytes)"))
        fail_msg("title missing a part:\n%.600s", svg);
    assert_non_null(strstr(svg, "200 samples"));
    assert_xml_ok(svg_path);
    unlink(svg_path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chart_shows_a_one_percent_tail_at_milliseconds),
        cmocka_unit_test(test_chart_title_is_escaped_and_kept_whole),
        cmocka_unit_test(test_chart_refuses_no_samples),
        cmocka_unit_test(test_pingpong_clt_says_serdes_must_match),
        cmocka_unit_test(test_pingpong_plot_title_names_the_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
