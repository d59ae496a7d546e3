/* lock_impl.h - the one lock of a connection's send path.
 *
 * A connection that several threads send on (an event-mode Svc connection,
 * an event-mode Clt) has exactly one lock: a word owned by whoever owns the
 * connection (the Svc's slot, the Clt), shared by reference with the
 * message connection (mw__conn_t) and with every stream decorator under it
 * that keeps state both directions touch (TLS: one SSL object; WebSocket:
 * the tx buffer, where reads queue pongs and close replies). A send takes
 * it once and then encodes, frames and writes through the whole stack with
 * no further lock; the decorators' tx operations (writev, writemsgs) assume
 * it held; their rx-side operations (read, handshake, pending, close) take
 * it themselves, since readers never hold it (see mw__stream_share_lock).
 *
 * Usually it is held for an encode and a write (or one TLS read), but not
 * always: a session's send journals under it, and a journal in fsync mode
 * ALWAYS waits for the disk (msync: 0.06 to 2 ms here), as does a journal
 * file's growth. So a waiter spins briefly, yields a bounded number of
 * times (the holder may have been preempted), then sleeps in the kernel
 * until the holder lets go: a futex on a 32-bit word, 0 free, 1 held, 2
 * held and a waiter may sleep (Drepper, "Futexes are tricky"). Taking a
 * free lock is one compare-and-swap; letting go is a load and a plain
 * store, and a futex wake (a syscall) only when the word said 2.
 *
 * Why not Drepper's unlock, an atomic decrement: on the 2-core VM it made
 * an uncontended lock + unlock 10.4 ns instead of 5.3, and the event flood
 * sender, which takes the lock once per message, 27.0 instead of 21.7 ns
 * of CPU per message (37 M instead of 46 M msgs/s): a fifth of the rate on
 * every send for the rare long hold (tests/bench/bench_lock.c, README).
 * The plain store has a price too: a waiter that says 2 between the
 * holder's load and its store, and is asleep before the store, is not
 * woken (the store wipes the 2); so waiters sleep with a timeout (1 ms
 * doubling to 8 ms, lock.c) and such a lost wake, in a window of a few
 * instructions at the end of a hold, costs a bounded delay. Why not plain
 * stores and waiters in escalating nanosleeps: the same unlock cost, but
 * every waiter behind a hold over ~1 ms then has the lock up to a whole
 * sleep (~1 ms) late instead of tens of microseconds after the release.
 * Behind a 200 ms hold a waiter now uses 0.5 to 1.3 ms of CPU (its
 * timeouts' wake-ups), not the 200 ms of the sched_yield loop before.
 *
 * Sanitizer builds count acquisitions per thread (mw__locks_taken), so
 * tests can prove how many locks each send path takes. The word is only
 * touched through __atomic builtins, which ThreadSanitizer sees: the
 * futex syscalls carry no ordering of their own.
 */
#ifndef MW_LOCK_IMPL_H
#define MW_LOCK_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "mw_idle.h"

/* 0 free, 1 held, 2 held with (maybe) sleeping waiters. Zeroed is free. */
typedef uint32_t mw__lock_t;

#ifdef MW_SANITIZED
/* Locks (any kind on a send or receive path) taken by this thread. */
extern _Thread_local unsigned long mw__locks_taken;
#define MW__LOCK_NOTE() ((void)mw__locks_taken++)
#else
#define MW__LOCK_NOTE() ((void)0)
#endif

/* The wait for a held lock and the wake of a sleeping waiter (lock.c), out
 * of line: the free lock, the common case, costs its callers one atomic
 * compare-and-swap, a load and a store, and no saved registers. */
void mw__lock_wait(mw__lock_t *l);
void mw__lock_wake(mw__lock_t *l);

static inline void mw__lock(mw__lock_t *l) {
    MW__LOCK_NOTE();
    uint32_t free_ = 0;
    if (__builtin_expect(!__atomic_compare_exchange_n(l, &free_, 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED), 0))
        mw__lock_wait(l);
}

/* No atomic read-modify-write: a load and a store (see the top and
 * lock.c); the wake, a syscall, only when a waiter said it sleeps. */
static inline void mw__unlock(mw__lock_t *l) {
    if (__builtin_expect(__atomic_load_n(l, __ATOMIC_RELAXED) == 2, 0)) mw__lock_wake(l);
    else __atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

/* Whether the lock is held (by anyone): for assertions and tests. */
static inline bool mw__lock_held(const mw__lock_t *l) { return __atomic_load_n(l, __ATOMIC_RELAXED) != 0; }

#endif
