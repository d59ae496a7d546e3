/*
 * scale_load - many-connection load generator for `make bench-scale`.
 *
 *   scale_load --server NAME=COMMAND [--server NAME=COMMAND ...]
 *              [--conns 1000,5000,10000] [--secs S] [--rounds R] [--warmup W]
 *              [--threads 1|2] [--cpu A[,B]]
 *
 * For each connection count N, R rounds, and in each round each server in
 * turn (the first is the reference, normally raw_echo):
 *   1. starts the server (`sh -c "exec COMMAND"`: its pid is the server's),
 *      reads "port P" from its stdout; W clients (--warmup, 100) connect one
 *      after the other, exchange one message and leave, so the server has
 *      served clients before, as a running server has; then notes its RSS
 *      (VmRSS in /proc/PID/status) and fd count (entries of /proc/PID/fd);
 *   2. connect: N nonblocking connects to 127.0.0.1:P issued at once, timed
 *      until every one has completed (and the kernel's ListenOverflows
 *      counter read before and after);
 *   3. ready: one 64-byte message through every connection, timed until
 *      every echo is back (so the server has accepted and serves them all),
 *      with the server's CPU time over steps 2-3 (sum of its threads'
 *      /proc/PID/task/TID/schedstat, ns); then its RSS and fds idle;
 *   4. load: a closed loop for S seconds, one message in flight per
 *      connection: each echo is checked byte for byte and its round trip
 *      recorded; echoes/s over the window, p50/p99 RTT, the server's CPU time
 *      per echo, and its RSS and fds at the middle of the window;
 *   5. leave: every client closes; waits (deadline 15 s) until the server's
 *      fd count is back to its baseline, then (300 ms later) its RSS, and asks it "stats"
 *      on stdin (it answers "accepted A closed C open O ..."): accepted, less
 *      the warm-up clients, must be exactly N.
 * Then prints one table per N: the median of the rounds per server, and the
 * median (and range) of the per-round ratios to the reference. Wall-clock
 * figures move with whatever else runs on the machine; the server's CPU time
 * per echo and per accept is the steadier comparison.
 *
 * Wire format (README, "Wire formats"): the `fixed` serdes with u32 framing,
 * a 4-byte big-endian length (64) and the pp protocol's ping64: u16 tag 2,
 * u64 seq, u64 sent_ns, 46 pad bytes, all little-endian: 68 bytes a message.
 * The load threads are pinned (--cpu, one cpu per thread); pin the server
 * elsewhere with taskset in COMMAND. Everything runs on loopback; the
 * soft RLIMIT_NOFILE is raised to the hard limit.
 */
#define RAW_PROG "scale_load"
#include <dirent.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "raw_common.h"

#define MSG_WIRE 68
#define MSG_PAYLOAD 64
#define PP_TAG_PING64 2
#define MAX_SERVERS 8
#define MAX_THREADS 2
#define HIST_BUCKETS (64 * 32)

/* ---- histogram: log-linear, 32 sub-buckets per power of two (~3 %) --------- */

static int hist_idx(uint64_t v) {
    if (v < 32) return (int)v;
    int e = 63 - __builtin_clzll(v); /* >= 5 */
    return e * 32 + (int)((v >> (e - 5)) & 31);
}

static uint64_t hist_val(int i) { /* the middle of bucket i */
    if (i < 32) return (uint64_t)i;
    int e = i / 32, sub = i % 32;
    uint64_t lo = (1ull << e) | ((uint64_t)sub << (e - 5));
    return lo + (1ull << (e - 5)) / 2;
}

static uint64_t hist_pct(const uint64_t *h, uint64_t n, double p) {
    uint64_t want = (uint64_t)((double)n * p), seen = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        seen += h[i];
        if (seen > want) return hist_val(i);
    }
    return 0;
}

/* ---- connections and load threads ---------------------------------------- */

enum { C_CONNECTING, C_UP, C_DEAD };

typedef struct conn {
    int fd;
    uint8_t state;
    bool waiting; /* a message is in flight */
    uint16_t got;
    uint64_t seq, sent_ns;
    unsigned char rx[MSG_WIRE];
} conn_t;

