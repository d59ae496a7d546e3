/* clt_impl.h - the Clt's private state, shared by clt.c (the API:
 * messaging, the synchronous modes' connect and close), clt_ep.c (event-mode
 * lifecycle: resolve, connect, handshake, reconnect, rotation, timeouts;
 * references and the free), clt_sess.c (sessions) and clt_conn.c (the
 * connection below them all).
 *
 * Layers: calls between these files go down only (tests/test_surface.c
 * fails on a cycle):
 *   clt.c       -> clt_ep.c, clt_sess.c, clt_conn.c
 *   clt_ep.c    -> clt_sess.c, clt_conn.c
 *   clt_sess.c  -> clt_conn.c
 *   clt_conn.c  -> (nothing in clt/)
 * A free asked for inside a callback is carried out by the file that ran
 * the callback, never by calling mw_clt_free from below: mw__clt_closed
 * returns that it was asked for, clt_ep.c frees an event-mode Clt itself
 * (mw__clt_ep_free), clt.c a spin or blocking one. */
#ifndef MW_CLT_IMPL_H
#define MW_CLT_IMPL_H

#include <stdatomic.h>

#include "mw_clt.h"
#include "resolve_impl.h"
#include "drv_impl.h"
#include "lock_impl.h"
#include "endpoint_impl.h"
#include "session_impl.h"
#include "conn_impl.h"
#include "tcp_impl.h"
#include "transport_impl.h"

struct mw_clt {
    mw__conn_t conn;        /* valid while have_conn */
    bool have_conn;
    mw_clt_opts_t o;
    const mw_protocol_t *proto;
    mw__url_t url;
    mw__transport_t tr;
    bool have_tr;
    atomic_bool open;
    bool poll_wait;        /* blocking mode over TLS: nonblocking socket, waits in poll() */
    atomic_bool split;     /* mw_clt_sender/receiver handed out: recv leaves tx alone */
    mw_err_t err;          /* connect / lifecycle errors; I/O errors live in conn */
    mw_idle_t tx_idle;     /* busywait state, one per thread side */
    mw_idle_t rx_idle;
    /* event mode, io thread only */
    mw_clt_state_t state;
    bool attached, in_cb, close_pending, free_pending, stopped;
    mw__lock_t txlk;       /* event mode: the one lock of the send path (lock_impl.h): tx side vs
                              the io thread's flush and teardown, shared with the conn and its
                              streams (mw__conn_share_lock) */
    uint64_t connects;     /* successful connects so far */
    uint64_t opened_at;
    unsigned ttl_tries;    /* rotation waiting for queued bytes to drain */
    mw__ep_t ep;           /* resolve, connect, retry (event mode) */
    mw_io_timer_t t_ttl, t_heartbeat, t_gone;
    mw__drv_t drv;         /* drives the open connection (every mode: spin and blocking
                              in pull mode on sio) */
    mw_io_t *sio;          /* spin/blocking: the Clt's private io (the close's linger) */
    bool blocking_sock;    /* blocking mode over plain TCP/WS: reads wait in the socket */
    bool freeing;          /* inside mw_clt_free: no on_closed */
    mw__drv_cfg_t drv_cfg;
    void (*drv_fn)(mw__drv_t *d); /* the driver's posted request (write arm) */
    int gone_reason;       /* why the last connection ended, for the reconnect */
    bool rotating;         /* the TTL ended it: reconnect at once */
    bool leak_guard;       /* a free could not be posted (no memory) */
    atomic_int refs;       /* the user's reference + posted callbacks in flight */
    atomic_bool freed;
    char rec_name[512];    /* record_path with "%u" filled in for this connection */
    /* sessions (opts.session.enabled) */
    mw__sess_t *sess;
    mw_protocol_t *sproto; /* the application's protocol + the control messages */
    void *sess_rx;         /* spin/blocking: decode scratch of sproto->max_size */
    uint64_t sess_due;     /* spin/blocking: when the session next needs a pump */
    uint32_t sess_tick;    /* spin: calls since the clock was read */
    mw_io_timer_t t_sess;  /* event mode: the session's pump */
    bool logging_out;      /* mw_clt_logout: stop once the peer answered */
};

