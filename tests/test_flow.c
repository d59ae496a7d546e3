/* test_flow.c - backpressure, flush and close mean the same in every mode:
 * a graceful close delivers every accepted reply, on_drain follows an
 * MW_EAGAIN, paused reads hold input back, a slow consumer is closed with its
 * reason, a spin Clt that never flushes still completes an exchange, and a
 * blocking flush over TLS/WebSocket-over-TLS waits for its timeout. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mw_clt.h"
#include "mw_svc.h"
#include "mw_test.h"
#include "svc_harness.h"
#include "test_proto.h"
#include "clock_impl.h"
#include "clt_impl.h"
#include "conn_impl.h"

#define WAIT_MS 20000
#define N_REPLIES 100000u
#define START_SEQ 0u

/* ---- a Svc that answers "start" with N replies, then closes ------------------------ */

/* The Svc, its thread (spin/blocking), its close records and the Clts are
 * the fixture's (tests/util/svc_harness.h); this is its ud. */
typedef struct flood_svc {
    svh_t *h;
    mw_mode_t mode;
    mw_conn_id_t id;       /* the client being answered */
    uint64_t next;         /* next reply to send (1..N) */
    uint64_t total;
    atomic_uint eagains, drains;
    atomic_bool closed_it; /* close_conn was called after the last reply */
    bool pause_on_accept;  /* pause the first client's reads at accept */
    _Atomic mw_conn_id_t first_id;
    atomic_uint accepted;
    atomic_ullong msgs;    /* messages received */
    uint64_t last_sent;    /* the last reply queued, by the on_sent hook */
} flood_svc_t;

/* Sends replies until the queue is full or all are sent; closes after the last. */
static void pump(flood_svc_t *f) {
    while (f->next <= f->total) {
        ping_t p = {.seq = f->next, .sent_ns = 0};
        int r = mw_svc_send_to(f->h->svc, f->id, ping_schema(), &p);
        if (r == MW_EAGAIN) {
            atomic_fetch_add(&f->eagains, 1);
            return;
        }
        if (r != 0) return; /* closed meanwhile: the client's assertions tell */
        f->next++;
    }
    if (!atomic_exchange(&f->closed_it, true)) mw_svc_close_conn(f->h->svc, f->id);
}

static void fs_sent(void *ud, const mw_schema_t *s, const void *msg) {
    flood_svc_t *f = ud;
    (void)s;
    uint64_t q = ((const ping_t *)msg)->seq;
    if (q == f->last_sent + 1) f->last_sent = q; /* replies leave in order */
}

static void fs_msg(svh_t *h, mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg) {
    (void)s;
    flood_svc_t *f = h->ud;
    atomic_fetch_add(&f->msgs, 1);
    if (sch != ping_schema() || ((const ping_t *)msg)->seq != START_SEQ || f->next) return;
    f->id = id;
    f->next = 1;
    pump(f);
}

static void fs_drain(mw_svc_t *s, mw_conn_id_t id, void *ud) {
    (void)s;
    flood_svc_t *f = ((svh_t *)ud)->ud;
    atomic_fetch_add(&f->drains, 1);
    if (id == f->id && f->next) pump(f);
}

static void fs_accept(mw_svc_t *s, mw_conn_id_t id, void *ud) {
    flood_svc_t *f = ((svh_t *)ud)->ud;
    if (atomic_fetch_add(&f->accepted, 1) != 0) return;
    atomic_store(&f->first_id, id);
    if (f->pause_on_accept) assert_int_equal(mw_svc_pause_recv(s, id), 0);
}

/* Listens on scheme://127.0.0.1:0; spin/blocking: the fixture's thread
 * drives the Svc, and replies that do not fit wait for on_drain, which the
 * same polling delivers. */
