/* test_serdes_text.c - the "text" (JSON) serdes: round trips at the edges of
 * every field kind, the exact wire text, every decoder error with its code and
 * text, every truncation against a guard page, schemas wider than the
 * duplicate bitmap, and a bounded deterministic fuzz loop. */
#include "mw_test.h"
#include "test_proto.h"
#include "serdes_impl.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* A schema with 300 fields: more than the decoder's 256-field bitmap. */
#define D10(F, p) \
    F(U8, p##0) F(U8, p##1) F(U8, p##2) F(U8, p##3) F(U8, p##4) \
    F(U8, p##5) F(U8, p##6) F(U8, p##7) F(U8, p##8) F(U8, p##9)
#define WIDE_FIELDS(F)                                                                      \
    D10(F, f00) D10(F, f01) D10(F, f02) D10(F, f03) D10(F, f04) D10(F, f05) D10(F, f06)    \
    D10(F, f07) D10(F, f08) D10(F, f09) D10(F, f10) D10(F, f11) D10(F, f12) D10(F, f13)    \
    D10(F, f14) D10(F, f15) D10(F, f16) D10(F, f17) D10(F, f18) D10(F, f19) D10(F, f20)    \
    D10(F, f21) D10(F, f22) D10(F, f23) D10(F, f24) D10(F, f25) D10(F, f26) D10(F, f27)    \
    D10(F, f28) D10(F, f29)
MW_MESSAGE(wide, 1, WIDE_FIELDS)
#define WIDE_MSGS(M) M(wide)
MW_PROTOCOL(wideproto, WIDE_MSGS)

static const char GOLDEN[] =
    "{\"type\":\"all_kinds\",\"i8\":-1,\"i16\":300,\"i32\":-70000,\"i64\":-9223372036854775808,"
    "\"u8\":255,\"u16\":65535,\"u32\":4294967295,\"u64\":18446744073709551615,\"f64\":0.1,"
    "\"flag\":true,\"sym\":\"AB\\\"c\",\"raw\":\"deadbeef\",\"side\":2}";

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

static all_kinds_t golden_msg(void) {
    all_kinds_t m;
    memset(&m, 0, sizeof m);
    m.i8 = -1;
    m.i16 = 300;
    m.i32 = -70000;
    m.i64 = INT64_MIN;
    m.u8 = 255;
    m.u16 = 65535;
    m.u32 = UINT32_MAX;
    m.u64 = UINT64_MAX;
    m.f64 = 0.1;
    m.flag = true;
    memcpy(m.sym, "AB\"c", 4);
    memcpy(m.raw, "\xde\xad\xbe\xef", 4);
    m.side = 2;
    return m;
}

/* Decodes s[0..n) placed against a guard page. */
static ssize_t decode_n(const void *s, size_t n, const mw_protocol_t *p, void *msg, size_t cap,
                        const mw_schema_t **schema) {
    mw_guard_t g;
    uint8_t *in = mw_guard_copy(&g, s, n);
    const mw_schema_t *dummy;
    ssize_t r = mw_serdes_decode(&sd, in, n, p, schema ? schema : &dummy, msg, cap);
    mw_guard_free(&g);
    return r;
}

static ssize_t decode_str(const char *s, test_msg_t *m) {
    return decode_n(s, strlen(s), &test_protocol, m, sizeof *m, NULL);
}

static size_t encode_ak(const all_kinds_t *m, char *out, size_t cap) {
    ssize_t n = all_kinds_encode(&sd, m, (uint8_t *)out, cap - 1);
    assert_true(n > 0);
    out[n] = '\0';
    return (size_t)n;
}

/* Encodes m, decodes it back and checks every byte of the struct. */
static void round_trip(const all_kinds_t *m) {
    char buf[512];
    size_t n = encode_ak(m, buf, sizeof buf);
    assert_null(memchr(buf, '\n', n));
    assert_true(n <= mw__serdes_max_len(&sd, all_kinds_schema()));
    test_msg_t out;
    const mw_schema_t *s = NULL;
    assert_int_equal(decode_n(buf, n, &test_protocol, &out, sizeof out, &s), (ssize_t)n);
    assert_int_equal(s->tag, all_kinds_TAG);
    assert_memory_equal(&out.all_kinds, m, sizeof *m);
}

/* The golden message as text, with member `field` given the value text
 * `val` (NULL: member left out). A field not in the message is appended. */
static const char *mk(const char *field, const char *val) {
    static const char *const names[] = {"type", "i8",  "i16", "i32", "i64",  "u8",  "u16",
                                        "u32",  "u64", "f64", "flag", "sym", "raw", "side"};
    static const char *const vals[] = {"\"all_kinds\"", "1", "2", "3", "4", "5", "6", "7", "8",
                                       "1.5", "true", "\"ab\"", "\"00ff10aa\"", "2"};
    static char buf[1024];
    size_t n = 0;
    bool found = false;
    buf[n++] = '{';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        bool hit = strcmp(names[i], field) == 0;
        found |= hit;
        if (hit && !val) continue;
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s\"%s\":%s", n > 1 ? "," : "", names[i],
                              hit ? val : vals[i]);
    }
    if (!found) n += (size_t)snprintf(buf + n, sizeof buf - n, ",\"%s\":%s", field, val);
    snprintf(buf + n, sizeof buf - n, "}");
    return buf;
}

/* ---- encoder ------------------------------------------------------------ */

static void test_text_encode_writes_golden_text(void **state) {
    (void)state;
    all_kinds_t m = golden_msg();
    char buf[512];
    size_t n = encode_ak(&m, buf, sizeof buf);
    assert_string_equal(buf, GOLDEN);
    assert_int_equal(n, strlen(GOLDEN));
}

