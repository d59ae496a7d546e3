/* test_engine.c - the gateway example's matching engine (examples/common/
 * engine.c): price-time priority, partial fills at the resting price, acks
 * and fills in engine_seq order, cancels, every reject reason, the 2^53
 * limit, duplicate and stale cl_ord_ids, record recycling, the book dump,
 * no allocation per order, and determinism (the same inputs give the same
 * outputs, numbers and book). */
#include "mw_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

/* ---- a recorder of everything the engine emits ------------------------------ */

typedef struct ev {
    int kind; /* 'A' ack, 'F' fill */
    uint32_t session;
    order_ack_t ack;
    fill_t fill;
} ev_t;

typedef struct rec {
    ev_t *v;
    size_t n, cap;
    uint64_t hash; /* FNV-1a over every event, for long runs */
    bool keep;
} rec_t;

static void rec_hash(rec_t *r, const void *p, size_t n) {
    for (size_t i = 0; i < n; i++) r->hash = (r->hash ^ ((const uint8_t *)p)[i]) * 1099511628211ull;
}

static void rec_add(rec_t *r, const ev_t *e) {
    rec_hash(r, e, sizeof *e);
    if (!r->keep) return;
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 64;
        r->v = realloc(r->v, r->cap * sizeof *r->v);
        assert_non_null(r->v);
    }
    r->v[r->n++] = *e;
}

static void on_ack(void *ud, uint32_t s, const order_ack_t *a) {
    ev_t e;
    memset(&e, 0, sizeof e);
    e.kind = 'A';
    e.session = s;
    e.ack = *a;
    rec_add(ud, &e);
}

static void on_fill(void *ud, uint32_t s, const fill_t *f) {
    ev_t e;
    memset(&e, 0, sizeof e);
    e.kind = 'F';
    e.session = s;
    e.fill = *f;
    rec_add(ud, &e);
}

typedef struct fx {
    engine_t *e;
    rec_t rec;
    int s1, s2;
} fx_t;

static void fx_open(fx_t *f, uint32_t max_orders, uint32_t max_levels) {
    memset(f, 0, sizeof *f);
    f->rec.keep = true;
    f->rec.hash = 1469598103934665603ull;
    engine_opts_t o;
    engine_opts_init(&o);
    o.symbols = "AAPL,MSFT";
    if (max_orders) o.max_orders = max_orders;
    if (max_levels) o.max_levels = max_levels;
    o.out = (engine_out_t){on_ack, on_fill, &f->rec};
    char err[200];
    assert_int_equal(engine_new(&f->e, &o, err, sizeof err), 0);
    f->s1 = engine_session(f->e, "T1");
    f->s2 = engine_session(f->e, "T2");
    assert_int_equal(f->s1, 0);
    assert_int_equal(f->s2, 1);
}

static void fx_close(fx_t *f) {
    engine_free(f->e);
    free(f->rec.v);
}

static void order(fx_t *f, int s, uint64_t cl, const char *sym, int side, int64_t px, uint32_t qty) {
    new_order_t o;
    memset(&o, 0, sizeof o);
    o.cl_ord_id = cl;
    memcpy(o.symbol, sym, strnlen(sym, sizeof o.symbol));
    o.side = (uint8_t)side;
    o.price = px;
    o.qty = qty;
    engine_new_order(f->e, (uint32_t)s, &o);
}

static void cancel(fx_t *f, int s, uint64_t cl) {
    cancel_t c = {.cl_ord_id = cl};
    engine_cancel(f->e, (uint32_t)s, &c);
}

static const ev_t *ev_at(const fx_t *f, size_t i) {
    assert_true(i < f->rec.n);
    return &f->rec.v[i];
}

