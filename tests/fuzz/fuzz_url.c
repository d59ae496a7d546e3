/* fuzz_url.c - endpoint URL parsing (mw__url_parse, core/url.c).
 *
 * Input: the URL text (a NUL ends it early, as it would in C). Properties:
 * success fills NUL-terminated host, port and path within their arrays, a
 * non-empty host, a port of 1..5 digits in 0..65535, a path starting with
 * '/' ("/" for tcp/tls); the URL written back from the parts parses to the
 * same parts; a refusal is MW_EINVAL with text that quotes the URL. */
#include "fuzz.h"

#include <string.h>

#include "mw_err.h"
#include "mw_tcp.h"
#include "tcp_impl.h"

static void check_parts(const mw__url_t *u) {
    FUZZ_CHECK(memchr(u->host, 0, sizeof u->host) && memchr(u->port, 0, sizeof u->port) &&
                   memchr(u->path, 0, sizeof u->path),
               "unterminated part");
    FUZZ_CHECK(u->host[0], "empty host");
    size_t pl = strlen(u->port);
    FUZZ_CHECK(pl >= 1 && pl <= 5 && strspn(u->port, "0123456789") == pl && atol(u->port) <= 65535,
               "port \"%s\"", u->port);
    FUZZ_CHECK(u->path[0] == '/', "path \"%s\"", u->path);
    if (u->scheme == MW_SCHEME_TCP || u->scheme == MW_SCHEME_TLS)
        FUZZ_CHECK(strcmp(u->path, "/") == 0, "path \"%s\" on %s", u->path, mw__scheme_name(u->scheme));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    char *url = malloc(size + 1);
    FUZZ_CHECK(url, "malloc");
    memcpy(url, data, size);
    url[size] = '\0';
    mw__url_t u;
    memset(&u, 0x5A, sizeof u);
    mw_err_t err = {0};
    int rc = mw__url_parse(url, &u, &err);
    if (rc != 0) {
        FUZZ_CHECK(rc == MW_EINVAL, "rc %d", rc);
        FUZZ_CHECK(strncmp(mw_err_text(&err), "URL \"", 5) == 0, "text \"%s\"", mw_err_text(&err));
        free(url);
        return 0;
    }
    check_parts(&u);
    /* Written back from its parts, the URL means the same. */
    char again[1024];
    bool v6 = strchr(u.host, ':') != NULL;
    bool ws = u.scheme == MW_SCHEME_WS || u.scheme == MW_SCHEME_WSS;
    snprintf(again, sizeof again, "%s://%s%s%s:%s%s", mw__scheme_name(u.scheme), v6 ? "[" : "", u.host,
             v6 ? "]" : "", u.port, ws ? u.path : "");
    mw__url_t u2;
    rc = mw__url_parse(again, &u2, &err);
    FUZZ_CHECK(rc == 0, "\"%s\" from \"%s\" does not parse: %s", again, url, mw_err_text(&err));
    FUZZ_CHECK(u2.scheme == u.scheme && !strcmp(u2.host, u.host) && !strcmp(u2.port, u.port) &&
                   !strcmp(u2.path, u.path),
               "\"%s\" from \"%s\" parses differently", again, url);
    free(url);
    return 0;
}
