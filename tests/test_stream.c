/* test_stream.c - the stream ops every layer above relies on, over the
 * WebSocket decorator:
 *   - handshake() advances the upgrade step by step over an in-process pair;
 *   - pending() reports messages that one socket read brought in and the fd
 *     no longer shows, and MW_MSG_BUFFERED takes only whole data messages
 *     (a ping behind them waits for a plain read);
 *   - WebSocket is a message stream under mw__conn: a batch of queued
 *     messages goes out in one writev on either side, each as one frame
 *     whose payload is exactly the serdes' bytes (no length prefix), text
 *     frames for a text serdes, and a message queued before a serdes switch
 *     keeps its type.
 * Nothing sleeps: waits are polls bounded by a deadline.
 */
#include "mw_test.h"
#include "test_proto.h"

#include "mw_clock.h"
#include "mw_conn.h"
#include "mw_tcp.h"
#include "mw_ws.h"
#include "clock_impl.h"
#include "conn_impl.h"
#include "stream_impl.h"
#include "tcp_impl.h"
#include "ws_impl.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#define WAIT_NS (10 * MW_NS_PER_S)

static void check_deadline(uint64_t dl, const char *what) {
    if (mw__deadline_left(NULL, dl) == 0) fail_msg("%s: not done within %d s", what, (int)(WAIT_NS / MW_NS_PER_S));
}

/* Waits for fd readiness, or yields for streams without an fd. */
static void wait_stream(mw_stream_t *s, uint64_t dl) {
    int fd = mw__stream_fd(s), want = mw__stream_want(s);
    if (fd < 0) {
        sched_yield();
        return;
    }
    struct pollfd pf = {.fd = fd, .events = (short)((want & MW_WANT_WRITE ? POLLOUT : 0) |
                                                     (want & MW_WANT_READ || !want ? POLLIN : 0))};
    int64_t left = mw__deadline_left(NULL, dl);
    (void)poll(&pf, 1, (int)(left / MW_NS_PER_MS) + 1);
}

/* Drives both ends' handshakes with the handshake op alone. */
static void handshake_both(mw_stream_t *c, mw_stream_t *s) {
    uint64_t dl = mw__deadline_in(NULL, WAIT_NS);
    int rc = MW_EAGAIN, rs = MW_EAGAIN;
    while (rc != 1 || rs != 1) {
        check_deadline(dl, "handshake");
        if (rc != 1) rc = mw__stream_handshake(c);
        if (rs != 1) rs = mw__stream_handshake(s);
        if (rc != 1 && rc != MW_EAGAIN) fail_msg("client handshake: %s", mw_stream_last_error(c));
        if (rs != 1 && rs != MW_EAGAIN) fail_msg("server handshake: %s", mw_stream_last_error(s));
        if (rc == MW_EAGAIN) wait_stream(c, dl);
    }
}

/* ---- a counting decorator: every writev to the inner stream, and its bytes --------------- */

typedef struct tap {
    mw_stream_t base;
    int writes;      /* writev calls that offered bytes */
    uint8_t *seen;   /* what the inner stream took */
    size_t seen_len, seen_cap;
} tap_t;

static ssize_t tap_read(mw_stream_t *s, void *dst, size_t cap) { return mw__stream_read(s->inner, dst, cap); }

static ssize_t tap_writev(mw_stream_t *s, const struct iovec *iov, int n) {
    tap_t *t = (tap_t *)s;
    size_t total = 0;
    for (int i = 0; i < n; i++) total += iov[i].iov_len;
    if (total) t->writes++;
    ssize_t r = mw__stream_writev(s->inner, iov, n);
    for (int i = 0, left = (int)(r > 0 ? r : 0); i < n && left > 0; i++) {
        size_t k = iov[i].iov_len < (size_t)left ? iov[i].iov_len : (size_t)left;
        assert_true(t->seen_len + k <= t->seen_cap);
        memcpy(t->seen + t->seen_len, iov[i].iov_base, k);
        t->seen_len += k, left -= (int)k;
    }
    return r;
}

