/* test_serdes_msgpack.c - the "msgpack" serdes in map and array form: round
 * trips at the edges of every field kind, golden bytes, every decoder error
 * from inputs crafted with msgpack-c's packer, every prefix against a guard
 * page, short output buffers, a deterministic fuzz loop, and no allocation
 * in steady state. */
#include "mw_test.h"
#include "test_proto.h"
#include "serdes_impl.h"

#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <string.h>

static uint64_t f64_bits(double d) {
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

static double bits_f64(uint64_t b) {
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

/* Edge values of every kind (zeroed first so padding compares equal). */
enum { NCASES = 6 };
static void make_case(all_kinds_t *m, int v) {
    memset(m, 0, sizeof *m);
    switch (v) {
    case 0: /* minimums, empty text */
        m->i8 = INT8_MIN; m->i16 = INT16_MIN; m->i32 = INT32_MIN; m->i64 = INT64_MIN;
        m->f64 = -INFINITY;
        break;
    case 1: /* maximums, full ASCII text */
        m->i8 = INT8_MAX; m->i16 = INT16_MAX; m->i32 = INT32_MAX; m->i64 = INT64_MAX;
        m->u8 = UINT8_MAX; m->u16 = UINT16_MAX; m->u32 = UINT32_MAX; m->u64 = UINT64_MAX;
        m->f64 = INFINITY; m->flag = true; m->side = 2;
        memcpy(m->sym, "ABCDEFGH", 8);
        memset(m->raw, 0xff, sizeof m->raw);
        break;
    case 2: /* -0.0, two- and three-byte UTF-8, values at encoding boundaries */
        m->i8 = -33; m->i16 = -129; m->i32 = -32769; m->i64 = -2147483649ll;
        m->u8 = 128; m->u16 = 256; m->u32 = 65536; m->u64 = (uint64_t)1 << 32;
        m->f64 = -0.0; m->side = 1;
        strcpy(m->sym, "\xc3\xa9\xe2\x82\xac"); /* e-acute, euro sign */
        break;
    case 3: /* quiet NaN with a payload, full text of two 4-byte sequences */
        m->f64 = bits_f64(0x7ff8000000000123ull);
        memcpy(m->sym, "\xf0\x9f\x98\x80\xf0\x9f\x98\x80", 8);
        m->raw[0] = 0x01; m->raw[3] = 0x80;
        break;
    case 4: /* -1 everywhere signed, negative NaN */
        m->i8 = -1; m->i16 = -1; m->i32 = -1; m->i64 = -1;
        m->u8 = 127; m->u16 = 255; m->u32 = 65535; m->u64 = UINT32_MAX;
        m->f64 = bits_f64(0xfff8000000000000ull);
        strcpy(m->sym, "x");
        break;
    default: /* ordinary values, smallest subnormal */
        m->i8 = 42; m->i16 = -300; m->i32 = 70000; m->i64 = -5000000000ll;
        m->u8 = 200; m->u16 = 0x1234; m->u32 = 0xdeadbeefu; m->u64 = 0x0102030405060708ull;
        m->f64 = bits_f64(1);
        m->flag = true; m->side = 2;
        strcpy(m->sym, "AAPL");
        memcpy(m->raw, "\x00\xff\x10\x7f", 4);
        break;
    }
}

static void sd_setup(mw_serdes_t *sd, unsigned flags) {
    assert_int_equal(mw_serdes_init(sd, "msgpack", flags), 0);
    assert_non_null(sd->state);
}

static ssize_t decode(mw_serdes_t *sd, const uint8_t *in, size_t len, test_msg_t *out) {
    const mw_schema_t *s = NULL;
    return mw_serdes_decode(sd, in, len, &test_protocol, &s, out, sizeof *out);
}

static void assert_err_names(const mw_serdes_t *sd, const char *field) {
    char want[64];
    snprintf(want, sizeof want, "field \"%s\"", field);
    const char *t = mw_serdes_last_error(sd);
    if (!strstr(t, want)) fail_msg("error text \"%s\" does not name %s", t, want);
}

static void test_msgpack_round_trips_edge_values_in_both_forms(void **state) {
    (void)state;
    for (unsigned flags = 0; flags <= MW_SERDES_MSGPACK_ARRAY; flags++) {
        mw_serdes_t sd;
        sd_setup(&sd, flags);
        for (int v = 0; v < NCASES; v++) {
            all_kinds_t m;
            make_case(&m, v);
            uint8_t buf[256];
            ssize_t n = all_kinds_encode(&sd, &m, buf, sizeof buf);
            assert_true(n > 0);
            assert_true((size_t)n <= mw__serdes_max_len(&sd, all_kinds_schema()));
            test_msg_t out;
            memset(&out, 0xa5, sizeof out);
            const mw_schema_t *s = NULL;
            assert_int_equal(mw_serdes_decode(&sd, buf, (size_t)n, &test_protocol, &s, &out, sizeof out), n);
            assert_non_null(s);
            assert_int_equal(s->tag, all_kinds_TAG);
            assert_memory_equal(&out.all_kinds, &m, sizeof m);
            assert_int_equal(f64_bits(out.all_kinds.f64), f64_bits(m.f64));
        }
        ping_t pg = {UINT64_MAX, 0};
        uint8_t buf[64];
        ssize_t n = ping_encode(&sd, &pg, buf, sizeof buf);
        assert_true(n > 0);
        test_msg_t out;
        assert_int_equal(decode(&sd, buf, (size_t)n, &out), n);
        assert_memory_equal(&out.ping, &pg, sizeof pg);
        mw_serdes_fini(&sd);
        mw_serdes_fini(&sd); /* idempotent */
    }
}

static void test_msgpack_encodes_golden_bytes(void **state) {
    (void)state;
    mw_serdes_t sd;
    uint8_t buf[128];
    ping_t pg = {1, 2};

    sd_setup(&sd, 0);
    static const uint8_t want_map[] = {
        0x83,                                           /* map of 3 */
        0xa4, 't', 'y', 'p', 'e', 0xa4, 'p', 'i', 'n', 'g',
        0xa3, 's', 'e', 'q', 0x01,
        0xa7, 's', 'e', 'n', 't', '_', 'n', 's', 0x02,
    };
    assert_int_equal(ping_encode(&sd, &pg, buf, sizeof buf), sizeof want_map);
    assert_memory_equal(buf, want_map, sizeof want_map);
    mw_serdes_fini(&sd);

    sd_setup(&sd, MW_SERDES_MSGPACK_ARRAY);
    static const uint8_t want_arr[] = {0x93, 0x02, 0x01, 0x02};
    assert_int_equal(ping_encode(&sd, &pg, buf, sizeof buf), sizeof want_arr);
    assert_memory_equal(buf, want_arr, sizeof want_arr);

    all_kinds_t m;
    memset(&m, 0, sizeof m);
    m.i8 = -2; m.i16 = -300; m.i32 = 70000; m.i64 = -1;
    m.u8 = 200; m.u16 = 0x1234; m.u32 = 0xdeadbeefu; m.u64 = 0x0102030405060708ull;
    m.f64 = 1.5; m.flag = true; strcpy(m.sym, "AB"); memcpy(m.raw, "\x00\xff\x10\x7f", 4);
    m.side = 2;
    static const uint8_t want_all[] = {
        0x9e, 0x01,                                           /* array of 14, tag 1 */
        0xfe,                                                 /* i8 -2: negative fixint */
        0xd1, 0xfe, 0xd4,                                     /* i16 -300: int16 */
        0xce, 0x00, 0x01, 0x11, 0x70,                         /* i32 70000: uint32 */
        0xff,                                                 /* i64 -1 */
        0xcc, 0xc8,                                           /* u8 200 */
        0xcd, 0x12, 0x34,                                     /* u16 */
        0xce, 0xde, 0xad, 0xbe, 0xef,                         /* u32 */
        0xcf, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, /* u64 */
        0xcb, 0x3f, 0xf8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* f64 1.5 */
        0xc3,                                                 /* true */
        0xa2, 'A', 'B',                                       /* str "AB" */
        0xc4, 0x04, 0x00, 0xff, 0x10, 0x7f,                   /* bin 4 */
        0x02,                                                 /* enum */
    };
    assert_int_equal(all_kinds_encode(&sd, &m, buf, sizeof buf), sizeof want_all);
    assert_memory_equal(buf, want_all, sizeof want_all);
    mw_serdes_fini(&sd);

    /* Each form decodes whatever the flag says. */
    sd_setup(&sd, 0);
    test_msg_t out;
    assert_int_equal(decode(&sd, want_all, sizeof want_all, &out), sizeof want_all);
    assert_memory_equal(&out.all_kinds, &m, sizeof m);
    assert_int_equal(decode(&sd, want_arr, sizeof want_arr, &out), sizeof want_arr);
    assert_memory_equal(&out.ping, &pg, sizeof pg);
    assert_int_equal(decode(&sd, want_map, sizeof want_map, &out), sizeof want_map);
    assert_memory_equal(&out.ping, &pg, sizeof pg);
    mw_serdes_fini(&sd);
}

/* ---- crafted inputs --------------------------------------------------------
 * craft() packs an all_kinds message (values from make_case(5)) with
 * msgpack-c's own packer and one deliberate defect described by a craft_t. */
typedef void (*put_fn)(msgpack_packer *pk);

typedef struct craft {
    bool array;          /* array form instead of map form */
    int type_at;         /* map: position of "type" among the entries; -1 leaves it out */
    put_fn type_val;     /* map: packs the value of "type" (default: the name) */
    put_fn tag_val;      /* array: packs the tag (default: 1) */
    const char *replace; /* field whose value is packed by put instead */
    put_fn put;
    const char *drop;    /* field left out */
    const char *dup;     /* map: field given twice */
    put_fn extra_key;    /* map: one more entry, key packed by extra_key, value 0 */
    int extra_elems;     /* array: elements appended */
    bool reverse;        /* map: fields in reverse declaration order */
} craft_t;

typedef struct bytes { msgpack_sbuffer sb; msgpack_packer pk; } bytes_t;

static void bytes_init(bytes_t *b) {
    msgpack_sbuffer_init(&b->sb);
    msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
}

static void pack_cstr(msgpack_packer *pk, const char *s) {
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

/* The test's own encoding of one field value, independent of msgpack.c. */
static void pack_value(msgpack_packer *pk, const mw_field_t *f, const all_kinds_t *m) {
    if (mw__fkind_is_signed(f->kind)) {
        msgpack_pack_int64(pk, mw__field_get_i64(f, m));
    } else if (f->kind == MW_FK_BOOL) {
        if (m->flag) msgpack_pack_true(pk);
        else msgpack_pack_false(pk);
    } else if (mw__fkind_is_unsigned(f->kind)) {
        msgpack_pack_uint64(pk, mw__field_get_u64(f, m));
    } else if (f->kind == MW_FK_F64) {
        msgpack_pack_double(pk, m->f64);
    } else if (f->kind == MW_FK_CHARS) {
        pack_cstr(pk, m->sym);
    } else {
        msgpack_pack_bin(pk, f->size);
        msgpack_pack_bin_body(pk, m->raw, f->size);
    }
}

static void pack_field(msgpack_packer *pk, const craft_t *c, const mw_field_t *f,
                       const all_kinds_t *m) {
    if (!c->array) pack_cstr(pk, f->name);
    if (c->replace && strcmp(c->replace, f->name) == 0) c->put(pk);
    else pack_value(pk, f, m);
}

static void pack_type(msgpack_packer *pk, const craft_t *c) {
    pack_cstr(pk, "type");
    if (c->type_val) c->type_val(pk);
    else pack_cstr(pk, "all_kinds");
}

static size_t craft(const craft_t *c, uint8_t *out, size_t cap) {
    const mw_schema_t *s = all_kinds_schema();
    all_kinds_t m;
    make_case(&m, 5);
    bytes_t b;
    bytes_init(&b);
    unsigned nf = s->nfields - (c->drop != NULL);
    if (c->array) {
        msgpack_pack_array(&b.pk, 1 + nf + (unsigned)c->extra_elems);
        if (c->tag_val) c->tag_val(&b.pk);
        else msgpack_pack_uint64(&b.pk, 1);
    } else {
        msgpack_pack_map(&b.pk, nf + (c->type_at >= 0) + (c->dup != NULL) + (c->extra_key != NULL));
    }
    int pos = 0;
    for (unsigned k = 0; k < s->nfields; k++) {
        const mw_field_t *f = &s->fields[c->reverse ? s->nfields - 1 - k : k];
        if (!c->array && pos++ == c->type_at) pack_type(&b.pk, c);
        if (c->drop && strcmp(c->drop, f->name) == 0) continue;
        pack_field(&b.pk, c, f, &m);
        if (c->dup && strcmp(c->dup, f->name) == 0) pack_field(&b.pk, c, f, &m);
    }
    if (!c->array && c->type_at >= pos) pack_type(&b.pk, c);
    if (c->extra_key) {
        c->extra_key(&b.pk);
        msgpack_pack_uint64(&b.pk, 0);
    }
    for (int k = 0; k < c->extra_elems; k++) msgpack_pack_nil(&b.pk);
    assert_true(b.sb.size <= cap);
    memcpy(out, b.sb.data, b.sb.size);
    size_t n = b.sb.size;
    msgpack_sbuffer_destroy(&b.sb);
    return n;
}

/* Decodes a crafted input placed against a guard page. */
static ssize_t decode_craft(mw_serdes_t *sd, const craft_t *c) {
    uint8_t buf[512];
    size_t n = craft(c, buf, sizeof buf);
    mw_guard_t g;
    const uint8_t *in = mw_guard_copy(&g, buf, n);
    test_msg_t out;
    ssize_t r = decode(sd, in, n, &out);
    mw_guard_free(&g);
    if (r >= 0) assert_int_equal(r, n);
    return r;
}

static ssize_t decode_bytes(mw_serdes_t *sd, const void *p, size_t n) {
    mw_guard_t g;
    const uint8_t *in = mw_guard_copy(&g, p, n);
    test_msg_t out;
    ssize_t r = decode(sd, in, n, &out);
    mw_guard_free(&g);
    return r;
}

static void put_nil(msgpack_packer *pk) { msgpack_pack_nil(pk); }
static void put_true(msgpack_packer *pk) { msgpack_pack_true(pk); }
static void put_one(msgpack_packer *pk) { msgpack_pack_uint64(pk, 1); }
static void put_minus1(msgpack_packer *pk) { msgpack_pack_int64(pk, -1); }
static void put_3(msgpack_packer *pk) { msgpack_pack_uint64(pk, 3); }
static void put_99(msgpack_packer *pk) { msgpack_pack_uint64(pk, 99); }
static void put_0(msgpack_packer *pk) { msgpack_pack_uint64(pk, 0); }
static void put_70000(msgpack_packer *pk) { msgpack_pack_uint64(pk, 70000); }
static void put_128(msgpack_packer *pk) { msgpack_pack_int64(pk, 128); }
static void put_m129(msgpack_packer *pk) { msgpack_pack_int64(pk, -129); }
static void put_2p63(msgpack_packer *pk) { msgpack_pack_uint64(pk, (uint64_t)1 << 63); }
static void put_u64max(msgpack_packer *pk) { msgpack_pack_uint64(pk, UINT64_MAX); }
static void put_i64min(msgpack_packer *pk) { msgpack_pack_int64(pk, INT64_MIN); }
static void put_2p53(msgpack_packer *pk) { msgpack_pack_uint64(pk, (uint64_t)1 << 53); }
static void put_2p53p1(msgpack_packer *pk) { msgpack_pack_uint64(pk, ((uint64_t)1 << 53) + 1); }
static void put_m2p53(msgpack_packer *pk) { msgpack_pack_int64(pk, -((int64_t)1 << 53)); }
static void put_m2p53m1(msgpack_packer *pk) { msgpack_pack_int64(pk, -((int64_t)1 << 53) - 1); }
static void put_float32(msgpack_packer *pk) { msgpack_pack_float(pk, 0.25f); }
static void put_str_x(msgpack_packer *pk) { pack_cstr(pk, "x"); }
static void put_str_nope(msgpack_packer *pk) { pack_cstr(pk, "nope"); }
static void put_str_ping(msgpack_packer *pk) { pack_cstr(pk, "ping"); }
static void put_str_type(msgpack_packer *pk) { pack_cstr(pk, "type"); }
static void put_str_qty(msgpack_packer *pk) { pack_cstr(pk, "qty"); }
static void put_str9(msgpack_packer *pk) { pack_cstr(pk, "ABCDEFGHI"); }
static void put_str_ff(msgpack_packer *pk) { pack_cstr(pk, "a\xff"); }
static void put_str_nul(msgpack_packer *pk) { msgpack_pack_str(pk, 3); msgpack_pack_str_body(pk, "a\0b", 3); }
static void put_bin2(msgpack_packer *pk) { msgpack_pack_bin(pk, 2); msgpack_pack_bin_body(pk, "ab", 2); }
static void put_bin3(msgpack_packer *pk) { msgpack_pack_bin(pk, 3); msgpack_pack_bin_body(pk, "abc", 3); }
static void put_bin5(msgpack_packer *pk) { msgpack_pack_bin(pk, 5); msgpack_pack_bin_body(pk, "abcde", 5); }
static void put_arr1(msgpack_packer *pk) { msgpack_pack_array(pk, 1); msgpack_pack_uint64(pk, 1); }
static void put_map0(msgpack_packer *pk) { msgpack_pack_map(pk, 0); }
static void put_nested(msgpack_packer *pk) { /* [[1, 2], {"a": [nil]}] */
    msgpack_pack_array(pk, 2);
    msgpack_pack_array(pk, 2); msgpack_pack_uint64(pk, 1); msgpack_pack_uint64(pk, 2);
    msgpack_pack_map(pk, 1); pack_cstr(pk, "a"); msgpack_pack_array(pk, 1); msgpack_pack_nil(pk);
}
static void put_ext(msgpack_packer *pk) { msgpack_pack_ext(pk, 1, 1); msgpack_pack_ext_body(pk, "z", 1); }

static void test_msgpack_decode_accepts_lenient_forms(void **state) {
    (void)state;
    mw_serdes_t sd;
    sd_setup(&sd, 0);
    assert_true(decode_craft(&sd, &(craft_t){.type_at = 0}) > 0);
    assert_true(decode_craft(&sd, &(craft_t){.type_at = 5}) > 0);
    assert_true(decode_craft(&sd, &(craft_t){.type_at = 99}) > 0); /* last */
    assert_true(decode_craft(&sd, &(craft_t){.type_at = 0, .reverse = true}) > 0);
    assert_true(decode_craft(&sd, &(craft_t){.type_at = 3, .type_val = put_one}) > 0); /* a tag */
    assert_true(decode_craft(&sd, &(craft_t){.array = true}) > 0);
    /* F64 from float32 and from integers up to 2^53 exactly. */
    assert_true(decode_craft(&sd, &(craft_t){.replace = "f64", .put = put_float32}) > 0);
    assert_true(decode_craft(&sd, &(craft_t){.replace = "f64", .put = put_2p53}) > 0);
    assert_true(decode_craft(&sd, &(craft_t){.replace = "f64", .put = put_m2p53}) > 0);
    /* Integers in the widest ranges. */
    assert_true(decode_craft(&sd, &(craft_t){.replace = "u64", .put = put_u64max}) > 0);
    assert_true(decode_craft(&sd, &(craft_t){.replace = "i64", .put = put_i64min}) > 0);

    /* The values arrive where they belong. */
    uint8_t buf[256];
    size_t n = craft(&(craft_t){.type_at = 99, .reverse = true, .replace = "f64", .put = put_m2p53},
                     buf, sizeof buf);
    test_msg_t out;
    assert_int_equal(decode(&sd, buf, n, &out), n);
    all_kinds_t m;
    make_case(&m, 5);
    m.f64 = -9007199254740992.0;
    assert_memory_equal(&out.all_kinds, &m, sizeof m);
    n = craft(&(craft_t){.array = true, .replace = "f64", .put = put_float32}, buf, sizeof buf);
    assert_int_equal(decode(&sd, buf, n, &out), n);
    assert_true(out.all_kinds.f64 == 0.25);
    mw_serdes_fini(&sd);
}

static void test_msgpack_decode_returns_each_error_code(void **state) {
    (void)state;
    mw_serdes_t sd;
    sd_setup(&sd, 0);
    uint8_t buf[256];

    /* Framing of the object itself. */
    assert_int_equal(decode_bytes(&sd, "", 0), MW_ETRUNC);
    assert_int_equal(decode_bytes(&sd, "\x93\x02\x01", 3), MW_ETRUNC);
    assert_int_equal(decode_bytes(&sd, "\xdd\xff\xff\xff\xff", 5), MW_ETRUNC);
    assert_int_equal(decode_bytes(&sd, "\xdf\xff\xff\xff\xff", 5), MW_ETRUNC);
    assert_int_equal(decode_bytes(&sd, "\x92\xdb\xff\xff\xff\xff", 6), MW_ETRUNC);
    assert_int_equal(decode_bytes(&sd, "\x93\x02\x01\x02\xc0", 5), MW_ETRAILING);
    assert_int_equal(decode_bytes(&sd, "\x01", 1), MW_EPROTO);           /* not a container */
    assert_int_equal(decode_bytes(&sd, "\xa1x", 2), MW_EPROTO);
    assert_int_equal(decode_bytes(&sd, "\x93\x02\xc1\x02", 4), MW_EPROTO); /* reserved byte */
    uint8_t deep[40];
    memset(deep, 0x91, sizeof deep);
    deep[sizeof deep - 1] = 0x01;
    assert_int_equal(decode_bytes(&sd, deep, sizeof deep), MW_EPROTO);
    /* 32 levels, then an empty container: msgpack-c would refuse it as out
     * of memory; the pre-check says malformed (found by fuzz_serdes_msgpack). */
    for (uint8_t empty = 0x80; empty <= 0x90; empty += 0x10) {
        memset(deep, 0x91, 32);
        deep[32] = empty;
        assert_int_equal(decode_bytes(&sd, deep, 33), MW_EPROTO);
        assert_int_equal(decode_bytes(&sd, deep + 1, 32), MW_ETYPE); /* 31 levels + empty: a tag of the wrong type */
    }
    assert_int_equal(decode_craft(&sd, &(craft_t){.extra_key = put_one}), MW_EPROTO); /* int key */
    size_t n = craft(&(craft_t){0}, buf, sizeof buf);
    buf[n] = 0xc0;
    assert_int_equal(decode_bytes(&sd, buf, n + 1), MW_ETRAILING);

    /* The type. */
    assert_int_equal(decode_craft(&sd, &(craft_t){.type_at = -1}), MW_EMISSING);
    assert_int_equal(decode_craft(&sd, &(craft_t){.type_val = put_str_nope}), MW_ETAG);
    assert_int_equal(decode_craft(&sd, &(craft_t){.type_val = put_99}), MW_ETAG);
    assert_int_equal(decode_craft(&sd, &(craft_t){.type_val = put_0}), MW_ETAG);
    assert_int_equal(decode_craft(&sd, &(craft_t){.type_val = put_nil}), MW_ETYPE);
    assert_int_equal(decode_craft(&sd, &(craft_t){.type_val = put_minus1}), MW_ETYPE);
    assert_int_equal(decode_craft(&sd, &(craft_t){.type_val = put_str_ping}), MW_EFIELD);
    assert_int_equal(decode_craft(&sd, &(craft_t){.array = true, .tag_val = put_99}), MW_ETAG);
    assert_int_equal(decode_craft(&sd, &(craft_t){.array = true, .tag_val = put_70000}), MW_ETAG);
    assert_int_equal(decode_craft(&sd, &(craft_t){.array = true, .tag_val = put_str_x}), MW_ETYPE);
    assert_int_equal(decode_bytes(&sd, "\x90", 1), MW_EMISSING);

    /* Keys and element counts. */
    assert_int_equal(decode_craft(&sd, &(craft_t){.extra_key = put_str_qty}), MW_EFIELD);
    assert_string_equal(mw_serdes_last_error(&sd), "msgpack: unknown field \"qty\"");
    assert_int_equal(decode_craft(&sd, &(craft_t){.dup = "u16"}), MW_EFIELD);
    assert_int_equal(decode_craft(&sd, &(craft_t){.extra_key = put_str_type}), MW_EFIELD);
    assert_int_equal(decode_craft(&sd, &(craft_t){.drop = "side"}), MW_EMISSING);
    assert_err_names(&sd, "side");
    assert_int_equal(decode_craft(&sd, &(craft_t){.drop = "i8", .reverse = true}), MW_EMISSING);
    assert_err_names(&sd, "i8");
    assert_int_equal(decode_craft(&sd, &(craft_t){.array = true, .drop = "side"}), MW_EMISSING);
    assert_err_names(&sd, "side");
    assert_int_equal(decode_craft(&sd, &(craft_t){.array = true, .extra_elems = 1}), MW_EFIELD);

    /* Values, in both forms. */
    for (int a = 0; a < 2; a++) {
        struct { const char *f; put_fn put; int code; } cases[] = {
            {"u16", put_70000, MW_ERANGE},  {"i8", put_128, MW_ERANGE},
            {"i8", put_m129, MW_ERANGE},    {"u8", put_minus1, MW_ERANGE},
            {"i64", put_2p63, MW_ERANGE},   {"u32", put_u64max, MW_ERANGE},
            {"side", put_3, MW_ERANGE},     {"side", put_minus1, MW_ERANGE},
            {"f64", put_2p53p1, MW_ERANGE}, {"f64", put_m2p53m1, MW_ERANGE},
            {"i32", put_str_x, MW_ETYPE},   {"u64", put_float32, MW_ETYPE},
            {"flag", put_one, MW_ETYPE},    {"flag", put_nil, MW_ETYPE},
            {"side", put_true, MW_ETYPE},   {"f64", put_str_x, MW_ETYPE},
            {"f64", put_true, MW_ETYPE},    {"sym", put_bin2, MW_ETYPE},
            {"raw", put_str_x, MW_ETYPE},   {"raw", put_bin3, MW_ETYPE},
            {"raw", put_arr1, MW_ETYPE},    {"i16", put_map0, MW_ETYPE},
            {"i8", put_nested, MW_ETYPE},   {"side", put_nested, MW_ETYPE},
            {"u8", put_ext, MW_ETYPE},      {"sym", put_str9, MW_ETOOBIG},
            {"raw", put_bin5, MW_ETOOBIG},  {"sym", put_str_ff, MW_EUTF8},
            {"sym", put_str_nul, MW_EPROTO},
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            ssize_t r = decode_craft(&sd, &(craft_t){.array = a, .replace = cases[i].f, .put = cases[i].put});
            if (r != cases[i].code)
                fail_msg("%s field %s case %zu: got %s, want %s", a ? "array" : "map", cases[i].f, i,
                         mw_errname((int)r), mw_errname(cases[i].code));
            assert_err_names(&sd, cases[i].f);
        }
    }
    assert_int_equal(decode_craft(&sd, &(craft_t){.replace = "u16", .put = put_70000}), MW_ERANGE);
    assert_string_equal(mw_serdes_last_error(&sd),
                        "msgpack: field \"u16\": 70000 is out of range for u16");

    /* The struct must fit. */
    n = craft(&(craft_t){0}, buf, sizeof buf);
    test_msg_t out;
    const mw_schema_t *s = NULL;
    assert_int_equal(mw_serdes_decode(&sd, buf, n, &test_protocol, &s, &out, sizeof(all_kinds_t) - 1),
                     MW_ETOOBIG);
    assert_int_equal(mw_serdes_decode(&sd, buf, n, &test_protocol, &s, &out, sizeof(all_kinds_t)), n);
    mw_serdes_fini(&sd);
}

static void test_msgpack_encode_rejects_values_the_wire_cannot_carry(void **state) {
    (void)state;
    mw_serdes_t sd;
    sd_setup(&sd, 0);
    uint8_t buf[256];
    all_kinds_t m;
    uint8_t two = 2;

    make_case(&m, 5);
    memcpy(&m.flag, &two, 1);
    assert_int_equal(all_kinds_encode(&sd, &m, buf, sizeof buf), MW_ERANGE);
    assert_err_names(&sd, "flag");
    make_case(&m, 5);
    m.side = 3;
    assert_int_equal(all_kinds_encode(&sd, &m, buf, sizeof buf), MW_ERANGE);
    assert_err_names(&sd, "side");
    make_case(&m, 5);
    memcpy(m.sym, "\xe2\x82", 3);
    assert_int_equal(all_kinds_encode(&sd, &m, buf, sizeof buf), MW_EUTF8);
    assert_err_names(&sd, "sym");
    /* Text stops at the first NUL. */
    make_case(&m, 5);
    memcpy(m.sym, "AB\0garb", 8);
    ssize_t n = all_kinds_encode(&sd, &m, buf, sizeof buf);
    assert_true(n > 0);
    test_msg_t out;
    assert_int_equal(decode(&sd, buf, (size_t)n, &out), n);
    assert_memory_equal(out.all_kinds.sym, "AB\0\0\0\0\0\0", 8);
    mw_serdes_fini(&sd);
}

static void test_msgpack_encode_too_big_for_every_short_cap(void **state) {
    (void)state;
    static const uint8_t zeros[256];
    for (unsigned flags = 0; flags <= MW_SERDES_MSGPACK_ARRAY; flags++) {
        mw_serdes_t sd;
        sd_setup(&sd, flags);
        all_kinds_t m;
        make_case(&m, 1);
        uint8_t buf[256];
        ssize_t need = all_kinds_encode(&sd, &m, buf, sizeof buf);
        assert_true(need > 0);
        for (size_t cap = 0; cap < (size_t)need; cap++) {
            mw_guard_t g;
            uint8_t *out = mw_guard_copy(&g, zeros, cap); /* a write past cap crashes */
            assert_int_equal(all_kinds_encode(&sd, &m, out, cap), MW_ETOOBIG);
            mw_guard_free(&g);
        }
        mw_guard_t g;
        uint8_t *out = mw_guard_copy(&g, zeros, (size_t)need);
        assert_int_equal(all_kinds_encode(&sd, &m, out, (size_t)need), need);
        assert_memory_equal(out, buf, (size_t)need);
        mw_guard_free(&g);
        mw_serdes_fini(&sd);
    }
}

static void test_msgpack_decode_fails_at_every_prefix_against_guard_page(void **state) {
    (void)state;
    for (unsigned flags = 0; flags <= MW_SERDES_MSGPACK_ARRAY; flags++) {
        mw_serdes_t sd;
        sd_setup(&sd, flags);
        for (int v = 0; v < NCASES; v++) {
            all_kinds_t m;
            make_case(&m, v);
            uint8_t buf[256];
            ssize_t n = all_kinds_encode(&sd, &m, buf, sizeof buf);
            assert_true(n > 0);
            for (size_t k = 0; k <= (size_t)n; k++) {
                ssize_t r = decode_bytes(&sd, buf, k);
                if (k < (size_t)n) assert_int_equal(r, MW_ETRUNC);
                else assert_int_equal(r, n);
            }
        }
        mw_serdes_fini(&sd);
    }
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Mutates valid encodings of both forms; decode must return len or an error
 * and never crash or read past the end. Whatever decodes must encode again
 * and decode to the same struct. */
static void test_msgpack_fuzz_mutated_encodings(void **state) {
    (void)state;
    mw_serdes_t enc[2], sd;
    sd_setup(&enc[0], 0);
    sd_setup(&enc[1], MW_SERDES_MSGPACK_ARRAY);
    sd_setup(&sd, 0);
    uint64_t rng = 0x2545f4914f6cdd1dull;
    unsigned ok = 0, bad = 0;
    for (int it = 0; it < 20000; it++) {
        uint8_t buf[256];
        mw_serdes_t *e = &enc[rng_next(&rng) & 1];
        int pick = (int)(rng_next(&rng) % (NCASES + 2));
        ssize_t n;
        if (pick < NCASES) {
            all_kinds_t m;
            make_case(&m, pick);
            n = all_kinds_encode(e, &m, buf, sizeof buf);
        } else if (pick == NCASES) {
            ping_t pg = {rng_next(&rng) >> (rng_next(&rng) % 64), rng_next(&rng) % 1000};
            n = ping_encode(e, &pg, buf, sizeof buf);
        } else {
            heartbeat_t hb = {false};
            n = heartbeat_encode(e, &hb, buf, sizeof buf);
        }
        assert_true(n > 0);
        size_t len = (size_t)n;
        int muts = 1 + (int)(rng_next(&rng) % 3);
        for (int k = 0; k < muts; k++) {
            uint64_t r = rng_next(&rng);
            size_t at = len ? (size_t)(r >> 8) % len : 0;
            switch (r % 6) {
            case 0: if (len) buf[at] ^= (uint8_t)(1u << ((r >> 40) % 8)); break;
            case 1: if (len) buf[at] = (uint8_t)(r >> 48); break;
            case 2: len = (size_t)(r >> 16) % (len + 1); break;
            case 3: if (len < sizeof buf) buf[len++] = (uint8_t)(r >> 32); break;
            case 4: /* delete a byte */
                if (len) { memmove(buf + at, buf + at + 1, len - at - 1); len--; }
                break;
            default: /* insert a byte */
                if (len < sizeof buf) {
                    memmove(buf + at + 1, buf + at, len - at);
                    buf[at] = (uint8_t)(r >> 32);
                    len++;
                }
                break;
            }
        }
        mw_guard_t g;
        const uint8_t *in = mw_guard_copy(&g, buf, len);
        test_msg_t out, again;
        const mw_schema_t *s = NULL, *s2 = NULL;
        ssize_t r = mw_serdes_decode(&sd, in, len, &test_protocol, &s, &out, sizeof out);
        if (r >= 0) {
            assert_int_equal(r, len);
            uint8_t re[256];
            ssize_t m = mw_serdes_encode(&sd, s, &out, re, sizeof re);
            assert_true(m > 0);
            assert_int_equal(mw_serdes_decode(&sd, re, (size_t)m, &test_protocol, &s2, &again, sizeof again), m);
            assert_int_equal(s2->tag, s->tag);
            assert_memory_equal(&again, &out, s->size);
            ok++;
        } else {
            assert_true(r > MW__ELAST);
            bad++;
        }
        mw_guard_free(&g);
    }
    assert_true(ok > 100);
    assert_true(bad > 100);
    mw_serdes_fini(&sd);
    mw_serdes_fini(&enc[0]);
    mw_serdes_fini(&enc[1]);
}

/* msgpack_unpack reserves zone space for a container's declared count before
 * reading its elements; a lying count must not reach it. */
static void test_msgpack_huge_declared_counts_allocate_nothing(void **state) {
    (void)state;
    assert_true(mw_alloc_counting_works());
    mw_serdes_t sd;
    sd_setup(&sd, 0);
    static const uint8_t inputs[][8] = {
        {0xdd, 0xff, 0xff, 0xff, 0xff},             /* array of 2^32-1, nothing after */
        {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'x'},  /* map of 2^32-1, one key */
        {0x92, 0x01, 0xdd, 0x00, 0x10, 0x00, 0x00}, /* nested array of 2^20 */
        {0xc6, 0xff, 0xff, 0xff, 0xff, 0x00},       /* bin of 4 GiB */
    };
    static const size_t lens[] = {5, 7, 7, 6};
    uint64_t before = mw_alloc_count();
    for (size_t i = 0; i < 4; i++) assert_int_equal(decode_bytes(&sd, inputs[i], lens[i]), MW_ETRUNC);
    /* mw_guard_copy uses mmap, not malloc. */
    assert_int_equal(mw_alloc_count() - before, 0);
    mw_serdes_fini(&sd);
}

static void test_msgpack_steady_state_allocates_nothing(void **state) {
    (void)state;
    assert_true(mw_alloc_counting_works());
    for (unsigned flags = 0; flags <= MW_SERDES_MSGPACK_ARRAY; flags++) {
        mw_serdes_t sd;
        sd_setup(&sd, flags);
        all_kinds_t m;
        make_case(&m, 5);
        uint8_t buf[256];
        test_msg_t out;
        ssize_t n = 0;
        for (int i = 0; i < 10; i++) {
            n = all_kinds_encode(&sd, &m, buf, sizeof buf);
            assert_true(n > 0);
            assert_int_equal(decode(&sd, buf, (size_t)n, &out), n);
        }
        int failures = 0;
        uint64_t before = mw_alloc_count();
        for (int i = 0; i < 1000; i++) {
            m.u64 = (uint64_t)i * 0x10001u;
            n = all_kinds_encode(&sd, &m, buf, sizeof buf);
            failures += n <= 0;
            failures += decode(&sd, buf, (size_t)n, &out) != n;
            failures += out.all_kinds.u64 != m.u64;
        }
        /* Errors format text into sd->err and must not allocate either. */
        for (int i = 0; i < 100; i++) failures += decode(&sd, buf, (size_t)n - 1, &out) != MW_ETRUNC;
        uint64_t after = mw_alloc_count();
        assert_int_equal(failures, 0);
        assert_int_equal(after - before, 0);
        mw_serdes_fini(&sd);
    }
}

static void test_msgpack_decode_without_init_is_an_error(void **state) {
    (void)state;
    mw_serdes_t sd;
    memset(&sd, 0, sizeof sd);
    sd.ops = &mw__serdes_msgpack_ops;
    test_msg_t out;
    assert_int_equal(decode(&sd, (const uint8_t *)"\x93\x02\x01\x02", 4, &out), MW_EINVAL);
    mw_serdes_fini(&sd);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msgpack_round_trips_edge_values_in_both_forms),
        cmocka_unit_test(test_msgpack_encodes_golden_bytes),
        cmocka_unit_test(test_msgpack_decode_accepts_lenient_forms),
        cmocka_unit_test(test_msgpack_decode_returns_each_error_code),
        cmocka_unit_test(test_msgpack_encode_rejects_values_the_wire_cannot_carry),
        cmocka_unit_test(test_msgpack_encode_too_big_for_every_short_cap),
        cmocka_unit_test(test_msgpack_decode_fails_at_every_prefix_against_guard_page),
        cmocka_unit_test(test_msgpack_fuzz_mutated_encodings),
        cmocka_unit_test(test_msgpack_huge_declared_counts_allocate_nothing),
        cmocka_unit_test(test_msgpack_steady_state_allocates_nothing),
        cmocka_unit_test(test_msgpack_decode_without_init_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
