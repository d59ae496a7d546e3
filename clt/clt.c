/* clt.c - the client's API: connect, messaging in every mode, close and
 * free; the synchronous connect and close of the spin and blocking modes.
 * The event-mode lifecycle is in clt_ep.c, sessions in clt_sess.c, what
 * they all share in clt_conn.c. */
#include "clt_impl.h"
#include "clock_impl.h"
#include "conn_impl.h"
#include "err_impl.h"
#include "io_impl.h"
#include "stream_impl.h"
#include "tcp_impl.h"
#include "transport_impl.h"
#include "buf_impl.h"

#include <stdlib.h>
#include <string.h>

/* The split views are the Clt itself, typed so a thread cannot call the
 * other side's functions by mistake. */
struct mw_clt_sender { struct mw_clt c; };
struct mw_clt_receiver { struct mw_clt c; };

void mw_clt_opts_init(mw_clt_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->mode = MW_MODE_SPIN;
    mw__conn_opts_init(&o->conn);
    mw__tcp_opts_init(&o->tcp);
    mw__transport_opts_init(&o->tr);
    o->connect_timeout_ns = 5 * MW_NS_PER_S;
    o->retry.max_attempts = 0; /* 1 without event.reconnect, no limit with it */
    o->retry.min_delay_ns = 100 * MW_NS_PER_MS;
    o->retry.max_delay_ns = 10 * MW_NS_PER_S;
    o->retry.jitter = 0.2;
    o->sync.timeout_ns = -1;
    mw_idle_init_busy(&o->sync.idle);
    o->linger_ns = -1; /* the mode's default: see mw_clt.h */
}

/* What only one mode reads, set for another, is a mistake the caller
 * should hear about now, not a callback that silently never runs. */
static int check_opts(const mw_clt_opts_t *o, mw_err_t *err) {
    const mw_clt_event_opts_t *e = &o->event;
    const char *bad = NULL;
    if (o->mode == MW_MODE_EVENT) {
        if (!e->io) return mw__err_set(err, MW_EINVAL, "event mode needs opts.event.io");
    } else if (e->io) bad = "io";
    else if (e->on_connect) bad = "on_connect";
    else if (e->on_msg) bad = "on_msg";
    else if (e->on_close) bad = "on_close";
    else if (e->on_drain) bad = "on_drain";
    else if (e->on_heartbeat) bad = "on_heartbeat";
    else if (e->can_reconnect) bad = "can_reconnect";
    else if (e->reconnect) bad = "reconnect";
    else if (e->async_connect) bad = "async_connect";
    else if (e->ttl_ns) bad = "ttl_ns";
    else if (e->idle_timeout_ns) bad = "idle_timeout_ns";
    else if (e->heartbeat_ns) bad = "heartbeat_ns";
    if (bad)
        return mw__err_set(err, MW_EINVAL, "opts.event.%s is set but the mode is %s: event options act only in event mode",
                          bad, mw_mode_name(o->mode));
    if (o->retry.min_delay_ns < 0 || o->retry.max_delay_ns < 0)
        return mw__err_set(err, MW_EINVAL, "opts.retry: negative delay");
    if (!(o->retry.jitter >= 0 && o->retry.jitter <= 1)) /* NaN too */
        return mw__err_set(err, MW_EINVAL, "opts.retry.jitter must be within 0..1");
    return 0;
}

/* The default linger of a spin or blocking Clt's close: see mw_clt.h. */
#define MW_CLT_SYNC_LINGER_NS (2 * MW_NS_PER_S)

/* ---- spin and blocking: the connection on the one driver, in pull mode -------
 * The Clt's private io holds the driver; recv takes messages through the
 * driver's pull entry points (mw__drv_recv, mw__drv_next), the read path a
 * spin/blocking Svc uses, and close is the driver's graceful close, polled on
 * this io until it ends. What the io never does here is wait before a read:
 * a spin recv reads at once, a blocking one waits in the socket (plain TCP:
 * a blocking read; TLS and sessions: poll on the fd), one syscall per
 * message as a plain socket program would. The split sender and receiver
 * need no lock because neither polls the io while the Clt is open (the
 * io's callbacks would write from the receiver's thread). */

static void sync_gone(mw__drv_t *d) { (void)d; }

/* The driver's cross-thread arm is asked for only by its own send
 * functions, which spin/blocking Clts do not use (they write inline). */
