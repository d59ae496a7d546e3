/* test_interop_session.c - the session wire protocol against an independent
 * peer: tests/py/session_peer.py, written from the README's "Sessions: the
 * wire protocol" with Python's json, struct and socket modules only.
 *
 * Over the text serdes (JSON Lines) and the fixed serdes (u32 length +
 * packed layout):
 *   - an event-mode Svc with sessions (it echoes each ping, numbered) and
 *     the Python client: runs of separate Python processes resume the
 *     numbering from the peer's state file, and replies the Python process
 *     never handled come again flagged resent (mw_seq resent=true);
 *   - a spin Clt and the Python server: the same, the other way round, with
 *     the Clt's own journal and mw_clt_rx_flags;
 *   - hostile clients: a numbering gap, a resend-request flood, a silent
 *     peer, a logon claiming numbers never sent, a bad session id, an
 *     application message before the logon. Each asserts both the Svc's
 *     close (on_close reason, mw_svc_conn_error) and what the peer received
 *     (the peer checks its side and exits nonzero otherwise; its summary
 *     line is checked here too).
 * Also: the README's message table and examples are checked against the
 * schemas, and the peer reads journal files per the README's format and
 * must find a damaged file's cut where C's recovery makes it.
 * Without /usr/bin/python3 those tests are skipped (failed under CI).
 * PEER_DEBUG=1 in the environment prints the peer's summaries and the Svc's
 * close texts. */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal_impl.h"
#include "mw_clt.h"
#include "mw_svc.h"
#include "mw_test.h"
#include "svh_session.h"
#include "test_proto.h"

#define PEER MW_PYTHON " " MW_SRC_ROOT "/tests/py/session_peer.py"
#define WAIT_MS SVH_SESSION_WAIT_MS
#define OUT_CAP (1u << 18)

/* The fixture is tests/util/svh_session.h (f->serdes: this test's serdes);
 * the peer keeps its state in peer_state, in the test's directory. */
static char peer_state[128];
static atomic_int send_errors; /* the Svc's echo failed */

static int setup(void **state, const char *serdes) {
    if (svh_session_setup(state) != 0) return -1;
    svh_t *f = *state;
    f->serdes = serdes;
    snprintf(peer_state, sizeof peer_state, "%s/peer.json", f->dir);
    atomic_store(&send_errors, 0);
    return 0;
}
static int setup_text(void **state) { return setup(state, "text"); }
static int setup_fixed(void **state) { return setup(state, "fixed"); }

static int teardown(void **state) {
    int errors = atomic_load(&send_errors);
    svh_teardown(state);
    if (errors) fprintf(stderr, "the Svc's echo failed %d times\n", errors);
    return errors ? -1 : 0;
}

static void require_peer(void) { mw_test_require(mw_have_python_module("json"), MW_PYTHON); }

/* ---- the Svc: echoes every ping, numbered -------------------------------------- */

static void echo_ping(svh_t *f, mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg) {
    (void)f;
    if (sch->tag != ping_TAG) return;
    ping_t r = {.seq = ((const ping_t *)msg)->seq};
    /* no cmocka assert off the test's thread: counted, failed in teardown */
    if (mw_svc_send_to(s, id, ping_schema(), &r) != 0) atomic_fetch_add(&send_errors, 1);
}

static void svc_start(svh_t *f) {
    mw_svc_opts_t o;
    svh_session_svc_opts(f, &o);
    f->on_msg = echo_ping;
    o.linger_ns = 500 * MW_NS_PER_MS;
    svh_start(f, "tcp", 0, &o);
}

/* The Svc's connection count closed reaches n (a session is free for the
 * next logon only once its connection is gone). */
static void wait_closes(svh_t *f, int n) {
    if (!svh_wait_count(&f->nclosed, n, WAIT_MS))
        fail_msg("the Svc saw %d closes, want %d", atomic_load(&f->nclosed), n);
}

/* The Svc's application got numbers first..last (in order, once, payload ==
 * number, flags 0) as its messages [from, from + last - first]. */
static void expect_svc_got(svh_t *f, int from, uint64_t first, uint64_t last) {
    svh_expect_numbered(f, from, first, last, ~0u);
}

/* ---- the peer ------------------------------------------------------------------- */

/* Runs the peer to its end; fails the test unless it exits 0. Returns its
 * stdout (free it). */
