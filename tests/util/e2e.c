/* e2e.c - the one end-to-end body (see e2e.h). */
#include "e2e.h"
#include "test_proto.h"

#include "mw_clock.h"
#include "mw_clt.h"
#include "mw_svc.h"
#include "mw_tls.h"
#include "mw_ws.h"
#include "clock_impl.h"
#include "clt_impl.h"
#include "io_impl.h"
#include "tls_impl.h"
#include "ws_impl.h"

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CASE_DEADLINE_NS (30 * MW_NS_PER_S)
#define IO_NS (5 * MW_NS_PER_S) /* bound of a blocking call, a connect */
#define WAIT_MS 5000
#define WHY_CAP MW_FAILURE_CAP
#define WS_PATH "/echo"

static bool is_tls(const char *scheme) { return !strcmp(scheme, "tls") || !strcmp(scheme, "wss"); }
static bool is_ws(const char *scheme) { return !strncmp(scheme, "ws", 2); }

/* ---- the echo Svc ---------------------------------------------------------------- */

typedef struct esvc {
    mw_svc_t *svc;
    const e2e_case_t *c;
    pthread_t th;
    bool th_started;
    atomic_bool stop;
    atomic_ulong echoed;
    atomic_int closes;
    mw_failure_t *fail;
} esvc_t;

/* Counts an echo; with reconnect, the n-th ends the first connection (a
 * graceful close: the echo just accepted is still written). */
static void echoed_one(esvc_t *e, mw_svc_t *s, mw_conn_id_t id) {
    uint64_t k = atomic_fetch_add(&e->echoed, 1) + 1;
    if (!e->c->reconnect || k != e->c->n) return;
    int r = mw_svc_close_conn(s, id);
    if (r != 0) mw_fail_once(e->fail, "svc: close_conn: %s", mw_errname(r));
}

static void on_svc_msg(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg, void *ud) {
    esvc_t *e = ud;
    int r = mw_svc_send_to(s, id, sch, msg);
    if (r == 0) echoed_one(e, s, id);
    else mw_fail_once(e->fail, "svc on_msg: send_to %s: %s", mw_errname(r), mw_svc_conn_error(s, id));
}

static void on_svc_close(mw_svc_t *s, mw_conn_id_t id, int reason, void *ud) {
    esvc_t *e = ud;
    atomic_fetch_add(&e->closes, 1);
    if (reason != MW_ECLOSED && reason != MW_ESTATE)
        mw_fail_once(e->fail, "svc closed a connection: %s: %s", mw_errname(reason), mw_svc_conn_error(s, id));
}

/* Spin/blocking echo: the socket may be full for a moment, so poll (which
 * flushes) and retry within a bound. */
static void echo_polled(esvc_t *e, mw_conn_id_t id, const mw_schema_t *sch, const void *msg) {
    uint64_t dl = mw__deadline_in(NULL, IO_NS);
    int r;
    while ((r = mw_svc_send_to(e->svc, id, sch, msg)) == MW_EAGAIN && !mw__deadline_passed(NULL, dl)) {
        mw_svc_poll(e->svc, e->c->mode == MW_MODE_SPIN ? 0 : MW_NS_PER_MS);
        sched_yield();
    }
    if (r == 0) echoed_one(e, e->svc, id);
    else mw_fail_once(e->fail, "svc: send_to %s: %s", mw_errname(r), mw_svc_conn_error(e->svc, id));
}

static void *svc_loop(void *arg) {
    esvc_t *e = arg;
    test_msg_t m;
    while (!atomic_load_explicit(&e->stop, memory_order_relaxed)) {
        mw_conn_id_t id;
        const mw_schema_t *sch;
        int r = mw_svc_recv(e->svc, &id, &sch, &m, sizeof m);
        if (r == 0) {
            echo_polled(e, id, sch, &m);
        } else if (r == MW_EAGAIN) {
            sched_yield(); /* two spinning threads must not starve a 2-core box */
        } else if (r != MW_ETIMEDOUT) {
            mw_fail_once(e->fail, "svc: recv %s: %s", mw_errname(r), mw_svc_last_error(e->svc));
            break;
        }
    }
    return NULL;
}

