/* md_proto.h - the market-data protocol of exchange_sim and md_client.
 *
 * Six messages, carried with the "text" serdes: over ws:// each message is one
 * WebSocket text frame holding one JSON object, so a browser or a Python
 * script can subscribe without msgwire:
 *
 *   client -> exchange   {"type":"subscribe","symbol":"BTCUSD"}
 *                        {"type":"unsubscribe","symbol":"BTCUSD"}
 *                        {"type":"heartbeat","ts_ns":1718000000000000000}
 *   exchange -> client   {"type":"subscribed","symbol":"BTCUSD","ok":true}
 *                        {"type":"trade","symbol":"BTCUSD","seq":42,"px":65000.5,
 *                         "qty":3,"side":0,"ts_ns":1718000000000000000}
 *                        {"type":"quote","symbol":"BTCUSD","seq":43,"bid":65000.4,
 *                         "ask":65000.6,"bid_qty":12,"ask_qty":7,"ts_ns":...}
 *                        {"type":"heartbeat","ts_ns":...}
 *
 * `subscribed.ok` is the subscription state after the request: true after a
 * subscribe to a listed symbol, false after an unsubscribe or for a symbol
 * the exchange does not list. Trades and quotes of one symbol share one
 * sequence (seq 1, 2, 3, ... per symbol, for every subscriber alike), so a
 * subscriber sees consecutive numbers while it stays connected; a jump marks
 * a gap and a fall back to a small number marks an exchange that restarted.
 * ts_ns is the exchange's wall clock (ns since the epoch) when it made the
 * message. side: 0 buy (the aggressor lifted the ask), 1 sell.
 *
 * A symbol is up to 11 bytes of text (CHARS 12 keeps a NUL for printing).
 */
#ifndef MD_PROTO_H
#define MD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "mw_schema.h"

#define MD_SYMBOL_CAP 12                  /* CHARS size of every symbol field */
#define MD_SYMBOL_MAX (MD_SYMBOL_CAP - 1) /* longest symbol accepted */
#define MD_MAX_SYMBOLS 64                 /* exchange_sim keeps subscriptions as a u64 mask */
#define MD_DEFAULT_SYMBOLS "BTCUSD,ETHUSD,SOLUSD,XRPUSD,ADAUSD,DOGEUSD"

enum { MD_SIDE_BUY = 0, MD_SIDE_SELL = 1 };

#define SUBSCRIBE_FIELDS(F) F(CHARS, symbol, 12)
#define UNSUBSCRIBE_FIELDS(F) F(CHARS, symbol, 12)
#define SUBSCRIBED_FIELDS(F) F(CHARS, symbol, 12) F(BOOL, ok)
#define TRADE_FIELDS(F) \
    F(CHARS, symbol, 12) F(U64, seq) F(F64, px) F(U32, qty) F(ENUM, side, 2) F(U64, ts_ns)
#define QUOTE_FIELDS(F)                                                                    \
    F(CHARS, symbol, 12) F(U64, seq) F(F64, bid) F(F64, ask) F(U32, bid_qty) F(U32, ask_qty) \
    F(U64, ts_ns)
#define HEARTBEAT_FIELDS(F) F(U64, ts_ns)

MW_MESSAGE(subscribe, 1, SUBSCRIBE_FIELDS)
MW_MESSAGE(unsubscribe, 2, UNSUBSCRIBE_FIELDS)
MW_MESSAGE(subscribed, 3, SUBSCRIBED_FIELDS)
MW_MESSAGE(trade, 4, TRADE_FIELDS)
MW_MESSAGE(quote, 5, QUOTE_FIELDS)
MW_MESSAGE(heartbeat, 6, HEARTBEAT_FIELDS)

#define MD_MSGS(M) M(subscribe) M(unsubscribe) M(subscribed) M(trade) M(quote) M(heartbeat)
MW_PROTOCOL(md, MD_MSGS)

_Static_assert(sizeof(((trade_t *)0)->symbol) == MD_SYMBOL_CAP, "symbol fields are MD_SYMBOL_CAP bytes");

/* Largest message on the wire in the text serdes, with room to spare; both
 * tools use it as max_msg. */
#define MD_MAX_MSG 1024

/* Copies a symbol of up to MD_SYMBOL_MAX bytes into a CHARS field, NUL
 * padded. Returns false (dst untouched) when it is empty or too long. */
static inline bool md_symbol_set(char dst[MD_SYMBOL_CAP], const char *s, size_t n) {
    if (n == 0 || n > MD_SYMBOL_MAX) return false;
    memset(dst, 0, MD_SYMBOL_CAP);
    memcpy(dst, s, n);
    return true;
}

/* True if the CHARS field holds exactly the NUL-terminated symbol s. */
static inline bool md_symbol_is(const char field[MD_SYMBOL_CAP], const char *s) {
    return strncmp(field, s, MD_SYMBOL_CAP) == 0 && strlen(s) < MD_SYMBOL_CAP;
}

/* Splits a comma-separated list ("BTCUSD,ETHUSD") into out[0..max), each
 * NUL-terminated. Returns the count, or -1 when an entry is empty, longer
 * than MD_SYMBOL_MAX, holds a character outside [A-Za-z0-9._-], is listed
 * twice, or there are more than max. */
static inline int md_symbols_parse(const char *csv, char out[][MD_SYMBOL_CAP], int max) {
    int n = 0;
    const char *p = csv;
    for (;;) {
        size_t len = strcspn(p, ",");
        if (n == max || !md_symbol_set(out[n], p, len)) return -1;
        for (size_t i = 0; i < len; i++) {
            char ch = p[i];
            bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                      ch == '.' || ch == '_' || ch == '-';
            if (!ok) return -1;
        }
        for (int k = 0; k < n; k++)
            if (strcmp(out[k], out[n]) == 0) return -1;
        n++;
        if (p[len] == '\0') return n;
        p += len + 1;
    }
}

static inline const char *md_side_name(unsigned side) { return side == MD_SIDE_BUY ? "buy" : "sell"; }

#endif
