/* tls.c - TLS (OpenSSL) as a stream decorator; see mw_tls.h.
 *
 * OpenSSL does the record work; the bytes go through a small BIO that calls
 * the inner stream's read/writev. For TCP that is one recv/sendmsg per BIO
 * call, the same as a socket BIO, but the TCP stream sends with
 * MSG_NOSIGNAL: OpenSSL's own socket BIO write()s, which raises SIGPIPE on a
 * peer that has gone, and a library must not ask its users to ignore it.
 * The indirection also lets TLS run over fd-less streams (the pair) in tests.
 *
 * Every SSL call is preceded by ERR_clear_error: the error queue is per
 * thread, and a failure left behind by another connection would otherwise be
 * reported as this one's.
 */
#include "mw_tls.h"

#include "lock_impl.h"
#include "mw_tcp.h"
#include "err_impl.h"
#include "stream_impl.h"
#include "tcp_impl.h"
#include "tls_impl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* Small iovecs are gathered into one buffer so that a header and its payload
 * become one TLS record rather than two: one encryption, 22 fewer bytes. */
#define GATHER_MAX 16384
#define NAME_LEN 160

struct mw__tls_ctx {
    SSL_CTX *ssl_ctx;
    bool server;
    bool verify; /* clients: verify the server's chain and name */
    char *server_name;
};

typedef struct tls {
    mw_stream_t base;
    SSL *ssl;
    /* MW_WANT_* asked by the last read (or handshake) / write that returned
     * MW_EAGAIN: one per direction, so a reader's wait for input does not
     * hide a writer's wait for room. */
    atomic_int want_rd, want_wr;
    int dead;     /* 0, or the MW_E* code of a fatal failure: every call returns it */
    bool rdone;   /* close_notify received: reads return MW_ECLOSED, writes go on */
    bool up;      /* the handshake has completed (OpenSSL forgets after a fatal error) */
    int io_err;   /* last inner stream failure seen by the BIO, 0 if none */
    bool eof;     /* the inner stream ended (or was reset) under a read */
    bool closed;
    /* One SSL object serves both directions, and OpenSSL does not allow two
     * threads in it at once; the lock lets a split sender and receiver share
     * a TLS stream (uncontended: ~20 ns beside microseconds of crypto). */
    pthread_mutex_t mu;
    /* The owner's lock once shared (mw__stream_share_lock), used instead of
     * mu: tx calls come with it held, the rest take it. NULL: mu. */
    mw__lock_t *lk;
    char name[NAME_LEN]; /* the peer, for error text: "localhost (127.0.0.1:4433)" */
    unsigned char gather[GATHER_MAX];
} tls_t;

static const mw__stream_ops_t tls_ops;

/* Around SSL calls of the rx side and of helpers: the shared lock or mu. */
static void tls_lock(tls_t *t) {
    if (t->lk) {
        mw__lock(t->lk);
        return;
    }
    MW__LOCK_NOTE();
    pthread_mutex_lock(&t->mu);
}

static void tls_unlock(tls_t *t) {
    if (t->lk) mw__unlock(t->lk);
    else pthread_mutex_unlock(&t->mu);
}

void mw__tls_opts_init(mw_tls_opts_t *o) { *o = (mw_tls_opts_t){0}; }

/* ---- BIO over the inner stream ------------------------------------------ */

static BIO_METHOD *bio_meth;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static int bio_write(BIO *b, const char *p, int n) {
    tls_t *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t w = mw__stream_write(t->base.inner, p, (size_t)n);
    if (w > 0) return (int)w;
    if (w == 0 || w == MW_EAGAIN) {
        BIO_set_retry_write(b);
        return -1;
    }
    t->io_err = (int)w;
    return -1;
}

static int bio_read(BIO *b, char *p, int n) {
    tls_t *t = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t r = mw__stream_read(t->base.inner, p, (size_t)n);
    if (r > 0) return (int)r;
    if (r == MW_EAGAIN) {
        BIO_set_retry_read(b);
        return -1;
    }
    t->io_err = (int)r;
    t->eof = r == MW_ECLOSED;
    return t->eof ? 0 : -1; /* 0: end of stream */
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0; /* writes are never buffered here */
}

