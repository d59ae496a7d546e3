/* svc_harness.c - see svc_harness.h. */
#include "svc_harness.h"
#include "clock_impl.h"

#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


mw_mode_t svh_mode_spin = MW_MODE_SPIN, svh_mode_blocking = MW_MODE_BLOCKING, svh_mode_event = MW_MODE_EVENT;

int svh_setup(void **state) {
    svh_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    f->mode = *state ? *(mw_mode_t *)*state : MW_MODE_SPIN;
    pthread_mutex_init(&f->mu, NULL);
    *state = f;
    return 0;
}

/* Starts a thread that the fixture joins (after setting stop). */
pthread_t svh_spawn(svh_t *f, void *(*fn)(void *), void *ud) {
    for (int i = 0; i < SVH_MAX_THREADS; i++) {
        if (f->th_live[i]) continue;
        if (pthread_create(&f->th[i], NULL, fn, ud) != 0) fail_msg("pthread_create failed");
        f->th_live[i] = true;
        return f->th[i];
    }
    fail_msg("too many threads");
    return pthread_self();
}

void svh_join_all(svh_t *f) {
    for (int i = 0; i < SVH_MAX_THREADS; i++) {
        if (!f->th_live[i]) continue;
        pthread_join(f->th[i], NULL);
        f->th_live[i] = false;
    }
}

void *svh_attach_ud(svh_t *f, size_t n) {
    f->ud = calloc(1, n);
    f->ud_owned = f->ud != NULL;
    return f->ud;
}

void *svh_setup_ud(void **state, size_t n) { return svh_setup(state) == 0 ? svh_attach_ud(*state, n) : NULL; }

int svh_teardown(void **state) {
    svh_t *f = *state;
    atomic_store(&f->stop, true);
    atomic_store(&f->release, true);
    atomic_store(&f->peer_gone, true);
    svh_join_all(f);
    if (f->clt_io) mw_io_stop(f->clt_io);
    if (f->io) mw_io_stop(f->io); /* a Svc on a caller's io is freed while it does not run */
    svh_stop(f);
    mw_io_free(f->io);
    for (int i = 0; i < f->nclts; i++) mw_clt_free(f->clts[i]);
    mw_io_free(f->clt_io);
    if (f->ud_owned) free(f->ud);
    for (int i = 0; i < f->nfds; i++)
        if (f->fds[i] >= 0) close(f->fds[i]);
    if (f->dir[0]) mw_tmpdir_remove(f->dir);
    pthread_mutex_destroy(&f->mu);
    free(f);
    return 0;
}

/* ---- recording ------------------------------------------------------------------ */

static void rec_msg(svh_t *f, mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg) {
    svh_msg_t m = {id, sch->tag == ping_TAG ? ((const ping_t *)msg)->seq : UINT64_MAX, 0, 0, 0, sch->tag, pthread_self()};
    if (f->session) {
        m.rx_seq = mw_svc_rx_seq(s, id);
        m.flags = mw_svc_rx_flags(s, id);
    }
    pthread_mutex_lock(&f->mu);
    m.order = f->order++;
    if (f->nmsgs < SVH_MAX_MSGS) f->msgs[f->nmsgs++] = m;
    pthread_mutex_unlock(&f->mu);
}

void svh_rec_msg(svh_t *f, mw_conn_id_t id, const mw_schema_t *sch, const void *msg) {
    rec_msg(f, f->svc, id, sch, msg);
}

/* What on_msg and the Svc thread do with a message. */
static void deliver(svh_t *f, mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg) {
    rec_msg(f, s, id, sch, msg);
    if (f->on_msg) f->on_msg(f, s, id, sch, msg);
}

void svh_fill_tx(svh_t *f, mw_svc_t *s, mw_conn_id_t id) {
    ping_t p = {0};
    int n = 0, r;
    while ((r = mw_svc_send_to(s, id, ping_schema(), &p)) == 0 && n < SVH_FILL_LIMIT) {
        n++;
        p.seq++;
    }
    atomic_store(&f->fill_count, n);
    atomic_store(&f->fill_last, r);
}