static int tap_want(const mw_stream_t *s) { return mw__stream_want(s->inner); }
static int tap_fd(const mw_stream_t *s) { return mw__stream_fd(s->inner); }
static void tap_close(mw_stream_t *s) { mw__stream_close(s->inner); }
static void tap_free(mw_stream_t *s) {
    mw_stream_free(s->inner);
    free(((tap_t *)s)->seen);
    free(s);
}

static const mw__stream_ops_t tap_ops = {
    .name = "tap", .read = tap_read, .writev = tap_writev, .want = tap_want,
    .fd = tap_fd, .close = tap_close, .free = tap_free,
};

static tap_t *tap_new(mw_stream_t *inner) {
    tap_t *t = calloc(1, sizeof *t);
    assert_non_null(t);
    t->base = (mw_stream_t){.ops = &tap_ops, .inner = inner};
    t->seen_cap = 1 << 20;
    t->seen = malloc(t->seen_cap);
    assert_non_null(t->seen);
    return t;
}

/* The frames in a tap's bytes: opcode and payload length of each. */
static int frames(const tap_t *t, bool masked, int *ops, size_t *lens, int max) {
    size_t off = 0;
    int n = 0;
    while (off < t->seen_len) {
        mw__ws_hdr_t h;
        ssize_t hl = mw__ws_hdr_decode(t->seen + off, t->seen_len - off, masked, 1u << 20, &h);
        assert_true(hl > 0);
        assert_true(h.fin);
        assert_true(n < max);
        ops[n] = h.opcode;
        lens[n++] = (size_t)h.len;
        off += (size_t)hl + (size_t)h.len;
    }
    assert_int_equal(off, t->seen_len);
    return n;
}

/* ---- handshake op over a pair ------------------------------------------------------------ */

static void test_stream_ws_handshake_op_steps_over_a_pair(void **state) {
    (void)state;
    mw_stream_t *a, *b, *c, *s;
    assert_int_equal(mw__pair_new(&a, &b, 1 << 16, 0), 0);
    assert_int_equal(mw__stream_handshake(a), 1); /* the pair has none */
    assert_int_equal(mw_ws_client_wrap(&c, a, NULL, NULL), 0);
    assert_int_equal(mw__ws_server_wrap(&s, b, NULL, NULL), 0);
    assert_true(mw__stream_is_msg(c) && mw__stream_is_msg(s));
    assert_false(mw__stream_is_msg(a));
    /* server first: no request yet */
    assert_int_equal(mw__stream_handshake(s), MW_EAGAIN);
    assert_int_equal(mw__stream_want(s), MW_WANT_READ);
    /* client: the request goes out, then it waits for the answer */
    assert_int_equal(mw__stream_handshake(c), MW_EAGAIN);
    assert_int_equal(mw__stream_want(c), MW_WANT_READ);
    /* server: reads the request, answers 101: done */
    assert_int_equal(mw__stream_handshake(s), 1);
    assert_int_equal(mw__stream_pending(s), 0);
    /* a message right behind the 101, in the same pair read as the answer */
    struct iovec m = {(void *)"hello", 5};
    assert_int_equal(mw__stream_writemsgs(s, &m, 1, MW_MSG_TEXT), 1);
    assert_int_equal(mw__stream_handshake(c), 1);
    assert_int_equal(mw__stream_handshake(c), 1); /* done stays done, no I/O */
    /* the message arrived with the 101: buffered, reported by pending() */
    assert_true(mw__stream_pending(c) > 0);
    char in[16];
    int of = 0;
    assert_int_equal(mw__stream_readmsg(c, in, sizeof in, MW_MSG_BUFFERED, &of), 5);
    assert_memory_equal(in, "hello", 5);
    assert_int_equal(of, MW_MSG_TEXT);
    assert_int_equal(mw__stream_pending(c), 0);
    assert_int_equal(mw__stream_readmsg(c, in, sizeof in, 0, &of), MW_EAGAIN);
    mw_stream_free(c);
    mw_stream_free(s);
}

