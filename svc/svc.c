/* svc.c - the service: listener, connection pool, three run modes; its
 * lifetime (references, cross-thread requests, the last one's release). */
#include "svc_impl.h"
#include "clock_impl.h"
#include "conn_impl.h"
#include "err_impl.h"
#include "io_impl.h"
#include "tcp_impl.h"
#include "transport_impl.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

void mw_svc_opts_init(mw_svc_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->mode = MW_MODE_SPIN;
    mw__conn_opts_init(&o->conn);
    mw__tcp_opts_init(&o->tcp);
    o->max_connections = 1024;
    o->sync.timeout_ns = -1;
    mw_idle_init_busy(&o->sync.idle);
    o->event.workers = 1;
    mw__transport_opts_init(&o->tr);
    o->handshake_timeout_ns = 10 * MW_NS_PER_S;
    o->linger_ns = 2 * MW_NS_PER_S;
    o->rx_timeout_ns = 10 * MW_NS_PER_S;
    o->first_msg_timeout_ns = 60 * MW_NS_PER_S;
}

/* What only event mode reads, set for another mode (or an io beside the
 * workers, which would never run it), is refused rather than ignored. */
static int check_opts(const mw_svc_opts_t *o, mw_err_t *err) {
    const mw_svc_event_opts_t *e = &o->event;
    if (o->mode == MW_MODE_EVENT) {
        if (e->workers == 0 && !e->io) return mw__err_set(err, MW_EINVAL, "event mode with workers = 0 needs opts.event.io");
        if (e->workers > 0 && e->io)
            return mw__err_set(err, MW_EINVAL, "opts.event.io is set with %u workers: an io is used only with workers = 0",
                              e->workers);
        return 0;
    }
    const char *bad = e->io ? "io" : e->backend ? "backend" : e->on_msg ? "on_msg" : NULL;
    if (bad)
        return mw__err_set(err, MW_EINVAL, "opts.event.%s is set but the mode is %s: event options act only in event mode%s",
                          bad, mw_mode_name(o->mode), e->on_msg ? " (mw_svc_recv delivers the messages)" : "");
    return 0;
}


/* Cross-thread requests carry the id, not the slot, so a connection closed
 * in the meantime is simply not found. They allocate: only used on the slow
 * paths (a full socket, a close from another thread). */
typedef struct id_req {
    mw_svc_t *s;
    mw_conn_id_t id;
    void (*fn)(mw_svc_t *s, slot_t *sl, intptr_t arg);
    intptr_t arg;
} id_req_t;


static void release(mw_svc_t *s);

/* Drops a reference: the owner's (mw_svc_free) or a queued request's. */
static void unref(mw_svc_t *s) {
    if (atomic_fetch_sub(&s->refs, 1) == 1) release(s);
}

static void req_run(void *ud) {
    id_req_t *q = ud;
    mw_svc_t *s = q->s;
    slot_t *sl = atomic_load(&s->dead) || s->closed_all ? NULL : lookup(s, q->id);
    if (sl) q->fn(s, sl, q->arg);
    free(q);
    unref(s);
}

/* Runs fn(s, slot, arg) on the slot's io thread: now if this is that
 * thread (or the Svc is not threaded), else posted (the id, not the slot,
 * travels: a later connection in the slot is not it). 0 or MW_ENOMEM. */
static int on_slot_thread(mw_svc_t *s, slot_t *sl, mw_conn_id_t id, void (*fn)(mw_svc_t *, slot_t *, intptr_t),
                          intptr_t arg) {
    mw_io_t *io = slot_io(s, sl);
    if (s->o.mode != MW_MODE_EVENT || mw__io_in_thread(io)) {
        fn(s, sl, arg);
        return 0;
    }
    id_req_t *q = malloc(sizeof *q);
    if (!q) return MW_ENOMEM;
    *q = (id_req_t){s, id, fn, arg}; /* the caller's id: a later connection in the slot is not it */
    atomic_fetch_add(&s->refs, 1); /* the Svc outlives the request (a caller's io may run it late) */
    int r = mw_io_post(io, req_run, q);
    if (r < 0) {
        atomic_fetch_sub(&s->refs, 1);
        free(q);
    }
    return r;
}

