/* test_clt_close.c - a Clt's close delivers what send accepted, in every
 * mode: spin and blocking Clts linger inside mw_clt_close (bounded by
 * linger_ns), an event-mode Clt lingers on its io and says when it is over
 * (on_closed). */
#include "mw_test.h"
#include "test_proto.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mw_clock.h"
#include "mw_clt.h"
#include "mw_io.h"
#include "mw_svc.h"

#define WAIT_MS 20000
#define N_MSGS 100000

/* ---- the peer: an event Svc on its own worker that counts pings in order --- */

typedef struct peer {
    mw_svc_t *svc;
    char url[96];
    atomic_uint_fast64_t next_seq; /* pings seen, each in order */
    atomic_int errors;             /* pings out of order */
    atomic_int closes;             /* connections ended */
} peer_t;

static void peer_on_msg(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg, void *ud) {
    (void)s;
    (void)id;
    peer_t *p = ud;
    if (sch != ping_schema()) return;
    const ping_t *pg = msg;
    if (pg->seq != atomic_load(&p->next_seq) || pg->sent_ns != pg->seq * 3) atomic_fetch_add(&p->errors, 1);
    atomic_fetch_add(&p->next_seq, 1);
}

static void peer_on_close(mw_svc_t *s, mw_conn_id_t id, int reason, void *ud) {
    (void)s;
    (void)id;
    (void)reason;
    atomic_fetch_add(&((peer_t *)ud)->closes, 1);
}

static bool tls_scheme(const char *scheme) { return !strcmp(scheme, "tls") || !strcmp(scheme, "wss"); }

static void peer_start(peer_t *p, const char *scheme) {
    memset(p, 0, sizeof *p);
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.mode = MW_MODE_EVENT;
    o.event.on_msg = peer_on_msg;
    o.on_close = peer_on_close;
    o.ud = p;
    const char *path = strncmp(scheme, "ws", 2) == 0 ? "/" : "";
    if (tls_scheme(scheme)) {
        o.tr.tls.cert_file = mw_test_cert("srv.pem");
        o.tr.tls.key_file = mw_test_cert("srv.key");
    }
    char url[64];
    snprintf(url, sizeof url, "%s://127.0.0.1:0%s", scheme, path);
    mw_err_t err = {0};
    int r = mw_svc_listen(&p->svc, url, &test_protocol, &o, &err);
    if (r != 0) fail_msg("svc listen: %s: %s", mw_errname(r), mw_err_text(&err));
    snprintf(p->url, sizeof p->url, "%s://127.0.0.1:%d%s", scheme, mw_svc_port(p->svc), path);
}

typedef struct wait_n { peer_t *p; uint64_t n; } wait_n_t;

static bool peer_got_all_and_closed(void *ud) {
    wait_n_t *w = ud;
    return atomic_load(&w->p->next_seq) >= w->n && atomic_load(&w->p->closes) >= 1;
}

/* ---- what on_closed saw ---------------------------------------------------- */

typedef struct closed_rec {
    atomic_int calls;
    atomic_int result;
    atomic_uint_fast64_t peer_had; /* pings the peer had counted when on_closed ran */
    peer_t *peer;
    bool free_inside;              /* mw_clt_free inside on_closed */
} closed_rec_t;

static void rec_closed(mw_clt_t *c, int result, void *ud) {
    closed_rec_t *r = ud;
    atomic_store(&r->result, result);
    if (r->peer) atomic_store(&r->peer_had, atomic_load(&r->peer->next_seq));
    atomic_fetch_add(&r->calls, 1);
    if (r->free_inside) mw_clt_free(c);
}

static void clt_opts(mw_clt_opts_t *o, mw_mode_t mode, const char *scheme, closed_rec_t *rec) {
    mw_clt_opts_init(o);
    o->mode = mode;
    o->sync.timeout_ns = 10 * MW_NS_PER_S;
    o->conn.tx_buf = 8u << 20; /* room for every ping: close, not send, must deliver them */
    o->tcp.sndbuf = 4096;      /* so that most of them are still queued at close */
    if (tls_scheme(scheme)) o->tr.tls.ca_file = mw_test_cert("ca.pem");
    o->on_closed = rec_closed;
    o->ud = rec;
}

