/* test_endpoint.c - the event-mode Clt as an endpoint on an io: reconnect
 * after a server restart, exponential backoff with and without jitter,
 * can_reconnect and max_attempts, TTL rotation, idle timeout and heartbeat,
 * async name resolution on every io backend, on_connect after every
 * reconnect, record/replay of ws:// and tcp:// sessions (messages, rx
 * timestamps, a truncated recording), local binding, twenty endpoints on one
 * spin-mode io, an async connect to a closed port, and freeing an endpoint
 * before (or while) its io runs it.
 *
 * The test thread is the io thread: it drives every io with mw_io_poll(io, 0)
 * and waits on conditions with a deadline; nothing sleeps. With a fake clock
 * the test moves time by hand, 1 ms per step, and lets the io settle at each
 * step (no work left, no endpoint resolving or connecting), so the times at
 * which timers act are exact. One test runs the io on its own thread and
 * sends from the test thread while the endpoint reconnects.
 *
 * Svcs run either on their own worker thread (counters are atomics) or
 * attached to the test's io (workers 0), which puts their timers on the same
 * fake clock.
 */
#include "mw_test.h"
#include "test_proto.h"

#include "mw_clock.h"
#include "mw_clt.h"
#include "mw_io.h"
#include "mw_record.h"
#include "resolve_impl.h"
#include "mw_svc.h"
#include "mw_tcp.h"
#include "mw_ws.h"
#include "clock_impl.h"
#include "clt_impl.h"
#include "stream_impl.h"
#include "tcp_impl.h"
#include "ws_impl.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WAIT_MS 10000
#define MS MW_NS_PER_MS
#define MAX_IO 4
#define MAX_EP 24
#define MAX_SRV 4
#define MAX_EV 64
#define LOG_MAX 64
#define MAX_FDS 4
#define MAX_PATHS 8
#define FAKE_T0 ((uint64_t)1000 * MW_NS_PER_S)
#define NMSGS 50

typedef struct fx fx_t;

/* ---- the peer Svc ------------------------------------------------------------- */

typedef struct srv {
    mw_svc_t *svc;
    bool echo; /* echo pings; otherwise never sends on its own */
    int port;
    char url[96];
    atomic_uint accepts, closes, msgs, pings, subs, hbs, first_sub;
    atomic_bool want_first;
    atomic_int last_reason, errors;
    _Atomic uint64_t last_id;
} srv_t;

static void srv_on_accept(mw_svc_t *s, mw_conn_id_t id, void *ud) {
    (void)s;
    srv_t *v = ud;
    atomic_store(&v->last_id, id);
    atomic_store(&v->want_first, true);
    atomic_fetch_add(&v->accepts, 1);
}

/* A heartbeat message with unused = true is a "subscribe"; false: a heartbeat. */
static void srv_on_msg(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg, void *ud) {
    srv_t *v = ud;
    atomic_fetch_add(&v->msgs, 1);
    bool sub = sch->tag == heartbeat_TAG && ((const heartbeat_t *)msg)->unused;
    if (atomic_exchange(&v->want_first, false) && sub) atomic_fetch_add(&v->first_sub, 1);
    if (sch->tag == heartbeat_TAG) atomic_fetch_add(sub ? &v->subs : &v->hbs, 1);
    if (sch->tag == ping_TAG) {
        atomic_fetch_add(&v->pings, 1);
        if (v->echo && mw_svc_send_to(s, id, sch, msg) != 0) atomic_fetch_add(&v->errors, 1);
    }
}

static void srv_on_close(mw_svc_t *s, mw_conn_id_t id, int reason, void *ud) {
    (void)s;
    (void)id;
    srv_t *v = ud;
    atomic_store(&v->last_reason, reason);
    atomic_fetch_add(&v->closes, 1);
}

/* ---- endpoints ---------------------------------------------------------------- */

typedef struct logent {
    int tag;
    char text[200];
    uint64_t rx_ts; /* mw_clt_rx_time_ns */
    uint64_t rp_ts; /* replay only: mw_replay_last_ts of the replay stream */
} logent_t;

typedef struct ep {
    fx_t *f;
    mw_io_t *io;
    mw_clt_t *c;
    mw_stream_t *rp; /* the replay stream under c, if any */
    int connects, closes, msgs, hbs, can_calls;
    int reasons[MAX_EV];
    uint64_t close_at[MAX_EV], connect_at[MAX_EV], hb_at[MAX_EV];
    uint32_t can_attempt[MAX_EV];
    uint32_t stop_at; /* can_reconnect: false from this attempt on; 0: always true */
    char close_text[4][MW_ERR_TEXT_MAX];
    char last_close_text[MW_ERR_TEXT_MAX];
    bool subscribe;     /* on_connect sends a subscribe */
    bool hb_send;       /* on_heartbeat sends a heartbeat */
    bool free_in_close; /* on_close frees the Clt */
    bool close_in_close; /* on_close closes the Clt */
    bool logging;       /* keep every message (tag, fields, timestamps) */
    int send_errors, seq_errors, wrong_state;
    uint64_t sent, next_seq; /* pings sent / the next echo expected */
    logent_t log[LOG_MAX];
    int nlog;
} ep_t;

struct fx {
    mw_clock_t clock;
    mw_io_t *ios[MAX_IO];
    int nio;
    srv_t srvs[MAX_SRV];
    int nsrv;
    ep_t eps[MAX_EP];
    int nep;
    int fds[MAX_FDS];
    int nfds;
    mw__listener_t *lis; /* a listener nobody accepts from */
    mw_io_t *thread_io; /* run by mw_io_start: never polled by the test thread */
    mw_clt_t *thread_clt;
    struct mt_ep {
        atomic_int connects, closes, echoes, bad;
    } mt;
    char dir[64];
    char paths[MAX_PATHS][128];
    int npaths;
};

static void fmt_msg(char *b, size_t cap, const mw_schema_t *s, const void *msg) {
    switch (s->tag) {
    case all_kinds_TAG: {
        const all_kinds_t *m = msg;
        snprintf(b, cap,
                 "all_kinds %d %d %" PRId32 " %" PRId64 " %u %u %" PRIu32 " %" PRIu64
                 " %.17g %d %.8s %02x%02x%02x%02x %u",
                 m->i8, m->i16, m->i32, m->i64, m->u8, m->u16, m->u32, m->u64, m->f64, (int)m->flag, m->sym,
                 m->raw[0], m->raw[1], m->raw[2], m->raw[3], m->side);
        break;
    }
    case ping_TAG: {
        const ping_t *m = msg;
        snprintf(b, cap, "ping %" PRIu64 " %" PRIu64, m->seq, m->sent_ns);
        break;
    }
    case heartbeat_TAG: snprintf(b, cap, "heartbeat %d", (int)((const heartbeat_t *)msg)->unused); break;
    default: snprintf(b, cap, "tag %u", (unsigned)s->tag); break;
    }
}

static void ep_log(ep_t *e, mw_clt_t *c, const mw_schema_t *s, const void *msg) {
    if (e->nlog >= LOG_MAX) return;
    logent_t *l = &e->log[e->nlog++];
    l->tag = s->tag;
    fmt_msg(l->text, sizeof l->text, s, msg);
    l->rx_ts = mw_clt_rx_time_ns(c);
    l->rp_ts = e->rp ? mw_replay_last_ts(e->rp) : 0;
}

static void ep_on_connect(mw_clt_t *c, void *ud) {
    ep_t *e = ud;
    if (e->connects < MAX_EV) e->connect_at[e->connects] = mw_io_now(e->io);
    e->connects++;
    if (mw_clt_state(c) != MW_CLT_OPEN) e->wrong_state++;
    if (e->subscribe) {
        heartbeat_t sub = {.unused = true};
        if (mw_clt_send(c, heartbeat_schema(), &sub) != 0) e->send_errors++;
    }
}

static void ep_on_msg(mw_clt_t *c, const mw_schema_t *s, const void *msg, void *ud) {
    ep_t *e = ud;
    e->msgs++;
    if (e->logging) {
        ep_log(e, c, s, msg);
        return;
    }
    if (s->tag == ping_TAG) {
        const ping_t *p = msg;
        if (p->seq != e->next_seq || p->sent_ns != p->seq * 3) e->seq_errors++;
        e->next_seq = p->seq + 1;
    }
}

static void ep_on_close(mw_clt_t *c, int reason, void *ud) {
    ep_t *e = ud;
    int i = e->closes++;
    if (i < MAX_EV) {
        e->reasons[i] = reason;
        e->close_at[i] = mw_io_now(e->io);
    }
    snprintf(e->last_close_text, sizeof e->last_close_text, "%s", mw_clt_last_error(c));
    if (i < 4) snprintf(e->close_text[i], sizeof e->close_text[i], "%s", e->last_close_text);
    if (e->close_in_close) mw_clt_close(c);
    if (e->free_in_close) {
        mw_clt_free(c); /* deferred by the library until this callback returns */
        e->c = NULL;
    }
}

static bool ep_can_reconnect(mw_clt_t *c, int reason, uint32_t attempt, void *ud) {
    (void)c;
    (void)reason;
    ep_t *e = ud;
    if (e->can_calls < MAX_EV) e->can_attempt[e->can_calls] = attempt;
    e->can_calls++;
    return !e->stop_at || attempt < e->stop_at;
}

