/* clt_ep.c - the event-mode Clt as an endpoint on an io: resolve (async),
 * connect (nonblocking, each address in turn), TLS/WebSocket handshakes, open;
 * on a drop or a failed attempt: on_close, then reconnect with exponential
 * backoff and jitter; TTL rotation, idle timeout and heartbeat timers.
 *
 * Everything here runs on the io thread, but mw__clt_release, where every
 * mode's free ends. A Clt may be freed while callbacks it posted are still
 * queued: posts hold a reference (refs) and do nothing once the Clt is
 * freed; the last reference frees the memory. */
#include "clt_impl.h"
#include "conn_impl.h"
#include "err_impl.h"

#include <stdlib.h>
#include <string.h>

static mw_io_t *io_of(const mw_clt_t *c) { return c->o.event.io; }

/* ---- references and posts --------------------------------------------------- */

typedef struct post { mw_clt_t *c; void (*fn)(mw_clt_t *c); } post_t;

static void unref(mw_clt_t *c) {
    if (atomic_fetch_sub(&c->refs, 1) == 1) free(c);
}

static void post_run(void *ud) {
    post_t *p = ud;
    if (!atomic_load(&p->c->freed)) p->fn(p->c);
    unref(p->c);
    free(p);
}

static int post(mw_clt_t *c, void (*fn)(mw_clt_t *c)) {
    post_t *p = malloc(sizeof *p);
    if (!p) return MW_ENOMEM;
    *p = (post_t){c, fn};
    atomic_fetch_add(&c->refs, 1);
    if (mw_io_post(io_of(c), post_run, p) < 0) {
        atomic_fetch_sub(&c->refs, 1);
        free(p);
        return MW_ENOMEM;
    }
    return 0;
}

void mw__clt_release(mw_clt_t *c) {
    mw__clt_conn_teardown(c);
    mw_io_free(c->sio);
    c->sio = NULL;
    mw__clt_sess_free(c);
    if (c->have_tr) mw__transport_fini(&c->tr);
    c->have_tr = false;
    atomic_store(&c->freed, true);
    unref(c);
}

/* ---- helpers ---------------------------------------------------------------- */

static void stop_timers(mw_clt_t *c) {
    mw_io_timer_stop(io_of(c), &c->t_sess);
    mw_io_timer_stop(io_of(c), &c->t_ttl);
    mw_io_timer_stop(io_of(c), &c->t_heartbeat);
    mw_io_timer_stop(io_of(c), &c->t_gone);
}

/* Runs a user callback with the deferred-close guard. */
#define USER_CB(c, call)                                                                 \
    do {                                                                                 \
        (c)->in_cb = true;                                                               \
        call;                                                                            \
        (c)->in_cb = false;                                                              \
    } while (0)

static bool finish_deferred(mw_clt_t *c);

/* ---- the endpoint's callbacks (core/endpoint.c) ---------------------------------- */

static void notify_close(mw_clt_t *c, int reason) {
    if (c->o.event.on_close) USER_CB(c, c->o.event.on_close(c, reason, c->o.ud));
}

static void ep_attempt(mw__ep_t *e) {
    mw_clt_t *c = e->ud;
    c->state = MW_CLT_RESOLVING;
    mw__clt_record_name(c);
}

static void attach_conn(mw_clt_t *c);

static int ep_stream(mw__ep_t *e, mw_stream_t *s) {
    mw_clt_t *c = e->ud;
    int r = mw__clt_conn_setup(c, s, &e->err);
    if (r < 0) return r;
    attach_conn(c);
    return 0;
}

/* An attempt failed before there was a connection (resolve, connect,
 * timeout): on_close, then the endpoint's retry policy. */
static void ep_fail(mw__ep_t *e, int reason) {
    mw_clt_t *c = e->ud;
    mw__err_copy(&c->err, &e->err);
    c->state = MW_CLT_BACKOFF;
    notify_close(c, reason);
    if (finish_deferred(c)) return; /* closed or freed inside on_close */
    mw__ep_retry(e, reason, -1);
}

static bool ep_can_retry(mw__ep_t *e, int reason, uint32_t failures) {
    mw_clt_t *c = e->ud;
    /* The first connect retries per opts.retry (its attempt limit ends it);
     * once a connection has opened, only event.reconnect connects again. A
     * Clt over the caller's stream (mw_clt_open_stream) has nothing to
     * reconnect to. */
    bool again = !c->stopped && c->have_tr && (c->o.event.reconnect || c->connects == 0);
    if (again && c->o.event.can_reconnect) USER_CB(c, again = c->o.event.can_reconnect(c, reason, failures, c->o.ud));
    return again && !c->close_pending && !c->free_pending; /* a close asked for there ends it: on_end */
}

