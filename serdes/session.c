/* session.c - the session engine: see session_impl.h and, for the wire
 * rules, the README section "Sessions: the wire protocol". */
#include "session_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lock_impl.h"
#include "mw_clock.h"
#include "mw_err.h"
#include "err_impl.h"

#define RESEND_BATCH 256 /* journal records per pump: bounded work and memory */
#define MAX_BACKLOG 4096 /* messages journaled but not yet written, before MW_EAGAIN */

struct mw__sess {
    /* The session's lock (lock_impl.h): the one lock of its send path.
     * lkp points at own_lk, or at the lock of the connection the session
     * is linked to (the Svc slot's, the event Clt's: mw__sess_link_t.lk),
     * so that a send numbers, journals and writes under one lock. lkp
     * changes only with both the old and the new lock held; sess_lock
     * checks it again once it holds what it read. held: the lock the
     * holder took (only the holder reads or writes it). */
    mw__lock_t own_lk;
    mw__lock_t *lkp;
    mw__lock_t *held;
    char id[MW__JNL_SESSION_MAX + 1];
    int role;
    mw_session_opts_t o;
    const mw_protocol_t *app;
    mw__jnl_t *jnl;
    mw_serdes_t fx;        /* the journal's encoding: fixed */
    mw_serdes_t wire;      /* the connections' encoding, for trial encodes (mw__sess_set_wire) */
    bool have_wire;
    uint8_t *enc;          /* app->max_fixed_size */
    void *msg;             /* app->max_size: a journal record decoded for resend */
    bool reset_pending;    /* client: reset at the next logon */
    /* numbers */
    uint64_t in_next;      /* the next inbound number to hand to the application */
    uint64_t possdup_below;/* inbound numbers below it may have been handled before a crash */
    uint64_t sent_next;    /* outbound numbers below it were written to some connection */
    /* the link */
    bool linked, up, logout_sent;
    mw__sess_link_t l;
    uint64_t linked_at;
    uint64_t rx_num;       /* the number the next application message on this link has */
    bool rx_resent;
    bool gap_wait;         /* after a gap: drop until an mw_seq brings the numbers back */
    /* resend */
    bool resending, marker_due;
    mw__jnl_cur_t cur;
    uint64_t resend_end;   /* numbers below it go out flagged resent */
    /* liveness */
    uint64_t hb_ns, last_tx, last_rx, test_id, test_sent_at;
    bool txd, rxd;         /* sent / received since the last pump (no clock per message) */
    uint64_t rr_window_at, rr_count;
    /* delivery */
    uint64_t rx_seq;
    unsigned rx_flags;
    bool delivering;
    mw_session_stats_t st;
    mw_err_t err;
};

static void sess_lock(mw__sess_t *s) {
    for (;;) {
        mw__lock_t *l = __atomic_load_n(&s->lkp, __ATOMIC_ACQUIRE);
        mw__lock(l);
        if (__atomic_load_n(&s->lkp, __ATOMIC_RELAXED) == l) {
            s->held = l;
            return;
        }
        mw__unlock(l); /* it moved (a link or unlink) while we waited: again */
    }
}

static void sess_unlock(mw__sess_t *s) { mw__unlock(s->held); }

/* Holding the session's lock: makes lk (held too) its lock from now on. */
static void lock_move(mw__sess_t *s, mw__lock_t *lk) {
    mw__lock_t *old = s->held;
    __atomic_store_n(&s->lkp, lk, __ATOMIC_RELEASE);
    s->held = lk;
    mw__unlock(old);
}

void mw_session_opts_init(mw_session_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->heartbeat_ns = MW_NS_PER_S;
    o->logon_timeout_ns = 5 * MW_NS_PER_S;
    o->fsync = MW_FSYNC_NONE;
    o->fsync_interval_ns = 100 * MW_NS_PER_MS;
    o->max_sessions = 1024;
    o->max_resend_requests = 8;
}

mw_protocol_t *mw__sess_proto(const mw_protocol_t *app) {
    mw_protocol_t *p = malloc(sizeof *p);
    if (!p) return NULL;
    *p = *app;
    p->ext = &mw_session_protocol;
    if (p->max_size < mw_session_protocol.max_size) p->max_size = mw_session_protocol.max_size;
    if (p->max_fixed_size < mw_session_protocol.max_fixed_size)
        p->max_fixed_size = mw_session_protocol.max_fixed_size;
    return p;
}

