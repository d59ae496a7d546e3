/* test_driver.c - the one connection driver (serdes/driver.c) on its own,
 * over in-process pair streams and the direct selector: no sockets, no
 * threads, a fake clock. Delivery in order across tiny reads, backpressure
 * (MW_EAGAIN, then on_drain, nothing lost), paused reads, pull mode,
 * buffers kept while traffic flows and given back when idle, the idle
 * timeout, and a close asked for inside a callback. */
#include <stdlib.h>
#include <string.h>

#include "buf_impl.h"
#include "drv_impl.h"
#include "mw_clock.h"
#include "mw_io.h"
#include "mw_test.h"
#include "test_proto.h"
#include "clock_impl.h"
#include "conn_impl.h"
#include "stream_impl.h"

#define N 2000
#define T0 ((uint64_t)1000 * MW_NS_PER_S)

typedef struct end {
    mw__conn_t conn;
    mw__drv_t drv;
    mw__drv_cfg_t cfg;
    uint64_t got, next_seq, drains, ups, gone;
    int closes, close_reason;
    bool bad_order;
    int close_at;      /* close from inside on_msg at this message (0: never) */
    uint64_t to_send, sent;
} end_t;

typedef struct fx {
    mw_clock_t clock;
    mw_io_t *io;
    end_t a, b;
} fx_t;

static bool on_msg(mw__drv_t *d, const mw_schema_t *s, const void *msg) {
    end_t *e = d->ud;
    if (s != ping_schema() || ((const ping_t *)msg)->seq != e->got + 1) e->bad_order = true;
    e->got++;
    if (e->close_at && e->got == (uint64_t)e->close_at) mw__drv_close(d, MW_ESTATE, false);
    return true;
}

static void send_more(end_t *e) {
    while (e->sent < e->to_send) {
        ping_t p = {.seq = e->sent + 1};
        int r = mw__drv_send(&e->drv, ping_schema(), &p);
        if (r == MW_EAGAIN) return; /* on_drain brings us back */
        assert_int_equal(r, 0);
        e->sent++;
    }
}

static void on_drain(mw__drv_t *d) {
    end_t *e = d->ud;
    e->drains++;
    send_more(e);
}

static void on_up(mw__drv_t *d) { ((end_t *)d->ud)->ups++; }

static void on_close(mw__drv_t *d, int reason) {
    end_t *e = d->ud;
    e->closes++;
    e->close_reason = reason;
}

static void on_gone(mw__drv_t *d) { ((end_t *)d->ud)->gone++; }

static int no_post(mw__drv_t *d, void (*fn)(mw__drv_t *d)) {
    (void)d;
    (void)fn;
    fail_msg("the driver posted a request from its own thread");
    return MW_ENOMEM;
}

static void cfg_init(end_t *e, bool push) {
    e->cfg = (mw__drv_cfg_t){.on_msg = push ? on_msg : NULL, .on_up = on_up, .on_drain = on_drain,
                             .on_close = on_close, .on_gone = on_gone, .post = no_post, .budget = -1};
}

/* a and b over a pair whose rings hold `cap` bytes and whose reads return at
 * most 7 bytes: every frame arrives split. */
static int setup(void **state) {
    fx_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    mw__clock_fake_init(&f->clock, T0);
    mw_io_opts_t io;
    mw_io_opts_init(&io);
    io.backend = "direct";
    io.clock = &f->clock;
    mw_err_t err;
    if (mw_io_new(&f->io, &io, &err) < 0) return -1;
    mw_stream_t *sa, *sb;
    if (mw__pair_new(&sa, &sb, 512, 7) < 0) return -1;
    mw_conn_opts_t co;
    mw__conn_opts_init(&co);
    co.max_msg = 256;
    co.rx_buf = co.tx_buf = 1024;
    if (mw__conn_init(&f->a.conn, sa, &test_protocol, &co, &err) < 0) return -1;
    if (mw__conn_init(&f->b.conn, sb, &test_protocol, &co, &err) < 0) return -1;
    cfg_init(&f->a, true);
    cfg_init(&f->b, true);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx_t *f = *state;
    mw__drv_stop(&f->a.drv);
    mw__drv_stop(&f->b.drv);
    mw__conn_fini(&f->a.conn);
    mw__conn_fini(&f->b.conn);
    mw_io_free(f->io);
    free(f);
    return 0;
}

