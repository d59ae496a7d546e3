/* ws_autobahn.c - a client for the Autobahn|Testsuite fuzzingserver.
 *
 *   ws_autobahn --url ws://HOST:PORT --agent NAME [--cases N] [--timeout S]
 *               [--max-msg BYTES] [--ca FILE | --insecure] [--self-test]
 *
 * The fuzzingserver protocol: GET /getCaseCount (the server sends the number
 * of cases as one text message and closes), then for each case N a
 * connection to /runCase?case=N&agent=NAME on which the client echoes every
 * message with its opcode until the server closes, then /updateReports?
 * agent=NAME, after which the server writes its reports and closes. The
 * verdicts are the server's; this tool prints how each case ended from its
 * side: "closed CODE" (the server closed), "failed CODE" (our WebSocket
 * stream failed the connection, e.g. 1007 for invalid UTF-8), "dropped 1006"
 * (TCP closed without a close frame) or "timeout".
 *
 * --cases N runs at most N cases. --self-test drives a plain echo server
 * (ws_echo) instead of a fuzzingserver: nothing would come first from an
 * echo server, so the tool asks the count itself (sends N, reads it back),
 * seeds each case with a text and a binary message that then bounce between
 * the two echoes BOUNCES times, checks every copy, and closes with 1000.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mw_clock.h"
#include "mw_tcp.h"
#include "mw_tls.h"
#include "mw_ws.h"
#include "tool.h"
#include "ws_tool.h"
#include "err_impl.h"
#include "stream_impl.h"
#include "tcp_impl.h"
#include "tls_impl.h"
#include "ws_impl.h"

static const char USAGE[] =
    "usage: ws_autobahn --url ws://HOST:PORT --agent NAME [--cases N] [--timeout S]\n"
    "                   [--max-msg BYTES] [--ca FILE | --insecure] [--self-test]\n"
    "\n"
    "  Runs the Autobahn|Testsuite fuzzingserver cases as a client: echoes every\n"
    "  message of each case, prints one line per case (how it ended and the close\n"
    "  code) and a summary, then asks the server to update its reports.\n"
    "  --cases N      run at most N cases (default: all the server has)\n"
    "  --timeout S    give up on a case after S seconds without traffic (default 60)\n"
    "  --max-msg      largest message accepted (default 16777216)\n"
    "  --ca / --insecure  wss://: the CA file to verify the server, or no verification\n"
    "  --self-test    against ws_echo: seed each case with messages that bounce\n"
    "                 between the two echoes, check them, close with 1000\n"
    "  Exit status: 0 ok, 1 usage, 2 failure.\n";

#define CONNECT_NS (10 * MW_NS_PER_S)
#define CLOSE_WAIT_NS (2 * MW_NS_PER_S)
#define BOUNCES 100
#define DEFAULT_MAX_MSG (16u * 1024 * 1024)

typedef struct cfg {
    const char *url, *agent, *ca;
    uint64_t cases, max_msg;
    double timeout;
    bool cases_given, insecure, self_test;
} cfg_t;

typedef struct app {
    cfg_t c;
    mw__url_t u;
    mw__tls_ctx_t *tls;
    char agent_q[512]; /* the agent, percent-encoded */
} app_t;

enum { END_CLOSED, END_FAILED, END_DROPPED, END_TIMEOUT, END_ERROR, END_N };
static const char *const END_NAME[END_N] = {"closed", "failed", "dropped", "timeout", "error"};

/* One connection: what it is for and how it ended. */
typedef struct session {
    mw_stream_t *s;
    ws_echo_t echo;
    int end, code;
    char why[MW_ERR_TEXT_MAX];
    /* getCaseCount */
    bool want_count;
    long count;
    /* self-test */
    int case_no;
    uint8_t *seed[2];
    size_t seed_len[2];
    unsigned seed_op[2];
    bool closing;
    uint64_t bad;
} session_t;

/* ---- connecting ------------------------------------------------------------------ */

static void encode_agent(app_t *a) {
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)a->c.agent; *p && n + 4 < sizeof a->agent_q; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("-._~", *p)) {
            a->agent_q[n++] = (char)*p;
        } else {
            a->agent_q[n++] = '%';
            a->agent_q[n++] = hex[*p >> 4];
            a->agent_q[n++] = hex[*p & 15];
        }
    }
    a->agent_q[n] = '\0';
}

