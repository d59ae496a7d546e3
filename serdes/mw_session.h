/* mw_session.h - recoverable sequenced sessions (optional, opts.session of a
 * Clt or Svc): nothing lost or duplicated across disconnects and process
 * restarts.
 *
 * Both directions are numbered 1, 2, 3... per session. The receiver hands
 * each number to the application once and in order; the sender keeps every
 * message it sent in a journal (one file per session, memory-mapped,
 * checksummed) and resends from it what the peer has not seen, after each
 * logon, before anything new. Numbers travel implicitly (SoupBinTCP's way):
 * a connection is ordered and reliable, so an application message carries
 * no header at all, and a small mw_seq control message marks the few places
 * where the numbering jumps (the start of a resend, its end). The control
 * messages below are ordinary msgwire messages of a reserved protocol (tags
 * 0xFF01..0xFF07, names "mw_..."), in whatever serdes the connection uses,
 * so a session works over tcp/tls/ws/wss, every mode and every serdes. The
 * exact rules are in the README ("Sessions: the wire protocol").
 */
#ifndef MW_SESSION_H
#define MW_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "mw_api.h"

#include "mw_err.h"
#include "mw_schema.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the control messages (the wire protocol) ----------------------------- */

/* First message of the client: who it is and where each direction stands.
 * next_in: the number of the next message it expects from the server;
 * next_out: the number its next new message will carry. reset: start both
 * directions again at 1 (a new trading day). */
#define MW_LOGON_FIELDS(F)                                                     \
    F(CHARS, session, 32) F(CHARS, user, 32) F(CHARS, password, 64)            \
    F(U64, next_in) F(U64, next_out) F(U32, heartbeat_ms) F(BOOL, reset)
MW_MESSAGE(mw_logon, 0xFF01, MW_LOGON_FIELDS)
/* The server's answer: the same numbers from its side. */
#define MW_LOGON_ACK_FIELDS(F)                                                 \
    F(CHARS, session, 32) F(U64, next_in) F(U64, next_out)                     \
    F(U32, heartbeat_ms) F(BOOL, reset)
MW_MESSAGE(mw_logon_ack, 0xFF02, MW_LOGON_ACK_FIELDS)
/* Ends the session's connection (the session itself stays: a later logon
 * resumes it). code: MW_LOGOUT_*; the receiver answers with mw_logout and
 * both close once everything before it is written. */
#define MW_LOGOUT_FIELDS(F) F(U16, code) F(CHARS, reason, 128)
MW_MESSAGE(mw_logout, 0xFF03, MW_LOGOUT_FIELDS)
/* Sent when a side has sent nothing for heartbeat_ms; test_id echoes a test
 * request (0 otherwise). */
#define MW_HEARTBEAT_FIELDS(F) F(U64, test_id)
MW_MESSAGE(mw_heartbeat, 0xFF04, MW_HEARTBEAT_FIELDS)
/* "Are you there?": answered by mw_heartbeat with the same test_id. */
#define MW_TEST_REQUEST_FIELDS(F) F(U64, test_id)
MW_MESSAGE(mw_test_request, 0xFF05, MW_TEST_REQUEST_FIELDS)
/* Send again from number `from` (to: last number wanted, 0: up to now). */
#define MW_RESEND_REQUEST_FIELDS(F) F(U64, from) F(U64, to)
MW_MESSAGE(mw_resend_request, 0xFF06, MW_RESEND_REQUEST_FIELDS)
/* The next application message carries number `next` (later ones count on
 * from it); resent: they were sent before on an earlier connection (until
 * the next mw_seq). */
#define MW_SEQ_FIELDS(F) F(U64, next) F(BOOL, resent)
MW_MESSAGE(mw_seq, 0xFF07, MW_SEQ_FIELDS)

#define MW_SESSION_MSGS(M)                                                     \
    M(mw_logon) M(mw_logon_ack) M(mw_logout) M(mw_heartbeat) M(mw_test_request) \
    M(mw_resend_request) M(mw_seq)
MW_PROTOCOL(mw_session, MW_SESSION_MSGS)

/* True for the reserved tags (application protocols must not use them). */
static inline bool mw_session_tag(unsigned tag) { return tag >= 0xFF00u; }

