/* test_faults.c - hostile peers and resource exhaustion against a real event
 * Svc on 127.0.0.1, with a legitimate client measured meanwhile:
 *
 *   slowloris      peers trickle half a frame (tcp://), half an HTTP upgrade
 *                  (ws://) or half a ClientHello (tls://) one byte at a time
 *                  and stall; the legitimate client's p99 round trip stays
 *                  under P99_BOUND_MS and every stalled peer is closed by the
 *                  Svc's timeouts (MW_ETIMEDOUT).
 *   slow consumer  one client never reads; sends to it meet MW_EAGAIN, it is
 *                  closed with MW_ESLOW, the others keep their latency and the
 *                  process RSS stays bounded.
 *   killed peers   forked children send half a frame and are SIGKILLed; the
 *                  Svc closes them with MW_ETRUNC/MW_ECLOSED and keeps serving.
 *   many conns     200 (soak 1,000) clients exchange sequence-numbered pings,
 *                  checked on both sides: 0 lost, duplicated or reordered.
 *   cycles         2,000 (soak 20,000) connect/disconnect cycles: fds, the
 *                  Svc's counters and RSS back to baseline.
 *   TLS faults     expired certificate, wrong host name, unknown CA, a
 *                  plaintext client to tls://, a TLS client to tcp://: each
 *                  with the error text that names the cause, on both sides.
 *
 * MW_SOAK=1 in the environment selects the long variants (`make soak`):
 * bigger counts, and each test repeats its body for its share of
 * SOAK_SECONDS (default 300). Without it every test takes about a second. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mw_clock.h"
#include "mw_clt.h"
#include "mw_svc.h"
#include "mw_test.h"
#include "test_proto.h"
#include "svc_harness.h"

#ifdef MW_SANITIZED
/* Freed memory waits in ASan's quarantine (256 MiB by default), which would
 * hide the memory bound of the slow-consumer and cycle tests behind
 * quarantine growth: keep it small in this binary. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "quarantine_size_mb=8:thread_local_quarantine_size_kb=64"; }
#endif

#define P99_BOUND_MS 50
#define WAIT_MS 20000
#define MAX_REASON 64
#define N_PHASES 5 /* the long variants share SOAK_SECONDS between five groups: slowloris (its four schemes), slow
                    * consumer, killed peers (both schemes), many connections, cycles */

static bool soak;
static int64_t soak_share_ns; /* each test's share of SOAK_SECONDS */

typedef struct lat {
    uint64_t *v;
    size_t n, cap;
} lat_t;

/* ---- the Svc under test: an echo Svc in event mode -------------------------- */

typedef struct fx {
    mw_svc_t *svc;
    int port;
    char url[96];
    pthread_mutex_t mu;
    atomic_int closes;
    atomic_int by_reason[MAX_REASON]; /* closes by -reason */
    char text[MAX_REASON][MW_ERR_TEXT_MAX]; /* the last close text per reason */
    /* accepted ids in order */
    atomic_int naccepted;
    _Atomic mw_conn_id_t last_id;
    /* sequence check of (d): per slot the next ping seq expected */
    bool check_seq;
    uint64_t *next_seq;
    uint32_t nslots;
    atomic_int seq_errors;
    atomic_int echo_fail;
    /* what a test opened, closed by the teardown even after a failed assertion */
    int raw[256];
    int nraw;
    mw_clt_t *clts[4];
    int nclts;
    mw_clt_t **many;
    int nmany;
    uint64_t *sent, *got;
    lat_t lat;
} fx_t;

static void on_accept(mw_svc_t *s, mw_conn_id_t id, void *ud) {
    (void)s;
    fx_t *f = ud;
    atomic_store(&f->last_id, id);
    atomic_fetch_add(&f->naccepted, 1);
    if (f->check_seq) {
        uint32_t slot = (uint32_t)id;
        if (slot < f->nslots) f->next_seq[slot] = 1;
        else atomic_fetch_add(&f->seq_errors, 1);
    }
}

static void on_msg(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg, void *ud) {
    fx_t *f = ud;
    if (f->check_seq && sch == ping_schema()) {
        uint32_t slot = (uint32_t)id;
        const ping_t *p = msg;
        if (slot >= f->nslots || p->seq != f->next_seq[slot]) atomic_fetch_add(&f->seq_errors, 1);
        else f->next_seq[slot]++;
    }
    if (mw_svc_send_to(s, id, sch, msg) != 0) atomic_fetch_add(&f->echo_fail, 1);
}

