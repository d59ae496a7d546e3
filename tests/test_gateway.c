/* test_gateway.c - examples/gateway and examples/trader as a user runs them
 * (child processes on 127.0.0.1), plus Clts of this process as clients:
 *
 *   - traders over tcp:// (fixed serdes) and ws:// (text) in spin, blocking
 *     and event mode, at once, each checking every ack and fill, and the
 *     gateway's statistics agree with what they sent;
 *   - an order resting from a tcp:// client is filled by one from a ws://
 *     client, and each gets its ack and its fill on its own connection;
 *   - the same orders into a fresh gateway give the same book, byte for byte;
 *   - with sessions, a gateway that dies between the two fills of a match
 *     (--crash-after) rebuilds its engine from its journals: the fill the
 *     crash cut off reaches its owner, the order whose handling it
 *     interrupted is not run twice, the trader's checks pass over the whole
 *     run, and the book equals a fault-free run's;
 *   - usage errors end with exit code 1.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "gw_orders.h"
#include "gw_proto.h"
#include "mw_clt.h"
#include "mw_proc.h"
#include "mw_test.h"

#ifndef MW_BUILD_DIR
#define MW_BUILD_DIR "build"
#endif

#define GW_BIN MW_BUILD_DIR "/examples/gateway"
#define TRADER_BIN MW_BUILD_DIR "/examples/trader"
#define START_MS 10000
#define RUN_MS 60000

typedef struct gw {
    mw_proc_t *p;
    int tcp, ws;
    char tcp_url[64], ws_url[64], book[128];
} gw_t;

static void gw_start(gw_t *g, const char *tag) {
    memset(g, 0, sizeof *g);
    snprintf(g->book, sizeof g->book, "/tmp/mw_gw_book_%s_%d", tag, (int)getpid());
    char *argv[] = {GW_BIN, "--tcp", "tcp://127.0.0.1:0", "--ws", "ws://127.0.0.1:0/gw", "--json",
                    "--book", g->book, NULL};
    g->p = mw_proc_start("gateway", argv);
    if (!mw_proc_wait_text(g->p, 0, 0, "\n", START_MS))
        fail_msg("gateway printed no ports; stderr: %s", g->p->out[1]);
    if (sscanf(g->p->out[0], "listening tcp=%d ws=%d", &g->tcp, &g->ws) != 2)
        fail_msg("gateway: unexpected first line: %s", g->p->out[0]);
    snprintf(g->tcp_url, sizeof g->tcp_url, "tcp://127.0.0.1:%d", g->tcp);
    snprintf(g->ws_url, sizeof g->ws_url, "ws://127.0.0.1:%d/gw", g->ws);
}

/* SIGTERM, exit 0, the JSON statistics line. */
static const char *gw_stop(gw_t *g) {
    int rc = mw_proc_stop(g->p, SIGTERM, RUN_MS);
    if (rc != 0) fail_msg("gateway exit %d; stderr: %s", rc, g->p->out[1]);
    const char *j = strchr(g->p->out[0], '{');
    assert_non_null(j);
    return j;
}

