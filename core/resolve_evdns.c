/* resolve_evdns.c - the resolver's back end: libevent's evdns (see
 * resolve_impl.h). The only resolver file that knows libevent.
 *
 * The evdns base is created with EVDNS_BASE_DISABLE_WHEN_INACTIVE: an idle
 * resolver must not keep a caller's event_base_dispatch() running.
 *
 * Lifetime: `owed` counts answers still to come. Closing while answers are
 * owed (a shutdown from inside the running loop, which cannot be re-entered
 * to deliver the cancellations) marks the back end dying; the last answer
 * then frees it, one zero timeout later (an evdns base cannot be freed from
 * inside its own callback).
 */
#include "resolve_impl.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "mw_clock.h"
#include "err_impl.h"
#include "io_impl.h"
#include "selector_impl.h"

/* evdns's own timeout: seconds per try and tries per query. */
#define DNS_TIMEOUT_S 2
#define DNS_ATTEMPTS "2"
/* Close delivers cancelled queries with at most this many loop passes (one
 * pass runs libevent's deferred callbacks, which is all it takes). */
#define DRAIN_PASSES 64

struct mw__dns {
    mw_io_t *io;
    mw__dns_answer_fn fn;
    struct event_base *base;     /* the io's, or own_base */
    struct event_base *own_base; /* private base (epoll, direct), or NULL */
    struct evdns_base *evdns;
    mw_io_timer_t pump;
    int owed;                    /* answers still to come */
    bool dying;                  /* closed; freed by the last answer */
};

/* evdns prints its warnings to stderr unless given a log function; ours
 * sends them to the msgwire log hook. The setting is process-wide. */
static void dns_log(int is_warn, const char *msg) {
    mw__logf(is_warn ? MW_LOG_WARN : MW_LOG_DEBUG, "evdns: %s", msg);
}
static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static void log_init(void) { evdns_set_log_fn(dns_log); }

static void pump_fn(mw_io_timer_t *t, void *ud) {
    (void)t;
    mw__dns_t *d = ud;
    event_base_loop(d->own_base, EVLOOP_NONBLOCK);
    if (d->owed > 0) mw_io_timer_after(d->io, &d->pump, MW_RESOLVE_PUMP_NS);
}

static void dns_free(mw__dns_t *d) {
    mw_io_timer_stop(d->io, &d->pump);
    if (d->evdns) evdns_base_free(d->evdns, 0);
    if (d->own_base) event_base_free(d->own_base);
    free(d);
}

