/* svc_sess.c - the Svc's sessions by id (see svc_sess_impl.h). */
#include "svc_impl.h"
#include "err_impl.h"
#include "tcp_impl.h"

#include <stdarg.h>
#include <stdio.h>

#include <stdlib.h>
#include <string.h>

static uint32_t hash(const char *s) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

int mw__svc_sessions_init(mw__svc_sessions_t *t, uint32_t max) {
    memset(t, 0, sizeof *t);
    t->max = max ? max : 1024;
    t->cap = 16;
    while (t->cap < 2 * t->max) t->cap <<= 1;
    if (!(t->tab = calloc(t->cap, sizeof *t->tab))) return MW_ENOMEM;
    pthread_mutex_init(&t->mu, NULL);
    return 0;
}

void mw__svc_sessions_fini(mw__svc_sessions_t *t) {
    if (!t->tab) return;
    for (uint32_t i = 0; i < t->cap; i++) mw__sess_free(t->tab[i]);
    free(t->tab);
    t->tab = NULL;
    pthread_mutex_destroy(&t->mu);
}

/* The slot of id: its session, or the empty slot where it would go. The
 * table never grows and a session, once in, stays until the Svc goes, so
 * readers need no lock: an entry is published whole (release) and read
 * with acquire; a session added meanwhile is either seen or not yet. */
static uint32_t probe(const mw__svc_sessions_t *t, const char *id) {
    uint32_t i = hash(id) & (t->cap - 1);
    mw__sess_t *e;
    while ((e = __atomic_load_n(&t->tab[i], __ATOMIC_ACQUIRE)) && strcmp(mw__sess_id(e), id) != 0)
        i = (i + 1) & (t->cap - 1);
    return i;
}

/* Any thread, no lock (mw_svc_session_send's one lock is the session's). */
mw__sess_t *mw__svc_sessions_find(mw__svc_sessions_t *t, const char *id) {
    if (!t->tab) return NULL;
    return __atomic_load_n(&t->tab[probe(t, id)], __ATOMIC_ACQUIRE);
}

int mw__svc_sessions_get(mw__svc_sessions_t *t, const char *id, const mw_session_opts_t *o,
                         const mw_protocol_t *app, mw__sess_t **out, mw_err_t *err) {
    pthread_mutex_lock(&t->mu);
    uint32_t i = probe(t, id);
    int r = 0;
    if (!t->tab[i]) {
        if (t->n >= t->max) r = mw__err_set(err, MW_EFULL, "max_sessions %u reached", t->max);
        else {
            mw__sess_t *ns;
            if ((r = mw__sess_open(&ns, o, id, MW__SESS_SERVER, app, err)) == 0) {
                t->n++;
                mw__sess_set_wire(ns, t->wire); /* the connections' first serdes */
                __atomic_store_n(&t->tab[i], ns, __ATOMIC_RELEASE); /* whole before it is seen */
            }
        }
    }
    *out = t->tab[i];
    pthread_mutex_unlock(&t->mu);
    return r;
}

/* ---- sessions (opts.session.enabled) ----------------------------------------------
 * A connection's first message must be mw_logon: it picks (or opens) the
 * session, which is then linked to this connection until it closes. Every
 * later message goes through the session: control messages stay inside,
 * application messages come out numbered. */

/* (called with the session's lock held: no driver callback may run inside,
 * on_drain would pump the session again). Event mode: the session's lock
 * is this connection's slot lock while linked (mw__sess_link_t.lk), held
 * here already: a send on a session takes that one lock for its number,
 * its journal record and its write; the connection outlives the link
 * (drv_closed unlinks before the slot is let go). */
static int sl_send(void *ctx, const mw_schema_t *sch, const void *msg, bool more) {
    slot_t *sl = ctx;
    if (sl->svc->o.mode == MW_MODE_EVENT)
        return more ? mw__drv_enqueue_l(&sl->drv, sch, msg) : mw__drv_send_l(&sl->drv, sch, msg);
    return more ? mw__drv_enqueue(&sl->drv, sch, msg) : mw__drv_send_nocb(&sl->drv, sch, msg);
}

static int sl_flush(void *ctx) {
    slot_t *sl = ctx;
    return sl->svc->o.mode == MW_MODE_EVENT ? mw__drv_flush_l(&sl->drv) : mw__drv_flush_nocb(&sl->drv);
}

static void sl_again(void *ctx) { /* drv_drain pumps */
    slot_t *sl = ctx;
    if (sl->svc->o.mode == MW_MODE_EVENT) mw__drv_want_drain_l(&sl->drv);
    else mw__drv_want_drain(&sl->drv);
}

/* Closes gracefully (a logout the session queued still goes out). */
static void sess_close(slot_t *sl, int reason, const char *why) {
    mw__err_set(&sl->err, reason, "%s", why);
    mw__drv_close(&sl->drv, reason, true);
}

