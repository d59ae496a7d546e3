/* text_dec.c - the "text" serdes decoder: strict, schema-driven and
 * allocation-free. It works on the borrowed input in place, never reads
 * outside in[0..len) and needs no terminating NUL. See README.md ("Wire
 * formats") for the format.
 *
 * Two passes of one grammar. text_fast.c reads the canonical form our own
 * encoder writes ("type" first, every field once in declaration order, no
 * whitespace, no escapes) in a single pass and fills the struct; anything
 * else, including every error, goes to the general decoder here, which
 * accepts any member order and whitespace and names each error exactly.
 * The fast pass only ever accepts input the general one accepts with the
 * same result, so it changes speed, never verdicts.
 */
#include "text_impl.h"
#include "err_impl.h"
#include "serdes_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    MAX_DEPTH = 32,   /* nesting accepted by the skipper (top-level object = 1) */
    WINDOW = 256,     /* fields tracked per pass for duplicates / missing ones */
    SHOW_MAX = 48     /* longest piece of input quoted in error text */
};

/* ======================================================================== */
/* Lexer: works on [p, end), never past end; errors set `why`.              */
/* ======================================================================== */

typedef struct cur {
    const uint8_t *p, *end;
    const char *why; /* what went wrong, for the error text */
} cur_t;

/* A string as it appears on the wire: the bytes between the quotes. */
typedef struct strv {
    const uint8_t *raw;
    size_t len;
    bool esc; /* holds at least one escape */
} strv_t;

/* A number token, grammar already checked. */
typedef struct num {
    const uint8_t *s;
    size_t len;
    bool neg, is_int;
} num_t;

static int lexerr(cur_t *c, int code, const char *why) {
    c->why = why;
    return code;
}

static bool is_digit(uint8_t b) { return b >= '0' && b <= '9'; }

static int hexval(uint8_t b) {
    if (is_digit(b)) return b - '0';
    if (b >= 'a' && b <= 'f') return b - 'a' + 10;
    if (b >= 'A' && b <= 'F') return b - 'A' + 10;
    return -1;
}

static void skip_ws(cur_t *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t'))
        c->p++;
}

/* Skips whitespace and consumes ch. */
static int expect(cur_t *c, uint8_t ch, const char *why) {
    skip_ws(c);
    if (c->p == c->end) return lexerr(c, MW_ETRUNC, "message ends early");
    if (*c->p != ch) return lexerr(c, MW_EPROTO, why);
    c->p++;
    return 0;
}

static bool hex4(const uint8_t *s, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(s[i]);
        if (h < 0) return false;
        v = v << 4 | (uint32_t)h;
    }
    *out = v;
    return true;
}

static int utf8_put(uint32_t cp, uint8_t out[4]) {
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | cp >> 6);
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | cp >> 12);
        out[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | cp >> 18);
    out[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* After a high surrogate: c->p should be at "\uDC00".."\uDFFF". */
static int str_low_surrogate(cur_t *c, uint32_t hi, uint32_t *cp) {
    size_t avail = (size_t)(c->end - c->p);
    uint32_t lo = 0;
    if ((avail > 0 && c->p[0] != '\\') || (avail > 1 && c->p[1] != 'u'))
        return lexerr(c, MW_EUTF8, "unpaired high surrogate");
    if (avail < 6) return lexerr(c, MW_ETRUNC, "message ends inside a \\u escape");
    if (!hex4(c->p + 2, &lo)) return lexerr(c, MW_EPROTO, "bad \\u escape");
    if (lo < 0xDC00 || lo > 0xDFFF) return lexerr(c, MW_EUTF8, "unpaired high surrogate");
    c->p += 6;
    *cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
    return 0;
}

/* c->p just after "\u". */
static int str_uescape(cur_t *c, uint8_t out[4]) {
    uint32_t cp = 0;
    if (c->end - c->p < 4) return lexerr(c, MW_ETRUNC, "message ends inside a \\u escape");
    if (!hex4(c->p, &cp)) return lexerr(c, MW_EPROTO, "bad \\u escape");
    c->p += 4;
    if (cp >= 0xDC00 && cp <= 0xDFFF) return lexerr(c, MW_EUTF8, "unpaired low surrogate");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        int rc = str_low_surrogate(c, cp, &cp);
        if (rc < 0) return rc;
    }
    return utf8_put(cp, out);
}

