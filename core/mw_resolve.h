/* mw_resolve.h - asynchronous name resolution on an mw_io, with libevent's
 * evdns (never blocks the poll).
 *
 * On an io with the libevent backend the resolver uses the io's event_base;
 * on epoll or direct it keeps a private event_base and pumps it
 * (event_base_loop with EVLOOP_NONBLOCK) from an io timer every
 * MW_RESOLVE_PUMP_NS while a request is pending, so the caller's loop drives
 * it whatever the backend. Numeric addresses ("127.0.0.1", "::1") complete
 * without a query; names come from /etc/hosts first, then the resolv.conf
 * name servers (evdns_base_new with default initialisation).
 *
 * Thread rules: io thread only. The callback runs on the io thread, exactly
 * once per request unless the request was cancelled first.
 */
#ifndef MW_RESOLVE_H
#define MW_RESOLVE_H

#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>

#include "mw_io.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MW_RESOLVE_PUMP_NS (1000000LL) /* 1 ms */
#define MW_RESOLVE_MAX_ADDRS 8

typedef struct mw_resolve_req mw_resolve_req_t;

typedef struct mw_resolve_result {
    int code;               /* 0, MW_ERESOLVE, MW_ETIMEDOUT */
    int naddrs;             /* 0 .. MW_RESOLVE_MAX_ADDRS, in resolver order */
    struct sockaddr_storage addrs[MW_RESOLVE_MAX_ADDRS];
    socklen_t lens[MW_RESOLVE_MAX_ADDRS];
    char text[160];         /* "resolve nosuch.invalid: name does not exist" */
} mw_resolve_result_t;

typedef void (*mw_resolve_fn)(const mw_resolve_result_t *res, void *ud);

/* Starts resolving host:port (TCP). *req identifies it for cancel; it is
 * freed by the library when the callback has run. The result is borrowed for
 * the duration of the callback. Returns 0 or MW_ENOMEM / MW_ESYS (text in
 * err); a numeric host may complete before this returns (callback posted to
 * the next poll, never called from inside mw_resolve_start). */
int mw_resolve_start(mw_io_t *io, const char *host, const char *port, mw_resolve_fn fn, void *ud,
                     mw_resolve_req_t **req, mw_err_t *err);
/* Cancels a pending request: its callback will not run. Safe with NULL. */
void mw_resolve_cancel(mw_resolve_req_t *req);
/* Releases the io's resolver (call before mw_io_free if resolve was used;
 * mw_io_free does not know about it). Pending requests are cancelled. */
void mw_resolve_shutdown(mw_io_t *io);

#ifdef __cplusplus
}
#endif

#endif
