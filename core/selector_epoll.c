/* selector_epoll.c - level-triggered epoll.
 *
 * Each registration carries the source pointer in epoll_event.data.ptr. A
 * callback may delete (and its owner may free) another source that is still
 * waiting later in the same ready batch, so del scrubs that pointer from the
 * rest of the batch; dispatch skips scrubbed entries. The batch is at most
 * MAX_EVENTS long and deletes from callbacks are rare, so a linear scan is
 * cheaper than any bookkeeping on the hot path.
 *
 * Positive timeouts use epoll_pwait2 (ns precision) where glibc and the
 * kernel have it, else epoll_wait with the timeout rounded up to whole ms.
 *
 * wait_until keeps a timerfd (absolute CLOCK_MONOTONIC, made at open)
 * armed across waits and waits with no timeout: a wait with a timeout sets
 * up a kernel hrtimer each time, which on a VM costs about as much as the
 * rest of a small message's handling. The timerfd is re-armed only when an
 * earlier due comes; it is one-shot and edge-triggered, so firing needs no
 * read.
 */
#include "selector_impl.h"
#include "mw_clock.h"
#include "err_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 64

#if defined(__GLIBC__) && defined(__GLIBC_PREREQ)
#if __GLIBC_PREREQ(2, 35)
#define HAVE_PWAIT2 1
#endif
#endif

typedef struct ep {
    int epfd;
    int wakefd;
    int tfd;              /* wait_until's timerfd */
    uint64_t tfd_due;     /* what tfd is armed for; MW_FOREVER: disarmed */
    bool tfd_fired;       /* tfd fired in the current wait */
    int pos, n;           /* the batch being dispatched: next index, length */
    bool no_pwait2;       /* the kernel said ENOSYS once */
    struct epoll_event evs[MAX_EVENTS];
} ep_t;

/* epoll_event.data.ptr of the timerfd: an address no source can have */
#define TFD_MARK(ep) ((void *)&(ep)->tfd)

static uint32_t to_epoll(int events) {
    uint32_t e = 0;
    if (events & MW_WANT_READ) e |= EPOLLIN | EPOLLRDHUP;
    if (events & MW_WANT_WRITE) e |= EPOLLOUT;
    return e;
}

/* Errors and hang-ups are reported as readable so the owner reads and sees
 * the error or the end of stream; epoll reports them even when unasked, and
 * dropping them would make a level-triggered wait spin. */
static int from_epoll(uint32_t e) {
    int ev = 0;
    if (e & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) ev |= MW_WANT_READ;
    if (e & EPOLLOUT) ev |= MW_WANT_WRITE;
    return ev;
}

static int ep_open(mw__selector_t *s, struct event_base *base) {
    (void)base;
    ep_t *ep = calloc(1, sizeof *ep);
    if (!ep) return mw__err_set(&s->err, MW_ENOMEM, "epoll selector: out of memory");
    ep->epfd = epoll_create1(EPOLL_CLOEXEC);
    ep->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ep->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    ep->tfd_due = MW_FOREVER;
    int rc = 0;
    if (ep->epfd < 0 || ep->wakefd < 0 || ep->tfd < 0) {
        rc = mw__err_set_errno(&s->err, errno, "epoll selector: create");
    } else {
        /* data.ptr == ep marks the wake fd; no source can have that address. */
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = ep};
        /* edge-triggered: each expiry is one event, and re-arming resets
         * it, so it never needs a read */
        struct epoll_event tev = {.events = EPOLLIN | EPOLLET, .data.ptr = TFD_MARK(ep)};
        if (epoll_ctl(ep->epfd, EPOLL_CTL_ADD, ep->wakefd, &ev) < 0 ||
            epoll_ctl(ep->epfd, EPOLL_CTL_ADD, ep->tfd, &tev) < 0)
            rc = mw__err_set_errno(&s->err, errno, "epoll selector: add wake fd");
    }
    if (rc < 0) {
        if (ep->epfd >= 0) close(ep->epfd);
        if (ep->wakefd >= 0) close(ep->wakefd);
        if (ep->tfd >= 0) close(ep->tfd);
        free(ep);
        return rc;
    }
    s->impl = ep;
    return 0;
}

static void ep_close(mw__selector_t *s) {
    ep_t *ep = s->impl;
    close(ep->epfd);
    close(ep->wakefd);
    close(ep->tfd);
    free(ep);
}

static int ep_add(mw__selector_t *s, mw_sel_src_t *src) {
    ep_t *ep = s->impl;
    if (src->added) return mw__err_set(&s->err, MW_ESTATE, "epoll add fd %d: already added", src->fd);
    if (src->fd < 0) return mw__err_set(&s->err, MW_EINVAL, "epoll add: no fd");
    struct epoll_event ev = {.events = to_epoll(src->events), .data.ptr = src};
    if (epoll_ctl(ep->epfd, EPOLL_CTL_ADD, src->fd, &ev) < 0)
        return mw__err_set_errno(&s->err, errno, "epoll add fd %d", src->fd);
    src->added = true;
    return 0;
}

