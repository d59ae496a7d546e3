/* backoff.c - the retry backoff declared in backoff_impl.h. */
#include "backoff_impl.h"

/* splitmix64: spreads any seed (0 included) over the state, and never
 * returns 0 for the seeds a xorshift64 would be stuck on. */
static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Uniform in [0, 1): jitter needs spread, not secrecy. */
static double rand01(mw__backoff_t *b) {
    b->rng ^= b->rng << 13;
    b->rng ^= b->rng >> 7;
    b->rng ^= b->rng << 17;
    return (double)(b->rng >> 11) / 9007199254740992.0; /* 2^53 */
}

void mw__backoff_init(mw__backoff_t *b, const mw__backoff_opts_t *o, uint64_t seed) {
    b->o = *o;
    if (b->o.min_delay_ns < 0) b->o.min_delay_ns = 0;
    if (b->o.max_delay_ns < b->o.min_delay_ns) b->o.max_delay_ns = b->o.min_delay_ns;
    double j = b->o.jitter;
    b->o.jitter = j > 0 ? (j < 1 ? j : 1) : 0; /* NaN fails both tests: 0 */
    b->failures = 0;
    b->rng = mix(seed);
    if (!b->rng) b->rng = 1;
}

/* min * 2^(k-1) capped at max; at most 63 doublings before the cap. */
static int64_t capped(const mw__backoff_opts_t *o, uint32_t k) {
    int64_t d = o->min_delay_ns;
    for (uint32_t i = 1; i < k && d > 0 && d < o->max_delay_ns; i++)
        d = d > o->max_delay_ns / 2 ? o->max_delay_ns : d * 2;
    return d < o->max_delay_ns ? d : o->max_delay_ns;
}

int64_t mw__backoff_fail(mw__backoff_t *b) {
    if (b->failures < UINT32_MAX) b->failures++;
    if (b->o.max_attempts && b->failures >= b->o.max_attempts) return -1;
    int64_t d = capped(&b->o, b->failures);
    if (b->o.jitter == 0 || d == 0) return d;
    return (int64_t)((double)d * (1.0 - b->o.jitter * rand01(b)));
}

void mw__backoff_reset(mw__backoff_t *b) { b->failures = 0; }
