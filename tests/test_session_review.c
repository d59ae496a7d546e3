/* test_session_review.c - regressions found by an adversarial review of
 * sessions (issue 9): numbers that must not move when a send fails, a send
 * must not report failure for a message that is delivered later, a receive
 * into a too small buffer must not lose the message, a gap whose resend
 * request could not be written must not stall the session. Real sockets on
 * 127.0.0.1 (port 0), real journal files in a temporary directory (the
 * fixture: tests/util/svh_session.h). */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "journal_impl.h"
#include "mw_clt.h"
#include "mw_svc.h"
#include "mw_test.h"
#include "svh_session.h"
#include "test_proto.h"

#define WAIT_MS SVH_SESSION_WAIT_MS

/* What a test changes before it starts the Svc and connects. */
static uint32_t svc_tx_buf; /* > 0: the Svc's send queue (small beside the socket's buffers) */
static bool clt_journal_in; /* the Clt journals what it receives */
static int64_t clt_hb_ns;   /* > 0: the Clt's session.heartbeat_ns (the Svc takes it) */

static int setup(void **state) {
    svc_tx_buf = 0;
    clt_journal_in = false;
    clt_hb_ns = 0;
    return svh_session_setup(state);
}

static int teardown(void **state) { return svh_teardown(state); }

static void svc_start_at(svh_t *f, int port) {
    mw_svc_opts_t o;
    svh_session_svc_opts(f, &o);
    if (svc_tx_buf) o.conn.tx_buf = svc_tx_buf;
    o.linger_ns = 200 * MW_NS_PER_MS;
    svh_start(f, "tcp", port, &o);
}

static void svc_start(svh_t *f) { svc_start_at(f, 0); }

static mw_clt_t *clt_connect(svh_t *f, const char *id) {
    mw_clt_opts_t o;
    svh_session_clt_opts(f, &o, MW_MODE_SPIN, id);
    o.sync.timeout_ns = 5 * MW_NS_PER_S;
    o.session.journal_in = clt_journal_in;
    if (clt_hb_ns) o.session.heartbeat_ns = clt_hb_ns;
    return svh_clt_connect(f, &o);
}

/* ---- 1. a message the connection's serdes cannot encode ------------------------------
 * The journal keeps the fixed encoding, which takes a NaN; the text serdes
 * refuses it (JSON has no NaN). Before the fix the number was used up by the
 * journal but nothing went on the wire, so the peer, which counts messages,
 * gave the next message that number: every later message was off by one, and
 * after a reconnect the peer got one of them a second time. */
static void test_review_unencodable_send_keeps_numbers_in_step(void **state) {
    svh_t *f = *state;
    f->serdes = "text";
    svc_start(f);
    mw_clt_t *c = clt_connect(f, "R1");
    uint64_t seq = 0;
    assert_int_equal(svh_send_ping_seq(c, 1, &seq), 0);
    assert_int_equal(seq, 1);
    all_kinds_t bad = {.f64 = NAN};
    uint64_t bseq = 0;
    int r = mw_clt_send_seq(c, all_kinds_schema(), &bad, &bseq);
    assert_true(r < 0); /* the wire cannot carry it: an error, and no number */
    assert_int_equal(svh_send_ping_seq(c, 2, &seq), 0);
    assert_int_equal(seq, 2); /* was 3: the refused message had taken 2 */
    assert_true(svh_wait_msgs(f, 2, WAIT_MS));
    svh_clt_drop(f, c);
    /* a new process: its numbers must still agree with the Svc's */
    c = clt_connect(f, "R1");
    assert_int_equal(svh_send_ping_seq(c, 3, &seq), 0);
    assert_int_equal(seq, 3);
    assert_true(svh_wait_msgs(f, 3, WAIT_MS));
    assert_true(svh_session_next_in_is(f, "R1", 4, NULL, WAIT_MS));
    pthread_mutex_lock(&f->mu);
    int n = f->nmsgs;
    for (int i = 0; i < n && i < 3; i++) {
        assert_int_equal(f->msgs[i].seq, (uint64_t)i + 1); /* before the fix: 1, 2, 2 (ping 2 twice) */
        assert_int_equal(f->msgs[i].rx_seq, (uint64_t)i + 1);
    }
    pthread_mutex_unlock(&f->mu);
    assert_int_equal(n, 3);
    svh_clt_drop(f, c);
}

