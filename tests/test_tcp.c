/* test_tcp.c - TCP streams and listeners over loopback: data both ways, socket
 * options, error codes and their text, close semantics, timeouts, and a large
 * nonblocking transfer. */
#include "mw_test.h"

#include "mw_clock.h"
#include "mw_tcp.h"
#include "clock_impl.h"
#include "stream_impl.h"
#include "tcp_impl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAIT_NS (5 * MW_NS_PER_S)

/* ---- helpers ---------------------------------------------------------------- */

static mw__listener_t *listen_on(const char *host, const mw_tcp_opts_t *o) {
    mw__listener_t *l = NULL;
    mw_err_t err = {0};
    int rc = mw__tcp_listen(&l, host, "0", o, &err);
    if (rc != 0) fail_msg("listen %s: %s", host, mw_err_text(&err));
    assert_true(mw__listener_port(l) > 0);
    return l;
}

static const char *port_of(const mw__listener_t *l, char *buf, size_t cap) {
    snprintf(buf, cap, "%d", mw__listener_port(l));
    return buf;
}

static mw_stream_t *accept_one(mw__listener_t *l) { return mw_test_accept(l, 5000); }

static mw_stream_t *connect_to(const char *host, const mw__listener_t *l, const mw_tcp_opts_t *o) {
    char port[8];
    mw_stream_t *s = NULL;
    mw_err_t err = {0};
    int rc = mw__tcp_connect(&s, host, port_of(l, port, sizeof port), o, WAIT_NS, &err);
    if (rc != 0) fail_msg("connect %s:%s: %s", host, port, mw_err_text(&err));
    return s;
}

/* Reads exactly n bytes, waiting for readability between reads. */
static void read_exact(mw_stream_t *s, void *dst, size_t n) {
    uint64_t deadline = mw__deadline_in(NULL, WAIT_NS);
    size_t got = 0;
    while (got < n) {
        ssize_t r = mw__stream_read(s, (char *)dst + got, n - got);
        if (r > 0) {
            got += (size_t)r;
        } else if (r == MW_EAGAIN) {
            assert_false(mw__deadline_passed(NULL, deadline));
            assert_true(mw__stream_wait(s, MW_WANT_READ, mw__deadline_left(NULL, deadline)) > 0);
        } else {
            fail_msg("read: %s (%s)", mw_errname((int)r), mw_stream_last_error(s));
        }
    }
}

/* The next read result that is not MW_EAGAIN. */
static ssize_t read_settled(mw_stream_t *s, void *dst, size_t cap) {
    uint64_t deadline = mw__deadline_in(NULL, WAIT_NS);
    for (;;) {
        ssize_t r = mw__stream_read(s, dst, cap);
        if (r != MW_EAGAIN) return r;
        assert_false(mw__deadline_passed(NULL, deadline));
        assert_true(mw__stream_wait(s, MW_WANT_READ, mw__deadline_left(NULL, deadline)) > 0);
    }
}

static int get_int_opt(const mw_stream_t *s, int level, int name) {
    int v = -1;
    socklen_t len = sizeof v;
    assert_int_equal(getsockopt(mw__stream_fd(s), level, name, &v, &len), 0);
    return v;
}

static bool is_nonblocking(const mw_stream_t *s) {
    int fl = fcntl(mw__stream_fd(s), F_GETFL);
    assert_true(fl >= 0);
    return (fl & O_NONBLOCK) != 0;
}

/* A bound socket that is not listening: connecting to its port is refused,
 * and no other test can take the port while it is held. */
static int refusing_port(int *fd) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    *fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(*fd >= 0);
    assert_int_equal(bind(*fd, (struct sockaddr *)&a, len), 0);
    assert_int_equal(getsockname(*fd, (struct sockaddr *)&a, &len), 0);
    return ntohs(a.sin_port);
}

/* ---- tests ------------------------------------------------------------------- */

