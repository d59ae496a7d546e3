/*
 * peer_lws - ping-pong of binary WebSocket messages over ws:// with
 * libwebsockets, the peer msgwire's event mode over ws:// is measured against
 * (see peer_common.h for the command line; URL ws://HOST:PORT/PATH).
 *
 * Both sides use libwebsockets the way its minimal examples do: one context,
 * its own poll loop (lws_service), a protocol callback; a message is written
 * from the WRITEABLE callback after lws_callback_on_writable. The clt takes a
 * round trip's start when it decides to send (before asking for writability),
 * as msgwire's pingpong does in its on_msg callback, and its end when the
 * whole echo has arrived. One thread per process, one core for both in
 * run_bench.py (event mode). The clt ends with a normal close, on which the
 * svc (--once) exits.
 */
#include <libwebsockets.h>

#define RAW_PROG "peer_lws"
#include "peer_common.h"

#define LWS_MAX_MSG (64u * 1024u)

/* One message in flight per connection (ping-pong): the bytes gathered so far
 * and, once whole, the same bytes to write back (svc) or compare (clt). */
struct msgbuf {
    unsigned char pre[LWS_PRE];
    unsigned char data[LWS_MAX_MSG];
    size_t len;
};

static int done;
static const struct peer_opts *opts;

/* Appends a fragment; returns 1 once the message is whole. */
static int gather(struct lws *wsi, struct msgbuf *m, const void *in, size_t len)
{
    if (m->len + len > sizeof m->data)
        die("message over %u bytes", LWS_MAX_MSG);
    memcpy(m->data + m->len, in, len);
    m->len += len;
    return lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0;
}

static int write_msg(struct lws *wsi, struct msgbuf *m, size_t len)
{
    int n = lws_write(wsi, m->data, len, LWS_WRITE_BINARY);
    if (n < (int)len)
        die("lws_write: %d of %zu bytes", n, len);
    return 0;
}

/* ---- svc ------------------------------------------------------------------ */

struct svc_sess {
    struct msgbuf rx;
    size_t echo_len; /* > 0: an echo waits for writability */
};

static int svc_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct svc_sess *s = user;
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        s->rx.len = 0;
        s->echo_len = 0;
        break;
    case LWS_CALLBACK_RECEIVE:
        if (gather(wsi, &s->rx, in, len)) {
            s->echo_len = s->rx.len;
            s->rx.len = 0;
            lws_callback_on_writable(wsi);
        }
        break;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (s->echo_len) {
            size_t n = s->echo_len;
            s->echo_len = 0;
            return write_msg(wsi, &s->rx, n);
        }
        break;
    case LWS_CALLBACK_CLOSED:
        if (opts->once)
            done = 1;
        break;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols svc_protocols[] = {
    { "pp", svc_cb, sizeof(struct svc_sess), LWS_MAX_MSG, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 },
};

static int run_svc(const struct peer_opts *o)
{
    char host[256], port[16];
    peer_split_url(o->url, host, sizeof host, port, sizeof port);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    info.port = (int)parse_u64("port", port);
    info.iface = host;
    info.protocols = svc_protocols;
    struct lws_context *ctx = lws_create_context(&info);
    if (!ctx)
        die("lws_create_context failed");
    struct lws_vhost *vh = lws_create_vhost(ctx, &info);
    if (!vh)
        die("lws_create_vhost %s failed", o->url);
    peer_listening((unsigned)lws_get_vhost_listen_port(vh));
    while (!done)
        if (lws_service(ctx, 0) < 0)
            break;
    lws_context_destroy(ctx);
    return 0;
}

/* ---- clt ------------------------------------------------------------------ */

struct clt_state {
    struct msgbuf tx, rx;
    unsigned char want[LWS_MAX_MSG]; /* lws masks tx in place as it writes */
    struct peer_run run;
    uint64_t t0;
};

static struct clt_state cs;

static void clt_next(struct lws *wsi)
{
    peer_fill(cs.want, opts->size, cs.run.seq);
    cs.t0 = now_ns();
    lws_callback_on_writable(wsi);
}

static int clt_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    (void)user;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        die("connect %s: %s", opts->url, in ? (const char *)in : "failed");
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        clt_next(wsi);
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        memcpy(cs.tx.data, cs.want, opts->size);
        return write_msg(wsi, &cs.tx, opts->size);
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (!gather(wsi, &cs.rx, in, len))
            break;
        {
            uint64_t t1 = now_ns();
            peer_check(cs.want, opts->size, cs.rx.data, cs.rx.len, cs.run.seq);
            cs.rx.len = 0;
            peer_record(&cs.run, opts, cs.t0, t1);
        }
        if (cs.run.seq < cs.run.total) {
            clt_next(wsi);
            break;
        }
        done = 1;
        lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
        return -1;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (!done)
            die("the svc closed the connection after %" PRIu64 " round trips", cs.run.seq);
        break;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols clt_protocols[] = {
    { "pp", clt_cb, 0, LWS_MAX_MSG, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 },
};

static int run_clt(const struct peer_opts *o)
{
    if (o->size > LWS_MAX_MSG)
        die("--size is at most %u here", LWS_MAX_MSG);
    char host[256], port[16];
    peer_split_url(o->url, host, sizeof host, port, sizeof port);
    const char *path = strchr(strstr(o->url, "://") + 3, '/');
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = clt_protocols;
    struct lws_context *ctx = lws_create_context(&info);
    if (!ctx)
        die("lws_create_context failed");
    peer_run_init(&cs.run, o);
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = ctx;
    ci.address = host;
    ci.port = (int)parse_u64("port", port);
    ci.path = path ? path : "/";
    ci.host = host;
    ci.origin = host;
    ci.protocol = "pp";
    if (!lws_client_connect_via_info(&ci))
        die("lws_client_connect_via_info %s failed", o->url);
    while (!done)
        if (lws_service(ctx, 0) < 0)
            break;
    lws_context_destroy(ctx);
    if (!done)
        die("the event loop ended after %" PRIu64 " round trips", cs.run.seq);
    peer_report(&cs.run, o, "libwebsockets", "event");
    return 0;
}

int main(int argc, char **argv)
{
    struct peer_opts o;
    peer_parse(argc, argv, &o, "event");
    if (o.mode && strcmp(o.mode, "event") != 0)
        die("only --mode event (the lws_service loop)");
    opts = &o;
    lws_set_log_level(LLL_ERR, NULL);
    return strcmp(o.cmd, "svc") == 0 ? run_svc(&o) : run_clt(&o);
}
