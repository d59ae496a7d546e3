/* test_transport.c - what is particular to each transport, with a Svc and
 * Clts end to end (the echo over every transport x mode x serdes x backend
 * is tests/test_matrix.c, the shared body tests/util/e2e.c):
 *
 *   - over WebSocket one msgwire message is one WebSocket message: a raw
 *     client of our own (handshake and masked frames written here) sees each
 *     echo as exactly one frame, text for the text serdes and binary for
 *     fixed, holding the encoded message and nothing else;
 *   - bad peers of a tls:// Svc (plaintext, a client that does not trust the
 *     server's CA, a client that never says anything) and of a ws:// Svc
 *     (plain HTTP, an oversized message, invalid UTF-8) close only their own
 *     connection, with a specific reason and text, while a good client on
 *     the same Svc keeps working;
 *   - a Clt verifying the wrong host name fails with MW_ETLS naming it;
 *   - a Svc bound to a WebSocket path refuses other paths, and negotiates
 *     the subprotocol;
 *   - a spin or blocking Svc reads on what TLS holds after the socket is
 *     drained (OpenSSL reads ahead: a burst of records, one socket read).
 *
 * The certificates are the shared set (tests/util/certs.c): a CA, a server
 * certificate for localhost and 127.0.0.1 signed by it, and a second CA
 * nobody trusts. Nothing sleeps: every wait is a poll bounded by a deadline.
 */
#include "mw_test.h"
#include "svc_harness.h"
#include "test_proto.h"

#include "mw_clock.h"
#include "mw_clt.h"
#include "mw_svc.h"
#include "clock_impl.h"
#include "clt_impl.h"
#include "transport_impl.h"
#include "ws_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WAIT_MS 5000                    /* bound of every condition wait */
#define IO_NS (5 * MW_NS_PER_S)         /* bound of a blocking call or a raw read */
#define WHY_CAP 320
#define BAD_MAX_MSG 1024                /* max_msg of the ws:// Svc for bad peers */

/* ---- certificates ------------------------------------------------------------ */

/* The shared set (tests/util/certs.c): ca.pem, srv.pem/srv.key, other.pem. */
static const char *cert(const char *name) { return mw_test_cert(name); }

/* ---- schemes ------------------------------------------------------------------- */

typedef enum scheme { TCP, TLS, WS, WSS, NSCHEMES } scheme_t;
static const char *const scheme_names[NSCHEMES] = {"tcp", "tls", "ws", "wss"};
static bool is_tls(scheme_t s) { return s == TLS || s == WSS; }
static bool is_ws(scheme_t s) { return s == WS || s == WSS; }

/* "<scheme>://127.0.0.1:<port><path>" (the path only for ws/wss). */
static void make_url(char *url, size_t cap, scheme_t s, int port, const char *path) {
    snprintf(url, cap, "%s://127.0.0.1:%d%s", scheme_names[s], port, is_ws(s) ? path : "");
}

/* ---- checks ------------------------------------------------------------------- */

static void assert_has(const char *text, const char *part) {
    if (!strstr(text, part)) fail_msg("\"%s\" does not mention \"%s\"", text, part);
}

/* ---- the echo Svc, any mode, recording accepts and closes -----------------------
 * The fixture of tests/util/svc_harness.h: svh_echo answers every message
 * (a spin/blocking Svc gets the fixture's thread, which f->pause parks). */

/* The Svc counts an echo after its send_to returns, so the peer may hold
 * the echo a moment before the count moves: wait for it. */
typedef struct echoed_cond { svh_t *h; long n; } echoed_cond_t;
static bool echoed_reached(void *ud) {
    echoed_cond_t *c = ud;
    return atomic_load(&c->h->echoed) >= c->n;
}
static void expect_echoed(svh_t *h, long n) {
    echoed_cond_t c = {h, n};
    mw_wait_until(echoed_reached, &c, WAIT_MS);
    assert_int_equal(atomic_load(&h->echoed), n);
}

/* Options every Svc here starts from. */
static void svc_opts(mw_svc_opts_t *o, mw_mode_t mode, const char *serdes, scheme_t sch) {
    mw_svc_opts_init(o);
    o->mode = mode;
    o->conn.serdes = serdes;
    o->sync.timeout_ns = 20 * MW_NS_PER_MS; /* blocking recv wakes up to check the stop flag */
    o->event.workers = 1;
    if (is_tls(sch)) {
        o->tr.tls.cert_file = cert("srv.pem");
        o->tr.tls.key_file = cert("srv.key");
    }
}

