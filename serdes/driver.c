/* driver.c - the one connection driver (see drv_impl.h). */
#include "drv_impl.h"

#include <errno.h>
#include <stddef.h>
#include <sys/socket.h>

#include "mw_transport.h"
#include "buf_impl.h"
#include "conn_impl.h"
#include "err_impl.h"
#include "io_impl.h"
#include "stream_impl.h"
#include "transport_impl.h"

/* Reads per pass while a decorator (TLS, WebSocket) still holds input. */
#define PASS_READS 16

static int on_ready(mw_sel_src_t *src, int events);
static void finish(mw__drv_t *d);

/* ---- interest ------------------------------------------------------------------ */

static int want_of_k(mw__drv_t *d, bool locked) {
    mw_stream_t *s = d->conn->stream;
    if (d->state == MW__DRV_HANDSHAKE) {
        int w = mw__stream_want(s);
        return w ? w : MW_WANT_READ;
    }
    int want = mw__stream_want(s);
    if (d->state == MW__DRV_LINGER ? !d->conn->rx_eof : !d->paused && !d->rx_done) want |= MW_WANT_READ;
    if (!d->conn->tx.failed && (locked ? mw__conn_tx_pending_nl(d->conn) : mw__conn_tx_pending(d->conn)))
        want |= MW_WANT_WRITE;
    return want;
}

static int want_of(mw__drv_t *d) { return want_of_k(d, false); }

/* locked: the caller holds the conn's tx lock (an owner's send path). */
static void rearm_k(mw__drv_t *d, bool locked) {
    if (d->state == MW__DRV_OFF) return;
    int want = want_of_k(d, locked);
    if (want != d->src.events) mw_io_mod(d->io, &d->src, want);
}

static void rearm(mw__drv_t *d) { rearm_k(d, false); }

/* Input may wait inside a decorator with no readiness to announce it: come
 * back on the next poll. */
static void again_soon(mw__drv_t *d) {
    if (!mw_io_timer_armed(&d->t_more)) mw_io_timer_after(d->io, &d->t_more, 0);
}

/* ---- buffers while traffic flows ------------------------------------------------ */

/* The conn keeps its buffers while messages come and go (no pool round trip
 * per message); the io's sweep gives them back once it is idle. Only a busy
 * connection keeps them: one whose traffic came twice within a sweep period
 * (a clock read per message while it is not keeping them, which its pool
 * round trips cost far more than). Thousands of connections that each see a
 * message now and then keep passing the same few blocks around, as before,
 * and do not all hold buffers at once. Noted after a pass that moved bytes. */
static __attribute__((noinline)) void warm(mw__drv_t *d, bool locked) {
    if (d->state != MW__DRV_UP) return; /* only an attached conn may join its io's list */
    uint64_t now = mw_io_now(d->io);
    if (d->cold_ns && now - d->cold_ns < MW__IO_KEEP_NS) {
        mw__io_keep_link(d->io, &d->keep);
        d->keep.used = true;
        locked ? mw__conn_hold_nl(d->conn) : mw__conn_hold(d->conn);
    } else {
        d->cold_ns = now;
    }
}

static inline void traffic_k(mw__drv_t *d, bool locked) {
    if (d->keep.linked) d->keep.used = true;
    else warm(d, locked);
}

static inline void traffic(mw__drv_t *d) { traffic_k(d, false); }

/* A send on the io thread outside a pass (an owner that polls the io and
 * sends in between) links the conn too; from another thread it cannot
 * touch the io's list, and the conn gives the buffer back after each flush
 * as before. Only asked while the conn is not holding yet; once it holds,
 * the sweep sees the sends in the conn's count (mw__conn_release). */
static inline void sending(mw__drv_t *d, bool locked) {
    if (!__atomic_load_n(&d->conn->hold, __ATOMIC_RELAXED) && mw__io_in_thread(d->io) && !d->in_cb &&
        d->state == MW__DRV_UP) /* inside a pass, the pass counts */
        traffic_k(d, locked);
}

static bool keep_release(mw__io_keep_t *k) {
    mw__drv_t *d = (mw__drv_t *)(void *)((char *)k - offsetof(mw__drv_t, keep));
    if (d->in_cb) return false; /* a poll from inside a callback: the pass is not over */
    /* pull mode keeps its rx buffer while open (its messages borrow from it) */
    return mw__conn_release(d->conn, d->cfg->on_msg != NULL, &d->keep_tx);
}

/* ---- deferred close ------------------------------------------------------------ */

/* After a user callback: carries out a close asked for inside it. True if
 * the connection is no longer up. */
static bool after_cb(mw__drv_t *d) {
    if (d->close_pending) {
        d->close_pending = false;
        mw__drv_close(d, d->close_reason, d->close_graceful);
    }
    return d->state != MW__DRV_UP;
}