static int sync_post(mw__drv_t *d, void (*fn)(mw__drv_t *d)) {
    (void)d;
    (void)fn;
    return MW_ESTATE;
}

static int sync_attach(mw_clt_t *c, mw_err_t *err) {
    int r;
    if (!c->sio) {
        mw_io_opts_t io;
        mw_io_opts_init(&io);
        if (mw__stream_fd(c->conn.stream) < 0) io.backend = "direct"; /* an in-process stream */
        if ((r = mw_io_new(&c->sio, &io, err)) < 0) return r;
    }
    c->drv_cfg = (mw__drv_cfg_t){.on_gone = sync_gone, .post = sync_post, .budget = -1};
    if ((r = mw__drv_start(&c->drv, c->sio, &c->conn, &c->drv_cfg, c)) < 0)
        return mw__err_set(err, r, "register with the io: %s", mw_err_text(&mw__io_selector(c->sio)->err));
    mw__drv_go(&c->drv); /* the handshakes are done: up at once */
    if (!mw__drv_up(&c->drv)) return mw__err_set(err, MW_ESTATE, "connection not up after its handshakes");
    /* The io watches the socket only while a close lingers: registered with
     * epoll, every packet that arrives would also run epoll's wake-up
     * callback for an io nobody waits on (the kernel's cost, per message). */
    mw_io_del(c->sio, &c->drv.src);
    return 0;
}

/* ---- synchronous connect (spin, blocking) ----------------------------------- */

/* The endpoint on a private io, polled here until it hands over a stream
 * whose handshakes completed, or gives up. */
typedef struct sync_connect {
    mw_clt_t *c;
    mw_stream_t *stream;
    int end;             /* the reason it gave up; 0 while going */
} sync_connect_t;

static void sc_attempt(mw__ep_t *e) { mw__clt_record_name(((sync_connect_t *)e->ud)->c); }

static int sc_stream(mw__ep_t *e, mw_stream_t *s) {
    sync_connect_t *sc = e->ud;
    int r = mw__transport_handshake(s, mw__deadline_in(NULL, sc->c->o.connect_timeout_ns), &e->err);
    if (r < 0) {
        mw_stream_free(s);
        return r;
    }
    sc->stream = s;
    return 0;
}

static void sc_fail(mw__ep_t *e, int reason) { mw__ep_retry(e, reason, -1); }

/* A certificate that fails verification fails the same way every time. */
static bool sc_can_retry(mw__ep_t *e, int reason, uint32_t failures) {
    (void)e;
    (void)failures;
    return reason != MW_ETLS;
}

static void sc_end(mw__ep_t *e, int reason) { ((sync_connect_t *)e->ud)->end = reason < 0 ? reason : MW_ECLOSED; }

static const mw__ep_cfg_t sc_cfg = {
    .on_attempt = sc_attempt,
    .on_stream = sc_stream,
    .on_fail = sc_fail,
    .can_retry = sc_can_retry,
    .on_end = sc_end,
};

/* Attempts per opts.retry (the endpoint's backoff, the same policy as the
 * event-mode reconnects), each bounded by connect_timeout_ns. */
