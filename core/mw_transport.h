/* mw_transport.h - turns a URL scheme into a stack of streams:
 *
 *   tcp://   TCP
 *   tls://   TLS over TCP
 *   ws://    WebSocket over TCP
 *   wss://   WebSocket over TLS over TCP
 *
 * with an optional recorder (mw_record.h) between the byte layer (TCP/TLS)
 * and WebSocket, so a recording replays through the WebSocket code.
 * Used by mw_clt (client side) and mw_svc (server side); the same program
 * talks any scheme by changing only the URL.
 */
#ifndef MW_TRANSPORT_H
#define MW_TRANSPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "mw_err.h"
#include "mw_stream.h"
#include "mw_tcp.h"
#include "mw_tls.h"
#include "mw_ws.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The strings these options point to are used again at every connect or
 * accept (not copied): keep them alive as long as the Clt or Svc. A
 * record_path containing "%u" gets the connect number (1, 2, ...) there,
 * so each connection of an endpoint records to a file of its own. */
typedef struct mw_transport_opts {
    mw_tls_opts_t tls;       /* tls:// and wss:// */
    mw_ws_opts_t ws;         /* ws:// and wss:// (path/host default from the URL) */
    const char *record_path; /* client: record every byte read to this file */
} mw_transport_opts_t;

void mw_transport_opts_init(mw_transport_opts_t *o);

/* Per-endpoint state built once: the TLS context (NULL for tcp/ws). */
typedef struct mw_transport {
    mw_url_t url;
    bool server;
    mw_tls_ctx_t *tls;
    mw_transport_opts_t o;
    char ws_host[300]; /* Host header: "host:port" */
} mw_transport_t;

/* Parses nothing itself: takes a parsed URL. Builds the TLS context when the
 * scheme needs one. Returns 0, MW_EINVAL (bad TLS files: text in err). */
int mw_transport_init(mw_transport_t *t, const mw_url_t *url, bool server,
                      const mw_transport_opts_t *o, mw_err_t *err);
void mw_transport_fini(mw_transport_t *t);

/* Wraps a connected (client) or accepted (server) TCP stream per the scheme.
 * Ownership of tcp passes (also on failure). The handshakes are not driven
 * here: call mw_transport_handshake (or let reads drive them). */
int mw_transport_wrap(mw_transport_t *t, mw_stream_t *tcp, mw_stream_t **out, mw_err_t *err);

/* Drives the handshakes of s to completion, waiting on want() with poll(),
 * until the deadline (absolute, mw_now_ns clock). 0, MW_ETIMEDOUT or the
 * handshake's error (text copied to err). For blocking set-up paths. */
int mw_transport_handshake(mw_stream_t *s, uint64_t deadline, mw_err_t *err);

/* The first error text found down the stack (e.g. TLS's under WebSocket's),
 * into err with code. */
void mw_transport_error(const mw_stream_t *s, int code, mw_err_t *err);

/* Before closing a connection on purpose: over WebSocket, sends the close
 * frame whose code matches the reason (1007 for input that could not be
 * decoded, 1009 too big, 1001 timeouts or going_away (shutdown), 1000 a
 * plain close, 1011 our own failure) with `why` as its reason text (cut to
 * 120 bytes at a UTF-8 boundary), best effort. Nothing for other transports,
 * for MW_ECLOSED (the peer closed), or if a close was already exchanged. */
void mw_transport_close(mw_stream_t *s, int reason, const char *why, bool going_away);

/* Nonblocking step: 1 done, MW_EAGAIN (wait for mw_stream_want), or error. */
static inline int mw_transport_step(mw_stream_t *s) {
    return mw_stream_ctl(s, MW_STREAM_CTL_HANDSHAKE, 0);
}

#ifdef __cplusplus
}
#endif

#endif
