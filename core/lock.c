/* lock.c - the wait for a held send-path lock, the wake of its sleeping
 * waiters, and the per-thread lock counter of sanitizer builds
 * (lock_impl.h). */
#include "lock_impl.h"

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifdef MW_SANITIZED
_Thread_local unsigned long mw__locks_taken;
#endif

/* The common hold (an encode and a write) ends within the spins; a
 * preempted holder gets the core during the yields (each a syscall that
 * returns at once when nothing else is runnable: the budget stays about
 * one sleep and wake's cost); anything longer (a journal's msync, a file's
 * growth, a holder stopped for good) is slept through. */
enum { SPINS = 100, YIELDS = 16 };
#define SLEEP_FIRST_NS 1000000L /* then doubling, up to */
#define SLEEP_MAX_NS 8000000L

static bool try_take(mw__lock_t *l) {
    uint32_t free_ = 0;
    return __atomic_load_n(l, __ATOMIC_RELAXED) == 0 &&
           __atomic_compare_exchange_n(l, &free_, 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

/* Sleeping: say so (2), then sleep while the word still says so, and take
 * the lock with 2 (other waiters may still sleep). The unlock reads the
 * word and then stores 0 without an atomic read-modify-write (lock_impl.h),
 * so a waiter that turns 1 into 2 between that read and that store, and is
 * asleep before the store, is not woken: the store wipes its 2. Hence the
 * timeout, the longer the longer the wait has lasted: a wake lost that way
 * (a window of a few instructions at the end of a hold) costs a bounded
 * delay, while a holder stuck for good costs a few wake-ups a second. A
 * timeout, a signal or a word already changed just goes round. */
void mw__lock_wait(mw__lock_t *l) {
    for (unsigned i = 0; i < SPINS + YIELDS; i++) {
        if (i < SPINS) mw_cpu_relax();
        else sched_yield();
        if (try_take(l)) return;
    }
    long ns = SLEEP_FIRST_NS;
    while (__atomic_exchange_n(l, 2, __ATOMIC_ACQUIRE) != 0) {
        struct timespec t = {0, ns};
        syscall(SYS_futex, l, FUTEX_WAIT_PRIVATE, 2, &t, NULL, 0);
        if (ns < SLEEP_MAX_NS) ns *= 2;
    }
}

/* The holder found 2: free the lock, then wake one sleeper, who takes it
 * with 2 (or finds it taken again and goes back to sleep). */
void mw__lock_wake(mw__lock_t *l) {
    __atomic_store_n(l, 0, __ATOMIC_RELEASE);
    syscall(SYS_futex, l, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}
