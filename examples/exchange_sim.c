/* exchange_sim.c - a toy exchange that streams market data over WebSocket.
 *
 *   exchange_sim --url ws://HOST:PORT/PATH [--symbols A,B,...] [--rate N] [--seconds S]
 *
 * Clients speak the protocol of md_proto.h in JSON (the "text" serdes): they
 * subscribe to symbols and get, for each symbol they are subscribed to, a
 * stream of trades and quotes: a deterministic random walk per symbol (the
 * same symbol list and rate give the same prices, sizes and sequence numbers
 * on every run), with one sequence per symbol shared by its trades and quotes.
 *
 * Threads: the Svc runs in event mode with one worker thread, which accepts
 * clients and runs on_accept / on_msg / on_close. The main thread runs an
 * mw_io with the market timer (every TICK_NS it makes the messages owed at
 * --rate and sends them with mw_svc_send_to, which any thread may call), the
 * --seconds timer and a signalfd for SIGINT / SIGTERM. The subscription table
 * is shared by the two threads under one mutex, held while sending, so a
 * client's `subscribed` reply always comes before the first message of the
 * symbol it subscribed to.
 *
 * A client whose transmit buffer fills (it stopped reading) is disconnected
 * rather than skipped, so a subscriber never sees a silent gap. A client that
 * sends something that is not a protocol message is closed by the library;
 * the reason is printed on stderr.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "md_proto.h"
#include "mw_io.h"
#include "mw_svc.h"
#include "tool.h"

static const char USAGE[] =
    "usage: exchange_sim --url ws://HOST:PORT/PATH [--symbols A,B,...] [--rate N] [--seconds S]\n"
    "\n"
    "  Streams trades and quotes (JSON over WebSocket, see examples/common/md_proto.h)\n"
    "  for each symbol a client subscribes to. Port 0 picks a free port; the port is\n"
    "  printed as 'listening on PORT'. Only PATH is accepted (any path if it is /).\n"
    "  --symbols  listed symbols (default " MD_DEFAULT_SYMBOLS ")\n"
    "  --rate     messages per second per symbol, trades and quotes together (default 200)\n"
    "  --seconds  stop after S seconds (default: run until SIGINT or SIGTERM)\n"
    "  Exit status: 0 ok, 1 usage, 2 failure.\n";

#define TICK_NS (5 * MW_NS_PER_MS)
#define MAX_CLIENTS 256
#define MAX_RATE 100000
#define TX_BUF (1u << 20) /* about a second of every symbol at the top rate */

typedef struct symbol {
    char name[MD_SYMBOL_CAP];
    uint64_t seq;      /* last sequence number used */
    uint64_t rng;      /* xorshift64 state, seeded from the name */
    int64_t mid;       /* mid price in ticks */
    int64_t scale;     /* ticks per unit of price: a power of ten */
    double owed;       /* messages due but not made yet */
} symbol_t;

typedef struct client {
    mw_conn_id_t id;   /* MW_CONN_ID_NONE when the slot is free */
    uint64_t subs;     /* bit i: subscribed to symbols[i] */
} client_t;

typedef struct exchange {
    mw_svc_t *svc;
    mw_io_t *io;
    mw_io_timer_t market, stop;
    mw_sel_src_t sig_src;
    int sig_fd;
    bool done;
    double rate;
    uint64_t last_tick_ns;
    symbol_t syms[MD_MAX_SYMBOLS];
    int nsyms;
    pthread_mutex_t mu; /* clients[] and the counters below */
    client_t clients[MAX_CLIENTS];
    uint64_t trades, quotes, sent, slow_closed, err_closed, served;
} exchange_t;

/* ---- the market ------------------------------------------------------------ */

static uint64_t next_rand(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A starting price per well-known symbol; others get one from their hash. */
static double start_price(const char *name, uint64_t hash) {
    static const struct { const char *name; double px; } known[] = {
        {"BTCUSD", 65000}, {"ETHUSD", 3500}, {"SOLUSD", 150},
        {"XRPUSD", 0.52},  {"ADAUSD", 0.45}, {"DOGEUSD", 0.12},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(known[i].name, name) == 0) return known[i].px;
    return 10.0 + (double)(hash % 99000) / 100.0;
}

static void symbol_init(symbol_t *s, const char name[MD_SYMBOL_CAP]) {
    memset(s, 0, sizeof *s);
    memcpy(s->name, name, sizeof s->name);
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *p = name; *p; p++) h = (h ^ (uint8_t)*p) * 1099511628211ull;
    s->rng = h ? h : 1;
    double px = start_price(name, h);
    /* about six significant digits: 65000 moves by 0.1, 0.52 by 0.00001 */
    s->scale = 1;
    while (px * (double)s->scale < 1e5) s->scale *= 10;
    s->mid = (int64_t)(px * (double)s->scale + 0.5);
}

