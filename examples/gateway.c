/* gateway.c - an order-entry gateway: limit orders and cancels in, acks and
 * fills out, one matching engine behind two listeners.
 *
 *   gateway [--tcp URL] [--tls URL] [--ws URL] [--symbols A,B,...]
 *           [--journal DIR] [--book FILE] [--seconds S] [--json]
 *           [--cert F --key F]
 *
 * Protocol: examples/common/gw_proto.h. The --tcp listener (tcp:// or tls://)
 * and the --tls listener (tls://) speak the fixed serdes, the --ws listener
 * (ws:// or wss://) the text serdes (JSON, for a browser: examples/web/); all
 * feed one engine
 * (examples/common/engine.c), so an order from a browser can match one from a
 * trader on the other listener, and each side gets its fill on its own
 * connection.
 *
 * Threads: each listener is an event-mode Svc with one worker thread. The
 * engine sits behind one mutex; a worker holds it while the engine runs an
 * order and while the acks and fills it produced are handed to mw_svc_send_to
 * (any thread may call it), so every connection receives its messages in
 * engine_seq order. The main thread only waits for SIGINT / SIGTERM (or
 * --seconds), then stops the listeners and prints the statistics. SIGUSR1
 * makes the gateway close every client connection (gracefully: what was
 * sent is written first), for fault tests.
 *
 * Without sessions (this version) each connection is its own engine session,
 * named "<listener>-<connection id>": its orders stay in the book after it
 * leaves, and fills for them are counted as undeliverable. A connection that
 * stops reading until its transmit buffer is full is closed (a gap it would
 * never notice is worse).
 *
 * Output: the bound ports on one line, "listening tcp=PORT tls=PORT ws=PORT"
 * (only the listeners given, in that order), then at exit the statistics (one JSON line with --json)
 * and, with --book FILE, the book in engine_book_write's format.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "engine.h"
#include "gw_proto.h"
#include "mw_svc.h"
#include "tool.h"

static const char USAGE[] =
    "usage: gateway [--tcp URL] [--tls URL] [--ws URL] [--symbols A,B,...] [--journal DIR]\n"
    "               [--book FILE] [--seconds S] [--max-orders N] [--json] [--cert FILE --key FILE]\n"
    "\n"
    "  An order-entry gateway (protocol: examples/common/gw_proto.h) with a matching engine.\n"
    "  --tcp URL   tcp://HOST:PORT or tls://HOST:PORT, fixed serdes (examples/trader)\n"
    "  --tls URL   tls://HOST:PORT, fixed serdes (a second, encrypted listener)\n"
    "  --ws URL    ws://HOST:PORT/PATH or wss://HOST:PORT/PATH, text serdes (JSON: browsers)\n"
    "              At least one of them. Port 0 picks a free port; the ports are printed\n"
    "              as 'listening tcp=PORT tls=PORT ws=PORT' (the listeners given).\n"
    "  --symbols   the symbols traded (default " ENGINE_DEFAULT_SYMBOLS ")\n"
    "  --journal   directory for session journals (sessions: not in this version; accepted\n"
    "              and checked to exist)\n"
    "  --book FILE at exit, write the book (one resting order a line)\n"
    "  --seconds   stop after S seconds (default: run until SIGINT or SIGTERM)\n"
    "  --max-orders order records of the engine (live + remembered; default 262144)\n"
    "  --json      statistics at exit as one JSON line\n"
    "  tls:// and wss:// need --cert FILE --key FILE.\n"
    "  SIGINT/SIGTERM: stop, print statistics. SIGUSR1: close every client connection.\n"
    "  Exit status: 0 ok, 1 usage, 2 failure.\n";

#define MAX_CONNS 1024
#define MAX_ENGINE_SESSIONS (1u << 16)
#define TX_BUF (4u << 20)
#define MAX_MSG 1024

enum { L_TCP = 0, L_TLS = 1, L_WS = 2, NLISTENERS = 3 };

typedef struct gateway gateway_t;

typedef struct listener {
    gateway_t *gw;
    int idx;
    const char *name, *url, *serdes;
    mw_url_t purl; /* the Svc keeps pointers into it (expect_path) */
    mw_svc_t *svc;
    /* per connection slot: the engine session of the connection there */
    struct {
        mw_conn_id_t id;
        int session;
    } conns[MAX_CONNS];
    uint64_t accepted, err_closed;
} listener_t;

