/* test_interop_serdes.c - every serdes against an independent peer: Python's
 * own json, struct and msgpack modules (tests/py/serdes_peer.py).
 *
 * For text, fixed, msgpack and msgpack-array, over a set of edge-value
 * messages:
 *   1. C encodes, Python decodes and checks the bytes against the wire format,
 *      then sends back a canonical line that C compares with its own.
 *   2. Python encodes (several ways a conforming sender may), C decodes and
 *      compares field by field.
 *   3. Python builds malformed payloads; C must answer each with its specific
 *      error code.
 * A canonical line is compact JSON: "type", then the fields in declaration
 * order; ints exact, bool true/false, f64 its IEEE bits in hex, chars the
 * bytes before the first NUL in hex, bytes in hex. Comparing strings of that
 * form compares every bit that matters, and a mismatch prints readably.
 */
#include "mw_test.h"
#include "test_proto.h"
#include "serdes_impl.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PEER MW_PYTHON " " MW_SRC_ROOT "/tests/py/serdes_peer.py"
#define OUT_CAP (1u << 20) /* peer output: the truncation cases of text are ~120 KB */
#define WIRE_CAP 4096
#define LINE_CAP 1024
#define MAX_SAMPLES 32

/* ---- samples ---------------------------------------------------------------- */

typedef struct sample {
    const mw_schema_t *s;
    test_msg_t m;
} sample_t;

enum { INTS_MIN, INTS_MAX, INTS_ZERO, INTS_MIXED };

static void set_ints(all_kinds_t *m, int which) {
    switch (which) {
    case INTS_MIN:
        m->i8 = INT8_MIN, m->i16 = INT16_MIN, m->i32 = INT32_MIN, m->i64 = INT64_MIN;
        break; /* unsigned minimum is the zero left by memset */
    case INTS_MAX:
        m->i8 = INT8_MAX, m->i16 = INT16_MAX, m->i32 = INT32_MAX, m->i64 = INT64_MAX;
        m->u8 = UINT8_MAX, m->u16 = UINT16_MAX, m->u32 = UINT32_MAX, m->u64 = UINT64_MAX;
        break;
    case INTS_MIXED:
        m->i8 = -1, m->i16 = 12345, m->i32 = -123456789, m->i64 = -(INT64_C(1) << 53);
        m->u8 = 128, m->u16 = 256, m->u32 = 65536, m->u64 = (UINT64_C(1) << 53) + 1;
        break;
    }
}

/* CHARS are written as escapes so the exact bytes are visible. */
static const struct ak_row {
    int ints;
    double f64;
    const char *sym; /* at most 8 bytes */
    const char *raw; /* exactly 4 bytes */
    bool flag;
    uint8_t side;
} AK_ROWS[] = {
    {INTS_MIN, 0.1, "", "\x00\x00\x00\x00", false, 0},
    {INTS_MAX, -0.0, "ABCDEFGH", "\xff\xff\xff\xff", true, 2},               /* full */
    {INTS_ZERO, 1e308, "q\"b\\\n/", "\x00\x00\x00\x00", true, 0},            /* quote, backslash, newline */
    {INTS_MIN, 5e-324, "\xc3\xa9\xe2\x82\xac", "\xff\xff\xff\xff", false, 2}, /* "é€" */
    {INTS_MAX, 123456789.125, "\xe2\x82\xac\xe2\x82\xac\xc3\xa9", "\x00\x00\x00\x00", false, 0}, /* "€€é", full */
    {INTS_ZERO, -2.5e-300, "\xf0\x9f\x98\x80\xe2\x82\xacx", "\xff\xff\xff\xff", true, 2}, /* U+1F600 "€x": surrogate pair in \u form */
    {INTS_MIXED, 0.0, "\x01\t\x7f~", "\x00\xff\x7f\x80", true, 1},          /* control characters */
    {INTS_MIXED, -1.7976931348623157e308, "a", "\x01\x02\x03\x04", false, 1},
};

/* Non-finite f64 bit patterns: quiet NaN with a payload, negative NaN,
 * signalling NaN, +inf, -inf. Only formats that carry them (not text). */
