/* test_ws_interop.c - our WebSocket against an independent implementation,
 * Python's websockets package (tests/py/ws_peer.py), over TCP on 127.0.0.1:
 *   1. our client (mw_ws_client_wrap) against the Python echo server;
 *   2. the Python client against our server (an echo loop over records with
 *      MW_WS_RECORD_OPCODE, so text comes back as text and binary as binary).
 * Both ways cover text and binary, fragmented messages, 1 MiB messages, a
 * ping, a subprotocol and the close handshake. The Python process is managed
 * by pid: every wait has a deadline, and it is always killed and reaped. */
#include "mw_test.h"

#include "mw_clock.h"
#include "mw_tcp.h"
#include "mw_ws.h"
#include "stream_impl.h"
#include "tcp_impl.h"
#include "ws_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PEER MW_SRC_ROOT "/tests/py/ws_peer.py"
#define WAIT_NS (30 * MW_NS_PER_S)
#define MIB (1u << 20)

/* ---- the Python process ------------------------------------------------------- */

typedef struct child {
    pid_t pid;
    int out; /* its stdout */
    char text[4096];
    size_t len;
    int status;
} child_t;

static void child_start(child_t *c, const char *a1, const char *a2, const char *a3) {
    memset(c, 0, sizeof *c);
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) fail_msg("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(p[1], 1); /* the duplicate does not inherit O_CLOEXEC */
        char *argv[] = {(char *)MW_PYTHON, (char *)PEER, (char *)a1, (char *)a2, (char *)a3, NULL};
        execv(MW_PYTHON, argv);
        _exit(127);
    }
    close(p[1]);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    c->pid = pid;
    c->out = p[0];
    c->status = -1;
}

static void child_read(child_t *c) {
    ssize_t n;
    while (c->len + 1 < sizeof c->text && (n = read(c->out, c->text + c->len, sizeof c->text - 1 - c->len)) > 0)
        c->len += (size_t)n;
    c->text[c->len] = '\0';
}

/* True once the process has exited (status in c->status). */
static bool child_exited(child_t *c) {
    if (c->pid <= 0) return true;
    int st;
    if (waitpid(c->pid, &st, WNOHANG) != c->pid) return false;
    child_read(c);
    c->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    c->pid = 0;
    return true;
}

/* Waits for the exit (watching its stdout meanwhile); kills it at the deadline. */
static int child_wait(child_t *c, int64_t timeout_ns) {
    uint64_t dl = mw_now_ns() + (uint64_t)timeout_ns;
    while (!child_exited(c)) {
        if (mw_now_ns() > dl) {
            kill(c->pid, SIGKILL);
            waitpid(c->pid, NULL, 0);
            c->pid = 0;
            fail_msg("python peer did not exit in time; output: %s", c->text);
        }
        struct pollfd p = {.fd = c->out, .events = POLLIN};
        poll(&p, 1, 10);
        child_read(c);
    }
    return c->status;
}

static void child_stop(child_t *c) {
    if (c->pid > 0) {
        kill(c->pid, SIGKILL);
        waitpid(c->pid, NULL, 0);
        c->pid = 0;
    }
    if (c->out >= 0) close(c->out);
    c->out = -1;
}

/* ---- helpers ---------------------------------------------------------------------- */

static size_t rec_put(uint8_t *out, int op, const void *p, size_t n) {
    out[0] = (uint8_t)op;
    out[1] = (uint8_t)(n >> 24), out[2] = (uint8_t)(n >> 16), out[3] = (uint8_t)(n >> 8), out[4] = (uint8_t)n;
    if (n) memcpy(out + 5, p, n);
    return 5 + n;
}

static void check_deadline(uint64_t dl, child_t *c, const char *what) {
    if (mw_now_ns() > dl) fail_msg("timed out: %s", what);
    if (c && child_exited(c)) fail_msg("%s: python peer exited early (%d): %s", what, c->status, c->text);
}

static void wait_stream(mw_stream_t *s, int extra) {
    int w = mw__stream_want(s) | extra;
    mw__stream_wait(s, w ? w : MW_WANT_READ, 20 * MW_NS_PER_MS);
}

/* Sends out[0..n) as records and reads back exactly n bytes into in,
 * interleaving both so neither side's buffers have to hold everything. */
