/* svc.c - the service: listener, connection pool, three run modes. */
#include "mw_svc.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct worker worker_t;

typedef struct slot {
    mw_conn_t conn;
    mw_sel_src_t src;
    mw_svc_t *svc;
    worker_t *w;              /* event mode: the owning worker */
    pthread_mutex_t mu;       /* event mode: lifetime vs other threads' sends */
    _Atomic uint32_t gen;     /* generation of the current (or last) connection */
    atomic_bool used;
    atomic_bool arm_posted;   /* event mode: a write-arm request is queued */
    bool eof;                 /* peer closed; buffered messages still to deliver */
    bool held;                /* spin/blocking: TLS/WebSocket may hold input the socket no longer shows */
    bool in_cb, close_pending, closing;
    int close_reason;
    uint32_t idx;
    bool handshaking;         /* TLS/WebSocket handshake not finished yet */
    uint64_t last_rx_ns;      /* idle timeout only */
    mw_io_timer_t t_hs, t_idle, t_more;
    mw_err_t err;             /* why it closed; kept for on_close / conn_error */
} slot_t;

struct worker {
    mw_io_t *io;
    mw_svc_t *svc;
    bool own_io;
};

struct mw_svc {
    mw_svc_opts_t o;
    const mw_protocol_t *proto;
    mw_listener_t *lis;
    mw_sel_src_t lis_src;
    mw_transport_t tr;
    bool have_tr;
    mw_io_t *io;               /* spin/blocking: own io; event: workers[0].io */
    worker_t *workers;
    uint32_t nworkers, next_worker;
    slot_t *slots;
    uint32_t cap;
    uint32_t *active;          /* spin/blocking: open slots, for fair recv */
    uint32_t nactive, rr;
    slot_t *solo;              /* blocking mode, one connection: read it blocking */
    uint32_t solo_tick, spin_tick;
    uint64_t solo_polled_ns, polled_ns;
    pthread_mutex_t lock;      /* slot allocation (event mode: accept vs close) */
    _Atomic uint64_t accepted, refused_full, closed, closed_bad_input, msgs_in, msgs_out, bytes_in, bytes_out;
    atomic_uint nconns;
    bool threads_started;
    bool close_started; /* mw_svc_close ran (idempotence; closing thread only) */
    atomic_uint refs;   /* 1 for the owner + 1 per cross-thread request queued */
    atomic_bool dead;   /* mw_svc_free ran: queued requests find nothing */
    bool closed_all;    /* workers stopped, tearing down: no more callbacks */
    mw_err_t err;
};

static inline mw_conn_id_t make_id(const slot_t *sl) {
    return ((uint64_t)atomic_load(&sl->gen) << 32) | sl->idx;
}

void mw_svc_opts_init(mw_svc_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->mode = MW_MODE_SPIN;
    mw_conn_opts_init(&o->conn);
    mw_tcp_opts_init(&o->tcp);
    o->max_connections = 64;
    o->timeout_ns = -1;
    mw_idle_init_busy(&o->idle);
    o->workers = 1;
    mw_transport_opts_init(&o->tr);
    o->handshake_timeout_ns = 10 * MW_NS_PER_S;
}

/* Slot for an id, or NULL when the id is stale or unknown. */
static slot_t *lookup(const mw_svc_t *s, mw_conn_id_t id) {
    uint32_t idx = (uint32_t)id;
    if (idx >= s->cap) return NULL;
    slot_t *sl = &s->slots[idx];
    if (!atomic_load(&sl->used) || atomic_load(&sl->gen) != (uint32_t)(id >> 32)) return NULL;
    return sl;
}

static mw_io_t *slot_io(const mw_svc_t *s, const slot_t *sl) { return sl->w ? sl->w->io : s->io; }

/* Readiness a connection waits for: always input, output while bytes are
 * pending, and whatever its stream needs (TLS may need writability to read). */
static void rearm(mw_svc_t *s, slot_t *sl) {
    if (!sl->src.added) return;
    int want = MW_WANT_READ | mw_stream_want(sl->conn.stream);
    if (mw_conn_tx_pending(&sl->conn)) want |= MW_WANT_WRITE;
    if (want != sl->src.events) mw_io_mod(slot_io(s, sl), &sl->src, want);
}

/* Cross-thread requests carry the id, not the slot, so a connection closed
 * in the meantime is simply not found. They allocate: only used on the slow
 * paths (a full socket, a close from another thread). */
typedef struct id_req { mw_svc_t *s; mw_conn_id_t id; } id_req_t;

static void svc_release(mw_svc_t *s);

static int post_req(mw_io_t *io, void (*fn)(void *), mw_svc_t *s, mw_conn_id_t id) {
    id_req_t *q = malloc(sizeof *q);
    if (!q) return MW_ENOMEM;
    *q = (id_req_t){s, id};
    atomic_fetch_add(&s->refs, 1); /* the Svc outlives the request (a caller's io may run it late) */
    int r = mw_io_post(io, fn, q);
    if (r < 0) {
        atomic_fetch_sub(&s->refs, 1);
        free(q);
    }
    return r;
}

