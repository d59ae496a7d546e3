/* pingpong.c - round-trip latency between a Clt and a Svc.
 *
 *   pingpong svc  --url URL [--mode spin|blocking|event] [--serdes S] [--once] [--cpu N]
 *                 [--cert F --key F] (and for clt: [--ca F] [--insecure])
 *   pingpong clt  --url URL [--mode ...] [--serdes S] [--size BYTES] [--count N]
 *                 [--warmup N] [--cpu N] [--json] [--plot FILE] [--progress]
 *   (svc and clt) [--journal DIR [--fsync none|interval|always]]: a recoverable
 *                 session on (journals in DIR/svc and DIR/clt; the clt resets
 *                 the numbering at each run)
 *   pingpong demo [--mode M] [--serdes S] [--count N] [--cpu N]
 *
 * The svc echoes every message back to its sender. The clt sends one ping,
 * waits for its echo, checks it (type, seq, sent_ns, every pad byte) and
 * records the round-trip time measured with mw_now_ns around the send and the
 * receipt. The run modes use the library the way an application would:
 *   spin      clt: mw_clt_send + mw_clt_recv_busywait_timeout;
 *             svc: mw_svc_recv in a loop, mw_svc_send_to.
 *   blocking  the same calls on blocking sockets.
 *   event     clt: an mw_io (epoll) run by the main thread; on_msg records the
 *             round trip and sends the next ping. svc: one worker thread;
 *             on_msg echoes.
 * demo runs a svc on a thread and a clt in the same process over 127.0.0.1,
 * once per mode, and prints a table.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "mw_clt.h"
#include "mw_svc.h"
#include "pp_proto.h"
#include "tool.h"

static const char USAGE[] =
    "usage:\n"
    "  pingpong svc  --url URL [--mode spin|blocking|event] [--serdes fixed|text|msgpack]\n"
    "                [--once] [--cpu N]\n"
    "  pingpong clt  --url URL [--mode spin|blocking|event] [--serdes fixed|text|msgpack]\n"
    "                [--size BYTES] [--count N] [--warmup N] [--cpu N] [--json] [--plot FILE]\n"
    "                [--progress]\n"
    "  (svc, clt)    [--journal DIR [--fsync none|interval|always]]: a recoverable session\n"
    "  pingpong demo [--mode spin|blocking|event] [--serdes fixed|text|msgpack] [--count N]\n"
    "                [--cpu N]  (clt on cpu N, svc on the next one)\n"
    "\n"
    "  URL is tcp://HOST:PORT, tls://HOST:PORT, ws://HOST:PORT/PATH or wss://HOST:PORT/PATH\n"
    "  (svc: port 0 picks a free port, printed as 'listening on PORT'). tls/wss: the svc\n"
    "  needs --cert FILE --key FILE; the clt verifies against --ca FILE (or the system\n"
    "  store), --insecure skips verification (tests only).\n"
    "  --size picks the smallest message of 32, 64, 128, 256, 512, 1024 or 4096 bytes\n"
    "  (fixed wire size) that holds BYTES; default 64. clt defaults: --count 100000\n"
    "  --warmup 10000. --serdes must be the same on both sides. spin mode busy-polls: give\n"
    "  the svc and the clt a core each (--cpu N, different N), or both slow down.\n"
    "  --plot FILE writes an SVG: a log-scale histogram and latency by percentile.\n"
    "  Exit status: 0 ok, 1 usage, 2 failure.\n";

/* A round trip slower than this is a failure, not a measurement. */
#define RTT_LIMIT_NS (10 * MW_NS_PER_S)

typedef struct cfg {
    const char *url, *mode_name, *serdes, *plot;
    const char *journal, *fsync; /* --journal DIR: sessions on; --fsync none|interval|always */
    mw_mode_t mode;
    uint64_t size, count, warmup;
    int cpu;
    tool_tls_t tls;
    bool once, json, progress;
    const mw_schema_t *sch;
} cfg_t;

