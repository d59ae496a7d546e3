/* test_io.c - the IO service core over every selector backend: timers on a
 * fake clock (due order, re-arm and stop from callbacks, 1000 random timers),
 * posts from many threads (each exactly once, FIFO per thread), the run
 * thread's start/stop, posts run by mw_io_free, a steady state that does not
 * allocate, and a caller-owned event_base whose own loop drives sources,
 * timers and posts. */
#include "mw_test.h"

#include "io_impl.h"
#include "mw_clock.h"
#include "mw_io.h"
#include "clock_impl.h"
#include "selector_impl.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *const backends[] = {"epoll", "libevent", "direct"};
#define NBACKENDS (sizeof backends / sizeof backends[0])
#define T0 1000000u /* fake clock start */

static mw_io_t *new_io(const char *backend, const mw_clock_t *clock) {
    mw_io_opts_t o;
    mw_io_opts_init(&o);
    o.backend = backend;
    o.clock = clock;
    mw_io_t *io = NULL;
    mw_err_t err = {0};
    assert_int_equal(mw_io_new(&io, &o, &err), 0);
    assert_non_null(io);
    assert_string_equal(mw__io_backend(io), backend);
    return io;
}

static void pair(int sv[2]) {
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

static void test_io_new_checks_options(void **state) {
    (void)state;
    mw_io_opts_t o;
    mw_io_opts_init(&o);
    mw_io_t *io = (mw_io_t *)&o;
    mw_err_t err = {0};
    o.backend = "kqueue";
    assert_int_equal(mw_io_new(&io, &o, &err), MW_EINVAL);
    assert_null(io);
    assert_true(strstr(mw_err_text(&err), "kqueue") != NULL);
    struct event_base *base = event_base_new();
    o.backend = "epoll";
    o.base = base;
    assert_int_equal(mw_io_new(&io, &o, &err), MW_EINVAL);
    assert_null(io);
    event_base_free(base);
    /* Defaults: epoll on the monotonic clock. */
    assert_int_equal(mw_io_new(&io, NULL, NULL), 0);
    assert_string_equal(mw__io_backend(io), "epoll");
    assert_ptr_equal(mw__io_clock(io), &mw__clock_mono);
    assert_true(mw__io_in_thread(io));
    mw_io_free(io);
    mw_io_free(NULL);
}

/* ---- timers on a fake clock ---------------------------------------------- */

#define MAXREC 2048

typedef struct rec {
    mw_io_t *io;
    mw_clock_t clock;
    int order[MAXREC];
    uint64_t dues[MAXREC];
    int n;
} rec_t;

typedef struct tmr {
    mw_io_timer_t t;
    rec_t *r;
    int id;
    int rearms;          /* re-arm itself this many more times */
    uint64_t rearm_ns;   /* ... this far ahead */
    struct tmr *victim;  /* stop this one when firing */
    struct tmr *pushed;  /* re-arm this one 100 ns ahead when firing */
} tmr_t;

static void on_timer(mw_io_timer_t *t, void *ud) {
    tmr_t *m = ud;
    assert_ptr_equal(&m->t, t);
    assert_false(mw_io_timer_armed(t));
    rec_t *r = m->r;
    assert_true(t->due <= mw_io_now(r->io));
    assert_true(r->n < MAXREC);
    r->dues[r->n] = t->due;
    r->order[r->n++] = m->id;
    if (m->victim) mw_io_timer_stop(r->io, &m->victim->t);
    if (m->pushed) assert_int_equal(mw_io_timer_after(r->io, &m->pushed->t, 100), 0);
    if (m->rearms > 0) {
        m->rearms--;
        assert_int_equal(mw_io_timer_after(r->io, t, (int64_t)m->rearm_ns), 0);
    }
}

static void tmr_init(tmr_t *m, rec_t *r, int id) {
    memset(m, 0, sizeof *m);
    m->r = r;
    m->id = id;
    mw_io_timer_init(&m->t, on_timer, m);
}

static rec_t *rec_new(const char *backend) {
    rec_t *r = calloc(1, sizeof *r);
    assert_non_null(r);
    mw__clock_fake_init(&r->clock, T0);
    r->io = new_io(backend, &r->clock);
    assert_ptr_equal(mw__io_clock(r->io), &r->clock);
    assert_int_equal(mw_io_now(r->io), T0);
    return r;
}

static void rec_free(rec_t *r) {
    mw_io_free(r->io);
    free(r);
}

static void test_io_timers_fire_in_due_order(void **state) {
    (void)state;
    for (size_t b = 0; b < NBACKENDS; b++) {
        rec_t *r = rec_new(backends[b]);
        tmr_t m[5];
        const uint64_t due[5] = {50, 10, 30, 20, 40};
        for (int i = 0; i < 5; i++) {
            tmr_init(&m[i], r, i);
            assert_int_equal(mw_io_timer_at(r->io, &m[i].t, T0 + due[i]), 0);
            assert_true(mw_io_timer_armed(&m[i].t));
        }
        assert_int_equal(mw_io_poll(r->io, 0), 0);
        assert_int_equal(r->n, 0);
        mw__clock_fake_advance(&r->clock, 10);
        assert_int_equal(mw_io_poll(r->io, 0), 1);
        assert_int_equal(r->n, 1);
        assert_int_equal(r->order[0], 1);
        mw__clock_fake_advance(&r->clock, 25); /* now T0 + 35 */
        assert_int_equal(mw_io_poll(r->io, 0), 2);
        mw__clock_fake_advance(&r->clock, 1000);
        assert_int_equal(mw_io_poll(r->io, -1), 2); /* due timers: never blocks */
        const int want[5] = {1, 3, 2, 4, 0};
        assert_int_equal(r->n, 5);
        assert_memory_equal(r->order, want, sizeof want);
        for (int i = 0; i < 5; i++) assert_false(mw_io_timer_armed(&m[i].t));
        assert_int_equal(mw_io_poll(r->io, 0), 0);
        rec_free(r);
    }
}

static void test_io_timer_rearm_and_stop_from_callbacks(void **state) {
    (void)state;
    for (size_t b = 0; b < NBACKENDS; b++) {
        rec_t *r = rec_new(backends[b]);
        tmr_t rep, killer, victim, pusher, pushed, moved;
        tmr_init(&rep, r, 0);
        tmr_init(&killer, r, 1);
        tmr_init(&victim, r, 2);
        tmr_init(&pusher, r, 3);
        tmr_init(&pushed, r, 4);
        tmr_init(&moved, r, 5);
        rep.rearms = 3;
        rep.rearm_ns = 100;
        killer.victim = &victim;
        pusher.pushed = &pushed;
        assert_int_equal(mw_io_timer_at(r->io, &rep.t, T0 + 100), 0);
        assert_int_equal(mw_io_timer_at(r->io, &killer.t, T0 + 5), 0);
        assert_int_equal(mw_io_timer_at(r->io, &victim.t, T0 + 6), 0);
        assert_int_equal(mw_io_timer_at(r->io, &pusher.t, T0 + 7), 0);
        assert_int_equal(mw_io_timer_at(r->io, &pushed.t, T0 + 8), 0);
        /* Re-arming an armed timer moves it, later and earlier. */
        assert_int_equal(mw_io_timer_at(r->io, &moved.t, T0 + 1), 0);
        assert_int_equal(mw_io_timer_at(r->io, &moved.t, T0 + 1000), 0);
        assert_int_equal(mw_io_timer_at(r->io, &moved.t, T0 + 9), 0);
        /* All of killer..moved are due in one poll: killer stops victim and
         * pusher moves pushed into the future before either runs. */
        mw__clock_fake_advance(&r->clock, 10);
        assert_int_equal(mw_io_poll(r->io, 0), 3);
        const int want1[3] = {1, 3, 5};
        assert_int_equal(r->n, 3);
        assert_memory_equal(r->order, want1, sizeof want1);
        assert_false(mw_io_timer_armed(&victim.t));
        assert_true(mw_io_timer_armed(&pushed.t));
        assert_int_equal(pushed.t.due, T0 + 110);
        /* rep fires at 100 then re-arms itself 3 times, 100 ns apart;
         * pushed (110) runs after the first. */
        for (int i = 0; i < 4; i++) {
            mw__clock_fake_advance(&r->clock, 100);
            assert_true(mw_io_poll(r->io, 0) >= 1);
        }
        const int want2[8] = {1, 3, 5, 0, 4, 0, 0, 0};
        assert_int_equal(r->n, 8);
        assert_memory_equal(r->order, want2, sizeof want2);
        assert_false(mw_io_timer_armed(&rep.t));
        rec_free(r);
    }
}

/* A timer re-arming itself at "now" runs once per poll, not forever. */
static void test_io_timer_rearmed_at_now_waits_for_next_poll(void **state) {
    (void)state;
    for (size_t b = 0; b < NBACKENDS; b++) {
        rec_t *r = rec_new(backends[b]);
        tmr_t m;
        tmr_init(&m, r, 7);
        m.rearms = 1000000;
        m.rearm_ns = 0;
        assert_int_equal(mw_io_timer_after(r->io, &m.t, 0), 0);
        for (int i = 1; i <= 5; i++) {
            assert_int_equal(mw_io_poll(r->io, -1), 1);
            assert_int_equal(r->n, i);
        }
        mw_io_timer_stop(r->io, &m.t);
        mw_io_timer_stop(r->io, &m.t); /* idempotent */
        assert_int_equal(mw_io_poll(r->io, 0), 0);
        rec_free(r);
    }
}

static void test_io_1000_random_timers_fire_in_order(void **state) {
    (void)state;
    enum { N = 1000 };
    for (size_t b = 0; b < NBACKENDS; b++) {
        rec_t *r = rec_new(backends[b]);
        tmr_t *m = calloc(N, sizeof *m);
        assert_non_null(m);
        srand(42 + (unsigned)b);
        for (int i = 0; i < N; i++) {
            tmr_init(&m[i], r, i);
            assert_int_equal(mw_io_timer_at(r->io, &m[i].t, T0 + (uint64_t)(rand() % 100000)), 0);
        }
        /* Move some around and stop every tenth. */
        for (int i = 0; i < N; i += 7)
            assert_int_equal(mw_io_timer_at(r->io, &m[i].t, T0 + (uint64_t)(rand() % 100000)), 0);
        int stopped = 0;
        for (int i = 0; i < N; i += 10, stopped++) mw_io_timer_stop(r->io, &m[i].t);
        int polls = 0;
        while (mw_io_now(r->io) < T0 + 100000) {
            mw__clock_fake_advance(&r->clock, (uint64_t)(rand() % 3000));
            int before = r->n;
            assert_true(mw_io_poll(r->io, 0) == r->n - before);
            for (int k = before; k < r->n; k++) assert_true(r->dues[k] <= mw_io_now(r->io));
            polls++;
        }
        assert_true(polls > 10);
        assert_int_equal(r->n, N - stopped);
        bool *seen = calloc(N, 1);
        assert_non_null(seen);
        for (int k = 0; k < r->n; k++) {
            if (k > 0) assert_true(r->dues[k - 1] <= r->dues[k]);
            assert_int_not_equal(r->order[k] % 10, 0);
            assert_false(seen[r->order[k]]);
            seen[r->order[k]] = true;
            assert_int_equal(r->dues[k], m[r->order[k]].t.due);
        }
        free(seen);
        free(m);
        rec_free(r);
    }
}

/* Armed timers shorten a blocking poll (real clock). */
static bool g_fired;
static void on_flag(mw_io_timer_t *t, void *ud) {
    (void)t;
    *(bool *)ud = true;
}

static void test_io_poll_wakes_for_next_timer(void **state) {
    (void)state;
    for (size_t b = 0; b < NBACKENDS; b++) {
        mw_io_t *io = new_io(backends[b], NULL);
        mw_io_timer_t t;
        g_fired = false;
        mw_io_timer_init(&t, on_flag, &g_fired);
        assert_int_equal(mw_io_timer_after(io, &t, 2 * MW_NS_PER_MS), 0);
        uint64_t t0 = mw_now_ns();
        for (int i = 0; i < 100000 && !g_fired; i++) assert_true(mw_io_poll(io, 5 * MW_NS_PER_S) >= 0);
        assert_true(g_fired);
        assert_true(mw_now_ns() - t0 < 4 * (uint64_t)MW_NS_PER_S);
        mw_io_free(io);
    }
}

/* On the monotonic clock, a poll with no limit waits through the selector's
 * own kernel timer where it has one (epoll), re-armed for an earlier due:
 * each timer fires once, in due order, never before its due, and a due
 * that went away (stopped) only wakes the poll early. */
typedef struct mono_t {
    mw_io_timer_t t;
    uint64_t fired_at;
    int order, *seq;
} mono_t;

static void on_mono(mw_io_timer_t *t, void *ud) {
    mono_t *m = ud;
    (void)t;
    m->fired_at = mw_now_ns();
    m->order = ++*m->seq;
}

static void test_io_unlimited_poll_fires_monotonic_timers_in_order_without_early_runs(void **state) {
    (void)state;
    for (size_t b = 0; b < NBACKENDS; b++) {
        if (strcmp(backends[b], "direct") == 0) continue; /* never blocks: nothing to wait through */
        mw_io_t *io = new_io(backends[b], NULL);
        int seq = 0;
        mono_t far = {.seq = &seq}, near = {.seq = &seq}, gone = {.seq = &seq}, last = {.seq = &seq};
        mw_io_timer_init(&far.t, on_mono, &far);
        mw_io_timer_init(&near.t, on_mono, &near);
        mw_io_timer_init(&gone.t, on_mono, &gone);
        mw_io_timer_init(&last.t, on_mono, &last);
        uint64_t t0 = mw_now_ns();
        assert_int_equal(mw_io_timer_at(io, &far.t, t0 + 60 * (uint64_t)MW_NS_PER_S), 0);
        /* the first wait arms the kernel timer for far; near comes earlier */
        assert_int_equal(mw_io_poll(io, 0), 0);
        assert_int_equal(mw_io_timer_at(io, &near.t, t0 + 3 * (uint64_t)MW_NS_PER_MS), 0);
        for (int i = 0; i < 1000 && !near.order; i++) assert_true(mw_io_poll(io, -1) >= 0);
        assert_int_equal(near.order, 1);
        assert_true(near.fired_at >= near.t.due);
        /* gone is armed, waited for, and stopped; last ends the test */
        uint64_t t1 = mw_now_ns();
        assert_int_equal(mw_io_timer_at(io, &gone.t, t1 + 4 * (uint64_t)MW_NS_PER_MS), 0);
        assert_int_equal(mw_io_timer_at(io, &last.t, t1 + 8 * (uint64_t)MW_NS_PER_MS), 0);
        assert_true(mw_io_poll(io, 0) >= 0);
        mw_io_timer_stop(io, &gone.t);
        for (int i = 0; i < 1000 && !last.order; i++) assert_true(mw_io_poll(io, -1) >= 0);
        assert_int_equal(last.order, 2);
        assert_true(last.fired_at >= last.t.due);
        assert_int_equal(gone.order, 0);
        assert_int_equal(far.order, 0);
        assert_true(mw_now_ns() - t0 < 10 * (uint64_t)MW_NS_PER_S);
        mw_io_timer_stop(io, &far.t);
        mw_io_free(io);
    }
}

/* ---- the keep list (io_impl.h) --------------------------------------------- */

typedef struct keeper {
    mw__io_keep_t k;
    int releases;
    bool busy; /* release says: still in use, ask again */
} keeper_t;

static bool on_release(mw__io_keep_t *k) {
    keeper_t *e = (keeper_t *)(void *)k;
    e->releases++;
    return !e->busy;
}

/* On a fake clock, so the sweep periods are exact: an entry touched in every
 * period is never released; one left alone is released after one whole
 * period without a touch (at the second sweep after its last); one whose
 * release says it is still busy is asked again at each sweep until it is
 * not; an unlinked entry is never asked; once the list is empty the io
 * arms no timer; and the period doubles while every entry is in use. Every
 * backend. */
static void test_io_keep_list_releases_only_entries_idle_for_a_whole_period(void **state) {
    (void)state;
    for (size_t b = 0; b < NBACKENDS; b++) {
        rec_t *r = rec_new(backends[b]);
        keeper_t hot, cold, busy, gone;
        keeper_t *all[4] = {&hot, &cold, &busy, &gone};
        for (int i = 0; i < 4; i++) {
            memset(all[i], 0, sizeof *all[i]);
            mw__io_keep_init(&all[i]->k, on_release);
            assert_true(mw__io_keep_touch(r->io, &all[i]->k)); /* linked now */
            assert_false(mw__io_keep_touch(r->io, &all[i]->k));
        }
        busy.busy = true;
        mw__io_keep_unlink(r->io, &gone.k);
        assert_false(gone.k.linked);
        for (int period = 1; period <= 4; period++) {
            mw__io_keep_touch(r->io, &hot.k);
            /* the first sweep found every entry in use: the second comes after twice the period */
            mw__clock_fake_advance(&r->clock, period == 2 ? 2 * MW__IO_KEEP_NS : MW__IO_KEEP_NS);
            assert_true(mw_io_poll(r->io, 0) >= 1); /* the sweep */
            if (period == 1) assert_int_equal(cold.releases + busy.releases, 0); /* touched in the first */
            if (period >= 2) {
                assert_int_equal(cold.releases, 1);
                assert_false(cold.k.linked);
                assert_int_equal(busy.releases, period - 1);
                assert_true(busy.k.linked);
            }
        }
        assert_int_equal(hot.releases, 0);
        assert_true(hot.k.linked);
        assert_int_equal(gone.releases, 0);
        busy.busy = false;
        mw__io_keep_touch(r->io, &hot.k);
        mw__clock_fake_advance(&r->clock, MW__IO_KEEP_NS); /* busy goes, hot is cleared ... */
        mw_io_poll(r->io, 0);
        assert_false(busy.k.linked);
        assert_int_equal(hot.releases, 0);
        mw__clock_fake_advance(&r->clock, MW__IO_KEEP_NS); /* ... and released */
        mw_io_poll(r->io, 0);
        assert_int_equal(hot.releases, 1);
        assert_false(hot.k.linked);
        mw__clock_fake_advance(&r->clock, 10 * MW__IO_KEEP_MAX_NS);
        assert_int_equal(mw_io_poll(r->io, 0), 0); /* nothing armed any more */
        /* steady entries: the period doubles up to MW__IO_KEEP_MAX_NS; a new
         * entry brings it back to MW__IO_KEEP_NS */
        mw__io_keep_touch(r->io, &hot.k);
        uint64_t step = MW__IO_KEEP_NS;
        for (int i = 0; i < 8; i++) {
            mw__io_keep_touch(r->io, &hot.k);
            mw__clock_fake_advance(&r->clock, step - 1);
            assert_int_equal(mw_io_poll(r->io, 0), 0); /* not yet */
            mw__clock_fake_advance(&r->clock, 1);
            assert_int_equal(mw_io_poll(r->io, 0), 1);
            step = step * 2 < MW__IO_KEEP_MAX_NS ? step * 2 : MW__IO_KEEP_MAX_NS;
        }
        assert_int_equal(hot.releases, 1);
        mw__io_keep_touch(r->io, &cold.k); /* linked: the next sweep comes sooner */
        mw__io_keep_touch(r->io, &hot.k);
        mw__clock_fake_advance(&r->clock, MW__IO_KEEP_NS);
        assert_int_equal(mw_io_poll(r->io, 0), 1);
        /* an entry linked when the io is freed is forgotten: unlinking it after is harmless */
        mw__io_keep_touch(r->io, &cold.k);
        rec_free(r);
        assert_false(cold.k.linked);
        mw__io_keep_unlink(NULL, &cold.k);
    }
}

/* ---- sources through the io ---------------------------------------------- */

typedef struct src_owner {
    mw_sel_src_t src;
    int fd, peer, calls;
} src_owner_t;

/* One unit of work per call, as these bodies count dispatches. */
static int on_src(mw_sel_src_t *src, int events) {
    src_owner_t *o = src->ud;
    char buf[64];
    if (events & MW_WANT_READ)
        while (read(o->fd, buf, sizeof buf) > 0) {}
    o->calls++;
    return 1;
}

static void src_owner_init(src_owner_t *o) {
    int sv[2];
    pair(sv);
    memset(o, 0, sizeof *o);
    o->fd = sv[0];
    o->peer = sv[1];
    mw_sel_src_init(&o->src, o->fd, MW_WANT_READ, on_src, o);
}

static void src_owner_fini(src_owner_t *o) {
    close(o->fd);
    close(o->peer);
}

static int g_posted;
static void on_post_count(void *ud) {
    (void)ud;
    g_posted++;
}

static void test_io_poll_counts_sources_timers_and_posts(void **state) {
    (void)state;
    for (size_t b = 0; b < NBACKENDS; b++) {
        rec_t *r = rec_new(backends[b]);
        src_owner_t o;
        src_owner_init(&o);
        assert_int_equal(mw_io_add(r->io, &o.src), 0);
        assert_int_equal(write(o.peer, "x", 1), 1);
        tmr_t m;
        tmr_init(&m, r, 1);
        assert_int_equal(mw_io_timer_at(r->io, &m.t, T0), 0);
        g_posted = 0;
        assert_int_equal(mw_io_post(r->io, on_post_count, NULL), 0);
        assert_int_equal(mw_io_poll(r->io, 5 * MW_NS_PER_S), 3);
        assert_int_equal(o.calls, 1);
        assert_int_equal(r->n, 1);
        assert_int_equal(g_posted, 1);
        assert_int_equal(mw_io_mod(r->io, &o.src, MW_WANT_WRITE), 0);
        assert_int_equal(mw_io_poll(r->io, 5 * MW_NS_PER_S), 1);
        assert_int_equal(o.calls, 2);
        assert_int_equal(mw_io_del(r->io, &o.src), 0);
        assert_int_equal(mw_io_poll(r->io, 0), 0);
        assert_ptr_equal(mw__io_selector(r->io)->ops, mw__selector_find(backends[b]));
        src_owner_fini(&o);
        rec_free(r);
    }
}

/* Steady state: sources firing and timers re-armed allocate nothing. */
static void test_io_steady_state_does_not_allocate(void **state) {
    (void)state;
    if (!mw_alloc_counting_works()) skip();
    for (size_t b = 0; b < NBACKENDS; b++) {
        rec_t *r = rec_new(backends[b]);
        src_owner_t o;
        src_owner_init(&o);
        assert_int_equal(mw_io_add(r->io, &o.src), 0);
        tmr_t m[4];
        for (int i = 0; i < 4; i++) tmr_init(&m[i], r, i);
        uint64_t before = 0;
        for (int round = 0; round < 600; round++) {
            if (round == 100) before = mw_alloc_count(); /* after warm-up */
            assert_int_equal(write(o.peer, "x", 1), 1);
            for (int i = 0; i < 4; i++)
                assert_int_equal(mw_io_timer_after(r->io, &m[i].t, (int64_t)(i * 10)), 0);
            mw__clock_fake_advance(&r->clock, 50);
            r->n = 0;
            assert_int_equal(mw_io_poll(r->io, 5 * MW_NS_PER_S), 5);
            assert_int_equal(r->n, 4);
        }
        assert_int_equal(mw_alloc_count() - before, 0);
        assert_int_equal(mw_io_del(r->io, &o.src), 0);
        src_owner_fini(&o);
        rec_free(r);
    }
}

/* ---- posts ----------------------------------------------------------------- */

#define PTHREADS 4
#define PER_THREAD 1000

typedef struct post_ctx post_ctx_t;
typedef struct item {
    post_ctx_t *c;
    int th, seq;
} item_t;

struct post_ctx {
    mw_io_t *io;
    item_t items[PTHREADS][PER_THREAD];
    int next[PTHREADS]; /* io thread only */
    int errors;         /* io thread only */
    bool wrong_thread;  /* io thread only */
    atomic_int total;
    atomic_int post_fail;
};

static void on_item(void *ud) {
    item_t *it = ud;
    post_ctx_t *c = it->c;
    if (it->seq != c->next[it->th]) c->errors++;
    c->next[it->th] = it->seq + 1;
    if (!mw__io_in_thread(c->io)) c->wrong_thread = true;
    atomic_fetch_add(&c->total, 1);
}

typedef struct producer {
    post_ctx_t *c;
    int th;
} producer_t;

static void *produce(void *arg) {
    producer_t *p = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        item_t *it = &p->c->items[p->th][i];
        it->c = p->c;
        it->th = p->th;
        it->seq = i;
        if (mw_io_post(p->c->io, on_item, it) != 0) atomic_fetch_add(&p->c->post_fail, 1);
    }
    return NULL;
}

