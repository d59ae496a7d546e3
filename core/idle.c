/* idle.c - the idle strategies declared in mw_idle.h. */
#include "mw_idle.h"
#include "mw_err.h"

#include <sched.h>
#include <string.h>
#include <time.h>

#define DEF_SPINS 100u
#define DEF_YIELDS 10u
#define DEF_MIN_PARK_NS 1000u
#define DEF_MAX_PARK_NS 1000000u
#define NS_PER_US 1000u

static void init_kind(mw_idle_t *i, mw_idle_kind_t kind) {
    memset(i, 0, sizeof *i);
    i->kind = kind;
}

void mw_idle_init_busy(mw_idle_t *i) { init_kind(i, MW_IDLE_BUSY); }

void mw_idle_init_yield(mw_idle_t *i) { init_kind(i, MW_IDLE_YIELD); }

void mw_idle_init_sleep(mw_idle_t *i, uint64_t sleep_ns) {
    init_kind(i, MW_IDLE_SLEEP);
    i->sleep_ns = sleep_ns;
}

/* A zero minimum would never double, and a maximum below the minimum would
 * make the cap shrink the park; both are normalised rather than rejected
 * because the function cannot report an error. */
void mw_idle_init_backoff(mw_idle_t *i, uint32_t max_spins, uint32_t max_yields,
                          uint64_t min_park_ns, uint64_t max_park_ns) {
    init_kind(i, MW_IDLE_BACKOFF);
    if (min_park_ns == 0) min_park_ns = 1;
    if (max_park_ns < min_park_ns) max_park_ns = min_park_ns;
    i->max_spins = max_spins;
    i->max_yields = max_yields;
    i->min_park_ns = min_park_ns;
    i->max_park_ns = max_park_ns;
    i->park_ns = min_park_ns;
}

/* Strict decimal: digits only (no sign, no spaces), no overflow. */
static int parse_u64(const char *s, uint64_t *out) {
    uint64_t v = 0;
    if (!*s) return MW_EINVAL;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return MW_EINVAL;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return MW_EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int mw_idle_parse(mw_idle_t *i, const char *spec) {
    mw_idle_t t;
    uint64_t us;
    if (!i || !spec) return MW_EINVAL;
    if (strcmp(spec, "busy") == 0) {
        mw_idle_init_busy(&t);
    } else if (strcmp(spec, "yield") == 0) {
        mw_idle_init_yield(&t);
    } else if (strcmp(spec, "backoff") == 0) {
        mw_idle_init_backoff(&t, DEF_SPINS, DEF_YIELDS, DEF_MIN_PARK_NS, DEF_MAX_PARK_NS);
    } else if (strncmp(spec, "sleep:", 6) == 0 && parse_u64(spec + 6, &us) == 0 &&
               us <= UINT64_MAX / NS_PER_US) {
        mw_idle_init_sleep(&t, us * NS_PER_US);
    } else {
        return MW_EINVAL;
    }
    *i = t;
    return 0;
}

static void sleep_ns(uint64_t ns) {
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    /* An interrupted sleep just ends the idle step early. */
    nanosleep(&ts, NULL);
}

static void backoff(mw_idle_t *i) {
    if (i->spins < i->max_spins) {
        i->spins++;
        mw_cpu_relax();
        return;
    }
    if (i->yields < i->max_yields) {
        i->yields++;
        sched_yield();
        return;
    }
    uint64_t ns = i->park_ns < i->min_park_ns ? i->min_park_ns : i->park_ns;
    i->parks++;
    sleep_ns(ns);
    i->park_ns = ns > i->max_park_ns / 2 ? i->max_park_ns : ns * 2;
}

void mw__idle_slow(mw_idle_t *i) {
    switch (i->kind) {
    case MW_IDLE_BUSY: mw_cpu_relax(); break;
    case MW_IDLE_YIELD: sched_yield(); break;
    case MW_IDLE_SLEEP:
        i->parks++;
        sleep_ns(i->sleep_ns);
        break;
    case MW_IDLE_BACKOFF: backoff(i); break;
    }
}
