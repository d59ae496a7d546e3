/* test_session.c - recoverable sequenced sessions between a Clt and a Svc:
 * numbering, resend after a lost connection, restart of either side from
 * its journal, logon rules, heartbeats and a silent peer, gaps and resend
 * requests from a hand-made peer, resend floods, and the event Clt that
 * keeps sending while disconnected. Real sockets on 127.0.0.1, real journal
 * files in a temporary directory (the fixture: tests/util/svh_session.h). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mw_clt.h"
#include "mw_svc.h"
#include "mw_test.h"
#include "svh_session.h"
#include "test_proto.h"

#define WAIT_MS SVH_SESSION_WAIT_MS

typedef struct cfg {
    const char *scheme;   /* tcp tls ws wss */
    const char *serdes;   /* NULL: default */
    mw_mode_t svc_mode;   /* event (default) or spin/blocking: a thread runs recv */
    const char *backend;  /* event workers' selector */
    bool batch;           /* spin/blocking: the thread runs mw_svc_recv_batch */
} cfg_t;
static cfg_t cfg_tcp = {"tcp", NULL, MW_MODE_EVENT, NULL};
static const cfg_t *cur = &cfg_tcp; /* the configuration of the test running now */

/* What the Svc's application does with a ping, besides recording it. */
static bool echo;          /* answers every ping with a ping of the same seq */
static uint64_t switch_at; /* after answering this ping, the Svc switches the connection to fixed */

static int setup(void **state) {
    echo = true;
    switch_at = 0;
    return svh_session_setup(state);
}

static int teardown(void **state) {
    cur = &cfg_tcp;
    return svh_teardown(state);
}

/* ---- the Svc -------------------------------------------------------------------- */

static void on_ping(svh_t *f, mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg) {
    (void)f;
    if (sch->tag != ping_TAG) return;
    const ping_t *p = msg;
    if (echo) {
        ping_t r = {.seq = p->seq};
        mw_svc_send_to(s, id, ping_schema(), &r);
    }
    if (switch_at && p->seq == switch_at) /* the answer went out in text: fixed from here */
        mw_svc_set_serdes(s, id, MW_DIR_TX | MW_DIR_RX, "fixed");
}

static void svc_start_at(svh_t *f, int port) {
    mw_svc_opts_t o;
    f->mode = cur->svc_mode;
    f->serdes = cur->serdes;
    svh_session_svc_opts(f, &o);
    f->on_msg = on_ping;
    f->recv_batch = cur->batch;
    if (cur->backend && o.mode == MW_MODE_EVENT) o.event.backend = cur->backend;
    o.sync.timeout_ns = 20 * MW_NS_PER_MS; /* a blocking Svc's thread checks for its stop */
    bool tls = !strcmp(cur->scheme, "tls") || !strcmp(cur->scheme, "wss");
    if (tls) {
        o.tr.tls.cert_file = mw_test_cert("srv.pem");
        o.tr.tls.key_file = mw_test_cert("srv.key");
    }
    o.linger_ns = 200 * MW_NS_PER_MS;
    o.session.on_logon = svh_session_on_logon;
    o.session.journal_in = true;
    o.session.logon_timeout_ns = 2 * MW_NS_PER_S; /* how long a second logon waits for the first */
    svh_start(f, cur->scheme, port, &o);
}

static void svc_start(svh_t *f, int unused) {
    (void)unused;
    svc_start_at(f, 0);
}

static void clt_opts(svh_t *f, mw_clt_opts_t *o, mw_mode_t mode, const char *id) {
    svh_session_clt_opts(f, o, mode, id);
    o->sync.timeout_ns = 5 * MW_NS_PER_S;
    o->session.user = "alice";
    o->session.journal_in = true;
    if (cur->serdes) o->conn.serdes = cur->serdes;
    if (!strcmp(cur->scheme, "tls") || !strcmp(cur->scheme, "wss")) o->tr.tls.ca_file = mw_test_cert("ca.pem");
}

