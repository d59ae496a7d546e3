/* test_review2.c - regression tests from the review of the one-lock, pull-path
 * Clt and receive-side changes.
 *
 * 1. A graceful close whose peer answers with a reset (it closed with our
 *    bytes unread) must not report success in on_closed: 0 promises that
 *    every accepted byte was written and the peer then closed its side.
 *    The Clt in every mode, over tcp, tls, ws and wss, and the Svc's
 *    on_closed after mw_svc_close_conn.
 * 2. Once a stream stack shares its owner's lock (mw__stream_share_lock),
 *    its tx operations must only run with that lock held. The transport's
 *    close helper (mw__transport_close, called by the driver without the
 *    lock) and the driver's linger must not write through the stack without
 *    it: a sender holding the lock may be inside the same WebSocket tx
 *    buffer / SSL object.
 * 3. A blocking Svc serving its one connection solo (blocking reads) goes
 *    back to the io once a reply queues behind the full socket, sessions
 *    or not (the io then writes as the socket drains).
 */
#include "mw_test.h"
#include "test_proto.h"

#include "drv_impl.h"
#include "mw_clock.h"
#include "mw_clt.h"
#include "mw_io.h"
#include "mw_stream.h"
#include "mw_transport.h"
#include "mw_ws.h"
#include "mw_svc.h"
#include "svc_impl.h"
#include "clock_impl.h"
#include "conn_impl.h"
#include "stream_impl.h"
#include "tcp_impl.h"
#include "transport_impl.h"
#include "ws_impl.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define WAIT_MS 10000

/* ---- 1. a reset during the linger is not a clean close ------------------------
 * The TCP stream reports a reset as MW_ECLOSED, as it does the peer's
 * orderly EOF (what every reader of a vanished peer expects); the
 * transport remembers the reset (mw__transport_peer_reset) and the
 * driver's linger asks it before it calls the end clean. A peer resets
 * here by closing its socket with SO_LINGER {1, 0} (an RST, whatever it
 * holds unread). */

typedef struct closed {
    atomic_int calls;
    atomic_int result;
    char text[MW_ERR_TEXT_MAX]; /* mw_clt_last_error / mw_svc_conn_error inside on_closed */
} closed_t;

static void on_closed(mw_clt_t *c, int result, void *ud) {
    closed_t *k = ud;
    snprintf(k->text, sizeof k->text, "%s", mw_clt_last_error(c));
    atomic_store(&k->result, result);
    atomic_fetch_add(&k->calls, 1);
}

static bool closed_called(void *ud) { return atomic_load(&((closed_t *)ud)->calls) > 0; }

/* on_closed came once and says the peer reset the connection. */
static void expect_reset(closed_t *k) {
    assert_int_equal(atomic_load(&k->calls), 1);
    int r = atomic_load(&k->result);
    if (r == 0) fail_msg("on_closed said 0 (delivered and read) after the peer reset the connection");
    if (r != MW_ECLOSED) fail_msg("on_closed said %s (%s), not MW_ECLOSED for the reset", mw_errname(r), k->text);
    if (!strstr(k->text, "reset the connection")) fail_msg("the close's text does not tell the reset: \"%s\"", k->text);
}

static int raw_listen(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 4), 0);
    socklen_t n = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &n), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void wait_readable(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, WAIT_MS), 1);
}

/* close() that sends an RST rather than a FIN */
static void reset_close(int fd) {
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close(fd);
}

static void clt_opts(mw_clt_opts_t *o, mw_mode_t mode, mw_io_t *io, closed_t *k) {
    mw_clt_opts_init(o);
    o->mode = mode;
    o->event.io = io;
    o->on_closed = on_closed;
    o->ud = k;
    o->linger_ns = 10 * MW_NS_PER_S; /* a linger that ends by the clock would be MW_ETIMEDOUT */
}

/* An event Clt's close, run on its io thread. */
typedef struct closing {
    mw_clt_t *c;
    atomic_bool ran;
} closing_t;

static void close_posted(void *ud) {
    closing_t *x = ud;
    mw_clt_close(x->c);
    atomic_store(&x->ran, true);
}

static bool close_ran(void *ud) { return atomic_load(&((closing_t *)ud)->ran); }

/* Event mode: mw_clt_close on the io thread; the linger runs there. */
static void close_event(mw_clt_t *c, mw_io_t *io) {
    closing_t x = {.c = c};
    assert_int_equal(mw_io_post(io, close_posted, &x), 0);
    assert_true(mw_wait_until(close_ran, &x, WAIT_MS));
}

