/* ws_echo.c - a WebSocket echo server: every text or binary message comes
 * back with the same opcode.
 *
 *   ws_echo --url ws://HOST:PORT[/PATH] [--max-msg BYTES] [--verbose]
 *   ws_echo --url wss://HOST:PORT[/PATH] --cert FILE --key FILE [--max-msg BYTES]
 *
 * Many clients at once on one mw_io (epoll) loop. The WebSocket stream does
 * the protocol: it answers pings, replies to close frames, and fails a bad
 * client with the RFC close code (1002, 1007, 1009) or a bad handshake with
 * an HTTP status; the other clients keep running. A path other than "/" is
 * the only one accepted (404 otherwise).
 *
 * Every connection ends the same way: push out what the stream still holds
 * (the close frame), shut down our sending side, then read and discard until
 * the client closes (at most LINGER_NS), so the last frame is not lost to a
 * TCP reset when unread bytes are left in our socket.
 *
 * A client gets HANDSHAKE_NS to complete its upgrade. When accept fails
 * (out of descriptors) the listener rests for ACCEPT_PAUSE_NS instead of
 * spinning on a level-triggered readiness it cannot clear.
 *
 * SIGINT / SIGTERM arrive through a signalfd watched by the loop: the
 * listener closes, every client gets close 1001 and up to STOP_NS to answer;
 * a second signal ends at once.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mw_io.h"
#include "mw_tcp.h"
#include "mw_tls.h"
#include "mw_ws.h"
#include "tool.h"
#include "ws_tool.h"
#include "stream_impl.h"
#include "tcp_impl.h"
#include "tls_impl.h"
#include "ws_impl.h"

static const char USAGE[] =
    "usage: ws_echo --url ws://HOST:PORT[/PATH] [--max-msg BYTES] [--verbose]\n"
    "       ws_echo --url wss://HOST:PORT[/PATH] --cert FILE --key FILE [--max-msg BYTES]\n"
    "\n"
    "  Echoes every WebSocket text or binary message with the same opcode.\n"
    "  Port 0 picks a free port; the port is printed as 'listening on PORT'.\n"
    "  A PATH other than / is the only one accepted (404 otherwise).\n"
    "  --max-msg: largest message in bytes (default 16777216); larger ones\n"
    "  are refused with close 1009. --verbose: one line per connection on stderr.\n"
    "  Runs until SIGINT or SIGTERM, then closes clients with 1001.\n"
    "  Exit status: 0 ok, 1 usage, 2 failure.\n";

#define LINGER_NS (2 * MW_NS_PER_S)
#define HANDSHAKE_NS (10 * MW_NS_PER_S)
#define ACCEPT_PAUSE_NS (100 * MW_NS_PER_MS)
#define STOP_NS (3 * MW_NS_PER_S)
#define DEFAULT_MAX_MSG (16u * 1024 * 1024)

enum { C_OPEN, C_CLOSING, C_FLUSH, C_LINGER };

struct server;

typedef struct conn {
    mw_sel_src_t src;
    mw_io_timer_t timer; /* the handshake, then the linger */
    struct server *srv;
    mw_stream_t *s;
    ws_echo_t echo;
    int state;
    uint64_t id;
    struct conn *prev, *next;
} conn_t;

typedef struct server {
    mw_io_t *io;
    mw__listener_t *lis;
    mw_sel_src_t lis_src, sig_src;
    mw_io_timer_t stop_timer, accept_timer;
    int sig_fd;
    mw__tls_ctx_t *tls;
    mw_ws_opts_t wo;
    conn_t *conns;
    size_t nconns;
    uint64_t accepted, next_id;
    int signals;
    bool verbose;
} server_t;

typedef struct cfg {
    const char *url, *cert, *key;
    uint64_t max_msg;
    bool verbose;
} cfg_t;

/* ---- connections ------------------------------------------------------------ */

static void conn_free(conn_t *c) {
    server_t *sv = c->srv;
    mw_io_del(sv->io, &c->src);
    mw_io_timer_stop(sv->io, &c->timer);
    if (c->prev) c->prev->next = c->next;
    else sv->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    sv->nconns--;
    mw_stream_free(c->s);
    ws_echo_fini(&c->echo);
    free(c);
}

