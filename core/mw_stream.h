/* mw_stream.h - byte streams behind one ops table: TCP, an in-process pair,
 * and (stacked as decorators) TLS, WebSocket and record/replay.
 *
 * All streams are nonblocking unless a backend documents a blocking option:
 * read and writev return MW_EAGAIN instead of waiting. want() tells the
 * caller which readiness (MW_WANT_READ / MW_WANT_WRITE) the stream needs
 * before the next call can progress; TLS uses it to ask for write readiness
 * to finish a read. fd() is the descriptor to wait on, or -1 for streams
 * without one (the in-process pair), which only the direct selector can poll.
 *
 * Thread rules: one thread reads and one thread writes at a time; read and
 * writev may run concurrently on two threads for the TCP and pair streams
 * (the split sender/receiver relies on it). close/free must not race with
 * anything.
 */
#ifndef MW_STREAM_H
#define MW_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "mw_err.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { MW_WANT_READ = 1, MW_WANT_WRITE = 2 };

typedef struct mw_stream mw_stream_t;

typedef struct mw_stream_ops {
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
    /* Optional (NULL: MW_ENOTSUP): control requests, MW_STREAM_CTL_*.
     * Decorators answer what they know and pass the rest to their inner
     * stream. */
    int (*ctl)(mw_stream_t *s, int op, intptr_t arg);
} mw_stream_ops_t;

/* Stream control requests (mw_stream_ctl). */
enum {
    /* 1 if the stream delivers whole messages as records (WebSocket): each
     * read yields u32 big-endian length + payload records and each write
     * takes the same; the caller must frame with MW_FRAME_U32BE. */
    MW_STREAM_CTL_MSG_RECORDS = 1,
    /* arg 1: the following written records are text messages; 0: binary. */
    MW_STREAM_CTL_MSG_TEXT = 2,
    /* 1 once the stream's handshakes (TLS, WebSocket) are complete, 0 before. */
    MW_STREAM_CTL_READY = 3,
    /* Advances the handshakes without consuming application data: 1 when
     * complete, MW_EAGAIN (wait for want()), or the handshake's error.
     * A decorator first completes its inner stream's handshake. Base
     * streams answer 1. Bytes that arrive after a handshake stay buffered
     * for the next read. */
    MW_STREAM_CTL_HANDSHAKE = 4,
    /* writes the monotonic ns of the chunk the last read returned to
     * *(uint64_t *)arg; 0 or MW_ENOTSUP */
    MW_STREAM_CTL_RX_TS = 5,
};

struct mw_stream {
    const mw_stream_ops_t *ops;
    mw_stream_t *inner; /* decorated stream, NULL for a base stream */
    mw_err_t err;       /* last error with its text */
};

static inline ssize_t mw_stream_read(mw_stream_t *s, void *dst, size_t cap) {
    return s->ops->read(s, dst, cap);
}
static inline ssize_t mw_stream_writev(mw_stream_t *s, const struct iovec *iov, int n) {
    return s->ops->writev(s, iov, n);
}
static inline ssize_t mw_stream_write(mw_stream_t *s, const void *p, size_t n) {
    struct iovec v = {(void *)p, n};
    return s->ops->writev(s, &v, 1);
}
static inline int mw_stream_want(const mw_stream_t *s) { return s->ops->want(s); }
static inline int mw_stream_fd(const mw_stream_t *s) { return s->ops->fd(s); }
static inline void mw_stream_close(mw_stream_t *s) { if (s) s->ops->close(s); }
static inline void mw_stream_free(mw_stream_t *s) { if (s) s->ops->free(s); }
/* Control request: decorators answer or forward; MW_ENOTSUP if nobody knows.
 * Base streams with no handshake answer READY and HANDSHAKE with 1. */
static inline int mw_stream_ctl(mw_stream_t *s, int op, intptr_t arg) {
    for (; s; s = s->inner)
        if (s->ops->ctl) return s->ops->ctl(s, op, arg);
    return op == MW_STREAM_CTL_READY || op == MW_STREAM_CTL_HANDSHAKE ? 1 : MW_ENOTSUP;
}
static inline const char *mw_stream_last_error(const mw_stream_t *s) { return mw_err_text(&s->err); }

/* mw_stream_write_all writes every byte, waiting with poll() for writability
 * up to timeout_ns (negative: no limit). Returns 0, MW_ETIMEDOUT, or the
 * stream's error. For set-up paths and tools, not the hot path. Streams with
 * no fd are retried in a spin with sched_yield. */
int mw_stream_write_all(mw_stream_t *s, const void *p, size_t n, int64_t timeout_ns);

/* mw_stream_wait waits until the stream's fd is ready for `events`
 * (MW_WANT_* bits) or timeout_ns passes. Returns the ready bits (> 0), or
 * MW_ETIMEDOUT, or MW_ESYS. A stream without an fd returns `events` at once. */
int mw_stream_wait(const mw_stream_t *s, int events, int64_t timeout_ns);

/* ---- In-process pair -----------------------------------------------------
 * Two connected in-memory streams for tests: bytes written to one are read
 * from the other. Each direction has a ring of `cap` bytes: a writer finding
 * it full gets a partial write or MW_EAGAIN. A read returns at most
 * `max_chunk` bytes (0: no limit), so tests can force frames to arrive split
 * at any point. Closing one end makes the other read MW_ECLOSED once the
 * bytes already written are drained, and write MW_ECLOSED. Thread-safe for
 * one reader and one writer on each end. fd() is -1. Allocates at creation. */
int mw_pair_new(mw_stream_t **a, mw_stream_t **b, size_t cap, size_t max_chunk);

#ifdef __cplusplus
}
#endif

#endif