typedef struct run run_t;

typedef struct lt {
    run_t *run;
    int idx, cpu;
    pthread_t th;
    int ep;
    conn_t *c;
    int n;
    /* results */
    uint64_t conn_done_ns, ready_done_ns;
    int connect_failed, broken;
    uint64_t echoes, hist[HIST_BUCKETS];
    char err[160];
} lt_t;

struct run {
    struct sockaddr_in addr;
    int nthreads;
    pthread_barrier_t bar;
    uint64_t t0, load_start, load_end;
    lt_t t[MAX_THREADS];
};

static void build(unsigned char *m, uint64_t seq, uint64_t sent_ns) {
    put_be32(m, MSG_PAYLOAD);
    m[4] = PP_TAG_PING64;
    m[5] = 0;
    put_le64(m + 6, seq);
    put_le64(m + 14, sent_ns);
    for (int i = 22; i < MSG_WIRE; i++) m[i] = (unsigned char)(seq + (uint64_t)i);
}

static void pin(int cpu) {
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) die("sched_setaffinity %d: %s", cpu, strerror(errno));
}

static void mark_dead(lt_t *t, conn_t *c) {
    if (c->state == C_DEAD) return;
    epoll_ctl(t->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->state = C_DEAD;
}

static int send_msg(lt_t *t, conn_t *c) {
    unsigned char m[MSG_WIRE];
    c->seq++;
    c->sent_ns = now_ns();
    build(m, c->seq, c->sent_ns);
    ssize_t w = send(c->fd, m, MSG_WIRE, MSG_NOSIGNAL);
    if (w != MSG_WIRE) { /* 68 bytes into an empty socket buffer: anything else is a failure */
        if (!t->err[0])
            snprintf(t->err, sizeof t->err, "send: %s", w < 0 ? strerror(errno) : "short write");
        t->broken++;
        mark_dead(t, c);
        return -1;
    }
    c->waiting = true;
    c->got = 0;
    return 0;
}

/* Reads what the echo has; 1 when the whole echo is in and correct, 0 when
 * more is to come, -1 when the connection failed or the echo was wrong. */
static int recv_echo(lt_t *t, conn_t *c) {
    ssize_t r = recv(c->fd, c->rx + c->got, MSG_WIRE - c->got, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    if (r <= 0 || !c->waiting) {
        if (!t->err[0])
            snprintf(t->err, sizeof t->err, "recv: %s", r < 0 ? strerror(errno) : r == 0 ? "server closed" : "unasked bytes");
        t->broken++;
        mark_dead(t, c);
        return -1;
    }
    c->got += (uint16_t)r;
    if (c->got < MSG_WIRE) return 0;
    unsigned char want[MSG_WIRE];
    build(want, c->seq, c->sent_ns);
    if (memcmp(want, c->rx, MSG_WIRE) != 0) {
        if (!t->err[0]) snprintf(t->err, sizeof t->err, "echo of seq %llu differs", (unsigned long long)c->seq);
        t->broken++;
        mark_dead(t, c);
        return -1;
    }
    c->waiting = false;
    return 1;
}

static void phase_connect(lt_t *t) {
    run_t *R = t->run;
    int pending = 0;
    for (int i = 0; i < t->n; i++) {
        conn_t *c = &t->c[i];
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) die("socket (connection %d): %s", i, strerror(errno));
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int r = connect(c->fd, (struct sockaddr *)&R->addr, sizeof R->addr);
        c->state = C_CONNECTING;
        if (r != 0 && errno != EINPROGRESS) {
            t->connect_failed++;
            close(c->fd);
            c->fd = -1;
            c->state = C_DEAD;
            continue;
        }
        struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)i};
        if (epoll_ctl(t->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) die("epoll add: %s", strerror(errno));
        pending++;
    }
    uint64_t dl = R->t0 + 60ull * 1000000000u;
    struct epoll_event evs[512];
    while (pending > 0 && now_ns() < dl) {
        int n = epoll_wait(t->ep, evs, 512, 100);
        for (int k = 0; k < n; k++) {
            conn_t *c = &t->c[evs[k].data.u32];
            if (c->state != C_CONNECTING) continue;
            int e = 0;
            socklen_t el = sizeof e;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &el);
            pending--;
            if (e) {
                if (!t->err[0]) snprintf(t->err, sizeof t->err, "connect: %s", strerror(e));
                t->connect_failed++;
                mark_dead(t, c);
                continue;
            }
            c->state = C_UP;
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = evs[k].data.u32};
            epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev);
        }
    }
    for (int i = 0; i < t->n; i++)
        if (t->c[i].state == C_CONNECTING) {
            t->connect_failed++;
            mark_dead(t, &t->c[i]);
        }
    t->conn_done_ns = now_ns();
}

