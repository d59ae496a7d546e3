/* fixed.c - the "fixed" serdes: a 2-byte little-endian tag, then every field
 * in declaration order, packed, little-endian (README "Wire formats").
 *
 * This is the fastest path in the library. Decode is a bounds check plus one
 * copy per field; only BOOL, ENUM and CHARS look at the bytes they copy. The
 * wire size of a message is a constant of its schema (fixed_size), so the
 * only length check is one comparison. */
#include "serdes_impl.h"
#include "err_impl.h"

#include <string.h>

/* The wire is little-endian. Both paths of copy_le() are compiled on every
 * host so the big-endian one cannot rot; the dead one folds away. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define HOST_LE 1
#elif defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define HOST_LE 0
#else
#error "fixed.c: unknown byte order (__BYTE_ORDER__ is not defined)"
#endif
/* Whole-message copies (MW_SCHEMA_PLAIN) need the wire's byte order. */
#if HOST_LE
#define PLAIN_OK 1
#else
#define PLAIN_OK 0
#endif

/* Copies an n-byte number between host order and little-endian (the same
 * operation in both directions). n is a constant at every call site. */
static inline void copy_le(uint8_t *dst, const uint8_t *src, size_t n) {
    if (HOST_LE) {
        memcpy(dst, src, n);
        return;
    }
    for (size_t i = 0; i < n; i++) dst[i] = src[n - 1 - i];
}

/* CHARS of at most 16 bytes (symbols, ids), in two words: the n bytes at p
 * zero-extended, so a NUL is found without a call. */
typedef struct words { uint64_t w[2]; } words_t;

static inline words_t load16(const uint8_t *p, size_t n) {
    uint8_t b[16] = {0};
    words_t x;
    mw__copy_upto16(b, p, n);
    memcpy(x.w, b, 16);
    return x;
}

/* Bytes before the first zero byte of x (16 if none). The lowest flagged
 * byte of the zero-byte test is exact. */
static inline size_t len16(words_t x) {
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    uint64_t z0 = (x.w[0] - ones) & ~x.w[0] & high, z1 = (x.w[1] - ones) & ~x.w[1] & high;
    if (z0) return (size_t)__builtin_ctzll(z0) / 8;
    if (z1) return 8 + (size_t)__builtin_ctzll(z1) / 8;
    return 16;
}

/* x with every byte from len on cleared. */
static inline words_t keep16(words_t x, size_t len) {
    if (len < 8) {
        x.w[0] = len ? x.w[0] & (~0ull >> (64 - 8 * len)) : 0;
        x.w[1] = 0;
    } else if (len < 16) {
        x.w[1] = len > 8 ? x.w[1] & (~0ull >> (64 - 8 * (len - 8))) : 0;
    }
    return x;
}

static inline bool ascii16(words_t x) { return ((x.w[0] | x.w[1]) & 0x8080808080808080ull) == 0; }

/* CHARS on the wire: the text, then NUL up to the field size. Returns 0,
 * MW_EPROTO (a non-NUL byte after the first NUL) or MW_EUTF8. */
static int chars_check(const uint8_t *p, size_t n) {
    if (HOST_LE && n <= 16) {
        words_t x = load16(p, n);
        size_t len = len16(x);
        words_t t = keep16(x, len);
        if (t.w[0] != x.w[0] || t.w[1] != x.w[1]) return MW_EPROTO;
        return ascii16(x) || mw__utf8_valid(p, len) ? 0 : MW_EUTF8;
    }
    const uint8_t *z = memchr(p, 0, n);
    size_t len = z ? (size_t)(z - p) : n;
    for (size_t i = len + 1; i < n; i++)
        if (p[i] != 0) return MW_EPROTO;
    return mw__utf8_valid(p, len) ? 0 : MW_EUTF8;
}

/* Copies one field from the struct (src) to the wire (dst). CHARS are
 * written as the text before the first NUL plus NUL padding, so stale bytes
 * after the terminator (strcpy into an uninitialised struct) never reach the
 * wire, where the decoder would reject them. */
