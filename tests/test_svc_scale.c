/* test_svc_scale.c - many connections through an event-mode Svc: every
 * accepted connection is counted exactly once and gives back its fd when it
 * closes, with several workers and clients coming and going (churn); and a
 * listener takes a burst of connects without dropping handshakes. Slots are
 * reused oldest first, each with a new generation; an idle connection holds
 * no buffer, and buffers grow for a large message and go back after.
 *
 * Clients are raw sockets: cheap enough to open hundreds, and they write the
 * exact `fixed` frames (u32 big-endian length, u16 tag, fields little-endian;
 * README "Wire formats"). Waits poll the Svc's stats or the fd table with a
 * deadline; nothing sleeps.
 */
#include "mw_test.h"
#include "svc_harness.h"
#include "test_proto.h"

#include "mw_clock.h"
#include "mw_conn.h"
#include "mw_svc.h"
#include "mw_tcp.h"
#include "conn_impl.h"
#include "stream_impl.h"
#include "tcp_impl.h"

#include <stdatomic.h>

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

/* A message larger than a first buffer (4 KiB) and than the decode scratch
 * of test_protocol, for the buffer-growth tests. */
#define BIG_BLOB 20000
#define BIG_FIELDS(F) \
    F(U64, seq)       \
    F(BYTES, blob, BIG_BLOB)
MW_MESSAGE(big, 7, BIG_FIELDS)
#define SCALE_MSGS(M) M(ping) M(big)
MW_PROTOCOL(scale, SCALE_MSGS)

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

/* ---- the Svc under test: echoes every message --------------------------------
 * The fixture's (tests/util/svc_harness.h) in event mode, svh_echo; the
 * clients are raw sockets kept here (hundreds, counted in the fd table). */

/* The ids on_accept saw, in order (the slot tests). */
#define MAX_IDS 128
static mw_conn_id_t accepted_ids[MAX_IDS];
static atomic_int n_accepted_ids;

static void note_accept(svh_t *f, mw_svc_t *s, mw_conn_id_t id) {
    (void)f, (void)s;
    int i = atomic_load(&n_accepted_ids);
    if (i < MAX_IDS) accepted_ids[i] = id;
    atomic_store(&n_accepted_ids, i + 1); /* one worker accepts: no race between writers */
}

static mw_svc_t *svc_start_opts(svh_t *f, mw_svc_opts_t *o, const mw_protocol_t *p) {
    o->mode = f->mode = MW_MODE_EVENT;
    svh_svc_hooks(f, o);
    f->on_msg = svh_echo;
    f->on_accept = note_accept;
    f->proto = p;
    atomic_store(&n_accepted_ids, 0);
    svh_listen(f, "tcp", o);
    return f->svc;
}

static mw_svc_t *svc_start(svh_t *f, uint32_t workers, uint32_t max_conns, const char *backend) {
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.event.workers = workers;
    o.event.backend = backend;
    o.max_connections = max_conns;
    /* small buffers: hundreds of connections under ASan stay cheap */
    o.conn.rx_buf = o.conn.tx_buf = 4096;
    o.conn.max_msg = 1024;
    return svc_start_opts(f, &o, &test_protocol);
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
static void churn(svh_t *h, uint32_t workers, const char *backend, int rounds, int per_round) {
    /* MW_SCALE_ROUNDS / MW_SCALE_PER_ROUND scale it up by hand (a stress run). */
    const char *er = getenv("MW_SCALE_ROUNDS"), *ep = getenv("MW_SCALE_PER_ROUND");
    if (er && atoi(er) > 0) rounds = atoi(er);
    if (ep && atoi(ep) > 0) per_round = atoi(ep);
    const int n = rounds * per_round;
    mw_svc_t *s = svc_start(h, workers, (uint32_t)n, backend);
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
    svh_stop(h);
}

static void test_svc_counts_each_client_once_and_frees_its_fd_with_2_workers(void **state) {
    churn(*state, 2, NULL, 5, 100);
}

static void test_svc_counts_each_client_once_and_frees_its_fd_with_3_workers(void **state) {
    churn(*state, 3, NULL, 4, 100);
}

static void test_svc_counts_each_client_once_and_frees_its_fd_with_2_libevent_workers(void **state) {
    churn(*state, 2, "libevent", 3, 100);
}

static void test_svc_counts_each_client_once_with_1_worker(void **state) {
    churn(*state, 1, NULL, 3, 100);
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
    enum { ROUNDS = 4, PER_ROUND = 100, MAX = 40 };
    mw_svc_t *s = svc_start(*state, 2, MAX, NULL);
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
    svh_stop(*state);
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
    mw__listener_t *l = NULL;
    mw_err_t err = {0};
    if (mw__tcp_listen(&l, "127.0.0.1", "0", NULL, &err) != 0) fail_msg("listen: %s", mw_err_text(&err));
    int want = MW_TCP_BACKLOG_DEFAULT < cap ? MW_TCP_BACKLOG_DEFAULT : cap;
    assert_int_equal(backlog_of(mw__listener_fd(l)), want);
    mw__listener_free(l);

    mw_tcp_opts_t o;
    mw__tcp_opts_init(&o);
    o.backlog = 7;
    if (mw__tcp_listen(&l, "127.0.0.1", "0", &o, &err) != 0) fail_msg("listen: %s", mw_err_text(&err));
    assert_int_equal(backlog_of(mw__listener_fd(l)), 7);
    mw__listener_free(l);
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
    mw__listener_t *l = NULL;
    mw_err_t err = {0};
    if (mw__tcp_listen(&l, "127.0.0.1", "0", NULL, &err) != 0) fail_msg("listen: %s", mw_err_text(&err));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)mw__listener_port(l)),
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
    mw__listener_free(l);
    if (done != BURST) fail_msg("%d of %d connects completed within %d ms", done, BURST, WAIT_MS);
}

