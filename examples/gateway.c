/* gateway.c - an order-entry gateway: limit orders and cancels in, acks and
 * fills out, one matching engine behind up to three listeners.
 *
 *   gateway [--tcp URL] [--tls URL] [--ws URL] [--symbols A,B,...]
 *           [--journal DIR] [--book FILE] [--seconds S] [--json]
 *           [--cert F --key F]
 *
 * Protocol: examples/common/gw_proto.h. The --tcp listener (tcp:// or tls://)
 * and the --tls listener (tls://) speak the fixed serdes, the --ws listener
 * (ws:// or wss://) the text serdes (JSON, for a browser: examples/web/); all
 * feed one engine (examples/common/engine.c), so an order from a browser can
 * match one from a trader on another listener, and each side gets its fill
 * in its own session.
 *
 * Sessions (--journal DIR): every client logs on with a session id
 * (mw_session.h) and each listener keeps its sessions' journals in
 * DIR/<listener>. An engine session is "<listener>/<session id>"; its acks
 * and fills go to that session whether or not it is connected (journaled,
 * resent at its next logon), so a client that reconnects, or restarts from
 * its own journal, gets every one exactly once and in order. After a crash
 * (kill -9) the gateway rebuilds its engine from the journals before it
 * listens again: see "rebuilding the engine" below for how and its limits.
 * Logons asking for a reset are refused (use a new session id).
 *
 * Without --journal each connection is its own engine session, named
 * "<listener>-<connection id>": its orders stay in the book after it
 * leaves, and fills for them are counted as undeliverable; a connection that
 * stops reading until its transmit buffer is full is closed.
 *
 * Threads: each listener is an event-mode Svc with one worker thread. The
 * engine sits behind one mutex; a worker holds it while the engine runs an
 * order and while the acks and fills it produced are handed to the sessions
 * (or connections), so each client receives its messages in engine_seq
 * order. The main thread waits for SIGINT / SIGTERM (or --seconds), retries
 * outputs a session could not take at once, and at the end stops the
 * listeners and prints the statistics. SIGUSR1 makes the gateway close every
 * client connection (gracefully: what was sent is written first), for fault
 * tests.
 *
 * Output: the bound ports on one line, "listening tcp=PORT tls=PORT ws=PORT"
 * (only the listeners given, in that order), then at exit the statistics
 * (one JSON line with --json) and, with --book FILE, the book in
 * engine_book_write's format.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
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
    "  --journal   sessions on: clients log on; journals in DIR/tcp, DIR/tls, DIR/ws; after a\n"
    "              crash the book is rebuilt from them (restart with the same options)\n"
    "  --book FILE at exit, write the book (one resting order a line)\n"
    "  --seconds   stop after S seconds (default: run until SIGINT or SIGTERM)\n"
    "  --max-orders order records of the engine (live + remembered; default 262144)\n"
    "  --json      statistics at exit as one JSON line\n"
    "  --crash-after N  (fault tests) SIGKILL itself between the two fills of a match once N\n"
    "              acks and fills went out\n"
    "  tls:// and wss:// need --cert FILE --key FILE.\n"
    "  SIGINT/SIGTERM: stop, print statistics. SIGUSR1: close every client connection.\n"
    "  Exit status: 0 ok, 1 usage, 2 failure.\n";

#define MAX_CONNS 1024
#define MAX_ENGINE_SESSIONS (1u << 16)
#define TX_BUF (4u << 20)
#define MAX_MSG 1024
#define MAX_PENDING (1u << 20) /* per session: outputs its connection could not take yet */

enum { L_TCP = 0, L_TLS = 1, L_WS = 2, NLISTENERS = 3 };

typedef struct gateway gateway_t;

typedef struct listener {
    gateway_t *gw;
    int idx;
    const char *name, *url, *serdes;
    char jdir[4096]; /* sessions: <--journal>/<name> */
    mw_svc_t *svc;
    /* per connection slot: the engine session of the connection there */
    struct {
        mw_conn_id_t id;
        int session;
    } conns[MAX_CONNS];
    uint64_t accepted, err_closed, logons;
} listener_t;

/* One output waiting for its session to take it. */
typedef struct pend {
    uint16_t tag;
    gw_msg_t m;
} pend_t;

