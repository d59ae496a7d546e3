/* selector_impl.h - readiness backends behind one ops table (the io's; not
 * installed: users add their sources through mw_io_add).
 *
 *   epoll     Linux epoll, level-triggered. The default.
 *   libevent  an event_base (its own, or the caller's): sources become
 *             persistent libevent events whose callbacks dispatch directly,
 *             so a caller running event_base_dispatch() drives msgwire too.
 *   direct    no kernel readiness API: every wait reports every source as
 *             ready for the events it asked for, and the owner simply tries.
 *             For spin mode with a handful of connections: no epoll_wait
 *             syscall per poll, one recv per source instead.
 *
 * A source is an mw_sel_src_t embedded in its owner (no allocation for epoll
 * and direct; libevent allocates its event at add time). The selector calls
 * src->fn(src, events) for each ready source from inside wait().
 *
 * Work counts mean progress. A ready callback returns the work it did: 0 when
 * nothing moved (the read or write would have blocked, as it usually does
 * over the direct backend), else a positive count (messages delivered, or 1
 * for bytes moved, a connection accepted, a handshake step, a close). wait()
 * returns the sum, so an idle strategy fed with it backs off when sources are
 * registered but quiet, whatever the backend.
 *
 * Thread rules: one thread owns a selector; only `wake` may be called from
 * other threads.
 */
#ifndef MW_SELECTOR_IMPL_H
#define MW_SELECTOR_IMPL_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "mw_err.h"
#include "mw_io.h" /* mw_sel_src_t, MW_WANT_READ / MW_WANT_WRITE */

struct event_base;

typedef struct mw__selector mw__selector_t;

typedef struct mw__selector_ops {
    const char *name;
    /* base: libevent only, caller's event_base or NULL for an own one. */
    int (*open)(mw__selector_t *s, struct event_base *base);
    void (*close)(mw__selector_t *s);
    /* add registers src for src->events: 0, MW_ESTATE if already added,
     * MW_EINVAL if fd < 0 (except direct), MW_ESYS / MW_ENOMEM (text in err).
     * mod changes the wanted events (on a source not added it only sets
     * src->events). del unregisters (0 if not added) and may be called from
     * any callback, for any source, even one already reported ready in the
     * same wait(): it will not be dispatched, and its owner may free it as
     * soon as del returns. Delete BEFORE closing the fd: once closed, the number may already
     * belong to a new socket, and epoll would remove that one. */
    int (*add)(mw__selector_t *s, mw_sel_src_t *src);
    int (*mod)(mw__selector_t *s, mw_sel_src_t *src, int events);
    int (*del)(mw__selector_t *s, mw_sel_src_t *src);
    /* Waits up to timeout_ns (0: don't block; < 0: no limit) and dispatches.
     * Returns the work the dispatched callbacks reported (their sum, >= 0)
     * or an MW_E* error.
     * Returns early (possibly 0) after wake(). epoll waits with ns precision
     * where the kernel has epoll_pwait2 (else rounded up to ms), libevent
     * with us precision. direct never blocks, whatever the timeout. */
    int (*wait)(mw__selector_t *s, int64_t timeout_ns);
    /* Thread-safe: makes a blocked or next wait() return. */
    void (*wake)(mw__selector_t *s);
    /* Optional: NULL for backends whose sources only wait() dispatches
     * (epoll, direct). A backend whose loop the caller may run themselves
     * (libevent: event_base_dispatch on the caller's base) gives one-shot
     * timers on that loop, so the owner of timers (the io) is driven by it
     * too: arms src (fd -1, never passed to add) to call src->fn(src, 0)
     * from the loop after delay_ns (rounded up to the backend's precision);
     * arming again moves it; delay_ns < 0 disarms. The first arm allocates
     * (MW_ENOMEM / MW_ESYS, text in err); del(src) frees it, and close
     * forgets it like any source. */
    int (*timer)(mw__selector_t *s, mw_sel_src_t *src, int64_t delay_ns);
    /* Optional (epoll; NULL elsewhere): as wait() with no limit, but
     * returns once CLOCK_MONOTONIC has reached due_ns at the latest, and
     * then sets *reached (it is left alone otherwise). The backend keeps one
     * kernel timer armed across waits and re-arms it (a syscall) only when
     * due_ns is earlier than the time it is armed for. So a loop whose next
     * timer lies ahead waits without a timeout (a timeout costs a kernel
     * timer per wait: about 0.4 us on a VM) and reads no clock. *reached may
     * also be set early, when the timer was armed for an earlier due the
     * caller no longer has: it then finds nothing due and asks again. */
    int (*wait_until)(mw__selector_t *s, uint64_t due_ns, bool *reached);
} mw__selector_ops_t;

struct mw__selector {
    const mw__selector_ops_t *ops;
    void *impl;
    mw_err_t err;
};

extern const mw__selector_ops_t mw__selector_epoll;
extern const mw__selector_ops_t mw__selector_libevent;
extern const mw__selector_ops_t mw__selector_direct;

/* "epoll", "libevent", "direct" -> ops, or NULL. */
const mw__selector_ops_t *mw__selector_find(const char *name);

/* Opens s with ops (caller-owned struct). base is for libevent only (the
 * caller's event_base, not freed by close; NULL: an own one); with another
 * backend it is MW_EINVAL. Returns 0 or MW_E* (text in s->err). Allocates. */
int mw__selector_open(mw__selector_t *s, const mw__selector_ops_t *ops, struct event_base *base);
/* Closes s; idempotent. Sources still added are forgotten (their fds are not
 * closed); the libevent backend frees their events. */
void mw__selector_close(mw__selector_t *s);

/* Backends sum the callbacks' work as unsigned (one add per dispatch on the
 * hot path) and return it through this, which saturates at INT_MAX. */
static inline int mw__sel_work(unsigned sum) { return sum > INT_MAX ? INT_MAX : (int)sum; }

static inline int mw__selector_add(mw__selector_t *s, mw_sel_src_t *src) { return s->ops->add(s, src); }
static inline int mw__selector_mod(mw__selector_t *s, mw_sel_src_t *src, int ev) { return s->ops->mod(s, src, ev); }
static inline int mw__selector_del(mw__selector_t *s, mw_sel_src_t *src) { return s->ops->del(s, src); }
static inline int mw__selector_wait(mw__selector_t *s, int64_t t) { return s->ops->wait(s, t); }
static inline void mw__selector_wake(mw__selector_t *s) { s->ops->wake(s); }
static inline bool mw__selector_has_wait_until(const mw__selector_t *s) { return s->ops->wait_until != NULL; }
static inline int mw__selector_wait_until(mw__selector_t *s, uint64_t due_ns, bool *reached) {
    return s->ops->wait_until(s, due_ns, reached);
}
/* True if the backend's loop may be run by the caller (see ops->timer). */
static inline bool mw__selector_has_loop_timers(const mw__selector_t *s) { return s->ops->timer != NULL; }
static inline int mw__selector_timer(mw__selector_t *s, mw_sel_src_t *src, int64_t delay_ns) {
    return s->ops->timer(s, src, delay_ns);
}

/* libevent backend: the event_base in use (NULL for other backends, or a
 * selector not open). Defined in selector_libevent.c. */
struct event_base *mw__selector_event_base(const mw__selector_t *s);

#endif
