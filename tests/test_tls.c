/* test_tls.c - TLS streams over loopback TCP (and over the in-process pair):
 * verified handshakes and data both ways, every verification failure with its
 * text, client certificates, plaintext peers on either side, a large transfer
 * with partial writes, shutdown, and interop with `openssl s_server` and
 * `openssl s_client`.
 *
 * The certificates are the shared set (tests/util/certs.c, made with the
 * openssl command line; nothing secret is checked in). Both ends of
 * a connection are driven from the test thread with nonblocking streams,
 * waiting on each stream's want() after MW_EAGAIN. */
#include "mw_test.h"

#include "mw_clock.h"
#include "mw_tcp.h"
#include "mw_tls.h"
#include "mw_ws.h"
#include "clock_impl.h"
#include "stream_impl.h"
#include "tcp_impl.h"
#include "tls_impl.h"
#include "ws_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

extern char **environ;

#define WAIT_NS (10 * MW_NS_PER_S)
#define BIG (4u << 20)

/* Path of a file of the shared certificate set (tests/util/certs.c): the
 * CA, srv, wrong (names wrong.example), cli (client), self (self-signed),
 * expired; other names are paths in the same directory (logs, missing files). */
static const char *f(const char *name) { return mw_test_cert(name); }

static int group_setup(void **state) {
    (void)state;
    (void)f("ca.pem"); /* the set is made once, before the first test */
    /* A failed test must die by its assertion, not by SIGPIPE. */
    signal(SIGPIPE, SIG_DFL);
    return 0;
}

/* ---- external processes ---------------------------------------------------------- */

typedef struct proc {
    pid_t pid;  /* 0: none (or reaped) */
    int in;     /* its stdin, or -1 */
    int out;    /* its stdout, or -1 */
    int status; /* exit status once reaped by exited(), 255 if killed */
} proc_t;

static proc_t procs[2];

static bool reaped(void *ud) {
    proc_t *p = ud;
    return waitpid(p->pid, NULL, WNOHANG) != 0;
}

/* Ends a process: closes its pipes, SIGTERM, then SIGKILL if it lingers. */
static void proc_end(proc_t *p) {
    if (p->in >= 0) close(p->in);
    if (p->out >= 0) close(p->out);
    p->in = p->out = -1;
    if (p->pid <= 0) return;
    kill(p->pid, SIGTERM);
    if (!mw_wait_until(reaped, p, 5000)) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
    }
    p->pid = 0;
}

static int test_teardown(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof procs / sizeof procs[0]; i++) proc_end(&procs[i]);
    return 0;
}

/* Starts argv with pipes on stdin and stdout; stderr goes to errlog. */
static proc_t *spawn(char *const argv[], const char *errlog) {
    proc_t *p = procs[0].pid ? &procs[1] : &procs[0];
    int in[2], out[2];
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, errlog, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    *p = (proc_t){.pid = rc == 0 ? pid : 0, .in = in[1], .out = out[0]};
    if (rc != 0) fail_msg("spawn %s: %s", argv[0], strerror(rc));
    return p;
}

/* Reads the process's stdout into buf until it contains needle. */
static bool proc_read_until(proc_t *p, char *buf, size_t cap, const char *needle) {
    uint64_t deadline = mw__deadline_in(NULL, WAIT_NS);
    size_t len = strlen(buf);
    while (!strstr(buf, needle)) {
        int64_t left = mw__deadline_left(NULL, deadline);
        if (left == 0 || len + 1 >= cap) return false;
        struct pollfd pf = {.fd = p->out, .events = POLLIN};
        int r = poll(&pf, 1, (int)(left / MW_NS_PER_MS) + 1);
        if (r < 0 && errno != EINTR) return false;
        if (r <= 0) continue;
        ssize_t n = read(p->out, buf + len, cap - 1 - len);
        if (n <= 0) return false;
        len += (size_t)n;
        buf[len] = '\0';
    }
    return true;
}

static bool exited(void *ud) {
    proc_t *p = ud;
    int st;
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == 0) return false;
    p->status = r == p->pid && WIFEXITED(st) ? WEXITSTATUS(st) : 255;
    p->pid = 0;
    return true;
}

/* ---- contexts and connections ----------------------------------------------------- */

static mw__tls_ctx_t *ctx_new(bool server, const mw_tls_opts_t *o) {
    mw__tls_ctx_t *ctx = NULL;
    mw_err_t err = {0};
    int rc = mw__tls_ctx_new(&ctx, server, o, &err);
    if (rc != 0) fail_msg("tls ctx: %s: %s", mw_errname(rc), mw_err_text(&err));
    return ctx;
}

static mw__tls_ctx_t *server_ctx(const char *cert, const char *key) {
    mw_tls_opts_t o;
    mw__tls_opts_init(&o);
    o.cert_file = f(cert);
    o.key_file = f(key);
    return ctx_new(true, &o);
}

static mw__tls_ctx_t *client_ctx(void) {
    mw_tls_opts_t o;
    mw__tls_opts_init(&o);
    o.ca_file = f("ca.pem");
    return ctx_new(false, &o);
}

static mw__listener_t *listen_local(const mw_tcp_opts_t *o) {
    mw__listener_t *l = NULL;
    mw_err_t err = {0};
    int rc = mw__tcp_listen(&l, "127.0.0.1", "0", o, &err);
    if (rc != 0) fail_msg("listen: %s", mw_err_text(&err));
    return l;
}

static mw_stream_t *tcp_connect(int port, const mw_tcp_opts_t *o) {
    char ps[8];
    snprintf(ps, sizeof ps, "%d", port);
    mw_stream_t *s = NULL;
    mw_err_t err = {0};
    int rc = mw__tcp_connect(&s, "127.0.0.1", ps, o, WAIT_NS, &err);
    if (rc != 0) fail_msg("connect: %s", mw_err_text(&err));
    return s;
}

static mw_stream_t *tcp_accept(mw__listener_t *l) { return mw_test_accept(l, 10000); }

static mw_stream_t *wrap(mw_stream_t *tcp, mw__tls_ctx_t *ctx, const char *host) {
    mw_stream_t *s = NULL;
    mw_err_t err = {0};
    int rc = mw__tls_wrap(&s, tcp, ctx, host, &err);
    if (rc != 0) fail_msg("wrap: %s: %s", mw_errname(rc), mw_err_text(&err));
    assert_true(mw__is_tls(s));
    return s;
}

