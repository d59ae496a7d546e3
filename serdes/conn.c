/* conn.c - message connection: framing + serdes + buffers over a stream. */
#include "mw_conn.h"

#include <stdlib.h>
#include <string.h>

#include <stdarg.h>

#include "mw_clock.h"
#include "mw_idle.h"

/* Room for the largest framing overhead (u32 prefix, or a newline). */
#define FRAME_OVERHEAD 8u

static const char *const mode_names[] = {"spin", "blocking", "event"};

int mw_mode_parse(const char *name) {
    for (int i = 0; i < 3; i++)
        if (name && strcmp(name, mode_names[i]) == 0) return i;
    return MW_EINVAL;
}

const char *mw_mode_name(mw_mode_t m) {
    return (unsigned)m < 3 ? mode_names[m] : "?";
}

void mw_conn_opts_init(mw_conn_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->serdes = "fixed";
    o->frame = MW_FRAME_AUTO;
    o->max_msg = 65536;
    o->rx_buf = 256 * 1024;
    o->tx_buf = 256 * 1024;
}

/* The lock is a plain bool in the public struct (no <stdatomic.h> there, so
 * the header compiles as C++), taken with the compiler's atomic builtins. */
static void tx_lock(mw_conn_t *c) {
    if (!(c->flags & MW_CONN_TX_LOCK)) return;
    while (__atomic_test_and_set(&c->tx_lock, __ATOMIC_ACQUIRE)) mw_cpu_relax();
}

static void tx_unlock(mw_conn_t *c) {
    if (c->flags & MW_CONN_TX_LOCK) __atomic_clear(&c->tx_lock, __ATOMIC_RELEASE);
}

/* Configures one side's serdes and framer; the old serdes is released only
 * once the new one is ready, so a failed switch leaves the side as it was. */
static int side_setup(mw_conn_side_t *side, const char *serdes, int frame, uint32_t max_msg,
                      bool records) {
    mw_serdes_t nsd;
    int r = mw_serdes_init(&nsd, serdes, 0);
    if (r < 0) {
        mw_err_copy(&side->err, &nsd.err);
        return r;
    }
    /* A message stream (WebSocket) delimits messages itself: its records are
     * u32-prefixed whatever the serdes, and nothing else goes on the wire. */
    int kind = records ? MW_FRAME_U32BE : frame == MW_FRAME_AUTO ? (int)nsd.ops->default_frame : frame;
    if (kind == MW_FRAME_NONE && !records) { /* a byte stream needs a delimiter */
        mw_serdes_fini(&nsd);
        return mw_err_set(&side->err, MW_EINVAL, "framing \"none\" needs a message stream (WebSocket)");
    }
    uint32_t max = kind == MW_FRAME_U16BE && max_msg > 65535 ? 65535 : max_msg;
    mw_framer_t fr;
    r = mw_framer_init(&fr, (mw_frame_kind_t)kind, max, kind == MW_FRAME_FIXED ? max : 0);
    if (r < 0) {
        mw_serdes_fini(&nsd);
        return mw_err_set(&side->err, r, "framing %d is not valid with max_msg %u", kind, max_msg);
    }
    if (side->sd.ops) mw_serdes_fini(&side->sd);
    side->sd = nsd;
    side->fr = fr;
    return 0;
}

