/* test_driver_edges.c - the close, backpressure and pause paths of the one
 * driver at their edges, each from a defect an independent review found:
 * an abort inside on_close, a broadcast or send to a connection already
 * closed (lingering), stats while lingering, on_drain after send_more and
 * after a flush that emptied the queue (no false slow-consumer close), a
 * linger after the peer's half-close and a paused connection whose peer
 * resets (no busy loop), a blocking Svc's only connection paused or
 * flooding replies, and freeing a Svc while connections linger. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "mw_clt.h"
#include "mw_svc.h"
#include "mw_test.h"
#include "svc_harness.h"
#include "test_proto.h"
#include "clock_impl.h"
#include "clt_impl.h"
#include "conn_impl.h"
#include "stream_impl.h"

/* The Svc and its Clts are the fixture's (tests/util/svc_harness.h); what
 * these tests watch is kept here, its ud. */
typedef struct rv {
    svh_t *h;
    _Atomic mw_conn_id_t id;
    atomic_uint accepted, drains, eagains;
    atomic_ullong msgs;
    bool pause, flood, abort_in_close;
    uint64_t next, total;
} rv_t;

static int64_t g_timeout = -1;

static int setup(void **state) {
    rv_t *f = svh_setup_ud(state, sizeof *f);
    if (!f) return -1;
    f->h = *state;
    return 0;
}

static rv_t *rv(void **state) { return svh_ud(state); }

static void sv_accept(svh_t *h, mw_svc_t *s, mw_conn_id_t id) {
    rv_t *f = h->ud;
    atomic_store(&f->id, id);
    atomic_fetch_add(&f->accepted, 1);
    if (f->pause) mw_svc_pause_recv(s, id);
}
static void pump(rv_t *f) {
    while (f->next <= f->total) {
        ping_t p = {.seq = f->next};
        int r = mw_svc_send_to(f->h->svc, atomic_load(&f->id), ping_schema(), &p);
        if (r == MW_EAGAIN) { atomic_fetch_add(&f->eagains, 1); return; }
        if (r) return;
        f->next++;
    }
}
static void sv_msg(svh_t *h, mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *m) {
    (void)s; (void)id; (void)sch; (void)m;
    rv_t *f = h->ud;
    atomic_fetch_add(&f->msgs, 1);
    if (f->flood && !f->next) { f->next = 1; pump(f); }
}
static void sv_drain(mw_svc_t *s, mw_conn_id_t id, void *ud) {
    (void)s; (void)id;
    rv_t *f = ((svh_t *)ud)->ud;
    atomic_fetch_add(&f->drains, 1);
    pump(f);
}
static void sv_close(svh_t *h, mw_svc_t *s, mw_conn_id_t id, int reason) {
    (void)reason;
    if (((rv_t *)h->ud)->abort_in_close) mw_svc_abort_conn(s, id);
}
/* A message the test thread took from a spin/blocking Svc itself. */
static void sv_took(rv_t *f, mw_conn_id_t id, const mw_schema_t *sch, const void *m) {
    sv_msg(f->h, f->h->svc, id, sch, m);
}

/* The fixture's Svc with these callbacks. */
static void svc_listen(rv_t *f, mw_svc_opts_t *o) {
    svh_svc_hooks(f->h, o);
    f->h->on_accept = sv_accept;
    f->h->on_msg = sv_msg;
    f->h->on_close = sv_close;
    o->on_drain = sv_drain;
    f->h->mode = o->mode;
    svh_listen(f->h, "tcp", o);
}

static void svc_start(rv_t *f, mw_mode_t mode, int sndbuf) {
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.mode = mode;
    o.sync.timeout_ns = g_timeout;
    o.conn.max_msg = 1024;
    o.conn.tx_buf = 16 * 1024;
    if (sndbuf) o.tcp.sndbuf = sndbuf;
    svc_listen(f, &o);
}

static mw_clt_t *clt(rv_t *f, mw_mode_t mode, mw_io_t *io, void (*on_drain)(mw_clt_t *, void *), int rcv) {
    mw_clt_opts_t o;
    mw_clt_opts_init(&o);
    o.mode = mode;
    o.event.io = io;
    o.event.on_drain = on_drain;
    o.ud = f;
    o.tcp.sndbuf = 4096;
    if (rcv) o.tcp.rcvbuf = rcv;
    /* on the test's io: the test frees it, before the io */
    return io ? svh_clt_connect_untracked(f->h, &o) : svh_clt_connect(f->h, &o);
}

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
static void nap_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}
static bool accepted1(void *ud) { return atomic_load(&((rv_t *)ud)->accepted) >= 1; }
static bool closed1(void *ud) { return atomic_load(&((rv_t *)ud)->h->nclosed) >= 1; }
static bool eagain1(void *ud) { return atomic_load(&((rv_t *)ud)->eagains) >= 1; }

