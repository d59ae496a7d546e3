/* svc.c - the service: listener, connection pool, three run modes. */
#include "mw_svc.h"
#include "drv_impl.h"
#include "svc_sess_impl.h"

#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct worker worker_t;

typedef struct slot {
    mw_conn_t conn;
    mw__drv_t drv;            /* drives conn on its io while attached */
    mw_svc_t *svc;
    worker_t *w;              /* event mode: the owning worker */
    pthread_mutex_t mu;       /* event mode: lifetime vs other threads' sends */
    _Atomic uint32_t gen;     /* generation of the current (or last) connection */
    atomic_bool used;         /* from accept until the driver let go (linger included) */
    atomic_bool open;         /* the application's: from accept until on_close */
    uint32_t idx;
    uint32_t next_free;       /* free-list link (NO_SLOT: none) */
    mw_err_t err;             /* why it closed; kept for on_close / conn_error */
    mw__sess_t *sess;         /* sessions: the one this connection logged on to */
    mw_io_timer_t t_sess;     /* sessions: heartbeats, resend, logon timeout */
} slot_t;

#define NO_SLOT UINT32_MAX

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
    mw__drv_cfg_t drv_cfg;     /* one driver configuration for every connection */
    slot_t *slots;             /* cap slots, zero until first used; mmap'd when large (slots_mapped) */
    uint32_t cap;
    bool slots_mapped;
    _Atomic uint32_t hwm;      /* slots [0, hwm) have been initialised (handed out once) */
    _Atomic uint32_t freed;    /* slots freed since the acceptor last looked: a stack (MPSC) */
    uint32_t fq_head, fq_tail; /* the acceptor's free queue, oldest first (NO_SLOT: empty) */
    _Atomic uint32_t nused;    /* slots in use (accept until the driver let go) */
    uint32_t *gens;            /* generations kept while the table's pages are given back */
    uint32_t *active;          /* spin/blocking: open slots, for fair recv */
    uint32_t nactive, rr;
    slot_t *solo;              /* blocking mode, one connection: read it blocking */
    uint32_t solo_tick, spin_tick;
    uint64_t solo_polled_ns, polled_ns;
    _Atomic uint64_t accepted, refused_full, refused_nofd, closed, closed_bad_input, msgs_in, msgs_out, bytes_in,
        bytes_out;
    mw_io_timer_t t_accept;    /* the listener's back-off (out of descriptors) */
    bool accept_trouble;       /* accepting fails: logged once per episode */
    atomic_uint nconns;
    bool threads_started;
    bool close_started; /* mw_svc_close ran (idempotence; closing thread only) */
    atomic_uint refs;   /* 1 for the owner + 1 per cross-thread request queued */
    atomic_bool dead;   /* mw_svc_free ran: queued requests find nothing */
    bool closed_all;    /* workers stopped, tearing down: no more callbacks */
    /* sessions (opts.session.enabled) */
    bool sessions;
    mw_protocol_t *sproto;     /* the application's protocol + the control messages */
    mw__svc_sessions_t stab;
    mw__sess_t *uncommitted;   /* spin/blocking: the session of the message recv returned last */
    const mw_protocol_t *app;  /* the application's protocol (journal records) */
    void *sess_rx;             /* spin/blocking: decode scratch of proto->max_size */
    mw_err_t err;
};

static inline mw_conn_id_t make_id(const slot_t *sl) {
    return ((uint64_t)atomic_load(&sl->gen) << 32) | sl->idx;
}

static void free_slot(mw_svc_t *s, slot_t *sl);

void mw_svc_opts_init(mw_svc_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->mode = MW_MODE_SPIN;
    mw_conn_opts_init(&o->conn);
    mw_tcp_opts_init(&o->tcp);
    o->max_connections = 1024;
    o->timeout_ns = -1;
    mw_idle_init_busy(&o->idle);
    o->workers = 1;
    mw_transport_opts_init(&o->tr);
    o->handshake_timeout_ns = 10 * MW_NS_PER_S;
    o->linger_ns = 2 * MW_NS_PER_S;
    o->rx_timeout_ns = 10 * MW_NS_PER_S;
    o->first_msg_timeout_ns = 60 * MW_NS_PER_S;
}

/* Slot for an id, or NULL when the id is stale or unknown. A connection
 * being closed (on_close ran) is unknown already, even while it lingers. */
static slot_t *lookup(const mw_svc_t *s, mw_conn_id_t id) {
    uint32_t idx = (uint32_t)id;
    if (idx >= s->cap) return NULL;
    slot_t *sl = &s->slots[idx];
    if (!atomic_load(&sl->open) || atomic_load(&sl->gen) != (uint32_t)(id >> 32)) return NULL;
    return sl;
}

static mw_io_t *slot_io(const mw_svc_t *s, const slot_t *sl) { return sl->w ? sl->w->io : s->io; }

/* Cross-thread requests carry the id, not the slot, so a connection closed
 * in the meantime is simply not found. They allocate: only used on the slow
 * paths (a full socket, a close from another thread). */
typedef struct id_req {
    mw_svc_t *s;
    mw_conn_id_t id;
    void (*fn)(mw_svc_t *s, slot_t *sl, intptr_t arg);
    intptr_t arg;
} id_req_t;

static void svc_release(mw_svc_t *s);

