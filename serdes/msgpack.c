/* msgpack.c - the "msgpack" serdes on msgpack-c (README "Wire formats").
 *
 * Map form (default): {"type": name, field: value, ...} in declaration order.
 * Array form (MW_SERDES_MSGPACK_ARRAY): [tag, value, ...]. The decoder takes
 * either form whatever the flag says; the flag picks what encode writes.
 *
 * Encode packs straight into the caller's buffer through a write callback.
 * Decode runs msgpack_unpack (zero-copy: str and bin point into the input)
 * on a zone created once in init and cleared after every message, so steady
 * state reuses the zone's first chunk and allocates nothing.
 *
 * msgpack-c reserves n * sizeof(object) in the zone as soon as it reads an
 * array or map header, before any element is there ("FIXME security guard"
 * in unpack_template.h): five bytes (dd ff ff ff ff) would make it ask malloc
 * for 96 GiB. scan() therefore walks the input first, without building
 * anything, and lets msgpack_unpack run only on a complete object whose every
 * count is backed by real elements; the zone then holds at most a few dozen
 * bytes per input byte. scan() also gives the precise truncated / malformed /
 * trailing verdicts. */
#include "mw_serdes.h"

#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Zone chunk: a map entry costs 48 bytes of zone, so messages of up to about
 * 170 fields decode without touching malloc. */
enum { ZONE_CHUNK = 8192, MAX_DEPTH = 32, MAX_FIELDS = 65536 };

typedef struct mp_state {
    msgpack_zone *zone;
    uint64_t seen[MAX_FIELDS / 64]; /* map form: fields already read */
} mp_state_t;

static int mp_init(mw_serdes_t *sd) {
    mp_state_t *st = malloc(sizeof *st);
    if (!st) return mw_err_set(&sd->err, MW_ENOMEM, "msgpack: out of memory");
    st->zone = msgpack_zone_new(ZONE_CHUNK);
    if (!st->zone) {
        free(st);
        return mw_err_set(&sd->err, MW_ENOMEM, "msgpack: out of memory for the zone");
    }
    sd->state = st;
    return 0;
}

static void mp_fini(mw_serdes_t *sd) {
    mp_state_t *st = sd->state;
    if (!st) return;
    msgpack_zone_free(st->zone);
    free(st);
    sd->state = NULL;
}

/* ---- errors (cold: only formatted on failure) ---------------------------- */

static const char *obj_type_name(const msgpack_object *o) {
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: return "nil";
    case MSGPACK_OBJECT_BOOLEAN: return "bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return "uint";
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "int";
    case MSGPACK_OBJECT_FLOAT32: return "float32";
    case MSGPACK_OBJECT_FLOAT64: return "float64";
    case MSGPACK_OBJECT_STR: return "str";
    case MSGPACK_OBJECT_ARRAY: return "array";
    case MSGPACK_OBJECT_MAP: return "map";
    case MSGPACK_OBJECT_BIN: return "bin";
    case MSGPACK_OBJECT_EXT: return "ext";
    default: return "unknown";
    }
}

__attribute__((cold, format(printf, 4, 5)))
static int ferr(mw_serdes_t *sd, const mw_field_t *f, int code, const char *fmt, ...) {
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return mw_err_set(&sd->err, code, "msgpack: field \"%s\": %s", f->name, what);
}

__attribute__((cold)) static int range_err(mw_serdes_t *sd, const mw_field_t *f,
                                           const msgpack_object *o) {
    char v[32];
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        snprintf(v, sizeof v, "%lld", (long long)o->via.i64);
    else
        snprintf(v, sizeof v, "%llu", (unsigned long long)o->via.u64);
    if (f->kind == MW_FK_ENUM)
        return ferr(sd, f, MW_ERANGE, "%s is out of range for enum (0..%u)", v,
                    (unsigned)f->limit - 1u);
    if (f->kind == MW_FK_F64)
        return ferr(sd, f, MW_ERANGE, "%s is beyond 2^53, not exact as f64", v);
    return ferr(sd, f, MW_ERANGE, "%s is out of range for %s", v, mw_fkind_name(f->kind));
}

