/* test_serdes_msgpack_ref.c - the "msgpack" serdes against msgpack-c, the
 * reference implementation:
 *   - for random structs, our bytes are exactly what msgpack-c's packer
 *     writes, and msgpack-c's unpacker reads them back to the same values;
 *   - bytes packed by msgpack-c in other legal ways (keys shuffled, fixed-size
 *     and signed int encodings, float32) decode with ours to the same struct;
 *   - on mutated inputs, our decoder gives the verdict (error code, or the
 *     struct) of a reference decoder written here on msgpack-c's object tree
 *     under the README's rules: the way msgwire decoded before it read the
 *     bytes in place. */
#include "mw_test.h"
#include "test_proto.h"
#include "serdes_impl.h"

#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <string.h>

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void random_msg(all_kinds_t *m, uint64_t *rng) {
    static const char *const syms[] = {"", "A", "AAPL", "ABCDEFGH", "\xc3\xa9t\xc3\xa9",
                                       "\xf0\x9f\x98\x80", "a\"b"};
    uint64_t r = rng_next(rng);
    memset(m, 0, sizeof *m);
    m->i8 = (int8_t)r, m->i16 = (int16_t)(r >> 8), m->i32 = (int32_t)(r >> 16) >> (r % 31);
    m->i64 = (int64_t)rng_next(rng) >> (r % 64);
    m->u8 = (uint8_t)(r >> 24), m->u16 = (uint16_t)(r >> 32) >> (r % 16);
    m->u32 = (uint32_t)(r >> 30) >> (r % 32);
    m->u64 = rng_next(rng) >> (r >> 58);
    uint64_t fb = rng_next(rng);
    memcpy(&m->f64, &fb, 8);
    m->flag = (r >> 40) & 1;
    const char *sym = syms[(r >> 41) % 7];
    memcpy(m->sym, sym, strnlen(sym, sizeof m->sym));
    uint32_t raw = (uint32_t)rng_next(rng);
    memcpy(m->raw, &raw, 4);
    m->side = (uint8_t)((r >> 50) % 3);
}

/* ---- packing with msgpack-c ---------------------------------------------- */

typedef struct bytes { msgpack_sbuffer sb; msgpack_packer pk; } bytes_t;

