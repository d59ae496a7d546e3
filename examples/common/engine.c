/* engine.c - the matching engine; see engine.h.
 *
 * Layout: one pool of order records addressed by 32-bit index. A record is
 * either free, live (in a price level's FIFO, linked by prev/next) or
 * finished (in the "done" FIFO, linked by next, remembered for duplicate
 * detection). A chained hash index maps (session, cl_ord_id) to the record.
 * Each side of each symbol is an array of price levels sorted so the best
 * price is last (bids ascending, asks descending): the common operations -
 * match against the best level, drop it once empty - touch the end of the
 * array; a new level is placed by binary search and memmove.
 */
#include "engine.h"

#include <stdlib.h>
#include <string.h>

#define NIL UINT32_MAX

typedef struct order {
    uint64_t cl_ord_id, order_id;
    int64_t price;
    uint32_t qty, leaves;
    uint32_t session;
    uint32_t prev, next; /* level FIFO (live) or done FIFO (next only) */
    uint32_t hnext;      /* hash chain */
    uint16_t sym;
    uint8_t side;
    uint8_t live;
} order_t;

typedef struct level {
    int64_t price;
    uint32_t head, tail;
} level_t;

typedef struct book_side {
    level_t *lv;
    uint32_t n;
} book_side_t;

typedef struct session {
    char name[ENGINE_SESSION_CAP];
    uint64_t stale_max; /* highest cl_ord_id of this session recycled; 0: none */
} session_t;

struct engine {
    engine_opts_t o;
    engine_out_t out;
    char syms[ENGINE_MAX_SYMBOLS][GW_SYMBOL_CAP + 1];
    int nsyms;
    book_side_t sides[ENGINE_MAX_SYMBOLS][2]; /* [sym][GW_BUY / GW_SELL] */
    order_t *pool;
    uint32_t free_head;
    uint32_t done_head, done_tail;
    uint32_t *buckets;
    uint32_t bucket_mask;
    session_t *sessions;
    uint32_t nsessions;
    uint64_t next_order_id, next_match_id, seq;
    engine_stats_t st;
};

/* ---- set-up ----------------------------------------------------------------- */

void engine_opts_init(engine_opts_t *o) {
    memset(o, 0, sizeof *o);
    o->symbols = ENGINE_DEFAULT_SYMBOLS;
    o->max_orders = 1u << 18;
    o->max_levels = 4096;
    o->max_sessions = 1024;
}

static bool sym_char(char ch) {
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' ||
           ch == '_' || ch == '-';
}

static int parse_symbols(engine_t *e, const char *csv, char *err, size_t cap) {
    const char *p = csv ? csv : "";
    for (;;) {
        size_t len = strcspn(p, ",");
        if (len == 0 || len > GW_SYMBOL_CAP || e->nsyms == ENGINE_MAX_SYMBOLS) goto bad;
        for (size_t i = 0; i < len; i++)
            if (!sym_char(p[i])) goto bad;
        memcpy(e->syms[e->nsyms], p, len);
        e->syms[e->nsyms][len] = '\0';
        for (int k = 0; k < e->nsyms; k++)
            if (strcmp(e->syms[k], e->syms[e->nsyms]) == 0) goto bad;
        e->nsyms++;
        if (p[len] == '\0') return 0;
        p += len + 1;
    }
bad:
    snprintf(err, cap, "bad symbols '%s': 1 to %d distinct names of 1 to %d characters [A-Za-z0-9._-]",
             csv ? csv : "", ENGINE_MAX_SYMBOLS, GW_SYMBOL_CAP);
    return -1;
}

int engine_new(engine_t **out, const engine_opts_t *o, char *err, size_t cap) {
    *out = NULL;
    if (o->max_orders < 2 || o->max_orders > (1u << 28) || o->max_levels < 1 || o->max_levels > (1u << 20) ||
        o->max_sessions < 1 || o->max_sessions > (1u << 20)) {
        snprintf(err, cap, "engine limits out of range");
        return -1;
    }
    engine_t *e = calloc(1, sizeof *e);
    if (!e) goto nomem;
    e->o = *o;
    e->out = o->out;
    if (parse_symbols(e, o->symbols, err, cap) < 0) {
        free(e);
        return -1;
    }
    uint32_t nb = 1;
    while (nb < o->max_orders * 2u) nb <<= 1;
    e->bucket_mask = nb - 1;
    e->pool = calloc(o->max_orders, sizeof *e->pool);
    e->buckets = malloc(nb * sizeof *e->buckets);
    e->sessions = calloc(o->max_sessions, sizeof *e->sessions);
    if (!e->pool || !e->buckets || !e->sessions) goto fail;
    for (int s = 0; s < e->nsyms; s++)
        for (int k = 0; k < 2; k++)
            if (!(e->sides[s][k].lv = calloc(o->max_levels, sizeof(level_t)))) goto fail;
    memset(e->buckets, 0xff, nb * sizeof *e->buckets);
    for (uint32_t i = 0; i < o->max_orders; i++) e->pool[i].next = i + 1 < o->max_orders ? i + 1 : NIL;
    e->free_head = 0;
    e->done_head = e->done_tail = NIL;
    e->next_order_id = e->next_match_id = 1;
    *out = e;
    return 0;
fail:
    engine_free(e);
nomem:
    snprintf(err, cap, "engine: out of memory");
    return -1;
}