static int ep_mod(mw__selector_t *s, mw_sel_src_t *src, int events) {
    ep_t *ep = s->impl;
    if (!src->added || src->events == events) {
        src->events = events;
        return 0;
    }
    struct epoll_event ev = {.events = to_epoll(events), .data.ptr = src};
    if (epoll_ctl(ep->epfd, EPOLL_CTL_MOD, src->fd, &ev) < 0)
        return mw__err_set_errno(&s->err, errno, "epoll mod fd %d", src->fd);
    src->events = events;
    return 0;
}

static int ep_del(mw__selector_t *s, mw_sel_src_t *src) {
    ep_t *ep = s->impl;
    if (!src->added) return 0;
    src->added = false;
    for (int i = ep->pos; i < ep->n; i++)
        if (ep->evs[i].data.ptr == src) ep->evs[i].data.ptr = NULL;
    /* EBADF/ENOENT: the fd was closed first and the kernel already dropped
     * the registration; the source is gone either way. */
    struct epoll_event ev = {0};
    if (epoll_ctl(ep->epfd, EPOLL_CTL_DEL, src->fd, &ev) < 0 && errno != EBADF && errno != ENOENT)
        return mw__err_set_errno(&s->err, errno, "epoll del fd %d", src->fd);
    return 0;
}

static int ep_sys_wait(ep_t *ep, int64_t timeout_ns) {
    if (timeout_ns <= 0) return epoll_wait(ep->epfd, ep->evs, MAX_EVENTS, timeout_ns < 0 ? -1 : 0);
#ifdef HAVE_PWAIT2
    if (!ep->no_pwait2) {
        struct timespec ts = {(time_t)(timeout_ns / MW_NS_PER_S), (long)(timeout_ns % MW_NS_PER_S)};
        int n = epoll_pwait2(ep->epfd, ep->evs, MAX_EVENTS, &ts, NULL);
        if (n >= 0 || errno != ENOSYS) return n;
        ep->no_pwait2 = true;
    }
#endif
    int64_t ms = (timeout_ns + MW_NS_PER_MS - 1) / MW_NS_PER_MS;
    return epoll_wait(ep->epfd, ep->evs, MAX_EVENTS, ms > INT32_MAX ? INT32_MAX : (int)ms);
}

/* Reading an eventfd resets it; EAGAIN means another read got there first. */
static void drain(int fd) {
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof v);
    (void)r;
}

/* Dispatches the n events epoll_wait returned (n < 0: its failure). */
static int dispatch(mw__selector_t *s, ep_t *ep, int n) {
    if (n < 0) {
        if (errno == EINTR) return 0;
        return mw__err_set_errno(&s->err, errno, "epoll_wait");
    }
    unsigned done = 0;
    ep->n = n;
    for (ep->pos = 0; ep->pos < ep->n;) {
        struct epoll_event *e = &ep->evs[ep->pos++];
        mw_sel_src_t *src = e->data.ptr;
        if (!src) continue; /* deleted by an earlier callback in this batch */
        if ((void *)src == ep) {
            drain(ep->wakefd);
            continue;
        }
        if ((void *)src == TFD_MARK(ep)) { /* fired (and disarmed: it is one-shot) */
            ep->tfd_due = MW_FOREVER;
            ep->tfd_fired = true;
            continue;
        }
        done += (unsigned)src->fn(src, from_epoll(e->events));
    }
    ep->pos = ep->n = 0;
    return mw__sel_work(done);
}

static int ep_wait(mw__selector_t *s, int64_t timeout_ns) {
    ep_t *ep = s->impl;
    return dispatch(s, ep, ep_sys_wait(ep, timeout_ns));
}

static int ep_wait_until(mw__selector_t *s, uint64_t due_ns, bool *reached) {
    ep_t *ep = s->impl;
    if (due_ns < ep->tfd_due) {
        struct itimerspec it = {.it_value = {(time_t)(due_ns / MW_NS_PER_S), (long)(due_ns % MW_NS_PER_S)}};
        if (it.it_value.tv_sec == 0 && it.it_value.tv_nsec == 0) it.it_value.tv_nsec = 1; /* 0 would disarm */
        if (timerfd_settime(ep->tfd, TFD_TIMER_ABSTIME, &it, NULL) < 0)
            return mw__err_set_errno(&s->err, errno, "timerfd_settime");
        ep->tfd_due = due_ns;
    }
    ep->tfd_fired = false;
    int n = dispatch(s, ep, epoll_wait(ep->epfd, ep->evs, MAX_EVENTS, -1));
    if (ep->tfd_fired) *reached = true;
    return n;
}

static void ep_wake(mw__selector_t *s) {
    ep_t *ep = s->impl;
    uint64_t one = 1;
    /* EAGAIN means the counter is saturated: a wake is pending anyway. */
    ssize_t r = write(ep->wakefd, &one, sizeof one);
    (void)r;
}

const mw__selector_ops_t mw__selector_epoll = {
    .name = "epoll",
    .open = ep_open,
    .close = ep_close,
    .add = ep_add,
    .mod = ep_mod,
    .del = ep_del,
    .wait = ep_wait,
    .wake = ep_wake,
    .wait_until = ep_wait_until,
};