/* Where the engine's messages for a session go. */
typedef struct route {
    int lst; /* -1: nowhere */
    mw_conn_id_t conn;
} route_t;

struct gateway {
    listener_t l[NLISTENERS];
    pthread_mutex_t mu; /* the engine, routes, conns[] and the counters below */
    engine_t *eng;
    route_t *routes;
    uint64_t msgs_in, acks_out, fills_out, undeliverable, slow_closed, bad_msgs;
};

/* ---- engine output -> connections (called with mu held) ------------------------ */

static void deliver(gateway_t *g, uint32_t s, const mw_schema_t *sch, const void *msg) {
    route_t *r = &g->routes[s];
    if (r->lst < 0) {
        g->undeliverable++;
        return;
    }
    listener_t *l = &g->l[r->lst];
    int rc = mw_svc_send_to(l->svc, r->conn, sch, msg);
    if (rc == 0) return;
    g->undeliverable++;
    if (rc == MW_EAGAIN) {
        fprintf(stderr, "%s: %s client %" PRIx64 ": not reading (transmit buffer full): disconnecting\n",
                tool_prog(), l->name, r->conn);
        g->slow_closed++;
        mw_svc_close_conn(l->svc, r->conn);
    }
    r->lst = -1;
}

static void on_ack(void *ud, uint32_t s, const order_ack_t *a) {
    gateway_t *g = ud;
    g->acks_out++;
    deliver(g, s, order_ack_schema(), a);
}

static void on_fill(void *ud, uint32_t s, const fill_t *f) {
    gateway_t *g = ud;
    g->fills_out++;
    deliver(g, s, fill_schema(), f);
}

/* ---- connections (the listeners' worker threads) ---------------------------------- */

static void on_accept(mw_svc_t *svc, mw_conn_id_t id, void *ud) {
    (void)svc;
    listener_t *l = ud;
    gateway_t *g = l->gw;
    char name[ENGINE_SESSION_CAP];
    snprintf(name, sizeof name, "%s-%" PRIx64, l->name, id);
    pthread_mutex_lock(&g->mu);
    int s = engine_session(g->eng, name);
    if (s >= 0) g->routes[s] = (route_t){l->idx, id};
    l->conns[(uint32_t)id % MAX_CONNS].id = id;
    l->conns[(uint32_t)id % MAX_CONNS].session = s;
    l->accepted++;
    pthread_mutex_unlock(&g->mu);
    if (s < 0) {
        fprintf(stderr, "%s: %s: engine session table full: closing client %" PRIx64 "\n", tool_prog(), l->name, id);
        mw_svc_close_conn(svc, id);
    }
}

static void on_close(mw_svc_t *svc, mw_conn_id_t id, int reason, void *ud) {
    listener_t *l = ud;
    gateway_t *g = l->gw;
    bool err = reason != MW_ECLOSED && reason != MW_ESTATE;
    pthread_mutex_lock(&g->mu);
    if (l->conns[(uint32_t)id % MAX_CONNS].id == id) {
        int s = l->conns[(uint32_t)id % MAX_CONNS].session;
        if (s >= 0) g->routes[s].lst = -1;
        l->conns[(uint32_t)id % MAX_CONNS].id = MW_CONN_ID_NONE;
    }
    if (err) l->err_closed++;
    pthread_mutex_unlock(&g->mu);
    if (err) fprintf(stderr, "%s: %s client %" PRIx64 " closed: %s\n", tool_prog(), l->name, id, mw_svc_conn_error(svc, id));
}

