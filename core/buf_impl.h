/* buf_impl.h - memory for buffers that are held only while they are used:
 * blocks of 4 KiB << k bytes from a per-thread pool, with a small shared
 * pool behind it.
 *
 * A message connection takes its rx and tx buffers (and its decode scratch)
 * when data comes and gives them back when they are empty, so an idle
 * connection holds none, and a thread that serves thousands of connections
 * keeps reusing the same few blocks: no allocation per message once the
 * pool holds what the traffic needs. A block may be given back on another
 * thread than the one that took it (a send from another thread): a thread
 * whose pool is full passes blocks to the shared pool, and a thread whose
 * pool is empty takes from it, before malloc and free are called.
 *
 * Bounds: a thread's pool keeps at most MW__POOL_THREAD_MAX bytes and the
 * shared pool MW__POOL_SHARED_MAX; beyond that blocks are freed. A thread's
 * pool is freed when the thread exits.
 */
#ifndef MW_BUF_IMPL_H
#define MW_BUF_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- fixed-capacity byte buffer: reserve -> write -> commit -> consume.
 *
 *   [0 .... rd ........ wr ........ cap)
 *           ^ readable   ^ writable tail
 *
 * The buffer never grows behind your back: capacity is fixed at init. When
 * the tail is too short, mw__buf_reserve compacts (moves the readable bytes to
 * the front) and fails with NULL only if the free space in total is too small.
 * When everything is consumed, rd and wr go back to 0 at no cost.
 *
 * Not thread-safe: one owner thread at a time. No function here allocates
 * except mw__buf_init.
 */
typedef struct mw__buf {
    uint8_t *base;
    size_t cap;
    size_t rd; /* first unread byte */
    size_t wr; /* first free byte */
    int owned; /* base was allocated by mw__buf_init */
} mw__buf_t;

/* mw__buf_init allocates cap bytes (cap > 0). Returns 0 or MW_ENOMEM/MW_EINVAL. */
int mw__buf_init(mw__buf_t *b, size_t cap);
/* mw__buf_init_mem uses caller memory; the caller keeps ownership. */
void mw__buf_init_mem(mw__buf_t *b, void *mem, size_t cap);
/* mw__buf_fini frees memory allocated by mw__buf_init; safe to call twice. */
void mw__buf_fini(mw__buf_t *b);

static inline size_t mw__buf_len(const mw__buf_t *b) { return b->wr - b->rd; }
static inline uint8_t *mw__buf_data(const mw__buf_t *b) { return b->base + b->rd; }
/* Contiguous writable bytes at the tail without compacting. */
static inline size_t mw__buf_tailroom(const mw__buf_t *b) { return b->cap - b->wr; }
/* Free bytes in total (what a compaction would make contiguous). */
static inline size_t mw__buf_space(const mw__buf_t *b) { return b->cap - mw__buf_len(b); }
static inline uint8_t *mw__buf_tail(const mw__buf_t *b) { return b->base + b->wr; }

/* mw__buf_compact moves the unread bytes to the front. */
static inline void mw__buf_compact(mw__buf_t *b) {
    if (b->rd == 0) return;
    size_t n = b->wr - b->rd;
    if (n) memmove(b->base, b->base + b->rd, n);
    b->rd = 0;
    b->wr = n;
}

/* mw__buf_reserve returns a pointer to at least n contiguous writable bytes,
 * compacting if needed, or NULL if mw__buf_space(b) < n. Nothing is committed
 * until mw__buf_commit. */
static inline uint8_t *mw__buf_reserve(mw__buf_t *b, size_t n) {
    if (b->cap - b->wr >= n) return b->base + b->wr;
    if (b->cap - (b->wr - b->rd) < n) return NULL;
    mw__buf_compact(b);
    return b->base + b->wr;
}

/* mw__buf_commit makes n bytes written after mw__buf_reserve readable.
 * n must not exceed the reserved size (programmer error). */
static inline void mw__buf_commit(mw__buf_t *b, size_t n) { b->wr += n; }

/* mw__buf_consume drops n readable bytes (n <= mw__buf_len). */
static inline void mw__buf_consume(mw__buf_t *b, size_t n) {
    b->rd += n;
    if (b->rd == b->wr) b->rd = b->wr = 0;
}

static inline void mw__buf_reset(mw__buf_t *b) { b->rd = b->wr = 0; }

/* mw__buf_append copies n bytes in; returns 0 or MW_EAGAIN (-1) if no room. */
static inline int mw__buf_append(mw__buf_t *b, const void *p, size_t n) {
    uint8_t *d = mw__buf_reserve(b, n);
    if (!d) return -1;
    if (n) memcpy(d, p, n);
    b->wr += n;
    return 0;
}


#define MW__POOL_MIN 4096u                 /* the smallest block */
#define MW__POOL_THREAD_MAX (1024u * 1024u) /* bytes a thread's pool keeps */
#define MW__POOL_SHARED_MAX (1024u * 1024u) /* bytes the shared pool keeps */

/* A block of at least n bytes (n <= 2 GiB), or NULL when out of memory.
 * Its content is undefined. */
void *mw__pool_take(size_t n);
/* Gives back a block from mw__pool_take(n), with the same n: to a pool, or
 * freed when the pools are full. NULL: no-op. */
void mw__pool_give(void *p, size_t n);
/* As give, but only if a pool has room: false when the caller keeps it. */
bool mw__pool_keep(void *p, size_t n);

/* Gives b at least want bytes of capacity, but never more than max (want
 * above max is taken as max): a block from the pool of the size class that
 * holds min(want, max), capacity min(class size, max). The readable bytes
 * move to the front of the new block, the old block goes back to the pool.
 * A buffer at that capacity or larger is left as it is. b must be empty
 * (cap 0) or hold pool memory. Returns 0 or MW_ENOMEM (b unchanged). */
int mw__buf_grow(mw__buf_t *b, size_t want, size_t max);
/* Gives b's memory back (to a pool, or freed) and leaves b with none. */
void mw__buf_drop(mw__buf_t *b);
/* An empty b gives its memory to a pool if one has room for it: true then
 * (b has none), false when b keeps it (not empty, or too big to pool: a
 * connection with messages that large keeps its buffers while open rather
 * than allocate them per message). */
bool mw__buf_trim(mw__buf_t *b);

/* Bytes held in the calling thread's pool and in the shared pool (tests). */
size_t mw__pool_thread_bytes(void);
size_t mw__pool_shared_bytes(void);

#endif
