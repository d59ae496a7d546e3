/* clt_sess.c - sessions on a Clt (opts.session.enabled): the logon of a
 * synchronous connect, sequenced send and receive for the spin and blocking
 * modes, and the event-mode hooks clt_ep.c calls. The engine itself is
 * serdes/session.c. */
#include "clt_impl.h"
#include "clock_impl.h"
#include "conn_impl.h"
#include "err_impl.h"
#include "stream_impl.h"

#include <stdlib.h>
#include <string.h>

/* ---- the session's way onto the connection ------------------------------------ */

/* (called with the session's lock held: no driver callback may run inside,
 * on_drain would pump the session again). Event mode: the session's lock
 * is txlk (mw__sess_share_lock at open), the one lock of the conn and its
 * streams, held here already: the _l / _nl functions. */
static int link_send(void *ctx, const mw_schema_t *s, const void *msg, bool more) {
    mw_clt_t *c = ctx;
    if (!c->have_conn) return MW_ECLOSED;
    if (c->o.mode == MW_MODE_EVENT) {
        int r = mw__drv_attached(&c->drv) ? (more ? mw__drv_enqueue_l(&c->drv, s, msg) : mw__drv_send_l(&c->drv, s, msg))
                : more ? mw__conn_enqueue_nl(&c->conn, s, msg) : mw__conn_send_q_nl(&c->conn, s, msg);
        return r == 1 ? 0 : r;
    }
    return more ? mw__conn_enqueue(&c->conn, s, msg) : mw__conn_send(&c->conn, s, msg);
}

static int link_flush(void *ctx) {
    mw_clt_t *c = ctx;
    if (!c->have_conn) return MW_ECLOSED;
    if (c->o.mode == MW_MODE_EVENT)
        return mw__drv_attached(&c->drv) ? mw__drv_flush_l(&c->drv) : mw__conn_flush_nl(&c->conn);
    return mw__conn_flush(&c->conn);
}

/* event mode: drv_drain pumps (spin/blocking pump on every call while behind) */
static void link_again(void *ctx) {
    mw_clt_t *c = ctx;
    if (c->have_conn && c->o.mode == MW_MODE_EVENT && mw__drv_attached(&c->drv)) mw__drv_want_drain_l(&c->drv);
}

static void link_of(mw_clt_t *c, mw__sess_link_t *l) { *l = (mw__sess_link_t){c, link_send, link_flush, link_again}; }

int mw__clt_sess_open(mw_clt_t *c, mw_err_t *err) {
    if (!(c->sproto = mw__sess_proto(c->proto)) || !(c->sess_rx = calloc(1, c->sproto->max_size)))
        return mw__err_set(err, MW_ENOMEM, "out of memory");
    int r = mw__sess_open(&c->sess, &c->o.session, c->o.session.id, MW__SESS_CLIENT, c->proto, err);
    if (r == 0 && c->o.mode == MW_MODE_EVENT) mw__sess_share_lock(c->sess, &c->txlk); /* the one lock */
    if (r == 0 && mw__sess_set_wire(c->sess, c->o.conn.serdes) < 0)
        r = mw__err_set(err, MW_EINVAL, "unknown serdes \"%s\"", c->o.conn.serdes);
    if (r == 0) c->proto = c->sproto; /* the connection decodes both */
    return r;
}

void mw__clt_sess_free(mw_clt_t *c) {
    mw__sess_free(c->sess);
    c->sess = NULL;
    free(c->sproto);
    c->sproto = NULL;
    free(c->sess_rx);
    c->sess_rx = NULL;
}

/* ---- spin and blocking ---------------------------------------------------------- */

static int sess_fail(mw_clt_t *c, int r) {
    c->open = false;
    mw__err_set(&c->err, r, "%s", mw__sess_error(c->sess));
    if (c->have_conn) {
        mw__conn_flush(&c->conn); /* a logout the session queued, if the socket takes it */
        mw__conn_close_transport(&c->conn, r, mw__sess_error(c->sess), false);
    }
    return r;
}

static int wait_io(mw_clt_t *c, uint64_t until) {
    uint64_t now = mw_now_ns();
    if (now >= until) return MW_ETIMEDOUT;
    int want = MW_WANT_READ | (mw__conn_tx_pending(&c->conn) ? MW_WANT_WRITE : 0);
    int sw = mw__stream_want(c->conn.stream);
    int r = mw__stream_wait(c->conn.stream, sw ? sw : want, (int64_t)(until - now));
    return r == MW_ETIMEDOUT ? 0 : r < 0 ? r : 0; /* the caller checks the clock */
}

