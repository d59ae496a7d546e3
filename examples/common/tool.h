/* tool.h - helpers shared by the command-line tools (pingpong, flood):
 * failing with the right exit code, option parsing, percentiles over a
 * recorded array, a one-line JSON writer, a progress line, an SVG latency
 * chart and CPU pinning.
 *
 * Exit codes of every tool: 0 ok, 1 usage error, 2 runtime failure (one line
 * on stderr). Results go to stdout; progress and errors go to stderr.
 */
#ifndef TOOL_H
#define TOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mw_conn.h"
#include "mw_mode.h"
#include "mw_transport.h"

enum { TOOL_EXIT_OK = 0, TOOL_EXIT_USAGE = 1, TOOL_EXIT_FAIL = 2 };

/* ---- failing -------------------------------------------------------------- */

/* Sets the program name used as the prefix of every message ("pingpong"). */
void tool_init(const char *prog);
const char *tool_prog(void);
/* Prints "prog: <message>" to stderr (stdout is flushed first) and exits 2. */
_Noreturn void tool_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "prog: <message>" and the usage text to stderr and exits 1. */
_Noreturn void tool_usage_fail(const char *usage, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* SIGINT / SIGTERM set a flag (tool_stopping) instead of killing the process,
 * so servers can end their loops and clean up; SIGPIPE is ignored. */
void tool_catch_signals(void);
bool tool_stopping(void);

/* ---- options -------------------------------------------------------------- */

typedef enum tool_opt_kind {
    TOOL_OPT_FLAG, /* bool: present or not */
    TOOL_OPT_STR,  /* const char * */
    TOOL_OPT_U64,  /* uint64_t, decimal */
    TOOL_OPT_INT,  /* int >= 0, decimal */
    TOOL_OPT_F64   /* double >= 0 */
} tool_opt_kind_t;

typedef struct tool_opt {
    const char *name; /* "--count" */
    tool_opt_kind_t kind;
    void *dst;        /* where the value goes; its type follows kind */
    bool *seen;       /* optional: set true when the option was given */
} tool_opt_t;

/* Parses argv[first..argc) as "--name value" or "--name=value" (flags take no
 * value) into the table. On an unknown option, a missing or bad value, or a
 * stray argument, fails through tool_usage_fail (exit 1). */
void tool_parse(int argc, char **argv, int first, const tool_opt_t *opts, size_t nopts,
                const char *usage);

/* TLS material for tls:// and wss:// URLs: --cert/--key (servers), --ca
 * (clients verify against it; default: the system store), --insecure
 * (clients skip verification: tests only). */
typedef struct tool_tls {
    const char *cert, *key, *ca;
    bool insecure;
} tool_tls_t;
#define TOOL_TLS_OPTS(t)                                                                       {"--cert", TOOL_OPT_STR, &(t)->cert, NULL}, {"--key", TOOL_OPT_STR, &(t)->key, NULL},         {"--ca", TOOL_OPT_STR, &(t)->ca, NULL}, {"--insecure", TOOL_OPT_FLAG, &(t)->insecure, NULL}
void tool_apply_tls(mw_transport_opts_t *tr, const tool_tls_t *t, bool server);
/* The path of a ws:// or wss:// URL ("/feed" in "ws://host:port/feed"), for
 * a Svc's tr.ws.expect_path: a pointer into url, or NULL when it has none or
 * it is "/" (any path is accepted then). */
const char *tool_url_path(const char *url);

/* --mode and --serdes values: fail through tool_usage_fail when unknown. */
mw_mode_t tool_parse_mode(const char *name, const char *usage);
void tool_check_serdes(const char *name, const char *usage);

/* ---- statistics ----------------------------------------------------------- */

typedef struct tool_pct {
    uint64_t min, p50, p90, p99, p999, max;
} tool_pct_t;

/* Sorts v[0..n) in place, ascending. */
void tool_sort_u64(uint64_t *v, size_t n);
/* Nearest-rank percentile (0 < pct <= 100) of a sorted, non-empty array:
 * the smallest value with at least pct% of the values at or below it. */
uint64_t tool_rank(const uint64_t *sorted, size_t n, double pct);
/* Sorts v and fills min, p50, p90, p99, p99.9 and max. n must be > 0. */
void tool_percentiles(uint64_t *v, size_t n, tool_pct_t *out);

/* ---- one JSON object on one line ------------------------------------------ */

typedef struct tool_json {
    FILE *f;
    int depth;
    bool comma[8];
} tool_json_t;

/* begin writes '{'; end closes every open object, writes '\n' and flushes. */
void tool_json_begin(tool_json_t *j, FILE *f);
void tool_json_str(tool_json_t *j, const char *key, const char *val);
void tool_json_u64(tool_json_t *j, const char *key, uint64_t val);
void tool_json_f64(tool_json_t *j, const char *key, double val, int decimals);
void tool_json_obj(tool_json_t *j, const char *key); /* "key":{ */
void tool_json_close(tool_json_t *j);                /* } */
void tool_json_end(tool_json_t *j);

/* ---- progress line on stderr ---------------------------------------------- */

typedef struct tool_progress {
    bool on, printed;
    const char *unit;      /* "round trips", "msgs" */
    uint64_t total;        /* 0: unknown */
    uint64_t next_ns;      /* next print */
    uint64_t last_ns, last_done;
} tool_progress_t;

/* Enabled when force is set or stderr is a terminal. */
void tool_progress_init(tool_progress_t *p, bool force, const char *unit, uint64_t total);
void tool__progress_print(tool_progress_t *p, uint64_t now_ns, uint64_t done);
/* Prints "\r<done>/<total> <unit>, <rate>/s" at most once a second. Cheap
 * when nothing is due: call it with a time you already have. */
static inline void tool_progress_tick(tool_progress_t *p, uint64_t now_ns, uint64_t done) {
    if (p->on && now_ns >= p->next_ns) tool__progress_print(p, now_ns, done);
}
/* Ends the line (if one was printed) so the results start on a fresh line. */
void tool_progress_end(tool_progress_t *p);

/* ---- SVG latency chart ---------------------------------------------------- */

/* Writes a self-contained SVG of the sorted latencies v[0..n) (nanoseconds)
 * to path, in two panels: a histogram with log-scaled buckets (x, in
 * microseconds) and log-scaled counts (y), so a single slow sample still
 * shows, with markers at p50, p90, p99 and p99.9; and the latency at each
 * percentile on a "nines" axis (0, 90, 99, 99.9 %, ... up to 1 - 1/n), where
 * a 1 % tail at milliseconds is a visible step. title (one line; broken in two
 * when long) goes above; the line below it gives the sample count, min, p50,
 * p99, max and how many samples took over 1 ms. Returns 0, or -1 with errno
 * set (EINVAL when n is 0). */
int tool_svg_histogram(const char *path, const uint64_t *v, size_t n, const tool_pct_t *p,
                       const char *title);

/* ---- CPU ------------------------------------------------------------------ */

/* Pins the calling thread (and the threads it starts afterwards) to cpu with
 * sched_setaffinity. cpu < 0 does nothing. Returns 0 or an errno value. */
int tool_pin_cpu(int cpu);
/* CPUs online. */
int tool_ncpu(void);

#endif