/* Ticks to a price: dividing by a power of ten gives the double nearest the
 * decimal, so the JSON shows 65000.1, not 65000.100000000006. */
static double to_px(const symbol_t *s, int64_t ticks) { return (double)ticks / (double)s->scale; }

/* Makes the symbol's next message: one time in four a trade, else a quote.
 * The mid moves by -2..+2 ticks per message and stays positive. */
static const mw_schema_t *make_msg(symbol_t *s, md_msg_t *m) {
    uint64_t r = next_rand(&s->rng);
    s->mid += (int64_t)(r % 5) - 2;
    if (s->mid < 100) s->mid = 100;
    int64_t half = 1 + (int64_t)((r >> 8) % 2);
    int64_t bid = s->mid - half, ask = s->mid + half;
    uint64_t ts = mw_wall_ns();
    s->seq++;
    if ((r >> 16) % 4 == 0) {
        trade_t *t = &m->trade;
        memset(t, 0, sizeof *t);
        memcpy(t->symbol, s->name, sizeof t->symbol);
        t->seq = s->seq;
        t->side = (uint8_t)((r >> 20) % 2);
        t->px = to_px(s, t->side == MD_SIDE_BUY ? ask : bid);
        t->qty = (uint32_t)(1 + (r >> 24) % 20);
        t->ts_ns = ts;
        return trade_schema();
    }
    quote_t *q = &m->quote;
    memset(q, 0, sizeof *q);
    memcpy(q->symbol, s->name, sizeof q->symbol);
    q->seq = s->seq;
    q->bid = to_px(s, bid);
    q->ask = to_px(s, ask);
    q->bid_qty = (uint32_t)(1 + (r >> 24) % 50);
    q->ask_qty = (uint32_t)(1 + (r >> 32) % 50);
    q->ts_ns = ts;
    return quote_schema();
}

/* Sends one message to every subscriber of symbol i. Called with mu held. A
 * subscriber whose buffer is full is closed: better a reconnect than a gap
 * nobody notices. */
static void fan_out(exchange_t *x, int i, const mw_schema_t *sch, const md_msg_t *m) {
    uint64_t bit = 1ull << i;
    for (int k = 0; k < MAX_CLIENTS; k++) {
        client_t *c = &x->clients[k];
        if (c->id == MW_CONN_ID_NONE || !(c->subs & bit)) continue;
        int r = mw_svc_send_to(x->svc, c->id, sch, m);
        if (r == 0) {
            x->sent++;
            continue;
        }
        if (r == MW_EAGAIN) {
            fprintf(stderr, "%s: client %u: not reading (transmit buffer full): disconnecting\n", tool_prog(),
                    (unsigned)c->id);
            x->slow_closed++;
            mw_svc_close_conn(x->svc, c->id);
        }
        c->subs = 0; /* closed or closing: on_close frees the slot */
    }
}

static void on_market(mw_io_timer_t *t, void *ud) {
    exchange_t *x = ud;
    uint64_t now = mw_io_now(x->io);
    double secs = (double)(now - x->last_tick_ns) / 1e9;
    x->last_tick_ns = now;
    if (secs > 0.1) secs = 0.1; /* after a stall, do not burst the backlog */
    md_msg_t m;
    pthread_mutex_lock(&x->mu);
    for (int i = 0; i < x->nsyms; i++) {
        symbol_t *s = &x->syms[i];
        s->owed += x->rate * secs;
        for (; s->owed >= 1.0; s->owed -= 1.0) {
            const mw_schema_t *sch = make_msg(s, &m);
            if (sch->tag == trade_TAG) x->trades++;
            else x->quotes++;
            fan_out(x, i, sch, &m);
        }
    }
    pthread_mutex_unlock(&x->mu);
    mw_io_timer_at(x->io, t, now + TICK_NS);
}