/* Listens on scheme://127.0.0.1:0<path> with o (callbacks replaced). */
static void h_start(svh_t *h, scheme_t sch, const char *path, mw_svc_opts_t *o) {
    h->mode = o->mode;
    h->path = path;
    svh_svc_hooks(h, o);
    h->on_msg = svh_echo;
    svh_start(h, scheme_names[sch], 0, o);
}

static int h_nclosed(svh_t *h) { return atomic_load(&h->nclosed); }

/* Checks close event k: not the good connection, the reason, the text. */
static void expect_close(svh_t *h, int k, mw_conn_id_t good, int reason, const char *part) {
    svh_close_t e = svh_wait_close_n(h, k);
    if (e.reason != reason)
        fail_msg("close #%d: reason %s (%s), expected %s", k, mw_errname(e.reason), e.text, mw_errname(reason));
    assert_true(e.id != good);
    assert_has(e.text, part);
}

/* ---- Clts ---------------------------------------------------------------------- */

static void clt_opts(mw_clt_opts_t *o, mw_mode_t mode, const char *serdes, scheme_t sch) {
    mw_clt_opts_init(o);
    o->mode = mode;
    o->conn.serdes = serdes;
    o->sync.timeout_ns = IO_NS; /* blocking: nothing waits forever */
    o->connect_timeout_ns = IO_NS;
    if (is_tls(sch)) o->tr.tls.ca_file = cert("ca.pem"); /* verification stays on */
}

static mw_clt_t *clt_connect(const char *url, const mw_clt_opts_t *o) {
    mw_clt_t *c = NULL;
    mw_err_t err = {0};
    int r = mw_clt_connect(&c, url, &test_protocol, o, &err);
    if (r != 0) fail_msg("clt connect %s: %s: %s", url, mw_errname(r), mw_err_text(&err));
    return c;
}

/* A spin Clt sends message i and checks its echo. */
static void echo_once(mw_clt_t *c, uint64_t i, mw_failure_t *f) {
    test_msg_t m;
    const mw_schema_t *s = test_make_msg(i, &m);
    int r = mw_clt_send_busywait_timeout(c, s, &m, IO_NS);
    if (r != 0) fail_msg("send msg %" PRIu64 ": %s: %s", i, mw_errname(r), mw_clt_last_error(c));
    r = mw_clt_recv_busywait_timeout(c, &s, &m, sizeof m, IO_NS);
    if (r != 0) fail_msg("echo of msg %" PRIu64 ": %s: %s", i, mw_errname(r), mw_clt_last_error(c));
    char why[WHY_CAP];
    if (!test_check_echo(i, s, &m, why, sizeof why)) fail_msg("%s", why);
    mw_assert_no_failure(f);
}

/* ---- raw sockets: our own peers ---------------------------------------------------- */


/* One read within the deadline: > 0 bytes, 0 end of stream, -1 reset. */
static ssize_t raw_recv(int fd, void *p, size_t cap, uint64_t dl) {
    for (;;) {
        int64_t left = mw__deadline_left(NULL, dl);
        if (left == 0) fail_msg("raw read: nothing within %lld ms", (long long)(IO_NS / MW_NS_PER_MS));
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int r = poll(&pf, 1, (int)(left / MW_NS_PER_MS) + 1);
        if (r < 0 && errno != EINTR) fail_msg("poll: %s", strerror(errno));
        if (r <= 0) continue;
        ssize_t n = recv(fd, p, cap, 0);
        if (n >= 0) return n;
        if (errno == EINTR || errno == EAGAIN) continue;
        if (errno == ECONNRESET) return -1;
        fail_msg("recv: %s", strerror(errno));
    }
}

/* Reads until the peer ends the connection (EOF or reset); the bytes that
 * came before go to buf (NUL-terminated, truncated at cap). */
static size_t raw_read_to_end(int fd, char *buf, size_t cap) {
    uint64_t dl = mw__deadline_in(NULL, IO_NS);
    size_t len = 0;
    char tmp[4096];
    ssize_t n;
    while ((n = raw_recv(fd, tmp, sizeof tmp, dl)) > 0) {
        size_t k = (size_t)n < cap - 1 - len ? (size_t)n : cap - 1 - len;
        memcpy(buf + len, tmp, k);
        len += k;
    }
    buf[len] = '\0';
    return len;
}

/* A WebSocket client written here, independent of the library's. */
typedef struct raw_ws {
    int fd;
    uint8_t buf[16384];
    size_t len;
    uint32_t mask_seed;
} raw_ws_t;

/* More bytes into buf; false at the end of the stream. */
static bool rw_fill(raw_ws_t *w, uint64_t dl) {
    assert_true(w->len < sizeof w->buf);
    ssize_t n = raw_recv(w->fd, w->buf + w->len, sizeof w->buf - w->len, dl);
    if (n <= 0) return false;
    w->len += (size_t)n;
    return true;
}

