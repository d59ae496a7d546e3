/* test_chaos.c - sessions under fire: examples/gateway (sessions on, three
 * listeners) and three examples/trader processes (sessions on), one per
 * transport and run mode, each through its own cutting proxy
 * (tests/util/mw_proxy.c), while faults are forced every FAULT_MS:
 *
 *   - the gateway closes every connection (SIGUSR1),
 *   - a trader drops its connection (SIGUSR1),
 *   - the link is cut in the middle of a chunk (a frame, a TLS record, a
 *     WebSocket message) by the proxy,
 *   - kill -9 of a trader, started again at once from its journal,
 *   - kill -9 of the gateway, started again at once (on new ports, the
 *     proxies follow) and rebuilding its engine from its journals.
 *
 *   T1  tcp://  spin      AAPL
 *   T2  tls://  blocking  MSFT
 *   T3  ws://   event     GOOG
 *
 * Each trader sends its stream (examples/common/gw_orders.h: 7,000 orders
 * and 778 cancels, paced so that the run lasts about 25 s) and exits 0 only
 * when its own checks pass over the whole run. Then, from the journals of
 * both sides and this process's own engine (the same orders run once,
 * without faults, in examples/common/engine.c):
 *   - each trader's journal holds its stream exactly (sent once, in order),
 *     and so does the gateway's inbound journal of its session;
 *   - what each trader received (its inbound journal, by number) is exactly
 *     what the fault-free engine makes for its session: every ack once,
 *     every fill once, in order (engine numbers aside); the gateway's
 *     outbound journal holds the same messages, engine numbers included;
 *   - the gateway's book at the end is the fault-free engine's book, byte
 *     for byte;
 *   - at least 20 faults were forced, each kind at least twice.
 *
 * MW_SOAK=1 (make soak-sessions) runs the same for SOAK_SECONDS (default
 * 300) with faults at random times (the seed is printed).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "gw_orders.h"
#include "gw_proto.h"
#include "mw_proc.h"
#include "mw_proxy.h"
#include "mw_session.h"
#include "mw_test.h"

#ifndef MW_BUILD_DIR
#define MW_BUILD_DIR "build"
#endif

#define GW_BIN MW_BUILD_DIR "/examples/gateway"
#define TRADER_BIN MW_BUILD_DIR "/examples/trader"
#define START_MS 20000
#define FAULT_MS 700
#define RATE 350 /* messages per second per trader */
#define NTRADERS 3

enum { F_GW_CLOSE, F_TR_DROP, F_CUT, F_KILL_TR, F_KILL_GW, NFAULTS };
static const char *const FAULT_NAMES[NFAULTS] = {"gateway closes", "trader drops", "link cut mid-chunk",
                                                 "kill -9 trader", "kill -9 gateway"};

typedef struct tcfg {
    const char *id, *listener, *mode, *symbol;
    uint64_t seed;
} tcfg_t;

static const tcfg_t TRADERS[NTRADERS] = {
    {"T1", "tcp", "spin", "AAPL", 11},
    {"T2", "tls", "blocking", "MSFT", 12},
    {"T3", "ws", "event", "GOOG", 13},
};
#define CANCEL_EVERY 9

static bool soak;
static long soak_seconds = 300;

typedef struct chaos {
    char dir[64], gwdir[96], trdir[96], book[96];
    char count[24], rate[16];
    uint64_t norders;
    mw_proc_t *gw;
    int ports[3]; /* tcp, tls, ws */
    int gw_starts;
    mw_proxy_t *px[NTRADERS];
    int pport[NTRADERS];
    mw_proc_t *tr[NTRADERS];
    char url[NTRADERS][64];
    bool done[NTRADERS];
    int starts[NTRADERS];
    char last_out[NTRADERS][4096];
    int faults[NFAULTS];
    uint64_t rng;
} chaos_t;

static uint64_t ms_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static uint64_t rnd(chaos_t *c) {
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    return c->rng;
}