/* The last connection gone gives memory back (svc_slots.c), on the
 * acceptor's thread, the only one that allocates slots. */
static void shrink_posted(void *ud) {
    mw_svc_t *s = ud;
    if (!atomic_load(&s->dead) && !s->closed_all) mw__svc_slots_shrink(s);
    unref(s);
}

/* Any thread, once nothing refers to the slot's connection any more. */
static void free_slot(mw_svc_t *s, slot_t *sl) {
    if (!mw__svc_free_slot(s, sl)) return;
    atomic_fetch_add(&s->refs, 1); /* the Svc outlives the request */
    if (mw_io_post(s->io, shrink_posted, s) < 0) atomic_fetch_sub(&s->refs, 1);
}

/* ---- the driver's callbacks ---------------------------------------------------- */

static void run_drv_fn(mw_svc_t *s, slot_t *sl, intptr_t arg) {
    (void)s;
    void (*fn)(mw__drv_t *) = (void (*)(mw__drv_t *))arg;
    if (mw__drv_attached(&sl->drv)) fn(&sl->drv);
}

static int drv_post(mw__drv_t *d, void (*fn)(mw__drv_t *d)) {
    slot_t *sl = d->ud;
    id_req_t *q = malloc(sizeof *q);
    if (!q) return MW_ENOMEM;
    *q = (id_req_t){sl->svc, make_id(sl), run_drv_fn, (intptr_t)fn};
    atomic_fetch_add(&sl->svc->refs, 1);
    int r = mw_io_post(slot_io(sl->svc, sl), req_run, q);
    if (r < 0) {
        atomic_fetch_sub(&sl->svc->refs, 1);
        free(q);
    }
    return r;
}

static bool drv_msg(mw__drv_t *d, const mw_schema_t *sch, const void *msg) {
    slot_t *sl = d->ud;
    mw_svc_t *s = sl->svc;
    if (s->sessions) {
        int x = mw__svc_sess_in(s, sl, sch, msg);
        if (x <= 0) return x == 0;
    }
    if (s->o.event.on_msg) s->o.event.on_msg(s, make_id(sl), sch, msg, s->o.ud);
    if (sl->sess) mw__sess_commit(sl->sess);
    return true;
}


static void drv_drain(mw__drv_t *d) {
    slot_t *sl = d->ud;
    mw_svc_t *s = sl->svc;
    if (sl->sess) mw__svc_sess_pump_now(sl); /* journaled messages waiting go first */
    if (s->o.on_drain) s->o.on_drain(s, make_id(sl), s->o.ud);
}