/* Spin/blocking: the peer resets with our message unread before the close,
 * and the close's linger meets the reset. */
static void reset_mid_linger(mw_mode_t mode) {
    int port;
    int lfd = raw_listen(&port);
    closed_t k = {0};
    mw_clt_opts_t o;
    clt_opts(&o, mode, NULL, &k);
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    mw_clt_t *c;
    mw_err_t err = {0};
    if (mw_clt_connect(&c, url, &test_protocol, &o, &err) != 0) fail_msg("connect: %s", mw_err_text(&err));
    wait_readable(lfd);
    int sfd = accept(lfd, NULL, NULL);
    assert_true(sfd >= 0);

    ping_t m = {.seq = 1};
    assert_int_equal(mw_clt_send(c, ping_schema(), &m), 0);
    assert_int_equal(mw_clt_flush(c), 0);
    /* the peer has our message in its socket and closes without reading it:
     * the kernel answers with a reset, and the message is lost */
    wait_readable(sfd);
    reset_close(sfd);
    close(lfd);

    mw_clt_close(c); /* spin/blocking: the linger runs inside */
    expect_reset(&k);
    mw_clt_free(c);
}

static void test_review2_spin_close_reset_mid_linger_is_an_error(void **state) {
    (void)state;
    reset_mid_linger(MW_MODE_SPIN);
}

static void test_review2_blocking_close_reset_mid_linger_is_an_error(void **state) {
    (void)state;
    reset_mid_linger(MW_MODE_BLOCKING);
}

/* Event mode: the close runs first (everything written, FIN, the linger
 * waits for the peer's EOF), then the peer resets with our message unread. */
static void test_review2_event_close_reset_mid_linger_is_an_error(void **state) {
    (void)state;
    int port;
    int lfd = raw_listen(&port);
    mw_io_t *io;
    mw_err_t err = {0};
    assert_int_equal(mw_io_new(&io, NULL, &err), 0);
    assert_int_equal(mw_io_start(io, NULL), 0);
    closed_t k = {0};
    mw_clt_opts_t o;
    clt_opts(&o, MW_MODE_EVENT, io, &k);
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    mw_clt_t *c;
    if (mw_clt_connect(&c, url, &test_protocol, &o, &err) != 0) fail_msg("connect: %s", mw_err_text(&err));
    wait_readable(lfd);
    int sfd = accept(lfd, NULL, NULL);
    assert_true(sfd >= 0);
    ping_t m = {.seq = 1};
    assert_int_equal(mw_clt_send(c, ping_schema(), &m), 0);
    wait_readable(sfd);
    close_event(c, io);
    assert_int_equal(atomic_load(&k.calls), 0); /* lingering: the peer neither read nor closed */
    reset_close(sfd);
    close(lfd);
    assert_true(mw_wait_until(closed_called, &k, WAIT_MS));
    mw_io_stop(io);
    expect_reset(&k);
    mw_clt_free(c);
    mw_io_free(io);
}

/* ---- TLS and WebSocket: the reset arrives through the decorator ------------------
 * The peer is msgwire's own server stack (accept, wrap, handshake) on a
 * thread while the Clt connects; it resets by closing its socket under the
 * stack (dup2 of /dev/null over the descriptor), so no close_notify or
 * close frame goes out before the RST. */

typedef struct dpeer {
    mw__listener_t *l;
    mw__transport_t tr;
    mw_stream_t *s;
    atomic_int state; /* 0 handshaking, 1 up, < 0 failed */
    mw_err_t err;
} dpeer_t;

static void *dpeer_run(void *arg) {
    dpeer_t *p = arg;
    uint64_t dl = mw__deadline_in(NULL, (int64_t)WAIT_MS * MW_NS_PER_MS);
    mw_stream_t *tcp = NULL;
    int r;
    while ((r = mw__listener_accept(p->l, &tcp, &p->err)) == MW_EAGAIN && !mw__deadline_passed(NULL, dl)) {
        struct pollfd q = {.fd = mw__listener_fd(p->l), .events = POLLIN};
        (void)poll(&q, 1, 100);
    }
    if (r == 0) r = mw__transport_wrap(&p->tr, tcp, &p->s, &p->err);
    if (r == 0) r = mw__transport_handshake(p->s, dl, &p->err);
    atomic_store(&p->state, r == 0 ? 1 : r < 0 ? r : MW_ESTATE);
    return NULL;
}

