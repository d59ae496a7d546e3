/* transport_impl.h - turns a URL scheme into a stack of streams:
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
#ifndef MW_TRANSPORT_IMPL_H
#define MW_TRANSPORT_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "mw_err.h"
#include "mw_transport.h"
#include "stream_impl.h"
#include "tcp_impl.h"
#include "tls_impl.h"
#include "ws_impl.h"

void mw__transport_opts_init(mw_transport_opts_t *o);

/* Per-endpoint state built once: the TLS context (NULL for tcp/ws). */
typedef struct mw__transport {
    mw__url_t url;
    bool server;
    mw__tls_ctx_t *tls;
    mw_transport_opts_t o;
    char ws_host[300]; /* Host header: "host:port" */
} mw__transport_t;

/* Parses nothing itself: takes a parsed URL. Builds the TLS context when the
 * scheme needs one. Returns 0, MW_EINVAL (bad TLS files: text in err). */
int mw__transport_init(mw__transport_t *t, const mw__url_t *url, bool server,
                      const mw_transport_opts_t *o, mw_err_t *err);
void mw__transport_fini(mw__transport_t *t);

/* Wraps a connected (client) or accepted (server) TCP stream per the scheme.
 * Ownership of tcp passes (also on failure). The handshakes are not driven
 * here: call mw__transport_handshake (or let reads drive them). */
int mw__transport_wrap(mw__transport_t *t, mw_stream_t *tcp, mw_stream_t **out, mw_err_t *err);

/* Drives the handshakes of s to completion, waiting on want() with poll(),
 * until the deadline (absolute, mw_now_ns clock). 0, MW_ETIMEDOUT or the
 * handshake's error (text copied to err). For blocking set-up paths. */
int mw__transport_handshake(mw_stream_t *s, uint64_t deadline, mw_err_t *err);

/* The first error text found down the stack (e.g. TLS's under WebSocket's),
 * into err with code. */
void mw__transport_error(const mw_stream_t *s, int code, mw_err_t *err);

/* Where the reason for closing arose: it decides the WebSocket close code
 * when one MW_E* code can mean either (MW_ETOOBIG is a message over max_msg
 * in the stream, but a string too long for its field inside a message). */
typedef enum mw__close_where {
    MW_CLOSE_STREAM = 0,    /* the connection, its framing, or our side */
    MW_CLOSE_MESSAGE = 1,   /* a complete, well-formed message whose content did not decode */
    MW_CLOSE_WRONG_TYPE = 2 /* a binary message where the serdes reads text */
} mw__close_where_t;

/* The WebSocket close code (RFC 6455 7.4.1) for closing on purpose with
 * reason (0 or an MW_E* code), the one table behind every close msgwire
 * starts (the README lists it):
 *   going_away (the service shuts down) or MW_ETIMEDOUT         1001
 *   0 or MW_ESTATE (closed by the application)                  1000
 *   where MW_CLOSE_WRONG_TYPE                                    1003
 *   where MW_CLOSE_MESSAGE: any error (unknown tag, a value of
 *     the wrong type or out of range, a string too long for its
 *     field, malformed text, ...)                                1007
 *   MW_ETOOBIG (a message over max_msg)                          1009
 *   MW_EPROTO, MW_ETRUNC, MW_ETAG, MW_EFIELD, MW_EMISSING,
 *     MW_ETYPE, MW_ERANGE, MW_ETRAILING, MW_EUTF8                1007
 *   anything else (our own failure: MW_ENOMEM, MW_ESYS, ...)    1011
 * Pure function, any thread. Protocol violations found by the WebSocket
 * stream itself close with its own codes (mw_ws.h: 1002, 1007, 1009). */
uint16_t mw__transport_ws_close_code(int reason, mw__close_where_t where, bool going_away);

/* Before closing a connection on purpose: over WebSocket, sends the close
 * frame mw__transport_ws_close_code gives for reason and where, with `why`
 * as its reason text (cut to 120 bytes at a UTF-8 boundary), best effort.
 * Nothing for other transports, for MW_ECLOSED (the peer closed), or if a
 * close was already exchanged. mw__transport_close is where = MW_CLOSE_STREAM;
 * a message connection knows better: mw__conn_close_transport (mw_conn.h). */
void mw__transport_close_at(mw_stream_t *s, int reason, mw__close_where_t where, const char *why, bool going_away);
void mw__transport_close(mw_stream_t *s, int reason, const char *why, bool going_away);

/* Graceful end of the write side: TLS close_notify (if TLS is in the stack),
 * then FIN (shutdown of the socket's write side). Reads still work, so the
 * caller can drain the peer's input until its EOF. Best effort. */
void mw__transport_shutdown(mw_stream_t *s);
/* True once the peer reset the connection under s (TLS and WebSocket read
 * it through their inner stream; see mw__tcp_was_reset): what it had not
 * read may be lost. Its reads and writes report MW_ECLOSED as for an
 * orderly close; a lingering close asks this before it calls the end
 * clean. Clears the socket's pending error: for a connection that is
 * ending. */
bool mw__transport_peer_reset(mw_stream_t *s);
/* Nonblocking step: 1 done, MW_EAGAIN (wait for mw__stream_want), or error. */
static inline int mw__transport_step(mw_stream_t *s) {
    return mw__stream_handshake(s);
}

#endif
