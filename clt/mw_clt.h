/* mw_clt.h - the client: connects to a Svc and exchanges typed messages.
 *
 * One Clt, three run modes (chosen at connect, opts.mode):
 *
 *   MW_MODE_SPIN      nonblocking socket. send/recv return at once: 0 when
 *                     done, MW_EAGAIN when not. The *_busywait_timeout
 *                     variants spin with opts.sync.idle until done or the
 *                     deadline.
 *   MW_MODE_BLOCKING  blocking socket. send/recv wait until done or
 *                     opts.sync.timeout_ns (MW_ETIMEDOUT), one syscall per wait
 *                     (over tls:// and wss:// the socket stays nonblocking and
 *                     the waits are poll() calls, so a split sender and
 *                     receiver never block each other inside TLS).
 *                     In both modes the connection runs on the same driver
 *                     as every other connection (a private io per Clt):
 *                     recv takes the next message the driver has read, a
 *                     read happening inside recv (spin: at once; blocking:
 *                     a blocking read, or poll then read over TLS), and
 *                     mw_clt_close is the driver's graceful close, run on
 *                     that io before close returns (see linger_ns).
 *   MW_MODE_EVENT     an endpoint on an mw_io (opts.event.io). mw_clt_connect
 *                     connects (and handshakes) before it returns, then the io
 *                     thread calls on_connect, on_msg per message and on_close.
 *                     With opts.event.async_connect or opts.event.reconnect it
 *                     returns at once instead, and the io resolves the name
 *                     (async, evdns), connects, runs the TLS/WebSocket
 *                     handshakes and calls on_connect; failed attempts and
 *                     drops both reach on_close. With opts.event.reconnect it
 *                     reconnects per opts.retry (exponential backoff and
 *                     jitter, asking can_reconnect first), rotates the
 *                     connection after event.ttl_ns, drops a silent one after
 *                     event.idle_timeout_ns, and calls on_heartbeat every
 *                     event.heartbeat_ns. Whatever drives the io drives the
 *                     endpoint: mw_io_poll(io, 0) in your spin loop (one poll
 *                     serves every endpoint), mw_io_run (blocking waits), a
 *                     libevent loop, or mw_io_start (a poll thread for many
 *                     Clts and Svcs). Sends may come from callbacks or any
 *                     other thread (a tiny spinlock guards the tx buffer in
 *                     this mode only); they return MW_ECLOSED while not
 *                     connected.
 *
 * Options: the top level of mw_clt_opts_t acts in every mode, opts.sync in
 * spin and blocking modes, opts.event in event mode (see mw_mode.h). The
 * first connect retries per opts.retry in every mode, and event-mode
 * reconnects follow the same policy.
 *
 * URLs: tcp://host:port, tls://host:port, ws://host:port/path,
 * wss://host:port/path. The same program talks any of them by changing only
 * the URL (options for TLS and WebSocket in opts.tr).
 *
 * Typed sends: `MW_CLT_SEND(clt, &new_order, ORDERS_MSGS)` picks the schema
 * from the pointer's type at compile time (a struct outside the protocol does
 * not compile), or declare wrappers with MW_CLT_TYPED(ORDERS_MSGS).
 *
 * Split: mw_clt_sender() and mw_clt_receiver() return two views of one Clt
 * for two threads, one sending and one receiving, with no lock between them.
 *
 * Errors: functions return 0 / MW_E*; mw_clt_last_error(c) gives the sentence
 * ("connect 127.0.0.1:7001: Connection refused", "recv: fixed decode: fixed: unknown
 * tag 77"). After an I/O or protocol error the Clt is failed: close and free
 * it (or reconnect a new one).
 */
#ifndef MW_CLT_H
#define MW_CLT_H

#include <stdbool.h>
#include <stdint.h>

#include "mw_api.h"

#include "mw_conn.h"
#include "mw_idle.h"
#include "mw_io.h"
#include "mw_mode.h"
#include "mw_session.h"
#include "mw_stream.h"
#include "mw_tcp.h"
#include "mw_transport.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mw_clt mw_clt_t;

/* Event-mode lifecycle states. */
typedef enum mw_clt_state {
    MW_CLT_RESOLVING, MW_CLT_CONNECTING, MW_CLT_HANDSHAKING, MW_CLT_OPEN,
    MW_CLT_BACKOFF, MW_CLT_CLOSED
} mw_clt_state_t;