/* --journal DIR: a session (journals in DIR/svc or DIR/clt, made here). */
static void set_session(mw_session_opts_t *so, const cfg_t *c, const char *id) {
    if (!c->journal) return;
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", c->journal, id ? "clt" : "svc");
    mkdir(c->journal, 0700);
    mkdir(dir, 0700);
    so->enabled = true;
    so->journal_dir = dir;
    so->id = id;
    so->reset = id != NULL; /* every run numbers from 1 */
    const char *f = c->fsync ? c->fsync : "none";
    so->fsync = !strcmp(f, "always") ? MW_FSYNC_ALWAYS : !strcmp(f, "interval") ? MW_FSYNC_INTERVAL : MW_FSYNC_NONE;
}

typedef struct result {
    tool_pct_t pct;
    double per_s;
    mw_session_stats_t sess; /* --journal: the client's session at the end */
} result_t;

/* ---- svc: echo ------------------------------------------------------------ */

typedef struct echo {
    mw_svc_t *svc;
    mw_mode_t mode;
    bool once;
    atomic_bool done; /* --once: the first client left */
    sem_t left;       /* posted with done (event mode's main thread waits on it) */
} echo_t;

static void echo_closed(mw_svc_t *s, mw_conn_id_t id, int reason, void *ud) {
    echo_t *e = ud;
    if (reason != MW_ECLOSED && reason != MW_ESTATE)
        fprintf(stderr, "%s svc: connection closed: %s\n", tool_prog(), mw_svc_conn_error(s, id));
    if (e->once && !atomic_exchange(&e->done, true)) sem_post(&e->left);
}

/* A full tx buffer means the client stopped reading: drop it. */
static void echo_give_up(echo_t *e, mw_conn_id_t id, int r) {
    fprintf(stderr, "%s svc: echo failed (%s), closing the connection\n", tool_prog(),
            r == MW_EAGAIN ? "client not reading" : mw_svc_conn_error(e->svc, id));
    mw_svc_close_conn(e->svc, id);
}

static void echo_on_msg(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg,
                        void *ud) {
    int r = mw_svc_send_to(s, id, sch, msg);
    if (r < 0 && r != MW_ECLOSED) echo_give_up(ud, id, r);
}

/* Spin/blocking: retry a full tx buffer while polling lets it drain. */
static void echo_sync(echo_t *e, mw_conn_id_t id, const mw_schema_t *sch, const void *msg) {
    int r = mw_svc_send_to(e->svc, id, sch, msg);
    uint64_t deadline = 0;
    while (r == MW_EAGAIN) {
        uint64_t now = mw_now_ns();
        if (!deadline) deadline = now + RTT_LIMIT_NS;
        if (now > deadline) break;
        mw_svc_poll(e->svc, e->mode == MW_MODE_SPIN ? 0 : MW_NS_PER_MS);
        r = mw_svc_send_to(e->svc, id, sch, msg);
    }
    if (r < 0 && r != MW_ECLOSED) echo_give_up(e, id, r);
}

static void svc_open(echo_t *e, const cfg_t *c, const char *url) {
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    tool_apply_tls(&o.tr, &c->tls, true);
    o.mode = c->mode;
    o.conn.serdes = c->serdes;
    o.sync.timeout_ns = 200 * MW_NS_PER_MS; /* blocking: wake up to notice --once / signals */
    o.event.workers = 1;
    o.event.on_msg = c->mode == MW_MODE_EVENT ? echo_on_msg : NULL;
    o.on_close = echo_closed;
    o.ud = e;
    set_session(&o.session, c, NULL);
    e->mode = c->mode;
    e->once = c->once;
    atomic_init(&e->done, false);
    sem_init(&e->left, 0, 0);
    mw_err_t err;
    mw_err_clear(&err);
    if (mw_svc_listen(&e->svc, url, &pp_protocol, &o, &err) < 0)
        tool_fail("%s", *err.text ? err.text : mw_strerror(err.code));
}