static char *peer_run(const char *args) {
    char cmd[768];
    snprintf(cmd, sizeof cmd, PEER " %s", args);
    char *out = malloc(OUT_CAP);
    assert_non_null(out);
    int rc = mw_run(cmd, out, OUT_CAP);
    if (rc != 0) {
        const char *e = strstr(out, "{\"error\"");
        fail_msg("`%s` exited with %d: %.600s", cmd, rc, e ? e : out);
    }
    return out;
}

/* The peer's summary line contains each of the fragments. */
static void expect_summary(const char *out, const char *const *frags) {
    const char *sum = strstr(out, "{\"summary\"");
    if (!sum) fail_msg("no summary line in the peer's output: %.600s", out);
    for (; *frags; frags++)
        if (!strstr(sum, *frags)) fail_msg("the peer's summary lacks %s: %.600s", *frags, sum);
}

static void client_run(svh_t *f, const char *session, const char *opts, const char *const *frags) {
    char args[512];
    snprintf(args, sizeof args, "client %s %d %s %s %s", f->serdes, f->port, session, peer_state, opts);
    char *out = peer_run(args);
    if (getenv("PEER_DEBUG")) fprintf(stderr, "%s\n", strstr(out, "{\"summary") ? strstr(out, "{\"summary") : out);
    expect_summary(out, frags);
    free(out);
}

/* ---- the journal, read by the peer ---------------------------------------------------- */

/* Python reads the journal file per the README; every OUT record must be a
 * ping whose payload seq is the record's number, first..last. */
static void expect_journal_of_pings(const char *path, uint64_t last, const char *const *frags) {
    char args[300];
    snprintf(args, sizeof args, "journal %s --decode", path);
    char *out = peer_run(args);
    expect_summary(out, frags);
    uint64_t want = 1;
    char *save = NULL;
    for (char *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        unsigned long long off, seq, len, pseq;
        char kind[8];
        if (sscanf(l, "{\"record\":{\"off\":%llu,\"seq\":%llu,\"kind\":\"%3[a-z]\",\"len\":%llu,"
                      "\"msg\":{\"type\":\"ping\",\"seq\":%llu,",
                   &off, &seq, kind, &len, &pseq) != 5)
            continue;
        if (strcmp(kind, "out") != 0) continue;
        if (seq != want || pseq != seq || len != ping_FIXED_SIZE) fail_msg("journal %s: record %s", path, l);
        want++;
    }
    free(out);
    assert_int_equal(want, last + 1);
}

/* A journal damaged in three ways: Python, reading it per the README, finds
 * the cut where C's recovery makes it. Records of varied lengths, OUT and IN
 * mixed. */
static int64_t python_cut(const char *path, const char *why) {
    char args[300];
    snprintf(args, sizeof args, "journal %s", path);
    char *out = peer_run(args);
    const char *sum = strstr(out, "{\"summary\"");
    if (!sum) fail_msg("no summary: %.400s", out);
    if (!strstr(sum, why)) fail_msg("python's cut is not \"%s\": %s", why, sum);
    const char *g = strstr(sum, "\"good_end\":");
    assert_non_null(g);
    int64_t end = strtoll(g + 11, NULL, 10);
    free(out);
    return end;
}