/* One message through every connection; returns when every echo is back. */
static void phase_ready(lt_t *t) {
    int waiting = 0;
    for (int i = 0; i < t->n; i++)
        if (t->c[i].state == C_UP && send_msg(t, &t->c[i]) == 0) waiting++;
    uint64_t dl = now_ns() + 60ull * 1000000000u;
    struct epoll_event evs[512];
    while (waiting > 0 && now_ns() < dl) {
        int n = epoll_wait(t->ep, evs, 512, 100);
        for (int k = 0; k < n; k++) {
            conn_t *c = &t->c[evs[k].data.u32];
            if (c->state != C_UP) continue;
            if (recv_echo(t, c) != 0) waiting--;
        }
    }
    if (waiting > 0 && !t->err[0]) snprintf(t->err, sizeof t->err, "%d first echoes missing after 60 s", waiting);
    t->broken += waiting;
    t->ready_done_ns = now_ns();
}

static void phase_load(lt_t *t) {
    run_t *R = t->run;
    for (int i = 0; i < t->n; i++)
        if (t->c[i].state == C_UP) send_msg(t, &t->c[i]);
    struct epoll_event evs[512];
    for (;;) {
        uint64_t now = now_ns();
        if (now >= R->load_end) break;
        int n = epoll_wait(t->ep, evs, 512, 5);
        for (int k = 0; k < n; k++) {
            conn_t *c = &t->c[evs[k].data.u32];
            if (c->state != C_UP || recv_echo(t, c) != 1) continue;
            uint64_t done = now_ns();
            if (done <= R->load_end) {
                t->echoes++;
                t->hist[hist_idx(done - c->sent_ns)]++;
                send_msg(t, c);
            }
        }
    }
    /* Let what is in flight come back, so the clients leave with nothing unread. */
    uint64_t dl = now_ns() + 2ull * 1000000000u;
    int waiting;
    do {
        waiting = 0;
        for (int i = 0; i < t->n; i++) waiting += t->c[i].state == C_UP && t->c[i].waiting;
        if (!waiting) break;
        int n = epoll_wait(t->ep, evs, 512, 5);
        for (int k = 0; k < n; k++) {
            conn_t *c = &t->c[evs[k].data.u32];
            if (c->state == C_UP) recv_echo(t, c);
        }
    } while (now_ns() < dl);
}

static void *load_main(void *arg) {
    lt_t *t = arg;
    run_t *R = t->run;
    pin(t->cpu);
    pthread_barrier_wait(&R->bar); /* go: connect */
    phase_connect(t);
    pthread_barrier_wait(&R->bar);
    phase_ready(t);
    pthread_barrier_wait(&R->bar);
    pthread_barrier_wait(&R->bar); /* main measured idle, set the load window */
    phase_load(t);
    pthread_barrier_wait(&R->bar);
    pthread_barrier_wait(&R->bar); /* main noted the time: leave */
    for (int i = 0; i < t->n; i++)
        if (t->c[i].fd >= 0) close(t->c[i].fd);
    pthread_barrier_wait(&R->bar);
    return NULL;
}

/* ---- the server process ------------------------------------------------------ */

typedef struct server {
    const char *name, *cmd;
    pid_t pid;
    int in_fd, out_fd;
    char buf[512];
    size_t have;
} server_t;

