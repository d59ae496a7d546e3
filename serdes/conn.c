/* conn.c - message connection: framing + serdes + buffers over a stream. */
#include "mw_conn.h"
#include "buf_impl.h"
#include "drv_impl.h"
#include "lock_impl.h"

#include <stdlib.h>
#include <string.h>

#include <stdarg.h>

#include "mw_clock.h"
#include "mw_idle.h"
#include "mw_transport.h"
#include "conn_impl.h"
#include "err_impl.h"
#include "frame_impl.h"
#include "stream_impl.h"
#include "transport_impl.h"
#include "serdes_impl.h"

/* Room for the largest framing overhead (u32 prefix, or a newline). */
#define FRAME_OVERHEAD 8u

/* Over a message stream (WebSocket) the buffers hold each message behind a
 * u32 big-endian length header that only this file writes and reads: the
 * stream is handed the payloads as iovecs (writemsgs) and returns one
 * message per readmsg, so no length goes on the wire. In the tx buffer the
 * header's top bit marks a text message (the tx serdes when it was encoded). */
#define MSG_HDR 4u
#define MSG_TEXT_BIT 0x80u
#define MSG_MAX 0x7FFFFFFFu
/* Messages handed to the stream per writemsgs call (one syscall). */
#define MSGS_PER_WRITE 128

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define HOST_LE 1
#else
#define HOST_LE 0
#endif

void mw__conn_opts_init(mw_conn_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->serdes = "fixed";
    o->frame = MW_FRAME_AUTO;
    o->max_msg = 65536;
    o->rx_buf = 256 * 1024;
    o->tx_buf = 256 * 1024;
}

/* The lock (lock_impl.h): the conn's own (MW_CONN_TX_LOCK), or its
 * owner's once shared (mw__conn_share_lock), which the whole stream stack
 * then uses too. */
static void tx_lock(mw__conn_t *c) {
    if (c->tx_lk) mw__lock(c->tx_lk);
}

static void tx_unlock(mw__conn_t *c) {
    if (c->tx_lk) mw__unlock(c->tx_lk);
}

void mw__conn_share_lock(mw__conn_t *c, mw__lock_t *lk) {
    c->flags |= MW_CONN_TX_LOCK;
    c->tx_lk = lk;
    mw__stream_share_lock(c->stream, lk);
}

/* Configures one side's serdes and framer; the old serdes is released only
 * once the new one is ready, so a failed switch leaves the side as it was. */
static int side_setup(mw__conn_side_t *side, const char *serdes, int frame, uint32_t max_msg,
                      bool msgs) {
    mw_serdes_t nsd;
    int r = mw_serdes_init(&nsd, serdes, 0);
    if (r < 0) {
        mw__err_copy(&side->err, &nsd.err);
        return r;
    }
    /* A message stream (WebSocket) delimits messages itself: the buffers keep
     * each behind the in-memory header (MSG_HDR) whatever the serdes asks. */
    int kind = msgs ? MW_FRAME_U32BE : frame == MW_FRAME_AUTO ? (int)nsd.ops->default_frame : frame;
    if (kind == MW_FRAME_NONE && !msgs) { /* a byte stream needs a delimiter */
        mw_serdes_fini(&nsd);
        return mw__err_set(&side->err, MW_EINVAL, "framing \"none\" needs a message stream (WebSocket)");
    }
    uint32_t max = kind == MW_FRAME_U16BE && max_msg > 65535 ? 65535 : max_msg;
    mw__framer_t fr;
    r = mw__framer_init(&fr, (mw_frame_kind_t)kind, max, kind == MW_FRAME_FIXED ? max : 0);
    if (r < 0) {
        mw_serdes_fini(&nsd);
        return mw__err_set(&side->err, r, "framing %d is not valid with max_msg %u", kind, max_msg);
    }
    if (side->sd.ops) mw_serdes_fini(&side->sd);
    side->sd = nsd;
    side->fr = fr;
    /* The inline send path (mw__conn_enqueue_fast_nl) writes what fixed_encode
     * and the u32 framing would: a plain schema's bytes are its wire layout on
     * a little-endian host, as fixed.c's own plain path assumes. */
    bool fast = !msgs && kind == MW_FRAME_U32BE && nsd.ops == &mw__serdes_fixed_ops && HOST_LE;
    side->fast_max = !fast ? 0 : max < MW__CONN_FAST_BODY + 2 ? max : MW__CONN_FAST_BODY + 2;
    return 0;
}

