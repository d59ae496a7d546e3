/* mw_tcp.h - TCP socket options (mw_clt_opts.tcp, mw_svc_opts.tcp). The
 * streams and listeners themselves are msgwire's own (tcp_impl.h).
 */
#ifndef MW_TCP_H
#define MW_TCP_H

#include <stdbool.h>

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

#ifdef __cplusplus
}
#endif

#endif
