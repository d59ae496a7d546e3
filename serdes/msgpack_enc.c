/* msgpack_enc.c - the "msgpack" serdes encoder (README "Wire formats").
 *
 * Writes the msgpack bytes straight into the caller's buffer, always with the
 * smallest encoding of each int, str, bin, map and array header: the same
 * bytes msgpack-c's packer writes (tests/test_serdes_msgpack_ref.c checks
 * that). Each part is written unchecked where the buffer has room for its
 * largest form, else through checked writers that stop at the end of the
 * buffer, so the value checks still run and a bad value is reported as such
 * even with a small buffer. */
#include "msgpack_impl.h"
#include "serdes_impl.h"
#include "err_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

__attribute__((cold, format(printf, 4, 5)))
int mw__mp_ferr(mw_serdes_t *sd, const mw_field_t *f, int code, const char *fmt, ...) {
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return mw__err_set(&sd->err, code, "msgpack: field \"%s\": %s", f->name, what);
}

/* ---- encode -------------------------------------------------------------- */

/* Output cursor. A write that does not fit sets `full` and writes nothing,
 * so the value checks still run to the end and report their own errors. */
typedef struct wr {
    uint8_t *p, *end;
    bool full;
} wr_t;

static inline bool room(const wr_t *w, size_t n) { return (size_t)(w->end - w->p) >= n; }

static inline void put(wr_t *w, const void *s, size_t n) {
    if ((size_t)(w->end - w->p) < n) {
        w->full = true;
        w->p = w->end;
        return;
    }
    memcpy(w->p, s, n);
    w->p += n;
}

/* A header of type byte b followed by the low `bytes` bytes of v, big-endian. */
static inline void put_hdr(wr_t *w, uint8_t b, uint64_t v, unsigned bytes) {
    uint8_t h[9];
    h[0] = b;
    for (unsigned k = 0; k < bytes; k++) h[1 + k] = (uint8_t)(v >> (8 * (bytes - 1 - k)));
    put(w, h, 1 + bytes);
}

static inline void pack_uint(wr_t *w, uint64_t v) {
    if (v < 0x80) put_hdr(w, (uint8_t)v, 0, 0);
    else if (v <= UINT8_MAX) put_hdr(w, 0xcc, v, 1);
    else if (v <= UINT16_MAX) put_hdr(w, 0xcd, v, 2);
    else if (v <= UINT32_MAX) put_hdr(w, 0xce, v, 4);
    else put_hdr(w, 0xcf, v, 8);
}

static inline void pack_int(wr_t *w, int64_t v) {
    if (v >= 0) pack_uint(w, (uint64_t)v);
    else if (v >= -32) put_hdr(w, (uint8_t)v, 0, 0);
    else if (v >= INT8_MIN) put_hdr(w, 0xd0, (uint64_t)v, 1);
    else if (v >= INT16_MIN) put_hdr(w, 0xd1, (uint64_t)v, 2);
    else if (v >= INT32_MIN) put_hdr(w, 0xd2, (uint64_t)v, 4);
    else put_hdr(w, 0xd3, (uint64_t)v, 8);
}

/* str/bin/array/map header: fix form (if any) below fix_max, else 8/16/32-bit
 * length after type byte b8 (bin, str) or the 16/32-bit form at b16. */
static inline void pack_str(wr_t *w, const void *s, size_t n) {
    if (n < 32) put_hdr(w, (uint8_t)(0xa0 | n), 0, 0);
    else if (n <= UINT8_MAX) put_hdr(w, 0xd9, n, 1);
    else if (n <= UINT16_MAX) put_hdr(w, 0xda, n, 2);
    else put_hdr(w, 0xdb, n, 4);
    put(w, s, n);
}

static inline void pack_bin(wr_t *w, const void *s, size_t n) {
    if (n <= UINT8_MAX) put_hdr(w, 0xc4, n, 1);
    else if (n <= UINT16_MAX) put_hdr(w, 0xc5, n, 2);
    else put_hdr(w, 0xc6, n, 4);
    put(w, s, n);
}

static inline void pack_count(wr_t *w, bool map, uint32_t n) {
    if (n < 16) put_hdr(w, (uint8_t)((map ? 0x80 : 0x90) | n), 0, 0);
    else if (n <= UINT16_MAX) put_hdr(w, map ? 0xde : 0xdc, n, 2);
    else put_hdr(w, map ? 0xdf : 0xdd, n, 4);
}

