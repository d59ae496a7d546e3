/* test_lock.c - the send path's lock (core/lock_impl.h).
 *
 * Mutual exclusion under contention (a plain counter incremented under the
 * lock by several threads reaches the exact total, with long holds mixed in
 * so that sleeping waiters, spinning ones and barging lockers meet); a
 * waiter behind a long hold (a journal's fsync under the lock) sleeps
 * instead of burning a core, and gets the lock once it is let go, as do
 * several waiters in turn; the sanitizer build counts one lock per
 * acquisition, contended or not (test_onelock relies on it).
 */
#include "mw_test.h"

#include "test_proto.h"

#include "clt_impl.h"
#include "lock_impl.h"
#include "mw_clt.h"
#include "mw_io.h"
#include "mw_svc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#define WAIT_MS 10000

static uint64_t ns_of(clockid_t clk) {
    struct timespec t;
    clock_gettime(clk, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Holds the lock for ns of wall time without using the CPU: the holder is
 * blocked, as in msync. The hold is what is tested, not a synchronisation. */
static void hold_for(uint64_t ns) {
    uint64_t end = ns_of(CLOCK_MONOTONIC) + ns;
    for (uint64_t t; (t = ns_of(CLOCK_MONOTONIC)) < end;) {
        struct timespec d = {(time_t)((end - t) / 1000000000u), (long)((end - t) % 1000000000u)};
        nanosleep(&d, NULL);
    }
}

/* ---- mutual exclusion ------------------------------------------------------ */

#define NTHREADS 4
#define ITERS 50000
#define LONG_EVERY 2048 /* every so many sections one holds 1 ms: waiters go to sleep */

typedef struct counting {
    mw__lock_t lk;
    unsigned long counter; /* plain: only under lk */
    atomic_bool go;
} counting_t;

static void *count_main(void *arg) {
    counting_t *c = arg;
    while (!atomic_load(&c->go)) sched_yield();
    for (unsigned i = 1; i <= ITERS; i++) {
        mw__lock(&c->lk);
        unsigned long v = c->counter;
        if (i % LONG_EVERY == 0) hold_for(1000000);
        c->counter = v + 1;
        mw__unlock(&c->lk);
    }
    return NULL;
}

static void test_lock_excludes_under_contention(void **state) {
    (void)state;
    counting_t c = {0};
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) assert_int_equal(pthread_create(&th[i], NULL, count_main, &c), 0);
    atomic_store(&c.go, true);
    for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
    assert_int_equal(c.counter, (unsigned long)NTHREADS * ITERS);
    assert_false(mw__lock_held(&c.lk));
}

/* ---- a long hold ------------------------------------------------------------ */

#define HOLD_NS (200 * 1000000ull)
#define CPU_MAX_NS (20 * 1000000ull) /* a tenth of the hold */

typedef struct waiter {
    mw__lock_t *lk;
    atomic_bool waiting;  /* about to take the lock */
    atomic_bool got;      /* took it (and let it go) */
    uint64_t cpu_ns;      /* the thread's CPU time while it waited */
    uint64_t got_at;      /* CLOCK_MONOTONIC when it had it */
    unsigned long *order; /* several waiters: each takes a number under the lock */
    unsigned long mine;
} waiter_t;

static void *wait_main(void *arg) {
    waiter_t *w = arg;
    uint64_t c0 = ns_of(CLOCK_THREAD_CPUTIME_ID);
    atomic_store(&w->waiting, true);
    mw__lock(w->lk);
    w->got_at = ns_of(CLOCK_MONOTONIC);
    w->cpu_ns = ns_of(CLOCK_THREAD_CPUTIME_ID) - c0;
    if (w->order) w->mine = ++*w->order;
    mw__unlock(w->lk);
    atomic_store(&w->got, true);
    return NULL;
}

static bool is_waiting(void *ud) { return atomic_load(&((waiter_t *)ud)->waiting); }
static bool has_got(void *ud) { return atomic_load(&((waiter_t *)ud)->got); }

static void test_lock_waiter_sleeps_through_a_long_hold(void **state) {
    (void)state;
    mw__lock_t lk = 0;
    waiter_t w = {.lk = &lk};
    mw__lock(&lk);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, wait_main, &w), 0);
    assert_true(mw_wait_until(is_waiting, &w, WAIT_MS));
    hold_for(HOLD_NS);
    bool asleep = __atomic_load_n(&lk, __ATOMIC_RELAXED) == 2;
    assert_false(atomic_load(&w.got));
    uint64_t released_at = ns_of(CLOCK_MONOTONIC);
    mw__unlock(&lk);
    if (!mw_wait_until(has_got, &w, WAIT_MS)) fail_msg("the waiter did not get the lock after its release");
    pthread_join(th, NULL);
    if (w.cpu_ns >= CPU_MAX_NS)
        fail_msg("the waiter used %.1f ms of CPU behind a %.0f ms hold (at most %.0f)", w.cpu_ns / 1e6,
                 HOLD_NS / 1e6, CPU_MAX_NS / 1e6);
    assert_true(asleep); /* it said so on the word: the unlock woke it */
    assert_true(w.got_at >= released_at);
    /* prompt: a wake-up, not the end of some sleep (generous for a loaded machine) */
    if (w.got_at - released_at > 100 * 1000000ull)
        fail_msg("the waiter got the lock %.1f ms after its release", (w.got_at - released_at) / 1e6);
    assert_false(mw__lock_held(&lk));
}

