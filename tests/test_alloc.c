/* test_alloc.c - steady state allocates nothing.
 *
 * A Clt and a Svc play ping-pong over TCP loopback (all_kinds and ping in
 * turn). After WARMUP round trips, every malloc/calloc/realloc in the process
 * is counted over MEASURED round trips: both sides run inside that window (the
 * Svc on its own thread or worker, the Clt in the test thread or on its io
 * thread), so the count must be exactly 0.
 *
 *   spin   the Svc loops on mw_svc_recv on its own thread (the fixture's,
 *          tests/util/svc_harness.h); the Clt sends and receives in the
 *          test thread. Both yield when idle (2-core boxes).
 *   event  the Svc runs one worker; the Clt is attached to an io on its own
 *          thread and sends each next message from inside on_msg.
 */
#include "mw_test.h"
#include "svh_session.h"
#include "test_proto.h"

#include "mw_clock.h"
#include "mw_clt.h"
#include "mw_svc.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WARMUP 1000
#define MEASURED 10000
#define WAIT_MS 30000

typedef struct alloc_case {
    char name[64];
    mw_mode_t mode;
    const char *serdes;
    const char *backend; /* event: the Svc worker's and the Clt io's selector */
    bool session;        /* sessions on: numbering and journals on both sides */
} alloc_case_t;

/* Round trip i carries message i: all_kinds on even i, ping on odd. */
static const mw_schema_t *make_msg(uint64_t i, test_msg_t *m) {
    memset(m, 0, sizeof *m);
    if (i % 2) {
        m->ping.seq = i;
        m->ping.sent_ns = i * 7;
        return ping_schema();
    }
    all_kinds_t *a = &m->all_kinds;
    a->i8 = (int8_t)(uint8_t)i, a->i16 = (int16_t)(uint16_t)(i * 3), a->i32 = -(int32_t)(i % 100000);
    a->i64 = (int64_t)(i * UINT64_C(0x9E3779B97F4A7C15));
    a->u8 = (uint8_t)i, a->u16 = (uint16_t)i, a->u32 = (uint32_t)(i * 2654435761u), a->u64 = ~i;
    a->f64 = (double)i * 0.5 - 7.25;
    a->flag = (i / 2) % 2;
    snprintf(a->sym, sizeof a->sym, "S%" PRIu64, i % 1000000);
    memcpy(a->raw, &i, sizeof a->raw);
    a->side = (uint8_t)(i % 3);
    return all_kinds_schema();
}

/* Cheap echo check, no allocation and no cmocka call (may run on the io
 * thread): the tag and the field that carries i. */
static bool is_echo(uint64_t i, const mw_schema_t *s, const void *msg) {
    if (i % 2) return s->tag == ping_TAG && ((const ping_t *)msg)->seq == i;
    return s->tag == all_kinds_TAG && ((const all_kinds_t *)msg)->u64 == ~i;
}

typedef struct run {
    const alloc_case_t *c;
    svh_t *f; /* the Svc (echoing) and the journal directories */
    mw_io_t *io;
    mw_clt_t *clt;
    /* event-mode ping-pong state, io thread */
    atomic_ulong done;
    atomic_bool chain_stop; /* the test thread ends the chain after measuring */
    atomic_int clt_errors;
} run_t;

/* ---- the Svc ---------------------------------------------------------------- */

static void svc_start(run_t *r) {
    svh_t *f = r->f;
    mw_svc_opts_t o;
    f->mode = r->c->mode;
    f->serdes = r->c->serdes;
    if (r->c->session) svh_session_svc_opts(f, &o);
    else svh_svc_opts(f, &o);
    if (o.mode == MW_MODE_EVENT) o.event.backend = r->c->backend;
    o.event.workers = 1;
    f->on_msg = svh_echo;
    svh_start(f, "tcp", 0, &o);
}

static bool svc_failed(run_t *r) { return atomic_load(&r->f->fail.set) != 0; }