/* Runs until --once's client left or a signal: spin and blocking receive and
 * echo here; event mode's worker echoes and this thread only waits. */
static void svc_serve(echo_t *e) {
    if (e->mode == MW_MODE_EVENT) {
        /* Asleep until the client leaves: a thread that woke up every few
         * ms would share the measured core with the worker (the bench pins
         * both processes of event mode to one core) and show in the tail.
         * Signals are noticed within 200 ms. */
        while (!atomic_load(&e->done) && !tool_stopping()) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 200 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            sem_timedwait(&e->left, &ts);
        }
        return;
    }
    pp_msg_t msg;
    mw_conn_id_t id;
    const mw_schema_t *sch;
    for (;;) {
        int r = mw_svc_recv(e->svc, &id, &sch, &msg, sizeof msg);
        if (r == 0) {
            echo_sync(e, id, sch, &msg);
            continue;
        }
        if (r != MW_EAGAIN && r != MW_ETIMEDOUT)
            tool_fail("svc recv: %s", *mw_svc_last_error(e->svc) ? mw_svc_last_error(e->svc) : mw_strerror(r));
        if (atomic_load_explicit(&e->done, memory_order_relaxed) || tool_stopping()) return;
    }
}

static int run_svc(const cfg_t *c) {
    echo_t e;
    svc_open(&e, c, c->url);
    printf("listening on %d\n", mw_svc_port(e.svc));
    fflush(stdout);
    svc_serve(&e);
    mw_svc_free(e.svc);
    sem_destroy(&e.left);
    return TOOL_EXIT_OK;
}

/* ---- clt: ping ------------------------------------------------------------ */

typedef struct pinger {
    const cfg_t *cfg;
    const mw_schema_t *sch;
    mw_clt_t *clt;
    mw_io_t *io;        /* event mode */
    mw_io_timer_t tick; /* event mode: stall watchdog */
    uint64_t tick_seq, stalled_ns;
    pp_msg_t tx, rx;
    uint64_t seq, total;
    uint64_t t0, t_start, t_end;
    uint64_t *rtt;
    tool_progress_t prog;
    bool finished;
} pinger_t;

/* Before the first echo the usual cause is a svc started with another
 * --serdes (it cannot read our pings): say so. */
static _Noreturn void ping_fail(const pinger_t *p, const char *what, int r) {
    char hint[200] = "";
    if (p->seq == 0)
        snprintf(hint, sizeof hint, "; the svc and the clt must use the same --serdes (this clt: %s); "
                 "the svc's stderr may say more", p->cfg->serdes);
    if (r == MW_ECLOSED)
        tool_fail("%s: the svc closed the connection after %" PRIu64 " round trips%s", what, p->seq, hint);
    if (r == MW_ETIMEDOUT)
        tool_fail("%s: no echo of ping %" PRIu64 " within %d s%s", what, p->seq,
                  (int)(RTT_LIMIT_NS / MW_NS_PER_S), hint);
    const char *why = p->clt ? mw_clt_last_error(p->clt) : "";
    tool_fail("%s: %s%s", what, *why ? why : mw_strerror(r), hint);
}

/* Fills the next ping (outside the timed section) and stamps it. */
static void ping_prepare(pinger_t *p) {
    pp_fill(p->sch, &p->tx, p->seq, 0);
    p->t0 = mw_now_ns();
    pp_set_sent_ns(p->sch, &p->tx, p->t0);
    if (p->seq == p->cfg->warmup) p->t_start = p->t0;
}