static bool all_posted(void *ud) {
    post_ctx_t *c = ud;
    return atomic_load(&c->total) == PTHREADS * PER_THREAD;
}

static void posts_round(const char *backend, const mw_idle_t *idle) {
    post_ctx_t *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->io = new_io(backend, NULL);
    assert_int_equal(mw_io_start(c->io, idle), 0);
    assert_int_equal(mw_io_start(c->io, idle), MW_ESTATE);
    assert_false(mw__io_in_thread(c->io));
    pthread_t th[PTHREADS];
    producer_t p[PTHREADS];
    for (int i = 0; i < PTHREADS; i++) {
        p[i].c = c;
        p[i].th = i;
        assert_int_equal(pthread_create(&th[i], NULL, produce, &p[i]), 0);
    }
    for (int i = 0; i < PTHREADS; i++) pthread_join(th[i], NULL);
    assert_true(mw_wait_until(all_posted, c, 10000));
    mw_io_stop(c->io);
    mw_io_stop(c->io); /* idempotent */
    assert_int_equal(atomic_load(&c->post_fail), 0);
    assert_int_equal(atomic_load(&c->total), PTHREADS * PER_THREAD);
    assert_int_equal(c->errors, 0);
    assert_false(c->wrong_thread);
    for (int i = 0; i < PTHREADS; i++) assert_int_equal(c->next[i], PER_THREAD);
    mw_io_free(c->io);
    free(c);
}