static void svc_start(esvc_t *e, const e2e_case_t *c, mw_failure_t *f) {
    e->c = c;
    e->fail = f;
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.mode = c->mode;
    o.conn.serdes = c->serdes;
    o.sync.timeout_ns = 20 * MW_NS_PER_MS; /* blocking recv wakes up to look at the stop flag */
    o.event.workers = c->workers;
    o.event.backend = c->mode == MW_MODE_EVENT ? c->backend : NULL;
    if (is_tls(c->scheme)) {
        o.tr.tls.cert_file = mw_test_cert("srv.pem");
        o.tr.tls.key_file = mw_test_cert("srv.key");
    }
    if (is_ws(c->scheme)) o.tr.ws.expect_path = WS_PATH;
    if (c->mode == MW_MODE_EVENT) o.event.on_msg = on_svc_msg; /* else recv pulls */
    o.on_close = on_svc_close;
    o.ud = e;
    char url[96];
    snprintf(url, sizeof url, "%s://127.0.0.1:0%s", c->scheme, is_ws(c->scheme) ? WS_PATH : "");
    mw_err_t err = {0};
    int r = mw_svc_listen(&e->svc, url, &test_protocol, &o, &err);
    if (r != 0) fail_msg("svc listen %s: %s: %s", url, mw_errname(r), mw_err_text(&err));
    assert_true(mw_svc_port(e->svc) > 0);
    if (c->mode != MW_MODE_EVENT) {
        assert_int_equal(pthread_create(&e->th, NULL, svc_loop, e), 0);
        e->th_started = true;
    }
}

static void svc_stop(esvc_t *e) {
    atomic_store(&e->stop, true);
    if (e->th_started) pthread_join(e->th, NULL);
    mw_svc_free(e->svc);
}

/* ---- the Clts ------------------------------------------------------------------- */

typedef struct run run_t;

typedef struct eclt {
    run_t *r;
    int index;
    mw_clt_t *clt;
    uint64_t sent;       /* index of the next message to send */
    atomic_ulong recvd;  /* echoes checked */
    atomic_int connects; /* on_connect (event), connects made (spin/blocking) */
    atomic_int drops;    /* event: the expected close before the reconnect */
} eclt_t;

struct run {
    const e2e_case_t *c;
    mw_failure_t f;
    esvc_t e;
    bool svc_up;
    mw_io_t *io;
    eclt_t cs[E2E_MAX_CLTS];
    char url[96];
};

static void on_clt_msg(mw_clt_t *c, const mw_schema_t *s, const void *msg, void *ud) {
    (void)c;
    eclt_t *cs = ud;
    char why[WHY_CAP];
    uint64_t i = atomic_load_explicit(&cs->recvd, memory_order_relaxed);
    if (!test_check_echo(i, s, msg, why, sizeof why)) mw_fail_once(&cs->r->f, "clt %d: %s", cs->index, why);
    atomic_store_explicit(&cs->recvd, i + 1, memory_order_release);
}

static void on_clt_connect(mw_clt_t *c, void *ud) {
    (void)c;
    atomic_fetch_add(&((eclt_t *)ud)->connects, 1);
}

static void on_clt_close(mw_clt_t *c, int reason, void *ud) {
    eclt_t *cs = ud;
    if (cs->r->c->reconnect && reason == MW_ECLOSED && atomic_fetch_add(&cs->drops, 1) == 0) return;
    mw_fail_once(&cs->r->f, "clt %d closed: %s: %s", cs->index, mw_errname(reason), mw_clt_last_error(c));
}

