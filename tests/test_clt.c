/* test_clt.c - the Clt against a real Svc over TCP loopback: connect errors
 * and retries, split sender/receiver threads, one poll thread driving several
 * event-mode Clts, a serdes switch at a message boundary, batching, the raw
 * zero-copy path, timeouts, hooks, encode errors, and closing.
 *
 * Unless a test needs otherwise, the peer is an event-mode Svc with one
 * worker that echoes every message (it runs on its own thread, so the test
 * thread is free to block). Waits poll with a deadline; nothing sleeps.
 */
#include "mw_test.h"
#include "test_proto.h"

#include "mw_clock.h"
#include "mw_clt.h"
#include "resolve_impl.h"
#include "mw_svc.h"
#include "clock_impl.h"
#include "clt_impl.h"
#include "conn_impl.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define WAIT_MS 10000
#define WAIT_NS (WAIT_MS * MW_NS_PER_MS)
#define MAX_CLTS 4

/* ---- the peer Svc ------------------------------------------------------------ */

typedef struct peer {
    mw_svc_t *svc;
    mw_mode_t mode;
    bool login;           /* a heartbeat is a login: reply in text, then switch to fixed */
    uint64_t reply_and_close_seq; /* ping with this seq: send 3 pings back, then close */
    bool no_echo;         /* count pings and check their order instead */
    atomic_ulong msgs, sent_hook, recvd_hook, sent_pings_hook;
    atomic_ulong next_seq;
    atomic_int errors;
} peer_t;

static void peer_on_msg(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg, void *ud) {
    peer_t *p = ud;
    atomic_fetch_add(&p->msgs, 1);
    if (p->no_echo) {
        uint64_t want = atomic_load(&p->next_seq);
        if (sch->tag != ping_TAG || ((const ping_t *)msg)->seq != want) atomic_fetch_add(&p->errors, 1);
        atomic_store(&p->next_seq, want + 1);
        return;
    }
    if (p->login && sch->tag == heartbeat_TAG) {
        heartbeat_t ok = {.unused = true};
        if (mw_svc_send_to(s, id, heartbeat_schema(), &ok) != 0) atomic_fetch_add(&p->errors, 1);
        if (mw_svc_set_serdes(s, id, MW_DIR_BOTH, "fixed") != 0) atomic_fetch_add(&p->errors, 1);
        return;
    }
    if (sch->tag == ping_TAG && ((const ping_t *)msg)->seq == p->reply_and_close_seq) {
        for (uint64_t k = 1; k <= 3; k++) {
            ping_t r = {.seq = k, .sent_ns = k * 3};
            if (mw_svc_send_to(s, id, ping_schema(), &r) != 0) atomic_fetch_add(&p->errors, 1);
        }
        if (mw_svc_close_conn(s, id) != 0) atomic_fetch_add(&p->errors, 1);
        return;
    }
    if (mw_svc_send_to(s, id, sch, msg) != 0) atomic_fetch_add(&p->errors, 1);
}

static void peer_sent(void *ud, const mw_schema_t *s, const void *msg) {
    (void)msg;
    peer_t *p = ud;
    atomic_fetch_add(&p->sent_hook, 1);
    if (s->tag == ping_TAG) atomic_fetch_add(&p->sent_pings_hook, 1);
}

static void peer_recvd(void *ud, const mw_schema_t *s, const void *msg) {
    (void)s;
    (void)msg;
    atomic_fetch_add(&((peer_t *)ud)->recvd_hook, 1);
}

typedef struct peer_cfg {
    mw_mode_t mode; /* always set (MW_MODE_SPIN is 0); a NULL cfg: event */
    const char *serdes;
    bool login;
    int rcvbuf; /* accepted sockets' SO_RCVBUF */
    const char *scheme; /* default "tcp"; ws/wss on path "/", tls/wss with the shared certificates */
} peer_cfg_t;

/* ---- fixture: everything a test opens, closed even when it fails ---------------- */

typedef struct fx {
    peer_t peer;
    mw_io_t *io;
    mw_clt_t *clts[MAX_CLTS];
    int nclts;
    char url[64];
    atomic_bool connected; /* an on_connect that sets it */
} fx_t;

static int fx_setup(void **state) {
    fx_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    f->peer.reply_and_close_seq = UINT64_MAX;
    *state = f;
    return 0;
}

/* Event-mode Clts: stop their io first, then free the Clts while the io does
 * not run (a lingering close is cut short; posts still queued hold a
 * reference and find the Clt freed), then free the io. */
static int fx_teardown(void **state) {
    fx_t *f = *state;
    if (f->io) mw_io_stop(f->io);
    for (int i = 0; i < f->nclts; i++) mw_clt_free(f->clts[i]);
    mw_io_free(f->io);
    mw_svc_free(f->peer.svc);
    free(f);
    return 0;
}

static void peer_start(fx_t *f, const peer_cfg_t *cfg) {
    peer_t *p = &f->peer;
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.mode = cfg ? cfg->mode : MW_MODE_EVENT; /* MW_MODE_SPIN is 0: a cfg always names its mode */
    if (cfg && cfg->serdes) o.conn.serdes = cfg->serdes;
    p->mode = o.mode;
    p->login = cfg && cfg->login;
    if (cfg && cfg->rcvbuf) o.tcp.rcvbuf = cfg->rcvbuf;
    if (o.mode == MW_MODE_EVENT) o.event.on_msg = peer_on_msg;
    o.ud = p;
    o.on_sent = peer_sent;
    o.on_recvd = peer_recvd;
    o.hook_ud = p;
    const char *scheme = cfg && cfg->scheme ? cfg->scheme : "tcp";
    const char *path = strncmp(scheme, "ws", 2) == 0 ? "/" : "";
    if (!strcmp(scheme, "tls") || !strcmp(scheme, "wss")) {
        o.tr.tls.cert_file = mw_test_cert("srv.pem");
        o.tr.tls.key_file = mw_test_cert("srv.key");
    }
    char url[64];
    snprintf(url, sizeof url, "%s://127.0.0.1:0%s", scheme, path);
    mw_err_t err = {0};
    int r = mw_svc_listen(&p->svc, url, &test_protocol, &o, &err);
    if (r != 0) fail_msg("svc listen: %s: %s", mw_errname(r), mw_err_text(&err));
    snprintf(f->url, sizeof f->url, "%s://127.0.0.1:%d%s", scheme, mw_svc_port(p->svc), path);
}

/* Spin peer: one receive, handled as the event peer would. */
static void peer_pump(fx_t *f) {
    peer_t *p = &f->peer;
    if (p->mode == MW_MODE_EVENT) return;
    test_msg_t m;
    mw_conn_id_t id;
    const mw_schema_t *sch;
    if (mw_svc_recv(p->svc, &id, &sch, &m, sizeof m) == 0) peer_on_msg(p->svc, id, sch, &m, p);
}

static void clt_opts(mw_clt_opts_t *o, mw_mode_t mode, const char *serdes) {
    mw_clt_opts_init(o);
    o->mode = mode;
    if (serdes) o->conn.serdes = serdes;
    o->sync.timeout_ns = 5 * MW_NS_PER_S;
}

