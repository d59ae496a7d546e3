/* test_conn_tx.c - the message connection's send path: the inline path for
 * plain fixed-size messages (mw__conn_enqueue_fast_nl, drv_impl.h) writes
 * exactly what the fixed serdes and the u32 framing write, at every body
 * size around its copy's boundaries, and steps aside (to the full path,
 * every check included) wherever the result could differ: another serdes,
 * a hook, a failed side, a full queue, a body over its limit, a schema
 * that is not plain. Over an in-process pair stream: no sockets. */
#include <stdlib.h>
#include <string.h>

#include "buf_impl.h"
#include "drv_impl.h"
#include "mw_test.h"
#include "test_proto.h"
#include "conn_impl.h"
#include "stream_impl.h"

/* Plain messages (a tag and one BYTES field) whose bodies sit on each side
 * of mw__conn_copy's boundaries (4, 8, 16, 32, 64 bytes and the
 * MW__CONN_FAST_BODY limit). */
#define SZ(M)                                                                                                \
    M(1) M(2) M(3) M(4) M(5) M(7) M(8) M(9) M(15) M(16) M(17) M(31) M(32) M(33) M(48) M(63) M(64) M(65)    \
    M(80) M(127) M(200) M(255) M(256) M(257) M(300)
#define FIELDS_1(F) F(BYTES, b, 1)
#define FIELDS_2(F) F(BYTES, b, 2)
#define FIELDS_3(F) F(BYTES, b, 3)
#define FIELDS_4(F) F(BYTES, b, 4)
#define FIELDS_5(F) F(BYTES, b, 5)
#define FIELDS_7(F) F(BYTES, b, 7)
#define FIELDS_8(F) F(BYTES, b, 8)
#define FIELDS_9(F) F(BYTES, b, 9)
#define FIELDS_15(F) F(BYTES, b, 15)
#define FIELDS_16(F) F(BYTES, b, 16)
#define FIELDS_17(F) F(BYTES, b, 17)
#define FIELDS_31(F) F(BYTES, b, 31)
#define FIELDS_32(F) F(BYTES, b, 32)
#define FIELDS_33(F) F(BYTES, b, 33)
#define FIELDS_48(F) F(BYTES, b, 48)
#define FIELDS_63(F) F(BYTES, b, 63)
#define FIELDS_64(F) F(BYTES, b, 64)
#define FIELDS_65(F) F(BYTES, b, 65)
#define FIELDS_80(F) F(BYTES, b, 80)
#define FIELDS_127(F) F(BYTES, b, 127)
#define FIELDS_200(F) F(BYTES, b, 200)
#define FIELDS_255(F) F(BYTES, b, 255)
#define FIELDS_256(F) F(BYTES, b, 256)
#define FIELDS_257(F) F(BYTES, b, 257)
#define FIELDS_300(F) F(BYTES, b, 300)
#define MSG(n) MW_MESSAGE(body_##n, 100 + n, FIELDS_##n)
SZ(MSG)
#define PROTO_MSGS(M) M(body_1) M(body_2) M(body_3) M(body_4) M(body_5) M(body_7) M(body_8) M(body_9)          \
    M(body_15) M(body_16) M(body_17) M(body_31) M(body_32) M(body_33) M(body_48) M(body_63) M(body_64)        \
    M(body_65) M(body_80) M(body_127) M(body_200) M(body_255) M(body_256) M(body_257) M(body_300) M(all_kinds)
MW_PROTOCOL(sizes, PROTO_MSGS)

#define SCHEMA_OF(n) body_##n##_schema(),
static const mw_schema_t *bodies(size_t i) {
    const mw_schema_t *all[] = {SZ(SCHEMA_OF) NULL};
    return all[i];
}

typedef struct fx {
    mw__conn_t a, b; /* a sends to b */
    mw_serdes_t ref; /* the fixed serdes on its own: the expected bytes */
} fx_t;

static void open_fx(fx_t *f, const char *serdes) {
    mw_stream_t *sa, *sb;
    assert_int_equal(mw__pair_new(&sa, &sb, 1 << 20, 1 << 20), 0);
    mw_conn_opts_t co;
    mw__conn_opts_init(&co);
    co.serdes = serdes;
    co.max_msg = 1024;
    co.rx_buf = co.tx_buf = 64 * 1024;
    mw_err_t err;
    assert_int_equal(mw__conn_init(&f->a, sa, &sizes_protocol, &co, &err), 0);
    assert_int_equal(mw__conn_init(&f->b, sb, &sizes_protocol, &co, &err), 0);
    assert_int_equal(mw_serdes_init(&f->ref, "fixed", 0), 0);
}