static void clt_connect(eclt_t *cs) {
    const e2e_case_t *c = cs->r->c;
    mw_clt_opts_t o;
    mw_clt_opts_init(&o);
    o.mode = c->mode;
    o.conn.serdes = c->serdes;
    o.sync.timeout_ns = IO_NS; /* blocking: nothing waits forever */
    o.connect_timeout_ns = IO_NS;
    if (is_tls(c->scheme)) o.tr.tls.ca_file = mw_test_cert("ca.pem"); /* verification stays on */
    if (c->mode == MW_MODE_EVENT) {
        o.event.io = cs->r->io;
        o.event.on_connect = on_clt_connect;
        o.event.on_msg = on_clt_msg;
        o.event.on_close = on_clt_close;
        o.ud = cs;
        o.event.reconnect = c->reconnect;
        o.retry.min_delay_ns = MW_NS_PER_MS;
        o.retry.max_delay_ns = 50 * MW_NS_PER_MS;
        o.retry.jitter = 0;
    }
    mw_err_t err = {0};
    int r = mw_clt_connect(&cs->clt, cs->r->url, &test_protocol, &o, &err);
    if (r != 0) fail_msg("clt %d connect %s: %s: %s", cs->index, cs->r->url, mw_errname(r), mw_err_text(&err));
    assert_int_equal(mw_clt_mode(cs->clt), c->mode);
    if (c->mode != MW_MODE_EVENT) atomic_fetch_add(&cs->connects, 1);
}

/* The Clt's stream stack is what the scheme says: ws over (tls over) tcp. */
static void assert_stack(mw_clt_t *c, const char *scheme) {
    const mw_stream_t *s = mw__clt_conn(c)->stream;
    assert_non_null(s);
    assert_int_equal(mw__is_ws(s), is_ws(scheme));
    if (is_ws(scheme)) s = s->inner;
    assert_int_equal(mw__is_tls(s), is_tls(scheme));
    if (is_tls(scheme)) s = s->inner;
    assert_false(mw__is_ws(s) || mw__is_tls(s));
    assert_null(s->inner);
}

/* Sends while the window has room, up to message `upto`; true if it sent. */
static bool fill_window(eclt_t *cs, uint64_t upto) {
    bool progress = false;
    uint32_t window = cs->r->c->window;
    while (cs->sent < upto && cs->sent - atomic_load_explicit(&cs->recvd, memory_order_acquire) < window) {
        test_msg_t m;
        const mw_schema_t *s = test_make_msg(cs->sent, &m);
        int r = mw_clt_send(cs->clt, s, &m);
        if (r == MW_EAGAIN) break;
        if (r != 0)
            fail_msg("clt %d: send msg %" PRIu64 ": %s: %s", cs->index, cs->sent, mw_errname(r),
                     mw_clt_last_error(cs->clt));
        cs->sent++;
        progress = true;
    }
    return progress;
}

/* Spin and blocking: the test thread sends, flushes and receives. */
static void run_polled(eclt_t *cs, uint64_t upto) {
    run_t *r = cs->r;
    uint64_t dl = mw__deadline_in(NULL, CASE_DEADLINE_NS);
    test_msg_t m;
    while (atomic_load(&cs->recvd) < upto) {
        bool progress = fill_window(cs, upto);
        int rc = mw_clt_flush(cs->clt);
        if (rc != 0 && rc != MW_EAGAIN) fail_msg("clt flush: %s: %s", mw_errname(rc), mw_clt_last_error(cs->clt));
        const mw_schema_t *s;
        rc = mw_clt_recv(cs->clt, &s, &m, sizeof m);
        if (rc == 0) {
            on_clt_msg(cs->clt, s, &m, cs);
            progress = true;
        } else if (rc != MW_EAGAIN && rc != MW_ETIMEDOUT) {
            fail_msg("clt recv after %" PRIu64 " echoes (sent %" PRIu64 ", svc echoed %lu): %s: %s",
                     atomic_load(&cs->recvd), cs->sent, atomic_load(&r->e.echoed), mw_errname(rc),
                     mw_clt_last_error(cs->clt));
        }
        mw_assert_no_failure(&r->f);
        if (!progress) {
            if (mw__deadline_passed(NULL, dl))
                fail_msg("timed out: sent %" PRIu64 ", echoed %" PRIu64, cs->sent, atomic_load(&cs->recvd));
            sched_yield();
        }
    }
}

/* Event: lets the io run a little (polls it here unless its own thread
 * does). */
