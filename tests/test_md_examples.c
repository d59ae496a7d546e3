/* test_md_examples.c - the market-data examples as a user runs them:
 * build/examples/exchange_sim and build/examples/md_client as child
 * processes on 127.0.0.1, talking JSON over WebSocket.
 *
 *   - md_client (3 symbols, --record) survives the exchange being SIGKILLed
 *     and restarted on the same port: every symbol reconnects, subscribes
 *     again and receives data; then --replay of the first session's
 *     recording prints the same messages the live run printed for it, with
 *     the recorded receive times, and a truncated copy of the recording ends
 *     with a clear error after the complete messages;
 *   - md_client notices a frozen exchange (SIGSTOP) by its idle timeout and
 *     reconnects once it runs again;
 *   - Python's websockets package (an independent client) subscribes with
 *     plain JSON and gets trades and quotes; another path gets a 404, and
 *     garbage closes the connection, with the reason on the exchange's stderr;
 *   - usage and file errors end with the documented exit codes.
 *
 * Children are managed by PID only: started with fork/execv (killed by the
 * kernel if this process dies: PR_SET_PDEATHSIG), always reaped, and every
 * wait is a poll on their output pipes and pidfd with a deadline; nothing
 * sleeps.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mw_test.h"

#ifndef MW_BUILD_DIR
#define MW_BUILD_DIR "build"
#endif

#define SIM_BIN MW_BUILD_DIR "/examples/exchange_sim"
#define MDC_BIN MW_BUILD_DIR "/examples/md_client"
#define START_MS 10000    /* a child prints its first line within this */
#define DATA_MS 15000     /* messages flow within this */
#define RECONNECT_MS 20000 /* backoff tops out at 2 s; generous under load */
#define EXIT_MS 15000

/* ---- child processes ---------------------------------------------------------------- */

typedef struct buf {
    char *p;
    size_t len, cap;
} buf_t;

typedef struct proc {
    const char *name;
    pid_t pid;   /* > 0 while running or not yet reaped */
    int pidfd;   /* readable once it exited; -1 if the kernel has none */
    int fd[2];   /* stdout, stderr read ends; -1 once at EOF */
    buf_t out[2];
    int status;  /* wait status once reaped */
    bool reaped;
} proc_t;

enum { MAX_PROCS = 8 };

/* Data lines of one symbol, one string each (see lines_of). */
typedef struct lines {
    const char *sym;
    size_t stop; /* offset where collecting ends */
    char **v;
    size_t n, cap;
} lines_t;

typedef struct fixture {
    proc_t procs[MAX_PROCS];
    lines_t live, rep, part; /* freed by the teardown, also after a failure */
    char dir[64];
} fixture_t;

static uint64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static void buf_add(buf_t *b, const char *p, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) fail_msg("out of memory for child output");
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static const char *out_of(const proc_t *p) { return p->out[0].p ? p->out[0].p : ""; }
static const char *err_of(const proc_t *p) { return p->out[1].p ? p->out[1].p : ""; }

