/* test_web.c - the web blotter (examples/web/) in a real browser: Debian's
 * headless Chromium driven by the npm package playwright-core
 * (tests/web/blotter_test.js, run with node), against a small order gateway
 * played by this test: an mw_svc on ws://127.0.0.1:0/ with the text serdes
 * and the protocol of examples/common/gw_proto.h, with price-time matching
 * (acks, fills to both sides, cancels, rejects).
 *
 *   - plain: sessions off (?session=0): enter, fill, cancel, reject, and a
 *     price of 2^53-1 ticks shown exactly.
 *   - sessions: against the same gateway with sessions on (opts.session, a
 *     journal directory per test): two pages (sessions W1, W2) trade with
 *     each other; W1's page is closed while W2 fills its order (the fill is
 *     journaled for W1) and reopened; W1 enters an order and reloads at once;
 *     W1 reloads with a fill the gateway wrote but the page never read (held
 *     by a relay in the browser script), which must come again, resent;
 *     cancels; a quiet reload; logout.
 *     The blotter shows every ack and fill once, and the gateway saw every
 *     order and cancel once (no duplicate cl_ord_id, no dropped duplicates).
 *   - rules: the page's session layer against a scripted peer that plays the
 *     gateway's side of the session protocol message by message (a plain Svc
 *     whose protocol chains the mw_session control messages): logon fields,
 *     a duplicate dropped, a gap answered by one resend request, a resend
 *     delivered once, a test request answered, heartbeats and a test request
 *     sent by the page when the peer is silent, the page's own resend on
 *     request and after a new logon, and the logout with code 2 when the
 *     peer claims numbers the page never sent.
 *
 * The browser script only needs the gateway's ws:// URL, so any gateway that
 * speaks gw_proto.h can stand in for this one. Without Chromium, node or
 * tests/web/node_modules (make deps installs them) the tests are skipped,
 * and fail under CI. The node process is managed by its PID: every wait has
 * a deadline, and it is always reaped (SIGTERM first, so playwright closes
 * Chromium; SIGKILL if it does not end).
 */
#include "mw_test.h"
#include "svh_session.h"

#include "gw_proto.h"
#include "mw_clock.h"
#include "mw_session.h"
#include "mw_svc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define NODE "/usr/bin/node"
#define CHROMIUM "/usr/bin/chromium"
#define SCRIPT MW_SRC_ROOT "/tests/web/blotter_test.js"
#define PLAYWRIGHT MW_SRC_ROOT "/tests/web/node_modules/playwright-core/package.json"
#define RUN_NS (180 * MW_NS_PER_S)
#define MAX_OWNERS 16
#define MAX_ORDERS 256
#define OUT_CAP 65536

/* ---- the gateway: a tiny price-time matching engine --------------------------- */

typedef struct owner {
    char name[40];      /* the session id, or "conn <id>" without sessions */
    mw_conn_id_t conn;
    uint32_t orders, cancels, rejects, fills;
} owner_t;

typedef struct order {
    int owner;
    uint64_t cl, id;
    uint8_t side;
    int64_t price;
    uint32_t leaves;
    char sym[GW_SYMBOL_CAP + 1];
    bool open;
} order_t;

typedef struct gw {
    mw_svc_t *svc;
    bool sessions;
    owner_t owners[MAX_OWNERS];
    int nowners;
    order_t orders[MAX_ORDERS];
    int norders;
    uint64_t next_order_id, next_match, engine_seq;
    int send_errors;
    char url[96];
} gw_t;

/* With sessions an owner is a session (it outlives connections and page
 * reloads); without, a connection. */