static int connect_sync(mw_clt_t *c, mw_err_t *err) {
    mw_io_t *io;
    int r = mw_io_new(&io, NULL, err);
    if (r < 0) return r;
    sync_connect_t sc = {c, NULL, 0};
    mw__backoff_opts_t bo;
    mw__clt_backoff_opts(&c->o, &bo);
    if (bo.max_attempts == 0) bo.max_attempts = 1; /* (event.reconnect connects from the io) */
    mw__ep_t ep;
    mw_tcp_opts_t tcp = c->o.tcp;
    tcp.blocking = false; /* handshakes are driven nonblocking, then switched */
    mw__ep_init(&ep, io, &sc_cfg, &sc, &c->url, &c->tr, &tcp, c->o.connect_timeout_ns, &bo,
                (uint64_t)(uintptr_t)c ^ mw_now_ns());
    mw__ep_start(&ep);
    while (!sc.stream && !sc.end && (r = mw_io_poll(io, -1)) >= 0) {}
    mw__ep_stop(&ep);
    mw_resolve_shutdown(io);
    if (!sc.stream) {
        mw_io_free(io);
        mw__err_copy(err, &ep.err);
        return ep.err.code ? ep.err.code : r < 0 ? r : MW_ECONNREFUSED;
    }
    if (c->o.mode == MW_MODE_EVENT) mw_io_free(io);
    else c->sio = io; /* the connection's driver lives on it */
    mw_stream_t *s = sc.stream;
    if (c->o.mode == MW_MODE_BLOCKING) {
        bool tls = c->url.scheme == MW_SCHEME_TLS || c->url.scheme == MW_SCHEME_WSS;
        if (tls || c->sess) {
            /* (sessions: the waits must wake up for heartbeats too) */
            /* A blocking socket would make SSL_read sleep inside the TLS
             * lock and starve a split sender: stay nonblocking and wait in
             * poll() outside it instead. */
            c->poll_wait = true;
        } else {
            mw__tcp_set_blocking(s, true);
            if (c->o.sync.timeout_ns > 0) mw__tcp_set_timeouts(s, c->o.sync.timeout_ns, c->o.sync.timeout_ns);
            c->blocking_sock = true;
        }
    }
    /* (event mode logs on from the io, once the driver has the connection) */
    if ((r = mw__clt_conn_setup(c, s, err)) == 0 && c->o.mode != MW_MODE_EVENT) r = sync_attach(c, err);
    if (r == 0 && c->sess && c->o.mode != MW_MODE_EVENT) r = mw__clt_sess_logon_sync(c, err);
    return r;
}

static mw_clt_t *clt_new(const mw_protocol_t *p, const mw_clt_opts_t *o) {
    mw_clt_t *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->o = *o;
    c->proto = p;
    c->tx_idle = c->rx_idle = o->sync.idle;
    atomic_init(&c->refs, 1);
    c->state = MW_CLT_CLOSED;
    return c;
}

int mw_clt_connect(mw_clt_t **out, const char *url, const mw_protocol_t *p,
                   const mw_clt_opts_t *o, mw_err_t *err) {
    mw_clt_opts_t def;
    if (!o) {
        mw_clt_opts_init(&def);
        o = &def;
    }
    *out = NULL;
    int r = check_opts(o, err);
    if (r < 0) return r;
    mw_clt_t *c = clt_new(p, o);
    if (!c) return mw__err_set(err, MW_ENOMEM, "out of memory");
    r = o->session.enabled ? mw__clt_sess_open(c, err) : 0;
    if (r == 0) r = mw__url_parse(url, &c->url, err);
    mw_transport_opts_t tr = o->tr;
    if (tr.ws.max_msg > c->o.conn.max_msg) tr.ws.max_msg = c->o.conn.max_msg; /* one limit, not two */
    if (r == 0 && (r = mw__transport_init(&c->tr, &c->url, false, &tr, err)) == 0) c->have_tr = true;
    /* Event mode with reconnects (or asked to) connects from the io: errors
     * then arrive through on_close. Otherwise connect here and now. */
    bool async = o->mode == MW_MODE_EVENT && (o->event.async_connect || o->event.reconnect);
    if (r == 0 && !async) r = connect_sync(c, err);
    if (r == 0 && o->mode == MW_MODE_EVENT) r = mw__clt_ep_start(c);
    if (r < 0) {
        mw_clt_free(c);
        return r;
    }
    if (o->mode != MW_MODE_EVENT) c->state = MW_CLT_OPEN;
    *out = c;
    return 0;
}

int mw_clt_open_stream(mw_clt_t **out, mw_stream_t *s, const mw_protocol_t *p,
                       const mw_clt_opts_t *o, mw_err_t *err) {
    mw_clt_opts_t def;
    if (!o) {
        mw_clt_opts_init(&def);
        o = &def;
    }
    *out = NULL;
    mw_clt_t *c = NULL;
    int r = check_opts(o, err);
    if (r < 0) {}
    else if (!(c = clt_new(p, o))) r = mw__err_set(err, MW_ENOMEM, "out of memory");
    else if (o->session.enabled && (r = mw__clt_sess_open(c, err)) < 0) {}
    else if ((r = mw__clt_conn_setup(c, s, err)) == 0 && o->mode == MW_MODE_EVENT) r = mw__clt_ep_start(c);
    else if (r == 0 && (r = sync_attach(c, err)) == 0 && c->sess) r = mw__clt_sess_logon_sync(c, err);
    if (r < 0) {
        if (!c || !c->have_conn) mw_stream_free(s);
        mw_clt_free(c);
        return r;
    }
    if (o->mode != MW_MODE_EVENT) c->state = MW_CLT_OPEN;
    *out = c;
    return 0;
}