static void ep_end(mw__ep_t *e, int reason) {
    (void)reason;
    mw_clt_t *c = e->ud;
    c->state = MW_CLT_CLOSED;
    finish_deferred(c); /* last: it may free c */
}

/* ---- the connection, on the one driver ------------------------------------------ */

static void free_posted(mw_clt_t *c) { mw__clt_ep_free(c); }

/* A free asked for inside on_closed: posted, as the driver may still be on
 * the stack (at once only when there is no memory for the post). */
static void free_later(mw_clt_t *c) {
    if (post(c, free_posted) < 0) mw__clt_ep_free(c);
}

/* A close by the user lingers only with opts.linger_ns (the driver's other
 * graceful closes, such as an idle timeout, stay immediate): the bound is
 * set here, once the Clt has stopped for good. */
static bool close_lingers(mw_clt_t *c) {
    c->drv_cfg.linger_ns = c->o.linger_ns > 0 ? c->o.linger_ns : 0;
    return c->drv_cfg.linger_ns > 0;
}

/* After a user callback that ran inside the driver: a close or free asked
 * for there. The driver carries the close out once its own callback
 * returns; the free waits for the next poll (the driver still runs on this
 * memory until then). */
static bool stop_from_drv(mw_clt_t *c) {
    if (!c->close_pending && !c->free_pending) return c->stopped;
    bool free_it = c->free_pending;
    c->close_pending = c->free_pending = false;
    if (free_it) c->freeing = true; /* no on_closed */
    if (!c->stopped) {
        c->stopped = true;
        stop_timers(c);
        mw__ep_stop(&c->ep);
        c->state = MW_CLT_CLOSED;
    }
    mw__drv_close(&c->drv, MW_ESTATE, !free_it && close_lingers(c));
    if (free_it && post(c, free_posted) < 0) c->leak_guard = true; /* no memory: it stays */
    return true;
}

static void open_conn(mw_clt_t *c);

/* With a session: control messages stay inside; the logon ack opens. */
static bool sess_msg(mw_clt_t *c, const mw_schema_t *s, const void *msg) {
    int x = mw__clt_sess_msg(c, s, msg);
    if (x == 1) {
        if (c->o.event.on_msg) USER_CB(c, c->o.event.on_msg(c, s, msg, c->o.ud));
        mw__sess_commit(c->sess);
    } else if (x == 0) {
        if (c->state != MW_CLT_OPEN && mw__sess_up(c->sess)) open_conn(c);
    } else {
        if (x == MW_ECLOSED && c->logging_out) c->close_pending = true; /* logout answered: done */
        mw__drv_close(&c->drv, x, true);
        stop_from_drv(c);
        return false;
    }
    return !stop_from_drv(c);
}

static bool drv_msg(mw__drv_t *d, const mw_schema_t *s, const void *msg) {
    mw_clt_t *c = d->ud;
    if (c->sess) return sess_msg(c, s, msg);
    if (c->o.event.on_msg) USER_CB(c, c->o.event.on_msg(c, s, msg, c->o.ud));
    return !stop_from_drv(c);
}

static void on_heartbeat(mw_io_timer_t *t, void *ud) {
    mw_clt_t *c = ud;
    if (c->o.event.on_heartbeat) USER_CB(c, c->o.event.on_heartbeat(c, c->o.ud));
    if (finish_deferred(c)) return;
    if (c->state == MW_CLT_OPEN) mw_io_timer_after(io_of(c), t, c->o.event.heartbeat_ns);
}

/* The handshakes are done: open (with a session: log on first). */
static void drv_up(mw__drv_t *d) {
    mw_clt_t *c = d->ud;
    if (c->sess) mw__clt_sess_up(c);
    else open_conn(c);
}

