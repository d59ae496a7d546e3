/* resolve.c - asynchronous name resolution with libevent's evdns.
 *
 * One resolver per io, kept in a small process-wide registry keyed by the io
 * pointer (mw_io.h knows nothing about it). The resolver and its evdns base
 * are created lazily: numeric hosts never need evdns.
 *
 * Every result reaches the caller through mw_io_post, never from inside an
 * evdns callback: evdns may answer from inside evdns_getaddrinfo (hosts file,
 * immediate errors), and a user callback that cancels, starts or shuts down
 * from inside libevent's loop would re-enter it. The post costs one small
 * allocation per request, which is fine off the message path.
 *
 * Lifetime of a request: it is linked in its resolver until freed, and freed
 * exactly once by whichever comes last of (a) the evdns callback, when it
 * went to evdns, and (b) the posted delivery, when one was posted. A
 * request whose resolver was shut down is "orphaned" (r == NULL): its late
 * evdns callback or post only frees it.
 */
#include "mw_resolve.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "mw_clock.h"

/* evdns's own timeout: seconds per try and tries per query. */
#define DNS_TIMEOUT_S 2
#define DNS_ATTEMPTS "2"
/* Shutdown drains cancelled queries with at most this many loop passes
 * (one pass runs libevent's deferred callbacks, which is all it takes). */
#define DRAIN_PASSES 64

typedef struct resolver resolver_t;

struct mw_resolve_req {
    mw_resolve_req_t *next, *prev; /* in r->reqs */
    resolver_t *r;                 /* NULL once orphaned by shutdown */
    resolver_t *owner;             /* the resolver it was started on, never cleared */
    struct evdns_getaddrinfo_request *gai; /* while evdns may still call back */
    mw_resolve_fn fn;
    void *ud;
    uint64_t t0;     /* when the query was started */
    bool in_evdns;   /* the evdns callback is still to come */
    bool starting;   /* inside evdns_getaddrinfo: mw_resolve_start posts */
    bool posted;     /* the delivery is posted */
    bool cancelled;  /* no user callback any more */
    bool delivering; /* the user callback runs now */
    bool no_ns;      /* evdns cancelled by us: no name server to ask */
    char host[128];  /* for the result text only */
    mw_resolve_result_t res;
};

struct resolver {
    resolver_t *next; /* registry */
    mw_io_t *io;
    struct event_base *base;     /* the io's, or own_base */
    struct event_base *own_base; /* private base (epoll, direct), or NULL */
    struct evdns_base *dns;      /* created at the first name query */
    mw_io_timer_t pump;
    mw_resolve_req_t *reqs;      /* live requests */
    int nevdns;                  /* evdns callbacks still to come */
    bool dying;                  /* shut down; freed by the last evdns callback */
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

static void pump_fn(mw_io_timer_t *t, void *ud);

static resolver_t *resolver_get(mw_io_t *io) {
    resolver_t *r = reg_find(io, false);
    if (r) return r;
    r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->io = io;
    mw_io_timer_init(&r->pump, pump_fn, r);
    pthread_mutex_lock(&reg_mu);
    r->next = reg_head;
    reg_head = r;
    pthread_mutex_unlock(&reg_mu);
    return r;
}

/* ---- requests --------------------------------------------------------------- */

static void req_link(resolver_t *r, mw_resolve_req_t *q) {
    q->r = r;
    q->owner = r;
    q->prev = NULL;
    q->next = r->reqs;
    if (r->reqs) r->reqs->prev = q;
    r->reqs = q;
}

static void req_unlink(mw_resolve_req_t *q) {
    resolver_t *r = q->r;
    if (!r) return;
    if (q->prev) q->prev->next = q->next;
    else r->reqs = q->next;
    if (q->next) q->next->prev = q->prev;
    q->next = q->prev = NULL;
    q->r = NULL;
}

static void req_free(mw_resolve_req_t *q) {
    req_unlink(q);
    free(q);
}

static void set_text(mw_resolve_req_t *q, int code, const char *port, const char *what) {
    q->res.code = code;
    /* Bounded so that the longest text still fits (160 bytes). */
    if (port)
        snprintf(q->res.text, sizeof q->res.text, "resolve %.80s:%.12s: %.48s", q->host, port, what);
    else
        snprintf(q->res.text, sizeof q->res.text, "resolve %.80s: %.48s", q->host, what);
}

/* Posted: hands the result to the user, then frees the request. */
static void deliver(void *ud) {
    mw_resolve_req_t *q = ud;
    q->posted = false;
    assert(!q->in_evdns); /* posted only once evdns is done with it */
    if (q->cancelled) {
        req_free(q);
        return;
    }
    req_unlink(q); /* a shutdown from inside fn no longer sees it */
    q->delivering = true;
    q->fn(&q->res, q->ud);
    free(q);
}

static int post_delivery(mw_io_t *io, mw_resolve_req_t *q) {
    q->posted = true;
    int rc = mw_io_post(io, deliver, q);
    if (rc < 0) q->posted = false;
    return rc;
}

/* ---- evdns ------------------------------------------------------------------ */

static void fill_addrs(mw_resolve_req_t *q, const struct evutil_addrinfo *ai) {
    for (; ai && q->res.naddrs < MW_RESOLVE_MAX_ADDRS; ai = ai->ai_next) {
        if (!ai->ai_addr || ai->ai_addrlen > sizeof q->res.addrs[0]) continue;
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
        memcpy(&q->res.addrs[q->res.naddrs], ai->ai_addr, ai->ai_addrlen);
        q->res.lens[q->res.naddrs] = (socklen_t)ai->ai_addrlen;
        q->res.naddrs++;
    }
}

static void map_result(mw_resolve_req_t *q, int result, const struct evutil_addrinfo *ai) {
    if (q->no_ns) {
        set_text(q, MW_ERESOLVE, NULL, "no name server configured");
    } else if (result == 0) {
        fill_addrs(q, ai);
        if (q->res.naddrs == 0) set_text(q, MW_ERESOLVE, NULL, "no address");
    } else if (result == EVUTIL_EAI_NONAME) {
        set_text(q, MW_ERESOLVE, NULL, "name does not exist");
    } else if (result == EVUTIL_EAI_SERVICE) {
        set_text(q, MW_ERESOLVE, NULL, "unknown service");
    } else if (result == EVUTIL_EAI_FAIL &&
               mw_now_ns() - q->t0 >= (uint64_t)DNS_TIMEOUT_S * MW_NS_PER_S) {
        /* evdns folds DNS_ERR_TIMEOUT into EAI_FAIL together with server
         * failures; a failure that took a whole try's timeout is a timeout. */
        set_text(q, MW_ETIMEDOUT, NULL, "timed out");
    } else {
        set_text(q, MW_ERESOLVE, NULL, evutil_gai_strerror(result));
    }
}

static void resolver_free(resolver_t *r);

/* The evdns base cannot be freed from inside its own callback: one zero
 * timeout later, on the same base. */
static void resolver_free_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    resolver_free(arg);
}

