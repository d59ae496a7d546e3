/* Compiled, linked and run by test_headers with -std=c11 -pedantic -Werror:
 * a user program that includes every installed header (mw_all.h, generated
 * by the test) and declares a protocol with MW_MESSAGE, including fields
 * without a size argument, which once left a variadic macro's "..." empty. */
#include "mw_all.h"

#include <stdio.h>
#include <string.h>

#define PED_QUOTE_FIELDS(F) \
    F(U64, id)              \
    F(CHARS, sym, 8)        \
    F(I64, px)              \
    F(BOOL, firm)           \
    F(ENUM, side, 2)
MW_MESSAGE(ped_quote, 7, PED_QUOTE_FIELDS)
#define PED_HELLO_FIELDS(F) F(U32, version)
MW_MESSAGE(ped_hello, 8, PED_HELLO_FIELDS)
#define PED_MSGS(M) M(ped_quote) M(ped_hello)
MW_PROTOCOL(ped, PED_MSGS)

static int roundtrip(const char *serdes) {
    mw_serdes_t sd;
    if (mw_serdes_init(&sd, serdes, 0) < 0) return 1;
    ped_quote_t q = {42, "EURUSD", -17, true, 1}, back;
    uint8_t buf[256];
    const mw_schema_t *s = NULL;
    ssize_t n = ped_quote_encode(&sd, &q, buf, sizeof buf);
    int bad = n <= 0 || mw_serdes_decode(&sd, buf, (size_t)n, &ped_protocol, &s, &back, sizeof back) != n ||
              s->tag != MW_SCHEMA_OF(&q, PED_MSGS)->tag || back.id != 42 || strcmp(back.sym, "EURUSD") != 0 ||
              back.px != -17 || !back.firm || back.side != 1;
    mw_serdes_fini(&sd);
    return bad;
}

int main(void) {
    int bad = roundtrip("fixed") + roundtrip("text") + roundtrip("msgpack");
    puts(bad ? "failed" : "ok");
    return bad != 0;
}
