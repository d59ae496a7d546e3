/* ws.c - the WebSocket stream decorator (see mw_ws.h).
 *
 * Receive: raw bytes go into rx; frames are decoded from it straight into the
 * caller's buffer as records. A whole unfragmented frame costs one copy (the
 * unmask on a server, a memcpy on a client). Fragments, frames larger than rx
 * and text frames that are still arriving stream into the reassembly buffer
 * (so invalid UTF-8 fails on its first bad byte) and are copied out when the
 * message is complete.
 *
 * Send: a client encodes each record into tx (header + masked copy) and
 * flushes tx with one write. A server masks nothing, so with tx empty it
 * gathers headers and the caller's payloads into one writev and copies into
 * tx only what the socket did not take.
 *
 * Threads: the rx side (read, ctl HANDSHAKE) belongs to one thread and the tx
 * side (writev, ping, close) to one thread; they may differ. Everything in
 * the tx half (tx, pending control frames, close state) is under a spinlock,
 * because reads queue pongs and close replies there too.
 */
#include "mw_ws.h"

#include "mw_buf.h"
#include "mw_tcp.h"
#include "ws_impl.h"

#include <assert.h>
#include <openssl/rand.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RX_MIN (64u * 1024)
#define MASK_POOL 512
#define CTRL_MAX 125
#define FRAME_HDR_MAX 14
#define GATHER_RECS 32
#define GATHER_IOV 64
#define DEFAULT_MAX_MSG (16u * 1024 * 1024)
#define DEFAULT_MAX_HEADER 8192u

enum { HS_WAIT, HS_DONE, HS_FAILED };

typedef struct ws {
    mw_stream_t base;
    bool server;
    unsigned flags;
    size_t max_msg, max_header;
    uint64_t max_frame;
    size_t rhs; /* record header size: 4, or 5 with MW_WS_RECORD_OPCODE */

    /* handshake */
    atomic_bool ready;
    atomic_bool inner_up; /* the inner stream's own handshake (TCP connect, TLS) is done */
    int hs;
    size_t hs_scan;
    char accept[29];     /* client: the Sec-WebSocket-Accept we expect */
    char *offered;       /* client: subprotocols offered */
    char *expect_path;   /* server */
    char *accept_proto;  /* server */
    char proto[128];
    char path[1024];

    /* rx half: the reading thread only */
    mw_buf_t rx;
    size_t rx_need; /* bytes from rx.rd that must be present to go on */
    int rx_err;     /* sticky: every later read returns it */
    mw_ws_hdr_t fh; /* the frame being streamed into reasm */
    bool in_frame, in_msg, deliver;
    size_t frame_left, frame_off;
    uint8_t msg_op;
    uint8_t *reasm;
    size_t reasm_len, deliver_off;
    mw_utf8_state_t utf8;
    int peer_code;
    uint64_t pongs;

    /* tx half: under lock */
    atomic_flag lock;
    atomic_bool tx_held; /* tx bytes or a pending control frame: want() WRITE */
    mw_buf_t tx;
    int tx_err;    /* sticky result of writes (I/O or protocol failure) */
    int tx_io_err; /* the inner stream failed: nothing can be flushed */
    bool text, close_queued;
    int sent_code;
    bool pong_pending, close_pending; /* control frames waiting for room in tx */
    uint8_t pong[CTRL_MAX], closef[CTRL_MAX];
    size_t pong_len, close_len;
    size_t pool_pos;
    uint8_t pool[MASK_POOL];
} ws_t;

static const mw_stream_ops_t ws_ops;

static inline void tx_lock(ws_t *w) {
    while (atomic_flag_test_and_set_explicit(&w->lock, memory_order_acquire)) sched_yield();
}
static inline void tx_unlock(ws_t *w) { atomic_flag_clear_explicit(&w->lock, memory_order_release); }

static ws_t *find_ws(const mw_stream_t *s) {
    while (s && s->ops != &ws_ops) s = s->inner;
    return (ws_t *)s;
}

/* dst = src XOR mask (from mask offset off), or a plain copy without a mask. */
static inline void xor_copy(uint8_t *d, const uint8_t *s, size_t n, const uint8_t *mask, size_t off) {
    if (!mask) {
        memcpy(d, s, n);
        return;
    }
    uint8_t m8[8];
    for (int i = 0; i < 8; i++) m8[i] = mask[(off + (size_t)i) & 3];
    uint64_t m;
    memcpy(&m, m8, 8);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, s + i, 8);
        v ^= m;
        memcpy(d + i, &v, 8);
    }
    for (; i < n; i++) d[i] = s[i] ^ m8[i & 7];
}

