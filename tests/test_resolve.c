/* test_resolve.c - asynchronous name resolution on every io backend:
 * "localhost" through evdns from /etc/hosts, numeric IPv4 and IPv6 without a
 * query, a name that cannot exist failing within a bound, cancel (before and
 * after the answer is known) suppressing the callback, 50 concurrent requests
 * each answered once, shutdown with requests pending, and a caller's own
 * event_base driving the resolver. The callback never runs inside
 * mw__resolve_start. The io is polled in this thread with deadlines. */
#include "mw_test.h"

#include "mw_io.h"
#include "resolve_impl.h"
#include "clock_impl.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

static const char *const backends[] = {"epoll", "libevent", "direct"};
#define NBACKENDS (sizeof backends / sizeof backends[0])
#define NCONC 50

typedef struct ctx {
    int calls;
    bool in_start;      /* set around mw__resolve_start */
    bool called_inside; /* a callback ran inside mw__resolve_start */
    mw__resolve_result_t res;
} ctx_t;

static void on_result(const mw__resolve_result_t *res, void *ud) {
    ctx_t *c = ud;
    if (c->in_start) c->called_inside = true;
    c->calls++;
    c->res = *res;
}

static mw_io_t *new_io(const char *backend) {
    mw_io_opts_t o;
    mw_io_opts_init(&o);
    o.backend = backend;
    mw_io_t *io = NULL;
    mw_err_t err = {0};
    assert_int_equal(mw_io_new(&io, &o, &err), 0);
    return io;
}

static mw__resolve_req_t *start(mw_io_t *io, const char *host, const char *port, ctx_t *c) {
    mw__resolve_req_t *req = NULL;
    mw_err_t err = {0};
    c->in_start = true;
    int rc = mw__resolve_start(io, host, port, on_result, c, &req, &err);
    c->in_start = false;
    assert_int_equal(rc, 0);
    assert_non_null(req);
    assert_int_equal(c->calls, 0);
    return req;
}

/* Polls until *count reaches want or timeout_ms passes; returns the count. */
static int poll_until(mw_io_t *io, const int *count, int want, int timeout_ms) {
    uint64_t deadline = mw__deadline_in(NULL, (int64_t)timeout_ms * MW_NS_PER_MS);
    while (*count < want && !mw__deadline_passed(NULL, deadline))
        assert_true(mw_io_poll(io, 10 * MW_NS_PER_MS) >= 0);
    return *count;
}

/* Polls for timeout_ms whatever happens (to show that nothing does). */
static void poll_for(mw_io_t *io, int timeout_ms) {
    uint64_t deadline = mw__deadline_in(NULL, (int64_t)timeout_ms * MW_NS_PER_MS);
    while (!mw__deadline_passed(NULL, deadline)) assert_true(mw_io_poll(io, 5 * MW_NS_PER_MS) >= 0);
}

static bool is_loopback(const struct sockaddr_storage *ss, socklen_t len, uint16_t port) {
    if (ss->ss_family == AF_INET && len == sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        return sin->sin_addr.s_addr == htonl(INADDR_LOOPBACK) && ntohs(sin->sin_port) == port;
    }
    if (ss->ss_family == AF_INET6 && len == sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        return IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr) && ntohs(sin6->sin6_port) == port;
    }
    return false;
}

static void test_resolve_localhost_from_hosts_file(void **state) {
    (void)state;
    for (size_t b = 0; b < NBACKENDS; b++) {
        mw_io_t *io = new_io(backends[b]);
        ctx_t c = {0};
        start(io, "localhost", "7001", &c);
        assert_int_equal(poll_until(io, &c.calls, 1, 5000), 1);
        assert_false(c.called_inside);
        assert_int_equal(c.res.code, 0);
        assert_true(c.res.naddrs >= 1 && c.res.naddrs <= MW_RESOLVE_MAX_ADDRS);
        for (int i = 0; i < c.res.naddrs; i++)
            assert_true(is_loopback(&c.res.addrs[i], c.res.lens[i], 7001));
        /* The same io finds the same resolver again. */
        ctx_t c2 = {0};
        start(io, "localhost", "7002", &c2);
        assert_int_equal(poll_until(io, &c2.calls, 1, 5000), 1);
        assert_int_equal(c2.res.code, 0);
        assert_true(is_loopback(&c2.res.addrs[0], c2.res.lens[0], 7002));
        poll_for(io, 20);
        assert_int_equal(c.calls, 1);
        assert_int_equal(c2.calls, 1);
        mw_resolve_shutdown(io);
        mw_io_free(io);
    }
}