/* Reads one line from the server's stdout within ms; false on timeout/EOF. */
static bool srv_line(server_t *s, char *line, size_t cap, int ms) {
    uint64_t dl = now_ns() + (uint64_t)ms * 1000000u;
    for (;;) {
        char *nl = memchr(s->buf, '\n', s->have);
        if (nl) {
            size_t k = (size_t)(nl - s->buf);
            snprintf(line, cap, "%.*s", (int)k, s->buf);
            memmove(s->buf, nl + 1, s->have - k - 1);
            s->have -= k + 1;
            return true;
        }
        uint64_t now = now_ns();
        if (now >= dl || s->have == sizeof s->buf) return false;
        struct pollfd p = {s->out_fd, POLLIN, 0};
        if (poll(&p, 1, (int)((dl - now) / 1000000u) + 1) <= 0) continue;
        ssize_t r = read(s->out_fd, s->buf + s->have, sizeof s->buf - s->have);
        if (r <= 0) return false;
        s->have += (size_t)r;
    }
}

static int srv_start(server_t *s) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) die("pipe: %s", strerror(errno));
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "exec %s", s->cmd);
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    s->pid = pid;
    s->in_fd = in[1];
    s->out_fd = out[0];
    s->have = 0;
    char line[256];
    int port = 0;
    if (!srv_line(s, line, sizeof line, 10000) || sscanf(line, "port %d", &port) != 1)
        die("%s: no 'port P' line from '%s'", s->name, s->cmd);
    return port;
}

static bool srv_stats(server_t *s, unsigned long long *acc, unsigned long long *closed) {
    if (write(s->in_fd, "stats\n", 6) != 6) return false;
    char line[256];
    if (!srv_line(s, line, sizeof line, 5000)) return false;
    return sscanf(line, "accepted %llu closed %llu", acc, closed) == 2;
}

static void srv_stop(server_t *s) {
    close(s->in_fd);
    uint64_t dl = now_ns() + 10ull * 1000000000u;
    int st;
    while (waitpid(s->pid, &st, WNOHANG) == 0) {
        if (now_ns() > dl) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &st, 0);
            break;
        }
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    close(s->out_fd);
}

/* A "Vm...:" line of /proc/PID/status in KiB ("kB"), or -1. */
static long vm_kb(pid_t pid, const char *key) {
    char path[64], line[256];
    size_t klen = strlen(key);
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, klen) == 0 && line[klen] == ':' && sscanf(line + klen + 1, "%ld", &kb) == 1) break;
    fclose(f);
    return kb;
}

static long rss_kb(pid_t pid) { return vm_kb(pid, "VmRSS"); }

static int fd_count(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* TcpExt ListenOverflows from /proc/net/netstat (this network namespace). */
static long long listen_overflows(void) {
    FILE *f = fopen("/proc/net/netstat", "r");
    if (!f) return -1;
    static char names[8192], vals[8192];
    long long v = -1;
    while (fgets(names, sizeof names, f) && fgets(vals, sizeof vals, f)) {
        if (strncmp(names, "TcpExt:", 7) != 0) continue;
        char *sn, *sv;
        char *n = strtok_r(names, " \n", &sn), *x = strtok_r(vals, " \n", &sv);
        while (n && x) {
            if (!strcmp(n, "ListenOverflows")) v = atoll(x);
            n = strtok_r(NULL, " \n", &sn);
            x = strtok_r(NULL, " \n", &sv);
        }
    }
    fclose(f);
    return v;
}

/* CPU time of every thread of pid in ns: the first field of each
 * /proc/PID/task/TID/schedstat (time on a cpu, ns resolution, unlike the
 * clock ticks of /proc/PID/stat). Threads that ended are not counted: the
 * servers' threads live as long as they do. */
static long long cpu_ns(pid_t pid) {
    char path[96];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d) return -1;
    long long sum = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "/proc/%d/task/%.20s/schedstat", (int)pid, de->d_name);
        FILE *f = fopen(path, "r");
        long long v = 0;
        if (f && fscanf(f, "%lld", &v) == 1) sum += v;
        if (f) fclose(f);
    }
    closedir(d);
    return sum;
}

