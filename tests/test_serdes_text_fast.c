/* test_serdes_text_fast.c - the fast paths of the "text" serdes against
 * their references: F64 text against the %.15g/%.16g/%.17g rule done with
 * snprintf/strtod over many random bit patterns, F64 parsing against strtod,
 * integers at every boundary against 128-bit arithmetic, the single-pass
 * reader against the general decoder on the same (mutated) inputs, hex in
 * bulk on a 4 KiB BYTES field, and mw__utf8_valid against a plain decoder of
 * code points, exhaustively for short sequences. */
#include "mw_test.h"
#include "test_proto.h"
#include "serdes_impl.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOB_FIELDS(F) \
    F(U64, id)         \
    F(BYTES, data, 4096) \
    F(CHARS, note, 40)
MW_MESSAGE(blob, 1, BLOB_FIELDS)
#define BLOB_MSGS(M) M(blob)
MW_PROTOCOL(blobproto, BLOB_MSGS)

/* BYTES of lengths around the 16-byte vector steps of the hex code. */
#define HEXES_FIELDS(F) \
    F(BYTES, b1, 1) F(BYTES, b15, 15) F(BYTES, b16, 16) F(BYTES, b17, 17) F(BYTES, b33, 33) \
    F(BYTES, b37, 37)
MW_MESSAGE(hexes, 1, HEXES_FIELDS)
#define HEXES_MSGS(M) M(hexes)
MW_PROTOCOL(hexproto, HEXES_MSGS)

static mw_serdes_t sd;

static int setup(void **state) {
    (void)state;
    return mw_serdes_init(&sd, "text", 0);
}

static int teardown(void **state) {
    (void)state;
    mw_serdes_fini(&sd);
    return 0;
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static uint64_t bits_of(double d) {
    uint64_t b;
    memcpy(&b, &d, 8);
    return b;
}

static double of_bits(uint64_t b) {
    double d;
    memcpy(&d, &b, 8);
    return d;
}

/* in[0..n), placed against a guard page every 8th call (mmap is slow and
 * the inputs here are mostly well-formed; the mutation test uses it always). */
static unsigned guard_every = 8;

static ssize_t decode_at(const uint8_t *in, size_t n, const mw_protocol_t *p,
                         const mw_schema_t **s, void *out, size_t cap) {
    static unsigned calls;
    if (++calls % guard_every) return mw_serdes_decode(&sd, in, n, p, s, out, cap);
    mw_guard_t g;
    uint8_t *gin = mw_guard_copy(&g, in, n);
    ssize_t r = mw_serdes_decode(&sd, gin, n, p, s, out, cap);
    mw_guard_free(&g);
    return r;
}

/* Decodes in[0..n) twice: as given (the single-pass reader may take it) and
 * with a space after the opening brace (only the general decoder can). Both
 * must agree on the result and on the struct. */
static ssize_t decode_both(const void *in, size_t n, const mw_protocol_t *p, void *out,
                           size_t cap) {
    static uint8_t spaced[16384], back[1024];
    assert_true(cap <= sizeof back);
    const mw_schema_t *s1 = NULL, *s2 = NULL;
    memset(out, 0x5a, cap);
    ssize_t r1 = decode_at(in, n, p, &s1, out, cap);
    if (n == 0 || ((const uint8_t *)in)[0] != '{' || n + 1 > sizeof spaced) return r1;
    spaced[0] = '{';
    spaced[1] = ' ';
    memcpy(spaced + 2, (const uint8_t *)in + 1, n - 1);
    memset(back, 0xa5, cap);
    ssize_t r2 = decode_at(spaced, n + 1, p, &s2, back, cap);
    if ((r1 < 0 || r2 < 0) && r1 != r2)
        fail_msg("fast and general decoders differ on \"%.*s\": %s vs %s", (int)(n > 200 ? 200 : n),
                 (const char *)in, mw_errname((int)r1), mw_errname((int)r2));
    if (r1 >= 0) {
        assert_int_equal(r1, n);
        assert_int_equal(r2, n + 1);
        assert_ptr_equal(s1, s2);
        assert_memory_equal(out, back, s1->size);
    }
    return r1;
}

/* ---- F64 text ------------------------------------------------------------- */

/* The documented rule, done the slow way. */
static void ref_f64_text(double v, char *buf) {
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(buf, 40, "%.*g", prec, v);
        if (bits_of(strtod(buf, NULL)) == bits_of(v)) break;
    }
    if (!strpbrk(buf, ".en")) memcpy(buf + n, ".0", 3);
}