static void test_journal_format_python_cuts_where_c_recovers(void **state) {
    require_peer();
    svh_t *f = *state;
    mw__jnl_opts_t jo = {.dir = f->sdir, .session = "J1"};
    char path[256];
    snprintf(path, sizeof path, "%s/J1.000001.mwj", f->sdir);
    uint64_t rec_off[16] = {0}, off = 4096;
    for (int damage = 0; damage < 3; damage++) {
        mw_err_t err;
        mw__jnl_t *j;
        unlink(path);
        assert_int_equal(mw__jnl_open(&j, &jo, &err), 0);
        off = 4096;
        for (uint64_t k = 1; k <= 10; k++) {
            uint8_t p[64];
            uint32_t len = (uint32_t)(1 + k * 5 % 37); /* 8-byte padding of every kind */
            memset(p, (int)k, len);
            rec_off[k] = off;
            assert_int_equal(mw__jnl_append(j, MW__JNL_OUT, k, p, len), 0);
            off += 24 + (len + 7) / 8 * 8;
            if (k % 3 == 0) {
                assert_int_equal(mw__jnl_append(j, MW__JNL_IN, 100 + k, p, 3), 0);
                off += 24 + 8;
            }
        }
        mw__jnl_set_in_seen(j, 42);
        mw__jnl_set_in_next(j, 41);
        mw__jnl_close(j);
        /* python reads the whole undamaged file */
        char args[300];
        snprintf(args, sizeof args, "journal %s", path);
        char *out = peer_run(args);
        expect_summary(out, (const char *[]){"\"session\":\"J1\",\"epoch\":1,\"in_next\":41,\"in_seen\":42,"
                                             "\"out_first\":1,\"out_next\":11,\"out\":10,\"in\":3,",
                                             "\"cut\":null", NULL});
        free(out);
        FILE *fp = fopen(path, "r+b");
        assert_non_null(fp);
        const char *why;
        int64_t want;
        if (damage == 0) { /* a payload byte of record 7 */
            fseek(fp, (long)rec_off[7] + 24 + 1, SEEK_SET);
            fputc(0xee, fp);
            why = "record checksum mismatch", want = (int64_t)rec_off[7];
        } else if (damage == 1) { /* record 9's length reaches past the file */
            fseek(fp, (long)rec_off[9], SEEK_SET);
            const uint8_t big[4] = {0xff, 0xff, 0xff, 0x0f};
            fwrite(big, 1, 4, fp);
            why = "reaches past the end", want = (int64_t)rec_off[9];
        } else { /* a stray byte after the last record */
            fseek(fp, (long)off + 40, SEEK_SET);
            fputc(1, fp);
            why = "nonzero bytes after the last record", want = (int64_t)off;
        }
        fclose(fp);
        assert_int_equal(python_cut(path, why), want);
        assert_int_equal(mw__jnl_open(&j, &jo, &err), 0);
        assert_int_equal(mw__jnl_recovered(j), want);
        mw__jnl_close(j);
        /* cut: both read it whole now */
        assert_int_equal(python_cut(path, "\"cut\":null"), want);
    }
}

/* ---- the README's examples are what the code does ----------------------------------- */

/* In "Sessions: the wire protocol": each table row's tag and fixed size are
 * the schema's; each line of the json block decodes (text serdes, protocol
 * mw_session) and encodes back to the same bytes; the fixed mw_seq example
 * is byte for byte what the fixed serdes writes. */
static void test_readme_wire_protocol_examples_are_exact(void **state) {
    (void)state;
    FILE *fp = fopen(MW_SRC_ROOT "/README.md", "r");
    assert_non_null(fp);
    char line[1024];
    bool in_sec = false, in_json = false;
    int rows = 0, jsons = 0;
    mw_serdes_t tx, fx;
    assert_int_equal(mw_serdes_init(&tx, "text", 0), 0);
    assert_int_equal(mw_serdes_init(&fx, "fixed", 0), 0);
    while (fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\n")] = 0;
        if (!strncmp(line, "## ", 3)) in_sec = strcmp(line, "## Sessions: the wire protocol") == 0;
        if (!in_sec) continue;
        if (!strcmp(line, "```json")) { in_json = true; continue; }
        if (in_json && !strcmp(line, "```")) { in_json = false; continue; }
        if (in_json) {
            union { mw_logon_t a; mw_logon_ack_t b; mw_logout_t c; mw_seq_t d; } m;
            const mw_schema_t *sch;
            ssize_t n = mw_serdes_decode(&tx, (const uint8_t *)line, strlen(line), &mw_session_protocol, &sch, &m,
                                         sizeof m);
            if (n != (ssize_t)strlen(line)) fail_msg("README: %s: %s", line, mw_serdes_last_error(&tx));
            char back[1024];
            n = mw_serdes_encode(&tx, sch, &m, (uint8_t *)back, sizeof back);
            assert_true(n > 0);
            back[n] = 0;
            if (strcmp(back, line) != 0) fail_msg("README: %s\n  encodes as %s", line, back);
            jsons++;
            continue;
        }
        char name[32];
        unsigned tag, size;
        const char *last = strrchr(line, '|');
        if (sscanf(line, "| `%31[a-z_]` | 0x%x |", name, &tag) == 2 && last && last > line) {
            const char *p = last - 1;
            while (p > line && p[-1] != '|') p--;
            assert_int_equal(sscanf(p, " %u", &size), 1);
            const mw_schema_t *sch = mw_protocol_by_name(&mw_session_protocol, name, strlen(name));
            if (!sch) fail_msg("README names %s", name);
            assert_int_equal(sch->tag, tag);
            assert_int_equal(sch->fixed_size, size);
            /* the fields column lists the schema's fields in order */
            const char *q = strchr(strchr(line + 2, '|') + 1, '|') + 1;
            for (unsigned i = 0; i < sch->nfields; i++) {
                char want[48];
                snprintf(want, sizeof want, "`%s` ", sch->fields[i].name);
                const char *at = strstr(q, want);
                if (!at) fail_msg("README %s: field %s missing or out of order", name, sch->fields[i].name);
                q = at + strlen(want);
            }
            rows++;
        }
    }
    fclose(fp);
    assert_int_equal(rows, 7);
    assert_int_equal(jsons, 7);
    mw_seq_t sq = {.next = 41, .resent = true};
    uint8_t b[32];
    assert_int_equal(mw_serdes_encode(&fx, mw_seq_schema(), &sq, b, sizeof b), 11);
    const uint8_t want[11] = {0x07, 0xff, 0x29, 0, 0, 0, 0, 0, 0, 0, 0x01};
    assert_memory_equal(b, want, sizeof want);
    mw_serdes_fini(&tx);
    mw_serdes_fini(&fx);
}