static bool close_code_ok(unsigned c) {
    /* 1012-1014 (service restart, try again later, bad gateway) are registered
     * with IANA after RFC 6455; 1004-1006 and 1015 must never be sent. */
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

static size_t put_rec_hdr(const ws_t *w, uint8_t *p, unsigned op, size_t n) {
    size_t k = 0;
    if (w->flags & MW_WS_RECORD_OPCODE) p[k++] = (uint8_t)op;
    p[k] = (uint8_t)(n >> 24), p[k + 1] = (uint8_t)(n >> 16), p[k + 2] = (uint8_t)(n >> 8), p[k + 3] = (uint8_t)n;
    return k + 4;
}

/* ---- tx half (lock held) ------------------------------------------------------- */

static void upd_held(ws_t *w) {
    bool h = mw_buf_len(&w->tx) || w->pong_pending || w->close_pending;
    atomic_store_explicit(&w->tx_held, h, memory_order_release);
}

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

static int tx_fail(ws_t *w, int code) {
    if (!w->tx_err) w->tx_err = code;
    return code;
}

static int tx_io_fail(ws_t *w, int code) {
    if (!w->tx_io_err) w->tx_io_err = code;
    return tx_fail(w, code);
}

/* Appends one whole frame with a contiguous payload. 0 or MW_EAGAIN (no room). */
static int put_frame(ws_t *w, unsigned op, const uint8_t *p, size_t n) {
    uint8_t *d = mw_buf_reserve(&w->tx, FRAME_HDR_MAX + n);
    if (!d) return MW_EAGAIN;
    const uint8_t *m = NULL;
    if (!w->server && !(m = next_mask(w)))
        return tx_fail(w, mw_err_set(&w->base.err, MW_ESYS, "ws: RAND_bytes failed"));
    size_t hl = mw_ws_hdr_encode(d, true, (int)op, n, m);
    xor_copy(d + hl, p, n, m, 0);
    mw_buf_commit(&w->tx, hl + n);
    return 0;
}

/* Moves control frames that waited for room into tx: the pong first, since
 * nothing may follow the close. */
static void drain_pending(ws_t *w) {
    if (w->pong_pending && put_frame(w, MW_WS_PONG, w->pong, w->pong_len) == 0) w->pong_pending = false;
    if (!w->pong_pending && w->close_pending && put_frame(w, MW_WS_CLOSE, w->closef, w->close_len) == 0)
        w->close_pending = false;
}

/* Writes tx to the inner stream until it is empty (0) or full (MW_EAGAIN). */
static int flush_tx(ws_t *w) {
    int r = 0;
    if (w->tx_io_err) return w->tx_io_err;
    for (;;) {
        if (w->pong_pending || w->close_pending) drain_pending(w);
        size_t len = mw_buf_len(&w->tx);
        if (!len) break;
        ssize_t n = mw_stream_write(w->base.inner, mw_buf_data(&w->tx), len);
        if (n > 0) {
            mw_buf_consume(&w->tx, (size_t)n);
            continue;
        }
        if (n == 0 || n == MW_EAGAIN) {
            r = MW_EAGAIN;
            break;
        }
        mw_err_copy(&w->base.err, &w->base.inner->err);
        r = tx_io_fail(w, (int)n);
        break;
    }
    upd_held(w);
    return r;
}

/* Queues a control frame produced by the protocol (pong, close); it waits in
 * a slot if tx is full, so a full socket never loses it. */
static void queue_ctrl(ws_t *w, unsigned op, const uint8_t *p, size_t n) {
    if (op == MW_WS_PONG) {
        if (w->pong_pending || put_frame(w, op, p, n) != 0) {
            memcpy(w->pong, p, n); /* only the latest ping needs its pong (RFC 6455 5.5.3) */
            w->pong_len = n;
            w->pong_pending = true;
        }
    } else if (w->pong_pending || put_frame(w, op, p, n) != 0) {
        memcpy(w->closef, p, n);
        w->close_len = n;
        w->close_pending = true;
    }
    upd_held(w);
}

/* Queues our close frame (once) and tries to send it. Lock held. */
static void send_close(ws_t *w, unsigned code, const char *reason) {
    if (w->close_queued || w->tx_io_err) return;
    uint8_t p[CTRL_MAX];
    size_t rn = reason ? strlen(reason) : 0;
    if (rn > CTRL_MAX - 2) rn = CTRL_MAX - 2;
    p[0] = (uint8_t)(code >> 8), p[1] = (uint8_t)code;
    if (rn) memcpy(p + 2, reason, rn);
    w->close_queued = true;
    w->sent_code = (int)code;
    queue_ctrl(w, MW_WS_CLOSE, p, 2 + rn);
    flush_tx(w);
}

/* ---- writev: records -> frames ----------------------------------------------------- */

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
        xor_copy(d, p, k, mask, off);
        d += k, off += k, n -= k;
    }
}

static void cur_skip(cur_t *c, size_t n) {
    const uint8_t *p;
    while (n) n -= cur_next(c, n, &p);
}

typedef struct rec {
    unsigned op;
    size_t len;
} rec_t;

/* Parses the record at c. 1: a whole record (c now at its payload, *left
 * reduced by its header); 0: no whole record; MW_EINVAL/MW_ETOOBIG: a bad one. */
static int rec_next(ws_t *w, cur_t *c, size_t *left, rec_t *r) {
    if (*left < w->rhs) return 0;
    uint8_t h[5];
    cur_t t = *c;
    cur_copy(&t, h, w->rhs, NULL, 0);
    const uint8_t *l = h;
    r->op = w->text ? MW_WS_TEXT : MW_WS_BINARY;
    if (w->flags & MW_WS_RECORD_OPCODE) r->op = *l++;
    r->len = (size_t)l[0] << 24 | (size_t)l[1] << 16 | (size_t)l[2] << 8 | l[3];
    if (r->op != MW_WS_TEXT && r->op != MW_WS_BINARY)
        return mw_err_set(&w->base.err, MW_EINVAL, "ws: record opcode %u is not 1 (text) or 2 (binary)", r->op);
    if (r->len > w->max_msg)
        return mw_err_set(&w->base.err, MW_ETOOBIG, "ws: record of %zu bytes is over max_msg %zu", r->len,
                          w->max_msg);
    if (*left - w->rhs < r->len) return 0;
    *c = t;
    *left -= w->rhs;
    return 1;
}

/* Encodes one record into tx (masking on a client). 1 done, 0 none, MW_EAGAIN
 * tx full even after a flush, or an error. */