void engine_free(engine_t *e) {
    if (!e) return;
    for (int s = 0; s < e->nsyms; s++)
        for (int k = 0; k < 2; k++) free(e->sides[s][k].lv);
    free(e->pool);
    free(e->buckets);
    free(e->sessions);
    free(e);
}

int engine_session(engine_t *e, const char *name) {
    size_t len = strlen(name);
    if (len == 0 || len >= ENGINE_SESSION_CAP) return -1;
    for (uint32_t i = 0; i < e->nsessions; i++)
        if (strcmp(e->sessions[i].name, name) == 0) return (int)i;
    if (e->nsessions == e->o.max_sessions) return -1;
    memcpy(e->sessions[e->nsessions].name, name, len + 1);
    return (int)e->nsessions++;
}

const char *engine_session_name(const engine_t *e, uint32_t s) {
    return s < e->nsessions ? e->sessions[s].name : "";
}

int engine_nsymbols(const engine_t *e) { return e->nsyms; }

const char *engine_symbol(const engine_t *e, int i) { return i >= 0 && i < e->nsyms ? e->syms[i] : ""; }

int engine_symbol_index(const engine_t *e, const char field[GW_SYMBOL_CAP]) {
    for (int i = 0; i < e->nsyms; i++)
        if (strncmp(field, e->syms[i], GW_SYMBOL_CAP) == 0) return i;
    return -1;
}

void engine_stats(const engine_t *e, engine_stats_t *st) {
    *st = e->st;
    st->engine_seq = e->seq;
}

/* ---- the index: (session, cl_ord_id) -> record ------------------------------- */

static uint32_t bucket_of(const engine_t *e, uint32_t s, uint64_t id) {
    uint64_t h = (id ^ ((uint64_t)s << 40)) * 0x9e3779b97f4a7c15ull;
    return (uint32_t)(h >> 32) & e->bucket_mask;
}

static uint32_t find(const engine_t *e, uint32_t s, uint64_t id) {
    for (uint32_t i = e->buckets[bucket_of(e, s, id)]; i != NIL; i = e->pool[i].hnext)
        if (e->pool[i].cl_ord_id == id && e->pool[i].session == s) return i;
    return NIL;
}

static void index_add(engine_t *e, uint32_t i) {
    uint32_t *b = &e->buckets[bucket_of(e, e->pool[i].session, e->pool[i].cl_ord_id)];
    e->pool[i].hnext = *b;
    *b = i;
}

static void index_del(engine_t *e, uint32_t i) {
    uint32_t *p = &e->buckets[bucket_of(e, e->pool[i].session, e->pool[i].cl_ord_id)];
    while (*p != i) p = &e->pool[*p].hnext;
    *p = e->pool[i].hnext;
}

/* A free record: from the free list, or the oldest finished order forgotten. */
static uint32_t record_take(engine_t *e) {
    uint32_t i = e->free_head;
    if (i != NIL) {
        e->free_head = e->pool[i].next;
        return i;
    }
    i = e->done_head;
    if (i == NIL) return NIL;
    e->done_head = e->pool[i].next;
    if (e->done_head == NIL) e->done_tail = NIL;
    index_del(e, i);
    session_t *ss = &e->sessions[e->pool[i].session];
    if (e->pool[i].cl_ord_id > ss->stale_max) ss->stale_max = e->pool[i].cl_ord_id;
    e->st.recycled++;
    return i;
}

static void record_done(engine_t *e, uint32_t i) {
    e->pool[i].live = 0;
    e->pool[i].next = NIL;
    if (e->done_tail == NIL) e->done_head = i;
    else e->pool[e->done_tail].next = i;
    e->done_tail = i;
}

/* ---- price levels -------------------------------------------------------------- */

/* Bids ascending, asks descending: "better" sorts later. */
static bool better(int side, int64_t a, int64_t b) { return side == GW_BUY ? a > b : a < b; }