static int owner_of(gw_t *g, mw_conn_id_t id) {
    char name[40];
    const char *sess = g->sessions ? mw_svc_conn_session(g->svc, id) : NULL;
    if (g->sessions && !sess) fail_msg("a message from connection %" PRIx64 " before its logon", id);
    if (sess) snprintf(name, sizeof name, "%s", sess);
    else snprintf(name, sizeof name, "conn %" PRIx64, id);
    for (int i = 0; i < g->nowners; i++)
        if (strcmp(g->owners[i].name, name) == 0) return i;
    if (g->nowners == MAX_OWNERS) fail_msg("more than %d owners", MAX_OWNERS);
    owner_t *o = &g->owners[g->nowners];
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", name);
    o->conn = id;
    return g->nowners++;
}

/* To the session whether or not it is connected (journaled for its next
 * logon); without sessions to the connection. */
static void reply(gw_t *g, int owner, const mw_schema_t *s, const void *msg) {
    uint64_t seq;
    int rc = g->sessions ? mw_svc_session_send(g->svc, g->owners[owner].name, s, msg, &seq)
                         : mw_svc_send_to(g->svc, g->owners[owner].conn, s, msg);
    if (rc != 0) {
        print_message("gateway: send to %s: %d %s\n", g->owners[owner].name, rc, mw_svc_last_error(g->svc));
        g->send_errors++;
    }
}

static void ack(gw_t *g, int owner, uint64_t cl, uint64_t oid, int status, uint32_t leaves, const char *reason) {
    order_ack_t a = {.cl_ord_id = cl, .order_id = oid, .status = (uint8_t)status, .leaves = leaves,
                     .engine_seq = ++g->engine_seq};
    snprintf(a.reason, sizeof a.reason, "%s", reason);
    if (status == GW_REJECTED) g->owners[owner].rejects++;
    reply(g, owner, order_ack_schema(), &a);
}

static void fill(gw_t *g, const order_t *o, uint64_t match, int64_t price, uint32_t qty) {
    fill_t f = {.cl_ord_id = o->cl, .order_id = o->id, .match_id = match, .price = price, .qty = qty,
                .leaves = o->leaves, .engine_seq = ++g->engine_seq};
    g->owners[o->owner].fills++;
    reply(g, o->owner, fill_schema(), &f);
}

/* The best resting order on the other side that crosses o, earliest first
 * among equal prices; -1 if none. */
static int best_match(const gw_t *g, const order_t *o) {
    int best = -1;
    for (int i = 0; i < g->norders; i++) {
        const order_t *r = &g->orders[i];
        if (!r->open || r->side == o->side || strcmp(r->sym, o->sym) != 0) continue;
        bool crosses = o->side == GW_BUY ? r->price <= o->price : r->price >= o->price;
        if (!crosses) continue;
        if (best < 0) best = i;
        else if (o->side == GW_BUY ? r->price < g->orders[best].price : r->price > g->orders[best].price) best = i;
    }
    return best;
}

static order_t *find_order(gw_t *g, int owner, uint64_t cl) {
    for (int i = 0; i < g->norders; i++)
        if (g->orders[i].owner == owner && g->orders[i].cl == cl) return &g->orders[i];
    return NULL;
}

static void on_new_order(gw_t *g, int owner, const new_order_t *m) {
    g->owners[owner].orders++;
    const char *why = NULL;
    if (m->cl_ord_id > GW_JS_SAFE_MAX) why = "cl_ord_id at or above 2^53";
    else if (m->price <= 0 || m->price > GW_JS_SAFE_MAX) why = "price must be 1 .. 2^53-1 ticks";
    else if (m->qty == 0) why = "qty must be at least 1";
    else if (find_order(g, owner, m->cl_ord_id)) why = "duplicate cl_ord_id";
    else if (g->norders == MAX_ORDERS) why = "book full";
    if (why) return ack(g, owner, m->cl_ord_id, 0, GW_REJECTED, 0, why);

    order_t *o = &g->orders[g->norders++];
    *o = (order_t){.owner = owner, .cl = m->cl_ord_id, .id = ++g->next_order_id, .side = m->side,
                   .price = m->price, .leaves = m->qty, .open = true};
    memcpy(o->sym, m->symbol, GW_SYMBOL_CAP);
    ack(g, owner, o->cl, o->id, GW_ACCEPTED, o->leaves, "");
    o->open = false; /* not on the book while it matches */
    int r;
    while (o->leaves > 0 && (r = best_match(g, o)) >= 0) {
        order_t *rest = &g->orders[r];
        uint32_t q = o->leaves < rest->leaves ? o->leaves : rest->leaves;
        uint64_t match = ++g->next_match;
        rest->leaves -= q, o->leaves -= q;
        if (rest->leaves == 0) rest->open = false;
        fill(g, rest, match, rest->price, q);
        fill(g, o, match, rest->price, q);
    }
    o->open = o->leaves > 0;
}