static void test_tcp_exchanges_bytes_both_ways_with_writev(void **state) {
    (void)state;
    mw__listener_t *l = listen_on("127.0.0.1", NULL);
    mw_stream_t *c = connect_to("127.0.0.1", l, NULL);
    mw_stream_t *s = accept_one(l);
    assert_true(mw__is_tcp(c));
    assert_true(mw__is_tcp(s));
    assert_string_equal(c->ops->name, "tcp");
    assert_int_equal(mw__stream_want(c), 0);
    assert_true(is_nonblocking(c));
    assert_true(is_nonblocking(s));

    struct iovec out[4] = {{"head", 4}, {"", 0}, {"-body-", 6}, {"tail", 4}};
    assert_int_equal(mw__stream_writev(c, out, 4), 14);
    char buf[32] = {0};
    read_exact(s, buf, 14);
    assert_memory_equal(buf, "head-body-tail", 14);

    struct iovec back[3] = {{"x", 1}, {"yy", 2}, {"zzz", 3}};
    assert_int_equal(mw__stream_writev(s, back, 3), 6);
    read_exact(c, buf, 6);
    assert_memory_equal(buf, "xyyzzz", 6);
    assert_int_equal(mw__stream_read(c, buf, sizeof buf), MW_EAGAIN);

    /* Each end's view of the other matches. */
    char cl[64], cp[64], sl[64], sp[64];
    assert_int_equal(mw__tcp_local_name(c, cl, sizeof cl), 0);
    assert_int_equal(mw__tcp_peer_name(c, cp, sizeof cp), 0);
    assert_int_equal(mw__tcp_local_name(s, sl, sizeof sl), 0);
    assert_int_equal(mw__tcp_peer_name(s, sp, sizeof sp), 0);
    assert_string_equal(cl, sp);
    assert_string_equal(cp, sl);
    char want[32];
    snprintf(want, sizeof want, "127.0.0.1:%d", mw__listener_port(l));
    assert_string_equal(cp, want);
    assert_int_equal(mw__tcp_peer_name(c, cp, 4), MW_ETOOBIG);

    mw_stream_free(c);
    mw_stream_free(s);
    mw__listener_free(l);
}

static void test_tcp_nodelay_is_set_on_both_ends_by_default(void **state) {
    (void)state;
    mw__listener_t *l = listen_on("127.0.0.1", NULL);
    mw_stream_t *c = connect_to("127.0.0.1", l, NULL);
    mw_stream_t *s = accept_one(l);
    assert_int_not_equal(get_int_opt(c, IPPROTO_TCP, TCP_NODELAY), 0);
    assert_int_not_equal(get_int_opt(s, IPPROTO_TCP, TCP_NODELAY), 0);
    mw_stream_free(c);
    mw_stream_free(s);

    mw_tcp_opts_t o;
    mw__tcp_opts_init(&o);
    o.nodelay = false;
    c = connect_to("127.0.0.1", l, &o);
    assert_int_equal(get_int_opt(c, IPPROTO_TCP, TCP_NODELAY), 0);
    mw_stream_free(c);
    mw__listener_free(l);
}

static void test_tcp_wait_reports_readiness_and_times_out(void **state) {
    (void)state;
    mw__listener_t *l = listen_on("127.0.0.1", NULL);
    mw_stream_t *c = connect_to("127.0.0.1", l, NULL);
    mw_stream_t *s = accept_one(l);
    uint64_t t0 = mw_now_ns();
    assert_int_equal(mw__stream_wait(s, MW_WANT_READ, 20 * MW_NS_PER_MS), MW_ETIMEDOUT);
    assert_true(mw_now_ns() - t0 >= 20 * MW_NS_PER_MS);
    assert_int_equal(mw__stream_wait(s, MW_WANT_READ, 0), MW_ETIMEDOUT);
    assert_int_equal(mw__stream_wait(s, MW_WANT_READ | MW_WANT_WRITE, -1), MW_WANT_WRITE);
    assert_int_equal(mw__stream_write(c, "r", 1), 1);
    assert_int_equal(mw__stream_wait(s, MW_WANT_READ, WAIT_NS), MW_WANT_READ);
    assert_int_equal(mw__stream_wait(s, MW_WANT_READ | MW_WANT_WRITE, WAIT_NS),
                     MW_WANT_READ | MW_WANT_WRITE);
    mw_stream_free(c);
    mw_stream_free(s);
    mw__listener_free(l);
}