static mw_clt_t *clt_connect(const char *url, const mw_clt_opts_t *o) {
    mw_clt_t *c = NULL;
    mw_err_t err = {0};
    int r = mw_clt_connect(&c, url, &test_protocol, o, &err);
    if (r != 0) fail_msg("connect %s: %s: %s", url, mw_errname(r), mw_err_text(&err));
    return c;
}

static void queue_pings(mw_clt_t *c, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) {
        ping_t p = {.seq = i, .sent_ns = i * 3};
        int r = mw_clt_send_more(c, ping_schema(), &p);
        if (r != 0) fail_msg("send_more %" PRIu64 ": %s: %s", i, mw_errname(r), mw_clt_last_error(c));
    }
}

/* ---- spin and blocking: close delivers every queued message ---------------- */

/* 100k pings queued with send_more and never flushed, then mw_clt_close: the
 * close writes every one (then FIN, TLS close_notify or the WebSocket close
 * frame after them) and returns once the peer closed too; the peer counts
 * them all, in order. (Before, the close dropped the queue: the peer got
 * none of them, or what one write had taken.) */
static void close_delivers(mw_mode_t mode, const char *scheme) {
    if (tls_scheme(scheme)) mw_test_require(mw_have_openssl_cli(), "the openssl command (Debian package openssl)");
    peer_t p;
    peer_start(&p, scheme);
    closed_rec_t rec = {.peer = &p};
    mw_clt_opts_t o;
    clt_opts(&o, mode, scheme, &rec);
    mw_clt_t *c = clt_connect(p.url, &o);
    queue_pings(c, N_MSGS);
    uint64_t t0 = mw_now_ns();
    mw_clt_close(c);
    uint64_t took = mw_now_ns() - t0;
    assert_int_equal(atomic_load(&rec.calls), 1); /* inside close, before it returned */
    if (atomic_load(&rec.result) != 0)
        fail_msg("close ended with %s (%s) after %" PRIu64 " ms; the peer has %" PRIu64, mw_errname(atomic_load(&rec.result)),
                 mw_clt_last_error(c), took / MW_NS_PER_MS, (uint64_t)atomic_load(&p.next_seq));
    /* the peer closed after our FIN, which followed the last ping: it had them all */
    assert_int_equal(atomic_load(&rec.peer_had), N_MSGS);
    wait_n_t w = {&p, N_MSGS};
    if (!mw_wait_until(peer_got_all_and_closed, &w, WAIT_MS))
        fail_msg("the peer got %" PRIu64 " of %d pings", (uint64_t)atomic_load(&p.next_seq), N_MSGS);
    assert_int_equal(atomic_load(&p.errors), 0);
    assert_false(mw_clt_is_open(c));
    mw_clt_close(c); /* idempotent: no second on_closed */
    assert_int_equal(atomic_load(&rec.calls), 1);
    mw_clt_free(c);
    mw_svc_free(p.svc);
}

#define CLOSE_T(mode, MODE, scheme)                                                      \
    static void test_clt_##mode##_close_delivers_100k_queued_messages_##scheme(void **state) { \
        (void)state;                                                                     \
        close_delivers(MODE, #scheme);                                                   \
    }
CLOSE_T(spin, MW_MODE_SPIN, tcp)
CLOSE_T(spin, MW_MODE_SPIN, tls)
CLOSE_T(spin, MW_MODE_SPIN, ws)
CLOSE_T(spin, MW_MODE_SPIN, wss)
CLOSE_T(blocking, MW_MODE_BLOCKING, tcp)
CLOSE_T(blocking, MW_MODE_BLOCKING, tls)
CLOSE_T(blocking, MW_MODE_BLOCKING, ws)
CLOSE_T(blocking, MW_MODE_BLOCKING, wss)

/* ---- the linger is bounded ------------------------------------------------ */

/* A peer that accepts and then never reads nor closes: the close cannot
 * deliver (the kernel buffers fill), gives up after linger_ns and says so
 * (MW_ETIMEDOUT); it returns within linger_ns plus a little. */
