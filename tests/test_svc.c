/* test_svc.c - the Svc's connection pool, limits and bad input, over TCP
 * loopback, in spin and blocking mode (the test thread drives it) and in
 * event mode (worker threads call back, or the test polls the Svc's io).
 *
 * The Svc under test echoes every message to its sender and records what its
 * callbacks saw (accepts, messages, closes with their reason and text, the
 * thread of each). Good peers are spin-mode Clts; bad peers are raw sockets
 * that write exactly the bytes a test wants. Waits poll with a deadline.
 */
#include "mw_test.h"
#include "svc_harness.h"
#include "test_proto.h"

#include "mw_clock.h"
#include "mw_clt.h"
#include "mw_svc.h"
#include "clock_impl.h"
#include "clt_impl.h"
#include "io_impl.h"
#include "stream_impl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define WAIT_MS 5000
#define RAW_SEQ 4242 /* the good message a bad peer sends before its bad bytes */
#define NO_SEQ UINT64_MAX

/* ---- the Svc under test -----------------------------------------------------
 * The fixture of tests/util/svc_harness.h records accepts, messages and
 * closes (with their order and thread) and tracks the peers; what the tests
 * below make the Svc do besides is kept here, at f->ud. */

typedef struct svc_x {
    bool echo;
    uint64_t close_on_seq; /* on_msg closes the connection on this ping seq */
    bool close_on_accept;
    int accept_close_rc;
    int close_rc;
    bool in_msg;
    bool closed_inside_msg; /* on_close ran while on_msg was still running */
} svc_x_t;

static svc_x_t *X(svh_t *e) { return e->ud; }

static void handle_msg(svh_t *e, mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg) {
    svc_x_t *x = X(e);
    uint64_t seq = sch->tag == ping_TAG ? ((const ping_t *)msg)->seq : NO_SEQ;
    pthread_mutex_lock(&e->mu);
    x->in_msg = true;
    pthread_mutex_unlock(&e->mu);
    if (x->echo) mw_svc_send_to(s, id, sch, msg); /* may be closing: checked by the peers */
    if (seq != NO_SEQ && seq == x->close_on_seq) x->close_rc = mw_svc_close_conn(s, id);
    pthread_mutex_lock(&e->mu);
    x->in_msg = false;
    pthread_mutex_unlock(&e->mu);
}

static void on_accept(svh_t *e, mw_svc_t *s, mw_conn_id_t id) {
    if (X(e)->close_on_accept) X(e)->accept_close_rc = mw_svc_close_conn(s, id);
}

static void on_close(svh_t *e, mw_svc_t *s, mw_conn_id_t id, int reason) {
    (void)s, (void)id, (void)reason;
    pthread_mutex_lock(&e->mu);
    if (X(e)->in_msg) X(e)->closed_inside_msg = true;
    pthread_mutex_unlock(&e->mu);
}

typedef struct env_cfg {
    const char *serdes;
    uint32_t max_connections;
    uint32_t workers;
    uint32_t max_msg, rx_buf, tx_buf;
    int sndbuf;         /* accepted sockets' SO_SNDBUF */
    bool on_callers_io; /* event mode, workers = 0: attach to an io the test polls */
} env_cfg_t;

static void env_start(svh_t *e, const env_cfg_t *cfg) {
    mw_svc_opts_t o;
    svh_svc_opts(e, &o);
    if (cfg && cfg->serdes) o.conn.serdes = cfg->serdes;
    if (cfg && cfg->max_connections) o.max_connections = cfg->max_connections;
    if (cfg && cfg->workers) o.event.workers = cfg->workers;
    if (cfg && cfg->max_msg) o.conn.max_msg = cfg->max_msg;
    if (cfg && cfg->rx_buf) o.conn.rx_buf = cfg->rx_buf;
    if (cfg && cfg->tx_buf) o.conn.tx_buf = cfg->tx_buf;
    if (cfg && cfg->sndbuf) o.tcp.sndbuf = cfg->sndbuf;
    if (cfg && cfg->on_callers_io) {
        mw_err_t ioerr = {0};
        if (mw_io_new(&e->io, NULL, &ioerr) != 0) fail_msg("io: %s", mw_err_text(&ioerr));
        o.event.workers = 0;
        o.event.io = e->io;
    }
    o.sync.timeout_ns = MW_NS_PER_MS; /* blocking pump: short waits */
    e->on_accept = on_accept;
    e->on_msg = handle_msg;
    e->on_close = on_close;
    X(e)->echo = true;
    svh_listen(e, "tcp", &o);
}

/* Spin/blocking: one receive (which also accepts and reads); event: nothing,
 * the workers run on their own. */
static void env_pump(svh_t *e) {
    if (e->io) {
        if (mw_io_poll(e->io, 0) < 0) fail_msg("io poll failed");
        return;
    }
    if (e->mode != MW_MODE_EVENT) svh_pump(e);
}

typedef struct pumped {
    svh_t *e;
    bool (*cond)(void *ud);
    void *ud;
} pumped_t;

static bool pump_then(void *ud) {
    pumped_t *p = ud;
    env_pump(p->e);
    return p->cond(p->ud);
}

/* Waits for cond, driving the Svc if the test thread has to. */
static bool env_wait(svh_t *e, bool (*cond)(void *ud), void *ud) {
    pumped_t p = {e, cond, ud};
    return mw_wait_until(pump_then, &p, WAIT_MS);
}

static int env_naccepted(svh_t *e) { return svh_naccepted(e); }

static int env_nclosed(svh_t *e) {
    pthread_mutex_lock(&e->mu);
    int n = e->ncloses;
    pthread_mutex_unlock(&e->mu);
    return n;
}

typedef struct count_cond { svh_t *e; int want; int (*get)(svh_t *e); } count_cond_t;
static bool count_reached(void *ud) {
    count_cond_t *c = ud;
    return c->get(c->e) >= c->want;
}

static mw_conn_id_t wait_accepted(svh_t *e, int n) {
    count_cond_t c = {e, n, env_naccepted};
    if (!env_wait(e, count_reached, &c)) fail_msg("the Svc accepted %d connections, want %d", env_naccepted(e), n);
    pthread_mutex_lock(&e->mu);
    mw_conn_id_t id = e->accepted[n - 1];
    pthread_mutex_unlock(&e->mu);
    return id;
}

/* Waits for the close of id and returns a copy of its record. */
static svh_close_t wait_closed(svh_t *e, mw_conn_id_t id) {
    uint64_t dl = mw__deadline_in(NULL, WAIT_MS * MW_NS_PER_MS);
    for (;;) {
        pthread_mutex_lock(&e->mu);
        for (int i = 0; i < e->ncloses; i++) {
            if (e->closes[i].id != id) continue;
            svh_close_t c = e->closes[i];
            pthread_mutex_unlock(&e->mu);
            return c;
        }
        pthread_mutex_unlock(&e->mu);
        if (mw__deadline_passed(NULL, dl)) fail_msg("connection %#" PRIx64 " was not closed", id);
        env_pump(e);
        sched_yield();
    }
}

static bool was_closed(svh_t *e, mw_conn_id_t id) {
    pthread_mutex_lock(&e->mu);
    bool found = false;
    for (int i = 0; i < e->ncloses; i++) found |= e->closes[i].id == id;
    pthread_mutex_unlock(&e->mu);
    return found;
}

/* The record of the message with ping seq `seq` from id, or fails. */
static svh_msg_t find_msg(svh_t *e, mw_conn_id_t id, uint64_t seq) {
    pthread_mutex_lock(&e->mu);
    for (int i = 0; i < e->nmsgs; i++) {
        if (e->msgs[i].id != id || e->msgs[i].seq != seq) continue;
        svh_msg_t m = e->msgs[i];
        pthread_mutex_unlock(&e->mu);
        return m;
    }
    pthread_mutex_unlock(&e->mu);
    fail_msg("the Svc did not deliver ping %" PRIu64 " from %#" PRIx64, seq, id);
    return (svh_msg_t){0};
}

static int msgs_from(svh_t *e, mw_conn_id_t id) {
    pthread_mutex_lock(&e->mu);
    int n = 0;
    for (int i = 0; i < e->nmsgs; i++) n += e->msgs[i].id == id;
    pthread_mutex_unlock(&e->mu);
    return n;
}

typedef struct conns_cond { svh_t *e; uint32_t want; } conns_cond_t;
static bool conns_are(void *ud) {
    conns_cond_t *c = ud;
    return mw_svc_conn_count(c->e->svc) == c->want;
}

/* The peer may see its connection closed a moment before the Svc's count
 * drops (the socket is closed first). */
static void wait_conns(svh_t *e, uint32_t want) {
    conns_cond_t c = {e, want};
    if (!env_wait(e, conns_are, &c)) fail_msg("%u connections open, want %u", mw_svc_conn_count(e->svc), want);
}

static mw_svc_stats_t env_stats(svh_t *e) {
    mw_svc_stats_t st;
    mw_svc_stats(e->svc, &st);
    return st;
}

/* ---- fixture ------------------------------------------------------------------ */

static int env_setup(void **state) {
    svc_x_t *x = svh_setup_ud(state, sizeof *x);
    if (!x) return -1;
    x->close_on_seq = NO_SEQ;
    return 0;
}

/* ---- good peers: spin-mode Clts ---------------------------------------------- */

static mw_clt_t *clt_open(svh_t *e, const char *serdes) {
    mw_clt_opts_t o;
    mw_clt_opts_init(&o);
    o.mode = MW_MODE_SPIN;
    if (serdes) o.conn.serdes = serdes;
    return svh_clt_connect(e, &o);
}

/* Frees a Clt early (the fixture would free it at the end otherwise). */
static void clt_drop(svh_t *e, mw_clt_t *c) { svh_clt_drop(e, c); }

static void clt_send_ping(mw_clt_t *c, uint64_t seq) { svh_send_ping(c, seq); }

/* Receives one message, driving the Svc meanwhile. Returns 0, MW_ECLOSED or
 * an error; fails on timeout. */