static void test_tcp_opts_init_fills_documented_defaults(void **state) {
    (void)state;
    mw_tcp_opts_t o;
    memset(&o, 0x7f, sizeof o);
    mw__tcp_opts_init(&o);
    assert_true(o.nodelay);
    assert_false(o.blocking);
    assert_true(o.reuseaddr);
    assert_int_equal(o.backlog, MW_TCP_BACKLOG_DEFAULT);
    assert_null(o.bind_addr);
    assert_null(o.bind_iface);
    assert_int_equal(o.busy_poll_us, 0);
    assert_int_equal(o.rcvbuf, 0);
    assert_int_equal(o.sndbuf, 0);
}

static void test_tcp_connect_to_closed_port_is_refused_with_address_in_text(void **state) {
    (void)state;
    int hold;
    int port = refusing_port(&hold);
    char ports[8], want[96];
    snprintf(ports, sizeof ports, "%d", port);
    snprintf(want, sizeof want, "connect 127.0.0.1:%d: Connection refused", port);
    mw_stream_t *c = NULL;
    mw_err_t err = {0};
    assert_int_equal(mw__tcp_connect(&c, "127.0.0.1", ports, NULL, WAIT_NS, &err), MW_ECONNREFUSED);
    assert_null(c);
    assert_int_equal(err.code, MW_ECONNREFUSED);
    assert_string_equal(mw_err_text(&err), want);
    /* Without a timeout the result is the same; err is optional. */
    assert_int_equal(mw__tcp_connect(&c, "127.0.0.1", ports, NULL, -1, NULL), MW_ECONNREFUSED);
    close(hold);
}

static void test_tcp_connect_start_and_finish_report_progress(void **state) {
    (void)state;
    mw__listener_t *l = listen_on("127.0.0.1", NULL);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)mw__listener_port(l))};
    mw_stream_t *c = NULL;
    int rc = mw__tcp_connect_start(&c, (struct sockaddr *)&a, sizeof a, NULL, NULL);
    assert_true(rc == 0 || rc == MW_EAGAIN);
    assert_non_null(c);
    if (rc == MW_EAGAIN) {
        assert_int_equal(mw__stream_want(c), MW_WANT_WRITE);
        assert_true(mw__stream_wait(c, MW_WANT_WRITE, WAIT_NS) & MW_WANT_WRITE);
        assert_int_equal(mw__stream_handshake(c), 1);
    }
    assert_int_equal(mw__stream_want(c), 0);
    assert_int_equal(mw__tcp_connect_finish(c), 0);
    assert_int_equal(mw__stream_handshake(c), 1);
    assert_int_equal(mw__stream_pending(c), 0);
    assert_false(mw__stream_is_msg(c));
    mw_stream_t *s = accept_one(l);
    assert_int_equal(mw__stream_write(c, "!", 1), 1);
    char ch = 0;
    read_exact(s, &ch, 1);
    assert_int_equal(ch, '!');
    mw_stream_free(c);
    mw_stream_free(s);
    mw__listener_free(l);

    /* A refused attempt is reported by finish, and again on the next call. */
    int hold;
    a.sin_port = htons((uint16_t)refusing_port(&hold));
    rc = mw__tcp_connect_start(&c, (struct sockaddr *)&a, sizeof a, NULL, NULL);
    if (rc == MW_EAGAIN) {
        assert_true(mw__stream_wait(c, MW_WANT_WRITE, WAIT_NS) > 0);
        assert_int_equal(mw__tcp_connect_finish(c), MW_ECONNREFUSED);
        assert_int_equal(mw__stream_handshake(c), MW_ECONNREFUSED);
        assert_int_equal(mw__stream_handshake(c), MW_ECONNREFUSED); /* sticky */
        assert_non_null(strstr(mw_stream_last_error(c), "Connection refused"));
        mw_stream_free(c);
    } else {
        assert_int_equal(rc, MW_ECONNREFUSED);
    }
    close(hold);
}

static void test_tcp_connect_by_name_tries_each_address(void **state) {
    (void)state;
    /* "localhost" may resolve to ::1 first; the listener is IPv4 only, so
     * that attempt is refused and the next address must be tried. */
    mw__listener_t *l = listen_on("127.0.0.1", NULL);
    char port[8];
    mw_stream_t *c = NULL;
    mw_err_t err = {.code = MW_ESYS};
    int rc = mw__tcp_connect(&c, "localhost", port_of(l, port, sizeof port), NULL, WAIT_NS, &err);
    if (rc != 0) fail_msg("connect localhost:%s: %s", port, mw_err_text(&err));
    assert_int_equal(err.code, 0); /* a failed first address leaves no text behind */
    mw_stream_t *s = accept_one(l);
    char name[64];
    assert_int_equal(mw__tcp_local_name(c, name, sizeof name), 0);
    assert_memory_equal(name, "127.0.0.1:", 10);
    mw_stream_free(c);
    mw_stream_free(s);
    mw__listener_free(l);
}