/* 1. mw_svc_stats counts a lingering connection twice. */
static void test_stats_while_lingering(void **st) {
    rv_t *f = rv(st);
    svc_start(f, MW_MODE_SPIN, 0);
    mw_clt_t *c = clt(f, MW_MODE_SPIN, NULL, NULL, 0);
    for (uint64_t i = 1; i <= 10; i++) assert_int_equal(mw_clt_send(c, ping_schema(), &(ping_t){.seq = i}), 0);
    int got = 0;
    for (int i = 0; i < 1000000 && got < 10; i++) {
        mw_conn_id_t id; const mw_schema_t *s; test_msg_t m;
        if (mw_svc_recv(f->h->svc, &id, &s, &m, sizeof m) == 0) got++;
    }
    assert_int_equal(got, 10);
    mw_svc_stats_t a;
    mw_svc_stats(f->h->svc, &a);
    assert_int_equal(mw_svc_close_conn(f->h->svc, atomic_load(&f->id)), 0); /* graceful: lingers (client open) */
    mw_svc_poll(f->h->svc, 0);
    mw_svc_stats_t b;
    mw_svc_stats(f->h->svc, &b);
    printf("before close: msgs_in %llu conns %llu; lingering: msgs_in %llu closed %llu conns %llu\n",
           (unsigned long long)a.msgs_in, (unsigned long long)a.connections, (unsigned long long)b.msgs_in,
           (unsigned long long)b.closed, (unsigned long long)b.connections);
    svh_clt_drop(f->h, c);
    svh_stop(f->h);
    assert_int_equal(b.msgs_in, 10);
}

/* 2. Event Clt: send_more -> MW_EAGAIN, flush -> MW_EAGAIN: on_drain never comes. */
static atomic_uint clt_drains;
static void c_drain(mw_clt_t *c, void *ud) { (void)c; (void)ud; atomic_fetch_add(&clt_drains, 1); }
static bool cdrained(void *ud) { (void)ud; return atomic_load(&clt_drains) > 0; }

static void clt_drain_case(rv_t *f, bool use_send_more) {
    atomic_store(&clt_drains, 0);
    f->pause = true;
    svc_start(f, MW_MODE_EVENT, 0);
    mw_io_t *io;
    mw_io_opts_t io_o;
    mw_io_opts_init(&io_o);
    mw_err_t err;
    assert_int_equal(mw_io_new(&io, &io_o, &err), 0);
    mw_clt_t *c = clt(f, MW_MODE_EVENT, io, c_drain, 0);
    assert_int_equal(mw_io_start(io, NULL), 0);
    assert_true(mw_wait_until(accepted1, f, 5000));
    int r = 0;
    uint64_t n = 0;
    while (r != MW_EAGAIN && n < 10000000) {
        ping_t p = {.seq = ++n};
        r = use_send_more ? mw_clt_send_more(c, ping_schema(), &p) : mw_clt_send(c, ping_schema(), &p);
        if (use_send_more && r == MW_EAGAIN) r = mw_clt_flush(c) == 0 ? 0 : MW_EAGAIN;
    }
    assert_int_equal(r, MW_EAGAIN);
    assert_int_equal(mw_svc_resume_recv(f->h->svc, atomic_load(&f->id)), 0);
    bool ok = mw_wait_until(cdrained, NULL, 10000);
    if (!ok) {
        mw_conn_stats_t cst;
        mw_clt_stats(c, &cst);
        fprintf(stderr, "DEBUG svc got %llu clt out %llu pending %zu state %d\n", (unsigned long long)atomic_load(&f->msgs),
                (unsigned long long)cst.msgs_out, mw__conn_tx_pending(mw__clt_conn(c)), (int)mw_clt_state(c));
    }
    printf("%s: MW_EAGAIN after %llu messages; on_drain %s\n", use_send_more ? "send_more+flush" : "send",
           (unsigned long long)n, ok ? "fired" : "NEVER fired");
    mw_io_stop(io);
    svh_clt_drop(f->h, c);
    mw_io_free(io);
    svh_stop(f->h);
    assert_true(ok);
}
static void test_clt_on_drain_after_send(void **st) { clt_drain_case(rv(st), false); }
static void test_clt_on_drain_after_send_more(void **st) { clt_drain_case(rv(st), true); }

