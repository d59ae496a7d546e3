/* tool.c - helpers shared by the command-line tools; see tool.h. */
#include "tool.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mw_serdes.h"

static const char *prog_name = "tool";
static atomic_bool stopping;

void tool_init(const char *prog) { prog_name = prog; }

const char *tool_prog(void) { return prog_name; }

static void vsay(const char *fmt, va_list ap) {
    fflush(stdout);
    fprintf(stderr, "%s: ", prog_name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

_Noreturn void tool_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsay(fmt, ap);
    va_end(ap);
    exit(TOOL_EXIT_FAIL);
}

_Noreturn void tool_usage_fail(const char *usage, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsay(fmt, ap);
    va_end(ap);
    fputs(usage, stderr);
    exit(TOOL_EXIT_USAGE);
}

static void on_signal(int sig) {
    (void)sig;
    atomic_store(&stopping, true);
}

void tool_catch_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

bool tool_stopping(void) { return atomic_load_explicit(&stopping, memory_order_relaxed); }

/* ---- options -------------------------------------------------------------- */

static bool parse_value(const tool_opt_t *o, const char *val) {
    char *end;
    errno = 0;
    switch (o->kind) {
    case TOOL_OPT_STR:
        *(const char **)o->dst = val;
        return *val != '\0';
    case TOOL_OPT_U64: {
        if (*val < '0' || *val > '9') return false;
        unsigned long long v = strtoull(val, &end, 10);
        if (errno || *end) return false;
        *(uint64_t *)o->dst = (uint64_t)v;
        return true;
    }
    case TOOL_OPT_INT: {
        if (*val < '0' || *val > '9') return false;
        long v = strtol(val, &end, 10);
        if (errno || *end || v > INT_MAX) return false;
        *(int *)o->dst = (int)v;
        return true;
    }
    case TOOL_OPT_F64: {
        double v = strtod(val, &end);
        if (errno || end == val || *end || !isfinite(v) || v < 0) return false;
        *(double *)o->dst = v;
        return true;
    }
    case TOOL_OPT_FLAG:
        break;
    }
    return false;
}

static const tool_opt_t *find_opt(const tool_opt_t *opts, size_t n, const char *name, size_t len) {
    for (size_t i = 0; i < n; i++)
        if (strlen(opts[i].name) == len && memcmp(opts[i].name, name, len) == 0) return &opts[i];
    return NULL;
}

void tool_parse(int argc, char **argv, int first, const tool_opt_t *opts, size_t nopts,
                const char *usage) {
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            exit(TOOL_EXIT_OK);
        }
        if (strncmp(a, "--", 2) != 0) tool_usage_fail(usage, "unexpected argument '%s'", a);
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const tool_opt_t *o = find_opt(opts, nopts, a, len);
        if (!o) tool_usage_fail(usage, "unknown option '%.*s'", (int)len, a);
        if (o->seen) *o->seen = true;
        if (o->kind == TOOL_OPT_FLAG) {
            if (eq) tool_usage_fail(usage, "%s takes no value", o->name);
            *(bool *)o->dst = true;
            continue;
        }
        const char *val = eq ? eq + 1 : NULL;
        if (!val) {
            if (i + 1 >= argc) tool_usage_fail(usage, "%s needs a value", o->name);
            val = argv[++i];
        }
        if (!parse_value(o, val)) tool_usage_fail(usage, "bad value for %s: '%s'", o->name, val);
    }
}

mw_mode_t tool_parse_mode(const char *name, const char *usage) {
    int m = mw_mode_parse(name);
    if (m < 0) tool_usage_fail(usage, "unknown mode '%s' (spin, blocking, event)", name);
    return (mw_mode_t)m;
}

void tool_check_serdes(const char *name, const char *usage) {
    if (mw_serdes_find(name) || strcmp(name, "msgpack-array") == 0) return;
    tool_usage_fail(usage, "unknown serdes '%s' (fixed, text, msgpack, msgpack-array)", name);
}

/* ---- statistics ----------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

void tool_sort_u64(uint64_t *v, size_t n) { qsort(v, n, sizeof *v, cmp_u64); }

uint64_t tool_rank(const uint64_t *sorted, size_t n, double pct) {
    /* rank = ceil(pct/100 * n), computed in integers where it matters: the
     * 1e-9 guard keeps 99.9% of 1000 from rounding up to rank 1000. */
    double r = pct / 100.0 * (double)n;
    size_t rank = (size_t)r;
    if ((double)rank < r - 1e-9) rank++;
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return sorted[rank - 1];
}

