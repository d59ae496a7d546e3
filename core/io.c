/* io.c - the IO service core: one selector, a timer heap and a queue of
 * functions posted from other threads, driven by mw_io_poll.
 *
 * Timers: a binary min-heap of pointers ordered by due, slot = index + 1.
 * A poll first moves every timer already due into the `ready` array, then
 * runs that array. Timers armed by those callbacks (even for "now") go back
 * to the heap and wait for the next poll, so a timer re-arming itself at the
 * current time cannot keep one poll busy forever. A ready timer's slot is
 * READY_BIT | index, so stop and re-arm can pull it out before it runs.
 *
 * Posts: a mutex-protected FIFO plus an atomic flag that poll checks without
 * the lock. Only the post that makes the queue non-empty wakes the selector:
 * later ones are drained by the poll that wake causes.
 *
 * A loop the caller may run (the libevent backend: the caller's own
 * event_base_dispatch) must drive timers and posts without mw_io_poll. For
 * such a selector (mw__selector_has_loop_timers) one selector timer is kept
 * armed for the earliest due timer, and posts get their own eventfd source
 * whose callback runs them. Inside mw_io_poll those callbacks leave the work
 * to the poll, so a poll behaves the same on every backend. Everything
 * libevent-specific stays in selector_libevent.c.
 *
 * The keep list (io_impl.h): connections that hold buffers while traffic
 * flows, swept by one io timer so that idle ones give them back.
 *
 * A poll with no time limit while timers are armed waits through the
 * selector's own kernel timer when it has one (epoll: a timerfd, see
 * poll_until), not with a timeout per wait.
 */
#include "mw_io.h"
#include "io_impl.h"
#include "clock_impl.h"
#include "err_impl.h"
#include "selector_impl.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define READY_BIT 0x80000000u
#define MIN_TIMERS 16u
/* Longest loop timer we arm; a later due is reached by re-arming. */
#define MAX_TEV_NS (3600 * MW_NS_PER_S)

typedef struct post {
    struct post *next;
    void (*fn)(void *ud);
    void *ud;
} post_t;

struct mw_io {
    mw__selector_t sel;
    const mw_clock_t *clock; /* NULL: the monotonic clock */

    mw_io_timer_t **heap;
    mw_io_timer_t **ready; /* due timers taken by the running pass */
    uint32_t nheap, cap;

    pthread_mutex_t post_mu;
    post_t *post_head, *post_tail;
    atomic_bool post_pending;

    /* selectors with loop timers (libevent) only */
    bool loop;           /* the selector's loop drives timers and posts too */
    mw_sel_src_t tsrc;   /* the loop timer: fires at the earliest due */
    uint64_t tev_due;    /* the due tsrc is armed for; MW_FOREVER: not armed */
    int post_fd;         /* eventfd the post source waits on; -1 otherwise */
    mw_sel_src_t post_src;
    bool polling;        /* inside mw_io_poll's wait: leave timers and posts to it */

    atomic_bool brk;
    atomic_bool running;
    pthread_t run_thread;
    /* the thread that last polled (as an integer: pthread_t is one on Linux,
     * and an atomic lets other threads ask mw__io_in_thread safely); 0: none */
    atomic_uintptr_t owner;

    pthread_mutex_t life_mu; /* start/stop */
    atomic_bool started;
    pthread_t thread;
    bool spin;
    mw_idle_t idle;

    /* waits without a limit through the selector's own kernel timer
     * (wait_until): the selector has one and the io's clock is the
     * monotonic clock it counts in */
    bool until_ok;
    uint64_t until_due;     /* the due the selector's timer was last armed for */

    /* the keep list (io_impl.h) and its sweep */
    mw__io_keep_t *keep_head;
    mw_io_timer_t keep_tm;
    uint64_t keep_period;   /* ns to the next sweep */
};

/* ---- timer heap ------------------------------------------------------------ */

static void heap_put(mw_io_t *io, uint32_t i, mw_io_timer_t *t) {
    io->heap[i] = t;
    t->slot = i + 1;
}

