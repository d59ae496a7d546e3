/* test_frame.c - the frame codecs: round trips, every split point against a
 * guard page, length limits checked from the header alone, and the encoder's
 * argument checks. */
#include "mw_test.h"
#include "mw_err.h"
#include "mw_frame.h"
#include "frame_impl.h"

#include <string.h>

typedef struct {
    const void *p;
    size_t n;
} payload_t;

static mw__framer_t framer(mw_frame_kind_t kind, uint32_t max_len, uint32_t fixed_len) {
    mw__framer_t f;
    assert_int_equal(mw__framer_init(&f, kind, max_len, fixed_len), 0);
    return f;
}

/* Encodes the payloads back to back into wire and records where each frame
 * ends. Returns the total length. */
static size_t build_stream(const mw__framer_t *f, const payload_t *pl, size_t npl, uint8_t *wire,
                           size_t cap, size_t *ends) {
    size_t off = 0;
    for (size_t i = 0; i < npl; i++) {
        ssize_t r = mw__frame_encode(f, pl[i].p, pl[i].n, wire + off, cap - off);
        assert_true(r > 0);
        assert_int_equal((size_t)r, mw__frame_prefix_len(f) + pl[i].n + mw__frame_suffix_len(f));
        off += (size_t)r;
        ends[i] = off;
    }
    return off;
}

/* Feeds every prefix wire[0..k) placed against a guard page and decodes as
 * many frames as it holds: exactly the frames that end at or before k must
 * come out, in order, then MW_EAGAIN. */
static void check_every_split(const mw__framer_t *f, const uint8_t *wire, size_t n,
                              const payload_t *pl, size_t npl, const size_t *ends) {
    for (size_t k = 0; k <= n; k++) {
        mw_guard_t g;
        const uint8_t *in = mw_guard_copy(&g, wire, k);
        size_t off = 0, j = 0, want = 0;
        while (want < npl && ends[want] <= k) want++;
        for (;;) {
            const uint8_t *p = NULL;
            size_t plen = (size_t)-1;
            ssize_t r = mw__frame_decode(f, in + off, k - off, &p, &plen);
            if (r == MW_EAGAIN) break;
            assert_true(r > 0);
            assert_true(j < npl);
            assert_int_equal(off + (size_t)r, ends[j]);
            assert_int_equal(plen, pl[j].n);
            assert_true(p >= in + off && p + plen <= in + k);
            if (plen) assert_memory_equal(p, pl[j].p, plen);
            off += (size_t)r;
            j++;
        }
        assert_int_equal(j, want);
        if (k == n) assert_int_equal(off, n);
        mw_guard_free(&g);
    }
}

static uint8_t big[300];

static void fill_big(void) {
    for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)('a' + i % 26);
}

static void split_test(mw_frame_kind_t kind, uint32_t max_len) {
    fill_big();
    const payload_t pl[] = {{"hello", 5}, {"", 0}, {"x", 1}, {big, sizeof big}, {"world!", 6}};
    size_t npl = sizeof pl / sizeof pl[0];
    uint8_t wire[512];
    size_t ends[8];
    mw__framer_t f = framer(kind, max_len, 0);
    size_t n = build_stream(&f, pl, npl, wire, sizeof wire, ends);
    check_every_split(&f, wire, n, pl, npl, ends);
}

/* ---- every split point ------------------------------------------------------ */

static void test_frame_u16_decode_at_every_split(void **state) {
    (void)state;
    split_test(MW_FRAME_U16BE, 0);
}

static void test_frame_u32_decode_at_every_split(void **state) {
    (void)state;
    split_test(MW_FRAME_U32BE, 1000);
}

static void test_frame_line_decode_at_every_split(void **state) {
    (void)state;
    split_test(MW_FRAME_LINE, 300); /* the 300-byte line is exactly at the limit */
}

static void test_frame_fixed_decode_at_every_split(void **state) {
    (void)state;
    const payload_t pl[] = {{"abcd", 4}, {"\0\n\xff\x01", 4}, {"wxyz", 4}};
    uint8_t wire[64];
    size_t ends[3];
    mw__framer_t f = framer(MW_FRAME_FIXED, 0, 4);
    size_t n = build_stream(&f, pl, 3, wire, sizeof wire, ends);
    assert_int_equal(n, 12);
    check_every_split(&f, wire, n, pl, 3, ends);
}

