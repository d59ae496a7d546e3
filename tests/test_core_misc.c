/* test_core_misc.c - error codes and text, the log hook, and the clocks. */
#include "mw_test.h"
#include "mw_clock.h"
#include "mw_err.h"
#include "clock_impl.h"
#include "err_impl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- error codes ------------------------------------------------------------- */

static const char *const code_names[] = {
    "MW_OK",       "MW_EAGAIN",   "MW_ETIMEDOUT", "MW_ECLOSED",      "MW_EINVAL",
    "MW_ENOMEM",   "MW_ETOOBIG",  "MW_EPROTO",    "MW_ETRUNC",       "MW_ETAG",
    "MW_EFIELD",   "MW_EMISSING", "MW_ETYPE",     "MW_ERANGE",       "MW_ETRAILING",
    "MW_EUTF8",    "MW_ESYS",     "MW_ECONNREFUSED", "MW_ERESOLVE",  "MW_ETLS",
    "MW_EFULL",    "MW_ESTATE",   "MW_ENOTSUP",  "MW_ESLOW",  "MW_ECORRUPT", "MW_ESESSION",
};

static void test_err_every_code_has_name_and_text(void **state) {
    (void)state;
    size_t n = sizeof code_names / sizeof code_names[0];
    assert_int_equal(n, (size_t)-MW__ELAST);
    for (int c = 0; c > MW__ELAST; c--) {
        assert_string_equal(mw_errname(c), code_names[-c]);
        const char *t = mw_strerror(c);
        assert_non_null(t);
        assert_true(strlen(t) > 0);
        assert_string_not_equal(t, "unknown error");
        for (int d = 0; d > c; d--) assert_string_not_equal(t, mw_strerror(d));
    }
    assert_string_equal(mw_strerror(MW_OK), "success");
    assert_string_equal(mw_strerror(MW_ETOOBIG), "too big");
    assert_string_equal(mw_errname(MW_EAGAIN), "MW_EAGAIN");
    assert_string_equal(mw_errname(MW_ENOTSUP), "MW_ENOTSUP");
}

static void test_err_unknown_codes(void **state) {
    (void)state;
    const int unknown[] = {MW__ELAST, MW__ELAST - 1, -1000, -2147483647 - 1};
    for (size_t k = 0; k < sizeof unknown / sizeof unknown[0]; k++) {
        assert_string_equal(mw_strerror(unknown[k]), "unknown error");
        assert_string_equal(mw_errname(unknown[k]), "MW_E?");
    }
    /* A positive value is a success count, so it reads as success. */
    assert_string_equal(mw_strerror(42), "success");
    assert_string_equal(mw_errname(42), "MW_OK");
}

static void test_err_from_errno_mapping(void **state) {
    (void)state;
    const struct { int e, code; } t[] = {
        {EAGAIN, MW_EAGAIN},       {EWOULDBLOCK, MW_EAGAIN},         {EINPROGRESS, MW_EAGAIN},
        {ECONNREFUSED, MW_ECONNREFUSED}, {EPIPE, MW_ECLOSED},        {ECONNRESET, MW_ECLOSED},
        {ENOTCONN, MW_ECLOSED},    {ETIMEDOUT, MW_ETIMEDOUT},        {ENOMEM, MW_ENOMEM},
        {ENOBUFS, MW_ENOMEM},      {EINVAL, MW_EINVAL},              {EACCES, MW_ESYS},
        {EBADF, MW_ESYS},          {0, MW_ESYS},                     {123456, MW_ESYS},
    };
    for (size_t k = 0; k < sizeof t / sizeof t[0]; k++)
        assert_int_equal(mw__err_from_errno(t[k].e), t[k].code);
}

static void test_err_set_formats_and_returns_code(void **state) {
    (void)state;
    mw_err_t e;
    mw_err_clear(&e);
    assert_int_equal(e.code, 0);
    assert_string_equal(mw_err_text(&e), "");
    assert_string_equal(mw_err_text(NULL), "");

    assert_int_equal(mw__err_set(&e, MW_EPROTO, "bad byte 0x%02x at %d", 0xab, 17), MW_EPROTO);
    assert_int_equal(e.code, MW_EPROTO);
    assert_string_equal(e.text, "bad byte 0xab at 17");
    assert_string_equal(mw_err_text(&e), "bad byte 0xab at 17");

    /* NULL err: only the code comes back. */
    assert_int_equal(mw__err_set(NULL, MW_ETAG, "x"), MW_ETAG);

    /* No text: mw_err_text falls back to the code's description. */
    e.code = MW_ECLOSED;
    e.text[0] = '\0';
    assert_string_equal(mw_err_text(&e), mw_strerror(MW_ECLOSED));

    mw_err_t d;
    mw_err_clear(&d);
    mw__err_set(&e, MW_ERANGE, "field %s", "qty");
    mw__err_copy(&d, &e);
    assert_int_equal(d.code, MW_ERANGE);
    assert_string_equal(d.text, "field qty");
    mw__err_copy(NULL, &e);
    mw__err_copy(&d, NULL);
    assert_int_equal(d.code, MW_ERANGE);
    mw_err_clear(&d);
    assert_int_equal(d.code, 0);
    assert_string_equal(d.text, "");
    mw_err_clear(NULL);
}