/* ---- Svc vs the Python client ----------------------------------------------------- */

/* Separate Python processes, one state file: the numbering goes on across
 * them; replies a process read but never handled come again, flagged. */
static void test_svc_vs_python_client(void **state) {
    require_peer();
    svh_t *f = *state;
    svc_start(f);
    /* run 1: a new session */
    client_run(f, "P1", "--count 100",
               (const char *[]){"\"gaps\":0,\"dups\":0,", "\"sent_first\":1,", "\"sent_last\":100,", "\"first_in\":1,",
                                "\"handled\":100,", "\"next_in\":101,", "\"next_out\":101", NULL});
    expect_svc_got(f, 0, 1, 100);
    wait_closes(f, 1);
    assert_int_equal(atomic_load(&f->last_reason), MW_ECLOSED); /* a logout, answered */
    /* run 2: a new process resumes at 101 both ways */
    client_run(f, "P1", "--count 50",
               (const char *[]){"\"gaps\":0,\"dups\":0,", "\"sent_first\":101,", "\"sent_last\":150,", "\"first_in\":101,",
                                "\"handled\":50,", "\"resent_seen\":0,", "\"next_in\":151,", NULL});
    expect_svc_got(f, 100, 101, 150);
    wait_closes(f, 2);
    /* run 3: reads all 50 replies but hands only 20 to its application, then
     * leaves without a logout (as a process that died would) */
    client_run(f, "P1", "--count 50 --handle 20", (const char *[]){"\"handled\":20,", "\"next_in\":171,", NULL});
    expect_svc_got(f, 150, 151, 200);
    wait_closes(f, 3);
    /* run 4: 171..200 come again, flagged resent, before the replies to new pings */
    client_run(f, "P1", "--count 10 --expect-resent 30",
               (const char *[]){"\"gaps\":0,\"dups\":0,", "\"sent_first\":201,", "\"first_in\":171,", "\"handled\":40,",
                                "\"resent_seen\":30,", "\"next_in\":211,", "\"next_out\":211", NULL});
    expect_svc_got(f, 200, 201, 210);
    wait_closes(f, 4);
    mw_session_stats_t st;
    assert_int_equal(mw_svc_session_stats(f->svc, "P1", &st), 0);
    assert_int_equal(st.next_in, 211);
    assert_int_equal(st.next_out, 211);
    assert_int_equal(st.resent, 30);
    assert_int_equal(st.logons, 4);
    assert_int_equal(st.gaps, 0);
    assert_int_equal(st.dups_dropped, 0);
    char path[256];
    snprintf(path, sizeof path, "%s/P1.000001.mwj", f->sdir);
    expect_journal_of_pings(path, 210,
                            (const char *[]){"\"session\":\"P1\",\"epoch\":1,\"in_next\":211,\"in_seen\":211,"
                                             "\"out_first\":1,\"out_next\":211,\"out\":210,\"in\":0,",
                                             "\"cut\":null", NULL});
}

/* What the Svc sent to a session while it was not connected goes out at its
 * logon (never sent before: not flagged); a large resend goes out in
 * bounded batches and whole, without waiting for heartbeat ticks between
 * batches (a 20 s heartbeat: the 8 s deadline of the peer fails the test if
 * a batch waits for one). */