/* Index of the level at price, or where it would go (*found false). */
static uint32_t level_find(const book_side_t *bs, int side, int64_t price, bool *found) {
    uint32_t lo = 0, hi = bs->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (bs->lv[mid].price == price) {
            *found = true;
            return mid;
        }
        if (better(side, price, bs->lv[mid].price)) lo = mid + 1;
        else hi = mid;
    }
    *found = false;
    return lo;
}

static void level_append(engine_t *e, book_side_t *bs, int side, uint32_t i) {
    bool found;
    uint32_t k = level_find(bs, side, e->pool[i].price, &found);
    if (!found) {
        memmove(&bs->lv[k + 1], &bs->lv[k], (bs->n - k) * sizeof(level_t));
        bs->lv[k] = (level_t){e->pool[i].price, NIL, NIL};
        bs->n++;
    }
    level_t *l = &bs->lv[k];
    e->pool[i].prev = l->tail;
    e->pool[i].next = NIL;
    if (l->tail == NIL) l->head = i;
    else e->pool[l->tail].next = i;
    l->tail = i;
}

/* Unlinks record i from its level (dropping the level once empty). */
static void level_unlink(engine_t *e, uint32_t i) {
    order_t *o = &e->pool[i];
    book_side_t *bs = &e->sides[o->sym][o->side];
    bool found;
    uint32_t k = level_find(bs, o->side, o->price, &found);
    level_t *l = &bs->lv[k];
    if (o->prev == NIL) l->head = o->next;
    else e->pool[o->prev].next = o->next;
    if (o->next == NIL) l->tail = o->prev;
    else e->pool[o->next].prev = o->prev;
    if (l->head == NIL) {
        memmove(&bs->lv[k], &bs->lv[k + 1], (bs->n - k - 1) * sizeof(level_t));
        bs->n--;
    }
}

/* ---- output ---------------------------------------------------------------------- */

static void ack(engine_t *e, uint32_t s, uint64_t cl, uint64_t order_id, int status, uint32_t leaves,
                const char *reason) {
    order_ack_t a;
    memset(&a, 0, sizeof a);
    a.cl_ord_id = cl;
    a.order_id = order_id;
    a.status = (uint8_t)status;
    a.leaves = leaves;
    a.engine_seq = ++e->seq;
    size_t n = strlen(reason);
    memcpy(a.reason, reason, n < sizeof a.reason ? n : sizeof a.reason);
    if (e->out.on_ack) e->out.on_ack(e->out.ud, s, &a);
}

static void fill(engine_t *e, const order_t *o, uint64_t match_id, int64_t price, uint32_t qty) {
    fill_t f;
    memset(&f, 0, sizeof f);
    f.cl_ord_id = o->cl_ord_id;
    f.order_id = o->order_id;
    f.match_id = match_id;
    f.price = price;
    f.qty = qty;
    f.leaves = o->leaves;
    f.engine_seq = ++e->seq;
    if (e->out.on_fill) e->out.on_fill(e->out.ud, o->session, &f);
}

/* ---- orders ------------------------------------------------------------------------- */

static const char *check_order(engine_t *e, uint32_t s, const new_order_t *o, int *sym) {
    if (o->cl_ord_id == 0 || o->cl_ord_id > (uint64_t)GW_JS_SAFE_MAX) return "cl_ord_id out of range";
    if ((*sym = engine_symbol_index(e, o->symbol)) < 0) return "unknown symbol";
    if (o->side != GW_BUY && o->side != GW_SELL) return "bad side";
    if (o->price <= 0 || o->price > GW_JS_SAFE_MAX) return "price out of range";
    if (o->qty == 0) return "qty must be > 0";
    if (find(e, s, o->cl_ord_id) != NIL) return "duplicate cl_ord_id";
    if (o->cl_ord_id <= e->sessions[s].stale_max) return "stale cl_ord_id";
    const book_side_t *bs = &e->sides[*sym][o->side];
    bool found;
    if (bs->n == e->o.max_levels) {
        level_find(bs, o->side, o->price, &found);
        if (!found) return "too many price levels";
    }
    return NULL;
}