static int clt_wait_msg(svh_t *e, mw_clt_t *c, const mw_schema_t **s, test_msg_t *m) {
    uint64_t dl = mw__deadline_in(NULL, WAIT_MS * MW_NS_PER_MS);
    for (;;) {
        int r = mw_clt_recv(c, s, m, sizeof *m);
        if (r != MW_EAGAIN) return r;
        if (mw__deadline_passed(NULL, dl)) fail_msg("clt: nothing received in %d ms", WAIT_MS);
        env_pump(e);
        sched_yield();
    }
}

static void clt_expect_ping(svh_t *e, mw_clt_t *c, uint64_t seq) {
    const mw_schema_t *s;
    test_msg_t m;
    int r = clt_wait_msg(e, c, &s, &m);
    if (r != 0) fail_msg("clt waiting for ping %" PRIu64 ": %s: %s", seq, mw_errname(r), mw_clt_last_error(c));
    assert_int_equal(s->tag, ping_TAG);
    assert_int_equal(m.ping.seq, seq);
    assert_int_equal(m.ping.sent_ns, seq * 3);
}

static void roundtrip(svh_t *e, mw_clt_t *c, uint64_t seq) {
    clt_send_ping(c, seq);
    clt_expect_ping(e, c, seq);
}

static void clt_expect_closed(svh_t *e, mw_clt_t *c) {
    const mw_schema_t *s;
    test_msg_t m;
    int r = clt_wait_msg(e, c, &s, &m);
    if (r != MW_ECLOSED) fail_msg("clt: want MW_ECLOSED, got %s (%s)", mw_errname(r), mw_clt_last_error(c));
    assert_false(mw_clt_is_open(c));
}

/* ---- bad peers: raw sockets ------------------------------------------------ */

static int raw_connect(svh_t *e) { return svh_raw_connect(e); } /* tracked: closed by the fixture */

static void raw_close(svh_t *e, int fd) { svh_raw_close(e, fd); }

/* Waits until the Svc closed the raw peer's connection: end of stream or a
 * reset. Returns the bytes it sent before (the echoes), up to cap. */
static size_t raw_wait_eof(svh_t *e, int fd, uint8_t *got, size_t cap) {
    uint64_t dl = mw__deadline_in(NULL, WAIT_MS * MW_NS_PER_MS);
    size_t n = 0;
    uint8_t tmp[4096];
    for (;;) {
        ssize_t r = recv(fd, tmp, sizeof tmp, MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno == ECONNRESET)) return n;
        if (r > 0) {
            size_t k = (size_t)r < cap - n ? (size_t)r : cap - n;
            memcpy(got + n, tmp, k);
            n += k;
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) fail_msg("raw recv: %s", strerror(errno));
        if (mw__deadline_passed(NULL, dl)) fail_msg("the Svc did not close the raw connection");
        env_pump(e);
        sched_yield();
    }
}

/* Reads exactly n bytes the Svc sends, driving it meanwhile. */
static void raw_read_exact(svh_t *e, int fd, uint8_t *got, size_t n) {
    uint64_t dl = mw__deadline_in(NULL, WAIT_MS * MW_NS_PER_MS);
    size_t have = 0;
    while (have < n) {
        ssize_t r = recv(fd, got + have, n - have, MSG_DONTWAIT);
        if (r > 0) {
            have += (size_t)r;
            continue;
        }
        if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) fail_msg("raw recv: closed early");
        if (mw__deadline_passed(NULL, dl)) fail_msg("raw recv: %zu of %zu bytes", have, n);
        env_pump(e);
        sched_yield();
    }
}

/* Encodes msg with serdes and frames it as that serdes does on TCP (u32
 * big-endian length for binary serdes, a newline after text). */
static size_t frame_msg(const char *serdes, const mw_schema_t *s, const void *msg, uint8_t *out, size_t cap) {
    mw_serdes_t sd;
    assert_int_equal(mw_serdes_init(&sd, serdes, 0), 0);
    bool text = strcmp(serdes, "text") == 0;
    ssize_t n = mw_serdes_encode(&sd, s, msg, out + (text ? 0 : 4), cap - 5);
    mw_serdes_fini(&sd);
    assert_true(n > 0);
    if (text) {
        out[n] = '\n';
        return (size_t)n + 1;
    }
    out[0] = (uint8_t)(n >> 24), out[1] = (uint8_t)(n >> 16), out[2] = (uint8_t)(n >> 8), out[3] = (uint8_t)n;
    return (size_t)n + 4;
}

static size_t frame_ping(const char *serdes, uint64_t seq, uint8_t *out, size_t cap) {
    ping_t p = {.seq = seq, .sent_ns = seq * 3};
    return frame_msg(serdes, ping_schema(), &p, out, cap);
}

static void fill_all_kinds(all_kinds_t *a) {
    memset(a, 0, sizeof *a);
    a->i8 = 99, a->i16 = -2, a->i32 = 3, a->i64 = -4, a->u8 = 5, a->u16 = 6, a->u32 = 7, a->u64 = 8;
    a->f64 = 0.5, a->flag = true, a->side = 2;
    memcpy(a->sym, "SYM", 3);
    memcpy(a->raw, "\x01\x02\x03\x04", 4);
}

/* xorshift64, reseeded by each test that uses it so its bytes do not depend
 * on which tests ran before. */
static uint64_t rng_state;
static void rng_seed(void) { rng_state = 0x853c49e6748fea9bULL; }
static uint8_t rng_byte(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint8_t)(rng_state >> 24);
}

/* One bad peer: a good Clt is connected first; the raw peer sends a good
 * ping and then `bad`. The Svc must deliver the ping, close only the raw
 * connection with `want_code` and a text containing `want_text`, and keep
 * the good Clt working. Returns the close record. */
static svh_close_t bad_peer(svh_t *e, const char *serdes, const uint8_t *bad, size_t bad_len, int want_code,
                            const char *want_text) {
    mw_clt_t *good = clt_open(e, serdes);
    mw_conn_id_t good_id = wait_accepted(e, 1);
    roundtrip(e, good, 1);

    int fd = raw_connect(e);
    mw_conn_id_t bad_id = wait_accepted(e, 2);
    static uint8_t wire[1 << 17];
    size_t n = frame_ping(serdes, RAW_SEQ, wire, sizeof wire);
    assert_true(n + bad_len <= sizeof wire);
    memcpy(wire + n, bad, bad_len);
    mw_test_raw_write(fd, wire, n + bad_len); /* one write: both in the same read */

    svh_close_t c = wait_closed(e, bad_id);
    if (c.reason != want_code)
        fail_msg("closed with %s (%s), want %s", mw_errname(c.reason), c.text, mw_errname(want_code));
    if (!strstr(c.text, want_text)) fail_msg("close text \"%s\" does not mention \"%s\"", c.text, want_text);
    svh_msg_t m = find_msg(e, bad_id, RAW_SEQ); /* accepted before the bad bytes: not lost */
    assert_true(m.order < c.order);
    assert_int_equal(msgs_from(e, bad_id), 1);
    uint8_t echo[256];
    size_t got = raw_wait_eof(e, fd, echo, sizeof echo);
    assert_int_equal(got, frame_ping(serdes, RAW_SEQ, wire, sizeof wire));
    assert_memory_equal(echo, wire, got);
    raw_close(e, fd);

    assert_false(was_closed(e, good_id));
    roundtrip(e, good, 2);
    assert_int_equal(mw_svc_conn_count(e->svc), 1);
    mw_svc_stats_t st = env_stats(e);
    assert_int_equal(st.closed_bad_input, 1);
    assert_int_equal(st.closed, 1);
    assert_int_equal(mw_svc_send_to(e->svc, bad_id, ping_schema(), &(ping_t){0}), MW_ECLOSED);
    return c;
}

/* ---- pool and limits ------------------------------------------------------------ */

static void test_svc_refuses_clients_over_max_connections(void **state) {
    svh_t *e = *state;
    env_start(e, &(env_cfg_t){.max_connections = 2});
    mw_clt_t *a = clt_open(e, NULL);
    mw_clt_t *b = clt_open(e, NULL);
    wait_accepted(e, 2);
    mw_clt_t *c = clt_open(e, NULL); /* the kernel accepts it; the Svc closes it */
    clt_expect_closed(e, c);
    mw_svc_stats_t st = env_stats(e);
    assert_int_equal(st.refused_full, 1);
    assert_int_equal(st.accepted, 2);
    assert_int_equal(st.connections, 2);
    assert_int_equal(env_naccepted(e), 2); /* no on_accept for the refused one */
    assert_int_equal(env_nclosed(e), 0);   /* nor on_close */
    roundtrip(e, a, 10);
    roundtrip(e, b, 11);
    roundtrip(e, a, 12);
    assert_int_equal(mw_svc_conn_count(e->svc), 2);
}

static void test_svc_stale_id_never_reaches_the_reused_slot(void **state) {
    svh_t *e = *state;
    env_start(e, &(env_cfg_t){.max_connections = 1});
    mw_clt_t *a = clt_open(e, NULL);
    mw_conn_id_t id_a = wait_accepted(e, 1);
    roundtrip(e, a, 1);
    clt_drop(e, a);
    svh_close_t ca = wait_closed(e, id_a);
    assert_int_equal(ca.reason, MW_ECLOSED);

    mw_clt_t *b = clt_open(e, NULL);
    mw_conn_id_t id_b = wait_accepted(e, 2);
    assert_int_equal((uint32_t)id_a, (uint32_t)id_b); /* the same slot */
    assert_true(id_a != id_b);                        /* another generation */
    assert_true(id_b != MW_CONN_ID_NONE);
    ping_t p = {.seq = 77, .sent_ns = 77 * 3};
    assert_int_equal(mw_svc_send_to(e->svc, id_a, ping_schema(), &p), MW_ECLOSED);
    assert_int_equal(mw_svc_close_conn(e->svc, id_a), MW_ECLOSED);
    assert_int_equal(mw_svc_set_serdes(e->svc, id_a, MW_DIR_BOTH, "text"), MW_ECLOSED);
    assert_string_equal(mw_svc_conn_error(e->svc, id_a), "");
    assert_int_equal(mw_svc_send_to(e->svc, id_b, ping_schema(), &p), 0);
    clt_expect_ping(e, b, 77);
    roundtrip(e, b, 78);
}