int mw_conn_init(mw_conn_t *c, mw_stream_t *stream, const mw_protocol_t *p,
                 const mw_conn_opts_t *o, mw_err_t *err) {
    mw_conn_opts_t def;
    if (!o) {
        mw_conn_opts_init(&def);
        o = &def;
    }
    memset(c, 0, sizeof *c); /* tx_lock free */
    c->stream = stream;
    c->proto = p;
    c->flags = o->flags;
    c->max_msg = o->max_msg ? o->max_msg : 65536;
    int r;
    uint64_t need = (uint64_t)c->max_msg + FRAME_OVERHEAD; /* no uint32 wrap-around */
    if (o->rx_buf < need || o->tx_buf < need) {
        r = mw_err_set(err, MW_EINVAL, "buffers (rx %u, tx %u) must each hold one frame of max_msg %u + %u",
                       o->rx_buf, o->tx_buf, c->max_msg, FRAME_OVERHEAD);
        goto fail;
    }
    const char *serdes = o->serdes ? o->serdes : "fixed";
    c->records = mw_stream_ctl(stream, MW_STREAM_CTL_MSG_RECORDS, 0) == 1;
    if ((r = side_setup(&c->tx, serdes, o->frame, c->max_msg, c->records)) < 0 ||
        (r = side_setup(&c->rx, serdes, o->frame, c->max_msg, c->records)) < 0) {
        mw_err_copy(err, c->tx.err.code ? &c->tx.err : &c->rx.err);
        goto fail;
    }
    if (c->records) mw_stream_ctl(stream, MW_STREAM_CTL_MSG_TEXT, c->tx.sd.ops->text);
    c->rx_msg = calloc(1, p->max_size);
    if (!c->rx_msg || mw_buf_init(&c->tx.buf, o->tx_buf) < 0 || mw_buf_init(&c->rx.buf, o->rx_buf) < 0) {
        r = mw_err_set(err, MW_ENOMEM, "out of memory for connection buffers");
        goto fail;
    }
    return 0;
fail:
    mw_conn_fini(c);
    return r;
}

void mw_conn_fini(mw_conn_t *c) {
    mw_stream_free(c->stream);
    c->stream = NULL;
    if (c->tx.sd.ops) mw_serdes_fini(&c->tx.sd);
    if (c->rx.sd.ops) mw_serdes_fini(&c->rx.sd);
    c->tx.sd.ops = c->rx.sd.ops = NULL;
    mw_buf_fini(&c->tx.buf);
    mw_buf_fini(&c->rx.buf);
    free(c->rx_msg);
    c->rx_msg = NULL;
}

int mw_conn_set_serdes(mw_conn_t *c, int dirs, const char *serdes, int frame) {
    int r = 0;
    if (dirs & MW_DIR_TX) {
        tx_lock(c);
        r = side_setup(&c->tx, serdes, frame, c->max_msg, c->records);
        /* Records already handed to the stream keep the type they were sent with. */
        if (r == 0 && c->records) mw_stream_ctl(c->stream, MW_STREAM_CTL_MSG_TEXT, c->tx.sd.ops->text);
        tx_unlock(c);
        if (r < 0) return r;
    }
    if (dirs & MW_DIR_RX) {
        r = side_setup(&c->rx, serdes, frame, c->max_msg, c->records);
        if (r == 0) c->rx_scanned = 0; /* a new framing starts its search afresh */
    }
    return r;
}

/* ---- tx ------------------------------------------------------------------- */

static int tx_fail(mw_conn_t *c, int code) {
    mw_conn_side_t *t = &c->tx;
    if (!t->failed) {
        t->failed = code;
        mw_err_set(&t->err, code, "send: %s", c->stream->err.code ? mw_stream_last_error(c->stream)
                                                                   : mw_strerror(code));
    }
    return code;
}

static int enqueue_nl(mw_conn_t *c, const mw_schema_t *s, const void *msg) {
    mw_conn_side_t *t = &c->tx;
    if (t->failed) return t->failed;
    size_t pre = mw_frame_prefix_len(&t->fr), suf = mw_frame_suffix_len(&t->fr);
    size_t want = c->max_msg + pre + suf;
    ssize_t n;
    size_t room;
    /* Encode into the tail as it is; compact (move pending bytes) only when
     * the message did not fit, not whenever a worst-case frame would not. */
    for (;;) {
        room = mw_buf_tailroom(&t->buf);
        if (room > want) room = want;
        n = room > pre + suf ? mw_serdes_encode(&t->sd, s, msg, mw_buf_tail(&t->buf) + pre, room - pre - suf)
                             : MW_ETOOBIG;
        if (n != MW_ETOOBIG || room == want) break;
        if (!t->buf.rd) return MW_EAGAIN; /* full: flush first */
        mw_buf_compact(&t->buf);
    }
    if (n < 0) return mw_err_set(&t->err, (int)n, "encode %s: %s", s->name, mw_serdes_last_error(&t->sd));
    uint8_t *p = mw_buf_tail(&t->buf);
    ssize_t fl;
    if (t->fr.kind == MW_FRAME_U32BE && (size_t)n <= t->fr.max_len) { /* the common framing, inline */
        p[0] = (uint8_t)(n >> 24); /* big-endian on any host; compiles to bswap + store */
        p[1] = (uint8_t)(n >> 16);
        p[2] = (uint8_t)(n >> 8);
        p[3] = (uint8_t)n;
        fl = n + 4;
    } else {
        fl = mw_frame_seal(&t->fr, p, (size_t)n);
    }
    if (fl < 0) return mw_err_set(&t->err, (int)fl, "frame %s: %zd bytes: %s", s->name, n, mw_strerror((int)fl));
    mw_buf_commit(&t->buf, (size_t)fl);
    t->msgs++;
    t->bytes += (uint64_t)fl;
    if (t->hook) t->hook(t->hook_ud, s, msg);
    return 0;
}

