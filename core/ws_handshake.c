/* ws_handshake.c - the HTTP/1.1 upgrade of RFC 6455 section 4, sans-I/O:
 * build and validate the client's request and the server's response.
 *
 * The head is parsed only once it is complete (mw__ws_head_end finds the end
 * incrementally), the way picohttpparser re-parses a complete head: simpler
 * than a byte-at-a-time state machine and just as cheap for a head of a few
 * hundred bytes read once per connection. Header names are compared without
 * case; list-valued headers (Connection, Upgrade, Sec-WebSocket-Protocol) are
 * matched token by token.
 */
#include "ws_impl.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- small string helpers -------------------------------------------------------- */

static mw__ws_str_t str_of(const char *p, size_t n) { return (mw__ws_str_t){p, n}; }

static bool is_ows(char c) { return c == ' ' || c == '\t'; }

static mw__ws_str_t trim(mw__ws_str_t s) {
    while (s.n && is_ows(s.p[0])) s.p++, s.n--;
    while (s.n && is_ows(s.p[s.n - 1])) s.n--;
    return s;
}

static bool eq_nocase(mw__ws_str_t s, const char *lit) {
    size_t n = strlen(lit);
    return s.n == n && strncasecmp(s.p, lit, n) == 0;
}

static bool eq_exact(mw__ws_str_t s, const char *lit) {
    size_t n = strlen(lit);
    return s.n == n && memcmp(s.p, lit, n) == 0;
}

/* Calls fn for each trimmed, non-empty element of a comma-separated list;
 * stops and returns true as soon as fn does. */
static bool each_token(mw__ws_str_t list, bool (*fn)(mw__ws_str_t tok, const void *ud), const void *ud) {
    const char *p = list.p, *end = list.p + list.n;
    while (p < end) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        if (!c) c = end;
        mw__ws_str_t t = trim(str_of(p, (size_t)(c - p)));
        if (t.n && fn(t, ud)) return true;
        p = c + 1;
    }
    return false;
}

static bool tok_eq_nocase(mw__ws_str_t t, const void *ud) { return eq_nocase(t, ud); }
static bool tok_eq_exact(mw__ws_str_t t, const void *ud) { return eq_exact(t, ud); }

static bool has_token(mw__ws_str_t list, const char *tok) { return each_token(list, tok_eq_nocase, tok); }

/* Subprotocol names are case-sensitive (RFC 6455 4.1). */
static bool offered_has(const char *offered, mw__ws_str_t t) {
    if (!offered) return false;
    mw__ws_str_t want = t;
    char tmp[256];
    if (want.n >= sizeof tmp) return false;
    memcpy(tmp, want.p, want.n);
    tmp[want.n] = '\0';
    return each_token(str_of(offered, strlen(offered)), tok_eq_exact, tmp);
}

/* ---- head scanning ----------------------------------------------------------------- */

ssize_t mw__ws_head_end(const uint8_t *p, size_t len, size_t max, size_t *scan) {
    size_t i = *scan;
    while (i < len) {
        const uint8_t *nl = memchr(p + i, '\n', len - i);
        if (!nl) {
            i = len;
            break;
        }
        i = (size_t)(nl - p);
        /* An empty line: "\n\n" or "\n\r\n". */
        if ((i >= 1 && p[i - 1] == '\n') || (i >= 2 && p[i - 1] == '\r' && p[i - 2] == '\n')) {
            *scan = i + 1;
            return i + 1 > max ? MW_ETOOBIG : (ssize_t)(i + 1);
        }
        i++;
    }
    *scan = i;
    return len >= max ? MW_ETOOBIG : MW_EAGAIN;
}

/* ---- the start of a request ------------------------------------------------------------ */

enum { METHOD_MAX = 16, START_CHECK_MAX = 256 };