static mw_clt_t *clt_open(fx_t *f, const mw_clt_opts_t *o) {
    assert_true(f->nclts < MAX_CLTS);
    mw_clt_t *c = NULL;
    mw_err_t err = {0};
    int r = mw_clt_connect(&c, f->url, &test_protocol, o, &err);
    if (r != 0) fail_msg("clt connect %s: %s: %s", f->url, mw_errname(r), mw_err_text(&err));
    f->clts[f->nclts++] = c;
    return c;
}

/* Spin or blocking receive of one message, driving a spin peer meanwhile;
 * a blocking Clt's own timeouts are retried until the deadline. */
static int clt_wait(fx_t *f, mw_clt_t *c, const mw_schema_t **s, test_msg_t *m) {
    uint64_t dl = mw__deadline_in(NULL, WAIT_NS);
    for (;;) {
        int r = mw_clt_recv(c, s, m, sizeof *m);
        if (r != MW_EAGAIN && r != MW_ETIMEDOUT) return r; /* blocking: wait again */
        if (mw__deadline_passed(NULL, dl)) fail_msg("clt: nothing received");
        peer_pump(f);
        sched_yield();
    }
}

static void expect_ping(fx_t *f, mw_clt_t *c, uint64_t seq) {
    const mw_schema_t *s;
    test_msg_t m;
    int r = clt_wait(f, c, &s, &m);
    if (r != 0) fail_msg("waiting for ping %" PRIu64 ": %s: %s", seq, mw_errname(r), mw_clt_last_error(c));
    assert_int_equal(s->tag, ping_TAG);
    assert_int_equal(m.ping.seq, seq);
    assert_int_equal(m.ping.sent_ns, seq * 3);
}

static void send_ping(mw_clt_t *c, uint64_t seq) {
    ping_t p = {.seq = seq, .sent_ns = seq * 3};
    int r = mw_clt_send(c, ping_schema(), &p);
    if (r != 0) fail_msg("send ping %" PRIu64 ": %s: %s", seq, mw_errname(r), mw_clt_last_error(c));
}

static void make_all_kinds(all_kinds_t *a, uint64_t i) {
    memset(a, 0, sizeof *a);
    a->i8 = (int8_t)(i % 2 ? INT8_MIN : INT8_MAX);
    a->i16 = (int16_t)(-(int64_t)i);
    a->i32 = (int32_t)(i * 1000003u);
    a->i64 = i % 2 ? INT64_MIN : INT64_MAX - (int64_t)i;
    a->u8 = (uint8_t)i, a->u16 = (uint16_t)(i * 7), a->u32 = UINT32_MAX - (uint32_t)i, a->u64 = UINT64_MAX - i;
    a->f64 = (double)i / 3.0;
    a->flag = i % 2;
    snprintf(a->sym, sizeof a->sym, "s%" PRIu64, i % 1000000);
    for (int k = 0; k < 4; k++) a->raw[k] = (uint8_t)(i + (uint64_t)k * 64);
    a->side = (uint8_t)(i % 3);
}

static void assert_all_kinds_equal(const all_kinds_t *got, const all_kinds_t *want) {
    assert_int_equal(got->i8, want->i8);
    assert_int_equal(got->i16, want->i16);
    assert_int_equal(got->i32, want->i32);
    assert_int_equal(got->i64, want->i64);
    assert_int_equal(got->u8, want->u8);
    assert_int_equal(got->u16, want->u16);
    assert_int_equal(got->u32, want->u32);
    assert_int_equal(got->u64, want->u64);
    assert_memory_equal(&got->f64, &want->f64, sizeof got->f64);
    assert_int_equal(got->flag, want->flag);
    assert_memory_equal(got->sym, want->sym, sizeof got->sym);
    assert_memory_equal(got->raw, want->raw, sizeof got->raw);
    assert_int_equal(got->side, want->side);
}

/* ---- connecting ------------------------------------------------------------------ */

/* A loopback port nobody listens on: bound once, then released. */
static int closed_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static int connect_closed(int port, uint32_t attempts, int64_t delay_ns, int64_t max_delay_ns, mw_err_t *err,
                          int64_t *elapsed_ns) {
    mw_clt_opts_t o;
    clt_opts(&o, MW_MODE_SPIN, NULL);
    o.retry.max_attempts = attempts;
    o.retry.min_delay_ns = delay_ns;
    o.retry.max_delay_ns = max_delay_ns;
    o.retry.jitter = 0; /* exact delays: the elapsed time below is their sum */
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    mw_clt_t *c = NULL;
    uint64_t t0 = mw_now_ns();
    int r = mw_clt_connect(&c, url, &test_protocol, &o, err);
    *elapsed_ns = (int64_t)(mw_now_ns() - t0);
    mw_clt_free(c); /* only if it connected after all */
    return r;
}

static void test_clt_connect_to_closed_port_is_refused_naming_the_address(void **state) {
    (void)state;
    int port = closed_port();
    mw_err_t err = {0};
    int64_t took;
    assert_int_equal(connect_closed(port, 1, MW_NS_PER_MS, MW_NS_PER_MS, &err, &took), MW_ECONNREFUSED);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    if (!strstr(mw_err_text(&err), addr)) fail_msg("error \"%s\" does not name %s", mw_err_text(&err), addr);
    assert_int_equal(err.code, MW_ECONNREFUSED);
}

static void test_clt_connect_retries_with_doubling_delay_then_refuses(void **state) {
    (void)state;
    int port = closed_port();
    mw_err_t err = {0};
    int64_t took;
    /* 2 attempts: one 5 ms wait between them. */
    assert_int_equal(connect_closed(port, 2, 5 * MW_NS_PER_MS, MW_NS_PER_S, &err, &took), MW_ECONNREFUSED);
    assert_true(took >= 5 * MW_NS_PER_MS);
    assert_true(took < 2 * MW_NS_PER_S);
    /* 3 attempts: 5 ms then 10 ms. */
    assert_int_equal(connect_closed(port, 3, 5 * MW_NS_PER_MS, MW_NS_PER_S, &err, &took), MW_ECONNREFUSED);
    assert_true(took >= 15 * MW_NS_PER_MS);
    assert_true(took < 2 * MW_NS_PER_S);
    /* The cap holds the second wait at 5 ms. */
    assert_int_equal(connect_closed(port, 3, 5 * MW_NS_PER_MS, 5 * MW_NS_PER_MS, &err, &took), MW_ECONNREFUSED);
    assert_true(took >= 10 * MW_NS_PER_MS);
    assert_true(took < 2 * MW_NS_PER_S);
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    assert_non_null(strstr(mw_err_text(&err), addr));
}

/* A default-initialised opts.retry (max_attempts 0) tries once in spin,
 * blocking and event mode without reconnect: a retry would wait at least
 * 1.6 s here (min_delay 2 s, jitter 0.2 at most). */
