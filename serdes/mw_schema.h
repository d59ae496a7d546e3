/* mw_schema.h - declare a message type once; get the C struct, its field table
 * and typed helpers. Group message types into a protocol with numeric tags.
 *
 *   #define NEW_ORDER_FIELDS(F) \
 *       F(U64,   order_id)       \
 *       F(CHARS, symbol, 12)     \   char symbol[12]: NUL-padded, may be full
 *       F(I64,   price)          \
 *       F(U32,   qty)            \
 *       F(ENUM,  side, 3)        \   uint8_t, valid values 0..2
 *       F(BOOL,  ioc)            \
 *       F(F64,   notional)       \
 *       F(BYTES, flags, 4)           uint8_t flags[4]
 *   MW_MESSAGE(new_order, 1, NEW_ORDER_FIELDS)
 *
 * yields `typedef struct new_order {...} new_order_t;`, `new_order_TAG` (1)
 * and `new_order_schema()`, which returns the field table. Field kinds:
 *   I8 I16 I32 I64 U8 U16 U32 U64   (int8_t .. uint64_t)
 *   F64                             (double)
 *   BOOL                            (bool; 0 or 1 on every wire)
 *   CHARS, n                        (char[n], text: NUL-padded, may fill all n bytes, UTF-8)
 *   BYTES, n                        (uint8_t[n], opaque)
 *   ENUM, n                         (uint8_t holding 0..n-1, n <= 256)
 *
 * A protocol is a list of message names:
 *
 *   #define ORDERS_MSGS(M) M(new_order) M(cancel_order) M(order_ack)
 *   MW_PROTOCOL(orders, ORDERS_MSGS)
 *
 * yields `orders_protocol` (an mw_protocol_t: lookup by tag and by name) and
 * `orders_msg_t` (a union of all the structs, large enough to receive any of
 * them). Each MW_MESSAGE also yields a typed encoder,
 * `new_order_encode(sd, &m, out, cap)`, that takes only a `const new_order_t *`:
 * passing another struct is a compile error under -Werror (incompatible
 * pointer types). The clt/svc layers generate typed send wrappers the same way.
 *
 * `MW_SCHEMA_OF(ptr, ORDERS_MSGS)` picks a schema from a pointer's static
 * type with _Generic; a pointer to a type outside the protocol fails to
 * compile. Tags are 1..65535, unique within a protocol (a duplicate is a
 * compile error: duplicate case label); keep them small and dense.
 *
 * Everything here is static and constant: no registration, no allocation.
 * Each translation unit gets its own copy of the tables, so compare schemas
 * by tag, never by pointer.
 */
#ifndef MW_SCHEMA_H
#define MW_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "mw_api.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mw_fkind {
    MW_FK_I8, MW_FK_I16, MW_FK_I32, MW_FK_I64,
    MW_FK_U8, MW_FK_U16, MW_FK_U32, MW_FK_U64,
    MW_FK_F64, MW_FK_BOOL, MW_FK_CHARS, MW_FK_BYTES, MW_FK_ENUM
} mw_fkind_t;

typedef struct mw_field {
    const char *name;
    uint16_t name_len;
    uint8_t kind;    /* mw_fkind_t */
    uint32_t offset; /* offsetof in the struct */
    uint32_t size;   /* bytes in the struct and in the fixed wire layout */
    uint32_t limit;  /* ENUM: number of valid values; 0 otherwise */
} mw_field_t;

typedef struct mw_schema {
    const char *name;
    uint16_t name_len;
    uint16_t tag;
    uint32_t size;       /* sizeof the struct */
    uint32_t fixed_size; /* bytes in the fixed serdes: 2 (tag) + sum of field sizes */
    uint16_t nfields;
    const mw_field_t *fields;
    uint32_t flags;      /* MW_SCHEMA_* */
} mw_schema_t;

/* The struct's bytes [0, fixed_size - 2) are exactly the fixed wire layout on
 * a little-endian host (every field at its packed offset) and no field needs
 * checking (no BOOL, ENUM or CHARS): the fixed serdes then copies the whole
 * message at once. Computed at compile time by MW_MESSAGE. */
#define MW_SCHEMA_PLAIN 1u

typedef struct mw_protocol {
    const char *name;
    uint32_t max_size;       /* largest struct (sizeof the protocol union) */
    uint32_t max_fixed_size; /* largest fixed wire size */
    uint16_t count;
    const mw_schema_t *(*by_tag)(unsigned tag);
    const mw_schema_t *(*by_name)(const char *name, size_t len);
    const mw_schema_t *(*at)(unsigned index); /* 0 .. count-1, declaration order */
    /* Looked up when this protocol does not know a tag or name (NULL: none).
     * Sessions chain their control messages to the application's protocol. */
    const struct mw_protocol *ext;
} mw_protocol_t;

