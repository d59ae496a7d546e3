/* test_regressions.c - one test per bug found in review and fixed in
 * "Fixes from review". Each test replays the reviewer's scenario and fails on
 * the behaviour before the fix:
 *
 *   - a failed reply dropped the requests a leaving peer had sent before it;
 *   - an event Svc with replies pending flushed first and closed a resetting
 *     peer without delivering what it had sent;
 *   - a WebSocket protocol error dropped the good frames of the same read;
 *   - a busy spin/blocking Svc never looked at its listener;
 *   - requests queued on a caller's io used the Svc after mw_svc_free;
 *   - mw_io_in_thread was true on every thread of a caller's poll loop;
 *   - a blocking TLS Clt's waiting receiver held the TLS lock, starving its
 *     split sender;
 *   - a blocking Svc leaving solo mode forgot replies queued while solo;
 *   - a blocking Svc with timeout_ns = 0 never polled (never accepted);
 *   - a sleeping idle strategy overshot recv_busywait_timeout 64 times over.
 *
 * Servers bind 127.0.0.1 port 0. Waits poll a condition with a deadline;
 * threads a test starts are stopped and joined by the fixture even when an
 * assertion ends the test early.
 */
#include "mw_test.h"
#include "test_proto.h"

#include "mw_clock.h"
#include "mw_clt.h"
#include "mw_idle.h"
#include "mw_io.h"
#include "mw_serdes.h"
#include "mw_svc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#define WAIT_MS 5000
#define MAX_CONNS 8
#define MAX_MSGS 64
#define MAX_THREADS 4
#define FILL_LIMIT 100000 /* bound on "send until the tx buffer is full" loops */

/* ---- fixture: a Svc, its peers, threads, and what the callbacks saw ---------- */

typedef struct msg_rec {
    mw_conn_id_t id;
    uint64_t seq;
    uint64_t order;
} msg_rec_t;

typedef struct close_rec {
    mw_conn_id_t id;
    int reason;
    uint64_t order;
    pthread_t th;
    char text[MW_ERR_TEXT_MAX];
} close_rec_t;

typedef struct fx {
    mw_mode_t mode;
    mw_svc_t *svc;
    mw_io_t *io; /* event mode, workers = 0: the caller's io */
    int port;
    char url[96];

    pthread_mutex_t mu;
    uint64_t order; /* one sequence over messages and closes */
    mw_conn_id_t accepted[MAX_CONNS];
    pthread_t accept_th[MAX_CONNS];
    int naccepted;
    msg_rec_t msgs[MAX_MSGS];
    int nmsgs;
    close_rec_t closes[MAX_CONNS];
    int ncloses;

    mw_clt_t *clts[MAX_CONNS];
    int nclts;
    int fds[MAX_CONNS];
    int nfds;
    pthread_t th[MAX_THREADS];
    bool th_live[MAX_THREADS];
    atomic_bool stop; /* every thread a test starts ends when it is set */

    /* event Svc: on_accept fills the new connection's tx side, then waits for peer_gone */
    bool fill_on_accept;
    atomic_int fill_count, fill_last;
    atomic_bool filled, peer_gone;
    /* a job posted to the caller's io that holds its thread until released */
    atomic_bool blocker_running, release;
    /* a caller's poll loop on its own thread */
    atomic_long polls;
    atomic_bool poller_in_thread;
    /* steady senders */
    atomic_int flooders, flooders_done, flooder_err;
    atomic_bool go; /* the steady senders start sending */
    /* split TLS Clt */
    mw_clt_t *split;
    atomic_bool rx_waiting;
    atomic_int rx_tid;
    atomic_int tx_rc;
    atomic_llong tx_ns;
    char dir[256]; /* temporary directory (TLS certificate) */
    char cert[300], key[300];
} fx_t;

static mw_mode_t mode_spin = MW_MODE_SPIN, mode_blocking = MW_MODE_BLOCKING, mode_event = MW_MODE_EVENT;

static int fx_setup(void **state) {
    fx_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    f->mode = *state ? *(mw_mode_t *)*state : MW_MODE_SPIN;
    pthread_mutex_init(&f->mu, NULL);
    *state = f;
    return 0;
}

/* Starts a thread that the fixture joins (after setting stop). */
static pthread_t fx_spawn(fx_t *f, void *(*fn)(void *), void *ud) {
    for (int i = 0; i < MAX_THREADS; i++) {
        if (f->th_live[i]) continue;
        if (pthread_create(&f->th[i], NULL, fn, ud) != 0) fail_msg("pthread_create failed");
        f->th_live[i] = true;
        return f->th[i];
    }
    fail_msg("too many threads");
    return pthread_self();
}

static void fx_join_all(fx_t *f) {
    for (int i = 0; i < MAX_THREADS; i++) {
        if (!f->th_live[i]) continue;
        pthread_join(f->th[i], NULL);
        f->th_live[i] = false;
    }
}

static int fx_teardown(void **state) {
    fx_t *f = *state;
    atomic_store(&f->stop, true);
    atomic_store(&f->release, true);
    atomic_store(&f->peer_gone, true);
    fx_join_all(f);
    if (f->io) mw_io_stop(f->io); /* a Svc on a caller's io is freed while it does not run */
    mw_svc_free(f->svc);
    mw_io_free(f->io);
    for (int i = 0; i < f->nclts; i++) mw_clt_free(f->clts[i]);
    for (int i = 0; i < f->nfds; i++)
        if (f->fds[i] >= 0) close(f->fds[i]);
    if (f->dir[0]) mw_tmpdir_remove(f->dir);
    pthread_mutex_destroy(&f->mu);
    free(f);
    return 0;
}