static void conn_arm(conn_t *c, int events) {
    if (events != c->src.events) mw_io_mod(c->srv->io, &c->src, events);
}

/* The handshake, or the end of the connection, took too long. */
static void on_conn_timeout(mw_io_timer_t *t, void *ud) {
    (void)t;
    conn_t *c = ud;
    if (c->srv->verbose)
        fprintf(stderr, "ws_echo: conn %" PRIu64 " timed out in its %s\n", c->id,
                c->state == C_OPEN ? "handshake" : "closing");
    conn_free(c);
}

/* Reads and drops what the client still sends, below the WebSocket layer,
 * until it closes. */
static void conn_drain(conn_t *c) {
    uint8_t scratch[4096];
    for (;;) {
        ssize_t r = mw__stream_read(c->s->inner, scratch, sizeof scratch);
        if (r > 0) continue;
        if (r != MW_EAGAIN) {
            conn_free(c);
            return;
        }
        int want = mw__stream_want(c->s->inner);
        conn_arm(c, want ? want : MW_WANT_READ);
        return;
    }
}

static void conn_linger(conn_t *c) {
    c->state = C_LINGER;
    if (mw__is_tls(c->s->inner)) mw__tls_shutdown(c->s->inner);
    shutdown(mw__stream_fd(c->s), SHUT_WR);
    mw_io_timer_after(c->srv->io, &c->timer, LINGER_NS);
    conn_drain(c);
}

static void conn_flush(conn_t *c) {
    c->state = C_FLUSH;
    if (ws_tool_flush(c->s) == MW_EAGAIN) conn_arm(c, mw__stream_want(c->s));
    else conn_linger(c);
}

static void conn_ended(conn_t *c, int why) {
    if (c->srv->verbose) {
        int peer = mw__ws_peer_close_code(c->s), sent = mw__ws_sent_close_code(c->s);
        bool detail = why != MW_ECLOSED || !peer;
        fprintf(stderr,
                "ws_echo: conn %" PRIu64 " ended after %" PRIu64 " msgs: peer close %d, sent close %d (%s%s%s)\n",
                c->id, c->echo.msgs, peer, sent, mw_errname(why), detail ? ": " : "",
                detail ? mw_stream_last_error(c->s) : "");
    }
    mw_io_timer_after(c->srv->io, &c->timer, LINGER_NS); /* a client that never reads */
    conn_flush(c);
}

static void conn_pump(conn_t *c) {
    int r = ws_echo_pump(&c->echo, c->s);
    if (r < 0) {
        conn_ended(c, r);
        return;
    }
    if (mw_io_timer_armed(&c->timer) && mw__stream_handshake(c->s) == 1)
        mw_io_timer_stop(c->srv->io, &c->timer);
    conn_arm(c, ws_echo_events(&c->echo, c->s));
}

static int on_conn(mw_sel_src_t *src, int events) {
    (void)events;
    conn_t *c = src->ud;
    switch (c->state) {
    case C_OPEN:
    case C_CLOSING: conn_pump(c); break;
    case C_FLUSH: conn_flush(c); break;
    default: conn_drain(c); break;
    }
    return 1; /* epoll only: a dispatch means the socket was ready */
}