static int encode_one(ws_t *w, cur_t *c, size_t *left, size_t *done) {
    cur_t start = *c;
    size_t left0 = *left;
    rec_t r;
    int k = rec_next(w, c, left, &r);
    if (k <= 0) return k;
    uint8_t *d = mw_buf_reserve(&w->tx, FRAME_HDR_MAX + r.len);
    if (!d) {
        int f = flush_tx(w);
        if (f < 0 && f != MW_EAGAIN) return f;
        d = mw_buf_reserve(&w->tx, FRAME_HDR_MAX + r.len);
        if (!d) {
            *c = start, *left = left0;
            return MW_EAGAIN;
        }
    }
    const uint8_t *m = NULL;
    if (!w->server && !(m = next_mask(w)))
        return tx_fail(w, mw_err_set(&w->base.err, MW_ESYS, "ws: RAND_bytes failed"));
    size_t hl = mw_ws_hdr_encode(d, true, (int)r.op, r.len, m);
    cur_copy(c, d + hl, r.len, m, 0);
    mw_buf_commit(&w->tx, hl + r.len);
    *left -= r.len;
    *done += w->rhs + r.len;
    return 1;
}

typedef struct grec {
    cur_t start, pay; /* the record and its payload in the caller's iovecs */
    size_t left0, len;
    uint8_t hdr[10];
    uint8_t hl;
} grec_t;

/* Copies what the socket did not take of gathered record g (sent bytes of
 * it already out) into tx. False if tx has no room. */
static bool hold_rest(ws_t *w, const grec_t *g, size_t sent) {
    size_t total = g->hl + g->len;
    uint8_t *d = mw_buf_reserve(&w->tx, total - sent);
    if (!d) return false;
    size_t hsent = sent < g->hl ? sent : g->hl;
    memcpy(d, g->hdr + hsent, g->hl - hsent);
    cur_t c = g->pay;
    cur_skip(&c, sent - hsent);
    cur_copy(&c, d + g->hl - hsent, g->len - (sent - hsent), NULL, 0);
    mw_buf_commit(&w->tx, total - sent);
    return true;
}

/* Server with tx empty: headers and payloads go out in one writev with no
 * copy. 1 all sent, 0 no whole record, MW_EAGAIN socket full, or an error. */
static int gather(ws_t *w, cur_t *c, size_t *left, size_t *done) {
    grec_t g[GATHER_RECS];
    struct iovec v[GATHER_IOV];
    int nr = 0, nv = 0, k = 0;
    size_t bytes = 0;
    rec_t r;
    while (nr < GATHER_RECS) {
        grec_t *x = &g[nr];
        x->start = *c, x->left0 = *left;
        if ((k = rec_next(w, c, left, &r)) <= 0) break;
        /* A batch never exceeds what tx can hold, so whatever the socket does
         * not take fits in tx whole: a retry then offers the inner stream at
         * least the bytes it was offered before (TLS requires that). */
        if (nr && bytes + FRAME_HDR_MAX + r.len > w->tx.cap) {
            *c = x->start, *left = x->left0, k = 0;
            break;
        }
        bytes += FRAME_HDR_MAX + r.len;
        x->pay = *c, x->len = r.len;
        x->hl = (uint8_t)mw_ws_hdr_encode(x->hdr, true, (int)r.op, r.len, NULL);
        int nv0 = nv;
        v[nv++] = (struct iovec){x->hdr, x->hl};
        for (size_t n = r.len; n && nv < GATHER_IOV;) {
            const uint8_t *p;
            size_t piece = cur_next(c, n, &p);
            v[nv++] = (struct iovec){(void *)p, piece};
            n -= piece;
        }
        size_t got = 0;
        for (int i = nv0 + 1; i < nv; i++) got += v[i].iov_len;
        if (got < r.len) { /* ran out of iovec slots: this record waits */
            *c = x->start, *left = x->left0, nv = nv0, k = 1;
            break;
        }
        *left -= r.len;
        nr++;
    }
    if (!nr && k == 1) { /* one record in more pieces than fit: copy it instead */
        k = encode_one(w, c, left, done);
        int f = k == 1 ? flush_tx(w) : 0;
        return f < 0 && f != MW_EAGAIN ? f : k;
    }
    if (!nr) return k;
    ssize_t n = mw_stream_writev(w->base.inner, v, nv);
    if (n < 0 && n != MW_EAGAIN) {
        mw_err_copy(&w->base.err, &w->base.inner->err);
        return tx_io_fail(w, (int)n);
    }
    size_t sent = n > 0 ? (size_t)n : 0;
    bool all = true;
    for (int i = 0; i < nr; i++) {
        size_t total = g[i].hl + g[i].len, s = sent < total ? sent : total;
        sent -= s;
        if (s < total) {
            all = false;
            bool held = hold_rest(w, &g[i], s);
            assert(held); /* the batch fits in tx, which was empty */
            (void)held;
        }
        *done += w->rhs + g[i].len;
    }
    upd_held(w);
    return all ? 1 : MW_EAGAIN;
}

static ssize_t send_records(ws_t *w, const struct iovec *iov, int iovcnt) {
    cur_t c = {iov, iovcnt, 0, 0};
    size_t left = 0, done = 0;
    for (int i = 0; i < iovcnt; i++) left += iov[i].iov_len;
    int r = 0;
    if (atomic_load_explicit(&w->tx_held, memory_order_relaxed)) {
        r = flush_tx(w);
        if (r < 0 && r != MW_EAGAIN) return r;
    }
    bool encoded = false;
    do {
        if (w->server && !atomic_load_explicit(&w->tx_held, memory_order_relaxed)) {
            r = gather(w, &c, &left, &done);
        } else {
            r = encode_one(w, &c, &left, &done);
            encoded |= r == 1;
        }
    } while (r == 1);
    if (encoded) {
        int f = flush_tx(w);
        if (f < 0 && f != MW_EAGAIN && !done) return f;
    }
    upd_held(w);
    if (done) return (ssize_t)done;
    return r == 0 ? 0 : r;
}