static void test_io_posts_from_4_threads_run_once_in_fifo_order(void **state) {
    (void)state;
    mw_idle_t idle;
    mw_idle_init_backoff(&idle, 100, 10, 1000, 100000);
    for (size_t b = 0; b < NBACKENDS; b++) {
        posts_round(backends[b], NULL);  /* blocking run thread */
        posts_round(backends[b], &idle); /* spin run thread */
    }
}

typedef struct flag_post {
    mw_io_t *io;
    atomic_int runs;
    atomic_bool in_thread;
} flag_post_t;

static void on_flag_post(void *ud) {
    flag_post_t *f = ud;
    atomic_store(&f->in_thread, mw__io_in_thread(f->io));
    atomic_fetch_add(&f->runs, 1);
}

static bool flag_ran(void *ud) { return atomic_load(&((flag_post_t *)ud)->runs) > 0; }

static void test_io_start_stop_joins(void **state) {
    (void)state;
    for (size_t b = 0; b < NBACKENDS; b++) {
        mw_idle_t busy;
        mw_idle_init_busy(&busy);
        for (int spin = 0; spin < 2; spin++) {
            flag_post_t f = {.io = new_io(backends[b], NULL)};
            mw_io_stop(f.io); /* not started: a no-op */
            assert_int_equal(mw_io_start(f.io, spin ? &busy : NULL), 0);
            assert_int_equal(mw_io_post(f.io, on_flag_post, &f), 0);
            assert_true(mw_wait_until(flag_ran, &f, 5000));
            assert_true(atomic_load(&f.in_thread));
            mw_io_stop(f.io);
            /* Once stop returns nothing runs on its own any more. */
            assert_true(mw__io_in_thread(f.io));
            assert_int_equal(mw_io_post(f.io, on_flag_post, &f), 0);
            assert_int_equal(atomic_load(&f.runs), 1);
            assert_true(mw_io_poll(f.io, 0) >= 1);
            assert_int_equal(atomic_load(&f.runs), 2);
            /* And it can start again. */
            assert_int_equal(mw_io_start(f.io, spin ? &busy : NULL), 0);
            assert_int_equal(mw_io_post(f.io, on_flag_post, &f), 0);
            mw_io_free(f.io); /* stops, then runs what is left */
            assert_int_equal(atomic_load(&f.runs), 3);
        }
    }
}