static int never_reading_peer(int *lfd_out, char *url, size_t cap) {
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    int small = 4096;
    assert_int_equal(setsockopt(lfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 8), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    snprintf(url, cap, "tcp://127.0.0.1:%d", ntohs(sa.sin_port));
    *lfd_out = lfd;
    return 0;
}

static void linger_bounded(mw_mode_t mode) {
    int lfd;
    char url[64];
    never_reading_peer(&lfd, url, sizeof url);
    closed_rec_t rec = {0};
    mw_clt_opts_t o;
    clt_opts(&o, mode, "tcp", &rec);
    const int64_t linger = 300 * MW_NS_PER_MS;
    o.linger_ns = linger;
    mw_clt_t *c = clt_connect(url, &o);
    int sfd = accept(lfd, NULL, NULL); /* never read */
    assert_true(sfd >= 0);
    queue_pings(c, N_MSGS); /* ~2 MB: far more than both kernel buffers hold */
    uint64_t t0 = mw_now_ns();
    mw_clt_close(c);
    int64_t took = (int64_t)(mw_now_ns() - t0);
    close(sfd);
    close(lfd);
    assert_int_equal(atomic_load(&rec.calls), 1);
    assert_int_equal(atomic_load(&rec.result), MW_ETIMEDOUT);
    if (took < linger - 5 * MW_NS_PER_MS || took > linger + 2 * MW_NS_PER_S)
        fail_msg("close took %" PRId64 " ms with linger_ns %" PRId64 " ms", took / MW_NS_PER_MS, linger / MW_NS_PER_MS);
    mw_clt_free(c);
}

static void test_clt_spin_close_linger_is_bounded_when_the_peer_never_reads(void **state) {
    (void)state;
    linger_bounded(MW_MODE_SPIN);
}
static void test_clt_blocking_close_linger_is_bounded_when_the_peer_never_reads(void **state) {
    (void)state;
    linger_bounded(MW_MODE_BLOCKING);
}

/* mw_clt_free never lingers (close is the verb that does): against the
 * same peer and a long linger_ns it returns at once, with no on_closed. */
static void test_clt_blocking_free_without_close_never_lingers(void **state) {
    (void)state;
    int lfd;
    char url[64];
    never_reading_peer(&lfd, url, sizeof url);
    closed_rec_t rec = {0};
    mw_clt_opts_t o;
    clt_opts(&o, MW_MODE_BLOCKING, "tcp", &rec);
    o.linger_ns = 30 * MW_NS_PER_S;
    mw_clt_t *c = clt_connect(url, &o);
    int sfd = accept(lfd, NULL, NULL);
    assert_true(sfd >= 0);
    queue_pings(c, N_MSGS);
    uint64_t t0 = mw_now_ns();
    mw_clt_free(c);
    uint64_t took = mw_now_ns() - t0;
    close(sfd);
    close(lfd);
    assert_int_equal(atomic_load(&rec.calls), 0);
    if (took > 1000 * MW_NS_PER_MS) fail_msg("free took %" PRIu64 " ms", took / MW_NS_PER_MS);
}

/* linger_ns 0: close returns at once (what the socket takes is written, the
 * rest dropped) and says bytes were left (MW_ETIMEDOUT). */
static void test_clt_spin_close_without_linger_returns_at_once(void **state) {
    (void)state;
    peer_t p;
    peer_start(&p, "tcp");
    closed_rec_t rec = {0};
    mw_clt_opts_t o;
    clt_opts(&o, MW_MODE_SPIN, "tcp", &rec);
    o.linger_ns = 0;
    mw_clt_t *c = clt_connect(p.url, &o);
    queue_pings(c, N_MSGS);
    uint64_t t0 = mw_now_ns();
    mw_clt_close(c);
    uint64_t took = mw_now_ns() - t0;
    assert_int_equal(atomic_load(&rec.calls), 1);
    assert_int_equal(atomic_load(&rec.result), MW_ETIMEDOUT);
    if (took > 500 * MW_NS_PER_MS) fail_msg("close without linger took %" PRIu64 " ms", took / MW_NS_PER_MS);
    mw_clt_free(c);
    mw_svc_free(p.svc);
}

/* ---- event mode: on_closed says when the linger ended ------------------------- */

static void close_posted(void *ud) { mw_clt_close(ud); }

static bool closed_called(void *ud) { return atomic_load(&((closed_rec_t *)ud)->calls) > 0; }

/* An event-mode Clt on an io thread queues 100k pings and is closed on the
 * io thread with linger_ns: on_closed fires once, after the peer had every
 * ping (it closed after reading our FIN, which followed the last one), with
 * result 0; mw_clt_free inside it is safe. */
static void event_closed_signal(const char *scheme) {
    if (tls_scheme(scheme)) mw_test_require(mw_have_openssl_cli(), "the openssl command (Debian package openssl)");
    peer_t p;
    peer_start(&p, scheme);
    mw_io_t *io = NULL;
    mw_err_t err = {0};
    assert_int_equal(mw_io_new(&io, NULL, &err), 0);
    assert_int_equal(mw_io_start(io, NULL), 0);
    closed_rec_t rec = {.peer = &p, .free_inside = true};
    mw_clt_opts_t o;
    clt_opts(&o, MW_MODE_EVENT, scheme, &rec);
    o.event.io = io;
    o.linger_ns = 10 * MW_NS_PER_S;
    mw_clt_t *c = clt_connect(p.url, &o);
    for (uint64_t i = 0; i < N_MSGS; i++) { /* from this thread while the io runs */
        ping_t pg = {.seq = i, .sent_ns = i * 3};
        int r = mw_clt_send(c, ping_schema(), &pg);
        if (r != 0) fail_msg("send %" PRIu64 ": %s: %s", i, mw_errname(r), mw_clt_last_error(c));
    }
    assert_int_equal(mw_io_post(io, close_posted, c), 0);
    if (!mw_wait_until(closed_called, &rec, WAIT_MS))
        fail_msg("no on_closed; the peer got %" PRIu64 " of %d", (uint64_t)atomic_load(&p.next_seq), N_MSGS);
    assert_int_equal(atomic_load(&rec.result), 0);
    assert_int_equal(atomic_load(&rec.peer_had), N_MSGS); /* the bytes were delivered first */
    assert_int_equal(atomic_load(&p.errors), 0);
    mw_io_stop(io); /* the posted free has run or runs now */
    mw_io_free(io);
    assert_int_equal(atomic_load(&rec.calls), 1);
    mw_svc_free(p.svc);
}

static void test_clt_event_on_closed_fires_after_the_last_byte_is_delivered_tcp(void **state) {
    (void)state;
    event_closed_signal("tcp");
}
static void test_clt_event_on_closed_fires_after_the_last_byte_is_delivered_wss(void **state) {
    (void)state;
    event_closed_signal("wss");
}

/* Event mode, linger_ns 0: nothing lingers, so on_closed runs inside
 * mw_clt_close (result 0: nothing was queued). */
static void test_clt_event_on_closed_without_linger_runs_inside_close(void **state) {
    (void)state;
    peer_t p;
    peer_start(&p, "tcp");
    mw_io_t *io = NULL;
    mw_err_t err = {0};
    assert_int_equal(mw_io_new(&io, NULL, &err), 0);
    closed_rec_t rec = {0};
    mw_clt_opts_t o;
    clt_opts(&o, MW_MODE_EVENT, "tcp", &rec);
    o.event.io = io;
    mw_clt_t *c = clt_connect(p.url, &o);
    for (int i = 0; i < 100 && mw_clt_state(c) != MW_CLT_OPEN; i++) mw_io_poll(io, MW_NS_PER_MS);
    assert_int_equal(mw_clt_state(c), MW_CLT_OPEN);
    mw_clt_close(c); /* the io is not running: this thread may */
    assert_int_equal(atomic_load(&rec.calls), 1);
    assert_int_equal(atomic_load(&rec.result), 0);
    mw_clt_free(c);
    mw_io_free(io);
    mw_svc_free(p.svc);
}

#define T(fn) cmocka_unit_test(fn)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_clt_spin_close_delivers_100k_queued_messages_tcp),
        T(test_clt_spin_close_delivers_100k_queued_messages_tls),
        T(test_clt_spin_close_delivers_100k_queued_messages_ws),
        T(test_clt_spin_close_delivers_100k_queued_messages_wss),
        T(test_clt_blocking_close_delivers_100k_queued_messages_tcp),
        T(test_clt_blocking_close_delivers_100k_queued_messages_tls),
        T(test_clt_blocking_close_delivers_100k_queued_messages_ws),
        T(test_clt_blocking_close_delivers_100k_queued_messages_wss),
        T(test_clt_spin_close_linger_is_bounded_when_the_peer_never_reads),
        T(test_clt_blocking_close_linger_is_bounded_when_the_peer_never_reads),
        T(test_clt_blocking_free_without_close_never_lingers),
        T(test_clt_spin_close_without_linger_returns_at_once),
        T(test_clt_event_on_closed_fires_after_the_last_byte_is_delivered_tcp),
        T(test_clt_event_on_closed_fires_after_the_last_byte_is_delivered_wss),
        T(test_clt_event_on_closed_without_linger_runs_inside_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