static void ep_on_heartbeat(mw_clt_t *c, void *ud) {
    ep_t *e = ud;
    if (e->hbs < MAX_EV) e->hb_at[e->hbs] = mw_io_now(e->io);
    e->hbs++;
    if (mw_clt_state(c) != MW_CLT_OPEN) e->wrong_state++;
    if (e->hb_send) {
        heartbeat_t hb = {.unused = false};
        if (mw_clt_send(c, heartbeat_schema(), &hb) != 0) e->send_errors++;
    }
}

/* ---- fixture ------------------------------------------------------------------ */

static int fx_setup(void **state) {
    fx_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/mw_endpoint_XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

/* The documented order: Clts first (the io is not running), then Svcs
 * attached to an io, then the resolvers, then the ios. */
static int fx_teardown(void **state) {
    fx_t *f = *state;
    mw_io_stop(f->thread_io);
    mw_clt_free(f->thread_clt);
    for (int i = 0; i < f->nep; i++) mw_clt_free(f->eps[i].c);
    for (int i = 0; i < f->nsrv; i++) mw_svc_free(f->srvs[i].svc);
    for (int i = 0; i < f->nio; i++) mw_resolve_shutdown(f->ios[i]);
    for (int i = 0; i < f->nio; i++) mw_io_free(f->ios[i]);
    if (f->thread_io) mw_resolve_shutdown(f->thread_io);
    mw_io_free(f->thread_io);
    for (int i = 0; i < f->nfds; i++) close(f->fds[i]);
    mw__listener_free(f->lis);
    for (int i = 0; i < f->npaths; i++) unlink(f->paths[i]);
    rmdir(f->dir);
    free(f);
    return 0;
}

static mw_io_t *fx_io(fx_t *f, const char *backend, bool fake) {
    assert_true(f->nio < MAX_IO);
    mw_io_opts_t o;
    mw_io_opts_init(&o);
    o.backend = backend;
    if (fake) {
        mw__clock_fake_init(&f->clock, FAKE_T0);
        o.clock = &f->clock;
    }
    mw_err_t err = {0};
    int r = mw_io_new(&f->ios[f->nio], &o, &err);
    if (r != 0) fail_msg("io %s: %s: %s", backend, mw_errname(r), mw_err_text(&err));
    return f->ios[f->nio++];
}

static const char *fx_path(fx_t *f, const char *name) {
    assert_true(f->npaths < MAX_PATHS);
    char *p = f->paths[f->npaths++];
    snprintf(p, sizeof f->paths[0], "%s/%s", f->dir, name);
    return p;
}

/* One poll of every io; returns the work done. */
static int poll_all(fx_t *f) {
    int n = 0;
    for (int i = 0; i < f->nio; i++) {
        int r = mw_io_poll(f->ios[i], 0);
        if (r < 0) fail_msg("mw_io_poll: %s", mw_errname(r));
        n += r;
    }
    return n;
}

/* Polls every io until cond holds; fails after ms milliseconds. */
#define WAIT_FOR(f, ms, cond)                                                                \
    do {                                                                                     \
        uint64_t wdl_ = mw_now_ns() + (uint64_t)(ms) * MS;                                   \
        for (unsigned wi_ = 1; !(cond); wi_++) {                                             \
            if (mw_now_ns() > wdl_) fail_msg("line %d: no \"%s\" within %d ms", __LINE__, #cond, (int)(ms)); \
            poll_all(f);                                                                     \
            if ((wi_ & 63) == 0) sched_yield();                                              \
        }                                                                                    \
    } while (0)

/* Polls for ms milliseconds (to see that nothing more happens). */
static void pump_for(fx_t *f, int ms) {
    uint64_t end = mw_now_ns() + (uint64_t)ms * MS;
    for (unsigned i = 1; mw_now_ns() < end; i++) {
        poll_all(f);
        if ((i & 63) == 0) sched_yield();
    }
}

static bool ep_busy(const ep_t *e) {
    if (!e->c) return false;
    mw_clt_state_t st = mw_clt_state(e->c);
    return st == MW_CLT_RESOLVING || st == MW_CLT_CONNECTING; /* a handshake may wait on a stalled peer */
}

/* Fake clock: polls until nothing is left to do at this time. */
static void settle(fx_t *f) {
    uint64_t dl = mw_now_ns() + (uint64_t)WAIT_MS * MS;
    for (int quiet = 0; quiet < 3;) {
        bool busy = poll_all(f) > 0;
        for (int i = 0; i < f->nep; i++) busy |= ep_busy(&f->eps[i]);
        quiet = busy ? 0 : quiet + 1;
        if (mw_now_ns() > dl) fail_msg("the io did not settle");
    }
}

static uint64_t fake_now(fx_t *f) { return mw__clock_now(&f->clock); }

static void fake_advance(fx_t *f, int64_t ns) {
    mw__clock_fake_advance(&f->clock, (uint64_t)ns);
    settle(f);
}

/* Steps the fake clock 1 ms at a time until cond holds; fails after limit_ms. */
#define STEP_UNTIL(f, limit_ms, cond)                                                        \
    do {                                                                                     \
        uint64_t sdl_ = fake_now(f) + (uint64_t)(limit_ms) * MS;                             \
        settle(f);                                                                           \
        while (!(cond)) {                                                                    \
            if (fake_now(f) >= sdl_) fail_msg("line %d: no \"%s\" within %d fake ms", __LINE__, #cond, (int)(limit_ms)); \
            fake_advance(f, MS);                                                             \
        }                                                                                    \
    } while (0)

/* A port that refuses connections: a socket bound to it that never listens
 * (kept open, so nobody else gets the port). */
static int closed_port(fx_t *f) {
    assert_true(f->nfds < MAX_FDS);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    f->fds[f->nfds++] = fd;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    return ntohs(a.sin_port);
}

/* ---- Svc helpers ----------------------------------------------------------- */

typedef struct srv_cfg {
    const char *scheme;      /* default "tcp"; "ws" listens on /feed */
    const char *serdes;      /* default: the library's */
    int port;                /* > 0: this port (a restart) */
    mw_io_t *io;             /* attach to this io (workers 0); NULL: own worker thread */
    bool quiet;              /* never sends */
    int64_t idle_timeout_ns;
} srv_cfg_t;

static srv_t *srv_start(fx_t *f, const srv_cfg_t *cfg) {
    assert_true(f->nsrv < MAX_SRV);
    srv_t *v = &f->srvs[f->nsrv++];
    v->echo = !cfg->quiet;
    const char *scheme = cfg->scheme ? cfg->scheme : "tcp";
    const char *path = strcmp(scheme, "ws") == 0 ? "/feed" : "";
    char url[96];
    snprintf(url, sizeof url, "%s://127.0.0.1:%d%s", scheme, cfg->port, path);
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.mode = MW_MODE_EVENT;
    if (cfg->io) {
        o.event.workers = 0;
        o.event.io = cfg->io;
    }
    o.idle_timeout_ns = cfg->idle_timeout_ns;
    if (cfg->serdes) o.conn.serdes = cfg->serdes;
    o.on_accept = srv_on_accept;
    o.event.on_msg = srv_on_msg;
    o.on_close = srv_on_close;
    o.ud = v;
    /* A restart may find the port still held for a moment: retry until the deadline. */
    uint64_t dl = mw_now_ns() + (uint64_t)WAIT_MS * MS;
    for (;;) {
        mw_err_t err = {0};
        int r = mw_svc_listen(&v->svc, url, &test_protocol, &o, &err);
        if (r == 0) break;
        if (cfg->port == 0 || mw_now_ns() > dl) fail_msg("listen %s: %s: %s", url, mw_errname(r), mw_err_text(&err));
        poll_all(f);
    }
    v->port = mw_svc_port(v->svc);
    snprintf(v->url, sizeof v->url, "%s://127.0.0.1:%d%s", scheme, v->port, path);
    return v;
}

static void srv_stop(srv_t *v) {
    mw_svc_free(v->svc);
    v->svc = NULL;
}

/* ---- Clt helpers ------------------------------------------------------------ */

static ep_t *ep_new(fx_t *f, mw_io_t *io) {
    assert_true(f->nep < MAX_EP);
    ep_t *e = &f->eps[f->nep++];
    e->f = f;
    e->io = io;
    return e;
}

/* Event mode on e->io with every callback; reconnect off, jitter 0. */
static void ep_opts(ep_t *e, mw_clt_opts_t *o) {
    mw_clt_opts_init(o);
    o->mode = MW_MODE_EVENT;
    o->event.io = e->io;
    o->event.on_connect = ep_on_connect;
    o->event.on_msg = ep_on_msg;
    o->event.on_close = ep_on_close;
    o->event.can_reconnect = ep_can_reconnect;
    o->event.on_heartbeat = ep_on_heartbeat;
    o->ud = e;
    o->retry.jitter = 0;
}

static void ep_reconnect(mw_clt_opts_t *o, int64_t min_ns, int64_t max_ns) {
    o->event.reconnect = true;
    o->retry.min_delay_ns = min_ns;
    o->retry.max_delay_ns = max_ns;
}

static void ep_connect(ep_t *e, const char *url, const mw_clt_opts_t *o) {
    mw_err_t err = {0};
    int r = mw_clt_connect(&e->c, url, &test_protocol, o, &err);
    if (r != 0) fail_msg("connect %s: %s: %s", url, mw_errname(r), mw_err_text(&err));
    assert_non_null(e->c);
}

static void send_pings(fx_t *f, ep_t *e, int n) {
    for (int i = 0; i < n; i++) {
        ping_t p = {.seq = e->sent, .sent_ns = e->sent * 3};
        uint64_t dl = mw_now_ns() + (uint64_t)WAIT_MS * MS;
        int r;
        while ((r = mw_clt_send(e->c, ping_schema(), &p)) == MW_EAGAIN) {
            if (mw_now_ns() > dl) fail_msg("send ping %" PRIu64 ": tx stays full", p.seq);
            poll_all(f);
        }
        if (r != 0) fail_msg("send ping %" PRIu64 ": %s: %s", p.seq, mw_errname(r), mw_clt_last_error(e->c));
        e->sent++;
    }
}

/* n pings out, n echoes back in order. */
static void exchange(fx_t *f, ep_t *e, int n) {
    send_pings(f, e, n);
    WAIT_FOR(f, WAIT_MS, e->next_seq == e->sent);
    assert_int_equal(e->seq_errors, 0);
}

static void expect_reason(int got, int want, const char *what) {
    if (got != want) fail_msg("%s: reason %s, want %s", what, mw_errname(got), mw_errname(want));
}

static void expect_state(mw_clt_t *c, mw_clt_state_t want) {
    mw_clt_state_t st = mw_clt_state(c);
    if (st != want) fail_msg("state %s, want %s", mw_clt_state_name(st), mw_clt_state_name(want));
}

static bool reconnecting(mw_clt_state_t st) {
    return st == MW_CLT_BACKOFF || st == MW_CLT_RESOLVING || st == MW_CLT_CONNECTING || st == MW_CLT_HANDSHAKING;
}

/* ==== 1. reconnect after the server restarts ==================================== */

/* One body over scheme x backend x serdes. */
static void run_restart(fx_t *f, const char *scheme, const char *backend, const char *serdes) {
    mw_io_t *io = fx_io(f, backend, false);
    srv_t *s1 = srv_start(f, &(srv_cfg_t){.scheme = scheme, .serdes = serdes});
    ep_t *e = ep_new(f, io);
    mw_clt_opts_t o;
    ep_opts(e, &o);
    ep_reconnect(&o, 10 * MS, 50 * MS);
    o.conn.serdes = serdes;
    ep_connect(e, s1->url, &o);
    WAIT_FOR(f, WAIT_MS, e->connects == 1);
    expect_state(e->c, MW_CLT_OPEN);
    assert_int_equal(mw_clt_connects(e->c), 1);
    exchange(f, e, 5);

    int port = s1->port;
    srv_stop(s1); /* the port closes */
    WAIT_FOR(f, WAIT_MS, e->closes >= 4);
    expect_reason(e->reasons[0], MW_ECLOSED, "the drop");
    for (int i = 1; i < e->closes && i < MAX_EV; i++) {
        if (e->reasons[i] != MW_ECONNREFUSED)
            fail_msg("attempt %d: %s (%s), want MW_ECONNREFUSED", i, mw_errname(e->reasons[i]), e->last_close_text);
    }
    assert_true(reconnecting(mw_clt_state(e->c)));
    assert_int_equal(e->connects, 1);
    ping_t p = {.seq = 99};
    assert_int_equal(mw_clt_send(e->c, ping_schema(), &p), MW_ECLOSED);
    /* delays after the drop: 10, 20, 40 ms (timers never fire early) */
    for (int i = 0; i < 3; i++) {
        uint64_t d = e->close_at[i + 1] - e->close_at[i];
        uint64_t want = (uint64_t)(10 << i) * MS;
        if (d < want) fail_msg("delay %d: %" PRIu64 " us, want >= %" PRIu64 " us", i, d / 1000, want / 1000);
    }

    srv_t *s2 = srv_start(f, &(srv_cfg_t){.scheme = scheme, .serdes = serdes, .port = port});
    assert_int_equal(s2->port, port);
    WAIT_FOR(f, WAIT_MS, e->connects == 2);
    expect_state(e->c, MW_CLT_OPEN);
    assert_int_equal(mw_clt_connects(e->c), 2);
    exchange(f, e, 5);
    assert_int_equal(atomic_load(&s2->accepts), 1);
    assert_int_equal(atomic_load(&s2->errors), 0);
    assert_int_equal(e->wrong_state, 0);
}

static void test_restart_tcp_epoll_fixed(void **state) { run_restart(*state, "tcp", "epoll", "fixed"); }
static void test_restart_tcp_libevent_msgpack(void **state) { run_restart(*state, "tcp", "libevent", "msgpack"); }
static void test_restart_tcp_direct_text(void **state) { run_restart(*state, "tcp", "direct", "text"); }
static void test_restart_ws_epoll_text(void **state) { run_restart(*state, "ws", "epoll", "text"); }
static void test_restart_ws_libevent_fixed(void **state) { run_restart(*state, "ws", "libevent", "fixed"); }
static void test_restart_ws_direct_msgpack(void **state) { run_restart(*state, "ws", "direct", "msgpack"); }

/* mw_clt_close stops an endpoint for good: from the test thread while it
 * waits in backoff, and from inside its own on_close. */
static void test_close_stops_a_reconnecting_endpoint_for_good(void **state) {
    fx_t *f = *state;
    mw_io_t *io = fx_io(f, "epoll", false);
    int port = closed_port(f);
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    ep_t *a = ep_new(f, io), *b = ep_new(f, io);
    mw_clt_opts_t o;
    ep_opts(a, &o);
    ep_reconnect(&o, 10 * MS, 20 * MS);
    ep_connect(a, url, &o);
    ep_opts(b, &o);
    ep_reconnect(&o, 10 * MS, 20 * MS);
    b->close_in_close = true;
    ep_connect(b, url, &o);
    WAIT_FOR(f, WAIT_MS, a->closes == 1 && b->closes == 1);
    expect_state(a->c, MW_CLT_BACKOFF);
    expect_state(b->c, MW_CLT_CLOSED);
    mw_clt_close(a->c);
    expect_state(a->c, MW_CLT_CLOSED);
    pump_for(f, 60); /* three times the longest backoff */
    assert_int_equal(a->closes, 1);
    assert_int_equal(b->closes, 1);
    expect_state(a->c, MW_CLT_CLOSED);
    expect_state(b->c, MW_CLT_CLOSED);
    if (b->can_calls) fail_msg("can_reconnect called %d times after mw_clt_close in on_close", b->can_calls);
}

/* ==== 2. backoff timing on a fake clock ====================================== */

/* A Clt on a fake-clock io to a port that refuses: options in *o, URL in url. */
static ep_t *refused_ep(fx_t *f, mw_clt_opts_t *o, char *url, size_t cap, int64_t min_ns, int64_t max_ns,
                        double jitter) {
    mw_io_t *io = fx_io(f, "epoll", true);
    snprintf(url, cap, "tcp://127.0.0.1:%d", closed_port(f));
    ep_t *e = ep_new(f, io);
    ep_opts(e, o);
    ep_reconnect(o, min_ns, max_ns);
    o->retry.jitter = jitter;
    return e;
}

static void check_refused(const ep_t *e) {
    for (int i = 0; i < e->closes && i < MAX_EV; i++)
        if (e->reasons[i] != MW_ECONNREFUSED)
            fail_msg("attempt %d: %s, want MW_ECONNREFUSED", i, mw_errname(e->reasons[i]));
}

static void test_backoff_doubles_to_the_cap_exactly_without_jitter(void **state) {
    fx_t *f = *state;
    mw_clt_opts_t o;
    char url[64];
    ep_t *e = refused_ep(f, &o, url, sizeof url, 100 * MS, 800 * MS, 0);
    ep_connect(e, url, &o);
    STEP_UNTIL(f, 3000, e->closes == 6);
    check_refused(e);
    assert_int_equal(e->close_at[0], FAKE_T0); /* the first attempt at once */
    static const int64_t want[] = {100, 200, 400, 800, 800};
    for (int i = 0; i < 5; i++) {
        int64_t d = (int64_t)(e->close_at[i + 1] - e->close_at[i]);
        if (d != want[i] * MS) fail_msg("delay %d: %" PRId64 " us, want %" PRId64 " ms", i, d / 1000, want[i]);
    }
    expect_state(e->c, MW_CLT_BACKOFF);
    assert_int_equal(e->connects, 0);
    /* asked before every reconnect, with the count of consecutive failures */
    assert_true(e->can_calls >= 6);
    for (int i = 0; i < 6; i++) assert_int_equal(e->can_attempt[i], i + 1);
}

static void test_backoff_with_jitter_stays_within_half_to_full_delay(void **state) {
    fx_t *f = *state;
    mw_clt_opts_t o;
    char url[64];
    ep_t *e = refused_ep(f, &o, url, sizeof url, 100 * MS, 800 * MS, 0.5);
    ep_connect(e, url, &o);
    STEP_UNTIL(f, 8000, e->closes == 9);
    check_refused(e);
    int below = 0;
    for (int i = 0; i < 8; i++) {
        int64_t d = (int64_t)(e->close_at[i + 1] - e->close_at[i]);
        int64_t full = (100 << (i < 3 ? i : 3)) * MS;
        /* the step is 1 ms and full is a whole number of ms: [full/2, full] exactly */
        if (d < full / 2 || d > full)
            fail_msg("delay %d: %" PRId64 " us, want within [%" PRId64 ", %" PRId64 "] ms", i, d / 1000,
                     full / 2 / MS, full / MS);
        below += d < full;
    }
    assert_true(below > 0); /* the jitter is applied at all */
}

static void test_can_reconnect_false_ends_the_endpoint(void **state) {
    fx_t *f = *state;
    mw_clt_opts_t o;
    char url[64];
    ep_t *e = refused_ep(f, &o, url, sizeof url, 100 * MS, 800 * MS, 0);
    e->stop_at = 3;
    ep_connect(e, url, &o);
    STEP_UNTIL(f, 1000, mw_clt_state(e->c) == MW_CLT_CLOSED);
    assert_int_equal(e->closes, 3);
    check_refused(e);
    assert_int_equal(e->can_calls, 3);
    for (int i = 0; i < 3; i++) assert_int_equal(e->can_attempt[i], i + 1);
    assert_int_equal(e->close_at[1] - e->close_at[0], 100 * MS);
    assert_int_equal(e->close_at[2] - e->close_at[1], 200 * MS);
    for (int i = 0; i < 50; i++) fake_advance(f, 100 * MS); /* 5 s: nothing more */
    assert_int_equal(e->closes, 3);
    assert_int_equal(e->can_calls, 3);
    expect_state(e->c, MW_CLT_CLOSED);
}

static void test_max_attempts_ends_the_endpoint(void **state) {
    fx_t *f = *state;
    mw_clt_opts_t o;
    char url[64];
    ep_t *e = refused_ep(f, &o, url, sizeof url, 100 * MS, 800 * MS, 0);
    o.retry.max_attempts = 3;
    ep_connect(e, url, &o);
    STEP_UNTIL(f, 1000, mw_clt_state(e->c) == MW_CLT_CLOSED);
    assert_int_equal(e->closes, 3);
    check_refused(e);
    assert_int_equal(e->close_at[2] - e->close_at[0], 300 * MS);
    assert_int_equal(e->can_calls, 2); /* asked before each of the two reconnects only */
    for (int i = 0; i < 50; i++) fake_advance(f, 100 * MS);
    assert_int_equal(e->closes, 3);
    expect_state(e->c, MW_CLT_CLOSED);
}

/* ==== 2b. one retry policy: the first connect and the reconnects ============== */

/* Without event.reconnect, an async first connect still retries per
 * opts.retry (here 4 attempts, 10 ms doubling to a 40 ms cap), then ends. */
static void test_first_connect_retries_per_the_policy_without_reconnect(void **state) {
    fx_t *f = *state;
    mw_clt_opts_t o;
    char url[64];
    ep_t *e = refused_ep(f, &o, url, sizeof url, 10 * MS, 40 * MS, 0);
    o.event.reconnect = false;
    o.event.async_connect = true;
    o.retry.max_attempts = 4;
    ep_connect(e, url, &o);
    STEP_UNTIL(f, 1000, mw_clt_state(e->c) == MW_CLT_CLOSED);
    assert_int_equal(e->closes, 4);
    check_refused(e);
    assert_int_equal(e->close_at[0], FAKE_T0);
    static const int64_t want[] = {10, 20, 40};
    for (int i = 0; i < 3; i++) assert_int_equal(e->close_at[i + 1] - e->close_at[i], want[i] * MS);
    assert_int_equal(e->can_calls, 3); /* asked before each retry */
    for (int i = 0; i < 50; i++) fake_advance(f, 100 * MS);
    assert_int_equal(e->closes, 4);
    assert_int_equal(e->connects, 0);
}

/* The default (max_attempts 0) without event.reconnect: one attempt only. */
static void test_first_connect_default_policy_is_one_attempt_without_reconnect(void **state) {
    fx_t *f = *state;
    mw_clt_opts_t o;
    char url[64];
    ep_t *e = refused_ep(f, &o, url, sizeof url, 10 * MS, 40 * MS, 0);
    o.event.reconnect = false;
    o.event.async_connect = true;
    assert_int_equal(o.retry.max_attempts, 0);
    ep_connect(e, url, &o);
    STEP_UNTIL(f, 1000, mw_clt_state(e->c) == MW_CLT_CLOSED);
    for (int i = 0; i < 20; i++) fake_advance(f, 100 * MS);
    assert_int_equal(e->closes, 1);
    assert_int_equal(e->can_calls, 0);
}

/* Delays between consecutive close_at[from..from+n]. */
static void expect_delays(const ep_t *e, int from, const int64_t *want_ms, int n, const char *what) {
    for (int i = 0; i < n; i++) {
        int64_t d = (int64_t)(e->close_at[from + i + 1] - e->close_at[from + i]);
        if (d != want_ms[i] * MS)
            fail_msg("%s: delay %d: %" PRId64 " us, want %" PRId64 " ms", what, i, d / 1000, want_ms[i]);
    }
}

/* One policy, one count: a first connect that fails three times, a server
 * that appears (the count starts again), a drop, and reconnects that fail:
 * the delays after the drop are those of the first connect, and with the
 * default max_attempts (0) and event.reconnect the endpoint never gives up. */
static void test_first_connect_and_reconnects_follow_one_policy(void **state) {
    fx_t *f = *state;
    mw_clt_opts_t o;
    char url[64];
    ep_t *e = refused_ep(f, &o, url, sizeof url, 10 * MS, 80 * MS, 0);
    assert_int_equal(o.retry.max_attempts, 0);
    int port = atoi(strrchr(url, ':') + 1);
    ep_connect(e, url, &o);
    STEP_UNTIL(f, 1000, e->closes == 3);
    static const int64_t first[] = {10, 20, 40, 80, 80, 80, 80, 80, 80, 80};
    expect_delays(e, 0, first, 2, "first connect");
    /* the port starts listening (on the same fake-clock io): the next attempt, 40 ms on, connects */
    close(f->fds[f->nfds - 1]);
    f->fds[f->nfds - 1] = -1;
    srv_t *v = srv_start(f, &(srv_cfg_t){.io = e->io, .port = port});
    STEP_UNTIL(f, 1000, e->connects == 1);
    assert_int_equal(e->connect_at[0], e->close_at[2] + 40 * MS);
    exchange(f, e, 3);
    /* the drop, then refusals: the same delays again, from the first one */
    srv_stop(v);
    STEP_UNTIL(f, 5000, e->closes == 3 + 1 + 10);
    expect_reason(e->reasons[3], MW_ECLOSED, "the drop");
    for (int i = 4; i < e->closes; i++) expect_reason(e->reasons[i], MW_ECONNREFUSED, "a reconnect");
    expect_delays(e, 3, first, 10, "after the drop");
    assert_true(reconnecting(mw_clt_state(e->c))); /* no limit by default */
    assert_int_equal(e->can_attempt[3], 1); /* the drop is the first failure of a new count */
}

/* The connect timeout covers the whole attempt: a peer that completes TCP (a
 * listener's backlog) but never answers the WebSocket upgrade. */
static void test_connect_timeout_covers_a_stalled_handshake(void **state) {
    fx_t *f = *state;
    mw_io_t *io = fx_io(f, "epoll", true);
    mw_err_t err = {0};
    int r = mw__tcp_listen(&f->lis, "127.0.0.1", "0", NULL, &err);
    if (r != 0) fail_msg("listen: %s", mw_err_text(&err));
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/feed", mw__listener_port(f->lis));
    ep_t *e = ep_new(f, io);
    mw_clt_opts_t o;
    ep_opts(e, &o);
    ep_reconnect(&o, 100 * MS, 800 * MS);
    o.retry.max_attempts = 2;
    o.connect_timeout_ns = 1000 * MS;
    ep_connect(e, url, &o);
    settle(f);
    expect_state(e->c, MW_CLT_HANDSHAKING);
    STEP_UNTIL(f, 3000, mw_clt_state(e->c) == MW_CLT_CLOSED);
    assert_int_equal(e->closes, 2);
    expect_reason(e->reasons[0], MW_ETIMEDOUT, "stalled handshake");
    expect_reason(e->reasons[1], MW_ETIMEDOUT, "stalled handshake, again");
    assert_int_equal(e->close_at[0], FAKE_T0 + 1000 * MS);
    assert_int_equal(e->close_at[1], FAKE_T0 + 2100 * MS); /* + 100 ms backoff + 1 s */
    assert_non_null(strstr(e->close_text[0], "1000 ms"));
    assert_int_equal(e->connects, 0);
}

/* ==== 3. TTL rotation ========================================================== */

static void test_ttl_rotates_the_connection_without_backoff(void **state) {
    fx_t *f = *state;
    mw_io_t *io = fx_io(f, "epoll", true);
    srv_t *v = srv_start(f, &(srv_cfg_t){.io = io});
    ep_t *e = ep_new(f, io);
    mw_clt_opts_t o;
    ep_opts(e, &o);
    ep_reconnect(&o, 100 * MS, 800 * MS); /* a backoff would show as 100 ms */
    o.event.ttl_ns = 100 * MS;
    ep_connect(e, v->url, &o);
    settle(f);
    assert_int_equal(e->connects, 1);
    uint64_t t1 = e->connect_at[0];
    exchange(f, e, 3);

    for (int k = 1; k <= 2; k++) {
        STEP_UNTIL(f, 200, e->closes == k);
        expect_reason(e->reasons[k - 1], MW_ESTATE, "rotation");
        if (e->close_at[k - 1] != t1 + 100 * MS)
            fail_msg("rotation %d after %" PRId64 " us, want 100 ms", k, (int64_t)(e->close_at[k - 1] - t1) / 1000);
        if (k == 1) assert_non_null(strstr(e->close_text[0], "ttl"));
        /* reconnected at the same fake time: no backoff */
        WAIT_FOR(f, WAIT_MS, e->connects == k + 1);
        assert_int_equal(e->connect_at[k], e->close_at[k - 1]);
        WAIT_FOR(f, WAIT_MS, atomic_load(&v->accepts) == (unsigned)k + 1 && atomic_load(&v->closes) == (unsigned)k);
        expect_reason(atomic_load(&v->last_reason), MW_ECLOSED, "svc side of the rotation");
        assert_int_equal(mw_clt_connects(e->c), k + 1);
        expect_state(e->c, MW_CLT_OPEN);
        exchange(f, e, 3);
        t1 = e->connect_at[k];
    }
    assert_int_equal(atomic_load(&v->pings), 9);
    assert_int_equal(e->wrong_state, 0);
}

/* ==== 4. idle timeout and heartbeat ========================================== */

static void test_idle_timeout_drops_a_silent_connection_then_reconnects(void **state) {
    fx_t *f = *state;
    mw_io_t *io = fx_io(f, "epoll", true);
    srv_t *v = srv_start(f, &(srv_cfg_t){.io = io, .quiet = true});
    ep_t *e = ep_new(f, io);
    mw_clt_opts_t o;
    ep_opts(e, &o);
    ep_reconnect(&o, 20 * MS, 800 * MS);
    o.event.idle_timeout_ns = 50 * MS;
    ep_connect(e, v->url, &o);
    settle(f);
    assert_int_equal(e->connects, 1);
    uint64_t t1 = e->connect_at[0];
    send_pings(f, e, 3); /* sending is not input */
    WAIT_FOR(f, WAIT_MS, atomic_load(&v->pings) == 3);

    STEP_UNTIL(f, 100, e->closes == 1);
    expect_reason(e->reasons[0], MW_ETIMEDOUT, "idle");
    assert_int_equal(e->close_at[0] - t1, 50 * MS);
    assert_non_null(strstr(e->close_text[0], "nothing received"));
    WAIT_FOR(f, WAIT_MS, atomic_load(&v->closes) == 1);

    STEP_UNTIL(f, 100, e->connects == 2);
    assert_int_equal(e->connect_at[1] - e->close_at[0], 20 * MS); /* min_delay after a drop */
    uint64_t t2 = e->connect_at[1];

    /* input postpones the timeout: a message at +30 ms moves it to +80 ms */
    fake_advance(f, 30 * MS);
    ping_t p = {.seq = 7, .sent_ns = 21};
    assert_int_equal(mw_svc_send_to(v->svc, atomic_load(&v->last_id), ping_schema(), &p), 0);
    WAIT_FOR(f, WAIT_MS, e->msgs == 1);
    STEP_UNTIL(f, 100, e->closes == 2);
    expect_reason(e->reasons[1], MW_ETIMEDOUT, "idle after input");
    if (e->close_at[1] - t2 != 80 * MS)
        fail_msg("idle drop after %" PRIu64 " us, want 80 ms", (e->close_at[1] - t2) / 1000);
}

static void test_heartbeat_runs_while_open_and_keeps_an_idle_svc_happy(void **state) {
    fx_t *f = *state;
    mw_io_t *io = fx_io(f, "epoll", true);
    srv_t *v = srv_start(f, &(srv_cfg_t){.io = io, .quiet = true, .idle_timeout_ns = 100 * MS});
    ep_t *e = ep_new(f, io);
    mw_clt_opts_t o;
    ep_opts(e, &o);
    ep_reconnect(&o, 100 * MS, 800 * MS);
    o.event.heartbeat_ns = 30 * MS;
    e->hb_send = true;
    ep_connect(e, v->url, &o);
    settle(f);
    assert_int_equal(e->connects, 1);
    uint64_t t1 = e->connect_at[0];

    for (int i = 0; i < 1000; i++) fake_advance(f, MS);
    assert_int_equal(e->closes, 0);
    assert_int_equal(atomic_load(&v->closes), 0);
    assert_int_equal(e->hbs, 33);
    for (int i = 0; i < 33; i++) assert_int_equal(e->hb_at[i] - t1, (uint64_t)(i + 1) * 30 * MS);
    WAIT_FOR(f, WAIT_MS, atomic_load(&v->hbs) == 33);
    assert_int_equal(e->send_errors, 0);

    /* without the heartbeat messages the Svc drops the Clt after 100 ms */
    e->hb_send = false;
    STEP_UNTIL(f, 300, e->closes == 1);
    expect_reason(e->reasons[0], MW_ECLOSED, "dropped by the svc");
    assert_int_equal(atomic_load(&v->closes), 1);
    expect_reason(atomic_load(&v->last_reason), MW_ETIMEDOUT, "svc idle timeout");
    assert_int_equal(e->close_at[0] - t1, 1090 * MS); /* last heartbeat at 990 ms */
    /* no heartbeats while not open */
    int hbs = e->hbs;
    fake_advance(f, 50 * MS);
    expect_state(e->c, MW_CLT_BACKOFF);
    assert_int_equal(e->hbs, hbs);
    assert_int_equal(e->wrong_state, 0);
}

/* ==== 5. async name resolution on every backend ================================ */

static void test_endpoint_resolves_names_on_every_backend(void **state) {
    fx_t *f = *state;
    srv_t *v = srv_start(f, &(srv_cfg_t){0});
    static const char *const backends[] = {"epoll", "libevent", "direct"};
    for (int b = 0; b < 3; b++) {
        mw_io_t *io = fx_io(f, backends[b], false);
        ep_t *e = ep_new(f, io);
        mw_clt_opts_t o;
        ep_opts(e, &o);
        o.event.async_connect = true;
        char url[96];
        snprintf(url, sizeof url, "tcp://localhost:%d", v->port);
        ep_connect(e, url, &o);
        expect_state(e->c, MW_CLT_RESOLVING);
        WAIT_FOR(f, WAIT_MS, e->connects == 1 || e->closes > 0);
        if (e->closes) fail_msg("%s: %s: %s", backends[b], mw_errname(e->reasons[0]), e->last_close_text);
        char name[64];
        assert_int_equal(mw_clt_local_name(e->c, name, sizeof name), 0);
        if (strncmp(name, "127.0.0.1:", 10) != 0) fail_msg("%s: local name %s", backends[b], name);
        exchange(f, e, 3);

        ep_t *bad = ep_new(f, io);
        ep_opts(bad, &o);
        o.event.async_connect = true;
        o.connect_timeout_ns = 8 * MW_NS_PER_S;
        snprintf(url, sizeof url, "tcp://nosuch.invalid:%d", v->port);
        ep_connect(bad, url, &o);
        WAIT_FOR(f, 15000, bad->closes == 1);
        if (bad->reasons[0] != MW_ERESOLVE && bad->reasons[0] != MW_ETIMEDOUT)
            fail_msg("%s: nosuch.invalid: %s: %s", backends[b], mw_errname(bad->reasons[0]), bad->last_close_text);
        assert_non_null(strstr(bad->close_text[0], "nosuch.invalid"));
        expect_state(bad->c, MW_CLT_CLOSED);
        assert_int_equal(bad->connects, 0);
        pump_for(f, 20);
        assert_int_equal(bad->closes, 1);
        assert_int_equal(e->closes, 0);
    }
}

/* ==== 6. on_connect after every reconnect ======================================== */

static void test_on_connect_subscribes_after_every_reconnect(void **state) {
    fx_t *f = *state;
    mw_io_t *io = fx_io(f, "epoll", false);
    srv_t *v = srv_start(f, &(srv_cfg_t){.io = io});
    ep_t *e = ep_new(f, io);
    mw_clt_opts_t o;
    ep_opts(e, &o);
    ep_reconnect(&o, 10 * MS, 50 * MS);
    e->subscribe = true;
    ep_connect(e, v->url, &o);
    for (unsigned k = 1; k <= 4; k++) {
        WAIT_FOR(f, WAIT_MS, e->connects == (int)k && atomic_load(&v->subs) == k);
        exchange(f, e, 2);
        if (k == 4) break;
        assert_int_equal(mw_svc_close_conn(v->svc, atomic_load(&v->last_id)), 0);
        WAIT_FOR(f, WAIT_MS, e->closes == (int)k);
        expect_reason(e->reasons[k - 1], MW_ECLOSED, "closed by the svc");
    }
    assert_int_equal(mw_clt_connects(e->c), 4);
    assert_int_equal(atomic_load(&v->accepts), 4);
    assert_int_equal(atomic_load(&v->subs), 4);
    assert_int_equal(atomic_load(&v->first_sub), 4); /* the first message of every connection */
    assert_int_equal(e->send_errors, 0);
}

/* ==== 7. record / replay ===================================================== */

#define REC_HDR 12

typedef struct rec_ent {
    uint64_t off, ts;
    uint32_t len;
} rec_ent_t;

/* Reads a recording's record table (mw_record.h format). Returns the count. */
static int read_recording(const char *path, rec_ent_t *r, int cap, uint64_t *size) {
    FILE *fp = fopen(path, "rb");
    if (!fp) fail_msg("open %s", path);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *size = (uint64_t)n;
    assert_true(n >= 18);
    assert_memory_equal(b, "MWREC\0\1\0", 8);
    uint64_t off = 18 + (uint64_t)(b[16] | b[17] << 8);
    int k = 0;
    while (off < (uint64_t)n) {
        assert_true(off + REC_HDR <= (uint64_t)n);
        assert_true(k < cap);
        uint64_t ts = 0;
        for (int i = 7; i >= 0; i--) ts = ts << 8 | b[off + (uint64_t)i];
        uint32_t len = (uint32_t)b[off + 8] | (uint32_t)b[off + 9] << 8 | (uint32_t)b[off + 10] << 16 |
                       (uint32_t)b[off + 11] << 24;
        r[k++] = (rec_ent_t){off, ts, len};
        off += REC_HDR + len;
    }
    assert_int_equal(off, (uint64_t)n);
    free(b);
    return k;
}

static void copy_prefix(const char *from, const char *to, uint64_t n) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    uint8_t *b = malloc(n);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, n, in), n);
    assert_int_equal(fwrite(b, 1, n, out), n);
    free(b);
    fclose(in);
    fclose(out);
}