/* A Clt the fixture frees (svh_clt_drop frees it before). */
static mw_clt_t *clt_connect(svh_t *f, mw_mode_t mode, const char *id) {
    mw_clt_opts_t o;
    clt_opts(f, &o, mode, id);
    return svh_clt_connect(f, &o);
}

/* The Svc got session numbers 1..n, each once, in order, with payload == number. */
static void expect_numbers(svh_t *f, int n) { svh_expect_numbered(f, 0, 1, (uint64_t)n, 0); }

/* Receives pings first..last, each with its session number == its payload. */
static void recv_pings(mw_clt_t *c, uint64_t first, uint64_t last, unsigned want_flags) {
    svh_recv_numbered(c, first, last, want_flags, MW_SEQ_RESENT);
}

/* ---- numbering, reconnect, restart ------------------------------------------------------ */

static void numbered_round_trip(svh_t *f, mw_mode_t mode) {
    svc_start(f, 0);
    mw_clt_t *c = clt_connect(f, mode, "T1");
    svh_send_numbered(c, 1, 200);
    recv_pings(c, 1, 200, 0);
    expect_numbers(f, 200);
    mw_session_stats_t st;
    assert_int_equal(mw_clt_session_stats(c, &st), 0);
    assert_int_equal(st.next_out, 201);
    assert_int_equal(st.next_in, 201);
    assert_true(st.logged_on);
    assert_int_equal(mw_svc_session_stats(f->svc, "T1", &st), 0);
    assert_int_equal(st.next_in, 201);
    assert_int_equal(st.next_out, 201);
    /* a new Clt (a restarted process) resumes: numbers go on, nothing again */
    svh_clt_drop(f, c);
    c = clt_connect(f, mode, "T1");
    svh_send_numbered(c, 201, 300);
    recv_pings(c, 201, 300, 0);
    expect_numbers(f, 300);
    assert_int_equal(atomic_load(&f->logons), 2);
    assert_int_equal(mw_clt_logout(c, "done for today"), 0);
    assert_false(mw_clt_is_open(c));
    svh_clt_drop(f, c);
}

static void test_session_numbers_and_resume_spin(void **state) { numbered_round_trip(*state, MW_MODE_SPIN); }
static void test_session_numbers_and_resume_blocking(void **state) { numbered_round_trip(*state, MW_MODE_BLOCKING); }

/* Replies the client never read (its connection went away) come again at
 * the next logon, flagged resent, before anything new; nothing twice. */
static void test_session_resends_what_the_client_missed(void **state) {
    svh_t *f = *state;
    svc_start(f, 0);
    mw_clt_t *c = clt_connect(f, MW_MODE_SPIN, "T2");
    svh_send_numbered(c, 1, 100);
    recv_pings(c, 1, 40, 0); /* 41..100 are sent but never read */
    expect_numbers(f, 100);
    svh_clt_drop(f, c);
    c = clt_connect(f, MW_MODE_SPIN, "T2");
    recv_pings(c, 41, 100, MW_SEQ_RESENT);
    svh_send_numbered(c, 101, 110);
    recv_pings(c, 101, 110, 0); /* new ones: not flagged */
    expect_numbers(f, 110);
    mw_session_stats_t st;
    assert_int_equal(mw_svc_session_stats(f->svc, "T2", &st), 0);
    assert_int_equal(st.resent, 60);
    svh_clt_drop(f, c);
}

/* The Svc restarts from its journal: its numbers go on, and what it had
 * journaled but the client had not read is resent. */
static void test_session_svc_restart_resumes_from_its_journal(void **state) {
    svh_t *f = *state;
    svc_start(f, 0);
    mw_clt_t *c = clt_connect(f, MW_MODE_SPIN, "T3");
    svh_send_numbered(c, 1, 50);
    recv_pings(c, 1, 20, 0);
    expect_numbers(f, 50);
    svh_clt_drop(f, c);
    svh_stop(f);
    svc_start(f, 0); /* a new process, the same journal directory */
    c = clt_connect(f, MW_MODE_SPIN, "T3");
    recv_pings(c, 21, 50, MW_SEQ_RESENT);
    svh_send_numbered(c, 51, 60);
    recv_pings(c, 51, 60, 0);
    /* the new Svc delivered 51..60 only: 1..50 were handled before */
    assert_true(svh_wait_msgs(f, 60, WAIT_MS));
    pthread_mutex_lock(&f->mu);
    for (int i = 50; i < 60; i++) assert_int_equal(f->msgs[i].rx_seq, (uint64_t)i + 1);
    pthread_mutex_unlock(&f->mu);
    svh_clt_drop(f, c);
}