/* ---- sending -------------------------------------------------------------- */

/* One message onto the connection (or, with a session, numbered and
 * journaled first). more: queue without writing. Under txl, but for an
 * event-mode session (the session's lock orders it, and its link takes txl
 * for the write: sess_unlocked). Event mode: txl is the conn's tx lock too
 * (the one lock), so the driver's _l functions. Returns 1 when the message
 * was accepted but bytes stay queued behind a full socket (spin/blocking
 * without a session), else 0 or an error. */
static int tx_one(mw_clt_t *c, const mw_schema_t *s, const void *msg, bool more, uint64_t *seq) {
    if (c->sess) return mw__clt_sess_send(c, s, msg, more, seq);
    if (!c->have_conn) return MW_ECLOSED;
    if (c->o.mode == MW_MODE_EVENT && mw__drv_attached(&c->drv))
        return more ? mw__drv_enqueue_l(&c->drv, s, msg) : mw__drv_send_l(&c->drv, s, msg);
    /* (txl is the conn's lock in event mode; spin/blocking take none) */
    return more ? mw__conn_enqueue_nl(&c->conn, s, msg) : mw__conn_send_q_fast_nl(&c->conn, s, msg);
}

/* An event-mode session takes no txl around its send (see tx_one). */
static inline bool sess_unlocked(const mw_clt_t *c) { return c->sess && locked_mode(c); }

/* A spin/blocking send without a session (no lock) that did not end with
 * everything written: the same results as mw__clt_send_numbered. */
static __attribute__((noinline)) int sync_sent(mw_clt_t *c, int r) {
    bool pending = r == 1 && c->o.mode == MW_MODE_BLOCKING;
    if (r == 1) r = 0;
    if (r < 0 && c->have_conn && c->conn.tx.failed) c->open = false;
    if (pending) return MW_ETIMEDOUT; /* SO_SNDTIMEO hit: accepted, the rest is queued */
    return blocking_result(c, r);
}

/* The same for event mode, under txl, which it releases. */
static __attribute__((noinline)) int event_sent(mw_clt_t *c, int r) {
    if (r == MW_EAGAIN) atomic_store(&c->drv.want_drain, true);
    if (r < 0 && c->have_conn && c->conn.tx.failed) c->open = false;
    txu(c);
    return r;
}

int mw_clt_send(mw_clt_t *c, const mw_schema_t *s, const void *msg) {
    if (!c->sess) { /* tx_one inline, for an attached or a lock-free conn */
        if (!locked_mode(c)) {
            if (c->have_conn && !c->poll_wait) {
                int r = mw__conn_send_q_fast_nl(&c->conn, s, msg);
                return r == 0 ? 0 : sync_sent(c, r);
            }
        } else {
            txl(c);
            int r = c->have_conn && mw__drv_attached(&c->drv) ? mw__drv_send_l(&c->drv, s, msg)
                                                             : tx_one(c, s, msg, false, NULL);
            if (r != 0) return event_sent(c, r == 1 ? 0 : r);
            txu(c);
            return 0;
        }
    }
    return mw__clt_send_numbered(c, s, msg, NULL);
}

int mw__clt_send_numbered(mw_clt_t *c, const mw_schema_t *s, const void *msg, uint64_t *seq) {
    if (sess_unlocked(c)) {
        int r = tx_one(c, s, msg, false, seq);
        if (r == MW_EAGAIN) atomic_store(&c->drv.want_drain, true);
        return r;
    }
    txl(c);
    int r = tx_one(c, s, msg, false, seq);
    if (r == MW_EAGAIN && c->o.mode == MW_MODE_EVENT) /* not attached yet: on_drain once it is */
        atomic_store(&c->drv.want_drain, true);
    if (c->poll_wait && r >= 0 && (r == MW_EAGAIN || r == 1 || mw__conn_tx_pending(&c->conn))) {
        /* blocking over TLS: wait until the message is accepted and written */
        uint64_t dl = mw__deadline_in(NULL, c->o.sync.timeout_ns);
        while (r == MW_EAGAIN && mw__clt_wait_stream(c, MW_WANT_WRITE, dl) == 0) r = tx_one(c, s, msg, false, seq);
        if (r == 1) r = 0;
        while (r == 0 && mw__conn_tx_pending(&c->conn) && mw__clt_wait_stream(c, MW_WANT_WRITE, dl) == 0) {
            int f = mw__clt_tx_flush(c);
            if (f < 0 && f != MW_EAGAIN) r = f;
        }
        if (r == 0 && mw__conn_tx_pending(&c->conn)) r = 1;
    }
    /* (event mode: the driver asked for writability itself) */
    bool pending = r == 1 && c->o.mode == MW_MODE_BLOCKING;
    if (r == 1) r = 0;
    if (r < 0 && c->have_conn && c->conn.tx.failed) c->open = false;
    txu(c);
    if (pending) return MW_ETIMEDOUT; /* SO_SNDTIMEO hit: accepted, the rest is queued */
    return blocking_result(c, r);
}

