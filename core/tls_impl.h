/* tls_impl.h - TLS (OpenSSL) as a stream decorator over a TCP stream.
 *
 * A context holds the certificates and the policy; a TLS stream wraps one
 * connected TCP stream (taking ownership) and speaks TLS over its socket.
 * The handshake is nonblocking: mw__tls_handshake returns MW_EAGAIN until it
 * is done, and want() says whether the socket must become readable or
 * writable first. read/writev also drive an unfinished handshake, so a
 * server can simply start reading. After the handshake want() keeps telling
 * the truth (a TLS read may need the socket writable, e.g. renegotiation or
 * a key update), which is why every owner waits on want() after MW_EAGAIN.
 *
 * Clients verify the server's certificate chain and host name by default
 * (the system CA store, or opts.ca_file). Skipping verification needs the
 * loudly named opts.insecure_skip_verify, meant for tests.
 *
 * Errors carry a sentence naming the cause: "tls handshake with
 * 127.0.0.1:4433: certificate verify failed: self-signed certificate",
 * "... hostname mismatch", "... certificate has expired", "... wrong version
 * number (is the peer speaking TLS?)".
 *
 * Thread rules: one reader and one writer thread may use a TLS stream at the
 * same time (a lock serialises them inside, as OpenSSL needs); a context may
 * be shared by many streams and threads once built. After MW_EAGAIN or a
 * short write, the next writev must start with the unsent bytes (a transmit
 * buffer that keeps them does). OpenSSL allocates a little per record
 * internally, so TLS connections are not allocation-free (msgwire's own code
 * is). mw__tls_handshake returns MW_EINVAL for a stream that is not TLS;
 * mw__stream_handshake drives the TCP connect and then the TLS handshake.
 * mw__stream_pending counts decrypted bytes not yet read and records OpenSSL
 * has read ahead (read again before waiting on the socket).
 */
#ifndef MW_TLS_IMPL_H
#define MW_TLS_IMPL_H

#include <stdbool.h>

#include "mw_err.h"
#include "mw_tls.h"
#include "stream_impl.h"

typedef struct mw__tls_ctx mw__tls_ctx_t;

void mw__tls_opts_init(mw_tls_opts_t *o);

/* Builds a client or server context. Returns 0, MW_EINVAL (missing or
 * unreadable files, key not matching the certificate: text in err) or
 * MW_ETLS. Allocates. */
int mw__tls_ctx_new(mw__tls_ctx_t **out, bool server, const mw_tls_opts_t *o, mw_err_t *err);
void mw__tls_ctx_free(mw__tls_ctx_t *ctx);

/* Wraps a connected TCP stream (ownership passes to the TLS stream, also on
 * failure). host: the name for SNI and verification (clients; ignored by
 * servers; opts.server_name wins). The handshake starts on first use. */
int mw__tls_wrap(mw_stream_t **out, mw_stream_t *tcp, mw__tls_ctx_t *ctx, const char *host, mw_err_t *err);

/* Advances the handshake: 0 done, MW_EAGAIN (wait for mw__stream_want),
 * MW_ETLS or MW_ECLOSED with text in the stream's err. */
int mw__tls_handshake(mw_stream_t *s);

/* Sends close_notify (best effort, nonblocking). The stream stays to be freed. */
void mw__tls_shutdown(mw_stream_t *s);

bool mw__is_tls(const mw_stream_t *s);


#endif
