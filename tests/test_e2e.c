/* test_e2e.c - a Svc and its Clts over TCP loopback, one test body run over
 * the matrix run mode x serdes (x worker backend in event mode).
 *
 * The Svc listens on tcp://127.0.0.1:0 and echoes every message back to its
 * sender. Each Clt sends N messages (all_kinds and ping, every field varied,
 * extremes included) with at most WINDOW unanswered, and checks every echo
 * field by field against what it sent, in order.
 *
 *   spin      the Svc runs mw_svc_recv on its own thread (yielding when idle,
 *             stopped by a flag); the Clt polls send/recv in the test thread.
 *   blocking  the same with blocking calls; every wait has a timeout.
 *   event     the Svc runs on worker threads (epoll or libevent); the Clts
 *             are attached to one io the test runs with mw_io_start, and
 *             check echoes in on_msg. One case per backend has 3 workers and
 *             several Clts.
 *
 * Nothing sleeps: waits are polls bounded by a deadline.
 */
#include "mw_test.h"
#include "test_proto.h"

#include "mw_clock.h"
#include "mw_clt.h"
#include "mw_svc.h"

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW 64              /* messages in flight per Clt */
#define N_ONE 2000             /* messages per case with one Clt */
#define N_MANY 600             /* messages per Clt with several Clts */
#define MAX_CLTS 4
#define CASE_DEADLINE_NS (30 * MW_NS_PER_S)
#define WHY_CAP 256

/* ---- the matrix ------------------------------------------------------------- */

typedef struct e2e_case {
    char name[64];
    mw_mode_t mode;
    const char *serdes;
    const char *backend; /* event mode: workers' and Clts' selector */
    uint32_t workers;
    int nclts;
    uint64_t n; /* messages per Clt */
} e2e_case_t;

/* First error seen on any thread, reported by the test thread. */
typedef struct failure {
    atomic_int set;
    char why[WHY_CAP];
} failure_t;

static void fail_once(failure_t *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail_once(failure_t *f, const char *fmt, ...) {
    int expect = 0;
    if (!atomic_compare_exchange_strong(&f->set, &expect, 1)) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->why, sizeof f->why, fmt, ap);
    va_end(ap);
    atomic_store(&f->set, 2); /* text complete */
}

static void assert_no_failure(failure_t *f) {
    if (atomic_load(&f->set) == 0) return;
    while (atomic_load(&f->set) != 2) sched_yield();
    fail_msg("%s", f->why);
}

/* ---- the echo Svc ----------------------------------------------------------- */

typedef struct echo_svc {
    mw_svc_t *svc;
    mw_mode_t mode;
    pthread_t th;
    bool th_started;
    atomic_bool stop;
    atomic_ulong echoed;
    failure_t *fail;
} echo_svc_t;

static void on_svc_msg(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg, void *ud) {
    echo_svc_t *e = ud;
    int r = mw_svc_send_to(s, id, sch, msg);
    if (r == 0) atomic_fetch_add(&e->echoed, 1);
    else fail_once(e->fail, "svc on_msg: send_to %s: %s", mw_errname(r), mw_svc_conn_error(s, id));
}

static void on_svc_close(mw_svc_t *s, mw_conn_id_t id, int reason, void *ud) {
    echo_svc_t *e = ud;
    if (reason != MW_ECLOSED && reason != MW_ESTATE)
        fail_once(e->fail, "svc closed a connection: %s: %s", mw_errname(reason), mw_svc_conn_error(s, id));
}

/* Spin/blocking echo: the socket may be momentarily full, so poll (which
 * flushes) and retry within a deadline. */
static void echo_one(echo_svc_t *e, mw_conn_id_t id, const mw_schema_t *sch, const void *msg) {
    uint64_t dl = mw_deadline_in(NULL, 5 * MW_NS_PER_S);
    int r;
    while ((r = mw_svc_send_to(e->svc, id, sch, msg)) == MW_EAGAIN && !mw_deadline_passed(NULL, dl)) {
        mw_svc_poll(e->svc, e->mode == MW_MODE_SPIN ? 0 : MW_NS_PER_MS);
        sched_yield();
    }
    if (r == 0) atomic_fetch_add(&e->echoed, 1);
    else fail_once(e->fail, "svc: send_to %s: %s", mw_errname(r), mw_svc_conn_error(e->svc, id));
}