/* ---- 2. a send on a connection that just died -----------------------------------------
 * Every message is journaled before it is written. When the write then
 * failed (the peer had closed), send returned the I/O error although the
 * message stayed journaled and was delivered after the next logon: an
 * application that retries what failed sends it twice. The README says a
 * send while the connection is down returns 0 and the message goes out
 * after the next logon; an error must mean "not sent, no number". */
static void test_review_send_error_means_not_sent(void **state) {
    svh_t *f = *state;
    svc_start(f);
    mw_clt_t *c = clt_connect(f, "R2");
    uint64_t seq;
    assert_int_equal(svh_send_ping_seq(c, 1, &seq), 0);
    assert_true(svh_wait_msgs(f, 1, WAIT_MS));
    assert_true(svh_wait_count(&f->logons, 1, WAIT_MS));
    assert_int_equal(mw_svc_abort_conn(f->svc, atomic_load(&f->logon_conn)), 0);
    assert_true(svh_wait_count(&f->nclosed, 1, WAIT_MS));
    /* the client has not noticed: it keeps sending */
    enum { N = 60 };
    bool ok[N + 1] = {0};
    int errors = 0;
    for (uint64_t i = 2; i <= N; i++) {
        ping_t p = {.seq = i};
        int r = mw_clt_send(c, ping_schema(), &p);
        ok[i] = r == 0;
        errors += r != 0;
    }
    mw_session_stats_t st;
    assert_int_equal(mw_clt_session_stats(c, &st), 0);
    uint64_t out_next = st.next_out;
    svh_clt_drop(f, c);
    c = clt_connect(f, "R2"); /* resends what the Svc has not got */
    assert_true(svh_session_next_in_is(f, "R2", out_next, NULL, WAIT_MS));
    pthread_mutex_lock(&f->mu);
    int n = f->nmsgs;
    bool seen[N + 1] = {0};
    for (int i = 0; i < n; i++) {
        uint64_t p = f->msgs[i].seq;
        assert_true(p >= 1 && p <= N);
        assert_false(seen[p]);
        seen[p] = true;
    }
    pthread_mutex_unlock(&f->mu);
    for (int i = 2; i <= N; i++)
        if (seen[i] != ok[i])
            fail_msg("ping %d: send returned %s but it was %sdelivered (%d sends failed)", i, ok[i] ? "0" : "an error",
                     seen[i] ? "" : "not ", errors);
    svh_clt_drop(f, c);
}

/* ---- 3. recv into a buffer too small for the message -----------------------------------
 * mw_clt_recv returned MW_ETOOBIG but left the message counted as being
 * handled, so the next recv committed it: a number the application never
 * got, lost for good (the Svc side gives it back to the session). */
static int recv_one(mw_clt_t *c, test_msg_t *m, size_t cap, const mw_schema_t **s) {
    int r = MW_EAGAIN;
    for (int i = 0; i < 2000000 && (r = mw_clt_recv(c, s, m, cap)) == MW_EAGAIN; i++) {}
    return r;
}