static void on_accept(mw_svc_t *s, mw_conn_id_t id, void *ud) {
    svh_t *f = ud;
    pthread_mutex_lock(&f->mu);
    if (f->naccepted < SVH_MAX_CONNS) {
        f->accept_th[f->naccepted] = pthread_self();
        f->accepted[f->naccepted++] = id;
    }
    pthread_mutex_unlock(&f->mu);
    if (f->on_accept) f->on_accept(f, s, id);
    if (!f->fill_on_accept) return;
    /* Replies pending (write interest armed), and the worker stays busy
     * while the peer sends and leaves: both events are there at once. */
    svh_fill_tx(f, s, id);
    atomic_store(&f->filled, true);
    uint64_t dl = mw__deadline_in(NULL, SVH_WAIT_MS * MW_NS_PER_MS);
    while (!atomic_load(&f->peer_gone) && !mw__deadline_passed(NULL, dl)) sched_yield();
}

static void on_msg(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg, void *ud) {
    deliver(ud, s, id, sch, msg);
}

static void on_close(mw_svc_t *s, mw_conn_id_t id, int reason, void *ud) {
    svh_t *f = ud;
    pthread_mutex_lock(&f->mu);
    if (f->ncloses < SVH_MAX_CONNS) {
        svh_close_t *c = &f->closes[f->ncloses++];
        c->id = id;
        c->reason = reason;
        c->order = f->order++;
        c->th = pthread_self();
        snprintf(c->text, sizeof c->text, "%s", mw_svc_conn_error(s, id));
    }
    snprintf(f->last_close_text, sizeof f->last_close_text, "%s", mw_svc_conn_error(s, id));
    atomic_store(&f->last_reason, reason);
    atomic_fetch_add(&f->nclosed, 1); /* last: a waiter on the count finds reason and text */
    pthread_mutex_unlock(&f->mu);
    if (f->on_close) f->on_close(f, s, id, reason);
}

void svh_echo(svh_t *f, mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg) {
    int r = f->mode == MW_MODE_EVENT ? mw_svc_send_to(s, id, sch, msg) : svh_send_polled(f, id, sch, msg);
    if (r == 0) atomic_fetch_add(&f->echoed, 1);
    else if (r != MW_ECLOSED)
        mw_fail_once(&f->fail, "svc echo: send_to %s: %s", mw_errname(r), mw_svc_conn_error(s, id));
}

int svh_naccepted(svh_t *f) {
    pthread_mutex_lock(&f->mu);
    int n = f->naccepted;
    pthread_mutex_unlock(&f->mu);
    return n;
}

mw_conn_id_t svh_accepted_id(svh_t *f, int i) {
    pthread_mutex_lock(&f->mu);
    mw_conn_id_t id = f->accepted[i];
    pthread_mutex_unlock(&f->mu);
    return id;
}