static void on_msg(mw_svc_t *svc, mw_conn_id_t id, const mw_schema_t *sch, const void *msg, void *ud) {
    listener_t *l = ud;
    gateway_t *g = l->gw;
    pthread_mutex_lock(&g->mu);
    int s = l->conns[(uint32_t)id % MAX_CONNS].id == id ? l->conns[(uint32_t)id % MAX_CONNS].session : -1;
    g->msgs_in++;
    bool bad = false;
    if (s < 0) bad = true;
    else if (sch->tag == new_order_TAG) engine_new_order(g->eng, (uint32_t)s, msg);
    else if (sch->tag == cancel_TAG) engine_cancel(g->eng, (uint32_t)s, msg);
    else bad = true;
    if (bad) g->bad_msgs++;
    pthread_mutex_unlock(&g->mu);
    if (bad) { /* a client sending acks or fills: not one of ours */
        fprintf(stderr, "%s: %s client %" PRIx64 " sent a %s: closing it\n", tool_prog(), l->name, id, sch->name);
        mw_svc_close_conn(svc, id);
    }
}

/* ---- set-up ----------------------------------------------------------------------- */

typedef struct cfg {
    const char *tcp, *tls_url, *ws, *symbols, *journal, *book;
    double seconds;
    uint64_t max_orders;
    bool json;
    tool_tls_t tls;
} cfg_t;

static void listen_one(gateway_t *g, int idx, const char *name, const char *url, const char *serdes,
                       const cfg_t *c) {
    listener_t *l = &g->l[idx];
    l->gw = g;
    l->idx = idx;
    l->name = name;
    l->url = url;
    l->serdes = serdes;
    if (!url) return;
    mw_err_t err;
    mw_err_clear(&err);
    if (mw_url_parse(url, &l->purl, &err) < 0) tool_usage_fail(USAGE, "--%s: %s", name, mw_err_text(&err));
    bool ws = strncmp(url, "ws", 2) == 0;
    static const char *const want[] = {"tcp:// or tls://", "tls://", "ws:// or wss://"};
    if (ws != (idx == L_WS) || (idx == L_TLS && strncmp(url, "tls://", 6) != 0))
        tool_usage_fail(USAGE, "--%s takes %s URLs, not '%s'", name, want[idx], url);
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    tool_apply_tls(&o.tr, &c->tls, true);
    o.mode = MW_MODE_EVENT;
    o.workers = 1;
    o.conn.serdes = serdes;
    o.conn.max_msg = MAX_MSG;
    o.conn.tx_buf = TX_BUF;
    o.max_connections = MAX_CONNS;
    if (ws) o.tr.ws.expect_path = strcmp(l->purl.path, "/") == 0 ? NULL : l->purl.path;
    o.on_accept = on_accept;
    o.on_msg = on_msg;
    o.on_close = on_close;
    o.ud = l;
    if (mw_svc_listen(&l->svc, url, &gw_protocol, &o, &err) < 0)
        tool_fail("%s: %s", url, *err.text ? err.text : mw_strerror(err.code));
}

static void parse_args(int argc, char **argv, cfg_t *c) {
    *c = (cfg_t){.symbols = ENGINE_DEFAULT_SYMBOLS, .max_orders = 1u << 18};
    const tool_opt_t opts[] = {
        {"--tcp", TOOL_OPT_STR, &c->tcp, NULL},         {"--ws", TOOL_OPT_STR, &c->ws, NULL},
        {"--tls", TOOL_OPT_STR, &c->tls_url, NULL},
        {"--symbols", TOOL_OPT_STR, &c->symbols, NULL}, {"--journal", TOOL_OPT_STR, &c->journal, NULL},
        {"--book", TOOL_OPT_STR, &c->book, NULL},       {"--seconds", TOOL_OPT_F64, &c->seconds, NULL},
        {"--max-orders", TOOL_OPT_U64, &c->max_orders, NULL},
        {"--json", TOOL_OPT_FLAG, &c->json, NULL},      TOOL_TLS_OPTS(&c->tls),
    };
    tool_parse(argc, argv, 1, opts, sizeof opts / sizeof opts[0], USAGE);
    if (!c->tcp && !c->tls_url && !c->ws) tool_usage_fail(USAGE, "give at least one of --tcp, --tls, --ws");
    if (c->max_orders < 2 || c->max_orders > (1u << 28)) tool_usage_fail(USAGE, "--max-orders must be 2 .. 2^28");
    struct stat sb;
    if (c->journal && (stat(c->journal, &sb) != 0 || !S_ISDIR(sb.st_mode)))
        tool_usage_fail(USAGE, "--journal %s: not a directory", c->journal);
}