static void rw_consume(raw_ws_t *w, size_t n) {
    memmove(w->buf, w->buf + n, w->len - n);
    w->len -= n;
}

/* RFC 6455 1.3's example key and its accept value. */
#define RAW_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define RAW_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

/* Connects and upgrades; bytes after the 101 head stay in buf. */
static void rw_open(raw_ws_t *w, int port, const char *path) {
    memset(w, 0, sizeof *w);
    w->fd = mw_test_raw_connect(port);
    w->mask_seed = 0x9E3779B9u;
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: " RAW_KEY "\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n", path, port);
    mw_test_raw_write(w->fd, req, (size_t)n);
    uint64_t dl = mw__deadline_in(NULL, IO_NS);
    char *end;
    for (;;) {
        w->buf[w->len] = '\0'; /* len < sizeof buf - 1 is kept below */
        if ((end = strstr((char *)w->buf, "\r\n\r\n"))) break;
        assert_true(w->len < 4096);
        if (!rw_fill(w, dl)) fail_msg("ws handshake: closed after \"%s\"", (char *)w->buf);
    }
    size_t head = (size_t)(end + 4 - (char *)w->buf);
    char h[4096];
    memcpy(h, w->buf, head);
    h[head] = '\0';
    if (strncmp(h, "HTTP/1.1 101 ", 13) != 0) fail_msg("ws handshake answered \"%s\"", h);
    assert_has(h, "Sec-WebSocket-Accept: " RAW_ACCEPT "\r\n");
    rw_consume(w, head);
}