/* A linger after the peer's half-close must not spin on the readable EOF. */
static void test_linger_after_half_close_does_not_spin(void **st) {
    rv_t *f = rv(st);
    f->flood = true;
    f->total = 100000;
    svc_start(f, MW_MODE_EVENT, 4096);
    mw_clt_t *c = clt(f, MW_MODE_SPIN, NULL, NULL, 4096);
    assert_int_equal(mw_clt_send(c, ping_schema(), &(ping_t){.seq = 0}), 0);
    assert_true(mw_wait_until(eagain1, f, 5000));
    double c0 = cpu_s();
    nap_ms(500);
    printf("control (queue full, client not reading, no half-close): %.0f ms of CPU in 500 ms\n", (cpu_s() - c0) * 1000);
    shutdown(mw__stream_fd(mw__clt_conn(c)->stream), SHUT_WR); /* request done, still reading later */
    assert_true(mw_wait_until(closed1, f, 5000));
    double t0 = cpu_s();
    nap_ms(500);
    double used = cpu_s() - t0;
    printf("linger: %.0f ms of CPU in 500 ms of wall time\n", used * 1000);
    svh_clt_drop(f->h, c);
    svh_stop(f->h);
    assert_true(used < 0.1);
}

/* 5. A paused connection whose client resets: the worker spins on EPOLLHUP
 * and the connection is never closed. */
static void test_paused_conn_reset_by_peer(void **st) {
    rv_t *f = rv(st);
    f->pause = true;
    svc_start(f, MW_MODE_EVENT, 0);
    mw_clt_t *c = clt(f, MW_MODE_SPIN, NULL, NULL, 0);
    assert_true(mw_wait_until(accepted1, f, 5000));
    assert_int_equal(mw_clt_send(c, ping_schema(), &(ping_t){.seq = 1}), 0); /* unread input */
    nap_ms(50);
    int fd = mw__stream_fd(mw__clt_conn(c)->stream);
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    svh_clt_drop(f->h, c); /* RST */
    nap_ms(50);
    double t0 = cpu_s();
    nap_ms(500);
    double used = cpu_s() - t0;
    printf("paused + RST: %.0f ms of CPU in 500 ms; closes %u\n", used * 1000, atomic_load(&f->h->nclosed));
    svh_stop(f->h);
    assert_true(used < 0.1);
}

/* 6. abort_conn inside on_close: the slot is released while drv_closed is
 * still using it. */
static void test_abort_inside_on_close(void **st) {
    rv_t *f = rv(st);
    f->abort_in_close = true;
    svc_start(f, MW_MODE_SPIN, 0);
    mw_clt_t *c = clt(f, MW_MODE_SPIN, NULL, NULL, 0);
    for (int i = 0; i < 100000 && !accepted1(f); i++) mw_svc_poll(f->h->svc, 0);
    assert_int_equal(mw_svc_close_conn(f->h->svc, atomic_load(&f->id)), 0);
    mw_svc_stats_t b;
    mw_svc_stats(f->h->svc, &b);
    printf("abort in on_close: accepted %llu closed %llu conns %llu closes %u\n", (unsigned long long)b.accepted,
           (unsigned long long)b.closed, (unsigned long long)b.connections, atomic_load(&f->h->nclosed));
    svh_clt_drop(f->h, c);
    svh_stop(f->h);
}


/* 7. Spin Svc: send_to -> MW_EAGAIN, then mw_svc_flush until 0 (the client
 * reads): on_drain never fires, and slow_consumer_ns closes the healthy
 * connection with MW_ESLOW. */
