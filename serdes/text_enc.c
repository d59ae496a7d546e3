/* text_enc.c - the "text" serdes encoder: one JSON object (RFC 8259) per
 * message, members in declaration order, no spaces:
 *
 *   {"type":"new_order","order_id":7,"symbol":"ABC","flags":"00ff0000",...}
 *
 * See README.md ("Wire formats"). Numbers are formatted without the C
 * library (text_num.c); strings are copied in runs between the bytes that
 * need an escape, found eight at a time. */
#include "text_impl.h"
#include "err_impl.h"
#include "serdes_impl.h"

#include <math.h>

/* Output cursor. Writes that do not fit set `over` and stop writing, so the
 * encoder can finish its value checks and report MW_ETOOBIG once. */
typedef struct wr {
    uint8_t *p, *end;
    bool over;
} wr_t;

static inline bool room(const wr_t *w, size_t n) { return (size_t)(w->end - w->p) >= n; }

static inline void put(wr_t *w, const void *s, size_t n) {
    if (!room(w, n)) {
        w->over = true;
        w->p = w->end;
        return;
    }
    mw__copy_small(w->p, s, n);
    w->p += n;
}

static inline void put1(wr_t *w, uint8_t c) { put(w, &c, 1); }

/* Escapes: 0 for a byte copied as is, else the letter after '\' ('u' for
 * \u00XX). */
static const uint8_t esc_tab[256] = {
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
    ['"'] = '"', ['\\'] = '\\',
};

static void put_escape(wr_t *w, uint8_t c) {
    uint8_t e[6] = {'\\', esc_tab[c], '0', '0', 0, 0};
    if (e[1] != 'u') {
        put(w, e, 2);
        return;
    }
    memcpy(e + 4, mw__hex_pairs + 2 * c, 2);
    put(w, e, 6);
}

/* s[0..n) is valid UTF-8: copied in runs between the bytes to escape. */
static void put_string_body(wr_t *w, const uint8_t *s, size_t n) {
    size_t i = 0, run = 0;
    while (i < n) {
        if (n - i >= 8) {
            uint8_t chunk[8];
            memcpy(chunk, s + i, 8);
            /* >= 0x80 is flagged too: multi-byte UTF-8 is copied as is */
            if (!mw__special8(chunk)) {
                i += 8;
                continue;
            }
        }
        if (esc_tab[s[i]]) {
            put(w, s + run, i - run);
            put_escape(w, s[i]);
            run = i + 1;
        }
        i++;
    }
    put(w, s + run, n - run);
}

static int enc_chars(mw_serdes_t *sd, wr_t *w, const mw_field_t *f, const void *msg) {
    const uint8_t *s = (const uint8_t *)msg + f->offset;
    size_t n = mw__chars_len(f, msg);
    if (!mw__utf8_valid(s, n))
        return mw__err_set(&sd->err, MW_EUTF8, "text: field \"%s\": not valid UTF-8", f->name);
    put1(w, '"');
    put_string_body(w, s, n);
    put1(w, '"');
    return 0;
}

static void enc_bytes(wr_t *w, const mw_field_t *f, const void *msg) {
    const uint8_t *s = (const uint8_t *)msg + f->offset;
    size_t n = f->size;
    if (!room(w, 2 * n + 2)) {
        w->over = true;
        w->p = w->end;
        return;
    }
    uint8_t *o = w->p;
    *o++ = '"';
    mw__hex_encode(o, s, n);
    o += 2 * n;
    *o++ = '"';
    w->p = o;
}

static int enc_f64(mw_serdes_t *sd, wr_t *w, const mw_field_t *f, const void *msg) {
    double v;
    char buf[MW__F64_TEXT];
    memcpy(&v, (const char *)msg + f->offset, 8);
    if (!isfinite(v))
        return mw__err_set(&sd->err, MW_ERANGE, "text: field \"%s\": %s is not a JSON number",
                          f->name, isnan(v) ? "NaN" : "an infinity");
    if (room(w, MW__F64_TEXT)) w->p += mw__fmt_f64((char *)w->p, v);
    else put(w, buf, mw__fmt_f64(buf, v));
    return 0;
}

