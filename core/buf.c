/* buf.c - the only allocating parts of mw_buf. */
#include "mw_buf.h"
#include "mw_err.h"

#include <stdlib.h>

int mw_buf_init(mw_buf_t *b, size_t cap) {
    b->base = NULL;
    b->cap = b->rd = b->wr = 0;
    b->owned = 0;
    if (cap == 0) return MW_EINVAL;
    b->base = malloc(cap);
    if (!b->base) return MW_ENOMEM;
    b->cap = cap;
    b->owned = 1;
    return 0;
}

void mw_buf_init_mem(mw_buf_t *b, void *mem, size_t cap) {
    b->base = mem;
    b->cap = cap;
    b->rd = b->wr = 0;
    b->owned = 0;
}

void mw_buf_fini(mw_buf_t *b) {
    if (b->owned) free(b->base);
    b->base = NULL;
    b->cap = b->rd = b->wr = 0;
    b->owned = 0;
}