static void on_cancel(gw_t *g, int owner, const cancel_t *m) {
    g->owners[owner].cancels++;
    order_t *o = find_order(g, owner, m->cl_ord_id);
    if (!o || !o->open) return ack(g, owner, m->cl_ord_id, o ? o->id : 0, GW_REJECTED, 0, "no open order");
    o->open = false;
    o->leaves = 0;
    ack(g, owner, o->cl, o->id, GW_CANCELLED, 0, "");
}

static void on_msg(gw_t *g, mw_conn_id_t id, const mw_schema_t *s, const gw_msg_t *m) {
    int owner = owner_of(g, id);
    if (s->tag == new_order_TAG) on_new_order(g, owner, &m->new_order);
    else if (s->tag == cancel_TAG) on_cancel(g, owner, &m->cancel);
    else fail_msg("gateway: unexpected message %s", s->name);
}

/* The fixture's Svc (tests/util/svh_session.h), driven by the test thread
 * (run_page); sessions: on, journals in the fixture's f->sdir. */
static void gw_start(gw_t *g, svh_t *h, const mw_protocol_t *p, bool sessions) {
    memset(g, 0, sizeof *g);
    mw_svc_opts_t so;
    mw_svc_opts_init(&so);
    if (sessions) {
        g->sessions = true;
        so.session.enabled = true;
        so.session.journal_dir = h->sdir;
    }
    so.mode = MW_MODE_BLOCKING;
    so.sync.timeout_ns = 20 * MW_NS_PER_MS;
    so.conn.serdes = "text";
    h->proto = p;
    svh_listen(h, "ws", &so);
    g->svc = h->svc; /* the fixture frees it */
    snprintf(g->url, sizeof g->url, "%s", h->url);
}

/* ---- a scripted session peer (test "rules") ------------------------------------
 * Reacts to what the page sends, phase by phase; heartbeats and test
 * requests from the page are handled in every phase. Numbers below are the
 * implicit ones of the session protocol (#n: the n-th application message of
 * a direction). */

typedef union any_msg {
    gw_msg_t gw;
    mw_session_msg_t ss;
} any_msg_t;

static mw_protocol_t gw_and_session; /* gw_protocol + ext = mw_session_protocol */

static void protocols_init(void) {
    gw_and_session = gw_protocol;
    gw_and_session.ext = &mw_session_protocol;
    if (mw_session_protocol.max_size > gw_and_session.max_size)
        gw_and_session.max_size = mw_session_protocol.max_size;
    if (mw_session_protocol.max_fixed_size > gw_and_session.max_fixed_size)
        gw_and_session.max_fixed_size = mw_session_protocol.max_fixed_size;
}

enum {
    R_LOGON,        /* wait mw_logon (1,1) -> ack */
    R_ORDER,        /* wait new_order #1 -> ack #1, dup #1, jump to #4 */
    R_RESEND_REQ,   /* wait mw_resend_request{2,0} -> resend #2..#4, test request 77 */
    R_TEST_ANSWER,  /* wait mw_heartbeat{77}, then stay silent */
    R_SILENT,       /* wait heartbeat{0} and a test request from the page -> resend request {1,0} */
    R_ITS_RESEND,   /* wait mw_seq{1,true}, new_order #1 again, mw_seq{2,false} -> close */
    R_RELOGON,      /* wait a new mw_logon (5,2) -> ack next_in 1 */
    R_RELOGON_SEND, /* wait the same three again -> close */
    R_BAD_LOGON,    /* wait mw_logon (5,2) -> ack next_in 3 (more than it sent) */
    R_LOGOUT,       /* wait mw_logout{code 2} */
    R_DONE
};