static void active_remove(mw_svc_t *s, uint32_t idx) {
    for (uint32_t i = 0; i < s->nactive; i++) {
        if (s->active[i] != idx) continue;
        s->active[i] = s->active[--s->nactive];
        return;
    }
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

/* The connection ended for the application: reason MW_ECLOSED (peer),
 * MW_ESTATE (closed by us) or the error. Its id is stale from here on; the
 * driver may still linger to deliver accepted replies (drv_gone ends it). */
static void drv_closed(mw__drv_t *d, int reason) {
    slot_t *sl = d->ud;
    mw_svc_t *s = sl->svc;
    mw_conn_id_t id = make_id(sl);
    /* A send from another thread finishes first; later ones find it closed.
     * The conn's error text is read under the same lock (a sender's failed
     * write sets it). */
    mw__lock(&sl->lk);
    atomic_store(&sl->open, false);
    const char *why = mw__conn_last_error(&sl->conn);
    if (sl->err.code && sl->err.code == reason) {} /* the session's reason, set when it closed */
    else if (*why) mw__err_set(&sl->err, reason, "%s", why);
    else mw__err_set(&sl->err, reason, "%s", reason == MW_ESTATE ? "closed by the service" : mw_strerror(reason));
    mw__unlock(&sl->lk);
    if (is_bad_input(reason)) {
        atomic_fetch_add(&s->closed_bad_input, 1);
        mw__logf(MW_LOG_WARN, "svc: closing connection %#llx: %s", (unsigned long long)id, sl->err.text);
    }
    if (s->o.on_close && !s->closed_all) s->o.on_close(s, id, reason, s->o.ud);
    mw__svc_sess_down(s, sl);
    mw_conn_stats_t st;
    mw__conn_stats(&sl->conn, &st);
    atomic_fetch_add(&s->msgs_in, st.msgs_in);
    atomic_fetch_add(&s->msgs_out, st.msgs_out);
    atomic_fetch_add(&s->bytes_in, st.bytes_in);
    atomic_fetch_add(&s->bytes_out, st.bytes_out);
    if (s->o.mode != MW_MODE_EVENT) {
        active_remove(s, sl->idx);
        if (s->solo == sl) mw__svc_solo_leave(s, sl); /* lingering needs the io's readiness */
    }
    atomic_fetch_add(&sl->gen, 1); /* mw_svc_conn_error(id) answered until here */
    atomic_fetch_add(&s->closed, 1);
    atomic_fetch_sub(&s->nconns, 1);
    if (!s->closed_all) mw__svc_solo_update(s);
}

/* The driver let go: the slot can be reused. No sender reaches the conn
 * any more (drv_closed closed it under the slot's lock, and every sender
 * checks under that lock; a session's sends stopped when it was unlinked),
 * so the conn is finished without the lock, which its streams' close takes
 * (mw__stream_share_lock). */
static void drv_gone(mw__drv_t *d) {
    slot_t *sl = d->ud;
    mw_svc_t *s = sl->svc;
    bool report = sl->close_asked && s->o.on_closed && !s->closed_all;
    sl->close_asked = false;
    if (report) { /* its text, while the conn still has it (mw_svc_conn_error inside on_closed) */
        const char *why = mw__conn_last_error(&sl->conn);
        if (d->end_result == 0) mw_err_clear(&sl->err);
        else mw__err_set(&sl->err, d->end_result, "%s", *why ? why : mw_strerror(d->end_result));
    }
    mw__conn_fini(&sl->conn);
    if (report) {
        /* the id on_close reported: drv_closed bumped the generation since */
        mw_conn_id_t id = ((uint64_t)(atomic_load(&sl->gen) - 1) << 32) | sl->idx;
        atomic_store(&sl->reporting, true);
        s->o.on_closed(s, id, d->end_result, s->o.ud);
        atomic_store(&sl->reporting, false);
    }
    atomic_store(&sl->used, false);
    free_slot(s, sl);
}

/* ---- accepting ------------------------------------------------------------ */

static void drv_up(mw__drv_t *d) {
    slot_t *sl = d->ud;
    mw__svc_solo_update(sl->svc);
}

/* A connection accepted but never attached: released, and counted as closed. */
static void drop_unattached(mw_svc_t *s, slot_t *sl) {
    mw__lock(&sl->lk);
    atomic_store(&sl->open, false);
    atomic_fetch_add(&sl->gen, 1);
    mw__unlock(&sl->lk);
    mw__conn_fini(&sl->conn); /* (as drv_gone: without the lock) */
    atomic_store(&sl->used, false);
    free_slot(s, sl);
    if (s->o.mode != MW_MODE_EVENT) active_remove(s, sl->idx);
    atomic_fetch_sub(&s->nconns, 1);
    atomic_fetch_add(&s->closed, 1);
}

static void attach(mw_svc_t *s, slot_t *sl) {
    /* Event mode: under the slot's lock, as a sender that finds the slot
     * open before this ran (mw_svc_broadcast) reads the driver's state
     * under it (usable_l): the driver's fields come with it. */
    bool ev = s->o.mode == MW_MODE_EVENT;
    if (ev) mw__lock(&sl->lk);
    int r = mw__drv_start(&sl->drv, slot_io(s, sl), &sl->conn, &s->drv_cfg, sl);
    if (ev) mw__unlock(&sl->lk);
    if (r < 0) {
        mw__err_set(&sl->err, r, "register with io: %s", mw_err_text(&mw__io_selector(slot_io(s, sl))->err));
        drop_unattached(s, sl);
        return;
    }
    if (s->o.on_accept) {
        mw__drv_enter(&sl->drv);
        s->o.on_accept(s, make_id(sl), s->o.ud);
        mw__drv_leave(&sl->drv);
    }
    mw__drv_go(&sl->drv);
}

/* A connection handed to another worker is named by id: if the Svc closed it
 * before the worker ran this, it is simply not found. */
static void attach_posted(mw_svc_t *s, slot_t *sl, intptr_t arg) {
    (void)arg;
    attach(s, sl);
}

static void accept_one(mw_svc_t *s, mw_stream_t *st) {
    mw_err_t err;
    if (mw__transport_wrap(&s->tr, st, &st, &err) < 0) { /* st is gone */
        mw__logf(MW_LOG_WARN, "svc: cannot set up an accepted connection: %s", err.text);
        return;
    }
    slot_t *sl = mw__svc_alloc_slot(s);
    if (!sl) {
        atomic_fetch_add(&s->refused_full, 1);
        mw__logf(MW_LOG_WARN, "svc: refusing a client: max_connections %u reached", s->cap);
        mw_stream_free(st);
        return;
    }
    mw_conn_opts_t co = s->o.conn;
    co.flags &= ~(unsigned)MW_CONN_TX_LOCK; /* event mode: the slot's lock, below */
    int r = mw__conn_init(&sl->conn, st, s->proto, &co, &s->err); /* (the slot is not open: no sender) */
    if (r < 0) {
        atomic_store(&sl->used, false);
        free_slot(s, sl);
        return;
    }
    /* any thread may send: the slot's lock is the one lock of the conn and its streams */
    if (s->o.mode == MW_MODE_EVENT) mw__conn_share_lock(&sl->conn, &sl->lk);
    sl->conn.tx.hook = s->o.on_sent;
    sl->conn.rx.hook = s->o.on_recvd;
    sl->conn.tx.hook_ud = sl->conn.rx.hook_ud = s->o.hook_ud;
    mw_err_clear(&sl->err);
    sl->close_asked = false;
    if (s->o.mode == MW_MODE_EVENT) sl->w = &s->workers[s->next_worker++ % s->nworkers]; /* before it is open */
    atomic_store(&sl->open, true);
    atomic_fetch_add(&s->accepted, 1);
    atomic_fetch_add(&s->nconns, 1);
    if (s->o.mode == MW_MODE_EVENT) {
        if (on_slot_thread(s, sl, make_id(sl), attach_posted, 0) < 0) {
            mw__err_set(&sl->err, MW_ENOMEM, "cannot hand the connection to its worker");
            drop_unattached(s, sl);
        }
        return;
    }
    s->active[s->nactive++] = sl->idx;
    attach(s, sl);
}

/* True if a client waits. Spin mode's direct selector calls the listener
 * blindly, and a failing accept4 is expensive on Linux (it allocates and
 * frees a socket): a zero-timeout poll() answers without allocating. */
static bool listener_ready(const mw_svc_t *s) {
    struct pollfd p = {mw__listener_fd(s->lis), POLLIN, 0};
    return poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
}

/* Accepts until the backlog is empty, within a budget that keeps the
 * connections already open served during a burst of connects. */
#define ACCEPT_BUDGET 256
/* Out of file descriptors: the listener stays readable (level-triggered)
 * and every accept would fail at once, so stop watching it this long. */
#define ACCEPT_BACKOFF_NS (100 * MW_NS_PER_MS)

static void accept_backoff(mw_svc_t *s, int r) {
    if (r == MW_EFULL) atomic_fetch_add(&s->refused_nofd, 1);
    if (!s->accept_trouble) { /* once per episode */
        s->accept_trouble = true;
        mw__logf(MW_LOG_WARN, "svc: %s; not accepting for %d ms at a time until it passes", mw_err_text(&s->err),
                 (int)(ACCEPT_BACKOFF_NS / MW_NS_PER_MS));
    }
    if (s->lis_src.added) mw_io_del(s->io, &s->lis_src);
    mw_io_timer_after(s->io, &s->t_accept, ACCEPT_BACKOFF_NS);
}

/* Work: the connections accepted. */
static int on_listener(mw_sel_src_t *src, int events) {
    (void)events;
    mw_svc_t *s = src->ud;
    if (s->o.mode == MW_MODE_SPIN && !listener_ready(s)) return 0;
    int n = 0;
    while (n < ACCEPT_BUDGET) {
        mw_stream_t *st;
        int r = mw__listener_accept(s->lis, &st, &s->err);
        if (r == MW_EAGAIN) break;
        if (r < 0) { /* EMFILE/ENFILE, or the kernel short of memory: no spin */
            accept_backoff(s, r);
            break;
        }
        s->accept_trouble = false;
        accept_one(s, st);
        n++;
    }
    return n;
}

static void on_accept_again(mw_io_timer_t *t, void *ud) {
    (void)t;
    mw_svc_t *s = ud;
    if (!s->lis || s->closed_all) return;
    if (!s->lis_src.added && mw_io_add(s->io, &s->lis_src) < 0) {
        mw_io_timer_after(s->io, &s->t_accept, ACCEPT_BACKOFF_NS);
        return;
    }
    on_listener(&s->lis_src, MW_WANT_READ);
}

/* ---- set-up --------------------------------------------------------------- */

static int setup_workers(mw_svc_t *s, mw_err_t *err) {
    if (s->o.event.workers == 0) {
        s->nworkers = 1;
        s->workers = calloc(1, sizeof *s->workers);
        if (!s->workers) return mw__err_set(err, MW_ENOMEM, "out of memory");
        s->workers[0] = (worker_t){s->o.event.io, s, false};
        return 0;
    }
    s->nworkers = s->o.event.workers;
    s->workers = calloc(s->nworkers, sizeof *s->workers);
    if (!s->workers) return mw__err_set(err, MW_ENOMEM, "out of memory");
    mw_io_opts_t io;
    mw_io_opts_init(&io);
    io.backend = s->o.event.backend ? s->o.event.backend : "epoll";
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
        if (r < 0) return mw__err_set(err, r, "cannot start worker thread %u", i);
        s->threads_started = true;
    }
    return 0;
}