static void test_tcp_connect_times_out_when_backlog_is_full(void **state) {
    (void)state;
    /* With the accept queue full the kernel drops SYNs, so a connect never
     * completes and the deadline decides. */
    mw_tcp_opts_t lo;
    mw__tcp_opts_init(&lo);
    lo.backlog = 1;
    mw__listener_t *l = listen_on("127.0.0.1", &lo);
    char port[8], want[64];
    port_of(l, port, sizeof port);
    snprintf(want, sizeof want, "connect 127.0.0.1:%s: timed out", port);
    mw_stream_t *held[8] = {0};
    int rc = 0, n = 0;
    mw_err_t err = {0};
    while (n < 8) {
        uint64_t t0 = mw_now_ns();
        rc = mw__tcp_connect(&held[n], "127.0.0.1", port, NULL, 100 * MW_NS_PER_MS, &err);
        if (rc != 0) {
            assert_true(mw_now_ns() - t0 >= 100 * MW_NS_PER_MS);
            break;
        }
        n++;
    }
    assert_int_equal(rc, MW_ETIMEDOUT);
    assert_string_equal(mw_err_text(&err), want);
    assert_true(n >= 1);
    for (int i = 0; i < n; i++) mw_stream_free(held[i]);
    mw__listener_free(l);
}

static void test_tcp_peer_close_gives_closed_after_data_is_drained(void **state) {
    (void)state;
    mw__listener_t *l = listen_on("127.0.0.1", NULL);
    mw_stream_t *c = connect_to("127.0.0.1", l, NULL);
    mw_stream_t *s = accept_one(l);
    assert_int_equal(mw__stream_write(s, "bye", 3), 3);
    mw_stream_free(s);
    char buf[8];
    read_exact(c, buf, 3);
    assert_memory_equal(buf, "bye", 3);
    assert_int_equal(read_settled(c, buf, sizeof buf), MW_ECLOSED);
    assert_int_equal(mw__stream_read(c, buf, sizeof buf), MW_ECLOSED);

    /* Writing to the departed peer fails with MW_ECLOSED, never SIGPIPE. */
    uint64_t deadline = mw__deadline_in(NULL, WAIT_NS);
    ssize_t w;
    while ((w = mw__stream_write(c, "x", 1)) == 1) assert_false(mw__deadline_passed(NULL, deadline));
    assert_int_equal(w, MW_ECLOSED);
    char want[64];
    snprintf(want, sizeof want, "write 127.0.0.1:%d: ", mw__listener_port(l));
    assert_memory_equal(mw_stream_last_error(c), want, strlen(want));
    mw_stream_free(c);
    mw__listener_free(l);
}