/* ---- rx half --------------------------------------------------------------------- */

/* Fails the connection: our close frame with the RFC code, and err as the
 * sticky result of reads and writes. */
static int fail(ws_t *w, unsigned code, int err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(ws_t *w, unsigned code, int err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    w->rx_err = mw_err_vset(&w->base.err, err, fmt, ap);
    va_end(ap);
    const char *why = code == MW_WS_CLOSE_TOO_BIG ? "message too big"
                      : code == MW_WS_CLOSE_BAD_DATA ? "invalid UTF-8"
                                                     : "protocol error";
    tx_lock(w);
    send_close(w, code, why);
    tx_fail(w, err);
    tx_unlock(w);
    return err;
}

/* One read from the inner stream into rx. */
static ssize_t fill(ws_t *w) {
    mw_buf_t *b = &w->rx;
    if (b->rd && (mw_buf_tailroom(b) < 4096 || b->cap - b->rd < w->rx_need)) mw_buf_compact(b);
    size_t room = mw_buf_tailroom(b);
    assert(room > 0);
    ssize_t n = mw_stream_read(w->base.inner, mw_buf_tail(b), room);
    if (n > 0) {
        mw_buf_commit(b, (size_t)n);
        return n;
    }
    if (n == MW_EAGAIN) return n;
    if (n == MW_ECLOSED)
        w->rx_err = mw_err_set(&w->base.err, MW_ECLOSED, "ws: connection closed without a close frame (1006)%s%s",
                               w->base.inner->err.code ? ": " : "", mw_err_text(&w->base.inner->err));
    else
        w->rx_err = mw_err_set(&w->base.err, (int)n, "ws: %s", mw_err_text(&w->base.inner->err));
    return n;
}

static int on_close(ws_t *w, const uint8_t *p, size_t n) {
    if (n == 1) return fail(w, MW_WS_CLOSE_PROTOCOL, MW_EPROTO, "ws: close frame with a 1-byte payload");
    unsigned code = n >= 2 ? (unsigned)p[0] << 8 | p[1] : MW_WS_CLOSE_NO_STATUS;
    if (n >= 2 && !close_code_ok(code))
        return fail(w, MW_WS_CLOSE_PROTOCOL, MW_EPROTO, "ws: peer sent close code %u, which is not allowed", code);
    mw_utf8_state_t u;
    mw_utf8_init(&u);
    if (n > 2 && (!mw_utf8_feed(&u, p + 2, n - 2) || !mw_utf8_complete(&u)))
        return fail(w, MW_WS_CLOSE_BAD_DATA, MW_EUTF8, "ws: close reason is not valid UTF-8");
    w->peer_code = (int)code;
    tx_lock(w);
    send_close(w, code == MW_WS_CLOSE_NO_STATUS ? MW_WS_CLOSE_NORMAL : code, NULL);
    tx_unlock(w);
    int rn = n > 2 ? (int)(n - 2) : 0;
    return w->rx_err = mw_err_set(&w->base.err, MW_ECLOSED, "ws: peer closed the connection (%u%s%.*s)", code,
                                  rn ? " " : "", rn, (const char *)p + 2);
}

/* A whole control frame (hl header bytes, then payload) at the front of rx. */
static int control(ws_t *w, size_t hl) {
    mw_ws_hdr_t *h = &w->fh;
    size_t n = (size_t)h->len;
    if (mw_buf_len(&w->rx) < hl + n) {
        w->rx_need = hl + n;
        return 0;
    }
    uint8_t p[CTRL_MAX];
    xor_copy(p, mw_buf_data(&w->rx) + hl, n, h->masked ? h->mask : NULL, 0);
    mw_buf_consume(&w->rx, hl + n);
    if (h->opcode == MW_WS_PONG) {
        w->pongs++;
        return 1;
    }
    if (h->opcode == MW_WS_CLOSE) return on_close(w, p, n);
    if (!(w->flags & MW_WS_NO_AUTO_PONG)) {
        tx_lock(w);
        if (!w->close_queued && !w->tx_err) {
            queue_ctrl(w, MW_WS_PONG, p, n);
            flush_tx(w);
        }
        tx_unlock(w);
    }
    return 1;
}

/* Sequencing and size checks for a data frame, from its header alone. */
static int check_data(ws_t *w, const mw_ws_hdr_t *h) {
    if (h->opcode == MW_WS_CONT && !w->in_msg)
        return fail(w, MW_WS_CLOSE_PROTOCOL, MW_EPROTO, "ws: continuation frame with no message started");
    if (h->opcode != MW_WS_CONT && w->in_msg)
        return fail(w, MW_WS_CLOSE_PROTOCOL, MW_EPROTO, "ws: new message inside a fragmented one");
    uint64_t total = (w->in_msg ? w->reasm_len : 0) + h->len;
    if (total > w->max_msg)
        return fail(w, MW_WS_CLOSE_TOO_BIG, MW_ETOOBIG, "ws: message of %llu+ bytes is over max_msg %zu",
                    (unsigned long long)total, w->max_msg);
    return 0;
}

/* Decodes the frame header at the front of rx. A whole unfragmented data
 * frame goes straight into dst; anything else starts streaming. 1 progress,
 * 0 stop (more bytes needed, or dst full), or an error.
 * Once this read has records for the caller (*out), only more such whole
 * messages join them: a control frame, a fragment or a violation waits for
 * the next read, so the application answers the messages before our pong,
 * close reply or failure goes out (an echo echoes, then closes). */
static int frame_step(ws_t *w, uint8_t *dst, size_t room, size_t *out) {
    const uint8_t *p = mw_buf_data(&w->rx);
    size_t have = mw_buf_len(&w->rx);
    mw_ws_hdr_t *h = &w->fh;
    bool later = *out != 0;
    ssize_t hl = mw_ws_hdr_decode(p, have, w->server, w->max_frame, h);
    if (hl == MW_EAGAIN) {
        w->rx_need = FRAME_HDR_MAX;
        return 0;
    }
    if (hl < 0 && later) return 0;
    if (hl == MW_ETOOBIG)
        return fail(w, MW_WS_CLOSE_TOO_BIG, MW_ETOOBIG, "ws: frame over max_frame %llu bytes",
                    (unsigned long long)w->max_frame);
    if (hl < 0) return fail(w, MW_WS_CLOSE_PROTOCOL, MW_EPROTO, "ws: malformed frame header");
    size_t len = (size_t)h->len, total = (size_t)hl + len, rec = w->rhs + len;
    bool single = h->fin && h->opcode != MW_WS_CONT && !(h->opcode & 0x8);
    if (later && (!single || total > have || rec > room || len > w->max_msg)) return 0;
    if (h->opcode & 0x8) return control(w, (size_t)hl);
    if (check_data(w, h) < 0) return w->rx_err;
    if (single && total <= have && rec <= room) {
        uint8_t *d = dst + put_rec_hdr(w, dst, h->opcode, len);
        xor_copy(d, p + hl, len, h->masked ? h->mask : NULL, 0);
        if (h->opcode == MW_WS_TEXT) {
            mw_utf8_state_t u;
            mw_utf8_init(&u);
            if (!mw_utf8_feed(&u, d, len) || !mw_utf8_complete(&u))
                return later ? 0 : fail(w, MW_WS_CLOSE_BAD_DATA, MW_EUTF8, "ws: text message is not valid UTF-8");
        }
        mw_buf_consume(&w->rx, total);
        *out += rec;
        return 1;
    }
    if (single && total > have && h->opcode == MW_WS_BINARY && total <= w->rx.cap) {
        w->rx_need = total; /* wait for all of it: one copy instead of two */
        return 0;
    }
    mw_buf_consume(&w->rx, (size_t)hl);
    w->in_frame = true;
    w->frame_left = len;
    w->frame_off = 0;
    if (!w->in_msg) {
        w->in_msg = true;
        w->msg_op = h->opcode;
        w->reasm_len = 0;
        mw_utf8_init(&w->utf8);
    }
    return 1;
}

/* Streams the current frame's payload from rx into reasm. */
static int payload_step(ws_t *w) {
    size_t k = mw_buf_len(&w->rx);
    if (k > w->frame_left) k = w->frame_left;
    if (!k && w->frame_left) {
        w->rx_need = 1;
        return 0;
    }
    uint8_t *d = w->reasm + w->reasm_len;
    xor_copy(d, mw_buf_data(&w->rx), k, w->fh.masked ? w->fh.mask : NULL, w->frame_off);
    if (w->msg_op == MW_WS_TEXT && !mw_utf8_feed(&w->utf8, d, k))
        return fail(w, MW_WS_CLOSE_BAD_DATA, MW_EUTF8, "ws: text message is not valid UTF-8");
    mw_buf_consume(&w->rx, k);
    w->reasm_len += k, w->frame_off += k, w->frame_left -= k;
    if (w->frame_left) {
        w->rx_need = 1;
        return 0;
    }
    w->in_frame = false;
    if (w->fh.fin) {
        if (w->msg_op == MW_WS_TEXT && !mw_utf8_complete(&w->utf8))
            return fail(w, MW_WS_CLOSE_BAD_DATA, MW_EUTF8, "ws: text message ends inside a UTF-8 character");
        w->in_msg = false;
        w->deliver = true;
        w->deliver_off = 0;
    }
    return 1;
}

/* Copies the reassembled message out as a record; in pieces only when the
 * caller's buffer cannot hold it whole. True when it is all out. */
static bool deliver(ws_t *w, uint8_t *dst, size_t cap, size_t *out) {
    uint8_t rh[5];
    size_t rhl = put_rec_hdr(w, rh, w->msg_op, w->reasm_len);
    size_t total = rhl + w->reasm_len, room = cap - *out, off = w->deliver_off;
    if (!room || (off == 0 && total > room && *out)) return false;
    uint8_t *d = dst + *out;
    size_t n = total - off < room ? total - off : room, k = 0;
    if (off < rhl) {
        k = rhl - off < n ? rhl - off : n;
        memcpy(d, rh + off, k);
    }
    if (n > k) memcpy(d + k, w->reasm + (off + k - rhl), n - k); /* n == k: no index into reasm */
    *out += n;
    w->deliver_off += n;
    if (w->deliver_off < total) return false;
    w->deliver = false;
    w->reasm_len = 0;
    return true;
}

/* Decodes everything rx holds into dst. Bytes produced (records), 0 if more
 * input is needed, or the error (once nothing is left to hand over). */
static ssize_t decode(ws_t *w, uint8_t *dst, size_t cap) {
    size_t out = 0;
    for (;;) {
        if (w->deliver && !deliver(w, dst, cap, &out)) break;
        if (w->rx_err) return out ? (ssize_t)out : w->rx_err;
        int r = w->in_frame ? payload_step(w) : frame_step(w, dst + out, cap - out, &out);
        if (r < 0) return out ? (ssize_t)out : r;
        if (r == 0) break;
    }
    return (ssize_t)out;
}

/* ---- handshake --------------------------------------------------------------------- */

static int hs_fail(ws_t *w, int code) {
    w->hs = HS_FAILED;
    w->rx_err = code;
    tx_lock(w);
    tx_fail(w, code);
    tx_unlock(w);
    return code;
}

/* Server: answer an error status (best effort) and fail with MW_EPROTO. */
static int hs_reject(ws_t *w, int status, const char *why) {
    mw_err_set(&w->base.err, MW_EPROTO, "ws handshake: answered %d %s: %s", status, mw__ws_status_text(status), why);
    tx_lock(w);
    ssize_t n = mw__ws_response_build((char *)mw_buf_reserve(&w->tx, 512), 512, status, (mw__ws_str_t){0},
                                      (mw__ws_str_t){0});
    if (n > 0) mw_buf_commit(&w->tx, (size_t)n);
    flush_tx(w);
    tx_unlock(w);
    return hs_fail(w, MW_EPROTO);
}

static void copy_str(char *dst, size_t cap, mw__ws_str_t s) {
    size_t n = s.n < cap - 1 ? s.n : cap - 1;
    if (n) memcpy(dst, s.p, n);
    dst[n] = '\0';
}

static int hs_server(ws_t *w, size_t len) {
    mw__ws_req_t q;
    int st = mw__ws_request_parse((const char *)mw_buf_data(&w->rx), len, w->expect_path, w->accept_proto, &q);
    if (st != 101) return hs_reject(w, st, q.why);
    if (q.target.n >= sizeof w->path) return hs_reject(w, 414, "request target too long");
    copy_str(w->path, sizeof w->path, q.target);
    copy_str(w->proto, sizeof w->proto, q.protocol);
    tx_lock(w);
    /* 101 head: fixed headers plus a subprotocol of < 128 bytes (checked at wrap) */
    ssize_t n = mw__ws_response_build((char *)mw_buf_reserve(&w->tx, 1024), 1024, 101, q.key, q.protocol);
    if (n <= 0) {
        tx_unlock(w);
        return hs_reject(w, 500, "response does not fit");
    }
    mw_buf_commit(&w->tx, (size_t)n);
    int r = flush_tx(w);
    tx_unlock(w);
    mw_buf_consume(&w->rx, len);
    if (r < 0 && r != MW_EAGAIN) return hs_fail(w, r);
    return 1;
}

static int hs_client(ws_t *w, size_t len) {
    mw__ws_resp_t a;
    const char *accept = (w->flags & MW_WS_REPLAY) ? NULL : w->accept;
    if (mw__ws_response_parse((const char *)mw_buf_data(&w->rx), len, accept, w->offered, &a) < 0) {
        if (a.status && a.status != 101)
            mw_err_set(&w->base.err, MW_EPROTO, "ws handshake: server answered %d %.*s", a.status,
                       (int)a.reason.n, a.reason.p);
        else
            mw_err_set(&w->base.err, MW_EPROTO, "ws handshake: %s", a.why);
        return hs_fail(w, MW_EPROTO);
    }
    copy_str(w->proto, sizeof w->proto, a.protocol);
    mw_buf_consume(&w->rx, len);
    return 1;
}

/* Drives the handshake: 1 done, MW_EAGAIN, or the error. Reader side. */
static int hs_drive(ws_t *w) {
    if (atomic_load_explicit(&w->ready, memory_order_acquire)) return 1;
    if (w->hs == HS_FAILED) return w->rx_err;
    if (!atomic_load_explicit(&w->inner_up, memory_order_relaxed)) {
        int r = mw_stream_ctl(w->base.inner, MW_STREAM_CTL_HANDSHAKE, 0);
        if (r != 1 && r != MW_ENOTSUP) {
            if (r == MW_EAGAIN) return r;
            mw_err_copy(&w->base.err, &w->base.inner->err);
            return hs_fail(w, r);
        }
        atomic_store_explicit(&w->inner_up, true, memory_order_release);
    }
    int r;
    tx_lock(w);
    r = flush_tx(w);
    tx_unlock(w);
    if (r < 0 && r != MW_EAGAIN) return hs_fail(w, r);
    for (;;) {
        ssize_t e = mw__ws_head_end(mw_buf_data(&w->rx), mw_buf_len(&w->rx), w->max_header, &w->hs_scan);
        if (e > 0) {
            r = w->server ? hs_server(w, (size_t)e) : hs_client(w, (size_t)e);
            if (r != 1) return r;
            w->hs = HS_DONE;
            atomic_store_explicit(&w->ready, true, memory_order_release);
            return 1;
        }
        if (e == MW_ETOOBIG) {
            if (w->server) return hs_reject(w, 431, "request head too large");
            mw_err_set(&w->base.err, MW_EPROTO, "ws handshake: response head over %zu bytes", w->max_header);
            return hs_fail(w, MW_EPROTO);
        }
        const char *bad = w->server ? mw__ws_request_start_bad(mw_buf_data(&w->rx), mw_buf_len(&w->rx)) : NULL;
        if (bad) return hs_reject(w, 400, bad); /* never a request: answer now, not at the timeout */
        w->rx_need = 0;
        ssize_t n = fill(w);
        if (n == MW_EAGAIN) return MW_EAGAIN;
        if (n < 0) {
            mw_err_set(&w->base.err, (int)n, "ws handshake: %s", mw_err_text(&w->base.inner->err));
            return hs_fail(w, (int)n);
        }
    }
}

/* ---- stream ops -------------------------------------------------------------------- */

static ssize_t ws_read(mw_stream_t *s, void *dst, size_t cap) {
    ws_t *w = (ws_t *)s;
    assert(cap > 0);
    if (w->rx_err) return w->rx_err;
    if (!atomic_load_explicit(&w->ready, memory_order_acquire)) {
        int r = hs_drive(w);
        if (r != 1) return r;
    }
    for (;;) {
        ssize_t n = decode(w, dst, cap);
        if (n != 0) return n;
        n = fill(w);
        if (n < 0) return n;
    }
}

static ssize_t ws_writev(mw_stream_t *s, const struct iovec *iov, int iovcnt) {
    ws_t *w = (ws_t *)s;
    ssize_t r;
    tx_lock(w);
    if (w->tx_err) {
        /* A failure may have left our close frame to push out. */
        r = w->tx_err;
        if (iovcnt == 0 && !w->tx_io_err && flush_tx(w) == MW_EAGAIN) r = MW_EAGAIN;
    } else if (!atomic_load_explicit(&w->ready, memory_order_acquire)) {
        /* Records stay with the caller; a flush still pushes the request. */
        if (iovcnt == 0 && atomic_load_explicit(&w->inner_up, memory_order_acquire)) flush_tx(w);
        r = w->tx_err ? w->tx_err : MW_EAGAIN;
    } else if (iovcnt == 0) r = flush_tx(w);
    else if (w->close_queued) r = mw_err_set(&w->base.err, MW_ECLOSED, "ws: write after the close handshake began");
    else r = send_records(w, iov, iovcnt);
    tx_unlock(w);
    return r;
}

static int ws_want(const mw_stream_t *s) {
    const ws_t *w = (const ws_t *)s;
    int want = mw_stream_want(w->base.inner);
    bool ready = atomic_load_explicit(&w->ready, memory_order_acquire);
    /* Until TCP/TLS is up, their wants alone say when to drive the handshake
     * (the upgrade request waiting in tx cannot go yet). */
    if (!ready && !atomic_load_explicit(&w->inner_up, memory_order_acquire)) return want;
    if (atomic_load_explicit(&w->tx_held, memory_order_acquire)) want |= MW_WANT_WRITE;
    if (!ready && w->hs != HS_FAILED && !(want & MW_WANT_WRITE)) want |= MW_WANT_READ;
    return want;
}

static int ws_fd(const mw_stream_t *s) { return mw_stream_fd(s->inner); }

/* Says goodbye properly if nobody has yet (best effort, no waiting). */
static void ws_close(mw_stream_t *s) {
    ws_t *w = (ws_t *)s;
    tx_lock(w);
    if (atomic_load_explicit(&w->ready, memory_order_acquire) && !w->close_queued && !w->tx_err)
        send_close(w, MW_WS_CLOSE_NORMAL, NULL);
    else if (!w->tx_io_err && atomic_load_explicit(&w->tx_held, memory_order_relaxed))
        flush_tx(w);
    w->tx_err = w->tx_err ? w->tx_err : MW_ECLOSED;
    tx_unlock(w);
    if (!w->rx_err) w->rx_err = MW_ECLOSED;
    mw_stream_close(s->inner);
}

static void ws_free(mw_stream_t *s) {
    if (!s) return;
    ws_t *w = (ws_t *)s;
    ws_close(s);
    mw_stream_free(s->inner);
    mw_buf_fini(&w->rx);
    mw_buf_fini(&w->tx);
    free(w->reasm);
    free(w->offered);
    free(w->expect_path);
    free(w->accept_proto);
    free(w);
}

static int ws_ctl(mw_stream_t *s, int op, intptr_t arg) {
    ws_t *w = (ws_t *)s;
    switch (op) {
    case MW_STREAM_CTL_MSG_RECORDS: return 1;
    case MW_STREAM_CTL_MSG_TEXT:
        tx_lock(w);
        w->text = arg != 0;
        tx_unlock(w);
        return 0;
    case MW_STREAM_CTL_READY: return atomic_load_explicit(&w->ready, memory_order_acquire) ? 1 : 0;
    case MW_STREAM_CTL_HANDSHAKE: return hs_drive(w);
    default: return mw_stream_ctl(s->inner, op, arg);
    }
}

static const mw_stream_ops_t ws_ops = {
    .name = "ws",
    .read = ws_read,
    .writev = ws_writev,
    .want = ws_want,
    .fd = ws_fd,
    .close = ws_close,
    .free = ws_free,
    .ctl = ws_ctl,
};

/* ---- construction ------------------------------------------------------------------ */

void mw_ws_opts_init(mw_ws_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->max_msg = DEFAULT_MAX_MSG;
    o->max_frame = DEFAULT_MAX_MSG;
    o->max_header = DEFAULT_MAX_HEADER;
}

static char *dup_or_null(const char *s, bool *oom) {
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) *oom = true;
    return d;
}