static void req_run(void *ud) {
    id_req_t *q = ud;
    mw_svc_t *s = q->s;
    slot_t *sl = atomic_load(&s->dead) || s->closed_all ? NULL : lookup(s, q->id);
    if (sl) q->fn(s, sl, q->arg);
    free(q);
    if (atomic_fetch_sub(&s->refs, 1) == 1) svc_release(s);
}

/* Runs fn(s, slot, arg) on the slot's io thread: now if this is that
 * thread (or the Svc is not threaded), else posted. */
static int on_slot_thread(mw_svc_t *s, slot_t *sl, mw_conn_id_t id, void (*fn)(mw_svc_t *, slot_t *, intptr_t),
                          intptr_t arg) {
    mw_io_t *io = slot_io(s, sl);
    if (s->o.mode != MW_MODE_EVENT || mw_io_in_thread(io)) {
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

/* ---- sessions (opts.session.enabled) ----------------------------------------------
 * A connection's first message must be mw_logon: it picks (or opens) the
 * session, which is then linked to this connection until it closes. Every
 * later message goes through the session: control messages stay inside,
 * application messages come out numbered. */

/* (called with the session's mutex held: no driver callback may run inside,
 * on_drain would pump the session again) */
static int sl_send(void *ctx, const mw_schema_t *sch, const void *msg, bool more) {
    slot_t *sl = ctx;
    return more ? mw__drv_enqueue(&sl->drv, sch, msg) : mw__drv_send_nocb(&sl->drv, sch, msg);
}

static int sl_flush(void *ctx) { return mw__drv_flush_nocb(&((slot_t *)ctx)->drv); }
static void sl_again(void *ctx) { mw__drv_want_drain(&((slot_t *)ctx)->drv); } /* drv_drain pumps */

/* Closes gracefully (a logout the session queued still goes out). */
static void sess_close(slot_t *sl, int reason, const char *why) {
    mw_err_set(&sl->err, reason, "%s", why);
    mw__drv_close(&sl->drv, reason, true);
}

static void sess_pump_now(slot_t *sl) {
    int r = mw__sess_pump(sl->sess, mw_io_now(slot_io(sl->svc, sl)));
    if (r < 0) sess_close(sl, r, mw__sess_error(sl->sess));
}

static void sess_timer(mw_io_timer_t *t, void *ud) {
    slot_t *sl = ud;
    if (!sl->sess || !mw__drv_up(&sl->drv)) return;
    mw_io_t *io = slot_io(sl->svc, sl);
    uint64_t now = mw_io_now(io);
    int r = mw__sess_pump(sl->sess, now);
    if (r < 0) {
        sess_close(sl, r, mw__sess_error(sl->sess));
        return;
    }
    mw_io_timer_after(io, t, (int64_t)(mw__sess_next_due(sl->sess, now) - now));
}

static int sess_reject(slot_t *sl, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int sess_reject(slot_t *sl, int code, const char *fmt, ...) {
    mw_logout_t m = {.code = (uint16_t)code};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m.reason, sizeof m.reason, fmt, ap);
    va_end(ap);
    mw__drv_send(&sl->drv, mw_logout_schema(), &m);
    char why[200];
    snprintf(why, sizeof why, "%s: %s", code == MW_LOGOUT_REJECTED ? "logon rejected" : "session error", m.reason);
    sess_close(sl, MW_ESESSION, why);
    return MW_ESESSION;
}

/* A CHARS field as a C string. */
static void cstr(char *dst, size_t cap, const char *src, size_t n) {
    size_t len = strnlen(src, n < cap - 1 ? n : cap - 1);
    memcpy(dst, src, len);
    dst[len] = 0;
}

static int sess_logon(mw_svc_t *s, slot_t *sl, const mw_schema_t *sch, const void *msg, uint64_t now) {
    if (sch->tag != mw_logon_TAG)
        return sess_reject(sl, MW_LOGOUT_PROTOCOL, "the first message must be mw_logon, not %s", sch->name);
    const mw_logon_t *lg = msg;
    char id[sizeof lg->session + 1], user[sizeof lg->user + 1], pw[sizeof lg->password + 1], peer[64] = "";
    cstr(id, sizeof id, lg->session, sizeof lg->session);
    cstr(user, sizeof user, lg->user, sizeof lg->user);
    cstr(pw, sizeof pw, lg->password, sizeof lg->password);
    if (!mw__jnl_valid_session(id))
        return sess_reject(sl, MW_LOGOUT_REJECTED, "bad session id \"%.32s\" (1..31 of A-Z a-z 0-9 _ . -)", id);
    char reason[160] = "";
    if (s->o.session.on_logon) {
        mw_tcp_peer_name(sl->conn.stream, peer, sizeof peer);
        mw_logon_info_t li = {id, user, pw, peer, lg->next_in, lg->next_out, lg->reset};
        if (s->o.session.on_logon(s->o.ud, &li, reason, sizeof reason) != 0)
            return sess_reject(sl, MW_LOGOUT_REJECTED, "%s", *reason ? reason : "refused by the service");
    }
    mw__sess_t *ss;
    mw_err_t e;
    if (mw__svc_sessions_get(&s->stab, id, &s->o.session, s->app, &ss, &e) < 0)
        return sess_reject(sl, MW_LOGOUT_REJECTED, "%s", mw_err_text(&e));
    mw__sess_link_t l = {sl, sl_send, sl_flush, sl_again};
    if (mw__sess_accept_logon(ss, &l, lg, now, reason, sizeof reason) < 0)
        return sess_reject(sl, MW_LOGOUT_REJECTED, "%s", reason);
    sl->sess = ss;
    mw_io_timer_init(&sl->t_sess, sess_timer, sl);
    mw_io_timer_after(slot_io(s, sl), &sl->t_sess, (int64_t)(mw__sess_next_due(ss, now) - now));
    if (s->o.session.on_logon_done) s->o.session.on_logon_done(s->o.ud, id, make_id(sl));
    return 0;
}

/* 1: hand msg to the application; 0: the session kept it; < 0: closing. */
static int sess_in(mw_svc_t *s, slot_t *sl, const mw_schema_t *sch, const void *msg) {
    uint64_t now = mw_io_now(slot_io(s, sl));
    if (!sl->sess) return sess_logon(s, sl, sch, msg, now);
    int x = mw__sess_rx(sl->sess, sch, msg, now);
    if (x < 0) sess_close(sl, x, mw__sess_error(sl->sess));
    return x;
}

static void sess_down(mw_svc_t *s, slot_t *sl) {
    if (!sl->sess) return;
    mw_io_timer_stop(slot_io(s, sl), &sl->t_sess);
    if (s->uncommitted == sl->sess) s->uncommitted = NULL;
    mw__sess_commit(sl->sess);
    mw__sess_unlink(sl->sess);
    sl->sess = NULL;
}

static bool drv_msg(mw__drv_t *d, const mw_schema_t *sch, const void *msg) {
    slot_t *sl = d->ud;
    mw_svc_t *s = sl->svc;
    if (s->sessions) {
        int x = sess_in(s, sl, sch, msg);
        if (x <= 0) return x == 0;
    }
    if (s->o.on_msg) s->o.on_msg(s, make_id(sl), sch, msg, s->o.ud);
    if (sl->sess) mw__sess_commit(sl->sess);
    return true;
}

static void sess_pump_now(slot_t *sl);

static void drv_drain(mw__drv_t *d) {
    slot_t *sl = d->ud;
    mw_svc_t *s = sl->svc;
    if (sl->sess) sess_pump_now(sl); /* journaled messages waiting go first */
    if (s->o.on_drain) s->o.on_drain(s, make_id(sl), s->o.ud);
}

static void active_remove(mw_svc_t *s, uint32_t idx) {
    for (uint32_t i = 0; i < s->nactive; i++) {
        if (s->active[i] != idx) continue;
        s->active[i] = s->active[--s->nactive];
        return;
    }
}

static void solo_leave(mw_svc_t *s, slot_t *sl);
static void solo_update(mw_svc_t *s);

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
    pthread_mutex_lock(&sl->mu); /* a send from another thread finishes first; later ones find it closed */
    atomic_store(&sl->open, false);
    pthread_mutex_unlock(&sl->mu);
    const char *why = mw_conn_last_error(&sl->conn);
    if (sl->err.code && sl->err.code == reason) {} /* the session's reason, set when it closed */
    else if (*why) mw_err_set(&sl->err, reason, "%s", why);
    else mw_err_set(&sl->err, reason, "%s", reason == MW_ESTATE ? "closed by the service" : mw_strerror(reason));
    if (is_bad_input(reason)) {
        atomic_fetch_add(&s->closed_bad_input, 1);
        mw__logf(MW_LOG_WARN, "svc: closing connection %#llx: %s", (unsigned long long)id, sl->err.text);
    }
    if (s->o.on_close && !s->closed_all) s->o.on_close(s, id, reason, s->o.ud);
    sess_down(s, sl);
    mw_conn_stats_t st;
    mw_conn_stats(&sl->conn, &st);
    atomic_fetch_add(&s->msgs_in, st.msgs_in);
    atomic_fetch_add(&s->msgs_out, st.msgs_out);
    atomic_fetch_add(&s->bytes_in, st.bytes_in);
    atomic_fetch_add(&s->bytes_out, st.bytes_out);
    if (s->o.mode != MW_MODE_EVENT) {
        active_remove(s, sl->idx);
        if (s->solo == sl) solo_leave(s, sl); /* lingering needs the io's readiness */
    }
    atomic_fetch_add(&sl->gen, 1); /* mw_svc_conn_error(id) answered until here */
    atomic_fetch_add(&s->closed, 1);
    atomic_fetch_sub(&s->nconns, 1);
    if (!s->closed_all) solo_update(s);
}

/* The driver let go: the slot can be reused. */
static void drv_gone(mw__drv_t *d) {
    slot_t *sl = d->ud;
    pthread_mutex_lock(&sl->mu);
    mw_conn_fini(&sl->conn);
    atomic_store(&sl->used, false);
    pthread_mutex_unlock(&sl->mu);
    free_slot(sl->svc, sl);
}

/* ---- blocking mode with one connection ------------------------------------
 * A blocking Svc serving a single client waits in a blocking read on that
 * socket (bounded by SOLO_WAIT_NS), one syscall per message like a plain
 * blocking server, instead of epoll_wait and then read (writes still never
 * wait: send_to keeps returning MW_EAGAIN on a full socket). The listener and the
 * timers are polled every SOLO_POLL_EVERY messages and whenever the read times
 * out, so a second client waits at most that long to be accepted; with two or
 * more connections the Svc goes back to epoll. This is a wait strategy of
 * the Svc's own io, not a mode: the connection keeps its driver. */
#define SOLO_WAIT_NS (10 * MW_NS_PER_MS)
#define SOLO_POLL_EVERY 64u

static void solo_enter(mw_svc_t *s, slot_t *sl) {
    if (mw_tcp_set_blocking(sl->conn.stream, true) < 0) return; /* no TCP underneath: stay on epoll */
    int64_t wait = s->o.timeout_ns > 0 && s->o.timeout_ns < SOLO_WAIT_NS ? s->o.timeout_ns : SOLO_WAIT_NS;
    mw_tcp_set_timeouts(sl->conn.stream, wait, 0);
    mw_tcp_set_write_nowait(sl->conn.stream, true); /* sends keep their MW_EAGAIN semantics */
    if (sl->drv.src.added) mw_io_del(s->io, &sl->drv.src);
    s->solo = sl;
}

static void solo_leave(mw_svc_t *s, slot_t *sl) {
    s->solo = NULL;
    mw_tcp_set_timeouts(sl->conn.stream, 0, 0);
    mw_tcp_set_write_nowait(sl->conn.stream, false);
    mw_tcp_set_blocking(sl->conn.stream, false);
    if (mw__drv_attached(&sl->drv) && !sl->drv.src.added) mw_io_add(s->io, &sl->drv.src);
}

/* The one connection may be read with a blocking read while it is up,
 * reading, and has nothing queued to write (the io watches writability). */
static slot_t *solo_candidate(const mw_svc_t *s) {
    if (s->nactive != 1) return NULL;
    slot_t *sl = &s->slots[s->active[0]];
    if (sl->drv.rx_done || sl->drv.paused || !mw__drv_up(&sl->drv) || mw_conn_tx_pending(&sl->conn)) return NULL;
    return sl;
}

static void solo_update(mw_svc_t *s) {
    if (s->o.mode != MW_MODE_BLOCKING) return;
    slot_t *want = solo_candidate(s);
    if (want == s->solo) return;
    if (s->solo) solo_leave(s, s->solo);
    if (want) solo_enter(s, want);
}

/* ---- accepting ------------------------------------------------------------ */

static void drv_up(mw__drv_t *d) {
    slot_t *sl = d->ud;
    solo_update(sl->svc);
}

/* A connection accepted but never attached: released, and counted as closed. */
static void drop_unattached(mw_svc_t *s, slot_t *sl) {
    pthread_mutex_lock(&sl->mu);
    atomic_store(&sl->open, false);
    atomic_fetch_add(&sl->gen, 1);
    mw_conn_fini(&sl->conn);
    atomic_store(&sl->used, false);
    pthread_mutex_unlock(&sl->mu);
    free_slot(s, sl);
    if (s->o.mode != MW_MODE_EVENT) active_remove(s, sl->idx);
    atomic_fetch_sub(&s->nconns, 1);
    atomic_fetch_add(&s->closed, 1);
}

static void attach(mw_svc_t *s, slot_t *sl) {
    int r = mw__drv_start(&sl->drv, slot_io(s, sl), &sl->conn, &s->drv_cfg, sl);
    if (r < 0) {
        mw_err_set(&sl->err, r, "register with io: %s", mw_err_text(&mw_io_selector(slot_io(s, sl))->err));
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

/* ---- slots: O(1) allocation ---------------------------------------------------
 * Only the acceptor (the thread that runs on_listener) allocates; any
 * thread frees (the worker that let the connection go). A freed slot is
 * pushed on a lock-free stack (MPSC: many threads push, only the acceptor
 * takes, and it takes the whole stack at once with an exchange, so there is
 * no ABA). The acceptor moves that stack, reversed, to the tail of its own
 * queue when the queue runs empty, and hands out the oldest free slot first
 * (FIFO). FIFO rather than LIFO: LIFO would reuse the slot just freed over
 * and over and advance its generation alone; FIFO spreads closes over every
 * free slot, so a slot's 32-bit generation wraps (the only way a stale id
 * could match again) as many times more slowly as there are free slots. The
 * price, a slot colder in the cache, is one miss per accept, small beside
 * accept4 itself. Slots never used before are taken only when
 * no freed one waits: the table is touched from its start and only as far
 * as the most connections open at once (the high-water mark, hwm). No lock:
 * one exchange per refill of the queue, one CAS per free. */
/* The slots ever handed out; every other slot is still zero (unused). */
static uint32_t slots_seen(const mw_svc_t *s) { return atomic_load_explicit(&s->hwm, memory_order_acquire); }

/* Slots in use at once before the last one leaving gives memory back. */
#define SHRINK_MIN 64u

static void init_slot(mw_svc_t *s, uint32_t i) {
    slot_t *sl = &s->slots[i];
    uint32_t gen = s->gens ? s->gens[i] : 0; /* the table was given back: go on from its generation */
    sl->idx = i;
    sl->svc = s;
    sl->drv.ud = sl;
    sl->next_free = NO_SLOT;
    atomic_store(&sl->gen, gen ? gen : 1);
    /* A slot given back is zero again, and a zero mutex is an initialised
     * one on Linux (glibc and musl: PTHREAD_MUTEX_INITIALIZER is all zero);
     * not initialising it again keeps a late sender's lock/unlock pair on it
     * (WITH_SLOT that found a connection just closing) balanced. */
    if (!gen) pthread_mutex_init(&sl->mu, NULL);
}

static void take_freed(mw_svc_t *s) {
    uint32_t i = atomic_exchange_explicit(&s->freed, NO_SLOT, memory_order_acquire), newest = i, prev = NO_SLOT;
    while (i != NO_SLOT) { /* the stack is newest first: reverse it */
        uint32_t next = s->slots[i].next_free;
        s->slots[i].next_free = prev;
        prev = i;
        i = next;
    }
    if (prev == NO_SLOT) return;
    if (s->fq_tail == NO_SLOT) s->fq_head = prev;
    else s->slots[s->fq_tail].next_free = prev;
    s->fq_tail = newest;
}

static slot_t *alloc_slot(mw_svc_t *s) {
    if (s->fq_head == NO_SLOT) take_freed(s);
    uint32_t i = s->fq_head;
    if (i != NO_SLOT) {
        s->fq_head = s->slots[i].next_free;
        if (s->fq_head == NO_SLOT) s->fq_tail = NO_SLOT;
    } else {
        i = atomic_load_explicit(&s->hwm, memory_order_relaxed);
        if (i >= s->cap) return NULL;
        init_slot(s, i);
        atomic_store_explicit(&s->hwm, i + 1, memory_order_release); /* loops over [0, hwm) see it whole */
    }
    slot_t *sl = &s->slots[i];
    sl->next_free = NO_SLOT;
    atomic_store(&sl->used, true);
    atomic_fetch_add(&s->nused, 1);
    return sl;
}

static void shrink_posted(void *ud);

/* Any thread, once nothing refers to the slot's connection any more. The
 * push comes before the count drops: a shrink that finds no slot in use
 * finds every free slot on the stack. */
static void free_slot(mw_svc_t *s, slot_t *sl) {
    uint32_t head = atomic_load_explicit(&s->freed, memory_order_relaxed);
    do sl->next_free = head;
    while (!atomic_compare_exchange_weak_explicit(&s->freed, &head, sl->idx, memory_order_release,
                                                  memory_order_relaxed));
    if (atomic_fetch_sub(&s->nused, 1) != 1 || !s->slots_mapped || s->closed_all) return;
    if (slots_seen(s) < SHRINK_MIN) return;
    atomic_fetch_add(&s->refs, 1); /* the Svc outlives the request */
    if (mw_io_post(s->io, shrink_posted, s) < 0) atomic_fetch_sub(&s->refs, 1);
}

/* The last connection has gone: the memory many connections used comes
 * back. The slot table's pages (from mmap) are given back to the kernel
 * with MADV_DONTNEED, read as zero from then on (a zero slot is an unused
 * one), and the table is handed out from its start again, each slot going
 * on from its generation (kept in gens, 4 bytes a slot). glibc keeps the
 * memory freed by the connections (streams, buffers over the pool's bound)
 * in its arenas: malloc_trim(0) hands it back. Runs on the acceptor's
 * thread (the only one that allocates slots), and only after more than
 * SHRINK_MIN slots were in use, so a lone client coming and going costs
 * nothing. */
static void shrink_slots(mw_svc_t *s) {
    if (atomic_load(&s->nused) != 0) return; /* a client came meanwhile */
    uint32_t hw = slots_seen(s);
    if (hw < SHRINK_MIN) return;
    if (!s->gens && !(s->gens = calloc(s->cap, sizeof *s->gens))) return;
    for (uint32_t i = 0; i < hw; i++) s->gens[i] = atomic_load(&s->slots[i].gen);
    atomic_store(&s->freed, NO_SLOT); /* every slot below hw is free: forget the lists */
    s->fq_head = s->fq_tail = NO_SLOT;
    atomic_store(&s->hwm, 0);
    long pg = sysconf(_SC_PAGESIZE);
    size_t bytes = (size_t)hw * sizeof *s->slots, page = pg > 0 ? (size_t)pg : 4096;
    madvise(s->slots, (bytes + page - 1) / page * page, MADV_DONTNEED);
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

static void shrink_posted(void *ud) {
    mw_svc_t *s = ud;
    if (!atomic_load(&s->dead) && !s->closed_all) shrink_slots(s);
    if (atomic_fetch_sub(&s->refs, 1) == 1) svc_release(s);
}

/* The table is zero until used: from mmap when large, so that its pages
 * become resident only as connections first reach them. */
#define SLOTS_MMAP_MIN (256u * 1024u)

static int slots_new(mw_svc_t *s) {
    size_t bytes = (size_t)s->cap * sizeof *s->slots;
    s->fq_head = s->fq_tail = NO_SLOT;
    atomic_init(&s->freed, NO_SLOT);
    atomic_init(&s->hwm, 0);
    if (bytes < SLOTS_MMAP_MIN) {
        s->slots = calloc(s->cap, sizeof *s->slots);
        return s->slots ? 0 : MW_ENOMEM;
    }
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return MW_ENOMEM;
    s->slots = p;
    s->slots_mapped = true;
    return 0;
}

static void slots_free(mw_svc_t *s) {
    free(s->gens);
    if (!s->slots) return;
    for (uint32_t i = 0; i < slots_seen(s); i++) pthread_mutex_destroy(&s->slots[i].mu);
    if (s->slots_mapped) munmap(s->slots, (size_t)s->cap * sizeof *s->slots);
    else free(s->slots);
    s->slots = NULL;
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
        free_slot(s, sl);
        return;
    }
    sl->conn.tx.hook = s->o.on_sent;
    sl->conn.rx.hook = s->o.on_recvd;
    sl->conn.tx.hook_ud = sl->conn.rx.hook_ud = s->o.hook_ud;
    mw_err_clear(&sl->err);
    atomic_store(&sl->open, true);
    atomic_fetch_add(&s->accepted, 1);
    atomic_fetch_add(&s->nconns, 1);
    if (s->o.mode == MW_MODE_EVENT) {
        sl->w = &s->workers[s->next_worker++ % s->nworkers];
        if (on_slot_thread(s, sl, make_id(sl), attach_posted, 0) < 0) {
            mw_err_set(&sl->err, MW_ENOMEM, "cannot hand the connection to its worker");
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
    struct pollfd p = {mw_listener_fd(s->lis), POLLIN, 0};
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
        int r = mw_listener_accept(s->lis, &st, &s->err);
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
    s->active = calloc(s->cap, sizeof *s->active);
    if (slots_new(s) < 0 || !s->active) return mw_err_set(err, MW_ENOMEM, "out of memory");
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
    mw_io_timer_init(&s->t_accept, on_accept_again, s);
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
    /* what every accept would refuse is refused here, loudly */
    uint64_t frame = (uint64_t)(o->conn.max_msg ? o->conn.max_msg : 65536) + 8;
    if (o->conn.rx_buf < frame || o->conn.tx_buf < frame)
        return mw_err_set(err, MW_EINVAL, "buffers (rx %u, tx %u) must each hold one frame of max_msg + 8 (%llu)",
                          o->conn.rx_buf, o->conn.tx_buf, (unsigned long long)frame);
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
    s->proto = s->app = p;
    if (o->session.enabled) {
        s->sessions = true;
        if (!o->session.journal_dir) r = mw_err_set(err, MW_EINVAL, "sessions need opts.session.journal_dir");
        else if (!(s->sproto = mw__sess_proto(p)) || !(s->sess_rx = calloc(1, s->sproto->max_size)) ||
                 mw__svc_sessions_init(&s->stab, o->session.max_sessions) < 0)
            r = mw_err_set(err, MW_ENOMEM, "out of memory");
        if (r < 0) {
            mw_transport_fini(&s->tr);
            free(s->sess_rx);
            free(s->sproto);
            free(s);
            return r;
        }
        s->proto = s->sproto; /* connections decode both */
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

int mw_svc_port(const mw_svc_t *s) { return mw_listener_port(s->lis); }

/* ---- spin/blocking receive ------------------------------------------------ */

int mw_svc_poll(mw_svc_t *s, int64_t timeout_ns) {
    if (s->o.mode == MW_MODE_EVENT) return MW_ESTATE;
    int work = 0;
    if (s->solo && mw_conn_tx_pending(&s->solo->conn)) { /* not on the io: flush it here */
        mw__drv_write(&s->solo->drv);
        work++;
    }
    int r = mw_io_poll(s->io, work ? 0 : timeout_ns);
    return r < 0 ? r : r + work;
}

/* One round-robin pass over the open connections: the first buffered message
 * wins, and the next pass starts after its connection. Spin mode reads a
 * connection on its turn when nothing is buffered (one recv per connection
 * per pass, as a busy-poll loop would); blocking mode reads only what the io
 * found ready, and the solo connection with a blocking read. */
/* Sessions: the next application message of one connection (control
 * messages are handled on the way). As mw__drv_next, or RESCAN when the
 * session closed the connection (the list of open ones changed). */
#define RESCAN 1
static int sess_next(mw_svc_t *s, slot_t *sl, const mw_schema_t **sch, void *msg, size_t cap, bool read) {
    for (;;) {
        int r = mw__drv_next(&sl->drv, sch, s->sess_rx, s->proto->max_size, read);
        if (r != 0) return r;
        int x = sess_in(s, sl, *sch, s->sess_rx);
        if (x < 0) return RESCAN;
        if (x == 0) continue;
        if ((*sch)->size > cap) {
            mw__sess_discard(sl->sess);
            return MW_ETOOBIG;
        }
        memcpy(msg, s->sess_rx, (*sch)->size);
        s->uncommitted = sl->sess;
        return 0;
    }
}

static int scan(mw_svc_t *s, mw_conn_id_t *id, const mw_schema_t **sch, void *msg, size_t cap) {
    for (;;) {
        uint32_t n = s->nactive;
        uint32_t pos = s->rr < n ? s->rr : 0;
        int r = MW_EAGAIN;
        slot_t *sl = NULL;
        for (uint32_t k = 0; k < n; k++) {
            sl = &s->slots[s->active[pos]];
            bool read = s->o.mode == MW_MODE_SPIN || sl == s->solo;
            r = s->sessions ? sess_next(s, sl, sch, msg, cap, read) : mw__drv_next(&sl->drv, sch, msg, cap, read);
            if (r != MW_EAGAIN) break;
            if (++pos == n) pos = 0;
        }
        if (r == RESCAN) continue;
        if (r == 0) {
            s->rr = pos + 1;
            *id = make_id(sl);
            return 0;
        }
        if (r == MW_EAGAIN) return r;
        /* How it ended (MW_ECLOSED, MW_ETRUNC, the error), now that every
         * message before it is out. The list shrinks: scan again. */
        mw__drv_close(&sl->drv, r, true);
    }
}

/* Between the solo connection's blocking reads (inside scan), when nothing
 * came: the listener and timers once 10 ms have passed (mw_svc_recv also
 * polls them every 64th message), and replies still queued. */
static void solo_wait(mw_svc_t *s) {
    slot_t *sl = s->solo;
    uint64_t now = mw_now_ns();
    if (now - s->solo_polled_ns >= (uint64_t)SOLO_WAIT_NS) {
        s->solo_polled_ns = now;
        mw_io_poll(s->io, 0);
        if (s->solo != sl) return; /* a second client arrived: epoll from now on */
    }
    if (mw_conn_tx_pending(&sl->conn)) mw__drv_write(&sl->drv); /* its socket is not on the io */
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
    if (s->uncommitted) { /* the message recv returned last was handled */
        mw__sess_commit(s->uncommitted);
        s->uncommitted = NULL;
    }
    /* The listener, the timers and write readiness get a look at least every
     * millisecond even while messages keep coming (a busy peer must not keep
     * new clients out): the clock is read every 64th call, the io polled
     * only when a millisecond has passed. */
    if (s->solo) {
        /* the listener and timers every 64th message, without a clock read per message */
        if ((++s->solo_tick & (SOLO_POLL_EVERY - 1)) == 0) {
            mw_io_poll(s->io, 0);
            if (s->solo && s->solo != solo_candidate(s)) solo_update(s);
        }
    } else if (poll_due(s)) {
        mw_io_poll(s->io, 0);
        if (s->o.mode == MW_MODE_BLOCKING && s->nactive == 1) solo_update(s); /* one connection again */
    }
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

/* ---- sending, flow control, closing ----------------------------------------- */

/* Runs op on an open connection with its lifetime held: event mode takes the
 * slot's lock so the owning worker cannot tear it down meanwhile. */
#define WITH_SLOT(s, id, sl, expr)                                                    \
    do {                                                                              \
        slot_t *sl = lookup((s), (id));                                               \
        if (!sl) return MW_ECLOSED;                                                   \
        if ((s)->o.mode != MW_MODE_EVENT) return (expr);                              \
        pthread_mutex_lock(&sl->mu);                                                  \
        int r_ = lookup((s), (id)) ? (expr) : MW_ECLOSED;                             \
        pthread_mutex_unlock(&sl->mu);                                                \
        return r_;                                                                    \
    } while (0)

/* One message to an open connection; with sessions, numbered (*seq) and
 * journaled, and MW_ESTATE before its logon. */
static int slot_send(mw_svc_t *s, slot_t *sl, const mw_schema_t *sch, const void *msg, bool more, uint64_t *seq) {
    if (s->sessions) {
        if (!sl->sess) return MW_ESTATE;
        int r = mw__sess_send(sl->sess, sch, msg, more, seq);
        if (r == MW_EAGAIN) atomic_store(&sl->drv.want_drain, true); /* on_drain once the backlog moves */
        return r;
    }
    return more ? mw__drv_enqueue(&sl->drv, sch, msg) : mw__drv_send(&sl->drv, sch, msg);
}

int mw_svc_send_seq(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg, uint64_t *seq) {
    /* A failed send does not close the connection: what the peer sent
     * before it left is still to be delivered; the read side ends it. */
    if (s->solo) { /* a reply queued behind a full socket: back to the io, which watches writability */
        slot_t *sl = lookup(s, id);
        if (!sl) return MW_ECLOSED;
        int r = slot_send(s, sl, sch, msg, false, seq);
        if (sl == s->solo && mw_conn_tx_pending(&sl->conn)) solo_update(s);
        return r;
    }
    WITH_SLOT(s, id, sl, slot_send(s, sl, sch, msg, false, seq));
}

int mw_svc_send_to(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg) {
    return mw_svc_send_seq(s, id, sch, msg, NULL);
}

int mw_svc_send_more(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg) {
    WITH_SLOT(s, id, sl, slot_send(s, sl, sch, msg, true, NULL));
}

int mw_svc_flush(mw_svc_t *s, mw_conn_id_t id) {
    WITH_SLOT(s, id, sl, mw__drv_flush(&sl->drv));
}

int mw_svc_broadcast(mw_svc_t *s, const mw_schema_t *sch, const void *msg) {
    int n = 0;
    for (uint32_t i = 0, hw = slots_seen(s); i < hw; i++) {
        slot_t *sl = &s->slots[i];
        if (atomic_load(&sl->open) && mw_svc_send_to(s, make_id(sl), sch, msg) == 0) n++;
    }
    return n;
}

static void close_on_thread(mw_svc_t *s, slot_t *sl, intptr_t graceful) {
    (void)s;
    mw__drv_close(&sl->drv, MW_ESTATE, graceful != 0);
}

int mw_svc_close_conn(mw_svc_t *s, mw_conn_id_t id) {
    slot_t *sl = lookup(s, id);
    return sl ? on_slot_thread(s, sl, id, close_on_thread, 1) : MW_ECLOSED;
}

int mw_svc_abort_conn(mw_svc_t *s, mw_conn_id_t id) {
    slot_t *sl = lookup(s, id);
    return sl ? on_slot_thread(s, sl, id, close_on_thread, 0) : MW_ECLOSED;
}

static void pause_on_thread(mw_svc_t *s, slot_t *sl, intptr_t paused) {
    mw__drv_pause(&sl->drv, paused != 0);
    solo_update(s); /* a paused connection is not read, blocking or not */
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
    st->refused_nofd = atomic_load(&s->refused_nofd);
    st->closed = atomic_load(&s->closed);
    st->closed_bad_input = atomic_load(&s->closed_bad_input);
    st->msgs_in = atomic_load(&s->msgs_in);
    st->msgs_out = atomic_load(&s->msgs_out);
    st->bytes_in = atomic_load(&s->bytes_in);
    st->bytes_out = atomic_load(&s->bytes_out);
    st->connections = atomic_load(&s->nconns);
    /* add the open connections' counts (racy in event mode; for display) */
    for (uint32_t i = 0, hw = slots_seen(s); i < hw; i++) { /* closed ones were folded in at on_close */
        if (!atomic_load(&s->slots[i].open)) continue;
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
    if (s->io) mw_io_timer_stop(s->io, &s->t_accept);
    mw_listener_free(s->lis);
    s->lis = NULL;
    for (uint32_t i = 0, hw = s->slots ? slots_seen(s) : 0; i < hw; i++) {
        slot_t *sl = &s->slots[i];
        if (!atomic_load(&sl->used)) continue;
        if (sl->drv.state != MW__DRV_LINGER) { /* still open for the application */
            /* shutting down: the WebSocket close says "going away" */
            if (mw__drv_attached(&sl->drv))
                mw_conn_close_transport(&sl->conn, MW_ESTATE, "service shutting down", true);
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
    if (atomic_fetch_sub(&s->refs, 1) == 1) svc_release(s);
}

/* The last reference: the owner's (mw_svc_free) or a queued request's. */
static void svc_release(mw_svc_t *s) {
    slots_free(s);
    if (s->have_tr) mw_transport_fini(&s->tr);
    mw__svc_sessions_fini(&s->stab);
    free(s->sproto);
    free(s->sess_rx);
    free(s->workers);
    free(s->active);
    free(s);
}

/* ---- sessions: public ------------------------------------------------------------ */

int mw_svc_session_send(mw_svc_t *s, const char *session, const mw_schema_t *sch, const void *msg, uint64_t *seq) {
    if (!s->sessions) return MW_EINVAL;
    mw__sess_t *ss;
    mw_err_t e;
    int r = mw__svc_sessions_get(&s->stab, session, &s->o.session, s->app, &ss, &e);
    if (r < 0) {
        mw_err_copy(&s->err, &e);
        return r;
    }
    return mw__sess_send(ss, sch, msg, false, seq);
}

static mw__sess_t *sess_of(const mw_svc_t *s, mw_conn_id_t id) {
    slot_t *sl = lookup(s, id);
    return sl ? sl->sess : NULL;
}

uint64_t mw_svc_rx_seq(const mw_svc_t *s, mw_conn_id_t id) {
    mw__sess_t *ss = sess_of(s, id);
    return ss ? mw__sess_rx_seq(ss) : 0;
}

unsigned mw_svc_rx_flags(const mw_svc_t *s, mw_conn_id_t id) {
    mw__sess_t *ss = sess_of(s, id);
    return ss ? mw__sess_rx_flags(ss) : 0;
}

const char *mw_svc_conn_session(const mw_svc_t *s, mw_conn_id_t id) {
    mw__sess_t *ss = sess_of(s, id);
    return ss ? mw__sess_id(ss) : NULL;
}

int mw_svc_session_stats(mw_svc_t *s, const char *session, mw_session_stats_t *st) {
    mw__sess_t *ss = s->sessions ? mw__svc_sessions_find(&s->stab, session) : NULL;
    if (!ss) return MW_ECLOSED;
    mw__sess_stats(ss, st);
    return 0;
}

static void logout_on_thread(mw_svc_t *s, slot_t *sl, intptr_t arg) {
    (void)s;
    if (sl->sess) mw__sess_logout(sl->sess, MW_LOGOUT_NORMAL, (const char *)arg);
    mw_err_set(&sl->err, MW_ESTATE, "logout: %s", (const char *)arg);
    mw__drv_close(&sl->drv, MW_ESTATE, true);
}

int mw_svc_logout(mw_svc_t *s, mw_conn_id_t id, const char *reason) {
    slot_t *sl = lookup(s, id);
    if (!sl || !sl->sess) return sl ? MW_ESTATE : MW_ECLOSED;
    /* the reason is copied into the message on the slot's thread: keep it static there */
    static const char dflt[] = "logout by the service";
    if (s->o.mode == MW_MODE_EVENT && !mw_io_in_thread(slot_io(s, sl))) reason = dflt;
    return on_slot_thread(s, sl, id, logout_on_thread, (intptr_t)(reason ? reason : dflt));
}