/* SIGUSR1: closes every client connection (gracefully). */
static void close_all(gateway_t *g) {
    static mw_conn_id_t ids[NLISTENERS][MAX_CONNS];
    int n[NLISTENERS] = {0};
    pthread_mutex_lock(&g->mu);
    for (int i = 0; i < NLISTENERS; i++)
        for (int k = 0; k < MAX_CONNS; k++)
            if (g->l[i].conns[k].id != MW_CONN_ID_NONE) ids[i][n[i]++] = g->l[i].conns[k].id;
    pthread_mutex_unlock(&g->mu);
    int total = 0;
    for (int i = 0; i < NLISTENERS; i++)
        for (int k = 0; k < n[i]; k++) total += mw_svc_close_conn(g->l[i].svc, ids[i][k]) == 0;
    fprintf(stderr, "%s: SIGUSR1: closed %d client connections\n", tool_prog(), total);
}

/* SIGINT / SIGTERM / SIGUSR1 are blocked in every thread (the workers inherit
 * the mask) and taken here with sigtimedwait. */
static void wait_for_stop(gateway_t *g, double seconds) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += (time_t)seconds;
    end.tv_nsec += (long)((seconds - (double)(time_t)seconds) * 1e9);
    if (end.tv_nsec >= 1000000000L) {
        end.tv_sec++;
        end.tv_nsec -= 1000000000L;
    }
    for (;;) {
        struct timespec ts = {1, 0};
        if (seconds > 0) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            int64_t left = (int64_t)(end.tv_sec - now.tv_sec) * 1000000000LL + (end.tv_nsec - now.tv_nsec);
            if (left <= 0) return;
            if (left < 1000000000LL) ts = (struct timespec){0, (long)left};
        }
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM) return;
        if (sig == SIGUSR1) close_all(g);
    }
}

static void block_signals(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) tool_fail("cannot block signals");
    signal(SIGPIPE, SIG_IGN);
}