/* Checks an echo against the ping in flight and records its round trip. */
static void ping_check(pinger_t *p, const mw_schema_t *s, const void *msg, uint64_t t1) {
    uint64_t seq = pp_seq(s, msg);
    if (s->tag != p->sch->tag)
        tool_fail("echo %" PRIu64 ": got a %s, sent a %s", p->seq, s->name, p->sch->name);
    if (seq != p->seq) tool_fail("echo seq mismatch: got %" PRIu64 ", expected %" PRIu64, seq, p->seq);
    if (pp_sent_ns(s, msg) != p->t0)
        tool_fail("echo %" PRIu64 ": sent_ns %" PRIu64 ", expected %" PRIu64, seq, pp_sent_ns(s, msg), p->t0);
    long bad = pp_check_pad(s, msg);
    if (bad >= 0) tool_fail("echo %" PRIu64 ": pad mismatch at byte %ld", seq, bad);
    if (p->seq >= p->cfg->warmup) p->rtt[p->seq - p->cfg->warmup] = t1 - p->t0;
    p->seq++;
    p->t_end = t1;
    tool_progress_tick(&p->prog, t1, p->seq);
}

static void run_sync(pinger_t *p) {
    bool spin = p->cfg->mode == MW_MODE_SPIN;
    while (p->seq < p->total) {
        ping_prepare(p);
        int r = mw_clt_send(p->clt, p->sch, &p->tx);
        if (r == MW_EAGAIN) r = mw_clt_send_busywait_timeout(p->clt, p->sch, &p->tx, RTT_LIMIT_NS);
        if (r < 0) ping_fail(p, "send", r);
        const mw_schema_t *s;
        r = spin ? mw_clt_recv_busywait_timeout(p->clt, &s, &p->rx, sizeof p->rx, RTT_LIMIT_NS)
                 : mw_clt_recv(p->clt, &s, &p->rx, sizeof p->rx);
        uint64_t t1 = mw_now_ns();
        if (r < 0) ping_fail(p, "recv", r);
        ping_check(p, s, &p->rx, t1);
    }
}

static void ev_send(pinger_t *p) {
    ping_prepare(p);
    int r = mw_clt_send(p->clt, p->sch, &p->tx);
    if (r < 0) ping_fail(p, "send", r);
}

static void ev_connect(mw_clt_t *c, void *ud) {
    (void)c;
    ev_send(ud);
}

static void ev_msg(mw_clt_t *c, const mw_schema_t *s, const void *msg, void *ud) {
    (void)c;
    uint64_t t1 = mw_now_ns();
    pinger_t *p = ud;
    ping_check(p, s, msg, t1);
    if (p->seq < p->total) {
        ev_send(p);
        return;
    }
    p->finished = true;
    mw_io_break(p->io);
}

static void ev_close(mw_clt_t *c, int reason, void *ud) {
    (void)c;
    pinger_t *p = ud;
    if (!p->finished) ping_fail(p, "recv", reason);
}

/* Once a second: fail when no echo came for RTT_LIMIT_NS; keep the progress
 * line going when echoes are slow. */
static void ev_tick(mw_io_timer_t *t, void *ud) {
    pinger_t *p = ud;
    uint64_t now = mw_now_ns();
    p->stalled_ns = p->seq == p->tick_seq ? p->stalled_ns + MW_NS_PER_S : 0;
    p->tick_seq = p->seq;
    if (p->stalled_ns >= (uint64_t)RTT_LIMIT_NS) ping_fail(p, "recv", MW_ETIMEDOUT);
    tool_progress_tick(&p->prog, now, p->seq);
    mw_io_timer_after(p->io, t, MW_NS_PER_S);
}

static void ev_open(pinger_t *p, mw_clt_opts_t *o) {
    mw_io_opts_t io;
    mw_io_opts_init(&io);
    io.backend = "epoll";
    mw_err_t err;
    mw_err_clear(&err);
    if (mw_io_new(&p->io, &io, &err) < 0) tool_fail("io: %s", mw_err_text(&err));
    o->event.io = p->io;
    o->event.on_connect = ev_connect;
    o->event.on_msg = ev_msg;
    o->event.on_close = ev_close;
    o->ud = p;
}