/* The slot a queued request names, or NULL if the Svc or the connection is gone. */
static slot_t *req_slot(const id_req_t *q) {
    return atomic_load(&q->s->dead) ? NULL : lookup(q->s, q->id);
}

static void req_done(id_req_t *q) {
    mw_svc_t *s = q->s;
    free(q);
    if (atomic_fetch_sub(&s->refs, 1) == 1) svc_release(s);
}

/* ---- closing -------------------------------------------------------------- */

static void active_remove(mw_svc_t *s, uint32_t idx) {
    for (uint32_t i = 0; i < s->nactive; i++) {
        if (s->active[i] != idx) continue;
        s->active[i] = s->active[--s->nactive];
        return;
    }
}

/* ---- blocking mode with one connection ------------------------------------
 * A blocking Svc serving a single client waits in a blocking read on that
 * socket (bounded by SOLO_WAIT_NS), one syscall per message like a plain
 * blocking server, instead of epoll_wait and then read (writes still never
 * wait: send_to keeps returning MW_EAGAIN on a full socket). The listener and the
 * timers are polled every SOLO_POLL_EVERY messages and whenever the read times
 * out, so a second client waits at most that long to be accepted; with two or
 * more connections the Svc goes back to epoll. */
#define SOLO_WAIT_NS (10 * MW_NS_PER_MS)
#define SOLO_POLL_EVERY 64u

static void solo_enter(mw_svc_t *s, slot_t *sl) {
    if (mw_tcp_set_blocking(sl->conn.stream, true) < 0) return; /* no TCP underneath: stay on epoll */
    int64_t wait = s->o.timeout_ns > 0 && s->o.timeout_ns < SOLO_WAIT_NS ? s->o.timeout_ns : SOLO_WAIT_NS;
    mw_tcp_set_timeouts(sl->conn.stream, wait, 0);
    mw_tcp_set_write_nowait(sl->conn.stream, true); /* sends keep their MW_EAGAIN semantics */
    if (sl->src.added) mw_io_del(s->io, &sl->src);
    s->solo = sl;
}

static void solo_leave(mw_svc_t *s, slot_t *sl) {
    s->solo = NULL;
    mw_tcp_set_timeouts(sl->conn.stream, 0, 0);
    mw_tcp_set_write_nowait(sl->conn.stream, false);
    mw_tcp_set_blocking(sl->conn.stream, false);
    if (!sl->eof && !sl->src.added) { /* with what it needs now: replies may be queued */
        sl->src.events = MW_WANT_READ | mw_stream_want(sl->conn.stream) |
                         (mw_conn_tx_pending(&sl->conn) ? MW_WANT_WRITE : 0);
        mw_io_add(s->io, &sl->src);
    }
}

static void solo_update(mw_svc_t *s) {
    if (s->o.mode != MW_MODE_BLOCKING) return;
    slot_t *want = s->nactive == 1 ? &s->slots[s->active[0]] : NULL;
    if (want && want->eof) want = NULL;
    if (want == s->solo) return;
    if (s->solo) solo_leave(s, s->solo);
    if (want) solo_enter(s, want);
}

/* What the peer sent was rejected (as opposed to leaving, timing out, or
 * being closed by us). */
static bool is_bad_input(int code) {
    switch (code) {
    case MW_EPROTO: case MW_ETOOBIG: case MW_ETAG: case MW_EFIELD: case MW_EMISSING:
    case MW_ETYPE: case MW_ERANGE: case MW_ETRAILING: case MW_EUTF8: case MW_ETLS:
        return true;
    default:
        return false;
    }
}

/* Closes a slot on its owning thread. reason: MW_ECLOSED (peer), MW_ESTATE
 * (closed by us) or the error. The connection's last error is kept. */
