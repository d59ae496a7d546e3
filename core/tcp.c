/* tcp.c - TCP streams and listeners.
 *
 * Sockets are always created nonblocking and close-on-exec; a stream asked
 * to be blocking is switched once it is connected, so connect can honour a
 * deadline either way.
 */
#include "mw_tcp.h"

#include "mw_clock.h"
#include "clock_impl.h"
#include "err_impl.h"
#include "stream_impl.h"
#include "tcp_impl.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NAME_MAX_LEN 80 /* "[v6%scope]:port" */

enum { CONNECTED = 0, CONNECTING = 1 }; /* or a negative MW_E* once failed */

typedef struct tcp {
    mw_stream_t base;
    int fd;
    int cstate;         /* CONNECTED, CONNECTING, or the connect error */
    bool block_when_up; /* opts.blocking, applied when the connect completes */
    int wflags;         /* extra sendmsg flags: MSG_DONTWAIT for never-blocking writes */
    /* The connection was reset (see note_reset) / our write side was shut
     * (mw__tcp_shutdown). Set and read with __atomic builtins: a split
     * sender's write may fail while the receiver's read fails. */
    bool reset, shut_wr;
    char peer[NAME_MAX_LEN]; /* for error text: the address is gone after a reset */
} tcp_t;

struct mw__listener {
    int fd;
    int port;
    mw_tcp_opts_t o; /* applied to accepted sockets; string fields cleared */
};

void mw__tcp_opts_init(mw_tcp_opts_t *o) {
    *o = (mw_tcp_opts_t){.nodelay = true, .reuseaddr = true, .backlog = MW_TCP_BACKLOG_DEFAULT};
}

/* ---- helpers ------------------------------------------------------------ */

/* "ip:port", or "[ip]:port" for IPv6. Returns 0 or MW_ETOOBIG/MW_ESYS. */
static int fmt_addr(const struct sockaddr *sa, socklen_t len, char *buf, size_t cap) {
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    if (getnameinfo(sa, len, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(buf, cap, "?");
        return MW_ESYS;
    }
    bool v6 = sa->sa_family == AF_INET6;
    int n = snprintf(buf, cap, "%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "", serv);
    return n < 0 ? MW_ESYS : (size_t)n >= cap ? MW_ETOOBIG : 0;
}

static int set_int(int fd, int level, int name, int v) {
    return setsockopt(fd, level, name, &v, sizeof v);
}

static int set_nonblock(int fd, bool on) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return -1;
    int nfl = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
    return nfl == fl ? 0 : fcntl(fd, F_SETFL, nfl);
}

static int resolve_fail(mw_err_t *err, const char *host, const char *port, int gai) {
    if (gai == EAI_SYSTEM) return mw__err_set_errno(err, errno, "resolve %s:%s", host, port);
    return mw__err_set(err, MW_ERESOLVE, "resolve %s:%s: %s", host, port, gai_strerror(gai));
}

/* Socket options from o. Buffers and the interface apply to every socket;
 * `conn` adds the per-connection ones. A refused SO_BUSY_POLL is recorded in
 * soft (if not NULL) and is not a failure. */
static int set_opts(int fd, const mw_tcp_opts_t *o, bool conn, mw_err_t *err, mw_err_t *soft) {
    if (o->rcvbuf > 0 && set_int(fd, SOL_SOCKET, SO_RCVBUF, o->rcvbuf) < 0)
        return mw__err_set_errno(err, errno, "setsockopt SO_RCVBUF %d", o->rcvbuf);
    if (o->sndbuf > 0 && set_int(fd, SOL_SOCKET, SO_SNDBUF, o->sndbuf) < 0)
        return mw__err_set_errno(err, errno, "setsockopt SO_SNDBUF %d", o->sndbuf);
    if (o->bind_iface && o->bind_iface[0] &&
        setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, o->bind_iface,
                   (socklen_t)strlen(o->bind_iface) + 1) < 0)
        return mw__err_set_errno(err, errno, "bind to device %s", o->bind_iface);
    if (!conn) return 0;
    if (o->nodelay && set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1) < 0)
        return mw__err_set_errno(err, errno, "setsockopt TCP_NODELAY");
    if (o->busy_poll_us > 0 && set_int(fd, SOL_SOCKET, SO_BUSY_POLL, o->busy_poll_us) < 0)
        mw__err_set_errno(soft, errno, "setsockopt SO_BUSY_POLL %d", o->busy_poll_us);
    return 0;
}