bool mw__drv_leave(mw__drv_t *d) {
    d->in_cb = false;
    return after_cb(d);
}

static void call_up(mw__drv_t *d) {
    if (!d->cfg->on_up) return;
    d->in_cb = true;
    d->cfg->on_up(d);
    d->in_cb = false;
}

/* ---- backpressure ---------------------------------------------------------------- */

static size_t low_water(const mw__conn_t *c) {
    size_t cap = c->tx.buf_max, frame = (size_t)c->max_msg + 8, lwm = cap / 4;
    return cap > frame && cap - frame < lwm ? cap - frame : lwm;
}

static void check_drain(mw__drv_t *d) {
    if (!atomic_load_explicit(&d->want_drain, memory_order_relaxed)) return;
    if (mw__conn_tx_pending(d->conn) > low_water(d->conn)) return;
    atomic_store(&d->want_drain, false);
    mw_io_timer_stop(d->io, &d->t_slow);
    if (!d->cfg->on_drain) return;
    d->in_cb = true;
    d->cfg->on_drain(d);
    d->in_cb = false;
}

static void on_slow(mw_io_timer_t *t, void *ud) {
    (void)t;
    mw__drv_t *d = ud;
    if (!atomic_load(&d->want_drain) || d->state != MW__DRV_UP) return;
    if (mw__conn_tx_pending(d->conn) <= low_water(d->conn)) { /* it did drain: not slow */
        check_drain(d);
        return;
    }
    mw__err_set(&d->conn->tx.err, MW_ESLOW, "slow consumer: the peer read nothing while the send queue was full for %lld ms",
               (long long)(d->cfg->slow_consumer_ns / MW_NS_PER_MS));
    mw__drv_close(d, MW_ESLOW, false);
}

/* Io thread: interest from the current state, and the slow-consumer clock
 * once a send found the queue full. */
static void arm_io(mw__drv_t *d) {
    if (d->state != MW__DRV_UP && d->state != MW__DRV_LINGER) return;
    /* the io may have written everything between the sender's MW_EAGAIN
     * and its flag: then no writability would ever call check_drain */
    if (d->state == MW__DRV_UP && !d->in_cb) {
        check_drain(d);
        if (after_cb(d)) return; /* closed inside on_drain */
    }
    rearm(d);
    if (d->cfg->slow_consumer_ns > 0 && atomic_load(&d->want_drain) && !mw_io_timer_armed(&d->t_slow))
        mw_io_timer_after(d->io, &d->t_slow, d->cfg->slow_consumer_ns);
}

static void arm_posted(mw__drv_t *d) {
    atomic_store(&d->arm_posted, false);
    arm_io(d);
}

void mw__drv_kick(mw__drv_t *d) {
    if (mw__io_in_thread(d->io)) {
        arm_io(d);
        return;
    }
    /* one request in flight is enough: it re-reads the state when it runs */
    if (!atomic_exchange(&d->arm_posted, true) && d->cfg->post(d, arm_posted) < 0)
        atomic_store(&d->arm_posted, false);
}

/* As mw__drv_kick, but no callback runs inside it: on the io thread the
 * write interest is set at once and a drain check (on_drain) is posted. For
 * callers holding a lock that the callbacks take (a session's mutex). */
static void kick_nocb_k(mw__drv_t *d, bool locked) {
    if (!mw__io_in_thread(d->io)) {
        mw__drv_kick(d);
        return;
    }
    if (d->state != MW__DRV_UP && d->state != MW__DRV_LINGER) return;
    rearm_k(d, locked);
    if (d->cfg->slow_consumer_ns > 0 && atomic_load(&d->want_drain) && !mw_io_timer_armed(&d->t_slow))
        mw_io_timer_after(d->io, &d->t_slow, d->cfg->slow_consumer_ns);
    if (d->state == MW__DRV_UP && atomic_load(&d->want_drain) && !atomic_exchange(&d->arm_posted, true) &&
        d->cfg->post(d, arm_posted) < 0)
        atomic_store(&d->arm_posted, false);
}

static void kick_nocb(mw__drv_t *d) { kick_nocb_k(d, false); }

/* ---- sending ---------------------------------------------------------------------- */

static int send_k(mw__drv_t *d, const mw_schema_t *s, const void *msg, bool nocb) {
    sending(d, false);
    int r = mw__conn_send_q_fast(d->conn, s, msg);
    if (r == 1) { /* accepted, bytes queued behind a full socket */
        nocb ? kick_nocb(d) : mw__drv_kick(d);
        return 0;
    }
    if (r == MW_EAGAIN) {
        atomic_store(&d->want_drain, true);
        nocb ? kick_nocb(d) : mw__drv_kick(d);
    }
    return r;
}