static void exchange(mw_stream_t *s, child_t *c, const uint8_t *out, size_t n, uint8_t *in) {
    uint64_t dl = mw_now_ns() + WAIT_NS;
    size_t sent = 0, got = 0;
    while (got < n) {
        bool progress = false;
        if (sent < n) {
            ssize_t w = mw__stream_write(s, out + sent, n - sent);
            if (w > 0) sent += (size_t)w, progress = true;
            else if (w != MW_EAGAIN && w != 0) fail_msg("write: %s", mw_stream_last_error(s));
        } else if (mw__stream_want(s) & MW_WANT_WRITE) {
            ssize_t f = mw__stream_writev(s, NULL, 0);
            if (f < 0 && f != MW_EAGAIN) fail_msg("flush: %s", mw_stream_last_error(s));
        }
        ssize_t r = mw__stream_read(s, in + got, n - got);
        if (r > 0) got += (size_t)r, progress = true;
        else if (r != MW_EAGAIN) fail_msg("read after %zu of %zu bytes: %s", got, n, mw_stream_last_error(s));
        if (!progress) {
            check_deadline(dl, c, "exchange");
            wait_stream(s, sent < n ? MW_WANT_WRITE : 0);
        }
    }
}

static void handshake(mw_stream_t *s, child_t *c) {
    uint64_t dl = mw_now_ns() + WAIT_NS;
    int r;
    while ((r = mw__stream_handshake(s)) == MW_EAGAIN) {
        check_deadline(dl, c, "handshake");
        wait_stream(s, 0);
    }
    if (r != 1) fail_msg("handshake: %s", mw_stream_last_error(s));
}

/* ---- 1. our client, Python's server ---------------------------------------------- */

static int read_port(const char *path) {
    FILE *f = fopen(path, "r");
    int port = 0;
    if (f) {
        if (fscanf(f, "%d", &port) != 1) port = 0;
        fclose(f);
    }
    return port;
}

static void test_ws_interop_our_client_with_python_echo_server(void **state) {
    (void)state;
    char dir[] = "/tmp/mw_ws_interop_XXXXXX", portfile[64];
    assert_non_null(mkdtemp(dir));
    snprintf(portfile, sizeof portfile, "%s/port", dir);
    child_t c;
    child_start(&c, "server", portfile, NULL);
    /* wait for the port file, watching the process */
    uint64_t dl = mw_now_ns() + WAIT_NS;
    int port;
    while ((port = read_port(portfile)) == 0) {
        check_deadline(dl, &c, "python server port");
        struct pollfd p = {.fd = c.out, .events = POLLIN};
        poll(&p, 1, 5);
    }
    unlink(portfile);
    rmdir(dir);
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    mw_stream_t *tcp, *s;
    mw_err_t err = {0};
    if (mw__tcp_connect(&tcp, "127.0.0.1", ps, NULL, WAIT_NS, &err) != 0) fail_msg("connect: %s", mw_err_text(&err));
    mw_ws_opts_t o;
    mw_ws_opts_init(&o);
    o.path = "/echo";
    o.subprotocol = "msgwire";
    o.max_msg = 4 * MIB;
    o.flags = MW_WS_RECORD_OPCODE;
    assert_int_equal(mw_ws_client_wrap(&s, tcp, &o, &err), 0);
    handshake(s, &c);
    assert_string_equal(mw__ws_subprotocol(s), "msgwire");
    /* 50 text and 50 binary messages in one write */
    size_t cap = 2 * MIB + 64;
    uint8_t *out = malloc(cap), *in = malloc(cap);
    size_t n = 0;
    for (int i = 0; i < 50; i++) {
        char m[64];
        int k = snprintf(m, sizeof m, "text %d: h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", i);
        n += rec_put(out + n, MW_WS_TEXT, m, (size_t)k);
        uint8_t b[16] = {(uint8_t)i, 0, 0xff, 0x80};
        n += rec_put(out + n, MW_WS_BINARY, b, sizeof b);
    }
    exchange(s, &c, out, n, in);
    assert_memory_equal(in, out, n);
    /* 1 MiB of each */
    n = 0;
    uint8_t *p = malloc(MIB);
    for (size_t i = 0; i < MIB; i++) p[i] = (uint8_t)('a' + i % 26);
    n += rec_put(out + n, MW_WS_TEXT, p, MIB);
    for (size_t i = 0; i < MIB; i++) p[i] = (uint8_t)(i * 7 + 3);
    n += rec_put(out + n, MW_WS_BINARY, p, MIB);
    exchange(s, &c, out, n, in);
    assert_memory_equal(in, out, n);
    free(p);
    /* a ping is answered */
    assert_int_equal(mw__ws_ping(s, "hi", 2), 0);
    dl = mw_now_ns() + WAIT_NS;
    while (mw__ws_pongs(s) == 0) {
        ssize_t r = mw__stream_read(s, in, cap);
        assert_int_equal(r, MW_EAGAIN);
        check_deadline(dl, &c, "pong");
        wait_stream(s, 0);
    }
    /* close 1000, the server answers 1000 and exits */
    assert_int_equal(mw__ws_close(s, 1000, "bye"), 0);
    ssize_t r;
    dl = mw_now_ns() + WAIT_NS;
    while ((r = mw__stream_read(s, in, cap)) == MW_EAGAIN) {
        check_deadline(dl, NULL, "close reply");
        wait_stream(s, 0);
    }
    assert_int_equal(r, MW_ECLOSED);
    assert_int_equal(mw__ws_peer_close_code(s), 1000);
    mw_stream_free(s);
    int st = child_wait(&c, WAIT_NS);
    if (st != 0 || !strstr(c.text, "closed 1000 path /echo")) fail_msg("python server: status %d, output: %s", st, c.text);
    child_stop(&c);
    free(out);
    free(in);
}