static void test_err_set_truncates_long_text(void **state) {
    (void)state;
    char longs[MW_ERR_TEXT_MAX * 2];
    memset(longs, 'z', sizeof longs - 1);
    longs[sizeof longs - 1] = '\0';
    mw_err_t e;
    assert_int_equal(mw__err_set(&e, MW_EINVAL, "%s", longs), MW_EINVAL);
    assert_int_equal(strlen(e.text), MW_ERR_TEXT_MAX - 1);
    assert_memory_equal(e.text, longs, MW_ERR_TEXT_MAX - 1);

    /* set_errno with the base text already full still terminates. */
    assert_int_equal(mw__err_set_errno(&e, EPIPE, "%s", longs), MW_ECLOSED);
    assert_int_equal(strlen(e.text), MW_ERR_TEXT_MAX - 1);
}

static void test_err_set_errno_appends_strerror_and_maps(void **state) {
    (void)state;
    mw_err_t e;
    char want[MW_ERR_TEXT_MAX];
    assert_int_equal(mw__err_set_errno(&e, ECONNREFUSED, "connect %s:%d", "127.0.0.1", 7001),
                     MW_ECONNREFUSED);
    assert_int_equal(e.code, MW_ECONNREFUSED);
    snprintf(want, sizeof want, "connect 127.0.0.1:7001: %s", strerror(ECONNREFUSED));
    assert_string_equal(e.text, want);

    assert_int_equal(mw__err_set_errno(&e, EACCES, "open %s", "/x"), MW_ESYS);
    snprintf(want, sizeof want, "open /x: %s", strerror(EACCES));
    assert_string_equal(e.text, want);
    assert_string_equal(mw_err_text(&e), want);

    assert_int_equal(mw__err_set_errno(NULL, ETIMEDOUT, "x"), MW_ETIMEDOUT);
}

/* ---- log hook ------------------------------------------------------------------ */

typedef struct {
    int calls, level;
    void *ud;
    char msg[128];
} log_rec_t;

static void rec_log(void *ud, int level, const char *msg) {
    log_rec_t *r = ud;
    r->calls++;
    r->level = level;
    r->ud = ud;
    snprintf(r->msg, sizeof r->msg, "%s", msg);
}

static void test_log_hook_delivers_only_when_set_and_level_allows(void **state) {
    (void)state;
    log_rec_t r;
    memset(&r, 0, sizeof r);

    mw_log_set(NULL, NULL, MW_LOG_DEBUG);
    assert_false(mw__log_enabled(MW_LOG_ERROR));
    mw__logf(MW_LOG_ERROR, "nobody hears %d", 1); /* must not crash */

    mw_log_set(rec_log, &r, MW_LOG_WARN);
    assert_true(mw__log_enabled(MW_LOG_ERROR));
    assert_true(mw__log_enabled(MW_LOG_WARN));
    assert_false(mw__log_enabled(MW_LOG_INFO));
    assert_false(mw__log_enabled(MW_LOG_DEBUG));

    mw__logf(MW_LOG_WARN, "reconnect in %d ms", 250);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.level, MW_LOG_WARN);
    assert_ptr_equal(r.ud, &r);
    assert_string_equal(r.msg, "reconnect in 250 ms");

    mw__logf(MW_LOG_INFO, "too chatty");
    mw__logf(MW_LOG_DEBUG, "too chatty");
    assert_int_equal(r.calls, 1);

    mw__logf(MW_LOG_ERROR, "closed %s", "conn 3");
    assert_int_equal(r.calls, 2);
    assert_int_equal(r.level, MW_LOG_ERROR);
    assert_string_equal(r.msg, "closed conn 3");

    /* Removing the hook stops delivery. */
    mw_log_set(NULL, NULL, MW_LOG_DEBUG);
    mw__logf(MW_LOG_ERROR, "after removal");
    assert_int_equal(r.calls, 2);
    mw_log_set(NULL, NULL, MW_LOG_INFO);
}

/* ---- clocks -------------------------------------------------------------------- */

