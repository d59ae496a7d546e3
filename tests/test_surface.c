/* test_surface.c - the public surface is what the installed headers declare,
 * and nothing more.
 *
 *   - libmsgwire.so exports exactly the functions (and objects) that the
 *     installed headers (core|serdes|clt|svc/mw_*.h, the Makefile's PUB_HDRS)
 *     declare: the library is built with -fvisibility=hidden and the headers
 *     mark their declarations MW_API, so an internal function (mw__*, declared
 *     in a *_impl.h) cannot leak into the ABI, and a declared function cannot
 *     be missing from it;
 *   - an installed header includes only installed headers (never *_impl.h);
 *   - the surface stays small: public functions (declared plus static inline)
 *     per 1,000 lines of library code (non-blank, non-comment lines of the
 *     .c files of core/ serdes/ clt/ svc/) stay at most 14, the range of nng,
 *     libuv and Aeron (issue 8); the numbers are printed;
 *   - no call cycles between .c files (from `nm` of the library's objects),
 *     inside a layer's directory as well as across them: the files of clt/
 *     and svc/ call down only, in the order their *_impl.h names (issue 8).
 */
#include "mw_test.h"

#include <ctype.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXN 1024
#define NAMELEN 96

typedef struct names {
    char v[MAXN][NAMELEN];
    int n;
} names_t;

static void names_add(names_t *s, const char *p, size_t len) {
    if (len >= NAMELEN) len = NAMELEN - 1;
    for (int i = 0; i < s->n; i++)
        if (strlen(s->v[i]) == len && memcmp(s->v[i], p, len) == 0) return;
    assert_true(s->n < MAXN);
    memcpy(s->v[s->n], p, len);
    s->v[s->n][len] = '\0';
    s->n++;
}

static bool names_has(const names_t *s, const char *p) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->v[i], p) == 0) return true;
    return false;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    p[n] = '\0';
    fclose(f);
    return p;
}

/* Blanks out comments (keeping newlines), in place. */
static void strip_comments(char *s) {
    for (char *p = s; *p; p++) {
        if (p[0] == '/' && p[1] == '*') {
            char *e = strstr(p + 2, "*/");
            char *end = e ? e + 2 : p + strlen(p);
            for (; p < end; p++)
                if (*p != '\n') *p = ' ';
            p--;
        } else if (p[0] == '/' && p[1] == '/') {
            for (; *p && *p != '\n'; p++) *p = ' ';
            p--;
        } else if (*p == '"') { /* skip string literals */
            for (p++; *p && *p != '"' && *p != '\n'; p++)
                if (*p == '\\' && p[1]) p++;
        }
    }
}

static bool starts(const char *p, const char *w) {
    size_t n = strlen(w);
    return strncmp(p, w, n) == 0 && !(isalnum((unsigned char)p[n]) || p[n] == '_');
}

/* The installed headers, as the Makefile's PUB_HDRS finds them. */
static glob_t public_headers(void) {
    glob_t g;
    memset(&g, 0, sizeof g);
    static const char *const pats[] = {"core", "serdes", "clt", "svc"};
    for (size_t i = 0; i < 4; i++) {
        char pat[512];
        snprintf(pat, sizeof pat, "%s/%s/mw_*.h", MW_SRC_ROOT, pats[i]);
        glob(pat, i ? GLOB_APPEND : 0, NULL, &g);
    }
    assert_true(g.gl_pathc >= 10);
    return g;
}

/* Top-level declarations of one header, comments stripped: functions
 * (`[MW_API] type name(`, at column 0), `static inline` functions, and
 * `extern` objects. Macro bodies (lines after a backslash) are skipped. */
