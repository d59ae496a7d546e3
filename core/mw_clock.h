/* mw_clock.h - monotonic time in nanoseconds.
 *
 * An io may run on a clock of the caller's (mw_io_opts.clock: now_ns is
 * called with the clock itself); NULL means the real monotonic clock.
 * msgwire's tests pass a fake clock and move it by hand (clock_impl.h).
 *
 * Timeouts are int64_t nanoseconds; a negative timeout means "no limit".
 * Deadlines are absolute uint64_t nanoseconds on the same clock; MW_FOREVER
 * never passes.
 */
#ifndef MW_CLOCK_H
#define MW_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "mw_api.h"

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
MW_API uint64_t mw_now_ns(void);
/* CLOCK_REALTIME in ns since the epoch, for timestamps shown to people. */
MW_API uint64_t mw_wall_ns(void);

#ifdef __cplusplus
}
#endif

#endif