static void break_io(void *ud) { mw_io_break(ud); }

static void test_io_break_ends_run_on_the_callers_thread(void **state) {
    (void)state;
    for (size_t b = 0; b < NBACKENDS; b++) {
        mw_io_t *io = new_io(backends[b], NULL);
        assert_int_equal(mw_io_post(io, break_io, io), 0);
        assert_int_equal(mw_io_run(io), 0);
        assert_int_equal(mw_io_post(io, break_io, io), 0);
        mw_idle_t y;
        mw_idle_init_yield(&y);
        assert_int_equal(mw_io_run_spin(io, &y), 0);
        mw_io_free(io);
    }
}

typedef struct order_ctx {
    int seen[3], n;
} order_ctx_t;
static order_ctx_t g_order;
static void on_order(void *ud) { g_order.seen[g_order.n++] = (int)(intptr_t)ud; }

static void test_io_free_runs_pending_posts(void **state) {
    (void)state;
    for (size_t b = 0; b < NBACKENDS; b++) {
        mw_io_t *io = new_io(backends[b], NULL);
        memset(&g_order, 0, sizeof g_order);
        for (intptr_t i = 0; i < 3; i++) assert_int_equal(mw_io_post(io, on_order, (void *)i), 0);
        mw_io_free(io);
        assert_int_equal(g_order.n, 3);
        for (int i = 0; i < 3; i++) assert_int_equal(g_order.seen[i], i);
    }
}

