/* mw_svc.h - the service: listens, accepts Clts into a pool of connections,
 * and exchanges typed messages with them.
 *
 * Connections are named by mw_conn_id_t = (generation << 32) | slot. A slot
 * is reused after its connection closes, with a new generation, so an old id
 * never reaches the new connection (calls with it return MW_ECLOSED).
 *
 * Run modes (opts.mode):
 *   MW_MODE_SPIN      the caller polls: mw_svc_recv returns a message from any
 *                     connection (round-robin, so one busy peer cannot starve
 *                     the others) or MW_EAGAIN at once; accepting and reading
 *                     happen inside it (or in mw_svc_poll).
 *   MW_MODE_BLOCKING  as spin, but mw_svc_recv waits in epoll up to
 *                     opts.sync.timeout_ns.
 *   MW_MODE_EVENT     callbacks (on_accept, event.on_msg, on_close) from
 *                     worker threads: opts.event.workers threads each run
 *                     their own io loop, accepted connections are spread over
 *                     them round-robin, and each connection's callbacks always
 *                     run on the same worker. With event.workers == 0 the Svc
 *                     attaches to opts.event.io instead and the caller runs it
 *                     (or a poll thread does).
 *
 * Options: the top level of mw_svc_opts_t acts in every mode (on_accept,
 * on_close and on_drain run in spin and blocking modes too, from inside
 * mw_svc_recv / mw_svc_poll), opts.sync in spin and blocking modes,
 * opts.event in event mode (see mw_mode.h).
 *
 * Bad input (oversized frame, garbage, unknown tag, invalid field) closes that
 * connection only, with the reason in on_close and mw_svc_conn_error; every
 * message it sent before the bad one was delivered. A client over
 * max_connections is accepted and closed at once, and counted.
 *
 * Thread rules: spin/blocking: one thread calls everything. Event mode:
 * send_to, broadcast and close_conn may be called from any thread (inside
 * callbacks too); close_conn from inside a callback is deferred until the
 * callback returns.
 */
#ifndef MW_SVC_H
#define MW_SVC_H

#include <stdbool.h>
#include <stdint.h>

#include "mw_api.h"

#include "mw_conn.h"
#include "mw_idle.h"
#include "mw_io.h"
#include "mw_mode.h"
#include "mw_session.h"
#include "mw_tcp.h"
#include "mw_transport.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mw_svc mw_svc_t;
typedef uint64_t mw_conn_id_t;
#define MW_CONN_ID_NONE ((mw_conn_id_t)0)

/* What only event mode reads (opts.event). io, backend or on_msg set in
 * another mode make mw_svc_listen fail with MW_EINVAL (spin and blocking
 * deliver messages through mw_svc_recv); workers is ignored there. */
typedef struct mw_svc_event_opts {
    uint32_t workers;          /* worker threads, each with its own io; default 1;
                                  0: attach to io instead */
    const char *backend;       /* workers' selector: "epoll" (default), "libevent" */
    mw_io_t *io;               /* workers == 0: the io to attach to (required; must
                                  outlive the Svc); with workers > 0: MW_EINVAL */
    /* One message, on the connection's worker; msg is borrowed: valid until
     * the callback returns. */
    void (*on_msg)(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg, void *ud);
} mw_svc_event_opts_t;

/* Options are copied, but the strings they point to (serdes name, TLS file
 * names, WebSocket path/host/origin, record_path, bind address/interface)
 * are used again at every connect or accept: keep them alive as long as the
 * object. mw_svc_opts_init sets the defaults named here.
 *
 * Fields at the top level act in every mode (the callbacks there run in
 * every mode: inside mw_svc_recv / mw_svc_poll in spin and blocking modes,
 * on the connection's worker in event mode); .sync only in spin and
 * blocking modes (event mode ignores it); .event only in event mode. */