static void close_slot(mw_svc_t *s, slot_t *sl, int reason) {
    if (sl->closing) return; /* e.g. close_conn called from its own on_close */
    if (sl->in_cb) {
        sl->close_pending = true;
        if (!sl->close_reason) sl->close_reason = reason;
        return;
    }
    mw_io_t *io = slot_io(s, sl);
    if (sl->src.added) mw_io_del(io, &sl->src);
    mw_io_timer_stop(io, &sl->t_hs);
    mw_io_timer_stop(io, &sl->t_idle);
    mw_io_timer_stop(io, &sl->t_more);
    /* Best effort: the WebSocket close frame with the reason's code, and any
     * queued close or HTTP error reply, go out before the socket closes. */
    if (sl->conn.stream) {
        mw_transport_close(sl->conn.stream, reason, mw_conn_last_error(&sl->conn), s->closed_all);
        if (mw_stream_want(sl->conn.stream) & MW_WANT_WRITE) mw_stream_writev(sl->conn.stream, NULL, 0);
    }
    sl->closing = true;
    mw_conn_id_t id = make_id(sl);
    const char *why = mw_conn_last_error(&sl->conn);
    if (*why) mw_err_set(&sl->err, reason, "%s", why);
    else mw_err_set(&sl->err, reason, "%s", reason == MW_ESTATE ? "closed by the service" : mw_strerror(reason));
    if (is_bad_input(reason)) {
        atomic_fetch_add(&s->closed_bad_input, 1);
        mw__logf(MW_LOG_WARN, "svc: closing connection %u: %s", sl->idx, sl->err.text);
    }
    if (s->o.on_close && !s->closed_all) s->o.on_close(s, id, reason, s->o.ud);
    mw_conn_stats_t st;
    mw_conn_stats(&sl->conn, &st);
    atomic_fetch_add(&s->msgs_in, st.msgs_in);
    atomic_fetch_add(&s->msgs_out, st.msgs_out);
    atomic_fetch_add(&s->bytes_in, st.bytes_in);
    atomic_fetch_add(&s->bytes_out, st.bytes_out);
    if (s->solo == sl) s->solo = NULL; /* closing: no need to restore the socket */
    if (s->o.mode != MW_MODE_EVENT) active_remove(s, sl->idx);
    pthread_mutex_lock(&sl->mu);
    mw_conn_fini(&sl->conn);
    atomic_fetch_add(&sl->gen, 1);
    /* Reset before the slot is free: the acceptor may take it at once. */
    sl->eof = sl->close_pending = sl->closing = sl->held = false;
    sl->close_reason = 0;
    atomic_store(&sl->used, false);
    pthread_mutex_unlock(&sl->mu);
    atomic_fetch_add(&s->closed, 1);
    atomic_fetch_sub(&s->nconns, 1);
    if (!s->closed_all) solo_update(s);
}

/* After a read: notes input for the idle timeout and the end of handshakes. */
static void after_fill(mw_svc_t *s, slot_t *sl, ssize_t n) {
    if (n > 0 && s->o.idle_timeout_ns > 0) sl->last_rx_ns = mw_io_now(slot_io(s, sl));
    if (sl->handshaking && mw_stream_ctl(sl->conn.stream, MW_STREAM_CTL_READY, 0) == 1) {
        sl->handshaking = false;
        mw_io_timer_stop(slot_io(s, sl), &sl->t_hs);
    }
}

static void on_hs_timeout(mw_io_timer_t *t, void *ud) {
    (void)t;
    slot_t *sl = ud;
    mw_err_set(&sl->conn.rx.err, MW_ETIMEDOUT, "handshake not completed within %lld ms",
               (long long)(sl->svc->o.handshake_timeout_ns / MW_NS_PER_MS));
    close_slot(sl->svc, sl, MW_ETIMEDOUT);
}

static void on_idle_timeout(mw_io_timer_t *t, void *ud) {
    slot_t *sl = ud;
    mw_svc_t *s = sl->svc;
    uint64_t due = sl->last_rx_ns + (uint64_t)s->o.idle_timeout_ns;
    if (mw_io_now(slot_io(s, sl)) < due) {
        mw_io_timer_at(slot_io(s, sl), t, due);
        return;
    }
    mw_err_set(&sl->conn.rx.err, MW_ETIMEDOUT, "nothing received for %lld ms",
               (long long)(s->o.idle_timeout_ns / MW_NS_PER_MS));
    close_slot(s, sl, MW_ETIMEDOUT);
}

static void on_more(mw_io_timer_t *t, void *ud);

/* Arms the per-connection timers on the owning io's thread. */
static void arm_timers(mw_svc_t *s, slot_t *sl) {
    mw_io_t *io = slot_io(s, sl);
    mw_io_timer_init(&sl->t_hs, on_hs_timeout, sl);
    mw_io_timer_init(&sl->t_idle, on_idle_timeout, sl);
    mw_io_timer_init(&sl->t_more, on_more, sl);
    sl->handshaking = mw_stream_ctl(sl->conn.stream, MW_STREAM_CTL_READY, 0) != 1;
    if (sl->handshaking && s->o.handshake_timeout_ns > 0) mw_io_timer_after(io, &sl->t_hs, s->o.handshake_timeout_ns);
    sl->last_rx_ns = mw_io_now(io);
    if (s->o.idle_timeout_ns > 0) mw_io_timer_after(io, &sl->t_idle, s->o.idle_timeout_ns);
}

/* ---- event mode connection handling -------------------------------------- */

static bool deliver(void *ud, mw_conn_t *c, const mw_schema_t *sch, const void *msg) {
    (void)c;
    slot_t *sl = ud;
    mw_svc_t *s = sl->svc;
    if (s->o.on_msg) s->o.on_msg(s, make_id(sl), sch, msg, s->o.ud);
    return !sl->close_pending;
}

