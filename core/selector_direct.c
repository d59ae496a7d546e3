/* selector_direct.c - no kernel readiness API at all.
 *
 * Sources sit on a doubly linked list through their own links; wait() calls
 * every source that wants something with the events it wants, and the owner
 * simply tries its read or write (getting MW_EAGAIN if nothing is there).
 * Calling a source is not work: wait() returns only what the callbacks
 * report they did, so a quiet source costs one try and counts 0.
 * fd may be -1, which is what lets in-process streams be polled.
 *
 * wait() never blocks, whatever the timeout: a blocking wait would need a
 * kernel readiness API, which is what this backend exists to avoid. It is a
 * spin-mode backend; a blocking run loop over it burns a core. wake() has
 * nothing to do for the same reason.
 *
 * Callbacks may add and delete sources, including the one dispatch visits
 * next: the cursor lives in the selector, and del moves it past the source
 * being removed. New sources go to the head, so a pass never visits a source
 * added during that pass.
 */
#include "selector_impl.h"
#include "err_impl.h"

#include <stdlib.h>

typedef struct direct {
    mw_sel_src_t *head;
    mw_sel_src_t *cursor; /* next source the running wait() will visit */
} direct_t;

static int d_open(mw__selector_t *s, struct event_base *base) {
    (void)base;
    direct_t *d = calloc(1, sizeof *d);
    if (!d) return mw__err_set(&s->err, MW_ENOMEM, "direct selector: out of memory");
    s->impl = d;
    return 0;
}

static void unlink_src(direct_t *d, mw_sel_src_t *src) {
    if (d->cursor == src) d->cursor = src->next;
    if (src->prev) src->prev->next = src->next;
    else d->head = src->next;
    if (src->next) src->next->prev = src->prev;
    src->next = src->prev = NULL;
    src->added = false;
}

/* Registered sources are forgotten: their owners may still hold them, so
 * only the links are reset. */
static void d_close(mw__selector_t *s) {
    direct_t *d = s->impl;
    while (d->head) unlink_src(d, d->head);
    free(d);
}

static int d_add(mw__selector_t *s, mw_sel_src_t *src) {
    direct_t *d = s->impl;
    if (src->added) return mw__err_set(&s->err, MW_ESTATE, "direct add: already added");
    src->prev = NULL;
    src->next = d->head;
    if (d->head) d->head->prev = src;
    d->head = src;
    src->added = true;
    return 0;
}

static int d_mod(mw__selector_t *s, mw_sel_src_t *src, int events) {
    (void)s;
    src->events = events;
    return 0;
}

static int d_del(mw__selector_t *s, mw_sel_src_t *src) {
    if (src->added) unlink_src(s->impl, src);
    return 0;
}

static int d_wait(mw__selector_t *s, int64_t timeout_ns) {
    (void)timeout_ns;
    direct_t *d = s->impl;
    unsigned done = 0;
    d->cursor = d->head;
    while (d->cursor) {
        mw_sel_src_t *src = d->cursor;
        d->cursor = src->next;
        if (!src->events) continue;
        done += (unsigned)src->fn(src, src->events);
    }
    return mw__sel_work(done);
}

static void d_wake(mw__selector_t *s) { (void)s; }

const mw__selector_ops_t mw__selector_direct = {
    .name = "direct",
    .open = d_open,
    .close = d_close,
    .add = d_add,
    .mod = d_mod,
    .del = d_del,
    .wait = d_wait,
    .wake = d_wake,
};