static const mw_schema_t *make_msg(int i, test_msg_t *m) {
    memset(m, 0, sizeof *m);
    switch (i % 5) {
    case 0: {
        all_kinds_t *a = &m->all_kinds;
        a->i8 = (int8_t)-i;
        a->i16 = (int16_t)(-300 * i);
        a->i32 = -70000 * i;
        a->i64 = -((int64_t)i << 40);
        a->u8 = (uint8_t)(200 + i);
        a->u16 = (uint16_t)(60000 + i);
        a->u32 = 4000000000u + (uint32_t)i;
        a->u64 = (UINT64_C(1) << 63) + (uint64_t)i;
        a->f64 = i + 0.25;
        a->flag = i & 1;
        snprintf(a->sym, sizeof a->sym, "SYM%u", (unsigned)i % 1000u);
        for (int k = 0; k < 4; k++) a->raw[k] = (uint8_t)(i * 4 + k);
        a->side = (uint8_t)(i % 3);
        return all_kinds_schema();
    }
    case 4:
        m->heartbeat.unused = (i / 5) & 1;
        return heartbeat_schema();
    default:
        m->ping.seq = (uint64_t)i;
        m->ping.sent_ns = (uint64_t)i * 1000 + 7;
        return ping_schema();
    }
}

/* A live session over scheme ("ws" or "tcp") recorded on the Clt side; the Svc
 * sends NMSGS messages in bursts written while the Clt is not polled, so each
 * burst arrives in one read. Returns the Clt's log (the Clt is freed: the
 * recording is complete). */