static void test_review_recv_too_small_loses_nothing(void **state) {
    svh_t *f = *state;
    svc_start(f);
    mw_clt_t *c = clt_connect(f, "R3");
    all_kinds_t big = {.i64 = 42, .sym = "BIG"};
    ping_t p = {.seq = 7};
    uint64_t s1 = 0, s2 = 0;
    assert_int_equal(mw_svc_session_send(f->svc, "R3", all_kinds_schema(), &big, &s1), 0);
    test_msg_t m;
    const mw_schema_t *sch;
    assert_int_equal(recv_one(c, &m, sizeof(ping_t), &sch), MW_ETOOBIG);
    assert_int_equal(mw_svc_session_send(f->svc, "R3", ping_schema(), &p, &s2), 0);
    assert_int_equal(s1, 1);
    assert_int_equal(s2, 2);
    int r = recv_one(c, &m, sizeof m, &sch);
    if (r != 0) fail_msg("recv: %s (%s)", mw_errname(r), mw_clt_last_error(c));
    assert_int_equal(sch->tag, all_kinds_TAG); /* before the fix: the ping, number 2; number 1 lost */
    assert_int_equal(mw_clt_rx_seq(c), 1);
    assert_int_equal(m.all_kinds.i64, 42);
    assert_int_equal(recv_one(c, &m, sizeof m, &sch), 0);
    assert_int_equal(sch->tag, ping_TAG);
    assert_int_equal(mw_clt_rx_seq(c), 2);
    svh_clt_drop(f, c);
}

/* ---- the journal's take-back of its last record (used by 1.) ----------------------- */
static void test_review_journal_drop_last(void **state) {
    svh_t *f = *state;
    mw__jnl_opts_t jo = {.dir = f->cdir, .session = "J1", .fsync = MW__JNL_FSYNC_ALWAYS};
    mw__jnl_t *j;
    mw_err_t err;
    assert_int_equal(mw__jnl_open(&j, &jo, &err), 0);
    uint8_t pl[40];
    for (uint64_t i = 1; i <= 257; i++) { /* 257: the sparse index's second entry */
        memset(pl, (int)i, sizeof pl);
        assert_int_equal(mw__jnl_append(j, MW__JNL_OUT, i, pl, sizeof pl), 0);
    }
    assert_int_equal(mw__jnl_drop_last(j, 256), MW_EINVAL); /* not the last one */
    assert_int_equal(mw__jnl_drop_last(j, 257), 0);
    assert_int_equal(mw__jnl_out_next(j), 257);
    assert_int_equal(mw__jnl_drop_last(j, 256), MW_EINVAL); /* one take-back only */
    memset(pl, 0xAB, sizeof pl);
    assert_int_equal(mw__jnl_append(j, MW__JNL_OUT, 257, pl, 7), 0);
    assert_int_equal(mw__jnl_append(j, MW__JNL_OUT, 258, pl, 9), 0);
    assert_int_equal(mw__jnl_drop_last(j, 258), 0);
    mw__jnl_close(j);
    assert_int_equal(mw__jnl_open(&j, &jo, &err), 0);
    assert_int_equal(mw__jnl_recovered(j), -1); /* nothing to cut: the file was clean */
    assert_int_equal(mw__jnl_out_next(j), 258);
    mw__jnl_cur_t cur;
    assert_int_equal(mw__jnl_seek(j, 257, &cur), 0);
    uint64_t seq;
    const uint8_t *p;
    uint32_t len;
    assert_int_equal(mw__jnl_next(j, &cur, &seq, &p, &len), 0);
    assert_int_equal(seq, 257);
    assert_int_equal(len, 7);
    assert_int_equal(p[0], 0xAB);
    assert_int_equal(mw__jnl_next(j, &cur, &seq, &p, &len), MW_EAGAIN);
    mw__jnl_close(j);
}

/* ---- 6. journal_in: a number delivered again is journaled once -----------------------
 * With journal_in every received message was appended before it was handed
 * over, also when the same number came again (it had not been handed over,
 * or the handler died with it): mw_session_replay, meant for rebuilding the
 * application's state, gave that message twice. */
typedef struct ins { uint64_t seq[16]; int n; } ins_t;
static bool collect_in(void *ud, int dir, uint64_t seq, const mw_schema_t *s, const void *msg) {
    (void)s, (void)msg;
    ins_t *in = ud;
    if (dir == MW_SESSION_IN && in->n < 16) in->seq[in->n++] = seq;
    return true;
}

