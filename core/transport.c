/* transport.c - URL scheme -> stream stack (TCP, TLS, WebSocket, recorder). */
#include "mw_transport.h"

#include <stdio.h>
#include <string.h>

#include "mw_clock.h"
#include "mw_record.h"

void mw_transport_opts_init(mw_transport_opts_t *o) {
    memset(o, 0, sizeof *o);
    mw_tls_opts_init(&o->tls);
    mw_ws_opts_init(&o->ws);
}

static bool scheme_tls(mw_scheme_t s) { return s == MW_SCHEME_TLS || s == MW_SCHEME_WSS; }
static bool scheme_ws(mw_scheme_t s) { return s == MW_SCHEME_WS || s == MW_SCHEME_WSS; }

int mw_transport_init(mw_transport_t *t, const mw_url_t *url, bool server,
                      const mw_transport_opts_t *o, mw_err_t *err) {
    memset(t, 0, sizeof *t);
    t->url = *url;
    t->server = server;
    if (o) t->o = *o;
    else mw_transport_opts_init(&t->o);
    bool v6 = strchr(url->host, ':') != NULL;
    snprintf(t->ws_host, sizeof t->ws_host, v6 ? "[%s]:%s" : "%s:%s", url->host, url->port);
    if (!scheme_tls(url->scheme)) return 0;
    return mw_tls_ctx_new(&t->tls, server, &t->o.tls, err);
}

void mw_transport_fini(mw_transport_t *t) {
    mw_tls_ctx_free(t->tls);
    t->tls = NULL;
}

int mw_transport_wrap(mw_transport_t *t, mw_stream_t *tcp, mw_stream_t **out, mw_err_t *err) {
    mw_stream_t *s = tcp;
    int r;
    if (scheme_tls(t->url.scheme) &&
        (r = mw_tls_wrap(&s, s, t->tls, t->server ? NULL : t->url.host, err)) < 0)
        return r;
    if (!t->server && t->o.record_path &&
        (r = mw_record_wrap(&s, s, t->o.record_path, t->url.host, err)) < 0)
        return r;
    if (scheme_ws(t->url.scheme)) {
        mw_ws_opts_t wo = t->o.ws;
        if (!t->server) {
            if (!wo.path) wo.path = t->url.path;
            if (!wo.host) wo.host = t->ws_host;
            r = mw_ws_client_wrap(&s, s, &wo, err);
        } else {
            r = mw_ws_server_wrap(&s, s, &wo, err);
        }
        if (r < 0) return r;
    }
    *out = s;
    return 0;
}

void mw_transport_error(const mw_stream_t *s, int code, mw_err_t *err) {
    for (const mw_stream_t *x = s; x; x = x->inner) {
        if (x->err.code) {
            mw_err_set(err, code, "%s", x->err.text);
            return;
        }
    }
    mw_err_set(err, code, "handshake: %s", mw_strerror(code));
}

int mw_transport_handshake(mw_stream_t *s, uint64_t deadline, mw_err_t *err) {
    for (;;) {
        int r = mw_transport_step(s);
        if (r == 1) return 0;
        if (r == MW_EAGAIN && mw_stream_want(s) == 0) continue; /* next layer can start now */
        if (r != MW_EAGAIN) {
            mw_transport_error(s, r, err);
            return r;
        }
        int64_t left = mw_deadline_left(NULL, deadline);
        if (left == 0) return mw_err_set(err, MW_ETIMEDOUT, "handshake timed out");
        int want = mw_stream_want(s);
        r = mw_stream_wait(s, want ? want : MW_WANT_READ, left);
        if (r < 0 && r != MW_ETIMEDOUT) return mw_err_set(err, r, "handshake: wait failed");
    }
}