static void gai_cb(int result, struct evutil_addrinfo *ai, void *arg) {
    mw_resolve_req_t *q = arg;
    resolver_t *o = q->owner;
    q->in_evdns = false;
    q->gai = NULL;
    o->nevdns--;
    if (q->cancelled) {
        if (ai) evutil_freeaddrinfo(ai);
        if (!q->posted) req_free(q);
        if (o->dying && o->nevdns == 0) {
            static const struct timeval zero = {0, 0};
            event_base_once(o->base, -1, EV_TIMEOUT, resolver_free_cb, o, &zero);
        }
        return;
    }
    map_result(q, result, ai);
    if (ai) evutil_freeaddrinfo(ai);
    if (q->starting) return; /* mw_resolve_start posts it */
    /* Not cancelled, so not orphaned. Without memory for the post, calling
     * back from here is the only way left to keep "exactly once". */
    if (post_delivery(q->r->io, q) < 0) deliver(q);
}

/* evdns prints its warnings to stderr unless given a log function; ours
 * sends them to the msgwire log hook. The setting is process-wide. */
static void dns_log(int is_warn, const char *msg) {
    mw__logf(is_warn ? MW_LOG_WARN : MW_LOG_DEBUG, "evdns: %s", msg);
}
static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static void log_init(void) { evdns_set_log_fn(dns_log); }

static void pump_fn(mw_io_timer_t *t, void *ud) {
    (void)t;
    resolver_t *r = ud;
    event_base_loop(r->own_base, EVLOOP_NONBLOCK);
    if (r->nevdns > 0) mw_io_timer_after(r->io, &r->pump, MW_RESOLVE_PUMP_NS);
}

/* EVDNS_BASE_DISABLE_WHEN_INACTIVE: an idle resolver must not keep a
 * caller's event_base_dispatch() running. */