/* Messages the client journaled while its connection was down (event mode
 * with reconnect) go out after the next logon, in order, once. */
static atomic_int ev_connects;
static void ev_on_connect(mw_clt_t *c, void *ud) {
    (void)c;
    (void)ud;
    atomic_fetch_add(&ev_connects, 1);
}
static bool ev_connected_twice(void *ud) {
    (void)ud;
    return atomic_load(&ev_connects) >= 2;
}
static bool ev_connected_once(void *ud) {
    (void)ud;
    return atomic_load(&ev_connects) >= 1;
}

static void test_session_event_clt_journals_while_disconnected(void **state) {
    svh_t *f = *state;
    echo = false;
    svc_start(f, 0);
    mw_clt_opts_t o;
    clt_opts(f, &o, MW_MODE_EVENT, "T4");
    o.event.io = svh_clt_io(f);
    svh_clt_fast_reconnect(&o);
    o.event.on_connect = ev_on_connect;
    atomic_store(&ev_connects, 0);
    mw_clt_t *c = svh_clt_connect(f, &o);
    assert_true(mw_wait_until(ev_connected_once, NULL, WAIT_MS));
    for (uint64_t i = 1; i <= 50; i++) {
        ping_t p = {.seq = i};
        assert_int_equal(mw_clt_send(c, ping_schema(), &p), 0);
    }
    expect_numbers(f, 50);
    /* the Svc drops every connection: the Clt reconnects; what it sends
     * meanwhile is journaled and arrives after the logon */
    svh_stop(f);
    for (uint64_t i = 51; i <= 80; i++) {
        ping_t p = {.seq = i};
        int r = mw_clt_send(c, ping_schema(), &p);
        assert_int_equal(r, 0);
    }
    svh_reset_msgs(f);
    svc_start_at(f, f->port); /* the same port: the Clt reconnects by itself */
    assert_true(mw_wait_until(ev_connected_twice, NULL, WAIT_MS));
    assert_true(svh_wait_msgs(f, 30, WAIT_MS));
    pthread_mutex_lock(&f->mu);
    assert_int_equal(f->nmsgs, 30);
    for (int i = 0; i < 30; i++) {
        assert_int_equal(f->msgs[i].rx_seq, (uint64_t)i + 51);
        assert_int_equal(f->msgs[i].seq, (uint64_t)i + 51);
    }
    pthread_mutex_unlock(&f->mu);
}

/* ---- logon rules ------------------------------------------------------------------ */

static void test_session_logon_rejected_by_the_hook(void **state) {
    svh_t *f = *state;
    f->reject = "unknown trader";
    svc_start(f, 0);
    mw_clt_opts_t o;
    clt_opts(f, &o, MW_MODE_SPIN, "T5");
    o.session.user = "bad";
    mw_clt_t *c;
    mw_err_t err;
    assert_int_equal(mw_clt_connect(&c, f->url, &test_protocol, &o, &err), MW_ESESSION);
    assert_non_null(strstr(err.text, "unknown trader"));
    /* the Svc goes on: a good client logs on */
    o.session.user = "alice";
    assert_int_equal(mw_clt_connect(&c, f->url, &test_protocol, &o, &err), 0);
    svh_send_numbered(c, 1, 3);
    recv_pings(c, 1, 3, 0);
    svh_clt_drop(f, c);
}

/* A second logon to a session whose connection stays up is refused once
 * the Svc's wait (session.logon_timeout_ns, 2 s here) is over; the first
 * connection is not disturbed. */