/* ---- the caller's own event_base ------------------------------------------- */

typedef struct ev_ctx {
    struct event_base *base;
    mw_io_t *io;
    src_owner_t o;
    mw_io_timer_t t;
    int timer_runs;
    atomic_int posts;
    uint64_t deadline;
} ev_ctx_t;

static bool ev_done(const ev_ctx_t *c) {
    return c->o.calls > 0 && c->timer_runs >= 3 && atomic_load(&c->posts) >= 1;
}

static void ev_check(ev_ctx_t *c) {
    if (ev_done(c) || mw_now_ns() > c->deadline) event_base_loopbreak(c->base);
}

static ev_ctx_t *g_ev;

static int on_ev_src(mw_sel_src_t *src, int events) {
    on_src(src, events);
    ev_check(g_ev);
    return 1;
}

static void on_ev_timer(mw_io_timer_t *t, void *ud) {
    ev_ctx_t *c = ud;
    if (++c->timer_runs < 3) assert_int_equal(mw_io_timer_after(c->io, t, MW_NS_PER_MS), 0);
    ev_check(c);
}

static void on_ev_post(void *ud) {
    ev_ctx_t *c = ud;
    atomic_fetch_add(&c->posts, 1);
    ev_check(c);
}

static void *post_later(void *arg) {
    ev_ctx_t *c = arg;
    if (mw_io_post(c->io, on_ev_post, c) != 0) atomic_store(&c->posts, -1000);
    return NULL;
}