#define NWAITERS 3

static bool all_waiting(void *ud) {
    waiter_t *w = ud;
    for (int i = 0; i < NWAITERS; i++)
        if (!atomic_load(&w[i].waiting)) return false;
    return true;
}
static bool all_got(void *ud) {
    waiter_t *w = ud;
    for (int i = 0; i < NWAITERS; i++)
        if (!atomic_load(&w[i].got)) return false;
    return true;
}

/* Every unlock wakes one sleeper, who takes the lock with "waiters" still
 * said: the next unlock wakes the next. */
static void test_lock_sleeping_waiters_all_get_it_in_turn(void **state) {
    (void)state;
    mw__lock_t lk = 0;
    unsigned long order = 0;
    waiter_t w[NWAITERS];
    pthread_t th[NWAITERS];
    mw__lock(&lk);
    for (int i = 0; i < NWAITERS; i++) {
        w[i] = (waiter_t){.lk = &lk, .order = &order};
        assert_int_equal(pthread_create(&th[i], NULL, wait_main, &w[i]), 0);
    }
    assert_true(mw_wait_until(all_waiting, w, WAIT_MS));
    hold_for(HOLD_NS / 2);
    mw__unlock(&lk);
    if (!mw_wait_until(all_got, w, WAIT_MS)) fail_msg("not every waiter got the lock after its release");
    unsigned long seen = 0;
    for (int i = 0; i < NWAITERS; i++) {
        pthread_join(th[i], NULL);
        seen |= 1ul << w[i].mine;
        if (w[i].cpu_ns >= CPU_MAX_NS)
            fail_msg("waiter %d used %.1f ms of CPU behind a %.0f ms hold", i, w[i].cpu_ns / 1e6, HOLD_NS / 2e6);
    }
    assert_int_equal(order, NWAITERS);
    assert_int_equal(seen, ((1ul << NWAITERS) - 1) << 1); /* each a number of its own, 1..N */
    assert_false(mw__lock_held(&lk));
}

/* ---- the sanitizer build's count ---------------------------------------------- */

#ifdef MW_SANITIZED
static void *lock_once_main(void *arg) {
    waiter_t *w = arg;
    unsigned long before = mw__locks_taken;
    atomic_store(&w->waiting, true);
    mw__lock(w->lk);
    w->mine = mw__locks_taken - before;
    mw__unlock(w->lk);
    atomic_store(&w->got, true);
    return NULL;
}
#endif

static void test_lock_counts_one_per_acquisition(void **state) {
    (void)state;
#ifdef MW_SANITIZED
    mw__lock_t lk = 0;
    unsigned long before = mw__locks_taken;
    mw__lock(&lk);
    mw__unlock(&lk);
    assert_int_equal(mw__locks_taken - before, 1);
    /* contended: the wait (spins, yields, sleeps) counts nothing more */
    waiter_t w = {.lk = &lk};
    mw__lock(&lk);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, lock_once_main, &w), 0);
    assert_true(mw_wait_until(is_waiting, &w, WAIT_MS));
    hold_for(20 * 1000000ull);
    mw__unlock(&lk);
    assert_true(mw_wait_until(has_got, &w, WAIT_MS));
    pthread_join(th, NULL);
    assert_int_equal(w.mine, 1);
#else
    skip();
#endif
}

/* ---- end to end: an event Clt whose session journals with fsync ALWAYS ---------- */

/* Senders on one event Clt share its one lock, and with a session each
 * send journals under it: with fsync ALWAYS, an msync per message (from
 * ~60 us to a few ms here) while the other senders wait. */