static void on_close(mw_svc_t *s, mw_conn_id_t id, int reason, void *ud) {
    fx_t *f = ud;
    int r = -reason;
    if (r < 0 || r >= MAX_REASON) r = 0;
    pthread_mutex_lock(&f->mu);
    snprintf(f->text[r], sizeof f->text[r], "%s", mw_svc_conn_error(s, id));
    pthread_mutex_unlock(&f->mu);
    atomic_fetch_add(&f->by_reason[r], 1);
    atomic_fetch_add(&f->closes, 1);
}

static void fx_opts(fx_t *f, mw_svc_opts_t *o) {
    mw_svc_opts_init(o);
    o->mode = MW_MODE_EVENT;
    o->event.workers = 1;
    o->on_accept = on_accept;
    o->event.on_msg = on_msg;
    o->on_close = on_close;
    o->ud = f;
}

static void fx_listen(fx_t *f, const char *scheme, mw_svc_opts_t *o) {
    const char *path = strncmp(scheme, "ws", 2) == 0 ? "/" : "";
    if (strcmp(scheme, "tls") == 0 || strcmp(scheme, "wss") == 0) {
        if (!o->tr.tls.cert_file) o->tr.tls.cert_file = mw_test_cert("srv.pem");
        if (!o->tr.tls.key_file) o->tr.tls.key_file = mw_test_cert("srv.key");
    }
    char url[96];
    snprintf(url, sizeof url, "%s://127.0.0.1:0%s", scheme, path);
    mw_err_t err = {0};
    int r = mw_svc_listen(&f->svc, url, &test_protocol, o, &err);
    if (r != 0) fail_msg("listen %s: %s: %s", url, mw_errname(r), mw_err_text(&err));
    f->port = mw_svc_port(f->svc);
    snprintf(f->url, sizeof f->url, "%s://127.0.0.1:%d%s", scheme, f->port, path);
}

static int setup(void **state) {
    fx_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    pthread_mutex_init(&f->mu, NULL);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx_t *f = *state;
    for (int i = 0; i < f->nraw; i++)
        if (f->raw[i] >= 0) close(f->raw[i]);
    for (int i = 0; i < f->nclts; i++) mw_clt_free(f->clts[i]);
    for (int i = 0; i < f->nmany; i++) mw_clt_free(f->many[i]);
    free(f->many);
    free(f->sent);
    free(f->got);
    free(f->lat.v);
    mw_svc_free(f->svc);
    free(f->next_seq);
    pthread_mutex_destroy(&f->mu);
    free(f);
    return 0;
}

static int reason_count(fx_t *f, int reason) { return atomic_load(&f->by_reason[-reason]); }

static void print_closes(fx_t *f, const char *what) {
    for (int r = 0; r < MAX_REASON; r++) {
        int n = atomic_load(&f->by_reason[r]);
        if (n) printf("  %s: %d closed %s: \"%s\"\n", what, n, mw_errname(-r), f->text[r]);
    }
}

/* ---- process measurements ----------------------------------------------------- */

static long rss_kib(void) {
    FILE *fp = fopen("/proc/self/status", "r");
    if (!fp) return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, fp))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    fclose(fp);
    return kib;
}

static int fd_count(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the directory's own fd */
}

/* ---- clients ---------------------------------------------------------------- */

static mw_clt_t *clt_connect(fx_t *f, const char *url) {
    if (!url) url = f->url;
    mw_clt_opts_t o;
    mw_clt_opts_init(&o);
    if (strncmp(url, "tls", 3) == 0 || strncmp(url, "wss", 3) == 0) o.tr.tls.ca_file = mw_test_cert("ca.pem");
    mw_clt_t *c = NULL;
    mw_err_t err = {0};
    int r = mw_clt_connect(&c, url, &test_protocol, &o, &err);
    if (r != 0) fail_msg("connect %s: %s: %s", url, mw_errname(r), mw_err_text(&err));
    assert_true(f->nclts < 4);
    f->clts[f->nclts++] = c;
    return c;
}

/* One ping round trip; returns its duration. */
static uint64_t round_trip(mw_clt_t *c, uint64_t seq) {
    uint64_t t0 = mw_now_ns();
    ping_t p = {.seq = seq, .sent_ns = t0};
    int r = mw_clt_send(c, ping_schema(), &p);
    if (r != 0) fail_msg("legit send: %s: %s", mw_errname(r), mw_clt_last_error(c));
    const mw_schema_t *sch;
    test_msg_t m;
    r = mw_clt_recv_busywait_timeout(c, &sch, &m, sizeof m, 5 * MW_NS_PER_S);
    if (r != 0) fail_msg("legit recv: %s: %s", mw_errname(r), mw_clt_last_error(c));
    assert_ptr_equal(sch, ping_schema());
    assert_int_equal(m.ping.seq, seq);
    return mw_now_ns() - t0;
}