static const uint64_t NONFINITE[] = {UINT64_C(0x7ff8000000000123), UINT64_C(0xfff8000000000000),
                                     UINT64_C(0x7ff0000000000001), UINT64_C(0x7ff0000000000000),
                                     UINT64_C(0xfff0000000000000)};

static void add_all_kinds(sample_t *out, const struct ak_row *r, double f64) {
    all_kinds_t *m = &out->m.all_kinds;
    out->s = all_kinds_schema();
    set_ints(m, r->ints);
    m->f64 = f64;
    assert_true(strlen(r->sym) <= sizeof m->sym);
    memcpy(m->sym, r->sym, strlen(r->sym));
    memcpy(m->raw, r->raw, sizeof m->raw);
    m->flag = r->flag;
    m->side = r->side;
}

/* Fills out[] and returns the count; non-finite doubles only if asked. */
static size_t make_samples(sample_t *out, bool nonfinite) {
    size_t n = 0;
    memset(out, 0, MAX_SAMPLES * sizeof *out);
    for (size_t i = 0; i < sizeof AK_ROWS / sizeof AK_ROWS[0]; i++, n++)
        add_all_kinds(&out[n], &AK_ROWS[i], AK_ROWS[i].f64);
    for (size_t i = 0; nonfinite && i < sizeof NONFINITE / sizeof NONFINITE[0]; i++, n++) {
        double d;
        memcpy(&d, &NONFINITE[i], sizeof d);
        add_all_kinds(&out[n], &AK_ROWS[6], d);
    }
    out[n].s = ping_schema(), out[n].m.ping = (ping_t){0, UINT64_MAX}, n++;
    out[n].s = ping_schema(), out[n].m.ping = (ping_t){UINT64_C(1234567890123456789), 1}, n++;
    out[n].s = heartbeat_schema(), out[n].m.heartbeat.unused = false, n++;
    out[n].s = heartbeat_schema(), out[n].m.heartbeat.unused = true, n++;
    assert_true(n <= MAX_SAMPLES);
    return n;
}

/* ---- canonical lines, hex ---------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf_t;

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf_t *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    assert_true(k >= 0 && (size_t)k < b->cap - b->n);
    b->n += (size_t)k;
}

static void sb_hex(sbuf_t *b, const void *p, size_t n) {
    for (size_t i = 0; i < n; i++) sb_printf(b, "%02x", ((const uint8_t *)p)[i]);
}

static void canon_field(sbuf_t *b, const mw_field_t *f, const void *m) {
    const uint8_t *p = (const uint8_t *)m + f->offset;
    switch (f->kind) {
    case MW_FK_F64: {
        uint64_t bits;
        memcpy(&bits, p, sizeof bits);
        sb_printf(b, "\"%016" PRIx64 "\"", bits);
        break;
    }
    case MW_FK_CHARS: sb_printf(b, "\""), sb_hex(b, p, mw__chars_len(f, m)), sb_printf(b, "\""); break;
    case MW_FK_BYTES: sb_printf(b, "\""), sb_hex(b, p, f->size), sb_printf(b, "\""); break;
    case MW_FK_BOOL: {
        uint64_t v = mw__field_get_u64(f, m);
        if (v <= 1) sb_printf(b, "%s", v ? "true" : "false");
        else sb_printf(b, "%" PRIu64, v); /* a corrupt bool shows as its byte */
        break;
    }
    default:
        if (mw__fkind_is_signed(f->kind)) sb_printf(b, "%" PRId64, mw__field_get_i64(f, m));
        else sb_printf(b, "%" PRIu64, mw__field_get_u64(f, m));
    }
}