/* Splits "ip", "ip:port", "[v6]", "[v6]:port" or a bare "v6" into host and
 * port (NULL when absent). Returns 0 or -1 when malformed. */
static int split_hostport(const char *spec, char *host, size_t cap, const char **port) {
    const char *h = spec, *end, *colon;
    *port = NULL;
    if (spec[0] == '[') {
        h = spec + 1;
        end = strchr(h, ']');
        if (!end || (end[1] && end[1] != ':')) return -1;
        if (end[1]) *port = end + 2;
    } else if ((colon = strchr(spec, ':')) && !strchr(colon + 1, ':')) {
        end = colon;
        *port = colon + 1;
    } else {
        end = spec + strlen(spec);
    }
    if ((size_t)(end - h) >= cap || end == h) return -1;
    memcpy(host, h, (size_t)(end - h));
    host[end - h] = '\0';
    return 0;
}

static int bind_local(int fd, int family, const char *spec, mw_err_t *err) {
    char host[NI_MAXHOST];
    const char *port;
    if (split_hostport(spec, host, sizeof host, &port) < 0 || (port && !port[0]))
        return mw__err_set(err, MW_EINVAL, "bind address \"%s\": malformed", spec);
    struct addrinfo hints = {.ai_family = family, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *ai;
    int g = getaddrinfo(host, port ? port : "0", &hints, &ai);
    if (g != 0)
        return mw__err_set(err, MW_EINVAL, "bind address \"%s\": %s", spec, gai_strerror(g));
#ifdef IP_BIND_ADDRESS_NO_PORT
    /* Without a fixed port, let connect pick it: saves the ephemeral range. */
    if (!port || strcmp(port, "0") == 0) (void)set_int(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1);
#endif
    int r = bind(fd, ai->ai_addr, ai->ai_addrlen);
    int e = errno;
    freeaddrinfo(ai);
    return r == 0 ? 0 : mw__err_set_errno(err, e, "bind %s", spec);
}

/* ---- stream ops ------------------------------------------------------------ */

static const mw__stream_ops_t tcp_ops;

/* A reset keeps the code every reader expects for a vanished peer
 * (MW_ECLOSED, mw__err_from_errno) and its text ("Connection reset by
 * peer"), and is remembered here for the one caller that must tell it from
 * an orderly EOF: a lingering close, which promises that the peer closed
 * after reading everything (mw__tcp_was_reset). It is a fact of the
 * connection, not of one call: the first call after the RST, read or
 * write, gets ECONNRESET and later ones see EOF or EPIPE, so a reset met by
 * a write whose failure nobody reports (a TLS close_notify, a WebSocket
 * close frame) would otherwise look like an orderly end to the next read.
 * EPIPE: writes after the connection died (or after a RST answered data
 * sent to a peer that had closed), unless we shut the write side. */
static void note_reset(tcp_t *t, int e) {
    if (e == ECONNRESET || e == ECONNABORTED || (e == EPIPE && !__atomic_load_n(&t->shut_wr, __ATOMIC_RELAXED)))
        __atomic_store_n(&t->reset, true, __ATOMIC_RELAXED);
}

static int io_fail(tcp_t *t, const char *op, int e) {
    if (t->fd < 0) return mw__err_set(&t->base.err, MW_ECLOSED, "%s %s: stream closed", op, t->peer);
    note_reset(t, e);
    return mw__err_set_errno(&t->base.err, e, "%s %s", op, t->peer);
}

static ssize_t tcp_read(mw_stream_t *s, void *dst, size_t cap) {
    tcp_t *t = (tcp_t *)s;
    assert(cap > 0); /* recv would return 0, which means end of stream */
    for (;;) {
        ssize_t n = recv(t->fd, dst, cap, 0);
        if (n > 0) return n;
        if (n == 0) return mw__err_set(&s->err, MW_ECLOSED, "read %s: closed by peer", t->peer);
        if (errno == EAGAIN || errno == EWOULDBLOCK) return MW_EAGAIN;
        if (errno != EINTR) return io_fail(t, "read", errno);
    }
}

/* Every write but a single buffer's that succeeds at once: the retry after
 * EINTR, the errors, several iovecs. err: the errno of a send() that failed,
 * or 0 when nothing was tried yet. Out of line, so the common write is a
 * call to send() and a return. */
static __attribute__((noinline)) ssize_t write_more(tcp_t *t, const struct iovec *iov, int iovcnt, int err) {
    for (;;) {
        if (err == EAGAIN || err == EWOULDBLOCK) return MW_EAGAIN;
        if (err && err != EINTR) return io_fail(t, "write", err);
        ssize_t n;
        if (iovcnt == 1) {
            n = send(t->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL | t->wflags);
        } else {
            struct msghdr m = {.msg_iov = (struct iovec *)iov,
                               .msg_iovlen = (size_t)(iovcnt < IOV_MAX ? iovcnt : IOV_MAX)};
            n = sendmsg(t->fd, &m, MSG_NOSIGNAL | t->wflags);
        }
        if (n >= 0) return n;
        err = errno;
    }
}

/* One buffer (the common case: a message, or a batch encoded back to back)
 * goes out with send(): the kernel copies no msghdr and no iovec array for
 * it, which measured ~250 ns less CPU per call than sendmsg() with one
 * iovec on this machine's kernel (two calls per round trip). */
static ssize_t tcp_writev(mw_stream_t *s, const struct iovec *iov, int iovcnt) {
    tcp_t *t = (tcp_t *)s;
    if (iovcnt != 1) return write_more(t, iov, iovcnt, 0);
    ssize_t n = send(t->fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL | t->wflags);
    return n >= 0 ? n : write_more(t, iov, iovcnt, errno);
}

static int tcp_want(const mw_stream_t *s) {
    return ((const tcp_t *)s)->cstate == CONNECTING ? MW_WANT_WRITE : 0;
}

static int tcp_fd(const mw_stream_t *s) { return ((const tcp_t *)s)->fd; }

static void tcp_close(mw_stream_t *s) {
    tcp_t *t = (tcp_t *)s;
    if (t->fd >= 0) close(t->fd);
    t->fd = -1;
}

static void tcp_free(mw_stream_t *s) {
    tcp_close(s);
    free(s);
}

/* A connect in progress is TCP's handshake: decorators stacked on a stream
 * from mw__tcp_connect_start complete it first through their handshake op. */
static int tcp_handshake(mw_stream_t *s) {
    int r = mw__tcp_connect_finish(s);
    return r == 0 ? 1 : r;
}

static const mw__stream_ops_t tcp_ops = {
    .name = "tcp",
    .read = tcp_read,
    .writev = tcp_writev,
    .want = tcp_want,
    .fd = tcp_fd,
    .close = tcp_close,
    .free = tcp_free,
    .handshake = tcp_handshake,
};

static tcp_t *tcp_new(int fd, const char *peer) {
    tcp_t *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->base.ops = &tcp_ops;
    t->fd = fd;
    snprintf(t->peer, sizeof t->peer, "%s", peer);
    return t;
}

/* The TCP stream at the bottom of a decorator stack, or NULL. */
static tcp_t *find_tcp(const mw_stream_t *s) {
    while (s && s->ops != &tcp_ops) s = s->inner;
    return (tcp_t *)s;
}

bool mw__is_tcp(const mw_stream_t *s) { return s && s->ops == &tcp_ops; }

void mw__tcp_shutdown(mw_stream_t *s) {
    tcp_t *t = find_tcp(s);
    if (!t || t->fd < 0) return;
    __atomic_store_n(&t->shut_wr, true, __ATOMIC_RELAXED);
    (void)shutdown(t->fd, SHUT_WR);
}

bool mw__tcp_was_reset(mw_stream_t *s) {
    tcp_t *t = find_tcp(s);
    if (!t) return false;
    if (!__atomic_load_n(&t->reset, __ATOMIC_RELAXED) && t->fd >= 0) {
        /* A RST that came after the peer's FIN: reads see only the EOF */
        int e = 0;
        socklen_t len = sizeof e;
        if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &e, &len) == 0 && e) note_reset(t, e);
    }
    return __atomic_load_n(&t->reset, __ATOMIC_RELAXED);
}

