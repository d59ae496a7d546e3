/* session_replay.c - mw_session_replay: a session's journal read back
 * offline, every message decoded with the fixed serdes it was journaled in
 * (mw_session.h). Shares nothing with a live session but the journal. */
#include "session_impl.h"

#include <stdlib.h>

#include "err_impl.h"

typedef struct replay {
    const mw_protocol_t *p;
    mw_session_replay_fn fn;
    void *ud;
    mw_serdes_t fx;
    void *msg;
    int err;
} replay_t;

static bool replay_one(void *ud, int kind, uint64_t seq, const uint8_t *payload, uint32_t len) {
    replay_t *rp = ud;
    const mw_schema_t *sch;
    if (mw_serdes_decode(&rp->fx, payload, len, rp->p, &sch, rp->msg, rp->p->max_size) < 0) {
        rp->err = MW_ECORRUPT;
        return false;
    }
    return rp->fn(rp->ud, kind == MW__JNL_OUT ? MW_SESSION_OUT : MW_SESSION_IN, seq, sch, rp->msg);
}

int mw_session_replay(const char *journal_dir, const char *session, const mw_protocol_t *p,
                      mw_session_replay_fn fn, void *ud, mw_err_t *err) {
    replay_t rp = {.p = p, .fn = fn, .ud = ud};
    if (!(rp.msg = calloc(1, p->max_size + 16))) return mw__err_set(err, MW_ENOMEM, "replay: out of memory");
    mw_serdes_init(&rp.fx, "fixed", 0);
    int r = mw__jnl_replay(journal_dir, session, replay_one, &rp, err);
    if (r == 0 && rp.err) r = mw__err_set(err, rp.err, "replay %s: a record does not decode: %s", session,
                                         mw_serdes_last_error(&rp.fx));
    mw_serdes_fini(&rp.fx);
    free(rp.msg);
    return r;
}