static void test_text_encode_too_big_for_every_short_cap(void **state) {
    (void)state;
    all_kinds_t m = golden_msg();
    size_t len = strlen(GOLDEN);
    uint8_t zeros[512] = {0};
    for (size_t cap = 0; cap < len; cap++) {
        mw_guard_t g;
        uint8_t *out = mw_guard_copy(&g, zeros, cap);
        assert_int_equal(all_kinds_encode(&sd, &m, out, cap), MW_ETOOBIG);
        mw_guard_free(&g);
    }
    assert_non_null(strstr(mw_serdes_last_error(&sd), "all_kinds"));
    mw_guard_t g;
    uint8_t *out = mw_guard_copy(&g, zeros, len);
    assert_int_equal(all_kinds_encode(&sd, &m, out, len), (ssize_t)len);
    assert_memory_equal(out, GOLDEN, len);
    mw_guard_free(&g);
}

static void test_text_encode_rejects_non_finite_f64(void **state) {
    (void)state;
    const double bad[] = {NAN, -NAN, INFINITY, -INFINITY};
    char buf[512];
    for (size_t i = 0; i < 4; i++) {
        all_kinds_t m = golden_msg();
        m.f64 = bad[i];
        assert_int_equal(all_kinds_encode(&sd, &m, (uint8_t *)buf, sizeof buf), MW_ERANGE);
        assert_non_null(strstr(mw_serdes_last_error(&sd), "\"f64\""));
    }
}

static void test_text_encode_rejects_enum_and_bool_out_of_range(void **state) {
    (void)state;
    char buf[512];
    all_kinds_t m = golden_msg();
    m.side = 3;
    assert_int_equal(all_kinds_encode(&sd, &m, (uint8_t *)buf, sizeof buf), MW_ERANGE);
    assert_non_null(strstr(mw_serdes_last_error(&sd), "\"side\""));
    m = golden_msg();
    memset(&m.flag, 2, 1);
    assert_int_equal(all_kinds_encode(&sd, &m, (uint8_t *)buf, sizeof buf), MW_ERANGE);
    assert_non_null(strstr(mw_serdes_last_error(&sd), "\"flag\""));
}

static void test_text_encode_rejects_invalid_utf8_chars(void **state) {
    (void)state;
    const char *bad[] = {"\xff", "a\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80"};
    char buf[512];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        all_kinds_t m = golden_msg();
        memset(m.sym, 0, sizeof m.sym);
        memcpy(m.sym, bad[i], strlen(bad[i]));
        assert_int_equal(all_kinds_encode(&sd, &m, (uint8_t *)buf, sizeof buf), MW_EUTF8);
        assert_non_null(strstr(mw_serdes_last_error(&sd), "\"sym\""));
    }
}

static void test_text_encode_escapes_quotes_backslash_and_controls(void **state) {
    (void)state;
    all_kinds_t m = golden_msg();
    memcpy(m.sym, "\"\\\n\x01\x1f\b\f\r", 8);
    char buf[512];
    encode_ak(&m, buf, sizeof buf);
    assert_non_null(strstr(buf, ",\"sym\":\"\\\"\\\\\\n\\u0001\\u001f\\b\\f\\r\","));
    memcpy(m.sym, "\t\x0b\x7f" "abcde", 8);
    encode_ak(&m, buf, sizeof buf);
    assert_non_null(strstr(buf, ",\"sym\":\"\\t\\u000b\x7f" "abcde\","));
    round_trip(&m);
}

static void test_text_encode_stays_within_max_len(void **state) {
    (void)state;
    all_kinds_t m = golden_msg();
    memset(m.sym, 1, sizeof m.sym);
    m.f64 = -2.2250738585072014e-308;
    char buf[1024];
    size_t n = encode_ak(&m, buf, sizeof buf);
    assert_true(n <= mw__serdes_max_len(&sd, all_kinds_schema()));
    assert_non_null(strstr(buf, "\"f64\":-2.2250738585072014e-308,"));
}

/* ---- round trips ---------------------------------------------------------- */

static void test_text_round_trips_integer_edges(void **state) {
    (void)state;
    all_kinds_t m;
    memset(&m, 0, sizeof m);
    round_trip(&m);
    m.i8 = INT8_MIN; m.i16 = INT16_MIN; m.i32 = INT32_MIN; m.i64 = INT64_MIN;
    m.u8 = 0; m.u16 = 0; m.u32 = 0; m.u64 = 0; m.side = 0; m.flag = false;
    round_trip(&m);
    m.i8 = INT8_MAX; m.i16 = INT16_MAX; m.i32 = INT32_MAX; m.i64 = INT64_MAX;
    m.u8 = UINT8_MAX; m.u16 = UINT16_MAX; m.u32 = UINT32_MAX; m.u64 = UINT64_MAX;
    m.side = 2; m.flag = true;
    round_trip(&m);
    m.i8 = -1; m.i16 = -1; m.i32 = -1; m.i64 = -1; m.u64 = (uint64_t)INT64_MAX + 1;
    round_trip(&m);
}

static void f64_text(double v, char *out, size_t cap) {
    all_kinds_t m = golden_msg();
    m.f64 = v;
    char buf[512];
    encode_ak(&m, buf, sizeof buf);
    const char *p = strstr(buf, "\"f64\":") + 6;
    size_t n = (size_t)(strchr(p, ',') - p);
    assert_true(n < cap);
    memcpy(out, p, n);
    out[n] = '\0';
    round_trip(&m);
}

