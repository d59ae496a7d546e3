/* md_client.c - a market-data feed handler for exchange_sim (md_proto.h).
 *
 *   md_client --url ws://HOST:PORT/PATH --symbols A,B,... [--seconds S] [--count N]
 *             [--print] [--record DIR]
 *   md_client --replay FILE [--print] [--count N]
 *
 * Live: one event-mode Clt (endpoint) per symbol, all on one mw_io (epoll)
 * that the main thread polls. Each endpoint subscribes to its symbol in
 * on_connect, so it subscribes again after every reconnect; reconnects back
 * off from 100 ms to 2 s with 20% jitter; a heartbeat goes out every second
 * and a connection silent for 3 s is dropped, so an exchange that died
 * without closing its sockets is noticed. Every read is timestamped
 * (rx_timestamps) and --print shows each message with that receive time and
 * the exchange's own ts_ns.
 *
 * Sequence numbers are checked per symbol: a jump inside one connection is a
 * gap (a bug: the exchange never drops messages, it disconnects a client
 * that does not keep up); a jump or a restart from 1 across a reconnect is
 * expected and reported as such.
 *
 * --record DIR records every connection's received bytes to
 * DIR/SYMBOL-<connect#>.mwrec (mw_record.h). --replay FILE reads such a file
 * back through the same WebSocket and JSON code, with no network, and prints
 * the messages exactly as the live run did, with the recorded receive times.
 *
 * Output: stdout has the event lines (connected, subscribed, closed, sequence
 * jumps), the messages with --print, and the summary; stderr has a status
 * line every second and errors.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "md_proto.h"
#include "mw_clt.h"
#include "mw_record.h"
#include "mw_ws.h"
#include "tool.h"

static const char USAGE[] =
    "usage: md_client --url ws://HOST:PORT/PATH --symbols A,B,... [--seconds S] [--count N]\n"
    "                 [--print] [--record DIR]\n"
    "       md_client --replay FILE [--print] [--count N]\n"
    "\n"
    "  Subscribes to each symbol over its own connection to exchange_sim, reconnecting\n"
    "  (and subscribing again) whenever a connection drops, and checks every symbol's\n"
    "  sequence numbers.\n"
    "  --seconds  stop after S seconds (default: at SIGINT / SIGTERM)\n"
    "  --count    stop after N trades and quotes in total\n"
    "  --print    print every trade and quote with its receive time (rx, monotonic ns)\n"
    "             and the exchange's time (ts, wall-clock ns)\n"
    "  --record   record each connection to DIR/SYMBOL-<connect#>.mwrec\n"
    "  --replay   play a recording back (no network) and print it as the live run did\n"
    "  Exit status: 0 when every symbol received data after its last connect and no\n"
    "  sequence gap occurred inside a connection (replay: the recording was read to\n"
    "  its end); 1 usage; 2 failure.\n";

#define RECONNECT_MIN_NS (100 * MW_NS_PER_MS)
#define RECONNECT_MAX_NS (2 * MW_NS_PER_S)
#define RECONNECT_JITTER 0.2
#define CONNECT_TIMEOUT_NS (2 * MW_NS_PER_S)
#define IDLE_TIMEOUT_NS (3 * MW_NS_PER_S)
#define HEARTBEAT_NS (1 * MW_NS_PER_S)
#define STATUS_NS (1 * MW_NS_PER_S)

typedef struct cfg {
    const char *url, *symbols, *record, *replay;
    double seconds;
    uint64_t count;
    bool print;
} cfg_t;

struct app;

/* One symbol: its endpoint (live) and what it has seen. */
typedef struct feed {
    struct app *app;
    char sym[MD_SYMBOL_CAP]; /* replay: taken from the first message */
    mw_clt_t *clt;
    bool open;
    bool fresh;              /* no trade or quote yet on this connection */
    bool have_seq;
    uint64_t last_seq;
    uint64_t msgs, trades, quotes, heartbeats, since_connect, failed_attempts;
    uint64_t gaps, missed;   /* inside a connection: should never happen */
    uint64_t jumps;          /* across a reconnect: expected */
    char rec_path[PATH_MAX]; /* opts.tr.record_path points here */
} feed_t;

