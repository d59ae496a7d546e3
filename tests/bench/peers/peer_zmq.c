/*
 * peer_zmq - ping-pong over a ZeroMQ PAIR socket on tcp://, the peer msgwire's
 * event mode is measured against (see peer_common.h for the command line).
 *
 * Both sides use ZeroMQ the way its guide does: one context (one I/O thread,
 * the default), a PAIR socket, blocking zmq_send / zmq_recv. That is ZeroMQ's
 * own wait strategy: the application thread sleeps on the socket's mailbox
 * while the I/O thread runs epoll and moves the bytes, so it compares with
 * msgwire's event mode (one core for both processes in run_bench.py).
 * The clt ends with an empty message, on which the svc (--once) exits.
 */
#include <zmq.h>

#define RAW_PROG "peer_zmq"
#include "peer_common.h"

static void *pair_socket(void *ctx)
{
    void *s = zmq_socket(ctx, ZMQ_PAIR);
    if (!s)
        die("zmq_socket: %s", zmq_strerror(zmq_errno()));
    int linger = 1000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    return s;
}

static int run_svc(const struct peer_opts *o)
{
    char host[256], port[16], ep[300];
    peer_split_url(o->url, host, sizeof host, port, sizeof port);
    snprintf(ep, sizeof ep, "tcp://%s:%s", host, strcmp(port, "0") == 0 ? "*" : port);
    void *ctx = zmq_ctx_new();
    void *s = pair_socket(ctx);
    if (zmq_bind(s, ep) != 0)
        die("zmq_bind %s: %s", ep, zmq_strerror(zmq_errno()));
    char last[300];
    size_t ll = sizeof last;
    if (zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, last, &ll) != 0)
        die("ZMQ_LAST_ENDPOINT: %s", zmq_strerror(zmq_errno()));
    const char *colon = strrchr(last, ':');
    peer_listening(colon ? (unsigned)atoi(colon + 1) : 0);

    size_t cap = PEER_MAX_SIZE;
    unsigned char *buf = malloc(cap);
    if (!buf)
        die("out of memory");
    for (;;) {
        int n = zmq_recv(s, buf, cap, 0);
        if (n < 0) {
            if (zmq_errno() == EINTR)
                continue;
            die("zmq_recv: %s", zmq_strerror(zmq_errno()));
        }
        if (n == 0) { /* the clt's goodbye */
            if (o->once)
                break;
            continue;
        }
        if (zmq_send(s, buf, (size_t)n, 0) != n)
            die("zmq_send: %s", zmq_strerror(zmq_errno()));
    }
    free(buf);
    zmq_close(s);
    zmq_ctx_term(ctx);
    return 0;
}

static int run_clt(const struct peer_opts *o)
{
    void *ctx = zmq_ctx_new();
    void *s = pair_socket(ctx);
    if (zmq_connect(s, o->url) != 0)
        die("zmq_connect %s: %s", o->url, zmq_strerror(zmq_errno()));
    unsigned char *tx = malloc(o->size), *rx = malloc(o->size + 1);
    if (!tx || !rx)
        die("out of memory");
    struct peer_run r;
    peer_run_init(&r, o);
    while (r.seq < r.total) {
        peer_fill(tx, o->size, r.seq);
        uint64_t t0 = now_ns();
        if (zmq_send(s, tx, o->size, 0) != (int)o->size)
            die("zmq_send: %s", zmq_strerror(zmq_errno()));
        int n;
        do
            n = zmq_recv(s, rx, o->size + 1, 0);
        while (n < 0 && zmq_errno() == EINTR);
        uint64_t t1 = now_ns();
        if (n < 0)
            die("zmq_recv after %" PRIu64 " round trips: %s", r.seq, zmq_strerror(zmq_errno()));
        peer_check(tx, o->size, rx, (size_t)n, r.seq);
        peer_record(&r, o, t0, t1);
    }
    zmq_send(s, "", 0, 0);
    zmq_close(s);
    zmq_ctx_term(ctx);
    peer_report(&r, o, "zeromq", "event");
    free(tx);
    free(rx);
    return 0;
}

int main(int argc, char **argv)
{
    struct peer_opts o;
    peer_parse(argc, argv, &o, "event");
    if (o.mode && strcmp(o.mode, "event") != 0)
        die("only --mode event (ZeroMQ's blocking zmq_recv)");
    return strcmp(o.cmd, "svc") == 0 ? run_svc(&o) : run_clt(&o);
}
