/* selector_libevent.c - sources as persistent libevent events.
 *
 * Each source owns one event (src->bk) whose callback calls src->fn directly,
 * so whoever runs the base's loop drives msgwire: our wait(), or a caller
 * running event_base_dispatch() on their own base. Added sources are also
 * kept on a list through their links so close() can free their events and
 * leave a caller's base clean.
 *
 * wake() writes an eventfd that has a persistent read event on the base.
 * Unlike event_base_loopbreak or event_active it is safe from any thread
 * even on a caller's base created before evthread_use_pthreads() ran (such a
 * base has no locks). Bases we create are made after evthread_use_pthreads()
 * anyway, so callers may use libevent's own cross-thread calls on them.
 */
#include "selector_impl.h"
#include "mw_clock.h"
#include "err_impl.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

typedef struct le {
    struct event_base *base;
    bool own;
    int wakefd;
    struct event *wake_ev;
    struct event *tmo_ev; /* one-shot timer bounding a wait() */
    mw_sel_src_t *head;   /* added sources */
} le_t;

/* Work reported by callbacks, summed on the thread running the loop: wait()
 * returns the difference. The callback has only the source at hand, not the
 * selector, and a base runs its callbacks on the thread that runs its loop.
 * Unsigned, so the sum may wrap while a caller's loop runs without wait(). */
static _Thread_local unsigned work_sum;

static pthread_once_t threads_once = PTHREAD_ONCE_INIT;
static int threads_rc;

static void threads_init(void) { threads_rc = evthread_use_pthreads(); }

static short to_ev(int events) {
    short f = 0;
    if (events & MW_WANT_READ) f |= EV_READ;
    if (events & MW_WANT_WRITE) f |= EV_WRITE;
    return f;
}

static void src_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    mw_sel_src_t *src = arg;
    int ev = 0;
    if (what & EV_READ) ev |= MW_WANT_READ;
    if (what & EV_WRITE) ev |= MW_WANT_WRITE;
    work_sum += (unsigned)src->fn(src, ev);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    mw_sel_src_t *src = arg;
    work_sum += (unsigned)src->fn(src, 0);
}

static void wake_cb(evutil_socket_t fd, short what, void *arg) {
    (void)what;
    (void)arg;
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof v); /* EAGAIN: already drained */
    (void)r;
}

static void tmo_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    (void)arg;
}

static struct event_base *own_base(void) {
    struct event_config *cfg = event_config_new();
    if (!cfg) return NULL;
    /* Monotonic, not coarse, time and timerfd-backed sub-ms timeouts. */
    event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    struct event_base *b = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return b;
}

static void le_free(le_t *le) {
    if (le->wake_ev) event_free(le->wake_ev);
    if (le->tmo_ev) event_free(le->tmo_ev);
    if (le->wakefd >= 0) close(le->wakefd);
    if (le->own && le->base) event_base_free(le->base);
    free(le);
}

static int le_open(mw__selector_t *s, struct event_base *base) {
    pthread_once(&threads_once, threads_init);
    if (threads_rc < 0) return mw__err_set(&s->err, MW_ESYS, "libevent selector: evthread_use_pthreads failed");
    le_t *le = calloc(1, sizeof *le);
    if (!le) return mw__err_set(&s->err, MW_ENOMEM, "libevent selector: out of memory");
    le->wakefd = -1;
    le->own = base == NULL;
    le->base = base ? base : own_base();
    if (!le->base) {
        le_free(le);
        return mw__err_set(&s->err, MW_ESYS, "libevent selector: event_base_new failed");
    }
    le->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (le->wakefd < 0) {
        int e = errno;
        le_free(le);
        return mw__err_set_errno(&s->err, e, "libevent selector: eventfd");
    }
    le->wake_ev = event_new(le->base, le->wakefd, EV_READ | EV_PERSIST, wake_cb, le);
    le->tmo_ev = evtimer_new(le->base, tmo_cb, le);
    if (!le->wake_ev || !le->tmo_ev || event_add(le->wake_ev, NULL) < 0) {
        le_free(le);
        return mw__err_set(&s->err, MW_ESYS, "libevent selector: wake/timeout event setup failed");
    }
    s->impl = le;
    return 0;
}

static void link_src(le_t *le, mw_sel_src_t *src) {
    src->prev = NULL;
    src->next = le->head;
    if (le->head) le->head->prev = src;
    le->head = src;
    src->added = true;
}

static void unlink_src(le_t *le, mw_sel_src_t *src) {
    if (src->prev) src->prev->next = src->next;
    else le->head = src->next;
    if (src->next) src->next->prev = src->prev;
    src->next = src->prev = NULL;
    event_free(src->bk);
    src->bk = NULL;
    src->added = false;
}