static void test_session_second_logon_to_a_live_session_is_rejected(void **state) {
    svh_t *f = *state;
    svc_start(f, 0);
    mw_clt_t *c = clt_connect(f, MW_MODE_SPIN, "T6");
    mw_clt_opts_t o;
    clt_opts(f, &o, MW_MODE_SPIN, "T6");
    mw_clt_t *c2;
    mw_err_t err;
    /* a separate client journal dir so the Clt side opens cleanly */
    char d2[300];
    snprintf(d2, sizeof d2, "%s/clt2", f->dir);
    mkdir(d2, 0700);
    o.session.journal_dir = d2;
    assert_int_equal(mw_clt_connect(&c2, f->url, &test_protocol, &o, &err), MW_ESESSION);
    assert_non_null(strstr(err.text, "logged on from another connection"));
    svh_send_numbered(c, 1, 5);
    recv_pings(c, 1, 5, 0);
    svh_clt_drop(f, c);
}

/* A logon while the session's previous connection is still open waits for
 * it: once that one goes, the new one is in (a client restarting after a
 * crash races the Svc noticing the old connection's end). */
typedef struct late { svh_t *f; int rc; char text[256]; mw_clt_t *c; atomic_bool done; } late_t;
static void *late_logon(void *ud) {
    late_t *l = ud;
    mw_clt_opts_t o;
    clt_opts(l->f, &o, MW_MODE_SPIN, "T9");
    o.session.logon_timeout_ns = 5 * MW_NS_PER_S;
    mw_err_t err;
    l->rc = mw_clt_connect(&l->c, l->f->url, &test_protocol, &o, &err);
    snprintf(l->text, sizeof l->text, "%s", err.text);
    atomic_store(&l->done, true);
    return NULL;
}
static bool late_done(void *ud) { return atomic_load(&((late_t *)ud)->done); }

static void test_session_logon_waits_for_the_previous_connection(void **state) {
    svh_t *f = *state;
    svc_start(f, 0);
    mw_clt_opts_t o;
    clt_opts(f, &o, MW_MODE_SPIN, "T9");
    char d1[300];
    snprintf(d1, sizeof d1, "%s/clt1", f->dir);
    mkdir(d1, 0700);
    o.session.journal_dir = d1; /* the old client's journal (the new one has its own) */
    mw_clt_t *old;
    mw_err_t err;
    assert_int_equal(mw_clt_connect(&old, f->url, &test_protocol, &o, &err), 0);
    late_t l = {.f = f};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, late_logon, &l), 0);
    /* the new logon reached the Svc (its hook) and waits: the session is linked to old */
    assert_true(svh_wait_count(&f->hook_calls, 2, WAIT_MS));
    assert_false(atomic_load(&l.done));
    svh_clt_drop(f, old);
    bool ok = mw_wait_until(late_done, &l, WAIT_MS);
    pthread_join(th, NULL);
    assert_true(ok);
    if (l.rc != 0) fail_msg("late logon: %s", l.text);
    svh_send_numbered(l.c, 1, 3);
    recv_pings(l.c, 1, 3, 0);
    svh_clt_drop(f, l.c);
}

/* A client whose journal claims replies the Svc never sent is refused with
 * both numbers named. */
static void test_session_peer_claiming_unsent_numbers_is_rejected(void **state) {
    svh_t *f = *state;
    svc_start(f, 0);
    mw_clt_t *c = clt_connect(f, MW_MODE_SPIN, "T7");
    svh_send_numbered(c, 1, 10);
    recv_pings(c, 1, 10, 0);
    svh_clt_drop(f, c);
    /* a fresh Svc journal directory: it has sent nothing in session T7 */
    svh_stop(f);
    mw_tmpdir_remove(f->sdir);
    mkdir(f->sdir, 0700);
    svc_start(f, 0);
    mw_clt_opts_t o;
    clt_opts(f, &o, MW_MODE_SPIN, "T7");
    mw_err_t err;
    assert_int_equal(mw_clt_connect(&c, f->url, &test_protocol, &o, &err), MW_ESESSION);
    assert_non_null(strstr(err.text, "you expect 11 but we sent only up to 0"));
}

/* One owner per journal: a second Clt of the same session in the same
 * directory (or a second process) is refused, not allowed to interleave. */