static void start(fx_t *f) {
    assert_int_equal(mw__drv_start(&f->a.drv, f->io, &f->a.conn, &f->a.cfg, &f->a), 0);
    assert_int_equal(mw__drv_start(&f->b.drv, f->io, &f->b.conn, &f->b.cfg, &f->b), 0);
    mw__drv_go(&f->a.drv);
    mw__drv_go(&f->b.drv);
    assert_true(mw__drv_up(&f->a.drv) && mw__drv_up(&f->b.drv)); /* a pair has no handshake */
    assert_int_equal(f->a.ups + f->b.ups, 2);
}

/* Polls until cond or `max` polls; returns the polls it took. */
static int poll_until(fx_t *f, bool (*cond)(fx_t *f), int max) {
    int i = 0;
    while (!cond(f) && i++ < max) mw_io_poll(f->io, 0);
    return i;
}

static bool b_has_all(fx_t *f) { return f->b.got >= f->a.to_send; }

static void test_driver_push_delivers_in_order_and_drains(void **state) {
    fx_t *f = *state;
    start(f);
    f->a.to_send = N;
    send_more(&f->a);
    assert_true(f->a.sent < N); /* 1 KiB of tx and 512 B of pair: most must wait */
    poll_until(f, b_has_all, 1000000);
    assert_int_equal(f->b.got, N);
    assert_false(f->b.bad_order);
    assert_int_equal(f->a.sent, N);
    assert_true(f->a.drains > 0);
    assert_int_equal(f->a.closes + f->b.closes, 0);
}

static void test_driver_paused_reads_hold_messages_until_resumed(void **state) {
    fx_t *f = *state;
    start(f);
    mw__drv_pause(&f->b.drv, true);
    f->a.to_send = 200;
    send_more(&f->a);
    for (int i = 0; i < 1000; i++) mw_io_poll(f->io, 0);
    assert_int_equal(f->b.got, 0);
    assert_true(f->a.sent < 200); /* the paused reader pushed back */
    mw__drv_pause(&f->b.drv, false);
    poll_until(f, b_has_all, 1000000);
    assert_int_equal(f->b.got, 200);
    assert_false(f->b.bad_order);
}

/* Pull mode: the io only fills; the owner decodes with mw__drv_next. */
static void test_driver_pull_mode_fills_and_the_owner_decodes(void **state) {
    fx_t *f = *state;
    cfg_init(&f->b, false);
    start(f);
    f->a.to_send = 300;
    send_more(&f->a);
    uint64_t got = 0;
    for (int i = 0; i < 1000000 && got < 300; i++) {
        mw_io_poll(f->io, 0);
        const mw_schema_t *s;
        test_msg_t m;
        int r;
        while ((r = mw__drv_next(&f->b.drv, &s, &m, sizeof m, false)) == 0) {
            assert_int_equal(m.ping.seq, got + 1);
            got++;
        }
        assert_int_equal(r, MW_EAGAIN);
    }
    assert_int_equal(got, 300);
}

static uint64_t held(const mw__conn_t *c) {
    mw_conn_stats_t st;
    mw__conn_stats(c, &st);
    return st.buffer_bytes;
}

/* While messages flow, both ends keep their buffers (no pool round trip per
 * message: the thread's pool does not move) once traffic came twice within
 * a sweep period, and once they have been idle for a whole sweep period of
 * their io, the buffers go back. */