static int listener_index(const char *name) { return name[0] == 't' ? (name[1] == 'c' ? 0 : 1) : 2; }

/* ---- the processes ------------------------------------------------------------------ */

static void gw_start(chaos_t *c) {
    char *argv[] = {GW_BIN, "--tcp", "tcp://127.0.0.1:0", "--tls", "tls://127.0.0.1:0", "--ws",
                    "ws://127.0.0.1:0/gw", "--journal", c->gwdir, "--book", c->book, "--json",
                    "--cert", (char *)mw_test_cert("srv.pem"), "--key", (char *)mw_test_cert("srv.key"), NULL};
    c->gw = mw_proc_start("gateway", argv);
    if (!mw_proc_wait_text(c->gw, 0, 0, "\n", START_MS))
        fail_msg("gateway (start %d) printed no ports; stderr: %s", c->gw_starts + 1, c->gw->out[1]);
    if (sscanf(c->gw->out[0], "listening tcp=%d tls=%d ws=%d", &c->ports[0], &c->ports[1], &c->ports[2]) != 3)
        fail_msg("gateway: unexpected first line: %s", c->gw->out[0]);
    c->gw_starts++;
    for (int i = 0; i < NTRADERS; i++)
        if (c->px[i]) mw_proxy_set_upstream(c->px[i], c->ports[listener_index(TRADERS[i].listener)]);
}

static void tr_start(chaos_t *c, int i) {
    const tcfg_t *t = &TRADERS[i];
    char seed[16];
    snprintf(seed, sizeof seed, "%" PRIu64, t->seed);
    char *argv[] = {TRADER_BIN, "--url", c->url[i], "--mode", (char *)t->mode, "--count", c->count,
                    "--symbol", (char *)t->symbol, "--seed", seed, "--cancel-every", "9", "--window", "32",
                    "--rate", c->rate, "--session", (char *)t->id, "--journal", c->trdir,
                    "--reconnect-for", "60", "--ca", (char *)mw_test_cert("ca.pem"), "--json", NULL};
    c->tr[i] = mw_proc_start(t->id, argv);
    c->starts[i]++;
}

/* A trader that ended: done (exit 0), started again (killed by us), or a
 * failure of the test. */
static void tr_check(chaos_t *c, int i) {
    mw_proc_t *p = c->tr[i];
    if (!p || !p->reaped) return;
    mw_proc_wait_exit(p, 5000);
    int rc = mw_proc_exit_code(p);
    if (rc == 0) {
        snprintf(c->last_out[i], sizeof c->last_out[i], "%s", p->out[0]);
        c->done[i] = true;
        mw_proc_release(p);
        c->tr[i] = NULL;
        return;
    }
    if (rc != 128 + SIGKILL)
        fail_msg("trader %s (start %d) exit %d\nstdout: %s\nstderr: %s", TRADERS[i].id, c->starts[i], rc, p->out[0],
                 p->out[1]);
    mw_proc_release(p);
    tr_start(c, i);
}

static int pick_running(chaos_t *c) {
    int alive[NTRADERS], n = 0;
    for (int i = 0; i < NTRADERS; i++)
        if (!c->done[i] && c->tr[i] && !c->tr[i]->reaped) alive[n++] = i;
    return n ? alive[rnd(c) % (uint64_t)n] : -1;
}

static void fault(chaos_t *c, int kind) {
    int i = pick_running(c);
    if (i < 0) return;
    switch (kind) {
    case F_GW_CLOSE:
        kill(c->gw->pid, SIGUSR1);
        break;
    case F_TR_DROP:
        kill(c->tr[i]->pid, SIGUSR1);
        break;
    case F_CUT:
        mw_proxy_cut(c->px[i]);
        break;
    case F_KILL_TR:
        kill(c->tr[i]->pid, SIGKILL);
        break;
    case F_KILL_GW: {
        int rc = mw_proc_stop(c->gw, SIGKILL, 10000);
        if (rc != 128 + SIGKILL) fail_msg("gateway: exit %d before the kill; stderr: %s", rc, c->gw->out[1]);
        mw_proc_release(c->gw);
        gw_start(c);
        break;
    }
    }
    c->faults[kind]++;
}