#define E2E_SENDERS 2
#define E2E_EACH 200

typedef struct e2e {
    char dir[64], sdir[96], cdir[96];
    mw_svc_t *svc;
    mw_clt_t *clt;
    mw_io_t *io;
    atomic_int got, up;
    uint64_t last[E2E_SENDERS + 1]; /* the Svc's worker only: the last number per sender */
    mw_failure_t f;
    atomic_bool go;
    atomic_int send_err;
    uint64_t cpu_ns[E2E_SENDERS + 1];
} e2e_t;

/* Each sender numbers its messages 1, 2, ...: they arrive in that order. */
static void e2e_msg(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg, void *ud) {
    (void)s;
    (void)id;
    e2e_t *e = ud;
    if (sch != ping_schema()) return;
    const ping_t *p = msg;
    uint64_t k = p->seq >> 32, i = p->seq & 0xffffffffu;
    if (k > E2E_SENDERS || i != e->last[k] + 1)
        mw_fail_once(&e->f, "sender %llu: message %llu after %llu", (unsigned long long)k, (unsigned long long)i,
                     (unsigned long long)(k > E2E_SENDERS ? 0 : e->last[k]));
    else e->last[k] = i;
    atomic_fetch_add(&e->got, 1);
}
static void e2e_up(mw_clt_t *c, void *ud) {
    (void)c;
    atomic_store(&((e2e_t *)ud)->up, 1);
}
static bool e2e_is_up(void *ud) { return atomic_load(&((e2e_t *)ud)->up) != 0; }

typedef struct e2e_sender {
    e2e_t *e;
    int k;        /* its number, 0..E2E_SENDERS */
    uint64_t n;   /* messages to send */
    atomic_bool started, done;
} e2e_sender_t;

static void *e2e_send_main(void *arg) {
    e2e_sender_t *a = arg;
    e2e_t *e = a->e;
    atomic_store(&a->started, true);
    while (!atomic_load(&e->go)) sched_yield();
    uint64_t c0 = ns_of(CLOCK_THREAD_CPUTIME_ID);
    for (uint64_t i = 1; i <= a->n;) {
        ping_t p = {.seq = ((uint64_t)a->k << 32) | i, .sent_ns = 0};
        int r = mw_clt_send(e->clt, ping_schema(), &p);
        if (r == 0) i++;
        else if (r != MW_EAGAIN) {
            atomic_store(&e->send_err, r);
            break;
        }
    }
    e->cpu_ns[a->k] = ns_of(CLOCK_THREAD_CPUTIME_ID) - c0;
    atomic_store(&a->done, true);
    return NULL;
}

/* pthread_join with a bound: the test fails instead of hanging. */
static void join_within(pthread_t th, int ms) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += ms / 1000;
    if (pthread_timedjoin_np(th, NULL, &dl) != 0) fail_msg("a sender did not finish within %d ms", ms);
}