/* ---- one measurement ---------------------------------------------------------- */

typedef struct result {
    double connect_ms, ready_ms, echoes_per_s, p50_us, p99_us;
    double cpu_accept_ms;   /* server CPU from the first connect until every first echo */
    double cpu_echo_us;     /* server CPU per echo in the load window */
    double rss0, rss_idle, rss_load, rss_after; /* KiB */
    double virt0, virt_idle;                    /* VmSize, KiB */
    double fds0, fds_idle, fds_load, fds_after;
    double overflows;
    unsigned long long accepted, closed;
    int failed, broken;
    bool stats_ok, fds_back;
    char err[160];
} result_t;

static void nap_until(uint64_t t) {
    uint64_t now = now_ns();
    if (now >= t) return;
    struct timespec ts = {(time_t)((t - now) / 1000000000u), (long)((t - now) % 1000000000u)};
    nanosleep(&ts, NULL);
}

/* A server that has served clients before: `warmup` clients, one after the
 * other, connect, exchange one message and leave, before the baseline is
 * taken (an allocator's state after closes differs from a fresh process's).
 * Returns when the server's fd count is back to fds0. */
static int warmup = 100;

static void warm_up(server_t *sv, const struct sockaddr_in *addr, int fds0) {
    for (int i = 0; i < warmup; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (const struct sockaddr *)addr, sizeof *addr) != 0)
            die("warm-up connect: %s", strerror(errno));
        unsigned char m[MSG_WIRE], back[MSG_WIRE];
        build(m, (uint64_t)i, 0);
        if (send(fd, m, MSG_WIRE, MSG_NOSIGNAL) != MSG_WIRE) die("warm-up send: %s", strerror(errno));
        size_t got = 0;
        while (got < MSG_WIRE) {
            struct pollfd p = {fd, POLLIN, 0};
            if (poll(&p, 1, 5000) <= 0) die("%s: no warm-up echo within 5 s", sv->name);
            ssize_t r = recv(fd, back + got, MSG_WIRE - got, 0);
            if (r <= 0) die("%s: warm-up recv: %s", sv->name, r == 0 ? "closed" : strerror(errno));
            got += (size_t)r;
        }
        if (memcmp(m, back, MSG_WIRE) != 0) die("%s: warm-up echo differs", sv->name);
        close(fd);
    }
    uint64_t dl = now_ns() + 5ull * 1000000000u;
    while (fd_count(sv->pid) != fds0 && now_ns() < dl) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

