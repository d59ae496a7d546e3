/* test_svc_nofd.c - a Svc out of file descriptors: accept fails with
 * EMFILE, and the listener (level-triggered) would report the waiting
 * clients again at once. The Svc must not spin: it counts the refusal
 * (refused_nofd), rests the listener, and takes the waiting clients once
 * descriptors are free again. Lowers this process's RLIMIT_NOFILE. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mw_svc.h"
#include "mw_test.h"
#include "svc_harness.h"
#include "test_proto.h"

#define WAIT_MS 10000
#define MAX_CLIENTS 64 /* one more slot for the late client */
#define MAX_CONNECT (MAX_CLIENTS - 1)

/* The Svc is the fixture's (tests/util/svc_harness.h); the clients are raw
 * sockets kept here (more than it tracks, opened against the fd limit). */
typedef struct fx {
    svh_t *h;
    mw_svc_t *svc;
    int fds[MAX_CLIENTS];
    int n;
    int spare;
    struct rlimit saved;
} fx_t;

static int setup(void **state) {
    fx_t *f = svh_setup_ud(state, sizeof *f);
    if (!f || getrlimit(RLIMIT_NOFILE, &f->saved) < 0) return -1;
    f->h = *state;
    f->spare = -1;
    return 0;
}

static int teardown(void **state) {
    fx_t *f = svh_ud(state);
    setrlimit(RLIMIT_NOFILE, &f->saved);
    for (int i = 0; i < f->n; i++) close(f->fds[i]);
    if (f->spare >= 0) close(f->spare);
    return svh_teardown(state);
}

static int open_fds(void) {
    int n = 0;
    for (int fd = 0; fd < 4096; fd++)
        if (fcntl(fd, F_GETFD) >= 0) n++;
    return n;
}

/* A nonblocking connect to the Svc; -1 once this process has no fd left. */
static int raw_connect_nb(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool refused(void *ud) {
    mw_svc_stats_t st;
    mw_svc_stats(((fx_t *)ud)->svc, &st);
    return st.refused_nofd > 0;
}

static bool all_accepted(void *ud) {
    fx_t *f = ud;
    mw_svc_stats_t st;
    mw_svc_stats(f->svc, &st);
    return st.accepted == (uint64_t)f->n;
}

static uint64_t cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * MW_NS_PER_S + (uint64_t)ts.tv_nsec;
}

static void nofd_does_not_spin(fx_t *f, mw_mode_t mode) {
    mw_svc_opts_t o;
    f->h->mode = mode;
    svh_svc_opts(f->h, &o);
    svh_listen(f->h, "tcp", &o);
    f->svc = f->h->svc;
    int port = f->h->port;
    /* room for 8 more descriptors: 8 clients, then the Svc has none left */
    struct rlimit low = f->saved;
    low.rlim_cur = (rlim_t)open_fds() + 8;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    f->spare = open("/dev/null", O_RDONLY | O_CLOEXEC); /* for the client that must wait */
    assert_true(f->spare >= 0);
    while (f->n < MAX_CONNECT) {
        int fd = raw_connect_nb(port);
        if (fd < 0) break;
        f->fds[f->n++] = fd;
        if (mode != MW_MODE_EVENT) mw_svc_poll(f->svc, 0);
    }
    assert_true(f->n >= 4);
    /* the Svc gets its share of the descriptors, then EMFILE */
    if (mode == MW_MODE_EVENT) {
        assert_true(mw_wait_until(refused, f, WAIT_MS));
    } else {
        for (int i = 0; i < 1000 && !refused(f); i++) mw_svc_poll(f->svc, MW_NS_PER_MS);
        assert_true(refused(f));
    }
    /* Linux's accept4 takes a descriptor before it looks at the backlog, so
     * the refusal above may have come with every client accepted. Give the
     * spare descriptor to one more client: the Svc has none to take it
     * with, so it waits in the backlog. The Svc is resting its listener,
     * but a retry may hold the free descriptor for an instant. */
    close(f->spare);
    f->spare = -1;
    int late = -1;
    for (int i = 0; i < 1000 && late < 0; i++) {
        late = raw_connect_nb(port);
        if (late < 0 && mode != MW_MODE_EVENT) mw_svc_poll(f->svc, 0);
    }
    assert_true(late >= 0);
    f->fds[f->n++] = late;
    mw_svc_stats_t st;
    mw_svc_stats(f->svc, &st);
    assert_true(st.accepted < (uint64_t)f->n); /* a client waits in the backlog */

    /* 300 ms out of descriptors: a spinning listener burns most of a core
     * meanwhile; resting it costs next to nothing. */
    uint64_t t0 = mw_now_ns(), c0 = cpu_ns();
    while (mw_now_ns() - t0 < 300 * MW_NS_PER_MS) {
        if (mode == MW_MODE_EVENT) poll(NULL, 0, 10); /* measuring, not synchronising */
        else mw_svc_poll(f->svc, 10 * MW_NS_PER_MS);
    }
    uint64_t cpu = cpu_ns() - c0, wall = mw_now_ns() - t0;
    if (cpu * 4 > wall) fail_msg("%s: %llu ms of CPU in %llu ms out of descriptors", mw_mode_name(mode),
                                 (unsigned long long)(cpu / MW_NS_PER_MS), (unsigned long long)(wall / MW_NS_PER_MS));
    mw_svc_stats(f->svc, &st);
    assert_true(st.refused_nofd <= 10); /* a few tries, not one per wake-up */

    /* descriptors again: every waiting client is taken */
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &f->saved), 0);
    if (mode == MW_MODE_EVENT) {
        assert_true(mw_wait_until(all_accepted, f, WAIT_MS));
    } else {
        for (int i = 0; i < 2000 && !all_accepted(f); i++) mw_svc_poll(f->svc, MW_NS_PER_MS);
        assert_true(all_accepted(f));
    }
}

static void test_svc_out_of_fds_does_not_spin_event(void **state) {
    nofd_does_not_spin(svh_ud(state), MW_MODE_EVENT);
}
static void test_svc_out_of_fds_does_not_spin_blocking(void **state) {
    nofd_does_not_spin(svh_ud(state), MW_MODE_BLOCKING);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_svc_out_of_fds_does_not_spin_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_svc_out_of_fds_does_not_spin_blocking, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