typedef struct mw_svc_opts {
    mw_mode_t mode;            /* default MW_MODE_SPIN */
    mw_conn_opts_t conn;       /* serdes, framing, max_msg, buffers (per connection) */
    mw_tcp_opts_t tcp;         /* listener and accepted sockets */
    mw_transport_opts_t tr;    /* tls:// and wss://: tr.tls.cert_file/key_file (required),
                                  ca_file + verify_client; ws/wss: tr.ws limits, expect_path */
    int64_t handshake_timeout_ns; /* TLS/WebSocket handshake must finish within this;
                                     default 10 s; the slot is freed otherwise */
    /* Safe defaults against stalled or hostile peers (set 0 to turn one off):
     * handshake_timeout_ns above; rx_timeout_ns: a message that has begun to
     * arrive must be whole within it (default 10 s: a peer that sends half a
     * frame and stops is closed, MW_ETIMEDOUT "a message begun ... is still
     * incomplete"); first_msg_timeout_ns: a client must send its first whole
     * message within it of connecting (default 60 s; 0 for a feed whose
     * clients only listen); idle_timeout_ns: no input for this long closes
     * the connection (default 0, never: clients that go quiet for long, such
     * as subscribers, should send heartbeats when it is set). */
    int64_t rx_timeout_ns;
    int64_t first_msg_timeout_ns;
    int64_t idle_timeout_ns;   /* close a connection silent for this long; 0: never */
    int64_t linger_ns;         /* a close writes the replies already accepted, then
                                  FIN, and reads until the client's EOF, for at most
                                  this long (then the socket closes anyway);
                                  default 2 s; 0: close at once */
    int64_t slow_consumer_ns;  /* close a connection whose send queue stays full
                                  this long (reason MW_ESLOW); 0: never (default) */
    uint32_t max_connections;  /* default 1024 (each idle one costs ~13 KiB resident) */
    /* A client was accepted (before its TLS/WebSocket handshakes; messages
     * flow once they complete). May be NULL. */
    void (*on_accept)(mw_svc_t *s, mw_conn_id_t id, void *ud);
    /* reason: MW_ECLOSED (peer closed), MW_ESTATE (closed by the Svc),
     * MW_ETIMEDOUT (handshake or idle timeout), or the error that closed it
     * (MW_EPROTO, MW_ETOOBIG, MW_EUTF8, MW_ETLS, ...; text: mw_svc_conn_error).
     * May be NULL. */
    void (*on_close)(mw_svc_t *s, mw_conn_id_t id, int reason, void *ud);
    /* A close asked for with mw_svc_close_conn has finished: its linger is
     * over and the socket is closed (on_close came first, at the close).
     * id: the id on_close reported (stale: only mw_svc_conn_error(s, id)
     * answers for it, inside this callback, with the text of result).
     * result: 0 when every reply accepted for it was written (lingering:
     * and the client then closed its side, so it has read them);
     * MW_ETIMEDOUT when linger_ns ran out first (with linger_ns 0: replies
     * were still queued and are lost); MW_ECLOSED when the client reset
     * the connection ("the peer reset the connection during the linger:
     * what it had not read may be lost"; over TLS and WebSocket the
     * closing handshake counts: a client that leaves without reading the
     * close frame or close_notify resets too, and the Svc cannot tell that
     * from lost replies); else the error that ended it.
     * Once per connection that mw_svc_close_conn closed (not for one that
     * ended before the close ran, nor for mw_svc_abort_conn, also when it
     * comes before or after the close in one callback or cuts its linger
     * short, nor for one still lingering at mw_svc_close / mw_svc_free),
     * on the thread that
     * runs that connection's callbacks (spin/blocking: inside mw_svc_poll,
     * mw_svc_recv, or mw_svc_close_conn itself when nothing lingers). It
     * must not free the Svc. May be NULL. */
    void (*on_closed)(mw_svc_t *s, mw_conn_id_t id, int result, void *ud);
    /* A send to id returned MW_EAGAIN (its queue was full) and the queue has
     * since drained to its low-water mark: send again. May be NULL. */
    void (*on_drain)(mw_svc_t *s, mw_conn_id_t id, void *ud);
    void *ud;                  /* passed to every callback (and session.on_logon) */
    mw_conn_hook_fn on_sent, on_recvd; /* every message, any mode */
    void *hook_ud;
    /* Recoverable sequenced sessions (see mw_session.h and the README,
     * "Sessions"): set session.enabled and session.journal_dir. Every
     * connection must then log on first (mw_logon within
     * first_msg_timeout_ns); session.on_logon may refuse it. The Svc keeps
     * one session per session id (its journal stays open until mw_svc_free),
     * so a client that reconnects from anywhere resumes it. send_to numbers
     * and journals every message (MW_ESTATE before the logon); on_msg and
     * recv deliver only application messages, each number once and in order
     * (mw_svc_rx_seq / mw_svc_rx_flags). */
    mw_session_opts_t session;
    mw_sync_opts_t sync;       /* spin and blocking: timeout_ns (mw_svc_recv in blocking
                                  mode; -1: none), idle (busywait variants; busy) */
    mw_svc_event_opts_t event; /* event mode: workers or io, on_msg */
} mw_svc_opts_t;

