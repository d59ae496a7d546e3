/*
 * raw_echo - plain epoll echo server (no msgwire): the reference the
 * scale benchmark (scale_load) measures msgwire's event-mode Svc against.
 *
 *   raw_echo [--cpu N] [--backlog N]
 *
 * Listens on 127.0.0.1 port 0 and prints "port P" on stdout. One thread,
 * level-triggered epoll, nonblocking sockets with TCP_NODELAY; accepts until
 * EAGAIN on every listener wake-up; echoes every byte it reads back to its
 * sender (a closed-loop client never has more than one message in flight,
 * so a short write is rare: the rest is kept in a per-connection buffer
 * allocated only then). A connection costs its fd and a 16-byte entry.
 *
 * Control on stdin, one command per line: "stats" answers
 * "accepted A closed C open O" on stdout; end of input exits.
 */
#define RAW_PROG "raw_echo"
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "raw_common.h"

typedef struct pend { size_t len; unsigned char b[]; } pend_t;

typedef struct conn_tab {
    pend_t **pend; /* by fd: bytes still to write back, usually NULL */
    int cap;
} conn_tab_t;

static unsigned long long n_accepted, n_closed;

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void pin(int cpu) {
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) die("sched_setaffinity %d: %s", cpu, strerror(errno));
}

static int listen_lo(int backlog) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) die("bind: %s", strerror(errno));
    if (listen(fd, backlog) != 0) die("listen: %s", strerror(errno));
    return fd;
}

static int bound_port(int fd) {
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &len) != 0) die("getsockname: %s", strerror(errno));
    return ntohs(a.sin_port);
}

static void drop(int ep, conn_tab_t *t, int fd) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    if (fd < t->cap) {
        free(t->pend[fd]);
        t->pend[fd] = NULL;
    }
    close(fd);
    n_closed++;
}

/* Writes p[0..n) back; keeps what the socket does not take. -1: failed. */
static int echo_back(int ep, conn_tab_t *t, int fd, const unsigned char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno != EAGAIN) return -1;
        if (w < 0) break;
        p += w;
        n -= (size_t)w;
    }
    if (n == 0) return 0;
    pend_t *old = t->pend[fd];
    size_t had = old ? old->len : 0;
    pend_t *q = realloc(old, sizeof *q + had + n);
    if (!q) die("out of memory");
    memcpy(q->b + had, p, n);
    q->len = had + n;
    t->pend[fd] = q;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
    return 0;
}

static int flush_pend(int ep, conn_tab_t *t, int fd) {
    pend_t *q = t->pend[fd];
    if (!q) return 0;
    t->pend[fd] = NULL;
    int r = echo_back(ep, t, fd, q->b, q->len); /* may queue the rest again */
    free(q);
    if (r == 0 && !t->pend[fd]) {
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
    }
    return r;
}

static void on_conn(int ep, conn_tab_t *t, int fd, uint32_t evs) {
    static unsigned char buf[65536];
    if ((evs & EPOLLOUT) && flush_pend(ep, t, fd) < 0) {
        drop(ep, t, fd);
        return;
    }
    if (!(evs & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
    ssize_t r = recv(fd, buf, sizeof buf, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (r <= 0) {
        drop(ep, t, fd);
        return;
    }
    if (t->pend[fd]) { /* still writing earlier bytes: keep order */
        pend_t *q = realloc(t->pend[fd], sizeof *q + t->pend[fd]->len + (size_t)r);
        if (!q) die("out of memory");
        memcpy(q->b + q->len, buf, (size_t)r);
        q->len += (size_t)r;
        t->pend[fd] = q;
        return;
    }
    if (echo_back(ep, t, fd, buf, (size_t)r) < 0) drop(ep, t, fd);
}

static void accept_all(int ep, conn_tab_t *t, int lfd) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return; /* EAGAIN, or out of fds: the next wake-up tries again */
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (fd >= t->cap) {
            int cap = t->cap ? t->cap : 1024;
            while (cap <= fd) cap *= 2;
            pend_t **p = realloc(t->pend, (size_t)cap * sizeof *p);
            if (!p) die("out of memory");
            memset(p + t->cap, 0, (size_t)(cap - t->cap) * sizeof *p);
            t->pend = p;
            t->cap = cap;
        }
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll add: %s", strerror(errno));
        n_accepted++;
    }
}

/* Returns false at end of input. */
static bool on_control(void) {
    char line[128];
    if (!fgets(line, sizeof line, stdin)) return false;
    if (strncmp(line, "stats", 5) == 0) {
        printf("accepted %llu closed %llu open %llu\n", n_accepted, n_closed, n_accepted - n_closed);
        fflush(stdout);
    }
    return true;
}

int main(int argc, char **argv) {
    int cpu = -1, backlog = 4096;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--cpu") && i + 1 < argc) cpu = (int)parse_u64("--cpu", argv[++i]);
        else if (!strcmp(argv[i], "--backlog") && i + 1 < argc) backlog = (int)parse_u64("--backlog", argv[++i]);
        else die("usage: raw_echo [--cpu N] [--backlog N]");
    }
    pin(cpu);
    raise_nofile();
    setvbuf(stdin, NULL, _IONBF, 0);
    int lfd = listen_lo(backlog);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1: %s", strerror(errno));
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.fd = 0;
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
    conn_tab_t t = {0};
    printf("port %d\n", bound_port(lfd));
    fflush(stdout);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) accept_all(ep, &t, lfd);
            else if (fd == 0) {
                if (!on_control()) return 0;
            } else on_conn(ep, &t, fd, evs[i].events);
        }
    }
}