static void *svc_loop(void *arg) {
    echo_svc_t *e = arg;
    test_msg_t m;
    while (!atomic_load_explicit(&e->stop, memory_order_relaxed)) {
        mw_conn_id_t id;
        const mw_schema_t *sch;
        int r = mw_svc_recv(e->svc, &id, &sch, &m, sizeof m);
        if (r == 0) {
            echo_one(e, id, sch, &m);
        } else if (r == MW_EAGAIN) {
            sched_yield(); /* two spinning threads must not starve a 2-core box */
        } else if (r != MW_ETIMEDOUT) {
            fail_once(e->fail, "svc: recv %s: %s", mw_errname(r), mw_svc_last_error(e->svc));
            break;
        }
    }
    return NULL;
}

static void echo_svc_start(echo_svc_t *e, const e2e_case_t *c, failure_t *f) {
    memset(e, 0, sizeof *e);
    e->mode = c->mode;
    e->fail = f;
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.mode = c->mode;
    o.conn.serdes = c->serdes;
    o.timeout_ns = 20 * MW_NS_PER_MS; /* blocking recv: wake up to check the stop flag */
    o.workers = c->workers;
    o.backend = c->backend;
    o.on_msg = on_svc_msg;
    o.on_close = on_svc_close;
    o.ud = e;
    mw_err_t err = {0};
    int r = mw_svc_listen(&e->svc, "tcp://127.0.0.1:0", &test_protocol, &o, &err);
    if (r != 0) fail_msg("svc listen: %s: %s", mw_errname(r), mw_err_text(&err));
    assert_true(mw_svc_port(e->svc) > 0);
    if (c->mode != MW_MODE_EVENT) {
        assert_int_equal(pthread_create(&e->th, NULL, svc_loop, e), 0);
        e->th_started = true;
    }
}

static void echo_svc_stop(echo_svc_t *e) {
    atomic_store(&e->stop, true);
    if (e->th_started) pthread_join(e->th, NULL);
    mw_svc_free(e->svc);
}

/* ---- the Clts ----------------------------------------------------------------- */

typedef struct clt_side {
    mw_clt_t *clt;
    uint64_t sent;
    atomic_ulong recvd;
    atomic_int close_reason;
    failure_t *fail;
    int index;
} clt_side_t;

static void on_clt_msg(mw_clt_t *c, const mw_schema_t *s, const void *msg, void *ud) {
    (void)c;
    clt_side_t *cs = ud;
    char why[WHY_CAP];
    uint64_t i = atomic_load_explicit(&cs->recvd, memory_order_relaxed);
    if (!test_check_echo(i, s, msg, why, sizeof why)) fail_once(cs->fail, "clt %d: %s", cs->index, why);
    atomic_store_explicit(&cs->recvd, i + 1, memory_order_release);
}

static void on_clt_close(mw_clt_t *c, int reason, void *ud) {
    clt_side_t *cs = ud;
    atomic_store(&cs->close_reason, reason);
    fail_once(cs->fail, "clt %d closed: %s: %s", cs->index, mw_errname(reason), mw_clt_last_error(c));
}

static void clt_connect(clt_side_t *cs, const e2e_case_t *c, int port, mw_io_t *io) {
    mw_clt_opts_t o;
    mw_clt_opts_init(&o);
    o.mode = c->mode;
    o.conn.serdes = c->serdes;
    o.timeout_ns = 5 * MW_NS_PER_S; /* blocking: nothing waits forever */
    o.io = io;
    o.on_msg = on_clt_msg;
    o.on_close = on_clt_close;
    o.ud = cs;
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    mw_err_t err = {0};
    int r = mw_clt_connect(&cs->clt, url, &test_protocol, &o, &err);
    if (r != 0) fail_msg("clt connect %s: %s: %s", url, mw_errname(r), mw_err_text(&err));
    assert_int_equal(mw_clt_mode(cs->clt), c->mode);
}