/* A failed upgrade is the handshake op's result, and stays. */
static void test_stream_ws_handshake_op_reports_a_refusal(void **state) {
    (void)state;
    mw_stream_t *a, *b, *c, *s;
    assert_int_equal(mw__pair_new(&a, &b, 1 << 16, 0), 0);
    mw_ws_opts_t so;
    mw_ws_opts_init(&so);
    so.expect_path = "/only";
    assert_int_equal(mw_ws_client_wrap(&c, a, NULL, NULL), 0);
    assert_int_equal(mw__ws_server_wrap(&s, b, &so, NULL), 0);
    assert_int_equal(mw__stream_handshake(c), MW_EAGAIN);
    assert_int_equal(mw__stream_handshake(s), MW_EPROTO);
    assert_int_equal(mw__stream_handshake(s), MW_EPROTO);
    assert_int_equal(mw__stream_handshake(c), MW_EPROTO);
    assert_non_null(strstr(mw_stream_last_error(c), "404"));
    mw_stream_free(c);
    mw_stream_free(s);
}

/* ---- pending over TCP ---------------------------------------------------------------------- */

typedef struct tcp_duo {
    mw__listener_t *l;
    mw_stream_t *c, *s;
} tcp_duo_t;

static void duo_open(tcp_duo_t *d) {
    mw_err_t err = {0};
    assert_int_equal(mw__tcp_listen(&d->l, "127.0.0.1", "0", NULL, &err), 0);
    char port[8];
    snprintf(port, sizeof port, "%d", mw__listener_port(d->l));
    mw_stream_t *tc = NULL;
    assert_int_equal(mw__tcp_connect(&tc, "127.0.0.1", port, NULL, WAIT_NS, &err), 0);
    mw_stream_t *ts = mw_test_accept(d->l, 10000);
    assert_int_equal(mw_ws_client_wrap(&d->c, tc, NULL, &err), 0);
    assert_int_equal(mw__ws_server_wrap(&d->s, ts, NULL, &err), 0);
    handshake_both(d->c, d->s);
}

static void duo_close(tcp_duo_t *d) {
    mw_stream_free(d->c);
    mw_stream_free(d->s);
    mw__listener_free(d->l);
}

static bool fd_quiet(int fd) {
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    return poll(&pf, 1, 0) == 0;
}

static void wait_bytes(int fd, int n) {
    uint64_t dl = mw__deadline_in(NULL, WAIT_NS);
    for (int avail = 0; avail < n;) {
        check_deadline(dl, "bytes on the socket");
        if (ioctl(fd, FIONREAD, &avail) < 0) fail_msg("FIONREAD: %s", strerror(errno));
        if (avail < n) sched_yield();
    }
}