static inline const mw_schema_t *mw_protocol_by_tag(const mw_protocol_t *p, unsigned tag) {
    const mw_schema_t *s = p->by_tag(tag);
    return s || !p->ext ? s : p->ext->by_tag(tag);
}
static inline const mw_schema_t *mw_protocol_by_name(const mw_protocol_t *p, const char *n, size_t len) {
    const mw_schema_t *s = p->by_name(n, len);
    return s || !p->ext ? s : p->ext->by_name(n, len);
}

/* Name of a field kind ("u64"), for error text and docs. */
MW_API const char *mw_fkind_name(int kind);

/* ---- generator internals (not for direct use) ---------------------------- */
#define MW__CAT(a, b) MW__CAT_(a, b)
#define MW__CAT_(a, b) a##b

#define MW__ST_I8(n) int8_t n;
#define MW__ST_I16(n) int16_t n;
#define MW__ST_I32(n) int32_t n;
#define MW__ST_I64(n) int64_t n;
#define MW__ST_U8(n) uint8_t n;
#define MW__ST_U16(n) uint16_t n;
#define MW__ST_U32(n) uint32_t n;
#define MW__ST_U64(n) uint64_t n;
#define MW__ST_F64(n) double n;
#define MW__ST_BOOL(n) bool n;
#define MW__ST_CHARS(n, len) char n[len];
#define MW__ST_BYTES(n, len) uint8_t n[len];
#define MW__ST_ENUM(n, count) uint8_t n;
#define MW__ST(kind, ...) MW__ST_##kind(__VA_ARGS__)

#define MW__FE(n, k, sz, lim) {#n, (uint16_t)(sizeof(#n) - 1), k, (uint32_t)offsetof(mw__self_t, n), sz, lim},
#define MW__FT_I8(n) MW__FE(n, MW_FK_I8, 1, 0)
#define MW__FT_I16(n) MW__FE(n, MW_FK_I16, 2, 0)
#define MW__FT_I32(n) MW__FE(n, MW_FK_I32, 4, 0)
#define MW__FT_I64(n) MW__FE(n, MW_FK_I64, 8, 0)
#define MW__FT_U8(n) MW__FE(n, MW_FK_U8, 1, 0)
#define MW__FT_U16(n) MW__FE(n, MW_FK_U16, 2, 0)
#define MW__FT_U32(n) MW__FE(n, MW_FK_U32, 4, 0)
#define MW__FT_U64(n) MW__FE(n, MW_FK_U64, 8, 0)
#define MW__FT_F64(n) MW__FE(n, MW_FK_F64, 8, 0)
#define MW__FT_BOOL(n) MW__FE(n, MW_FK_BOOL, 1, 0)
#define MW__FT_CHARS(n, len) MW__FE(n, MW_FK_CHARS, (len), 0)
#define MW__FT_BYTES(n, len) MW__FE(n, MW_FK_BYTES, (len), 0)
#define MW__FT_ENUM(n, count) MW__FE(n, MW_FK_ENUM, 1, (count))
#define MW__FT(kind, ...) MW__FT_##kind(__VA_ARGS__)

#define MW__WS_I8(n) 1 +
#define MW__WS_I16(n) 2 +
#define MW__WS_I32(n) 4 +
#define MW__WS_I64(n) 8 +
#define MW__WS_U8(n) 1 +
#define MW__WS_U16(n) 2 +
#define MW__WS_U32(n) 4 +
#define MW__WS_U64(n) 8 +
#define MW__WS_F64(n) 8 +
#define MW__WS_BOOL(n) 1 +
#define MW__WS_CHARS(n, len) (len) +
#define MW__WS_BYTES(n, len) (len) +
#define MW__WS_ENUM(n, count) (1 + 0 * sizeof(char[(count) >= 1 && (count) <= 256 ? 1 : -1])) +
#define MW__WS(kind, ...) MW__WS_##kind(__VA_ARGS__)

#define MW__CNT(kind, ...) 1 +

#define MW__PK_I8(n) 1 &&
#define MW__PK_I16(n) 1 &&
#define MW__PK_I32(n) 1 &&
#define MW__PK_I64(n) 1 &&
#define MW__PK_U8(n) 1 &&
#define MW__PK_U16(n) 1 &&
#define MW__PK_U32(n) 1 &&
#define MW__PK_U64(n) 1 &&
#define MW__PK_F64(n) 1 &&
#define MW__PK_BOOL(n) 0 &&
#define MW__PK_CHARS(n, len) 0 &&
#define MW__PK_BYTES(n, len) 1 &&
#define MW__PK_ENUM(n, count) 0 &&
#define MW__PK(kind, ...) MW__PK_##kind(__VA_ARGS__)
/* The field name is the first variadic argument: a (kind, n, ...) parameter
 * list would leave "..." empty for fields without a size, which ISO C before
 * C23 rejects (-pedantic). */