/* Work: 1 when bytes came in, went out, or the connection ended. */
static int on_conn_event(mw_sel_src_t *src, int events) {
    slot_t *sl = src->ud;
    mw_svc_t *s = sl->svc;
    int r = 0;
    sl->in_cb = true;
    int w = 0;
    if (events & MW_WANT_WRITE) {
        w = mw_conn_flush(&sl->conn);
        if (w == MW_EAGAIN) w = 0;
    }
    /* Read even after a failed write (also on writability: a TLS read may
     * have waited for it): what the peer sent before it left is delivered,
     * and the read side says how it ended. */
    bool more = false;
    ssize_t n = mw_conn_pump(&sl->conn, deliver, sl, 16, &more);
    after_fill(s, sl, n);
    r = n < 0 ? (int)n : n == 0 ? w : 0;
    sl->in_cb = false;
    if (sl->close_pending) r = sl->close_reason ? sl->close_reason : MW_ESTATE;
    if (r < 0) {
        close_slot(s, sl, r);
        return 1;
    }
    rearm(s, sl);
    if (more) mw_io_timer_after(slot_io(s, sl), &sl->t_more, 0); /* input held inside TLS/WebSocket */
    return n != 0 || ((events & MW_WANT_WRITE) && w == 0);
}

static void on_more(mw_io_timer_t *t, void *ud) {
    (void)t;
    slot_t *sl = ud;
    if (atomic_load(&sl->used) && sl->src.added) on_conn_event(&sl->src, MW_WANT_READ);
}

static void adopt(void *ud) {
    slot_t *sl = ud;
    mw_svc_t *s = sl->svc;
    mw_sel_src_init(&sl->src, mw_stream_fd(sl->conn.stream), MW_WANT_READ, on_conn_event, sl);
    arm_timers(s, sl);
    int r = mw_io_add(sl->w->io, &sl->src);
    if (r < 0) {
        mw_err_set(&sl->conn.rx.err, r, "register with io: %s", mw_err_text(&mw_io_selector(sl->w->io)->err));
        close_slot(s, sl, r);
        return;
    }
    if (s->o.on_accept) {
        sl->in_cb = true;
        s->o.on_accept(s, make_id(sl), s->o.ud);
        sl->in_cb = false;
        if (sl->close_pending) close_slot(s, sl, sl->close_reason ? sl->close_reason : MW_ESTATE);
    }
}

/* A connection handed to another worker is named by id: if the Svc closed it
 * before the worker ran this, it is simply not found. */
static void adopt_posted(void *ud) {
    id_req_t *q = ud;
    slot_t *sl = q->s->closed_all ? NULL : req_slot(q);
    if (sl) adopt(sl);
    req_done(q);
}

/* ---- spin/blocking connection handling ------------------------------------ */

/* Closed or failed: stop polling; recv delivers what is buffered, then closes. */
static void mark_eof(slot_t *sl) {
    sl->eof = true;
    mw_io_del(sl->svc->io, &sl->src);
}

/* Work: 1 when bytes came in, went out, or the connection ended. */
static int on_conn_poll(mw_sel_src_t *src, int events) {
    slot_t *sl = src->ud;
    mw_svc_t *s = sl->svc;
    int work = (events & MW_WANT_WRITE) && mw_conn_flush(&sl->conn) == 0;
    if (sl->eof) return work;
    ssize_t n = mw_conn_fill(&sl->conn);
    /* TLS/WebSocket may hold input past a read: take it while there is room */
    for (int i = 0; n > 0 && sl->conn.stream->inner && i < 16; i++) {
        ssize_t m = mw_conn_fill(&sl->conn);
        if (m == MW_EAGAIN) break;
        n = m;
    }
    /* Stopped with the rx buffer full or the budget spent: what the decorator
     * holds shows on no socket, so scan must read it on the slot's turn. */
    sl->held = n > 0 && sl->conn.stream->inner;
    after_fill(s, sl, n);
    if (n >= 0 || n == MW_EAGAIN) {
        rearm(s, sl);
        return work || n > 0;
    }
    mark_eof(sl);
    return 1;
}

/* ---- accepting ------------------------------------------------------------ */

static slot_t *alloc_slot(mw_svc_t *s) {
    pthread_mutex_lock(&s->lock);
    slot_t *found = NULL;
    for (uint32_t i = 0; i < s->cap && !found; i++)
        if (!atomic_load(&s->slots[i].used)) found = &s->slots[i];
    if (found) atomic_store(&found->used, true);
    pthread_mutex_unlock(&s->lock);
    return found;
}

