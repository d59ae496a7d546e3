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
#include "test_proto.h"

typedef struct rv {
    mw_svc_t *svc;
    _Atomic mw_conn_id_t id;
    atomic_uint accepted, closes, drains, eagains;
    atomic_ullong msgs;
    atomic_int reason;
    bool pause, flood, abort_in_close;
    uint64_t next, total;
} rv_t;

static rv_t R;
static int64_t g_timeout = -1;

static void sv_accept(mw_svc_t *s, mw_conn_id_t id, void *ud) {
    rv_t *f = ud;
    atomic_store(&f->id, id);
    atomic_fetch_add(&f->accepted, 1);
    if (f->pause) mw_svc_pause_recv(s, id);
}
static void pump(rv_t *f) {
    while (f->next <= f->total) {
        ping_t p = {.seq = f->next};
        int r = mw_svc_send_to(f->svc, atomic_load(&f->id), ping_schema(), &p);
        if (r == MW_EAGAIN) { atomic_fetch_add(&f->eagains, 1); return; }
        if (r) return;
        f->next++;
    }
}
static void sv_msg(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *m, void *ud) {
    (void)s; (void)id; (void)sch; (void)m;
    rv_t *f = ud;
    atomic_fetch_add(&f->msgs, 1);
    if (f->flood && !f->next) { f->next = 1; pump(f); }
}
static void sv_drain(mw_svc_t *s, mw_conn_id_t id, void *ud) { (void)s; (void)id; atomic_fetch_add(&((rv_t *)ud)->drains, 1); pump(ud); }
static void sv_close(mw_svc_t *s, mw_conn_id_t id, int reason, void *ud) {
    rv_t *f = ud;
    atomic_store(&f->reason, reason);
    atomic_fetch_add(&f->closes, 1);
    if (f->abort_in_close) mw_svc_abort_conn(s, id);
}

static void svc_start(rv_t *f, mw_mode_t mode, int sndbuf) {
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.mode = mode;
    o.timeout_ns = g_timeout;
    o.conn.max_msg = 1024;
    o.conn.tx_buf = 16 * 1024;
    if (sndbuf) o.tcp.sndbuf = sndbuf;
    o.on_accept = sv_accept; o.on_msg = sv_msg; o.on_close = sv_close; o.on_drain = sv_drain;
    o.ud = f;
    mw_err_t err;
    if (mw_svc_listen(&f->svc, "tcp://127.0.0.1:0", &test_protocol, &o, &err) < 0) fail_msg("%s", err.text);
}

