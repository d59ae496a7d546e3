/* test_work.c - work counts mean progress (issue 8, defect 5).
 *
 * A poll reports the work its callbacks did, not how many sources it called:
 * over the direct selector every source is called on every poll, and a quiet
 * one must count 0, or an idle strategy fed with the count never backs off.
 * Every body runs over every backend (epoll, libevent, direct): quiet streams
 * and quiet event-mode Clts report 0 work for many polls, a message makes the
 * poll that delivers it report work, a spin-mode Svc's poll reports 0 while
 * its client is quiet, and a backoff idle strategy driven by mw_io_run_spin
 * reaches its park step while quiet sources are registered.
 */
#include "mw_test.h"
#include "svc_harness.h"
#include "test_proto.h"

#include "mw_clock.h"
#include "mw_clt.h"
#include "mw_idle.h"
#include "mw_io.h"
#include "mw_stream.h"
#include "mw_svc.h"
#include "mw_tcp.h"
#include "clock_impl.h"
#include "stream_impl.h"
#include "tcp_impl.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *const backends[] = {"epoll", "libevent", "direct"};
#define NBACKENDS (sizeof backends / sizeof backends[0])
#define IDLE_POLLS 1000
#define WAIT_NS (10 * MW_NS_PER_S)

static mw_io_t *io_open(const char *backend) {
    mw_io_opts_t o;
    mw_io_opts_init(&o);
    o.backend = backend;
    mw_io_t *io = NULL;
    mw_err_t err = {0};
    int r = mw_io_new(&io, &o, &err);
    if (r != 0) fail_msg("io %s: %s", backend, mw_err_text(&err));
    return io;
}

static int idle_polls(mw_io_t *io) {
    int total = 0;
    for (int i = 0; i < IDLE_POLLS; i++) {
        int n = mw_io_poll(io, 0);
        assert_true(n >= 0);
        total += n;
    }
    return total;
}

/* ---- streams: an owner that reads and reports what it read ------------------ */

typedef struct reader {
    mw_sel_src_t src;
    mw_stream_t *s;
    size_t got;
} reader_t;

static int on_readable(mw_sel_src_t *src, int events) {
    (void)events;
    reader_t *r = src->ud;
    char buf[256];
    ssize_t n = mw__stream_read(r->s, buf, sizeof buf);
    if (n > 0) r->got += (size_t)n;
    return n == MW_EAGAIN ? 0 : 1; /* bytes, or the end of the stream */
}

static void reader_add(mw_io_t *io, reader_t *r, mw_stream_t *s) {
    memset(r, 0, sizeof *r);
    r->s = s;
    mw_sel_src_init(&r->src, mw__stream_fd(s), MW_WANT_READ, on_readable, r);
    assert_int_equal(mw_io_add(io, &r->src), 0);
}

/* Polls until r got n bytes; returns the work those polls reported. */
static int poll_until_got(mw_io_t *io, reader_t *r, size_t n) {
    uint64_t dl = mw__deadline_in(NULL, WAIT_NS);
    int work = 0;
    while (r->got < n) {
        int w = mw_io_poll(io, MW_NS_PER_MS);
        assert_true(w >= 0);
        work += w;
        if (mw__deadline_passed(NULL, dl)) fail_msg("no bytes arrived");
    }
    return work;
}

