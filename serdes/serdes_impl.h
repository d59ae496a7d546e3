/* serdes_impl.h - the serdes layer's internals: the ops tables, the schema
 * cache, and small helpers shared by the serializers' hot paths. */
#ifndef MW_SERDES_IMPL_H
#define MW_SERDES_IMPL_H

#include "mw_serdes.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The schema for a tag, through the one-entry cache. NULL if unknown. */
static inline const mw_schema_t *mw__serdes_lookup(mw_serdes_t *sd, const mw_protocol_t *p, unsigned tag) {
    if (sd->c_tag == tag && sd->c_proto == p && sd->c_schema) return sd->c_schema;
    const mw_schema_t *s = mw_protocol_by_tag(p, tag);
    if (s) {
        sd->c_proto = p;
        sd->c_tag = tag;
        sd->c_schema = s;
    }
    return s;
}

extern const mw_serdes_ops_t mw__serdes_text_ops;
extern const mw_serdes_ops_t mw__serdes_fixed_ops;
extern const mw_serdes_ops_t mw__serdes_msgpack_ops;

int mw__serdes_init_ops(mw_serdes_t *sd, const mw_serdes_ops_t *ops, unsigned flags);
/* Upper bound of an encoded payload for schema s in this serdes, for sizing
 * send buffers (text: worst case with every byte escaped). */
size_t mw__serdes_max_len(const mw_serdes_t *sd, const mw_schema_t *s);

/* ---- helpers shared by the serdes implementations and the clt/svc layers --- */

/* Reads/writes a field of any integer kind as int64/uint64 (BOOL and ENUM
 * are unsigned). */
int64_t mw__field_get_i64(const mw_field_t *f, const void *msg);
uint64_t mw__field_get_u64(const mw_field_t *f, const void *msg);
void mw__field_set_i64(const mw_field_t *f, void *msg, int64_t v);
void mw__field_set_u64(const mw_field_t *f, void *msg, uint64_t v);
/* True if kind is signed integer / unsigned integer (incl. BOOL, ENUM). */
bool mw__fkind_is_signed(int kind);
bool mw__fkind_is_unsigned(int kind);
/* Range of an integer kind. */
int64_t mw__fkind_min(int kind);
uint64_t mw__fkind_max(const mw_field_t *f);

/* Validates UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF).
 * Returns true if p[0..n) is valid. */
bool mw__utf8_valid(const uint8_t *p, size_t n);

/* Length of a CHARS field's text: bytes before the first NUL, at most size. */
static inline size_t mw__chars_len(const mw_field_t *f, const void *msg) {
    const char *p = (const char *)msg + f->offset;
    const void *z = memchr(p, 0, f->size);
    return z ? (size_t)((const char *)z - p) : f->size;
}

/* Host order <-> big-endian (msgpack's byte order): a swap on little-endian
 * hosts, nothing on big-endian ones. MW__LE: 1 on little-endian hosts, where
 * the word-at-a-time scans may take the first flagged byte as exact. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define MW__LE 1
#define mw__be16(x) __builtin_bswap16(x)
#define mw__be32(x) __builtin_bswap32(x)
#define mw__be64(x) __builtin_bswap64(x)
#elif defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define MW__LE 0
#define mw__be16(x) ((uint16_t)(x))
#define mw__be32(x) ((uint32_t)(x))
#define mw__be64(x) ((uint64_t)(x))
#else
#error "serdes_impl.h: unknown byte order (__BYTE_ORDER__ is not defined)"
#endif

/* Copies n bytes with at most two loads and two stores for n <= 16 (the
 * field and type names of a schema), reading and writing nothing outside
 * [src, src+n) and [dst, dst+n). A call to memcpy costs more than the copy
 * at these sizes. */
static inline void mw__copy_small(uint8_t *dst, const void *src, size_t n) {
    const uint8_t *s = src;
    if (n >= 8 && n <= 16) {
        uint64_t a, b;
        memcpy(&a, s, 8);
        memcpy(&b, s + n - 8, 8);
        memcpy(dst, &a, 8);
        memcpy(dst + n - 8, &b, 8);
    } else if (n >= 4 && n < 8) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, s + n - 4, 4);
        memcpy(dst, &a, 4);
        memcpy(dst + n - 4, &b, 4);
    } else if (n < 4) {
        if (n > 0) dst[0] = s[0];
        if (n > 1) dst[1] = s[1];
        if (n > 2) dst[2] = s[2];
    } else {
        memcpy(dst, s, n);
    }
}

/* mw__copy_small for n <= 16 only (no memcpy fallback for the compiler to
 * worry about). */
static inline __attribute__((always_inline)) void mw__copy_upto16(uint8_t *dst, const void *src, size_t n) {
    const uint8_t *s = src;
    if (n >= 8) {
        uint64_t a, b;
        memcpy(&a, s, 8);
        memcpy(&b, s + n - 8, 8);
        memcpy(dst, &a, 8);
        memcpy(dst + n - 8, &b, 8);
    } else if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, s + n - 4, 4);
        memcpy(dst, &a, 4);
        memcpy(dst + n - 4, &b, 4);
    } else if (n) { /* 1 to 3 bytes: three stores, no branch on n */
        uint8_t a = s[0], b = s[n / 2], c = s[n - 1];
        dst[0] = a;
        dst[n / 2] = b;
        dst[n - 1] = c;
    }
}

/* memcmp(a, b, n) == 0, the same way. */
static inline bool mw__eq_small(const void *a, const void *b, size_t n) {
    const uint8_t *x = a, *y = b;
    if (n >= 8 && n <= 16) {
        uint64_t a1, a2, b1, b2;
        memcpy(&a1, x, 8);
        memcpy(&b1, y, 8);
        memcpy(&a2, x + n - 8, 8);
        memcpy(&b2, y + n - 8, 8);
        return ((a1 ^ b1) | (a2 ^ b2)) == 0;
    }
    if (n >= 4 && n < 8) {
        uint32_t a1, a2, b1, b2;
        memcpy(&a1, x, 4);
        memcpy(&b1, y, 4);
        memcpy(&a2, x + n - 4, 4);
        memcpy(&b2, y + n - 4, 4);
        return ((a1 ^ b1) | (a2 ^ b2)) == 0;
    }
    if (n < 4) {
        for (size_t i = 0; i < n; i++)
            if (x[i] != y[i]) return false;
        return true;
    }
    return memcmp(x, y, n) == 0;
}

/* Largest value of an integer, BOOL or ENUM field (mw__fkind_max, inline). */
static inline uint64_t mw__field_max(const mw_field_t *f) {
    static const uint64_t max[] = {INT8_MAX,  INT16_MAX,  INT32_MAX,  INT64_MAX, UINT8_MAX,
                                   UINT16_MAX, UINT32_MAX, UINT64_MAX, 0,         1};
    return f->kind == MW_FK_ENUM ? f->limit - 1u : f->kind <= MW_FK_BOOL ? max[f->kind] : 0;
}

/* Magnitude of the smallest value of an integer field (0 if unsigned). */
static inline uint64_t mw__field_neg_max(const mw_field_t *f) {
    return f->kind <= MW_FK_I64 ? (uint64_t)1 << (8 * f->size - 1) : 0;
}

#endif