static int bio_create(BIO *b) {
    BIO_set_init(b, 1);
    return 1;
}

static void bio_meth_make(void) {
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "msgwire stream");
    if (m && BIO_meth_set_write(m, bio_write) && BIO_meth_set_read(m, bio_read) &&
        BIO_meth_set_ctrl(m, bio_ctrl) && BIO_meth_set_create(m, bio_create)) {
        bio_meth = m;
        return;
    }
    BIO_meth_free(m);
}

/* ---- error text ------------------------------------------------------------- */

/* Reasons seen when the first bytes from the peer are not a TLS record. */
static bool not_tls_reason(int reason) {
    switch (reason) {
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
    case SSL_R_UNKNOWN_PROTOCOL:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_RECORD_LENGTH_MISMATCH:
    case SSL_R_UNSUPPORTED_PROTOCOL:
        return true;
    default:
        return false;
    }
}

static bool is_up(tls_t *t) {
    if (!t->up) t->up = SSL_is_init_finished(t->ssl);
    return t->up;
}

static const char *what(tls_t *t, const char *op) { return is_up(t) ? op : "handshake with"; }

/* The cause in an inner stream's text, without its "write 1.2.3.4:5" prefix. */
static const char *inner_cause(const tls_t *t) {
    const char *text = mw_stream_last_error(t->base.inner), *c = strrchr(text, ':');
    return c && c[1] == ' ' ? c + 2 : text;
}

/* A hint after the reason, for the failures people meet first. */
static const char *hint(unsigned long e, bool hs) {
    if (ERR_GET_LIB(e) != ERR_LIB_SSL) return "";
    int reason = ERR_GET_REASON(e);
    if (reason == SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED)
        return " (the server wants a client certificate: opts.cert_file, opts.key_file)";
    return hs && not_tls_reason(reason) ? " (is the peer speaking TLS?)" : "";
}

static int eof_failure(tls_t *t, const char *op) {
    bool up = is_up(t);
    return mw__err_set(&t->base.err, MW_ECLOSED, "tls %s %s: peer closed %s", what(t, op), t->name,
                      up ? "without close_notify" : "the connection during the handshake");
}

