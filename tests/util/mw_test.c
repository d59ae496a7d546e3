/* mw_test.c - see mw_test.h. */
#include "mw_test.h"

#include "mw_tcp.h"
#include "tcp_impl.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

uint8_t *mw_guard_copy(mw_guard_t *g, const void *src, size_t n) {
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_pages = (n + pg - 1) / pg;
    if (data_pages == 0) data_pages = 1;
    g->maplen = (data_pages + 1) * pg;
    g->map = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g->map == MAP_FAILED) { fail_msg("mmap failed"); }
    uint8_t *guard = (uint8_t *)g->map + data_pages * pg;
    if (mprotect(guard, pg, PROT_NONE) != 0) { fail_msg("mprotect failed"); }
    g->p = guard - n;
    g->n = n;
    if (n) memcpy(g->p, src, n);
    return g->p;
}

void mw_guard_free(mw_guard_t *g) {
    if (g->map && g->map != MAP_FAILED) munmap(g->map, g->maplen);
    g->map = NULL;
}

static atomic_ulong n_allocs;
static atomic_int hooks_on;

#if defined(MW_SANITIZED)
int __sanitizer_install_malloc_and_free_hooks(void (*m)(const volatile void *, size_t),
                                               void (*f)(const volatile void *));
static void on_malloc(const volatile void *p, size_t n) {
    (void)p;
    (void)n;
    atomic_fetch_add_explicit(&n_allocs, 1, memory_order_relaxed);
}
static void on_free(const volatile void *p) { (void)p; }
__attribute__((constructor)) static void install_hooks(void) {
    __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
    /* Prove the hook fires before trusting a count of zero. */
    unsigned long before = atomic_load(&n_allocs);
    void *volatile p = malloc(16);
    free(p);
    if (atomic_load(&n_allocs) > before) atomic_store(&hooks_on, 1);
}
#endif

bool mw_alloc_counting_works(void) { return atomic_load(&hooks_on) != 0; }
uint64_t mw_alloc_count(void) { return atomic_load(&n_allocs); }

bool mw_wait_until(bool (*cond)(void *ud), void *ud, int timeout_ms) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (cond(ud)) return true;
        clock_gettime(CLOCK_MONOTONIC, &t);
        long ms = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
        if (ms > timeout_ms) return cond(ud);
        sched_yield();
    }
}

void mw_fail_once(mw_failure_t *f, const char *fmt, ...) {
    int expect = 0;
    if (!atomic_compare_exchange_strong(&f->set, &expect, 1)) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->why, sizeof f->why, fmt, ap);
    va_end(ap);
    atomic_store(&f->set, 2);
}

void mw_assert_no_failure(mw_failure_t *f) {
    if (atomic_load(&f->set) == 0) return;
    while (atomic_load(&f->set) != 2) sched_yield(); /* the text is being written */
    fail_msg("%s", f->why);
}

int mw_run(const char *cmd, char *out, size_t cap) {
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    size_t n = 0;
    char tmp[4096];
    size_t r;
    while ((r = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (out && n + 1 < cap) {
            size_t k = r < cap - 1 - n ? r : cap - 1 - n;
            memcpy(out + n, tmp, k);
            n += k;
        }
    }
    if (out && cap) out[n] = '\0';
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int write_file(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    if (!fp) return -1;
    int rc = fputs(text, fp) < 0 ? -1 : 0;
    return fclose(fp) == 0 ? rc : -1;
}

int mw_tmpdir_script(char *dir, size_t cap, const char *tag, const char *const files[][2], size_t nfiles,
                     const char *script) {
    snprintf(dir, cap, "/tmp/mw_%s_XXXXXX", tag);
    if (!mkdtemp(dir)) return -1;
    char path[512], cmd[768];
    for (size_t i = 0; i < nfiles; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i][0]);
        if (write_file(path, files[i][1]) < 0) return -1;
    }
    snprintf(cmd, sizeof cmd, "cd '%s' && sh '%s' > script.log 2>&1", dir, script);
    if (mw_run(cmd, NULL, 0) == 0) return 0;
    char log[4096];
    snprintf(cmd, sizeof cmd, "cat '%s/script.log'", dir);
    mw_run(cmd, log, sizeof log);
    fprintf(stderr, "%s in %s failed:\n%s\n", script, dir, log);
    return -1;
}

