/* svh_session.h - the session layer of the Svc+Clt fixture (svc_harness.h)
 * for tests of recoverable sessions (test_session.c, test_session_review.c,
 * test_interop_session.c, test_alloc.c):
 *
 *   - a temporary directory per test, f->dir, with f->cdir for the Clts'
 *     journals and f->sdir for the Svc's, removed by svh_teardown;
 *   - Svc options with sessions on that record, besides what svh_svc_opts
 *     records, each message's session number and flags (svh_msg_t rx_seq,
 *     flags) and every logon (f->logons, f->logon_conn); an optional logon
 *     hook that counts its calls and refuses user "bad" with f->reject;
 *   - Clt options with sessions on, journaling in f->cdir;
 *   - numbered pings: ping i is sent as session number i and its echo must
 *     come back as number i; checks that the Svc got numbers first..last in
 *     order, once each, with payload == number.
 * Every wait has a deadline (SVH_SESSION_WAIT_MS) and fails the test on
 * expiry.
 */
#ifndef SVH_SESSION_H
#define SVH_SESSION_H

#include "svc_harness.h"

#include "mw_session.h"

#define SVH_SESSION_WAIT_MS 10000

/* svh_setup plus the journal directories. *state in: NULL (an event-mode
 * Svc) or a mw_mode_t * as for svh_setup. */
int svh_session_setup(void **state);

/* svh_svc_opts plus sessions on, journals in f->sdir, on_logon_done recorded. */
void svh_session_svc_opts(svh_t *f, mw_svc_opts_t *o);
/* An opts.session.on_logon hook (ud: the svh_t): counts f->hook_calls,
 * refuses user "bad" with f->reject when that is set, accepts otherwise. */
int svh_session_on_logon(void *ud, const mw_logon_info_t *li, char *reason, size_t cap);
/* Clt options: mode, sessions on with id, journals in f->cdir, f->serdes. */
void svh_session_clt_opts(svh_t *f, mw_clt_opts_t *o, mw_mode_t mode, const char *id);

/* Sends ping `payload` as the next sequenced message, flushing while the
 * queue is full, then flushes (bounded by SVH_SESSION_WAIT_MS). Returns the
 * send's result; *seq gets the number. */
int svh_send_ping_seq(mw_clt_t *c, uint64_t payload, uint64_t *seq);
/* Sends pings first..last; each must be accepted with number == payload. */
void svh_send_numbered(mw_clt_t *c, uint64_t first, uint64_t last);
/* Receives pings first..last, each with number == payload and
 * (mw_clt_rx_flags & mask) == (flags & mask). */
void svh_recv_numbered(mw_clt_t *c, uint64_t first, uint64_t last, unsigned flags, unsigned mask);

/* Waits until the Svc recorded messages up to index from + (last - first),
 * then asserts: exactly that many, messages from.. carry numbers
 * first..last with payload == number and (flags & flag_mask) == 0. */
void svh_expect_numbered(svh_t *f, int from, uint64_t first, uint64_t last, unsigned flag_mask);
/* Polls until the Svc's session `session` expects number next_in (reading
 * and dropping what arrives for drain meanwhile, when it is not NULL). */
bool svh_session_next_in_is(svh_t *f, const char *session, uint64_t next_in, mw_clt_t *drain, int ms);

#endif
