/* url.c - endpoint URLs: tcp://, tls://, ws://, wss://.
 *
 * libevent's URI parser does the RFC 3986 splitting; this file checks what
 * msgwire needs on top of it and turns refusals into readable text.
 */
#include "mw_tcp.h"
#include "err_impl.h"
#include "tcp_impl.h"

#include <ctype.h>
#include <stdarg.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct {
    const char *name;
    mw__scheme_t scheme;
    int default_port; /* 0: the port is required */
} schemes[] = {
    {"tcp", MW_SCHEME_TCP, 0},
    {"tls", MW_SCHEME_TLS, 0},
    {"ws", MW_SCHEME_WS, 80},
    {"wss", MW_SCHEME_WSS, 443},
};
#define NSCHEMES (sizeof schemes / sizeof schemes[0])

const char *mw__scheme_name(mw__scheme_t s) {
    for (size_t i = 0; i < NSCHEMES; i++)
        if (schemes[i].scheme == s) return schemes[i].name;
    return "?";
}

#define URL_SHOWN 100 /* long URLs are cut in error text so the reason survives */

static int bad(mw_err_t *err, const char *url, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(mw_err_t *err, const char *url, const char *fmt, ...) {
    char why[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    const char *more = strlen(url) > URL_SHOWN ? "..." : "";
    return mw__err_set(err, MW_EINVAL, "URL \"%.*s%s\": %s", URL_SHOWN, url, more, why);
}

/* libevent says only "no"; find the likely reason: a bad port is the common one. */
static int explain(const char *url, mw_err_t *err) {
    const char *a = strstr(url, "://");
    if (!a || a == url) return bad(err, url, "expected scheme://host[:port]");
    a += 3;
    size_t alen = strcspn(a, "/?#");
    const char *at = memrchr(a, '@', alen);
    if (at) {
        alen -= (size_t)(at + 1 - a);
        a = at + 1;
    }
    const char *colon = NULL;
    if (a[0] == '[') {
        const char *rb = memchr(a, ']', alen);
        if (!rb) return bad(err, url, "unterminated '[' in host");
        if (rb == a + 1) return bad(err, url, "missing host");
        if (rb + 1 < a + alen && rb[1] == ':') colon = rb + 1;
    } else {
        colon = memrchr(a, ':', alen);
    }
    if (colon) {
        const char *p = colon + 1;
        int plen = (int)(a + alen - p);
        bool digits = plen > 0;
        for (int i = 0; i < plen; i++) digits = digits && isdigit((unsigned char)p[i]);
        if (!digits || plen > 5 || atoi(p) > 65535)
            return bad(err, url, "port \"%.*s\" is not a number in 0..65535", plen > 20 ? 20 : plen, p);
    }
    return bad(err, url, "malformed");
}

static int scheme_index(const char *name) {
    for (size_t i = 0; name && i < NSCHEMES; i++)
        if (strcasecmp(name, schemes[i].name) == 0) return (int)i;
    return -1;
}

/* Checks the parts and fills u; the caller's struct is written only on success. */
static int fill(const struct evhttp_uri *uri, const char *url, mw__url_t *u, mw_err_t *err) {
    const char *scheme = evhttp_uri_get_scheme(uri), *host = evhttp_uri_get_host(uri);
    if (!scheme) return bad(err, url, "no scheme (expected tcp://, tls://, ws:// or wss://)");
    int si = scheme_index(scheme);
    if (si < 0)
        return bad(err, url, "unknown scheme \"%.16s\" (expected tcp, tls, ws or wss)", scheme);
    if (!host || !host[0]) return bad(err, url, "missing host");
    if (evhttp_uri_get_userinfo(uri)) return bad(err, url, "user info is not supported");
    if (evhttp_uri_get_fragment(uri)) return bad(err, url, "a fragment ('#') is not allowed");
    u->scheme = schemes[si].scheme;

    int port = evhttp_uri_get_port(uri);
    if (port < 0 && !schemes[si].default_port)
        return bad(err, url, "%s needs a port (%s://host:port)", schemes[si].name, schemes[si].name);
    if (port < 0) port = schemes[si].default_port;
    if (port > 65535) return bad(err, url, "port is not in 0..65535");
    /* The mask only tells the compiler the range checked above. */
    snprintf(u->port, sizeof u->port, "%u", (unsigned)port & 0xffffu);

    size_t hl = strlen(host);
    if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']') {
        host++;
        hl -= 2;
    }
    if (hl == 0) return bad(err, url, "missing host");
    if (hl >= sizeof u->host) return bad(err, url, "host name too long");
    memcpy(u->host, host, hl);
    u->host[hl] = '\0';

    const char *path = evhttp_uri_get_path(uri), *query = evhttp_uri_get_query(uri);
    if (!path || !path[0]) path = "/";
    bool ws = u->scheme == MW_SCHEME_WS || u->scheme == MW_SCHEME_WSS;
    if (!ws && (strcmp(path, "/") != 0 || query))
        return bad(err, url, "%s takes no path or query", schemes[si].name);
    int n = snprintf(u->path, sizeof u->path, "%s%s%s", path, query ? "?" : "", query ? query : "");
    if (n < 0 || (size_t)n >= sizeof u->path) return bad(err, url, "path too long");
    return 0;
}

int mw__url_parse(const char *url, mw__url_t *out, mw_err_t *err) {
    if (!url || !out) return mw__err_set(err, MW_EINVAL, "URL: NULL argument");
    struct evhttp_uri *uri = evhttp_uri_parse(url);
    if (!uri) return explain(url, err);
    mw__url_t u;
    int rc = fill(uri, url, &u, err);
    evhttp_uri_free(uri);
    if (rc == 0) *out = u;
    return rc;
}