typedef struct app {
    const cfg_t *cfg;
    mw_io_t *io;
    feed_t *feeds;
    int nfeeds;
    mw_io_timer_t t_status, t_stop;
    mw_sel_src_t sig_src;
    int sig_fd;
    bool done;
    uint64_t total, t0;
} app_t;

/* ---- messages (live and replay alike) -------------------------------------------- */

static void check_seq(feed_t *f, const char *sym, uint64_t seq) {
    if (f->have_seq && seq != f->last_seq + 1) {
        if (f->fresh) {
            f->jumps++;
            printf("%.*s seq %" PRIu64 " -> %" PRIu64 " across the reconnect (%s)\n", MD_SYMBOL_CAP, sym,
                   f->last_seq, seq, seq <= f->last_seq ? "the exchange restarted" : "missed while away");
        } else {
            f->gaps++;
            f->missed += seq > f->last_seq ? seq - f->last_seq - 1 : 0;
            printf("%.*s GAP: seq %" PRIu64 " after %" PRIu64 " on one connection\n", MD_SYMBOL_CAP, sym, seq,
                   f->last_seq);
        }
    }
    f->fresh = false;
    f->have_seq = true;
    f->last_seq = seq;
}

static void on_trade(feed_t *f, const trade_t *t, uint64_t rx_ns) {
    check_seq(f, t->symbol, t->seq);
    f->trades++;
    if (f->app->cfg->print)
        printf("%.*s trade seq=%" PRIu64 " px=%.15g qty=%" PRIu32 " side=%s ts=%" PRIu64 " rx=%" PRIu64 "\n",
               MD_SYMBOL_CAP, t->symbol, t->seq, t->px, t->qty, md_side_name(t->side), t->ts_ns, rx_ns);
}

static void on_quote(feed_t *f, const quote_t *q, uint64_t rx_ns) {
    check_seq(f, q->symbol, q->seq);
    f->quotes++;
    if (f->app->cfg->print)
        printf("%.*s quote seq=%" PRIu64 " bid=%.15g ask=%.15g bid_qty=%" PRIu32 " ask_qty=%" PRIu32 " ts=%" PRIu64
               " rx=%" PRIu64 "\n",
               MD_SYMBOL_CAP, q->symbol, q->seq, q->bid, q->ask, q->bid_qty, q->ask_qty, q->ts_ns, rx_ns);
}

/* Every message of every feed comes here, with the receive time of the read
 * that brought it. */
static void feed_msg(feed_t *f, const mw_schema_t *s, const void *msg, uint64_t rx_ns) {
    app_t *a = f->app;
    const char *sym;
    switch (s->tag) {
    case subscribed_TAG: {
        const subscribed_t *m = msg;
        if (m->ok) printf("%.*s subscribed\n", MD_SYMBOL_CAP, m->symbol);
        else printf("%.*s not subscribed: the exchange does not list it\n", MD_SYMBOL_CAP, m->symbol);
        return;
    }
    case heartbeat_TAG:
        f->heartbeats++;
        return;
    case trade_TAG:
        on_trade(f, msg, rx_ns);
        sym = ((const trade_t *)msg)->symbol;
        break;
    case quote_TAG:
        on_quote(f, msg, rx_ns);
        sym = ((const quote_t *)msg)->symbol;
        break;
    default:
        printf("%s unexpected %s message\n", f->sym, s->name);
        return;
    }
    if (!f->sym[0]) memcpy(f->sym, sym, MD_SYMBOL_CAP - 1); /* replay: named by its data */
    f->msgs++;
    f->since_connect++;
    a->total++;
    if (a->cfg->count && a->total >= a->cfg->count) a->done = true;
}