static void fs_start(flood_svc_t *f, mw_mode_t mode, const char *scheme, const mw_svc_opts_t *base) {
    mw_svc_opts_t o;
    if (base) o = *base;
    else mw_svc_opts_init(&o);
    o.mode = mode;
    o.sync.timeout_ns = 5 * MW_NS_PER_MS;
    o.conn.max_msg = 1024;
    o.conn.tx_buf = 16 * 1024; /* fills fast: replies must wait for the client */
    svh_svc_hooks(f->h, &o);
    f->h->on_msg = fs_msg;
    o.on_drain = fs_drain;
    o.on_accept = fs_accept;
    o.on_sent = fs_sent;
    o.hook_ud = f;
    f->mode = f->h->mode = mode;
    if (!f->total) f->total = N_REPLIES;
    svh_start(f->h, scheme, 0, &o);
}

static int setup(void **state) {
    flood_svc_t *f = svh_setup_ud(state, sizeof *f);
    if (!f) return -1;
    f->h = *state;
    f->h->proto = &test_protocol; /* schemas compared with this file's ping_schema() */
    return 0;
}

static mw_clt_t *clt_to(flood_svc_t *f, const char *scheme, mw_clt_opts_t *o) {
    if (o && (strcmp(scheme, "tls") == 0 || strcmp(scheme, "wss") == 0)) o->tr.tls.ca_file = mw_test_cert("ca.pem");
    return svh_clt_connect(f->h, o);
}

/* ---- 1. graceful close: every reply accepted before close_conn arrives --------------- */

/* The client asks, then keeps sending while it reads (so the Svc has unread
 * input when it closes: a plain close() would answer with an RST and the
 * kernel would drop the replies still in flight), and must see every reply,
 * in order, and then a clean end. */
static bool close_reported(void *ud) { return atomic_load(&((flood_svc_t *)ud)->h->last_reason) != 0; }
static bool saw_eagain(void *ud) { return atomic_load(&((flood_svc_t *)ud)->eagains) > 0; }

static void close_delivers_every_reply(flood_svc_t *f, mw_mode_t mode, const char *scheme) {
    bool tls = !strcmp(scheme, "tls") || !strcmp(scheme, "wss");
    if (tls) mw_test_require(mw_have_openssl_cli(), "the openssl command (Debian package openssl)");
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.tcp.sndbuf = 4096;
    if (tls) {
        o.tr.tls.cert_file = mw_test_cert("srv.pem");
        o.tr.tls.key_file = mw_test_cert("srv.key");
    }
    fs_start(f, mode, scheme, &o);
    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    co.tcp.rcvbuf = 4096;
    mw_clt_t *c = clt_to(f, scheme, &co);
    ping_t start = {.seq = START_SEQ};
    assert_int_equal(mw_clt_send(c, ping_schema(), &start), 0);
    /* Read nothing until the Svc's queue is full: from then on its replies
     * go out only as on_drain lets them. */
    assert_true(mw_wait_until(saw_eagain, f, WAIT_MS));
    uint64_t got = 0, noise = 1000000;
    uint64_t dl = mw__deadline_in(NULL, (int64_t)WAIT_MS * MW_NS_PER_MS);
    int r;
    for (;;) {
        const mw_schema_t *sch;
        test_msg_t m;
        r = mw_clt_recv(c, &sch, &m, sizeof m);
        if (r == MW_EAGAIN) {
            if (mw__deadline_passed(NULL, dl)) fail_msg("%llu of %u replies after %d ms", (unsigned long long)got,
                                                       N_REPLIES, WAIT_MS);
            ping_t p = {.seq = noise++}; /* input the Svc will not read before it closes */
            (void)mw_clt_send(c, ping_schema(), &p);
            continue;
        }
        if (r < 0) break;
        assert_ptr_equal(sch, ping_schema());
        if (m.ping.seq != got + 1) fail_msg("reply %llu after %llu", (unsigned long long)m.ping.seq,
                                            (unsigned long long)got);
        got++;
    }
    if (got != N_REPLIES || r != MW_ECLOSED)
        fail_msg("%s svc: %llu of %u replies, then %s (%s)", mw_mode_name(mode), (unsigned long long)got, N_REPLIES,
                 mw_errname(r), mw_clt_last_error(c));
    assert_true(atomic_load(&f->closed_it));
    /* on_close runs on the Svc's worker; the client may see the end first */
    assert_true(mw_wait_until(close_reported, f, WAIT_MS));
    assert_int_equal(atomic_load(&f->h->last_reason), MW_ESTATE);
    assert_string_equal(f->h->last_close_text, "closed by the service"); /* not MW_ESTATE's generic text */
    assert_true(atomic_load(&f->eagains) > 0); /* the queue did fill: backpressure was exercised */
    assert_true(atomic_load(&f->drains) > 0);
}