static void pack_cstr(msgpack_packer *pk, const char *s, size_t n) {
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

/* style 0: what msgwire writes; 1: ints in fixed-size or signed encodings,
 * float32 where exact. */
static void ref_value(msgpack_packer *pk, const mw_field_t *f, const all_kinds_t *m, int style) {
    if (mw__fkind_is_signed(f->kind)) {
        int64_t v = mw__field_get_i64(f, m);
        if (style) msgpack_pack_fix_int64(pk, v);
        else msgpack_pack_int64(pk, v);
    } else if (f->kind == MW_FK_BOOL) {
        if (m->flag) msgpack_pack_true(pk);
        else msgpack_pack_false(pk);
    } else if (mw__fkind_is_unsigned(f->kind)) {
        uint64_t v = mw__field_get_u64(f, m);
        if (style && v <= INT64_MAX && (v & 1)) msgpack_pack_fix_int64(pk, (int64_t)v);
        else if (style) msgpack_pack_fix_uint64(pk, v);
        else msgpack_pack_uint64(pk, v);
    } else if (f->kind == MW_FK_F64) {
        if (style && (double)(float)m->f64 == m->f64 && !isnan(m->f64)) msgpack_pack_float(pk, (float)m->f64);
        else msgpack_pack_double(pk, m->f64);
    } else if (f->kind == MW_FK_CHARS) {
        pack_cstr(pk, m->sym, strnlen(m->sym, sizeof m->sym));
    } else {
        msgpack_pack_bin(pk, f->size);
        msgpack_pack_bin_body(pk, m->raw, f->size);
    }
}

/* Packs m; order[] gives the map entries' order (index nfields is "type"). */
static size_t ref_pack(const all_kinds_t *m, bool array, const unsigned *order, int style,
                       uint8_t *out, size_t cap) {
    const mw_schema_t *s = all_kinds_schema();
    bytes_t b;
    msgpack_sbuffer_init(&b.sb);
    msgpack_packer_init(&b.pk, &b.sb, msgpack_sbuffer_write);
    if (array) {
        msgpack_pack_array(&b.pk, 1u + s->nfields);
        msgpack_pack_uint64(&b.pk, all_kinds_TAG);
        for (unsigned i = 0; i < s->nfields; i++) ref_value(&b.pk, &s->fields[i], m, style);
    } else {
        msgpack_pack_map(&b.pk, 1u + s->nfields);
        for (unsigned k = 0; k <= s->nfields; k++) {
            unsigned i = order ? order[k] : (k == 0 ? s->nfields : k - 1);
            if (i == s->nfields) {
                pack_cstr(&b.pk, "type", 4);
                pack_cstr(&b.pk, s->name, s->name_len);
                continue;
            }
            pack_cstr(&b.pk, s->fields[i].name, s->fields[i].name_len);
            ref_value(&b.pk, &s->fields[i], m, style);
        }
    }
    assert_true(b.sb.size <= cap);
    memcpy(out, b.sb.data, b.sb.size);
    size_t n = b.sb.size;
    msgpack_sbuffer_destroy(&b.sb);
    return n;
}

/* ---- the reference decoder: msgpack-c's tree, the README's rules -------- */

enum { REF_DEPTH = 32 };

/* Structure of one object at p[*i]; depth counts open non-empty containers.
 * Mirrors what must be true before msgpack-c may build the tree. */
static int ref_walk(const uint8_t *p, size_t len, size_t *i, int depth) {
    if (*i >= len) return MW_ETRUNC;
    uint8_t b = p[(*i)++];
    uint64_t kids = 0, skip = 0;
    size_t hdr = 0;
    if (b >= 0x80 && b <= 0x8f) kids = 2u * (b & 15u);
    else if (b >= 0x90 && b <= 0x9f) kids = b & 15u;
    else if (b >= 0xa0 && b <= 0xbf) skip = b & 31u;
    else if (b == 0xc1) return MW_EPROTO;
    else if (b == 0xc4 || b == 0xd9) hdr = 1;
    else if (b == 0xc5 || b == 0xda || b == 0xdc || b == 0xde) hdr = 2;
    else if (b == 0xc6 || b == 0xdb || b == 0xdd || b == 0xdf) hdr = 4;
    else if (b >= 0xc7 && b <= 0xc9) hdr = (size_t)1 << (b - 0xc7), skip = 1;
    else if (b == 0xca || b == 0xce || b == 0xd2) skip = 4;
    else if (b == 0xcb || b == 0xcf || b == 0xd3) skip = 8;
    else if (b == 0xcc || b == 0xd0) skip = 1;
    else if (b == 0xcd || b == 0xd1) skip = 2;
    else if (b >= 0xd4 && b <= 0xd8) skip = 1 + ((size_t)1 << (b - 0xd4));
    if (hdr > len - *i) return MW_ETRUNC;
    uint64_t n = 0;
    for (size_t k = 0; k < hdr; k++) n = n << 8 | p[*i + k];
    *i += hdr;
    if (b == 0xdc || b == 0xdd) kids = n;
    else if (b == 0xde || b == 0xdf) kids = 2 * n;
    else if (hdr) skip += n;
    if (skip > len - *i) return MW_ETRUNC;
    *i += skip;
    if (kids == 0) return 0;
    if (kids > len - *i) return MW_ETRUNC;
    if (depth == REF_DEPTH) return MW_EPROTO;
    for (uint64_t k = 0; k < kids; k++) {
        int rc = ref_walk(p, len, i, depth + 1);
        if (rc) return rc;
    }
    return 0;
}

static int ref_value_get(const mw_field_t *f, const msgpack_object *o, uint8_t *msg) {
    uint8_t *p = msg + f->offset;
    const uint64_t exact = (uint64_t)1 << 53;
    switch (f->kind) {
    case MW_FK_F64: {
        double d;
        if (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64) d = o->via.f64;
        else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            if (o->via.u64 > exact) return MW_ERANGE;
            d = (double)o->via.u64;
        } else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
            if (o->via.i64 < -(int64_t)exact) return MW_ERANGE;
            d = (double)o->via.i64;
        } else return MW_ETYPE;
        memcpy(p, &d, 8);
        return 0;
    }
    case MW_FK_BOOL:
        if (o->type != MSGPACK_OBJECT_BOOLEAN) return MW_ETYPE;
        *p = o->via.boolean;
        return 0;
    case MW_FK_CHARS:
        if (o->type != MSGPACK_OBJECT_STR) return MW_ETYPE;
        if (o->via.str.size > f->size) return MW_ETOOBIG;
        if (o->via.str.size && memchr(o->via.str.ptr, 0, o->via.str.size)) return MW_EPROTO;
        if (!mw__utf8_valid((const uint8_t *)o->via.str.ptr, o->via.str.size)) return MW_EUTF8;
        if (o->via.str.size) memcpy(p, o->via.str.ptr, o->via.str.size);
        return 0;
    case MW_FK_BYTES:
        if (o->type != MSGPACK_OBJECT_BIN) return MW_ETYPE;
        if (o->via.bin.size != f->size) return o->via.bin.size > f->size ? MW_ETOOBIG : MW_ETYPE;
        memcpy(p, o->via.bin.ptr, f->size);
        return 0;
    default:
        if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            if (o->via.u64 > mw__fkind_max(f)) return MW_ERANGE;
            mw__field_set_u64(f, msg, o->via.u64);
            return 0;
        }
        if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
            if (!mw__fkind_is_signed(f->kind) || o->via.i64 < mw__fkind_min(f->kind)) return MW_ERANGE;
            mw__field_set_i64(f, msg, o->via.i64);
            return 0;
        }
        return MW_ETYPE;
    }
}