/* ---- recording ------------------------------------------------------------------ */

static void rec_msg(fx_t *f, mw_conn_id_t id, const mw_schema_t *sch, const void *msg) {
    uint64_t seq = sch->tag == ping_TAG ? ((const ping_t *)msg)->seq : UINT64_MAX;
    pthread_mutex_lock(&f->mu);
    if (f->nmsgs < MAX_MSGS) f->msgs[f->nmsgs++] = (msg_rec_t){id, seq, f->order++};
    pthread_mutex_unlock(&f->mu);
}

static void fill_tx(fx_t *f, mw_svc_t *s, mw_conn_id_t id) {
    ping_t p = {0};
    int n = 0, r;
    while ((r = mw_svc_send_to(s, id, ping_schema(), &p)) == 0 && n < FILL_LIMIT) {
        n++;
        p.seq++;
    }
    atomic_store(&f->fill_count, n);
    atomic_store(&f->fill_last, r);
}

static void on_accept(mw_svc_t *s, mw_conn_id_t id, void *ud) {
    fx_t *f = ud;
    pthread_mutex_lock(&f->mu);
    if (f->naccepted < MAX_CONNS) {
        f->accept_th[f->naccepted] = pthread_self();
        f->accepted[f->naccepted++] = id;
    }
    pthread_mutex_unlock(&f->mu);
    if (!f->fill_on_accept) return;
    /* Replies pending (write interest armed), and the worker stays busy
     * while the peer sends and leaves: both events are there at once. */
    fill_tx(f, s, id);
    atomic_store(&f->filled, true);
    uint64_t dl = mw_deadline_in(NULL, WAIT_MS * MW_NS_PER_MS);
    while (!atomic_load(&f->peer_gone) && !mw_deadline_passed(NULL, dl)) sched_yield();
}

static void on_msg(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg, void *ud) {
    (void)s;
    rec_msg(ud, id, sch, msg);
}

static void on_close(mw_svc_t *s, mw_conn_id_t id, int reason, void *ud) {
    fx_t *f = ud;
    pthread_mutex_lock(&f->mu);
    if (f->ncloses < MAX_CONNS) {
        close_rec_t *c = &f->closes[f->ncloses++];
        c->id = id;
        c->reason = reason;
        c->order = f->order++;
        c->th = pthread_self();
        snprintf(c->text, sizeof c->text, "%s", mw_svc_conn_error(s, id));
    }
    pthread_mutex_unlock(&f->mu);
}

static int naccepted(fx_t *f) {
    pthread_mutex_lock(&f->mu);
    int n = f->naccepted;
    pthread_mutex_unlock(&f->mu);
    return n;
}

static mw_conn_id_t accepted_id(fx_t *f, int i) {
    pthread_mutex_lock(&f->mu);
    mw_conn_id_t id = f->accepted[i];
    pthread_mutex_unlock(&f->mu);
    return id;
}

/* The close record of id, if there is one. */
static bool find_close(fx_t *f, mw_conn_id_t id, close_rec_t *out) {
    bool found = false;
    pthread_mutex_lock(&f->mu);
    for (int i = 0; i < f->ncloses && !found; i++) {
        if (f->closes[i].id != id) continue;
        if (out) *out = f->closes[i];
        found = true;
    }
    pthread_mutex_unlock(&f->mu);
    return found;
}

/* Asserts that id delivered exactly pings first..last, in order, all
 * before its close (order < before). */
static void expect_pings(fx_t *f, mw_conn_id_t id, uint64_t first, uint64_t last, uint64_t before) {
    pthread_mutex_lock(&f->mu);
    uint64_t want = first;
    int n = 0;
    for (int i = 0; i < f->nmsgs; i++) {
        msg_rec_t m = f->msgs[i];
        if (m.id != id) continue;
        n++;
        if (m.seq != want || m.order > before) {
            pthread_mutex_unlock(&f->mu);
            fail_msg("message %d from %#" PRIx64 ": ping %" PRIu64 " (order %" PRIu64 "), want ping %" PRIu64
                     " before order %" PRIu64, n, id, m.seq, m.order, want, before);
        }
        want++;
    }
    pthread_mutex_unlock(&f->mu);
    if (want != last + 1)
        fail_msg("the Svc delivered %d of pings %" PRIu64 "..%" PRIu64 " from %#" PRIx64, n, first, last, id);
}

/* ---- Svc, peers, waits -------------------------------------------------------- */

static void svc_opts(fx_t *f, mw_svc_opts_t *o) {
    mw_svc_opts_init(o);
    o->mode = f->mode;
    o->on_accept = on_accept;
    o->on_msg = on_msg;
    o->on_close = on_close;
    o->ud = f;
}

/* Listens on scheme://127.0.0.1:0 and sets f->port and f->url. */
static void svc_listen(fx_t *f, const char *scheme, const mw_svc_opts_t *o) {
    const char *path = strncmp(scheme, "ws", 2) == 0 ? "/" : "";
    char url[96];
    snprintf(url, sizeof url, "%s://127.0.0.1:0%s", scheme, path);
    mw_err_t err = {0};
    int r = mw_svc_listen(&f->svc, url, &test_protocol, o, &err);
    if (r != 0) fail_msg("svc listen %s: %s: %s", url, mw_errname(r), mw_err_text(&err));
    f->port = mw_svc_port(f->svc);
    assert_true(f->port > 0);
    snprintf(f->url, sizeof f->url, "%s://127.0.0.1:%d%s", scheme, f->port, path);
}

