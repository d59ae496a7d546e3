/* test_selector.c - the three selector backends behind one ops table: read
 * and write readiness, mod, del (also of another ready source from inside a
 * callback, its owner freed), timeouts, cross-thread wake, and the libevent
 * backend over a caller's own event_base. Every body runs over every backend;
 * the direct backend reports every source ready for what it wants, and the
 * bodies say where that changes the expected outcome. */
#include "mw_test.h"

#include "mw_clock.h"
#include "selector_impl.h"

#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *const backends[] = {"epoll", "libevent", "direct"};
#define NBACKENDS (sizeof backends / sizeof backends[0])
#define LONG_NS (5 * MW_NS_PER_S) /* bounds waits that must return much sooner */

typedef struct owner {
    mw_sel_src_t src;
    int fd, peer;
    int calls, events;
} owner_t;

static bool is_direct(const mw__selector_t *s) { return s->ops == &mw__selector_direct; }

static void open_sel(mw__selector_t *s, const char *name) {
    const mw__selector_ops_t *ops = mw__selector_find(name);
    assert_non_null(ops);
    assert_string_equal(ops->name, name);
    assert_int_equal(mw__selector_open(s, ops, NULL), 0);
}

static void pair(int sv[2]) {
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
}

static void drain(int fd) {
    char buf[256];
    while (read(fd, buf, sizeof buf) > 0) {}
}

/* Reports one unit of work per call: these bodies count dispatches. What
 * owners that report real progress get is in test_work.c. */
static int on_ready(mw_sel_src_t *src, int events) {
    owner_t *o = src->ud;
    o->calls++;
    o->events = events;
    if (events & MW_WANT_READ) drain(o->fd);
    return 1;
}

static void owner_init(owner_t *o, int events) {
    int sv[2];
    pair(sv);
    memset(o, 0, sizeof *o);
    o->fd = sv[0];
    o->peer = sv[1];
    mw_sel_src_init(&o->src, o->fd, events, on_ready, o);
}

static void owner_fini(mw__selector_t *s, owner_t *o) {
    assert_int_equal(mw__selector_del(s, &o->src), 0);
    close(o->fd);
    close(o->peer);
}

static void poke(owner_t *o) { assert_int_equal(write(o->peer, "x", 1), 1); }

static void test_selector_find_and_open_checks(void **state) {
    (void)state;
    for (size_t i = 0; i < NBACKENDS; i++) assert_non_null(mw__selector_find(backends[i]));
    assert_null(mw__selector_find("kqueue"));
    assert_null(mw__selector_find(NULL));
    mw__selector_t s;
    assert_int_equal(mw__selector_open(&s, NULL, NULL), MW_EINVAL);
    mw__selector_close(&s); /* after a failed open: a no-op */
    struct event_base *base = event_base_new();
    assert_non_null(base);
    assert_int_equal(mw__selector_open(&s, &mw__selector_epoll, base), MW_EINVAL);
    assert_true(strstr(mw_err_text(&s.err), "libevent") != NULL);
    event_base_free(base);
    for (size_t i = 0; i < NBACKENDS; i++) {
        open_sel(&s, backends[i]);
        assert_true((mw__selector_event_base(&s) != NULL) == (s.ops == &mw__selector_libevent));
        mw__selector_close(&s);
        mw__selector_close(&s); /* idempotent */
        assert_null(mw__selector_event_base(&s));
    }
}

static void test_selector_read_readiness_dispatches(void **state) {
    (void)state;
    for (size_t b = 0; b < NBACKENDS; b++) {
        mw__selector_t s;
        owner_t o;
        open_sel(&s, backends[b]);
        owner_init(&o, MW_WANT_READ);
        assert_int_equal(mw__selector_add(&s, &o.src), 0);
        assert_true(o.src.added);
        int n = mw__selector_wait(&s, 0);
        assert_int_equal(n, is_direct(&s) ? 1 : 0);
        assert_int_equal(o.calls, n);
        o.calls = 0;
        poke(&o);
        assert_int_equal(mw__selector_wait(&s, LONG_NS), 1);
        assert_int_equal(o.calls, 1);
        assert_int_equal(o.events, MW_WANT_READ);
        if (!is_direct(&s)) assert_int_equal(mw__selector_wait(&s, 0), 0); /* drained */
        owner_fini(&s, &o);
        mw__selector_close(&s);
    }
}

