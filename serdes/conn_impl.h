/* conn_impl.h - a message connection: a stream plus framing, serdes and
 * fixed-capacity buffers. The engine under both mw_clt and mw_svc (it sits at
 * the top of the serdes layer so that clt and svc, which never include each
 * other, can share it).
 *
 * Send path: the message is encoded in place into the tx buffer (framing
 * prefix reserved, payload encoded after it, prefix sealed), then flushed with
 * one write of every pending byte. A message is "accepted" once it is in the
 * tx buffer: from then on it goes out in order even if the socket is full now
 * (mw__conn_flush later, or the event loop on writability).
 *
 * Receive path: one read fills the rx buffer with as many frames as the kernel
 * has; frames are then decoded one at a time, so a serdes or framing switch
 * takes effect exactly at the next message.
 *
 * Over a message stream (WebSocket, mw__stream_is_msg) the stream carries the
 * boundaries: flush hands the queued messages to writemsgs as one iovec each
 * (a batch per write syscall), and fill takes one message per readmsg, as
 * many as the stream already holds, writing in front of each an in-memory
 * length header that only this connection reads. Nothing but the payload
 * reaches the stream, text or binary per the tx serdes each message was
 * encoded with.
 *
 * Thread rules: the tx side (send, enqueue, flush, claim/commit, tx serdes
 * switch) belongs to one thread and the rx side (recv, fill, dispatch, rx
 * serdes switch) to one thread; the two may be different threads at the same
 * time with no lock. With MW_CONN_TX_LOCK the tx side takes a lock
 * (lock_impl.h) so several threads (e.g. an event loop flushing and an
 * application thread sending) may share it.
 *
 * Memory is held only while it is used: the rx and tx buffers (and the decode
 * scratch of event mode) come from a per-thread pool of 4 KiB << k blocks
 * (core/buf_impl.h) when data arrives or a message is sent, 4 KiB at first,
 * and grow, up to rx_buf / tx_buf, only when a message (or a full read) needs
 * more. An empty tx buffer goes back to the pool when a flush has written
 * everything; an empty rx buffer when mw__conn_pump returns (event mode; a
 * pull-mode reader keeps its rx buffer while open, since its messages borrow
 * from it until the next rx call, and its driver takes it at rx_buf size at
 * once, as before). So an idle event-mode connection holds no buffer,
 * and steady state allocates nothing: the pool keeps the blocks the traffic
 * needs, and a buffer too large for the pool stays with its connection. Growth
 * allocates only when a message is larger than any before it on that side.
 * A busy connection attached to an io (Clt, Svc) keeps its buffers while
 * traffic flows, so that messages do not take and give them back one by one:
 * its io gives them back once it has been idle for 10 to 20 ms (up to 320 ms
 * after a long steady run; core/io_impl.h). A spin or blocking Clt keeps
 * them while connected.
 */
#ifndef MW_CONN_IMPL_H
#define MW_CONN_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "buf_impl.h"
#include "frame_impl.h"
#include "mw_conn.h"
#include "stream_impl.h"

void mw__conn_opts_init(mw_conn_opts_t *o);

typedef struct mw__conn_side {
    mw_serdes_t sd;
    mw__framer_t fr;
    mw__buf_t buf;       /* held only while in use (see above) */
    uint32_t buf_max;   /* the most buf may grow to: opts rx_buf / tx_buf */
    uint32_t buf_want;  /* capacity to take next time: grown by what messages needed */
    uint64_t msgs, bytes;
    mw_conn_hook_fn hook;
    void *hook_ud;
    int failed; /* first fatal MW_E* on this side, 0 if none */
    uint32_t fast_max;  /* tx: the largest fixed wire size the inline send path takes
                           (drv_impl.h); 0 when this side is not plain fixed + u32 */
    mw_err_t err;
} mw__conn_side_t;

