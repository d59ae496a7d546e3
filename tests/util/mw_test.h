/* mw_test.h - helpers shared by the cmocka test binaries. */
#ifndef MW_TEST_H
#define MW_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "tcp_impl.h"

/* ---- guard pages -----------------------------------------------------------
 * mw_guard_copy places a copy of src[0..n) so that its last byte is the last
 * byte before a PROT_NONE page: reading one byte past the end crashes (ASan
 * or SIGSEGV). Free with mw_guard_free. Aborts the test on mmap failure. */
typedef struct mw_guard { void *map; size_t maplen; uint8_t *p; size_t n; } mw_guard_t;
uint8_t *mw_guard_copy(mw_guard_t *g, const void *src, size_t n);
void mw_guard_free(mw_guard_t *g);

/* ---- allocation counting ---------------------------------------------------
 * Counts every malloc/calloc/realloc in the process (all threads, shared
 * libraries included) through the sanitizer allocator hooks. Works only in the
 * sanitizer build (the tests' build); mw_alloc_counting_works() says so. */
bool mw_alloc_counting_works(void);
uint64_t mw_alloc_count(void);

/* ---- waiting ---------------------------------------------------------------
 * Polls cond(ud) until it returns true or timeout_ms passes, yielding between
 * tries. Returns the last value of cond. Use instead of sleeping. */
bool mw_wait_until(bool (*cond)(void *ud), void *ud, int timeout_ms);

/* ---- failures on other threads ----------------------------------------------
 * A callback on another thread cannot fail the test itself: it records the
 * first failure with mw_fail_once (later ones are dropped), and the test
 * thread calls mw_assert_no_failure, which fails the test with that text. */
#define MW_FAILURE_CAP 320
typedef struct mw_failure {
    _Atomic int set; /* 0 none, 1 being written, 2 complete */
    char why[MW_FAILURE_CAP];
} mw_failure_t;
void mw_fail_once(mw_failure_t *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mw_assert_no_failure(mw_failure_t *f);

/* ---- running programs ------------------------------------------------------
 * Runs a shell command, captures up to cap-1 bytes of stdout into out (NUL
 * terminated, may be NULL), returns the exit status (or -1). */
int mw_run(const char *cmd, char *out, size_t cap);
/* Creates a temporary directory "/tmp/mw_<tag>_XXXXXX" (path into dir),
 * writes files[i][0] with contents files[i][1] into it, then runs
 * `sh <script>` there (script is one of the files). On failure the script's
 * output is printed. Returns 0 or -1. For test set-up such as generating
 * certificates with the openssl command line. */
int mw_tmpdir_script(char *dir, size_t cap, const char *tag, const char *const files[][2], size_t nfiles,
                     const char *script);
/* Removes a directory made by mw_tmpdir_script. 0 or -1. */
int mw_tmpdir_remove(const char *dir);

/* Accepts one connection from a nonblocking listener, waiting up to
 * timeout_ms; fails the test otherwise. */
struct mw__listener;
struct mw_stream;
struct mw_stream *mw_test_accept(struct mw__listener *l, int timeout_ms);

/* A plain TCP client socket to 127.0.0.1:port (TCP_NODELAY, 5 s send
 * timeout), for tests that play a misbehaving peer. Fails the test on error. */
int mw_test_raw_connect(int port);
/* Writes all n bytes (MSG_NOSIGNAL); fails the test on error. */
void mw_test_raw_write(int fd, const void *p, size_t n);

/* ---- certificates ----------------------------------------------------------
 * Path of a file of the shared test certificate set (tests/util/certs.c),
 * made on first use in one temporary directory per process, removed at exit:
 *   "ca.pem", "ca.key"      the test CA
 *   "srv.pem", "srv.key"    server certificate for localhost and 127.0.0.1
 *                           (subjectAltName), signed by ca.pem
 *   "other.pem"             an unrelated CA (a client trusting it rejects srv.pem)
 *   "wrong.pem", "wrong.key" server certificate for wrong.example only, signed
 *                           by ca.pem (host name mismatch)
 *   "cli.pem", "cli.key"    client certificate (clientAuth), signed by ca.pem
 *   "self.pem", "self.key"  self-signed server certificate for localhost
 *   "expired.pem"           srv.pem's key and names, signed by ca.pem, expired
 *                           in 2020 (its key is "srv.key")
 *   "x.cnf"                 the openssl configuration: a readable file with no
 *                           PEM data in it
 * Any other name gives a path in that directory (a log file, a name that
 * does not exist). The same name always gives the same pointer, valid until
 * exit (options may keep it); at most 32 names per process. Fails
 * the test if openssl cannot make the set (check mw_have_openssl_cli first to
 * skip instead). Call it from one thread at a time (not thread-safe). */
const char *mw_test_cert(const char *name);

/* Path of the Debian system python (independent peer for interop tests). */
#define MW_PYTHON "/usr/bin/python3"

/* ---- optional peers and tools ------------------------------------------------
 * Interop tests need independent peers: Debian's python3 with a module
 * (msgpack, websockets) or the openssl command. Without one, a test is
 * skipped with cmocka's skip() (counted and listed by name by tests/run.sh),
 * never passed; under CI (CI=true in the environment) it fails instead, since
 * there the peer must be installed.
 *
 * mw_have_python_module: MW_PYTHON exists and can `import mod` (cached).
 * mw_have_openssl_cli: the openssl command runs (cached).
 * Both say no for a name listed in MW_TEST_PRETEND_MISSING (comma-separated:
 * "openssl", or a python module name), to test the reporting of skips.
 * mw_test_ci: CI=true in the environment.
 * mw_test_require: returns if have; otherwise prints why, then skips the
 * calling test (or fails it under CI). Call it from a test body, not from a
 * setup function (cmocka counts a skip there as an error). */
bool mw_have_python_module(const char *mod);
bool mw_have_openssl_cli(void);
bool mw_test_ci(void);
void mw_test_require(bool have, const char *what);

/* Runs a group whose every test needs `what` (set-up included, such as
 * certificates made with the openssl command): the group as usual when have
 * is true, otherwise each test by name as a mw_test_require(false, what), so
 * every one is reported as skipped (failed under CI). */
#define mw_run_group_requiring(have, what, tests, setup, teardown)                                  \
    ((have) ? cmocka_run_group_tests(tests, setup, teardown)                                          \
            : mw_test_skip_group(#tests, tests, sizeof(tests) / sizeof((tests)[0]), what))
int mw_test_skip_group(const char *name, const struct CMUnitTest *tests, size_t n, const char *what);

#endif