static void test_svc_send_to_and_broadcast_reach_each_client(void **state) {
    svh_t *e = *state;
    env_start(e, NULL);
    enum { N = 3 };
    mw_clt_t *c[N];
    mw_conn_id_t id[N];
    for (int i = 0; i < N; i++) {
        c[i] = clt_open(e, NULL);
        id[i] = wait_accepted(e, i + 1);
    }
    ping_t p = {.seq = 500, .sent_ns = 1500};
    assert_int_equal(mw_svc_broadcast(e->svc, ping_schema(), &p), N);
    for (int i = 0; i < N; i++) clt_expect_ping(e, c[i], 500);
    for (int i = 0; i < N; i++) {
        ping_t q = {.seq = 600 + (uint64_t)i, .sent_ns = (600 + (uint64_t)i) * 3};
        assert_int_equal(mw_svc_send_to(e->svc, id[i], ping_schema(), &q), 0);
    }
    for (int i = 0; i < N; i++) clt_expect_ping(e, c[i], 600 + (uint64_t)i);
    /* One leaves: broadcast reaches the other two. */
    clt_drop(e, c[1]);
    wait_closed(e, id[1]);
    p.seq = 700, p.sent_ns = 2100;
    assert_int_equal(mw_svc_broadcast(e->svc, ping_schema(), &p), N - 1);
    clt_expect_ping(e, c[0], 700);
    clt_expect_ping(e, c[2], 700);
    mw_svc_stats_t st = env_stats(e);
    assert_int_equal(st.connections, N - 1);
    assert_int_equal(st.closed, 1);
}

/* ---- closing from the application --------------------------------------------- */

static void test_svc_close_conn_inside_on_msg_is_deferred(void **state) {
    svh_t *e = *state;
    X(e)->close_on_seq = 1;
    env_start(e, NULL);
    mw_clt_t *c = clt_open(e, NULL);
    mw_conn_id_t id = wait_accepted(e, 1);
    /* Three pings in one write: the close on the first stops delivery. */
    for (uint64_t s = 1; s <= 3; s++) {
        ping_t p = {.seq = s, .sent_ns = s * 3};
        assert_int_equal(mw_clt_send_more(c, ping_schema(), &p), 0);
    }
    assert_int_equal(mw_clt_flush(c), 0);
    svh_close_t cr = wait_closed(e, id);
    assert_int_equal(cr.reason, MW_ESTATE);
    assert_int_equal(X(e)->close_rc, 0);
    assert_false(X(e)->closed_inside_msg);
    assert_int_equal(msgs_from(e, id), 1);
    assert_true(find_msg(e, id, 1).order < cr.order);
    clt_expect_ping(e, c, 1); /* the echo sent before the close still goes out */
    clt_expect_closed(e, c);
    wait_conns(e, 0);
    assert_int_equal(env_stats(e).closed_bad_input, 0);
}

static void test_svc_close_conn_from_another_thread(void **state) {
    svh_t *e = *state;
    env_start(e, NULL);
    mw_clt_t *c = clt_open(e, NULL);
    mw_conn_id_t id = wait_accepted(e, 1);
    roundtrip(e, c, 1);
    assert_int_equal(mw_svc_close_conn(e->svc, id), 0);
    svh_close_t cr = wait_closed(e, id);
    assert_int_equal(cr.reason, MW_ESTATE);
    assert_false(pthread_equal(cr.th, pthread_self())); /* ran on the worker */
    clt_expect_closed(e, c);
    wait_conns(e, 0); /* the id is invalidated after on_close returns */
    assert_int_equal(mw_svc_close_conn(e->svc, id), MW_ECLOSED);
    assert_int_equal(env_nclosed(e), 1);
}

/* ---- bad input ------------------------------------------------------------------- */

static void test_svc_peer_leaving_mid_message_is_closed_alone(void **state) {
    svh_t *e = *state;
    env_start(e, NULL);
    mw_clt_t *good = clt_open(e, NULL);
    mw_conn_id_t good_id = wait_accepted(e, 1);
    int fd = raw_connect(e);
    mw_conn_id_t bad_id = wait_accepted(e, 2);
    uint8_t wire[256];
    size_t n = frame_ping("fixed", RAW_SEQ, wire, sizeof wire);
    mw_test_raw_write(fd, wire, n);
    uint8_t echo[256];
    raw_read_exact(e, fd, echo, n); /* nothing unread when it leaves */
    assert_memory_equal(echo, wire, n);
    all_kinds_t a;
    fill_all_kinds(&a);
    size_t an = frame_msg("fixed", all_kinds_schema(), &a, wire, sizeof wire);
    mw_test_raw_write(fd, wire, an / 2);
    raw_close(e, fd);

    svh_close_t c = wait_closed(e, bad_id);
    assert_int_equal(c.reason, MW_ETRUNC);
    if (!strstr(c.text, "inside a message")) fail_msg("close text \"%s\" does not mention the partial message", c.text);
    assert_int_equal(msgs_from(e, bad_id), 1);
    find_msg(e, bad_id, RAW_SEQ);
    assert_false(was_closed(e, good_id));
    roundtrip(e, good, 5);
    assert_int_equal(env_stats(e).closed_bad_input, 0); /* leaving is not bad input */
}

typedef struct idle_q { mw_svc_t *svc; mw_conn_id_t id; } idle_q_t;

/* The connection holds no buffer: it has been idle long enough for its io
 * to take them back (event mode keeps them while traffic flows). */
static bool conn_idle(void *ud) {
    idle_q_t *q = ud;
    mw_conn_stats_t st;
    return mw_svc_conn_stats(q->svc, q->id, &st) == 0 && st.buffer_bytes == 0;
}

static void test_svc_oversized_frame_closes_without_reserving(void **state) {
    svh_t *e = *state;
    env_start(e, NULL);
    mw_clt_t *good = clt_open(e, NULL);
    mw_conn_id_t good_id = wait_accepted(e, 1);
    roundtrip(e, good, 1);
    int fd = raw_connect(e);
    mw_conn_id_t bad_id = wait_accepted(e, 2);
    uint8_t wire[64];
    size_t n = frame_ping("fixed", RAW_SEQ, wire, sizeof wire);
    memcpy(wire + n, "\x7f\xff\xff\xff" "abc", 7);
    /* The first connection's buffers are back in the pool once it is idle,
     * and the second's first data takes them from there: rejecting a 2 GiB
     * length must not allocate anything (let alone 2 GiB). */
    if (e->mode == MW_MODE_EVENT) {
        idle_q_t q = {e->svc, good_id};
        if (!mw_wait_until(conn_idle, &q, WAIT_MS)) fail_msg("the first connection still holds buffers");
    }
    uint64_t allocs = mw_alloc_count();
    mw_test_raw_write(fd, wire, n + 7);
    svh_close_t c = wait_closed(e, bad_id);
    uint64_t during = mw_alloc_count() - allocs;
    assert_int_equal(c.reason, MW_ETOOBIG);
    if (!strstr(c.text, "max_msg")) fail_msg("close text \"%s\" does not mention max_msg", c.text);
    if (mw_alloc_counting_works()) assert_int_equal(during, 0);
    find_msg(e, bad_id, RAW_SEQ);
    assert_int_equal(msgs_from(e, bad_id), 1);
    raw_close(e, fd);
    assert_false(was_closed(e, good_id));
    roundtrip(e, good, 2);
    assert_int_equal(env_stats(e).closed_bad_input, 1);
}

static void test_svc_garbage_text_closes_with_eproto(void **state) {
    svh_t *e = *state;
    rng_seed();
    env_start(e, &(env_cfg_t){.serdes = "text"});
    uint8_t bad[512];
    for (size_t i = 0; i < sizeof bad - 1; i++) {
        do bad[i] = rng_byte();
        while (bad[i] == '\n' || bad[i] == '{' || bad[i] == ' ' || bad[i] == '\t' || bad[i] == '\r');
    }
    bad[sizeof bad - 1] = '\n';
    bad_peer(e, "text", bad, sizeof bad, MW_EPROTO, "text decode");
}

static void test_svc_garbage_msgpack_closes_with_eproto(void **state) {
    svh_t *e = *state;
    rng_seed();
    env_start(e, &(env_cfg_t){.serdes = "msgpack"});
    uint8_t bad[4 + 200] = {0, 0, 0, 200, 0xc1};
    for (size_t i = 5; i < sizeof bad; i++) bad[i] = rng_byte();
    bad_peer(e, "msgpack", bad, sizeof bad, MW_EPROTO, "msgpack");
}

static void test_svc_random_bytes_close_only_that_connection(void **state) {
    svh_t *e = *state;
    rng_seed();
    env_start(e, NULL);
    /* Random bytes under u32 framing: a random length, almost surely over
     * max_msg, so the frame is refused as soon as its prefix arrives. */
    uint8_t bad[1000];
    for (size_t i = 0; i < sizeof bad; i++) bad[i] = rng_byte();
    bad[0] |= 0x10;
    bad_peer(e, "fixed", bad, sizeof bad, MW_ETOOBIG, "max_msg");
}

static void test_svc_unknown_tag_closes_with_etag(void **state) {
    svh_t *e = *state;
    env_start(e, NULL);
    uint8_t bad[4 + all_kinds_FIXED_SIZE] = {0, 0, 0, all_kinds_FIXED_SIZE, 77, 0};
    svh_close_t c = bad_peer(e, "fixed", bad, sizeof bad, MW_ETAG, "unknown tag 77");
    assert_string_equal(c.text, "recv: fixed decode: fixed: unknown tag 77");
}

static void test_svc_bad_bool_closes_with_erange(void **state) {
    svh_t *e = *state;
    env_start(e, NULL);
    all_kinds_t a;
    fill_all_kinds(&a);
    uint8_t bad[128];
    size_t n = frame_msg("fixed", all_kinds_schema(), &a, bad, sizeof bad);
    const mw_field_t *flag = NULL;
    const mw_schema_t *s = all_kinds_schema();
    size_t off = 4 + 2;
    for (unsigned i = 0; i < s->nfields && !flag; i++) {
        if (strcmp(s->fields[i].name, "flag") == 0) flag = &s->fields[i];
        else off += s->fields[i].size;
    }
    assert_non_null(flag);
    assert_int_equal(bad[off], 1);
    bad[off] = 7;
    bad_peer(e, "fixed", bad, n, MW_ERANGE, "\"flag\"");
}

