/* mw_clock.h - monotonic time in nanoseconds, a fake clock for tests, and
 * deadlines.
 *
 * Code that needs "now" takes a `const mw_clock_t *`; NULL means the real
 * monotonic clock. Tests pass a fake clock and move it by hand, so timer,
 * backoff and timeout logic is tested without sleeping.
 *
 * Timeouts are int64_t nanoseconds; a negative timeout means "no limit".
 * Deadlines are absolute uint64_t nanoseconds on the same clock; MW_FOREVER
 * never passes.
 */
#ifndef MW_CLOCK_H
#define MW_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MW_FOREVER UINT64_MAX
#define MW_NS_PER_US 1000LL
#define MW_NS_PER_MS 1000000LL
#define MW_NS_PER_S 1000000000LL

typedef struct mw_clock mw_clock_t;
struct mw_clock {
    uint64_t (*now_ns)(const mw_clock_t *c);
    uint64_t fake_ns; /* used by the fake clock only; access through the API */
};

/* CLOCK_MONOTONIC in ns. Any thread, never fails, no allocation. */
uint64_t mw_now_ns(void);
/* CLOCK_REALTIME in ns since the epoch, for timestamps shown to people. */
uint64_t mw_wall_ns(void);

/* The real monotonic clock as an object, for APIs that store a clock. */
extern const mw_clock_t mw_clock_mono;

/* Fake clock: starts at start_ns and moves only by mw_clock_fake_advance or
 * mw_clock_fake_set. Reads and writes are atomic, so a test thread may move it
 * while another reads it. */
void mw_clock_fake_init(mw_clock_t *c, uint64_t start_ns);
void mw_clock_fake_advance(mw_clock_t *c, uint64_t delta_ns);
void mw_clock_fake_set(mw_clock_t *c, uint64_t now_ns);

static inline uint64_t mw_clock_now(const mw_clock_t *c) {
    return c ? c->now_ns(c) : mw_now_ns();
}

/* Deadline timeout_ns from now (MW_FOREVER when timeout_ns < 0). */
static inline uint64_t mw_deadline_in(const mw_clock_t *c, int64_t timeout_ns) {
    if (timeout_ns < 0) return MW_FOREVER;
    uint64_t now = mw_clock_now(c);
    uint64_t d = now + (uint64_t)timeout_ns;
    return d < now ? MW_FOREVER : d;
}

static inline bool mw_deadline_passed(const mw_clock_t *c, uint64_t deadline) {
    return deadline != MW_FOREVER && mw_clock_now(c) >= deadline;
}

/* Nanoseconds left until deadline: 0 if passed, -1 for MW_FOREVER. */
static inline int64_t mw_deadline_left(const mw_clock_t *c, uint64_t deadline) {
    if (deadline == MW_FOREVER) return -1;
    uint64_t now = mw_clock_now(c);
    return now >= deadline ? 0 : (int64_t)(deadline - now);
}

#ifdef __cplusplus
}
#endif

#endif
