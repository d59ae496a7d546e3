/* svc_harness.h - one Svc under test, its peers and threads, and what its
 * callbacks saw, for every test that needs a real server on 127.0.0.1 port 0
 * (test_svc.c, test_clt.c, test_io.c, test_faults.c, ...; with sessions:
 * svh_session.h).
 *
 * A test gets an svh_t as *state (SVH_T(fn, mode) registers fn with the
 * fixture for one run mode). svh_svc_opts fills options whose callbacks
 * record every accept, message (ping seq) and close (reason, error text,
 * thread) under one order counter; svh_listen starts the Svc; Clts, raw
 * sockets and threads a test opens through the harness are closed, stopped
 * and joined by svh_teardown even when an assertion ends the test early
 * (threads must end when f->stop is set). Waits poll a condition with a
 * deadline of SVH_WAIT_MS and fail the test on expiry.
 *
 * svh_start is svh_listen plus, for a spin or blocking Svc, a thread that
 * drives it (mw_svc_recv) and hands each message to the same recording as
 * on_msg, so a test is written once for every Svc mode; svh_stop ends that
 * thread and frees the Svc (a restart: svh_start again, on the same port).
 * A test file reacts to messages (echo, replies) through f->on_msg, which
 * runs after the message is recorded, on whichever thread delivered it
 * (likewise f->on_accept and f->on_close); its own state goes at f->ud
 * (svh_setup_ud / svh_attach_ud: freed with the fixture).
 */
#ifndef SVC_HARNESS_H
#define SVC_HARNESS_H

#include "mw_test.h"
#include "test_proto.h"

#include "mw_clock.h"
#include "mw_clt.h"
#include "mw_idle.h"
#include "mw_io.h"
#include "mw_serdes.h"
#include "mw_svc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define SVH_WAIT_MS 5000
#define SVH_MAX_CONNS 16
#define SVH_MAX_MSGS 8192
#define SVH_MAX_THREADS 4
#define SVH_FILL_LIMIT 100000 /* bound on "send until the tx buffer is full" loops */

typedef struct svh_msg {
    mw_conn_id_t id;
    uint64_t seq;    /* a ping's seq; UINT64_MAX for any other message */
    uint64_t order;
    uint64_t rx_seq; /* sessions: mw_svc_rx_seq (its session number) */
    unsigned flags;  /* sessions: mw_svc_rx_flags */
    unsigned tag;
    pthread_t th;    /* the thread that delivered it */
} svh_msg_t;

typedef struct svh_close {
    mw_conn_id_t id;
    int reason;
    uint64_t order;
    pthread_t th;
    char text[MW_ERR_TEXT_MAX];
} svh_close_t;

typedef struct svh svh_t;
typedef void svh_msg_fn(svh_t *f, mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg);
typedef void svh_close_fn(svh_t *f, mw_svc_t *s, mw_conn_id_t id, int reason);
typedef void svh_accept_fn(svh_t *f, mw_svc_t *s, mw_conn_id_t id);

struct svh {
    mw_mode_t mode;
    const char *serdes; /* NULL: the default; svh_svc_opts and the session options apply it */
    const char *path;   /* ws, wss: the Svc's URL path (NULL: "/") */
    /* The protocol of the Svc and of svh_clt_connect's Clts. NULL: the
     * test protocol as svc_harness.c sees it. Each file has its own copy of
     * the schemas (test_proto.h defines them static): a test that compares
     * schema pointers with its own ping_schema() sets &test_protocol here. */
    const mw_protocol_t *proto;
    mw_svc_t *svc;
    mw_io_t *io; /* event mode, workers = 0: the caller's io */
    int port;
    char url[96];

    pthread_mutex_t mu;
    uint64_t order; /* one sequence over messages and closes */
    mw_conn_id_t accepted[SVH_MAX_CONNS];
    pthread_t accept_th[SVH_MAX_CONNS];
    int naccepted;
    svh_msg_t msgs[SVH_MAX_MSGS];
    int nmsgs;
    svh_close_t closes[SVH_MAX_CONNS];
    int ncloses;
    /* every close, also past SVH_MAX_CONNS: the count, the last reason and text */
    atomic_int nclosed, last_reason;
    char last_close_text[MW_ERR_TEXT_MAX];

    svh_msg_fn *on_msg;     /* the test's reaction to a message, after recording it */
    svh_close_fn *on_close; /* the same for a close */
    svh_accept_fn *on_accept; /* and for an accept */
    bool recv_batch;        /* a spin/blocking Svc's thread receives with mw_svc_recv_batch */
    atomic_long echoed;     /* svh_echo's replies */
    void *ud;           /* the test file's own state (svh_setup_ud: the fixture's) */
    bool ud_owned;
    mw_failure_t fail;  /* what the Svc thread saw go wrong (mw_assert_no_failure) */
    /* a spin/blocking Svc's thread (svh_start); pause parks it (parked set) */
    pthread_t svc_th;
    bool svc_th_live;
    atomic_bool svc_stop, pause, parked;