static void test_text_round_trips_f64_bit_exact(void **state) {
    (void)state;
    const double vals[] = {0.0, -0.0, 0.1, 1.0, -1.5, 1.0 / 3.0, 1e308, -1e308, 5e-324,
                           -5e-324, DBL_MIN, 2.225073858507201e-308, 1.5e-310, DBL_MAX,
                           -DBL_MAX, 1e21, 1e22, 123456789012345678.0, 9007199254740993.0,
                           0.30000000000000004, 100.0, 1e-7, 2.5e15, 4.35};
    char t[64];
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        f64_text(vals[i], t, sizeof t);
        assert_non_null(strpbrk(t, ".e"));
    }
}

static void test_text_encode_f64_text_is_short_and_float_typed(void **state) {
    (void)state;
    const struct { double v; const char *text; } cases[] = {
        {1.0, "1.0"},      {-0.0, "-0.0"},    {0.0, "0.0"},   {0.1, "0.1"},
        {100.0, "100.0"},  {1e308, "1e+308"}, {-1.5, "-1.5"}, {1.0 / 3.0, "0.3333333333333333"},
        {0.30000000000000004, "0.30000000000000004"},
    };
    char t[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        f64_text(cases[i].v, t, sizeof t);
        assert_string_equal(t, cases[i].text);
    }
}

static void test_text_round_trips_chars_and_bytes(void **state) {
    (void)state;
    const char *syms[] = {"", "A", "ABCDEFGH", "a\"b\\c", "\n\r\t\b\f\x01\x1f",
                          "\xc3\xa9\xe2\x82\xac", "\xf0\x9f\x98\x80zz", "\xe2\x82\xac\xe2\x82\xac"};
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        all_kinds_t m = golden_msg();
        memset(m.sym, 0, sizeof m.sym);
        memcpy(m.sym, syms[i], strlen(syms[i]));
        round_trip(&m);
    }
    all_kinds_t m = golden_msg();
    char buf[512];
    memset(m.raw, 0, 4);
    encode_ak(&m, buf, sizeof buf);
    assert_non_null(strstr(buf, "\"raw\":\"00000000\""));
    round_trip(&m);
    memset(m.raw, 0xff, 4);
    encode_ak(&m, buf, sizeof buf);
    assert_non_null(strstr(buf, "\"raw\":\"ffffffff\""));
    round_trip(&m);
}

static void test_text_non_ascii_utf8_passes_through_raw(void **state) {
    (void)state;
    all_kinds_t m = golden_msg();
    memset(m.sym, 0, sizeof m.sym);
    memcpy(m.sym, "\xc3\xa9\xf0\x9f\x98\x80", 6);
    char buf[512];
    encode_ak(&m, buf, sizeof buf);
    assert_non_null(strstr(buf, "\"sym\":\"\xc3\xa9\xf0\x9f\x98\x80\""));
}

/* ---- decoder: accepted variants -------------------------------------------- */

static void test_text_decode_accepts_reordered_members_and_whitespace(void **state) {
    (void)state;
    const char *in =
        " \t\r\n{ \"type\" : \"all_kinds\" ,\n\"side\":2,\"raw\" : \"DEADbeef\", \"sym\":\"AB\\\"c\","
        "\"flag\"\t:\ttrue,\"f64\":1e-1,\"u64\":18446744073709551615,\"u32\":4294967295,"
        "\"u16\":65535,\"u8\":255,\"i64\":-9223372036854775808,\"i32\":-70000,\"i16\":300,"
        "\"i8\":-1 } \r\n";
    test_msg_t out;
    all_kinds_t want = golden_msg();
    assert_int_equal(decode_str(in, &out), (ssize_t)strlen(in));
    assert_memory_equal(&out.all_kinds, &want, sizeof want);
}

static void test_text_decode_accepts_type_not_first(void **state) {
    (void)state;
    const char *in = "{\"seq\":1,\"x_ignored_later\":0,\"sent_ns\":2,\"type\":\"ping\"}";
    test_msg_t out;
    /* Unknown members are still an error once the schema is known. */
    assert_int_equal(decode_str(in, &out), MW_EFIELD);
    in = "{\"seq\":1,\"sent_ns\":{\"a\":[1,2.5e3,\"x\",true,null,{}],\"b\":[]},\"type\":\"ping\"}";
    assert_int_equal(decode_str(in, &out), MW_ETYPE);
    assert_non_null(strstr(mw_serdes_last_error(&sd), "\"sent_ns\""));
    in = "{\"seq\":1,\"sent_ns\":2,\"type\":\"ping\"}";
    const mw_schema_t *s = NULL;
    assert_int_equal(decode_n(in, strlen(in), &test_protocol, &out, sizeof out, &s),
                     (ssize_t)strlen(in));
    assert_int_equal(s->tag, ping_TAG);
    assert_int_equal(out.ping.seq, 1);
    assert_int_equal(out.ping.sent_ns, 2);
    in = "{\"seq\":1,\"type\":\"ping\",\"sent_ns\":2}";
    assert_int_equal(decode_str(in, &out), (ssize_t)strlen(in));
    assert_int_equal(out.ping.sent_ns, 2);
}

static void test_text_decode_accepts_escaped_names_and_values(void **state) {
    (void)state;
    const char *in = "{\"t\\u0079pe\":\"p\\u0069ng\",\"s\\u0065q\":7,\"sent_ns\":8}";
    test_msg_t out;
    assert_int_equal(decode_str(in, &out), (ssize_t)strlen(in));
    assert_int_equal(out.ping.seq, 7);
    in = mk("sym", "\"\\ud83d\\ude00\\u00e9\\/\\\\\"");
    assert_int_equal(decode_str(in, &out), (ssize_t)strlen(in));
    assert_memory_equal(out.all_kinds.sym, "\xf0\x9f\x98\x80\xc3\xa9/\\", 8);
    in = mk("raw", "\"\\u0030\\u0031ff10AA\"");
    assert_int_equal(decode_str(in, &out), (ssize_t)strlen(in));
    assert_memory_equal(out.all_kinds.raw, "\x01\xff\x10\xaa", 4);
}