static void accept_one(mw_svc_t *s, mw_stream_t *st) {
    mw_err_t err;
    if (mw_transport_wrap(&s->tr, st, &st, &err) < 0) { /* st is gone */
        mw__logf(MW_LOG_WARN, "svc: cannot set up an accepted connection: %s", err.text);
        return;
    }
    slot_t *sl = alloc_slot(s);
    if (!sl) {
        atomic_fetch_add(&s->refused_full, 1);
        mw__logf(MW_LOG_WARN, "svc: refusing a client: max_connections %u reached", s->cap);
        mw_stream_free(st);
        return;
    }
    mw_conn_opts_t co = s->o.conn;
    if (s->o.mode == MW_MODE_EVENT) co.flags |= MW_CONN_TX_LOCK;
    pthread_mutex_lock(&sl->mu);
    int r = mw_conn_init(&sl->conn, st, s->proto, &co, &s->err);
    pthread_mutex_unlock(&sl->mu);
    if (r < 0) {
        atomic_store(&sl->used, false);
        return;
    }
    sl->conn.tx.hook = s->o.on_sent;
    sl->conn.rx.hook = s->o.on_recvd;
    sl->conn.tx.hook_ud = sl->conn.rx.hook_ud = s->o.hook_ud;
    sl->eof = sl->in_cb = sl->close_pending = false;
    sl->close_reason = 0;
    mw_err_clear(&sl->err);
    atomic_fetch_add(&s->accepted, 1);
    atomic_fetch_add(&s->nconns, 1);
    if (s->o.mode == MW_MODE_EVENT) {
        sl->w = &s->workers[s->next_worker++ % s->nworkers];
        if (sl->w == &s->workers[0]) adopt(sl);
        else if (post_req(sl->w->io, adopt_posted, s, make_id(sl)) < 0) close_slot(s, sl, MW_ENOMEM);
        return;
    }
    s->active[s->nactive++] = sl->idx;
    mw_sel_src_init(&sl->src, mw_stream_fd(st), MW_WANT_READ, on_conn_poll, sl);
    arm_timers(s, sl);
    if ((r = mw_io_add(s->io, &sl->src)) < 0) {
        close_slot(s, sl, r);
        return;
    }
    solo_update(s);
    if (s->o.on_accept) s->o.on_accept(s, make_id(sl), s->o.ud);
}

/* True if a client waits. Spin mode's direct selector calls the listener
 * blindly, and a failing accept4 is expensive on Linux (it allocates and
 * frees a socket): a zero-timeout poll() answers without allocating. */
static bool listener_ready(const mw_svc_t *s) {
    struct pollfd p = {mw_listener_fd(s->lis), POLLIN, 0};
    return poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
}

/* Work: the connections accepted. */
static int on_listener(mw_sel_src_t *src, int events) {
    (void)events;
    mw_svc_t *s = src->ud;
    if (s->o.mode == MW_MODE_SPIN && !listener_ready(s)) return 0;
    int i;
    for (i = 0; i < 16; i++) {
        mw_stream_t *st;
        int r = mw_listener_accept(s->lis, &st, &s->err);
        if (r < 0) break;
        accept_one(s, st);
    }
    return i;
}

/* ---- set-up --------------------------------------------------------------- */

static int setup_workers(mw_svc_t *s, mw_err_t *err) {
    if (s->o.workers == 0) {
        if (!s->o.io) return mw_err_set(err, MW_EINVAL, "event mode with workers = 0 needs opts.io");
        s->nworkers = 1;
        s->workers = calloc(1, sizeof *s->workers);
        if (!s->workers) return mw_err_set(err, MW_ENOMEM, "out of memory");
        s->workers[0] = (worker_t){s->o.io, s, false};
        return 0;
    }
    s->nworkers = s->o.workers;
    s->workers = calloc(s->nworkers, sizeof *s->workers);
    if (!s->workers) return mw_err_set(err, MW_ENOMEM, "out of memory");
    mw_io_opts_t io;
    mw_io_opts_init(&io);
    io.backend = s->o.backend ? s->o.backend : "epoll";
    for (uint32_t i = 0; i < s->nworkers; i++) {
        int r = mw_io_new(&s->workers[i].io, &io, err);
        if (r < 0) return r;
        s->workers[i].svc = s;
        s->workers[i].own_io = true;
    }
    return 0;
}

static int start_workers(mw_svc_t *s, mw_err_t *err) {
    for (uint32_t i = 0; i < s->nworkers; i++) {
        if (!s->workers[i].own_io) continue;
        int r = mw_io_start(s->workers[i].io, NULL);
        if (r < 0) return mw_err_set(err, r, "cannot start worker thread %u", i);
        s->threads_started = true;
    }
    return 0;
}