/* ---- connect ------------------------------------------------------------- */

static int connected(tcp_t *t) {
    t->cstate = CONNECTED;
    if (t->block_when_up && set_nonblock(t->fd, false) < 0)
        return t->cstate = mw__err_set_errno(&t->base.err, errno, "set blocking %s", t->peer);
    return 0;
}

int mw__tcp_connect_start(mw_stream_t **out, const struct sockaddr *sa, socklen_t salen,
                         const mw_tcp_opts_t *o, mw_err_t *err) {
    mw_tcp_opts_t def;
    if (!o) {
        mw__tcp_opts_init(&def);
        o = &def;
    }
    char name[NAME_MAX_LEN];
    fmt_addr(sa, salen, name, sizeof name);
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return mw__err_set_errno(err, errno, "socket for %s", name);
    tcp_t *t = tcp_new(fd, name);
    if (!t) {
        close(fd);
        return mw__err_set(err, MW_ENOMEM, "connect %s: out of memory", name);
    }
    t->block_when_up = o->blocking;
    int rc = set_opts(fd, o, true, err, &t->base.err);
    if (rc == 0 && o->bind_addr && o->bind_addr[0]) rc = bind_local(fd, sa->sa_family, o->bind_addr, err);
    if (rc == 0) {
        if (connect(fd, sa, salen) == 0) {
            rc = connected(t);
            if (rc < 0) mw__err_copy(err, &t->base.err);
        } else if (errno == EINPROGRESS || errno == EINTR) {
            t->cstate = CONNECTING;
            rc = MW_EAGAIN;
        } else {
            rc = mw__err_set_errno(err, errno, "connect %s", name);
        }
    }
    if (rc < 0 && rc != MW_EAGAIN) {
        tcp_free(&t->base);
        return rc;
    }
    *out = &t->base;
    return rc;
}