static void test_tcp_reset_is_closed_with_read_text(void **state) {
    (void)state;
    mw__listener_t *l = listen_on("127.0.0.1", NULL);
    mw_stream_t *c = connect_to("127.0.0.1", l, NULL);
    mw_stream_t *s = accept_one(l);
    struct linger lg = {.l_onoff = 1, .l_linger = 0}; /* close sends RST */
    assert_int_equal(setsockopt(mw__stream_fd(s), SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    mw__stream_close(s);
    char buf[8], want[96];
    assert_int_equal(read_settled(c, buf, sizeof buf), MW_ECLOSED);
    snprintf(want, sizeof want, "read 127.0.0.1:%d: Connection reset by peer", mw__listener_port(l));
    assert_string_equal(mw_stream_last_error(c), want);
    mw_stream_free(c);
    mw_stream_free(s);
    mw__listener_free(l);
}

static void test_tcp_close_is_idempotent_and_later_io_is_closed(void **state) {
    (void)state;
    mw__listener_t *l = listen_on("127.0.0.1", NULL);
    mw_stream_t *c = connect_to("127.0.0.1", l, NULL);
    mw__stream_close(c);
    mw__stream_close(c);
    assert_int_equal(mw__stream_fd(c), -1);
    char buf[4];
    assert_int_equal(mw__stream_read(c, buf, sizeof buf), MW_ECLOSED);
    assert_int_equal(mw__stream_write(c, "x", 1), MW_ECLOSED);
    mw_stream_free(c);
    mw_stream_free(NULL);
    mw__listener_close(l);
    mw__listener_close(l);
    assert_int_equal(mw__listener_fd(l), -1);
    mw_stream_t *s = NULL;
    assert_int_equal(mw__listener_accept(l, &s, NULL), MW_ECLOSED);
    mw__listener_free(l);
    mw__listener_free(NULL);
}

static void test_tcp_blocking_read_returns_eagain_after_rcv_timeout(void **state) {
    (void)state;
    mw_tcp_opts_t o;
    mw__tcp_opts_init(&o);
    o.blocking = true;
    mw__listener_t *l = listen_on("127.0.0.1", &o);
    assert_true(fcntl(mw__listener_fd(l), F_GETFL) & O_NONBLOCK); /* listener stays nonblocking */
    mw_stream_t *c = connect_to("127.0.0.1", l, &o);
    mw_stream_t *s = accept_one(l);
    assert_false(is_nonblocking(c));
    assert_false(is_nonblocking(s));
    assert_int_equal(mw__tcp_set_timeouts(c, 50 * MW_NS_PER_MS, 1), 0);
    struct timeval tv[2];
    socklen_t len = sizeof tv[0];
    assert_int_equal(getsockopt(mw__stream_fd(c), SOL_SOCKET, SO_RCVTIMEO, &tv[0], &len), 0);
    assert_int_equal(getsockopt(mw__stream_fd(c), SOL_SOCKET, SO_SNDTIMEO, &tv[1], &len), 0);
    /* The kernel keeps the timeout in jiffies: 50 ms may read back a tick longer. */
    assert_in_range(tv[0].tv_sec * 1000000 + tv[0].tv_usec, 50000, 60000);
    assert_true(tv[1].tv_sec == 0 && tv[1].tv_usec > 0); /* 1 ns rounds up, never to "forever" */
    char buf[4];
    uint64_t t0 = mw_now_ns();
    assert_int_equal(mw__stream_read(c, buf, sizeof buf), MW_EAGAIN);
    uint64_t took = mw_now_ns() - t0;
    assert_true(took >= 40 * MW_NS_PER_MS);
    assert_true(took < 5 * MW_NS_PER_S);
    assert_int_equal(mw__tcp_set_timeouts(c, 0, -1), 0); /* none again */
    assert_int_equal(getsockopt(mw__stream_fd(c), SOL_SOCKET, SO_RCVTIMEO, &tv[0], &len), 0);
    assert_true(tv[0].tv_sec == 0 && tv[0].tv_usec == 0);
    /* A blocking read returns data as soon as it arrives. */
    assert_int_equal(mw__stream_write(s, "ok", 2), 2);
    read_exact(c, buf, 2);
    assert_memory_equal(buf, "ok", 2);
    mw_stream_free(c);
    mw_stream_free(s);
    mw__listener_free(l);
}

static void test_tcp_set_blocking_switches_the_flag(void **state) {
    (void)state;
    mw__listener_t *l = listen_on("127.0.0.1", NULL);
    mw_stream_t *c = connect_to("127.0.0.1", l, NULL);
    assert_true(is_nonblocking(c));
    assert_int_equal(mw__tcp_set_blocking(c, true), 0);
    assert_false(is_nonblocking(c));
    assert_int_equal(mw__tcp_set_blocking(c, false), 0);
    assert_true(is_nonblocking(c));
    assert_int_not_equal(fcntl(mw__stream_fd(c), F_GETFD) & FD_CLOEXEC, 0);
    assert_int_not_equal(fcntl(mw__listener_fd(l), F_GETFD) & FD_CLOEXEC, 0);
    mw_stream_t *s = accept_one(l);
    assert_int_not_equal(fcntl(mw__stream_fd(s), F_GETFD) & FD_CLOEXEC, 0);
    mw_stream_free(s);
    mw_stream_free(c);
    mw__listener_free(l);
}

static void test_tcp_bind_iface_lo_connects(void **state) {
    (void)state;
    mw__listener_t *l = listen_on("127.0.0.1", NULL);
    mw_tcp_opts_t o;
    mw__tcp_opts_init(&o);
    o.bind_iface = "lo";
    char port[8];
    mw_stream_t *c = NULL;
    mw_err_t err = {0};
    int rc = mw__tcp_connect(&c, "127.0.0.1", port_of(l, port, sizeof port), &o, WAIT_NS, &err);
    if (rc == MW_ESYS && strstr(mw_err_text(&err), "not permitted")) {
        mw__listener_free(l);
        skip(); /* SO_BINDTODEVICE needs CAP_NET_RAW on older kernels */
    }
    assert_int_equal(rc, 0);
    char dev[32] = {0};
    socklen_t len = sizeof dev;
    assert_int_equal(getsockopt(mw__stream_fd(c), SOL_SOCKET, SO_BINDTODEVICE, dev, &len), 0);
    assert_string_equal(dev, "lo");
    mw_stream_t *s = accept_one(l);
    assert_int_equal(mw__stream_write(c, "i", 1), 1);
    char ch = 0;
    read_exact(s, &ch, 1);
    assert_int_equal(ch, 'i');
    mw_stream_free(c);
    mw_stream_free(s);

    o.bind_iface = "no-such-if0";
    assert_int_not_equal(mw__tcp_connect(&c, "127.0.0.1", port, &o, WAIT_NS, &err), 0);
    assert_non_null(strstr(mw_err_text(&err), "bind to device no-such-if0"));
    mw__listener_free(l);
}

static void test_tcp_bind_addr_sets_local_address(void **state) {
    (void)state;
    mw__listener_t *l = listen_on("127.0.0.1", NULL);
    mw_tcp_opts_t o;
    mw__tcp_opts_init(&o);
    const char *specs[] = {"127.0.0.2", "127.0.0.2:0"};
    for (int i = 0; i < 2; i++) {
        o.bind_addr = specs[i];
        mw_stream_t *c = connect_to("127.0.0.1", l, &o);
        mw_stream_t *s = accept_one(l);
        char name[64], peer[64];
        assert_int_equal(mw__tcp_local_name(c, name, sizeof name), 0);
        assert_memory_equal(name, "127.0.0.2:", 10);
        assert_int_equal(mw__tcp_peer_name(s, peer, sizeof peer), 0);
        assert_string_equal(peer, name);
        mw_stream_free(c);
        mw_stream_free(s);
    }
    char port[8];
    mw_stream_t *c = NULL;
    mw_err_t err = {0};
    o.bind_addr = "[::1";
    assert_int_equal(mw__tcp_connect(&c, "127.0.0.1", port_of(l, port, sizeof port), &o, WAIT_NS, &err),
                     MW_EINVAL);
    assert_non_null(strstr(mw_err_text(&err), "bind address \"[::1\""));
    o.bind_addr = "not-an-ip";
    assert_int_equal(mw__tcp_connect(&c, "127.0.0.1", port, &o, WAIT_NS, &err), MW_EINVAL);
    assert_null(c);
    mw__listener_free(l);
}

static void test_tcp_ipv6_loopback(void **state) {
    (void)state;
    mw__listener_t *l = NULL;
    if (mw__tcp_listen(&l, "::1", "0", NULL, NULL) != 0) skip();
    mw_stream_t *c = connect_to("::1", l, NULL);
    mw_stream_t *s = accept_one(l);
    char name[64], want[64];
    assert_int_equal(mw__tcp_local_name(c, name, sizeof name), 0);
    assert_memory_equal(name, "[::1]:", 6);
    assert_int_equal(mw__tcp_peer_name(c, name, sizeof name), 0);
    snprintf(want, sizeof want, "[::1]:%d", mw__listener_port(l));
    assert_string_equal(name, want);
    assert_int_not_equal(get_int_opt(s, IPPROTO_TCP, TCP_NODELAY), 0);
    assert_int_equal(mw__stream_write(s, "v6", 2), 2);
    char buf[2];
    read_exact(c, buf, 2);
    assert_memory_equal(buf, "v6", 2);
    mw_stream_free(c);
    mw_stream_free(s);
    mw__listener_free(l);
}

static void test_tcp_accept_returns_eagain_when_nothing_pending(void **state) {
    (void)state;
    mw__listener_t *l = listen_on("127.0.0.1", NULL);
    mw_stream_t *s = NULL;
    mw_err_t err = {0};
    assert_int_equal(mw__listener_accept(l, &s, &err), MW_EAGAIN);
    assert_null(s);
    assert_int_equal(err.code, 0); /* "not now" is never formatted */
    mw__listener_free(l);
}

static void test_tcp_listen_reports_address_in_use(void **state) {
    (void)state;
    mw_tcp_opts_t o;
    mw__tcp_opts_init(&o);
    mw__listener_t *l = listen_on("127.0.0.1", &o);
    char port[8], want[64];
    port_of(l, port, sizeof port);
    mw__listener_t *l2 = NULL;
    mw_err_t err = {0};
    assert_int_equal(mw__tcp_listen(&l2, "127.0.0.1", port, &o, &err), MW_ESYS);
    assert_null(l2);
    snprintf(want, sizeof want, "bind 127.0.0.1:%s: Address already in use", port);
    assert_string_equal(mw_err_text(&err), want);
    mw__listener_free(l);
}

static void test_tcp_busy_poll_refusal_does_not_fail_connect(void **state) {
    (void)state;
    mw_tcp_opts_t o;
    mw__tcp_opts_init(&o);
    o.busy_poll_us = 50;
    mw__listener_t *l = listen_on("127.0.0.1", &o);
    mw_stream_t *c = connect_to("127.0.0.1", l, &o);
    mw_stream_t *s = accept_one(l);
    mw_stream_t *ends[2] = {c, s};
    for (int i = 0; i < 2; i++) {
        if (ends[i]->err.code == 0)
            assert_int_equal(get_int_opt(ends[i], SOL_SOCKET, SO_BUSY_POLL), 50);
        else
            assert_non_null(strstr(mw_stream_last_error(ends[i]), "SO_BUSY_POLL"));
    }
    assert_int_equal(mw__stream_write(c, "b", 1), 1);
    char ch = 0;
    read_exact(s, &ch, 1);
    assert_int_equal(ch, 'b');
    mw_stream_free(c);
    mw_stream_free(s);
    mw__listener_free(l);
}

/* ---- large nonblocking transfer ---------------------------------------------- */

#define BIG (8u << 20)

static uint8_t pattern_byte(size_t i) { return (uint8_t)((i * 2654435761u) >> 11); }

typedef struct sender {
    mw_stream_t *s;
    const uint8_t *data;
    int rc;
} sender_t;

#define TAIL (1u << 20)

/* Sends the data as uneven writev calls of three iovecs, waiting with
 * mw__stream_wait whenever the socket is full; the last TAIL bytes go through
 * mw__stream_write_all. */
static void *sender_main(void *arg) {
    sender_t *x = arg;
    size_t off = 0, step = 1000;
    uint64_t deadline = mw__deadline_in(NULL, 30 * MW_NS_PER_S);
    while (off < BIG - TAIL) {
        size_t n = step < BIG - TAIL - off ? step : BIG - TAIL - off;
        size_t a = n / 3, b = n / 2 - a;
        struct iovec iov[3] = {{(void *)(x->data + off), a},
                               {(void *)(x->data + off + a), b},
                               {(void *)(x->data + off + a + b), n - a - b}};
        ssize_t w = mw__stream_writev(x->s, iov, 3);
        if (w > 0) {
            off += (size_t)w;
            step = step * 7 % 200003 + 1;
            continue;
        }
        int r = w == MW_EAGAIN ? mw__stream_wait(x->s, MW_WANT_WRITE, mw__deadline_left(NULL, deadline))
                               : (int)w;
        if (r < 0) {
            x->rc = r;
            return NULL;
        }
    }
    x->rc = mw__stream_write_all(x->s, x->data + off, BIG - off, 30 * MW_NS_PER_S);
    return NULL;
}

static void test_tcp_8mib_nonblocking_transfer_is_byte_exact(void **state) {
    (void)state;
    mw_tcp_opts_t o;
    mw__tcp_opts_init(&o);
    o.rcvbuf = 64 * 1024; /* small buffers: many full-socket waits */
    o.sndbuf = 64 * 1024;
    mw__listener_t *l = listen_on("127.0.0.1", &o);
    mw_stream_t *c = connect_to("127.0.0.1", l, &o);
    mw_stream_t *s = accept_one(l);
    /* Linux doubles the requested size to account for bookkeeping. */
    assert_true(get_int_opt(c, SOL_SOCKET, SO_SNDBUF) >= 64 * 1024);
    assert_true(get_int_opt(c, SOL_SOCKET, SO_SNDBUF) <= 4 * 64 * 1024);
    assert_true(get_int_opt(s, SOL_SOCKET, SO_RCVBUF) <= 4 * 64 * 1024);

    uint8_t *src = malloc(BIG), *dst = malloc(BIG);
    assert_non_null(src);
    assert_non_null(dst);
    for (size_t i = 0; i < BIG; i++) src[i] = pattern_byte(i);
    sender_t x = {.s = c, .data = src};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, sender_main, &x), 0);
    size_t got = 0;
    uint64_t deadline = mw__deadline_in(NULL, 30 * MW_NS_PER_S);
    int werr = 0;
    while (got < BIG) {
        ssize_t r = mw__stream_read(s, dst + got, BIG - got);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r != MW_EAGAIN) break;
        int w = mw__stream_wait(s, MW_WANT_READ, mw__deadline_left(NULL, deadline));
        if (w < 0) {
            werr = w;
            break;
        }
    }
    pthread_join(th, NULL);
    assert_int_equal(werr, 0);
    assert_int_equal(x.rc, 0);
    assert_int_equal(got, BIG);
    assert_memory_equal(dst, src, BIG);
    char extra;
    assert_int_equal(mw__stream_read(s, &extra, 1), MW_EAGAIN);
    free(src);
    free(dst);
    mw_stream_free(c);
    mw_stream_free(s);
    mw__listener_free(l);
}

