/* text_num.c - numbers and hex for the "text" serdes.
 *
 * F64 text is defined as the first of %.15g, %.16g, %.17g that reads back to
 * the same double (README "Wire formats"). Two cases are computed exactly
 * without the C library, and give the very bytes snprintf would:
 *
 *  - v has a decimal form m * 10^k (m < 10^15, |k| <= 22) that reads back to
 *    v. Reading back is checked exactly: m and 10^|k| are exact doubles, so
 *    one IEEE multiplication or division rounds m * 10^k correctly, as strtod
 *    does (Clinger's fast path). Such a form has at most 15 significant
 *    digits, and it is the only one: half an ulp of v is less than 1.2e-16 v,
 *    while 15-digit decimals near v are at least 1e-15 v apart. So it is
 *    what %.15g prints, and %.15g reads back.
 *  - v is an integer below 2^53 with 16 significant digits: %.15g changes
 *    its last digit to another exactly representable integer, so %.16g (the
 *    integer itself) is the answer.
 *
 * Everything else (17-digit values, subnormals, most huge and tiny values)
 * goes the old way through snprintf and strtod.
 *
 * Parsing is the mirror image: a token of at most 19 significant digits m
 * with a decimal exponent e, |e| <= 22 and m <= 2^53, is m * 10^e or
 * m / 10^-e in one correctly rounded IEEE operation; strtod does the rest.
 *
 * Locale: the snprintf/strtod paths use the C library's LC_NUMERIC decimal
 * point. msgwire never calls setlocale; a program that switches LC_NUMERIC
 * to a locale whose decimal point is not '.' would break those F64 values.
 */
#include "text_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define P10(a) a "0" a "1" a "2" a "3" a "4" a "5" a "6" a "7" a "8" a "9"
const char mw__digit_pairs[200] = P10("0") P10("1") P10("2") P10("3") P10("4") P10("5") P10("6")
    P10("7") P10("8") P10("9");
#undef P10

#define H16(a)                                                                                 \
    a "0" a "1" a "2" a "3" a "4" a "5" a "6" a "7" a "8" a "9" a "a" a "b" a "c" a "d" a "e" \
    a "f"
const char mw__hex_pairs[512] = H16("0") H16("1") H16("2") H16("3") H16("4") H16("5") H16("6")
    H16("7") H16("8") H16("9") H16("a") H16("b") H16("c") H16("d") H16("e") H16("f");
#undef H16

#define X8 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80
#define X16 X8, X8
const uint8_t mw__unhex[256] = {
    X16, X16, X16,                                                     /* 00-2f */
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,  /* 30-3f */
    0x80, 10, 11, 12, 13, 14, 15, 0x80, X8,                            /* 40-4f */
    X16,                                                               /* 50-5f */
    0x80, 10, 11, 12, 13, 14, 15, 0x80, X8,                            /* 60-6f */
    X16, X16, X16, X16, X16, X16, X16, X16, X16,                       /* 70-ff */
};
#undef X16
#undef X8

const uint64_t mw__pow10_u64[20] = {
    1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull, 100000000ull,
    1000000000ull, 10000000000ull, 100000000000ull, 1000000000000ull, 10000000000000ull,
    100000000000000ull, 1000000000000000ull, 10000000000000000ull, 100000000000000000ull,
    1000000000000000000ull, 10000000000000000000ull};

const double mw__pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                              1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                              1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* ---- hex in bulk ------------------------------------------------------------ */

#ifdef __SSE2__
/* 16 hex characters to their values (0..15); *ok cleared if one is not a
 * hex digit. Signed byte compares: bytes >= 0x80 are negative and fail both
 * range tests. */
static inline __m128i unhex16(__m128i v, __m128i *bad) {
    const __m128i minus1 = _mm_set1_epi8(-1);
    __m128i d = _mm_sub_epi8(v, _mm_set1_epi8('0'));
    __m128i l = _mm_sub_epi8(_mm_or_si128(v, _mm_set1_epi8(0x20)), _mm_set1_epi8('a'));
    __m128i isd = _mm_and_si128(_mm_cmpgt_epi8(d, minus1), _mm_cmplt_epi8(d, _mm_set1_epi8(10)));
    __m128i isl = _mm_and_si128(_mm_cmpgt_epi8(l, minus1), _mm_cmplt_epi8(l, _mm_set1_epi8(6)));
    *bad = _mm_or_si128(*bad, _mm_andnot_si128(_mm_or_si128(isd, isl), minus1));
    return _mm_or_si128(_mm_and_si128(d, isd),
                        _mm_and_si128(_mm_add_epi8(l, _mm_set1_epi8(10)), isl));
}

