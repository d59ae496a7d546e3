/* test_opts.c - the option groups of Clt and Svc: the defaults of
 * mw_clt_opts_init / mw_svc_opts_init, and the combinations refused with
 * MW_EINVAL and a sentence naming the field (an event-only option in spin or
 * blocking mode, an io beside the Svc's workers, a retry policy that makes no
 * sense), next to the same options accepted where they belong. No socket is
 * needed for a refusal: the options are checked before anything else. The
 * retry policy in action is in test_endpoint.c (fake clock) and test_clt.c
 * (synchronous connects). */
#include "mw_test.h"
#include "test_proto.h"

#include "mw_clock.h"
#include "mw_clt.h"
#include "mw_io.h"
#include "resolve_impl.h"
#include "mw_svc.h"
#include "stream_impl.h"

#include <math.h>
#include <string.h>

#define MS MW_NS_PER_MS

static void c_connect(mw_clt_t *c, void *ud) { (void)c; (void)ud; }
static void c_msg(mw_clt_t *c, const mw_schema_t *s, const void *m, void *ud) { (void)c; (void)s; (void)m; (void)ud; }
static void c_close(mw_clt_t *c, int r, void *ud) { (void)c; (void)r; (void)ud; }
static bool c_can(mw_clt_t *c, int r, uint32_t n, void *ud) { (void)c; (void)r; (void)n; (void)ud; return true; }
static void s_msg(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *m, void *ud) {
    (void)s; (void)id; (void)sch; (void)m; (void)ud;
}
static void s_conn(mw_svc_t *s, mw_conn_id_t id, void *ud) { (void)s; (void)id; (void)ud; }
static void s_close(mw_svc_t *s, mw_conn_id_t id, int r, void *ud) { (void)s; (void)id; (void)r; (void)ud; }

/* ---- defaults -------------------------------------------------------------- */

static void test_clt_defaults_are_the_documented_ones(void **state) {
    (void)state;
    mw_clt_opts_t o;
    memset(&o, 0x5a, sizeof o);
    mw_clt_opts_init(&o);
    assert_int_equal(o.mode, MW_MODE_SPIN);
    assert_int_equal(o.connect_timeout_ns, 5000 * MS);
    assert_int_equal(o.retry.max_attempts, 0); /* one attempt, or no limit with event.reconnect */
    assert_int_equal(o.retry.min_delay_ns, 100 * MS);
    assert_int_equal(o.retry.max_delay_ns, 10000 * MS);
    assert_true(o.retry.jitter == 0.2);
    assert_int_equal(o.linger_ns, -1); /* the mode's default: 2 s spin/blocking, 0 event */
    assert_int_equal(o.sync.timeout_ns, -1);
    assert_int_equal(o.sync.idle.kind, MW_IDLE_BUSY);
    mw_clt_event_opts_t zero;
    memset(&zero, 0, sizeof zero);
    assert_memory_equal(&o.event, &zero, sizeof zero); /* nothing event-only is on by default */
}

static void test_svc_defaults_are_the_documented_ones(void **state) {
    (void)state;
    mw_svc_opts_t o;
    memset(&o, 0x5a, sizeof o);
    mw_svc_opts_init(&o);
    assert_int_equal(o.mode, MW_MODE_SPIN);
    assert_int_equal(o.sync.timeout_ns, -1);
    assert_int_equal(o.sync.idle.kind, MW_IDLE_BUSY);
    assert_int_equal(o.event.workers, 1);
    assert_null(o.event.io);
    assert_null(o.event.backend);
    assert_null(o.event.on_msg);
    assert_int_equal(o.linger_ns, 2000 * MS);
    assert_int_equal(o.max_connections, 1024);
}

/* ---- Clt: refused combinations --------------------------------------------------- */

/* mw_clt_connect must refuse o at once (nobody listens on the URL: a check
 * that came after the connect would report MW_ECONNREFUSED instead). */
static void clt_refused(const mw_clt_opts_t *o, const char *words) {
    mw_clt_t *c = (mw_clt_t *)(uintptr_t)1;
    mw_err_t err = {0};
    int r = mw_clt_connect(&c, "tcp://127.0.0.1:1", &test_protocol, o, &err);
    if (r != MW_EINVAL) fail_msg("mode %s: %s (%s), want MW_EINVAL naming \"%s\"", mw_mode_name(o->mode), mw_errname(r),
                                 mw_err_text(&err), words);
    assert_null(c);
    if (!strstr(mw_err_text(&err), words)) fail_msg("error \"%s\" does not say \"%s\"", mw_err_text(&err), words);
}

