/* selector.c - backend lookup and the open/close wrappers shared by every
 * selector backend. mw__selector_event_base lives in selector_libevent.c, the
 * only file that knows what the libevent backend keeps in s->impl. */
#include "selector_impl.h"
#include "err_impl.h"

#include <stddef.h>
#include <string.h>

static const mw__selector_ops_t *const backends[] = {
    &mw__selector_epoll,
    &mw__selector_libevent,
    &mw__selector_direct,
};

const mw__selector_ops_t *mw__selector_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++)
        if (strcmp(backends[i]->name, name) == 0) return backends[i];
    return NULL;
}

int mw__selector_open(mw__selector_t *s, const mw__selector_ops_t *ops, struct event_base *base) {
    if (!s) return MW_EINVAL;
    s->ops = ops;
    s->impl = NULL;
    mw_err_clear(&s->err);
    if (!ops) return mw__err_set(&s->err, MW_EINVAL, "selector: no backend");
    if (base && ops != &mw__selector_libevent)
        return mw__err_set(&s->err, MW_EINVAL, "selector %s: an event_base needs the libevent backend",
                          ops->name);
    return ops->open(s, base);
}

/* Backends leave impl NULL when open fails and after close, which is what
 * makes close idempotent and safe after a failed open. */
void mw__selector_close(mw__selector_t *s) {
    if (!s || !s->ops || !s->impl) return;
    s->ops->close(s);
    s->impl = NULL;
}