static void test_text_decode_accepts_negative_zero_and_float_forms(void **state) {
    (void)state;
    test_msg_t out;
    assert_true(decode_str(mk("u8", "-0"), &out) > 0);
    assert_int_equal(out.all_kinds.u8, 0);
    assert_true(decode_str(mk("i64", "-0"), &out) > 0);
    assert_int_equal(out.all_kinds.i64, 0);
    assert_true(decode_str(mk("f64", "-0"), &out) > 0);
    assert_true(signbit(out.all_kinds.f64) && out.all_kinds.f64 == 0.0);
    assert_true(decode_str(mk("f64", "12"), &out) > 0);
    assert_true(out.all_kinds.f64 == 12.0);
    assert_true(decode_str(mk("f64", "-1.25E+2"), &out) > 0);
    assert_true(out.all_kinds.f64 == -125.0);
    assert_true(decode_str(mk("f64", "4.9406564584124654e-324"), &out) > 0);
    assert_true(out.all_kinds.f64 == 5e-324);
    assert_true(decode_str(mk("f64", "1e-400"), &out) > 0); /* underflow rounds to 0 */
    assert_true(out.all_kinds.f64 == 0.0);
    assert_true(decode_str(mk("sym", "\"\""), &out) > 0);
    assert_memory_equal(out.all_kinds.sym, "\0\0\0\0\0\0\0\0", 8);
    assert_true(decode_str(mk("sym", "\"abc\""), &out) > 0);
    assert_memory_equal(out.all_kinds.sym, "abc\0\0\0\0\0", 8);
}

static void test_text_decode_f64_accepts_long_numbers_up_to_512_chars(void **state) {
    (void)state;
    char num[700];
    test_msg_t out;
    memset(num, '0', sizeof num);
    num[0] = '1';
    num[301] = '\0'; /* 1 and 300 zeros */
    assert_true(decode_str(mk("f64", num), &out) > 0);
    assert_true(out.all_kinds.f64 == 1e300);
    memset(num, '0', sizeof num);
    num[1] = '.';
    num[511] = '1';
    num[512] = '\0'; /* 512 characters: 0.000...01 */
    assert_true(decode_str(mk("f64", num), &out) > 0);
    assert_true(out.all_kinds.f64 == 0.0);
    num[511] = '0';
    num[512] = '1';
    num[513] = '\0';
    assert_int_equal(decode_str(mk("f64", num), &out), MW_ERANGE);
    assert_non_null(
        strstr(mw_serdes_last_error(&sd), "field \"f64\": a number of 513 characters"));
}

/* ---- decoder: errors -------------------------------------------------------- */

typedef struct {
    const char *field, *val; /* mk() arguments */
    int code;
    const char *needle;      /* must appear in the error text */
} member_case_t;