/* Values of 16 hex characters to 8 bytes in the low byte of each 16-bit lane. */
static inline __m128i pairs16(__m128i val) {
    __m128i hi = _mm_slli_epi16(val, 4), lo = _mm_srli_epi16(val, 8);
    return _mm_and_si128(_mm_or_si128(hi, lo), _mm_set1_epi16(0x00ff));
}
#endif

bool mw__hex_decode(const uint8_t *s, uint8_t *out, size_t n) {
    size_t i = 0;
#ifdef __SSE2__
    __m128i bad = _mm_setzero_si128();
    for (; n - i >= 16; i += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(s + 2 * i));
        __m128i b = _mm_loadu_si128((const __m128i *)(s + 2 * i + 16));
        a = pairs16(unhex16(a, &bad));
        b = pairs16(unhex16(b, &bad));
        _mm_storeu_si128((__m128i *)(out + i), _mm_packus_epi16(a, b));
    }
    if (_mm_movemask_epi8(bad)) return false;
#endif
    unsigned worse = 0;
    for (; i < n; i++) {
        unsigned hi = mw__unhex[s[2 * i]], lo = mw__unhex[s[2 * i + 1]];
        worse |= hi | lo;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return !(worse & 0x80);
}

void mw__hex_encode(uint8_t *o, const uint8_t *s, size_t n) {
    size_t i = 0;
#ifdef __SSE2__
    const __m128i low4 = _mm_set1_epi8(0x0f), nine = _mm_set1_epi8(9);
    for (; n - i >= 16; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(s + i));
        __m128i hi = _mm_and_si128(_mm_srli_epi16(x, 4), low4), lo = _mm_and_si128(x, low4);
        /* '0' + v, plus 'a' - '0' - 10 = 39 for v > 9 */
        hi = _mm_add_epi8(_mm_add_epi8(hi, _mm_set1_epi8('0')),
                          _mm_and_si128(_mm_cmpgt_epi8(hi, nine), _mm_set1_epi8(39)));
        lo = _mm_add_epi8(_mm_add_epi8(lo, _mm_set1_epi8('0')),
                          _mm_and_si128(_mm_cmpgt_epi8(lo, nine), _mm_set1_epi8(39)));
        _mm_storeu_si128((__m128i *)(o + 2 * i), _mm_unpacklo_epi8(hi, lo));
        _mm_storeu_si128((__m128i *)(o + 2 * i + 16), _mm_unpackhi_epi8(hi, lo));
    }
#endif
    for (; i < n; i++) memcpy(o + 2 * i, mw__hex_pairs + 2 * s[i], 2);
}

/* ---- formatting ------------------------------------------------------------ */

static bool same_bits(double a, double b) {
    uint64_t x, y;
    memcpy(&x, &a, 8);
    memcpy(&y, &b, 8);
    return x == y;
}

/* Nearest integer to 0 <= x < 2^52 (ties to even). */
static double round_int(double x) {
    const double big = 4503599627370496.0; /* 2^52 */
    return (x + big) - big;
}

/* What %.{prec}g prints for the decimal d[0..n) * 10^(x - n + 1): digits d
 * without trailing zeros (n >= 1), x the exponent of the first digit. */
static size_t style_g(char *out, bool neg, const char *d, size_t n, int x, int prec) {
    char *o = out;
    if (neg) *o++ = '-';
    if (x < -4 || x >= prec) {
        *o++ = d[0];
        if (n > 1) {
            *o++ = '.';
            mw__copy_small((uint8_t *)o, d + 1, n - 1);
            o += n - 1;
        }
        int ax = x < 0 ? -x : x;
        *o++ = 'e';
        *o++ = x < 0 ? '-' : '+';
        if (ax >= 100) *o++ = (char)('0' + ax / 100);
        memcpy(o, mw__digit_pairs + 2 * (ax % 100), 2);
        o += 2;
    } else if (x < 0) {
        size_t zeros = (size_t)(-x - 1);
        memcpy(o, "0.000", 2 + zeros); /* x >= -4: at most 3 zeros */
        o += 2 + zeros;
        mw__copy_small((uint8_t *)o, d, n);
        o += n;
    } else if (n <= (size_t)x + 1) {
        size_t zeros = (size_t)x + 1 - n;
        mw__copy_small((uint8_t *)o, d, n);
        o += n;
        memset(o, '0', zeros);
        o += zeros;
        memcpy(o, ".0", 2); /* integral-looking: keep it a float */
        o += 2;
    } else {
        size_t ip = (size_t)x + 1;
        mw__copy_small((uint8_t *)o, d, ip);
        o += ip;
        *o++ = '.';
        mw__copy_small((uint8_t *)o, d + ip, n - ip);
        o += n - ip;
    }
    return (size_t)(o - out);
}