static void test_svc_out_of_range_text_int_closes_with_erange(void **state) {
    svh_t *e = *state;
    env_start(e, &(env_cfg_t){.serdes = "text"});
    all_kinds_t a;
    fill_all_kinds(&a);
    uint8_t good[512];
    size_t n = frame_msg("text", all_kinds_schema(), &a, good, sizeof good);
    good[n] = '\0';
    char *at = strstr((char *)good, "\"i8\":99");
    assert_non_null(at);
    char bad[600];
    int k = snprintf(bad, sizeof bad, "%.*s\"i8\":300%s", (int)(at - (char *)good), (char *)good,
                     at + strlen("\"i8\":99"));
    bad_peer(e, "text", (const uint8_t *)bad, (size_t)k, MW_ERANGE, "\"i8\"");
}

static void test_svc_close_conn_inside_on_accept(void **state) {
    svh_t *e = *state;
    X(e)->close_on_accept = true;
    env_start(e, NULL);
    mw_clt_t *c = clt_open(e, NULL);
    mw_conn_id_t id = wait_accepted(e, 1);
    svh_close_t cr = wait_closed(e, id);
    assert_int_equal(cr.reason, MW_ESTATE);
    assert_int_equal(X(e)->accept_close_rc, 0);
    clt_expect_closed(e, c);
    wait_conns(e, 0);
    assert_int_equal(msgs_from(e, id), 0);
    /* The next client gets the slot and works. */
    X(e)->close_on_accept = false;
    mw_clt_t *d = clt_open(e, NULL);
    mw_conn_id_t id2 = wait_accepted(e, 2);
    assert_true(id2 != id);
    roundtrip(e, d, 1);
}

/* The Svc outruns its peer: send_to says MW_EAGAIN when the connection's tx
 * buffer is full, and everything it accepted arrives, in order, once the peer
 * reads (spin: mw_svc_poll flushes; event: the worker flushes on
 * writability, also for sends from the test thread). */
static void test_svc_send_to_backpressure_then_everything_arrives(void **state) {
    svh_t *e = *state;
    env_start(e, &(env_cfg_t){.max_msg = 1024, .tx_buf = 4096, .sndbuf = 4096});
    X(e)->echo = false;
    enum { N = 20000 };
    mw_clt_t *c = clt_open(e, NULL);
    mw_conn_id_t id = wait_accepted(e, 1);
    uint64_t sent = 0, got = 0, eagain = 0;
    uint64_t dl = mw__deadline_in(NULL, 4 * WAIT_MS * MW_NS_PER_MS);
    while (got < N) {
        bool progress = false;
        while (sent < N) {
            ping_t p = {.seq = sent, .sent_ns = sent * 3};
            int r = mw_svc_send_to(e->svc, id, ping_schema(), &p);
            if (r == MW_EAGAIN) {
                eagain++;
                break;
            }
            if (r != 0) fail_msg("send_to %" PRIu64 ": %s: %s", sent, mw_errname(r), mw_svc_conn_error(e->svc, id));
            sent++;
            progress = true;
        }
        if (e->mode != MW_MODE_EVENT) assert_true(mw_svc_poll(e->svc, 0) >= 0);
        /* Read only a little at a time, so the Svc keeps hitting a full buffer. */
        for (int k = 0; k < 50 && got < sent; k++) {
            const mw_schema_t *s;
            test_msg_t m;
            int r = mw_clt_recv(c, &s, &m, sizeof m);
            if (r == MW_EAGAIN) break;
            if (r != 0) fail_msg("clt recv after %" PRIu64 ": %s: %s", got, mw_errname(r), mw_clt_last_error(c));
            if (s->tag != ping_TAG || m.ping.seq != got) fail_msg("message %" PRIu64 " is seq %" PRIu64, got, m.ping.seq);
            got++;
            progress = true;
        }
        if (!progress) {
            if (mw__deadline_passed(NULL, dl)) fail_msg("stuck: sent %" PRIu64 ", received %" PRIu64, sent, got);
            sched_yield();
        }
    }
    assert_true(eagain > 0);
    assert_false(was_closed(e, id));
}

/* workers = 0: the Svc lives on the caller's io, which the test thread polls. */
static void test_svc_event_without_workers_runs_on_the_callers_io(void **state) {
    svh_t *e = *state;
    env_start(e, &(env_cfg_t){.on_callers_io = true});
    mw_clt_t *a = clt_open(e, NULL);
    mw_clt_t *b = clt_open(e, NULL);
    mw_conn_id_t id_a = wait_accepted(e, 1);
    wait_accepted(e, 2);
    for (uint64_t s = 0; s < 20; s++) {
        roundtrip(e, a, s);
        roundtrip(e, b, 100 + s);
    }
    pthread_mutex_lock(&e->mu);
    for (int i = 0; i < e->nmsgs; i++) assert_true(pthread_equal(e->msgs[i].th, pthread_self()));
    pthread_mutex_unlock(&e->mu);
    assert_int_equal(mw_svc_close_conn(e->svc, id_a), 0);
    assert_int_equal(wait_closed(e, id_a).reason, MW_ESTATE);
    clt_expect_closed(e, a);
    roundtrip(e, b, 200);
}

/* ---- fairness and threads -------------------------------------------------------- */

static void flood(mw_clt_t *c, uint64_t n) {
    uint64_t dl = mw__deadline_in(NULL, WAIT_MS * MW_NS_PER_MS);
    for (uint64_t s = 0; s < n;) {
        ping_t p = {.seq = s, .sent_ns = s * 3};
        int r = mw_clt_send(c, ping_schema(), &p);
        if (r == 0) s++;
        else if (r != MW_EAGAIN) fail_msg("flood: %s", mw_errname(r));
        else if (mw__deadline_passed(NULL, dl)) fail_msg("flood: stuck at %" PRIu64, s);
    }
    while (mw_clt_flush(c) == MW_EAGAIN) {
        if (mw__deadline_passed(NULL, dl)) fail_msg("flood: flush stuck");
        sched_yield();
    }
}

typedef struct outq_cond { mw_clt_t *c; } outq_cond_t;
static bool outq_empty(void *ud) {
    int fd = mw__stream_fd(mw__clt_conn(((outq_cond_t *)ud)->c)->stream);
    int n = -1;
    return ioctl(fd, SIOCOUTQ, &n) == 0 && n == 0;
}

/* Waits until the Svc's kernel holds every byte c sent (nothing left
 * unacknowledged in c's socket), so the test knows what a read can see. */
static void wait_delivered(mw_clt_t *c) {
    outq_cond_t q = {c};
    assert_true(mw_wait_until(outq_empty, &q, WAIT_MS));
}

typedef struct tally {
    mw_conn_id_t id_a, id_b;
    int na, nb, run, longest;
    uint64_t next_a, next_b;
    mw_conn_id_t prev;
} tally_t;

/* Receives n messages, checking each client's order and counting. */
static void recv_tally(svh_t *e, tally_t *t, int n) {
    uint64_t dl = mw__deadline_in(NULL, WAIT_MS * MW_NS_PER_MS);
    t->na = t->nb = t->run = t->longest = 0;
    t->prev = MW_CONN_ID_NONE;
    while (t->na + t->nb < n) {
        test_msg_t m;
        mw_conn_id_t id;
        const mw_schema_t *sch;
        int r = mw_svc_recv(e->svc, &id, &sch, &m, sizeof m);
        if (r == MW_EAGAIN || r == MW_ETIMEDOUT) {
            if (mw__deadline_passed(NULL, dl)) fail_msg("recv stalled at %d+%d", t->na, t->nb);
            continue;
        }
        assert_int_equal(r, 0);
        assert_int_equal(sch->tag, ping_TAG);
        if (id == t->id_a) assert_int_equal(m.ping.seq, t->next_a++), t->na++;
        else if (id == t->id_b) assert_int_equal(m.ping.seq, t->next_b++), t->nb++;
        else fail_msg("message from unknown id %#" PRIx64, id);
        t->run = id == t->prev ? t->run + 1 : 1;
        t->longest = t->run > t->longest ? t->run : t->longest;
        t->prev = id;
    }
}

enum { FLOOD = 1500, FIRST = 1000 };

static void test_svc_recv_alternates_between_flooding_clients(void **state) {
    svh_t *e = *state;
    env_start(e, NULL);
    X(e)->echo = false;
    mw_clt_t *a = clt_open(e, NULL);
    mw_clt_t *b = clt_open(e, NULL);
    tally_t t = {.id_a = wait_accepted(e, 1), .id_b = wait_accepted(e, 2)};
    flood(a, FLOOD);
    flood(b, FLOOD);
    wait_delivered(a);
    wait_delivered(b);
    recv_tally(e, &t, FIRST);
    if (t.na < FIRST / 2 - 2 || t.nb < FIRST / 2 - 2 || t.longest > 2)
        fail_msg("first %d messages: %d from a, %d from b, longest run %d", FIRST, t.na, t.nb, t.longest);
}

/* a's backlog is already in the Svc's buffer when b starts flooding: b must
 * still get its turns, not wait behind the whole backlog. */
static void test_svc_recv_does_not_starve_a_client_behind_a_busy_one(void **state) {
    svh_t *e = *state;
    env_start(e, NULL);
    X(e)->echo = false;
    mw_clt_t *a = clt_open(e, NULL);
    mw_clt_t *b = clt_open(e, NULL);
    tally_t t = {.id_a = wait_accepted(e, 1), .id_b = wait_accepted(e, 2)};
    flood(a, FLOOD);
    wait_delivered(a);
    recv_tally(e, &t, 1); /* reads a's backlog into the Svc */
    assert_int_equal(t.na, 1);
    flood(b, FLOOD);
    wait_delivered(b);
    recv_tally(e, &t, FIRST);
    if (t.nb < FIRST / 2 - 100)
        fail_msg("next %d messages: %d from a, %d from b (longest run %d)", FIRST, t.na, t.nb, t.longest);
}

/* mw_svc_recv_batch's callback: what the fixture's on_msg does (record,
 * then the test's reaction). */