static int conn_add(server_t *sv, mw_stream_t *tcp) {
    mw_err_t err;
    mw_stream_t *s = tcp;
    int r = sv->tls ? mw__tls_wrap(&s, tcp, sv->tls, NULL, &err) : 0;
    if (r == 0) r = mw__ws_server_wrap(&s, s, &sv->wo, &err);
    conn_t *c = r == 0 ? calloc(1, sizeof *c) : NULL;
    if (!c || ws_echo_init(&c->echo, sv->wo.max_msg) < 0) {
        if (r == 0) mw_stream_free(s);
        if (c) ws_echo_fini(&c->echo);
        free(c);
        fprintf(stderr, "ws_echo: dropping a client: %s\n", r < 0 ? mw_err_text(&err) : "out of memory");
        return r < 0 ? r : MW_ENOMEM;
    }
    c->srv = sv;
    c->s = s;
    c->id = ++sv->next_id;
    c->state = C_OPEN;
    mw_io_timer_init(&c->timer, on_conn_timeout, c);
    mw_sel_src_init(&c->src, mw__stream_fd(s), MW_WANT_READ, on_conn, c);
    if ((r = mw_io_add(sv->io, &c->src)) < 0) {
        mw_stream_free(s);
        ws_echo_fini(&c->echo);
        free(c);
        return r;
    }
    mw_io_timer_after(sv->io, &c->timer, HANDSHAKE_NS);
    c->next = sv->conns;
    if (sv->conns) sv->conns->prev = c;
    sv->conns = c;
    sv->nconns++;
    sv->accepted++;
    return 0;
}

static int on_listener(mw_sel_src_t *src, int events) {
    (void)events;
    server_t *sv = src->ud;
    for (;;) {
        mw_stream_t *tcp;
        mw_err_t err;
        int r = mw__listener_accept(sv->lis, &tcp, &err);
        if (r == MW_EAGAIN) return 1;
        if (r < 0) {
            fprintf(stderr, "ws_echo: accept: %s\n", mw_err_text(&err));
            mw_io_mod(sv->io, &sv->lis_src, 0); /* e.g. EMFILE: rest, then retry */
            mw_io_timer_after(sv->io, &sv->accept_timer, ACCEPT_PAUSE_NS);
            return 1;
        }
        conn_add(sv, tcp);
    }
}

static void on_accept_timer(mw_io_timer_t *t, void *ud) {
    (void)t;
    server_t *sv = ud;
    if (sv->lis) mw_io_mod(sv->io, &sv->lis_src, MW_WANT_READ);
}

/* ---- stopping ---------------------------------------------------------------- */

static void free_all(server_t *sv) {
    while (sv->conns) conn_free(sv->conns);
}

static void on_stop_timeout(mw_io_timer_t *t, void *ud) {
    (void)t;
    free_all(ud);
}

static void begin_stop(server_t *sv) {
    if (sv->lis) {
        mw_io_del(sv->io, &sv->lis_src);
        mw__listener_free(sv->lis);
        sv->lis = NULL;
    }
    mw_io_timer_after(sv->io, &sv->stop_timer, STOP_NS);
    for (conn_t *c = sv->conns, *next; c; c = next) {
        next = c->next; /* the pump may free c */
        if (c->state != C_OPEN) continue;
        if (mw__stream_handshake(c->s) != 1) {
            conn_free(c);
            continue;
        }
        c->state = C_CLOSING;
        c->echo.echo = false;
        if (mw__ws_close(c->s, MW_WS_CLOSE_GOING_AWAY, "server shutting down") < 0) conn_flush(c);
        else conn_pump(c);
    }
}

static int on_signal(mw_sel_src_t *src, int events) {
    (void)events;
    server_t *sv = src->ud;
    struct signalfd_siginfo si;
    while (read(sv->sig_fd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (++sv->signals == 1) begin_stop(sv);
        else free_all(sv);
    }
    return 1;
}

static int signals_open(server_t *sv) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) return -1;
    signal(SIGPIPE, SIG_IGN);
    sv->sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sv->sig_fd < 0) return -1;
    mw_sel_src_init(&sv->sig_src, sv->sig_fd, MW_WANT_READ, on_signal, sv);
    return mw_io_add(sv->io, &sv->sig_src) < 0 ? -1 : 0;
}

/* ---- set-up ------------------------------------------------------------------ */