static void test_frame_none_takes_whole_input_at_every_length(void **state) {
    (void)state;
    uint8_t wire[40];
    for (size_t i = 0; i < sizeof wire; i++) wire[i] = (uint8_t)(i * 7);
    mw__framer_t f = framer(MW_FRAME_NONE, sizeof wire, 0);
    for (size_t k = 0; k <= sizeof wire; k++) {
        mw_guard_t g;
        const uint8_t *in = mw_guard_copy(&g, wire, k);
        const uint8_t *p = NULL;
        size_t plen = 0;
        ssize_t r = mw__frame_decode(&f, in, k, &p, &plen);
        if (k == 0) {
            assert_int_equal(r, MW_EAGAIN);
        } else {
            assert_int_equal(r, (ssize_t)k);
            assert_ptr_equal(p, in);
            assert_int_equal(plen, k);
        }
        mw_guard_free(&g);
    }
}

/* ---- round trips -------------------------------------------------------------- */

static void round_trip(const mw__framer_t *f, const void *payload, size_t plen) {
    uint8_t out[600], seal_out[600];
    ssize_t n = mw__frame_encode(f, payload, plen, out, sizeof out);
    assert_int_equal(n, (ssize_t)(mw__frame_prefix_len(f) + plen + mw__frame_suffix_len(f)));

    /* The zero-copy path must produce the same bytes. */
    memset(seal_out, 0xAA, sizeof seal_out);
    if (plen) memcpy(seal_out + mw__frame_prefix_len(f), payload, plen);
    assert_int_equal(mw__frame_seal(f, seal_out, plen), n);
    if (n > 0) assert_memory_equal(seal_out, out, (size_t)n);

    if (n == 0) return; /* NONE with an empty payload: nothing on the wire */
    mw_guard_t g;
    const uint8_t *in = mw_guard_copy(&g, out, (size_t)n);
    const uint8_t *p = NULL;
    size_t got = (size_t)-1;
    assert_int_equal(mw__frame_decode(f, in, (size_t)n, &p, &got), n);
    assert_int_equal(got, plen);
    assert_ptr_equal(p, in + mw__frame_prefix_len(f));
    if (plen) assert_memory_equal(p, payload, plen);
    mw_guard_free(&g);
}

static void test_frame_round_trip_every_kind(void **state) {
    (void)state;
    fill_big();
    const mw_frame_kind_t kinds[] = {MW_FRAME_U16BE, MW_FRAME_U32BE, MW_FRAME_LINE, MW_FRAME_NONE};
    for (size_t k = 0; k < 4; k++) {
        mw__framer_t f = framer(kinds[k], 300, 0);
        round_trip(&f, "ping", 4);
        round_trip(&f, "", 0);
        round_trip(&f, big, 255);
        round_trip(&f, big, 256);
        round_trip(&f, big, 300); /* exactly max_len */
    }
    mw__framer_t f = framer(MW_FRAME_FIXED, 0, 8);
    round_trip(&f, "\0\1\2\n\4\5\6\xff", 8); /* FIXED carries any byte */
}

static void test_frame_headers_are_big_endian(void **state) {
    (void)state;
    fill_big();
    uint8_t out[400];
    mw__framer_t f16 = framer(MW_FRAME_U16BE, 0, 0);
    assert_int_equal(mw__frame_encode(&f16, big, 0x12C, out, sizeof out), 0x12C + 2);
    assert_int_equal(out[0], 0x01);
    assert_int_equal(out[1], 0x2C);
    mw__framer_t f32 = framer(MW_FRAME_U32BE, 0, 0);
    assert_int_equal(mw__frame_encode(&f32, big, 0x12C, out, sizeof out), 0x12C + 4);
    assert_memory_equal(out, "\x00\x00\x01\x2C", 4);
    mw__framer_t fl = framer(MW_FRAME_LINE, 0, 0);
    assert_int_equal(mw__frame_encode(&fl, "ab", 2, out, sizeof out), 3);
    assert_memory_equal(out, "ab\n", 3);
}