int mw__drv_send(mw__drv_t *d, const mw_schema_t *s, const void *msg) { return send_k(d, s, msg, false); }
int mw__drv_send_nocb(mw__drv_t *d, const mw_schema_t *s, const void *msg) { return send_k(d, s, msg, true); }

int mw__drv_enqueue(mw__drv_t *d, const mw_schema_t *s, const void *msg) {
    sending(d, false);
    int r = mw__conn_enqueue(d->conn, s, msg);
    if (r == MW_EAGAIN) atomic_store(&d->want_drain, true);
    return r;
}

static int flush_k(mw__drv_t *d, bool nocb) {
    int r = mw__conn_flush(d->conn);
    /* queued bytes left: write readiness; none left after an MW_EAGAIN: on_drain (io thread) */
    if (r == MW_EAGAIN || atomic_load_explicit(&d->want_drain, memory_order_relaxed))
        nocb ? kick_nocb(d) : mw__drv_kick(d);
    return r;
}

/* ---- sending under the owner's lock (the one lock) ----------------------------------
 * The same three with the conn's tx lock held by the caller: nothing here
 * takes it again, and no callback runs (a callback may send, and the lock
 * is not recursive). On the io thread the write interest is set at once and
 * a due drain check is posted; from another thread one arm request is
 * posted (at most one in flight; only when bytes stay queued or the queue
 * was full, never on the fast path). */
int mw__drv_send_l(mw__drv_t *d, const mw_schema_t *s, const void *msg) {
    sending(d, true);
    int r = mw__conn_send_q_fast_nl(d->conn, s, msg);
    if (r == 1) {
        kick_nocb_k(d, true);
        return 0;
    }
    if (r == MW_EAGAIN) {
        atomic_store(&d->want_drain, true);
        kick_nocb_k(d, true);
    }
    return r;
}

int mw__drv_enqueue_l(mw__drv_t *d, const mw_schema_t *s, const void *msg) {
    sending(d, true);
    if (mw__conn_enqueue_fast_nl(d->conn, s, msg) == 0) return 0;
    int r = mw__conn_enqueue_nl(d->conn, s, msg);
    if (r == MW_EAGAIN) atomic_store(&d->want_drain, true);
    return r;
}

int mw__drv_flush_l(mw__drv_t *d) {
    int r = mw__conn_flush_nl(d->conn);
    if (r == MW_EAGAIN || atomic_load_explicit(&d->want_drain, memory_order_relaxed)) kick_nocb_k(d, true);
    return r;
}

int mw__drv_flush(mw__drv_t *d) { return flush_k(d, false); }

void mw__drv_want_drain(mw__drv_t *d) {
    atomic_store(&d->want_drain, true);
    kick_nocb(d);
}
int mw__drv_flush_nocb(mw__drv_t *d) { return flush_k(d, true); }

void mw__drv_want_drain_l(mw__drv_t *d) {
    atomic_store(&d->want_drain, true);
    kick_nocb_k(d, true);
}

void mw__drv_write(mw__drv_t *d) {
    if (d->state != MW__DRV_UP) return;
    (void)mw__conn_flush(d->conn); /* a failure: the read side ends the connection (pull mode) */
    check_drain(d);
    (void)after_cb(d);
}

/* ---- reading --------------------------------------------------------------------- */

static void note_input(mw__drv_t *d, ssize_t n) {
    if (n > 0 && d->cfg->idle_timeout_ns > 0) d->last_rx_ns = mw_io_now(d->io);
}

/* Pull mode: one read into the rx buffer with its bookkeeping. */
static ssize_t fill(mw__drv_t *d) {
    ssize_t n = mw__conn_fill(d->conn);
    note_input(d, n);
    d->held = n > 0 && mw__stream_pending(d->conn->stream) > 0;
    if (n < 0 && n != MW_EAGAIN) {
        d->rx_done = true; /* the owner delivers what is buffered, then learns how it ended */
        rearm(d);
    }
    return n;
}

/* A whole message arrived: the first-message clock (if any) stops, and
 * the partial-message clock starts afresh. */
static void got_msg(mw__drv_t *d) {
    d->partial_since = 0;
    if (!d->got_first) {
        d->got_first = true;
        if (d->cfg->first_msg_timeout_ns > 0) mw_io_timer_stop(d->io, &d->t_hs);
    }
}

/* No whole message is buffered: if part of one is, it must complete within
 * rx_timeout_ns (a peer that starts a message and stalls holds a slot). */
