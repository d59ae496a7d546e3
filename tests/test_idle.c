/* test_idle.c - idle strategies: configuration, the backoff's escalation
 * spin -> yield -> park and its reset on work, and spec parsing. Assertions
 * are on the state fields; any real sleep is a few microseconds. */
#include "mw_test.h"
#include "mw_err.h"
#include "mw_idle.h"

#include <string.h>

static void test_idle_init_simple_kinds(void **state) {
    (void)state;
    mw_idle_t i;
    memset(&i, 0x5A, sizeof i);
    mw_idle_init_busy(&i);
    assert_int_equal(i.kind, MW_IDLE_BUSY);
    assert_int_equal(i.spins, 0);
    assert_int_equal(i.yields, 0);
    mw_idle(&i, 0); /* inline pause; must not touch the counters */
    assert_int_equal(i.spins, 0);

    mw_idle_init_yield(&i);
    assert_int_equal(i.kind, MW_IDLE_YIELD);
    mw_idle(&i, 0);
    assert_int_equal(i.spins, 0);
    assert_int_equal(i.yields, 0);

    mw_idle_init_sleep(&i, 1000);
    assert_int_equal(i.kind, MW_IDLE_SLEEP);
    assert_int_equal(i.sleep_ns, 1000);
    mw_idle(&i, 0); /* sleeps 1 us */
    assert_int_equal(i.sleep_ns, 1000);
}

static void test_idle_backoff_escalates_spin_yield_park(void **state) {
    (void)state;
    mw_idle_t i;
    mw_idle_init_backoff(&i, 3, 2, 1000, 8000);
    assert_int_equal(i.kind, MW_IDLE_BACKOFF);
    assert_int_equal(i.max_spins, 3);
    assert_int_equal(i.max_yields, 2);
    assert_int_equal(i.min_park_ns, 1000);
    assert_int_equal(i.max_park_ns, 8000);
    assert_int_equal(i.park_ns, 1000);

    for (uint32_t s = 1; s <= 3; s++) { /* spin phase */
        mw_idle(&i, 0);
        assert_int_equal(i.spins, s);
        assert_int_equal(i.yields, 0);
        assert_int_equal(i.park_ns, 1000);
    }
    for (uint32_t y = 1; y <= 2; y++) { /* yield phase */
        mw_idle(&i, 0);
        assert_int_equal(i.spins, 3);
        assert_int_equal(i.yields, y);
        assert_int_equal(i.park_ns, 1000);
    }
    /* Park phase: each step sleeps park_ns, then doubles it up to the cap. */
    const uint64_t next[] = {2000, 4000, 8000, 8000};
    for (size_t k = 0; k < 4; k++) {
        mw_idle(&i, 0);
        assert_int_equal(i.spins, 3);
        assert_int_equal(i.yields, 2);
        assert_int_equal(i.park_ns, next[k]);
    }
}

static void test_idle_backoff_resets_on_work(void **state) {
    (void)state;
    mw_idle_t i;
    mw_idle_init_backoff(&i, 1, 1, 1000, 4000);
    for (int k = 0; k < 4; k++) mw_idle(&i, 0);
    assert_int_equal(i.spins, 1);
    assert_int_equal(i.yields, 1);
    assert_int_equal(i.park_ns, 4000);

    mw_idle(&i, 5);
    assert_int_equal(i.spins, 0);
    assert_int_equal(i.yields, 0);
    assert_int_equal(i.park_ns, 1000);
    /* It escalates from the start again. */
    mw_idle(&i, 0);
    assert_int_equal(i.spins, 1);
    assert_int_equal(i.yields, 0);

    mw_idle(&i, 0);
    mw_idle(&i, 0);
    assert_int_equal(i.park_ns, 2000);
    mw_idle_reset(&i);
    assert_int_equal(i.spins, 0);
    assert_int_equal(i.yields, 0);
    assert_int_equal(i.park_ns, 1000);
    assert_int_equal(i.parks, 3); /* a statistic: work does not reset it */
}