static ep_t *record_live(fx_t *f, const char *scheme, const char *path) {
    mw_io_t *io = fx_io(f, "epoll", false);
    srv_t *v = srv_start(f, &(srv_cfg_t){.scheme = scheme, .io = io, .quiet = true});
    ep_t *e = ep_new(f, io);
    mw_clt_opts_t o;
    ep_opts(e, &o);
    o.event.async_connect = true;
    o.rx_timestamps = true;
    o.tr.record_path = path;
    e->logging = true;
    ep_connect(e, v->url, &o);
    WAIT_FOR(f, WAIT_MS, e->connects == 1 || e->closes > 0);
    if (e->closes) fail_msg("live %s: %s", scheme, e->last_close_text);
    WAIT_FOR(f, WAIT_MS, atomic_load(&v->accepts) == 1);
    static const int bursts[] = {1, 10, 3, 17, 5, 14};
    int seq = 0;
    for (size_t b = 0; b < sizeof bursts / sizeof bursts[0]; b++) {
        for (int k = 0; k < bursts[b]; k++, seq++) {
            test_msg_t m;
            const mw_schema_t *s = make_msg(seq, &m);
            int r = mw_svc_send_to(v->svc, atomic_load(&v->last_id), s, &m);
            if (r != 0) fail_msg("svc send %d: %s", seq, mw_errname(r));
        }
        WAIT_FOR(f, WAIT_MS, e->nlog == seq);
    }
    assert_int_equal(seq, NMSGS);
    /* bursts share a read */
    int shared = 0;
    for (int i = 1; i < e->nlog; i++) shared += e->log[i].rx_ts == e->log[i - 1].rx_ts;
    if (shared == 0) fail_msg("live %s: no two messages share a read", scheme);
    for (int i = 0; i < e->nlog; i++) assert_true(e->log[i].rx_ts > 0);
    mw_clt_free(e->c);
    e->c = NULL;
    srv_stop(v);
    return e;
}

