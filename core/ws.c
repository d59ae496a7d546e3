/* ws.c - the WebSocket stream decorator (see mw_ws.h): the ops table,
 * construction, the handshake driver and the public helpers. The reading
 * half is in ws_rx.c, the writing half in ws_tx.c (see ws_impl.h).
 *
 * Threads: the rx side (read, readmsg, handshake, pending) belongs to one
 * thread and the tx side (writev, writemsgs, ping, close) to one thread; they
 * may differ. Everything in the tx half (tx, pending control frames, close
 * state) is under a spinlock, because reads queue pongs and close replies
 * there too.
 */
#include "mw_ws.h"

#include "mw_tcp.h"
#include "ws_impl.h"

#include <stdio.h>
#include <stdlib.h>

typedef mw__ws_t ws_t;

#define RX_MIN (64u * 1024)
#define DEFAULT_MAX_MSG (16u * 1024 * 1024)
#define DEFAULT_MAX_HEADER 8192u

static const mw_stream_ops_t ws_ops;

static ws_t *find_ws(const mw_stream_t *s) {
    while (s && s->ops != &ws_ops) s = s->inner;
    return (ws_t *)s;
}

/* ---- handshake --------------------------------------------------------------------- */

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
    mw_err_set(&w->base.err, MW_EPROTO, "ws handshake: answered %d %s: %s", status, mw__ws_status_text(status), why);
    mw__ws_tx_lock(w);
    ssize_t n = mw__ws_response_build((char *)mw_buf_reserve(&w->tx, 512), 512, status, (mw__ws_str_t){0},
                                      (mw__ws_str_t){0});
    if (n > 0) mw_buf_commit(&w->tx, (size_t)n);
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
    int st = mw__ws_request_parse((const char *)mw_buf_data(&w->rx), len, w->expect_path, w->accept_proto, &q);
    if (st != 101) return hs_reject(w, st, q.why);
    if (q.target.n >= sizeof w->path) return hs_reject(w, 414, "request target too long");
    copy_str(w->path, sizeof w->path, q.target);
    copy_str(w->proto, sizeof w->proto, q.protocol);
    mw__ws_tx_lock(w);
    /* 101 head: fixed headers plus a subprotocol of < 128 bytes (checked at wrap) */
    ssize_t n = mw__ws_response_build((char *)mw_buf_reserve(&w->tx, 1024), 1024, 101, q.key, q.protocol);
    if (n <= 0) {
        mw__ws_tx_unlock(w);
        return hs_reject(w, 500, "response does not fit");
    }
    mw_buf_commit(&w->tx, (size_t)n);
    int r = mw__ws_flush_tx(w);
    mw__ws_tx_unlock(w);
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
int mw__ws_hs_drive(ws_t *w) {
    if (atomic_load_explicit(&w->ready, memory_order_acquire)) return 1;
    if (w->hs == MW__WS_HS_FAILED) return w->rx_err;
    if (!atomic_load_explicit(&w->inner_up, memory_order_relaxed)) {
        int r = mw_stream_handshake(w->base.inner);
        if (r != 1) {
            if (r == MW_EAGAIN) return r;
            mw_err_copy(&w->base.err, &w->base.inner->err);
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
        ssize_t e = mw__ws_head_end(mw_buf_data(&w->rx), mw_buf_len(&w->rx), w->max_header, &w->hs_scan);
        if (e > 0) {
            r = w->server ? hs_server(w, (size_t)e) : hs_client(w, (size_t)e);
            if (r != 1) return r;
            w->hs = MW__WS_HS_DONE;
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
        ssize_t n = mw__ws_fill(w);
        if (n == MW_EAGAIN) return MW_EAGAIN;
        if (n < 0) {
            mw_err_set(&w->base.err, (int)n, "ws handshake: %s", mw_err_text(&w->base.inner->err));
            return hs_fail(w, (int)n);
        }
    }
}

/* ---- stream ops -------------------------------------------------------------------- */

static int ws_handshake(mw_stream_t *s) { return mw__ws_hs_drive((ws_t *)s); }

static int ws_want(const mw_stream_t *s) {
    const ws_t *w = (const ws_t *)s;
    int want = mw_stream_want(w->base.inner);
    bool ready = mw__ws_ready(w);
    /* Until TCP/TLS is up, their wants alone say when to drive the handshake
     * (the upgrade request waiting in tx cannot go yet). */
    if (!ready && !atomic_load_explicit(&w->inner_up, memory_order_acquire)) return want;
    if (atomic_load_explicit(&w->tx_held, memory_order_acquire)) want |= MW_WANT_WRITE;
    if (!ready && w->hs != MW__WS_HS_FAILED && !(want & MW_WANT_WRITE)) want |= MW_WANT_READ;
    return want;
}

static int ws_fd(const mw_stream_t *s) { return mw_stream_fd(s->inner); }

static int ws_rx_time(const mw_stream_t *s, uint64_t *ns) { return mw_stream_rx_time(s->inner, ns); }

/* Says goodbye properly if nobody has yet (best effort, no waiting). */
static void ws_close(mw_stream_t *s) {
    ws_t *w = (ws_t *)s;
    mw__ws_tx_lock(w);
    if (mw__ws_ready(w) && !w->close_queued && !w->tx_err)
        mw__ws_send_close(w, MW_WS_CLOSE_NORMAL, NULL);
    else if (!w->tx_io_err && atomic_load_explicit(&w->tx_held, memory_order_relaxed))
        mw__ws_flush_tx(w);
    w->tx_err = w->tx_err ? w->tx_err : MW_ECLOSED;
    mw__ws_tx_unlock(w);
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

static void ws_share_lock(mw_stream_t *s, bool *lk) {
    ((ws_t *)s)->slk = lk;
    mw_stream_share_lock(s->inner, lk);
}

static const mw_stream_ops_t ws_ops = {
    .name = "ws",
    .read = mw__ws_read,
    .writev = mw__ws_writev,
    .want = ws_want,
    .fd = ws_fd,
    .close = ws_close,
    .free = ws_free,
    .handshake = ws_handshake,
    .pending = mw__ws_pending,
    .rx_time = ws_rx_time,
    .readmsg = mw__ws_readmsg,
    .writemsgs = mw__ws_writemsgs,
    .share_lock = ws_share_lock,
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
    if (w->max_frame > w->max_msg) w->max_frame = w->max_msg; /* no frame is larger than its message */
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
    mw__ws_upd_held(w);
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
    if (!w || n > MW__WS_CTRL_MAX || (n && !data)) return MW_EINVAL;
    if (!mw__ws_ready(w)) return MW_EAGAIN;
    mw__ws_tx_lock(w);
    int r = w->tx_err ? w->tx_err : w->close_queued ? MW_ECLOSED : mw__ws_put_frame(w, MW_WS_PING, data, n);
    if (r == MW_EAGAIN) {
        int f = mw__ws_flush_tx(w);
        r = f == 0 || f == MW_EAGAIN ? mw__ws_put_frame(w, MW_WS_PING, data, n) : f;
    }
    if (r == 0) {
        int f = mw__ws_flush_tx(w);
        if (f < 0 && f != MW_EAGAIN) r = f;
    }
    mw__ws_upd_held(w);
    mw__ws_tx_unlock(w);
    return r;
}

int mw_ws_close(mw_stream_t *s, uint16_t code, const char *reason) {
    ws_t *w = find_ws(s);
    size_t rn = reason ? strlen(reason) : 0;
    if (!w || !mw__ws_close_code_ok(code) || rn > MW__WS_CTRL_MAX - 2) return MW_EINVAL;
    mw_utf8_state_t u;
    mw_utf8_init(&u);
    if (rn && (!mw_utf8_feed(&u, (const uint8_t *)reason, rn) || !mw_utf8_complete(&u))) return MW_EINVAL;
    if (!mw__ws_ready(w)) return MW_ESTATE;
    mw__ws_tx_lock(w);
    int r = w->tx_err;
    if (!r) {
        mw__ws_send_close(w, code, reason);
        r = w->tx_io_err;
    }
    mw__ws_tx_unlock(w);
    return r;
}

void mw_ws_set_text(mw_stream_t *s, bool text) {
    ws_t *w = find_ws(s);
    if (!w) return;
    mw__ws_tx_lock(w);
    w->text = text;
    mw__ws_tx_unlock(w);
}

int mw_ws_peer_close_code(const mw_stream_t *s) {
    const ws_t *w = find_ws(s);
    return w ? w->peer_code : 0;
}

int mw_ws_sent_close_code(const mw_stream_t *s) {
    ws_t *w = find_ws(s);
    if (!w) return 0;
    mw__ws_tx_lock(w);
    int c = w->sent_code;
    mw__ws_tx_unlock(w);
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