static void test_session_journal_has_one_owner(void **state) {
    svh_t *f = *state;
    svc_start(f, 0);
    mw_clt_t *c = clt_connect(f, MW_MODE_SPIN, "J1");
    mw_clt_opts_t o;
    clt_opts(f, &o, MW_MODE_SPIN, "J1");
    mw_clt_t *c2;
    mw_err_t err;
    assert_int_equal(mw_clt_connect(&c2, f->url, &test_protocol, &o, &err), MW_ESYS);
    assert_non_null(strstr(err.text, "is open elsewhere"));
    svh_clt_drop(f, c);
    assert_int_equal(mw_clt_connect(&c2, f->url, &test_protocol, &o, &err), 0); /* free again */
    svh_clt_drop(f, c2);
}

/* A reset starts both directions at 1 again. */
static void test_session_reset_starts_numbering_again(void **state) {
    svh_t *f = *state;
    svc_start(f, 0);
    mw_clt_t *c = clt_connect(f, MW_MODE_SPIN, "T8");
    svh_send_numbered(c, 1, 10);
    recv_pings(c, 1, 10, 0);
    svh_clt_drop(f, c);
    mw_clt_opts_t o;
    clt_opts(f, &o, MW_MODE_SPIN, "T8");
    o.session.reset = true;
    mw_err_t err;
    assert_int_equal(mw_clt_connect(&c, f->url, &test_protocol, &o, &err), 0);
    mw_session_stats_t st;
    mw_clt_session_stats(c, &st);
    assert_int_equal(st.next_out, 1);
    assert_int_equal(st.epoch, 2);
    svh_reset_msgs(f);
    svh_send_numbered(c, 1, 5);
    recv_pings(c, 1, 5, 0);
    expect_numbers(f, 5);
    svh_clt_drop(f, c);
}

/* A plain client (no session) is closed at its first message. */
static void test_session_first_message_must_be_logon(void **state) {
    svh_t *f = *state;
    svc_start(f, 0);
    mw_clt_opts_t o;
    mw_clt_opts_init(&o);
    mw_clt_t *c;
    mw_err_t err;
    assert_int_equal(mw_clt_connect(&c, f->url, &test_protocol, &o, &err), 0);
    ping_t p = {.seq = 1};
    assert_int_equal(mw_clt_send(c, ping_schema(), &p), 0);
    assert_true(svh_wait_count(&f->nclosed, 1, WAIT_MS));
    assert_int_equal(atomic_load(&f->last_reason), MW_ESESSION);
    pthread_mutex_lock(&f->mu);
    assert_non_null(strstr(f->last_close_text, "the first message must be mw_logon"));
    pthread_mutex_unlock(&f->mu);
    /* the client is told why: a logout it can decode */
    test_msg_t m;
    const mw_schema_t *s;
    int r = mw_clt_recv_busywait_timeout(c, &s, &m, sizeof m, 5 * MW_NS_PER_S);
    assert_true(r == MW_ETAG || r == MW_ECLOSED); /* mw_logout is not in its protocol */
    svh_clt_drop(f, c);
    assert_int_equal(svh_nmsgs(f), 0);
}

/* ---- a client killed with SIGKILL resumes from its journal -------------------------------- */

/* The child: a spin Clt sending pings as fast as it can, reporting every
 * 100th accepted number on the pipe, until killed. */
static void child_sender(svh_t *f, int wfd) {
    mw_clt_opts_t o;
    clt_opts(f, &o, MW_MODE_SPIN, "K1");
    mw_clt_t *c;
    mw_err_t err;
    if (mw_clt_connect(&c, f->url, &test_protocol, &o, &err) < 0) _exit(2);
    for (uint64_t i = 1; i < 1000000; i++) {
        ping_t p = {.seq = i};
        int r;
        while ((r = mw_clt_send(c, ping_schema(), &p)) == MW_EAGAIN) {
            test_msg_t m;
            const mw_schema_t *sch;
            mw_clt_recv(c, &sch, &m, sizeof m); /* keep the echoes flowing */
        }
        if (r < 0) _exit(3);
        if (i % 100 == 0 && write(wfd, &i, sizeof i) != sizeof i) _exit(4);
    }
    _exit(0);
}