int mw__conn_init(mw__conn_t *c, mw_stream_t *stream, const mw_protocol_t *p,
                 const mw_conn_opts_t *o, mw_err_t *err) {
    mw_conn_opts_t def;
    if (!o) {
        mw__conn_opts_init(&def);
        o = &def;
    }
    memset(c, 0, sizeof *c); /* tx_lock free */
    c->stream = stream;
    c->proto = p;
    c->flags = o->flags;
    c->tx_lk = (c->flags & MW_CONN_TX_LOCK) ? &c->tx_lock : NULL;
    c->max_msg = o->max_msg ? o->max_msg : 65536;
    int r;
    uint64_t need = (uint64_t)c->max_msg + FRAME_OVERHEAD; /* no uint32 wrap-around */
    if (o->rx_buf < need || o->tx_buf < need) {
        r = mw__err_set(err, MW_EINVAL, "buffers (rx %u, tx %u) must each hold one frame of max_msg %u + %u",
                       o->rx_buf, o->tx_buf, c->max_msg, FRAME_OVERHEAD);
        goto fail;
    }
    const char *serdes = o->serdes ? o->serdes : "fixed";
    c->msgs = mw__stream_is_msg(stream);
    if (c->msgs && c->max_msg > MSG_MAX) {
        r = mw__err_set(err, MW_EINVAL, "max_msg %u is over 2 GiB", c->max_msg);
        goto fail;
    }
    if ((r = side_setup(&c->tx, serdes, o->frame, c->max_msg, c->msgs)) < 0 ||
        (r = side_setup(&c->rx, serdes, o->frame, c->max_msg, c->msgs)) < 0) {
        mw__err_copy(err, c->tx.err.code ? &c->tx.err : &c->rx.err);
        goto fail;
    }
    /* No memory yet: buffers come from the pool as data does (mw_conn.h). */
    c->tx.buf_max = o->tx_buf;
    c->rx.buf_max = o->rx_buf;
    c->tx.buf_want = MW__POOL_MIN;
    /* a message stream reads whole messages only: room for a largest one */
    c->rx.buf_want = c->msgs ? c->max_msg + MSG_HDR : MW__POOL_MIN;
    return 0;
fail:
    mw__conn_fini(c);
    return r;
}

void mw__conn_fini(mw__conn_t *c) {
    mw_stream_free(c->stream);
    c->stream = NULL;
    if (c->tx.sd.ops) mw_serdes_fini(&c->tx.sd);
    if (c->rx.sd.ops) mw_serdes_fini(&c->rx.sd);
    c->tx.sd.ops = c->rx.sd.ops = NULL;
    mw__buf_drop(&c->tx.buf);
    mw__buf_drop(&c->rx.buf);
    if (c->rx_msg) mw__pool_give(c->rx_msg, c->proto->max_size);
    c->rx_msg = NULL;
}

int mw__conn_set_serdes(mw__conn_t *c, int dirs, const char *serdes, int frame) {
    int r = 0;
    if (dirs & MW_DIR_TX) {
        tx_lock(c);
        /* Queued messages keep the type (text/binary) they were encoded with. */
        r = side_setup(&c->tx, serdes, frame, c->max_msg, c->msgs);
        tx_unlock(c);
        if (r < 0) return r;
    }
    if (dirs & MW_DIR_RX) {
        r = side_setup(&c->rx, serdes, frame, c->max_msg, c->msgs);
        if (r == 0) c->rx_scanned = 0; /* a new framing starts its search afresh */
    }
    return r;
}

/* ---- tx ------------------------------------------------------------------- */

static int tx_fail(mw__conn_t *c, int code) {
    mw__conn_side_t *t = &c->tx;
    if (!t->failed) {
        t->failed = code;
        mw__err_set(&t->err, code, "send: %s", c->stream->err.code ? mw_stream_last_error(c->stream)
                                                                   : mw_strerror(code));
    }
    return code;
}

/* The tx buffer has no room left from its start (or none at all): take
 * one, or double it, at least to the size needed before, within tx_buf.
 * MW_EAGAIN when it is at tx_buf already: the queue is full. */
static int tx_grow(mw__conn_t *c) {
    mw__conn_side_t *t = &c->tx;
    if (t->buf.base && t->buf.cap >= t->buf_max) return MW_EAGAIN;
    size_t want = t->buf.cap * 2 > t->buf_want ? t->buf.cap * 2 : t->buf_want;
    if (mw__buf_grow(&t->buf, want, t->buf_max) < 0)
        return mw__err_set(&t->err, MW_ENOMEM, "send: out of memory for a %zu-byte tx buffer", want);
    if (t->buf.cap > t->buf_want) t->buf_want = (uint32_t)t->buf.cap;
    return 0;
}