static void run_event(pinger_t *p) {
    mw_io_timer_init(&p->tick, ev_tick, p);
    mw_io_timer_after(p->io, &p->tick, MW_NS_PER_S);
    while (!p->finished) {
        int r = mw_io_run(p->io);
        if (r < 0) tool_fail("io: %s", mw_io_last_error(p->io));
    }
    mw_io_timer_stop(p->io, &p->tick);
}

/* Connects, runs warmup + count round trips, fills res. Returns the sorted
 * round-trip times (count of them), owned by the caller. */
static uint64_t *ping_run(const cfg_t *c, const char *url, result_t *res) {
    pinger_t *p = calloc(1, sizeof *p);
    if (!p) tool_fail("out of memory");
    p->cfg = c;
    p->sch = c->sch;
    p->total = c->warmup + c->count;
    p->rtt = malloc(c->count * sizeof *p->rtt);
    if (!p->rtt) tool_fail("out of memory for %" PRIu64 " samples", c->count);
    tool_progress_init(&p->prog, c->progress, "round trips", p->total);

    mw_clt_opts_t o;
    mw_clt_opts_init(&o);
    tool_apply_tls(&o.tr, &c->tls, false);
    o.mode = c->mode;
    o.conn.serdes = c->serdes;
    o.sync.timeout_ns = RTT_LIMIT_NS; /* blocking mode */
    set_session(&o.session, c, "pingpong");
    if (c->mode == MW_MODE_EVENT) ev_open(p, &o);
    mw_err_t err;
    mw_err_clear(&err);
    int r = mw_clt_connect(&p->clt, url, &pp_protocol, &o, &err);
    if (r < 0) tool_fail("%s", *err.text ? err.text : mw_strerror(r));
    if (c->mode == MW_MODE_EVENT) run_event(p);
    else run_sync(p);
    tool_progress_end(&p->prog);
    memset(&res->sess, 0, sizeof res->sess);
    if (c->journal) mw_clt_session_stats(p->clt, &res->sess);
    mw_clt_free(p->clt);
    mw_io_free(p->io);

    tool_percentiles(p->rtt, c->count, &res->pct);
    double secs = (double)(p->t_end - p->t_start) / 1e9;
    res->per_s = secs > 0 ? (double)c->count / secs : 0;
    uint64_t *rtt = p->rtt;
    free(p);
    return rtt;
}

static void print_result(const cfg_t *c, const result_t *r) {
    const tool_pct_t *q = &r->pct;
    printf("pingpong: mode %s, serdes %s, size %u (%s), %" PRIu64 " round trips (+%" PRIu64
           " warmup), %s\n",
           mw_mode_name(c->mode), c->serdes, c->sch->fixed_size, c->sch->name, c->count, c->warmup, c->url);
    printf("rtt us: min %.3f  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n", q->min / 1e3,
           q->p50 / 1e3, q->p90 / 1e3, q->p99 / 1e3, q->p999 / 1e3, q->max / 1e3);
    printf("round trips/s: %.0f\n", r->per_s);
    if (c->journal)
        printf("session: fsync %s, %" PRIu64 " messages numbered, %" PRIu64 " fsyncs, journal %" PRIu64 " bytes\n",
               c->fsync ? c->fsync : "none", r->sess.next_out - 1, r->sess.fsyncs, r->sess.journal_bytes);
}

static void print_json(const cfg_t *c, const result_t *r) {
    tool_json_t j;
    tool_json_begin(&j, stdout);
    tool_json_str(&j, "mode", mw_mode_name(c->mode));
    tool_json_str(&j, "serdes", c->serdes);
    tool_json_str(&j, "url", c->url);
    tool_json_u64(&j, "size", c->sch->fixed_size);
    tool_json_u64(&j, "count", c->count);
    tool_json_obj(&j, "rtt_ns");
    tool_json_u64(&j, "min", r->pct.min);
    tool_json_u64(&j, "p50", r->pct.p50);
    tool_json_u64(&j, "p90", r->pct.p90);
    tool_json_u64(&j, "p99", r->pct.p99);
    tool_json_u64(&j, "p999", r->pct.p999);
    tool_json_u64(&j, "max", r->pct.max);
    tool_json_close(&j);
    tool_json_f64(&j, "rtt_per_s", r->per_s, 1);
    if (c->journal) {
        tool_json_obj(&j, "session");
        tool_json_str(&j, "fsync", c->fsync ? c->fsync : "none");
        tool_json_u64(&j, "next_out", r->sess.next_out);
        tool_json_u64(&j, "fsyncs", r->sess.fsyncs);
        tool_json_u64(&j, "journal_bytes", r->sess.journal_bytes);
        tool_json_close(&j);
    }
    tool_json_end(&j);
}