static void parse_args(int argc, char **argv, cfg_t *c) {
    memset(c, 0, sizeof *c);
    c->max_msg = DEFAULT_MAX_MSG;
    const tool_opt_t opts[] = {
        {"--url", TOOL_OPT_STR, &c->url, NULL},
        {"--cert", TOOL_OPT_STR, &c->cert, NULL},
        {"--key", TOOL_OPT_STR, &c->key, NULL},
        {"--max-msg", TOOL_OPT_U64, &c->max_msg, NULL},
        {"--verbose", TOOL_OPT_FLAG, &c->verbose, NULL},
    };
    tool_parse(argc, argv, 1, opts, sizeof opts / sizeof opts[0], USAGE);
    if (!c->url) tool_usage_fail(USAGE, "--url is required");
    if (c->max_msg == 0 || c->max_msg > 0x7FFFFFF0u)
        tool_usage_fail(USAGE, "--max-msg must be 1..2147483632");
}

static void open_tls(server_t *sv, const cfg_t *c) {
    if (!c->cert || !c->key) tool_usage_fail(USAGE, "wss:// needs --cert and --key");
    mw_tls_opts_t to;
    mw__tls_opts_init(&to);
    to.cert_file = c->cert;
    to.key_file = c->key;
    mw_err_t err;
    if (mw__tls_ctx_new(&sv->tls, true, &to, &err) < 0) tool_fail("%s", mw_err_text(&err));
}

static void server_open(server_t *sv, const cfg_t *c, const mw__url_t *u) {
    mw_err_t err;
    if (u->scheme == MW_SCHEME_WSS) open_tls(sv, c);
    else if (c->cert || c->key) tool_usage_fail(USAGE, "--cert and --key need a wss:// URL");
    mw_ws_opts_init(&sv->wo);
    sv->wo.max_msg = (uint32_t)c->max_msg;
    sv->wo.flags = MW_WS_RECORD_OPCODE;
    sv->wo.expect_path = strcmp(u->path, "/") == 0 ? NULL : u->path;
    mw_io_opts_t io;
    mw_io_opts_init(&io);
    if (mw_io_new(&sv->io, &io, &err) < 0) tool_fail("%s", mw_err_text(&err));
    if (signals_open(sv) < 0) tool_fail("signalfd: %s", strerror(errno));
    mw_tcp_opts_t to;
    mw__tcp_opts_init(&to);
    if (mw__tcp_listen(&sv->lis, u->host, u->port, &to, &err) < 0) tool_fail("%s", mw_err_text(&err));
    mw_sel_src_init(&sv->lis_src, mw__listener_fd(sv->lis), MW_WANT_READ, on_listener, sv);
    if (mw_io_add(sv->io, &sv->lis_src) < 0) tool_fail("cannot watch the listener");
    mw_io_timer_init(&sv->stop_timer, on_stop_timeout, sv);
    mw_io_timer_init(&sv->accept_timer, on_accept_timer, sv);
}

int main(int argc, char **argv) {
    tool_init("ws_echo");
    cfg_t c;
    parse_args(argc, argv, &c);
    mw__url_t u;
    mw_err_t err;
    if (mw__url_parse(c.url, &u, &err) < 0) tool_usage_fail(USAGE, "%s", mw_err_text(&err));
    if (u.scheme != MW_SCHEME_WS && u.scheme != MW_SCHEME_WSS)
        tool_usage_fail(USAGE, "the URL must be ws:// or wss://, not %s://", mw__scheme_name(u.scheme));
    server_t sv;
    memset(&sv, 0, sizeof sv);
    sv.sig_fd = -1;
    sv.verbose = c.verbose;
    server_open(&sv, &c, &u);
    printf("listening on %d\n", mw__listener_port(sv.lis));
    fflush(stdout);
    while (sv.signals == 0 || sv.nconns > 0) {
        int r = mw_io_poll(sv.io, -1);
        if (r < 0 && r != MW_EAGAIN) tool_fail("poll: %s", mw_strerror(r));
    }
    mw_io_timer_stop(sv.io, &sv.stop_timer);
    mw_io_timer_stop(sv.io, &sv.accept_timer);
    if (sv.verbose) fprintf(stderr, "ws_echo: stopped after %" PRIu64 " connections\n", sv.accepted);
    mw_io_del(sv.io, &sv.sig_src);
    close(sv.sig_fd);
    mw_io_free(sv.io);
    mw__tls_ctx_free(sv.tls);
    return TOOL_EXIT_OK;
}