static void check_partial(mw__drv_t *d) {
    if (d->cfg->rx_timeout_ns <= 0 || !mw__conn_rx_buffered(d->conn) || d->partial_since) return;
    d->partial_since = mw_io_now(d->io);
    if (!mw_io_timer_armed(&d->t_rx)) mw_io_timer_after(d->io, &d->t_rx, d->cfg->rx_timeout_ns);
}

/* mw__drv_next when nothing whole was buffered (r: what next said). */
static __attribute__((noinline)) int next_more(mw__drv_t *d, int r, const mw_schema_t **s, void *msg, size_t cap,
                                               bool read) {
    if (r == MW_EAGAIN && !d->rx_done && !d->paused && d->state == MW__DRV_UP && (read || d->held) &&
        fill(d) != MW_EAGAIN)
        r = mw__conn_next(d->conn, s, msg, cap); /* a message, or how it ended */
    if (r == 0) {
        got_msg(d);
        traffic(d);
    } else if (r == MW_EAGAIN) {
        check_partial(d);
    }
    return r;
}

void mw__drv_note_msg(mw__drv_t *d) {
    got_msg(d);
    traffic(d);
}

/* The common case (a message was buffered) without the slow path's frame. */
int mw__drv_next(mw__drv_t *d, const mw_schema_t **s, void *msg, size_t cap, bool read) {
    int r = mw__conn_next(d->conn, s, msg, cap);
    if (r != 0) return next_more(d, r, s, msg, cap, read);
    if (!d->got_first || d->partial_since || !d->keep.used) {
        got_msg(d);
        traffic(d);
    }
    return 0;
}

int mw__drv_recv(mw__drv_t *d, const mw_schema_t **s, void *msg, size_t cap) {
    if (mw__conn_rx_buffered(d->conn) || d->rx_done || d->paused || d->state != MW__DRV_UP)
        return mw__drv_next(d, s, msg, cap, true);
    /* Nothing buffered: read first rather than decode nothing. A read that
     * found nothing leaves nothing to clock (no part of a message). */
    if (fill(d) == MW_EAGAIN) return MW_EAGAIN;
    return mw__drv_next(d, s, msg, cap, false);
}

static bool deliver(void *ud, mw__conn_t *c, const mw_schema_t *s, const void *msg) {
    (void)c;
    mw__drv_t *d = ud;
    got_msg(d);
    return d->cfg->on_msg(d, s, msg) && !d->close_pending && !d->paused && d->state == MW__DRV_UP;
}

/* One read pass. Push: decode and deliver (budgeted), 0 or the end of the
 * connection. Pull: fill, tell the owner. */
static int read_pass(mw__drv_t *d) {
    if (d->cfg->on_msg) {
        bool more = false;
        d->in_cb = true;
        ssize_t n = mw__conn_pump(d->conn, deliver, d, PASS_READS, &more);
        d->in_cb = false;
        note_input(d, n);
        if (n != 0) d->work++; /* bytes in, or the end of the connection */
        if (n < 0) return (int)n;
        if (more) again_soon(d); /* the read budget ran out with input left inside */
        else if (!d->conn->rx_stopped) check_partial(d); /* everything whole was delivered */
        return 0;
    }
    ssize_t n = 0;
    for (int i = 0; i < PASS_READS && !d->rx_done; i++) {
        n = fill(d);
        if (n <= 0 || !d->held) break;
    }
    if (d->held) again_soon(d);
    if (n > 0 || d->rx_done) d->work++;
    if ((n > 0 || d->rx_done) && d->cfg->on_input) {
        d->in_cb = true;
        d->cfg->on_input(d);
        d->in_cb = false;
    }
    return 0;
}

static void step_up(mw__drv_t *d, int events) {
    int r = 0;
    /* queued bytes always come with write interest (rearm, kick): no
     * need to look at the queue on a read event */
    if ((events & MW_WANT_WRITE) && mw__conn_tx_pending(d->conn)) {
        r = mw__conn_flush(d->conn);
        if (r != MW_EAGAIN) d->work++; /* all written (or the write failed) */
        if (r == MW_EAGAIN) r = 0;
        check_drain(d);
        if (after_cb(d)) return;
    }
    /* Read even after a failed write (also on writability: a TLS read may
     * have waited for it): what the peer sent first is delivered, and the
     * read side says how the connection ended. */
    int rd = d->paused || d->rx_done ? 0 : read_pass(d);
    if (after_cb(d)) return;
    if (rd < 0) r = rd;
    /* Pull mode: the owner still has to take the messages read before the
     * failure; the read side tells it how the connection ended. */
    if (r < 0 && (d->cfg->on_msg || rd < 0)) {
        mw__drv_close(d, r, d->conn->tx.failed == 0);
        return;
    }
    rearm(d);
}

/* ---- handshakes ------------------------------------------------------------------ */

