/* buf.c - the only allocating parts of mw__buf, and the buffer pool
 * (buf_impl.h). */
#include "buf_impl.h"
#include "buf_impl.h"
#include "mw_err.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#if defined(__SANITIZE_ADDRESS__)
#define POOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_ASAN 1
#endif
#endif
#ifdef POOL_ASAN /* a pooled block is poisoned: a use after give is caught as a use after free would be */
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

int mw__buf_init(mw__buf_t *b, size_t cap) {
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

void mw__buf_init_mem(mw__buf_t *b, void *mem, size_t cap) {
    b->base = mem;
    b->cap = cap;
    b->rd = b->wr = 0;
    b->owned = 0;
}

void mw__buf_fini(mw__buf_t *b) {
    if (b->owned) free(b->base);
    b->base = NULL;
    b->cap = b->rd = b->wr = 0;
    b->owned = 0;
}

/* ---- the pool ---------------------------------------------------------------- */

/* Class k holds blocks of MW__POOL_MIN << k bytes: 4 KiB up to 4 GiB. */
#define NCLASS 21

typedef struct pblock { struct pblock *next; } pblock_t;

typedef struct pool {
    pblock_t *head[NCLASS];
    size_t bytes;
} pool_t;

static _Thread_local pool_t t_pool;
static _Thread_local bool t_keyed; /* the exit destructor is registered for this thread */

static pool_t g_pool; /* the shared pool, under g_mu */
static atomic_size_t g_bytes; /* g_pool.bytes, read without the lock to skip an empty pool */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t g_key;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static bool g_key_ok;

static unsigned class_of(size_t n) {
    if (n <= MW__POOL_MIN) return 0;
    unsigned bits = 64u - (unsigned)__builtin_clzll((unsigned long long)(n - 1)); /* ceil(log2 n) */
    return bits - 12u; /* 4096 = 2^12 */
}

static size_t class_size(unsigned k) { return (size_t)MW__POOL_MIN << k; }

static void push(pool_t *p, unsigned k, void *blk) {
    pblock_t *b = blk;
    b->next = p->head[k];
    p->head[k] = b;
    p->bytes += class_size(k);
    POISON((uint8_t *)blk + sizeof *b, class_size(k) - sizeof *b);
}

static void *pop(pool_t *p, unsigned k) {
    pblock_t *b = p->head[k];
    if (!b) return NULL;
    p->head[k] = b->next;
    p->bytes -= class_size(k);
    UNPOISON(b, class_size(k));
    return b;
}

static void free_all(pool_t *p) {
    for (unsigned k = 0; k < NCLASS; k++) {
        void *b;
        while ((b = pop(p, k)) != NULL) free(b);
    }
}

static void thread_exit(void *arg) {
    free_all(arg);
    t_keyed = false;
}

static void make_key(void) { g_key_ok = pthread_key_create(&g_key, thread_exit) == 0; }

void *mw__pool_take(size_t n) {
    unsigned k = class_of(n);
    if (k >= NCLASS) return NULL;
    void *b = pop(&t_pool, k);
    if (!b && atomic_load_explicit(&g_bytes, memory_order_relaxed) != 0) {
        pthread_mutex_lock(&g_mu);
        b = pop(&g_pool, k);
        atomic_store_explicit(&g_bytes, g_pool.bytes, memory_order_relaxed);
        pthread_mutex_unlock(&g_mu);
    }
    return b ? b : malloc(class_size(k));
}

/* Pools the block if a pool has room; false (the caller keeps it) if not. */
static bool keep(void *p, size_t n) {
    unsigned k = class_of(n);
    size_t sz = class_size(k);
    if (t_pool.bytes + sz <= MW__POOL_THREAD_MAX) {
        if (!t_keyed) {
            pthread_once(&g_once, make_key);
            if (g_key_ok) pthread_setspecific(g_key, &t_pool);
            t_keyed = true;
        }
        push(&t_pool, k, p);
        return true;
    }
    if (atomic_load_explicit(&g_bytes, memory_order_relaxed) + sz > MW__POOL_SHARED_MAX) return false;
    bool kept = false;
    pthread_mutex_lock(&g_mu);
    if (g_pool.bytes + sz <= MW__POOL_SHARED_MAX) {
        push(&g_pool, k, p);
        kept = true;
    }
    atomic_store_explicit(&g_bytes, g_pool.bytes, memory_order_relaxed);
    pthread_mutex_unlock(&g_mu);
    return kept;
}

void mw__pool_give(void *p, size_t n) {
    if (p && !keep(p, n)) free(p);
}

bool mw__pool_keep(void *p, size_t n) { return p && keep(p, n); }

int mw__buf_grow(mw__buf_t *b, size_t want, size_t max) {
    if (want > max) want = max;
    size_t cap = class_size(class_of(want));
    if (cap > max) cap = max; /* still of want's class: max > the class below */
    if (b->base && b->cap >= cap) return 0;
    uint8_t *p = mw__pool_take(cap);
    if (!p) return MW_ENOMEM;
    size_t len = mw__buf_len(b);
    if (len) memcpy(p, b->base + b->rd, len);
    if (b->base) mw__pool_give(b->base, b->cap);
    b->base = p;
    b->cap = cap;
    b->rd = 0;
    b->wr = len;
    b->owned = 1;
    return 0;
}

void mw__buf_drop(mw__buf_t *b) {
    mw__pool_give(b->base, b->cap);
    b->base = NULL;
    b->cap = b->rd = b->wr = 0;
    b->owned = 0;
}

bool mw__buf_trim(mw__buf_t *b) {
    if (!b->base || mw__buf_len(b) || !keep(b->base, b->cap)) return false;
    b->base = NULL;
    b->cap = b->rd = b->wr = 0;
    b->owned = 0;
    return true;
}

size_t mw__pool_thread_bytes(void) { return t_pool.bytes; }

size_t mw__pool_shared_bytes(void) { return atomic_load(&g_bytes); }
