/*
 * scale_svc - msgwire's event-mode Svc as an echo server, for the scale
 * benchmark (scale_load drives it beside raw_echo).
 *
 *   scale_svc [--workers N] [--max-conns N] [--serdes NAME] [--max-msg BYTES]
 *             [--rx-buf BYTES] [--tx-buf BYTES] [--backlog N] [--trim-when-empty]
 *
 * Listens on tcp://127.0.0.1:0 (pp protocol, fixed serdes by default, as
 * pingpong and flood use) and prints "port P" on stdout. Every message is
 * sent back to its sender from the worker that received it. Buffers and the
 * backlog are the library's defaults unless given.
 *
 * --trim-when-empty (a profiling aid, not a recommendation): a thread calls
 * glibc's malloc_trim(0) each time the Svc's last connection has closed, to
 * show how much of the RSS left after the clients leave is memory the
 * allocator keeps in its free lists rather than memory still in use.
 *
 * Control on stdin, one command per line: "stats" answers
 * "accepted A closed C open O refused R" on stdout; "malloc" answers glibc's
 * mallinfo2() as "in_use B free B mmapped B arena B" (bytes; a profiling
 * aid); end of input closes the Svc and exits.
 */
#include "mw_svc.h"
#include "pp_proto.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static void echo(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg, void *ud) {
    (void)ud;
    mw_svc_send_to(s, id, sch, msg);
}

static atomic_bool stopping;

/* Polls the connection count every 10 ms; trims once per emptying. */
static void *trimmer(void *arg) {
    mw_svc_t *s = arg;
    bool had = false;
    while (!atomic_load(&stopping)) {
        uint32_t n = mw_svc_conn_count(s);
        if (n > 0) had = true;
        else if (had) {
            malloc_trim(0);
            had = false;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static unsigned long num(const char *opt, const char *v) {
    char *end;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (errno || end == v || *end) {
        fprintf(stderr, "scale_svc: bad value for %s: '%s'\n", opt, v);
        exit(2);
    }
    return n;
}

int main(int argc, char **argv) {
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.mode = MW_MODE_EVENT;
    o.max_connections = 16384;
    bool trim = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--trim-when-empty")) {
            trim = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "scale_svc: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--workers")) o.event.workers = (uint32_t)num(a, v);
        else if (!strcmp(a, "--max-conns")) o.max_connections = (uint32_t)num(a, v);
        else if (!strcmp(a, "--serdes")) o.conn.serdes = v;
        else if (!strcmp(a, "--max-msg")) o.conn.max_msg = (uint32_t)num(a, v);
        else if (!strcmp(a, "--rx-buf")) o.conn.rx_buf = (uint32_t)num(a, v);
        else if (!strcmp(a, "--tx-buf")) o.conn.tx_buf = (uint32_t)num(a, v);
        else if (!strcmp(a, "--backlog")) o.tcp.backlog = (int)num(a, v);
        else {
            fprintf(stderr, "scale_svc: unknown option %s\n", a);
            return 2;
        }
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    o.event.on_msg = echo;
    mw_svc_t *s = NULL;
    mw_err_t err = {0};
    int r = mw_svc_listen(&s, "tcp://127.0.0.1:0", &pp_protocol, &o, &err);
    if (r < 0) {
        fprintf(stderr, "scale_svc: listen: %s\n", mw_err_text(&err));
        return 1;
    }
    pthread_t th;
    if (trim && pthread_create(&th, NULL, trimmer, s) != 0) trim = false;
    printf("port %d\n", mw_svc_port(s));
    fflush(stdout);
    char line[128];
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "malloc", 6) == 0) { /* glibc's view: in use, free in its lists, mmapped */
            struct mallinfo2 mi = mallinfo2();
            printf("in_use %zu free %zu mmapped %zu arena %zu\n", mi.uordblks, mi.fordblks, mi.hblkhd, mi.arena);
            fflush(stdout);
            continue;
        }
        if (strncmp(line, "stats", 5) != 0) continue;
        mw_svc_stats_t st;
        mw_svc_stats(s, &st);
        printf("accepted %llu closed %llu open %u refused %llu\n", (unsigned long long)st.accepted,
               (unsigned long long)st.closed, st.connections, (unsigned long long)st.refused_full);
        fflush(stdout);
    }
    if (trim) {
        atomic_store(&stopping, true);
        pthread_join(th, NULL);
    }
    mw_svc_free(s);
    return 0;
}