/* tchar of RFC 9110 5.6.2: the characters of a method. */
static bool is_tchar(uint8_t c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Checks what has arrived of "METHOD SP /target SP HTTP/1.x" (at most the
 * first START_CHECK_MAX bytes: a bounded cost however the head is split). */
const char *mw__ws_request_start_bad(const uint8_t *p, size_t len) {
    static const char version[] = "HTTP/1.";
    if (len && p[0] == 0x16) return "a TLS ClientHello on a plain ws:// listener (is the client using wss://?)";
    if (len > START_CHECK_MAX) len = START_CHECK_MAX;
    size_t i = 0, m = 0;
    while (i < len && is_tchar(p[i])) i++;
    if (i == len) return i > METHOD_MAX ? "request method too long" : NULL;
    if (i == 0) return "not an HTTP request";
    if (i > METHOD_MAX) return "request method too long";
    if (p[i++] != ' ') return "malformed request line";
    if (i < len && p[i] != '/') return "request target is not a path";
    while (i < len && p[i] > 0x20 && p[i] != 0x7f) i++; /* bytes >= 0x80 as the full parser allows */
    if (i == len) return NULL;
    if (p[i++] != ' ') return "malformed request target";
    for (; i < len && m < sizeof version - 1; i++, m++)
        if (p[i] != version[m]) return "not HTTP/1.1";
    if (i < len && m == sizeof version - 1 && (p[i] < '1' || p[i] > '9')) return "not HTTP/1.1";
    return NULL;
}

/* Splits off the next line (without its CRLF or LF). False at the end. */
static bool next_line(const char **p, const char *end, mw__ws_str_t *line) {
    if (*p >= end) return false;
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    const char *stop = nl ? nl : end;
    const char *e = stop;
    if (e > *p && e[-1] == '\r') e--;
    *line = str_of(*p, (size_t)(e - *p));
    *p = nl ? nl + 1 : end;
    return true;
}

/* "Name: value". Names are tokens: no spaces before the colon (RFC 7230
 * 3.2.4), no obsolete line folding. */
static bool split_header(mw__ws_str_t line, mw__ws_str_t *name, mw__ws_str_t *value) {
    const char *c = memchr(line.p, ':', line.n);
    if (!c || c == line.p) return false;
    *name = str_of(line.p, (size_t)(c - line.p));
    for (size_t i = 0; i < name->n; i++) {
        unsigned char ch = (unsigned char)name->p[i];
        if (ch <= ' ' || ch >= 0x7F) return false;
    }
    *value = trim(str_of(c + 1, line.n - name->n - 1));
    return true;
}

/* ---- keys ---------------------------------------------------------------------- */

int mw__ws_key_new(char out[25]) {
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof raw) != 1) return MW_ESYS;
    EVP_EncodeBlock((unsigned char *)out, raw, sizeof raw);
    out[24] = '\0';
    return 0;
}

bool mw__ws_key_valid(const char *key, size_t n) {
    if (n != 24 || key[22] != '=' || key[23] != '=' || key[21] == '=') return false;
    unsigned char raw[18];
    /* EVP_DecodeBlock counts the padding as zero bytes: 24 chars -> 18. */
    return EVP_DecodeBlock(raw, (const unsigned char *)key, 24) == 18;
}

/* ---- client request ---------------------------------------------------------------- */

static bool has_crlf(const char *s) { return s && strpbrk(s, "\r\n") != NULL; }

typedef struct outbuf {
    char *p;
    size_t cap, n;
    bool over;
} outbuf_t;