void tool_percentiles(uint64_t *v, size_t n, tool_pct_t *out) {
    tool_sort_u64(v, n);
    out->min = v[0];
    out->p50 = tool_rank(v, n, 50);
    out->p90 = tool_rank(v, n, 90);
    out->p99 = tool_rank(v, n, 99);
    out->p999 = tool_rank(v, n, 99.9);
    out->max = v[n - 1];
}

/* ---- JSON ----------------------------------------------------------------- */

static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static void json_key(tool_json_t *j, const char *key) {
    if (j->comma[j->depth]) fputc(',', j->f);
    j->comma[j->depth] = true;
    json_string(j->f, key);
    fputc(':', j->f);
}

void tool_json_begin(tool_json_t *j, FILE *f) {
    j->f = f;
    j->depth = 0;
    j->comma[0] = false;
    fputc('{', f);
}

void tool_json_str(tool_json_t *j, const char *key, const char *val) {
    json_key(j, key);
    json_string(j->f, val);
}

void tool_json_u64(tool_json_t *j, const char *key, uint64_t val) {
    json_key(j, key);
    fprintf(j->f, "%llu", (unsigned long long)val);
}

void tool_json_f64(tool_json_t *j, const char *key, double val, int decimals) {
    json_key(j, key);
    if (isfinite(val)) fprintf(j->f, "%.*f", decimals, val);
    else fputs("null", j->f);
}

void tool_json_obj(tool_json_t *j, const char *key) {
    json_key(j, key);
    fputc('{', j->f);
    if (j->depth + 1 < (int)(sizeof j->comma / sizeof j->comma[0])) j->depth++;
    j->comma[j->depth] = false;
}

void tool_json_close(tool_json_t *j) {
    fputc('}', j->f);
    if (j->depth > 0) j->depth--;
}

void tool_json_end(tool_json_t *j) {
    while (j->depth > 0) tool_json_close(j);
    fputs("}\n", j->f);
    fflush(j->f);
}

/* ---- progress ------------------------------------------------------------- */

#define NS_PER_S 1000000000ull

void tool_progress_init(tool_progress_t *p, bool force, const char *unit, uint64_t total) {
    memset(p, 0, sizeof *p);
    p->on = force || isatty(STDERR_FILENO);
    p->unit = unit;
    p->total = total;
    p->next_ns = 0; /* the first tick only sets the clock */
}

void tool__progress_print(tool_progress_t *p, uint64_t now_ns, uint64_t done) {
    if (p->last_ns == 0) { /* first call: start the clock, print nothing yet */
        p->last_ns = now_ns;
        p->last_done = done;
        p->next_ns = now_ns + NS_PER_S;
        return;
    }
    double rate = (double)(done - p->last_done) * 1e9 / (double)(now_ns - p->last_ns);
    if (p->total)
        fprintf(stderr, "\r%s: %llu/%llu %s (%.0f%%), %.0f/s   ", prog_name, (unsigned long long)done,
                (unsigned long long)p->total, p->unit, 100.0 * (double)done / (double)p->total, rate);
    else
        fprintf(stderr, "\r%s: %llu %s, %.0f/s   ", prog_name, (unsigned long long)done, p->unit, rate);
    fflush(stderr);
    p->printed = true;
    p->last_ns = now_ns;
    p->last_done = done;
    p->next_ns = now_ns + NS_PER_S;
}

void tool_progress_end(tool_progress_t *p) {
    if (p->printed) fputc('\n', stderr);
    p->printed = false;
}

/* ---- SVG latency chart ---------------------------------------------------- */

/* Two panels: a histogram with log-scaled round-trip times (x) and counts
 * (y), so one slow sample in 100,000 still shows as a bar, and below it the
 * latency at each percentile on a "nines" axis (0, 90, 99, 99.9 %, ...), where
 * a 1 % tail at milliseconds is a visible step. */
enum { SVG_W = 860, SVG_H = 900, PL = 80, PR = 45, MAX_BUCKETS = 240,
       HIST_Y = 130, HIST_H = 280, PCT_Y = 520, PCT_H = 300 };

typedef struct chart {
    FILE *f;
    double xlo, xhi, ylo, yhi; /* data range at the edges (log units) */
    double x0, y0, w, h;       /* plot area in pixels */
} chart_t;

static double log_us(uint64_t ns) { return log10((double)(ns ? ns : 1) / 1e3); }

static double px(const chart_t *c, double x) { return c->x0 + (x - c->xlo) / (c->xhi - c->xlo) * c->w; }

