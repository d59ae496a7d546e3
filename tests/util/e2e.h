/* e2e.h - the one end-to-end body: a Svc and its Clts over a real transport,
 * run over the matrix transport x run mode x serdes x backend
 * (tests/test_matrix.c) and over the extra cases of tests/test_e2e.c (more
 * Clts, more workers, more messages, msgpack-array, an io thread).
 *
 * The Svc listens on <scheme>://127.0.0.1:0 (ws/wss on path /echo, tls/wss
 * with the shared certificates, the Clts verifying them) and echoes every
 * message to its sender. Each Clt sends the stream test_make_msg(i) (every
 * field kind, extremes included), at most `window` unanswered, and checks
 * every echo field by field, in order, with test_check_echo. Then the
 * counts on both sides, the Clt's stream stack (ws over tls over tcp, as
 * the scheme says) and that nothing was closed for bad input.
 *
 * The Svc runs in the Clts' mode: spin and blocking on their own thread
 * (spin over the direct selector, blocking over epoll), event on `workers`
 * worker threads over `backend`. The Clts:
 *   spin, blocking  the test thread sends, flushes and receives;
 *   event           the Clts sit on one io over `backend`; either the test
 *                   thread polls it between sends, or (io_thread) a poll
 *                   thread runs it and the test thread sends from outside.
 *
 * reconnect (one Clt): once the Svc has echoed the first n messages it
 * closes the connection (gracefully: the last echo arrives first); the Clt
 * reconnects (event: its own reconnect with backoff, on_close MW_ECLOSED
 * then on_connect; spin/blocking: recv reports MW_ECLOSED after the last
 * echo, and a new Clt connects) and n more messages are echoed and checked,
 * numbered on from n.
 *
 * Nothing sleeps: every wait polls a condition with a deadline.
 */
#ifndef MW_TEST_E2E_H
#define MW_TEST_E2E_H

#include <stdbool.h>
#include <stdint.h>

#include "mw_test.h"
#include "mw_mode.h"

#define E2E_MAX_CLTS 4

typedef struct e2e_case {
    char name[96];        /* the test's name (e2e_test fills it if empty) */
    const char *scheme;   /* "tcp", "tls", "ws", "wss" */
    mw_mode_t mode;       /* the Clts' and the Svc's */
    const char *serdes;   /* "fixed", "text", "msgpack", "msgpack-array" */
    const char *backend;  /* event mode: "epoll" or "libevent" (Svc workers and the Clts' io) */
    uint32_t workers;     /* event-mode Svc worker threads; 0: 1 */
    bool io_thread;       /* event mode: mw_io_start runs the Clts' io */
    int nclts;            /* 1 .. E2E_MAX_CLTS; 0: 1 */
    uint64_t n;           /* messages per Clt (per connection with reconnect) */
    uint32_t window;      /* messages in flight per Clt; 0: 32 */
    bool reconnect;       /* one Clt only: see above */
} e2e_case_t;

/* A cmocka test of case c (c must outlive the run): the body with its setup
 * and teardown, which frees everything even when the body fails half-way.
 * Fills c->name from the case ("<prefix>_<scheme>_<mode>[_<backend>]_<serdes>")
 * if it is empty. */
struct CMUnitTest e2e_test(e2e_case_t *c, const char *prefix);

/* tls and wss cases need the openssl command for the certificates: without
 * it the body skips (mw_test_require: fails under CI). */

#endif