static void test_selector_write_readiness_dispatches(void **state) {
    (void)state;
    for (size_t b = 0; b < NBACKENDS; b++) {
        mw__selector_t s;
        owner_t o;
        open_sel(&s, backends[b]);
        owner_init(&o, MW_WANT_WRITE);
        assert_int_equal(mw__selector_add(&s, &o.src), 0);
        assert_int_equal(mw__selector_wait(&s, LONG_NS), 1);
        assert_int_equal(o.calls, 1);
        assert_int_equal(o.events, MW_WANT_WRITE);
        owner_fini(&s, &o);
        mw__selector_close(&s);
    }
}

static void test_selector_mod_switches_events(void **state) {
    (void)state;
    for (size_t b = 0; b < NBACKENDS; b++) {
        mw__selector_t s;
        owner_t o;
        open_sel(&s, backends[b]);
        bool direct = is_direct(&s);
        owner_init(&o, MW_WANT_READ);
        assert_int_equal(mw__selector_add(&s, &o.src), 0);
        if (!direct) assert_int_equal(mw__selector_wait(&s, 0), 0);

        assert_int_equal(mw__selector_mod(&s, &o.src, MW_WANT_WRITE), 0);
        assert_int_equal(o.src.events, MW_WANT_WRITE);
        assert_int_equal(mw__selector_wait(&s, LONG_NS), 1);
        assert_int_equal(o.events, MW_WANT_WRITE);

        assert_int_equal(mw__selector_mod(&s, &o.src, MW_WANT_READ), 0);
        o.calls = 0;
        if (!direct) assert_int_equal(mw__selector_wait(&s, 0), 0);
        poke(&o);
        assert_int_equal(mw__selector_wait(&s, LONG_NS), 1);
        assert_int_equal(o.events, MW_WANT_READ);

        /* Both at once: one dispatch with both bits. */
        poke(&o);
        assert_int_equal(mw__selector_mod(&s, &o.src, MW_WANT_READ | MW_WANT_WRITE), 0);
        assert_int_equal(mw__selector_wait(&s, LONG_NS), 1);
        assert_int_equal(o.events, MW_WANT_READ | MW_WANT_WRITE);

        /* Nothing wanted: nothing dispatched, even with data waiting. */
        assert_int_equal(mw__selector_mod(&s, &o.src, 0), 0);
        poke(&o);
        o.calls = 0;
        assert_int_equal(mw__selector_wait(&s, 0), 0);
        assert_int_equal(o.calls, 0);
        assert_int_equal(mw__selector_mod(&s, &o.src, MW_WANT_READ), 0);
        assert_int_equal(mw__selector_wait(&s, LONG_NS), 1);
        assert_int_equal(o.events, MW_WANT_READ);
        owner_fini(&s, &o);
        mw__selector_close(&s);
    }
}

static void test_selector_del_stops_dispatch(void **state) {
    (void)state;
    for (size_t b = 0; b < NBACKENDS; b++) {
        mw__selector_t s;
        owner_t o;
        open_sel(&s, backends[b]);
        owner_init(&o, MW_WANT_READ | MW_WANT_WRITE);
        assert_int_equal(mw__selector_add(&s, &o.src), 0);
        assert_int_equal(mw__selector_add(&s, &o.src), MW_ESTATE);
        poke(&o);
        assert_int_equal(mw__selector_del(&s, &o.src), 0);
        assert_false(o.src.added);
        assert_int_equal(mw__selector_del(&s, &o.src), 0); /* not added: a no-op */
        assert_int_equal(mw__selector_wait(&s, 0), 0);
        assert_int_equal(o.calls, 0);
        /* And it can come back. */
        assert_int_equal(mw__selector_add(&s, &o.src), 0);
        assert_int_equal(mw__selector_wait(&s, LONG_NS), 1);
        assert_int_equal(o.calls, 1);
        owner_fini(&s, &o);
        mw__selector_close(&s);
    }
}