static void test_driver_keeps_buffers_while_traffic_flows_and_gives_them_back_when_idle(void **state) {
    fx_t *f = *state;
    start(f);
    assert_int_equal(held(&f->a.conn) + held(&f->b.conn), 0);
    size_t pool = 0;
    for (uint64_t i = 1; i <= 100; i++) {
        f->a.to_send = i;
        send_more(&f->a);
        poll_until(f, b_has_all, 100000);
        assert_int_equal(f->b.got, i);
        /* traffic twice within a sweep period shows a busy connection */
        if (i >= 2) assert_true(held(&f->a.conn) > 0); /* the tx buffer, empty again */
        if (i >= 2) assert_true(held(&f->b.conn) > 0); /* the rx buffer and the decode scratch */
        if (i == 3) pool = mw__pool_thread_bytes();
        if (i > 3) assert_int_equal(mw__pool_thread_bytes(), pool);
        mw__clock_fake_advance(&f->clock, MW__IO_KEEP_NS / 4); /* traffic within every period */
    }
    assert_false(f->b.bad_order);
    /* steady traffic: the sweep period has grown, to at most MW__IO_KEEP_MAX_NS */
    mw__clock_fake_advance(&f->clock, MW__IO_KEEP_MAX_NS);
    mw_io_poll(f->io, 0);
    assert_true(held(&f->b.conn) > 0); /* not before a whole period without traffic */
    mw__clock_fake_advance(&f->clock, MW__IO_KEEP_MAX_NS);
    mw_io_poll(f->io, 0);
    assert_int_equal(held(&f->a.conn), 0);
    assert_int_equal(held(&f->b.conn), 0);
    f->a.to_send = 101; /* and they come back with the next message */
    send_more(&f->a);
    poll_until(f, b_has_all, 100000);
    assert_int_equal(f->b.got, 101);
    assert_int_equal(f->a.closes + f->b.closes, 0);
}

static void test_driver_idle_timeout_closes_with_its_reason(void **state) {
    fx_t *f = *state;
    f->b.cfg.idle_timeout_ns = 100 * MW_NS_PER_MS;
    start(f);
    mw__clock_fake_advance(&f->clock, 99 * MW_NS_PER_MS);
    mw_io_poll(f->io, 0);
    assert_int_equal(f->b.closes, 0);
    f->a.to_send = 1; /* input moves the deadline */
    send_more(&f->a);
    while (f->b.got < 1) mw_io_poll(f->io, 0);
    mw__clock_fake_advance(&f->clock, 99 * MW_NS_PER_MS);
    mw_io_poll(f->io, 0);
    assert_int_equal(f->b.closes, 0);
    mw__clock_fake_advance(&f->clock, 2 * MW_NS_PER_MS);
    mw_io_poll(f->io, 0);
    assert_int_equal(f->b.closes, 1);
    assert_int_equal(f->b.close_reason, MW_ETIMEDOUT);
    assert_non_null(strstr(mw__conn_last_error(&f->b.conn), "nothing received for 100 ms"));
    assert_int_equal(f->b.gone, 1); /* linger 0: released at once */
    assert_false(mw__drv_attached(&f->b.drv));
}

/* A close from inside on_msg takes effect when the callback returns: no
 * message after it is delivered, on_close once, the driver lets go. */
static void test_driver_close_inside_on_msg_is_deferred(void **state) {
    fx_t *f = *state;
    f->b.close_at = 10;
    start(f);
    f->a.to_send = 100;
    send_more(&f->a);
    for (int i = 0; i < 100000 && f->b.gone == 0; i++) mw_io_poll(f->io, 0);
    assert_int_equal(f->b.got, 10);
    assert_int_equal(f->b.closes, 1);
    assert_int_equal(f->b.close_reason, MW_ESTATE);
    assert_int_equal(f->b.gone, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_driver_push_delivers_in_order_and_drains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_driver_paused_reads_hold_messages_until_resumed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_driver_pull_mode_fills_and_the_owner_decodes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_driver_keeps_buffers_while_traffic_flows_and_gives_them_back_when_idle,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_driver_idle_timeout_closes_with_its_reason, setup, teardown),
        cmocka_unit_test_setup_teardown(test_driver_close_inside_on_msg_is_deferred, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