/* Packs one field's value. Overflow of the buffer is left to the sticky
 * flag; only a value the wire cannot carry returns an error here. */
static int put_value(mw_serdes_t *sd, wr_t *w, const mw_field_t *f, const uint8_t *m) {
    const uint8_t *p = m + f->offset;
    switch (f->kind) {
    case MW_FK_I8: pack_int(w, (int8_t)*p); return 0;
    case MW_FK_I16: { int16_t v; memcpy(&v, p, 2); pack_int(w, v); return 0; }
    case MW_FK_I32: { int32_t v; memcpy(&v, p, 4); pack_int(w, v); return 0; }
    case MW_FK_I64: { int64_t v; memcpy(&v, p, 8); pack_int(w, v); return 0; }
    case MW_FK_U8: pack_uint(w, *p); return 0;
    case MW_FK_U16: { uint16_t v; memcpy(&v, p, 2); pack_uint(w, v); return 0; }
    case MW_FK_U32: { uint32_t v; memcpy(&v, p, 4); pack_uint(w, v); return 0; }
    case MW_FK_U64: { uint64_t v; memcpy(&v, p, 8); pack_uint(w, v); return 0; }
    case MW_FK_F64: { uint64_t v; memcpy(&v, p, 8); put_hdr(w, 0xcb, v, 8); return 0; }
    case MW_FK_BOOL:
        if (*p > 1) return mw__mp_ferr(sd, f, MW_ERANGE, "byte %u is not a bool (0 or 1)", *p);
        put_hdr(w, *p ? 0xc3 : 0xc2, 0, 0);
        return 0;
    case MW_FK_ENUM:
        if (*p >= f->limit)
            return mw__mp_ferr(sd, f, MW_ERANGE, "%u is out of range for enum (0..%u)", *p,
                               (unsigned)f->limit - 1u);
        pack_uint(w, *p);
        return 0;
    case MW_FK_CHARS: {
        size_t len = mw__chars_len(f, m);
        if (!mw__utf8_valid(p, len)) return mw__mp_ferr(sd, f, MW_EUTF8, "invalid UTF-8");
        pack_str(w, p, len);
        return 0;
    }
    case MW_FK_BYTES: pack_bin(w, p, f->size); return 0;
    default: return mw__mp_ferr(sd, f, MW_EINVAL, "unknown field kind %u in the schema", f->kind);
    }
}

/* ---- encode, fast: the caller made sure of the room --------------------- */

static inline uint8_t *w_be(uint8_t *o, uint8_t b, uint64_t v, unsigned bytes) {
    o[0] = b;
    switch (bytes) {
    case 1: o[1] = (uint8_t)v; break;
    case 2: { uint16_t x = mw__be16((uint16_t)v); memcpy(o + 1, &x, 2); break; }
    case 4: { uint32_t x = mw__be32((uint32_t)v); memcpy(o + 1, &x, 4); break; }
    default: { uint64_t x = mw__be64(v); memcpy(o + 1, &x, 8); break; }
    }
    return o + 1 + bytes;
}

static inline uint8_t *w_uint(uint8_t *o, uint64_t v) {
    if (v < 0x80) {
        *o = (uint8_t)v;
        return o + 1;
    }
    if (v <= UINT8_MAX) return w_be(o, 0xcc, v, 1);
    if (v <= UINT16_MAX) return w_be(o, 0xcd, v, 2);
    if (v <= UINT32_MAX) return w_be(o, 0xce, v, 4);
    return w_be(o, 0xcf, v, 8);
}

static inline uint8_t *w_int(uint8_t *o, int64_t v) {
    if (v >= 0) return w_uint(o, (uint64_t)v);
    if (v >= -32) {
        *o = (uint8_t)v;
        return o + 1;
    }
    if (v >= INT8_MIN) return w_be(o, 0xd0, (uint64_t)v, 1);
    if (v >= INT16_MIN) return w_be(o, 0xd1, (uint64_t)v, 2);
    if (v >= INT32_MIN) return w_be(o, 0xd2, (uint64_t)v, 4);
    return w_be(o, 0xd3, (uint64_t)v, 8);
}

static inline uint8_t *w_str(uint8_t *o, const void *s, size_t n) {
    if (n < 32) *o++ = (uint8_t)(0xa0 | n);
    else if (n <= UINT8_MAX) o = w_be(o, 0xd9, n, 1);
    else if (n <= UINT16_MAX) o = w_be(o, 0xda, n, 2);
    else o = w_be(o, 0xdb, n, 4);
    mw__copy_small(o, s, n);
    return o + n;
}