/* A safety net so a broken build ends the loop instead of hanging. */
static void on_guard(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    ev_check(arg);
}

static void test_io_callers_event_base_drives_sources_timers_and_posts(void **state) {
    (void)state;
    for (int use_dispatch = 0; use_dispatch < 2; use_dispatch++) {
        ev_ctx_t *c = calloc(1, sizeof *c);
        assert_non_null(c);
        g_ev = c;
        c->base = event_base_new();
        assert_non_null(c->base);
        mw_io_opts_t o;
        mw_io_opts_init(&o);
        o.base = c->base; /* backend left NULL: libevent */
        assert_int_equal(mw_io_new(&c->io, &o, NULL), 0);
        assert_string_equal(mw__io_backend(c->io), "libevent");
        assert_ptr_equal(mw__selector_event_base(mw__io_selector(c->io)), c->base);

        src_owner_init(&c->o);
        c->o.src.fn = on_ev_src;
        assert_int_equal(mw_io_add(c->io, &c->o.src), 0);
        assert_int_equal(write(c->o.peer, "x", 1), 1);
        mw_io_timer_init(&c->t, on_ev_timer, c);
        assert_int_equal(mw_io_timer_after(c->io, &c->t, MW_NS_PER_MS), 0);
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, post_later, c), 0);

        c->deadline = mw_now_ns() + 10 * (uint64_t)MW_NS_PER_S;
        struct event *guard = event_new(c->base, -1, EV_PERSIST, on_guard, c);
        struct timeval tv = {0, 100000};
        assert_int_equal(event_add(guard, &tv), 0);
        if (use_dispatch) {
            assert_true(event_base_dispatch(c->base) >= 0);
        } else {
            while (!ev_done(c) && mw_now_ns() < c->deadline) event_base_loop(c->base, EVLOOP_ONCE);
        }
        pthread_join(th, NULL);
        assert_true(ev_done(c));
        assert_int_equal(c->timer_runs, 3);
        assert_int_equal(atomic_load(&c->posts), 1);
        assert_false(mw_io_timer_armed(&c->t));
        event_free(guard);

        /* Freeing the io leaves the caller's base empty and usable. */
        assert_int_equal(mw_io_del(c->io, &c->o.src), 0);
        mw_io_free(c->io);
        assert_int_equal(event_base_get_num_events(c->base, EVENT_BASE_COUNT_ADDED), 0);
        event_base_free(c->base);
        src_owner_fini(&c->o);
        free(c);
    }
}