static const member_case_t member_cases[] = {
    {"u16", "70000", MW_ERANGE, "\"u16\""},
    {"i8", "-129", MW_ERANGE, "\"i8\""},
    {"i8", "128", MW_ERANGE, "\"i8\""},
    {"i16", "32768", MW_ERANGE, "\"i16\""},
    {"i32", "-2147483649", MW_ERANGE, "\"i32\""},
    {"u32", "4294967296", MW_ERANGE, "\"u32\""},
    {"u64", "18446744073709551616", MW_ERANGE, "\"u64\""},
    {"u64", "99999999999999999999999999", MW_ERANGE, "\"u64\""},
    {"i64", "-9223372036854775809", MW_ERANGE, "\"i64\""},
    {"i64", "9223372036854775808", MW_ERANGE, "\"i64\""},
    {"u8", "-1", MW_ERANGE, "\"u8\""},
    {"side", "3", MW_ERANGE, "\"side\""},
    {"side", "-1", MW_ERANGE, "\"side\""},
    {"f64", "1e400", MW_ERANGE, "\"f64\""},
    {"f64", "-1e400", MW_ERANGE, "\"f64\""},
    {"i32", "1.0", MW_ETYPE, "\"i32\""},
    {"i32", "1e3", MW_ETYPE, "\"i32\""},
    {"u8", "-0.0", MW_ETYPE, "\"u8\""},
    {"i32", "\"1\"", MW_ETYPE, "\"i32\""},
    {"i32", "null", MW_ETYPE, "\"i32\""},
    {"flag", "null", MW_ETYPE, "\"flag\""},
    {"sym", "null", MW_ETYPE, "\"sym\""},
    {"f64", "null", MW_ETYPE, "\"f64\""},
    {"flag", "1", MW_ETYPE, "\"flag\""},
    {"flag", "\"true\"", MW_ETYPE, "\"flag\""},
    {"f64", "true", MW_ETYPE, "\"f64\""},
    {"f64", "\"1.5\"", MW_ETYPE, "\"f64\""},
    {"side", "true", MW_ETYPE, "\"side\""},
    {"sym", "12", MW_ETYPE, "\"sym\""},
    {"raw", "12", MW_ETYPE, "\"raw\""},
    {"i16", "{}", MW_ETYPE, "\"i16\""},
    {"i16", "[1]", MW_ETYPE, "\"i16\""},
    {"sym", "{\"a\":1}", MW_ETYPE, "\"sym\""},
    {"raw", "\"00ff10\"", MW_ETYPE, "\"raw\""},
    {"raw", "\"00ff10a\"", MW_ETYPE, "\"raw\""},
    {"raw", "\"00ff10ag\"", MW_ETYPE, "\"raw\""},
    {"raw", "\"00ff10a\\u00e9\"", MW_ETYPE, "\"raw\""},
    {"raw", "\"00ff10aa00\"", MW_ETOOBIG, "\"raw\""},
    {"sym", "\"123456789\"", MW_ETOOBIG, "\"sym\""},
    {"sym", "\"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\"", MW_ETOOBIG, "\"sym\""},
    {"sym", "\"a\\u0000b\"", MW_ETYPE, "\"sym\""},
    {"sym", "\"\\ud800\"", MW_EUTF8, "\"sym\""},
    {"sym", "\"\\udc00\"", MW_EUTF8, "\"sym\""},
    {"sym", "\"\\ud800\\u0041\"", MW_EUTF8, "\"sym\""},
    {"sym", "\"\\ud800x\"", MW_EUTF8, "\"sym\""},
    {"sym", "\"\\ud800\\n\"", MW_EUTF8, "\"sym\""},
    {"sym", "\"\xff\"", MW_EUTF8, "\"sym\""},
    {"sym", "\"\xc3\x28\"", MW_EUTF8, "\"sym\""},
    {"sym", "\"\xc0\xaf\"", MW_EUTF8, "\"sym\""},
    {"sym", "\"\xed\xa0\x80\"", MW_EUTF8, "\"sym\""},
    {"sym", "\"\xf4\x90\x80\x80\"", MW_EUTF8, "\"sym\""},
    {"sym", "\"\xe2\x82\"", MW_EUTF8, "\"sym\""},
    {"sym", "\"a\x01\"", MW_EPROTO, "\"sym\""},
    {"sym", "\"a\x1f\"", MW_EPROTO, "\"sym\""},
    {"sym", "\"\\x\"", MW_EPROTO, "\"sym\""},
    {"sym", "\"\\u12g4\"", MW_EPROTO, "\"sym\""},
    {"sym", "'ab'", MW_EPROTO, "\"sym\""},
    {"f64", "NaN", MW_EPROTO, "\"f64\""},
    {"f64", "nan", MW_EPROTO, "\"f64\""},
    {"f64", "Infinity", MW_EPROTO, "\"f64\""},
    {"f64", "-Infinity", MW_EPROTO, "\"f64\""},
    {"f64", "1.", MW_EPROTO, "\"f64\""},
    {"f64", ".5", MW_EPROTO, "\"f64\""},
    {"f64", "1e", MW_EPROTO, "\"f64\""},
    {"f64", "0x10", MW_EPROTO, "\"f64\""},
    {"i32", "01", MW_EPROTO, "\"i32\""},
    {"i32", "-01", MW_EPROTO, "\"i32\""},
    {"i32", "+1", MW_EPROTO, "\"i32\""},
    {"i32", "-", MW_EPROTO, "\"i32\""},
    {"i32", "1 2", MW_EPROTO, "\"i32\""},
    {"flag", "tru", MW_EPROTO, "\"flag\""},
    {"flag", "True", MW_EPROTO, "\"flag\""},
    {"flag", "truex", MW_EPROTO, "\"flag\""},
    {"i32", NULL, MW_EMISSING, "\"i32\""},
    {"side", NULL, MW_EMISSING, "\"side\""},
    {"bogus", "1", MW_EFIELD, "bogus"},
    {"u8", "5,\"u8\":5", MW_EFIELD, "\"u8\""},
    {"side", "2,\"type\":\"ping\"", MW_EFIELD, "type"},
    {"type", "\"nope\"", MW_ETAG, "nope"},
    {"type", "\"all_kind\"", MW_ETAG, "all_kind"},
    {"type", "\"\xff\"", MW_EUTF8, "offset"},
    {"type", "7", MW_ETYPE, "type"},
    {"type", "null", MW_ETYPE, "type"},
    {"type", "{\"a\":1}", MW_ETYPE, "type"},
    {"type", "x", MW_EPROTO, "offset"},
    {"type", NULL, MW_EMISSING, "type"},
};

static void test_text_decode_rejects_each_bad_member_with_code_and_text(void **state) {
    (void)state;
    test_msg_t out;
    for (size_t i = 0; i < sizeof member_cases / sizeof member_cases[0]; i++) {
        const member_case_t *c = &member_cases[i];
        const char *in = mk(c->field, c->val);
        ssize_t r = decode_str(in, &out);
        const char *err = mw_serdes_last_error(&sd);
        if (r != c->code || !strstr(err, c->needle) || strncmp(err, "text: ", 6) != 0)
            fail_msg("case %zu %s=%s: got %s (%s), want %s", i, c->field, c->val ? c->val : "-",
                     mw_errname((int)r), err, mw_errname(c->code));
    }
}

static void test_text_decode_error_text_names_field_and_problem(void **state) {
    (void)state;
    test_msg_t out;
    assert_int_equal(decode_str(mk("u16", "70000"), &out), MW_ERANGE);
    assert_string_equal(mw_serdes_last_error(&sd),
                        "text: field \"u16\": 70000 is out of range for u16");
    assert_int_equal(decode_str(mk("i32", NULL), &out), MW_EMISSING);
    assert_non_null(strstr(mw_serdes_last_error(&sd), "field \"i32\": missing"));
}

typedef struct {
    const char *in;
    int code;
} input_case_t;