/* Connects a Clt to the Svc (o NULL: spin mode, defaults). */
static mw_clt_t *clt_connect(fx_t *f, const mw_clt_opts_t *o) {
    mw_clt_opts_t def;
    if (!o) {
        mw_clt_opts_init(&def);
        o = &def;
    }
    mw_clt_t *c = NULL;
    mw_err_t err = {0};
    int r = mw_clt_connect(&c, f->url, &test_protocol, o, &err);
    if (r != 0) fail_msg("clt connect %s: %s: %s", f->url, mw_errname(r), mw_err_text(&err));
    assert_true(f->nclts < MAX_CONNS);
    f->clts[f->nclts++] = c;
    return c;
}

/* Frees a Clt before the fixture would. */
static void clt_drop(fx_t *f, mw_clt_t *c) {
    for (int i = 0; i < f->nclts; i++)
        if (f->clts[i] == c) f->clts[i] = f->clts[--f->nclts];
    mw_clt_free(c);
}

static void clt_send_ping(mw_clt_t *c, uint64_t seq) {
    ping_t p = {.seq = seq, .sent_ns = seq * 3};
    int r = mw_clt_send(c, ping_schema(), &p);
    if (r != 0) fail_msg("clt send ping %" PRIu64 ": %s: %s", seq, mw_errname(r), mw_clt_last_error(c));
}

/* Spin/blocking: one mw_svc_recv on the test thread, recording a message. */
static int svc_pump(fx_t *f) {
    test_msg_t m;
    mw_conn_id_t id;
    const mw_schema_t *sch;
    int r = mw_svc_recv(f->svc, &id, &sch, &m, sizeof m);
    if (r == 0) rec_msg(f, id, sch, &m);
    else if (r != MW_EAGAIN && r != MW_ETIMEDOUT) fail_msg("svc recv: %s", mw_errname(r));
    return r;
}

typedef struct conns_cond { fx_t *f; uint32_t want; bool pump; } conns_cond_t;
static bool conns_reached(void *ud) {
    conns_cond_t *c = ud;
    if (c->pump) svc_pump(c->f);
    return mw_svc_conn_count(c->f->svc) >= c->want;
}

/* Drives the Svc from the test thread until it holds `want` connections. */
static void pump_until_conns(fx_t *f, uint32_t want) {
    conns_cond_t c = {f, want, true};
    if (!mw_wait_until(conns_reached, &c, WAIT_MS))
        fail_msg("the Svc holds %u connections, want %u", mw_svc_conn_count(f->svc), want);
}

typedef struct count_cond { fx_t *f; int want; } count_cond_t;
static bool accepts_reached(void *ud) {
    count_cond_t *c = ud;
    return naccepted(c->f) >= c->want;
}

/* Event mode / a Svc thread: waits until on_accept ran n times; returns the nth id. */
static mw_conn_id_t wait_accepted(fx_t *f, int n) {
    count_cond_t c = {f, n};
    if (!mw_wait_until(accepts_reached, &c, WAIT_MS)) fail_msg("%d accepted, want %d", naccepted(f), n);
    return accepted_id(f, n - 1);
}

typedef struct close_cond { fx_t *f; mw_conn_id_t id; } close_cond_t;
static bool closed_now(void *ud) {
    close_cond_t *c = ud;
    return find_close(c->f, c->id, NULL);
}

static close_rec_t wait_closed(fx_t *f, mw_conn_id_t id) {
    close_cond_t c = {f, id};
    if (!mw_wait_until(closed_now, &c, WAIT_MS)) fail_msg("connection %#" PRIx64 " was not closed", id);
    close_rec_t r;
    find_close(f, id, &r);
    return r;
}

static bool flag_set(void *ud) { return atomic_load((atomic_bool *)ud); }

static void wait_flag(atomic_bool *flag, const char *what) {
    if (!mw_wait_until(flag_set, flag, WAIT_MS)) fail_msg("timed out waiting for %s", what);
}

/* ---- raw peers ---------------------------------------------------------------- */

static int raw_connect(fx_t *f) { /* tracked: the fixture closes what a test leaves open */
    int fd = mw_test_raw_connect(f->port);
    assert_true(f->nfds < MAX_CONNS);
    f->fds[f->nfds++] = fd;
    return fd;
}

static void raw_close(fx_t *f, int fd) {
    for (int i = 0; i < f->nfds; i++)
        if (f->fds[i] == fd) f->fds[i] = -1;
    close(fd);
}


/* A ping encoded with the default ("fixed") serdes, no framing. */
static size_t encode_ping(uint64_t seq, uint8_t *out, size_t cap) {
    mw_serdes_t sd;
    assert_int_equal(mw_serdes_init(&sd, "fixed", 0), 0);
    ping_t p = {.seq = seq, .sent_ns = seq * 3};
    ssize_t n = ping_encode(&sd, &p, out, cap);
    mw_serdes_fini(&sd);
    assert_true(n > 0);
    return (size_t)n;
}

/* A ping framed as on TCP: u32 big-endian length, then the payload. */
static size_t tcp_frame_ping(uint64_t seq, uint8_t *out, size_t cap) {
    assert_true(cap > 4);
    size_t n = encode_ping(seq, out + 4, cap - 4);
    out[0] = (uint8_t)(n >> 24), out[1] = (uint8_t)(n >> 16), out[2] = (uint8_t)(n >> 8), out[3] = (uint8_t)n;
    return n + 4;
}

/* A ping as a client's WebSocket frame: FIN + binary, masked with key 0. */
static size_t ws_frame_ping(uint64_t seq, uint8_t *out, size_t cap) {
    assert_true(cap > 6);
    size_t n = encode_ping(seq, out + 6, cap - 6);
    assert_true(n < 126);
    out[0] = 0x82;
    out[1] = (uint8_t)(0x80 | n);
    memset(out + 2, 0, 4);
    return n + 6;
}