static void close_fx(fx_t *f) {
    mw__conn_fini(&f->a);
    mw__conn_fini(&f->b);
    mw_serdes_fini(&f->ref);
}

static void fill(void *m, size_t n, unsigned seed) {
    uint8_t *p = m;
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(seed * 31u + i * 7u + 1u);
}

/* The frame the full path writes: u32 big-endian length, then the encoding. */
static size_t expected(fx_t *f, const mw_schema_t *s, const void *msg, uint8_t *out, size_t cap) {
    ssize_t n = mw_serdes_encode(&f->ref, s, msg, out + 4, cap - 4);
    assert_true(n > 0);
    out[0] = (uint8_t)(n >> 24), out[1] = (uint8_t)(n >> 16), out[2] = (uint8_t)(n >> 8), out[3] = (uint8_t)n;
    return (size_t)n + 4;
}

/* Queues msg on a and checks the bytes it added to the tx buffer. */
static void enqueue_and_check(fx_t *f, const mw_schema_t *s, const void *msg) {
    size_t before = mw__buf_len(&f->a.tx.buf);
    uint64_t msgs = f->a.tx.msgs, bytes = f->a.tx.bytes;
    assert_int_equal(mw__conn_enqueue(&f->a, s, msg), 0);
    uint8_t want[2048];
    size_t n = expected(f, s, msg, want, sizeof want);
    assert_int_equal(mw__buf_len(&f->a.tx.buf) - before, n);
    assert_memory_equal(mw__buf_data(&f->a.tx.buf) + before, want, n);
    assert_int_equal(f->a.tx.msgs, msgs + 1);
    assert_int_equal(f->a.tx.bytes, bytes + n);
}

/* Flushes a, receives on b and checks the message came back whole. */
static void deliver_and_check(fx_t *f, const mw_schema_t *s, const void *msg) {
    assert_int_equal(mw__conn_flush(&f->a), 0);
    sizes_msg_t got;
    const mw_schema_t *gs = NULL;
    assert_int_equal(mw__conn_recv(&f->b, &gs, &got, sizeof got), 0);
    assert_int_equal(gs->tag, s->tag);
    assert_memory_equal(&got, msg, s->size);
}

static void test_conn_tx_copy_matches_memcpy_at_every_size(void **state) {
    (void)state;
    uint8_t src[MW__CONN_FAST_BODY], dst[MW__CONN_FAST_BODY + 32], want[sizeof dst];
    fill(src, sizeof src, 3);
    for (size_t n = 0; n <= MW__CONN_FAST_BODY; n++) {
        mw_guard_t g; /* the source ends at a PROT_NONE page: an over-read crashes */
        const uint8_t *s = mw_guard_copy(&g, src, n ? n : 1);
        memset(dst, 0xA5, sizeof dst);
        memcpy(want, dst, sizeof dst);
        memcpy(want + 16, s, n);
        mw__conn_copy(dst + 16, s, n);
        assert_memory_equal(dst, want, sizeof dst); /* the bytes, and nothing either side */
        mw_guard_free(&g);
    }
}