/* ---- clients (the Svc's worker thread) --------------------------------------- */

static client_t *client_of(exchange_t *x, mw_conn_id_t id) {
    client_t *c = &x->clients[(uint32_t)id % MAX_CLIENTS];
    return c->id == id ? c : NULL;
}

static void on_accept(mw_svc_t *s, mw_conn_id_t id, void *ud) {
    (void)s;
    exchange_t *x = ud;
    pthread_mutex_lock(&x->mu);
    x->clients[(uint32_t)id % MAX_CLIENTS] = (client_t){id, 0};
    x->served++;
    pthread_mutex_unlock(&x->mu);
}

static void on_close(mw_svc_t *s, mw_conn_id_t id, int reason, void *ud) {
    exchange_t *x = ud;
    pthread_mutex_lock(&x->mu);
    client_t *c = client_of(x, id);
    if (c) *c = (client_t){MW_CONN_ID_NONE, 0};
    if (reason != MW_ECLOSED && reason != MW_ESTATE) x->err_closed++;
    pthread_mutex_unlock(&x->mu);
    if (reason != MW_ECLOSED && reason != MW_ESTATE)
        fprintf(stderr, "%s: client %u closed: %s\n", tool_prog(), (unsigned)id, mw_svc_conn_error(s, id));
}

static int symbol_index(const exchange_t *x, const char field[MD_SYMBOL_CAP]) {
    for (int i = 0; i < x->nsyms; i++)
        if (md_symbol_is(field, x->syms[i].name)) return i;
    return -1;
}

/* subscribe / unsubscribe: updates the set and answers with its new state,
 * under mu so no market message for the symbol can overtake the answer. */
static void on_sub(exchange_t *x, mw_conn_id_t id, const char field[MD_SYMBOL_CAP], bool add) {
    subscribed_t rep;
    memset(&rep, 0, sizeof rep);
    memcpy(rep.symbol, field, sizeof rep.symbol);
    pthread_mutex_lock(&x->mu);
    client_t *c = client_of(x, id);
    int i = symbol_index(x, field);
    if (c && i >= 0) {
        if (add) c->subs |= 1ull << i;
        else c->subs &= ~(1ull << i);
        rep.ok = add;
    }
    if (c) mw_svc_send_to(x->svc, id, subscribed_schema(), &rep);
    pthread_mutex_unlock(&x->mu);
}

static void on_msg(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg, void *ud) {
    exchange_t *x = ud;
    switch (sch->tag) {
    case subscribe_TAG:
        on_sub(x, id, ((const subscribe_t *)msg)->symbol, true);
        break;
    case unsubscribe_TAG:
        on_sub(x, id, ((const unsubscribe_t *)msg)->symbol, false);
        break;
    case heartbeat_TAG: {
        heartbeat_t hb = {mw_wall_ns()};
        mw_svc_send_to(s, id, heartbeat_schema(), &hb);
        break;
    }
    default: /* a client sending exchange messages: not for us */
        fprintf(stderr, "%s: client %u sent a %s: closing it\n", tool_prog(), (unsigned)id, sch->name);
        mw_svc_close_conn(s, id);
        break;
    }
}

/* ---- stopping ------------------------------------------------------------------ */

static int on_signal(mw_sel_src_t *src, int events) {
    (void)events;
    exchange_t *x = src->ud;
    struct signalfd_siginfo si;
    while (read(x->sig_fd, &si, sizeof si) == (ssize_t)sizeof si) x->done = true;
    return 1;
}

static void on_stop(mw_io_timer_t *t, void *ud) {
    (void)t;
    exchange_t *x = ud;
    x->done = true;
}

/* SIGINT / SIGTERM become readable bytes on a signalfd watched by the io. They
 * are blocked before the Svc starts its worker, which inherits the mask, so
 * no thread takes them the default way. */
static void signals_open(exchange_t *x) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) tool_fail("cannot block signals");
    signal(SIGPIPE, SIG_IGN);
    x->sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (x->sig_fd < 0) tool_fail("signalfd: %s", strerror(errno));
    mw_sel_src_init(&x->sig_src, x->sig_fd, MW_WANT_READ, on_signal, x);
    if (mw_io_add(x->io, &x->sig_src) < 0) tool_fail("cannot watch the signalfd");
}

/* ---- set-up ------------------------------------------------------------------ */

