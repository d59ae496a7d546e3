/* clt_ep.c - the event-mode Clt as an endpoint on an io: resolve (async),
 * connect (nonblocking, each address in turn), TLS/WebSocket handshakes, open;
 * on a drop or a failed attempt: on_close, then reconnect with exponential
 * backoff and jitter; TTL rotation, idle timeout and heartbeat timers.
 *
 * Everything here runs on the io thread. A Clt may be freed while callbacks
 * it posted are still queued: posts hold a reference (refs) and do nothing
 * once the Clt is freed; the last reference frees the memory. */
#include "clt_impl.h"

#include <stdlib.h>
#include <string.h>

static mw_io_t *io_of(const mw_clt_t *c) { return c->o.io; }

/* ---- references and posts --------------------------------------------------- */

typedef struct post { mw_clt_t *c; void (*fn)(mw_clt_t *c); } post_t;

void mw__clt_unref(mw_clt_t *c) {
    if (atomic_fetch_sub(&c->refs, 1) == 1) free(c);
}

static void post_run(void *ud) {
    post_t *p = ud;
    if (!atomic_load(&p->c->freed)) p->fn(p->c);
    mw__clt_unref(p->c);
    free(p);
}

int mw__clt_post(mw_clt_t *c, void (*fn)(mw_clt_t *c)) {
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

/* ---- helpers ---------------------------------------------------------------- */

static void stop_timers(mw_clt_t *c) {
    mw_io_timer_stop(io_of(c), &c->t_connect);
    mw_io_timer_stop(io_of(c), &c->t_backoff);
    mw_io_timer_stop(io_of(c), &c->t_ttl);
    mw_io_timer_stop(io_of(c), &c->t_idle);
    mw_io_timer_stop(io_of(c), &c->t_heartbeat);
    mw_io_timer_stop(io_of(c), &c->t_more);
}

static void detach(mw_clt_t *c) {
    if (c->attached) mw_io_del(io_of(c), &c->src);
    c->attached = false;
}

static void stack_error(mw_clt_t *c, mw_stream_t *s, int code) { mw_transport_error(s, code, &c->err); }

static void drop_pending(mw_clt_t *c) {
    detach(c);
    mw_stream_free(c->pending);
    c->pending = NULL;
    mw_resolve_cancel(c->dns);
    c->dns = NULL;
}

/* Runs a user callback with the deferred-close guard. */
#define USER_CB(c, call)                                                                 \
    do {                                                                                 \
        (c)->in_cb = true;                                                               \
        call;                                                                            \
        (c)->in_cb = false;                                                              \
    } while (0)

static bool finish_deferred(mw_clt_t *c);

/* ---- reconnect policy ------------------------------------------------------- */

static double rand01(mw_clt_t *c) {
    c->rng ^= c->rng << 13; /* xorshift64: jitter needs spread, not secrecy */
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    return (double)(c->rng >> 11) / 9007199254740992.0;
}

static int64_t backoff_delay(mw_clt_t *c) {
    if (c->failures == 0) return 0;
    int64_t d = c->o.reconnect.min_delay_ns;
    for (uint32_t i = 1; i < c->failures && d < c->o.reconnect.max_delay_ns; i++) d *= 2;
    if (d > c->o.reconnect.max_delay_ns) d = c->o.reconnect.max_delay_ns;
    double j = c->o.reconnect.jitter < 0 ? 0 : c->o.reconnect.jitter > 1 ? 1 : c->o.reconnect.jitter;
    return (int64_t)((double)d * (1.0 - j * rand01(c)));
}

static void start_attempt(mw_clt_t *c);

static void schedule(mw_clt_t *c, int reason) {
    if (finish_deferred(c)) return; /* closed or freed inside on_close: no more callbacks */
    const uint32_t max = c->o.reconnect.max_attempts;
    /* a Clt over the caller's stream (mw_clt_open_stream) has nothing to reconnect to */
    bool again = !c->stopped && c->have_tr && c->o.reconnect.enabled && (!max || c->failures < max);
    if (again && c->o.can_reconnect) USER_CB(c, again = c->o.can_reconnect(c, reason, c->failures, c->o.ud));
    if (finish_deferred(c)) return; /* stopped (maybe freed) inside can_reconnect */
    if (!again) {
        c->state = MW_CLT_CLOSED;
        return;
    }
    c->state = MW_CLT_BACKOFF;
    mw_io_timer_after(io_of(c), &c->t_backoff, backoff_delay(c));
}

static void notify_close(mw_clt_t *c, int reason) {
    if (c->o.on_close) USER_CB(c, c->o.on_close(c, reason, c->o.ud));
}

/* A connect attempt failed (resolve, connect, handshake, timeout). */
static void attempt_failed(mw_clt_t *c, int reason) {
    drop_pending(c);
    mw_io_timer_stop(io_of(c), &c->t_connect);
    c->failures++;
    mw__logf(MW_LOG_INFO, "clt %s://%s:%s: attempt failed: %s", mw_scheme_name(c->url.scheme), c->url.host,
             c->url.port, mw_err_text(&c->err));
    notify_close(c, reason);
    schedule(c, reason);
}

/* An open connection ended. reason MW_ESTATE (rotation) reconnects at once. */
void mw__clt_drop(mw_clt_t *c, int reason) {
    stop_timers(c);
    detach(c);
    const char *why = c->have_conn ? mw_conn_last_error(&c->conn) : "";
    if (*why) mw_err_set(&c->err, reason, "%s", why);
    if (c->have_conn) mw_transport_close(c->conn.stream, reason, mw_err_text(&c->err), false);
    mw__clt_conn_teardown(c);
    c->failures = reason == MW_ESTATE ? 0 : 1;
    notify_close(c, reason);
    schedule(c, reason);
}

/* ---- open connection ---------------------------------------------------------- */

static bool deliver(void *ud, mw_conn_t *conn, const mw_schema_t *s, const void *msg) {
    (void)conn;
    mw_clt_t *c = ud;
    if (c->o.on_msg) c->o.on_msg(c, s, msg, c->o.ud);
    return !c->close_pending && !c->free_pending && !c->stopped;
}

void mw__clt_arm(mw_clt_t *c) {
    if (!c->attached || c->state != MW_CLT_OPEN) return;
    int want = MW_WANT_READ | mw__clt_tx_want(c);
    if (want != c->src.events) mw_io_mod(io_of(c), &c->src, want);
}

/* Work: 1 when bytes came in, went out, or the connection ended. */
int mw__clt_on_ready(mw_sel_src_t *src, int events) {
    mw_clt_t *c = src->ud;
    int w = 0;
    if (events & MW_WANT_WRITE) {
        w = mw_clt_flush(c);
        if (w == MW_EAGAIN || w == MW_ETIMEDOUT) w = 0;
    }
    /* Read even after a failed write (also on writability: a TLS read may
     * have waited for it): what the peer sent first is delivered, and the
     * read side says how the connection ended. */
    bool more = false;
    c->in_cb = true;
    ssize_t n = mw_conn_pump(&c->conn, deliver, c, 16, &more);
    c->in_cb = false;
    if (n > 0 && c->o.idle_timeout_ns > 0) c->last_rx_ns = mw_io_now(io_of(c));
    int r = n < 0 ? (int)n : n == 0 ? w : 0;
    int work = n != 0 || ((events & MW_WANT_WRITE) && w == 0);
    if (finish_deferred(c)) return 1;
    if (r < 0) {
        mw__clt_drop(c, r);
        return 1;
    }
    mw__clt_arm(c);
    if (more) mw_io_timer_after(io_of(c), &c->t_more, 0); /* input held inside TLS/WebSocket */
    return work;
}

static void on_more(mw_io_timer_t *t, void *ud) {
    (void)t;
    mw_clt_t *c = ud;
    if (c->state == MW_CLT_OPEN && c->have_conn) mw__clt_on_ready(&c->src, MW_WANT_READ);
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
    mw_err_set(&c->err, MW_ESTATE, "rotated after ttl %lld ms", (long long)(c->o.ttl_ns / MW_NS_PER_MS));
    mw__clt_drop(c, MW_ESTATE);
}

static void on_idle(mw_io_timer_t *t, void *ud) {
    mw_clt_t *c = ud;
    uint64_t due = c->last_rx_ns + (uint64_t)c->o.idle_timeout_ns;
    if (mw_io_now(io_of(c)) < due) {
        mw_io_timer_at(io_of(c), t, due);
        return;
    }
    mw_err_set(&c->err, MW_ETIMEDOUT, "nothing received for %lld ms", (long long)(c->o.idle_timeout_ns / MW_NS_PER_MS));
    if (c->have_conn) mw_err_copy(&c->conn.rx.err, &c->err);
    mw__clt_drop(c, MW_ETIMEDOUT);
}

static void on_heartbeat(mw_io_timer_t *t, void *ud) {
    mw_clt_t *c = ud;
    if (c->o.on_heartbeat) USER_CB(c, c->o.on_heartbeat(c, c->o.ud));
    if (finish_deferred(c)) return;
    if (c->state == MW_CLT_OPEN) mw_io_timer_after(io_of(c), t, c->o.heartbeat_ns);
}

static void opened(mw_clt_t *c) {
    mw_io_timer_stop(io_of(c), &c->t_connect);
    c->state = MW_CLT_OPEN;
    c->failures = 0;
    c->connects++;
    c->opened_at = c->last_rx_ns = mw_io_now(io_of(c));
    mw_sel_src_init(&c->src, mw_stream_fd(c->conn.stream), MW_WANT_READ, mw__clt_on_ready, c);
    if (mw_io_add(io_of(c), &c->src) < 0) {
        mw_err_set(&c->err, MW_ESYS, "cannot register with the io");
        mw__clt_drop(c, MW_ESYS);
        return;
    }
    c->attached = true;
    if (c->o.ttl_ns > 0) mw_io_timer_after(io_of(c), &c->t_ttl, c->o.ttl_ns);
    if (c->o.idle_timeout_ns > 0) mw_io_timer_after(io_of(c), &c->t_idle, c->o.idle_timeout_ns);
    if (c->o.heartbeat_ns > 0) mw_io_timer_after(io_of(c), &c->t_heartbeat, c->o.heartbeat_ns);
    if (c->o.on_connect) USER_CB(c, c->o.on_connect(c, c->o.ud));
    if (finish_deferred(c)) return;
    /* bytes may have arrived with the last handshake read */
    if (c->have_conn && mw_conn_rx_buffered(&c->conn)) mw__clt_on_ready(&c->src, 0);
    else mw__clt_arm(c);
}

/* ---- connecting ------------------------------------------------------------- */

static void try_next_addr(mw_clt_t *c);

static void step_handshake(mw_clt_t *c) {
    int r, want = 0;
    /* want() == 0 after MW_EAGAIN means "call again now" (a layer finished
     * and the next one can start); bounded in case a layer misbehaves. */
    for (int i = 0; i < 8; i++) {
        r = mw_transport_step(c->pending);
        if (r != MW_EAGAIN || (want = mw_stream_want(c->pending)) != 0) break;
    }
    if (r == MW_EAGAIN) {
        mw_io_mod(io_of(c), &c->src, want ? want : MW_WANT_READ);
        return;
    }
    if (r < 0) {
        stack_error(c, c->pending, r);
        attempt_failed(c, r);
        return;
    }
    detach(c);
    mw_stream_t *s = c->pending;
    c->pending = NULL;
    if ((r = mw__clt_conn_setup(c, s, &c->err)) < 0) {
        attempt_failed(c, r);
        return;
    }
    opened(c);
}

/* Work: 0 while the connect is still in progress, else 1. */
static int on_pending(mw_sel_src_t *src, int events) {
    (void)events;
    mw_clt_t *c = src->ud;
    if (c->state == MW_CLT_HANDSHAKING) {
        step_handshake(c);
        return 1;
    }
    int r = mw_tcp_connect_finish(c->pending);
    if (r == MW_EAGAIN) return 0;
    if (r < 0) {
        stack_error(c, c->pending, r);
        detach(c);
        mw_stream_free(c->pending);
        c->pending = NULL;
        try_next_addr(c);
        return 1;
    }
    mw_stream_t *s = c->pending;
    c->pending = NULL; /* wrap takes ownership, also on failure */
    detach(c);
    mw__clt_record_name(c);
    if ((r = mw_transport_wrap(&c->tr, s, &c->pending, &c->err)) < 0) {
        attempt_failed(c, r);
        return 1;
    }
    c->state = MW_CLT_HANDSHAKING;
    mw_sel_src_init(&c->src, mw_stream_fd(c->pending), MW_WANT_WRITE, on_pending, c);
    if (mw_io_add(io_of(c), &c->src) == 0) c->attached = true;
    step_handshake(c);
    return 1;
}

static void try_next_addr(mw_clt_t *c) {
    int r = c->err.code ? c->err.code : MW_ECONNREFUSED;
    while (c->next_addr < c->addrs.naddrs) {
        int i = c->next_addr++;
        mw_stream_t *s;
        mw_tcp_opts_t tcp = c->o.tcp;
        tcp.blocking = false;
        r = mw_tcp_connect_start(&s, (struct sockaddr *)&c->addrs.addrs[i], c->addrs.lens[i], &tcp, &c->err);
        if (r != 0 && r != MW_EAGAIN) continue;
        c->pending = s;
        c->state = MW_CLT_CONNECTING;
        mw_sel_src_init(&c->src, mw_stream_fd(s), MW_WANT_WRITE, on_pending, c);
        if ((r = mw_io_add(io_of(c), &c->src)) < 0) break;
        c->attached = true;
        return;
    }
    if (!c->err.code) mw_err_set(&c->err, r, "connect %s:%s: no address to try", c->url.host, c->url.port);
    attempt_failed(c, r);
}

static void on_resolved(const mw_resolve_result_t *res, void *ud) {
    mw_clt_t *c = ud;
    c->dns = NULL;
    if (res->code < 0) {
        mw_err_set(&c->err, res->code, "%s", res->text);
        attempt_failed(c, res->code);
        return;
    }
    c->addrs = *res;
    c->next_addr = 0;
    mw_err_clear(&c->err);
    try_next_addr(c);
}

static void on_connect_timeout(mw_io_timer_t *t, void *ud) {
    (void)t;
    mw_clt_t *c = ud;
    mw_err_set(&c->err, MW_ETIMEDOUT, "connect %s:%s: no connection within %lld ms", c->url.host, c->url.port,
               (long long)(c->o.connect_timeout_ns / MW_NS_PER_MS));
    attempt_failed(c, MW_ETIMEDOUT);
}

static void start_attempt(mw_clt_t *c) {
    if (c->stopped) return;
    c->state = MW_CLT_RESOLVING;
    if (c->o.connect_timeout_ns > 0) mw_io_timer_after(io_of(c), &c->t_connect, c->o.connect_timeout_ns);
    int r = mw_resolve_start(io_of(c), c->url.host, c->url.port, on_resolved, c, &c->dns, &c->err);
    if (r < 0) attempt_failed(c, r);
}

static void on_backoff(mw_io_timer_t *t, void *ud) {
    (void)t;
    start_attempt(ud);
}

/* ---- start / stop -------------------------------------------------------------- */

static void begin(mw_clt_t *c) {
    if (c->stopped) return;
    if (c->have_conn) opened(c); /* mw_clt_open_stream: already connected */
    else start_attempt(c);
}

int mw__clt_ep_start(mw_clt_t *c) {
    mw_io_timer_init(&c->t_connect, on_connect_timeout, c);
    mw_io_timer_init(&c->t_backoff, on_backoff, c);
    mw_io_timer_init(&c->t_ttl, on_ttl, c);
    mw_io_timer_init(&c->t_idle, on_idle, c);
    mw_io_timer_init(&c->t_heartbeat, on_heartbeat, c);
    mw_io_timer_init(&c->t_more, on_more, c);
    c->rng = (uint64_t)(uintptr_t)c ^ mw_now_ns() ^ 0x9E3779B97F4A7C15ull;
    c->state = c->have_conn ? MW_CLT_HANDSHAKING : MW_CLT_RESOLVING;
    return mw__clt_post(c, begin);
}

void mw__clt_ep_stop(mw_clt_t *c) {
    if (c->in_cb) { /* deferred until the callback returns */
        c->close_pending = true;
        return;
    }
    c->stopped = true;
    c->close_pending = false;
    if (c->o.io) stop_timers(c);
    drop_pending(c);
    mw__clt_conn_teardown(c);
    c->state = MW_CLT_CLOSED;
}

/* After a user callback: carries out a close (or free) asked for inside it.
 * Returns true if the Clt stopped. */
static bool finish_deferred(mw_clt_t *c) {
    if (!c->close_pending && !c->free_pending) return c->stopped;
    c->close_pending = false;
    mw__clt_ep_stop(c);
    if (c->free_pending) {
        c->free_pending = false;
        mw_clt_free(c);
    }
    return true;
}