/* The close record of id, if there is one. */
bool svh_find_close(svh_t *f, mw_conn_id_t id, svh_close_t *out) {
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
void svh_expect_pings(svh_t *f, mw_conn_id_t id, uint64_t first, uint64_t last, uint64_t before) {
    pthread_mutex_lock(&f->mu);
    uint64_t want = first;
    int n = 0;
    for (int i = 0; i < f->nmsgs; i++) {
        svh_msg_t m = f->msgs[i];
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

void svh_svc_opts(svh_t *f, mw_svc_opts_t *o) {
    mw_svc_opts_init(o);
    o->mode = f->mode;
    if (f->serdes) o->conn.serdes = f->serdes;
    svh_svc_hooks(f, o);
}

void svh_svc_hooks(svh_t *f, mw_svc_opts_t *o) {
    o->on_accept = on_accept;
    if (o->mode == MW_MODE_EVENT) o->event.on_msg = on_msg;
    o->on_close = on_close;
    o->ud = f;
}

void svh_listen(svh_t *f, const char *scheme, const mw_svc_opts_t *o) { svh_listen_at(f, scheme, 0, o); }

void svh_listen_at(svh_t *f, const char *scheme, int port, const mw_svc_opts_t *o) {
    const char *path = strncmp(scheme, "ws", 2) != 0 ? "" : f->path ? f->path : "/";
    char url[96];
    snprintf(url, sizeof url, "%s://127.0.0.1:%d%s", scheme, port, path);
    mw_err_t err = {0};
    int r = mw_svc_listen(&f->svc, url, f->proto ? f->proto : &test_protocol, o, &err);
    if (r != 0) fail_msg("svc listen %s: %s: %s", url, mw_errname(r), mw_err_text(&err));
    f->port = mw_svc_port(f->svc);
    assert_true(f->port > 0);
    snprintf(f->url, sizeof f->url, "%s://127.0.0.1:%d%s", scheme, f->port, path);
}

static void batch_msg(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg, void *ud) {
    deliver(ud, s, id, sch, msg);
}

/* A spin/blocking Svc's thread: receives until svh_stop (or the fixture's
 * stop) and hands each message on as on_msg would (f->recv_batch: through
 * mw_svc_recv_batch). */
static void *svc_loop(void *ud) {
    svh_t *f = ud;
    while (!atomic_load(&f->stop) && !atomic_load(&f->svc_stop)) {
        if (atomic_load(&f->pause)) {
            atomic_store(&f->parked, true);
            sched_yield();
            continue;
        }
        atomic_store(&f->parked, false);
        test_msg_t m;
        mw_conn_id_t id;
        const mw_schema_t *sch;
        int r = f->recv_batch ? mw_svc_recv_batch(f->svc, batch_msg, f, 64)
                              : mw_svc_recv(f->svc, &id, &sch, &m, sizeof m);
        if (r == 0 && !f->recv_batch) deliver(f, f->svc, id, sch, &m);
        else if (r >= 0) continue;
        else if (r == MW_EAGAIN) sched_yield(); /* two spinning threads on a 2-core box */
        else if (r != MW_ETIMEDOUT)
            mw_fail_once(&f->fail, "svc recv: %s: %s", mw_errname(r), mw_svc_last_error(f->svc));
    }
    return NULL;
}

void svh_start(svh_t *f, const char *scheme, int port, const mw_svc_opts_t *o) {
    svh_listen_at(f, scheme, port, o);
    if (o->mode == MW_MODE_EVENT) return;
    atomic_store(&f->svc_stop, false);
    if (pthread_create(&f->svc_th, NULL, svc_loop, f) != 0) fail_msg("pthread_create failed");
    f->svc_th_live = true;
}

void svh_stop(svh_t *f) {
    if (f->svc_th_live) {
        atomic_store(&f->svc_stop, true);
        pthread_join(f->svc_th, NULL);
        f->svc_th_live = false;
    }
    mw_svc_free(f->svc);
    f->svc = NULL;
}

int svh_send_polled(svh_t *f, mw_conn_id_t id, const mw_schema_t *sch, const void *msg) {
    uint64_t dl = mw__deadline_in(NULL, SVH_WAIT_MS * MW_NS_PER_MS);
    int r;
    while ((r = mw_svc_send_to(f->svc, id, sch, msg)) == MW_EAGAIN && !mw__deadline_passed(NULL, dl)) {
        mw_svc_poll(f->svc, f->mode == MW_MODE_BLOCKING ? MW_NS_PER_MS : 0);
        sched_yield();
    }
    return r;
}

/* Connects a Clt to the Svc (o NULL: spin mode, defaults). */
mw_clt_t *svh_clt_connect(svh_t *f, const mw_clt_opts_t *o) {
    mw_clt_t *c = svh_clt_connect_untracked(f, o);
    svh_clt_adopt(f, c);
    return c;
}

mw_clt_t *svh_clt_connect_untracked(svh_t *f, const mw_clt_opts_t *o) {
    mw_clt_opts_t def;
    if (!o) {
        mw_clt_opts_init(&def);
        o = &def;
    }
    mw_clt_t *c = NULL;
    mw_err_t err = {0};
    int r = mw_clt_connect(&c, f->url, f->proto ? f->proto : &test_protocol, o, &err);
    if (r != 0) fail_msg("clt connect %s: %s: %s", f->url, mw_errname(r), mw_err_text(&err));
    return c;
}

mw_io_t *svh_clt_io(svh_t *f) {
    if (f->clt_io) fail_msg("one svh_clt_io per test");
    mw_err_t err = {0};
    int r = mw_io_new(&f->clt_io, NULL, &err);
    if (r != 0) fail_msg("io: %s: %s", mw_errname(r), mw_err_text(&err));
    r = mw_io_start(f->clt_io, NULL);
    if (r != 0) fail_msg("io start: %s", mw_errname(r));
    return f->clt_io;
}

void svh_clt_fast_reconnect(mw_clt_opts_t *o) {
    o->event.reconnect = true;
    o->retry.min_delay_ns = 10 * MW_NS_PER_MS;
    o->retry.max_delay_ns = 50 * MW_NS_PER_MS;
}

void svh_clt_adopt(svh_t *f, mw_clt_t *c) {
    if (f->nclts >= SVH_MAX_CONNS) {
        mw_clt_free(c);
        fail_msg("more than %d Clts", SVH_MAX_CONNS);
    }
    f->clts[f->nclts++] = c;
}

/* Frees a Clt before the fixture would. */
void svh_clt_drop(svh_t *f, mw_clt_t *c) {
    for (int i = 0; i < f->nclts; i++)
        if (f->clts[i] == c) f->clts[i] = f->clts[--f->nclts];
    mw_clt_free(c);
}

void svh_send_ping(mw_clt_t *c, uint64_t seq) {
    ping_t p = {.seq = seq, .sent_ns = seq * 3};
    int r = mw_clt_send(c, ping_schema(), &p);
    if (r != 0) fail_msg("clt send ping %" PRIu64 ": %s: %s", seq, mw_errname(r), mw_clt_last_error(c));
}

/* Spin/blocking: one mw_svc_recv on the test thread, recording a message. */
int svh_pump(svh_t *f) {
    test_msg_t m;
    mw_conn_id_t id;
    const mw_schema_t *sch;
    int r = mw_svc_recv(f->svc, &id, &sch, &m, sizeof m);
    if (r == 0) deliver(f, f->svc, id, sch, &m);
    else if (r != MW_EAGAIN && r != MW_ETIMEDOUT) fail_msg("svc recv: %s", mw_errname(r));
    return r;
}

typedef struct conns_cond { svh_t *f; uint32_t want; bool pump; } conns_cond_t;
static bool conns_reached(void *ud) {
    conns_cond_t *c = ud;
    if (c->pump) svh_pump(c->f);
    return mw_svc_conn_count(c->f->svc) >= c->want;
}

/* Drives the Svc from the test thread until it holds `want` connections. */
void svh_pump_until_conns(svh_t *f, uint32_t want) {
    conns_cond_t c = {f, want, true};
    if (!mw_wait_until(conns_reached, &c, SVH_WAIT_MS))
        fail_msg("the Svc holds %u connections, want %u", mw_svc_conn_count(f->svc), want);
}

typedef struct count_cond { svh_t *f; int want; } count_cond_t;
static bool accepts_reached(void *ud) {
    count_cond_t *c = ud;
    return svh_naccepted(c->f) >= c->want;
}

/* Event mode / a Svc thread: waits until on_accept ran n times; returns the nth id. */
mw_conn_id_t svh_wait_accepted(svh_t *f, int n) {
    count_cond_t c = {f, n};
    if (!mw_wait_until(accepts_reached, &c, SVH_WAIT_MS)) fail_msg("%d accepted, want %d", svh_naccepted(f), n);
    return svh_accepted_id(f, n - 1);
}

typedef struct close_cond { svh_t *f; mw_conn_id_t id; } close_cond_t;
static bool closed_now(void *ud) {
    close_cond_t *c = ud;
    return svh_find_close(c->f, c->id, NULL);
}

svh_close_t svh_wait_closed(svh_t *f, mw_conn_id_t id) {
    close_cond_t c = {f, id};
    if (!mw_wait_until(closed_now, &c, SVH_WAIT_MS)) fail_msg("connection %#" PRIx64 " was not closed", id);
    svh_close_t r;
    svh_find_close(f, id, &r);
    return r;
}

static bool closes_reached(void *ud) {
    count_cond_t *c = ud;
    return atomic_load(&c->f->nclosed) >= c->want;
}

svh_close_t svh_wait_close_n(svh_t *f, int k) {
    count_cond_t c = {f, k + 1};
    if (!mw_wait_until(closes_reached, &c, SVH_WAIT_MS)) fail_msg("no close event #%d within %d ms", k, SVH_WAIT_MS);
    if (k >= SVH_MAX_CONNS) fail_msg("close event #%d is past the %d recorded", k, SVH_MAX_CONNS);
    pthread_mutex_lock(&f->mu);
    svh_close_t r = f->closes[k];
    pthread_mutex_unlock(&f->mu);
    return r;
}

static bool flag_set(void *ud) { return atomic_load((atomic_bool *)ud); }

typedef struct atleast { atomic_int *n; int want; } atleast_t;
static bool atleast(void *ud) { return atomic_load(((atleast_t *)ud)->n) >= ((atleast_t *)ud)->want; }

bool svh_wait_count(atomic_int *n, int want, int ms) {
    atleast_t a = {n, want};
    return mw_wait_until(atleast, &a, ms);
}

int svh_nmsgs(svh_t *f) {
    pthread_mutex_lock(&f->mu);
    int n = f->nmsgs;
    pthread_mutex_unlock(&f->mu);
    return n;
}

static bool msgs_reached(void *ud) {
    count_cond_t *c = ud;
    return svh_nmsgs(c->f) >= c->want;
}

bool svh_wait_msgs(svh_t *f, int n, int ms) {
    count_cond_t c = {f, n};
    return mw_wait_until(msgs_reached, &c, ms);
}

void svh_reset_msgs(svh_t *f) {
    pthread_mutex_lock(&f->mu);
    f->nmsgs = 0;
    pthread_mutex_unlock(&f->mu);
}

svh_msg_t svh_msg(svh_t *f, int i) {
    pthread_mutex_lock(&f->mu);
    bool ok = i >= 0 && i < f->nmsgs;
    svh_msg_t m = ok ? f->msgs[i] : (svh_msg_t){0};
    pthread_mutex_unlock(&f->mu);
    if (!ok) fail_msg("message %d was not recorded", i);
    return m;
}

void svh_wait_flag(atomic_bool *flag, const char *what) {
    if (!mw_wait_until(flag_set, flag, SVH_WAIT_MS)) fail_msg("timed out waiting for %s", what);
}

/* ---- raw peers ---------------------------------------------------------------- */

int svh_raw_connect(svh_t *f) { /* tracked: the fixture closes what a test leaves open */
    int fd = mw_test_raw_connect(f->port);
    assert_true(f->nfds < SVH_MAX_CONNS);
    f->fds[f->nfds++] = fd;
    return fd;
}

void svh_raw_close(svh_t *f, int fd) {
    for (int i = 0; i < f->nfds; i++)
        if (f->fds[i] == fd) f->fds[i] = -1;
    close(fd);
}


/* A ping encoded with the default ("fixed") serdes, no framing. */
size_t svh_encode_ping(uint64_t seq, uint8_t *out, size_t cap) {
    mw_serdes_t sd;
    assert_int_equal(mw_serdes_init(&sd, "fixed", 0), 0);
    ping_t p = {.seq = seq, .sent_ns = seq * 3};
    ssize_t n = ping_encode(&sd, &p, out, cap);
    mw_serdes_fini(&sd);
    assert_true(n > 0);
    return (size_t)n;
}

/* A ping framed as on TCP: u32 big-endian length, then the payload. */
size_t svh_tcp_frame_ping(uint64_t seq, uint8_t *out, size_t cap) {
    assert_true(cap > 4);
    size_t n = svh_encode_ping(seq, out + 4, cap - 4);
    out[0] = (uint8_t)(n >> 24), out[1] = (uint8_t)(n >> 16), out[2] = (uint8_t)(n >> 8), out[3] = (uint8_t)n;
    return n + 4;
}

/* A ping as a client's WebSocket frame: FIN + binary, masked with key 0. */
size_t svh_ws_frame_ping(uint64_t seq, uint8_t *out, size_t cap) {
    assert_true(cap > 6);
    size_t n = svh_encode_ping(seq, out + 6, cap - 6);
    assert_true(n < 126);
    out[0] = 0x82;
    out[1] = (uint8_t)(0x80 | n);
    memset(out + 2, 0, 4);
    return n + 6;
}


bool svh_msg_seen(void *ud) {
    svh_msg_cond_t *c = ud;
    pthread_mutex_lock(&c->f->mu);
    bool found = false;
    for (int i = 0; i < c->f->nmsgs; i++) found |= c->f->msgs[i].id == c->id && c->f->msgs[i].seq == c->seq;
    pthread_mutex_unlock(&c->f->mu);
    return found;
}

/* Drives the Svc from the test thread until ping c->seq from the first
 * accepted connection was delivered. */
bool svh_pumped_msg(void *ud) {
    svh_msg_cond_t *c = ud;
    svh_pump(c->f);
    if (!c->id && svh_naccepted(c->f) > 0) c->id = svh_accepted_id(c->f, 0);
    return c->id && svh_msg_seen(c);
}

bool svh_clt_sees_closed(void *ud) {
    mw_clt_t *c = ud;
    test_msg_t m;
    const mw_schema_t *s;
    int r;
    while ((r = mw_clt_recv(c, &s, &m, sizeof m)) == 0) {}
    return r != MW_EAGAIN;
}

/* ---- a certificate for tls:// ------------------------------------------------------- */

int svh_tls_setup(void **state) {
    if (svh_setup(state) != 0) return -1;
    svh_t *f = *state;
    if (!mw_have_openssl_cli()) return 0; /* the test skips (mw_test_require) */
    snprintf(f->cert, sizeof f->cert, "%s", mw_test_cert("srv.pem")); /* the shared set */
    snprintf(f->key, sizeof f->key, "%s", mw_test_cert("srv.key"));
    return 0;
}
