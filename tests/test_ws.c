/* test_ws.c - WebSocket: the frame codec at every split point against guard
 * pages, masking, the UTF-8 DFA, the accept key, the upgrade handshake byte
 * by byte and every way it can be refused, and the stream decorator over an
 * in-process pair (split into small chunks) and over TCP on 127.0.0.1: round
 * trips, fragments with interleaved control frames, close handshakes, every
 * protocol violation answered with its close code, batch reads, 1 MiB
 * messages, partial records and backpressure. */
#include "mw_test.h"

#include "mw_clock.h"
#include "mw_tcp.h"
#include "mw_tls.h"
#include "mw_ws.h"
#include "ws_impl.h"
#include "stream_impl.h"
#include "tcp_impl.h"
#include "tls_impl.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_NS (10 * MW_NS_PER_S)

static uint8_t pattern_byte(size_t i) { return (uint8_t)((i * 2654435761u) >> 13); }

/* ---- codec: headers ------------------------------------------------------------ */

static void check_decode_every_split(const uint8_t *frame, size_t hl, bool masked, const mw__ws_hdr_t *want) {
    for (size_t k = 0; k <= hl; k++) {
        mw_guard_t g;
        const uint8_t *p = mw_guard_copy(&g, frame, k);
        mw__ws_hdr_t h;
        memset(&h, 0xAA, sizeof h);
        ssize_t r = mw__ws_hdr_decode(p, k, masked, UINT64_MAX >> 1, &h);
        if (k < hl) {
            assert_int_equal(r, MW_EAGAIN);
        } else {
            assert_int_equal(r, (ssize_t)hl);
            assert_int_equal(h.fin, want->fin);
            assert_int_equal(h.opcode, want->opcode);
            assert_int_equal(h.masked, want->masked);
            assert_int_equal(h.rsv, 0);
            assert_true(h.len == want->len);
            assert_int_equal(h.hdr_len, hl);
            if (masked) assert_memory_equal(h.mask, want->mask, 4);
        }
        mw_guard_free(&g);
    }
}

static void test_hdr_roundtrips_every_length_encoding_at_every_split(void **state) {
    (void)state;
    const uint64_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, (UINT64_C(1) << 32) + 5, (UINT64_C(1) << 63) - 1};
    const size_t base_hl[] = {2, 2, 2, 4, 4, 4, 10, 10, 10};
    const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        for (int m = 0; m < 2; m++) {
            for (int fin = 0; fin < 2; fin++) {
                uint8_t buf[14];
                int op = fin ? MW_WS_BINARY : MW_WS_TEXT;
                size_t hl = mw__ws_hdr_encode(buf, fin, op, lens[i], m ? mask : NULL);
                assert_int_equal(hl, base_hl[i] + (m ? 4 : 0));
                mw__ws_hdr_t want = {.fin = fin, .opcode = (uint8_t)op, .masked = m, .len = lens[i]};
                memcpy(want.mask, mask, 4);
                check_decode_every_split(buf, hl, m, &want);
            }
        }
    }
    /* The bytes are exactly RFC 6455's: 0x81 0x05 "Hello" unmasked. */
    uint8_t b[14];
    assert_int_equal(mw__ws_hdr_encode(b, true, MW_WS_TEXT, 5, NULL), 2);
    assert_int_equal(b[0], 0x81);
    assert_int_equal(b[1], 0x05);
    assert_int_equal(mw__ws_hdr_encode(b, true, MW_WS_BINARY, 256, NULL), 4);
    assert_memory_equal(b, "\x82\x7E\x01\x00", 4);
    assert_int_equal(mw__ws_hdr_encode(b, true, MW_WS_BINARY, 65536, NULL), 10);
    assert_memory_equal(b, "\x82\x7F\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    assert_int_equal(mw__ws_hdr_encode(b, true, MW_WS_PING, 5, mask), 6);
    assert_memory_equal(b, "\x89\x85\x37\xfa\x21\x3d", 6);
}

/* The shortest prefix that already shows the violation must be rejected, and
 * so must the whole header: a decoder fails on its first bad byte. */
static void expect_proto(const uint8_t *h, size_t n, size_t first_bad, bool masked) {
    for (size_t k = first_bad; k <= n; k++) {
        mw_guard_t g;
        const uint8_t *p = mw_guard_copy(&g, h, k);
        mw__ws_hdr_t hd;
        ssize_t r = mw__ws_hdr_decode(p, k, masked, 1u << 30, &hd);
        if (r != MW_EPROTO) fail_msg("header %02x %02x... prefix %zu: got %zd, want MW_EPROTO", h[0], n > 1 ? h[1] : 0, k, r);
        mw_guard_free(&g);
    }
}

static void test_hdr_decode_rejects_each_violation_on_its_first_bad_byte(void **state) {
    (void)state;
    /* reserved bits, each one */
    expect_proto((const uint8_t *)"\xC1\x80\0\0\0\0", 6, 1, true);
    expect_proto((const uint8_t *)"\xA1\x80\0\0\0\0", 6, 1, true);
    expect_proto((const uint8_t *)"\x91\x80\0\0\0\0", 6, 1, true);
    /* unknown opcodes */
    for (unsigned op = 3; op <= 0xF; op++) {
        if (op >= 8 && op <= 0xA) continue;
        uint8_t h[6] = {(uint8_t)(0x80 | op), 0x80, 0, 0, 0, 0};
        expect_proto(h, 6, 1, true);
    }
    /* fragmented control frames */
    expect_proto((const uint8_t *)"\x09\x80\0\0\0\0", 6, 1, true);
    expect_proto((const uint8_t *)"\x08\x80\0\0\0\0", 6, 1, true);
    expect_proto((const uint8_t *)"\x0A\x80\0\0\0\0", 6, 1, true);
    /* control frames over 125 bytes */
    expect_proto((const uint8_t *)"\x89\xFE\x00\x7E\0\0\0\0", 8, 2, true);
    expect_proto((const uint8_t *)"\x88\xFF\0\0\0\0\0\0\0\x7E\0\0\0\0", 14, 2, true);
    /* wrong masking for the side */
    expect_proto((const uint8_t *)"\x81\x05", 2, 2, true);
    expect_proto((const uint8_t *)"\x81\x85\0\0\0\0", 6, 2, false);
    /* non-minimal lengths */
    expect_proto((const uint8_t *)"\x82\x7E\x00\x7D", 4, 4, false);
    expect_proto((const uint8_t *)"\x82\x7F\0\0\0\0\0\0\xFF\xFF", 10, 10, false);
    /* 64-bit length with the top bit set: known from its first byte */
    expect_proto((const uint8_t *)"\x82\x7F\x80\0\0\0\0\0\0\0", 10, 3, false);
    /* and a 125-byte ping is fine */
    mw__ws_hdr_t h;
    assert_int_equal(mw__ws_hdr_decode((const uint8_t *)"\x89\x7D", 2, false, 0, &h), 2);
    assert_int_equal(h.len, 125);
}

static void test_hdr_decode_checks_max_from_the_header_alone(void **state) {
    (void)state;
    uint8_t b[14];
    mw__ws_hdr_t h;
    size_t hl = mw__ws_hdr_encode(b, true, MW_WS_BINARY, 1001, NULL);
    assert_int_equal(mw__ws_hdr_decode(b, hl, false, 1000, &h), MW_ETOOBIG);
    assert_int_equal(mw__ws_hdr_decode(b, hl, false, 1001, &h), (ssize_t)hl);
    hl = mw__ws_hdr_encode(b, false, MW_WS_CONT, UINT64_C(1) << 40, NULL);
    assert_int_equal(mw__ws_hdr_decode(b, hl, false, 1u << 20, &h), MW_ETOOBIG);
    /* Before the mask has arrived, the length already decides. */
    uint8_t m[4] = {1, 2, 3, 4};
    hl = mw__ws_hdr_encode(b, true, MW_WS_TEXT, 70000, m);
    assert_int_equal(mw__ws_hdr_decode(b, hl - 4, true, 65536, &h), MW_ETOOBIG);
    /* Control frames are bounded by 125, not by max_len. */
    hl = mw__ws_hdr_encode(b, true, MW_WS_PING, 100, NULL);
    assert_int_equal(mw__ws_hdr_decode(b, hl, false, 10, &h), (ssize_t)hl);
}

static void test_mask_matches_bytewise_at_every_offset_length_and_alignment(void **state) {
    (void)state;
    const uint8_t mask[4] = {0x12, 0x34, 0xAB, 0xCD};
    uint8_t src[200], a[208], ref[200];
    for (size_t i = 0; i < sizeof src; i++) src[i] = pattern_byte(i);
    for (size_t align = 0; align < 8; align++) {
        for (size_t off = 0; off < 8; off++) {
            for (size_t n = 0; n <= 140; n++) {
                uint8_t *p = a + align;
                memcpy(p, src, n);
                for (size_t i = 0; i < n; i++) ref[i] = src[i] ^ mask[(off + i) & 3];
                mw__ws_mask(p, n, mask, off);
                assert_memory_equal(p, ref, n);
                mw__ws_mask(p, n, mask, off);
                assert_memory_equal(p, src, n);
            }
        }
    }
    /* Masking in pieces equals masking at once. */
    uint8_t whole[200], parts[200];
    memcpy(whole, src, 200);
    memcpy(parts, src, 200);
    mw__ws_mask(whole, 200, mask, 0);
    mw__ws_mask(parts, 13, mask, 0);
    mw__ws_mask(parts + 13, 90, mask, 13);
    mw__ws_mask(parts + 103, 97, mask, 103);
    assert_memory_equal(whole, parts, 200);
}

/* ---- UTF-8 -------------------------------------------------------------------------- */

/* Feeds all at once, byte by byte, and split at every point: the verdicts
 * must agree. Returns whether the bytes are complete, valid UTF-8. */
static bool utf8_all_ways(const uint8_t *p, size_t n) {
    mw__utf8_state_t u;
    mw__utf8_init(&u);
    bool once = mw__utf8_feed(&u, p, n) && mw__utf8_complete(&u);
    for (size_t k = 0; k <= n; k++) {
        mw_guard_t g1, g2;
        const uint8_t *a = mw_guard_copy(&g1, p, k);
        const uint8_t *b = mw_guard_copy(&g2, p + k, n - k);
        mw__utf8_init(&u);
        bool ok = mw__utf8_feed(&u, a, k);
        ok = ok && mw__utf8_feed(&u, b, n - k);
        assert_int_equal(ok && mw__utf8_complete(&u), once);
        mw_guard_free(&g1);
        mw_guard_free(&g2);
    }
    return once;
}

/* Index of the byte on which byte-by-byte feeding first fails, or -1. */
static int utf8_fail_at(const uint8_t *p, size_t n) {
    mw__utf8_state_t u;
    mw__utf8_init(&u);
    for (size_t i = 0; i < n; i++)
        if (!mw__utf8_feed(&u, p + i, 1)) return (int)i;
    return -1;
}