typedef struct rules {
    int phase, step;
    mw_conn_id_t conn;
    new_order_t order;
    bool saw_hb0, saw_test;
    uint64_t silent_since;
    char logout_reason[128];
} rules_t;

static void send_ctl(gw_t *g, mw_conn_id_t id, const mw_schema_t *s, const void *m) {
    int rc = mw_svc_send_to(g->svc, id, s, m);
    if (rc != 0) fail_msg("scripted peer: send %s: %d %s", s->name, rc, mw_svc_last_error(g->svc));
}

static void send_seq(gw_t *g, mw_conn_id_t id, uint64_t next, bool resent) {
    mw_seq_t q = {.next = next, .resent = resent};
    send_ctl(g, id, mw_seq_schema(), &q);
}

static void send_ack(gw_t *g, mw_conn_id_t id, uint64_t next_in, uint64_t next_out) {
    mw_logon_ack_t a = {.next_in = next_in, .next_out = next_out, .heartbeat_ms = 300};
    snprintf(a.session, sizeof a.session, "R1");
    send_ctl(g, id, mw_logon_ack_schema(), &a);
}

/* The gateway's application messages #1 .. #4. */
static void send_app(gw_t *g, mw_conn_id_t id, int n) {
    if (n == 1) {
        order_ack_t a = {.cl_ord_id = 1, .order_id = 501, .status = GW_ACCEPTED, .leaves = 100, .engine_seq = 1};
        send_ctl(g, id, order_ack_schema(), &a);
        return;
    }
    static const uint32_t qty[] = {0, 0, 10, 20, 30}, leaves[] = {0, 0, 90, 70, 40};
    fill_t f = {.cl_ord_id = 1, .order_id = 501, .match_id = (uint64_t)n, .price = 100, .qty = qty[n],
                .leaves = leaves[n], .engine_seq = (uint64_t)n};
    send_ctl(g, id, fill_schema(), &f);
}

static void expect_logon(const mw_logon_t *l, uint64_t next_in, uint64_t next_out) {
    if (strcmp(l->session, "R1") != 0 || l->next_in != next_in || l->next_out != next_out || l->heartbeat_ms != 300 ||
        l->reset)
        fail_msg("mw_logon{session %s, next_in %" PRIu64 ", next_out %" PRIu64 ", heartbeat_ms %u, reset %d}, "
                 "wanted R1, %" PRIu64 ", %" PRIu64 ", 300, 0",
                 l->session, l->next_in, l->next_out, l->heartbeat_ms, l->reset, next_in, next_out);
}

/* The page's resend of its #1: mw_seq{1,true}, the same new_order, mw_seq{2,false}. */
static bool expect_its_resend(rules_t *r, const mw_schema_t *s, const any_msg_t *m) {
    if (r->step == 0 && s->tag == mw_seq_TAG && m->ss.mw_seq.next == 1 && m->ss.mw_seq.resent) r->step = 1;
    else if (r->step == 1 && s->tag == new_order_TAG && memcmp(&m->gw.new_order, &r->order, sizeof r->order) == 0)
        r->step = 2;
    else if (r->step == 2 && s->tag == mw_seq_TAG && m->ss.mw_seq.next == 2 && !m->ss.mw_seq.resent) r->step = 3;
    else fail_msg("the page's resend: step %d got %s", r->step, s->name);
    if (r->step < 3) return false;
    r->step = 0;
    return true;
}