/* A TLS client and the server end of the same connection, handshake not run. */
static void tls_conn(mw__listener_t *l, mw__tls_ctx_t *cctx, mw__tls_ctx_t *sctx, const char *host,
                     mw_stream_t **c, mw_stream_t **s) {
    *c = wrap(tcp_connect(mw__listener_port(l), NULL), cctx, host);
    *s = wrap(tcp_accept(l), sctx, NULL);
}

/* What a stream that returned MW_EAGAIN waits for; dflt if it says nothing. */
static int want_or(const mw_stream_t *s, int dflt) {
    int w = mw__stream_want(s);
    return w ? w : dflt;
}

/* Waits until one of n streams is ready for ev[i] (MW_WANT_* bits, 0: skip),
 * up to the deadline. Streams without an fd are always ready. */
static void wait_streams(mw_stream_t *const *ss, const int *ev, int n, uint64_t deadline) {
    struct pollfd pf[4];
    assert_true(n <= 4);
    for (int i = 0; i < n; i++) {
        pf[i] = (struct pollfd){.fd = ev[i] ? mw__stream_fd(ss[i]) : -1};
        if (ev[i] && pf[i].fd < 0) {
            sched_yield();
            return;
        }
        if (ev[i] & MW_WANT_READ) pf[i].events |= POLLIN;
        if (ev[i] & MW_WANT_WRITE) pf[i].events |= POLLOUT;
    }
    int64_t left = mw__deadline_left(NULL, deadline);
    assert_true(left != 0);
    int r = poll(pf, (nfds_t)n, (int)(left / MW_NS_PER_MS) + 1);
    assert_true(r >= 0 || errno == EINTR);
}

/* Runs the handshake on both ends until each has finished or failed. */
static void handshake2(mw_stream_t *a, mw_stream_t *b, int *ra, int *rb) {
    uint64_t deadline = mw__deadline_in(NULL, WAIT_NS);
    *ra = *rb = MW_EAGAIN;
    while (*ra == MW_EAGAIN || *rb == MW_EAGAIN) {
        if (*ra == MW_EAGAIN) *ra = mw__tls_handshake(a);
        if (*rb == MW_EAGAIN) *rb = mw__tls_handshake(b);
        mw_stream_t *ss[2] = {a, b};
        int ev[2] = {*ra == MW_EAGAIN ? want_or(a, MW_WANT_READ) : 0,
                     *rb == MW_EAGAIN ? want_or(b, MW_WANT_READ) : 0};
        if (ev[0] || ev[1]) wait_streams(ss, ev, 2, deadline);
    }
}

static void handshake_ok(mw_stream_t *c, mw_stream_t *s) {
    int rc, rs;
    handshake2(c, s, &rc, &rs);
    if (rc != 0 || rs != 0)
        fail_msg("handshake: client %s (%s), server %s (%s)", mw_errname(rc),
                 mw_stream_last_error(c), mw_errname(rs), mw_stream_last_error(s));
}

/* Runs one end's handshake alone (the peer is another process). */
static int handshake1(mw_stream_t *s) {
    uint64_t deadline = mw__deadline_in(NULL, WAIT_NS);
    for (;;) {
        int rc = mw__tls_handshake(s);
        if (rc != MW_EAGAIN) return rc;
        int ev = want_or(s, MW_WANT_READ);
        wait_streams(&s, &ev, 1, deadline);
    }
}

/* The next read result that is not MW_EAGAIN. */
static ssize_t read_settled(mw_stream_t *s, void *dst, size_t cap) {
    uint64_t deadline = mw__deadline_in(NULL, WAIT_NS);
    for (;;) {
        ssize_t r = mw__stream_read(s, dst, cap);
        if (r != MW_EAGAIN) return r;
        int ev = want_or(s, MW_WANT_READ);
        wait_streams(&s, &ev, 1, deadline);
    }
}

/* Reads exactly n bytes. */
static void read_exact(mw_stream_t *s, void *dst, size_t n) {
    for (size_t got = 0; got < n;) {
        ssize_t r = read_settled(s, (char *)dst + got, n - got);
        if (r < 0) fail_msg("read: %s (%s)", mw_errname((int)r), mw_stream_last_error(s));
        got += (size_t)r;
    }
}

static void write_all(mw_stream_t *s, const char *text) {
    int rc = mw__stream_write_all(s, text, strlen(text), WAIT_NS);
    if (rc != 0) fail_msg("write: %s (%s)", mw_errname(rc), mw_stream_last_error(s));
}

/* A message each way, read on the other side. */
static void exchange(mw_stream_t *c, mw_stream_t *s) {
    char buf[32] = {0};
    struct iovec out[3] = {{"ping", 4}, {"-", 1}, {"from client", 11}};
    ssize_t w = mw__stream_writev(c, out, 3);
    assert_int_equal(w, 16); /* an idle socket takes it all */
    read_exact(s, buf, 16);
    assert_memory_equal(buf, "ping-from client", 16);
    write_all(s, "pong from server");
    read_exact(c, buf, 16);
    assert_memory_equal(buf, "pong from server", 16);
}

static void assert_has(const char *text, const char *part) {
    if (!strstr(text, part)) fail_msg("\"%s\" does not mention \"%s\"", text, part);
}

/* The client's handshake fails with MW_ETLS and a text naming the cause. */
static void expect_client_failure(const char *cert, const char *key, const char *host,
                                  const char *cause) {
    mw__tls_ctx_t *sctx = server_ctx(cert, key), *cctx = client_ctx();
    mw__listener_t *l = listen_local(NULL);
    mw_stream_t *c, *s;
    tls_conn(l, cctx, sctx, host, &c, &s);
    int rc, rs;
    handshake2(c, s, &rc, &rs);
    if (rc != MW_ETLS) fail_msg("client: %s (%s)", mw_errname(rc), mw_stream_last_error(c));
    assert_true(rs < 0); /* the client's alert ends the server's handshake */
    const char *text = mw_stream_last_error(c);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "tls handshake with %s", host);
    assert_has(text, prefix);
    assert_has(text, cause);
    /* The failure is final: later calls repeat it. */
    char buf[8];
    assert_int_equal(mw__stream_read(c, buf, sizeof buf), MW_ETLS);
    assert_int_equal(mw__tls_handshake(c), MW_ETLS);
    assert_int_equal(mw__stream_want(c), 0);
    mw_stream_free(c);
    mw_stream_free(s);
    mw__listener_free(l);
    mw__tls_ctx_free(cctx);
    mw__tls_ctx_free(sctx);
}

