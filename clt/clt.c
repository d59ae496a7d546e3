/* clt.c - the client in spin, blocking and event modes. */
#include "mw_clt.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

struct mw_clt {
    mw_conn_t conn;
    mw_clt_opts_t o;
    mw_url_t url;
    bool open;
    mw_err_t err;        /* connect / lifecycle errors; I/O errors live in conn */
    mw_idle_t tx_idle;   /* busywait state, one per thread side */
    mw_idle_t rx_idle;
    /* event mode, io thread only */
    mw_sel_src_t src;
    bool attached, in_cb, close_pending, closed_notified;
};

/* The split views are the Clt itself, typed so a thread cannot call the
 * other side's functions by mistake. */
struct mw_clt_sender { struct mw_clt c; };
struct mw_clt_receiver { struct mw_clt c; };

void mw_clt_opts_init(mw_clt_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->mode = MW_MODE_SPIN;
    mw_conn_opts_init(&o->conn);
    mw_tcp_opts_init(&o->tcp);
    o->connect_timeout_ns = 5 * MW_NS_PER_S;
    o->connect_attempts = 1;
    o->retry_delay_ns = 100 * MW_NS_PER_MS;
    o->retry_max_delay_ns = 2 * MW_NS_PER_S;
    o->timeout_ns = -1;
    mw_idle_init_busy(&o->idle);
}

static void nap(int64_t ns) {
    struct timespec ts = {(time_t)(ns / MW_NS_PER_S), (long)(ns % MW_NS_PER_S)};
    while (nanosleep(&ts, &ts) != 0) {}
}

/* Connect with the retry policy: a refused or timed-out attempt waits
 * retry_delay (doubling up to retry_max_delay) before the next. */
static int connect_retry(mw_stream_t **s, const mw_url_t *u, const mw_clt_opts_t *o,
                         const mw_tcp_opts_t *tcp, mw_err_t *err) {
    uint32_t attempts = o->connect_attempts ? o->connect_attempts : 1;
    int64_t delay = o->retry_delay_ns;
    int r = MW_EINVAL;
    for (uint32_t i = 0; i < attempts; i++) {
        if (i) {
            nap(delay);
            delay = delay * 2 > o->retry_max_delay_ns ? o->retry_max_delay_ns : delay * 2;
        }
        r = mw_tcp_connect(s, u->host, u->port, tcp, o->connect_timeout_ns, err);
        if (r == 0 || r == MW_EINVAL || r == MW_ENOMEM) break;
    }
    return r;
}

static void on_ready(mw_sel_src_t *src, int events);

static void attach(void *ud) {
    mw_clt_t *c = ud;
    mw_sel_src_init(&c->src, mw_stream_fd(c->conn.stream), MW_WANT_READ, on_ready, c);
    int r = mw_io_add(c->o.io, &c->src);
    if (r < 0) {
        mw_err_set(&c->err, r, "attach to io: %s", mw_err_text(&mw_io_selector(c->o.io)->err));
        c->open = false;
        if (c->o.on_close) c->o.on_close(c, r, c->o.ud);
        return;
    }
    c->attached = true;
    if (c->o.on_connect) c->o.on_connect(c, c->o.ud);
}

int mw_clt_connect(mw_clt_t **out, const char *url, const mw_protocol_t *p,
                   const mw_clt_opts_t *o, mw_err_t *err) {
    mw_clt_opts_t def;
    if (!o) {
        mw_clt_opts_init(&def);
        o = &def;
    }
    *out = NULL;
    mw_url_t u;
    int r = mw_url_parse(url, &u, err);
    if (r < 0) return r;
    if (u.scheme != MW_SCHEME_TCP)
        return mw_err_set(err, MW_ENOTSUP, "%s: scheme %s:// is not supported yet", url,
                          mw_scheme_name(u.scheme));
    if (o->mode == MW_MODE_EVENT && !o->io)
        return mw_err_set(err, MW_EINVAL, "event mode needs opts.io");
    mw_tcp_opts_t tcp = o->tcp;
    tcp.blocking = o->mode == MW_MODE_BLOCKING;
    mw_stream_t *s;
    if ((r = connect_retry(&s, &u, o, &tcp, err)) < 0) return r;
    if (o->mode == MW_MODE_BLOCKING && o->timeout_ns > 0) mw_tcp_set_timeouts(s, o->timeout_ns, o->timeout_ns);
    mw_clt_t *c = calloc(1, sizeof *c);
    if (!c) {
        mw_stream_free(s);
        return mw_err_set(err, MW_ENOMEM, "out of memory");
    }
    c->o = *o;
    c->url = u;
    mw_conn_opts_t co = o->conn;
    if (o->mode == MW_MODE_EVENT) co.flags |= MW_CONN_TX_LOCK;
    if ((r = mw_conn_init(&c->conn, s, p, &co, err)) < 0) {
        free(c);
        return r;
    }
    c->conn.tx.hook = o->on_sent;
    c->conn.rx.hook = o->on_recvd;
    c->conn.tx.hook_ud = c->conn.rx.hook_ud = o->hook_ud;
    c->tx_idle = c->rx_idle = o->idle;
    c->open = true;
    if (o->mode == MW_MODE_EVENT && (r = mw_io_post(o->io, attach, c)) < 0) {
        mw_clt_free(c);
        return mw_err_set(err, r, "cannot post to io");
    }
    *out = c;
    return 0;
}