static void became_up(mw__drv_t *d) {
    __atomic_store_n(&d->state, MW__DRV_UP, __ATOMIC_RELAXED);
    mw_io_timer_stop(d->io, &d->t_hs);
    if (d->cfg->first_msg_timeout_ns > 0 && !d->got_first) /* the same timer, now for the first message */
        mw_io_timer_at(d->io, &d->t_hs, d->started_at + (uint64_t)d->cfg->first_msg_timeout_ns);
    call_up(d);
    if (after_cb(d)) return;
    check_drain(d); /* sends that met a full queue before we were up */
    if (after_cb(d)) return;
    rearm(d);
    /* bytes may have come with the last handshake read */
    if (mw__conn_rx_buffered(d->conn) || mw__stream_pending(d->conn->stream)) again_soon(d);
}

static void step_handshake(mw__drv_t *d) {
    mw_stream_t *s = d->conn->stream;
    d->work++; /* a handshake in progress is not idle time */
    int r, want = 0;
    /* want() == 0 after MW_EAGAIN means "call again now" (a layer finished
     * and the next one can start); bounded in case a layer misbehaves. */
    for (int i = 0; i < 8; i++) {
        r = mw__stream_handshake(s);
        if (r != MW_EAGAIN || (want = mw__stream_want(s)) != 0) break;
    }
    if (r == MW_EAGAIN) {
        int w = want ? want : MW_WANT_READ;
        if (w != d->src.events) mw_io_mod(d->io, &d->src, w);
        return;
    }
    if (r < 0) {
        mw_err_t e;
        mw__transport_error(s, r, &e);
        if (!d->conn->rx.err.code) mw__err_copy(&d->conn->rx.err, &e);
        mw__drv_close(d, r, true); /* an HTTP error answer may still be on its way */
        return;
    }
    became_up(d);
}

/* ---- graceful close ------------------------------------------------------------- */

/* The linger is over: r 0 (everything written, the peer's EOF read),
 * MW_ETIMEDOUT (linger_ns ran out) or the failure that ended it; the
 * result goes to on_gone (end_result), and its sentence to the conn's rx
 * error unless an earlier failure's is there (a plain "peer closed" is
 * replaced). A reset is no clean end, however the stack reported it: the
 * TCP stream maps it to MW_ECLOSED like an orderly EOF (every other reader
 * only needs "the peer left"; TLS and WebSocket pass it on as "closed
 * without close_notify / a close frame"), and after the first call that
 * met it, reads see a plain EOF. The transport remembers it
 * (mw__transport_peer_reset): the peer's kernel dropped what it had not
 * read, and our unsent bytes with it. */
static void linger_end(mw__drv_t *d, int r) {
    mw__conn_t *c = d->conn;
    bool plain = !c->rx.err.code || c->rx.err.code == MW_ECLOSED;
    if ((r == 0 || r == MW_ECLOSED) && mw__transport_peer_reset(c->stream)) {
        r = MW_ECLOSED;
        if (plain)
            mw__err_set(&c->rx.err, r, "the peer reset the connection during the linger: what it had not read may be lost");
    } else if (r == MW_ETIMEDOUT && plain) {
        mw__err_set(&c->rx.err, r, "the linger ran out (%lld ms) before %s",
                    (long long)(d->cfg->linger_ns / MW_NS_PER_MS),
                    mw__conn_tx_pending(c) ? "every accepted byte was written" : "the peer closed its side");
    } else if (r < 0 && plain && !c->tx.err.code) { /* a read (or the stream's own write) failed */
        mw__err_set(&c->rx.err, r, "close: %s", c->stream->err.code ? mw_stream_last_error(c->stream) : mw_strerror(r));
    }
    d->end_result = r;
    finish(d);
}

static void on_linger(mw_io_timer_t *t, void *ud) {
    (void)t;
    linger_end(ud, MW_ETIMEDOUT); /* the peer kept the connection past the linger: give up on it */
}

/* Writes what was accepted, then FIN, then reads (and drops) until the
 * peer's EOF: closing with unread input would send an RST, and an RST makes
 * the peer's kernel drop the replies it has not read yet. */