/* ---- the fault-free run, in this process ---------------------------------------------- */

typedef struct out {
    uint16_t tag;
    gw_msg_t m;
} out_t;

typedef struct outs {
    out_t *v;
    size_t n, cap;
} outs_t;

static void outs_add(outs_t *o, uint16_t tag, const void *msg, size_t size) {
    if (o->n == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 1024;
        o->v = realloc(o->v, o->cap * sizeof *o->v);
        assert_non_null(o->v);
    }
    memset(&o->v[o->n], 0, sizeof o->v[o->n]);
    o->v[o->n].tag = tag;
    memcpy(&o->v[o->n].m, msg, size);
    o->n++;
}

static void exp_ack(void *ud, uint32_t s, const order_ack_t *a) {
    outs_add(&((outs_t *)ud)[s], order_ack_TAG, a, sizeof *a);
}

static void exp_fill(void *ud, uint32_t s, const fill_t *f) {
    outs_add(&((outs_t *)ud)[s], fill_TAG, f, sizeof *f);
}

static gw_stream_t stream_of(const chaos_t *c, int i) {
    gw_stream_t st = {.seed = TRADERS[i].seed, .count = c->norders, .cancel_every = CANCEL_EVERY, .mid = 18950};
    memcpy(st.symbol, TRADERS[i].symbol, strlen(TRADERS[i].symbol));
    return st;
}

/* Runs every trader's stream once through an engine configured as the
 * gateway's; fills exp[i] with what session i must receive and returns the
 * book. */
static char *expected_run(const chaos_t *c, outs_t exp[NTRADERS]) {
    engine_opts_t o;
    engine_opts_init(&o);
    o.out = (engine_out_t){exp_ack, exp_fill, exp};
    engine_t *e;
    char err[200];
    assert_int_equal(engine_new(&e, &o, err, sizeof err), 0);
    for (int i = 0; i < NTRADERS; i++) {
        char name[ENGINE_SESSION_CAP];
        snprintf(name, sizeof name, "%s/%s", TRADERS[i].listener, TRADERS[i].id);
        assert_int_equal(engine_session(e, name), i);
    }
    for (int i = 0; i < NTRADERS; i++) {
        gw_stream_t st = stream_of(c, i);
        for (uint64_t k = 0; k < gw_stream_len(&st); k++) {
            gw_msg_t m;
            if (gw_stream_msg(&st, k, &m) == new_order_TAG) engine_new_order(e, (uint32_t)i, &m.new_order);
            else engine_cancel(e, (uint32_t)i, &m.cancel);
        }
    }
    char *book = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&book, &len);
    assert_non_null(f);
    engine_book_write(e, f);
    fclose(f);
    engine_free(e);
    return book;
}

/* ---- reading the journals ------------------------------------------------------------- */

/* Field by field (struct padding may hold anything). */
static bool msg_equal(uint16_t tag, const void *a, const void *b) {
    const mw_schema_t *sch = gw_protocol.by_tag(tag);
    for (uint16_t i = 0; i < sch->nfields; i++) {
        const mw_field_t *f = &sch->fields[i];
        if (memcmp((const char *)a + f->offset, (const char *)b + f->offset, f->size) != 0) return false;
    }
    return true;
}

typedef struct jread {
    outs_t in, out;   /* by number: in.v[k] is number k+1 */
    uint64_t in_repeats, out_breaks;
    bool in_mismatch;
} jread_t;