static void rules_on_msg(gw_t *g, rules_t *r, mw_conn_id_t id, const mw_schema_t *s, const any_msg_t *m) {
    if (s->tag == mw_test_request_TAG) { /* any phase: answer */
        mw_heartbeat_t h = {.test_id = m->ss.mw_test_request.test_id};
        r->saw_test = true; /* also earlier, while the page waits for the user */
        send_ctl(g, id, mw_heartbeat_schema(), &h);
    } else if (s->tag == mw_heartbeat_TAG && m->ss.mw_heartbeat.test_id == 0) {
        r->saw_hb0 = true;
    } else if (r->phase == R_LOGON || r->phase == R_RELOGON || r->phase == R_BAD_LOGON) {
        if (s->tag != mw_logon_TAG) fail_msg("first message %s, not mw_logon", s->name);
        r->conn = id;
        expect_logon(&m->ss.mw_logon, r->phase == R_LOGON ? 1 : 5, r->phase == R_LOGON ? 1 : 2);
        send_ack(g, id, r->phase == R_BAD_LOGON ? 3 : 1, r->phase == R_LOGON ? 1 : 5);
        r->phase = r->phase == R_LOGON ? R_ORDER : r->phase == R_RELOGON ? R_RELOGON_SEND : R_LOGOUT;
    } else if (r->phase == R_ORDER) {
        if (s->tag != new_order_TAG) fail_msg("wanted new_order, got %s", s->name);
        r->order = m->gw.new_order;
        send_app(g, id, 1);
        send_seq(g, id, 1, true);
        send_app(g, id, 1); /* a duplicate: dropped */
        send_seq(g, id, 4, false);
        send_app(g, id, 4); /* #2 and #3 missing: a gap */
        r->phase = R_RESEND_REQ;
    } else if (r->phase == R_RESEND_REQ) {
        if (s->tag != mw_resend_request_TAG || m->ss.mw_resend_request.from != 2 || m->ss.mw_resend_request.to != 0)
            fail_msg("wanted mw_resend_request{2,0}, got %s", s->name);
        send_seq(g, id, 2, true);
        for (int n = 2; n <= 4; n++) send_app(g, id, n);
        send_seq(g, id, 5, false);
        mw_test_request_t t = {.test_id = 77};
        send_ctl(g, id, mw_test_request_schema(), &t);
        r->phase = R_TEST_ANSWER;
    } else if (r->phase == R_TEST_ANSWER) {
        if (s->tag != mw_heartbeat_TAG || m->ss.mw_heartbeat.test_id != 77)
            fail_msg("wanted mw_heartbeat{77}, got %s", s->name);
        r->saw_hb0 = r->saw_test = false;
        r->phase = R_SILENT;
    } else if (r->phase == R_ITS_RESEND || r->phase == R_RELOGON_SEND) {
        if (!expect_its_resend(r, s, m)) return;
        mw_svc_close_conn(g->svc, id);
        r->phase = r->phase == R_ITS_RESEND ? R_RELOGON : R_BAD_LOGON;
    } else if (r->phase == R_LOGOUT) {
        if (s->tag != mw_logout_TAG || m->ss.mw_logout.code != MW_LOGOUT_PROTOCOL)
            fail_msg("wanted mw_logout{code 2}, got %s", s->name);
        snprintf(r->logout_reason, sizeof r->logout_reason, "%s", m->ss.mw_logout.reason);
        r->phase = R_DONE;
    } else {
        fail_msg("phase %d: unexpected %s", r->phase, s->name);
    }
    /* silent phase: once the page has sent a heartbeat and a test request */
    if (r->phase == R_SILENT && r->saw_hb0 && r->saw_test) {
        mw_resend_request_t q = {.from = 1, .to = 0};
        send_ctl(g, id, mw_resend_request_schema(), &q);
        r->phase = R_ITS_RESEND;
    }
}

/* ---- the browser script ------------------------------------------------------- */

typedef struct child {
    pid_t pid;
    int out;
    char text[OUT_CAP];
    size_t len;
    int status;
} child_t;