void mw__svc_sess_pump_now(slot_t *sl) {
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

/* A logon to a session still linked to an earlier connection waits (up to
 * session.logon_timeout_ns) for that one to go: a client that restarts
 * after a crash, or comes back over a new path while the old connection
 * has not timed out yet, gets in as soon as the Svc sees the old one end,
 * instead of a refusal it would have to retry. The new connection's reads
 * are paused meanwhile; the logon is tried again every LOGON_RETRY_NS. */
#define LOGON_RETRY_NS (5 * MW_NS_PER_MS)
static int sess_logon(mw_svc_t *s, slot_t *sl, const mw_schema_t *sch, const void *msg, uint64_t now);

static void logon_retry(mw_io_timer_t *t, void *ud) {
    (void)t;
    slot_t *sl = ud;
    if (!sl->pending_logon || !mw__drv_up(&sl->drv)) return;
    mw_logon_t lg = *sl->pending_logon;
    sess_logon(sl->svc, sl, mw_logon_schema(), &lg, mw_io_now(slot_io(sl->svc, sl)));
}

static void logon_wait_end(mw_svc_t *s, slot_t *sl) {
    if (!sl->pending_logon) return;
    free(sl->pending_logon);
    sl->pending_logon = NULL;
    mw_io_timer_stop(slot_io(s, sl), &sl->t_sess);
    mw__drv_pause(&sl->drv, false);
}

static int sess_reject(slot_t *sl, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int logon_wait(mw_svc_t *s, slot_t *sl, const mw_logon_t *lg, uint64_t now, const char *reason) {
    if (!sl->pending_logon) {
        int64_t wait = s->o.session.logon_timeout_ns > 0 ? s->o.session.logon_timeout_ns : 5 * MW_NS_PER_S;
        if (!(sl->pending_logon = malloc(sizeof *lg))) return sess_reject(sl, MW_LOGOUT_REJECTED, "%s", reason);
        *sl->pending_logon = *lg;
        sl->logon_wait_until = now + (uint64_t)wait;
        mw__drv_pause(&sl->drv, true);
        mw_io_timer_init(&sl->t_sess, logon_retry, sl);
    }
    if (now >= sl->logon_wait_until) {
        logon_wait_end(s, sl);
        return sess_reject(sl, MW_LOGOUT_REJECTED, "%s", reason);
    }
    mw_io_timer_after(slot_io(s, sl), &sl->t_sess, LOGON_RETRY_NS);
    return 0;
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
        mw__tcp_peer_name(sl->conn.stream, peer, sizeof peer);
        mw_logon_info_t li = {id, user, pw, peer, lg->next_in, lg->next_out, lg->reset};
        if (s->o.session.on_logon(s->o.ud, &li, reason, sizeof reason) != 0)
            return sess_reject(sl, MW_LOGOUT_REJECTED, "%s", *reason ? reason : "refused by the service");
    }
    mw__sess_t *ss;
    mw_err_t e;
    if (mw__svc_sessions_get(&s->stab, id, &s->o.session, s->app, &ss, &e) < 0)
        return sess_reject(sl, MW_LOGOUT_REJECTED, "%s", mw_err_text(&e));
    mw__sess_link_t l = {sl, sl_send, sl_flush, sl_again, s->o.mode == MW_MODE_EVENT ? &sl->lk : NULL};
    int r = mw__sess_accept_logon(ss, &l, lg, now, reason, sizeof reason);
    if (r == MW_EAGAIN) return logon_wait(s, sl, lg, now, reason);
    logon_wait_end(s, sl);
    if (r < 0) return sess_reject(sl, MW_LOGOUT_REJECTED, "%s", reason);
    __atomic_store_n(&sl->sess, ss, __ATOMIC_RELEASE); /* senders read it without a lock */
    mw_io_timer_init(&sl->t_sess, sess_timer, sl);
    mw_io_timer_after(slot_io(s, sl), &sl->t_sess, (int64_t)(mw__sess_next_due(ss, now) - now));
    if (s->o.session.on_logon_done) s->o.session.on_logon_done(s->o.ud, id, make_id(sl));
    return 0;
}

/* 1: hand msg to the application; 0: the session kept it; < 0: closing. */
int mw__svc_sess_in(mw_svc_t *s, slot_t *sl, const mw_schema_t *sch, const void *msg) {
    uint64_t now = mw_io_now(slot_io(s, sl));
    if (sl->pending_logon) /* a well-behaved client waits for the answer to its logon */
        return sess_reject(sl, MW_LOGOUT_PROTOCOL, "%s before its logon was answered", sch->name);
    if (!sl->sess) return sess_logon(s, sl, sch, msg, now);
    int x = mw__sess_rx(sl->sess, sch, msg, now);
    if (x < 0) sess_close(sl, x, mw__sess_error(sl->sess));
    return x;
}

void mw__svc_sess_down(mw_svc_t *s, slot_t *sl) {
    logon_wait_end(s, sl);
    if (!sl->sess) return;
    mw_io_timer_stop(slot_io(s, sl), &sl->t_sess);
    if (s->uncommitted == sl->sess) s->uncommitted = NULL;
    mw__sess_commit(sl->sess);
    mw__sess_unlink(sl->sess);
    __atomic_store_n(&sl->sess, NULL, __ATOMIC_RELEASE);
}

int mw__svc_sess_next(mw_svc_t *s, slot_t *sl, const mw_schema_t **sch, void *msg, size_t cap, bool read) {
    for (;;) {
        int r = mw__drv_next(&sl->drv, sch, s->sess_rx, s->proto->max_size, read);
        if (r != 0) return r;
        int x = mw__svc_sess_in(s, sl, *sch, s->sess_rx);
        if (x < 0) return MW__SVC_RESCAN;
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

/* ---- sessions: public ------------------------------------------------------------ */

int mw_svc_session_send(mw_svc_t *s, const char *session, const mw_schema_t *sch, const void *msg, uint64_t *seq) {
    if (!s->sessions) return MW_EINVAL;
    mw__sess_t *ss;
    mw_err_t e;
    int r = mw__svc_sessions_get(&s->stab, session, &s->o.session, s->app, &ss, &e);
    if (r < 0) {
        mw__err_copy(&s->err, &e);
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