static void linger_step(mw__drv_t *d) {
    mw__conn_t *c = d->conn;
    d->work++;
    int r = mw__conn_flush(c);
    if (r == 0 && d->bye_due) { /* every queued message is out: the close frame may follow */
        d->bye_due = false;
        mw__conn_close_transport(c, d->bye_reason, NULL, false);
    }
    if (r == 0 && (mw__stream_want(c->stream) & MW_WANT_WRITE)) {
        /* output the stream made itself: an HTTP error answer, a TLS alert */
        ssize_t n = mw__conn_stream_flush(c); /* (a tx call: under the conn's tx lock) */
        r = n < 0 ? (int)n : (mw__stream_want(c->stream) & MW_WANT_WRITE) ? MW_EAGAIN : 0;
    }
    if (r < 0 && r != MW_EAGAIN) {
        linger_end(d, r);
        return;
    }
    if (r == 0 && !d->shut_wr) {
        mw__transport_shutdown(c->stream);
        d->shut_wr = true;
    }
    uint8_t junk[4096]; /* the rx buffer, if the connection holds one, else this */
    for (int i = 0; i < PASS_READS; i++) {
        mw__buf_t *b = &c->rx.buf;
        b->rd = b->wr = 0; /* unread input is discarded */
        ssize_t n = b->base ? mw__stream_read(c->stream, b->base, b->cap) : mw__stream_read(c->stream, junk, sizeof junk);
        if (n == MW_EAGAIN) break;
        if (n < 0) {
            c->rx_eof = true;
            if (mw__transport_peer_reset(c->stream)) { /* nothing more goes out either */
                linger_end(d, MW_ECLOSED);
                return;
            }
            /* The peer's EOF, or a failure (a stream that cannot be read
             * any more): its result once the writes are done (an HTTP error
             * answer or a TLS alert may still be going out). */
            d->end_result = n == MW_ECLOSED ? 0 : (int)n;
            break;
        }
    }
    if (c->rx_eof && d->shut_wr) {
        linger_end(d, d->end_result);
        return;
    }
    rearm(d);
}

static void finish(mw__drv_t *d) {
    if (d->state == MW__DRV_OFF) return;
    mw__drv_stop(d);
    if (d->cfg->on_gone) d->cfg->on_gone(d);
}

bool mw__drv_close(mw__drv_t *d, int reason, bool graceful) {
    if (d->state == MW__DRV_OFF) return false;
    if (d->in_cb) { /* deferred until the callback returns */
        if (d->close_pending) { /* the first request stands, but an abort makes it one */
            if (graceful || !d->close_graceful) return false;
            d->close_graceful = false;
            return true;
        }
        d->close_pending = true;
        d->close_reason = reason;
        d->close_graceful = graceful;
        return true;
    }
    if (d->state == MW__DRV_LINGER) {
        if (graceful) return false;
        finish(d);
        return true;
    }
    mw_io_timer_stop(d->io, &d->t_hs);
    mw_io_timer_stop(d->io, &d->t_idle);
    mw_io_timer_stop(d->io, &d->t_slow);
    mw_io_timer_stop(d->io, &d->t_more);
    mw_io_timer_stop(d->io, &d->t_rx);
    bool was_up = d->state == MW__DRV_UP;
    __atomic_store_n(&d->state, MW__DRV_LINGER, __ATOMIC_RELAXED); /* no more messages either way */
    /* The WebSocket close frame, with the code that matches the reason. A
     * stream takes nothing after it, so a lingering close that still has
     * messages queued sends it once they are written (linger_step). */
    d->bye_reason = reason;
    d->bye_due = was_up && graceful && d->cfg->linger_ns > 0 && !d->conn->tx.failed &&
                 mw__conn_tx_pending(d->conn) > 0;
    if (was_up && !d->bye_due) mw__conn_close_transport(d->conn, reason, NULL, false);
    if (d->cfg->on_close) { /* a close (an abort) asked for in there is folded into this one */
        bool in = d->in_cb;
        d->in_cb = true;
        d->cfg->on_close(d, reason);
        d->in_cb = in;
        if (d->close_pending && !d->close_graceful) graceful = false;
        d->close_pending = false;
    }
    if (!graceful || d->cfg->linger_ns <= 0 || d->conn->tx.failed) {
        d->end_result = d->conn->tx.failed ? d->conn->tx.failed : mw__conn_tx_pending(d->conn) ? MW_ETIMEDOUT : 0;
        if (d->bye_due) mw__conn_close_transport(d->conn, reason, NULL, false); /* an abort after all */
        d->bye_due = false;
        finish(d);
        return true;
    }
    mw_io_timer_after(d->io, &d->t_linger, d->cfg->linger_ns);
    linger_step(d);
    return true;
}

/* ---- timers ----------------------------------------------------------------------- */

static void on_hs_timeout(mw_io_timer_t *t, void *ud) {
    (void)t;
    mw__drv_t *d = ud;
    if (d->state == MW__DRV_HANDSHAKE)
        mw__err_set(&d->conn->rx.err, MW_ETIMEDOUT, "handshake not completed within %lld ms",
                   (long long)(d->cfg->handshake_timeout_ns / MW_NS_PER_MS));
    else
        mw__err_set(&d->conn->rx.err, MW_ETIMEDOUT, "no message within %lld ms of connecting",
                   (long long)(d->cfg->first_msg_timeout_ns / MW_NS_PER_MS));
    mw__drv_close(d, MW_ETIMEDOUT, false);
}