static void test_flow_close_conn_delivers_every_reply_spin(void **s) {
    close_delivers_every_reply(svh_ud(s), MW_MODE_SPIN, "tcp");
}
static void test_flow_close_conn_delivers_every_reply_blocking(void **s) {
    close_delivers_every_reply(svh_ud(s), MW_MODE_BLOCKING, "tcp");
}
static void test_flow_close_conn_delivers_every_reply_event(void **s) {
    close_delivers_every_reply(svh_ud(s), MW_MODE_EVENT, "tcp");
}
/* Over WebSocket the close frame must follow the queued replies. */
static void test_flow_close_conn_delivers_every_reply_ws_event(void **s) {
    close_delivers_every_reply(svh_ud(s), MW_MODE_EVENT, "ws");
}
static void test_flow_close_conn_delivers_every_reply_wss_spin(void **s) {
    close_delivers_every_reply(svh_ud(s), MW_MODE_SPIN, "wss");
}

/* ---- 2. paused reads hold input back; resume delivers it all ---------------------- */

static bool got_msgs(void *ud) {
    flood_svc_t *f = ud;
    return atomic_load(&f->msgs) >= f->total;
}

static bool accepted2(void *ud) { return atomic_load(&((flood_svc_t *)ud)->accepted) >= 2; }

static bool accepted1(void *ud) { return atomic_load(&((flood_svc_t *)ud)->accepted) >= 1; }

/* The first client's id, once the Svc has it. */
static mw_conn_id_t first_id(flood_svc_t *f) {
    assert_true(mw_wait_until(accepted1, f, WAIT_MS));
    return atomic_load(&f->first_id);
}

static bool got_one(void *ud) { return atomic_load(&((flood_svc_t *)ud)->msgs) >= 1; }

static void pause_holds_input(flood_svc_t *f, mw_mode_t mode) {
    f->pause_on_accept = true;
    f->total = 201;
    fs_start(f, mode, "tcp", NULL);
    mw_clt_t *c = clt_to(f, "tcp", NULL);
    for (uint64_t i = 1; i <= 200; i++) {
        ping_t p = {.seq = i};
        assert_int_equal(mw_clt_send_busywait_timeout(c, ping_schema(), &p, 5 * MW_NS_PER_S), 0);
    }
    /* A second client, not paused: once its message is in, the Svc has read
     * its sockets since the first client's 200 were in the kernel, and
     * delivered none of them. */
    mw_clt_t *other = clt_to(f, "tcp", NULL);
    ping_t p = {.seq = 7};
    assert_int_equal(mw_clt_send_busywait_timeout(other, ping_schema(), &p, 5 * MW_NS_PER_S), 0);
    assert_true(mw_wait_until(got_one, f, WAIT_MS));
    assert_true(mw_wait_until(accepted2, f, WAIT_MS));
    assert_int_equal(atomic_load(&f->msgs), 1);
    assert_int_equal(mw_svc_resume_recv(f->h->svc, first_id(f)), 0);
    assert_true(mw_wait_until(got_msgs, f, WAIT_MS));
    assert_int_equal(atomic_load(&f->msgs), 201);
}

static void test_flow_pause_recv_holds_input_until_resume_spin(void **s) { pause_holds_input(svh_ud(s), MW_MODE_SPIN); }
static void test_flow_pause_recv_holds_input_until_resume_event(void **s) {
    pause_holds_input(svh_ud(s), MW_MODE_EVENT);
}

/* ---- 3. a consumer that never reads is closed with MW_ESLOW ------------------------ */