/* Finds m < 10^15 and k in -22..22 with m * 10^-k reading back exactly as
 * v > 0 (see the top of the file). */
static bool short_decimal(double v, uint64_t *m, int *k) {
    if (v < 1e15) {
        for (int i = 1; i <= 22; i++) {
            double x = v * mw__pow10[i];
            if (x >= 1e15) return false;
            double r = round_int(x);
            /* a form that reads back has |x - m| < 0.22 (both roundings are
             * below 1.2e-16 * 10^15), so m is r; skip the division if r is
             * too far from x to be it */
            if (fabs(x - r) > 0.25) continue;
            if (r / mw__pow10[i] == v) {
                *m = (uint64_t)r;
                *k = i;
                return true;
            }
        }
        return false;
    }
    for (int i = 1; i <= 22; i++) {
        double q = v / mw__pow10[i];
        if (q >= 1e15) continue;
        double r = round_int(q);
        if (r < 1e15 && r * mw__pow10[i] == v) {
            *m = (uint64_t)r;
            *k = -i;
            return true;
        }
    }
    return false;
}

/* The exact fast path; 0 if v is not one of its cases. */
static size_t fmt_fast(char *buf, double v) {
    bool neg = signbit(v);
    double a = neg ? -v : v;
    char d[20];
    uint64_t m;
    int k = 0, prec = 15;
    if (a == 0) return style_g(buf, neg, "0", 1, 0, 15);
    if (a < 9007199254740992.0 && a == (double)(uint64_t)a) {
        m = (uint64_t)a;
        prec = 16; /* 16 digits only happen here, and then %.16g is exact */
    } else if (!short_decimal(a, &m, &k)) {
        return 0;
    }
    size_t n = mw__fmt_u64(d, m);
    int x = (int)n - 1 - k;
    while (d[n - 1] == '0') n--;
    if (n <= 15) prec = 15;
    return style_g(buf, neg, d, n, x, prec);
}

size_t mw__fmt_f64(char buf[MW__F64_TEXT], double v) {
    size_t fast = fmt_fast(buf, v);
    if (fast) return fast;
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(buf, MW__F64_TEXT, "%.*g", prec, v);
        if (same_bits(strtod(buf, NULL), v)) break;
    }
    if (!strpbrk(buf, ".en")) {
        memcpy(buf + n, ".0", 3);
        n += 2;
    }
    return (size_t)n;
}

/* ---- parsing ------------------------------------------------------------- */

/* strtod needs a NUL-terminated copy: the input is borrowed and may end right
 * at the last digit. The grammar was checked, so strtod sees only a JSON
 * number (no hex, inf or nan forms). */
static double slow_parse(const uint8_t *s, size_t len) {
    char buf[MW__NUM_MAX + 1];
    memcpy(buf, s, len);
    buf[len] = '\0';
    return strtod(buf, NULL);
}

double mw__parse_f64(const uint8_t *s, size_t len) {
    const uint8_t *p = s, *end = s + len;
    bool neg = *p == '-';
    uint64_t m = 0;
    int digits = 0, e = 0; /* significant digits taken; decimal exponent of m */
    p += neg;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        if (digits == 19) return slow_parse(s, len);
        m = m * 10 + (unsigned)(*p - '0');
        digits += m != 0;
    }
    if (p < end && *p == '.') {
        for (p++; p < end && *p >= '0' && *p <= '9'; p++) {
            if (digits == 19) return slow_parse(s, len);
            m = m * 10 + (unsigned)(*p - '0');
            digits += m != 0;
            e--;
        }
    }
    if (p < end) { /* 'e' or 'E' */
        bool eneg = *++p == '-';
        int x = 0;
        p += *p == '-' || *p == '+';
        for (; p < end; p++) {
            if (x > 100000) return slow_parse(s, len);
            x = x * 10 + (*p - '0');
        }
        e += eneg ? -x : x;
    }
    if (m > ((uint64_t)1 << 53) || e < -22 || e > 22) return slow_parse(s, len);
    double v = (double)m;
    v = e < 0 ? v / mw__pow10[-e] : v * mw__pow10[e];
    return neg ? -v : v;
}