/* ---- deleting sources from callbacks ------------------------------------- */

#define NOWN 8

typedef struct killer {
    mw__selector_t *s;
    owner_t *own[NOWN]; /* heap-allocated owners, NULL once freed */
    int calls;
    bool kill_self;
} killer_t;

static killer_t g_kill;

static void free_owner(killer_t *k, int i) {
    assert_int_equal(mw__selector_del(k->s, &k->own[i]->src), 0);
    close(k->own[i]->fd);
    close(k->own[i]->peer);
    free(k->own[i]);
    k->own[i] = NULL;
}

static int on_kill(mw_sel_src_t *src, int events) {
    (void)events;
    killer_t *k = &g_kill;
    owner_t *me = src->ud;
    k->calls++;
    for (int i = 0; i < NOWN; i++) {
        if (!k->own[i]) continue;
        if ((k->own[i] == me) == k->kill_self) free_owner(k, i);
    }
    return 1;
}

static void kill_round(const char *name, bool kill_self) {
    mw__selector_t s;
    open_sel(&s, name);
    memset(&g_kill, 0, sizeof g_kill);
    g_kill.s = &s;
    g_kill.kill_self = kill_self;
    for (int i = 0; i < NOWN; i++) {
        owner_t *o = malloc(sizeof *o);
        assert_non_null(o);
        owner_init(o, MW_WANT_READ);
        o->src.fn = on_kill;
        poke(o);
        assert_int_equal(mw__selector_add(&s, &o->src), 0);
        g_kill.own[i] = o;
    }
    /* Every source is ready; make sure the kernel backends see all of them
     * in one batch by waiting until the first wait reports something. */
    int n = mw__selector_wait(&s, LONG_NS);
    if (kill_self) {
        /* Each deletes only itself: all eight run (possibly over two waits
         * for libevent, which may split the batch). */
        while (g_kill.calls < NOWN && n > 0) n = mw__selector_wait(&s, LONG_NS);
        assert_int_equal(g_kill.calls, NOWN);
    } else {
        /* The first to run deletes and frees all the others. */
        assert_int_equal(n, 1);
        assert_int_equal(g_kill.calls, 1);
    }
    int left = 0;
    for (int i = 0; i < NOWN; i++) {
        if (!g_kill.own[i]) continue;
        left++;
        free_owner(&g_kill, i);
    }
    assert_int_equal(left, kill_self ? 0 : 1);
    mw__selector_close(&s);
}

static void test_selector_del_of_other_ready_source_in_callback_is_safe(void **state) {
    (void)state;
    for (size_t b = 0; b < NBACKENDS; b++) kill_round(backends[b], false);
}

static void test_selector_del_of_self_in_callback_is_safe(void **state) {
    (void)state;
    for (size_t b = 0; b < NBACKENDS; b++) kill_round(backends[b], true);
}

/* direct: a source added from a callback is not visited in the same pass. */
static owner_t g_late;
static mw__selector_t *g_sel;

static int on_add_late(mw_sel_src_t *src, int events) {
    on_ready(src, events);
    if (!g_late.src.added) assert_int_equal(mw__selector_add(g_sel, &g_late.src), 0);
    return 1;
}

static void test_selector_add_from_callback(void **state) {
    (void)state;
    for (size_t b = 0; b < NBACKENDS; b++) {
        mw__selector_t s;
        owner_t o;
        open_sel(&s, backends[b]);
        g_sel = &s;
        owner_init(&o, MW_WANT_READ);
        o.src.fn = on_add_late;
        owner_init(&g_late, MW_WANT_READ);
        poke(&o);
        poke(&g_late);
        assert_int_equal(mw__selector_add(&s, &o.src), 0);
        assert_int_equal(mw__selector_wait(&s, LONG_NS), 1);
        assert_true(g_late.src.added);
        assert_int_equal(g_late.calls, 0);
        assert_true(mw__selector_wait(&s, LONG_NS) >= 1);
        assert_int_equal(g_late.calls, 1);
        owner_fini(&s, &o);
        owner_fini(&s, &g_late);
        mw__selector_close(&s);
    }
}

