/* stream_impl.h - streams behind one ops table: TCP, an in-process pair, and
 * (stacked as decorators) TLS, WebSocket and record/replay. Byte streams
 * read and write bytes; a message stream (WebSocket) reads and writes whole
 * messages (see "Message streams" below).
 *
 * All streams are nonblocking unless a backend documents a blocking option:
 * read and writev return MW_EAGAIN instead of waiting. want() tells the
 * caller which readiness (MW_WANT_READ / MW_WANT_WRITE) the stream needs
 * before the next call can progress; TLS uses it to ask for write readiness
 * to finish a read. fd() is the descriptor to wait on, or -1 for streams
 * without one (the in-process pair), which only the direct selector can poll.
 *
 * What a caller needs from a stack it gets from the top stream's ops, never
 * by looking underneath: handshake() drives TLS and WebSocket handshakes
 * (each decorator completes its inner stream's first), pending() says input
 * is buffered inside a decorator where no fd readiness will announce it (read
 * again before waiting), rx_time() gives a recorder's or replay's timestamp.
 * A driver's loop is: handshake() until 1; then on readiness (or while
 * pending() > 0) read; on MW_EAGAIN wait for want() (plus write readiness
 * while it has bytes to send).
 *
 * Thread rules: one thread reads and one thread writes at a time; read and
 * writev may run concurrently on two threads for the TCP and pair streams
 * (the split sender/receiver relies on it). close/free must not race with
 * anything.
 */
#ifndef MW_STREAM_IMPL_H
#define MW_STREAM_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "lock_impl.h"
#include "mw_err.h"
#include "mw_io.h" /* MW_WANT_READ / MW_WANT_WRITE */
#include "mw_stream.h"

/* Message flags (mw__stream_writemsgs / mw__stream_readmsg). */
enum {
    /* writemsgs: the messages are text (WebSocket opcode 1), else binary.
     * readmsg (out): the message received was text. */
    MW_MSG_TEXT = 1,
    /* readmsg (in): return a message only if a whole data message is
     * already buffered inside the stream: no I/O, no control frame handled,
     * no failure reported (all of those wait for a call without it);
     * MW_EAGAIN otherwise. For reading a burst of messages one at a time
     * without reordering them against the stream's own replies. */
    MW_MSG_BUFFERED = 2,
    /* writemsgs (in): more messages follow in the next call, so the stream
     * may keep these in its buffer rather than write now (like MSG_MORE);
     * the last call of a batch goes without it. */
    MW_MSG_MORE = 4,
};

/* ---- Message streams ------------------------------------------------------
 * A message stream (WebSocket) carries messages, not bytes. Its boundaries
 * travel with the operation and are never written as bytes for the other
 * layer to parse back:
 *
 * - writemsgs(s, msgs, n, flags) takes n whole messages, one per iovec, and
 *   sends each as one message (text or binary per MW_MSG_TEXT). It returns
 *   how many it accepted (from the front; > 0), MW_EAGAIN if none, or an
 *   error. Accepted messages may wait in the stream's own buffer while the
 *   socket is full: want() then says MW_WANT_WRITE and writemsgs(s, NULL, 0,
 *   0) pushes them on (0 when all are out, MW_EAGAIN otherwise). One call
 *   costs at most one write syscall for its whole batch (the WebSocket
 *   server gathers headers and payloads into one writev; the client masks
 *   into its buffer and writes that once, or not yet with MW_MSG_MORE) and
 *   allocates nothing.
 * - readmsg(s, dst, cap, flags, &oflags) returns exactly one message: its
 *   length (>= 0: an empty message is 0), MW_EAGAIN, MW_ECLOSED, an error, or
 *   MW_ETOOBIG when the next message is larger than cap (it stays for a
 *   call with a larger buffer). One socket read may bring many messages:
 *   pending() then stays > 0, and the caller reads them with further calls
 *   (MW_MSG_BUFFERED takes only those already whole).
 *
 * mw__conn keeps its own queued messages in its tx buffer behind an
 * in-memory length header that it writes and reads itself, hands up to a
 * batch of them to writemsgs as iovecs of payloads, and on receive writes
 * the same kind of header in front of each message readmsg put into its rx
 * buffer, so it still decodes one message at a time from its buffer.
 *
 * For tools that handle bytes, the WebSocket stream's read/writev also offer
 * a record view (see mw_ws.h); msgwire's own layers do not use it. */

