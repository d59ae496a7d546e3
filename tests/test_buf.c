/* test_buf.c - the fixed-capacity buffer: reserve -> commit -> consume,
 * compaction, refusal without damage, and caller-owned memory. */
#include "mw_test.h"
#include "buf_impl.h"
#include "mw_err.h"

#include <string.h>

static void put(mw__buf_t *b, const char *s) {
    size_t n = strlen(s);
    uint8_t *w = mw__buf_reserve(b, n);
    assert_non_null(w);
    memcpy(w, s, n);
    mw__buf_commit(b, n);
}

static void assert_contents(const mw__buf_t *b, const char *s) {
    size_t n = strlen(s);
    assert_int_equal(mw__buf_len(b), n);
    if (n) assert_memory_equal(mw__buf_data(b), s, n);
}

static void test_buf_init_allocates_and_fini_is_idempotent(void **state) {
    (void)state;
    mw__buf_t b;
    assert_int_equal(mw__buf_init(&b, 64), 0);
    assert_non_null(b.base);
    assert_int_equal(b.cap, 64);
    assert_int_equal(mw__buf_len(&b), 0);
    assert_int_equal(mw__buf_space(&b), 64);
    assert_int_equal(mw__buf_tailroom(&b), 64);
    mw__buf_fini(&b);
    assert_null(b.base);
    assert_int_equal(b.cap, 0);
    mw__buf_fini(&b);
    assert_null(b.base);

    assert_int_equal(mw__buf_init(&b, 0), MW_EINVAL);
    assert_null(b.base);
    mw__buf_fini(&b);
}

static void test_buf_reserve_commit_consume(void **state) {
    (void)state;
    mw__buf_t b;
    assert_int_equal(mw__buf_init(&b, 16), 0);
    uint8_t *w = mw__buf_reserve(&b, 5);
    assert_ptr_equal(w, b.base);
    memcpy(w, "hello", 5);
    /* Reserved but not committed: not readable yet. */
    assert_int_equal(mw__buf_len(&b), 0);
    mw__buf_commit(&b, 5);
    assert_contents(&b, "hello");
    assert_ptr_equal(mw__buf_tail(&b), b.base + 5);
    assert_int_equal(mw__buf_tailroom(&b), 11);

    /* Committing less than reserved keeps only what was committed. */
    w = mw__buf_reserve(&b, 8);
    assert_ptr_equal(w, b.base + 5);
    memcpy(w, "worldXYZ", 8);
    mw__buf_commit(&b, 5);
    assert_contents(&b, "helloworld");

    mw__buf_consume(&b, 3);
    assert_contents(&b, "loworld");
    assert_int_equal(b.rd, 3);
    assert_int_equal(mw__buf_space(&b), 9);
    assert_int_equal(mw__buf_tailroom(&b), 6);
    mw__buf_fini(&b);
}

static void test_buf_reset_to_zero_when_fully_consumed(void **state) {
    (void)state;
    mw__buf_t b;
    assert_int_equal(mw__buf_init(&b, 8), 0);
    put(&b, "abcdef");
    mw__buf_consume(&b, 4);
    assert_int_equal(b.rd, 4);
    mw__buf_consume(&b, 2);
    assert_int_equal(b.rd, 0);
    assert_int_equal(b.wr, 0);
    assert_int_equal(mw__buf_tailroom(&b), 8);
    /* The whole capacity is contiguous again without a compaction. */
    assert_ptr_equal(mw__buf_reserve(&b, 8), b.base);

    put(&b, "xy");
    mw__buf_reset(&b);
    assert_int_equal(mw__buf_len(&b), 0);
    assert_int_equal(b.rd, 0);
    assert_int_equal(b.wr, 0);
    mw__buf_fini(&b);
}

static void test_buf_reserve_compacts_and_keeps_bytes(void **state) {
    (void)state;
    mw__buf_t b;
    assert_int_equal(mw__buf_init(&b, 10), 0);
    put(&b, "0123456789");
    mw__buf_consume(&b, 6);
    assert_contents(&b, "6789");
    assert_int_equal(mw__buf_tailroom(&b), 0);
    /* 6 free in total, 0 at the tail: reserve must move "6789" to the front. */
    uint8_t *w = mw__buf_reserve(&b, 6);
    assert_non_null(w);
    assert_int_equal(b.rd, 0);
    assert_ptr_equal(w, b.base + 4);
    assert_contents(&b, "6789");
    memcpy(w, "abcdef", 6);
    mw__buf_commit(&b, 6);
    assert_contents(&b, "6789abcdef");
    mw__buf_fini(&b);
}