static void test_frame_zero_length_payloads(void **state) {
    (void)state;
    const uint8_t *p = NULL;
    size_t plen = 99;
    mw__framer_t f16 = framer(MW_FRAME_U16BE, 0, 0);
    mw_guard_t g;
    const uint8_t *in = mw_guard_copy(&g, "\0\0", 2);
    assert_int_equal(mw__frame_decode(&f16, in, 2, &p, &plen), 2);
    assert_int_equal(plen, 0);
    assert_ptr_equal(p, in + 2);
    mw_guard_free(&g);

    mw__framer_t f32 = framer(MW_FRAME_U32BE, 0, 0);
    in = mw_guard_copy(&g, "\0\0\0\0", 4);
    plen = 99;
    assert_int_equal(mw__frame_decode(&f32, in, 4, &p, &plen), 4);
    assert_int_equal(plen, 0);
    mw_guard_free(&g);

    mw__framer_t fl = framer(MW_FRAME_LINE, 0, 0);
    in = mw_guard_copy(&g, "\n", 1);
    plen = 99;
    assert_int_equal(mw__frame_decode(&fl, in, 1, &p, &plen), 1);
    assert_int_equal(plen, 0);
    assert_ptr_equal(p, in);
    mw_guard_free(&g);

    uint8_t out[8];
    assert_int_equal(mw__frame_encode(&f16, NULL, 0, out, sizeof out), 2);
    assert_memory_equal(out, "\0\0", 2);
    assert_int_equal(mw__frame_encode(&fl, NULL, 0, out, sizeof out), 1);
    assert_int_equal(out[0], '\n');
    mw__framer_t fn = framer(MW_FRAME_NONE, 0, 0);
    assert_int_equal(mw__frame_encode(&fn, NULL, 0, out, 0), 0);
}

/* ---- limits --------------------------------------------------------------------- */

static ssize_t decode_guarded(const mw__framer_t *f, const void *bytes, size_t n) {
    mw_guard_t g;
    const uint8_t *in = mw_guard_copy(&g, bytes, n);
    const uint8_t *p = NULL;
    size_t plen = 0;
    ssize_t r = mw__frame_decode(f, in, n, &p, &plen);
    mw_guard_free(&g);
    return r;
}

static void test_frame_oversized_length_rejected_from_header_alone(void **state) {
    (void)state;
    mw__framer_t f16 = framer(MW_FRAME_U16BE, 100, 0);
    assert_int_equal(decode_guarded(&f16, "\xff", 1), MW_EAGAIN);
    assert_int_equal(decode_guarded(&f16, "\xff\xff", 2), MW_ETOOBIG);
    assert_int_equal(decode_guarded(&f16, "\x00\x65", 2), MW_ETOOBIG); /* 101 */
    assert_int_equal(decode_guarded(&f16, "\x00\x64", 2), MW_EAGAIN);  /* 100: wait */

    mw__framer_t f32 = framer(MW_FRAME_U32BE, 0, 0);
    assert_int_equal(decode_guarded(&f32, "\xff\xff\xff", 3), MW_EAGAIN);
    assert_int_equal(decode_guarded(&f32, "\xff\xff\xff\xff", 4), MW_ETOOBIG);
    assert_int_equal(decode_guarded(&f32, "\x01\x00\x00\x01", 4), MW_ETOOBIG); /* 16 MiB + 1 */
    assert_int_equal(decode_guarded(&f32, "\x01\x00\x00\x00", 4), MW_EAGAIN);  /* 16 MiB */

    mw__framer_t f32s = framer(MW_FRAME_U32BE, 10, 0);
    assert_int_equal(decode_guarded(&f32s, "\x00\x00\x00\x0b" "0123456789a", 15), MW_ETOOBIG);

    mw__framer_t fn = framer(MW_FRAME_NONE, 4, 0);
    assert_int_equal(decode_guarded(&fn, "abcd", 4), 4);
    assert_int_equal(decode_guarded(&fn, "abcde", 5), MW_ETOOBIG);
}