static void test_clt_connect_with_the_default_retry_tries_once(void **state) {
    (void)state;
    int port = closed_port();
    mw_err_t err = {0};
    int64_t took;
    assert_int_equal(connect_closed(port, 0, 2 * MW_NS_PER_S, 2 * MW_NS_PER_S, &err, &took), MW_ECONNREFUSED);
    if (took >= MW_NS_PER_S) fail_msg("spin: took %lld ms: retried", (long long)(took / MW_NS_PER_MS));
    mw_io_t *io;
    assert_int_equal(mw_io_new(&io, NULL, &err), 0);
    static const mw_mode_t modes[] = {MW_MODE_BLOCKING, MW_MODE_EVENT};
    for (int i = 0; i < 2; i++) {
        mw_clt_opts_t o;
        mw_clt_opts_init(&o);
        o.mode = modes[i];
        if (o.mode == MW_MODE_EVENT) o.event.io = io;
        o.retry.min_delay_ns = o.retry.max_delay_ns = 2 * MW_NS_PER_S;
        char url[64];
        snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
        mw_clt_t *c = NULL;
        uint64_t t0 = mw_now_ns();
        assert_int_equal(mw_clt_connect(&c, url, &test_protocol, &o, &err), MW_ECONNREFUSED);
        uint64_t t = mw_now_ns() - t0;
        assert_null(c);
        if (t >= MW_NS_PER_S) fail_msg("%s: took %llu ms: retried", mw_mode_name(modes[i]), (unsigned long long)(t / MW_NS_PER_MS));
    }
    mw_resolve_shutdown(io);
    mw_io_free(io);
}

/* ---- split sender / receiver --------------------------------------------------------- */

typedef struct split {
    mw_clt_sender_t *tx;
    uint64_t n, window;
    bool busywait;
    atomic_ulong recvd;
    atomic_int stop;
    int rc;
    uint64_t sent;
} split_t;

static void *sender_main(void *arg) {
    split_t *sp = arg;
    uint64_t dl = mw__deadline_in(NULL, 4 * WAIT_NS);
    for (sp->sent = 0; sp->sent < sp->n && !atomic_load(&sp->stop);) {
        if (sp->sent - atomic_load_explicit(&sp->recvd, memory_order_acquire) >= sp->window) {
            if (mw__deadline_passed(NULL, dl)) {
                sp->rc = MW_ETIMEDOUT;
                return NULL;
            }
            sched_yield();
            continue;
        }
        ping_t p = {.seq = sp->sent, .sent_ns = sp->sent * 3};
        int r = sp->busywait ? mw_clt_sender_send_busywait_timeout(sp->tx, ping_schema(), &p, WAIT_NS)
                             : mw_clt_sender_send(sp->tx, ping_schema(), &p);
        if (r != 0) {
            sp->rc = r;
            return NULL;
        }
        sp->sent++;
    }
    return NULL;
}

static void run_split(fx_t *f, mw_mode_t mode, uint64_t n) {
    peer_start(f, NULL);
    mw_clt_opts_t o;
    clt_opts(&o, mode, NULL);
    mw_idle_init_yield(&o.sync.idle); /* busywait on a 2-core box: let the others run */
    mw_clt_t *c = clt_open(f, &o);
    split_t sp = {.tx = mw_clt_sender(c), .n = n, .window = 512, .busywait = mode == MW_MODE_SPIN};
    mw_clt_receiver_t *rx = mw_clt_receiver(c);
    assert_non_null(sp.tx);
    assert_non_null(rx);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, sender_main, &sp), 0);
    uint64_t i = 0;
    int r = 0;
    for (; i < n; i++) {
        const mw_schema_t *s;
        test_msg_t m;
        r = mode == MW_MODE_SPIN ? mw_clt_receiver_recv_busywait_timeout(rx, &s, &m, sizeof m, WAIT_NS)
                                 : mw_clt_receiver_recv(rx, &s, &m, sizeof m);
        if (r != 0) break;
        if (s->tag != ping_TAG || m.ping.seq != i || m.ping.sent_ns != i * 3) {
            r = MW_EPROTO;
            break;
        }
        atomic_store_explicit(&sp.recvd, i + 1, memory_order_release);
    }
    atomic_store(&sp.stop, 1);
    pthread_join(th, NULL);
    if (sp.rc != 0) fail_msg("sender stopped at %" PRIu64 ": %s: %s", sp.sent, mw_errname(sp.rc), mw_clt_last_error(c));
    if (r != 0) fail_msg("receiver stopped at %" PRIu64 ": %s: %s", i, mw_errname(r), mw_clt_last_error(c));
    assert_int_equal(i, n);
    mw_conn_stats_t st;
    mw_clt_stats(c, &st);
    assert_int_equal(st.msgs_out, n);
    assert_int_equal(st.msgs_in, n);
    assert_int_equal(atomic_load(&f->peer.errors), 0);
}

static void test_clt_split_threads_blocking_100k_pings_in_order(void **state) {
    run_split(*state, MW_MODE_BLOCKING, 100000);
}

static void test_clt_split_threads_spin_busywait_in_order(void **state) {
    run_split(*state, MW_MODE_SPIN, 20000);
}

/* ---- one poll thread, several event-mode Clts ------------------------------------------ */

enum { CHAIN = 300 };

typedef struct chain {
    atomic_ulong got;
    atomic_int connected, bad;
    pthread_t th;
    atomic_bool th_set;
    atomic_int mixed_threads;
} chain_t;

static void chain_connect(mw_clt_t *c, void *ud) {
    chain_t *ch = ud;
    atomic_fetch_add(&ch->connected, 1);
    ping_t p = {.seq = 0, .sent_ns = 0};
    if (mw_clt_send(c, ping_schema(), &p) != 0) atomic_fetch_add(&ch->bad, 1);
}

/* Each echo sends the next ping from inside the callback. */
static void chain_msg(mw_clt_t *c, const mw_schema_t *s, const void *msg, void *ud) {
    chain_t *ch = ud;
    if (!atomic_load(&ch->th_set)) {
        ch->th = pthread_self();
        atomic_store(&ch->th_set, true);
    } else if (!pthread_equal(ch->th, pthread_self())) {
        atomic_fetch_add(&ch->mixed_threads, 1);
    }
    uint64_t want = atomic_load(&ch->got);
    const ping_t *p = msg;
    if (s->tag != ping_TAG || p->seq != want || p->sent_ns != want * 3) atomic_fetch_add(&ch->bad, 1);
    atomic_store(&ch->got, want + 1);
    if (want + 1 < CHAIN) {
        ping_t next = {.seq = want + 1, .sent_ns = (want + 1) * 3};
        if (mw_clt_send(c, ping_schema(), &next) != 0) atomic_fetch_add(&ch->bad, 1);
    }
}

static bool all_chains_done(void *ud) {
    chain_t *ch = ud;
    for (int i = 0; i < MAX_CLTS; i++) {
        if (atomic_load(&ch[i].bad)) return true; /* stop waiting: reported below */
        if (atomic_load(&ch[i].got) < CHAIN) return false;
    }
    return true;
}