static void open_conn(mw_clt_t *c) {
    mw__ep_up(&c->ep);
    c->state = MW_CLT_OPEN;
    c->connects++;
    c->opened_at = mw_io_now(io_of(c));
    if (c->o.event.ttl_ns > 0) mw_io_timer_after(io_of(c), &c->t_ttl, c->o.event.ttl_ns);
    if (c->o.event.heartbeat_ns > 0) mw_io_timer_after(io_of(c), &c->t_heartbeat, c->o.event.heartbeat_ns);
    if (c->o.event.on_connect) USER_CB(c, c->o.event.on_connect(c, c->o.ud));
    stop_from_drv(c);
}

static void drv_drain(mw__drv_t *d) {
    mw_clt_t *c = d->ud;
    if (c->sess) { /* a resend continues first */
        int r = mw__sess_pump(c->sess, mw_io_now(io_of(c)));
        if (r < 0) {
            mw__err_set(&c->err, r, "%s", mw__sess_error(c->sess));
            mw__drv_close(d, r, true);
            return;
        }
    }
    if (c->o.event.on_drain) USER_CB(c, c->o.event.on_drain(c, c->o.ud));
    stop_from_drv(c);
}

/* The connection ended (the peer, an error, a timeout, rotation, or a
 * failed handshake): on_close now, the next attempt once the driver has let
 * go of the connection (drv_gone). */
static void drv_closed(mw__drv_t *d, int reason) {
    mw_clt_t *c = d->ud;
    const char *why = mw__conn_last_error(&c->conn);
    if (*why && !(reason == MW_ESTATE && c->err.code == MW_ESTATE)) mw__err_set(&c->err, reason, "%s", why);
    c->open = false;
    if (c->sess) mw__clt_sess_down(c);
    if (c->stopped) return; /* closed by the user: no more callbacks */
    mw_io_timer_stop(io_of(c), &c->t_ttl);
    mw_io_timer_stop(io_of(c), &c->t_heartbeat);
    c->rotating = c->state == MW_CLT_OPEN && reason == MW_ESTATE; /* rotation reconnects at once */
    c->state = MW_CLT_BACKOFF;
    c->gone_reason = reason;
    notify_close(c, reason);
    stop_from_drv(c);
}

static void on_gone_timer(mw_io_timer_t *t, void *ud) {
    (void)t;
    mw_clt_t *c = ud;
    if (!c->stopped) mw__ep_retry(&c->ep, c->gone_reason, c->rotating ? 0 : -1);
}

static void drv_gone(mw__drv_t *d) {
    mw_clt_t *c = d->ud;
    if (c->stopped && d->end_result != 0) { /* how the user's close ended, for mw_clt_last_error in on_closed */
        const char *why = mw__conn_last_error(&c->conn);
        mw__err_set(&c->err, d->end_result, "%s", *why ? why : mw_strerror(d->end_result));
    }
    mw__clt_conn_teardown(c);
    /* from a timer: schedule may free the Clt, and the driver is still on
     * this stack */
    if (!c->stopped) mw_io_timer_after(io_of(c), &c->t_gone, 0);
    else if (mw__clt_closed(c, d->end_result)) free_later(c); /* the user's close ended (its linger included) */
}

static void run_drv_fn(mw_clt_t *c) {
    if (mw__drv_attached(&c->drv) && c->drv_fn) c->drv_fn(&c->drv);
}

static int drv_post(mw__drv_t *d, void (*fn)(mw__drv_t *d)) {
    mw_clt_t *c = d->ud;
    c->drv_fn = fn; /* one kind of request only: the write arm */
    return post(c, run_drv_fn);
}

/* Rotation is our own decision: messages already accepted are not thrown
 * away with the old connection. While bytes are still queued, retry every
 * millisecond for up to TTL_DRAIN_TRIES, then rotate anyway. */
#define TTL_DRAIN_TRIES 200

static void on_ttl(mw_io_timer_t *t, void *ud) {
    mw_clt_t *c = ud;
    if (mw__clt_tx_want(c) & MW_WANT_WRITE) {
        mw_clt_flush(c);
        if ((mw__clt_tx_want(c) & MW_WANT_WRITE) && c->ttl_tries++ < TTL_DRAIN_TRIES) {
            mw_io_timer_after(io_of(c), t, MW_NS_PER_MS);
            return;
        }
    }
    c->ttl_tries = 0;
    mw__err_set(&c->err, MW_ESTATE, "rotated after ttl %lld ms", (long long)(c->o.event.ttl_ns / MW_NS_PER_MS));
    mw__drv_close(&c->drv, MW_ESTATE, false);
}