/* ==== Svc/Clt/io harness tests (tests/util/svc_harness.h) =================== * Tests on the shared Svc harness, kept together at the end of the file.
 * Each replays a scenario that once failed (found in review). */
#include "svc_harness.h"

/* ---- caller's poll loop: only the polling thread is the io thread ------------- */

static void *poll_loop(void *ud) {
    svh_t *f = ud;
    uint64_t dl = mw__deadline_in(NULL, 30 * MW_NS_PER_S);
    while (!atomic_load(&f->stop) && !mw__deadline_passed(NULL, dl)) {
        mw_io_poll(f->io, MW_NS_PER_MS);
        if (atomic_load(&f->polls) == 0) atomic_store(&f->poller_in_thread, mw__io_in_thread(f->io));
        atomic_fetch_add(&f->polls, 1);
    }
    return NULL;
}

static bool polled(void *ud) { return atomic_load(&((svh_t *)ud)->polls) > 0; }

/* A thread drives the io with mw_io_poll (no mw_io_start, no mw_io_run).
 * mw__io_in_thread is true there and false on the test thread, so a
 * close_conn from the test thread is handed to the poller: on_close runs on
 * the polling thread. */
static void test_io_in_thread_is_false_off_the_thread_polling_a_callers_loop(void **state) {
    svh_t *f = *state;
    mw_err_t err = {0};
    if (mw_io_new(&f->io, NULL, &err) != 0) fail_msg("io: %s", mw_err_text(&err));
    mw_svc_opts_t o;
    svh_svc_opts(f, &o);
    o.event.workers = 0;
    o.event.io = f->io;
    svh_listen(f, "tcp", &o);
    pthread_t poller = svh_spawn(f, poll_loop, f);
    if (!mw_wait_until(polled, f, SVH_WAIT_MS)) fail_msg("the poll thread did not poll");

    assert_false(mw__io_in_thread(f->io));
    assert_true(atomic_load(&f->poller_in_thread));

    mw_clt_t *c = svh_clt_connect(f, NULL);
    mw_conn_id_t id = svh_wait_accepted(f, 1);
    pthread_mutex_lock(&f->mu);
    bool accepted_on_poller = pthread_equal(f->accept_th[0], poller);
    pthread_mutex_unlock(&f->mu);
    assert_true(accepted_on_poller);
    assert_int_equal(mw_svc_close_conn(f->svc, id), 0);
    svh_close_t cr = svh_wait_closed(f, id);
    assert_int_equal(cr.reason, MW_ESTATE);
    assert_true(pthread_equal(cr.th, poller));
    if (!mw_wait_until(svh_clt_sees_closed, c, SVH_WAIT_MS)) fail_msg("the client did not see its connection end");
}
/* ==== end of the harness tests ==== */

