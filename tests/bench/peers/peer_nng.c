/*
 * peer_nng - ping-pong over an nng pair1 socket on tcp://, the peer msgwire's
 * event mode is measured against (see peer_common.h for the command line).
 *
 * Both sides use nng's synchronous API as its documentation shows: a pair1
 * socket, nng_send / nng_recv into caller buffers. nng moves the bytes on its
 * own threads (aio + poller), the caller sleeps until a message is there, so
 * it compares with msgwire's event mode (one core for both processes in
 * run_bench.py). The clt ends with an empty message, on which the svc
 * (--once) exits.
 */
#include <nng/nng.h>
#include <nng/protocol/pair1/pair.h>

#define RAW_PROG "peer_nng"
#include "peer_common.h"

static nng_socket pair_socket(void)
{
    nng_socket s;
    int rv = nng_pair1_open(&s);
    if (rv != 0)
        die("nng_pair1_open: %s", nng_strerror(rv));
    nng_setopt_size(s, NNG_OPT_RECVMAXSZ, PEER_MAX_SIZE + 1);
    return s;
}

static int run_svc(const struct peer_opts *o)
{
    nng_socket s = pair_socket();
    nng_listener l;
    int rv = nng_listener_create(&l, s, o->url);
    if (rv == 0)
        rv = nng_listener_start(l, 0);
    if (rv != 0)
        die("nng listen %s: %s", o->url, nng_strerror(rv));
    int port = 0;
    rv = nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port);
    if (rv != 0)
        die("NNG_OPT_TCP_BOUND_PORT: %s", nng_strerror(rv));
    peer_listening((unsigned)port);

    size_t cap = PEER_MAX_SIZE + 1;
    unsigned char *buf = malloc(cap);
    if (!buf)
        die("out of memory");
    for (;;) {
        size_t n = cap;
        rv = nng_recv(s, buf, &n, 0);
        if (rv != 0)
            die("nng_recv: %s", nng_strerror(rv));
        rv = nng_send(s, buf, n, 0); /* the clt's empty goodbye too, as its last reply */
        if (rv != 0)
            die("nng_send: %s", nng_strerror(rv));
        if (n == 0 && o->once)
            break;
    }
    free(buf);
    nng_close(s);
    return 0;
}

static int run_clt(const struct peer_opts *o)
{
    nng_socket s = pair_socket();
    int rv = nng_dial(s, o->url, NULL, 0);
    if (rv != 0)
        die("nng_dial %s: %s", o->url, nng_strerror(rv));
    unsigned char *tx = malloc(o->size), *rx = malloc(o->size + 1);
    if (!tx || !rx)
        die("out of memory");
    struct peer_run r;
    peer_run_init(&r, o);
    while (r.seq < r.total) {
        peer_fill(tx, o->size, r.seq);
        uint64_t t0 = now_ns();
        rv = nng_send(s, tx, o->size, 0);
        if (rv != 0)
            die("nng_send: %s", nng_strerror(rv));
        size_t n = o->size + 1;
        rv = nng_recv(s, rx, &n, 0);
        uint64_t t1 = now_ns();
        if (rv != 0)
            die("nng_recv after %" PRIu64 " round trips: %s", r.seq, nng_strerror(rv));
        peer_check(tx, o->size, rx, n, r.seq);
        peer_record(&r, o, t0, t1);
    }
    nng_send(s, "", 0, 0);
    /* nng_close drops what is still queued: wait for the goodbye's echo, bounded */
    nng_duration t = 1000;
    nng_setopt_ms(s, NNG_OPT_RECVTIMEO, t);
    size_t n = o->size + 1;
    nng_recv(s, rx, &n, 0);
    nng_close(s);
    peer_report(&r, o, "nng", "event");
    free(tx);
    free(rx);
    return 0;
}

int main(int argc, char **argv)
{
    struct peer_opts o;
    peer_parse(argc, argv, &o, "event");
    if (o.mode && strcmp(o.mode, "event") != 0)
        die("only --mode event (nng's blocking nng_recv)");
    return strcmp(o.cmd, "svc") == 0 ? run_svc(&o) : run_clt(&o);
}