static proc_t *proc_start(fixture_t *fx, const char *name, char *const argv[]) {
    proc_t *p = NULL;
    for (int i = 0; i < MAX_PROCS && !p; i++)
        if (fx->procs[i].pid == 0) p = &fx->procs[i];
    if (!p) fail_msg("too many children");
    for (int k = 0; k < 2; k++) free(p->out[k].p);
    memset(p, 0, sizeof *p);
    p->name = name;
    p->pidfd = p->fd[0] = p->fd[1] = -1;
    int po[2], pe[2];
    if (pipe2(po, O_CLOEXEC) != 0 || pipe2(pe, O_CLOEXEC) != 0) fail_msg("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        dup2(po[1], STDOUT_FILENO);       /* the duplicates lose O_CLOEXEC */
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

static void proc_read(proc_t *p, int k) {
    char tmp[65536];
    for (;;) {
        ssize_t n = read(p->fd[k], tmp, sizeof tmp);
        if (n > 0) {
            buf_add(&p->out[k], tmp, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EAGAIN) return;
        if (n < 0 && errno == EINTR) continue;
        close(p->fd[k]);
        p->fd[k] = -1;
        return;
    }
}

static void proc_try_reap(proc_t *p) {
    if (p->pid <= 0 || p->reaped) return;
    int st;
    if (waitpid(p->pid, &st, WNOHANG) != p->pid) return;
    p->status = st;
    p->reaped = true;
    for (int k = 0; k < 2; k++)
        if (p->fd[k] >= 0) proc_read(p, k); /* what it wrote before exiting */
}

/* Waits up to timeout_ms for output or an exit of any child, takes it in,
 * and reaps children that exited. */
static void pump(fixture_t *fx, int timeout_ms) {
    struct pollfd pf[MAX_PROCS * 3];
    int n = 0;
    bool need_tick = false;
    for (int i = 0; i < MAX_PROCS; i++) {
        proc_t *p = &fx->procs[i];
        if (p->pid <= 0) continue;
        for (int k = 0; k < 2; k++)
            if (p->fd[k] >= 0) pf[n++] = (struct pollfd){p->fd[k], POLLIN, 0};
        if (!p->reaped && p->pidfd >= 0) pf[n++] = (struct pollfd){p->pidfd, POLLIN, 0};
        if (!p->reaped && p->pidfd < 0) need_tick = true; /* no pidfd: look again soon */
    }
    if (need_tick && timeout_ms > 20) timeout_ms = 20;
    if (n) poll(pf, (nfds_t)n, timeout_ms);
    for (int i = 0; i < MAX_PROCS; i++) {
        proc_t *p = &fx->procs[i];
        if (p->pid <= 0) continue;
        for (int k = 0; k < 2; k++)
            if (p->fd[k] >= 0) proc_read(p, k);
        proc_try_reap(p);
    }
}

/* Pumps until cond holds (true) or the deadline passes (false). */
static bool wait_for(fixture_t *fx, bool (*cond)(void *ud), void *ud, int timeout_ms) {
    uint64_t dl = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        if (cond(ud)) return true;
        uint64_t now = now_ms();
        if (now >= dl) return cond(ud);
        pump(fx, (int)(dl - now < 100 ? dl - now : 100));
    }
}

static bool reaped(void *ud) { return ((proc_t *)ud)->reaped; }

/* Sends sig (0: none) and waits for the exit; returns the wait status. The
 * child is killed and the test fails at the deadline. */
static int proc_end(fixture_t *fx, proc_t *p, int sig, int timeout_ms) {
    if (sig && !p->reaped) kill(p->pid, sig);
    if (!wait_for(fx, reaped, p, timeout_ms)) {
        kill(p->pid, SIGKILL);
        fail_msg("%s did not exit within %d ms\nstdout: %.2000s\nstderr: %.2000s", p->name, timeout_ms,
                 out_of(p), err_of(p));
    }
    return p->status;
}

static void proc_release(proc_t *p) {
    if (p->pid > 0 && !p->reaped) {
        kill(p->pid, SIGKILL); /* also stops a SIGSTOPped child */
        int st;
        struct pollfd pf = {p->pidfd, POLLIN, 0};
        if (p->pidfd >= 0) poll(&pf, 1, 5000);
        waitpid(p->pid, &st, 0); /* bounded: SIGKILL cannot be ignored */
    }
    for (int k = 0; k < 2; k++) {
        if (p->fd[k] >= 0) close(p->fd[k]);
        free(p->out[k].p);
    }
    if (p->pidfd >= 0) close(p->pidfd);
    memset(p, 0, sizeof *p);
}

static int exit_code(int st) { return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0); }

static void lines_free(lines_t *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* ---- fixture ------------------------------------------------------------------------ */

static int fx_setup(void **state) {
    fixture_t *fx = calloc(1, sizeof *fx);
    if (!fx) return -1;
    snprintf(fx->dir, sizeof fx->dir, "/tmp/mw_md_test.XXXXXX");
    if (!mkdtemp(fx->dir)) {
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

static int fx_teardown(void **state) {
    fixture_t *fx = *state;
    for (int i = 0; i < MAX_PROCS; i++) proc_release(&fx->procs[i]);
    lines_free(&fx->live);
    lines_free(&fx->rep);
    lines_free(&fx->part);
    DIR *d = opendir(fx->dir);
    struct dirent *e;
    char path[sizeof fx->dir + 256];
    while (d && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", fx->dir, e->d_name);
        unlink(path);
    }
    if (d) closedir(d);
    if (rmdir(fx->dir) != 0) fprintf(stderr, "note: cannot remove %s: %s\n", fx->dir, strerror(errno));
    free(fx);
    return 0;
}

/* ---- output parsing ------------------------------------------------------------------- */

/* Calls fn for each complete line of text[from..), with its offset. */
typedef bool (*line_fn)(void *ud, const char *line, size_t len, size_t off);
static void each_line(const char *text, size_t from, line_fn fn, void *ud) {
    const char *p = text + from;
    for (;;) {
        const char *nl = strchr(p, '\n');
        if (!nl) return;
        if (!fn(ud, p, (size_t)(nl - p), (size_t)(p - text))) return;
        p = nl + 1;
    }
}

/* A trade or quote line of sym ("BTCUSD trade seq=..."). */
static bool is_data(const char *line, size_t len, const char *sym) {
    size_t n = strlen(sym);
    return len > n + 6 && memcmp(line, sym, n) == 0 &&
           (memcmp(line + n, " trade ", 7) == 0 || memcmp(line + n, " quote ", 7) == 0);
}

typedef struct count { const char *sym; size_t n; } count_t;

static bool count_data(void *ud, const char *line, size_t len, size_t off) {
    (void)off;
    count_t *c = ud;
    if (is_data(line, len, c->sym)) c->n++;
    return true;
}

/* Offset just past the line "<what>\n" (exact), or -1. */
static long line_end(const char *text, const char *what) {
    size_t n = strlen(what);
    for (const char *p = text; (p = strstr(p, what)) != NULL; p += n) {
        if ((p == text || p[-1] == '\n') && p[n] == '\n') return (long)(p - text + (long)n + 1);
    }
    return -1;
}

/* Data lines of sym in text after the line `after` (whole text if NULL). */
static size_t data_after(const char *text, const char *sym, const char *after) {
    long from = 0;
    if (after && (from = line_end(text, after)) < 0) return 0;
    count_t c = {sym, 0};
    each_line(text, (size_t)from, count_data, &c);
    return c.n;
}

static bool collect(void *ud, const char *line, size_t len, size_t off) {
    lines_t *l = ud;
    if (off >= l->stop) return false;
    if (!is_data(line, len, l->sym)) return true;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
        if (!l->v) fail_msg("out of memory");
    }
    l->v[l->n++] = strndup(line, len);
    return true;
}


/* The data lines of sym between the lines `from` and `to` (NULL: the start,
 * the end). */
static void lines_of(lines_t *l, const char *text, const char *sym, const char *from, const char *to) {
    lines_free(l);
    l->sym = sym;
    long a = from ? line_end(text, from) : 0;
    long b = to ? line_end(text, to) : -1;
    if (a < 0) fail_msg("no line '%s' in:\n%.3000s", from, text);
    l->stop = b < 0 ? strlen(text) : (size_t)b;
    each_line(text, (size_t)a, collect, l);
}

/* The N of "... rx=N". */
static void split_rx(const char *line, uint64_t *rx) {
    const char *p = strstr(line, " rx=");
    if (!p || sscanf(p + 4, "%" SCNu64, rx) != 1) fail_msg("no rx= in '%s'", line);
}

/* The summary row of sym: msgs and connects. */
static bool summary_row(const char *text, const char *sym, uint64_t *msgs, uint64_t *connects) {
    const char *s = strstr(text, "\nsummary after ");
    char pat[32];
    snprintf(pat, sizeof pat, "\n%s ", sym);
    const char *row = s ? strstr(s, pat) : NULL;
    uint64_t trades, quotes;
    return row && sscanf(row + strlen(pat), "%" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64, msgs, &trades, &quotes,
                         connects) == 4;
}

/* ---- starting the exchange -------------------------------------------------------------- */

typedef struct line_wait { proc_t *p; const char *what; } line_wait_t;

static bool has_text(void *ud) {
    line_wait_t *w = ud;
    return strstr(out_of(w->p), w->what) != NULL || w->p->reaped;
}

static bool status_has(void *ud) {
    line_wait_t *w = ud;
    return strstr(err_of(w->p), w->what) != NULL || w->p->reaped;
}

/* Starts exchange_sim on port (0: any) and returns its port, or 0 when it
 * exited without listening (the process is reaped then). */
static int sim_try_start(fixture_t *fx, proc_t **out, int port, const char *rate) {
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/ws", port);
    char *argv[] = {SIM_BIN, "--url", url, "--rate", (char *)rate, "--symbols", "BTCUSD,ETHUSD,SOLUSD,XRPUSD", NULL};
    proc_t *p = proc_start(fx, "exchange_sim", argv);
    line_wait_t w = {p, "listening on "};
    if (!wait_for(fx, has_text, &w, START_MS)) fail_msg("exchange_sim printed no port; stderr: %s", err_of(p));
    int got = 0;
    if (sscanf(out_of(p), "listening on %d", &got) != 1 || got <= 0) {
        proc_end(fx, p, SIGKILL, EXIT_MS);
        fprintf(stderr, "note: exchange_sim did not start on port %d: %s", port, err_of(p));
        proc_release(p);
        return 0;
    }
    *out = p;
    return got;
}

static proc_t *sim_start(fixture_t *fx, int *port, const char *rate) {
    proc_t *p = NULL;
    int got = sim_try_start(fx, &p, *port, rate);
    if (!got) fail_msg("exchange_sim did not start on port %d", *port);
    *port = got;
    return p;
}

/* ---- md_client conditions ----------------------------------------------------------------- */

/* For each symbol: a line "<pre><SYM><post>" exists (pre, post given), or
 * at least min data lines follow the line "<SYM><after>" (after given) or
 * appear at all (after NULL). */
typedef struct feed_wait {
    proc_t *p;
    const char *const *syms;
    int nsyms;
    const char *pre, *post;
    const char *after;
    size_t min;
} feed_wait_t;

static bool feeds_ready(void *ud) {
    feed_wait_t *w = ud;
    const char *text = out_of(w->p);
    for (int i = 0; i < w->nsyms; i++) {
        char pat[128];
        if (w->pre) {
            snprintf(pat, sizeof pat, "%s%s%s", w->pre, w->syms[i], w->post);
            if (!strstr(text, pat)) return w->p->reaped;
            continue;
        }
        if (w->after) snprintf(pat, sizeof pat, "%s%s", w->syms[i], w->after);
        if (data_after(text, w->syms[i], w->after ? pat : NULL) < w->min) return w->p->reaped;
    }
    return true;
}

static void expect_feeds(fixture_t *fx, feed_wait_t *w, int timeout_ms, const char *what) {
    if (!wait_for(fx, feeds_ready, w, timeout_ms) || w->p->reaped)
        fail_msg("md_client: %s: not within %d ms (exited: %d)\nstdout tail: %s\nstderr: %.3000s", what, timeout_ms,
                 w->p->reaped ? exit_code(w->p->status) : -1,
                 out_of(w->p) + (strlen(out_of(w->p)) > 3000 ? strlen(out_of(w->p)) - 3000 : 0), err_of(w->p));
}

/* ---- recordings ------------------------------------------------------------------------------ */

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (!p || fread(p, 1, (size_t)n, f) != (size_t)n) fail_msg("read %s", path);
    fclose(f);
    *len = (size_t)n;
    return p;
}

static void spit(const char *path, const char *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) fail_msg("write %s: %s", path, strerror(errno));
}

static uint64_t le(const char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | (uint8_t)p[i];
    return v;
}

/* Writes a copy of the recording cut in the middle of a record two thirds
 * in (mw_record.h: 18-byte header + label, then 12-byte record headers).
 * Returns the offset of the record that was cut. */
static size_t cut_recording(const char *src, const char *dst) {
    size_t n;
    char *d = slurp(src, &n);
    size_t first = 18 + (size_t)le(d + 16, 2), off = first, nrec = 0;
    for (; off + 12 <= n; nrec++) off += 12 + (size_t)le(d + off + 8, 4);
    /* Three records are enough to cut one with whole ones before it (the
     * handshake's and at least one of messages). A record is one read, and
     * under load one read can bring many messages: 6 was asked here once and
     * a loaded run recorded 10+ messages in 3 reads. */
    if (off != n || nrec < 3) fail_msg("%s: %zu records, parse ended at %zu of %zu bytes", src, nrec, off, n);
    size_t at = first;
    for (size_t i = 0; i < nrec * 2 / 3; i++) at += 12 + (size_t)le(d + at + 8, 4);
    spit(dst, d, at + 12 + (size_t)le(d + at + 8, 4) / 2);
    free(d);
    return at;
}

/* Runs md_client --replay path --print to its end. */
static proc_t *replay(fixture_t *fx, const char *path) {
    char *argv[] = {MDC_BIN, "--replay", (char *)path, "--print", NULL};
    proc_t *p = proc_start(fx, "md_client --replay", argv);
    proc_end(fx, p, 0, EXIT_MS);
    return p;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static const char *const SYMS[] = {"BTCUSD", "ETHUSD", "SOLUSD"};

/* The replay of BTCUSD's first session prints exactly the lines the live run
 * printed for that session: the same messages with the same receive times
 * (live, mw_clt_rx_time_ns is the recorder's stamp of the read; replayed, it
 * is that stamp read back), never decreasing. */
static void check_replay_matches_live(fixture_t *fx, const char *live_out, const char *rec) {
    proc_t *r = replay(fx, rec);
    if (exit_code(r->status) != 0)
        fail_msg("replay of %s: exit %d\nstderr: %s", rec, exit_code(r->status), err_of(r));
    assert_non_null(strstr(out_of(r), "end of recording after "));
    lines_t *live = &fx->live, *rep = &fx->rep, *part = &fx->part;
    lines_of(live, live_out, "BTCUSD", "BTCUSD connected #1", "BTCUSD connected #2 (reconnect)");
    lines_of(rep, out_of(r), "BTCUSD", NULL, NULL);
    if (live->n == 0 || live->n != rep->n)
        fail_msg("live session 1 printed %zu BTCUSD messages, the replay %zu", live->n, rep->n);
    uint64_t prev = 0;
    for (size_t i = 0; i < live->n; i++) {
        if (strcmp(live->v[i], rep->v[i]) != 0)
            fail_msg("message %zu differs:\n live:   %s\n replay: %s", i, live->v[i], rep->v[i]);
        uint64_t rx;
        split_rx(rep->v[i], &rx);
        if (rx < prev) fail_msg("replayed receive time went back at message %zu: %s", i, rep->v[i]);
        prev = rx;
    }
    char closed[64];
    snprintf(closed, sizeof closed, "BTCUSD closed after %zu messages", live->n);
    if (!strstr(live_out, closed)) fail_msg("live run: no '%s'", closed);

    /* A copy cut inside a record: the complete messages before the cut, then the error. */
    char cut[128];
    snprintf(cut, sizeof cut, "%s/cut.mwrec", fx->dir);
    size_t at = cut_recording(rec, cut);
    proc_t *t = replay(fx, cut);
    char want[400];
    snprintf(want, sizeof want, "md_client: replay %s: recv: ws: recording %s: truncated record at offset %zu\n", cut,
             cut, at);
    if (exit_code(t->status) != 2 || !strstr(err_of(t), want))
        fail_msg("truncated replay: exit %d, stderr '%s', wanted '%s'", exit_code(t->status), err_of(t), want);
    lines_of(part, out_of(t), "BTCUSD", NULL, NULL);
    if (part->n == 0 || part->n >= rep->n) fail_msg("truncated replay printed %zu of %zu messages", part->n, rep->n);
    for (size_t i = 0; i < part->n; i++)
        if (strcmp(part->v[i], rep->v[i]) != 0) fail_msg("truncated replay line %zu: %s", i, part->v[i]);
    assert_non_null(strstr(out_of(t), "replay failed after "));
}

static void test_md_client_resubscribes_after_the_exchange_is_killed_and_restarted_and_replays_it(void **state) {
    fixture_t *fx = *state;
    int port = 0;
    proc_t *sim = sim_start(fx, &port, "100");
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/ws", port);
    char *argv[] = {MDC_BIN, "--url", url, "--symbols", "BTCUSD,ETHUSD,SOLUSD", "--seconds", "60",
                    "--print", "--record", fx->dir, NULL};
    proc_t *mdc = proc_start(fx, "md_client", argv);

    feed_wait_t w = {mdc, SYMS, 3, NULL, NULL, NULL, 10};
    expect_feeds(fx, &w, DATA_MS, "10 messages per symbol");
    assert_int_equal(exit_code(proc_end(fx, sim, SIGKILL, EXIT_MS)), 128 + SIGKILL);
    feed_wait_t closed = {mdc, SYMS, 3, "\n", " closed after ", NULL, 0};
    expect_feeds(fx, &closed, DATA_MS, "every connection dropped");

    /* The same port again; retried in case a reconnect attempt holds it. */
    int again = 0;
    for (int i = 0; i < 5 && !again; i++) again = sim_try_start(fx, &sim, port, "100");
    if (again != port) fail_msg("exchange_sim did not restart on port %d", port);
    feed_wait_t back = {mdc, SYMS, 3, NULL, NULL, " connected #2 (reconnect)", 5};
    expect_feeds(fx, &back, RECONNECT_MS, "5 messages per symbol after reconnect #2");
    line_wait_t status = {mdc, "reconnects=1"}; /* the status line on stderr */
    if (!wait_for(fx, status_has, &status, DATA_MS)) fail_msg("no status line with reconnects=1: %s", err_of(mdc));

    int st = proc_end(fx, mdc, SIGTERM, EXIT_MS);
    const char *out = out_of(mdc);
    if (exit_code(st) != 0)
        fail_msg("md_client exit %d\nstderr: %.3000s\nstdout tail: %s", exit_code(st), err_of(mdc),
                 out + (strlen(out) > 3000 ? strlen(out) - 3000 : 0));
    assert_non_null(strstr(out, "\nok: every symbol received data after its last connect\n"));
    for (int i = 0; i < 3; i++) {
        uint64_t msgs, connects;
        if (!summary_row(out, SYMS[i], &msgs, &connects)) fail_msg("no summary row for %s", SYMS[i]);
        assert_true(connects >= 2);
        assert_true(msgs >= 15);
        char restarted[64];
        snprintf(restarted, sizeof restarted, "\n%s seq ", SYMS[i]); /* "BTCUSD seq 40 -> 12 across the reconnect" */
        assert_non_null(strstr(out, restarted));
    }
    proc_end(fx, sim, SIGTERM, EXIT_MS);

    char rec[128];
    snprintf(rec, sizeof rec, "%s/BTCUSD-1.mwrec", fx->dir);
    check_replay_matches_live(fx, out, rec);
}

static void test_md_client_drops_a_frozen_exchange_after_its_idle_timeout(void **state) {
    fixture_t *fx = *state;
    int port = 0;
    proc_t *sim = sim_start(fx, &port, "100");
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/ws", port);
    char *argv[] = {MDC_BIN, "--url", url, "--symbols", "BTCUSD", "--seconds", "60", "--print", NULL};
    proc_t *mdc = proc_start(fx, "md_client", argv);
    feed_wait_t first = {mdc, SYMS, 1, NULL, NULL, " connected #1", 3};
    expect_feeds(fx, &first, DATA_MS, "data");

    kill(sim->pid, SIGSTOP); /* the socket stays open, nothing arrives */
    feed_wait_t idle = {mdc, SYMS, 1, "\n", " closed after ", NULL, 0};
    expect_feeds(fx, &idle, DATA_MS, "idle timeout");
    assert_non_null(strstr(out_of(mdc), " messages: nothing received for 3000 ms\n"));
    kill(sim->pid, SIGCONT);
    feed_wait_t data = {mdc, SYMS, 1, NULL, NULL, " connected #2 (reconnect)", 3};
    expect_feeds(fx, &data, RECONNECT_MS, "data after the reconnect");

    assert_int_equal(exit_code(proc_end(fx, mdc, SIGTERM, EXIT_MS)), 0);
    assert_non_null(strstr(out_of(mdc), "\nok: every symbol received data after its last connect\n"));
    assert_int_equal(exit_code(proc_end(fx, sim, SIGTERM, EXIT_MS)), 0);
}

/* A browser-like client in another language: plain JSON text frames. */
static const char PY_CLIENT[] =
    "import asyncio, json, sys, websockets\n"
    "KEYS = {'trade': {'type','symbol','seq','px','qty','side','ts_ns'},\n"
    "        'quote': {'type','symbol','seq','bid','ask','bid_qty','ask_qty','ts_ns'}}\n"
    "async def main(port):\n"
    "    try:\n"
    "        async with websockets.connect('ws://127.0.0.1:%s/elsewhere' % port):\n"
    "            raise AssertionError('connected to a path the exchange does not serve')\n"
    "    except websockets.InvalidStatusCode as e:\n"
    "        assert e.status_code == 404, e\n"
    "    async with websockets.connect('ws://127.0.0.1:%s/ws' % port) as ws:\n"
    "        async def recv():\n"
    "            raw = await ws.recv()\n"
    "            assert isinstance(raw, str), 'not a text frame: %r' % raw\n"
    "            return json.loads(raw)\n"
    "        await ws.send(json.dumps({'type': 'subscribe', 'symbol': 'BTCUSD'}))\n"
    "        m = await recv()\n"
    "        assert m == {'type': 'subscribed', 'symbol': 'BTCUSD', 'ok': True}, m\n"
    "        await ws.send(json.dumps({'type': 'subscribe', 'symbol': 'NOPE'}))\n"
    "        await ws.send(json.dumps({'type': 'heartbeat', 'ts_ns': 1}))\n"
    "        seqs, kinds, nope, hb = [], set(), False, False\n"
    "        while len(seqs) < 40 or not (nope and hb):\n"
    "            m = await recv()\n"
    "            t = m['type']\n"
    "            if t == 'subscribed':\n"
    "                assert m == {'type': 'subscribed', 'symbol': 'NOPE', 'ok': False}, m\n"
    "                nope = True\n"
    "            elif t == 'heartbeat':\n"
    "                assert m['ts_ns'] > 1500000000 * 10**9, m\n"
    "                hb = True\n"
    "            else:\n"
    "                assert set(m) == KEYS[t] and m['symbol'] == 'BTCUSD', m\n"
    "                assert not seqs or m['seq'] == seqs[-1] + 1, (seqs[-1], m)\n"
    "                if t == 'trade': assert m['side'] in (0, 1) and m['qty'] > 0 and m['px'] > 0, m\n"
    "                else: assert 0 < m['bid'] < m['ask'], m\n"
    "                seqs.append(m['seq'])\n"
    "                kinds.add(t)\n"
    "        assert kinds == {'trade', 'quote'}, kinds\n"
    "        await ws.send(json.dumps({'type': 'unsubscribe', 'symbol': 'BTCUSD'}))\n"
    "        while True:\n"
    "            m = await recv()\n"
    "            if m['type'] == 'subscribed': break\n"
    "        assert m == {'type': 'subscribed', 'symbol': 'BTCUSD', 'ok': False}, m\n"
    "        await ws.send('this is not JSON')\n"
    "        try:\n"
    "            m = await recv()\n"
    "            raise AssertionError('still open after garbage, got %r' % m)\n"
    "        except websockets.ConnectionClosed:\n"
    "            pass\n"
    "        print('OK', len(seqs), seqs[0], seqs[-1], flush=True)\n"
    "asyncio.run(asyncio.wait_for(main(sys.argv[1]), 15))\n";

static bool sim_reported_garbage(void *ud) { return strstr(err_of(ud), "closed: recv: text decode: ") != NULL; }

static void test_exchange_sim_serves_plain_json_to_python_websockets(void **state) {
    fixture_t *fx = *state;
    mw_test_require(mw_have_python_module("websockets"), MW_PYTHON " with websockets (python3-websockets)");
    int port = 0;
    proc_t *sim = sim_start(fx, &port, "400");
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    char *argv[] = {MW_PYTHON, "-c", (char *)PY_CLIENT, ps, NULL};
    proc_t *py = proc_start(fx, "python client", argv);
    int st = proc_end(fx, py, 0, 30000);
    if (exit_code(st) != 0 || strncmp(out_of(py), "OK ", 3) != 0)
        fail_msg("python client: exit %d\nstdout: %s\nstderr: %s", exit_code(st), out_of(py), err_of(py));
    if (!wait_for(fx, sim_reported_garbage, sim, DATA_MS))
        fail_msg("exchange_sim did not report the garbage; stderr: %s", err_of(sim));
    assert_int_equal(exit_code(proc_end(fx, sim, SIGTERM, EXIT_MS)), 0);
    assert_non_null(strstr(out_of(sim), "exchange_sim: 2 clients served, "));
    assert_non_null(strstr(out_of(sim), " 2 clients closed on an error")); /* the 404 and the garbage */
    assert_non_null(strstr(err_of(sim), "closed: ws handshake: answered 404 Not Found"));
}

static void test_md_examples_fail_with_the_documented_exit_codes(void **state) {
    fixture_t *fx = *state;
    char bad[128];
    snprintf(bad, sizeof bad, "%s/bad.mwrec", fx->dir);
    spit(bad, "MWREC\0\2\0", 8); /* a format version that does not exist */
    static const struct { const char *what; int code; const char *err; char *argv[8]; } cases[] = {
        {"md_client, no arguments", 1, "--url is required", {MDC_BIN, NULL}},
        {"md_client, bad symbol", 1, "bad --symbols", {MDC_BIN, "--url", "ws://127.0.0.1:1/ws", "--symbols", "A,,B", NULL}},
        {"md_client, replay with url", 1, "--replay takes only", {MDC_BIN, "--replay", "x", "--url", "ws://h:1/", NULL}},
        {"md_client, missing recording", 2, "No such file", {MDC_BIN, "--replay", "/nonexistent/x.mwrec", NULL}},
        {"exchange_sim, zero rate", 1, "--rate must be", {SIM_BIN, "--url", "ws://127.0.0.1:0/ws", "--rate", "0", NULL}},
        {"exchange_sim, no url", 1, "--url is required", {SIM_BIN, NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        proc_t *p = proc_start(fx, cases[i].what, cases[i].argv);
        int st = proc_end(fx, p, 0, EXIT_MS);
        if (exit_code(st) != cases[i].code || !strstr(err_of(p), cases[i].err))
            fail_msg("%s: exit %d (want %d), stderr: %s", cases[i].what, exit_code(st), cases[i].code, err_of(p));
        proc_release(p);
    }
    char *argv[] = {MDC_BIN, "--replay", bad, NULL};
    proc_t *p = proc_start(fx, "md_client, bad version", argv);
    int st = proc_end(fx, p, 0, EXIT_MS);
    if (exit_code(st) != 2 || !strstr(err_of(p), "unsupported format version 2 at offset 6"))
        fail_msg("bad version: exit %d, stderr: %s", exit_code(st), err_of(p));
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_md_client_resubscribes_after_the_exchange_is_killed_and_restarted_and_replays_it, fx_setup,
            fx_teardown),
        cmocka_unit_test_setup_teardown(test_md_client_drops_a_frozen_exchange_after_its_idle_timeout, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_exchange_sim_serves_plain_json_to_python_websockets, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_md_examples_fail_with_the_documented_exit_codes, fx_setup,
                                        fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