static void test_clt_event_options_outside_event_mode_are_refused_by_name(void **state) {
    (void)state;
    mw_io_t *io;
    mw_err_t err = {0};
    assert_int_equal(mw_io_new(&io, NULL, &err), 0);
    static const mw_mode_t modes[] = {MW_MODE_SPIN, MW_MODE_BLOCKING};
    for (int m = 0; m < 2; m++) {
        for (int field = 0; field < 12; field++) {
            mw_clt_opts_t o;
            mw_clt_opts_init(&o);
            o.mode = modes[m];
            const char *name = NULL;
            switch (field) {
            case 0: o.event.io = io; name = "opts.event.io"; break;
            case 1: o.event.on_connect = c_connect; name = "opts.event.on_connect"; break;
            case 2: o.event.on_msg = c_msg; name = "opts.event.on_msg"; break;
            case 3: o.event.on_close = c_close; name = "opts.event.on_close"; break;
            case 4: o.event.on_drain = c_connect; name = "opts.event.on_drain"; break;
            case 5: o.event.on_heartbeat = c_connect; name = "opts.event.on_heartbeat"; break;
            case 6: o.event.can_reconnect = c_can; name = "opts.event.can_reconnect"; break;
            case 7: o.event.reconnect = true; name = "opts.event.reconnect"; break;
            case 8: o.event.async_connect = true; name = "opts.event.async_connect"; break;
            case 9: o.event.ttl_ns = MW_NS_PER_S; name = "opts.event.ttl_ns"; break;
            case 10: o.event.idle_timeout_ns = MW_NS_PER_S; name = "opts.event.idle_timeout_ns"; break;
            default: o.event.heartbeat_ns = MW_NS_PER_S; name = "opts.event.heartbeat_ns"; break;
            }
            clt_refused(&o, name);
            clt_refused(&o, mw_mode_name(modes[m]));
        }
    }
    mw_io_free(io);
}

static void test_clt_event_mode_without_an_io_is_refused(void **state) {
    (void)state;
    mw_clt_opts_t o;
    mw_clt_opts_init(&o);
    o.mode = MW_MODE_EVENT;
    o.event.on_msg = c_msg;
    clt_refused(&o, "opts.event.io");
}

static void test_clt_retry_policy_out_of_range_is_refused(void **state) {
    (void)state;
    mw_clt_opts_t o;
    double bad_jitter[] = {-0.1, 1.5, NAN};
    for (int i = 0; i < 3; i++) {
        mw_clt_opts_init(&o);
        o.retry.jitter = bad_jitter[i];
        clt_refused(&o, "opts.retry.jitter");
    }
    mw_clt_opts_init(&o);
    o.retry.min_delay_ns = -1;
    clt_refused(&o, "opts.retry");
    mw_clt_opts_init(&o);
    o.retry.max_delay_ns = -1;
    clt_refused(&o, "opts.retry");
}

/* mw_clt_open_stream checks the same way, and the stream (whose ownership
 * passed) is freed: ASan's leak check would see it otherwise. */
static void test_clt_open_stream_refuses_event_options_in_spin_mode(void **state) {
    (void)state;
    mw_stream_t *a, *b;
    assert_int_equal(mw__pair_new(&a, &b, 4096, 4096), 0);
    mw_clt_opts_t o;
    mw_clt_opts_init(&o);
    o.event.on_msg = c_msg;
    mw_clt_t *c = NULL;
    mw_err_t err = {0};
    assert_int_equal(mw_clt_open_stream(&c, a, &test_protocol, &o, &err), MW_EINVAL);
    assert_null(c);
    assert_non_null(strstr(mw_err_text(&err), "opts.event.on_msg"));
    /* the same options in event mode, with an io, are accepted */
    mw_io_t *io;
    assert_int_equal(mw_io_new(&io, NULL, &err), 0);
    mw_clt_opts_init(&o);
    o.mode = MW_MODE_EVENT;
    o.event.io = io;
    o.event.on_msg = c_msg;
    o.sync.timeout_ns = MW_NS_PER_S; /* .sync is ignored in event mode, not refused */
    assert_int_equal(mw_clt_open_stream(&c, b, &test_protocol, &o, &err), 0);
    mw_clt_free(c);
    mw_resolve_shutdown(io);
    mw_io_free(io);
}

/* Every event option at once, in event mode, with an async connect: accepted
 * (nothing listens; the attempt fails later, on the io). */
static void test_clt_every_event_option_is_accepted_in_event_mode(void **state) {
    (void)state;
    mw_io_t *io;
    mw_err_t err = {0};
    assert_int_equal(mw_io_new(&io, NULL, &err), 0);
    mw_clt_opts_t o;
    mw_clt_opts_init(&o);
    o.mode = MW_MODE_EVENT;
    o.event = (mw_clt_event_opts_t){.io = io, .on_connect = c_connect, .on_msg = c_msg, .on_close = c_close,
                                    .on_drain = c_connect, .on_heartbeat = c_connect, .can_reconnect = c_can,
                                    .reconnect = true, .async_connect = true, .ttl_ns = MW_NS_PER_S,
                                    .idle_timeout_ns = MW_NS_PER_S, .heartbeat_ns = MW_NS_PER_S};
    o.sync.timeout_ns = 5 * MS;
    o.retry = (mw_retry_opts_t){.max_attempts = 3, .min_delay_ns = MS, .max_delay_ns = 0, .jitter = 1};
    mw_clt_t *c = NULL;
    int r = mw_clt_connect(&c, "tcp://127.0.0.1:1", &test_protocol, &o, &err);
    if (r != 0) fail_msg("connect: %s: %s", mw_errname(r), mw_err_text(&err));
    assert_non_null(c);
    mw_clt_free(c);
    mw_resolve_shutdown(io);
    mw_io_free(io);
}