int mw_tmpdir_remove(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return mw_run(cmd, NULL, 0) == 0 ? 0 : -1;
}

typedef struct accept_try {
    mw__listener_t *l;
    mw_stream_t *s;
    int rc;
} accept_try_t;

static bool try_accept(void *ud) {
    accept_try_t *a = ud;
    a->rc = mw__listener_accept(a->l, &a->s, NULL);
    return a->rc != MW_EAGAIN;
}

mw_stream_t *mw_test_accept(mw__listener_t *l, int timeout_ms) {
    accept_try_t a = {.l = l};
    if (!mw_wait_until(try_accept, &a, timeout_ms)) fail_msg("no connection to accept within %d ms", timeout_ms);
    if (a.rc != 0) fail_msg("accept: %s", mw_strerror(a.rc));
    return a.s;
}

int mw_test_raw_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail_msg("socket: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) fail_msg("raw connect: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

void mw_test_raw_write(int fd, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) fail_msg("raw send: %s", strerror(errno));
        b += w;
        n -= (size_t)w;
    }
}

bool mw_test_ci(void) {
    const char *ci = getenv("CI");
    return ci && strcmp(ci, "true") == 0;
}

/* MW_TEST_PRETEND_MISSING=websockets,openssl makes those look missing, so
 * tests/test_run.c can check how skips are reported without uninstalling. */
static bool pretend_missing(const char *what) {
    const char *list = getenv("MW_TEST_PRETEND_MISSING");
    size_t n = strlen(what);
    for (const char *p = list; p && *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ',')) {
        if (strncmp(p, what, n) == 0 && (p[n] == ',' || p[n] == '\0')) return true;
    }
    return false;
}

bool mw_have_python_module(const char *mod) {
    if (pretend_missing(mod)) return false;
    static struct { char mod[32]; bool have; } seen[8];
    static size_t nseen;
    for (size_t i = 0; i < nseen; i++)
        if (strcmp(seen[i].mod, mod) == 0) return seen[i].have;
    char cmd[128];
    snprintf(cmd, sizeof cmd, MW_PYTHON " -c 'import %s' >/dev/null 2>&1", mod);
    bool have = access(MW_PYTHON, X_OK) == 0 && mw_run(cmd, NULL, 0) == 0;
    if (nseen < sizeof seen / sizeof seen[0] && strlen(mod) < sizeof seen[0].mod) {
        snprintf(seen[nseen].mod, sizeof seen[nseen].mod, "%s", mod);
        seen[nseen++].have = have;
    }
    return have;
}

bool mw_have_openssl_cli(void) {
    if (pretend_missing("openssl")) return false;
    static int have = -1;
    if (have < 0) have = mw_run("openssl version >/dev/null 2>&1", NULL, 0) == 0;
    return have == 1;
}

void mw_test_require(bool have, const char *what) {
    if (have) return;
    if (mw_test_ci()) fail_msg("%s is missing, and CI=true: install it (make deps)", what);
    print_message("skipping: %s is missing (make deps installs it)\n", what);
    skip();
}

static void skipped_test(void **state) { mw_test_require(false, *state); }

int mw_test_skip_group(const char *name, const struct CMUnitTest *tests, size_t n, const char *what) {
    struct CMUnitTest *t = calloc(n, sizeof *t);
    if (!t) return 1;
    for (size_t i = 0; i < n; i++)
        t[i] = (struct CMUnitTest){.name = tests[i].name, .test_func = skipped_test,
                                   .initial_state = (void *)what};
    int r = _cmocka_run_group_tests(name, t, n, NULL, NULL);
    free(t);
    return r;
}