static void test_review_journal_in_once_per_number(void **state) {
    svh_t *f = *state;
    clt_journal_in = true;
    svc_start(f);
    mw_clt_t *c = clt_connect(f, "R6");
    all_kinds_t big = {.i64 = 42};
    ping_t p = {.seq = 7};
    assert_int_equal(mw_svc_session_send(f->svc, "R6", all_kinds_schema(), &big, NULL), 0);
    test_msg_t m;
    const mw_schema_t *sch;
    assert_int_equal(recv_one(c, &m, sizeof(ping_t), &sch), MW_ETOOBIG); /* not handed over */
    assert_int_equal(mw_svc_session_send(f->svc, "R6", ping_schema(), &p, NULL), 0);
    assert_int_equal(recv_one(c, &m, sizeof m, &sch), 0); /* 1 again, resent */
    assert_int_equal(mw_clt_rx_seq(c), 1);
    assert_int_equal(recv_one(c, &m, sizeof m, &sch), 0);
    assert_int_equal(mw_clt_rx_seq(c), 2);
    svh_clt_drop(f, c);
    ins_t in = {0};
    mw_err_t err;
    assert_int_equal(mw_session_replay(f->cdir, "R6", &test_protocol, collect_in, &in, &err), 0);
    if (in.n != 2 || in.seq[0] != 1 || in.seq[1] != 2)
        fail_msg("replay gave %d inbound records (%llu %llu %llu), want 1 and 2 once each", in.n,
                 (unsigned long long)in.seq[0], (unsigned long long)in.seq[1], (unsigned long long)in.seq[2]);
}

/* ---- 7. a gap whose resend request does not fit --------------------------------------------
 * A receiver that sees a gap sends mw_resend_request once and then drops
 * application messages until the resend begins. When its send queue was
 * full the request was not written, but it waited all the same: nothing
 * was ever delivered on that connection again (until it dropped). A
 * hand-made peer (a plain Clt that speaks the protocol) plays the client. */
static mw_protocol_t raw_proto(void) {
    mw_protocol_t p = test_protocol;
    p.ext = &mw_session_protocol;
    if (p.max_size < mw_session_protocol.max_size) p.max_size = mw_session_protocol.max_size;
    if (p.max_fixed_size < mw_session_protocol.max_fixed_size) p.max_fixed_size = mw_session_protocol.max_fixed_size;
    return p;
}

/* Reads until a message with tag arrives (others are counted), or the deadline. */
static int raw_until(mw_clt_t *c, unsigned tag, uint64_t *others, int ms) {
    _Alignas(16) uint8_t buf[1024];
    const mw_schema_t *sch;
    uint64_t dl = mw_now_ns() + (uint64_t)ms * MW_NS_PER_MS;
    while (mw_now_ns() < dl) {
        int r = mw_clt_recv(c, &sch, buf, sizeof buf);
        if (r == MW_EAGAIN) continue;
        if (r != 0) return r;
        if (sch->tag == tag) return 0;
        if (others) (*others)++;
    }
    return MW_ETIMEDOUT;
}

typedef struct gaps { svh_t *f; const char *id; } gaps_t;
static bool svc_saw_gap(void *ud) {
    gaps_t *g = ud;
    mw_session_stats_t st;
    return mw_svc_session_stats(g->f->svc, g->id, &st) == 0 && st.gaps >= 1;
}