static void lat_add(lat_t *l, uint64_t ns) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 1024;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        assert_non_null(l->v);
    }
    l->v[l->n++] = ns;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Prints the percentiles and asserts the p99 bound. */
static void lat_check(lat_t *l, const char *what) {
    assert_true(l->n >= 100);
    qsort(l->v, l->n, sizeof *l->v, cmp_u64);
    uint64_t p50 = l->v[l->n / 2], p99 = l->v[l->n * 99 / 100], max = l->v[l->n - 1];
    printf("  %s: %zu round trips, p50 %.3f ms, p99 %.3f ms, max %.3f ms\n", what, l->n, p50 / 1e6, p99 / 1e6,
           max / 1e6);
    assert_true(p99 < (uint64_t)P99_BOUND_MS * MW_NS_PER_MS);
    free(l->v);
    *l = (lat_t){0};
}

/* A raw client socket, optionally with a small receive buffer (set before
 * connect so the window is small from the start). */
static int raw_connect(int port, int rcvbuf) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) fail_msg("raw connect: %s", strerror(errno));
    return fd;
}

static int raw_open(fx_t *f, int rcvbuf) {
    assert_true(f->nraw < 256);
    int fd = raw_connect(f->port, rcvbuf);
    f->raw[f->nraw++] = fd;
    return fd;
}

static void raw_close(fx_t *f, int fd) {
    for (int i = 0; i < f->nraw; i++)
        if (f->raw[i] == fd) f->raw[i] = f->raw[--f->nraw];
    close(fd);
}

/* True once the peer has closed fd (EOF or reset), reading and dropping what
 * it sent first; waits up to ms. */
static bool sees_closed(int fd, int ms) {
    uint64_t dl = mw_now_ns() + (uint64_t)ms * MW_NS_PER_MS;
    char buf[4096];
    while (mw_now_ns() < dl) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue;
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return true;
    }
    return false;
}

static bool conns_are(fx_t *f, uint32_t n) { return mw_svc_conn_count(f->svc) == n; }
typedef struct conns_cond { fx_t *f; uint32_t n; } conns_cond_t;
static bool conns_cond(void *ud) {
    conns_cond_t *c = ud;
    return conns_are(c->f, c->n);
}
typedef struct int_cond { atomic_int *v; int n; } int_cond_t;
static bool int_at_least(void *ud) {
    int_cond_t *c = ud;
    return atomic_load(c->v) >= c->n;
}

/* ---- (a) slowloris ------------------------------------------------------------ */

