/* test_backoff.c - the retry backoff state machine: delays double up to the
 * cap, jitter stays within [1 - jitter, 1] of the un-jittered delay and is
 * reproducible from the seed, max_attempts ends the retries, success resets.
 * A retry loop runs on the fake clock: attempts happen exactly at the due
 * times the backoff gives, and nothing sleeps. */
#include "mw_test.h"

#include "backoff_impl.h"
#include "mw_clock.h"
#include "clock_impl.h"

#include <math.h>

#define MS MW_NS_PER_MS

static mw__backoff_opts_t opts(int64_t min, int64_t max, double jitter, uint32_t max_attempts) {
    mw__backoff_opts_t o = {.min_delay_ns = min, .max_delay_ns = max, .jitter = jitter,
                            .max_attempts = max_attempts};
    return o;
}

static void test_backoff_delays_double_up_to_the_cap(void **state) {
    (void)state;
    mw__backoff_t b;
    mw__backoff_opts_t o = opts(100 * MS, 1000 * MS, 0, 0);
    mw__backoff_init(&b, &o, 1);
    const int64_t want[] = {100, 200, 400, 800, 1000, 1000, 1000};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        assert_int_equal(mw__backoff_fail(&b), want[i] * MS);
        assert_int_equal(mw__backoff_failures(&b), i + 1);
    }
    /* Many failures later the cap still holds (no overflow in the doubling). */
    for (int i = 0; i < 200; i++) assert_int_equal(mw__backoff_fail(&b), 1000 * MS);
}

static void test_backoff_huge_cap_does_not_overflow(void **state) {
    (void)state;
    mw__backoff_t b;
    mw__backoff_opts_t o = opts(1, INT64_MAX, 0, 0);
    mw__backoff_init(&b, &o, 1);
    int64_t prev = 0;
    for (int i = 0; i < 100; i++) {
        int64_t d = mw__backoff_fail(&b);
        assert_true(d >= prev);
        assert_true(d > 0);
        prev = d;
    }
    assert_int_equal(prev, INT64_MAX);
}

static void test_backoff_jitter_stays_within_range(void **state) {
    (void)state;
    const double jitters[] = {0.2, 0.5, 1.0};
    for (size_t k = 0; k < sizeof jitters / sizeof jitters[0]; k++) {
        double j = jitters[k];
        mw__backoff_t b, nj;
        mw__backoff_opts_t o = opts(10 * MS, 640 * MS, j, 0), o0 = opts(10 * MS, 640 * MS, 0, 0);
        mw__backoff_init(&b, &o, 42);
        mw__backoff_init(&nj, &o0, 42);
        double lo = 1.0, hi = 0.0;
        for (int round = 0; round < 50; round++) {
            for (int i = 0; i < 10; i++) {
                int64_t full = mw__backoff_fail(&nj);
                int64_t d = mw__backoff_fail(&b);
                assert_true(d <= full);
                assert_true((double)d >= floor((1.0 - j) * (double)full));
                double f = (double)d / (double)full;
                lo = f < lo ? f : lo;
                hi = f > hi ? f : hi;
            }
            mw__backoff_reset(&b);
            mw__backoff_reset(&nj);
        }
        /* 500 draws spread over the range, not stuck at one end. */
        assert_true(lo < 1.0 - j * 0.8);
        assert_true(hi > 1.0 - j * 0.2);
    }
}

static void test_backoff_is_reproducible_from_the_seed(void **state) {
    (void)state;
    mw__backoff_opts_t o = opts(10 * MS, 10000 * MS, 0.5, 0);
    mw__backoff_t a, b, c;
    mw__backoff_init(&a, &o, 7);
    mw__backoff_init(&b, &o, 7);
    mw__backoff_init(&c, &o, 8);
    int differ = 0;
    for (int i = 0; i < 20; i++) {
        int64_t x = mw__backoff_fail(&a), y = mw__backoff_fail(&b), z = mw__backoff_fail(&c);
        assert_int_equal(x, y);
        differ += x != z;
    }
    assert_true(differ > 10);
    /* Seed 0 works too (a xorshift state of 0 would be stuck at 0). */
    mw__backoff_t s0;
    mw__backoff_init(&s0, &o, 0);
    int64_t first = mw__backoff_fail(&s0);
    assert_true(first > 5 * MS && first <= 10 * MS);
}