static inline int put_field(const mw_field_t *f, const uint8_t *src, uint8_t *dst) {
    switch (f->kind) {
    case MW_FK_I8:
    case MW_FK_U8: *dst = *src; return 0;
    case MW_FK_I16:
    case MW_FK_U16: copy_le(dst, src, 2); return 0;
    case MW_FK_I32:
    case MW_FK_U32: copy_le(dst, src, 4); return 0;
    case MW_FK_I64:
    case MW_FK_U64:
    case MW_FK_F64: copy_le(dst, src, 8); return 0;
    case MW_FK_BOOL: if (*src > 1) return MW_ERANGE; *dst = *src; return 0;
    case MW_FK_ENUM: if (*src >= f->limit) return MW_ERANGE; *dst = *src; return 0;
    case MW_FK_BYTES: memcpy(dst, src, f->size); return 0;
    case MW_FK_CHARS: {
        if (HOST_LE && f->size <= 16) {
            words_t x = load16(src, f->size);
            size_t len = len16(x);
            if (!ascii16(x) && !mw__utf8_valid(src, len < f->size ? len : f->size)) return MW_EUTF8;
            x = keep16(x, len);
            uint8_t b[16];
            memcpy(b, x.w, 16);
            mw__copy_upto16(dst, b, f->size);
            return 0;
        }
        const uint8_t *z = memchr(src, 0, f->size);
        size_t len = z ? (size_t)(z - src) : f->size;
        if (!mw__utf8_valid(src, len)) return MW_EUTF8;
        memcpy(dst, src, len);
        memset(dst + len, 0, f->size - len);
        return 0;
    }
    default: return MW_EINVAL;
    }
}

/* Copies one field from the wire (src) into the struct (dst). */
static inline int get_field(const mw_field_t *f, const uint8_t *src, uint8_t *dst) {
    switch (f->kind) {
    case MW_FK_I8:
    case MW_FK_U8: *dst = *src; return 0;
    case MW_FK_I16:
    case MW_FK_U16: copy_le(dst, src, 2); return 0;
    case MW_FK_I32:
    case MW_FK_U32: copy_le(dst, src, 4); return 0;
    case MW_FK_I64:
    case MW_FK_U64:
    case MW_FK_F64: copy_le(dst, src, 8); return 0;
    case MW_FK_BOOL: if (*src > 1) return MW_ERANGE; *dst = *src; return 0;
    case MW_FK_ENUM: if (*src >= f->limit) return MW_ERANGE; *dst = *src; return 0;
    case MW_FK_BYTES: memcpy(dst, src, f->size); return 0;
    case MW_FK_CHARS: {
        int rc = chars_check(src, f->size);
        if (rc) return rc;
        mw__copy_small(dst, src, f->size);
        return 0;
    }
    default: return MW_EINVAL;
    }
}

/* Error text for a field, written only on failure; p is the field's bytes
 * (in the struct when encoding, on the wire when decoding). */
__attribute__((cold)) static int field_error(mw_serdes_t *sd, const mw_field_t *f, int code,
                                             const uint8_t *p) {
    const char *why;
    switch (code) {
    case MW_ERANGE:
        if (f->kind == MW_FK_BOOL)
            return mw__err_set(&sd->err, code, "fixed: field \"%s\": byte %u is not a bool (0 or 1)",
                              f->name, *p);
        return mw__err_set(&sd->err, code, "fixed: field \"%s\": %u is out of range for enum (0..%u)",
                          f->name, *p, (unsigned)f->limit - 1u);
    case MW_EPROTO: why = "bytes after the terminating NUL are not NUL"; break;
    case MW_EUTF8: why = "invalid UTF-8"; break;
    default: why = "unknown field kind in the schema"; break;
    }
    return mw__err_set(&sd->err, code, "fixed: field \"%s\": %s", f->name, why);
}

static ssize_t fixed_encode(mw_serdes_t *sd, const mw_schema_t *s, const void *msg,
                            uint8_t *out, size_t cap) {
    if (cap < s->fixed_size)
        return mw__err_set(&sd->err, MW_ETOOBIG, "fixed: %s needs %u bytes, the buffer has %zu",
                          s->name, (unsigned)s->fixed_size, cap);
    out[0] = (uint8_t)(s->tag & 0xff);
    out[1] = (uint8_t)(s->tag >> 8);
    if (PLAIN_OK && (s->flags & MW_SCHEMA_PLAIN)) {
        memcpy(out + 2, msg, s->fixed_size - 2u);
        return (ssize_t)s->fixed_size;
    }
    /* Locals, not s->..., in the loop: byte stores may alias the schema, so
     * the compiler would reload them for every field. */
    const mw_field_t *fields = s->fields;
    const unsigned nfields = s->nfields;
    const uint8_t *m = msg;
    uint8_t *o = out + 2;
    for (unsigned i = 0; i < nfields; i++) {
        const mw_field_t *f = &fields[i];
        int rc = put_field(f, m + f->offset, o);
        if (rc) return field_error(sd, f, rc, m + f->offset);
        o += f->size;
    }
    return (ssize_t)s->fixed_size;
}