static void test_stream_ws_pending_reports_messages_one_read_brought(void **state) {
    (void)state;
    tcp_duo_t d;
    duo_open(&d);
    /* two text messages, a ping, a binary one: all in the client's socket
     * before it reads (server frames: 2-byte headers, no mask) */
    struct iovec t[2] = {{(void *)"one", 3}, {(void *)"two!", 4}};
    struct iovec b = {(void *)"three", 5};
    assert_int_equal(mw__stream_writemsgs(d.s, t, 2, MW_MSG_TEXT), 2);
    assert_int_equal(mw__ws_ping(d.s, "hi", 2), 0);
    assert_int_equal(mw__stream_writemsgs(d.s, &b, 1, 0), 1);
    int fd = mw__stream_fd(d.c);
    wait_bytes(fd, (2 + 3) + (2 + 4) + (2 + 2) + (2 + 5));

    char in[64];
    int of = 0;
    assert_int_equal(mw__stream_readmsg(d.c, in, sizeof in, 0, &of), 3); /* one socket read */
    assert_memory_equal(in, "one", 3);
    assert_int_equal(of, MW_MSG_TEXT);
    assert_true(fd_quiet(fd));              /* the socket shows nothing more... */
    assert_true(mw__stream_pending(d.c) > 0); /* ...but the stream holds it */
    assert_int_equal(mw__stream_readmsg(d.c, in, sizeof in, MW_MSG_BUFFERED, &of), 4);
    assert_memory_equal(in, "two!", 4);
    /* next comes the ping: a buffered read leaves it (and what follows) */
    assert_true(mw__stream_pending(d.c) > 0);
    assert_int_equal(mw__stream_readmsg(d.c, in, sizeof in, MW_MSG_BUFFERED, &of), MW_EAGAIN);
    assert_true(mw__stream_pending(d.c) > 0);
    /* a plain read answers the ping and returns the next message */
    assert_int_equal(mw__stream_readmsg(d.c, in, sizeof in, 0, &of), 5);
    assert_memory_equal(in, "three", 5);
    assert_int_equal(of, 0);
    assert_int_equal(mw__stream_pending(d.c), 0);
    assert_int_equal(mw__stream_readmsg(d.c, in, sizeof in, 0, &of), MW_EAGAIN);
    /* the pong reached the server */
    uint64_t dl = mw__deadline_in(NULL, WAIT_NS);
    while (mw__ws_pongs(d.s) == 0) {
        check_deadline(dl, "pong");
        assert_int_equal(mw__stream_readmsg(d.s, in, sizeof in, 0, &of), MW_EAGAIN);
        wait_stream(d.s, dl);
    }
    /* a message larger than the buffer stays for a larger one */
    struct iovec big = {(void *)"0123456789", 10};
    assert_int_equal(mw__stream_writemsgs(d.s, &big, 1, 0), 1);
    wait_bytes(fd, 2 + 10);
    assert_int_equal(mw__stream_readmsg(d.c, in, 4, 0, &of), MW_ETOOBIG);
    assert_true(mw__stream_pending(d.c) > 0);
    assert_int_equal(mw__stream_readmsg(d.c, in, sizeof in, MW_MSG_BUFFERED, &of), 10);
    assert_memory_equal(in, "0123456789", 10);
    duo_close(&d);
}

/* ---- the message connection over a message stream -------------------------------------- */

typedef struct conns {
    tap_t *tc, *ts; /* under the WebSocket client / server */
    mw__conn_t cc, cs;
} conns_t;

static void conns_open(conns_t *x, const char *serdes) {
    mw_stream_t *a, *b, *c, *s;
    assert_int_equal(mw__pair_new(&a, &b, 1 << 20, 0), 0);
    x->tc = tap_new(a);
    x->ts = tap_new(b);
    assert_int_equal(mw_ws_client_wrap(&c, &x->tc->base, NULL, NULL), 0);
    assert_int_equal(mw__ws_server_wrap(&s, &x->ts->base, NULL, NULL), 0);
    handshake_both(c, s);
    mw_conn_opts_t o;
    mw__conn_opts_init(&o);
    o.serdes = serdes;
    mw_err_t err = {0};
    assert_int_equal(mw__conn_init(&x->cc, c, &test_protocol, &o, &err), 0);
    assert_int_equal(mw__conn_init(&x->cs, s, &test_protocol, &o, &err), 0);
    assert_true(x->cc.msgs && x->cs.msgs);
    x->tc->writes = x->ts->writes = 0;
    x->tc->seen_len = x->ts->seen_len = 0;
}

static void conns_close(conns_t *x) {
    mw__conn_fini(&x->cc);
    mw__conn_fini(&x->cs);
}