typedef struct mw__stream_ops {
    const char *name;
    /* > 0 bytes read; MW_EAGAIN nothing yet; MW_ECLOSED orderly end of
     * stream; other MW_E* on error (text in s->err). Never returns 0. */
    ssize_t (*read)(mw_stream_t *s, void *dst, size_t cap);
    /* >= 0 bytes written (may be fewer than asked); MW_EAGAIN if nothing
     * could be written; MW_ECLOSED if the peer is gone; other MW_E*. */
    ssize_t (*writev)(mw_stream_t *s, const struct iovec *iov, int iovcnt);
    /* MW_WANT_* bits the stream waits for; 0 if reads/writes can be tried. */
    int (*want)(const mw_stream_t *s);
    int (*fd)(const mw_stream_t *s);
    /* Releases OS resources; idempotent; the object stays valid. */
    void (*close)(mw_stream_t *s);
    /* Closes and frees the object and any inner stream it owns. */
    void (*free)(mw_stream_t *s);

    /* Optional entries (NULL: the default in brackets). */

    /* Advances the stream's handshakes (TCP connect, TLS, WebSocket upgrade)
     * without consuming application data: 1 when complete, MW_EAGAIN (wait
     * for want()), or the handshake's error. A decorator first completes its
     * inner stream's. Bytes that arrive after a handshake stay buffered for
     * the next read (pending() counts them). Reader side. [1: none] */
    int (*handshake)(mw_stream_t *s);
    /* Input already taken from the fd and buffered inside the stream that
     * the next read would return or process without waiting (TLS records
     * read ahead, WebSocket frames after the one returned), which no fd
     * readiness announces: the caller must read again while it is > 0.
     * A count of bytes (or 1 when only "some" is known). A decorator adds
     * what its inner stream holds when its own buffer cannot progress.
     * Reader side. [0] */
    size_t (*pending)(const mw_stream_t *s);
    /* The monotonic ns at which the bytes the last read returned were
     * received, as a recorder or a replay knows it: 0, or MW_ENOTSUP.
     * Decorators forward it. [MW_ENOTSUP] */
    int (*rx_time)(const mw_stream_t *s, uint64_t *ns);
    /* Message streams only (see above); NULL for byte streams. */
    ssize_t (*readmsg)(mw_stream_t *s, void *dst, size_t cap, int flags, int *oflags);
    ssize_t (*writemsgs)(mw_stream_t *s, const struct iovec *msgs, int n, int flags);
    /* Replaces the decorator's own lock with the owner's (lk, lock_impl.h)
     * and passes lk on to the inner stream. From then on the owner holds lk
     * around every tx-side call (writev, writemsgs), which then take no lock
     * of their own; the rx-side calls (read, readmsg, handshake, pending,
     * close, free) and the decorator's helpers take lk themselves, so they
     * must be called without it. Called once, before the stream is shared
     * between threads.
     * [no lock to share: nothing] */
    void (*share_lock)(mw_stream_t *s, mw__lock_t *lk);
} mw__stream_ops_t;

struct mw_stream {
    const mw__stream_ops_t *ops;
    mw_stream_t *inner; /* decorated stream, NULL for a base stream; only
                           the decorator itself looks at it */
    mw_err_t err;       /* last error with its text */
};

static inline ssize_t mw__stream_read(mw_stream_t *s, void *dst, size_t cap) {
    return s->ops->read(s, dst, cap);
}
static inline ssize_t mw__stream_writev(mw_stream_t *s, const struct iovec *iov, int n) {
    return s->ops->writev(s, iov, n);
}
static inline ssize_t mw__stream_write(mw_stream_t *s, const void *p, size_t n) {
    struct iovec v = {(void *)p, n};
    return s->ops->writev(s, &v, 1);
}
static inline int mw__stream_want(const mw_stream_t *s) { return s->ops->want(s); }
static inline int mw__stream_fd(const mw_stream_t *s) { return s->ops->fd(s); }
static inline void mw__stream_close(mw_stream_t *s) { if (s) s->ops->close(s); }
/* 1 handshakes complete, MW_EAGAIN (wait for want()), or the error. */
static inline int mw__stream_handshake(mw_stream_t *s) {
    return s->ops->handshake ? s->ops->handshake(s) : 1;
}
/* > 0: read again before waiting on the fd. */
static inline size_t mw__stream_pending(const mw_stream_t *s) {
    return s->ops->pending ? s->ops->pending(s) : 0;
}
static inline int mw__stream_rx_time(const mw_stream_t *s, uint64_t *ns) {
    return s->ops->rx_time ? s->ops->rx_time(s, ns) : MW_ENOTSUP;
}
/* True for a message stream (readmsg/writemsgs). */
static inline bool mw__stream_is_msg(const mw_stream_t *s) { return s->ops->writemsgs != NULL; }
static inline ssize_t mw__stream_readmsg(mw_stream_t *s, void *dst, size_t cap, int flags, int *oflags) {
    return s->ops->readmsg(s, dst, cap, flags, oflags);
}
static inline ssize_t mw__stream_writemsgs(mw_stream_t *s, const struct iovec *msgs, int n, int flags) {
    return s->ops->writemsgs(s, msgs, n, flags);
}
/* One lock for the whole stack: see share_lock above. */
static inline void mw__stream_share_lock(mw_stream_t *s, mw__lock_t *lk) {
    if (s->ops->share_lock) s->ops->share_lock(s, lk);
    else if (s->inner) mw__stream_share_lock(s->inner, lk);
}

/* mw__stream_write_all writes every byte, waiting with poll() for writability
 * up to timeout_ns (negative: no limit). Returns 0, MW_ETIMEDOUT, or the
 * stream's error. For set-up paths and tools, not the hot path. Streams with
 * no fd are retried in a spin with sched_yield. */
int mw__stream_write_all(mw_stream_t *s, const void *p, size_t n, int64_t timeout_ns);

/* mw__stream_wait waits until the stream's fd is ready for `events`
 * (MW_WANT_* bits) or timeout_ns passes. Returns the ready bits (> 0), or
 * MW_ETIMEDOUT, or MW_ESYS. A stream without an fd returns `events` at once. */
int mw__stream_wait(const mw_stream_t *s, int events, int64_t timeout_ns);

/* ---- In-process pair -----------------------------------------------------
 * Two connected in-memory streams for tests: bytes written to one are read
 * from the other. Each direction has a ring of `cap` bytes: a writer finding
 * it full gets a partial write or MW_EAGAIN. A read returns at most
 * `max_chunk` bytes (0: no limit), so tests can force frames to arrive split
 * at any point. Closing one end makes the other read MW_ECLOSED once the
 * bytes already written are drained, and write MW_ECLOSED. Thread-safe for
 * one reader and one writer on each end. fd() is -1. Allocates at creation. */
int mw__pair_new(mw_stream_t **a, mw_stream_t **b, size_t cap, size_t max_chunk);

#endif
