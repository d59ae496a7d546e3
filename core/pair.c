/* pair.c - two connected in-memory streams, a test tool.
 *
 * Each direction is a byte ring under its own mutex; end i writes ring i and
 * reads ring 1 - i. The rings live in one shared block freed by whichever end
 * is freed last.
 */
#include "mw_stream.h"
#include "stream_impl.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct ring {
    pthread_mutex_t mu;
    uint8_t *buf;
    size_t cap;
    size_t head; /* index of the oldest unread byte */
    size_t len;  /* unread bytes */
    bool wclosed; /* the writing end closed: reader gets MW_ECLOSED once drained */
    bool rclosed; /* the reading end closed: writer gets MW_ECLOSED */
} ring_t;

typedef struct shared {
    ring_t ring[2];
    size_t max_chunk;
    atomic_int refs;
} shared_t;

typedef struct pend {
    mw_stream_t base;
    shared_t *sh;
    int side;
} pend_t;

static ssize_t pair_read(mw_stream_t *s, void *dst, size_t cap) {
    pend_t *e = (pend_t *)s;
    ring_t *r = &e->sh->ring[1 - e->side];
    size_t lim = e->sh->max_chunk;
    if (lim && cap > lim) cap = lim;
    assert(cap > 0);
    ssize_t ret;
    pthread_mutex_lock(&r->mu);
    if (r->rclosed) {
        ret = MW_ECLOSED; /* this end was closed */
    } else if (r->len == 0) {
        ret = r->wclosed ? MW_ECLOSED : MW_EAGAIN;
    } else {
        size_t n = cap < r->len ? cap : r->len;
        size_t first = r->cap - r->head;
        if (first > n) first = n;
        memcpy(dst, r->buf + r->head, first);
        memcpy((uint8_t *)dst + first, r->buf, n - first);
        r->head = (r->head + n) % r->cap;
        r->len -= n;
        ret = (ssize_t)n;
    }
    pthread_mutex_unlock(&r->mu);
    return ret;
}

/* Copies up to `n` bytes from p into the ring's free space; ring locked. */
static size_t ring_put(ring_t *r, const uint8_t *p, size_t n) {
    size_t room = r->cap - r->len;
    if (n > room) n = room;
    size_t tail = (r->head + r->len) % r->cap;
    size_t first = r->cap - tail;
    if (first > n) first = n;
    memcpy(r->buf + tail, p, first);
    memcpy(r->buf, p + first, n - first);
    r->len += n;
    return n;
}

static ssize_t pair_writev(mw_stream_t *s, const struct iovec *iov, int iovcnt) {
    pend_t *e = (pend_t *)s;
    ring_t *r = &e->sh->ring[e->side];
    size_t total = 0;
    bool asked = false;
    pthread_mutex_lock(&r->mu);
    if (r->rclosed || r->wclosed) {
        pthread_mutex_unlock(&r->mu);
        return MW_ECLOSED;
    }
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len == 0) continue;
        asked = true;
        size_t n = ring_put(r, iov[i].iov_base, iov[i].iov_len);
        total += n;
        if (n < iov[i].iov_len) break;
    }
    pthread_mutex_unlock(&r->mu);
    return (asked && total == 0) ? MW_EAGAIN : (ssize_t)total;
}

static int pair_want(const mw_stream_t *s) {
    (void)s;
    return 0;
}

static int pair_fd(const mw_stream_t *s) {
    (void)s;
    return -1;
}

static void pair_close(mw_stream_t *s) {
    pend_t *e = (pend_t *)s;
    ring_t *out = &e->sh->ring[e->side], *in = &e->sh->ring[1 - e->side];
    pthread_mutex_lock(&out->mu);
    out->wclosed = true;
    pthread_mutex_unlock(&out->mu);
    pthread_mutex_lock(&in->mu);
    in->rclosed = true;
    pthread_mutex_unlock(&in->mu);
}

static void shared_free(shared_t *sh) {
    for (int i = 0; i < 2; i++) {
        pthread_mutex_destroy(&sh->ring[i].mu);
        free(sh->ring[i].buf);
    }
    free(sh);
}

static void pair_free(mw_stream_t *s) {
    pend_t *e = (pend_t *)s;
    pair_close(s);
    if (atomic_fetch_sub(&e->sh->refs, 1) == 1) shared_free(e->sh);
    free(e);
}

static const mw__stream_ops_t pair_ops = {
    .name = "pair",
    .read = pair_read,
    .writev = pair_writev,
    .want = pair_want,
    .fd = pair_fd,
    .close = pair_close,
    .free = pair_free,
};

int mw__pair_new(mw_stream_t **a, mw_stream_t **b, size_t cap, size_t max_chunk) {
    if (!a || !b || cap == 0) return MW_EINVAL;
    shared_t *sh = calloc(1, sizeof *sh);
    pend_t *ea = calloc(1, sizeof *ea), *eb = calloc(1, sizeof *eb);
    uint8_t *b0 = malloc(cap), *b1 = malloc(cap);
    if (!sh || !ea || !eb || !b0 || !b1) {
        free(sh), free(ea), free(eb), free(b0), free(b1);
        return MW_ENOMEM;
    }
    for (int i = 0; i < 2; i++) {
        pthread_mutex_init(&sh->ring[i].mu, NULL);
        sh->ring[i].buf = i ? b1 : b0;
        sh->ring[i].cap = cap;
    }
    sh->max_chunk = max_chunk;
    atomic_init(&sh->refs, 2);
    *ea = (pend_t){.base = {.ops = &pair_ops}, .sh = sh, .side = 0};
    *eb = (pend_t){.base = {.ops = &pair_ops}, .sh = sh, .side = 1};
    *a = &ea->base;
    *b = &eb->base;
    return 0;
}
