/* msgpack_dec.c - the "msgpack" serdes (README "Wire formats"): state, the
 * decoder and the ops table; the encoder is in msgpack_enc.c.
 *
 * Map form (default): {"type": name, field: value, ...} in declaration order.
 * Array form (MW_SERDES_MSGPACK_ARRAY): [tag, value, ...]. The decoder takes
 * either form whatever the flag says; the flag picks what encode writes.
 *
 * Decode reads the input in place, one item at a time, and fills the struct
 * as it goes: no object tree, no zone, no allocation. A declared count is
 * never trusted for anything but a loop bound over the real bytes, so "array
 * of 4 billion" in 5 bytes costs five bytes of reading. When the fast pass
 * finds anything wrong, scan() walks the whole object and decides which
 * error is reported: framing (truncated, malformed, trailing bytes) first,
 * then the first semantic error in input order. The verdicts are the same
 * as when msgpack-c's unpacker built the tree first. */
#include "msgpack_impl.h"
#include "serdes_impl.h"
#include "err_impl.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_DEPTH = 32, MAX_FIELDS = 65536 };

/* The fast pass met bytes that are not a well-formed object: scan() names it. */
enum { E_FRAME = -10000 };

typedef struct mp_state {
    uint64_t seen[MAX_FIELDS / 64]; /* map form: fields already read */
} mp_state_t;

static int mp_init(mw_serdes_t *sd) {
    mp_state_t *st = malloc(sizeof *st);
    if (!st) return mw__err_set(&sd->err, MW_ENOMEM, "msgpack: out of memory");
    sd->state = st;
    return 0;
}

static void mp_fini(mw_serdes_t *sd) {
    free(sd->state);
    sd->state = NULL;
}

/* ---- one decoded item ---------------------------------------------------- */

typedef enum { O_NIL, O_BOOL, O_UINT, O_INT, O_F32, O_F64, O_STR, O_BIN, O_EXT, O_ARR, O_MAP } otype_t;

/* A scalar's value, or a str/bin/ext's bytes (borrowed), or a container's
 * count (its elements follow and are not read). O_UINT holds every
 * non-negative integer whatever its encoding, O_INT the negative ones. */
typedef struct obj {
    otype_t t;
    union {
        uint64_t u;
        int64_t i;
        double d;
        bool b;
    } v;
    const uint8_t *s;
    uint32_t n;
} obj_t;

static const char *otype_name(otype_t t) {
    static const char *const names[] = {"nil", "bool",  "uint", "int", "float32", "float64",
                                        "str", "bin",   "ext",  "array", "map"};
    return names[t];
}

/* ---- errors (cold: only formatted on failure) ---------------------------- */

__attribute__((cold)) static int range_err(mw_serdes_t *sd, const mw_field_t *f, const obj_t *o) {
    char v[32];
    if (o->t == O_INT)
        snprintf(v, sizeof v, "%lld", (long long)o->v.i);
    else
        snprintf(v, sizeof v, "%llu", (unsigned long long)o->v.u);
    if (f->kind == MW_FK_ENUM)
        return mw__mp_ferr(sd, f, MW_ERANGE, "%s is out of range for enum (0..%u)", v,
                           (unsigned)f->limit - 1u);
    if (f->kind == MW_FK_F64)
        return mw__mp_ferr(sd, f, MW_ERANGE, "%s is beyond 2^53, not exact as f64", v);
    return mw__mp_ferr(sd, f, MW_ERANGE, "%s is out of range for %s", v, mw_fkind_name(f->kind));
}

__attribute__((cold)) static int type_err(mw_serdes_t *sd, const mw_field_t *f, const obj_t *o) {
    static const char *want[] = {"int", "int", "int", "int", "uint", "uint", "uint", "uint",
                                 "float or int", "bool", "str", "bin", "uint"};
    return mw__mp_ferr(sd, f, MW_ETYPE, "expected %s, got %s",
                       f->kind <= MW_FK_ENUM ? want[f->kind] : "?", otype_name(o->t));
}

/* ---- scan: the structure of a whole object, for the error verdict ------- */

enum { K_FIX, K_LEN, K_ARR, K_MAP };
/* Headers 0xc4..0xdf: bytes of length/count after the type byte, bytes of
 * payload beyond that length (ext's type byte) or fixed payload, and kind. */
