/* bench_journal.c - the session journal's append cost (core/journal_impl.h).
 *
 * Appends N OUT records of a 64-byte payload (the size of a small order in
 * the fixed serdes) to a fresh journal in a temporary directory, per fsync
 * policy, and prints CPU and wall nanoseconds per append; also crc32c over
 * the 88 checksummed bytes of such a record, the CPU instruction against the
 * tables. ALWAYS does a real msync per record, so it runs fewer records.
 * For NONE and INTERVAL it also times every append and prints the p50, p99,
 * p99.9 and max: the tail is where the file's growth and the page faults of
 * the mapping show (a session's ping-pong p99).
 * Usage: bench_journal [N]   (default 1000000) */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "journal_impl.h"
#include "mw_clock.h"

static uint64_t cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void run(const char *dir, const char *name, int policy, uint64_t n) {
    mw__jnl_opts_t o = {.dir = dir, .session = name, .fsync = policy};
    mw__jnl_t *j = NULL;
    mw_err_t err = {0};
    if (mw__jnl_open(&j, &o, &err) != 0) {
        fprintf(stderr, "open: %s\n", mw_err_text(&err));
        exit(1);
    }
    uint8_t p[64];
    memset(p, 0x41, sizeof p);
    bool timed = policy != MW__JNL_FSYNC_ALWAYS;
    uint32_t *lat = timed ? calloc(n, sizeof *lat) : NULL;
    if (timed && !lat) exit(1);
    uint64_t w0 = mw_now_ns(), c0 = cpu_ns(), t = w0;
    for (uint64_t s = 1; s <= n; s++) {
        p[0] = (uint8_t)s;
        if (mw__jnl_append(j, MW__JNL_OUT, s, p, sizeof p) != 0) {
            fprintf(stderr, "append: %s\n", mw__jnl_last_error(j));
            exit(1);
        }
        if (timed) {
            uint64_t u = mw_now_ns();
            lat[s - 1] = u - t > UINT32_MAX ? UINT32_MAX : (uint32_t)(u - t);
            t = u;
        }
    }
    uint64_t c1 = cpu_ns(), w1 = mw_now_ns();
    mw__jnl_stats_t st;
    mw__jnl_stats(j, &st);
    printf("%-9s %9" PRIu64 " appends: %7.1f ns cpu, %7.1f ns wall per append, %" PRIu64 " fsyncs\n", name, n,
           (double)(c1 - c0) / (double)n, (double)(w1 - w0) / (double)n, st.fsyncs);
    if (timed) {
        qsort(lat, n, sizeof *lat, cmp_u32);
        printf("%-9s append wall ns (with a clock read): p50 %u, p99 %u, p99.9 %u, max %u\n", name, lat[n / 2],
               lat[n * 99 / 100], lat[n * 999 / 1000], lat[n - 1]);
        free(lat);
    }
    char path[256];
    snprintf(path, sizeof path, "%s", mw__jnl_path(j));
    mw__jnl_close(j);
    unlink(path);
}

static void crc(void) {
    uint8_t b[88];
    memset(b, 0x37, sizeof b);
    uint32_t acc = 0;
    const int n = 10000000;
    uint64_t c0 = cpu_ns();
    for (int i = 0; i < n; i++) acc += mw__crc32c(0, b, sizeof b), b[0] = (uint8_t)i;
    uint64_t c1 = cpu_ns();
    for (int i = 0; i < n; i++) acc += mw__crc32c_sw(0, b, sizeof b), b[0] = (uint8_t)i;
    uint64_t c2 = cpu_ns();
    printf("crc32c 88 bytes: %.1f ns (%s), %.1f ns (tables)  [%u]\n", (double)(c1 - c0) / n,
           mw__crc32c_hw() ? "sse4.2" : "tables", (double)(c2 - c1) / n, acc & 1);
}

int main(int argc, char **argv) {
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    char dir[] = "/tmp/mw_bench_journal_XXXXXX";
    if (!mkdtemp(dir)) return 1;
    crc();
    run(dir, "none", MW__JNL_FSYNC_NONE, n);
    run(dir, "interval", MW__JNL_FSYNC_INTERVAL, n);
    run(dir, "always", MW__JNL_FSYNC_ALWAYS, n / 1000 > 0 ? n / 1000 : 1);
    rmdir(dir);
    return 0;
}