static void test_session_sigkilled_client_resumes_from_its_journal(void **state) {
    svh_t *f = *state;
    svc_start(f, 0);
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        child_sender(f, pfd[1]);
    }
    close(pfd[1]);
    uint64_t reported = 0, v;
    while (reported < 3000 && read(pfd[0], &v, sizeof v) == sizeof v) reported = v;
    kill(pid, SIGKILL); /* mid-stream: some numbers journaled, some on the wire, some in between */
    int st;
    waitpid(pid, &st, 0);
    close(pfd[0]);
    assert_true(WIFSIGNALED(st));
    assert_true(reported >= 3000);
    /* a restarted process: the same id and journal */
    mw_clt_t *c = clt_connect(f, MW_MODE_SPIN, "K1");
    mw_session_stats_t cs;
    mw_clt_session_stats(c, &cs);
    uint64_t sent = cs.next_out - 1; /* every number the dead process accepted */
    assert_true(sent >= reported);
    /* the Svc gets each once, in order: what the kill cut off comes again
     * from the client's journal */
    assert_true(svh_session_next_in_is(f, "K1", sent + 1, c, WAIT_MS)); /* (the client reads its echoes meanwhile) */
    pthread_mutex_lock(&f->mu);
    int n = f->nmsgs;
    assert_true(n == SVH_MAX_MSGS || (uint64_t)n == sent);
    for (int i = 0; i < n; i++) {
        assert_int_equal(f->msgs[i].rx_seq, (uint64_t)i + 1);
        assert_int_equal(f->msgs[i].seq, (uint64_t)i + 1);
    }
    pthread_mutex_unlock(&f->mu);
    svh_clt_drop(f, c);
}

/* A Svc that dies while its application handles message 5 (recv returned
 * it, the next recv never came): after the restart the client resends 5
 * and it is delivered again, flagged possibly handled before. */
static void child_svc(svh_t *f, int wfd) {
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.session.enabled = true;
    o.session.journal_dir = f->sdir;
    mw_svc_t *s;
    mw_err_t err;
    if (mw_svc_listen(&s, "tcp://127.0.0.1:0", &test_protocol, &o, &err) < 0) _exit(2);
    int port = mw_svc_port(s);
    if (write(wfd, &port, sizeof port) != sizeof port) _exit(3);
    for (;;) {
        mw_conn_id_t id;
        const mw_schema_t *sch;
        test_msg_t m;
        if (mw_svc_recv(s, &id, &sch, &m, sizeof m) != 0) continue;
        if (sch->tag == ping_TAG && m.ping.seq == 5) _exit(0); /* dies handling it */
        ping_t r = {.seq = m.ping.seq};
        mw_svc_send_to(s, id, ping_schema(), &r);
    }
}

static void test_session_possdup_after_a_crash_in_the_handler(void **state) {
    svh_t *f = *state;
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        child_svc(f, pfd[1]);
    }
    close(pfd[1]);
    int port = 0;
    assert_int_equal(read(pfd[0], &port, sizeof port), (ssize_t)sizeof port);
    close(pfd[0]);
    snprintf(f->url, sizeof f->url, "tcp://127.0.0.1:%d", port);
    mw_clt_t *c = clt_connect(f, MW_MODE_SPIN, "P1");
    svh_send_numbered(c, 1, 5);
    recv_pings(c, 1, 4, 0);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    svh_clt_drop(f, c);
    svc_start(f, 0); /* the restarted Svc, the same journals */
    c = clt_connect(f, MW_MODE_SPIN, "P1");
    assert_true(svh_wait_msgs(f, 1, WAIT_MS));
    pthread_mutex_lock(&f->mu);
    assert_int_equal(f->nmsgs, 1);
    assert_int_equal(f->msgs[0].rx_seq, 5);
    assert_int_equal(f->msgs[0].seq, 5);
    assert_int_equal(f->msgs[0].flags, MW_SEQ_POSSDUP | MW_SEQ_RESENT);
    pthread_mutex_unlock(&f->mu);
    recv_pings(c, 5, 5, 0); /* its answer: new from this Svc */
    svh_send_numbered(c, 6, 6);
    recv_pings(c, 6, 6, 0);
    pthread_mutex_lock(&f->mu);
    assert_int_equal(f->msgs[1].flags, 0);
    pthread_mutex_unlock(&f->mu);
    svh_clt_drop(f, c);
}