static void put(outbuf_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(outbuf_t *o, const char *fmt, ...) {
    if (o->over) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(o->p + o->n, o->cap - o->n, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= o->cap - o->n) o->over = true;
    else o->n += (size_t)k;
}

ssize_t mw__ws_request_build(char *out, size_t cap, const mw_ws_opts_t *o, const char *host,
                             const char *key) {
    const char *path = o->path && o->path[0] ? o->path : "/";
    const char *x = o->extra_headers;
    size_t xn = x ? strlen(x) : 0;
    if (path[0] != '/' || strpbrk(path, " \r\n") || has_crlf(host) || has_crlf(o->origin) ||
        has_crlf(o->subprotocol) || (xn && (xn < 2 || memcmp(x + xn - 2, "\r\n", 2) != 0)))
        return MW_EINVAL;
    outbuf_t b = {out, cap, 0, cap == 0};
    put(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", path, host, key);
    if (o->origin) put(&b, "Origin: %s\r\n", o->origin);
    if (o->subprotocol && o->subprotocol[0]) put(&b, "Sec-WebSocket-Protocol: %s\r\n", o->subprotocol);
    if (xn) put(&b, "%s", x);
    put(&b, "\r\n");
    return b.over ? MW_ETOOBIG : (ssize_t)b.n;
}

/* ---- server side ------------------------------------------------------------------- */

const char *mw__ws_status_text(int status) {
    switch (status) {
    case 101: return "Switching Protocols";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 414: return "URI Too Long";
    case 426: return "Upgrade Required";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    default: return "Error";
    }
}

/* "GET /path HTTP/1.1": single spaces, origin-form target. */
static bool parse_request_line(mw__ws_str_t l, mw__ws_req_t *r) {
    const char *sp1 = memchr(l.p, ' ', l.n);
    if (!sp1 || sp1 == l.p) return false;
    const char *rest = sp1 + 1, *end = l.p + l.n;
    const char *sp2 = memchr(rest, ' ', (size_t)(end - rest));
    if (!sp2 || sp2 == rest) return false;
    r->method = str_of(l.p, (size_t)(sp1 - l.p));
    r->target = str_of(rest, (size_t)(sp2 - rest));
    r->version = str_of(sp2 + 1, (size_t)(end - sp2 - 1));
    return true;
}

/* HTTP/1.1 or a later 1.x. */
static bool version_ok(mw__ws_str_t v) {
    return v.n == 8 && memcmp(v.p, "HTTP/1.", 7) == 0 && v.p[7] >= '1' && v.p[7] <= '9';
}

static bool path_matches(mw__ws_str_t target, const char *expect) {
    const char *q = memchr(target.p, '?', target.n);
    size_t n = q ? (size_t)(q - target.p) : target.n;
    return strlen(expect) == n && memcmp(target.p, expect, n) == 0;
}

static int reject(mw__ws_req_t *r, int status, const char *why) {
    r->why = why;
    return status;
}

typedef struct req_flags {
    int hosts, keys, versions;
    bool upgrade, connection;
} req_flags_t;

/* One request header; false if it makes the request malformed. */
static bool request_header(mw__ws_str_t name, mw__ws_str_t v, const char *accept_proto, mw__ws_req_t *r,
                           req_flags_t *f) {
    if (eq_nocase(name, "Host")) {
        r->host = v;
        return ++f->hosts == 1;
    }
    if (eq_nocase(name, "Upgrade")) f->upgrade |= has_token(v, "websocket");
    else if (eq_nocase(name, "Connection")) f->connection |= has_token(v, "upgrade");
    else if (eq_nocase(name, "Sec-WebSocket-Key")) {
        r->key = v;
        return ++f->keys == 1;
    } else if (eq_nocase(name, "Sec-WebSocket-Version")) {
        r->version = v;
        f->versions++;
    } else if (eq_nocase(name, "Origin")) r->origin = v;
    else if (eq_nocase(name, "Sec-WebSocket-Protocol") && accept_proto && !r->protocol.n &&
             each_token(v, tok_eq_exact, accept_proto))
        r->protocol = str_of(accept_proto, strlen(accept_proto));
    return true;
}

int mw__ws_request_parse(const char *head, size_t len, const char *expect_path, const char *accept_proto,
                         mw__ws_req_t *r) {
    memset(r, 0, sizeof *r);
    const char *p = head, *end = head + len;
    mw__ws_str_t line, name, value, http_version;
    if (!next_line(&p, end, &line) || !parse_request_line(line, r))
        return reject(r, 400, "malformed request line");
    http_version = r->version;
    r->version = str_of(NULL, 0);
    req_flags_t f = {0};
    while (next_line(&p, end, &line) && line.n) {
        if (is_ows(line.p[0]) || !split_header(line, &name, &value))
            return reject(r, 400, "malformed header line");
        if (!request_header(name, value, accept_proto, r, &f))
            return reject(r, 400, "duplicate Host or Sec-WebSocket-Key");
    }
    if (!version_ok(http_version)) return reject(r, 400, "not HTTP/1.1");
    if (!eq_exact(r->method, "GET")) return reject(r, 405, "method is not GET");
    if (r->target.p[0] != '/') return reject(r, 400, "request target is not a path");
    if (expect_path && !path_matches(r->target, expect_path)) return reject(r, 404, "no WebSocket at this path");
    if (!f.hosts) return reject(r, 400, "no Host header");
    if (!f.upgrade) return reject(r, 400, "no Upgrade: websocket");
    if (!f.connection) return reject(r, 400, "no Connection: Upgrade");
    if (f.versions != 1 || !eq_exact(r->version, "13"))
        return reject(r, 426, "Sec-WebSocket-Version is not 13");
    if (!f.keys || !mw__ws_key_valid(r->key.p, r->key.n))
        return reject(r, 400, "Sec-WebSocket-Key missing or not 16 bytes of base64");
    return 101;
}

ssize_t mw__ws_response_build(char *out, size_t cap, int status, mw__ws_str_t key, mw__ws_str_t protocol) {
    outbuf_t b = {out, cap, 0, cap == 0};
    if (status == 101) {
        char acc[29];
        mw__ws_accept_key(key.p, key.n, acc);
        put(&b, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Accept: %s\r\n", acc);
        if (protocol.n) put(&b, "Sec-WebSocket-Protocol: %.*s\r\n", (int)protocol.n, protocol.p);
        put(&b, "\r\n");
    } else {
        put(&b, "HTTP/1.1 %d %s\r\n", status, mw__ws_status_text(status));
        if (status == 426) put(&b, "Sec-WebSocket-Version: 13\r\n");
        if (status == 405) put(&b, "Allow: GET\r\n");
        put(&b, "Connection: close\r\nContent-Length: 0\r\n\r\n");
    }
    return b.over ? MW_ETOOBIG : (ssize_t)b.n;
}

/* ---- client side: the response --------------------------------------------------- */

static int bad(mw__ws_resp_t *r, const char *why) {
    r->why = why;
    return MW_EPROTO;
}

/* "HTTP/1.1 101 Switching Protocols" (the reason may be empty). */
static bool parse_status_line(mw__ws_str_t l, mw__ws_resp_t *r) {
    if (l.n < 12 || memcmp(l.p, "HTTP/1.", 7) != 0 || l.p[8] != ' ') return false;
    int st = 0;
    for (int i = 9; i < 12; i++) {
        if (l.p[i] < '0' || l.p[i] > '9') return false;
        st = st * 10 + (l.p[i] - '0');
    }
    if (l.n > 12 && l.p[12] != ' ') return false;
    r->status = st;
    r->reason = l.n > 13 ? str_of(l.p + 13, l.n - 13) : str_of(l.p + l.n, 0);
    return true;
}

int mw__ws_response_parse(const char *head, size_t len, const char *accept, const char *offered,
                          mw__ws_resp_t *r) {
    memset(r, 0, sizeof *r);
    const char *p = head, *end = head + len;
    mw__ws_str_t line, name, v;
    if (!next_line(&p, end, &line) || !parse_status_line(line, r)) return bad(r, "malformed status line");
    if (r->status != 101) return bad(r, "server did not switch protocols");
    bool upgrade = false, connection = false;
    int accepts = 0, protos = 0;
    while (next_line(&p, end, &line) && line.n) {
        if (is_ows(line.p[0]) || !split_header(line, &name, &v)) return bad(r, "malformed header line");
        if (eq_nocase(name, "Upgrade")) upgrade |= has_token(v, "websocket");
        else if (eq_nocase(name, "Connection")) connection |= has_token(v, "upgrade");
        else if (eq_nocase(name, "Sec-WebSocket-Accept")) {
            if (++accepts > 1 || (accept && !eq_exact(v, accept))) return bad(r, "wrong Sec-WebSocket-Accept");
        } else if (eq_nocase(name, "Sec-WebSocket-Protocol")) {
            if (++protos > 1 || !offered_has(offered, v)) return bad(r, "server chose a subprotocol we did not offer");
            r->protocol = v;
        } else if (eq_nocase(name, "Sec-WebSocket-Extensions") && v.n) {
            return bad(r, "server chose an extension we did not offer");
        }
    }
    if (!upgrade) return bad(r, "no Upgrade: websocket in the response");
    if (!connection) return bad(r, "no Connection: Upgrade in the response");
    if (!accepts && accept) return bad(r, "no Sec-WebSocket-Accept in the response");
    return 0;
}