static int ws_new(ws_t **out, mw_stream_t *inner, const mw_ws_opts_t *o, bool server, mw_err_t *err) {
    mw_ws_opts_t def;
    if (!o) {
        mw_ws_opts_init(&def);
        o = &def;
    }
    if (!inner) return mw_err_set(err, MW_EINVAL, "ws: no inner stream");
    if (o->max_msg > 0x7FFFFFF0u) {
        mw_stream_free(inner);
        return mw_err_set(err, MW_EINVAL, "ws: max_msg %u is over 2 GiB", o->max_msg);
    }
    ws_t *w = calloc(1, sizeof *w);
    if (!w) {
        mw_stream_free(inner);
        return mw_err_set(err, MW_ENOMEM, "ws: out of memory");
    }
    w->base.ops = &ws_ops;
    w->base.inner = inner;
    w->server = server;
    w->flags = o->flags;
    w->text = o->text;
    w->max_msg = o->max_msg ? o->max_msg : DEFAULT_MAX_MSG;
    w->max_frame = o->max_frame ? o->max_frame : w->max_msg;
    w->max_header = o->max_header ? o->max_header : DEFAULT_MAX_HEADER;
    w->rhs = (o->flags & MW_WS_RECORD_OPCODE) ? 5 : 4;
    w->pool_pos = sizeof w->pool; /* refilled at the first mask */
    atomic_flag_clear(&w->lock);
    atomic_init(&w->ready, false);
    atomic_init(&w->inner_up, false);
    atomic_init(&w->tx_held, false);
    if (o->subprotocol && strlen(o->subprotocol) >= sizeof w->proto) {
        ws_free(&w->base);
        return mw_err_set(err, MW_EINVAL, "ws: subprotocol longer than %zu bytes", sizeof w->proto - 1);
    }
    bool oom = false;
    size_t rx_cap = w->max_header + 1024 > RX_MIN ? w->max_header + 1024 : RX_MIN;
    size_t tx_cap = (w->max_msg > 8192 ? w->max_msg : 8192) + 1024;
    if (server) {
        w->expect_path = dup_or_null(o->expect_path, &oom);
        w->accept_proto = dup_or_null(o->subprotocol, &oom);
    } else {
        w->offered = dup_or_null(o->subprotocol, &oom);
    }
    w->reasm = malloc(w->max_msg ? w->max_msg : 1);
    if (oom || !w->reasm || mw_buf_init(&w->rx, rx_cap) < 0 || mw_buf_init(&w->tx, tx_cap) < 0) {
        ws_free(&w->base);
        return mw_err_set(err, MW_ENOMEM, "ws: out of memory for %zu-byte buffers", w->max_msg);
    }
    *out = w;
    return 0;
}

