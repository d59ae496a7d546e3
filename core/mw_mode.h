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
 */
#ifndef MW_MODE_H
#define MW_MODE_H

#include "mw_api.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mw_mode { MW_MODE_SPIN = 0, MW_MODE_BLOCKING, MW_MODE_EVENT } mw_mode_t;

/* "spin", "blocking", "event" -> mode, or MW_EINVAL. */
MW_API int mw_mode_parse(const char *name);
/* The mode's name, "?" for a value that is not a mode. Static. */
MW_API const char *mw_mode_name(mw_mode_t m);

#ifdef __cplusplus
}
#endif

#endif
