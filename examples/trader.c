/* trader.c - sends limit orders to examples/gateway and checks every answer.
 *
 *   trader --url URL [--mode spin|blocking|event] [--count N] [--window W]
 *          [--rate R] [--symbol S] [--mid PRICE] [--seed N] [--cancel-every K]
 *          [--serdes S] [--session ID --journal DIR [--reconnect-for S]]
 *          [--json] [--progress] [--ca F] [--insecure]
 *
 * Orders alternate buy, sell, buy... at prices a few ticks around --mid, so
 * most of them cross and trade (with each other or with whatever rests in the
 * book); each has a quantity of 1..100. The prices and quantities come from
 * --seed and the order's cl_ord_id only, so two runs send the same orders.
 * With --cancel-every K, every K-th order is followed by a cancel of an
 * earlier one (which may have traded already: then the cancel is rejected).
 * At most --window orders and cancels wait for their ack at any time; --rate
 * paces the orders and cancels (per second; 0: as fast as the window allows).
 *
 * Checks, failing (exit 2) at the first violation:
 *   - every order gets exactly one ack (ACCEPTED with leaves = qty, or
 *     REJECTED), every cancel one answer (CANCELLED or REJECTED);
 *   - every fill belongs to an acked order, its qty is at most what was open
 *     and its leaves = the previous leaves - qty; a buy never fills above its
 *     price, a sell never below; so at the end, per order, the sum of the
 *     fill quantities = qty - leaves;
 *   - engine_seq increases from one message to the next.
 * The run ends with a cancel of cl_ord_id 0 (which the gateway always
 * rejects): its answer comes after every fill owed for the orders before it,
 * so the totals printed are complete.
 *
 * Modes use the library as an application would: spin polls mw_clt_recv with
 * the socket nonblocking; blocking waits in mw_clt_recv for at most a
 * millisecond at a time (so a paced send is not late); event runs an mw_io
 * whose on_msg checks the answer and sends what the window allows, and a
 * timer paces --rate.
 *
 * Sessions (--session ID --journal DIR, against a gateway with --journal):
 * every message is numbered and journaled on both sides, so nothing is lost
 * or duplicated when the connection drops (the trader reconnects for up to
 * --reconnect-for seconds, default 30; SIGUSR1 makes it drop the connection
 * on purpose, for fault tests) or when either process is killed: started
 * again with the same options, the trader resumes the run from its journal
 * (see "resuming" below) and ends with the same checks over the whole run.
 *
 * Output: a summary and order-to-ack latency percentiles (send to ack
 * received, nanosecond clock; orders sent by this process only), or one
 * JSON line with --json.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gw_orders.h"
#include "gw_proto.h"
#include "mw_clt.h"
#include "mw_session.h"
#include "tool.h"

static const char USAGE[] =
    "usage: trader --url URL [--mode spin|blocking|event] [--count N] [--window W] [--rate R]\n"
    "              [--symbol S] [--mid PRICE] [--seed N] [--cancel-every K] [--serdes S]\n"
    "              [--session ID --journal DIR [--reconnect-for S]] [--json] [--progress]\n"
    "              [--ca FILE] [--insecure]\n"
    "\n"
    "  Sends N limit orders to examples/gateway and checks every ack and fill.\n"
    "  URL: tcp://, tls:// (fixed serdes) or ws://, wss:// (text serdes) of the gateway.\n"
    "  --count 10000  --window 64 (orders and cancels awaiting their ack)\n"
    "  --rate  orders and cancels per second (default 0: as fast as the window allows)\n"
    "  --symbol AAPL  --mid 18950 (ticks; orders are priced mid-2 .. mid+2)\n"
    "  --seed 1  --cancel-every 0 (K > 0: after every K-th order, cancel an earlier one)\n"
    "  --serdes  override the serdes the URL implies\n"
    "  --session ID --journal DIR  a recoverable session (the gateway needs --journal): reconnects\n"
    "            for up to --reconnect-for seconds (30); run again after a crash to resume.\n"
    "            SIGUSR1 drops the connection (it reconnects and resumes).\n"
    "  --json    results as one JSON line\n"
    "  Exit status: 0 ok, 1 usage, 2 failure (a check failed or the gateway went away).\n";

#define STALL_NS (10 * MW_NS_PER_S) /* nothing heard for this long while waiting: fail */

enum { O_ACKED = 1, O_REJECTED = 2, O_CANCEL_SENT = 4, O_CANCELLED = 8 };