/* Most bytes field f can take as key (map form) and value. */
static inline size_t field_room(const mw_field_t *f, bool map) {
    size_t key = map ? 3u + f->name_len : 0;
    return key + (f->kind == MW_FK_CHARS || f->kind == MW_FK_BYTES ? 5u + f->size : 9u);
}

static int w_value(mw_serdes_t *sd, uint8_t **op, const mw_field_t *f, const uint8_t *m) {
    const uint8_t *p = m + f->offset;
    uint8_t *o = *op;
    switch (f->kind) {
    case MW_FK_I8: o = w_int(o, (int8_t)*p); break;
    case MW_FK_I16: { int16_t v; memcpy(&v, p, 2); o = w_int(o, v); break; }
    case MW_FK_I32: { int32_t v; memcpy(&v, p, 4); o = w_int(o, v); break; }
    case MW_FK_I64: { int64_t v; memcpy(&v, p, 8); o = w_int(o, v); break; }
    case MW_FK_U8: o = w_uint(o, *p); break;
    case MW_FK_U16: { uint16_t v; memcpy(&v, p, 2); o = w_uint(o, v); break; }
    case MW_FK_U32: { uint32_t v; memcpy(&v, p, 4); o = w_uint(o, v); break; }
    case MW_FK_U64: { uint64_t v; memcpy(&v, p, 8); o = w_uint(o, v); break; }
    case MW_FK_F64: { uint64_t v; memcpy(&v, p, 8); o = w_be(o, 0xcb, v, 8); break; }
    case MW_FK_BOOL:
    case MW_FK_ENUM:
        if (*p > mw__field_max(f)) return put_value(sd, NULL, f, m); /* words the error */
        o = f->kind == MW_FK_BOOL ? (*o = (uint8_t)(0xc2 | *p), o + 1) : w_uint(o, *p);
        break;
    case MW_FK_CHARS: {
        size_t len = mw__chars_len(f, m);
        if (!mw__utf8_valid(p, len)) return mw__mp_ferr(sd, f, MW_EUTF8, "invalid UTF-8");
        o = w_str(o, p, len);
        break;
    }
    case MW_FK_BYTES:
        o = f->size <= UINT8_MAX ? w_be(o, 0xc4, f->size, 1)
            : f->size <= UINT16_MAX ? w_be(o, 0xc5, f->size, 2) : w_be(o, 0xc6, f->size, 4);
        memcpy(o, p, f->size);
        o += f->size;
        break;
    default: return put_value(sd, NULL, f, m);
    }
    *op = o;
    return 0;
}

/* Each part is written unchecked where the buffer has room for its largest
 * form, else through the checked writers above. */
ssize_t mw__mp_encode(mw_serdes_t *sd, const mw_schema_t *s, const void *msg,
                         uint8_t *out, size_t cap) {
    wr_t w = {out, out + cap, false};
    bool map = !(sd->flags & MW_SERDES_MSGPACK_ARRAY);
    if (room(&w, 24u + s->name_len)) {
        uint8_t *o = w.p;
        o = 1u + s->nfields < 16 ? (*o = (uint8_t)((map ? 0x80 : 0x90) | (1u + s->nfields)), o + 1)
                                  : w_be(o, map ? 0xde : 0xdc, 1u + s->nfields, 2);
        o = map ? w_str(w_str(o, "type", 4), s->name, s->name_len) : w_uint(o, s->tag);
        w.p = o;
    } else {
        pack_count(&w, map, 1u + s->nfields);
        if (map) {
            pack_str(&w, "type", 4);
            pack_str(&w, s->name, s->name_len);
        } else {
            pack_uint(&w, s->tag);
        }
    }
    for (unsigned i = 0; i < s->nfields; i++) {
        const mw_field_t *f = &s->fields[i];
        int rc;
        if (room(&w, field_room(f, map))) {
            if (map) w.p = w_str(w.p, f->name, f->name_len);
            rc = w_value(sd, &w.p, f, msg);
        } else {
            if (map) pack_str(&w, f->name, f->name_len);
            rc = put_value(sd, &w, f, msg);
        }
        if (rc) return rc;
    }
    if (w.full)
        return mw__err_set(&sd->err, MW_ETOOBIG, "msgpack: %s does not fit in %zu bytes", s->name,
                          cap);
    return w.p - out;
}