static void batch_msg(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg, void *ud) {
    svh_t *e = ud;
    svh_rec_msg(e, id, sch, msg);
    handle_msg(e, s, id, sch, msg);
}

/* Batch receive: one flooding client's messages come in runs (more than
 * one per call), every one in order, each call from one connection. */
static void test_svc_recv_batch_delivers_runs_in_order(void **state) {
    svh_t *e = *state;
    env_start(e, NULL);
    X(e)->echo = false;
    mw_clt_t *a = clt_open(e, NULL);
    mw_conn_id_t ida = wait_accepted(e, 1);
    flood(a, FLOOD);
    wait_delivered(a);
    uint64_t dl = mw__deadline_in(NULL, WAIT_MS * MW_NS_PER_MS);
    int calls = 0, longest = 0;
    while (msgs_from(e, ida) < FLOOD) {
        int before = e->nmsgs;
        int r = mw_svc_recv_batch(e->svc, batch_msg, e, 1000);
        if (r == MW_EAGAIN || r == MW_ETIMEDOUT) {
            if (mw__deadline_passed(NULL, dl)) fail_msg("batch recv stalled at %d", msgs_from(e, ida));
            continue;
        }
        assert_true(r >= 1 && r <= 1000);
        assert_int_equal(e->nmsgs - before, r);
        calls++;
        longest = r > longest ? r : longest;
    }
    for (int i = 0; i < FLOOD; i++) {
        assert_int_equal(e->msgs[i].id, ida);
        assert_int_equal(e->msgs[i].seq, (uint64_t)i);
    }
    if (longest < 2) fail_msg("%d calls for %d messages: no batch ever had more than one", calls, FLOOD);
    assert_int_equal(mw_svc_recv_batch(e->svc, NULL, e, 10), MW_EINVAL);
    assert_int_equal(mw_svc_recv_batch(e->svc, batch_msg, e, 0), MW_EINVAL);
}

/* Two flooding clients: a batch holds one connection's messages only, and
 * the next call starts with the other connection. */
static void test_svc_recv_batch_takes_turns_between_connections(void **state) {
    svh_t *e = *state;
    env_start(e, NULL);
    X(e)->echo = false;
    mw_clt_t *a = clt_open(e, NULL);
    mw_clt_t *b = clt_open(e, NULL);
    mw_conn_id_t ida = wait_accepted(e, 1), idb = wait_accepted(e, 2);
    flood(a, FLOOD);
    flood(b, FLOOD);
    wait_delivered(a);
    wait_delivered(b);
    uint64_t dl = mw__deadline_in(NULL, WAIT_MS * MW_NS_PER_MS);
    mw_conn_id_t prev = MW_CONN_ID_NONE;
    int switches = 0;
    while (msgs_from(e, ida) + msgs_from(e, idb) < 2 * FLOOD) {
        int before = e->nmsgs;
        int r = mw_svc_recv_batch(e->svc, batch_msg, e, 64);
        if (r == MW_EAGAIN || r == MW_ETIMEDOUT) {
            if (mw__deadline_passed(NULL, dl)) fail_msg("batch recv stalled");
            continue;
        }
        assert_true(r >= 1 && r <= 64);
        mw_conn_id_t id = e->msgs[before].id;
        for (int i = before; i < e->nmsgs; i++) assert_int_equal(e->msgs[i].id, id);
        if (prev != MW_CONN_ID_NONE && id != prev) switches++;
        prev = id;
    }
    uint64_t next_a = 0, next_b = 0;
    for (int i = 0; i < e->nmsgs; i++) {
        if (e->msgs[i].id == ida) assert_int_equal(e->msgs[i].seq, next_a++);
        else assert_int_equal(e->msgs[i].seq, next_b++);
    }
    if (switches < 2 * FLOOD / 64 - 4) fail_msg("only %d switches between the two connections", switches);
}

/* A close asked for inside the batch's callback waits until it returns
 * (on_close does not run inside it) and ends the batch; the messages after
 * it are not delivered. */
static void test_svc_recv_batch_close_inside_fn_ends_the_batch(void **state) {
    svh_t *e = *state;
    env_start(e, NULL);
    X(e)->echo = false;
    X(e)->close_on_seq = 10;
    mw_clt_t *a = clt_open(e, NULL);
    mw_conn_id_t ida = wait_accepted(e, 1);
    flood(a, 100);
    wait_delivered(a);
    uint64_t dl = mw__deadline_in(NULL, WAIT_MS * MW_NS_PER_MS);
    while (!was_closed(e, ida)) {
        int r = mw_svc_recv_batch(e->svc, batch_msg, e, 1000);
        if (r < 0 && r != MW_EAGAIN && r != MW_ETIMEDOUT) fail_msg("batch recv: %s", mw_errname(r));
        if (mw__deadline_passed(NULL, dl)) fail_msg("not closed");
    }
    assert_int_equal(X(e)->close_rc, 0);
    assert_false(X(e)->closed_inside_msg);
    assert_int_equal(msgs_from(e, ida), 11);
    svh_close_t c = wait_closed(e, ida);
    assert_int_equal(c.reason, MW_ESTATE);
}

static void test_svc_workers_keep_each_connection_on_one_thread(void **state) {
    svh_t *e = *state;
    enum { WORKERS = 3, CLTS = 6, PINGS = 20 };
    env_start(e, &(env_cfg_t){.workers = WORKERS});
    mw_clt_t *c[CLTS];
    for (int i = 0; i < CLTS; i++) c[i] = clt_open(e, NULL);
    wait_accepted(e, CLTS);
    for (uint64_t s = 0; s < PINGS; s++) {
        for (int i = 0; i < CLTS; i++) clt_send_ping(c[i], s);
        for (int i = 0; i < CLTS; i++) clt_expect_ping(e, c[i], s);
    }
    pthread_mutex_lock(&e->mu);
    pthread_t threads[CLTS];
    int nthreads = 0, per_thread[CLTS] = {0};
    for (int i = 0; i < CLTS; i++) {
        pthread_t th = e->accept_th[i];
        assert_false(pthread_equal(th, pthread_self()));
        int seen = 0;
        for (int k = 0; k < e->nmsgs; k++) {
            if (e->msgs[k].id != e->accepted[i]) continue;
            seen++;
            if (!pthread_equal(e->msgs[k].th, th)) {
                pthread_mutex_unlock(&e->mu);
                fail_msg("connection %d: on_msg on two threads", i);
            }
        }
        assert_int_equal(seen, PINGS);
        int t = 0;
        while (t < nthreads && !pthread_equal(threads[t], th)) t++;
        if (t == nthreads) threads[nthreads++] = th;
        per_thread[t]++;
    }
    pthread_mutex_unlock(&e->mu);
    assert_int_equal(nthreads, WORKERS);
    for (int t = 0; t < WORKERS; t++) assert_int_equal(per_thread[t], CLTS / WORKERS);
}

/* mw_svc_poll "reads what the sockets hold": calling it while the rx buffer
 * is full of complete frames (the application is busy flushing, say) must not
 * break the connection. */
static void test_svc_poll_with_full_rx_buffer_keeps_the_connection(void **state) {
    svh_t *e = *state;
    env_start(e, &(env_cfg_t){.max_msg = 1024, .rx_buf = 2048});
    X(e)->echo = false;
    enum { PINGS = 300 };
    mw_clt_t *c = clt_open(e, NULL);
    mw_conn_id_t id = wait_accepted(e, 1);
    flood(c, PINGS);
    for (int i = 0; i < 10; i++) assert_true(mw_svc_poll(e->svc, 0) >= 0);
    uint64_t dl = mw__deadline_in(NULL, WAIT_MS * MW_NS_PER_MS);
    for (uint64_t s = 0; s < PINGS;) {
        test_msg_t m;
        mw_conn_id_t from;
        const mw_schema_t *sch;
        int r = mw_svc_recv(e->svc, &from, &sch, &m, sizeof m);
        if (r == 0) {
            assert_int_equal(from, id);
            assert_int_equal(m.ping.seq, s++);
            continue;
        }
        if (was_closed(e, id)) {
            svh_close_t cr = wait_closed(e, id);
            fail_msg("connection closed after %" PRIu64 " of %d pings: %s: %s", s, PINGS, mw_errname(cr.reason),
                     cr.text);
        }
        if (mw__deadline_passed(NULL, dl)) fail_msg("stalled after %" PRIu64 " pings", s);
    }
    assert_int_equal(env_nclosed(e), 0);
}


/* ==== Svc/Clt/io harness tests (tests/util/svc_harness.h) ==========================
 * Tests on the shared Svc harness, kept together at the end of the file.
 * Each replays a scenario that once failed (found in review). */
#include "svc_harness.h"

#include <netinet/tcp.h>
#include <poll.h>

/* Our FIN reached the peer's kernel (it acknowledged it). */
static bool fin_acked(void *ud) {
    int fd = *(int *)ud;
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_state == TCP_FIN_WAIT2;
}

static void busy_for(int64_t ns) {
    uint64_t dl = mw__deadline_in(NULL, ns);
    while (!mw__deadline_passed(NULL, dl)) mw_cpu_relax();
}

/* ---- spin/blocking Svc: a failed reply loses nothing the peer sent ------------ */

/* A client sends 5 requests and leaves. The Svc answers each as it reads it:
 * the first answer reaches the closed socket, which resets the connection,
 * so a later answer fails (EPIPE). Requests 3-5 were already received and
 * must still be delivered, before on_close. */