static void test_utf8_accepts_valid_text_and_boundaries(void **state) {
    (void)state;
    static const char *ok[] = {
        "", "hello", "\x7f", "\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf", /* U+D7FF */
        "\xee\x80\x80",                                                             /* U+E000 */
        "\xef\xbf\xbf", "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf",                     /* U+10FFFF */
        "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",                             /* kosme */
        "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!",
        "a long ascii run that crosses several eight byte words 0123456789 \xe2\x82\xac end",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (!utf8_all_ways((const uint8_t *)ok[i], strlen(ok[i]))) fail_msg("valid vector %zu rejected", i);
}

static void test_utf8_rejects_overlongs_surrogates_and_too_large_on_the_first_bad_byte(void **state) {
    (void)state;
    static const struct {
        const char *s;
        int at; /* index of the first byte that cannot be valid */
    } bad[] = {
        {"\xc0\x80", 0}, {"\xc1\xbf", 0},                          /* overlong 2-byte */
        {"\xe0\x80\x80", 1}, {"\xe0\x9f\xbf", 1},                  /* overlong 3-byte */
        {"\xf0\x80\x80\x80", 1}, {"\xf0\x8f\xbf\xbf", 1},          /* overlong 4-byte */
        {"\xed\xa0\x80", 1}, {"\xed\xbf\xbf", 1},                  /* surrogates */
        {"\xed\xa0\x80\xed\xb0\x80", 1},                           /* surrogate pair */
        {"\xf4\x90\x80\x80", 1}, {"\xf5\x80\x80\x80", 0},          /* over U+10FFFF */
        {"\xf8\x88\x80\x80\x80", 0}, {"\xfe", 0}, {"\xff", 0},     /* never valid */
        {"\x80", 0}, {"ab\xbf", 2},                                /* lone continuation */
        {"\xc2\x41", 1}, {"\xe1\x80\x41", 2}, {"\xf1\x80\x80\x41", 3}, /* cut short */
        /* Autobahn 6.3.1: kosme, then a surrogate, then more text */
        {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64", 12},
        {"0123456789abcdef\xc0", 16},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const uint8_t *p = (const uint8_t *)bad[i].s;
        size_t n = strlen(bad[i].s);
        if (utf8_all_ways(p, n)) fail_msg("invalid vector %zu accepted", i);
        int at = utf8_fail_at(p, n);
        if (at != bad[i].at) fail_msg("vector %zu failed at byte %d, want %d", i, at, bad[i].at);
        /* once failed, it stays failed */
        mw__utf8_state_t u;
        mw__utf8_init(&u);
        assert_false(mw__utf8_feed(&u, p, n));
        assert_false(mw__utf8_feed(&u, (const uint8_t *)"a", 1));
    }
}

static void test_utf8_truncated_at_every_byte_is_incomplete_not_invalid(void **state) {
    (void)state;
    const char *s = "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
    size_t n = strlen(s);
    for (size_t k = 0; k <= n; k++) {
        mw_guard_t g;
        const uint8_t *p = mw_guard_copy(&g, s, k);
        mw__utf8_state_t u;
        mw__utf8_init(&u);
        assert_true(mw__utf8_feed(&u, p, k));
        bool boundary = k == 0 || k == 2 || k == 5 || k == 9;
        assert_int_equal(mw__utf8_complete(&u), boundary);
        mw_guard_free(&g);
    }
}

/* Reference: decode by the book and check the code point's range. */
static bool ref_utf8(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        size_t k = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!k || i + k > n) return false;
        uint32_t cp = k == 1 ? c : k == 2 ? c & 0x1Fu : k == 3 ? c & 0x0Fu : c & 0x07u;
        for (size_t j = 1; j < k; j++) {
            if ((p[i + j] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (p[i + j] & 0x3Fu);
        }
        static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[k] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += k;
    }
    return true;
}

static void test_utf8_agrees_with_a_reference_decoder_on_all_short_sequences(void **state) {
    (void)state;
    uint8_t b[4];
    mw__utf8_state_t u;
    for (unsigned a = 0; a < 256; a++) {
        for (unsigned c = 0; c < 256; c++) {
            b[0] = (uint8_t)a, b[1] = (uint8_t)c;
            mw__utf8_init(&u);
            bool ok = mw__utf8_feed(&u, b, 2) && mw__utf8_complete(&u);
            if (ok != ref_utf8(b, 2)) fail_msg("%02x %02x: dfa %d", a, c, ok);
            if (a < 0xE0 || a > 0xEF) continue;
            for (unsigned d = 0; d < 256; d++) {
                b[2] = (uint8_t)d;
                mw__utf8_init(&u);
                ok = mw__utf8_feed(&u, b, 3) && mw__utf8_complete(&u);
                if (ok != ref_utf8(b, 3)) fail_msg("%02x %02x %02x: dfa %d", a, c, d, ok);
            }
        }
    }
    static const uint8_t tails[] = {0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF};
    for (unsigned a = 0xF0; a < 0x100; a++)
        for (unsigned c = 0; c < 256; c++)
            for (size_t i = 0; i < sizeof tails; i++)
                for (size_t j = 0; j < sizeof tails; j++) {
                    b[0] = (uint8_t)a, b[1] = (uint8_t)c, b[2] = tails[i], b[3] = tails[j];
                    mw__utf8_init(&u);
                    bool ok = mw__utf8_feed(&u, b, 4) && mw__utf8_complete(&u);
                    if (ok != ref_utf8(b, 4)) fail_msg("%02x %02x %02x %02x: dfa %d", a, c, b[2], b[3], ok);
                }
}

/* ---- accept key and handshake ----------------------------------------------------------- */

static void test_accept_key_is_the_rfc_6455_example(void **state) {
    (void)state;
    char out[29];
    mw__ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, out);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    char key[25];
    assert_int_equal(mw__ws_key_new(key), 0);
    assert_int_equal(strlen(key), 24);
    assert_true(mw__ws_key_valid(key, 24));
    assert_true(mw__ws_key_valid("dGhlIHNhbXBsZSBub25jZQ==", 24));
    assert_false(mw__ws_key_valid("dGhlIHNhbXBsZSBub25jZQ", 22));
    assert_false(mw__ws_key_valid("dGhlIHNhbXBsZSBub25jZSE=", 24)); /* 17 bytes */
    assert_false(mw__ws_key_valid("dGhlIHNhbXBsZSBub25j*Q==", 24));
}

static void test_head_end_found_byte_by_byte_and_bounded_by_max(void **state) {
    (void)state;
    const char *h = "GET / HTTP/1.1\r\nHost: a\r\n\r\nFRAMEBYTES";
    size_t hl = strlen("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), n = strlen(h);
    size_t scan = 0;
    for (size_t k = 0; k <= n; k++) {
        mw_guard_t g;
        const uint8_t *p = mw_guard_copy(&g, h, k);
        ssize_t r = mw__ws_head_end(p, k, 8192, &scan);
        if (k < hl) assert_int_equal(r, MW_EAGAIN);
        else assert_int_equal(r, (ssize_t)hl);
        if (r > 0) scan = 0; /* start over: the same answer each time */
        mw_guard_free(&g);
    }
    /* bare LF line endings */
    scan = 0;
    assert_int_equal(mw__ws_head_end((const uint8_t *)"GET / HTTP/1.1\nHost: a\n\nx", 25, 100, &scan), 24);
    /* over max: found too late, or not found within max */
    scan = 0;
    assert_int_equal(mw__ws_head_end((const uint8_t *)h, n, hl - 1, &scan), MW_ETOOBIG);
    scan = 0;
    assert_int_equal(mw__ws_head_end((const uint8_t *)h, 20, 20, &scan), MW_ETOOBIG);
    scan = 0;
    assert_int_equal(mw__ws_head_end((const uint8_t *)h, 20, 21, &scan), MW_EAGAIN);
}

static ssize_t build_req(char *out, size_t cap, const char *path, const char *proto, const char *key) {
    mw_ws_opts_t o;
    mw_ws_opts_init(&o);
    o.path = path;
    o.subprotocol = proto;
    o.origin = "http://example.com";
    o.extra_headers = "X-Test: 1\r\n";
    return mw__ws_request_build(out, cap, &o, "example.com:80", key);
}

static void test_handshake_request_and_response_round_trip_byte_by_byte(void **state) {
    (void)state;
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    char req[1024], resp[1024];
    ssize_t n = build_req(req, sizeof req, "/chat?room=1", "chat, superchat", key);
    assert_true(n > 0);
    assert_non_null(strstr(req, "GET /chat?room=1 HTTP/1.1\r\n"));
    assert_non_null(strstr(req, "\r\nSec-WebSocket-Version: 13\r\n"));
    assert_non_null(strstr(req, "\r\nOrigin: http://example.com\r\n"));
    assert_non_null(strstr(req, "\r\nX-Test: 1\r\n\r\n"));
    /* found one byte at a time, then parsed */
    size_t scan = 0;
    ssize_t hl = MW_EAGAIN;
    for (size_t k = 1; k <= (size_t)n && hl == MW_EAGAIN; k++) {
        mw_guard_t g;
        const uint8_t *p = mw_guard_copy(&g, req, k);
        hl = mw__ws_head_end(p, k, 8192, &scan);
        if (hl > 0) {
            mw__ws_req_t r;
            assert_int_equal(mw__ws_request_parse((const char *)p, (size_t)hl, "/chat", "superchat", &r), 101);
            assert_int_equal(r.key.n, 24);
            assert_memory_equal(r.key.p, key, 24);
            assert_int_equal(r.protocol.n, 9);
            assert_memory_equal(r.target.p, "/chat?room=1", 12);
            assert_int_equal(k, (size_t)n);
        }
        mw_guard_free(&g);
    }
    assert_int_equal(hl, n);
    mw__ws_str_t k = {key, 24}, proto = {"superchat", 9};
    ssize_t rn = mw__ws_response_build(resp, sizeof resp, 101, k, proto);
    assert_true(rn > 0);
    assert_non_null(strstr(resp, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    mw__ws_resp_t a;
    for (size_t i = 1; i <= (size_t)rn; i++) { /* the head is found only at its very end */
        scan = 0;
        assert_int_equal(mw__ws_head_end((const uint8_t *)resp, i, 8192, &scan), i < (size_t)rn ? MW_EAGAIN : rn);
    }
    assert_int_equal(mw__ws_response_parse(resp, (size_t)rn, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "chat, superchat", &a), 0);
    assert_int_equal(a.status, 101);
    assert_int_equal(a.protocol.n, 9);
    /* too small an output buffer, and values that would inject headers */
    assert_int_equal(build_req(req, 40, "/", NULL, key), MW_ETOOBIG);
    assert_int_equal(build_req(req, sizeof req, "no-slash", NULL, key), MW_EINVAL);
    assert_int_equal(build_req(req, sizeof req, "/a b", NULL, key), MW_EINVAL);
    assert_int_equal(build_req(req, sizeof req, "/", "x\r\nEvil: 1", key), MW_EINVAL);
}

static const char *GOOD_REQ_TAIL = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

/* Copies fmt into out with each "%s" replaced by sub. */
static void subst(char *out, size_t cap, const char *fmt, const char *sub) {
    size_t n = 0, sl = strlen(sub);
    for (const char *p = fmt; *p && n + 1 < cap; p++) {
        if (p[0] == '%' && p[1] == 's' && n + sl + 1 < cap) {
            memcpy(out + n, sub, sl);
            n += sl;
            p++;
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
}

static int req_status(const char *head) {
    mw__ws_req_t r;
    mw_guard_t g;
    size_t n = strlen(head);
    const char *p = (const char *)mw_guard_copy(&g, head, n);
    int st = mw__ws_request_parse(p, n, "/ws", "chat", &r);
    mw_guard_free(&g);
    return st;
}

static void test_handshake_request_each_defect_gets_its_http_status(void **state) {
    (void)state;
    static const struct {
        int status;
        const char *head;
    } cases[] = {
        {101, "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Version: 13\r\n%s\r\n"},
        {101, "GET /ws?x=1 HTTP/1.1\r\nhost: h\r\nUPGRADE: WebSocket\r\nconnection: keep-alive, Upgrade\r\n"
              "sec-websocket-version: 13\r\n%s\r\n"},
        {101, "GET /ws HTTP/1.1\nHost: h\nUpgrade: websocket\nConnection: upgrade\nSec-WebSocket-Version: 13\n%s\n"},
        {405, "POST /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Version: 13\r\n%s\r\n"},
        {400, "GET /ws HTTP/1.0\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Version: 13\r\n%s\r\n"},
        {404, "GET /other HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Version: 13\r\n%s\r\n"},
        {400, "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Version: 13\r\n%s\r\n"},
        {400, "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n%s\r\n"},
        {400, "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Version: 13\r\n%s\r\n"},
        {400, "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n"
              "Sec-WebSocket-Version: 13\r\n%s\r\n"},
        {400, "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgradex\r\n"
              "Sec-WebSocket-Version: 13\r\n%s\r\n"},
        {426, "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Version: 8\r\n%s\r\n"},
        {426, "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n%s\r\n"},
        {400, "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Version: 13\r\n\r\n"},
        {400, "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n\r\n"},
        {400, "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Version: 13\r\n%s%s\r\n"},
        {400, "GET /ws HTTP/1.1\r\nHost: h\r\nHost: i\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Version: 13\r\n%s\r\n"},
        {400, "GET /ws HTTP/1.1\r\nHost: h\r\nBad Name: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Version: 13\r\n%s\r\n"},
        {400, "GET /ws HTTP/1.1\r\nHost: h\r\nNoColon\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Version: 13\r\n%s\r\n"},
        {400, "GET /ws HTTP/1.1\r\nHost: h\r\n folded\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Version: 13\r\n%s\r\n"},
        {400, "GET  /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Version: 13\r\n%s\r\n"},
        {400, "GET http://h/ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Version: 13\r\n%s\r\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char head[1024];
        subst(head, sizeof head, cases[i].head, GOOD_REQ_TAIL);
        int st = req_status(head);
        if (st != cases[i].status) fail_msg("case %zu: status %d, want %d:\n%s", i, st, cases[i].status, head);
    }
    /* The subprotocol is chosen only if offered; others are declined, not refused. */
    mw__ws_req_t r;
    char head[1024];
    subst(head, sizeof head, "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: a, b\r\n%s\r\n", GOOD_REQ_TAIL);
    assert_int_equal(mw__ws_request_parse(head, strlen(head), NULL, "chat", &r), 101);
    assert_int_equal(r.protocol.n, 0);
    assert_int_equal(mw__ws_request_parse(head, strlen(head), NULL, "b", &r), 101);
    assert_int_equal(r.protocol.n, 1);
    /* error responses */
    char out[512];
    mw__ws_str_t none = {0};
    ssize_t n = mw__ws_response_build(out, sizeof out, 426, none, none);
    assert_true(n > 0);
    assert_non_null(strstr(out, "HTTP/1.1 426 Upgrade Required\r\n"));
    assert_non_null(strstr(out, "\r\nSec-WebSocket-Version: 13\r\n"));
    n = mw__ws_response_build(out, sizeof out, 431, none, none);
    assert_non_null(strstr(out, "HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    assert_int_equal(memcmp(out + n - 4, "\r\n\r\n", 4), 0);
    assert_int_equal(mw__ws_response_build(out, 20, 400, none, none), MW_ETOOBIG);
}

static void test_handshake_response_each_defect_is_a_protocol_error(void **state) {
    (void)state;
    const char *acc = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
    static const struct {
        int rc;
        int status;
        const char *head;
    } cases[] = {
        {0, 101, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"},
        {0, 101, "HTTP/1.1 101\r\nupgrade: WEBSOCKET\r\nconnection: upgrade\r\n"
                 "sec-websocket-accept:s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"},
        {0, 101, "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n"},
        {MW_EPROTO, 200, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
        {MW_EPROTO, 404, "HTTP/1.1 404 Not Found\r\n\r\n"},
        {MW_EPROTO, 0, "HTTP/1.1 1O1 Switching\r\n\r\n"},
        {MW_EPROTO, 0, "ICY 101\r\n\r\n"},
        {MW_EPROTO, 101, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"},
        {MW_EPROTO, 101, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"},
        {MW_EPROTO, 101, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"},
        {MW_EPROTO, 101, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"},
        {MW_EPROTO, 101, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: other\r\n\r\n"},
        {MW_EPROTO, 101, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                         "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mw__ws_resp_t r;
        mw_guard_t g;
        size_t n = strlen(cases[i].head);
        const char *p = (const char *)mw_guard_copy(&g, cases[i].head, n);
        int rc = mw__ws_response_parse(p, n, acc, "chat", &r);
        if (rc != cases[i].rc || r.status != cases[i].status)
            fail_msg("case %zu: rc %d status %d, want %d %d", i, rc, r.status, cases[i].rc, cases[i].status);
        if (rc) assert_non_null(r.why);
        mw_guard_free(&g);
    }
}

/* ---- decorator helpers -------------------------------------------------------------- */

static void idle_wait(mw_stream_t *s, int events) {
    if (mw__stream_fd(s) >= 0) mw__stream_wait(s, events, 2 * MW_NS_PER_MS);
    else sched_yield();
}

static void check_deadline(uint64_t dl, const char *what) {
    if (mw_now_ns() > dl) fail_msg("timed out: %s", what);
}

/* A record: [opcode] u32 BE length, payload. op < 0: no opcode byte. */
static size_t rec_put(uint8_t *out, int op, const void *p, size_t n) {
    size_t k = 0;
    if (op >= 0) out[k++] = (uint8_t)op;
    out[k] = (uint8_t)(n >> 24), out[k + 1] = (uint8_t)(n >> 16), out[k + 2] = (uint8_t)(n >> 8);
    out[k + 3] = (uint8_t)n;
    if (n && p) memcpy(out + k + 4, p, n); /* p NULL: the payload is already in place */
    return k + 4 + n;
}

/* Reads exactly n bytes of records from s (pumping `pump`'s pending writes). */
static void read_exact(mw_stream_t *s, mw_stream_t *pump, uint8_t *buf, size_t n) {
    uint64_t dl = mw_now_ns() + WAIT_NS;
    size_t got = 0;
    while (got < n) {
        ssize_t r = mw__stream_read(s, buf + got, n - got);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r != MW_EAGAIN) fail_msg("read after %zu of %zu bytes: %s (%s)", got, n, mw_errname((int)r), mw_stream_last_error(s));
        if (pump) mw__stream_writev(pump, NULL, 0);
        check_deadline(dl, "read_exact");
        idle_wait(s, MW_WANT_READ);
    }
}

/* Reads until the stream returns an error; records read on the way are
 * appended to buf (may be NULL when none are expected). Returns the error. */
static int read_until_error(mw_stream_t *s, mw_stream_t *pump, uint8_t *buf, size_t cap, size_t *got) {
    uint64_t dl = mw_now_ns() + WAIT_NS;
    uint8_t tmp[256];
    size_t g = 0;
    for (;;) {
        ssize_t r = buf ? mw__stream_read(s, buf + g, cap - g) : mw__stream_read(s, tmp, sizeof tmp);
        if (r > 0) {
            if (!buf) fail_msg("unexpected record of %zd bytes", r);
            g += (size_t)r;
            continue;
        }
        if (r != MW_EAGAIN) {
            if (got) *got = g;
            return (int)r;
        }
        if (pump) mw__stream_writev(pump, NULL, 0);
        check_deadline(dl, "read_until_error");
        idle_wait(s, MW_WANT_READ);
    }
}

/* Writes all records in p[0..n), flushing and waiting as needed. */
static void write_records(mw_stream_t *s, const uint8_t *p, size_t n) {
    uint64_t dl = mw_now_ns() + WAIT_NS;
    while (n) {
        ssize_t w = mw__stream_write(s, p, n);
        if (w > 0) {
            p += w, n -= (size_t)w;
            continue;
        }
        if (w != MW_EAGAIN && w != 0) fail_msg("write: %s (%s)", mw_errname((int)w), mw_stream_last_error(s));
        check_deadline(dl, "write_records");
        idle_wait(s, MW_WANT_WRITE);
    }
    while (mw__stream_want(s) & MW_WANT_WRITE) {
        ssize_t f = mw__stream_writev(s, NULL, 0);
        if (f == 0) break;
        if (f != MW_EAGAIN) fail_msg("flush: %s", mw_errname((int)f));
        check_deadline(dl, "flush");
        idle_wait(s, MW_WANT_WRITE);
    }
}

static void handshake_both(mw_stream_t *c, mw_stream_t *s) {
    uint64_t dl = mw_now_ns() + WAIT_NS;
    int rc = 0, rs = 0;
    while (rc != 1 || rs != 1) {
        if (rc != 1) rc = mw__stream_handshake(c);
        if (rs != 1) rs = mw__stream_handshake(s);
        if ((rc < 0 && rc != MW_EAGAIN) || (rs < 0 && rs != MW_EAGAIN))
            fail_msg("handshake: client %s (%s), server %s (%s)", mw_errname(rc), mw_stream_last_error(c),
                     mw_errname(rs), mw_stream_last_error(s));
        check_deadline(dl, "handshake");
        if (rc != 1) idle_wait(c, mw__stream_want(c) ? mw__stream_want(c) : MW_WANT_READ);
    }
}

typedef struct duo {
    mw_stream_t *c, *s; /* WebSocket client and server */
} duo_t;

static void duo_pair(duo_t *d, size_t cap, size_t chunk, const mw_ws_opts_t *co, const mw_ws_opts_t *so) {
    mw_stream_t *a, *b;
    mw_err_t err = {0};
    assert_int_equal(mw__pair_new(&a, &b, cap, chunk), 0);
    if (mw_ws_client_wrap(&d->c, a, co, &err) != 0) fail_msg("client wrap: %s", mw_err_text(&err));
    if (mw__ws_server_wrap(&d->s, b, so, &err) != 0) fail_msg("server wrap: %s", mw_err_text(&err));
    handshake_both(d->c, d->s);
}

static void duo_tcp(duo_t *d, const mw_ws_opts_t *co, const mw_ws_opts_t *so) {
    mw__listener_t *l;
    mw_err_t err = {0};
    if (mw__tcp_listen(&l, "127.0.0.1", "0", NULL, &err) != 0) fail_msg("listen: %s", mw_err_text(&err));
    char port[16];
    snprintf(port, sizeof port, "%d", mw__listener_port(l));
    mw_stream_t *c, *s = NULL;
    if (mw__tcp_connect(&c, "127.0.0.1", port, NULL, WAIT_NS, &err) != 0) fail_msg("connect: %s", mw_err_text(&err));
    uint64_t dl = mw_now_ns() + WAIT_NS;
    while (mw__listener_accept(l, &s, &err) == MW_EAGAIN) check_deadline(dl, "accept");
    assert_non_null(s);
    mw__listener_free(l);
    if (mw_ws_client_wrap(&d->c, c, co, &err) != 0) fail_msg("client wrap: %s", mw_err_text(&err));
    if (mw__ws_server_wrap(&d->s, s, so, &err) != 0) fail_msg("server wrap: %s", mw_err_text(&err));
    handshake_both(d->c, d->s);
}

static void duo_free(duo_t *d) {
    mw_stream_free(d->c);
    mw_stream_free(d->s);
}

/* ---- a raw peer: frames crafted by hand on a plain pair end ------------------------------ */

typedef struct raw {
    mw_stream_t *s;  /* the plain end */
    mw_stream_t *ws; /* the WebSocket end under test */
    bool client;     /* the raw side plays the client: it masks */
    uint8_t *buf;
    size_t len, cap;
} raw_t;

static void raw_send_bytes(raw_t *r, const void *p, size_t n) {
    if (mw__stream_write_all(r->s, p, n, WAIT_NS) != 0) fail_msg("raw write of %zu bytes failed", n);
}

/* Sends one frame; masked when the raw side is the client (or force_mask). */
static void raw_frame(raw_t *r, bool fin, int op, const void *p, size_t n) {
    uint8_t *f = malloc(14 + n + 1);
    const uint8_t mask[4] = {0xA1, 0x5B, 0x3C, 0x07};
    size_t hl = mw__ws_hdr_encode(f, fin, op, n, r->client ? mask : NULL);
    if (n) memcpy(f + hl, p, n);
    if (r->client) mw__ws_mask(f + hl, n, mask, 0);
    raw_send_bytes(r, f, hl + n);
    free(f);
}

static bool raw_fill(raw_t *r) {
    if (r->len == r->cap) {
        r->cap *= 2;
        r->buf = realloc(r->buf, r->cap);
    }
    ssize_t n = mw__stream_read(r->s, r->buf + r->len, r->cap - r->len);
    if (n > 0) r->len += (size_t)n;
    return n > 0;
}

/* The next frame the WebSocket end sent (pumping its pending writes). The
 * payload is unmasked into *pl (malloc'ed, caller frees). */
static void raw_next_frame(raw_t *r, mw__ws_hdr_t *h, uint8_t **pl) {
    uint64_t dl = mw_now_ns() + WAIT_NS;
    for (;;) {
        ssize_t hl = mw__ws_hdr_decode(r->buf, r->len, !r->client, UINT64_MAX >> 1, h);
        if (hl > 0 && r->len >= (size_t)hl + h->len) {
            *pl = malloc(h->len + 1);
            memcpy(*pl, r->buf + hl, h->len);
            if (h->masked) mw__ws_mask(*pl, h->len, h->mask, 0);
            size_t used = (size_t)hl + h->len;
            memmove(r->buf, r->buf + used, r->len - used);
            r->len -= used;
            return;
        }
        if (hl < 0 && hl != MW_EAGAIN) fail_msg("raw side got a malformed frame: %s", mw_errname((int)hl));
        if (raw_fill(r)) continue;
        mw__stream_writev(r->ws, NULL, 0);
        check_deadline(dl, "raw_next_frame");
        sched_yield();
    }
}

/* Skips frames up to the next close; returns its code (1005 if none). */
static int raw_close_code(raw_t *r) {
    for (;;) {
        mw__ws_hdr_t h;
        uint8_t *pl;
        raw_next_frame(r, &h, &pl);
        int code = h.len >= 2 ? pl[0] << 8 | pl[1] : 1005;
        free(pl);
        if (h.opcode == MW_WS_CLOSE) return code;
    }
}

static bool raw_nothing_pending(raw_t *r) {
    mw__stream_writev(r->ws, NULL, 0);
    while (raw_fill(r)) {}
    return r->len == 0;
}

/* Reads an HTTP head from the raw side; returns its length in r->buf. */
static size_t raw_read_head(raw_t *r, mw_stream_t *drive) {
    uint64_t dl = mw_now_ns() + WAIT_NS;
    size_t scan = 0;
    for (;;) {
        ssize_t e = mw__ws_head_end(r->buf, r->len, 65536, &scan);
        if (e > 0) return (size_t)e;
        if (raw_fill(r)) continue;
        if (drive) mw__stream_handshake(drive);
        check_deadline(dl, "raw_read_head");
        sched_yield();
    }
}

static void raw_consume(raw_t *r, size_t n) {
    memmove(r->buf, r->buf + n, r->len - n);
    r->len -= n;
}

static void raw_init(raw_t *r, bool raw_is_client, const mw_ws_opts_t *o, size_t cap, size_t chunk) {
    mw_stream_t *a, *b;
    mw_err_t err = {0};
    memset(r, 0, sizeof *r);
    assert_int_equal(mw__pair_new(&a, &b, cap, chunk), 0);
    r->s = a;
    r->client = raw_is_client;
    r->cap = 1 << 16;
    r->buf = malloc(r->cap);
    int rc = raw_is_client ? mw__ws_server_wrap(&r->ws, b, o, &err) : mw_ws_client_wrap(&r->ws, b, o, &err);
    if (rc != 0) fail_msg("wrap: %s", mw_err_text(&err));
}

/* Raw client: upgrade the WebSocket server under test. */
static void raw_client_upgrade(raw_t *r, const char *path) {
    char key[25], req[1024];
    assert_int_equal(mw__ws_key_new(key), 0);
    mw_ws_opts_t o;
    mw_ws_opts_init(&o);
    o.path = path;
    ssize_t n = mw__ws_request_build(req, sizeof req, &o, "localhost", key);
    assert_true(n > 0);
    raw_send_bytes(r, req, (size_t)n);
    size_t hl = raw_read_head(r, r->ws);
    char acc[29];
    mw__ws_accept_key(key, 24, acc);
    mw__ws_resp_t a;
    if (mw__ws_response_parse((const char *)r->buf, hl, acc, NULL, &a) != 0)
        fail_msg("server's response rejected: %s: %.*s", a.why, (int)hl, r->buf);
    raw_consume(r, hl);
    assert_int_equal(mw__stream_handshake(r->ws), 1);
}

/* Raw server: answer the WebSocket client's request, then send `after`. */
static void raw_server_upgrade(raw_t *r, const char *resp_override, const void *after, size_t after_n) {
    size_t hl = raw_read_head(r, r->ws);
    mw__ws_req_t q;
    assert_int_equal(mw__ws_request_parse((const char *)r->buf, hl, NULL, NULL, &q), 101);
    char resp[1024];
    ssize_t n;
    if (resp_override) {
        n = (ssize_t)strlen(resp_override);
        memcpy(resp, resp_override, (size_t)n);
    } else {
        n = mw__ws_response_build(resp, sizeof resp, 101, q.key, q.protocol);
    }
    assert_true(n > 0 && (size_t)n + after_n <= sizeof resp);
    if (after_n) memcpy(resp + n, after, after_n);
    raw_consume(r, hl);
    raw_send_bytes(r, resp, (size_t)n + after_n);
}

static void raw_free(raw_t *r) {
    mw_stream_free(r->ws);
    mw_stream_free(r->s);
    free(r->buf);
}

/* A WebSocket server (opts o) upgraded by a raw client over a pair. */
static void raw_server_setup(raw_t *r, const mw_ws_opts_t *o, size_t chunk) {
    raw_init(r, true, o, 4u << 20, chunk);
    raw_client_upgrade(r, "/");
}

static mw_ws_opts_t opcode_opts(void) {
    mw_ws_opts_t o;
    mw_ws_opts_init(&o);
    o.max_msg = 2u << 20;
    o.flags = MW_WS_RECORD_OPCODE;
    return o;
}

/* ---- decorator over a pair ---------------------------------------------------------------- */

static void test_ws_pair_round_trips_text_and_binary_records_in_small_chunks(void **state) {
    (void)state;
    mw_ws_opts_t co, so = opcode_opts();
    mw_ws_opts_init(&co);
    co.max_msg = 1u << 20;
    duo_t d;
    duo_pair(&d, 1 << 16, 7, &co, &so);
    assert_true(mw__is_ws(d.c) && mw__is_ws(d.s));
    assert_true(mw__stream_is_msg(d.c));
    assert_int_equal(mw__stream_handshake(d.s), 1);
    assert_int_equal(mw__stream_fd(d.c), -1);
    /* client -> server: text, binary, empty, per MSG_TEXT */
    uint8_t out[256], in[256], want[256];
    const uint8_t bin[] = {0, 1, 2, 0xff, 0x80};
    mw__ws_set_text(d.c, true);
    size_t n = rec_put(out, -1, "h\xc3\xa9llo", 6);
    write_records(d.c, out, n);
    mw__ws_set_text(d.c, false);
    n = rec_put(out, -1, bin, sizeof bin);
    n += rec_put(out + n, -1, NULL, 0);
    write_records(d.c, out, n);
    size_t wn = rec_put(want, MW_WS_TEXT, "h\xc3\xa9llo", 6);
    wn += rec_put(want + wn, MW_WS_BINARY, bin, sizeof bin);
    wn += rec_put(want + wn, MW_WS_BINARY, NULL, 0);
    read_exact(d.s, d.c, in, wn);
    assert_memory_equal(in, want, wn);
    /* server -> client: the opcode per record */
    n = rec_put(out, MW_WS_BINARY, bin, sizeof bin);
    n += rec_put(out + n, MW_WS_TEXT, "abc", 3);
    write_records(d.s, out, n);
    wn = rec_put(want, -1, bin, sizeof bin);
    wn += rec_put(want + wn, -1, "abc", 3);
    read_exact(d.c, d.s, in, wn);
    assert_memory_equal(in, want, wn);
    assert_int_equal(mw__stream_read(d.c, in, sizeof in), MW_EAGAIN);
    duo_free(&d);
}

static void test_ws_fragments_with_interleaved_control_frames_are_reassembled(void **state) {
    (void)state;
    mw_ws_opts_t o = opcode_opts();
    raw_t r;
    raw_server_setup(&r, &o, 5);
    raw_frame(&r, false, MW_WS_TEXT, "Hello, ", 7);
    raw_frame(&r, true, MW_WS_PING, "abc", 3);
    raw_frame(&r, false, MW_WS_CONT, "wor", 3);
    raw_frame(&r, true, MW_WS_PONG, "unsolicited", 11);
    raw_frame(&r, false, MW_WS_CONT, "", 0);
    raw_frame(&r, true, MW_WS_CONT, "ld \xe2\x82\xac", 6);
    raw_frame(&r, false, MW_WS_BINARY, "", 0);
    raw_frame(&r, false, MW_WS_CONT, "\x00\x01", 2);
    raw_frame(&r, true, MW_WS_CONT, "", 0);
    uint8_t in[64], want[64];
    size_t wn = rec_put(want, MW_WS_TEXT, "Hello, world \xe2\x82\xac", 16);
    wn += rec_put(want + wn, MW_WS_BINARY, "\x00\x01", 2);
    read_exact(r.ws, NULL, in, wn);
    assert_memory_equal(in, want, wn);
    assert_int_equal(mw__ws_pongs(r.ws), 1);
    /* the ping was answered with its payload, unmasked */
    mw__ws_hdr_t h;
    uint8_t *pl;
    raw_next_frame(&r, &h, &pl);
    assert_int_equal(h.opcode, MW_WS_PONG);
    assert_false(h.masked);
    assert_int_equal(h.len, 3);
    assert_memory_equal(pl, "abc", 3);
    free(pl);
    assert_true(raw_nothing_pending(&r));
    raw_free(&r);
}

static void test_ws_no_auto_pong_flag_leaves_pings_unanswered(void **state) {
    (void)state;
    mw_ws_opts_t o = opcode_opts();
    o.flags |= MW_WS_NO_AUTO_PONG;
    raw_t r;
    raw_server_setup(&r, &o, 0);
    raw_frame(&r, true, MW_WS_PING, "p", 1);
    raw_frame(&r, true, MW_WS_TEXT, "x", 1);
    uint8_t in[16], want[16];
    size_t wn = rec_put(want, MW_WS_TEXT, "x", 1);
    read_exact(r.ws, NULL, in, wn);
    assert_memory_equal(in, want, wn);
    assert_true(raw_nothing_pending(&r));
    raw_free(&r);
}

static void test_ws_ping_is_answered_and_pongs_are_counted(void **state) {
    (void)state;
    duo_t d;
    duo_pair(&d, 1 << 16, 3, NULL, NULL);
    assert_int_equal(mw__ws_ping(d.c, "hb", 2), 0);
    assert_int_equal(mw__ws_ping(d.c, NULL, 0), 0);
    uint8_t big[126] = {0}, in[16];
    assert_int_equal(mw__ws_ping(d.c, big, 126), MW_EINVAL);
    assert_int_equal(mw__ws_ping(d.s, big, 125), 0);
    uint64_t dl = mw_now_ns() + WAIT_NS;
    while (mw__ws_pongs(d.c) < 2 || mw__ws_pongs(d.s) < 1) {
        assert_int_equal(mw__stream_read(d.s, in, sizeof in), MW_EAGAIN);
        assert_int_equal(mw__stream_read(d.c, in, sizeof in), MW_EAGAIN);
        check_deadline(dl, "pongs");
    }
    assert_int_equal(mw__ws_pongs(d.c), 2);
    assert_int_equal(mw__ws_pongs(d.s), 1);
    duo_free(&d);
}

static void close_both_ways(bool client_first) {
    mw_ws_opts_t co, so;
    mw_ws_opts_init(&co);
    mw_ws_opts_init(&so);
    co.max_msg = so.max_msg = 1 << 16;
    duo_t d;
    duo_pair(&d, 1 << 16, 11, &co, &so);
    mw_stream_t *a = client_first ? d.c : d.s, *b = client_first ? d.s : d.c;
    uint8_t out[64], in[64];
    size_t n = rec_put(out, -1, "one", 3);
    n += rec_put(out + n, -1, "two", 3);
    write_records(a, out, n);
    assert_int_equal(mw__ws_close(a, 4001, "bye \xe2\x82\xac"), 0);
    assert_int_equal(mw__ws_close(a, 4001, "again"), 0); /* idempotent */
    assert_int_equal(mw__stream_write(a, out, n), MW_ECLOSED);
    assert_int_equal(mw__ws_sent_close_code(a), 4001);
    /* b gets both messages, then the close */
    size_t got = 0;
    assert_int_equal(read_until_error(b, a, in, sizeof in, &got), MW_ECLOSED);
    assert_int_equal(got, n);
    assert_memory_equal(in, out, n);
    assert_int_equal(mw__ws_peer_close_code(b), 4001);
    assert_int_equal(mw__ws_sent_close_code(b), 4001); /* echoed */
    assert_non_null(strstr(mw_stream_last_error(b), "4001"));
    assert_int_equal(mw__stream_read(b, in, sizeof in), MW_ECLOSED); /* sticky */
    assert_int_equal(mw__stream_write(b, out, n), MW_ECLOSED);
    /* a gets the echo */
    assert_int_equal(read_until_error(a, b, NULL, 0, NULL), MW_ECLOSED);
    assert_int_equal(mw__ws_peer_close_code(a), 4001);
    assert_int_equal(mw__ws_close(a, 999, NULL), MW_EINVAL);
    duo_free(&d);
}

static void test_ws_close_handshake_client_initiated(void **state) {
    (void)state;
    close_both_ways(true);
}

static void test_ws_close_handshake_server_initiated(void **state) {
    (void)state;
    close_both_ways(false);
}

static void test_ws_close_codes_valid_ones_are_echoed_and_no_status_gets_1000(void **state) {
    (void)state;
    const unsigned ok[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        raw_t r;
        raw_server_setup(&r, NULL, 0);
        uint8_t p[2] = {(uint8_t)(ok[i] >> 8), (uint8_t)ok[i]};
        raw_frame(&r, true, MW_WS_CLOSE, p, 2);
        assert_int_equal(read_until_error(r.ws, NULL, NULL, 0, NULL), MW_ECLOSED);
        assert_int_equal(mw__ws_peer_close_code(r.ws), (int)ok[i]);
        assert_int_equal(raw_close_code(&r), (int)ok[i]);
        raw_free(&r);
    }
    raw_t r;
    raw_server_setup(&r, NULL, 0);
    raw_frame(&r, true, MW_WS_CLOSE, NULL, 0);
    assert_int_equal(read_until_error(r.ws, NULL, NULL, 0, NULL), MW_ECLOSED);
    assert_int_equal(mw__ws_peer_close_code(r.ws), MW_WS_CLOSE_NO_STATUS);
    assert_int_equal(raw_close_code(&r), 1000);
    raw_free(&r);
}

/* Sends `bytes` (already-framed, as a client would) to a fresh server and
 * checks it fails with err and closes with code. */
static void expect_failure(const mw_ws_opts_t *o, const void *bytes, size_t n, int err, int code) {
    raw_t r;
    raw_server_setup(&r, o, 0);
    raw_send_bytes(&r, bytes, n);
    int got = read_until_error(r.ws, NULL, NULL, 0, NULL);
    if (got != err) fail_msg("got %s (%s), want %s", mw_errname(got), mw_stream_last_error(r.ws), mw_errname(err));
    assert_true(strlen(mw_stream_last_error(r.ws)) > 0);
    assert_int_equal(raw_close_code(&r), code);
    assert_int_equal(mw__ws_sent_close_code(r.ws), code);
    uint8_t in[8];
    assert_int_equal(mw__stream_read(r.ws, in, sizeof in), err); /* sticky */
    uint8_t rec[8];
    size_t rn = rec_put(rec, -1, "x", 1);
    assert_int_equal(mw__stream_write(r.ws, rec, rn), err);
    raw_free(&r);
}

/* A masked client frame built by hand. */
static size_t cframe(uint8_t *out, uint8_t b0, const void *p, size_t n) {
    const uint8_t m[4] = {9, 8, 7, 6};
    size_t hl = mw__ws_hdr_encode(out, true, 0, n, m);
    out[0] = b0;
    memcpy(out + hl, p, n);
    mw__ws_mask(out + hl, n, m, 0);
    return hl + n;
}

/* Messages and then a close (or a violation, or a ping) in one socket read:
 * the read hands over the messages only; what follows is dealt with by the
 * next read, so the application's answers go out before our close. */
static void test_ws_close_and_failures_wait_until_earlier_messages_were_answered(void **state) {
    (void)state;
    for (int kind = 0; kind < 3; kind++) {
        mw_ws_opts_t o = opcode_opts();
        raw_t r;
        raw_server_setup(&r, &o, 0);
        uint8_t f[128];
        size_t n = cframe(f, 0x81, "first", 5);
        n += cframe(f + n, 0x82, "second", 6);
        if (kind == 0) n += cframe(f + n, 0x88, "\x03\xe8", 2);       /* close 1000 */
        else if (kind == 1) n += cframe(f + n, 0x83, "bad", 3);       /* reserved opcode */
        else n += cframe(f + n, 0x89, "pp", 2);                       /* ping */
        raw_send_bytes(&r, f, n);
        uint8_t in[64], want[64];
        size_t wn = rec_put(want, MW_WS_TEXT, "first", 5);
        wn += rec_put(want + wn, MW_WS_BINARY, "second", 6);
        assert_int_equal(mw__stream_read(r.ws, in, sizeof in), (ssize_t)wn);
        assert_memory_equal(in, want, wn);
        assert_true(raw_nothing_pending(&r)); /* nothing answered yet */
        write_records(r.ws, in, wn);           /* the application echoes */
        assert_int_equal(mw__stream_read(r.ws, in, sizeof in), kind == 0 ? MW_ECLOSED : kind == 1 ? MW_EPROTO : MW_EAGAIN);
        mw__ws_hdr_t h;
        uint8_t *pl;
        raw_next_frame(&r, &h, &pl);
        assert_int_equal(h.opcode, MW_WS_TEXT);
        free(pl);
        raw_next_frame(&r, &h, &pl);
        assert_int_equal(h.opcode, MW_WS_BINARY);
        free(pl);
        raw_next_frame(&r, &h, &pl);
        assert_int_equal(h.opcode, kind == 2 ? MW_WS_PONG : MW_WS_CLOSE);
        if (kind < 2) assert_int_equal(pl[0] << 8 | pl[1], kind == 0 ? 1000 : 1002);
        free(pl);
        raw_free(&r);
    }
}

static void test_ws_protocol_violations_close_with_1002(void **state) {
    (void)state;
    uint8_t f[300];
    size_t n;
    expect_failure(NULL, "\x81\x02hi", 4, MW_EPROTO, 1002); /* unmasked client frame */
    n = cframe(f, 0xC1, "x", 1);                            /* RSV1 without an extension */
    expect_failure(NULL, f, n, MW_EPROTO, 1002);
    n = cframe(f, 0x83, "x", 1); /* opcode 3 */
    expect_failure(NULL, f, n, MW_EPROTO, 1002);
    n = cframe(f, 0x8B, "x", 1); /* opcode 0xB */
    expect_failure(NULL, f, n, MW_EPROTO, 1002);
    n = cframe(f, 0x80, "x", 1); /* continuation with nothing to continue */
    expect_failure(NULL, f, n, MW_EPROTO, 1002);
    n = cframe(f, 0x01, "a", 1); /* a new message inside a fragmented one */
    n += cframe(f + n, 0x81, "b", 1);
    expect_failure(NULL, f, n, MW_EPROTO, 1002);
    n = cframe(f, 0x09, "p", 1); /* fragmented ping */
    expect_failure(NULL, f, n, MW_EPROTO, 1002);
    uint8_t big[126];
    memset(big, 'p', sizeof big);
    n = cframe(f, 0x89, big, 126); /* ping over 125 bytes */
    expect_failure(NULL, f, n, MW_EPROTO, 1002);
    n = cframe(f, 0x88, "\x03", 1); /* close with a 1-byte payload */
    expect_failure(NULL, f, n, MW_EPROTO, 1002);
    const unsigned bad_codes[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof bad_codes / sizeof bad_codes[0]; i++) {
        uint8_t p[2] = {(uint8_t)(bad_codes[i] >> 8), (uint8_t)bad_codes[i]};
        n = cframe(f, 0x88, p, 2);
        expect_failure(NULL, f, n, MW_EPROTO, 1002);
    }
    /* non-minimal length */
    uint8_t nm[] = {0x82, 0xFE, 0x00, 0x05, 1, 2, 3, 4, 'a', 'b', 'c', 'd', 'e'};
    expect_failure(NULL, nm, sizeof nm, MW_EPROTO, 1002);
}

static void test_ws_invalid_utf8_closes_with_1007_as_early_as_possible(void **state) {
    (void)state;
    uint8_t f[300];
    size_t n;
    n = cframe(f, 0x81, "ok \xc0\xaf", 5); /* overlong in a single frame */
    expect_failure(NULL, f, n, MW_EUTF8, 1007);
    n = cframe(f, 0x81, "ok \xe2\x82", 5); /* ends inside a character */
    expect_failure(NULL, f, n, MW_EUTF8, 1007);
    n = cframe(f, 0x01, "ok", 2); /* the last fragment ends inside a character */
    n += cframe(f + n, 0x80, "\xf0\x9f", 2);
    expect_failure(NULL, f, n, MW_EUTF8, 1007);
    /* fail fast: the first fragment holds a surrogate; no more frames come */
    n = cframe(f, 0x01, "ok \xed\xa0\x80 more", 11);
    expect_failure(NULL, f, n, MW_EUTF8, 1007);
    /* fail fast inside a frame: only part of the payload has arrived */
    n = cframe(f, 0x81, "valid text then \xf4\x90 and the rest never arrives", 46);
    expect_failure(NULL, f, 6 + 20, MW_EUTF8, 1007);
    /* close reason that is not UTF-8 */
    n = cframe(f, 0x88, "\x03\xe8\xff", 3);
    expect_failure(NULL, f, n, MW_EUTF8, 1007);
    /* a character split across fragments is fine */
    raw_t r;
    mw_ws_opts_t o = opcode_opts();
    raw_server_setup(&r, &o, 1);
    raw_frame(&r, false, MW_WS_TEXT, "\xe2", 1);
    raw_frame(&r, false, MW_WS_CONT, "\x82", 1);
    raw_frame(&r, true, MW_WS_CONT, "\xac", 1);
    uint8_t in[16], want[16];
    size_t wn = rec_put(want, MW_WS_TEXT, "\xe2\x82\xac", 3);
    read_exact(r.ws, NULL, in, wn);
    assert_memory_equal(in, want, wn);
    raw_free(&r);
}

static void test_ws_too_big_closes_with_1009_from_the_header(void **state) {
    (void)state;
    mw_ws_opts_t o;
    mw_ws_opts_init(&o);
    o.max_msg = 1000;
    uint8_t f[64];
    const uint8_t m[4] = {1, 2, 3, 4};
    /* only the header of a 1001-byte frame is ever sent */
    size_t n = mw__ws_hdr_encode(f, true, MW_WS_BINARY, 1001, m);
    expect_failure(&o, f, n, MW_ETOOBIG, 1009);
    n = mw__ws_hdr_encode(f, true, MW_WS_BINARY, UINT64_C(1) << 40, m);
    expect_failure(&o, f, n, MW_ETOOBIG, 1009);
    { /* the error names the limit that applies: max_frame (16 MiB by default) is clamped to max_msg */
        raw_t r;
        raw_server_setup(&r, &o, 0);
        raw_send_bytes(&r, f, n);
        assert_int_equal(read_until_error(r.ws, NULL, NULL, 0, NULL), MW_ETOOBIG);
        if (!strstr(mw_stream_last_error(r.ws), "over max_msg 1000 bytes"))
            fail_msg("error \"%s\" does not name max_msg 1000", mw_stream_last_error(r.ws));
        raw_free(&r);
    }
    /* fragments adding up to more than max_msg: refused at the second header */
    uint8_t *fr = malloc(2000);
    uint8_t pay[600];
    memset(pay, 'z', sizeof pay);
    n = cframe(fr, 0x02, pay, 600);
    n += mw__ws_hdr_encode(fr + n, true, MW_WS_CONT, 600, m);
    expect_failure(&o, fr, n, MW_ETOOBIG, 1009);
    /* max_frame below max_msg */
    o.max_frame = 100;
    n = cframe(fr, 0x82, pay, 101);
    expect_failure(&o, fr, n, MW_ETOOBIG, 1009);
    free(fr);
    raw_t r;
    o.flags = MW_WS_RECORD_OPCODE;
    raw_server_setup(&r, &o, 0);
    raw_frame(&r, false, MW_WS_BINARY, pay, 100);
    raw_frame(&r, true, MW_WS_CONT, pay, 100);
    uint8_t in[300], want[300];
    size_t wn = rec_put(want, MW_WS_BINARY, pay, 200);
    read_exact(r.ws, NULL, in, wn);
    assert_memory_equal(in, want, wn);
    raw_free(&r);
}

static void test_ws_client_rejects_masked_frames_from_the_server(void **state) {
    (void)state;
    raw_t r;
    raw_init(&r, false, NULL, 1 << 16, 0);
    uint8_t f[32];
    size_t n = cframe(f, 0x81, "hi", 2); /* masked: a server must not */
    raw_server_upgrade(&r, NULL, f, n);
    assert_int_equal(read_until_error(r.ws, NULL, NULL, 0, NULL), MW_EPROTO);
    assert_int_equal(raw_close_code(&r), 1002); /* the client's close is masked */
    raw_free(&r);
}

static void test_ws_batch_read_yields_100_records_from_one_read(void **state) {
    (void)state;
    duo_t d;
    duo_pair(&d, 1 << 20, 0, NULL, NULL);
    mw_stream_t *ends[2][2] = {{d.c, d.s}, {d.s, d.c}};
    for (int dir = 0; dir < 2; dir++) {
        mw_stream_t *wr = ends[dir][0], *rd = ends[dir][1];
        uint8_t out[4096], in[8192];
        size_t n = 0;
        for (int i = 0; i < 100; i++) {
            char msg[16];
            int k = snprintf(msg, sizeof msg, "msg-%03d", i);
            n += rec_put(out + n, -1, msg, (size_t)k);
        }
        assert_int_equal(mw__stream_write(wr, out, n), (ssize_t)n); /* one writev, all consumed */
        assert_false(mw__stream_want(wr) & MW_WANT_WRITE);
        ssize_t r = mw__stream_read(rd, in, sizeof in);
        assert_int_equal(r, (ssize_t)n); /* one read, 100 records */
        assert_memory_equal(in, out, n);
    }
    duo_free(&d);
}

typedef struct reader {
    mw_stream_t *s;
    uint8_t *buf;
    size_t n;
} reader_t;

static void *reader_main(void *arg) {
    reader_t *r = arg;
    read_exact(r->s, NULL, r->buf, r->n);
    return NULL;
}

/* One 1 MiB record from wr to rd (a reader thread drains while we write). */
static void big_transfer(mw_stream_t *wr, mw_stream_t *rd, bool text) {
    size_t n = 1u << 20;
    uint8_t *out = malloc(n + 4), *in = malloc(n + 4);
    for (size_t i = 0; i < n; i++) out[4 + i] = text ? (uint8_t)('a' + i % 26) : pattern_byte(i);
    rec_put(out, -1, NULL, n); /* header only; the payload is already there */
    mw__ws_set_text(wr, text);
    reader_t r = {rd, in, n + 4};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, reader_main, &r), 0);
    write_records(wr, out, n + 4);
    pthread_join(t, NULL);
    assert_memory_equal(in, out, n + 4);
    free(out);
    free(in);
}

static void test_ws_large_messages_in_many_fragments_and_whole(void **state) {
    (void)state;
    mw_ws_opts_t o = opcode_opts();
    raw_t r;
    raw_server_setup(&r, &o, 1000);
    size_t n = 1u << 20, frag = 4096;
    uint8_t *msg = malloc(n), *in = malloc(n + 5), *want = malloc(n + 5);
    for (size_t i = 0; i < n; i++) msg[i] = (uint8_t)('A' + i % 26);
    for (size_t off = 0, k = 0; off < n; off += frag, k++) {
        raw_frame(&r, off + frag >= n, off ? MW_WS_CONT : MW_WS_TEXT, msg + off, frag);
        if (k % 64 == 0) raw_frame(&r, true, MW_WS_PING, "k", 1);
    }
    size_t wn = rec_put(want, MW_WS_TEXT, msg, n);
    read_exact(r.ws, NULL, in, wn);
    assert_memory_equal(in, want, wn);
    /* a single 1 MiB binary frame, larger than the stream's rx buffer */
    for (size_t i = 0; i < n; i++) msg[i] = pattern_byte(i);
    raw_frame(&r, true, MW_WS_BINARY, msg, n);
    wn = rec_put(want, MW_WS_BINARY, msg, n);
    read_exact(r.ws, NULL, in, wn);
    assert_memory_equal(in, want, wn);
    int pongs = 0;
    while (!raw_nothing_pending(&r) || r.len) {
        mw__ws_hdr_t h;
        uint8_t *pl;
        raw_next_frame(&r, &h, &pl);
        assert_int_equal(h.opcode, MW_WS_PONG);
        free(pl);
        pongs++;
    }
    assert_int_equal(pongs, 4);
    raw_free(&r);
    free(msg);
    free(in);
    free(want);
    /* and through the record API both ways, over a small ring */
    mw_ws_opts_t bo;
    mw_ws_opts_init(&bo);
    bo.max_msg = 2u << 20;
    duo_t d;
    duo_pair(&d, 1 << 16, 4000, &bo, &bo);
    big_transfer(d.c, d.s, true);
    big_transfer(d.s, d.c, false);
    duo_free(&d);
}

static void test_ws_writev_consumes_whole_records_only(void **state) {
    (void)state;
    duo_t d;
    duo_pair(&d, 1 << 16, 0, NULL, NULL);
    mw_stream_t *ends[2][2] = {{d.c, d.s}, {d.s, d.c}};
    for (int dir = 0; dir < 2; dir++) {
        mw_stream_t *wr = ends[dir][0], *rd = ends[dir][1];
        uint8_t out[128], in[128];
        size_t a = rec_put(out, -1, "first", 5);
        size_t b = rec_put(out + a, -1, "second", 6);
        size_t c = rec_put(out + a + b, -1, "third", 5);
        /* two whole records and the start of a third */
        assert_int_equal(mw__stream_write(wr, out, a + b + 3), (ssize_t)(a + b));
        assert_int_equal(mw__stream_write(wr, out + a + b, 3), 0); /* no whole record */
        /* the third, its header split over iovecs, the payload over two more */
        const uint8_t *t = out + a + b;
        struct iovec v[4] = {{(void *)t, 2}, {(void *)(t + 2), 3}, {(void *)(t + 5), 0}, {(void *)(t + 5), c - 5}};
        assert_int_equal(mw__stream_writev(wr, v, 4), (ssize_t)c);
        read_exact(rd, wr, in, a + b + c);
        assert_memory_equal(in, out, a + b + c);
        /* records spanning iovecs in the middle of a batch */
        struct iovec w[3] = {{out, a + 1}, {out + a + 1, b + 1}, {out + a + b + 2, c - 2}};
        assert_int_equal(mw__stream_writev(wr, w, 3), (ssize_t)(a + b + c));
        read_exact(rd, wr, in, a + b + c);
        assert_memory_equal(in, out, a + b + c);
    }
    /* bad records */
    mw_ws_opts_t oo = opcode_opts();
    oo.max_msg = 100;
    duo_t e;
    duo_pair(&e, 1 << 16, 0, &oo, &oo);
    uint8_t rec[256], big[200] = {0};
    size_t n = rec_put(rec, 7, "x", 1);
    assert_int_equal(mw__stream_write(e.c, rec, n), MW_EINVAL);
    n = rec_put(rec, MW_WS_BINARY, big, 101);
    assert_int_equal(mw__stream_write(e.s, rec, n), MW_ETOOBIG);
    /* a good record before a bad one goes; the bad one is reported next */
    size_t g = rec_put(rec, MW_WS_TEXT, "ok", 2);
    n = g + rec_put(rec + g, 9, "x", 1);
    assert_int_equal(mw__stream_write(e.c, rec, n), (ssize_t)g);
    assert_int_equal(mw__stream_write(e.c, rec + g, n - g), MW_EINVAL);
    uint8_t in[16];
    read_exact(e.s, NULL, in, g);
    assert_memory_equal(in, rec, g);
    duo_free(&e);
    duo_free(&d);
}

static void backpressure(bool from_client) {
    mw_ws_opts_t o;
    mw_ws_opts_init(&o);
    o.max_msg = 2000; /* the stream's own buffer then holds about 9 KiB */
    duo_t d;
    duo_pair(&d, 4096, 0, &o, &o);
    mw_stream_t *wr = from_client ? d.c : d.s, *rd = from_client ? d.s : d.c;
    enum { RECS = 64, PAY = 1000 };
    uint8_t *out = malloc(RECS * (PAY + 4)), *in = malloc(RECS * (PAY + 4));
    size_t n = 0;
    for (int i = 0; i < RECS; i++) {
        uint8_t p[PAY];
        memset(p, 'a' + i % 26, PAY);
        n += rec_put(out + n, -1, p, PAY);
    }
    /* nobody reads: the ring fills, the stream holds what it accepted */
    size_t acc = 0;
    ssize_t w;
    while ((w = mw__stream_write(wr, out + acc, n - acc)) > 0) acc += (size_t)w;
    assert_int_equal(w, MW_EAGAIN);
    assert_true(acc > 4096 && acc < n);
    assert_int_equal(acc % (PAY + 4), 0); /* whole records only */
    assert_true(mw__stream_want(wr) & MW_WANT_WRITE);
    assert_int_equal(mw__stream_writev(wr, NULL, 0), MW_EAGAIN);
    /* drain while flushing, then send the rest */
    size_t got = 0;
    uint64_t dl = mw_now_ns() + WAIT_NS;
    while (got < n) {
        ssize_t r = mw__stream_read(rd, in + got, n - got);
        if (r > 0) got += (size_t)r;
        else assert_int_equal(r, MW_EAGAIN);
        ssize_t f = mw__stream_writev(wr, NULL, 0);
        assert_true(f == 0 || f == MW_EAGAIN);
        if (f == 0) assert_false(mw__stream_want(wr) & MW_WANT_WRITE);
        if (f == 0 && acc < n) {
            w = mw__stream_write(wr, out + acc, n - acc);
            if (w > 0) acc += (size_t)w;
            else assert_true(w == MW_EAGAIN || w == 0);
        }
        check_deadline(dl, "backpressure drain");
    }
    assert_memory_equal(in, out, n);
    assert_int_equal(mw__stream_writev(wr, NULL, 0), 0);
    assert_false(mw__stream_want(wr) & MW_WANT_WRITE);
    free(out);
    free(in);
    duo_free(&d);
}

static void test_ws_backpressure_client_holds_records_and_flushes_later(void **state) {
    (void)state;
    backpressure(true);
}

static void test_ws_backpressure_server_holds_records_and_flushes_later(void **state) {
    (void)state;
    backpressure(false);
}

static void test_ws_before_the_handshake_writes_wait_and_reads_drive_it(void **state) {
    (void)state;
    mw_stream_t *a, *b, *c, *s;
    assert_int_equal(mw__pair_new(&a, &b, 1 << 16, 0), 0);
    assert_int_equal(mw_ws_client_wrap(&c, a, NULL, NULL), 0);
    assert_int_equal(mw__ws_server_wrap(&s, b, NULL, NULL), 0);
    uint8_t rec[16], in[16];
    size_t n = rec_put(rec, -1, "early", 5);
    assert_true(mw__stream_is_msg(c));
    assert_int_equal(mw__stream_want(c), 0); /* the pair needs no handshake: drive ours now */
    assert_int_equal(mw__stream_want(s), 0);
    assert_int_equal(mw__stream_handshake(s), MW_EAGAIN);
    assert_int_equal(mw__stream_want(s), MW_WANT_READ);
    assert_int_equal(mw__stream_write(c, rec, n), MW_EAGAIN);
    assert_int_equal(mw__stream_write(s, rec, n), MW_EAGAIN);
    assert_int_equal(mw__stream_read(s, in, sizeof in), MW_EAGAIN); /* nothing sent yet */
    assert_int_equal(mw__stream_read(c, in, sizeof in), MW_EAGAIN); /* sends the request */
    assert_int_equal(mw__stream_want(c), MW_WANT_READ);
    assert_int_equal(mw__stream_read(s, in, sizeof in), MW_EAGAIN); /* answers 101 */
    assert_int_equal(mw__stream_handshake(s), 1);
    assert_int_equal(mw__stream_write(s, rec, n), (ssize_t)n);
    assert_int_equal(mw__stream_read(c, in, sizeof in), (ssize_t)n); /* 101, then the record */
    assert_memory_equal(in, rec, n);
    assert_int_equal(mw__stream_handshake(c), 1);
    assert_int_equal(mw__stream_want(c), 0);
    mw_stream_free(c);
    mw_stream_free(s);
}

static void test_ws_read_into_a_small_buffer_gets_a_record_in_pieces(void **state) {
    (void)state;
    duo_t d;
    duo_pair(&d, 1 << 16, 0, NULL, NULL);
    uint8_t out[1100], in[1100];
    uint8_t p[1000];
    for (size_t i = 0; i < sizeof p; i++) p[i] = pattern_byte(i);
    size_t n = rec_put(out, -1, p, sizeof p);
    n += rec_put(out + n, -1, "tail", 4);
    write_records(d.s, out, n);
    /* the first read is too small for the first record: pieces of it */
    ssize_t r = mw__stream_read(d.c, in, 100);
    assert_int_equal(r, 100);
    size_t got = 100;
    while (got < 1004) {
        r = mw__stream_read(d.c, in + got, got + 100 <= 1004 ? 100 : 1004 - got);
        assert_true(r > 0);
        got += (size_t)r;
    }
    /* whole records again once they fit */
    r = mw__stream_read(d.c, in + got, sizeof in - got);
    assert_int_equal(r, 8);
    assert_memory_equal(in, out, n);
    duo_free(&d);
}

/* The raw client sends head; the server must answer with `status`. */
static void expect_refusal(const mw_ws_opts_t *o, const char *head, size_t n, int status) {
    raw_t r;
    raw_init(&r, true, o, 1 << 16, 0);
    raw_send_bytes(&r, head, n);
    assert_int_equal(read_until_error(r.ws, NULL, NULL, 0, NULL), MW_EPROTO);
    size_t hl = raw_read_head(&r, NULL);
    char line[32];
    snprintf(line, sizeof line, "HTTP/1.1 %d ", status);
    if (memcmp(r.buf, line, strlen(line)) != 0) fail_msg("want %d, got: %.*s", status, (int)hl, r.buf);
    if (status == 426) assert_non_null(memmem(r.buf, hl, "\r\nSec-WebSocket-Version: 13\r\n", 29));
    char num[8];
    snprintf(num, sizeof num, "%d", status);
    assert_non_null(strstr(mw_stream_last_error(r.ws), num));
    assert_int_equal(mw__stream_handshake(r.ws), MW_EPROTO);
    uint8_t rec[8];
    assert_int_equal(mw__stream_write(r.ws, rec, rec_put(rec, -1, "x", 1)), MW_EPROTO);
    raw_free(&r);
}

static void test_ws_server_refuses_bad_handshakes_with_their_http_status(void **state) {
    (void)state;
    mw_ws_opts_t o;
    mw_ws_opts_init(&o);
    o.expect_path = "/ws";
    o.max_header = 512;
    const char *k = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    char h[2048];
    snprintf(h, sizeof h, "GET /nope HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Version: 13\r\n%s\r\n", k);
    expect_refusal(&o, h, strlen(h), 404);
    snprintf(h, sizeof h, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Version: 7\r\n%s\r\n", k);
    expect_refusal(&o, h, strlen(h), 426);
    snprintf(h, sizeof h, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n%s\r\n", k);
    expect_refusal(&o, h, strlen(h), 400);
    snprintf(h, sizeof h, "PUT /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Version: 13\r\n%s\r\n", k);
    expect_refusal(&o, h, strlen(h), 405);
    /* a head over max_header, refused before it ends */
    int n = snprintf(h, sizeof h, "GET /ws HTTP/1.1\r\nHost: x\r\nX-Pad: ");
    memset(h + n, 'p', 600);
    expect_refusal(&o, h, (size_t)n + 600, 431);
}

static void test_ws_handshake_byte_by_byte_then_frames(void **state) {
    (void)state;
    mw_ws_opts_t o = opcode_opts();
    o.subprotocol = "v2";
    raw_t r;
    raw_init(&r, true, &o, 1 << 16, 0);
    char key[25], req[1024];
    assert_int_equal(mw__ws_key_new(key), 0);
    mw_ws_opts_t co;
    mw_ws_opts_init(&co);
    co.path = "/deep/path?q=1";
    co.subprotocol = "v1, v2";
    ssize_t n = mw__ws_request_build(req, sizeof req, &co, "h", key);
    uint8_t in[16];
    for (ssize_t i = 0; i < n; i++) {
        assert_int_equal(mw__stream_handshake(r.ws), MW_EAGAIN);
        raw_send_bytes(&r, req + i, 1);
        ssize_t rr = mw__stream_read(r.ws, in, sizeof in);
        assert_int_equal(rr, MW_EAGAIN);
    }
    assert_int_equal(mw__stream_handshake(r.ws), 1);
    assert_string_equal(mw__ws_path(r.ws), "/deep/path?q=1");
    assert_string_equal(mw__ws_subprotocol(r.ws), "v2");
    size_t hl = raw_read_head(&r, NULL);
    char acc[29];
    mw__ws_accept_key(key, 24, acc);
    mw__ws_resp_t a;
    assert_int_equal(mw__ws_response_parse((const char *)r.buf, hl, acc, "v1, v2", &a), 0);
    assert_int_equal(a.protocol.n, 2);
    raw_consume(&r, hl);
    raw_frame(&r, true, MW_WS_BINARY, "abc", 3);
    uint8_t want[16];
    size_t wn = rec_put(want, MW_WS_BINARY, "abc", 3);
    read_exact(r.ws, NULL, in, wn);
    assert_memory_equal(in, want, wn);
    raw_free(&r);
}

static void test_ws_subprotocol_and_path_are_negotiated(void **state) {
    (void)state;
    mw_ws_opts_t co, so;
    mw_ws_opts_init(&co);
    mw_ws_opts_init(&so);
    co.path = "/feed?x=1";
    co.subprotocol = "chat, superchat";
    co.origin = "http://localhost";
    co.host = "example.org";
    so.subprotocol = "superchat";
    so.expect_path = "/feed";
    duo_t d;
    duo_pair(&d, 1 << 16, 1, &co, &so);
    assert_string_equal(mw__ws_subprotocol(d.c), "superchat");
    assert_string_equal(mw__ws_subprotocol(d.s), "superchat");
    assert_string_equal(mw__ws_path(d.s), "/feed?x=1");
    duo_free(&d);
    /* a server without a subprotocol declines; the client goes on without */
    so.subprotocol = NULL;
    duo_pair(&d, 1 << 16, 0, &co, &so);
    assert_string_equal(mw__ws_subprotocol(d.c), "");
    duo_free(&d);
    assert_string_equal(mw__ws_subprotocol(NULL), "");
    assert_false(mw__is_ws(NULL));
}

static void client_refuses(const char *resp, const char *text) {
    raw_t r;
    raw_init(&r, false, NULL, 1 << 16, 0);
    assert_int_equal(mw__stream_handshake(r.ws), MW_EAGAIN);
    raw_server_upgrade(&r, resp, NULL, 0);
    uint64_t dl = mw_now_ns() + WAIT_NS;
    int rc;
    while ((rc = mw__stream_handshake(r.ws)) == MW_EAGAIN) check_deadline(dl, "refusal");
    assert_int_equal(rc, MW_EPROTO);
    if (!strstr(mw_stream_last_error(r.ws), text)) fail_msg("error text \"%s\" lacks \"%s\"", mw_stream_last_error(r.ws), text);
    uint8_t in[8];
    assert_int_equal(mw__stream_read(r.ws, in, sizeof in), MW_EPROTO);
    raw_free(&r);
}

static void test_ws_client_refuses_a_bad_upgrade_response(void **state) {
    (void)state;
    client_refuses("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", "404 Not Found");
    client_refuses("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
                   "Sec-WebSocket-Accept");
    client_refuses("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n", "Upgrade");
}

static void test_ws_frames_right_after_the_101_are_kept_for_reads(void **state) {
    (void)state;
    raw_t r;
    raw_init(&r, false, NULL, 1 << 16, 0);
    uint8_t f[64];
    size_t n = mw__ws_hdr_encode(f, true, MW_WS_TEXT, 2, NULL);
    memcpy(f + n, "hi", 2);
    n += 2;
    n += mw__ws_hdr_encode(f + n, true, MW_WS_PING, 0, NULL);
    assert_int_equal(mw__stream_handshake(r.ws), MW_EAGAIN);
    raw_server_upgrade(&r, NULL, f, n);
    uint64_t dl = mw_now_ns() + WAIT_NS;
    int rc;
    while ((rc = mw__stream_handshake(r.ws)) == MW_EAGAIN) check_deadline(dl, "hs");
    assert_int_equal(rc, 1);
    uint8_t in[16], want[16];
    size_t wn = rec_put(want, -1, "hi", 2);
    assert_int_equal(mw__stream_read(r.ws, in, sizeof in), (ssize_t)wn);
    assert_memory_equal(in, want, wn);
    assert_int_equal(mw__stream_read(r.ws, in, sizeof in), MW_EAGAIN); /* answers the ping */
    mw__ws_hdr_t h;
    uint8_t *pl;
    raw_next_frame(&r, &h, &pl); /* the client's pong, masked */
    assert_int_equal(h.opcode, MW_WS_PONG);
    assert_true(h.masked);
    free(pl);
    raw_free(&r);
}

static void test_ws_replay_client_sends_no_request_and_skips_the_accept_check(void **state) {
    (void)state;
    mw_ws_opts_t o;
    mw_ws_opts_init(&o);
    o.flags = MW_WS_REPLAY;
    raw_t r;
    raw_init(&r, false, &o, 1 << 16, 0);
    assert_int_equal(mw__stream_handshake(r.ws), MW_EAGAIN);
    assert_true(raw_nothing_pending(&r));
    const char *resp = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: recordedrecordedrecorded123=\r\n\r\n\x81\x02ok";
    raw_send_bytes(&r, resp, strlen(resp));
    uint8_t in[16], want[16];
    size_t wn = rec_put(want, -1, "ok", 2);
    read_exact(r.ws, NULL, in, wn);
    assert_memory_equal(in, want, wn);
    raw_free(&r);
}

static void test_ws_steady_state_allocates_nothing(void **state) {
    (void)state;
    if (!mw_alloc_counting_works()) skip();
    duo_t d;
    duo_pair(&d, 1 << 16, 0, NULL, NULL);
    uint8_t out[256], in[256];
    size_t n = rec_put(out, -1, "ping-pong payload", 17);
    n += rec_put(out + n, -1, "second", 6);
    uint64_t before = mw_alloc_count();
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(mw__stream_write(d.c, out, n), (ssize_t)n);
        assert_int_equal(mw__stream_read(d.s, in, sizeof in), (ssize_t)n);
        assert_int_equal(mw__stream_write(d.s, in, n), (ssize_t)n);
        assert_int_equal(mw__stream_read(d.c, in, sizeof in), (ssize_t)n);
        if (i % 100 == 0) assert_int_equal(mw__ws_ping(d.c, "x", 1), 0);
    }
    assert_int_equal(mw_alloc_count() - before, 0);
    assert_memory_equal(in, out, n);
    duo_free(&d);
}


static void test_ws_control_replies_wait_for_room_when_tx_is_full(void **state) {
    (void)state;
    mw_ws_opts_t o;
    mw_ws_opts_init(&o);
    o.max_msg = 2000;
    raw_t r;
    raw_init(&r, false, &o, 4096, 0);
    raw_server_upgrade(&r, NULL, NULL, 0);
    uint64_t dl = mw_now_ns() + WAIT_NS;
    int rc;
    while ((rc = mw__stream_handshake(r.ws)) == MW_EAGAIN) check_deadline(dl, "hs");
    assert_int_equal(rc, 1);
    /* fill the ring and then the stream's buffer to the last byte, with ever
     * smaller records, so not even a pong fits */
    uint8_t rec[1100], p[1000];
    memset(p, 'd', sizeof p);
    const size_t sizes[] = {1000, 500, 200, 100, 50, 20, 10, 5, 2, 1, 0};
    int sent = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t rn = rec_put(rec, -1, p, sizes[i]);
        while (mw__stream_write(r.ws, rec, rn) == (ssize_t)rn) sent++;
    }
    assert_true(sent > 4);
    /* pings and a close arrive while nothing can be sent */
    raw_frame(&r, true, MW_WS_PING, "p1", 2);
    raw_frame(&r, true, MW_WS_PING, "p2", 2);
    uint8_t cl[2] = {0x0F, 0xA0}; /* 4000 */
    raw_frame(&r, true, MW_WS_CLOSE, cl, 2);
    assert_int_equal(read_until_error(r.ws, NULL, NULL, 0, NULL), MW_ECLOSED);
    assert_true(mw__stream_want(r.ws) & MW_WANT_WRITE);
    /* draining shows every record, one pong for the latest ping, then the close */
    int data = 0, pongs = 0;
    for (;;) {
        mw__ws_hdr_t h;
        uint8_t *pl;
        raw_next_frame(&r, &h, &pl);
        if (h.opcode == MW_WS_BINARY) {
            data++;
        } else if (h.opcode == MW_WS_PONG) {
            assert_memory_equal(pl, "p2", 2);
            pongs++;
        } else {
            assert_int_equal(h.opcode, MW_WS_CLOSE);
            assert_int_equal(pl[0] << 8 | pl[1], 4000);
            free(pl);
            break;
        }
        free(pl);
    }
    assert_int_equal(data, sent);
    assert_int_equal(pongs, 1);
    assert_int_equal(mw__stream_writev(r.ws, NULL, 0), 0);
    assert_false(mw__stream_want(r.ws) & MW_WANT_WRITE);
    raw_free(&r);
}

static void test_ws_server_writes_records_scattered_over_many_iovecs(void **state) {
    (void)state;
    duo_t d;
    duo_pair(&d, 1 << 20, 0, NULL, NULL);
    enum { RECS = 3, PIECES = 30, BIGPIECES = 100 };
    uint8_t out[4096], in[4096];
    size_t n = 0;
    for (int i = 0; i < RECS; i++) {
        uint8_t p[PIECES];
        memset(p, 'a' + i, sizeof p);
        n += rec_put(out + n, -1, p, sizeof p);
    }
    uint8_t big[BIGPIECES];
    for (size_t i = 0; i < sizeof big; i++) big[i] = pattern_byte(i);
    size_t bstart = n;
    n += rec_put(out + n, -1, big, sizeof big);
    /* one byte per iovec: the gather runs out of slots and goes on in batches;
     * the 100-piece record cannot be gathered at all and is copied instead */
    struct iovec v[1024];
    for (size_t i = 0; i < n; i++) v[i] = (struct iovec){out + i, 1};
    size_t done = 0;
    uint64_t dl = mw_now_ns() + WAIT_NS;
    while (done < n) {
        ssize_t w = mw__stream_writev(d.s, v + done, (int)(n - done));
        assert_true(w > 0);
        done += (size_t)w;
        assert_true(done == bstart || done == n || done % (PIECES + 4) == 0);
        check_deadline(dl, "scatter");
    }
    read_exact(d.c, d.s, in, n);
    assert_memory_equal(in, out, n);
    duo_free(&d);
}

static void test_ws_client_handshake_failures_are_reported(void **state) {
    (void)state;
    /* the server hangs up before answering */
    raw_t r;
    raw_init(&r, false, NULL, 1 << 16, 0);
    assert_int_equal(mw__stream_handshake(r.ws), MW_EAGAIN);
    mw__stream_close(r.s);
    assert_int_equal(mw__stream_handshake(r.ws), MW_ECLOSED);
    assert_non_null(strstr(mw_stream_last_error(r.ws), "handshake"));
    uint8_t in[8];
    assert_int_equal(mw__stream_read(r.ws, in, sizeof in), MW_ECLOSED);
    raw_free(&r);
    /* a response head over max_header */
    mw_ws_opts_t o;
    mw_ws_opts_init(&o);
    o.max_header = 256;
    raw_init(&r, false, &o, 1 << 16, 0);
    assert_int_equal(mw__stream_handshake(r.ws), MW_EAGAIN);
    char head[600];
    memset(head, 'x', sizeof head);
    memcpy(head, "HTTP/1.1 101 OK\r\nX: ", 20);
    raw_send_bytes(&r, head, sizeof head);
    assert_int_equal(mw__stream_handshake(r.ws), MW_EPROTO);
    assert_non_null(strstr(mw_stream_last_error(r.ws), "256"));
    raw_free(&r);
}

static void test_ws_wrap_failures_free_the_inner_stream(void **state) {
    (void)state;
    mw_stream_t *a, *b, *w = NULL;
    mw_err_t err = {0};
    mw_ws_opts_t o;
    mw_ws_opts_init(&o);
    o.path = "no-slash";
    assert_int_equal(mw__pair_new(&a, &b, 64, 0), 0);
    assert_int_equal(mw_ws_client_wrap(&w, a, &o, &err), MW_EINVAL);
    assert_non_null(strstr(mw_err_text(&err), "request"));
    mw_ws_opts_init(&o);
    o.max_msg = 0x80000000u;
    assert_int_equal(mw__ws_server_wrap(&w, b, &o, &err), MW_EINVAL);
    assert_null(w);
    assert_int_equal(mw_ws_client_wrap(&w, NULL, NULL, &err), MW_EINVAL);
    /* rx_time goes to the inner stream (the pair knows none); nothing buffered */
    duo_t d;
    duo_pair(&d, 1 << 12, 0, NULL, NULL);
    uint64_t ts;
    assert_int_equal(mw__stream_rx_time(d.c, &ts), MW_ENOTSUP);
    assert_int_equal(mw__stream_pending(d.c), 0);
    assert_int_equal(mw__ws_close(d.c, 1000, "\xff"), MW_EINVAL);
    char longr[130];
    memset(longr, 'r', sizeof longr - 1);
    longr[sizeof longr - 1] = '\0';
    assert_int_equal(mw__ws_close(d.c, 1000, longr), MW_EINVAL);
    duo_free(&d);
}

static void test_accept_key_of_a_long_key_hashes_all_of_it(void **state) {
    (void)state;
    char key[300], out[29], ref[29];
    memset(key, 'k', sizeof key);
    unsigned char buf[400], md[20];
    memcpy(buf, key, sizeof key);
    memcpy(buf + sizeof key, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
    SHA1(buf, sizeof key + 36, md);
    EVP_EncodeBlock((unsigned char *)ref, md, 20);
    mw__ws_accept_key(key, sizeof key, out);
    assert_string_equal(out, ref);
}

typedef struct echo {
    mw_stream_t *s;
    size_t n;      /* bytes of records to echo */
    int pings;
} echo_t;

/* Server thread: echoes n bytes of records, pinging now and then. */
static void *echo_main(void *arg) {
    echo_t *e = arg;
    uint8_t *buf = malloc(1 << 16);
    size_t done = 0;
    uint64_t dl = mw_now_ns() + WAIT_NS;
    while (done < e->n && mw_now_ns() < dl) {
        ssize_t r = mw__stream_read(e->s, buf, 1 << 16);
        if (r > 0) {
            write_records(e->s, buf, (size_t)r);
            done += (size_t)r;
            if (mw__ws_ping(e->s, "t", 1) == 0) e->pings++;
        } else {
            mw__stream_writev(e->s, NULL, 0);
            sched_yield();
        }
    }
    free(buf);
    return NULL;
}

static void *writer_main(void *arg) {
    reader_t *w = arg; /* same shape: stream, bytes, length */
    write_records(w->s, w->buf, w->n);
    return NULL;
}

static void test_ws_read_and_write_may_run_on_two_threads(void **state) {
    (void)state;
    duo_t d;
    duo_pair(&d, 1 << 14, 0, NULL, NULL);
    enum { RECS = 5000 };
    size_t n = 0;
    uint8_t *out = malloc(RECS * 40), *in = malloc(RECS * 40);
    for (int i = 0; i < RECS; i++) {
        char m[32];
        int k = snprintf(m, sizeof m, "record %d of many", i);
        n += rec_put(out + n, -1, m, (size_t)k);
    }
    echo_t e = {d.s, n, 0};
    reader_t w = {d.c, out, n};
    pthread_t te, tw;
    assert_int_equal(pthread_create(&te, NULL, echo_main, &e), 0);
    assert_int_equal(pthread_create(&tw, NULL, writer_main, &w), 0);
    read_exact(d.c, NULL, in, n); /* reading here answers the pings, on this thread */
    pthread_join(tw, NULL);
    pthread_join(te, NULL);
    assert_memory_equal(in, out, n);
    assert_true(e.pings > 0);
    uint64_t dl = mw_now_ns() + WAIT_NS;
    while (mw__ws_pongs(d.s) < (uint64_t)e.pings) { /* every ping got its pong */
        uint8_t tmp[64];
        mw__stream_read(d.c, tmp, sizeof tmp);
        mw__stream_read(d.s, tmp, sizeof tmp);
        check_deadline(dl, "pongs");
    }
    free(out);
    free(in);
    duo_free(&d);
}

/* ---- over TCP ------------------------------------------------------------------------------ */

static void test_ws_tcp_round_trip_large_messages_ping_and_close(void **state) {
    (void)state;
    mw_ws_opts_t co, so = opcode_opts();
    mw_ws_opts_init(&co);
    co.max_msg = 2u << 20;
    duo_t d;
    duo_tcp(&d, &co, &so);
    assert_true(mw__stream_fd(d.c) >= 0);
    uint8_t out[64], in[64], want[64];
    mw__ws_set_text(d.c, true);
    size_t n = rec_put(out, -1, "text \xe2\x9c\x93", 8);
    write_records(d.c, out, n);
    size_t wn = rec_put(want, MW_WS_TEXT, "text \xe2\x9c\x93", 8);
    read_exact(d.s, NULL, in, wn);
    assert_memory_equal(in, want, wn);
    n = rec_put(out, MW_WS_BINARY, "\x00\xff", 2);
    write_records(d.s, out, n);
    wn = rec_put(want, -1, "\x00\xff", 2);
    read_exact(d.c, NULL, in, wn);
    assert_memory_equal(in, want, wn);
    assert_int_equal(mw__ws_ping(d.s, "tcp", 3), 0);
    uint64_t dl = mw_now_ns() + WAIT_NS;
    while (mw__ws_pongs(d.s) == 0) {
        mw__stream_read(d.c, in, sizeof in);
        mw__stream_read(d.s, in, sizeof in);
        check_deadline(dl, "tcp pong");
        idle_wait(d.s, MW_WANT_READ);
    }
    mw__ws_close(d.c, 1001, NULL);
    size_t got;
    assert_int_equal(read_until_error(d.s, NULL, in, sizeof in, &got), MW_ECLOSED);
    assert_int_equal(got, 0);
    assert_int_equal(mw__ws_peer_close_code(d.s), 1001);
    assert_int_equal(read_until_error(d.c, NULL, NULL, 0, NULL), MW_ECLOSED);
    assert_int_equal(mw__ws_peer_close_code(d.c), 1001);
    duo_free(&d);
    /* 1 MiB each way over real sockets */
    mw_ws_opts_init(&so);
    so.max_msg = 2u << 20;
    duo_tcp(&d, &co, &so);
    big_transfer(d.c, d.s, false);
    big_transfer(d.s, d.c, true);
    duo_free(&d);
}

static void test_ws_tcp_peer_vanishing_is_closed_not_an_error(void **state) {
    (void)state;
    duo_t d;
    duo_tcp(&d, NULL, NULL);
    mw__stream_close(d.c->inner); /* the TCP under the client goes away, no close frame */
    uint8_t in[16];
    assert_int_equal(read_until_error(d.s, NULL, in, sizeof in, NULL), MW_ECLOSED);
    assert_non_null(strstr(mw_stream_last_error(d.s), "1006"));
    assert_int_equal(mw__ws_peer_close_code(d.s), 0);
    duo_free(&d);
}


static void test_ws_over_tls_round_trip_large_message_and_close(void **state) {
    (void)state;
    mw_test_require(mw_have_openssl_cli(), "the openssl command (Debian package openssl)");
    mw_tls_opts_t so, co;
    mw__tls_opts_init(&so);
    mw__tls_opts_init(&co);
    so.cert_file = mw_test_cert("srv.pem");
    so.key_file = mw_test_cert("srv.key");
    co.ca_file = mw_test_cert("ca.pem");
    co.server_name = "localhost";
    mw__tls_ctx_t *sctx, *cctx;
    mw_err_t err = {0};
    if (mw__tls_ctx_new(&sctx, true, &so, &err) != 0) fail_msg("server ctx: %s", mw_err_text(&err));
    if (mw__tls_ctx_new(&cctx, false, &co, &err) != 0) fail_msg("client ctx: %s", mw_err_text(&err));
    /* TCP, then TLS, then WebSocket on each side */
    mw__listener_t *l;
    if (mw__tcp_listen(&l, "127.0.0.1", "0", NULL, &err) != 0) fail_msg("listen: %s", mw_err_text(&err));
    char port[16];
    snprintf(port, sizeof port, "%d", mw__listener_port(l));
    mw_stream_t *ct, *st = NULL, *ctls, *stls;
    if (mw__tcp_connect(&ct, "127.0.0.1", port, NULL, WAIT_NS, &err) != 0) fail_msg("connect: %s", mw_err_text(&err));
    uint64_t dl = mw_now_ns() + WAIT_NS;
    while (mw__listener_accept(l, &st, &err) == MW_EAGAIN) check_deadline(dl, "accept");
    mw__listener_free(l);
    assert_int_equal(mw__tls_wrap(&ctls, ct, cctx, "localhost", &err), 0);
    assert_int_equal(mw__tls_wrap(&stls, st, sctx, NULL, &err), 0);
    mw_ws_opts_t wo;
    mw_ws_opts_init(&wo);
    wo.max_msg = 2u << 20;
    wo.host = "localhost";
    duo_t d;
    assert_int_equal(mw_ws_client_wrap(&d.c, ctls, &wo, &err), 0);
    assert_int_equal(mw__ws_server_wrap(&d.s, stls, &wo, &err), 0);
    handshake_both(d.c, d.s); /* TLS first, then the upgrade, through one op */
    assert_int_equal(mw__stream_handshake(d.c), 1);
    uint8_t out[64], in[64];
    size_t n = rec_put(out, -1, "over tls", 8);
    write_records(d.c, out, n);
    read_exact(d.s, NULL, in, n);
    assert_memory_equal(in, out, n);
    big_transfer(d.c, d.s, true);
    big_transfer(d.s, d.c, false);
    assert_int_equal(mw__ws_close(d.s, 1000, NULL), 0);
    assert_int_equal(read_until_error(d.c, NULL, NULL, 0, NULL), MW_ECLOSED);
    assert_int_equal(read_until_error(d.s, d.c, NULL, 0, NULL), MW_ECLOSED);
    assert_int_equal(mw__ws_peer_close_code(d.s), 1000);
    duo_free(&d);
    mw__tls_ctx_free(cctx);
    mw__tls_ctx_free(sctx);
}

/* ---- a server answers 400 at once to bytes no HTTP request begins with ---------------- */

static void test_handshake_request_start_bad_only_for_bytes_no_request_begins_with(void **state) {
    (void)state;
    static const char *const good[] = {
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /chat?x=1&y=%20 HTTP/1.1\r\nUpgrade: websocket\r\n",
        "OPTIONS /caf\xc3\xa9 HTTP/1.9\n",
        "VERSION-CONTROL /",
    };
    for (size_t g = 0; g < sizeof good / sizeof good[0]; g++)
        for (size_t k = 0; k <= strlen(good[g]); k++) { /* every prefix, against a guard page */
            mw_guard_t gp;
            const uint8_t *p = mw_guard_copy(&gp, good[g], k);
            const char *why = mw__ws_request_start_bad(p, k);
            mw_guard_free(&gp);
            if (why) fail_msg("%zu bytes of \"%s\": %s", k, good[g], why);
        }
    static const struct { const char *p; size_t n; } bad[] = {
        {"\x16\x03\x01\x02\x00\x01", 6}, /* a TLS ClientHello */
        {"\x16", 1},
        {"\x00", 1},
        {"\x80", 1},
        {"\r\n", 2},
        {" GET", 4},
        {"GET\x00", 4},
        {"GET  /", 6},
        {"GET x HTTP/1.1", 14},
        {"GET /a\x01", 7},
        {"GET / XTTP", 10},
        {"GET / HTTP/2", 12},
        {"GET / HTTP/1.0", 14},
        {"ABCDEFGHIJKLMNOPQ", 17}, /* a method longer than any */
        {"{\"type\":\"ping\"}", 15},  /* a JSON message before the handshake */
    };
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        mw_guard_t gp;
        const uint8_t *p = mw_guard_copy(&gp, bad[b].p, bad[b].n);
        const char *why = mw__ws_request_start_bad(p, bad[b].n);
        mw_guard_free(&gp);
        if (!why) fail_msg("bad start %zu not refused", b);
    }
    assert_non_null(strstr(mw__ws_request_start_bad((const uint8_t *)"\x16\x03\x01", 3), "TLS"));
}

/* Over an in-process pair: the server's handshake fails with MW_EPROTO after
 * the first read of such bytes, with "400 Bad Request" written to the peer;
 * a valid but partial request line is still waited for. */
static void test_ws_server_answers_400_at_once_to_bytes_no_request_begins_with(void **state) {
    (void)state;
    static const struct { const char *p; size_t n; } bad[] = {
        {"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11}, {"\x00", 1}, {"\x80", 1}};
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        mw_stream_t *a, *pb, *s;
        assert_int_equal(mw__pair_new(&a, &pb, 1 << 16, 0), 0);
        assert_int_equal(mw__ws_server_wrap(&s, pb, NULL, NULL), 0);
        assert_int_equal(mw__stream_write(a, bad[b].p, bad[b].n), (ssize_t)bad[b].n);
        assert_int_equal(mw__stream_handshake(s), MW_EPROTO);
        assert_non_null(strstr(mw_stream_last_error(s), "400"));
        char resp[512] = {0};
        ssize_t n = mw__stream_read(a, resp, sizeof resp - 1);
        if (n < 12 || memcmp(resp, "HTTP/1.1 400", 12) != 0) fail_msg("case %zu: answered \"%s\"", b, resp);
        assert_non_null(strstr(resp, "Connection: close"));
        mw_stream_free(s);
        mw_stream_free(a);
    }
    mw_stream_t *a, *pb, *s;
    assert_int_equal(mw__pair_new(&a, &pb, 1 << 16, 0), 0);
    assert_int_equal(mw__ws_server_wrap(&s, pb, NULL, NULL), 0);
    assert_int_equal(mw__stream_write(a, "GET / HTTP/1.", 13), 13);
    assert_int_equal(mw__stream_handshake(s), MW_EAGAIN);
    char resp[64];
    assert_int_equal(mw__stream_read(a, resp, sizeof resp), MW_EAGAIN); /* no answer yet */
    mw_stream_free(s);
    mw_stream_free(a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hdr_roundtrips_every_length_encoding_at_every_split),
        cmocka_unit_test(test_hdr_decode_rejects_each_violation_on_its_first_bad_byte),
        cmocka_unit_test(test_hdr_decode_checks_max_from_the_header_alone),
        cmocka_unit_test(test_mask_matches_bytewise_at_every_offset_length_and_alignment),
        cmocka_unit_test(test_utf8_accepts_valid_text_and_boundaries),
        cmocka_unit_test(test_utf8_rejects_overlongs_surrogates_and_too_large_on_the_first_bad_byte),
        cmocka_unit_test(test_utf8_truncated_at_every_byte_is_incomplete_not_invalid),
        cmocka_unit_test(test_utf8_agrees_with_a_reference_decoder_on_all_short_sequences),
        cmocka_unit_test(test_accept_key_is_the_rfc_6455_example),
        cmocka_unit_test(test_head_end_found_byte_by_byte_and_bounded_by_max),
        cmocka_unit_test(test_handshake_request_and_response_round_trip_byte_by_byte),
        cmocka_unit_test(test_handshake_request_each_defect_gets_its_http_status),
        cmocka_unit_test(test_handshake_response_each_defect_is_a_protocol_error),
        cmocka_unit_test(test_ws_pair_round_trips_text_and_binary_records_in_small_chunks),
        cmocka_unit_test(test_ws_fragments_with_interleaved_control_frames_are_reassembled),
        cmocka_unit_test(test_ws_close_and_failures_wait_until_earlier_messages_were_answered),
        cmocka_unit_test(test_ws_no_auto_pong_flag_leaves_pings_unanswered),
        cmocka_unit_test(test_ws_ping_is_answered_and_pongs_are_counted),
        cmocka_unit_test(test_ws_close_handshake_client_initiated),
        cmocka_unit_test(test_ws_close_handshake_server_initiated),
        cmocka_unit_test(test_ws_close_codes_valid_ones_are_echoed_and_no_status_gets_1000),
        cmocka_unit_test(test_ws_protocol_violations_close_with_1002),
        cmocka_unit_test(test_ws_invalid_utf8_closes_with_1007_as_early_as_possible),
        cmocka_unit_test(test_ws_too_big_closes_with_1009_from_the_header),
        cmocka_unit_test(test_ws_client_rejects_masked_frames_from_the_server),
        cmocka_unit_test(test_ws_batch_read_yields_100_records_from_one_read),
        cmocka_unit_test(test_ws_large_messages_in_many_fragments_and_whole),
        cmocka_unit_test(test_ws_writev_consumes_whole_records_only),
        cmocka_unit_test(test_ws_backpressure_client_holds_records_and_flushes_later),
        cmocka_unit_test(test_ws_backpressure_server_holds_records_and_flushes_later),
        cmocka_unit_test(test_ws_before_the_handshake_writes_wait_and_reads_drive_it),
        cmocka_unit_test(test_ws_read_into_a_small_buffer_gets_a_record_in_pieces),
        cmocka_unit_test(test_ws_server_refuses_bad_handshakes_with_their_http_status),
        cmocka_unit_test(test_ws_handshake_byte_by_byte_then_frames),
        cmocka_unit_test(test_ws_subprotocol_and_path_are_negotiated),
        cmocka_unit_test(test_ws_client_refuses_a_bad_upgrade_response),
        cmocka_unit_test(test_ws_frames_right_after_the_101_are_kept_for_reads),
        cmocka_unit_test(test_ws_replay_client_sends_no_request_and_skips_the_accept_check),
        cmocka_unit_test(test_ws_steady_state_allocates_nothing),
        cmocka_unit_test(test_ws_control_replies_wait_for_room_when_tx_is_full),
        cmocka_unit_test(test_ws_server_writes_records_scattered_over_many_iovecs),
        cmocka_unit_test(test_ws_client_handshake_failures_are_reported),
        cmocka_unit_test(test_ws_wrap_failures_free_the_inner_stream),
        cmocka_unit_test(test_accept_key_of_a_long_key_hashes_all_of_it),
        cmocka_unit_test(test_ws_read_and_write_may_run_on_two_threads),
        cmocka_unit_test(test_ws_tcp_round_trip_large_messages_ping_and_close),
        cmocka_unit_test(test_ws_tcp_peer_vanishing_is_closed_not_an_error),
        cmocka_unit_test(test_ws_over_tls_round_trip_large_message_and_close),
        cmocka_unit_test(test_handshake_request_start_bad_only_for_bytes_no_request_begins_with),
        cmocka_unit_test(test_ws_server_answers_400_at_once_to_bytes_no_request_begins_with),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