static void child_start(child_t *c, const char *url, const char *mode) {
    memset(c, 0, sizeof *c);
    c->out = -1;
    c->status = -1;
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) fail_msg("pipe: %s", strerror(errno));
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) _exit(127);
        dup2(p[1], 1);
        dup2(p[1], 2);
        char *argv[] = {(char *)NODE, (char *)SCRIPT, (char *)url, (char *)mode, NULL};
        execv(NODE, argv);
        _exit(127);
    }
    close(p[1]);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    c->pid = pid;
    c->out = p[0];
}

static void child_read(child_t *c) {
    char sink[4096];
    for (;;) {
        size_t room = sizeof c->text - 1 - c->len;
        ssize_t n = room ? read(c->out, c->text + c->len, room) : read(c->out, sink, sizeof sink);
        if (n <= 0) break;
        if (room) c->len += (size_t)n;
    }
    c->text[c->len] = '\0';
}

static bool child_exited(child_t *c) {
    if (c->pid <= 0) return true;
    int st;
    if (waitpid(c->pid, &st, WNOHANG) != c->pid) return false;
    child_read(c);
    c->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    c->pid = 0;
    return true;
}

/* SIGTERM (playwright then closes Chromium), SIGKILL after 10 s. */
static void child_stop(child_t *c) {
    if (c->pid > 0) {
        kill(c->pid, SIGTERM);
        uint64_t dl = mw_now_ns() + 10 * MW_NS_PER_S;
        while (!child_exited(c) && mw_now_ns() < dl) poll(NULL, 0, 20);
        if (c->pid > 0) {
            kill(c->pid, SIGKILL);
            waitpid(c->pid, NULL, 0);
            c->pid = 0;
        }
    }
    if (c->out >= 0) close(c->out);
    c->out = -1;
}

/* Runs the browser script in `mode` while serving the gateway, until the
 * script ends (or RUN_NS). Returns its exit status; its output is in c. */
static int run_page(gw_t *g, child_t *c, const char *mode, rules_t *r) {
    child_start(c, g->url, mode);
    uint64_t dl = mw_now_ns() + RUN_NS;
    while (!child_exited(c)) {
        if (mw_now_ns() > dl) {
            child_stop(c);
            fail_msg("the browser script did not end within %d s; output:\n%s", (int)(RUN_NS / MW_NS_PER_S), c->text);
        }
        any_msg_t m;
        const mw_schema_t *s;
        mw_conn_id_t id;
        int rc = mw_svc_recv(g->svc, &id, &s, &m, sizeof m);
        if (rc == 0 && r) rules_on_msg(g, r, id, s, &m);
        else if (rc == 0) on_msg(g, id, s, &m.gw);
        else if (rc != MW_EAGAIN && rc != MW_ETIMEDOUT) fail_msg("recv: %d %s", rc, mw_svc_last_error(g->svc));
        child_read(c);
    }
    close(c->out);
    c->out = -1;
    fputs(c->text, stdout); /* print_message cuts long text */
    fflush(stdout);
    return c->status;
}

/* MW_TEST_PRETEND_MISSING=chromium checks the skip (see mw_test.h). */
static bool have_browser(void) {
    const char *pretend = getenv("MW_TEST_PRETEND_MISSING");
    if (pretend && strstr(pretend, "chromium")) return false;
    return access(NODE, X_OK) == 0 && access(CHROMIUM, X_OK) == 0 && access(PLAYWRIGHT, R_OK) == 0;
}

/* ---- tests -------------------------------------------------------------------------- */

typedef struct fx {
    svh_t *h; /* the Svc and the journals' directory */
    gw_t g;
    child_t c;
} fx_t;

static int setup(void **state) {
    fx_t *f = svh_session_setup(state) == 0 ? svh_attach_ud(*state, sizeof *f) : NULL;
    if (!f) return -1;
    f->h = *state;
    f->c.out = -1;
    return 0;
}

/* Also after a failed assertion: the script stopped, the Svc freed. */
static int teardown(void **state) {
    fx_t *f = svh_ud(state);
    child_stop(&f->c);
    return svh_teardown(state);
}