static void test_svc_failed_send_does_not_drop_requests_buffered_before_the_peer_left(void **state) {
    svh_t *f = *state;
    mw_svc_opts_t o;
    svh_svc_opts(f, &o);
    o.sync.timeout_ns = 10 * MW_NS_PER_MS;
    svh_listen(f, "tcp", &o);
    int fd = svh_raw_connect(f);
    svh_pump_until_conns(f, 1);
    mw_conn_id_t id = svh_accepted_id(f, 0);

    uint8_t wire[512];
    size_t n = 0;
    for (uint64_t seq = 1; seq <= 5; seq++) n += svh_tcp_frame_ping(seq, wire + n, sizeof wire - n);
    mw_test_raw_write(fd, wire, n);
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    if (!mw_wait_until(fin_acked, &fd, SVH_WAIT_MS)) fail_msg("the Svc's kernel did not acknowledge our FIN");
    svh_raw_close(f, fd); /* nothing unread: the next bytes the Svc sends draw a reset */

    int got = 0, first_failed = 0;
    uint64_t dl = mw__deadline_in(NULL, SVH_WAIT_MS * MW_NS_PER_MS);
    while (!svh_find_close(f, id, NULL)) {
        if (mw__deadline_passed(NULL, dl)) fail_msg("no on_close after %d requests", got);
        test_msg_t m;
        mw_conn_id_t from;
        const mw_schema_t *sch;
        int r = mw_svc_recv(f->svc, &from, &sch, &m, sizeof m);
        if (r == MW_EAGAIN || r == MW_ETIMEDOUT) continue;
        if (r != 0) fail_msg("svc recv: %s", mw_errname(r));
        assert_int_equal(from, id);
        svh_rec_msg(f, from, sch, &m);
        got++;
        int s = mw_svc_send_to(f->svc, from, sch, &m);
        if (s < 0 && s != MW_EAGAIN && !first_failed) first_failed = got;
    }
    svh_close_t c;
    assert_true(svh_find_close(f, id, &c));
    svh_expect_pings(f, id, 1, 5, c.order);
    /* The scenario happened: the answer to request 1 went out, a later one failed. */
    if (first_failed < 2 || first_failed > 4)
        fail_msg("first failed answer: to request %d, want one of 2..4", first_failed);
    assert_int_equal(mw_svc_conn_count(f->svc), 0);
}

/* ---- event Svc: a resetting peer's messages come before on_close -------------- */

/* Replies are pending (write interest armed) when a peer sends 5 messages
 * and resets. Both events arrive together: the write fails, but every
 * message the peer sent is delivered to on_msg first. */
static void test_svc_event_delivers_a_resetting_peers_messages_before_on_close_with_replies_pending(void **state) {
    svh_t *f = *state;
    mw_svc_opts_t o;
    svh_svc_opts(f, &o);
    o.event.workers = 1;
    o.conn.max_msg = 1024;
    o.conn.tx_buf = o.conn.rx_buf = 8192;
    o.tcp.sndbuf = 4096;
    f->fill_on_accept = true;
    svh_listen(f, "tcp", &o);

    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    co.tcp.rcvbuf = 4096;
    mw_clt_t *c = svh_clt_connect(f, &co);
    svh_wait_flag(&f->filled, "on_accept to fill the tx side");
    assert_true(atomic_load(&f->fill_count) > 0);
    assert_int_equal(atomic_load(&f->fill_last), MW_EAGAIN);
    mw_conn_id_t id = svh_accepted_id(f, 0);

    for (uint64_t seq = 1; seq <= 5; seq++) svh_send_ping(c, seq);
    svh_clt_drop(f, c); /* replies unread: the kernel resets the connection */
    atomic_store(&f->peer_gone, true);

    svh_close_t cr = svh_wait_closed(f, id);
    svh_expect_pings(f, id, 1, 5, cr.order);
}

/* ---- ws:// blocking Svc: good frames before a bad one are delivered ----------- */

static void *svc_thread(void *ud) {
    svh_t *f = ud;
    uint64_t dl = mw__deadline_in(NULL, 30 * MW_NS_PER_S);
    while (!atomic_load(&f->stop) && !mw__deadline_passed(NULL, dl)) {
        test_msg_t m;
        mw_conn_id_t id;
        const mw_schema_t *sch;
        if (mw_svc_recv(f->svc, &id, &sch, &m, sizeof m) == 0) svh_rec_msg(f, id, sch, &m);
    }
    return NULL;
}

/* Two clients (so the Svc reads through epoll, not solo). Client A writes
 * three good frames and a bad one (unmasked) in one write: the three are
 * delivered, then A is closed with MW_EPROTO; B is untouched. */
static void test_svc_ws_blocking_delivers_good_frames_read_with_a_bad_one_then_closes(void **state) {
    svh_t *f = *state;
    mw_svc_opts_t o;
    svh_svc_opts(f, &o);
    o.sync.timeout_ns = 20 * MW_NS_PER_MS;
    svh_listen(f, "ws", &o);
    svh_spawn(f, svc_thread, f); /* the handshakes need the Svc running */
    mw_clt_t *a = svh_clt_connect(f, NULL);
    mw_conn_id_t id_a = svh_wait_accepted(f, 1);
    mw_clt_t *b = svh_clt_connect(f, NULL);
    mw_conn_id_t id_b = svh_wait_accepted(f, 2);

    uint8_t wire[256];
    size_t n = 0;
    for (uint64_t seq = 1; seq <= 3; seq++) n += svh_ws_frame_ping(seq, wire + n, sizeof wire - n);
    const uint8_t bad[] = {0x82, 0x01, 0x00}; /* a client frame without a mask */
    memcpy(wire + n, bad, sizeof bad);
    n += sizeof bad;
    mw_test_raw_write(mw__stream_fd(mw__clt_conn(a)->stream), wire, n);

    svh_close_t cr = svh_wait_closed(f, id_a);
    if (cr.reason != MW_EPROTO) fail_msg("A closed with %s (%s), want MW_EPROTO", mw_errname(cr.reason), cr.text);
    svh_expect_pings(f, id_a, 1, 3, cr.order);

    svh_send_ping(b, 7);
    svh_msg_cond_t mc = {f, id_b, 7};
    if (!mw_wait_until(svh_msg_seen, &mc, SVH_WAIT_MS)) fail_msg("B's ping was not delivered after A was closed");
    assert_false(svh_find_close(f, id_b, NULL));
}

/* ---- spin/blocking Svc: a steady sender does not keep new clients out --------- */

static void *flooder(void *ud) {
    svh_t *f = ud;
    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    mw_idle_init_yield(&co.sync.idle);
    mw_clt_t *c = NULL;
    if (mw_clt_connect(&c, f->url, &test_protocol, &co, NULL) != 0) {
        atomic_fetch_add(&f->flooder_err, 1);
        atomic_fetch_add(&f->flooders_done, 1);
        return NULL;
    }
    ping_t p = {0};
    uint64_t dl = mw__deadline_in(NULL, 30 * MW_NS_PER_S);
    while (!atomic_load(&f->go) && !atomic_load(&f->stop) && !mw__deadline_passed(NULL, dl)) sched_yield();
    while (!atomic_load(&f->stop) && !mw__deadline_passed(NULL, dl)) {
        p.seq++;
        /* MW_EAGAIN is an accepted message too: the call returns it when
         * the flush after the send would block. */
        int r = mw_clt_send_busywait_timeout(c, ping_schema(), &p, 100 * MW_NS_PER_MS);
        if (r != 0 && r != MW_EAGAIN && r != MW_ETIMEDOUT) {
            atomic_fetch_add(&f->flooder_err, 1);
            break;
        }
    }
    mw_clt_free(c);
    atomic_fetch_add(&f->flooders_done, 1);
    return NULL;
}

/* One receive with some work per message (the Svc is the slower side). */
static int busy_recv(svh_t *f) {
    int r = svh_pump(f);
    if (r == 0) busy_for(20 * MW_NS_PER_US);
    return r;
}

typedef struct steady { svh_t *f; uint32_t want; long msgs; } steady_t;
static bool steady_conns(void *ud) {
    steady_t *s = ud;
    if (busy_recv(s->f) == 0) s->msgs++;
    return mw_svc_conn_count(s->f->svc) >= s->want;
}

static bool steady_msgs(void *ud) {
    steady_t *s = ud;
    if (busy_recv(s->f) == 0) s->msgs++;
    return s->msgs >= 2000;
}

static bool flooders_done(void *ud) {
    svh_t *f = ud;
    svh_pump(f);
    return atomic_load(&f->flooders_done) == atomic_load(&f->flooders);
}

/* Spin: one steady sender; blocking: two (one would be served solo). Once
 * they are connected they send without pause, and the Svc is kept busy:
 * every receive returns a message. A new client must still be accepted
 * within 1 s. */
static void test_svc_busy_with_a_steady_sender_still_accepts_a_new_client(void **state) {
    svh_t *f = *state;
    mw_svc_opts_t o;
    svh_svc_opts(f, &o);
    o.sync.timeout_ns = 10 * MW_NS_PER_MS;
    svh_listen(f, "tcp", &o);
    uint32_t nflood = f->mode == MW_MODE_BLOCKING ? 2 : 1;
    atomic_store(&f->flooders, (int)nflood);
    for (uint32_t i = 0; i < nflood; i++) svh_spawn(f, flooder, f);
    svh_pump_until_conns(f, nflood); /* all accepted before the traffic starts */
    atomic_store(&f->go, true);
    steady_t st = {f, nflood + 1, 0};
    if (!mw_wait_until(steady_msgs, &st, SVH_WAIT_MS)) fail_msg("only %ld messages from the steady senders", st.msgs);
    assert_int_equal(atomic_load(&f->flooder_err), 0);

    svh_clt_connect(f, NULL); /* completes from the listen backlog */
    uint64_t t0 = mw_now_ns();
    st.msgs = 0;
    bool ok = mw_wait_until(steady_conns, &st, 1000);
    double ms = (double)(mw_now_ns() - t0) / 1e6;
    if (!ok) fail_msg("new client not accepted in %.0f ms (%ld messages received meanwhile)", ms, st.msgs);

    atomic_store(&f->stop, true);
    if (!mw_wait_until(flooders_done, f, SVH_WAIT_MS)) fail_msg("steady senders did not stop");
    svh_join_all(f);
    assert_int_equal(atomic_load(&f->flooder_err), 0);
}

/* ---- event Svc on a caller's io: queued requests outlive mw_svc_free ---------- */

/* Posted to the io: holds its thread until released, so what other threads
 * post meanwhile stays queued. */
static void blocker(void *ud) {
    svh_t *f = ud;
    atomic_store(&f->blocker_running, true);
    uint64_t dl = mw__deadline_in(NULL, SVH_WAIT_MS * MW_NS_PER_MS);
    while (!atomic_load(&f->release) && !mw__deadline_passed(NULL, dl)) sched_yield();
}