/* ---- slots: oldest free first, a new generation each time ------------------------ */

typedef struct nids { int n; } nids_t;

static bool ids_reach(void *ud) { return atomic_load(&n_accepted_ids) >= ((nids_t *)ud)->n; }

/* Connects a raw client and waits until the Svc has accepted it: its id. */
static mw_conn_id_t connect_accepted(int port, int *fd) {
    nids_t w = {atomic_load(&n_accepted_ids) + 1};
    *fd = raw_connect(port);
    if (!mw_wait_until(ids_reach, &w, WAIT_MS)) fail_msg("client %d not accepted", w.n);
    return accepted_ids[w.n - 1];
}

static uint32_t slot_of(mw_conn_id_t id) { return (uint32_t)id; }
static uint32_t gen_of(mw_conn_id_t id) { return (uint32_t)(id >> 32); }

typedef struct fdn { int n; } fdn_t;

static bool fds_are(void *ud) { return count_fds() == ((fdn_t *)ud)->n; }

/* Closes a client and waits until the Svc has closed its side too (its fd
 * is closed just before its slot is freed, on the one worker, which is also
 * the thread that accepts: the next accept sees the slot free). */
static void leave(int fd, int fds_after) {
    close(fd);
    fdn_t w = {fds_after};
    if (!mw_wait_until(fds_are, &w, WAIT_MS)) fail_msg("fds: %d, want %d", count_fds(), fds_after);
}

static void test_svc_reuses_freed_slots_oldest_first_with_a_new_generation(void **state) {
    mw_svc_t *s = svc_start(*state, 1, 16, NULL);
    int port = mw_svc_port(s);
    int base = count_fds();
    int fd[3], nfd[4];
    mw_conn_id_t id[3], nid[4];
    for (int i = 0; i < 3; i++) id[i] = connect_accepted(port, &fd[i]);
    for (int i = 0; i < 3; i++) { /* a fresh Svc hands out slots from the start of its table */
        assert_int_equal(slot_of(id[i]), (uint32_t)i);
        assert_int_equal(gen_of(id[i]), 1);
    }
    /* Freed in the order 1, 0, 2 (each client's fd and the Svc's go) */
    leave(fd[1], base + 4);
    leave(fd[0], base + 2);
    leave(fd[2], base);
    /* ... and reused in that order, each with the next generation; then the
     * table grows by one only when no freed slot is left. */
    const uint32_t order[3] = {1, 0, 2};
    for (int i = 0; i < 4; i++) nid[i] = connect_accepted(port, &nfd[i]);
    for (int i = 0; i < 3; i++) {
        if (slot_of(nid[i]) != order[i] || gen_of(nid[i]) != 2)
            fail_msg("new client %d: slot %u gen %u, want slot %u gen 2", i, slot_of(nid[i]), gen_of(nid[i]),
                     order[i]);
    }
    assert_int_equal(slot_of(nid[3]), 3);
    assert_int_equal(gen_of(nid[3]), 1);
    /* A stale id never reaches the connection now in its slot. */
    ping_t p = {.seq = 1, .sent_ns = 2};
    mw_conn_stats_t st;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(mw_svc_send_to(s, id[i], ping_schema(), &p), MW_ECLOSED);
        assert_int_equal(mw_svc_conn_stats(s, id[i], &st), MW_ECLOSED);
        assert_int_equal(mw_svc_conn_stats(s, nid[i], &st), 0);
    }
    /* ... while the new one in the same slot is served. */
    uint8_t f[PING_WIRE], back[PING_WIRE];
    ping_frame(f, 77);
    mw_test_raw_write(nfd[0], f, sizeof f);
    read_all(nfd[0], back, sizeof back);
    assert_memory_equal(f, back, sizeof f);
    for (int i = 0; i < 4; i++) close(nfd[i]);
    want_t w = {s, 7, base};
    assert_true(mw_wait_until(all_closed, &w, WAIT_MS));
    assert_true(mw_wait_until(fds_back, &w, WAIT_MS));
    svh_stop(*state);
}