static void sift_up(mw_io_t *io, uint32_t i) {
    mw_io_timer_t *t = io->heap[i];
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (io->heap[p]->due <= t->due) break;
        heap_put(io, i, io->heap[p]);
        i = p;
    }
    heap_put(io, i, t);
}

static void sift_down(mw_io_t *io, uint32_t i) {
    mw_io_timer_t *t = io->heap[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= io->nheap) break;
        if (c + 1 < io->nheap && io->heap[c + 1]->due < io->heap[c]->due) c++;
        if (t->due <= io->heap[c]->due) break;
        heap_put(io, i, io->heap[c]);
        i = c;
    }
    heap_put(io, i, t);
}

static void heap_remove(mw_io_t *io, uint32_t i) {
    io->heap[i]->slot = 0;
    mw_io_timer_t *last = io->heap[--io->nheap];
    if (i == io->nheap) return;
    heap_put(io, i, last);
    if (i > 0 && last->due < io->heap[(i - 1) / 2]->due) sift_up(io, i);
    else sift_down(io, i);
}

/* The ready array never holds more than the heap did, so both share cap. */
static int heap_grow(mw_io_t *io) {
    uint32_t cap = io->cap ? io->cap * 2 : MIN_TIMERS;
    if (cap >= READY_BIT) return MW_ENOMEM;
    mw_io_timer_t **h = realloc(io->heap, cap * sizeof *h);
    if (!h) return MW_ENOMEM;
    io->heap = h;
    h = realloc(io->ready, cap * sizeof *h);
    if (!h) return MW_ENOMEM;
    io->ready = h;
    io->cap = cap;
    return 0;
}

static void sync_tev(mw_io_t *io) {
    uint64_t due = io->nheap ? io->heap[0]->due : MW_FOREVER;
    if (due == io->tev_due) return;
    io->tev_due = due;
    if (due == MW_FOREVER) {
        mw__selector_timer(&io->sel, &io->tsrc, -1);
        return;
    }
    uint64_t now = mw__clock_now(io->clock);
    uint64_t ns = due > now ? due - now : 0;
    if (ns > (uint64_t)MAX_TEV_NS) ns = MAX_TEV_NS;
    /* A failed arm (out of memory at the first one) leaves the timers to
     * the next mw_io_poll; nothing else can be done from here. */
    if (mw__selector_timer(&io->sel, &io->tsrc, (int64_t)ns) < 0) io->tev_due = MW_FOREVER;
}

int mw_io_timer_at(mw_io_t *io, mw_io_timer_t *t, uint64_t due) {
    bool in_heap = t->slot && !(t->slot & READY_BIT);
    if (!in_heap && io->nheap == io->cap && heap_grow(io) < 0) return MW_ENOMEM;
    if (t->slot & READY_BIT) io->ready[t->slot & ~READY_BIT] = NULL;
    uint64_t old = t->due;
    t->due = due;
    if (in_heap) {
        if (due < old) sift_up(io, t->slot - 1);
        else sift_down(io, t->slot - 1);
    } else {
        io->heap[io->nheap++] = t;
        sift_up(io, io->nheap - 1);
    }
    if (io->loop) sync_tev(io);
    return 0;
}

void mw_io_timer_stop(mw_io_t *io, mw_io_timer_t *t) {
    if (!t->slot) return;
    if (t->slot & READY_BIT) {
        io->ready[t->slot & ~READY_BIT] = NULL;
        t->slot = 0;
        return;
    }
    heap_remove(io, t->slot - 1);
    if (io->loop) sync_tev(io);
}