static void test_resolve_numeric_v4_and_v6_without_query(void **state) {
    (void)state;
    for (size_t b = 0; b < NBACKENDS; b++) {
        mw_io_t *io = new_io(backends[b]);
        ctx_t c4 = {0}, c6 = {0}, cbad = {0};
        start(io, "127.0.0.1", "7001", &c4);
        start(io, "::1", "443", &c6);
        start(io, "127.0.0.1", "99999", &cbad);
        /* One poll runs the posted results. */
        assert_true(mw_io_poll(io, 0) >= 0);
        assert_int_equal(c4.calls, 1);
        assert_int_equal(c6.calls, 1);
        assert_int_equal(cbad.calls, 1);
        assert_false(c4.called_inside || c6.called_inside || cbad.called_inside);
        assert_int_equal(c4.res.code, 0);
        assert_int_equal(c4.res.naddrs, 1);
        assert_int_equal(c4.res.addrs[0].ss_family, AF_INET);
        assert_true(is_loopback(&c4.res.addrs[0], c4.res.lens[0], 7001));
        assert_int_equal(c6.res.code, 0);
        assert_int_equal(c6.res.naddrs, 1);
        assert_int_equal(c6.res.addrs[0].ss_family, AF_INET6);
        assert_true(is_loopback(&c6.res.addrs[0], c6.res.lens[0], 443));
        assert_int_equal(cbad.res.code, MW_ERESOLVE);
        assert_int_equal(cbad.res.naddrs, 0);
        assert_non_null(strstr(cbad.res.text, "99999"));
        mw_resolve_shutdown(io);
        mw_io_free(io);
    }
}

static void test_resolve_nonexistent_name_fails_within_10s(void **state) {
    (void)state;
    for (size_t b = 0; b < NBACKENDS; b++) {
        mw_io_t *io = new_io(backends[b]);
        ctx_t c = {0};
        uint64_t t0 = mw_now_ns();
        start(io, "nosuch.invalid", "80", &c);
        assert_int_equal(poll_until(io, &c.calls, 1, 10000), 1);
        assert_true(mw_now_ns() - t0 < 10 * MW_NS_PER_S);
        assert_false(c.called_inside);
        assert_true(c.res.code == MW_ERESOLVE || c.res.code == MW_ETIMEDOUT);
        assert_int_equal(c.res.naddrs, 0);
        assert_non_null(strstr(c.res.text, "resolve nosuch.invalid: "));
        poll_for(io, 20);
        assert_int_equal(c.calls, 1);
        assert_int_equal(mw_io_poll(io, 0), 0); /* the pump stopped with the last query */
        mw_resolve_shutdown(io);
        mw_io_free(io);
    }
}

static void test_resolve_cancel_prevents_the_callback(void **state) {
    (void)state;
    for (size_t b = 0; b < NBACKENDS; b++) {
        mw_io_t *io = new_io(backends[b]);
        ctx_t cn = {0}, ch = {0}, cq = {0}, keep = {0};
        mw__resolve_req_t *rn = start(io, "127.0.0.1", "1", &cn);   /* posted */
        mw__resolve_req_t *rh = start(io, "localhost", "1", &ch);   /* from hosts */
        mw__resolve_req_t *rq = start(io, "cancel.invalid", "1", &cq); /* a query */
        start(io, "::1", "1", &keep);
        mw__resolve_cancel(rn);
        mw__resolve_cancel(rh);
        mw__resolve_cancel(rq);
        mw__resolve_cancel(NULL);
        assert_int_equal(poll_until(io, &keep.calls, 1, 5000), 1);
        poll_for(io, 100); /* the query's cancellation is delivered by now */
        assert_int_equal(cn.calls, 0);
        assert_int_equal(ch.calls, 0);
        assert_int_equal(cq.calls, 0);
        assert_int_equal(keep.calls, 1);
        assert_int_equal(mw_io_poll(io, 0), 0);
        mw_resolve_shutdown(io);
        mw_io_free(io);
    }
}

static void test_resolve_50_concurrent_requests_each_answered_once(void **state) {
    (void)state;
    static const char *const hosts[] = {"localhost", "127.0.0.1", "::1"};
    for (size_t b = 0; b < NBACKENDS; b++) {
        mw_io_t *io = new_io(backends[b]);
        ctx_t c[NCONC];
        memset(c, 0, sizeof c);
        char port[NCONC][16];
        for (int i = 0; i < NCONC; i++) {
            snprintf(port[i], sizeof port[i], "%u", 1000u + (unsigned)i);
            start(io, hosts[i % 3], port[i], &c[i]);
        }
        uint64_t deadline = mw__deadline_in(NULL, 5 * MW_NS_PER_S);
        int done = 0;
        while (done < NCONC && !mw__deadline_passed(NULL, deadline)) {
            assert_true(mw_io_poll(io, 10 * MW_NS_PER_MS) >= 0);
            done = 0;
            for (int i = 0; i < NCONC; i++) done += c[i].calls;
        }
        poll_for(io, 20);
        for (int i = 0; i < NCONC; i++) {
            assert_int_equal(c[i].calls, 1);
            assert_false(c[i].called_inside);
            assert_int_equal(c[i].res.code, 0);
            assert_true(is_loopback(&c[i].res.addrs[0], c[i].res.lens[0], (uint16_t)(1000 + i)));
        }
        mw_resolve_shutdown(io);
        mw_io_free(io);
    }
}