/* What a stalled peer of each scheme sends (it stops half-way through). */
static size_t stall_bytes(const char *scheme, uint8_t *out, size_t cap) {
    if (strcmp(scheme, "ws") == 0) {
        static const char req[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                  "Sec-WebSocket-Version: 13\r\n\r\n";
        memcpy(out, req, sizeof req - 1);
        return sizeof req - 1;
    }
    if (strcmp(scheme, "tls") == 0 || strcmp(scheme, "wss") == 0) {
        /* a TLS 1.2+ ClientHello record of 200 bytes: header, then the
         * handshake header, version and random; the peer stops inside it */
        size_t n = 5 + 200;
        assert_true(cap >= n);
        memset(out, 0, n);
        const uint8_t head[] = {0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03};
        memcpy(out, head, sizeof head);
        for (size_t i = sizeof head; i < n; i++) out[i] = (uint8_t)(i * 37);
        return n;
    }
    return svh_tcp_frame_ping(7, out, cap);
}

static void slowloris(void **state, const char *scheme) {
    fx_t *f = *state;
    const int n_stalled = soak ? 200 : 50;
    mw_svc_opts_t o;
    fx_opts(f, &o);
    o.rx_timeout_ns = 300 * MW_NS_PER_MS;
    o.handshake_timeout_ns = 300 * MW_NS_PER_MS;
    o.first_msg_timeout_ns = 600 * MW_NS_PER_MS;
    fx_listen(f, scheme, &o);
    mw_clt_t *c = clt_connect(f, NULL);
    uint64_t seq = 0;
    for (int i = 0; i < 20; i++) round_trip(c, ++seq); /* warm */
    uint64_t start = mw_now_ns();
    int waves = 0, total_stalled = 0;
    do {
        int fds[200];
        uint8_t bytes[256];
        size_t len = stall_bytes(scheme, bytes, sizeof bytes), half = len / 2;
        int base_closes = atomic_load(&f->closes);
        bool cut[200] = {false};
        for (int i = 0; i < n_stalled; i++) fds[i] = raw_open(f, 0);
        /* every stalled peer sends one more byte per legitimate round trip
         * until it is half-way, then nothing; a trickle slower than the
         * timeouts is cut off by them (the write then fails) */
        for (size_t k = 0; k < half + 50; k++) {
            if (k < half)
                for (int i = 0; i < n_stalled; i++)
                    if (!cut[i] && send(fds[i], bytes + k, 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1) cut[i] = true;
            lat_add(&f->lat, round_trip(c, ++seq));
        }
        /* the timeouts close every stalled peer; the client goes on meanwhile */
        uint64_t dl = mw_now_ns() + 10 * MW_NS_PER_S;
        while (atomic_load(&f->closes) < base_closes + n_stalled && mw_now_ns() < dl)
            lat_add(&f->lat, round_trip(c, ++seq));
        assert_int_equal(atomic_load(&f->closes), base_closes + n_stalled);
        for (int i = 0; i < n_stalled; i++) {
            assert_true(sees_closed(fds[i], 5000));
            raw_close(f, fds[i]);
        }
        assert_int_equal(mw_svc_conn_count(f->svc), 1);
        total_stalled += n_stalled;
        waves++;
    } while (soak && mw_now_ns() - start < (uint64_t)soak_share_ns / 4);
    printf("  %s: %d stalled peers in %d waves\n", scheme, total_stalled, waves);
    print_closes(f, scheme);
    assert_int_equal(reason_count(f, MW_ETIMEDOUT), total_stalled);
    assert_int_equal(atomic_load(&f->closes), total_stalled);
    lat_check(&f->lat, scheme);
}

static void test_faults_slowloris_tcp(void **state) { slowloris(state, "tcp"); }
static void test_faults_slowloris_ws(void **state) { slowloris(state, "ws"); }
static void test_faults_slowloris_tls(void **state) { slowloris(state, "tls"); }
static void test_faults_slowloris_wss(void **state) { slowloris(state, "wss"); }

/* ---- (b) a slow consumer -------------------------------------------------------- */

static void test_faults_slow_consumer_is_closed_and_memory_bounded(void **state) {
    fx_t *f = *state;
    mw_svc_opts_t o;
    fx_opts(f, &o);
    o.conn.max_msg = 1024;
    o.conn.tx_buf = 64 * 1024;
    o.slow_consumer_ns = soak ? 2 * MW_NS_PER_S : 500 * MW_NS_PER_MS;
    fx_listen(f, "tcp", &o);
    mw_clt_t *legit[2] = {clt_connect(f, NULL), clt_connect(f, NULL)};
    uint64_t seq = 0;
    for (int i = 0; i < 50; i++) round_trip(legit[i % 2], ++seq);
    uint64_t start = mw_now_ns();
    int rounds = 0;
    long rss_base = rss_kib(), rss_max = rss_base;
    do {
        int base_slow = reason_count(f, MW_ESLOW);
        int before = atomic_load(&f->naccepted);
        int fd = raw_open(f, 4096); /* connects, never reads */
        int_cond_t ac = {&f->naccepted, before + 1};
        assert_true(mw_wait_until(int_at_least, &ac, WAIT_MS));
        mw_conn_id_t id = atomic_load(&f->last_id);
        uint64_t ok = 0, eagain = 0, first_eagain_at = 0, held_max = 0;
        int r = 0;
        /* the kernel's send buffer grows (loopback autotuning) while the
         * peer reads nothing: the Svc's queue stays full only once it has */
        uint64_t dl = mw_now_ns() + 30 * MW_NS_PER_S;
        while (mw_now_ns() < dl) {
            for (int i = 0; i < 64; i++) {
                ping_t p = {.seq = ok, .sent_ns = 1};
                r = mw_svc_send_to(f->svc, id, ping_schema(), &p);
                if (r == 0) ok++;
                else if (r == MW_EAGAIN) {
                    if (!eagain++) first_eagain_at = ok;
                } else break;
            }
            if (r != 0 && r != MW_EAGAIN) break;
            mw_conn_stats_t st;
            if (mw_svc_conn_stats(f->svc, id, &st) == 0 && st.buffer_bytes > held_max) held_max = st.buffer_bytes;
            seq++;
            lat_add(&f->lat, round_trip(legit[seq % 2], seq));
            long rss = rss_kib();
            if (rss > rss_max) rss_max = rss;
        }
        assert_int_equal(r, MW_ECLOSED);
        int_cond_t sc = {&f->by_reason[-MW_ESLOW], base_slow + 1};
        assert_true(mw_wait_until(int_at_least, &sc, WAIT_MS));
        if (!rounds)
            printf("  slow consumer: %llu sends accepted (%llu before the first MW_EAGAIN), %llu MW_EAGAIN; "
                   "at most %llu buffer bytes held; closed: \"%s\"\n",
                   (unsigned long long)ok, (unsigned long long)first_eagain_at, (unsigned long long)eagain,
                   (unsigned long long)held_max, f->text[-MW_ESLOW]);
        assert_true(eagain > 0);
        /* the Svc's own queue stays bounded by conn.tx_buf: what it holds
         * for this connection (tx + rx + decode scratch) never passes
         * tx_buf plus the rx side's one block. (How many sends succeed after
         * the first MW_EAGAIN is no bound: the kernel's send buffer keeps
         * growing on loopback, so the queue drains into it.) */
        assert_true(held_max > 0);
        assert_true(held_max <= (uint64_t)o.conn.tx_buf + 2u * o.conn.max_msg + 64u * 1024);
        /* what was accepted is bounded by the Svc's queue plus the kernel's
         * socket buffers (a ping is 21 bytes on the wire) */
        assert_true(ok * 21 < (uint64_t)o.conn.tx_buf + 16u * 1024 * 1024);
        assert_true(sees_closed(fd, 5000));
        raw_close(f, fd);
        rounds++;
        /* two rounds at least: the second connection reuses the first one's
         * slot, whose cross-thread arm must not stay marked as queued */
    } while (rounds < 2 || (soak && mw_now_ns() - start < (uint64_t)soak_share_ns));
    print_closes(f, "slow consumer");
    printf("  slow consumer: %d rounds, RSS %ld KiB at start, at most %ld KiB\n", rounds, rss_base, rss_max);
    assert_int_equal(reason_count(f, MW_ESLOW), rounds);
    assert_true(rss_max - rss_base < 32 * 1024);
    lat_check(&f->lat, "others meanwhile");
    for (int i = 0; i < 10; i++) round_trip(legit[i % 2], ++seq);
}

/* ---- (c) peers killed mid-frame ------------------------------------------------- */

static const char ws_upgrade[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                 "Sec-WebSocket-Version: 13\r\n\r\n";

/* The child: only system calls between fork and _exit (the parent has
 * threads). Over ws:// it completes the upgrade first (reads the whole 101
 * response), so the half frame is a WebSocket frame. */
static void child_half_frame(int port, bool ws, const uint8_t *bytes, size_t half, int ready_w, int hold_r) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) _exit(2);
    if (ws) {
        if (write(fd, ws_upgrade, sizeof ws_upgrade - 1) != (ssize_t)sizeof ws_upgrade - 1) _exit(5);
        char resp[1024];
        size_t got = 0;
        for (;;) { /* bounded by the buffer: the 101 response is short */
            if (got == sizeof resp) _exit(6);
            ssize_t n = read(fd, resp + got, sizeof resp - got);
            if (n <= 0) _exit(7);
            got += (size_t)n;
            if (got >= 4 && memcmp(resp + got - 4, "\r\n\r\n", 4) == 0) break;
        }
        if (got < 12 || memcmp(resp, "HTTP/1.1 101", 12) != 0) _exit(8);
    }
    if (write(fd, bytes, half) != (ssize_t)half) _exit(3);
    if (write(ready_w, "r", 1) != 1) _exit(4);
    char b;
    while (read(hold_r, &b, 1) < 0 && errno == EINTR) {
    }
    _exit(0); /* only if the parent went away without killing us */
}

static void killed_mid_frame(void **state, const char *scheme) {
    fx_t *f = *state;
    bool ws = strcmp(scheme, "ws") == 0;
    mw_svc_opts_t o;
    fx_opts(f, &o);
    fx_listen(f, scheme, &o);
    mw_clt_t *c = clt_connect(f, NULL);
    uint64_t seq = 0;
    round_trip(c, ++seq);
    uint8_t frame[64];
    size_t len = ws ? svh_ws_frame_ping(9, frame, sizeof frame) : svh_tcp_frame_ping(9, frame, sizeof frame);
    uint64_t start = mw_now_ns();
    int kills = 0;
    do {
        int ready[2], hold[2];
        assert_int_equal(pipe(ready), 0);
        assert_int_equal(pipe(hold), 0);
        int base = atomic_load(&f->closes);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(ready[0]);
            close(hold[1]);
            child_half_frame(f->port, ws, frame, len / 2 + (size_t)(kills % 3), ready[1], hold[0]);
        }
        close(ready[1]);
        close(hold[0]);
        struct pollfd p = {.fd = ready[0], .events = POLLIN};
        int pr = poll(&p, 1, 5000);
        char b = 0;
        bool is_ready = pr == 1 && read(ready[0], &b, 1) == 1;
        kill(pid, SIGKILL);
        int st = 0;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        close(ready[0]);
        close(hold[1]);
        assert_true(is_ready);
        assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        int_cond_t cc = {&f->closes, base + 1};
        assert_true(mw_wait_until(int_at_least, &cc, WAIT_MS));
        round_trip(c, ++seq); /* and the Svc keeps serving */
        kills++;
    } while (kills < 5 || (soak && mw_now_ns() - start < (uint64_t)soak_share_ns / 2));
    print_closes(f, scheme);
    printf("  %s: %d peers killed mid-frame\n", scheme, kills);
    assert_int_equal(reason_count(f, MW_ETRUNC) + reason_count(f, MW_ECLOSED), kills);
    assert_int_equal(atomic_load(&f->closes), kills);
    assert_int_equal(mw_svc_conn_count(f->svc), 1);
}