static bool closed_once(void *ud) { return atomic_load(&((flood_svc_t *)ud)->h->nclosed) > 0; }

static void test_flow_slow_consumer_is_closed_with_its_reason(void **s) {
    flood_svc_t *f = svh_ud(s);

    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.slow_consumer_ns = 100 * MW_NS_PER_MS;
    o.tcp.sndbuf = 4096;
    fs_start(f, MW_MODE_EVENT, "tcp", &o);
    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    co.tcp.rcvbuf = 4096;
    mw_clt_t *c = clt_to(f, "tcp", &co);
    ping_t start = {.seq = START_SEQ};
    assert_int_equal(mw_clt_send(c, ping_schema(), &start), 0);
    uint64_t t0 = mw_now_ns();
    assert_true(mw_wait_until(closed_once, f, WAIT_MS)); /* the client reads nothing meanwhile */
    assert_int_equal(atomic_load(&f->h->last_reason), MW_ESLOW);
    assert_true(mw_now_ns() - t0 >= 100 * MW_NS_PER_MS);
    assert_true(atomic_load(&f->eagains) > 0);
}

/* ---- 4. a spin Clt that never flushes still completes its exchange ---------------- */

static void test_flow_spin_clt_recv_writes_what_send_queued(void **s) {
    flood_svc_t *f = svh_ud(s);
    f->pause_on_accept = true;
    f->total = 1;
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.tcp.rcvbuf = 4096;
    fs_start(f, MW_MODE_EVENT, "tcp", &o);
    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    co.tcp.sndbuf = 4096;
    mw_clt_t *c = clt_to(f, "tcp", &co);
    /* The Svc does not read: send until a message is accepted but stays
     * queued in the Clt, then queue the request behind it. */
    uint64_t n = 0;
    while (n < 1000000 && !mw__conn_tx_pending(mw__clt_conn(c))) {
        ping_t p = {.seq = ++n};
        assert_int_equal(mw_clt_send(c, ping_schema(), &p), 0);
    }
    assert_true(mw__conn_tx_pending(mw__clt_conn(c)) > 0);
    ping_t start = {.seq = START_SEQ};
    assert_int_equal(mw_clt_send_more(c, ping_schema(), &start), 0);
    /* The Svc reads again; from here on the Clt only calls recv (never send
     * or flush), and the answer must still come. */
    int rr = mw_svc_resume_recv(f->h->svc, first_id(f));
    if (rr != 0) fail_msg("resume: %s; closes %u reason %s: %s", mw_errname(rr), atomic_load(&f->h->nclosed),
                          mw_errname(atomic_load(&f->h->last_reason)), mw_svc_conn_error(f->h->svc, first_id(f)));
    const mw_schema_t *sch;
    test_msg_t m;
    int r = mw_clt_recv_busywait_timeout(c, &sch, &m, sizeof m, (int64_t)WAIT_MS * MW_NS_PER_MS);
    if (r != 0) fail_msg("no answer: %s (%s); the Svc got %llu of %llu", mw_errname(r), mw_clt_last_error(c),
                         (unsigned long long)atomic_load(&f->msgs), (unsigned long long)n + 1);
    assert_ptr_equal(sch, ping_schema());
    assert_int_equal(m.ping.seq, 1);
    assert_int_equal(atomic_load(&f->msgs), n + 1);
}

/* ---- 5. blocking flush over TLS and WebSocket-over-TLS honours timeout_ns --------- */