/* Text for SSL_ERROR_SSL from the thread's error queue (which it empties). */
static int ssl_failure(tls_t *t, const char *op) {
    unsigned long e = ERR_get_error(); /* the earliest: the cause, not its echoes */
    ERR_clear_error();
    const char *w = what(t, op);
    if (e == 0) return mw__err_set(&t->base.err, MW_ETLS, "tls %s %s: TLS failure", w, t->name);
    bool ssl_lib = ERR_GET_LIB(e) == ERR_LIB_SSL;
    if (ssl_lib && ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
        return eof_failure(t, op);
    char buf[160];
    const char *rs = ERR_reason_error_string(e);
    if (!rs) {
        ERR_error_string_n(e, buf, sizeof buf);
        rs = buf;
    }
    if (ssl_lib && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED)
        return mw__err_set(&t->base.err, MW_ETLS, "tls %s %s: %s: %s", w, t->name, rs,
                          X509_verify_cert_error_string(SSL_get_verify_result(t->ssl)));
    return mw__err_set(&t->base.err, MW_ETLS, "tls %s %s: %s%s", w, t->name, rs,
                      hint(e, !is_up(t)));
}

/* Turns a failed SSL call into MW_EAGAIN (remembering what it waits for) or
 * an error with text; errors other than MW_EAGAIN are final. */
static int fail(tls_t *t, int r, const char *op, atomic_int *want) {
    int e = SSL_get_error(t->ssl, r);
    int code;
    switch (e) {
    case SSL_ERROR_WANT_READ:
        atomic_store(want, MW_WANT_READ);
        return MW_EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        atomic_store(want, MW_WANT_WRITE);
        return MW_EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        atomic_store(want, 0);
        t->rdone = true;
        return mw__err_set(&t->base.err, MW_ECLOSED, "tls %s %s: closed by peer (close_notify)",
                          op, t->name);
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        if (t->io_err && !t->eof)
            code = mw__err_set(&t->base.err, t->io_err, "tls %s %s: %s", what(t, op), t->name,
                              inner_cause(t));
        else
            code = eof_failure(t, op);
        break;
    case SSL_ERROR_SSL:
        code = ssl_failure(t, op);
        break;
    default:
        ERR_clear_error();
        code = mw__err_set(&t->base.err, MW_ETLS, "tls %s %s: unexpected SSL error %d",
                          what(t, op), t->name, e);
        break;
    }
    atomic_store(&t->want_rd, 0);
    atomic_store(&t->want_wr, 0);
    t->dead = code;
    return code;
}

static int gone(const tls_t *t) { return t->closed ? MW_ECLOSED : t->dead; }

/* ---- stream ops ---------------------------------------------------------------- */

static ssize_t read_locked(tls_t *t, void *dst, size_t cap) {
    if (gone(t)) return gone(t);
    if (t->rdone) return MW_ECLOSED;
    size_t n = 0;
    ERR_clear_error();
    int r = SSL_read_ex(t->ssl, dst, cap, &n);
    if (r == 1) {
        atomic_store(&t->want_rd, 0);
        t->up = true;
        return (ssize_t)n;
    }
    return fail(t, r, "read", &t->want_rd);
}

static ssize_t tls_read(mw_stream_t *s, void *dst, size_t cap) {
    tls_t *t = (tls_t *)s;
    tls_lock(t);
    ssize_t n = read_locked(t, dst, cap);
    tls_unlock(t);
    return n;
}

/* Fills t->gather from iov[i] + off onwards; returns the length. */
static size_t gather(tls_t *t, const struct iovec *iov, int iovcnt, int i, size_t off) {
    size_t n = 0;
    for (; i < iovcnt && n < GATHER_MAX; i++, off = 0) {
        size_t k = iov[i].iov_len - off;
        if (k > GATHER_MAX - n) k = GATHER_MAX - n;
        memcpy(t->gather + n, (const char *)iov[i].iov_base + off, k);
        n += k;
    }
    return n;
}

/* Steps *i / *off over n bytes of the iovecs. */
static void advance(const struct iovec *iov, int *i, size_t *off, size_t n) {
    while (n > 0) {
        size_t k = iov[*i].iov_len - *off < n ? iov[*i].iov_len - *off : n;
        n -= k, *off += k;
        if (*off == iov[*i].iov_len) ++*i, *off = 0;
    }
}

/* Writes the iovecs in order, one record per SSL_write (partial-write mode),
 * until all is written or the socket is full. The chunking depends only on
 * the bytes offered, so a retry after MW_EAGAIN that offers the same bytes
 * (or more) hands OpenSSL at least the length it had before, as its
 * write-retry rule requires. */
static ssize_t writev_locked(tls_t *t, const struct iovec *iov, int iovcnt) {
    if (gone(t)) return gone(t);
    size_t total = 0, off = 0;
    int i = 0;
    while (i < iovcnt) {
        size_t len = iov[i].iov_len - off, done = 0;
        const void *p = (const char *)iov[i].iov_base + off;
        if (len == 0) {
            i++, off = 0;
            continue;
        }
        if (len < GATHER_MAX && i + 1 < iovcnt) {
            len = gather(t, iov, iovcnt, i, off);
            p = t->gather;
        }
        ERR_clear_error();
        int r = SSL_write_ex(t->ssl, p, len, &done);
        if (r != 1) {
            int rc = fail(t, r, "write", &t->want_wr);
            return total > 0 && rc == MW_EAGAIN ? (ssize_t)total : rc;
        }
        atomic_store(&t->want_wr, 0);
        t->up = true;
        total += done;
        advance(iov, &i, &off, done);
    }
    return (ssize_t)total;
}

static ssize_t tls_writev(mw_stream_t *s, const struct iovec *iov, int iovcnt) {
    tls_t *t = (tls_t *)s;
    if (t->lk) return writev_locked(t, iov, iovcnt); /* the owner holds it */
    MW__LOCK_NOTE();
    pthread_mutex_lock(&t->mu);
    ssize_t n = writev_locked(t, iov, iovcnt);
    pthread_mutex_unlock(&t->mu);
    return n;
}

static int tls_want(const mw_stream_t *s) {
    tls_t *t = (tls_t *)s;
    return atomic_load(&t->want_rd) | atomic_load(&t->want_wr);
}

static int tls_fd(const mw_stream_t *s) { return mw__stream_fd(s->inner); }

/* The TCP connect first, then the TLS handshake. */
static int tls_handshake_op(mw_stream_t *s) {
    int r = mw__stream_handshake(s->inner);
    if (r != 1) {
        if (r != MW_EAGAIN) mw__err_copy(&s->err, &s->inner->err);
        return r;
    }
    r = mw__tls_handshake(s);
    return r == 0 ? 1 : r;
}

/* Decrypted bytes not yet returned, or records read ahead of them: the
 * socket has already given them up. Under the lock: SSL state. */
static size_t tls_pending(const mw_stream_t *s) {
    tls_t *t = (tls_t *)s;
    if (!t->ssl) return 0;
    tls_lock(t);
    size_t n = 0;
    if (!t->closed && !t->dead && !t->rdone) {
        int k = SSL_pending(t->ssl);
        n = k > 0 ? (size_t)k : SSL_has_pending(t->ssl) ? 1 : 0;
    }
    tls_unlock(t);
    return n;
}

static int tls_rx_time(const mw_stream_t *s, uint64_t *ns) { return mw__stream_rx_time(s->inner, ns); }

/* Sends close_notify once, if the connection is in a state to carry it. */
static void send_close_notify(tls_t *t) {
    if (!t->ssl || t->closed || t->dead || !is_up(t) ||
        (SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN))
        return;
    ERR_clear_error();
    (void)SSL_shutdown(t->ssl); /* one try: a full socket buffer just loses it */
    ERR_clear_error();
}

static void tls_close(mw_stream_t *s) {
    tls_t *t = (tls_t *)s;
    if (t->closed) return;
    tls_lock(t);
    send_close_notify(t);
    tls_unlock(t);
    t->closed = true;
    atomic_store(&t->want_rd, 0);
    atomic_store(&t->want_wr, 0);
    mw__stream_close(s->inner);
}

static void tls_free(mw_stream_t *s) {
    tls_t *t = (tls_t *)s;
    tls_close(s);
    SSL_free(t->ssl); /* frees the BIO too */
    mw_stream_free(s->inner);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static void tls_share_lock(mw_stream_t *s, mw__lock_t *lk) {
    ((tls_t *)s)->lk = lk;
    mw__stream_share_lock(s->inner, lk);
}

static const mw__stream_ops_t tls_ops = {
    .name = "tls",
    .read = tls_read,
    .writev = tls_writev,
    .want = tls_want,
    .fd = tls_fd,
    .close = tls_close,
    .free = tls_free,
    .handshake = tls_handshake_op,
    .pending = tls_pending,
    .rx_time = tls_rx_time,
    .share_lock = tls_share_lock,
};

bool mw__is_tls(const mw_stream_t *s) { return s && s->ops == &tls_ops; }

int mw__tls_handshake(mw_stream_t *s) {
    tls_t *t = (tls_t *)s;
    if (!mw__is_tls(s)) return MW_EINVAL;
    if (gone(t)) return gone(t);
    if (t->rdone) return MW_ECLOSED;
    tls_lock(t);
    if (is_up(t)) {
        tls_unlock(t);
        return 0;
    }
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        atomic_store(&t->want_rd, 0);
        atomic_store(&t->want_wr, 0);
        t->up = true;
        r = 0;
    } else {
        r = fail(t, r, "handshake", &t->want_rd);
    }
    tls_unlock(t);
    return r;
}

void mw__tls_shutdown(mw_stream_t *s) {
    if (!mw__is_tls(s)) return;
    tls_t *t = (tls_t *)s;
    tls_lock(t);
    send_close_notify(t);
    tls_unlock(t);
}

/* ---- context -------------------------------------------------------------------- */

/* A file OpenSSL refused: says whether it is missing or what is wrong in it. */
static int file_fail(mw_err_t *err, const char *kind, const char *path) {
    unsigned long e = ERR_peek_error();
    const char *rs = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    FILE *f = fopen(path, "r");
    if (!f) return mw__err_set(err, MW_EINVAL, "tls: %s %s: %s", kind, path, strerror(errno));
    fclose(f);
    bool pem = ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
    return mw__err_set(err, MW_EINVAL, "tls: %s %s: %s", kind, path,
                      pem ? "no PEM data found" : rs ? rs : "not usable");
}

static int load_identity(SSL_CTX *c, const mw_tls_opts_t *o, mw_err_t *err) {
    if (SSL_CTX_use_certificate_chain_file(c, o->cert_file) != 1)
        return file_fail(err, "certificate file", o->cert_file);
    if (SSL_CTX_use_PrivateKey_file(c, o->key_file, SSL_FILETYPE_PEM) != 1) {
        unsigned long e = ERR_peek_last_error();
        if (ERR_GET_LIB(e) != ERR_LIB_X509 || ERR_GET_REASON(e) != X509_R_KEY_VALUES_MISMATCH)
            return file_fail(err, "key file", o->key_file);
    } else if (SSL_CTX_check_private_key(c) == 1) {
        return 0;
    }
    ERR_clear_error();
    return mw__err_set(err, MW_EINVAL, "tls: key file %s does not match certificate %s",
                      o->key_file, o->cert_file);
}

static int load_trust(SSL_CTX *c, bool server, const mw_tls_opts_t *o, mw_err_t *err) {
    if (o->ca_file && SSL_CTX_load_verify_locations(c, o->ca_file, NULL) != 1)
        return file_fail(err, "CA file", o->ca_file);
    if (server) {
        if (!o->verify_client) return 0;
        /* Tells clients which CAs we accept, so they pick the right cert. */
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ca_file);
        if (!names) return file_fail(err, "CA file", o->ca_file);
        SSL_CTX_set_client_CA_list(c, names);
        SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        return 0;
    }
    if (o->insecure_skip_verify) {
        SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
        return 0;
    }
    if (!o->ca_file && SSL_CTX_set_default_verify_paths(c) != 1) {
        ERR_clear_error();
        return mw__err_set(err, MW_ETLS, "tls: cannot load the system CA store");
    }
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
    return 0;
}

