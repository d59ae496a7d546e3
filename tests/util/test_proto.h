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

/* Message i of the end-to-end tests' stream (test_msgs.c): every fourth a
 * ping, the rest all_kinds, values varying with i and reaching every field
 * type's extremes (min/max ints, -0.0, denormals, empty/full/UTF-8 chars). */
const mw_schema_t *test_make_msg(uint64_t i, test_msg_t *m);
/* True if (s, msg) is the echo of message i; else a sentence in why. */
bool test_check_echo(uint64_t i, const mw_schema_t *s, const void *msg, char *why, size_t cap);

#endif