#define MW__SAMEOFF(kind, ...) MW__SAMEOFF_(__VA_ARGS__, 0)
#define MW__SAMEOFF_(n, ...) (offsetof(mw__self_t, n) == offsetof(mw__packed_t, n)) &&

#ifdef __cplusplus
#define MW__STATIC_ASSERT static_assert
#else
#define MW__STATIC_ASSERT _Static_assert
#endif

/* MW_MESSAGE(name, tag, FIELDS): see the top of this file. MW_MESSAGE and
 * MW_PROTOCOL also compile as C++; MW_SCHEMA_OF needs C11 (_Generic). */
#define MW_MESSAGE(name, tag_, FIELDS)                                                  \
    typedef struct name { FIELDS(MW__ST) } name##_t;                                    \
    enum { name##_TAG = (tag_), name##_FIXED_SIZE = 2 + FIELDS(MW__WS) 0 };             \
    MW__STATIC_ASSERT((tag_) >= 1 && (tag_) <= 65535, #name ": tag must be 1..65535");  \
    static inline const mw_schema_t *name##_schema(void) {                              \
        typedef struct name mw__self_t;                                                 \
        typedef struct __attribute__((packed)) { FIELDS(MW__ST) } mw__packed_t;         \
        static const mw_field_t fields[] = {FIELDS(MW__FT)};                            \
        static const mw_schema_t s = {#name, (uint16_t)(sizeof(#name) - 1),             \
                                      (uint16_t)(tag_), (uint32_t)sizeof(mw__self_t),   \
                                      (uint32_t)name##_FIXED_SIZE,                      \
                                      (uint16_t)(FIELDS(MW__CNT) 0), fields,            \
                                      (FIELDS(MW__PK) FIELDS(MW__SAMEOFF) 1) ?          \
                                          MW_SCHEMA_PLAIN : 0u};                        \
        return &s;                                                                      \
    }                                                                                   \
    static inline ssize_t name##_encode(mw_serdes_t *sd, const name##_t *msg,            \
                                        uint8_t *out, size_t cap) {                     \
        return mw_serdes_encode(sd, name##_schema(), msg, out, cap);                    \
    }

#define MW__P_UNION(m) m##_t m;
#define MW__P_FIXED(m) char m[m##_FIXED_SIZE];
#define MW__P_CASE(m) case m##_TAG: return m##_schema();
#define MW__P_NAME(m)                                                                   \
    if (len == sizeof(#m) - 1 && memcmp(n, #m, len) == 0) return m##_schema();
#define MW__P_AT(m) if (i-- == 0) return m##_schema();
#define MW__P_CNT(m) 1 +

/* MW_PROTOCOL(proto, MSGS): see the top of this file. */
#define MW_PROTOCOL(proto, MSGS)                                                        \
    typedef union proto##_msg { MSGS(MW__P_UNION) } proto##_msg_t;                       \
    typedef union proto##__fixed { MSGS(MW__P_FIXED) } proto##__fixed_t;                 \
    static inline const mw_schema_t *proto##__by_tag(unsigned tag) {                    \
        switch (tag) { MSGS(MW__P_CASE) default: return NULL; }                         \
    }                                                                                   \
    static inline const mw_schema_t *proto##__by_name(const char *n, size_t len) {      \
        MSGS(MW__P_NAME)                                                                \
        return NULL;                                                                    \
    }                                                                                   \
    static inline const mw_schema_t *proto##__at(unsigned i) {                          \
        MSGS(MW__P_AT)                                                                  \
        return NULL;                                                                    \
    }                                                                                   \
    static const mw_protocol_t proto##_protocol __attribute__((unused)) = {            \
        #proto, (uint32_t)sizeof(proto##_msg_t), (uint32_t)sizeof(proto##__fixed_t),    \
        (uint16_t)(MSGS(MW__P_CNT) 0), proto##__by_tag, proto##__by_name, proto##__at, NULL};

/* MW_SCHEMA_OF(ptr, MSGS): the schema for *ptr chosen by its static type. */
#define MW__GEN(m) , m##_t * : m##_schema, const m##_t * : m##_schema
#define MW_SCHEMA_OF(ptr, MSGS) (_Generic((ptr) MSGS(MW__GEN))())

#ifdef __cplusplus
}
#endif

/* The typed encoders call mw_serdes_encode: make it visible wherever a
 * schema is declared. */
#include "mw_serdes.h"

#endif