/* c->p just after a backslash. */
static int str_escape(cur_t *c, uint8_t out[4]) {
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    if (c->p == c->end) return lexerr(c, MW_ETRUNC, "message ends inside an escape");
    uint8_t e = *c->p++;
    if (e == 'u') return str_uescape(c, out);
    const char *k = e ? strchr(from, e) : NULL;
    if (!k) {
        c->p--;
        return lexerr(c, MW_EPROTO, "invalid escape");
    }
    out[0] = (uint8_t)to[k - from];
    return 1;
}

/* A raw multi-byte UTF-8 sequence at c->p. */
static int str_utf8(cur_t *c, uint8_t out[4]) {
    uint8_t b = *c->p;
    size_t n = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
    size_t avail = (size_t)(c->end - c->p);
    if (b < 0xC2 || b > 0xF4) return lexerr(c, MW_EUTF8, "invalid UTF-8");
    if (avail < n) {
        for (size_t k = 1; k < avail; k++)
            if ((c->p[k] & 0xC0) != 0x80) return lexerr(c, MW_EUTF8, "invalid UTF-8");
        return lexerr(c, MW_ETRUNC, "message ends inside a UTF-8 sequence");
    }
    if (!mw__utf8_valid(c->p, n)) return lexerr(c, MW_EUTF8, "invalid UTF-8");
    memcpy(out, c->p, n);
    c->p += n;
    return (int)n;
}

/* Decodes one character of a string body into out[0..4) and returns its
 * length in bytes, or 0 at the closing quote (consumed), or an error. */
static int str_unit(cur_t *c, uint8_t out[4]) {
    if (c->p == c->end) return lexerr(c, MW_ETRUNC, "message ends inside a string");
    uint8_t b = *c->p;
    if (b == '"') {
        c->p++;
        return 0;
    }
    if (b == '\\') {
        c->p++;
        return str_escape(c, out);
    }
    if (b >= 0x80) return str_utf8(c, out);
    if (b < 0x20) return lexerr(c, MW_EPROTO, "raw control character in a string");
    out[0] = b;
    c->p++;
    return 1;
}

/* c->p at the opening quote. Validates the whole string (escapes, UTF-8)
 * and leaves c->p after the closing quote. */
static int lex_string(cur_t *c, strv_t *s) {
    uint8_t u[4];
    s->raw = ++c->p;
    s->esc = false;
    for (;;) {
        c->p = mw__plain_run(c->p, c->end);
        const uint8_t *at = c->p;
        int n = str_unit(c, u);
        if (n < 0) return n;
        if (n == 0) {
            s->len = (size_t)(at - s->raw);
            return 0;
        }
        s->esc |= *at == '\\';
    }
}

/* A cursor over an already validated string, closing quote included. */
static cur_t str_iter(const strv_t *s) {
    cur_t it = {s->raw, s->raw + s->len + 1, NULL};
    return it;
}

/* Decodes a validated string into dst[0..cap). Returns the decoded length,
 * which may exceed cap (then dst holds only what fitted). */
static size_t str_decode(const strv_t *s, uint8_t *dst, size_t cap) {
    cur_t it = str_iter(s);
    uint8_t u[4];
    size_t k = 0;
    int n;
    while ((n = str_unit(&it, u)) > 0) {
        if (k + (size_t)n <= cap) memcpy(dst + k, u, (size_t)n);
        k += (size_t)n;
    }
    return k;
}