static void test_frame_line_without_newline_over_max_is_too_big(void **state) {
    (void)state;
    mw__framer_t f = framer(MW_FRAME_LINE, 8, 0);
    assert_int_equal(decode_guarded(&f, "", 0), MW_EAGAIN);
    assert_int_equal(decode_guarded(&f, "12345678", 8), MW_EAGAIN);
    assert_int_equal(decode_guarded(&f, "123456789", 9), MW_ETOOBIG);
    assert_int_equal(decode_guarded(&f, "12345678\n", 9), 9);
    assert_int_equal(decode_guarded(&f, "123456789\n", 10), MW_ETOOBIG);
    /* A newline far beyond the limit does not rescue the line. */
    assert_int_equal(decode_guarded(&f, "123456789012345678901234\n", 25), MW_ETOOBIG);
    /* Only the first line matters. */
    assert_int_equal(decode_guarded(&f, "12\n456789012345", 15), 3);
}

static void test_frame_line_payload_with_newline_rejected(void **state) {
    (void)state;
    mw__framer_t f = framer(MW_FRAME_LINE, 0, 0);
    uint8_t out[32];
    assert_int_equal(mw__frame_encode(&f, "ab\ncd", 5, out, sizeof out), MW_EINVAL);
    assert_int_equal(mw__frame_encode(&f, "\n", 1, out, sizeof out), MW_EINVAL);
    memcpy(out, "abc\n", 4);
    assert_int_equal(mw__frame_seal(&f, out, 4), MW_EINVAL);
    assert_int_equal(mw__frame_seal(&f, out, 3), 4);
    assert_memory_equal(out, "abc\n", 4);
}

static void test_frame_fixed_wrong_length(void **state) {
    (void)state;
    mw__framer_t f = framer(MW_FRAME_FIXED, 16, 4);
    uint8_t out[32];
    assert_int_equal(mw__frame_encode(&f, "abc", 3, out, sizeof out), MW_EINVAL);
    assert_int_equal(mw__frame_encode(&f, "abcde", 5, out, sizeof out), MW_EINVAL);
    assert_int_equal(mw__frame_encode(&f, "abcd", 4, out, sizeof out), 4);
    assert_int_equal(mw__frame_seal(&f, out, 5), MW_EINVAL);
    assert_int_equal(mw__frame_seal(&f, out, 17), MW_ETOOBIG);
    assert_int_equal(decode_guarded(&f, "abc", 3), MW_EAGAIN);
    assert_int_equal(decode_guarded(&f, "abcdefg", 7), 4);
}

static void test_frame_encode_checks_cap_and_max(void **state) {
    (void)state;
    const mw_frame_kind_t kinds[] = {MW_FRAME_U16BE, MW_FRAME_U32BE, MW_FRAME_LINE, MW_FRAME_NONE};
    for (size_t k = 0; k < 4; k++) {
        mw__framer_t f = framer(kinds[k], 10, 0);
        size_t total = mw__frame_prefix_len(&f) + 5 + mw__frame_suffix_len(&f);
        uint8_t tmp[32] = {0};
        mw_guard_t g;
        /* Exactly enough room, with a guard page right after: no over-write. */
        uint8_t *out = mw_guard_copy(&g, tmp, total);
        assert_int_equal(mw__frame_encode(&f, "hello", 5, out, total), (ssize_t)total);
        assert_int_equal(mw__frame_encode(&f, "hello", 5, out, total - 1), MW_ETOOBIG);
        assert_int_equal(mw__frame_encode(&f, "hello", 5, out, 0), MW_ETOOBIG);
        mw_guard_free(&g);
        assert_int_equal(mw__frame_encode(&f, "hello world", 11, tmp, sizeof tmp), MW_ETOOBIG);
        assert_int_equal(mw__frame_seal(&f, tmp, 11), MW_ETOOBIG);
    }
    /* The prefix alone does not fit. */
    mw__framer_t f = framer(MW_FRAME_U32BE, 0, 0);
    uint8_t out[3];
    assert_int_equal(mw__frame_encode(&f, NULL, 0, out, sizeof out), MW_ETOOBIG);
}

/* ---- configuration ----------------------------------------------------------------- */

