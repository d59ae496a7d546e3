/* mw_io.h - the IO service core: one selector, timers, and functions posted
 * from other threads, driven by one poll function. The run modes sit on top:
 *
 *   spin      mw_io_run_spin: poll(timeout 0) in a loop, idle strategy between
 *   blocking  mw_io_run: poll waits in the selector until work or a timer
 *   event     the same loop over the libevent backend, or the caller's own
 *             event_base (mw_io_opts.base): then the caller's dispatch drives
 *             every source, timer and posted function.
 *
 * Sources are mw_sel_src_t embedded in their owners (below): any fd a
 * program wants watched by the same loop (a signalfd, a pipe).
 * Timers are mw_io_timer_t embedded in their owners, on the io's clock, kept
 * in a binary heap (the heap array grows only when more timers than ever
 * before are armed at once). Posted functions are the thread-safe way to hand
 * work (an accepted connection, a close request) to the io's thread; they
 * allocate one small node each, so keep them off per-message paths.
 *
 * Thread rules: one thread runs an io (the "io thread"). mw_io_post,
 * mw_io_break and mw_io_stop may be called from any thread; everything else
 * only from the io thread (or before the io runs).
 */
#ifndef MW_IO_H
#define MW_IO_H

#include <stdbool.h>
#include <stdint.h>

#include "mw_api.h"
#include "mw_clock.h"
#include "mw_err.h"
#include "mw_idle.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mw_io mw_io_t;

/* Readiness bits: what a source waits for. */
enum { MW_WANT_READ = 1, MW_WANT_WRITE = 2 };

/* A source: an fd the io watches, embedded in its owner (no allocation for
 * the epoll and direct backends; libevent allocates its event at add time).
 * The io calls src->fn(src, events) for each ready source from inside a poll.
 * The callback returns the work it did: 0 when nothing moved (the read or
 * write would have blocked), else a positive count; a poll returns the sum,
 * so an idle strategy fed with it backs off when sources are quiet. */
typedef struct mw_sel_src mw_sel_src_t;
/* Returns the work done, >= 0 (see above). */
typedef int (*mw_sel_ready_fn)(mw_sel_src_t *src, int events);

struct mw_sel_src {
    int fd;            /* -1 allowed for the direct backend only */
    int events;        /* MW_WANT_READ | MW_WANT_WRITE currently wanted */
    mw_sel_ready_fn fn;
    void *ud;          /* owner's pointer, untouched by the selector */
    /* backend-private */
    void *bk;                /* libevent: struct event * */
    mw_sel_src_t *next, *prev; /* direct, libevent: list links */
    bool added;
};

static inline void mw_sel_src_init(mw_sel_src_t *src, int fd, int events,
                                   mw_sel_ready_fn fn, void *ud) {
    src->fd = fd;
    src->events = events;
    src->fn = fn;
    src->ud = ud;
    src->bk = NULL;
    src->next = src->prev = NULL;
    src->added = false;
}

typedef struct mw_io_opts {
    const char *backend;     /* "epoll" (default), "libevent", "direct" */
    struct event_base *base; /* libevent: the caller's base (not freed); NULL: own */
    const mw_clock_t *clock; /* NULL: the monotonic clock */
} mw_io_opts_t;

MW_API void mw_io_opts_init(mw_io_opts_t *o);

/* Allocates and opens an io. Returns 0, MW_EINVAL (unknown backend), MW_ENOMEM
 * or MW_ESYS (text in err). */
MW_API int mw_io_new(mw_io_t **out, const mw_io_opts_t *o, mw_err_t *err);
/* Stops the thread if started, runs no more callbacks, frees. NULL is a no-op.
 * Sources still registered are forgotten, not closed. Posted functions not yet
 * run are run with `cancelled` semantics: see mw_io_post. */
MW_API void mw_io_free(mw_io_t *io);

MW_API uint64_t mw_io_now(const mw_io_t *io);
/* The text of the last error a poll returned (the selector's). Never NULL. */
MW_API const char *mw_io_last_error(const mw_io_t *io);

/* Sources: add (0, MW_ESTATE if already added, MW_ESYS / MW_ENOMEM with the
 * text in mw_io_last_error), mod (the wanted events), del (0 if not added;
 * callable from any callback; delete BEFORE closing the fd). */