static void test_clt_one_poll_thread_drives_four_event_clts(void **state) {
    fx_t *f = *state;
    peer_start(f, NULL);
    mw_err_t err = {0};
    assert_int_equal(mw_io_new(&f->io, NULL, &err), 0);
    assert_int_equal(mw_io_start(f->io, NULL), 0);
    static chain_t ch[MAX_CLTS];
    memset(ch, 0, sizeof ch);
    for (int i = 0; i < MAX_CLTS; i++) {
        mw_clt_opts_t o;
        clt_opts(&o, MW_MODE_EVENT, NULL);
        o.event.io = f->io;
        o.event.on_connect = chain_connect;
        o.event.on_msg = chain_msg;
        o.ud = &ch[i];
        clt_open(f, &o);
    }
    assert_true(mw_wait_until(all_chains_done, ch, WAIT_MS));
    for (int i = 0; i < MAX_CLTS; i++) {
        assert_int_equal(atomic_load(&ch[i].bad), 0);
        assert_int_equal(atomic_load(&ch[i].got), CHAIN);
        assert_int_equal(atomic_load(&ch[i].connected), 1);
        assert_int_equal(atomic_load(&ch[i].mixed_threads), 0);
        assert_true(pthread_equal(ch[i].th, ch[0].th)); /* one thread drives them all */
        assert_true(mw_clt_is_open(f->clts[i]));
    }
    assert_false(pthread_equal(ch[0].th, pthread_self()));
    assert_int_equal(atomic_load(&f->peer.errors), 0);
}

/* ---- serdes switch ---------------------------------------------------------------------- */

/* Login in text, reply in text, then both sides switch to fixed at that
 * boundary. The Clt pipelines: its fixed messages leave right behind the text
 * login, so the Svc must switch between two frames of one read. */
static void run_serdes_switch(fx_t *f, mw_mode_t peer_mode) {
    peer_start(f, &(peer_cfg_t){.mode = peer_mode, .serdes = "text", .login = true});
    mw_clt_opts_t o;
    clt_opts(&o, MW_MODE_SPIN, "text");
    mw_clt_t *c = clt_open(f, &o);
    enum { N = 20 };
    heartbeat_t login = {.unused = false};
    assert_int_equal(mw_clt_send_more(c, heartbeat_schema(), &login), 0);
    assert_int_equal(mw_clt_set_serdes(c, MW_DIR_TX, "fixed"), 0);
    all_kinds_t a[N];
    for (int i = 0; i < N; i++) {
        make_all_kinds(&a[i], (uint64_t)i);
        assert_int_equal(mw_clt_send_more(c, all_kinds_schema(), &a[i]), 0);
    }
    assert_int_equal(mw_clt_flush(c), 0);

    const mw_schema_t *s;
    test_msg_t m;
    int r = clt_wait(f, c, &s, &m);
    if (r != 0) fail_msg("login reply: %s: %s", mw_errname(r), mw_clt_last_error(c));
    assert_int_equal(s->tag, heartbeat_TAG); /* decoded as text */
    assert_true(m.heartbeat.unused);
    assert_int_equal(mw_clt_set_serdes(c, MW_DIR_RX, "fixed"), 0);
    for (int i = 0; i < N; i++) {
        r = clt_wait(f, c, &s, &m);
        if (r != 0) fail_msg("echo %d: %s: %s", i, mw_errname(r), mw_clt_last_error(c));
        assert_int_equal(s->tag, all_kinds_TAG);
        assert_all_kinds_equal(&m.all_kinds, &a[i]);
    }
    /* Fixed both ways from now on. */
    send_ping(c, 9);
    expect_ping(f, c, 9);
    assert_int_equal(atomic_load(&f->peer.errors), 0);
    assert_int_equal(mw_clt_set_serdes(c, MW_DIR_TX, "no-such-serdes"), MW_EINVAL);
    send_ping(c, 10); /* a failed switch leaves the side as it was */
    expect_ping(f, c, 10);
}

static void test_clt_serdes_switch_at_login_spin_svc(void **state) { run_serdes_switch(*state, MW_MODE_SPIN); }
static void test_clt_serdes_switch_at_login_event_svc(void **state) { run_serdes_switch(*state, MW_MODE_EVENT); }

/* ---- batching ------------------------------------------------------------------------------ */

static void test_clt_send_more_batches_until_one_flush(void **state) {
    fx_t *f = *state;
    peer_start(f, NULL);
    mw_clt_opts_t o;
    clt_opts(&o, MW_MODE_SPIN, NULL);
    mw_clt_t *c = clt_open(f, &o);
    enum { N = 100 };
    for (uint64_t i = 0; i < N; i++) {
        ping_t p = {.seq = i, .sent_ns = i * 3};
        assert_int_equal(mw_clt_send_more(c, ping_schema(), &p), 0);
    }
    /* Nothing written yet: every frame (4-byte length + 18-byte ping) waits. */
    assert_int_equal(mw__conn_tx_pending(mw__clt_conn(c)), N * (4 + ping_FIXED_SIZE));
    assert_int_equal(mw_clt_flush(c), 0);
    assert_int_equal(mw__conn_tx_pending(mw__clt_conn(c)), 0);
    for (uint64_t i = 0; i < N; i++) expect_ping(f, c, i);
    mw_conn_stats_t st;
    mw_clt_stats(c, &st);
    assert_int_equal(st.msgs_out, N);
    assert_int_equal(st.bytes_out, N * (4 + ping_FIXED_SIZE));
}

static void test_clt_send_more_full_buffer_asks_for_flush(void **state) {
    fx_t *f = *state;
    peer_start(f, NULL);
    mw_clt_opts_t o;
    clt_opts(&o, MW_MODE_SPIN, NULL);
    o.conn.max_msg = 256;
    o.conn.tx_buf = 1024;
    mw_clt_t *c = clt_open(f, &o);
    uint64_t seq = 0;
    int r;
    while ((r = mw_clt_send_more(c, ping_schema(), &(ping_t){.seq = seq, .sent_ns = seq * 3})) == 0) seq++;
    assert_int_equal(r, MW_EAGAIN);
    assert_int_equal(seq, 1024 / (4 + ping_FIXED_SIZE)); /* every byte of the buffer used */
    assert_int_equal(mw_clt_flush(c), 0);
    uint64_t first = seq;
    for (; seq < first + 10; seq++) assert_int_equal(mw_clt_send_more(c, ping_schema(), &(ping_t){seq, seq * 3}), 0);
    assert_int_equal(mw_clt_flush(c), 0);
    for (uint64_t i = 0; i < seq; i++) expect_ping(f, c, i);
}

/* ---- raw zero-copy path ----------------------------------------------------------------------- */