/* ---- handshake and verification ------------------------------------------------------ */

static void test_tls_verified_handshake_and_data_both_ways(void **state) {
    (void)state;
    mw__tls_ctx_t *sctx = server_ctx("srv.pem", "srv.key"), *cctx = client_ctx();
    mw__listener_t *l = listen_local(NULL);
    mw_stream_t *ct = tcp_connect(mw__listener_port(l), NULL);
    int cfd = mw__stream_fd(ct);
    mw_stream_t *c = wrap(ct, cctx, "localhost");
    mw_stream_t *s = wrap(tcp_accept(l), sctx, NULL);
    /* Streams keep what they need: the contexts can go first. */
    mw__tls_ctx_free(cctx);
    mw__tls_ctx_free(sctx);

    assert_string_equal(c->ops->name, "tls");
    assert_ptr_equal(c->inner, ct);
    assert_int_equal(mw__stream_fd(c), cfd);
    assert_false(mw__is_tls(ct));
    assert_false(mw__is_tls(NULL));
    /* The handshake op sends the ClientHello and waits for the answer. */
    assert_int_equal(mw__stream_handshake(c), MW_EAGAIN);
    assert_int_equal(mw__stream_want(c), MW_WANT_READ);
    handshake_ok(c, s);
    assert_int_equal(mw__stream_handshake(c), 1);
    assert_int_equal(mw__stream_handshake(s), 1);
    assert_int_equal(mw__stream_pending(c), 0);
    assert_false(mw__stream_is_msg(c));
    assert_int_equal(mw__tls_handshake(c), 0); /* done stays done */
    assert_int_equal(mw__stream_want(c), 0);

    exchange(c, s);
    char buf[8];
    assert_int_equal(mw__stream_read(c, buf, sizeof buf), MW_EAGAIN);
    assert_int_equal(mw__stream_want(c), MW_WANT_READ);
    mw_stream_free(c);
    mw_stream_free(s);
    mw__listener_free(l);
}

/* True when fd has nothing to read now. */
static bool fd_quiet(int fd) {
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    return poll(&pf, 1, 0) == 0;
}

/* Input TLS has taken off the socket (a record read in part, records read
 * ahead) is reported by pending(), which is what a caller must go by: the
 * fd shows nothing. */
static void test_tls_pending_reports_input_the_socket_no_longer_shows(void **state) {
    (void)state;
    mw__tls_ctx_t *sctx = server_ctx("srv.pem", "srv.key"), *cctx = client_ctx();
    mw__listener_t *l = listen_local(NULL);
    mw_stream_t *c, *s;
    tls_conn(l, cctx, sctx, "localhost", &c, &s);
    handshake_ok(c, s);
    /* One byte first: the client takes the session tickets sent after the
     * handshake with it, so only the records below are on its socket next. */
    assert_int_equal(mw__stream_write(s, "x", 1), 1);
    char in[300];
    uint64_t deadline = mw__deadline_in(NULL, WAIT_NS);
    ssize_t r;
    while ((r = mw__stream_read(c, in, sizeof in)) == MW_EAGAIN) {
        int ev = want_or(c, MW_WANT_READ);
        wait_streams(&c, &ev, 1, deadline);
    }
    assert_int_equal(r, 1);
    assert_int_equal(mw__stream_pending(c), 0);
    /* Three records of 100 bytes, all on the client's socket before it reads. */
    char out[300];
    for (size_t i = 0; i < sizeof out; i++) out[i] = (char)('a' + i % 26);
    for (int k = 0; k < 3; k++) assert_int_equal(mw__stream_write(s, out + 100 * k, 100), 100);
    int fd = mw__stream_fd(c);
    for (int avail = 0; avail < 3 * (100 + 22);) { /* 100 bytes + TLS 1.3 record overhead */
        assert_true(mw__deadline_left(NULL, deadline) != 0);
        if (ioctl(fd, FIONREAD, &avail) < 0) fail_msg("FIONREAD: %s", strerror(errno));
        if (avail < 3 * (100 + 22)) sched_yield();
    }
    assert_int_equal(mw__stream_read(c, in, 10), 10); /* part of the first record */
    size_t got = 10;
    /* OpenSSL read ahead: the socket is empty, the rest is inside TLS. */
    assert_true(fd_quiet(fd));
    assert_true(mw__stream_pending(c) > 0);
    /* Reading while pending() says so gets everything, never waiting. */
    for (int i = 0; mw__stream_pending(c) > 0 && i < 100; i++) {
        r = mw__stream_read(c, in + got, sizeof in - got < 10 ? sizeof in - got : 10);
        assert_true(r > 0);
        got += (size_t)r;
    }
    assert_int_equal(got, sizeof in);
    assert_memory_equal(in, out, sizeof out);
    assert_int_equal(mw__stream_pending(c), 0);
    assert_true(fd_quiet(fd));
    assert_int_equal(mw__stream_read(c, in, sizeof in), MW_EAGAIN);
    mw_stream_free(c);
    mw_stream_free(s);
    mw__listener_free(l);
    mw__tls_ctx_free(cctx);
    mw__tls_ctx_free(sctx);
}