int mw__clt_sess_logon_sync(mw_clt_t *c, mw_err_t *err) {
    mw__sess_link_t l;
    link_of(c, &l);
    uint64_t now = mw_now_ns();
    int r = mw__sess_link(c->sess, &l, now);
    if (r < 0) return mw__err_set(err, r, "%s", mw__sess_error(c->sess));
    uint64_t dl = now + (uint64_t)(c->o.session.logon_timeout_ns > 0 ? c->o.session.logon_timeout_ns
                                                                     : 5 * MW_NS_PER_S);
    while (!mw__sess_up(c->sess)) {
        if (mw__conn_tx_pending(&c->conn)) {
            int f = mw__conn_flush(&c->conn);
            if (f < 0 && f != MW_EAGAIN) return mw__err_set(err, f, "logon: %s", mw__conn_last_error(&c->conn));
        }
        const mw_schema_t *sch;
        r = mw__clt_read(c, &sch, c->sess_rx, c->proto->max_size);
        if (r == 0) {
            int x = mw__sess_rx(c->sess, sch, c->sess_rx, mw_now_ns());
            if (x < 0) {
                mw__conn_flush(&c->conn);
                return mw__err_set(err, x == MW_ECLOSED ? MW_ESESSION : x, "%s", mw__sess_error(c->sess));
            }
            continue;
        }
        if (r == MW_ECLOSED)
            return mw__err_set(err, MW_ESESSION, "session %s: the server closed the connection during the logon",
                              c->o.session.id);
        if (r != MW_EAGAIN) return mw__err_set(err, r, "logon: %s", mw__conn_last_error(&c->conn));
        if (mw_now_ns() >= dl || wait_io(c, dl) < 0 || mw_now_ns() >= dl)
            return mw__err_set(err, MW_ETIMEDOUT, "session %s: no logon answer within %lld ms", c->o.session.id,
                              (long long)((int64_t)(dl - now) / MW_NS_PER_MS));
    }
    c->sess_due = mw__sess_next_due(c->sess, mw_now_ns());
    return 0;
}

void mw__clt_sess_pump_due(mw_clt_t *c) {
    bool behind = mw__sess_behind(c->sess);
    /* spin: the clock every 64th call (a busy loop calls often enough) */
    if (!behind && c->o.mode == MW_MODE_SPIN && (++c->sess_tick & 63) != 0) return;
    uint64_t now = mw_now_ns();
    if ((now < c->sess_due && !behind) || !c->open) return;
    int r = mw__sess_pump(c->sess, now);
    c->sess_due = mw__sess_next_due(c->sess, now);
    if (r < 0) sess_fail(c, r);
}

int mw__clt_sess_send(mw_clt_t *c, const mw_schema_t *s, const void *msg, bool more, uint64_t *seq) {
    if (c->o.mode != MW_MODE_EVENT) {
        if (!c->open) return MW_ECLOSED;
        mw__clt_sess_pump_due(c);
    }
    return mw__sess_send(c->sess, s, msg, more, seq);
}

/* The next application message (control messages are handled on the way).
 * Spin: MW_EAGAIN when none is here. Blocking: waits up to timeout_ns in
 * poll(), waking for the session's heartbeats. */
int mw__clt_sess_recv(mw_clt_t *c, const mw_schema_t **s, void *msg, size_t cap) {
    if (!c->have_conn || !c->open) return MW_ECLOSED;
    mw__sess_commit(c->sess); /* the previous message was handled */
    bool blocking = c->o.mode == MW_MODE_BLOCKING;
    uint64_t dl = blocking && c->o.sync.timeout_ns >= 0 ? mw__deadline_in(NULL, c->o.sync.timeout_ns) : UINT64_MAX;
    for (;;) {
        mw__clt_sess_pump_due(c);
        if (!c->open) return c->err.code ? c->err.code : MW_ECLOSED;
        if (!c->split && mw__conn_tx_pending(&c->conn)) mw__sess_flush(c->sess);
        const mw_schema_t *sch;
        int r = mw__clt_read(c, &sch, c->sess_rx, c->proto->max_size);
        if (r == 0) {
            int x = mw__sess_rx(c->sess, sch, c->sess_rx, 0);
            if (x < 0) return sess_fail(c, x);
            if (x == 0) continue;
            if (sch->size > cap) {
                mw__sess_discard(c->sess); /* not handed over: not counted, it comes again */
                mw__err_set(&c->err, MW_ETOOBIG, "recv: %s needs %u bytes, cap is %zu", sch->name, sch->size, cap);
                return MW_ETOOBIG;
            }
            memcpy(msg, c->sess_rx, sch->size);
            *s = sch;
            return 0;
        }
        if (r != MW_EAGAIN) {
            c->open = false;
            return r;
        }
        if (!blocking) return MW_EAGAIN;
        uint64_t now = mw_now_ns();
        if (now >= dl) {
            mw__err_set(&c->err, MW_ETIMEDOUT, "recv: no message within timeout_ns (%lld ms)",
                       (long long)(c->o.sync.timeout_ns / MW_NS_PER_MS));
            return MW_ETIMEDOUT;
        }
        uint64_t until = c->sess_due < dl ? c->sess_due : dl;
        if (until <= now) until = now + MW_NS_PER_MS;
        if ((r = wait_io(c, until)) < 0) {
            c->open = false;
            return r;
        }
    }
}