static int setup(mw_svc_t *s, const mw__url_t *u, mw_err_t *err) {
    s->active = calloc(s->cap, sizeof *s->active);
    if (mw__svc_slots_new(s) < 0 || !s->active) return mw__err_set(err, MW_ENOMEM, "out of memory");
    mw_tcp_opts_t tcp = s->o.tcp;
    tcp.blocking = false; /* blocking mode waits in epoll, then reads without blocking */
    int r = mw__tcp_listen(&s->lis, u->host, u->port, &tcp, err);
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
    mw_sel_src_init(&s->lis_src, mw__listener_fd(s->lis), MW_WANT_READ, on_listener, s);
    mw_io_timer_init(&s->t_accept, on_accept_again, s);
    if ((r = mw_io_add(s->io, &s->lis_src)) < 0)
        return mw__err_set(err, r, "register listener: %s", mw_err_text(&mw__io_selector(s->io)->err));
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
    mw__url_t u;
    int r = check_opts(o, err);
    if (r < 0 || (r = mw__url_parse(url, &u, err)) < 0) return r;
    /* what every accept would refuse is refused here, loudly */
    uint64_t frame = (uint64_t)(o->conn.max_msg ? o->conn.max_msg : 65536) + 8;
    if (o->conn.rx_buf < frame || o->conn.tx_buf < frame)
        return mw__err_set(err, MW_EINVAL, "buffers (rx %u, tx %u) must each hold one frame of max_msg + 8 (%llu)",
                          o->conn.rx_buf, o->conn.tx_buf, (unsigned long long)frame);
    mw_svc_t *s = calloc(1, sizeof *s);
    if (!s) return mw__err_set(err, MW_ENOMEM, "out of memory");
    s->o = *o;
    mw_transport_opts_t tr = o->tr;
    if (tr.ws.max_msg > o->conn.max_msg) tr.ws.max_msg = o->conn.max_msg; /* one limit, not two */
    if ((r = mw__transport_init(&s->tr, &u, true, &tr, err)) < 0) {
        free(s);
        return r;
    }
    s->have_tr = true;
    s->proto = s->app = p;
    if (o->session.enabled) {
        s->sessions = true;
        if (!o->session.journal_dir) r = mw__err_set(err, MW_EINVAL, "sessions need opts.session.journal_dir");
        else if (!(s->sproto = mw__sess_proto(p)) || !(s->sess_rx = calloc(1, s->sproto->max_size)) ||
                 mw__svc_sessions_init(&s->stab, o->session.max_sessions) < 0)
            r = mw__err_set(err, MW_ENOMEM, "out of memory");
        if (r < 0) {
            mw__transport_fini(&s->tr);
            free(s->sess_rx);
            free(s->sproto);
            free(s);
            return r;
        }
        s->proto = s->sproto; /* connections decode both */
        s->stab.wire = o->conn.serdes;
    }
    s->cap = o->max_connections ? o->max_connections : 1024;
    s->drv_cfg = (mw__drv_cfg_t){
        .on_msg = o->mode == MW_MODE_EVENT ? drv_msg : NULL, /* spin/blocking: recv pulls */
        .on_up = o->mode == MW_MODE_BLOCKING ? drv_up : NULL,
        .on_drain = drv_drain,
        .on_close = drv_closed,
        .on_gone = drv_gone,
        .post = drv_post,
        .handshake_timeout_ns = o->handshake_timeout_ns,
        .first_msg_timeout_ns = o->first_msg_timeout_ns,
        .rx_timeout_ns = o->rx_timeout_ns,
        .idle_timeout_ns = o->idle_timeout_ns,
        .linger_ns = o->linger_ns,
        .slow_consumer_ns = o->slow_consumer_ns,
        .budget = -1,
    };
    atomic_init(&s->refs, 1);
    if ((r = setup(s, &u, err)) < 0) {
        mw_svc_free(s);
        return r;
    }
    *out = s;
    return 0;
}