typedef struct replay_res {
    ep_t *e;
    int end;
    char err[MW_ERR_TEXT_MAX];
} replay_res_t;

/* Replays a recording through a Clt: event mode on a direct io, or spin mode
 * with mw_clt_recv. ws: under a WebSocket client with MW_WS_REPLAY. */
static replay_res_t replay(fx_t *f, mw_io_t *direct, const char *path, bool ws, bool event) {
    replay_res_t res = {0};
    mw_stream_t *rp, *s;
    mw_err_t err = {0};
    int r = mw_replay_open(&rp, path, &err);
    if (r != 0) fail_msg("replay open %s: %s: %s", path, mw_errname(r), mw_err_text(&err));
    s = rp;
    if (ws) {
        mw_ws_opts_t wo;
        mw_ws_opts_init(&wo);
        wo.flags = MW_WS_REPLAY;
        r = mw_ws_client_wrap(&s, rp, &wo, &err);
        if (r != 0) fail_msg("ws wrap: %s: %s", mw_errname(r), mw_err_text(&err));
    }
    ep_t *e = ep_new(f, event ? direct : NULL);
    e->rp = rp;
    e->logging = true;
    mw_clt_opts_t o;
    if (event) {
        ep_opts(e, &o);
    } else {
        mw_clt_opts_init(&o);
    }
    o.rx_timestamps = true;
    r = mw_clt_open_stream(&e->c, s, &test_protocol, &o, &err);
    if (r != 0) fail_msg("open_stream: %s: %s", mw_errname(r), mw_err_text(&err));
    res.e = e;
    if (event) {
        WAIT_FOR(f, WAIT_MS, e->closes >= 1);
        assert_int_equal(e->connects, 1);
        res.end = e->reasons[0];
        snprintf(res.err, sizeof res.err, "%s", e->close_text[0]);
        expect_state(e->c, MW_CLT_CLOSED);
        return res;
    }
    uint64_t dl = mw_now_ns() + (uint64_t)WAIT_MS * MS;
    for (;;) {
        test_msg_t m;
        const mw_schema_t *sch;
        r = mw_clt_recv(e->c, &sch, &m, sizeof m);
        if (r == 0) ep_log(e, e->c, sch, &m);
        else if (r != MW_EAGAIN) break;
        if (mw_now_ns() > dl) fail_msg("spin replay does not end");
    }
    res.end = r;
    snprintf(res.err, sizeof res.err, "%s", mw_clt_last_error(e->c));
    assert_int_equal(mw_clt_recv(e->c, &(const mw_schema_t *){0}, &(test_msg_t){0}, sizeof(test_msg_t)), r);
    return res;
}

