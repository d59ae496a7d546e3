/* test_ws_conformance.c - the Autobahn|Testsuite fuzzingclient sections 1-7
 * and 9, reproduced against ws_echo.
 *
 * build/examples/ws_echo runs as a child process (port 0, the port read back
 * from its "listening on PORT" line; killed by PID in the group teardown, and
 * by the kernel if this process dies first). Each case opens a raw TCP
 * socket, sends a client handshake written by hand, then frames built here
 * (with masking), and checks the server's frames byte for byte where it
 * matters: opcode, FIN, RSV, no mask, minimal length encoding, payload, close
 * code, and that the TCP connection ends after the close frame with nothing
 * after it. Absence is proven by order, not by waiting: "the unsolicited pong
 * was ignored" means the next frame is the pong for a later ping.
 *
 * Every read is bounded by a deadline (poll with a timeout); nothing sleeps.
 * Tests are named after the Autobahn cases they follow.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mw_test.h"
#include "mw_tcp.h"
#include "mw_tls.h"
#include "mw_ws.h"
#include "stream_impl.h"
#include "tcp_impl.h"
#include "tls_impl.h"
#include "ws_impl.h"

#ifndef MW_BUILD_DIR
#define MW_BUILD_DIR "build"
#endif

#define ECHO_BIN MW_BUILD_DIR "/examples/ws_echo"
#define AUTOBAHN_BIN MW_BUILD_DIR "/examples/ws_autobahn"
#define MAX_MSG (4u * 1024 * 1024) /* ws_echo --max-msg */
#define IO_MS 5000                 /* a small frame must come within this */
#define BIG_MS 30000               /* a multi-megabyte one within this */

enum { OP_CONT = 0, OP_TEXT = 1, OP_BIN = 2, OP_CLOSE = 8, OP_PING = 9, OP_PONG = 10 };
enum { FIN = 0x80 };

static int echo_port;
static pid_t echo_pid;

static uint64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static int ms_left(uint64_t deadline) {
    uint64_t n = now_ms();
    return n >= deadline ? 0 : (int)(deadline - n);
}

/* ---- the ws_echo process --------------------------------------------------------- */