static void expect_ack(const fx_t *f, size_t i, int s, uint64_t cl, int status, uint32_t leaves, const char *reason) {
    const ev_t *e = ev_at(f, i);
    assert_int_equal(e->kind, 'A');
    assert_int_equal(e->session, s);
    assert_int_equal(e->ack.cl_ord_id, cl);
    assert_int_equal(e->ack.status, status);
    assert_int_equal(e->ack.leaves, leaves);
    assert_int_equal(strncmp(e->ack.reason, reason, sizeof e->ack.reason), 0);
    if (status == GW_ACCEPTED) assert_true(e->ack.order_id > 0);
}

static void expect_fill(const fx_t *f, size_t i, int s, uint64_t cl, int64_t px, uint32_t qty, uint32_t leaves) {
    const ev_t *e = ev_at(f, i);
    assert_int_equal(e->kind, 'F');
    assert_int_equal(e->session, s);
    assert_int_equal(e->fill.cl_ord_id, cl);
    assert_int_equal(e->fill.price, px);
    assert_int_equal(e->fill.qty, qty);
    assert_int_equal(e->fill.leaves, leaves);
}

static char *book_text(const engine_t *e) {
    char *p = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&p, &n);
    assert_non_null(m);
    engine_book_write(e, m);
    fclose(m);
    return p;
}