    mw_clt_t *clts[SVH_MAX_CONNS];
    int nclts;
    mw_io_t *clt_io; /* svh_clt_io */
    int fds[SVH_MAX_CONNS];
    int nfds;
    pthread_t th[SVH_MAX_THREADS];
    bool th_live[SVH_MAX_THREADS];
    atomic_bool stop; /* every thread a test starts ends when it is set */

    /* event Svc: on_accept fills the new connection's tx side, then waits for peer_gone */
    bool fill_on_accept;
    atomic_int fill_count, fill_last;
    atomic_bool filled, peer_gone;
    /* a job posted to the caller's io that holds its thread until released */
    atomic_bool blocker_running, release;
    /* a caller's poll loop on its own thread */
    atomic_long polls;
    atomic_bool poller_in_thread;
    /* steady senders */
    atomic_int flooders, flooders_done, flooder_err;
    atomic_bool go; /* the steady senders start sending */
    /* split TLS Clt */
    mw_clt_t *split;
    atomic_bool rx_waiting;
    atomic_int rx_tid;
    atomic_int tx_rc;
    atomic_llong tx_ns;
    char cert[300], key[300]; /* svh_tls_setup */

    /* sessions (svh_session.h) */
    bool session;                      /* record rx_seq and flags */
    char dir[64], cdir[96], sdir[96];  /* the temporary directory, the Clt's and the Svc's journals */
    atomic_int logons, hook_calls;     /* on_logon_done calls, svh_session_on_logon calls */
    _Atomic uint64_t logon_conn;       /* the connection that logged on last */
    const char *reject;                /* svh_session_on_logon refuses user "bad" with this reason */
};

extern mw_mode_t svh_mode_spin, svh_mode_blocking, svh_mode_event;

/* A test of fn in one run mode (spin, blocking, event): named fn_mode. */
#define SVH_T(fn, mode) {#fn "_" #mode, fn, svh_setup, svh_teardown, &svh_mode_##mode}

/* ---- fixture ---- */
int svh_setup(void **state);    /* *state: the mode (a mw_mode_t *) in, the svh_t out */
int svh_teardown(void **state);
/* n zeroed bytes at f->ud for the test file's own state, freed by
 * svh_teardown. Returns f->ud, NULL on failure (the setup fails). */
void *svh_attach_ud(svh_t *f, size_t n);
/* svh_setup, then svh_attach_ud. */
void *svh_setup_ud(void **state, size_t n);
static inline void *svh_ud(void **state) { return ((svh_t *)*state)->ud; }
/* svh_setup plus the paths of the shared server certificate for localhost
 * (f->cert, f->key: mw_test_cert's srv.pem, srv.key, signed by ca.pem);
 * without the openssl command they are left empty (f->cert[0] == 0): the
 * test calls mw_test_require. */
int svh_tls_setup(void **state);
/* Starts a thread that the fixture joins (after setting stop). */
pthread_t svh_spawn(svh_t *f, void *(*fn)(void *), void *ud);
void svh_join_all(svh_t *f);

/* ---- recording ---- */
void svh_rec_msg(svh_t *f, mw_conn_id_t id, const mw_schema_t *sch, const void *msg);
/* Sends pings to id until the Svc says no; the count and last result go to
 * f->fill_count and f->fill_last. */
void svh_fill_tx(svh_t *f, mw_svc_t *s, mw_conn_id_t id);
int svh_naccepted(svh_t *f);
mw_conn_id_t svh_accepted_id(svh_t *f, int i);
/* The close record of id, if there is one. */
bool svh_find_close(svh_t *f, mw_conn_id_t id, svh_close_t *out);
/* Asserts that id delivered exactly pings first..last, in order, all before
 * its close (order < before). */
void svh_expect_pings(svh_t *f, mw_conn_id_t id, uint64_t first, uint64_t last, uint64_t before);

/* An f->on_msg that echoes each message to its sender (a spin/blocking
 * Svc polls while the queue is full, svh_send_polled) and counts f->echoed;
 * an error other than MW_ECLOSED (the peer left) goes to f->fail. */
void svh_echo(svh_t *f, mw_svc_t *s, mw_conn_id_t id, const mw_schema_t *sch, const void *msg);