static all_kinds_t plain_msg(void) {
    all_kinds_t m;
    memset(&m, 0, sizeof m);
    memcpy(m.sym, "AB", 2);
    return m;
}

/* Encodes v, checks its text against the rule, decodes it back both ways. */
static void check_f64(double v) {
    all_kinds_t m = plain_msg();
    m.f64 = v;
    char buf[512], want[48];
    ssize_t n = all_kinds_encode(&sd, &m, (uint8_t *)buf, sizeof buf - 1);
    if (!isfinite(v)) {
        assert_int_equal(n, MW_ERANGE);
        return;
    }
    assert_true(n > 0);
    buf[n] = '\0';
    const char *t = strstr(buf, "\"f64\":") + 6;
    size_t tn = (size_t)(strchr(t, ',') - t);
    ref_f64_text(v, want);
    if (tn != strlen(want) || memcmp(t, want, tn) != 0)
        fail_msg("f64 %a (bits %016llx): wrote %.*s, the rule gives %s", v,
                 (unsigned long long)bits_of(v), (int)tn, t, want);
    test_msg_t out;
    assert_int_equal(decode_both(buf, (size_t)n, &test_protocol, &out, sizeof out), n);
    assert_int_equal(bits_of(out.all_kinds.f64), bits_of(v));
}

static void test_text_f64_text_follows_the_rule_for_random_bits(void **state) {
    (void)state;
    uint64_t rng = 0x243F6A8885A308D3ull;
    for (int i = 0; i < 30000; i++) check_f64(of_bits(rng_next(&rng)));
    /* subnormals and the smallest normals */
    for (int i = 0; i < 3000; i++) check_f64(of_bits(rng_next(&rng) >> (12 + i % 40)));
    for (int i = 0; i < 1000; i++) check_f64(of_bits((uint64_t)1 << 52 | (rng_next(&rng) & 0xffff)));
    /* non-finite values are refused, as before */
    check_f64(INFINITY);
    check_f64(-INFINITY);
    check_f64(NAN);
    check_f64(of_bits(0xfff8000000000123ull));
}

static void test_text_f64_text_follows_the_rule_for_short_decimals(void **state) {
    (void)state;
    uint64_t rng = 0x13198A2E03707344ull;
    char t[64];
    for (int i = 0; i < 30000; i++) {
        uint64_t r = rng_next(&rng);
        int digits = 1 + (int)(r % 17), k = (int)((r >> 8) % 61) - 30;
        uint64_t m = rng_next(&rng) % (uint64_t)pow(10, digits);
        snprintf(t, sizeof t, "%s%llue%d", r >> 63 ? "-" : "", (unsigned long long)m, k);
        double v = strtod(t, NULL);
        check_f64(v);
        check_f64(nextafter(v, INFINITY)); /* one ulp away needs 16 or 17 digits */
        check_f64(nextafter(v, -INFINITY));
    }
    for (int i = 0; i < 20000; i++) { /* integers around 2^53 and below */
        uint64_t r = rng_next(&rng);
        check_f64((double)(r >> (10 + r % 50)));
        check_f64(-(double)(r >> 10));
    }
    static const double edges[] = {
        0.0, -0.0, 1e15, 1e15 - 1, 1e15 + 1, 1e16, 1e16 + 2, 9007199254740991.0,
        9007199254740992.0, 9007199254740994.0, 999999999999999.0, 9999999999999998.0,
        1e21, 1e22, 1e23, 1e-4, 1e-5, 0.0001234, 0.00001234, 123456789012345.6,
        1234567890123456.7, 5e-324, DBL_MIN, DBL_MAX, 0.1, 0.2, 0.3, 123.25, 4.35, 2.5e15,
        1.7976931348623157e308, 2.2250738585072009e-308, 1e100, 1e-100, 0.5, 1.0 / 3.0,
    };
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        check_f64(edges[i]);
        check_f64(-edges[i]);
    }
    for (int e = -330; e <= 310; e++) {
        check_f64(pow(10, e));
        check_f64(ldexp(1, e));
        check_f64(ldexp(1.5, e));
    }
}