/* Connects, wraps (TLS, WebSocket) and completes the handshake. */
static int ws_open(app_t *a, const char *path, mw_stream_t **out, mw_err_t *err) {
    mw_tcp_opts_t to;
    mw__tcp_opts_init(&to);
    mw_stream_t *s;
    int r = mw__tcp_connect(&s, a->u.host, a->u.port, &to, CONNECT_NS, err);
    if (r < 0) return r;
    if (a->tls && (r = mw__tls_wrap(&s, s, a->tls, a->u.host, err)) < 0) return r;
    char host[300];
    snprintf(host, sizeof host, "%s:%s", a->u.host, a->u.port);
    mw_ws_opts_t wo;
    mw_ws_opts_init(&wo);
    wo.host = host;
    wo.path = path;
    wo.max_msg = (uint32_t)a->c.max_msg;
    wo.flags = MW_WS_RECORD_OPCODE;
    if ((r = mw_ws_client_wrap(&s, s, &wo, err)) < 0) return r;
    uint64_t deadline = mw_now_ns() + CONNECT_NS;
    while ((r = mw__stream_handshake(s)) == MW_EAGAIN) {
        uint64_t now = mw_now_ns();
        int want = mw__stream_want(s);
        if (now >= deadline || mw__stream_wait(s, want ? want : MW_WANT_READ, (int64_t)(deadline - now)) < 0) {
            r = mw__err_set(err, MW_ETIMEDOUT, "%s: no WebSocket handshake within %d s", path,
                           (int)(CONNECT_NS / MW_NS_PER_S));
            break;
        }
    }
    if (r != 1) {
        if (r != MW_ETIMEDOUT) mw__err_set(err, r, "%s: %s", path, mw_stream_last_error(s));
        mw_stream_free(s);
        return r < 0 ? r : MW_EPROTO;
    }
    *out = s;
    return 0;
}

/* ---- one session ------------------------------------------------------------------- */

static bool seed_matches(const session_t *ss, unsigned op, const uint8_t *p, size_t n, int k) {
    return op == ss->seed_op[k] && n == ss->seed_len[k] && memcmp(p, ss->seed[k], n) == 0;
}

static void on_msg(void *ud, unsigned op, const uint8_t *p, size_t n) {
    session_t *ss = ud;
    if (ss->want_count) {
        if (op != MW_WS_TEXT || ss->count >= 0) return;
        char tmp[32];
        size_t k = n < sizeof tmp - 1 ? n : sizeof tmp - 1;
        memcpy(tmp, p, k);
        tmp[k] = '\0';
        char *end;
        long v = strtol(tmp, &end, 10);
        ss->count = end != tmp && *end == '\0' && v >= 0 ? v : -2;
        return;
    }
    if (!ss->seed[0] || ss->closing) return;
    if (!seed_matches(ss, op, p, n, (int)((ss->echo.msgs) % 2))) ss->bad++;
}

static void self_test_step(session_t *ss) {
    bool done = ss->want_count ? ss->count != -1 : ss->seed[0] && ss->echo.msgs >= BOUNCES;
    if (ss->closing || !done) return;
    ss->closing = true;
    ss->echo.echo = false;
    mw__ws_close(ss->s, MW_WS_CLOSE_NORMAL, "self-test done");
}

static void classify(session_t *ss, int r) {
    int peer = mw__ws_peer_close_code(ss->s);
    if (r == MW_ECLOSED && peer) {
        ss->end = END_CLOSED, ss->code = peer;
        snprintf(ss->why, sizeof ss->why, "%s", ws_tool_code_name(peer));
    } else if (r == MW_ECLOSED) {
        ss->end = END_DROPPED, ss->code = MW_WS_CLOSE_ABNORMAL;
        snprintf(ss->why, sizeof ss->why, "%s", mw_stream_last_error(ss->s));
    } else if (r == MW_EPROTO || r == MW_EUTF8 || r == MW_ETOOBIG) {
        ss->end = END_FAILED, ss->code = mw__ws_sent_close_code(ss->s);
        snprintf(ss->why, sizeof ss->why, "%s", mw_stream_last_error(ss->s));
    } else {
        ss->end = END_ERROR, ss->code = MW_WS_CLOSE_ABNORMAL;
        snprintf(ss->why, sizeof ss->why, "%s", mw_stream_last_error(ss->s));
    }
}

/* Echoes until the connection ends; then says goodbye properly. */
static void run_session(const app_t *a, session_t *ss) {
    int64_t idle = (int64_t)(a->c.timeout * (double)MW_NS_PER_S);
    int r;
    for (;;) {
        r = ws_echo_pump(&ss->echo, ss->s);
        if (a->c.self_test) self_test_step(ss);
        if (r < 0) break;
        if (mw__stream_wait(ss->s, ws_echo_events(&ss->echo, ss->s), idle) == MW_ETIMEDOUT) {
            ss->end = END_TIMEOUT, ss->code = 0;
            snprintf(ss->why, sizeof ss->why, "nothing for %.0f s", a->c.timeout);
            mw__ws_close(ss->s, MW_WS_CLOSE_GOING_AWAY, "timeout");
            break;
        }
    }
    if (r < 0) classify(ss, r);
    ws_tool_flush_wait(ss->s, CLOSE_WAIT_NS);
    ws_tool_drain_wait(ss->s, CLOSE_WAIT_NS); /* RFC 6455 7.1.1: the server closes TCP first */
}