static int ref_type(const msgpack_object *v, const mw_schema_t **s) {
    if (v->type == MSGPACK_OBJECT_STR) {
        *s = mw_protocol_by_name(&test_protocol, v->via.str.ptr, v->via.str.size);
        return *s ? 0 : MW_ETAG;
    }
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        *s = v->via.u64 <= 65535 ? mw_protocol_by_tag(&test_protocol, (unsigned)v->via.u64) : NULL;
        return *s ? 0 : MW_ETAG;
    }
    return MW_ETYPE;
}

static bool key_is(const msgpack_object *k, const char *s, size_t n) {
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n && memcmp(k->via.str.ptr, s, n) == 0;
}

static int ref_map(const msgpack_object_map *mp, uint8_t *msg, const mw_schema_t **so) {
    uint32_t t = 0;
    while (t < mp->size && !key_is(&mp->ptr[t].key, "type", 4)) t++;
    if (t == mp->size) return MW_EMISSING;
    const mw_schema_t *s;
    int rc = ref_type(&mp->ptr[t].val, &s);
    if (rc) return rc;
    memset(msg, 0, s->size);
    bool seen[64] = {false};
    unsigned got = 0;
    for (uint32_t i = 0; i < mp->size; i++) {
        if (i == t) continue;
        const msgpack_object *k = &mp->ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR) return MW_EPROTO;
        unsigned fi = 0;
        while (fi < s->nfields && !key_is(k, s->fields[fi].name, s->fields[fi].name_len)) fi++;
        if (fi == s->nfields || seen[fi]) return MW_EFIELD;
        seen[fi] = true;
        got++;
        if ((rc = ref_value_get(&s->fields[fi], &mp->ptr[i].val, msg))) return rc;
    }
    *so = s;
    return got == s->nfields ? 0 : MW_EMISSING;
}