/* True if the decoded string equals name[0..n). */
static bool str_equal(const strv_t *s, const char *name, size_t n) {
    if (!s->esc) return s->len == n && memcmp(s->raw, name, n) == 0;
    cur_t it = str_iter(s);
    uint8_t u[4];
    size_t k = 0;
    int m;
    while ((m = str_unit(&it, u)) > 0) {
        if ((size_t)m > n - k || memcmp(name + k, u, (size_t)m) != 0) return false;
        k += (size_t)m;
    }
    return m == 0 && k == n;
}

/* One or more digits. */
static int lex_digits(cur_t *c) {
    if (c->p == c->end) return lexerr(c, MW_ETRUNC, "message ends inside a number");
    if (!is_digit(*c->p)) return lexerr(c, MW_EPROTO, "invalid number");
    while (c->p < c->end && is_digit(*c->p)) c->p++;
    return 0;
}

/* c->p at '-' or a digit. JSON number grammar, nothing more. */
static int lex_number(cur_t *c, num_t *n) {
    n->s = c->p;
    n->neg = *c->p == '-';
    n->is_int = true;
    c->p += n->neg;
    int rc = lex_digits(c);
    if (rc < 0) return rc;
    if (n->s[n->neg] == '0' && c->p - n->s > 1 + n->neg)
        return lexerr(c, MW_EPROTO, "leading zero in a number");
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        n->is_int = false;
        if ((rc = lex_digits(c)) < 0) return rc;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        n->is_int = false;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-')) c->p++;
        if ((rc = lex_digits(c)) < 0) return rc;
    }
    n->len = (size_t)(c->p - n->s);
    return 0;
}

/* c->p at 't', 'f' or 'n'. Returns 1 (true), 0 (false), 2 (null) or an error. */
static int lex_literal(cur_t *c) {
    static const char *const words[] = {"false", "true", "null"};
    int i = *c->p == 'f' ? 0 : *c->p == 't' ? 1 : 2;
    size_t n = strlen(words[i]), avail = (size_t)(c->end - c->p);
    size_t k = avail < n ? avail : n;
    if (memcmp(c->p, words[i], k) != 0) return lexerr(c, MW_EPROTO, "not a JSON value");
    if (k < n) return lexerr(c, MW_ETRUNC, "message ends inside a literal");
    c->p += n;
    return i;
}

/* `"name" :` with whitespace around; c->p anywhere before the name. */
static int lex_name(cur_t *c, strv_t *name) {
    skip_ws(c);
    if (c->p == c->end) return lexerr(c, MW_ETRUNC, "message ends before a member name");
    if (*c->p != '"') return lexerr(c, MW_EPROTO, "expected a member name");
    int rc = lex_string(c, name);
    return rc < 0 ? rc : expect(c, ':', "expected ':' after a member name");
}

/* ---- skipping any JSON value, nesting bounded by MAX_DEPTH ------------- */

static int skip_value(cur_t *c, int depth);

static int skip_member(cur_t *c, int depth) {
    strv_t name;
    int rc = lex_name(c, &name);
    return rc < 0 ? rc : skip_value(c, depth);
}

/* c->p at '{' or '['; depth counts this container. */
static int skip_container(cur_t *c, int depth) {
    uint8_t close = *c->p == '{' ? '}' : ']';
    if (depth > MAX_DEPTH) return lexerr(c, MW_EPROTO, "nesting deeper than 32 levels");
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == close) {
        c->p++;
        return 0;
    }
    for (;;) {
        int rc = close == '}' ? skip_member(c, depth) : skip_value(c, depth);
        if (rc < 0) return rc;
        skip_ws(c);
        if (c->p == c->end) return lexerr(c, MW_ETRUNC, "message ends inside a nested value");
        if (*c->p == close) break;
        if (*c->p != ',') return lexerr(c, MW_EPROTO, "expected ',' or a closing bracket");
        c->p++;
    }
    c->p++;
    return 0;
}