static void test_faults_tcp_peers_killed_mid_frame(void **state) { killed_mid_frame(state, "tcp"); }
static void test_faults_ws_peers_killed_mid_frame(void **state) { killed_mid_frame(state, "ws"); }

/* ---- (d) many concurrent connections, sequence-checked ---------------------------- */

static void test_faults_many_connections_lose_nothing(void **state) {
    fx_t *f = *state;
    const int n = soak ? 1000 : 200;
    const int window = 8;
    mw_svc_opts_t o;
    fx_opts(f, &o);
    o.max_connections = 2048;
    o.conn.max_msg = 1024;
    o.conn.rx_buf = o.conn.tx_buf = 16 * 1024;
    f->check_seq = true;
    f->nslots = o.max_connections;
    f->next_seq = calloc(f->nslots, sizeof *f->next_seq);
    assert_non_null(f->next_seq);
    fx_listen(f, "tcp", &o);
    mw_clt_t **c = f->many = calloc((size_t)n, sizeof *c);
    uint64_t *sent = f->sent = calloc((size_t)n, sizeof *sent), *got = f->got = calloc((size_t)n, sizeof *got);
    assert_true(c && sent && got);
    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    co.conn.max_msg = 1024;
    co.conn.rx_buf = co.conn.tx_buf = 16 * 1024;
    for (int i = 0; i < n; i++) {
        mw_err_t err = {0};
        int r = mw_clt_connect(&c[i], f->url, &test_protocol, &co, &err);
        if (r != 0) fail_msg("client %d: %s", i, mw_err_text(&err));
        f->nmany = i + 1;
    }
    conns_cond_t all = {f, (uint32_t)n};
    assert_true(mw_wait_until(conns_cond, &all, WAIT_MS));
    uint64_t start = mw_now_ns();
    int rounds = 0;
    do {
        for (int i = 0; i < n; i++)
            for (int w = 0; w < window; w++) {
                ping_t p = {.seq = ++sent[i], .sent_ns = (uint64_t)i};
                int r = mw_clt_send(c[i], ping_schema(), &p);
                if (r != 0) fail_msg("client %d send: %s", i, mw_clt_last_error(c[i]));
            }
        for (int i = 0; i < n; i++)
            while (got[i] < sent[i]) {
                const mw_schema_t *sch;
                test_msg_t m;
                int r = mw_clt_recv_busywait_timeout(c[i], &sch, &m, sizeof m, 5 * MW_NS_PER_S);
                if (r != 0) fail_msg("client %d recv: %s: %s", i, mw_errname(r), mw_clt_last_error(c[i]));
                assert_ptr_equal(sch, ping_schema());
                if (m.ping.seq != got[i] + 1 || m.ping.sent_ns != (uint64_t)i)
                    fail_msg("client %d: echo %llu of client %llu, expected %llu", i,
                             (unsigned long long)m.ping.seq, (unsigned long long)m.ping.sent_ns,
                             (unsigned long long)got[i] + 1);
                got[i]++;
            }
        rounds++;
    } while (rounds < 10 || (soak && mw_now_ns() - start < (uint64_t)soak_share_ns));
    mw_svc_stats_t st;
    mw_svc_stats(f->svc, &st);
    uint64_t total = 0;
    for (int i = 0; i < n; i++) total += sent[i];
    printf("  %d connections, %llu messages each way in %.2f s, in order\n", n, (unsigned long long)total,
           (mw_now_ns() - start) / 1e9);
    assert_int_equal(atomic_load(&f->seq_errors), 0);
    assert_int_equal(atomic_load(&f->echo_fail), 0);
    assert_int_equal(st.msgs_in, total);
    assert_int_equal(st.msgs_out, total);
    assert_int_equal(atomic_load(&f->closes), 0);
    for (int i = 0; i < n; i++) mw_clt_free(c[i]);
    f->nmany = 0;
    conns_cond_t none = {f, 0};
    assert_true(mw_wait_until(conns_cond, &none, WAIT_MS));
    assert_int_equal(reason_count(f, MW_ECLOSED), n);
}