/* ---- buffers: none while idle, grown for a large message -------------------------- */

typedef struct idle_q { mw_svc_t *s; const mw_conn_id_t *ids; int n; uint64_t held; } idle_q_t;

/* Every listed connection holds no buffer (their worker has finished with
 * them: the echo is written before the read pass ends). */
static bool all_idle(void *ud) {
    idle_q_t *q = ud;
    q->held = 0;
    for (int i = 0; i < q->n; i++) {
        mw_conn_stats_t st;
        if (mw_svc_conn_stats(q->s, q->ids[i], &st) != 0) fail_msg("connection %d is gone", i);
        q->held += st.buffer_bytes;
    }
    return q->held == 0;
}

/* A big message framed by hand: u32 big-endian length, then the fixed encoding. */
static size_t big_frame(uint8_t *out, size_t cap, uint64_t seq) {
    static big_t m;
    m.seq = seq;
    for (size_t i = 0; i < sizeof m.blob; i++) m.blob[i] = (uint8_t)(i * 7 + seq);
    mw_serdes_t sd;
    assert_int_equal(mw_serdes_init(&sd, "fixed", 0), 0);
    ssize_t n = big_encode(&sd, &m, out + 4, cap - 4);
    mw_serdes_fini(&sd);
    if (n < 0) fail_msg("encode big: %s", mw_errname((int)n));
    out[0] = (uint8_t)(n >> 24), out[1] = (uint8_t)(n >> 16), out[2] = (uint8_t)(n >> 8), out[3] = (uint8_t)n;
    return (size_t)n + 4;
}

/* Idle connections to a Svc with the library's default buffers (256 KiB
 * each way) hold no buffer at all; one of them echoes a 20 KB message
 * (larger than a first 4 KiB buffer and than the decode scratch), holds
 * nothing again after, and still echoes small ones. */
static void test_svc_idle_connections_hold_no_buffer_and_grow_for_a_big_message(void **state) {
    enum { N = 20 };
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.event.workers = 1;
    o.max_connections = 64;
    mw_svc_t *s = svc_start_opts(*state, &o, &scale_protocol);
    int port = mw_svc_port(s);
    int fd[N];
    mw_conn_id_t id[N];
    for (int i = 0; i < N; i++) {
        id[i] = connect_accepted(port, &fd[i]);
        uint8_t f[PING_WIRE], back[PING_WIRE];
        ping_frame(f, (uint64_t)i + 1);
        mw_test_raw_write(fd[i], f, sizeof f);
        read_all(fd[i], back, sizeof back);
        assert_memory_equal(f, back, sizeof f);
    }
    idle_q_t q = {s, id, N, 0};
    if (!mw_wait_until(all_idle, &q, WAIT_MS)) fail_msg("%d idle connections hold %llu buffer bytes", N,
                                                        (unsigned long long)q.held);
    static uint8_t big[BIG_BLOB + 64], back[BIG_BLOB + 64];
    for (uint64_t round = 1; round <= 2; round++) { /* the second one finds the larger size wanted */
        size_t n = big_frame(big, sizeof big, round);
        mw_test_raw_write(fd[3], big, n);
        read_all(fd[3], back, n);
        assert_memory_equal(big, back, n);
        if (!mw_wait_until(all_idle, &q, WAIT_MS)) fail_msg("after a big message: %llu buffer bytes held",
                                                            (unsigned long long)q.held);
    }
    uint8_t f[PING_WIRE], fb[PING_WIRE];
    ping_frame(f, 99);
    mw_test_raw_write(fd[3], f, sizeof f);
    read_all(fd[3], fb, sizeof fb);
    assert_memory_equal(f, fb, sizeof f);
    for (int i = 0; i < N; i++) close(fd[i]);
    svh_stop(*state);
}

