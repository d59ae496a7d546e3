/* svc_harness.h - one Svc under test, its peers and threads, and what its
 * callbacks saw, for tests of the Svc, the Clt and the io that need a real
 * server on 127.0.0.1 port 0 (test_svc.c, test_clt.c, test_io.c).
 *
 * A test gets an svh_t as *state (SVH_T(fn, mode) registers fn with the
 * fixture for one run mode). svh_svc_opts fills options whose callbacks
 * record every accept, message (ping seq) and close (reason, error text,
 * thread) under one order counter; svh_listen starts the Svc; Clts, raw
 * sockets and threads a test opens through the harness are closed, stopped
 * and joined by svh_teardown even when an assertion ends the test early
 * (threads must end when f->stop is set). Waits poll a condition with a
 * deadline of SVH_WAIT_MS and fail the test on expiry.
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
#define SVH_MAX_CONNS 8
#define SVH_MAX_MSGS 64
#define SVH_MAX_THREADS 4
#define SVH_FILL_LIMIT 100000 /* bound on "send until the tx buffer is full" loops */

typedef struct svh_msg {
    mw_conn_id_t id;
    uint64_t seq;
    uint64_t order;
} svh_msg_t;

typedef struct svh_close {
    mw_conn_id_t id;
    int reason;
    uint64_t order;
    pthread_t th;
    char text[MW_ERR_TEXT_MAX];
} svh_close_t;

typedef struct svh {
    mw_mode_t mode;
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

    mw_clt_t *clts[SVH_MAX_CONNS];
    int nclts;
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
} svh_t;

extern mw_mode_t svh_mode_spin, svh_mode_blocking, svh_mode_event;

/* A test of fn in one run mode (spin, blocking, event): named fn_mode. */
#define SVH_T(fn, mode) {#fn "_" #mode, fn, svh_setup, svh_teardown, &svh_mode_##mode}

/* ---- fixture ---- */
int svh_setup(void **state);    /* *state: the mode (a mw_mode_t *) in, the svh_t out */
int svh_teardown(void **state);
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

/* ---- the Svc, Clts, waits ---- */
void svh_svc_opts(svh_t *f, mw_svc_opts_t *o);  /* f->mode and the recording callbacks */
/* Listens on scheme://127.0.0.1:0 and sets f->port and f->url. */
void svh_listen(svh_t *f, const char *scheme, const mw_svc_opts_t *o);
/* Connects a Clt to the Svc (o NULL: spin mode, defaults); the fixture frees it. */
mw_clt_t *svh_clt_connect(svh_t *f, const mw_clt_opts_t *o);
void svh_clt_drop(svh_t *f, mw_clt_t *c);  /* frees a Clt before the fixture would */
void svh_send_ping(mw_clt_t *c, uint64_t seq);
/* Spin/blocking: one mw_svc_recv on the test thread, recording a message. */
int svh_pump(svh_t *f);
/* Drives the Svc from the test thread until it holds `want` connections. */
void svh_pump_until_conns(svh_t *f, uint32_t want);
/* Waits until on_accept ran n times; returns the nth id. */
mw_conn_id_t svh_wait_accepted(svh_t *f, int n);
svh_close_t svh_wait_closed(svh_t *f, mw_conn_id_t id);
void svh_wait_flag(atomic_bool *flag, const char *what);
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
