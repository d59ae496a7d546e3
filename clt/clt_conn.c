/* clt_conn.c - the Clt's connection, below its modes: set up and torn down
 * under the tx lock, flushed, waited on (blocking over TLS), asked what its
 * tx side needs, read past a partial message, and on_closed once it ended.
 * clt.c (the API), clt_ep.c (event mode) and clt_sess.c (sessions) share
 * these; nothing here calls back up into them (clt_impl.h). */
#include "clt_impl.h"
#include "clock_impl.h"
#include "conn_impl.h"
#include "err_impl.h"
#include "stream_impl.h"

#include <stdio.h>
#include <string.h>

/* The one retry policy as the endpoint's backoff takes it: max_attempts 0
 * means one attempt for a connect that returns its result, and no limit
 * for an endpoint that reconnects. */
void mw__clt_backoff_opts(const mw_clt_opts_t *o, mw__backoff_opts_t *bo) {
    uint32_t n = o->retry.max_attempts;
    if (n == 0) n = o->mode == MW_MODE_EVENT && o->event.reconnect ? 0 : 1;
    *bo = (mw__backoff_opts_t){.min_delay_ns = o->retry.min_delay_ns,
                               .max_delay_ns = o->retry.max_delay_ns,
                               .jitter = o->retry.jitter,
                               .max_attempts = n};
}

/* The recording file for the next connection: a "%u" in opts.tr.record_path
 * becomes the connect number, so every session gets a file of its own. */
void mw__clt_record_name(mw_clt_t *c) {
    const char *pat = c->o.tr.record_path;
    const char *u = pat ? strstr(pat, "%u") : NULL;
    if (!u) return;
    snprintf(c->rec_name, sizeof c->rec_name, "%.*s%llu%s", (int)(u - pat), pat,
             (unsigned long long)(c->connects + 1), u + 2);
    c->tr.o.record_path = c->rec_name;
}

/* ---- conn set-up / teardown ------------------------------------------------ */

int mw__clt_conn_setup(mw_clt_t *c, mw_stream_t *s, mw_err_t *err) {
    mw_conn_opts_t co = c->o.conn;
    if (c->o.rx_timestamps) co.flags |= MW_CONN_RX_TIMESTAMPS;
    co.flags &= ~(unsigned)MW_CONN_TX_LOCK; /* event mode: txlk, below */
    txl(c);
    int r = mw__conn_init(&c->conn, s, c->proto, &co, err);
    if (r == 0) {
        /* event mode: the io thread flushes too; txlk is the one lock of the conn and its streams */
        if (c->o.mode == MW_MODE_EVENT) mw__conn_share_lock(&c->conn, &c->txlk);
        c->conn.tx.hook = c->o.on_sent;
        c->conn.rx.hook = c->o.on_recvd;
        c->conn.tx.hook_ud = c->conn.rx.hook_ud = c->o.hook_ud;
        /* Spin and blocking: no io sweeps this conn (io_impl.h), and one
         * connection keeps its buffers while open rather than take and give
         * back its tx buffer at every send. */
        if (c->o.mode != MW_MODE_EVENT) c->conn.hold = true;
        c->have_conn = true;
        c->open = true;
    }
    txu(c);
    return r;
}

/* Senders check have_conn under txl, so the conn is finished after it,
 * without the lock (its streams' close takes it: mw__stream_share_lock). */
void mw__clt_conn_teardown(mw_clt_t *c) {
    txl(c);
    bool had = c->have_conn;
    c->have_conn = false;
    c->open = false;
    txu(c);
    if (had) mw__conn_fini(&c->conn);
}

mw__conn_t *mw__clt_conn(mw_clt_t *c) { return c->have_conn ? &c->conn : NULL; }

/* ---- the tx side ------------------------------------------------------------- */

/* Blocking mode over a nonblocking socket (TLS): waits for what the stream
 * needs, up to the deadline. MW_ETIMEDOUT when it passed. */
int mw__clt_wait_stream(mw_clt_t *c, int events, uint64_t dl) {
    int64_t left = mw__deadline_left(NULL, dl);
    if (left == 0) return MW_ETIMEDOUT;
    int want = mw__stream_want(c->conn.stream);
    int r = mw__stream_wait(c->conn.stream, want ? want : events, left);
    return r == MW_ETIMEDOUT ? r : 0;
}

/* Event mode: bytes left behind a full socket need write readiness, which
 * the driver asks the io for (from any thread). */
static void after_send(mw_clt_t *c) {
    if (c->o.mode == MW_MODE_EVENT && c->have_conn && mw__drv_attached(&c->drv)) mw__drv_kick(&c->drv);
}

/* The io thread's view of the tx side, under the tx lock (a sender thread
 * may be writing the buffer). Not with the lock held. */
int mw__clt_tx_want(mw_clt_t *c) {
    txl(c);
    int want = 0;
    if (c->have_conn) {
        if (mw__conn_tx_pending_nl(&c->conn)) want |= MW_WANT_WRITE;
        want |= mw__stream_want(c->conn.stream);
    }
    txu(c);
    return want;
}

/* Writes what is queued. Under txl. */
int mw__clt_tx_flush(mw_clt_t *c) {
    if (!c->have_conn) return MW_ECLOSED;
    if (c->sess && c->o.mode != MW_MODE_EVENT) return mw__sess_flush(c->sess); /* heartbeats write too */
    if (c->o.mode == MW_MODE_EVENT && mw__drv_attached(&c->drv)) return mw__drv_flush_l(&c->drv);
    return mw__conn_flush_nl(&c->conn); /* (event mode: txl is its lock; else it has none) */
}

int mw_clt_flush(mw_clt_t *c) {
    txl(c);
    int r = mw__clt_tx_flush(c);
    if (r == MW_EAGAIN && c->poll_wait) {
        /* blocking over TLS: wait for the socket, as a blocking write would */
        uint64_t dl = mw__deadline_in(NULL, c->o.sync.timeout_ns);
        while (r == MW_EAGAIN && mw__clt_wait_stream(c, MW_WANT_WRITE, dl) == 0) r = mw__clt_tx_flush(c);
    }
    if (r < 0 && r != MW_EAGAIN && c->have_conn && c->conn.tx.failed) c->open = false;
    txu(c);
    if (r == MW_EAGAIN) after_send(c);
    return blocking_result(c, r);
}

/* ---- the rx side and the end ------------------------------------------------- */

/* Nothing whole came: closed, or a blocking read that brought part of a
 * message (read on until it is whole: the socket's own timeout bounds each
 * read, the deadline all). */
int mw__clt_read_more(mw_clt_t *c, const mw_schema_t **s, void *msg, size_t cap) {
    if (!c->open && !mw__drv_up(&c->drv)) return MW_ECLOSED; /* closed */
    if (!c->blocking_sock || !mw__conn_rx_buffered(&c->conn)) return MW_EAGAIN;
    uint64_t dl = mw__deadline_in(NULL, c->o.sync.timeout_ns);
    int r;
    do r = mw__drv_recv(&c->drv, s, msg, cap);
    while (r == MW_EAGAIN && mw__conn_rx_buffered(&c->conn) && !mw__deadline_passed(NULL, dl));
    return r;
}

bool mw__clt_closed(mw_clt_t *c, int result) {
    if (!c->o.on_closed || c->freeing) return false;
    bool was_in = c->in_cb;
    c->in_cb = true;
    c->o.on_closed(c, result, c->o.ud);
    c->in_cb = was_in;
    if (was_in || !c->free_pending) return false;
    c->free_pending = false; /* freed inside on_closed */
    c->freeing = true;
    return true;
}