static const char *canon(const mw_schema_t *s, const void *m, char *out, size_t cap) {
    sbuf_t b = {out, 0, cap};
    sb_printf(&b, "{\"type\":\"%s\"", s->name);
    for (unsigned i = 0; i < s->nfields; i++) {
        sb_printf(&b, ",\"%s\":", s->fields[i].name);
        canon_field(&b, &s->fields[i], m);
    }
    sb_printf(&b, "}");
    return out;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Decodes lowercase hex; returns the byte count. Fails the test on bad hex. */
static size_t unhex(const char *h, uint8_t *out, size_t cap) {
    size_t n = strlen(h);
    assert_true(n % 2 == 0 && n / 2 <= cap);
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexval(h[2 * i]), lo = hexval(h[2 * i + 1]);
        assert_true(hi >= 0 && lo >= 0);
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return n / 2;
}

/* ---- the peer ---------------------------------------------------------------- */

/* Skips the calling test (fails it under CI) unless /usr/bin/python3 has msgpack. */
static void require_peer(void) {
    mw_test_require(mw_have_python_module("msgpack"), MW_PYTHON " with msgpack (Debian package python3-msgpack)");
}

typedef struct tmpfile {
    char path[64];
    FILE *f;
} tmpfile_t;

static void tmp_open(tmpfile_t *t) {
    snprintf(t->path, sizeof t->path, "/tmp/mw_interop_XXXXXX");
    int fd = mkstemp(t->path);
    assert_true(fd >= 0);
    t->f = fdopen(fd, "w");
    assert_non_null(t->f);
}

/* Runs the peer with args (and the temp file, if any); returns its stdout
 * (free it). Fails the test if the peer fails or its output is cut short. */
static char *run_peer(const char *args, tmpfile_t *t) {
    char cmd[512];
    if (t) assert_int_equal(fclose(t->f), 0);
    snprintf(cmd, sizeof cmd, PEER " %s %s", args, t ? t->path : "");
    char *out = malloc(OUT_CAP);
    assert_non_null(out);
    int rc = mw_run(cmd, out, OUT_CAP);
    if (t) unlink(t->path);
    if (rc != 0) fail_msg("`%s` exited with %d; stdout: %.500s", cmd, rc, out);
    assert_true(strlen(out) < OUT_CAP - 1);
    return out;
}

static void serdes_open(mw_serdes_t *sd, const char *name) {
    int rc = mw_serdes_init(sd, name, 0);
    if (rc != 0) fail_msg("mw_serdes_init(%s): %s", name, mw_errname(rc));
}

/* ---- 1. C encodes, Python decodes ----------------------------------------------- */

static void c_to_python(const char *name) {
    require_peer();
    mw_serdes_t sd;
    serdes_open(&sd, name);
    bool text = strcmp(name, "text") == 0, fixed = strcmp(name, "fixed") == 0;
    sample_t smp[MAX_SAMPLES];
    size_t n = make_samples(smp, !text);
    char want[LINE_CAP];
    tmpfile_t t;
    tmp_open(&t);
    for (size_t i = 0; i < n; i++) {
        uint8_t wire[WIRE_CAP];
        ssize_t len = mw_serdes_encode(&sd, smp[i].s, &smp[i].m, wire, sizeof wire);
        if (len <= 0) {
            fclose(t.f), unlink(t.path);
            fail_msg("%s: encode %s: %s (%s)", name, canon(smp[i].s, &smp[i].m, want, sizeof want),
                     mw_errname((int)len), mw_serdes_last_error(&sd));
        }
        assert_true((size_t)len <= mw__serdes_max_len(&sd, smp[i].s));
        if (fixed) assert_int_equal(len, smp[i].s->fixed_size);
        for (ssize_t k = 0; k < len; k++) fprintf(t.f, "%02x", wire[k]);
        fputc('\n', t.f);
    }
    char args[64];
    snprintf(args, sizeof args, "decode %s", name);
    char *out = run_peer(args, &t);
    size_t lines = 0, bad = 0;
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), lines++) {
        if (lines >= n) continue; /* counted, and failed below */
        canon(smp[lines].s, &smp[lines].m, want, sizeof want);
        if (strcmp(line, want) != 0) {
            print_error("%s sample %zu:\n  python read %s\n  C sent      %s\n", name, lines, line, want);
            bad++;
        }
    }
    free(out);
    mw_serdes_fini(&sd);
    assert_int_equal(lines, n);
    assert_int_equal(bad, 0);
}

/* ---- 2. Python encodes, C decodes ------------------------------------------------- */

/* Compares a decoded message with the original field by field; CHARS over the
 * whole field, so missing NUL padding shows. Returns the mismatch count. */