/* What only event mode reads (opts.event). Any of it set in another mode
 * makes mw_clt_connect and mw_clt_open_stream fail with MW_EINVAL. Every
 * callback runs on the io thread and gets opts.ud. */
typedef struct mw_clt_event_opts {
    mw_io_t *io; /* required; must outlive the Clt */
    /* The connection is up (handshakes done; with a session: logged on). */
    void (*on_connect)(mw_clt_t *c, void *ud);
    /* msg is borrowed: valid until the callback returns. */
    void (*on_msg)(mw_clt_t *c, const mw_schema_t *s, const void *msg, void *ud);
    /* reason: MW_ECLOSED (the peer closed), MW_ESTATE (rotated after ttl_ns),
     * MW_ETIMEDOUT (connect/handshake or idle timeout), else the error
     * (MW_ECONNREFUSED, MW_ERESOLVE, MW_ETLS, MW_EPROTO, ...). Called for failed
     * attempts too (the text: mw_clt_last_error). */
    void (*on_close)(mw_clt_t *c, int reason, void *ud);
    /* A send returned MW_EAGAIN (tx buffer full) and the buffer has drained
     * to its low-water mark since: send again. */
    void (*on_drain)(mw_clt_t *c, void *ud);
    void (*on_heartbeat)(mw_clt_t *c, void *ud); /* every heartbeat_ns while open */
    /* Asked before each retry (a failed attempt, a drop), with the failures
     * in a row so far; false ends the endpoint (state CLOSED). May be NULL. */
    bool (*can_reconnect)(mw_clt_t *c, int reason, uint32_t attempt, void *ud);
    bool reconnect;          /* reconnect after a drop or a failed attempt, per
                                opts.retry (no limit by default); implies async_connect */
    bool async_connect;      /* connect from the io: mw_clt_connect returns at once */
    int64_t ttl_ns;          /* rotate an open connection after this long (reconnect
                                at once, no backoff); 0: never */
    int64_t idle_timeout_ns; /* drop (and reconnect) after this long without input; 0: never */
    int64_t heartbeat_ns;    /* call on_heartbeat this often while open; 0: never */
} mw_clt_event_opts_t;

/* Options are copied, but the strings they point to (serdes name, TLS file
 * names, WebSocket path/host/origin, record_path, bind address/interface)
 * are used again at every connect or accept: keep them alive as long as the
 * object. mw_clt_opts_init sets the defaults named here.
 *
 * Fields at the top level act in every mode; .sync only in spin and
 * blocking modes (event mode ignores it); .event only in event mode
 * (MW_EINVAL in another mode). */
