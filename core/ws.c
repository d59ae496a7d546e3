/* ws.c - the WebSocket stream decorator (see mw_ws.h): the ops table,
 * construction and the public helpers. The reading half (and the handshake
 * driver, which reads) is in ws_rx.c, the writing half in ws_tx.c (see
 * ws_impl.h).
 *
 * Threads: the rx side (read, readmsg, handshake, pending) belongs to one
 * thread and the tx side (writev, writemsgs, ping, close) to one thread; they
 * may differ. Everything in the tx half (tx, pending control frames, close
 * state) is under a lock (lock_impl.h: the stream's own, or its owner's
 * once shared), because reads queue pongs and close replies there too.
 */
#include "mw_ws.h"

#include "mw_tcp.h"
#include "ws_impl.h"
#include "buf_impl.h"
#include "err_impl.h"
#include "stream_impl.h"
#include "tcp_impl.h"

#include <stdio.h>
#include <stdlib.h>

typedef mw__ws_t ws_t;

#define RX_MIN (64u * 1024)
#define DEFAULT_MAX_MSG (16u * 1024 * 1024)
#define DEFAULT_MAX_HEADER 8192u

static const mw__stream_ops_t ws_ops;

static ws_t *find_ws(const mw_stream_t *s) {
    while (s && s->ops != &ws_ops) s = s->inner;
    return (ws_t *)s;
}

/* ---- stream ops -------------------------------------------------------------------- */

static int ws_handshake(mw_stream_t *s) { return mw__ws_hs_drive((ws_t *)s); }

static int ws_want(const mw_stream_t *s) {
    const ws_t *w = (const ws_t *)s;
    int want = mw__stream_want(w->base.inner);
    bool ready = mw__ws_ready(w);
    /* Until TCP/TLS is up, their wants alone say when to drive the handshake
     * (the upgrade request waiting in tx cannot go yet). */
    if (!ready && !atomic_load_explicit(&w->inner_up, memory_order_acquire)) return want;
    if (atomic_load_explicit(&w->tx_held, memory_order_acquire)) want |= MW_WANT_WRITE;
    if (!ready && w->hs != MW__WS_HS_FAILED && !(want & MW_WANT_WRITE)) want |= MW_WANT_READ;
    return want;
}

static int ws_fd(const mw_stream_t *s) { return mw__stream_fd(s->inner); }

static int ws_rx_time(const mw_stream_t *s, uint64_t *ns) { return mw__stream_rx_time(s->inner, ns); }

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
    mw__stream_close(s->inner);
}

static void ws_free(mw_stream_t *s) {
    if (!s) return;
    ws_t *w = (ws_t *)s;
    ws_close(s);
    mw_stream_free(s->inner);
    mw__buf_fini(&w->rx);
    mw__buf_fini(&w->tx);
    free(w->reasm);
    free(w->offered);
    free(w->expect_path);
    free(w->accept_proto);
    free(w);
}

static void ws_share_lock(mw_stream_t *s, mw__lock_t *lk) {
    ((ws_t *)s)->slk = lk;
    mw__stream_share_lock(s->inner, lk);
}

static const mw__stream_ops_t ws_ops = {
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
    if (!inner) return mw__err_set(err, MW_EINVAL, "ws: no inner stream");
    if (o->max_msg > 0x7FFFFFF0u) {
        mw_stream_free(inner);
        return mw__err_set(err, MW_EINVAL, "ws: max_msg %u is over 2 GiB", o->max_msg);
    }
    ws_t *w = calloc(1, sizeof *w);
    if (!w) {
        mw_stream_free(inner);
        return mw__err_set(err, MW_ENOMEM, "ws: out of memory");
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
    atomic_init(&w->ready, false);
    atomic_init(&w->inner_up, false);
    atomic_init(&w->tx_held, false);
    if (o->subprotocol && strlen(o->subprotocol) >= sizeof w->proto) {
        ws_free(&w->base);
        return mw__err_set(err, MW_EINVAL, "ws: subprotocol longer than %zu bytes", sizeof w->proto - 1);
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
    if (oom || !w->reasm || mw__buf_init(&w->rx, rx_cap) < 0 || mw__buf_init(&w->tx, tx_cap) < 0) {
        ws_free(&w->base);
        return mw__err_set(err, MW_ENOMEM, "ws: out of memory for %zu-byte buffers", w->max_msg);
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
    else if (mw__tcp_peer_name(inner, host, sizeof host) != 0) snprintf(host, sizeof host, "localhost");
    if ((r = mw__ws_key_new(key)) < 0) {
        ws_free(&w->base);
        return mw__err_set(err, r, "ws: RAND_bytes failed for the handshake key");
    }
    mw__ws_accept_key(key, 24, w->accept);
    if (w->flags & MW_WS_REPLAY) { /* the recording holds the response to a request long gone */
        *out = &w->base;
        return 0;
    }
    ssize_t n = mw__ws_request_build((char *)mw__buf_tail(&w->tx), mw__buf_tailroom(&w->tx), o, host, key);
    if (n < 0) {
        ws_free(&w->base);
        return mw__err_set(err, MW_EINVAL, "ws: cannot build the upgrade request: %s",
                          n == MW_ETOOBIG ? "over 8 KiB" : "path, host or header value malformed");
    }
    mw__buf_commit(&w->tx, (size_t)n);
    mw__ws_upd_held(w);
    *out = &w->base;
    return 0;
}

int mw__ws_server_wrap(mw_stream_t **out, mw_stream_t *inner, const mw_ws_opts_t *o, mw_err_t *err) {
    ws_t *w;
    int r = ws_new(&w, inner, o, true, err);
    if (r < 0) return r;
    *out = &w->base;
    return 0;
}

/* ---- public helpers ----------------------------------------------------------------- */

int mw__ws_ping(mw_stream_t *s, const void *data, size_t n) {
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

int mw__ws_close(mw_stream_t *s, uint16_t code, const char *reason) {
    ws_t *w = find_ws(s);
    size_t rn = reason ? strlen(reason) : 0;
    if (!w || !mw__ws_close_code_ok(code) || rn > MW__WS_CTRL_MAX - 2) return MW_EINVAL;
    mw__utf8_state_t u;
    mw__utf8_init(&u);
    if (rn && (!mw__utf8_feed(&u, (const uint8_t *)reason, rn) || !mw__utf8_complete(&u))) return MW_EINVAL;
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

void mw__ws_set_text(mw_stream_t *s, bool text) {
    ws_t *w = find_ws(s);
    if (!w) return;
    mw__ws_tx_lock(w);
    w->text = text;
    mw__ws_tx_unlock(w);
}

int mw__ws_peer_close_code(const mw_stream_t *s) {
    const ws_t *w = find_ws(s);
    return w ? w->peer_code : 0;
}

int mw__ws_sent_close_code(const mw_stream_t *s) {
    ws_t *w = find_ws(s);
    if (!w) return 0;
    mw__ws_tx_lock(w);
    int c = w->sent_code;
    mw__ws_tx_unlock(w);
    return c;
}

uint64_t mw__ws_pongs(const mw_stream_t *s) {
    const ws_t *w = find_ws(s);
    return w ? w->pongs : 0;
}

const char *mw__ws_subprotocol(const mw_stream_t *s) {
    const ws_t *w = find_ws(s);
    return w ? w->proto : "";
}

const char *mw__ws_path(const mw_stream_t *s) {
    const ws_t *w = find_ws(s);
    return w ? w->path : "";
}

bool mw__is_ws(const mw_stream_t *s) { return s && s->ops == &ws_ops; }