static int dns_open(resolver_t *r, mw_err_t *err) {
    if (r->dns) return 0;
    pthread_once(&log_once, log_init);
    r->base = mw_selector_event_base(mw_io_selector(r->io));
    if (!r->base) {
        r->own_base = event_base_new();
        if (!r->own_base) return mw_err_set(err, MW_ESYS, "resolve: event_base_new failed");
        r->base = r->own_base;
    }
    r->dns = evdns_base_new(r->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                         EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (!r->dns) {
        r->dns = evdns_base_new(r->base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (r->dns) evdns_base_load_hosts(r->dns, "/etc/hosts");
    }
    if (!r->dns) {
        if (r->own_base) event_base_free(r->own_base);
        r->own_base = r->base = NULL;
        return mw_err_set(err, MW_ESYS, "resolve: evdns_base_new failed");
    }
    char tmo[16];
    snprintf(tmo, sizeof tmo, "%d", DNS_TIMEOUT_S);
    evdns_base_set_option(r->dns, "timeout:", tmo);
    evdns_base_set_option(r->dns, "attempts:", DNS_ATTEMPTS);
    return 0;
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
static bool numeric(mw_resolve_req_t *q, const char *host, const char *port) {
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

static int start_query(resolver_t *r, mw_resolve_req_t *q, const char *host, const char *port,
                       mw_err_t *err) {
    int rc = dns_open(r, err);
    if (rc < 0) return rc;
    /* Armed first: once evdns holds the request, only the pump can finish it. */
    if (r->own_base && !mw_io_timer_armed(&r->pump) &&
        mw_io_timer_after(r->io, &r->pump, MW_RESOLVE_PUMP_NS) < 0)
        return mw_err_set(err, MW_ENOMEM, "resolve %s: out of memory", q->host);
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    q->t0 = mw_now_ns();
    q->in_evdns = true;
    q->starting = true;
    r->nevdns++;
    q->gai = evdns_getaddrinfo(r->dns, host, port, &hints, gai_cb, q);
    q->starting = false;
    if (!q->in_evdns) return post_delivery(r->io, q); /* answered at once */
    if (evdns_base_count_nameservers(r->dns) == 0) {
        /* evdns would queue it until a name server appears, i.e. forever. */
        q->no_ns = true;
        evdns_getaddrinfo_cancel(q->gai);
    }
    return 0;
}

int mw_resolve_start(mw_io_t *io, const char *host, const char *port, mw_resolve_fn fn, void *ud,
                     mw_resolve_req_t **req, mw_err_t *err) {
    assert(io && host && fn);
    if (req) *req = NULL;
    resolver_t *r = resolver_get(io);
    mw_resolve_req_t *q = r ? calloc(1, sizeof *q) : NULL;
    if (!q) return mw_err_set(err, MW_ENOMEM, "resolve %.100s: out of memory", host);
    q->fn = fn;
    q->ud = ud;
    snprintf(q->host, sizeof q->host, "%s", host);
    req_link(r, q);
    int rc = numeric(q, host, port) ? post_delivery(io, q) : start_query(r, q, host, port, err);
    if (rc < 0) { /* nothing was handed to evdns or posted */
        if (rc == MW_ENOMEM) mw_err_set(err, rc, "resolve %s: out of memory", q->host);
        req_free(q);
        return rc;
    }
    if (req) *req = q;
    return 0;
}

void mw_resolve_cancel(mw_resolve_req_t *req) {
    if (!req || req->cancelled || req->delivering) return;
    req->cancelled = true;
    /* The request may be freed inside this call; do not touch it after. */
    if (req->in_evdns && req->gai && !req->no_ns) evdns_getaddrinfo_cancel(req->gai);
}

/* Lets evdns deliver the cancellations, which also frees its own request
 * state. The io's base is looped only from outside its own loop (libevent
 * refuses re-entry); then the pass may also dispatch the io's other ready
 * sources, as one mw_io_poll(io, 0) would. Otherwise the running loop
 * delivers them later to the orphaned requests, which only free themselves. */
static void drain(resolver_t *r) {
    /* event_base_loop refuses to run inside the running loop (-1): then the
     * running loop delivers the cancelled callbacks, and the last frees. */
    for (int i = 0; i < DRAIN_PASSES && r->nevdns > 0; i++)
        if (event_base_loop(r->base, EVLOOP_NONBLOCK) < 0) break;
}

static void resolver_free(resolver_t *r) {
    if (r->dns) evdns_base_free(r->dns, 0);
    if (r->own_base) event_base_free(r->own_base);
    free(r);
}

void mw_resolve_shutdown(mw_io_t *io) {
    resolver_t *r = reg_find(io, true);
    if (!r) return;
    mw_io_timer_stop(io, &r->pump);
    mw_resolve_req_t *q = r->reqs;
    while (q) {
        mw_resolve_req_t *next = q->next; /* a cancel may free q */
        if (!q->cancelled) {
            q->cancelled = true;
            if (q->in_evdns && q->gai && !q->no_ns) evdns_getaddrinfo_cancel(q->gai);
        }
        q = next;
    }
    if (r->dns && r->nevdns > 0) drain(r);
    while (r->reqs) req_unlink(r->reqs);
    if (r->nevdns > 0) { /* callbacks still owed (shut down inside the running loop) */
        r->dying = true;
        return;
    }
    resolver_free(r);
}
