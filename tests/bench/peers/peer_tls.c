/*
 * peer_tls - ping-pong over TLS written straight on OpenSSL and TCP sockets,
 * the limit msgwire's tls:// is measured against (see peer_common.h for the
 * command line; URL tls://HOST:PORT, the svc needs --cert/--key, the clt
 * verifies against --ca).
 *
 * The wire inside TLS is raw_pingpong's: u32 big-endian length, payload. The
 * TLS settings are msgwire's (TLS 1.2 or later, read-ahead on, no session
 * tickets, partial writes), so what differs is only the code around SSL_read
 * and SSL_write. Modes, as raw_pingpong's:
 *   spin     - nonblocking socket; SSL_read again at once on WANT_READ
 *   blocking - blocking socket; SSL_read sleeps in the kernel
 * The handshake runs on the blocking socket before the mode is applied.
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#define RAW_PROG "peer_tls"
#include "peer_common.h"

#define HDR 4u

static int spin;

static void ssl_die(const char *what)
{
    char buf[256];
    unsigned long e = ERR_get_error();
    ERR_error_string_n(e, buf, sizeof buf);
    die("%s: %s", what, e ? buf : strerror(errno));
}

static SSL_CTX *make_ctx(const struct peer_opts *o, int server)
{
    SSL_CTX *c = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!c)
        ssl_die("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
    SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(c, 1);
    SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION);
    if (server) {
        if (!o->cert || !o->key)
            die("svc needs --cert and --key");
        if (SSL_CTX_use_certificate_chain_file(c, o->cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(c, o->key, SSL_FILETYPE_PEM) != 1)
            ssl_die("certificate / key");
        SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_num_tickets(c, 0);
    } else {
        if (!o->ca)
            die("clt needs --ca");
        if (SSL_CTX_load_verify_locations(c, o->ca, NULL) != 1)
            ssl_die("--ca");
        SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    }
    return c;
}

static void set_nodelay(int fd)
{
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
        die("setsockopt(TCP_NODELAY): %s", strerror(errno));
}

/* Sets the wait strategy once the handshake is done. */
static void apply_mode(int fd)
{
    if (!spin)
        return;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
        die("fcntl(O_NONBLOCK): %s", strerror(errno));
}

/* "tls://" -> "tcp://" for raw_common's resolver. */
static struct addrinfo *resolve_tls(const char *url, int passive)
{
    char host[256], port[16], tcp[300];
    peer_split_url(url, host, sizeof host, port, sizeof port);
    snprintf(tcp, sizeof tcp, strchr(host, ':') ? "tcp://[%s]:%s" : "tcp://%s:%s", host, port);
    return resolve(tcp, passive);
}

/* Writes all of buf. 0, or -1 once the connection failed. */
static int tls_write_all(SSL *ssl, const unsigned char *buf, size_t len)
{
    while (len > 0) {
        int n = SSL_write(ssl, buf, (int)len);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        int e = SSL_get_error(ssl, n);
        if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ)
            return -1; /* spin: retry at once */
    }
    return 0;
}

