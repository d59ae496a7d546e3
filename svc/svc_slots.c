/* svc_slots.c - the Svc's connection slots: O(1) allocation without a
 * lock, memory given back when every client has left, and what the slots
 * answer (per-connection errors, counts and statistics). */
#include "svc_impl.h"
#include "conn_impl.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- slots: O(1) allocation ---------------------------------------------------
 * Only the acceptor (the thread that runs on_listener) allocates; any
 * thread frees (the worker that let the connection go). A freed slot is
 * pushed on a lock-free stack (MPSC: many threads push, only the acceptor
 * takes, and it takes the whole stack at once with an exchange, so there is
 * no ABA). The acceptor moves that stack, reversed, to the tail of its own
 * queue when the queue runs empty, and hands out the oldest free slot first
 * (FIFO). FIFO rather than LIFO: LIFO would reuse the slot just freed over
 * and over and advance its generation alone; FIFO spreads closes over every
 * free slot, so a slot's 32-bit generation wraps (the only way a stale id
 * could match again) as many times more slowly as there are free slots. The
 * price, a slot colder in the cache, is one miss per accept, small beside
 * accept4 itself. Slots never used before are taken only when
 * no freed one waits: the table is touched from its start and only as far
 * as the most connections open at once (the high-water mark, hwm). No lock:
 * one exchange per refill of the queue, one CAS per free. */
/* The slots ever handed out; every other slot is still zero (unused). */
uint32_t mw__svc_slots_seen(const mw_svc_t *s) { return atomic_load_explicit(&s->hwm, memory_order_acquire); }

/* Slots in use at once before the last one leaving gives memory back. */
#define SHRINK_MIN 64u

static void init_slot(mw_svc_t *s, uint32_t i) {
    slot_t *sl = &s->slots[i];
    uint32_t gen = s->gens ? s->gens[i] : 0; /* the table was given back: go on from its generation */
    sl->idx = i;
    sl->svc = s;
    sl->drv.ud = sl;
    sl->next_free = NO_SLOT;
    atomic_store(&sl->gen, gen ? gen : 1);
    /* sl->lk is not touched: a slot given back is zero again (unlocked), and
     * not initialising it keeps a late sender's lock/unlock pair on it
     * (WITH_SLOT that found a connection just closing) balanced. */
}

static void take_freed(mw_svc_t *s) {
    uint32_t i = atomic_exchange_explicit(&s->freed, NO_SLOT, memory_order_acquire), newest = i, prev = NO_SLOT;
    while (i != NO_SLOT) { /* the stack is newest first: reverse it */
        uint32_t next = s->slots[i].next_free;
        s->slots[i].next_free = prev;
        prev = i;
        i = next;
    }
    if (prev == NO_SLOT) return;
    if (s->fq_tail == NO_SLOT) s->fq_head = prev;
    else s->slots[s->fq_tail].next_free = prev;
    s->fq_tail = newest;
}

slot_t *mw__svc_alloc_slot(mw_svc_t *s) {
    if (s->fq_head == NO_SLOT) take_freed(s);
    uint32_t i = s->fq_head;
    if (i != NO_SLOT) {
        s->fq_head = s->slots[i].next_free;
        if (s->fq_head == NO_SLOT) s->fq_tail = NO_SLOT;
    } else {
        i = atomic_load_explicit(&s->hwm, memory_order_relaxed);
        if (i >= s->cap) return NULL;
        init_slot(s, i);
        atomic_store_explicit(&s->hwm, i + 1, memory_order_release); /* loops over [0, hwm) see it whole */
    }
    slot_t *sl = &s->slots[i];
    sl->next_free = NO_SLOT;
    atomic_store(&sl->used, true);
    atomic_fetch_add(&s->nused, 1);
    return sl;
}

/* Any thread, once nothing refers to the slot's connection any more. The
 * push comes before the count drops: a shrink that finds no slot in use
 * finds every free slot on the stack. True when this was the last slot in
 * use of a table worth shrinking: the caller has mw__svc_slots_shrink run
 * on the acceptor's thread. */
bool mw__svc_free_slot(mw_svc_t *s, slot_t *sl) {
    uint32_t head = atomic_load_explicit(&s->freed, memory_order_relaxed);
    do sl->next_free = head;
    while (!atomic_compare_exchange_weak_explicit(&s->freed, &head, sl->idx, memory_order_release,
                                                  memory_order_relaxed));
    if (atomic_fetch_sub(&s->nused, 1) != 1 || !s->slots_mapped || s->closed_all) return false;
    return mw__svc_slots_seen(s) >= SHRINK_MIN;
}