/* depth: nesting of the container holding this value. */
static int skip_value(cur_t *c, int depth) {
    skip_ws(c);
    if (c->p == c->end) return lexerr(c, MW_ETRUNC, "message ends before a value");
    uint8_t b = *c->p;
    if (b == '"') {
        strv_t s;
        return lex_string(c, &s);
    }
    if (b == '{' || b == '[') return skip_container(c, depth + 1);
    if (b == 't' || b == 'f' || b == 'n') {
        int rc = lex_literal(c);
        return rc < 0 ? rc : 0;
    }
    if (b == '-' || is_digit(b)) {
        num_t n;
        return lex_number(c, &n);
    }
    return lexerr(c, MW_EPROTO, "not a JSON value");
}

/* ======================================================================== */
/* Decoder                                                                  */
/* ======================================================================== */

typedef struct dec {
    cur_t c;
    mw_serdes_t *sd;
    const uint8_t *begin;     /* in: offsets in error text are from here */
    const uint8_t *body;      /* just after '{' */
    const uint8_t *type_at;   /* the "type" member's name */
    bool type_first;          /* ... and it is the first member */
    const mw_protocol_t *proto;
    const mw_schema_t *s;
    const mw_field_t *f;      /* field being read, named in error text */
    uint8_t *msg;
    unsigned hint;            /* field index tried first by the next lookup */
    unsigned window;          /* fields [window*WINDOW, +WINDOW) tracked in seen */
    uint64_t seen[WINDOW / 64];
} dec_t;