/* ---- the Svc, Clts, waits ---- */
void svh_svc_opts(svh_t *f, mw_svc_opts_t *o);  /* f->mode and the recording callbacks */
void svh_svc_hooks(svh_t *f, mw_svc_opts_t *o); /* only the recording callbacks (and ud), into o as it is */
/* Listens on scheme://127.0.0.1:0 (ws, wss: path f->path or "/") and sets f->port and f->url. */
void svh_listen(svh_t *f, const char *scheme, const mw_svc_opts_t *o);
/* The same on a given port (0: any; a restart takes the port it had). */
void svh_listen_at(svh_t *f, const char *scheme, int port, const mw_svc_opts_t *o);
/* svh_listen_at, then for a spin or blocking Svc (o->mode) a thread that
 * receives until svh_stop and records each message as on_msg does (then
 * f->on_msg); a blocking Svc wants a short o->timeout_ns so the thread sees
 * svh_stop. Receive errors go to f->fail. */
void svh_start(svh_t *f, const char *scheme, int port, const mw_svc_opts_t *o);
/* Ends the Svc's thread and frees the Svc (f->svc NULL). Idempotent. */
void svh_stop(svh_t *f);
/* Spin/blocking Svc, any thread: sends to id, polling the Svc while its
 * queue is full, for up to SVH_WAIT_MS. 0 or the last error. */
int svh_send_polled(svh_t *f, mw_conn_id_t id, const mw_schema_t *sch, const void *msg);
/* Connects a Clt to the Svc (o NULL: spin mode, defaults); the fixture frees it. */
mw_clt_t *svh_clt_connect(svh_t *f, const mw_clt_opts_t *o);
/* The same, but the caller frees the Clt (one on the caller's own io, which
 * must outlive it). */
mw_clt_t *svh_clt_connect_untracked(svh_t *f, const mw_clt_opts_t *o);
/* An io for event-mode Clts, started on its own thread. svh_teardown stops
 * it, then frees the Svc and the Clts, then it. */
mw_io_t *svh_clt_io(svh_t *f);
/* Reconnect on, retrying after 10..50 ms. */
void svh_clt_fast_reconnect(mw_clt_opts_t *o);
void svh_clt_adopt(svh_t *f, mw_clt_t *c); /* a Clt made elsewhere, freed by the fixture */
void svh_clt_drop(svh_t *f, mw_clt_t *c);  /* frees a Clt now (one svh_clt_connect made, or any) */
void svh_send_ping(mw_clt_t *c, uint64_t seq);
/* Spin/blocking: one mw_svc_recv on the test thread, recording a message
 * (then f->on_msg, as on_msg would). */
int svh_pump(svh_t *f);
/* Drives the Svc from the test thread until it holds `want` connections. */
void svh_pump_until_conns(svh_t *f, uint32_t want);
/* Waits until on_accept ran n times; returns the nth id. */
mw_conn_id_t svh_wait_accepted(svh_t *f, int n);
svh_close_t svh_wait_closed(svh_t *f, mw_conn_id_t id);
/* Waits for the Svc's close number k (0-based, k < SVH_MAX_CONNS); returns its record. */
svh_close_t svh_wait_close_n(svh_t *f, int k);
void svh_wait_flag(atomic_bool *flag, const char *what);
/* Polls until *n >= want or ms pass; returns whether it got there. */
bool svh_wait_count(atomic_int *n, int want, int ms);
/* Messages recorded so far; waits until n are (false after ms); forgets them. */
int svh_nmsgs(svh_t *f);
bool svh_wait_msgs(svh_t *f, int n, int ms);
void svh_reset_msgs(svh_t *f);
/* A copy of recorded message i (0-based; fails the test past the end). */
svh_msg_t svh_msg(svh_t *f, int i);
/* Conditions for mw_wait_until: ping c->seq from c->id was recorded; the
 * same while pumping the Svc (c->id 0: the first accepted connection);
 * the Clt ud sees its connection end. */
typedef struct svh_msg_cond { svh_t *f; mw_conn_id_t id; uint64_t seq; } svh_msg_cond_t;
bool svh_msg_seen(void *ud);
bool svh_pumped_msg(void *ud);
bool svh_clt_sees_closed(void *ud);

/* ---- raw peers ---- */
int svh_raw_connect(svh_t *f);  /* tracked: the fixture closes what a test leaves open */
void svh_raw_close(svh_t *f, int fd);
/* A ping encoded with the default ("fixed") serdes, no framing. */
size_t svh_encode_ping(uint64_t seq, uint8_t *out, size_t cap);
/* A ping framed as on TCP: u32 big-endian length, then the payload. */
size_t svh_tcp_frame_ping(uint64_t seq, uint8_t *out, size_t cap);
/* A ping as a client's WebSocket frame: FIN + binary, masked with key 0. */
size_t svh_ws_frame_ping(uint64_t seq, uint8_t *out, size_t cap);

#endif