/* Sends one masked frame (fin set) in one write. */
static void rw_send(raw_ws_t *w, int op, const void *payload, size_t n) {
    uint8_t *f = malloc(14 + n);
    assert_non_null(f);
    size_t k = 0;
    f[k++] = (uint8_t)(0x80 | op);
    if (n < 126) {
        f[k++] = (uint8_t)(0x80 | n);
    } else if (n <= 0xFFFF) {
        f[k++] = 0x80 | 126;
        f[k++] = (uint8_t)(n >> 8), f[k++] = (uint8_t)n;
    } else {
        f[k++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) f[k++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    w->mask_seed = w->mask_seed * 1664525u + 1013904223u;
    uint8_t mask[4] = {(uint8_t)(w->mask_seed >> 24), (uint8_t)(w->mask_seed >> 16),
                       (uint8_t)(w->mask_seed >> 8), (uint8_t)w->mask_seed};
    memcpy(f + k, mask, 4);
    k += 4;
    for (size_t i = 0; i < n; i++) f[k + i] = ((const uint8_t *)payload)[i] ^ mask[i & 3];
    mw_test_raw_write(w->fd, f, k + n);
    free(f);
}

typedef struct raw_frame {
    bool fin;
    int op;
    size_t len;
    uint8_t data[4096];
} raw_frame_t;

/* Reads one whole frame from the server (never masked). False at the end
 * of the stream. */
static bool rw_frame(raw_ws_t *w, raw_frame_t *fr) {
    uint64_t dl = mw__deadline_in(NULL, IO_NS);
    for (;;) {
        if (w->len >= 2) {
            const uint8_t *p = w->buf;
            if (p[1] & 0x80) fail_msg("the server masked a frame");
            if (p[0] & 0x70) fail_msg("reserved bits set: 0x%02x", p[0]);
            size_t hl = 2;
            uint64_t n = p[1] & 0x7F;
            if (n == 126) hl = 4;
            if (n == 127) hl = 10;
            if (w->len >= hl) {
                if (n == 126) n = (uint64_t)p[2] << 8 | p[3];
                if (n == 127) {
                    n = 0;
                    for (int i = 0; i < 8; i++) n = n << 8 | p[2 + i];
                }
                if (n > sizeof fr->data) fail_msg("a frame of %" PRIu64 " bytes", n);
                if (w->len >= hl + n) {
                    fr->fin = (p[0] & 0x80) != 0;
                    fr->op = p[0] & 0x0F;
                    fr->len = (size_t)n;
                    memcpy(fr->data, p + hl, (size_t)n);
                    rw_consume(w, hl + (size_t)n);
                    return true;
                }
            }
        }
        if (!rw_fill(w, dl)) return false;
    }
}

/* The next frame is a close with this code; then the server ends the TCP
 * connection. */
static void rw_expect_close(raw_ws_t *w, int code) {
    raw_frame_t fr;
    if (!rw_frame(w, &fr)) fail_msg("connection ended without a close frame (expected %d)", code);
    if (fr.op != 0x8) fail_msg("frame opcode %d, expected a close (%d)", fr.op, code);
    assert_true(fr.fin);
    assert_true(fr.len >= 2);
    assert_int_equal(fr.data[0] << 8 | fr.data[1], code);
    char rest[64];
    assert_int_equal(w->len, 0);
    assert_int_equal(raw_read_to_end(w->fd, rest, sizeof rest), 0);
}

/* A proper goodbye: our close 1000, the echo of it, the end. */
static void rw_close(raw_ws_t *w) {
    const uint8_t bye[2] = {0x03, 0xE8};
    rw_send(w, 0x8, bye, 2);
    rw_expect_close(w, 1000);
    close(w->fd);
    w->fd = -1;
}

/* ---- fixtures for the single tests ------------------------------------------------------ */

typedef struct peers {
    svh_t *h; /* the fixture (tests/util/svc_harness.h); this is its ud */
    mw_clt_t *good, *other;
    int fds[4];
    raw_ws_t w;
    raw_frame_t fr;
} peers_t;

static int peers_setup(void **state) {
    peers_t *p = svh_setup_ud(state, sizeof *p);
    if (!p) return -1;
    for (int i = 0; i < 4; i++) p->fds[i] = -1;
    p->h = *state;
    return 0;
}

static int peers_teardown(void **state) {
    peers_t *p = svh_ud(state);
    for (int i = 0; i < 4; i++)
        if (p->fds[i] >= 0) close(p->fds[i]);
    mw_clt_t *good = p->good, *other = p->other;
    svh_teardown(state); /* the Svc goes first, then its clients */
    mw_clt_free(good);
    mw_clt_free(other);
    return 0;
}

/* ---- over WebSocket, one message is one frame ----------------------------------------- */

/* Encodes message i in the serdes, as it travels in a WebSocket message. */
static size_t encode(const char *serdes, uint64_t i, uint8_t *out, size_t cap) {
    mw_serdes_t sd;
    assert_int_equal(mw_serdes_init(&sd, serdes, 0), 0);
    test_msg_t m;
    const mw_schema_t *s = test_make_msg(i, &m);
    ssize_t n = mw_serdes_encode(&sd, s, &m, out, cap);
    if (n <= 0) fail_msg("encode %s: %s", serdes, mw_serdes_last_error(&sd));
    mw_serdes_fini(&sd);
    return (size_t)n;
}

/* Sends each payload as one frame of type op, and expects each echo as
 * exactly one frame of that type with the same bytes, in order. */
static void frames_echo_one_to_one(peers_t *p, const char *serdes, int op) {
    svh_t *h = p->h;
    mw_svc_opts_t so;
    svc_opts(&so, MW_MODE_SPIN, serdes, WS);
    h_start(h, WS, "/raw", &so);
    raw_ws_t *w = &p->w;
    rw_open(w, mw_svc_port(h->svc), "/raw");
    p->fds[0] = w->fd;

    uint8_t msgs[3][1024];
    size_t lens[3];
    for (uint64_t i = 0; i < 3; i++) lens[i] = encode(serdes, i + 1, msgs[i], sizeof msgs[i]);
    if (op == 0x1) {
        /* the canonical JSON of a ping, no newline: what the peer's app sees */
        const char ping[] = "{\"type\":\"ping\",\"seq\":3,\"sent_ns\":15755400384260043839}";
        assert_int_equal(lens[2], strlen(ping));
        assert_memory_equal(msgs[2], ping, lens[2]);
    }
    /* One alone, then two in one TCP segment: each stays its own frame. */
    rw_send(w, op, msgs[0], lens[0]);
    raw_frame_t *fr = &p->fr;
    for (int k = 0; k < 3; k++) {
        if (k == 1) {
            rw_send(w, op, msgs[1], lens[1]);
            rw_send(w, op, msgs[2], lens[2]);
        }
        if (!rw_frame(w, fr)) fail_msg("no echo of message %d", k);
        if (fr->op != op) fail_msg("echo %d: opcode %d, expected %d", k, fr->op, op);
        assert_true(fr->fin);
        if (fr->len != lens[k]) fail_msg("echo %d: %zu bytes, sent %zu", k, fr->len, lens[k]);
        assert_memory_equal(fr->data, msgs[k], lens[k]);
        if (op == 0x1) assert_null(memchr(fr->data, '\n', fr->len));
    }
    assert_int_equal(w->len, 0); /* nothing else came */
    rw_close(w);
    p->fds[0] = -1;
    expect_close(h, 0, MW_CONN_ID_NONE, MW_ECLOSED, "peer closed the connection (1000)");
    expect_echoed(h, 3);
    mw_assert_no_failure(&h->fail);
}

static void test_ws_text_serdes_message_is_one_text_frame_of_bare_json(void **state) {
    frames_echo_one_to_one(svh_ud(state), "text", 0x1);
}

static void test_ws_fixed_serdes_message_is_one_binary_frame(void **state) {
    frames_echo_one_to_one(svh_ud(state), "fixed", 0x2);
}

static void test_ws_msgpack_serdes_message_is_one_binary_frame(void **state) {
    frames_echo_one_to_one(svh_ud(state), "msgpack", 0x2);
}

/* ---- bad peers of a tls:// Svc ---------------------------------------------------------- */

/* Starts a Svc and connects the good spin Clt (accepted first). */
static void peers_start(peers_t *p, scheme_t sch, mw_svc_opts_t *so, const char *serdes, const char *path) {
    char url[96];
    h_start(p->h, sch, path, so);
    mw_clt_opts_t co;
    clt_opts(&co, MW_MODE_SPIN, serdes, sch);
    make_url(url, sizeof url, sch, mw_svc_port(p->h->svc), path);
    p->good = clt_connect(url, &co);
    echo_once(p->good, 0, &p->h->fail);
    assert_true(svh_accepted_id(p->h, 0) != MW_CONN_ID_NONE);
}

static bool peer_ended(void *ud) {
    int fd = *(int *)ud;
    char b[256];
    ssize_t n = recv(fd, b, sizeof b, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static void test_tls_svc_bad_peers_close_alone_and_a_good_client_keeps_working(void **state) {
    peers_t *p = svh_ud(state);
    mw_svc_opts_t so;
    svc_opts(&so, MW_MODE_EVENT, "fixed", TLS);
    so.handshake_timeout_ns = 200 * MW_NS_PER_MS;
    peers_start(p, TLS, &so, "fixed", "");
    mw_conn_id_t good = svh_accepted_id(p->h, 0);
    uint64_t i = 1;

    /* 1. A plaintext client sending a fixed frame over plain TCP. */
    mw_clt_opts_t co;
    clt_opts(&co, MW_MODE_SPIN, "fixed", TCP);
    char url[96];
    make_url(url, sizeof url, TCP, mw_svc_port(p->h->svc), "");
    p->other = clt_connect(url, &co);
    test_msg_t m;
    const mw_schema_t *s = test_make_msg(2, &m);
    assert_int_equal(mw_clt_send_busywait_timeout(p->other, s, &m, IO_NS), 0);
    expect_close(p->h, 0, good, MW_ETLS, "(is the peer speaking TLS?)");
    /* The plaintext Clt sees its connection end (closed, or garbage that is
     * not a fixed frame: a TLS alert), never an echo. */
    int r = mw_clt_recv_busywait_timeout(p->other, &s, &m, sizeof m, IO_NS);
    if (r == 0 || r == MW_ETIMEDOUT || r == MW_EAGAIN)
        fail_msg("plaintext client: recv %s, expected the connection to end", mw_errname(r));
    mw_clt_free(p->other);
    p->other = NULL;
    echo_once(p->good, i++, &p->h->fail);

    /* 2. A TLS client that does not trust the server's CA. */
    clt_opts(&co, MW_MODE_SPIN, "fixed", TLS);
    co.tr.tls.ca_file = cert("other.pem");
    make_url(url, sizeof url, TLS, mw_svc_port(p->h->svc), "");
    mw_err_t err = {0};
    r = mw_clt_connect(&p->other, url, &test_protocol, &co, &err);
    if (r != MW_ETLS) fail_msg("untrusting client: %s (%s), expected MW_ETLS", mw_errname(r), mw_err_text(&err));
    assert_null(p->other);
    assert_has(mw_err_text(&err), "certificate verify failed");
    expect_close(p->h, 1, good, MW_ETLS, "alert unknown ca");
    echo_once(p->good, i++, &p->h->fail);

    /* 3. A client that connects and says nothing: the handshake timeout. */
    uint64_t t0 = mw_now_ns();
    p->fds[0] = mw_test_raw_connect(mw_svc_port(p->h->svc));
    expect_close(p->h, 2, good, MW_ETIMEDOUT, "handshake not completed within 200 ms");
    uint64_t took = mw_now_ns() - t0;
    if (took < 150 * MW_NS_PER_MS) fail_msg("closed after %" PRIu64 " ms, before the 200 ms timeout", took / MW_NS_PER_MS);
    assert_true(mw_wait_until(peer_ended, &p->fds[0], WAIT_MS));
    echo_once(p->good, i++, &p->h->fail);

    /* Only the bad ones went; the two that sent something unacceptable
     * count as bad input, the silent one does not. */
    mw_svc_stats_t ss;
    mw_svc_stats(p->h->svc, &ss);
    assert_int_equal(ss.accepted, 4);
    assert_int_equal(ss.closed, 3);
    assert_int_equal(ss.closed_bad_input, 2);
    assert_int_equal(mw_svc_conn_count(p->h->svc), 1);
    assert_int_equal(h_nclosed(p->h), 3);
    assert_true(mw_clt_is_open(p->good));
    echo_once(p->good, i++, &p->h->fail);
}

/* ---- bad peers of a ws:// Svc ----------------------------------------------------------- */

static void test_ws_svc_bad_peers_close_alone_and_a_good_client_keeps_working(void **state) {
    peers_t *p = svh_ud(state);
    mw_svc_opts_t so;
    svc_opts(&so, MW_MODE_BLOCKING, "text", WS);
    so.conn.max_msg = BAD_MAX_MSG;
    peers_start(p, WS, &so, "text", "/feed");
    mw_conn_id_t good = svh_accepted_id(p->h, 0);
    uint64_t i = 1;

    /* 1. Plain HTTP, no upgrade: an HTTP 4xx, then the end. */
    p->fds[0] = mw_test_raw_connect(mw_svc_port(p->h->svc));
    const char get[] = "GET /feed HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n";
    mw_test_raw_write(p->fds[0], get, sizeof get - 1);
    char reply[1024];
    raw_read_to_end(p->fds[0], reply, sizeof reply);
    if (strncmp(reply, "HTTP/1.1 4", 10) != 0) fail_msg("plain GET answered \"%s\"", reply);
    assert_has(reply, "HTTP/1.1 400 Bad Request\r\n");
    assert_has(reply, "Connection: close\r\n");
    expect_close(p->h, 0, good, MW_EPROTO, "answered 400 Bad Request: no Upgrade: websocket");
    echo_once(p->good, i++, &p->h->fail);

    /* 2. A message over max_msg: close 1009. */
    raw_ws_t *w = &p->w;
    rw_open(w, mw_svc_port(p->h->svc), "/feed");
    p->fds[1] = w->fd;
    char big[BAD_MAX_MSG + 1];
    memset(big, 'x', sizeof big);
    rw_send(w, 0x1, big, sizeof big);
    rw_expect_close(w, 1009);
    expect_close(p->h, 1, good, MW_ETOOBIG, "over max_msg 1024");
    echo_once(p->good, i++, &p->h->fail);

    /* 3. Invalid UTF-8 in a text frame: close 1007. */
    rw_open(w, mw_svc_port(p->h->svc), "/feed");
    p->fds[2] = w->fd;
    const char bad[] = "{\"type\":\"ping\",\"seq\":\xc3\x28,\"sent_ns\":1}";
    rw_send(w, 0x1, bad, sizeof bad - 1);
    rw_expect_close(w, 1007);
    expect_close(p->h, 2, good, MW_EUTF8, "not valid UTF-8");
    echo_once(p->good, i++, &p->h->fail);

    /* 4. Valid UTF-8 that is no message of the protocol: the Svc closes with
     * 1007 (data inconsistent with the message type), not 1000. */
    rw_open(w, mw_svc_port(p->h->svc), "/feed");
    p->fds[3] = w->fd;
    const char nope[] = "{\"type\":\"no_such_message\"}";
    rw_send(w, 0x1, nope, sizeof nope - 1);
    rw_expect_close(w, 1007);
    expect_close(p->h, 3, good, MW_ETAG, "no_such_message");
    echo_once(p->good, i++, &p->h->fail);

    mw_svc_stats_t ss;
    mw_svc_stats(p->h->svc, &ss);
    assert_int_equal(ss.accepted, 5);
    assert_int_equal(ss.closed_bad_input, 4);
    assert_int_equal(mw_svc_conn_count(p->h->svc), 1);
    assert_int_equal(h_nclosed(p->h), 4);
    assert_true(mw_clt_is_open(p->good));
}

/* ---- host name verification --------------------------------------------------------- */

static void test_tls_clt_fails_when_the_cert_does_not_match_the_host_name(void **state) {
    peers_t *p = svh_ud(state);
    mw_svc_opts_t so;
    svc_opts(&so, MW_MODE_EVENT, "msgpack", TLS);
    peers_start(p, TLS, &so, "msgpack", ""); /* verified against 127.0.0.1: fine */
    mw_clt_opts_t co;
    clt_opts(&co, MW_MODE_SPIN, "msgpack", TLS);
    co.tr.tls.server_name = "wrong.example";
    char url[96];
    make_url(url, sizeof url, TLS, mw_svc_port(p->h->svc), "");
    mw_err_t err = {0};
    int r = mw_clt_connect(&p->other, url, &test_protocol, &co, &err);
    if (r != MW_ETLS) fail_msg("connect: %s (%s), expected MW_ETLS", mw_errname(r), mw_err_text(&err));
    assert_null(p->other);
    assert_has(mw_err_text(&err), "wrong.example");
    assert_has(mw_err_text(&err), "hostname mismatch");
    /* The Svc saw that handshake fail, and serves on. */
    expect_close(p->h, 0, svh_accepted_id(p->h, 0), MW_ETLS, "tls handshake");
    echo_once(p->good, 1, &p->h->fail);
    assert_int_equal(mw_svc_conn_count(p->h->svc), 1);
}

/* ---- WebSocket path and subprotocol ------------------------------------------------- */

static void test_ws_svc_path_is_enforced_and_subprotocol_negotiated(void **state) {
    peers_t *p = svh_ud(state);
    mw_svc_opts_t so;
    svc_opts(&so, MW_MODE_SPIN, "msgpack", WS);
    so.tr.ws.expect_path = "/feed";
    so.tr.ws.subprotocol = "msgwire.v1";
    char url[96];
    h_start(p->h, WS, "/feed", &so);
    int port = mw_svc_port(p->h->svc);

    /* Another path: refused with 404, and the Clt says so. */
    mw_clt_opts_t co;
    clt_opts(&co, MW_MODE_SPIN, "msgpack", WS);
    co.tr.ws.subprotocol = "msgwire.v1";
    make_url(url, sizeof url, WS, port, "/other");
    mw_err_t err = {0};
    int r = mw_clt_connect(&p->other, url, &test_protocol, &co, &err);
    if (r != MW_EPROTO) fail_msg("connect /other: %s (%s), expected MW_EPROTO", mw_errname(r), mw_err_text(&err));
    assert_null(p->other);
    assert_has(mw_err_text(&err), "404 Not Found");
    expect_close(p->h, 0, MW_CONN_ID_NONE, MW_EPROTO, "answered 404 Not Found: no WebSocket at this path");

    /* The right path: accepted, with the subprotocol agreed. */
    make_url(url, sizeof url, WS, port, "/feed");
    p->good = clt_connect(url, &co);
    assert_string_equal(mw__ws_subprotocol(mw__clt_conn(p->good)->stream), "msgwire.v1");
    echo_once(p->good, 0, &p->h->fail);

    /* A subprotocol the Svc does not speak is declined, not fatal. */
    co.tr.ws.subprotocol = "other.v2";
    make_url(url, sizeof url, WS, port, "/feed?x=1");
    p->other = clt_connect(url, &co);
    assert_string_equal(mw__ws_subprotocol(mw__clt_conn(p->other)->stream), "");
    echo_once(p->other, 1, &p->h->fail);
    echo_once(p->good, 2, &p->h->fail);
    assert_int_equal(mw_svc_conn_count(p->h->svc), 2);
    assert_int_equal(h_nclosed(p->h), 1);
}

/* ---- input held inside TLS --------------------------------------------------------------- */

static bool parked(void *ud) { return atomic_load(&((svh_t *)ud)->parked); }

/* A burst of small messages arrives while the Svc is not reading: one TLS
 * record each, all in the socket at once. OpenSSL reads ahead, so its first
 * read drains the socket into its own buffer: the Svc must go on reading
 * what TLS holds without waiting for the socket to be readable again. */
static void burst_is_echoed_whole(peers_t *p, scheme_t sch, mw_mode_t mode) {
    enum { BURST = 48 };
    mw_svc_opts_t so;
    svc_opts(&so, mode, "fixed", sch);
    peers_start(p, sch, &so, "fixed", "/burst");
    assert_true(mw_clt_is_open(p->good));
    atomic_store(&p->h->pause, true);
    assert_true(mw_wait_until(parked, p->h, WAIT_MS));
    for (uint64_t i = 1; i <= BURST; i++) { /* each send is written at once: one record */
        test_msg_t m;
        const mw_schema_t *s = test_make_msg(i, &m);
        int r = mw_clt_send_busywait_timeout(p->good, s, &m, IO_NS);
        if (r != 0) fail_msg("send %" PRIu64 ": %s: %s", i, mw_errname(r), mw_clt_last_error(p->good));
    }
    atomic_store(&p->h->pause, false);
    for (uint64_t i = 1; i <= BURST; i++) {
        test_msg_t m;
        const mw_schema_t *s;
        int r = mw_clt_recv_busywait_timeout(p->good, &s, &m, sizeof m, 2 * MW_NS_PER_S);
        if (r != 0)
            fail_msg("%s %s Svc: echo %" PRIu64 " of %d: %s (the Svc echoed %ld)", scheme_names[sch],
                     mw_mode_name(mode), i, BURST, mw_errname(r), atomic_load(&p->h->echoed));
        char why[WHY_CAP];
        if (!test_check_echo(i, s, &m, why, sizeof why)) fail_msg("%s", why);
    }
    expect_echoed(p->h, BURST + 1);
    assert_int_equal(h_nclosed(p->h), 0);
    mw_assert_no_failure(&p->h->fail);
}

static void test_tls_blocking_svc_reads_on_what_tls_holds_after_the_socket_is_drained(void **state) {
    burst_is_echoed_whole(svh_ud(state), TLS, MW_MODE_BLOCKING);
}

static void test_wss_blocking_svc_reads_on_what_tls_holds_after_the_socket_is_drained(void **state) {
    burst_is_echoed_whole(svh_ud(state), WSS, MW_MODE_BLOCKING);
}

static void test_tls_spin_svc_reads_on_what_tls_holds_after_the_socket_is_drained(void **state) {
    burst_is_echoed_whole(svh_ud(state), TLS, MW_MODE_SPIN);
}

/* ---- the WebSocket close code for each reason ------------------------------------------ */

/* The table of mw_transport.h and the README: the code depends on where an
 * error arose, not only on its MW_E* code. */
static void test_ws_close_code_table_by_reason_and_where(void **state) {
    (void)state;
    static const struct { int reason; mw__close_where_t where; bool away; uint16_t code; } t[] = {
        {0, MW_CLOSE_STREAM, false, 1000},
        {MW_ESTATE, MW_CLOSE_STREAM, false, 1000},
        {MW_ESTATE, MW_CLOSE_STREAM, true, 1001},
        {MW_ETIMEDOUT, MW_CLOSE_STREAM, false, 1001},
        {MW_ETYPE, MW_CLOSE_WRONG_TYPE, false, 1003},
        {MW_ETOOBIG, MW_CLOSE_STREAM, false, 1009},   /* a message over max_msg */
        {MW_ETOOBIG, MW_CLOSE_MESSAGE, false, 1007},  /* a string too long for its field */
        {MW_ETAG, MW_CLOSE_MESSAGE, false, 1007},
        {MW_ERANGE, MW_CLOSE_MESSAGE, false, 1007},
        {MW_EPROTO, MW_CLOSE_MESSAGE, false, 1007},
        {MW_EMISSING, MW_CLOSE_MESSAGE, false, 1007},
        {MW_EUTF8, MW_CLOSE_STREAM, false, 1007},
        {MW_ETRUNC, MW_CLOSE_STREAM, false, 1007},
        {MW_ENOMEM, MW_CLOSE_STREAM, false, 1011},
        {MW_ESYS, MW_CLOSE_STREAM, false, 1011},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        uint16_t got = mw__transport_ws_close_code(t[i].reason, t[i].where, t[i].away);
        if (got != t[i].code)
            fail_msg("%s where %d going_away %d: %u, want %u", mw_errname(t[i].reason), (int)t[i].where,
                     t[i].away, got, t[i].code);
    }
}

/* ---- registration ------------------------------------------------------------------ */

#define NTESTS 11

static struct CMUnitTest tests[NTESTS];

int main(void) {
    int n = 0;
#define P(fn) (struct CMUnitTest)cmocka_unit_test_setup_teardown(fn, peers_setup, peers_teardown)
    tests[n++] = P(test_ws_text_serdes_message_is_one_text_frame_of_bare_json);
    tests[n++] = P(test_ws_fixed_serdes_message_is_one_binary_frame);
    tests[n++] = P(test_ws_msgpack_serdes_message_is_one_binary_frame);
    tests[n++] = P(test_tls_svc_bad_peers_close_alone_and_a_good_client_keeps_working);
    tests[n++] = P(test_ws_svc_bad_peers_close_alone_and_a_good_client_keeps_working);
    tests[n++] = P(test_tls_clt_fails_when_the_cert_does_not_match_the_host_name);
    tests[n++] = P(test_ws_svc_path_is_enforced_and_subprotocol_negotiated);
    tests[n++] = P(test_tls_spin_svc_reads_on_what_tls_holds_after_the_socket_is_drained);
    tests[n++] = P(test_tls_blocking_svc_reads_on_what_tls_holds_after_the_socket_is_drained);
    tests[n++] = P(test_wss_blocking_svc_reads_on_what_tls_holds_after_the_socket_is_drained);
#undef P
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_ws_close_code_table_by_reason_and_where);
    if (n != NTESTS) {
        fprintf(stderr, "test_transport: %d tests registered, %d expected\n", n, NTESTS);
        return 1;
    }
    if (!mw_have_openssl_cli()) /* every test shares the certificates */
        return mw_test_skip_group("tests", tests, (size_t)n, "the openssl command (Debian package openssl)");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