/* ---- event mode ----------------------------------------------------------- */

static void detach(mw_clt_t *c) {
    if (c->attached) mw_io_del(c->o.io, &c->src);
    c->attached = false;
}

static void fail_event(mw_clt_t *c, int reason) {
    c->open = false;
    detach(c);
    mw_stream_close(c->conn.stream);
    if (!c->closed_notified && c->o.on_close) {
        c->closed_notified = true;
        c->o.on_close(c, reason, c->o.ud);
    }
}

static bool deliver(void *ud, mw_conn_t *conn, const mw_schema_t *s, const void *msg) {
    (void)conn;
    mw_clt_t *c = ud;
    if (c->o.on_msg) c->o.on_msg(c, s, msg, c->o.ud);
    return !c->close_pending;
}

static void arm_write(mw_clt_t *c) {
    if (c->attached && !(c->src.events & MW_WANT_WRITE))
        mw_io_mod(c->o.io, &c->src, MW_WANT_READ | MW_WANT_WRITE);
}

static void arm_write_posted(void *ud) { arm_write(ud); }

static void on_ready(mw_sel_src_t *src, int events) {
    mw_clt_t *c = src->ud;
    int r = 0;
    c->in_cb = true;
    if (events & MW_WANT_WRITE) {
        r = mw_conn_flush(&c->conn);
        if (r == 0) mw_io_mod(c->o.io, &c->src, MW_WANT_READ);
    }
    if (r >= 0 || r == MW_EAGAIN) r = 0;
    ssize_t n = 0;
    if (!r && (events & MW_WANT_READ)) {
        n = mw_conn_fill(&c->conn);
        int d = mw_conn_dispatch(&c->conn, deliver, c, -1);
        if (d < 0) r = d;
        else if (n < 0 && n != MW_EAGAIN) r = (int)n;
    }
    c->in_cb = false;
    if (c->close_pending) {
        mw_clt_close(c);
        return;
    }
    if (r < 0) fail_event(c, r);
    else if (mw_conn_tx_pending(&c->conn)) arm_write(c);
}

/* ---- sending -------------------------------------------------------------- */

static int blocking_result(const mw_clt_t *c, int r) {
    return c->o.mode == MW_MODE_BLOCKING && r == MW_EAGAIN ? MW_ETIMEDOUT : r;
}

static void after_send(mw_clt_t *c) {
    if (c->o.mode != MW_MODE_EVENT || !mw_conn_tx_pending(&c->conn)) return;
    if (mw_io_in_thread(c->o.io)) arm_write(c);
    else mw_io_post(c->o.io, arm_write_posted, c);
}

int mw_clt_send(mw_clt_t *c, const mw_schema_t *s, const void *msg) {
    int r = mw_conn_send(&c->conn, s, msg);
    if (r == 0 && c->o.mode == MW_MODE_BLOCKING && mw_conn_tx_pending(&c->conn))
        return MW_ETIMEDOUT; /* the blocking write stopped at SO_SNDTIMEO */
    if (r == 0) after_send(c);
    if (r == MW_ECLOSED || (r < 0 && c->conn.tx.failed)) c->open = false;
    return blocking_result(c, r);
}

int mw_clt_send_more(mw_clt_t *c, const mw_schema_t *s, const void *msg) {
    return mw_conn_enqueue(&c->conn, s, msg);
}

int mw_clt_flush(mw_clt_t *c) {
    int r = mw_conn_flush(&c->conn);
    if (r == MW_EAGAIN) after_send(c);
    if (r < 0 && c->conn.tx.failed) c->open = false;
    return blocking_result(c, r);
}

