/* mw_mode.h - the run modes: how whoever drives an io waits.
 *
 *   MW_MODE_SPIN      poll the io with a zero timeout, an idle strategy in between
 *   MW_MODE_BLOCKING  poll the io with a timeout (a single connection may be
 *                     read with one blocking read: a wait strategy of the io's
 *                     owner, not a different code path for messages)
 *   MW_MODE_EVENT     the caller's io, libevent loop, a poll thread, or the
 *                     Svc's worker threads run the io; callbacks deliver
 *
 * Clt and Svc take a mode in their options; their connections never see it
 * (one driver, serdes/driver.c, under every mode).
 *
 * Their options (mw_clt_opts_t, mw_svc_opts_t) have one shape: fields that
 * act in every mode at the top level, then `.sync` (mw_sync_opts_t below:
 * read only in spin and blocking modes, ignored in event mode) and `.event`
 * (read only in event mode; set in another mode it is refused with
 * MW_EINVAL, so a callback that could never run is caught at once; the
 * Svc's event.workers, 1 by default, is the one exception: ignored). A Clt
 * also has `.retry` (mw_retry_opts_t below). mw_clt_opts_init /
 * mw_svc_opts_init set every default named here.
 */
#ifndef MW_MODE_H
#define MW_MODE_H

#include <stdint.h>

#include "mw_api.h"
#include "mw_idle.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mw_mode { MW_MODE_SPIN = 0, MW_MODE_BLOCKING, MW_MODE_EVENT } mw_mode_t;

/* Options of the spin and blocking modes (opts.sync of a Clt and a Svc). */
typedef struct mw_sync_opts {
    /* Blocking mode: how long one send, recv or flush may wait before it
     * returns MW_ETIMEDOUT; < 0: no limit (default -1). Spin mode ignores
     * it (the *_busywait_timeout variants take their own limit). */
    int64_t timeout_ns;
    /* What the *_busywait_timeout variants do between two tries (see
     * mw_idle.h); default busy spin. */
    mw_idle_t idle;
} mw_sync_opts_t;

/* The one retry policy of a Clt (opts.retry), for its first connect in
 * every mode and, in event mode with opts.event.reconnect, for its
 * reconnects. The k-th failure in a row (k = 1, 2, ...) waits
 * min_delay_ns * 2^(k-1), capped at max_delay_ns, scaled by a random factor
 * drawn from [1 - jitter, 1] (jitter only shortens a delay), before the next
 * attempt. A failure is an attempt that did not connect (resolve, connect,
 * TLS or WebSocket handshake, connect_timeout_ns), or the drop of a
 * connection that was open; a connection that opens starts the count again.
 * A connect that returns its result does not retry a certificate that
 * fails verification (it would fail the same way every time). */
typedef struct mw_retry_opts {
    /* Failures in a row that end the retries. 0 (default) means: 1 (a single
     * attempt, no retry) for a connect that returns its result (spin,
     * blocking, event without event.reconnect), no limit with
     * event.reconnect. N > 0: a first connect makes at most N attempts; with
     * event.reconnect, the drop of an open connection counts as the first of
     * N failures (so N - 1 reconnect attempts follow it). */
    uint32_t max_attempts;
    int64_t min_delay_ns; /* the first delay; default 100 ms; < 0: MW_EINVAL */
    int64_t max_delay_ns; /* cap of the doubling; default 10 s; below min_delay_ns: min_delay_ns;
                             < 0: MW_EINVAL */
    double jitter;        /* 0..1 (else MW_EINVAL); default 0.2; 0: exact delays */
} mw_retry_opts_t;

/* "spin", "blocking", "event" -> mode, or MW_EINVAL. */
MW_API int mw_mode_parse(const char *name);
/* The mode's name, "?" for a value that is not a mode. Static. */
MW_API const char *mw_mode_name(mw_mode_t m);

#ifdef __cplusplus
}
#endif

#endif