static void event_step(run_t *r, bool busy) {
    if (r->c->io_thread) {
        if (!busy) sched_yield();
        return;
    }
    int work = mw_io_poll(r->io, busy ? 0 : MW_NS_PER_MS);
    if (work < 0) fail_msg("io poll: %s", mw_errname(work));
}

static bool all_connected(run_t *r, int want) {
    for (int k = 0; k < r->c->nclts; k++)
        if (atomic_load(&r->cs[k].connects) < want) return false;
    return true;
}

/* Event: waits until every Clt has had `connects` on_connect calls, then
 * keeps every window full until all echoes up to `upto` are checked. */
static void run_event(run_t *r, uint64_t upto, int connects) {
    uint64_t dl = mw__deadline_in(NULL, CASE_DEADLINE_NS);
    while (!all_connected(r, connects)) {
        event_step(r, false);
        mw_assert_no_failure(&r->f);
        if (mw__deadline_passed(NULL, dl)) fail_msg("on_connect #%d never came", connects);
    }
    for (int k = 0; k < r->c->nclts; k++) assert_int_equal(mw_clt_state(r->cs[k].clt), MW_CLT_OPEN);
    for (;;) {
        bool progress = false, done = true;
        for (int k = 0; k < r->c->nclts; k++) {
            progress |= fill_window(&r->cs[k], upto);
            done &= atomic_load(&r->cs[k].recvd) == upto;
        }
        mw_assert_no_failure(&r->f);
        if (done) return;
        event_step(r, progress);
        if (mw__deadline_passed(NULL, dl))
            fail_msg("timed out: clt 0 sent %" PRIu64 ", echoed %" PRIu64, r->cs[0].sent, atomic_load(&r->cs[0].recvd));
    }
}

/* Spin/blocking: the Svc closed the connection after the last echo; recv
 * says so once everything before was received. Then a new Clt connects. */
static void reconnect_polled(eclt_t *cs) {
    uint64_t dl = mw__deadline_in(NULL, CASE_DEADLINE_NS);
    test_msg_t m;
    const mw_schema_t *s;
    int rc;
    while ((rc = mw_clt_recv(cs->clt, &s, &m, sizeof m)) == MW_EAGAIN || rc == MW_ETIMEDOUT) {
        if (mw__deadline_passed(NULL, dl)) fail_msg("the Svc's close never reached the Clt");
        sched_yield();
    }
    if (rc != MW_ECLOSED) fail_msg("recv after the Svc's close: %s: %s", mw_errname(rc), mw_clt_last_error(cs->clt));
    assert_false(mw_clt_is_open(cs->clt));
    mw_clt_free(cs->clt);
    cs->clt = NULL;
    clt_connect(cs);
}

typedef struct svc_wait { esvc_t *e; uint64_t echoed; int closes; uint32_t conns; } svc_wait_t;

/* The Svc counts an echo after send_to returns (maybe after the Clt has
 * it), and a closed connection may still linger for a moment. */
static bool svc_settled(void *ud) {
    svc_wait_t *w = ud;
    return atomic_load(&w->e->echoed) == w->echoed && atomic_load(&w->e->closes) >= w->closes &&
           mw_svc_conn_count(w->e->svc) == w->conns;
}