int mw_svc_port(const mw_svc_t *s) { return mw__listener_port(s->lis); }

/* ---- sending, flow control, closing ----------------------------------------- */

/* Event mode, under the slot's lock: MW_ECLOSED for a stale id, MW_ESTATE
 * for a connection accepted but not attached to its worker's driver yet
 * (not announced by on_accept: only mw_svc_broadcast finds it, and the
 * driver has no conn, io or config to send with), else 0. */
static inline int usable_l(const slot_t *sl, mw_conn_id_t id) {
    if (!slot_is(sl, id)) return MW_ECLOSED;
    return mw__drv_attached(&sl->drv) ? 0 : MW_ESTATE;
}

/* Runs op on an open connection with its lifetime held. Event mode: the
 * slot's one lock (lock_impl.h) covers the lifetime check (open and
 * generation, so the owning worker cannot tear it down meanwhile), the
 * encode into tx and the write through the stream stack, which takes no
 * lock of its own then; expr must use the driver's _l functions. */
#define WITH_SLOT(s, id, sl, expr)                                                    \
    do {                                                                              \
        slot_t *sl = lookup((s), (id));                                               \
        if (!sl) return MW_ECLOSED;                                                   \
        if ((s)->o.mode != MW_MODE_EVENT) return (expr);                              \
        mw__lock(&sl->lk);                                                            \
        int r_ = usable_l(sl, (id));                                                  \
        if (r_ == 0) r_ = (expr);                                                     \
        mw__unlock(&sl->lk);                                                          \
        return r_;                                                                    \
    } while (0)