static void test_backoff_max_attempts_ends_the_retries(void **state) {
    (void)state;
    mw__backoff_t b;
    mw__backoff_opts_t o = opts(5 * MS, 100 * MS, 0, 3);
    mw__backoff_init(&b, &o, 1);
    assert_int_equal(mw__backoff_fail(&b), 5 * MS);  /* 1st failure: retry */
    assert_int_equal(mw__backoff_fail(&b), 10 * MS); /* 2nd: retry */
    assert_int_equal(mw__backoff_fail(&b), -1);      /* 3rd: give up */
    assert_int_equal(mw__backoff_fail(&b), -1);      /* and stay given up */
    mw__backoff_reset(&b);
    assert_int_equal(mw__backoff_fail(&b), 5 * MS);
    /* max_attempts 1: the first failure is the last. */
    o.max_attempts = 1;
    mw__backoff_init(&b, &o, 1);
    assert_int_equal(mw__backoff_fail(&b), -1);
}

static void test_backoff_reset_after_success_starts_again(void **state) {
    (void)state;
    mw__backoff_t b;
    mw__backoff_opts_t o = opts(100 * MS, 800 * MS, 0, 0);
    mw__backoff_init(&b, &o, 1);
    for (int i = 0; i < 5; i++) mw__backoff_fail(&b);
    assert_int_equal(mw__backoff_failures(&b), 5);
    mw__backoff_reset(&b);
    assert_int_equal(mw__backoff_failures(&b), 0);
    assert_int_equal(mw__backoff_fail(&b), 100 * MS);
    assert_int_equal(mw__backoff_fail(&b), 200 * MS);
}

static void test_backoff_normalises_options(void **state) {
    (void)state;
    mw__backoff_t b;
    mw__backoff_opts_t o = opts(-5, -10, NAN, 0);
    mw__backoff_init(&b, &o, 1);
    assert_int_equal(mw__backoff_fail(&b), 0); /* retry at once */
    assert_int_equal(mw__backoff_fail(&b), 0);
    o = opts(50 * MS, 10 * MS, 7.0, 0); /* cap below min, jitter over 1 */
    mw__backoff_init(&b, &o, 1);
    assert_true(b.o.jitter == 1.0);
    for (int i = 0; i < 5; i++) {
        int64_t d = mw__backoff_fail(&b);
        assert_true(d >= 0 && d <= 50 * MS);
    }
    o = opts(50 * MS, 10 * MS, -1.0, 0);
    mw__backoff_init(&b, &o, 1);
    assert_int_equal(mw__backoff_fail(&b), 50 * MS);
    assert_int_equal(mw__backoff_fail(&b), 50 * MS);
}

/* A connect loop on the fake clock: every attempt fails until the fifth;
 * each retry happens exactly at the due time the backoff gave. */
static void test_backoff_drives_a_retry_loop_on_the_fake_clock(void **state) {
    (void)state;
    mw_clock_t clk;
    mw__clock_fake_init(&clk, 1000 * MW_NS_PER_S);
    mw__backoff_t b;
    mw__backoff_opts_t o = opts(100 * MS, 250 * MS, 0, 10);
    mw__backoff_init(&b, &o, 3);
    uint64_t t0 = mw__clock_now(&clk);
    uint64_t attempts_at[8];
    int attempts = 0;
    uint64_t due = t0;
    for (;;) {
        mw__clock_fake_set(&clk, due); /* the io's timer fires at its due time */
        attempts_at[attempts++] = mw__clock_now(&clk);
        bool ok = attempts == 5;
        if (ok) {
            mw__backoff_reset(&b);
            break;
        }
        int64_t d = mw__backoff_fail(&b);
        assert_true(d >= 0);
        due = mw__clock_now(&clk) + (uint64_t)d;
    }
    const uint64_t want_ms[] = {0, 100, 300, 550, 800};
    for (int i = 0; i < attempts; i++) assert_int_equal(attempts_at[i] - t0, want_ms[i] * MS);
    assert_int_equal(mw__backoff_failures(&b), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_delays_double_up_to_the_cap),
        cmocka_unit_test(test_backoff_huge_cap_does_not_overflow),
        cmocka_unit_test(test_backoff_jitter_stays_within_range),
        cmocka_unit_test(test_backoff_is_reproducible_from_the_seed),
        cmocka_unit_test(test_backoff_max_attempts_ends_the_retries),
        cmocka_unit_test(test_backoff_reset_after_success_starts_again),
        cmocka_unit_test(test_backoff_normalises_options),
        cmocka_unit_test(test_backoff_drives_a_retry_loop_on_the_fake_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