static void put_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void test_clt_claim_commit_raw_and_next_raw(void **state) {
    fx_t *f = *state;
    peer_start(f, NULL);
    mw_clt_opts_t o;
    clt_opts(&o, MW_MODE_SPIN, NULL);
    mw_clt_t *c = clt_open(f, &o);
    assert_null(mw_clt_claim(c, o.conn.max_msg + 1));

    /* A fixed-serdes ping written by hand into the tx buffer. */
    uint8_t want[ping_FIXED_SIZE];
    want[0] = ping_TAG, want[1] = 0;
    put_le64(want + 2, 0x1122334455667788u);
    put_le64(want + 10, 42);
    uint8_t *p = mw_clt_claim(c, 64);
    assert_non_null(p);
    memcpy(p, want, sizeof want);
    assert_int_equal(mw_clt_commit(c, sizeof want), 0);
    assert_int_equal(mw_clt_flush(c), 0);

    /* The Svc decoded it as a typed ping and echoed it; read the echo raw. */
    mw__conn_t *conn = mw__clt_conn(c);
    const uint8_t *pl = NULL;
    size_t len = 0;
    uint64_t dl = mw__deadline_in(NULL, WAIT_NS);
    int r;
    while ((r = mw__conn_next_raw(conn, &pl, &len)) == MW_EAGAIN) {
        ssize_t n = mw__conn_fill(conn);
        if (n < 0 && n != MW_EAGAIN) fail_msg("fill: %s", mw_errname((int)n));
        if (mw__deadline_passed(NULL, dl)) fail_msg("no raw echo");
        if (n == MW_EAGAIN) sched_yield();
    }
    assert_int_equal(r, 0);
    assert_int_equal(len, sizeof want);
    assert_memory_equal(pl, want, sizeof want);
    assert_int_equal(atomic_load(&f->peer.recvd_hook), 1);

    /* Typed traffic carries on behind the raw frames. */
    send_ping(c, 5);
    expect_ping(f, c, 5);
}

/* ---- timeouts, hooks, encode errors, closing ---------------------------------------------------- */

static void test_clt_blocking_recv_times_out_and_stays_usable(void **state) {
    fx_t *f = *state;
    peer_start(f, NULL);
    mw_clt_opts_t o;
    clt_opts(&o, MW_MODE_BLOCKING, NULL);
    o.sync.timeout_ns = 20 * MW_NS_PER_MS;
    mw_clt_t *c = clt_open(f, &o);
    const mw_schema_t *s;
    test_msg_t m;
    uint64_t t0 = mw_now_ns();
    assert_int_equal(mw_clt_recv(c, &s, &m, sizeof m), MW_ETIMEDOUT);
    uint64_t took = mw_now_ns() - t0;
    assert_true(took >= 10 * MW_NS_PER_MS);
    assert_true(took < 2 * MW_NS_PER_S);
    assert_non_null(strstr(mw_clt_last_error(c), "no message within timeout_ns (20 ms)"));
    assert_true(mw_clt_is_open(c));
    send_ping(c, 3);
    expect_ping(f, c, 3);
}

typedef struct hook_count {
    atomic_ulong sent, recvd, sent_all_kinds, recvd_all_kinds;
} hook_count_t;

static void clt_sent_hook(void *ud, const mw_schema_t *s, const void *msg) {
    (void)msg;
    hook_count_t *h = ud;
    atomic_fetch_add(&h->sent, 1);
    if (s->tag == all_kinds_TAG) atomic_fetch_add(&h->sent_all_kinds, 1);
}

static void clt_recvd_hook(void *ud, const mw_schema_t *s, const void *msg) {
    (void)msg;
    hook_count_t *h = ud;
    atomic_fetch_add(&h->recvd, 1);
    if (s->tag == all_kinds_TAG) atomic_fetch_add(&h->recvd_all_kinds, 1);
}

typedef struct ulong_at_least { atomic_ulong *v; unsigned long want; } ulong_at_least_t;
static bool at_least(void *ud) {
    ulong_at_least_t *c = ud;
    return atomic_load(c->v) >= c->want;
}

static void test_clt_hooks_see_every_message_both_sides(void **state) {
    fx_t *f = *state;
    peer_start(f, NULL);
    static hook_count_t h;
    memset(&h, 0, sizeof h);
    mw_clt_opts_t o;
    clt_opts(&o, MW_MODE_SPIN, NULL);
    o.on_sent = clt_sent_hook;
    o.on_recvd = clt_recvd_hook;
    o.hook_ud = &h;
    mw_clt_t *c = clt_open(f, &o);
    enum { N = 50 };
    for (uint64_t i = 0; i < N; i++) {
        if (i % 2) {
            send_ping(c, i);
            expect_ping(f, c, i);
        } else {
            all_kinds_t a;
            make_all_kinds(&a, i);
            assert_int_equal(mw_clt_send_more(c, all_kinds_schema(), &a), 0); /* batched sends count too */
            assert_int_equal(mw_clt_flush(c), 0);
            const mw_schema_t *s;
            test_msg_t m;
            assert_int_equal(clt_wait(f, c, &s, &m), 0);
            assert_all_kinds_equal(&m.all_kinds, &a);
        }
    }
    assert_int_equal(atomic_load(&h.sent), N);
    assert_int_equal(atomic_load(&h.recvd), N);
    assert_int_equal(atomic_load(&h.sent_all_kinds), N / 2);
    assert_int_equal(atomic_load(&h.recvd_all_kinds), N / 2);
    ulong_at_least_t done = {&f->peer.sent_hook, N};
    assert_true(mw_wait_until(at_least, &done, WAIT_MS));
    assert_int_equal(atomic_load(&f->peer.recvd_hook), N);
    assert_int_equal(atomic_load(&f->peer.sent_hook), N);
    assert_int_equal(atomic_load(&f->peer.sent_pings_hook), N / 2);
}

static void test_clt_text_nan_is_rejected_and_the_connection_lives(void **state) {
    fx_t *f = *state;
    peer_start(f, &(peer_cfg_t){.mode = MW_MODE_EVENT, .serdes = "text"});
    mw_clt_opts_t o;
    clt_opts(&o, MW_MODE_SPIN, "text");
    mw_clt_t *c = clt_open(f, &o);
    all_kinds_t a;
    make_all_kinds(&a, 7);
    a.f64 = NAN;
    assert_int_equal(mw_clt_send(c, all_kinds_schema(), &a), MW_ERANGE);
    if (!strstr(mw_clt_last_error(c), "f64")) fail_msg("error \"%s\" does not name the field", mw_clt_last_error(c));
    a.f64 = -INFINITY;
    assert_int_equal(mw_clt_send_more(c, all_kinds_schema(), &a), MW_ERANGE);
    assert_true(mw_clt_is_open(c));
    assert_int_equal(mw__conn_tx_pending(mw__clt_conn(c)), 0); /* nothing half-encoded left behind */
    make_all_kinds(&a, 8);
    assert_int_equal(mw_clt_send(c, all_kinds_schema(), &a), 0);
    const mw_schema_t *s;
    test_msg_t m;
    assert_int_equal(clt_wait(f, c, &s, &m), 0);
    assert_int_equal(s->tag, all_kinds_TAG);
    assert_all_kinds_equal(&m.all_kinds, &a);
    assert_int_equal(atomic_load(&f->peer.recvd_hook), 1);
    mw_conn_stats_t st;
    mw_clt_stats(c, &st);
    assert_int_equal(st.msgs_out, 1);
}