/* One message queued on an open connection (without sessions); event
 * mode: under the slot's lock. */
static int slot_enqueue(mw_svc_t *s, slot_t *sl, const mw_schema_t *sch, const void *msg) {
    return s->o.mode == MW_MODE_EVENT ? mw__drv_enqueue_l(&sl->drv, sch, msg) : mw__drv_enqueue(&sl->drv, sch, msg);
}

/* With sessions: numbered (*seq) and journaled, and MW_ESTATE before the
 * logon. No slot lock here: the session's mutex orders its numbering,
 * journal and link, and its link's send (svc_sess.c) takes the slot's lock
 * for the write; a linked session's connection outlives the link. The
 * session is read without a lock, then the id is checked again: it was
 * this connection's session (sessions live as long as the Svc). */
static int sess_send(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg, bool more, uint64_t *seq) {
    slot_t *sl = lookup(s, id);
    if (!sl) return MW_ECLOSED;
    mw__sess_t *ss = __atomic_load_n(&sl->sess, __ATOMIC_ACQUIRE);
    if (!lookup(s, id)) return MW_ECLOSED;
    if (!ss) return MW_ESTATE;
    int r = mw__sess_send(ss, sch, msg, more, seq);
    if (r == MW_EAGAIN) atomic_store(&sl->drv.want_drain, true); /* on_drain once the backlog moves */
    return r;
}