static void test_svc_pushes_and_resends_a_large_backlog(void **state) {
    require_peer();
    svh_t *f = *state;
    svc_start(f);
    for (uint64_t i = 1; i <= 2000; i++) {
        ping_t p = {.seq = i};
        uint64_t seq = 0;
        assert_int_equal(mw_svc_session_send(f->svc, "B1", ping_schema(), &p, &seq), 0);
        assert_int_equal(seq, i);
    }
    client_run(f, "B1", "--expect-pushed 2000 --handle 500 --heartbeat-ms 20000 --deadline 8",
               (const char *[]){"\"gaps\":0,\"dups\":0,", "\"first_in\":1,", "\"handled\":500,",
                                "\"resent_seen\":0,", "\"next_in\":501,", NULL});
    wait_closes(f, 1);
    client_run(f, "B1", "--expect-resent 1500 --heartbeat-ms 20000 --deadline 8",
               (const char *[]){"\"gaps\":0,\"dups\":0,", "\"first_in\":501,", "\"handled\":1500,",
                                "\"resent_seen\":1500,", "\"next_in\":2001,", NULL});
    wait_closes(f, 2);
    mw_session_stats_t st;
    assert_int_equal(mw_svc_session_stats(f->svc, "B1", &st), 0);
    assert_int_equal(st.resent, 1500);
    assert_int_equal(st.next_out, 2001);
}

/* ---- a spin Clt vs the Python server ---------------------------------------------- */

typedef struct server {
    FILE *fp;
    char line[4096];
} server_t;

static void server_start(svh_t *f, server_t *sv, const char *opts) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, PEER " server %s %s --session C1 %s", f->serdes, peer_state, opts);
    sv->fp = popen(cmd, "r");
    assert_non_null(sv->fp);
    if (!fgets(sv->line, sizeof sv->line, sv->fp) || sscanf(sv->line, "{\"port\":%d}", &f->port) != 1)
        fail_msg("the Python server did not print its port: %s", sv->line);
    snprintf(f->url, sizeof f->url, "tcp://127.0.0.1:%d", f->port);
}

/* Reads the server's lines until one contains what (its own deadline bounds
 * this: it exits, and fgets sees EOF). */
static void server_wait_line(server_t *sv, const char *what) {
    while (fgets(sv->line, sizeof sv->line, sv->fp))
        if (strstr(sv->line, what)) return;
    fail_msg("the Python server ended before printing %s", what);
}

/* Reads the rest; the server must exit 0; its summary contains frags. */
static void server_end(server_t *sv, const char *const *frags) {
    char *out = malloc(OUT_CAP);
    assert_non_null(out);
    size_t n = 0, k;
    while (n + 1 < OUT_CAP && (k = fread(out + n, 1, OUT_CAP - 1 - n, sv->fp)) > 0) n += k;
    out[n] = 0;
    int st = pclose(sv->fp);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        const char *e = strstr(out, "{\"error\"");
        fail_msg("the Python server failed (%d): %.600s", st, e ? e : out);
    }
    expect_summary(out, frags);
    free(out);
}

static void clt_opts(svh_t *f, mw_clt_opts_t *o) {
    svh_session_clt_opts(f, o, MW_MODE_SPIN, "C1");
    o->session.user = "alice";
}

static mw_clt_t *clt_connect(svh_t *f) {
    mw_clt_opts_t o;
    clt_opts(f, &o);
    return svh_clt_connect(f, &o);
}

static void recv_pings(mw_clt_t *c, uint64_t first, uint64_t last, unsigned flags) {
    svh_recv_numbered(c, first, last, flags, ~0u);
}