static int setup(mw_svc_t *s, const mw_url_t *u, mw_err_t *err) {
    s->slots = calloc(s->cap, sizeof *s->slots);
    s->active = calloc(s->cap, sizeof *s->active);
    if (!s->slots || !s->active) return mw_err_set(err, MW_ENOMEM, "out of memory");
    for (uint32_t i = 0; i < s->cap; i++) {
        s->slots[i].idx = i;
        s->slots[i].svc = s;
        atomic_init(&s->slots[i].gen, 1);
        pthread_mutex_init(&s->slots[i].mu, NULL);
    }
    mw_tcp_opts_t tcp = s->o.tcp;
    tcp.blocking = false; /* blocking mode waits in epoll, then reads without blocking */
    int r = mw_tcp_listen(&s->lis, u->host, u->port, &tcp, err);
    if (r < 0) return r;
    if (s->o.mode == MW_MODE_EVENT) {
        if ((r = setup_workers(s, err)) < 0) return r;
        s->io = s->workers[0].io;
    } else {
        mw_io_opts_t io;
        mw_io_opts_init(&io);
        io.backend = s->o.mode == MW_MODE_SPIN ? "direct" : "epoll";
        if ((r = mw_io_new(&s->io, &io, err)) < 0) return r;
    }
    mw_sel_src_init(&s->lis_src, mw_listener_fd(s->lis), MW_WANT_READ, on_listener, s);
    if ((r = mw_io_add(s->io, &s->lis_src)) < 0)
        return mw_err_set(err, r, "register listener: %s", mw_err_text(&mw_io_selector(s->io)->err));
    return s->o.mode == MW_MODE_EVENT ? start_workers(s, err) : 0;
}

int mw_svc_listen(mw_svc_t **out, const char *url, const mw_protocol_t *p,
                  const mw_svc_opts_t *o, mw_err_t *err) {
    mw_svc_opts_t def;
    if (!o) {
        mw_svc_opts_init(&def);
        o = &def;
    }
    *out = NULL;
    mw_url_t u;
    int r = mw_url_parse(url, &u, err);
    if (r < 0) return r;
    mw_svc_t *s = calloc(1, sizeof *s);
    if (!s) return mw_err_set(err, MW_ENOMEM, "out of memory");
    s->o = *o;
    mw_transport_opts_t tr = o->tr;
    if (tr.ws.max_msg > o->conn.max_msg) tr.ws.max_msg = o->conn.max_msg; /* one limit, not two */
    if ((r = mw_transport_init(&s->tr, &u, true, &tr, err)) < 0) {
        free(s);
        return r;
    }
    s->have_tr = true;
    s->proto = p;
    s->cap = o->max_connections ? o->max_connections : 64;
    atomic_init(&s->refs, 1);
    pthread_mutex_init(&s->lock, NULL);
    if ((r = setup(s, &u, err)) < 0) {
        mw_svc_free(s);
        return r;
    }
    *out = s;
    return 0;
}

int mw_svc_port(const mw_svc_t *s) { return mw_listener_port(s->lis); }

/* ---- spin/blocking receive ------------------------------------------------ */

int mw_svc_poll(mw_svc_t *s, int64_t timeout_ns) {
    if (s->o.mode == MW_MODE_EVENT) return MW_ESTATE;
    int work = 0;
    if (s->solo && mw_conn_tx_pending(&s->solo->conn)) { /* not on epoll: flush it here */
        mw_conn_flush(&s->solo->conn);
        work++;
    }
    int r = mw_io_poll(s->io, work ? 0 : timeout_ns);
    return r < 0 ? r : r + work;
}

/* One round-robin pass over the open connections: the first buffered message
 * wins, and the next pass starts after its connection. */
static int scan(mw_svc_t *s, mw_conn_id_t *id, const mw_schema_t **sch, void *msg, size_t cap) {
    uint32_t n = s->nactive;
    uint32_t pos = s->rr < n ? s->rr : 0;
    for (uint32_t k = 0; k < n; k++) {
        slot_t *sl = &s->slots[s->active[pos]];
        int r = mw_conn_next(&sl->conn, sch, msg, cap);
        if (r == MW_EAGAIN && (sl->held || s->o.mode == MW_MODE_SPIN) && !sl->eof) {
            /* Spin: its turn and nothing buffered, read its socket now (one
             * recv per connection per pass, as a busy-poll loop would).
             * Blocking: epoll says which sockets to read, except for input
             * held inside TLS/WebSocket, which no readiness event announces. */
            ssize_t got = mw_conn_fill(&sl->conn);
            sl->held = got > 0 && sl->conn.stream->inner;
            after_fill(s, sl, got);
            if (got != MW_EAGAIN) {
                if (got < 0) mark_eof(sl);
                r = mw_conn_next(&sl->conn, sch, msg, cap); /* a message, or how it ended */
            }
        }
        if (r == 0) {
            s->rr = pos + 1;
            *id = make_id(sl);
            return 0;
        }
        if (r != MW_EAGAIN) {
            /* After a read error or the peer's close, next reports how it
             * ended (MW_ECLOSED, MW_ETRUNC, the error) once the messages
             * before it are out. The list shrinks: start the pass again. */
            close_slot(s, sl, r);
            return scan(s, id, sch, msg, cap);
        }
        if (++pos == n) pos = 0;
    }
    return MW_EAGAIN;
}

/* One blocking read on the solo connection (bounded by its socket timeout);
 * the listener and timers now and then, and always after an idle wait. */