static void test_text_decode_rejects_bad_documents(void **state) {
    (void)state;
    static const input_case_t cases[] = {
        {"", MW_ETRUNC},
        {" \r\n", MW_ETRUNC},
        {"{", MW_ETRUNC},
        {"[]", MW_EPROTO},
        {"\"type\"", MW_EPROTO},
        {"{}", MW_EMISSING},
        {"{ }", MW_EMISSING},
        {"{\"seq\":1}", MW_EMISSING},
        {"{\"type\":\"ping\",\"seq\":1,\"sent_ns\":2} x", MW_ETRAILING},
        {"{\"type\":\"ping\",\"seq\":1,\"sent_ns\":2}{}", MW_ETRAILING},
        {"{\"type\":\"ping\",\"seq\":1,\"sent_ns\":2}\n\n}", MW_ETRAILING},
        {"{\"type\":\"ping\",\"seq\":1 \"sent_ns\":2}", MW_EPROTO},
        {"{\"type\":\"ping\",\"seq\":1,\"sent_ns\":2,}", MW_EPROTO},
        {"{\"type\":\"ping\" \"seq\":1}", MW_EPROTO},
        {"{\"type\":\"ping\",\"seq\"1,\"sent_ns\":2}", MW_EPROTO},
        {"{\"type\":\"ping\",seq:1,\"sent_ns\":2}", MW_EPROTO},
        {"{\"type\":\"ping\",,\"seq\":1,\"sent_ns\":2}", MW_EPROTO},
        {"{'type':'ping'}", MW_EPROTO},
        {"{\"type\":\"ping\",\"seq\":1,\"sent_ns\":2", MW_ETRUNC},
        {"{\"type\":\"ping\",\"seq\":1,\"sent_ns\":2,\"seq\":3}", MW_EFIELD},
        {"{\"type\":\"ping\",\"seq\":1,\"sent_ns\":2,\"type\":\"ping\"}", MW_EFIELD},
        {"{\"seq\":1,\"type\":\"ping\",\"sent_ns\":2,\"type\":\"ping\"}", MW_EFIELD},
        {"{\"seq\":[1,,2],\"type\":\"ping\"}", MW_EPROTO},
        {"{\"seq\":[1 2],\"type\":\"ping\"}", MW_EPROTO},
        {"{\"seq\":{\"a\" 1},\"type\":\"ping\"}", MW_EPROTO},
        {"{\"seq\":{1:2},\"type\":\"ping\"}", MW_EPROTO},
        {"{\"seq\":[1,2],\"type\":7}", MW_ETYPE},
        {"{\"seq\":[1,2", MW_ETRUNC},
        {"{\"seq\":NaN,\"type\":\"ping\"}", MW_EPROTO},
        {"{\"seq\":01,\"type\":\"ping\"}", MW_EPROTO},
        {"{\"se\x01q\":1,\"type\":\"ping\"}", MW_EPROTO},
        {"{\"heartbeat\":1,\"type\":\"heartbeat\"}", MW_EFIELD},
        {"{\"type\":\"heartbeat\",\"unused\":false}\r", 0},
        {"{\"type\":\"heartbeat\",\"unused\":false}\n", 0},
        {"{\"type\":\"heartbeat\",\"unused\":false}\r\n", 0},
    };
    test_msg_t out;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ssize_t r = decode_str(cases[i].in, &out);
        ssize_t want = cases[i].code ? cases[i].code : (ssize_t)strlen(cases[i].in);
        if (r != want)
            fail_msg("case %zu %s: got %s (%s)", i, cases[i].in, mw_errname((int)r),
                     mw_serdes_last_error(&sd));
        if (r < 0) assert_true(strncmp(mw_serdes_last_error(&sd), "text: ", 6) == 0);
    }
}

/* "[[[...1...]]]" nested `depth` deep as the value of an unknown member
 * that comes before "type": the skipper must bound its depth. */
static void test_text_decode_bounds_nesting_while_scanning_for_type(void **state) {
    (void)state;
    char in[512];
    test_msg_t out;
    for (int depth = 30; depth <= 40; depth++) {
        size_t n = (size_t)snprintf(in, sizeof in, "{\"x\":");
        for (int i = 0; i < depth; i++) in[n++] = '[';
        in[n++] = '1';
        for (int i = 0; i < depth; i++) in[n++] = ']';
        n += (size_t)snprintf(in + n, sizeof in - n, ",\"type\":\"ping\",\"seq\":1,\"sent_ns\":2}");
        ssize_t r = decode_n(in, n, &test_protocol, &out, sizeof out, NULL);
        /* The object is level 1: 31 arrays inside it reach the limit of 32. */
        assert_int_equal(r, depth <= 31 ? MW_EFIELD : MW_EPROTO);
    }
    assert_non_null(strstr(mw_serdes_last_error(&sd), "nesting"));
}

static void test_text_decode_rejects_small_msg_cap(void **state) {
    (void)state;
    test_msg_t out;
    assert_int_equal(decode_n(GOLDEN, strlen(GOLDEN), &test_protocol, &out,
                              sizeof(all_kinds_t) - 1, NULL), MW_ETOOBIG);
    assert_non_null(strstr(mw_serdes_last_error(&sd), "all_kinds"));
    assert_int_equal(decode_n(GOLDEN, strlen(GOLDEN), &test_protocol, &out, sizeof(all_kinds_t),
                              NULL), (ssize_t)strlen(GOLDEN));
}

/* Every prefix of msg, against a guard page, must be refused: with
 * MW_ETRUNC when msg itself is valid (want_full >= 0). Prefixes that only
 * drop whitespace after the closing '}' are whole messages. */