static void test_buf_compact_explicit(void **state) {
    (void)state;
    uint8_t mem[8];
    mw__buf_t b;
    mw__buf_init_mem(&b, mem, sizeof mem);
    mw__buf_compact(&b); /* empty: no-op */
    assert_int_equal(b.rd, 0);
    put(&b, "abcde");
    mw__buf_compact(&b); /* rd == 0: no-op */
    assert_contents(&b, "abcde");
    mw__buf_consume(&b, 2);
    mw__buf_compact(&b);
    assert_int_equal(b.rd, 0);
    assert_int_equal(b.wr, 3);
    assert_contents(&b, "cde");
    assert_ptr_equal(mw__buf_data(&b), mem);
}

static void test_buf_reserve_fails_without_total_space_and_keeps_state(void **state) {
    (void)state;
    mw__buf_t b;
    assert_int_equal(mw__buf_init(&b, 10), 0);
    put(&b, "0123456789");
    mw__buf_consume(&b, 3);
    size_t rd = b.rd, wr = b.wr;
    /* 3 free in total: 4 cannot be had even by compacting. */
    assert_null(mw__buf_reserve(&b, 4));
    assert_int_equal(b.rd, rd);
    assert_int_equal(b.wr, wr);
    assert_contents(&b, "3456789");
    assert_null(mw__buf_reserve(&b, 11));
    assert_contents(&b, "3456789");
    /* Exactly the free space still works. */
    assert_non_null(mw__buf_reserve(&b, 3));
    assert_contents(&b, "3456789");
    mw__buf_fini(&b);
}

static void test_buf_append(void **state) {
    (void)state;
    mw__buf_t b;
    assert_int_equal(mw__buf_init(&b, 8), 0);
    assert_int_equal(mw__buf_append(&b, "abc", 3), 0);
    assert_int_equal(mw__buf_append(&b, NULL, 0), 0);
    assert_int_equal(mw__buf_append(&b, "defgh", 5), 0);
    assert_contents(&b, "abcdefgh");
    assert_int_equal(mw__buf_append(&b, "i", 1), MW_EAGAIN);
    assert_contents(&b, "abcdefgh");
    mw__buf_consume(&b, 2);
    /* Needs a compaction to fit. */
    assert_int_equal(mw__buf_append(&b, "ij", 2), 0);
    assert_contents(&b, "cdefghij");
    assert_int_equal(mw__buf_append(&b, "k", 1), MW_EAGAIN);
    assert_contents(&b, "cdefghij");
    mw__buf_fini(&b);
}

static void test_buf_init_mem_uses_caller_memory(void **state) {
    (void)state;
    uint8_t mem[6] = {0};
    mw__buf_t b;
    mw__buf_init_mem(&b, mem, sizeof mem);
    assert_ptr_equal(b.base, mem);
    assert_int_equal(b.cap, 6);
    assert_int_equal(b.owned, 0);
    assert_int_equal(mw__buf_append(&b, "wxyz", 4), 0);
    assert_memory_equal(mem, "wxyz", 4);
    assert_int_equal(mw__buf_append(&b, "123", 3), MW_EAGAIN);
    /* fini must not free caller memory (ASan would report it) but forgets it. */
    mw__buf_fini(&b);
    assert_null(b.base);
    assert_memory_equal(mem, "wxyz", 4);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_init_allocates_and_fini_is_idempotent),
        cmocka_unit_test(test_buf_reserve_commit_consume),
        cmocka_unit_test(test_buf_reset_to_zero_when_fully_consumed),
        cmocka_unit_test(test_buf_reserve_compacts_and_keeps_bytes),
        cmocka_unit_test(test_buf_compact_explicit),
        cmocka_unit_test(test_buf_reserve_fails_without_total_space_and_keeps_state),
        cmocka_unit_test(test_buf_append),
        cmocka_unit_test(test_buf_init_mem_uses_caller_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