typedef struct mw_clt_opts {
    mw_mode_t mode;            /* default MW_MODE_SPIN */
    mw_conn_opts_t conn;       /* serdes, framing, max_msg, buffers */
    mw_tcp_opts_t tcp;         /* nodelay, bind address/interface, busy poll, buffers */
    mw_transport_opts_t tr;    /* TLS (CA, certs, verification), WebSocket (path, origin,
                                  subprotocol, limits), record_path */
    int64_t connect_timeout_ns;/* per attempt: resolve + connect + handshakes; default 5 s */
    /* The one retry policy (mw_mode.h): the first connect's attempts in every
     * mode and the event-mode reconnects. Defaults: 100 ms doubling to 10 s,
     * jitter 0.2; max_attempts 0: a connect that returns its result tries
     * once, an endpoint with event.reconnect never gives up. */
    mw_retry_opts_t retry;
    /* The close asked for with mw_clt_close has finished: the socket is
     * closed. Called once per Clt, after its first mw_clt_close (never after
     * mw_clt_free alone, never for a drop: that is on_close). result: 0
     * when every byte send accepted was written (lingering: and the peer
     * then closed its side, so it has read them); MW_ETIMEDOUT when
     * linger_ns ran out first (with linger_ns 0: bytes were still queued
     * and are lost); MW_ECLOSED when the peer reset the connection during
     * the linger (it closed with bytes unread: its kernel dropped them, and
     * ours not sent yet; text "the peer reset the connection during the
     * linger: what it had not read may be lost"); else the error that ended
     * the connection (its text: mw_clt_last_error, also inside
     * on_closed). Spin/blocking: inside mw_clt_close, before it returns.
     * Event mode: inside mw_clt_close when nothing lingers (no connection,
     * or linger_ns 0), else on the io thread once the linger ends.
     * mw_clt_free(c) may be called inside it (event mode: the free runs
     * right after the callback returns, from the io). Any mode. */
    void (*on_closed)(mw_clt_t *c, int result, void *ud);
    /* How long mw_clt_close may linger to deliver what send accepted, in
     * every mode. A lingering close writes every accepted byte, then ends
     * the write side (FIN; over TLS a close_notify first; over WebSocket a
     * close frame after the queued messages), then reads and drops input
     * until the peer's EOF, so that no RST destroys what the peer has not
     * read yet; bounded by linger_ns, then the socket is closed.
     *   < 0 (the default): the mode's default, 2 s in spin and blocking
     *       modes, 0 in event mode.
     *   0: close writes what the socket takes at once and closes; anything
     *       still queued is lost (an RST if input is unread).
     * Spin and blocking: mw_clt_close does it before it returns (so it may
     * block up to linger_ns when the peer neither reads nor closes); its
     * return is the signal that it ended, and on_closed says how.
     * Event mode: close hands the connection to the io, which lingers while
     * it keeps running; on_closed fires when it is over. The same holds for
     * a close asked for inside a callback. mw_clt_free never lingers, in any
     * mode (event mode: it cuts a linger short; free in on_closed, or after
     * it, and always before mw_io_free). */
    int64_t linger_ns;
    bool rx_timestamps;        /* take one timestamp per read (mw_clt_rx_time_ns) */
    /* every message sent / received, any mode */
    mw_conn_hook_fn on_sent, on_recvd;
    void *hook_ud;
    void *ud;                  /* passed to on_closed and every callback in .event */
    /* A recoverable sequenced session (see mw_session.h and the README,
     * "Sessions"): set session.enabled, session.journal_dir and session.id.
     * mw_clt_connect then also logs on (event mode: on_connect runs once the
     * logon is answered); a refused logon fails with MW_ESESSION and the
     * server's reason. Every application message is numbered and journaled;
     * what the server missed is resent after each logon, before anything new.
     * Event mode with reconnect: sends while disconnected are journaled (0)
     * and go out after the next logon. Spin and blocking modes send the
     * session's heartbeats from inside send and recv: call recv regularly. */
    mw_session_opts_t session;
    mw_sync_opts_t sync;       /* spin and blocking: timeout_ns (-1: none), idle (busy) */
    mw_clt_event_opts_t event; /* event mode: io, callbacks, reconnect, timers */
} mw_clt_opts_t;

MW_API void mw_clt_opts_init(mw_clt_opts_t *o);

/* mw_clt_connect connects to url ("tcp://host:port"), retrying per
 * opts.retry, and returns a new Clt in *out. Blocks for the connect (unless
 * opts.event.async_connect or opts.event.reconnect). In event mode the Clt
 * is then attached to opts.event.io and on_connect runs on the io thread.
 * Returns 0, MW_EINVAL (bad url/options: event mode without event.io,
 * anything in opts.event set in another mode, a negative retry delay or a
 * jitter outside 0..1),
 * MW_ERESOLVE, MW_ECONNREFUSED, MW_ETIMEDOUT, MW_ENOTSUP (scheme not built
 * yet), MW_ENOMEM; the sentence goes to err. Allocates. Any thread. */
MW_API int mw_clt_connect(mw_clt_t **out, const char *url, const mw_protocol_t *p,
                   const mw_clt_opts_t *o, mw_err_t *err);

/* Builds a Clt over a stream you already have (e.g. mw_replay_open, or a
 * stream you connected yourself). Ownership of s passes (also on failure).
 * Event mode: attached to opts.event.io and on_connect runs from the next
 * poll; no reconnects (event.reconnect and opts.retry are ignored: there is
 * nothing to reconnect to). Returns 0, MW_EINVAL (as mw_clt_connect),
 * MW_ENOMEM. */
MW_API int mw_clt_open_stream(mw_clt_t **out, mw_stream_t *s, const mw_protocol_t *p,
                       const mw_clt_opts_t *o, mw_err_t *err);

/* ---- sending (the sender's thread) --------------------------------------- */

