/* mw_buf.h - fixed-capacity byte buffer: reserve -> write -> commit -> consume.
 *
 *   [0 .... rd ........ wr ........ cap)
 *           ^ readable   ^ writable tail
 *
 * The buffer never grows behind your back: capacity is fixed at init. When
 * the tail is too short, mw_buf_reserve compacts (moves the readable bytes to
 * the front) and fails with NULL only if the free space in total is too small.
 * When everything is consumed, rd and wr go back to 0 at no cost.
 *
 * Not thread-safe: one owner thread at a time. No function here allocates
 * except mw_buf_init.
 */
#ifndef MW_BUF_H
#define MW_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mw_buf {
    uint8_t *base;
    size_t cap;
    size_t rd; /* first unread byte */
    size_t wr; /* first free byte */
    int owned; /* base was allocated by mw_buf_init */
} mw_buf_t;

/* mw_buf_init allocates cap bytes (cap > 0). Returns 0 or MW_ENOMEM/MW_EINVAL. */
int mw_buf_init(mw_buf_t *b, size_t cap);
/* mw_buf_init_mem uses caller memory; the caller keeps ownership. */
void mw_buf_init_mem(mw_buf_t *b, void *mem, size_t cap);
/* mw_buf_fini frees memory allocated by mw_buf_init; safe to call twice. */
void mw_buf_fini(mw_buf_t *b);

static inline size_t mw_buf_len(const mw_buf_t *b) { return b->wr - b->rd; }
static inline uint8_t *mw_buf_data(const mw_buf_t *b) { return b->base + b->rd; }
/* Contiguous writable bytes at the tail without compacting. */
static inline size_t mw_buf_tailroom(const mw_buf_t *b) { return b->cap - b->wr; }
/* Free bytes in total (what a compaction would make contiguous). */
static inline size_t mw_buf_space(const mw_buf_t *b) { return b->cap - mw_buf_len(b); }
static inline uint8_t *mw_buf_tail(const mw_buf_t *b) { return b->base + b->wr; }

/* mw_buf_compact moves the unread bytes to the front. */
static inline void mw_buf_compact(mw_buf_t *b) {
    if (b->rd == 0) return;
    size_t n = b->wr - b->rd;
    if (n) memmove(b->base, b->base + b->rd, n);
    b->rd = 0;
    b->wr = n;
}

/* mw_buf_reserve returns a pointer to at least n contiguous writable bytes,
 * compacting if needed, or NULL if mw_buf_space(b) < n. Nothing is committed
 * until mw_buf_commit. */
static inline uint8_t *mw_buf_reserve(mw_buf_t *b, size_t n) {
    if (b->cap - b->wr >= n) return b->base + b->wr;
    if (b->cap - (b->wr - b->rd) < n) return NULL;
    mw_buf_compact(b);
    return b->base + b->wr;
}

/* mw_buf_commit makes n bytes written after mw_buf_reserve readable.
 * n must not exceed the reserved size (programmer error). */
static inline void mw_buf_commit(mw_buf_t *b, size_t n) { b->wr += n; }

/* mw_buf_consume drops n readable bytes (n <= mw_buf_len). */
static inline void mw_buf_consume(mw_buf_t *b, size_t n) {
    b->rd += n;
    if (b->rd == b->wr) b->rd = b->wr = 0;
}

static inline void mw_buf_reset(mw_buf_t *b) { b->rd = b->wr = 0; }

/* mw_buf_append copies n bytes in; returns 0 or MW_EAGAIN (-1) if no room. */
static inline int mw_buf_append(mw_buf_t *b, const void *p, size_t n) {
    uint8_t *d = mw_buf_reserve(b, n);
    if (!d) return -1;
    if (n) memcpy(d, p, n);
    b->wr += n;
    return 0;
}

#ifdef __cplusplus
}
#endif

#endif