static bool tls_scheme(const char *scheme) { return !strcmp(scheme, "tls") || !strcmp(scheme, "wss"); }

static void decorated_reset(mw_mode_t mode, const char *scheme) {
    bool tls = tls_scheme(scheme), ws = !strncmp(scheme, "ws", 2);
    if (tls) mw_test_require(mw_have_openssl_cli(), "the openssl command (Debian package openssl)");
    dpeer_t *p = calloc(1, sizeof *p);
    assert_non_null(p);
    mw_err_t err = {0};
    if (mw__tcp_listen(&p->l, "127.0.0.1", "0", NULL, &err) != 0) fail_msg("listen: %s", mw_err_text(&err));
    int port = mw__listener_port(p->l);
    char url[96];
    snprintf(url, sizeof url, "%s://127.0.0.1:%d%s", scheme, port, ws ? "/" : "");
    mw__url_t u;
    assert_int_equal(mw__url_parse(url, &u, &err), 0);
    mw_transport_opts_t to;
    mw__transport_opts_init(&to);
    if (tls) {
        to.tls.cert_file = mw_test_cert("srv.pem");
        to.tls.key_file = mw_test_cert("srv.key");
    }
    if (mw__transport_init(&p->tr, &u, true, &to, &err) != 0) fail_msg("server transport: %s", mw_err_text(&err));
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, dpeer_run, p), 0);

    mw_io_t *io = NULL;
    if (mode == MW_MODE_EVENT) {
        assert_int_equal(mw_io_new(&io, NULL, &err), 0);
        assert_int_equal(mw_io_start(io, NULL), 0);
    }
    closed_t k = {0};
    mw_clt_opts_t o;
    clt_opts(&o, mode, io, &k);
    if (tls) o.tr.tls.ca_file = mw_test_cert("ca.pem");
    mw_clt_t *c = NULL;
    int rc = mw_clt_connect(&c, url, &test_protocol, &o, &err);
    pthread_join(th, NULL);
    if (rc != 0) fail_msg("connect %s: %s", url, mw_err_text(&err));
    if (atomic_load(&p->state) != 1) fail_msg("peer: %s", mw_err_text(&p->err));

    ping_t m = {.seq = 1};
    assert_int_equal(mw_clt_send(c, ping_schema(), &m), 0);
    if (mode != MW_MODE_EVENT) assert_int_equal(mw_clt_flush(c), 0);
    int fd = mw__stream_fd(p->s);
    wait_readable(fd); /* our message, unread */
    if (mode == MW_MODE_EVENT) close_event(c, io); /* the reset comes while it lingers */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
    assert_true(nul >= 0);
    assert_int_equal(dup2(nul, fd), fd); /* the socket's last descriptor: closed, RST */
    close(nul);
    if (mode == MW_MODE_EVENT) {
        assert_true(mw_wait_until(closed_called, &k, WAIT_MS));
        mw_io_stop(io);
    } else {
        mw_clt_close(c); /* the linger meets the reset (a close_notify or close frame write may meet it first) */
    }
    expect_reset(&k);
    mw_clt_free(c);
    mw_io_free(io);
    mw_stream_free(p->s); /* (its last words go to /dev/null) */
    mw__listener_free(p->l);
    mw__transport_fini(&p->tr);
    free(p);
}

static void test_review2_spin_close_reset_mid_linger_tls(void **state) {
    (void)state;
    decorated_reset(MW_MODE_SPIN, "tls");
}
static void test_review2_event_close_reset_mid_linger_tls(void **state) {
    (void)state;
    decorated_reset(MW_MODE_EVENT, "tls");
}
static void test_review2_blocking_close_reset_mid_linger_ws(void **state) {
    (void)state;
    decorated_reset(MW_MODE_BLOCKING, "ws");
}
static void test_review2_event_close_reset_mid_linger_ws(void **state) {
    (void)state;
    decorated_reset(MW_MODE_EVENT, "ws");
}
static void test_review2_spin_close_reset_mid_linger_wss(void **state) {
    (void)state;
    decorated_reset(MW_MODE_SPIN, "wss");
}

/* ---- the Svc: mw_svc_close_conn, then the client resets (or closes) ---------------
 * on_close comes at the close (MW_ESTATE); on_closed says how the linger
 * ended, with the text in mw_svc_conn_error(id) inside it. */

