/* fuzz_ws_codec.c - the WebSocket frame header codec, masking and the
 * incremental UTF-8 validator (ws_impl.h).
 *
 * Input: one byte (side, max_len, UTF-8 split point), then bytes. Properties:
 * a decoded header is 2..14 bytes, within the input, with the side's masking
 * and a length within max_len (data frames) or 125 (control frames); every
 * shorter prefix is MW_EAGAIN or that same error, and a prefix that fails
 * fails the same way however many bytes follow; encoding the decoded header
 * gives the input's bytes back (lengths are minimal on the wire); masking
 * twice at any offset is the identity; the UTF-8 DFA fed in two pieces
 * agrees with itself fed at once and with the serdes' validator. */
#include "fuzz.h"

#include <string.h>

#include "mw_err.h"
#include "mw_serdes.h"
#include "mw_ws.h"
#include "serdes_impl.h"
#include "ws_impl.h"

static const uint64_t max_lens[] = {UINT64_MAX >> 1, 0, 125, 126, 65535, 65536, 16u << 20, 1};

static void check_hdr(const uint8_t *in, size_t len, bool masked, uint64_t max) {
    mw__ws_hdr_t h;
    ssize_t r = mw__ws_hdr_decode(in, len, masked, max, &h);
    size_t lim = len < 15 ? len : 15;
    for (size_t k = 0; k < lim; k++) {
        mw__ws_hdr_t h2;
        ssize_t rk = mw__ws_hdr_decode(in, k, masked, max, &h2);
        if (r > 0) FUZZ_CHECK(k >= (size_t)r ? rk == r : rk == MW_EAGAIN, "k %zu: %zd vs %zd", k, rk, r);
        else FUZZ_CHECK(rk == MW_EAGAIN || rk == r, "k %zu: %zd vs %zd", k, rk, r);
    }
    if (r < 0) {
        FUZZ_CHECK(r == MW_EAGAIN || r == MW_EPROTO || r == MW_ETOOBIG, "decode: %zd", r);
        return;
    }
    bool ctl = h.opcode & 8;
    FUZZ_CHECK(r >= 2 && r <= 14 && (size_t)r <= len && h.hdr_len == (size_t)r, "hdr_len %zd", r);
    FUZZ_CHECK(h.masked == masked && h.rsv == 0, "masked %d rsv %u", h.masked, h.rsv);
    FUZZ_CHECK(ctl ? h.len <= 125 && h.fin : h.len <= max, "len %llu", (unsigned long long)h.len);
    FUZZ_CHECK(h.opcode <= 2 || (h.opcode >= 8 && h.opcode <= 10), "opcode %u", h.opcode);
    uint8_t out[14];
    size_t e = mw__ws_hdr_encode(out, h.fin, h.opcode, h.len, h.masked ? h.mask : NULL);
    FUZZ_CHECK(e == (size_t)r && memcmp(out, in, e) == 0, "re-encoded header differs");

    size_t plen = len - (size_t)r < h.len ? len - (size_t)r : (size_t)h.len;
    uint8_t *p = malloc(plen + 1);
    FUZZ_CHECK(p, "malloc");
    memcpy(p, in + r, plen);
    size_t off = h.mask[0] & 7u;
    mw__ws_mask(p, plen, h.mask, off);
    size_t cut = plen / 2; /* unmask in two pieces: offsets carry over */
    mw__ws_mask(p, cut, h.mask, off);
    mw__ws_mask(p + cut, plen - cut, h.mask, off + cut);
    FUZZ_CHECK(memcmp(p, in + r, plen) == 0, "masking twice is not the identity");
    free(p);
}

static void check_utf8(const uint8_t *in, size_t len, size_t split) {
    mw__utf8_state_t a, b;
    mw__utf8_init(&a);
    bool whole = mw__utf8_feed(&a, in, len) && mw__utf8_complete(&a);
    if (split > len) split = len;
    mw__utf8_init(&b);
    bool parts = mw__utf8_feed(&b, in, split) && mw__utf8_feed(&b, in + split, len - split) &&
                 mw__utf8_complete(&b);
    FUZZ_CHECK(whole == parts, "split at %zu: %d vs %d", split, whole, parts);
    FUZZ_CHECK(whole == mw__utf8_valid(in, len), "DFA %d, serdes validator %d", whole, !whole);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_in_t in = {data, size};
    unsigned sel = fuzz_byte(&in);
    check_hdr(in.p, in.n, sel & 1, max_lens[(sel >> 1) & 7]);
    check_utf8(in.p, in.n, (size_t)(sel >> 4) * in.n / 16);
    return 0;
}