static void test_clt_vs_python_server(void **state) {
    require_peer();
    svh_t *f = *state;
    server_t sv;
    /* first server process: 100 pings, all echoed, the Clt handles 40 */
    server_start(f, &sv, "");
    mw_clt_t *c = clt_connect(f);
    svh_send_numbered(c, 1, 100);
    server_wait_line(&sv, "{\"echoed\":100}");
    recv_pings(c, 1, 40, 0);
    mw_session_stats_t st;
    assert_int_equal(mw_clt_session_stats(c, &st), 0);
    assert_int_equal(st.next_in, 41);
    assert_int_equal(st.next_out, 101);
    svh_clt_drop(f, c); /* no logout: the connection just ends */
    server_end(&sv, (const char *[]){"\"next_in\":101,", "\"next_out\":101,", "\"echoed\":100,", NULL});
    /* a new server process from the same state, a new Clt from the same
     * journal: 41..100 resent (flagged), then new numbers */
    server_start(f, &sv, "");
    c = clt_connect(f);
    recv_pings(c, 41, 100, MW_SEQ_RESENT);
    svh_send_numbered(c, 101, 110);
    recv_pings(c, 101, 110, 0);
    assert_int_equal(mw_clt_session_stats(c, &st), 0);
    assert_int_equal(st.next_out, 111);
    assert_int_equal(st.dups_dropped, 0);
    assert_int_equal(st.gaps, 0);
    assert_int_equal(mw_clt_logout(c, "done"), 0);
    svh_clt_drop(f, c);
    server_end(&sv, (const char *[]){"\"resent\":60,", "\"next_in\":111,", "\"next_out\":111,", "\"echoed\":10,",
                                     "\"code\":0,", NULL});
    char path[256];
    snprintf(path, sizeof path, "%s/C1.000001.mwj", f->cdir);
    expect_journal_of_pings(path, 110,
                            (const char *[]){"\"in_next\":111,\"in_seen\":111,\"out_first\":1,\"out_next\":111,"
                                             "\"out\":110,", "\"cut\":null", NULL});
}

/* The Python server loses echo 5 (journals it, never writes it) and later
 * sends 12..14 again before 15, and sends a test request: the Clt asks for
 * 5 on once, drops what arrives until the resend, takes 5.. flagged resent,
 * drops the three duplicates, and answers the test request. */
static void test_clt_gap_and_duplicates_from_python_server(void **state) {
    require_peer();
    svh_t *f = *state;
    server_t sv;
    server_start(f, &sv, "--lose 5 --dup 15 --test-id 77");
    mw_clt_t *c = clt_connect(f);
    svh_send_numbered(c, 1, 10);
    for (uint64_t i = 1; i <= 10; i++) {
        test_msg_t m;
        const mw_schema_t *s;
        int r = mw_clt_recv_busywait_timeout(c, &s, &m, sizeof m, 5 * MW_NS_PER_S);
        if (r != 0) fail_msg("recv %llu: %s (%s)", (unsigned long long)i, mw_errname(r), mw_clt_last_error(c));
        assert_int_equal(m.ping.seq, i);
        assert_int_equal(mw_clt_rx_seq(c), i);
        unsigned fl = mw_clt_rx_flags(c);
        if (i < 5) assert_int_equal(fl, 0);
        else if (i <= 6) assert_int_equal(fl, MW_SEQ_RESENT);
        else assert_true(fl == 0 || fl == MW_SEQ_RESENT); /* resent or live: how far the server got first */
    }
    svh_send_numbered(c, 11, 20);
    recv_pings(c, 11, 20, 0);
    mw_session_stats_t st;
    assert_int_equal(mw_clt_session_stats(c, &st), 0);
    assert_int_equal(st.gaps, 1);
    assert_int_equal(st.dups_dropped, 3);
    assert_int_equal(st.next_in, 21);
    assert_int_equal(mw_clt_logout(c, "done"), 0);
    svh_clt_drop(f, c);
    server_end(&sv, (const char *[]){"\"resend_requests\":1,", "\"test_answered\":77", "\"next_in\":21,",
                                     "\"next_out\":21,", NULL});
}

/* An ack that claims numbers the Clt never sent: the Clt logs out (code 2)
 * and connect fails naming both numbers. */
static void test_clt_refuses_an_ack_claiming_unsent_numbers(void **state) {
    require_peer();
    svh_t *f = *state;
    server_t sv;
    server_start(f, &sv, "--ack-claim 10");
    mw_clt_opts_t o;
    clt_opts(f, &o);
    mw_clt_t *c;
    mw_err_t err;
    assert_int_equal(mw_clt_connect(&c, f->url, &test_protocol, &o, &err), MW_ESESSION);
    if (!strstr(err.text, "the server expects 11 but we sent only up to 0")) fail_msg("%s", err.text);
    server_end(&sv, (const char *[]){"\"code\":2,", "the server expects 11 but we sent only up to 0", NULL});
}

