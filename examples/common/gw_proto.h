/* gw_proto.h - the order-entry protocol of examples/gateway, examples/trader
 * and the web blotter (examples/web/). Sessions carry it (opts.session), so
 * every message below is numbered and survives disconnects and restarts.
 *
 *   trader -> gateway   new_order  a limit order (cl_ord_id: the trader's own
 *                                  id, unique within its session)
 *                       cancel     cancel the rest of an open order
 *   gateway -> trader   order_ack  accepted / rejected / cancelled, with the
 *                                  quantity still open (leaves)
 *                       fill       one execution against the trader's order
 *
 * Over ws:// with the text serdes a browser sees, e.g.
 *   {"type":"new_order","cl_ord_id":1,"symbol":"AAPL","side":0,"price":18950,"qty":100}
 *   {"type":"order_ack","cl_ord_id":1,"order_id":7,"status":0,"leaves":100,"engine_seq":12,"reason":""}
 *   {"type":"fill","cl_ord_id":1,"order_id":7,"match_id":3,"price":18950,"qty":40,"leaves":60,"engine_seq":13}
 *
 * JavaScript numbers are exact only up to 2^53: every integer here stays
 * below it (the gateway rejects a cl_ord_id, price or qty at or above 2^53,
 * and its own ids and sequence numbers count up from 1), so a page shows
 * every value exactly. Prices are integer ticks (1 tick = 0.01).
 */
#ifndef GW_PROTO_H
#define GW_PROTO_H

#include "mw_schema.h"

#define GW_SYMBOL_CAP 8
#define GW_JS_SAFE_MAX 9007199254740991LL /* 2^53 - 1 */

enum { GW_BUY = 0, GW_SELL = 1 };
enum { GW_ACCEPTED = 0, GW_REJECTED = 1, GW_CANCELLED = 2 };

#define NEW_ORDER_FIELDS(F)                                                    \
    F(U64, cl_ord_id) F(CHARS, symbol, GW_SYMBOL_CAP) F(ENUM, side, 2)         \
    F(I64, price) F(U32, qty)
MW_MESSAGE(new_order, 1, NEW_ORDER_FIELDS)

#define CANCEL_FIELDS(F) F(U64, cl_ord_id)
MW_MESSAGE(cancel, 2, CANCEL_FIELDS)

/* status: GW_ACCEPTED, GW_REJECTED (reason says why), GW_CANCELLED.
 * engine_seq: the matching engine's own event number (global, from 1). */
#define ORDER_ACK_FIELDS(F)                                                    \
    F(U64, cl_ord_id) F(U64, order_id) F(ENUM, status, 3) F(U32, leaves)      \
    F(U64, engine_seq) F(CHARS, reason, 32)
MW_MESSAGE(order_ack, 3, ORDER_ACK_FIELDS)

/* One execution: qty at price; leaves: what stays open of the order. */
#define FILL_FIELDS(F)                                                         \
    F(U64, cl_ord_id) F(U64, order_id) F(U64, match_id) F(I64, price)         \
    F(U32, qty) F(U32, leaves) F(U64, engine_seq)
MW_MESSAGE(fill, 4, FILL_FIELDS)

#define GW_MSGS(M) M(new_order) M(cancel) M(order_ack) M(fill)
MW_PROTOCOL(gw, GW_MSGS)

#endif