static int enqueue_nl(mw__conn_t *c, const mw_schema_t *s, const void *msg) {
    mw__conn_side_t *t = &c->tx;
    if (t->failed) return t->failed;
    size_t pre = mw__frame_prefix_len(&t->fr), suf = mw__frame_suffix_len(&t->fr);
    size_t want = c->max_msg + pre + suf;
    ssize_t n;
    size_t room;
    /* Encode into the tail as it is; compact (move pending bytes) only when
     * the message did not fit, not whenever a worst-case frame would not. */
    for (;;) {
        room = mw__buf_tailroom(&t->buf);
        if (room > want) room = want;
        n = room > pre + suf ? mw_serdes_encode(&t->sd, s, msg, mw__buf_tail(&t->buf) + pre, room - pre - suf)
                             : MW_ETOOBIG;
        if (n != MW_ETOOBIG || room == want) break;
        if (t->buf.rd) {
            mw__buf_compact(&t->buf);
            continue;
        }
        int g = tx_grow(c);
        if (g < 0) return g; /* full (flush first), or out of memory */
    }
    if (n < 0) return mw__err_set(&t->err, (int)n, "encode %s: %s", s->name, mw_serdes_last_error(&t->sd));
    uint8_t *p = mw__buf_tail(&t->buf);
    ssize_t fl;
    if (t->fr.kind == MW_FRAME_U32BE && (size_t)n <= t->fr.max_len) { /* the common framing, inline */
        p[0] = (uint8_t)(n >> 24); /* big-endian on any host; compiles to bswap + store */
        p[1] = (uint8_t)(n >> 16);
        p[2] = (uint8_t)(n >> 8);
        p[3] = (uint8_t)n;
        fl = n + 4;
    } else {
        fl = mw__frame_seal(&t->fr, p, (size_t)n);
    }
    if (fl < 0) return mw__err_set(&t->err, (int)fl, "frame %s: %zd bytes: %s", s->name, n, mw_strerror((int)fl));
    if (c->msgs && t->sd.ops->text) p[0] |= MSG_TEXT_BIT;
    mw__buf_commit(&t->buf, (size_t)fl);
    t->msgs++;
    t->bytes += (uint64_t)fl;
    if (t->hook) t->hook(t->hook_ud, s, msg);
    return 0;
}

/* Hands the queued messages to a message stream, up to MSGS_PER_WRITE of one type
 * (text or binary) per call: each call is one write syscall. */
static int flush_msgs(mw__conn_t *c) {
    mw__conn_side_t *t = &c->tx;
    struct iovec v[MSGS_PER_WRITE];
    while (mw__buf_len(&t->buf)) {
        const uint8_t *p = mw__buf_data(&t->buf), *end = p + mw__buf_len(&t->buf);
        bool text = p[0] & MSG_TEXT_BIT;
        int n = 0;
        while (n < MSGS_PER_WRITE && p < end && (bool)(p[0] & MSG_TEXT_BIT) == text) {
            size_t len = (size_t)(p[0] & ~MSG_TEXT_BIT) << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
            v[n++] = (struct iovec){(void *)(p + MSG_HDR), len};
            p += MSG_HDR + len;
        }
        ssize_t k = mw__stream_writemsgs(c->stream, v, n, (text ? MW_MSG_TEXT : 0) | (p < end ? MW_MSG_MORE : 0));
        if (k == MW_EAGAIN || k == 0) return MW_EAGAIN;
        if (k < 0) return tx_fail(c, (int)k);
        const uint8_t *last = (const uint8_t *)v[k - 1].iov_base + v[k - 1].iov_len;
        mw__buf_consume(&t->buf, (size_t)(last - mw__buf_data(&t->buf)));
        if (k < n) return MW_EAGAIN;
    }
    if (mw__stream_want(c->stream) & MW_WANT_WRITE) {
        /* messages accepted by the stream but still in its own buffer */
        ssize_t n = mw__stream_writemsgs(c->stream, NULL, 0, 0);
        if (n == MW_EAGAIN) return MW_EAGAIN;
        if (n < 0) return tx_fail(c, (int)n);
    }
    return 0;
}

/* One write of everything queued (the sender holds the tx lock: nothing is
 * added meanwhile). A short write means the socket is full (or, blocking,
 * that SO_SNDTIMEO expired): retrying now would only wait again. */
static inline __attribute__((always_inline)) int flush_bytes(mw__conn_t *c) {
    mw__conn_side_t *t = &c->tx;
    size_t len = mw__buf_len(&t->buf);
    if (!len) return 0;
    ssize_t n = mw__stream_write(c->stream, mw__buf_data(&t->buf), len);
    if (n > 0) {
        mw__buf_consume(&t->buf, (size_t)n);
        return (size_t)n < len ? MW_EAGAIN : 0;
    }
    if (n == 0 || n == MW_EAGAIN) return MW_EAGAIN;
    return tx_fail(c, (int)n);
}

/* Everything written: the empty tx buffer goes back to the pool (a claim
 * open on this thread, without the tx lock, keeps it; so does a held conn,
 * whose owner gives it back when traffic stops). */
static inline __attribute__((always_inline)) int flush_nl(mw__conn_t *c) {
    mw__conn_side_t *t = &c->tx;
    if (t->failed) return t->failed;
    int r = c->msgs ? flush_msgs(c) : flush_bytes(c);
    if (r == 0 && !c->tx_claimed && !__atomic_load_n(&c->hold, __ATOMIC_RELAXED)) mw__buf_trim(&t->buf);
    return r;
}

int mw__conn_enqueue(mw__conn_t *c, const mw_schema_t *s, const void *msg) {
    tx_lock(c);
    int r = mw__conn_enqueue_fast_nl(c, s, msg) == 0 ? 0 : enqueue_nl(c, s, msg);
    tx_unlock(c);
    return r;
}