static void test_clt_recv_gets_everything_sent_before_eclosed(void **state) {
    fx_t *f = *state;
    f->peer.reply_and_close_seq = 99;
    peer_start(f, NULL);
    mw_clt_opts_t o;
    clt_opts(&o, MW_MODE_SPIN, NULL);
    mw_clt_t *c = clt_open(f, &o);
    send_ping(c, 99);
    for (uint64_t k = 1; k <= 3; k++) expect_ping(f, c, k);
    const mw_schema_t *s;
    test_msg_t m;
    assert_int_equal(clt_wait(f, c, &s, &m), MW_ECLOSED);
    assert_false(mw_clt_is_open(c));
    assert_int_equal(clt_wait(f, c, &s, &m), MW_ECLOSED); /* and stays so */
    assert_int_equal(atomic_load(&f->peer.errors), 0);
}

/* Event mode: mw_clt_close inside on_msg is deferred until it returns; later
 * messages of the same read are not delivered, and no on_close follows. */
typedef struct closer {
    atomic_int msgs, closes;
    atomic_bool open_after;
} closer_t;

static void closer_msg(mw_clt_t *c, const mw_schema_t *s, const void *msg, void *ud) {
    (void)s;
    (void)msg;
    closer_t *k = ud;
    atomic_fetch_add(&k->msgs, 1);
    mw_clt_close(c);
    atomic_store(&k->open_after, mw_clt_is_open(c));
}

static void closer_close(mw_clt_t *c, int reason, void *ud) {
    (void)c;
    (void)reason;
    atomic_fetch_add(&((closer_t *)ud)->closes, 1);
}

static void test_clt_close_inside_on_msg_is_deferred(void **state) {
    fx_t *f = *state;
    f->peer.reply_and_close_seq = 99; /* three pings back in a row, then close */
    peer_start(f, NULL);
    mw_err_t err = {0};
    assert_int_equal(mw_io_new(&f->io, NULL, &err), 0);
    static closer_t k;
    memset(&k, 0, sizeof k);
    mw_clt_opts_t o;
    clt_opts(&o, MW_MODE_EVENT, NULL);
    o.event.io = f->io;
    o.event.on_msg = closer_msg;
    o.event.on_close = closer_close;
    o.ud = &k;
    mw_clt_t *c = clt_open(f, &o);
    send_ping(c, 99);
    /* Drive the io from the test thread until the first message arrived. */
    uint64_t dl = mw__deadline_in(NULL, WAIT_NS);
    while (atomic_load(&k.msgs) == 0) {
        assert_true(mw_io_poll(f->io, MW_NS_PER_MS) >= 0);
        if (mw__deadline_passed(NULL, dl)) fail_msg("no message");
    }
    for (int i = 0; i < 20; i++) assert_true(mw_io_poll(f->io, 0) >= 0);
    assert_int_equal(atomic_load(&k.msgs), 1);
    assert_int_equal(atomic_load(&k.closes), 0);
    assert_false(mw_clt_is_open(c));
}

/* Event mode, peer closing: every message it sent first reaches on_msg, then
 * on_close says MW_ECLOSED, once. */
typedef struct ev_log {
    atomic_int msgs, closes, reason, bad;
} ev_log_t;

static void ev_log_msg(mw_clt_t *c, const mw_schema_t *s, const void *msg, void *ud) {
    (void)c;
    ev_log_t *l = ud;
    int k = atomic_load(&l->msgs) + 1;
    if (atomic_load(&l->closes) || s->tag != ping_TAG || ((const ping_t *)msg)->seq != (uint64_t)k)
        atomic_fetch_add(&l->bad, 1);
    atomic_store(&l->msgs, k);
}

static void ev_log_close(mw_clt_t *c, int reason, void *ud) {
    ev_log_t *l = ud;
    if (mw_clt_is_open(c)) atomic_fetch_add(&l->bad, 1);
    atomic_store(&l->reason, reason);
    atomic_fetch_add(&l->closes, 1);
}

static bool ev_log_closed(void *ud) { return atomic_load(&((ev_log_t *)ud)->closes) > 0; }

static void test_clt_event_on_close_follows_everything_the_peer_sent(void **state) {
    fx_t *f = *state;
    f->peer.reply_and_close_seq = 99;
    peer_start(f, NULL);
    mw_err_t err = {0};
    assert_int_equal(mw_io_new(&f->io, NULL, &err), 0);
    assert_int_equal(mw_io_start(f->io, NULL), 0);
    static ev_log_t l;
    memset(&l, 0, sizeof l);
    mw_clt_opts_t o;
    clt_opts(&o, MW_MODE_EVENT, NULL);
    o.event.io = f->io;
    o.event.on_msg = ev_log_msg;
    o.event.on_close = ev_log_close;
    o.ud = &l;
    mw_clt_t *c = clt_open(f, &o);
    send_ping(c, 99);
    assert_true(mw_wait_until(ev_log_closed, &l, WAIT_MS));
    mw_io_stop(f->io); /* nothing more can arrive */
    assert_int_equal(atomic_load(&l.msgs), 3);
    assert_int_equal(atomic_load(&l.closes), 1);
    assert_int_equal(atomic_load(&l.reason), MW_ECLOSED);
    assert_int_equal(atomic_load(&l.bad), 0);
    assert_false(mw_clt_is_open(c));
}

/* A spin peer over scheme that reads only when pumped (small receive
 * buffer) and counts pings in order, an io on its own poll thread, and
 * options for an event-mode Clt on that io (trusting the peer's CA). */
static void event_clt_to_counting_peer(fx_t *f, mw_clt_opts_t *o, const char *scheme) {
    f->peer.no_echo = true;
    peer_start(f, &(peer_cfg_t){.mode = MW_MODE_SPIN, .rcvbuf = 4096, .scheme = scheme});
    mw_err_t err = {0};
    assert_int_equal(mw_io_new(&f->io, NULL, &err), 0);
    assert_int_equal(mw_io_start(f->io, NULL), 0);
    clt_opts(o, MW_MODE_EVENT, NULL);
    o->event.io = f->io;
    if (!strcmp(scheme, "tls") || !strcmp(scheme, "wss")) o->tr.tls.ca_file = mw_test_cert("ca.pem");
}

/* Event mode, sends from a thread other than the io's into a peer that is
 * not reading: the Clt queues, says MW_EAGAIN when its buffer is full, and
 * its io thread writes the rest once the peer reads. */