static int run_clt(const cfg_t *c) {
    result_t res;
    uint64_t *rtt = ping_run(c, c->url, &res);
    print_result(c, &res);
    if (c->plot) {
        char title[400];
        const char *sep = strstr(c->url, "://");
        snprintf(title, sizeof title, "msgwire pingpong: %s, %.*s transport, %s mode, %s serdes, %s (%u bytes)",
                 c->url, sep ? (int)(sep - c->url) : 3, sep ? c->url : "tcp", mw_mode_name(c->mode), c->serdes,
                 c->sch->name, c->sch->fixed_size);
        if (tool_svg_histogram(c->plot, rtt, c->count, &res.pct, title) != 0)
            tool_fail("cannot write %s: %s", c->plot, strerror(errno));
        printf("plot: %s\n", c->plot);
    }
    if (c->json) print_json(c, &res);
    fflush(stdout);
    free(rtt);
    return TOOL_EXIT_OK;
}

/* ---- demo ----------------------------------------------------------------- */

static void *demo_svc_main(void *arg) {
    svc_serve(arg);
    return NULL;
}

static void pin_or_fail(int cpu) {
    int e = tool_pin_cpu(cpu);
    if (e) tool_fail("cannot pin to cpu %d: %s", cpu, strerror(e));
}

/* One mode: a svc on a thread, the clt on this one, both over 127.0.0.1.
 * With --cpu N the svc's threads (which inherit this thread's CPU mask when
 * they start) go on the next CPU and the clt stays on N. */
static void demo_one(const cfg_t *c) {
    echo_t e;
    if (c->cpu >= 0) pin_or_fail((c->cpu + 1) % tool_ncpu());
    svc_open(&e, c, "tcp://127.0.0.1:0");
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", mw_svc_port(e.svc));
    pthread_t th;
    if (pthread_create(&th, NULL, demo_svc_main, &e) != 0) tool_fail("cannot start the svc thread");
    pin_or_fail(c->cpu);
    result_t r;
    free(ping_run(c, url, &r));
    pthread_join(th, NULL);
    mw_svc_free(e.svc);
    sem_destroy(&e.left);
    printf("%-9s %-8s %9.1f %9.1f %9.1f %9.1f %9.1f %14.0f\n", mw_mode_name(c->mode), c->serdes,
           r.pct.p50 / 1e3, r.pct.p90 / 1e3, r.pct.p99 / 1e3, r.pct.p999 / 1e3, r.pct.max / 1e3, r.per_s);
    fflush(stdout);
}

static int run_demo(cfg_t *c, bool mode_given) {
    c->once = true;
    printf("msgwire pingpong demo: a Svc echoes %s (%u-byte) messages back to a Clt over 127.0.0.1\n\n",
           c->sch->name, c->sch->fixed_size);
    printf("%-9s %-8s %9s %9s %9s %9s %9s %14s\n", "mode", "serdes", "p50 us", "p90 us", "p99 us",
           "p99.9 us", "max us", "round trips/s");
    fflush(stdout);
    static const mw_mode_t modes[] = {MW_MODE_SPIN, MW_MODE_BLOCKING, MW_MODE_EVENT};
    for (int i = 0; i < 3; i++) {
        if (mode_given && modes[i] != c->mode) continue;
        cfg_t one = *c;
        one.mode = modes[i];
        demo_one(&one);
    }
    char pinning[64] = "unpinned";
    if (c->cpu >= 0)
        snprintf(pinning, sizeof pinning, "clt on cpu %d, svc on cpu %d", c->cpu, (c->cpu + 1) % tool_ncpu());
    printf("\nMeasured in one process: Svc on a thread, Clt on the main thread, TCP over 127.0.0.1; "
           "each round trip timed with mw_now_ns() from send to checked echo; %" PRIu64 " round trips "
           "per mode after %" PRIu64 " warmup; nearest-rank percentiles; %d CPUs, %s.\n",
           c->count, c->warmup, tool_ncpu(), pinning);
    return TOOL_EXIT_OK;
}

