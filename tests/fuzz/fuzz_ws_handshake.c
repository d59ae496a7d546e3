/* fuzz_ws_handshake.c - the HTTP/1.1 upgrade parser (ws_impl.h) in both
 * roles: the server parsing a client's request, the client parsing a
 * server's response.
 *
 * Input: one byte (head limit, expected path, subprotocols, accept key
 * check), then the bytes a peer sends. Properties: the head end is found
 * the same way at once and fed a byte at a time; a request either is
 * accepted (101) with a valid key and views inside the head, or gets one of
 * the documented statuses with a reason; the response the server builds for
 * it parses on the client side with the accept key computed from the key
 * (the two roles agree); the status answers for refusals build; a response
 * parses to 0 or MW_EPROTO with a reason. */
#include "fuzz.h"

#include <string.h>

#include "mw_err.h"
#include "ws_impl.h"

static const size_t head_max[] = {8192, 16, 64, 512};
static const char *const paths[] = {NULL, "/", "/ws", "/a/b"};
static const char *const protos[] = {NULL, "chat", "superchat", "v1.msgwire"};

static bool inside(mw__ws_str_t s, const char *head, size_t len) {
    return s.n == 0 || (s.p >= head && s.p + s.n <= head + len);
}

static void check_head_end(const uint8_t *p, size_t len, size_t max, ssize_t whole) {
    size_t scan = 0;
    ssize_t r = MW_EAGAIN;
    size_t k = 0;
    for (; k <= len && r == MW_EAGAIN; k++) r = mw__ws_head_end(p, k, max, &scan);
    if (whole > 0) FUZZ_CHECK(r == whole, "byte by byte %zd, at once %zd", r, whole);
    else if (whole == MW_ETOOBIG) FUZZ_CHECK(r == MW_ETOOBIG, "byte by byte %zd", r);
    else FUZZ_CHECK(r == MW_EAGAIN, "byte by byte %zd, at once EAGAIN", r);
}

/* The server side; when it accepts, the client side must accept its answer. */
static void check_request(const char *head, size_t len, unsigned sel) {
    const char *path = paths[sel & 3], *proto = protos[(sel >> 2) & 3];
    mw__ws_req_t q;
    int st = mw__ws_request_parse(head, len, path, proto, &q);
    char out[1024];
    if (st != 101) {
        FUZZ_CHECK(st == 400 || st == 404 || st == 405 || st == 426, "status %d", st);
        FUZZ_CHECK(q.why && q.why[0], "no reason for %d", st);
        FUZZ_CHECK(mw__ws_response_build(out, sizeof out, st, q.key, q.protocol) > 0, "build %d", st);
        return;
    }
    FUZZ_CHECK(inside(q.method, head, len) && inside(q.target, head, len) && inside(q.host, head, len) &&
                   inside(q.key, head, len) && inside(q.origin, head, len) && inside(q.version, head, len),
               "a field points outside the head");
    FUZZ_CHECK(mw__ws_key_valid(q.key.p, q.key.n), "accepted an invalid key");
    FUZZ_CHECK(q.target.n && q.target.p[0] == '/', "target");
    FUZZ_CHECK(!q.protocol.n || (proto && q.protocol.n == strlen(proto) && !memcmp(q.protocol.p, proto, q.protocol.n)),
               "chose a subprotocol it does not speak");
    ssize_t n = mw__ws_response_build(out, sizeof out, 101, q.key, q.protocol);
    FUZZ_CHECK(n > 0, "build 101: %zd", n);
    size_t scan = 0;
    FUZZ_CHECK(mw__ws_head_end((const uint8_t *)out, (size_t)n, 8192, &scan) == n, "101 head end");
    char acc[29], key[32];
    memcpy(key, q.key.p, q.key.n);
    key[q.key.n] = '\0';
    mw__ws_accept_key(key, q.key.n, acc);
    mw__ws_resp_t rs;
    int rc = mw__ws_response_parse(out, (size_t)n, acc, proto, &rs);
    FUZZ_CHECK(rc == 0 && rs.status == 101, "client refused the server's 101: %s", rs.why ? rs.why : "");
}

static void check_response(const char *head, size_t len, unsigned sel) {
    static const char key[] = "dGhlIHNhbXBsZSBub25jZQ=="; /* RFC 6455's sample */
    char acc[29];
    mw__ws_accept_key(key, sizeof key - 1, acc);
    const char *offered = (sel & 0x40) ? "chat, superchat" : NULL;
    mw__ws_resp_t rs;
    int rc = mw__ws_response_parse(head, len, (sel & 0x80) ? NULL : acc, offered, &rs);
    FUZZ_CHECK(rc == 0 || rc == MW_EPROTO, "rc %d", rc);
    if (rc != 0) {
        FUZZ_CHECK(rs.why && rs.why[0], "no reason");
        return;
    }
    FUZZ_CHECK(rs.status == 101 && inside(rs.reason, head, len) && inside(rs.protocol, head, len), "fields");
    FUZZ_CHECK(!rs.protocol.n || offered, "a subprotocol nobody offered");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_in_t in = {data, size};
    unsigned sel = fuzz_byte(&in);
    size_t max = head_max[(sel >> 4) & 3], scan = 0;
    ssize_t h = mw__ws_head_end(in.p, in.n, max, &scan);
    FUZZ_CHECK(h == MW_EAGAIN || h == MW_ETOOBIG || (h > 0 && (size_t)h <= in.n && (size_t)h <= max), "head %zd", h);
    check_head_end(in.p, in.n, max, h);
    if (h <= 0) return 0;
    /* The parsers get the head alone, as the stream hands it over. */
    char *head = malloc((size_t)h);
    FUZZ_CHECK(head, "malloc");
    memcpy(head, in.p, (size_t)h);
    check_request(head, (size_t)h, sel);
    check_response(head, (size_t)h, sel);
    free(head);
    return 0;
}
