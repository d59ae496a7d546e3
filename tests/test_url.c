/* test_url.c - endpoint URL parsing: accepted forms, defaults, and the text
 * given for each kind of refusal. */
#include "mw_test.h"

#include "mw_tcp.h"
#include "tcp_impl.h"

#include <string.h>

static void check_ok(const char *url, mw__scheme_t scheme, const char *host, const char *port,
                     const char *path) {
    mw__url_t u;
    mw_err_t err = {0};
    int rc = mw__url_parse(url, &u, &err);
    if (rc != 0) fail_msg("%s: %s", url, mw_err_text(&err));
    assert_int_equal(u.scheme, scheme);
    assert_string_equal(u.host, host);
    assert_string_equal(u.port, port);
    assert_string_equal(u.path, path);
}

/* Refused with MW_EINVAL, text naming the URL and containing `why`, and the
 * output left untouched. */
static void check_bad(const char *url, const char *why) {
    mw__url_t u;
    memset(&u, 0x5a, sizeof u);
    mw_err_t err = {0};
    assert_int_equal(mw__url_parse(url, &u, &err), MW_EINVAL);
    assert_int_equal(err.code, MW_EINVAL);
    const char *text = mw_err_text(&err);
    if (!strstr(text, why)) fail_msg("%s: text \"%s\" lacks \"%s\"", url, text, why);
    if (url[0] && !strstr(text, url)) fail_msg("%s: text \"%s\" does not name the URL", url, text);
    for (size_t i = 0; i < sizeof u; i++) assert_int_equal(((unsigned char *)&u)[i], 0x5a);
}

static void test_url_parses_each_scheme(void **state) {
    (void)state;
    check_ok("tcp://127.0.0.1:5000", MW_SCHEME_TCP, "127.0.0.1", "5000", "/");
    check_ok("tls://example.com:443", MW_SCHEME_TLS, "example.com", "443", "/");
    check_ok("ws://localhost:8080/feed", MW_SCHEME_WS, "localhost", "8080", "/feed");
    check_ok("wss://host.example:9443/a/b", MW_SCHEME_WSS, "host.example", "9443", "/a/b");
}

static void test_url_ws_defaults_port_and_path(void **state) {
    (void)state;
    check_ok("ws://h", MW_SCHEME_WS, "h", "80", "/");
    check_ok("wss://h", MW_SCHEME_WSS, "h", "443", "/");
    check_ok("wss://h/", MW_SCHEME_WSS, "h", "443", "/");
}

static void test_url_keeps_query_in_path(void **state) {
    (void)state;
    check_ok("ws://h:1/feed?x=1&y=2", MW_SCHEME_WS, "h", "1", "/feed?x=1&y=2");
    check_ok("ws://h?x=1", MW_SCHEME_WS, "h", "80", "/?x=1");
}

static void test_url_accepts_ipv6_and_strips_brackets(void **state) {
    (void)state;
    check_ok("tcp://[::1]:7000", MW_SCHEME_TCP, "::1", "7000", "/");
    check_ok("ws://[2001:db8::5]/x", MW_SCHEME_WS, "2001:db8::5", "80", "/x");
}

static void test_url_port_zero_and_65535_accepted(void **state) {
    (void)state;
    check_ok("tcp://0.0.0.0:0", MW_SCHEME_TCP, "0.0.0.0", "0", "/");
    check_ok("tls://h:65535", MW_SCHEME_TLS, "h", "65535", "/");
    check_ok("tcp://h:1", MW_SCHEME_TCP, "h", "1", "/");
    check_ok("tcp://h:1/", MW_SCHEME_TCP, "h", "1", "/");
}

static void test_url_scheme_is_case_insensitive(void **state) {
    (void)state;
    check_ok("TCP://H:1", MW_SCHEME_TCP, "H", "1", "/");
    check_ok("Wss://h", MW_SCHEME_WSS, "h", "443", "/");
}

static void test_url_rejects_unknown_or_missing_scheme(void **state) {
    (void)state;
    check_bad("http://h:80", "unknown scheme \"http\"");
    check_bad("udp://h:80", "unknown scheme");
    check_bad("h:80", "unknown scheme \"h\"");
    check_bad("justahost", "no scheme");
    check_bad("", "no scheme");
    check_bad("://h:1", "expected scheme://");
}