/* ---- main ----------------------------------------------------------------- */

int main(int argc, char **argv) {
    tool_init("pingpong");
    if (argc < 2) tool_usage_fail(USAGE, "missing command (svc, clt or demo)");
    const char *cmd = argv[1];
    bool demo = strcmp(cmd, "demo") == 0;
    cfg_t c = {.mode_name = "spin", .serdes = "fixed", .size = PP_DEFAULT_SIZE, .count = 100000,
               .warmup = 10000, .cpu = -1};
    if (demo) {
        c.count = 20000;
        c.warmup = 2000;
    }
    bool mode_given = false, warmup_given = false;
    const tool_opt_t opts[] = {
        {"--url", TOOL_OPT_STR, &c.url, NULL},         {"--mode", TOOL_OPT_STR, &c.mode_name, &mode_given},
        {"--serdes", TOOL_OPT_STR, &c.serdes, NULL},   {"--size", TOOL_OPT_U64, &c.size, NULL},
        {"--count", TOOL_OPT_U64, &c.count, NULL},     {"--warmup", TOOL_OPT_U64, &c.warmup, &warmup_given},
        {"--cpu", TOOL_OPT_INT, &c.cpu, NULL},         {"--once", TOOL_OPT_FLAG, &c.once, NULL},
        {"--json", TOOL_OPT_FLAG, &c.json, NULL},      {"--plot", TOOL_OPT_STR, &c.plot, NULL},
        {"--progress", TOOL_OPT_FLAG, &c.progress, NULL},
        {"--journal", TOOL_OPT_STR, &c.journal, NULL}, {"--fsync", TOOL_OPT_STR, &c.fsync, NULL},
        TOOL_TLS_OPTS(&c.tls),
    };
    if (!demo && strcmp(cmd, "svc") != 0 && strcmp(cmd, "clt") != 0) {
        if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
            fputs(USAGE, stdout);
            return TOOL_EXIT_OK;
        }
        tool_usage_fail(USAGE, "unknown command '%s' (svc, clt or demo)", cmd);
    }
    tool_parse(argc, argv, 2, opts, sizeof opts / sizeof opts[0], USAGE);
    c.mode = tool_parse_mode(c.mode_name, USAGE);
    tool_check_serdes(c.serdes, USAGE);
    c.sch = pp_schema_for_size(c.size);
    if (!c.sch) tool_usage_fail(USAGE, "--size %" PRIu64 " is over the largest message (%d)", c.size, PP_MAX_SIZE);
    if (!demo && !c.url) tool_usage_fail(USAGE, "%s needs --url", cmd);
    if (c.count == 0 || c.count > ((uint64_t)1 << 32)) tool_usage_fail(USAGE, "--count must be 1 .. 2^32");
    if (demo && !warmup_given && c.count < 10 * c.warmup) c.warmup = c.count / 10;
    if (!demo) pin_or_fail(c.cpu); /* the demo pins per thread */
    signal(SIGPIPE, SIG_IGN);
    if (demo) return run_demo(&c, mode_given);
    if (strcmp(cmd, "clt") == 0) return run_clt(&c);
    tool_catch_signals(); /* the svc ends its loop on SIGINT / SIGTERM and cleans up */
    return run_svc(&c);
}
