/* flood.c - one-way throughput from a Clt to a Svc.
 *
 *   flood recv --url URL [--mode spin|blocking|event] [--serdes S] [--size BYTES]
 *              [--cpu N] [--json] [--progress] [--check-payload] [--cert F --key F] [--ca F] [--insecure]
 *   flood send --url URL [--mode spin|blocking|event] [--serdes S] [--size BYTES]
 *              [--seconds S] [--count N] [--cpu N] [--json] [--progress]
 *
 * send streams ping messages (seq 0, 1, 2, ...; pad derived from seq) as fast
 * as it can, for --seconds (default 2) or --count messages, whichever comes
 * first: batches of mw_clt_send_more, one mw_clt_flush per batch (many
 * messages, one write). On a full buffer it spins (spin), waits in the write
 * (blocking) or waits for writability in its mw_io (event). Then it closes.
 *
 * recv is a Svc that takes one sender (spin/blocking: mw_svc_recv_batch;
 * event: on_msg), checks every message (type, pad, seq
 * = previous + 1: a gap counts as lost, a step back as out_of_order) until
 * the sender disconnects, prints the rate and exits. It gives up after 60 s
 * without data. Time runs from the first message to the last; MB/s counts
 * wire bytes (payload + framing), 10^6 bytes per MB.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mw_clt.h"
#include "mw_svc.h"
#include "pp_proto.h"
#include "tool.h"

static const char USAGE[] =
    "usage:\n"
    "  flood recv --url URL [--mode spin|blocking|event] [--serdes fixed|text|msgpack]\n"
    "             [--size BYTES] [--cpu N] [--json] [--progress] [--check-payload]\n"
    "  flood send --url URL [--mode spin|blocking|event] [--serdes fixed|text|msgpack]\n"
    "             [--size BYTES] [--seconds S] [--count N] [--cpu N] [--json] [--progress]\n"
    "             [--check-payload]\n"
    "\n"
    "  URL is tcp://HOST:PORT, tls://HOST:PORT, ws://HOST:PORT/PATH or wss://HOST:PORT/PATH\n"
    "  (recv: port 0 picks a free port, printed as 'listening on PORT'). tls/wss: recv\n"
    "  needs --cert FILE --key FILE; send verifies against --ca FILE (or the system\n"
    "  store), --insecure skips verification (tests only).\n"
    "  --size picks the smallest message of 32, 64, 128, 256, 512, 1024 or 4096 bytes\n"
    "  (fixed wire size) that holds BYTES; default 64 (recv: default any, taken from the\n"
    "  first message). send stops after --seconds (default 2) or --count messages.\n"
    "  recv checks every sequence number; with --check-payload on both ends the sender\n"
    "  fills every pad byte with a pattern of its sequence number and recv checks it.\n"
    "  Exit status: 0 ok, 1 usage, 2 failure (including lost or reordered messages).\n";

#define IDLE_LIMIT_NS (60 * MW_NS_PER_S)
#define SEND_BATCH_BYTES 65536u

typedef struct cfg {
    const char *url, *mode_name, *serdes;
    mw_mode_t mode;
    uint64_t size, count;
    double seconds;
    bool size_given, count_given, seconds_given;
    int cpu;
    tool_tls_t tls;
    bool json, progress, check_payload;
    const mw_schema_t *sch; /* NULL: recv takes any type */
} cfg_t;

static void nap_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void print_rate(const char *what, const cfg_t *c, const mw_schema_t *s, uint64_t msgs, double secs,
                       double mb) {
    printf("flood %s: mode %s, serdes %s, size %u (%s): %" PRIu64 " msgs in %.3f s, %.0f msgs/s, %.1f MB/s",
           what, mw_mode_name(c->mode), c->serdes, s ? s->fixed_size : 0, s ? s->name : "none", msgs, secs,
           secs > 0 ? (double)msgs / secs : 0, secs > 0 ? mb / secs : 0);
}

static void json_rate(tool_json_t *j, const cfg_t *c, const mw_schema_t *s, uint64_t msgs, double secs,
                      double mb) {
    tool_json_begin(j, stdout);
    tool_json_str(j, "mode", mw_mode_name(c->mode));
    tool_json_str(j, "serdes", c->serdes);
    tool_json_u64(j, "size", s ? s->fixed_size : 0);
    tool_json_u64(j, "msgs", msgs);
    tool_json_f64(j, "seconds", secs, 6);
    tool_json_f64(j, "msgs_per_s", secs > 0 ? (double)msgs / secs : 0, 1);
    tool_json_f64(j, "mb_per_s", secs > 0 ? mb / secs : 0, 3);
}