/* Sends while the window has room. Returns true if it sent anything. */
static bool fill_window(clt_side_t *cs, uint64_t n) {
    bool progress = false;
    while (cs->sent < n && cs->sent - atomic_load_explicit(&cs->recvd, memory_order_acquire) < WINDOW) {
        test_msg_t m;
        const mw_schema_t *s = test_make_msg(cs->sent, &m);
        int r = mw_clt_send(cs->clt, s, &m);
        if (r == MW_EAGAIN) break;
        if (r != 0) fail_msg("clt %d: send msg %" PRIu64 ": %s: %s", cs->index, cs->sent, mw_errname(r),
                             mw_clt_last_error(cs->clt));
        cs->sent++;
        progress = true;
    }
    return progress;
}

/* Spin and blocking: the test thread sends and receives. */
static void run_polled_clt(clt_side_t *cs, uint64_t n, failure_t *f) {
    uint64_t dl = mw_deadline_in(NULL, CASE_DEADLINE_NS);
    test_msg_t m;
    while (atomic_load(&cs->recvd) < n) {
        bool progress = fill_window(cs, n);
        int r = mw_clt_flush(cs->clt);
        if (r != 0 && r != MW_EAGAIN) fail_msg("clt flush: %s: %s", mw_errname(r), mw_clt_last_error(cs->clt));
        const mw_schema_t *s;
        r = mw_clt_recv(cs->clt, &s, &m, sizeof m);
        if (r == 0) {
            on_clt_msg(cs->clt, s, &m, cs);
            progress = true;
        } else if (r != MW_EAGAIN) {
            fail_msg("clt recv after %" PRIu64 " echoes: %s: %s", atomic_load(&cs->recvd), mw_errname(r),
                     mw_clt_last_error(cs->clt));
        }
        assert_no_failure(f);
        if (!progress) {
            if (mw_deadline_passed(NULL, dl))
                fail_msg("timed out: sent %" PRIu64 ", echoed %" PRIu64, cs->sent, atomic_load(&cs->recvd));
            sched_yield();
        }
    }
}

/* Event: the io thread checks echoes in on_msg; the test thread keeps every
 * Clt's window full (sends from a thread other than the io's). */
static void run_event_clts(clt_side_t *cs, int nclts, uint64_t n, failure_t *f) {
    uint64_t dl = mw_deadline_in(NULL, CASE_DEADLINE_NS);
    for (;;) {
        bool progress = false, done = true;
        for (int k = 0; k < nclts; k++) {
            progress |= fill_window(&cs[k], n);
            done &= atomic_load(&cs[k].recvd) == n;
        }
        assert_no_failure(f);
        if (done) return;
        if (!progress) {
            if (mw_deadline_passed(NULL, dl))
                fail_msg("timed out: clt 0 sent %" PRIu64 ", echoed %" PRIu64, cs[0].sent,
                         atomic_load(&cs[0].recvd));
            sched_yield();
        }
    }
}

/* Everything a case holds, torn down by the fixture even when the case fails
 * half-way (threads stopped before the memory they use goes). */
typedef struct run {
    const e2e_case_t *c;
    failure_t f;
    echo_svc_t e;
    bool svc_up;
    mw_io_t *io;
    clt_side_t cs[MAX_CLTS];
} run_t;

static bool echoed_all(void *ud) {
    const run_t *r = ud;
    return atomic_load(&r->e.echoed) == r->c->n * (uint64_t)r->c->nclts;
}