static void test_tls_server_starts_by_reading_and_client_by_writing(void **state) {
    (void)state;
    /* No explicit handshake: read and writev drive it. */
    mw__tls_ctx_t *sctx = server_ctx("srv.pem", "srv.key"), *cctx = client_ctx();
    mw__listener_t *l = listen_local(NULL);
    mw_stream_t *c, *s;
    tls_conn(l, cctx, sctx, "localhost", &c, &s);
    const char msg[] = "first bytes";
    size_t sent = 0, got = 0;
    char buf[sizeof msg] = {0};
    uint64_t deadline = mw__deadline_in(NULL, WAIT_NS);
    while (got < sizeof msg) {
        ssize_t w = sent < sizeof msg ? mw__stream_write(c, msg + sent, sizeof msg - sent) : 0;
        if (w > 0) sent += (size_t)w;
        ssize_t r = mw__stream_read(s, buf + got, sizeof buf - got);
        if (r > 0) got += (size_t)r;
        assert_true(w >= 0 || w == MW_EAGAIN);
        assert_true(r > 0 || r == MW_EAGAIN);
        mw_stream_t *ss[2] = {c, s};
        int ev[2] = {w == MW_EAGAIN ? want_or(c, MW_WANT_WRITE) : 0,
                     r == MW_EAGAIN ? want_or(s, MW_WANT_READ) : 0};
        if (w <= 0 && r <= 0 && (ev[0] || ev[1])) wait_streams(ss, ev, 2, deadline);
    }
    assert_memory_equal(buf, msg, sizeof msg);
    assert_int_equal(mw__stream_handshake(c), 1);
    mw_stream_free(c);
    mw_stream_free(s);
    mw__listener_free(l);
    mw__tls_ctx_free(cctx);
    mw__tls_ctx_free(sctx);
}

static void test_tls_verifies_an_ip_address_against_the_ip_san(void **state) {
    (void)state;
    mw__tls_ctx_t *sctx = server_ctx("srv.pem", "srv.key"), *cctx = client_ctx();
    mw__listener_t *l = listen_local(NULL);
    mw_stream_t *c, *s;
    tls_conn(l, cctx, sctx, "127.0.0.1", &c, &s);
    handshake_ok(c, s);
    exchange(c, s);
    mw_stream_free(c);
    mw_stream_free(s);
    mw__listener_free(l);
    mw__tls_ctx_free(cctx);
    mw__tls_ctx_free(sctx);
    /* wrong.pem names only wrong.example. */
    expect_client_failure("wrong.pem", "wrong.key", "127.0.0.1", "IP address mismatch");
}

static void test_tls_wrong_host_name_fails_with_hostname_mismatch(void **state) {
    (void)state;
    expect_client_failure("wrong.pem", "wrong.key", "localhost",
                          "certificate verify failed: hostname mismatch");
}

static void test_tls_self_signed_server_fails_verification(void **state) {
    (void)state;
    expect_client_failure("self.pem", "self.key", "localhost",
                          "certificate verify failed: self-signed certificate");
}

static void test_tls_expired_server_certificate_fails(void **state) {
    (void)state;
    expect_client_failure("expired.pem", "srv.key", "localhost",
                          "certificate verify failed: certificate has expired");
}

static void test_tls_server_name_option_wins_over_the_host(void **state) {
    (void)state;
    mw__tls_ctx_t *sctx = server_ctx("wrong.pem", "wrong.key");
    mw_tls_opts_t o;
    mw__tls_opts_init(&o);
    o.ca_file = f("ca.pem");
    o.server_name = "wrong.example";
    mw__tls_ctx_t *cctx = ctx_new(false, &o);
    mw__listener_t *l = listen_local(NULL);
    mw_stream_t *c, *s;
    tls_conn(l, cctx, sctx, "127.0.0.1", &c, &s);
    handshake_ok(c, s);
    exchange(c, s);
    mw_stream_free(c);
    mw_stream_free(s);
    mw__listener_free(l);
    mw__tls_ctx_free(cctx);
    mw__tls_ctx_free(sctx);
}

static void test_tls_insecure_skip_verify_accepts_self_signed(void **state) {
    (void)state;
    mw__tls_ctx_t *sctx = server_ctx("self.pem", "self.key");
    mw_tls_opts_t o;
    mw__tls_opts_init(&o);
    o.insecure_skip_verify = true;
    mw__tls_ctx_t *cctx = ctx_new(false, &o);
    mw__listener_t *l = listen_local(NULL);
    mw_stream_t *c, *s;
    tls_conn(l, cctx, sctx, NULL, &c, &s); /* no name needed either */
    handshake_ok(c, s);
    exchange(c, s);
    mw_stream_free(c);
    mw_stream_free(s);
    mw__listener_free(l);
    mw__tls_ctx_free(cctx);
    mw__tls_ctx_free(sctx);
}

static void test_tls_required_client_certificate(void **state) {
    (void)state;
    mw_tls_opts_t so;
    mw__tls_opts_init(&so);
    so.cert_file = f("srv.pem");
    so.key_file = f("srv.key");
    so.ca_file = f("ca.pem");
    so.verify_client = true;
    mw__tls_ctx_t *sctx = ctx_new(true, &so), *anon = client_ctx();
    mw_tls_opts_t co;
    mw__tls_opts_init(&co);
    co.ca_file = f("ca.pem");
    co.cert_file = f("cli.pem");
    co.key_file = f("cli.key");
    mw__tls_ctx_t *with_cert = ctx_new(false, &co);
    mw__listener_t *l = listen_local(NULL);

    /* Without a certificate: the server refuses. A TLS 1.3 client has
     * finished its side by then and learns it from the alert. */
    mw_stream_t *c, *s;
    tls_conn(l, anon, sctx, "localhost", &c, &s);
    int rc, rs;
    handshake2(c, s, &rc, &rs);
    assert_int_equal(rs, MW_ETLS);
    assert_has(mw_stream_last_error(s), "peer did not return a certificate");
    if (rc == 0) {
        char buf[8];
        rc = (int)read_settled(c, buf, sizeof buf);
    }
    assert_int_equal(rc, MW_ETLS);
    assert_has(mw_stream_last_error(c), "certificate required");
    mw_stream_free(c);
    mw_stream_free(s);

    /* With one signed by the CA: accepted. */
    tls_conn(l, with_cert, sctx, "localhost", &c, &s);
    handshake_ok(c, s);
    exchange(c, s);
    mw_stream_free(c);
    mw_stream_free(s);
    mw__listener_free(l);
    mw__tls_ctx_free(with_cert);
    mw__tls_ctx_free(anon);
    mw__tls_ctx_free(sctx);
}

/* ---- plaintext peers ------------------------------------------------------------------ */

/* A plaintext client sends `bytes`; the TLS server end fails with a text
 * that says the peer is not speaking TLS. */