static void e2e_start(e2e_t *e) {
    snprintf(e->dir, sizeof e->dir, "/tmp/mw_lock_XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->sdir, sizeof e->sdir, "%s/svc", e->dir);
    snprintf(e->cdir, sizeof e->cdir, "%s/clt", e->dir);
    assert_int_equal(mkdir(e->sdir, 0700), 0);
    assert_int_equal(mkdir(e->cdir, 0700), 0);
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.mode = MW_MODE_EVENT;
    o.event.workers = 1;
    o.event.on_msg = e2e_msg;
    o.ud = e;
    o.session.enabled = true;
    o.session.journal_dir = e->sdir;
    mw_err_t err = {0};
    if (mw_svc_listen(&e->svc, "tcp://127.0.0.1:0", &test_protocol, &o, &err))
        fail_msg("listen: %s", mw_err_text(&err));
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", mw_svc_port(e->svc));
    assert_int_equal(mw_io_new(&e->io, NULL, &err), 0);
    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    co.mode = MW_MODE_EVENT;
    co.event.io = e->io;
    co.event.on_connect = e2e_up;
    co.ud = e;
    co.connect_timeout_ns = WAIT_MS * MW_NS_PER_MS;
    co.session.enabled = true;
    co.session.journal_dir = e->cdir;
    co.session.id = "L1";
    co.session.fsync = MW_FSYNC_ALWAYS;
    if (mw_clt_connect(&e->clt, url, &test_protocol, &co, &err)) fail_msg("connect: %s", mw_err_text(&err));
    assert_int_equal(mw_io_start(e->io, NULL), 0);
    assert_true(mw_wait_until(e2e_is_up, e, WAIT_MS));
}

static void e2e_stop(e2e_t *e) {
    mw_io_stop(e->io);
    mw_clt_free(e->clt);
    mw_io_free(e->io);
    mw_svc_free(e->svc);
    mw_tmpdir_remove(e->dir);
    free(e);
}

static bool e2e_got_all(void *ud) {
    e2e_t *e = ud;
    return atomic_load(&e->got) >= E2E_SENDERS * E2E_EACH;
}

/* Every message arrives, in order per sender. The senders' CPU time is
 * printed, not asserted: it depends on the disk (an msync of ~60 us leaves
 * little to sleep through); the next test asserts it with a hold of known
 * length. */
static void test_lock_event_clt_senders_share_an_fsync_journal(void **state) {
    (void)state;
    e2e_t *e = calloc(1, sizeof *e);
    assert_non_null(e);
    e2e_start(e);
    pthread_t th[E2E_SENDERS];
    e2e_sender_t a[E2E_SENDERS];
    for (int k = 0; k < E2E_SENDERS; k++) {
        a[k] = (e2e_sender_t){.e = e, .k = k + 1, .n = E2E_EACH};
        assert_int_equal(pthread_create(&th[k], NULL, e2e_send_main, &a[k]), 0);
    }
    uint64_t t0 = ns_of(CLOCK_MONOTONIC);
    atomic_store(&e->go, true);
    for (int k = 0; k < E2E_SENDERS; k++) join_within(th[k], 6 * WAIT_MS);
    uint64_t wall = ns_of(CLOCK_MONOTONIC) - t0;
    assert_int_equal(atomic_load(&e->send_err), 0);
    if (!mw_wait_until(e2e_got_all, e, WAIT_MS))
        fail_msg("the Svc got %d of %d", atomic_load(&e->got), E2E_SENDERS * E2E_EACH);
    mw_assert_no_failure(&e->f);
    uint64_t cpu = 0;
    for (int k = 1; k <= E2E_SENDERS; k++) cpu += e->cpu_ns[k];
    printf("  %d senders, %d messages each, fsync ALWAYS: %.0f us per message, senders' CPU %.0f%% of the time\n",
           E2E_SENDERS, E2E_EACH, wall / 1e3 / (E2E_SENDERS * E2E_EACH), 100.0 * (double)cpu / (double)wall);
    e2e_stop(e);
}

static bool e2e_started(void *ud) { return atomic_load(&((e2e_sender_t *)ud)->started); }
static bool e2e_got_one(void *ud) { return atomic_load(&((e2e_t *)ud)->got) >= 1; }

/* A send behind the Clt's one lock held for 200 ms (as a journal's sync
 * may hold it) sleeps through the hold on the real send path, then goes
 * out. */
static void test_lock_event_clt_sender_sleeps_behind_a_held_send_lock(void **state) {
    (void)state;
    e2e_t *e = calloc(1, sizeof *e);
    assert_non_null(e);
    e2e_start(e);
    e2e_sender_t a = {.e = e, .k = 1, .n = 1};
    mw__lock(&e->clt->txlk);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, e2e_send_main, &a), 0);
    assert_true(mw_wait_until(e2e_started, &a, WAIT_MS));
    atomic_store(&e->go, true);
    hold_for(HOLD_NS);
    assert_false(atomic_load(&a.done));
    mw__unlock(&e->clt->txlk);
    join_within(th, WAIT_MS);
    assert_int_equal(atomic_load(&e->send_err), 0);
    if (e->cpu_ns[1] >= CPU_MAX_NS)
        fail_msg("the sender used %.1f ms of CPU behind a %.0f ms hold (at most %.0f)", e->cpu_ns[1] / 1e6,
                 HOLD_NS / 1e6, CPU_MAX_NS / 1e6);
    assert_true(mw_wait_until(e2e_got_one, e, WAIT_MS));
    mw_assert_no_failure(&e->f);
    e2e_stop(e);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lock_excludes_under_contention),
        cmocka_unit_test(test_lock_waiter_sleeps_through_a_long_hold),
        cmocka_unit_test(test_lock_sleeping_waiters_all_get_it_in_turn),
        cmocka_unit_test(test_lock_counts_one_per_acquisition),
        cmocka_unit_test(test_lock_event_clt_senders_share_an_fsync_journal),
        cmocka_unit_test(test_lock_event_clt_sender_sleeps_behind_a_held_send_lock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