/* Heartbeats keep an idle session up: both sides send them, nobody is
 * dropped for silence. */
static bool clt_heard(void *ud) {
    mw_conn_stats_t st;
    mw_clt_stats(ud, &st);
    return st.msgs_in >= 8;
}

static void test_session_heartbeats_keep_an_idle_session_up(void **state) {
    svh_t *f = *state;
    svc_start(f, 0);
    mw_clt_opts_t o;
    clt_opts(f, &o, MW_MODE_EVENT, "H1");
    o.event.io = svh_clt_io(f);
    o.session.heartbeat_ns = 100 * MW_NS_PER_MS; /* (a loaded machine stalls for tens of ms) */
    mw_clt_t *c = svh_clt_connect(f, &o);
    /* the ack, then a heartbeat every 100 ms: 8 messages take > 6 intervals,
     * twice the silence that closes a connection */
    assert_true(mw_wait_until(clt_heard, c, WAIT_MS));
    assert_int_equal(atomic_load(&f->nclosed), 0);
    assert_true(mw_clt_is_open(c));
    mw_session_stats_t ss;
    assert_int_equal(mw_svc_session_stats(f->svc, "H1", &ss), 0);
    assert_true(ss.logged_on);
}

/* The login-in-text-then-switch-to-fixed pattern with a session: the
 * session logs on in text, the application's first exchange is text, then
 * both sides switch to fixed; numbering and heartbeats go on in fixed. */
static cfg_t cfg_tcp_text = {"tcp", "text", MW_MODE_EVENT, NULL};

static void test_session_text_login_then_fixed(void **state) {
    svh_t *f = *state;
    cur = &cfg_tcp_text;
    switch_at = 1;
    svc_start(f, 0);
    mw_clt_opts_t o;
    clt_opts(f, &o, MW_MODE_SPIN, "S1"); /* (heartbeats: 1 s, far from the switch) */
    mw_clt_t *c;
    mw_err_t err;
    assert_int_equal(mw_clt_connect(&c, f->url, &test_protocol, &o, &err), 0);
    svh_send_numbered(c, 1, 1);
    recv_pings(c, 1, 1, 0); /* the answer, in text */
    assert_int_equal(mw_clt_set_serdes(c, MW_DIR_TX | MW_DIR_RX, "fixed"), 0);
    svh_send_numbered(c, 2, 200);
    recv_pings(c, 2, 200, 0);
    expect_numbers(f, 200);
    assert_int_equal(atomic_load(&f->nclosed), 0);
    svh_clt_drop(f, c);
}

/* A message that can only wait in the journal (not connected yet) is tried
 * on the wire's serdes first: text has no NaN, so it is refused at send,
 * without a number, instead of failing every resend later. */
static void test_session_journal_only_send_is_tried_on_the_wire_serdes(void **state) {
    svh_t *f = *state;
    cur = &cfg_tcp_text;
    svc_start(f, 0);
    int port = f->port;
    svh_stop(f); /* nothing listens there now: the Clt keeps trying */
    mw_io_t *io;
    mw_err_t err;
    assert_int_equal(mw_io_new(&io, NULL, &err), 0);
    mw_clt_opts_t o;
    clt_opts(f, &o, MW_MODE_EVENT, "W1");
    o.event.io = io;
    o.event.async_connect = true;
    o.event.reconnect = true;
    mw_clt_t *c;
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    assert_int_equal(mw_clt_connect(&c, url, &test_protocol, &o, &err), 0);
    all_kinds_t a = {0};
    a.f64 = __builtin_nan("");
    uint64_t seq = 99;
    assert_int_equal(mw_clt_send_seq(c, all_kinds_schema(), &a, &seq), MW_ERANGE);
    ping_t p = {.seq = 1};
    assert_int_equal(mw_clt_send_seq(c, ping_schema(), &p, &seq), 0);
    assert_int_equal(seq, 1); /* the refused one took no number */
    svh_clt_drop(f, c);
    mw_io_free(io);
}