static double py(const chart_t *c, double y) { return c->y0 + c->h - (y - c->ylo) / (c->yhi - c->ylo) * c->h; }

static void svg_line(FILE *f, double x1, double y1, double x2, double y2, const char *stroke) {
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n", x1, y1, x2, y2, stroke);
}

static void svg_text(FILE *f, double x, double y, const char *anchor, const char *text) {
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\">", x, y, anchor);
    for (const char *s = text; *s; s++) { /* XML-escape */
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else fputc(*s, f);
    }
    fputs("</text>\n", f);
}

/* Tick label in microseconds, compact from 10^5 on ("200k"). */
static void tick_label(char *buf, size_t cap, double us) {
    if (us >= 1e5) snprintf(buf, cap, "%gk", us / 1e3);
    else snprintf(buf, cap, "%g", us);
}

/* Gridlines and labels of a log10(microseconds) axis, horizontal (the
 * histogram's x) or vertical (the percentile panel's y): at 1, 2, 5 x 10^k,
 * every integer multiple when the range is under a decade, only 10^k labelled
 * when it is wide. */
static void svg_us_axis(const chart_t *c, bool vertical) {
    static const int fine[] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, coarse[] = {1, 2, 5};
    double lo = vertical ? c->ylo : c->xlo, hi = vertical ? c->yhi : c->xhi;
    bool narrow = hi - lo < 1, wide = hi - lo > 2.5;
    const int *steps = narrow ? fine : coarse;
    int nsteps = narrow ? 9 : 3;
    fprintf(c->f, "<g font-size=\"12\" fill=\"#333\">\n");
    for (int e = (int)floor(lo) - 1; e <= (int)ceil(hi); e++) {
        for (int k = 0; k < nsteps; k++) {
            double lg = e + log10(steps[k]);
            if (lg < lo - 1e-9 || lg > hi + 1e-9) continue;
            char label[32];
            tick_label(label, sizeof label, pow(10, lg));
            if (vertical) {
                double y = py(c, lg);
                svg_line(c->f, c->x0, y, c->x0 + c->w, y, "#e4e4e4");
                if (!wide || !k) svg_text(c->f, c->x0 - 8, y + 4, "end", label);
            } else {
                double x = px(c, lg);
                svg_line(c->f, x, c->y0, x, c->y0 + c->h, "#e4e4e4");
                if (!wide || !k) svg_text(c->f, x, c->y0 + c->h + 19, "middle", label);
            }
        }
    }
    fprintf(c->f, "</g>\n");
}

static void svg_axis_titles(const chart_t *c, const char *xtitle, const char *ytitle) {
    fprintf(c->f, "<g font-size=\"13\" fill=\"#333\">\n");
    svg_text(c->f, c->x0 + c->w / 2, c->y0 + c->h + 42, "middle", xtitle);
    fprintf(c->f, "<text transform=\"translate(18,%.1f) rotate(-90)\" text-anchor=\"middle\">%s</text>\n",
            c->y0 + c->h / 2, ytitle);
    fprintf(c->f, "</g>\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
                  "stroke=\"#333\"/>\n", c->x0, c->y0, c->w, c->h);
}

/* ---- histogram panel ---- */

/* Counts axis: log10(count) from log10(0.5) (so a single sample has a bar)
 * to a whole decade; gridlines at 1, 10, 100, ... */
static void svg_count_axis(const chart_t *c) {
    fprintf(c->f, "<g font-size=\"12\" fill=\"#333\">\n");
    for (int e = 0; e <= (int)c->yhi; e++) {
        static const char *const names[] = {"1", "10", "100", "1k", "10k", "100k", "1M", "10M", "100M", "1G"};
        double y = py(c, e);
        svg_line(c->f, c->x0, y, c->x0 + c->w, y, "#e4e4e4");
        svg_text(c->f, c->x0 - 8, y + 4, "end", e < 10 ? names[e] : "");
    }
    fprintf(c->f, "</g>\n");
}

static void svg_bars(const chart_t *c, const uint32_t *counts, int nb, double per) {
    fprintf(c->f, "<g fill=\"#4a7fb5\">\n");
    for (int i = 0; i < nb; i++) {
        if (!counts[i]) continue;
        double xa = px(c, c->xlo + i / per), xb = px(c, c->xlo + (i + 1) / per);
        double top = py(c, log10(counts[i]));
        fprintf(c->f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/>\n", xa, top,
                xb - xa > 1.5 ? xb - xa - 0.5 : 1.0, c->y0 + c->h - top);
    }
    fprintf(c->f, "</g>\n");
}