/* Receives n pings numbered from first on c (the pair needs no waiting). */
static void recv_pings(mw__conn_t *c, int n, uint64_t first) {
    ping_t p;
    const mw_schema_t *sch;
    for (int i = 0; i < n; i++) {
        int r = mw__conn_recv(c, &sch, &p, sizeof p);
        if (r != 0) fail_msg("message %d: %s (%s)", i, mw_errname(r), mw__conn_last_error(c));
        assert_ptr_equal(sch, ping_schema());
        assert_int_equal(p.seq, first + (uint64_t)i);
    }
    assert_int_equal(mw__conn_recv(c, &sch, &p, sizeof p), MW_EAGAIN);
}

static void test_stream_ws_conn_batch_is_one_writev_each_way(void **state) {
    (void)state;
    enum { N = 50 };
    conns_t x;
    conns_open(&x, "fixed");
    mw_serdes_t sd;
    assert_int_equal(mw_serdes_init(&sd, "fixed", 0), 0);
    uint8_t enc[64];
    ping_t p0 = {.seq = 1};
    ssize_t plen = mw_serdes_encode(&sd, ping_schema(), &p0, enc, sizeof enc);
    assert_true(plen > 0);
    mw_serdes_fini(&sd);

    for (int i = 0; i < N; i++) {
        ping_t p = {.seq = 1 + (uint64_t)i, .sent_ns = 7};
        assert_int_equal(mw__conn_enqueue(&x.cc, ping_schema(), &p), 0);
    }
    assert_int_equal(x.tc->writes, 0);
    assert_int_equal(mw__conn_flush(&x.cc), 0);
    assert_int_equal(x.tc->writes, 1); /* the client masks into its buffer, writes once */
    int ops[N + 1];
    size_t lens[N + 1];
    assert_int_equal(frames(x.tc, true, ops, lens, N + 1), N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(ops[i], MW_WS_BINARY);
        assert_int_equal(lens[i], (size_t)plen); /* the serdes' bytes, no length prefix */
    }
    recv_pings(&x.cs, N, 1);
    mw_conn_stats_t st;
    mw__conn_stats(&x.cs, &st);
    assert_int_equal(st.msgs_in, N);

    /* the server gathers headers and payloads into one writev */
    for (int i = 0; i < N; i++) {
        ping_t p = {.seq = 100 + (uint64_t)i};
        assert_int_equal(mw__conn_enqueue(&x.cs, ping_schema(), &p), 0);
    }
    assert_int_equal(mw__conn_flush(&x.cs), 0);
    assert_int_equal(x.ts->writes, 1);
    assert_int_equal(frames(x.ts, false, ops, lens, N + 1), N);
    for (int i = 0; i < N; i++) assert_int_equal(lens[i], (size_t)plen);
    recv_pings(&x.cc, N, 100);

    /* More than one writemsgs call holds (128 messages): the client keeps
     * what it masked until the last call (MW_MSG_MORE), one write in all;
     * the server gathers each call's messages into one writev. */
    enum { M = 300 };
    x.tc->writes = x.ts->writes = 0;
    for (int i = 0; i < M; i++) {
        ping_t p = {.seq = 1000 + (uint64_t)i};
        assert_int_equal(mw__conn_enqueue(&x.cc, ping_schema(), &p), 0);
        assert_int_equal(mw__conn_enqueue(&x.cs, ping_schema(), &p), 0);
    }
    assert_int_equal(mw__conn_flush(&x.cc), 0);
    assert_int_equal(mw__conn_flush(&x.cs), 0);
    assert_int_equal(x.tc->writes, 1);
    assert_int_equal(x.ts->writes, (M + 127) / 128);
    recv_pings(&x.cs, M, 1000);
    recv_pings(&x.cc, M, 1000);
    assert_int_equal(mw__conn_tx_pending(&x.cc), 0);
    assert_int_equal(mw__conn_tx_pending(&x.cs), 0);
    conns_close(&x);
}

/* A text serdes sends text frames; a message keeps the type it was encoded
 * with when the serdes switches before it is flushed. */