static int flush_nl(mw_conn_t *c) {
    mw_conn_side_t *t = &c->tx;
    if (t->failed) return t->failed;
    size_t len;
    while ((len = mw_buf_len(&t->buf)) != 0) {
        ssize_t n = mw_stream_write(c->stream, mw_buf_data(&t->buf), len);
        if (n > 0) {
            mw_buf_consume(&t->buf, (size_t)n);
            /* A short write means the socket is full (or, blocking, that
             * SO_SNDTIMEO expired): retrying now would only wait again. */
            if ((size_t)n < len) return MW_EAGAIN;
            continue;
        }
        if (n == 0 || n == MW_EAGAIN) return MW_EAGAIN;
        return tx_fail(c, (int)n);
    }
    if (c->records && (mw_stream_want(c->stream) & MW_WANT_WRITE)) {
        /* records accepted by the stream but still in its own buffer */
        ssize_t n = mw_stream_writev(c->stream, NULL, 0);
        if (n == MW_EAGAIN) return MW_EAGAIN;
        if (n < 0) return tx_fail(c, (int)n);
    }
    return 0;
}

int mw_conn_enqueue(mw_conn_t *c, const mw_schema_t *s, const void *msg) {
    tx_lock(c);
    int r = enqueue_nl(c, s, msg);
    tx_unlock(c);
    return r;
}

int mw_conn_flush(mw_conn_t *c) {
    tx_lock(c);
    int r = flush_nl(c);
    tx_unlock(c);
    return r;
}

int mw_conn_send(mw_conn_t *c, const mw_schema_t *s, const void *msg) {
    tx_lock(c);
    int r = enqueue_nl(c, s, msg);
    if (r == MW_EAGAIN) {
        r = flush_nl(c);
        if (r == 0 || r == MW_EAGAIN) r = enqueue_nl(c, s, msg);
    }
    if (r == 0) {
        int f = flush_nl(c);
        if (f < 0 && f != MW_EAGAIN) r = f;
    }
    tx_unlock(c);
    return r;
}

uint8_t *mw_conn_claim(mw_conn_t *c, size_t max) {
    tx_lock(c);
    mw_conn_side_t *t = &c->tx;
    uint8_t *p = NULL;
    if (!t->failed && !c->tx_claimed && max <= c->max_msg)
        p = mw_buf_reserve(&t->buf, max + mw_frame_prefix_len(&t->fr) + mw_frame_suffix_len(&t->fr));
    if (!p) {
        tx_unlock(c);
        return NULL;
    }
    c->tx_claimed = true;
    c->tx_claim_max = max;
    return p + mw_frame_prefix_len(&t->fr);
}

int mw_conn_commit(mw_conn_t *c, size_t len) {
    if (!c->tx_claimed) return MW_EINVAL; /* no claim: nothing reserved, no lock held */
    c->tx_claimed = false;
    mw_conn_side_t *t = &c->tx;
    ssize_t fl = len > c->tx_claim_max ? MW_EINVAL : mw_frame_seal(&t->fr, mw_buf_tail(&t->buf), len);
    if (fl >= 0) {
        mw_buf_commit(&t->buf, (size_t)fl);
        t->msgs++;
        t->bytes += (uint64_t)fl;
    }
    tx_unlock(c);
    return fl < 0 ? (int)fl : 0;
}

size_t mw_conn_tx_pending(mw_conn_t *c) {
    tx_lock(c);
    size_t n = mw_buf_len(&c->tx.buf);
    if (!n && c->records && (mw_stream_want(c->stream) & MW_WANT_WRITE)) n = 1;
    tx_unlock(c);
    return n;
}