int mw_clt_send_seq(mw_clt_t *c, const mw_schema_t *s, const void *msg, uint64_t *seq) {
    if (!c->sess) return MW_EINVAL;
    return mw__clt_send_numbered(c, s, msg, seq);
}

static __attribute__((noinline)) int send_more_any(mw_clt_t *c, const mw_schema_t *s, const void *msg) {
    if (sess_unlocked(c)) {
        int r = tx_one(c, s, msg, true, NULL);
        if (r == MW_EAGAIN) atomic_store(&c->drv.want_drain, true);
        return r;
    }
    txl(c);
    int r = tx_one(c, s, msg, true, NULL);
    if (r == MW_EAGAIN && c->o.mode == MW_MODE_EVENT) atomic_store(&c->drv.want_drain, true);
    txu(c);
    return r;
}

int mw_clt_send_more(mw_clt_t *c, const mw_schema_t *s, const void *msg) {
    /* Spin/blocking without a session (no lock, nothing but the conn to
     * tell): the common message inline, in a function that needs no frame;
     * anything else as send_more_any. */
    if (!locked_mode(c) && !c->sess && c->have_conn && mw__conn_enqueue_fast_nl(&c->conn, s, msg) == 0) return 0;
    return send_more_any(c, s, msg);
}

int mw_clt_send_busywait_timeout(mw_clt_t *c, const mw_schema_t *s, const void *msg, int64_t timeout_ns) {
    uint64_t dl = mw__deadline_in(NULL, timeout_ns);
    int r;
    while ((r = mw_clt_send(c, s, msg)) == MW_EAGAIN) {
        if (mw__deadline_passed(NULL, dl)) return MW_ETIMEDOUT;
        mw_idle(&c->tx_idle, 0);
    }
    if (r == 0) { /* accepted: now until every byte is written */
        while ((r = mw_clt_flush(c)) == MW_EAGAIN) {
            if (mw__deadline_passed(NULL, dl)) return MW_ETIMEDOUT;
            mw_idle(&c->tx_idle, 0);
        }
    }
    mw_idle_reset(&c->tx_idle);
    return r;
}

uint8_t *mw_clt_claim(mw_clt_t *c, size_t max) {
    txl(c);
    uint8_t *p = c->have_conn ? mw__conn_claim_nl(&c->conn, max) : NULL; /* (txl is its lock) */
    if (!p) txu(c);
    return p; /* the lock (event mode) is held until commit */
}

int mw_clt_commit(mw_clt_t *c, size_t len) {
    if (!c->conn.tx_claimed) return MW_EINVAL; /* no claim: no lock held */
    int r = mw__conn_commit_nl(&c->conn, len);
    txu(c);
    return r;
}

/* ---- receiving ------------------------------------------------------------ */

/* Accepted bytes still queued (a full socket at send time) are written by
 * the next call of any kind, recv included, so a caller that sends and then
 * only waits for the answer never stalls. Not when the Clt is split: its tx
 * side belongs to the sender's thread then. */
static void recv_flush(mw_clt_t *c) {
    if (c->split) return; /* (never in event mode) */
    /* nothing queued (a message stream may still hold bytes of its own: ask it) */
    if (!mw__buf_len(&c->conn.tx.buf) && (!c->conn.msgs || !mw__conn_tx_pending(&c->conn))) return;
    int r = mw__conn_flush(&c->conn);
    if (r < 0 && r != MW_EAGAIN && c->conn.tx.failed) c->open = false;
}

