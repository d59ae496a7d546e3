/* bench_lock.c - the send-path lock's costs (core/lock_impl.h) against the
 * two designs it was chosen over.
 *
 *   futex  mw__lock / mw__unlock: CAS to take, a load and a store to let
 *          go (a futex wake when a waiter said it sleeps); waiters spin,
 *          yield 16 times, then sleep on the futex (with a timeout).
 *   rmw    Drepper's futex mutex as written: the same, but an atomic
 *          decrement to let go, and no timeout.
 *   yield  the lock before it: a byte, test-and-set to take, a plain store
 *          to let go, waiters spin 100 times, then sched_yield without end.
 *   sleep  the byte and the plain store, waiters spin, yield 16 times, then
 *          sleep in nanosleeps of 20 us doubling to 1 ms.
 *
 * For each: an uncontended lock + unlock (ns, the best of 7 runs: the cost
 * on every send); one waiter behind holds of 5 ms and 200 ms (its CPU time
 * and how long after the release it had the lock); two threads taking turns
 * at holds of 400 us spent blocked (an msync of a journal in fsync mode
 * ALWAYS), 5 us of work between: holds per second and each thread's CPU.
 * Usage: bench_lock [N]   (lock + unlock pairs per run, default 50000000) */
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "lock_impl.h"