static void blocking_flush_waits(flood_svc_t *f, const char *scheme) {
    f->pause_on_accept = true;
    f->total = 1;
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.tr.tls.cert_file = mw_test_cert("srv.pem");
    o.tr.tls.key_file = mw_test_cert("srv.key");
    o.tcp.rcvbuf = 4096;
    fs_start(f, MW_MODE_EVENT, scheme, &o);
    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    co.mode = MW_MODE_BLOCKING;
    co.sync.timeout_ns = 300 * MW_NS_PER_MS;
    co.tcp.sndbuf = 4096;
    mw_clt_t *c = clt_to(f, scheme, &co);
    /* The Svc reads nothing: queue until the buffer is full and flush, until
     * the kernel's buffers are full too and a flush has to wait. */
    int r = 0;
    uint64_t took = 0, seq = 1;
    for (int round = 0; round < 256; round++) {
        while ((r = mw_clt_send_more(c, ping_schema(), &(ping_t){.seq = seq})) == 0) seq++;
        assert_int_equal(r, MW_EAGAIN);
        uint64_t t0 = mw_now_ns();
        r = mw_clt_flush(c);
        took = mw_now_ns() - t0;
        if (r != 0) break;
    }
    if (r != MW_ETIMEDOUT || took < 250 * MW_NS_PER_MS)
        fail_msg("%s flush: %s after %llu ms, want MW_ETIMEDOUT after 300 ms (%s)", scheme, mw_errname(r),
                 (unsigned long long)(took / MW_NS_PER_MS), mw_clt_last_error(c));
    /* The Svc reads again: flushing again completes, nothing lost. */
    assert_int_equal(mw_svc_resume_recv(f->h->svc, first_id(f)), 0);
    uint64_t dl = mw__deadline_in(NULL, (int64_t)WAIT_MS * MW_NS_PER_MS);
    while ((r = mw_clt_flush(c)) == MW_ETIMEDOUT && !mw__deadline_passed(NULL, dl)) {}
    assert_int_equal(r, 0);
    f->total = seq - 1;
    assert_true(mw_wait_until(got_msgs, f, WAIT_MS));
    assert_int_equal(atomic_load(&f->msgs), seq - 1);
}

static void test_flow_blocking_flush_honours_timeout_tls(void **s) { blocking_flush_waits(svh_ud(s), "tls"); }
static void test_flow_blocking_flush_honours_timeout_wss(void **s) { blocking_flush_waits(svh_ud(s), "wss"); }

/* send_more + flush of many messages over tls in blocking mode completes. */
static void test_flow_blocking_tls_batches_complete(void **s) {
    flood_svc_t *f = svh_ud(s);
    f->total = 200000;
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.tr.tls.cert_file = mw_test_cert("srv.pem");
    o.tr.tls.key_file = mw_test_cert("srv.key");
    fs_start(f, MW_MODE_EVENT, "tls", &o);
    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    co.mode = MW_MODE_BLOCKING;
    co.sync.timeout_ns = 10 * MW_NS_PER_S;
    mw_clt_t *c = clt_to(f, "tls", &co);
    for (uint64_t i = 1; i <= f->total; i++) {
        ping_t p = {.seq = i};
        int r = mw_clt_send_more(c, ping_schema(), &p);
        if (r == MW_EAGAIN) {
            if ((r = mw_clt_flush(c)) != 0) fail_msg("flush at %llu: %s (%s)", (unsigned long long)i,
                                                     mw_errname(r), mw_clt_last_error(c));
            r = mw_clt_send_more(c, ping_schema(), &p);
        }
        assert_int_equal(r, 0);
    }
    assert_int_equal(mw_clt_flush(c), 0);
    assert_true(mw_wait_until(got_msgs, f, WAIT_MS));
}

/* ---- 6. a connect does not retry what no retry can mend ------------------------- */

/* A certificate that fails verification fails the same way every time:
 * twenty attempts 100 ms apart would take two seconds to say so. */