static void test_review_gap_request_that_did_not_fit_is_asked_again(void **state) {
    svh_t *f = *state;
    svc_tx_buf = 70000;
    svc_start(f);
    mw_protocol_t px = raw_proto();
    mw_clt_opts_t o;
    mw_clt_opts_init(&o);
    o.mode = MW_MODE_SPIN;
    mw_clt_t *c;
    mw_err_t err;
    assert_int_equal(mw_clt_connect(&c, f->url, &px, &o, &err), 0);
    mw_logon_t lg = {.session = "G1", .next_in = 1, .next_out = 1, .heartbeat_ms = 600000};
    assert_int_equal(mw_clt_send(c, mw_logon_schema(), &lg), 0);
    assert_int_equal(raw_until(c, mw_logon_ack_TAG, NULL, WAIT_MS), 0);
    /* the Svc's queue to us fills up: we do not read */
    int r = 0;
    uint64_t sent = 0;
    for (uint64_t i = 1; i <= 1000000 && (r = mw_svc_session_send(f->svc, "G1", ping_schema(),
                                                                   &(ping_t){.seq = i}, NULL)) == 0; i++)
        sent++;
    assert_int_equal(r, MW_EAGAIN);
    /* a gap: we say our next message is number 5, the Svc expects 1 */
    assert_int_equal(mw_clt_send(c, mw_seq_schema(), &(mw_seq_t){.next = 5}), 0);
    assert_int_equal(mw_clt_send(c, ping_schema(), &(ping_t){.seq = 5}), 0);
    gaps_t g = {f, "G1"};
    assert_true(mw_wait_until(svc_saw_gap, &g, WAIT_MS)); /* (its request did not fit) */
    /* we read all it sent; one more message of ours: now it must ask */
    uint64_t pings = 0;
    int rq = 0;
    _Alignas(16) uint8_t buf[1024];
    const mw_schema_t *sch;
    uint64_t dl = mw_now_ns() + 20 * MW_NS_PER_S;
    while (pings < sent && mw_now_ns() < dl) {
        r = mw_clt_recv(c, &sch, buf, sizeof buf);
        if (r == MW_EAGAIN) continue;
        assert_int_equal(r, 0);
        pings += sch->tag == ping_TAG;
        rq += sch->tag == mw_resend_request_TAG;
    }
    if (pings != sent) {
        mw_session_stats_t st;
        mw_svc_session_stats(f->svc, "G1", &st);
        fail_msg("got %llu of %llu pings; Svc: next_out %llu logged_on %d gaps %llu resent %llu", (unsigned long long)pings,
                 (unsigned long long)sent, (unsigned long long)st.next_out, st.logged_on, (unsigned long long)st.gaps,
                 (unsigned long long)st.resent);
    }
    assert_int_equal(mw_clt_send(c, ping_schema(), &(ping_t){.seq = 6}), 0);
    if (!rq) {
        r = raw_until(c, mw_resend_request_TAG, NULL, 3000);
        if (r != 0) fail_msg("no mw_resend_request from the Svc after the gap (%s)", mw_errname(r));
    }
    svh_clt_drop(f, c);
}

/* ---- 8. a backlog that starts mid-session ------------------------------------------------
 * When a send finds the socket full, the message and those after it wait in
 * the journal and are written from there, 256 per pump. The pumps came from
 * on_drain (only when a batch filled the queue) and from the session's
 * timer, still armed for heartbeat/4: with the queue never full again, the
 * rest waited a quarter heartbeat per 256 messages (here 15 s). */
static void test_review_backlog_drains_without_waiting_for_the_timer(void **state) {
    svh_t *f = *state;
    svc_tx_buf = 70000;
    clt_hb_ns = 60 * MW_NS_PER_S;
    svc_start(f);
    mw_clt_t *c = clt_connect(f, "B1");
    int r = 0;
    uint64_t sent = 0;
    for (uint64_t i = 1; i <= 1000000 && (r = mw_svc_session_send(f->svc, "B1", ping_schema(),
                                                                   &(ping_t){.seq = i}, NULL)) == 0; i++)
        sent++;
    assert_int_equal(r, MW_EAGAIN); /* the backlog is full: the client did not read */
    uint64_t next = 1;
    test_msg_t m;
    const mw_schema_t *sch;
    uint64_t dl = mw_now_ns() + 5 * MW_NS_PER_S; /* a third of the timer's period */
    while (next <= sent && mw_now_ns() < dl) {
        r = mw_clt_recv(c, &sch, &m, sizeof m);
        if (r == MW_EAGAIN) continue;
        assert_int_equal(r, 0);
        assert_int_equal(m.ping.seq, next);
        next++;
    }
    if (next <= sent)
        fail_msg("%llu of %llu messages arrived within 5 s; the rest waits for the session's timer",
                 (unsigned long long)next - 1, (unsigned long long)sent);
    svh_clt_drop(f, c);
}