int mw__conn_flush(mw__conn_t *c) {
    tx_lock(c);
    int r = flush_nl(c);
    tx_unlock(c);
    return r;
}

/* 0 accepted and written, 1 accepted with bytes still queued, or < 0. */
int mw__conn_send_q(mw__conn_t *c, const mw_schema_t *s, const void *msg) { return mw__conn_send_q_fast(c, s, msg); }

ssize_t mw__conn_stream_flush(mw__conn_t *c) {
    tx_lock(c);
    ssize_t n = mw__stream_writev(c->stream, NULL, 0);
    tx_unlock(c);
    return n;
}

int mw__conn_enqueue_nl(mw__conn_t *c, const mw_schema_t *s, const void *msg) {
    return mw__conn_enqueue_fast_nl(c, s, msg) == 0 ? 0 : enqueue_nl(c, s, msg);
}
int mw__conn_flush_nl(mw__conn_t *c) { return flush_nl(c); }

int mw__conn_send_q_nl(mw__conn_t *c, const mw_schema_t *s, const void *msg) {
    int r = mw__conn_enqueue_fast_nl(c, s, msg) == 0 ? 0 : enqueue_nl(c, s, msg);
    if (r == MW_EAGAIN) {
        r = flush_nl(c);
        if (r == 0 || r == MW_EAGAIN) r = enqueue_nl(c, s, msg);
    }
    if (r == 0) {
        int f = flush_nl(c);
        if (f == MW_EAGAIN) r = 1;
        else if (f < 0) r = f;
    }
    return r;
}

int mw__conn_send(mw__conn_t *c, const mw_schema_t *s, const void *msg) {
    int r = mw__conn_send_q(c, s, msg);
    return r == 1 ? 0 : r;
}

uint8_t *mw__conn_claim(mw__conn_t *c, size_t max) {
    tx_lock(c);
    uint8_t *p = mw__conn_claim_nl(c, max);
    if (!p) tx_unlock(c);
    return p;
}

uint8_t *mw__conn_claim_nl(mw__conn_t *c, size_t max) {
    mw__conn_side_t *t = &c->tx;
    uint8_t *p = NULL;
    size_t need = max + mw__frame_prefix_len(&t->fr) + mw__frame_suffix_len(&t->fr);
    if (!t->failed && !c->tx_claimed && max <= c->max_msg)
        while (!(p = mw__buf_reserve(&t->buf, need)) && tx_grow(c) == 0) {}
    if (!p) return NULL;
    c->tx_claimed = true;
    c->tx_claim_max = max;
    return p + mw__frame_prefix_len(&t->fr);
}

int mw__conn_commit(mw__conn_t *c, size_t len) {
    if (!c->tx_claimed) return MW_EINVAL; /* no claim: nothing reserved, no lock held */
    int r = mw__conn_commit_nl(c, len);
    tx_unlock(c);
    return r;
}

int mw__conn_commit_nl(mw__conn_t *c, size_t len) {
    if (!c->tx_claimed) return MW_EINVAL;
    c->tx_claimed = false;
    mw__conn_side_t *t = &c->tx;
    ssize_t fl = len > c->tx_claim_max ? MW_EINVAL : mw__frame_seal(&t->fr, mw__buf_tail(&t->buf), len);
    if (fl >= 0) {
        if (c->msgs && t->sd.ops->text) mw__buf_tail(&t->buf)[0] |= MSG_TEXT_BIT;
        mw__buf_commit(&t->buf, (size_t)fl);
        t->msgs++;
        t->bytes += (uint64_t)fl;
    }
    return fl < 0 ? (int)fl : 0;
}

size_t mw__conn_tx_pending(mw__conn_t *c) {
    tx_lock(c);
    size_t n = mw__conn_tx_pending_nl(c);
    tx_unlock(c);
    return n;
}

size_t mw__conn_tx_pending_nl(mw__conn_t *c) {
    size_t n = mw__buf_len(&c->tx.buf);
    if (!n && c->msgs && (mw__stream_want(c->stream) & MW_WANT_WRITE)) n = 1;
    return n;
}

/* ---- rx ------------------------------------------------------------------- */