/* ---- Svc: refused combinations ----------------------------------------------------- */

static void svc_refused(const mw_svc_opts_t *o, const char *words) {
    mw_svc_t *s = (mw_svc_t *)(uintptr_t)1;
    mw_err_t err = {0};
    int r = mw_svc_listen(&s, "tcp://127.0.0.1:0", &test_protocol, o, &err);
    if (r != MW_EINVAL) {
        if (r == 0) mw_svc_free(s);
        fail_msg("mode %s: %s (%s), want MW_EINVAL naming \"%s\"", mw_mode_name(o->mode), mw_errname(r),
                 mw_err_text(&err), words);
    }
    assert_null(s);
    if (!strstr(mw_err_text(&err), words)) fail_msg("error \"%s\" does not say \"%s\"", mw_err_text(&err), words);
}

static void svc_accepted(const mw_svc_opts_t *o) {
    mw_svc_t *s = NULL;
    mw_err_t err = {0};
    int r = mw_svc_listen(&s, "tcp://127.0.0.1:0", &test_protocol, o, &err);
    if (r != 0) fail_msg("mode %s: %s: %s", mw_mode_name(o->mode), mw_errname(r), mw_err_text(&err));
    assert_true(mw_svc_port(s) > 0);
    mw_svc_free(s);
}

static void test_svc_event_options_outside_event_mode_are_refused_by_name(void **state) {
    (void)state;
    mw_io_t *io;
    mw_err_t err = {0};
    assert_int_equal(mw_io_new(&io, NULL, &err), 0);
    static const mw_mode_t modes[] = {MW_MODE_SPIN, MW_MODE_BLOCKING};
    for (int m = 0; m < 2; m++) {
        mw_svc_opts_t o;
        mw_svc_opts_init(&o);
        o.mode = modes[m];
        o.event.on_msg = s_msg;
        svc_refused(&o, "opts.event.on_msg");
        svc_refused(&o, "mw_svc_recv"); /* and says where the messages go instead */
        mw_svc_opts_init(&o);
        o.mode = modes[m];
        o.event.io = io;
        svc_refused(&o, "opts.event.io");
        mw_svc_opts_init(&o);
        o.mode = modes[m];
        o.event.backend = "libevent";
        svc_refused(&o, "opts.event.backend");
        /* the callbacks at the top level run in every mode; workers is ignored */
        mw_svc_opts_init(&o);
        o.mode = modes[m];
        o.on_accept = s_conn;
        o.on_close = s_close;
        o.on_drain = s_conn;
        o.event.workers = 4;
        o.sync.timeout_ns = MS;
        svc_accepted(&o);
    }
    mw_io_free(io);
}

static void test_svc_io_is_for_workers_zero_only(void **state) {
    (void)state;
    mw_io_t *io;
    mw_err_t err = {0};
    assert_int_equal(mw_io_new(&io, NULL, &err), 0);
    mw_svc_opts_t o;
    mw_svc_opts_init(&o);
    o.mode = MW_MODE_EVENT;
    o.event.on_msg = s_msg;
    o.event.io = io; /* workers is 1 by default: this io would never run anything */
    svc_refused(&o, "opts.event.io");
    o.event.workers = 0;
    o.event.io = NULL;
    svc_refused(&o, "opts.event.io");
    o.event.io = io;
    o.sync.timeout_ns = MS; /* ignored in event mode */
    svc_accepted(&o);
    mw_svc_opts_init(&o);
    o.mode = MW_MODE_EVENT;
    o.event.on_msg = s_msg;
    o.event.workers = 2;
    o.event.backend = "libevent";
    svc_accepted(&o);
    mw_io_free(io);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clt_defaults_are_the_documented_ones),
        cmocka_unit_test(test_svc_defaults_are_the_documented_ones),
        cmocka_unit_test(test_clt_event_options_outside_event_mode_are_refused_by_name),
        cmocka_unit_test(test_clt_event_mode_without_an_io_is_refused),
        cmocka_unit_test(test_clt_retry_policy_out_of_range_is_refused),
        cmocka_unit_test(test_clt_open_stream_refuses_event_options_in_spin_mode),
        cmocka_unit_test(test_clt_every_event_option_is_accepted_in_event_mode),
        cmocka_unit_test(test_svc_event_options_outside_event_mode_are_refused_by_name),
        cmocka_unit_test(test_svc_io_is_for_workers_zero_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