/* ---- recv ----------------------------------------------------------------- */

typedef struct sink {
    const cfg_t *cfg;
    mw_svc_t *svc;
    const mw_schema_t *seen; /* type of the first message */
    mw_conn_id_t sender;     /* the connection of the first message */
    uint64_t expect, msgs, lost, ooo, bytes;
    uint64_t gap_seq, gap_expect; /* first irregular seq and what was expected */
    uint64_t t_first, t_last;
    int close_reason;
    char close_why[MW_ERR_TEXT_MAX];
    bool warned_other;
    atomic_bool closed;         /* the sender left */
    _Atomic uint64_t published; /* msgs, for the main thread in event mode */
} sink_t;

static void sink_first(sink_t *k, mw_conn_id_t id, const mw_schema_t *s) {
    const cfg_t *c = k->cfg;
    if (c->sch && s->tag != c->sch->tag)
        tool_fail("got a %s (%u bytes), expected a %s (--size %" PRIu64 ")", s->name, s->fixed_size,
                  c->sch->name, c->size);
    k->seen = s;
    k->sender = id;
    k->t_first = mw_now_ns();
}

static void sink_irregular(sink_t *k, uint64_t seq) {
    if (k->lost + k->ooo == 0) {
        k->gap_seq = seq;
        k->gap_expect = k->expect;
    }
    if (seq > k->expect) {
        k->lost += seq - k->expect;
        k->expect = seq + 1;
    } else {
        k->ooo++;
    }
}

static void sink_msg(sink_t *k, mw_conn_id_t id, const mw_schema_t *s, const void *msg) {
    if (k->msgs == 0) {
        sink_first(k, id, s);
    } else if (id != k->sender) { /* one sender only: turn others away */
        if (!k->warned_other) fprintf(stderr, "%s recv: a second sender connected; closing it\n", tool_prog());
        k->warned_other = true;
        mw_svc_close_conn(k->svc, id);
        return;
    }
    uint64_t seq = pp_seq(s, msg);
    if (s->tag != k->seen->tag)
        tool_fail("message seq %" PRIu64 ": a %s in a stream of %s", seq, s->name, k->seen->name);
    if (k->cfg->check_payload) {
        long bad = pp_check_pad(s, msg);
        if (bad >= 0) tool_fail("message seq %" PRIu64 ": pad mismatch at byte %ld", seq, bad);
    }
    if (seq == k->expect) k->expect++;
    else sink_irregular(k, seq);
    if ((++k->msgs & 63) == 0) {
        k->t_last = mw_now_ns();
        atomic_store_explicit(&k->published, k->msgs, memory_order_relaxed);
    }
}

static void sink_on_msg(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg, void *ud) {
    (void)s;
    sink_msg(ud, id, sch, msg);
}

static void sink_on_close(mw_svc_t *s, mw_conn_id_t id, int reason, void *ud) {
    sink_t *k = ud;
    bool failed = reason != MW_ECLOSED && reason != MW_ESTATE;
    /* Not the sender, unless it failed before its first message (e.g. the
     * serdes of the two ends differ): that would otherwise wait 60 s. */
    if (k->msgs ? id != k->sender : !failed) return;
    k->t_last = mw_now_ns();
    k->close_reason = reason;
    mw_conn_stats_t st; /* wire bytes, framing included */
    if (mw_svc_conn_stats(s, id, &st) == 0) k->bytes = st.bytes_in;
    snprintf(k->close_why, sizeof k->close_why, "%s", mw_svc_conn_error(s, id));
    atomic_store_explicit(&k->published, k->msgs, memory_order_relaxed);
    atomic_store_explicit(&k->closed, true, memory_order_release);
}

/* Progress, the 60 s idle limit and signals; called about every millisecond
 * or less often. */
typedef struct watch {
    tool_progress_t prog;
    uint64_t last_msgs, last_ns;
} watch_t;

