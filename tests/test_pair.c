/* test_pair.c - the in-memory stream pair: chunking, a full ring, close
 * semantics, and a two-thread byte-exact transfer. */
#include "mw_test.h"

#include "mw_clock.h"
#include "mw_stream.h"
#include "clock_impl.h"
#include "stream_impl.h"

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint8_t pattern_byte(size_t i) { return (uint8_t)((i * 2654435761u) >> 13); }

static void test_pair_has_no_fd_and_wants_nothing(void **state) {
    (void)state;
    mw_stream_t *a, *b;
    assert_int_equal(mw__pair_new(&a, &b, 16, 0), 0);
    assert_int_equal(mw__stream_fd(a), -1);
    assert_int_equal(mw__stream_want(b), 0);
    assert_string_equal(a->ops->name, "pair");
    assert_int_equal(mw__stream_wait(a, MW_WANT_READ | MW_WANT_WRITE, 0), MW_WANT_READ | MW_WANT_WRITE);
    mw_stream_free(a);
    mw_stream_free(b);
}

static void test_pair_rejects_zero_capacity(void **state) {
    (void)state;
    mw_stream_t *a = NULL, *b = NULL;
    assert_int_equal(mw__pair_new(&a, &b, 0, 0), MW_EINVAL);
    assert_null(a);
}

static void test_pair_read_splits_at_max_chunk(void **state) {
    (void)state;
    mw_stream_t *a, *b;
    assert_int_equal(mw__pair_new(&a, &b, 64, 3), 0);
    assert_int_equal(mw__stream_write(a, "0123456789", 10), 10);
    char got[16] = {0};
    size_t off = 0;
    const ssize_t want[] = {3, 3, 3, 1};
    for (int i = 0; i < 4; i++) {
        ssize_t n = mw__stream_read(b, got + off, sizeof got - off);
        assert_int_equal(n, want[i]);
        off += (size_t)n;
    }
    assert_memory_equal(got, "0123456789", 10);
    assert_int_equal(mw__stream_read(b, got, sizeof got), MW_EAGAIN);
    /* A smaller destination wins over max_chunk. */
    assert_int_equal(mw__stream_write(a, "ab", 2), 2);
    assert_int_equal(mw__stream_read(b, got, 1), 1);
    assert_int_equal(got[0], 'a');
    mw_stream_free(a);
    mw_stream_free(b);
}

static void test_pair_directions_are_independent(void **state) {
    (void)state;
    mw_stream_t *a, *b;
    assert_int_equal(mw__pair_new(&a, &b, 8, 0), 0);
    assert_int_equal(mw__stream_write(a, "to-b", 4), 4);
    assert_int_equal(mw__stream_write(b, "to-a!", 5), 5);
    char buf[8];
    assert_int_equal(mw__stream_read(a, buf, sizeof buf), 5);
    assert_memory_equal(buf, "to-a!", 5);
    assert_int_equal(mw__stream_read(b, buf, sizeof buf), 4);
    assert_memory_equal(buf, "to-b", 4);
    assert_int_equal(mw__stream_read(a, buf, sizeof buf), MW_EAGAIN);
    mw_stream_free(b);
    mw_stream_free(a);
}

static void test_pair_full_ring_gives_partial_write_then_eagain(void **state) {
    (void)state;
    mw_stream_t *a, *b;
    assert_int_equal(mw__pair_new(&a, &b, 8, 0), 0);
    struct iovec iov[3] = {{"abcde", 5}, {"", 0}, {"fghijkl", 7}};
    assert_int_equal(mw__stream_writev(a, iov, 3), 8);
    assert_int_equal(mw__stream_write(a, "x", 1), MW_EAGAIN);
    assert_int_equal(mw__stream_write(a, "", 0), 0);
    char buf[16];
    assert_int_equal(mw__stream_read(b, buf, 5), 5);
    assert_memory_equal(buf, "abcde", 5);
    /* The next write wraps around the end of the ring. */
    struct iovec iov2[2] = {{"jk", 2}, {"lmnop", 5}};
    assert_int_equal(mw__stream_writev(a, iov2, 2), 5);
    assert_int_equal(mw__stream_write(a, "q", 1), MW_EAGAIN);
    assert_int_equal(mw__stream_read(b, buf, sizeof buf), 8);
    assert_memory_equal(buf, "fghjklmn", 8);
    assert_int_equal(mw__stream_read(b, buf, sizeof buf), MW_EAGAIN);
    mw_stream_free(a);
    mw_stream_free(b);
}