static int compare_fields(const char *what, const mw_schema_t *s, const void *got, const void *want) {
    int bad = 0;
    for (unsigned i = 0; i < s->nfields; i++) {
        const mw_field_t *f = &s->fields[i];
        if (memcmp((const char *)got + f->offset, (const char *)want + f->offset, f->size) == 0)
            continue;
        char g[128], w[128];
        sbuf_t bg = {g, 0, sizeof g}, bw = {w, 0, sizeof w};
        canon_field(&bg, f, got);
        canon_field(&bw, f, want);
        print_error("%s: field %s: got %s (bytes", what, f->name, g);
        for (unsigned k = 0; k < f->size; k++)
            print_error(" %02x", ((const uint8_t *)got)[f->offset + k]);
        print_error("), want %s\n", w);
        bad++;
    }
    return bad;
}

/* Decodes wire[0..len) placed against a guard page into *m. */
static ssize_t guarded_decode(mw_serdes_t *sd, const uint8_t *wire, size_t len,
                              const mw_schema_t **s, test_msg_t *m) {
    mw_guard_t g;
    const uint8_t *p = mw_guard_copy(&g, wire, len);
    memset(m, 0xa5, sizeof *m); /* decode must write every byte, padding CHARS with NUL */
    *s = NULL;
    ssize_t rc = mw_serdes_decode(sd, p, len, &test_protocol, s, m, sizeof *m);
    mw_guard_free(&g);
    return rc;
}

static void python_to_c(const char *name, size_t min_variants) {
    require_peer();
    mw_serdes_t sd;
    serdes_open(&sd, name);
    sample_t smp[MAX_SAMPLES];
    size_t n = make_samples(smp, strcmp(name, "text") != 0);
    char line[LINE_CAP];
    tmpfile_t t;
    tmp_open(&t);
    for (size_t i = 0; i < n; i++) fprintf(t.f, "%s\n", canon(smp[i].s, &smp[i].m, line, sizeof line));
    char args[64];
    snprintf(args, sizeof args, "encode %s", name);
    char *out = run_peer(args, &t);
    size_t seen[MAX_SAMPLES] = {0}, bad = 0;
    char *save = NULL;
    for (char *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        size_t idx;
        char variant[64], hex[2 * WIRE_CAP + 1];
        assert_int_equal(sscanf(l, "%zu %63s %8192s", &idx, variant, hex), 3);
        assert_true(idx < n);
        seen[idx]++;
        uint8_t wire[WIRE_CAP];
        size_t len = unhex(hex, wire, sizeof wire);
        const mw_schema_t *s;
        test_msg_t m;
        ssize_t rc = guarded_decode(&sd, wire, len, &s, &m);
        char what[128];
        snprintf(what, sizeof what, "%s sample %zu, python variant %s", name, idx, variant);
        if (rc != (ssize_t)len || !s || s->tag != smp[idx].s->tag) {
            print_error("%s: decode returned %zd (%s: %s), schema %s; input %s\n", what, rc,
                        mw_errname((int)rc), mw_serdes_last_error(&sd), s ? s->name : "none", hex);
            bad++;
            continue;
        }
        if (compare_fields(what, s, &m, &smp[idx].m) != 0) bad++;
    }
    free(out);
    mw_serdes_fini(&sd);
    for (size_t i = 0; i < n; i++) assert_true(seen[i] >= min_variants);
    assert_int_equal(bad, 0);
}

/* ---- 3. malformed input from Python --------------------------------------------- */

/* The code decode must return for each case the peer builds ("trunc/" covers
 * every proper prefix of a valid message). alt: a second code accepted where
 * mw_serdes.h leaves the choice open (NaN is both a syntax error and a
 * non-finite number; a fractional value for an int field is both the wrong
 * kind and out of range). */
typedef struct want_code {
    const char *label;
    int code, alt;
} want_code_t;