/* ---- F64 parsing ---------------------------------------------------------- */

static void check_parse(const char *num) {
    char buf[1024];
    snprintf(buf, sizeof buf,
             "{\"type\":\"all_kinds\",\"i8\":0,\"i16\":0,\"i32\":0,\"i64\":0,\"u8\":0,\"u16\":0,"
             "\"u32\":0,\"u64\":0,\"f64\":%s,\"flag\":false,\"sym\":\"\",\"raw\":\"00000000\","
             "\"side\":0}",
             num);
    double want = strtod(num, NULL);
    test_msg_t out;
    ssize_t r = decode_both(buf, strlen(buf), &test_protocol, &out, sizeof out);
    if (!isfinite(want)) {
        assert_int_equal(r, MW_ERANGE);
        return;
    }
    if (r < 0) fail_msg("%s: %s", num, mw_serdes_last_error(&sd));
    if (bits_of(out.all_kinds.f64) != bits_of(want))
        fail_msg("%s: read %a, strtod gives %a", num, out.all_kinds.f64, want);
}

static void test_text_f64_parse_matches_strtod(void **state) {
    (void)state;
    uint64_t rng = 0xA4093822299F31D0ull;
    char t[128];
    for (int i = 0; i < 20000; i++) {
        double v = of_bits(rng_next(&rng));
        if (!isfinite(v)) continue;
        snprintf(t, sizeof t, "%.*e", (int)(rng_next(&rng) % 21), v);
        check_parse(t);
        snprintf(t, sizeof t, "%.17g", v);
        check_parse(t);
    }
    for (int i = 0; i < 20000; i++) { /* mantissas around 2^53 and 19-20 digits */
        uint64_t r = rng_next(&rng);
        int k = (int)(r % 61) - 30;
        snprintf(t, sizeof t, "%llue%d", (unsigned long long)(rng_next(&rng) >> (r >> 58)), k);
        check_parse(t);
        snprintf(t, sizeof t, "-0.%06llu%llu", (unsigned long long)(r % 1000000),
                 (unsigned long long)(rng_next(&rng) >> 20));
        check_parse(t);
    }
    static const char *const forms[] = {
        "0", "-0", "0.0", "-0.0", "0e0", "0e-400", "1e22", "1e23", "1e-22", "1e-23",
        "9007199254740992", "9007199254740993", "9007199254740993e-22", "9007199254740991e22",
        "18446744073709551615", "18446744073709551616", "1234567890123456789",
        "12345678901234567890", "0.1234567890123456789", "123456789012345678901234567890e-10",
        "2.2250738585072011e-308", "4.9406564584124654e-324", "2.4703282292062327e-324",
        "2.4703282292062328e-324", "1.7976931348623157e308", "1.7976931348623159e308", "1e309",
        "-1e309", "0.000001", "1E+2", "1e+02", "1.5E-3", "100000000000000000000000",
    };
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) check_parse(forms[i]);
}

/* ---- integers --------------------------------------------------------------- */