static const struct { uint8_t hdr, extra, kind; } hdr_tab[28] = {
    {1, 0, K_LEN}, {2, 0, K_LEN}, {4, 0, K_LEN},                /* c4-c6 bin */
    {1, 1, K_LEN}, {2, 1, K_LEN}, {4, 1, K_LEN},                /* c7-c9 ext */
    {0, 4, K_FIX}, {0, 8, K_FIX},                               /* ca-cb float */
    {0, 1, K_FIX}, {0, 2, K_FIX}, {0, 4, K_FIX}, {0, 8, K_FIX}, /* cc-cf uint */
    {0, 1, K_FIX}, {0, 2, K_FIX}, {0, 4, K_FIX}, {0, 8, K_FIX}, /* d0-d3 int */
    {0, 2, K_FIX}, {0, 3, K_FIX}, {0, 5, K_FIX}, {0, 9, K_FIX}, {0, 17, K_FIX}, /* fixext */
    {1, 0, K_LEN}, {2, 0, K_LEN}, {4, 0, K_LEN},                /* d9-db str */
    {2, 0, K_ARR}, {4, 0, K_ARR},                               /* dc-dd array */
    {2, 0, K_MAP}, {4, 0, K_MAP},                               /* de-df map */
};

static inline uint64_t be_read(const uint8_t *p, unsigned n) {
    switch (n) {
    case 1: return p[0];
    case 2: { uint16_t v; memcpy(&v, p, 2); return mw__be16(v); }
    case 4: { uint32_t v; memcpy(&v, p, 4); return mw__be32(v); }
    case 8: { uint64_t v; memcpy(&v, p, 8); return mw__be64(v); }
    default: {
        uint64_t v = 0;
        for (unsigned k = 0; k < n; k++) v = v << 8 | p[k];
        return v;
    }
    }
}

/* Steps over the item at p[*pos] (header and payload); *kids is the number
 * of items its header opens (two per map entry). Needs *pos < len. */
static int scan_item(const uint8_t *p, size_t len, size_t *pos, uint64_t *kids) {
    size_t i = *pos;
    uint8_t b = p[i++];
    uint64_t skip = 0;
    *kids = 0;
    if (b < 0x80 || b >= 0xe0) {
        /* positive or negative fixint */
    } else if (b < 0x90) {
        *kids = 2u * (b & 0x0fu);
    } else if (b < 0xa0) {
        *kids = b & 0x0fu;
    } else if (b < 0xc0) {
        skip = b & 0x1fu;
    } else if (b < 0xc4) {
        if (b == 0xc1) return MW_EPROTO; /* never used */
    } else {
        unsigned hdr = hdr_tab[b - 0xc4].hdr, kind = hdr_tab[b - 0xc4].kind;
        if (hdr > len - i) return MW_ETRUNC;
        uint64_t n = be_read(p + i, hdr);
        i += hdr;
        if (kind == K_ARR) *kids = n;
        else if (kind == K_MAP) *kids = 2 * n;
        else skip = (kind == K_LEN ? n : 0) + hdr_tab[b - 0xc4].extra;
    }
    if (skip > len - i) return MW_ETRUNC;
    *pos = i + skip;
    return 0;
}

/* Walks one complete msgpack object at the start of p[0..len) and checks
 * that every count is backed by elements. Returns 0 and sets *end, or
 * MW_ETRUNC / MW_EPROTO. The innermost count stays in a register. */
static int scan(const uint8_t *p, size_t len, size_t *end) {
    uint64_t outer[MAX_DEPTH]; /* items still due in the enclosing containers */
    uint64_t left = 1;         /* items still due at the current level */
    int depth = 0;
    size_t i = 0;
    for (;;) {
        uint64_t kids;
        if (i >= len) return MW_ETRUNC;
        /* a 33rd level is refused even for an empty container (as msgpack-c does) */
        if (depth == MAX_DEPTH && ((p[i] & 0xe0u) == 0x80u || (p[i] & 0xfcu) == 0xdcu)) return MW_EPROTO;
        int rc = scan_item(p, len, &i, &kids);
        if (rc) return rc;
        left--;
        if (kids > 0) {
            if (kids > len - i) return MW_ETRUNC; /* each item takes a byte at least */
            outer[depth++] = left;
            left = kids;
        }
        while (left == 0) {
            if (depth == 0) {
                *end = i;
                return 0;
            }
            left = outer[--depth];
        }
    }
}

