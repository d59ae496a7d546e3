/* text_fast.c - the single-pass reader of the canonical "text" form:
 *
 *   {"type":"<name>","<field 1>":<value>,...,"<field n>":<value>}
 *
 * exactly as the encoder writes it: "type" first, then every field once in
 * declaration order, no whitespace and no escapes. The schema drives it: at
 * each step it expects one known key (one memcmp) and one value of a known
 * kind, and fills the struct as it goes. Every field appears once, in order,
 * so there is nothing to track for duplicates or missing fields.
 *
 * At anything else (another order, whitespace, an escape, an unknown type,
 * a value out of range, bad UTF-8, ...) it gives up and the general decoder
 * in text_dec.c starts over; that one accepts every valid form and words
 * every error. The checks here are the general decoder's checks, so whatever
 * this reader accepts, the general one accepts with the same struct.
 */
#include "serdes_impl.h"
#include "text_impl.h"

#include <math.h>

typedef struct fr {
    const uint8_t *p, *end;
} fr_t;

static inline bool is_digit(uint8_t b) { return b >= '0' && b <= '9'; }

/* Leading decimal digits among the 8 bytes x (0..8). */
static inline unsigned digits8(uint64_t x) {
    const uint64_t f0 = 0xF0F0F0F0F0F0F0F0ull, z = 0x3030303030303030ull;
    /* a byte is a digit if its high nibble is 3 and adding 6 keeps it 3 */
    uint64_t bad = ((x & f0) ^ z) | (((x + 0x0606060606060606ull) & f0) ^ z);
    return bad ? (unsigned)__builtin_ctzll(bad) / 8 : 8;
}

/* The number written by the n (1..8) digits at the start of x. */
static inline uint64_t parse8(uint64_t x, unsigned n) {
    uint64_t v = (x & 0x0F0F0F0F0F0F0F0Full) << (8 * (8 - n)); /* leading zero digits */
    v = (v * 2561) >> 8;
    v = ((v & 0x00FF00FF00FF00FFull) * 6553601) >> 16;
    return ((v & 0x0000FFFF0000FFFFull) * 42949672960001ull) >> 32;
}

/* Digits of a JSON integer at r->p (after any '-'): no leading zero, no
 * fraction or exponent, no overflow of 64 bits. Eight digits at a time
 * where eight bytes can be read; byte by byte near the end of the input and
 * beyond 19 digits. */
static bool read_mag(fr_t *r, uint64_t *mag) {
    const uint8_t *p = r->p, *end = r->end;
    if (p == end || !is_digit(*p)) return false;
    uint64_t v = 0;
    unsigned total = 0;
    if (p[0] == '0' || end - p < 2 || !is_digit(p[1])) { /* one digit (enums, flags) */
        v = (uint64_t)(*p++ - '0');
        if (v == 0 && p < end && is_digit(*p)) return false; /* leading zero */
    } else {
        while (MW__LE && end - p >= 8) { /* the SWAR digits assume little-endian */
            uint64_t x;
            memcpy(&x, p, 8);
            unsigned n = digits8(x);
            if (n == 0 || total + n > 19) break;
            v = v * mw__pow10_u64[n] + parse8(x, n);
            total += n;
            p += n;
            if (n < 8) break;
        }
        for (; p < end && is_digit(*p); p++)
            if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v))
                return false;
    }
    if (p < end && (*p == '.' || *p == 'e' || *p == 'E')) return false;
    r->p = p;
    *mag = v;
    return true;
}

static inline void store(uint8_t *dst, unsigned size, uint64_t v) {
    switch (size) {
    case 1: *dst = (uint8_t)v; break;
    case 2: { uint16_t x = (uint16_t)v; memcpy(dst, &x, 2); break; }
    case 4: { uint32_t x = (uint32_t)v; memcpy(dst, &x, 4); break; }
    default: memcpy(dst, &v, 8); break;
    }
}

/* Integer kinds and ENUM, range-checked exactly. */
static bool read_int(fr_t *r, const mw_field_t *f, uint8_t *dst) {
    bool neg = r->p < r->end && *r->p == '-';
    uint64_t mag;
    r->p += neg;
    if (!read_mag(r, &mag)) return false;
    if (!neg || mag == 0) {
        if (mag > mw__field_max(f)) return false;
        store(dst, f->size, mag);
        return true;
    }
    if (mag > mw__field_neg_max(f)) return false;
    store(dst, f->size, 0 - mag);
    return true;
}

/* Digits at *pp into the mantissa *m while it has fewer than 19 significant
 * digits (else *exact is cleared); *scale counts the digits taken (for the
 * fraction's exponent). False if there is no digit. */
static inline bool mantissa(const uint8_t **pp, const uint8_t *end, uint64_t *m, int *nd,
                            int *scale, bool *exact) {
    const uint8_t *p = *pp;
    for (; p < end && is_digit(*p); p++) {
        if (*nd == 19) {
            *exact = false;
            continue;
        }
        *m = *m * 10 + (unsigned)(*p - '0');
        *nd += *m != 0;
        (*scale)++;
    }
    if (p == *pp) return false;
    *pp = p;
    return true;
}

/* A JSON number token, converted as the general decoder converts it (both
 * are correctly rounded): exactly here for at most 19 significant digits
 * with a power of ten up to 22, else by mw__parse_f64. One pass over the
 * digits for the common case. */