static void watch_check(watch_t *w, const sink_t *k) {
    uint64_t now = mw_now_ns(), msgs = atomic_load_explicit(&k->published, memory_order_relaxed);
    if (msgs != w->last_msgs || !w->last_ns) {
        w->last_msgs = msgs;
        w->last_ns = now;
    } else if (now - w->last_ns > (uint64_t)IDLE_LIMIT_NS) {
        tool_progress_end(&w->prog);
        tool_fail("no data for %d s after %" PRIu64 " msgs, giving up", (int)(IDLE_LIMIT_NS / MW_NS_PER_S), msgs);
    }
    if (tool_stopping()) {
        tool_progress_end(&w->prog);
        tool_fail("interrupted after %" PRIu64 " msgs", msgs);
    }
    tool_progress_tick(&w->prog, now, msgs);
}

/* Spin/blocking: mw_svc_recv_batch hands over every message the sender's
 * connection has buffered per call (one scan, then one decode and one
 * call each). */
static void recv_sync(sink_t *k, watch_t *w) {
    unsigned n = 0;
    while (!atomic_load_explicit(&k->closed, memory_order_relaxed)) {
        int r = mw_svc_recv_batch(k->svc, sink_on_msg, k, 4096);
        if (r > 0) {
            if ((n += (unsigned)r) < 4096) continue;
            n = 0;
        } else if (r != MW_EAGAIN && r != MW_ETIMEDOUT) {
            tool_fail("recv: %s", *mw_svc_last_error(k->svc) ? mw_svc_last_error(k->svc) : mw_strerror(r));
        }
        watch_check(w, k);
    }
}

static void recv_event(sink_t *k, watch_t *w) {
    while (!atomic_load_explicit(&k->closed, memory_order_acquire)) {
        nap_ms(5);
        watch_check(w, k);
    }
}

static void recv_report(const sink_t *k) {
    const cfg_t *c = k->cfg;
    double secs = k->msgs > 1 ? (double)(k->t_last - k->t_first) / 1e9 : 0;
    double mb = (double)k->bytes / 1e6;
    print_rate("recv", c, k->seen, k->msgs, secs, mb);
    printf(", lost %" PRIu64 ", out_of_order %" PRIu64 "\n", k->lost, k->ooo);
    if (c->json) {
        tool_json_t j;
        json_rate(&j, c, k->seen, k->msgs, secs, mb);
        tool_json_u64(&j, "lost", k->lost);
        tool_json_u64(&j, "out_of_order", k->ooo);
        tool_json_end(&j);
    }
    fflush(stdout);
}

static int run_recv(const cfg_t *c) {
    sink_t *k = calloc(1, sizeof *k);
    if (!k) tool_fail("out of memory");
    k->cfg = c;
    atomic_init(&k->closed, false);
    atomic_init(&k->published, 0);
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    tool_apply_tls(&o.tr, &c->tls, true);
    o.mode = c->mode;
    o.conn.serdes = c->serdes;
    o.sync.timeout_ns = 100 * MW_NS_PER_MS; /* blocking: wake up to check the idle limit */
    o.event.workers = 1;
    o.event.on_msg = c->mode == MW_MODE_EVENT ? sink_on_msg : NULL;
    o.on_close = sink_on_close;
    o.ud = k;
    mw_err_t err;
    mw_err_clear(&err);
    if (mw_svc_listen(&k->svc, c->url, &pp_protocol, &o, &err) < 0)
        tool_fail("%s", *err.text ? err.text : mw_strerror(err.code));
    printf("listening on %d\n", mw_svc_port(k->svc));
    fflush(stdout);
    watch_t w = {.last_ns = 0};
    tool_progress_init(&w.prog, c->progress, "msgs", 0);
    if (c->mode == MW_MODE_EVENT) recv_event(k, &w);
    else recv_sync(k, &w);
    tool_progress_end(&w.prog);
    mw_svc_free(k->svc); /* event mode: joins the worker, so k is final */
    recv_report(k);
    int rc = TOOL_EXIT_OK;
    if (k->close_reason != MW_ECLOSED) {
        fprintf(stderr, "%s: the sender's connection failed: %s\n", tool_prog(), k->close_why);
        rc = TOOL_EXIT_FAIL;
    }
    if (k->lost || k->ooo) {
        fprintf(stderr, "%s: %" PRIu64 " lost, %" PRIu64 " out of order; first at seq %" PRIu64 " (expected %" PRIu64 ")\n",
                tool_prog(), k->lost, k->ooo, k->gap_seq, k->gap_expect);
        rc = TOOL_EXIT_FAIL;
    }
    free(k);
    return rc;
}

/* ---- send ----------------------------------------------------------------- */