/* Starts ws_echo with argv (argv[0] is the binary) and reads its port. */
static pid_t spawn_server(char *const argv[], int *port) {
    int pfd[2];
    if (pipe(pfd) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        dup2(pfd[1], STDOUT_FILENO);
        close(pfd[0]);
        close(pfd[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(pfd[1]);
    char line[128];
    size_t n = 0;
    uint64_t deadline = now_ms() + 10000;
    *port = 0;
    while (n < sizeof line - 1 && !memchr(line, '\n', n)) {
        struct pollfd p = {pfd[0], POLLIN, 0};
        if (poll(&p, 1, ms_left(deadline)) <= 0) break;
        ssize_t r = read(pfd[0], line + n, sizeof line - 1 - n);
        if (r <= 0) break;
        n += (size_t)r;
    }
    line[n] = '\0';
    close(pfd[0]);
    if (sscanf(line, "listening on %d", port) != 1 || *port <= 0) {
        fprintf(stderr, "ws_echo did not start (is it built? %s): got '%s'\n", argv[0], line);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    return pid;
}

/* Sends sig and waits up to timeout_ms for the exit (then SIGKILL). Returns
 * the wait status, or -1 if it had to be killed. */
/* True once the child has exited (it stays a zombie for waitpid). */
static bool child_exited(void *ud) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    return waitid(P_PID, (id_t) * (const pid_t *)ud, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid != 0;
}

static int stop_server(pid_t pid, int sig, int timeout_ms) {
    if (sig) kill(pid, sig);
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    bool exited;
    if (pidfd >= 0) { /* readable once the process has exited */
        struct pollfd p = {pidfd, POLLIN, 0};
        exited = poll(&p, 1, timeout_ms) > 0;
        close(pidfd);
    } else {
        pid_t p = pid;
        exited = mw_wait_until(child_exited, &p, timeout_ms);
    }
    if (!exited) kill(pid, SIGKILL);
    int st = 0;
    if (waitpid(pid, &st, 0) != pid || !exited) return -1;
    return st;
}

static int group_setup(void **state) {
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    srand((unsigned)time(NULL));
    char *argv[] = {ECHO_BIN, "--url", "ws://127.0.0.1:0", "--max-msg", "4194304", NULL};
    echo_pid = spawn_server(argv, &echo_port);
    return echo_pid > 0 ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    if (echo_pid <= 0) return 0;
    int st = stop_server(echo_pid, SIGTERM, 10000);
    echo_pid = 0;
    return st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

/* ---- byte buffers and the frame builder -------------------------------------------- */

typedef struct wbuf {
    uint8_t *p;
    size_t n, cap;
    size_t cut[64]; /* where each of the first 64 frames ends */
    size_t ncut;
} wbuf_t;

static void wb_reserve(wbuf_t *b, size_t more) {
    if (b->n + more <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more) cap *= 2;
    b->p = realloc(b->p, cap);
    assert_non_null(b->p);
    b->cap = cap;
}

static void wb_put(wbuf_t *b, const void *p, size_t n) {
    wb_reserve(b, n);
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void wb_free(wbuf_t *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* Appends a client frame: b0 is FIN | RSV<<4 | opcode, the payload masked
 * with a fresh random key, the length in its minimal encoding. */
static void wb_frame(wbuf_t *b, unsigned b0, const void *payload, size_t n) {
    uint8_t h[14];
    size_t hl = 0;
    h[hl++] = (uint8_t)b0;
    if (n < 126) {
        h[hl++] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        h[hl++] = 0x80 | 126;
        h[hl++] = (uint8_t)(n >> 8), h[hl++] = (uint8_t)n;
    } else {
        h[hl++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) h[hl++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    uint8_t mask[4];
    for (int i = 0; i < 4; i++) mask[i] = (uint8_t)(rand() >> 7);
    memcpy(h + hl, mask, 4);
    hl += 4;
    wb_put(b, h, hl);
    wb_reserve(b, n);
    const uint8_t *src = payload;
    for (size_t i = 0; i < n; i++) b->p[b->n + i] = src[i] ^ mask[i & 3];
    b->n += n;
    if (b->ncut < 64) b->cut[b->ncut] = b->n;
    b->ncut++;
}

static void wb_close(wbuf_t *b, unsigned code, const char *reason) {
    uint8_t p[200];
    size_t rn = reason ? strlen(reason) : 0;
    assert_true(rn + 2 <= sizeof p);
    p[0] = (uint8_t)(code >> 8), p[1] = (uint8_t)code;
    if (rn) memcpy(p + 2, reason, rn);
    wb_frame(b, FIN | OP_CLOSE, p, rn + 2);
}

/* Payload bytes that are valid UTF-8 (ASCII) and differ along the message. */
static uint8_t *text_payload(size_t n, unsigned seed) {
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(' ' + (i * 7 + seed) % 95);
    return p;
}

static uint8_t *bin_payload(size_t n, unsigned seed) {
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(((i + seed) * 2654435761u) >> 13);
    return p;
}

/* ---- a raw client ------------------------------------------------------------------ */

typedef struct cli {
    int fd;
    uint8_t *rb;
    size_t roff, rlen, rcap;
    bool eof;
} cli_t;

typedef struct frame {
    bool fin, masked;
    unsigned rsv, op;
    uint8_t hdr[14];
    size_t hl;
    uint8_t *p; /* payload, NUL-terminated, owned */
    size_t n;
} frame_t;

static int tcp_connect_raw(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* Reads what is there without waiting. 1 bytes, 0 end of stream, -1 none. */
static int cli_read_some(cli_t *c) {
    if (c->eof) return 0;
    if (c->roff && c->roff == c->rlen) c->roff = c->rlen = 0;
    if (c->rcap - c->rlen < 65536) {
        if (c->roff) {
            memmove(c->rb, c->rb + c->roff, c->rlen - c->roff);
            c->rlen -= c->roff, c->roff = 0;
        }
        if (c->rcap - c->rlen < 65536) {
            c->rcap = c->rcap * 2 + 65536;
            c->rb = realloc(c->rb, c->rcap);
            assert_non_null(c->rb);
        }
    }
    for (;;) {
        ssize_t r = recv(c->fd, c->rb + c->rlen, c->rcap - c->rlen, 0);
        if (r > 0) {
            c->rlen += (size_t)r;
            return 1;
        }
        if (r == 0 || (r < 0 && (errno == ECONNRESET || errno == EPIPE))) {
            c->eof = true;
            return 0;
        }
        if (errno == EINTR) continue;
        assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
        return -1;
    }
}

/* Waits for bytes until deadline. 1 bytes, 0 end of stream, -1 timeout. */
static int cli_fill(cli_t *c, uint64_t deadline) {
    for (;;) {
        int r = cli_read_some(c);
        if (r >= 0) return r;
        struct pollfd p = {c->fd, POLLIN, 0};
        if (poll(&p, 1, ms_left(deadline)) <= 0) return -1;
    }
}

/* Writes all of p, reading whatever arrives meanwhile (so a server echoing
 * while we send never deadlocks with us). False if the peer went away. */
static bool cli_send(cli_t *c, const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t deadline = now_ms() + BIG_MS;
    while (n) {
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
        if (w > 0) {
            s += w, n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return false;
        struct pollfd pf = {c->fd, POLLOUT | POLLIN, 0};
        int r = poll(&pf, 1, ms_left(deadline));
        assert_true(r > 0); /* the server neither reads nor lets us read */
        if (pf.revents & POLLIN) (void)cli_read_some(c);
    }
    return true;
}

/* Sends p in pieces of `chop` bytes, one send() each (TCP_NODELAY is on). */
static bool cli_send_chopped(cli_t *c, const void *p, size_t n, size_t chop) {
    const uint8_t *s = p;
    for (size_t off = 0; off < n; off += chop)
        if (!cli_send(c, s + off, n - off < chop ? n - off : chop)) return false;
    return true;
}

/* How a script of frames goes out: in one write, one write per frame
 * (Autobahn's "frame-wise"), or one write per byte ("octet-wise"). */
enum { ONE_WRITE, FRAME_WISE, OCTET_WISE };

static bool cli_send_mode(cli_t *c, const wbuf_t *b, int mode) {
    if (mode == ONE_WRITE) return cli_send(c, b->p, b->n);
    if (mode == OCTET_WISE) return cli_send_chopped(c, b->p, b->n, 1);
    assert_true(b->ncut <= 64);
    for (size_t i = 0, prev = 0; i < b->ncut; prev = b->cut[i++])
        if (!cli_send(c, b->p + prev, b->cut[i] - prev)) return false;
    return true;
}

static bool cli_send_wb(cli_t *c, wbuf_t *b) {
    bool ok = cli_send(c, b->p, b->n);
    b->n = 0;
    b->ncut = 0;
    return ok;
}

static void b64(const uint8_t *in, size_t n, char *out) { EVP_EncodeBlock((unsigned char *)out, in, (int)n); }

/* Sec-WebSocket-Accept computed here, independently of the library. */
static void accept_for(const char *key, char out[29]) {
    char cat[128];
    snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    uint8_t sha[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)cat, strlen(cat), sha);
    b64(sha, sizeof sha, out);
}

/* Reads an HTTP head; returns its length (the bytes after it stay in rb). */
static size_t cli_read_head(cli_t *c) {
    uint64_t deadline = now_ms() + IO_MS;
    for (;;) {
        uint8_t *e = c->rb ? memmem(c->rb + c->roff, c->rlen - c->roff, "\r\n\r\n", 4) : NULL;
        if (e) return (size_t)(e + 4 - (c->rb + c->roff));
        int r = cli_fill(c, deadline);
        if (r <= 0) fail_msg("no complete HTTP head (%s)", r == 0 ? "connection closed" : "timeout");
    }
}

/* The value of header `name` in head (case-insensitive name), or "". */
static void head_value(const char *head, const char *name, char *out, size_t cap) {
    out[0] = '\0';
    size_t nl = strlen(name);
    for (const char *l = strstr(head, "\r\n"); l && l[2] != '\r'; l = strstr(l + 2, "\r\n")) {
        const char *h = l + 2;
        if (strncasecmp(h, name, nl) != 0 || h[nl] != ':') continue;
        h += nl + 1;
        while (*h == ' ' || *h == '\t') h++;
        const char *end = strstr(h, "\r\n");
        size_t n = (size_t)(end - h) < cap - 1 ? (size_t)(end - h) : cap - 1;
        memcpy(out, h, n);
        out[n] = '\0';
        return;
    }
}

static void new_key(char key[25]) {
    uint8_t raw[16];
    for (int i = 0; i < 16; i++) raw[i] = (uint8_t)(rand() >> 5);
    b64(raw, 16, key);
}

static int request_into(char *out, size_t cap, const char *path, const char *key) {
    return snprintf(out, cap,
                    "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                    path, echo_port, key);
}

static void check_101(cli_t *c, const char *key) {
    size_t hl = cli_read_head(c);
    char head[2048], v[128], want[29];
    assert_true(hl < sizeof head);
    memcpy(head, c->rb + c->roff, hl);
    head[hl] = '\0';
    c->roff += hl;
    assert_memory_equal(head, "HTTP/1.1 101 ", 13);
    head_value(head, "Upgrade", v, sizeof v);
    assert_int_equal(strcasecmp(v, "websocket"), 0);
    head_value(head, "Connection", v, sizeof v);
    assert_int_equal(strcasecmp(v, "Upgrade"), 0);
    accept_for(key, want);
    head_value(head, "Sec-WebSocket-Accept", v, sizeof v);
    assert_string_equal(v, want);
}

/* Connects and completes the handshake; `first` (may be NULL) goes out in
 * the same write as the request. */
static void cli_open_with(cli_t *c, const wbuf_t *first) {
    memset(c, 0, sizeof *c);
    c->fd = tcp_connect_raw(echo_port);
    char key[25], req[512];
    new_key(key);
    int n = request_into(req, sizeof req, "/", key);
    wbuf_t b = {0};
    wb_put(&b, req, (size_t)n);
    if (first) wb_put(&b, first->p, first->n);
    assert_true(cli_send(c, b.p, b.n));
    wb_free(&b);
    check_101(c, key);
}

static void cli_open(cli_t *c) { cli_open_with(c, NULL); }

static void cli_close(cli_t *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    free(c->rb);
    c->rb = NULL;
}

static void frame_free(frame_t *f) {
    free(f->p);
    f->p = NULL;
}

/* Parses a frame from rb if it is all there. 1 done, 0 need more. */
static int parse_frame(cli_t *c, frame_t *f) {
    const uint8_t *p = c->rb + c->roff;
    size_t have = c->rlen - c->roff;
    if (have < 2) return 0;
    size_t hl = 2;
    uint64_t n = p[1] & 0x7F;
    if (n == 126) hl = 4;
    else if (n == 127) hl = 10;
    if (p[1] & 0x80) hl += 4;
    if (have < hl) return 0;
    if (n == 126) n = (uint64_t)p[2] << 8 | p[3];
    else if (n == 127) {
        n = 0;
        for (int i = 0; i < 8; i++) n = n << 8 | p[2 + i];
    }
    assert_true(n <= 64u * 1024 * 1024);
    if (have - hl < n) return 0;
    f->fin = p[0] & 0x80;
    f->rsv = (p[0] >> 4) & 7;
    f->op = p[0] & 0x0F;
    f->masked = p[1] & 0x80;
    f->hl = hl;
    memcpy(f->hdr, p, hl);
    f->n = (size_t)n;
    f->p = malloc(f->n + 1);
    assert_non_null(f->p);
    memcpy(f->p, p + hl, f->n);
    if (f->masked)
        for (size_t i = 0; i < f->n; i++) f->p[i] ^= p[hl - 4 + (i & 3)];
    f->p[f->n] = '\0';
    c->roff += hl + f->n;
    return 1;
}

/* The next frame from the server. 1 frame, 0 end of stream at a frame
 * boundary, -1 timeout. Fails on a stream that ends inside a frame. */
static int cli_frame(cli_t *c, frame_t *f, int timeout_ms) {
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        if (parse_frame(c, f)) return 1;
        int r = cli_fill(c, deadline);
        if (r == 0) {
            assert_int_equal(c->rlen - c->roff, 0); /* stream ended inside a frame */
            return 0;
        }
        if (r < 0) return -1;
    }
}

static const char *op_name(unsigned op) {
    switch (op) {
    case OP_CONT: return "continuation";
    case OP_TEXT: return "text";
    case OP_BIN: return "binary";
    case OP_CLOSE: return "close";
    case OP_PING: return "ping";
    case OP_PONG: return "pong";
    default: return "reserved";
    }
}

/* What every server frame must be: unmasked, no RSV bits, and its length in
 * the minimal encoding. */
static void check_server_frame(const frame_t *f) {
    assert_false(f->masked);
    assert_int_equal(f->rsv, 0);
    size_t want_hl = f->n < 126 ? 2 : f->n < 65536 ? 4 : 10;
    assert_int_equal(f->hl, want_hl);
}

static void next_frame(cli_t *c, frame_t *f, int timeout_ms) {
    int r = cli_frame(c, f, timeout_ms);
    if (r != 1) fail_msg("expected a frame, got %s", r == 0 ? "the end of the connection" : "nothing (timeout)");
    check_server_frame(f);
}

/* The next frame is a single (FIN) frame with this opcode and payload. */
static void expect_msg_t(cli_t *c, unsigned op, const void *p, size_t n, int timeout_ms) {
    frame_t f;
    next_frame(c, &f, timeout_ms);
    if (f.op != op)
        fail_msg("expected %s (%zu bytes), got %s (%zu bytes: '%.60s')", op_name(op), n, op_name(f.op), f.n,
                 (char *)f.p);
    assert_true(f.fin);
    assert_int_equal(f.n, n);
    if (n) assert_memory_equal(f.p, p, n);
    frame_free(&f);
}

static void expect_msg(cli_t *c, unsigned op, const void *p, size_t n) { expect_msg_t(c, op, p, n, IO_MS); }

/* A message, and the pong for a ping sent after it, in either order: the
 * pong is due "as soon as practical" (RFC 6455 5.5.2), with no order
 * relative to the echo of a message that was already complete. */
static void expect_msg_and_pong(cli_t *c, unsigned op, const void *p, size_t n, const void *pp, size_t pn) {
    frame_t f;
    bool got_msg = false, got_pong = false;
    while (!got_msg || !got_pong) {
        next_frame(c, &f, IO_MS);
        assert_true(f.fin);
        const void *want = f.op == OP_PONG ? pp : p;
        size_t wn = f.op == OP_PONG ? pn : n;
        if (f.op == OP_PONG && !got_pong) got_pong = true;
        else if (f.op == op && !got_msg) got_msg = true;
        else fail_msg("unexpected %s frame (%zu bytes)", op_name(f.op), f.n);
        assert_int_equal(f.n, wn);
        if (wn) assert_memory_equal(f.p, want, wn);
        frame_free(&f);
    }
}

static bool ref_utf8_ok(const uint8_t *p, size_t n);

/* The next frame is a close with `code` (and a valid reason), and the TCP
 * connection then ends with nothing after it. code 0: an empty close
 * payload or 1000 are both fine (RFC 6455 7.4.1 answer to a code-less close). */
static void expect_close_frame(cli_t *c, unsigned code) {
    frame_t f;
    next_frame(c, &f, IO_MS);
    if (f.op != OP_CLOSE)
        fail_msg("expected close %u, got %s (%zu bytes: '%.60s')", code, op_name(f.op), f.n, (char *)f.p);
    assert_true(f.fin);
    if (code == 0 && f.n == 0) {
        frame_free(&f);
    } else {
        assert_true(f.n >= 2 && f.n <= 125);
        unsigned got = (unsigned)f.p[0] << 8 | f.p[1];
        if (got != (code ? code : 1000u))
            fail_msg("expected close %u, got close %u '%.*s'", code ? code : 1000u, got, (int)f.n - 2, f.p + 2);
        assert_true(ref_utf8_ok(f.p + 2, f.n - 2));
        frame_free(&f);
    }
}

/* Nothing more comes, and the server closes the TCP connection. */
static void expect_eof(cli_t *c) {
    frame_t g;
    int r = cli_frame(c, &g, IO_MS);
    if (r == 1) fail_msg("a %s frame came after the close", op_name(g.op));
    if (r < 0) fail_msg("the server did not close the TCP connection after its close frame");
}

static void expect_close(cli_t *c, unsigned code) {
    expect_close_frame(c, code);
    expect_eof(c);
}

/* Sends a close and expects the echo of its code, then the end. */
static void close_normally(cli_t *c) {
    wbuf_t b = {0};
    wb_close(&b, 1000, "bye");
    assert_true(cli_send_wb(c, &b));
    wb_free(&b);
    expect_close(c, 1000);
}

/* Sends the frames in b on a fresh connection (ONE_WRITE, FRAME_WISE or
 * OCTET_WISE),
 * expects close `code` and the end. */
static void expect_failure_after(const wbuf_t *b, int mode, unsigned code) {
    cli_t c;
    cli_open(&c);
    (void)cli_send_mode(&c, b, mode); /* the server may close before it has all */
    expect_close(&c, code);
    cli_close(&c);
}

/* ---- a reference UTF-8 validator (Unicode 15, table 3-7) ---------------------------- */

/* Returns 1 valid and complete, 0 a valid prefix that ends inside a
 * character, -1 invalid: *bad is the index of the first byte after which no
 * continuation can be valid. */
static int ref_utf8(const uint8_t *p, size_t n, size_t *bad) {
    size_t i = 0;
    while (i < n) {
        uint8_t b = p[i];
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF;
        if (b < 0x80) need = 0;
        else if (b >= 0xC2 && b <= 0xDF) need = 1;
        else if (b == 0xE0) need = 2, lo = 0xA0;
        else if (b == 0xED) need = 2, hi = 0x9F;
        else if (b >= 0xE1 && b <= 0xEF) need = 2;
        else if (b == 0xF0) need = 3, lo = 0x90;
        else if (b == 0xF4) need = 3, hi = 0x8F;
        else if (b >= 0xF1 && b <= 0xF3) need = 3;
        else {
            *bad = i;
            return -1;
        }
        for (size_t k = 1; k <= need; k++) {
            if (i + k >= n) return 0;
            uint8_t cb = p[i + k];
            if (cb < (k == 1 ? lo : 0x80) || cb > (k == 1 ? hi : 0xBF)) {
                *bad = i + k;
                return -1;
            }
        }
        i += need + 1;
    }
    return 1;
}

static bool ref_utf8_ok(const uint8_t *p, size_t n) {
    size_t bad;
    return ref_utf8(p, n, &bad) == 1;
}

/* ---- 1.x framing ------------------------------------------------------------------- */

static const size_t LENGTHS[] = {0, 125, 126, 127, 128, 65535, 65536};

/* One message each way on a fresh connection, then a normal close. */
static void echo_case(unsigned op, size_t n, size_t chop, int timeout_ms) {
    uint8_t *p = op == OP_TEXT ? text_payload(n, (unsigned)n) : bin_payload(n, (unsigned)n);
    wbuf_t b = {0};
    wb_frame(&b, FIN | op, p, n);
    cli_t c;
    cli_open(&c);
    assert_true(chop ? cli_send_chopped(&c, b.p, b.n, chop) : cli_send(&c, b.p, b.n));
    expect_msg_t(&c, op, p, n, timeout_ms);
    close_normally(&c);
    cli_close(&c);
    wb_free(&b);
    free(p);
}

static void test_ws_1_1_1_to_1_1_7_text_of_length_0_to_65536_echoed(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof LENGTHS / sizeof LENGTHS[0]; i++) echo_case(OP_TEXT, LENGTHS[i], 0, IO_MS);
}

static void test_ws_1_1_8_text_65536_in_997_byte_chops_echoed(void **state) {
    (void)state;
    echo_case(OP_TEXT, 65536, 997, IO_MS);
}

static void test_ws_1_2_1_to_1_2_7_binary_of_length_0_to_65536_echoed(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof LENGTHS / sizeof LENGTHS[0]; i++) echo_case(OP_BIN, LENGTHS[i], 0, IO_MS);
}

static void test_ws_1_2_8_binary_65536_in_997_byte_chops_echoed(void **state) {
    (void)state;
    echo_case(OP_BIN, 65536, 997, IO_MS);
}

static void test_ws_1_x_text_and_binary_of_1_mib_plus_1_echoed(void **state) {
    (void)state;
    echo_case(OP_TEXT, (1u << 20) + 1, 0, BIG_MS);
    echo_case(OP_BIN, (1u << 20) + 1, 0, BIG_MS);
}

/* The server's header bytes for the three length encodings, exactly. */
static void test_ws_1_x_server_header_bytes_use_minimal_length_encoding(void **state) {
    (void)state;
    static const struct {
        size_t n;
        uint8_t hdr[10];
        size_t hl;
    } want[] = {
        {125, {0x82, 125}, 2},
        {126, {0x82, 126, 0x00, 0x7E}, 4},
        {65535, {0x82, 126, 0xFF, 0xFF}, 4},
        {65536, {0x82, 127, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00}, 10},
    };
    cli_t c;
    cli_open(&c);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        uint8_t *p = bin_payload(want[i].n, 3);
        wbuf_t b = {0};
        wb_frame(&b, FIN | OP_BIN, p, want[i].n);
        assert_true(cli_send_wb(&c, &b));
        frame_t f;
        next_frame(&c, &f, IO_MS);
        assert_int_equal(f.hl, want[i].hl);
        assert_memory_equal(f.hdr, want[i].hdr, want[i].hl);
        assert_int_equal(f.n, want[i].n);
        assert_memory_equal(f.p, p, want[i].n);
        frame_free(&f);
        wb_free(&b);
        free(p);
    }
    close_normally(&c);
    cli_close(&c);
}

/* Headers a client must not send: a 64-bit length with the top bit set
 * (RFC 6455 5.2), and lengths not in their minimal encoding (ws_impl.h). */
static void test_ws_1_x_bad_length_encodings_close_1002(void **state) {
    (void)state;
    static const uint8_t heads[][14] = {
        {0x81, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4},
        {0x81, 0x80 | 126, 0x00, 0x05, 1, 2, 3, 4},
        {0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0x00, 0x05, 1, 2, 3, 4},
        {0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 1, 2, 3, 4},
    };
    static const size_t hl[] = {14, 8, 14, 14};
    for (size_t i = 0; i < sizeof hl / sizeof hl[0]; i++) {
        wbuf_t b = {0};
        wb_put(&b, heads[i], hl[i]);
        expect_failure_after(&b, ONE_WRITE, 1002);
        wb_free(&b);
    }
}

static void test_ws_1_x_unmasked_client_frame_closes_1002(void **state) {
    (void)state;
    static const uint8_t unmasked[] = {0x81, 0x05, 'h', 'e', 'l', 'l', 'o'};
    wbuf_t b = {0};
    wb_put(&b, unmasked, sizeof unmasked);
    expect_failure_after(&b, ONE_WRITE, 1002);
    wb_free(&b);
}

/* ---- 2.x ping / pong ------------------------------------------------------------------ */

static void test_ws_2_1_to_2_4_ping_with_0_to_125_bytes_gets_pong_with_same_payload(void **state) {
    (void)state;
    cli_t c;
    cli_open(&c);
    for (size_t n = 0; n <= 125; n++) {
        uint8_t *p = bin_payload(n, (unsigned)n); /* binary: a ping carries any bytes */
        wbuf_t b = {0};
        wb_frame(&b, FIN | OP_PING, p, n);
        assert_true(cli_send_wb(&c, &b));
        expect_msg(&c, OP_PONG, p, n);
        wb_free(&b);
        free(p);
    }
    close_normally(&c);
    cli_close(&c);
}

static void test_ws_2_5_ping_with_126_bytes_closes_1002(void **state) {
    (void)state;
    uint8_t p[126];
    memset(p, 'x', sizeof p);
    wbuf_t b = {0};
    wb_frame(&b, FIN | OP_PING, p, sizeof p);
    expect_failure_after(&b, ONE_WRITE, 1002);
    wb_free(&b);
}

static void test_ws_2_6_ping_125_bytes_in_1_byte_chops_gets_pong(void **state) {
    (void)state;
    uint8_t *p = bin_payload(125, 6);
    wbuf_t b = {0};
    wb_frame(&b, FIN | OP_PING, p, 125);
    cli_t c;
    cli_open(&c);
    assert_true(cli_send_mode(&c, &b, OCTET_WISE));
    expect_msg(&c, OP_PONG, p, 125);
    close_normally(&c);
    cli_close(&c);
    wb_free(&b);
    free(p);
}

static void test_ws_2_7_to_2_9_unsolicited_pongs_are_ignored(void **state) {
    (void)state;
    wbuf_t b = {0};
    wb_frame(&b, FIN | OP_PONG, NULL, 0);
    wb_frame(&b, FIN | OP_PONG, "unsolicited pong payload", 24);
    wb_frame(&b, FIN | OP_PING, "ping payload", 12);
    cli_t c;
    cli_open(&c);
    assert_true(cli_send_wb(&c, &b));
    expect_msg(&c, OP_PONG, "ping payload", 12); /* the first frame back: nothing for the pongs */
    close_normally(&c);
    cli_close(&c);
    wb_free(&b);
}

static void ten_pings(int mode) {
    wbuf_t b = {0};
    char p[16];
    for (int i = 0; i < 10; i++) {
        int n = snprintf(p, sizeof p, "payload-%d", i);
        wb_frame(&b, FIN | OP_PING, p, (size_t)n);
    }
    cli_t c;
    cli_open(&c);
    assert_true(cli_send_mode(&c, &b, mode));
    for (int i = 0; i < 10; i++) {
        int n = snprintf(p, sizeof p, "payload-%d", i);
        expect_msg(&c, OP_PONG, p, (size_t)n);
    }
    close_normally(&c);
    cli_close(&c);
    wb_free(&b);
}

static void test_ws_2_10_ten_pings_in_one_write_get_ten_pongs(void **state) {
    (void)state;
    ten_pings(ONE_WRITE);
}

static void test_ws_2_11_ten_pings_in_1_byte_chops_get_ten_pongs(void **state) {
    (void)state;
    ten_pings(OCTET_WISE);
}

/* ---- 3.x reserved bits ---------------------------------------------------------------- */

/* A valid text, the frame with RSV bits, a ping: the text is echoed, then
 * close 1002 and nothing else (no echo, no pong). */
static void rsv_case(unsigned rsv, unsigned op, int mode) {
    wbuf_t b = {0};
    cli_t c;
    cli_open(&c);
    wb_frame(&b, FIN | OP_TEXT, "Hello, world!", 13);
    assert_true(cli_send_wb(&c, &b));
    expect_msg(&c, OP_TEXT, "Hello, world!", 13);
    uint8_t pl[2] = {0x03, 0xE8};
    if (op == OP_CLOSE) wb_frame(&b, FIN | rsv << 4 | op, pl, 2);
    else wb_frame(&b, FIN | rsv << 4 | op, "bad", 3);
    wb_frame(&b, FIN | OP_PING, "after", 5);
    (void)cli_send_mode(&c, &b, mode);
    expect_close(&c, 1002);
    cli_close(&c);
    wb_free(&b);
}

static void test_ws_3_1_text_with_rsv1_closes_1002(void **state) {
    (void)state;
    wbuf_t b = {0};
    wb_frame(&b, FIN | 1 << 4 | OP_TEXT, "Hello, world!", 13);
    expect_failure_after(&b, ONE_WRITE, 1002);
    wb_free(&b);
}

/* 3.2 exactly as Autobahn sends it: all three frames in one write. The
 * text before the bad frame is a whole message: its echo must go out before
 * the close (Autobahn "OK"; no echo is only "NON-STRICT"). */
static void test_ws_3_2_message_before_a_bad_frame_is_echoed_before_the_close(void **state) {
    (void)state;
    wbuf_t b = {0};
    wb_frame(&b, FIN | OP_TEXT, "Hello, world!", 13);
    wb_frame(&b, FIN | 2 << 4 | OP_TEXT, "Hello, world!", 13);
    wb_frame(&b, FIN | OP_PING, NULL, 0);
    cli_t c;
    cli_open(&c);
    (void)cli_send_wb(&c, &b);
    expect_msg(&c, OP_TEXT, "Hello, world!", 13);
    expect_close(&c, 1002);
    cli_close(&c);
    wb_free(&b);
}

static void test_ws_3_2_to_3_7_rsv_bits_on_any_frame_close_1002_without_echo(void **state) {
    (void)state;
    static const unsigned ops[] = {OP_TEXT, OP_BIN, OP_PING, OP_PONG, OP_CLOSE};
    for (unsigned rsv = 1; rsv <= 7; rsv++)
        for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) rsv_case(rsv, ops[i], ONE_WRITE);
    rsv_case(3, OP_TEXT, FRAME_WISE);  /* 3.3 */
    rsv_case(4, OP_TEXT, OCTET_WISE);  /* 3.4 */
    rsv_case(6, OP_PING, OCTET_WISE);
}

/* ---- 4.x opcodes ---------------------------------------------------------------------- */

static void bad_opcode_case(unsigned op, bool with_payload, int mode) {
    wbuf_t b = {0};
    cli_t c;
    cli_open(&c);
    wb_frame(&b, FIN | OP_TEXT, "Hello, world!", 13);
    assert_true(cli_send_wb(&c, &b));
    expect_msg(&c, OP_TEXT, "Hello, world!", 13);
    wb_frame(&b, FIN | op, "reserved opcode payload", with_payload ? 23 : 0);
    wb_frame(&b, FIN | OP_PING, "after", 5);
    (void)cli_send_mode(&c, &b, mode);
    expect_close(&c, 1002);
    cli_close(&c);
    wb_free(&b);
}

static void test_ws_4_1_reserved_data_opcodes_3_to_7_close_1002(void **state) {
    (void)state;
    for (unsigned op = 3; op <= 7; op++) {
        bad_opcode_case(op, false, ONE_WRITE);
        bad_opcode_case(op, true, ONE_WRITE);
    }
    bad_opcode_case(5, true, FRAME_WISE);
}

static void test_ws_4_2_reserved_control_opcodes_11_to_15_close_1002(void **state) {
    (void)state;
    for (unsigned op = 0xB; op <= 0xF; op++) {
        bad_opcode_case(op, false, ONE_WRITE);
        bad_opcode_case(op, true, ONE_WRITE);
    }
    bad_opcode_case(0xD, true, OCTET_WISE);
}

/* ---- 5.x fragmentation ------------------------------------------------------------------ */

static void test_ws_5_1_fragmented_ping_closes_1002(void **state) {
    (void)state;
    wbuf_t b = {0};
    wb_frame(&b, OP_PING, "fragment1", 9);
    wb_frame(&b, FIN | OP_CONT, "fragment2", 9);
    expect_failure_after(&b, ONE_WRITE, 1002);
    wb_free(&b);
}

static void test_ws_5_2_fragmented_pong_closes_1002(void **state) {
    (void)state;
    wbuf_t b = {0};
    wb_frame(&b, OP_PONG, "fragment1", 9);
    wb_frame(&b, FIN | OP_CONT, "fragment2", 9);
    expect_failure_after(&b, ONE_WRITE, 1002);
    wb_free(&b);
}

static void test_ws_5_3_to_5_5_text_in_two_fragments_echoed_as_one(void **state) {
    (void)state;
    for (int mode = ONE_WRITE; mode <= OCTET_WISE; mode++) {
        wbuf_t b = {0};
        wb_frame(&b, OP_TEXT, "fragment1", 9);
        wb_frame(&b, FIN | OP_CONT, "fragment2", 9);
        cli_t c;
        cli_open(&c);
        assert_true(cli_send_mode(&c, &b, mode));
        expect_msg(&c, OP_TEXT, "fragment1fragment2", 18);
        close_normally(&c);
        cli_close(&c);
        wb_free(&b);
    }
}

/* k fragments of uneven sizes (some empty) for every k in 2..24. */
static void fragments_echoed_as_one(unsigned op) {
    size_t n = 300;
    uint8_t *p = op == OP_TEXT ? text_payload(n, 5) : bin_payload(n, 5);
    cli_t c;
    cli_open(&c);
    for (size_t k = 2; k <= 24; k++) {
        wbuf_t b = {0};
        size_t off = 0;
        for (size_t i = 0; i < k; i++) {
            size_t len = i + 1 == k ? n - off : (i % 3 == 1 ? 0 : (n - off) / (k - i));
            wb_frame(&b, (i + 1 == k ? FIN : 0) | (i == 0 ? op : OP_CONT), p + off, len);
            off += len;
        }
        assert_true(cli_send_wb(&c, &b));
        expect_msg(&c, op, p, n);
        wb_free(&b);
    }
    close_normally(&c);
    cli_close(&c);
    free(p);
}

static void test_ws_5_x_text_in_2_to_24_fragments_echoed_as_one(void **state) {
    (void)state;
    fragments_echoed_as_one(OP_TEXT);
}

static void test_ws_5_x_binary_in_2_to_24_fragments_echoed_as_one(void **state) {
    (void)state;
    fragments_echoed_as_one(OP_BIN);
}

static void test_ws_5_6_to_5_8_fragmented_text_with_interleaved_ping_pong_comes_first(void **state) {
    (void)state;
    for (int mode = ONE_WRITE; mode <= OCTET_WISE; mode++) {
        wbuf_t b = {0};
        wb_frame(&b, OP_TEXT, "fragment1", 9);
        wb_frame(&b, FIN | OP_PING, "ping payload", 12);
        wb_frame(&b, FIN | OP_CONT, "fragment2", 9);
        cli_t c;
        cli_open(&c);
        assert_true(cli_send_mode(&c, &b, mode));
        expect_msg(&c, OP_PONG, "ping payload", 12);
        expect_msg(&c, OP_TEXT, "fragment1fragment2", 18);
        close_normally(&c);
        cli_close(&c);
        wb_free(&b);
    }
}

/* The pong for a ping between fragments comes while the message is still
 * open: the server does not hold it back until the last fragment. */
static void test_ws_5_x_ping_between_fragments_answered_before_the_message_ends(void **state) {
    (void)state;
    wbuf_t b = {0};
    cli_t c;
    cli_open(&c);
    wb_frame(&b, OP_TEXT, "fragment1", 9);
    wb_frame(&b, FIN | OP_PING, "ping payload", 12);
    assert_true(cli_send_wb(&c, &b));
    expect_msg(&c, OP_PONG, "ping payload", 12);
    wb_frame(&b, FIN | OP_CONT, "fragment2", 9);
    assert_true(cli_send_wb(&c, &b));
    expect_msg(&c, OP_TEXT, "fragment1fragment2", 18);
    close_normally(&c);
    cli_close(&c);
    wb_free(&b);
}

static void test_ws_5_9_to_5_14_continuation_without_a_start_closes_1002(void **state) {
    (void)state;
    for (int fin = 0; fin <= 1; fin++)
        for (int mode = ONE_WRITE; mode <= OCTET_WISE; mode++) {
            wbuf_t b = {0};
            wb_frame(&b, (fin ? FIN : 0) | OP_CONT, "non-continuation payload", 24);
            wb_frame(&b, FIN | OP_TEXT, "Hello, world!", 13);
            expect_failure_after(&b, mode, 1002);
            wb_free(&b);
        }
}

/* 5.15: a whole fragmented message, then a continuation with nothing open. */
static void test_ws_5_15_continuation_after_a_finished_message_closes_1002(void **state) {
    (void)state;
    wbuf_t b = {0};
    cli_t c;
    cli_open(&c);
    wb_frame(&b, OP_TEXT, "fragment1", 9);
    wb_frame(&b, FIN | OP_CONT, "fragment2", 9);
    assert_true(cli_send_wb(&c, &b));
    expect_msg(&c, OP_TEXT, "fragment1fragment2", 18);
    wb_frame(&b, OP_CONT, "fragment3", 9);
    wb_frame(&b, FIN | OP_TEXT, "fragment4", 9);
    (void)cli_send_wb(&c, &b);
    expect_close(&c, 1002);
    cli_close(&c);
    wb_free(&b);
}

static void test_ws_5_18_new_data_frame_inside_a_fragmented_message_closes_1002(void **state) {
    (void)state;
    static const unsigned firsts[] = {OP_TEXT, OP_TEXT, OP_BIN, OP_BIN};
    static const unsigned seconds[] = {OP_TEXT, OP_BIN, OP_TEXT, OP_BIN};
    for (size_t i = 0; i < 4; i++)
        for (int fin = 0; fin <= 1; fin++) {
            wbuf_t b = {0};
            wb_frame(&b, firsts[i], "fragment1", 9);
            wb_frame(&b, (fin ? FIN : 0) | seconds[i], "fragment2", 9);
            expect_failure_after(&b, ONE_WRITE, 1002);
            wb_free(&b);
        }
}

/* 5.19 / 5.20: five fragments, pings between them, and waits (for each pong)
 * before the next fragment goes out. */
static void test_ws_5_19_5_20_fragments_with_pings_and_waits_echoed(void **state) {
    (void)state;
    cli_t c;
    cli_open(&c);
    wbuf_t b = {0};
    char want[64] = "";
    for (int i = 1; i <= 5; i++) {
        char frag[16], ping[16];
        int fn = snprintf(frag, sizeof frag, "fragment%d", i);
        int pn = snprintf(ping, sizeof ping, "pongme %d!", i);
        strcat(want, frag);
        wb_frame(&b, (i == 5 ? FIN : 0) | (i == 1 ? OP_TEXT : OP_CONT), frag, (size_t)fn);
        if (i < 5) {
            wb_frame(&b, FIN | OP_PING, ping, (size_t)pn);
            assert_true(cli_send_wb(&c, &b));
            expect_msg(&c, OP_PONG, ping, (size_t)pn);
        } else {
            assert_true(cli_send_wb(&c, &b));
        }
    }
    expect_msg(&c, OP_TEXT, want, strlen(want));
    close_normally(&c);
    cli_close(&c);
    wb_free(&b);
}

/* ---- 6.x UTF-8 ---------------------------------------------------------------------------- */

typedef struct bytes {
    const char *s; /* bytes, written as a C string with \x escapes */
    size_t n;
} bytes_t;
#define B(lit) {lit, sizeof(lit) - 1}

/* Valid: Markus Kuhn's and Autobahn's samples, the first and last code
 * point of every length, the edges around the surrogates, noncharacters. */
static const bytes_t VALID_UTF8[] = {
    B("Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!"),
    B("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"), /* κόσμε */
    B("\x00"), B("\xc2\x80"), B("\xe0\xa0\x80"), B("\xf0\x90\x80\x80"),
    B("\x7f"), B("\xdf\xbf"), B("\xef\xbf\xbf"), B("\xf4\x8f\xbf\xbf"),
    B("\xed\x9f\xbf"), B("\xee\x80\x80"), B("\xef\xbf\xbd"), B("\xef\xbf\xbe"),
    B("\xef\xb7\x90"), B("\xf0\x9f\xbf\xbe"), B("\xf3\xbf\xbf\xbf"), B("\xf1\x80\x80\x80"),
    B("\xe1\x80\x80\xec\xbf\xbf\xed\x80\x80"),
    B("\xf0\x9f\x98\x80 smile \xe2\x82\xac euro \xc2\xa3 pound"),
};

/* Invalid: each must be refused with 1007. */
static const bytes_t INVALID_UTF8[] = {
    /* 6.3: κόσμε with a surrogate in the middle */
    B("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64"),
    /* 6.8: 5- and 6-byte forms */
    B("\xf8\x88\x80\x80\x80"), B("\xfc\x84\x80\x80\x80\x80"),
    /* 6.9 / 6.10: past U+10FFFF */
    B("\xf4\x90\x80\x80"), B("\xf7\xbf\xbf\xbf"), B("\xfb\xbf\xbf\xbf\xbf"), B("\xf5\x80\x80\x80"),
    /* 6.11: unexpected continuation bytes */
    B("\x80"), B("\xbf"), B("\x80\xbf"), B("\x80\xbf\x80"), B("\x80\xbf\x80\xbf"), B("ab\x80"),
    /* 6.12: lonely start bytes */
    B("\xc0\x20"), B("\xdf\x20"), B("\xe0\x20"), B("\xef\x20"), B("\xf0\x20"), B("\xf4\x20"),
    /* 6.13 / 6.14: sequences with the last byte missing (fail at the end) */
    B("\xce"), B("\xe2\x82"), B("\xf0\x9f\x98"), B("\xdf"), B("\xef\xbf"), B("\xf4\x8f\xbf"),
    B("\xe2\x82\xc2\xa3"), B("\xce\xba\xe1\xbd"),
    /* 6.15: impossible bytes */
    B("\xfe"), B("\xff"), B("\xfe\xfe\xff\xff"),
    /* 6.16 / 6.17 / 6.18: overlong forms */
    B("\xc0\xaf"), B("\xe0\x80\xaf"), B("\xf0\x80\x80\xaf"), B("\xf8\x80\x80\x80\xaf"),
    B("\xc1\xbf"), B("\xe0\x9f\xbf"), B("\xf0\x8f\xbf\xbf"), B("\xc0\x80"), B("\xe0\x80\x80"),
    B("\xf0\x80\x80\x80"),
    /* 6.19 / 6.20: UTF-16 surrogates, single and paired */
    B("\xed\xa0\x80"), B("\xed\xad\xbf"), B("\xed\xae\x80"), B("\xed\xaf\xbf"), B("\xed\xb0\x80"),
    B("\xed\xbe\x80"), B("\xed\xbf\xbf"), B("\xed\xa0\x80\xed\xb0\x80"), B("\xed\xaf\xbf\xed\xbf\xbf"),
    /* valid text, then one bad byte */
    B("Hello\xc3\x28World"), B("Hello, world! \xe2\x28\xa1"),
};

static void test_ws_6_1_empty_text_and_empty_fragments_echoed(void **state) {
    (void)state;
    cli_t c;
    cli_open(&c);
    wbuf_t b = {0};
    wb_frame(&b, FIN | OP_TEXT, NULL, 0); /* 6.1.1 */
    assert_true(cli_send_wb(&c, &b));
    expect_msg(&c, OP_TEXT, NULL, 0);
    wb_frame(&b, OP_TEXT, NULL, 0); /* 6.1.2 */
    wb_frame(&b, OP_CONT, NULL, 0);
    wb_frame(&b, FIN | OP_CONT, NULL, 0);
    assert_true(cli_send_wb(&c, &b));
    expect_msg(&c, OP_TEXT, NULL, 0);
    wb_frame(&b, OP_TEXT, NULL, 0); /* 6.1.3 */
    wb_frame(&b, OP_CONT, "middle frame payload", 20);
    wb_frame(&b, FIN | OP_CONT, NULL, 0);
    assert_true(cli_send_wb(&c, &b));
    expect_msg(&c, OP_TEXT, "middle frame payload", 20);
    close_normally(&c);
    cli_close(&c);
    wb_free(&b);
}

/* Each valid sample in one frame, then in 1-byte fragments (split inside
 * characters), then as one frame in 1-byte TCP writes: all echoed. */
static void test_ws_6_2_and_6_5_to_6_23_valid_utf8_whole_and_split_at_every_byte_echoed(void **state) {
    (void)state;
    cli_t c;
    cli_open(&c);
    wbuf_t b = {0};
    for (size_t i = 0; i < sizeof VALID_UTF8 / sizeof VALID_UTF8[0]; i++) {
        const bytes_t *v = &VALID_UTF8[i];
        assert_true(ref_utf8_ok((const uint8_t *)v->s, v->n));
        wb_frame(&b, FIN | OP_TEXT, v->s, v->n);
        assert_true(cli_send_wb(&c, &b));
        expect_msg(&c, OP_TEXT, v->s, v->n);
        for (size_t k = 0; k < v->n; k++)
            wb_frame(&b, (k + 1 == v->n ? FIN : 0) | (k == 0 ? OP_TEXT : OP_CONT), v->s + k, 1);
        assert_true(cli_send_wb(&c, &b));
        expect_msg(&c, OP_TEXT, v->s, v->n);
        wb_frame(&b, FIN | OP_TEXT, v->s, v->n);
        assert_true(cli_send_chopped(&c, b.p, b.n, 1));
        b.n = b.ncut = 0;
        expect_msg(&c, OP_TEXT, v->s, v->n);
    }
    close_normally(&c);
    cli_close(&c);
    wb_free(&b);
}

static void test_ws_6_3_and_6_6_to_6_21_invalid_utf8_in_one_frame_closes_1007(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof INVALID_UTF8 / sizeof INVALID_UTF8[0]; i++) {
        const bytes_t *v = &INVALID_UTF8[i];
        assert_false(ref_utf8_ok((const uint8_t *)v->s, v->n));
        wbuf_t b = {0};
        wb_frame(&b, FIN | OP_TEXT, v->s, v->n);
        expect_failure_after(&b, ONE_WRITE, 1007);
        wb_free(&b);
    }
}

/* 6.4.1 / 6.4.2 and every invalid sample: 1-byte fragments up to and
 * including the first byte that cannot be valid; the close 1007 must come
 * before the message is finished. A sequence only cut short fails when the
 * final (empty) fragment says the message ends there. */
static void test_ws_6_4_invalid_utf8_fails_fast_across_fragments(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof INVALID_UTF8 / sizeof INVALID_UTF8[0]; i++) {
        const bytes_t *v = &INVALID_UTF8[i];
        size_t bad = 0;
        int ok = ref_utf8((const uint8_t *)v->s, v->n, &bad);
        size_t upto = ok < 0 ? bad + 1 : v->n;
        wbuf_t b = {0};
        for (size_t k = 0; k < upto; k++) wb_frame(&b, k == 0 ? OP_TEXT : OP_CONT, v->s + k, 1);
        if (ok == 0) wb_frame(&b, FIN | OP_CONT, NULL, 0);
        cli_t c;
        cli_open(&c);
        (void)cli_send_wb(&c, &b);
        expect_close(&c, 1007);
        cli_close(&c);
        wb_free(&b);
    }
}

/* 6.4.1 / 6.4.2 as Autobahn splits them: the second fragment makes the
 * text invalid (U+110000); the close comes before the third is sent. */
static void test_ws_6_4_1_and_6_4_2_invalid_second_fragment_fails_before_the_third(void **state) {
    (void)state;
    static const char *parts[2][2] = {
        {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", "\xf4\x90\x80\x80"},
        {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4", "\x90"},
    };
    for (int k = 0; k < 2; k++) {
        cli_t c;
        cli_open(&c);
        wbuf_t b = {0};
        wb_frame(&b, OP_TEXT, parts[k][0], strlen(parts[k][0]));
        assert_true(cli_send_wb(&c, &b));
        wb_frame(&b, OP_CONT, parts[k][1], strlen(parts[k][1]));
        (void)cli_send_wb(&c, &b);
        expect_close(&c, 1007); /* part 3 ("edited", FIN) is never sent */
        cli_close(&c);
        wb_free(&b);
    }
}

/* 6.4.3 / 6.4.4: one text frame whose payload is only partly sent; the part
 * sent already holds an invalid byte: 1007 comes without the rest. */
static void test_ws_6_4_3_invalid_utf8_fails_fast_inside_an_unfinished_frame(void **state) {
    (void)state;
    static const char pl[] = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65\x64\x69\x74\x65\x64";
    size_t n = sizeof pl - 1;
    wbuf_t b = {0};
    wb_frame(&b, FIN | OP_TEXT, pl, n);
    size_t hl = b.n - n, bad = 0;
    assert_int_equal(ref_utf8((const uint8_t *)pl, n, &bad), -1);
    assert_int_equal(bad, 12); /* the \x90 after \xf4 */
    for (size_t split = 0; split < 2; split++) {
        cli_t c;
        cli_open(&c);
        if (split) { /* 6.4.4: the bad byte alone in its own write */
            assert_true(cli_send(&c, b.p, hl + bad));
            assert_true(cli_send(&c, b.p + hl + bad, 1));
        } else {
            assert_true(cli_send(&c, b.p, hl + bad + 1));
        }
        expect_close(&c, 1007);
        cli_close(&c);
    }
    wb_free(&b);
}

/* ---- 7.x close handshake ---------------------------------------------------------------- */

/* Sends b on a fresh connection; expects the messages echoed in `want`
 * (texts), then close `code` and the end. */
static void close_case(wbuf_t *b, const char *const *want, size_t nwant, unsigned code) {
    cli_t c;
    cli_open(&c);
    (void)cli_send_wb(&c, b);
    for (size_t i = 0; i < nwant; i++) expect_msg(&c, OP_TEXT, want[i], strlen(want[i]));
    expect_close(&c, code);
    cli_close(&c);
}

static void test_ws_7_1_1_text_then_close_echoed_then_closed(void **state) {
    (void)state;
    wbuf_t b = {0};
    wb_frame(&b, FIN | OP_TEXT, "Hello World!", 12);
    wb_close(&b, 1000, NULL);
    const char *want[] = {"Hello World!"};
    close_case(&b, want, 1, 1000);
    wb_free(&b);
}

static void test_ws_7_1_2_to_7_1_4_nothing_after_close_is_answered(void **state) {
    (void)state;
    wbuf_t b = {0};
    wb_close(&b, 1000, NULL); /* 7.1.2: a second close */
    wb_close(&b, 1000, NULL);
    close_case(&b, NULL, 0, 1000);
    wb_close(&b, 1000, NULL); /* 7.1.3: a ping after the close */
    wb_frame(&b, FIN | OP_PING, "Hello World!", 12);
    close_case(&b, NULL, 0, 1000);
    wb_close(&b, 1000, NULL); /* 7.1.4: a text after the close */
    wb_frame(&b, FIN | OP_TEXT, "Hello World!", 12);
    close_case(&b, NULL, 0, 1000);
    wb_free(&b);
}

static void test_ws_7_1_5_close_inside_a_fragmented_message_ends_it(void **state) {
    (void)state;
    wbuf_t b = {0};
    wb_frame(&b, OP_TEXT, "fragment1", 9);
    wb_close(&b, 1000, NULL);
    wb_frame(&b, FIN | OP_CONT, "fragment2", 9);
    close_case(&b, NULL, 0, 1000);
    wb_free(&b);
}

/* 7.1.6: a 256 KiB text, a small text, a close and a ping, back to back.
 * Autobahn calls it informational; msgwire promises the strict outcome:
 * both messages were read before the close, so both are echoed first. */
static void test_ws_7_1_6_large_text_text_close_ping_in_one_write(void **state) {
    (void)state;
    size_t n = 256 * 1024;
    uint8_t *p = malloc(n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)"BAsd7&jh23"[i % 10];
    wbuf_t b = {0};
    wb_frame(&b, FIN | OP_TEXT, p, n);
    wb_frame(&b, FIN | OP_TEXT, "Hello World!", 12);
    wb_close(&b, 1000, NULL);
    wb_frame(&b, FIN | OP_PING, NULL, 0);
    cli_t c;
    cli_open(&c);
    assert_true(cli_send_wb(&c, &b));
    expect_msg_t(&c, OP_TEXT, p, n, BIG_MS);
    expect_msg(&c, OP_TEXT, "Hello World!", 12);
    expect_close(&c, 1000);
    cli_close(&c);
    wb_free(&b);
    free(p);
}

static void test_ws_7_3_1_close_without_payload_answered(void **state) {
    (void)state;
    wbuf_t b = {0};
    wb_frame(&b, FIN | OP_CLOSE, NULL, 0);
    close_case(&b, NULL, 0, 0);
    wb_free(&b);
}

static void test_ws_7_3_2_close_with_1_byte_payload_closes_1002(void **state) {
    (void)state;
    wbuf_t b = {0};
    wb_frame(&b, FIN | OP_CLOSE, "\x03", 1);
    close_case(&b, NULL, 0, 1002);
    wb_free(&b);
}

static void test_ws_7_3_3_to_7_3_5_close_1000_with_reason_answered_1000_and_tcp_closed(void **state) {
    (void)state;
    char reason[124];
    memset(reason, 'r', 123);
    reason[123] = '\0';
    const char *reasons[] = {NULL, "Hello World!", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", reason};
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++) {
        wbuf_t b = {0};
        wb_close(&b, 1000, reasons[i]);
        close_case(&b, NULL, 0, 1000);
        wb_free(&b);
    }
}

static void test_ws_7_3_6_close_with_124_byte_reason_closes_1002(void **state) {
    (void)state;
    char reason[125];
    memset(reason, 'r', 124);
    reason[124] = '\0';
    wbuf_t b = {0};
    wb_close(&b, 1000, reason); /* a 126-byte control frame */
    close_case(&b, NULL, 0, 1002);
    wb_free(&b);
}

static void test_ws_7_5_1_close_reason_with_invalid_utf8_closes_1007(void **state) {
    (void)state;
    const char *bad[] = {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64", "\xc0\xaf",
                         "cut \xe2\x82"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        wbuf_t b = {0};
        wb_close(&b, 1000, bad[i]);
        close_case(&b, NULL, 0, 1007);
        wb_free(&b);
    }
}

static void test_ws_7_7_valid_close_codes_echoed(void **state) {
    (void)state;
    static const unsigned codes[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        wbuf_t b = {0};
        wb_close(&b, codes[i], "code");
        close_case(&b, NULL, 0, codes[i]);
        wb_free(&b);
    }
}

static void test_ws_7_9_invalid_close_codes_close_1002(void **state) {
    (void)state;
    static const unsigned codes[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        wbuf_t b = {0};
        wb_close(&b, codes[i], NULL);
        close_case(&b, NULL, 0, 1002);
        wb_free(&b);
    }
}

/* ---- 9.x limits and performance --------------------------------------------------------- */

static void test_ws_9_1_and_9_2_text_and_binary_of_64k_to_4m_echoed(void **state) {
    (void)state;
    static const size_t sizes[] = {64u << 10, 256u << 10, 1u << 20, MAX_MSG};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        echo_case(OP_TEXT, sizes[i], 0, BIG_MS);
        echo_case(OP_BIN, sizes[i], 0, BIG_MS);
    }
}

static void fragmented_1m(unsigned op) {
    static const size_t frags[] = {64, 256, 1024, 4096, 16384, 65536, 262144, 1048576};
    size_t n = 1u << 20;
    uint8_t *p = op == OP_TEXT ? text_payload(n, 9) : bin_payload(n, 9);
    cli_t c;
    cli_open(&c);
    for (size_t i = 0; i < sizeof frags / sizeof frags[0]; i++) {
        wbuf_t b = {0};
        for (size_t off = 0; off < n; off += frags[i])
            wb_frame(&b, (off + frags[i] >= n ? FIN : 0) | (off == 0 ? op : OP_CONT), p + off, frags[i]);
        assert_true(cli_send_wb(&c, &b));
        expect_msg_t(&c, op, p, n, BIG_MS);
        wb_free(&b);
    }
    close_normally(&c);
    cli_close(&c);
    free(p);
}

static void test_ws_9_3_text_of_1m_in_fragments_of_64_to_1m_echoed(void **state) {
    (void)state;
    fragmented_1m(OP_TEXT);
}

static void test_ws_9_4_binary_of_1m_in_fragments_of_64_to_1m_echoed(void **state) {
    (void)state;
    fragmented_1m(OP_BIN);
}

static void test_ws_9_5_and_9_6_1m_message_in_tcp_chops_echoed(void **state) {
    (void)state;
    static const size_t chops[] = {64, 4096, 65536};
    for (size_t i = 0; i < sizeof chops / sizeof chops[0]; i++) {
        echo_case(OP_TEXT, 1u << 20, chops[i], BIG_MS);
        echo_case(OP_BIN, 1u << 20, chops[i], BIG_MS);
    }
}

/* 9.7 / 9.8: many small messages pipelined in one write, echoed in order. */
static int pipelined_msg(char *out, size_t cap, size_t i) {
    char pad[201];
    memset(pad, '.', i % 200);
    pad[i % 200] = '\0';
    return snprintf(out, cap, "message %zu %s", i, pad);
}

static void pipelined(unsigned op, size_t count) {
    wbuf_t b = {0};
    char msg[300];
    for (size_t i = 0; i < count; i++) {
        int n = pipelined_msg(msg, sizeof msg, i);
        wb_frame(&b, FIN | op, msg, (size_t)n);
    }
    cli_t c;
    cli_open(&c);
    assert_true(cli_send_wb(&c, &b));
    for (size_t i = 0; i < count; i++) {
        int n = pipelined_msg(msg, sizeof msg, i);
        expect_msg(&c, op, msg, (size_t)n);
    }
    close_normally(&c);
    cli_close(&c);
    wb_free(&b);
}

static void test_ws_9_7_1000_text_messages_pipelined_echoed_in_order(void **state) {
    (void)state;
    pipelined(OP_TEXT, 1000);
}

static void test_ws_9_8_1000_binary_messages_pipelined_echoed_in_order(void **state) {
    (void)state;
    pipelined(OP_BIN, 1000);
}

/* The length alone is enough to refuse: no payload is sent. */
static void test_ws_9_x_message_over_max_msg_closes_1009_from_the_header(void **state) {
    (void)state;
    static const unsigned ops[] = {OP_TEXT, OP_BIN};
    for (size_t i = 0; i < 2; i++) {
        uint8_t h[14] = {(uint8_t)(FIN | ops[i]), 0x80 | 127, 0, 0, 0, 0, 0, 0x40, 0x00, 0x01, 1, 2, 3, 4};
        wbuf_t b = {0};
        wb_put(&b, h, sizeof h); /* MAX_MSG + 1 = 0x400001 */
        expect_failure_after(&b, ONE_WRITE, 1009);
        wb_free(&b);
    }
}

static void test_ws_9_x_message_over_max_msg_sent_whole_closes_1009(void **state) {
    (void)state;
    uint8_t *p = bin_payload(MAX_MSG + 1, 1);
    wbuf_t b = {0};
    wb_frame(&b, FIN | OP_BIN, p, MAX_MSG + 1);
    expect_failure_after(&b, ONE_WRITE, 1009);
    wb_free(&b);
    free(p);
}

/* Fragments each under the limit whose sum is over it. */
static void test_ws_9_x_fragmented_message_over_max_msg_closes_1009(void **state) {
    (void)state;
    size_t n = MAX_MSG / 2;
    uint8_t *p = text_payload(n, 2);
    wbuf_t b = {0};
    wb_frame(&b, OP_TEXT, p, n);
    wb_frame(&b, OP_CONT, p, n);
    wb_frame(&b, FIN | OP_CONT, "x", 1);
    expect_failure_after(&b, ONE_WRITE, 1009);
    wb_free(&b);
    free(p);
}

/* The handshake and a mix of frames, every byte in its own TCP write. */
static void test_ws_9_x_everything_in_1_byte_tcp_writes_works(void **state) {
    (void)state;
    cli_t c;
    memset(&c, 0, sizeof c);
    c.fd = tcp_connect_raw(echo_port);
    char key[25], req[512];
    new_key(key);
    int rn = request_into(req, sizeof req, "/", key);
    assert_true(cli_send_chopped(&c, req, (size_t)rn, 1));
    check_101(&c, key);
    wbuf_t b = {0};
    wb_frame(&b, FIN | OP_TEXT, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 11);
    wb_frame(&b, FIN | OP_PING, "ping", 4);
    wb_frame(&b, OP_BIN, "\x00\x01\x02", 3);
    wb_frame(&b, FIN | OP_CONT, "\xff\xfe", 2);
    uint8_t *big = bin_payload(300, 4);
    wb_frame(&b, FIN | OP_BIN, big, 300);
    assert_true(cli_send_chopped(&c, b.p, b.n, 1));
    b.n = b.ncut = 0;
    expect_msg_and_pong(&c, OP_TEXT, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 11, "ping", 4);
    expect_msg(&c, OP_BIN, "\x00\x01\x02\xff\xfe", 5);
    expect_msg(&c, OP_BIN, big, 300);
    wb_close(&b, 1000, "done");
    assert_true(cli_send_chopped(&c, b.p, b.n, 1));
    expect_close(&c, 1000);
    cli_close(&c);
    wb_free(&b);
    free(big);
}

/* Many clients connected at once, their messages interleaved. */
static void test_ws_9_x_many_clients_at_once(void **state) {
    (void)state;
    enum { N = 200 };
    cli_t *cs = calloc(N, sizeof *cs);
    assert_non_null(cs);
    for (int i = 0; i < N; i++) cli_open(&cs[i]);
    char msg[64];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            wbuf_t b = {0};
            int n = snprintf(msg, sizeof msg, "client %d round %d", i, round);
            wb_frame(&b, FIN | (round == 1 ? OP_BIN : OP_TEXT), msg, (size_t)n);
            assert_true(cli_send_wb(&cs[i], &b));
            wb_free(&b);
        }
        for (int i = N - 1; i >= 0; i--) {
            int n = snprintf(msg, sizeof msg, "client %d round %d", i, round);
            expect_msg(&cs[i], round == 1 ? OP_BIN : OP_TEXT, msg, (size_t)n);
        }
    }
    for (int i = 0; i < N; i++) {
        close_normally(&cs[i]);
        cli_close(&cs[i]);
    }
    free(cs);
}

/* ---- handshake ------------------------------------------------------------------------------ */

/* Sends a raw request; returns the status and copies the head into head. */
static int http_status(const char *request, char *head, size_t cap) {
    cli_t c;
    memset(&c, 0, sizeof c);
    c.fd = tcp_connect_raw(echo_port);
    assert_true(cli_send(&c, request, strlen(request)));
    size_t hl = cli_read_head(&c);
    assert_true(hl < cap);
    memcpy(head, c.rb + c.roff, hl);
    head[hl] = '\0';
    c.roff += hl;
    /* Connection: close, and it does: nothing follows the response. */
    uint64_t deadline = now_ms() + IO_MS;
    int r;
    while ((r = cli_fill(&c, deadline)) > 0) {}
    assert_int_equal(r, 0);
    assert_int_equal(c.rlen - c.roff, 0);
    cli_close(&c);
    int status = 0;
    assert_int_equal(sscanf(head, "HTTP/1.1 %d ", &status), 1);
    return status;
}

static void request_without(char *out, size_t cap, const char *skip, const char *version, const char *key) {
    int n = snprintf(out, cap, "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n", echo_port);
    if (strcmp(skip, "Upgrade")) n += snprintf(out + n, cap - (size_t)n, "Upgrade: websocket\r\n");
    if (strcmp(skip, "Connection")) n += snprintf(out + n, cap - (size_t)n, "Connection: Upgrade\r\n");
    n += snprintf(out + n, cap - (size_t)n, "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: %s\r\n\r\n", key,
                  version);
}

static void test_ws_handshake_missing_upgrade_gets_400(void **state) {
    (void)state;
    char req[512], head[1024];
    request_without(req, sizeof req, "Upgrade", "13", "dGhlIHNhbXBsZSBub25jZQ==");
    assert_int_equal(http_status(req, head, sizeof head), 400);
    request_without(req, sizeof req, "Connection", "13", "dGhlIHNhbXBsZSBub25jZQ==");
    assert_int_equal(http_status(req, head, sizeof head), 400);
}

static void test_ws_handshake_wrong_version_gets_426_with_version_13(void **state) {
    (void)state;
    char req[512], head[1024], v[64];
    static const char *versions[] = {"8", "12", "14", "abc"};
    for (size_t i = 0; i < 4; i++) {
        request_without(req, sizeof req, "", versions[i], "dGhlIHNhbXBsZSBub25jZQ==");
        assert_int_equal(http_status(req, head, sizeof head), 426);
        head_value(head, "Sec-WebSocket-Version", v, sizeof v);
        assert_string_equal(v, "13");
    }
}

static void test_ws_handshake_bad_key_gets_400(void **state) {
    (void)state;
    char req[512], head[1024];
    static const char *keys[] = {"", "short", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQ==AA",
                                 "dGhlIHNhbXBsZSBub25jZSE=", "!!!!!!!!!!!!!!!!!!!!!!=="};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        request_without(req, sizeof req, "", "13", keys[i]);
        if (http_status(req, head, sizeof head) != 400) fail_msg("key '%s' not refused with 400: %s", keys[i], head);
    }
}

/* Header names and tokens without regard to case, Connection as a token
 * list; offered subprotocols and extensions are declined by leaving them out. */
static void test_ws_handshake_variants_accepted_and_offers_declined(void **state) {
    (void)state;
    cli_t c;
    memset(&c, 0, sizeof c);
    c.fd = tcp_connect_raw(echo_port);
    char key[25], req[512], v[128];
    new_key(key);
    int n = snprintf(req, sizeof req,
                     "GET /any/path?q=1 HTTP/1.1\r\nhost: 127.0.0.1\r\nupgrade: WebSocket\r\n"
                     "connection: keep-alive, Upgrade\r\nsec-websocket-key: %s\r\nsec-websocket-version: 13\r\n"
                     "Sec-WebSocket-Protocol: chat, superchat\r\n"
                     "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
                     key);
    assert_true(cli_send(&c, req, (size_t)n));
    size_t hl = cli_read_head(&c);
    char head[1024];
    assert_true(hl < sizeof head);
    memcpy(head, c.rb + c.roff, hl);
    head[hl] = '\0';
    c.roff = 0, c.rlen = 0;
    assert_memory_equal(head, "HTTP/1.1 101 ", 13);
    head_value(head, "Sec-WebSocket-Protocol", v, sizeof v);
    assert_string_equal(v, "");
    head_value(head, "Sec-WebSocket-Extensions", v, sizeof v);
    assert_string_equal(v, "");
    wbuf_t b = {0};
    wb_frame(&b, FIN | OP_TEXT, "still plain", 11);
    assert_true(cli_send_wb(&c, &b));
    expect_msg(&c, OP_TEXT, "still plain", 11);
    close_normally(&c);
    cli_close(&c);
    wb_free(&b);
}

static void test_ws_handshake_post_gets_405_and_huge_head_gets_431(void **state) {
    (void)state;
    char req[12000], head[1024], v[64];
    snprintf(req, sizeof req,
             "POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    assert_int_equal(http_status(req, head, sizeof head), 405);
    head_value(head, "Allow", v, sizeof v);
    assert_string_equal(v, "GET");
    int n = snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(req + n, 'a', 9000);
    snprintf(req + n + 9000, sizeof req - (size_t)n - 9000,
             "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    assert_int_equal(http_status(req, head, sizeof head), 431);
}

static void test_ws_handshake_and_frames_in_one_write_echoed(void **state) {
    (void)state;
    wbuf_t b = {0};
    wb_frame(&b, FIN | OP_TEXT, "early bird", 10);
    wb_frame(&b, FIN | OP_PING, "early ping", 10);
    cli_t c;
    cli_open_with(&c, &b);
    expect_msg_and_pong(&c, OP_TEXT, "early bird", 10, "early ping", 10);
    close_normally(&c);
    cli_close(&c);
    wb_free(&b);
}

/* ---- the tools ---------------------------------------------------------------------------- */

static pid_t sig_pid;
static int saved_port;

static int sig_teardown(void **state) {
    (void)state;
    if (sig_pid > 0) stop_server(sig_pid, SIGKILL, 5000);
    sig_pid = 0;
    echo_port = saved_port;
    return 0;
}

/* SIGTERM: every client gets close 1001 and is waited for; a client still
 * in its handshake is just dropped; the server exits 0. */
static void test_ws_echo_sigterm_closes_clients_with_1001_and_exits_0(void **state) {
    (void)state;
    char *argv[] = {ECHO_BIN, "--url", "ws://127.0.0.1:0/only", NULL};
    int port;
    saved_port = echo_port;
    pid_t pid = sig_pid = spawn_server(argv, &port);
    assert_true(pid > 0);
    echo_port = port;
    cli_t c[3], half;
    for (int i = 0; i < 3; i++) {
        memset(&c[i], 0, sizeof c[i]);
        c[i].fd = tcp_connect_raw(port);
        char key[25], req[512];
        new_key(key);
        int n = request_into(req, sizeof req, "/only?x=1", key);
        assert_true(cli_send(&c[i], req, (size_t)n));
        check_101(&c[i], key);
    }
    wbuf_t b = {0};
    wb_frame(&b, FIN | OP_TEXT, "before", 6);
    assert_true(cli_send_wb(&c[0], &b));
    expect_msg(&c[0], OP_TEXT, "before", 6);
    wb_frame(&b, OP_TEXT, "an open fragmented message", 26);
    assert_true(cli_send_wb(&c[1], &b));
    memset(&half, 0, sizeof half);
    half.fd = tcp_connect_raw(port);
    assert_true(cli_send(&half, "GET / HTTP/1.1\r\nHost: x\r\n", 25));
    /* The path is checked: another one gets 404. */
    char head[1024];
    assert_int_equal(http_status("GET /other HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                                 head, sizeof head),
                     404);
    kill(pid, SIGTERM);
    for (int i = 0; i < 3; i++) {
        expect_close_frame(&c[i], 1001);
        wb_close(&b, 1001, NULL);
        assert_true(cli_send_wb(&c[i], &b));
        expect_eof(&c[i]);
        cli_close(&c[i]);
    }
    expect_eof(&half);
    assert_int_equal(half.rlen, 0);
    cli_close(&half);
    int st = stop_server(pid, 0, 10000);
    sig_pid = 0;
    assert_true(st >= 0 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    wb_free(&b);
}

/* Waits for what the stream wants, failing the test at the deadline. */
static void stream_wait(mw_stream_t *s, uint64_t deadline, const char *what) {
    if (ms_left(deadline) == 0) fail_msg("%s: timeout (%s)", what, mw_stream_last_error(s));
    int want = mw__stream_want(s);
    mw__stream_wait(s, want ? want : MW_WANT_READ, (int64_t)ms_left(deadline) * 1000000);
}

static pid_t tls_pid;

/* Runs after the TLS test, passed or not: the server goes. */
static int tls_teardown(void **state) {
    (void)state;
    if (tls_pid > 0) stop_server(tls_pid, SIGKILL, 5000);
    tls_pid = 0;
    return 0;
}

/* wss://: ws_echo over TLS, driven by the library's own client stack. */
static void test_ws_echo_over_tls_echoes_for_the_library_client(void **state) {
    (void)state;
    mw_test_require(mw_have_openssl_cli(), "the openssl command (Debian package openssl)");
    char *cert = (char *)mw_test_cert("srv.pem"), *key = (char *)mw_test_cert("srv.key");
    char *argv[] = {ECHO_BIN, "--url", "wss://127.0.0.1:0", "--cert", cert, "--key", key, NULL};
    int port;
    tls_pid = spawn_server(argv, &port);
    assert_true(tls_pid > 0);

    mw_err_t err;
    mw__tls_ctx_t *ctx;
    mw_tls_opts_t to;
    mw__tls_opts_init(&to);
    to.ca_file = mw_test_cert("ca.pem");
    if (mw__tls_ctx_new(&ctx, false, &to, &err) < 0) fail_msg("%s", mw_err_text(&err));
    mw_tcp_opts_t tco;
    mw__tcp_opts_init(&tco);
    mw_stream_t *s;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    if (mw__tcp_connect(&s, "127.0.0.1", ps, &tco, 5 * 1000000000LL, &err) < 0 ||
        mw__tls_wrap(&s, s, ctx, "localhost", &err) < 0)
        fail_msg("%s", mw_err_text(&err));
    mw_ws_opts_t wo;
    mw_ws_opts_init(&wo);
    wo.flags = MW_WS_RECORD_OPCODE;
    assert_int_equal(mw_ws_client_wrap(&s, s, &wo, &err), 0);
    uint64_t deadline = now_ms() + BIG_MS;
    int r;
    while ((r = mw__stream_handshake(s)) == MW_EAGAIN) stream_wait(s, deadline, "handshake");
    if (r != 1) fail_msg("wss handshake: %s", mw_stream_last_error(s));
    static const uint8_t rec[] = {OP_TEXT, 0, 0, 0, 9, 'h', 'e', 'l', 'l', 'o', ' ', 'w', 's', 's'};
    assert_int_equal(mw__stream_write_all(s, rec, sizeof rec, 5 * 1000000000LL), 0);
    uint8_t got[64];
    size_t n = 0;
    while (n < sizeof rec) {
        ssize_t k = mw__stream_read(s, got + n, sizeof got - n);
        if (k > 0) {
            n += (size_t)k;
            continue;
        }
        if (k != MW_EAGAIN) fail_msg("wss read: %s", mw_stream_last_error(s));
        stream_wait(s, deadline, "echo");
    }
    assert_int_equal(n, sizeof rec);
    assert_memory_equal(got, rec, sizeof rec);
    assert_int_equal(mw__ws_close(s, 1000, "bye"), 0);
    ssize_t k;
    while ((k = mw__stream_read(s, got, sizeof got)) == MW_EAGAIN || k > 0) stream_wait(s, deadline, "close");
    assert_int_equal(k, MW_ECLOSED);
    assert_int_equal(mw__ws_peer_close_code(s), 1000);
    mw_stream_free(s);
    mw__tls_ctx_free(ctx);
    int st = stop_server(tls_pid, SIGTERM, 10000);
    tls_pid = 0;
    assert_true(st >= 0 && WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* ws_autobahn against ws_echo: the self-test runs the whole protocol. */
static void test_ws_autobahn_self_test_against_ws_echo(void **state) {
    (void)state;
    char cmd[512], out[4096];
    snprintf(cmd, sizeof cmd,
             "%s --url ws://127.0.0.1:%d --agent 'conformance test' --cases 4 --self-test --timeout 10",
             AUTOBAHN_BIN, echo_port);
    int rc = mw_run(cmd, out, sizeof out);
    if (rc != 0) fail_msg("ws_autobahn exited %d:\n%s", rc, out);
    assert_non_null(strstr(out, "ws_autobahn: 4 cases on the server, running 4"));
    for (int i = 1; i <= 4; i++) {
        char line[64];
        snprintf(line, sizeof line, "case %d: closed 1000 (normal), ", i);
        if (!strstr(out, line)) fail_msg("no '%s' in:\n%s", line, out);
    }
    assert_non_null(strstr(out, "4 cases: 4 closed by the server, 0 failed by us, 0 dropped, 0 timed out, 0 errors; "
                                "reports updated"));
    /* --cases limits: the server (here: the self-test) has 4, we run 2. */
    snprintf(cmd, sizeof cmd, "%s --url ws://127.0.0.1:%d --agent x --cases 2 --self-test", AUTOBAHN_BIN, echo_port);
    assert_int_equal(mw_run(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "2 cases: 2 closed by the server"));
}

/* ---- ws_autobahn against a miniature fuzzingserver ------------------------------------- */

static pid_t ab_pid;

static int ab_teardown(void **state) {
    (void)state;
    if (ab_pid > 0) stop_server(ab_pid, SIGKILL, 5000);
    ab_pid = 0;
    return 0;
}

/* Starts argv with its stdout on a pipe (returned in *out). */
static pid_t spawn_capture(char *const argv[], int *out) {
    int pfd[2];
    if (pipe(pfd) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(pfd[1], STDOUT_FILENO);
        close(pfd[0]);
        close(pfd[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(pfd[1]);
    *out = pfd[0];
    return pid;
}

static int listen_loopback(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Accepts the next client, checks its request line and upgrade headers,
 * answers 101. */
static void srv_accept(int lfd, cli_t *c, const char *want_target) {
    struct pollfd p = {lfd, POLLIN, 0};
    assert_int_equal(poll(&p, 1, IO_MS), 1);
    memset(c, 0, sizeof *c);
    c->fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    assert_true(c->fd >= 0);
    size_t hl = cli_read_head(c);
    char head[2048], line[1024], key[64], acc[29], resp[256];
    assert_true(hl < sizeof head);
    memcpy(head, c->rb + c->roff, hl);
    head[hl] = '\0';
    c->roff += hl;
    snprintf(line, sizeof line, "GET %s HTTP/1.1\r\n", want_target);
    if (strncmp(head, line, strlen(line)) != 0) fail_msg("expected '%s', got:\n%s", line, head);
    head_value(head, "Upgrade", key, sizeof key);
    assert_int_equal(strcasecmp(key, "websocket"), 0);
    head_value(head, "Sec-WebSocket-Version", key, sizeof key);
    assert_string_equal(key, "13");
    head_value(head, "Sec-WebSocket-Key", key, sizeof key);
    accept_for(key, acc);
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n\r\n",
                     acc);
    assert_true(cli_send(c, resp, (size_t)n));
}

/* A server frame: never masked. */
static void wb_sframe(wbuf_t *b, unsigned b0, const void *payload, size_t n) {
    uint8_t h[10];
    size_t hl = 0;
    h[hl++] = (uint8_t)b0;
    if (n < 126) {
        h[hl++] = (uint8_t)n;
    } else if (n < 65536) {
        h[hl++] = 126, h[hl++] = (uint8_t)(n >> 8), h[hl++] = (uint8_t)n;
    } else {
        h[hl++] = 127;
        for (int i = 7; i >= 0; i--) h[hl++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    wb_put(b, h, hl);
    wb_put(b, payload, n);
}

/* The next client frame: masked, minimal length, FIN, opcode and payload. */
static void expect_cframe(cli_t *c, unsigned op, const void *p, size_t n) {
    frame_t f;
    if (cli_frame(c, &f, IO_MS) != 1) fail_msg("expected a %s frame from the client", op_name(op));
    assert_true(f.masked);
    assert_int_equal(f.rsv, 0);
    assert_int_equal(f.hl, (f.n < 126 ? 2u : f.n < 65536 ? 4u : 10u) + 4);
    if (f.op != op) fail_msg("expected %s from the client, got %s '%.60s'", op_name(op), op_name(f.op), (char *)f.p);
    assert_true(f.fin);
    assert_int_equal(f.n, n);
    if (n) assert_memory_equal(f.p, p, n);
    frame_free(&f);
}

static void srv_send(cli_t *c, wbuf_t *b) {
    assert_true(cli_send(c, b->p, b->n));
    b->n = 0;
}

/* The server closes with `code`; the client must answer with the same. */
static void srv_close(cli_t *c, wbuf_t *b, const char *echoed) {
    wb_sframe(b, FIN | OP_CLOSE, "\x03\xe8", 2);
    srv_send(c, b);
    expect_cframe(c, OP_CLOSE, echoed, 2);
    cli_close(c);
}

/* The client fails the connection with `code` after what the server sent. */
static void srv_expect_failure(int lfd, const char *target, unsigned b0, const void *p, size_t n, unsigned code) {
    cli_t c;
    wbuf_t b = {0};
    srv_accept(lfd, &c, target);
    if (b0 & 0x100) wb_frame(&b, b0 & 0xFF, p, n); /* masked: wrong from a server */
    else wb_sframe(&b, b0, p, n);
    srv_send(&c, &b);
    frame_t f;
    if (cli_frame(&c, &f, IO_MS) != 1) fail_msg("no close from the client");
    assert_int_equal(f.op, OP_CLOSE);
    assert_true(f.masked && f.n >= 2);
    assert_int_equal((unsigned)f.p[0] << 8 | f.p[1], code);
    frame_free(&f);
    cli_close(&c);
    wb_free(&b);
}

static void test_ws_autobahn_runs_the_fuzzingserver_protocol(void **state) {
    (void)state;
    int port, lfd = listen_loopback(&port), out;
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d", port);
    char *argv[] = {AUTOBAHN_BIN, "--url", url, "--agent", "mini fuzz/server", "--cases", "4", "--timeout", "10",
                    NULL};
    ab_pid = spawn_capture(argv, &out);
    assert_true(ab_pid > 0);
    cli_t c;
    wbuf_t b = {0};
    srv_accept(lfd, &c, "/getCaseCount"); /* 5 cases; --cases 4 runs 4 */
    wb_sframe(&b, FIN | OP_TEXT, "5", 1);
    srv_send(&c, &b);
    srv_close(&c, &b, "\x03\xe8");
    /* case 1: fragments around a ping, a 70000-byte binary, then our close */
    srv_accept(lfd, &c, "/runCase?case=1&agent=mini%20fuzz%2Fserver");
    wb_sframe(&b, OP_TEXT, "Hel", 3);
    wb_sframe(&b, FIN | OP_PING, "p", 1);
    wb_sframe(&b, FIN | OP_CONT, "lo", 2);
    srv_send(&c, &b);
    expect_cframe(&c, OP_PONG, "p", 1);
    expect_cframe(&c, OP_TEXT, "Hello", 5);
    uint8_t *big = bin_payload(70000, 1);
    wb_sframe(&b, FIN | OP_BIN, big, 70000);
    srv_send(&c, &b);
    expect_cframe(&c, OP_BIN, big, 70000);
    free(big);
    srv_close(&c, &b, "\x03\xe8");
    /* case 2: invalid UTF-8; case 3: RSV1; case 4: a masked server frame */
    srv_expect_failure(lfd, "/runCase?case=2&agent=mini%20fuzz%2Fserver", FIN | OP_TEXT, "\xce\xba\xed\xa0\x80", 5,
                       1007);
    srv_expect_failure(lfd, "/runCase?case=3&agent=mini%20fuzz%2Fserver", FIN | 0x40 | OP_TEXT, "x", 1, 1002);
    srv_expect_failure(lfd, "/runCase?case=4&agent=mini%20fuzz%2Fserver", 0x100 | FIN | OP_TEXT, "x", 1, 1002);
    srv_accept(lfd, &c, "/updateReports?agent=mini%20fuzz%2Fserver");
    srv_close(&c, &b, "\x03\xe8");
    wb_free(&b);
    close(lfd);

    char text[4096];
    size_t n = 0;
    uint64_t deadline = now_ms() + IO_MS;
    for (;;) {
        struct pollfd p = {out, POLLIN, 0};
        assert_int_equal(poll(&p, 1, ms_left(deadline)), 1);
        ssize_t r = read(out, text + n, sizeof text - 1 - n);
        if (r <= 0) break;
        n += (size_t)r;
    }
    text[n] = '\0';
    close(out);
    int st = stop_server(ab_pid, 0, IO_MS);
    ab_pid = 0;
    if (st < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) fail_msg("ws_autobahn failed:\n%s", text);
    static const char *want[] = {
        "ws_autobahn: 5 cases on the server, running 4 as agent 'mini fuzz/server'\n",
        "case 1: closed 1000 (normal), 2 msgs\n",
        "case 2: failed 1007 (",
        "case 3: failed 1002 (",
        "case 4: failed 1002 (",
        "ws_autobahn: 4 cases: 1 closed by the server, 3 failed by us, 0 dropped, 0 timed out, 0 errors; "
        "reports updated\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(text, want[i])) fail_msg("no '%s' in:\n%s", want[i], text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ws_1_1_1_to_1_1_7_text_of_length_0_to_65536_echoed),
        cmocka_unit_test(test_ws_1_1_8_text_65536_in_997_byte_chops_echoed),
        cmocka_unit_test(test_ws_1_2_1_to_1_2_7_binary_of_length_0_to_65536_echoed),
        cmocka_unit_test(test_ws_1_2_8_binary_65536_in_997_byte_chops_echoed),
        cmocka_unit_test(test_ws_1_x_text_and_binary_of_1_mib_plus_1_echoed),
        cmocka_unit_test(test_ws_1_x_server_header_bytes_use_minimal_length_encoding),
        cmocka_unit_test(test_ws_1_x_bad_length_encodings_close_1002),
        cmocka_unit_test(test_ws_1_x_unmasked_client_frame_closes_1002),
        cmocka_unit_test(test_ws_2_1_to_2_4_ping_with_0_to_125_bytes_gets_pong_with_same_payload),
        cmocka_unit_test(test_ws_2_5_ping_with_126_bytes_closes_1002),
        cmocka_unit_test(test_ws_2_6_ping_125_bytes_in_1_byte_chops_gets_pong),
        cmocka_unit_test(test_ws_2_7_to_2_9_unsolicited_pongs_are_ignored),
        cmocka_unit_test(test_ws_2_10_ten_pings_in_one_write_get_ten_pongs),
        cmocka_unit_test(test_ws_2_11_ten_pings_in_1_byte_chops_get_ten_pongs),
        cmocka_unit_test(test_ws_3_1_text_with_rsv1_closes_1002),
        cmocka_unit_test(test_ws_3_2_message_before_a_bad_frame_is_echoed_before_the_close),
        cmocka_unit_test(test_ws_3_2_to_3_7_rsv_bits_on_any_frame_close_1002_without_echo),
        cmocka_unit_test(test_ws_4_1_reserved_data_opcodes_3_to_7_close_1002),
        cmocka_unit_test(test_ws_4_2_reserved_control_opcodes_11_to_15_close_1002),
        cmocka_unit_test(test_ws_5_1_fragmented_ping_closes_1002),
        cmocka_unit_test(test_ws_5_2_fragmented_pong_closes_1002),
        cmocka_unit_test(test_ws_5_3_to_5_5_text_in_two_fragments_echoed_as_one),
        cmocka_unit_test(test_ws_5_x_text_in_2_to_24_fragments_echoed_as_one),
        cmocka_unit_test(test_ws_5_x_binary_in_2_to_24_fragments_echoed_as_one),
        cmocka_unit_test(test_ws_5_6_to_5_8_fragmented_text_with_interleaved_ping_pong_comes_first),
        cmocka_unit_test(test_ws_5_x_ping_between_fragments_answered_before_the_message_ends),
        cmocka_unit_test(test_ws_5_9_to_5_14_continuation_without_a_start_closes_1002),
        cmocka_unit_test(test_ws_5_15_continuation_after_a_finished_message_closes_1002),
        cmocka_unit_test(test_ws_5_18_new_data_frame_inside_a_fragmented_message_closes_1002),
        cmocka_unit_test(test_ws_5_19_5_20_fragments_with_pings_and_waits_echoed),
        cmocka_unit_test(test_ws_6_1_empty_text_and_empty_fragments_echoed),
        cmocka_unit_test(test_ws_6_2_and_6_5_to_6_23_valid_utf8_whole_and_split_at_every_byte_echoed),
        cmocka_unit_test(test_ws_6_3_and_6_6_to_6_21_invalid_utf8_in_one_frame_closes_1007),
        cmocka_unit_test(test_ws_6_4_invalid_utf8_fails_fast_across_fragments),
        cmocka_unit_test(test_ws_6_4_1_and_6_4_2_invalid_second_fragment_fails_before_the_third),
        cmocka_unit_test(test_ws_6_4_3_invalid_utf8_fails_fast_inside_an_unfinished_frame),
        cmocka_unit_test(test_ws_7_1_1_text_then_close_echoed_then_closed),
        cmocka_unit_test(test_ws_7_1_2_to_7_1_4_nothing_after_close_is_answered),
        cmocka_unit_test(test_ws_7_1_5_close_inside_a_fragmented_message_ends_it),
        cmocka_unit_test(test_ws_7_1_6_large_text_text_close_ping_in_one_write),
        cmocka_unit_test(test_ws_7_3_1_close_without_payload_answered),
        cmocka_unit_test(test_ws_7_3_2_close_with_1_byte_payload_closes_1002),
        cmocka_unit_test(test_ws_7_3_3_to_7_3_5_close_1000_with_reason_answered_1000_and_tcp_closed),
        cmocka_unit_test(test_ws_7_3_6_close_with_124_byte_reason_closes_1002),
        cmocka_unit_test(test_ws_7_5_1_close_reason_with_invalid_utf8_closes_1007),
        cmocka_unit_test(test_ws_7_7_valid_close_codes_echoed),
        cmocka_unit_test(test_ws_7_9_invalid_close_codes_close_1002),
        cmocka_unit_test(test_ws_9_1_and_9_2_text_and_binary_of_64k_to_4m_echoed),
        cmocka_unit_test(test_ws_9_3_text_of_1m_in_fragments_of_64_to_1m_echoed),
        cmocka_unit_test(test_ws_9_4_binary_of_1m_in_fragments_of_64_to_1m_echoed),
        cmocka_unit_test(test_ws_9_5_and_9_6_1m_message_in_tcp_chops_echoed),
        cmocka_unit_test(test_ws_9_7_1000_text_messages_pipelined_echoed_in_order),
        cmocka_unit_test(test_ws_9_8_1000_binary_messages_pipelined_echoed_in_order),
        cmocka_unit_test(test_ws_9_x_message_over_max_msg_closes_1009_from_the_header),
        cmocka_unit_test(test_ws_9_x_message_over_max_msg_sent_whole_closes_1009),
        cmocka_unit_test(test_ws_9_x_fragmented_message_over_max_msg_closes_1009),
        cmocka_unit_test(test_ws_9_x_everything_in_1_byte_tcp_writes_works),
        cmocka_unit_test(test_ws_9_x_many_clients_at_once),
        cmocka_unit_test(test_ws_handshake_missing_upgrade_gets_400),
        cmocka_unit_test(test_ws_handshake_wrong_version_gets_426_with_version_13),
        cmocka_unit_test(test_ws_handshake_bad_key_gets_400),
        cmocka_unit_test(test_ws_handshake_variants_accepted_and_offers_declined),
        cmocka_unit_test(test_ws_handshake_post_gets_405_and_huge_head_gets_431),
        cmocka_unit_test(test_ws_handshake_and_frames_in_one_write_echoed),
        cmocka_unit_test_teardown(test_ws_echo_sigterm_closes_clients_with_1001_and_exits_0, sig_teardown),
        cmocka_unit_test_teardown(test_ws_echo_over_tls_echoes_for_the_library_client, tls_teardown),
        cmocka_unit_test(test_ws_autobahn_self_test_against_ws_echo),
        cmocka_unit_test_teardown(test_ws_autobahn_runs_the_fuzzingserver_protocol, ab_teardown),
    };
    return cmocka_run_group_tests_name("ws_conformance", tests, group_setup, group_teardown);
}
