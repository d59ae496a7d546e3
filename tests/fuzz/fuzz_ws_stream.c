/* fuzz_ws_stream.c - the WebSocket stream (ws_impl.h) over an in-process pair
 * with the fuzz input as everything the peer sends, client and server roles.
 *
 * Input: one byte (role, read chunk size of the pair, max_msg, read buffer),
 * then the peer's bytes.
 *   server: the input is the client's bytes from the start (upgrade request,
 *           then masked frames).
 *   client: the harness answers the stream's real upgrade request with a
 *           correct 101 and then sends the input (frames); or, with the
 *           replay flag, the input is the whole server side from its 101 on
 *           (the accept key is not checked, as for a replayed recording).
 * The stream is read until it fails or the peer's bytes are used up and the
 * peer has closed. What the stream writes back (101, pongs, close) is read
 * and dropped. Properties: no crash, leak or hang (every loop is bounded by
 * the input's length); a read returns at most the caller's buffer; a failure
 * is sticky and carries a text. */
#include "fuzz.h"

#include <string.h>

#include "mw_err.h"
#include "mw_stream.h"
#include "mw_ws.h"
#include "ws_impl.h"
#include "stream_impl.h"

static const size_t chunks[] = {0, 1, 2, 3, 7, 64, 0, 0};
static const uint32_t max_msgs[] = {1024, 64, 125, 65536};
static const size_t bufs[] = {4096, 5, 64, 70000};

/* Reads and drops what the stream under test sent; returns the bytes. */
static size_t drain(mw_stream_t *peer, char *keep, size_t cap, size_t *kept) {
    uint8_t tmp[512];
    size_t total = 0;
    ssize_t n;
    while ((n = mw__stream_read(peer, tmp, sizeof tmp)) > 0) {
        if (keep && *kept < cap) {
            size_t k = (size_t)n < cap - *kept ? (size_t)n : cap - *kept;
            memcpy(keep + *kept, tmp, k);
            *kept += k;
        }
        total += (size_t)n;
    }
    return total;
}

/* Plays a correct server for the client's upgrade request. */
static bool answer_request(mw_stream_t *ws, mw_stream_t *peer) {
    char req[8192];
    size_t len = 0, scan = 0;
    ssize_t h = MW_EAGAIN;
    for (int i = 0; i < 10000 && h == MW_EAGAIN; i++) {
        int r = mw__stream_handshake(ws);
        FUZZ_CHECK(r == MW_EAGAIN, "handshake before an answer: %d", r);
        drain(peer, req, sizeof req, &len);
        h = mw__ws_head_end((const uint8_t *)req, len, sizeof req, &scan);
    }
    FUZZ_CHECK(h > 0, "no upgrade request from the client: %zd", h);
    mw__ws_req_t q;
    int st = mw__ws_request_parse(req, (size_t)h, NULL, NULL, &q);
    FUZZ_CHECK(st == 101, "the client's own request is refused: %d %s", st, q.why);
    char resp[1024];
    ssize_t n = mw__ws_response_build(resp, sizeof resp, 101, q.key, q.protocol);
    FUZZ_CHECK(n > 0 && mw__stream_write(peer, resp, (size_t)n) == n, "write 101");
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_in_t in = {data, size};
    unsigned sel = fuzz_byte(&in);
    bool server = sel & 1, replay = sel & 2;
    mw_stream_t *a, *peer, *ws;
    FUZZ_CHECK(mw__pair_new(&a, &peer, in.n + 8192, chunks[(sel >> 2) & 7]) == 0, "pair");
    mw_ws_opts_t o;
    mw_ws_opts_init(&o);
    o.max_msg = max_msgs[(sel >> 5) & 3];
    o.max_header = 2048;
    if (!server && replay) o.flags |= MW_WS_REPLAY;
    if (server) o.subprotocol = "chat";
    mw_err_t err = {0};
    int rc = server ? mw__ws_server_wrap(&ws, a, &o, &err) : mw_ws_client_wrap(&ws, a, &o, &err);
    FUZZ_CHECK(rc == 0, "wrap: %s", mw_err_text(&err));
    if (!server && !replay) answer_request(ws, peer);
    if (in.n) FUZZ_CHECK(mw__stream_write(peer, in.p, in.n) == (ssize_t)in.n, "peer write");

    size_t cap = bufs[(sel >> 7) & 1 ? 1 + ((sel >> 2) % 3) : 0];
    uint8_t *buf = malloc(cap);
    FUZZ_CHECK(buf, "malloc");
    bool peer_closed = false;
    ssize_t r = 0;
    /* Each pass reads at least one byte of input, or the peer closes, or it fails. */
    for (size_t i = 0; i < in.n + 4 * (size_t)o.max_msg + 64; i++) {
        r = mw__stream_read(ws, buf, cap);
        drain(peer, NULL, 0, NULL);
        if (r > 0) {
            FUZZ_CHECK((size_t)r <= cap, "read %zd into %zu", r, cap);
            continue;
        }
        if (r != MW_EAGAIN) break;
        if (peer_closed) FUZZ_CHECK(0, "MW_EAGAIN after the peer closed");
        mw__stream_close(peer);
        peer_closed = true;
    }
    FUZZ_CHECK(r < 0 && r != MW_EAGAIN, "the stream neither ended nor failed: %zd", r);
    FUZZ_CHECK(mw__stream_read(ws, buf, cap) == r, "failure is not sticky");
    FUZZ_CHECK(mw_stream_last_error(ws)[0] || r == MW_ECLOSED, "no error text for %zd", r);
    free(buf);
    mw_stream_free(ws);
    mw_stream_free(peer);
    return 0;
}