/* Our FIN reached the peer's kernel (it acknowledged it). */
static bool fin_acked(void *ud) {
    int fd = *(int *)ud;
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_state == TCP_FIN_WAIT2;
}

static void busy_for(int64_t ns) {
    uint64_t dl = mw_deadline_in(NULL, ns);
    while (!mw_deadline_passed(NULL, dl)) mw_cpu_relax();
}

/* ---- spin/blocking Svc: a failed reply loses nothing the peer sent ------------ */

/* A client sends 5 requests and leaves. The Svc answers each as it reads it:
 * the first answer reaches the closed socket, which resets the connection,
 * so a later answer fails (EPIPE). Requests 3-5 were already received and
 * must still be delivered, before on_close. */
static void test_svc_failed_send_does_not_drop_requests_buffered_before_the_peer_left(void **state) {
    fx_t *f = *state;
    mw_svc_opts_t o;
    svc_opts(f, &o);
    o.timeout_ns = 10 * MW_NS_PER_MS;
    svc_listen(f, "tcp", &o);
    int fd = raw_connect(f);
    pump_until_conns(f, 1);
    mw_conn_id_t id = accepted_id(f, 0);

    uint8_t wire[512];
    size_t n = 0;
    for (uint64_t seq = 1; seq <= 5; seq++) n += tcp_frame_ping(seq, wire + n, sizeof wire - n);
    mw_test_raw_write(fd, wire, n);
    assert_int_equal(shutdown(fd, SHUT_WR), 0);
    if (!mw_wait_until(fin_acked, &fd, WAIT_MS)) fail_msg("the Svc's kernel did not acknowledge our FIN");
    raw_close(f, fd); /* nothing unread: the next bytes the Svc sends draw a reset */

    int got = 0, first_failed = 0;
    uint64_t dl = mw_deadline_in(NULL, WAIT_MS * MW_NS_PER_MS);
    while (!find_close(f, id, NULL)) {
        if (mw_deadline_passed(NULL, dl)) fail_msg("no on_close after %d requests", got);
        test_msg_t m;
        mw_conn_id_t from;
        const mw_schema_t *sch;
        int r = mw_svc_recv(f->svc, &from, &sch, &m, sizeof m);
        if (r == MW_EAGAIN || r == MW_ETIMEDOUT) continue;
        if (r != 0) fail_msg("svc recv: %s", mw_errname(r));
        assert_int_equal(from, id);
        rec_msg(f, from, sch, &m);
        got++;
        int s = mw_svc_send_to(f->svc, from, sch, &m);
        if (s < 0 && s != MW_EAGAIN && !first_failed) first_failed = got;
    }
    close_rec_t c;
    assert_true(find_close(f, id, &c));
    expect_pings(f, id, 1, 5, c.order);
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
    fx_t *f = *state;
    mw_svc_opts_t o;
    svc_opts(f, &o);
    o.workers = 1;
    o.conn.max_msg = 1024;
    o.conn.tx_buf = o.conn.rx_buf = 8192;
    o.tcp.sndbuf = 4096;
    f->fill_on_accept = true;
    svc_listen(f, "tcp", &o);

    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    co.tcp.rcvbuf = 4096;
    mw_clt_t *c = clt_connect(f, &co);
    wait_flag(&f->filled, "on_accept to fill the tx side");
    assert_true(atomic_load(&f->fill_count) > 0);
    assert_int_equal(atomic_load(&f->fill_last), MW_EAGAIN);
    mw_conn_id_t id = accepted_id(f, 0);

    for (uint64_t seq = 1; seq <= 5; seq++) clt_send_ping(c, seq);
    clt_drop(f, c); /* replies unread: the kernel resets the connection */
    atomic_store(&f->peer_gone, true);

    close_rec_t cr = wait_closed(f, id);
    expect_pings(f, id, 1, 5, cr.order);
}

/* ---- ws:// blocking Svc: good frames before a bad one are delivered ----------- */

static void *svc_thread(void *ud) {
    fx_t *f = ud;
    uint64_t dl = mw_deadline_in(NULL, 30 * MW_NS_PER_S);
    while (!atomic_load(&f->stop) && !mw_deadline_passed(NULL, dl)) {
        test_msg_t m;
        mw_conn_id_t id;
        const mw_schema_t *sch;
        if (mw_svc_recv(f->svc, &id, &sch, &m, sizeof m) == 0) rec_msg(f, id, sch, &m);
    }
    return NULL;
}

typedef struct msg_cond { fx_t *f; mw_conn_id_t id; uint64_t seq; } msg_cond_t;
static bool msg_seen(void *ud) {
    msg_cond_t *c = ud;
    pthread_mutex_lock(&c->f->mu);
    bool found = false;
    for (int i = 0; i < c->f->nmsgs; i++) found |= c->f->msgs[i].id == c->id && c->f->msgs[i].seq == c->seq;
    pthread_mutex_unlock(&c->f->mu);
    return found;
}

/* Drives the Svc from the test thread until ping c->seq from the first
 * accepted connection was delivered. */
static bool pumped_msg(void *ud) {
    msg_cond_t *c = ud;
    svc_pump(c->f);
    if (!c->id && naccepted(c->f) > 0) c->id = accepted_id(c->f, 0);
    return c->id && msg_seen(c);
}

/* Two clients (so the Svc reads through epoll, not solo). Client A writes
 * three good frames and a bad one (unmasked) in one write: the three are
 * delivered, then A is closed with MW_EPROTO; B is untouched. */