static void le_close(mw__selector_t *s) {
    le_t *le = s->impl;
    while (le->head) unlink_src(le, le->head);
    le_free(le);
}

static int le_add(mw__selector_t *s, mw_sel_src_t *src) {
    le_t *le = s->impl;
    if (src->added) return mw__err_set(&s->err, MW_ESTATE, "libevent add fd %d: already added", src->fd);
    if (src->fd < 0) return mw__err_set(&s->err, MW_EINVAL, "libevent add: no fd");
    short f = to_ev(src->events);
    struct event *ev = event_new(le->base, src->fd, f | EV_PERSIST, src_cb, src);
    if (!ev) return mw__err_set(&s->err, MW_ENOMEM, "libevent add fd %d: event_new failed", src->fd);
    if (f && event_add(ev, NULL) < 0) {
        event_free(ev);
        return mw__err_set(&s->err, MW_ESYS, "libevent add fd %d: event_add failed", src->fd);
    }
    src->bk = ev;
    link_src(le, src);
    return 0;
}

/* An event's flags are fixed once assigned, so mod re-assigns the same
 * (non-pending) event: no allocation. This is safe from the source's own
 * callback, which libevent does not touch after it returns. */
static int le_mod(mw__selector_t *s, mw_sel_src_t *src, int events) {
    le_t *le = s->impl;
    if (!src->added || src->events == events) {
        src->events = events;
        return 0;
    }
    struct event *ev = src->bk;
    short f = to_ev(events);
    event_del(ev);
    src->events = events;
    if (event_assign(ev, le->base, src->fd, f | EV_PERSIST, src_cb, src) < 0 ||
        (f && event_add(ev, NULL) < 0))
        return mw__err_set(&s->err, MW_ESYS, "libevent mod fd %d failed", src->fd);
    return 0;
}

/* event_free also takes the event off the active queue, so a source deleted
 * by an earlier callback of the same loop iteration never fires. */
static int le_del(mw__selector_t *s, mw_sel_src_t *src) {
    if (src->added) unlink_src(s->impl, src);
    return 0;
}

static int le_wait(mw__selector_t *s, int64_t timeout_ns) {
    le_t *le = s->impl;
    unsigned before = work_sum;
    /* EVLOOP_ONCE also with NONBLOCK: alone, NONBLOCK loops for as long as
     * callbacks keep becoming active, so one source that stays ready (a
     * writable socket its owner has nothing for) would never let it return. */
    int flags = timeout_ns == 0 ? EVLOOP_NONBLOCK | EVLOOP_ONCE : EVLOOP_ONCE;
    if (timeout_ns > 0) {
        int64_t us = (timeout_ns + MW_NS_PER_US - 1) / MW_NS_PER_US;
        struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
        event_add(le->tmo_ev, &tv);
    }
    int rc = event_base_loop(le->base, flags);
    if (timeout_ns > 0) event_del(le->tmo_ev);
    if (rc < 0) return mw__err_set(&s->err, MW_ESYS, "event_base_loop failed");
    return mw__sel_work(work_sum - before);
}

/* A timer source is kept on the source list like the others, so del and
 * close free its event the same way. */
static int le_timer(mw__selector_t *s, mw_sel_src_t *src, int64_t delay_ns) {
    le_t *le = s->impl;
    if (!src->added) {
        if (delay_ns < 0) return 0;
        src->bk = evtimer_new(le->base, timer_cb, src);
        if (!src->bk) return mw__err_set(&s->err, MW_ENOMEM, "libevent timer: evtimer_new failed");
        link_src(le, src);
    }
    if (delay_ns < 0) {
        event_del(src->bk);
        return 0;
    }
    int64_t us = (delay_ns + MW_NS_PER_US - 1) / MW_NS_PER_US;
    struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
    if (event_add(src->bk, &tv) < 0) return mw__err_set(&s->err, MW_ESYS, "libevent timer: event_add failed");
    return 0;
}

static void le_wake(mw__selector_t *s) {
    le_t *le = s->impl;
    uint64_t one = 1;
    ssize_t r = write(le->wakefd, &one, sizeof one); /* EAGAIN: a wake is pending */
    (void)r;
}

struct event_base *mw__selector_event_base(const mw__selector_t *s) {
    if (!s || s->ops != &mw__selector_libevent || !s->impl) return NULL;
    return ((const le_t *)s->impl)->base;
}

const mw__selector_ops_t mw__selector_libevent = {
    .name = "libevent",
    .open = le_open,
    .close = le_close,
    .add = le_add,
    .mod = le_mod,
    .del = le_del,
    .wait = le_wait,
    .wake = le_wake,
    .timer = le_timer,
};
