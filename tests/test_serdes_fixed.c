/* test_serdes_fixed.c - the "fixed" serdes: round trips at the edges of every
 * field kind, golden bytes, every decoder error, every prefix against a guard
 * page, short output buffers, a deterministic fuzz loop, and no allocation. */
#include "mw_test.h"
#include "test_proto.h"
#include "serdes_impl.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static uint64_t f64_bits(double d) {
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

static double bits_f64(uint64_t b) {
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

/* Edge values of every kind; the struct is zeroed first so that padding
 * compares equal after a round trip. */
enum { NCASES = 6 };
static void make_case(all_kinds_t *m, int v) {
    memset(m, 0, sizeof *m);
    switch (v) {
    case 0: /* minimums, empty text */
        m->i8 = INT8_MIN; m->i16 = INT16_MIN; m->i32 = INT32_MIN; m->i64 = INT64_MIN;
        m->f64 = -INFINITY;
        memset(m->raw, 0x00, sizeof m->raw);
        break;
    case 1: /* maximums, full ASCII text */
        m->i8 = INT8_MAX; m->i16 = INT16_MAX; m->i32 = INT32_MAX; m->i64 = INT64_MAX;
        m->u8 = UINT8_MAX; m->u16 = UINT16_MAX; m->u32 = UINT32_MAX; m->u64 = UINT64_MAX;
        m->f64 = INFINITY; m->flag = true; m->side = 2;
        memcpy(m->sym, "ABCDEFGH", 8);
        memset(m->raw, 0xff, sizeof m->raw);
        break;
    case 2: /* -0.0, two- and three-byte UTF-8 */
        m->i8 = -1; m->i16 = -1; m->i32 = -1; m->i64 = -1;
        m->u8 = 1; m->u16 = 256; m->u32 = 65536; m->u64 = (uint64_t)1 << 32;
        m->f64 = -0.0; m->side = 1;
        strcpy(m->sym, "\xc3\xa9\xe2\x82\xac"); /* e-acute, euro sign */
        break;
    case 3: /* quiet NaN with a payload, full text of two 4-byte sequences */
        m->f64 = bits_f64(0x7ff8000000000123ull);
        memcpy(m->sym, "\xf0\x9f\x98\x80\xf0\x9f\x98\x80", 8);
        m->raw[0] = 0x01; m->raw[3] = 0x80;
        break;
    case 4: /* signalling NaN with the sign bit, next to the extremes */
        m->f64 = bits_f64(0xfff0000000000001ull);
        m->i64 = INT64_MIN + 1; m->u64 = UINT64_MAX - 1;
        strcpy(m->sym, "x");
        break;
    default: /* ordinary values, smallest subnormal */
        m->i8 = 42; m->i16 = -300; m->i32 = 70000; m->i64 = -5000000000ll;
        m->u8 = 200; m->u16 = 0x1234; m->u32 = 0xdeadbeefu; m->u64 = 0x0102030405060708ull;
        m->f64 = bits_f64(1); /* 4.9e-324 */
        m->flag = true; m->side = 2;
        strcpy(m->sym, "AAPL");
        memcpy(m->raw, "\x00\xff\x10\x7f", 4);
        break;
    }
}

static void sd_setup(mw_serdes_t *sd) { assert_int_equal(mw_serdes_init(sd, "fixed", 0), 0); }

/* Wire offset of a field of all_kinds. */
static size_t wire_off(const char *name) {
    const mw_schema_t *s = all_kinds_schema();
    size_t off = 2;
    for (unsigned i = 0; i < s->nfields; i++) {
        if (strcmp(s->fields[i].name, name) == 0) return off;
        off += s->fields[i].size;
    }
    fail_msg("no field %s", name);
    return 0;
}

static ssize_t decode(mw_serdes_t *sd, const uint8_t *in, size_t len, test_msg_t *out) {
    const mw_schema_t *s = NULL;
    return mw_serdes_decode(sd, in, len, &test_protocol, &s, out, sizeof *out);
}

static void test_fixed_round_trips_edge_values_bit_exact(void **state) {
    (void)state;
    mw_serdes_t sd;
    sd_setup(&sd);
    for (int v = 0; v < NCASES; v++) {
        all_kinds_t m;
        make_case(&m, v);
        uint8_t buf[128];
        ssize_t n = all_kinds_encode(&sd, &m, buf, sizeof buf);
        assert_int_equal(n, all_kinds_FIXED_SIZE);
        test_msg_t out;
        memset(&out, 0xa5, sizeof out);
        const mw_schema_t *s = NULL;
        assert_int_equal(mw_serdes_decode(&sd, buf, (size_t)n, &test_protocol, &s, &out, sizeof out), n);
        assert_non_null(s);
        assert_int_equal(s->tag, all_kinds_TAG);
        assert_memory_equal(&out.all_kinds, &m, sizeof m); /* padding written too */
        assert_int_equal(f64_bits(out.all_kinds.f64), f64_bits(m.f64));
    }
    ping_t pg = {UINT64_MAX, 0};
    uint8_t buf[32];
    assert_int_equal(ping_encode(&sd, &pg, buf, sizeof buf), ping_FIXED_SIZE);
    test_msg_t out;
    assert_int_equal(decode(&sd, buf, ping_FIXED_SIZE, &out), ping_FIXED_SIZE);
    assert_memory_equal(&out.ping, &pg, sizeof pg);
    mw_serdes_fini(&sd);
}

static void test_fixed_encodes_golden_bytes(void **state) {
    (void)state;
    mw_serdes_t sd;
    sd_setup(&sd);
    all_kinds_t m;
    memset(&m, 0, sizeof m);
    m.i8 = -2; m.i16 = -300; m.i32 = 70000; m.i64 = -1;
    m.u8 = 200; m.u16 = 0x1234; m.u32 = 0xdeadbeefu; m.u64 = 0x0102030405060708ull;
    m.f64 = 1.5; m.flag = true; strcpy(m.sym, "AB"); memcpy(m.raw, "\x00\xff\x10\x7f", 4);
    m.side = 2;
    static const uint8_t want[] = {
        0x01, 0x00,                                     /* tag 1 */
        0xfe,                                           /* i8 -2 */
        0xd4, 0xfe,                                     /* i16 -300 */
        0x70, 0x11, 0x01, 0x00,                         /* i32 70000 */
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* i64 -1 */
        0xc8,                                           /* u8 200 */
        0x34, 0x12,                                     /* u16 */
        0xef, 0xbe, 0xad, 0xde,                         /* u32 */
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* u64 */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf8, 0x3f, /* f64 1.5 */
        0x01,                                           /* bool */
        0x41, 0x42, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* chars "AB" */
        0x00, 0xff, 0x10, 0x7f,                         /* bytes */
        0x02,                                           /* enum */
    };
    assert_int_equal(sizeof want, all_kinds_FIXED_SIZE);
    uint8_t buf[64];
    assert_int_equal(all_kinds_encode(&sd, &m, buf, sizeof buf), sizeof want);
    assert_memory_equal(buf, want, sizeof want);

    ping_t pg = {1, 0x0102030405060708ull};
    static const uint8_t want_ping[] = {0x02, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0,
                                        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01};
    assert_int_equal(ping_encode(&sd, &pg, buf, sizeof buf), sizeof want_ping);
    assert_memory_equal(buf, want_ping, sizeof want_ping);

    test_msg_t out;
    assert_int_equal(decode(&sd, want, sizeof want, &out), sizeof want);
    assert_memory_equal(&out.all_kinds, &m, sizeof m);
    mw_serdes_fini(&sd);
}

/* Decodes a copy of valid all_kinds bytes with one byte range replaced. */
static ssize_t decode_patched(mw_serdes_t *sd, const char *field, const void *bytes, size_t n) {
    all_kinds_t m;
    make_case(&m, 5);
    uint8_t buf[64];
    assert_int_equal(all_kinds_encode(sd, &m, buf, sizeof buf), all_kinds_FIXED_SIZE);
    memcpy(buf + wire_off(field), bytes, n);
    test_msg_t out;
    return decode(sd, buf, all_kinds_FIXED_SIZE, &out);
}

static void assert_err_names(const mw_serdes_t *sd, const char *field) {
    char want[64];
    snprintf(want, sizeof want, "field \"%s\"", field);
    const char *t = mw_serdes_last_error(sd);
    if (!strstr(t, want)) fail_msg("error text \"%s\" does not name %s", t, want);
}

static void test_fixed_decode_returns_each_error_code(void **state) {
    (void)state;
    mw_serdes_t sd;
    sd_setup(&sd);
    test_msg_t out;
    uint8_t buf[128];
    all_kinds_t m;
    make_case(&m, 5);
    assert_int_equal(all_kinds_encode(&sd, &m, buf, sizeof buf), all_kinds_FIXED_SIZE);
    const size_t n = all_kinds_FIXED_SIZE;

    assert_int_equal(decode(&sd, buf, 0, &out), MW_ETRUNC);
    assert_int_equal(decode(&sd, buf, 1, &out), MW_ETRUNC);
    assert_int_equal(decode(&sd, buf, n - 1, &out), MW_ETRUNC);
    buf[n] = 0;
    assert_int_equal(decode(&sd, buf, n + 1, &out), MW_ETRAILING);

    static const uint8_t tag0[] = {0, 0}, tag99[] = {99, 0}, tag256[] = {0x00, 0x01};
    assert_int_equal(decode(&sd, tag0, 2, &out), MW_ETAG);
    assert_int_equal(decode(&sd, tag99, 2, &out), MW_ETAG);
    assert_int_equal(decode(&sd, tag256, 2, &out), MW_ETAG); /* little-endian tag */

    const mw_schema_t *s = NULL;
    assert_int_equal(mw_serdes_decode(&sd, buf, n, &test_protocol, &s, &out, sizeof(all_kinds_t) - 1),
                     MW_ETOOBIG);
    assert_int_equal(mw_serdes_decode(&sd, buf, n, &test_protocol, &s, &out, sizeof(all_kinds_t)), n);

    assert_int_equal(decode_patched(&sd, "flag", "\x02", 1), MW_ERANGE);
    assert_err_names(&sd, "flag");
    assert_int_equal(decode_patched(&sd, "flag", "\xff", 1), MW_ERANGE);
    assert_int_equal(decode_patched(&sd, "side", "\x03", 1), MW_ERANGE);
    assert_err_names(&sd, "side");
    assert_string_equal(mw_serdes_last_error(&sd), "fixed: field \"side\": 3 is out of range for enum (0..2)");
    assert_int_equal(decode_patched(&sd, "side", "\x02", 1), n);

    /* CHARS: NUL padding only after the text; valid UTF-8. */
    assert_int_equal(decode_patched(&sd, "sym", "A\0B\0\0\0\0\0", 8), MW_EPROTO);
    assert_err_names(&sd, "sym");
    assert_int_equal(decode_patched(&sd, "sym", "\0\0\0\0\0\0\0Z", 8), MW_EPROTO);
    assert_int_equal(decode_patched(&sd, "sym", "\xff\0\0\0\0\0\0\0", 8), MW_EUTF8);
    assert_err_names(&sd, "sym");
    assert_int_equal(decode_patched(&sd, "sym", "\xc0\x80\0\0\0\0\0\0", 8), MW_EUTF8); /* overlong */
    assert_int_equal(decode_patched(&sd, "sym", "\xed\xa0\x80\0\0\0\0\0", 8), MW_EUTF8); /* surrogate */
    assert_int_equal(decode_patched(&sd, "sym", "abcdef\xe2\x82", 8), MW_EUTF8); /* cut at the end */
    assert_int_equal(decode_patched(&sd, "sym", "\xe2\x82\0\0\0\0\0\0", 8), MW_EUTF8); /* cut by NUL */
    assert_int_equal(decode_patched(&sd, "sym", "abcdefgh", 8), n);
    assert_int_equal(decode_patched(&sd, "sym", "\0\0\0\0\0\0\0\0", 8), n);
    mw_serdes_fini(&sd);
}

static void test_fixed_encode_rejects_values_the_wire_cannot_carry(void **state) {
    (void)state;
    mw_serdes_t sd;
    sd_setup(&sd);
    uint8_t buf[64];
    all_kinds_t m;
    uint8_t two = 2;

    make_case(&m, 5);
    memcpy(&m.flag, &two, 1); /* a corrupt bool byte */
    assert_int_equal(all_kinds_encode(&sd, &m, buf, sizeof buf), MW_ERANGE);
    assert_err_names(&sd, "flag");

    make_case(&m, 5);
    m.side = 3;
    assert_int_equal(all_kinds_encode(&sd, &m, buf, sizeof buf), MW_ERANGE);
    assert_err_names(&sd, "side");

    make_case(&m, 5);
    memcpy(m.sym, "ab\xfe", 4);
    assert_int_equal(all_kinds_encode(&sd, &m, buf, sizeof buf), MW_EUTF8);
    assert_err_names(&sd, "sym");

    /* Stale bytes after the terminator do not reach the wire. */
    make_case(&m, 5);
    memcpy(m.sym, "AB\0garb", 8);
    assert_int_equal(all_kinds_encode(&sd, &m, buf, sizeof buf), all_kinds_FIXED_SIZE);
    assert_memory_equal(buf + wire_off("sym"), "AB\0\0\0\0\0\0", 8);
    test_msg_t out;
    assert_int_equal(decode(&sd, buf, all_kinds_FIXED_SIZE, &out), all_kinds_FIXED_SIZE);
    assert_string_equal(out.all_kinds.sym, "AB");
    mw_serdes_fini(&sd);
}

static void test_fixed_encode_too_big_for_every_short_cap(void **state) {
    (void)state;
    mw_serdes_t sd;
    sd_setup(&sd);
    all_kinds_t m;
    make_case(&m, 1);
    static const uint8_t zeros[64];
    for (size_t cap = 0; cap < all_kinds_FIXED_SIZE; cap++) {
        mw_guard_t g;
        uint8_t *out = mw_guard_copy(&g, zeros, cap); /* a write past cap crashes */
        assert_int_equal(all_kinds_encode(&sd, &m, out, cap), MW_ETOOBIG);
        mw_guard_free(&g);
    }
    mw_guard_t g;
    uint8_t *out = mw_guard_copy(&g, zeros, all_kinds_FIXED_SIZE);
    assert_int_equal(all_kinds_encode(&sd, &m, out, all_kinds_FIXED_SIZE), all_kinds_FIXED_SIZE);
    mw_guard_free(&g);
    mw_serdes_fini(&sd);
}

static void test_fixed_decode_fails_at_every_prefix_against_guard_page(void **state) {
    (void)state;
    mw_serdes_t sd;
    sd_setup(&sd);
    for (int v = 0; v < NCASES; v++) {
        all_kinds_t m;
        make_case(&m, v);
        uint8_t buf[64];
        ssize_t n = all_kinds_encode(&sd, &m, buf, sizeof buf);
        assert_int_equal(n, all_kinds_FIXED_SIZE);
        for (size_t k = 0; k <= (size_t)n; k++) {
            mw_guard_t g;
            const uint8_t *in = mw_guard_copy(&g, buf, k);
            test_msg_t out;
            ssize_t r = decode(&sd, in, k, &out);
            if (k < (size_t)n) assert_int_equal(r, MW_ETRUNC);
            else assert_int_equal(r, n);
            mw_guard_free(&g);
        }
    }
    mw_serdes_fini(&sd);
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Mutates valid encodings; decode must return len or an error, never crash
 * or read past the end. Fixed is canonical: whatever decodes re-encodes to
 * the same bytes. */
static void test_fixed_fuzz_mutated_encodings(void **state) {
    (void)state;
    mw_serdes_t sd;
    sd_setup(&sd);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    unsigned ok = 0, bad = 0;
    for (int it = 0; it < 20000; it++) {
        uint8_t buf[96];
        ssize_t n;
        int pick = (int)(rng_next(&rng) % (NCASES + 2));
        if (pick < NCASES) {
            all_kinds_t m;
            make_case(&m, pick);
            n = all_kinds_encode(&sd, &m, buf, sizeof buf);
        } else if (pick == NCASES) {
            ping_t pg = {rng_next(&rng), rng_next(&rng)};
            n = ping_encode(&sd, &pg, buf, sizeof buf);
        } else {
            heartbeat_t hb = {true};
            n = heartbeat_encode(&sd, &hb, buf, sizeof buf);
        }
        assert_true(n > 0);
        size_t len = (size_t)n;
        int muts = 1 + (int)(rng_next(&rng) % 3);
        for (int k = 0; k < muts; k++) {
            uint64_t r = rng_next(&rng);
            size_t at = len ? (size_t)(r >> 8) % len : 0;
            switch (r % 5) {
            case 0: if (len) buf[at] ^= (uint8_t)(1u << ((r >> 40) % 8)); break;
            case 1: if (len) buf[at] = (uint8_t)(r >> 48); break;
            case 2: len = (size_t)(r >> 16) % (len + 1); break;
            case 3: if (len < sizeof buf) buf[len++] = (uint8_t)(r >> 32); break;
            default: buf[0] = (uint8_t)(r >> 24) % 5; buf[1] = 0; break; /* another tag */
            }
        }
        mw_guard_t g;
        const uint8_t *in = mw_guard_copy(&g, buf, len);
        test_msg_t out;
        const mw_schema_t *s = NULL;
        ssize_t r = mw_serdes_decode(&sd, in, len, &test_protocol, &s, &out, sizeof out);
        if (r >= 0) {
            assert_int_equal(r, len);
            uint8_t again[96];
            assert_int_equal(mw_serdes_encode(&sd, s, &out, again, sizeof again), len);
            assert_memory_equal(again, in, len);
            ok++;
        } else {
            assert_true(r > MW__ELAST);
            bad++;
        }
        mw_guard_free(&g);
    }
    assert_true(ok > 100);
    assert_true(bad > 100);
    mw_serdes_fini(&sd);
}

static void test_fixed_steady_state_allocates_nothing(void **state) {
    (void)state;
    assert_true(mw_alloc_counting_works());
    mw_serdes_t sd;
    sd_setup(&sd);
    all_kinds_t m;
    make_case(&m, 5);
    uint8_t buf[64];
    test_msg_t out;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(all_kinds_encode(&sd, &m, buf, sizeof buf), all_kinds_FIXED_SIZE);
        assert_int_equal(decode(&sd, buf, all_kinds_FIXED_SIZE, &out), all_kinds_FIXED_SIZE);
    }
    int failures = 0;
    uint64_t before = mw_alloc_count();
    for (int i = 0; i < 1000; i++) {
        m.u64 = (uint64_t)i;
        failures += all_kinds_encode(&sd, &m, buf, sizeof buf) != all_kinds_FIXED_SIZE;
        failures += decode(&sd, buf, all_kinds_FIXED_SIZE, &out) != all_kinds_FIXED_SIZE;
        failures += out.all_kinds.u64 != (uint64_t)i;
    }
    uint64_t after = mw_alloc_count();
    assert_int_equal(failures, 0);
    assert_int_equal(after - before, 0);
    mw_serdes_fini(&sd);
}

/* CHARS of every size around the word-at-a-time path (<= 16 bytes) against
 * the rule done byte by byte: on the wire, the text, then only NULs, valid
 * UTF-8; from the struct, the bytes before the first NUL, NUL-padded. */
#define CHARS_FIELDS(F) \
    F(CHARS, c1, 1) F(CHARS, c3, 3) F(CHARS, c4, 4) F(CHARS, c7, 7) F(CHARS, c8, 8) \
    F(CHARS, c9, 9) F(CHARS, c15, 15) F(CHARS, c16, 16) F(CHARS, c17, 17)
MW_MESSAGE(charsmsg, 9, CHARS_FIELDS)
#define CHARS_MSGS(M) M(charsmsg)
MW_PROTOCOL(charsproto, CHARS_MSGS)

static int ref_chars_wire(const uint8_t *p, size_t n) {
    size_t len = 0;
    while (len < n && p[len]) len++;
    for (size_t i = len; i < n; i++)
        if (p[i]) return MW_EPROTO;
    return mw__utf8_valid(p, len) ? 0 : MW_EUTF8;
}

static void random_chars(uint8_t *p, size_t n, uint64_t *rng) {
    static const char *const pieces[] = {"a", "Z", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                                         "\xff", "\x80", "\0", "\xe2\x82"};
    size_t k = 0;
    size_t stop = (size_t)(rng_next(rng) % (n + 2));
    while (k < n && k < stop) {
        const char *pc = pieces[rng_next(rng) % 9];
        size_t pl = pc[0] ? strlen(pc) : 1;
        for (size_t i = 0; i < pl && k < n; i++) p[k++] = (uint8_t)pc[i];
    }
    while (k < n) p[k++] = rng_next(rng) % 8 ? 0 : (uint8_t)('a' + rng_next(rng) % 26);
}

static void test_fixed_chars_of_every_size_follow_the_rule(void **state) {
    (void)state;
    mw_serdes_t sd;
    assert_int_equal(mw_serdes_init(&sd, "fixed", 0), 0);
    const mw_schema_t *s = charsmsg_schema();
    uint64_t rng = 0x1F83D9ABFB41BD6Bull;
    for (int it = 0; it < 20000; it++) {
        const mw_field_t *f = &s->fields[it % s->nfields];
        /* decode: a valid message with field f replaced by random bytes */
        uint8_t wire[charsmsg_FIXED_SIZE];
        memset(wire, 0, sizeof wire);
        wire[0] = 9;
        size_t off = 2;
        for (unsigned i = 0; &s->fields[i] != f; i++) off += s->fields[i].size;
        random_chars(wire + off, f->size, &rng);
        charsmsg_t out;
        const mw_schema_t *so = NULL;
        ssize_t r = mw_serdes_decode(&sd, wire, sizeof wire, &charsproto_protocol, &so, &out, sizeof out);
        int want = ref_chars_wire(wire + off, f->size);
        if (want) {
            assert_int_equal(r, want);
        } else {
            assert_int_equal(r, sizeof wire);
            assert_memory_equal((uint8_t *)&out + f->offset, wire + off, f->size);
        }
        /* encode: the struct's field holds random bytes */
        charsmsg_t m;
        memset(&m, 0, sizeof m);
        uint8_t *src = (uint8_t *)&m + f->offset;
        random_chars(src, f->size, &rng);
        for (size_t i = 0; i < f->size; i++)
            if (rng_next(&rng) % 4 == 0) src[i] = (uint8_t)rng_next(&rng); /* junk after the NUL */
        uint8_t enc[charsmsg_FIXED_SIZE + 8];
        r = charsmsg_encode(&sd, &m, enc, sizeof enc);
        size_t len = mw__chars_len(f, &m);
        if (!mw__utf8_valid(src, len)) {
            assert_int_equal(r, MW_EUTF8);
            continue;
        }
        assert_int_equal(r, sizeof wire);
        assert_memory_equal(enc + off, src, len);
        for (size_t i = len; i < f->size; i++) assert_int_equal(enc[off + i], 0);
    }
    mw_serdes_fini(&sd);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_round_trips_edge_values_bit_exact),
        cmocka_unit_test(test_fixed_encodes_golden_bytes),
        cmocka_unit_test(test_fixed_decode_returns_each_error_code),
        cmocka_unit_test(test_fixed_encode_rejects_values_the_wire_cannot_carry),
        cmocka_unit_test(test_fixed_encode_too_big_for_every_short_cap),
        cmocka_unit_test(test_fixed_decode_fails_at_every_prefix_against_guard_page),
        cmocka_unit_test(test_fixed_fuzz_mutated_encodings),
        cmocka_unit_test(test_fixed_steady_state_allocates_nothing),
        cmocka_unit_test(test_fixed_chars_of_every_size_follow_the_rule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
