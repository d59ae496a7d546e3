/* svc_pull.c - the Svc's pull API (spin and blocking modes): mw_svc_poll,
 * mw_svc_recv and its variants, with fair turns over the open connections,
 * and the blocking Svc's wait strategy for a single connection. */
#include "svc_impl.h"
#include "clock_impl.h"
#include "conn_impl.h"
#include "err_impl.h"
#include "io_impl.h"
#include "tcp_impl.h"
#include "transport_impl.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- blocking mode with one connection ------------------------------------
 * A blocking Svc serving a single client waits in a blocking read on that
 * socket (bounded by SOLO_WAIT_NS), one syscall per message like a plain
 * blocking server, instead of epoll_wait and then read (writes still never
 * wait: send_to keeps returning MW_EAGAIN on a full socket). The listener and the
 * timers are polled every SOLO_POLL_EVERY messages and whenever the read times
 * out, so a second client waits at most that long to be accepted; with two or
 * more connections the Svc goes back to epoll. This is a wait strategy of
 * the Svc's own io, not a mode: the connection keeps its driver. */
#define SOLO_WAIT_NS (10 * MW_NS_PER_MS)
#define SOLO_POLL_EVERY 64u

static void solo_enter(mw_svc_t *s, slot_t *sl) {
    if (mw__tcp_set_blocking(sl->conn.stream, true) < 0) return; /* no TCP underneath: stay on epoll */
    int64_t wait = s->o.sync.timeout_ns > 0 && s->o.sync.timeout_ns < SOLO_WAIT_NS ? s->o.sync.timeout_ns : SOLO_WAIT_NS;
    mw__tcp_set_timeouts(sl->conn.stream, wait, 0);
    mw__tcp_set_write_nowait(sl->conn.stream, true); /* sends keep their MW_EAGAIN semantics */
    if (sl->drv.src.added) mw_io_del(s->io, &sl->drv.src);
    s->solo = sl;
}

void mw__svc_solo_leave(mw_svc_t *s, slot_t *sl) {
    s->solo = NULL;
    mw__tcp_set_timeouts(sl->conn.stream, 0, 0);
    mw__tcp_set_write_nowait(sl->conn.stream, false);
    mw__tcp_set_blocking(sl->conn.stream, false);
    if (mw__drv_attached(&sl->drv) && !sl->drv.src.added) mw_io_add(s->io, &sl->drv.src);
}

/* The one connection may be read with a blocking read while it is up,
 * reading, and has nothing queued to write (the io watches writability). */
static slot_t *solo_candidate(const mw_svc_t *s) {
    if (s->nactive != 1) return NULL;
    slot_t *sl = &s->slots[s->active[0]];
    if (sl->drv.rx_done || sl->drv.paused || !mw__drv_up(&sl->drv) || mw__conn_tx_pending(&sl->conn)) return NULL;
    return sl;
}

void mw__svc_solo_update(mw_svc_t *s) {
    if (s->o.mode != MW_MODE_BLOCKING) return;
    slot_t *want = solo_candidate(s);
    if (want == s->solo) return;
    if (s->solo) mw__svc_solo_leave(s, s->solo);
    if (want) solo_enter(s, want);
}

/* ---- spin/blocking receive ------------------------------------------------ */

int mw_svc_poll(mw_svc_t *s, int64_t timeout_ns) {
    if (s->o.mode == MW_MODE_EVENT) return MW_ESTATE;
    int work = 0;
    if (s->solo && mw__conn_tx_pending(&s->solo->conn)) { /* not on the io: flush it here */
        mw__drv_write(&s->solo->drv);
        work++;
    }
    int r = mw_io_poll(s->io, work ? 0 : timeout_ns);
    return r < 0 ? r : r + work;
}

/* One round-robin pass over the open connections: the first buffered message
 * wins, and the next pass starts after its connection. Spin mode reads a
 * connection on its turn when nothing is buffered (one recv per connection
 * per pass, as a busy-poll loop would); blocking mode reads only what the io
 * found ready, and the solo connection with a blocking read. */
static int scan(mw_svc_t *s, mw_conn_id_t *id, const mw_schema_t **sch, void *msg, size_t cap) {
    for (;;) {
        uint32_t n = s->nactive;
        uint32_t pos = s->rr < n ? s->rr : 0;
        int r = MW_EAGAIN;
        slot_t *sl = NULL;
        for (uint32_t k = 0; k < n; k++) {
            sl = &s->slots[s->active[pos]];
            bool read = s->o.mode == MW_MODE_SPIN || sl == s->solo;
            r = s->sessions ? mw__svc_sess_next(s, sl, sch, msg, cap, read) : mw__drv_next(&sl->drv, sch, msg, cap, read);
            if (r != MW_EAGAIN) break;
            if (++pos == n) pos = 0;
        }
        if (r == MW__SVC_RESCAN) continue;
        if (r == 0) {
            s->rr = pos + 1;
            *id = make_id(sl);
            return 0;
        }
        if (r == MW_EAGAIN) return r;
        /* How it ended (MW_ECLOSED, MW_ETRUNC, the error), now that every
         * message before it is out. The list shrinks: scan again. */
        mw__drv_close(&sl->drv, r, true);
    }
}

/* Between the solo connection's blocking reads (inside scan), when nothing
 * came: the listener and timers once 10 ms have passed (mw_svc_recv also
 * polls them every 64th message), and replies still queued. */