/* workers = 0 on a caller's io that runs on its own thread. While that
 * thread is busy, another thread sends to a connection whose socket is full
 * (queues a write-arming request) or closes it (queues a close request).
 * The io is stopped, the Svc freed, then mw_io_free runs the queued request:
 * it must find the Svc gone, not freed memory. */
static void queued_request_after_svc_free(svh_t *f, bool send) {
    mw_err_t err = {0};
    if (mw_io_new(&f->io, NULL, &err) != 0) fail_msg("io: %s", mw_err_text(&err));
    assert_int_equal(mw_io_start(f->io, NULL), 0);
    mw_svc_opts_t o;
    svh_svc_opts(f, &o);
    o.event.workers = 0;
    o.event.io = f->io;
    o.conn.max_msg = 1024;
    o.conn.tx_buf = o.conn.rx_buf = 8192;
    o.tcp.sndbuf = 4096;
    svh_listen(f, "tcp", &o);
    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    co.tcp.rcvbuf = 4096;
    mw_clt_t *c = svh_clt_connect(f, &co);
    mw_conn_id_t id = svh_wait_accepted(f, 1);

    assert_int_equal(mw_io_post(f->io, blocker, f), 0);
    svh_wait_flag(&f->blocker_running, "the io thread to run the blocker");
    assert_false(mw__io_in_thread(f->io));
    if (send) {
        svh_fill_tx(f, f->svc, id);
        assert_true(atomic_load(&f->fill_count) > 0);
        assert_int_equal(atomic_load(&f->fill_last), MW_EAGAIN);
    } else {
        assert_int_equal(mw_svc_close_conn(f->svc, id), 0);
        assert_false(svh_find_close(f, id, NULL)); /* queued, not run here */
    }
    mw_io_break(f->io);
    atomic_store(&f->release, true);
    mw_io_stop(f->io);
    mw_svc_free(f->svc);
    f->svc = NULL;
    mw_io_free(f->io); /* runs the queued request */
    f->io = NULL;

    assert_false(svh_find_close(f, id, NULL)); /* closed by mw_svc_free: no callback */
    if (!mw_wait_until(svh_clt_sees_closed, c, SVH_WAIT_MS)) fail_msg("the client did not see its connection end");
}

static void test_svc_send_to_queued_on_a_callers_io_runs_safely_after_svc_free(void **state) {
    queued_request_after_svc_free(*state, true);
}

static void test_svc_close_conn_queued_on_a_callers_io_runs_safely_after_svc_free(void **state) {
    queued_request_after_svc_free(*state, false);
}

/* ---- blocking Svc: leaving solo mode keeps the replies queued while solo ------ */

typedef struct drain { svh_t *f; mw_clt_t *c; int got, want; bool bad; } drain_t;
static bool drained(void *ud) {
    drain_t *d = ud;
    test_msg_t m;
    const mw_schema_t *s;
    int r;
    while ((r = mw_clt_recv(d->c, &s, &m, sizeof m)) == 0) {
        if (s->tag != ping_TAG || m.ping.seq != (uint64_t)d->got) d->bad = true;
        d->got++;
    }
    if (r != MW_EAGAIN) d->bad = true;
    if (d->bad || d->got >= d->want) return true;
    svh_pump(d->f);
    return false;
}

/* One client: the Svc serves it solo and queues replies behind its full
 * socket. A second client arrives (the Svc leaves solo mode); then the
 * first client reads: every queued reply must reach it. */
static void test_svc_blocking_second_client_does_not_strand_replies_queued_for_the_first(void **state) {
    svh_t *f = *state;
    mw_svc_opts_t o;
    svh_svc_opts(f, &o);
    o.sync.timeout_ns = MW_NS_PER_MS;
    o.conn.max_msg = 1024;
    o.conn.tx_buf = o.conn.rx_buf = 8192;
    o.tcp.sndbuf = 4096;
    svh_listen(f, "tcp", &o);
    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    co.tcp.rcvbuf = 4096;
    mw_clt_t *a = svh_clt_connect(f, &co);
    svh_send_ping(a, 1);
    svh_msg_cond_t mc = {f, 0, 1};
    if (!mw_wait_until(svh_pumped_msg, &mc, SVH_WAIT_MS)) fail_msg("the first client's ping was not delivered");
    assert_int_equal(mw_svc_conn_count(f->svc), 1);

    svh_fill_tx(f, f->svc, mc.id);
    int queued = atomic_load(&f->fill_count);
    assert_true(queued > 0);
    assert_int_equal(atomic_load(&f->fill_last), MW_EAGAIN);

    svh_clt_connect(f, NULL);
    svh_pump_until_conns(f, 2);

    drain_t d = {f, a, 0, queued, false};
    bool done = mw_wait_until(drained, &d, 3000);
    if (d.bad) fail_msg("the first client got a wrong message or an error after %d replies", d.got);
    if (!done) fail_msg("the first client got %d of %d replies", d.got, queued);
    assert_int_equal(d.got, queued);
}

/* ---- blocking Svc: timeout_ns = 0 still polls -------------------------------- */


static void test_svc_blocking_zero_timeout_still_accepts_and_receives(void **state) {
    svh_t *f = *state;
    mw_svc_opts_t o;
    svh_svc_opts(f, &o);
    o.sync.timeout_ns = 0;
    svh_listen(f, "tcp", &o);
    mw_clt_t *c = svh_clt_connect(f, NULL);
    svh_send_ping(c, 1);
    svh_msg_cond_t mc = {f, 0, 1};
    if (!mw_wait_until(svh_pumped_msg, &mc, SVH_WAIT_MS))
        fail_msg("timeout_ns = 0: %d accepted, %u connections, ping not received", svh_naccepted(f),
                 mw_svc_conn_count(f->svc));
    assert_int_equal(mw_svc_conn_count(f->svc), 1);
    /* and with nothing more to read, it returns */
    test_msg_t m;
    mw_conn_id_t id;
    const mw_schema_t *sch;
    assert_int_equal(mw_svc_recv(f->svc, &id, &sch, &m, sizeof m), MW_ETIMEDOUT);
}
/* ---- ws:// Svc: bytes no HTTP request begins with get 400 at once ---------------- */

/* Reads fd until EOF or until `limit_ns` from t0 passed; the bytes read go to
 * out (NUL-terminated). Returns the time of EOF after t0, or -1 if none came. */
static int64_t read_until_eof(int fd, uint64_t t0, int64_t limit_ns, char *out, size_t cap) {
    size_t n = 0;
    for (;;) {
        int64_t left = limit_ns - (int64_t)(mw_now_ns() - t0);
        if (left <= 0) break;
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, (int)(left / MW_NS_PER_MS) + 1) <= 0) continue;
        char tmp[512];
        ssize_t r = recv(fd, tmp, sizeof tmp, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            out[n] = '\0';
            return (int64_t)(mw_now_ns() - t0);
        }
        size_t k = (size_t)r < cap - 1 - n ? (size_t)r : cap - 1 - n;
        memcpy(out + n, tmp, k);
        n += k;
    }
    out[n] = '\0';
    return -1;
}

/* A TLS ClientHello, a NUL byte or a byte >= 0x80 sent to a ws:// Svc is
 * answered "400 Bad Request" and closed at once, long before the handshake
 * timeout (3 s here; the default is 10 s). A client that sent a valid but
 * partial request line is still given the whole handshake timeout. */