/* ---- the Clt ---------------------------------------------------------------- */

static void send_next(run_t *r, mw_clt_t *c, uint64_t i) {
    test_msg_t m;
    const mw_schema_t *s = make_msg(i, &m);
    if (mw_clt_send(c, s, &m) != 0) atomic_fetch_add(&r->clt_errors, 1);
}

/* Event mode: each echo sends the next message until the test says stop.
 * (A fixed limit raced with a slow test thread on a loaded machine.) */
static void clt_on_msg(mw_clt_t *c, const mw_schema_t *s, const void *msg, void *ud) {
    run_t *r = ud;
    uint64_t i = atomic_load_explicit(&r->done, memory_order_relaxed);
    if (!is_echo(i, s, msg)) atomic_fetch_add(&r->clt_errors, 1);
    atomic_store_explicit(&r->done, i + 1, memory_order_release);
    if (!atomic_load(&r->chain_stop)) send_next(r, c, i + 1);
}

static void clt_connect(run_t *r) {
    mw_clt_opts_t o;
    if (r->c->session) { /* journals in its own directory: two sides never share one */
        svh_session_clt_opts(r->f, &o, r->c->mode, "alloc");
    } else {
        mw_clt_opts_init(&o);
        o.mode = r->c->mode;
    }
    o.conn.serdes = r->c->serdes;
    mw_idle_init_yield(&o.sync.idle);
    if (r->c->mode == MW_MODE_EVENT) {
        mw_io_opts_t io_o;
        mw_io_opts_init(&io_o);
        io_o.backend = r->c->backend;
        mw_err_t err = {0};
        if (mw_io_new(&r->io, &io_o, &err) != 0) fail_msg("io: %s", mw_err_text(&err));
        o.event.io = r->io;
        o.event.on_msg = clt_on_msg;
        o.ud = r;
    }
    mw_err_t err = {0};
    int rc = mw_clt_connect(&r->clt, r->f->url, &test_protocol, &o, &err);
    if (rc != 0) fail_msg("clt connect: %s: %s", mw_errname(rc), mw_err_text(&err));
}

/* Spin mode: round trips [from, to) in the test thread. */
static void spin_round_trips(run_t *r, uint64_t from, uint64_t to) {
    for (uint64_t i = from; i < to; i++) {
        test_msg_t m;
        const mw_schema_t *s = make_msg(i, &m);
        int rc = mw_clt_send_busywait_timeout(r->clt, s, &m, 5 * MW_NS_PER_S);
        if (rc != 0) fail_msg("send %" PRIu64 ": %s: %s", i, mw_errname(rc), mw_clt_last_error(r->clt));
        rc = mw_clt_recv_busywait_timeout(r->clt, &s, &m, sizeof m, 5 * MW_NS_PER_S);
        if (rc != 0) fail_msg("recv %" PRIu64 ": %s: %s", i, mw_errname(rc), mw_clt_last_error(r->clt));
        if (!is_echo(i, s, &m)) fail_msg("round trip %" PRIu64 ": wrong echo (%s)", i, s->name);
    }
}

typedef struct reached { run_t *r; uint64_t n; } reached_t;
static bool done_reached(void *ud) {
    reached_t *q = ud;
    return atomic_load_explicit(&q->r->done, memory_order_acquire) >= q->n ||
           atomic_load(&q->r->clt_errors) || svc_failed(q->r);
}

static void wait_done(run_t *r, uint64_t n) {
    reached_t q = {r, n};
    if (!mw_wait_until(done_reached, &q, WAIT_MS) || atomic_load(&r->clt_errors) || svc_failed(r))
        fail_msg("ping-pong stopped at %" PRIu64 " of %" PRIu64 " (clt errors %d, svc %s)", atomic_load(&r->done), n,
                 atomic_load(&r->clt_errors), svc_failed(r) ? r->f->fail.why : "fine");
}

