/* resolve.c - asynchronous name resolution: the API, the requests and their
 * lifetime. Names go to the evdns back end (resolve_evdns.c, behind
 * resolve_impl.h); this file includes no libevent header.
 *
 * One resolver per io, kept in a small process-wide registry keyed by the io
 * pointer (mw_io.h knows nothing about it). The resolver and its back end
 * are created lazily: numeric hosts never need evdns.
 *
 * Every result reaches the caller through mw_io_post, never from inside a
 * back-end answer: evdns may answer from inside the query call (hosts file,
 * immediate errors), and a user callback that cancels, starts or shuts down
 * from inside libevent's loop would re-enter it. The post costs one small
 * allocation per request, which is fine off the message path.
 *
 * Lifetime of a request: it is linked in its resolver until freed, and freed
 * exactly once by whichever comes last of (a) the back end's answer, when it
 * went to the back end, and (b) the posted delivery, when one was posted. A
 * request whose resolver was shut down is "orphaned" (r == NULL): its late
 * answer or post only frees it.
 */
#include "resolve_impl.h"
#include "resolve_impl.h"
#include "err_impl.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct resolver resolver_t;

struct mw__resolve_req {
    mw__resolve_req_t *next, *prev; /* in r->reqs */
    resolver_t *r;                 /* NULL once orphaned by shutdown */
    mw__dns_query_t dq;            /* dq.owed: the back end's answer is still to come */
    mw__resolve_fn fn;
    void *ud;
    bool starting;   /* inside mw__dns_query: mw__resolve_start posts */
    bool posted;     /* the delivery is posted */
    bool cancelled;  /* no user callback any more */
    bool delivering; /* the user callback runs now */
    char host[128];  /* for the result text only */
    mw__resolve_result_t res;
};