__attribute__((cold)) static int type_err(mw_serdes_t *sd, const mw_field_t *f,
                                          const msgpack_object *o) {
    static const char *want[] = {"int", "int", "int", "int", "uint", "uint", "uint", "uint",
                                 "float or int", "bool", "str", "bin", "uint"};
    return ferr(sd, f, MW_ETYPE, "expected %s, got %s", f->kind <= MW_FK_ENUM ? want[f->kind] : "?",
                obj_type_name(o));
}

/* ---- encode -------------------------------------------------------------- */

typedef struct wbuf {
    uint8_t *p;
    size_t n, cap;
    bool full; /* sticky: once a write did not fit, none does */
} wbuf_t;

static int wb_write(void *data, const char *buf, size_t len) {
    wbuf_t *w = data;
    if (w->full || len > w->cap - w->n) {
        w->full = true;
        return -1;
    }
    uint8_t *d = w->p + w->n;
    w->n += len;
    /* msgpack-c hands over headers of 1, 2, 3, 5 or 9 bytes; constant sizes
     * compile to plain moves instead of a call to memcpy. */
    switch (len) {
    case 1: d[0] = (uint8_t)buf[0]; break;
    case 2: memcpy(d, buf, 2); break;
    case 3: memcpy(d, buf, 3); break;
    case 5: memcpy(d, buf, 5); break;
    case 9: memcpy(d, buf, 9); break;
    default: memcpy(d, buf, len); break;
    }
    return 0;
}

static inline void pack_str(msgpack_packer *pk, const char *s, size_t n) {
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

/* Packs one field's value. Overflow of the buffer is left to the sticky
 * flag; only a value the wire cannot carry returns an error here. */
static int put_value(mw_serdes_t *sd, msgpack_packer *pk, const mw_field_t *f, const uint8_t *m) {
    const uint8_t *p = m + f->offset;
    switch (f->kind) {
    case MW_FK_I8:
    case MW_FK_I16:
    case MW_FK_I32:
    case MW_FK_I64: msgpack_pack_int64(pk, mw_field_get_i64(f, m)); return 0;
    case MW_FK_U8:
    case MW_FK_U16:
    case MW_FK_U32:
    case MW_FK_U64: msgpack_pack_uint64(pk, mw_field_get_u64(f, m)); return 0;
    case MW_FK_F64: {
        double d;
        memcpy(&d, p, sizeof d);
        msgpack_pack_double(pk, d);
        return 0;
    }
    case MW_FK_BOOL:
        if (*p > 1) return ferr(sd, f, MW_ERANGE, "byte %u is not a bool (0 or 1)", *p);
        if (*p) msgpack_pack_true(pk);
        else msgpack_pack_false(pk);
        return 0;
    case MW_FK_ENUM:
        if (*p >= f->limit)
            return ferr(sd, f, MW_ERANGE, "%u is out of range for enum (0..%u)", *p,
                        (unsigned)f->limit - 1u);
        msgpack_pack_uint64(pk, *p);
        return 0;
    case MW_FK_CHARS: {
        size_t len = mw_chars_len(f, m);
        if (!mw_utf8_valid(p, len)) return ferr(sd, f, MW_EUTF8, "invalid UTF-8");
        pack_str(pk, (const char *)p, len);
        return 0;
    }
    case MW_FK_BYTES:
        msgpack_pack_bin(pk, f->size);
        msgpack_pack_bin_body(pk, p, f->size);
        return 0;
    default: return ferr(sd, f, MW_EINVAL, "unknown field kind %u in the schema", f->kind);
    }
}

static ssize_t mp_encode(mw_serdes_t *sd, const mw_schema_t *s, const void *msg,
                         uint8_t *out, size_t cap) {
    wbuf_t w = {out, 0, cap, false};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &w, wb_write);
    bool map = !(sd->flags & MW_SERDES_MSGPACK_ARRAY);
    if (map) {
        msgpack_pack_map(&pk, 1u + s->nfields);
        pack_str(&pk, "type", 4);
        pack_str(&pk, s->name, s->name_len);
    } else {
        msgpack_pack_array(&pk, 1u + s->nfields);
        msgpack_pack_uint64(&pk, s->tag);
    }
    for (unsigned i = 0; i < s->nfields; i++) {
        const mw_field_t *f = &s->fields[i];
        if (map) pack_str(&pk, f->name, f->name_len);
        int rc = put_value(sd, &pk, f, msg);
        if (rc) return rc;
    }
    if (w.full)
        return mw_err_set(&sd->err, MW_ETOOBIG, "msgpack: %s does not fit in %zu bytes", s->name,
                          cap);
    return (ssize_t)w.n;
}