static void test_work_quiet_streams_report_no_work_on_every_backend(void **state) {
    (void)state;
    for (size_t b = 0; b < NBACKENDS; b++) {
        mw_io_t *io = io_open(backends[b]);
        bool direct = strcmp(backends[b], "direct") == 0;
        mw_err_t err = {0};
        mw_tcp_opts_t to;
        mw__tcp_opts_init(&to);
        mw__listener_t *lis = NULL;
        assert_int_equal(mw__tcp_listen(&lis, "127.0.0.1", "0", &to, &err), 0);
        char port[16];
        snprintf(port, sizeof port, "%d", mw__listener_port(lis));
        mw_stream_t *cs = NULL, *pa = NULL, *pb = NULL;
        assert_int_equal(mw__tcp_connect(&cs, "127.0.0.1", port, &to, WAIT_NS, &err), 0);
        mw_stream_t *ss = mw_test_accept(lis, 5000);
        reader_t rc, rs, rp;
        reader_add(io, &rc, cs);
        reader_add(io, &rs, ss);
        if (direct) { /* no fd: only the direct backend can poll it */
            assert_int_equal(mw__pair_new(&pa, &pb, 4096, 0), 0);
            reader_add(io, &rp, pa);
        }
        assert_int_equal(idle_polls(io), 0);

        assert_int_equal(mw__stream_write(ss, "abc", 3), 3);
        int w = poll_until_got(io, &rc, 3);
        assert_true(w >= 1);
        assert_int_equal(idle_polls(io), 0);
        if (direct) {
            assert_int_equal(mw__stream_write(pb, "xy", 2), 2);
            assert_true(poll_until_got(io, &rp, 2) >= 1);
            assert_int_equal(idle_polls(io), 0);
            assert_int_equal(mw_io_del(io, &rp.src), 0);
            mw_stream_free(pa);
            mw_stream_free(pb);
        }
        assert_int_equal(mw_io_del(io, &rc.src), 0);
        assert_int_equal(mw_io_del(io, &rs.src), 0);
        mw_stream_free(cs);
        mw_stream_free(ss);
        mw__listener_free(lis);
        mw_io_free(io);
    }
}

/* ---- an echo Svc on its own worker and event-mode Clts on the test's io ------- */

/* The fixture's echoing Svc (tests/util/svc_harness.h), event mode. */
static void echo_svc(svh_t *f) {
    mw_svc_opts_t o;
    f->mode = MW_MODE_EVENT;
    svh_svc_opts(f, &o);
    f->on_msg = svh_echo;
    svh_listen(f, "tcp", &o);
}

static atomic_int g_echoes;

static void clt_on_msg(mw_clt_t *c, const mw_schema_t *s, const void *msg, void *ud) {
    (void)c;
    (void)s;
    (void)msg;
    (void)ud;
    atomic_fetch_add(&g_echoes, 1);
}

/* On the test's io: the test frees it (before the io). */
static mw_clt_t *event_clt(svh_t *f, mw_io_t *io) {
    mw_clt_opts_t o;
    mw_clt_opts_init(&o);
    o.mode = MW_MODE_EVENT;
    o.event.io = io;
    o.event.on_msg = clt_on_msg;
    o.sync.timeout_ns = WAIT_NS;
    return svh_clt_connect_untracked(f, &o);
}

/* Polls until the connect's leftovers (on_connect, a first flush) are done:
 * a poll that reports 0 work. */
static void settle(mw_io_t *io) {
    uint64_t dl = mw__deadline_in(NULL, WAIT_NS);
    while (mw_io_poll(io, 0) != 0)
        if (mw__deadline_passed(NULL, dl)) fail_msg("the io never went quiet");
}

static void test_work_quiet_event_clt_reports_no_work_on_every_backend(void **state) {
    svh_t *f = *state;
    echo_svc(f);
    for (size_t b = 0; b < NBACKENDS; b++) {
        mw_io_t *io = io_open(backends[b]);
        mw_clt_t *c = event_clt(f, io);
        settle(io);
        int idle = idle_polls(io);
        if (idle != 0) fail_msg("%s: %d quiet polls reported %d work", backends[b], IDLE_POLLS, idle);

        atomic_store(&g_echoes, 0);
        ping_t p = {.seq = 1, .sent_ns = 2};
        assert_int_equal(mw_clt_send(c, ping_schema(), &p), 0);
        uint64_t dl = mw__deadline_in(NULL, WAIT_NS);
        int work = 0;
        while (atomic_load(&g_echoes) == 0) {
            int w = mw_io_poll(io, MW_NS_PER_MS);
            assert_true(w >= 0);
            work += w;
            if (mw__deadline_passed(NULL, dl)) fail_msg("%s: no echo", backends[b]);
        }
        assert_true(work >= 1); /* the poll that delivered it did work */
        assert_int_equal(idle_polls(io), 0);
        mw_clt_close(c);
        mw_io_free(io);
        mw_clt_free(c);
    }
}