static int run_timers(mw_io_t *io) {
    uint64_t now = mw__clock_now(io->clock);
    uint32_t n = 0;
    while (io->nheap && io->heap[0]->due <= now) {
        mw_io_timer_t *t = io->heap[0];
        heap_remove(io, 0);
        io->ready[n] = t;
        t->slot = READY_BIT | n++;
    }
    int ran = 0;
    /* io->ready is re-read each time: a callback arming timers may grow it. */
    for (uint32_t i = 0; i < n; i++) {
        mw_io_timer_t *t = io->ready[i];
        if (!t) continue; /* stopped or re-armed by an earlier callback */
        io->ready[i] = NULL;
        t->slot = 0;
        t->fn(t, t->ud);
        ran++;
    }
    if (io->loop) sync_tev(io);
    return ran;
}

/* A caller's loop runs our callbacks without mw_io_poll: note its thread as
 * the owner here too. */
static void note_owner(mw_io_t *io) {
    uintptr_t me = (uintptr_t)pthread_self();
    if (atomic_load_explicit(&io->owner, memory_order_relaxed) != me)
        atomic_store_explicit(&io->owner, me, memory_order_release);
}

/* The loop timer is one-shot: once fired it is no longer armed, even if it
 * fired a little early by our clock and nothing was due. Inside mw_io_poll
 * the poll runs the timers itself (and re-arms the loop timer). */
static int tev_ready(mw_sel_src_t *src, int events) {
    (void)events;
    mw_io_t *io = src->ud;
    note_owner(io);
    io->tev_due = MW_FOREVER;
    return io->polling ? 0 : run_timers(io);
}

/* ---- posts ----------------------------------------------------------------- */

static int run_posts(mw_io_t *io) {
    pthread_mutex_lock(&io->post_mu);
    post_t *p = io->post_head;
    io->post_head = io->post_tail = NULL;
    atomic_store_explicit(&io->post_pending, false, memory_order_relaxed);
    pthread_mutex_unlock(&io->post_mu);
    int n = 0;
    while (p) {
        post_t *next = p->next;
        p->fn(p->ud);
        free(p);
        p = next;
        n++;
    }
    return n;
}

/* Inside mw_io_poll the poll runs (and counts) the posts: no work here. */
static int post_ready(mw_sel_src_t *src, int events) {
    (void)events;
    mw_io_t *io = src->ud;
    note_owner(io);
    uint64_t v;
    ssize_t r = read(io->post_fd, &v, sizeof v); /* EAGAIN: already drained */
    (void)r;
    return io->polling ? 0 : run_posts(io);
}

int mw_io_post(mw_io_t *io, void (*fn)(void *ud), void *ud) {
    post_t *p = malloc(sizeof *p);
    if (!p) return MW_ENOMEM;
    p->next = NULL;
    p->fn = fn;
    p->ud = ud;
    pthread_mutex_lock(&io->post_mu);
    bool first = io->post_head == NULL;
    if (io->post_tail) io->post_tail->next = p;
    else io->post_head = p;
    io->post_tail = p;
    atomic_store_explicit(&io->post_pending, true, memory_order_release);
    pthread_mutex_unlock(&io->post_mu);
    if (!first) return 0;
    if (io->post_fd >= 0) {
        uint64_t one = 1;
        ssize_t r = write(io->post_fd, &one, sizeof one); /* EAGAIN: already signalled */
        (void)r;
    } else {
        mw__selector_wake(&io->sel);
    }
    return 0;
}

/* ---- the keep list ----------------------------------------------------------- */

/* Entries touched since the last sweep are cleared, the others are idle and
 * asked to give back what they hold. A release only gives memory back: it
 * runs no callback and unlinks nothing but itself. */
/* While every entry is in use at every sweep, the period doubles (up to
 * MW__IO_KEEP_MAX_NS): steady traffic costs ever fewer sweeps, and each
 * sweep costs a timer syscall or two. A sweep that finds an idle entry, or
 * a new entry, brings it back to MW__IO_KEEP_NS. */
