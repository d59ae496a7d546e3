/* test_review3.c - review 3 findings, each a reproduction.
 *
 * 1. An event Svc marks an accepted slot open (accept_one) before its
 *    worker attaches the driver (attach_posted, mw__drv_start): a sender
 *    that finds the slot open in between (mw_svc_broadcast walks every open
 *    slot) runs the driver's send path on a driver that has no conn, io or
 *    cfg yet (NULL on a slot's first use), unsynchronised with the
 *    worker's mw__drv_start.
 */
#include "mw_test.h"

#include "test_proto.h"

#include "lock_impl.h"
#include "mw_svc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 10000

/* ---- 1. broadcast while connections are being accepted ---------------------- */

#define NCLIENTS 64

typedef struct bcast {
    mw_svc_t *svc;
    atomic_bool stop;
    atomic_int accepted;
    atomic_ulong sent;
} bcast_t;

static void b_accept(mw_svc_t *s, mw_conn_id_t id, void *ud) {
    (void)s;
    (void)id;
    atomic_fetch_add(&((bcast_t *)ud)->accepted, 1);
}

static void *bcast_main(void *arg) {
    bcast_t *b = arg;
    ping_t m = {.seq = 1};
    while (!atomic_load(&b->stop)) atomic_fetch_add(&b->sent, (unsigned long)mw_svc_broadcast(b->svc, ping_schema(), &m));
    return NULL;
}

static bool all_accepted(void *ud) { return atomic_load(&((bcast_t *)ud)->accepted) >= NCLIENTS; }

static void test_review3_broadcast_while_accepting(void **state) {
    (void)state;
    bcast_t *b = calloc(1, sizeof *b);
    assert_non_null(b);
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.mode = MW_MODE_EVENT;
    o.event.workers = 2; /* every other connection is attached by a posted request */
    o.on_accept = b_accept;
    o.ud = b;
    mw_err_t err = {0};
    if (mw_svc_listen(&b->svc, "tcp://127.0.0.1:0", &test_protocol, &o, &err) != 0)
        fail_msg("listen: %s", mw_err_text(&err));
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, bcast_main, b), 0);
    int fds[NCLIENTS];
    for (int i = 0; i < NCLIENTS; i++) fds[i] = mw_test_raw_connect(mw_svc_port(b->svc));
    assert_true(mw_wait_until(all_accepted, b, WAIT_MS));
    atomic_store(&b->stop, true);
    pthread_join(th, NULL);
    mw_svc_free(b->svc);
    for (int i = 0; i < NCLIENTS; i++) close(fds[i]);
    free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_review3_broadcast_while_accepting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