static void test_flush_after_eagain_no_false_eslow(void **st) {
    rv_t *f = rv(st);
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.mode = MW_MODE_SPIN;
    o.conn.max_msg = 1024;
    o.conn.tx_buf = 16 * 1024;
    o.tcp.sndbuf = 4096;
    o.slow_consumer_ns = 100 * MW_NS_PER_MS;
    svc_listen(f, &o);
    mw_clt_t *c = clt(f, MW_MODE_SPIN, NULL, NULL, 4096);
    for (int i = 0; i < 100000 && !accepted1(f); i++) mw_svc_poll(f->h->svc, 0);
    mw_conn_id_t id = atomic_load(&f->id);
    uint64_t sent = 0;
    int r;
    while ((r = mw_svc_send_to(f->h->svc, id, ping_schema(), &(ping_t){.seq = sent + 1})) == 0) sent++;
    assert_int_equal(r, MW_EAGAIN);
    uint64_t got = 0;
    while ((r = mw_svc_flush(f->h->svc, id)) != 0 || got < sent) { /* the client reads; the Svc flushes */
        assert_true(r == 0 || r == MW_EAGAIN);
        const mw_schema_t *sch; test_msg_t m;
        if (mw_clt_recv(c, &sch, &m, sizeof m) == 0) got++;
    }
    uint64_t dl = mw__deadline_in(NULL, 400 * MW_NS_PER_MS);
    while (!mw__deadline_passed(NULL, dl)) mw_svc_poll(f->h->svc, MW_NS_PER_MS);
    printf("queue empty, client read all %llu; on_drain %u; closes %u (reason %s)\n", (unsigned long long)got,
           atomic_load(&f->drains), atomic_load(&f->h->nclosed), mw_errname(atomic_load(&f->h->last_reason)));
    svh_clt_drop(f->h, c);
    svh_stop(f->h);
    assert_int_equal(atomic_load(&f->h->nclosed), 0);
}

/* 8. Blocking Svc, one client that only reads: replies behind a full socket
 * wait for the 10 ms blocking read to time out. */
static void *reader(void *ud) {
    mw_clt_t *c = ud;
    uint64_t got = 0;
    while (got < 20000) {
        const mw_schema_t *sch; test_msg_t m;
        int r = mw_clt_recv_busywait_timeout(c, &sch, &m, sizeof m, 20 * MW_NS_PER_S);
        if (r) break;
        got++;
    }
    return (void *)(uintptr_t)got;
}
static void solo_case(rv_t *f, mw_mode_t mode) {
    f->flood = true;
    f->total = 20000;
    g_timeout = 50 * MW_NS_PER_MS;
    svc_start(f, mode, 4096);
    mw_clt_t *c = clt(f, MW_MODE_SPIN, NULL, NULL, 4096);
    assert_int_equal(mw_clt_send(c, ping_schema(), &(ping_t){.seq = 0}), 0);
    pthread_t th;
    uint64_t t0 = mw_now_ns();
    pthread_create(&th, NULL, reader, c);
    void *res = NULL;
    if (mode == MW_MODE_BLOCKING) {
        uint64_t dl = mw__deadline_in(NULL, 20 * MW_NS_PER_S);
        while (f->next <= f->total && !mw__deadline_passed(NULL, dl)) {
            mw_conn_id_t id; const mw_schema_t *sch; test_msg_t m;
            if (mw_svc_recv(f->h->svc, &id, &sch, &m, sizeof m) == 0) sv_took(f, id, sch, &m);
        }
        for (int i = 0; i < 200; i++) mw_svc_poll(f->h->svc, MW_NS_PER_MS); /* the last ones */
    }
    pthread_join(th, &res);
    printf("%s Svc: %llu of 20000 replies (next %llu) to a reading client in %llu ms (drains %u)\n", mw_mode_name(mode), (unsigned long long)(uintptr_t)res, (unsigned long long)f->next,
           (unsigned long long)((mw_now_ns() - t0) / MW_NS_PER_MS), atomic_load(&f->drains));
    svh_clt_drop(f->h, c);
    svh_stop(f->h);
    assert_int_equal((uintptr_t)res, 20000);
}
static void test_solo_blocking_flood(void **st) { solo_case(rv(st), MW_MODE_BLOCKING); }
static void test_event_flood(void **st) { solo_case(rv(st), MW_MODE_EVENT); }


/* 9. broadcast reaches a connection that on_close already reported closed
 * (lingering slot: used, and make_id gives the bumped generation). */