static void test_frame_framer_init_validates(void **state) {
    (void)state;
    mw__framer_t f;
    assert_int_equal(mw__framer_init(&f, MW_FRAME_U16BE, 65536, 0), MW_EINVAL);
    assert_int_equal(mw__framer_init(&f, MW_FRAME_U16BE, 65535, 0), 0);
    assert_int_equal(f.max_len, 65535);
    assert_int_equal(mw__framer_init(&f, MW_FRAME_U16BE, 0, 0), 0);
    assert_int_equal(f.max_len, 65535);
    assert_int_equal(mw__framer_init(&f, MW_FRAME_U32BE, 0, 0), 0);
    assert_int_equal(f.max_len, 16u * 1024 * 1024);
    assert_int_equal(f.kind, MW_FRAME_U32BE);
    assert_int_equal(mw__framer_init(&f, MW_FRAME_U32BE, 100000, 0), 0);
    assert_int_equal(f.max_len, 100000);
    assert_int_equal(mw__framer_init(&f, MW_FRAME_LINE, 0, 0), 0);
    assert_int_equal(f.max_len, 16u * 1024 * 1024);
    assert_int_equal(mw__framer_init(&f, MW_FRAME_NONE, 0, 0), 0);
    assert_int_equal(f.max_len, 16u * 1024 * 1024);

    assert_int_equal(mw__framer_init(&f, MW_FRAME_FIXED, 100, 0), MW_EINVAL);
    assert_int_equal(mw__framer_init(&f, MW_FRAME_FIXED, 100, 101), MW_EINVAL);
    assert_int_equal(mw__framer_init(&f, MW_FRAME_FIXED, 100, 100), 0);
    assert_int_equal(f.fixed_len, 100);
    assert_int_equal(mw__framer_init(&f, MW_FRAME_FIXED, 0, 4096), 0);
    assert_int_equal(f.max_len, 16u * 1024 * 1024);
    assert_int_equal(f.fixed_len, 4096);

    assert_int_equal(mw__framer_init(&f, (mw_frame_kind_t)99, 0, 0), MW_EINVAL);
    assert_int_equal(mw__framer_init(&f, (mw_frame_kind_t)-1, 0, 0), MW_EINVAL);
    assert_int_equal(mw__framer_init(NULL, MW_FRAME_U16BE, 0, 0), MW_EINVAL);
}

static void test_frame_kind_name_parse(void **state) {
    (void)state;
    const struct { const char *name; mw_frame_kind_t kind; } t[] = {
        {"none", MW_FRAME_NONE}, {"u16", MW_FRAME_U16BE}, {"u32", MW_FRAME_U32BE},
        {"line", MW_FRAME_LINE}, {"fixed", MW_FRAME_FIXED},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        assert_int_equal(mw__frame_kind_parse(t[i].name), (int)t[i].kind);
        assert_string_equal(mw__frame_kind_name(t[i].kind), t[i].name);
    }
    const char *bad[] = {"", "U16", "u64", "u16 ", "lines", "fix", "NONE"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(mw__frame_kind_parse(bad[i]), MW_EINVAL);
    assert_int_equal(mw__frame_kind_parse(NULL), MW_EINVAL);
    assert_non_null(mw__frame_kind_name((mw_frame_kind_t)42));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_u16_decode_at_every_split),
        cmocka_unit_test(test_frame_u32_decode_at_every_split),
        cmocka_unit_test(test_frame_line_decode_at_every_split),
        cmocka_unit_test(test_frame_fixed_decode_at_every_split),
        cmocka_unit_test(test_frame_none_takes_whole_input_at_every_length),
        cmocka_unit_test(test_frame_round_trip_every_kind),
        cmocka_unit_test(test_frame_headers_are_big_endian),
        cmocka_unit_test(test_frame_zero_length_payloads),
        cmocka_unit_test(test_frame_oversized_length_rejected_from_header_alone),
        cmocka_unit_test(test_frame_line_without_newline_over_max_is_too_big),
        cmocka_unit_test(test_frame_line_payload_with_newline_rejected),
        cmocka_unit_test(test_frame_fixed_wrong_length),
        cmocka_unit_test(test_frame_encode_checks_cap_and_max),
        cmocka_unit_test(test_frame_framer_init_validates),
        cmocka_unit_test(test_frame_kind_name_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