typedef struct mw__conn {
    mw_stream_t *stream; /* owned: freed by mw__conn_fini */
    const mw_protocol_t *proto;
    unsigned flags;
    uint32_t max_msg;
    bool msgs;          /* the stream is a message stream (WebSocket): readmsg/writemsgs */
    mw__conn_side_t tx;
    mw__conn_side_t rx;
    void *rx_msg;       /* decode scratch of proto->max_size bytes while dispatching */
    uint64_t rx_ts_ns;  /* MW_CONN_RX_TIMESTAMPS: clock at the last read */
    size_t rx_scanned;  /* LINE framing: buffered bytes known to hold no newline */
    bool rx_stopped;    /* the last dispatch stopped because its callback asked */
    bool rx_eof;        /* the peer closed (or a read failed); buffered frames may remain */
    int rx_io_err;      /* the read failure, reported once the buffered frames are out */
    uint8_t rx_where;   /* mw__close_where_t of rx.failed: where the rx error arose */
    mw__lock_t tx_lock; /* MW_CONN_TX_LOCK's lock (lock_impl.h): conn.c only */
    mw__lock_t *tx_lk;  /* the lock taken: &tx_lock, the owner's (shared), or NULL (none) */
    bool tx_claimed;    /* between a successful claim and its commit */
    bool hold;          /* buffers stay when empty; the owner gives them back (driver) */
    size_t tx_claim_max;
} mw__conn_t;

/* Takes ownership of stream (also on failure: it is freed). Buffers are
 * taken later, as data comes (a send or a read may then fail with
 * MW_ENOMEM). Returns 0, MW_EINVAL (bad options: unknown serdes, buffers
 * smaller than one max frame; text in err) or MW_ENOMEM. */
int mw__conn_init(mw__conn_t *c, mw_stream_t *stream, const mw_protocol_t *p,
                 const mw_conn_opts_t *o, mw_err_t *err);
/* Frees the stream and serdes state; buffers go back to the pool. Safe on a
 * zeroed conn. */
void mw__conn_fini(mw__conn_t *c);

/* Switches serdes (and framing: MW_FRAME_AUTO = the serdes' default) for the
 * given directions, effective from the next message. Returns 0 or MW_EINVAL
 * (text in the side's err). May allocate (msgpack state). */
int mw__conn_set_serdes(mw__conn_t *c, int dirs, const char *serdes, int frame);

/* ---- tx side -------------------------------------------------------------- */

/* Encodes msg into the tx buffer without writing. Returns 0 (accepted),
 * MW_EAGAIN (no room now: flush first), or the encoder's error (MW_ETOOBIG over
 * max_msg, MW_ERANGE, MW_EUTF8, ...: the message cannot be sent; the
 * connection is unaffected). */
int mw__conn_enqueue(mw__conn_t *c, const mw_schema_t *s, const void *msg);
/* Writes pending bytes. Returns 0 when none remain, MW_EAGAIN when some remain
 * (the socket is full, or a blocking socket's send timeout expired),
 * MW_ECLOSED or another error (the connection failed; text in tx.err). Stops
 * at the first short write: one write syscall per call in the usual case. */
int mw__conn_flush(mw__conn_t *c);
/* enqueue (flushing first if the buffer is full), then flush. Returns 0 when
 * the message was accepted (it may still be pending: see mw__conn_tx_pending),
 * MW_EAGAIN when it was not accepted (buffer full and socket full), or an
 * error (encode errors leave the connection usable; I/O errors do not). */
int mw__conn_send(mw__conn_t *c, const mw_schema_t *s, const void *msg);
/* Bytes not yet on the socket: the tx buffer, plus (> 0) when a decorator
 * (WebSocket) still holds accepted messages in its own buffer. Takes the tx
 * lock (MW_CONN_TX_LOCK), so any thread may ask. */
size_t mw__conn_tx_pending(mw__conn_t *c);

