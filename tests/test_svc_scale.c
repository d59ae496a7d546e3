/* test_svc_scale.c - many connections through an event-mode Svc: every
 * accepted connection is counted exactly once and gives back its fd when it
 * closes, with several workers and clients coming and going (churn); and a
 * listener takes a burst of connects without dropping handshakes.
 *
 * Clients are raw sockets: cheap enough to open hundreds, and they write the
 * exact `fixed` frames (u32 big-endian length, u16 tag, fields little-endian;
 * README "Wire formats"). Waits poll the Svc's stats or the fd table with a
 * deadline; nothing sleeps.
 */
#include "mw_test.h"
#include "test_proto.h"

#include "mw_clock.h"
#include "mw_svc.h"
#include "mw_tcp.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WAIT_MS 10000
#define PING_WIRE 22 /* u32 length + u16 tag + u64 seq + u64 sent_ns */

/* Entries in /proc/self/fd, the directory's own fd not counted. */
static int count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) fail_msg("opendir /proc/self/fd: %s", strerror(errno));
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.') n++;
    closedir(d);
    return n - 1;
}

static void put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* One ping in the fixed serdes with u32 framing, built by hand. */
static void ping_frame(uint8_t out[PING_WIRE], uint64_t seq) {
    out[0] = out[1] = out[2] = 0;
    out[3] = PING_WIRE - 4;
    out[4] = (uint8_t)ping_TAG;
    out[5] = (uint8_t)(ping_TAG >> 8);
    put_le64(out + 6, seq);
    put_le64(out + 14, seq * 3);
}

/* Reads exactly n bytes from a blocking socket within WAIT_MS. */
static void read_all(int fd, uint8_t *p, size_t n) {
    uint64_t dl = mw_now_ns() + (uint64_t)WAIT_MS * MW_NS_PER_MS;
    while (n) {
        struct pollfd pf = {fd, POLLIN, 0};
        int left = (int)((dl - mw_now_ns()) / MW_NS_PER_MS);
        if (mw_now_ns() >= dl || poll(&pf, 1, left) <= 0) fail_msg("no echo within %d ms", WAIT_MS);
        ssize_t r = recv(fd, p, n, 0);
        if (r <= 0) fail_msg("echo read: %s", r == 0 ? "closed" : strerror(errno));
        p += r;
        n -= (size_t)r;
    }
}

/* ---- the Svc under test: echoes every message -------------------------------- */

static void echo(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg, void *ud) {
    (void)ud;
    mw_svc_send_to(s, id, sch, msg);
}

static mw_svc_t *svc_start(uint32_t workers, uint32_t max_conns, const char *backend) {
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.mode = MW_MODE_EVENT;
    o.workers = workers;
    o.backend = backend;
    o.max_connections = max_conns;
    /* small buffers: hundreds of connections under ASan stay cheap */
    o.conn.rx_buf = o.conn.tx_buf = 4096;
    o.conn.max_msg = 1024;
    o.on_msg = echo;
    mw_svc_t *s = NULL;
    mw_err_t err = {0};
    int r = mw_svc_listen(&s, "tcp://127.0.0.1:0", &test_protocol, &o, &err);
    if (r != 0) fail_msg("svc listen: %s: %s", mw_errname(r), mw_err_text(&err));
    return s;
}

typedef struct want { mw_svc_t *s; uint64_t n; int fds; } want_t;

/* n connections closed and none open (an extra accept, if any, is caught
 * by the exact count afterwards). */
static bool all_closed(void *ud) {
    want_t *w = ud;
    mw_svc_stats_t st;
    mw_svc_stats(w->s, &st);
    return st.closed >= w->n && st.connections == 0;
}

static bool fds_back(void *ud) { return count_fds() == ((want_t *)ud)->fds; }

static int raw_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail_msg("socket: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) fail_msg("connect: %s", strerror(errno));
    return fd;
}