static void solo_wait(mw_svc_t *s) {
    slot_t *sl = s->solo;
    uint64_t now = mw_now_ns();
    if (now - s->solo_polled_ns >= (uint64_t)SOLO_WAIT_NS) {
        s->solo_polled_ns = now;
        mw_io_poll(s->io, 0);
        if (s->solo != sl) return; /* a second client arrived: epoll from now on */
    }
    if (mw__conn_tx_pending(&sl->conn)) mw__drv_write(&sl->drv); /* its socket is not on the io */
}

#define BUSY_POLL_NS MW_NS_PER_MS

static bool poll_due(mw_svc_t *s) {
    if (s->nactive == 0) return true;
    if ((++s->spin_tick & (SOLO_POLL_EVERY - 1)) != 0) return false;
    uint64_t now = mw_now_ns();
    if (now - s->polled_ns < (uint64_t)BUSY_POLL_NS) return false;
    s->polled_ns = now;
    return true;
}

int mw_svc_recv(mw_svc_t *s, mw_conn_id_t *id, const mw_schema_t **sch, void *msg, size_t cap) {
    if (s->o.mode == MW_MODE_EVENT) return MW_ESTATE;
    if (s->uncommitted) { /* the message recv returned last was handled */
        mw__sess_commit(s->uncommitted);
        s->uncommitted = NULL;
    }
    /* The listener, the timers and write readiness get a look at least every
     * millisecond even while messages keep coming (a busy peer must not keep
     * new clients out): the clock is read every 64th call, the io polled
     * only when a millisecond has passed. */
    if (s->solo) {
        /* the listener and timers every 64th message, without a clock read per message */
        if ((++s->solo_tick & (SOLO_POLL_EVERY - 1)) == 0) {
            mw_io_poll(s->io, 0);
            if (s->solo && s->solo != solo_candidate(s)) mw__svc_solo_update(s);
        }
    } else if (poll_due(s)) {
        mw_io_poll(s->io, 0);
        if (s->o.mode == MW_MODE_BLOCKING && s->nactive == 1) mw__svc_solo_update(s); /* one connection again */
    }
    /* One open connection with a whole message buffered (a flood, a
     * pipelined burst): no scan. With more than one, the scan keeps the
     * round-robin turns. */
    if (s->nactive == 1 && !s->sessions) {
        slot_t *sl = &s->slots[s->active[0]];
        if (mw__drv_next_buffered(&sl->drv, sch, msg, cap) == 0) {
            *id = make_id(sl);
            return 0;
        }
    }
    int r = scan(s, id, sch, msg, cap);
    if (r != MW_EAGAIN || s->o.mode == MW_MODE_SPIN) return r;
    uint64_t dl = mw__deadline_in(NULL, s->o.sync.timeout_ns);
    for (;;) { /* blocking: wait at least once, even with a zero timeout */
        if (s->solo) solo_wait(s);
        else mw_io_poll(s->io, mw__deadline_left(NULL, dl));
        if ((r = scan(s, id, sch, msg, cap)) != MW_EAGAIN) return r;
        if (mw__deadline_passed(NULL, dl)) return MW_ETIMEDOUT;
    }
}

/* The first message as mw_svc_recv (waits, fair turns), then the ones its
 * connection already has buffered, without a scan or a read each. fn runs
 * inside the driver's callback bracket, so a close it asks for waits until
 * it returns (and ends the batch). */
int mw_svc_recv_batch(mw_svc_t *s, mw_svc_msg_fn fn, void *ud, int max) {
    if (s->o.mode == MW_MODE_EVENT) return MW_ESTATE;
    if (!fn || max <= 0) return MW_EINVAL;
    size_t cap = s->proto->max_size;
    if (!s->batch_rx && !(s->batch_rx = calloc(1, cap))) /* once per Svc */
        return mw__err_set(&s->err, MW_ENOMEM, "recv: out of memory for a %zu-byte decode scratch", cap);
    mw_conn_id_t id;
    const mw_schema_t *sch;
    int r = mw_svc_recv(s, &id, &sch, s->batch_rx, cap);
    if (r < 0) return r;
    slot_t *sl = &s->slots[(uint32_t)id];
    int n = 0;
    do {
        mw__drv_enter(&sl->drv);
        fn(s, id, sch, s->batch_rx, ud);
        n++;
        if (s->uncommitted) { /* sessions: handled, so the session may count it */
            mw__sess_commit(s->uncommitted);
            s->uncommitted = NULL;
        }
        if (!sl->drv.close_pending && mw__drv_up(&sl->drv)) sl->drv.in_cb = false; /* nothing asked: inline */
        else if (mw__drv_leave(&sl->drv)) break; /* closed inside fn */
        /* sessions deliver through their own filter: one message a call */
    } while (n < max && !s->sessions && mw__drv_next_buffered(&sl->drv, &sch, s->batch_rx, cap) == 0);
    return n;
}

int mw_svc_recv_busywait_timeout(mw_svc_t *s, mw_conn_id_t *id, const mw_schema_t **sch, void *msg,
                                 size_t cap, int64_t timeout_ns) {
    uint64_t dl = mw__deadline_in(NULL, timeout_ns);
    mw_idle_t idle = s->o.sync.idle;
    int r;
    while ((r = mw_svc_recv(s, id, sch, msg, cap)) == MW_EAGAIN || r == MW_ETIMEDOUT) {
        if (mw__deadline_passed(NULL, dl)) return MW_ETIMEDOUT;
        mw_idle(&idle, 0);
    }
    return r;
}