/* The field-by-field decode (a schema that is not MW_SCHEMA_PLAIN), out of
 * line so the plain path keeps a small frame. */
static __attribute__((noinline)) ssize_t decode_fields(mw_serdes_t *sd, const mw_schema_t *s, const uint8_t *in,
                                                       uint8_t *m) {
    /* Every byte of the struct is written: the fields by the loop, padding
     * (if the struct has any) here. */
    if (s->size != s->fixed_size - 2u) memset(m, 0, s->size);
    const mw_field_t *fields = s->fields;
    const unsigned nfields = s->nfields;
    const uint8_t *q = in + 2;
    for (unsigned i = 0; i < nfields; i++) {
        const mw_field_t *f = &fields[i];
        int rc = get_field(f, q, m + f->offset);
        if (rc) return field_error(sd, f, rc, q);
        q += f->size;
    }
    return (ssize_t)s->fixed_size;
}

static __attribute__((noinline, cold)) ssize_t decode_refused(mw_serdes_t *sd, const mw_schema_t *s, size_t len,
                                                              unsigned tag, size_t msg_cap) {
    if (len < 2) return mw__err_set(&sd->err, MW_ETRUNC, "fixed: %zu bytes, shorter than the 2-byte tag", len);
    if (!s) return mw__err_set(&sd->err, MW_ETAG, "fixed: unknown tag %u", tag);
    if (len != s->fixed_size)
        return mw__err_set(&sd->err, len < s->fixed_size ? MW_ETRUNC : MW_ETRAILING,
                          "fixed: %zu bytes for %s, which takes %u", len, s->name, (unsigned)s->fixed_size);
    return mw__err_set(&sd->err, MW_ETOOBIG, "fixed: %s (%u bytes) does not fit in %zu bytes", s->name,
                      (unsigned)s->size, msg_cap);
}

/* Every case: the type looked up, every check, field by field unless the
 * schema is plain. */
static __attribute__((noinline)) ssize_t decode_any(mw_serdes_t *sd, const uint8_t *in, size_t len,
                                                    const mw_protocol_t *p, const mw_schema_t **schema_out,
                                                    void *msg_out, size_t msg_cap) {
    unsigned tag = len >= 2 ? (unsigned)in[0] | (unsigned)in[1] << 8 : 0;
    const mw_schema_t *s = len >= 2 ? mw__serdes_lookup(sd, p, tag) : NULL;
    if (!s || len != s->fixed_size || msg_cap < s->size) return decode_refused(sd, s, len, tag, msg_cap);
    uint8_t *m = msg_out;
    const size_t body = s->fixed_size - 2u;
    if (PLAIN_OK && (s->flags & MW_SCHEMA_PLAIN)) {
        if (s->size > body) memset(m + body, 0, s->size - body);
        memcpy(m, in + 2, body);
    } else {
        ssize_t r = decode_fields(sd, s, in, m);
        if (r < 0) return r;
    }
    *schema_out = s;
    return (ssize_t)len;
}

/* The common case in a small frame: the same type as the last message
 * (the serdes' one-entry cache), a plain schema, the right length. The
 * wire bytes are then the struct's; only its tail padding (under 8 bytes)
 * is not on the wire: one zero word over the struct's last 8 bytes, then
 * the body over it, instead of a memset call. Anything else: decode_any. */
static ssize_t fixed_decode(mw_serdes_t *sd, const uint8_t *in, size_t len,
                            const mw_protocol_t *p, const mw_schema_t **schema_out,
                            void *msg_out, size_t msg_cap) {
    const mw_schema_t *s = sd->c_schema;
    if (!PLAIN_OK || len < 2 || !s || sd->c_proto != p || sd->c_tag != ((unsigned)in[0] | (unsigned)in[1] << 8) ||
        !(s->flags & MW_SCHEMA_PLAIN) || len != s->fixed_size || msg_cap < s->size || s->size < 8 ||
        s->size - (s->fixed_size - 2u) >= 8)
        return decode_any(sd, in, len, p, schema_out, msg_out, msg_cap);
    uint8_t *m = msg_out;
    const uint64_t zero = 0;
    memcpy(m + s->size - 8, &zero, 8);
    *schema_out = s;
    memcpy(m, in + 2, len - 2);
    return (ssize_t)len;
}

const mw_serdes_ops_t mw__serdes_fixed_ops = {"fixed", MW_FRAME_U32BE, false, NULL, NULL,
                                             fixed_encode, fixed_decode};
