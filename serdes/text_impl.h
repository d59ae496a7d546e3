/* text_impl.h - internals shared by the "text" serdes files: text_enc.c (the
 * encoder), text_dec.c (the decoder) and text_num.c (numbers and hex). */
#ifndef MW_TEXT_IMPL_H
#define MW_TEXT_IMPL_H

#include "mw_serdes.h"
#include "serdes_impl.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum {
    MW__NUM_MAX = 512, /* longest F64 number token accepted */
    MW__F64_TEXT = 32  /* room for any F64 text mw__fmt_f64 writes */
};

extern const char mw__digit_pairs[200]; /* "00" "01" ... "99" */
extern const char mw__hex_pairs[512];   /* "00" "01" ... "ff" */
extern const uint8_t mw__unhex[256];    /* hex digit value, or 0x80 if not one */
extern const double mw__pow10[23];      /* 1e0 .. 1e22, all exact */

extern const uint64_t mw__pow10_u64[20]; /* 1 .. 10^19 */

/* Number of decimal digits of v (1 for 0). */
static inline unsigned mw__ndigits(uint64_t v) {
    unsigned t = ((64u - (unsigned)__builtin_clzll(v | 1)) * 1233u) >> 12;
    return t + (v >= mw__pow10_u64[t]) + (v == 0);
}

/* Digits of v < 10^8 (no leading zeros) into buf, two at a time from a
 * table. */
static inline size_t mw__fmt_u32(char *buf, uint32_t v) {
    unsigned n = mw__ndigits(v);
    char *p = buf + n;
    while (v >= 100) {
        p -= 2;
        memcpy(p, mw__digit_pairs + 2 * (v % 100), 2);
        v /= 100;
    }
    if (v >= 10) memcpy(p - 2, mw__digit_pairs + 2 * v, 2);
    else p[-1] = (char)('0' + v);
    return n;
}

/* Exactly 8 digits of v < 10^8, leading zeros included; the two halves are
 * independent, so they compute in parallel. */
static inline void mw__put8(char *p, uint32_t v) {
    uint32_t a = v / 10000, b = v % 10000;
    memcpy(p, mw__digit_pairs + 2 * (a / 100), 2);
    memcpy(p + 2, mw__digit_pairs + 2 * (a % 100), 2);
    memcpy(p + 4, mw__digit_pairs + 2 * (b / 100), 2);
    memcpy(p + 6, mw__digit_pairs + 2 * (b % 100), 2);
}

/* Decimal digits of v (no sign, no leading zeros) into buf[0..20): 8-digit
 * chunks instead of one long chain of divisions. */
static inline size_t mw__fmt_u64(char *buf, uint64_t v) {
    if (v < 100000000) return mw__fmt_u32(buf, (uint32_t)v);
    uint64_t hi = v / 100000000;
    uint32_t lo = (uint32_t)(v % 100000000);
    if (hi < 100000000) {
        size_t n = mw__fmt_u32(buf, (uint32_t)hi);
        mw__put8(buf + n, lo);
        return n + 8;
    }
    size_t n = mw__fmt_u32(buf, (uint32_t)(hi / 100000000));
    mw__put8(buf + n, (uint32_t)(hi % 100000000));
    mw__put8(buf + n + 8, lo);
    return n + 16;
}

static inline size_t mw__fmt_i64(char *buf, int64_t v) {
    if (v >= 0) return mw__fmt_u64(buf, (uint64_t)v);
    buf[0] = '-';
    return 1 + mw__fmt_u64(buf + 1, 0 - (uint64_t)v);
}

/* Writes finite v as the first of %.15g, %.16g, %.17g that reads back to the
 * same bits, with ".0" appended to integral-looking text so that Python and
 * JavaScript peers keep it a float. Returns the length (< MW__F64_TEXT).
 * Exact fast paths for values of up to 15 significant digits and for
 * integers below 2^53; snprintf/strtod for the rest. */
size_t mw__fmt_f64(char buf[MW__F64_TEXT], double v);

/* Reads a number token s[0..len) that already matched the JSON grammar and
 * is at most MW__NUM_MAX long, correctly rounded (as strtod). Exact fast
 * path for up to 19 digits with a power of ten up to 22; strtod otherwise. */
double mw__parse_f64(const uint8_t *s, size_t len);

/* The bytes among the 8 at p that need a look inside a JSON string (a
 * control character, '"', '\\', or a byte >= 0x80) as a mask of their high
 * bits. Each test may flag bytes above a true hit (borrows), never below
 * one, so the lowest flagged byte is exactly the first special byte. */
static inline uint64_t mw__special8(const uint8_t *p) {
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    uint64_t x;
    memcpy(&x, p, 8);
    uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
    uint64_t hit = ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b) | x;
    return hit & high;
}

/* The first byte in [p, end) that is a control character, '"', '\\' or
 * >= 0x80; end if none. */
static inline const uint8_t *mw__plain_run(const uint8_t *p, const uint8_t *end) {
    for (; end - p >= 8; p += 8) {
        uint64_t m = mw__special8(p);
        if (m) {
            if (MW__LE) return p + __builtin_ctzll(m) / 8;
            break; /* big-endian: borrows may flag earlier bytes; go byte by byte */
        }
    }
    while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') p++;
    return p;
}

/* Hex digits s[0..2n) (either case) into out[0..n); false if one is not a
 * hex digit (out then holds garbage). 16 bytes at a time with SSE2. */
bool mw__hex_decode(const uint8_t *s, uint8_t *out, size_t n);

/* Lowercase hex of s[0..n) into o[0..2n). */
void mw__hex_encode(uint8_t *o, const uint8_t *s, size_t n);

/* The encoder (text_enc.c). */
ssize_t mw__text_encode(mw_serdes_t *sd, const mw_schema_t *s, const void *msg, uint8_t *out,
                        size_t cap);

/* The single-pass reader of the canonical form (text_fast.c): true if it
 * decoded in[0..len) completely (*schema_out and msg_out set, as the general
 * decoder would set them); false if the input is not in that form or holds
 * any error, and then msg_out may have been written and sd->err is unset. */
bool mw__text_decode_fast(mw_serdes_t *sd, const uint8_t *in, size_t len, const mw_protocol_t *p,
                          const mw_schema_t **schema_out, void *msg_out, size_t msg_cap);

#endif
