/* clock.c - monotonic, wall and fake clocks. */
#include "mw_clock.h"
#include "clock_impl.h"

#include <time.h>

static uint64_t ts_ns(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * (uint64_t)MW_NS_PER_S + (uint64_t)ts.tv_nsec;
}

uint64_t mw_now_ns(void) { return ts_ns(CLOCK_MONOTONIC); }
uint64_t mw_wall_ns(void) { return ts_ns(CLOCK_REALTIME); }

static uint64_t mono_now(const mw_clock_t *c) {
    (void)c;
    return mw_now_ns();
}

const mw_clock_t mw__clock_mono = {mono_now, 0};

static uint64_t fake_now(const mw_clock_t *c) {
    return __atomic_load_n(&c->fake_ns, __ATOMIC_ACQUIRE);
}

void mw__clock_fake_init(mw_clock_t *c, uint64_t start_ns) {
    c->now_ns = fake_now;
    __atomic_store_n(&c->fake_ns, start_ns, __ATOMIC_RELEASE);
}

void mw__clock_fake_advance(mw_clock_t *c, uint64_t delta_ns) {
    __atomic_fetch_add(&c->fake_ns, delta_ns, __ATOMIC_ACQ_REL);
}

void mw__clock_fake_set(mw_clock_t *c, uint64_t now_ns) {
    __atomic_store_n(&c->fake_ns, now_ns, __ATOMIC_RELEASE);
}
