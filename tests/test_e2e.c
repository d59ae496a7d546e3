/* test_e2e.c - the end-to-end body (tests/util/e2e.c) over TCP loopback in
 * the cases the matrix (tests/test_matrix.c) leaves out: more messages per
 * case, the msgpack-array serdes, event-mode Clts on an io that its own poll
 * thread runs (the test thread sends from outside it), and per backend a Svc
 * with 3 workers serving 4 Clts at once.
 *
 *   spin      the Svc runs mw_svc_recv on its own thread; the Clt polls
 *             send/recv in the test thread.
 *   blocking  the same with blocking calls; every wait has a timeout.
 *   event     the Svc runs on worker threads (epoll or libevent); the Clts
 *             are attached to one io that mw_io_start runs, and check echoes
 *             in on_msg.
 */
#include "e2e.h"

#include <stdio.h>

#define WINDOW 64  /* messages in flight per Clt */
#define N_ONE 2000 /* messages per case with one Clt */
#define N_MANY 600 /* messages per Clt with several Clts */

static const char *const serdes_names[] = {"fixed", "text", "msgpack", "msgpack-array"};
static const char *const backends[] = {"epoll", "libevent"};
#define NSERDES 4
#define NBACKENDS 2
#define NCASES (2 * NSERDES + NBACKENDS * NSERDES + NBACKENDS * 2)

static e2e_case_t cases[NCASES];
static struct CMUnitTest tests[NCASES];

static void add_case(int *n, mw_mode_t mode, const char *serdes, const char *backend, uint32_t workers,
                     int nclts) {
    e2e_case_t *c = &cases[*n];
    *c = (e2e_case_t){.scheme = "tcp", .mode = mode, .serdes = serdes, .backend = backend, .workers = workers,
                      .io_thread = true, .nclts = nclts, .n = nclts > 1 ? N_MANY : N_ONE, .window = WINDOW};
    if (mode == MW_MODE_EVENT)
        snprintf(c->name, sizeof c->name, "test_e2e_echo_%s_%s_%s_%uw_%dclt", mw_mode_name(mode), backend,
                 serdes, workers, nclts);
    else
        snprintf(c->name, sizeof c->name, "test_e2e_echo_%s_%s", mw_mode_name(mode), serdes);
    tests[*n] = e2e_test(c, NULL);
    (*n)++;
}

int main(void) {
    int n = 0;
    for (int s = 0; s < NSERDES; s++) add_case(&n, MW_MODE_SPIN, serdes_names[s], NULL, 0, 1);
    for (int s = 0; s < NSERDES; s++) add_case(&n, MW_MODE_BLOCKING, serdes_names[s], NULL, 0, 1);
    for (int b = 0; b < NBACKENDS; b++)
        for (int s = 0; s < NSERDES; s++) add_case(&n, MW_MODE_EVENT, serdes_names[s], backends[b], 1, 1);
    for (int b = 0; b < NBACKENDS; b++) {
        add_case(&n, MW_MODE_EVENT, "fixed", backends[b], 3, 4);
        add_case(&n, MW_MODE_EVENT, "text", backends[b], 3, 4);
    }
    if (n != NCASES) {
        fprintf(stderr, "test_e2e: %d cases registered, %d expected\n", n, NCASES);
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