static void test_svc_ws_blocking_delivers_good_frames_read_with_a_bad_one_then_closes(void **state) {
    fx_t *f = *state;
    mw_svc_opts_t o;
    svc_opts(f, &o);
    o.timeout_ns = 20 * MW_NS_PER_MS;
    svc_listen(f, "ws", &o);
    fx_spawn(f, svc_thread, f); /* the handshakes need the Svc running */
    mw_clt_t *a = clt_connect(f, NULL);
    mw_conn_id_t id_a = wait_accepted(f, 1);
    mw_clt_t *b = clt_connect(f, NULL);
    mw_conn_id_t id_b = wait_accepted(f, 2);

    uint8_t wire[256];
    size_t n = 0;
    for (uint64_t seq = 1; seq <= 3; seq++) n += ws_frame_ping(seq, wire + n, sizeof wire - n);
    const uint8_t bad[] = {0x82, 0x01, 0x00}; /* a client frame without a mask */
    memcpy(wire + n, bad, sizeof bad);
    n += sizeof bad;
    mw_test_raw_write(mw_stream_fd(mw_clt_conn(a)->stream), wire, n);

    close_rec_t cr = wait_closed(f, id_a);
    if (cr.reason != MW_EPROTO) fail_msg("A closed with %s (%s), want MW_EPROTO", mw_errname(cr.reason), cr.text);
    expect_pings(f, id_a, 1, 3, cr.order);

    clt_send_ping(b, 7);
    msg_cond_t mc = {f, id_b, 7};
    if (!mw_wait_until(msg_seen, &mc, WAIT_MS)) fail_msg("B's ping was not delivered after A was closed");
    assert_false(find_close(f, id_b, NULL));
}

/* ---- spin/blocking Svc: a steady sender does not keep new clients out --------- */

