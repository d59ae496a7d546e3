/* test_svc_stalled.c - stalled peers do not lock a Svc: 200 clients that
 * connect and send nothing, or half a frame and stop, are closed by the
 * first-message and receive timeouts (with reasons that say which), and a
 * legitimate client that comes after them is served, while more of them
 * hold every slot. */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mw_clt.h"
#include "mw_svc.h"
#include "mw_test.h"
#include "svc_harness.h"
#include "test_proto.h"
#include "clock_impl.h"

#define WAIT_MS 20000
#define N_STALLED 200

/* The fixture is tests/util/svc_harness.h (an echoing Svc, its Clt); the
 * stalled peers are raw sockets kept here (more than it tracks). */
typedef struct stalled {
    int fds[N_STALLED];
    int n;
    atomic_int timeouts_partial, timeouts_silent, other_closes;
} stalled_t;

static void on_close(svh_t *f, mw_svc_t *s, mw_conn_id_t id, int reason) {
    stalled_t *st = f->ud;
    const char *why = mw_svc_conn_error(s, id);
    if (reason == MW_ETIMEDOUT && strstr(why, "still incomplete")) atomic_fetch_add(&st->timeouts_partial, 1);
    else if (reason == MW_ETIMEDOUT && strstr(why, "no message within")) atomic_fetch_add(&st->timeouts_silent, 1);
    else atomic_fetch_add(&st->other_closes, 1);
}

static int setup(void **state) { return svh_setup_ud(state, sizeof(stalled_t)) ? 0 : -1; }

static int teardown(void **state) {
    stalled_t *st = svh_ud(state);
    for (int i = 0; i < st->n; i++) close(st->fds[i]);
    return svh_teardown(state);
}

static bool only_the_client_left(void *ud) { return mw_svc_conn_count(((svh_t *)ud)->svc) == 1; }

static void test_svc_stalled_peers_are_closed_and_a_client_is_served(void **state) {
    svh_t *f = *state;
    stalled_t *sp = f->ud;
    mw_svc_opts_t o;
    f->mode = MW_MODE_EVENT;
    svh_svc_opts(f, &o);
    f->on_msg = svh_echo;
    f->on_close = on_close;
    o.max_connections = 64; /* fewer slots than stalled peers */
    o.rx_timeout_ns = 300 * MW_NS_PER_MS;
    o.first_msg_timeout_ns = 1000 * MW_NS_PER_MS; /* longer: a half frame meets the receive timeout first */
    svh_listen(f, "tcp", &o);
    int port = f->port;
    /* half the peers send the first 3 bytes of a frame's length, half nothing */
    for (int i = 0; i < N_STALLED; i++) {
        sp->fds[sp->n++] = mw_test_raw_connect(port);
        if (i % 2 == 0) mw_test_raw_write(sp->fds[i], "\x00\x00\x00", 3);
    }
    /* a real client, connecting after all of them */
    mw_clt_opts_t co;
    mw_clt_opts_init(&co);
    mw_err_t err = {0};
    co.connect_timeout_ns = 10 * MW_NS_PER_S;
    uint64_t t0 = mw_now_ns();
    mw_clt_t *c = NULL;
    int r = MW_ECLOSED;
    /* a full Svc closes newcomers at once: the client retries until a stalled peer's slot is free */
    uint64_t dl = mw__deadline_in(NULL, 10 * MW_NS_PER_S);
    while (r != 0 && !mw__deadline_passed(NULL, dl)) {
        mw_clt_free(c);
        c = NULL;
        if (mw_clt_connect(&c, f->url, &test_protocol, &co, &err) < 0) continue;
        ping_t p = {.seq = 1};
        if (mw_clt_send(c, ping_schema(), &p) < 0) continue;
        const mw_schema_t *sch;
        test_msg_t m;
        r = mw_clt_recv_busywait_timeout(c, &sch, &m, sizeof m, 200 * MW_NS_PER_MS);
    }
    if (c) svh_clt_adopt(f, c);
    if (r != 0) fail_msg("the client was not served: %s (%s)", mw_errname(r), c ? mw_clt_last_error(c) : err.text);
    uint64_t took = mw_now_ns() - t0;
    assert_true(took < 10 * MW_NS_PER_S);
    /* every stalled peer that got a slot was closed by a timeout, and said why */
    assert_true(mw_wait_until(only_the_client_left, f, WAIT_MS));
    mw_svc_stats_t st;
    mw_svc_stats(f->svc, &st);
    assert_true(atomic_load(&sp->timeouts_partial) > 0);
    assert_true(atomic_load(&sp->timeouts_silent) > 0);
    assert_int_equal(atomic_load(&sp->timeouts_partial) + atomic_load(&sp->timeouts_silent), st.accepted - 1);
    assert_int_equal(atomic_load(&sp->other_closes), 0);
    assert_true(st.refused_full > 0); /* the Svc was full meanwhile */
    /* and the client is still served */
    for (uint64_t i = 2; i < 20; i++) {
        ping_t p = {.seq = i};
        assert_int_equal(mw_clt_send(c, ping_schema(), &p), 0);
        const mw_schema_t *sch;
        test_msg_t m;
        assert_int_equal(mw_clt_recv_busywait_timeout(c, &sch, &m, sizeof m, 5 * MW_NS_PER_S), 0);
        assert_int_equal(m.ping.seq, i);
    }
}

/* The defaults themselves protect a Svc nobody configured. */
static void test_svc_defaults_protect_against_stalled_peers(void **state) {
    (void)state;
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    assert_true(o.rx_timeout_ns > 0 && o.rx_timeout_ns <= 30 * MW_NS_PER_S);
    assert_true(o.first_msg_timeout_ns > 0);
    assert_true(o.handshake_timeout_ns > 0);
    assert_true(o.max_connections >= 1024);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_svc_stalled_peers_are_closed_and_a_client_is_served, setup, teardown),
        cmocka_unit_test(test_svc_defaults_protect_against_stalled_peers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