typedef struct ord {
    uint64_t t_send;
    int64_t price;
    uint32_t qty, leaves, fills, filled;
    uint8_t side, flags;
} ord_t;

typedef struct cfg {
    const char *url, *mode_name, *serdes, *symbol, *session, *journal;
    double reconnect_for;
    mw_mode_t mode;
    uint64_t count, window, seed, cancel_every;
    int64_t mid;
    double rate;
    bool json, progress;
    tool_tls_t tls;
} cfg_t;

typedef struct trader {
    const cfg_t *c;
    mw_clt_t *clt;
    mw_io_t *io;
    mw_io_timer_t pace, watchdog;
    ord_t *ords;        /* [1 .. count] by cl_ord_id */
    uint64_t *lat;      /* order-to-ack, by arrival */
    uint64_t nlat;
    gw_stream_t stream; /* what to send: gw_orders.h */
    uint64_t next_k;    /* the next message of the stream to send */
    uint64_t stream_len;
    uint64_t next_cl;   /* the highest cl_ord_id sent + 1 */
    uint64_t acked;     /* orders answered */
    uint64_t outstanding;
    uint64_t cancels_pending;
    uint64_t last_seq;  /* engine_seq of the last message */
    uint64_t t_start, t_end, last_rx_ns;
    bool barrier_sent, done;
    uint64_t sent_here; /* orders sent by this process (not before a restart) */
    mw_clt_opts_t opts;  /* for reconnects */
    uint64_t rx_applied; /* sessions: inbound number of the last message checked */
    uint64_t resumed_sent, resumed_rx, dups, reconnects, drops_asked;
    uint64_t k_start;    /* next_k when this process started sending (pacing) */
    uint64_t ev_connects; /* event mode: connects after the first */
    bool connected_once;
    /* totals */
    uint64_t accepted, rejected, cancels, cancelled, cancel_rejected, fills, filled_qty, msgs;
    tool_progress_t prog;
} trader_t;

/* ---- checks ------------------------------------------------------------------------ */