static int session_open(app_t *a, session_t *ss, const char *path, mw_err_t *err) {
    memset(ss, 0, sizeof *ss);
    ss->count = -1;
    int r = ws_open(a, path, &ss->s, err);
    if (r < 0) return r;
    if (ws_echo_init(&ss->echo, a->c.max_msg) < 0) {
        mw_stream_free(ss->s);
        return mw__err_set(err, MW_ENOMEM, "out of memory");
    }
    ss->echo.on_msg = on_msg;
    ss->echo.ud = ss;
    return 0;
}

static void session_close(session_t *ss) {
    mw_stream_free(ss->s);
    ws_echo_fini(&ss->echo);
    free(ss->seed[0]);
    free(ss->seed[1]);
}

/* Sends one opcode record (blocking, for the self-test's first messages). */
static void send_record(session_t *ss, unsigned op, const uint8_t *p, size_t n) {
    uint8_t *rec = malloc(WS_TOOL_REC_HDR + n);
    if (!rec) tool_fail("out of memory");
    rec[0] = (uint8_t)op;
    rec[1] = (uint8_t)(n >> 24), rec[2] = (uint8_t)(n >> 16), rec[3] = (uint8_t)(n >> 8), rec[4] = (uint8_t)n;
    memcpy(rec + WS_TOOL_REC_HDR, p, n);
    if (mw__stream_write_all(ss->s, rec, WS_TOOL_REC_HDR + n, CONNECT_NS) < 0)
        tool_fail("self-test: cannot send: %s", mw_stream_last_error(ss->s));
    free(rec);
}

/* A text with multi-byte characters and a binary message, sized by case. */
static void seed_case(session_t *ss, int n) {
    static const char piece[] = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5 \xf0\x9f\x98\x80 ";
    size_t reps = (size_t)(n % 50) + 1, pl = sizeof piece - 1;
    ss->seed_len[0] = reps * pl;
    ss->seed_len[1] = (size_t)n * 1000 + 1;
    for (int k = 0; k < 2; k++)
        if (!(ss->seed[k] = malloc(ss->seed_len[k]))) tool_fail("out of memory");
    for (size_t i = 0; i < reps; i++) memcpy(ss->seed[0] + i * pl, piece, pl);
    for (size_t i = 0; i < ss->seed_len[1]; i++) ss->seed[1][i] = (uint8_t)(i * 31 + (size_t)n);
    ss->seed_op[0] = MW_WS_TEXT, ss->seed_op[1] = MW_WS_BINARY;
    for (int k = 0; k < 2; k++) send_record(ss, ss->seed_op[k], ss->seed[k], ss->seed_len[k]);
}

/* ---- the three phases ------------------------------------------------------------------ */

static long get_case_count(app_t *a) {
    session_t ss;
    mw_err_t err;
    if (session_open(a, &ss, "/getCaseCount", &err) < 0) tool_fail("%s", mw_err_text(&err));
    ss.want_count = true;
    ss.echo.echo = false; /* the count is not to be echoed */
    if (a->c.self_test) {
        char n[32];
        int k = snprintf(n, sizeof n, "%" PRIu64, a->c.cases_given ? a->c.cases : 3);
        send_record(&ss, MW_WS_TEXT, (const uint8_t *)n, (size_t)k);
    }
    run_session(a, &ss);
    long count = ss.count;
    session_close(&ss);
    if (count < 0) tool_fail("/getCaseCount: no case count (%s %d: %s)", END_NAME[ss.end], ss.code, ss.why);
    return count;
}

static bool run_case(app_t *a, int n, int *ends) {
    char path[700];
    snprintf(path, sizeof path, "/runCase?case=%d&agent=%s", n, a->agent_q);
    session_t ss;
    mw_err_t err;
    if (session_open(a, &ss, path, &err) < 0) {
        printf("case %d: error (%s)\n", n, mw_err_text(&err));
        ends[END_ERROR]++;
        return false;
    }
    ss.case_no = n;
    if (a->c.self_test) seed_case(&ss, n);
    run_session(a, &ss);
    ends[ss.end]++;
    printf("case %d: %s", n, END_NAME[ss.end]);
    if (ss.end != END_TIMEOUT) printf(" %d", ss.code);
    printf(" (%s), %" PRIu64 " msgs\n", ss.why, ss.echo.msgs);
    fflush(stdout);
    bool ok = !a->c.self_test || (ss.end == END_CLOSED && ss.code == MW_WS_CLOSE_NORMAL && ss.bad == 0 &&
                                   ss.echo.msgs >= BOUNCES);
    if (!ok && a->c.self_test)
        fprintf(stderr, "ws_autobahn: self-test case %d: %" PRIu64 " of %" PRIu64 " echoes differ from the seed\n", n,
                ss.bad, ss.echo.msgs);
    session_close(&ss);
    return ok;
}

