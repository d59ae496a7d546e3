/* drv_impl.h - the one connection driver: a message connection (mw__conn_t)
 * attached to an io. Clt and Svc both use it; neither re-implements it.
 *
 * What it does, once, for every connection in every mode:
 *   - drives the TLS/WebSocket handshakes on readiness (handshake timeout);
 *   - flushes on writability and re-arms interest from want() + pending tx;
 *   - reads with a per-pass budget, and keeps reading while the stream holds
 *     input that no readiness event would announce;
 *   - push (event) mode: decodes and calls on_msg; pull (spin/blocking) mode:
 *     only fills the rx buffer, the owner decodes with mw__drv_next;
 *   - idle timeout, backpressure (on_drain after MW_EAGAIN, pause/resume of
 *     reads, slow-consumer close), and one close rule: a close asked for
 *     inside a callback is deferred until the callback returns; a graceful
 *     close writes what was accepted (bounded by linger_ns), shuts the write
 *     side and drains the read side until EOF, so no RST destroys the replies;
 *   - one cross-thread "arm write" request in flight at most.
 *
 * Thread rules: everything on the io's thread, except mw__drv_send,
 * mw__drv_enqueue, mw__drv_flush and mw__drv_kick, which may be called from
 * any thread when the conn was built with MW_CONN_TX_LOCK (one lock on the
 * send path: the conn's own tx lock).
 */
#ifndef MW_DRV_IMPL_H
#define MW_DRV_IMPL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "io_impl.h"
#include "lock_impl.h"
#include "mw_conn.h"
#include "mw_io.h"
#include "conn_impl.h"
#include "buf_impl.h"
#include "serdes_impl.h"

typedef struct mw__drv mw__drv_t;

typedef struct mw__drv_cfg {
    /* Push mode: one decoded message (borrowed). Return false to stop this
     * pass (the callback closed or paused the connection). NULL: pull mode. */
    bool (*on_msg)(mw__drv_t *d, const mw_schema_t *s, const void *msg);
    /* Pull mode: a read buffered input, or the read side ended. May be NULL. */
    void (*on_input)(mw__drv_t *d);
    /* The handshakes completed; messages flow from now on. May be NULL. */
    void (*on_up)(mw__drv_t *d);
    /* The tx queue fell to the low-water mark after a send saw MW_EAGAIN. */
    void (*on_drain)(mw__drv_t *d);
    /* The connection ended for its user (reason as documented for on_close
     * of Clt and Svc). A graceful close may still linger after this. */
    void (*on_close)(mw__drv_t *d, int reason);
    /* Detached for good: the owner may now fini the conn and reuse it. */
    void (*on_gone)(mw__drv_t *d);
    /* Runs fn on the io thread later (the owner keeps itself alive until
     * then). Used for the cross-thread arm. Returns 0 or MW_ENOMEM. */
    int (*post)(mw__drv_t *d, void (*fn)(mw__drv_t *d));
    int64_t handshake_timeout_ns; /* 0: none */
    int64_t first_msg_timeout_ns; /* the first whole message must arrive this long after
                                     attach (handshakes included); 0: none */
    int64_t rx_timeout_ns;        /* a message begun must be whole within this; 0: none */
    int64_t idle_timeout_ns;      /* 0: none */
    int64_t linger_ns;            /* graceful close bound; 0: close at once */
    int64_t slow_consumer_ns;     /* close when tx stays full this long; 0: never */
    int budget;                   /* messages per pass in push mode */
} mw__drv_cfg_t;

enum { MW__DRV_OFF = 0, MW__DRV_HANDSHAKE, MW__DRV_UP, MW__DRV_LINGER };