static void plaintext_client(mw__listener_t *l, mw__tls_ctx_t *sctx, const void *bytes, size_t n,
                             const char *cause) {
    mw_stream_t *raw = tcp_connect(mw__listener_port(l), NULL);
    assert_int_equal(mw__stream_write(raw, bytes, n), (ssize_t)n);
    mw_stream_t *s = wrap(tcp_accept(l), sctx, NULL);
    int rs = handshake1(s);
    if (rs != MW_ETLS) fail_msg("server: %s (%s)", mw_errname(rs), mw_stream_last_error(s));
    assert_has(mw_stream_last_error(s), "tls handshake with 127.0.0.1:");
    assert_has(mw_stream_last_error(s), cause);
    assert_has(mw_stream_last_error(s), "(is the peer speaking TLS?)");
    mw_stream_free(s);
    char buf[64];
    assert_int_equal(read_settled(raw, buf, sizeof buf), MW_ECLOSED);
    mw_stream_free(raw);
}

static void test_tls_plaintext_client_fails_clearly_and_listener_keeps_serving(void **state) {
    (void)state;
    mw__tls_ctx_t *sctx = server_ctx("srv.pem", "srv.key"), *cctx = client_ctx();
    mw__listener_t *l = listen_local(NULL);
    const char http[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    plaintext_client(l, sctx, http, sizeof http - 1, "http request");
    /* A msgwire u32be-framed message. */
    const unsigned char frame[] = {0, 0, 0, 8, 'm', 's', 'g', 'w', 'i', 'r', 'e', '!'};
    plaintext_client(l, sctx, frame, sizeof frame, "wrong version number");

    mw_stream_t *c, *s;
    tls_conn(l, cctx, sctx, "localhost", &c, &s);
    handshake_ok(c, s);
    exchange(c, s);
    mw_stream_free(c);
    mw_stream_free(s);
    mw__listener_free(l);
    mw__tls_ctx_free(cctx);
    mw__tls_ctx_free(sctx);
}

/* A TLS client against a plaintext server that, having read the
 * ClientHello, answers with `reply` (NULL: hangs up). */
static int tls_to_plaintext(const char *reply, mw_stream_t **cout) {
    mw__tls_ctx_t *cctx = client_ctx();
    mw__listener_t *l = listen_local(NULL);
    mw_stream_t *c = wrap(tcp_connect(mw__listener_port(l), NULL), cctx, "localhost");
    mw__tls_ctx_free(cctx);
    mw_stream_t *raw = tcp_accept(l);
    assert_int_equal(mw__tls_handshake(c), MW_EAGAIN);
    unsigned char hello[4096];
    ssize_t n = read_settled(raw, hello, sizeof hello);
    assert_true(n > 5);
    assert_int_equal(hello[0], 0x16); /* a TLS handshake record */
    if (reply)
        write_all(raw, reply);
    else
        mw__stream_close(raw);
    int rc = handshake1(c);
    mw_stream_free(raw);
    mw__listener_free(l);
    *cout = c;
    return rc;
}

static void test_tls_client_to_plaintext_server_fails_clearly(void **state) {
    (void)state;
    mw_stream_t *c;
    int rc = tls_to_plaintext("HTTP/1.1 400 Bad Request\r\n\r\n", &c);
    assert_int_equal(rc, MW_ETLS);
    assert_has(mw_stream_last_error(c), "tls handshake with localhost (127.0.0.1:");
    assert_has(mw_stream_last_error(c), "wrong version number (is the peer speaking TLS?)");
    mw_stream_free(c);

    rc = tls_to_plaintext(NULL, &c);
    assert_int_equal(rc, MW_ECLOSED);
    assert_has(mw_stream_last_error(c), "peer closed the connection during the handshake");
    mw_stream_free(c);
}

/* ---- data --------------------------------------------------------------------------------- */

static uint8_t pattern(size_t i, uint32_t seed) {
    uint32_t x = (uint32_t)i * 2654435761u ^ seed;
    x ^= x >> 15;
    x *= 2246822519u;
    return (uint8_t)(x ^ (x >> 13));
}

typedef struct flow {
    mw_stream_t *w, *r;
    const uint8_t *src;
    uint8_t *dst;
    size_t n, sent, got;
    int wev, rev;           /* what each end waits for after MW_EAGAIN; 0: try */
    size_t partial, eagain; /* writes that took less than offered, or nothing */
} flow_t;

/* One write attempt: three iovecs of shapes that depend only on the offset,
 * so a retry offers the same bytes (OpenSSL requires it). */
static bool flow_write(flow_t *fl) {
    if (fl->sent == fl->n || fl->wev) return false;
    size_t left = fl->n - fl->sent;
    size_t a = 1 + fl->sent % 13, b = 5000, c = 100000;
    a = a < left ? a : left;
    b = b < left - a ? b : left - a;
    c = c < left - a - b ? c : left - a - b;
    const uint8_t *p = fl->src + fl->sent;
    struct iovec iov[3] = {{(void *)p, a}, {(void *)(p + a), b}, {(void *)(p + a + b), c}};
    ssize_t w = mw__stream_writev(fl->w, iov, 3);
    if (w == MW_EAGAIN) {
        fl->eagain++;
        fl->wev = want_or(fl->w, MW_WANT_WRITE);
        return false;
    }
    if (w < 0) fail_msg("write: %s (%s)", mw_errname((int)w), mw_stream_last_error(fl->w));
    if ((size_t)w < a + b + c) fl->partial++;
    fl->sent += (size_t)w;
    return true;
}

static bool flow_read(flow_t *fl) {
    if (fl->got == fl->n || fl->rev) return false;
    size_t cap = fl->n - fl->got < 16384 ? fl->n - fl->got : 16384;
    ssize_t r = mw__stream_read(fl->r, fl->dst + fl->got, cap);
    if (r == MW_EAGAIN) {
        fl->rev = want_or(fl->r, MW_WANT_READ);
        return false;
    }
    if (r < 0) fail_msg("read: %s (%s)", mw_errname((int)r), mw_stream_last_error(fl->r));
    fl->got += (size_t)r;
    return true;
}

/* Moves both flows to the end, waiting on every blocked end when a round
 * makes no progress. */
static void pump(flow_t *fl, int n) {
    uint64_t deadline = mw__deadline_in(NULL, 4 * WAIT_NS);
    for (;;) {
        bool progress = false, done = true;
        for (int i = 0; i < n; i++) {
            progress |= flow_write(&fl[i]);
            progress |= flow_read(&fl[i]);
            done &= fl[i].got == fl[i].n;
        }
        if (done) return;
        if (progress) continue;
        mw_stream_t *ss[4];
        int ev[4];
        for (int i = 0; i < n; i++) {
            ss[2 * i] = fl[i].w, ev[2 * i] = fl[i].sent < fl[i].n ? fl[i].wev : 0;
            ss[2 * i + 1] = fl[i].r, ev[2 * i + 1] = fl[i].got < fl[i].n ? fl[i].rev : 0;
        }
        wait_streams(ss, ev, 2 * n, deadline);
        for (int i = 0; i < n; i++) fl[i].wev = fl[i].rev = 0; /* try everything again */
    }
}

static void test_tls_4mib_both_ways_byte_exact_with_partial_writes(void **state) {
    (void)state;
    mw__tls_ctx_t *sctx = server_ctx("srv.pem", "srv.key"), *cctx = client_ctx();
    mw_tcp_opts_t o; /* small socket buffers: writes must come back partial */
    mw__tcp_opts_init(&o);
    o.sndbuf = o.rcvbuf = 32768;
    mw__listener_t *l = listen_local(&o);
    mw_stream_t *c = wrap(tcp_connect(mw__listener_port(l), &o), cctx, "localhost");
    mw_stream_t *s = wrap(tcp_accept(l), sctx, NULL);
    handshake_ok(c, s);

    uint8_t *src[2], *dst[2];
    for (int k = 0; k < 2; k++) {
        src[k] = malloc(BIG);
        dst[k] = malloc(BIG);
        assert_non_null(src[k]);
        assert_non_null(dst[k]);
        for (size_t i = 0; i < BIG; i++) src[k][i] = pattern(i, 17u + (uint32_t)k);
    }
    flow_t fl[2] = {{.w = c, .r = s, .src = src[0], .dst = dst[0], .n = BIG},
                    {.w = s, .r = c, .src = src[1], .dst = dst[1], .n = BIG}};
    pump(fl, 2);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(fl[k].sent, BIG);
        assert_memory_equal(dst[k], src[k], BIG);
        assert_true(fl[k].partial > 0);
        assert_true(fl[k].eagain > 0);
        free(src[k]);
        free(dst[k]);
    }
    mw_stream_free(c);
    mw_stream_free(s);
    mw__listener_free(l);
    mw__tls_ctx_free(cctx);
    mw__tls_ctx_free(sctx);
}