typedef struct source {
    const cfg_t *cfg;
    mw_clt_t *clt;
    mw_io_t *io; /* event mode, run by this thread */
    bool connected, closed;
    uint64_t seq;
    uint64_t stall_since; /* when the current wait for room began; 0: not waiting */
} source_t;

static _Noreturn void send_fail(const source_t *p, int r) {
    const char *why = mw_clt_last_error(p->clt);
    if (r == MW_ECLOSED) tool_fail("send: the receiver closed the connection after %" PRIu64 " msgs", p->seq);
    tool_fail("send: %s (after %" PRIu64 " msgs)", *why ? why : mw_strerror(r), p->seq);
}

static void src_connect(mw_clt_t *c, void *ud) {
    (void)c;
    ((source_t *)ud)->connected = true;
}

static void src_close(mw_clt_t *c, int reason, void *ud) {
    (void)c;
    source_t *p = ud;
    p->closed = true;
    send_fail(p, reason);
}

/* The tx buffer is full: flush, and wait the mode's way while the socket is
 * full too. Returns once some room may have been made. */
static void wait_room(source_t *p) {
    int r = mw_clt_flush(p->clt);
    if (r == 0) {
        p->stall_since = 0;
        return;
    }
    if (r != MW_EAGAIN) send_fail(p, r);
    if (p->io) {
        int n = mw_io_poll(p->io, 100 * MW_NS_PER_MS); /* on_ready flushes on writability */
        if (n < 0) tool_fail("io: %s", mw_io_last_error(p->io));
    } else {
        mw_cpu_relax();
    }
    uint64_t now = mw_now_ns();
    if (!p->stall_since) p->stall_since = now;
    else if (now - p->stall_since > (uint64_t)IDLE_LIMIT_NS)
        tool_fail("send: no progress for %d s after %" PRIu64 " msgs", (int)(IDLE_LIMIT_NS / MW_NS_PER_S), p->seq);
}

static void send_open(source_t *p, const cfg_t *c) {
    mw_clt_opts_t o;
    mw_clt_opts_init(&o);
    tool_apply_tls(&o.tr, &c->tls, false);
    o.mode = c->mode;
    o.conn.serdes = c->serdes;
    o.sync.timeout_ns = IDLE_LIMIT_NS; /* blocking: a write that long is a failure */
    mw_err_t err;
    mw_err_clear(&err);
    if (c->mode == MW_MODE_EVENT) {
        mw_io_opts_t io;
        mw_io_opts_init(&io);
        io.backend = "epoll";
        if (mw_io_new(&p->io, &io, &err) < 0) tool_fail("io: %s", mw_err_text(&err));
        o.event.io = p->io;
        o.event.on_connect = src_connect;
        o.event.on_close = src_close;
        o.ud = p;
    }
    int r = mw_clt_connect(&p->clt, c->url, &pp_protocol, &o, &err);
    if (r < 0) tool_fail("%s", *err.text ? err.text : mw_strerror(r));
    uint64_t deadline = mw_now_ns() + 5 * MW_NS_PER_S;
    while (p->io && !p->connected) { /* event mode: on_connect runs in a poll */
        if (mw_now_ns() > deadline) tool_fail("connect %s: on_connect did not run within 5 s", c->url);
        mw_io_poll(p->io, 100 * MW_NS_PER_MS);
    }
}

/* Sends one batch: n messages queued with send_more, then one flush. */
static void send_batch(source_t *p, pp_msg_t *m, uint64_t n, uint64_t now) {
    const mw_schema_t *s = p->cfg->sch;
    for (uint64_t i = 0; i < n; i++) {
        if (p->cfg->check_payload) {
            pp_fill(s, m, p->seq, now);
        } else { /* the raw baseline writes only the sequence number: so do we */
            memcpy((uint8_t *)m + s->fields[0].offset, &p->seq, sizeof p->seq);
            pp_set_sent_ns(s, m, now);
        }
        int r;
        while ((r = mw_clt_send_more(p->clt, s, m)) == MW_EAGAIN) wait_room(p);
        if (r < 0) send_fail(p, r);
        p->seq++;
    }
    int r = mw_clt_flush(p->clt);
    if (r < 0 && r != MW_EAGAIN) send_fail(p, r);
}

