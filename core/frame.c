/* frame.c - the frame codecs declared in frame_impl.h. */
#include "mw_frame.h"
#include "mw_err.h"
#include "frame_impl.h"

#include <string.h>

#define U16_MAX_LEN 65535u
#define DEFAULT_MAX_LEN (16u * 1024u * 1024u)

int mw__framer_init(mw__framer_t *f, mw_frame_kind_t kind, uint32_t max_len, uint32_t fixed_len) {
    if (!f) return MW_EINVAL;
    switch (kind) {
    case MW_FRAME_U16BE:
        if (max_len > U16_MAX_LEN) return MW_EINVAL;
        if (max_len == 0) max_len = U16_MAX_LEN;
        break;
    case MW_FRAME_NONE:
    case MW_FRAME_U32BE:
    case MW_FRAME_LINE:
    case MW_FRAME_FIXED:
        if (max_len == 0) max_len = DEFAULT_MAX_LEN;
        break;
    default: return MW_EINVAL;
    }
    if (kind == MW_FRAME_FIXED && (fixed_len == 0 || fixed_len > max_len)) return MW_EINVAL;
    f->kind = kind;
    f->max_len = max_len;
    f->fixed_len = kind == MW_FRAME_FIXED ? fixed_len : 0;
    return 0;
}

static const char *const kind_names[] = {
    [MW_FRAME_NONE] = "none",
    [MW_FRAME_U16BE] = "u16",
    [MW_FRAME_U32BE] = "u32",
    [MW_FRAME_LINE] = "line",
    [MW_FRAME_FIXED] = "fixed",
};
#define N_KINDS (sizeof kind_names / sizeof kind_names[0])

int mw__frame_kind_parse(const char *name) {
    if (!name) return MW_EINVAL;
    for (size_t k = 0; k < N_KINDS; k++)
        if (strcmp(name, kind_names[k]) == 0) return (int)k;
    return MW_EINVAL;
}

const char *mw__frame_kind_name(mw_frame_kind_t kind) {
    return (unsigned)kind < N_KINDS ? kind_names[kind] : "unknown";
}

/* ---- decode ------------------------------------------------------------------
 * Each kind is one short function; the length on the wire is compared with
 * max_len before the body is looked at, so a huge prefix fails with only the
 * header in hand. */

static ssize_t ok(const uint8_t *in, size_t hdr, size_t n, size_t trailer,
                  const uint8_t **payload, size_t *plen) {
    *payload = in + hdr;
    *plen = n;
    return (ssize_t)(hdr + n + trailer);
}

static ssize_t dec_u16(const mw__framer_t *f, const uint8_t *in, size_t len,
                       const uint8_t **payload, size_t *plen) {
    if (len < 2) return MW_EAGAIN;
    size_t n = (size_t)in[0] << 8 | in[1];
    if (n > f->max_len) return MW_ETOOBIG;
    if (n > len - 2) return MW_EAGAIN;
    return ok(in, 2, n, 0, payload, plen);
}