static void test_tls_over_a_pair_split_at_every_byte(void **state) {
    (void)state;
    /* One byte per inner read: every record header and body arrives split. */
    mw__tls_ctx_t *sctx = server_ctx("srv.pem", "srv.key"), *cctx = client_ctx();
    mw_stream_t *a, *b;
    assert_int_equal(mw__pair_new(&a, &b, 65536, 1), 0);
    mw_stream_t *c = wrap(a, cctx, "localhost"), *s = wrap(b, sctx, NULL);
    assert_int_equal(mw__stream_fd(c), -1);
    handshake_ok(c, s);
    enum { N = 100000 };
    uint8_t *src = malloc(N), *dst = malloc(N);
    assert_non_null(src);
    assert_non_null(dst);
    for (size_t i = 0; i < N; i++) src[i] = pattern(i, 5);
    flow_t fl[1] = {{.w = c, .r = s, .src = src, .dst = dst, .n = N}};
    pump(fl, 1);
    assert_memory_equal(dst, src, N);
    free(src);
    free(dst);
    mw_stream_free(c);
    mw_stream_free(s);
    mw__tls_ctx_free(cctx);
    mw__tls_ctx_free(sctx);
}

/* wss over the in-process pair, driven by the handshake op alone: each
 * decorator completes the TLS handshake below it before its own upgrade,
 * and a message sent right behind the 101 is reported by pending(). */
static void test_tls_wss_handshake_op_steps_through_both_layers_over_a_pair(void **state) {
    (void)state;
    mw__tls_ctx_t *sctx = server_ctx("srv.pem", "srv.key"), *cctx = client_ctx();
    mw_stream_t *a, *b, *c, *s;
    assert_int_equal(mw__pair_new(&a, &b, 65536, 0), 0);
    mw_err_t err = {0};
    assert_int_equal(mw_ws_client_wrap(&c, wrap(a, cctx, "localhost"), NULL, &err), 0);
    assert_int_equal(mw__ws_server_wrap(&s, wrap(b, sctx, NULL), NULL, &err), 0);
    mw__tls_ctx_free(cctx);
    mw__tls_ctx_free(sctx);
    int rc = MW_EAGAIN, rs = MW_EAGAIN, steps = 0;
    struct iovec m = {(void *)"first", 5};
    while (rc != 1 || rs != 1) {
        assert_true(++steps < 100);
        if (rc != 1) rc = mw__stream_handshake(c);
        if (rs != 1) {
            rs = mw__stream_handshake(s);
            if (rs == 1) assert_int_equal(mw__stream_writemsgs(s, &m, 1, 0), 1);
        }
        assert_true(rc == 1 || rc == MW_EAGAIN);
        assert_true(rs == 1 || rs == MW_EAGAIN);
    }
    assert_true(steps >= 3); /* TLS flights, then the upgrade: no single step */
    /* The message's record came with the 101's: still inside TLS, which
     * pending() counts through the WebSocket layer. A read gets it now. */
    assert_true(mw__stream_pending(c) > 0);
    char in[16];
    assert_int_equal(mw__stream_readmsg(c, in, sizeof in, 0, NULL), 5);
    assert_memory_equal(in, "first", 5);
    assert_int_equal(mw__stream_pending(c), 0);
    assert_int_equal(mw__stream_readmsg(c, in, sizeof in, 0, NULL), MW_EAGAIN);
    mw_stream_free(c);
    mw_stream_free(s);
}

/* OpenSSL 3.0 mallocs and frees small WPACKET bookkeeping for every record
 * (measured: three per record written, one per record read); the TLS stream
 * itself adds nothing, so a message costs at most four. */