static void keep_sweep(mw_io_timer_t *t, void *ud) {
    mw_io_t *io = ud;
    bool all_used = true;
    mw__io_keep_t *next;
    for (mw__io_keep_t *k = io->keep_head; k; k = next) {
        next = k->next;
        if (k->used) {
            k->used = false;
            continue;
        }
        all_used = false;
        if (k->release(k)) mw__io_keep_unlink(io, k);
    }
    uint64_t p = io->keep_period * 2;
    io->keep_period = all_used ? (p < MW__IO_KEEP_MAX_NS ? p : MW__IO_KEEP_MAX_NS) : MW__IO_KEEP_NS;
    if (io->keep_head) mw_io_timer_after(io, t, (int64_t)io->keep_period);
}

void mw__io_keep_link(mw_io_t *io, mw__io_keep_t *k) {
    if (k->linked) return;
    k->prev = NULL;
    k->next = io->keep_head;
    if (io->keep_head) io->keep_head->prev = k;
    io->keep_head = k;
    k->linked = true;
    /* out of memory for the timer: it is armed again at the next link */
    if (!mw_io_timer_armed(&io->keep_tm)) {
        io->keep_period = MW__IO_KEEP_NS;
        mw_io_timer_after(io, &io->keep_tm, MW__IO_KEEP_NS);
    } else if (io->keep_period > MW__IO_KEEP_NS) { /* the others were steady: this one may not be */
        io->keep_period = MW__IO_KEEP_NS;
        uint64_t due = mw_io_now(io) + MW__IO_KEEP_NS;
        if (due < io->keep_tm.due) mw_io_timer_at(io, &io->keep_tm, due);
    }
}

void mw__io_keep_unlink(mw_io_t *io, mw__io_keep_t *k) {
    if (!k->linked) return;
    if (k->prev) k->prev->next = k->next;
    else io->keep_head = k->next;
    if (k->next) k->next->prev = k->prev;
    k->next = k->prev = NULL;
    k->linked = false;
}

/* ---- life cycle ------------------------------------------------------------ */

void mw_io_opts_init(mw_io_opts_t *o) { memset(o, 0, sizeof *o); }

static int loop_hooks(mw_io_t *io, mw_err_t *err) {
    io->loop = true;
    mw_sel_src_init(&io->tsrc, -1, 0, tev_ready, io);
    io->post_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (io->post_fd < 0) return mw__err_set_errno(err, errno, "io: eventfd");
    mw_sel_src_init(&io->post_src, io->post_fd, MW_WANT_READ, post_ready, io);
    int rc = mw__selector_add(&io->sel, &io->post_src);
    if (rc < 0) mw__err_copy(err, &io->sel.err);
    return rc;
}

int mw_io_new(mw_io_t **out, const mw_io_opts_t *o, mw_err_t *err) {
    if (!out) return mw__err_set(err, MW_EINVAL, "io: out is NULL");
    *out = NULL;
    mw_io_opts_t def;
    if (!o) {
        mw_io_opts_init(&def);
        o = &def;
    }
    const char *name = o->backend ? o->backend : o->base ? "libevent" : "epoll";
    const mw__selector_ops_t *ops = mw__selector_find(name);
    if (!ops) return mw__err_set(err, MW_EINVAL, "io: unknown selector backend \"%s\"", name);
    mw_io_t *io = calloc(1, sizeof *io);
    if (!io) return mw__err_set(err, MW_ENOMEM, "io: out of memory");
    io->clock = o->clock;
    io->post_fd = -1;
    io->tev_due = MW_FOREVER;
    mw_io_timer_init(&io->keep_tm, keep_sweep, io);
    io->until_due = MW_FOREVER;
    atomic_init(&io->post_pending, false);
    atomic_init(&io->brk, false);
    atomic_init(&io->running, false);
    atomic_init(&io->started, false);
    pthread_mutex_init(&io->post_mu, NULL);
    pthread_mutex_init(&io->life_mu, NULL);
    /* Room for the first timers up front: arming a connection's timers (a
     * close's linger, say) should not be where memory is first asked for. */
    int rc = heap_grow(io);
    if (rc < 0) {
        mw__err_set(err, rc, "io: out of memory");
    } else if ((rc = mw__selector_open(&io->sel, ops, o->base)) < 0) {
        mw__err_copy(err, &io->sel.err);
    } else if (mw__selector_has_loop_timers(&io->sel)) {
        rc = loop_hooks(io, err);
    } else {
        io->until_ok = mw__selector_has_wait_until(&io->sel) && !io->clock;
    }
    if (rc < 0) {
        mw_io_free(io);
        return rc;
    }
    *out = io;
    return 0;
}