/* ---- rx ------------------------------------------------------------------- */

static int rx_fail(mw_conn_t *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int rx_fail(mw_conn_t *c, int code, const char *fmt, ...) {
    mw_conn_side_t *r = &c->rx;
    if (!r->failed) {
        r->failed = code;
        va_list ap;
        va_start(ap, fmt);
        mw_err_vset(&r->err, code, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Compaction moves every buffered byte: worth it when that is no more than
 * what was consumed since the last one (amortised O(1) a byte), or when the
 * buffer is full and does not start with a complete frame (the rest of that
 * frame needs the room). A fill on a buffer still full of unconsumed frames
 * (an io poll while the consumer is behind) must not move them each time. */
static bool compact_pays(mw_conn_t *c) {
    mw_buf_t *b = &c->rx.buf;
    if (mw_buf_len(b) <= b->rd) return true;
    if (mw_buf_tailroom(b) != 0) return false;
    const uint8_t *pl;
    size_t pn;
    return mw_frame_decode(&c->rx.fr, mw_buf_data(b), mw_buf_len(b), &pl, &pn) == MW_EAGAIN;
}

ssize_t mw_conn_fill(mw_conn_t *c) {
    mw_conn_side_t *r = &c->rx;
    if (r->failed) return r->failed;
    if (c->rx_eof) return c->rx_io_err ? c->rx_io_err : MW_ECLOSED;
    size_t tail = mw_buf_tailroom(&r->buf);
    if (tail < c->max_msg + FRAME_OVERHEAD && r->buf.rd && compact_pays(c)) {
        mw_buf_compact(&r->buf);
        tail = mw_buf_tailroom(&r->buf);
    }
    /* Full of frames not consumed yet: nothing can be read until they are
     * consumed. Not an error. */
    if (tail == 0) return MW_EAGAIN;
    ssize_t n = mw_stream_read(c->stream, mw_buf_tail(&r->buf), tail);
    if (n > 0) {
        mw_buf_commit(&r->buf, (size_t)n);
        r->bytes += (uint64_t)n;
        if (c->flags & MW_CONN_RX_TIMESTAMPS) {
            uint64_t ts; /* a recorder or a replay knows the time of the read */
            c->rx_ts_ns = mw_stream_ctl(c->stream, MW_STREAM_CTL_RX_TS, (intptr_t)&ts) == 0 ? ts : mw_now_ns();
        }
        return n;
    }
    if (n == MW_EAGAIN) return n;
    if (n == MW_ECLOSED) {
        /* Whether the peer left mid-message is known only once the complete
         * messages before it are consumed: mw_conn_next tells. */
        c->rx_eof = true;
        if (!r->err.code) { /* the stream may know more (a WebSocket close code) */
            const char *why = c->stream->err.code ? mw_stream_last_error(c->stream) : "";
            mw_err_set(&r->err, MW_ECLOSED, "recv: %s", *why ? why : "peer closed the connection");
        }
        return n;
    }
    /* Like a close: the frames already buffered are delivered first, then
     * mw_conn_next reports the error. */
    c->rx_eof = true;
    c->rx_io_err = (int)n;
    mw_err_set(&r->err, (int)n, "recv: %s", mw_stream_last_error(c->stream));
    return n;
}

/* No complete frame buffered. After the peer closed that is the end: clean
 * if nothing is left, truncated if part of a message is. */
static int need_more(mw_conn_t *c) {
    if (!c->rx_eof) return MW_EAGAIN;
    if (c->rx_io_err) { /* the read failed: now that the buffered frames are out, say so */
        c->rx.failed = c->rx_io_err;
        return c->rx_io_err;
    }
    size_t have = mw_buf_len(&c->rx.buf);
    if (!have) return MW_ECLOSED;
    return rx_fail(c, MW_ETRUNC, "recv: peer closed inside a message (%zu bytes of it received)", have);
}

static int frame_error(mw_conn_t *c, ssize_t code) {
    if (code == MW_ETOOBIG)
        return rx_fail(c, MW_ETOOBIG, "recv: frame larger than max_msg %u bytes", c->rx.fr.max_len);
    return rx_fail(c, (int)code, "recv: bad frame: %s", mw_strerror((int)code));
}

int mw_conn_next_raw(mw_conn_t *c, const uint8_t **payload, size_t *len) {
    mw_conn_side_t *r = &c->rx;
    if (r->failed) return r->failed;
    size_t have = mw_buf_len(&r->buf);
    if (!have) return need_more(c);
    ssize_t fl = mw_frame_decode_resume(&r->fr, mw_buf_data(&r->buf), have, &c->rx_scanned, payload, len);
    if (fl < 0) return fl == MW_EAGAIN ? need_more(c) : frame_error(c, fl);
    mw_buf_consume(&r->buf, (size_t)fl);
    r->msgs++;
    return 0;
}

int mw_conn_next(mw_conn_t *c, const mw_schema_t **s, void *msg, size_t cap) {
    mw_conn_side_t *r = &c->rx;
    if (r->failed) return r->failed;
    size_t have = mw_buf_len(&r->buf);
    if (!have) return need_more(c);
    const uint8_t *pl;
    size_t pn;
    ssize_t fl;
    const uint8_t *in = mw_buf_data(&r->buf);
    if (r->fr.kind == MW_FRAME_U32BE && have >= 4) { /* the common framing, inline */
        pn = (size_t)in[0] << 24 | (size_t)in[1] << 16 | (size_t)in[2] << 8 | in[3];
        if (pn > r->fr.max_len) return frame_error(c, MW_ETOOBIG);
        if (pn > have - 4) return need_more(c);
        pl = in + 4;
        fl = (ssize_t)pn + 4;
    } else {
        fl = mw_frame_decode_resume(&r->fr, in, have, &c->rx_scanned, &pl, &pn);
        if (fl < 0) return fl == MW_EAGAIN ? need_more(c) : frame_error(c, fl);
    }
    ssize_t d = mw_serdes_decode(&r->sd, pl, pn, c->proto, s, msg, cap);
    if (d < 0)
        return rx_fail(c, (int)d, "recv: %s decode: %s", mw_serdes_name(&r->sd),
                       mw_serdes_last_error(&r->sd));
    mw_buf_consume(&r->buf, (size_t)fl);
    r->msgs++;
    if (r->hook) r->hook(r->hook_ud, *s, msg);
    return 0;
}

int mw_conn_recv(mw_conn_t *c, const mw_schema_t **s, void *msg, size_t cap) {
    for (;;) {
        int r = mw_conn_next(c, s, msg, cap);
        if (r != MW_EAGAIN) return r;
        ssize_t n = mw_conn_fill(c);
        if (n == MW_EAGAIN) return MW_EAGAIN;
        /* a close or a failed read: next delivers what is buffered, then says how it ended */
    }
}

int mw_conn_dispatch(mw_conn_t *c, mw_conn_msg_fn fn, void *ud, int budget) {
    int n = 0;
    c->rx_stopped = false;
    while (budget < 0 || n < budget) {
        const mw_schema_t *s;
        int r = mw_conn_next(c, &s, c->rx_msg, c->proto->max_size);
        if (r == MW_EAGAIN) break;
        if (r < 0) return r;
        n++;
        if (!fn(ud, c, s, c->rx_msg)) {
            c->rx_stopped = true;
            break;
        }
    }
    return n;
}

ssize_t mw_conn_pump(mw_conn_t *c, mw_conn_msg_fn fn, void *ud, int max_reads, bool *more) {
    bool decorated = c->stream->inner != NULL;
    ssize_t total = 0;
    *more = false;
    for (int i = 0; i < max_reads; i++) {
        ssize_t n = mw_conn_fill(c);
        int d = mw_conn_dispatch(c, fn, ud, -1); /* before the error: deliver what came first */
        if (d < 0) return d;
        if (n < 0) return n == MW_EAGAIN ? total : n;
        total += n;
        if (!decorated || c->rx_stopped) return total;
    }
    *more = true;
    return total;
}

void mw_conn_stats(const mw_conn_t *c, mw_conn_stats_t *st) {
    st->msgs_out = c->tx.msgs;
    st->bytes_out = c->tx.bytes;
    st->msgs_in = c->rx.msgs;
    st->bytes_in = c->rx.bytes;
}

const char *mw_conn_last_error(const mw_conn_t *c) {
    if (c->rx.err.code) return mw_err_text(&c->rx.err);
    return mw_err_text(&c->tx.err);
}