/* Backends stay in their files: the io and the resolver's front end know
 * no libevent (selector_libevent.c and resolve_evdns.c do). */
static void test_io_and_resolve_include_no_libevent_header(void **state) {
    (void)state;
    static const char *const files[] = {"core/io.c", "core/resolve.c", "core/mw_io.h", "core/resolve_impl.h"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[512], line[512];
        snprintf(path, sizeof path, "%s/%s", MW_SRC_ROOT, files[i]);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        int includes = 0;
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "#include", 8) != 0) continue;
            includes++;
            if (strstr(line, "event2/")) fail_msg("%s: %s", files[i], line);
        }
        fclose(f);
        assert_true(includes > 0);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_io_and_resolve_include_no_libevent_header),
        cmocka_unit_test(test_io_new_checks_options),
        cmocka_unit_test(test_io_timers_fire_in_due_order),
        cmocka_unit_test(test_io_timer_rearm_and_stop_from_callbacks),
        cmocka_unit_test(test_io_timer_rearmed_at_now_waits_for_next_poll),
        cmocka_unit_test(test_io_1000_random_timers_fire_in_order),
        cmocka_unit_test(test_io_poll_wakes_for_next_timer),
        cmocka_unit_test(test_io_unlimited_poll_fires_monotonic_timers_in_order_without_early_runs),
        cmocka_unit_test(test_io_keep_list_releases_only_entries_idle_for_a_whole_period),
        cmocka_unit_test(test_io_poll_counts_sources_timers_and_posts),
        cmocka_unit_test(test_io_steady_state_does_not_allocate),
        cmocka_unit_test(test_io_posts_from_4_threads_run_once_in_fifo_order),
        cmocka_unit_test(test_io_start_stop_joins),
        cmocka_unit_test(test_io_break_ends_run_on_the_callers_thread),
        cmocka_unit_test(test_io_free_runs_pending_posts),
        cmocka_unit_test(test_io_callers_event_base_drives_sources_timers_and_posts),
        /* harness tests (svc_harness.h) */
        SVH_T(test_io_in_thread_is_false_off_the_thread_polling_a_callers_loop, event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