/* ---- 4. reset, and messages sent before the logon -------------------------------------
 * An event Clt with session.reset rolled its journal over when its
 * connection came up (at the logon), so what the application had sent
 * between mw_clt_connect and that logon (accepted: send returned 0 and a
 * number) was thrown away with the old epoch: lost, and its numbers given
 * again to later messages. */
static void test_review_reset_keeps_what_was_sent_before_the_logon(void **state) {
    svh_t *f = *state;
    svc_start(f);
    mw_clt_t *c = clt_connect(f, "R4");
    uint64_t seq;
    for (uint64_t i = 1; i <= 5; i++) assert_int_equal(svh_send_ping_seq(c, i, &seq), 0);
    assert_true(svh_wait_msgs(f, 5, WAIT_MS));
    svh_clt_drop(f, c);
    int port = mw_svc_port(f->svc);
    svh_stop(f); /* the gateway is down for the night */
    svh_reset_msgs(f);
    /* a new trading day: reset; the client starts before the gateway */
    mw_clt_opts_t o;
    svh_session_clt_opts(f, &o, MW_MODE_EVENT, "R4");
    o.event.io = svh_clt_io(f);
    svh_clt_fast_reconnect(&o);
    o.session.reset = true;
    c = svh_clt_connect(f, &o);
    uint64_t seqs[3];
    for (int i = 0; i < 3; i++) {
        ping_t p = {.seq = 101 + (uint64_t)i};
        assert_int_equal(mw_clt_send_seq(c, ping_schema(), &p, &seqs[i]), 0);
    }
    svc_start_at(f, port);
    bool arrived = svh_session_next_in_is(f, "R4", 4, NULL, 3000); /* the new epoch: 1..3 */
    mw_session_stats_t st;
    mw_svc_session_stats(f->svc, "R4", &st);
    if (!arrived)
        fail_msg("the 3 messages sent before the logon (numbers %llu %llu %llu) never arrived: Svc next_in %llu, epoch %llu",
                 (unsigned long long)seqs[0], (unsigned long long)seqs[1], (unsigned long long)seqs[2],
                 (unsigned long long)st.next_in, (unsigned long long)st.epoch);
    assert_int_equal(st.epoch, 2);
    pthread_mutex_lock(&f->mu);
    assert_int_equal(f->nmsgs, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(f->msgs[i].seq, 101 + (uint64_t)i);
        assert_int_equal(f->msgs[i].rx_seq, (uint64_t)i + 1);
        assert_int_equal(seqs[i], (uint64_t)i + 1); /* the numbers send gave are the ones used */
    }
    pthread_mutex_unlock(&f->mu);
}

/* ---- 5. the session's timer pump and on_drain --------------------------------------------
 * The session's timer pumps with the session's mutex held; when its flush
 * finds want_drain set, it kicks the driver, which (on the io thread,
 * outside any driver callback) checks for drain and runs on_drain at once:
 * the Svc's on_drain pumps the session again and locks the same mutex. The
 * worker hung for good, and with it every thread sending to that session.
 * The plain way there: a client comes back to a long backlog (resent in
 * batches on the timer), and the application's send_to meanwhile gets
 * MW_EAGAIN (backlog full), which sets want_drain while the socket is empty.
 * Run in a child process: a hang is seen by the parent, which kills it. */
typedef struct sess_down { svh_t *f; const char *id; } sess_down_t;
static bool svc_session_down(void *ud) {
    sess_down_t *w = ud;
    mw_session_stats_t st;
    return mw_svc_session_stats(w->f->svc, w->id, &st) == 0 && !st.logged_on;
}

