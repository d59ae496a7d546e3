/* ws_tx.c - the WebSocket stream's writing half: messages -> frames.
 *
 * One encoder serves both ways in: writemsgs (one iovec per message, what
 * mw__conn uses) and the record view's writev (u32-prefixed records, for
 * tools), which parses its records into the same message descriptors.
 *
 * A client encodes each message into tx (header + masked copy) and flushes tx
 * with one write per call. A server masks nothing, so with tx empty it
 * gathers headers and the caller's payloads into one writev and copies into
 * tx only what the socket did not take.
 *
 * Everything here runs under the tx lock (w->lock): reads queue pongs and
 * close replies into the same buffer.
 */
#include "ws_impl.h"
#include "buf_impl.h"
#include "err_impl.h"
#include "stream_impl.h"

#include <assert.h>
#include <openssl/rand.h>

typedef mw__ws_t ws_t;

/* Messages per gathered writev: one call of writemsgs with up to this many
 * messages is one syscall. */
#define GATHER_MSGS 128
#define GATHER_IOV (2 * GATHER_MSGS)

bool mw__ws_close_code_ok(unsigned c) {
    /* 1012-1014 (service restart, try again later, bad gateway) are registered
     * with IANA after RFC 6455; 1004-1006 and 1015 must never be sent. */
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

/* Whether frames wait in tx (or in the control slots), read by the tx
 * lock's holder from the state itself. tx_held is its published copy for
 * want() on other threads, and may lag (encode_one commits without updating
 * it): a server that trusted it could gather new messages past a frame still
 * in tx and send them first. */
static bool held(const ws_t *w) { return mw__buf_len(&w->tx) || w->pong_pending || w->close_pending; }

void mw__ws_upd_held(ws_t *w) { atomic_store_explicit(&w->tx_held, held(w), memory_order_release); }

/* Four fresh mask bytes from a pool refilled with RAND_bytes now and then. */
static const uint8_t *next_mask(ws_t *w) {
    if (w->pool_pos + 4 > sizeof w->pool) {
        if (RAND_bytes(w->pool, sizeof w->pool) != 1) return NULL;
        w->pool_pos = 0;
    }
    const uint8_t *m = w->pool + w->pool_pos;
    w->pool_pos += 4;
    return m;
}

int mw__ws_tx_fail(ws_t *w, int code) {
    if (!w->tx_err) w->tx_err = code;
    return code;
}

static int tx_io_fail(ws_t *w, int code) {
    if (!w->tx_io_err) w->tx_io_err = code;
    return mw__ws_tx_fail(w, code);
}

static int mask_fail(ws_t *w) {
    return mw__ws_tx_fail(w, mw__err_set(&w->base.err, MW_ESYS, "ws: RAND_bytes failed"));
}

/* Appends one whole frame with a contiguous payload. 0 or MW_EAGAIN (no room). */
int mw__ws_put_frame(ws_t *w, unsigned op, const uint8_t *p, size_t n) {
    uint8_t *d = mw__buf_reserve(&w->tx, MW__WS_HDR_MAX + n);
    if (!d) return MW_EAGAIN;
    const uint8_t *m = NULL;
    if (!w->server && !(m = next_mask(w))) return mask_fail(w);
    size_t hl = mw__ws_hdr_encode(d, true, (int)op, n, m);
    mw__ws_xor_copy(d + hl, p, n, m, 0);
    mw__buf_commit(&w->tx, hl + n);
    return 0;
}

/* Moves control frames that waited for room into tx: the pong first, since
 * nothing may follow the close. */
static void drain_pending(ws_t *w) {
    if (w->pong_pending && mw__ws_put_frame(w, MW_WS_PONG, w->pong, w->pong_len) == 0) w->pong_pending = false;
    if (!w->pong_pending && w->close_pending && mw__ws_put_frame(w, MW_WS_CLOSE, w->closef, w->close_len) == 0)
        w->close_pending = false;
}

/* Writes tx to the inner stream until it is empty (0) or full (MW_EAGAIN). */
int mw__ws_flush_tx(ws_t *w) {
    int r = 0;
    if (w->tx_io_err) return w->tx_io_err;
    for (;;) {
        if (w->pong_pending || w->close_pending) drain_pending(w);
        size_t len = mw__buf_len(&w->tx);
        if (!len) break;
        ssize_t n = mw__stream_write(w->base.inner, mw__buf_data(&w->tx), len);
        if (n > 0) {
            mw__buf_consume(&w->tx, (size_t)n);
            continue;
        }
        if (n == 0 || n == MW_EAGAIN) {
            r = MW_EAGAIN;
            break;
        }
        mw__err_copy(&w->base.err, &w->base.inner->err);
        r = tx_io_fail(w, (int)n);
        break;
    }
    mw__ws_upd_held(w);
    return r;
}

/* Queues a control frame produced by the protocol (pong, close); it waits in
 * a slot if tx is full, so a full socket never loses it. */
void mw__ws_queue_ctrl(ws_t *w, unsigned op, const uint8_t *p, size_t n) {
    if (op == MW_WS_PONG) {
        if (w->pong_pending || mw__ws_put_frame(w, op, p, n) != 0) {
            memcpy(w->pong, p, n); /* only the latest ping needs its pong (RFC 6455 5.5.3) */
            w->pong_len = n;
            w->pong_pending = true;
        }
    } else if (w->pong_pending || mw__ws_put_frame(w, op, p, n) != 0) {
        memcpy(w->closef, p, n);
        w->close_len = n;
        w->close_pending = true;
    }
    mw__ws_upd_held(w);
}

/* Queues our close frame (once) and tries to send it. */
void mw__ws_send_close(ws_t *w, unsigned code, const char *reason) {
    if (w->close_queued || w->tx_io_err) return;
    uint8_t p[MW__WS_CTRL_MAX];
    size_t rn = reason ? strlen(reason) : 0;
    if (rn > MW__WS_CTRL_MAX - 2) rn = MW__WS_CTRL_MAX - 2;
    p[0] = (uint8_t)(code >> 8), p[1] = (uint8_t)code;
    if (rn) memcpy(p + 2, reason, rn);
    w->close_queued = true;
    w->sent_code = (int)code;
    mw__ws_queue_ctrl(w, MW_WS_CLOSE, p, 2 + rn);
    mw__ws_flush_tx(w);
}

/* ---- messages -> frames ---------------------------------------------------------- */

/* A read position in the caller's iovec array. */
typedef struct cur {
    const struct iovec *v;
    int cnt, i;
    size_t off;
} cur_t;

/* The next contiguous piece of at most n bytes; advances past it. */
static size_t cur_next(cur_t *c, size_t n, const uint8_t **p) {
    while (c->i < c->cnt && c->off == c->v[c->i].iov_len) c->i++, c->off = 0;
    assert(c->i < c->cnt);
    size_t k = c->v[c->i].iov_len - c->off;
    if (k > n) k = n;
    *p = (const uint8_t *)c->v[c->i].iov_base + c->off;
    c->off += k;
    return k;
}

static void cur_copy(cur_t *c, uint8_t *d, size_t n, const uint8_t *mask, size_t off) {
    while (n) {
        const uint8_t *p;
        size_t k = cur_next(c, n, &p);
        mw__ws_xor_copy(d, p, k, mask, off);
        d += k, off += k, n -= k;
    }
}

static void cur_skip(cur_t *c, size_t n) {
    const uint8_t *p;
    while (n) n -= cur_next(c, n, &p);
}

/* One message to send: its payload in the caller's iovecs. */
typedef struct wmsg {
    cur_t pay;
    size_t len;
    unsigned op;
} wmsg_t;

/* Encodes one message into tx (masking on a client). 1 done, MW_EAGAIN tx
 * full even after a flush, or an error. */
static int encode_one(ws_t *w, const wmsg_t *m) {
    uint8_t *d = mw__buf_reserve(&w->tx, MW__WS_HDR_MAX + m->len);
    if (!d) {
        int f = mw__ws_flush_tx(w);
        if (f < 0 && f != MW_EAGAIN) return f;
        if (!(d = mw__buf_reserve(&w->tx, MW__WS_HDR_MAX + m->len))) return MW_EAGAIN;
    }
    const uint8_t *mask = NULL;
    if (!w->server && !(mask = next_mask(w))) return mask_fail(w);
    size_t hl = mw__ws_hdr_encode(d, true, (int)m->op, m->len, mask);
    cur_t c = m->pay;
    cur_copy(&c, d + hl, m->len, mask, 0);
    mw__buf_commit(&w->tx, hl + m->len);
    return 1;
}

typedef struct ghdr {
    uint8_t b[10];
    uint8_t n;
} ghdr_t;

/* Copies what the socket did not take of a gathered message (sent bytes of
 * it already out) into tx. False if tx has no room. */
static bool hold_rest(ws_t *w, const ghdr_t *h, const wmsg_t *m, size_t sent) {
    size_t total = h->n + m->len;
    uint8_t *d = mw__buf_reserve(&w->tx, total - sent);
    if (!d) return false;
    size_t hsent = sent < h->n ? sent : h->n;
    memcpy(d, h->b + hsent, h->n - hsent);
    cur_t c = m->pay;
    cur_skip(&c, sent - hsent);
    cur_copy(&c, d + h->n - hsent, m->len - (sent - hsent), NULL, 0);
    mw__buf_commit(&w->tx, total - sent);
    return true;
}

/* Adds message m's header and payload pieces to v; false (v unchanged) if
 * they do not fit in the slots left. */
static bool gather_add(ghdr_t *h, const wmsg_t *m, struct iovec *v, int *nv) {
    int k = *nv;
    if (k >= GATHER_IOV) return false;
    h->n = (uint8_t)mw__ws_hdr_encode(h->b, true, (int)m->op, m->len, NULL);
    v[k++] = (struct iovec){h->b, h->n};
    cur_t c = m->pay;
    size_t left = m->len;
    while (left && k < GATHER_IOV) {
        const uint8_t *p;
        size_t piece = cur_next(&c, left, &p);
        v[k++] = (struct iovec){(void *)p, piece};
        left -= piece;
    }
    if (left) return false;
    *nv = k;
    return true;
}

/* Server with tx empty: headers and payloads of up to GATHER_MSGS messages go
 * out in one writev with no copy; what the socket does not take is copied to
 * tx. Returns the messages accepted (> 0) or an error. */
static int gather(ws_t *w, const wmsg_t *m, int n) {
    ghdr_t h[GATHER_MSGS];
    struct iovec v[GATHER_IOV];
    int nr = 0, nv = 0;
    size_t bytes = 0;
    while (nr < n && nr < GATHER_MSGS) {
        /* A batch never exceeds what tx can hold, so whatever the socket does
         * not take fits in tx whole: a retry then offers the inner stream at
         * least the bytes it was offered before (TLS requires that). */
        if (nr && bytes + MW__WS_HDR_MAX + m[nr].len > w->tx.cap) break;
        if (!gather_add(&h[nr], &m[nr], v, &nv)) break;
        bytes += MW__WS_HDR_MAX + m[nr].len;
        nr++;
    }
    if (!nr) { /* one message in more pieces than fit: copy it instead */
        int k = encode_one(w, m);
        int f = k == 1 ? mw__ws_flush_tx(w) : 0;
        return f < 0 && f != MW_EAGAIN ? f : k;
    }
    ssize_t r = mw__stream_writev(w->base.inner, v, nv);
    if (r < 0 && r != MW_EAGAIN) {
        mw__err_copy(&w->base.err, &w->base.inner->err);
        return tx_io_fail(w, (int)r);
    }
    size_t sent = r > 0 ? (size_t)r : 0;
    for (int i = 0; i < nr; i++) {
        size_t total = h[i].n + m[i].len, s = sent < total ? sent : total;
        sent -= s;
        if (s < total) {
            bool ok = hold_rest(w, &h[i], &m[i], s);
            assert(ok); /* the batch fits in tx, which was empty */
            (void)ok;
        }
    }
    mw__ws_upd_held(w);
    return nr;
}

/* Sends messages m[0..n): the count accepted (from the front, > 0), or
 * MW_EAGAIN / an error when none was. Accepted messages may wait in tx. */
static ssize_t send_msgs(ws_t *w, const wmsg_t *m, int n, bool more) {
    int ok = 0, done = 0, r = 0;
    while (ok < n && m[ok].len <= w->max_msg) ok++;
    if (!ok)
        return mw__err_set(&w->base.err, MW_ETOOBIG, "ws: message of %zu bytes is over max_msg %zu", m[0].len,
                          w->max_msg);
    /* A server pushes out what waits first, so that it may gather again; a
     * client appends behind it (and writes when tx is full or at the end). */
    if (w->server && held(w) && (r = mw__ws_flush_tx(w)) < 0 && r != MW_EAGAIN) return r;
    bool encoded = false;
    while (done < ok) {
        if (w->server && !held(w)) {
            r = gather(w, m + done, ok - done);
            if (r < 0) break;
            done += r;
            if (held(w)) break; /* the socket is full: the rest stays with the caller */
        } else {
            r = encode_one(w, m + done);
            if (r != 1) break;
            done++;
            encoded = true;
        }
    }
    /* More to come: what was copied waits for them (or for tx to fill). */
    if (encoded && !more) {
        int f = mw__ws_flush_tx(w);
        if (f < 0 && f != MW_EAGAIN && !done) return f;
    }
    mw__ws_upd_held(w);
    return done ? done : r < 0 ? r : MW_EAGAIN;
}

/* Whether a write may go on: 1, or the result to return. flush: a call with
 * nothing to send, which pushes out what tx holds. */
static ssize_t tx_gate(ws_t *w, bool flush) {
    if (w->tx_err) {
        /* A failure may have left our close frame to push out. */
        if (flush && !w->tx_io_err && mw__ws_flush_tx(w) == MW_EAGAIN) return MW_EAGAIN;
        return w->tx_err;
    }
    if (!mw__ws_ready(w)) {
        /* Messages stay with the caller; a flush still pushes the request. */
        if (flush && atomic_load_explicit(&w->inner_up, memory_order_acquire)) mw__ws_flush_tx(w);
        return w->tx_err ? w->tx_err : MW_EAGAIN;
    }
    if (flush) return mw__ws_flush_tx(w);
    if (w->close_queued) return mw__err_set(&w->base.err, MW_ECLOSED, "ws: write after the close handshake began");
    return 1;
}

ssize_t mw__ws_writemsgs(mw_stream_t *s, const struct iovec *msgs, int n, int flags) {
    ws_t *w = (ws_t *)s;
    wmsg_t m[GATHER_MSGS];
    if (n > GATHER_MSGS) n = GATHER_MSGS;
    unsigned op = (flags & MW_MSG_TEXT) ? MW_WS_TEXT : MW_WS_BINARY;
    for (int i = 0; i < n; i++) m[i] = (wmsg_t){{&msgs[i], 1, 0, 0}, msgs[i].iov_len, op};
    mw__ws_txop_lock(w);
    ssize_t r = tx_gate(w, n <= 0);
    if (r == 1) r = send_msgs(w, m, n, flags & MW_MSG_MORE);
    mw__ws_txop_unlock(w);
    return r;
}

/* ---- the record view: u32-prefixed records -> messages ---------------------------- */

/* Parses the record at c into m. 1: a whole record (c past it, *left reduced
 * by it); 0: no whole record; MW_EINVAL/MW_ETOOBIG: a bad one. */
static int rec_next(ws_t *w, cur_t *c, size_t *left, wmsg_t *m) {
    if (*left < w->rhs) return 0;
    uint8_t h[5];
    cur_t t = *c;
    cur_copy(&t, h, w->rhs, NULL, 0);
    const uint8_t *l = h;
    m->op = w->text ? MW_WS_TEXT : MW_WS_BINARY;
    if (w->flags & MW_WS_RECORD_OPCODE) m->op = *l++;
    m->len = (size_t)l[0] << 24 | (size_t)l[1] << 16 | (size_t)l[2] << 8 | l[3];
    if (m->op != MW_WS_TEXT && m->op != MW_WS_BINARY)
        return mw__err_set(&w->base.err, MW_EINVAL, "ws: record opcode %u is not 1 (text) or 2 (binary)", m->op);
    if (m->len > w->max_msg)
        return mw__err_set(&w->base.err, MW_ETOOBIG, "ws: record of %zu bytes is over max_msg %zu", m->len,
                          w->max_msg);
    if (*left - w->rhs < m->len) return 0;
    m->pay = t;
    cur_skip(&t, m->len);
    *c = t;
    *left -= w->rhs + m->len;
    return 1;
}

/* Whole records only; returns the bytes of records consumed. */
static ssize_t send_records(ws_t *w, const struct iovec *iov, int iovcnt) {
    cur_t c = {iov, iovcnt, 0, 0};
    size_t left = 0, done = 0;
    for (int i = 0; i < iovcnt; i++) left += iov[i].iov_len;
    for (;;) {
        wmsg_t m[GATHER_MSGS];
        int n = 0, k = 0;
        while (n < GATHER_MSGS && (k = rec_next(w, &c, &left, &m[n])) == 1) n++;
        if (!n) return done ? (ssize_t)done : k;
        ssize_t r = send_msgs(w, m, n, false);
        if (r < 0) return done ? (ssize_t)done : r;
        for (ssize_t i = 0; i < r; i++) done += w->rhs + m[i].len;
        if (r < n || k != 1) return (ssize_t)done;
    }
}

ssize_t mw__ws_writev(mw_stream_t *s, const struct iovec *iov, int iovcnt) {
    ws_t *w = (ws_t *)s;
    mw__ws_txop_lock(w);
    ssize_t r = tx_gate(w, iovcnt == 0);
    if (r == 1) r = send_records(w, iov, iovcnt);
    mw__ws_txop_unlock(w);
    return r;
}
