/* lock.c - the wait for a held send-path lock, and the per-thread lock
 * counter of sanitizer builds (lock_impl.h). */
#include "lock_impl.h"

#include <sched.h>

#ifdef MW_SANITIZED
_Thread_local unsigned long mw__locks_taken;
#endif

/* Spins briefly, then yields (the holder may have been preempted). */
void mw__lock_wait(bool *l) {
    for (unsigned i = 0; __atomic_test_and_set(l, __ATOMIC_ACQUIRE); i++) {
        if (i < 100) mw_cpu_relax();
        else sched_yield();
    }
}