static int ref_array(const msgpack_object_array *a, uint8_t *msg, const mw_schema_t **so) {
    if (a->size == 0) return MW_EMISSING;
    if (a->ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER) return MW_ETYPE;
    const mw_schema_t *s;
    int rc = ref_type(&a->ptr[0], &s);
    if (rc) return rc;
    if (a->size < 1u + s->nfields) return MW_EMISSING;
    if (a->size > 1u + s->nfields) return MW_EFIELD;
    memset(msg, 0, s->size);
    for (unsigned i = 0; i < s->nfields; i++)
        if ((rc = ref_value_get(&s->fields[i], &a->ptr[1 + i], msg))) return rc;
    *so = s;
    return 0;
}

static int ref_decode(const uint8_t *in, size_t len, uint8_t *msg, const mw_schema_t **so) {
    size_t end = 0;
    int rc = ref_walk(in, len, &end, 0);
    if (rc) return rc;
    if (end < len) return MW_ETRAILING;
    msgpack_zone *z = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE);
    msgpack_object top;
    size_t off = 0;
    assert_int_equal(msgpack_unpack((const char *)in, len, &off, z, &top), MSGPACK_UNPACK_SUCCESS);
    if (top.type == MSGPACK_OBJECT_MAP) rc = ref_map(&top.via.map, msg, so);
    else if (top.type == MSGPACK_OBJECT_ARRAY) rc = ref_array(&top.via.array, msg, so);
    else rc = MW_EPROTO;
    msgpack_zone_free(z);
    return rc;
}

/* ---- tests -------------------------------------------------------------------- */

static ssize_t our_decode(mw_serdes_t *sd, const uint8_t *buf, size_t n, test_msg_t *out,
                          const mw_schema_t **s) {
    mw_guard_t g;
    const uint8_t *in = mw_guard_copy(&g, buf, n);
    ssize_t r = mw_serdes_decode(sd, in, n, &test_protocol, s, out, sizeof *out);
    mw_guard_free(&g);
    return r;
}

static void test_msgpack_bytes_equal_msgpack_c_packer_and_unpack_to_same_values(void **state) {
    (void)state;
    uint64_t rng = 0x6A09E667F3BCC908ull;
    for (int array = 0; array < 2; array++) {
        mw_serdes_t sd;
        assert_int_equal(mw_serdes_init(&sd, array ? "msgpack-array" : "msgpack", 0), 0);
        for (int it = 0; it < 5000; it++) {
            all_kinds_t m;
            random_msg(&m, &rng);
            uint8_t ours[256], ref[256];
            ssize_t n = all_kinds_encode(&sd, &m, ours, sizeof ours);
            assert_true(n > 0);
            size_t rn = ref_pack(&m, array, NULL, 0, ref, sizeof ref);
            assert_int_equal(n, rn);
            assert_memory_equal(ours, ref, rn);
            /* msgpack-c reads our bytes back to the same values */
            test_msg_t back;
            const mw_schema_t *s = NULL;
            assert_int_equal(ref_decode(ours, (size_t)n, (uint8_t *)&back, &s), 0);
            assert_memory_equal(&back.all_kinds, &m, sizeof m);
        }
        ping_t pg = {rng_next(&rng), 0};
        uint8_t buf[64];
        for (int sh = 0; sh < 64; sh++) { /* every int width */
            pg.seq = rng_next(&rng) >> sh;
            ssize_t n = ping_encode(&sd, &pg, buf, sizeof buf);
            test_msg_t back;
            const mw_schema_t *s = NULL;
            assert_int_equal(ref_decode(buf, (size_t)n, (uint8_t *)&back, &s), 0);
            assert_int_equal(back.ping.seq, pg.seq);
        }
        mw_serdes_fini(&sd);
    }
}