/* Sends one message: encodes it into the tx buffer and writes.
 * Spin/event: 0 when accepted (written, or queued behind a full socket),
 * MW_EAGAIN when the tx buffer is full. Blocking: waits until every byte is
 * written or sync.timeout_ns (MW_ETIMEDOUT: the message WAS accepted and the rest
 * of its bytes stay queued for the next send or flush; do not send it again).
 * Encode errors (MW_ERANGE, MW_EUTF8,
 * MW_ETOOBIG) reject this message only; MW_ECLOSED or I/O errors fail the Clt. */
MW_API int mw_clt_send(mw_clt_t *c, const mw_schema_t *s, const void *msg);
/* Queues without writing (batching): many send_more, then one flush = one
 * write syscall. 0, MW_EAGAIN (buffer full: flush), or an encode error. */
MW_API int mw_clt_send_more(mw_clt_t *c, const mw_schema_t *s, const void *msg);
/* Writes queued bytes: 0 when none remain, MW_EAGAIN if some remain (spin),
 * an error. Blocking mode waits until all are written. */
MW_API int mw_clt_flush(mw_clt_t *c);
/* Spins with opts.sync.idle until the message is accepted AND written, or
 * timeout_ns passes (MW_ETIMEDOUT). Any mode but event. */
MW_API int mw_clt_send_busywait_timeout(mw_clt_t *c, const mw_schema_t *s, const void *msg, int64_t timeout_ns);
/* Zero-copy raw send of an already-encoded payload: claim room for up to max
 * bytes, write the payload there, then commit its real length (the framing
 * is added around it). claim returns NULL when there is no room (flush and
 * retry), max is over max_msg, or a claim is already open. commit returns 0,
 * MW_EINVAL (len over the claimed max, no claim open, or a '\n' in a LINE
 * framed payload) or MW_ETOOBIG: an error abandons the claim and nothing is
 * queued. Do not send or flush between claim and commit. Nothing is written
 * until the next send, recv or flush. Raw messages are not seen by the hooks
 * (they have no schema). */
MW_API uint8_t *mw_clt_claim(mw_clt_t *c, size_t max);
MW_API int mw_clt_commit(mw_clt_t *c, size_t len);

/* ---- receiving (the receiver's thread; not in event mode) ---------------- */

/* Receives one message into msg (cap bytes: use sizeof(proto_msg_t)) and sets
 * *s to its schema. Spin: 0 or MW_EAGAIN at once. Blocking: waits up to
 * sync.timeout_ns. MW_ECLOSED when the peer closed and everything sent before was
 * received; decode/framing errors fail the Clt. */
MW_API int mw_clt_recv(mw_clt_t *c, const mw_schema_t **s, void *msg, size_t cap);
/* Spins with opts.sync.idle until a message arrives or timeout_ns passes. */
MW_API int mw_clt_recv_busywait_timeout(mw_clt_t *c, const mw_schema_t **s, void *msg, size_t cap,
                                 int64_t timeout_ns);

/* ---- sessions (opts.session.enabled) ------------------------------------- */

/* mw_clt_send that also gives the number assigned (*seq). MW_EINVAL without
 * a session. (mw_clt_send returns 0, not the number: 0 means accepted in
 * every mode, and an int cannot carry a 64-bit number.) */
MW_API int mw_clt_send_seq(mw_clt_t *c, const mw_schema_t *s, const void *msg, uint64_t *seq);
/* The number and flags (MW_SEQ_RESENT, MW_SEQ_POSSDUP) of the message recv
 * just returned, or of the one on_msg is handling. 0 without a session. */
MW_API uint64_t mw_clt_rx_seq(const mw_clt_t *c);
MW_API unsigned mw_clt_rx_flags(const mw_clt_t *c);
MW_API int mw_clt_session_stats(mw_clt_t *c, mw_session_stats_t *st);
/* Ends the session's connection cleanly: sends mw_logout, waits for the
 * server's answer (bounded by session.logon_timeout_ns) and closes; the
 * session stays in the journal for the next connect. Event mode: on the io
 * thread; the Clt stops (no reconnect) once the answer arrives. 0,
 * MW_ETIMEDOUT, MW_ECLOSED, MW_EINVAL (no session). */
MW_API int mw_clt_logout(mw_clt_t *c, const char *reason);