/* ---- live endpoints ---------------------------------------------------------------- */

/* DIR/SYMBOL-%u.mwrec: the Clt puts the connect number in place of %u, so
 * every connection records to a file of its own. */
static void set_record_path(feed_t *f) {
    snprintf(f->rec_path, sizeof f->rec_path, "%s/%s-%%u.mwrec", f->app->cfg->record, f->sym);
}

static void ep_connect(mw_clt_t *c, void *ud) {
    feed_t *f = ud;
    uint64_t n = mw_clt_connects(c);
    f->open = true;
    f->fresh = true;
    f->since_connect = 0;
    printf("%s connected #%" PRIu64 "%s\n", f->sym, n, n > 1 ? " (reconnect)" : "");
    subscribe_t m;
    md_symbol_set(m.symbol, f->sym, strlen(f->sym));
    int r = mw_clt_send(c, subscribe_schema(), &m);
    if (r < 0) printf("%s cannot subscribe: %s\n", f->sym, *mw_clt_last_error(c) ? mw_clt_last_error(c) : mw_strerror(r));
}

static void ep_msg(mw_clt_t *c, const mw_schema_t *s, const void *msg, void *ud) {
    feed_msg(ud, s, msg, mw_clt_rx_time_ns(c));
}

/* Called for a dropped connection and for every failed attempt. */
static void ep_close(mw_clt_t *c, int reason, void *ud) {
    feed_t *f = ud;
    const char *why = mw_clt_last_error(c);
    if (!*why) why = mw_strerror(reason);
    if (f->open) {
        printf("%s closed after %" PRIu64 " messages: %s\n", f->sym, f->since_connect, why);
    } else {
        f->failed_attempts++;
        printf("%s connect failed: %s\n", f->sym, why);
    }
    f->open = false;
}

static bool ep_can_reconnect(mw_clt_t *c, int reason, uint32_t attempt, void *ud) {
    (void)c;
    (void)reason;
    (void)attempt;
    const feed_t *f = ud;
    return !f->app->done;
}

static void ep_heartbeat(mw_clt_t *c, void *ud) {
    (void)ud;
    heartbeat_t hb = {mw_wall_ns()};
    mw_clt_send(c, heartbeat_schema(), &hb); /* a full buffer: the idle timeout will tell */
}

static void ep_open(app_t *a, feed_t *f) {
    mw_clt_opts_t o;
    mw_clt_opts_init(&o);
    o.mode = MW_MODE_EVENT;
    o.event.io = a->io;
    o.conn.serdes = "text";
    o.conn.max_msg = MD_MAX_MSG;
    o.connect_timeout_ns = CONNECT_TIMEOUT_NS;
    o.event.reconnect = true;
    o.retry.min_delay_ns = RECONNECT_MIN_NS;
    o.retry.max_delay_ns = RECONNECT_MAX_NS;
    o.retry.jitter = RECONNECT_JITTER;
    o.event.can_reconnect = ep_can_reconnect;
    o.event.idle_timeout_ns = IDLE_TIMEOUT_NS;
    o.event.heartbeat_ns = HEARTBEAT_NS;
    o.event.on_heartbeat = ep_heartbeat;
    o.rx_timestamps = true;
    o.event.on_connect = ep_connect;
    o.event.on_msg = ep_msg;
    o.event.on_close = ep_close;
    o.ud = f;
    if (a->cfg->record) {
        set_record_path(f);
        o.tr.record_path = f->rec_path;
    }
    mw_err_t err;
    mw_err_clear(&err);
    int r = mw_clt_connect(&f->clt, a->cfg->url, &md_protocol, &o, &err);
    if (r == MW_EINVAL) tool_usage_fail(USAGE, "%s", mw_err_text(&err));
    if (r < 0) tool_fail("%s: %s", f->sym, *err.text ? err.text : mw_strerror(r));
}