/* ---- the reader ---------------------------------------------------------- */

typedef struct rd {
    const uint8_t *p, *end;
} rd_t;

/* Reads the item at r->p into *o and steps over it (a container: over its
 * header only). Returns 0 or E_FRAME (truncated or byte 0xc1). */
static int rd_obj(rd_t *r, obj_t *o) {
    const uint8_t *p = r->p;
    size_t avail = (size_t)(r->end - p);
    if (avail == 0) return E_FRAME;
    uint8_t b = *p++;
    avail--;
    if (b < 0x80) { o->t = O_UINT; o->v.u = b; r->p = p; return 0; }
    if (b >= 0xe0) { o->t = O_INT; o->v.i = (int8_t)b; r->p = p; return 0; }
    if (b >= 0xa0 && b < 0xc0) {
        o->n = b & 0x1fu;
        if (o->n > avail) return E_FRAME;
        o->t = O_STR;
        o->s = p;
        r->p = p + o->n;
        return 0;
    }
    if (b < 0xa0) {
        o->t = b < 0x90 ? O_MAP : O_ARR;
        o->n = b & 0x0fu;
        r->p = p;
        return 0;
    }
    if (b < 0xc4) {
        if (b == 0xc1) return E_FRAME;
        o->t = b == 0xc0 ? O_NIL : O_BOOL;
        o->v.b = b == 0xc3;
        r->p = p;
        return 0;
    }
    unsigned hdr = hdr_tab[b - 0xc4].hdr, kind = hdr_tab[b - 0xc4].kind;
    unsigned extra = hdr_tab[b - 0xc4].extra;
    if (hdr + extra > avail) return E_FRAME;
    uint64_t n = be_read(p, hdr);
    p += hdr;
    avail -= hdr;
    if (kind == K_ARR || kind == K_MAP) {
        o->t = kind == K_ARR ? O_ARR : O_MAP;
        o->n = (uint32_t)n;
        r->p = p;
        return 0;
    }
    if (kind == K_LEN) {
        if (n + extra > avail) return E_FRAME;
        o->t = b <= 0xc6 ? O_BIN : b <= 0xc9 ? O_EXT : O_STR;
        o->n = (uint32_t)n;
        o->s = p + extra;
        r->p = p + extra + n;
        return 0;
    }
    /* fixed payload: float, int, fixext */
    uint64_t v = be_read(p, extra <= 8 ? extra : 0);
    r->p = p + extra;
    switch (b) {
    case 0xca: {
        float f;
        uint32_t x = (uint32_t)v;
        memcpy(&f, &x, 4);
        o->t = O_F32;
        o->v.d = f;
        return 0;
    }
    case 0xcb: o->t = O_F64; memcpy(&o->v.d, &v, 8); return 0;
    case 0xcc: case 0xcd: case 0xce: case 0xcf: o->t = O_UINT; o->v.u = v; return 0;
    case 0xd0: o->v.i = (int8_t)v; break;
    case 0xd1: o->v.i = (int16_t)v; break;
    case 0xd2: o->v.i = (int32_t)v; break;
    case 0xd3: o->v.i = (int64_t)v; break;
    default: o->t = O_EXT; o->s = p + 1; o->n = extra - 1; return 0; /* fixext */
    }
    o->t = o->v.i < 0 ? O_INT : O_UINT; /* a signed encoding of n >= 0 is a uint */
    return 0;
}

/* Steps over a whole item, containers included (slow path only). */
static int rd_skip(rd_t *r) {
    size_t end;
    if (scan(r->p, (size_t)(r->end - r->p), &end)) return E_FRAME;
    r->p += end;
    return 0;
}

/* ---- decode -------------------------------------------------------------- */

static inline void set_uint(const mw_field_t *f, uint8_t *p, uint64_t v) {
    switch (f->size) {
    case 1: *p = (uint8_t)v; break;
    case 2: { uint16_t x = (uint16_t)v; memcpy(p, &x, 2); break; }
    case 4: { uint32_t x = (uint32_t)v; memcpy(p, &x, 4); break; }
    default: memcpy(p, &v, 8); break;
    }
}

