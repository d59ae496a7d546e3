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

#include "mw_buf.h"

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
int mw__buf_grow(mw_buf_t *b, size_t want, size_t max);
/* Gives b's memory back (to a pool, or freed) and leaves b with none. */
void mw__buf_drop(mw_buf_t *b);
/* An empty b gives its memory to a pool if one has room for it: true then
 * (b has none), false when b keeps it (not empty, or too big to pool: a
 * connection with messages that large keeps its buffers while open rather
 * than allocate them per message). */
bool mw__buf_trim(mw_buf_t *b);

/* Bytes held in the calling thread's pool and in the shared pool (tests). */
size_t mw__pool_thread_bytes(void);
size_t mw__pool_shared_bytes(void);

#endif