static void test_stream_ws_conn_frame_type_follows_the_tx_serdes_per_message(void **state) {
    (void)state;
    conns_t x;
    conns_open(&x, "text");
    ping_t p = {.seq = 1};
    assert_int_equal(mw__conn_enqueue(&x.cc, ping_schema(), &p), 0);
    assert_int_equal(mw__conn_set_serdes(&x.cc, MW_DIR_TX, "fixed", MW_FRAME_AUTO), 0);
    p.seq = 2;
    assert_int_equal(mw__conn_enqueue(&x.cc, ping_schema(), &p), 0);
    assert_int_equal(mw__conn_flush(&x.cc), 0);
    int ops[4];
    size_t lens[4];
    assert_int_equal(frames(x.tc, true, ops, lens, 4), 2);
    assert_int_equal(ops[0], MW_WS_TEXT);
    assert_int_equal(ops[1], MW_WS_BINARY);
    /* the receiver switches at the same message boundary */
    const mw_schema_t *sch;
    ping_t q;
    assert_int_equal(mw__conn_recv(&x.cs, &sch, &q, sizeof q), 0);
    assert_int_equal(q.seq, 1);
    assert_int_equal(mw__conn_set_serdes(&x.cs, MW_DIR_RX, "fixed", MW_FRAME_AUTO), 0);
    assert_int_equal(mw__conn_recv(&x.cs, &sch, &q, sizeof q), 0);
    assert_int_equal(q.seq, 2);
    conns_close(&x);
}

/* A message over the connection's max_msg fails the receiver with
 * MW_ETOOBIG once the messages before it are delivered. */
static void test_stream_ws_conn_message_over_max_msg_after_the_good_ones(void **state) {
    (void)state;
    mw_stream_t *a, *b, *c, *s;
    assert_int_equal(mw__pair_new(&a, &b, 1 << 20, 0), 0);
    assert_int_equal(mw_ws_client_wrap(&c, a, NULL, NULL), 0);
    assert_int_equal(mw__ws_server_wrap(&s, b, NULL, NULL), 0);
    handshake_both(c, s);
    mw__conn_t cs;
    mw_conn_opts_t o;
    mw__conn_opts_init(&o);
    o.max_msg = 64;
    o.rx_buf = o.tx_buf = 4096;
    assert_int_equal(mw__conn_init(&cs, s, &test_protocol, &o, NULL), 0);
    ping_t p = {.seq = 5};
    uint8_t enc[64];
    mw_serdes_t sd;
    assert_int_equal(mw_serdes_init(&sd, "fixed", 0), 0);
    ssize_t n = mw_serdes_encode(&sd, ping_schema(), &p, enc, sizeof enc);
    mw_serdes_fini(&sd);
    uint8_t big[100] = {0};
    struct iovec m[2] = {{enc, (size_t)n}, {big, sizeof big}};
    assert_int_equal(mw__stream_writemsgs(c, m, 2, 0), 2);
    const mw_schema_t *sch;
    ping_t q;
    assert_int_equal(mw__conn_recv(&cs, &sch, &q, sizeof q), 0);
    assert_int_equal(q.seq, 5);
    assert_int_equal(mw__conn_recv(&cs, &sch, &q, sizeof q), MW_ETOOBIG);
    assert_non_null(strstr(mw__conn_last_error(&cs), "over max_msg 64"));
    mw__conn_fini(&cs);
    mw_stream_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_ws_handshake_op_steps_over_a_pair),
        cmocka_unit_test(test_stream_ws_handshake_op_reports_a_refusal),
        cmocka_unit_test(test_stream_ws_pending_reports_messages_one_read_brought),
        cmocka_unit_test(test_stream_ws_conn_batch_is_one_writev_each_way),
        cmocka_unit_test(test_stream_ws_conn_frame_type_follows_the_tx_serdes_per_message),
        cmocka_unit_test(test_stream_ws_conn_message_over_max_msg_after_the_good_ones),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