static int get_int(mw_serdes_t *sd, const mw_field_t *f, const obj_t *o, uint8_t *p) {
    if (o->t == O_UINT) {
        if (o->v.u > mw__field_max(f)) return range_err(sd, f, o);
        set_uint(f, p, o->v.u);
        return 0;
    }
    if (o->t == O_INT) {
        if (0 - (uint64_t)o->v.i > mw__field_neg_max(f)) return range_err(sd, f, o);
        set_uint(f, p, (uint64_t)o->v.i);
        return 0;
    }
    return type_err(sd, f, o);
}

static int get_f64(mw_serdes_t *sd, const mw_field_t *f, const obj_t *o, uint8_t *p) {
    const uint64_t exact = (uint64_t)1 << 53; /* integers up to here are exact doubles */
    double d;
    switch (o->t) {
    case O_F32:
    case O_F64: d = o->v.d; break;
    case O_UINT:
        if (o->v.u > exact) return range_err(sd, f, o);
        d = (double)o->v.u;
        break;
    case O_INT:
        if (o->v.i < -(int64_t)exact) return range_err(sd, f, o);
        d = (double)o->v.i;
        break;
    default: return type_err(sd, f, o);
    }
    memcpy(p, &d, sizeof d);
    return 0;
}

/* The struct is zeroed before the fields are read, so CHARS come out
 * NUL-padded. A NUL inside the str could not be told from the padding. */
static int get_chars(mw_serdes_t *sd, const mw_field_t *f, const obj_t *o, uint8_t *p) {
    if (o->t != O_STR) return type_err(sd, f, o);
    uint32_t n = o->n;
    if (n > f->size)
        return mw__mp_ferr(sd, f, MW_ETOOBIG, "str of %u bytes does not fit in chars[%u]",
                           (unsigned)n, (unsigned)f->size);
    if (n && memchr(o->s, 0, n)) return mw__mp_ferr(sd, f, MW_EPROTO, "str contains a NUL byte");
    if (!mw__utf8_valid(o->s, n)) return mw__mp_ferr(sd, f, MW_EUTF8, "invalid UTF-8");
    if (n) memcpy(p, o->s, n);
    return 0;
}

static int get_bytes(mw_serdes_t *sd, const mw_field_t *f, const obj_t *o, uint8_t *p) {
    if (o->t != O_BIN) return type_err(sd, f, o);
    if (o->n != f->size)
        return mw__mp_ferr(sd, f, o->n > f->size ? MW_ETOOBIG : MW_ETYPE,
                           "bin of %u bytes, expected exactly %u", (unsigned)o->n, (unsigned)f->size);
    memcpy(p, o->s, o->n);
    return 0;
}

/* Reads the value at r->p into field f when it is in the form our encoder
 * writes and in range; returns false (nothing consumed) for anything else,
 * which rd_obj() + get_value() then read or reject with the exact error. */
__attribute__((always_inline)) static inline bool val_fast(rd_t *r, const mw_field_t *f,
                                                          uint8_t *msg) {
    const uint8_t *p = r->p;
    size_t avail = (size_t)(r->end - p);
    uint8_t *dst = msg + f->offset;
    if (avail == 0) return false;
    uint8_t b = p[0];
    switch (f->kind) {
    case MW_FK_F64: {
        if (b != 0xcb || avail < 9) return false;
        uint64_t v;
        memcpy(&v, p + 1, 8);
        v = mw__be64(v);
        memcpy(dst, &v, 8);
        r->p = p + 9;
        return true;
    }
    case MW_FK_BOOL:
        if (b != 0xc2 && b != 0xc3) return false;
        *dst = b & 1;
        r->p = p + 1;
        return true;
    case MW_FK_CHARS: {
        size_t n = b & 0x1fu;
        if ((b & 0xe0) != 0xa0 || n >= avail || n > f->size) return false;
        unsigned nul = 0, high = 0;
        for (size_t k = 0; k < n; k++) {
            nul |= p[1 + k] == 0;
            high |= p[1 + k];
        }
        if (nul || ((high & 0x80) && !mw__utf8_valid(p + 1, n))) return false;
        mw__copy_small(dst, p + 1, n);
        r->p = p + 1 + n;
        return true;
    }
    case MW_FK_BYTES:
        if (b != 0xc4 || avail < 2 || p[1] != f->size || avail - 2 < f->size) return false;
        memcpy(dst, p + 2, f->size);
        r->p = p + 2 + f->size;
        return true;
    default: break;
    }
    uint64_t v;
    size_t used = 1;
    if (b < 0x80) {
        v = b;
    } else if (b >= 0xe0) {
        v = (uint64_t)(int64_t)(int8_t)b;
    } else if (b >= 0xcc && b <= 0xd3) {
        unsigned nb = 1u << ((b - 0xcc) & 3);
        if (avail <= nb) return false;
        v = be_read(p + 1, nb);
        if (b >= 0xd0) /* sign-extend */
            v = nb == 8 ? v : (uint64_t)((int64_t)(v << (64 - 8 * nb)) >> (64 - 8 * nb));
        used += nb;
    } else {
        return false;
    }
    bool neg = b >= 0xe0 || (b >= 0xd0 && (int64_t)v < 0);
    if (neg ? 0 - v > mw__field_neg_max(f) : v > mw__field_max(f)) return false;
    set_uint(f, dst, v);
    r->p = p + used;
    return true;
}