/* ---- every transport, serdes and Svc mode ---------------------------------------------- */

static void matrix(void **state, const cfg_t *c, mw_mode_t clt_mode) {
    svh_t *f = *state;
    cur = c;
    svc_start(f, 0);
    mw_clt_t *clt = clt_connect(f, clt_mode, "M1");
    svh_send_numbered(clt, 1, 100);
    recv_pings(clt, 1, 60, 0);
    expect_numbers(f, 100);
    svh_clt_drop(f, clt); /* 61..100 unread: resent at the next logon */
    clt = clt_connect(f, clt_mode, "M1");
    recv_pings(clt, 61, 100, MW_SEQ_RESENT);
    svh_send_numbered(clt, 101, 150);
    recv_pings(clt, 101, 150, 0);
    expect_numbers(f, 150);
    svh_clt_drop(f, clt);
}

static cfg_t cfg_tls_text = {"tls", "text", MW_MODE_EVENT, NULL};
static cfg_t cfg_ws_text = {"ws", "text", MW_MODE_EVENT, "libevent"};
static cfg_t cfg_wss_msgpack = {"wss", "msgpack", MW_MODE_EVENT, NULL};
static cfg_t cfg_tcp_spin_svc = {"tcp", "msgpack-array", MW_MODE_SPIN, NULL};
static cfg_t cfg_ws_blocking_svc = {"ws", "fixed", MW_MODE_BLOCKING, NULL};
static void test_session_tls_text_blocking_clt(void **s) { matrix(s, &cfg_tls_text, MW_MODE_BLOCKING); }
static void test_session_ws_text_libevent_spin_clt(void **s) { matrix(s, &cfg_ws_text, MW_MODE_SPIN); }
static void test_session_wss_msgpack_spin_clt(void **s) { matrix(s, &cfg_wss_msgpack, MW_MODE_SPIN); }
static void test_session_tcp_spin_svc(void **s) { matrix(s, &cfg_tcp_spin_svc, MW_MODE_SPIN); }
static void test_session_ws_blocking_svc_blocking_clt(void **s) { matrix(s, &cfg_ws_blocking_svc, MW_MODE_BLOCKING); }
/* mw_svc_recv_batch with sessions: numbered, in order, resent once, commits per message. */
static cfg_t cfg_tcp_spin_svc_batch = {"tcp", "fixed", MW_MODE_SPIN, NULL, true};
static cfg_t cfg_tcp_blocking_svc_batch = {"tcp", "msgpack", MW_MODE_BLOCKING, NULL, true};
static void test_session_tcp_spin_svc_batch(void **s) { matrix(s, &cfg_tcp_spin_svc_batch, MW_MODE_SPIN); }
static void test_session_tcp_blocking_svc_batch(void **s) { matrix(s, &cfg_tcp_blocking_svc_batch, MW_MODE_BLOCKING); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_session_numbers_and_resume_spin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_numbers_and_resume_blocking, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_resends_what_the_client_missed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_svc_restart_resumes_from_its_journal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_event_clt_journals_while_disconnected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_logon_rejected_by_the_hook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_second_logon_to_a_live_session_is_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_logon_waits_for_the_previous_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_peer_claiming_unsent_numbers_is_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_reset_starts_numbering_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_journal_has_one_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_first_message_must_be_logon, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_sigkilled_client_resumes_from_its_journal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_heartbeats_keep_an_idle_session_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_possdup_after_a_crash_in_the_handler, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_text_login_then_fixed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_journal_only_send_is_tried_on_the_wire_serdes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_tls_text_blocking_clt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_ws_text_libevent_spin_clt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_wss_msgpack_spin_clt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_tcp_spin_svc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_ws_blocking_svc_blocking_clt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_tcp_spin_svc_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_session_tcp_blocking_svc_batch, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
