/* backoff_impl.h - the retry backoff, a pure state machine (internal).
 *
 * One policy for every retry in msgwire: the first connect's retries and the
 * reconnects of an endpoint. It never reads a clock and never sleeps: each
 * failure returns the delay to wait before the next attempt, and the caller
 * arms a timer (or, for a synchronous connect, waits on its own io) until
 * now + delay on whatever clock it uses. Given the same options and seed it
 * returns the same delays, so tests need neither time nor luck.
 *
 * Delays: failure k (1, 2, ...) waits min_delay_ns * 2^(k-1), capped at
 * max_delay_ns, then scaled by a factor drawn uniformly from [1 - jitter, 1]
 * (so jitter only ever shortens a delay, and the cap holds). With
 * max_attempts > 0, failure number max_attempts returns -1: give up.
 *
 * Not thread-safe: one owner (an endpoint, a connect call) per state.
 * Allocates nothing.
 */
#ifndef MW_BACKOFF_IMPL_H
#define MW_BACKOFF_IMPL_H

#include <stdint.h>

typedef struct mw__backoff_opts {
    int64_t min_delay_ns;  /* delay after the first failure; < 0 counts as 0 */
    int64_t max_delay_ns;  /* cap of the doubling; below min_delay_ns counts as min_delay_ns */
    double jitter;         /* 0..1 (clamped; NaN counts as 0) */
    uint32_t max_attempts; /* failures that end the retries; 0: no limit */
} mw__backoff_opts_t;

typedef struct mw__backoff {
    mw__backoff_opts_t o; /* normalised copy */
    uint32_t failures;    /* consecutive failures since init or reset */
    uint64_t rng;         /* xorshift64 state, never 0 */
} mw__backoff_t;

/* Copies and normalises *o (see the fields) and seeds the jitter's generator
 * (any seed, 0 included; the same seed gives the same delays). */
void mw__backoff_init(mw__backoff_t *b, const mw__backoff_opts_t *o, uint64_t seed);

/* Records one failure. Returns the delay in ns before the next attempt
 * (>= 0), or -1 when this failure reaches max_attempts (no more attempts;
 * further calls keep returning -1 until reset). */
int64_t mw__backoff_fail(mw__backoff_t *b);

/* An attempt succeeded: the next failure starts again at min_delay_ns. The
 * generator is not reseeded. */
void mw__backoff_reset(mw__backoff_t *b);

/* Consecutive failures recorded since init or the last reset. */
static inline uint32_t mw__backoff_failures(const mw__backoff_t *b) { return b->failures; }

#endif