static void test_clt_event_sends_from_another_thread_under_backpressure(void **state) {
    fx_t *f = *state;
    mw_clt_opts_t o;
    event_clt_to_counting_peer(f, &o, "tcp");
    o.conn.max_msg = 1024;
    o.conn.tx_buf = 4096;
    o.tcp.sndbuf = 4096;
    mw_clt_t *c = clt_open(f, &o);
    enum { N = 100000 }; /* more than the kernel buffers between the two can ever hold */
    uint64_t eagain = 0, sent = 0;
    uint64_t dl = mw__deadline_in(NULL, 4 * WAIT_NS);
    while (atomic_load(&f->peer.next_seq) < N) {
        while (sent < N) {
            ping_t p = {.seq = sent, .sent_ns = sent * 3};
            int r = mw_clt_send(c, ping_schema(), &p);
            if (r == MW_EAGAIN) {
                eagain++;
                break;
            }
            if (r != 0) fail_msg("send %" PRIu64 ": %s: %s", sent, mw_errname(r), mw_clt_last_error(c));
            sent++;
        }
        /* The peer reads a little; from here only the io thread can flush. */
        for (int k = 0; k < 20; k++) peer_pump(f);
        if (mw__deadline_passed(NULL, dl))
            fail_msg("stuck: sent %" PRIu64 ", peer got %" PRIu64, sent, atomic_load(&f->peer.next_seq));
        sched_yield();
    }
    assert_true(eagain > 0);
    assert_int_equal(atomic_load(&f->peer.errors), 0);
    assert_true(mw_clt_is_open(c));
}

/* ---- event-mode close with linger_ns ------------------------------------------------ */

static void close_posted(void *ud) { mw_clt_close(ud); }

typedef struct linger_wait { fx_t *f; uint64_t n; } linger_wait_t;

static void on_connect_flag(mw_clt_t *c, void *ud) {
    (void)c;
    atomic_store((atomic_bool *)ud, true);
}

static bool pumped_until_connected(void *ud) {
    fx_t *f = ud;
    peer_pump(f);
    return atomic_load(&f->connected);
}

/* Pumps the spin peer; true once it has counted n pings and its connection
 * has gone (it saw the Clt's FIN after the last of them). */
static bool peer_got_all_and_closed(void *ud) {
    linger_wait_t *w = ud;
    for (int k = 0; k < 64; k++) peer_pump(w->f);
    return atomic_load(&w->f->peer.next_seq) >= w->n && mw_svc_conn_count(w->f->peer.svc) == 0;
}

/* An event-mode Clt with linger_ns sends 100k pings that the peer has not
 * started to read (they wait in the Clt's tx queue), then closes on the io
 * thread while the io keeps running: the io writes every one, then FIN, and
 * the peer counts all of them, in order. (With linger_ns 0 the close keeps
 * only what the kernel buffers take, a few hundred.) */
static void close_with_linger(fx_t *f, const char *scheme) {
    if (strcmp(scheme, "tcp") && strcmp(scheme, "ws"))
        mw_test_require(mw_have_openssl_cli(), "the openssl command (Debian package openssl)");
    mw_clt_opts_t o;
    event_clt_to_counting_peer(f, &o, scheme);
    o.conn.tx_buf = 4u << 20; /* room for all of them: the peer reads nothing yet */
    o.tcp.sndbuf = 4096;
    o.linger_ns = WAIT_NS;
    o.event.async_connect = true; /* the spin peer answers the handshakes only when pumped */
    o.event.on_connect = on_connect_flag;
    o.ud = &f->connected;
    mw_clt_t *c = clt_open(f, &o);
    if (!mw_wait_until(pumped_until_connected, f, WAIT_MS)) fail_msg("connect: %s", mw_clt_last_error(c));
    enum { N = 100000 };
    for (uint64_t i = 0; i < N; i++) {
        ping_t p = {.seq = i, .sent_ns = i * 3};
        int r = mw_clt_send(c, ping_schema(), &p);
        if (r != 0) fail_msg("send %" PRIu64 ": %s: %s", i, mw_errname(r), mw_clt_last_error(c));
    }
    mw_conn_stats_t st;
    mw_clt_stats(c, &st);
    assert_int_equal(st.msgs_out, N);
    assert_true(atomic_load(&f->peer.next_seq) == 0); /* a spin peer: read only when pumped */
    assert_int_equal(mw_io_post(f->io, close_posted, c), 0);
    linger_wait_t w = {f, N};
    if (!mw_wait_until(peer_got_all_and_closed, &w, WAIT_MS))
        fail_msg("the peer got %lu of %d pings (connections %u)", atomic_load(&f->peer.next_seq), N,
                 mw_svc_conn_count(f->peer.svc));
    assert_int_equal(atomic_load(&f->peer.next_seq), N);
    assert_int_equal(atomic_load(&f->peer.errors), 0);
    assert_false(mw_clt_is_open(c));
    assert_int_equal(mw_clt_state(c), MW_CLT_CLOSED);
}

static void test_clt_event_close_with_linger_delivers_every_accepted_message_tcp(void **state) {
    close_with_linger(*state, "tcp");
}
static void test_clt_event_close_with_linger_delivers_every_accepted_message_ws(void **state) {
    close_with_linger(*state, "ws");
}
static void test_clt_event_close_with_linger_delivers_every_accepted_message_wss(void **state) {
    close_with_linger(*state, "wss");
}

/* A peer that sends bytes the Clt cannot decode: earlier messages are
 * delivered, then recv fails with the decode error and the Clt is failed. */
static void test_clt_bad_input_fails_the_clt_after_earlier_messages(void **state) {
    (void)state;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 8), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    fx_t *f = *state;
    snprintf(f->url, sizeof f->url, "tcp://127.0.0.1:%d", ntohs(sa.sin_port));
    mw_clt_opts_t o;
    clt_opts(&o, MW_MODE_SPIN, NULL);
    mw_clt_t *c = clt_open(f, &o);
    int sfd = accept(lfd, NULL, NULL);
    close(lfd);
    assert_true(sfd >= 0);
    /* A good ping (u32 length 18, tag 2, seq 1, sent_ns 3), then tag 77. */
    uint8_t wire[2 * (4 + ping_FIXED_SIZE)] = {0, 0, 0, ping_FIXED_SIZE, ping_TAG, 0};
    put_le64(wire + 6, 1);
    put_le64(wire + 14, 3);
    uint8_t *bad = wire + 4 + ping_FIXED_SIZE;
    bad[3] = ping_FIXED_SIZE, bad[4] = 77;
    assert_int_equal(send(sfd, wire, sizeof wire, MSG_NOSIGNAL), (ssize_t)sizeof wire);
    expect_ping(f, c, 1);
    const mw_schema_t *s;
    test_msg_t m;
    int r = clt_wait(f, c, &s, &m);
    close(sfd);
    assert_int_equal(r, MW_ETAG);
    assert_false(mw_clt_is_open(c));
    if (!strstr(mw_clt_last_error(c), "unknown tag 77"))
        fail_msg("error \"%s\" does not name the tag", mw_clt_last_error(c));
    assert_int_equal(mw_clt_recv(c, &s, &m, sizeof m), MW_ETAG); /* stays failed */
}

/* ---- event-mode life cycle ------------------------------------------------------------------------ */

/* Connect an event-mode Clt to an io that never ran, free the Clt, then free
 * the io: the io runs what was posted to it, and that must not touch the freed
 * Clt. Runs in a child process: a use-after-free aborts it under ASan. */