/* Zero-copy raw send: claim room for a payload of up to max bytes, write it,
 * then commit its real length (framing is added around it). claim returns
 * NULL when there is no room (flush and retry), max > max_msg, or a claim is
 * already open. commit returns 0, or MW_EINVAL (len > the claimed max, or no
 * claim open; LINE framing and a '\n' in the payload) or MW_ETOOBIG: an
 * error abandons the claim, nothing is queued. With MW_CONN_TX_LOCK the lock
 * is held from a successful claim until commit: do not send or flush in
 * between. Nothing is written to the socket until flush. Raw messages are not
 * seen by the hooks (they have no schema). */
uint8_t *mw__conn_claim(mw__conn_t *c, size_t max);
int mw__conn_commit(mw__conn_t *c, size_t len);

/* ---- rx side -------------------------------------------------------------- */

/* One read into the rx buffer. Returns bytes read (> 0), MW_EAGAIN, MW_ECLOSED
 * (peer closed: bytes already buffered can still be received), or an error. */
ssize_t mw__conn_fill(mw__conn_t *c);

/* Decodes the next buffered message into msg (cap bytes) without reading.
 * Returns 0, MW_EAGAIN (no complete frame buffered), MW_ECLOSED (the peer
 * closed and every message was delivered), MW_ETRUNC (the peer closed in the
 * middle of a message), or another fatal error (MW_ETOOBIG frame over
 * max_msg, decode errors): the connection must be closed; messages before
 * the bad one were already delivered. */
int mw__conn_next(mw__conn_t *c, const mw_schema_t **s, void *msg, size_t cap);

/* next, reading once if nothing is buffered. Returns 0, MW_EAGAIN,
 * MW_ECLOSED (peer closed and nothing left), MW_ETRUNC (peer closed inside a
 * message), or an error. Never blocks on a nonblocking stream; on a blocking
 * stream it waits in read. */
int mw__conn_recv(mw__conn_t *c, const mw_schema_t **s, void *msg, size_t cap);

/* Raw borrowed view of the next frame's payload (valid until the next rx
 * call). Returns 0, MW_EAGAIN or a framing error. Consumes the frame. */
int mw__conn_next_raw(mw__conn_t *c, const uint8_t **payload, size_t *len);

/* Event mode: decodes every buffered message (up to budget, < 0 = all) and
 * calls fn for each with a borrowed struct valid until fn returns. fn returns
 * true to continue, false to stop (e.g. it closed the connection). Returns the
 * number delivered, or a fatal error after delivering the ones before it. */
typedef bool (*mw__conn_msg_fn)(void *ud, mw__conn_t *c, const mw_schema_t *s, const void *msg);
int mw__conn_dispatch(mw__conn_t *c, mw__conn_msg_fn fn, void *ud, int budget);

/* Event loops: reads and delivers what the connection holds: one read
 * (level-triggered readiness brings the loop back for the rest), again while
 * the stream reports input held inside it (mw__stream_pending: TLS read-ahead,
 * WebSocket frames), which no readiness event would announce, at most
 * max_reads times; *more says input may remain (call again soon).
 * Stops early when fn returns false. Returns the bytes read (>= 0), or the
 * fatal error / MW_ECLOSED after delivering every message before it. */
ssize_t mw__conn_pump(mw__conn_t *c, mw__conn_msg_fn fn, void *ud, int max_reads, bool *more);

static inline bool mw__conn_rx_buffered(const mw__conn_t *c) { return mw__buf_len(&c->rx.buf) != 0; }

void mw__conn_stats(const mw__conn_t *c, mw_conn_stats_t *st);
/* The most relevant error text: rx side's if it failed, else tx side's. */
const char *mw__conn_last_error(const mw__conn_t *c);

/* Before closing the connection on purpose with reason (0, MW_ESTATE, or the
 * error that ends it): over WebSocket, sends the close frame whose code fits
 * the reason and where it arose (a decode error inside a complete message is
 * 1007, a message over max_msg 1009; the table is mw__transport_ws_close_code),
 * with why as its text (NULL: mw__conn_last_error); going_away (shutdown) is
 * 1001. Best effort, nothing for other transports. The caller then closes
 * the stream. */
void mw__conn_close_transport(mw__conn_t *c, int reason, const char *why, bool going_away);

#endif