static void test_selector_direct_polls_sources_without_fd(void **state) {
    (void)state;
    mw__selector_t s;
    owner_t o;
    memset(&o, 0, sizeof o);
    o.fd = -1;
    open_sel(&s, "direct");
    mw_sel_src_init(&o.src, -1, MW_WANT_WRITE, on_ready, &o);
    assert_int_equal(mw__selector_add(&s, &o.src), 0);
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(mw__selector_wait(&s, -1), 1); /* never blocks */
        assert_int_equal(o.calls, i);
    }
    mw__selector_close(&s); /* forgets the source */
    assert_false(o.src.added);
    for (size_t b = 0; b < 2; b++) {
        open_sel(&s, backends[b]);
        assert_int_equal(mw__selector_add(&s, &o.src), MW_EINVAL);
        mw__selector_close(&s);
    }
}

/* A source that stays ready (writable, nothing to write) and reports no
 * work: a zero-timeout wait dispatches it once and returns 0. libevent's
 * EVLOOP_NONBLOCK alone kept looping while callbacks stayed active; past
 * 100 calls in one wait the callback breaks the loop so the test ends. */
static int g_busy_calls;
static int on_busy(mw_sel_src_t *src, int events) {
    (void)events;
    mw__selector_t *s = src->ud;
    if (++g_busy_calls > 100 && mw__selector_event_base(s)) event_base_loopbreak(mw__selector_event_base(s));
    return 0;
}

static void test_selector_zero_wait_returns_with_a_source_that_stays_ready(void **state) {
    (void)state;
    for (size_t b = 0; b < NBACKENDS; b++) {
        mw__selector_t s;
        owner_t o;
        open_sel(&s, backends[b]);
        owner_init(&o, MW_WANT_WRITE);
        o.src.fn = on_busy;
        o.src.ud = &s;
        assert_int_equal(mw__selector_add(&s, &o.src), 0);
        for (int i = 1; i <= 3; i++) {
            g_busy_calls = 0;
            assert_int_equal(mw__selector_wait(&s, 0), 0);
            assert_int_equal(g_busy_calls, 1);
        }
        owner_fini(&s, &o);
        mw__selector_close(&s);
    }
}

static void test_selector_peer_close_reports_readable(void **state) {
    (void)state;
    for (size_t b = 0; b < NBACKENDS; b++) {
        mw__selector_t s;
        owner_t o;
        open_sel(&s, backends[b]);
        owner_init(&o, MW_WANT_READ);
        assert_int_equal(mw__selector_add(&s, &o.src), 0);
        close(o.peer);
        o.peer = -1;
        assert_int_equal(mw__selector_wait(&s, LONG_NS), 1);
        assert_true(o.events & MW_WANT_READ);
        char c;
        assert_int_equal(read(o.fd, &c, 1), 0); /* end of stream */
        assert_int_equal(mw__selector_del(&s, &o.src), 0);
        close(o.fd);
        mw__selector_close(&s);
    }
}

static void test_selector_wait_timeout_is_respected(void **state) {
    (void)state;
    for (size_t b = 0; b < NBACKENDS; b++) {
        mw__selector_t s;
        owner_t o;
        open_sel(&s, backends[b]);
        owner_init(&o, MW_WANT_READ); /* never ready */
        if (!is_direct(&s)) assert_int_equal(mw__selector_add(&s, &o.src), 0);
        uint64_t t0 = mw_now_ns();
        assert_int_equal(mw__selector_wait(&s, 20 * MW_NS_PER_MS), 0);
        uint64_t el = mw_now_ns() - t0;
        assert_true(el < (uint64_t)LONG_NS);
        if (!is_direct(&s)) assert_true(el >= 10 * MW_NS_PER_MS); /* it did wait */
        /* Sub-millisecond and zero timeouts return too. */
        assert_int_equal(mw__selector_wait(&s, 100 * MW_NS_PER_US), 0);
        assert_int_equal(mw__selector_wait(&s, 1), 0);
        assert_int_equal(mw__selector_wait(&s, 0), 0);
        if (!is_direct(&s)) assert_int_equal(mw__selector_del(&s, &o.src), 0);
        close(o.fd);
        close(o.peer);
        mw__selector_close(&s);
    }
}

