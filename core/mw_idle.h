/* mw_idle.h - idle strategies: what a polling loop does when a poll found no
 * work (after Aeron's IdleStrategy).
 *
 *   MW_IDLE_BUSY     spin with a CPU relax hint (pause); lowest latency, burns a core
 *   MW_IDLE_YIELD    sched_yield()
 *   MW_IDLE_SLEEP    nanosleep(sleep_ns)
 *   MW_IDLE_BACKOFF  spin max_spins times, then yield max_yields times, then
 *                    park with sleeps doubling from min_park_ns to max_park_ns
 *
 * Call mw_idle(i, work) after every poll with the work it did: work > 0
 * resets the backoff, work == 0 idles one step. Not thread-safe: one loop
 * owns one strategy.
 */
#ifndef MW_IDLE_H
#define MW_IDLE_H

#include <stdint.h>

#include "mw_api.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mw_idle_kind { MW_IDLE_BUSY, MW_IDLE_YIELD, MW_IDLE_SLEEP, MW_IDLE_BACKOFF } mw_idle_kind_t;

typedef struct mw_idle {
    mw_idle_kind_t kind;
    uint32_t max_spins, max_yields;
    uint64_t min_park_ns, max_park_ns, sleep_ns;
    /* state */
    uint32_t spins, yields;
    uint64_t park_ns;
    /* statistic: sleeps taken (SLEEP steps and BACKOFF parks) since init;
     * work does not reset it */
    uint64_t parks;
} mw_idle_t;

MW_API void mw_idle_init_busy(mw_idle_t *i);
MW_API void mw_idle_init_yield(mw_idle_t *i);
MW_API void mw_idle_init_sleep(mw_idle_t *i, uint64_t sleep_ns);
MW_API void mw_idle_init_backoff(mw_idle_t *i, uint32_t max_spins, uint32_t max_yields,
                          uint64_t min_park_ns, uint64_t max_park_ns);
/* Parses "busy", "yield", "sleep:<us>", "backoff" (defaults 100 spins,
 * 10 yields, 1 us .. 1 ms). Returns 0 or MW_EINVAL. */
MW_API int mw_idle_parse(mw_idle_t *i, const char *spec);

/* One CPU relax hint (x86 pause, arm yield). */
static inline void mw_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield");
#endif
}

MW_API void mw__idle_slow(mw_idle_t *i);

/* mw_idle: see the top of this file. The busy case stays inline. */
static inline void mw_idle(mw_idle_t *i, int work) {
    if (work > 0) {
        i->spins = i->yields = 0;
        i->park_ns = i->min_park_ns;
        return;
    }
    if (i->kind == MW_IDLE_BUSY) {
        mw_cpu_relax();
        return;
    }
    mw__idle_slow(i);
}

static inline void mw_idle_reset(mw_idle_t *i) { mw_idle(i, 1); }

#ifdef __cplusplus
}
#endif

#endif