typedef struct got { int n; uint64_t seq; bool blob_ok; uint64_t held_inside; } got_t;

static bool on_got(void *ud, mw__conn_t *c, const mw_schema_t *s, const void *msg) {
    got_t *g = ud;
    mw_conn_stats_t st;
    mw__conn_stats(c, &st);
    g->held_inside = st.buffer_bytes;
    g->n++;
    if (s->tag == big_TAG) {
        const big_t *b = msg;
        g->seq = b->seq;
        g->blob_ok = true;
        for (size_t i = 0; i < sizeof b->blob; i++)
            if (b->blob[i] != (uint8_t)(i * 7 + b->seq)) g->blob_ok = false;
    } else {
        g->seq = ((const ping_t *)msg)->seq;
    }
    return true;
}

static uint64_t held(mw__conn_t *c) {
    mw_conn_stats_t st;
    mw__conn_stats(c, &st);
    return st.buffer_bytes;
}

/* The same at the level of the message connection, over an in-memory pair:
 * no buffer before data, a tx buffer that grows for a big message and goes
 * back once flushed, an rx buffer and scratch held only inside the pump. */
static void test_conn_buffers_are_taken_when_needed_and_given_back_when_empty(void **state) {
    (void)state;
    mw_stream_t *sa, *sb;
    assert_int_equal(mw__pair_new(&sa, &sb, 1 << 20, 0), 0);
    mw__conn_t a, b;
    mw_err_t err = {0};
    assert_int_equal(mw__conn_init(&a, sa, &scale_protocol, NULL, &err), 0);
    assert_int_equal(mw__conn_init(&b, sb, &scale_protocol, NULL, &err), 0);
    assert_int_equal(held(&a), 0);
    assert_int_equal(held(&b), 0);

    ping_t p = {.seq = 5, .sent_ns = 6};
    assert_int_equal(mw__conn_send(&a, ping_schema(), &p), 0);
    assert_int_equal(held(&a), 0); /* written at once: the tx buffer went back */
    got_t g = {0};
    bool more;
    assert_true(mw__conn_pump(&b, on_got, &g, 4, &more) > 0);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.seq, 5);
    assert_true(g.held_inside >= 4096); /* rx buffer + scratch while delivering */
    assert_int_equal(held(&b), 0);

    static big_t m;
    m.seq = 3;
    for (size_t i = 0; i < sizeof m.blob; i++) m.blob[i] = (uint8_t)(i * 7 + 3);
    assert_int_equal(mw__conn_enqueue(&a, big_schema(), &m), 0);
    assert_true(held(&a) >= BIG_BLOB + 14); /* grew to hold it */
    assert_true(held(&a) <= 32768);         /* by doubling, not to tx_buf (256 KiB) */
    assert_int_equal(mw__conn_flush(&a), 0);
    assert_int_equal(held(&a), 0);
    /* The pair has no readiness: pump as an event loop would on each one
     * (a read fills the 4 KiB buffer, the next ones double it). */
    g = (got_t){0};
    for (int k = 0; k < 64 && g.n == 0; k++) assert_true(mw__conn_pump(&b, on_got, &g, 4, &more) >= 0);
    assert_int_equal(g.n, 1);
    assert_int_equal(g.seq, 3);
    assert_true(g.blob_ok);
    assert_true(g.held_inside >= BIG_BLOB + 14);
    assert_int_equal(held(&b), 0);

    /* The tx queue still holds what tx_buf allows before MW_EAGAIN. */
    int queued = 0;
    while (mw__conn_enqueue(&a, ping_schema(), &p) == 0 && queued < 1000000) queued++;
    assert_int_equal(queued, (256 * 1024) / PING_WIRE);
    assert_int_equal(mw__conn_flush(&a), 0);
    assert_int_equal(held(&a), 0);
    g = (got_t){0};
    for (int k = 0; k < 100000 && g.n < queued; k++) assert_true(mw__conn_pump(&b, on_got, &g, 4, &more) >= 0);
    assert_int_equal(g.n, queued);
    assert_int_equal(held(&b), 0);
    mw__conn_fini(&a);
    mw__conn_fini(&b);
}

/* The last of more than 64 clients leaving gives the slot table's pages
 * back: the table is handed out from its start again, and each slot goes on
 * from its generation. On a caller's io polled here, so that the posted
 * give-back surely ran before the next client comes. Without it the oldest
 * free slot (the last one of the table, freed first here) would come next. */