/* One message without sessions, as WITH_SLOT would send it, flat (the
 * common send: one call into the driver). Blocking with one connection
 * (solo): a reply queued behind a full socket goes back to the io, which
 * watches writability. */
static inline __attribute__((always_inline)) int send_plain(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch,
                                                             const void *msg) {
    slot_t *sl = lookup(s, id);
    if (!sl) return MW_ECLOSED;
    if (s->o.mode == MW_MODE_EVENT) {
        mw__lock(&sl->lk);
        int r = usable_l(sl, id);
        if (r == 0) r = mw__drv_send_l(&sl->drv, sch, msg);
        mw__unlock(&sl->lk);
        return r;
    }
    int r = mw__drv_send(&sl->drv, sch, msg);
    if (s->solo && sl == s->solo && mw__conn_tx_pending(&sl->conn)) mw__svc_solo_update(s);
    return r;
}

/* With sessions; blocking with one connection (solo) as send_plain. */
static int send_sess(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg, uint64_t *seq) {
    int r = sess_send(s, id, sch, msg, false, seq);
    if (s->solo) {
        slot_t *sl = lookup(s, id);
        if (sl && sl == s->solo && mw__conn_tx_pending(&sl->conn)) mw__svc_solo_update(s);
    }
    return r;
}

/* A failed send does not close the connection: what the peer sent before
 * it left is still to be delivered; the read side ends it. */
int mw_svc_send_seq(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg, uint64_t *seq) {
    return s->sessions ? send_sess(s, id, sch, msg, seq) : send_plain(s, id, sch, msg);
}

int mw_svc_send_to(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg) {
    return s->sessions ? send_sess(s, id, sch, msg, NULL) : send_plain(s, id, sch, msg);
}

int mw_svc_send_more(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg) {
    if (s->sessions) return sess_send(s, id, sch, msg, true, NULL);
    WITH_SLOT(s, id, sl, slot_enqueue(s, sl, sch, msg));
}

int mw_svc_flush(mw_svc_t *s, mw_conn_id_t id) {
    WITH_SLOT(s, id, sl, s->o.mode == MW_MODE_EVENT ? mw__drv_flush_l(&sl->drv) : mw__drv_flush(&sl->drv));
}

int mw_svc_broadcast(mw_svc_t *s, const mw_schema_t *sch, const void *msg) {
    int n = 0;
    for (uint32_t i = 0, hw = mw__svc_slots_seen(s); i < hw; i++) {
        slot_t *sl = &s->slots[i];
        if (atomic_load(&sl->open) && mw_svc_send_to(s, make_id(sl), sch, msg) == 0) n++;
    }
    return n;
}

/* on_closed reports a close_conn that took effect: not one that found the
 * connection ending already, nor one an abort overrode (an abort before or
 * after it in the same callback, or during its linger, makes it an abort).
 * Set before the call: a close that ends at once reports from inside it. */
static void close_on_thread(mw_svc_t *s, slot_t *sl, intptr_t graceful) {
    (void)s;
    bool asked = sl->close_asked;
    sl->close_asked = graceful != 0;
    if (!mw__drv_close(&sl->drv, MW_ESTATE, graceful != 0)) sl->close_asked = asked;
}

int mw_svc_close_conn(mw_svc_t *s, mw_conn_id_t id) {
    slot_t *sl = lookup(s, id);
    return sl ? on_slot_thread(s, sl, id, close_on_thread, 1) : MW_ECLOSED;
}

int mw_svc_abort_conn(mw_svc_t *s, mw_conn_id_t id) {
    slot_t *sl = lookup(s, id);
    return sl ? on_slot_thread(s, sl, id, close_on_thread, 0) : MW_ECLOSED;
}