static void test_web_blotter_without_sessions(void **state) {
    fx_t *f = svh_ud(state);
    gw_t *g = &f->g;
    child_t *c = &f->c;
    gw_start(g, f->h, &gw_protocol, false);
    int st = run_page(g, c, "plain", NULL);
    if (st != 0 || !strstr(c->text, "\nPASS\n")) fail_msg("browser script exit %d", st);
    /* what the page did, seen from the gateway: 4 orders (one rejected), 1 cancel */
    assert_int_equal(g->nowners, 1);
    assert_int_equal(g->owners[0].orders, 4);
    assert_int_equal(g->owners[0].rejects, 1);
    assert_int_equal(g->owners[0].cancels, 1);
    assert_int_equal(g->owners[0].fills, 2);
    assert_int_equal(g->send_errors, 0);
}

static const owner_t *owner_named(const gw_t *g, const char *name) {
    for (int i = 0; i < g->nowners; i++)
        if (strcmp(g->owners[i].name, name) == 0) return &g->owners[i];
    fail_msg("the gateway never heard of session %s", name);
    return NULL;
}

static void test_web_blotter_with_sessions_survives_reloads(void **state) {
    fx_t *f = svh_ud(state);
    gw_t *g = &f->g;
    gw_start(g, f->h, &gw_protocol, true);
    int st = run_page(g, &f->c, "session", NULL);
    if (st != 0 || !strstr(f->c.text, "\nPASS\n")) fail_msg("browser script exit %d", st);
    /* the gateway's view: each order and cancel once */
    assert_int_equal(g->nowners, 2);
    const owner_t *w1 = owner_named(g, "W1"), *w2 = owner_named(g, "W2");
    assert_int_equal(w1->orders, 2);
    assert_int_equal(w1->cancels, 2);
    assert_int_equal(w1->fills, 3);
    assert_int_equal(w1->rejects, 0); /* a duplicate cl_ord_id would be rejected */
    assert_int_equal(w2->orders, 3);
    assert_int_equal(w2->fills, 3);
    assert_int_equal(w2->rejects, 0);
    assert_int_equal(g->send_errors, 0);
    for (int i = 0; i < 2; i++) {
        mw_session_stats_t ss;
        const char *name = i ? "W2" : "W1";
        assert_int_equal(mw_svc_session_stats(g->svc, name, &ss), 0);
        print_message("gateway, session %s: next_in %" PRIu64 " next_out %" PRIu64 " logons %" PRIu64
                      " resent %" PRIu64 " dups_dropped %" PRIu64 " gaps %" PRIu64 "\n",
                      name, ss.next_in, ss.next_out, ss.logons, ss.resent, ss.dups_dropped, ss.gaps);
        assert_int_equal(ss.dups_dropped, 0);
        assert_int_equal(ss.gaps, 0);
        assert_int_equal(ss.next_in, i ? 4 : 5); /* W1: 2 orders + 2 cancels; W2: 3 orders */
        if (i == 0) assert_true(ss.resent >= 1); /* the fill W1's page never read */
    }
}

static void test_web_session_rules_against_a_scripted_peer(void **state) {
    fx_t *f = svh_ud(state);
    rules_t r = {.phase = R_LOGON};
    gw_start(&f->g, f->h, &gw_and_session, false);
    int st = run_page(&f->g, &f->c, "rules", &r);
    if (st != 0 || !strstr(f->c.text, "\nPASS\n")) fail_msg("browser script exit %d (phase %d)", st, r.phase);
    assert_int_equal(r.phase, R_DONE);
    assert_string_equal(r.logout_reason, "peer expects 3 but we sent only up to 1");
}

int main(void) {
    protocols_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_web_blotter_without_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_web_blotter_with_sessions_survives_reloads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_web_session_rules_against_a_scripted_peer, setup, teardown),
    };
    return mw_run_group_requiring(have_browser(), CHROMIUM ", " NODE " and tests/web/node_modules (make deps)",
                                  tests, NULL, NULL);
}