/* Blocking over TLS: a message already decoded or held inside the stream
 * is taken at once; otherwise wait for the socket first and read after, as
 * a blocking read would (a read tried first would mostly find nothing: one
 * syscall per message for nothing). */
static int recv_poll_wait(mw_clt_t *c, const mw_schema_t **s, void *msg, size_t cap) {
    if (!mw__drv_up(&c->drv)) return MW_ECLOSED;
    int r = mw__drv_next(&c->drv, s, msg, cap, mw__stream_pending(c->conn.stream) > 0);
    uint64_t dl = mw__deadline_in(NULL, c->o.sync.timeout_ns);
    while (r == MW_EAGAIN && (r = mw__clt_wait_stream(c, MW_WANT_READ, dl)) == 0)
        r = mw__drv_recv(&c->drv, s, msg, cap);
    return r;
}

static int recv_one(mw_clt_t *c, const mw_schema_t **s, void *msg, size_t cap) {
    if (!c->have_conn) return MW_ECLOSED;
    if (c->o.mode == MW_MODE_EVENT) return MW_ESTATE; /* on_msg delivers */
    if (c->sess) return mw__clt_sess_recv(c, s, msg, cap);
    recv_flush(c);
    int r = c->poll_wait ? recv_poll_wait(c, s, msg, cap) : mw__clt_read(c, s, msg, cap);
    if (r < 0 && r != MW_EAGAIN && r != MW_ETIMEDOUT) c->open = false;
    r = blocking_result(c, r);
    if (r == MW_ETIMEDOUT) /* not a failure of the connection, but say what happened */
        mw__err_set(&c->err, r, "recv: no message within timeout_ns (%lld ms)", (long long)(c->o.sync.timeout_ns / MW_NS_PER_MS));
    return r;
}

int mw_clt_recv(mw_clt_t *c, const mw_schema_t **s, void *msg, size_t cap) { return recv_one(c, s, msg, cap); }

int mw_clt_recv_busywait_timeout(mw_clt_t *c, const mw_schema_t **s, void *msg, size_t cap,
                                 int64_t timeout_ns) {
    uint64_t dl = mw__deadline_in(NULL, timeout_ns);
    int r;
    unsigned spins = 0;
    while ((r = mw_clt_recv(c, s, msg, cap)) == MW_EAGAIN) {
        /* Busy spin: the clock every 64th empty poll (a clock read in every
         * one delays noticing the message); idle strategies that sleep check
         * it every time, or they would overshoot the deadline. */
        if ((c->rx_idle.kind != MW_IDLE_BUSY || (++spins & 63) == 0) && mw__deadline_passed(NULL, dl))
            return MW_ETIMEDOUT;
        mw_idle(&c->rx_idle, 0);
    }
    mw_idle_reset(&c->rx_idle);
    return r;
}

/* ---- split ---------------------------------------------------------------- */

mw_clt_sender_t *mw_clt_sender(mw_clt_t *c) {
    c->split = true;
    return (mw_clt_sender_t *)c;
}
mw_clt_receiver_t *mw_clt_receiver(mw_clt_t *c) {
    c->split = true;
    return (mw_clt_receiver_t *)c;
}

int mw_clt_sender_send(mw_clt_sender_t *tx, const mw_schema_t *s, const void *msg) {
    return mw_clt_send(&tx->c, s, msg);
}

int mw_clt_sender_send_busywait_timeout(mw_clt_sender_t *tx, const mw_schema_t *s, const void *msg,
                                        int64_t timeout_ns) {
    return mw_clt_send_busywait_timeout(&tx->c, s, msg, timeout_ns);
}

int mw_clt_receiver_recv(mw_clt_receiver_t *rx, const mw_schema_t **s, void *msg, size_t cap) {
    return mw_clt_recv(&rx->c, s, msg, cap);
}

int mw_clt_receiver_recv_busywait_timeout(mw_clt_receiver_t *rx, const mw_schema_t **s, void *msg,
                                          size_t cap, int64_t timeout_ns) {
    return mw_clt_recv_busywait_timeout(&rx->c, s, msg, cap, timeout_ns);
}

/* ---- state and lifetime --------------------------------------------------- */