/* Hands the connected stream (handshakes not done yet) to the driver. */
static void attach_conn(mw_clt_t *c) {
    c->state = MW_CLT_HANDSHAKING;
    /* under the tx lock: a sender picks its path from the driver's state */
    txl(c);
    int r = mw__drv_start(&c->drv, io_of(c), &c->conn, &c->drv_cfg, c);
    txu(c);
    if (r < 0) {
        mw__err_set(&c->err, r, "cannot register with the io");
        mw__clt_conn_teardown(c);
        notify_close(c, r);
        if (!finish_deferred(c)) mw__ep_retry(&c->ep, r, -1);
        return;
    }
    mw__drv_go(&c->drv);
}

/* ---- start / stop -------------------------------------------------------------- */

static void begin(mw_clt_t *c) {
    if (c->stopped) return;
    if (c->have_conn) attach_conn(c); /* mw_clt_open_stream: already connected */
    else mw__ep_start(&c->ep);
}

static const mw__ep_cfg_t ep_cfg = {
    .on_attempt = ep_attempt,
    .on_stream = ep_stream,
    .on_fail = ep_fail,
    .can_retry = ep_can_retry,
    .on_end = ep_end,
};

int mw__clt_ep_start(mw_clt_t *c) {
    mw__backoff_opts_t bo;
    mw__clt_backoff_opts(&c->o, &bo);
    mw__ep_init(&c->ep, io_of(c), &ep_cfg, c, &c->url, &c->tr, &c->o.tcp, c->o.connect_timeout_ns, &bo,
                (uint64_t)(uintptr_t)c ^ mw_now_ns());
    mw_io_timer_init(&c->t_ttl, on_ttl, c);
    mw_io_timer_init(&c->t_heartbeat, on_heartbeat, c);
    mw_io_timer_init(&c->t_gone, on_gone_timer, c);
    mw_io_timer_init(&c->t_sess, NULL, c); /* set by the session's logon */
    c->drv_cfg = (mw__drv_cfg_t){
        .on_msg = drv_msg,
        .on_up = drv_up,
        .on_drain = drv_drain,
        .on_close = drv_closed,
        .on_gone = drv_gone,
        .post = drv_post,
        /* the connect timeout bounds resolve + connect, then the handshakes */
        .handshake_timeout_ns = c->o.connect_timeout_ns,
        .idle_timeout_ns = c->o.event.idle_timeout_ns,
        .linger_ns = 0,
        .slow_consumer_ns = 0,
        .budget = -1,
    };
    c->state = c->have_conn ? MW_CLT_HANDSHAKING : MW_CLT_RESOLVING;
    return post(c, begin);
}

void mw__clt_ep_stop(mw_clt_t *c) {
    if (c->in_cb) { /* deferred until the callback returns */
        c->close_pending = true;
        return;
    }
    bool was_stopped = c->stopped;
    c->stopped = true;
    c->close_pending = false;
    if (c->o.event.io) {
        stop_timers(c);
        mw__ep_stop(&c->ep);
    }
    /* linger_ns 0: what the socket takes now still goes out, then FIN (the
     * caller may free the io right after this). Otherwise the driver's
     * graceful close delivers everything accepted while the io runs. */
    c->state = MW_CLT_CLOSED;
    bool free_it = false;
    if (!was_stopped && mw__drv_attached(&c->drv)) {
        bool linger = close_lingers(c);
        if (!linger) mw__drv_write(&c->drv);
        mw__drv_close(&c->drv, MW_ESTATE, linger); /* on_closed from drv_gone */
    } else if (!was_stopped) {
        free_it = mw__clt_closed(c, 0); /* no connection: nothing to deliver */
    }
    if (!mw__drv_attached(&c->drv)) mw__clt_conn_teardown(c);
    if (free_it) free_later(c);
}

void mw__clt_ep_free(mw_clt_t *c) {
    c->freeing = true; /* no on_closed */
    mw__clt_ep_stop(c);
    mw__drv_stop(&c->drv); /* no linger past free */
    mw__clt_release(c);
}

/* After a user callback: carries out a close (or free) asked for inside it.
 * Returns true if the Clt stopped. */
static bool finish_deferred(mw_clt_t *c) {
    if (!c->close_pending && !c->free_pending) return c->stopped;
    c->close_pending = false;
    mw__clt_ep_stop(c);
    if (c->free_pending) {
        c->free_pending = false;
        mw__clt_ep_free(c);
    }
    return true;
}