static void test_steady_state_allocates_nothing(void **state) {
    run_t *r = svh_ud(state);
    assert_true(mw_alloc_counting_works());
    svc_start(r);
    clt_connect(r);
    uint64_t before, after;
    if (r->c->mode == MW_MODE_SPIN) {
        spin_round_trips(r, 0, WARMUP);
        before = mw_alloc_count();
        spin_round_trips(r, WARMUP, WARMUP + MEASURED);
        after = mw_alloc_count();
    } else {
        /* The chain runs on without pausing: the window is what the test
         * thread observed, at least MEASURED round trips after the warm-up. */
        assert_int_equal(mw_io_start(r->io, NULL), 0);
        send_next(r, r->clt, 0);
        wait_done(r, WARMUP);
        before = mw_alloc_count();
        uint64_t first = atomic_load(&r->done);
        wait_done(r, first + MEASURED);
        after = mw_alloc_count();
        atomic_store(&r->chain_stop, true);
    }
    mw_assert_no_failure(&r->f->fail);
    assert_int_equal(atomic_load(&r->clt_errors), 0);
    if (after != before)
        fail_msg("%" PRIu64 " allocations in %d round trips (%s, %s)", after - before, MEASURED,
                 mw_mode_name(r->c->mode), r->c->serdes);
}

static void test_alloc_counting_works(void **state) {
    (void)state;
    assert_true(mw_alloc_counting_works());
    uint64_t before = mw_alloc_count();
    void *volatile p = malloc(32);
    free(p);
    assert_true(mw_alloc_count() > before);
}

static int run_setup(void **state) {
    const alloc_case_t *c = *state;
    *state = NULL;
    run_t *r = svh_session_setup(state) == 0 ? svh_attach_ud(*state, sizeof *r) : NULL;
    if (!r) return -1;
    r->c = c;
    r->f = *state;
    return 0;
}

static int run_teardown(void **state) {
    run_t *r = svh_ud(state);
    if (r->io) mw_io_stop(r->io);
    mw_clt_close(r->clt);
    mw_io_free(r->io);
    mw_clt_free(r->clt);
    return svh_teardown(state);
}

/* ---- registration ---------------------------------------------------------------- */

#define NCASES 10
static alloc_case_t cases[NCASES];

int main(void) {
    static const char *const serdes[] = {"fixed", "text", "msgpack"};
    struct CMUnitTest tests[NCASES + 1];
    tests[0] = (struct CMUnitTest){"test_alloc_counting_works", test_alloc_counting_works, NULL, NULL, NULL};
    int n = 0;
    for (int s = 0; s < 3; s++) {
        cases[n] = (alloc_case_t){"", MW_MODE_SPIN, serdes[s], NULL};
        cases[n + 1] = (alloc_case_t){"", MW_MODE_EVENT, serdes[s], "epoll"};
        n += 2;
    }
    cases[n++] = (alloc_case_t){"", MW_MODE_EVENT, "fixed", "libevent"};
    cases[n++] = (alloc_case_t){"", MW_MODE_EVENT, "msgpack-array", "epoll"};
    cases[n++] = (alloc_case_t){"", MW_MODE_SPIN, "fixed", NULL, true};
    cases[n++] = (alloc_case_t){"", MW_MODE_EVENT, "text", "epoll", true};
    for (int i = 0; i < NCASES; i++) {
        alloc_case_t *c = &cases[i];
        if (c->mode == MW_MODE_EVENT)
            snprintf(c->name, sizeof c->name, "test_alloc_steady_state_is_zero_event_%s_%s%s", c->backend, c->serdes,
                     c->session ? "_session" : "");
        else
            snprintf(c->name, sizeof c->name, "test_alloc_steady_state_is_zero_spin_%s%s", c->serdes,
                     c->session ? "_session" : "");
        tests[i + 1] = (struct CMUnitTest){c->name, test_steady_state_allocates_nothing, run_setup, run_teardown, c};
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