static void measure(server_t *sv, int n, double secs, int nthreads, const int *cpus, result_t *res) {
    memset(res, 0, sizeof *res);
    int port = srv_start(sv);
    run_t *R = calloc(1, sizeof *R);
    if (!R) die("out of memory");
    R->addr = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    R->nthreads = nthreads;
    pthread_barrier_init(&R->bar, NULL, (unsigned)nthreads + 1);
    for (int i = 0; i < nthreads; i++) {
        lt_t *t = &R->t[i];
        t->run = R;
        t->idx = i;
        t->cpu = cpus[i];
        t->n = n / nthreads + (i < n % nthreads);
        t->c = calloc((size_t)t->n, sizeof *t->c);
        t->ep = epoll_create1(EPOLL_CLOEXEC);
        if (!t->c || t->ep < 0) die("out of memory or epoll");
        if (pthread_create(&t->th, NULL, load_main, t) != 0) die("pthread_create");
    }
    res->fds0 = fd_count(sv->pid);
    warm_up(sv, &R->addr, (int)res->fds0);
    nap_until(now_ns() + 300000000u); /* as after the run: let freed memory settle */
    res->rss0 = (double)rss_kb(sv->pid);
    res->virt0 = (double)vm_kb(sv->pid, "VmSize");
    long long ov0 = listen_overflows();
    long long cpu0 = cpu_ns(sv->pid);
    R->t0 = now_ns();
    pthread_barrier_wait(&R->bar); /* connect */
    pthread_barrier_wait(&R->bar); /* connected */
    uint64_t connected = 0;
    for (int i = 0; i < nthreads; i++)
        if (R->t[i].conn_done_ns > connected) connected = R->t[i].conn_done_ns;
    res->overflows = ov0 >= 0 ? (double)(listen_overflows() - ov0) : -1;
    res->connect_ms = (double)(connected - R->t0) / 1e6;
    pthread_barrier_wait(&R->bar); /* ready */
    uint64_t ready = 0;
    for (int i = 0; i < nthreads; i++)
        if (R->t[i].ready_done_ns > ready) ready = R->t[i].ready_done_ns;
    res->ready_ms = (double)(ready - R->t0) / 1e6;
    long long cpu1 = cpu_ns(sv->pid);
    res->cpu_accept_ms = (double)(cpu1 - cpu0) / 1e6;
    res->rss_idle = (double)rss_kb(sv->pid);
    res->virt_idle = (double)vm_kb(sv->pid, "VmSize");
    res->fds_idle = fd_count(sv->pid);
    R->load_start = now_ns();
    R->load_end = R->load_start + (uint64_t)(secs * 1e9);
    long long cpu2 = cpu_ns(sv->pid);
    pthread_barrier_wait(&R->bar); /* load */
    nap_until(R->load_start + (R->load_end - R->load_start) / 2);
    res->rss_load = (double)rss_kb(sv->pid);
    res->fds_load = fd_count(sv->pid);
    nap_until(R->load_end);
    long long cpu3 = cpu_ns(sv->pid);
    pthread_barrier_wait(&R->bar); /* load over */
    pthread_barrier_wait(&R->bar); /* leave */
    pthread_barrier_wait(&R->bar); /* every client closed */
    uint64_t dl = now_ns() + 15ull * 1000000000u;
    while ((res->fds_after = fd_count(sv->pid)) != res->fds0 && now_ns() < dl) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    res->fds_back = res->fds_after == res->fds0;
    nap_until(now_ns() + 300000000u); /* memory is given back after the fds: let it settle */
    res->rss_after = (double)rss_kb(sv->pid);
    res->stats_ok = srv_stats(sv, &res->accepted, &res->closed);
    res->accepted -= res->stats_ok && res->accepted >= (unsigned long long)warmup ? (unsigned long long)warmup : 0;
    srv_stop(sv);
    uint64_t echoes = 0;
    static uint64_t hist[HIST_BUCKETS];
    memset(hist, 0, sizeof hist);
    for (int i = 0; i < nthreads; i++) {
        lt_t *t = &R->t[i];
        pthread_join(t->th, NULL);
        echoes += t->echoes;
        for (int b = 0; b < HIST_BUCKETS; b++) hist[b] += t->hist[b];
        res->failed += t->connect_failed;
        res->broken += t->broken;
        if (!res->err[0] && t->err[0]) snprintf(res->err, sizeof res->err, "%s", t->err);
        close(t->ep);
        free(t->c);
    }
    res->echoes_per_s = (double)echoes / secs;
    res->cpu_echo_us = echoes ? (double)(cpu3 - cpu2) / 1e3 / (double)echoes : 0;
    res->p50_us = (double)hist_pct(hist, echoes, 0.50) / 1e3;
    res->p99_us = (double)hist_pct(hist, echoes, 0.99) / 1e3;
    pthread_barrier_destroy(&R->bar);
    free(R);
}

/* ---- report: the median of the rounds ------------------------------------------------ */

#define MAX_ROUNDS 9

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median over the rounds of one field (by offset) of server i. */
static double med(result_t (*res)[MAX_SERVERS], int rounds, int i, size_t off) {
    double v[MAX_ROUNDS];
    for (int r = 0; r < rounds; r++) memcpy(&v[r], (const char *)&res[r][i] + off, sizeof v[r]);
    qsort(v, (size_t)rounds, sizeof v[0], cmp_d);
    return rounds % 2 ? v[rounds / 2] : (v[rounds / 2 - 1] + v[rounds / 2]) / 2;
}
#define MED(i, f) med(res, rounds, (i), offsetof(result_t, f))