static void expect_same_messages(const ep_t *live, const ep_t *rep, int n, const char *what) {
    for (int i = 0; i < n; i++) {
        if (rep->log[i].tag != live->log[i].tag || strcmp(rep->log[i].text, live->log[i].text) != 0)
            fail_msg("%s: message %d: replayed \"%s\", live \"%s\"", what, i, rep->log[i].text, live->log[i].text);
    }
}

static const char *const mode_name[] = {"spin", "event"};

static void run_replay_messages(fx_t *f, const char *scheme) {
    bool ws = strcmp(scheme, "ws") == 0;
    const char *path = fx_path(f, "live.rec");
    ep_t *live = record_live(f, scheme, path);
    mw_io_t *direct = fx_io(f, "direct", false);
    for (int ev = 0; ev < 2; ev++) {
        replay_res_t r = replay(f, direct, path, ws, ev);
        if (r.end != MW_ECLOSED) fail_msg("%s replay: ended with %s: %s", mode_name[ev], mw_errname(r.end), r.err);
        if (r.e->nlog != NMSGS) fail_msg("%s replay: %d messages, want %d", mode_name[ev], r.e->nlog, NMSGS);
        expect_same_messages(live, r.e, NMSGS, mode_name[ev]);
    }
}

static void run_replay_timestamps(fx_t *f, const char *scheme) {
    bool ws = strcmp(scheme, "ws") == 0;
    const char *path = fx_path(f, "live.rec");
    ep_t *live = record_live(f, scheme, path);
    rec_ent_t recs[256];
    uint64_t size;
    int nrec = read_recording(path, recs, 256, &size);
    mw_io_t *direct = fx_io(f, "direct", false);
    for (int ev = 0; ev < 2; ev++) {
        replay_res_t r = replay(f, direct, path, ws, ev);
        assert_int_equal(r.e->nlog, NMSGS);
        for (int i = 0; i < NMSGS; i++) {
            uint64_t got = r.e->log[i].rx_ts;
            bool recorded = false;
            for (int k = 0; k < nrec; k++) recorded |= recs[k].ts == got;
            if (!recorded)
                fail_msg("%s replay: message %d: rx time %" PRIu64 " is not a recorded time (its chunk: %" PRIu64 ")",
                         mode_name[ev], i, got, r.e->log[i].rp_ts);
            if (got != live->log[i].rx_ts)
                fail_msg("%s replay: message %d: rx time %" PRIu64 ", live %" PRIu64, mode_name[ev], i, got,
                         live->log[i].rx_ts);
        }
        /* messages that shared a read live share one in the replay, and only those */
        for (int i = 1; i < NMSGS; i++) {
            bool lv = live->log[i].rx_ts == live->log[i - 1].rx_ts;
            bool rv = r.e->log[i].rx_ts == r.e->log[i - 1].rx_ts;
            if (lv != rv) fail_msg("%s replay: messages %d and %d: shared a read live %d, in the replay %d",
                                   mode_name[ev], i - 1, i, lv, rv);
        }
    }
}