int mw_clt_set_serdes(mw_clt_t *c, int dirs, const char *serdes) {
    if (!c->have_conn) return MW_ECLOSED;
    int r = mw__conn_set_serdes(&c->conn, dirs, serdes, MW_FRAME_AUTO);
    if (r == 0 && c->sess && (dirs & MW_DIR_TX)) mw__sess_set_wire(c->sess, serdes); /* trial encodes */
    return r;
}

mw_mode_t mw_clt_mode(const mw_clt_t *c) { return c->o.mode; }
mw_clt_state_t mw_clt_state(const mw_clt_t *c) { return c->state; }
uint64_t mw_clt_connects(const mw_clt_t *c) { return c->connects ? c->connects : c->have_conn; }
uint64_t mw_clt_rx_time_ns(const mw_clt_t *c) { return c->have_conn ? c->conn.rx_ts_ns : 0; }

const char *mw_clt_state_name(mw_clt_state_t st) {
    static const char *const n[] = {"resolving", "connecting", "handshaking", "open", "backoff", "closed"};
    return (unsigned)st <= MW_CLT_CLOSED ? n[st] : "?";
}

void mw_clt_stats(const mw_clt_t *c, mw_conn_stats_t *st) {
    if (c->have_conn) mw__conn_stats(&c->conn, st);
    else memset(st, 0, sizeof *st);
}

const char *mw_clt_last_error(const mw_clt_t *c) {
    const char *e = c->have_conn ? mw__conn_last_error(&c->conn) : "";
    return *e ? e : mw_err_text(&c->err);
}

int mw_clt_local_name(const mw_clt_t *c, char *buf, size_t cap) {
    return c->have_conn ? mw__tcp_local_name(c->conn.stream, buf, cap) : MW_ECLOSED;
}

bool mw_clt_is_open(const mw_clt_t *c) { return c->open; }

/* How long a close may linger: opts.linger_ns, or the mode's default. */
static int64_t linger_of(const mw_clt_t *c) {
    if (c->o.linger_ns >= 0) return c->o.linger_ns;
    return c->o.mode == MW_MODE_EVENT ? 0 : MW_CLT_SYNC_LINGER_NS;
}

/* Spin and blocking: the driver's graceful close, run here on the private io
 * until it ends (every accepted byte written, FIN, the peer's EOF) or
 * linger_ns passes; the return is the signal. */
static void sync_close(mw_clt_t *c, bool may_linger) {
    c->open = false;
    c->state = MW_CLT_CLOSED;
    if (!mw__drv_attached(&c->drv)) return; /* closed before */
    mw_stream_t *st = c->conn.stream;
    if (c->blocking_sock) { /* the linger waits in the io, not in the socket */
        mw__tcp_set_timeouts(st, 0, 0);
        mw__tcp_set_blocking(st, false);
        c->blocking_sock = false;
    }
    int64_t linger = may_linger ? linger_of(c) : 0;
    if (linger > 0 && !c->drv.src.added && mw_io_add(c->sio, &c->drv.src) < 0) linger = 0; /* cannot wait */
    c->drv_cfg.linger_ns = linger > 0 ? linger : 0;
    if (linger <= 0 && !c->conn.tx.failed) (void)mw__conn_flush(&c->conn); /* what the socket takes now */
    mw__drv_close(&c->drv, MW_ESTATE, linger > 0);
    while (mw__drv_attached(&c->drv) && mw_io_poll(c->sio, -1) >= 0) {} /* bounded by the linger timer */
    int result = c->drv.end_result;
    mw__drv_stop(&c->drv); /* (only if the io failed) */
    mw__stream_close(st);
    if (mw__clt_closed(c, result)) mw_clt_free(c); /* freed inside on_closed */
}

void mw_clt_close(mw_clt_t *c) {
    if (!c) return;
    if (c->o.mode == MW_MODE_EVENT) {
        mw__clt_ep_stop(c);
        return;
    }
    sync_close(c, true);
}

void mw_clt_free(mw_clt_t *c) {
    if (!c) return;
    if (c->in_cb) { /* inside its own callback: done when the callback returns */
        c->free_pending = true;
        return;
    }
    if (c->o.mode == MW_MODE_EVENT) {
        mw__clt_ep_free(c);
        return;
    }
    c->freeing = true; /* no on_closed */
    sync_close(c, false); /* free never lingers, in any mode: close first for that */
    mw__drv_stop(&c->drv);
    mw__clt_release(c);
}