static void test_clt_logon_refused_by_python_server(void **state) {
    require_peer();
    svh_t *f = *state;
    server_t sv;
    server_start(f, &sv, "--refuse 'no such trader'");
    mw_clt_opts_t o;
    clt_opts(f, &o);
    mw_clt_t *c;
    mw_err_t err;
    assert_int_equal(mw_clt_connect(&c, f->url, &test_protocol, &o, &err), MW_ESESSION);
    if (!strstr(err.text, "no such trader")) fail_msg("%s", err.text);
    server_end(&sv, (const char *[]){"\"rejected\":\"no such trader\"", NULL});
}

/* ---- hostile clients ---------------------------------------------------------------- */

/* Runs hostile case `name`; the Svc must close that one connection with
 * reason and a text containing text; frags: the peer's summary. */
static void hostile(svh_t *f, const char *name, const char *opts, int reason, const char *text,
                    const char *const *frags) {
    require_peer();
    svc_start(f);
    char args[256];
    snprintf(args, sizeof args, "hostile %s %d %s %s", f->serdes, f->port, name, opts);
    char *out = peer_run(args);
    expect_summary(out, frags);
    free(out);
    wait_closes(f, 1);
    assert_int_equal(atomic_load(&f->nclosed), 1);
    int got = atomic_load(&f->last_reason);
    pthread_mutex_lock(&f->mu);
    char why[256];
    snprintf(why, sizeof why, "%s", f->last_close_text);
    pthread_mutex_unlock(&f->mu);
    if (getenv("PEER_DEBUG")) fprintf(stderr, "%s: %s \"%s\"\n", name, mw_errname(got), why);
    if (got != reason || !strstr(why, text))
        fail_msg("%s: the Svc closed with %s \"%s\", want %s \"...%s...\"", name, mw_errname(got), why,
                 mw_errname(reason), text);
}

/* mw_seq{next=E+5} and a ping: a gap. The Svc asks for E on (once), drops
 * the ping, counts the gap; the numbers then start again at E. */
static void test_gap_brings_a_resend_request(void **state) {
    svh_t *f = *state;
    hostile(f, "gap", "--session G1", MW_ECLOSED, "",
            (const char *[]){"\"resend_request\":{\"type\":\"mw_resend_request\",\"from\":1,\"to\":0}",
                             "\"echo\":1", NULL});
    expect_svc_got(f, 0, 1, 1);
    mw_session_stats_t st;
    assert_int_equal(mw_svc_session_stats(f->svc, "G1", &st), 0);
    assert_int_equal(st.gaps, 1);
    assert_int_equal(st.next_in, 2);
    assert_int_equal(st.next_out, 2);
}

static void test_resend_request_flood_is_closed(void **state) {
    svh_t *f = *state;
    hostile(f, "flood", "--heartbeat-ms 5000", MW_ESESSION, "more than 8 resend requests within 5000 ms",
            (const char *[]){"\"code\":4,", "more than 8 resend requests", NULL});
    mw_session_stats_t st;
    assert_int_equal(mw_svc_session_stats(f->svc, "H1", &st), 0);
    assert_int_equal(st.resend_requests, 9);
}

static void test_silent_peer_is_tested_then_closed(void **state) {
    svh_t *f = *state;
    hostile(f, "silent", "--heartbeat-ms 100", MW_ETIMEDOUT, "peer silent",
            (const char *[]){"\"code\":3,", "peer silent", "\"mw_test_request\"", NULL});
}

static void test_logon_claiming_unsent_numbers_is_rejected(void **state) {
    svh_t *f = *state;
    hostile(f, "claim", "", MW_ESESSION, "logon rejected: you expect 50 but we sent only up to 0",
            (const char *[]){"\"code\":1,", "you expect 50 but we sent only up to 0", NULL});
}

static void test_bad_session_id_is_rejected(void **state) {
    svh_t *f = *state;
    hostile(f, "badid", "", MW_ESESSION, "logon rejected: bad session id \"../etc\"",
            (const char *[]){"\"code\":1,", "bad session id", NULL});
    /* nothing of it reached the file system */
    DIR *d = opendir(f->sdir);
    assert_non_null(d);
    struct dirent *e;
    int files = 0;
    while ((e = readdir(d))) files += e->d_name[0] != '.';
    closedir(d);
    assert_int_equal(files, 0);
}