/* Closes with a reset instead of a FIN (SO_LINGER 0). */
static void close_reset(int fd) {
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

/* rounds x per_round clients through a Svc with `workers` workers. In each
 * round every client connects; every third sends a ping and waits for its
 * echo (so it is surely adopted by its worker), every fifth leaves with a
 * reset; the rest leave at once, often before the Svc has even handed them
 * to a worker. Rounds follow each other without waiting, so closes of one
 * round overlap accepts of the next. */
static void churn(uint32_t workers, const char *backend, int rounds, int per_round) {
    /* MW_SCALE_ROUNDS / MW_SCALE_PER_ROUND scale it up by hand (a stress run). */
    const char *er = getenv("MW_SCALE_ROUNDS"), *ep = getenv("MW_SCALE_PER_ROUND");
    if (er && atoi(er) > 0) rounds = atoi(er);
    if (ep && atoi(ep) > 0) per_round = atoi(ep);
    const int n = rounds * per_round;
    mw_svc_t *s = svc_start(workers, (uint32_t)n, backend);
    int port = mw_svc_port(s);
    int base = count_fds();
    int *fds = calloc((size_t)per_round, sizeof *fds);
    assert_non_null(fds);
    uint64_t seq = 1;
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < per_round; i++) fds[i] = raw_connect(port);
        for (int i = 0; i < per_round; i += 3) {
            uint8_t f[PING_WIRE], back[PING_WIRE];
            ping_frame(f, seq++);
            mw_test_raw_write(fds[i], f, sizeof f);
            read_all(fds[i], back, sizeof back);
            assert_memory_equal(f, back, sizeof f);
        }
        for (int i = 0; i < per_round; i++) {
            if (i % 5 == 4) close_reset(fds[i]);
            else close(fds[i]);
        }
    }
    free(fds);
    want_t w = {s, (uint64_t)n, base};
    bool done = mw_wait_until(all_closed, &w, WAIT_MS);
    mw_svc_stats_t st;
    mw_svc_stats(s, &st);
    if (!done)
        fail_msg("after %d clients left: accepted %llu, closed %llu, open %u", n,
                 (unsigned long long)st.accepted, (unsigned long long)st.closed, st.connections);
    /* The fds go back as the closes finish: give the last one the deadline too. */
    mw_wait_until(fds_back, &w, WAIT_MS);
    int after = count_fds();
    if (st.accepted != (uint64_t)n || st.refused_full != 0 || after != base)
        fail_msg("%u workers, %d clients: accepted %llu (refused %llu), fds %d before, %d after", workers, n,
                 (unsigned long long)st.accepted, (unsigned long long)st.refused_full, base, after);
    assert_int_equal(st.closed, (uint64_t)n);
    mw_svc_free(s);
}

static void test_svc_counts_each_client_once_and_frees_its_fd_with_2_workers(void **state) {
    (void)state;
    churn(2, NULL, 5, 100);
}

static void test_svc_counts_each_client_once_and_frees_its_fd_with_3_workers(void **state) {
    (void)state;
    churn(3, NULL, 4, 100);
}

static void test_svc_counts_each_client_once_and_frees_its_fd_with_2_libevent_workers(void **state) {
    (void)state;
    churn(2, "libevent", 3, 100);
}

static void test_svc_counts_each_client_once_with_1_worker(void **state) {
    (void)state;
    churn(1, NULL, 3, 100);
}

typedef struct over { mw_svc_t *s; uint64_t n; } over_t;

static bool all_seen(void *ud) {
    over_t *o = ud;
    mw_svc_stats_t st;
    mw_svc_stats(o->s, &st);
    return st.accepted + st.refused_full >= o->n && st.closed >= st.accepted && st.connections == 0;
}

/* More clients at once than max_connections, through 2 workers: each one is
 * either accepted or refused (closed at once), never both or neither, and
 * every fd comes back. */
static void test_svc_over_max_connections_counts_each_client_once_with_2_workers(void **state) {
    (void)state;
    enum { ROUNDS = 4, PER_ROUND = 100, MAX = 40 };
    mw_svc_t *s = svc_start(2, MAX, NULL);
    int port = mw_svc_port(s);
    int base = count_fds();
    int fds[PER_ROUND];
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < PER_ROUND; i++) fds[i] = raw_connect(port);
        for (int i = 0; i < PER_ROUND; i++) close(fds[i]);
    }
    over_t o = {s, ROUNDS * PER_ROUND};
    bool done = mw_wait_until(all_seen, &o, WAIT_MS);
    want_t w = {s, o.n, base};
    mw_wait_until(fds_back, &w, WAIT_MS);
    mw_svc_stats_t st;
    mw_svc_stats(s, &st);
    int after = count_fds();
    if (!done || st.accepted + st.refused_full != o.n || st.closed != st.accepted || after != base)
        fail_msg("%llu clients: accepted %llu + refused %llu, closed %llu, open %u; fds %d before, %d after",
                 (unsigned long long)o.n, (unsigned long long)st.accepted, (unsigned long long)st.refused_full,
                 (unsigned long long)st.closed, st.connections, base, after);
    print_message("accepted %llu, refused %llu\n", (unsigned long long)st.accepted, (unsigned long long)st.refused_full);
    mw_svc_free(s);
}