/* Formats "text: field "f": <fmt>" (or "text: <fmt>" outside a field). */
__attribute__((format(printf, 3, 4)))
static int fail(dec_t *d, int code, const char *fmt, ...) {
    char msg[MW_ERR_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (d->f) return mw__err_set(&d->sd->err, code, "text: field \"%s\": %s", d->f->name, msg);
    return mw__err_set(&d->sd->err, code, "text: %s", msg);
}

/* Reports an error returned by the lexer. */
static int lex_fail(dec_t *d, int code) {
    return fail(d, code, "%s at offset %zu", d->c.why ? d->c.why : "syntax error",
                (size_t)(d->c.p - d->begin));
}

static int show_len(size_t n) { return (int)(n < SHOW_MAX ? n : SHOW_MAX); }

static const char *json_kind(uint8_t b) {
    switch (b) {
    case '"': return "a string";
    case '{': return "an object";
    case '[': return "an array";
    case 'n': return "null";
    case 't':
    case 'f': return "a boolean";
    default: return "a number";
    }
}

static bool value_start(uint8_t b) {
    return b == '"' || b == '{' || b == '[' || b == 't' || b == 'f' || b == 'n' || b == '-' ||
           is_digit(b);
}

static int type_err(dec_t *d, uint8_t first) {
    return fail(d, MW_ETYPE, "expected %s, got %s", mw_fkind_name(d->f->kind), json_kind(first));
}

static bool int_in_range(const mw_field_t *f, bool neg, uint64_t mag) {
    if (!neg || mag == 0) return mag <= mw__fkind_max(f);
    if (!mw__fkind_is_signed(f->kind)) return false;
    return mag <= 0 - (uint64_t)mw__fkind_min(f->kind);
}

/* Integer kinds and ENUM: exact, overflow-checked. */
static int put_int(dec_t *d, const mw_field_t *f, const num_t *n) {
    uint64_t mag = 0;
    bool ok = true;
    if (!n->is_int) return fail(d, MW_ETYPE, "%.*s is not an integer", show_len(n->len), n->s);
    for (size_t i = n->neg; i < n->len && ok; i++) {
        unsigned dgt = (unsigned)(n->s[i] - '0');
        ok = mag <= (UINT64_MAX - dgt) / 10;
        mag = mag * 10 + dgt;
    }
    if (!ok || !int_in_range(f, n->neg, mag))
        return fail(d, MW_ERANGE, "%.*s is out of range for %s", show_len(n->len), n->s,
                    mw_fkind_name(f->kind));
    if (n->neg && mag)
        mw__field_set_i64(f, d->msg, -(int64_t)(mag - 1) - 1);
    else
        mw__field_set_u64(f, d->msg, mag);
    return 0;
}

/* Numbers longer than MW__NUM_MAX are refused before conversion. */
static int put_f64(dec_t *d, const mw_field_t *f, const num_t *n) {
    if (n->len > MW__NUM_MAX)
        return fail(d, MW_ERANGE, "a number of %zu characters is longer than %d", n->len,
                    MW__NUM_MAX);
    double v = mw__parse_f64(n->s, n->len);
    if (!isfinite(v))
        return fail(d, MW_ERANGE, "%.*s is out of range for f64", show_len(n->len), n->s);
    memcpy(d->msg + f->offset, &v, sizeof v);
    return 0;
}

static int dec_number(dec_t *d, const mw_field_t *f) {
    num_t n;
    int rc = lex_number(&d->c, &n);
    if (rc < 0) return lex_fail(d, rc);
    if (f->kind == MW_FK_F64) return put_f64(d, f, &n);
    if (mw__fkind_is_signed(f->kind) || (mw__fkind_is_unsigned(f->kind) && f->kind != MW_FK_BOOL))
        return put_int(d, f, &n);
    return type_err(d, '0');
}

static int dec_literal(dec_t *d, const mw_field_t *f) {
    uint8_t first = *d->c.p;
    int v = lex_literal(&d->c);
    if (v < 0) return lex_fail(d, v);
    if (f->kind != MW_FK_BOOL || v > 1) return type_err(d, first);
    d->msg[f->offset] = (uint8_t)v;
    return 0;
}

static int put_chars(dec_t *d, const mw_field_t *f, const strv_t *s) {
    uint8_t *dst = d->msg + f->offset;
    size_t n = s->len;
    if (!s->esc && n <= f->size) {
        memcpy(dst, s->raw, n);
        return 0;
    }
    if (s->esc) n = str_decode(s, dst, f->size);
    if (n > f->size)
        return fail(d, MW_ETOOBIG, "%zu bytes do not fit in chars[%u]", n, (unsigned)f->size);
    if (memchr(dst, 0, n)) return fail(d, MW_ETYPE, "\\u0000 cannot be stored in a chars field");
    return 0;
}

/* Hex digits, either case; escapes are decoded first (JSON semantics). */
static int put_bytes(dec_t *d, const mw_field_t *f, const strv_t *s) {
    uint8_t *dst = d->msg + f->offset;
    size_t want = 2 * (size_t)f->size, k = 0;
    cur_t it = str_iter(s);
    uint8_t u[4];
    int n;
    while ((n = str_unit(&it, u)) > 0) {
        int h = n == 1 ? hexval(u[0]) : -1;
        if (h < 0) return fail(d, MW_ETYPE, "not a hex string");
        if (k == want) return fail(d, MW_ETOOBIG, "more than %zu hex digits", want);
        dst[k / 2] |= (uint8_t)(k % 2 ? h : h << 4);
        k++;
    }
    if (k != want) return fail(d, MW_ETYPE, "%zu hex digits, expected %zu", k, want);
    return 0;
}

static int dec_string(dec_t *d, const mw_field_t *f) {
    strv_t s;
    if (f->kind != MW_FK_CHARS && f->kind != MW_FK_BYTES) return type_err(d, '"');
    int rc = lex_string(&d->c, &s);
    if (rc < 0) return lex_fail(d, rc);
    return f->kind == MW_FK_CHARS ? put_chars(d, f, &s) : put_bytes(d, f, &s);
}

/* The value of field f; c->p before it (whitespace allowed). */
static int dec_value(dec_t *d, const mw_field_t *f) {
    cur_t *c = &d->c;
    skip_ws(c);
    if (c->p == c->end) return lex_fail(d, lexerr(c, MW_ETRUNC, "message ends before a value"));
    uint8_t b = *c->p;
    if (b == '"') return dec_string(d, f);
    if (b == '-' || is_digit(b)) return dec_number(d, f);
    if (b == 't' || b == 'f' || b == 'n') return dec_literal(d, f);
    if (b == '{' || b == '[') return type_err(d, b);
    return lex_fail(d, lexerr(c, MW_EPROTO, "not a JSON value"));
}

/* After a value: ',' (returns 0) or '}' (returns 1). */
static int after_value(dec_t *d) {
    cur_t *c = &d->c;
    skip_ws(c);
    if (c->p == c->end) return lex_fail(d, lexerr(c, MW_ETRUNC, "message ends early"));
    if (*c->p == ',' || *c->p == '}') return *c->p++ == '}';
    return lex_fail(d, lexerr(c, MW_EPROTO, "expected ',' or '}' after a value"));
}

static const mw_schema_t *lookup_schema(const mw_protocol_t *p, const strv_t *v) {
    if (!v->esc) return mw_protocol_by_name(p, (const char *)v->raw, v->len);
    for (; p; p = p->ext)
        for (unsigned i = 0; i < p->count; i++) {
            const mw_schema_t *s = p->at(i);
            if (s && str_equal(v, s->name, s->name_len)) return s;
        }
    return NULL;
}

/* The value of "type"; c->p before it. */
static int read_type_value(dec_t *d) {
    cur_t *c = &d->c;
    strv_t v;
    skip_ws(c);
    if (c->p == c->end) return lex_fail(d, lexerr(c, MW_ETRUNC, "message ends before a value"));
    if (!value_start(*c->p)) return lex_fail(d, lexerr(c, MW_EPROTO, "not a JSON value"));
    if (*c->p != '"')
        return fail(d, MW_ETYPE, "\"type\" must be a string, got %s", json_kind(*c->p));
    int rc = lex_string(c, &v);
    if (rc < 0) return lex_fail(d, rc);
    d->s = lookup_schema(d->proto, &v);
    if (!d->s)
        return fail(d, MW_ETAG, "unknown type \"%.*s\"", show_len(v.len), (const char *)v.raw);
    return 0;
}

/* Parses '{' and finds "type": usually the first member, else scans the
 * object for it. Leaves c->p after the type's value. */
static int find_type(dec_t *d) {
    cur_t *c = &d->c;
    int rc = expect(c, '{', "expected '{'");
    if (rc < 0) return lex_fail(d, rc);
    d->body = c->p;
    skip_ws(c);
    if (c->p < c->end && *c->p == '}') return fail(d, MW_EMISSING, "no \"type\" member");
    for (d->type_first = true;; d->type_first = false) {
        strv_t name;
        skip_ws(c);
        const uint8_t *at = c->p;
        if ((rc = lex_name(c, &name)) < 0) return lex_fail(d, rc);
        if (str_equal(&name, "type", 4)) {
            d->type_at = at;
            return read_type_value(d);
        }
        if ((rc = skip_value(c, 1)) < 0) return lex_fail(d, rc);
        if ((rc = after_value(d)) < 0) return rc;
        if (rc == 1) return fail(d, MW_EMISSING, "no \"type\" member");
    }
}

static int find_field(dec_t *d, const strv_t *name) {
    const mw_field_t *fs = d->s->fields;
    unsigned h = d->hint;
    if (h < d->s->nfields && str_equal(name, fs[h].name, fs[h].name_len)) return (int)h;
    for (unsigned i = 0; i < d->s->nfields; i++)
        if (str_equal(name, fs[i].name, fs[i].name_len)) return (int)i;
    return -1;
}

/* Marks field i as seen if it is in the current window; true if it already was. */
static bool mark_seen(dec_t *d, unsigned i) {
    if (i / WINDOW != d->window) return false;
    unsigned b = i % WINDOW;
    uint64_t bit = (uint64_t)1 << (b % 64);
    bool dup = (d->seen[b / 64] & bit) != 0;
    d->seen[b / 64] |= bit;
    return dup;
}

/* One member; decode false only re-reads names (later windows). */
static int member(dec_t *d, bool decode) {
    cur_t *c = &d->c;
    strv_t name;
    d->f = NULL;
    skip_ws(c);
    const uint8_t *at = c->p;
    int rc = lex_name(c, &name);
    if (rc < 0) return lex_fail(d, rc);
    if (str_equal(&name, "type", 4)) {
        if (at != d->type_at) return fail(d, MW_EFIELD, "member \"type\" appears twice");
        rc = skip_value(c, 1);
        return rc < 0 ? lex_fail(d, rc) : 0;
    }
    int i = find_field(d, &name);
    if (i < 0)
        return fail(d, MW_EFIELD, "unknown field \"%.*s\" for \"%s\"", show_len(name.len),
                    (const char *)name.raw, d->s->name);
    d->f = &d->s->fields[i];
    d->hint = (unsigned)i + 1;
    if (mark_seen(d, (unsigned)i)) return fail(d, MW_EFIELD, "appears twice");
    if (decode) return dec_value(d, d->f);
    rc = skip_value(c, 1);
    return rc < 0 ? lex_fail(d, rc) : 0;
}

/* Members up to and including the closing '}'. first: c->p is just after
 * '{' (else just after a value). */
static int members(dec_t *d, bool first, bool decode) {
    for (;; first = false) {
        if (!first) {
            int rc = after_value(d);
            if (rc != 0) return rc < 0 ? rc : 0;
        }
        int rc = member(d, decode);
        if (rc < 0) return rc;
    }
}

static int check_missing(dec_t *d) {
    unsigned lo = d->window * WINDOW, n = d->s->nfields - lo;
    if (n > WINDOW) n = WINDOW;
    for (unsigned b = 0; b < n; b++) {
        if (d->seen[b / 64] >> (b % 64) & 1) continue;
        d->f = &d->s->fields[lo + b];
        return fail(d, MW_EMISSING, "missing from \"%s\"", d->s->name);
    }
    return 0;
}

/* Duplicates and missing fields beyond the first WINDOW: one more pass over
 * the (already validated) member names per WINDOW fields. No allocation. */
static int check_windows(dec_t *d) {
    for (unsigned w = 1; w * WINDOW < d->s->nfields; w++) {
        d->window = w;
        d->hint = 0;
        memset(d->seen, 0, sizeof d->seen);
        d->c.p = d->body;
        int rc = members(d, true, false);
        if (rc < 0 || (rc = check_missing(d)) < 0) return rc;
    }
    return 0;
}

static int check_end(dec_t *d) {
    d->f = NULL;
    skip_ws(&d->c);
    if (d->c.p == d->c.end) return 0;
    return fail(d, MW_ETRAILING, "%zu bytes after the closing '}' at offset %zu",
                (size_t)(d->c.end - d->c.p), (size_t)(d->c.p - d->begin));
}

static ssize_t text_decode(mw_serdes_t *sd, const uint8_t *in, size_t len, const mw_protocol_t *p,
                           const mw_schema_t **schema_out, void *msg_out, size_t msg_cap) {
    if (mw__text_decode_fast(sd, in, len, p, schema_out, msg_out, msg_cap)) return (ssize_t)len;
    dec_t d = {.c = {in, len ? in + len : in, NULL}, .sd = sd, .begin = in, .proto = p};
    int rc = find_type(&d);
    if (rc < 0) return rc;
    if (d.s->size > msg_cap)
        return fail(&d, MW_ETOOBIG, "\"%s\" needs %u bytes, the buffer has %zu", d.s->name,
                    (unsigned)d.s->size, msg_cap);
    memset(msg_out, 0, d.s->size);
    d.msg = msg_out;
    /* "type" came first: go on from its value. Otherwise read
     * the members from the start; member() skips the "type" seen at type_at. */
    if (!d.type_first) d.c.p = d.body;
    if ((rc = members(&d, !d.type_first, true)) < 0) return rc;
    if ((rc = check_end(&d)) < 0 || (rc = check_missing(&d)) < 0) return rc;
    if ((rc = check_windows(&d)) < 0) return rc;
    *schema_out = d.s;
    return (ssize_t)len;
}

const mw_serdes_ops_t mw__serdes_text_ops = {"text", MW_FRAME_LINE, true, NULL, NULL,
                                            mw__text_encode, text_decode};