int mw_ws_client_wrap(mw_stream_t **out, mw_stream_t *inner, const mw_ws_opts_t *o, mw_err_t *err) {
    ws_t *w;
    int r = ws_new(&w, inner, o, false, err);
    if (r < 0) return r;
    mw_ws_opts_t def;
    if (!o) {
        mw_ws_opts_init(&def);
        o = &def;
    }
    char key[25], host[300];
    if (o->host && o->host[0]) snprintf(host, sizeof host, "%s", o->host);
    else if (mw_tcp_peer_name(inner, host, sizeof host) != 0) snprintf(host, sizeof host, "localhost");
    if ((r = mw__ws_key_new(key)) < 0) {
        ws_free(&w->base);
        return mw_err_set(err, r, "ws: RAND_bytes failed for the handshake key");
    }
    mw_ws_accept_key(key, 24, w->accept);
    if (w->flags & MW_WS_REPLAY) { /* the recording holds the response to a request long gone */
        *out = &w->base;
        return 0;
    }
    ssize_t n = mw__ws_request_build((char *)mw_buf_tail(&w->tx), mw_buf_tailroom(&w->tx), o, host, key);
    if (n < 0) {
        ws_free(&w->base);
        return mw_err_set(err, MW_EINVAL, "ws: cannot build the upgrade request: %s",
                          n == MW_ETOOBIG ? "over 8 KiB" : "path, host or header value malformed");
    }
    mw_buf_commit(&w->tx, (size_t)n);
    upd_held(w);
    *out = &w->base;
    return 0;
}