static mw_clt_t *clt(rv_t *f, mw_mode_t mode, mw_io_t *io, void (*on_drain)(mw_clt_t *, void *), int rcv) {
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", mw_svc_port(f->svc));
    mw_clt_opts_t o;
    mw_clt_opts_init(&o);
    o.mode = mode;
    o.io = io;
    o.on_drain = on_drain;
    o.ud = f;
    o.tcp.sndbuf = 4096;
    if (rcv) o.tcp.rcvbuf = rcv;
    mw_clt_t *c;
    mw_err_t err;
    if (mw_clt_connect(&c, url, &test_protocol, &o, &err) < 0) fail_msg("%s", err.text);
    return c;
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
static bool closed1(void *ud) { return atomic_load(&((rv_t *)ud)->closes) >= 1; }
static bool eagain1(void *ud) { return atomic_load(&((rv_t *)ud)->eagains) >= 1; }

/* 1. mw_svc_stats counts a lingering connection twice. */
static void test_stats_while_lingering(void **st) {
    (void)st;
    rv_t *f = &R;
    memset(f, 0, sizeof *f);
    svc_start(f, MW_MODE_SPIN, 0);
    mw_clt_t *c = clt(f, MW_MODE_SPIN, NULL, NULL, 0);
    for (uint64_t i = 1; i <= 10; i++) assert_int_equal(mw_clt_send(c, ping_schema(), &(ping_t){.seq = i}), 0);
    int got = 0;
    for (int i = 0; i < 1000000 && got < 10; i++) {
        mw_conn_id_t id; const mw_schema_t *s; test_msg_t m;
        if (mw_svc_recv(f->svc, &id, &s, &m, sizeof m) == 0) got++;
    }
    assert_int_equal(got, 10);
    mw_svc_stats_t a;
    mw_svc_stats(f->svc, &a);
    assert_int_equal(mw_svc_close_conn(f->svc, atomic_load(&f->id)), 0); /* graceful: lingers (client open) */
    mw_svc_poll(f->svc, 0);
    mw_svc_stats_t b;
    mw_svc_stats(f->svc, &b);
    printf("before close: msgs_in %llu conns %llu; lingering: msgs_in %llu closed %llu conns %llu\n",
           (unsigned long long)a.msgs_in, (unsigned long long)a.connections, (unsigned long long)b.msgs_in,
           (unsigned long long)b.closed, (unsigned long long)b.connections);
    mw_clt_free(c);
    mw_svc_free(f->svc);
    assert_int_equal(b.msgs_in, 10);
}

/* 2. Event Clt: send_more -> MW_EAGAIN, flush -> MW_EAGAIN: on_drain never comes. */
static atomic_uint clt_drains;
static void c_drain(mw_clt_t *c, void *ud) { (void)c; (void)ud; atomic_fetch_add(&clt_drains, 1); }
static bool cdrained(void *ud) { (void)ud; return atomic_load(&clt_drains) > 0; }

static void clt_drain_case(bool use_send_more) {
    rv_t *f = &R;
    memset(f, 0, sizeof *f);
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
    assert_int_equal(mw_svc_resume_recv(f->svc, atomic_load(&f->id)), 0);
    bool ok = mw_wait_until(cdrained, NULL, 10000);
    if (!ok) {
        mw_conn_stats_t cst;
        mw_clt_stats(c, &cst);
        fprintf(stderr, "DEBUG svc got %llu clt out %llu pending %zu state %d\n", (unsigned long long)atomic_load(&f->msgs),
                (unsigned long long)cst.msgs_out, mw_conn_tx_pending(mw_clt_conn(c)), (int)mw_clt_state(c));
    }
    printf("%s: MW_EAGAIN after %llu messages; on_drain %s\n", use_send_more ? "send_more+flush" : "send",
           (unsigned long long)n, ok ? "fired" : "NEVER fired");
    mw_io_stop(io);
    mw_clt_free(c);
    mw_io_free(io);
    mw_svc_free(f->svc);
    assert_true(ok);
}
static void test_clt_on_drain_after_send(void **st) { (void)st; clt_drain_case(false); }
static void test_clt_on_drain_after_send_more(void **st) { (void)st; clt_drain_case(true); }

/* A linger after the peer's half-close must not spin on the readable EOF. */
static void test_linger_after_half_close_does_not_spin(void **st) {
    (void)st;
    rv_t *f = &R;
    memset(f, 0, sizeof *f);
    f->flood = true;
    f->total = 100000;
    svc_start(f, MW_MODE_EVENT, 4096);
    mw_clt_t *c = clt(f, MW_MODE_SPIN, NULL, NULL, 4096);
    assert_int_equal(mw_clt_send(c, ping_schema(), &(ping_t){.seq = 0}), 0);
    assert_true(mw_wait_until(eagain1, f, 5000));
    double c0 = cpu_s();
    nap_ms(500);
    printf("control (queue full, client not reading, no half-close): %.0f ms of CPU in 500 ms\n", (cpu_s() - c0) * 1000);
    shutdown(mw_stream_fd(mw_clt_conn(c)->stream), SHUT_WR); /* request done, still reading later */
    assert_true(mw_wait_until(closed1, f, 5000));
    double t0 = cpu_s();
    nap_ms(500);
    double used = cpu_s() - t0;
    printf("linger: %.0f ms of CPU in 500 ms of wall time\n", used * 1000);
    mw_clt_free(c);
    mw_svc_free(f->svc);
    assert_true(used < 0.1);
}

/* 5. A paused connection whose client resets: the worker spins on EPOLLHUP
 * and the connection is never closed. */
static void test_paused_conn_reset_by_peer(void **st) {
    (void)st;
    rv_t *f = &R;
    memset(f, 0, sizeof *f);
    f->pause = true;
    svc_start(f, MW_MODE_EVENT, 0);
    mw_clt_t *c = clt(f, MW_MODE_SPIN, NULL, NULL, 0);
    assert_true(mw_wait_until(accepted1, f, 5000));
    assert_int_equal(mw_clt_send(c, ping_schema(), &(ping_t){.seq = 1}), 0); /* unread input */
    nap_ms(50);
    int fd = mw_stream_fd(mw_clt_conn(c)->stream);
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    mw_clt_free(c); /* RST */
    nap_ms(50);
    double t0 = cpu_s();
    nap_ms(500);
    double used = cpu_s() - t0;
    printf("paused + RST: %.0f ms of CPU in 500 ms; closes %u\n", used * 1000, atomic_load(&f->closes));
    mw_svc_free(f->svc);
    assert_true(used < 0.1);
}

/* 6. abort_conn inside on_close: the slot is released while drv_closed is
 * still using it. */
static void test_abort_inside_on_close(void **st) {
    (void)st;
    rv_t *f = &R;
    memset(f, 0, sizeof *f);
    f->abort_in_close = true;
    svc_start(f, MW_MODE_SPIN, 0);
    mw_clt_t *c = clt(f, MW_MODE_SPIN, NULL, NULL, 0);
    for (int i = 0; i < 100000 && !accepted1(f); i++) mw_svc_poll(f->svc, 0);
    assert_int_equal(mw_svc_close_conn(f->svc, atomic_load(&f->id)), 0);
    mw_svc_stats_t b;
    mw_svc_stats(f->svc, &b);
    printf("abort in on_close: accepted %llu closed %llu conns %llu closes %u\n", (unsigned long long)b.accepted,
           (unsigned long long)b.closed, (unsigned long long)b.connections, atomic_load(&f->closes));
    mw_clt_free(c);
    mw_svc_free(f->svc);
}


/* 7. Spin Svc: send_to -> MW_EAGAIN, then mw_svc_flush until 0 (the client
 * reads): on_drain never fires, and slow_consumer_ns closes the healthy
 * connection with MW_ESLOW. */
static void test_flush_after_eagain_no_false_eslow(void **st) {
    (void)st;
    rv_t *f = &R;
    memset(f, 0, sizeof *f);
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.mode = MW_MODE_SPIN;
    o.conn.max_msg = 1024;
    o.conn.tx_buf = 16 * 1024;
    o.tcp.sndbuf = 4096;
    o.slow_consumer_ns = 100 * MW_NS_PER_MS;
    o.on_accept = sv_accept; o.on_msg = sv_msg; o.on_close = sv_close; o.on_drain = sv_drain;
    o.ud = f;
    mw_err_t err;
    assert_int_equal(mw_svc_listen(&f->svc, "tcp://127.0.0.1:0", &test_protocol, &o, &err), 0);
    mw_clt_t *c = clt(f, MW_MODE_SPIN, NULL, NULL, 4096);
    for (int i = 0; i < 100000 && !accepted1(f); i++) mw_svc_poll(f->svc, 0);
    mw_conn_id_t id = atomic_load(&f->id);
    uint64_t sent = 0;
    int r;
    while ((r = mw_svc_send_to(f->svc, id, ping_schema(), &(ping_t){.seq = sent + 1})) == 0) sent++;
    assert_int_equal(r, MW_EAGAIN);
    uint64_t got = 0;
    while ((r = mw_svc_flush(f->svc, id)) != 0 || got < sent) { /* the client reads; the Svc flushes */
        assert_true(r == 0 || r == MW_EAGAIN);
        const mw_schema_t *sch; test_msg_t m;
        if (mw_clt_recv(c, &sch, &m, sizeof m) == 0) got++;
    }
    uint64_t dl = mw_deadline_in(NULL, 400 * MW_NS_PER_MS);
    while (!mw_deadline_passed(NULL, dl)) mw_svc_poll(f->svc, MW_NS_PER_MS);
    printf("queue empty, client read all %llu; on_drain %u; closes %u (reason %s)\n", (unsigned long long)got,
           atomic_load(&f->drains), atomic_load(&f->closes), mw_errname(atomic_load(&f->reason)));
    mw_clt_free(c);
    mw_svc_free(f->svc);
    assert_int_equal(atomic_load(&f->closes), 0);
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
static void solo_case(mw_mode_t mode) {
    rv_t *f = &R;
    memset(f, 0, sizeof *f);
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
        uint64_t dl = mw_deadline_in(NULL, 20 * MW_NS_PER_S);
        while (f->next <= f->total && !mw_deadline_passed(NULL, dl)) {
            mw_conn_id_t id; const mw_schema_t *sch; test_msg_t m;
            if (mw_svc_recv(f->svc, &id, &sch, &m, sizeof m) == 0) sv_msg(f->svc, id, sch, &m, f);
        }
        for (int i = 0; i < 200; i++) mw_svc_poll(f->svc, MW_NS_PER_MS); /* the last ones */
    }
    pthread_join(th, &res);
    printf("%s Svc: %llu of 20000 replies (next %llu) to a reading client in %llu ms (drains %u)\n", mw_mode_name(mode), (unsigned long long)(uintptr_t)res, (unsigned long long)f->next,
           (unsigned long long)((mw_now_ns() - t0) / MW_NS_PER_MS), atomic_load(&f->drains));
    mw_clt_free(c);
    mw_svc_free(f->svc);
    assert_int_equal((uintptr_t)res, 20000);
}
static void test_solo_blocking_flood(void **st) { (void)st; solo_case(MW_MODE_BLOCKING); }
static void test_event_flood(void **st) { (void)st; solo_case(MW_MODE_EVENT); }


/* 9. broadcast reaches a connection that on_close already reported closed
 * (lingering slot: used, and make_id gives the bumped generation). */
static void test_broadcast_skips_closed(void **st) {
    (void)st;
    rv_t *f = &R;
    memset(f, 0, sizeof *f);
    g_timeout = -1;
    f->flood = true;
    f->total = 1000000;
    svc_start(f, MW_MODE_SPIN, 4096);
    mw_clt_t *c = clt(f, MW_MODE_SPIN, NULL, NULL, 4096);
    assert_int_equal(mw_clt_send(c, ping_schema(), &(ping_t){.seq = 0}), 0);
    for (int i = 0; i < 1000000 && !eagain1(f); i++) {
        mw_conn_id_t id2; const mw_schema_t *sch; test_msg_t m;
        if (mw_svc_recv(f->svc, &id2, &sch, &m, sizeof m) == 0) sv_msg(f->svc, id2, sch, &m, f);
    }
    assert_true(eagain1(f));
    f->total = 0; /* no more pumping */
    mw_conn_id_t id = atomic_load(&f->id);
    assert_int_equal(mw_svc_close_conn(f->svc, id), 0);
    assert_int_equal(atomic_load(&f->closes), 1);
    int n = mw_svc_broadcast(f->svc, ping_schema(), &(ping_t){.seq = 42});
    mw_conn_id_t next = ((id >> 32) + 1) << 32 | (uint32_t)id;
    int sr = mw_svc_send_to(f->svc, next, ping_schema(), &(ping_t){.seq = 43});
    printf("after on_close: broadcast accepted by %d connection(s); send_to(gen+1 id) = %s\n", n, mw_errname(sr));
    mw_clt_free(c);
    mw_svc_free(f->svc);
    assert_int_equal(sr, MW_ECLOSED); /* the id a closed connection never had must be unknown */
    assert_int_equal(n, 0);
}


/* 10. Blocking Svc, its only client paused: recv spins instead of waiting. */
static void test_blocking_recv_with_paused_solo_waits(void **st) {
    (void)st;
    rv_t *f = &R;
    memset(f, 0, sizeof *f);
    f->pause = true;
    g_timeout = 300 * MW_NS_PER_MS;
    svc_start(f, MW_MODE_BLOCKING, 0);
    mw_clt_t *c = clt(f, MW_MODE_SPIN, NULL, NULL, 0);
    for (int i = 0; i < 1000 && !accepted1(f); i++) mw_svc_poll(f->svc, MW_NS_PER_MS);
    assert_true(accepted1(f));
    assert_int_equal(mw_clt_send(c, ping_schema(), &(ping_t){.seq = 1}), 0);
    mw_conn_id_t id; const mw_schema_t *sch; test_msg_t m;
    (void)mw_svc_recv(f->svc, &id, &sch, &m, sizeof m); /* settle into solo */
    struct timespec a, b;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    uint64_t t0 = mw_now_ns();
    int r = mw_svc_recv(f->svc, &id, &sch, &m, sizeof m);
    uint64_t wall = mw_now_ns() - t0;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    double cpu = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    printf("blocking recv, one paused client: %s after %llu ms wall, %.0f ms CPU\n", mw_errname(r),
           (unsigned long long)(wall / MW_NS_PER_MS), cpu);
    mw_clt_free(c);
    mw_svc_free(f->svc);
    g_timeout = -1;
    assert_true(cpu < 50);
}


/* 11. mw_svc_free while a connection lingers on a worker. */
static void test_free_while_lingering(void **st) {
    (void)st;
    rv_t *f = &R;
    memset(f, 0, sizeof *f);
    f->flood = true;
    f->total = 100000;
    g_timeout = -1;
    svc_start(f, MW_MODE_EVENT, 4096);
    mw_clt_t *c = clt(f, MW_MODE_SPIN, NULL, NULL, 4096);
    assert_int_equal(mw_clt_send(c, ping_schema(), &(ping_t){.seq = 0}), 0);
    assert_true(mw_wait_until(eagain1, f, 5000));
    assert_int_equal(mw_svc_close_conn(f->svc, atomic_load(&f->id)), 0);
    assert_true(mw_wait_until(closed1, f, 5000));
    mw_svc_free(f->svc);
    mw_clt_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats_while_lingering),
        cmocka_unit_test(test_clt_on_drain_after_send),
        cmocka_unit_test(test_clt_on_drain_after_send_more),
        cmocka_unit_test(test_linger_after_half_close_does_not_spin),
        cmocka_unit_test(test_paused_conn_reset_by_peer),
        cmocka_unit_test(test_flush_after_eagain_no_false_eslow),
        cmocka_unit_test(test_solo_blocking_flood),
        cmocka_unit_test(test_event_flood),
        cmocka_unit_test(test_broadcast_skips_closed),
        cmocka_unit_test(test_blocking_recv_with_paused_solo_waits),
        cmocka_unit_test(test_free_while_lingering),
        cmocka_unit_test(test_abort_inside_on_close),
    };
    if (getenv("ONLY")) cmocka_set_test_filter(getenv("ONLY"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