/* ---- a spin Svc with a quiet client ----------------------------------------- */

static void test_work_spin_svc_poll_reports_no_work_while_client_is_quiet(void **state) {
    svh_t *f = *state;
    mw_svc_opts_t o;
    f->mode = MW_MODE_SPIN;
    svh_svc_opts(f, &o);
    svh_listen(f, "tcp", &o);
    mw_svc_t *s = f->svc;
    svh_raw_connect(f);
    uint64_t dl = mw__deadline_in(NULL, WAIT_NS);
    int work = 0;
    while (mw_svc_conn_count(s) == 0) {
        int w = mw_svc_poll(s, 0);
        assert_true(w >= 0);
        work += w;
        if (mw__deadline_passed(NULL, dl)) fail_msg("never accepted");
    }
    assert_true(work >= 1); /* the accept */
    int idle = 0;
    for (int i = 0; i < IDLE_POLLS; i++) idle += mw_svc_poll(s, 0);
    assert_int_equal(idle, 0);
}

/* ---- mw_io_run_spin with a backoff idle strategy ------------------------------ */

/* A source that is always ready (a writable socket) with nothing to do: it
 * reports no work, and ends the run once the idle strategy has parked. */
typedef struct sentinel {
    mw_sel_src_t src;
    mw_io_t *io;
    mw_idle_t *idle;
    uint64_t deadline;
    int calls;
} sentinel_t;

#define WANT_PARKS 3

static int on_sentinel(mw_sel_src_t *src, int events) {
    (void)events;
    sentinel_t *k = src->ud;
    k->calls++;
    if (k->idle->parks >= WANT_PARKS || mw__deadline_passed(NULL, k->deadline)) mw_io_break(k->io);
    return 0;
}

static void test_work_backoff_idle_parks_under_run_spin_on_every_backend(void **state) {
    svh_t *f = *state;
    echo_svc(f);
    for (size_t b = 0; b < NBACKENDS; b++) {
        mw_io_t *io = io_open(backends[b]);
        mw_clt_t *c = event_clt(f, io); /* a quiet connection on the io too */
        settle(io);
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
        mw_idle_t idle;
        mw_idle_init_backoff(&idle, 10, 5, MW_NS_PER_US, 4 * MW_NS_PER_US);
        sentinel_t k = {.io = io, .idle = &idle, .deadline = mw__deadline_in(NULL, WAIT_NS)};
        mw_sel_src_init(&k.src, sv[0], MW_WANT_WRITE, on_sentinel, &k);
        assert_int_equal(mw_io_add(io, &k.src), 0);
        assert_int_equal(mw_io_run_spin(io, &idle), 0);
        if (idle.parks < WANT_PARKS)
            fail_msg("%s: no park after %d polls (spins %u, yields %u)", backends[b], k.calls, idle.spins,
                     idle.yields);
        assert_true(k.calls >= 10 + 5 + WANT_PARKS);
        assert_int_equal(mw_io_del(io, &k.src), 0);
        close(sv[0]);
        close(sv[1]);
        mw_clt_close(c);
        mw_io_free(io);
        mw_clt_free(c);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_work_quiet_streams_report_no_work_on_every_backend),
        cmocka_unit_test_setup_teardown(test_work_quiet_event_clt_reports_no_work_on_every_backend, svh_setup,
                                        svh_teardown),
        cmocka_unit_test_setup_teardown(test_work_spin_svc_poll_reports_no_work_while_client_is_quiet, svh_setup,
                                        svh_teardown),
        cmocka_unit_test_setup_teardown(test_work_backoff_idle_parks_under_run_spin_on_every_backend, svh_setup,
                                        svh_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