static void test_tls_steady_state_allocations_are_only_openssl_record_bookkeeping(void **state) {
    (void)state;
    if (!mw_alloc_counting_works()) skip();
    mw__tls_ctx_t *sctx = server_ctx("srv.pem", "srv.key"), *cctx = client_ctx();
    mw__listener_t *l = listen_local(NULL);
    mw_stream_t *c, *s;
    tls_conn(l, cctx, sctx, "localhost", &c, &s);
    handshake_ok(c, s);
    char msg[100], buf[100];
    memset(msg, 'm', sizeof msg);
    struct iovec iov[2] = {{msg, 4}, {msg + 4, sizeof msg - 4}};
    uint64_t before = 0;
    for (int i = 0; i < 1100; i++) {
        if (i == 100) before = mw_alloc_count(); /* after warm-up */
        assert_int_equal(mw__stream_writev(c, iov, 2), (ssize_t)sizeof msg);
        read_exact(s, buf, sizeof buf);
        assert_int_equal(mw__stream_writev(s, iov, 2), (ssize_t)sizeof msg);
        read_exact(c, buf, sizeof buf);
    }
    uint64_t allocs = mw_alloc_count() - before;
    mw_stream_free(c);
    mw_stream_free(s);
    mw__listener_free(l);
    mw__tls_ctx_free(cctx);
    mw__tls_ctx_free(sctx);
    if (allocs > 4 * 2000) fail_msg("%llu allocations for 2000 messages", (unsigned long long)allocs);
}

/* ---- closing --------------------------------------------------------------------------- */

static void test_tls_clean_shutdown_reads_closed(void **state) {
    (void)state;
    mw__tls_ctx_t *sctx = server_ctx("srv.pem", "srv.key"), *cctx = client_ctx();
    mw__listener_t *l = listen_local(NULL);
    mw_stream_t *c, *s;
    tls_conn(l, cctx, sctx, "localhost", &c, &s);
    handshake_ok(c, s);

    /* close_notify after data: the data first, then MW_ECLOSED. */
    write_all(c, "last words");
    mw__tls_shutdown(c);
    mw__tls_shutdown(c); /* once is enough; again is harmless */
    char buf[16];
    read_exact(s, buf, 10);
    assert_memory_equal(buf, "last words", 10);
    assert_int_equal(read_settled(s, buf, sizeof buf), MW_ECLOSED);
    assert_has(mw_stream_last_error(s), "close_notify");
    assert_int_equal(mw__stream_read(s, buf, sizeof buf), MW_ECLOSED);

    /* Closing sends close_notify too, and is idempotent. */
    mw__stream_close(s);
    mw__stream_close(s);
    assert_int_equal(read_settled(c, buf, sizeof buf), MW_ECLOSED);
    assert_has(mw_stream_last_error(c), "closed by peer (close_notify)");
    assert_int_equal(mw__stream_read(s, buf, sizeof buf), MW_ECLOSED);
    assert_int_equal(mw__stream_write(s, "x", 1), MW_ECLOSED);
    mw_stream_free(c);
    mw_stream_free(s);

    /* A peer that just drops the TCP connection: closed, but said so. */
    tls_conn(l, cctx, sctx, "localhost", &c, &s);
    handshake_ok(c, s);
    assert_int_equal(shutdown(mw__stream_fd(c), SHUT_WR), 0);
    assert_int_equal(read_settled(s, buf, sizeof buf), MW_ECLOSED);
    assert_has(mw_stream_last_error(s), "peer closed without close_notify");
    mw_stream_free(c);
    mw_stream_free(s);
    mw__listener_free(l);
    mw__tls_ctx_free(cctx);
    mw__tls_ctx_free(sctx);
}

static void test_tls_write_to_departed_peer_is_closed_not_sigpipe(void **state) {
    (void)state;
    mw__tls_ctx_t *sctx = server_ctx("srv.pem", "srv.key"), *cctx = client_ctx();
    mw__listener_t *l = listen_local(NULL);
    mw_stream_t *c, *s;
    tls_conn(l, cctx, sctx, "localhost", &c, &s);
    handshake_ok(c, s);
    mw_stream_free(s);
    static char chunk[65536];
    uint64_t deadline = mw__deadline_in(NULL, WAIT_NS);
    ssize_t w;
    while ((w = mw__stream_write(c, chunk, sizeof chunk)) >= 0 || w == MW_EAGAIN) {
        int ev = want_or(c, MW_WANT_WRITE);
        if (w == MW_EAGAIN) wait_streams(&c, &ev, 1, deadline);
        assert_false(mw__deadline_passed(NULL, deadline));
    }
    assert_int_equal(w, MW_ECLOSED);
    assert_has(mw_stream_last_error(c), "tls write localhost (127.0.0.1:");
    mw_stream_free(c);
    mw__listener_free(l);
    mw__tls_ctx_free(cctx);
    mw__tls_ctx_free(sctx);
}

/* ---- the error queue ------------------------------------------------------------------ */

static void test_tls_stale_openssl_errors_do_not_leak_into_a_connection(void **state) {
    (void)state;
    mw__tls_ctx_t *sctx = server_ctx("srv.pem", "srv.key"), *cctx = client_ctx();
    mw__listener_t *l = listen_local(NULL);
    mw_stream_t *c, *s;
    tls_conn(l, cctx, sctx, "localhost", &c, &s);
    /* Someone else's failure left on this thread's queue. */
    ERR_raise(ERR_LIB_SSL, SSL_R_CERTIFICATE_VERIFY_FAILED);
    handshake_ok(c, s);
    ERR_raise(ERR_LIB_SSL, SSL_R_WRONG_VERSION_NUMBER);
    char buf[8];
    assert_int_equal(mw__stream_read(c, buf, sizeof buf), MW_EAGAIN);
    ERR_raise(ERR_LIB_SSL, SSL_R_WRONG_VERSION_NUMBER);
    exchange(c, s);
    mw_stream_free(c);
    mw_stream_free(s);
    mw__listener_free(l);
    mw__tls_ctx_free(cctx);
    mw__tls_ctx_free(sctx);
}

/* ---- configuration errors ------------------------------------------------------------- */

static void expect_ctx_error(bool server, const mw_tls_opts_t *o, const char *part) {
    mw__tls_ctx_t *ctx = NULL;
    mw_err_t err = {0};
    assert_int_equal(mw__tls_ctx_new(&ctx, server, o, &err), MW_EINVAL);
    assert_null(ctx);
    assert_has(mw_err_text(&err), part);
}