static void *flooder(void *ud) {
    fx_t *f = ud;
    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    mw_idle_init_yield(&co.idle);
    mw_clt_t *c = NULL;
    if (mw_clt_connect(&c, f->url, &test_protocol, &co, NULL) != 0) {
        atomic_fetch_add(&f->flooder_err, 1);
        atomic_fetch_add(&f->flooders_done, 1);
        return NULL;
    }
    ping_t p = {0};
    uint64_t dl = mw_deadline_in(NULL, 30 * MW_NS_PER_S);
    while (!atomic_load(&f->go) && !atomic_load(&f->stop) && !mw_deadline_passed(NULL, dl)) sched_yield();
    while (!atomic_load(&f->stop) && !mw_deadline_passed(NULL, dl)) {
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
static int busy_recv(fx_t *f) {
    int r = svc_pump(f);
    if (r == 0) busy_for(20 * MW_NS_PER_US);
    return r;
}

typedef struct steady { fx_t *f; uint32_t want; long msgs; } steady_t;
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
    fx_t *f = ud;
    svc_pump(f);
    return atomic_load(&f->flooders_done) == atomic_load(&f->flooders);
}

/* Spin: one steady sender; blocking: two (one would be served solo). Once
 * they are connected they send without pause, and the Svc is kept busy:
 * every receive returns a message. A new client must still be accepted
 * within 1 s. */
static void test_svc_busy_with_a_steady_sender_still_accepts_a_new_client(void **state) {
    fx_t *f = *state;
    mw_svc_opts_t o;
    svc_opts(f, &o);
    o.timeout_ns = 10 * MW_NS_PER_MS;
    svc_listen(f, "tcp", &o);
    uint32_t nflood = f->mode == MW_MODE_BLOCKING ? 2 : 1;
    atomic_store(&f->flooders, (int)nflood);
    for (uint32_t i = 0; i < nflood; i++) fx_spawn(f, flooder, f);
    pump_until_conns(f, nflood); /* all accepted before the traffic starts */
    atomic_store(&f->go, true);
    steady_t st = {f, nflood + 1, 0};
    if (!mw_wait_until(steady_msgs, &st, WAIT_MS)) fail_msg("only %ld messages from the steady senders", st.msgs);
    assert_int_equal(atomic_load(&f->flooder_err), 0);

    clt_connect(f, NULL); /* completes from the listen backlog */
    uint64_t t0 = mw_now_ns();
    st.msgs = 0;
    bool ok = mw_wait_until(steady_conns, &st, 1000);
    double ms = (double)(mw_now_ns() - t0) / 1e6;
    if (!ok) fail_msg("new client not accepted in %.0f ms (%ld messages received meanwhile)", ms, st.msgs);

    atomic_store(&f->stop, true);
    if (!mw_wait_until(flooders_done, f, WAIT_MS)) fail_msg("steady senders did not stop");
    fx_join_all(f);
    assert_int_equal(atomic_load(&f->flooder_err), 0);
}

/* ---- event Svc on a caller's io: queued requests outlive mw_svc_free ---------- */

/* Posted to the io: holds its thread until released, so what other threads
 * post meanwhile stays queued. */
static void blocker(void *ud) {
    fx_t *f = ud;
    atomic_store(&f->blocker_running, true);
    uint64_t dl = mw_deadline_in(NULL, WAIT_MS * MW_NS_PER_MS);
    while (!atomic_load(&f->release) && !mw_deadline_passed(NULL, dl)) sched_yield();
}

static bool clt_sees_closed(void *ud) {
    mw_clt_t *c = ud;
    test_msg_t m;
    const mw_schema_t *s;
    int r;
    while ((r = mw_clt_recv(c, &s, &m, sizeof m)) == 0) {}
    return r != MW_EAGAIN;
}

/* workers = 0 on a caller's io that runs on its own thread. While that
 * thread is busy, another thread sends to a connection whose socket is full
 * (queues a write-arming request) or closes it (queues a close request).
 * The io is stopped, the Svc freed, then mw_io_free runs the queued request:
 * it must find the Svc gone, not freed memory. */
static void queued_request_after_svc_free(fx_t *f, bool send) {
    mw_err_t err = {0};
    if (mw_io_new(&f->io, NULL, &err) != 0) fail_msg("io: %s", mw_err_text(&err));
    assert_int_equal(mw_io_start(f->io, NULL), 0);
    mw_svc_opts_t o;
    svc_opts(f, &o);
    o.workers = 0;
    o.io = f->io;
    o.conn.max_msg = 1024;
    o.conn.tx_buf = o.conn.rx_buf = 8192;
    o.tcp.sndbuf = 4096;
    svc_listen(f, "tcp", &o);
    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    co.tcp.rcvbuf = 4096;
    mw_clt_t *c = clt_connect(f, &co);
    mw_conn_id_t id = wait_accepted(f, 1);

    assert_int_equal(mw_io_post(f->io, blocker, f), 0);
    wait_flag(&f->blocker_running, "the io thread to run the blocker");
    assert_false(mw_io_in_thread(f->io));
    if (send) {
        fill_tx(f, f->svc, id);
        assert_true(atomic_load(&f->fill_count) > 0);
        assert_int_equal(atomic_load(&f->fill_last), MW_EAGAIN);
    } else {
        assert_int_equal(mw_svc_close_conn(f->svc, id), 0);
        assert_false(find_close(f, id, NULL)); /* queued, not run here */
    }
    mw_io_break(f->io);
    atomic_store(&f->release, true);
    mw_io_stop(f->io);
    mw_svc_free(f->svc);
    f->svc = NULL;
    mw_io_free(f->io); /* runs the queued request */
    f->io = NULL;

    assert_false(find_close(f, id, NULL)); /* closed by mw_svc_free: no callback */
    if (!mw_wait_until(clt_sees_closed, c, WAIT_MS)) fail_msg("the client did not see its connection end");
}

static void test_svc_send_to_queued_on_a_callers_io_runs_safely_after_svc_free(void **state) {
    queued_request_after_svc_free(*state, true);
}

static void test_svc_close_conn_queued_on_a_callers_io_runs_safely_after_svc_free(void **state) {
    queued_request_after_svc_free(*state, false);
}

/* ---- caller's poll loop: only the polling thread is the io thread ------------- */

static void *poll_loop(void *ud) {
    fx_t *f = ud;
    uint64_t dl = mw_deadline_in(NULL, 30 * MW_NS_PER_S);
    while (!atomic_load(&f->stop) && !mw_deadline_passed(NULL, dl)) {
        mw_io_poll(f->io, MW_NS_PER_MS);
        if (atomic_load(&f->polls) == 0) atomic_store(&f->poller_in_thread, mw_io_in_thread(f->io));
        atomic_fetch_add(&f->polls, 1);
    }
    return NULL;
}

static bool polled(void *ud) { return atomic_load(&((fx_t *)ud)->polls) > 0; }

/* A thread drives the io with mw_io_poll (no mw_io_start, no mw_io_run).
 * mw_io_in_thread is true there and false on the test thread, so a
 * close_conn from the test thread is handed to the poller: on_close runs on
 * the polling thread. */
static void test_io_in_thread_is_false_off_the_thread_polling_a_callers_loop(void **state) {
    fx_t *f = *state;
    mw_err_t err = {0};
    if (mw_io_new(&f->io, NULL, &err) != 0) fail_msg("io: %s", mw_err_text(&err));
    mw_svc_opts_t o;
    svc_opts(f, &o);
    o.workers = 0;
    o.io = f->io;
    svc_listen(f, "tcp", &o);
    pthread_t poller = fx_spawn(f, poll_loop, f);
    if (!mw_wait_until(polled, f, WAIT_MS)) fail_msg("the poll thread did not poll");

    assert_false(mw_io_in_thread(f->io));
    assert_true(atomic_load(&f->poller_in_thread));

    mw_clt_t *c = clt_connect(f, NULL);
    mw_conn_id_t id = wait_accepted(f, 1);
    pthread_mutex_lock(&f->mu);
    bool accepted_on_poller = pthread_equal(f->accept_th[0], poller);
    pthread_mutex_unlock(&f->mu);
    assert_true(accepted_on_poller);
    assert_int_equal(mw_svc_close_conn(f->svc, id), 0);
    close_rec_t cr = wait_closed(f, id);
    assert_int_equal(cr.reason, MW_ESTATE);
    assert_true(pthread_equal(cr.th, poller));
    if (!mw_wait_until(clt_sees_closed, c, WAIT_MS)) fail_msg("the client did not see its connection end");
}

/* ---- tls:// blocking Clt: split sender and receiver do not block each other --- */

static const char tls_cnf[] =
    "[req]\n"
    "distinguished_name = dn\n"
    "prompt = no\n"
    "[dn]\n"
    "CN = localhost\n";
static const char tls_gen_sh[] =
    "set -e\n"
    "openssl req -config x.cnf -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \\\n"
    "    -keyout key.pem -out cert.pem -days 30 -subj /CN=localhost\n";

static int tls_setup(void **state) {
    if (fx_setup(state) != 0) return -1;
    fx_t *f = *state;
    const char *const files[][2] = {{"x.cnf", tls_cnf}, {"gen.sh", tls_gen_sh}};
    if (mw_tmpdir_script(f->dir, sizeof f->dir, "regress", files, 2, "gen.sh") < 0) {
        fx_teardown(state); /* removes the directory */
        return -1;
    }
    snprintf(f->cert, sizeof f->cert, "%s/cert.pem", f->dir);
    snprintf(f->key, sizeof f->key, "%s/key.pem", f->dir);
    return 0;
}

static void *echo_thread(void *ud) {
    fx_t *f = ud;
    uint64_t dl = mw_deadline_in(NULL, 30 * MW_NS_PER_S);
    while (!atomic_load(&f->stop) && !mw_deadline_passed(NULL, dl)) {
        test_msg_t m;
        mw_conn_id_t id;
        const mw_schema_t *sch;
        if (mw_svc_recv(f->svc, &id, &sch, &m, sizeof m) == 0) mw_svc_send_to(f->svc, id, sch, &m);
        else sched_yield();
    }
    return NULL;
}

/* The thread is asleep in the kernel (state S in /proc). */
static bool thread_sleeping(int tid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    FILE *fp = fopen(path, "r");
    if (!fp) return false;
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] == 'S';
}