void mw_io_free(mw_io_t *io) {
    if (!io) return;
    mw_io_stop(io);
    while (run_posts(io) > 0) {} /* a posted function may post again */
    if (io->post_fd >= 0) {
        mw__selector_del(&io->sel, &io->post_src);
        close(io->post_fd);
    }
    if (io->loop) mw__selector_del(&io->sel, &io->tsrc);
    mw__selector_close(&io->sel);
    /* Timers still armed are forgotten; their owners may re-use them. So is
     * the keep list: its entries' owners unlink them later without harm. */
    for (uint32_t i = 0; i < io->nheap; i++) io->heap[i]->slot = 0;
    while (io->keep_head) mw__io_keep_unlink(io, io->keep_head);
    free(io->heap);
    free(io->ready);
    pthread_mutex_destroy(&io->post_mu);
    pthread_mutex_destroy(&io->life_mu);
    free(io);
}

mw__selector_t *mw__io_selector(mw_io_t *io) { return &io->sel; }
const char *mw_io_last_error(const mw_io_t *io) { return mw_err_text(&io->sel.err); }
const mw_clock_t *mw__io_clock(const mw_io_t *io) { return io->clock ? io->clock : &mw__clock_mono; }
uint64_t mw_io_now(const mw_io_t *io) { return mw__clock_now(io->clock); }
const char *mw__io_backend(const mw_io_t *io) { return io->sel.ops->name; }

int mw_io_add(mw_io_t *io, mw_sel_src_t *src) { return mw__selector_add(&io->sel, src); }
int mw_io_mod(mw_io_t *io, mw_sel_src_t *src, int events) { return mw__selector_mod(&io->sel, src, events); }
int mw_io_del(mw_io_t *io, mw_sel_src_t *src) { return mw__selector_del(&io->sel, src); }

/* ---- polling --------------------------------------------------------------- */

/* timeout_ns (not 0) shortened to the earliest due timer. */
static int64_t until_timer(const mw_io_t *io, int64_t timeout_ns) {
    uint64_t now = mw__clock_now(io->clock), due = io->heap[0]->due;
    if (due <= now) return 0;
    uint64_t left = due - now;
    if (timeout_ns > 0 && left > (uint64_t)timeout_ns) return timeout_ns;
    return left > INT64_MAX ? INT64_MAX : (int64_t)left;
}

/* A wait with no limit while timers are armed, over a selector that keeps
 * its own kernel timer (wait_until): no timeout per wait, and no clock read
 * while the earliest due is one the selector's timer already covers. Only a
 * new earlier due needs the clock: one within SHORT_WAIT_NS (or past) is
 * waited for with a plain timeout, as re-arming the kernel timer for it
 * would cost two syscalls (arm, then read it when it fires). */
#define SHORT_WAIT_NS MW_NS_PER_MS
static int poll_until(mw_io_t *io) {
    uint64_t due = io->heap[0]->due;
    int n;
    bool reached = false;
    if (due < io->until_due) {
        uint64_t now = mw__clock_now(io->clock);
        if (due <= now + SHORT_WAIT_NS) {
            io->polling = true;
            n = mw__selector_wait(&io->sel, due > now ? (int64_t)(due - now) : 0);
            io->polling = false;
            reached = true;
            goto ran;
        }
        io->until_due = due;
    }
    io->polling = true;
    n = mw__selector_wait_until(&io->sel, due, &reached);
    io->polling = false;
ran:
    if (n < 0) return n;
    if (reached) {
        io->until_due = MW_FOREVER; /* fired: the next due arms it again */
        n += run_timers(io);
    }
    if (atomic_load_explicit(&io->post_pending, memory_order_acquire)) n += run_posts(io);
    return n;
}