/* ---- scan: structure check before msgpack_unpack ------------------------- */

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
        uint64_t n = 0;
        for (unsigned k = 0; k < hdr; k++) n = n << 8 | p[i + k];
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
        /* msgpack-c refuses a 33rd level even for an empty container */
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

/* ---- decode -------------------------------------------------------------- */

static int get_int(mw_serdes_t *sd, const mw_field_t *f, const msgpack_object *o, void *msg) {
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > mw_fkind_max(f)) return range_err(sd, f, o);
        mw_field_set_u64(f, msg, o->via.u64);
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        if (!mw_fkind_is_signed(f->kind) || o->via.i64 < mw_fkind_min(f->kind))
            return range_err(sd, f, o);
        mw_field_set_i64(f, msg, o->via.i64);
        return 0;
    }
    return type_err(sd, f, o);
}

static int get_f64(mw_serdes_t *sd, const mw_field_t *f, const msgpack_object *o, uint8_t *p) {
    const uint64_t exact = (uint64_t)1 << 53; /* integers up to here are exact doubles */
    double d;
    switch (o->type) {
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: d = o->via.f64; break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > exact) return range_err(sd, f, o);
        d = (double)o->via.u64;
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        if (o->via.i64 < -(int64_t)exact) return range_err(sd, f, o);
        d = (double)o->via.i64;
        break;
    default: return type_err(sd, f, o);
    }
    memcpy(p, &d, sizeof d);
    return 0;
}

/* The struct is zeroed before the fields are read, so CHARS come out
 * NUL-padded. A NUL inside the str could not be told from the padding. */
static int get_chars(mw_serdes_t *sd, const mw_field_t *f, const msgpack_object *o, uint8_t *p) {
    if (o->type != MSGPACK_OBJECT_STR) return type_err(sd, f, o);
    const uint8_t *s = (const uint8_t *)o->via.str.ptr;
    uint32_t n = o->via.str.size;
    if (n > f->size)
        return ferr(sd, f, MW_ETOOBIG, "str of %u bytes does not fit in chars[%u]", (unsigned)n,
                    (unsigned)f->size);
    if (n && memchr(s, 0, n)) return ferr(sd, f, MW_EPROTO, "str contains a NUL byte");
    if (!mw_utf8_valid(s, n)) return ferr(sd, f, MW_EUTF8, "invalid UTF-8");
    if (n) memcpy(p, s, n);
    return 0;
}

static int get_bytes(mw_serdes_t *sd, const mw_field_t *f, const msgpack_object *o, uint8_t *p) {
    if (o->type != MSGPACK_OBJECT_BIN) return type_err(sd, f, o);
    uint32_t n = o->via.bin.size;
    if (n != f->size)
        return ferr(sd, f, n > f->size ? MW_ETOOBIG : MW_ETYPE,
                    "bin of %u bytes, expected exactly %u", (unsigned)n, (unsigned)f->size);
    memcpy(p, o->via.bin.ptr, n);
    return 0;
}

static int get_value(mw_serdes_t *sd, const mw_field_t *f, const msgpack_object *o, void *msg) {
    uint8_t *p = (uint8_t *)msg + f->offset;
    switch (f->kind) {
    case MW_FK_F64: return get_f64(sd, f, o, p);
    case MW_FK_BOOL:
        if (o->type != MSGPACK_OBJECT_BOOLEAN) return type_err(sd, f, o);
        *p = o->via.boolean ? 1 : 0;
        return 0;
    case MW_FK_CHARS: return get_chars(sd, f, o, p);
    case MW_FK_BYTES: return get_bytes(sd, f, o, p);
    default: return get_int(sd, f, o, msg);
    }
}

static bool is_str(const msgpack_object *o, const char *s, size_t n) {
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n && memcmp(o->via.str.ptr, s, n) == 0;
}

/* Schema named by the value of "type": its name (str), or, lenient for peers
 * that prefer tags, a positive integer tag. */