int mw__tcp_connect_finish(mw_stream_t *s) {
    tcp_t *t = find_tcp(s);
    if (!t) return MW_EINVAL;
    if (t->cstate != CONNECTING) return t->cstate;
    struct pollfd p = {.fd = t->fd, .events = POLLOUT};
    int r = poll(&p, 1, 0);
    if (r == 0 || (r < 0 && errno == EINTR)) return MW_EAGAIN;
    if (r < 0) return mw__err_set_errno(&t->base.err, errno, "connect %s: poll", t->peer);
    int e = 0;
    socklen_t len = sizeof e;
    if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0) e = errno;
    if (e != 0) return t->cstate = mw__err_set_errno(&t->base.err, e, "connect %s", t->peer);
    return connected(t);
}

/* Connects to one address within the deadline; on failure the text is in err. */
static int connect_one(mw_stream_t **out, const struct addrinfo *ai, const mw_tcp_opts_t *o,
                       uint64_t deadline, mw_err_t *err) {
    mw_stream_t *s = NULL;
    int rc = mw__tcp_connect_start(&s, ai->ai_addr, ai->ai_addrlen, o, err);
    while (rc == MW_EAGAIN) {
        int64_t left = mw__deadline_left(NULL, deadline);
        if (left == 0) {
            rc = mw__err_set(err, MW_ETIMEDOUT, "connect %s: timed out", find_tcp(s)->peer);
            break;
        }
        int w = mw__stream_wait(s, MW_WANT_WRITE, left);
        if (w == MW_ETIMEDOUT) continue;
        if (w < 0) {
            rc = mw__err_set_errno(err, errno, "connect %s: poll", find_tcp(s)->peer);
            break;
        }
        rc = mw__tcp_connect_finish(s);
        if (rc < 0 && rc != MW_EAGAIN) mw__err_copy(err, &s->err);
    }
    if (rc < 0) {
        mw_stream_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int mw__tcp_connect(mw_stream_t **out, const char *host, const char *port,
                   const mw_tcp_opts_t *o, int64_t timeout_ns, mw_err_t *err) {
    if (!out || !host || !port) return mw__err_set(err, MW_EINVAL, "connect: host and port required");
    uint64_t deadline = mw__deadline_in(NULL, timeout_ns);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0) return resolve_fail(err, host, port, g);
    int rc = MW_ERESOLVE;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        rc = connect_one(out, ai, o, deadline, err);
        if (rc == 0 || mw__deadline_passed(NULL, deadline)) break;
    }
    freeaddrinfo(res);
    if (rc == 0) mw_err_clear(err); /* drop the text of addresses that failed first */
    return rc;
}