static void test_resolve_shutdown_cancels_pending_requests(void **state) {
    (void)state;
    for (size_t b = 0; b < NBACKENDS; b++) {
        mw_io_t *io = new_io(backends[b]);
        ctx_t c1 = {0}, c2 = {0}, c3 = {0};
        start(io, "127.0.0.1", "1", &c1);
        start(io, "localhost", "1", &c2);
        start(io, "shutdown.invalid", "1", &c3);
        mw_resolve_shutdown(io);
        mw_resolve_shutdown(io); /* nothing left: a no-op */
        poll_for(io, 20);
        assert_int_equal(c1.calls + c2.calls + c3.calls, 0);
        /* A new resolver is created on the next use. */
        ctx_t c4 = {0};
        start(io, "localhost", "2", &c4);
        assert_int_equal(poll_until(io, &c4.calls, 1, 5000), 1);
        assert_int_equal(c4.res.code, 0);
        /* Shutdown right before mw_io_free, with a result still posted. */
        ctx_t c5 = {0};
        start(io, "::1", "3", &c5);
        mw_resolve_shutdown(io);
        mw_io_free(io);
        assert_int_equal(c5.calls, 0);
    }
}

/* ---- a caller's event_base ---------------------------------------------------- */

typedef struct loop_ctx {
    ctx_t c;
    struct event_base *base;
} loop_ctx_t;

static void on_result_exit(const mw__resolve_result_t *res, void *ud) {
    loop_ctx_t *l = ud;
    on_result(res, &l->c);
    event_base_loopexit(l->base, NULL);
}

static void on_deadline(evutil_socket_t fd, short ev, void *ud) {
    (void)fd;
    (void)ev;
    event_base_loopexit(ud, NULL);
}

static void test_resolve_callers_event_base_drives_the_resolver(void **state) {
    (void)state;
    struct event_base *base = event_base_new();
    assert_non_null(base);
    mw_io_opts_t o;
    mw_io_opts_init(&o);
    o.backend = "libevent";
    o.base = base;
    mw_io_t *io = NULL;
    assert_int_equal(mw_io_new(&io, &o, NULL), 0);
    struct event *tmo = evtimer_new(base, on_deadline, base);
    struct timeval tv = {5, 0};
    evtimer_add(tmo, &tv);
    loop_ctx_t l = {.base = base};
    mw__resolve_req_t *req = NULL;
    assert_int_equal(mw__resolve_start(io, "localhost", "80", on_result_exit, &l, &req, NULL), 0);
    event_base_dispatch(base);
    assert_int_equal(l.c.calls, 1);
    assert_int_equal(l.c.res.code, 0);
    assert_true(is_loopback(&l.c.res.addrs[0], l.c.res.lens[0], 80));
    event_free(tmo);
    mw_resolve_shutdown(io);
    mw_io_free(io);
    event_base_free(base);
}

/* A shutdown from a callback that the caller's loop runs cannot loop the
 * base again; the cancelled query is then finished by that loop. */
typedef struct reent {
    mw_io_t *io;
    struct event_base *base;
    ctx_t first, pending;
} reent_t;

static void on_first_shutdown(const mw__resolve_result_t *res, void *ud) {
    reent_t *r = ud;
    on_result(res, &r->first);
    mw_resolve_shutdown(r->io);
    event_base_loopexit(r->base, NULL);
}

static void test_resolve_shutdown_from_a_callback_in_the_callers_loop(void **state) {
    (void)state;
    struct event_base *base = event_base_new();
    mw_io_opts_t o;
    mw_io_opts_init(&o);
    o.backend = "libevent";
    o.base = base;
    reent_t r = {.base = base};
    assert_int_equal(mw_io_new(&r.io, &o, NULL), 0);
    struct event *tmo = evtimer_new(base, on_deadline, base);
    struct timeval tv = {5, 0};
    evtimer_add(tmo, &tv);
    assert_int_equal(mw__resolve_start(r.io, "pending.invalid", "80", on_result, &r.pending, NULL,
                                      NULL), 0);
    assert_int_equal(mw__resolve_start(r.io, "127.0.0.1", "80", on_first_shutdown, &r, NULL, NULL),
                     0);
    event_base_dispatch(base);
    event_base_loop(base, EVLOOP_NONBLOCK); /* the loop goes on running */
    assert_int_equal(r.first.calls, 1);
    assert_int_equal(r.pending.calls, 0);
    event_free(tmo);
    mw_io_free(r.io);
    event_base_free(base);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolve_localhost_from_hosts_file),
        cmocka_unit_test(test_resolve_numeric_v4_and_v6_without_query),
        cmocka_unit_test(test_resolve_nonexistent_name_fails_within_10s),
        cmocka_unit_test(test_resolve_cancel_prevents_the_callback),
        cmocka_unit_test(test_resolve_50_concurrent_requests_each_answered_once),
        cmocka_unit_test(test_resolve_shutdown_cancels_pending_requests),
        cmocka_unit_test(test_resolve_callers_event_base_drives_the_resolver),
        cmocka_unit_test(test_resolve_shutdown_from_a_callback_in_the_callers_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