static void solo_wait(mw_svc_t *s) {
    slot_t *sl = s->solo;
    uint64_t now = mw_now_ns();
    if ((++s->solo_tick & (SOLO_POLL_EVERY - 1)) == 0 || now - s->solo_polled_ns >= (uint64_t)SOLO_WAIT_NS) {
        s->solo_polled_ns = now;
        mw_io_poll(s->io, 0);
        if (s->solo != sl) return; /* a second client arrived: epoll from now on */
    }
    if (mw_conn_tx_pending(&sl->conn)) mw_conn_flush(&sl->conn); /* after a send timeout */
    ssize_t n = mw_conn_fill(&sl->conn);
    after_fill(s, sl, n);
    if (n == MW_EAGAIN) mw_io_poll(s->io, 0);
    else if (n < 0) sl->eof = true; /* scan delivers what is left, then closes it */
}

#define BUSY_POLL_NS MW_NS_PER_MS

static bool poll_due(mw_svc_t *s) {
    if (s->nactive == 0) return true;
    if ((++s->spin_tick & (SOLO_POLL_EVERY - 1)) != 0) return false;
    uint64_t now = mw_now_ns();
    if (now - s->polled_ns < (uint64_t)BUSY_POLL_NS) return false;
    s->polled_ns = now;
    return true;
}

int mw_svc_recv(mw_svc_t *s, mw_conn_id_t *id, const mw_schema_t **sch, void *msg, size_t cap) {
    if (s->o.mode == MW_MODE_EVENT) return MW_ESTATE;
    /* The listener, the timers and write readiness get a look at least every
     * millisecond even while messages keep coming (a busy peer must not keep
     * new clients out): the clock is read every 64th call, the io polled
     * only when a millisecond has passed. */
    if (!s->solo && poll_due(s)) mw_io_poll(s->io, 0);
    int r = scan(s, id, sch, msg, cap);
    if (r != MW_EAGAIN || s->o.mode == MW_MODE_SPIN) return r;
    uint64_t dl = mw_deadline_in(NULL, s->o.timeout_ns);
    for (;;) { /* blocking: wait at least once, even with a zero timeout */
        if (s->solo) solo_wait(s);
        else mw_io_poll(s->io, mw_deadline_left(NULL, dl));
        if ((r = scan(s, id, sch, msg, cap)) != MW_EAGAIN) return r;
        if (mw_deadline_passed(NULL, dl)) return MW_ETIMEDOUT;
    }
}

int mw_svc_recv_busywait_timeout(mw_svc_t *s, mw_conn_id_t *id, const mw_schema_t **sch, void *msg,
                                 size_t cap, int64_t timeout_ns) {
    uint64_t dl = mw_deadline_in(NULL, timeout_ns);
    mw_idle_t idle = s->o.idle;
    int r;
    while ((r = mw_svc_recv(s, id, sch, msg, cap)) == MW_EAGAIN || r == MW_ETIMEDOUT) {
        if (mw_deadline_passed(NULL, dl)) return MW_ETIMEDOUT;
        mw_idle(&idle, 0);
    }
    return r;
}

/* ---- sending -------------------------------------------------------------- */

static void arm_write_posted(void *ud) {
    id_req_t *q = ud;
    slot_t *sl = req_slot(q);
    if (sl) atomic_store(&sl->arm_posted, false);
    if (sl) rearm(q->s, sl);
    req_done(q);
}

static void close_posted(void *ud) {
    id_req_t *q = ud;
    slot_t *sl = req_slot(q);
    if (sl) close_slot(q->s, sl, MW_ESTATE);
    req_done(q);
}

static int send_slot(mw_svc_t *s, slot_t *sl, const mw_schema_t *sch, const void *msg) {
    int r = mw_conn_send(&sl->conn, sch, msg);
    if (r == 0 && mw_conn_tx_pending(&sl->conn)) {
        if (s->o.mode != MW_MODE_EVENT || mw_io_in_thread(sl->w->io)) rearm(s, sl);
        else if (!atomic_exchange(&sl->arm_posted, true)) /* one request in flight is enough */
            post_req(sl->w->io, arm_write_posted, s, make_id(sl));
    }
    return r;
}

int mw_svc_send_to(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg) {
    slot_t *sl = lookup(s, id);
    if (!sl) return MW_ECLOSED;
    if (s->o.mode != MW_MODE_EVENT) {
        /* A failed send does not close the slot: what the peer sent before
         * it left is still to be delivered; the read side ends it. */
        return send_slot(s, sl, sch, msg);
    }
    pthread_mutex_lock(&sl->mu);
    int r = lookup(s, id) ? send_slot(s, sl, sch, msg) : MW_ECLOSED;
    pthread_mutex_unlock(&sl->mu);
    return r;
}

int mw_svc_broadcast(mw_svc_t *s, const mw_schema_t *sch, const void *msg) {
    int n = 0;
    for (uint32_t i = 0; i < s->cap; i++) {
        slot_t *sl = &s->slots[i];
        if (atomic_load(&sl->used) && mw_svc_send_to(s, make_id(sl), sch, msg) == 0) n++;
    }
    return n;
}