static void scan_header(const char *path, names_t *decl, names_t *inl, names_t *objs) {
    char *s = slurp(path);
    strip_comments(s);
    bool cont = false;
    for (char *line = s; line && *line;) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        bool was_cont = cont;
        size_t e = len;
        while (e > 0 && isspace((unsigned char)line[e - 1])) e--;
        cont = e > 0 && line[e - 1] == '\\';
        if (!was_cont && len && !isspace((unsigned char)line[0]) && line[0] != '#' && line[0] != '}' &&
            !starts(line, "typedef") && !starts(line, "struct") && !starts(line, "enum") && !starts(line, "union")) {
            char buf[512];
            snprintf(buf, sizeof buf, "%.*s", (int)(len < 511 ? len : 511), line);
            bool is_inline = starts(buf, "static");
            bool is_extern = starts(buf, "extern");
            char *paren = strchr(buf, '(');
            char *end = paren;
            if (is_extern && !paren) end = strchr(buf, ';');
            if (end) {
                char *q = end;
                while (q > buf && isspace((unsigned char)q[-1])) q--;
                char *b = q;
                while (b > buf && (isalnum((unsigned char)b[-1]) || b[-1] == '_')) b--;
                if (q - b > 3 && strncmp(b, "mw_", 3) == 0)
                    names_add(is_inline ? inl : (is_extern && !paren) ? objs : decl, b, (size_t)(q - b));
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    free(s);
}

/* Non-blank, non-comment lines of the library's .c files. */
static long library_code_lines(void) {
    long lines = 0;
    static const char *const dirs[] = {"core", "serdes", "clt", "svc"};
    for (size_t d = 0; d < 4; d++) {
        char pat[512];
        snprintf(pat, sizeof pat, "%s/%s/*.c", MW_SRC_ROOT, dirs[d]);
        glob_t g;
        if (glob(pat, 0, NULL, &g) != 0) continue;
        for (size_t i = 0; i < g.gl_pathc; i++) {
            char *s = slurp(g.gl_pathv[i]);
            strip_comments(s);
            bool blank = true;
            for (char *p = s; *p; p++) {
                if (*p == '\n') {
                    if (!blank) lines++;
                    blank = true;
                } else if (!isspace((unsigned char)*p)) {
                    blank = false;
                }
            }
            if (!blank) lines++;
            free(s);
        }
        globfree(&g);
    }
    return lines;
}

static names_t decl, inl, objs, exported;

static void test_surface_so_exports_exactly_what_installed_headers_declare(void **state) {
    (void)state;
    memset(&decl, 0, sizeof decl);
    memset(&inl, 0, sizeof inl);
    memset(&objs, 0, sizeof objs);
    memset(&exported, 0, sizeof exported);
    glob_t g = public_headers();
    for (size_t i = 0; i < g.gl_pathc; i++) scan_header(g.gl_pathv[i], &decl, &inl, &objs);
    size_t nhdrs = g.gl_pathc;
    globfree(&g);

    static char out[1 << 16];
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "nm -D --defined-only %s/libmsgwire.so", MW_BUILD_DIR);
    int rc = mw_run(cmd, out, sizeof out);
    if (rc != 0) fail_msg("%s failed (%d): %s", cmd, rc, out);
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        char addr[64], type[8], name[256];
        if (sscanf(line, "%63s %7s %255s", addr, type, name) != 3) continue;
        names_add(&exported, name, strlen(name));
    }

    int bad = 0;
    for (int i = 0; i < exported.n; i++) {
        if (names_has(&decl, exported.v[i]) || names_has(&objs, exported.v[i])) continue;
        printf("  exported but declared in no installed header: %s\n", exported.v[i]);
        bad++;
    }
    for (int i = 0; i < decl.n; i++) {
        if (names_has(&exported, decl.v[i])) continue;
        printf("  declared in an installed header but not exported (MW_API missing, or not defined): %s\n",
               decl.v[i]);
        bad++;
    }
    for (int i = 0; i < objs.n; i++) {
        if (names_has(&exported, objs.v[i])) continue;
        printf("  extern object declared but not exported: %s\n", objs.v[i]);
        bad++;
    }
    long lines = library_code_lines();
    int pub = decl.n + inl.n;
    printf("  public surface: %d functions in %zu installed headers (%d exported by libmsgwire.so, %d static "
           "inline), %d objects\n",
           pub, nhdrs, decl.n, inl.n, objs.n);
    printf("  %.1f public functions per 1,000 lines of library code (%ld non-blank, non-comment lines of "
           "core/ serdes/ clt/ svc/ .c files); %.1f counting exported ones only\n",
           pub * 1000.0 / (double)lines, lines, decl.n * 1000.0 / (double)lines);
    assert_int_equal(bad, 0);
    assert_true(decl.n > 50);
    assert_true(pub * 1000.0 / (double)lines <= 14.0);
}

static void test_surface_installed_headers_include_only_installed_headers(void **state) {
    (void)state;
    glob_t g = public_headers();
    names_t bases;
    memset(&bases, 0, sizeof bases);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *b = strrchr(g.gl_pathv[i], '/') + 1;
        assert_null(strstr(b, "_impl"));
        names_add(&bases, b, strlen(b));
    }
    int bad = 0;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        char *s = slurp(g.gl_pathv[i]);
        for (char *p = strstr(s, "#include \""); p; p = strstr(p + 1, "#include \"")) {
            char *a = p + 10, *e = strchr(a, '"');
            assert_non_null(e);
            char inc[256];
            snprintf(inc, sizeof inc, "%.*s", (int)(e - a), a);
            if (!names_has(&bases, inc)) {
                printf("  %s includes %s, which is not installed\n", strrchr(g.gl_pathv[i], '/') + 1, inc);
                bad++;
            }
        }
        free(s);
    }
    globfree(&g);
    assert_int_equal(bad, 0);
}