/* ---- wake from another thread -------------------------------------------- */

#define WAKE_ROUNDS 200

typedef struct wake_ctx {
    mw__selector_t *s;
    atomic_int round; /* main is about to wait in this round */
    atomic_int done;  /* main returned from this round's wait */
    atomic_bool stuck;
    int rescue_fd;    /* writing it unblocks a wait that wake failed to end */
    int want;
} wake_ctx_t;

static bool round_started(void *ud) {
    wake_ctx_t *w = ud;
    return atomic_load(&w->round) >= w->want;
}

static bool round_done(void *ud) {
    wake_ctx_t *w = ud;
    return atomic_load(&w->done) >= w->want;
}

static void *waker(void *arg) {
    wake_ctx_t *w = arg;
    for (w->want = 1; w->want <= WAKE_ROUNDS; w->want++) {
        if (!mw_wait_until(round_started, w, 5000)) break;
        mw__selector_wake(w->s);
        if (!mw_wait_until(round_done, w, 5000)) {
            atomic_store(&w->stuck, true); /* checked by the main thread */
            ssize_t r = write(w->rescue_fd, "r", 1);
            (void)r;
            break;
        }
    }
    return NULL;
}

static void test_selector_wake_unblocks_wait_from_another_thread(void **state) {
    (void)state;
    for (size_t b = 0; b < 2; b++) { /* direct never blocks */
        mw__selector_t s;
        owner_t rescue;
        open_sel(&s, backends[b]);
        owner_init(&rescue, MW_WANT_READ);
        assert_int_equal(mw__selector_add(&s, &rescue.src), 0);
        wake_ctx_t w = {.s = &s, .rescue_fd = rescue.peer};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, waker, &w), 0);
        int bad = 0;
        for (int r = 1; r <= WAKE_ROUNDS && !atomic_load(&w.stuck); r++) {
            atomic_store(&w.round, r);
            if (mw__selector_wait(&s, -1) < 0) bad++;
            atomic_store(&w.done, r);
        }
        pthread_join(th, NULL);
        assert_false(atomic_load(&w.stuck));
        assert_int_equal(bad, 0);
        assert_int_equal(rescue.calls, 0);
        owner_fini(&s, &rescue);
        mw__selector_close(&s);
    }
}

/* ---- libevent over the caller's base ------------------------------------- */

static void test_selector_libevent_on_callers_base(void **state) {
    (void)state;
    struct event_base *base = event_base_new();
    assert_non_null(base);
    mw__selector_t s;
    assert_int_equal(mw__selector_open(&s, &mw__selector_libevent, base), 0);
    assert_ptr_equal(mw__selector_event_base(&s), base);
    owner_t o, forgotten;
    owner_init(&o, MW_WANT_READ);
    owner_init(&forgotten, MW_WANT_READ);
    assert_int_equal(mw__selector_add(&s, &o.src), 0);
    assert_int_equal(mw__selector_add(&s, &forgotten.src), 0);
    poke(&o);
    /* The caller's loop drives the source. */
    for (int i = 0; i < 100 && o.calls == 0; i++) event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(o.calls, 1);
    assert_int_equal(forgotten.calls, 0);
    assert_int_equal(mw__selector_del(&s, &o.src), 0);
    /* Close frees the events of sources still added and leaves the caller's
     * base empty, and alive. */
    mw__selector_close(&s);
    assert_false(forgotten.src.added);
    assert_null(forgotten.src.bk);
    assert_int_equal(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), 0);
    event_base_free(base);
    close(o.fd);
    close(o.peer);
    close(forgotten.fd);
    close(forgotten.peer);
}