static int rec_index(const rec_ent_t *recs, int nrec, uint64_t ts) {
    for (int k = 0; k < nrec; k++)
        if (recs[k].ts == ts) return k;
    fail_msg("timestamp %" PRIu64 " is not in the recording", ts);
    return -1;
}

static void run_replay_truncated(fx_t *f, const char *scheme, bool cut_in_header) {
    bool ws = strcmp(scheme, "ws") == 0;
    const char *path = fx_path(f, "live.rec");
    ep_t *live = record_live(f, scheme, path);
    rec_ent_t recs[256];
    uint64_t size;
    int nrec = read_recording(path, recs, 256, &size);
    mw_io_t *direct = fx_io(f, "direct", false);
    /* which record completed each message (from the replay stream itself) */
    replay_res_t full = replay(f, direct, path, ws, true);
    assert_int_equal(full.e->nlog, NMSGS);
    int k = rec_index(recs, nrec, full.e->log[30].rp_ts);
    assert_true(k >= 1);
    int want = 0;
    while (want < NMSGS && rec_index(recs, nrec, full.e->log[want].rp_ts) < k) want++;
    assert_true(want > 0 && want <= 30);
    uint64_t cut = recs[k].off + (cut_in_header ? 5 : REC_HDR + recs[k].len / 2);
    const char *tpath = fx_path(f, "cut.rec");
    copy_prefix(path, tpath, cut);
    char at[48];
    snprintf(at, sizeof at, "offset %" PRIu64, recs[k].off);
    for (int ev = 0; ev < 2; ev++) {
        replay_res_t r = replay(f, direct, tpath, ws, ev);
        if (r.end != MW_EPROTO) fail_msg("%s replay of a cut recording: ended with %s: %s", mode_name[ev], mw_errname(r.end), r.err);
        if (!strstr(r.err, at)) fail_msg("%s replay: error \"%s\" does not name \"%s\"", mode_name[ev], r.err, at);
        if (r.e->nlog != want)
            fail_msg("%s replay of a cut recording: %d messages, want the %d before the cut", mode_name[ev], r.e->nlog, want);
        expect_same_messages(live, r.e, want, mode_name[ev]);
    }
}

static void test_replay_ws_delivers_the_same_messages(void **state) { run_replay_messages(*state, "ws"); }
static void test_replay_tcp_delivers_the_same_messages(void **state) { run_replay_messages(*state, "tcp"); }
static void test_replay_ws_reproduces_rx_timestamps(void **state) { run_replay_timestamps(*state, "ws"); }
static void test_replay_tcp_reproduces_rx_timestamps(void **state) { run_replay_timestamps(*state, "tcp"); }
static void test_replay_ws_truncated_recording_is_eproto_at_the_offset(void **state) {
    run_replay_truncated(*state, "ws", false);
}
static void test_replay_tcp_truncated_recording_is_eproto_at_the_offset(void **state) {
    run_replay_truncated(*state, "tcp", true);
}

/* ==== 8. local binding ======================================================== */

static void test_endpoint_binds_interface_and_local_address(void **state) {
    fx_t *f = *state;
    mw_io_t *io = fx_io(f, "epoll", false);
    srv_t *v = srv_start(f, &(srv_cfg_t){0});
    ep_t *e = ep_new(f, io);
    mw_clt_opts_t o;
    ep_opts(e, &o);
    o.event.async_connect = true;
    o.tcp.bind_iface = "lo";
    o.tcp.bind_addr = "127.0.0.2";
    ep_connect(e, v->url, &o);
    WAIT_FOR(f, WAIT_MS, e->connects == 1 || e->closes > 0);
    if (e->closes) fail_msg("bound connect: %s: %s", mw_errname(e->reasons[0]), e->last_close_text);
    char name[64];
    assert_int_equal(mw_clt_local_name(e->c, name, sizeof name), 0);
    if (strncmp(name, "127.0.0.2:", 10) != 0) fail_msg("local name %s, want 127.0.0.2:*", name);
    char dev[32] = {0};
    socklen_t len = sizeof dev;
    int fd = mw__stream_fd(mw__clt_conn(e->c)->stream);
    assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, dev, &len), 0);
    assert_string_equal(dev, "lo");
    exchange(f, e, 3);

    /* an interface that does not exist fails the attempt with the reason */
    ep_t *bad = ep_new(f, io);
    ep_opts(bad, &o);
    o.event.async_connect = true;
    o.tcp.bind_iface = "nosuch0";
    o.tcp.bind_addr = NULL;
    ep_connect(bad, v->url, &o);
    WAIT_FOR(f, WAIT_MS, bad->closes == 1);
    assert_true(bad->reasons[0] < 0);
    assert_non_null(strstr(bad->close_text[0], "nosuch0"));
    expect_state(bad->c, MW_CLT_CLOSED);
}

/* ==== 9. many endpoints in one loop =========================================== */

#define NEPS 20

static bool all_connects(ep_t **e, int k) {
    for (int i = 0; i < NEPS; i++)
        if (e[i]->connects != k) return false;
    return true;
}

static bool all_closed_once(ep_t **e) {
    for (int i = 0; i < NEPS; i++)
        if (e[i]->closes < 1) return false;
    return true;
}

static bool all_echoed(ep_t **e) {
    for (int i = 0; i < NEPS; i++)
        if (e[i]->next_seq != e[i]->sent) return false;
    return true;
}

static void test_twenty_endpoints_on_one_spin_io_reconnect_together(void **state) {
    fx_t *f = *state;
    mw_io_t *io = fx_io(f, "direct", false);
    srv_t *s1 = srv_start(f, &(srv_cfg_t){0});
    ep_t *e[NEPS];
    for (int i = 0; i < NEPS; i++) {
        e[i] = ep_new(f, io);
        mw_clt_opts_t o;
        ep_opts(e[i], &o);
        ep_reconnect(&o, 10 * MS, 50 * MS);
        ep_connect(e[i], s1->url, &o);
    }
    WAIT_FOR(f, WAIT_MS, all_connects(e, 1));
    for (int i = 0; i < NEPS; i++) send_pings(f, e[i], 100);
    WAIT_FOR(f, WAIT_MS, all_echoed(e));
    for (int i = 0; i < NEPS; i++) assert_int_equal(e[i]->seq_errors, 0);
    assert_int_equal(atomic_load(&s1->pings), NEPS * 100);

    int port = s1->port;
    srv_stop(s1);
    WAIT_FOR(f, WAIT_MS, all_closed_once(e));
    for (int i = 0; i < NEPS; i++) {
        expect_reason(e[i]->reasons[0], MW_ECLOSED, "svc gone");
        if (!reconnecting(mw_clt_state(e[i]->c)))
            fail_msg("endpoint %d: state %s, want reconnecting", i, mw_clt_state_name(mw_clt_state(e[i]->c)));
    }
    srv_t *s2 = srv_start(f, &(srv_cfg_t){.port = port});
    WAIT_FOR(f, WAIT_MS, all_connects(e, 2));
    for (int i = 0; i < NEPS; i++) {
        assert_int_equal(mw_clt_connects(e[i]->c), 2);
        exchange(f, e[i], 10);
    }
    assert_int_equal(atomic_load(&s2->accepts), NEPS);
    assert_int_equal(atomic_load(&s2->pings), NEPS * 10);
}

/* ==== 10. async connect to a closed port; freeing early ============================= */

static void test_async_connect_to_a_closed_port_reports_and_closes(void **state) {
    fx_t *f = *state;
    mw_io_t *io = fx_io(f, "epoll", false);
    int port = closed_port(f);
    ep_t *e = ep_new(f, io);
    mw_clt_opts_t o;
    ep_opts(e, &o);
    o.event.async_connect = true;
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    ep_connect(e, url, &o); /* returns 0: the io reports the outcome */
    assert_int_equal(e->closes, 0);
    assert_int_equal(mw_clt_connects(e->c), 0);
    WAIT_FOR(f, WAIT_MS, e->closes == 1);
    expect_reason(e->reasons[0], MW_ECONNREFUSED, "closed port");
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    if (!strstr(e->close_text[0], addr)) fail_msg("error \"%s\" does not name %s", e->close_text[0], addr);
    assert_non_null(strstr(mw_clt_last_error(e->c), addr));
    expect_state(e->c, MW_CLT_CLOSED);
    assert_false(mw_clt_is_open(e->c));
    pump_for(f, 30);
    assert_int_equal(e->closes, 1);
    assert_int_equal(e->connects, 0);
    ping_t p = {.seq = 1};
    assert_int_equal(mw_clt_send(e->c, ping_schema(), &p), MW_ECLOSED);
}

/* Freed before its io ever ran (the io is then shut down and freed without
 * one poll), freed in the middle of an attempt, in backoff, and from inside
 * its own on_close. Run under ASan: a use after free fails the binary. */