static void test_svc_gives_slots_back_when_the_last_client_leaves(void **state) {
    enum { N = 70 };
    mw_io_t *io = NULL;
    mw_err_t err = {0};
    if (mw_io_new(&io, NULL, &err) != 0) fail_msg("io: %s", mw_err_text(&err));
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.event.workers = 0;
    o.event.io = io;
    o.max_connections = 2000; /* a table large enough to come from mmap */
    o.conn.rx_buf = o.conn.tx_buf = 4096;
    o.conn.max_msg = 1024;
    mw_svc_t *s = svc_start_opts(*state, &o, &test_protocol);
    int port = mw_svc_port(s);
    int base = count_fds();
    int fd[N];
    mw_conn_id_t id[N];
    for (int i = 0; i < N; i++) {
        fd[i] = raw_connect(port);
        uint64_t dl = mw_now_ns() + (uint64_t)WAIT_MS * MW_NS_PER_MS;
        while (atomic_load(&n_accepted_ids) <= i && mw_now_ns() < dl) mw_io_poll(io, 10 * MW_NS_PER_MS);
        if (atomic_load(&n_accepted_ids) <= i) fail_msg("client %d not accepted", i);
        id[i] = accepted_ids[i];
        assert_int_equal(slot_of(id[i]), (uint32_t)i);
    }
    for (int i = N - 1; i >= 0; i--) close(fd[i]);
    uint64_t dl = mw_now_ns() + (uint64_t)WAIT_MS * MW_NS_PER_MS;
    while ((count_fds() != base || mw_svc_conn_count(s) != 0) && mw_now_ns() < dl) mw_io_poll(io, 10 * MW_NS_PER_MS);
    if (count_fds() != base) fail_msg("fds %d, want %d", count_fds(), base);
    for (int i = 0; i < 4; i++) mw_io_poll(io, 0); /* runs what the last close posted */
    int nfd = raw_connect(port);
    dl = mw_now_ns() + (uint64_t)WAIT_MS * MW_NS_PER_MS;
    while (atomic_load(&n_accepted_ids) <= N && mw_now_ns() < dl) mw_io_poll(io, 10 * MW_NS_PER_MS);
    if (atomic_load(&n_accepted_ids) <= N) fail_msg("the new client was not accepted");
    mw_conn_id_t nid = accepted_ids[N];
    if (slot_of(nid) != 0 || gen_of(nid) != 2)
        fail_msg("new client: slot %u gen %u, want slot 0 gen 2", slot_of(nid), gen_of(nid));
    ping_t p = {.seq = 1, .sent_ns = 2};
    assert_int_equal(mw_svc_send_to(s, id[0], ping_schema(), &p), MW_ECLOSED); /* the stale id */
    uint8_t f[PING_WIRE], back[PING_WIRE];
    ping_frame(f, 5);
    mw_test_raw_write(nfd, f, sizeof f);
    dl = mw_now_ns() + (uint64_t)WAIT_MS * MW_NS_PER_MS;
    size_t got = 0;
    while (got < sizeof back && mw_now_ns() < dl) {
        mw_io_poll(io, 10 * MW_NS_PER_MS);
        ssize_t r = recv(nfd, back + got, sizeof back - got, MSG_DONTWAIT);
        if (r > 0) got += (size_t)r;
    }
    assert_int_equal(got, sizeof back);
    assert_memory_equal(f, back, sizeof f);
    close(nfd);
    svh_stop(*state);
    mw_io_free(io);
}

/* A test with the fixture (tests/util/svc_harness.h). */
#define S(fn) cmocka_unit_test_setup_teardown(fn, svh_setup, svh_teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listener_backlog_defaults_to_large_value_capped_by_somaxconn),
        cmocka_unit_test(test_listener_takes_a_burst_of_connects_without_accepting),
        S(test_svc_counts_each_client_once_with_1_worker),
        S(test_svc_counts_each_client_once_and_frees_its_fd_with_2_workers),
        S(test_svc_counts_each_client_once_and_frees_its_fd_with_3_workers),
        S(test_svc_counts_each_client_once_and_frees_its_fd_with_2_libevent_workers),
        S(test_svc_over_max_connections_counts_each_client_once_with_2_workers),
        S(test_svc_reuses_freed_slots_oldest_first_with_a_new_generation),
        S(test_svc_gives_slots_back_when_the_last_client_leaves),
        S(test_svc_idle_connections_hold_no_buffer_and_grow_for_a_big_message),
        cmocka_unit_test(test_conn_buffers_are_taken_when_needed_and_given_back_when_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