static uint64_t ns_of(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static __attribute__((noinline)) void yield_wait(bool *l) {
    for (unsigned i = 0; __atomic_test_and_set(l, __ATOMIC_ACQUIRE); i++) {
        if (i < 100) mw_cpu_relax();
        else sched_yield();
    }
}

static __attribute__((noinline)) void sleep_wait(bool *l) {
    long ns = 20000;
    for (unsigned i = 0; __atomic_load_n(l, __ATOMIC_RELAXED) || __atomic_test_and_set(l, __ATOMIC_ACQUIRE); i++) {
        if (i < 100) mw_cpu_relax();
        else if (i < 116) sched_yield();
        else {
            struct timespec t = {0, ns};
            nanosleep(&t, NULL);
            if (ns < 1000000) ns *= 2;
        }
    }
}

static __attribute__((noinline)) void rmw_wait(mw__lock_t *l) {
    for (unsigned i = 0; i < 116; i++) {
        uint32_t free_ = 0;
        if (i < 100) mw_cpu_relax();
        else sched_yield();
        if (__atomic_load_n(l, __ATOMIC_RELAXED) == 0 &&
            __atomic_compare_exchange_n(l, &free_, 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            return;
    }
    while (__atomic_exchange_n(l, 2, __ATOMIC_ACQUIRE) != 0) syscall(SYS_futex, l, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
}
static __attribute__((noinline)) void rmw_wake(mw__lock_t *l) {
    __atomic_store_n(l, 0, __ATOMIC_RELEASE);
    syscall(SYS_futex, l, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

enum { FUTEX, RMW, YIELD, SLEEP, NKINDS };
static const char *const kind_name[NKINDS] = {"futex", "rmw", "yield", "sleep"};
static mw__lock_t word;
static bool byte;

static inline void lock(int k) {
    uint32_t free_ = 0;
    if (k == FUTEX) mw__lock(&word);
    else if (k == RMW) {
        if (__builtin_expect(!__atomic_compare_exchange_n(&word, &free_, 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED), 0))
            rmw_wait(&word);
    } else if (__builtin_expect(__atomic_test_and_set(&byte, __ATOMIC_ACQUIRE), 0))
        k == YIELD ? yield_wait(&byte) : sleep_wait(&byte);
}
static inline void unlock(int k) {
    if (k == FUTEX) mw__unlock(&word);
    else if (k == RMW) {
        if (__builtin_expect(__atomic_sub_fetch(&word, 1, __ATOMIC_RELEASE) != 0, 0)) rmw_wake(&word);
    } else __atomic_clear(&byte, __ATOMIC_RELEASE);
}

static volatile uint64_t sink;

static __attribute__((noinline)) double pair_ns(int k, long n) {
    uint64_t t0 = ns_of(CLOCK_MONOTONIC);
    for (long i = 0; i < n; i++) {
        lock(k);
        sink++;
        unlock(k);
    }
    return (double)(ns_of(CLOCK_MONOTONIC) - t0) / (double)n;
}

static void block_for(uint64_t ns) {
    struct timespec t = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (nanosleep(&t, &t) != 0) {
    }
}

typedef struct waiter {
    int k;
    atomic_bool waiting;
    uint64_t got_at, cpu_ns;
} waiter_t;

static void *wait_main(void *arg) {
    waiter_t *w = arg;
    uint64_t c0 = ns_of(CLOCK_THREAD_CPUTIME_ID);
    atomic_store(&w->waiting, true);
    lock(w->k);
    w->got_at = ns_of(CLOCK_MONOTONIC);
    w->cpu_ns = ns_of(CLOCK_THREAD_CPUTIME_ID) - c0;
    unlock(w->k);
    return NULL;
}

static void behind_a_hold(int k, uint64_t hold_ns) {
    waiter_t w = {.k = k};
    pthread_t th;
    lock(k);
    if (pthread_create(&th, NULL, wait_main, &w) != 0) abort();
    while (!atomic_load(&w.waiting)) sched_yield();
    block_for(hold_ns);
    uint64_t released = ns_of(CLOCK_MONOTONIC);
    unlock(k);
    pthread_join(th, NULL);
    printf("  %-6s behind a %3.0f ms hold: waiter CPU %7.2f ms, lock %7.1f us after the release\n", kind_name[k],
           hold_ns / 1e6, w.cpu_ns / 1e6, (w.got_at - released) / 1e3);
}

typedef struct turn {
    int k;
    atomic_bool *stop;
    atomic_long *holds;
    uint64_t cpu_ns;
} turn_t;

static void *turn_main(void *arg) {
    turn_t *t = arg;
    uint64_t c0 = ns_of(CLOCK_THREAD_CPUTIME_ID);
    while (!atomic_load(t->stop)) {
        lock(t->k);
        block_for(400000);
        unlock(t->k);
        atomic_fetch_add(t->holds, 1);
        for (uint64_t s = ns_of(CLOCK_MONOTONIC); ns_of(CLOCK_MONOTONIC) - s < 5000;) mw_cpu_relax();
    }
    t->cpu_ns = ns_of(CLOCK_THREAD_CPUTIME_ID) - c0;
    return NULL;
}

static void taking_turns(int k) {
    atomic_bool stop = false;
    atomic_long holds = 0;
    turn_t t[2] = {{k, &stop, &holds, 0}, {k, &stop, &holds, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        if (pthread_create(&th[i], NULL, turn_main, &t[i]) != 0) abort();
    block_for(1000000000u);
    atomic_store(&stop, true);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    printf("  %-6s 2 threads, 400 us blocked holds, 1 s: %ld holds, CPU %.1f + %.1f ms\n", kind_name[k],
           atomic_load(&holds), t[0].cpu_ns / 1e6, t[1].cpu_ns / 1e6);
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 50000000;
    if (n <= 0) {
        fprintf(stderr, "usage: bench_lock [N]\n");
        return 2;
    }
    printf("uncontended lock + unlock (best of 7 x %ld)\n", n);
    for (int k = 0; k < NKINDS; k++) {
        double best = 1e9;
        for (int r = 0; r < 7; r++) {
            double x = pair_ns(k, n);
            if (x < best) best = x;
        }
        printf("  %-6s %6.2f ns\n", kind_name[k], best);
    }
    printf("one waiter behind a long hold\n");
    for (int k = 0; k < NKINDS; k++) {
        behind_a_hold(k, 5000000);
        behind_a_hold(k, 200000000);
    }
    printf("taking turns at blocked holds\n");
    for (int k = 0; k < NKINDS; k++) taking_turns(k);
    return 0;
}
