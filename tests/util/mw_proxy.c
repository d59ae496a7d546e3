/* mw_proxy.c - a cutting TCP proxy for fault tests; see mw_proxy.h. */
#include "mw_proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mw_test.h"

#define MAX_PAIRS 16

typedef struct pair {
    int fd[2]; /* client side, upstream side; -1 when free */
} pair_t;

struct mw_proxy {
    int lfd, wake;
    pthread_t th;
    atomic_int upstream;
    atomic_bool stop;
    atomic_int cut_req;
    atomic_uint_fast64_t cuts, accepted;
    pair_t pairs[MAX_PAIRS];
    uint64_t rng;
};

static void hard_close(int fd) {
    struct linger lg = {1, 0}; /* close with RST */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

static void pair_close(pair_t *pr) {
    for (int k = 0; k < 2; k++)
        if (pr->fd[k] >= 0) hard_close(pr->fd[k]);
    pr->fd[0] = pr->fd[1] = -1;
}

static int connect_upstream(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* loopback: a blocking connect answers at once (accepted or refused) */
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void accept_one(mw_proxy_t *p) {
    int c = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) return;
    atomic_fetch_add(&p->accepted, 1);
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int u = connect_upstream(atomic_load(&p->upstream));
    pair_t *free_pr = NULL;
    for (int i = 0; i < MAX_PAIRS && !free_pr; i++)
        if (p->pairs[i].fd[0] < 0) free_pr = &p->pairs[i];
    if (u < 0 || !free_pr) {
        hard_close(c);
        if (u >= 0) close(u);
        return;
    }
    free_pr->fd[0] = c;
    free_pr->fd[1] = u;
}

/* Writes all n bytes to a blocking socket; false if the peer is gone. */
static bool write_all(int fd, const char *b, size_t n) {
    while (n) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        b += w;
        n -= (size_t)w;
    }
    return true;
}

/* Moves what side k has to the other side; a cut passes on part of it. */
static void forward(mw_proxy_t *p, pair_t *pr, int k) {
    char buf[65536];
    ssize_t n = recv(pr->fd[k], buf, sizeof buf, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
    if (n <= 0) {
        pair_close(pr);
        return;
    }
    int want = atomic_load(&p->cut_req);
    if (want > 0 && atomic_compare_exchange_strong(&p->cut_req, &want, want - 1)) {
        p->rng = p->rng * 6364136223846793005ull + 1442695040888963407ull;
        size_t keep = n > 1 ? (size_t)((p->rng >> 33) % (uint64_t)(n - 1)) : 0; /* 0 .. n-2 */
        write_all(pr->fd[!k], buf, keep);
        pair_close(pr);
        atomic_fetch_add(&p->cuts, 1);
        return;
    }
    if (!write_all(pr->fd[!k], buf, (size_t)n)) pair_close(pr);
}

static void *proxy_main(void *arg) {
    mw_proxy_t *p = arg;
    while (!atomic_load(&p->stop)) {
        struct pollfd pf[2 + 2 * MAX_PAIRS];
        int map[2 + 2 * MAX_PAIRS];
        int n = 0;
        pf[n++] = (struct pollfd){p->lfd, POLLIN, 0};
        pf[n++] = (struct pollfd){p->wake, POLLIN, 0};
        for (int i = 0; i < MAX_PAIRS; i++)
            for (int k = 0; k < 2 && p->pairs[i].fd[0] >= 0; k++) {
                map[n] = i * 2 + k;
                pf[n++] = (struct pollfd){p->pairs[i].fd[k], POLLIN, 0};
            }
        if (poll(pf, (nfds_t)n, 1000) <= 0) continue;
        if (pf[0].revents) accept_one(p);
        if (pf[1].revents) {
            uint64_t v;
            if (read(p->wake, &v, sizeof v) < 0) { /* drained either way */
            }
        }
        for (int j = 2; j < n; j++) {
            if (!pf[j].revents) continue;
            pair_t *pr = &p->pairs[map[j] / 2];
            if (pr->fd[0] >= 0) forward(p, pr, map[j] % 2);
        }
    }
    return NULL;
}

mw_proxy_t *mw_proxy_start(int upstream_port, int *port) {
    mw_proxy_t *p = calloc(1, sizeof *p);
    assert_non_null(p);
    for (int i = 0; i < MAX_PAIRS; i++) p->pairs[i].fd[0] = p->pairs[i].fd[1] = -1;
    atomic_init(&p->upstream, upstream_port);
    p->rng = 0x853c49e6748fea9bull ^ (uint64_t)upstream_port;
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    assert_true(p->lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(p->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(p->lfd, 16) != 0 ||
        getsockname(p->lfd, (struct sockaddr *)&a, &len) != 0)
        fail_msg("proxy listen: %s", strerror(errno));
    *port = ntohs(a.sin_port);
    p->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    assert_true(p->wake >= 0);
    if (pthread_create(&p->th, NULL, proxy_main, p) != 0) fail_msg("proxy thread");
    return p;
}

void mw_proxy_set_upstream(mw_proxy_t *p, int upstream_port) { atomic_store(&p->upstream, upstream_port); }

void mw_proxy_cut(mw_proxy_t *p) { atomic_fetch_add(&p->cut_req, 1); }

uint64_t mw_proxy_cuts(const mw_proxy_t *p) { return atomic_load(&((mw_proxy_t *)p)->cuts); }

uint64_t mw_proxy_accepted(const mw_proxy_t *p) { return atomic_load(&((mw_proxy_t *)p)->accepted); }

void mw_proxy_stop(mw_proxy_t *p) {
    if (!p) return;
    atomic_store(&p->stop, true);
    uint64_t one = 1;
    if (write(p->wake, &one, sizeof one) < 0) { /* the 1 s poll timeout ends it anyway */
    }
    pthread_join(p->th, NULL);
    for (int i = 0; i < MAX_PAIRS; i++) pair_close(&p->pairs[i]);
    close(p->lfd);
    close(p->wake);
    free(p);
}