/* ---- timers and signals --------------------------------------------------------------- */

static void on_status(mw_io_timer_t *t, void *ud) {
    app_t *a = ud;
    double secs = (double)(mw_io_now(a->io) - a->t0) / 1e9;
    fprintf(stderr, "%s %.1fs:", tool_prog(), secs);
    for (int i = 0; i < a->nfeeds; i++) {
        const feed_t *f = &a->feeds[i];
        uint64_t n = mw_clt_connects(f->clt);
        fprintf(stderr, "%s %s %s connects=%" PRIu64 " reconnects=%" PRIu64 " msgs=%" PRIu64, i ? " |" : "", f->sym,
                mw_clt_state_name(mw_clt_state(f->clt)), n, n ? n - 1 : 0, f->msgs);
    }
    fputc('\n', stderr);
    mw_io_timer_after(a->io, t, STATUS_NS);
}

static void on_stop(mw_io_timer_t *t, void *ud) {
    (void)t;
    app_t *a = ud;
    a->done = true;
}

static int on_signal(mw_sel_src_t *src, int events) {
    (void)events;
    app_t *a = src->ud;
    struct signalfd_siginfo si;
    while (read(a->sig_fd, &si, sizeof si) == (ssize_t)sizeof si) a->done = true;
    return 1;
}

/* SIGINT / SIGTERM arrive as readable bytes on a signalfd the io watches. */
static void signals_open(app_t *a) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) tool_fail("cannot block signals");
    a->sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (a->sig_fd < 0) tool_fail("signalfd: %s", strerror(errno));
    mw_sel_src_init(&a->sig_src, a->sig_fd, MW_WANT_READ, on_signal, a);
    if (mw_io_add(a->io, &a->sig_src) < 0) tool_fail("cannot watch the signalfd");
}

/* ---- summary ------------------------------------------------------------------------ */

static void print_table(const app_t *a, bool live) {
    printf("%-12s %8s %8s %8s %8s %6s %6s %14s\n", "symbol", "msgs", "trades", "quotes", "connects", "gaps",
           "jumps", "since_connect");
    for (int i = 0; i < a->nfeeds; i++) {
        const feed_t *f = &a->feeds[i];
        uint64_t connects = live ? mw_clt_connects(f->clt) : 1;
        printf("%-12s %8" PRIu64 " %8" PRIu64 " %8" PRIu64 " %8" PRIu64 " %6" PRIu64 " %6" PRIu64 " %14" PRIu64 "\n",
               f->sym[0] ? f->sym : "-", f->msgs, f->trades, f->quotes, connects, f->gaps, f->jumps,
               f->since_connect);
    }
}

/* Prints why a feed is not healthy to stderr; true if it is. */
static bool feed_ok(const feed_t *f, bool live) {
    bool ok = true;
    if (f->gaps) {
        fprintf(stderr, "%s: %s: %" PRIu64 " gaps (%" PRIu64 " messages missed) inside a connection\n",
                tool_prog(), f->sym, f->gaps, f->missed);
        ok = false;
    }
    if (live && f->since_connect == 0) {
        uint64_t n = mw_clt_connects(f->clt);
        if (n) fprintf(stderr, "%s: %s: nothing received since connect #%" PRIu64 "\n", tool_prog(), f->sym, n);
        else fprintf(stderr, "%s: %s: never connected\n", tool_prog(), f->sym);
        ok = false;
    }
    return ok;
}

/* ---- live ------------------------------------------------------------------------------ */

static void record_dir_check(const char *dir) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) tool_fail("cannot create %s: %s", dir, strerror(errno));
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) tool_fail("%s is not a directory", dir);
    if (access(dir, W_OK) != 0) tool_fail("cannot write to %s: %s", dir, strerror(errno));
    if (strlen(dir) + 1 + MD_SYMBOL_MAX + 28 >= PATH_MAX) tool_usage_fail(USAGE, "--record path too long");
}