/* ---- (e) connect/disconnect cycles ------------------------------------------------ */

/* Every client so far accepted (a raw one that left at once may still wait
 * in the backlog) and closed, and the fds back to the baseline. */
typedef struct settle { fx_t *f; int fds; uint64_t want; } settle_t;
static bool settled(void *ud) {
    settle_t *s = ud;
    mw_svc_stats_t st;
    mw_svc_stats(s->f->svc, &st);
    return st.accepted >= s->want && st.connections == 0 && st.accepted == st.closed && fd_count() == s->fds;
}

static void test_faults_connect_disconnect_cycles_return_to_baseline(void **state) {
    fx_t *f = *state;
    const int cycles = soak ? 20000 : 2000;
    mw_svc_opts_t o;
    fx_opts(f, &o);
    fx_listen(f, "tcp", &o);
    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    settle_t base = {f, fd_count(), 0};
    long rss_warm = 0;
    uint64_t t0 = mw_now_ns();
    int done = 0;
    do {
        for (int i = 0; i < cycles; i++, done++) {
            if (i % 4 == 3) { /* a raw peer that connects and leaves without a word */
                int fd = raw_connect(f->port, 0);
                close(fd);
                continue;
            }
            mw_clt_t *c = NULL;
            mw_err_t err = {0};
            int r = mw_clt_connect(&c, f->url, &test_protocol, &co, &err);
            if (r != 0) fail_msg("cycle %d: %s", done, mw_err_text(&err));
            if (i % 2 == 0) round_trip(c, (uint64_t)i + 1);
            mw_clt_free(c);
            if (done == cycles / 10) {
                base.want = (uint64_t)done + 1;
                assert_true(mw_wait_until(settled, &base, WAIT_MS));
                rss_warm = rss_kib();
            }
        }
    } while (soak && mw_now_ns() - t0 < (uint64_t)soak_share_ns);
    base.want = (uint64_t)done;
    bool ok = mw_wait_until(settled, &base, WAIT_MS);
    mw_svc_stats_t st;
    mw_svc_stats(f->svc, &st);
    long rss_end = rss_kib();
    printf("  %d cycles in %.2f s: accepted %llu, closed %llu, open %u, fds %d (baseline %d), RSS %ld KiB after "
           "warm-up, %ld KiB at the end\n",
           done, (mw_now_ns() - t0) / 1e9, (unsigned long long)st.accepted, (unsigned long long)st.closed,
           st.connections, fd_count(), base.fds, rss_warm, rss_end);
    print_closes(f, "cycles");
    assert_true(ok);
    assert_int_equal(st.accepted, (uint64_t)done);
    assert_int_equal(st.accepted, st.closed + st.connections);
    assert_int_equal(st.closed_bad_input, 0);
    assert_true(rss_end - rss_warm < 16 * 1024);
}