static int fail(mw__sess_t *s, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(mw__sess_t *s, int code, const char *fmt, ...) {
    char text[sizeof s->err.text];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    return mw__err_set(&s->err, code, "session %s: %s", s->id, text);
}

int mw__sess_open(mw__sess_t **out, const mw_session_opts_t *o, const char *id, int role,
                  const mw_protocol_t *app, mw_err_t *err) {
    *out = NULL;
    if (!o->journal_dir) return mw__err_set(err, MW_EINVAL, "session: opts.session.journal_dir is required");
    if (!id || !mw__jnl_valid_session(id))
        return mw__err_set(err, MW_EINVAL, "session: bad session id \"%.40s\" (1..31 of A-Z a-z 0-9 _ . -)",
                          id ? id : "");
    mw__sess_t *s = calloc(1, sizeof *s);
    if (!s) return mw__err_set(err, MW_ENOMEM, "session: out of memory");
    snprintf(s->id, sizeof s->id, "%s", id);
    s->role = role;
    s->o = *o;
    if (s->o.heartbeat_ns <= 0) s->o.heartbeat_ns = MW_NS_PER_S;
    if (s->o.logon_timeout_ns <= 0) s->o.logon_timeout_ns = 5 * MW_NS_PER_S;
    if (!s->o.max_resend_requests) s->o.max_resend_requests = 8;
    s->hb_ns = (uint64_t)s->o.heartbeat_ns;
    s->app = app;
    s->reset_pending = role == MW__SESS_CLIENT && o->reset;
    s->lkp = &s->own_lk;
    s->enc = malloc(app->max_fixed_size + 16);
    s->msg = calloc(1, app->max_size + 16);
    int r = s->enc && s->msg ? mw_serdes_init(&s->fx, "fixed", 0) : MW_ENOMEM;
    if (r < 0) {
        free(s->enc);
        free(s->msg);
        free(s);
        return mw__err_set(err, MW_ENOMEM, "session: out of memory");
    }
    mw__jnl_opts_t jo = {.dir = o->journal_dir,
                         .session = id,
                         .fsync = (int)o->fsync,
                         .fsync_interval_ns = o->fsync_interval_ns,
                         .keep_old = o->keep_old};
    if ((r = mw__jnl_open(&s->jnl, &jo, err)) < 0) {
        mw__sess_free(s);
        return r;
    }
    /* Client reset: the new epoch starts now, not at the logon, so what the
     * application sends before the logon is numbered in it (from 1) and kept;
     * the logons say reset=true until one is answered. */
    if (s->reset_pending && (r = mw__jnl_reset(s->jnl)) < 0) {
        mw__err_set(err, r, "session %s: reset: %s", id, mw__jnl_last_error(s->jnl));
        mw__sess_free(s);
        return r;
    }
    s->in_next = mw__jnl_in_next(s->jnl);
    if (s->in_next == 0) s->in_next = 1;
    s->possdup_below = mw__jnl_in_seen(s->jnl);
    s->sent_next = mw__jnl_out_next(s->jnl); /* after a restart: assume all was sent */
    *out = s;
    return 0;
}

int mw__sess_set_wire(mw__sess_t *s, const char *serdes) {
    mw_serdes_t sd;
    if (mw_serdes_init(&sd, serdes ? serdes : "fixed", 0) < 0) return MW_EINVAL;
    sess_lock(s);
    if (s->have_wire) mw_serdes_fini(&s->wire);
    s->wire = sd;
    s->have_wire = true;
    sess_unlock(s);
    return 0;
}

/* Would the wire take it? Only values decide (ranges, UTF-8, NaN over
 * text): a message larger than the trial buffer is not judged here. */
static int wire_trial(mw__sess_t *s, const mw_schema_t *sch, const void *msg) {
    static _Thread_local uint8_t buf[16384];
    if (!s->have_wire) return 0;
    ssize_t n = mw_serdes_encode(&s->wire, sch, msg, buf, sizeof buf);
    return n < 0 && n != MW_ETOOBIG ? (int)n : 0;
}

void mw__sess_free(mw__sess_t *s) {
    if (!s) return;
    if (s->have_wire) mw_serdes_fini(&s->wire);
    if (s->delivering) mw__sess_delivered(s);
    mw__jnl_close(s->jnl);
    if (s->enc) mw_serdes_fini(&s->fx);
    free(s->enc);
    free(s->msg);
    free(s);
}

void mw__sess_share_lock(mw__sess_t *s, mw__lock_t *lk) { s->lkp = lk ? lk : &s->own_lk; }

const char *mw__sess_id(const mw__sess_t *s) { return s->id; }
bool mw__sess_linked(const mw__sess_t *s) { return s->linked; }
bool mw__sess_up(const mw__sess_t *s) { return s->up; }
uint64_t mw__sess_rx_seq(const mw__sess_t *s) { return s->rx_seq; }
unsigned mw__sess_rx_flags(const mw__sess_t *s) { return s->rx_flags; }
const char *mw__sess_error(const mw__sess_t *s) { return mw_err_text(&s->err); }
/* Read without the mutex (a hint for when to pump): an atomic load, as
 * senders on other threads set it under the mutex. */
static bool resending_now(const mw__sess_t *s) { return __atomic_load_n(&s->resending, __ATOMIC_RELAXED); }
bool mw__sess_behind(const mw__sess_t *s) { return resending_now(s); }

/* ---- writing on the link (mutex held) ----------------------------------------- */

static int link_send(mw__sess_t *s, const mw_schema_t *sch, const void *msg, bool more) {
    int r = s->l.send(s->l.ctx, sch, msg, more);
    if (r == 0) s->txd = true;
    return r;
}

static int send_seq_marker(mw__sess_t *s, uint64_t next, bool resent) {
    mw_seq_t m = {.next = next, .resent = resent};
    return link_send(s, mw_seq_schema(), &m, true);
}

static int send_logout(mw__sess_t *s, int code, const char *reason) {
    mw_logout_t m = {.code = (uint16_t)code};
    snprintf(m.reason, sizeof m.reason, "%s", reason ? reason : "");
    s->logout_sent = true;
    int r = link_send(s, mw_logout_schema(), &m, false);
    return r == MW_EAGAIN ? 0 : r; /* queued or not: the close that follows says it */
}

/* Sends the journal from `from` on, before anything new. Numbers below
 * resend_end were written before (on an earlier connection): flagged. */
static int start_resend(mw__sess_t *s, uint64_t from) {
    uint64_t out_next = mw__jnl_out_next(s->jnl);
    if (from >= out_next) { /* the peer has everything */
        s->resending = false;
        s->sent_next = out_next;
        return 0;
    }
    if (from < mw__jnl_out_first(s->jnl))
        return fail(s, MW_ESESSION, "cannot resend from %llu: the journal starts at %llu",
                    (unsigned long long)from, (unsigned long long)mw__jnl_out_first(s->jnl));
    if (mw__jnl_seek(s->jnl, from, &s->cur) < 0)
        return fail(s, MW_ESESSION, "cannot resend from %llu: %s", (unsigned long long)from,
                    mw__jnl_last_error(s->jnl));
    s->resending = true;
    s->resend_end = s->sent_next > from ? s->sent_next : from;
    if (s->resend_end > out_next) s->resend_end = out_next;
    s->marker_due = false;
    if (from < s->resend_end) {
        int r = send_seq_marker(s, from, true);
        if (r < 0 && r != MW_EAGAIN) return r;
        if (r == MW_EAGAIN) { /* no room even for the marker: the peer asks again */
            s->resending = false;
            return fail(s, MW_ESESSION, "no room to start a resend");
        }
        s->marker_due = true;
    }
    return 0;
}

/* Up to RESEND_BATCH journal records onto the link. Work done or < 0. */
static int resend_some(mw__sess_t *s) {
    int n = 0;
    while (s->resending && n < RESEND_BATCH) {
        if (s->marker_due && s->cur.seq >= s->resend_end) {
            int r = send_seq_marker(s, s->resend_end, false);
            if (r == MW_EAGAIN) break;
            if (r < 0) return r;
            s->marker_due = false;
        }
        mw__jnl_cur_t save = s->cur;
        uint64_t seq;
        const uint8_t *p;
        uint32_t len;
        if (mw__jnl_next(s->jnl, &s->cur, &seq, &p, &len) == MW_EAGAIN) {
            s->resending = false; /* caught up: live from here */
            break;
        }
        const mw_schema_t *sch;
        ssize_t d = mw_serdes_decode(&s->fx, p, len, s->app, &sch, s->msg, s->app->max_size);
        if (d < 0)
            return fail(s, MW_ECORRUPT, "journal record %llu does not decode: %s", (unsigned long long)seq,
                        mw_serdes_last_error(&s->fx));
        int r = link_send(s, sch, s->msg, true);
        if (r == MW_EAGAIN) {
            s->cur = save;
            break;
        }
        if (r < 0) return r;
        if (seq < s->resend_end) s->st.resent++;
        if (seq >= s->sent_next) s->sent_next = seq + 1;
        n++;
    }
    if (n || !s->resending) {
        int r = s->l.flush(s->l.ctx);
        if (r < 0 && r != MW_EAGAIN) return r;
    }
    /* A whole batch went and more waits: the next one must not wait for a
     * timer (hb/4 away until it is re-armed) or for a drain that never comes
     * (nothing filled up): ask the owner to call again. */
    if (s->resending && n == RESEND_BATCH && s->l.again) s->l.again(s->l.ctx);
    return n;
}

/* ---- linking and logon ---------------------------------------------------------- */

/* A peer's heartbeat interval, kept within 10 ms .. 1 h: a client cannot
 * make the Svc run a timer per millisecond. */
#define HB_MIN_MS 10u
#define HB_MAX_MS 3600000u
static uint64_t hb_clamp(uint32_t ms) {
    return (uint64_t)(ms < HB_MIN_MS ? HB_MIN_MS : ms > HB_MAX_MS ? HB_MAX_MS : ms) * MW_NS_PER_MS;
}

static void link_reset(mw__sess_t *s, const mw__sess_link_t *l, uint64_t now) {
    s->l = *l;
    s->linked = true;
    s->up = false;
    s->logout_sent = false;
    s->resending = s->marker_due = s->gap_wait = false;
    s->rx_resent = false;
    s->linked_at = s->last_rx = s->last_tx = now;
    s->rxd = s->txd = false;
    s->test_sent_at = 0;
    s->rr_window_at = now;
    s->rr_count = 0;
}

int mw__sess_link(mw__sess_t *s, const mw__sess_link_t *l, uint64_t now) {
    sess_lock(s);
    if (l->lk && l->lk != s->held) {
        mw__lock(l->lk);
        lock_move(s, l->lk);
    }
    link_reset(s, l, now);
    int r = 0;
    if (s->role == MW__SESS_CLIENT) { /* (a reset rolled the journal at open) */
        mw_logon_t m = {.next_in = s->in_next,
                        .next_out = mw__jnl_out_next(s->jnl),
                        .heartbeat_ms = (uint32_t)(s->hb_ns / MW_NS_PER_MS),
                        .reset = s->reset_pending};
        snprintf(m.session, sizeof m.session, "%s", s->id);
        snprintf(m.user, sizeof m.user, "%s", s->o.user ? s->o.user : "");
        snprintf(m.password, sizeof m.password, "%s", s->o.password ? s->o.password : "");
        r = link_send(s, mw_logon_schema(), &m, false);
        if (r == MW_EAGAIN) r = fail(s, MW_EAGAIN, "no room for the logon");
    }
    sess_unlock(s);
    return r;
}

void mw__sess_unlink(mw__sess_t *s) {
    sess_lock(s);
    s->linked = s->up = s->resending = false;
    if (s->held != &s->own_lk && s->l.lk == s->held) { /* back to its own lock (the connection goes) */
        mw__lock(&s->own_lk);
        lock_move(s, &s->own_lk);
    }
    sess_unlock(s);
}

int mw__sess_accept_logon(mw__sess_t *s, const mw__sess_link_t *l, const mw_logon_t *lg, uint64_t now,
                          char *reason, size_t cap) {
    sess_lock(s);
    int r = 0;
    if (s->linked) { /* the owner may wait for that connection to go, then ask again */
        snprintf(reason, cap, "session %s is logged on from another connection", s->id);
        r = MW_EAGAIN;
        goto out;
    }
    /* checked against the numbers the session will have (1 after a reset),
     * before anything changes: a refused logon leaves the session as it was */
    uint64_t out_next = lg->reset ? 1 : mw__jnl_out_next(s->jnl);
    uint64_t out_first = lg->reset ? 1 : mw__jnl_out_first(s->jnl);
    if (lg->next_in > out_next) {
        snprintf(reason, cap, "you expect %llu but we sent only up to %llu", (unsigned long long)lg->next_in,
                 (unsigned long long)(out_next - 1));
        r = MW_ESESSION;
        goto out;
    }
    if (lg->next_in < out_first) {
        snprintf(reason, cap, "cannot resend from %llu: the journal starts at %llu",
                 (unsigned long long)lg->next_in, (unsigned long long)out_first);
        r = MW_ESESSION;
        goto out;
    }
    if (lg->next_out < s->in_next && !lg->reset) {
        /* the client lost messages it had sent us (its journal is behind ours) */
        snprintf(reason, cap, "you will send %llu but we have received up to %llu",
                 (unsigned long long)lg->next_out, (unsigned long long)(s->in_next - 1));
        r = MW_ESESSION;
        goto out;
    }
    if (lg->reset) {
        if ((r = mw__jnl_reset(s->jnl)) < 0) {
            snprintf(reason, cap, "reset failed: %s", mw__jnl_last_error(s->jnl));
            goto out;
        }
        s->in_next = s->possdup_below = s->sent_next = 1;
    }
    if (l->lk && l->lk != s->held) { /* the connection's lock is the session's while linked */
        mw__lock(l->lk);
        lock_move(s, l->lk);
    }
    link_reset(s, l, now);
    s->hb_ns = lg->heartbeat_ms ? hb_clamp(lg->heartbeat_ms) : (uint64_t)s->o.heartbeat_ns; /* 0: ours */
    mw_logon_ack_t a = {.next_in = s->in_next,
                        .next_out = out_next,
                        .heartbeat_ms = (uint32_t)(s->hb_ns / MW_NS_PER_MS),
                        .reset = lg->reset};
    snprintf(a.session, sizeof a.session, "%s", s->id);
    if ((r = link_send(s, mw_logon_ack_schema(), &a, true)) < 0) {
        snprintf(reason, cap, "cannot answer the logon");
        s->linked = false;
        goto out;
    }
    s->up = true;
    s->rx_num = s->in_next;
    s->st.logons++;
    if ((r = start_resend(s, lg->next_in)) == 0) r = resend_some(s);
    if (r < 0) {
        snprintf(reason, cap, "%s", mw_err_text(&s->err));
        s->linked = s->up = false;
        goto out;
    }
    r = s->l.flush(s->l.ctx);
    r = r == MW_EAGAIN ? 0 : r;
out:
    if (!s->linked && s->held != &s->own_lk && s->held == l->lk) { /* refused after the move: back */
        mw__lock(&s->own_lk);
        lock_move(s, &s->own_lk);
    }
    sess_unlock(s);
    return r == MW_EAGAIN ? r : r < 0 ? MW_ESESSION : 0;
}

/* Client: the server's answer. */
static int on_ack(mw__sess_t *s, const mw_logon_ack_t *a) {
    if (strncmp(a->session, s->id, sizeof a->session) != 0)
        return fail(s, MW_ESESSION, "logon answered for session \"%.32s\"", a->session);
    if (s->reset_pending && !a->reset) return fail(s, MW_ESESSION, "reset asked for but not done by the server");
    uint64_t out_next = mw__jnl_out_next(s->jnl);
    if (a->next_in > out_next) {
        fail(s, MW_ESESSION, "the server expects %llu but we sent only up to %llu",
             (unsigned long long)a->next_in, (unsigned long long)(out_next - 1));
        send_logout(s, MW_LOGOUT_PROTOCOL, mw_err_text(&s->err));
        return MW_ESESSION;
    }
    if (a->next_out < s->in_next) {
        fail(s, MW_ESESSION, "the server will send %llu but we have received up to %llu",
             (unsigned long long)a->next_out, (unsigned long long)(s->in_next - 1));
        send_logout(s, MW_LOGOUT_PROTOCOL, mw_err_text(&s->err));
        return MW_ESESSION;
    }
    s->reset_pending = false;
    s->up = true;
    s->rx_num = s->in_next;
    if (a->heartbeat_ms) s->hb_ns = hb_clamp(a->heartbeat_ms);
    s->st.logons++;
    int r = start_resend(s, a->next_in);
    if (r == 0) r = resend_some(s);
    return r < 0 ? r : 0;
}

static int protocol_error(mw__sess_t *s, const char *what) {
    fail(s, MW_ESESSION, "%s", what);
    send_logout(s, MW_LOGOUT_PROTOCOL, what);
    return MW_ESESSION;
}

static int on_resend_request(mw__sess_t *s, const mw_resend_request_t *rq, uint64_t now) {
    s->st.resend_requests++;
    if (!now) now = mw_now_ns(); /* (callers on the hot path pass 0) */
    if (now - s->rr_window_at >= s->hb_ns) {
        s->rr_window_at = now;
        s->rr_count = 0;
    }
    if (++s->rr_count > s->o.max_resend_requests) {
        fail(s, MW_ESESSION, "more than %u resend requests within %llu ms", s->o.max_resend_requests,
             (unsigned long long)(s->hb_ns / MW_NS_PER_MS));
        send_logout(s, MW_LOGOUT_RESEND_FLOOD, mw_err_text(&s->err));
        return MW_ESESSION;
    }
    uint64_t out_next = mw__jnl_out_next(s->jnl);
    if (rq->from > out_next || rq->from == 0) {
        char why[128];
        snprintf(why, sizeof why, "resend from %llu asked for, but we sent only up to %llu",
                 (unsigned long long)rq->from, (unsigned long long)(out_next - 1));
        return protocol_error(s, why);
    }
    /* everything below sent_next went out on this link already */
    if (s->resending && s->cur.seq > s->sent_next) s->sent_next = s->cur.seq;
    int r = start_resend(s, rq->from);
    if (r < 0) {
        send_logout(s, MW_LOGOUT_PROTOCOL, mw_err_text(&s->err));
        return r;
    }
    return 0;
}

static int on_control(mw__sess_t *s, const mw_schema_t *sch, const void *msg, uint64_t now) {
    switch (sch->tag) {
    case mw_logon_ack_TAG:
        if (s->role != MW__SESS_CLIENT || s->up) return protocol_error(s, "unexpected mw_logon_ack");
        return on_ack(s, msg);
    case mw_logout_TAG: {
        const mw_logout_t *m = msg;
        bool answered = s->logout_sent;
        if (!answered) send_logout(s, MW_LOGOUT_NORMAL, "logout answered");
        s->up = false;
        if (m->code == MW_LOGOUT_NORMAL) {
            fail(s, MW_ECLOSED, "logout%s: %.128s", answered ? " done" : " by the peer", m->reason);
            return MW_ECLOSED;
        }
        if (m->code == MW_LOGOUT_REJECTED) return fail(s, MW_ESESSION, "logon rejected: %.128s", m->reason);
        return fail(s, MW_ESESSION, "logout by the peer (code %u): %.128s", m->code, m->reason);
    }
    default:
        break;
    }
    if (!s->up) return protocol_error(s, "a session message before the logon completed");
    switch (sch->tag) {
    case mw_heartbeat_TAG:
        return 0;
    case mw_test_request_TAG: {
        mw_heartbeat_t h = {.test_id = ((const mw_test_request_t *)msg)->test_id};
        int r = link_send(s, mw_heartbeat_schema(), &h, false);
        return r == MW_EAGAIN ? 0 : r; /* a full queue answers by itself soon */
    }
    case mw_resend_request_TAG:
        return on_resend_request(s, msg, now);
    case mw_seq_TAG: {
        const mw_seq_t *m = msg;
        if (m->next == 0) return protocol_error(s, "mw_seq with next 0");
        if (m->next > s->in_next) {
            s->st.gaps++;
            if (!s->gap_wait) {
                mw_resend_request_t rq = {.from = s->in_next, .to = 0};
                int r = link_send(s, mw_resend_request_schema(), &rq, false);
                if (r < 0 && r != MW_EAGAIN) return r;
                /* not written (tx full): no wait for an answer that cannot
                 * come; the next application message asks again */
                s->gap_wait = r == 0;
            }
        } else {
            s->gap_wait = false;
        }
        s->rx_num = m->next;
        s->rx_resent = m->resent;
        return 0;
    }
    default: { /* mw_logon again, or the client got one */
        char why[96];
        snprintf(why, sizeof why, "unexpected %s", sch->name);
        return protocol_error(s, why);
    }
    }
}

void mw__sess_delivered(mw__sess_t *s) {
    if (!s->delivering) return;
    s->delivering = false;
    s->in_next = s->rx_seq + 1;
    mw__jnl_set_in_next(s->jnl, s->in_next);
}

void mw__sess_commit(mw__sess_t *s) {
    if (!s->delivering) return;
    sess_lock(s);
    mw__sess_delivered(s);
    sess_unlock(s);
}

void mw__sess_discard(mw__sess_t *s) {
    sess_lock(s);
    s->delivering = false;
    sess_unlock(s);
}

int mw__sess_flush(mw__sess_t *s) {
    sess_lock(s);
    int r = MW_ECLOSED;
    if (s->linked) {
        r = s->up && s->resending ? resend_some(s) : 0; /* journaled messages waiting first */
        if (r >= 0) r = s->l.flush(s->l.ctx);
        if (r == 0 && s->resending) r = MW_EAGAIN;
    }
    sess_unlock(s);
    return r;
}

int mw__sess_rx(mw__sess_t *s, const mw_schema_t *sch, const void *msg, uint64_t now) {
    sess_lock(s);
    if (s->delivering) mw__sess_delivered(s);
    (void)now;
    s->rxd = true;
    int r;
    if (mw_session_tag(sch->tag)) {
        r = on_control(s, sch, msg, now);
    } else if (!s->up) {
        r = protocol_error(s, "an application message before the logon completed");
    } else {
        uint64_t n = s->rx_num++;
        r = 0;
        if (s->gap_wait) {
            /* dropped: the resend brings it again */
        } else if (n < s->in_next) {
            s->st.dups_dropped++;
        } else if (n > s->in_next) { /* cannot happen without an mw_seq; be safe */
            s->st.gaps++;
            mw_resend_request_t rq = {.from = s->in_next, .to = 0};
            r = link_send(s, mw_resend_request_schema(), &rq, false);
            s->gap_wait = r == 0; /* not written (tx full): the next message asks again */
            r = r == MW_EAGAIN ? 0 : r;
        } else {
            /* once per number: a message delivered again (after a crash in
             * its handler, or not handed over) is in the file already */
            if (s->o.journal_in && n > mw__jnl_in_last(s->jnl)) {
                ssize_t len = mw_serdes_encode(&s->fx, sch, msg, s->enc, s->app->max_fixed_size + 16);
                if (len < 0 || mw__jnl_append(s->jnl, MW__JNL_IN, n, s->enc, (uint32_t)len) < 0) {
                    r = fail(s, MW_ESYS, "journal: %s", len < 0 ? "encode failed" : mw__jnl_last_error(s->jnl));
                    goto out;
                }
            }
            s->rx_seq = n;
            s->rx_flags = (s->rx_resent ? MW_SEQ_RESENT : 0u) | (n < s->possdup_below ? MW_SEQ_POSSDUP : 0u);
            mw__jnl_set_in_seen(s->jnl, n + 1);
            s->delivering = true;
            r = 1;
        }
    }
out:
    sess_unlock(s);
    return r;
}

/* ---- sending -------------------------------------------------------------------- */

/* An error of the link's send that means "this message cannot be encoded on
 * this connection" (nothing queued, the connection is fine), as opposed to
 * MW_EAGAIN (full) and the connection's I/O errors. */
static bool wire_refused(int r) {
    switch (r) {
    case MW_ERANGE: case MW_EUTF8: case MW_ETOOBIG: case MW_EINVAL: case MW_EFIELD: case MW_ETYPE:
    case MW_ETAG: case MW_EMISSING:
        return true;
    default:
        return false;
    }
}

int mw__sess_send(mw__sess_t *s, const mw_schema_t *sch, const void *msg, bool more, uint64_t *seq) {
    if (mw_session_tag(sch->tag)) return MW_EINVAL;
    sess_lock(s);
    int r;
    ssize_t len = mw_serdes_encode(&s->fx, sch, msg, s->enc, s->app->max_fixed_size + 16);
    if (len < 0) {
        r = (int)len;
        goto out;
    }
    uint64_t n = mw__jnl_out_next(s->jnl);
    /* Behind a resend (or a full socket) messages wait in the journal, up
     * to MAX_BACKLOG of them; past that the caller gets MW_EAGAIN. */
    if (s->up && s->resending && n - s->sent_next >= MAX_BACKLOG) {
        r = MW_EAGAIN;
        goto out;
    }
    /* A message that will wait in the journal is tried on the wire's serdes
     * now: refused later, at a resend, it could never go out. */
    if (!(s->up && !s->resending) && (r = wire_trial(s, sch, msg)) < 0) goto out;
    /* Journaled first: a number never reaches the wire unless a restarted
     * process can send it again. */
    if ((r = mw__jnl_append(s->jnl, MW__JNL_OUT, n, s->enc, (uint32_t)len)) < 0) {
        r = fail(s, r, "journal: %s", mw__jnl_last_error(s->jnl));
        goto out;
    }
    if (seq) *seq = n;
    if (s->up && !s->resending) {
        r = link_send(s, sch, msg, more);
        if (r == 0) {
            s->sent_next = n + 1;
        } else if (wire_refused(r)) {
            /* The connection's serdes cannot encode it (text has no NaN):
             * nothing of it was queued, so the number is taken back; kept,
             * it would shift the peer's count (it numbers what arrives). */
            if (mw__jnl_drop_last(s->jnl, n) < 0)
                r = fail(s, MW_ESESSION, "journal: %s", mw__jnl_last_error(s->jnl));
            else if (seq)
                *seq = 0;
        } else { /* full (MW_EAGAIN) or the link failed: it is journaled and
                  * goes out from there, on this link or after the next logon,
                  * so the caller must not send it again: accepted. */
            r = 0;
            if (mw__jnl_seek(s->jnl, n, &s->cur) == 0) {
                s->resending = true;
                s->marker_due = false;
                s->resend_end = n; /* nothing flagged resent */
            }
        }
    }
out:
    sess_unlock(s);
    return r;
}

/* ---- time --------------------------------------------------------------------- */

int mw__sess_pump(mw__sess_t *s, uint64_t now) {
    sess_lock(s);
    int work = 0, r = 0;
    int synced = mw__jnl_tick(s->jnl, now); /* fsync interval */
    if (synced < 0) {
        r = fail(s, synced, "journal: %s", mw__jnl_last_error(s->jnl));
        goto out;
    }
    work += synced;
    if (!s->linked) goto out;
    if (!s->up) {
        if (now - s->linked_at >= (uint64_t)s->o.logon_timeout_ns && !s->logout_sent)
            r = fail(s, MW_ETIMEDOUT, "no logon %s within %lld ms", s->role == MW__SESS_CLIENT ? "answer" : "",
                     (long long)(s->o.logon_timeout_ns / MW_NS_PER_MS));
        goto out;
    }
    if (s->resending) {
        if ((r = resend_some(s)) < 0) goto out;
        work += r;
        r = 0;
    }
    if (s->rxd) { /* heard from the peer since the last pump */
        s->last_rx = now;
        s->test_sent_at = 0;
        s->rxd = false;
    }
    if (s->txd) {
        s->last_tx = now;
        s->txd = false;
    }
    uint64_t silent = now - s->last_rx;
    if (silent >= 3 * s->hb_ns) {
        r = fail(s, MW_ETIMEDOUT, "peer silent for %llu ms (heartbeat %llu ms)",
                 (unsigned long long)(silent / MW_NS_PER_MS), (unsigned long long)(s->hb_ns / MW_NS_PER_MS));
        send_logout(s, MW_LOGOUT_SILENT, mw_err_text(&s->err));
        goto out;
    }
    if (silent >= 2 * s->hb_ns && !s->test_sent_at) {
        mw_test_request_t t = {.test_id = ++s->test_id};
        if (link_send(s, mw_test_request_schema(), &t, false) == 0) {
            s->test_sent_at = now;
            work++;
        }
    }
    if (now - s->last_tx >= s->hb_ns) {
        mw_heartbeat_t h = {0};
        if (link_send(s, mw_heartbeat_schema(), &h, false) == 0) work++;
    }
out:
    sess_unlock(s);
    return r < 0 ? r : work;
}

uint64_t mw__sess_next_due(const mw__sess_t *s, uint64_t now) {
    /* A resend in progress goes on at once (its next RESEND_BATCH; a full
     * socket stops a batch early, so this is a 1 ms retry, not a spin), not
     * at the heartbeat's pace: 256 records per hb/4 was ~1000 messages/s.
     * (A sender on another thread may set it meanwhile: a hint, read so.) */
    if (resending_now(s)) return now + MW_NS_PER_MS;
    uint64_t step = s->hb_ns / 4;
    if (s->o.fsync == MW_FSYNC_INTERVAL && (uint64_t)s->o.fsync_interval_ns < step)
        step = (uint64_t)s->o.fsync_interval_ns;
    if (step < MW_NS_PER_MS) step = MW_NS_PER_MS;
    return now + step;
}

int mw__sess_logout(mw__sess_t *s, int code, const char *reason) {
    sess_lock(s);
    int r = s->linked ? send_logout(s, code, reason) : MW_ECLOSED;
    sess_unlock(s);
    return r;
}

void mw__sess_stats(mw__sess_t *s, mw_session_stats_t *st) {
    sess_lock(s);
    *st = s->st;
    st->next_in = s->delivering ? s->rx_seq + 1 : s->in_next; /* handed over counts */
    st->next_out = mw__jnl_out_next(s->jnl);
    st->logged_on = s->up;
    mw__jnl_stats_t js;
    mw__jnl_stats(s->jnl, &js);
    st->journal_bytes = js.bytes;
    st->fsyncs = js.fsyncs;
    st->epoch = js.epoch;
    sess_unlock(s);
}