static void on_rx_timeout(mw_io_timer_t *t, void *ud) {
    mw__drv_t *d = ud;
    if (!d->partial_since || d->state != MW__DRV_UP) return;
    uint64_t due = d->partial_since + (uint64_t)d->cfg->rx_timeout_ns;
    if (d->paused || mw_io_now(d->io) < due) { /* a paused reader's input is ours to wait for */
        mw_io_timer_at(d->io, t, d->paused ? mw_io_now(d->io) + (uint64_t)d->cfg->rx_timeout_ns : due);
        return;
    }
    mw__err_set(&d->conn->rx.err, MW_ETIMEDOUT, "a message begun %lld ms ago is still incomplete (%zu bytes of it)%s",
               (long long)(d->cfg->rx_timeout_ns / MW_NS_PER_MS), mw__buf_len(&d->conn->rx.buf),
               mw__conn_peer_hint(d->conn));
    mw__drv_close(d, MW_ETIMEDOUT, false);
}

static void on_idle(mw_io_timer_t *t, void *ud) {
    mw__drv_t *d = ud;
    uint64_t due = d->last_rx_ns + (uint64_t)d->cfg->idle_timeout_ns;
    if (mw_io_now(d->io) < due) {
        mw_io_timer_at(d->io, t, due);
        return;
    }
    mw__err_set(&d->conn->rx.err, MW_ETIMEDOUT, "nothing received for %lld ms",
               (long long)(d->cfg->idle_timeout_ns / MW_NS_PER_MS));
    mw__drv_close(d, MW_ETIMEDOUT, true);
}

static void on_more(mw_io_timer_t *t, void *ud) {
    (void)t;
    mw__drv_t *d = ud;
    if (d->state == MW__DRV_UP) step_up(d, mw__conn_tx_pending(d->conn) ? MW_WANT_WRITE : 0);
}

/* ---- readiness -------------------------------------------------------------------- */

/* Work: > 0 when bytes moved, a handshake stepped, or the connection ended;
 * 0 for a quiet source (so idle strategies may back off). */
/* Woken for input while reads are paused (no input interest): epoll says
 * the socket hung up or failed. Nothing more will come, and a level-
 * triggered HUP would wake us forever: end the connection. */
static bool hung_up_while_paused(mw__drv_t *d, int events) {
    if (d->state != MW__DRV_UP || !d->paused || !(events & MW_WANT_READ) || (d->src.events & MW_WANT_READ)) return false;
    int fd = mw__stream_fd(d->conn->stream);
    char b;
    ssize_t n = fd < 0 ? -1 : recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (fd < 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))) return false;
    mw__err_set(&d->conn->rx.err, MW_ECLOSED, "the peer hung up while reads were paused (%zu bytes buffered unread)",
               mw__buf_len(&d->conn->rx.buf));
    mw__drv_close(d, MW_ECLOSED, false);
    return true;
}

/* Queued tx bytes, read without the tx lock: another thread that queues
 * bytes arms write interest itself (mw__drv_kick), so a stale 0 here
 * loses nothing. */
static inline bool tx_queued(const mw__conn_t *c) {
    return __atomic_load_n(&c->tx.buf.wr, __ATOMIC_RELAXED) != __atomic_load_n(&c->tx.buf.rd, __ATOMIC_RELAXED);
}

/* The common event on its own path: input for a push-mode connection that
 * is up, busy (it holds its buffers), not paused, with only read interest
 * armed. The same reads and deliveries as step_up + read_pass, without
 * the checks that cannot apply (write readiness, the drain check, pull
 * mode), and the interest recomputed only when it may have changed (bytes
 * queued, or the stream wants something). */
static bool fast_ok(const mw__drv_t *d, int events) {
    return events == MW_WANT_READ && d->src.events == MW_WANT_READ && d->state == MW__DRV_UP && !d->paused &&
           !d->rx_done && d->cfg->on_msg && __atomic_load_n(&d->conn->hold, __ATOMIC_RELAXED);
}

static void read_fast(mw__drv_t *d) {
    mw__conn_t *c = d->conn;
    bool more = false;
    d->in_cb = true;
    ssize_t n = mw__conn_pump(c, deliver, d, PASS_READS, &more);
    d->in_cb = false;
    if (n != 0) {
        note_input(d, n);
        d->work++; /* bytes in, or the end of the connection */
    }
    if (after_cb(d)) return;
    if (n < 0) {
        mw__drv_close(d, (int)n, c->tx.failed == 0);
        return;
    }
    if (more) again_soon(d);
    else if (!c->rx_stopped && d->cfg->rx_timeout_ns > 0 && !d->partial_since && mw__buf_len(&c->rx.buf))
        check_partial(d);
    if (tx_queued(c) || mw__stream_want(c->stream)) rearm(d);
}

