/* svc_sess_impl.h - the Svc's sessions by id: opened at their first logon,
 * kept (with their journals) until the Svc is freed, so a client that
 * reconnects from anywhere resumes its session, and the application can
 * send to a session that is not connected (journaled, resent at logon). */
#ifndef MW_SVC_SESS_IMPL_H
#define MW_SVC_SESS_IMPL_H

#include <pthread.h>

#include "session_impl.h"

typedef struct mw__svc_sessions {
    pthread_mutex_t mu;
    mw__sess_t **tab;  /* open addressing by id hash; cap = 2 * max, power of two */
    uint32_t cap, n, max;
    const char *wire;  /* the Svc's serdes (opts.conn.serdes): sessions' trial encodes */
} mw__svc_sessions_t;

int mw__svc_sessions_init(mw__svc_sessions_t *t, uint32_t max);
void mw__svc_sessions_fini(mw__svc_sessions_t *t); /* frees every session */
/* The session named id, or NULL. */
mw__sess_t *mw__svc_sessions_find(mw__svc_sessions_t *t, const char *id);
/* The session named id, opened (journal recovered) if it is not yet: 0,
 * MW_EFULL (max_sessions), or the journal's error (text in err). */
int mw__svc_sessions_get(mw__svc_sessions_t *t, const char *id, const mw_session_opts_t *o,
                         const mw_protocol_t *app, mw__sess_t **out, mw_err_t *err);

#endif
