/* lock_impl.h - the one lock of a connection's send path.
 *
 * A connection that several threads send on (an event-mode Svc connection,
 * an event-mode Clt) has exactly one lock: a byte owned by whoever owns the
 * connection (the Svc's slot, the Clt), shared by reference with the
 * message connection (mw__conn_t) and with every stream decorator under it
 * that keeps state both directions touch (TLS: one SSL object; WebSocket:
 * the tx buffer, where reads queue pongs and close replies). A send takes
 * it once and then encodes, frames and writes through the whole stack with
 * no further lock; the decorators' tx operations (writev, writemsgs) assume
 * it held; their rx-side operations (read, handshake, pending, close) take
 * it themselves, since readers never hold it (see mw__stream_share_lock).
 *
 * A test-and-set lock: held for an encode and a write (or one TLS read), so
 * a waiter spins briefly, then yields (the holder may have been preempted).
 * Sanitizer builds count acquisitions per thread (mw__locks_taken), so
 * tests can prove how many locks each send path takes.
 */
#ifndef MW_LOCK_IMPL_H
#define MW_LOCK_IMPL_H

#include <stdbool.h>

#include "mw_idle.h"

#ifdef MW_SANITIZED
/* Locks (any kind on a send or receive path) taken by this thread. */
extern _Thread_local unsigned long mw__locks_taken;
#define MW__LOCK_NOTE() ((void)mw__locks_taken++)
#else
#define MW__LOCK_NOTE() ((void)0)
#endif

/* The wait for a held lock (lock.c), out of line: the free lock, the
 * common case, costs its callers one atomic exchange and no saved registers. */
void mw__lock_wait(bool *l);

static inline void mw__lock(bool *l) {
    MW__LOCK_NOTE();
    if (__builtin_expect(__atomic_test_and_set(l, __ATOMIC_ACQUIRE), 0)) mw__lock_wait(l);
}

static inline void mw__unlock(bool *l) { __atomic_clear(l, __ATOMIC_RELEASE); }

#endif