static void expect_book(const engine_t *e, const char *want) {
    char *got = book_text(e);
    assert_string_equal(got, want);
    free(got);
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_engine_acks_and_rests_orders_that_do_not_cross(void **state) {
    (void)state;
    fx_t f;
    fx_open(&f, 0, 0);
    order(&f, f.s1, 1, "AAPL", GW_BUY, 100, 10);
    order(&f, f.s2, 1, "AAPL", GW_SELL, 101, 5);
    assert_int_equal(f.rec.n, 2);
    expect_ack(&f, 0, f.s1, 1, GW_ACCEPTED, 10, "");
    expect_ack(&f, 1, f.s2, 1, GW_ACCEPTED, 5, "");
    assert_int_equal(ev_at(&f, 0)->ack.engine_seq, 1);
    assert_int_equal(ev_at(&f, 1)->ack.engine_seq, 2);
    assert_int_equal(ev_at(&f, 0)->ack.order_id, 1);
    assert_int_equal(ev_at(&f, 1)->ack.order_id, 2);
    expect_book(f.e, "AAPL buy 100 T1 1 10/10\nAAPL sell 101 T2 1 5/5\n");
    engine_stats_t st;
    engine_stats(f.e, &st);
    assert_int_equal(st.resting, 2);
    assert_int_equal(st.matches, 0);
    fx_close(&f);
}

static void test_engine_fills_at_the_resting_price_in_price_then_time_priority(void **state) {
    (void)state;
    fx_t f;
    fx_open(&f, 0, 0);
    order(&f, f.s1, 1, "AAPL", GW_SELL, 102, 5); /* worse price, first in time */
    order(&f, f.s1, 2, "AAPL", GW_SELL, 101, 5); /* best price */
    order(&f, f.s2, 3, "AAPL", GW_SELL, 101, 5); /* best price, later */
    f.rec.n = 0;
    order(&f, f.s2, 9, "AAPL", GW_BUY, 105, 12);
    /* ack, then per match the aggressor's fill and the resting order's */
    assert_int_equal(f.rec.n, 7);
    expect_ack(&f, 0, f.s2, 9, GW_ACCEPTED, 12, "");
    expect_fill(&f, 1, f.s2, 9, 101, 5, 7);
    expect_fill(&f, 2, f.s1, 2, 101, 5, 0);
    expect_fill(&f, 3, f.s2, 9, 101, 5, 2);
    expect_fill(&f, 4, f.s2, 3, 101, 5, 0);
    expect_fill(&f, 5, f.s2, 9, 102, 2, 0);
    expect_fill(&f, 6, f.s1, 1, 102, 2, 3);
    /* both fills of one match share the match id; engine_seq counts every event */
    assert_int_equal(ev_at(&f, 1)->fill.match_id, ev_at(&f, 2)->fill.match_id);
    assert_int_equal(ev_at(&f, 3)->fill.match_id, ev_at(&f, 1)->fill.match_id + 1);
    for (size_t i = 1; i < f.rec.n; i++) {
        const ev_t *a = ev_at(&f, i - 1), *b = ev_at(&f, i);
        uint64_t sa = a->kind == 'A' ? a->ack.engine_seq : a->fill.engine_seq;
        uint64_t sb = b->kind == 'A' ? b->ack.engine_seq : b->fill.engine_seq;
        assert_int_equal(sb, sa + 1);
    }
    expect_book(f.e, "AAPL sell 102 T1 1 3/5\n");
    fx_close(&f);
}

static void test_engine_partial_fill_of_the_aggressor_rests_the_remainder(void **state) {
    (void)state;
    fx_t f;
    fx_open(&f, 0, 0);
    order(&f, f.s1, 1, "MSFT", GW_BUY, 200, 4);
    order(&f, f.s1, 2, "MSFT", GW_BUY, 199, 4);
    f.rec.n = 0;
    order(&f, f.s2, 1, "MSFT", GW_SELL, 200, 10); /* takes 4 at 200, rests 6 at 200 */
    assert_int_equal(f.rec.n, 3);
    expect_fill(&f, 1, f.s2, 1, 200, 4, 6);
    expect_fill(&f, 2, f.s1, 1, 200, 4, 0);
    expect_book(f.e, "MSFT buy 199 T1 2 4/4\nMSFT sell 200 T2 1 6/10\n");
    /* symbols do not meet each other */
    order(&f, f.s1, 3, "AAPL", GW_BUY, 500, 1);
    expect_book(f.e, "AAPL buy 500 T1 3 1/1\nMSFT buy 199 T1 2 4/4\nMSFT sell 200 T2 1 6/10\n");
    fx_close(&f);
}

static void test_engine_cancel_removes_the_rest_and_rejects_what_is_not_open(void **state) {
    (void)state;
    fx_t f;
    fx_open(&f, 0, 0);
    order(&f, f.s1, 1, "AAPL", GW_BUY, 100, 10);
    order(&f, f.s1, 2, "AAPL", GW_BUY, 100, 10);
    order(&f, f.s2, 1, "AAPL", GW_SELL, 100, 3);
    f.rec.n = 0;
    cancel(&f, f.s1, 1); /* partly filled: 7 left, cancelled */
    expect_ack(&f, 0, f.s1, 1, GW_CANCELLED, 0, "");
    assert_int_equal(ev_at(&f, 0)->ack.order_id, 1);
    cancel(&f, f.s1, 1);
    expect_ack(&f, 1, f.s1, 1, GW_REJECTED, 0, "order not open");
    cancel(&f, f.s2, 1); /* fully filled */
    expect_ack(&f, 2, f.s2, 1, GW_REJECTED, 0, "order not open");
    cancel(&f, f.s2, 2); /* T2 has no order 2: T1's order 2 is not T2's */
    expect_ack(&f, 3, f.s2, 2, GW_REJECTED, 0, "unknown order");
    cancel(&f, f.s1, 0);
    expect_ack(&f, 4, f.s1, 0, GW_REJECTED, 0, "cl_ord_id out of range");
    expect_book(f.e, "AAPL buy 100 T1 2 10/10\n");
    /* the level emptied by a cancel goes away and a later order matches the rest */
    cancel(&f, f.s1, 2);
    expect_book(f.e, "");
    engine_stats_t st;
    engine_stats(f.e, &st);
    assert_int_equal(st.cancels, 6);
    assert_int_equal(st.cancelled, 2);
    assert_int_equal(st.cancel_rejected, 4);
    assert_int_equal(st.resting, 0);
    fx_close(&f);
}

static void test_engine_rejects_bad_orders_with_a_reason(void **state) {
    (void)state;
    fx_t f;
    fx_open(&f, 0, 0);
    order(&f, f.s1, 0, "AAPL", GW_BUY, 100, 1);
    expect_ack(&f, 0, f.s1, 0, GW_REJECTED, 0, "cl_ord_id out of range");
    order(&f, f.s1, 1ull << 53, "AAPL", GW_BUY, 100, 1);
    expect_ack(&f, 1, f.s1, 1ull << 53, GW_REJECTED, 0, "cl_ord_id out of range");
    order(&f, f.s1, 2, "IBM", GW_BUY, 100, 1);
    expect_ack(&f, 2, f.s1, 2, GW_REJECTED, 0, "unknown symbol");
    order(&f, f.s1, 3, "AAPL", GW_BUY, 0, 1);
    expect_ack(&f, 3, f.s1, 3, GW_REJECTED, 0, "price out of range");
    order(&f, f.s1, 4, "AAPL", GW_BUY, 1ll << 53, 1);
    expect_ack(&f, 4, f.s1, 4, GW_REJECTED, 0, "price out of range");
    order(&f, f.s1, 5, "AAPL", GW_SELL, -5, 1);
    expect_ack(&f, 5, f.s1, 5, GW_REJECTED, 0, "price out of range");
    order(&f, f.s1, 6, "AAPL", GW_BUY, 100, 0);
    expect_ack(&f, 6, f.s1, 6, GW_REJECTED, 0, "qty must be > 0");
    order(&f, f.s1, 7, "AAPL", 2, 100, 1);
    expect_ack(&f, 7, f.s1, 7, GW_REJECTED, 0, "bad side");
    /* the largest values allowed are accepted */
    order(&f, f.s1, (1ull << 53) - 1, "AAPL", GW_SELL, (1ll << 53) - 1, UINT32_MAX);
    expect_ack(&f, 8, f.s1, (1ull << 53) - 1, GW_ACCEPTED, UINT32_MAX, "");
    /* a symbol that fills all GW_SYMBOL_CAP bytes (no NUL) is compared exactly */
    char err[200];
    engine_opts_t o;
    engine_opts_init(&o);
    o.symbols = "ABCDEFGH,ABCDEFG";
    engine_t *e2;
    assert_int_equal(engine_new(&e2, &o, err, sizeof err), 0);
    char full[GW_SYMBOL_CAP] = {'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H'};
    assert_int_equal(engine_symbol_index(e2, full), 0);
    full[7] = 0;
    assert_int_equal(engine_symbol_index(e2, full), 1);
    engine_free(e2);
    for (size_t i = 0; i < 8; i++) assert_int_equal(ev_at(&f, i)->ack.order_id, 0);
    engine_stats_t st;
    engine_stats(f.e, &st);
    assert_int_equal(st.rejected, 8);
    assert_int_equal(st.accepted, 1);
    fx_close(&f);
}

static void test_engine_rejects_a_duplicate_cl_ord_id_per_session(void **state) {
    (void)state;
    fx_t f;
    fx_open(&f, 0, 0);
    order(&f, f.s1, 5, "AAPL", GW_BUY, 100, 10);
    order(&f, f.s1, 5, "AAPL", GW_BUY, 100, 10); /* live */
    expect_ack(&f, 1, f.s1, 5, GW_REJECTED, 0, "duplicate cl_ord_id");
    order(&f, f.s2, 5, "AAPL", GW_SELL, 100, 10); /* another session: fine, fills 5 fully */
    expect_ack(&f, 2, f.s2, 5, GW_ACCEPTED, 10, "");
    order(&f, f.s1, 5, "AAPL", GW_BUY, 100, 10); /* finished, still remembered */
    expect_ack(&f, 5, f.s1, 5, GW_REJECTED, 0, "duplicate cl_ord_id");
    order(&f, f.s2, 5, "AAPL", GW_BUY, 100, 10);
    expect_ack(&f, 6, f.s2, 5, GW_REJECTED, 0, "duplicate cl_ord_id");
    expect_book(f.e, "");
    fx_close(&f);
}

static void test_engine_recycles_the_oldest_finished_order_and_refuses_stale_ids(void **state) {
    (void)state;
    fx_t f;
    fx_open(&f, 4, 0);
    order(&f, f.s1, 1, "AAPL", GW_BUY, 100, 1);
    order(&f, f.s2, 1, "AAPL", GW_SELL, 100, 1); /* both finished */
    order(&f, f.s1, 2, "AAPL", GW_BUY, 90, 1);   /* live */
    order(&f, f.s1, 3, "AAPL", GW_BUY, 91, 1);   /* live; the pool is full */
    order(&f, f.s1, 4, "AAPL", GW_BUY, 92, 1);   /* recycles T1's 1 */
    size_t n = f.rec.n;
    expect_ack(&f, n - 1, f.s1, 4, GW_ACCEPTED, 1, "");
    order(&f, f.s1, 1, "AAPL", GW_BUY, 90, 1);
    expect_ack(&f, n, f.s1, 1, GW_REJECTED, 0, "stale cl_ord_id");
    order(&f, f.s1, 5, "AAPL", GW_BUY, 93, 1); /* recycles T2's 1 */
    expect_ack(&f, n + 1, f.s1, 5, GW_ACCEPTED, 1, "");
    order(&f, f.s1, 6, "AAPL", GW_BUY, 94, 1); /* nothing finished: full */
    expect_ack(&f, n + 2, f.s1, 6, GW_REJECTED, 0, "order book full");
    engine_stats_t st;
    engine_stats(f.e, &st);
    assert_int_equal(st.recycled, 2);
    assert_int_equal(st.resting, 4);
    fx_close(&f);
}

static void test_engine_limits_price_levels(void **state) {
    (void)state;
    fx_t f;
    fx_open(&f, 0, 2);
    order(&f, f.s1, 1, "AAPL", GW_BUY, 100, 1);
    order(&f, f.s1, 2, "AAPL", GW_BUY, 101, 1);
    order(&f, f.s1, 3, "AAPL", GW_BUY, 101, 1); /* an existing level: fine */
    order(&f, f.s1, 4, "AAPL", GW_BUY, 102, 1);
    expect_ack(&f, 3, f.s1, 4, GW_REJECTED, 0, "too many price levels");
    order(&f, f.s1, 5, "AAPL", GW_SELL, 200, 1); /* the other side has its own */
    expect_ack(&f, 4, f.s1, 5, GW_ACCEPTED, 1, "");
    expect_book(f.e, "AAPL buy 101 T1 2 1/1\nAAPL buy 101 T1 3 1/1\nAAPL buy 100 T1 1 1/1\nAAPL sell 200 T1 5 1/1\n");
    fx_close(&f);
}

static void test_engine_sessions_and_options(void **state) {
    (void)state;
    char err[200];
    engine_opts_t o;
    engine_opts_init(&o);
    engine_t *e;
    o.symbols = "AAPL,AAPL";
    assert_int_equal(engine_new(&e, &o, err, sizeof err), -1);
    assert_non_null(strstr(err, "bad symbols"));
    o.symbols = "AAPL,TOOLONGSYM";
    assert_int_equal(engine_new(&e, &o, err, sizeof err), -1);
    o.symbols = "AA PL";
    assert_int_equal(engine_new(&e, &o, err, sizeof err), -1);
    o.symbols = "";
    assert_int_equal(engine_new(&e, &o, err, sizeof err), -1);
    o.symbols = "AAPL";
    o.max_sessions = 2;
    assert_int_equal(engine_new(&e, &o, err, sizeof err), 0);
    assert_int_equal(engine_session(e, "a"), 0);
    assert_int_equal(engine_session(e, "b"), 1);
    assert_int_equal(engine_session(e, "a"), 0);
    assert_int_equal(engine_session(e, "c"), -1);
    assert_int_equal(engine_session(e, ""), -1);
    assert_string_equal(engine_session_name(e, 1), "b");
    assert_string_equal(engine_session_name(e, 7), "");
    assert_int_equal(engine_nsymbols(e), 1);
    assert_string_equal(engine_symbol(e, 0), "AAPL");
    engine_free(e);
    engine_free(NULL);
}

/* A long pseudo-random run: orders and cancels from three sessions on two
 * symbols. Returns the hash of every event; fills the book text. */
static uint64_t random_run(uint64_t seed, size_t steps, char **book, uint64_t *book_hash, bool check_alloc) {
    fx_t f;
    fx_open(&f, 1u << 12, 0);
    f.rec.keep = false;
    int s3 = engine_session(f.e, "T3");
    int sessions[3] = {f.s1, f.s2, s3};
    uint64_t next_cl[3] = {1, 1, 1};
    uint64_t x = seed;
    uint64_t allocs = mw_alloc_count();
    for (size_t i = 0; i < steps; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int k = (int)(x % 3);
        if ((x >> 8) % 8 == 0 && next_cl[k] > 1) {
            cancel(&f, sessions[k], 1 + (x >> 16) % (next_cl[k] - 1));
            continue;
        }
        order(&f, sessions[k], next_cl[k]++, (x >> 20) % 2 ? "AAPL" : "MSFT", (int)((x >> 24) % 2),
              1000 + (int64_t)((x >> 28) % 21) - 10, 1 + (uint32_t)((x >> 36) % 100));
    }
    if (check_alloc && mw_alloc_counting_works()) assert_int_equal(mw_alloc_count() - allocs, 0);
    engine_stats_t st;
    engine_stats(f.e, &st);
    assert_true(st.matches > steps / 10);
    assert_true(st.cancelled > 0);
    assert_true(st.recycled > 0);
    /* every fill pair and ack was seen: engine_seq counts them all */
    assert_int_equal(st.engine_seq, st.orders + st.cancels + 2 * st.matches);
    *book = book_text(f.e);
    *book_hash = engine_book_hash(f.e);
    uint64_t h = f.rec.hash;
    fx_close(&f);
    return h;
}

static void test_engine_is_deterministic_and_allocates_nothing_per_order(void **state) {
    (void)state;
    char *b1, *b2, *b3;
    uint64_t bh1, bh2, bh3;
    uint64_t h1 = random_run(42, 50000, &b1, &bh1, true);
    uint64_t h2 = random_run(42, 50000, &b2, &bh2, false);
    uint64_t h3 = random_run(43, 50000, &b3, &bh3, false);
    assert_int_equal(h1, h2);
    assert_string_equal(b1, b2);
    assert_int_equal(bh1, bh2);
    assert_true(h1 != h3); /* the hash does see a different input */
    assert_true(bh1 != bh3);
    assert_true(strlen(b1) > 0);
    free(b1);
    free(b2);
    free(b3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_engine_acks_and_rests_orders_that_do_not_cross),
        cmocka_unit_test(test_engine_fills_at_the_resting_price_in_price_then_time_priority),
        cmocka_unit_test(test_engine_partial_fill_of_the_aggressor_rests_the_remainder),
        cmocka_unit_test(test_engine_cancel_removes_the_rest_and_rejects_what_is_not_open),
        cmocka_unit_test(test_engine_rejects_bad_orders_with_a_reason),
        cmocka_unit_test(test_engine_rejects_a_duplicate_cl_ord_id_per_session),
        cmocka_unit_test(test_engine_recycles_the_oldest_finished_order_and_refuses_stale_ids),
        cmocka_unit_test(test_engine_limits_price_levels),
        cmocka_unit_test(test_engine_sessions_and_options),
        cmocka_unit_test(test_engine_is_deterministic_and_allocates_nothing_per_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