/* Median over the rounds of the per-round ratio server i / server 0 of a field. */
static double med_ratio(result_t (*res)[MAX_SERVERS], int rounds, int i, size_t off, double *lo, double *hi) {
    double v[MAX_ROUNDS];
    for (int r = 0; r < rounds; r++) {
        double a, b;
        memcpy(&a, (const char *)&res[r][i] + off, sizeof a);
        memcpy(&b, (const char *)&res[r][0] + off, sizeof b);
        v[r] = b > 0 ? a / b : 0;
    }
    qsort(v, (size_t)rounds, sizeof v[0], cmp_d);
    *lo = v[0];
    *hi = v[rounds - 1];
    return rounds % 2 ? v[rounds / 2] : (v[rounds / 2 - 1] + v[rounds / 2]) / 2;
}

static void report(int n, double secs, int rounds, server_t *sv, result_t (*res)[MAX_SERVERS], int ns) {
    printf("\nN = %d connections, %.0f s closed loop, one 64-byte message (68 B framed) in flight each; "
           "median of %d round(s)\n", n, secs, rounds);
    printf("| server | connect ms | ready ms | server CPU ms to accept | echoes/s | server CPU us/echo | p50 us | p99 us "
           "| RSS base MB | KiB/conn idle | KiB/conn load | virtual KiB/conn | fds/conn idle, load | RSS after MB (vs base) "
           "| fds after - base | accepted | ListenOverflows |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < ns; i++) {
        double rss0 = MED(i, rss0), after = MED(i, rss_after), f0 = MED(i, fds0);
        char acc[64] = "";
        int worst_fds = 0;
        for (int r = 0; r < rounds; r++) {
            result_t *x = &res[r][i];
            char one[24];
            if (!x->stats_ok) snprintf(one, sizeof one, "%s?", r ? "/" : "");
            else snprintf(one, sizeof one, "%s%llu%s", r ? "/" : "", x->accepted, x->accepted == (unsigned long long)n ? "" : "(!)");
            if (x->stats_ok && x->accepted == (unsigned long long)n && r) continue; /* exact: say it once */
            strncat(acc, one, sizeof acc - strlen(acc) - 1);
            int d = (int)(x->fds_after - x->fds0);
            if (abs(d) > abs(worst_fds)) worst_fds = d;
        }
        printf("| %s | %.0f | %.0f | %.0f | %.0f | %.1f | %.0f | %.0f | %.1f | %.2f | %.2f | %.0f | %.2f, %.2f "
               "| %.1f (%+.0f%%) | %+d | %s | %.0f |\n",
               sv[i].name, MED(i, connect_ms), MED(i, ready_ms), MED(i, cpu_accept_ms), MED(i, echoes_per_s),
               MED(i, cpu_echo_us), MED(i, p50_us), MED(i, p99_us), rss0 / 1024.0, (MED(i, rss_idle) - rss0) / n,
               (MED(i, rss_load) - rss0) / n, (MED(i, virt_idle) - MED(i, virt0)) / n, (MED(i, fds_idle) - f0) / n, (MED(i, fds_load) - f0) / n,
               after / 1024.0, rss0 > 0 ? 100.0 * (after - rss0) / rss0 : 0.0, worst_fds, acc, MED(i, overflows));
    }
    static const struct { const char *name; size_t off; } rat[] = {
        {"connect", offsetof(result_t, connect_ms)},      {"ready", offsetof(result_t, ready_ms)},
        {"CPU to accept", offsetof(result_t, cpu_accept_ms)}, {"echoes/s", offsetof(result_t, echoes_per_s)},
        {"CPU/echo", offsetof(result_t, cpu_echo_us)},      {"p50", offsetof(result_t, p50_us)},
        {"p99", offsetof(result_t, p99_us)},
    };
    for (int i = 1; i < ns; i++) {
        printf("ratio %s / %s (median of per-round ratios [min-max]):", sv[i].name, sv[0].name);
        for (size_t k = 0; k < sizeof rat / sizeof rat[0]; k++) {
            double lo, hi, m = med_ratio(res, rounds, i, rat[k].off, &lo, &hi);
            printf("%s %s %.2fx", k ? "," : "", rat[k].name, m);
            if (rounds > 1) printf(" [%.2f-%.2f]", lo, hi);
        }
        printf("\n");
    }
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < ns; i++) {
            result_t *x = &res[r][i];
            if (x->failed || x->broken || !x->fds_back || x->err[0])
                printf("note round %d %s: %d connects failed, %d connections broke, fds %s%s%s\n", r + 1, sv[i].name,
                       x->failed, x->broken, x->fds_back ? "back" : "NOT back within 15 s",
                       x->err[0] ? "; first error: " : "", x->err);
        }
    fflush(stdout);
}