/* BOOL and ENUM: an unsigned byte that must be within the field's range. */
static int enc_small(mw_serdes_t *sd, wr_t *w, const mw_field_t *f, const void *msg) {
    unsigned v = *((const uint8_t *)msg + f->offset);
    unsigned max = f->kind == MW_FK_BOOL ? 1u : f->limit - 1u;
    char buf[24];
    if (v > max)
        return mw__err_set(&sd->err, MW_ERANGE,
                          "text: field \"%s\": %u is out of range for %s (0..%u)", f->name, v,
                          mw_fkind_name(f->kind), max);
    if (f->kind == MW_FK_BOOL)
        put(w, v ? "true" : "false", v ? 4 : 5);
    else if (v < 10)
        put1(w, (uint8_t)('0' + v));
    else
        put(w, buf, mw__fmt_u64(buf, v));
    return 0;
}

/* Integers, formatted straight into the output when there is room. */
static void enc_int(wr_t *w, const mw_field_t *f, const uint8_t *p) {
    char buf[24];
    char *o = room(w, sizeof buf) ? (char *)w->p : buf;
    size_t n;
    switch (f->kind) {
    case MW_FK_I8: n = mw__fmt_i64(o, (int8_t)*p); break;
    case MW_FK_I16: { int16_t v; memcpy(&v, p, 2); n = mw__fmt_i64(o, v); break; }
    case MW_FK_I32: { int32_t v; memcpy(&v, p, 4); n = mw__fmt_i64(o, v); break; }
    case MW_FK_I64: { int64_t v; memcpy(&v, p, 8); n = mw__fmt_i64(o, v); break; }
    case MW_FK_U8: n = mw__fmt_u64(o, *p); break;
    case MW_FK_U16: { uint16_t v; memcpy(&v, p, 2); n = mw__fmt_u64(o, v); break; }
    case MW_FK_U32: { uint32_t v; memcpy(&v, p, 4); n = mw__fmt_u64(o, v); break; }
    default: { uint64_t v; memcpy(&v, p, 8); n = mw__fmt_u64(o, v); break; }
    }
    if (o == buf) put(w, buf, n);
    else w->p += n;
}

static int enc_value(mw_serdes_t *sd, wr_t *w, const mw_field_t *f, const void *msg) {
    switch (f->kind) {
    case MW_FK_F64: return enc_f64(sd, w, f, msg);
    case MW_FK_CHARS: return enc_chars(sd, w, f, msg);
    case MW_FK_BYTES: enc_bytes(w, f, msg); return 0;
    case MW_FK_BOOL:
    case MW_FK_ENUM: return enc_small(sd, w, f, msg);
    default: enc_int(w, f, (const uint8_t *)msg + f->offset); return 0;
    }
}

/* `,"name":` */
static inline void put_key(wr_t *w, const mw_field_t *f) {
    size_t n = f->name_len;
    if (!room(w, n + 4)) {
        w->over = true;
        w->p = w->end;
        return;
    }
    uint8_t *o = w->p;
    memcpy(o, ",\"", 2);
    mw__copy_small(o + 2, f->name, n);
    memcpy(o + 2 + n, "\":", 2);
    w->p = o + n + 4;
}

static ssize_t text_encode(mw_serdes_t *sd, const mw_schema_t *s, const void *msg, uint8_t *out,
                           size_t cap) {
    wr_t w = {out, cap ? out + cap : out, false};
    put(&w, "{\"type\":\"", 9);
    put(&w, s->name, s->name_len);
    put1(&w, '"');
    for (unsigned i = 0; i < s->nfields; i++) {
        const mw_field_t *f = &s->fields[i];
        put_key(&w, f);
        int rc = enc_value(sd, &w, f, msg);
        if (rc < 0) return rc;
    }
    put1(&w, '}');
    if (w.over)
        return mw__err_set(&sd->err, MW_ETOOBIG, "text: \"%s\" does not fit in %zu bytes",
                          s->name, cap);
    return w.p - out;
}

ssize_t mw__text_encode(mw_serdes_t *sd, const mw_schema_t *s, const void *msg, uint8_t *out,
                        size_t cap) {
    return text_encode(sd, s, msg, out, cap);
}