static ssize_t dec_u32(const mw__framer_t *f, const uint8_t *in, size_t len,
                       const uint8_t **payload, size_t *plen) {
    if (len < 4) return MW_EAGAIN;
    uint32_t n = (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | in[3];
    if (n > f->max_len) return MW_ETOOBIG;
    if (n > len - 4) return MW_EAGAIN;
    return ok(in, 4, n, 0, payload, plen);
}

/* A line longer than max_len is known to be too big once max_len + 1 bytes
 * have arrived without a newline; searching further would only cost time.
 * `from` bytes are already known to hold no newline (a resumed search), so a
 * line arriving byte by byte costs linear, not quadratic, time. */
static ssize_t dec_line(const mw__framer_t *f, const uint8_t *in, size_t len, size_t *from,
                        const uint8_t **payload, size_t *plen) {
    size_t window = (size_t)f->max_len + 1;
    size_t scan = len < window ? len : window;
    size_t start = from && *from < scan ? *from : 0;
    const uint8_t *nl = scan > start ? memchr(in + start, '\n', scan - start) : NULL;
    if (!nl) {
        if (from) *from = scan;
        return len >= window ? MW_ETOOBIG : MW_EAGAIN;
    }
    if (from) *from = 0;
    return ok(in, 0, (size_t)(nl - in), 1, payload, plen);
}

ssize_t mw__frame_decode(const mw__framer_t *f, const uint8_t *in, size_t len,
                        const uint8_t **payload, size_t *plen) {
    return mw__frame_decode_resume(f, in, len, NULL, payload, plen);
}

ssize_t mw__frame_decode_resume(const mw__framer_t *f, const uint8_t *in, size_t len, size_t *scanned,
                               const uint8_t **payload, size_t *plen) {
    switch (f->kind) {
    case MW_FRAME_U16BE: return dec_u16(f, in, len, payload, plen);
    case MW_FRAME_U32BE: return dec_u32(f, in, len, payload, plen);
    case MW_FRAME_LINE: return dec_line(f, in, len, scanned, payload, plen);
    case MW_FRAME_FIXED:
        if (len < f->fixed_len) return MW_EAGAIN;
        return ok(in, 0, f->fixed_len, 0, payload, plen);
    case MW_FRAME_NONE:
        if (len == 0) return MW_EAGAIN;
        if (len > f->max_len) return MW_ETOOBIG;
        return ok(in, 0, len, 0, payload, plen);
    }
    return MW_EINVAL;
}

/* ---- encode ------------------------------------------------------------------ */

static int check_payload(const mw__framer_t *f, const void *payload, size_t plen) {
    if ((unsigned)f->kind >= N_KINDS) return MW_EINVAL;
    /* The U16 bound also protects a framer filled in by hand, without init. */
    if (plen > f->max_len || (f->kind == MW_FRAME_U16BE && plen > U16_MAX_LEN))
        return MW_ETOOBIG;
    if (f->kind == MW_FRAME_FIXED && plen != f->fixed_len) return MW_EINVAL;
    if (f->kind == MW_FRAME_LINE && plen && memchr(payload, '\n', plen)) return MW_EINVAL;
    return 0;
}

/* Writes the prefix and suffix around a payload already at out + prefix. */
static ssize_t put_frame(const mw__framer_t *f, uint8_t *out, size_t plen) {
    switch (f->kind) {
    case MW_FRAME_U16BE:
        out[0] = (uint8_t)(plen >> 8);
        out[1] = (uint8_t)plen;
        return (ssize_t)(plen + 2);
    case MW_FRAME_U32BE:
        out[0] = (uint8_t)(plen >> 24);
        out[1] = (uint8_t)(plen >> 16);
        out[2] = (uint8_t)(plen >> 8);
        out[3] = (uint8_t)plen;
        return (ssize_t)(plen + 4);
    case MW_FRAME_LINE:
        out[plen] = '\n';
        return (ssize_t)(plen + 1);
    case MW_FRAME_FIXED:
    case MW_FRAME_NONE: return (ssize_t)plen;
    }
    return MW_EINVAL;
}

ssize_t mw__frame_seal(const mw__framer_t *f, uint8_t *out, size_t plen) {
    int rc = check_payload(f, out + mw__frame_prefix_len(f), plen);
    if (rc < 0) return rc;
    return put_frame(f, out, plen);
}

ssize_t mw__frame_encode(const mw__framer_t *f, const void *payload, size_t plen,
                        uint8_t *out, size_t cap) {
    int rc = check_payload(f, payload, plen);
    if (rc < 0) return rc;
    size_t pre = mw__frame_prefix_len(f);
    if (cap < pre + mw__frame_suffix_len(f) || cap - pre - mw__frame_suffix_len(f) < plen)
        return MW_ETOOBIG;
    if (plen) memmove(out + pre, payload, plen);
    return put_frame(f, out, plen);
}