static void usage(void) {
    die("usage: scale_load --server NAME=COMMAND [--server ...] [--conns N[,N...]] [--secs S] "
        "[--rounds R] [--warmup W] [--threads 1|2] [--cpu A[,B]]");
}

int main(int argc, char **argv) {
    server_t sv[MAX_SERVERS];
    int ns = 0, nthreads = 1, cpus[MAX_THREADS] = {-1, -1}, conns[16], nconns = 0;
    double secs = 3;
    int rounds = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) usage();
        char *v = argv[++i];
        if (!strcmp(a, "--server")) {
            char *eq = strchr(v, '=');
            if (!eq || ns == MAX_SERVERS) usage();
            *eq = 0;
            sv[ns++] = (server_t){.name = v, .cmd = eq + 1};
        } else if (!strcmp(a, "--conns")) {
            for (char *sp, *tok = strtok_r(v, ",", &sp); tok && nconns < 16; tok = strtok_r(NULL, ",", &sp))
                conns[nconns++] = (int)parse_u64("--conns", tok);
        } else if (!strcmp(a, "--secs")) {
            secs = (double)parse_u64("--secs", v);
        } else if (!strcmp(a, "--warmup")) {
            warmup = (int)parse_u64("--warmup", v);
        } else if (!strcmp(a, "--rounds")) {
            rounds = (int)parse_u64("--rounds", v);
            if (rounds < 1 || rounds > MAX_ROUNDS) usage();
        } else if (!strcmp(a, "--threads")) {
            nthreads = (int)parse_u64("--threads", v);
            if (nthreads < 1 || nthreads > MAX_THREADS) usage();
        } else if (!strcmp(a, "--cpu")) {
            char *comma = strchr(v, ',');
            if (comma) *comma = 0;
            cpus[0] = (int)parse_u64("--cpu", v);
            cpus[1] = comma ? (int)parse_u64("--cpu", comma + 1) : cpus[0];
        } else {
            usage();
        }
    }
    if (ns == 0 || secs <= 0) usage();
    if (nconns == 0) {
        conns[0] = 1000, conns[1] = 5000, conns[2] = 10000;
        nconns = 3;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        int most = 0;
        for (int i = 0; i < nconns; i++) most = conns[i] > most ? conns[i] : most;
        if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)most + 64 > rl.rlim_cur)
            die("%d connections need more fds than RLIMIT_NOFILE allows (%llu)", most, (unsigned long long)rl.rlim_cur);
    }
    pin(cpus[0]); /* the main thread mostly sleeps; keep it off the server's cpu */
    printf("scale_load: %d load thread(s), cpu %d", nthreads, cpus[0]);
    if (nthreads > 1) printf(",%d", cpus[1]);
    printf("; servers:");
    for (int i = 0; i < ns; i++) printf(" %s = `%s`%s", sv[i].name, sv[i].cmd, i + 1 < ns ? ";" : "\n");
    static result_t res[MAX_ROUNDS][MAX_SERVERS];
    for (int k = 0; k < nconns; k++) {
        for (int r = 0; r < rounds; r++) /* interleaved: every server once per round */
            for (int i = 0; i < ns; i++) measure(&sv[i], conns[k], secs, nthreads, cpus, &res[r][i]);
        report(conns[k], secs, rounds, sv, res, ns);
    }
    return 0;
}