struct mw__drv {
    mw__conn_t *conn;
    mw_io_t *io;
    const mw__drv_cfg_t *cfg;
    void *ud;                 /* the owner's */
    mw_sel_src_t src;
    mw__io_keep_t keep;       /* on the io's keep list while the conn holds buffers */
    uint64_t keep_tx;         /* conn tx.msgs at the last sweep that looked */
    uint64_t cold_ns;         /* io clock at the last traffic while not keeping; 0: none */
    mw_io_timer_t t_hs, t_idle, t_linger, t_slow, t_more, t_rx;
    uint64_t partial_since;   /* when part of a message was first seen buffered; 0: none */
    uint64_t started_at;      /* attach time, for the first-message timeout */
    bool got_first;           /* a whole message has arrived */
    uint64_t last_rx_ns;
    int state;                /* MW__DRV_* */
    int close_reason;         /* deferred close */
    unsigned work;            /* progress in the current readiness callback */
    bool in_cb, close_pending, close_graceful;
    bool paused;              /* reads paused by the user */
    bool rx_done;             /* pull: the read side ended; the owner drains the buffer */
    bool held;                /* pull: the stream may hold input past the last read */
    bool shut_wr;             /* linger: write side shut */
    bool bye_due;             /* linger: the transport's goodbye (WebSocket close frame)
                                 waits until the queued messages are written */
    int bye_reason;
    int end_result;           /* how the detach ended (for on_gone): 0 every accepted byte
                                 written (and, lingering, the peer's orderly EOF seen),
                                 MW_ETIMEDOUT linger_ns ran out (a close without linger:
                                 bytes left queued), MW_ECLOSED the peer reset the
                                 connection while lingering (the conn's rx error says so),
                                 or the error that ended the linger's writes or reads */
    atomic_bool want_drain;   /* a send saw MW_EAGAIN */
    atomic_bool arm_posted;   /* a cross-thread arm is queued */
};

/* Attaches conn to io: registers the fd, arms the handshake and idle
 * timers; no I/O yet, no callback. Returns 0 or the io's error (nothing
 * registered then). Then the owner runs its own "accepted" callback (inside
 * mw__drv_enter/leave, so a close there is honoured) and calls mw__drv_go,
 * which takes the first handshake step (plain TCP: up at once, on_up). */
int mw__drv_start(mw__drv_t *d, mw_io_t *io, mw__conn_t *conn, const mw__drv_cfg_t *cfg, void *ud);
void mw__drv_go(mw__drv_t *d);

/* Sends (encode + write what the socket takes). 0 accepted, MW_EAGAIN not
 * accepted (tx full: on_drain follows), encode errors, or the I/O error.
 * Asks for write readiness when bytes stay queued. Any thread (TX_LOCK). */
int mw__drv_send(mw__drv_t *d, const mw_schema_t *s, const void *msg);
/* Queues without writing (0, MW_EAGAIN, encode errors). Any thread. */
int mw__drv_enqueue(mw__drv_t *d, const mw_schema_t *s, const void *msg);
/* Writes queued bytes: 0 none left, MW_EAGAIN some left (write readiness is
 * armed, they go out by themselves), or the error. Any thread. */
int mw__drv_flush(mw__drv_t *d);
/* The same, but no callback (on_drain, a deferred close) runs inside them,
 * also on the io thread outside a callback (the drain check is posted): for
 * callers that hold a lock the callbacks take (a session's mutex; its pump
 * runs on a timer, and on_drain pumps it). */
int mw__drv_send_nocb(mw__drv_t *d, const mw_schema_t *s, const void *msg);
int mw__drv_flush_nocb(mw__drv_t *d);
/* The same three for an owner that holds the conn's tx lock (shared with
 * mw__conn_share_lock): its send path takes that one lock for the lifetime
 * check, the encode and the write. No callback runs inside them (as the
 * _nocb functions). Any thread. */
int mw__drv_send_l(mw__drv_t *d, const mw_schema_t *s, const void *msg);
int mw__drv_enqueue_l(mw__drv_t *d, const mw_schema_t *s, const void *msg);
int mw__drv_flush_l(mw__drv_t *d);
void mw__drv_want_drain_l(mw__drv_t *d); /* mw__drv_want_drain under that lock */
/* Asks for on_drain once the queue is below its low-water mark (at once if
 * it is), without running it inside (as the _nocb functions). Any thread. */
void mw__drv_want_drain(mw__drv_t *d);
/* Io thread, for owners that wait on the socket themselves (a blocking read
 * outside the io): writes what is queued and fires on_drain when due. */
void mw__drv_write(mw__drv_t *d);
/* After bytes were queued from any thread: makes sure the io waits for
 * write readiness (at once on the io thread, else one posted request). */
void mw__drv_kick(mw__drv_t *d);

/* Pull mode: the next buffered message (mw__conn_next), reading once first
 * when nothing complete is buffered and `read` is set or the stream may
 * hold input. Returns 0, MW_EAGAIN, or how the connection ended (the owner
 * closes it then). */
int mw__drv_next(mw__drv_t *d, const mw_schema_t **s, void *msg, size_t cap, bool read);

/* Pull mode: the next message only if a whole one is already buffered (no
 * read): 0, or non-zero (MW_EAGAIN, or how the connection ended) when
 * mw__drv_next must be asked instead. The same bookkeeping as
 * mw__drv_next; for a run of messages from one connection without a scan. */