/* The io, the signalfd, one endpoint per symbol and the timers. */
static void live_open(app_t *a, char names[][MD_SYMBOL_CAP]) {
    mw_io_opts_t io;
    mw_io_opts_init(&io);
    mw_err_t err;
    mw_err_clear(&err);
    if (mw_io_new(&a->io, &io, &err) < 0) tool_fail("io: %s", mw_err_text(&err));
    signals_open(a);
    a->t0 = mw_io_now(a->io);
    for (int i = 0; i < a->nfeeds; i++) {
        a->feeds[i].app = a;
        memcpy(a->feeds[i].sym, names[i], MD_SYMBOL_CAP);
        ep_open(a, &a->feeds[i]);
    }
    mw_io_timer_init(&a->t_status, on_status, a);
    mw_io_timer_init(&a->t_stop, on_stop, a);
    mw_io_timer_after(a->io, &a->t_status, STATUS_NS);
    if (a->cfg->seconds > 0) mw_io_timer_after(a->io, &a->t_stop, (int64_t)(a->cfg->seconds * 1e9));
}

/* Frees the endpoints (closing them flushes their recordings), then the io. */
static void live_close(app_t *a) {
    mw_io_timer_stop(a->io, &a->t_status);
    mw_io_timer_stop(a->io, &a->t_stop);
    for (int i = 0; i < a->nfeeds; i++) mw_clt_free(a->feeds[i].clt);
    mw_resolve_shutdown(a->io);
    mw_io_del(a->io, &a->sig_src);
    close(a->sig_fd);
    mw_io_free(a->io);
}

static int run_live(const cfg_t *c) {
    static char names[MD_MAX_SYMBOLS][MD_SYMBOL_CAP];
    int n = md_symbols_parse(c->symbols, names, MD_MAX_SYMBOLS);
    if (n < 0)
        tool_usage_fail(USAGE, "bad --symbols '%s': 1 to %d distinct names of 1 to %d characters [A-Za-z0-9._-]",
                        c->symbols, MD_MAX_SYMBOLS, MD_SYMBOL_MAX);
    if (c->record) record_dir_check(c->record);
    app_t a = {.cfg = c, .nfeeds = n, .sig_fd = -1};
    a.feeds = calloc((size_t)n, sizeof *a.feeds);
    if (!a.feeds) tool_fail("out of memory");
    live_open(&a, names);
    /* The timers bound every wait; output goes out once per poll, not per line. */
    while (!a.done) {
        int r = mw_io_poll(a.io, -1);
        if (r < 0) tool_fail("poll: %s", mw_io_last_error(a.io));
        fflush(stdout);
    }
    printf("summary after %.1f s:\n", (double)(mw_io_now(a.io) - a.t0) / 1e9);
    print_table(&a, true);
    bool ok = true;
    for (int i = 0; i < n; i++) ok = feed_ok(&a.feeds[i], true) && ok;
    printf("%s\n", ok ? "ok: every symbol received data after its last connect" : "FAILED (reasons on stderr)");
    fflush(stdout);
    live_close(&a);
    free(a.feeds);
    return ok ? TOOL_EXIT_OK : TOOL_EXIT_FAIL;
}

/* ---- replay ----------------------------------------------------------------------------- */

/* Opens FILE as a WebSocket client session: the recording holds what the
 * socket delivered (the upgrade response, then frames), which the WebSocket
 * client reads in replay mode. *tap is the replay stream, owned by the Clt. */