static _Noreturn void check_fail(const trader_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static _Noreturn void check_fail(const trader_t *t, const char *fmt, ...) {
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tool_fail("check failed after %" PRIu64 " messages: %s", t->msgs, msg);
}

static void check_seq(trader_t *t, uint64_t seq) {
    if (seq <= t->last_seq)
        check_fail(t, "engine_seq went from %" PRIu64 " to %" PRIu64, t->last_seq, seq);
    t->last_seq = seq;
}

static ord_t *ord_of(trader_t *t, uint64_t cl, const char *what) {
    if (cl == 0 || cl >= t->next_cl) check_fail(t, "%s for cl_ord_id %" PRIu64 ", which was never sent", what, cl);
    return &t->ords[cl];
}

static void got_barrier(trader_t *t, const order_ack_t *a) {
    if (!t->barrier_sent || a->status != GW_REJECTED)
        check_fail(t, "unexpected ack for cl_ord_id 0 (status %u)", a->status);
    t->outstanding--;
    t->done = true;
}

static void got_ack(trader_t *t, const order_ack_t *a, uint64_t now) {
    check_seq(t, a->engine_seq);
    if (a->cl_ord_id == 0) {
        got_barrier(t, a);
        return;
    }
    ord_t *o = ord_of(t, a->cl_ord_id, "ack");
    if (!(o->flags & O_ACKED)) { /* the answer to the order */
        if (a->status == GW_CANCELLED) check_fail(t, "order %" PRIu64 " cancelled before its ack", a->cl_ord_id);
        if (a->status == GW_ACCEPTED && a->leaves != o->qty)
            check_fail(t, "order %" PRIu64 " acked with leaves %u, qty %u", a->cl_ord_id, a->leaves, o->qty);
        o->flags |= O_ACKED;
        if (a->status == GW_REJECTED) {
            o->flags |= O_REJECTED;
            o->leaves = 0;
            t->rejected++;
            if (t->rejected <= 3)
                fprintf(stderr, "%s: order %" PRIu64 " rejected: %.32s\n", tool_prog(), a->cl_ord_id, a->reason);
        } else {
            t->accepted++;
        }
        if (o->t_send) t->lat[t->nlat++] = now - o->t_send; /* 0: sent before a restart */
        t->acked++;
        t->outstanding--;
        return;
    }
    if (!(o->flags & O_CANCEL_SENT) || a->status == GW_ACCEPTED)
        check_fail(t, "a second ack (status %u) for order %" PRIu64, a->status, a->cl_ord_id);
    o->flags &= (uint8_t)~O_CANCEL_SENT; /* the answer to the cancel */
    if (a->status == GW_CANCELLED) {
        if (o->leaves == 0) check_fail(t, "order %" PRIu64 " cancelled with nothing open", a->cl_ord_id);
        o->flags |= O_CANCELLED;
        o->leaves = 0;
        t->cancelled++;
    } else {
        if (o->leaves != 0 && !(o->flags & O_REJECTED))
            check_fail(t, "cancel of order %" PRIu64 " rejected (%.32s) with %u open", a->cl_ord_id, a->reason,
                       o->leaves);
        t->cancel_rejected++;
    }
    t->cancels_pending--;
    t->outstanding--;
}

static void got_fill(trader_t *t, const fill_t *f) {
    check_seq(t, f->engine_seq);
    ord_t *o = ord_of(t, f->cl_ord_id, "fill");
    if (!(o->flags & O_ACKED) || (o->flags & O_REJECTED))
        check_fail(t, "fill for order %" PRIu64 ", which is not acked", f->cl_ord_id);
    if (f->qty == 0 || f->qty > o->leaves || f->leaves != o->leaves - f->qty)
        check_fail(t, "fill of %u (leaves %u) for order %" PRIu64 " with %u open", f->qty, f->leaves, f->cl_ord_id,
                   o->leaves);
    if (o->side == GW_BUY ? f->price > o->price : f->price < o->price)
        check_fail(t, "order %" PRIu64 " (%s at %" PRId64 ") filled at %" PRId64, f->cl_ord_id,
                   o->side == GW_BUY ? "buy" : "sell", o->price, f->price);
    o->leaves = f->leaves;
    o->fills++;
    o->filled += f->qty;
    t->fills++;
    t->filled_qty += f->qty;
}

static void got_msg(trader_t *t, const mw_schema_t *s, const void *msg, uint64_t now) {
    t->msgs++;
    t->last_rx_ns = now;
    if (s->tag == order_ack_TAG) got_ack(t, msg, now);
    else if (s->tag == fill_TAG) got_fill(t, msg);
    else check_fail(t, "the gateway sent a %s", s->name);
    tool_progress_tick(&t->prog, now, t->acked);
}

/* Every order answered once, every cancel answered, and per order the fills
 * add up: sum(fill qty) = qty - leaves. */
static void final_checks(trader_t *t) {
    if (t->acked != t->c->count) check_fail(t, "%" PRIu64 " of %" PRIu64 " orders acked", t->acked, t->c->count);
    if (t->cancels_pending) check_fail(t, "%" PRIu64 " cancels unanswered", t->cancels_pending);
    for (uint64_t cl = 1; cl <= t->c->count; cl++) {
        const ord_t *o = &t->ords[cl];
        if (!(o->flags & O_ACKED)) check_fail(t, "order %" PRIu64 " never acked", cl);
        uint32_t gone = o->flags & O_CANCELLED ? o->qty - o->filled : 0; /* cancelled: not filled */
        if (!(o->flags & O_REJECTED) && o->filled != o->qty - o->leaves - gone)
            check_fail(t, "order %" PRIu64 ": fills add up to %u, qty %u, leaves %u", cl, o->filled, o->qty, o->leaves);
    }
}

/* ---- sending ------------------------------------------------------------------------- */

static bool may_send(const trader_t *t, uint64_t now) {
    if (t->next_k >= t->stream_len || t->outstanding >= t->c->window) return false;
    if (t->next_k + 1 == t->stream_len) return t->outstanding == 0; /* the barrier: last, alone */
    if (t->c->rate <= 0) return true;
    return now >= t->t_start + (uint64_t)((double)(t->next_k - t->k_start) * 1e9 / t->c->rate);
}

static void reconnect(trader_t *t, int why);

/* Sends one message; false when it was not taken (tx buffer full, or the
 * connection went down: with a session the trader reconnects and sends it
 * later). With a session a message is taken exactly when it got a number
 * (blocking mode's MW_ETIMEDOUT may mean either). */
static bool send_one(trader_t *t, const mw_schema_t *s, const void *msg) {
    uint64_t seq = 0;
    int r = t->c->session ? mw_clt_send_seq(t->clt, s, msg, &seq) : mw_clt_send(t->clt, s, msg);
    if (t->c->session && seq) return true;
    if (r == MW_EAGAIN) return false;
    if (r == MW_ETIMEDOUT && t->c->mode == MW_MODE_BLOCKING) return !t->c->session;
    if (r == 0) return true;
    if (t->c->session && t->c->mode != MW_MODE_EVENT) {
        reconnect(t, r);
        return false;
    }
    const char *why = mw_clt_last_error(t->clt);
    tool_fail("send: %s", *why ? why : mw_strerror(r));
}

/* Books message k of the stream as sent (t_send 0: time unknown). */
static void mark_sent(trader_t *t, unsigned tag, const gw_msg_t *m, uint64_t t_send) {
    if (tag == new_order_TAG) {
        const new_order_t *o = &m->new_order;
        t->ords[o->cl_ord_id] = (ord_t){.t_send = t_send, .price = o->price, .qty = o->qty, .leaves = o->qty,
                                         .side = o->side};
        t->next_cl = o->cl_ord_id + 1;
        if (t_send) t->sent_here++;
    } else if (m->cancel.cl_ord_id) {
        t->ords[m->cancel.cl_ord_id].flags |= O_CANCEL_SENT;
        t->cancels++;
        t->cancels_pending++;
    } else {
        t->barrier_sent = true;
        t->t_end = t_send;
    }
    t->next_k++;
    t->outstanding++;
}

/* Sends what the window and the rate allow (the barrier once everything
 * else is answered). Returns true if anything went out. */
static bool pump_sends(trader_t *t) {
    bool any = false;
    uint64_t now = mw_now_ns();
    while (may_send(t, now)) {
        gw_msg_t m;
        unsigned tag = gw_stream_msg(&t->stream, t->next_k, &m);
        if (!send_one(t, tag == new_order_TAG ? new_order_schema() : cancel_schema(), &m)) break;
        mark_sent(t, tag, &m, now);
        any = true;
        now = mw_now_ns();
    }
    return any;
}

/* Nothing heard for too long while answers are owed (or, event mode with a
 * session, while not connected): fail. */
static void check_stall(trader_t *t, uint64_t now) {
    uint64_t limit = t->c->session ? (uint64_t)(t->c->reconnect_for * 1e9) : (uint64_t)STALL_NS;
    bool waiting = t->outstanding || (t->c->session && t->c->mode == MW_MODE_EVENT && t->clt &&
                                      mw_clt_state(t->clt) != MW_CLT_OPEN);
    if (waiting && now - t->last_rx_ns > limit)
        tool_fail("no answer from the gateway for %.0f s (%" PRIu64 " waiting)", (double)limit / 1e9, t->outstanding);
}

/* ---- spin and blocking ---------------------------------------------------------------- */

static void recv_fail(trader_t *t, int r) {
    if (r == MW_ECLOSED) tool_fail("the gateway closed the connection");
    const char *why = mw_clt_last_error(t->clt);
    tool_fail("recv: %s", *why ? why : mw_strerror(r));
}

static void nap_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Sessions, spin and blocking: the connection is gone (why) or a drop was
 * asked for (SIGUSR1): a new Clt on the same session, tried with backoff for
 * --reconnect-for seconds. The session resends what the gateway missed and
 * the gateway what we missed. */
static void reconnect(trader_t *t, int why) {
    if (!t->c->session) recv_fail(t, why);
    char reason[256];
    snprintf(reason, sizeof reason, "%s", t->clt && *mw_clt_last_error(t->clt) ? mw_clt_last_error(t->clt)
                                                                              : mw_strerror(why));
    mw_clt_free(t->clt);
    t->clt = NULL;
    uint64_t until = mw_now_ns() + (uint64_t)(t->c->reconnect_for * 1e9);
    long delay = 10;
    for (;;) {
        mw_err_t err;
        mw_err_clear(&err);
        int r = mw_clt_connect(&t->clt, t->c->url, &gw_protocol, &t->opts, &err);
        if (r == 0) break;
        t->clt = NULL;
        if (mw_now_ns() > until)
            tool_fail("no connection for %.0f s (after: %s): %s", t->c->reconnect_for, reason, mw_err_text(&err));
        nap_ms(delay);
        delay = delay * 2 > 500 ? 500 : delay * 2;
    }
    t->reconnects++;
    t->last_rx_ns = mw_now_ns();
}

/* Sessions: a number checked already (before a restart, or before the
 * reconnect) is not checked again. */
static bool fresh(trader_t *t, uint64_t seq) {
    if (!t->c->session) return true;
    if (seq <= t->rx_applied) {
        t->dups++;
        return false;
    }
    t->rx_applied = seq;
    return true;
}

static volatile sig_atomic_t drop_asked; /* SIGUSR1: drop the connection (fault tests) */

static void on_usr1(int sig) {
    (void)sig;
    drop_asked = 1;
}

static void run_sync(trader_t *t) {
    gw_msg_t m;
    const mw_schema_t *s;
    while (!t->done) {
        if (drop_asked && t->c->session) {
            drop_asked = 0;
            t->drops_asked++;
            reconnect(t, MW_ECLOSED);
        }
        pump_sends(t);
        if (!t->clt) continue; /* a send reconnected */
        int r = mw_clt_recv(t->clt, &s, &m, sizeof m);
        uint64_t now = mw_now_ns();
        if (r == 0) {
            if (fresh(t, mw_clt_rx_seq(t->clt))) got_msg(t, s, &m, now);
        } else if (r != MW_EAGAIN && r != MW_ETIMEDOUT) {
            reconnect(t, r);
        } else {
            check_stall(t, now);
        }
    }
}

/* ---- event ----------------------------------------------------------------------------- */

static void ev_next(trader_t *t);

static void ev_msg(mw_clt_t *c, const mw_schema_t *s, const void *msg, void *ud) {
    trader_t *t = ud;
    if (fresh(t, mw_clt_rx_seq(c))) got_msg(t, s, msg, mw_now_ns());
    ev_next(t);
}

static void ev_connect(mw_clt_t *c, void *ud) {
    trader_t *t = ud;
    if (t->connected_once) t->ev_connects++;
    t->connected_once = true;
    (void)c;
    ev_next(t);
}

static void ev_drain(mw_clt_t *c, void *ud) {
    (void)c;
    ev_next(ud);
}

static void ev_close(mw_clt_t *c, int reason, void *ud) {
    trader_t *t = ud;
    if (t->done || t->c->session) return; /* sessions: the Clt reconnects by itself */
    if (reason == MW_ECLOSED) tool_fail("the gateway closed the connection");
    const char *why = mw_clt_last_error(c);
    tool_fail("connection lost: %s", *why ? why : mw_strerror(reason));
}

static void ev_pace(mw_io_timer_t *tm, void *ud) {
    (void)tm;
    ev_next(ud);
}

static void ev_open_clt(trader_t *t) {
    mw_err_t err;
    mw_err_clear(&err);
    int r = mw_clt_connect(&t->clt, t->c->url, &gw_protocol, &t->opts, &err);
    if (r < 0) tool_fail("%s", *err.text ? err.text : mw_strerror(r));
}

/* Every 10 ms: the stall check, and a drop asked for by SIGUSR1 (a new Clt
 * on the same session: it reconnects and resumes by itself). */
static void ev_watchdog(mw_io_timer_t *tm, void *ud) {
    trader_t *t = ud;
    uint64_t now = mw_now_ns();
    if (drop_asked && t->c->session) {
        drop_asked = 0;
        t->drops_asked++;
        mw_clt_free(t->clt);
        t->clt = NULL;
        ev_open_clt(t);
        t->last_rx_ns = now;
    }
    check_stall(t, now);
    mw_io_timer_after(t->io, tm, 10 * MW_NS_PER_MS);
}

/* Sends what may go now; with --rate, wakes up when the next order is due. */
static void ev_next(trader_t *t) {
    if (t->done) {
        mw_io_break(t->io);
        return;
    }
    if (t->c->session && mw_clt_state(t->clt) != MW_CLT_OPEN) return; /* on_connect sends */
    pump_sends(t);
    if (t->c->rate > 0 && t->next_k + 1 < t->stream_len && t->outstanding < t->c->window) {
        uint64_t due = t->t_start + (uint64_t)((double)(t->next_k - t->k_start) * 1e9 / t->c->rate);
        mw_io_timer_at(t->io, &t->pace, due);
    }
}

static void ev_open(trader_t *t, mw_clt_opts_t *o) {
    mw_io_opts_t io;
    mw_io_opts_init(&io);
    mw_err_t err;
    mw_err_clear(&err);
    if (mw_io_new(&t->io, &io, &err) < 0) tool_fail("io: %s", mw_err_text(&err));
    o->event.io = t->io;
    o->event.on_connect = ev_connect;
    o->event.on_msg = ev_msg;
    o->event.on_close = ev_close;
    o->event.on_drain = ev_drain;
    o->ud = t;
    mw_io_timer_init(&t->pace, ev_pace, t);
    mw_io_timer_init(&t->watchdog, ev_watchdog, t);
}

static void run_event(trader_t *t) {
    mw_io_timer_after(t->io, &t->watchdog, 10 * MW_NS_PER_MS);
    while (!t->done) {
        int r = mw_io_run(t->io);
        if (r < 0) tool_fail("io: %s", mw_io_last_error(t->io));
    }
    mw_io_timer_stop(t->io, &t->pace);
    mw_io_timer_stop(t->io, &t->watchdog);
}

/* ---- resuming from the journal (sessions) ------------------------------------------
 *
 * The session's journal holds what this trader sent (OUT: the stream's
 * messages 1, 2, 3..., each the stream's message k = number - 1) and what it
 * received (IN, journal_in). Running both through the same checks rebuilds
 * the state the killed process had: which orders and cancels went out, which
 * are answered, what is open. Sending resumes at the first message the
 * journal does not hold; the latency of orders sent before the restart is
 * not known (not counted). Numbers received already are skipped when the
 * session hands them over again (a message whose handling the crash
 * interrupted comes again, flagged MW_SEQ_POSSDUP). */

static bool same_msg(unsigned tag, const gw_msg_t *a, const void *b) {
    if (tag == cancel_TAG) return a->cancel.cl_ord_id == ((const cancel_t *)b)->cl_ord_id;
    const new_order_t *x = &a->new_order, *y = b;
    return x->cl_ord_id == y->cl_ord_id && memcmp(x->symbol, y->symbol, sizeof x->symbol) == 0 &&
           x->side == y->side && x->price == y->price && x->qty == y->qty;
}

static bool resume_rec(void *ud, int dir, uint64_t seq, const mw_schema_t *sch, const void *msg) {
    trader_t *t = ud;
    if (dir == MW_SESSION_IN) {
        if (fresh(t, seq)) {
            got_msg(t, sch, msg, 0);
            t->resumed_rx++;
        }
        return true;
    }
    if (seq != t->next_k + 1 || t->next_k >= t->stream_len)
        tool_fail("journal: sent message %" PRIu64 " where %" PRIu64 " was expected", seq, t->next_k + 1);
    gw_msg_t m;
    unsigned tag = gw_stream_msg(&t->stream, t->next_k, &m);
    if (tag != sch->tag || !same_msg(tag, &m, msg))
        tool_fail("journal: message %" PRIu64 " is not this run's (other --count, --seed, --symbol, --mid or "
                  "--cancel-every?)", seq);
    mark_sent(t, tag, &m, 0);
    t->resumed_sent++;
    return true;
}

static void resume(trader_t *t) {
    mw_err_t err;
    mw_err_clear(&err);
    if (mw_session_replay(t->c->journal, t->c->session, &gw_protocol, resume_rec, t, &err) < 0)
        tool_fail("journal: %s", mw_err_text(&err));
    t->dups = 0; /* replaying IN records twice is not a duplicate delivery */
    t->k_start = t->next_k;
    if (t->resumed_sent)
        fprintf(stderr, "%s: resumed session %s: %" PRIu64 " messages sent and %" PRIu64 " received before\n",
                tool_prog(), t->c->session, t->resumed_sent, t->resumed_rx);
}

/* ---- results ---------------------------------------------------------------------------- */

/* Event mode: the Clt reconnects by itself (and is replaced on SIGUSR1). */
static uint64_t reconnects(const trader_t *t) {
    return t->reconnects + t->ev_connects;
}

static void print_results(trader_t *t) {
    const cfg_t *c = t->c;
    tool_pct_t p;
    memset(&p, 0, sizeof p);
    if (t->nlat) tool_percentiles(t->lat, t->nlat, &p);
    /* orders sent by this process per second, up to the barrier */
    uint64_t end = t->t_end > t->t_start ? t->t_end : mw_now_ns();
    double secs = (double)(end - t->t_start) / 1e9;
    double per_s = secs > 0 ? (double)t->sent_here / secs : 0;
    uint64_t open = 0, open_qty = 0;
    for (uint64_t cl = 1; cl <= c->count; cl++)
        if (t->ords[cl].leaves) {
            open++;
            open_qty += t->ords[cl].leaves;
        }
    if (c->json) {
        tool_json_t j;
        tool_json_begin(&j, stdout);
        tool_json_str(&j, "url", c->url);
        tool_json_str(&j, "mode", mw_mode_name(c->mode));
        tool_json_str(&j, "serdes", c->serdes);
        tool_json_u64(&j, "orders", c->count);
        tool_json_u64(&j, "window", c->window);
        tool_json_u64(&j, "accepted", t->accepted);
        tool_json_u64(&j, "rejected", t->rejected);
        tool_json_u64(&j, "cancels", t->cancels);
        tool_json_u64(&j, "cancelled", t->cancelled);
        tool_json_u64(&j, "cancel_rejected", t->cancel_rejected);
        tool_json_u64(&j, "fills", t->fills);
        tool_json_u64(&j, "filled_qty", t->filled_qty);
        tool_json_u64(&j, "open_orders", open);
        tool_json_u64(&j, "open_qty", open_qty);
        if (c->session) {
            tool_json_obj(&j, "session");
            tool_json_str(&j, "id", c->session);
            tool_json_u64(&j, "resumed_sent", t->resumed_sent);
            tool_json_u64(&j, "resumed_received", t->resumed_rx);
            tool_json_u64(&j, "reconnects", reconnects(t));
            tool_json_u64(&j, "drops_asked", t->drops_asked);
            tool_json_u64(&j, "dups_skipped", t->dups);
            tool_json_close(&j);
        }
        tool_json_u64(&j, "latency_samples", t->nlat);
        tool_json_obj(&j, "ack_ns");
        tool_json_u64(&j, "min", p.min);
        tool_json_u64(&j, "p50", p.p50);
        tool_json_u64(&j, "p90", p.p90);
        tool_json_u64(&j, "p99", p.p99);
        tool_json_u64(&j, "max", p.max);
        tool_json_close(&j);
        tool_json_f64(&j, "orders_per_s", per_s, 1);
        tool_json_end(&j);
        return;
    }
    printf("trader: %" PRIu64 " orders over %s (%s mode, %s serdes, window %" PRIu64 "): %" PRIu64 " accepted, %" PRIu64
           " rejected; %" PRIu64 " cancels (%" PRIu64 " done, %" PRIu64 " rejected); %" PRIu64 " fills, %" PRIu64
           " filled; %" PRIu64 " orders still open (%" PRIu64 ")\n",
           c->count, c->url, mw_mode_name(c->mode), c->serdes, c->window, t->accepted, t->rejected, t->cancels,
           t->cancelled, t->cancel_rejected, t->fills, t->filled_qty, open, open_qty);
    printf("order-to-ack us: min %.1f  p50 %.1f  p90 %.1f  p99 %.1f  max %.1f\n", p.min / 1e3, p.p50 / 1e3,
           p.p90 / 1e3, p.p99 / 1e3, p.max / 1e3);
    printf("orders/s: %.0f\n", per_s);
    if (c->session)
        printf("session %s: resumed after %" PRIu64 " sent and %" PRIu64 " received; %" PRIu64 " reconnects (%" PRIu64
               " asked for), %" PRIu64 " repeated numbers skipped\n",
               c->session, t->resumed_sent, t->resumed_rx, reconnects(t), t->drops_asked, t->dups);
    printf("checks: every order acked once, every fill consistent: ok\n");
}

/* ---- main --------------------------------------------------------------------------------- */

static void parse_args(int argc, char **argv, cfg_t *c) {
    *c = (cfg_t){.mode_name = "spin", .symbol = "AAPL", .count = 10000, .window = 64, .seed = 1, .mid = 18950,
                 .reconnect_for = 30};
    uint64_t mid = (uint64_t)c->mid;
    const tool_opt_t opts[] = {
        {"--url", TOOL_OPT_STR, &c->url, NULL},
        {"--mode", TOOL_OPT_STR, &c->mode_name, NULL},
        {"--count", TOOL_OPT_U64, &c->count, NULL},
        {"--window", TOOL_OPT_U64, &c->window, NULL},
        {"--rate", TOOL_OPT_F64, &c->rate, NULL},
        {"--symbol", TOOL_OPT_STR, &c->symbol, NULL},
        {"--mid", TOOL_OPT_U64, &mid, NULL},
        {"--seed", TOOL_OPT_U64, &c->seed, NULL},
        {"--cancel-every", TOOL_OPT_U64, &c->cancel_every, NULL},
        {"--serdes", TOOL_OPT_STR, &c->serdes, NULL},
        {"--session", TOOL_OPT_STR, &c->session, NULL},
        {"--journal", TOOL_OPT_STR, &c->journal, NULL},
        {"--reconnect-for", TOOL_OPT_F64, &c->reconnect_for, NULL},
        {"--json", TOOL_OPT_FLAG, &c->json, NULL},
        {"--progress", TOOL_OPT_FLAG, &c->progress, NULL},
        TOOL_TLS_OPTS(&c->tls),
    };
    tool_parse(argc, argv, 1, opts, sizeof opts / sizeof opts[0], USAGE);
    if (!c->url) tool_usage_fail(USAGE, "--url is required");
    c->mode = tool_parse_mode(c->mode_name, USAGE);
    if (!c->serdes) c->serdes = strncmp(c->url, "ws", 2) == 0 ? "text" : "fixed";
    tool_check_serdes(c->serdes, USAGE);
    if (c->count == 0 || c->count > (1u << 28)) tool_usage_fail(USAGE, "--count must be 1 .. 2^28");
    if (c->window == 0) tool_usage_fail(USAGE, "--window must be > 0");
    if (strlen(c->symbol) == 0 || strlen(c->symbol) > GW_SYMBOL_CAP)
        tool_usage_fail(USAGE, "--symbol must be 1 .. %d characters", GW_SYMBOL_CAP);
    if (mid < 3 || mid > (uint64_t)GW_JS_SAFE_MAX - 3) tool_usage_fail(USAGE, "--mid out of range");
    c->mid = (int64_t)mid;
    if (!c->session != !c->journal) tool_usage_fail(USAGE, "--session and --journal go together");
    if (c->reconnect_for <= 0) tool_usage_fail(USAGE, "--reconnect-for must be > 0");
}

/* The first connect. With a session in spin or blocking mode a gateway
 * that is not there yet (or restarting) is waited for like a lost
 * connection; event mode's Clt reconnects by itself. */
static void first_connect(trader_t *t) {
    mw_err_t err;
    mw_err_clear(&err);
    int r = mw_clt_connect(&t->clt, t->c->url, &gw_protocol, &t->opts, &err);
    if (r == 0) return;
    t->clt = NULL;
    if (!t->c->session || t->c->mode == MW_MODE_EVENT) tool_fail("%s", *err.text ? err.text : mw_strerror(r));
    fprintf(stderr, "%s: %s: retrying\n", tool_prog(), mw_err_text(&err));
    reconnect(t, r);
    t->reconnects--;
}

int main(int argc, char **argv) {
    tool_init("trader");
    cfg_t c;
    parse_args(argc, argv, &c);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGUSR1, on_usr1);
    trader_t *t = calloc(1, sizeof *t);
    if (!t) tool_fail("out of memory");
    t->c = &c;
    t->ords = calloc(c.count + 1, sizeof *t->ords);
    t->lat = malloc(c.count * sizeof *t->lat);
    if (!t->ords || !t->lat) tool_fail("out of memory for %" PRIu64 " orders", c.count);
    t->next_cl = 1;
    t->stream = (gw_stream_t){.seed = c.seed, .count = c.count, .cancel_every = c.cancel_every, .mid = c.mid};
    memcpy(t->stream.symbol, c.symbol, strlen(c.symbol));
    t->stream_len = gw_stream_len(&t->stream);
    tool_progress_init(&t->prog, c.progress, "orders acked", c.count);
    if (c.session) resume(t);

    mw_clt_opts_t *o = &t->opts;
    mw_clt_opts_init(o);
    tool_apply_tls(&o->tr, &c.tls, false);
    o->mode = c.mode;
    o->conn.serdes = c.serdes;
    o->conn.max_msg = 1024;
    o->sync.timeout_ns = MW_NS_PER_MS; /* blocking: wake up for the next paced order and the stall check */
    if (c.session) {
        mw_session_opts_init(&o->session);
        o->session.enabled = true;
        o->session.journal_dir = c.journal;
        o->session.id = c.session;
        o->session.journal_in = true; /* what resume() reads after a restart */
        if (c.mode == MW_MODE_EVENT) {
            o->event.reconnect = true;
            o->retry.min_delay_ns = 10 * MW_NS_PER_MS;
            o->retry.max_delay_ns = 500 * MW_NS_PER_MS;
        }
    }
    if (c.mode == MW_MODE_EVENT) ev_open(t, o);
    t->t_start = t->last_rx_ns = mw_now_ns();
    first_connect(t);
    t->t_start = t->last_rx_ns = mw_now_ns();
    if (c.mode == MW_MODE_EVENT) run_event(t);
    else run_sync(t);
    tool_progress_end(&t->prog);
    final_checks(t);
    mw_clt_free(t->clt);
    mw_io_free(t->io);
    print_results(t);
    free(t->ords);
    free(t->lat);
    free(t);
    return TOOL_EXIT_OK;
}
