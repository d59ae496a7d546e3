/* test_proto.h - a protocol that uses every field kind, shared by the serdes,
 * interop and end-to-end tests. */
#ifndef TEST_PROTO_H
#define TEST_PROTO_H

#include "mw_serdes.h"

#define ALL_KINDS_FIELDS(F) \
    F(I8, i8)               \
    F(I16, i16)             \
    F(I32, i32)             \
    F(I64, i64)             \
    F(U8, u8)               \
    F(U16, u16)             \
    F(U32, u32)             \
    F(U64, u64)             \
    F(F64, f64)             \
    F(BOOL, flag)           \
    F(CHARS, sym, 8)        \
    F(BYTES, raw, 4)        \
    F(ENUM, side, 3)
MW_MESSAGE(all_kinds, 1, ALL_KINDS_FIELDS)

#define PING_FIELDS(F) \
    F(U64, seq)        \
    F(U64, sent_ns)
MW_MESSAGE(ping, 2, PING_FIELDS)

#define EMPTY_FIELDS(F) F(BOOL, unused)
MW_MESSAGE(heartbeat, 3, EMPTY_FIELDS)

#define TEST_MSGS(M) M(all_kinds) M(ping) M(heartbeat)
MW_PROTOCOL(test, TEST_MSGS)

#endif
