/* test_onelock.c - one lock on every send path (issue 8's tx-lock rule).
 *
 * An event-mode connection that any thread may send on has one lock (the
 * Svc slot's, the Clt's), shared by the message connection and the TLS and
 * WebSocket decorators under it (core/lock_impl.h). The sanitizer build
 * counts every lock a thread takes (mw__locks_taken: the shared lock, the
 * TLS and WebSocket streams' own locks, a session's mutex), so these tests
 * count the locks of each send path: Svc send_to, send_more, flush,
 * broadcast (from another thread and from inside on_msg), the event Clt's
 * send, and with a session send_to and mw_svc_session_send.
 *
 * Then the stress: several threads send to one connection at once (each its
 * own numbered stream), a blocking Clt receives: nothing lost, nothing
 * twice, in order per sender; and again with a close_conn racing the
 * senders (what was accepted before the close arrives, in order; no crash
 * under ASan). Over tcp and wss, with and without a session.
 */
#include "mw_test.h"
#include "test_proto.h"

#include "lock_impl.h"
#include "mw_clock.h"
#include "mw_clt.h"
#include "mw_io.h"
#include "mw_svc.h"
#include "clock_impl.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NSEND 4
#define WAIT_NS (20 * MW_NS_PER_S)

typedef struct fx {
    const char *scheme;
    bool sess;
    char dir[128]; /* sessions: journals in dir/svc and dir/clt */
    char sdir[160], cdir[160];
    mw_svc_t *svc;
    mw_clt_t *clt;
    char url[128];
    _Atomic mw_conn_id_t id;
    atomic_int got;       /* messages the Svc received */
    atomic_long cb_locks; /* locks of the send_to inside on_msg */
    atomic_int cb_rc;
    /* stress */
    atomic_bool go, stop;
    atomic_ullong accepted[NSEND]; /* sends that returned 0, per sender */
    atomic_ullong refused[NSEND];  /* sends that returned MW_EAGAIN (queue full), per sender */
    atomic_int send_err;
    uint64_t rcvd[NSEND];
    int bad;
    char why[200];
    atomic_int closes;
} fx_t;

static bool is_tls(const char *s) { return strcmp(s, "wss") == 0 || strcmp(s, "tls") == 0; }
static bool is_ws(const char *s) { return strncmp(s, "ws", 2) == 0; }

static void svc_msg(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg, void *ud) {
    (void)sch;
    (void)msg;
    fx_t *f = ud;
    if (atomic_fetch_add(&f->got, 1) == 0) { /* the first: a reply from inside the callback */
        ping_t p = {.seq = UINT64_MAX, .sent_ns = 0};
        unsigned long before = mw__locks_taken;
        atomic_store(&f->cb_rc, mw_svc_send_to(s, id, ping_schema(), &p));
        atomic_store(&f->cb_locks, (long)(mw__locks_taken - before));
        atomic_store(&f->id, id);
    }
}

static void svc_close(mw_svc_t *s, mw_conn_id_t id, int reason, void *ud) {
    (void)s;
    (void)id;
    (void)reason;
    atomic_fetch_add(&((fx_t *)ud)->closes, 1);
}

static bool have_id(void *ud) { return atomic_load(&((fx_t *)ud)->id) != 0; }

