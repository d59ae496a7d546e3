/* mw_proc.c - child processes for tests; see mw_proc.h. */
#include "mw_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mw_test.h"

#define MAX_PROCS 32

static mw_proc_t table[MAX_PROCS];

static uint64_t ms_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static void append(mw_proc_t *p, int k, const char *s, size_t n) {
    if (p->len[k] + n + 1 > p->cap[k]) {
        size_t cap = p->cap[k] * 2;
        while (cap < p->len[k] + n + 1) cap *= 2;
        char *q = realloc(p->out[k], cap);
        if (!q) fail_msg("out of memory for the output of %s", p->name);
        p->out[k] = q;
        p->cap[k] = cap;
    }
    memcpy(p->out[k] + p->len[k], s, n);
    p->len[k] += n;
    p->out[k][p->len[k]] = '\0';
}

mw_proc_t *mw_proc_start(const char *name, char *const argv[]) {
    mw_proc_t *p = NULL;
    for (int i = 0; i < MAX_PROCS && !p; i++)
        if (!table[i].used) p = &table[i];
    if (!p) fail_msg("more than %d child processes at once", MAX_PROCS);
    memset(p, 0, sizeof *p);
    p->used = true;
    snprintf(p->name, sizeof p->name, "%s", name);
    p->pidfd = p->fd[0] = p->fd[1] = -1;
    for (int k = 0; k < 2; k++) {
        p->cap[k] = 4096;
        p->out[k] = calloc(1, p->cap[k]);
        if (!p->out[k]) fail_msg("out of memory");
    }
    int po[2], pe[2];
    if (pipe2(po, O_CLOEXEC) != 0 || pipe2(pe, O_CLOEXEC) != 0) fail_msg("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(po[1], STDOUT_FILENO); /* the copies lose O_CLOEXEC */
        dup2(pe[1], STDERR_FILENO);
        execv(argv[0], argv);
        _exit(127);
    }
    close(po[1]);
    close(pe[1]);
    p->pid = pid;
    p->fd[0] = po[0];
    p->fd[1] = pe[0];
    fcntl(po[0], F_SETFL, O_NONBLOCK);
    fcntl(pe[0], F_SETFL, O_NONBLOCK);
    p->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    return p;
}

static void drain(mw_proc_t *p, int k) {
    char tmp[65536];
    while (p->fd[k] >= 0) {
        ssize_t n = read(p->fd[k], tmp, sizeof tmp);
        if (n > 0) {
            append(p, k, tmp, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        close(p->fd[k]);
        p->fd[k] = -1;
    }
}

static void try_reap(mw_proc_t *p) {
    if (p->pid <= 0 || p->reaped) return;
    int st;
    if (waitpid(p->pid, &st, WNOHANG) != p->pid) return;
    p->status = st;
    p->reaped = true;
}

void mw_proc_pump(int timeout_ms) {
    struct pollfd pf[MAX_PROCS * 3];
    int n = 0;
    bool tick = false;
    for (int i = 0; i < MAX_PROCS; i++) {
        mw_proc_t *p = &table[i];
        if (!p->used) continue;
        for (int k = 0; k < 2; k++)
            if (p->fd[k] >= 0) pf[n++] = (struct pollfd){p->fd[k], POLLIN, 0};
        if (!p->reaped && p->pidfd >= 0) pf[n++] = (struct pollfd){p->pidfd, POLLIN, 0};
        if (!p->reaped && p->pidfd < 0) tick = true; /* no pidfd: look again soon */
    }
    if (tick && timeout_ms > 20) timeout_ms = 20;
    if (n) poll(pf, (nfds_t)n, timeout_ms);
    for (int i = 0; i < MAX_PROCS; i++) {
        mw_proc_t *p = &table[i];
        if (!p->used) continue;
        for (int k = 0; k < 2; k++) drain(p, k);
        try_reap(p);
    }
}

typedef bool (*cond_fn)(mw_proc_t *p, const void *arg);

static bool wait_cond(mw_proc_t *p, cond_fn fn, const void *arg, int timeout_ms) {
    uint64_t dl = ms_now() + (uint64_t)timeout_ms;
    for (;;) {
        if (fn(p, arg)) return true;
        uint64_t now = ms_now();
        if (now >= dl) {
            mw_proc_pump(0);
            return fn(p, arg);
        }
        mw_proc_pump((int)(dl - now < 200 ? dl - now : 200));
    }
}

typedef struct text_arg {
    int k;
    size_t from;
    const char *needle;
} text_arg_t;

static bool has_text(mw_proc_t *p, const void *arg) {
    const text_arg_t *a = arg;
    return p->len[a->k] >= a->from && strstr(p->out[a->k] + a->from, a->needle) != NULL;
}

bool mw_proc_wait_text(mw_proc_t *p, int k, size_t from, const char *needle, int timeout_ms) {
    text_arg_t a = {k, from, needle};
    return wait_cond(p, has_text, &a, timeout_ms);
}

static bool exited(mw_proc_t *p, const void *arg) {
    (void)arg;
    return p->reaped && p->fd[0] < 0 && p->fd[1] < 0;
}

bool mw_proc_wait_exit(mw_proc_t *p, int timeout_ms) { return wait_cond(p, exited, NULL, timeout_ms); }

int mw_proc_exit_code(const mw_proc_t *p) {
    int st = p->status;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static void kill_and_reap(mw_proc_t *p) {
    if (p->pid <= 0 || p->reaped) return;
    kill(p->pid, SIGKILL);
    int st;
    if (waitpid(p->pid, &st, 0) == p->pid) { /* bounded: SIGKILL cannot be caught */
        p->status = st;
        p->reaped = true;
    }
}

int mw_proc_stop(mw_proc_t *p, int sig, int timeout_ms) {
    if (sig && p->pid > 0 && !p->reaped) kill(p->pid, sig);
    if (mw_proc_wait_exit(p, timeout_ms)) return mw_proc_exit_code(p);
    kill_and_reap(p);
    for (int k = 0; k < 2; k++) drain(p, k);
    return -1;
}

void mw_proc_release(mw_proc_t *p) {
    if (!p || !p->used) return;
    kill_and_reap(p);
    for (int k = 0; k < 2; k++) {
        if (p->fd[k] >= 0) close(p->fd[k]);
        p->fd[k] = -1;
        free(p->out[k]);
        p->out[k] = NULL;
    }
    if (p->pidfd >= 0) close(p->pidfd);
    p->pidfd = -1;
    p->used = false;
}

int mw_proc_release_all(void **state) {
    (void)state;
    for (int i = 0; i < MAX_PROCS; i++) mw_proc_release(&table[i]);
    return 0;
}