/* ---- per-stream settings -------------------------------------------------- */

static struct timeval to_tv(int64_t ns) {
    if (ns <= 0) return (struct timeval){0, 0};
    int64_t us = (ns + MW_NS_PER_US - 1) / MW_NS_PER_US; /* 0 would mean "forever" */
    return (struct timeval){.tv_sec = us / 1000000, .tv_usec = us % 1000000};
}

int mw__tcp_set_timeouts(mw_stream_t *s, int64_t rcv_ns, int64_t snd_ns) {
    tcp_t *t = find_tcp(s);
    if (!t) return MW_EINVAL;
    struct timeval r = to_tv(rcv_ns), w = to_tv(snd_ns);
    if (setsockopt(t->fd, SOL_SOCKET, SO_RCVTIMEO, &r, sizeof r) < 0)
        return mw__err_set_errno(&t->base.err, errno, "setsockopt SO_RCVTIMEO");
    if (setsockopt(t->fd, SOL_SOCKET, SO_SNDTIMEO, &w, sizeof w) < 0)
        return mw__err_set_errno(&t->base.err, errno, "setsockopt SO_SNDTIMEO");
    return 0;
}

int mw__tcp_set_write_nowait(mw_stream_t *s, bool on) {
    tcp_t *t = find_tcp(s);
    if (!t) return MW_EINVAL;
    t->wflags = on ? MSG_DONTWAIT : 0;
    return 0;
}

int mw__tcp_set_blocking(mw_stream_t *s, bool blocking) {
    tcp_t *t = find_tcp(s);
    if (!t) return MW_EINVAL;
    if (set_nonblock(t->fd, !blocking) < 0)
        return mw__err_set_errno(&t->base.err, errno, "set %s", blocking ? "blocking" : "nonblocking");
    return 0;
}

static int sock_name(const mw_stream_t *s, bool peer, char *buf, size_t cap) {
    const tcp_t *t = find_tcp(s);
    if (!t) return MW_EINVAL;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int r = peer ? getpeername(t->fd, (struct sockaddr *)&ss, &len)
                 : getsockname(t->fd, (struct sockaddr *)&ss, &len);
    if (r < 0) return MW_ESYS;
    return fmt_addr((struct sockaddr *)&ss, len, buf, cap);
}

int mw__tcp_peer_name(const mw_stream_t *s, char *buf, size_t cap) { return sock_name(s, true, buf, cap); }
int mw__tcp_local_name(const mw_stream_t *s, char *buf, size_t cap) { return sock_name(s, false, buf, cap); }

/* ---- listener -------------------------------------------------------------- */