static mw_clt_t *replay_open(const char *path, mw_stream_t **tap) {
    mw_err_t err;
    mw_err_clear(&err);
    mw_stream_t *rs, *ws;
    if (mw_replay_open(&rs, path, &err) < 0) tool_fail("%s", mw_err_text(&err));
    *tap = rs;
    mw_ws_opts_t wo;
    mw_ws_opts_init(&wo);
    wo.flags = MW_WS_REPLAY;
    wo.max_msg = MD_MAX_MSG;
    if (mw_ws_client_wrap(&ws, rs, &wo, &err) < 0) tool_fail("%s: %s", path, mw_err_text(&err));
    mw_clt_opts_t o;
    mw_clt_opts_init(&o);
    o.mode = MW_MODE_SPIN;
    o.conn.serdes = "text";
    o.conn.max_msg = MD_MAX_MSG;
    o.rx_timestamps = true;
    mw_clt_t *clt;
    if (mw_clt_open_stream(&clt, ws, &md_protocol, &o, &err) < 0) tool_fail("%s: %s", path, mw_err_text(&err));
    return clt;
}

/* How a replay ended: 0 read to the end (or --count), else the Clt's error. */
static const char *replay_end(int r, bool counted) {
    if (counted) return "stopped at --count";
    if (r == MW_ECLOSED) return "end of recording";
    if (r == MW_ETRUNC) return "end of recording (the session ended inside a message)";
    return "replay failed";
}

static int run_replay(const cfg_t *c) {
    app_t a = {.cfg = c, .nfeeds = 1, .sig_fd = -1};
    feed_t f = {.app = &a, .fresh = true};
    a.feeds = &f;
    mw_stream_t *tap;
    mw_clt_t *clt = replay_open(c->replay, &tap);
    time_t wall = (time_t)(mw_replay_start_wall_ns(tap) / MW_NS_PER_S);
    struct tm tm;
    char when[32] = "?";
    if (gmtime_r(&wall, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("replay %s: recorded %s from %s\n", c->replay, when, mw_replay_label(tap));
    md_msg_t m;
    const mw_schema_t *s;
    int r = 0;
    while (!a.done) {
        r = mw_clt_recv(clt, &s, &m, sizeof m);
        if (r == MW_EAGAIN) continue; /* a read that ended inside a message */
        if (r < 0) break;
        feed_msg(&f, s, &m, mw_clt_rx_time_ns(clt)); /* the recorded time of the read */
    }
    bool clean = a.done || r == MW_ECLOSED || r == MW_ETRUNC;
    printf("%s after %" PRIu64 " messages\n", replay_end(r, a.done), f.msgs);
    print_table(&a, false);
    bool ok = feed_ok(&f, false);
    fflush(stdout);
    if (!clean) {
        char why[MW_ERR_TEXT_MAX];
        snprintf(why, sizeof why, "%s", mw_clt_last_error(clt));
        mw_clt_free(clt);
        tool_fail("replay %s: %s", c->replay, why);
    }
    mw_clt_free(clt);
    return ok ? TOOL_EXIT_OK : TOOL_EXIT_FAIL;
}

/* ---- main ------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    tool_init("md_client");
    cfg_t c = {0};
    const tool_opt_t opts[] = {
        {"--url", TOOL_OPT_STR, &c.url, NULL},         {"--symbols", TOOL_OPT_STR, &c.symbols, NULL},
        {"--seconds", TOOL_OPT_F64, &c.seconds, NULL}, {"--count", TOOL_OPT_U64, &c.count, NULL},
        {"--print", TOOL_OPT_FLAG, &c.print, NULL},    {"--record", TOOL_OPT_STR, &c.record, NULL},
        {"--replay", TOOL_OPT_STR, &c.replay, NULL},
    };
    tool_parse(argc, argv, 1, opts, sizeof opts / sizeof opts[0], USAGE);
    signal(SIGPIPE, SIG_IGN);
    if (c.replay) {
        if (c.url || c.symbols || c.record || c.seconds > 0)
            tool_usage_fail(USAGE, "--replay takes only --print and --count");
        return run_replay(&c);
    }
    if (!c.url) tool_usage_fail(USAGE, "--url is required (or --replay FILE)");
    if (!c.symbols) tool_usage_fail(USAGE, "--symbols is required");
    return run_live(&c);
}
