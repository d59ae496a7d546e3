/* clt_impl.h - the Clt's private state, shared by clt.c (messaging, the
 * synchronous modes) and clt_ep.c (event-mode lifecycle: resolve, connect,
 * handshake, reconnect, rotation, timeouts). */
#ifndef MW_CLT_IMPL_H
#define MW_CLT_IMPL_H

#include <stdatomic.h>

#include "mw_clt.h"
#include "mw_resolve.h"

struct mw_clt {
    mw_conn_t conn;        /* valid while have_conn */
    bool have_conn;
    mw_clt_opts_t o;
    const mw_protocol_t *proto;
    mw_url_t url;
    mw_transport_t tr;
    bool have_tr;
    bool open;
    bool poll_wait;        /* blocking mode over TLS: nonblocking socket, waits in poll() */
    mw_err_t err;          /* connect / lifecycle errors; I/O errors live in conn */
    mw_idle_t tx_idle;     /* busywait state, one per thread side */
    mw_idle_t rx_idle;
    /* event mode, io thread only */
    mw_clt_state_t state;
    mw_sel_src_t src;
    bool attached, in_cb, close_pending, free_pending, stopped;
    atomic_flag txlock;    /* event mode: tx side vs the io thread's teardown */
    mw_stream_t *pending;  /* connecting / handshaking stream, before the conn */
    mw_resolve_req_t *dns;
    mw_resolve_result_t addrs;
    int next_addr;
    uint32_t failures;     /* consecutive failed attempts (for backoff) */
    uint64_t connects;     /* successful connects so far */
    uint64_t opened_at, last_rx_ns;
    uint64_t rng;          /* jitter */
    unsigned ttl_tries;    /* rotation waiting for queued bytes to drain */
    mw_io_timer_t t_connect, t_backoff, t_ttl, t_idle, t_heartbeat, t_more;
    atomic_int refs;       /* the user's reference + posted callbacks in flight */
    atomic_bool freed;
    atomic_bool arm_posted;
    char rec_name[512];     /* record_path with "%u" filled in for this connection */ /* event mode: a write-arm request is queued for the io */
};

/* clt_ep.c */
int mw__clt_ep_start(mw_clt_t *c);
void mw__clt_ep_stop(mw_clt_t *c);
int mw__clt_post(mw_clt_t *c, void (*fn)(mw_clt_t *c));
void mw__clt_unref(mw_clt_t *c);
int mw__clt_on_ready(mw_sel_src_t *src, int events);
void mw__clt_drop(mw_clt_t *c, int reason);
void mw__clt_arm(mw_clt_t *c);
/* clt.c */
int mw__clt_conn_setup(mw_clt_t *c, mw_stream_t *s, mw_err_t *err);
void mw__clt_record_name(mw_clt_t *c);
void mw__clt_conn_teardown(mw_clt_t *c);
/* Readiness the tx side needs, under the tx lock: MW_WANT_WRITE while bytes
 * are queued, plus what the stream asks for (TLS may need writability). */
int mw__clt_tx_want(mw_clt_t *c);

#endif