static void test_url_rejects_missing_host(void **state) {
    (void)state;
    check_bad("tcp://:5000", "missing host");
    check_bad("ws:///path", "missing host");
    check_bad("ws:h", "missing host");
    check_bad("tcp://[]:5000", "missing host");
}

static void test_url_tcp_and_tls_need_a_port(void **state) {
    (void)state;
    check_bad("tcp://h", "tcp needs a port");
    check_bad("tls://h", "tls needs a port");
    check_bad("tcp://h:", "tcp needs a port");
}

static void test_url_rejects_bad_port(void **state) {
    (void)state;
    check_bad("tcp://h:65536", "port \"65536\" is not a number in 0..65535");
    check_bad("tcp://h:99999999999", "port \"99999999999\"");
    check_bad("tcp://h:-1", "port \"-1\"");
    check_bad("ws://h:abc/x", "port \"abc\"");
    check_bad("tcp://[::1]:70000", "port \"70000\"");
}

static void test_url_rejects_other_malformed_input(void **state) {
    (void)state;
    check_bad("tcp://[::1:5000", "unterminated '['");
    check_bad("tcp://u@h:1", "user info");
    check_bad("ws://h/x#frag", "fragment");
    check_bad("tcp://h:1/path", "tcp takes no path");
    check_bad("tls://h:1?q=1", "tls takes no path or query");
    check_bad("tcp://h h:1", "malformed");
}

static void test_url_rejects_overlong_host_and_path(void **state) {
    (void)state;
    char url[1024];
    memset(url, 0, sizeof url);
    strcpy(url, "tcp://");
    memset(url + 6, 'a', 256);
    strcat(url, ":1");
    mw__url_t u;
    mw_err_t err = {0};
    assert_int_equal(mw__url_parse(url, &u, &err), MW_EINVAL);
    assert_non_null(strstr(mw_err_text(&err), "host name too long"));
    strcpy(url, "ws://h/");
    memset(url + 7, 'p', 600);
    url[607] = '\0';
    assert_int_equal(mw__url_parse(url, &u, &err), MW_EINVAL);
    assert_non_null(strstr(mw_err_text(&err), "path too long"));
}

static void test_url_null_arguments_are_einval(void **state) {
    (void)state;
    mw__url_t u;
    assert_int_equal(mw__url_parse(NULL, &u, NULL), MW_EINVAL);
    assert_int_equal(mw__url_parse("tcp://h:1", NULL, NULL), MW_EINVAL);
    assert_int_equal(mw__url_parse("tcp://h", &u, NULL), MW_EINVAL); /* err is optional */
}

static void test_scheme_names(void **state) {
    (void)state;
    assert_string_equal(mw__scheme_name(MW_SCHEME_TCP), "tcp");
    assert_string_equal(mw__scheme_name(MW_SCHEME_TLS), "tls");
    assert_string_equal(mw__scheme_name(MW_SCHEME_WS), "ws");
    assert_string_equal(mw__scheme_name(MW_SCHEME_WSS), "wss");
    assert_string_equal(mw__scheme_name((mw__scheme_t)42), "?");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_parses_each_scheme),
        cmocka_unit_test(test_url_ws_defaults_port_and_path),
        cmocka_unit_test(test_url_keeps_query_in_path),
        cmocka_unit_test(test_url_accepts_ipv6_and_strips_brackets),
        cmocka_unit_test(test_url_port_zero_and_65535_accepted),
        cmocka_unit_test(test_url_scheme_is_case_insensitive),
        cmocka_unit_test(test_url_rejects_unknown_or_missing_scheme),
        cmocka_unit_test(test_url_rejects_missing_host),
        cmocka_unit_test(test_url_tcp_and_tls_need_a_port),
        cmocka_unit_test(test_url_rejects_bad_port),
        cmocka_unit_test(test_url_rejects_other_malformed_input),
        cmocka_unit_test(test_url_rejects_overlong_host_and_path),
        cmocka_unit_test(test_url_null_arguments_are_einval),
        cmocka_unit_test(test_scheme_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