static int get_value(mw_serdes_t *sd, const mw_field_t *f, const obj_t *o, void *msg) {
    uint8_t *p = (uint8_t *)msg + f->offset;
    switch (f->kind) {
    case MW_FK_F64: return get_f64(sd, f, o, p);
    case MW_FK_BOOL:
        if (o->t != O_BOOL) return type_err(sd, f, o);
        *p = o->v.b;
        return 0;
    case MW_FK_CHARS: return get_chars(sd, f, o, p);
    case MW_FK_BYTES: return get_bytes(sd, f, o, p);
    default: return get_int(sd, f, o, p);
    }
}

static bool is_str(const obj_t *o, const char *s, size_t n) {
    return o->t == O_STR && o->n == n && memcmp(o->s, s, n) == 0;
}

static const mw_schema_t *by_name(mw_serdes_t *sd, const mw_protocol_t *p, const obj_t *o) {
    const mw_schema_t *c = sd->c_schema;
    if (c && sd->c_proto == p && c->name_len == o->n && mw__eq_small(c->name, o->s, o->n)) return c;
    c = mw_protocol_by_name(p, (const char *)o->s, o->n);
    if (c) {
        sd->c_proto = p;
        sd->c_tag = c->tag;
        sd->c_schema = c;
    }
    return c;
}

/* Schema named by the value of "type": its name (str), or, lenient for peers
 * that prefer tags, a positive integer tag. */
static int type_schema(mw_serdes_t *sd, const obj_t *v, const mw_protocol_t *p,
                       const mw_schema_t **out) {
    if (v->t == O_STR) {
        *out = by_name(sd, p, v);
        if (!*out)
            return mw__err_set(&sd->err, MW_ETAG, "msgpack: unknown type \"%.*s\"",
                              (int)(v->n > 64 ? 64 : v->n), (const char *)v->s);
        return 0;
    }
    if (v->t == O_UINT) {
        *out = v->v.u <= 65535 ? mw__serdes_lookup(sd, p, (unsigned)v->v.u) : NULL;
        if (!*out)
            return mw__err_set(&sd->err, MW_ETAG, "msgpack: unknown tag %llu",
                              (unsigned long long)v->v.u);
        return 0;
    }
    return mw__err_set(&sd->err, MW_ETYPE, "msgpack: \"type\" is a %s, expected str or uint",
                      otype_name(v->t));
}

static int check_cap(mw_serdes_t *sd, const mw_schema_t *s, void *msg, size_t cap) {
    if (cap < s->size)
        return mw__err_set(&sd->err, MW_ETOOBIG, "msgpack: %s (%u bytes) does not fit in %zu bytes",
                          s->name, (unsigned)s->size, cap);
    memset(msg, 0, s->size);
    return 0;
}

/* Index of the field named by key k, trying `next` first (keys usually come
 * in declaration order), or -1. */
static int find_field(const mw_schema_t *s, const obj_t *k, unsigned next) {
    if (next < s->nfields && s->fields[next].name_len == k->n &&
        memcmp(s->fields[next].name, k->s, k->n) == 0)
        return (int)next;
    for (unsigned i = 0; i < s->nfields; i++)
        if (s->fields[i].name_len == k->n && memcmp(s->fields[i].name, k->s, k->n) == 0)
            return (int)i;
    return -1;
}

/* The key at r->p if it is the fixstr name of field `next` (the usual case:
 * keys in declaration order): consumes it and returns next; else -1. */