static void test_flow_connect_does_not_retry_a_certificate_that_fails_verification(void **s) {
    flood_svc_t *f = svh_ud(s);
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.tr.tls.cert_file = mw_test_cert("srv.pem");
    o.tr.tls.key_file = mw_test_cert("srv.key");
    fs_start(f, MW_MODE_EVENT, "tls", &o);
    const char *url = f->h->url;
    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    co.tr.tls.ca_file = mw_test_cert("other.pem"); /* not the CA that signed srv.pem */
    co.retry.max_attempts = 20;
    co.retry.min_delay_ns = co.retry.max_delay_ns = 100 * MW_NS_PER_MS;
    mw_clt_t *c = NULL;
    mw_err_t err;
    uint64_t t0 = mw_now_ns();
    int r = mw_clt_connect(&c, url, &test_protocol, &co, &err);
    uint64_t took = mw_now_ns() - t0;
    assert_null(c);
    if (r != MW_ETLS) fail_msg("connect: %s (%s), want MW_ETLS", mw_errname(r), mw_err_text(&err));
    assert_non_null(strstr(mw_err_text(&err), "certificate"));
    if (took >= 100 * MW_NS_PER_MS) fail_msg("took %llu ms: retried", (unsigned long long)(took / MW_NS_PER_MS));
    assert_int_equal(atomic_load(&f->accepted), 1);
}

/* ---- 7. a peer speaking another serdes is named as such ---------------------------- */

static void mismatch(flood_svc_t *f, const char *svc_serdes, const char *clt_serdes, const char *hint) {
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.conn.serdes = svc_serdes;
    o.rx_timeout_ns = 200 * MW_NS_PER_MS; /* a text Svc waits for a newline binary never sends */
    fs_start(f, MW_MODE_EVENT, "tcp", &o);
    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    co.conn.serdes = clt_serdes;
    co.conn.max_msg = 1024;
    mw_clt_t *c = clt_to(f, "tcp", &co);
    ping_t p = {.seq = 5};
    assert_int_equal(mw_clt_send(c, ping_schema(), &p), 0);
    assert_true(mw_wait_until(closed_once, f, WAIT_MS));
    if (!strstr(f->h->last_close_text, hint)) fail_msg("%s svc, %s peer: \"%s\" lacks \"%s\"", svc_serdes, clt_serdes,
                                              f->h->last_close_text, hint);
}

static void test_flow_json_peer_of_a_fixed_svc_is_named(void **s) {
    mismatch(svh_ud(s), "fixed", "text", "the peer seems to send JSON text: is its serdes \"text\"?");
}

static void test_flow_binary_peer_of_a_text_svc_is_named(void **s) {
    mismatch(svh_ud(s), "text", "fixed", "the peer seems to send binary frames");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_flow_close_conn_delivers_every_reply_spin, setup, svh_teardown),
        cmocka_unit_test_setup_teardown(test_flow_close_conn_delivers_every_reply_blocking, setup, svh_teardown),
        cmocka_unit_test_setup_teardown(test_flow_close_conn_delivers_every_reply_event, setup, svh_teardown),
        cmocka_unit_test_setup_teardown(test_flow_close_conn_delivers_every_reply_ws_event, setup, svh_teardown),
        cmocka_unit_test_setup_teardown(test_flow_close_conn_delivers_every_reply_wss_spin, setup, svh_teardown),
        cmocka_unit_test_setup_teardown(test_flow_pause_recv_holds_input_until_resume_spin, setup, svh_teardown),
        cmocka_unit_test_setup_teardown(test_flow_pause_recv_holds_input_until_resume_event, setup, svh_teardown),
        cmocka_unit_test_setup_teardown(test_flow_slow_consumer_is_closed_with_its_reason, setup, svh_teardown),
        cmocka_unit_test_setup_teardown(test_flow_spin_clt_recv_writes_what_send_queued, setup, svh_teardown),
        cmocka_unit_test_setup_teardown(test_flow_blocking_flush_honours_timeout_tls, setup, svh_teardown),
        cmocka_unit_test_setup_teardown(test_flow_blocking_flush_honours_timeout_wss, setup, svh_teardown),
        cmocka_unit_test_setup_teardown(test_flow_blocking_tls_batches_complete, setup, svh_teardown),
        cmocka_unit_test_setup_teardown(test_flow_connect_does_not_retry_a_certificate_that_fails_verification, setup,
                                        svh_teardown),
        cmocka_unit_test_setup_teardown(test_flow_json_peer_of_a_fixed_svc_is_named, setup, svh_teardown),
        cmocka_unit_test_setup_teardown(test_flow_binary_peer_of_a_text_svc_is_named, setup, svh_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