static int rx_fail(mw__conn_t *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int rx_fail(mw__conn_t *c, int code, const char *fmt, ...) {
    mw__conn_side_t *r = &c->rx;
    if (!r->failed) {
        r->failed = code;
        va_list ap;
        va_start(ap, fmt);
        mw__err_vset(&r->err, code, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Compaction moves every buffered byte: worth it when that is no more than
 * what was consumed since the last one (amortised O(1) a byte), or when the
 * buffer is full and does not start with a complete frame (the rest of that
 * frame needs the room). A fill on a buffer still full of unconsumed frames
 * (an io poll while the consumer is behind) must not move them each time. */
static bool compact_pays(mw__conn_t *c) {
    mw__buf_t *b = &c->rx.buf;
    if (mw__buf_len(b) <= b->rd) return true;
    if (mw__buf_tailroom(b) != 0) return false;
    const uint8_t *pl;
    size_t pn;
    return mw__frame_decode(&c->rx.fr, mw__buf_data(b), mw__buf_len(b), &pl, &pn) == MW_EAGAIN;
}

/* A read ended with n (< 0, not MW_EAGAIN): a close, or a failure that is
 * reported once the frames already buffered are delivered (mw__conn_next). */
static ssize_t read_end(mw__conn_t *c, ssize_t n) {
    mw__conn_side_t *r = &c->rx;
    c->rx_eof = true;
    if (n == MW_ECLOSED) {
        /* Whether the peer left mid-message is known only once the complete
         * messages before it are consumed: mw__conn_next tells. */
        if (!r->err.code) { /* the stream may know more (a WebSocket close code) */
            const char *why = c->stream->err.code ? mw_stream_last_error(c->stream) : "";
            mw__err_set(&r->err, MW_ECLOSED, "recv: %s", *why ? why : "peer closed the connection");
        }
        return n;
    }
    c->rx_io_err = (int)n;
    mw__err_set(&r->err, (int)n, "recv: %s", mw_stream_last_error(c->stream));
    return n;
}

static void note_read(mw__conn_t *c, size_t n) {
    c->rx.bytes += (uint64_t)n;
    if (c->flags & MW_CONN_RX_TIMESTAMPS) {
        uint64_t ts; /* a recorder or a replay knows the time of the read */
        c->rx_ts_ns = mw__stream_rx_time(c->stream, &ts) == 0 ? ts : mw_now_ns();
    }
}

/* Takes the rx buffer, or grows it, to want bytes (within rx_buf). */
static int rx_grow(mw__conn_t *c, size_t want) {
    mw__conn_side_t *r = &c->rx;
    if (mw__buf_grow(&r->buf, want, r->buf_max) < 0)
        return rx_fail(c, MW_ENOMEM, "recv: out of memory for a %zu-byte rx buffer", want);
    if (r->buf.cap > r->buf_want) r->buf_want = (uint32_t)r->buf.cap;
    return 0;
}

/* A message stream: one message per readmsg, each put behind the in-memory
 * header, while the rx buffer has room for a largest one. After the first,
 * only messages already whole inside the stream join (MW_MSG_BUFFERED): no
 * second read of the socket, and the stream's replies (pong, close) wait
 * until these messages are consumed. */
static ssize_t fill_msgs(mw__conn_t *c) {
    mw__buf_t *b = &c->rx.buf;
    size_t need = (size_t)c->max_msg + MSG_HDR, total = 0;
    if (b->cap < c->rx.buf_want && rx_grow(c, c->rx.buf_want) < 0) return MW_ENOMEM;
    /* Compact when that makes room for a largest message: a message stream
     * cannot take part of one. */
    if (mw__buf_tailroom(b) < need && b->rd && b->cap - mw__buf_len(b) >= need) mw__buf_compact(b);
    while (mw__buf_tailroom(b) >= need) {
        uint8_t *p = mw__buf_tail(b);
        int of = 0;
        ssize_t n = mw__stream_readmsg(c->stream, p + MSG_HDR, c->max_msg, total ? MW_MSG_BUFFERED : 0, &of);
        if (n < 0) {
            if (total) break; /* a failure is met again by the next read */
            return n == MW_EAGAIN ? n : read_end(c, n);
        }
        p[0] = (uint8_t)(n >> 24), p[1] = (uint8_t)(n >> 16), p[2] = (uint8_t)(n >> 8), p[3] = (uint8_t)n;
        if (of & MW_MSG_TEXT) p[0] |= MSG_TEXT_BIT; /* the type travels with the message */
        mw__buf_commit(b, MSG_HDR + (size_t)n);
        total += MSG_HDR + (size_t)n;
    }
    if (!total) return MW_EAGAIN; /* full of messages not consumed yet */
    note_read(c, total);
    return (ssize_t)total;
}

/* Inlined into mw__conn_pump (one call less per event); mw__conn_fill is the
 * same for other callers. */
static inline __attribute__((always_inline)) ssize_t fill_in(mw__conn_t *c) {
    mw__conn_side_t *r = &c->rx;
    if (r->failed) return r->failed;
    if (c->rx_eof) return c->rx_io_err ? c->rx_io_err : MW_ECLOSED;
    if (c->msgs) return fill_msgs(c);
    /* No buffer yet (or a smaller one than a read filled before): take it. */
    if (r->buf.cap < r->buf_want && rx_grow(c, r->buf_want) < 0) return MW_ENOMEM;
    size_t tail = mw__buf_tailroom(&r->buf);
    if (tail < c->max_msg + FRAME_OVERHEAD && r->buf.rd && compact_pays(c)) {
        mw__buf_compact(&r->buf);
        tail = mw__buf_tailroom(&r->buf);
    }
    if (tail == 0) {
        /* Full of frames not consumed yet: nothing can be read until they
         * are consumed. Not an error. Full of one frame's beginning: it
         * needs a larger buffer. */
        if (r->buf.cap >= r->buf_max || r->buf.rd || !compact_pays(c)) return MW_EAGAIN;
        if (rx_grow(c, r->buf.cap * 2) < 0) return MW_ENOMEM;
        tail = mw__buf_tailroom(&r->buf);
    }
    ssize_t n = mw__stream_read(c->stream, mw__buf_tail(&r->buf), tail);
    if (n > 0) {
        mw__buf_commit(&r->buf, (size_t)n);
        note_read(c, (size_t)n);
        /* The read filled the buffer: the kernel may hold more. Read more
         * at a time from now on (the next buffer taken is larger). */
        if ((size_t)n == tail && r->buf.cap < r->buf_max && r->buf_want < r->buf.cap * 2)
            r->buf_want = (uint32_t)(r->buf.cap * 2 > r->buf_max ? r->buf_max : r->buf.cap * 2);
        return n;
    }
    return n == MW_EAGAIN ? n : read_end(c, n);
}

ssize_t mw__conn_fill(mw__conn_t *c) { return fill_in(c); }

/* No complete frame buffered. After the peer closed that is the end: clean
 * if nothing is left, truncated if part of a message is. */
static int need_more(mw__conn_t *c) {
    if (!c->rx_eof) return MW_EAGAIN;
    if (c->rx_io_err) { /* the read failed: now that the buffered frames are out, say so */
        c->rx.failed = c->rx_io_err;
        return c->rx_io_err;
    }
    size_t have = mw__buf_len(&c->rx.buf);
    if (!have) return MW_ECLOSED;
    return rx_fail(c, MW_ETRUNC, "recv: peer closed inside a message (%zu bytes of it received)", have);
}

/* The first message failed: what the peer's first bytes look like, when
 * that suggests it speaks something else (another serdes, TLS, HTTP). */
const char *mw__conn_peer_hint(const mw__conn_t *c) {
    size_t n = mw__buf_len(&c->rx.buf);
    if (c->rx.msgs || !n) return ""; /* it spoke our language before, or nothing to look at */
    const uint8_t *p = mw__buf_data(&c->rx.buf);
    bool text = c->rx.sd.ops->text, framed = !c->msgs && c->rx.fr.kind == MW_FRAME_U32BE;
    if (n >= 2 && p[0] == 0x16 && p[1] == 0x03) return " (the peer seems to start TLS: is its URL tls:// or wss://?)";
    if (n >= 4 && (!memcmp(p, "GET ", 4) || !memcmp(p, "HTTP", 4)))
        return " (the peer speaks HTTP: is its URL ws:// or wss://?)";
    size_t at = framed && n > 4 ? 4 : 0; /* the payload, if the prefix was one */
    if (!text && n > at && (p[0] == '{' || p[at] == '{'))
        return " (the peer seems to send JSON text: is its serdes \"text\"?)";
    if (n > at && !text && (p[at] & 0xF0) == 0x80 && strcmp(mw_serdes_name(&c->rx.sd), "msgpack") != 0)
        return " (the peer seems to send msgpack maps: is its serdes \"msgpack\"?)";
    if (text && n && p[0] != '{' && (p[0] < 0x20 || p[0] >= 0x80) && p[0] != '\n' && p[0] != ' ')
        return " (the peer seems to send binary frames: is its serdes \"fixed\" or \"msgpack\"?)";
    return "";
}

static int frame_error(mw__conn_t *c, ssize_t code) {
    const char *hint = mw__conn_peer_hint(c);
    if (code == MW_ETOOBIG && (strstr(hint, "TLS") || strstr(hint, "HTTP"))) /* not a big message: another protocol */
        return rx_fail(c, MW_EPROTO, "recv: not a msgwire frame%s", hint);
    if (code == MW_ETOOBIG)
        return rx_fail(c, MW_ETOOBIG, "recv: frame larger than max_msg %u bytes%s", c->rx.fr.max_len, mw__conn_peer_hint(c));
    return rx_fail(c, (int)code, "recv: bad frame: %s%s", mw_strerror((int)code), mw__conn_peer_hint(c));
}

/* A message stream's rx buffer: our own header (top bit: a text message),
 * then the message. */
static ssize_t msg_frame(const mw__conn_t *c, const uint8_t *in, size_t have, const uint8_t **pl, size_t *pn,
                         bool *text) {
    if (have < MSG_HDR) return MW_EAGAIN;
    *text = (in[0] & MSG_TEXT_BIT) != 0;
    size_t n = (size_t)(in[0] & 0x7F) << 24 | (size_t)in[1] << 16 | (size_t)in[2] << 8 | in[3];
    if (n > c->max_msg || n > have - MSG_HDR) return MW_EPROTO; /* never: only fill_msgs writes these */
    *pl = in + MSG_HDR;
    *pn = n;
    return (ssize_t)(MSG_HDR + n);
}

int mw__conn_next_raw(mw__conn_t *c, const uint8_t **payload, size_t *len) {
    mw__conn_side_t *r = &c->rx;
    if (r->failed) return r->failed;
    size_t have = mw__buf_len(&r->buf);
    if (!have) return need_more(c);
    bool text;
    ssize_t fl = c->msgs ? msg_frame(c, mw__buf_data(&r->buf), have, payload, len, &text)
                         : mw__frame_decode_resume(&r->fr, mw__buf_data(&r->buf), have, &c->rx_scanned, payload, len);
    if (fl < 0) return fl == MW_EAGAIN ? need_more(c) : frame_error(c, fl);
    mw__buf_consume(&r->buf, (size_t)fl);
    r->msgs++;
    return 0;
}

static int next_slow(mw__conn_t *c, const mw_schema_t **s, void *msg, size_t cap);

/* A whole frame whose content the serdes refused. */
static __attribute__((noinline)) int decode_failed(mw__conn_t *c, ssize_t d) {
    mw__conn_side_t *r = &c->rx;
    if (!r->failed) c->rx_where = MW_CLOSE_MESSAGE;
    return rx_fail(c, (int)d, "recv: %s decode: %s%s", mw_serdes_name(&r->sd), mw_serdes_last_error(&r->sd),
                   mw__conn_peer_hint(c));
}

/* The common case inline: a byte stream with u32 framing and a whole frame
 * buffered; everything else (and every error) in next_slow. */
int mw__conn_next(mw__conn_t *c, const mw_schema_t **s, void *msg, size_t cap) {
    mw__conn_side_t *r = &c->rx;
    size_t have = mw__buf_len(&r->buf);
    if (r->failed || c->msgs || r->fr.kind != MW_FRAME_U32BE || have < 4) return next_slow(c, s, msg, cap);
    const uint8_t *in = mw__buf_data(&r->buf);
    size_t pn = (size_t)in[0] << 24 | (size_t)in[1] << 16 | (size_t)in[2] << 8 | in[3];
    if (pn > r->fr.max_len || pn > have - 4) return next_slow(c, s, msg, cap);
    ssize_t d = mw_serdes_decode(&r->sd, in + 4, pn, c->proto, s, msg, cap);
    if (d < 0) return decode_failed(c, d);
    mw__buf_consume(&r->buf, pn + 4);
    r->msgs++;
    if (r->hook) r->hook(r->hook_ud, *s, msg);
    return 0;
}

static __attribute__((noinline)) int next_slow(mw__conn_t *c, const mw_schema_t **s, void *msg, size_t cap) {
    mw__conn_side_t *r = &c->rx;
    if (r->failed) return r->failed;
    size_t have = mw__buf_len(&r->buf);
    if (!have) return need_more(c);
    const uint8_t *pl;
    size_t pn;
    ssize_t fl;
    const uint8_t *in = mw__buf_data(&r->buf);
    if (c->msgs) {
        bool text;
        fl = msg_frame(c, in, have, &pl, &pn, &text);
        if (fl < 0) return fl == MW_EAGAIN ? need_more(c) : frame_error(c, fl);
        if (!text && r->sd.ops->text) { /* RFC 6455 1003: a type of data it cannot accept */
            c->rx_where = MW_CLOSE_WRONG_TYPE;
            return rx_fail(c, MW_ETYPE, "recv: a binary WebSocket message where the text serdes reads text "
                                        "(the peer's serdes is binary, or it sends JSON as binary)");
        }
    } else if (r->fr.kind == MW_FRAME_U32BE && have >= 4) { /* the common framing, inline */
        pn = (size_t)in[0] << 24 | (size_t)in[1] << 16 | (size_t)in[2] << 8 | in[3];
        if (pn > r->fr.max_len) return frame_error(c, MW_ETOOBIG);
        if (pn > have - 4) return need_more(c);
        pl = in + 4;
        fl = (ssize_t)pn + 4;
    } else {
        fl = mw__frame_decode_resume(&r->fr, in, have, &c->rx_scanned, &pl, &pn);
        if (fl < 0) return fl == MW_EAGAIN ? need_more(c) : frame_error(c, fl);
    }
    ssize_t d = mw_serdes_decode(&r->sd, pl, pn, c->proto, s, msg, cap);
    if (d < 0) return decode_failed(c, d);
    mw__buf_consume(&r->buf, (size_t)fl);
    r->msgs++;
    if (r->hook) r->hook(r->hook_ud, *s, msg);
    return 0;
}

int mw__conn_recv(mw__conn_t *c, const mw_schema_t **s, void *msg, size_t cap) {
    for (;;) {
        int r = mw__conn_next(c, s, msg, cap);
        if (r != MW_EAGAIN) return r;
        ssize_t n = mw__conn_fill(c);
        if (n == MW_EAGAIN) return MW_EAGAIN;
        /* a close or a failed read: next delivers what is buffered, then says how it ended */
    }
}

/* The decode scratch is held while messages are delivered: taken from the
 * pool when something is buffered, given back after (unless the pool has
 * no room for it: then the connection keeps it, as it keeps a large buffer). */
static inline __attribute__((always_inline)) int dispatch_in(mw__conn_t *c, mw__conn_msg_fn fn, void *ud, int budget) {
    int n = 0;
    c->rx_stopped = false;
    size_t cap = c->proto->max_size;
    bool took = false;
    if (!c->rx_msg && mw__buf_len(&c->rx.buf)) {
        if (!(c->rx_msg = mw__pool_take(cap)))
            return rx_fail(c, MW_ENOMEM, "recv: out of memory for a %zu-byte decode scratch", cap);
        took = true; /* a dispatch inside fn (same conn) uses it as it is */
    }
    while (budget < 0 || n < budget) {
        /* all delivered and the peer still there: no need to ask next */
        if (!mw__buf_len(&c->rx.buf) && !c->rx_eof && !c->rx.failed) break;
        const mw_schema_t *s;
        int r = mw__conn_next(c, &s, c->rx_msg, cap);
        if (r == MW_EAGAIN) break;
        if (r < 0) {
            n = r;
            break;
        }
        n++;
        if (!fn(ud, c, s, c->rx_msg)) {
            c->rx_stopped = true;
            break;
        }
    }
    if (took && !__atomic_load_n(&c->hold, __ATOMIC_RELAXED) && mw__pool_keep(c->rx_msg, cap)) c->rx_msg = NULL;
    return n;
}

int mw__conn_dispatch(mw__conn_t *c, mw__conn_msg_fn fn, void *ud, int budget) { return dispatch_in(c, fn, ud, budget); }

ssize_t mw__conn_pump(mw__conn_t *c, mw__conn_msg_fn fn, void *ud, int max_reads, bool *more) {
    ssize_t total = 0;
    *more = false;
    for (int i = 0; i < max_reads; i++) {
        ssize_t n = fill_in(c);
        int d = dispatch_in(c, fn, ud, -1); /* before the error: deliver what came first */
        if (d < 0) return d;
        if (n < 0 && n != MW_EAGAIN) return n;
        if (n > 0) total += n;
        /* Input the stream holds (TLS, WebSocket) shows on no fd: read again.
         * This also covers a fill that found the rx buffer full. */
        if (c->rx_stopped || mw__stream_pending(c->stream) == 0) {
            if (!__atomic_load_n(&c->hold, __ATOMIC_RELAXED)) mw__buf_trim(&c->rx.buf); /* every message delivered: an idle connection holds none */
            return total;
        }
    }
    *more = true;
    return total;
}

void mw__conn_hold(mw__conn_t *c) {
    tx_lock(c);
    mw__conn_hold_nl(c);
    tx_unlock(c);
}

void mw__conn_hold_nl(mw__conn_t *c) {
    __atomic_store_n(&c->hold, true, __ATOMIC_RELAXED); /* the driver reads it without the lock */
}

/* A claim or bytes still queued keep the tx buffer, part of a message the
 * rx buffer; the pool may also refuse a block (too large: then the
 * connection keeps it while open, as it would without hold). */
bool mw__conn_release(mw__conn_t *c, bool rx, uint64_t *tx_seen) {
    bool busy = false;
    tx_lock(c);
    if (c->tx.msgs != *tx_seen) { /* sent since the last look: not idle */
        *tx_seen = c->tx.msgs;
        tx_unlock(c);
        return false;
    }
    if (c->tx_claimed || mw__buf_len(&c->tx.buf)) busy = true;
    else mw__buf_trim(&c->tx.buf);
    if (rx) {
        if (mw__buf_len(&c->rx.buf)) busy = true;
        else mw__buf_trim(&c->rx.buf);
        if (c->rx_msg && mw__pool_keep(c->rx_msg, c->proto->max_size)) c->rx_msg = NULL;
    }
    __atomic_store_n(&c->hold, busy, __ATOMIC_RELAXED);
    tx_unlock(c);
    return !busy;
}

/* Read from another thread than the connection's (mw_clt_stats,
 * mw_svc_stats), this is the documented snapshot: word-sized counters read
 * while the owner moves them, no lock on the hot path for a display value;
 * so ThreadSanitizer does not instrument it. */
__attribute__((no_sanitize_thread)) void mw__conn_stats(const mw__conn_t *c, mw_conn_stats_t *st) {
    st->msgs_out = c->tx.msgs;
    st->bytes_out = c->tx.bytes;
    st->msgs_in = c->rx.msgs;
    st->bytes_in = c->rx.bytes;
    st->buffer_bytes = c->rx.buf.cap + c->tx.buf.cap + (c->rx_msg ? c->proto->max_size : 0);
}

const char *mw__conn_last_error(const mw__conn_t *c) {
    if (c->rx.err.code) return mw_err_text(&c->rx.err);
    return mw_err_text(&c->tx.err);
}

void mw__conn_close_transport(mw__conn_t *c, int reason, const char *why, bool going_away) {
    mw__close_where_t where = reason && reason == c->rx.failed ? (mw__close_where_t)c->rx_where : MW_CLOSE_STREAM;
    mw__transport_close_at(c->stream, reason, where, why ? why : mw__conn_last_error(c), going_away);
}