int mw__dns_open(mw__dns_t **out, mw_io_t *io, mw__dns_answer_fn fn, mw_err_t *err) {
    pthread_once(&log_once, log_init);
    mw__dns_t *d = calloc(1, sizeof *d);
    if (!d) return mw__err_set(err, MW_ENOMEM, "resolve: out of memory");
    d->io = io;
    d->fn = fn;
    mw_io_timer_init(&d->pump, pump_fn, d);
    d->base = mw__selector_event_base(mw__io_selector(io));
    if (!d->base) {
        d->own_base = event_base_new();
        if (!d->own_base) {
            free(d);
            return mw__err_set(err, MW_ESYS, "resolve: event_base_new failed");
        }
        d->base = d->own_base;
    }
    d->evdns = evdns_base_new(d->base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (!d->evdns) {
        d->evdns = evdns_base_new(d->base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (d->evdns) evdns_base_load_hosts(d->evdns, "/etc/hosts");
    }
    if (!d->evdns) {
        dns_free(d);
        return mw__err_set(err, MW_ESYS, "resolve: evdns_base_new failed");
    }
    char tmo[16];
    snprintf(tmo, sizeof tmo, "%d", DNS_TIMEOUT_S);
    evdns_base_set_option(d->evdns, "timeout:", tmo);
    evdns_base_set_option(d->evdns, "attempts:", DNS_ATTEMPTS);
    *out = d;
    return 0;
}

static int fill_addrs(mw__resolve_result_t *res, const struct evutil_addrinfo *ai) {
    res->naddrs = 0;
    for (; ai && res->naddrs < MW_RESOLVE_MAX_ADDRS; ai = ai->ai_next) {
        if (!ai->ai_addr || ai->ai_addrlen > sizeof res->addrs[0]) continue;
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
        memcpy(&res->addrs[res->naddrs], ai->ai_addr, ai->ai_addrlen);
        res->lens[res->naddrs] = (socklen_t)ai->ai_addrlen;
        res->naddrs++;
    }
    return res->naddrs;
}

/* evdns result -> (code, what); fills the addresses on success. */
static int map_result(mw__dns_query_t *q, int result, const struct evutil_addrinfo *ai, const char **what) {
    *what = NULL;
    if (q->no_ns) {
        *what = "no name server configured";
    } else if (result == 0) {
        if (fill_addrs(q->res, ai) > 0) return 0;
        *what = "no address";
    } else if (result == EVUTIL_EAI_NONAME) {
        *what = "name does not exist";
    } else if (result == EVUTIL_EAI_SERVICE) {
        *what = "unknown service";
    } else if (result == EVUTIL_EAI_CANCEL) {
        *what = "cancelled";
    } else if (result == EVUTIL_EAI_FAIL && mw_now_ns() - q->t0 >= (uint64_t)DNS_TIMEOUT_S * MW_NS_PER_S) {
        /* evdns folds DNS_ERR_TIMEOUT into EAI_FAIL together with server
         * failures; a failure that took a whole try's timeout is a timeout. */
        *what = "timed out";
        return MW_ETIMEDOUT;
    } else {
        *what = evutil_gai_strerror(result);
    }
    return MW_ERESOLVE;
}

static void free_cb(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    dns_free(arg);
}

static void gai_cb(int result, struct evutil_addrinfo *ai, void *arg) {
    mw__dns_query_t *q = arg;
    mw__dns_t *d = q->dns; /* q may be freed by the answer */
    q->owed = false;
    q->handle = NULL;
    d->owed--;
    const char *what;
    int code = map_result(q, result, ai, &what);
    if (ai) evutil_freeaddrinfo(ai);
    d->fn(q, code, what);
    if (d->dying && d->owed == 0) {
        static const struct timeval zero = {0, 0};
        event_base_once(d->base, -1, EV_TIMEOUT, free_cb, d, &zero);
    }
}

int mw__dns_query(mw__dns_t *d, mw__dns_query_t *q, const char *host, const char *port,
                  mw__resolve_result_t *res) {
    /* Armed first: once evdns holds the query, only the pump can finish it. */
    if (d->own_base && !mw_io_timer_armed(&d->pump) &&
        mw_io_timer_after(d->io, &d->pump, MW_RESOLVE_PUMP_NS) < 0)
        return MW_ENOMEM;
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    q->dns = d;
    q->res = res;
    q->t0 = mw_now_ns();
    q->owed = true;
    q->no_ns = false;
    d->owed++;
    struct evdns_getaddrinfo_request *h = evdns_getaddrinfo(d->evdns, host, port, &hints, gai_cb, q);
    /* Answered inside the call (q may be gone): evdns returned NULL then. */
    if (!h) return 0;
    q->handle = h;
    if (evdns_base_count_nameservers(d->evdns) == 0) {
        /* evdns would queue it until a name server appears, i.e. forever. */
        q->no_ns = true;
        evdns_getaddrinfo_cancel(h);
    }
    return 0;
}

void mw__dns_cancel(mw__dns_query_t *q) {
    if (q->owed && q->handle && !q->no_ns) evdns_getaddrinfo_cancel(q->handle);
}

/* The io's base is looped only from outside its own loop (libevent refuses
 * re-entry with -1): then a pass may also dispatch the io's other ready
 * sources, as one mw_io_poll(io, 0) would. Inside the running loop, that
 * loop delivers the cancellations later, and the last one frees. */
void mw__dns_close(mw__dns_t *d) {
    if (!d) return;
    mw_io_timer_stop(d->io, &d->pump);
    for (int i = 0; i < DRAIN_PASSES && d->owed > 0; i++)
        if (event_base_loop(d->base, EVLOOP_NONBLOCK | EVLOOP_ONCE) < 0) break;
    if (d->owed > 0) {
        d->dying = true;
        return;
    }
    dns_free(d);
}