typedef struct sfx {
    mw_svc_t *svc;
    bool spin; /* the test's thread polls the Svc in its waits */
    _Atomic mw_conn_id_t id;
    atomic_int accepted, closes;
    closed_t k;
    _Atomic mw_conn_id_t closed_id;
} sfx_t;

static void s_accept(mw_svc_t *s, mw_conn_id_t id, void *ud) {
    (void)s;
    sfx_t *f = ud;
    atomic_store(&f->id, id);
    atomic_fetch_add(&f->accepted, 1);
}
static void s_close(mw_svc_t *s, mw_conn_id_t id, int reason, void *ud) {
    (void)s;
    (void)id;
    (void)reason;
    atomic_fetch_add(&((sfx_t *)ud)->closes, 1);
}
static void s_closed(mw_svc_t *s, mw_conn_id_t id, int result, void *ud) {
    sfx_t *f = ud;
    snprintf(f->k.text, sizeof f->k.text, "%s", mw_svc_conn_error(s, id));
    atomic_store(&f->closed_id, id);
    atomic_store(&f->k.result, result);
    atomic_fetch_add(&f->k.calls, 1);
}

static void pump(sfx_t *f) {
    if (f->spin) (void)mw_svc_poll(f->svc, 0);
}
static bool s_accepted(void *ud) {
    pump(ud);
    return atomic_load(&((sfx_t *)ud)->accepted) > 0;
}
static bool s_closed_once(void *ud) {
    pump(ud);
    return atomic_load(&((sfx_t *)ud)->closes) > 0;
}
static bool s_closed_called(void *ud) {
    pump(ud);
    return atomic_load(&((sfx_t *)ud)->k.calls) > 0;
}

/* The client reads until the Svc's EOF (its linger has shut the write side),
 * then closes orderly. */
typedef struct eof_wait {
    sfx_t *f;
    int fd;
    bool eof;
} eof_wait_t;

static bool read_to_eof(void *ud) {
    eof_wait_t *w = ud;
    pump(w->f);
    char b[4096];
    ssize_t n;
    while ((n = recv(w->fd, b, sizeof b, MSG_DONTWAIT)) > 0) {}
    if (n == 0) w->eof = true;
    return w->eof;
}

static void svc_close_conn_case(mw_mode_t mode, bool reset) {
    sfx_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->spin = mode != MW_MODE_EVENT;
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.mode = mode;
    o.on_accept = s_accept;
    o.on_close = s_close;
    o.on_closed = s_closed;
    o.ud = f;
    o.linger_ns = 10 * MW_NS_PER_S;
    mw_err_t err = {0};
    if (mw_svc_listen(&f->svc, "tcp://127.0.0.1:0", &test_protocol, &o, &err) != 0)
        fail_msg("listen: %s", mw_err_text(&err));
    int fd = mw_test_raw_connect(mw_svc_port(f->svc));
    assert_true(mw_wait_until(s_accepted, f, WAIT_MS));
    mw_conn_id_t id = atomic_load(&f->id);
    ping_t m = {.seq = 7};
    assert_int_equal(mw_svc_send_to(f->svc, id, ping_schema(), &m), 0);
    wait_readable(fd); /* the reply, unread */
    assert_int_equal(mw_svc_close_conn(f->svc, id), 0);
    assert_true(mw_wait_until(s_closed_once, f, WAIT_MS));
    assert_int_equal(atomic_load(&f->k.calls), 0); /* lingering: the client has not closed */
    if (reset) {
        reset_close(fd);
    } else {
        eof_wait_t w = {.f = f, .fd = fd};
        assert_true(mw_wait_until(read_to_eof, &w, WAIT_MS));
        close(fd);
    }
    assert_true(mw_wait_until(s_closed_called, f, WAIT_MS));
    mw_svc_free(f->svc); /* (event mode: stops the worker) */
    assert_true(atomic_load(&f->closed_id) == id);
    if (reset) {
        expect_reset(&f->k);
    } else {
        assert_int_equal(atomic_load(&f->k.calls), 1);
        assert_int_equal(atomic_load(&f->k.result), 0);
        assert_string_equal(f->k.text, "");
    }
    free(f);
}