MW_API int mw_io_add(mw_io_t *io, mw_sel_src_t *src);
MW_API int mw_io_mod(mw_io_t *io, mw_sel_src_t *src, int events);
MW_API int mw_io_del(mw_io_t *io, mw_sel_src_t *src);

/* Timers. */
typedef struct mw_io_timer mw_io_timer_t;
typedef void (*mw_io_timer_fn)(mw_io_timer_t *t, void *ud);
struct mw_io_timer {
    uint64_t due;    /* absolute ns on the io clock */
    mw_io_timer_fn fn;
    void *ud;
    uint32_t slot;   /* heap index + 1; 0 when not armed */
};
static inline void mw_io_timer_init(mw_io_timer_t *t, mw_io_timer_fn fn, void *ud) {
    t->due = 0; t->fn = fn; t->ud = ud; t->slot = 0;
}
/* Arms (or re-arms) t to fire once at `due`. Returns 0 or MW_ENOMEM. Timers
 * due in the same poll run in due order (equal dues in no set order). A
 * timer armed from a timer callback runs at the earliest in the next poll,
 * even if already due; a callback may also stop or re-arm timers that are
 * due in the same poll and have not run yet. No allocation unless more
 * timers are armed at once than ever before. */
MW_API int mw_io_timer_at(mw_io_t *io, mw_io_timer_t *t, uint64_t due);
static inline int mw_io_timer_after(mw_io_t *io, mw_io_timer_t *t, int64_t delay_ns) {
    return mw_io_timer_at(io, t, mw_io_now(io) + (uint64_t)(delay_ns < 0 ? 0 : delay_ns));
}
MW_API void mw_io_timer_stop(mw_io_t *io, mw_io_timer_t *t);
static inline bool mw_io_timer_armed(const mw_io_timer_t *t) { return t->slot != 0; }

/* Posts fn(ud) to run on the io thread at its next poll, in FIFO order, and
 * wakes the io. Thread-safe. Returns 0 or MW_ENOMEM. If the io is freed first,
 * fn runs from mw_io_free so nothing posted is leaked. */
MW_API int mw_io_post(mw_io_t *io, void (*fn)(void *ud), void *ud);

/* One poll: waits up to timeout_ns (0 never blocks, < 0 no limit, shortened
 * to the next timer), dispatches ready sources, runs due timers and posted
 * functions. Returns the work done (>= 0): what the ready callbacks reported
 * (see mw_sel_ready_fn: progress, not readiness) plus the timers fired and
 * the posted functions run; or an MW_E* error from the selector. A poll
 * over quiet sources returns 0 on every backend, so mw_io_run_spin's idle
 * strategy backs off. */
MW_API int mw_io_poll(mw_io_t *io, int64_t timeout_ns);

/* Runs until mw_io_break/mw_io_stop: blocking waits (event/blocking mode).
 * Over the direct backend nothing blocks, so this spins. Returns 0 after a
 * break, or the selector's MW_E* error. A break issued while no loop runs
 * makes the next run return after at most one poll. */
MW_API int mw_io_run(mw_io_t *io);
/* Runs until break, never blocking: poll(0) then the idle strategy. */
MW_API int mw_io_run_spin(mw_io_t *io, mw_idle_t *idle);
/* Thread-safe: makes mw_io_run / mw_io_run_spin return after the current poll. */
MW_API void mw_io_break(mw_io_t *io);

/* Runs the io on a new thread (spin with *idle if idle is not NULL, else
 * blocking). Returns 0 or MW_ESYS / MW_ESTATE if already started. */
MW_API int mw_io_start(mw_io_t *io, const mw_idle_t *idle);
/* Breaks and joins the thread; returns once no callback can still run.
 * Idempotent; must not be called from the io thread. */
MW_API void mw_io_stop(mw_io_t *io);
/* Releases the io's name resolver (call before mw_io_free if a Clt resolved
 * names on this io; mw_io_free does not know about it). Pending requests
 * are cancelled. io thread, or the io stopped. */
MW_API void mw_resolve_shutdown(mw_io_t *io);

#ifdef __cplusplus
}
#endif

#endif