static void test_msgpack_decodes_what_msgpack_c_packs_in_any_legal_form(void **state) {
    (void)state;
    uint64_t rng = 0xBB67AE8584CAA73Bull;
    mw_serdes_t sd;
    assert_int_equal(mw_serdes_init(&sd, "msgpack", 0), 0);
    const unsigned nf = all_kinds_schema()->nfields;
    for (int it = 0; it < 5000; it++) {
        all_kinds_t m;
        random_msg(&m, &rng);
        unsigned order[32];
        for (unsigned i = 0; i <= nf; i++) order[i] = i;
        for (unsigned i = nf; i > 0; i--) { /* shuffle, "type" included */
            unsigned j = (unsigned)(rng_next(&rng) % (i + 1)), t = order[i];
            order[i] = order[j], order[j] = t;
        }
        uint8_t buf[512];
        size_t n = ref_pack(&m, it & 1, order, (it >> 1) & 1, buf, sizeof buf);
        test_msg_t out;
        const mw_schema_t *s = NULL;
        assert_int_equal(our_decode(&sd, buf, n, &out, &s), n);
        assert_int_equal(s->tag, all_kinds_TAG);
        assert_memory_equal(&out.all_kinds, &m, sizeof m);
    }
    mw_serdes_fini(&sd);
}

static void test_msgpack_verdicts_match_the_msgpack_c_reference_on_mutations(void **state) {
    (void)state;
    uint64_t rng = 0x3C6EF372FE94F82Bull;
    mw_serdes_t sd;
    assert_int_equal(mw_serdes_init(&sd, "msgpack", 0), 0);
    const unsigned nf = all_kinds_schema()->nfields;
    static const uint8_t special[] = {0x00, 0x01, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xa4, 0xbf,
                                      0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xca, 0xcb, 0xcc, 0xcf, 0xd0,
                                      0xd3, 0xd4, 0xd9, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff};
    int ok = 0, codes[64] = {0};
    for (int it = 0; it < 40000; it++) {
        all_kinds_t m;
        random_msg(&m, &rng);
        unsigned order[32];
        order[0] = nf; /* "type" first, then the fields; or "type" swapped elsewhere */
        for (unsigned i = 1; i <= nf; i++) order[i] = i - 1;
        unsigned p = 1 + (unsigned)(rng_next(&rng) % nf);
        order[0] = order[p], order[p] = nf;
        uint8_t buf[600];
        size_t n = ref_pack(&m, it % 4 == 3, it % 4 == 1 ? order : NULL, (it >> 2) & 1, buf, 500);
        for (int k = (int)(rng_next(&rng) % 3); k >= 0; k--) {
            uint64_t r = rng_next(&rng);
            size_t at = (size_t)(r >> 8) % n;
            uint8_t c = r & 8 ? special[(r >> 32) % sizeof special] : (uint8_t)(r >> 40);
            switch (r % 4) {
            case 0: buf[at] = c; break;
            case 1: memmove(buf + at + 1, buf + at, n - at), buf[at] = c, n++; break;
            case 2: if (n > 1) memmove(buf + at, buf + at + 1, n - at - 1), n--; break;
            default: n = at + 1; break;
            }
        }
        test_msg_t ours, ref;
        memset(&ref, 0, sizeof ref);
        const mw_schema_t *s1 = NULL, *s2 = NULL;
        ssize_t r1 = our_decode(&sd, buf, n, &ours, &s1);
        int r2 = ref_decode(buf, n, (uint8_t *)&ref, &s2);
        if (r1 < 0 ? r1 != r2 : r2 != 0)
            fail_msg("iteration %d: ours %s, reference %s (%s)", it, mw_errname((int)r1),
                     mw_errname(r2), mw_serdes_last_error(&sd));
        if (r1 >= 0) {
            assert_int_equal(r1, n);
            assert_ptr_equal(s1, s2);
            assert_memory_equal(&ours, &ref, s1->size);
            ok++;
        } else {
            codes[-r1 % 64]++;
        }
    }
    int kinds = 0;
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) kinds += codes[i] > 0;
    assert_true(ok > 1000);
    assert_true(kinds >= 8); /* the mutations reach most of the verdicts */
    mw_serdes_fini(&sd);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msgpack_bytes_equal_msgpack_c_packer_and_unpack_to_same_values),
        cmocka_unit_test(test_msgpack_decodes_what_msgpack_c_packs_in_any_legal_form),
        cmocka_unit_test(test_msgpack_verdicts_match_the_msgpack_c_reference_on_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
