/* svc_impl.h - the Svc's private state, shared by svc.c (listener, pool,
 * run modes, sending, closing), svc_pull.c (the pull API of the spin and
 * blocking modes), svc_sess.c (sessions on the Svc's connections) and
 * svc_slots.c (O(1) slot allocation and memory given back).
 *
 * Layers: calls between these files go down only (tests/test_surface.c
 * fails on a cycle):
 *   svc.c        -> svc_pull.c, svc_sess.c, svc_slots.c
 *   svc_pull.c   -> svc_sess.c
 *   svc_sess.c   -> (nothing in svc/)
 *   svc_slots.c  -> (nothing in svc/)
 * svc.c owns the Svc's lifetime: its references, cross-thread requests and
 * the last reference's release; the files below it never post or free. */
#ifndef MW_SVC_IMPL_H
#define MW_SVC_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "drv_impl.h"
#include "lock_impl.h"
#include "mw_svc.h"
#include "svc_sess_impl.h"
#include "conn_impl.h"
#include "tcp_impl.h"
#include "transport_impl.h"

typedef struct worker worker_t;

typedef struct slot {
    mw__conn_t conn;
    mw__drv_t drv;            /* drives conn on its io while attached */
    mw_svc_t *svc;
    worker_t *w;              /* event mode: the owning worker */
    /* Event mode: the one lock of this connection's send path (lock_impl.h):
     * the lifetime check (open + generation), the encode into tx and the
     * write, through the whole stream stack (shared with the conn, TLS and
     * WebSocket by mw__conn_share_lock); the io thread's flush takes it too.
     * Never initialised again: a late sender's lock/unlock on a slot being
     * reused stays balanced (a zero word is an unlocked lock). */
    mw__lock_t lk;
    _Atomic uint32_t gen;     /* generation of the current (or last) connection */
    atomic_bool used;         /* from accept until the driver let go (linger included) */
    atomic_bool open;         /* the application's: from accept until on_close */
    uint32_t idx;
    uint32_t next_free;       /* free-list link (NO_SLOT: none) */
    mw_err_t err;             /* why it closed; kept for on_close / conn_error (and, inside
                                 on_closed, how its close ended) */
    bool close_asked;         /* mw_svc_close_conn closed it: on_closed reports the end */
    atomic_bool reporting;    /* inside on_closed: conn_error answers for the closed id */
    mw__sess_t *sess;         /* sessions: the one this connection logged on to (set and read
                                 with __atomic builtins: senders read it without a lock) */
    mw_io_timer_t t_sess;     /* sessions: heartbeats, resend, logon timeout */
    mw_logon_t *pending_logon;/* sessions: a logon waiting for the session's previous connection to go */
    uint64_t logon_wait_until;
} slot_t;

#define NO_SLOT UINT32_MAX

struct worker {
    mw_io_t *io;
    mw_svc_t *svc;
    bool own_io;
};

