/* transport.c - URL scheme -> stream stack (TCP, TLS, WebSocket, recorder). */
#include "mw_transport.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

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

/* One table (mw_transport.h, README "WebSocket close codes"). MW_ETOOBIG
 * is 1009 only for a message over the size limit: a string too long for its
 * field is bad data inside a valid message (1007), like any decode error. */
uint16_t mw_transport_ws_close_code(int reason, mw_close_where_t where, bool going_away) {
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

void mw_transport_close(mw_stream_t *s, int reason, const char *why, bool going_away) {
    mw_transport_close_at(s, reason, MW_CLOSE_STREAM, why, going_away);
}

void mw_transport_close_at(mw_stream_t *s, int reason, mw_close_where_t where, const char *why, bool going_away) {
    if (!s || reason == MW_ECLOSED || mw_ws_sent_close_code(s) != 0 || mw_ws_peer_close_code(s) != 0) return;
    uint16_t code = mw_transport_ws_close_code(reason, where, going_away);
    char text[121]; /* a close reason holds 123 bytes */
    size_t n = why ? strlen(why) : 0;
    if (n >= sizeof text) n = sizeof text - 1;
    mw_utf8_state_t u;
    for (;; n--) { /* cut at a character boundary */
        mw_utf8_init(&u);
        if (!n || (mw_utf8_feed(&u, (const uint8_t *)why, n) && mw_utf8_complete(&u))) break;
    }
    memcpy(text, why ? why : "", n);
    text[n] = '\0';
    /* (mw_ws_close pushes the frame out itself, under the stream's lock. No
     * second writev here: once the stack shares its owner's lock, tx calls
     * need that lock held, and this helper is called without it.) */
    (void)mw_ws_close(s, code, text);
}

void mw_transport_shutdown(mw_stream_t *s) {
    for (mw_stream_t *x = s; x; x = x->inner) /* the transport knows its own stack */
        if (mw_is_tls(x)) {
            mw_tls_shutdown(x);
            break;
        }
    int fd = s ? mw_stream_fd(s) : -1;
    if (fd >= 0) (void)shutdown(fd, SHUT_WR);
}