struct resolver {
    resolver_t *next; /* registry */
    mw_io_t *io;
    mw__dns_t *dns;         /* created at the first name query */
    mw__resolve_req_t *reqs; /* live requests */
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static resolver_t *reg_head;

/* ---- registry ------------------------------------------------------------- */

static resolver_t *reg_find(mw_io_t *io, bool unlink) {
    pthread_mutex_lock(&reg_mu);
    resolver_t **pp = &reg_head;
    while (*pp && (*pp)->io != io) pp = &(*pp)->next;
    resolver_t *r = *pp;
    if (r && unlink) *pp = r->next;
    pthread_mutex_unlock(&reg_mu);
    return r;
}

static resolver_t *resolver_get(mw_io_t *io) {
    resolver_t *r = reg_find(io, false);
    if (r) return r;
    r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->io = io;
    pthread_mutex_lock(&reg_mu);
    r->next = reg_head;
    reg_head = r;
    pthread_mutex_unlock(&reg_mu);
    return r;
}

/* ---- requests --------------------------------------------------------------- */

static void req_link(resolver_t *r, mw__resolve_req_t *q) {
    q->r = r;
    q->prev = NULL;
    q->next = r->reqs;
    if (r->reqs) r->reqs->prev = q;
    r->reqs = q;
}

static void req_unlink(mw__resolve_req_t *q) {
    resolver_t *r = q->r;
    if (!r) return;
    if (q->prev) q->prev->next = q->next;
    else r->reqs = q->next;
    if (q->next) q->next->prev = q->prev;
    q->next = q->prev = NULL;
    q->r = NULL;
}

static void req_free(mw__resolve_req_t *q) {
    req_unlink(q);
    free(q);
}

static void set_text(mw__resolve_req_t *q, int code, const char *port, const char *what) {
    q->res.code = code;
    /* Bounded so that the longest text still fits (160 bytes). */
    if (port)
        snprintf(q->res.text, sizeof q->res.text, "resolve %.80s:%.12s: %.48s", q->host, port, what);
    else
        snprintf(q->res.text, sizeof q->res.text, "resolve %.80s: %.48s", q->host, what);
}

/* Posted: hands the result to the user, then frees the request. */
static void deliver(void *ud) {
    mw__resolve_req_t *q = ud;
    q->posted = false;
    assert(!q->dq.owed); /* posted only once the back end is done with it */
    if (q->cancelled) {
        req_free(q);
        return;
    }
    req_unlink(q); /* a shutdown from inside fn no longer sees it */
    q->delivering = true;
    q->fn(&q->res, q->ud);
    free(q);
}

static int post_delivery(mw_io_t *io, mw__resolve_req_t *q) {
    q->posted = true;
    int rc = mw_io_post(io, deliver, q);
    if (rc < 0) q->posted = false;
    return rc;
}

/* ---- the back end's answers ---------------------------------------------------- */

static void on_answer(mw__dns_query_t *dq, int code, const char *what) {
    mw__resolve_req_t *q = (mw__resolve_req_t *)(void *)((char *)dq - offsetof(mw__resolve_req_t, dq));
    if (q->cancelled) {
        if (!q->posted) req_free(q);
        return;
    }
    q->res.code = code;
    if (code) set_text(q, code, NULL, what);
    if (q->starting) return; /* mw__resolve_start posts it */
    /* Not cancelled, so not orphaned. Without memory for the post, calling
     * back from here is the only way left to keep "exactly once". */
    if (post_delivery(q->r->io, q) < 0) deliver(q);
}

/* ---- numeric hosts ------------------------------------------------------------ */

static bool parse_port(const char *port, uint16_t *out) {
    if (!port || !*port) {
        *out = 0;
        return true;
    }
    char *end;
    unsigned long v = strtoul(port, &end, 10);
    if (*end == '\0' && port[0] >= '0' && port[0] <= '9') {
        if (v > 65535) return false;
        *out = (uint16_t)v;
        return true;
    }
    struct servent se, *sp = NULL;
    char buf[1024];
    if (getservbyname_r(port, "tcp", &se, buf, sizeof buf, &sp) != 0 || !sp) return false;
    *out = ntohs((uint16_t)sp->s_port);
    return true;
}

/* Fills q->res when host is a numeric address; false when it is a name. */
static bool numeric(mw__resolve_req_t *q, const char *host, const char *port) {
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
    memset(&sin, 0, sizeof sin);
    memset(&sin6, 0, sizeof sin6);
    bool v4 = inet_pton(AF_INET, host, &sin.sin_addr) == 1;
    if (!v4 && inet_pton(AF_INET6, host, &sin6.sin6_addr) != 1) return false;
    uint16_t p;
    if (!parse_port(port, &p)) {
        set_text(q, MW_ERESOLVE, port, "unknown service");
        return true;
    }
    if (v4) {
        sin.sin_family = AF_INET;
        sin.sin_port = htons(p);
        memcpy(&q->res.addrs[0], &sin, sizeof sin);
        q->res.lens[0] = sizeof sin;
    } else {
        sin6.sin6_family = AF_INET6;
        sin6.sin6_port = htons(p);
        memcpy(&q->res.addrs[0], &sin6, sizeof sin6);
        q->res.lens[0] = sizeof sin6;
    }
    q->res.naddrs = 1;
    return true;
}

/* ---- API ----------------------------------------------------------------------- */

static int start_query(resolver_t *r, mw__resolve_req_t *q, const char *host, const char *port,
                       mw_err_t *err) {
    if (!r->dns) {
        int rc = mw__dns_open(&r->dns, r->io, on_answer, err);
        if (rc < 0) return rc;
    }
    q->starting = true;
    int rc = mw__dns_query(r->dns, &q->dq, host, port, &q->res);
    q->starting = false;
    if (rc < 0) return mw__err_set(err, rc, "resolve %s: out of memory", q->host);
    if (!q->dq.owed) return post_delivery(r->io, q); /* answered at once */
    return 0;
}

int mw__resolve_start(mw_io_t *io, const char *host, const char *port, mw__resolve_fn fn, void *ud,
                     mw__resolve_req_t **req, mw_err_t *err) {
    assert(io && host && fn);
    if (req) *req = NULL;
    resolver_t *r = resolver_get(io);
    mw__resolve_req_t *q = r ? calloc(1, sizeof *q) : NULL;
    if (!q) return mw__err_set(err, MW_ENOMEM, "resolve %.100s: out of memory", host);
    q->fn = fn;
    q->ud = ud;
    snprintf(q->host, sizeof q->host, "%s", host);
    req_link(r, q);
    int rc = numeric(q, host, port) ? post_delivery(io, q) : start_query(r, q, host, port, err);
    if (rc < 0) { /* nothing was handed to the back end or posted */
        if (rc == MW_ENOMEM) mw__err_set(err, rc, "resolve %s: out of memory", q->host);
        req_free(q);
        return rc;
    }
    if (req) *req = q;
    return 0;
}

void mw__resolve_cancel(mw__resolve_req_t *req) {
    if (!req || req->cancelled || req->delivering) return;
    req->cancelled = true;
    /* The request may be freed inside this call; do not touch it after. */
    mw__dns_cancel(&req->dq);
}

/* Cancels every live request, orphans them, and releases the back end: it
 * delivers the cancellations where it can, and otherwise the running loop
 * does, to orphaned requests that only free themselves. */
void mw_resolve_shutdown(mw_io_t *io) {
    resolver_t *r = reg_find(io, true);
    if (!r) return;
    mw__resolve_req_t *q = r->reqs;
    while (q) {
        mw__resolve_req_t *next = q->next; /* a cancel may free q */
        if (!q->cancelled) {
            q->cancelled = true;
            mw__dns_cancel(&q->dq);
        }
        q = next;
    }
    while (r->reqs) req_unlink(r->reqs);
    mw__dns_close(r->dns);
    free(r);
}