static bool receiver_waiting(void *ud) {
    fx_t *f = ud;
    return atomic_load(&f->rx_waiting) && thread_sleeping(atomic_load(&f->rx_tid));
}

static void *split_sender(void *ud) {
    fx_t *f = ud;
    /* Send only once the receiver sleeps inside its recv. */
    mw_wait_until(receiver_waiting, f, WAIT_MS);
    ping_t p = {.seq = 42, .sent_ns = 126};
    uint64_t t0 = mw_now_ns();
    atomic_store(&f->tx_rc, mw_clt_sender_send(mw_clt_sender(f->split), ping_schema(), &p));
    atomic_store(&f->tx_ns, (long long)(mw_now_ns() - t0));
    return NULL;
}

/* Blocking Clt over tls:// split into a receiver (waiting in recv first) and
 * a sender: the send goes through and the echo arrives within 1 s, not
 * after the receiver's 2 s timeout. */
static void test_clt_tls_blocking_split_sender_is_not_held_by_a_waiting_receiver(void **state) {
    fx_t *f = *state;
    mw_svc_opts_t o;
    svc_opts(f, &o);
    o.tr.tls.cert_file = f->cert;
    o.tr.tls.key_file = f->key;
    svc_listen(f, "tls", &o);
    fx_spawn(f, echo_thread, f);

    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    co.mode = MW_MODE_BLOCKING;
    co.timeout_ns = 2 * MW_NS_PER_S;
    co.tr.tls.insecure_skip_verify = true;
    f->split = clt_connect(f, &co);
    atomic_store(&f->tx_rc, 1);
    fx_spawn(f, split_sender, f);

    test_msg_t m;
    const mw_schema_t *sch;
    atomic_store(&f->rx_tid, (int)syscall(SYS_gettid));
    atomic_store(&f->rx_waiting, true);
    uint64_t t0 = mw_now_ns();
    int r = mw_clt_receiver_recv(mw_clt_receiver(f->split), &sch, &m, sizeof m);
    double ms = (double)(mw_now_ns() - t0) / 1e6;
    atomic_store(&f->stop, true);
    fx_join_all(f);
    if (r != 0) fail_msg("receiver: %s after %.0f ms (%s)", mw_errname(r), ms, mw_clt_last_error(f->split));
    assert_int_equal(sch->tag, ping_TAG);
    assert_int_equal(m.ping.seq, 42);
    if (ms >= 1000) fail_msg("the echo took %.0f ms", ms);
    assert_int_equal(atomic_load(&f->tx_rc), 0);
    if (atomic_load(&f->tx_ns) >= MW_NS_PER_S) fail_msg("the send took %lld ms", atomic_load(&f->tx_ns) / MW_NS_PER_MS);
}

/* ---- blocking Svc: leaving solo mode keeps the replies queued while solo ------ */

typedef struct drain { fx_t *f; mw_clt_t *c; int got, want; bool bad; } drain_t;
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
    svc_pump(d->f);
    return false;
}

/* One client: the Svc serves it solo and queues replies behind its full
 * socket. A second client arrives (the Svc leaves solo mode); then the
 * first client reads: every queued reply must reach it. */
static void test_svc_blocking_second_client_does_not_strand_replies_queued_for_the_first(void **state) {
    fx_t *f = *state;
    mw_svc_opts_t o;
    svc_opts(f, &o);
    o.timeout_ns = MW_NS_PER_MS;
    o.conn.max_msg = 1024;
    o.conn.tx_buf = o.conn.rx_buf = 8192;
    o.tcp.sndbuf = 4096;
    svc_listen(f, "tcp", &o);
    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    co.tcp.rcvbuf = 4096;
    mw_clt_t *a = clt_connect(f, &co);
    clt_send_ping(a, 1);
    msg_cond_t mc = {f, 0, 1};
    if (!mw_wait_until(pumped_msg, &mc, WAIT_MS)) fail_msg("the first client's ping was not delivered");
    assert_int_equal(mw_svc_conn_count(f->svc), 1);

    fill_tx(f, f->svc, mc.id);
    int queued = atomic_load(&f->fill_count);
    assert_true(queued > 0);
    assert_int_equal(atomic_load(&f->fill_last), MW_EAGAIN);

    clt_connect(f, NULL);
    pump_until_conns(f, 2);

    drain_t d = {f, a, 0, queued, false};
    bool done = mw_wait_until(drained, &d, 3000);
    if (d.bad) fail_msg("the first client got a wrong message or an error after %d replies", d.got);
    if (!done) fail_msg("the first client got %d of %d replies", d.got, queued);
    assert_int_equal(d.got, queued);
}