/* ---- listen backlog ------------------------------------------------------------ */

static int somaxconn(void) {
    FILE *f = fopen("/proc/sys/net/core/somaxconn", "r");
    int v = 0;
    if (!f) return 0;
    if (fscanf(f, "%d", &v) != 1) v = 0;
    fclose(f);
    return v;
}

/* A listening socket's TCP_INFO carries its accept queue limit in
 * tcpi_sacked (Linux). */
static int backlog_of(int lfd) {
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (getsockopt(lfd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) fail_msg("TCP_INFO: %s", strerror(errno));
    return (int)ti.tcpi_sacked;
}

static void test_listener_backlog_defaults_to_large_value_capped_by_somaxconn(void **state) {
    (void)state;
    int cap = somaxconn();
    if (cap <= 0) skip();
    mw_listener_t *l = NULL;
    mw_err_t err = {0};
    if (mw_tcp_listen(&l, "127.0.0.1", "0", NULL, &err) != 0) fail_msg("listen: %s", mw_err_text(&err));
    int want = MW_TCP_BACKLOG_DEFAULT < cap ? MW_TCP_BACKLOG_DEFAULT : cap;
    assert_int_equal(backlog_of(mw_listener_fd(l)), want);
    mw_listener_free(l);

    mw_tcp_opts_t o;
    mw_tcp_opts_init(&o);
    o.backlog = 7;
    if (mw_tcp_listen(&l, "127.0.0.1", "0", &o, &err) != 0) fail_msg("listen: %s", mw_err_text(&err));
    assert_int_equal(backlog_of(mw_listener_fd(l)), 7);
    mw_listener_free(l);
}

/* BURST clients connect at once to a listener that accepts nothing yet:
 * with the default backlog every handshake completes from the queue. With a
 * queue shorter than the burst (the old default, 128) the kernel drops the
 * SYNs beyond it, and their retransmits too while nobody accepts: those
 * connects never complete. */
#define BURST 600

static void test_listener_takes_a_burst_of_connects_without_accepting(void **state) {
    (void)state;
    int cap = somaxconn();
    if (cap < BURST) skip(); /* the kernel caps the backlog below the burst */
    mw_listener_t *l = NULL;
    mw_err_t err = {0};
    if (mw_tcp_listen(&l, "127.0.0.1", "0", NULL, &err) != 0) fail_msg("listen: %s", mw_err_text(&err));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)mw_listener_port(l)),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    static struct pollfd pf[BURST];
    for (int i = 0; i < BURST; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) fail_msg("socket: %s", strerror(errno));
        if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 && errno != EINPROGRESS)
            fail_msg("connect %d: %s", i, strerror(errno));
        pf[i] = (struct pollfd){fd, POLLOUT, 0};
    }
    uint64_t dl = mw_now_ns() + (uint64_t)WAIT_MS * MW_NS_PER_MS;
    int done = 0;
    while (done < BURST && mw_now_ns() < dl) {
        if (poll(pf, BURST, 10) < 0) fail_msg("poll: %s", strerror(errno));
        done = 0;
        for (int i = 0; i < BURST; i++) {
            if (pf[i].fd < 0) {
                done++;
            } else if (pf[i].revents & (POLLOUT | POLLERR | POLLHUP)) {
                int e = 0;
                socklen_t el = sizeof e;
                getsockopt(pf[i].fd, SOL_SOCKET, SO_ERROR, &e, &el);
                if (e) fail_msg("connect %d: %s", i, strerror(e));
                close(pf[i].fd);
                pf[i].fd = -1;
                done++;
            }
        }
    }
    for (int i = 0; i < BURST; i++)
        if (pf[i].fd >= 0) close(pf[i].fd);
    mw_listener_free(l);
    if (done != BURST) fail_msg("%d of %d connects completed within %d ms", done, BURST, WAIT_MS);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listener_backlog_defaults_to_large_value_capped_by_somaxconn),
        cmocka_unit_test(test_listener_takes_a_burst_of_connects_without_accepting),
        cmocka_unit_test(test_svc_counts_each_client_once_with_1_worker),
        cmocka_unit_test(test_svc_counts_each_client_once_and_frees_its_fd_with_2_workers),
        cmocka_unit_test(test_svc_counts_each_client_once_and_frees_its_fd_with_3_workers),
        cmocka_unit_test(test_svc_counts_each_client_once_and_frees_its_fd_with_2_libevent_workers),
        cmocka_unit_test(test_svc_over_max_connections_counts_each_client_once_with_2_workers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
