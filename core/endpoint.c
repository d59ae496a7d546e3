/* endpoint.c - the one endpoint (see endpoint_impl.h). */
#include "endpoint_impl.h"

#include <string.h>

#include "mw_tcp.h"
#include "err_impl.h"
#include "resolve_impl.h"
#include "stream_impl.h"
#include "tcp_impl.h"
#include "transport_impl.h"

static void try_next_addr(mw__ep_t *e);

static void detach(mw__ep_t *e) {
    if (e->attached) mw_io_del(e->io, &e->src);
    e->attached = false;
}

static void drop_pending(mw__ep_t *e) {
    detach(e);
    mw_stream_free(e->pending);
    e->pending = NULL;
    mw__resolve_cancel(e->dns);
    e->dns = NULL;
}

static void end(mw__ep_t *e, int reason) {
    mw__ep_stop(e);
    if (e->cfg->on_end) e->cfg->on_end(e, reason);
}

/* An attempt failed before a stream was handed over. */
static void attempt_failed(mw__ep_t *e, int reason) {
    drop_pending(e);
    mw_io_timer_stop(e->io, &e->t_connect);
    e->state = MW__EP_BACKOFF;
    mw__logf(MW_LOG_INFO, "endpoint %s://%s:%s: attempt failed: %s", mw__scheme_name(e->url->scheme),
             e->url->host, e->url->port, mw_err_text(&e->err));
    if (e->cfg->on_fail) e->cfg->on_fail(e, reason);
}

static void handed(mw__ep_t *e, mw_stream_t *s) {
    mw_io_timer_stop(e->io, &e->t_connect);
    e->state = MW__EP_HANDED;
    int r = e->cfg->on_stream(e, s);
    if (r < 0 && e->state == MW__EP_HANDED) attempt_failed(e, r);
}

static int on_pending(mw_sel_src_t *src, int events) {
    (void)events;
    mw__ep_t *e = src->ud;
    int r = mw__tcp_connect_finish(e->pending);
    if (r == MW_EAGAIN) return 0;
    if (r < 0) {
        mw__transport_error(e->pending, r, &e->err);
        detach(e);
        mw_stream_free(e->pending);
        e->pending = NULL;
        try_next_addr(e);
        return 1;
    }
    mw_stream_t *s = e->pending;
    e->pending = NULL; /* wrap takes ownership, also on failure */
    detach(e);
    if ((r = mw__transport_wrap(e->tr, s, &s, &e->err)) < 0) {
        attempt_failed(e, r);
        return 1;
    }
    handed(e, s);
    return 1;
}

static void try_next_addr(mw__ep_t *e) {
    int r = e->err.code ? e->err.code : MW_ECONNREFUSED;
    while (e->next_addr < e->addrs.naddrs) {
        int i = e->next_addr++;
        mw_stream_t *s;
        mw_tcp_opts_t tcp = e->tcp;
        tcp.blocking = false;
        r = mw__tcp_connect_start(&s, (struct sockaddr *)&e->addrs.addrs[i], e->addrs.lens[i], &tcp, &e->err);
        if (r != 0 && r != MW_EAGAIN) continue;
        e->pending = s;
        e->state = MW__EP_CONNECTING;
        mw_sel_src_init(&e->src, mw__stream_fd(s), MW_WANT_WRITE, on_pending, e);
        if ((r = mw_io_add(e->io, &e->src)) < 0) break;
        e->attached = true;
        return;
    }
    if (!e->err.code) mw__err_set(&e->err, r, "connect %s:%s: no address to try", e->url->host, e->url->port);
    attempt_failed(e, r);
}

static void on_resolved(const mw__resolve_result_t *res, void *ud) {
    mw__ep_t *e = ud;
    e->dns = NULL;
    if (res->code < 0) {
        mw__err_set(&e->err, res->code, "%s", res->text);
        attempt_failed(e, res->code);
        return;
    }
    e->addrs = *res;
    e->next_addr = 0;
    mw_err_clear(&e->err);
    try_next_addr(e);
}

static void on_connect_timeout(mw_io_timer_t *t, void *ud) {
    (void)t;
    mw__ep_t *e = ud;
    mw__err_set(&e->err, MW_ETIMEDOUT, "connect %s:%s: no connection within %lld ms", e->url->host, e->url->port,
               (long long)(e->connect_timeout_ns / MW_NS_PER_MS));
    attempt_failed(e, MW_ETIMEDOUT);
}

void mw__ep_start(mw__ep_t *e) {
    if (e->state == MW__EP_ENDED) return;
    e->state = MW__EP_RESOLVING;
    mw_err_clear(&e->err);
    if (e->cfg->on_attempt) e->cfg->on_attempt(e);
    if (e->connect_timeout_ns > 0) mw_io_timer_after(e->io, &e->t_connect, e->connect_timeout_ns);
    int r = mw__resolve_start(e->io, e->url->host, e->url->port, on_resolved, e, &e->dns, &e->err);
    if (r < 0) attempt_failed(e, r);
}

static void on_backoff(mw_io_timer_t *t, void *ud) {
    (void)t;
    mw__ep_start(ud);
}

/* Failures no retry can mend: bad options, no memory. (Whether a TLS
 * failure is permanent depends on when it happened: can_retry decides.) */
static bool permanent(int reason) { return reason == MW_EINVAL || reason == MW_ENOMEM; }

void mw__ep_retry(mw__ep_t *e, int reason, int64_t delay_override) {
    if (e->state == MW__EP_ENDED) return;
    drop_pending(e);
    mw_io_timer_stop(e->io, &e->t_connect);
    int64_t delay = delay_override >= 0 ? delay_override : mw__backoff_fail(&e->bo);
    if (delay < 0 || (delay_override < 0 && permanent(reason))) {
        end(e, reason);
        return;
    }
    if (e->cfg->can_retry && !e->cfg->can_retry(e, reason, mw__backoff_failures(&e->bo))) {
        if (e->state != MW__EP_ENDED) end(e, reason);
        return;
    }
    if (e->state == MW__EP_ENDED) return; /* stopped from inside can_retry */
    e->state = MW__EP_BACKOFF;
    mw_io_timer_after(e->io, &e->t_backoff, delay);
}

void mw__ep_up(mw__ep_t *e) {
    mw_io_timer_stop(e->io, &e->t_connect);
    mw__backoff_reset(&e->bo);
}

void mw__ep_stop(mw__ep_t *e) {
    if (e->state == MW__EP_ENDED) return;
    drop_pending(e);
    mw_io_timer_stop(e->io, &e->t_connect);
    mw_io_timer_stop(e->io, &e->t_backoff);
    e->state = MW__EP_ENDED;
}

void mw__ep_init(mw__ep_t *e, mw_io_t *io, const mw__ep_cfg_t *cfg, void *ud, const mw__url_t *url,
                 mw__transport_t *tr, const mw_tcp_opts_t *tcp, int64_t connect_timeout_ns,
                 const mw__backoff_opts_t *bo, uint64_t seed) {
    memset(e, 0, sizeof *e);
    e->io = io;
    e->cfg = cfg;
    e->ud = ud;
    e->url = url;
    e->tr = tr;
    e->tcp = *tcp;
    e->connect_timeout_ns = connect_timeout_ns;
    mw__backoff_init(&e->bo, bo, seed);
    mw_io_timer_init(&e->t_connect, on_connect_timeout, e);
    mw_io_timer_init(&e->t_backoff, on_backoff, e);
}