void mw__drv_note_msg(mw__drv_t *d);
static inline int mw__drv_next_buffered(mw__drv_t *d, const mw_schema_t **s, void *msg, size_t cap) {
    if (d->state != MW__DRV_UP || mw__buf_len(&d->conn->rx.buf) == 0) return MW_EAGAIN; /* nothing: no call */
    int r = mw__conn_next(d->conn, s, msg, cap);
    if (r == 0 && (!d->got_first || d->partial_since || !d->keep.used)) mw__drv_note_msg(d);
    return r;
}

/* Pull mode, for an owner whose recv reads (a spin or blocking Clt): as
 * mw__drv_next with read set, but with nothing buffered it reads first
 * instead of trying to decode an empty buffer, so a poll that finds
 * nothing costs one read and no decode (on a blocking socket the read is
 * the wait). Same returns. */
int mw__drv_recv(mw__drv_t *d, const mw_schema_t **s, void *msg, size_t cap);

/* Stops or restarts reading (input stays in the kernel: TCP flow control
 * pushes back on the peer). Io thread. */
void mw__drv_pause(mw__drv_t *d, bool paused);

/* Ends the connection with reason (on_close gets it). graceful: write what
 * was accepted, then FIN, drain input until EOF, all bounded by linger_ns;
 * otherwise at once (an RST if input is unread). Deferred when called from
 * inside one of its callbacks (the first request's reason stands; an abort
 * among them makes it an abort). Io thread. False when the request changes
 * nothing: the driver is off, a deferred request is already as strong, or
 * a graceful close finds it lingering. */
bool mw__drv_close(mw__drv_t *d, int reason, bool graceful);

/* Detaches at once without callbacks (owner shutting down). Io thread, or
 * when the io no longer runs. */
void mw__drv_stop(mw__drv_t *d);

/* conn.c: mw__conn_send that also says whether bytes stayed queued: 0 written,
 * 1 accepted but (partly) queued, or < 0 as mw__conn_send. One tx lock. */
int mw__conn_send_q(mw__conn_t *c, const mw_schema_t *s, const void *msg);

/* conn.c: the one lock. mw__conn_share_lock makes the owner's lock (a
 * word, lock_impl.h) the conn's tx lock and the lock of every decorator
 * under it (mw__stream_share_lock), before the conn is shared between
 * threads. The _nl functions are their namesakes for a caller that holds
 * that lock already (the owner's send path: lifetime check, numbering and
 * encode under one lock). */
void mw__conn_share_lock(mw__conn_t *c, mw__lock_t *lk);
/* Pushes out what the stream holds itself (mw__stream_writev with nothing),
 * under the conn's tx lock: for callers that do not hold it (the driver). */
ssize_t mw__conn_stream_flush(mw__conn_t *c);
int mw__conn_send_q_nl(mw__conn_t *c, const mw_schema_t *s, const void *msg);
int mw__conn_enqueue_nl(mw__conn_t *c, const mw_schema_t *s, const void *msg);
int mw__conn_flush_nl(mw__conn_t *c);
size_t mw__conn_tx_pending_nl(mw__conn_t *c);
void mw__conn_hold_nl(mw__conn_t *c);
uint8_t *mw__conn_claim_nl(mw__conn_t *c, size_t max);
int mw__conn_commit_nl(mw__conn_t *c, size_t len);

/* Bodies up to this size take the inline send path (larger ones: conn.c,
 * where a memcpy call costs little next to the copy). */
#define MW__CONN_FAST_BODY 256u

static inline void mw__copy16(uint8_t *dst, const uint8_t *src) {
    uint8_t t[16];
    memcpy(t, src, 16);
    memcpy(dst, t, 16);
}

/* Copies n <= MW__CONN_FAST_BODY bytes without a call (a call would make
 * the inline send path save registers): overlapping 16-, 8- or 4-byte moves;
 * 16 to 64 bytes, the common messages, in four at most. */
static inline __attribute__((always_inline)) void mw__conn_copy(uint8_t *dst, const void *src, size_t n) {
    const uint8_t *s = src;
    if (n >= 16) {
        if (n > 32) {
            if (n > 64)
                for (size_t i = 32; i < n - 32; i += 16) mw__copy16(dst + i, s + i);
            mw__copy16(dst + 16, s + 16);
            mw__copy16(dst + n - 32, s + n - 32);
        }
        mw__copy16(dst, s);
        mw__copy16(dst + n - 16, s + n - 16);
    } else {
        mw__copy_upto16(dst, s, n);
    }
}

