/* transport.c - URL scheme -> stream stack (TCP, TLS, WebSocket, recorder). */
#include "mw_transport.h"

#include <stdio.h>
#include <string.h>

#include "mw_clock.h"
#include "mw_record.h"
#include "clock_impl.h"
#include "err_impl.h"
#include "record_impl.h"
#include "stream_impl.h"
#include "tcp_impl.h"
#include "tls_impl.h"
#include "transport_impl.h"
#include "ws_impl.h"

void mw__transport_opts_init(mw_transport_opts_t *o) {
    memset(o, 0, sizeof *o);
    mw__tls_opts_init(&o->tls);
    mw_ws_opts_init(&o->ws);
}

static bool scheme_tls(mw__scheme_t s) { return s == MW_SCHEME_TLS || s == MW_SCHEME_WSS; }
static bool scheme_ws(mw__scheme_t s) { return s == MW_SCHEME_WS || s == MW_SCHEME_WSS; }

int mw__transport_init(mw__transport_t *t, const mw__url_t *url, bool server,
                      const mw_transport_opts_t *o, mw_err_t *err) {
    memset(t, 0, sizeof *t);
    t->url = *url;
    t->server = server;
    if (o) t->o = *o;
    else mw__transport_opts_init(&t->o);
    bool v6 = strchr(url->host, ':') != NULL;
    snprintf(t->ws_host, sizeof t->ws_host, v6 ? "[%s]:%s" : "%s:%s", url->host, url->port);
    if (!scheme_tls(url->scheme)) return 0;
    return mw__tls_ctx_new(&t->tls, server, &t->o.tls, err);
}

void mw__transport_fini(mw__transport_t *t) {
    mw__tls_ctx_free(t->tls);
    t->tls = NULL;
}

int mw__transport_wrap(mw__transport_t *t, mw_stream_t *tcp, mw_stream_t **out, mw_err_t *err) {
    mw_stream_t *s = tcp;
    int r;
    if (scheme_tls(t->url.scheme) &&
        (r = mw__tls_wrap(&s, s, t->tls, t->server ? NULL : t->url.host, err)) < 0)
        return r;
    if (!t->server && t->o.record_path &&
        (r = mw__record_wrap(&s, s, t->o.record_path, t->url.host, err)) < 0)
        return r;
    if (scheme_ws(t->url.scheme)) {
        mw_ws_opts_t wo = t->o.ws;
        if (!t->server) {
            if (!wo.path) wo.path = t->url.path;
            if (!wo.host) wo.host = t->ws_host;
            r = mw_ws_client_wrap(&s, s, &wo, err);
        } else {
            r = mw__ws_server_wrap(&s, s, &wo, err);
        }
        if (r < 0) return r;
    }
    *out = s;
    return 0;
}

void mw__transport_error(const mw_stream_t *s, int code, mw_err_t *err) {
    for (const mw_stream_t *x = s; x; x = x->inner) {
        if (x->err.code) {
            mw__err_set(err, code, "%s", x->err.text);
            return;
        }
    }
    mw__err_set(err, code, "handshake: %s", mw_strerror(code));
}

int mw__transport_handshake(mw_stream_t *s, uint64_t deadline, mw_err_t *err) {
    for (;;) {
        int r = mw__transport_step(s);
        if (r == 1) return 0;
        if (r == MW_EAGAIN && mw__stream_want(s) == 0) continue; /* next layer can start now */
        if (r != MW_EAGAIN) {
            mw__transport_error(s, r, err);
            return r;
        }
        int64_t left = mw__deadline_left(NULL, deadline);
        if (left == 0) return mw__err_set(err, MW_ETIMEDOUT, "handshake timed out");
        int want = mw__stream_want(s);
        r = mw__stream_wait(s, want ? want : MW_WANT_READ, left);
        if (r < 0 && r != MW_ETIMEDOUT) return mw__err_set(err, r, "handshake: wait failed");
    }
}

/* One table (transport_impl.h, README "WebSocket close codes"). MW_ETOOBIG
 * is 1009 only for a message over the size limit: a string too long for its
 * field is bad data inside a valid message (1007), like any decode error. */
uint16_t mw__transport_ws_close_code(int reason, mw__close_where_t where, bool going_away) {
    if (going_away || reason == MW_ETIMEDOUT) return MW_WS_CLOSE_GOING_AWAY;
    if (reason == 0 || reason == MW_ESTATE) return MW_WS_CLOSE_NORMAL;
    if (where == MW_CLOSE_WRONG_TYPE) return MW_WS_CLOSE_UNSUPPORTED;
    if (where == MW_CLOSE_MESSAGE) return MW_WS_CLOSE_BAD_DATA;
    switch (reason) {
    case MW_ETOOBIG: return MW_WS_CLOSE_TOO_BIG;
    case MW_EPROTO: case MW_ETRUNC: case MW_ETAG: case MW_EFIELD: case MW_EMISSING:
    case MW_ETYPE: case MW_ERANGE: case MW_ETRAILING: case MW_EUTF8:
        return MW_WS_CLOSE_BAD_DATA;
    default: return MW_WS_CLOSE_INTERNAL;
    }
}

void mw__transport_close(mw_stream_t *s, int reason, const char *why, bool going_away) {
    mw__transport_close_at(s, reason, MW_CLOSE_STREAM, why, going_away);
}

void mw__transport_close_at(mw_stream_t *s, int reason, mw__close_where_t where, const char *why, bool going_away) {
    if (!s || reason == MW_ECLOSED || mw__ws_sent_close_code(s) != 0 || mw__ws_peer_close_code(s) != 0) return;
    uint16_t code = mw__transport_ws_close_code(reason, where, going_away);
    char text[121]; /* a close reason holds 123 bytes */
    size_t n = why ? strlen(why) : 0;
    if (n >= sizeof text) n = sizeof text - 1;
    mw__utf8_state_t u;
    for (;; n--) { /* cut at a character boundary */
        mw__utf8_init(&u);
        if (!n || (mw__utf8_feed(&u, (const uint8_t *)why, n) && mw__utf8_complete(&u))) break;
    }
    memcpy(text, why ? why : "", n);
    text[n] = '\0';
    /* (mw__ws_close pushes the frame out itself, under the stream's lock. No
     * second writev here: once the stack shares its owner's lock, tx calls
     * need that lock held, and this helper is called without it.) */
    (void)mw__ws_close(s, code, text);
}

void mw__transport_shutdown(mw_stream_t *s) {
    for (mw_stream_t *x = s; x; x = x->inner) /* the transport knows its own stack */
        if (mw__is_tls(x)) {
            mw__tls_shutdown(x);
            break;
        }
    mw__tcp_shutdown(s); /* (through the stream: an EPIPE after it is no reset) */
}

bool mw__transport_peer_reset(mw_stream_t *s) { return s && mw__tcp_was_reset(s); }