/* Where the engine's messages for an engine session go. */
typedef struct route {
    int lst;            /* listener; -1: nowhere (no sessions: its connection left) */
    mw_conn_id_t conn;  /* the connection, MW_CONN_ID_NONE when none */
    char id[32];        /* sessions: the session id */
    uint64_t processed; /* sessions: inbound number of the last message the engine had */
    pend_t *q;          /* sessions: a FIFO of outputs not taken yet (see deliver) */
    uint32_t qhead, qlen, qcap;
} route_t;

typedef struct rebuild rebuild_t;

struct gateway {
    listener_t l[NLISTENERS];
    bool sessions;
    pthread_mutex_t mu; /* the engine, routes, conns[] and the counters below */
    engine_t *eng;
    route_t *routes;
    rebuild_t *rb;      /* while the engine is rebuilt from the journals */
    uint32_t pending;   /* sessions with a non-empty FIFO */
    uint64_t msgs_in, acks_out, fills_out, undeliverable, slow_closed, bad_msgs, dups, send_errors, queued;
    uint64_t rebuilt_steps, rebuilt_sessions, rebuilt_surplus;
    uint64_t crash_after; /* --crash-after (a test hook): 0 off */
};

static void replay_out(gateway_t *g, uint32_t s, const mw_schema_t *sch, const void *msg);

/* ---- engine output -> clients (called with mu held) ------------------------------- */

/* Without sessions: straight to the connection; a client that does not read
 * is dropped. */