static void test_freeing_an_endpoint_before_or_while_the_io_runs_it_is_safe(void **state) {
    fx_t *f = *state;
    mw_io_t *never = fx_io(f, "epoll", false);
    int port = closed_port(f);
    char url[3][64];
    snprintf(url[0], sizeof url[0], "tcp://127.0.0.1:%d", port);
    snprintf(url[1], sizeof url[1], "tcp://localhost:%d", port);
    snprintf(url[2], sizeof url[2], "ws://localhost:%d/x", port);
    for (int i = 0; i < 3; i++) {
        ep_t *e = ep_new(f, never);
        mw_clt_opts_t o;
        ep_opts(e, &o);
        o.event.async_connect = true;
        if (i == 2) ep_reconnect(&o, 10 * MS, 20 * MS);
        ep_connect(e, url[i], &o);
        mw_clt_free(e->c);
        e->c = NULL;
    }
    /* the documented shutdown, the io never polled: its posts run on freed Clts */
    mw_resolve_shutdown(never);
    mw_io_free(never);
    f->ios[--f->nio] = NULL;
    /* a second io that runs: free after one poll (resolving/connecting), after
     * a failed attempt (backoff), and from inside on_close */
    mw_io_t *io = fx_io(f, "libevent", false);
    ep_t *mid = ep_new(f, io), *back = ep_new(f, io), *self = ep_new(f, io);
    mw_clt_opts_t o;
    ep_opts(mid, &o);
    o.event.async_connect = true;
    ep_connect(mid, url[1], &o);
    ep_opts(back, &o);
    ep_reconnect(&o, 10 * MS, 20 * MS);
    ep_connect(back, url[0], &o);
    ep_opts(self, &o);
    ep_reconnect(&o, 10 * MS, 20 * MS);
    self->free_in_close = true;
    ep_connect(self, url[0], &o);
    poll_all(f);
    mw_clt_free(mid->c);
    mid->c = NULL;
    WAIT_FOR(f, WAIT_MS, back->closes >= 1 && self->closes >= 1);
    mw_clt_free(back->c);
    back->c = NULL;
    assert_null(self->c);
    pump_for(f, 60); /* longer than the backoff: no callback reaches a freed Clt */
    assert_int_equal(self->closes, 1);
    assert_int_equal(back->closes, 1);
    for (int i = 0; i < 3; i++) assert_int_equal(f->eps[i].connects + f->eps[i].closes + f->eps[i].msgs, 0);
    if (self->can_calls) fail_msg("can_reconnect called %d times after mw_clt_free in on_close", self->can_calls);
}

/* ---- sends from another thread ---------------------------------------------- */

static void mt_on_connect(mw_clt_t *c, void *ud) {
    (void)c;
    atomic_fetch_add(&((struct mt_ep *)ud)->connects, 1);
}

static void mt_on_msg(mw_clt_t *c, const mw_schema_t *s, const void *msg, void *ud) {
    (void)c;
    struct mt_ep *m = ud;
    const ping_t *p = msg;
    if (s->tag != ping_TAG || p->sent_ns != p->seq * 3) atomic_fetch_add(&m->bad, 1);
    atomic_fetch_add(&m->echoes, 1);
}

static void mt_on_close(mw_clt_t *c, int reason, void *ud) {
    (void)c;
    (void)reason;
    atomic_fetch_add(&((struct mt_ep *)ud)->closes, 1);
}

/* Sends pings from the test thread until cond holds; counts the outcomes
 * (0, MW_ECLOSED while not connected, MW_EAGAIN while the tx buffer is full). */
#define SEND_UNTIL(f, cond)                                                                  \
    do {                                                                                     \
        uint64_t sdl_ = mw_now_ns() + (uint64_t)WAIT_MS * MS;                                \
        while (!(cond)) {                                                                    \
            ping_t p_ = {.seq = seq, .sent_ns = seq * 3};                                    \
            int r_ = mw_clt_send((f)->thread_clt, ping_schema(), &p_);                       \
            if (r_ == 0) ok++, seq++;                                                        \
            else if (r_ == MW_ECLOSED) closed++;                                             \
            else if (r_ != MW_EAGAIN) fail_msg("send: %s", mw_errname(r_));                  \
            if ((++tries & 31) == 0) sched_yield();                                          \
            if (mw_now_ns() > sdl_) fail_msg("line %d: no \"%s\" within %d ms", __LINE__, #cond, WAIT_MS); \
        }                                                                                    \
    } while (0)

static void test_sends_from_another_thread_during_reconnects_are_safe(void **state) {
    fx_t *f = *state;
    struct mt_ep *m = &f->mt;
    mw_err_t err = {0};
    assert_int_equal(mw_io_new(&f->thread_io, NULL, &err), 0);
    srv_t *s1 = srv_start(f, &(srv_cfg_t){0});
    mw_clt_opts_t o;
    mw_clt_opts_init(&o);
    o.mode = MW_MODE_EVENT;
    o.event.io = f->thread_io;
    o.event.on_connect = mt_on_connect;
    o.event.on_msg = mt_on_msg;
    o.event.on_close = mt_on_close;
    o.ud = m;
    ep_reconnect(&o, 10 * MS, 50 * MS);
    o.retry.jitter = 0;
    int r = mw_clt_connect(&f->thread_clt, s1->url, &test_protocol, &o, &err);
    if (r != 0) fail_msg("connect: %s", mw_err_text(&err));
    assert_int_equal(mw_io_start(f->thread_io, NULL), 0);
    uint64_t seq = 0, ok = 0, closed = 0, tries = 0;
    SEND_UNTIL(f, atomic_load(&m->connects) == 1 && atomic_load(&m->echoes) >= 200);
    int port = s1->port;
    srv_stop(s1);
    SEND_UNTIL(f, atomic_load(&m->closes) >= 3);
    assert_true(closed > 0);
    srv_t *s2 = srv_start(f, &(srv_cfg_t){.port = port});
    int echoes = atomic_load(&m->echoes);
    SEND_UNTIL(f, atomic_load(&m->connects) == 2 && atomic_load(&m->echoes) >= echoes + 200);
    mw_io_stop(f->thread_io);
    assert_true(ok >= 400);
    assert_int_equal(atomic_load(&m->bad), 0);
    assert_int_equal(atomic_load(&s2->errors), 0);
    assert_int_equal(mw_clt_connects(f->thread_clt), 2);
}

/* A Clt over a stream you connected yourself is one connection: it never
 * reconnects, whatever opts.event.reconnect says. */
static void test_open_stream_endpoint_never_reconnects(void **state) {
    fx_t *f = *state;
    mw_io_t *io = fx_io(f, "epoll", false);
    srv_t *v = srv_start(f, &(srv_cfg_t){0});
    mw_stream_t *s;
    mw_err_t err = {0};
    char port[16];
    snprintf(port, sizeof port, "%d", v->port);
    int r = mw__tcp_connect(&s, "127.0.0.1", port, NULL, 5 * MW_NS_PER_S, &err);
    if (r != 0) fail_msg("tcp connect: %s", mw_err_text(&err));
    ep_t *e = ep_new(f, io);
    mw_clt_opts_t o;
    ep_opts(e, &o);
    ep_reconnect(&o, 10 * MS, 20 * MS);
    r = mw_clt_open_stream(&e->c, s, &test_protocol, &o, &err);
    if (r != 0) fail_msg("open_stream: %s: %s", mw_errname(r), mw_err_text(&err));
    WAIT_FOR(f, WAIT_MS, e->connects == 1);
    exchange(f, e, 3);
    WAIT_FOR(f, WAIT_MS, atomic_load(&v->accepts) == 1);
    assert_int_equal(mw_svc_close_conn(v->svc, atomic_load(&v->last_id)), 0);
    WAIT_FOR(f, WAIT_MS, e->closes == 1);
    expect_reason(e->reasons[0], MW_ECLOSED, "closed by the svc");
    expect_state(e->c, MW_CLT_CLOSED);
    pump_for(f, 60);
    assert_int_equal(e->closes, 1);
    assert_int_equal(e->connects, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_restart_tcp_epoll_fixed, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_restart_tcp_libevent_msgpack, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_restart_tcp_direct_text, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_restart_ws_epoll_text, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_restart_ws_libevent_fixed, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_restart_ws_direct_msgpack, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_close_stops_a_reconnecting_endpoint_for_good, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_backoff_doubles_to_the_cap_exactly_without_jitter, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_backoff_with_jitter_stays_within_half_to_full_delay, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_can_reconnect_false_ends_the_endpoint, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_first_connect_retries_per_the_policy_without_reconnect, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_first_connect_default_policy_is_one_attempt_without_reconnect, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_first_connect_and_reconnects_follow_one_policy, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_max_attempts_ends_the_endpoint, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout_covers_a_stalled_handshake, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ttl_rotates_the_connection_without_backoff, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout_drops_a_silent_connection_then_reconnects, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_runs_while_open_and_keeps_an_idle_svc_happy, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_endpoint_resolves_names_on_every_backend, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_on_connect_subscribes_after_every_reconnect, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_replay_ws_delivers_the_same_messages, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_replay_tcp_delivers_the_same_messages, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_replay_ws_reproduces_rx_timestamps, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_replay_tcp_reproduces_rx_timestamps, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_replay_ws_truncated_recording_is_eproto_at_the_offset, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_replay_tcp_truncated_recording_is_eproto_at_the_offset, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_endpoint_binds_interface_and_local_address, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_twenty_endpoints_on_one_spin_io_reconnect_together, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_async_connect_to_a_closed_port_reports_and_closes, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_freeing_an_endpoint_before_or_while_the_io_runs_it_is_safe, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_open_stream_endpoint_never_reconnects, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_sends_from_another_thread_during_reconnects_are_safe, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