typedef struct mw_svc_stats {
    uint64_t accepted;
    uint64_t refused_full;  /* accepted and closed at once: max_connections reached */
    uint64_t refused_nofd;  /* accept failed: out of file descriptors (the listener
                               then rests 100 ms at a time; the client waits in the
                               backlog and is taken once descriptors are free) */
    uint64_t closed, closed_bad_input;
    uint64_t msgs_in, msgs_out;
    uint64_t bytes_in, bytes_out; /* wire bytes (framing included) */
    uint32_t connections; /* open now */
} mw_svc_stats_t;

MW_API void mw_svc_opts_init(mw_svc_opts_t *o);

/* Binds url ("tcp://host:port", "tls://host:port", "ws://host:port/path",
 * "wss://host:port/path"; port 0 picks a free port, see mw_svc_port)
 * and listens. Event mode with workers starts them (mw_svc_free stops them).
 * Returns 0, MW_EINVAL (bad url or options: buffers smaller than a frame,
 * event mode with workers 0 and no event.io or with workers and an
 * event.io, event.io/backend/on_msg set in another mode), MW_ENOTSUP, MW_ESYS (e.g. address in use), MW_ENOMEM;
 * the sentence goes to err. Allocates. */
MW_API int mw_svc_listen(mw_svc_t **out, const char *url, const mw_protocol_t *p,
                  const mw_svc_opts_t *o, mw_err_t *err);
MW_API int mw_svc_port(const mw_svc_t *s);

/* Spin/blocking: accepts pending clients and reads what the sockets hold,
 * without decoding. Waits up to timeout_ns (0: never). Returns the work done. */
MW_API int mw_svc_poll(mw_svc_t *s, int64_t timeout_ns);

/* Spin/blocking: next message from any connection. Returns 0 (*id, *sch and
 * msg set), MW_EAGAIN (spin: nothing now), MW_ETIMEDOUT (blocking). Closed
 * connections are reported through on_close (if set) and skipped. */
MW_API int mw_svc_recv(mw_svc_t *s, mw_conn_id_t *id, const mw_schema_t **sch, void *msg, size_t cap);
/* A message for mw_svc_recv_batch: msg is borrowed, valid until fn returns. */
typedef void (*mw_svc_msg_fn)(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg, void *ud);
/* Spin/blocking: as mw_svc_recv, then up to max - 1 more messages that the
 * same connection already has buffered (no read, no scan, no copy into the
 * caller's struct): each goes to fn(s, id, sch, msg, ud) as it is decoded.
 * Much cheaper per message than mw_svc_recv when messages come in bursts
 * (a feed, a flood); the turns between connections stay fair (one
 * connection's buffered run at most, then the next recv starts with the
 * next connection). Returns the number of messages delivered (>= 1),
 * MW_EAGAIN (spin: none now), MW_ETIMEDOUT (blocking: none within
 * opts.sync.timeout_ns), MW_EINVAL (fn NULL or max <= 0), MW_ESTATE (event mode),
 * MW_ENOMEM (the decode scratch, allocated once at the first call). fn may
 * send (any connection), pause, and close id (the close waits until fn
 * returns and ends the batch); it must not call mw_svc_recv, recv_batch or
 * poll. With sessions each call delivers one message. */
MW_API int mw_svc_recv_batch(mw_svc_t *s, mw_svc_msg_fn fn, void *ud, int max);
MW_API int mw_svc_recv_busywait_timeout(mw_svc_t *s, mw_conn_id_t *id, const mw_schema_t **sch, void *msg,
                                 size_t cap, int64_t timeout_ns);

/* Sends to one connection: 0 (accepted), MW_EAGAIN (its tx buffer is full),
 * MW_ECLOSED (no such connection: closed or stale id), encode errors. A
 * connection whose socket fails is closed. */
MW_API int mw_svc_send_to(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg);
/* Queues without writing (batching): many send_more, then one mw_svc_flush
 * = one write. 0, MW_EAGAIN (queue full: flush), MW_ECLOSED, encode errors. */
MW_API int mw_svc_send_more(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg);
/* Writes what is queued for id: 0 when nothing is left, MW_EAGAIN when some
 * is (the socket is full: the rest goes out by itself as the client reads,
 * and on_drain tells when there is room again), MW_ECLOSED, or the error. */