int mw_ws_server_wrap(mw_stream_t **out, mw_stream_t *inner, const mw_ws_opts_t *o, mw_err_t *err) {
    ws_t *w;
    int r = ws_new(&w, inner, o, true, err);
    if (r < 0) return r;
    *out = &w->base;
    return 0;
}

/* ---- public helpers ----------------------------------------------------------------- */

int mw_ws_ping(mw_stream_t *s, const void *data, size_t n) {
    ws_t *w = find_ws(s);
    if (!w || n > CTRL_MAX || (n && !data)) return MW_EINVAL;
    if (!atomic_load_explicit(&w->ready, memory_order_acquire)) return MW_EAGAIN;
    tx_lock(w);
    int r = w->tx_err ? w->tx_err : w->close_queued ? MW_ECLOSED : put_frame(w, MW_WS_PING, data, n);
    if (r == MW_EAGAIN) {
        int f = flush_tx(w);
        r = f == 0 || f == MW_EAGAIN ? put_frame(w, MW_WS_PING, data, n) : f;
    }
    if (r == 0) {
        int f = flush_tx(w);
        if (f < 0 && f != MW_EAGAIN) r = f;
    }
    upd_held(w);
    tx_unlock(w);
    return r;
}

int mw_ws_close(mw_stream_t *s, uint16_t code, const char *reason) {
    ws_t *w = find_ws(s);
    size_t rn = reason ? strlen(reason) : 0;
    if (!w || !close_code_ok(code) || rn > CTRL_MAX - 2) return MW_EINVAL;
    mw_utf8_state_t u;
    mw_utf8_init(&u);
    if (rn && (!mw_utf8_feed(&u, (const uint8_t *)reason, rn) || !mw_utf8_complete(&u))) return MW_EINVAL;
    if (!atomic_load_explicit(&w->ready, memory_order_acquire)) return MW_ESTATE;
    tx_lock(w);
    int r = w->tx_err;
    if (!r) {
        send_close(w, code, reason);
        r = w->tx_io_err;
    }
    tx_unlock(w);
    return r;
}

int mw_ws_peer_close_code(const mw_stream_t *s) {
    const ws_t *w = find_ws(s);
    return w ? w->peer_code : 0;
}

int mw_ws_sent_close_code(const mw_stream_t *s) {
    ws_t *w = find_ws(s);
    if (!w) return 0;
    tx_lock(w);
    int c = w->sent_code;
    tx_unlock(w);
    return c;
}

uint64_t mw_ws_pongs(const mw_stream_t *s) {
    const ws_t *w = find_ws(s);
    return w ? w->pongs : 0;
}

const char *mw_ws_subprotocol(const mw_stream_t *s) {
    const ws_t *w = find_ws(s);
    return w ? w->proto : "";
}

const char *mw_ws_path(const mw_stream_t *s) {
    const ws_t *w = find_ws(s);
    return w ? w->path : "";
}

bool mw_is_ws(const mw_stream_t *s) { return s && s->ops == &ws_ops; }