/* The last connection has gone: the memory many connections used comes
 * back. The slot table's pages (from mmap) are given back to the kernel
 * with MADV_DONTNEED, read as zero from then on (a zero slot is an unused
 * one), and the table is handed out from its start again, each slot going
 * on from its generation (kept in gens, 4 bytes a slot). glibc keeps the
 * memory freed by the connections (streams, buffers over the pool's bound)
 * in its arenas: malloc_trim(0) hands it back. Runs on the acceptor's
 * thread (the only one that allocates slots), and only after more than
 * SHRINK_MIN slots were in use, so a lone client coming and going costs
 * nothing. */
void mw__svc_slots_shrink(mw_svc_t *s) {
    if (atomic_load(&s->nused) != 0) return; /* a client came meanwhile */
    uint32_t hw = mw__svc_slots_seen(s);
    if (hw < SHRINK_MIN) return;
    if (!s->gens && !(s->gens = calloc(s->cap, sizeof *s->gens))) return;
    for (uint32_t i = 0; i < hw; i++) s->gens[i] = atomic_load(&s->slots[i].gen);
    atomic_store(&s->freed, NO_SLOT); /* every slot below hw is free: forget the lists */
    s->fq_head = s->fq_tail = NO_SLOT;
    atomic_store(&s->hwm, 0);
    long pg = sysconf(_SC_PAGESIZE);
    size_t bytes = (size_t)hw * sizeof *s->slots, page = pg > 0 ? (size_t)pg : 4096;
    madvise(s->slots, (bytes + page - 1) / page * page, MADV_DONTNEED);
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

/* The table is zero until used: from mmap when large, so that its pages
 * become resident only as connections first reach them. */
#define SLOTS_MMAP_MIN (256u * 1024u)

int mw__svc_slots_new(mw_svc_t *s) {
    size_t bytes = (size_t)s->cap * sizeof *s->slots;
    s->fq_head = s->fq_tail = NO_SLOT;
    atomic_init(&s->freed, NO_SLOT);
    atomic_init(&s->hwm, 0);
    if (bytes < SLOTS_MMAP_MIN) {
        s->slots = calloc(s->cap, sizeof *s->slots);
        return s->slots ? 0 : MW_ENOMEM;
    }
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return MW_ENOMEM;
    s->slots = p;
    s->slots_mapped = true;
    return 0;
}

void mw__svc_slots_free(mw_svc_t *s) {
    free(s->gens);
    if (!s->slots) return;
    if (s->slots_mapped) munmap(s->slots, (size_t)s->cap * sizeof *s->slots);
    else free(s->slots);
    s->slots = NULL;
}

/* ---- what the slots answer: errors, counts and statistics ------------------ */

const char *mw_svc_conn_error(const mw_svc_t *s, mw_conn_id_t id) {
    uint32_t idx = (uint32_t)id;
    if (idx >= s->cap) return "";
    const slot_t *sl = &s->slots[idx];
    uint32_t gen = atomic_load(&sl->gen), want = (uint32_t)(id >> 32);
    if (gen != want) /* inside on_closed the id is the one before (drv_gone) */
        return atomic_load(&sl->reporting) && gen - 1 == want ? mw_err_text(&sl->err) : "";
    if (sl->err.code) return mw_err_text(&sl->err);
    return atomic_load(&sl->used) ? mw__conn_last_error(&sl->conn) : "";
}

const char *mw_svc_last_error(const mw_svc_t *s) { return mw_err_text(&s->err); }

void mw_svc_stats(const mw_svc_t *s, mw_svc_stats_t *st) {
    st->accepted = atomic_load(&s->accepted);
    st->refused_full = atomic_load(&s->refused_full);
    st->refused_nofd = atomic_load(&s->refused_nofd);
    st->closed = atomic_load(&s->closed);
    st->closed_bad_input = atomic_load(&s->closed_bad_input);
    st->msgs_in = atomic_load(&s->msgs_in);
    st->msgs_out = atomic_load(&s->msgs_out);
    st->bytes_in = atomic_load(&s->bytes_in);
    st->bytes_out = atomic_load(&s->bytes_out);
    st->connections = atomic_load(&s->nconns);
    /* add the open connections' counts (racy in event mode; for display) */
    for (uint32_t i = 0, hw = mw__svc_slots_seen(s); i < hw; i++) { /* closed ones were folded in at on_close */
        if (!atomic_load(&s->slots[i].open)) continue;
        mw_conn_stats_t c;
        mw__conn_stats(&s->slots[i].conn, &c);
        st->msgs_in += c.msgs_in;
        st->msgs_out += c.msgs_out;
        st->bytes_in += c.bytes_in;
        st->bytes_out += c.bytes_out;
    }
}

int mw_svc_conn_stats(const mw_svc_t *s, mw_conn_id_t id, mw_conn_stats_t *st) {
    slot_t *sl = lookup(s, id);
    if (!sl) return MW_ECLOSED;
    mw__conn_stats(&sl->conn, st);
    return 0;
}

uint32_t mw_svc_conn_count(const mw_svc_t *s) { return atomic_load(&s->nconns); }