static void test_clock_fake_set_and_advance(void **state) {
    (void)state;
    mw_clock_t c;
    mw__clock_fake_init(&c, 1000);
    assert_int_equal(mw__clock_now(&c), 1000);
    assert_int_equal(mw__clock_now(&c), 1000); /* does not move by itself */
    mw__clock_fake_advance(&c, 500);
    assert_int_equal(mw__clock_now(&c), 1500);
    mw__clock_fake_set(&c, 42);
    assert_int_equal(mw__clock_now(&c), 42);
    mw__clock_fake_advance(&c, 0);
    assert_int_equal(mw__clock_now(&c), 42);
}

static void test_clock_deadlines_on_fake_clock(void **state) {
    (void)state;
    mw_clock_t c;
    mw__clock_fake_init(&c, 10 * MW_NS_PER_S);

    uint64_t d = mw__deadline_in(&c, 100);
    assert_int_equal(d, 10 * MW_NS_PER_S + 100);
    assert_false(mw__deadline_passed(&c, d));
    assert_int_equal(mw__deadline_left(&c, d), 100);
    mw__clock_fake_advance(&c, 30);
    assert_int_equal(mw__deadline_left(&c, d), 70);
    mw__clock_fake_advance(&c, 69);
    assert_false(mw__deadline_passed(&c, d));
    assert_int_equal(mw__deadline_left(&c, d), 1);
    mw__clock_fake_advance(&c, 1);
    assert_true(mw__deadline_passed(&c, d));
    assert_int_equal(mw__deadline_left(&c, d), 0);
    mw__clock_fake_advance(&c, 1000);
    assert_int_equal(mw__deadline_left(&c, d), 0);

    /* Zero timeout: already passed. */
    d = mw__deadline_in(&c, 0);
    assert_true(mw__deadline_passed(&c, d));
    assert_int_equal(mw__deadline_left(&c, d), 0);
}

static void test_clock_negative_timeout_is_forever(void **state) {
    (void)state;
    mw_clock_t c;
    mw__clock_fake_init(&c, 5);
    assert_true(mw__deadline_in(&c, -1) == MW_FOREVER);
    assert_true(mw__deadline_in(&c, -1000 * MW_NS_PER_S) == MW_FOREVER);
    assert_true(mw__deadline_in(NULL, -1) == MW_FOREVER);
    mw__clock_fake_set(&c, UINT64_MAX - 1);
    assert_false(mw__deadline_passed(&c, MW_FOREVER));
    assert_int_equal(mw__deadline_left(&c, MW_FOREVER), -1);
    assert_int_equal(mw__deadline_left(NULL, MW_FOREVER), -1);

    /* A deadline that would wrap becomes MW_FOREVER rather than the past. */
    mw__clock_fake_set(&c, UINT64_MAX - 10);
    assert_true(mw__deadline_in(&c, 100) == MW_FOREVER);
}

static void test_clock_real_is_monotonic(void **state) {
    (void)state;
    uint64_t prev = mw_now_ns();
    assert_true(prev > 0);
    for (int k = 0; k < 10000; k++) {
        uint64_t now = (k & 1) ? mw__clock_now(NULL) : mw__clock_mono.now_ns(&mw__clock_mono);
        assert_true(now >= prev);
        prev = now;
    }
    /* The real clock does move: wait (bounded) until it ticks. */
    uint64_t t0 = mw_now_ns(), t = t0;
    for (int k = 0; k < 100000000 && t == t0; k++) t = mw_now_ns();
    assert_true(t > t0);

    uint64_t d = mw__deadline_in(NULL, 1000 * MW_NS_PER_S);
    assert_false(mw__deadline_passed(NULL, d));
    assert_true(mw__deadline_left(NULL, d) > 0);
    assert_true(mw__deadline_left(NULL, d) <= 1000 * MW_NS_PER_S);

    /* Wall clock: after 2020-01-01. */
    assert_true(mw_wall_ns() > (uint64_t)1577836800 * (uint64_t)MW_NS_PER_S);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_every_code_has_name_and_text),
        cmocka_unit_test(test_err_unknown_codes),
        cmocka_unit_test(test_err_from_errno_mapping),
        cmocka_unit_test(test_err_set_formats_and_returns_code),
        cmocka_unit_test(test_err_set_truncates_long_text),
        cmocka_unit_test(test_err_set_errno_appends_strerror_and_maps),
        cmocka_unit_test(test_log_hook_delivers_only_when_set_and_level_allows),
        cmocka_unit_test(test_clock_fake_set_and_advance),
        cmocka_unit_test(test_clock_deadlines_on_fake_clock),
        cmocka_unit_test(test_clock_negative_timeout_is_forever),
        cmocka_unit_test(test_clock_real_is_monotonic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