static uint64_t json_u64(const char *j, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(j, pat);
    if (!p) fail_msg("no %s in %s", key, j);
    return strtoull(p + strlen(pat), NULL, 10);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("cannot read %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t cap = 0, len = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 65536;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0) break;
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

static mw_proc_t *trader_start(const char *url, const char *mode, const char *count, const char *symbol,
                         const char *seed) {
    char *argv[] = {TRADER_BIN, "--url", (char *)url, "--mode", (char *)mode, "--count", (char *)count,
                    "--symbol", (char *)symbol, "--seed", (char *)seed, "--cancel-every", "7", "--json", NULL};
    return mw_proc_start("trader", argv);
}

static void trader_expect_ok(mw_proc_t *p, uint64_t count) {
    int rc = mw_proc_stop(p, 0, RUN_MS);
    if (rc != 0) fail_msg("trader exit %d\nstdout: %s\nstderr: %s", rc, p->out[0], p->out[1]);
    const char *j = strchr(p->out[0], '{');
    assert_non_null(j);
    assert_int_equal(json_u64(j, "orders"), count);
    assert_int_equal(json_u64(j, "accepted") + json_u64(j, "rejected"), count);
    assert_true(json_u64(j, "fills") > 0);
}

static void test_gateway_serves_traders_over_tcp_and_ws_in_every_mode(void **state) {
    (void)state;
    gw_t g;
    gw_start(&g, "modes");
    mw_proc_t *t[4];
    t[0] = trader_start(g.tcp_url, "spin", "3000", "AAPL", "1");
    t[1] = trader_start(g.tcp_url, "blocking", "3000", "MSFT", "2");
    t[2] = trader_start(g.ws_url, "event", "3000", "GOOG", "3");
    t[3] = trader_start(g.ws_url, "blocking", "3000", "AAPL", "4"); /* meets t[0] in AAPL */
    for (int i = 0; i < 4; i++) trader_expect_ok(t[i], 3000);
    const char *j = gw_stop(&g);
    assert_int_equal(json_u64(j, "orders"), 12000);
    assert_int_equal(json_u64(j, "rejected"), 0);
    /* (fills for a trader that has finished and left are undeliverable) */
    assert_int_equal(json_u64(j, "acks_out"), json_u64(j, "orders") + json_u64(j, "cancels")); /* barriers included */
    assert_int_equal(json_u64(j, "fills_out"), 2 * json_u64(j, "matches"));
    for (int i = 0; i < 4; i++) mw_proc_release(t[i]);
    mw_proc_release(g.p);
    unlink(g.book);
}

/* ---- a resting order on one listener, the aggressor on the other -------------------- */

static mw_clt_t *clt_open(const char *url, const char *serdes) {
    mw_clt_opts_t o;
    mw_clt_opts_init(&o);
    o.mode = MW_MODE_BLOCKING;
    o.conn.serdes = serdes;
    o.sync.timeout_ns = 10 * MW_NS_PER_S;
    mw_clt_t *c;
    mw_err_t err;
    mw_err_clear(&err);
    if (mw_clt_connect(&c, url, &gw_protocol, &o, &err) != 0) fail_msg("connect %s: %s", url, mw_err_text(&err));
    return c;
}

static void clt_order(mw_clt_t *c, uint64_t cl, int side, int64_t px, uint32_t qty) {
    new_order_t o;
    memset(&o, 0, sizeof o);
    o.cl_ord_id = cl;
    memcpy(o.symbol, "GOOG", 4);
    o.side = (uint8_t)side;
    o.price = px;
    o.qty = qty;
    assert_int_equal(mw_clt_send(c, new_order_schema(), &o), 0);
}

static void clt_expect(mw_clt_t *c, unsigned tag, gw_msg_t *m) {
    const mw_schema_t *s;
    int r = mw_clt_recv(c, &s, m, sizeof *m);
    if (r != 0) fail_msg("recv: %s", mw_clt_last_error(c));
    assert_int_equal(s->tag, tag);
}

static void test_gateway_fills_reach_the_owner_on_the_other_listener(void **state) {
    (void)state;
    gw_t g;
    gw_start(&g, "cross");
    mw_clt_t *tcp = clt_open(g.tcp_url, "fixed");
    mw_clt_t *ws = clt_open(g.ws_url, "text");
    gw_msg_t m;
    clt_order(tcp, 11, GW_SELL, 27000, 10);
    clt_expect(tcp, order_ack_TAG, &m);
    assert_int_equal(m.order_ack.status, GW_ACCEPTED);
    assert_int_equal(m.order_ack.leaves, 10);
    clt_order(ws, 11, GW_BUY, 27005, 4); /* the same cl_ord_id in another session is fine */
    clt_expect(ws, order_ack_TAG, &m);
    assert_int_equal(m.order_ack.status, GW_ACCEPTED);
    uint64_t ack_seq = m.order_ack.engine_seq;
    clt_expect(ws, fill_TAG, &m);
    assert_int_equal(m.fill.cl_ord_id, 11);
    assert_int_equal(m.fill.price, 27000); /* the resting order's price */
    assert_int_equal(m.fill.qty, 4);
    assert_int_equal(m.fill.leaves, 0);
    assert_int_equal(m.fill.engine_seq, ack_seq + 1);
    uint64_t match = m.fill.match_id;
    clt_expect(tcp, fill_TAG, &m);
    assert_int_equal(m.fill.cl_ord_id, 11);
    assert_int_equal(m.fill.qty, 4);
    assert_int_equal(m.fill.leaves, 6);
    assert_int_equal(m.fill.match_id, match);
    assert_int_equal(m.fill.engine_seq, ack_seq + 2);
    /* a duplicate cl_ord_id in one session is rejected with a reason */
    clt_order(tcp, 11, GW_SELL, 27000, 1);
    clt_expect(tcp, order_ack_TAG, &m);
    assert_int_equal(m.order_ack.status, GW_REJECTED);
    assert_string_equal(m.order_ack.reason, "duplicate cl_ord_id");
    mw_clt_free(tcp);
    mw_clt_free(ws);
    const char *j = gw_stop(&g);
    assert_int_equal(json_u64(j, "matches"), 1);
    char *book = slurp(g.book);
    assert_non_null(strstr(book, "GOOG sell 27000 tcp-"));
    assert_non_null(strstr(book, " 11 6/10\n"));
    free(book);
    mw_proc_release(g.p);
    unlink(g.book);
}

/* ---- the same orders, the same book ---------------------------------------------------- */

static char *one_run(const char *tag, const char *mode) {
    gw_t g;
    gw_start(&g, tag);
    mw_proc_t *t = trader_start(g.tcp_url, mode, "4000", "AMZN", "9");
    trader_expect_ok(t, 4000);
    mw_proc_release(t);
    gw_stop(&g);
    mw_proc_release(g.p);
    char *book = slurp(g.book);
    unlink(g.book);
    return book;
}

static void test_gateway_same_orders_give_the_same_book(void **state) {
    (void)state;
    char *a = one_run("det1", "spin");
    char *b = one_run("det2", "event");
    assert_true(strlen(a) > 0);
    /* session names hold the connection id, the same in both fresh gateways */
    assert_string_equal(a, b);
    free(a);
    free(b);
}

/* ---- sessions: a crash in the middle of a match --------------------------------------- */

static char *fault_free_book(const char *session, const char *symbol, uint64_t seed, uint64_t count) {
    engine_opts_t o;
    engine_opts_init(&o);
    engine_t *e;
    char err[200];
    assert_int_equal(engine_new(&e, &o, err, sizeof err), 0);
    assert_int_equal(engine_session(e, session), 0);
    gw_stream_t st = {.seed = seed, .count = count, .cancel_every = 7, .mid = 18950};
    memcpy(st.symbol, symbol, strlen(symbol));
    for (uint64_t k = 0; k < gw_stream_len(&st); k++) {
        gw_msg_t m;
        if (gw_stream_msg(&st, k, &m) == new_order_TAG) engine_new_order(e, 0, &m.new_order);
        else engine_cancel(e, 0, &m.cancel);
    }
    char *book = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&book, &len);
    engine_book_write(e, f);
    fclose(f);
    engine_free(e);
    return book;
}

static void test_gateway_rebuilds_its_engine_after_a_crash_between_two_fills(void **state) {
    (void)state;
    char dir[] = "/tmp/mw_gwcrash_XXXXXX";
    if (!mkdtemp(dir)) fail_msg("mkdtemp: %s", strerror(errno));
    char jdir[64], tdir[64], book[64], url[64], listen[64];
    snprintf(jdir, sizeof jdir, "%s/gw", dir);
    snprintf(tdir, sizeof tdir, "%s/tr", dir);
    snprintf(book, sizeof book, "%s/book", dir);
    assert_int_equal(mkdir(jdir, 0700), 0);
    assert_int_equal(mkdir(tdir, 0700), 0);
    char *g1[] = {GW_BIN, "--tcp", "tcp://127.0.0.1:0", "--journal", jdir, "--crash-after", "5001", NULL};
    mw_proc_t *gw = mw_proc_start("gateway", g1);
    assert_true(mw_proc_wait_text(gw, 0, 0, "\n", START_MS));
    int port = 0;
    assert_int_equal(sscanf(gw->out[0], "listening tcp=%d", &port), 1);
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    snprintf(listen, sizeof listen, "tcp://127.0.0.1:%d", port);
    char *targv[] = {TRADER_BIN, "--url", url, "--mode", "blocking", "--count", "3000", "--symbol", "AAPL",
                     "--seed", "5", "--cancel-every", "7", "--session", "T1", "--journal", tdir, "--json", NULL};
    mw_proc_t *tr = mw_proc_start("trader", targv);
    /* the gateway kills itself in the middle of a match */
    int rc = mw_proc_stop(gw, 0, RUN_MS);
    if (rc != 128 + SIGKILL) fail_msg("gateway exit %d, stderr: %s", rc, gw->out[1]);
    assert_non_null(strstr(gw->out[1], "SIGKILL in the middle of a match"));
    mw_proc_release(gw);
    char *g2[] = {GW_BIN, "--tcp", listen, "--journal", jdir, "--book", book, "--json", NULL};
    gw = mw_proc_start("gateway", g2);
    if (!mw_proc_wait_text(gw, 0, 0, "\n", START_MS)) fail_msg("restart: %s", gw->out[1]);
    rc = mw_proc_stop(tr, 0, RUN_MS);
    if (rc != 0) fail_msg("trader exit %d\nstdout: %s\nstderr: %s", rc, tr->out[0], tr->out[1]);
    const char *tj = strchr(tr->out[0], '{');
    assert_non_null(tj);
    assert_int_equal(json_u64(tj, "accepted"), 3000);
    assert_true(json_u64(tj, "reconnects") >= 1);
    rc = mw_proc_stop(gw, SIGTERM, RUN_MS);
    if (rc != 0) fail_msg("gateway exit %d; stderr: %s", rc, gw->out[1]);
    const char *j = strchr(gw->out[0], '{');
    assert_non_null(j);
    assert_int_equal(json_u64(j, "rebuilt_sessions"), 1);
    assert_true(json_u64(j, "rebuilt_steps") >= 1000);
    assert_int_equal(json_u64(j, "rebuilt_surplus"), 1); /* the resting order's fill */
    assert_int_equal(json_u64(j, "dups_skipped"), 1);    /* the interrupted order, handed over again */
    assert_int_equal(json_u64(j, "orders"), 3000);
    char *want = fault_free_book("tcp/T1", "AAPL", 5, 3000);
    char *got = slurp(book);
    assert_true(strlen(want) > 0);
    assert_string_equal(got, want);
    free(want);
    free(got);
    mw_proc_release(tr);
    mw_proc_release(gw);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_gateway_and_trader_usage_errors_exit_1(void **state) {
    (void)state;
    char *const cases[][8] = {
        {GW_BIN, NULL},
        {GW_BIN, "--tcp", "ws://127.0.0.1:0/x", NULL},
        {GW_BIN, "--ws", "tcp://127.0.0.1:0", NULL},
        {GW_BIN, "--tcp", "tcp://127.0.0.1:0", "--symbols", "A,A", NULL},
        {GW_BIN, "--tcp", "tcp://127.0.0.1:0", "--journal", "/nonexistent/dir", NULL},
        {TRADER_BIN, NULL},
        {TRADER_BIN, "--url", "tcp://127.0.0.1:1", "--mode", "fast", NULL},
        {TRADER_BIN, "--url", "tcp://127.0.0.1:1", "--window", "0", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mw_proc_t *p = mw_proc_start("usage", cases[i]);
        int rc = mw_proc_stop(p, 0, START_MS);
        if (rc != 1) fail_msg("case %zu: exit %d, stderr: %s", i, rc, p->out[1]);
        assert_non_null(strstr(p->out[1], "usage:"));
        mw_proc_release(p);
    }
    /* a gateway that is not there: exit 2 with the reason */
    char *argv[] = {TRADER_BIN, "--url", "tcp://127.0.0.1:1", NULL};
    mw_proc_t *p = mw_proc_start("trader", argv);
    assert_int_equal(mw_proc_stop(p, 0, START_MS), 2);
    assert_non_null(strstr(p->out[1], "refused"));
    mw_proc_release(p);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_gateway_serves_traders_over_tcp_and_ws_in_every_mode, mw_proc_release_all),
        cmocka_unit_test_teardown(test_gateway_fills_reach_the_owner_on_the_other_listener, mw_proc_release_all),
        cmocka_unit_test_teardown(test_gateway_same_orders_give_the_same_book, mw_proc_release_all),
        cmocka_unit_test_teardown(test_gateway_rebuilds_its_engine_after_a_crash_between_two_fills,
                                  mw_proc_release_all),
        cmocka_unit_test_teardown(test_gateway_and_trader_usage_errors_exit_1, mw_proc_release_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