int mw_io_poll(mw_io_t *io, int64_t timeout_ns) {
    note_owner(io);
    if (atomic_load_explicit(&io->post_pending, memory_order_relaxed)) timeout_ns = 0;
    else if (io->nheap && timeout_ns < 0 && io->until_ok) return poll_until(io);
    else if (io->nheap && timeout_ns != 0) timeout_ns = until_timer(io, timeout_ns);
    io->polling = true;
    int n = mw__selector_wait(&io->sel, timeout_ns);
    io->polling = false;
    if (n < 0) return n;
    if (io->nheap) n += run_timers(io);
    if (atomic_load_explicit(&io->post_pending, memory_order_acquire)) n += run_posts(io);
    return n;
}

static void run_enter(mw_io_t *io) {
    io->run_thread = pthread_self();
    atomic_store(&io->running, true);
}

/* A break is consumed by the loop it stopped. */
static void run_leave(mw_io_t *io) {
    atomic_store(&io->running, false);
    atomic_store(&io->brk, false);
}

static bool broken(mw_io_t *io) { return atomic_load_explicit(&io->brk, memory_order_acquire); }

int mw_io_run(mw_io_t *io) {
    int rc = 0;
    run_enter(io);
    while (!broken(io)) {
        int n = mw_io_poll(io, -1);
        if (n < 0) {
            rc = n;
            break;
        }
    }
    run_leave(io);
    return rc;
}

int mw_io_run_spin(mw_io_t *io, mw_idle_t *idle) {
    int rc = 0;
    run_enter(io);
    while (!broken(io)) {
        int n = mw_io_poll(io, 0);
        if (n < 0) {
            rc = n;
            break;
        }
        if (idle) mw_idle(idle, n);
        else mw_cpu_relax();
    }
    run_leave(io);
    return rc;
}

void mw_io_break(mw_io_t *io) {
    atomic_store_explicit(&io->brk, true, memory_order_release);
    mw__selector_wake(&io->sel);
}

static void *io_main(void *arg) {
    mw_io_t *io = arg;
    int rc = io->spin ? mw_io_run_spin(io, &io->idle) : mw_io_run(io);
    if (rc < 0) mw__logf(MW_LOG_ERROR, "io thread stopped: %s", mw_err_text(&io->sel.err));
    return NULL;
}

int mw_io_start(mw_io_t *io, const mw_idle_t *idle) {
    int rc = 0;
    pthread_mutex_lock(&io->life_mu);
    if (atomic_load(&io->started)) {
        rc = MW_ESTATE;
    } else {
        io->spin = idle != NULL;
        if (idle) io->idle = *idle;
        atomic_store(&io->brk, false);
        if (pthread_create(&io->thread, NULL, io_main, io) != 0) rc = MW_ESYS;
        else atomic_store(&io->started, true);
    }
    pthread_mutex_unlock(&io->life_mu);
    return rc;
}

void mw_io_stop(mw_io_t *io) {
    if (!io) return;
    pthread_mutex_lock(&io->life_mu);
    if (atomic_load(&io->started)) {
        assert(!pthread_equal(pthread_self(), io->thread) && "mw_io_stop on the io thread");
        mw_io_break(io);
        pthread_join(io->thread, NULL);
        atomic_store(&io->owner, 0); /* stopped: whoever drives it next owns it */
        atomic_store(&io->started, false);
    }
    pthread_mutex_unlock(&io->life_mu);
}

bool mw__io_in_thread(const mw_io_t *io) {
    if (atomic_load(&io->running)) return pthread_equal(pthread_self(), io->run_thread);
    if (atomic_load(&io->started)) return pthread_equal(pthread_self(), io->thread);
    /* Driven by the caller's own mw_io_poll loop: the thread that polled last.
     * Never polled yet (set-up): any thread. */
    uintptr_t owner = atomic_load_explicit(&io->owner, memory_order_acquire);
    return owner == 0 || owner == (uintptr_t)pthread_self();
}
