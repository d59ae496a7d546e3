/* fuzz_frame.c - the frame codecs (frame_impl.h), every kind.
 *
 * Input: one byte choosing the kind, max_len and fixed_len, then a byte
 * stream. Frames are decoded one after another until the stream runs out or
 * fails. Properties: a frame lies inside the input and its length is header
 * + payload + trailer with payload <= max_len; every shorter prefix of a
 * frame is MW_EAGAIN (plain decode at the first splits, the resumable LINE
 * search at every split); re-encoding the payload gives the frame's bytes
 * back; a failure at a prefix is the failure of the whole input. */
#include "fuzz.h"

#include <string.h>

#include "mw_err.h"
#include "mw_frame.h"
#include "frame_impl.h"

static const uint32_t max_lens[] = {0, 1, 16, 300};

/* Feeds in[0..r) one byte more at a time through the resumable decoder. */
static void check_resume(const mw__framer_t *f, const uint8_t *in, size_t r) {
    size_t scanned = 0;
    const uint8_t *p;
    size_t n;
    for (size_t k = 0; k < r; k++) {
        ssize_t got = mw__frame_decode_resume(f, in, k, &scanned, &p, &n);
        FUZZ_CHECK(got == MW_EAGAIN, "resume at %zu of %zu: %zd", k, r, got);
        FUZZ_CHECK(scanned <= k, "scanned %zu past %zu", scanned, k);
    }
    FUZZ_CHECK(mw__frame_decode_resume(f, in, r, &scanned, &p, &n) == (ssize_t)r, "resume at end");
    FUZZ_CHECK(scanned == 0 || f->kind != MW_FRAME_LINE, "scanned not reset");
}

static void check_frame(const mw__framer_t *f, const uint8_t *in, size_t len, ssize_t r,
                        const uint8_t *p, size_t n) {
    size_t pre = mw__frame_prefix_len(f), suf = mw__frame_suffix_len(f);
    FUZZ_CHECK(r > 0 && (size_t)r <= len, "frame %zd of %zu", r, len);
    FUZZ_CHECK((size_t)r == pre + n + suf, "frame %zd, payload %zu", r, n);
    FUZZ_CHECK(p == in + pre, "payload not after the prefix");
    FUZZ_CHECK(n <= f->max_len, "payload %zu over max %u", n, f->max_len);
    if (f->kind == MW_FRAME_FIXED) FUZZ_CHECK(n == f->fixed_len, "fixed %zu", n);
    if (f->kind == MW_FRAME_LINE) FUZZ_CHECK(!memchr(p, '\n', n) && in[n] == '\n', "line");
    if (f->kind != MW_FRAME_NONE) {
        size_t lim = (size_t)r < 64 ? (size_t)r : 64;
        for (size_t k = 0; k < lim; k++) {
            const uint8_t *q;
            size_t m;
            ssize_t got = mw__frame_decode(f, in, k, &q, &m);
            FUZZ_CHECK(got == MW_EAGAIN, "prefix %zu of a %zd-byte frame: %zd", k, r, got);
        }
        check_resume(f, in, (size_t)r);
    }
    uint8_t *out = malloc((size_t)r);
    FUZZ_CHECK(out, "malloc");
    ssize_t e = mw__frame_encode(f, p, n, out, (size_t)r);
    FUZZ_CHECK(e == r && memcmp(out, in, (size_t)r) == 0, "re-encode gave %zd, not %zd", e, r);
    if (r > 0 && mw__frame_encode(f, p, n, out, (size_t)r - 1) != MW_ETOOBIG)
        FUZZ_CHECK(0, "encode into %zd bytes did not fail", r - 1);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_in_t in = {data, size};
    unsigned sel = fuzz_byte(&in);
    mw__framer_t f;
    mw_frame_kind_t kind = (mw_frame_kind_t)(sel % 5);
    uint32_t max = max_lens[(sel / 5) % 4], fixed = 1 + (sel / 20) % 12;
    if (mw__framer_init(&f, kind, max, fixed) != 0)
        FUZZ_CHECK(mw__framer_init(&f, kind, 0, fixed) == 0, "init kind %d", (int)kind);
    size_t off = 0;
    while (off < in.n) {
        const uint8_t *p;
        size_t n;
        ssize_t r = mw__frame_decode(&f, in.p + off, in.n - off, &p, &n);
        if (r < 0) {
            FUZZ_CHECK(r == MW_EAGAIN || r == MW_ETOOBIG, "decode: %zd", r);
            if (r == MW_ETOOBIG && (f.kind == MW_FRAME_U16BE || f.kind == MW_FRAME_U32BE)) {
                /* Known from the header alone: every longer prefix agrees. */
                size_t pre = mw__frame_prefix_len(&f);
                for (size_t k = pre; k < in.n - off && k < pre + 8; k++)
                    FUZZ_CHECK(mw__frame_decode(&f, in.p + off, k, &p, &n) == MW_ETOOBIG, "k %zu", k);
            }
            break;
        }
        check_frame(&f, in.p + off, in.n - off, r, p, n);
        off += (size_t)r;
    }
    return 0;
}