static bool jrec(void *ud, int dir, uint64_t seq, const mw_schema_t *sch, const void *msg) {
    jread_t *j = ud;
    outs_t *o = dir == MW_SESSION_IN ? &j->in : &j->out;
    if (seq <= o->n) { /* inbound, handed over again after a restart: must be the same message */
        j->in_repeats++;
        const out_t *was = &o->v[seq - 1];
        if (was->tag != sch->tag || !msg_equal(sch->tag, &was->m, msg)) j->in_mismatch = true;
        return true;
    }
    if (seq != o->n + 1) j->out_breaks++;
    outs_add(o, sch->tag, msg, sch->size);
    return true;
}

static void jread(const char *dir, const char *id, jread_t *j) {
    memset(j, 0, sizeof *j);
    mw_err_t err;
    mw_err_clear(&err);
    if (mw_session_replay(dir, id, &gw_protocol, jrec, j, &err) < 0) fail_msg("replay %s/%s: %s", dir, id, mw_err_text(&err));
    assert_int_equal(j->out_breaks, 0);
    assert_false(j->in_mismatch);
}

/* The same message, engine numbers (order_id, match_id, engine_seq: global,
 * so they depend on how the sessions interleaved) aside. */
static bool same_output(const out_t *a, const out_t *b) {
    if (a->tag != b->tag) return false;
    if (a->tag == order_ack_TAG) {
        const order_ack_t *x = &a->m.order_ack, *y = &b->m.order_ack;
        return x->cl_ord_id == y->cl_ord_id && x->status == y->status && x->leaves == y->leaves &&
               strncmp(x->reason, y->reason, sizeof x->reason) == 0;
    }
    const fill_t *x = &a->m.fill, *y = &b->m.fill;
    return x->cl_ord_id == y->cl_ord_id && x->price == y->price && x->qty == y->qty && x->leaves == y->leaves;
}

static uint64_t engine_seq_of(const out_t *o) {
    return o->tag == order_ack_TAG ? o->m.order_ack.engine_seq : o->m.fill.engine_seq;
}

static void expect_outputs(const char *who, const outs_t *got, const outs_t *want) {
    if (got->n != want->n) fail_msg("%s: %zu messages, %zu expected", who, got->n, want->n);
    for (size_t k = 0; k < got->n; k++) {
        if (!same_output(&got->v[k], &want->v[k]))
            fail_msg("%s: message %zu is a %s for %" PRIu64 ", expected a %s for %" PRIu64, who, k + 1,
                     got->v[k].tag == order_ack_TAG ? "order_ack" : "fill", got->v[k].m.fill.cl_ord_id,
                     want->v[k].tag == order_ack_TAG ? "order_ack" : "fill", want->v[k].m.fill.cl_ord_id);
        if (k && engine_seq_of(&got->v[k]) <= engine_seq_of(&got->v[k - 1]))
            fail_msg("%s: engine_seq goes back at message %zu", who, k + 1);
    }
}

static void expect_stream(const char *who, const outs_t *got, const gw_stream_t *st) {
    if (got->n != gw_stream_len(st)) fail_msg("%s: %zu messages, the stream has %" PRIu64, who, got->n, gw_stream_len(st));
    for (size_t k = 0; k < got->n; k++) {
        gw_msg_t m;
        unsigned tag = gw_stream_msg(st, k, &m);
        const out_t *o = &got->v[k];
        bool same = o->tag == tag && (tag == cancel_TAG ? o->m.cancel.cl_ord_id == m.cancel.cl_ord_id
                                                        : o->m.new_order.cl_ord_id == m.new_order.cl_ord_id &&
                                                              o->m.new_order.price == m.new_order.price &&
                                                              o->m.new_order.qty == m.new_order.qty &&
                                                              o->m.new_order.side == m.new_order.side);
        if (!same) fail_msg("%s: message %zu is not the stream's", who, k + 1);
    }
}