int mw_svc_close_conn(mw_svc_t *s, mw_conn_id_t id) {
    slot_t *sl = lookup(s, id);
    if (!sl) return MW_ECLOSED;
    if (s->o.mode != MW_MODE_EVENT || mw_io_in_thread(sl->w->io)) {
        close_slot(s, sl, MW_ESTATE);
        return 0;
    }
    return post_req(sl->w->io, close_posted, s, id);
}

int mw_svc_set_serdes(mw_svc_t *s, mw_conn_id_t id, int dirs, const char *serdes) {
    slot_t *sl = lookup(s, id);
    if (!sl) return MW_ECLOSED;
    return mw_conn_set_serdes(&sl->conn, dirs, serdes, MW_FRAME_AUTO);
}

/* ---- state and lifetime --------------------------------------------------- */

const char *mw_svc_conn_error(const mw_svc_t *s, mw_conn_id_t id) {
    uint32_t idx = (uint32_t)id;
    if (idx >= s->cap) return "";
    const slot_t *sl = &s->slots[idx];
    if (atomic_load(&sl->gen) != (uint32_t)(id >> 32)) return "";
    if (sl->err.code) return mw_err_text(&sl->err);
    return atomic_load(&sl->used) ? mw_conn_last_error(&sl->conn) : "";
}

const char *mw_svc_last_error(const mw_svc_t *s) { return mw_err_text(&s->err); }

void mw_svc_stats(const mw_svc_t *s, mw_svc_stats_t *st) {
    st->accepted = atomic_load(&s->accepted);
    st->refused_full = atomic_load(&s->refused_full);
    st->closed = atomic_load(&s->closed);
    st->closed_bad_input = atomic_load(&s->closed_bad_input);
    st->msgs_in = atomic_load(&s->msgs_in);
    st->msgs_out = atomic_load(&s->msgs_out);
    st->bytes_in = atomic_load(&s->bytes_in);
    st->bytes_out = atomic_load(&s->bytes_out);
    st->connections = atomic_load(&s->nconns);
    /* add the open connections' counts (racy in event mode; for display) */
    for (uint32_t i = 0; i < s->cap; i++) {
        if (!atomic_load(&s->slots[i].used)) continue;
        mw_conn_stats_t c;
        mw_conn_stats(&s->slots[i].conn, &c);
        st->msgs_in += c.msgs_in;
        st->msgs_out += c.msgs_out;
        st->bytes_in += c.bytes_in;
        st->bytes_out += c.bytes_out;
    }
}

int mw_svc_conn_stats(const mw_svc_t *s, mw_conn_id_t id, mw_conn_stats_t *st) {
    slot_t *sl = lookup(s, id);
    if (!sl) return MW_ECLOSED;
    mw_conn_stats(&sl->conn, st);
    return 0;
}

uint32_t mw_svc_conn_count(const mw_svc_t *s) { return atomic_load(&s->nconns); }

void mw_svc_close(mw_svc_t *s) {
    if (!s || s->close_started) return;
    s->close_started = true;
    for (uint32_t i = 0; i < s->nworkers; i++)
        if (s->workers[i].own_io) mw_io_stop(s->workers[i].io);
    s->closed_all = true; /* only now: the workers read it until they stop */
    if (s->io && s->lis_src.added) mw_io_del(s->io, &s->lis_src);
    mw_listener_free(s->lis);
    s->lis = NULL;
    for (uint32_t i = 0; s->slots && i < s->cap; i++) {
        slot_t *sl = &s->slots[i];
        if (!atomic_load(&sl->used)) continue;
        sl->in_cb = false;
        close_slot(s, sl, MW_ESTATE);
    }
}

void mw_svc_free(mw_svc_t *s) {
    if (!s) return;
    mw_svc_close(s);
    atomic_store(&s->dead, true);
    /* Our own ios run what is still queued on them as they go (finding
     * nothing, and dropping their references); a caller's io may run its
     * requests later, so the memory lives until the last reference. */
    for (uint32_t i = 0; i < s->nworkers; i++)
        if (s->workers[i].own_io) mw_io_free(s->workers[i].io);
    if (s->o.mode != MW_MODE_EVENT) mw_io_free(s->io);
    s->io = NULL;
    if (atomic_fetch_sub(&s->refs, 1) == 1) svc_release(s);
}

/* The last reference: the owner's (mw_svc_free) or a queued request's. */
static void svc_release(mw_svc_t *s) {
    for (uint32_t i = 0; s->slots && i < s->cap; i++) pthread_mutex_destroy(&s->slots[i].mu);
    pthread_mutex_destroy(&s->lock);
    if (s->have_tr) mw_transport_fini(&s->tr);
    free(s->workers);
    free(s->slots);
    free(s->active);
    free(s);
}