static bool update_reports(app_t *a) {
    char path[700];
    snprintf(path, sizeof path, "/updateReports?agent=%s", a->agent_q);
    session_t ss;
    mw_err_t err;
    if (session_open(a, &ss, path, &err) < 0) {
        fprintf(stderr, "ws_autobahn: %s\n", mw_err_text(&err));
        return false;
    }
    ss.echo.echo = false;
    if (a->c.self_test) {
        ss.closing = true;
        mw__ws_close(ss.s, MW_WS_CLOSE_NORMAL, "reports");
    }
    run_session(a, &ss);
    bool ok = ss.end == END_CLOSED;
    if (!ok) fprintf(stderr, "ws_autobahn: updateReports: %s %d (%s)\n", END_NAME[ss.end], ss.code, ss.why);
    session_close(&ss);
    return ok;
}

/* ---- main ---------------------------------------------------------------------------- */

static void parse_args(int argc, char **argv, cfg_t *c) {
    memset(c, 0, sizeof *c);
    c->max_msg = DEFAULT_MAX_MSG;
    c->timeout = 60;
    const tool_opt_t opts[] = {
        {"--url", TOOL_OPT_STR, &c->url, NULL},
        {"--agent", TOOL_OPT_STR, &c->agent, NULL},
        {"--cases", TOOL_OPT_U64, &c->cases, &c->cases_given},
        {"--timeout", TOOL_OPT_F64, &c->timeout, NULL},
        {"--max-msg", TOOL_OPT_U64, &c->max_msg, NULL},
        {"--ca", TOOL_OPT_STR, &c->ca, NULL},
        {"--insecure", TOOL_OPT_FLAG, &c->insecure, NULL},
        {"--self-test", TOOL_OPT_FLAG, &c->self_test, NULL},
    };
    tool_parse(argc, argv, 1, opts, sizeof opts / sizeof opts[0], USAGE);
    if (!c->url) tool_usage_fail(USAGE, "--url is required");
    if (!c->agent) tool_usage_fail(USAGE, "--agent is required");
    if (c->max_msg == 0 || c->max_msg > 0x7FFFFFF0u) tool_usage_fail(USAGE, "--max-msg must be 1..2147483632");
    if (c->timeout <= 0) tool_usage_fail(USAGE, "--timeout must be > 0");
    if (c->cases_given && c->cases > 100000) tool_usage_fail(USAGE, "--cases must be at most 100000");
}

static void open_tls(app_t *a) {
    mw_tls_opts_t to;
    mw__tls_opts_init(&to);
    to.ca_file = a->c.ca;
    to.insecure_skip_verify = a->c.insecure;
    mw_err_t err;
    if (mw__tls_ctx_new(&a->tls, false, &to, &err) < 0) tool_fail("%s", mw_err_text(&err));
}

int main(int argc, char **argv) {
    tool_init("ws_autobahn");
    signal(SIGPIPE, SIG_IGN);
    app_t a;
    memset(&a, 0, sizeof a);
    parse_args(argc, argv, &a.c);
    mw_err_t err;
    if (mw__url_parse(a.c.url, &a.u, &err) < 0) tool_usage_fail(USAGE, "%s", mw_err_text(&err));
    if (a.u.scheme != MW_SCHEME_WS && a.u.scheme != MW_SCHEME_WSS)
        tool_usage_fail(USAGE, "the URL must be ws:// or wss://, not %s://", mw__scheme_name(a.u.scheme));
    if (a.u.scheme == MW_SCHEME_WSS) open_tls(&a);
    encode_agent(&a);
    long total = get_case_count(&a);
    long n = a.c.cases_given && (long)a.c.cases < total ? (long)a.c.cases : total;
    printf("ws_autobahn: %ld cases on the server, running %ld as agent '%s'\n", total, n, a.c.agent);
    fflush(stdout);
    int ends[END_N] = {0};
    bool ok = true;
    for (long i = 1; i <= n; i++) ok &= run_case(&a, (int)i, ends);
    bool reported = update_reports(&a);
    printf("ws_autobahn: %ld cases: %d closed by the server, %d failed by us, %d dropped, %d timed out, "
           "%d errors; reports %s\n",
           n, ends[END_CLOSED], ends[END_FAILED], ends[END_DROPPED], ends[END_TIMEOUT], ends[END_ERROR],
           reported ? "updated" : "NOT updated");
    mw__tls_ctx_free(a.tls);
    if (!reported || (a.c.self_test && !ok)) return TOOL_EXIT_FAIL;
    return TOOL_EXIT_OK;
}