static void start(fx_t *f, const char *scheme, bool sess) {
    memset(f, 0, sizeof *f);
    f->scheme = scheme;
    f->sess = sess;
    if (sess) {
        snprintf(f->dir, sizeof f->dir, "/tmp/mw_onelock_XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->sdir, sizeof f->sdir, "%s/svc", f->dir);
        snprintf(f->cdir, sizeof f->cdir, "%s/clt", f->dir);
        assert_int_equal(mkdir(f->sdir, 0700), 0);
        assert_int_equal(mkdir(f->cdir, 0700), 0);
    }
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.mode = MW_MODE_EVENT;
    o.event.workers = 1;
    o.linger_ns = 5 * MW_NS_PER_S;
    o.event.on_msg = svc_msg;
    o.on_close = svc_close;
    o.ud = f;
    if (is_tls(scheme)) {
        o.tr.tls.cert_file = mw_test_cert("srv.pem");
        o.tr.tls.key_file = mw_test_cert("srv.key");
    }
    if (is_ws(scheme)) o.tr.ws.expect_path = "/x";
    if (sess) {
        o.session.enabled = true;
        o.session.journal_dir = f->sdir;
    }
    char url[96];
    snprintf(url, sizeof url, "%s://127.0.0.1:0%s", scheme, is_ws(scheme) ? "/x" : "");
    mw_err_t err = {0};
    int r = mw_svc_listen(&f->svc, url, &test_protocol, &o, &err);
    if (r) fail_msg("listen %s: %s", url, mw_err_text(&err));
    snprintf(f->url, sizeof f->url, "%s://127.0.0.1:%d%s", scheme, mw_svc_port(f->svc), is_ws(scheme) ? "/x" : "");

    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    co.mode = MW_MODE_BLOCKING;
    co.sync.timeout_ns = 100 * MW_NS_PER_MS;
    co.connect_timeout_ns = WAIT_NS;
    if (is_tls(scheme)) co.tr.tls.ca_file = mw_test_cert("ca.pem");
    if (sess) {
        co.session.enabled = true;
        co.session.journal_dir = f->cdir;
        co.session.id = "T1";
        /* this blocking client calls nothing while the senders fill the
         * queue (that phase can take seconds on a loaded box): no
         * "peer silent" close meanwhile (the Svc takes the client's) */
        co.session.heartbeat_ns = 60 * MW_NS_PER_S;
    }
    r = mw_clt_connect(&f->clt, f->url, &test_protocol, &co, &err);
    if (r) fail_msg("connect %s: %s", f->url, mw_err_text(&err));
    ping_t p = {.seq = 0};
    assert_int_equal(mw_clt_send(f->clt, ping_schema(), &p), 0);
    assert_true(mw_wait_until(have_id, f, 10000));
    /* the reply sent inside on_msg */
    const mw_schema_t *sch;
    test_msg_t m;
    uint64_t dl = mw__deadline_in(NULL, WAIT_NS);
    while ((r = mw_clt_recv(f->clt, &sch, &m, sizeof m)) != 0) {
        if (r != MW_EAGAIN && r != MW_ETIMEDOUT) fail_msg("recv: %s", mw_errname(r));
        if (mw__deadline_passed(NULL, dl)) fail_msg("no reply");
    }
    assert_int_equal(m.ping.seq, UINT64_MAX);
}

static void stop(fx_t *f) {
    mw_clt_free(f->clt);
    mw_svc_free(f->svc);
    if (f->sess) mw_tmpdir_remove(f->dir);
}

/* ---- lock counts ---------------------------------------------------------------- */

static unsigned long locks_of(int (*fn)(fx_t *), fx_t *f, int *rc) {
    unsigned long before = mw__locks_taken;
    *rc = fn(f);
    return mw__locks_taken - before;
}

static int do_send(fx_t *f) {
    ping_t p = {.seq = UINT64_MAX};
    return mw_svc_send_to(f->svc, atomic_load(&f->id), ping_schema(), &p);
}
static int do_more(fx_t *f) {
    ping_t p = {.seq = UINT64_MAX};
    return mw_svc_send_more(f->svc, atomic_load(&f->id), ping_schema(), &p);
}
static int do_flush(fx_t *f) { return mw_svc_flush(f->svc, atomic_load(&f->id)); }
static int do_bcast(fx_t *f) {
    ping_t p = {.seq = UINT64_MAX};
    return mw_svc_broadcast(f->svc, ping_schema(), &p) == 1 ? 0 : -1;
}
static int do_sess_send(fx_t *f) {
    ping_t p = {.seq = UINT64_MAX};
    return mw_svc_session_send(f->svc, "T1", ping_schema(), &p, NULL);
}

static void counts(const char *scheme, bool sess) {
    fx_t *f = calloc(1, sizeof *f);
    start(f, scheme, sess);
    /* one lock per send path, with a session too (its lock is the connection's) */
    unsigned long want = 1;
    int rc;
    unsigned long n;
    printf("  locks per send over %s%s:", scheme, sess ? " with a session" : "");
    n = locks_of(do_send, f, &rc);
    printf(" send_to %lu", n);
    assert_int_equal(rc, 0);
    assert_true(n <= want);
    n = locks_of(do_more, f, &rc);
    printf(", send_more %lu", n);
    assert_int_equal(rc, 0);
    assert_true(n <= want);
    n = locks_of(do_flush, f, &rc);
    printf(", flush %lu", n);
    assert_true(rc == 0 || rc == MW_EAGAIN);
    assert_true(n <= 1);
    n = locks_of(do_bcast, f, &rc);
    printf(", broadcast %lu", n);
    assert_int_equal(rc, 0);
    assert_true(n <= want);
    if (sess) {
        n = locks_of(do_sess_send, f, &rc);
        printf(", session_send %lu", n);
        assert_int_equal(rc, 0);
        assert_true(n <= want);
    }
    printf(", send_to inside on_msg %ld\n", atomic_load(&f->cb_locks));
    assert_int_equal(atomic_load(&f->cb_rc), 0);
    assert_true((unsigned long)atomic_load(&f->cb_locks) <= want);
    stop(f);
    free(f);
}

static void test_onelock_counts_tcp(void **state) { (void)state; counts("tcp", false); }
static void test_onelock_counts_ws(void **state) { (void)state; counts("ws", false); }
static void test_onelock_counts_wss(void **state) { (void)state; counts("wss", false); }
static void test_onelock_counts_tcp_session(void **state) { (void)state; counts("tcp", true); }
static void test_onelock_counts_wss_session(void **state) { (void)state; counts("wss", true); }

/* The event Clt: its send from an application thread while an io thread
 * runs the connection takes one lock. */
static atomic_int clt_up;
static void on_up(mw_clt_t *c, void *ud) {
    (void)c;
    (void)ud;
    atomic_store(&clt_up, 1);
}
static bool is_up(void *ud) {
    (void)ud;
    return atomic_load(&clt_up) != 0;
}

static void clt_counts(const char *scheme, bool sess) {
    fx_t *f = calloc(1, sizeof *f);
    start(f, scheme, sess);
    char cdir2[200];
    mw_io_t *io;
    mw_err_t err = {0};
    assert_int_equal(mw_io_new(&io, NULL, &err), 0);
    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    co.mode = MW_MODE_EVENT;
    co.event.io = io;
    co.event.on_connect = on_up;
    co.connect_timeout_ns = WAIT_NS;
    if (is_tls(scheme)) co.tr.tls.ca_file = mw_test_cert("ca.pem");
    if (sess) {
        snprintf(cdir2, sizeof cdir2, "%s/clt2", f->dir);
        assert_int_equal(mkdir(cdir2, 0700), 0);
        co.session.enabled = true;
        co.session.journal_dir = cdir2;
        co.session.id = "T2";
    }
    atomic_store(&clt_up, 0);
    mw_clt_t *c;
    int r = mw_clt_connect(&c, f->url, &test_protocol, &co, &err);
    if (r) fail_msg("connect: %s", mw_err_text(&err));
    assert_int_equal(mw_io_start(io, NULL), 0);
    assert_true(mw_wait_until(is_up, NULL, 10000));
    ping_t p = {.seq = 1};
    unsigned long before = mw__locks_taken;
    r = mw_clt_send(c, ping_schema(), &p);
    unsigned long n = mw__locks_taken - before;
    printf("  locks per event Clt send over %s%s: %lu\n", scheme, sess ? " with a session" : "", n);
    assert_int_equal(r, 0);
    assert_true(n <= 1);
    mw_io_stop(io);
    mw_clt_free(c);
    mw_io_free(io);
    stop(f);
    free(f);
}

static void test_onelock_event_clt_tcp(void **state) { (void)state; clt_counts("tcp", false); }
static void test_onelock_event_clt_wss(void **state) { (void)state; clt_counts("wss", false); }
static void test_onelock_event_clt_tcp_session(void **state) { (void)state; clt_counts("tcp", true); }
static void test_onelock_event_clt_wss_session(void **state) { (void)state; clt_counts("wss", true); }

/* ---- concurrent senders (and a concurrent close) --------------------------------- */

typedef struct sender {
    fx_t *f;
    int k;
    uint64_t n;
} sender_t;

static void *send_main(void *arg) {
    sender_t *a = arg;
    fx_t *f = a->f;
    mw_conn_id_t id = atomic_load(&f->id);
    while (!atomic_load(&f->go)) sched_yield();
    uint64_t dl = mw__deadline_in(NULL, WAIT_NS);
    for (uint64_t i = 1; i <= a->n && !atomic_load(&f->stop);) {
        ping_t p = {.seq = ((uint64_t)a->k << 32) | i, .sent_ns = (uint64_t)a->k};
        int r = mw_svc_send_to(f->svc, id, ping_schema(), &p);
        if (r == 0) {
            atomic_store(&f->accepted[a->k], i);
            i++;
            continue;
        }
        if (r == MW_EAGAIN && !mw__deadline_passed(NULL, dl)) {
            atomic_fetch_add(&f->refused[a->k], 1);
            sched_yield();
            continue;
        }
        if (r != MW_ECLOSED && r != MW_EAGAIN) atomic_store(&f->send_err, r);
        break; /* closed (the racing close) or out of time */
    }
    return NULL;
}

/* Receives until every sender's accepted count arrived (or the end of the
 * connection after a close); checks order per sender. */
static void receive(fx_t *f, bool closing, const pthread_t *th) {
    const mw_schema_t *sch;
    test_msg_t m;
    uint64_t dl = mw__deadline_in(NULL, WAIT_NS * 2);
    bool joined = false;
    for (;;) {
        int r = mw_clt_recv(f->clt, &sch, &m, sizeof m);
        if (r == 0) {
            if (sch != ping_schema() || m.ping.seq == UINT64_MAX) continue;
            uint32_t k = (uint32_t)(m.ping.seq >> 32);
            uint64_t i = m.ping.seq & 0xFFFFFFFFu;
            if (k >= NSEND || i != f->rcvd[k] + 1) {
                if (!f->bad++)
                    snprintf(f->why, sizeof f->why, "sender %u: got %llu after %llu", k, (unsigned long long)i,
                             (unsigned long long)(k < NSEND ? f->rcvd[k] : 0));
                continue;
            }
            f->rcvd[k] = i;
        } else if (r != MW_EAGAIN && r != MW_ETIMEDOUT) {
            break; /* the connection ended */
        }
        if (!joined) {
            bool all = true;
            for (int k = 0; k < NSEND; k++) all = all && f->rcvd[k] == atomic_load(&f->accepted[k]);
            if (all && !closing) {
                /* the senders may not be done: join, then look again */
                for (int k = 0; k < NSEND; k++) pthread_join(th[k], NULL);
                joined = true;
            }
        }
        if (joined) {
            bool all = true;
            for (int k = 0; k < NSEND; k++) all = all && f->rcvd[k] == atomic_load(&f->accepted[k]);
            if (all) break;
        }
        if (mw__deadline_passed(NULL, dl)) break;
    }
    if (!joined)
        for (int k = 0; k < NSEND; k++) pthread_join(th[k], NULL);
}

static void stress(const char *scheme, bool sess, bool close_mid) {
    fx_t *f = calloc(1, sizeof *f);
    start(f, scheme, sess);
    sender_t a[NSEND];
    pthread_t th[NSEND];
    uint64_t per = close_mid ? 200000 : 5000;
    for (int k = 0; k < NSEND; k++) {
        a[k] = (sender_t){f, k, per};
        assert_int_equal(pthread_create(&th[k], NULL, send_main, &a[k]), 0);
    }
    atomic_store(&f->go, true);
    if (close_mid) {
        /* close once every sender has had some accepted, or keeps finding
         * the queue full (the client reads nothing yet: once the socket and
         * the session's backlog are full, a sender that came late gets
         * MW_EAGAIN only; the lock promises no fairness between senders) */
        uint64_t dl = mw__deadline_in(NULL, WAIT_NS);
        for (;;) {
            bool some = true;
            for (int k = 0; k < NSEND; k++)
                some = some && (atomic_load(&f->accepted[k]) > 100 || atomic_load(&f->refused[k]) > 1000);
            if (some || mw__deadline_passed(NULL, dl)) break;
            sched_yield();
        }
        assert_int_equal(mw_svc_close_conn(f->svc, atomic_load(&f->id)), 0);
    }
    receive(f, close_mid, th);
    atomic_store(&f->stop, true);
    if (f->bad) fail_msg("%d out of order: %s", f->bad, f->why);
    assert_int_equal(atomic_load(&f->send_err), 0);
    for (int k = 0; k < NSEND; k++) {
        uint64_t acc = atomic_load(&f->accepted[k]);
        if (!close_mid) assert_int_equal(acc, per);
        /* graceful close: everything accepted before it arrives (a session
         * keeps what the close cut off in its journal for the next logon) */
        if (!sess && f->rcvd[k] != acc)
            fail_msg("sender %d: %llu accepted, %llu received", k, (unsigned long long)acc,
                     (unsigned long long)f->rcvd[k]);
        if (sess) assert_true(f->rcvd[k] <= acc);
    }
    if (close_mid) assert_int_equal(mw_svc_conn_count(f->svc), 0);
    stop(f);
    free(f);
}

static void test_onelock_senders_tcp(void **s) { (void)s; stress("tcp", false, false); }
static void test_onelock_senders_wss(void **s) { (void)s; stress("wss", false, false); }
static void test_onelock_senders_tcp_session(void **s) { (void)s; stress("tcp", true, false); }
static void test_onelock_senders_wss_session(void **s) { (void)s; stress("wss", true, false); }
static void test_onelock_senders_close_tcp(void **s) { (void)s; stress("tcp", false, true); }
static void test_onelock_senders_close_wss(void **s) { (void)s; stress("wss", false, true); }
static void test_onelock_senders_close_tcp_session(void **s) { (void)s; stress("tcp", true, true); }
static void test_onelock_senders_close_wss_session(void **s) { (void)s; stress("wss", true, true); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_onelock_counts_tcp),
        cmocka_unit_test(test_onelock_counts_ws),
        cmocka_unit_test(test_onelock_counts_wss),
        cmocka_unit_test(test_onelock_counts_tcp_session),
        cmocka_unit_test(test_onelock_counts_wss_session),
        cmocka_unit_test(test_onelock_event_clt_tcp),
        cmocka_unit_test(test_onelock_event_clt_wss),
        cmocka_unit_test(test_onelock_event_clt_tcp_session),
        cmocka_unit_test(test_onelock_event_clt_wss_session),
        cmocka_unit_test(test_onelock_senders_tcp),
        cmocka_unit_test(test_onelock_senders_wss),
        cmocka_unit_test(test_onelock_senders_tcp_session),
        cmocka_unit_test(test_onelock_senders_wss_session),
        cmocka_unit_test(test_onelock_senders_close_tcp),
        cmocka_unit_test(test_onelock_senders_close_wss),
        cmocka_unit_test(test_onelock_senders_close_tcp_session),
        cmocka_unit_test(test_onelock_senders_close_wss_session),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