static int on_ready(mw_sel_src_t *src, int events) {
    mw__drv_t *d = src->ud;
    d->work = 0;
    if (fast_ok(d, events)) {
        read_fast(d);
        if (d->work && d->state == MW__DRV_UP) traffic(d);
        return (int)d->work;
    }
    if (hung_up_while_paused(d, events)) return 1;
    switch (d->state) {
    case MW__DRV_HANDSHAKE: step_handshake(d); break;
    case MW__DRV_UP:
        step_up(d, events);
        if (d->work && d->state == MW__DRV_UP) traffic(d); /* bytes moved (a direct selector calls idle sources too) */
        break;
    case MW__DRV_LINGER: linger_step(d); break;
    default: break;
    }
    return (int)d->work;
}

/* ---- attach / detach ---------------------------------------------------------------- */

int mw__drv_start(mw__drv_t *d, mw_io_t *io, mw__conn_t *conn, const mw__drv_cfg_t *cfg, void *ud) {
    d->conn = conn;
    d->io = io;
    d->cfg = cfg;
    d->ud = ud;
    d->in_cb = d->close_pending = d->paused = d->rx_done = d->held = d->shut_wr = d->bye_due = false;
    d->close_reason = 0;
    d->end_result = 0;
    /* want_drain is kept: a Clt may have sent (and seen MW_EAGAIN) before
     * its driver attached; mw__drv_stop clears it for the next connection.
     * An arm posted for an earlier connection in this slot finds it gone
     * and never clears its flag: clear it here. */
    atomic_store(&d->arm_posted, false);
    mw_io_timer_init(&d->t_hs, on_hs_timeout, d);
    mw_io_timer_init(&d->t_idle, on_idle, d);
    mw_io_timer_init(&d->t_linger, on_linger, d);
    mw_io_timer_init(&d->t_slow, on_slow, d);
    mw_io_timer_init(&d->t_more, on_more, d);
    mw_io_timer_init(&d->t_rx, on_rx_timeout, d);
    mw__io_keep_init(&d->keep, keep_release);
    d->cold_ns = 0;
    d->partial_since = 0;
    d->got_first = false;
    /* Pull mode reads ahead of its owner (spin/blocking recv takes one message
     * per call, fairly across connections): its rx buffer is full size from
     * the first read, as fill-then-deliver in push mode needs only a small one. */
    if (!cfg->on_msg) conn->rx.buf_want = conn->rx.buf_max;
    __atomic_store_n(&d->state, MW__DRV_HANDSHAKE, __ATOMIC_RELAXED);
    mw_sel_src_init(&d->src, mw__stream_fd(conn->stream), want_of(d), on_ready, d);
    int r = mw_io_add(io, &d->src);
    if (r < 0) {
        __atomic_store_n(&d->state, MW__DRV_OFF, __ATOMIC_RELAXED);
        return r;
    }
    d->last_rx_ns = d->started_at = mw_io_now(io);
    if (cfg->handshake_timeout_ns > 0) mw_io_timer_after(io, &d->t_hs, cfg->handshake_timeout_ns);
    if (cfg->idle_timeout_ns > 0) mw_io_timer_after(io, &d->t_idle, cfg->idle_timeout_ns);
    return 0;
}

void mw__drv_go(mw__drv_t *d) {
    if (d->state == MW__DRV_HANDSHAKE) step_handshake(d);
}

void mw__drv_pause(mw__drv_t *d, bool paused) {
    if (d->paused == paused) return;
    d->paused = paused;
    if (d->state != MW__DRV_UP) return;
    rearm(d);
    /* messages already buffered are not announced by any readiness */
    if (!paused && (mw__conn_rx_buffered(d->conn) || mw__stream_pending(d->conn->stream))) again_soon(d);
}

void mw__drv_stop(mw__drv_t *d) {
    if (d->state == MW__DRV_OFF) return;
    if (d->src.added) mw_io_del(d->io, &d->src);
    mw_io_timer_stop(d->io, &d->t_hs);
    mw_io_timer_stop(d->io, &d->t_idle);
    mw_io_timer_stop(d->io, &d->t_linger);
    mw_io_timer_stop(d->io, &d->t_slow);
    mw_io_timer_stop(d->io, &d->t_more);
    mw_io_timer_stop(d->io, &d->t_rx);
    mw__io_keep_unlink(d->io, &d->keep);
    atomic_store(&d->want_drain, false);
    __atomic_store_n(&d->state, MW__DRV_OFF, __ATOMIC_RELAXED);
}