/* ---- (f) TLS faults, with their texts ---------------------------------------------- */

/* A Svc over scheme with cert; a Clt to url_scheme://127.0.0.1:port with the
 * given CA and server name must fail to connect or at its first exchange; its
 * text must hold clt_has and the Svc's close text svc_has (NULL: any). */
static void tls_fault(fx_t *f, const char *svc_scheme, const char *cert, const char *clt_scheme, const char *ca,
                      const char *server_name, const char *clt_has, const char *svc_has) {
    mw_svc_opts_t o;
    fx_opts(f, &o);
    if (cert) o.tr.tls.cert_file = mw_test_cert(cert);
    fx_listen(f, svc_scheme, &o);
    char url[96];
    snprintf(url, sizeof url, "%s://127.0.0.1:%d", clt_scheme, f->port);
    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    co.connect_timeout_ns = 5 * MW_NS_PER_S;
    co.tr.tls.ca_file = ca ? mw_test_cert(ca) : NULL;
    co.tr.tls.server_name = server_name;
    mw_clt_t *c = NULL;
    mw_err_t err = {0};
    int r = mw_clt_connect(&c, url, &test_protocol, &co, &err);
    char text[MW_ERR_TEXT_MAX];
    snprintf(text, sizeof text, "%s", mw_err_text(&err));
    if (r == 0) { /* a plaintext client connects: its first exchange fails */
        ping_t p = {.seq = 1};
        r = mw_clt_send(c, ping_schema(), &p);
        if (r == 0) {
            const mw_schema_t *sch;
            test_msg_t m;
            r = mw_clt_recv_busywait_timeout(c, &sch, &m, sizeof m, 5 * MW_NS_PER_S);
        }
        snprintf(text, sizeof text, "%s", mw_clt_last_error(c));
    }
    int_cond_t cc = {&f->closes, 1};
    bool svc_closed = mw_wait_until(int_at_least, &cc, WAIT_MS);
    printf("  %s Svc, %s client: client %s \"%s\"\n", svc_scheme, clt_scheme, mw_errname(r), text);
    print_closes(f, "  svc");
    mw_clt_free(c);
    assert_true(r != 0);
    assert_non_null(strstr(text, clt_has));
    assert_true(svc_closed);
    if (svc_has) {
        bool found = false;
        for (int i = 0; i < MAX_REASON; i++)
            if (atomic_load(&f->by_reason[i]) && strstr(f->text[i], svc_has)) found = true;
        if (!found) fail_msg("no Svc close text holds \"%s\"", svc_has);
    }
}