static void body(void **state) {
    run_t *r = *state;
    const e2e_case_t *c = r->c;
    if (is_tls(c->scheme)) mw_test_require(mw_have_openssl_cli(), "the openssl command (Debian package openssl)");
    svc_start(&r->e, c, &r->f);
    r->svc_up = true;
    snprintf(r->url, sizeof r->url, "%s://127.0.0.1:%d%s", c->scheme, mw_svc_port(r->e.svc),
             is_ws(c->scheme) ? WS_PATH : "");
    if (c->mode == MW_MODE_EVENT) {
        mw_io_opts_t io_o;
        mw_io_opts_init(&io_o);
        io_o.backend = c->backend;
        mw_err_t err = {0};
        if (mw_io_new(&r->io, &io_o, &err) != 0) fail_msg("io: %s", mw_err_text(&err));
        assert_string_equal(mw__io_backend(r->io), c->backend);
        if (c->io_thread) assert_int_equal(mw_io_start(r->io, NULL), 0);
    }
    for (int k = 0; k < c->nclts; k++) {
        r->cs[k].r = r;
        r->cs[k].index = k;
        clt_connect(&r->cs[k]);
    }
    int phases = c->reconnect ? 2 : 1;
    for (int p = 0; p < phases; p++) {
        if (p == 1 && c->mode != MW_MODE_EVENT) reconnect_polled(&r->cs[0]);
        if (c->mode == MW_MODE_EVENT) run_event(r, (uint64_t)(p + 1) * c->n, p + 1);
        else run_polled(&r->cs[0], (uint64_t)(p + 1) * c->n);
    }

    uint64_t total = (uint64_t)phases * c->n;
    for (int k = 0; k < c->nclts; k++) {
        eclt_t *cs = &r->cs[k];
        assert_int_equal(atomic_load(&cs->recvd), total);
        assert_int_equal(cs->sent, total);
        assert_true(mw_clt_is_open(cs->clt));
        assert_stack(cs->clt, c->scheme);
        assert_int_equal(mw_clt_connects(cs->clt), c->mode == MW_MODE_EVENT ? (uint64_t)phases : 1);
        mw_conn_stats_t st; /* the connection's own: the last one */
        mw_clt_stats(cs->clt, &st);
        assert_int_equal(st.msgs_out, c->n);
        assert_int_equal(st.msgs_in, c->n);
        assert_int_equal(atomic_load(&cs->connects), phases);
    }
    svc_wait_t w = {&r->e, total * (uint64_t)c->nclts, phases - 1, (uint32_t)c->nclts};
    if (!mw_wait_until(svc_settled, &w, WAIT_MS))
        fail_msg("svc: echoed %lu of %" PRIu64 ", closes %d of %d, connections %u of %d", atomic_load(&r->e.echoed),
                 w.echoed, atomic_load(&r->e.closes), w.closes, mw_svc_conn_count(r->e.svc), c->nclts);
    mw_svc_stats_t ss;
    mw_svc_stats(r->e.svc, &ss);
    assert_int_equal(ss.accepted, (uint64_t)(c->nclts + phases - 1));
    assert_int_equal(ss.closed_bad_input, 0);
    assert_int_equal(atomic_load(&r->e.closes), phases - 1);
    mw_assert_no_failure(&r->f);
}

/* ---- set-up, tear-down, registration ------------------------------------------------- */

static int run_setup(void **state) {
    run_t *r = calloc(1, sizeof *r);
    if (!r) return -1;
    r->c = *state;
    *state = r;
    return 0;
}

/* A running io thread stops first; then the Clts go while the io does not
 * run (before mw_io_free, as mw_clt_free asks); then the io, then the Svc. */
static int run_teardown(void **state) {
    run_t *r = *state;
    if (r->io && r->c->io_thread) mw_io_stop(r->io);
    for (int k = 0; k < E2E_MAX_CLTS; k++) mw_clt_free(r->cs[k].clt);
    mw_io_free(r->io);
    if (r->svc_up) svc_stop(&r->e);
    free(r);
    return 0;
}

struct CMUnitTest e2e_test(e2e_case_t *c, const char *prefix) {
    if (c->nclts <= 0) c->nclts = 1;
    if (c->workers == 0) c->workers = 1;
    if (c->window == 0) c->window = 32;
    if (c->nclts > E2E_MAX_CLTS || (c->reconnect && c->nclts != 1)) {
        fprintf(stderr, "e2e: case %s: %d Clts (reconnect: %d) is not a case\n", c->name, c->nclts, c->reconnect);
        abort();
    }
    if (!c->name[0]) {
        bool ev = c->mode == MW_MODE_EVENT;
        snprintf(c->name, sizeof c->name, "%s_%s_%s%s%s_%s", prefix, c->scheme, mw_mode_name(c->mode), ev ? "_" : "",
                 ev ? c->backend : "", c->serdes);
    }
    return (struct CMUnitTest){c->name, body, run_setup, run_teardown, c};
}