/* ---- split sender / receiver --------------------------------------------- */
typedef struct mw_clt_sender mw_clt_sender_t;
typedef struct mw_clt_receiver mw_clt_receiver_t;
MW_API mw_clt_sender_t *mw_clt_sender(mw_clt_t *c);
MW_API mw_clt_receiver_t *mw_clt_receiver(mw_clt_t *c);
MW_API int mw_clt_sender_send(mw_clt_sender_t *tx, const mw_schema_t *s, const void *msg);
MW_API int mw_clt_sender_send_busywait_timeout(mw_clt_sender_t *tx, const mw_schema_t *s, const void *msg,
                                        int64_t timeout_ns);
MW_API int mw_clt_receiver_recv(mw_clt_receiver_t *rx, const mw_schema_t **s, void *msg, size_t cap);
MW_API int mw_clt_receiver_recv_busywait_timeout(mw_clt_receiver_t *rx, const mw_schema_t **s, void *msg,
                                          size_t cap, int64_t timeout_ns);

/* ---- serdes switch, state, lifetime --------------------------------------- */

/* Switches serdes (and its default framing) for dirs (MW_DIR_TX, MW_DIR_RX),
 * effective from the next message in that direction. Both peers must switch
 * at the same message (e.g. after a login reply). Call TX from the sender's
 * thread and RX from the receiver's; in event mode, RX from inside on_msg. */
MW_API int mw_clt_set_serdes(mw_clt_t *c, int dirs, const char *serdes);

MW_API mw_mode_t mw_clt_mode(const mw_clt_t *c);
/* Event mode: the lifecycle state; other modes: OPEN or CLOSED. */
MW_API mw_clt_state_t mw_clt_state(const mw_clt_t *c);
MW_API const char *mw_clt_state_name(mw_clt_state_t st);
/* Successful connects so far (1 + reconnects). */
MW_API uint64_t mw_clt_connects(const mw_clt_t *c);
/* With opts.rx_timestamps: monotonic ns of the read that brought the message
 * being handled (one timestamp per read: every message of a batch shares it;
 * for a replayed stream, the recorded time). Receiver's thread / on_msg. */
MW_API uint64_t mw_clt_rx_time_ns(const mw_clt_t *c);
MW_API void mw_clt_stats(const mw_clt_t *c, mw_conn_stats_t *st);
MW_API const char *mw_clt_last_error(const mw_clt_t *c);
/* "ip:port" of the local end. */
MW_API int mw_clt_local_name(const mw_clt_t *c, char *buf, size_t cap);
/* True until the Clt failed or was closed. */
MW_API bool mw_clt_is_open(const mw_clt_t *c);

/* Closes the connection gracefully (idempotent, never frees): what send
 * accepted is delivered first, bounded by opts.linger_ns (see there), then
 * on_closed says how it ended. Spin/blocking: blocks until that is done (up
 * to linger_ns); call it once neither the sender nor the receiver thread is
 * inside a call. An event-mode endpoint stops for good (no reconnect, no
 * more on_connect/on_msg/on_close). Event mode: call it on the io thread
 * (callbacks included: deferred until the callback returns) or while the io
 * is not running; a linger then runs on the io. */
MW_API void mw_clt_close(mw_clt_t *c);
/* Closes and frees; NULL is a no-op; on_closed is not called. Never
 * lingers, in any mode: a Clt not closed yet is closed as with linger_ns 0
 * (what the socket takes at once is written, the rest is lost), and an
 * event-mode linger under way is cut short; call mw_clt_close first (and,
 * in event mode, wait for on_closed) to deliver everything. Event mode: on
 * the io thread (inside on_closed too; not inside this Clt's other
 * callbacks) or while the io is not running, before mw_io_free. Callbacks
 * posted but not yet run are dropped safely. */
MW_API void mw_clt_free(mw_clt_t *c);

/* Typed sends. */
#define MW_CLT_SEND(clt, msgp, MSGS) mw_clt_send((clt), MW_SCHEMA_OF((msgp), MSGS), (msgp))
#define MW__CLT_TYPED(m)                                                            \
    static inline int m##_clt_send(mw_clt_t *c, const m##_t *msg) {                 \
        return mw_clt_send(c, m##_schema(), msg);                                   \
    }
/* MW_CLT_TYPED(MSGS): declares new_order_clt_send(clt, const new_order_t *)... */
#define MW_CLT_TYPED(MSGS) MSGS(MW__CLT_TYPED)

#ifdef __cplusplus
}
#endif

#endif