static void test_tcp_write_all_times_out_when_peer_does_not_read(void **state) {
    (void)state;
    mw_tcp_opts_t o;
    mw__tcp_opts_init(&o);
    o.sndbuf = 16 * 1024;
    o.rcvbuf = 16 * 1024;
    mw__listener_t *l = listen_on("127.0.0.1", &o);
    mw_stream_t *c = connect_to("127.0.0.1", l, &o);
    mw_stream_t *s = accept_one(l);
    /* Nobody reads: the sockets fill and write_all must give up at the deadline. */
    size_t n = 8u << 20;
    uint8_t *big = calloc(1, n);
    assert_non_null(big);
    uint64_t t0 = mw_now_ns();
    assert_int_equal(mw__stream_write_all(c, big, n, 50 * MW_NS_PER_MS), MW_ETIMEDOUT);
    assert_true(mw_now_ns() - t0 >= 50 * MW_NS_PER_MS);
    free(big);
    mw_stream_free(c);
    mw_stream_free(s);
    mw__listener_free(l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_exchanges_bytes_both_ways_with_writev),
        cmocka_unit_test(test_tcp_nodelay_is_set_on_both_ends_by_default),
        cmocka_unit_test(test_tcp_wait_reports_readiness_and_times_out),
        cmocka_unit_test(test_tcp_opts_init_fills_documented_defaults),
        cmocka_unit_test(test_tcp_connect_to_closed_port_is_refused_with_address_in_text),
        cmocka_unit_test(test_tcp_connect_start_and_finish_report_progress),
        cmocka_unit_test(test_tcp_connect_by_name_tries_each_address),
        cmocka_unit_test(test_tcp_connect_times_out_when_backlog_is_full),
        cmocka_unit_test(test_tcp_peer_close_gives_closed_after_data_is_drained),
        cmocka_unit_test(test_tcp_reset_is_closed_with_read_text),
        cmocka_unit_test(test_tcp_close_is_idempotent_and_later_io_is_closed),
        cmocka_unit_test(test_tcp_blocking_read_returns_eagain_after_rcv_timeout),
        cmocka_unit_test(test_tcp_set_blocking_switches_the_flag),
        cmocka_unit_test(test_tcp_bind_iface_lo_connects),
        cmocka_unit_test(test_tcp_bind_addr_sets_local_address),
        cmocka_unit_test(test_tcp_ipv6_loopback),
        cmocka_unit_test(test_tcp_accept_returns_eagain_when_nothing_pending),
        cmocka_unit_test(test_tcp_listen_reports_address_in_use),
        cmocka_unit_test(test_tcp_busy_poll_refusal_does_not_fail_connect),
        cmocka_unit_test(test_tcp_8mib_nonblocking_transfer_is_byte_exact),
        cmocka_unit_test(test_tcp_write_all_times_out_when_peer_does_not_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