static void test_svc_ws_answers_400_at_once_to_bytes_no_request_begins_with(void **state) {
    svh_t *f = *state;
    const int64_t hs_timeout = 3 * MW_NS_PER_S;
    mw_svc_opts_t o;
    svh_svc_opts(f, &o);
    o.handshake_timeout_ns = hs_timeout;
    o.sync.timeout_ns = 10 * MW_NS_PER_MS;
    svh_listen(f, "ws", &o);
    if (f->mode != MW_MODE_EVENT) svh_spawn(f, svc_thread, f); /* the handshakes need the Svc running */

    int slow = svh_raw_connect(f);
    uint64_t slow_t0 = mw_now_ns();
    mw_test_raw_write(slow, "GET / HTTP/1.1\r\nHost: x\r\n", 25);

    static const struct { const char *p; size_t n; } bad[] = {
        {"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11}, {"\x00", 1}, {"\x80", 1}};
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        int fd = svh_raw_connect(f);
        uint64_t t0 = mw_now_ns();
        mw_test_raw_write(fd, bad[b].p, bad[b].n);
        char got[1024];
        int64_t eof = read_until_eof(fd, t0, hs_timeout + 2 * MW_NS_PER_S, got, sizeof got);
        svh_raw_close(f, fd);
        if (strncmp(got, "HTTP/1.1 400 ", 13) != 0) fail_msg("case %zu: answered \"%s\"", b, got);
        if (eof < 0 || eof > hs_timeout / 2)
            fail_msg("case %zu: closed after %.0f ms (handshake timeout %.0f ms)", b, (double)eof / 1e6,
                     (double)hs_timeout / 1e6);
    }
    char got[1024];
    int64_t eof = read_until_eof(slow, slow_t0, hs_timeout + 5 * MW_NS_PER_S, got, sizeof got);
    if (eof < hs_timeout - 50 * MW_NS_PER_MS)
        fail_msg("a partial request was closed after %.0f ms, before the %.0f ms handshake timeout (answer \"%s\")",
                 (double)eof / 1e6, (double)hs_timeout / 1e6, got);
    assert_true(strncmp(got, "HTTP/1.1 400", 12) != 0);
}
/* ---- ws:// Svc: the close code says why ---------------------------------------------- */

/* A WebSocket client on a raw socket: the upgrade request, then frames made
 * here. Fails the test unless the Svc answers 101. */
static int ws_raw_open(svh_t *f) {
    static const char req[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    int fd = svh_raw_connect(f);
    mw_test_raw_write(fd, req, sizeof req - 1);
    char head[1024];
    size_t n = 0;
    uint64_t dl = mw__deadline_in(NULL, SVH_WAIT_MS * MW_NS_PER_MS);
    while (n < 4 || memcmp(head + n - 4, "\r\n\r\n", 4) != 0) { /* byte by byte: nothing after the head */
        if (n == sizeof head - 1 || mw__deadline_passed(NULL, dl)) fail_msg("no upgrade response");
        struct pollfd pfd = {fd, POLLIN, 0};
        if (poll(&pfd, 1, 10) <= 0) continue;
        if (recv(fd, head + n, 1, 0) != 1) fail_msg("closed during the upgrade");
        n++;
    }
    head[n] = '\0';
    if (strncmp(head, "HTTP/1.1 101 ", 13) != 0) fail_msg("upgrade answered: %s", head);
    return fd;
}

/* Sends one message in one frame, masked with key 0 (the payload goes as is). */
static void ws_raw_send(int fd, int opcode, const void *p, size_t n) {
    uint8_t h[14];
    size_t hl = 0;
    h[hl++] = (uint8_t)(0x80 | opcode);
    if (n < 126) {
        h[hl++] = (uint8_t)(0x80 | n);
    } else {
        assert_true(n < 65536);
        h[hl++] = 0x80 | 126;
        h[hl++] = (uint8_t)(n >> 8);
        h[hl++] = (uint8_t)n;
    }
    memset(h + hl, 0, 4);
    hl += 4;
    mw_test_raw_write(fd, h, hl);
    mw_test_raw_write(fd, p, n);
}

/* Reads what the Svc sends until it closes TCP; returns the code of its
 * close frame (the first frame: the peer sent nothing valid before). */
static int ws_raw_close_code(int fd) {
    char got[512];
    int64_t eof = read_until_eof(fd, mw_now_ns(), SVH_WAIT_MS * MW_NS_PER_MS, got, sizeof got);
    if (eof < 0) fail_msg("the Svc did not close the connection");
    const uint8_t *b = (const uint8_t *)got;
    if (b[0] != 0x88 || (b[1] & 0x7f) < 2) fail_msg("first frame %02x %02x is not a close with a code", b[0], b[1]);
    return b[2] << 8 | b[3];
}

/* One bad message on a fresh WebSocket connection: the close code it draws,
 * and the reason on_close saw. */
static int ws_bad_message(svh_t *f, int opcode, const void *p, size_t n, int want_reason) {
    int before = svh_naccepted(f);
    int fd = ws_raw_open(f);
    mw_conn_id_t id = svh_wait_accepted(f, before + 1);
    ws_raw_send(fd, opcode, p, n);
    int code = ws_raw_close_code(fd);
    svh_raw_close(f, fd);
    svh_close_t c = svh_wait_closed(f, id);
    if (c.reason != want_reason)
        fail_msg("closed with %s (%s), want %s", mw_errname(c.reason), c.text, mw_errname(want_reason));
    return code;
}

static void ws_svc(svh_t *f, const char *serdes, uint32_t max_msg) {
    mw_svc_opts_t o;
    svh_svc_opts(f, &o);
    o.conn.serdes = serdes;
    if (max_msg) o.conn.max_msg = max_msg;
    svh_listen(f, "ws", &o);
}

/* text serdes: a string longer than its chars[8] field is a decode error
 * inside a valid message: 1007, not 1009 (message too big). */
static void test_svc_ws_string_too_long_for_its_field_closes_1007(void **state) {
    svh_t *f = *state;
    ws_svc(f, "text", 0);
    static const char msg[] = "{\"type\":\"all_kinds\",\"i8\":1,\"i16\":2,\"i32\":3,\"i64\":4,\"u8\":5,\"u16\":6,"
                              "\"u32\":7,\"u64\":8,\"f64\":1.5,\"flag\":true,\"sym\":\"MUCH-TOO-LONG-SYMBOL\","
                              "\"raw\":\"00010203\",\"side\":1}";
    assert_int_equal(ws_bad_message(f, 1, msg, sizeof msg - 1, MW_ETOOBIG), 1007);
}

/* Other decode errors inside a valid message: the same documented 1007. */
static void test_svc_ws_decode_errors_inside_a_message_close_1007(void **state) {
    svh_t *f = *state;
    ws_svc(f, "text", 0);
    static const char unknown[] = "{\"type\":\"no_such_message\"}";
    assert_int_equal(ws_bad_message(f, 1, unknown, sizeof unknown - 1, MW_ETAG), 1007);
    static const char garbage[] = "this is not JSON";
    assert_int_equal(ws_bad_message(f, 1, garbage, sizeof garbage - 1, MW_EPROTO), 1007);
}

/* A message over max_msg is what 1009 means. */
static void test_svc_ws_message_over_max_msg_closes_1009(void **state) {
    svh_t *f = *state;
    ws_svc(f, "fixed", 256);
    uint8_t big[1000];
    memset(big, 0x5a, sizeof big);
    assert_int_equal(ws_bad_message(f, 2, big, sizeof big, MW_ETOOBIG), 1009);
}

/* A binary message to the text serdes: the type of data it cannot accept,
 * 1003, even when its bytes are valid JSON. */
static void test_svc_ws_binary_message_to_the_text_serdes_closes_1003(void **state) {
    svh_t *f = *state;
    ws_svc(f, "text", 0);
    static const char json[] = "{\"type\":\"ping\",\"seq\":1,\"sent_ns\":2}";
    assert_int_equal(ws_bad_message(f, 2, json, sizeof json - 1, MW_ETYPE), 1003);
}

/* ==== end of the harness tests ==== */

#define T(fn, mode) {#fn "_" #mode, fn, env_setup, svh_teardown, &svh_mode_##mode}

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_svc_refuses_clients_over_max_connections, spin),
        T(test_svc_refuses_clients_over_max_connections, event),
        T(test_svc_stale_id_never_reaches_the_reused_slot, spin),
        T(test_svc_stale_id_never_reaches_the_reused_slot, event),
        T(test_svc_send_to_and_broadcast_reach_each_client, spin),
        T(test_svc_send_to_and_broadcast_reach_each_client, event),
        T(test_svc_close_conn_inside_on_msg_is_deferred, event),
        T(test_svc_close_conn_from_another_thread, event),
        T(test_svc_close_conn_inside_on_accept, spin),
        T(test_svc_close_conn_inside_on_accept, event),
        T(test_svc_send_to_backpressure_then_everything_arrives, spin),
        T(test_svc_send_to_backpressure_then_everything_arrives, blocking),
        T(test_svc_send_to_backpressure_then_everything_arrives, event),
        T(test_svc_event_without_workers_runs_on_the_callers_io, event),
        T(test_svc_peer_leaving_mid_message_is_closed_alone, spin),
        T(test_svc_peer_leaving_mid_message_is_closed_alone, event),
        T(test_svc_oversized_frame_closes_without_reserving, spin),
        T(test_svc_oversized_frame_closes_without_reserving, event),
        T(test_svc_garbage_text_closes_with_eproto, spin),
        T(test_svc_garbage_text_closes_with_eproto, event),
        T(test_svc_garbage_msgpack_closes_with_eproto, spin),
        T(test_svc_garbage_msgpack_closes_with_eproto, event),
        T(test_svc_random_bytes_close_only_that_connection, spin),
        T(test_svc_random_bytes_close_only_that_connection, event),
        T(test_svc_unknown_tag_closes_with_etag, spin),
        T(test_svc_unknown_tag_closes_with_etag, event),
        T(test_svc_bad_bool_closes_with_erange, spin),
        T(test_svc_bad_bool_closes_with_erange, event),
        T(test_svc_out_of_range_text_int_closes_with_erange, spin),
        T(test_svc_out_of_range_text_int_closes_with_erange, event),
        T(test_svc_recv_alternates_between_flooding_clients, spin),
        T(test_svc_recv_alternates_between_flooding_clients, blocking),
        T(test_svc_recv_does_not_starve_a_client_behind_a_busy_one, spin),
        T(test_svc_recv_does_not_starve_a_client_behind_a_busy_one, blocking),
        T(test_svc_recv_batch_delivers_runs_in_order, spin),
        T(test_svc_recv_batch_delivers_runs_in_order, blocking),
        T(test_svc_recv_batch_takes_turns_between_connections, spin),
        T(test_svc_recv_batch_takes_turns_between_connections, blocking),
        T(test_svc_recv_batch_close_inside_fn_ends_the_batch, spin),
        T(test_svc_recv_batch_close_inside_fn_ends_the_batch, blocking),
        T(test_svc_workers_keep_each_connection_on_one_thread, event),
        T(test_svc_poll_with_full_rx_buffer_keeps_the_connection, spin),
        T(test_svc_poll_with_full_rx_buffer_keeps_the_connection, blocking),
        /* harness tests (svc_harness.h) */
        SVH_T(test_svc_failed_send_does_not_drop_requests_buffered_before_the_peer_left, spin),
        SVH_T(test_svc_failed_send_does_not_drop_requests_buffered_before_the_peer_left, blocking),
        SVH_T(test_svc_event_delivers_a_resetting_peers_messages_before_on_close_with_replies_pending, event),
        SVH_T(test_svc_ws_blocking_delivers_good_frames_read_with_a_bad_one_then_closes, blocking),
        SVH_T(test_svc_busy_with_a_steady_sender_still_accepts_a_new_client, spin),
        SVH_T(test_svc_busy_with_a_steady_sender_still_accepts_a_new_client, blocking),
        SVH_T(test_svc_send_to_queued_on_a_callers_io_runs_safely_after_svc_free, event),
        SVH_T(test_svc_close_conn_queued_on_a_callers_io_runs_safely_after_svc_free, event),
        SVH_T(test_svc_blocking_second_client_does_not_strand_replies_queued_for_the_first, blocking),
        SVH_T(test_svc_blocking_zero_timeout_still_accepts_and_receives, blocking),
        SVH_T(test_svc_ws_answers_400_at_once_to_bytes_no_request_begins_with, event),
        SVH_T(test_svc_ws_answers_400_at_once_to_bytes_no_request_begins_with, blocking),
        SVH_T(test_svc_ws_string_too_long_for_its_field_closes_1007, event),
        SVH_T(test_svc_ws_decode_errors_inside_a_message_close_1007, event),
        SVH_T(test_svc_ws_message_over_max_msg_closes_1009, event),
        SVH_T(test_svc_ws_binary_message_to_the_text_serdes_closes_1003, event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