static void test_clt_event_free_before_io_ran_is_safe(void **state) {
    (void)state;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(lfd, 8), 0); /* the kernel completes the connect */
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        mw_io_t *io = NULL;
        if (mw_io_new(&io, NULL, NULL) != 0) _exit(10);
        mw_clt_opts_t o;
        mw_clt_opts_init(&o);
        o.mode = MW_MODE_EVENT;
        o.event.io = io;
        char url[64];
        snprintf(url, sizeof url, "tcp://127.0.0.1:%d", ntohs(sa.sin_port));
        mw_clt_t *c = NULL;
        if (mw_clt_connect(&c, url, &test_protocol, &o, NULL) != 0) _exit(11);
        mw_clt_free(c);
        mw_io_free(io);
        _exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    close(lfd);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("the child %s %d (see its sanitizer report above)", WIFEXITED(st) ? "exited with" : "died of signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}


/* ==== Svc/Clt/io harness tests (tests/util/svc_harness.h) ==========================
 * Tests on the shared Svc harness, kept together at the end of the file.
 * Each replays a scenario that once failed (found in review). */
#include "svc_harness.h"

#include <sys/syscall.h>

/* ---- tls:// blocking Clt: split sender and receiver do not block each other --- */

static void *echo_thread(void *ud) {
    svh_t *f = ud;
    uint64_t dl = mw__deadline_in(NULL, 30 * MW_NS_PER_S);
    while (!atomic_load(&f->stop) && !mw__deadline_passed(NULL, dl)) {
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
    svh_t *f = ud;
    return atomic_load(&f->rx_waiting) && thread_sleeping(atomic_load(&f->rx_tid));
}

static void *split_sender(void *ud) {
    svh_t *f = ud;
    /* Send only once the receiver sleeps inside its recv. */
    mw_wait_until(receiver_waiting, f, SVH_WAIT_MS);
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
    svh_t *f = *state;
    mw_test_require(f->cert[0] != '\0', "the openssl command (Debian package openssl)");
    mw_svc_opts_t o;
    svh_svc_opts(f, &o);
    o.tr.tls.cert_file = f->cert;
    o.tr.tls.key_file = f->key;
    svh_listen(f, "tls", &o);
    svh_spawn(f, echo_thread, f);

    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    co.mode = MW_MODE_BLOCKING;
    co.sync.timeout_ns = 2 * MW_NS_PER_S;
    co.tr.tls.insecure_skip_verify = true;
    f->split = svh_clt_connect(f, &co);
    atomic_store(&f->tx_rc, 1);
    svh_spawn(f, split_sender, f);

    test_msg_t m;
    const mw_schema_t *sch;
    atomic_store(&f->rx_tid, (int)syscall(SYS_gettid));
    atomic_store(&f->rx_waiting, true);
    uint64_t t0 = mw_now_ns();
    int r = mw_clt_receiver_recv(mw_clt_receiver(f->split), &sch, &m, sizeof m);
    double ms = (double)(mw_now_ns() - t0) / 1e6;
    atomic_store(&f->stop, true);
    svh_join_all(f);
    if (r != 0) fail_msg("receiver: %s after %.0f ms (%s)", mw_errname(r), ms, mw_clt_last_error(f->split));
    assert_int_equal(sch->tag, ping_TAG);
    assert_int_equal(m.ping.seq, 42);
    if (ms >= 1000) fail_msg("the echo took %.0f ms", ms);
    assert_int_equal(atomic_load(&f->tx_rc), 0);
    if (atomic_load(&f->tx_ns) >= MW_NS_PER_S) fail_msg("the send took %lld ms", atomic_load(&f->tx_ns) / MW_NS_PER_MS);
}

/* ---- Clt: busywait timeout with a sleeping idle strategy ---------------------- */

/* A 5 ms sleep per idle step and a 10 ms timeout: MW_ETIMEDOUT close to the
 * deadline (under 100 ms), not after 64 sleeps. */
static void test_clt_recv_busywait_timeout_with_a_sleeping_idle_ends_near_its_deadline(void **state) {
    svh_t *f = *state;
    mw_svc_opts_t o;
    svh_svc_opts(f, &o);
    svh_listen(f, "tcp", &o);
    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    mw_idle_init_sleep(&co.sync.idle, 5 * MW_NS_PER_MS);
    mw_clt_t *c = svh_clt_connect(f, &co); /* from the backlog: the Svc never runs, nothing arrives */
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
    svh_t *f = *state;
    mw_svc_opts_t o;
    svh_svc_opts(f, &o);
    o.tcp.rcvbuf = 4096; /* a fixed receive buffer: no autotuning that keeps taking a little more */
    svh_listen(f, "tcp", &o);
    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    co.tcp.sndbuf = 4096;
    co.conn.tx_buf = 70000;
    mw_clt_t *c = svh_clt_connect(f, &co); /* from the backlog: the Svc never reads */
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
/* ==== end of the harness tests ==== */

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_clt_connect_to_closed_port_is_refused_naming_the_address),
        T(test_clt_connect_retries_with_doubling_delay_then_refuses),
        T(test_clt_connect_with_the_default_retry_tries_once),
        T(test_clt_split_threads_blocking_100k_pings_in_order),
        T(test_clt_split_threads_spin_busywait_in_order),
        T(test_clt_one_poll_thread_drives_four_event_clts),
        T(test_clt_serdes_switch_at_login_spin_svc),
        T(test_clt_serdes_switch_at_login_event_svc),
        T(test_clt_send_more_batches_until_one_flush),
        T(test_clt_send_more_full_buffer_asks_for_flush),
        T(test_clt_claim_commit_raw_and_next_raw),
        T(test_clt_blocking_recv_times_out_and_stays_usable),
        T(test_clt_hooks_see_every_message_both_sides),
        T(test_clt_text_nan_is_rejected_and_the_connection_lives),
        T(test_clt_recv_gets_everything_sent_before_eclosed),
        T(test_clt_close_inside_on_msg_is_deferred),
        T(test_clt_event_on_close_follows_everything_the_peer_sent),
        T(test_clt_event_sends_from_another_thread_under_backpressure),
        T(test_clt_event_close_with_linger_delivers_every_accepted_message_tcp),
        T(test_clt_event_close_with_linger_delivers_every_accepted_message_ws),
        T(test_clt_event_close_with_linger_delivers_every_accepted_message_wss),
        T(test_clt_bad_input_fails_the_clt_after_earlier_messages),
        T(test_clt_event_free_before_io_ran_is_safe),
        /* harness tests (svc_harness.h) */
        {"test_clt_tls_blocking_split_sender_is_not_held_by_a_waiting_receiver",
         test_clt_tls_blocking_split_sender_is_not_held_by_a_waiting_receiver, svh_tls_setup, svh_teardown,
         &svh_mode_spin},
        SVH_T(test_clt_recv_busywait_timeout_with_a_sleeping_idle_ends_near_its_deadline, spin),
        SVH_T(test_clt_send_busywait_timeout_waits_for_a_full_socket_then_times_out, spin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