static void test_pair_close_lets_peer_drain_then_reports_closed(void **state) {
    (void)state;
    mw_stream_t *a, *b;
    assert_int_equal(mw__pair_new(&a, &b, 16, 0), 0);
    assert_int_equal(mw__stream_write(a, "hello", 5), 5);
    assert_int_equal(mw__stream_write(b, "unread", 6), 6);
    mw__stream_close(a);
    mw__stream_close(a); /* idempotent */
    char buf[16];
    assert_int_equal(mw__stream_read(b, buf, sizeof buf), 5);
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(mw__stream_read(b, buf, sizeof buf), MW_ECLOSED);
    assert_int_equal(mw__stream_write(b, "x", 1), MW_ECLOSED);
    /* The closed end itself neither reads nor writes any more. */
    assert_int_equal(mw__stream_read(a, buf, sizeof buf), MW_ECLOSED);
    assert_int_equal(mw__stream_write(a, "x", 1), MW_ECLOSED);
    /* Freeing the closed end first leaves the other end usable. */
    mw_stream_free(a);
    assert_int_equal(mw__stream_read(b, buf, sizeof buf), MW_ECLOSED);
    mw_stream_free(b);
    mw_stream_free(NULL);
}

static void test_pair_write_all_times_out_when_nobody_reads(void **state) {
    (void)state;
    mw_stream_t *a, *b;
    assert_int_equal(mw__pair_new(&a, &b, 4, 0), 0);
    uint64_t t0 = mw_now_ns();
    assert_int_equal(mw__stream_write_all(a, "0123456789", 10, 20 * MW_NS_PER_MS), MW_ETIMEDOUT);
    assert_true(mw_now_ns() - t0 >= 20 * MW_NS_PER_MS);
    mw__stream_close(b);
    assert_int_equal(mw__stream_write_all(a, "0123", 4, -1), MW_ECLOSED);
    mw_stream_free(a);
    mw_stream_free(b);
}

#define BIG (1u << 20)

typedef struct xfer {
    mw_stream_t *s;
    const uint8_t *data;
    int rc;
} xfer_t;

/* Writes the data in uneven slices (several iovecs each) so writes straddle
 * the ring's wrap point at many offsets. */
static void *writer_main(void *arg) {
    xfer_t *x = arg;
    size_t off = 0, step = 1;
    while (off < BIG && x->rc == 0) {
        size_t n = step < BIG - off ? step : BIG - off;
        x->rc = mw__stream_write_all(x->s, x->data + off, n, 10 * MW_NS_PER_S);
        off += n;
        step = step % 4093 + 7;
    }
    mw__stream_close(x->s);
    return NULL;
}

static void test_pair_two_threads_stream_1mib_byte_exact(void **state) {
    (void)state;
    mw_stream_t *a, *b;
    assert_int_equal(mw__pair_new(&a, &b, 4096, 1000), 0);
    uint8_t *src = malloc(BIG), *dst = malloc(BIG + 1);
    assert_non_null(src);
    assert_non_null(dst);
    for (size_t i = 0; i < BIG; i++) src[i] = pattern_byte(i);
    xfer_t x = {.s = a, .data = src};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, writer_main, &x), 0);
    size_t got = 0;
    uint64_t deadline = mw__deadline_in(NULL, 20 * MW_NS_PER_S);
    ssize_t n;
    for (;;) {
        n = mw__stream_read(b, dst + got, BIG + 1 - got);
        if (n > 0) {
            assert_true(n <= 1000);
            got += (size_t)n;
        } else if (n == MW_EAGAIN) {
            assert_false(mw__deadline_passed(NULL, deadline));
            sched_yield();
        } else {
            break;
        }
    }
    pthread_join(th, NULL);
    assert_int_equal(n, MW_ECLOSED);
    assert_int_equal(x.rc, 0);
    assert_int_equal(got, BIG);
    assert_memory_equal(dst, src, BIG);
    free(src);
    free(dst);
    mw_stream_free(a);
    mw_stream_free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pair_has_no_fd_and_wants_nothing),
        cmocka_unit_test(test_pair_rejects_zero_capacity),
        cmocka_unit_test(test_pair_read_splits_at_max_chunk),
        cmocka_unit_test(test_pair_directions_are_independent),
        cmocka_unit_test(test_pair_full_ring_gives_partial_write_then_eagain),
        cmocka_unit_test(test_pair_close_lets_peer_drain_then_reports_closed),
        cmocka_unit_test(test_pair_write_all_times_out_when_nobody_reads),
        cmocka_unit_test(test_pair_two_threads_stream_1mib_byte_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