typedef struct cfg {
    const char *url, *symbols;
    double rate, seconds;
} cfg_t;

static void parse_args(int argc, char **argv, cfg_t *c, exchange_t *x) {
    *c = (cfg_t){.symbols = MD_DEFAULT_SYMBOLS, .rate = 200};
    const tool_opt_t opts[] = {
        {"--url", TOOL_OPT_STR, &c->url, NULL},
        {"--symbols", TOOL_OPT_STR, &c->symbols, NULL},
        {"--rate", TOOL_OPT_F64, &c->rate, NULL},
        {"--seconds", TOOL_OPT_F64, &c->seconds, NULL},
    };
    tool_parse(argc, argv, 1, opts, sizeof opts / sizeof opts[0], USAGE);
    if (!c->url) tool_usage_fail(USAGE, "--url is required");
    if (c->rate <= 0 || c->rate > MAX_RATE) tool_usage_fail(USAGE, "--rate must be > 0 and <= %d", MAX_RATE);
    char names[MD_MAX_SYMBOLS][MD_SYMBOL_CAP];
    x->nsyms = md_symbols_parse(c->symbols, names, MD_MAX_SYMBOLS);
    if (x->nsyms < 0)
        tool_usage_fail(USAGE, "bad --symbols '%s': 1 to %d distinct names of 1 to %d characters [A-Za-z0-9._-]",
                        c->symbols, MD_MAX_SYMBOLS, MD_SYMBOL_MAX);
    for (int i = 0; i < x->nsyms; i++) symbol_init(&x->syms[i], names[i]);
    x->rate = c->rate;
}

static void listen_svc(exchange_t *x, const char *url) {
    mw_err_t err;
    mw_err_clear(&err);
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.mode = MW_MODE_EVENT;
    o.event.workers = 1;
    o.conn.serdes = "text";
    o.conn.max_msg = MD_MAX_MSG;
    o.conn.tx_buf = TX_BUF;
    o.max_connections = MAX_CLIENTS;
    o.tr.ws.expect_path = tool_url_path(url);
    o.on_accept = on_accept;
    o.event.on_msg = on_msg;
    o.on_close = on_close;
    o.ud = x;
    if (mw_svc_listen(&x->svc, url, &md_protocol, &o, &err) < 0)
        tool_fail("%s", *err.text ? err.text : mw_strerror(err.code));
}

int main(int argc, char **argv) {
    tool_init("exchange_sim");
    static exchange_t x; /* large: off the stack */
    cfg_t c;
    parse_args(argc, argv, &c, &x);
    x.sig_fd = -1;
    pthread_mutex_init(&x.mu, NULL);
    mw_io_opts_t io;
    mw_io_opts_init(&io);
    mw_err_t err;
    mw_err_clear(&err);
    if (mw_io_new(&x.io, &io, &err) < 0) tool_fail("io: %s", mw_err_text(&err));
    signals_open(&x);
    listen_svc(&x, c.url);
    printf("listening on %d\n", mw_svc_port(x.svc));
    fflush(stdout);

    mw_io_timer_init(&x.market, on_market, &x);
    mw_io_timer_init(&x.stop, on_stop, &x);
    x.last_tick_ns = mw_io_now(x.io);
    mw_io_timer_after(x.io, &x.market, TICK_NS);
    if (c.seconds > 0) mw_io_timer_after(x.io, &x.stop, (int64_t)(c.seconds * 1e9));
    while (!x.done) {
        int r = mw_io_poll(x.io, -1);
        if (r < 0) tool_fail("poll: %s", mw_io_last_error(x.io));
    }
    mw_io_timer_stop(x.io, &x.market);
    mw_io_timer_stop(x.io, &x.stop);
    mw_svc_free(x.svc); /* stops the worker: no callback runs after this */
    printf("exchange_sim: %" PRIu64 " clients served, %" PRIu64 " trades and %" PRIu64
           " quotes made, %" PRIu64 " messages sent; %" PRIu64 " clients closed on an error, %" PRIu64
           " for not reading\n",
           x.served, x.trades, x.quotes, x.sent, x.err_closed, x.slow_closed);
    mw_io_del(x.io, &x.sig_src);
    close(x.sig_fd);
    mw_io_free(x.io);
    pthread_mutex_destroy(&x.mu);
    return TOOL_EXIT_OK;
}
