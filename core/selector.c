/* selector.c - backend lookup and the open/close wrappers shared by every
 * selector backend. mw_selector_event_base lives in selector_libevent.c, the
 * only file that knows what the libevent backend keeps in s->impl. */
#include "mw_selector.h"

#include <stddef.h>
#include <string.h>

static const mw_selector_ops_t *const backends[] = {
    &mw_selector_epoll,
    &mw_selector_libevent,
    &mw_selector_direct,
};

const mw_selector_ops_t *mw_selector_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++)
        if (strcmp(backends[i]->name, name) == 0) return backends[i];
    return NULL;
}

int mw_selector_open(mw_selector_t *s, const mw_selector_ops_t *ops, struct event_base *base) {
    if (!s) return MW_EINVAL;
    s->ops = ops;
    s->impl = NULL;
    mw_err_clear(&s->err);
    if (!ops) return mw_err_set(&s->err, MW_EINVAL, "selector: no backend");
    if (base && ops != &mw_selector_libevent)
        return mw_err_set(&s->err, MW_EINVAL, "selector %s: an event_base needs the libevent backend",
                          ops->name);
    return ops->open(s, base);
}

/* Backends leave impl NULL when open fails and after close, which is what
 * makes close idempotent and safe after a failed open. */
void mw_selector_close(mw_selector_t *s) {
    if (!s || !s->ops || !s->impl) return;
    s->ops->close(s);
    s->impl = NULL;
}