static int type_schema(mw_serdes_t *sd, const msgpack_object *v, const mw_protocol_t *p,
                       const mw_schema_t **out) {
    if (v->type == MSGPACK_OBJECT_STR) {
        *out = mw_protocol_by_name(p, v->via.str.ptr, v->via.str.size);
        if (!*out)
            return mw_err_set(&sd->err, MW_ETAG, "msgpack: unknown type \"%.*s\"",
                              (int)(v->via.str.size > 64 ? 64 : v->via.str.size), v->via.str.ptr);
        return 0;
    }
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        *out = v->via.u64 <= 65535 ? mw_protocol_by_tag(p, (unsigned)v->via.u64) : NULL;
        if (!*out)
            return mw_err_set(&sd->err, MW_ETAG, "msgpack: unknown tag %llu",
                              (unsigned long long)v->via.u64);
        return 0;
    }
    return mw_err_set(&sd->err, MW_ETYPE, "msgpack: \"type\" is a %s, expected str or uint",
                      obj_type_name(v));
}

static int check_cap(mw_serdes_t *sd, const mw_schema_t *s, void *msg, size_t cap) {
    if (cap < s->size)
        return mw_err_set(&sd->err, MW_ETOOBIG, "msgpack: %s (%u bytes) does not fit in %zu bytes",
                          s->name, (unsigned)s->size, cap);
    memset(msg, 0, s->size);
    return 0;
}

/* Index of the field named k, trying `next` first (keys usually come in
 * declaration order), or -1. */
static int find_field(const mw_schema_t *s, const msgpack_object *k, unsigned next) {
    const char *n = k->via.str.ptr;
    uint32_t len = k->via.str.size;
    if (next < s->nfields && s->fields[next].name_len == len &&
        memcmp(s->fields[next].name, n, len) == 0)
        return (int)next;
    for (unsigned i = 0; i < s->nfields; i++)
        if (s->fields[i].name_len == len && memcmp(s->fields[i].name, n, len) == 0) return (int)i;
    return -1;
}

__attribute__((cold)) static int key_err(mw_serdes_t *sd, const msgpack_object *k, const char *why) {
    return mw_err_set(&sd->err, MW_EFIELD, "msgpack: %s field \"%.*s\"", why,
                      (int)(k->via.str.size > 64 ? 64 : k->via.str.size), k->via.str.ptr);
}

/* Reads the fields of a map whose "type" entry is at index t. */
static int map_fields(mw_serdes_t *sd, const msgpack_object_map *mp, uint32_t t,
                      const mw_schema_t *s, void *msg) {
    uint64_t *seen = ((mp_state_t *)sd->state)->seen;
    memset(seen, 0, (s->nfields + 63u) / 64u * sizeof *seen);
    unsigned next = 0, got = 0;
    for (uint32_t i = 0; i < mp->size; i++) {
        const msgpack_object *k = &mp->ptr[i].key;
        if (i == t) continue;
        if (k->type != MSGPACK_OBJECT_STR)
            return mw_err_set(&sd->err, MW_EPROTO, "msgpack: map key %u is a %s, not a str",
                              (unsigned)i, obj_type_name(k));
        int fi = find_field(s, k, next);
        if (fi < 0) return key_err(sd, k, is_str(k, "type", 4) ? "duplicate" : "unknown");
        if (seen[fi / 64] >> (fi % 64) & 1) return key_err(sd, k, "duplicate");
        seen[fi / 64] |= (uint64_t)1 << (fi % 64);
        got++;
        next = (unsigned)fi + 1;
        int rc = get_value(sd, &s->fields[fi], &mp->ptr[i].val, msg);
        if (rc) return rc;
    }
    if (got == s->nfields) return 0;
    unsigned m = 0;
    while (seen[m / 64] >> (m % 64) & 1) m++;
    return mw_err_set(&sd->err, MW_EMISSING, "msgpack: field \"%s\" is missing",
                      s->fields[m].name);
}

static int dec_map(mw_serdes_t *sd, const msgpack_object_map *mp, const mw_protocol_t *p,
                   const mw_schema_t **so, void *msg, size_t cap) {
    uint32_t t = 0; /* "type" is usually first; it may be anywhere */
    while (t < mp->size && !is_str(&mp->ptr[t].key, "type", 4)) t++;
    if (t == mp->size) return mw_err_set(&sd->err, MW_EMISSING, "msgpack: no \"type\" key");
    const mw_schema_t *s;
    int rc = type_schema(sd, &mp->ptr[t].val, p, &s);
    if (rc == 0) rc = check_cap(sd, s, msg, cap);
    if (rc == 0) rc = map_fields(sd, mp, t, s, msg);
    if (rc == 0) *so = s;
    return rc;
}