#define COMMON_VALUE_CASES                                                                   \
    {"unknown_type", MW_ETAG, 0}, {"extra_field", MW_EFIELD, 0},                             \
    {"missing_field", MW_EMISSING, 0}, {"i8_over_max", MW_ERANGE, 0},                        \
    {"i8_under_min", MW_ERANGE, 0}, {"u8_negative", MW_ERANGE, 0},                           \
    {"u16_over_max", MW_ERANGE, 0}, {"i32_over_max", MW_ERANGE, 0},                          \
    {"u64_negative", MW_ERANGE, 0}, {"i64_over_max", MW_ERANGE, 0},                          \
    {"enum_over_max", MW_ERANGE, 0}, {"int_as_string", MW_ETYPE, 0},                         \
    {"int_as_nil", MW_ETYPE, 0}, {"bool_as_int", MW_ETYPE, 0}, {"f64_as_string", MW_ETYPE, 0}, \
    {"chars_as_int", MW_ETYPE, 0}, {"chars_too_long", MW_ETOOBIG, 0},                        \
    {"chars_utf8_too_long", MW_ETOOBIG, 0}, {"bytes_too_long", MW_ETOOBIG, 0},               \
    {"invalid_utf8", MW_EUTF8, 0}, {"trailing_garbage", MW_ETRAILING, 0},                    \
    {"trunc/", MW_ETRUNC, 0}

static const want_code_t TEXT_BAD[] = {
    COMMON_VALUE_CASES,
    {"duplicate_field", MW_EFIELD, 0}, {"u64_over_max", MW_ERANGE, 0},
    {"i64_under_min", MW_ERANGE, 0}, {"int_as_float", MW_ETYPE, MW_ERANGE},
    {"bytes_as_int", MW_ETYPE, 0}, {"f64_nan", MW_EPROTO, MW_ERANGE},
    {"f64_inf", MW_EPROTO, MW_ERANGE}, {"f64_minus_inf", MW_EPROTO, MW_ERANGE},
    {"f64_overflow", MW_ERANGE, 0}, {"leading_zero", MW_EPROTO, 0},
    {"missing_comma", MW_EPROTO, 0}, {"bad_escape", MW_EPROTO, 0},
    {"lone_surrogate", MW_EUTF8, MW_EPROTO}, {"not_json", MW_EPROTO, 0},
    {"trailing_object", MW_ETRAILING, 0}, {NULL, 0, 0}};

static const want_code_t MSGPACK_BAD[] = {
    COMMON_VALUE_CASES,
    {"duplicate_field", MW_EFIELD, 0}, {"int_as_float", MW_ETYPE, 0},
    {"chars_as_bin", MW_ETYPE, 0}, {"bytes_as_str", MW_ETYPE, 0},
    {"not_msgpack", MW_EPROTO, 0}, {NULL, 0, 0}};

static const want_code_t MSGPACK_ARRAY_BAD[] = {
    COMMON_VALUE_CASES,
    {"int_as_float", MW_ETYPE, 0}, {"chars_as_bin", MW_ETYPE, 0},
    {"bytes_as_str", MW_ETYPE, 0}, {"not_msgpack", MW_EPROTO, 0}, {NULL, 0, 0}};

static const want_code_t FIXED_BAD[] = {
    {"unknown_type", MW_ETAG, 0}, {"tag_zero", MW_ETAG, 0},
    {"enum_over_max", MW_ERANGE, 0}, {"bool_not_0_or_1", MW_ERANGE, MW_ETYPE},
    {"invalid_utf8", MW_EUTF8, 0}, {"overlong_utf8", MW_EUTF8, 0},
    {"surrogate_utf8", MW_EUTF8, 0}, {"trailing_garbage", MW_ETRAILING, 0},
    {"trunc/", MW_ETRUNC, 0}, {NULL, 0, 0}};

static const want_code_t *find_want(const want_code_t *tab, const char *label) {
    for (const want_code_t *w = tab; w->label; w++) {
        size_t n = strlen(w->label);
        bool prefix = w->label[n - 1] == '/';
        if (prefix ? strncmp(label, w->label, n) == 0 : strcmp(label, w->label) == 0) return w;
    }
    return NULL;
}