/* ---- blocking Svc: timeout_ns = 0 still polls -------------------------------- */


static void test_svc_blocking_zero_timeout_still_accepts_and_receives(void **state) {
    fx_t *f = *state;
    mw_svc_opts_t o;
    svc_opts(f, &o);
    o.timeout_ns = 0;
    svc_listen(f, "tcp", &o);
    mw_clt_t *c = clt_connect(f, NULL);
    clt_send_ping(c, 1);
    msg_cond_t mc = {f, 0, 1};
    if (!mw_wait_until(pumped_msg, &mc, WAIT_MS))
        fail_msg("timeout_ns = 0: %d accepted, %u connections, ping not received", naccepted(f),
                 mw_svc_conn_count(f->svc));
    assert_int_equal(mw_svc_conn_count(f->svc), 1);
    /* and with nothing more to read, it returns */
    test_msg_t m;
    mw_conn_id_t id;
    const mw_schema_t *sch;
    assert_int_equal(mw_svc_recv(f->svc, &id, &sch, &m, sizeof m), MW_ETIMEDOUT);
}

/* ---- Clt: busywait timeout with a sleeping idle strategy ---------------------- */

/* A 5 ms sleep per idle step and a 10 ms timeout: MW_ETIMEDOUT close to the
 * deadline (under 100 ms), not after 64 sleeps. */
static void test_clt_recv_busywait_timeout_with_a_sleeping_idle_ends_near_its_deadline(void **state) {
    fx_t *f = *state;
    mw_svc_opts_t o;
    svc_opts(f, &o);
    svc_listen(f, "tcp", &o);
    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    mw_idle_init_sleep(&co.idle, 5 * MW_NS_PER_MS);
    mw_clt_t *c = clt_connect(f, &co); /* from the backlog: the Svc never runs, nothing arrives */
    test_msg_t m;
    const mw_schema_t *s;
    uint64_t t0 = mw_now_ns();
    int r = mw_clt_recv_busywait_timeout(c, &s, &m, sizeof m, 10 * MW_NS_PER_MS);
    int64_t el = (int64_t)(mw_now_ns() - t0);
    assert_int_equal(r, MW_ETIMEDOUT);
    if (el < 10 * MW_NS_PER_MS) fail_msg("returned early: %.1f ms", (double)el / 1e6);
    if (el >= 100 * MW_NS_PER_MS) fail_msg("returned %.1f ms after a 10 ms timeout", (double)el / 1e6);
}

/* A peer that never reads: send_busywait_timeout keeps accepting until the
 * socket and the tx buffer are full, then waits and says MW_ETIMEDOUT. It
 * used to return MW_EAGAIN at once when the flush would block. */
static void test_clt_send_busywait_timeout_waits_for_a_full_socket_then_times_out(void **state) {
    fx_t *f = *state;
    mw_svc_opts_t o;
    svc_opts(f, &o);
    o.tcp.rcvbuf = 4096; /* a fixed receive buffer: no autotuning that keeps taking a little more */
    svc_listen(f, "tcp", &o);
    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    co.tcp.sndbuf = 4096;
    co.conn.tx_buf = 70000;
    mw_clt_t *c = clt_connect(f, &co); /* from the backlog: the Svc never reads */
    int r = 0;
    uint64_t sent = 0, t0 = 0;
    for (; sent < 1000000 && r == 0; sent++) {
        ping_t p = {.seq = sent};
        t0 = mw_now_ns();
        r = mw_clt_send_busywait_timeout(c, ping_schema(), &p, 50 * MW_NS_PER_MS);
    }
    int64_t el = (int64_t)(mw_now_ns() - t0);
    if (r != MW_ETIMEDOUT) fail_msg("after %" PRIu64 " sends: %s, not MW_ETIMEDOUT", sent, mw_errname(r));
    if (el < 50 * MW_NS_PER_MS) fail_msg("timed out early: %.1f ms", (double)el / 1e6);
    assert_true(sent > 10); /* it did accept messages until the buffers were full */
}

#define T(fn, mode) {#fn "_" #mode, fn, fx_setup, fx_teardown, &mode_##mode}

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_svc_failed_send_does_not_drop_requests_buffered_before_the_peer_left, spin),
        T(test_svc_failed_send_does_not_drop_requests_buffered_before_the_peer_left, blocking),
        T(test_svc_event_delivers_a_resetting_peers_messages_before_on_close_with_replies_pending, event),
        T(test_svc_ws_blocking_delivers_good_frames_read_with_a_bad_one_then_closes, blocking),
        T(test_svc_busy_with_a_steady_sender_still_accepts_a_new_client, spin),
        T(test_svc_busy_with_a_steady_sender_still_accepts_a_new_client, blocking),
        T(test_svc_send_to_queued_on_a_callers_io_runs_safely_after_svc_free, event),
        T(test_svc_close_conn_queued_on_a_callers_io_runs_safely_after_svc_free, event),
        T(test_io_in_thread_is_false_off_the_thread_polling_a_callers_loop, event),
        {"test_clt_tls_blocking_split_sender_is_not_held_by_a_waiting_receiver",
         test_clt_tls_blocking_split_sender_is_not_held_by_a_waiting_receiver, tls_setup, fx_teardown, &mode_spin},
        T(test_svc_blocking_second_client_does_not_strand_replies_queued_for_the_first, blocking),
        T(test_svc_blocking_zero_timeout_still_accepts_and_receives, blocking),
        T(test_clt_recv_busywait_timeout_with_a_sleeping_idle_ends_near_its_deadline, spin),
        T(test_clt_send_busywait_timeout_waits_for_a_full_socket_then_times_out, spin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