static void test_broadcast_skips_closed(void **st) {
    rv_t *f = rv(st);
    g_timeout = -1;
    f->flood = true;
    f->total = 1000000;
    svc_start(f, MW_MODE_SPIN, 4096);
    mw_clt_t *c = clt(f, MW_MODE_SPIN, NULL, NULL, 4096);
    assert_int_equal(mw_clt_send(c, ping_schema(), &(ping_t){.seq = 0}), 0);
    for (int i = 0; i < 1000000 && !eagain1(f); i++) {
        mw_conn_id_t id2; const mw_schema_t *sch; test_msg_t m;
        if (mw_svc_recv(f->h->svc, &id2, &sch, &m, sizeof m) == 0) sv_took(f, id2, sch, &m);
    }
    assert_true(eagain1(f));
    f->total = 0; /* no more pumping */
    mw_conn_id_t id = atomic_load(&f->id);
    assert_int_equal(mw_svc_close_conn(f->h->svc, id), 0);
    assert_int_equal(atomic_load(&f->h->nclosed), 1);
    int n = mw_svc_broadcast(f->h->svc, ping_schema(), &(ping_t){.seq = 42});
    mw_conn_id_t next = ((id >> 32) + 1) << 32 | (uint32_t)id;
    int sr = mw_svc_send_to(f->h->svc, next, ping_schema(), &(ping_t){.seq = 43});
    printf("after on_close: broadcast accepted by %d connection(s); send_to(gen+1 id) = %s\n", n, mw_errname(sr));
    svh_clt_drop(f->h, c);
    svh_stop(f->h);
    assert_int_equal(sr, MW_ECLOSED); /* the id a closed connection never had must be unknown */
    assert_int_equal(n, 0);
}


/* 10. Blocking Svc, its only client paused: recv spins instead of waiting. */
static void test_blocking_recv_with_paused_solo_waits(void **st) {
    rv_t *f = rv(st);
    f->pause = true;
    g_timeout = 300 * MW_NS_PER_MS;
    svc_start(f, MW_MODE_BLOCKING, 0);
    mw_clt_t *c = clt(f, MW_MODE_SPIN, NULL, NULL, 0);
    for (int i = 0; i < 1000 && !accepted1(f); i++) mw_svc_poll(f->h->svc, MW_NS_PER_MS);
    assert_true(accepted1(f));
    assert_int_equal(mw_clt_send(c, ping_schema(), &(ping_t){.seq = 1}), 0);
    mw_conn_id_t id; const mw_schema_t *sch; test_msg_t m;
    (void)mw_svc_recv(f->h->svc, &id, &sch, &m, sizeof m); /* settle into solo */
    struct timespec a, b;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    uint64_t t0 = mw_now_ns();
    int r = mw_svc_recv(f->h->svc, &id, &sch, &m, sizeof m);
    uint64_t wall = mw_now_ns() - t0;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    double cpu = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    printf("blocking recv, one paused client: %s after %llu ms wall, %.0f ms CPU\n", mw_errname(r),
           (unsigned long long)(wall / MW_NS_PER_MS), cpu);
    svh_clt_drop(f->h, c);
    svh_stop(f->h);
    g_timeout = -1;
    assert_true(cpu < 50);
}


/* 11. mw_svc_free while a connection lingers on a worker. */
static void test_free_while_lingering(void **st) {
    rv_t *f = rv(st);
    f->flood = true;
    f->total = 100000;
    g_timeout = -1;
    svc_start(f, MW_MODE_EVENT, 4096);
    mw_clt_t *c = clt(f, MW_MODE_SPIN, NULL, NULL, 4096);
    assert_int_equal(mw_clt_send(c, ping_schema(), &(ping_t){.seq = 0}), 0);
    assert_true(mw_wait_until(eagain1, f, 5000));
    assert_int_equal(mw_svc_close_conn(f->h->svc, atomic_load(&f->id)), 0);
    assert_true(mw_wait_until(closed1, f, 5000));
    svh_stop(f->h);
    svh_clt_drop(f->h, c);
}

/* A test with the fixture (tests/util/svc_harness.h) and this file's state. */
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, svh_teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_stats_while_lingering),
        T(test_clt_on_drain_after_send),
        T(test_clt_on_drain_after_send_more),
        T(test_linger_after_half_close_does_not_spin),
        T(test_paused_conn_reset_by_peer),
        T(test_flush_after_eagain_no_false_eslow),
        T(test_solo_blocking_flood),
        T(test_event_flood),
        T(test_broadcast_skips_closed),
        T(test_blocking_recv_with_paused_solo_waits),
        T(test_free_while_lingering),
        T(test_abort_inside_on_close),
    };
    if (getenv("ONLY")) cmocka_set_test_filter(getenv("ONLY"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