static void test_review2_spin_svc_close_conn_reset_mid_linger_is_an_error(void **state) {
    (void)state;
    svc_close_conn_case(MW_MODE_SPIN, true);
}
static void test_review2_event_svc_close_conn_reset_mid_linger_is_an_error(void **state) {
    (void)state;
    svc_close_conn_case(MW_MODE_EVENT, true);
}
static void test_review2_spin_svc_close_conn_orderly_close_is_0(void **state) {
    (void)state;
    svc_close_conn_case(MW_MODE_SPIN, false);
}
static void test_review2_event_svc_close_conn_orderly_close_is_0(void **state) {
    (void)state;
    svc_close_conn_case(MW_MODE_EVENT, false);
}

/* ---- 2. tx operations under the shared lock only -------------------------------- */

/* A pass-through decorator over a pair stream that counts writes made while
 * the shared lock is free (nobody holds it: the caller cannot be its owner). */
typedef struct probe {
    mw_stream_t base;
    mw__lock_t *lk;
    int unlocked_writes;
    bool want_write; /* says it holds bytes of its own (as TLS may) */
} probe_t;

static ssize_t probe_read(mw_stream_t *s, void *dst, size_t cap) { return mw__stream_read(s->inner, dst, cap); }
static ssize_t probe_writev(mw_stream_t *s, const struct iovec *iov, int n) {
    probe_t *p = (probe_t *)s;
    if (p->lk && !mw__lock_held(p->lk)) p->unlocked_writes++;
    return mw__stream_writev(s->inner, iov, n);
}
static int probe_want(const mw_stream_t *s) {
    return mw__stream_want(s->inner) | (((const probe_t *)s)->want_write ? MW_WANT_WRITE : 0);
}
static int probe_fd(const mw_stream_t *s) { return mw__stream_fd(s->inner); }
static void probe_close(mw_stream_t *s) { mw__stream_close(s->inner); }
static void probe_free(mw_stream_t *s) {
    mw_stream_free(s->inner);
    free(s);
}
static const mw__stream_ops_t probe_ops = {
    .name = "probe",
    .read = probe_read,
    .writev = probe_writev,
    .want = probe_want,
    .fd = probe_fd,
    .close = probe_close,
    .free = probe_free,
};

static void handshake_both(mw_stream_t *a, mw_stream_t *b) {
    int ra = 0, rb = 0;
    for (int i = 0; i < 1000 && (ra != 1 || rb != 1); i++) {
        if (ra != 1) ra = mw__stream_handshake(a);
        if (rb != 1) rb = mw__stream_handshake(b);
        if ((ra < 0 && ra != MW_EAGAIN) || (rb < 0 && rb != MW_EAGAIN))
            fail_msg("handshake: %s / %s", mw_errname(ra), mw_errname(rb));
    }
    assert_int_equal(ra, 1);
    assert_int_equal(rb, 1);
}

static void test_review2_transport_close_writes_only_under_the_shared_lock(void **state) {
    (void)state;
    mw_stream_t *a, *b, *c, *s;
    mw_err_t err = {0};
    assert_int_equal(mw__pair_new(&a, &b, 4096, 0), 0);
    probe_t *p = calloc(1, sizeof *p);
    assert_non_null(p);
    p->base.ops = &probe_ops;
    p->base.inner = b;
    if (mw_ws_client_wrap(&c, a, NULL, &err) != 0) fail_msg("client wrap: %s", mw_err_text(&err));
    if (mw__ws_server_wrap(&s, &p->base, NULL, &err) != 0) fail_msg("server wrap: %s", mw_err_text(&err));
    mw__lock_t lk = 0; /* the owner's lock, as a Svc slot's */
    mw__stream_share_lock(s, &lk);
    p->lk = &lk;
    handshake_both(c, s);

    /* the owner's sends (under the lock) until the peer's window is full and
     * the WebSocket stream holds bytes of its own */
    static uint8_t big[1000];
    struct iovec v = {big, sizeof big};
    int i = 0;
    mw__lock(&lk);
    for (; i < 1000 && !(mw__stream_want(s) & MW_WANT_WRITE); i++) {
        ssize_t r = mw__stream_writemsgs(s, &v, 1, 0);
        if (r < 0 && r != MW_EAGAIN) fail_msg("send: %s", mw_errname((int)r));
    }
    mw__unlock(&lk);
    assert_true(mw__stream_want(s) & MW_WANT_WRITE);
    assert_int_equal(p->unlocked_writes, 0);

    /* the driver's close of the connection, from the io thread, which does
     * not hold the owner's lock (and must not: the helpers take it) */
    mw__transport_close(s, MW_ESTATE, "bye", false);
    if (p->unlocked_writes)
        fail_msg("%d write(s) through the stack without the shared lock (a sender holding it may be writing too)",
                 p->unlocked_writes);
    mw_stream_free(c);
    mw_stream_free(s);
}