/* Reads 1..cap bytes: the count, 0 on the peer's close, -1 on an error. */
static int tls_read_some(SSL *ssl, unsigned char *buf, size_t cap)
{
    for (;;) {
        int n = SSL_read(ssl, buf, (int)cap);
        if (n > 0)
            return n;
        int e = SSL_get_error(ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            continue; /* spin: retry at once */
        return e == SSL_ERROR_ZERO_RETURN ? 0 : -1;
    }
}

/* ---- svc ------------------------------------------------------------------ */

static int serve(SSL *ssl)
{
    size_t cap = 64 * 1024 + HDR, have = 0;
    unsigned char *buf = malloc(cap);
    if (!buf)
        die("out of memory");
    int rc = 0;
    for (;;) {
        int n = tls_read_some(ssl, buf + have, cap - have);
        if (n <= 0) {
            rc = n < 0 && have ? -1 : 0;
            break;
        }
        have += (size_t)n;
        size_t off = 0; /* whole messages in buf[0..off) */
        while (have - off >= HDR) {
            uint32_t len = get_be32(buf + off);
            if (len > cap - HDR)
                die("message of %" PRIu32 " bytes is over %zu", len, cap - HDR);
            if (have - off < HDR + (size_t)len)
                break;
            off += HDR + len;
        }
        if (off) {
            if (tls_write_all(ssl, buf, off) != 0) {
                rc = -1;
                break;
            }
            have -= off;
            memmove(buf, buf + off, have);
        }
    }
    free(buf);
    return rc;
}

static int run_svc(const struct peer_opts *o)
{
    SSL_CTX *ctx = make_ctx(o, 1);
    struct addrinfo *ai = resolve_tls(o->url, 1);
    int lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (lfd < 0)
        die("socket: %s", strerror(errno));
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(lfd, 16) != 0)
        die("listen %s: %s", o->url, strerror(errno));
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(lfd, (struct sockaddr *)&ss, &sl) != 0)
        die("getsockname: %s", strerror(errno));
    peer_listening(ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                  : ((struct sockaddr_in *)&ss)->sin_port));
    int rc = 0;
    do {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            die("accept: %s", strerror(errno));
        }
        set_nodelay(fd);
        SSL *ssl = SSL_new(ctx);
        if (!ssl || SSL_set_fd(ssl, fd) != 1)
            ssl_die("SSL_new");
        if (SSL_accept(ssl) == 1) {
            apply_mode(fd);
            rc = serve(ssl);
            SSL_shutdown(ssl);
        } else {
            ERR_print_errors_fp(stderr);
            rc = -1;
        }
        SSL_free(ssl);
        close(fd);
    } while (!o->once);
    close(lfd);
    SSL_CTX_free(ctx);
    return rc ? 1 : 0;
}

/* ---- clt ------------------------------------------------------------------ */

static int connect_tcp(const char *url)
{
    struct addrinfo *ai = resolve_tls(url, 0);
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket: %s", strerror(errno));
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0)
        die("connect %s: %s", url, strerror(errno));
    freeaddrinfo(ai);
    set_nodelay(fd);
    return fd;
}

static int run_clt(const struct peer_opts *o)
{
    SSL_CTX *ctx = make_ctx(o, 0);
    int fd = connect_tcp(o->url);
    SSL *ssl = SSL_new(ctx);
    if (!ssl || SSL_set_fd(ssl, fd) != 1)
        ssl_die("SSL_new");
    char host[256], port[16];
    peer_split_url(o->url, host, sizeof host, port, sizeof port);
    X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
    if (X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1 && X509_VERIFY_PARAM_set1_host(vp, host, 0) != 1)
        ssl_die("verify name");
    if (SSL_connect(ssl) != 1)
        ssl_die("TLS handshake");
    apply_mode(fd);

    size_t msg_len = HDR + (size_t)o->size;
    unsigned char *tx = malloc(msg_len), *rx = malloc(msg_len);
    if (!tx || !rx)
        die("out of memory");
    put_be32(tx, o->size);
    struct peer_run r;
    peer_run_init(&r, o);
    while (r.seq < r.total) {
        peer_fill(tx + HDR, o->size, r.seq);
        uint64_t t0 = now_ns();
        if (tls_write_all(ssl, tx, msg_len) != 0)
            ssl_die("SSL_write");
        size_t got = 0;
        while (got < msg_len) {
            int n = tls_read_some(ssl, rx + got, msg_len - got);
            if (n == 0)
                die("the svc closed the connection after %" PRIu64 " round trips", r.seq);
            if (n < 0)
                ssl_die("SSL_read");
            got += (size_t)n;
        }
        uint64_t t1 = now_ns();
        if (get_be32(rx) != o->size)
            die("echo %" PRIu64 ": length %" PRIu32, r.seq, get_be32(rx));
        peer_check(tx + HDR, o->size, rx + HDR, o->size, r.seq);
        peer_record(&r, o, t0, t1);
    }
    SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(ctx);
    peer_report(&r, o, "openssl", spin ? "spin" : "blocking");
    free(tx);
    free(rx);
    return 0;
}

int main(int argc, char **argv)
{
    struct peer_opts o;
    peer_parse(argc, argv, &o, "spin|blocking");
    if (!o.mode || strcmp(o.mode, "spin") == 0)
        spin = 1;
    else if (strcmp(o.mode, "blocking") != 0)
        die("--mode spin or blocking");
    signal(SIGPIPE, SIG_IGN);
    return strcmp(o.cmd, "svc") == 0 ? run_svc(&o) : run_clt(&o);
}