__attribute__((always_inline)) static inline int key_fast(rd_t *r, const mw_schema_t *s,
                                                         unsigned next) {
    if (next >= s->nfields) return -1;
    const mw_field_t *f = &s->fields[next];
    size_t n = f->name_len;
    if (n >= 32 || (size_t)(r->end - r->p) <= n || r->p[0] != (0xa0 | n) ||
        !mw__eq_small(r->p + 1, f->name, n))
        return -1;
    r->p += 1 + n;
    return (int)next;
}

__attribute__((cold)) static int key_err(mw_serdes_t *sd, const obj_t *k, const char *why) {
    return mw__err_set(&sd->err, MW_EFIELD, "msgpack: %s field \"%.*s\"", why,
                      (int)(k->n > 64 ? 64 : k->n), (const char *)k->s);
}

/* Finds the first entry whose key is the str "type" (slow path: it is not
 * the first) and reads its value into *v. *t: its index, or n if none. */
static int find_type(rd_t r, uint32_t n, uint32_t *t, obj_t *v) {
    for (*t = 0; *t < n; (*t)++) {
        obj_t k;
        rd_t at = r;
        if (rd_obj(&r, &k)) return E_FRAME;
        if (is_str(&k, "type", 4)) return rd_obj(&r, v);
        r = at;
        if (rd_skip(&r) || rd_skip(&r)) return E_FRAME;
    }
    return 0;
}

/* A value not in our own encoding (or an error): read it generically. */
__attribute__((noinline)) static int val_slow(mw_serdes_t *sd, rd_t *r, const mw_field_t *f,
                                              void *msg) {
    obj_t v;
    int rc = rd_obj(r, &v);
    return rc ? rc : get_value(sd, f, &v, msg);
}

/* Entry i's key when key_fast() did not match: the field's index, INT_MIN
 * for the "type" entry (index t, skipped with its value), or an error. */
__attribute__((noinline)) static int key_slow(mw_serdes_t *sd, rd_t *r, const mw_schema_t *s,
                                              uint32_t i, uint32_t t, unsigned next) {
    obj_t k;
    int rc = rd_obj(r, &k);
    if (rc) return rc;
    if (i == t) return rd_skip(r) ? E_FRAME : INT_MIN;
    if (k.t != O_STR)
        return mw__err_set(&sd->err, MW_EPROTO, "msgpack: map key %u is a %s, not a str",
                          (unsigned)i, otype_name(k.t));
    int fi = find_field(s, &k, next);
    if (fi < 0) return key_err(sd, &k, is_str(&k, "type", 4) ? "duplicate" : "unknown");
    return fi;
}

/* Reads the n entries of a map at r (c->p just after the map header). */
static int dec_map(mw_serdes_t *sd, rd_t *r, uint32_t n, const mw_protocol_t *p,
                   const mw_schema_t **so, void *msg, size_t cap) {
    obj_t k, v;
    uint32_t t = 0; /* index of the "type" entry: usually first, may be anywhere */
    rd_t body = *r;
    int rc = n ? rd_obj(r, &k) : 0;
    if (rc) return rc;
    if (n && is_str(&k, "type", 4)) rc = rd_obj(r, &v);
    else rc = find_type(body, n, &t, &v);
    if (rc) return rc;
    if (t == n) return mw__err_set(&sd->err, MW_EMISSING, "msgpack: no \"type\" key");
    const mw_schema_t *s;
    if ((rc = type_schema(sd, &v, p, &s)) || (rc = check_cap(sd, s, msg, cap))) return rc;
    if (t != 0) *r = body;
    uint64_t *seen = ((mp_state_t *)sd->state)->seen;
    memset(seen, 0, (s->nfields + 63u) / 64u * sizeof *seen);
    unsigned next = 0, got = 0;
    rd_t fr = *r; /* never escapes: stays in registers; slow steps get copies */
    for (uint32_t i = t == 0; i < n; i++) {
        int fi = i == t ? -1 : key_fast(&fr, s, next);
        if (fi < 0) {
            rd_t tr = fr;
            rc = key_slow(sd, &tr, s, i, t, next);
            fr = tr;
            if (rc == INT_MIN) continue; /* the "type" entry, skipped */
            if (rc < 0) return rc;
            fi = rc;
        }
        if (seen[fi / 64] >> (fi % 64) & 1) {
            k.s = (const uint8_t *)s->fields[fi].name, k.n = s->fields[fi].name_len;
            return key_err(sd, &k, "duplicate");
        }
        seen[fi / 64] |= (uint64_t)1 << (fi % 64);
        got++;
        next = (unsigned)fi + 1;
        if (val_fast(&fr, &s->fields[fi], msg)) continue;
        rd_t tr = fr;
        rc = val_slow(sd, &tr, &s->fields[fi], msg);
        fr = tr;
        if (rc) return rc;
    }
    *r = fr;
    if (got == s->nfields) {
        *so = s;
        return 0;
    }
    unsigned m = 0;
    while (seen[m / 64] >> (m % 64) & 1) m++;
    return mw__err_set(&sd->err, MW_EMISSING, "msgpack: field \"%s\" is missing",
                      s->fields[m].name);
}