static int listen_one(const struct addrinfo *ai, const mw_tcp_opts_t *o, mw_err_t *err) {
    char name[NAME_MAX_LEN];
    fmt_addr(ai->ai_addr, ai->ai_addrlen, name, sizeof name);
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return mw__err_set_errno(err, errno, "socket for %s", name);
    int rc = 0;
    if (o->reuseaddr && set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1) < 0)
        rc = mw__err_set_errno(err, errno, "setsockopt SO_REUSEADDR");
    /* Buffer sizes must be set before listen to shape the window scale. */
    if (rc == 0) rc = set_opts(fd, o, false, err, NULL);
    if (rc == 0 && bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        rc = mw__err_set_errno(err, errno, "bind %s", name);
    if (rc == 0 && listen(fd, o->backlog > 0 ? o->backlog : MW_TCP_BACKLOG_DEFAULT) < 0)
        rc = mw__err_set_errno(err, errno, "listen %s", name);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

static int bound_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return -1;
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int mw__tcp_listen(mw__listener_t **out, const char *host, const char *port,
                  const mw_tcp_opts_t *o, mw_err_t *err) {
    mw_tcp_opts_t def;
    if (!o) {
        mw__tcp_opts_init(&def);
        o = &def;
    }
    bool any = !host || !host[0];
    if (!port || !port[0]) port = "0";
    struct addrinfo hints = {.ai_family = any ? AF_INET : AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    struct addrinfo *res;
    int g = getaddrinfo(any ? NULL : host, port, &hints, &res);
    if (g != 0) return resolve_fail(err, any ? "*" : host, port, g);
    int fd = MW_ERESOLVE;
    for (const struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) fd = listen_one(ai, o, err);
    freeaddrinfo(res);
    if (fd < 0) return fd;
    mw__listener_t *l = calloc(1, sizeof *l);
    if (!l) {
        close(fd);
        return mw__err_set(err, MW_ENOMEM, "listen: out of memory");
    }
    l->fd = fd;
    l->port = bound_port(fd);
    l->o = *o;
    l->o.bind_addr = NULL;  /* not ours to keep; the interface is inherited */
    l->o.bind_iface = NULL;
    *out = l;
    return 0;
}

int mw__listener_port(const mw__listener_t *l) { return l->port; }
int mw__listener_fd(const mw__listener_t *l) { return l->fd; }

int mw__listener_accept(mw__listener_t *l, mw_stream_t **out, mw_err_t *err) {
    if (l->fd < 0) return mw__err_set(err, MW_ECLOSED, "accept: listener closed");
    struct sockaddr_storage ss;
    socklen_t len;
    int fd;
    do {
        len = sizeof ss;
        fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } while (fd < 0 && (errno == EINTR || errno == ECONNABORTED));
    if (fd < 0) {
        int e = errno;
        if (e == EAGAIN || e == EWOULDBLOCK) return MW_EAGAIN;
        mw__err_set_errno(err, e, "accept on port %d", l->port);
        if (e != EMFILE && e != ENFILE) return err ? err->code : mw__err_from_errno(e);
        if (err) err->code = MW_EFULL; /* out of descriptors: the client still waits in the backlog */
        return MW_EFULL;
    }
    char name[NAME_MAX_LEN];
    fmt_addr((struct sockaddr *)&ss, len, name, sizeof name);
    tcp_t *t = tcp_new(fd, name);
    if (!t) {
        close(fd);
        return mw__err_set(err, MW_ENOMEM, "accept %s: out of memory", name);
    }
    int rc = set_opts(fd, &l->o, true, err, &t->base.err);
    if (rc == 0 && l->o.blocking && set_nonblock(fd, false) < 0)
        rc = mw__err_set_errno(err, errno, "accept %s: set blocking", name);
    if (rc < 0) {
        tcp_free(&t->base);
        return rc;
    }
    *out = &t->base;
    return 0;
}

void mw__listener_close(mw__listener_t *l) {
    if (l && l->fd >= 0) close(l->fd);
    if (l) l->fd = -1;
}

void mw__listener_free(mw__listener_t *l) {
    mw__listener_close(l);
    free(l);
}