struct mw_svc {
    mw_svc_opts_t o;
    const mw_protocol_t *proto;
    mw__listener_t *lis;
    mw_sel_src_t lis_src;
    mw__transport_t tr;
    bool have_tr;
    mw_io_t *io;               /* spin/blocking: own io; event: workers[0].io */
    worker_t *workers;
    uint32_t nworkers, next_worker;
    mw__drv_cfg_t drv_cfg;     /* one driver configuration for every connection */
    slot_t *slots;             /* cap slots, zero until first used; mmap'd when large (slots_mapped) */
    uint32_t cap;
    bool slots_mapped;
    _Atomic uint32_t hwm;      /* slots [0, hwm) have been initialised (handed out once) */
    _Atomic uint32_t freed;    /* slots freed since the acceptor last looked: a stack (MPSC) */
    uint32_t fq_head, fq_tail; /* the acceptor's free queue, oldest first (NO_SLOT: empty) */
    _Atomic uint32_t nused;    /* slots in use (accept until the driver let go) */
    uint32_t *gens;            /* generations kept while the table's pages are given back */
    uint32_t *active;          /* spin/blocking: open slots, for fair recv */
    uint32_t nactive, rr;
    slot_t *solo;              /* blocking mode, one connection: read it blocking */
    uint32_t solo_tick, spin_tick;
    uint64_t solo_polled_ns, polled_ns;
    _Atomic uint64_t accepted, refused_full, refused_nofd, closed, closed_bad_input, msgs_in, msgs_out, bytes_in,
        bytes_out;
    mw_io_timer_t t_accept;    /* the listener's back-off (out of descriptors) */
    bool accept_trouble;       /* accepting fails: logged once per episode */
    atomic_uint nconns;
    bool threads_started;
    bool close_started; /* mw_svc_close ran (idempotence; closing thread only) */
    atomic_uint refs;   /* 1 for the owner + 1 per cross-thread request queued */
    atomic_bool dead;   /* mw_svc_free ran: queued requests find nothing */
    bool closed_all;    /* workers stopped, tearing down: no more callbacks */
    /* sessions (opts.session.enabled) */
    bool sessions;
    mw_protocol_t *sproto;     /* the application's protocol + the control messages */
    mw__svc_sessions_t stab;
    mw__sess_t *uncommitted;   /* spin/blocking: the session of the message recv returned last */
    const mw_protocol_t *app;  /* the application's protocol (journal records) */
    void *sess_rx;             /* spin/blocking: decode scratch of proto->max_size */
    void *batch_rx;            /* mw_svc_recv_batch: decode scratch of proto->max_size */
    mw_err_t err;
};

static inline mw_conn_id_t make_id(const slot_t *sl) { /* (generation << 32) | slot */
    return ((uint64_t)atomic_load(&sl->gen) << 32) | sl->idx;
}

/* Slot for an id, or NULL when the id is stale or unknown. A connection
 * being closed (on_close ran) is unknown already, even while it lingers. */
static inline bool slot_is(const slot_t *sl, mw_conn_id_t id) {
    return atomic_load(&sl->open) && atomic_load(&sl->gen) == (uint32_t)(id >> 32);
}

static inline slot_t *lookup(const mw_svc_t *s, mw_conn_id_t id) {
    uint32_t idx = (uint32_t)id;
    if (idx >= s->cap) return NULL;
    slot_t *sl = &s->slots[idx];
    return slot_is(sl, id) ? sl : NULL;
}

static inline mw_io_t *slot_io(const mw_svc_t *s, const slot_t *sl) { return sl->w ? sl->w->io : s->io; }

/* svc_slots.c */
int mw__svc_slots_new(mw_svc_t *s);
void mw__svc_slots_free(mw_svc_t *s);
slot_t *mw__svc_alloc_slot(mw_svc_t *s);            /* the acceptor only; NULL: full */
/* Any thread. True: the last slot in use went; run mw__svc_slots_shrink on
 * the acceptor's thread (the table's memory given back). */
bool mw__svc_free_slot(mw_svc_t *s, slot_t *sl);
void mw__svc_slots_shrink(mw_svc_t *s);
uint32_t mw__svc_slots_seen(const mw_svc_t *s);     /* slots [0, n) were handed out */

/* svc_sess.c (sessions on): a decoded message from sl. 1: hand it to the
 * application; 0: the session kept it; < 0: the connection is closing. */
int mw__svc_sess_in(mw_svc_t *s, slot_t *sl, const mw_schema_t *sch, const void *msg);
/* Pull mode: the next application message of sl (control messages handled
 * on the way), as mw__drv_next, or MW__SVC_RESCAN when the session closed
 * the connection (the list of open connections changed). */
#define MW__SVC_RESCAN 1
/* svc_pull.c: the blocking Svc's single connection read with blocking reads
 * (see there): re-chosen after the set of open connections or their state
 * changed; leave gives the connection back to the io. */
void mw__svc_solo_update(mw_svc_t *s);
void mw__svc_solo_leave(mw_svc_t *s, slot_t *sl);

int mw__svc_sess_next(mw_svc_t *s, slot_t *sl, const mw_schema_t **sch, void *msg, size_t cap, bool read);
void mw__svc_sess_pump_now(slot_t *sl); /* on drain: journaled messages waiting go first */
void mw__svc_sess_down(mw_svc_t *s, slot_t *sl); /* the connection ended */

#endif