static const char *const int_fields[] = {"i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "side"};
static const __int128 int_lo[] = {INT8_MIN, INT16_MIN, INT32_MIN, INT64_MIN, 0, 0, 0, 0, 0};
static const __int128 int_hi[] = {INT8_MAX, INT16_MAX, INT32_MAX, INT64_MAX, UINT8_MAX,
                                  UINT16_MAX, UINT32_MAX, UINT64_MAX, 2};

static void i128_text(__int128 v, char *out) {
    char tmp[48];
    int n = 0;
    bool neg = v < 0;
    unsigned __int128 u = neg ? -(unsigned __int128)v : (unsigned __int128)v;
    do tmp[n++] = (char)('0' + (int)(u % 10)); while ((u /= 10) != 0);
    if (neg) *out++ = '-';
    while (n) *out++ = tmp[--n];
    *out = '\0';
}

/* The all_kinds message with field f given the value text val. */
static size_t with_field(char *buf, size_t cap, const char *f, const char *val) {
    static const char *const names[] = {"i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64",
                                        "f64", "flag", "sym", "raw", "side"};
    static const char *const vals[] = {"1", "2", "3", "4", "5", "6", "7", "8", "1.5", "true",
                                       "\"ab\"", "\"00ff10aa\"", "2"};
    size_t n = (size_t)snprintf(buf, cap, "{\"type\":\"all_kinds\"");
    for (size_t i = 0; i < 13; i++)
        n += (size_t)snprintf(buf + n, cap - n, ",\"%s\":%s", names[i],
                              strcmp(names[i], f) == 0 ? val : vals[i]);
    n += (size_t)snprintf(buf + n, cap - n, "}");
    return n;
}

static int64_t field_value(const all_kinds_t *m, int f) {
    switch (f) {
    case 0: return m->i8;
    case 1: return m->i16;
    case 2: return m->i32;
    case 3: return m->i64;
    case 4: return m->u8;
    case 5: return m->u16;
    case 6: return m->u32;
    case 7: return (int64_t)m->u64;
    default: return m->side;
    }
}

static void test_text_integers_at_every_boundary(void **state) {
    (void)state;
    char val[64], buf[1024];
    for (int f = 0; f < 9; f++) {
        const __int128 pts[] = {int_lo[f], int_hi[f], 0, -1, 1, 9, 10, 99, 100, 127, 128, 255, 256,
                                32767, 32768, 65535, 65536, INT32_MAX, (__int128)INT32_MAX + 1,
                                UINT32_MAX, (__int128)UINT32_MAX + 1, INT64_MAX, (__int128)INT64_MAX + 1,
                                UINT64_MAX, (__int128)UINT64_MAX + 1, (__int128)UINT64_MAX * 10,
                                INT64_MIN, (__int128)INT64_MIN - 1, -(__int128)UINT64_MAX};
        for (size_t i = 0; i < sizeof pts / sizeof pts[0]; i++) {
            for (int d = -1; d <= 1; d++) {
                __int128 v = pts[i] + d;
                i128_text(v, val);
                test_msg_t out;
                ssize_t r = decode_both(buf, with_field(buf, sizeof buf, int_fields[f], val),
                                        &test_protocol, &out, sizeof out);
                bool in = v >= int_lo[f] && v <= int_hi[f];
                if (!in) {
                    if (r != MW_ERANGE) fail_msg("%s = %s: got %s", int_fields[f], val, mw_errname((int)r));
                    continue;
                }
                if (r < 0) fail_msg("%s = %s: %s", int_fields[f], val, mw_serdes_last_error(&sd));
                assert_true(field_value(&out.all_kinds, f) == (int64_t)v);
            }
        }
        static const struct { const char *v; int code; } bad[] = {
            {"1.0", MW_ETYPE}, {"1e3", MW_ETYPE}, {"01", MW_EPROTO}, {"-", MW_EPROTO},
            {"--1", MW_EPROTO}, {"+1", MW_EPROTO}, {"1 ", 0}, {"-0", 0}, {"99999999999999999999999", MW_ERANGE},
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            test_msg_t out;
            ssize_t r = decode_both(buf, with_field(buf, sizeof buf, int_fields[f], bad[i].v),
                                    &test_protocol, &out, sizeof out);
            if (bad[i].code ? r != bad[i].code : r < 0)
                fail_msg("%s = %s: got %s", int_fields[f], bad[i].v, mw_errname((int)r));
        }
    }
}

/* ---- the single-pass reader against the general decoder ---------------------- */

static void random_msg(all_kinds_t *m, uint64_t *rng) {
    static const char *const syms[] = {"", "A", "AAPL", "ABCDEFGH", "\xc3\xa9t\xc3\xa9", "a\"b\\c",
                                       "\xf0\x9f\x98\x80", "\x01\x1f", "tab\there"};
    uint64_t r = rng_next(rng);
    memset(m, 0, sizeof *m);
    m->i8 = (int8_t)r, m->i16 = (int16_t)(r >> 8), m->i32 = (int32_t)(r >> 16);
    m->i64 = (int64_t)rng_next(rng) >> (r % 64);
    m->u8 = (uint8_t)(r >> 24), m->u16 = (uint16_t)(r >> 32), m->u32 = (uint32_t)(r >> 30);
    m->u64 = rng_next(rng) >> (r >> 58);
    do m->f64 = of_bits(rng_next(rng) >> (r % 3)); while (!isfinite(m->f64));
    if (r & 1) m->f64 = (double)(int64_t)(r >> 20) / 100.0;
    m->flag = (r >> 40) & 1;
    const char *sym = syms[(r >> 41) % 9];
    memcpy(m->sym, sym, strnlen(sym, sizeof m->sym));
    uint32_t raw = (uint32_t)rng_next(rng);
    memcpy(m->raw, &raw, 4);
    m->side = (uint8_t)((r >> 50) % 3);
}

static void test_text_fast_and_general_decoders_agree(void **state) {
    (void)state;
    static const char special[] = "\"\\{}[],:-.0123456789eE+ tfnuaAfF\x01\x7f\x80\xc3\xa9\xff";
    uint64_t rng = 0xB7E151628AED2A6Bull;
    int ok = 0, bad = 0;
    guard_every = 1;
    for (int it = 0; it < 30000; it++) {
        all_kinds_t m;
        random_msg(&m, &rng);
        uint8_t b[600];
        ssize_t n = all_kinds_encode(&sd, &m, b, sizeof b - 8);
        assert_true(n > 0);
        test_msg_t out;
        if (it % 3 == 0) { /* unchanged: must decode to m */
            assert_int_equal(decode_both(b, (size_t)n, &test_protocol, &out, sizeof out), n);
            assert_memory_equal(&out.all_kinds, &m, sizeof m);
            continue;
        }
        size_t len = (size_t)n;
        for (int k = (int)(rng_next(&rng) % 3); k >= 0; k--) {
            uint64_t r = rng_next(&rng);
            size_t at = 1 + (size_t)(r >> 8) % (len - 1);
            uint8_t c = (uint8_t)special[(r >> 32) % (sizeof special - 1)];
            switch (r % 4) {
            case 0: b[at] = c; break;
            case 1: memmove(b + at + 1, b + at, len - at), b[at] = c, len++; break;
            case 2: memmove(b + at, b + at + 1, len - at - 1), len--; break;
            default: b[at] ^= (uint8_t)(1u << ((r >> 40) % 8)); break;
            }
        }
        ssize_t r = decode_both(b, len, &test_protocol, &out, sizeof out);
        if (r >= 0) ok++;
        else bad++;
    }
    guard_every = 8;
    assert_true(ok > 1000 && bad > 1000);
}

/* ---- 4 KiB of hex ----------------------------------------------------------- */

static void test_text_bytes_field_of_4k_round_trips_and_rejects_bad_hex(void **state) {
    (void)state;
    static blob_t m;
    static uint8_t buf[9000], upper[9000];
    static uint8_t back[sizeof(blob_t)];
    uint64_t rng = 0x3C6EF372FE94F82Bull;
    for (size_t i = 0; i < sizeof m.data; i++) m.data[i] = (uint8_t)rng_next(&rng);
    m.id = 7;
    memcpy(m.note, "\xe2\x82\xac 4 KiB", 9);
    ssize_t n = blob_encode(&sd, &m, buf, sizeof buf);
    assert_true(n > 8192);
    const mw_schema_t *s = NULL;
    assert_int_equal(mw_serdes_decode(&sd, buf, (size_t)n, &blobproto_protocol, &s, back, sizeof back), n);
    assert_memory_equal(back, &m, sizeof m);
    /* either case is accepted */
    memcpy(upper, buf, (size_t)n);
    const uint8_t *h = (const uint8_t *)strstr((const char *)upper, "\"data\":\"") + 8;
    for (uint8_t *q = (uint8_t *)h; *q != '"'; q++)
        if (*q >= 'a' && *q <= 'f' && (q - h) % 3) *q = (uint8_t)(*q - 'a' + 'A');
    assert_int_equal(mw_serdes_decode(&sd, upper, (size_t)n, &blobproto_protocol, &s, back, sizeof back), n);
    assert_memory_equal(back, &m, sizeof m);
    /* a non-hex digit anywhere, and a digit too few or too many */
    size_t off = (size_t)(h - upper);
    for (size_t at = 0; at < 8192; at += 97) {
        uint8_t keep = upper[off + at];
        upper[off + at] = (uint8_t)"gG /x:"[at % 6];
        assert_int_equal(mw_serdes_decode(&sd, upper, (size_t)n, &blobproto_protocol, &s, back, sizeof back),
                         MW_ETYPE);
        upper[off + at] = keep;
    }
    memmove(upper + off + 1, upper + off + 2, (size_t)n - off - 2);
    assert_int_equal(mw_serdes_decode(&sd, upper, (size_t)n - 1, &blobproto_protocol, &s, back, sizeof back),
                     MW_ETYPE);
}

static void test_text_hex_of_every_length_and_a_bad_digit_at_every_position(void **state) {
    (void)state;
    const mw_schema_t *s = hexes_schema();
    uint64_t rng = 0x9B05688C2B3E6C1Full;
    static const struct { uint8_t c; int code; } bad[] = {
        {'g', MW_ETYPE}, {'G', MW_ETYPE}, {'/', MW_ETYPE}, {':', MW_ETYPE}, {'@', MW_ETYPE},
        {'`', MW_ETYPE}, {' ', MW_ETYPE}, {0x7f, MW_ETYPE}, {'~', MW_ETYPE}, {0x80, MW_EUTF8},
        {0xb0, MW_EUTF8}, {0xe1, MW_EUTF8}, {0xff, MW_EUTF8}, {0x01, MW_EPROTO},
    };
    for (int it = 0; it < 200; it++) {
        hexes_t m, out;
        for (size_t i = 0; i < sizeof m; i++) ((uint8_t *)&m)[i] = (uint8_t)rng_next(&rng);
        char buf[600];
        ssize_t n = hexes_encode(&sd, &m, (uint8_t *)buf, sizeof buf - 1);
        assert_true(n > 0);
        buf[n] = '\0';
        for (unsigned k = 0; k < s->nfields; k++) { /* each field's text against %02x */
            const mw_field_t *f = &s->fields[k];
            char want[100], key[16];
            for (size_t i = 0; i < f->size; i++)
                snprintf(want + 2 * i, 3, "%02x", ((const uint8_t *)&m)[f->offset + i]);
            snprintf(key, sizeof key, "\"%s\":\"", f->name);
            const char *at = strstr(buf, key);
            assert_non_null(at);
            assert_memory_equal(at + strlen(key), want, 2 * f->size);
        }
        assert_int_equal(decode_both(buf, (size_t)n, &hexproto_protocol, &out, sizeof out), n);
        assert_memory_equal(&out, &m, sizeof m);
        /* upper case anywhere in the hex is fine */
        for (unsigned k = 0; k < s->nfields; k++) {
            char key[16];
            snprintf(key, sizeof key, "\"%s\":\"", s->fields[k].name);
            for (char *q = strstr(buf, key) + strlen(key); *q != '"'; q++)
                if (*q >= 'a' && *q <= 'f' && rng_next(&rng) % 2) *q = (char)(*q - 'a' + 'A');
        }
        assert_int_equal(decode_both(buf, (size_t)n, &hexproto_protocol, &out, sizeof out), n);
        assert_memory_equal(&out, &m, sizeof m);
        /* one bad character at a random hex position of a random field */
        const mw_field_t *f = &s->fields[rng_next(&rng) % s->nfields];
        char key[16];
        snprintf(key, sizeof key, "\"%s\":\"", f->name);
        char *h = strstr(buf, key) + strlen(key);
        size_t at = (size_t)(rng_next(&rng) % (2 * f->size));
        size_t b = (size_t)(rng_next(&rng) % (sizeof bad / sizeof bad[0]));
        char keep = h[at];
        h[at] = (char)bad[b].c;
        assert_int_equal(decode_both(buf, (size_t)n, &hexproto_protocol, &out, sizeof out), bad[b].code);
        h[at] = keep;
    }
    /* every position of the longest field, every bad character */
    hexes_t m, out;
    memset(&m, 0xa5, sizeof m);
    char buf[600];
    ssize_t n = hexes_encode(&sd, &m, (uint8_t *)buf, sizeof buf - 1);
    buf[n] = '\0';
    char *h = strstr(buf, "\"b37\":\"") + 7;
    for (size_t at = 0; at < 74; at++)
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
            char keep = h[at];
            h[at] = (char)bad[b].c;
            assert_int_equal(decode_both(buf, (size_t)n, &hexproto_protocol, &out, sizeof out),
                             bad[b].code);
            h[at] = keep;
        }
}