static void test_app_message_before_logon_is_rejected(void **state) {
    svh_t *f = *state;
    hostile(f, "early", "", MW_ESESSION, "the first message must be mw_logon, not ping",
            (const char *[]){"\"code\":2,", "the first message must be mw_logon", NULL});
    pthread_mutex_lock(&f->mu);
    int n = f->nmsgs;
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(n, 0);
}

static void test_logon_ack_to_the_svc_is_rejected(void **state) {
    svh_t *f = *state;
    hostile(f, "ackfirst", "", MW_ESESSION, "the first message must be mw_logon, not mw_logon_ack",
            (const char *[]){"\"code\":2,", "the first message must be mw_logon", NULL});
}

static void test_second_logon_is_a_protocol_error(void **state) {
    svh_t *f = *state;
    hostile(f, "relogon", "", MW_ESESSION, "unexpected mw_logon",
            (const char *[]){"\"code\":2,", "unexpected mw_logon", NULL});
}

static void test_seq_zero_is_a_protocol_error(void **state) {
    svh_t *f = *state;
    hostile(f, "seq0", "", MW_ESESSION, "mw_seq with next 0", (const char *[]){"\"code\":2,", NULL});
}

static void test_resend_from_zero_is_a_protocol_error(void **state) {
    svh_t *f = *state;
    hostile(f, "resend0", "", MW_ESESSION, "resend from 0 asked for, but we sent only up to 0",
            (const char *[]){"\"code\":2,", NULL});
}

/* A reset logon that is refused leaves the session as it was: the next
 * logon resumes its numbers. */
static void test_refused_reset_logon_keeps_the_session(void **state) {
    svh_t *f = *state;
    require_peer();
    svc_start(f);
    client_run(f, "H1", "--count 10", (const char *[]){"\"next_in\":11,", NULL});
    wait_closes(f, 1);
    char args[256];
    snprintf(args, sizeof args, "hostile %s %d resetclaim", f->serdes, f->port);
    char *out = peer_run(args);
    expect_summary(out, (const char *[]){"\"code\":1,", "you expect 5 but we sent only up to 0", NULL});
    free(out);
    wait_closes(f, 2);
    assert_int_equal(atomic_load(&f->last_reason), MW_ESESSION);
    mw_session_stats_t st;
    assert_int_equal(mw_svc_session_stats(f->svc, "H1", &st), 0);
    assert_int_equal(st.epoch, 1);
    assert_int_equal(st.next_out, 11);
    client_run(f, "H1", "--count 5", (const char *[]){"\"sent_first\":11,", "\"first_in\":11,", "\"next_in\":16,", NULL});
    expect_svc_got(f, 10, 11, 15);
}

/* Each test over text and over fixed, under its own name. */
#define BOTH(t)                                                   \
    static void t##_text(void **state) { t(state); }              \
    static void t##_fixed(void **state) { t(state); }
#define BOTH_ENTRIES(t)                                           \
    cmocka_unit_test_setup_teardown(t##_text, setup_text, teardown), \
    cmocka_unit_test_setup_teardown(t##_fixed, setup_fixed, teardown)
#define ALL(X)                                          \
    X(test_svc_vs_python_client)                        \
    X(test_svc_pushes_and_resends_a_large_backlog)      \
    X(test_clt_vs_python_server)                        \
    X(test_clt_gap_and_duplicates_from_python_server)   \
    X(test_clt_refuses_an_ack_claiming_unsent_numbers)  \
    X(test_clt_logon_refused_by_python_server)          \
    X(test_gap_brings_a_resend_request)                 \
    X(test_resend_request_flood_is_closed)              \
    X(test_silent_peer_is_tested_then_closed)           \
    X(test_logon_claiming_unsent_numbers_is_rejected)   \
    X(test_bad_session_id_is_rejected)                  \
    X(test_app_message_before_logon_is_rejected)       \
    X(test_logon_ack_to_the_svc_is_rejected)            \
    X(test_second_logon_is_a_protocol_error)            \
    X(test_seq_zero_is_a_protocol_error)                \
    X(test_resend_from_zero_is_a_protocol_error)        \
    X(test_refused_reset_logon_keeps_the_session)
ALL(BOTH)
#define ENTRY(t) BOTH_ENTRIES(t),

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readme_wire_protocol_examples_are_exact),
        cmocka_unit_test_setup_teardown(test_journal_format_python_cuts_where_c_recovers, setup_fixed, teardown),
        ALL(ENTRY)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