static void test_idle_parks_counts_sleeps_only(void **state) {
    (void)state;
    mw_idle_t i;
    mw_idle_init_backoff(&i, 2, 1, 1000, 1000);
    assert_int_equal(i.parks, 0);
    for (int k = 0; k < 3; k++) mw_idle(&i, 0); /* spin, spin, yield */
    assert_int_equal(i.parks, 0);
    mw_idle(&i, 0);
    assert_int_equal(i.parks, 1);
    mw_idle_init_sleep(&i, 1000);
    mw_idle(&i, 0);
    mw_idle(&i, 0);
    assert_int_equal(i.parks, 2);
    mw_idle_init_busy(&i);
    mw_idle(&i, 0);
    assert_int_equal(i.parks, 0);
}

static void test_idle_backoff_without_spins_or_yields_parks_at_once(void **state) {
    (void)state;
    mw_idle_t i;
    mw_idle_init_backoff(&i, 0, 0, 1000, 3000);
    mw_idle(&i, 0);
    assert_int_equal(i.park_ns, 2000);
    mw_idle(&i, 0);
    assert_int_equal(i.park_ns, 3000); /* capped, not 4000 */
    mw_idle(&i, 0);
    assert_int_equal(i.park_ns, 3000);
}

static void test_idle_backoff_normalises_park_bounds(void **state) {
    (void)state;
    mw_idle_t i;
    mw_idle_init_backoff(&i, 0, 0, 0, 0);
    assert_true(i.min_park_ns > 0);
    assert_true(i.max_park_ns >= i.min_park_ns);
    mw_idle_init_backoff(&i, 0, 0, 2000, 1000);
    assert_int_equal(i.min_park_ns, 2000);
    assert_int_equal(i.max_park_ns, 2000);
    mw_idle(&i, 0);
    assert_int_equal(i.park_ns, 2000);
}

static void test_idle_parse_accepts_known_specs(void **state) {
    (void)state;
    mw_idle_t i;
    assert_int_equal(mw_idle_parse(&i, "busy"), 0);
    assert_int_equal(i.kind, MW_IDLE_BUSY);
    assert_int_equal(mw_idle_parse(&i, "yield"), 0);
    assert_int_equal(i.kind, MW_IDLE_YIELD);
    assert_int_equal(mw_idle_parse(&i, "sleep:50"), 0);
    assert_int_equal(i.kind, MW_IDLE_SLEEP);
    assert_int_equal(i.sleep_ns, 50000);
    assert_int_equal(mw_idle_parse(&i, "sleep:0"), 0);
    assert_int_equal(i.sleep_ns, 0);
    assert_int_equal(mw_idle_parse(&i, "backoff"), 0);
    assert_int_equal(i.kind, MW_IDLE_BACKOFF);
    assert_int_equal(i.max_spins, 100);
    assert_int_equal(i.max_yields, 10);
    assert_int_equal(i.min_park_ns, 1000);
    assert_int_equal(i.max_park_ns, 1000000);
    assert_int_equal(i.park_ns, 1000);
    assert_int_equal(i.spins, 0);
    assert_int_equal(i.yields, 0);
}

static void test_idle_parse_rejects_junk_and_keeps_strategy(void **state) {
    (void)state;
    const char *bad[] = {"", "bus", "busy ", "BUSY", "yield:1", "sleep", "sleep:", "sleep:abc",
                         "sleep:-1", "sleep:+5", "sleep: 5", "sleep:5x", "sleep:5.5",
                         "sleep:99999999999999999999", "sleep:18446744073709552",
                         "backoff:1", "backoffs", "spin"};
    mw_idle_t i;
    mw_idle_init_sleep(&i, 777);
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        assert_int_equal(mw_idle_parse(&i, bad[k]), MW_EINVAL);
        assert_int_equal(i.kind, MW_IDLE_SLEEP);
        assert_int_equal(i.sleep_ns, 777);
    }
    assert_int_equal(mw_idle_parse(&i, NULL), MW_EINVAL);
    assert_int_equal(mw_idle_parse(NULL, "busy"), MW_EINVAL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_init_simple_kinds),
        cmocka_unit_test(test_idle_backoff_escalates_spin_yield_park),
        cmocka_unit_test(test_idle_backoff_resets_on_work),
        cmocka_unit_test(test_idle_parks_counts_sleeps_only),
        cmocka_unit_test(test_idle_backoff_without_spins_or_yields_parks_at_once),
        cmocka_unit_test(test_idle_backoff_normalises_park_bounds),
        cmocka_unit_test(test_idle_parse_accepts_known_specs),
        cmocka_unit_test(test_idle_parse_rejects_junk_and_keeps_strategy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