static void test_faults_tls_expired_certificate(void **state) {
    tls_fault(*state, "tls", "expired.pem", "tls", "ca.pem", NULL, "certificate verify failed: certificate has expired",
              "alert certificate expired");
}

static void test_faults_tls_wrong_host_name(void **state) {
    tls_fault(*state, "tls", NULL, "tls", "ca.pem", "wrong.example", "certificate verify failed: hostname mismatch",
              "alert bad certificate");
}

static void test_faults_tls_unknown_ca(void **state) {
    tls_fault(*state, "tls", NULL, "tls", "other.pem", NULL,
              "certificate verify failed: unable to get local issuer certificate", "alert unknown ca");
}

static void test_faults_tls_plaintext_client_to_tls_svc(void **state) {
    tls_fault(*state, "tls", NULL, "tcp", NULL, NULL, "closed by peer",
              "wrong version number (is the peer speaking TLS?)");
}

static void test_faults_tls_client_to_plaintext_svc(void **state) {
    tls_fault(*state, "tcp", NULL, "tls", "ca.pem", NULL, "peer closed the connection during the handshake",
              "the peer seems to start TLS: is its URL tls:// or wss://?");
}

/* The certificates are the shared set (tests/util/certs.c): the CA, srv,
 * other (an unknown CA) and expired (srv's key and names, dates in 2020). */
static int group_setup(void **state) {
    (void)state;
    (void)mw_test_cert("ca.pem"); /* made once, before the first test */
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

int main(void) {
    const char *s = getenv("MW_SOAK");
    soak = s && *s && strcmp(s, "0") != 0;
    const char *secs = getenv("SOAK_SECONDS");
    long total = secs && atol(secs) > 0 ? atol(secs) : 300;
    soak_share_ns = total * (int64_t)MW_NS_PER_S / N_PHASES;
    if (soak) printf("soak: %ld s in all, %ld s per group of tests\n", total, total / N_PHASES);
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_faults_slowloris_tcp),
        T(test_faults_slowloris_ws),
        T(test_faults_slowloris_tls),
        T(test_faults_slowloris_wss),
        T(test_faults_slow_consumer_is_closed_and_memory_bounded),
        T(test_faults_tcp_peers_killed_mid_frame),
        T(test_faults_ws_peers_killed_mid_frame),
        T(test_faults_many_connections_lose_nothing),
        T(test_faults_connect_disconnect_cycles_return_to_baseline),
        T(test_faults_tls_expired_certificate),
        T(test_faults_tls_wrong_host_name),
        T(test_faults_tls_unknown_ca),
        T(test_faults_tls_plaintext_client_to_tls_svc),
        T(test_faults_tls_client_to_plaintext_svc),
    };
    return mw_run_group_requiring(mw_have_openssl_cli(), "the openssl command", tests, group_setup, NULL);
}