static void drain_child(svh_t *f, const char *id) {
    alarm(60); /* a hung child ends by itself, whatever happens to the parent */
    svc_start(f);
    mw_clt_t *c = clt_connect(f, id);
    svh_clt_drop(f, c); /* away: what follows is journaled for it */
    sess_down_t sd = {f, id};
    if (!mw_wait_until(svc_session_down, &sd, WAIT_MS)) _exit(9);
    enum { N = 30000 };
    for (uint64_t i = 1; i <= N; i++) {
        ping_t p = {.seq = i};
        if (mw_svc_session_send(f->svc, id, ping_schema(), &p, NULL) != 0) _exit(10);
    }
    int logons = atomic_load(&f->logons);
    c = clt_connect(f, id); /* back: the Svc resends 1..N in batches */
    if (!svh_wait_count(&f->logons, logons + 1, WAIT_MS)) _exit(11);
    ping_t p = {.seq = N + 1};
    int r = mw_svc_send_to(f->svc, atomic_load(&f->logon_conn), ping_schema(), &p);
    if (r != MW_EAGAIN && r != 0) _exit(12);
    bool backlog_full = r == MW_EAGAIN;
    uint64_t next = 1;
    test_msg_t m;
    const mw_schema_t *sch;
    uint64_t dl = mw_now_ns() + 20 * MW_NS_PER_S;
    while (next <= N && mw_now_ns() < dl) {
        int x = mw_clt_recv(c, &sch, &m, sizeof m);
        if (x == MW_EAGAIN) continue;
        if (x != 0) {
            fprintf(stderr, "child: recv after %llu of %d: %s (%s)\n", (unsigned long long)next - 1, N,
                    mw_errname(x), mw_clt_last_error(c));
            _exit(14);
        }
        if (m.ping.seq != next++) {
            fprintf(stderr, "child: got %llu (number %llu, flags %u), expected %llu\n",
                    (unsigned long long)m.ping.seq, (unsigned long long)mw_clt_rx_seq(c), mw_clt_rx_flags(c),
                    (unsigned long long)next - 1);
            _exit(15);
        }
    }
    if (next != N + 1) {
        fprintf(stderr, "child: %llu of %d resent messages arrived\n", (unsigned long long)next - 1, N);
        _exit(16);
    }
    (void)backlog_full; /* (always, before the fix: the resend went 256 per 1 ms timer tick) */
    svh_clt_drop(f, c);
    svh_stop(f);
    _exit(0);
}

typedef struct child { pid_t pid; int status; } child_t;
static bool child_done(void *ud) {
    child_t *ch = ud;
    return waitpid(ch->pid, &ch->status, WNOHANG) == ch->pid;
}

static void test_review_timer_pump_does_not_deadlock_on_drain(void **state) {
    svh_t *f = *state;
    for (int round = 0; round < 3; round++) {
        fflush(NULL);
        char id[16];
        snprintf(id, sizeof id, "D%d", round);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) drain_child(f, id);
        child_t ch = {pid, 0};
        bool done = mw_wait_until(child_done, &ch, 30000);
        if (!done) {
            kill(pid, SIGKILL);
            waitpid(pid, &ch.status, 0);
            fail_msg("round %d: the child hung (its worker deadlocked on the session's mutex)", round);
        }
        if (!WIFEXITED(ch.status) || WEXITSTATUS(ch.status) != 0)
            fail_msg("round %d: the child ended with %s %d", round, WIFEXITED(ch.status) ? "exit" : "signal",
                     WIFEXITED(ch.status) ? WEXITSTATUS(ch.status) : WTERMSIG(ch.status));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_review_unencodable_send_keeps_numbers_in_step, setup, teardown),
        cmocka_unit_test_setup_teardown(test_review_send_error_means_not_sent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_review_recv_too_small_loses_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_review_journal_drop_last, setup, teardown),
        cmocka_unit_test_setup_teardown(test_review_journal_in_once_per_number, setup, teardown),
        cmocka_unit_test_setup_teardown(test_review_gap_request_that_did_not_fit_is_asked_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_review_backlog_drains_without_waiting_for_the_timer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_review_reset_keeps_what_was_sent_before_the_logon, setup, teardown),
        cmocka_unit_test_setup_teardown(test_review_timer_pump_does_not_deadlock_on_drain, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