static int check_opts(bool server, const mw_tls_opts_t *o, mw_err_t *err) {
    if (server && (!o->cert_file || !o->key_file))
        return mw__err_set(err, MW_EINVAL, "tls server: cert_file and key_file are required");
    if (!o->cert_file != !o->key_file)
        return mw__err_set(err, MW_EINVAL, "tls: cert_file and key_file go together");
    if (server && o->verify_client && !o->ca_file)
        return mw__err_set(err, MW_EINVAL, "tls server: verify_client needs ca_file");
    return 0;
}

static int ctx_setup(mw__tls_ctx_t *ctx, const mw_tls_opts_t *o, mw_err_t *err) {
    SSL_CTX *c = ctx->ssl_ctx;
    if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1)
        return mw__err_set(err, MW_ETLS, "tls: cannot require TLS 1.2");
    SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* One recv can then bring several records: fewer syscalls for small messages. */
    SSL_CTX_set_read_ahead(c, 1);
    SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION);
    if (ctx->server) {
        /* Sessions are not resumed: tickets would be bytes and work for nothing. */
        SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_num_tickets(c, 0);
    }
    int rc = o->cert_file ? load_identity(c, o, err) : 0;
    return rc < 0 ? rc : load_trust(c, ctx->server, o, err);
}

