/* mw_tcp.h - TCP streams and listeners, and endpoint URLs.
 *
 * Sockets are created nonblocking unless opts.blocking is set. A blocking
 * stream waits inside read/writev (one syscall per call, the lowest-latency
 * blocking path) and honours mw_tcp_set_timeouts through SO_RCVTIMEO /
 * SO_SNDTIMEO: an expired wait returns MW_EAGAIN.
 *
 * Name resolution here is getaddrinfo (it blocks); the IO service resolves
 * asynchronously and then calls mw_tcp_connect_start with an address.
 */
#ifndef MW_TCP_H
#define MW_TCP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "mw_err.h"
#include "mw_stream.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mw_tcp_opts {
    bool nodelay;           /* TCP_NODELAY; default true */
    bool blocking;          /* blocking socket; default false */
    bool reuseaddr;         /* listeners: SO_REUSEADDR; default true */
    int backlog;            /* listeners: accept queue length; default (and when <= 0)
                               MW_TCP_BACKLOG_DEFAULT, see below */
    const char *bind_addr;  /* connect: local address "ip" or "ip:port"; NULL: any */
    const char *bind_iface; /* SO_BINDTODEVICE interface name ("lo"); NULL: none */
    int busy_poll_us;       /* SO_BUSY_POLL when > 0; refusal is recorded, not fatal */
    int rcvbuf, sndbuf;     /* SO_RCVBUF / SO_SNDBUF when > 0 */
} mw_tcp_opts_t;

/* The default listen backlog: the length of the queue of connections the
 * kernel has completed but the server has not accepted yet. A burst of
 * clients connecting at once (thousands after a restart) overflows a short
 * queue: the kernel then drops their handshakes (counted in ListenOverflows,
 * `nstat -az TcpExtListenOverflows`) and each client waits for a SYN
 * retransmit, 1 s, then 2 s, 4 s, ... A large default, as nginx (511) and
 * Redis (511) use, costs nothing while the queue is short. Linux silently
 * caps the value at net.core.somaxconn (4096 since Linux 5.4, 128 before; see
 * /proc/sys/net/core/somaxconn), and half-open connections are bounded
 * separately by net.ipv4.tcp_max_syn_backlog. */
#define MW_TCP_BACKLOG_DEFAULT 4096

/* Fills the defaults above. */
void mw_tcp_opts_init(mw_tcp_opts_t *o);

/* mw_tcp_connect resolves host (blocking getaddrinfo), connects with a
 * deadline (negative timeout: the OS's own), tries each address in turn, and
 * returns a connected stream in *out. Returns 0, MW_ERESOLVE,
 * MW_ECONNREFUSED, MW_ETIMEDOUT, MW_ESYS; the text goes to err if not NULL
 * ("connect 127.0.0.1:7001: Connection refused"). Allocates the stream. */
int mw_tcp_connect(mw_stream_t **out, const char *host, const char *port,
                   const mw_tcp_opts_t *o, int64_t timeout_ns, mw_err_t *err);

/* Nonblocking connect to one address: returns 0 when connected at once,
 * MW_EAGAIN when in progress (wait for MW_WANT_WRITE, then call
 * mw_tcp_connect_finish), or an error. On 0 and MW_EAGAIN *out is set. */
int mw_tcp_connect_start(mw_stream_t **out, const struct sockaddr *sa, socklen_t salen,
                         const mw_tcp_opts_t *o, mw_err_t *err);
/* 0 connected, MW_EAGAIN still in progress, or the connect error. */
int mw_tcp_connect_finish(mw_stream_t *s);

/* Socket timeouts for blocking streams (0 or negative: none). */
int mw_tcp_set_timeouts(mw_stream_t *s, int64_t rcv_ns, int64_t snd_ns);
/* Writes never wait, even on a blocking socket (MSG_DONTWAIT per write):
 * for a socket that should block in read only. 0 or MW_EINVAL (no TCP). */
int mw_tcp_set_write_nowait(mw_stream_t *s, bool on);
/* Switches O_NONBLOCK; returns 0 or MW_ESYS. */
int mw_tcp_set_blocking(mw_stream_t *s, bool blocking);
/* "ip:port" of the peer / the local end into buf. Returns 0 or MW_ESYS. */
int mw_tcp_peer_name(const mw_stream_t *s, char *buf, size_t cap);
int mw_tcp_local_name(const mw_stream_t *s, char *buf, size_t cap);
/* True if s is a TCP stream (by ops table). */
bool mw_is_tcp(const mw_stream_t *s);

/* ---- Listener ----------------------------------------------------------- */
typedef struct mw_listener mw_listener_t;

/* mw_tcp_listen binds host:port ("0" for an ephemeral port; host NULL or ""
 * for any IPv4 address) and listens. The listener is nonblocking. */
int mw_tcp_listen(mw_listener_t **out, const char *host, const char *port,
                  const mw_tcp_opts_t *o, mw_err_t *err);
/* The bound port (useful after binding port 0). */
int mw_listener_port(const mw_listener_t *l);
int mw_listener_fd(const mw_listener_t *l);
/* Accepts one pending connection as a stream configured with the listener's
 * options (nodelay, blocking, buffers). MW_EAGAIN when none is pending;
 * MW_EFULL when the process or the system is out of file descriptors
 * (EMFILE/ENFILE: the client stays in the backlog, and the listener stays
 * readable, so a caller should stop watching it for a while); other errors
 * with the text in err. */
int mw_listener_accept(mw_listener_t *l, mw_stream_t **out, mw_err_t *err);
void mw_listener_close(mw_listener_t *l);
void mw_listener_free(mw_listener_t *l);

/* ---- URLs --------------------------------------------------------------- */
typedef enum mw_scheme { MW_SCHEME_TCP, MW_SCHEME_TLS, MW_SCHEME_WS, MW_SCHEME_WSS } mw_scheme_t;

typedef struct mw_url {
    mw_scheme_t scheme;
    char host[256]; /* without brackets for IPv6 */
    char port[8];
    char path[512]; /* "/" when absent; WebSocket only */
} mw_url_t;

/* Parses "tcp://host:port", "tls://host:port", "ws://host:port/path",
 * "wss://host:port/path" ([v6]:port accepted). Port is required for tcp and
 * tls; ws/wss default to 80/443. Returns 0 or MW_EINVAL with text in err. */
int mw_url_parse(const char *url, mw_url_t *out, mw_err_t *err);
const char *mw_scheme_name(mw_scheme_t s);

#ifdef __cplusplus
}
#endif

#endif