/* ---- file-level call cycles ------------------------------------------------ */

#define MAXOBJ 128
#define MAXSYM 8192

static char objname[MAXOBJ][64];
static int nobj;
static struct {
    char name[NAMELEN];
    int obj;
} defs[MAXSYM];
static int ndefs;
static bool edge[MAXOBJ][MAXOBJ], reach[MAXOBJ][MAXOBJ];

static int def_of(const char *name) {
    for (int i = 0; i < ndefs; i++)
        if (strcmp(defs[i].name, name) == 0) return defs[i].obj;
    return -1;
}

/* Runs nm on every object; calls fn(obj, type, name) per symbol line. */
static void each_symbol(glob_t *g, void (*fn)(int obj, char type, const char *name)) {
    static char out[1 << 18];
    for (size_t i = 0; i < g->gl_pathc; i++) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "nm -P %s", g->gl_pathv[i]);
        int rc = mw_run(cmd, out, sizeof out);
        if (rc != 0) fail_msg("%s failed (%d)", cmd, rc);
        for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
            char name[256], type[8];
            if (sscanf(line, "%255s %7s", name, type) != 2) continue;
            fn((int)i, type[0], name);
        }
    }
}

static void on_def(int obj, char type, const char *name) {
    if (!strchr("TDRBVWG", type)) return; /* global definitions only */
    assert_true(ndefs < MAXSYM);
    snprintf(defs[ndefs].name, sizeof defs[ndefs].name, "%s", name);
    defs[ndefs++].obj = obj;
}

static void on_use(int obj, char type, const char *name) {
    if (type != 'U') return;
    int d = def_of(name);
    if (d >= 0 && d != obj) edge[obj][d] = true;
}

static void test_surface_no_call_cycles_between_files(void **state) {
    (void)state;
    glob_t g;
    memset(&g, 0, sizeof g);
    static const char *const dirs[] = {"core", "serdes", "clt", "svc"};
    for (size_t i = 0; i < 4; i++) {
        char pat[512];
        snprintf(pat, sizeof pat, "%s/san/obj/%s/*.o", MW_BUILD_DIR, dirs[i]);
        glob(pat, i ? GLOB_APPEND : 0, NULL, &g);
    }
    nobj = (int)g.gl_pathc;
    assert_true(nobj > 20 && nobj <= MAXOBJ);
    for (int i = 0; i < nobj; i++) {
        const char *p = strstr(g.gl_pathv[i], "/san/obj/") + 9;
        snprintf(objname[i], sizeof objname[i], "%.*s.c", (int)(strlen(p) - 2), p);
    }
    ndefs = 0;
    memset(edge, 0, sizeof edge);
    each_symbol(&g, on_def);
    each_symbol(&g, on_use);
    globfree(&g);

    memcpy(reach, edge, sizeof reach);
    for (int k = 0; k < nobj; k++)
        for (int i = 0; i < nobj; i++)
            if (reach[i][k])
                for (int j = 0; j < nobj; j++)
                    if (reach[k][j]) reach[i][j] = true;

    bool seen[MAXOBJ] = {false};
    int cycles = 0, calls = 0;
    for (int i = 0; i < nobj; i++)
        for (int j = 0; j < nobj; j++) calls += edge[i][j];
    for (int i = 0; i < nobj; i++) {
        if (seen[i] || !reach[i][i]) continue;
        char members[1024] = "";
        for (int j = 0; j < nobj; j++) {
            if (j != i && !(reach[i][j] && reach[j][i])) continue;
            seen[j] = true;
            strncat(members, " ", sizeof members - strlen(members) - 1);
            strncat(members, objname[j], sizeof members - strlen(members) - 1);
        }
        printf("  call cycle:%s\n", members);
        for (int a = 0; a < nobj; a++)
            for (int b = 0; b < nobj; b++)
                if (edge[a][b] && reach[i][a] && reach[a][i] && reach[i][b] && reach[b][i])
                    printf("      %s -> %s\n", objname[a], objname[b]);
        cycles++;
    }
    printf("  %d objects, %d file-to-file call edges, %d call cycles\n", nobj, calls, cycles);
    assert_true(calls > 0); /* nm found the calls: an empty graph has no cycles either */
    assert_int_equal(cycles, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_surface_so_exports_exactly_what_installed_headers_declare),
        cmocka_unit_test(test_surface_installed_headers_include_only_installed_headers),
        cmocka_unit_test(test_surface_no_call_cycles_between_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