int mw__tls_ctx_new(mw__tls_ctx_t **out, bool server, const mw_tls_opts_t *o, mw_err_t *err) {
    mw_tls_opts_t def;
    if (!o) {
        mw__tls_opts_init(&def);
        o = &def;
    }
    int rc = check_opts(server, o, err);
    if (rc < 0) return rc;
    mw__tls_ctx_t *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return mw__err_set(err, MW_ENOMEM, "tls: out of memory");
    ctx->server = server;
    ctx->verify = !server && !o->insecure_skip_verify;
    if (o->server_name && !(ctx->server_name = strdup(o->server_name))) {
        free(ctx);
        return mw__err_set(err, MW_ENOMEM, "tls: out of memory");
    }
    ERR_clear_error();
    ctx->ssl_ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!ctx->ssl_ctx) {
        ERR_clear_error();
        rc = mw__err_set(err, MW_ETLS, "tls: cannot create an SSL_CTX");
    } else {
        rc = ctx_setup(ctx, o, err);
    }
    if (rc < 0) {
        mw__tls_ctx_free(ctx);
        return rc;
    }
    *out = ctx;
    return 0;
}

void mw__tls_ctx_free(mw__tls_ctx_t *ctx) {
    if (!ctx) return;
    SSL_CTX_free(ctx->ssl_ctx); /* streams hold their own reference */
    free(ctx->server_name);
    free(ctx);
}

