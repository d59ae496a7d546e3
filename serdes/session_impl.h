/* session_impl.h - the session engine (internal): numbering, journal,
 * logon, resend, heartbeats and logout for one session, independent of how
 * its connection is driven. Clt and Svc own sessions and call in at a few
 * points: a connection is linked (Clt: then logon), every decoded message
 * goes through mw__sess_rx, every application send through mw__sess_send,
 * and mw__sess_pump runs on drain and on a timer (or inside the calls of a
 * spin/blocking owner) for resends, heartbeats and fsync intervals.
 *
 * A session outlives its connections (a Svc keeps it for the next logon).
 * Every entry point takes the session's mutex: event-mode sends from any
 * thread and the connection's worker meet here. The link's send function
 * is called with that mutex held and must not call back into the session.
 */
#ifndef MW_SESSION_IMPL_H
#define MW_SESSION_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "journal_impl.h"
#include "lock_impl.h"
#include "mw_serdes.h"
#include "mw_session.h"

enum { MW__SESS_CLIENT = 1, MW__SESS_SERVER = 2 };

/* How the session writes on its current connection. */
typedef struct mw__sess_link {
    void *ctx;
    /* Encodes onto the connection: 0 accepted, MW_EAGAIN full, or the
     * error. more: queue without writing (a flush follows). */
    int (*send)(void *ctx, const mw_schema_t *s, const void *msg, bool more);
    int (*flush)(void *ctx);
    /* A resend batch ended with more to go and nothing full: call back
     * (pump) soon, e.g. by a drain callback. May be NULL (the owner pumps on
     * every call while mw__sess_behind). Same rules as send. */
    void (*again)(void *ctx);
    /* The connection's lock (lock_impl.h), or NULL. While linked it is the
     * session's lock too: send, flush and again are called with it held
     * (and must not take it), and a send on the session takes it alone. */
    mw__lock_t *lk;
} mw__sess_link_t;

typedef struct mw__sess mw__sess_t;

/* The application's protocol with the control messages chained to it (a
 * conn decodes both). Allocates; free with free(). */
mw_protocol_t *mw__sess_proto(const mw_protocol_t *app);

/* Opens the session `id` (its journal in o->journal_dir). role: CLIENT or
 * SERVER. 0, or the journal's error (text in err). */
int mw__sess_open(mw__sess_t **out, const mw_session_opts_t *o, const char *id, int role,
                  const mw_protocol_t *app, mw_err_t *err);
void mw__sess_free(mw__sess_t *s);
/* Makes lk (lock_impl.h) the session's lock for good (NULL: its own), for
 * an owner whose one connection lock outlives its connections (the event
 * Clt). Before the session is shared between threads. */
void mw__sess_share_lock(mw__sess_t *s, mw__lock_t *lk);
/* The serdes the session's connections write with ("fixed" if never set).
 * A message that waits in the journal (not connected, behind a resend or a
 * full socket) is first encoded with it on trial: one the wire would refuse
 * (a NaN over text) is refused at send, before it takes a number it could
 * never be sent with. MW_EINVAL for an unknown name. Any thread. */
int mw__sess_set_wire(mw__sess_t *s, const char *serdes);
const char *mw__sess_id(const mw__sess_t *s);

/* A connection is there (handshakes done). Client: sends mw_logon (0 or
 * the send's error). Server: call after mw__sess_accept_logon decided. */
int mw__sess_link(mw__sess_t *s, const mw__sess_link_t *l, uint64_t now);
/* The connection is gone: commits a delivery in progress, stops resending. */
void mw__sess_unlink(mw__sess_t *s);
bool mw__sess_linked(const mw__sess_t *s);
bool mw__sess_up(const mw__sess_t *s); /* logged on over the current link */

/* Server: a connection's first message was this logon; s is the session it
 * names (opened by the owner, not linked to another connection). Checks
 * the numbers, rolls the journal on reset, links, sends the ack and queues
 * the resend. 0, MW_EAGAIN (the session is linked to another connection:
 * the owner may ask again once that one is gone), or MW_ESESSION with the
 * reason in reason[cap] (the owner sends mw_logout REJECTED with it and
 * closes). */
int mw__sess_accept_logon(mw__sess_t *s, const mw__sess_link_t *l, const mw_logon_t *lg, uint64_t now,
                          char *reason, size_t cap);

/* One decoded message from the link. Returns 1: an application message to
 * hand to the application (mw__sess_rx_seq/flags describe it; call
 * mw__sess_delivered once it was handled), 0: consumed by the session
 * (control message, duplicate, or dropped after a gap), or < 0: the
 * connection must close with that reason (text: mw__sess_error);
 * MW_ECLOSED for a normal logout (answered already). */
int mw__sess_rx(mw__sess_t *s, const mw_schema_t *sch, const void *msg, uint64_t now); /* now: 0 = read it when needed */
void mw__sess_delivered(mw__sess_t *s); /* mutex held by the caller (inside rx) */
void mw__sess_commit(mw__sess_t *s);    /* the same, taking the mutex */
/* The message mw__sess_rx returned 1 for was NOT handed over (the owner is
 * closing): its number is not counted, so the peer sends it again. */
void mw__sess_discard(mw__sess_t *s);
uint64_t mw__sess_rx_seq(const mw__sess_t *s);
unsigned mw__sess_rx_flags(const mw__sess_t *s);
/* Writes what the link has queued, under the session's mutex. */
int mw__sess_flush(mw__sess_t *s);

/* An application message: numbered and journaled (always first: a number
 * never reaches the wire unless it can be sent again after a crash), then
 * written if the session is logged on and caught up. When the connection
 * is full, or a resend is in progress, or it is not connected, it waits in
 * the journal and goes out in order later: 0 all the same. MW_EAGAIN
 * (nothing numbered) only when MAX_BACKLOG messages already wait while
 * connected. *seq (may be NULL) gets the number. Errors (nothing numbered,
 * nothing journaled): encode errors, also the connection's serdes refusing
 * it (text: a NaN), MW_ESYS (journal). A link that failed is not an error
 * here: the message is journaled and goes out after the next logon. */
int mw__sess_send(mw__sess_t *s, const mw_schema_t *sch, const void *msg, bool more, uint64_t *seq);

/* Resend progress, heartbeats, test requests, silence, fsync interval.
 * Returns work done (>= 0) or < 0: close the connection with that reason
 * (text: mw__sess_error). Cheap when there is nothing to do. */
int mw__sess_pump(mw__sess_t *s, uint64_t now);
/* True while journaled messages wait to be written (a resend, or sends
 * behind a full socket): pump on every chance, not only when due. */
bool mw__sess_behind(const mw__sess_t *s);
/* When mw__sess_pump next has something to do (absolute ns), for timers. */
uint64_t mw__sess_next_due(const mw__sess_t *s, uint64_t now);

/* Sends mw_logout{code, reason} on the link (no close). */
int mw__sess_logout(mw__sess_t *s, int code, const char *reason);

void mw__sess_stats(mw__sess_t *s, mw_session_stats_t *st);
const char *mw__sess_error(const mw__sess_t *s);

#endif
