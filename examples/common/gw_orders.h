/* gw_orders.h - the message stream examples/trader sends, as a pure function
 * of its options: message k (0-based) of a run is always the same order or
 * cancel. The trader resumes a run after a restart at the message its journal
 * says comes next, and a test can compute, with its own engine, the book a
 * run must leave behind.
 *
 * With cancel_every = K > 0 the stream is blocks of K orders followed by one
 * cancel (of the order K/2 before the block's last one; K = 1: of that order
 * itself); the last block may be short and has no cancel. The stream ends
 * with a cancel of cl_ord_id 0, which the gateway always rejects: its answer
 * comes after everything owed for the messages before it (a barrier).
 *
 * Orders: cl_ord_id 1, 2, 3...; odd ones buy, even ones sell; price mid-2 ..
 * mid+2; qty 1..100; both from the seed and the cl_ord_id only.
 */
#ifndef GW_ORDERS_H
#define GW_ORDERS_H

#include <stdint.h>
#include <string.h>

#include "gw_proto.h"

typedef struct gw_stream {
    uint64_t seed, count, cancel_every;
    int64_t mid;
    char symbol[GW_SYMBOL_CAP]; /* NUL padded; may be full */
} gw_stream_t;

static inline uint64_t gw_stream_mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* Messages in the stream, the barrier included. */
static inline uint64_t gw_stream_len(const gw_stream_t *s) {
    return s->count + (s->cancel_every ? s->count / s->cancel_every : 0) + 1;
}

static inline void gw_stream_order(const gw_stream_t *s, uint64_t cl, new_order_t *o) {
    uint64_t r = gw_stream_mix(s->seed * 0x9e3779b97f4a7c15ull + cl);
    memset(o, 0, sizeof *o);
    o->cl_ord_id = cl;
    memcpy(o->symbol, s->symbol, sizeof o->symbol);
    o->side = (uint8_t)(cl % 2 ? GW_BUY : GW_SELL);
    o->price = s->mid + (int64_t)(r % 5) - 2;
    o->qty = 1 + (uint32_t)((r >> 8) % 100);
}

/* Message k (k < gw_stream_len): fills m and returns new_order_TAG or
 * cancel_TAG. */
static inline unsigned gw_stream_msg(const gw_stream_t *s, uint64_t k, gw_msg_t *m) {
    uint64_t K = s->cancel_every;
    if (k + 1 >= gw_stream_len(s)) {
        memset(&m->cancel, 0, sizeof m->cancel); /* the barrier: cl_ord_id 0 */
        return cancel_TAG;
    }
    if (!K) {
        gw_stream_order(s, k + 1, &m->new_order);
        return new_order_TAG;
    }
    uint64_t b = k / (K + 1), r = k % (K + 1);
    if (r < K) {
        gw_stream_order(s, b * K + r + 1, &m->new_order);
        return new_order_TAG;
    }
    memset(&m->cancel, 0, sizeof m->cancel);
    m->cancel.cl_ord_id = (b + 1) * K - K / 2;
    return cancel_TAG;
}

#endif