/* ---- wrap ------------------------------------------------------------------------ */

static bool is_ip(const char *host) {
    unsigned char a[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

/* SNI and the name to verify. IP literals get no SNI (RFC 6066) but are
 * still checked against the certificate's IP addresses. */
static int client_name(tls_t *t, const char *name, bool verify) {
    if (!name || !name[0]) return 1;
    bool ip = is_ip(name);
    if (!ip && SSL_set_tlsext_host_name(t->ssl, name) != 1) return 0;
    if (!verify) return 1;
    if (ip) return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), name);
    SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return SSL_set1_host(t->ssl, name);
}

static void set_name(tls_t *t, const char *host) {
    char peer[96];
    bool have_peer = mw__tcp_peer_name(t->base.inner, peer, sizeof peer) == 0;
    if (host && host[0] && !is_ip(host))
        snprintf(t->name, sizeof t->name, have_peer ? "%s (%s)" : "%s", host, peer);
    else
        snprintf(t->name, sizeof t->name, "%s", have_peer ? peer : host && host[0] ? host : "peer");
}

static int tls_setup(tls_t *t, const mw__tls_ctx_t *ctx, const char *name, mw_err_t *err) {
    ERR_clear_error();
    t->ssl = SSL_new(ctx->ssl_ctx);
    BIO *b = t->ssl ? BIO_new(bio_meth) : NULL;
    if (!b) {
        ERR_clear_error();
        return mw__err_set(err, MW_ENOMEM, "tls %s: cannot create the connection", t->name);
    }
    BIO_set_data(b, t);
    SSL_set_bio(t->ssl, b, b);
    if (ctx->server) {
        SSL_set_accept_state(t->ssl);
        return 0;
    }
    SSL_set_connect_state(t->ssl);
    if (client_name(t, name, ctx->verify) != 1) {
        ERR_clear_error();
        return mw__err_set(err, MW_EINVAL, "tls %s: cannot use \"%s\" as the server name", t->name,
                          name);
    }
    return 0;
}

int mw__tls_wrap(mw_stream_t **out, mw_stream_t *tcp, mw__tls_ctx_t *ctx, const char *host,
                mw_err_t *err) {
    if (!out || !tcp || !ctx) {
        mw_stream_free(tcp);
        return mw__err_set(err, MW_EINVAL, "tls wrap: stream and context required");
    }
    const char *name = ctx->server ? NULL : ctx->server_name ? ctx->server_name : host;
    if (ctx->verify && (!name || !name[0])) {
        mw_stream_free(tcp);
        return mw__err_set(err, MW_EINVAL,
                          "tls: a host name is needed to verify the server (host or opts.server_name)");
    }
    pthread_once(&bio_once, bio_meth_make);
    tls_t *t = bio_meth ? calloc(1, sizeof *t) : NULL;
    if (!t) {
        mw_stream_free(tcp);
        return mw__err_set(err, MW_ENOMEM, "tls wrap: out of memory");
    }
    t->base.ops = &tls_ops;
    t->base.inner = tcp;
    pthread_mutex_init(&t->mu, NULL);
    set_name(t, name);
    int rc = tls_setup(t, ctx, name, err);
    if (rc < 0) {
        tls_free(&t->base);
        return rc;
    }
    *out = &t->base;
    return 0;
}