MW_API int mw_svc_flush(mw_svc_t *s, mw_conn_id_t id);
/* Sends to every open connection; returns how many accepted it (>= 0). */
MW_API int mw_svc_broadcast(mw_svc_t *s, const mw_schema_t *sch, const void *msg);
/* Closes one connection (on_close reason MW_ESTATE, "closed by the
 * service"), gracefully: every message already accepted for it is still
 * written, then the socket's write side is shut (FIN) and input is read and
 * dropped until the client closes too, bounded by opts.linger_ns. Unread
 * input therefore never turns the close into an RST that would destroy the
 * replies. The id is stale at once (sends return MW_ECLOSED). opts.on_closed
 * says how it ended (a client that resets the connection meanwhile may have
 * lost replies: MW_ECLOSED there). Deferred inside its own callbacks. Any
 * thread in event mode. 0 or MW_ECLOSED. */
MW_API int mw_svc_close_conn(mw_svc_t *s, mw_conn_id_t id);
/* Closes at once: queued bytes are dropped and unread input makes the
 * kernel send an RST. on_close reason MW_ESTATE. 0 or MW_ECLOSED. */
MW_API int mw_svc_abort_conn(mw_svc_t *s, mw_conn_id_t id);
/* Stops reading from id (its messages wait in the kernel, and TCP flow
 * control slows the client down) until mw_svc_resume_recv. For a gateway
 * whose replies to this client cannot be queued now. Any thread in event
 * mode (takes effect on the worker). 0 or MW_ECLOSED. */
MW_API int mw_svc_pause_recv(mw_svc_t *s, mw_conn_id_t id);
MW_API int mw_svc_resume_recv(mw_svc_t *s, mw_conn_id_t id);

/* Switches a connection's serdes (see mw_clt_set_serdes). Spin/blocking, or
 * from inside that connection's callbacks in event mode. */
MW_API int mw_svc_set_serdes(mw_svc_t *s, mw_conn_id_t id, int dirs, const char *serdes);

/* The last error of a connection (valid inside on_close), or "". */
MW_API const char *mw_svc_conn_error(const mw_svc_t *s, mw_conn_id_t id);
MW_API const char *mw_svc_last_error(const mw_svc_t *s);
MW_API void mw_svc_stats(const mw_svc_t *s, mw_svc_stats_t *st);
MW_API uint32_t mw_svc_conn_count(const mw_svc_t *s);
/* Messages and bytes of one open connection: 0 or MW_ECLOSED. Event mode:
 * from that connection's callbacks (exact) or elsewhere (for display). */
MW_API int mw_svc_conn_stats(const mw_svc_t *s, mw_conn_id_t id, mw_conn_stats_t *st);

/* Stops accepting and closes every connection (idempotent; event mode: stops
 * the workers first, returns when no callback can still run). */
MW_API void mw_svc_close(mw_svc_t *s);
/* Closes and frees; NULL is a no-op. */
MW_API void mw_svc_free(mw_svc_t *s);

/* ---- sessions (opts.session.enabled) ---------------------------------------- */

/* mw_svc_send_to that also gives the number assigned. */
MW_API int mw_svc_send_seq(mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg, uint64_t *seq);
/* Sends to a session by id whether or not it is connected now: journaled,
 * and written at once if it is connected and caught up, else at its next
 * logon. Opens the session's journal if needed (MW_EFULL past
 * max_sessions). Any thread. 0, MW_EINVAL (no sessions or bad id), encode
 * errors, MW_ESYS (journal). */
MW_API int mw_svc_session_send(mw_svc_t *s, const char *session, const mw_schema_t *sch, const void *msg,
                        uint64_t *seq);
/* The number and flags (MW_SEQ_RESENT, MW_SEQ_POSSDUP) of the message being
 * handled from id (inside on_msg, or after recv returned it). */
MW_API uint64_t mw_svc_rx_seq(const mw_svc_t *s, mw_conn_id_t id);
MW_API unsigned mw_svc_rx_flags(const mw_svc_t *s, mw_conn_id_t id);
/* The session id is logged on to, or NULL (no logon yet). */
MW_API const char *mw_svc_conn_session(const mw_svc_t *s, mw_conn_id_t id);
/* 0, or MW_ECLOSED when the Svc has not seen that session. */
MW_API int mw_svc_session_stats(mw_svc_t *s, const char *session, mw_session_stats_t *st);
/* Ends id's session connection cleanly: mw_logout{reason} (from another
 * thread in event mode the reason is "logout by the service"), then a
 * graceful close; the session stays for its next logon. 0, MW_ECLOSED,
 * MW_ESTATE (not logged on). */
MW_API int mw_svc_logout(mw_svc_t *s, mw_conn_id_t id, const char *reason);

#define MW_SVC_SEND_TO(svc, id, msgp, MSGS) mw_svc_send_to((svc), (id), MW_SCHEMA_OF((msgp), MSGS), (msgp))

#ifdef __cplusplus
}
#endif

#endif
