/* engine.h - the small matching engine of examples/gateway: limit orders and
 * cancels on a few symbols, price-time priority, partial fills.
 *
 * Deterministic: the same sequence of calls (sessions registered in the same
 * order, the same orders and cancels) produces the same acks and fills with
 * the same order ids, match ids and engine_seq numbers, and the same book. No
 * clock, no randomness, no hashing of addresses. That is what lets the
 * gateway rebuild its state after a crash by feeding the journaled orders
 * through a fresh engine again.
 *
 * Memory: everything is allocated by engine_new (an order pool, a hash index,
 * the price levels); an order, a cancel or a match allocates nothing.
 *
 * Orders are keyed by (session, cl_ord_id): a session is a small integer the
 * engine hands out for a name (engine_session). A cl_ord_id the session used
 * before is rejected ("duplicate cl_ord_id") for as long as the engine
 * remembers the order: live orders always, finished ones (filled, cancelled)
 * until their pool record is recycled for a new order (oldest finished
 * first). A session's cl_ord_ids at or below the highest one it has had
 * recycled are rejected too ("stale cl_ord_id"), so a duplicate is never
 * accepted, only a very late first use of an old id is refused.
 *
 * Every integer a client sends or gets stays below 2^53 (see gw_proto.h):
 * cl_ord_id and price at or above it are rejected; order ids, match ids and
 * engine_seq count from 1.
 *
 * Output: each ack and fill goes to out->on_ack / out->on_fill, synchronously,
 * in engine_seq order, from inside the call that caused it. For a new order:
 * the ack (ACCEPTED, leaves = qty, or REJECTED), then per match the
 * aggressor's fill and then the resting order's fill. For a cancel: an ack
 * CANCELLED (leaves 0) or REJECTED, with the order's cl_ord_id.
 *
 * Not thread-safe: one caller at a time (the gateway holds a mutex).
 */
#ifndef ENGINE_H
#define ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "gw_proto.h"

#define ENGINE_MAX_SYMBOLS 16
#define ENGINE_SESSION_CAP 40 /* bytes of a session name, NUL included */
#define ENGINE_DEFAULT_SYMBOLS "AAPL,MSFT,GOOG,AMZN"

typedef struct engine engine_t;

typedef struct engine_out {
    void (*on_ack)(void *ud, uint32_t session, const order_ack_t *a);
    void (*on_fill)(void *ud, uint32_t session, const fill_t *f);
    void *ud;
} engine_out_t;

typedef struct engine_opts {
    const char *symbols;   /* "AAPL,MSFT": 1..ENGINE_MAX_SYMBOLS names of
                              1..GW_SYMBOL_CAP bytes [A-Za-z0-9._-] */
    uint32_t max_orders;   /* order records (live + remembered); default 1 << 18 */
    uint32_t max_levels;   /* price levels per side per symbol; default 4096 */
    uint32_t max_sessions; /* default 1024 */
    engine_out_t out;
} engine_opts_t;

typedef struct engine_stats {
    uint64_t orders, accepted, rejected;    /* new_order calls and their outcome */
    uint64_t cancels, cancelled, cancel_rejected;
    uint64_t matches, filled_qty;           /* one match = two fills */
    uint64_t resting;                       /* live orders in the book now */
    uint64_t recycled;                      /* finished orders forgotten */
    uint64_t engine_seq;                    /* last number given out */
} engine_stats_t;

void engine_opts_init(engine_opts_t *o);

/* Builds an engine. 0, or -1 with the reason in err[cap] (bad symbols or
 * limits, out of memory). Allocates everything it will ever use. */
int engine_new(engine_t **out, const engine_opts_t *o, char *err, size_t cap);
/* NULL is a no-op. */
void engine_free(engine_t *e);

/* The session number of name (registered at first use, in call order, so a
 * replay that registers the same names in the same order gets the same
 * numbers). name: 1..ENGINE_SESSION_CAP-1 bytes. -1 when the table is full
 * or the name is bad. */
int engine_session(engine_t *e, const char *name);
/* The name of session number s ("" when out of range). */
const char *engine_session_name(const engine_t *e, uint32_t s);

/* A new limit order from session s: acks, matches, fills (through out). */
void engine_new_order(engine_t *e, uint32_t s, const new_order_t *o);
/* Cancels the rest of session s's open order c->cl_ord_id. */
void engine_cancel(engine_t *e, uint32_t s, const cancel_t *c);

void engine_stats(const engine_t *e, engine_stats_t *st);
int engine_nsymbols(const engine_t *e);
const char *engine_symbol(const engine_t *e, int i);

/* Writes the book: one line per resting order, symbols in --symbols order,
 * bids best first then asks best first, each level oldest first:
 *   "AAPL buy 18950 T1 17 60/100"  (symbol side price session cl_ord_id leaves/qty)
 * Order ids are left out so that two runs that gave out ids in another
 * interleaving (several sessions at once) but built the same book compare
 * equal. Returns the lines written. */
size_t engine_book_write(const engine_t *e, FILE *f);
/* FNV-1a over what engine_book_write would write. */
uint64_t engine_book_hash(const engine_t *e);

/* The index of the symbol a CHARS field holds, or -1 if the engine does not
 * list it. */
int engine_symbol_index(const engine_t *e, const char field[GW_SYMBOL_CAP]);

#endif