static void check_every_prefix(const char *msg, ssize_t want_full) {
    size_t len = strlen(msg), whole = (size_t)(strrchr(msg, '}') - msg) + 1;
    test_msg_t out;
    ssize_t full = decode_n(msg, len, &test_protocol, &out, sizeof out, NULL);
    assert_int_equal(full, want_full >= 0 ? (ssize_t)len : want_full);
    for (size_t n = 0; n < len; n++) {
        ssize_t r = decode_n(msg, n, &test_protocol, &out, sizeof out, NULL);
        ssize_t want = n >= whole ? (ssize_t)n : MW_ETRUNC;
        if (want_full >= 0 ? r != want : r >= 0)
            fail_msg("prefix %zu of %s: got %s (%s)", n, msg, mw_errname((int)r),
                     mw_serdes_last_error(&sd));
    }
}

static void test_text_decode_every_prefix_is_truncated(void **state) {
    (void)state;
    check_every_prefix(GOLDEN, 0);
    check_every_prefix("{\"i8\":-1,\"type\":\"all_kinds\",\"i16\":300,\"i32\":-70000,"
                       "\"i64\":-9223372036854775808,\"u8\":255,\"u16\":65535,"
                       "\"u32\":4294967295,\"u64\":18446744073709551615,"
                       "\"f64\":-4.9406564584124654E-324,\"flag\":false,"
                       "\"sym\":\"\\\"\xe2\x82\xac\\u0041\",\"raw\":\"DeadBeef\","
                       "\"side\":0}\r\n", 0);
    check_every_prefix(" { \"raw\" : \"00000000\", \"sym\" : \"\\ud83d\\ude00\\n\xc3\xa9\" ,"
                       " \"type\" : \"all_kinds\" , \"i8\" : 1 , \"i16\":1,\"i32\":1,"
                       "\"i64\":1,\"u8\":1,\"u16\":1,\"u32\":1,\"u64\":1,\"f64\":1e+1,"
                       "\"flag\":true,\"side\":1 } ", 0);
    /* Nested values before "type" go through the skipper; the member is
     * unknown, so the whole message is refused too. */
    check_every_prefix("{\"x\" : [ {\"a\":[true,false,null,\"\\u00e9\"]}, -1.5e-3, [] ] ,"
                       " \"type\" : \"ping\" }", MW_EFIELD);
}

/* ---- schemas wider than the 256-field bitmap ------------------------------- */