static void outs_free(outs_t *o) {
    free(o->v);
    memset(o, 0, sizeof *o);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("cannot read %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) fwrite(tmp, 1, n, m);
    fclose(f);
    fclose(m);
    return buf;
}

static uint64_t json_u64(const char *j, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(j, pat);
    if (!p) fail_msg("no %s in %s", key, j);
    return strtoull(p + strlen(pat), NULL, 10);
}

/* ---- the run -------------------------------------------------------------------------- */

static void verify(chaos_t *c) {
    outs_t exp[NTRADERS];
    memset(exp, 0, sizeof exp);
    char *want_book = expected_run(c, exp);
    char *got_book = slurp(c->book);
    if (strcmp(want_book, got_book) != 0) {
        fprintf(stderr, "gateway book (%zu bytes) differs from the fault-free engine's (%zu bytes)\n",
                strlen(got_book), strlen(want_book));
        fail_msg("the books differ");
    }
    assert_true(strlen(want_book) > 0);
    for (int i = 0; i < NTRADERS; i++) {
        const tcfg_t *t = &TRADERS[i];
        gw_stream_t st = stream_of(c, i);
        char who[64], gdir[160];
        jread_t tj, gj;
        jread(c->trdir, t->id, &tj);
        snprintf(gdir, sizeof gdir, "%s/%s", c->gwdir, t->listener);
        jread(gdir, t->id, &gj);
        snprintf(who, sizeof who, "%s sent (its journal)", t->id);
        expect_stream(who, &tj.out, &st);
        snprintf(who, sizeof who, "%s sent (the gateway's journal)", t->id);
        expect_stream(who, &gj.in, &st);
        snprintf(who, sizeof who, "%s received (its journal)", t->id);
        expect_outputs(who, &tj.in, &exp[i]);
        snprintf(who, sizeof who, "%s was sent (the gateway's journal)", t->id);
        expect_outputs(who, &gj.out, &exp[i]);
        for (size_t k = 0; k < tj.in.n; k++) /* both sides hold the very same messages */
            if (tj.in.v[k].tag != gj.out.v[k].tag || !msg_equal(tj.in.v[k].tag, &tj.in.v[k].m, &gj.out.v[k].m))
                fail_msg("%s: message %zu differs between the two journals", t->id, k + 1);
        const char *j = strchr(c->last_out[i], '{');
        assert_non_null(j);
        assert_int_equal(json_u64(j, "orders"), c->norders);
        assert_int_equal(json_u64(j, "accepted") + json_u64(j, "rejected"), c->norders);
        printf("  %s %s %s: %zu sent, %zu received (%" PRIu64 " handed over again after restarts), %d starts\n", t->id,
               t->listener, t->mode, tj.out.n, tj.in.n, tj.in_repeats, c->starts[i]);
        outs_free(&tj.in);
        outs_free(&tj.out);
        outs_free(&gj.in);
        outs_free(&gj.out);
        outs_free(&exp[i]);
    }
    free(want_book);
    free(got_book);
}

static void test_chaos_sessions_lose_and_duplicate_nothing(void **state) {
    (void)state;
    static chaos_t c; /* large */
    memset(&c, 0, sizeof c);
    c.rng = soak ? (uint64_t)time(NULL) * 2654435761u + 1 : 0x9e3779b97f4a7c15ull;
    if (soak) printf("  soak: %ld s, fault seed %" PRIu64 "\n", soak_seconds, c.rng);
    c.norders = soak ? (uint64_t)soak_seconds * RATE * CANCEL_EVERY / (CANCEL_EVERY + 1) : 7000;
    snprintf(c.count, sizeof c.count, "%" PRIu64, c.norders);
    snprintf(c.rate, sizeof c.rate, "%d", RATE);
    snprintf(c.dir, sizeof c.dir, "/tmp/mw_chaos_XXXXXX");
    if (!mkdtemp(c.dir)) fail_msg("mkdtemp: %s", strerror(errno));
    snprintf(c.gwdir, sizeof c.gwdir, "%s/gw", c.dir);
    snprintf(c.trdir, sizeof c.trdir, "%s/tr", c.dir);
    snprintf(c.book, sizeof c.book, "%s/book", c.dir);
    assert_int_equal(mkdir(c.gwdir, 0700), 0);
    assert_int_equal(mkdir(c.trdir, 0700), 0);
    gw_start(&c);
    for (int i = 0; i < NTRADERS; i++) {
        int l = listener_index(TRADERS[i].listener);
        c.px[i] = mw_proxy_start(c.ports[l], &c.pport[i]);
        snprintf(c.url[i], sizeof c.url[i], "%s://127.0.0.1:%d%s", TRADERS[i].listener, c.pport[i],
                 l == 2 ? "/gw" : "");
        tr_start(&c, i);
    }
    uint64_t t0 = ms_now();
    uint64_t limit_ms = (soak ? (uint64_t)soak_seconds * 3 + 120 : 150) * 1000;
    uint64_t next_fault = t0 + FAULT_MS;
    int kind = 0;
    for (;;) {
        mw_proc_pump(20);
        bool all = true;
        for (int i = 0; i < NTRADERS; i++) {
            tr_check(&c, i);
            all = all && c.done[i];
        }
        if (all) break;
        if (c.gw->reaped) fail_msg("the gateway exited (%d); stderr: %s", mw_proc_exit_code(c.gw), c.gw->out[1]);
        uint64_t now = ms_now();
        if (now - t0 > limit_ms) fail_msg("the traders did not finish within %" PRIu64 " s", limit_ms / 1000);
        if (now >= next_fault) {
            fault(&c, soak ? (int)(rnd(&c) % NFAULTS) : kind);
            kind = (kind + 1) % NFAULTS;
            next_fault = now + (soak ? 150 + rnd(&c) % 1500 : FAULT_MS);
        }
    }
    double secs = (double)(ms_now() - t0) / 1000;
    int rc = mw_proc_stop(c.gw, SIGTERM, 30000);
    if (rc != 0) fail_msg("gateway exit %d; stderr: %s", rc, c.gw->out[1]);
    const char *gj = strchr(c.gw->out[0], '{');
    assert_non_null(gj);
    uint64_t cancels = c.norders / CANCEL_EVERY + 1;
    assert_int_equal(json_u64(gj, "orders"), NTRADERS * c.norders);
    assert_int_equal(json_u64(gj, "cancels"), NTRADERS * cancels);
    int total = 0;
    printf("  %.1f s, %" PRIu64 " orders; faults:", secs, NTRADERS * c.norders);
    for (int k = 0; k < NFAULTS; k++) {
        printf(" %s %d%s", FAULT_NAMES[k], c.faults[k], k + 1 < NFAULTS ? "," : "\n");
        total += c.faults[k];
    }
    uint64_t cuts = 0;
    for (int i = 0; i < NTRADERS; i++) cuts += mw_proxy_cuts(c.px[i]);
    const char *ss = strstr(gj, "\"sessions\":");
    printf("  %" PRIu64 " cuts made, gateway started %d times; its last run: %.*s\n", cuts, c.gw_starts,
           ss ? (int)(strchr(ss, '}') - ss + 1) : 0, ss ? ss : "");
    assert_true(total >= 20);
    for (int k = 0; k < NFAULTS; k++) assert_true(c.faults[k] >= 2);
    verify(&c);
    mw_proc_release(c.gw);
    for (int i = 0; i < NTRADERS; i++) mw_proxy_stop(c.px[i]);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", c.dir);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const char *s = getenv("MW_SOAK");
    soak = s && *s && strcmp(s, "0") != 0;
    const char *secs = getenv("SOAK_SECONDS");
    if (secs && atol(secs) > 0) soak_seconds = atol(secs);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_chaos_sessions_lose_and_duplicate_nothing, mw_proc_release_all),
    };
    return mw_run_group_requiring(mw_have_openssl_cli(), "the openssl command", tests, NULL, NULL);
}