static bool read_f64(fr_t *r, uint8_t *dst) {
    const uint8_t *s = r->p, *p = s, *end = r->end;
    bool neg = p < end && *p == '-', exact = true;
    uint64_t m = 0;
    int nd = 0, e = 0, ignore = 0;
    p += neg;
    if (p < end && *p == '0') {
        p++;
        if (p < end && is_digit(*p)) return false;
    } else if (!mantissa(&p, end, &m, &nd, &ignore, &exact)) {
        return false;
    }
    if (!exact) return false; /* over 19 integer digits: rare, leave it to the general path */
    if (p < end && *p == '.') {
        int frac = 0;
        p++;
        if (!mantissa(&p, end, &m, &nd, &frac, &exact)) return false;
        e = -frac;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        bool eneg = p < end && *p == '-';
        p += p < end && (*p == '+' || *p == '-');
        const uint8_t *x0 = p;
        int x = 0;
        for (; p < end && is_digit(*p); p++)
            if (x < 100000) x = x * 10 + (*p - '0');
        if (p == x0) return false;
        e += eneg ? -x : x;
    }
    size_t len = (size_t)(p - s);
    if (len > MW__NUM_MAX) return false;
    double v;
    if (exact && m <= ((uint64_t)1 << 53) && e >= -22 && e <= 22) {
        v = (double)m;
        v = e < 0 ? v / mw__pow10[-e] : v * mw__pow10[e];
        v = neg ? -v : v;
    } else {
        v = mw__parse_f64(s, len);
    }
    if (!isfinite(v)) return false;
    memcpy(dst, &v, 8);
    r->p = p;
    return true;
}

/* A string without escapes or control characters, valid UTF-8, that fits
 * CHARS field f. */
static bool read_chars(fr_t *r, const mw_field_t *f, uint8_t *dst) {
    const uint8_t *s = r->p + 1, *q = s;
    bool high = false;
    if (*r->p != '"') return false;
    for (;;) {
        q = mw__plain_run(q, r->end);
        if (q == r->end || *q < 0x80) break;
        high = true;
        q++;
    }
    if (q == r->end || *q != '"') return false;
    size_t n = (size_t)(q - s);
    if (n > f->size || (high && !mw__utf8_valid(s, n))) return false;
    memcpy(dst, s, n);
    r->p = q + 1;
    return true;
}

/* Exactly 2n hex digits between quotes. */
static bool read_bytes(fr_t *r, const mw_field_t *f, uint8_t *dst) {
    size_t n = f->size;
    if ((size_t)(r->end - r->p) < 2 * n + 2 || r->p[0] != '"' || r->p[2 * n + 1] != '"')
        return false;
    if (!mw__hex_decode(r->p + 1, dst, n)) return false;
    r->p += 2 * n + 2;
    return true;
}

static bool read_bool(fr_t *r, uint8_t *dst) {
    size_t avail = (size_t)(r->end - r->p);
    if (avail >= 4 && memcmp(r->p, "true", 4) == 0) {
        *dst = 1;
        r->p += 4;
        return true;
    }
    if (avail >= 5 && memcmp(r->p, "false", 5) == 0) {
        *dst = 0;
        r->p += 5;
        return true;
    }
    return false;
}

static bool read_value(fr_t *r, const mw_field_t *f, uint8_t *msg) {
    uint8_t *dst = msg + f->offset;
    switch (f->kind) {
    case MW_FK_F64: return read_f64(r, dst);
    case MW_FK_BOOL: return read_bool(r, dst);
    case MW_FK_CHARS: return read_chars(r, f, dst);
    case MW_FK_BYTES: return read_bytes(r, f, dst);
    default: return read_int(r, f, dst);
    }
}

/* `,"name":` for field f. */
static inline bool read_key(fr_t *r, const mw_field_t *f) {
    size_t n = f->name_len;
    const uint8_t *p = r->p;
    if ((size_t)(r->end - p) < n + 5 || p[0] != ',' || p[1] != '"' || p[n + 2] != '"' ||
        p[n + 3] != ':' || !mw__eq_small(p + 2, f->name, n))
        return false;
    r->p = p + n + 4;
    return true;
}

/* The schema named name[0..n), through the serdes' one-entry cache. */
static const mw_schema_t *by_name(mw_serdes_t *sd, const mw_protocol_t *p, const uint8_t *name,
                                  size_t n) {
    const mw_schema_t *s = sd->c_schema;
    if (s && sd->c_proto == p && s->name_len == n && mw__eq_small(s->name, name, n)) return s;
    s = mw_protocol_by_name(p, (const char *)name, n);
    if (s) {
        sd->c_proto = p;
        sd->c_tag = s->tag;
        sd->c_schema = s;
    }
    return s;
}

bool mw__text_decode_fast(mw_serdes_t *sd, const uint8_t *in, size_t len, const mw_protocol_t *p,
                          const mw_schema_t **schema_out, void *msg_out, size_t msg_cap) {
    fr_t r = {in, in + len};
    if (len < 12 || memcmp(in, "{\"type\":\"", 9) != 0) return false;
    const uint8_t *name = in + 9, *q = mw__plain_run(name, r.end);
    if (q == r.end || *q != '"') return false;
    const mw_schema_t *s = by_name(sd, p, name, (size_t)(q - name));
    if (!s || s->size > msg_cap) return false;
    r.p = q + 1;
    uint8_t *msg = msg_out;
    memset(msg, 0, s->size);
    for (unsigned i = 0; i < s->nfields; i++) {
        const mw_field_t *f = &s->fields[i];
        if (!read_key(&r, f) || !read_value(&r, f, msg)) return false;
    }
    if (r.end - r.p != 1 || *r.p != '}') return false;
    *schema_out = s;
    return true;
}
