/* tcp_impl.h - TCP streams and listeners, and endpoint URLs.
 *
 * Sockets are created nonblocking unless opts.blocking is set. A blocking
 * stream waits inside read/writev (one syscall per call, the lowest-latency
 * blocking path) and honours mw__tcp_set_timeouts through SO_RCVTIMEO /
 * SO_SNDTIMEO: an expired wait returns MW_EAGAIN.
 *
 * Name resolution here is getaddrinfo (it blocks); the IO service resolves
 * asynchronously and then calls mw__tcp_connect_start with an address.
 */
#ifndef MW_TCP_IMPL_H
#define MW_TCP_IMPL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "mw_err.h"
#include "mw_tcp.h"
#include "stream_impl.h"

/* Fills the defaults above. */
void mw__tcp_opts_init(mw_tcp_opts_t *o);

/* mw__tcp_connect resolves host (blocking getaddrinfo), connects with a
 * deadline (negative timeout: the OS's own), tries each address in turn, and
 * returns a connected stream in *out. Returns 0, MW_ERESOLVE,
 * MW_ECONNREFUSED, MW_ETIMEDOUT, MW_ESYS; the text goes to err if not NULL
 * ("connect 127.0.0.1:7001: Connection refused"). Allocates the stream. */
int mw__tcp_connect(mw_stream_t **out, const char *host, const char *port,
                   const mw_tcp_opts_t *o, int64_t timeout_ns, mw_err_t *err);

/* Nonblocking connect to one address: returns 0 when connected at once,
 * MW_EAGAIN when in progress (wait for MW_WANT_WRITE, then call
 * mw__tcp_connect_finish), or an error. On 0 and MW_EAGAIN *out is set. */
int mw__tcp_connect_start(mw_stream_t **out, const struct sockaddr *sa, socklen_t salen,
                         const mw_tcp_opts_t *o, mw_err_t *err);
/* 0 connected, MW_EAGAIN still in progress, or the connect error. */
int mw__tcp_connect_finish(mw_stream_t *s);

/* Socket timeouts for blocking streams (0 or negative: none). */
int mw__tcp_set_timeouts(mw_stream_t *s, int64_t rcv_ns, int64_t snd_ns);
/* Writes never wait, even on a blocking socket (MSG_DONTWAIT per write):
 * for a socket that should block in read only. 0 or MW_EINVAL (no TCP). */
int mw__tcp_set_write_nowait(mw_stream_t *s, bool on);
/* Switches O_NONBLOCK; returns 0 or MW_ESYS. */
int mw__tcp_set_blocking(mw_stream_t *s, bool blocking);
/* "ip:port" of the peer / the local end into buf. Returns 0 or MW_ESYS. */
int mw__tcp_peer_name(const mw_stream_t *s, char *buf, size_t cap);
int mw__tcp_local_name(const mw_stream_t *s, char *buf, size_t cap);
/* True if s is a TCP stream (by ops table). */
bool mw__is_tcp(const mw_stream_t *s);
/* Shuts the write side (FIN) of the TCP stream under s (s may be a
 * decorator stack). Best effort; nothing without a TCP stream. */
void mw__tcp_shutdown(mw_stream_t *s);
/* True once the TCP connection under s was reset (ECONNRESET or
 * ECONNABORTED on a read or write, or EPIPE on a write before our
 * mw__tcp_shutdown): what either side had not read yet may be lost. Reads
 * and writes still return MW_ECLOSED for it, as for any peer that left;
 * only a caller that must tell a reset from an orderly EOF asks (a
 * lingering close). Also takes a reset the socket holds but no call met
 * yet (SO_ERROR, which it clears: call it when the connection is ending).
 * False without a TCP stream. */
bool mw__tcp_was_reset(mw_stream_t *s);

/* ---- Listener ----------------------------------------------------------- */
typedef struct mw__listener mw__listener_t;

/* mw__tcp_listen binds host:port ("0" for an ephemeral port; host NULL or ""
 * for any IPv4 address) and listens. The listener is nonblocking. */
int mw__tcp_listen(mw__listener_t **out, const char *host, const char *port,
                  const mw_tcp_opts_t *o, mw_err_t *err);
/* The bound port (useful after binding port 0). */
int mw__listener_port(const mw__listener_t *l);
int mw__listener_fd(const mw__listener_t *l);
/* Accepts one pending connection as a stream configured with the listener's
 * options (nodelay, blocking, buffers). MW_EAGAIN when none is pending;
 * MW_EFULL when the process or the system is out of file descriptors
 * (EMFILE/ENFILE: the client stays in the backlog, and the listener stays
 * readable, so a caller should stop watching it for a while); other errors
 * with the text in err. */
int mw__listener_accept(mw__listener_t *l, mw_stream_t **out, mw_err_t *err);
void mw__listener_close(mw__listener_t *l);
void mw__listener_free(mw__listener_t *l);

/* ---- URLs --------------------------------------------------------------- */
typedef enum mw__scheme { MW_SCHEME_TCP, MW_SCHEME_TLS, MW_SCHEME_WS, MW_SCHEME_WSS } mw__scheme_t;

typedef struct mw__url {
    mw__scheme_t scheme;
    char host[256]; /* without brackets for IPv6 */
    char port[8];
    char path[512]; /* "/" when absent; WebSocket only */
} mw__url_t;

/* Parses "tcp://host:port", "tls://host:port", "ws://host:port/path",
 * "wss://host:port/path" ([v6]:port accepted). Port is required for tcp and
 * tls; ws/wss default to 80/443. Returns 0 or MW_EINVAL with text in err. */
int mw__url_parse(const char *url, mw__url_t *out, mw_err_t *err);
const char *mw__scheme_name(mw__scheme_t s);

#endif