/* Loop timers (libevent only): a timer source fires from the caller's own
 * loop, re-arming moves it, a negative delay disarms it, del frees it, and a
 * timer still armed at close leaves the caller's base empty. */
static int g_timer_fired;
static int on_timer_src(mw_sel_src_t *src, int events) {
    (void)src;
    assert_int_equal(events, 0);
    g_timer_fired++;
    return 1;
}

static void test_selector_loop_timers_fire_from_the_callers_loop(void **state) {
    (void)state;
    mw__selector_t s;
    for (size_t b = 0; b < NBACKENDS; b++) {
        open_sel(&s, backends[b]);
        assert_true(mw__selector_has_loop_timers(&s) == (s.ops == &mw__selector_libevent));
        mw__selector_close(&s);
    }
    struct event_base *base = event_base_new();
    assert_non_null(base);
    assert_int_equal(mw__selector_open(&s, &mw__selector_libevent, base), 0);
    mw_sel_src_t t, left;
    mw_sel_src_init(&t, -1, 0, on_timer_src, NULL);
    mw_sel_src_init(&left, -1, 0, on_timer_src, NULL);
    g_timer_fired = 0;
    assert_int_equal(mw__selector_timer(&s, &t, -1), 0); /* disarming an unarmed timer: nothing */
    assert_false(t.added);
    assert_int_equal(mw__selector_timer(&s, &t, LONG_NS), 0);
    assert_int_equal(mw__selector_timer(&s, &t, MW_NS_PER_MS), 0); /* moved earlier */
    uint64_t dl = mw_now_ns() + (uint64_t)LONG_NS;
    while (g_timer_fired == 0 && mw_now_ns() < dl) event_base_loop(base, EVLOOP_ONCE);
    assert_int_equal(g_timer_fired, 1);
    /* One-shot; a disarmed timer does not fire, and wait() counts its work. */
    assert_int_equal(mw__selector_timer(&s, &t, 0), 0);
    assert_int_equal(mw__selector_timer(&s, &t, -1), 0);
    assert_int_equal(mw__selector_wait(&s, 5 * MW_NS_PER_MS), 0);
    assert_int_equal(g_timer_fired, 1);
    assert_int_equal(mw__selector_timer(&s, &t, 0), 0);
    assert_int_equal(mw__selector_wait(&s, LONG_NS), 1);
    assert_int_equal(g_timer_fired, 2);
    assert_int_equal(mw__selector_del(&s, &t), 0);
    assert_false(t.added);
    assert_null(t.bk);
    assert_int_equal(mw__selector_timer(&s, &left, LONG_NS), 0);
    mw__selector_close(&s);
    assert_false(left.added);
    assert_int_equal(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), 0);
    event_base_free(base);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_selector_loop_timers_fire_from_the_callers_loop),
        cmocka_unit_test(test_selector_find_and_open_checks),
        cmocka_unit_test(test_selector_read_readiness_dispatches),
        cmocka_unit_test(test_selector_write_readiness_dispatches),
        cmocka_unit_test(test_selector_mod_switches_events),
        cmocka_unit_test(test_selector_del_stops_dispatch),
        cmocka_unit_test(test_selector_del_of_other_ready_source_in_callback_is_safe),
        cmocka_unit_test(test_selector_del_of_self_in_callback_is_safe),
        cmocka_unit_test(test_selector_add_from_callback),
        cmocka_unit_test(test_selector_direct_polls_sources_without_fd),
        cmocka_unit_test(test_selector_peer_close_reports_readable),
        cmocka_unit_test(test_selector_zero_wait_returns_with_a_source_that_stays_ready),
        cmocka_unit_test(test_selector_wait_timeout_is_respected),
        cmocka_unit_test(test_selector_wake_unblocks_wait_from_another_thread),
        cmocka_unit_test(test_selector_libevent_on_callers_base),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