static const struct marker {
    const char *name, *color;
    double pct;
} markers[] = {{"p50", "#2a9d3a", 50}, {"p90", "#c98a00", 90}, {"p99", "#d0502a", 99}, {"p99.9", "#a02070", 99.9}};

static uint64_t marker_value(const tool_pct_t *p, int i) {
    const uint64_t v[] = {p->p50, p->p90, p->p99, p->p999};
    return v[i];
}

static void svg_markers(const chart_t *c, const tool_pct_t *p) {
    for (int i = 0; i < 4; i++) {
        uint64_t v = marker_value(p, i);
        double x = px(c, log_us(v)), ly = c->y0 - 6 - 14.0 * (3 - i);
        fprintf(c->f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                      "stroke-width=\"1.5\" stroke-dasharray=\"5,3\"/>\n",
                x, ly + 2, x, c->y0 + c->h, markers[i].color);
        bool left = x > c->x0 + c->w * 0.8; /* keep labels near the right edge inside */
        fprintf(c->f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" fill=\"%s\" text-anchor=\"%s\">"
                      "%s %.2f us</text>\n",
                left ? x - 4 : x + 4, ly, markers[i].color, left ? "end" : "start", markers[i].name, v / 1e3);
    }
}

/* Buckets per decade: fine enough to show shape, at most MAX_BUCKETS. */
static int fill_buckets(const uint64_t *v, size_t n, double lo, double hi, uint32_t *counts,
                        double *per_out) {
    double per = 40;
    while ((hi - lo) * per > MAX_BUCKETS) per /= 2;
    int nb = (int)ceil((hi - lo) * per - 1e-9);
    if (nb < 1) nb = 1;
    memset(counts, 0, sizeof(uint32_t) * MAX_BUCKETS);
    for (size_t i = 0; i < n; i++) {
        int b = (int)((log_us(v[i]) - lo) * per);
        counts[b < 0 ? 0 : b >= nb ? nb - 1 : b]++;
    }
    *per_out = per;
    return nb;
}

static void svg_histogram(FILE *f, const uint64_t *v, size_t n, const tool_pct_t *p, double lo, double hi) {
    uint32_t counts[MAX_BUCKETS], peak = 1;
    double per;
    int nb = fill_buckets(v, n, lo, hi, counts, &per);
    for (int i = 0; i < nb; i++)
        if (counts[i] > peak) peak = counts[i];
    chart_t c = {f, lo, hi, log10(0.5), ceil(log10(peak) + 1e-9), PL, HIST_Y, SVG_W - PL - PR, HIST_H};
    if (c.yhi < 1) c.yhi = 1;
    svg_count_axis(&c);
    svg_us_axis(&c, false);
    svg_bars(&c, counts, nb, per);
    svg_markers(&c, p);
    svg_axis_titles(&c, "round-trip time (microseconds, log scale)", "count per bucket (log scale)");
}

/* ---- percentile panel ---- */

/* The nines axis: x = log10(1 / (1 - q)), so 0 %, 90 %, 99 %, 99.9 % ... are
 * equally spaced. */
static void svg_nines_axis(const chart_t *c) {
    fprintf(c->f, "<g font-size=\"12\" fill=\"#333\">\n");
    for (int k = 0; k <= (int)c->xhi; k++) {
        char label[32]; /* 0%, 90%, 99%, 99.9%, 99.99% ... */
        if (k < 3) snprintf(label, sizeof label, "%s%%", k == 0 ? "0" : k == 1 ? "90" : "99");
        else snprintf(label, sizeof label, "99.%.*s%%", k - 2, "9999999999");
        double x = px(c, k);
        svg_line(c->f, x, c->y0, x, c->y0 + c->h, "#e4e4e4");
        svg_text(c->f, x, c->y0 + c->h + 19, "middle", label);
    }
    fprintf(c->f, "</g>\n");
}

