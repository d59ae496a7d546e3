/* pp_proto.h - the message protocol of the pingpong and flood tools.
 *
 * Seven echo messages that differ only in the size of their pad, so a tool
 * can pick a real struct for a wanted wire size. The number in each name is
 * the message's size in the fixed serdes: 2 (tag) + 8 (seq) + 8 (sent_ns) +
 * pad. `--size N` picks the smallest type whose fixed size is >= N.
 *
 * The pad holds a pattern derived from seq (pp_fill), so a receiver can check
 * every message it gets (pp_check) without keeping copies of what was sent.
 * Every type has seq, sent_ns and pad as fields 0, 1 and 2 of its schema; the
 * helpers below reach them through the field table, so they work for any of
 * the seven types.
 */
#ifndef PP_PROTO_H
#define PP_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mw_schema.h"

#define PING32_FIELDS(F) F(U64, seq) F(U64, sent_ns) F(BYTES, pad, 14)
#define PING64_FIELDS(F) F(U64, seq) F(U64, sent_ns) F(BYTES, pad, 46)
#define PING128_FIELDS(F) F(U64, seq) F(U64, sent_ns) F(BYTES, pad, 110)
#define PING256_FIELDS(F) F(U64, seq) F(U64, sent_ns) F(BYTES, pad, 238)
#define PING512_FIELDS(F) F(U64, seq) F(U64, sent_ns) F(BYTES, pad, 494)
#define PING1024_FIELDS(F) F(U64, seq) F(U64, sent_ns) F(BYTES, pad, 1006)
#define PING4096_FIELDS(F) F(U64, seq) F(U64, sent_ns) F(BYTES, pad, 4078)

MW_MESSAGE(ping32, 1, PING32_FIELDS)
MW_MESSAGE(ping64, 2, PING64_FIELDS)
MW_MESSAGE(ping128, 3, PING128_FIELDS)
MW_MESSAGE(ping256, 4, PING256_FIELDS)
MW_MESSAGE(ping512, 5, PING512_FIELDS)
MW_MESSAGE(ping1024, 6, PING1024_FIELDS)
MW_MESSAGE(ping4096, 7, PING4096_FIELDS)

/* Smallest first: pp_schema_for_size relies on this order. */
#define PP_MSGS(M) M(ping32) M(ping64) M(ping128) M(ping256) M(ping512) M(ping1024) M(ping4096)
MW_PROTOCOL(pp, PP_MSGS)

_Static_assert(ping32_FIXED_SIZE == 32 && ping64_FIXED_SIZE == 64 && ping128_FIXED_SIZE == 128 &&
                   ping256_FIXED_SIZE == 256 && ping512_FIXED_SIZE == 512 &&
                   ping1024_FIXED_SIZE == 1024 && ping4096_FIXED_SIZE == 4096,
               "ping<N>: the name must be the fixed wire size");

/* pp_fill and pp_check_pad move the pad in whole 8-byte words. */
#define PP__ALIGNED(m) _Static_assert(offsetof(m##_t, pad) % 8 == 0 && sizeof(m##_t) % 8 == 0, \
                                      #m ": the pad must start and end on 8-byte words");
PP_MSGS(PP__ALIGNED)

enum { PP_MIN_SIZE = 32, PP_MAX_SIZE = 4096, PP_DEFAULT_SIZE = 64 };

/* The smallest message type whose fixed size is >= size, or NULL when size is
 * over PP_MAX_SIZE. */
static inline const mw_schema_t *pp_schema_for_size(uint64_t size) {
    for (unsigned i = 0; i < pp_protocol.count; i++) {
        const mw_schema_t *s = pp_protocol.at(i);
        if (s->fixed_size >= size) return s;
    }
    return NULL;
}

static inline uint64_t pp_get_u64(const mw_schema_t *s, const void *msg, unsigned field) {
    uint64_t v;
    memcpy(&v, (const uint8_t *)msg + s->fields[field].offset, sizeof v);
    return v;
}

static inline uint64_t pp_seq(const mw_schema_t *s, const void *msg) { return pp_get_u64(s, msg, 0); }
static inline uint64_t pp_sent_ns(const mw_schema_t *s, const void *msg) { return pp_get_u64(s, msg, 1); }

static inline void pp_set_sent_ns(const mw_schema_t *s, void *msg, uint64_t ns) {
    memcpy((uint8_t *)msg + s->fields[1].offset, &ns, sizeof ns);
}

static inline uint64_t pp_to_le64(uint64_t v) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return __builtin_bswap64(v);
#else
    return v;
#endif
}

/* The pad pattern of a seq: the 8 bytes at byte offset off are seed + off *
 * 0x0101010101010101, stored little-endian so peers of either byte order
 * agree; seed mixes seq so neighbouring messages differ in every word. */
static inline uint64_t pp_pattern_seed(uint64_t seq) {
    uint64_t x = (seq + 1) * 0x9E3779B97F4A7C15ull;
    return x ^ (x >> 31);
}
static inline uint64_t pp_pattern_word(uint64_t seed, size_t off) {
    return pp_to_le64(seed + off * 0x0101010101010101ull);
}

/* Sets seq and sent_ns and fills the pad with seq's pattern, in whole words:
 * the last one may spill into the struct's trailing padding (see
 * PP__ALIGNED), which no serdes reads. */
static inline void pp_fill(const mw_schema_t *s, void *msg, uint64_t seq, uint64_t sent_ns) {
    memcpy((uint8_t *)msg + s->fields[0].offset, &seq, sizeof seq);
    pp_set_sent_ns(s, msg, sent_ns);
    uint8_t *pad = (uint8_t *)msg + s->fields[2].offset;
    uint64_t seed = pp_pattern_seed(seq);
    for (size_t i = 0; i < s->fields[2].size; i += 8) {
        uint64_t w = pp_pattern_word(seed, i);
        memcpy(pad + i, &w, 8);
    }
}

/* Offset of the first byte of got[off .. off+k) that differs from the bytes
 * of want, or -1. */
static inline long pp_first_diff(uint64_t want, const uint8_t *got, size_t off, size_t k) {
    for (size_t b = 0; b < k; b++)
        if (((const uint8_t *)&want)[b] != got[off + b]) return (long)(off + b);
    return -1;
}

/* Checks the pad against the pattern of the message's own seq. Returns -1 if
 * it matches, else the index of the first wrong pad byte. Word-wise, the tail
 * included: the last partial word is read whole (see PP__ALIGNED) and the
 * bytes past the pad are masked off. */
static inline long pp_check_pad(const mw_schema_t *s, const void *msg) {
    const mw_field_t *f = &s->fields[2];
    const uint8_t *got = (const uint8_t *)msg + f->offset;
    uint64_t seed = pp_pattern_seed(pp_seq(s, msg));
    for (size_t i = 0; i < f->size; i += 8) {
        size_t k = f->size - i < 8 ? f->size - i : 8;
        uint64_t g, w = pp_pattern_word(seed, i);
        memcpy(&g, got + i, 8);
        uint64_t mask = k == 8 ? ~0ull : (1ull << (8 * k)) - 1; /* the first k bytes in memory */
        if ((pp_to_le64(g ^ w) & mask) != 0) return pp_first_diff(w, got, i, k);
    }
    return -1;
}

#endif