/* Matches the aggressor a against the opposite side while it crosses. */
static void match(engine_t *e, uint32_t a) {
    order_t *ag = &e->pool[a];
    int opp = ag->side == GW_BUY ? GW_SELL : GW_BUY;
    book_side_t *bs = &e->sides[ag->sym][opp];
    while (ag->leaves > 0 && bs->n > 0) {
        level_t *best = &bs->lv[bs->n - 1];
        if (better(opp, ag->price, best->price)) break; /* does not cross */
        uint32_t r = best->head;
        order_t *rest = &e->pool[r];
        uint32_t q = ag->leaves < rest->leaves ? ag->leaves : rest->leaves;
        int64_t px = rest->price;
        uint64_t mid = e->next_match_id++;
        ag->leaves -= q;
        rest->leaves -= q;
        e->st.matches++;
        e->st.filled_qty += q;
        fill(e, ag, mid, px, q);
        fill(e, rest, mid, px, q);
        if (rest->leaves == 0) {
            level_unlink(e, r);
            record_done(e, r);
            e->st.resting--;
        }
    }
}

void engine_new_order(engine_t *e, uint32_t s, const new_order_t *o) {
    e->st.orders++;
    int sym = -1;
    const char *why = s < e->nsessions ? check_order(e, s, o, &sym) : "unknown session";
    uint32_t i = why ? NIL : record_take(e);
    if (!why && i == NIL) why = "order book full";
    if (why) {
        e->st.rejected++;
        ack(e, s, o->cl_ord_id, 0, GW_REJECTED, 0, why);
        return;
    }
    order_t *r = &e->pool[i];
    *r = (order_t){.cl_ord_id = o->cl_ord_id, .order_id = e->next_order_id++, .price = o->price,
                   .qty = o->qty, .leaves = o->qty, .session = s, .prev = NIL, .next = NIL, .hnext = NIL,
                   .sym = (uint16_t)sym, .side = o->side, .live = 1};
    index_add(e, i);
    e->st.accepted++;
    ack(e, s, r->cl_ord_id, r->order_id, GW_ACCEPTED, r->leaves, "");
    match(e, i);
    if (r->leaves > 0) {
        level_append(e, &e->sides[sym][r->side], r->side, i);
        e->st.resting++;
    } else {
        record_done(e, i);
    }
}

void engine_cancel(engine_t *e, uint32_t s, const cancel_t *c) {
    e->st.cancels++;
    const char *why = NULL;
    uint32_t i = NIL;
    if (s >= e->nsessions) why = "unknown session";
    else if (c->cl_ord_id == 0 || c->cl_ord_id > (uint64_t)GW_JS_SAFE_MAX) why = "cl_ord_id out of range";
    else if ((i = find(e, s, c->cl_ord_id)) == NIL) why = "unknown order";
    else if (!e->pool[i].live) why = "order not open";
    if (why) {
        e->st.cancel_rejected++;
        ack(e, s, c->cl_ord_id, i == NIL ? 0 : e->pool[i].order_id, GW_REJECTED, 0, why);
        return;
    }
    order_t *r = &e->pool[i];
    level_unlink(e, i);
    r->leaves = 0;
    record_done(e, i);
    e->st.resting--;
    e->st.cancelled++;
    ack(e, s, r->cl_ord_id, r->order_id, GW_CANCELLED, 0, "");
}

/* ---- the book ------------------------------------------------------------------------ */

typedef void (*line_fn)(void *ud, const char *line, size_t len);

static size_t book_lines(const engine_t *e, line_fn fn, void *ud) {
    size_t n = 0;
    char line[160];
    for (int s = 0; s < e->nsyms; s++) {
        for (int side = 0; side < 2; side++) {
            const book_side_t *bs = &e->sides[s][side];
            for (uint32_t k = bs->n; k-- > 0;) {
                for (uint32_t i = bs->lv[k].head; i != NIL; i = e->pool[i].next) {
                    const order_t *o = &e->pool[i];
                    int len = snprintf(line, sizeof line, "%s %s %lld %s %llu %u/%u\n", e->syms[s],
                                       side == GW_BUY ? "buy" : "sell", (long long)o->price,
                                       e->sessions[o->session].name, (unsigned long long)o->cl_ord_id,
                                       o->leaves, o->qty);
                    fn(ud, line, (size_t)len < sizeof line ? (size_t)len : sizeof line - 1);
                    n++;
                }
            }
        }
    }
    return n;
}

static void line_to_file(void *ud, const char *line, size_t len) { fwrite(line, 1, len, ud); }

size_t engine_book_write(const engine_t *e, FILE *f) { return book_lines(e, line_to_file, f); }

static void line_hash(void *ud, const char *line, size_t len) {
    uint64_t *h = ud;
    for (size_t i = 0; i < len; i++) *h = (*h ^ (uint8_t)line[i]) * 1099511628211ull;
}

uint64_t engine_book_hash(const engine_t *e) {
    uint64_t h = 1469598103934665603ull;
    book_lines(e, line_hash, &h);
    return h;
}