/* The driver's linger pushes out what the stream holds itself (its
 * writev with nothing), from the io thread: under the conn's lock. */
static void gone(mw__drv_t *d) { (void)d; }
static int no_post(mw__drv_t *d, void (*fn)(mw__drv_t *d)) {
    (void)d;
    (void)fn;
    return MW_ENOMEM;
}

static void test_review2_linger_writes_only_under_the_shared_lock(void **state) {
    (void)state;
    mw_io_t *io;
    mw_io_opts_t io_o;
    mw_io_opts_init(&io_o);
    io_o.backend = "direct";
    mw_err_t err = {0};
    assert_int_equal(mw_io_new(&io, &io_o, &err), 0);
    mw_stream_t *a, *b;
    assert_int_equal(mw__pair_new(&a, &b, 4096, 0), 0);
    probe_t *p = calloc(1, sizeof *p);
    assert_non_null(p);
    p->base.ops = &probe_ops;
    p->base.inner = a;
    mw__conn_t c;
    mw_conn_opts_t co;
    mw__conn_opts_init(&co);
    assert_int_equal(mw__conn_init(&c, &p->base, &test_protocol, &co, &err), 0);
    mw__lock_t lk = 0; /* the owner's lock, as the event Clt's */
    mw__conn_share_lock(&c, &lk);
    p->lk = &lk;
    mw__drv_t d;
    memset(&d, 0, sizeof d);
    mw__drv_cfg_t cfg = {.on_gone = gone, .post = no_post, .budget = -1, .linger_ns = 5 * MW_NS_PER_S};
    assert_int_equal(mw__drv_start(&d, io, &c, &cfg, NULL), 0);
    mw__drv_go(&d);
    assert_true(mw__drv_up(&d));

    p->want_write = true;
    mw__drv_close(&d, MW_ESTATE, true); /* graceful: the linger starts at once */
    for (int i = 0; i < 3; i++) mw_io_poll(io, 0);
    int unlocked = p->unlocked_writes;
    mw__drv_stop(&d);
    mw__conn_fini(&c);
    mw_stream_free(b);
    mw_io_free(io);
    if (unlocked) fail_msg("%d write(s) by the linger without the shared lock", unlocked);
}

/* ---- 3. blocking Svc, sessions: a queued reply ends solo mode ----------------- */

typedef struct solo_fx {
    char url[64], cdir[160];
    atomic_int state; /* 1 logged on and pinged, 2 main says read, 3 done reading */
    atomic_int got, want;
    atomic_int err;
} solo_fx_t;

static void *solo_client(void *arg) {
    solo_fx_t *f = arg;
    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    co.mode = MW_MODE_BLOCKING;
    co.tcp.rcvbuf = 4096;
    co.session.enabled = true;
    co.session.journal_dir = f->cdir;
    co.session.id = "R1";
    co.session.heartbeat_ns = 60 * MW_NS_PER_S;
    mw_clt_t *c;
    mw_err_t err = {0};
    if (mw_clt_connect(&c, f->url, &test_protocol, &co, &err) != 0) {
        atomic_store(&f->err, 1);
        atomic_store(&f->state, 3);
        return NULL;
    }
    atomic_store(&f->state, 1); /* (before the ping: main answers it with state 2) */
    ping_t p = {.seq = 1};
    if (mw_clt_send(c, ping_schema(), &p) != 0) atomic_store(&f->err, 2);
    uint64_t dl = mw__deadline_in(NULL, (int64_t)WAIT_MS * MW_NS_PER_MS);
    while (atomic_load(&f->state) < 2 && !mw__deadline_passed(NULL, dl)) sched_yield();
    const mw_schema_t *sch;
    test_msg_t m;
    while (atomic_load(&f->got) < atomic_load(&f->want) && !mw__deadline_passed(NULL, dl)) {
        int r = mw_clt_recv(c, &sch, &m, sizeof m);
        if (r == 0) atomic_fetch_add(&f->got, 1);
        else if (r != MW_EAGAIN && r != MW_ETIMEDOUT) break;
    }
    mw_clt_free(c);
    atomic_store(&f->state, 3);
    return NULL;
}

