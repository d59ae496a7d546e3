/* test_matrix.c - the end-to-end body (tests/util/e2e.c) over the matrix
 * transport (tcp, tls, ws, wss) x Clt mode (spin, blocking, event) x serdes
 * (text, fixed, msgpack) x backend (epoll, libevent: the event Svc's workers
 * and the event Clt's io; spin runs over its own direct selector, blocking
 * over epoll), so every transport runs over every backend.
 *
 * Each case: a Svc in the Clt's mode echoes N messages of the test stream,
 * each echo checked field by field; the Svc then closes the connection, the
 * Clt reconnects (event: its own reconnect; spin/blocking: a new Clt) and N
 * more are echoed and checked. The event Clt's io is polled by the test
 * thread between sends (tests/test_e2e.c runs it on a poll thread).
 */
#include "e2e.h"

#include <stdio.h>

#define N 250 /* messages per connection: two connections per case */

static const char *const schemes[] = {"tcp", "tls", "ws", "wss"};
static const char *const serdes[] = {"text", "fixed", "msgpack"};
static const struct {
    mw_mode_t mode;
    const char *backend;
} drivers[] = {
    {MW_MODE_SPIN, NULL},
    {MW_MODE_BLOCKING, NULL},
    {MW_MODE_EVENT, "epoll"},
    {MW_MODE_EVENT, "libevent"},
};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define NCASES (COUNT(schemes) * COUNT(drivers) * COUNT(serdes))

static e2e_case_t cases[NCASES];
static struct CMUnitTest tests[NCASES];

int main(void) {
    size_t n = 0;
    for (size_t t = 0; t < COUNT(schemes); t++)
        for (size_t d = 0; d < COUNT(drivers); d++)
            for (size_t s = 0; s < COUNT(serdes); s++) {
                cases[n] = (e2e_case_t){.scheme = schemes[t], .mode = drivers[d].mode,
                                        .backend = drivers[d].backend, .serdes = serdes[s], .n = N,
                                        .reconnect = true};
                tests[n] = e2e_test(&cases[n], "test_matrix");
                n++;
            }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
