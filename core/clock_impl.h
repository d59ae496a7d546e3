/* clock_impl.h - the fake clock for tests, and deadlines. */
#ifndef MW_CLOCK_IMPL_H
#define MW_CLOCK_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "mw_clock.h"

/* The real monotonic clock as an object, for APIs that store a clock. */
extern const mw_clock_t mw__clock_mono;

/* Fake clock: starts at start_ns and moves only by mw__clock_fake_advance or
 * mw__clock_fake_set. Reads and writes are atomic, so a test thread may move it
 * while another reads it. */
void mw__clock_fake_init(mw_clock_t *c, uint64_t start_ns);
void mw__clock_fake_advance(mw_clock_t *c, uint64_t delta_ns);
void mw__clock_fake_set(mw_clock_t *c, uint64_t now_ns);

static inline uint64_t mw__clock_now(const mw_clock_t *c) {
    return c ? c->now_ns(c) : mw_now_ns();
}

/* Deadline timeout_ns from now (MW_FOREVER when timeout_ns < 0). */
static inline uint64_t mw__deadline_in(const mw_clock_t *c, int64_t timeout_ns) {
    if (timeout_ns < 0) return MW_FOREVER;
    uint64_t now = mw__clock_now(c);
    uint64_t d = now + (uint64_t)timeout_ns;
    return d < now ? MW_FOREVER : d;
}

static inline bool mw__deadline_passed(const mw_clock_t *c, uint64_t deadline) {
    return deadline != MW_FOREVER && mw__clock_now(c) >= deadline;
}

/* Nanoseconds left until deadline: 0 if passed, -1 for MW_FOREVER. */
static inline int64_t mw__deadline_left(const mw_clock_t *c, uint64_t deadline) {
    if (deadline == MW_FOREVER) return -1;
    uint64_t now = mw__clock_now(c);
    return now >= deadline ? 0 : (int64_t)(deadline - now);
}

#endif