static void svg_percentiles(FILE *f, const uint64_t *v, size_t n, const tool_pct_t *p, double lo, double hi) {
    double top = log10((double)n); /* the slowest sample sits at 1 - 1/n */
    chart_t c = {f, 0, top < 1 ? 1 : top, lo, hi, PL, PCT_Y, SVG_W - PL - PR, PCT_H};
    svg_us_axis(&c, true);
    svg_nines_axis(&c);
    /* One point per pixel column: the sample at the rank where that column's
     * percentile falls, then the slowest one. */
    fprintf(f, "<polyline fill=\"none\" stroke=\"#4a7fb5\" stroke-width=\"2\" points=\"");
    int cols = (int)c.w;
    for (int i = 0; i <= cols; i++) {
        double x = c.xhi * i / cols;
        if (x > top) break;
        double rank = (double)n - (double)n / pow(10, x);
        size_t r = rank < 0 ? 0 : (size_t)rank >= n ? n - 1 : (size_t)rank;
        fprintf(f, "%.1f,%.1f ", px(&c, x), py(&c, log_us(v[r])));
    }
    fprintf(f, "%.1f,%.1f\"/>\n", px(&c, top), py(&c, log_us(v[n - 1])));
    for (int i = 0; i < 4; i++) {
        double x = px(&c, -log10(1 - markers[i].pct / 100)), y = py(&c, log_us(marker_value(p, i)));
        if (markers[i].pct / 100 > 1 - 1.0 / (double)n) continue; /* beyond the samples */
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>\n"
                   "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" fill=\"%s\">%s %.2f us</text>\n",
                x, y, markers[i].color, x + 6, y > c.y0 + c.h / 2 ? y - 9 : y + 17, markers[i].color, markers[i].name,
                marker_value(p, i) / 1e3);
    }
    svg_axis_titles(&c, "percentile (share of round trips at or below)", "round-trip time (us, log scale)");
}

int tool_svg_histogram(const char *path, const uint64_t *v, size_t n, const tool_pct_t *p,
                       const char *title) {
    if (n == 0) {
        errno = EINVAL;
        return -1;
    }
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    /* Latency range: whole tenths of a decade around min .. max. */
    double lo = floor(log_us(v[0]) * 10) / 10, hi = ceil(log_us(v[n - 1]) * 10 + 1e-9) / 10;
    if (hi - lo < 0.3) hi = lo + 0.3;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/>\n",
            SVG_W, SVG_H, SVG_W, SVG_H);
    /* The title on one line, or two when long: broken after the comma
     * nearest the middle. */
    char line[512];
    snprintf(line, sizeof line, "%s", title);
    const char *rest = "";
    size_t len = strlen(line);
    if (len > 80) {
        char *best = NULL;
        for (char *q = strstr(line, ", "); q; q = strstr(q + 1, ", "))
            if (!best || labs((long)(q - line) - (long)len / 2) < labs((long)(best - line) - (long)len / 2)) best = q;
        if (best) {
            best[1] = 0;
            rest = best + 2;
        }
    }
    fprintf(f, "<g font-size=\"15\" font-weight=\"bold\">\n");
    svg_text(f, PL, 22, "start", line);
    svg_text(f, PL, 42, "start", rest);
    size_t over_ms = 0;
    while (over_ms < n && v[n - 1 - over_ms] > 1000000) over_ms++;
    fprintf(f, "</g>\n<text x=\"%d\" y=\"64\" font-size=\"12\" fill=\"#555\">%zu samples, min %.2f us, "
               "p50 %.2f us, p99 %.2f us, max %.2f us; %zu over 1 ms (%.3f%%)</text>\n",
            PL, n, p->min / 1e3, p->p50 / 1e3, p->p99 / 1e3, p->max / 1e3, over_ms, 100.0 * (double)over_ms / (double)n);
    svg_histogram(f, v, n, p, lo, hi);
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"14\" font-weight=\"bold\">Latency by percentile "
               "(the tail, right, on a log axis)</text>\n", PL, PCT_Y - 22);
    svg_percentiles(f, v, n, p, lo, hi);
    fprintf(f, "</svg>\n");
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        if (!errno) errno = EIO;
        return -1;
    }
    return 0;
}

/* ---- CPU ------------------------------------------------------------------ */

int tool_pin_cpu(int cpu) {
    if (cpu < 0) return 0;
    if (cpu >= CPU_SETSIZE) return EINVAL;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set) == 0 ? 0 : errno;
}

int tool_ncpu(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

void tool_apply_tls(mw_transport_opts_t *tr, const tool_tls_t *t, bool server) {
    if (server) {
        tr->tls.cert_file = t->cert;
        tr->tls.key_file = t->key;
        return;
    }
    tr->tls.ca_file = t->ca;
    tr->tls.cert_file = t->cert; /* a client certificate, if the server asks */
    tr->tls.key_file = t->key;
    tr->tls.insecure_skip_verify = t->insecure;
}

const char *tool_url_path(const char *url) {
    const char *p = strstr(url, "://");
    if (p) p = strchr(p + 3, '/');
    return p && strcmp(p, "/") != 0 ? p : NULL;
}