/* The common message queued inline, as conn.c's enqueue would queue it: a
 * plain schema (its bytes are its fixed wire layout, MW_SCHEMA_PLAIN) on a
 * tx side with the fixed serdes and u32 framing over a byte stream
 * (tx.fast_max, which also bounds the size: MW__CONN_FAST_BODY), no hook, not failed, and room in the tx buffer. Returns 0
 * when queued, 1 when not this way: then mw__conn_enqueue_nl does it all,
 * every error included. Under the tx lock, as mw__conn_enqueue_nl. */
static inline __attribute__((always_inline)) int mw__conn_enqueue_fast_nl(mw__conn_t *c, const mw_schema_t *s, const void *msg) {
    mw__conn_side_t *t = &c->tx;
    const size_t n = s->fixed_size;
    if (!(s->flags & MW_SCHEMA_PLAIN) || n > t->fast_max || t->failed || t->hook || t->buf.cap - t->buf.wr < n + 4)
        return 1;
    /* Everything read before the byte stores, which may alias it all. */
    const size_t wr = t->buf.wr;
    const uint64_t msgs = t->msgs, bytes = t->bytes;
    const unsigned tag = s->tag;
    uint8_t *p = t->buf.base + wr;
    /* the u32 big-endian length, then the fixed serdes' tag, little-endian
     * (fast_max is 0 on a big-endian host) */
    const uint32_t be = __builtin_bswap32((uint32_t)n);
    const uint16_t le = (uint16_t)tag;
    memcpy(p, &be, 4);
    memcpy(p + 4, &le, 2);
    mw__conn_copy(p + 6, msg, n - 2);
    t->buf.wr = wr + n + 4;
    t->msgs = msgs + 1;
    t->bytes = bytes + n + 4;
    return 0;
}

/* mw__conn_send_q_nl with the common message queued inline: the same
 * results (0 written, 1 accepted with bytes queued, < 0). */
static inline __attribute__((always_inline)) int mw__conn_send_q_fast_nl(mw__conn_t *c, const mw_schema_t *s, const void *msg) {
    if (mw__conn_enqueue_fast_nl(c, s, msg) != 0) return mw__conn_send_q_nl(c, s, msg);
    int f = mw__conn_flush_nl(c);
    return f == 0 ? 0 : f == MW_EAGAIN ? 1 : f;
}

/* mw__conn_send_q with the common message queued inline: the conn's tx
 * lock (if it has one) around mw__conn_send_q_fast_nl. */
static inline __attribute__((always_inline)) int mw__conn_send_q_fast(mw__conn_t *c, const mw_schema_t *s,
                                                                      const void *msg) {
    mw__lock_t *lk = c->tx_lk;
    if (lk) mw__lock(lk);
    int r = mw__conn_send_q_fast_nl(c, s, msg);
    if (lk) mw__unlock(lk);
    return r;
}

/* conn.c: the conn keeps its buffers when they are empty (mw__conn_hold),
 * until mw__conn_release gives back the empty ones (the tx buffer, and with
 * rx the rx buffer and decode scratch). Release returns true when nothing
 * is held for lack of traffic any more (hold is off again), false when
 * queued bytes or part of a message keep a buffer in use, or when messages
 * were sent since the count in *tx_seen (which it updates): hold stays on.
 * Io thread; both take the tx lock. */
void mw__conn_hold(mw__conn_t *c);
bool mw__conn_release(mw__conn_t *c, bool rx, uint64_t *tx_seen);

/* Brackets a user callback that is not a message (on_accept, ...): a close
 * asked for inside it is deferred; leave carries it out and returns true if
 * the connection is no longer up. */
static inline void mw__drv_enter(mw__drv_t *d) { d->in_cb = true; }
bool mw__drv_leave(mw__drv_t *d);

/* conn.c: when the first message fails, what the peer's bytes look like
 * (" (the peer seems to send JSON text: is its serdes \"text\"?)"), or "". */
const char *mw__conn_peer_hint(const mw__conn_t *c);

/* Senders on other threads read the state (under the send lock, which not
 * every transition takes: HANDSHAKE -> UP, say): relaxed atomic accesses. */
static inline bool mw__drv_attached(const mw__drv_t *d) {
    return __atomic_load_n(&d->state, __ATOMIC_RELAXED) != MW__DRV_OFF;
}
/* True while messages flow (handshakes done, not closing). */
static inline bool mw__drv_up(const mw__drv_t *d) { return __atomic_load_n(&d->state, __ATOMIC_RELAXED) == MW__DRV_UP; }

#endif