static size_t wide_round_trip(char *buf, size_t cap) {
    wide_t w;
    uint8_t *b = (uint8_t *)&w;
    for (size_t i = 0; i < sizeof w; i++) b[i] = (uint8_t)(i * 7);
    ssize_t n = wide_encode(&sd, &w, (uint8_t *)buf, cap - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    wideproto_msg_t out;
    assert_int_equal(decode_n(buf, (size_t)n, &wideproto_protocol, &out, sizeof out, NULL), n);
    assert_memory_equal(&out.wide, &w, sizeof w);
    return (size_t)n;
}

static void test_text_decode_wide_schema_finds_duplicates_and_missing(void **state) {
    (void)state;
    static char buf[8192], mod[8300];
    size_t n = wide_round_trip(buf, sizeof buf);
    wideproto_msg_t out;
    const mw_protocol_t *wp = &wideproto_protocol;
    /* a duplicate in the second window */
    snprintf(mod, sizeof mod, "%.*s,\"f299\":1}", (int)(n - 1), buf);
    assert_int_equal(decode_n(mod, strlen(mod), wp, &out, sizeof out, NULL), MW_EFIELD);
    assert_non_null(strstr(mw_serdes_last_error(&sd), "\"f299\""));
    /* a duplicate in the first window */
    snprintf(mod, sizeof mod, "%.*s,\"f010\":1}", (int)(n - 1), buf);
    assert_int_equal(decode_n(mod, strlen(mod), wp, &out, sizeof out, NULL), MW_EFIELD);
    assert_non_null(strstr(mw_serdes_last_error(&sd), "\"f010\""));
    /* the last field left out */
    const char *last = strstr(buf, ",\"f299\":");
    snprintf(mod, sizeof mod, "%.*s}", (int)(last - buf), buf);
    assert_int_equal(decode_n(mod, strlen(mod), wp, &out, sizeof out, NULL), MW_EMISSING);
    assert_non_null(strstr(mw_serdes_last_error(&sd), "\"f299\""));
    /* field 299 replacing field 5 (right count, one duplicate, one missing) */
    const char *f5 = strstr(buf, "\"f005\"");
    snprintf(mod, sizeof mod, "%.*s\"f299\"%s", (int)(f5 - buf), buf, f5 + 6);
    assert_int_equal(decode_n(mod, strlen(mod), wp, &out, sizeof out, NULL), MW_EMISSING);
    assert_non_null(strstr(mw_serdes_last_error(&sd), "\"f005\""));
    /* "type" last */
    size_t head = strlen("{\"type\":\"wide\",");
    snprintf(mod, sizeof mod, "{%.*s,\"type\":\"wide\"}", (int)(n - head - 1), buf + head);
    assert_int_equal(decode_n(mod, strlen(mod), wp, &out, sizeof out, NULL), (ssize_t)strlen(mod));
}

/* ---- no allocation, bounded fuzz -------------------------------------------- */

static void test_text_encode_and_decode_do_not_allocate(void **state) {
    (void)state;
    if (!mw_alloc_counting_works()) skip();
    all_kinds_t m = golden_msg();
    m.f64 = 1.0 / 3.0;
    uint8_t buf[512];
    test_msg_t out;
    const mw_schema_t *s;
    uint64_t before = mw_alloc_count();
    for (int i = 0; i < 1000; i++) {
        ssize_t n = all_kinds_encode(&sd, &m, buf, sizeof buf);
        assert_true(n > 0);
        const mw_protocol_t *p = &test_protocol;
        assert_int_equal(mw_serdes_decode(&sd, buf, (size_t)n, p, &s, &out, sizeof out), n);
        assert_int_equal(mw_serdes_decode(&sd, buf, (size_t)n - 1, p, &s, &out, sizeof out),
                         MW_ETRUNC);
    }
    assert_int_equal(mw_alloc_count(), before);
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static size_t mutate(uint8_t *b, size_t n, size_t cap, uint64_t *rng) {
    static const char special[] = "\"\\{}[],:-.0123456789eE+ tfnu\x01\x7f\x80\xc3\xff";
    uint64_t r = rng_next(rng);
    size_t at = n ? (size_t)(r >> 8) % n : 0;
    switch (r % 6) {
    case 0: if (n) b[at] ^= (uint8_t)(1u << (r >> 40) % 8); break;
    case 1: if (n) b[at] = (uint8_t)(r >> 32); break;
    case 2: if (n) b[at] = (uint8_t)special[(r >> 32) % (sizeof special - 1)]; break;
    case 3:
        if (n < cap) {
            memmove(b + at + 1, b + at, n - at);
            b[at] = (uint8_t)special[(r >> 32) % (sizeof special - 1)];
            n++;
        }
        break;
    case 4: if (n) { memmove(b + at, b + at + 1, n - at - 1); n--; } break;
    default: n = at; break;
    }
    return n;
}

/* A successful decode must hold a struct the encoder accepts and that reads
 * back identically. */
static void check_redecode(const mw_schema_t *s, const test_msg_t *m) {
    uint8_t buf[1024];
    ssize_t n = mw_serdes_encode(&sd, s, m, buf, sizeof buf);
    assert_true(n > 0);
    test_msg_t again;
    assert_int_equal(decode_n(buf, (size_t)n, &test_protocol, &again, sizeof again, NULL), n);
    assert_memory_equal(&again, m, s->size);
}

static void test_text_decode_survives_mutated_input(void **state) {
    (void)state;
    const char *bases[] = {
        GOLDEN,
        "{\"seq\":1,\"x\":[{\"a\":\"\\u00e9\"},2.5e-3,null],\"type\":\"ping\",\"sent_ns\":2}",
        "{\"type\":\"all_kinds\",\"sym\":\"\\ud83d\\ude00\\\"\\\\\",\"raw\":\"00FF10aa\",\"i8\":-0,"
        "\"i16\":1,\"i32\":1,\"i64\":1,\"u8\":1,\"u16\":1,\"u32\":1,\"u64\":1,\"f64\":1e-300,"
        "\"flag\":false,\"side\":1}",
        "{\"type\":\"heartbeat\",\"unused\":true}",
    };
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    uint8_t b[600];
    int ok = 0, bad = 0;
    for (int it = 0; it < 20000; it++) {
        const char *base = bases[rng_next(&rng) % 4];
        size_t n = strlen(base);
        memcpy(b, base, n);
        for (int k = (int)(rng_next(&rng) % 4); k >= 0; k--) n = mutate(b, n, sizeof b, &rng);
        test_msg_t out;
        const mw_schema_t *s = NULL;
        ssize_t r = decode_n(b, n, &test_protocol, &out, sizeof out, &s);
        if (r >= 0) {
            assert_int_equal(r, (ssize_t)n);
            check_redecode(s, &out);
            ok++;
        } else {
            assert_true(r > MW__ELAST);
            bad++;
        }
    }
    assert_true(ok > 0 && bad > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_encode_writes_golden_text),
        cmocka_unit_test(test_text_encode_too_big_for_every_short_cap),
        cmocka_unit_test(test_text_encode_rejects_non_finite_f64),
        cmocka_unit_test(test_text_encode_rejects_enum_and_bool_out_of_range),
        cmocka_unit_test(test_text_encode_rejects_invalid_utf8_chars),
        cmocka_unit_test(test_text_encode_escapes_quotes_backslash_and_controls),
        cmocka_unit_test(test_text_encode_stays_within_max_len),
        cmocka_unit_test(test_text_round_trips_integer_edges),
        cmocka_unit_test(test_text_round_trips_f64_bit_exact),
        cmocka_unit_test(test_text_encode_f64_text_is_short_and_float_typed),
        cmocka_unit_test(test_text_round_trips_chars_and_bytes),
        cmocka_unit_test(test_text_non_ascii_utf8_passes_through_raw),
        cmocka_unit_test(test_text_decode_accepts_reordered_members_and_whitespace),
        cmocka_unit_test(test_text_decode_accepts_type_not_first),
        cmocka_unit_test(test_text_decode_accepts_escaped_names_and_values),
        cmocka_unit_test(test_text_decode_accepts_negative_zero_and_float_forms),
        cmocka_unit_test(test_text_decode_f64_accepts_long_numbers_up_to_512_chars),
        cmocka_unit_test(test_text_decode_rejects_each_bad_member_with_code_and_text),
        cmocka_unit_test(test_text_decode_error_text_names_field_and_problem),
        cmocka_unit_test(test_text_decode_rejects_bad_documents),
        cmocka_unit_test(test_text_decode_bounds_nesting_while_scanning_for_type),
        cmocka_unit_test(test_text_decode_rejects_small_msg_cap),
        cmocka_unit_test(test_text_decode_every_prefix_is_truncated),
        cmocka_unit_test(test_text_decode_wide_schema_finds_duplicates_and_missing),
        cmocka_unit_test(test_text_encode_and_decode_do_not_allocate),
        cmocka_unit_test(test_text_decode_survives_mutated_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