static void logout_on_thread(mw_svc_t *s, slot_t *sl, intptr_t arg) {
    (void)s;
    if (sl->sess) mw__sess_logout(sl->sess, MW_LOGOUT_NORMAL, (const char *)arg);
    mw__err_set(&sl->err, MW_ESTATE, "logout: %s", (const char *)arg);
    mw__drv_close(&sl->drv, MW_ESTATE, true);
}

int mw_svc_logout(mw_svc_t *s, mw_conn_id_t id, const char *reason) {
    slot_t *sl = lookup(s, id);
    if (!sl || !sl->sess) return sl ? MW_ESTATE : MW_ECLOSED;
    /* the reason is copied into the message on the slot's thread: keep it static there */
    static const char dflt[] = "logout by the service";
    if (s->o.mode == MW_MODE_EVENT && !mw__io_in_thread(slot_io(s, sl))) reason = dflt;
    return on_slot_thread(s, sl, id, logout_on_thread, (intptr_t)(reason ? reason : dflt));
}

static void pause_on_thread(mw_svc_t *s, slot_t *sl, intptr_t paused) {
    mw__drv_pause(&sl->drv, paused != 0);
    mw__svc_solo_update(s); /* a paused connection is not read, blocking or not */
}

int mw_svc_pause_recv(mw_svc_t *s, mw_conn_id_t id) {
    slot_t *sl = lookup(s, id);
    return sl ? on_slot_thread(s, sl, id, pause_on_thread, 1) : MW_ECLOSED;
}

int mw_svc_resume_recv(mw_svc_t *s, mw_conn_id_t id) {
    slot_t *sl = lookup(s, id);
    return sl ? on_slot_thread(s, sl, id, pause_on_thread, 0) : MW_ECLOSED;
}

int mw_svc_set_serdes(mw_svc_t *s, mw_conn_id_t id, int dirs, const char *serdes) {
    slot_t *sl = lookup(s, id);
    if (!sl) return MW_ECLOSED;
    int r = mw__conn_set_serdes(&sl->conn, dirs, serdes, MW_FRAME_AUTO);
    if (r == 0 && sl->sess && (dirs & MW_DIR_TX)) mw__sess_set_wire(sl->sess, serdes); /* trial encodes */
    return r;
}

/* ---- lifetime (the queries are in svc_slots.c) --------------------------------------------------- */

void mw_svc_close(mw_svc_t *s) {
    if (!s || s->close_started) return;
    s->close_started = true;
    for (uint32_t i = 0; i < s->nworkers; i++)
        if (s->workers[i].own_io) mw_io_stop(s->workers[i].io);
    s->closed_all = true; /* only now: the workers read it until they stop */
    if (s->io && s->lis_src.added) mw_io_del(s->io, &s->lis_src);
    if (s->io) mw_io_timer_stop(s->io, &s->t_accept);
    mw__listener_free(s->lis);
    s->lis = NULL;
    for (uint32_t i = 0, hw = s->slots ? mw__svc_slots_seen(s) : 0; i < hw; i++) {
        slot_t *sl = &s->slots[i];
        if (!atomic_load(&sl->used)) continue;
        if (sl->drv.state != MW__DRV_LINGER) { /* still open for the application */
            /* shutting down: the WebSocket close says "going away" */
            if (mw__drv_attached(&sl->drv))
                mw__conn_close_transport(&sl->conn, MW_ESTATE, "service shutting down", true);
            sl->drv.in_cb = false;
            drv_closed(&sl->drv, MW_ESTATE);
        }
        mw__drv_stop(&sl->drv);
        drv_gone(&sl->drv);
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
    unref(s);
}

/* The last reference: the owner's (mw_svc_free) or a queued request's. */
static void release(mw_svc_t *s) {
    mw__svc_slots_free(s);
    if (s->have_tr) mw__transport_fini(&s->tr);
    mw__svc_sessions_fini(&s->stab);
    free(s->sproto);
    free(s->sess_rx);
    free(s->batch_rx);
    free(s->workers);
    free(s->active);
    free(s);
}