static void print_stats(const gateway_t *g, const cfg_t *c) {
    engine_stats_t st;
    engine_stats(g->eng, &st);
    uint64_t book = engine_book_hash(g->eng);
    if (c->json) {
        tool_json_t j;
        tool_json_begin(&j, stdout);
        for (int i = 0; i < NLISTENERS; i++) {
            const listener_t *l = &g->l[i];
            if (!l->svc) continue;
            mw_svc_stats_t ss;
            mw_svc_stats(l->svc, &ss);
            tool_json_obj(&j, l->name);
            tool_json_u64(&j, "accepted", l->accepted);
            tool_json_u64(&j, "closed_on_error", l->err_closed);
            tool_json_u64(&j, "msgs_in", ss.msgs_in);
            tool_json_u64(&j, "msgs_out", ss.msgs_out);
            tool_json_close(&j);
        }
        tool_json_u64(&j, "orders", st.orders);
        tool_json_u64(&j, "accepted", st.accepted);
        tool_json_u64(&j, "rejected", st.rejected);
        tool_json_u64(&j, "cancels", st.cancels);
        tool_json_u64(&j, "cancelled", st.cancelled);
        tool_json_u64(&j, "cancel_rejected", st.cancel_rejected);
        tool_json_u64(&j, "matches", st.matches);
        tool_json_u64(&j, "filled_qty", st.filled_qty);
        tool_json_u64(&j, "resting", st.resting);
        tool_json_u64(&j, "engine_seq", st.engine_seq);
        tool_json_u64(&j, "acks_out", g->acks_out);
        tool_json_u64(&j, "fills_out", g->fills_out);
        tool_json_u64(&j, "undeliverable", g->undeliverable);
        tool_json_u64(&j, "slow_closed", g->slow_closed);
        char hex[20];
        snprintf(hex, sizeof hex, "%016" PRIx64, book);
        tool_json_str(&j, "book_hash", hex);
        tool_json_end(&j);
        return;
    }
    for (int i = 0; i < NLISTENERS; i++) {
        const listener_t *l = &g->l[i];
        if (l->svc)
            printf("gateway: %s: %" PRIu64 " clients, %" PRIu64 " closed on an error\n", l->name, l->accepted,
                   l->err_closed);
    }
    printf("gateway: %" PRIu64 " orders (%" PRIu64 " accepted, %" PRIu64 " rejected), %" PRIu64 " cancels (%" PRIu64
           " done, %" PRIu64 " rejected), %" PRIu64 " matches, %" PRIu64 " filled, %" PRIu64 " resting, engine_seq %" PRIu64
           "\n",
           st.orders, st.accepted, st.rejected, st.cancels, st.cancelled, st.cancel_rejected, st.matches,
           st.filled_qty, st.resting, st.engine_seq);
    printf("gateway: %" PRIu64 " acks and %" PRIu64 " fills sent, %" PRIu64 " undeliverable, %" PRIu64
           " clients closed for not reading; book hash %016" PRIx64 "\n",
           g->acks_out, g->fills_out, g->undeliverable, g->slow_closed, book);
}

static void write_book(const gateway_t *g, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) tool_fail("cannot write %s: %s", path, strerror(errno));
    engine_book_write(g->eng, f);
    if (fclose(f) != 0) tool_fail("cannot write %s: %s", path, strerror(errno));
}

int main(int argc, char **argv) {
    tool_init("gateway");
    static gateway_t g; /* large: off the stack */
    cfg_t c;
    parse_args(argc, argv, &c);
    pthread_mutex_init(&g.mu, NULL);
    engine_opts_t eo;
    engine_opts_init(&eo);
    eo.symbols = c.symbols;
    eo.max_orders = (uint32_t)c.max_orders;
    eo.max_sessions = MAX_ENGINE_SESSIONS;
    eo.out = (engine_out_t){on_ack, on_fill, &g};
    char err[256];
    if (engine_new(&g.eng, &eo, err, sizeof err) < 0) tool_usage_fail(USAGE, "%s", err);
    g.routes = calloc(MAX_ENGINE_SESSIONS, sizeof *g.routes);
    if (!g.routes) tool_fail("out of memory");
    for (uint32_t i = 0; i < MAX_ENGINE_SESSIONS; i++) g.routes[i].lst = -1;
    block_signals();
    listen_one(&g, L_TCP, "tcp", c.tcp, "fixed", &c);
    listen_one(&g, L_TLS, "tls", c.tls_url, "fixed", &c);
    listen_one(&g, L_WS, "ws", c.ws, "text", &c);
    printf("listening");
    for (int i = 0; i < NLISTENERS; i++)
        if (g.l[i].svc) printf(" %s=%d", g.l[i].name, mw_svc_port(g.l[i].svc));
    printf("\n");
    fflush(stdout);

    wait_for_stop(&g, c.seconds);
    for (int i = 0; i < NLISTENERS; i++) mw_svc_close(g.l[i].svc); /* no callback runs after this */
    print_stats(&g, &c);
    if (c.book) write_book(&g, c.book);
    for (int i = 0; i < NLISTENERS; i++) mw_svc_free(g.l[i].svc);
    engine_free(g.eng);
    free(g.routes);
    pthread_mutex_destroy(&g.mu);
    return TOOL_EXIT_OK;
}