int mw_clt_send_busywait_timeout(mw_clt_t *c, const mw_schema_t *s, const void *msg, int64_t timeout_ns) {
    uint64_t dl = mw_deadline_in(NULL, timeout_ns);
    int r;
    while ((r = mw_clt_send(c, s, msg)) == MW_EAGAIN) {
        if (mw_deadline_passed(NULL, dl)) return MW_ETIMEDOUT;
        mw_idle(&c->tx_idle, 0);
    }
    while (r == 0 && (r = mw_conn_flush(&c->conn)) == MW_EAGAIN) {
        if (mw_deadline_passed(NULL, dl)) return MW_ETIMEDOUT;
        mw_idle(&c->tx_idle, 0);
    }
    mw_idle_reset(&c->tx_idle);
    return r;
}

uint8_t *mw_clt_claim(mw_clt_t *c, size_t max) { return mw_conn_claim(&c->conn, max); }

int mw_clt_commit(mw_clt_t *c, size_t len) { return mw_conn_commit(&c->conn, len); }

/* ---- receiving ------------------------------------------------------------ */

int mw_clt_recv(mw_clt_t *c, const mw_schema_t **s, void *msg, size_t cap) {
    int r = mw_conn_recv(&c->conn, s, msg, cap);
    if (r < 0 && r != MW_EAGAIN) c->open = false;
    return blocking_result(c, r);
}

int mw_clt_recv_busywait_timeout(mw_clt_t *c, const mw_schema_t **s, void *msg, size_t cap,
                                 int64_t timeout_ns) {
    uint64_t dl = mw_deadline_in(NULL, timeout_ns);
    int r;
    while ((r = mw_clt_recv(c, s, msg, cap)) == MW_EAGAIN) {
        if (mw_deadline_passed(NULL, dl)) return MW_ETIMEDOUT;
        mw_idle(&c->rx_idle, 0);
    }
    mw_idle_reset(&c->rx_idle);
    return r;
}

/* ---- split ---------------------------------------------------------------- */

mw_clt_sender_t *mw_clt_sender(mw_clt_t *c) { return (mw_clt_sender_t *)c; }
mw_clt_receiver_t *mw_clt_receiver(mw_clt_t *c) { return (mw_clt_receiver_t *)c; }

int mw_clt_sender_send(mw_clt_sender_t *tx, const mw_schema_t *s, const void *msg) {
    return mw_clt_send(&tx->c, s, msg);
}

int mw_clt_sender_send_busywait_timeout(mw_clt_sender_t *tx, const mw_schema_t *s, const void *msg,
                                        int64_t timeout_ns) {
    return mw_clt_send_busywait_timeout(&tx->c, s, msg, timeout_ns);
}

int mw_clt_receiver_recv(mw_clt_receiver_t *rx, const mw_schema_t **s, void *msg, size_t cap) {
    return mw_clt_recv(&rx->c, s, msg, cap);
}

int mw_clt_receiver_recv_busywait_timeout(mw_clt_receiver_t *rx, const mw_schema_t **s, void *msg,
                                          size_t cap, int64_t timeout_ns) {
    return mw_clt_recv_busywait_timeout(&rx->c, s, msg, cap, timeout_ns);
}

/* ---- state and lifetime --------------------------------------------------- */

int mw_clt_set_serdes(mw_clt_t *c, int dirs, const char *serdes) {
    return mw_conn_set_serdes(&c->conn, dirs, serdes, MW_FRAME_AUTO);
}

mw_mode_t mw_clt_mode(const mw_clt_t *c) { return c->o.mode; }

void mw_clt_stats(const mw_clt_t *c, mw_conn_stats_t *st) { mw_conn_stats(&c->conn, st); }

const char *mw_clt_last_error(const mw_clt_t *c) {
    const char *e = mw_conn_last_error(&c->conn);
    return *e ? e : mw_err_text(&c->err);
}

mw_conn_t *mw_clt_conn(mw_clt_t *c) { return &c->conn; }

int mw_clt_local_name(const mw_clt_t *c, char *buf, size_t cap) {
    return mw_tcp_local_name(c->conn.stream, buf, cap);
}

bool mw_clt_is_open(const mw_clt_t *c) { return c->open; }

void mw_clt_close(mw_clt_t *c) {
    if (!c) return;
    if (c->in_cb) { /* deferred until the callback returns */
        c->close_pending = true;
        return;
    }
    c->close_pending = false;
    c->open = false;
    detach(c);
    if (c->conn.stream) mw_stream_close(c->conn.stream);
}

void mw_clt_free(mw_clt_t *c) {
    if (!c) return;
    c->in_cb = false;
    mw_clt_close(c);
    mw_conn_fini(&c->conn);
    free(c);
}
