/* stream.c - the helpers every stream shares: wait for readiness, write all. */
#include "stream_impl.h"

#include "mw_clock.h"
#include "clock_impl.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <time.h>

void mw_stream_free(mw_stream_t *s) {
    if (s) s->ops->free(s);
}

const char *mw_stream_last_error(const mw_stream_t *s) { return mw_err_text(&s->err); }

int mw__stream_wait(const mw_stream_t *s, int events, int64_t timeout_ns) {
    int fd = mw__stream_fd(s);
    if (fd < 0) return events;
    struct pollfd p = {.fd = fd};
    if (events & MW_WANT_READ) p.events |= POLLIN;
    if (events & MW_WANT_WRITE) p.events |= POLLOUT;
    uint64_t deadline = mw__deadline_in(NULL, timeout_ns);
    for (;;) {
        int64_t left = mw__deadline_left(NULL, deadline);
        struct timespec ts = {left / MW_NS_PER_S, left % MW_NS_PER_S};
        /* ppoll, not poll: millisecond rounding would either spin or oversleep
         * short waits. */
        int r = ppoll(&p, 1, left < 0 ? NULL : &ts, NULL);
        if (r > 0) break;
        if (r == 0) return MW_ETIMEDOUT;
        if (errno != EINTR) return MW_ESYS;
    }
    if (p.revents & POLLNVAL) return MW_ESYS;
    /* An error or hang-up makes every requested operation "ready": the next
     * call reports what happened. */
    if (p.revents & (POLLERR | POLLHUP)) return events;
    int ready = 0;
    if (p.revents & POLLIN) ready |= MW_WANT_READ;
    if (p.revents & POLLOUT) ready |= MW_WANT_WRITE;
    return ready;
}

/* Waits until the stream can take more bytes, or the deadline passes. */
static int wait_writable(mw_stream_t *s, uint64_t deadline) {
    int64_t left = mw__deadline_left(NULL, deadline);
    if (left == 0) return MW_ETIMEDOUT;
    if (mw__stream_fd(s) < 0) {
        sched_yield();
        return 0;
    }
    /* A decorator (TLS) may need to read before it can write. */
    int want = mw__stream_want(s);
    int r = mw__stream_wait(s, want ? want : MW_WANT_WRITE, left);
    return r < 0 ? r : 0;
}

int mw__stream_write_all(mw_stream_t *s, const void *p, size_t n, int64_t timeout_ns) {
    const char *c = p;
    uint64_t deadline = mw__deadline_in(NULL, timeout_ns);
    while (n > 0) {
        ssize_t w = mw__stream_write(s, c, n);
        if (w > 0) {
            c += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && w != MW_EAGAIN) return (int)w;
        int r = wait_writable(s, deadline);
        if (r < 0) return r;
    }
    return 0;
}
