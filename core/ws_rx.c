/* ws_rx.c - the WebSocket stream's reading half: frames -> messages.
 *
 * Raw bytes go into rx; frames are decoded from it one message at a time. A
 * whole unfragmented frame goes straight into the caller's buffer (one copy:
 * the unmask on a server, a memcpy on a client). Fragments, frames larger
 * than the caller's buffer and text frames that are still arriving stream
 * into the reassembly buffer (so invalid UTF-8 fails on its first bad byte)
 * and are copied out when the message is complete.
 *
 * readmsg returns one message per call and its length; the record view's
 * read (for tools) puts as many messages as fit behind u32 record headers.
 * Both run on the reading thread; pongs and close replies go through the tx
 * half under its lock. The handshake driver is here too: a read before the
 * upgrade completes drives it, and it reads the peer's head.
 */
#include "ws_impl.h"
#include "buf_impl.h"
#include "err_impl.h"
#include "stream_impl.h"

#include <assert.h>
#include <stdarg.h>

typedef mw__ws_t ws_t;

/* next_msg: the whole message waits in reasm and does not fit dst. */
#define BIG (-1000000)

/* Fails the connection: our close frame with the RFC code, and err as the
 * sticky result of reads and writes. */
static int fail(ws_t *w, unsigned code, int err, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(ws_t *w, unsigned code, int err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    w->rx_err = mw__err_vset(&w->base.err, err, fmt, ap);
    va_end(ap);
    const char *why = code == MW_WS_CLOSE_TOO_BIG ? "message too big"
                      : code == MW_WS_CLOSE_BAD_DATA ? "invalid UTF-8"
                                                     : "protocol error";
    mw__ws_tx_lock(w);
    mw__ws_send_close(w, code, why);
    mw__ws_tx_fail(w, err);
    mw__ws_tx_unlock(w);
    return err;
}

/* One read from the inner stream into rx. */
ssize_t mw__ws_fill(ws_t *w) {
    mw__buf_t *b = &w->rx;
    if (b->rd && (mw__buf_tailroom(b) < 4096 || b->cap - b->rd < w->rx_need)) mw__buf_compact(b);
    size_t room = mw__buf_tailroom(b);
    assert(room > 0);
    ssize_t n = mw__stream_read(w->base.inner, mw__buf_tail(b), room);
    if (n > 0) {
        mw__buf_commit(b, (size_t)n);
        return n;
    }
    if (n == MW_EAGAIN) return n;
    if (n == MW_ECLOSED)
        w->rx_err = mw__err_set(&w->base.err, MW_ECLOSED, "ws: connection closed without a close frame (1006)%s%s",
                               w->base.inner->err.code ? ": " : "", mw_err_text(&w->base.inner->err));
    else
        w->rx_err = mw__err_set(&w->base.err, (int)n, "ws: %s", mw_err_text(&w->base.inner->err));
    return n;
}

static int on_close(ws_t *w, const uint8_t *p, size_t n) {
    if (n == 1) return fail(w, MW_WS_CLOSE_PROTOCOL, MW_EPROTO, "ws: close frame with a 1-byte payload");
    unsigned code = n >= 2 ? (unsigned)p[0] << 8 | p[1] : MW_WS_CLOSE_NO_STATUS;
    if (n >= 2 && !mw__ws_close_code_ok(code))
        return fail(w, MW_WS_CLOSE_PROTOCOL, MW_EPROTO, "ws: peer sent close code %u, which is not allowed", code);
    mw__utf8_state_t u;
    mw__utf8_init(&u);
    if (n > 2 && (!mw__utf8_feed(&u, p + 2, n - 2) || !mw__utf8_complete(&u)))
        return fail(w, MW_WS_CLOSE_BAD_DATA, MW_EUTF8, "ws: close reason is not valid UTF-8");
    w->peer_code = (int)code;
    mw__ws_tx_lock(w);
    mw__ws_send_close(w, code == MW_WS_CLOSE_NO_STATUS ? MW_WS_CLOSE_NORMAL : code, NULL);
    mw__ws_tx_unlock(w);
    int rn = n > 2 ? (int)(n - 2) : 0;
    return w->rx_err = mw__err_set(&w->base.err, MW_ECLOSED, "ws: peer closed the connection (%u%s%.*s)", code,
                                  rn ? " " : "", rn, (const char *)p + 2);
}

/* A whole control frame (hl header bytes, then payload) at the front of rx. */
static int control(ws_t *w, size_t hl) {
    mw__ws_hdr_t *h = &w->fh;
    size_t n = (size_t)h->len;
    if (mw__buf_len(&w->rx) < hl + n) {
        w->rx_need = hl + n;
        return 0;
    }
    uint8_t p[MW__WS_CTRL_MAX];
    mw__ws_xor_copy(p, mw__buf_data(&w->rx) + hl, n, h->masked ? h->mask : NULL, 0);
    mw__buf_consume(&w->rx, hl + n);
    if (h->opcode == MW_WS_PONG) {
        w->pongs++;
        return 1;
    }
    if (h->opcode == MW_WS_CLOSE) return on_close(w, p, n);
    if (!(w->flags & MW_WS_NO_AUTO_PONG)) {
        mw__ws_tx_lock(w);
        if (!w->close_queued && !w->tx_err) {
            mw__ws_queue_ctrl(w, MW_WS_PONG, p, n);
            mw__ws_flush_tx(w);
        }
        mw__ws_tx_unlock(w);
    }
    return 1;
}

/* Sequencing and size checks for a data frame, from its header alone. */
static int check_data(ws_t *w, const mw__ws_hdr_t *h) {
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

static bool utf8_ok(const uint8_t *p, size_t n) {
    mw__utf8_state_t u;
    mw__utf8_init(&u);
    return mw__utf8_feed(&u, p, n) && mw__utf8_complete(&u);
}

/* Decodes the frame header at the front of rx. A whole unfragmented data
 * frame that fits goes straight into dst (2, its length in *len); anything
 * else starts streaming (1). 0: stop (more bytes needed, or refused under
 * `buffered`); or an error.
 * buffered (MW_MSG_BUFFERED): only such a whole message is taken; a control
 * frame, a fragment or a violation waits for a call without it, so the
 * application answers the messages it already has before our pong, close
 * reply or failure goes out (an echo echoes, then closes). */
static int frame_step(ws_t *w, uint8_t *dst, size_t cap, bool buffered, size_t *len) {
    const uint8_t *p = mw__buf_data(&w->rx);
    size_t have = mw__buf_len(&w->rx);
    mw__ws_hdr_t *h = &w->fh;
    ssize_t hl = mw__ws_hdr_decode(p, have, w->server, w->max_frame, h);
    if (hl == MW_EAGAIN) {
        w->rx_need = MW__WS_HDR_MAX;
        return 0;
    }
    if (hl < 0 && buffered) return 0;
    if (hl == MW_ETOOBIG && w->max_frame == w->max_msg) /* the limit that applies is the message's */
        return fail(w, MW_WS_CLOSE_TOO_BIG, MW_ETOOBIG, "ws: a frame of over %llu bytes is over max_msg %llu bytes",
                    (unsigned long long)w->max_frame, (unsigned long long)w->max_msg);
    if (hl == MW_ETOOBIG)
        return fail(w, MW_WS_CLOSE_TOO_BIG, MW_ETOOBIG, "ws: frame over max_frame %llu bytes",
                    (unsigned long long)w->max_frame);
    if (hl < 0) return fail(w, MW_WS_CLOSE_PROTOCOL, MW_EPROTO, "ws: malformed frame header");
    size_t n = (size_t)h->len, total = (size_t)hl + n;
    bool single = h->fin && h->opcode != MW_WS_CONT && !(h->opcode & 0x8);
    bool fits = dst && n <= cap;
    if (buffered && (!single || total > have || !fits || n > w->max_msg)) return 0;
    if (h->opcode & 0x8) return control(w, (size_t)hl);
    if (check_data(w, h) < 0) return w->rx_err;
    if (single && total <= have && fits) {
        mw__ws_xor_copy(dst, p + hl, n, h->masked ? h->mask : NULL, 0);
        if (h->opcode == MW_WS_TEXT && !utf8_ok(dst, n))
            return buffered ? 0 : fail(w, MW_WS_CLOSE_BAD_DATA, MW_EUTF8, "ws: text message is not valid UTF-8");
        mw__buf_consume(&w->rx, total);
        w->msg_op = h->opcode;
        *len = n;
        return 2;
    }
    if (single && total > have && h->opcode == MW_WS_BINARY && total <= w->rx.cap) {
        w->rx_need = total; /* wait for all of it: one copy instead of two */
        return 0;
    }
    mw__buf_consume(&w->rx, (size_t)hl);
    w->in_frame = true;
    w->frame_left = n;
    w->frame_off = 0;
    if (!w->in_msg) {
        w->in_msg = true;
        w->msg_op = h->opcode;
        w->reasm_len = 0;
        mw__utf8_init(&w->utf8);
    }
    return 1;
}

/* Streams the current frame's payload from rx into reasm. */
static int payload_step(ws_t *w) {
    size_t k = mw__buf_len(&w->rx);
    if (k > w->frame_left) k = w->frame_left;
    if (!k && w->frame_left) {
        w->rx_need = 1;
        return 0;
    }
    uint8_t *d = w->reasm + w->reasm_len;
    mw__ws_xor_copy(d, mw__buf_data(&w->rx), k, w->fh.masked ? w->fh.mask : NULL, w->frame_off);
    if (w->msg_op == MW_WS_TEXT && !mw__utf8_feed(&w->utf8, d, k))
        return fail(w, MW_WS_CLOSE_BAD_DATA, MW_EUTF8, "ws: text message is not valid UTF-8");
    mw__buf_consume(&w->rx, k);
    w->reasm_len += k, w->frame_off += k, w->frame_left -= k;
    if (w->frame_left) {
        w->rx_need = 1;
        return 0;
    }
    w->in_frame = false;
    if (w->fh.fin) {
        if (w->msg_op == MW_WS_TEXT && !mw__utf8_complete(&w->utf8))
            return fail(w, MW_WS_CLOSE_BAD_DATA, MW_EUTF8, "ws: text message ends inside a UTF-8 character");
        w->in_msg = false;
        w->deliver = true;
        w->deliver_off = 0;
    }
    return 1;
}

/* The next message from what rx holds, into dst (NULL: none fits): its
 * length, MW_EAGAIN (more input needed, or refused under MW_MSG_BUFFERED),
 * BIG (complete in reasm, larger than cap), or the error. */
static ssize_t next_msg(ws_t *w, uint8_t *dst, size_t cap, int flags) {
    bool buffered = flags & MW_MSG_BUFFERED;
    for (;;) {
        if (w->deliver) {
            if (!dst || w->reasm_len > cap) return BIG;
            if (w->reasm_len) memcpy(dst, w->reasm, w->reasm_len);
            w->deliver = false;
            size_t n = w->reasm_len;
            w->reasm_len = 0;
            return (ssize_t)n;
        }
        if (w->rx_err) return w->rx_err;
        if (w->in_frame && buffered) return MW_EAGAIN;
        size_t len = 0;
        int r = w->in_frame ? payload_step(w) : frame_step(w, dst, cap, buffered, &len);
        if (r == 2) return (ssize_t)len;
        if (r < 0) return r;
        if (r == 0) {
            if (buffered) w->rx_need = 0;
            return MW_EAGAIN;
        }
    }
}

static int msg_flags(const ws_t *w) { return w->msg_op == MW_WS_TEXT ? MW_MSG_TEXT : 0; }

ssize_t mw__ws_readmsg(mw_stream_t *s, void *dst, size_t cap, int flags, int *oflags) {
    ws_t *w = (ws_t *)s;
    if (oflags) *oflags = 0;
    if (w->rx_err) return w->rx_err;
    /* the end of a burst, cheaply: nothing buffered */
    if ((flags & MW_MSG_BUFFERED) && !w->deliver && !mw__buf_len(&w->rx)) return MW_EAGAIN;
    if (!mw__ws_ready(w)) {
        if (flags & MW_MSG_BUFFERED) return MW_EAGAIN;
        int r = mw__ws_hs_drive(w);
        if (r != 1) return r;
    }
    for (;;) {
        ssize_t n = next_msg(w, dst, cap, flags);
        if (n >= 0 && oflags) *oflags = msg_flags(w);
        if (n == BIG)
            return mw__err_set(&w->base.err, MW_ETOOBIG, "ws: message of %zu bytes is over max_msg %zu",
                              w->reasm_len, cap);
        if (n != MW_EAGAIN || (flags & MW_MSG_BUFFERED)) return n;
        if ((n = mw__ws_fill(w)) < 0) return n;
    }
}

/* Whether rx holds input a read would make progress on without I/O. */
static bool rx_ready(const ws_t *w) {
    size_t have = mw__buf_len(&w->rx);
    if (!have) return false;
    if (w->in_frame) return true;
    mw__ws_hdr_t h;
    ssize_t hl = mw__ws_hdr_decode(mw__buf_data(&w->rx), have, w->server, w->max_frame, &h);
    if (hl == MW_EAGAIN) return false;
    if (hl < 0) return true; /* a violation to report */
    size_t total = (size_t)hl + (size_t)h.len;
    if (total <= have) return true;
    if (h.opcode & 0x8) return false; /* control frames are taken whole */
    /* an unfragmented binary frame that fits rx is waited for whole */
    return !(h.fin && h.opcode == MW_WS_BINARY && total <= w->rx.cap);
}

size_t mw__ws_pending(const mw_stream_t *s) {
    const ws_t *w = (const ws_t *)s;
    if (w->rx_err) return 0; /* already reported; reads return it without waiting */
    if (mw__ws_ready(w)) {
        if (w->deliver) return w->reasm_len + 1;
        if (rx_ready(w)) return mw__buf_len(&w->rx);
    }
    return mw__stream_pending(w->base.inner);
}

/* ---- the record view: messages -> u32-prefixed records ----------------------------- */

static size_t put_rec_hdr(const ws_t *w, uint8_t *p, unsigned op, size_t n) {
    size_t k = 0;
    if (w->flags & MW_WS_RECORD_OPCODE) p[k++] = (uint8_t)op;
    p[k] = (uint8_t)(n >> 24), p[k + 1] = (uint8_t)(n >> 16), p[k + 2] = (uint8_t)(n >> 8), p[k + 3] = (uint8_t)n;
    return k + 4;
}

/* Copies the reassembled message out as a record; in pieces only when the
 * caller's buffer cannot hold it whole. True when it is all out. */
static bool deliver_rec(ws_t *w, uint8_t *dst, size_t cap, size_t *out) {
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

/* Every message rx holds (and one read's worth more if it holds none), as
 * records: the bytes of records, MW_EAGAIN, or the error once nothing is
 * left to hand over. */
ssize_t mw__ws_read(mw_stream_t *s, void *dst, size_t cap) {
    ws_t *w = (ws_t *)s;
    uint8_t *d = dst;
    assert(cap > 0);
    if (w->rx_err && !w->deliver) return w->rx_err;
    if (!mw__ws_ready(w)) {
        int r = mw__ws_hs_drive(w);
        if (r != 1) return r;
    }
    size_t out = 0;
    for (;;) {
        if (w->deliver) {
            if (!deliver_rec(w, d, cap, &out)) break;
            continue;
        }
        size_t room = cap - out;
        bool hdr_fits = room >= w->rhs;
        ssize_t n = next_msg(w, hdr_fits ? d + out + w->rhs : NULL, hdr_fits ? room - w->rhs : 0,
                             out ? MW_MSG_BUFFERED : 0);
        if (n >= 0) {
            put_rec_hdr(w, d + out, w->msg_op, (size_t)n);
            out += w->rhs + (size_t)n;
        } else if (n == MW_EAGAIN) {
            if (out) break;
            if ((n = mw__ws_fill(w)) < 0) return n;
        } else if (n != BIG) {
            return out ? (ssize_t)out : n;
        }
    }
    return (ssize_t)out;
}

/* ---- handshake driver (reader side: it reads the peer's head) --------------------------------------------------------------------- */

static int hs_fail(ws_t *w, int code) {
    w->hs = MW__WS_HS_FAILED;
    w->rx_err = code;
    mw__ws_tx_lock(w);
    mw__ws_tx_fail(w, code);
    mw__ws_tx_unlock(w);
    return code;
}

/* Server: answer an error status (best effort) and fail with MW_EPROTO. */
static int hs_reject(ws_t *w, int status, const char *why) {
    mw__err_set(&w->base.err, MW_EPROTO, "ws handshake: answered %d %s: %s", status, mw__ws_status_text(status), why);
    mw__ws_tx_lock(w);
    ssize_t n = mw__ws_response_build((char *)mw__buf_reserve(&w->tx, 512), 512, status, (mw__ws_str_t){0},
                                      (mw__ws_str_t){0});
    if (n > 0) mw__buf_commit(&w->tx, (size_t)n);
    mw__ws_flush_tx(w);
    mw__ws_tx_unlock(w);
    return hs_fail(w, MW_EPROTO);
}

static void copy_str(char *dst, size_t cap, mw__ws_str_t s) {
    size_t n = s.n < cap - 1 ? s.n : cap - 1;
    if (n) memcpy(dst, s.p, n);
    dst[n] = '\0';
}

static int hs_server(ws_t *w, size_t len) {
    mw__ws_req_t q;
    int st = mw__ws_request_parse((const char *)mw__buf_data(&w->rx), len, w->expect_path, w->accept_proto, &q);
    if (st != 101) return hs_reject(w, st, q.why);
    if (q.target.n >= sizeof w->path) return hs_reject(w, 414, "request target too long");
    copy_str(w->path, sizeof w->path, q.target);
    copy_str(w->proto, sizeof w->proto, q.protocol);
    mw__ws_tx_lock(w);
    /* 101 head: fixed headers plus a subprotocol of < 128 bytes (checked at wrap) */
    ssize_t n = mw__ws_response_build((char *)mw__buf_reserve(&w->tx, 1024), 1024, 101, q.key, q.protocol);
    if (n <= 0) {
        mw__ws_tx_unlock(w);
        return hs_reject(w, 500, "response does not fit");
    }
    mw__buf_commit(&w->tx, (size_t)n);
    int r = mw__ws_flush_tx(w);
    mw__ws_tx_unlock(w);
    mw__buf_consume(&w->rx, len);
    if (r < 0 && r != MW_EAGAIN) return hs_fail(w, r);
    return 1;
}

static int hs_client(ws_t *w, size_t len) {
    mw__ws_resp_t a;
    const char *accept = (w->flags & MW_WS_REPLAY) ? NULL : w->accept;
    if (mw__ws_response_parse((const char *)mw__buf_data(&w->rx), len, accept, w->offered, &a) < 0) {
        if (a.status && a.status != 101)
            mw__err_set(&w->base.err, MW_EPROTO, "ws handshake: server answered %d %.*s", a.status,
                       (int)a.reason.n, a.reason.p);
        else
            mw__err_set(&w->base.err, MW_EPROTO, "ws handshake: %s", a.why);
        return hs_fail(w, MW_EPROTO);
    }
    copy_str(w->proto, sizeof w->proto, a.protocol);
    mw__buf_consume(&w->rx, len);
    return 1;
}

/* Drives the handshake: 1 done, MW_EAGAIN, or the error. Reader side. */
int mw__ws_hs_drive(ws_t *w) {
    if (atomic_load_explicit(&w->ready, memory_order_acquire)) return 1;
    if (w->hs == MW__WS_HS_FAILED) return w->rx_err;
    if (!atomic_load_explicit(&w->inner_up, memory_order_relaxed)) {
        int r = mw__stream_handshake(w->base.inner);
        if (r != 1) {
            if (r == MW_EAGAIN) return r;
            mw__err_copy(&w->base.err, &w->base.inner->err);
            return hs_fail(w, r);
        }
        atomic_store_explicit(&w->inner_up, true, memory_order_release);
    }
    int r;
    mw__ws_tx_lock(w);
    r = mw__ws_flush_tx(w);
    mw__ws_tx_unlock(w);
    if (r < 0 && r != MW_EAGAIN) return hs_fail(w, r);
    for (;;) {
        ssize_t e = mw__ws_head_end(mw__buf_data(&w->rx), mw__buf_len(&w->rx), w->max_header, &w->hs_scan);
        if (e > 0) {
            r = w->server ? hs_server(w, (size_t)e) : hs_client(w, (size_t)e);
            if (r != 1) return r;
            w->hs = MW__WS_HS_DONE;
            atomic_store_explicit(&w->ready, true, memory_order_release);
            return 1;
        }
        if (e == MW_ETOOBIG) {
            if (w->server) return hs_reject(w, 431, "request head too large");
            mw__err_set(&w->base.err, MW_EPROTO, "ws handshake: response head over %zu bytes", w->max_header);
            return hs_fail(w, MW_EPROTO);
        }
        const char *bad = w->server ? mw__ws_request_start_bad(mw__buf_data(&w->rx), mw__buf_len(&w->rx)) : NULL;
        if (bad) return hs_reject(w, 400, bad); /* never a request: answer now, not at the timeout */
        w->rx_need = 0;
        ssize_t n = mw__ws_fill(w);
        if (n == MW_EAGAIN) return MW_EAGAIN;
        if (n < 0) {
            mw__err_set(&w->base.err, (int)n, "ws handshake: %s", mw_err_text(&w->base.inner->err));
            return hs_fail(w, (int)n);
        }
    }
}
