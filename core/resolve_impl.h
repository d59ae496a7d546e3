/* resolve_impl.h - the resolver's back end (internal to core): libevent's
 * evdns behind a few calls, in resolve_evdns.c, so that resolve.c (the API,
 * the requests and their lifetime) includes no libevent header.
 *
 * The back end runs evdns on the io's event_base when the io's selector is
 * the libevent backend (mw__selector_event_base), else on a private base it
 * pumps from an io timer every MW_RESOLVE_PUMP_NS while answers are owed.
 *
 * Every query started gets exactly one answer callback, also after a cancel
 * (the owner knows it cancelled), from inside the base's loop or from inside
 * mw__dns_query itself (hosts file, immediate errors). The callback may free
 * the struct embedding the query.
 */
#ifndef MW_RESOLVE_IMPL_H
#define MW_RESOLVE_IMPL_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "mw_io.h"

/* ---- the requests (resolve.c) ----------------------------------------------
 * Asynchronous name resolution on an mw_io, with libevent's
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
#define MW_RESOLVE_PUMP_NS (1000000LL) /* 1 ms */
#define MW_RESOLVE_MAX_ADDRS 8

typedef struct mw__resolve_req mw__resolve_req_t;

typedef struct mw__resolve_result {
    int code;               /* 0, MW_ERESOLVE, MW_ETIMEDOUT */
    int naddrs;             /* 0 .. MW_RESOLVE_MAX_ADDRS, in resolver order */
    struct sockaddr_storage addrs[MW_RESOLVE_MAX_ADDRS];
    socklen_t lens[MW_RESOLVE_MAX_ADDRS];
    char text[160];         /* "resolve nosuch.invalid: name does not exist" */
} mw__resolve_result_t;

typedef void (*mw__resolve_fn)(const mw__resolve_result_t *res, void *ud);

/* Starts resolving host:port (TCP). *req identifies it for cancel; it is
 * freed by the library when the callback has run. The result is borrowed for
 * the duration of the callback. Returns 0 or MW_ENOMEM / MW_ESYS (text in
 * err); a numeric host may complete before this returns (callback posted to
 * the next poll, never called from inside mw__resolve_start). */
int mw__resolve_start(mw_io_t *io, const char *host, const char *port, mw__resolve_fn fn, void *ud,
                     mw__resolve_req_t **req, mw_err_t *err);
/* Cancels a pending request: its callback will not run. Safe with NULL. */
void mw__resolve_cancel(mw__resolve_req_t *req);

/* ---- the back end (resolve_evdns.c) ------------------------------------------ */

typedef struct mw__dns mw__dns_t;

/* One query, embedded in its owner's request. Zero it before use. */
typedef struct mw__dns_query {
    mw__dns_t *dns;
    void *handle;            /* evdns's request while the answer is owed */
    mw__resolve_result_t *res;
    uint64_t t0;             /* when it was started (timeouts are told apart by it) */
    bool owed;               /* the answer callback is still to come */
    bool no_ns;              /* cancelled by us: no name server configured */
} mw__dns_query_t;

/* code: 0 (res->addrs, lens, naddrs filled), or MW_ERESOLVE / MW_ETIMEDOUT
 * with `what` a short sentence ("name does not exist"; "cancelled" after
 * mw__dns_cancel). */
typedef void (*mw__dns_answer_fn)(mw__dns_query_t *q, int code, const char *what);

/* Creates the back end for io (evdns base, name servers from resolv.conf,
 * hosts file). Returns 0, or MW_ESYS (text in err). Allocates. */
int mw__dns_open(mw__dns_t **out, mw_io_t *io, mw__dns_answer_fn fn, mw_err_t *err);

/* Starts resolving host:port (TCP) into *res. Returns 0 (the answer may
 * already have come, from inside this call), or MW_ENOMEM (nothing started,
 * no answer will come). */
int mw__dns_query(mw__dns_t *d, mw__dns_query_t *q, const char *host, const char *port,
                  mw__resolve_result_t *res);

/* Asks for q's answer to come at once, as "cancelled" (maybe from inside
 * this call: do not touch q's owner after it). A no-op when no answer is
 * owed, or when it is already on its way. */
void mw__dns_cancel(mw__dns_query_t *q);

/* Releases the back end: runs the base's loop (a few passes, where it is not
 * running already) so that cancelled queries get their answers, then frees
 * it, or, while answers are still owed, lets the last one free it. Answers
 * still call fn. */
void mw__dns_close(mw__dns_t *d);

#endif