/* ---- UTF-8 ------------------------------------------------------------------ */

/* RFC 3629 by decoding code points: the plain way. */
static bool ref_utf8_valid(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n;) {
        uint8_t c = p[i];
        size_t need;
        uint32_t cp, min;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xe0) == 0xc0) need = 1, cp = c & 0x1fu, min = 0x80;
        else if ((c & 0xf0) == 0xe0) need = 2, cp = c & 0x0fu, min = 0x800;
        else if ((c & 0xf8) == 0xf0) need = 3, cp = c & 0x07u, min = 0x10000;
        else return false;
        if (n - i - 1 < need) return false;
        for (size_t k = 1; k <= need; k++) {
            if ((p[i + k] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (p[i + k] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += need + 1;
    }
    return true;
}

/* seq[0..n) alone, after ASCII of every length 0..9 (the 8-byte path meets
 * it at every alignment), before ASCII, and every truncation of it, each
 * placed against a guard page. */
static void check_utf8(const uint8_t *seq, size_t n) {
    uint8_t buf[32];
    for (size_t pre = 0; pre <= 9; pre += (pre < 2 || pre >= 7) ? 1 : 3) {
        for (size_t post = 0; post <= 8; post += 8) {
            memset(buf, 'a', sizeof buf);
            memcpy(buf + pre, seq, n);
            size_t len = pre + n + post;
            mw_guard_t g;
            const uint8_t *in = mw_guard_copy(&g, buf, len);
            bool got = mw__utf8_valid(in, len), want = ref_utf8_valid(buf, len);
            mw_guard_free(&g);
            if (got != want)
                fail_msg("UTF-8 %02x %02x %02x %02x (n %zu, at %zu, %zu after): %d, want %d",
                         seq[0], n > 1 ? seq[1] : 0, n > 2 ? seq[2] : 0, n > 3 ? seq[3] : 0, n, pre,
                         post, got, want);
        }
    }
}

static void test_utf8_valid_matches_code_point_decoding(void **state) {
    (void)state;
    static const char *const named[][2] = {
        {"\xc0\x80", "overlong NUL"},       {"\xc1\xbf", "overlong 2"},
        {"\xe0\x80\x80", "overlong 3"},     {"\xe0\x9f\xbf", "overlong 3 max"},
        {"\xf0\x80\x80\x80", "overlong 4"}, {"\xf0\x8f\xbf\xbf", "overlong 4 max"},
        {"\xed\xa0\x80", "surrogate D800"}, {"\xed\xbf\xbf", "surrogate DFFF"},
        {"\xf4\x90\x80\x80", "U+110000"},   {"\xf5\x80\x80\x80", "lead F5"},
        {"\xff", "FF"},                     {"\x80", "lone continuation"},
        {"\xe2\x82", "truncated 3"},        {"\xf0\x9f\x98", "truncated 4"},
    };
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) {
        const uint8_t *s = (const uint8_t *)named[i][0];
        size_t n = strlen(named[i][0]);
        if (mw__utf8_valid(s, n)) fail_msg("%s accepted", named[i][1]);
        check_utf8(s, n);
    }
    static const char *const good[] = {"\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf",
                                       "\xee\x80\x80", "\xef\xbf\xbf", "\xf0\x90\x80\x80",
                                       "\xf4\x8f\xbf\xbf"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_true(mw__utf8_valid((const uint8_t *)good[i], strlen(good[i])));
        check_utf8((const uint8_t *)good[i], strlen(good[i]));
    }
    uint8_t s[4];
    for (unsigned a = 0x80; a < 0x100; a++) /* every 1- and 2-byte sequence */
        for (unsigned b = 0; b < 0x100; b++) {
            s[0] = (uint8_t)a, s[1] = (uint8_t)b;
            assert_int_equal(mw__utf8_valid(s, 2), ref_utf8_valid(s, 2));
            if (b % 37 == 0) check_utf8(s, 2);
        }
    for (unsigned a = 0xe0; a < 0x100; a++) /* every 3-byte sequence with a 3- or 4-byte lead */
        for (unsigned b = 0; b < 0x100; b++)
            for (unsigned c = 0; c < 0x100; c++) {
                s[0] = (uint8_t)a, s[1] = (uint8_t)b, s[2] = (uint8_t)c;
                assert_int_equal(mw__utf8_valid(s, 3), ref_utf8_valid(s, 3));
            }
    static const uint8_t tails[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff};
    for (unsigned a = 0xf0; a < 0x100; a++) /* 4-byte leads: every second byte */
        for (unsigned b = 0; b < 0x100; b++)
            for (size_t c = 0; c < sizeof tails; c++)
                for (size_t d = 0; d < sizeof tails; d++) {
                    s[0] = (uint8_t)a, s[1] = (uint8_t)b, s[2] = tails[c], s[3] = tails[d];
                    assert_int_equal(mw__utf8_valid(s, 4), ref_utf8_valid(s, 4));
                    if (c == 4 && d == 8 && b % 8 == 0) check_utf8(s, 4);
                }
    /* long mixed strings */
    uint64_t rng = 0x510E527FADE682D1ull;
    uint8_t buf[64];
    for (int it = 0; it < 50000; it++) {
        size_t n = rng_next(&rng) % sizeof buf;
        for (size_t i = 0; i < n; i++) {
            uint64_t r = rng_next(&rng);
            buf[i] = r % 4 ? (uint8_t)(r >> 8) % 0x80 : (uint8_t)(0x80 | (r >> 16));
        }
        if (n >= 4 && it % 2) memcpy(buf + rng_next(&rng) % (n - 3), "\xf0\x9f\x98\x80", 4);
        mw_guard_t g;
        const uint8_t *in = mw_guard_copy(&g, buf, n);
        assert_int_equal(mw__utf8_valid(in, n), ref_utf8_valid(buf, n));
        mw_guard_free(&g);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_f64_text_follows_the_rule_for_random_bits),
        cmocka_unit_test(test_text_f64_text_follows_the_rule_for_short_decimals),
        cmocka_unit_test(test_text_f64_parse_matches_strtod),
        cmocka_unit_test(test_text_integers_at_every_boundary),
        cmocka_unit_test(test_text_fast_and_general_decoders_agree),
        cmocka_unit_test(test_text_bytes_field_of_4k_round_trips_and_rejects_bad_hex),
        cmocka_unit_test(test_text_hex_of_every_length_and_a_bad_digit_at_every_position),
        cmocka_unit_test(test_utf8_valid_matches_code_point_decoding),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