static int dec_array(mw_serdes_t *sd, const msgpack_object_array *a, const mw_protocol_t *p,
                     const mw_schema_t **so, void *msg, size_t cap) {
    if (a->size == 0) return mw_err_set(&sd->err, MW_EMISSING, "msgpack: empty array, no tag");
    const msgpack_object *t = &a->ptr[0];
    if (t->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return mw_err_set(&sd->err, MW_ETYPE, "msgpack: the tag is a %s, expected uint",
                          obj_type_name(t));
    const mw_schema_t *s;
    int rc = type_schema(sd, t, p, &s);
    if (rc) return rc;
    if (a->size < 1u + s->nfields)
        return mw_err_set(&sd->err, MW_EMISSING, "msgpack: field \"%s\" is missing (%s array of %u)",
                          s->fields[a->size - 1].name, s->name, (unsigned)a->size);
    if (a->size > 1u + s->nfields)
        return mw_err_set(&sd->err, MW_EFIELD, "msgpack: %s array of %u, expected %u", s->name,
                          (unsigned)a->size, 1u + s->nfields);
    rc = check_cap(sd, s, msg, cap);
    for (unsigned i = 0; rc == 0 && i < s->nfields; i++)
        rc = get_value(sd, &s->fields[i], &a->ptr[1 + i], msg);
    if (rc == 0) *so = s;
    return rc;
}

__attribute__((cold)) static int scan_err(mw_serdes_t *sd, int code, size_t len) {
    if (code == MW_ETRUNC)
        return mw_err_set(&sd->err, code, "msgpack: %zu bytes end inside the message", len);
    return mw_err_set(&sd->err, code, "msgpack: malformed (byte 0xc1, or nested over %d levels)",
                      MAX_DEPTH);
}

__attribute__((cold)) static int unpack_err(mw_serdes_t *sd, msgpack_unpack_return ur) {
    switch (ur) {
    case MSGPACK_UNPACK_CONTINUE:
        return mw_err_set(&sd->err, MW_ETRUNC, "msgpack: the input ends inside the message");
    case MSGPACK_UNPACK_EXTRA_BYTES:
        return mw_err_set(&sd->err, MW_ETRAILING, "msgpack: bytes after the message");
    case MSGPACK_UNPACK_NOMEM_ERROR:
        return mw_err_set(&sd->err, MW_ENOMEM, "msgpack: out of memory in msgpack_unpack");
    default: return mw_err_set(&sd->err, MW_EPROTO, "msgpack: malformed input");
    }
}

static ssize_t mp_decode(mw_serdes_t *sd, const uint8_t *in, size_t len, const mw_protocol_t *p,
                         const mw_schema_t **schema_out, void *msg_out, size_t msg_cap) {
    mp_state_t *st = sd->state;
    if (!st) return mw_err_set(&sd->err, MW_EINVAL, "msgpack: serdes not initialised");
    size_t end;
    int rc = scan(in, len, &end);
    if (rc) return scan_err(sd, rc, len);
    if (end < len)
        return mw_err_set(&sd->err, MW_ETRAILING, "msgpack: %zu bytes after the message",
                          len - end);
    msgpack_object top;
    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack((const char *)in, len, &off, st->zone, &top);
    if (ur != MSGPACK_UNPACK_SUCCESS) /* scan() has ruled these out; kept as a backstop */
        rc = unpack_err(sd, ur);
    else if (top.type == MSGPACK_OBJECT_MAP)
        rc = dec_map(sd, &top.via.map, p, schema_out, msg_out, msg_cap);
    else if (top.type == MSGPACK_OBJECT_ARRAY)
        rc = dec_array(sd, &top.via.array, p, schema_out, msg_out, msg_cap);
    else
        rc = mw_err_set(&sd->err, MW_EPROTO, "msgpack: the message is a %s, not a map or array",
                        obj_type_name(&top));
    msgpack_zone_clear(st->zone);
    return rc ? rc : (ssize_t)len;
}

const mw_serdes_ops_t mw_serdes_msgpack_ops = {"msgpack", MW_FRAME_U32BE, false, mp_init, mp_fini,
                                               mp_encode, mp_decode};
