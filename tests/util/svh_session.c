/* svh_session.c - see svh_session.h. */
#include "svh_session.h"
#include "clock_impl.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int svh_session_setup(void **state) {
    mw_mode_t mode = *state ? *(mw_mode_t *)*state : MW_MODE_EVENT;
    if (svh_setup(state) != 0) return -1;
    svh_t *f = *state;
    f->mode = mode;
    snprintf(f->dir, sizeof f->dir, "/tmp/mw_svh_XXXXXX");
    if (!mkdtemp(f->dir)) {
        f->dir[0] = 0;
        return -1;
    }
    snprintf(f->cdir, sizeof f->cdir, "%s/clt", f->dir);
    snprintf(f->sdir, sizeof f->sdir, "%s/svc", f->dir);
    if (mkdir(f->cdir, 0700) != 0 || mkdir(f->sdir, 0700) != 0) return -1;
    return 0;
}

static void on_logon_done(void *ud, const char *session, uint64_t conn) {
    (void)session;
    svh_t *f = ud;
    atomic_store(&f->logon_conn, conn);
    atomic_fetch_add(&f->logons, 1);
}

void svh_session_svc_opts(svh_t *f, mw_svc_opts_t *o) {
    svh_svc_opts(f, o);
    f->session = true;
    o->session.enabled = true;
    o->session.journal_dir = f->sdir;
    o->session.on_logon_done = on_logon_done;
}

int svh_session_on_logon(void *ud, const mw_logon_info_t *li, char *reason, size_t cap) {
    svh_t *f = ud;
    atomic_fetch_add(&f->hook_calls, 1);
    if (f->reject && strcmp(li->user, "bad") == 0) {
        snprintf(reason, cap, "%s", f->reject);
        return 1;
    }
    return 0;
}

void svh_session_clt_opts(svh_t *f, mw_clt_opts_t *o, mw_mode_t mode, const char *id) {
    mw_clt_opts_init(o);
    o->mode = mode;
    if (f->serdes) o->conn.serdes = f->serdes;
    o->session.enabled = true;
    o->session.journal_dir = f->cdir;
    o->session.id = id;
}

/* One sequenced ping, flushing while the queue is full, until dl. */
static int send_one(mw_clt_t *c, uint64_t payload, uint64_t *seq, uint64_t dl) {
    ping_t p = {.seq = payload};
    int r;
    while ((r = mw_clt_send_seq(c, ping_schema(), &p, seq)) == MW_EAGAIN && !mw__deadline_passed(NULL, dl))
        mw_clt_flush(c);
    return r;
}

static void flush_all(mw_clt_t *c, uint64_t dl) {
    while (mw_clt_flush(c) == MW_EAGAIN && !mw__deadline_passed(NULL, dl)) {}
}

int svh_send_ping_seq(mw_clt_t *c, uint64_t payload, uint64_t *seq) {
    uint64_t dl = mw__deadline_in(NULL, SVH_SESSION_WAIT_MS * MW_NS_PER_MS);
    int r = send_one(c, payload, seq, dl);
    flush_all(c, dl);
    return r;
}

void svh_send_numbered(mw_clt_t *c, uint64_t first, uint64_t last) {
    uint64_t dl = mw__deadline_in(NULL, SVH_SESSION_WAIT_MS * MW_NS_PER_MS);
    for (uint64_t i = first; i <= last; i++) {
        uint64_t seq = 0;
        int r = send_one(c, i, &seq, dl);
        if (r != 0) fail_msg("send ping %" PRIu64 ": %s (%s)", i, mw_errname(r), mw_clt_last_error(c));
        assert_int_equal(seq, i);
    }
    flush_all(c, dl);
}

void svh_recv_numbered(mw_clt_t *c, uint64_t first, uint64_t last, unsigned flags, unsigned mask) {
    for (uint64_t i = first; i <= last; i++) {
        test_msg_t m;
        const mw_schema_t *s;
        int r = mw_clt_recv_busywait_timeout(c, &s, &m, sizeof m, 5 * MW_NS_PER_S);
        if (r != 0) fail_msg("recv %" PRIu64 ": %s (%s)", i, mw_errname(r), mw_clt_last_error(c));
        assert_int_equal(s->tag, ping_TAG);
        assert_int_equal(m.ping.seq, i);
        assert_int_equal(mw_clt_rx_seq(c), i);
        assert_int_equal(mw_clt_rx_flags(c) & mask, flags & mask);
    }
}

void svh_expect_numbered(svh_t *f, int from, uint64_t first, uint64_t last, unsigned flag_mask) {
    int want = from + (int)(last - first + 1);
    svh_wait_msgs(f, want, SVH_SESSION_WAIT_MS);
    pthread_mutex_lock(&f->mu);
    int got = f->nmsgs;
    for (int i = from; got == want && i < want; i++) {
        uint64_t n = first + (uint64_t)(i - from);
        svh_msg_t m = f->msgs[i];
        if (m.rx_seq != n || m.seq != n || (m.flags & flag_mask) != 0) {
            pthread_mutex_unlock(&f->mu);
            fail_msg("Svc message %d: number %" PRIu64 " payload %" PRIu64 " flags %u, want %" PRIu64, i, m.rx_seq,
                     m.seq, m.flags, n);
        }
    }
    pthread_mutex_unlock(&f->mu);
    if (got != want)
        fail_msg("the Svc got %d messages, want %d (numbers %" PRIu64 "..%" PRIu64 ")", got, want, first, last);
}

typedef struct next_in_cond {
    svh_t *f;
    const char *session;
    uint64_t want;
    mw_clt_t *drain;
} next_in_cond_t;

static bool next_in_is(void *ud) {
    next_in_cond_t *w = ud;
    if (w->drain) {
        test_msg_t m;
        const mw_schema_t *sch;
        mw_clt_recv(w->drain, &sch, &m, sizeof m);
    }
    mw_session_stats_t st;
    return mw_svc_session_stats(w->f->svc, w->session, &st) == 0 && st.next_in == w->want;
}

bool svh_session_next_in_is(svh_t *f, const char *session, uint64_t next_in, mw_clt_t *drain, int ms) {
    next_in_cond_t w = {f, session, next_in, drain};
    return mw_wait_until(next_in_is, &w, ms);
}
