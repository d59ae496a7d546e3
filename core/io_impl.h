/* io_impl.h - the io's keep list: memory held while traffic flows, given
 * back once it stops (internal; see io.c).
 *
 * A connection whose buffers come from the per-thread pool (buf_impl.h)
 * would otherwise take and give them back for every message: three pool
 * round trips per echo. Instead, while it is busy (traffic twice within
 * MW__IO_KEEP_NS: serdes/driver.c) its driver keeps them and touches an
 * entry on its io's keep list (one store, and a link the first time). One io timer sweeps the list while it is not empty: an
 * entry touched since the previous sweep is cleared, one not touched is
 * idle, and its release function gives back what it can. The period is
 * MW__IO_KEEP_NS, doubled after each sweep that found every entry in use
 * (up to MW__IO_KEEP_MAX_NS), and back to MW__IO_KEEP_NS after one that
 * found an idle entry or when an entry is linked. So a connection gives its
 * buffers back between one and two periods after its last message (10 to
 * 20 ms when others come and go, at most 320 ms after a long steady run),
 * and one that never stops never pays for it. No timer is armed per message
 * or per connection; over epoll the io's timers cost no timeout per wait
 * (mw__selector_ops_t.wait_until), so a sweep costs one timerfd_settime and
 * perhaps one wake-up: per period, not per message.
 *
 * Thread rules: io thread only (touch, unlink, and the release callbacks).
 */
#ifndef MW_IO_IMPL_H
#define MW_IO_IMPL_H

#include <stdbool.h>

#include "mw_io.h"
#include "selector_impl.h"

/* The io's selector, clock and backend name (internal seams). */
mw__selector_t *mw__io_selector(mw_io_t *io);
const mw_clock_t *mw__io_clock(const mw_io_t *io);
const char *mw__io_backend(const mw_io_t *io);
/* True when called on the io's thread (or no thread started and not running). */
bool mw__io_in_thread(const mw_io_t *io);


#define MW__IO_KEEP_NS (10 * MW_NS_PER_MS)
#define MW__IO_KEEP_MAX_NS (160 * MW_NS_PER_MS)

typedef struct mw__io_keep mw__io_keep_t;
struct mw__io_keep {
    mw__io_keep_t *next, *prev;
    /* Idle for a whole sweep period: give back what can be given. Returns
     * true when nothing is left to watch (the entry is unlinked then),
     * false to be asked again at the next sweep. */
    bool (*release)(mw__io_keep_t *k);
    bool used;   /* touched since the last sweep */
    bool linked; /* on the io's list */
};

static inline void mw__io_keep_init(mw__io_keep_t *k, bool (*release)(mw__io_keep_t *k)) {
    k->next = k->prev = NULL;
    k->release = release;
    k->used = k->linked = false;
}
void mw__io_keep_link(mw_io_t *io, mw__io_keep_t *k);
/* Takes k off the list (no callback). No-op when not linked, and after the
 * io was freed (mw_io_free forgets the list). */
void mw__io_keep_unlink(mw_io_t *io, mw__io_keep_t *k);
/* Traffic: k is in use now. Returns true when it was idle (just linked). */
static inline bool mw__io_keep_touch(mw_io_t *io, mw__io_keep_t *k) {
    k->used = true;
    if (k->linked) return false;
    mw__io_keep_link(io, k);
    return true;
}

#endif