static int dec_array(mw_serdes_t *sd, rd_t *r, uint32_t n, const mw_protocol_t *p,
                     const mw_schema_t **so, void *msg, size_t cap) {
    if (n == 0) return mw__err_set(&sd->err, MW_EMISSING, "msgpack: empty array, no tag");
    obj_t t;
    int rc = rd_obj(r, &t);
    if (rc) return rc;
    if (t.t != O_UINT)
        return mw__err_set(&sd->err, MW_ETYPE, "msgpack: the tag is a %s, expected uint",
                          otype_name(t.t));
    const mw_schema_t *s;
    if ((rc = type_schema(sd, &t, p, &s))) return rc;
    if (n < 1u + s->nfields)
        return mw__err_set(&sd->err, MW_EMISSING, "msgpack: field \"%s\" is missing (%s array of %u)",
                          s->fields[n - 1].name, s->name, (unsigned)n);
    if (n > 1u + s->nfields)
        return mw__err_set(&sd->err, MW_EFIELD, "msgpack: %s array of %u, expected %u", s->name,
                          (unsigned)n, 1u + s->nfields);
    if ((rc = check_cap(sd, s, msg, cap))) return rc;
    rd_t fr = *r;
    for (unsigned i = 0; i < s->nfields; i++) {
        if (val_fast(&fr, &s->fields[i], msg)) continue;
        rd_t tr = fr;
        rc = val_slow(sd, &tr, &s->fields[i], msg);
        fr = tr;
        if (rc) return rc;
    }
    *r = fr;
    *so = s;
    return 0;
}

/* The fast pass failed with rc (text set, unless E_FRAME): framing errors
 * anywhere in the object take precedence, as they did when the whole object
 * was parsed before any field was read. */
__attribute__((cold)) static int verdict(mw_serdes_t *sd, const uint8_t *in, size_t len, int rc) {
    size_t end = 0;
    int frc = scan(in, len, &end);
    if (frc == MW_ETRUNC)
        return mw__err_set(&sd->err, frc, "msgpack: %zu bytes end inside the message", len);
    if (frc)
        return mw__err_set(&sd->err, frc, "msgpack: malformed (byte 0xc1, or nested over %d levels)",
                          MAX_DEPTH);
    if (end < len || rc == E_FRAME) /* E_FRAME with a sound object cannot happen; be safe */
        return mw__err_set(&sd->err, MW_ETRAILING, "msgpack: %zu bytes after the message",
                          len - end);
    return rc;
}

static ssize_t mp_decode(mw_serdes_t *sd, const uint8_t *in, size_t len, const mw_protocol_t *p,
                         const mw_schema_t **schema_out, void *msg_out, size_t msg_cap) {
    if (!sd->state) return mw__err_set(&sd->err, MW_EINVAL, "msgpack: serdes not initialised");
    rd_t r = {in, in + len};
    obj_t top;
    int rc = rd_obj(&r, &top);
    if (rc == 0) {
        if (top.t == O_MAP)
            rc = dec_map(sd, &r, top.n, p, schema_out, msg_out, msg_cap);
        else if (top.t == O_ARR)
            rc = dec_array(sd, &r, top.n, p, schema_out, msg_out, msg_cap);
        else
            rc = mw__err_set(&sd->err, MW_EPROTO, "msgpack: the message is a %s, not a map or array",
                            otype_name(top.t));
    }
    if (rc == 0 && r.p != r.end) rc = MW_ETRAILING;
    return rc ? verdict(sd, in, len, rc) : (ssize_t)len;
}

const mw_serdes_ops_t mw__serdes_msgpack_ops = {"msgpack", MW_FRAME_U32BE, false, mp_init, mp_fini,
                                               mw__mp_encode, mp_decode};
