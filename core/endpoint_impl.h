/* endpoint_impl.h - the one endpoint (internal): resolve -> connect each
 * address -> wrap the transport -> hand the stream over; a failed attempt ->
 * backoff -> again. One retry policy (backoff_impl.h) for a first connect's
 * retries and for reconnects, whoever drives the io: a synchronous connect
 * is this endpoint on a private io polled until it is done.
 *
 * The endpoint stops at a connected, wrapped stream: the TLS and WebSocket
 * handshakes run in the connection driver that takes it (serdes/driver.c),
 * or in mw__transport_handshake for a synchronous connect. When that
 * connection ends, its owner calls mw__ep_retry to go round again.
 *
 * Everything runs on the io's thread. Allocates (the resolve request, the
 * stream); nothing per message.
 */
#ifndef MW_ENDPOINT_IMPL_H
#define MW_ENDPOINT_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "backoff_impl.h"
#include "mw_io.h"
#include "resolve_impl.h"
#include "mw_transport.h"
#include "tcp_impl.h"
#include "transport_impl.h"

typedef struct mw__ep mw__ep_t;

typedef struct mw__ep_cfg {
    /* An attempt starts (before resolving). May be NULL. */
    void (*on_attempt)(mw__ep_t *e);
    /* A connected, wrapped stream (handshakes not yet done); the owner takes
     * it. Returns 0, or < 0 to count the attempt as failed (text in e->err;
     * the stream is the owner's to free either way). */
    int (*on_stream)(mw__ep_t *e, mw_stream_t *s);
    /* An attempt failed before there was a stream (resolve, connect,
     * timeout); the text is in e->err. mw__ep_retry may be called from here
     * (or later). May be NULL. */
    void (*on_fail)(mw__ep_t *e, int reason);
    /* Asked before a retry is scheduled: false ends the endpoint. May be
     * NULL (always retry). */
    bool (*can_retry)(mw__ep_t *e, int reason, uint32_t failures);
    /* The endpoint gave up (max attempts, can_retry false, or a permanent
     * error): no more callbacks. May be NULL. */
    void (*on_end)(mw__ep_t *e, int reason);
} mw__ep_cfg_t;

enum { MW__EP_IDLE = 0, MW__EP_RESOLVING, MW__EP_CONNECTING, MW__EP_HANDED, MW__EP_BACKOFF, MW__EP_ENDED };

struct mw__ep {
    mw_io_t *io;
    const mw__ep_cfg_t *cfg;
    void *ud;
    const mw__url_t *url;
    mw__transport_t *tr;
    mw_tcp_opts_t tcp;
    int64_t connect_timeout_ns;  /* resolve + TCP connect, per attempt; 0: none */
    mw__backoff_t bo;
    int state;                   /* MW__EP_* */
    mw_sel_src_t src;
    bool attached;
    mw_stream_t *pending;        /* TCP connect in progress */
    mw__resolve_req_t *dns;
    mw__resolve_result_t addrs;
    int next_addr;
    mw_io_timer_t t_connect, t_backoff;
    mw_err_t err;
};

/* Sets e up (no I/O). url, tr and cfg must outlive e. bo: the retry policy
 * (max_attempts 1: no retry). */
void mw__ep_init(mw__ep_t *e, mw_io_t *io, const mw__ep_cfg_t *cfg, void *ud, const mw__url_t *url,
                 mw__transport_t *tr, const mw_tcp_opts_t *tcp, int64_t connect_timeout_ns,
                 const mw__backoff_opts_t *bo, uint64_t seed);
/* Starts an attempt now (resolve first). */
void mw__ep_start(mw__ep_t *e);
/* The attempt (or the connection it gave) failed with reason: counts a
 * failure, asks can_retry, and starts the next attempt after the backoff
 * delay, or ends the endpoint (on_end). delay_override >= 0 replaces the
 * backoff's delay (and does not count as a failure): 0 for a planned
 * rotation. */
void mw__ep_retry(mw__ep_t *e, int reason, int64_t delay_override);
/* The stream handed over became a working connection: the backoff starts
 * afresh. */
void mw__ep_up(mw__ep_t *e);
/* Stops for good: cancels resolve, connect and timers, frees a pending
 * stream. No callbacks after it. Idempotent. */
void mw__ep_stop(mw__ep_t *e);

static inline uint32_t mw__ep_failures(const mw__ep_t *e) { return mw__backoff_failures(&e->bo); }

#endif