static void test_echo_matrix(void **state) {
    run_t *r = *state;
    const e2e_case_t *c = r->c;
    echo_svc_start(&r->e, c, &r->f);
    r->svc_up = true;
    if (c->mode == MW_MODE_EVENT) {
        mw_io_opts_t io_o;
        mw_io_opts_init(&io_o);
        io_o.backend = c->backend;
        mw_err_t err = {0};
        if (mw_io_new(&r->io, &io_o, &err) != 0) fail_msg("io: %s", mw_err_text(&err));
        assert_string_equal(mw_io_backend(r->io), c->backend);
        assert_int_equal(mw_io_start(r->io, NULL), 0);
    }
    clt_side_t *cs = r->cs;
    for (int k = 0; k < c->nclts; k++) {
        cs[k].fail = &r->f;
        cs[k].index = k;
        clt_connect(&cs[k], c, mw_svc_port(r->e.svc), r->io);
    }
    if (c->mode == MW_MODE_EVENT) run_event_clts(cs, c->nclts, c->n, &r->f);
    else run_polled_clt(&cs[0], c->n, &r->f);

    for (int k = 0; k < c->nclts; k++) {
        assert_int_equal(atomic_load(&cs[k].recvd), c->n);
        assert_int_equal(cs[k].sent, c->n);
        assert_true(mw_clt_is_open(cs[k].clt));
        mw_conn_stats_t st;
        mw_clt_stats(cs[k].clt, &st);
        assert_int_equal(st.msgs_out, c->n);
        assert_int_equal(st.msgs_in, c->n);
    }
    /* The Svc counts an echo after send_to returns, which may be after the
     * Clt already has it. */
    assert_true(mw_wait_until(echoed_all, r, 5000));
    mw_svc_stats_t ss;
    mw_svc_stats(r->e.svc, &ss);
    assert_int_equal(ss.accepted, (uint64_t)c->nclts);
    assert_int_equal(ss.closed_bad_input, 0);
    assert_int_equal(mw_svc_conn_count(r->e.svc), (uint32_t)c->nclts);
    assert_no_failure(&r->f);
}

static int run_setup(void **state) {
    run_t *r = calloc(1, sizeof *r);
    if (!r) return -1;
    r->c = *state;
    *state = r;
    return 0;
}

/* Event mode: stop the io before closing its Clts (close detaches), free the
 * io (it may run posts that look at the Clts), then free them. */
static int run_teardown(void **state) {
    run_t *r = *state;
    if (r->io) mw_io_stop(r->io);
    for (int k = 0; k < MAX_CLTS; k++) mw_clt_close(r->cs[k].clt);
    mw_io_free(r->io);
    for (int k = 0; k < MAX_CLTS; k++) mw_clt_free(r->cs[k].clt);
    if (r->svc_up) echo_svc_stop(&r->e);
    free(r);
    return 0;
}

/* ---- registration ------------------------------------------------------------- */

static const char *const serdes_names[] = {"fixed", "text", "msgpack", "msgpack-array"};
static const char *const backends[] = {"epoll", "libevent"};
#define NSERDES 4
#define NBACKENDS 2
#define NCASES (2 * NSERDES + NBACKENDS * NSERDES + NBACKENDS * 2)

static e2e_case_t cases[NCASES];
static struct CMUnitTest tests[NCASES];

static void add_case(int *n, mw_mode_t mode, const char *serdes, const char *backend, uint32_t workers,
                     int nclts) {
    e2e_case_t *c = &cases[*n];
    c->mode = mode;
    c->serdes = serdes;
    c->backend = backend;
    c->workers = workers;
    c->nclts = nclts;
    c->n = nclts > 1 ? N_MANY : N_ONE;
    if (mode == MW_MODE_EVENT)
        snprintf(c->name, sizeof c->name, "test_e2e_echo_%s_%s_%s_%uw_%dclt", mw_mode_name(mode), backend,
                 serdes, workers, nclts);
    else
        snprintf(c->name, sizeof c->name, "test_e2e_echo_%s_%s", mw_mode_name(mode), serdes);
    tests[*n] = (struct CMUnitTest){c->name, test_echo_matrix, run_setup, run_teardown, c};
    (*n)++;
}

int main(void) {
    int n = 0;
    for (int s = 0; s < NSERDES; s++) add_case(&n, MW_MODE_SPIN, serdes_names[s], NULL, 0, 1);
    for (int s = 0; s < NSERDES; s++) add_case(&n, MW_MODE_BLOCKING, serdes_names[s], NULL, 0, 1);
    for (int b = 0; b < NBACKENDS; b++)
        for (int s = 0; s < NSERDES; s++) add_case(&n, MW_MODE_EVENT, serdes_names[s], backends[b], 1, 1);
    for (int b = 0; b < NBACKENDS; b++) {
        add_case(&n, MW_MODE_EVENT, "fixed", backends[b], 3, MAX_CLTS);
        add_case(&n, MW_MODE_EVENT, "text", backends[b], 3, MAX_CLTS);
    }
    if (n != NCASES) {
        fprintf(stderr, "test_e2e: %d cases registered, %d expected\n", n, NCASES);
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