/* ---- the tx lock (event mode): the io thread tears the conn down on a drop
 * while application threads may be sending. */
static inline bool locked_mode(const mw_clt_t *c) { return c->o.mode == MW_MODE_EVENT; }

static inline void txl(mw_clt_t *c) {
    if (locked_mode(c)) mw__lock(&c->txlk);
}

static inline void txu(mw_clt_t *c) {
    if (locked_mode(c)) mw__unlock(&c->txlk);
}

/* Blocking mode: "not now" is a timeout. */
static inline int blocking_result(const mw_clt_t *c, int r) {
    return c->o.mode == MW_MODE_BLOCKING && r == MW_EAGAIN ? MW_ETIMEDOUT : r;
}

/* ---- clt.c */
int mw__clt_send_numbered(mw_clt_t *c, const mw_schema_t *s, const void *msg, uint64_t *seq);

/* ---- clt_ep.c */
int mw__clt_ep_start(mw_clt_t *c);
void mw__clt_ep_stop(mw_clt_t *c);
/* mw_clt_free of an event-mode Clt, outside its callbacks. */
void mw__clt_ep_free(mw_clt_t *c);
/* What a Clt holds, given back (every mode, its driver stopped), then the
 * user's reference: the memory goes with the last reference. */
void mw__clt_release(mw_clt_t *c);

/* ---- clt_sess.c: sessions on a Clt */
int mw__clt_sess_open(mw_clt_t *c, mw_err_t *err);
void mw__clt_sess_free(mw_clt_t *c);
int mw__clt_sess_logon_sync(mw_clt_t *c, mw_err_t *err); /* spin/blocking connect */
int mw__clt_sess_send(mw_clt_t *c, const mw_schema_t *s, const void *msg, bool more, uint64_t *seq);
int mw__clt_sess_recv(mw_clt_t *c, const mw_schema_t **s, void *msg, size_t cap);
void mw__clt_sess_pump_due(mw_clt_t *c);
/* event mode, io thread */
void mw__clt_sess_up(mw_clt_t *c);               /* handshakes done: logon */
int mw__clt_sess_msg(mw_clt_t *c, const mw_schema_t *s, const void *msg); /* as mw__sess_rx */
void mw__clt_sess_down(mw_clt_t *c);

/* ---- clt_conn.c */
/* opts.retry as the endpoint's backoff policy (max_attempts 0 resolved). */
void mw__clt_backoff_opts(const mw_clt_opts_t *o, mw__backoff_opts_t *bo);
void mw__clt_record_name(mw_clt_t *c);
int mw__clt_conn_setup(mw_clt_t *c, mw_stream_t *s, mw_err_t *err);
void mw__clt_conn_teardown(mw_clt_t *c);
/* The Clt's connection while it has one, else NULL (tests look inside). */
mw__conn_t *mw__clt_conn(mw_clt_t *c);
/* Blocking over TLS: waits for the stream until dl (0 or MW_ETIMEDOUT). */
int mw__clt_wait_stream(mw_clt_t *c, int events, uint64_t dl);
/* Readiness the tx side needs, under the tx lock: MW_WANT_WRITE while bytes
 * are queued, plus what the stream asks for (TLS may need writability). */
int mw__clt_tx_want(mw_clt_t *c);
int mw__clt_tx_flush(mw_clt_t *c); /* under txl */
int mw__clt_read_more(mw_clt_t *c, const mw_schema_t **s, void *msg, size_t cap);
/* Calls opts.on_closed (once, after mw_clt_close) with result. True when
 * the Clt was freed inside it: the caller frees it now, its mode's way. */
bool mw__clt_closed(mw_clt_t *c, int result);

/* The one read step of spin and blocking Clts (sessions included): the next
 * buffered message, reading once first when none is (the driver's pull
 * entry point). 0, MW_EAGAIN, or how the connection ended. */
static inline int mw__clt_read(mw_clt_t *c, const mw_schema_t **s, void *msg, size_t cap) {
    int r = mw__drv_recv(&c->drv, s, msg, cap);
    /* (a spin poll that found nothing returns here: no call more) */
    return r == MW_EAGAIN && (c->blocking_sock || !c->open) ? mw__clt_read_more(c, s, msg, cap) : r;
}

#endif