static void python_bad_inputs(const char *name, const want_code_t *tab) {
    require_peer();
    mw_serdes_t sd;
    serdes_open(&sd, name);
    char args[64];
    snprintf(args, sizeof args, "bad %s", name);
    char *out = run_peer(args, NULL);
    bool used[64] = {false};
    for (const want_code_t *w = tab; w->label; w++) assert_true(w - tab < 64);
    size_t cases = 0, bad = 0;
    char *save = NULL;
    for (char *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save), cases++) {
        char label[64], hex[2 * WIRE_CAP + 1];
        assert_int_equal(sscanf(l, "%63s %8192s", label, hex), 2);
        const want_code_t *w = find_want(tab, label);
        if (!w) fail_msg("%s: no expected code for the peer's case %s", name, label);
        used[w - tab] = true;
        uint8_t wire[WIRE_CAP];
        size_t len = unhex(hex, wire, sizeof wire);
        const mw_schema_t *s;
        test_msg_t m;
        ssize_t rc = guarded_decode(&sd, wire, len, &s, &m);
        if (rc == w->code || (w->alt && rc == w->alt)) continue;
        print_error("%s %s: got %zd %s (\"%s\"), want %s%s%s; input %s\n", name, label, rc,
                    rc < 0 ? mw_errname((int)rc) : "", mw_serdes_last_error(&sd), mw_errname(w->code),
                    w->alt ? " or " : "", w->alt ? mw_errname(w->alt) : "", hex);
        bad++;
    }
    free(out);
    mw_serdes_fini(&sd);
    for (const want_code_t *w = tab; w->label; w++)
        if (!used[w - tab]) fail_msg("%s: the peer built no case %s", name, w->label);
    assert_true(cases > 20);
    assert_int_equal(bad, 0);
}

/* ---- text: non-finite doubles are refused on encode ------------------------------- */

static void test_text_encode_refuses_non_finite_f64(void **state) {
    (void)state;
    mw_serdes_t sd;
    serdes_open(&sd, "text");
    const double bad[] = {NAN, -NAN, INFINITY, -INFINITY};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        all_kinds_t m;
        memset(&m, 0, sizeof m);
        m.f64 = bad[i];
        uint8_t out[WIRE_CAP];
        ssize_t rc = all_kinds_encode(&sd, &m, out, sizeof out);
        if (rc != MW_ERANGE) fail_msg("text encode of f64 %g returned %zd, want MW_ERANGE", bad[i], rc);
    }
    /* The same message with a finite value encodes: the refusal is the f64. */
    all_kinds_t ok;
    memset(&ok, 0, sizeof ok);
    ok.f64 = DBL_MAX;
    uint8_t out[WIRE_CAP];
    assert_true(all_kinds_encode(&sd, &ok, out, sizeof out) > 0);
    mw_serdes_fini(&sd);
}

/* ---- the matrix --------------------------------------------------------------- */

#define INTEROP_TESTS(id, name, variants, bad_table)                                      \
    static void test_##id##_c_encoding_decodes_in_python(void **state) {                  \
        (void)state;                                                                      \
        c_to_python(name);                                                                \
    }                                                                                     \
    static void test_##id##_python_encoding_decodes_in_c(void **state) {                  \
        (void)state;                                                                      \
        python_to_c(name, variants);                                                      \
    }                                                                                     \
    static void test_##id##_python_bad_input_gets_specific_code(void **state) {           \
        (void)state;                                                                      \
        python_bad_inputs(name, bad_table);                                               \
    }

INTEROP_TESTS(text, "text", 5, TEXT_BAD)
INTEROP_TESTS(fixed, "fixed", 1, FIXED_BAD)
INTEROP_TESTS(msgpack_map, "msgpack", 3, MSGPACK_BAD)
INTEROP_TESTS(msgpack_array, "msgpack-array", 2, MSGPACK_ARRAY_BAD)

#define INTEROP_ENTRIES(id)                                        \
    cmocka_unit_test(test_##id##_c_encoding_decodes_in_python),    \
    cmocka_unit_test(test_##id##_python_encoding_decodes_in_c),    \
    cmocka_unit_test(test_##id##_python_bad_input_gets_specific_code)

int main(void) {
    const struct CMUnitTest tests[] = {
        INTEROP_ENTRIES(text),
        cmocka_unit_test(test_text_encode_refuses_non_finite_f64),
        INTEROP_ENTRIES(fixed),
        INTEROP_ENTRIES(msgpack_map),
        INTEROP_ENTRIES(msgpack_array),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