static int run_send(const cfg_t *c) {
    source_t p = {.cfg = c};
    send_open(&p, c);
    uint64_t batch = SEND_BATCH_BYTES / c->sch->fixed_size;
    bool use_time = c->seconds_given || !c->count_given;
    uint64_t limit = c->count_given ? c->count : UINT64_MAX;
    pp_msg_t m;
    memset(&m, 0, sizeof m);
    tool_progress_t prog;
    tool_progress_init(&prog, c->progress, "msgs", c->count_given ? c->count : 0);
    uint64_t t0 = mw_now_ns(), now = t0;
    uint64_t t_stop = t0 + (uint64_t)((c->seconds_given ? c->seconds : 2.0) * 1e9);
    while (p.seq < limit && !(use_time && now >= t_stop) && !tool_stopping()) {
        send_batch(&p, &m, limit - p.seq < batch ? limit - p.seq : batch, now);
        now = mw_now_ns();
        tool_progress_tick(&prog, now, p.seq);
    }
    int r;
    while ((r = mw_clt_flush(p.clt)) != 0) /* everything written before the close */
        wait_room(&p);
    uint64_t t1 = mw_now_ns();
    tool_progress_end(&prog);
    mw_conn_stats_t st;
    mw_clt_stats(p.clt, &st);
    mw_clt_free(p.clt);
    mw_io_free(p.io);
    double secs = (double)(t1 - t0) / 1e9, mb = (double)st.bytes_out / 1e6;
    print_rate("send", c, c->sch, p.seq, secs, mb);
    printf("\n");
    if (c->json) {
        tool_json_t j;
        json_rate(&j, c, c->sch, p.seq, secs, mb);
        tool_json_end(&j);
    }
    fflush(stdout);
    return TOOL_EXIT_OK;
}

/* ---- main ----------------------------------------------------------------- */

int main(int argc, char **argv) {
    tool_init("flood");
    if (argc < 2) tool_usage_fail(USAGE, "missing command (recv or send)");
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        fputs(USAGE, stdout);
        return TOOL_EXIT_OK;
    }
    bool recv = strcmp(cmd, "recv") == 0;
    if (!recv && strcmp(cmd, "send") != 0) tool_usage_fail(USAGE, "unknown command '%s' (recv or send)", cmd);
    cfg_t c = {.mode_name = "spin", .serdes = "fixed", .size = PP_DEFAULT_SIZE, .cpu = -1};
    const tool_opt_t opts[] = {
        {"--url", TOOL_OPT_STR, &c.url, NULL},
        {"--mode", TOOL_OPT_STR, &c.mode_name, NULL},
        {"--serdes", TOOL_OPT_STR, &c.serdes, NULL},
        {"--size", TOOL_OPT_U64, &c.size, &c.size_given},
        {"--count", TOOL_OPT_U64, &c.count, &c.count_given},
        {"--seconds", TOOL_OPT_F64, &c.seconds, &c.seconds_given},
        {"--cpu", TOOL_OPT_INT, &c.cpu, NULL},
        {"--json", TOOL_OPT_FLAG, &c.json, NULL},
        {"--progress", TOOL_OPT_FLAG, &c.progress, NULL},
        {"--check-payload", TOOL_OPT_FLAG, &c.check_payload, NULL},
        TOOL_TLS_OPTS(&c.tls),
    };
    tool_parse(argc, argv, 2, opts, sizeof opts / sizeof opts[0], USAGE);
    if (recv && (c.count_given || c.seconds_given))
        tool_usage_fail(USAGE, "recv takes no --count or --seconds: it stops when the sender leaves");
    if (!c.url) tool_usage_fail(USAGE, "%s needs --url", cmd);
    c.mode = tool_parse_mode(c.mode_name, USAGE);
    tool_check_serdes(c.serdes, USAGE);
    c.sch = pp_schema_for_size(c.size);
    if (!c.sch) tool_usage_fail(USAGE, "--size %" PRIu64 " is over the largest message (%d)", c.size, PP_MAX_SIZE);
    if (recv && !c.size_given) c.sch = NULL;
    if (c.seconds_given && (c.seconds <= 0 || c.seconds > 86400)) tool_usage_fail(USAGE, "--seconds must be in (0, 86400]");
    int e = tool_pin_cpu(c.cpu);
    if (e) tool_fail("cannot pin to cpu %d: %s", c.cpu, strerror(e));
    tool_catch_signals(); /* recv and send stop their loops on SIGINT / SIGTERM */
    return recv ? run_recv(&c) : run_send(&c);
}