static void test_conn_tx_inline_path_writes_what_the_serdes_writes_at_every_size(void **state) {
    (void)state;
    fx_t f;
    open_fx(&f, "fixed");
    assert_int_equal(f.a.tx.fast_max, MW__CONN_FAST_BODY + 2); /* fixed + u32 on a byte stream */
    sizes_msg_t m;
    for (int round = 0; round < 2; round++) { /* the first takes the buffer (full path), the rest inline */
        for (size_t i = 0; bodies(i); i++) {
            const mw_schema_t *s = bodies(i);
            assert_true(s->flags & MW_SCHEMA_PLAIN);
            fill(&m, s->size, (unsigned)(i + 10 * round));
            enqueue_and_check(&f, s, &m);
            deliver_and_check(&f, s, &m);
        }
    }
    /* many queued back to back, flushed at once */
    for (size_t i = 0; bodies(i); i++) {
        fill(&m, bodies(i)->size, (unsigned)i);
        enqueue_and_check(&f, bodies(i), &m);
    }
    for (size_t i = 0; bodies(i); i++) {
        fill(&m, bodies(i)->size, (unsigned)i);
        deliver_and_check(&f, bodies(i), &m);
    }
    /* a schema that is not plain takes the full path, checks included */
    all_kinds_t k;
    memset(&k, 0, sizeof k);
    k.i64 = -5;
    strcpy(k.sym, "AB");
    k.side = 2;
    enqueue_and_check(&f, all_kinds_schema(), &k);
    deliver_and_check(&f, all_kinds_schema(), &k);
    const uint8_t two = 2; /* not a bool (stored as a byte: k.flag = 2 would store 1) */
    memcpy(&k.flag, &two, 1);
    assert_int_equal(mw__conn_enqueue(&f.a, all_kinds_schema(), &k), MW_ERANGE);
    close_fx(&f);
}

static int hooked;
static void count_hook(void *ud, const mw_schema_t *s, const void *msg) {
    (void)ud, (void)s, (void)msg;
    hooked++;
}

static void test_conn_tx_inline_path_steps_aside_where_it_would_differ(void **state) {
    (void)state;
    fx_t f;
    body_64_t m;
    fill(&m, sizeof m, 1);

    open_fx(&f, "text"); /* another serdes: never inline */
    assert_int_equal(f.a.tx.fast_max, 0);
    assert_int_equal(mw__conn_enqueue_fast_nl(&f.a, body_64_schema(), &m), 1);
    close_fx(&f);

    open_fx(&f, "fixed");
    assert_int_equal(mw__conn_enqueue(&f.a, body_64_schema(), &m), 0); /* takes the buffer */
    assert_int_equal(mw__conn_enqueue_fast_nl(&f.a, body_64_schema(), &m), 0);
    /* a hook sees every message: the full path calls it */
    hooked = 0;
    f.a.tx.hook = count_hook;
    assert_int_equal(mw__conn_enqueue_fast_nl(&f.a, body_64_schema(), &m), 1);
    assert_int_equal(mw__conn_enqueue(&f.a, body_64_schema(), &m), 0);
    assert_int_equal(hooked, 1);
    f.a.tx.hook = NULL;
    /* over the inline limit: the full path */
    body_257_t big;
    fill(&big, sizeof big, 2);
    assert_int_equal(mw__conn_enqueue_fast_nl(&f.a, body_257_schema(), &big), 1);
    enqueue_and_check(&f, body_257_schema(), &big);
    /* a full queue: MW_EAGAIN from the full path, nothing half written */
    int r;
    size_t guard = 0;
    while ((r = mw__conn_enqueue(&f.a, body_64_schema(), &m)) == 0 && guard++ < 10000) {}
    assert_int_equal(r, MW_EAGAIN);
    size_t len = mw__buf_len(&f.a.tx.buf);
    assert_int_equal(mw__conn_enqueue_fast_nl(&f.a, body_64_schema(), &m), 1);
    assert_int_equal(mw__buf_len(&f.a.tx.buf), len);
    /* a switch to text: the next message is text, not inline */
    assert_int_equal(mw__conn_flush(&f.a), 0);
    assert_int_equal(mw__conn_set_serdes(&f.a, MW_DIR_TX, "text", MW_FRAME_AUTO), 0);
    assert_int_equal(f.a.tx.fast_max, 0);
    assert_int_equal(mw__conn_set_serdes(&f.a, MW_DIR_TX, "fixed", MW_FRAME_AUTO), 0);
    assert_int_equal(f.a.tx.fast_max, MW__CONN_FAST_BODY + 2);
    /* a failed side says so, inline or not */
    f.a.tx.failed = MW_ECLOSED;
    assert_int_equal(mw__conn_enqueue_fast_nl(&f.a, body_64_schema(), &m), 1);
    assert_int_equal(mw__conn_enqueue(&f.a, body_64_schema(), &m), MW_ECLOSED);
    close_fx(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conn_tx_copy_matches_memcpy_at_every_size),
        cmocka_unit_test(test_conn_tx_inline_path_writes_what_the_serdes_writes_at_every_size),
        cmocka_unit_test(test_conn_tx_inline_path_steps_aside_where_it_would_differ),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