/* ---- event mode (io thread) ------------------------------------------------------ */

static void on_sess_timer(mw_io_timer_t *t, void *ud) {
    mw_clt_t *c = ud;
    if (!c->sess || !mw__drv_attached(&c->drv)) return;
    uint64_t now = mw_io_now(c->o.event.io);
    int r = mw__sess_pump(c->sess, now);
    if (r < 0) {
        mw__err_set(&c->err, r, "%s", mw__sess_error(c->sess));
        mw__drv_close(&c->drv, r, true);
        return;
    }
    uint64_t due = mw__sess_next_due(c->sess, now);
    mw_io_timer_after(c->o.event.io, t, (int64_t)(due - now));
}

void mw__clt_sess_up(mw_clt_t *c) {
    mw__sess_link_t l;
    link_of(c, &l);
    uint64_t now = mw_io_now(c->o.event.io);
    int r = mw__sess_link(c->sess, &l, now);
    if (r < 0) {
        mw__err_set(&c->err, r, "%s", mw__sess_error(c->sess));
        mw__drv_close(&c->drv, r, false);
        return;
    }
    mw_io_timer_init(&c->t_sess, on_sess_timer, c);
    mw_io_timer_after(c->o.event.io, &c->t_sess, (int64_t)(mw__sess_next_due(c->sess, now) - now));
}

int mw__clt_sess_msg(mw_clt_t *c, const mw_schema_t *s, const void *msg) {
    int x = mw__sess_rx(c->sess, s, msg, mw_io_now(c->o.event.io));
    if (x < 0) mw__err_set(&c->err, x, "%s", mw__sess_error(c->sess));
    return x;
}

void mw__clt_sess_down(mw_clt_t *c) {
    mw_io_timer_stop(c->o.event.io, &c->t_sess);
    mw__sess_unlink(c->sess);
}

/* ---- public ----------------------------------------------------------------------- */

uint64_t mw_clt_rx_seq(const mw_clt_t *c) { return c->sess ? mw__sess_rx_seq(c->sess) : 0; }
unsigned mw_clt_rx_flags(const mw_clt_t *c) { return c->sess ? mw__sess_rx_flags(c->sess) : 0; }

int mw_clt_session_stats(mw_clt_t *c, mw_session_stats_t *st) {
    if (!c->sess) return MW_EINVAL;
    mw__sess_stats(c->sess, st);
    return 0;
}

int mw_clt_logout(mw_clt_t *c, const char *reason) {
    if (!c->sess) return MW_EINVAL;
    if (c->o.mode == MW_MODE_EVENT) { /* io thread: the answer ends the Clt (clt_ep.c) */
        c->logging_out = true;
        return mw__sess_logout(c->sess, MW_LOGOUT_NORMAL, reason);
    }
    if (!c->open || !c->have_conn) return MW_ECLOSED;
    int r = mw__sess_logout(c->sess, MW_LOGOUT_NORMAL, reason);
    if (r < 0) return r;
    /* the peer's answer, bounded by the logon timeout */
    uint64_t dl = mw__deadline_in(NULL, c->o.session.logon_timeout_ns > 0 ? c->o.session.logon_timeout_ns
                                                                          : 5 * MW_NS_PER_S);
    for (;;) {
        mw__sess_flush(c->sess);
        const mw_schema_t *sch;
        r = mw__clt_read(c, &sch, c->sess_rx, c->proto->max_size);
        if (r == 0) {
            int x = mw__sess_rx(c->sess, sch, c->sess_rx, mw_now_ns());
            if (x == MW_ECLOSED) { r = 0; break; } /* answered */
            if (x < 0) { r = x; break; }
            if (x == 1) mw__sess_discard(c->sess); /* not handed over: sent again next time */
            continue;
        }
        if (r == MW_ECLOSED) { r = 0; break; }
        if (r != MW_EAGAIN) break;
        if (mw_now_ns() >= dl) { r = MW_ETIMEDOUT; break; }
        if ((r = wait_io(c, dl)) < 0) break;
    }
    c->open = false;
    c->state = MW_CLT_CLOSED;
    mw__conn_close_transport(&c->conn, MW_ECLOSED, "logout", false);
    return r;
}