static void deliver_plain(gateway_t *g, route_t *r, const mw_schema_t *sch, const void *msg) {
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

/* With sessions every output must reach the session's journal, once, in
 * engine order, whatever its connection does. A message is taken as soon as
 * it has a number (journaled: the session writes it now or later, or
 * resends it after a reconnect), whatever the call returns. Not taken
 * (MW_EAGAIN: a long backlog on a slow connection; MW_ECLOSED / MW_ESTATE:
 * the connection is closing or not logged on yet), it waits in the route's
 * FIFO, and so does everything after it, until the session takes them (on
 * its drain or next logon, at the next output, or at the main thread's
 * retry every few milliseconds). */
static int session_take(gateway_t *g, route_t *r, uint16_t tag, const void *msg) {
    listener_t *l = &g->l[r->lst];
    const mw_schema_t *sch = gw_protocol.by_tag(tag);
    uint64_t seq = 0;
    int rc = MW_ECLOSED;
    if (r->conn != MW_CONN_ID_NONE) rc = mw_svc_send_seq(l->svc, r->conn, sch, msg, &seq);
    if (!seq && rc == MW_ECLOSED) rc = mw_svc_session_send(l->svc, r->id, sch, msg, &seq);
    if (seq || rc == 0) return 0;
    if (rc == MW_EAGAIN || rc == MW_ECLOSED || rc == MW_ESTATE) return rc;
    g->send_errors++; /* encode or journal error: nothing to retry */
    fprintf(stderr, "%s: session %s: %s: %s\n", tool_prog(), r->id, sch->name,
            *mw_svc_last_error(l->svc) ? mw_svc_last_error(l->svc) : mw_strerror(rc));
    return 0;
}

static void queue_push(gateway_t *g, route_t *r, uint16_t tag, const void *msg, size_t size) {
    if (r->qlen == r->qcap) {
        uint32_t cap = r->qcap ? r->qcap * 2 : 64;
        if (cap > MAX_PENDING) tool_fail("session %s: %u messages it does not take: giving up", r->id, r->qlen);
        pend_t *q = malloc(cap * sizeof *q);
        if (!q) tool_fail("out of memory");
        for (uint32_t i = 0; i < r->qlen; i++) q[i] = r->q[(r->qhead + i) % r->qcap];
        free(r->q);
        r->q = q;
        r->qhead = 0;
        r->qcap = cap;
    }
    pend_t *p = &r->q[(r->qhead + r->qlen) % r->qcap];
    p->tag = tag;
    memcpy(&p->m, msg, size);
    if (r->qlen++ == 0) g->pending++;
    g->queued++;
}

/* Hands the session what waits for it, as far as it takes it. */
static void queue_flush(gateway_t *g, route_t *r) {
    while (r->qlen) {
        pend_t *p = &r->q[r->qhead];
        if (session_take(g, r, p->tag, &p->m) != 0) return;
        r->qhead = (r->qhead + 1) % r->qcap;
        if (--r->qlen == 0) g->pending--;
    }
}

static void deliver(gateway_t *g, uint32_t s, const mw_schema_t *sch, const void *msg) {
    route_t *r = &g->routes[s];
    if (g->rb) {
        replay_out(g, s, sch, msg);
        return;
    }
    if (!g->sessions) {
        deliver_plain(g, r, sch, msg);
        return;
    }
    if (r->lst < 0) {
        g->undeliverable++;
        return;
    }
    queue_flush(g, r);
    if (r->qlen == 0 && session_take(g, r, sch->tag, msg) == 0) return;
    queue_push(g, r, sch->tag, msg, sch->size);
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
    /* --crash-after N: die between the two fills of a match (the
     * aggressor's taken, the resting order's not), once N outputs went
     * out: the worst moment for a crash, on purpose. */
    if (g->crash_after && !g->rb && g->fills_out % 2 == 1 && g->acks_out + g->fills_out >= g->crash_after) {
        fprintf(stderr, "%s: --crash-after %" PRIu64 ": SIGKILL in the middle of a match\n", tool_prog(),
                g->crash_after);
        raise(SIGKILL);
    }
}

/* The main thread, every few milliseconds while some FIFO is not empty.
 * Returns true if one still is. */
static bool retry_pending(gateway_t *g) {
    pthread_mutex_lock(&g->mu);
    for (uint32_t s = 0; s < MAX_ENGINE_SESSIONS && g->pending; s++)
        if (g->routes[s].qlen) queue_flush(g, &g->routes[s]);
    bool left = g->pending > 0;
    pthread_mutex_unlock(&g->mu);
    return left;
}

/* ---- rebuilding the engine from the journals (sessions) --------------------------------
 *
 * What the gateway journals: every session's inbound messages (journal_in:
 * the orders and cancels, stored before the engine sees them) and outbound
 * messages (the acks and fills, stored as the engine makes them). What a
 * restart needs: the same engine state, and every output the engine made
 * once and only once in each session's journal.
 *
 * The engine is deterministic, so its state is a function of the sequence
 * of inputs it ran, across all sessions. That global order is not stored
 * anywhere by itself, but every input gets exactly one ack, to its own
 * session, as the first output of its step, and each ack carries the
 * engine's event number. So: per session, the i-th order or cancel received
 * was answered by the i-th ack sent (inputs without a journaled ack never
 * reached the engine, or reached it in the step the crash interrupted,
 * before its ack was journaled: either way the engine state did not depend
 * on them yet). Sorting all (ack engine_seq, session, input) by engine_seq
 * gives back the order the engine ran them in; running them through a fresh
 * engine gives back its state. Every output it makes is checked against the
 * journal (same session, same position, same engine_seq), so a journal from
 * another configuration is refused instead of silently producing another
 * book. Outputs beyond a session's journal are what the crash cut off in the
 * middle of the last step (a fill to the other side, say): they are queued
 * and journaled once the listeners are up, before anything new.
 *
 * The inbound number of each session's last input run is remembered: the
 * session layer may hand a message the crash interrupted over once more
 * (MW_SEQ_POSSDUP), and a number already run is then skipped.
 *
 * Limits: the gateway must restart with the same --symbols, --max-orders and
 * listeners (sessions of a listener not given are not read, and the check
 * above fails). A session reset would drop a session's earlier epochs from
 * the rebuild, so the gateway refuses logons that ask for one. Rebuild time
 * and memory grow with the journals (a day's worth: no snapshots). */

typedef struct input {
    uint64_t seq;
    uint16_t tag;
    gw_msg_t m;
} input_t;

typedef struct rsess {
    input_t *in;
    size_t nin, capin;
    uint64_t *out_seq; /* engine_seq of each journaled output, in order */
    size_t nout, capout;
    uint64_t *ack_seq; /* engine_seq of each journaled ack, in order */
    size_t nacks, capacks;
    size_t out_pos;    /* outputs the rebuild has made so far */
    uint64_t in_last;  /* highest inbound number seen */
} rsess_t;

struct rebuild {
    rsess_t *rs; /* by engine session */
};

typedef struct step {
    uint64_t engine_seq;
    uint32_t s;
    uint32_t i;
} step_t;

static void *grow(void *p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return p;
    size_t c = *cap ? *cap * 2 : 256;
    while (c < need) c *= 2;
    void *q = realloc(p, c * elem);
    if (!q) tool_fail("out of memory rebuilding from the journals");
    *cap = c;
    return q;
}

static bool replay_rec(void *ud, int dir, uint64_t seq, const mw_schema_t *sch, const void *msg) {
    rsess_t *r = ud;
    if (dir == MW_SESSION_IN) {
        if (seq <= r->in_last) return true; /* handed over again after a restart */
        r->in_last = seq;
        if (sch->tag != new_order_TAG && sch->tag != cancel_TAG) return true; /* the engine never ran it */
        r->in = grow(r->in, &r->capin, r->nin + 1, sizeof *r->in);
        input_t *in = &r->in[r->nin++];
        in->seq = seq;
        in->tag = sch->tag;
        memcpy(&in->m, msg, sch->size);
        return true;
    }
    uint64_t es = sch->tag == order_ack_TAG ? ((const order_ack_t *)msg)->engine_seq
                                            : ((const fill_t *)msg)->engine_seq;
    r->out_seq = grow(r->out_seq, &r->capout, r->nout + 1, sizeof *r->out_seq);
    r->out_seq[r->nout++] = es;
    if (sch->tag == order_ack_TAG) {
        r->ack_seq = grow(r->ack_seq, &r->capacks, r->nacks + 1, sizeof *r->ack_seq);
        r->ack_seq[r->nacks++] = es;
    }
    return true;
}

/* An output of the rebuild: either the one the journal holds at this
 * position (checked), or one the crash cut off (queued). */
static void replay_out(gateway_t *g, uint32_t s, const mw_schema_t *sch, const void *msg) {
    rsess_t *r = &g->rb->rs[s];
    uint64_t es = sch->tag == order_ack_TAG ? ((const order_ack_t *)msg)->engine_seq
                                            : ((const fill_t *)msg)->engine_seq;
    size_t j = r->out_pos++;
    if (j < r->nout) {
        if (r->out_seq[j] != es)
            tool_fail("rebuild: session %s: output %zu has engine_seq %" PRIu64 " in the journal, %" PRIu64
                      " in the rebuild (journals of another configuration?)",
                      g->routes[s].id, j + 1, r->out_seq[j], es);
        return;
    }
    g->rebuilt_surplus++;
    queue_push(g, &g->routes[s], sch->tag, msg, sch->size);
}

/* "T1.000001.mwj" -> "T1"; false for other names. */
static bool journal_name(const char *f, char *id, size_t cap) {
    size_t n = strlen(f);
    if (n < 12 || strcmp(f + n - 4, ".mwj") != 0 || f[n - 11] != '.') return false;
    for (size_t i = n - 10; i < n - 4; i++)
        if (f[i] < '0' || f[i] > '9') return false;
    size_t idn = n - 11;
    if (idn == 0 || idn >= cap) return false;
    memcpy(id, f, idn);
    id[idn] = '\0';
    return true;
}

static void read_listener_journals(gateway_t *g, listener_t *l, rebuild_t *rb) {
    DIR *d = opendir(l->jdir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char id[32], name[ENGINE_SESSION_CAP];
        if (!journal_name(e->d_name, id, sizeof id)) continue;
        snprintf(name, sizeof name, "%s/%s", l->name, id);
        int s = engine_session(g->eng, name);
        if (s < 0) tool_fail("rebuild: too many sessions");
        route_t *r = &g->routes[s];
        if (r->lst >= 0) continue; /* another epoch of a session read already (the newest is read) */
        r->lst = l->idx;
        snprintf(r->id, sizeof r->id, "%s", id);
        mw_err_t err;
        mw_err_clear(&err);
        if (mw_session_replay(l->jdir, id, &gw_protocol, replay_rec, &rb->rs[s], &err) < 0)
            tool_fail("rebuild: %s/%s: %s", l->name, id, mw_err_text(&err));
        g->rebuilt_sessions++;
    }
    closedir(d);
}

static int step_cmp(const void *a, const void *b) {
    uint64_t x = ((const step_t *)a)->engine_seq, y = ((const step_t *)b)->engine_seq;
    return (x > y) - (x < y);
}

static void rebuild_engine(gateway_t *g) {
    rebuild_t rb;
    rb.rs = calloc(MAX_ENGINE_SESSIONS, sizeof *rb.rs);
    if (!rb.rs) tool_fail("out of memory");
    for (int i = 0; i < NLISTENERS; i++)
        if (g->l[i].url) read_listener_journals(g, &g->l[i], &rb);
    step_t *steps = NULL;
    size_t n = 0, cap = 0;
    for (uint32_t s = 0; s < MAX_ENGINE_SESSIONS; s++) {
        rsess_t *r = &rb.rs[s];
        if (r->nacks > r->nin)
            tool_fail("rebuild: session %s: %zu acks in its journal for %zu orders and cancels", g->routes[s].id,
                      r->nacks, r->nin);
        for (size_t i = 0; i < r->nacks; i++) {
            steps = grow(steps, &cap, n + 1, sizeof *steps);
            steps[n++] = (step_t){r->ack_seq[i], s, (uint32_t)i};
        }
    }
    qsort(steps, n, sizeof *steps, step_cmp);
    g->rb = &rb;
    for (size_t k = 0; k < n; k++) {
        const input_t *in = &rb.rs[steps[k].s].in[steps[k].i];
        if (in->tag == new_order_TAG) engine_new_order(g->eng, steps[k].s, &in->m.new_order);
        else engine_cancel(g->eng, steps[k].s, &in->m.cancel);
        g->routes[steps[k].s].processed = in->seq;
    }
    g->rb = NULL;
    g->rebuilt_steps = n;
    for (uint32_t s = 0; s < MAX_ENGINE_SESSIONS; s++) {
        rsess_t *r = &rb.rs[s];
        if (r->out_pos < r->nout)
            tool_fail("rebuild: session %s: the journal holds %zu outputs, the rebuild made %zu", g->routes[s].id,
                      r->nout, r->out_pos);
        free(r->in);
        free(r->out_seq);
        free(r->ack_seq);
    }
    free(rb.rs);
    free(steps);
}

/* ---- connections (the listeners' worker threads) ---------------------------------- */

static void conn_set(listener_t *l, mw_conn_id_t id, int s) {
    l->conns[(uint32_t)id % MAX_CONNS].id = id;
    l->conns[(uint32_t)id % MAX_CONNS].session = s;
}

static int conn_session(const listener_t *l, mw_conn_id_t id) {
    return l->conns[(uint32_t)id % MAX_CONNS].id == id ? l->conns[(uint32_t)id % MAX_CONNS].session : -1;
}

static void on_accept(mw_svc_t *svc, mw_conn_id_t id, void *ud) {
    listener_t *l = ud;
    gateway_t *g = l->gw;
    if (g->sessions) { /* the session is known at its logon */
        pthread_mutex_lock(&g->mu);
        conn_set(l, id, -1);
        l->accepted++;
        pthread_mutex_unlock(&g->mu);
        return;
    }
    char name[ENGINE_SESSION_CAP];
    snprintf(name, sizeof name, "%s-%" PRIx64, l->name, id);
    pthread_mutex_lock(&g->mu);
    int s = engine_session(g->eng, name);
    if (s >= 0) g->routes[s] = (route_t){.lst = l->idx, .conn = id};
    conn_set(l, id, s);
    l->accepted++;
    pthread_mutex_unlock(&g->mu);
    if (s < 0) {
        fprintf(stderr, "%s: %s: engine session table full: closing client %" PRIx64 "\n", tool_prog(), l->name, id);
        mw_svc_close_conn(svc, id);
    }
}

static int on_logon(void *ud, const mw_logon_info_t *li, char *reason, size_t cap) {
    (void)ud;
    if (!li->reset) return 0;
    snprintf(reason, cap, "this gateway does not reset sessions (it rebuilds its book from them): "
                          "use a new session id");
    return 1;
}

static void on_logon_done(void *ud, const char *session, uint64_t conn) {
    listener_t *l = ud;
    gateway_t *g = l->gw;
    char name[ENGINE_SESSION_CAP];
    snprintf(name, sizeof name, "%s/%s", l->name, session);
    pthread_mutex_lock(&g->mu);
    int s = engine_session(g->eng, name);
    if (s >= 0) {
        route_t *r = &g->routes[s];
        r->lst = l->idx;
        r->conn = conn;
        snprintf(r->id, sizeof r->id, "%s", session);
        queue_flush(g, r);
    }
    conn_set(l, conn, s);
    l->logons++;
    pthread_mutex_unlock(&g->mu);
    if (s < 0) {
        fprintf(stderr, "%s: %s: engine session table full: closing session %s\n", tool_prog(), l->name, session);
        mw_svc_close_conn(l->svc, conn);
    }
}

static void on_drain(mw_svc_t *svc, mw_conn_id_t id, void *ud) {
    (void)svc;
    listener_t *l = ud;
    gateway_t *g = l->gw;
    pthread_mutex_lock(&g->mu);
    int s = conn_session(l, id);
    if (s >= 0 && g->sessions) queue_flush(g, &g->routes[s]);
    pthread_mutex_unlock(&g->mu);
}

static void on_close(mw_svc_t *svc, mw_conn_id_t id, int reason, void *ud) {
    listener_t *l = ud;
    gateway_t *g = l->gw;
    bool err = reason != MW_ECLOSED && reason != MW_ESTATE;
    pthread_mutex_lock(&g->mu);
    int s = conn_session(l, id);
    if (s >= 0 && g->routes[s].conn == id) {
        g->routes[s].conn = MW_CONN_ID_NONE;
        if (!g->sessions) g->routes[s].lst = -1; /* with sessions it stays: the journal takes its messages */
    }
    if (l->conns[(uint32_t)id % MAX_CONNS].id == id) l->conns[(uint32_t)id % MAX_CONNS].id = MW_CONN_ID_NONE;
    if (err) l->err_closed++;
    pthread_mutex_unlock(&g->mu);
    if (err) fprintf(stderr, "%s: %s client %" PRIx64 " closed: %s\n", tool_prog(), l->name, id, mw_svc_conn_error(svc, id));
}

static void on_msg(mw_svc_t *svc, mw_conn_id_t id, const mw_schema_t *sch, const void *msg, void *ud) {
    listener_t *l = ud;
    gateway_t *g = l->gw;
    pthread_mutex_lock(&g->mu);
    int s = conn_session(l, id);
    g->msgs_in++;
    bool bad = s < 0 || (sch->tag != new_order_TAG && sch->tag != cancel_TAG);
    if (!bad && g->sessions) {
        uint64_t seq = mw_svc_rx_seq(svc, id);
        route_t *r = &g->routes[s];
        if (seq <= r->processed) { /* the engine ran it before a restart */
            g->dups++;
            pthread_mutex_unlock(&g->mu);
            return;
        }
        r->processed = seq;
    }
    if (!bad && sch->tag == new_order_TAG) engine_new_order(g->eng, (uint32_t)s, msg);
    else if (!bad) engine_cancel(g->eng, (uint32_t)s, msg);
    else g->bad_msgs++;
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
    uint64_t max_orders, crash_after;
    bool json;
    tool_tls_t tls;
} cfg_t;

/* Fills in a listener (nothing for a URL not given); with sessions makes
 * its journal directory <--journal>/<name>. */
static void listener_init(gateway_t *g, int idx, const char *name, const char *url, const char *serdes,
                          const cfg_t *c) {
    listener_t *l = &g->l[idx];
    l->gw = g;
    l->idx = idx;
    l->name = name;
    l->url = url;
    l->serdes = serdes;
    if (!url) return;
    bool ws = strncmp(url, "ws", 2) == 0;
    static const char *const want[] = {"tcp:// or tls://", "tls://", "ws:// or wss://"};
    if (ws != (idx == L_WS) || (idx == L_TLS && strncmp(url, "tls://", 6) != 0))
        tool_usage_fail(USAGE, "--%s takes %s URLs, not '%s'", name, want[idx], url);
    if (!c->journal) return;
    if ((size_t)snprintf(l->jdir, sizeof l->jdir, "%s/%s", c->journal, name) >= sizeof l->jdir)
        tool_usage_fail(USAGE, "--journal: path too long");
    if (mkdir(l->jdir, 0777) != 0 && errno != EEXIST) tool_fail("cannot make %s: %s", l->jdir, strerror(errno));
}

static void listener_start(gateway_t *g, listener_t *l, const cfg_t *c) {
    if (!l->url) return;
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    tool_apply_tls(&o.tr, &c->tls, true);
    o.mode = MW_MODE_EVENT;
    o.event.workers = 1;
    o.conn.serdes = l->serdes;
    o.conn.max_msg = MAX_MSG;
    o.conn.tx_buf = TX_BUF;
    o.max_connections = MAX_CONNS;
    if (l->idx == L_WS) o.tr.ws.expect_path = tool_url_path(l->url);
    o.on_accept = on_accept;
    o.event.on_msg = on_msg;
    o.on_close = on_close;
    o.on_drain = on_drain;
    o.ud = l;
    if (g->sessions) {
        mw_session_opts_init(&o.session);
        o.session.enabled = true;
        o.session.journal_dir = l->jdir;
        o.session.journal_in = true; /* the rebuild needs the orders */
        o.session.on_logon = on_logon;
        o.session.on_logon_done = on_logon_done;
    }
    mw_err_t err;
    mw_err_clear(&err);
    if (mw_svc_listen(&l->svc, l->url, &gw_protocol, &o, &err) < 0)
        tool_fail("%s: %s", l->url, *err.text ? err.text : mw_strerror(err.code));
}

static void parse_args(int argc, char **argv, cfg_t *c) {
    *c = (cfg_t){.symbols = ENGINE_DEFAULT_SYMBOLS, .max_orders = 1u << 18};
    const tool_opt_t opts[] = {
        {"--tcp", TOOL_OPT_STR, &c->tcp, NULL},         {"--ws", TOOL_OPT_STR, &c->ws, NULL},
        {"--tls", TOOL_OPT_STR, &c->tls_url, NULL},
        {"--symbols", TOOL_OPT_STR, &c->symbols, NULL}, {"--journal", TOOL_OPT_STR, &c->journal, NULL},
        {"--book", TOOL_OPT_STR, &c->book, NULL},       {"--seconds", TOOL_OPT_F64, &c->seconds, NULL},
        {"--max-orders", TOOL_OPT_U64, &c->max_orders, NULL},
        {"--crash-after", TOOL_OPT_U64, &c->crash_after, NULL},
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
        struct timespec ts = {0, retry_pending(g) ? 5000000L : 100000000L};
        if (seconds > 0) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            int64_t left = (int64_t)(end.tv_sec - now.tv_sec) * 1000000000LL + (end.tv_nsec - now.tv_nsec);
            if (left <= 0) return;
            if (left < ts.tv_nsec) ts = (struct timespec){0, (long)left};
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
            tool_json_u64(&j, "logons", l->logons);
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
        if (g->sessions) {
            tool_json_obj(&j, "sessions");
            tool_json_u64(&j, "rebuilt_sessions", g->rebuilt_sessions);
            tool_json_u64(&j, "rebuilt_steps", g->rebuilt_steps);
            tool_json_u64(&j, "rebuilt_surplus", g->rebuilt_surplus);
            tool_json_u64(&j, "dups_skipped", g->dups);
            tool_json_u64(&j, "queued", g->queued);
            tool_json_u64(&j, "send_errors", g->send_errors);
            tool_json_close(&j);
        }
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
    if (g->sessions)
        printf("gateway: sessions: %" PRIu64 " rebuilt from the journals (%" PRIu64 " orders and cancels run again, %" PRIu64
               " outputs the crash had cut off), %" PRIu64 " inputs run before a restart skipped, %" PRIu64
               " outputs waited for their session, %" PRIu64 " send errors\n",
               g->rebuilt_sessions, g->rebuilt_steps, g->rebuilt_surplus, g->dups, g->queued, g->send_errors);
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
    for (uint32_t i = 0; i < MAX_ENGINE_SESSIONS; i++) g.routes[i].conn = MW_CONN_ID_NONE;
    g.sessions = c.journal != NULL;
    g.crash_after = c.crash_after;
    block_signals();
    listener_init(&g, L_TCP, "tcp", c.tcp, "fixed", &c);
    listener_init(&g, L_TLS, "tls", c.tls_url, "fixed", &c);
    listener_init(&g, L_WS, "ws", c.ws, "text", &c);
    if (g.sessions) rebuild_engine(&g);
    /* What the rebuild queued goes to the journals before any new output:
     * no on_msg runs the engine until this lock is released. */
    pthread_mutex_lock(&g.mu);
    for (int i = 0; i < NLISTENERS; i++) listener_start(&g, &g.l[i], &c);
    for (uint32_t s = 0; s < MAX_ENGINE_SESSIONS && g.pending; s++)
        if (g.routes[s].qlen) queue_flush(&g, &g.routes[s]);
    pthread_mutex_unlock(&g.mu);
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