/* ---- 2. Python's client, our server --------------------------------------------- */

static void test_ws_interop_python_client_with_our_echo_server(void **state) {
    (void)state;
    mw__listener_t *l;
    mw_err_t err = {0};
    if (mw__tcp_listen(&l, "127.0.0.1", "0", NULL, &err) != 0) fail_msg("listen: %s", mw_err_text(&err));
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/echo", mw__listener_port(l));
    child_t c;
    child_start(&c, "client", url, "50");
    mw_stream_t *tcp = NULL, *s;
    uint64_t dl = mw_now_ns() + WAIT_NS;
    while (mw__listener_accept(l, &tcp, &err) == MW_EAGAIN) {
        check_deadline(dl, &c, "accept");
        struct pollfd p = {.fd = mw__listener_fd(l), .events = POLLIN};
        poll(&p, 1, 10);
    }
    assert_non_null(tcp);
    mw__listener_free(l);
    mw_ws_opts_t o;
    mw_ws_opts_init(&o);
    o.subprotocol = "msgwire";
    o.expect_path = "/echo";
    o.max_msg = 4 * MIB;
    o.flags = MW_WS_RECORD_OPCODE;
    assert_int_equal(mw__ws_server_wrap(&s, tcp, &o, &err), 0);
    /* echo: whatever whole records came in go straight back out */
    size_t cap = 4 * MIB + 64, have = 0;
    uint8_t *acc = malloc(cap);
    size_t msgs = 0, bytes = 0;
    ssize_t r;
    dl = mw_now_ns() + WAIT_NS;
    for (;;) {
        bool progress = false;
        r = mw__stream_read(s, acc + have, cap - have);
        if (r > 0) have += (size_t)r, bytes += (size_t)r, progress = true;
        else if (r != MW_EAGAIN) break;
        if (have) {
            ssize_t w = mw__stream_write(s, acc, have);
            if (w > 0) {
                for (size_t off = 0; off < (size_t)w; msgs++) /* count the records echoed */
                    off += 5 + ((size_t)acc[off + 1] << 24 | (size_t)acc[off + 2] << 16 | (size_t)acc[off + 3] << 8 | acc[off + 4]);
                memmove(acc, acc + w, have - (size_t)w);
                have -= (size_t)w;
                progress = true;
            } else if (w != MW_EAGAIN && w != 0) {
                fail_msg("echo write: %s", mw_stream_last_error(s));
            }
        } else if (mw__stream_want(s) & MW_WANT_WRITE) {
            mw__stream_writev(s, NULL, 0);
        }
        if (!progress) {
            check_deadline(dl, NULL, "echo loop");
            wait_stream(s, have ? MW_WANT_WRITE : 0);
        }
    }
    if (r != MW_ECLOSED) fail_msg("echo loop ended with %s: %s (python: %s)", mw_errname((int)r), mw_stream_last_error(s), c.text);
    assert_int_equal(have, 0);
    assert_int_equal(mw__ws_peer_close_code(s), 1000);
    assert_string_equal(mw__ws_path(s), "/echo");
    assert_string_equal(mw__ws_subprotocol(s), "msgwire");
    assert_int_equal(msgs, 100 + 2 + 2);
    assert_true(bytes > 2 * MIB);
    /* our close reply must reach the client before the socket goes */
    dl = mw_now_ns() + WAIT_NS;
    while (mw__stream_want(s) & MW_WANT_WRITE) {
        check_deadline(dl, NULL, "close reply flush");
        mw__stream_writev(s, NULL, 0);
    }
    mw_stream_free(s); /* the server closes TCP first (RFC 6455 7.1.1); the client waits for it */
    int st = child_wait(&c, WAIT_NS);
    if (st != 0 || !strstr(c.text, "OK")) fail_msg("python client: status %d, output: %s", st, c.text);
    child_stop(&c);
    free(acc);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ws_interop_our_client_with_python_echo_server),
        cmocka_unit_test(test_ws_interop_python_client_with_our_echo_server),
    };
    return mw_run_group_requiring(mw_have_python_module("websockets"),
                                  MW_PYTHON " with websockets (python3-websockets)", tests, NULL, NULL);
}