static void test_tls_ctx_rejects_bad_configuration_with_text(void **state) {
    (void)state;
    mw_tls_opts_t o;
    mw__tls_opts_init(&o);
    expect_ctx_error(true, &o, "cert_file and key_file are required");
    o.cert_file = f("missing.pem");
    o.key_file = f("srv.key");
    expect_ctx_error(true, &o, "missing.pem: No such file or directory");
    o.cert_file = f("x.cnf"); /* readable, not a certificate */
    expect_ctx_error(true, &o, "x.cnf: no PEM data found");
    o.cert_file = f("srv.pem");
    o.key_file = f("self.key");
    expect_ctx_error(true, &o, "does not match certificate");
    o.key_file = f("srv.key");
    o.verify_client = true;
    expect_ctx_error(true, &o, "verify_client needs ca_file");
    mw__tls_opts_init(&o);
    o.ca_file = f("nope.pem");
    expect_ctx_error(false, &o, "nope.pem: No such file or directory");
    o.ca_file = NULL;
    o.cert_file = f("cli.pem");
    expect_ctx_error(false, &o, "go together");

    /* A verifying client needs a name; the TCP stream is freed regardless
     * (the leak checker would say otherwise). */
    mw__tls_ctx_t *cctx = client_ctx();
    mw__listener_t *l = listen_local(NULL);
    mw_stream_t *out = NULL;
    mw_err_t err = {0};
    assert_int_equal(mw__tls_wrap(&out, tcp_connect(mw__listener_port(l), NULL), cctx, NULL, &err),
                     MW_EINVAL);
    assert_null(out);
    assert_has(mw_err_text(&err), "host name is needed");
    mw__listener_free(l);
    mw__tls_ctx_free(cctx);
    mw__tls_ctx_free(NULL);
}

/* ---- interop ------------------------------------------------------------------------- */

static void test_tls_client_interop_with_openssl_s_server(void **state) {
    (void)state;
    char *argv[] = {"openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", (char *)f("srv.pem"),
                    "-key", (char *)f("srv.key"), "-rev", "-naccept", "1", NULL};
    proc_t *p = spawn(argv, f("s_server.log"));
    char out[4096] = "";
    if (!proc_read_until(p, out, sizeof out, "ACCEPT 127.0.0.1:") ||
        !proc_read_until(p, out, sizeof out, "\n"))
        fail_msg("s_server did not start: \"%s\"", out);
    int port = atoi(strstr(out, "ACCEPT 127.0.0.1:") + 17);
    assert_true(port > 0);

    mw__tls_ctx_t *cctx = client_ctx();
    mw_stream_t *c = wrap(tcp_connect(port, NULL), cctx, "localhost");
    int rc = handshake1(c);
    if (rc != 0) fail_msg("handshake with s_server: %s", mw_stream_last_error(c));
    write_all(c, "hello from msgwire\n");
    char buf[32] = {0};
    read_exact(c, buf, 19);
    assert_string_equal(buf, "eriwgsm morf olleh\n");
    mw_stream_free(c);
    mw__tls_ctx_free(cctx);
    proc_end(p);
}

static void test_tls_server_interop_with_openssl_s_client(void **state) {
    (void)state;
    mw__tls_ctx_t *sctx = server_ctx("srv.pem", "srv.key");
    mw__listener_t *l = listen_local(NULL);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", mw__listener_port(l));
    char *argv[] = {"openssl", "s_client", "-connect", addr, "-CAfile", (char *)f("ca.pem"),
                    "-verify_return_error", "-verify_ip", "127.0.0.1", "-quiet", NULL};
    proc_t *p = spawn(argv, f("s_client.log"));
    const char ping[] = "ping from s_client\n";
    assert_int_equal(write(p->in, ping, sizeof ping - 1), (ssize_t)(sizeof ping - 1));

    mw_stream_t *s = wrap(tcp_accept(l), sctx, NULL);
    int rc = handshake1(s);
    if (rc != 0) fail_msg("handshake with s_client: %s", mw_stream_last_error(s));
    char buf[32] = {0};
    read_exact(s, buf, sizeof ping - 1);
    assert_string_equal(buf, ping);
    write_all(s, "pong from msgwire\n");
    mw_stream_free(s); /* with close_notify: s_client exits */

    char out[1024] = "";
    if (!proc_read_until(p, out, sizeof out, "pong from msgwire\n"))
        fail_msg("s_client printed \"%s\"", out);
    assert_true(mw_wait_until(exited, p, 10000));
    assert_int_equal(p->status, 0);
    proc_end(p);
    mw__listener_free(l);
    mw__tls_ctx_free(sctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_teardown(fn, test_teardown)
        T(test_tls_verified_handshake_and_data_both_ways),
        T(test_tls_server_starts_by_reading_and_client_by_writing),
    T(test_tls_pending_reports_input_the_socket_no_longer_shows),
        T(test_tls_verifies_an_ip_address_against_the_ip_san),
        T(test_tls_wrong_host_name_fails_with_hostname_mismatch),
        T(test_tls_self_signed_server_fails_verification),
        T(test_tls_expired_server_certificate_fails),
        T(test_tls_server_name_option_wins_over_the_host),
        T(test_tls_insecure_skip_verify_accepts_self_signed),
        T(test_tls_required_client_certificate),
        T(test_tls_plaintext_client_fails_clearly_and_listener_keeps_serving),
        T(test_tls_client_to_plaintext_server_fails_clearly),
        T(test_tls_4mib_both_ways_byte_exact_with_partial_writes),
        T(test_tls_over_a_pair_split_at_every_byte),
        T(test_tls_wss_handshake_op_steps_through_both_layers_over_a_pair),
        T(test_tls_steady_state_allocations_are_only_openssl_record_bookkeeping),
        T(test_tls_clean_shutdown_reads_closed),
        T(test_tls_write_to_departed_peer_is_closed_not_sigpipe),
        T(test_tls_stale_openssl_errors_do_not_leak_into_a_connection),
        T(test_tls_ctx_rejects_bad_configuration_with_text),
        T(test_tls_client_interop_with_openssl_s_server),
        T(test_tls_server_interop_with_openssl_s_client),
#undef T
    };
    return mw_run_group_requiring(mw_have_openssl_cli(), "the openssl command (Debian package openssl)", tests, group_setup,
                                  NULL);
}