static void test_review2_blocking_session_reply_queued_leaves_solo(void **state) {
    (void)state;
    char dir[] = "/tmp/mw_review2_XXXXXX", sdir[64];
    assert_non_null(mkdtemp(dir));
    snprintf(sdir, sizeof sdir, "%s/svc", dir);
    solo_fx_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->cdir, sizeof f->cdir, "%s/clt", dir);
    assert_int_equal(mkdir(sdir, 0700), 0);
    assert_int_equal(mkdir(f->cdir, 0700), 0);
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.mode = MW_MODE_BLOCKING;
    o.sync.timeout_ns = MW_NS_PER_MS;
    o.tcp.sndbuf = 4096;
    o.conn.max_msg = 1024;
    o.conn.tx_buf = o.conn.rx_buf = 8192;
    o.session.enabled = true;
    o.session.journal_dir = sdir;
    mw_svc_t *s;
    mw_err_t err = {0};
    if (mw_svc_listen(&s, "tcp://127.0.0.1:0", &test_protocol, &o, &err) != 0) fail_msg("listen: %s", mw_err_text(&err));
    snprintf(f->url, sizeof f->url, "tcp://127.0.0.1:%d", mw_svc_port(s));
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, solo_client, f), 0);

    /* the logon, then the client's ping */
    mw_conn_id_t id = 0;
    const mw_schema_t *sch;
    test_msg_t m;
    uint64_t dl = mw__deadline_in(NULL, (int64_t)WAIT_MS * MW_NS_PER_MS);
    int r;
    while ((r = mw_svc_recv(s, &id, &sch, &m, sizeof m)) != 0 && atomic_load(&f->state) < 3 &&
           !mw__deadline_passed(NULL, dl)) {}
    bool solo_at_start = false, left = false;
    int sent = 0;
    if (r == 0) {
        solo_at_start = s->solo != NULL;
        /* replies until one stays queued behind the full socket */
        slot_t *sl = &s->slots[(uint32_t)id];
        for (ping_t p = {.seq = 1}; sent < 100000; p.seq++) {
            if ((r = mw_svc_send_to(s, id, ping_schema(), &p)) != 0) break;
            sent++;
            if (mw__conn_tx_pending(&sl->conn)) break;
        }
        left = s->solo == NULL;
    }
    /* let the client read what was accepted */
    atomic_store(&f->want, sent);
    atomic_store(&f->state, 2);
    while (atomic_load(&f->state) < 3 && !mw__deadline_passed(NULL, dl)) (void)mw_svc_recv(s, &id, &sch, &m, sizeof m);
    pthread_join(th, NULL);
    int cerr = atomic_load(&f->err), got = atomic_load(&f->got);
    mw_svc_free(s);
    mw_tmpdir_remove(dir);
    free(f);
    if (cerr) fail_msg("client: error %d", cerr);
    assert_true(solo_at_start);
    if (!left) fail_msg("a reply queued behind the full socket (after %d) but the Svc stayed in solo mode", sent);
    assert_int_equal(got, sent);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_review2_spin_close_reset_mid_linger_is_an_error),
        cmocka_unit_test(test_review2_blocking_close_reset_mid_linger_is_an_error),
        cmocka_unit_test(test_review2_event_close_reset_mid_linger_is_an_error),
        cmocka_unit_test(test_review2_spin_close_reset_mid_linger_tls),
        cmocka_unit_test(test_review2_event_close_reset_mid_linger_tls),
        cmocka_unit_test(test_review2_blocking_close_reset_mid_linger_ws),
        cmocka_unit_test(test_review2_event_close_reset_mid_linger_ws),
        cmocka_unit_test(test_review2_spin_close_reset_mid_linger_wss),
        cmocka_unit_test(test_review2_spin_svc_close_conn_reset_mid_linger_is_an_error),
        cmocka_unit_test(test_review2_event_svc_close_conn_reset_mid_linger_is_an_error),
        cmocka_unit_test(test_review2_spin_svc_close_conn_orderly_close_is_0),
        cmocka_unit_test(test_review2_event_svc_close_conn_orderly_close_is_0),
        cmocka_unit_test(test_review2_transport_close_writes_only_under_the_shared_lock),
        cmocka_unit_test(test_review2_linger_writes_only_under_the_shared_lock),
        cmocka_unit_test(test_review2_blocking_session_reply_queued_leaves_solo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