enum {
    MW_LOGOUT_NORMAL = 0,      /* the application ended it */
    MW_LOGOUT_REJECTED = 1,    /* logon refused (the reason says why) */
    MW_LOGOUT_PROTOCOL = 2,    /* a session rule was broken (the reason says which) */
    MW_LOGOUT_SILENT = 3,      /* no answer to a test request */
    MW_LOGOUT_RESEND_FLOOD = 4,/* too many resend requests */
    MW_LOGOUT_SHUTDOWN = 5     /* the service is going down */
};

/* ---- options -------------------------------------------------------------- */

typedef enum mw_fsync {
    MW_FSYNC_NONE = 0,     /* survives a process crash (kill -9), not a power loss */
    MW_FSYNC_INTERVAL = 1, /* a power loss loses at most the last fsync_interval_ns */
    MW_FSYNC_ALWAYS = 2    /* each message is on disk before send returns */
} mw_fsync_t;

/* What the Svc's logon hook sees. */
typedef struct mw_logon_info {
    const char *session, *user, *password; /* NUL-terminated copies */
    const char *peer;                      /* "ip:port" */
    uint64_t next_in, next_out;            /* as the client sent them */
    bool reset;
} mw_logon_info_t;

typedef struct mw_session_opts {
    bool enabled;
    const char *journal_dir;   /* required; must exist; one file per session */
    /* Clt: which session and the credentials for the server's hook. */
    const char *id;            /* 1..31 bytes of [A-Za-z0-9_.-] */
    const char *user, *password;
    bool reset;                /* Clt: start numbering again at this logon */
    int64_t heartbeat_ns;      /* Clt: proposed interval (the Svc takes it);
                                  default 1 s. Silence of 2 intervals brings a
                                  test request, of 3 a close (MW_ETIMEDOUT) */
    int64_t logon_timeout_ns;  /* logon must be answered within; default 5 s */
    mw_fsync_t fsync;          /* default MW_FSYNC_NONE */
    int64_t fsync_interval_ns; /* MW_FSYNC_INTERVAL; default 100 ms */
    bool journal_in;           /* also journal received application messages
                                  (for mw_session_replay) */
    bool keep_old;             /* keep the journals of earlier epochs at a reset */
    /* Svc: accept (return 0) or refuse a logon (return nonzero and write the
     * reason into reason[cap]; the client gets it in mw_logout). NULL: every
     * valid session id is accepted. Called on the connection's thread. */
    int (*on_logon)(void *ud, const mw_logon_info_t *li, char *reason, size_t cap);
    /* A session is logged on (Clt: conn = 0; Svc: the connection id), after
     * the resend of what the peer missed was queued. May be NULL. */
    void (*on_logon_done)(void *ud, const char *session, uint64_t conn);
    uint32_t max_sessions;     /* Svc: sessions kept open at once; default 1024 */
    uint32_t max_resend_requests; /* per heartbeat interval before the peer is
                                     closed (MW_LOGOUT_RESEND_FLOOD); default 8 */
} mw_session_opts_t;

MW_API void mw_session_opts_init(mw_session_opts_t *o);

/* Flags of a received message (mw_clt_rx_flags / mw_svc_rx_flags). */
#define MW_SEQ_RESENT 1u  /* resent from the peer's journal: it sent this number
                             before, on an earlier connection */
#define MW_SEQ_POSSDUP 2u /* this process (or the one before a crash) may have
                             handed this number to the application already: the
                             handler was running when the process died */

typedef struct mw_session_stats {
    uint64_t next_in, next_out;   /* the next numbers expected / to be assigned */
    uint64_t resent;              /* messages we resent */
    uint64_t dups_dropped;        /* received numbers below next_in, dropped */
    uint64_t gaps;                /* gaps seen (each triggered a resend request) */
    uint64_t resend_requests;     /* received from the peer */
    uint64_t logons;
    uint64_t journal_bytes, fsyncs, epoch;
    bool logged_on;
} mw_session_stats_t;

/* Reads a session's journal (the newest epoch) in the order it was written:
 * dir MW_SESSION_OUT (sent) or MW_SESSION_IN (received, with journal_in),
 * each decoded with p. fn returns false to stop. For rebuilding application
 * state after a restart. 0 or the error (text in err). */
enum { MW_SESSION_OUT = 1, MW_SESSION_IN = 2 };
typedef bool (*mw_session_replay_fn)(void *ud, int dir, uint64_t seq, const mw_schema_t *s, const void *msg);
MW_API int mw_session_replay(const char *journal_dir, const char *session, const mw_protocol_t *p,
                      mw_session_replay_fn fn, void *ud, mw_err_t *err);

#ifdef __cplusplus
}
#endif

#endif
