/* journal_impl.h - a session journal: one append-only, checksummed,
 * memory-mapped file per session (internal; sessions in serdes/ use it).
 *
 * The file: <dir>/<session>.<epoch>.mwj, epoch = 6 decimal digits, starting
 * at 000001; a reset rolls over to epoch + 1 (the old file is kept or
 * removed). The newest epoch is the current one.
 *
 *   header (4096 bytes, little-endian)
 *     0   magic "MWJ1"            4   version u32 = 1
 *     8   epoch u64              16   created_ns u64 (CLOCK_REALTIME)
 *    24   session[32] (NUL padded)
 *    56   header crc32c u32 (bytes 0..55)
 *    64   in_next u64   the next inbound number not yet handed to the
 *                       application (written in place, after handling)
 *    72   in_seen u64   the inbound number being handled + 1 (written in
 *                       place before the handler runs)
 *    80   out_first u64 the number of the first outbound record ever
 *                       appended to this epoch (1 after a reset)
 *   records from offset 4096, each 8-byte aligned:
 *     u32 len   payload bytes (0: end of records; the rest of the file is
 *               zero, pre-allocated)
 *     u32 crc   crc32c of bytes [8, 24 + len) of the record (seq, kind,
 *               rsvd, payload)
 *     u64 seq   the message's number
 *     u16 kind  MW__JNL_OUT (sent) or MW__JNL_IN (received)
 *     u16 rsvd  0,  u32 rsvd 0
 *     payload   len bytes (the session layer stores the fixed-serdes
 *               encoding of the message: u16 tag + fields)
 *     zero padding to a multiple of 8
 *
 * Writing is a memcpy into a MAP_SHARED mapping: no syscall per record. The
 * file grows in chunks that are posix_fallocate'd first, so a full disk is
 * an error from append (MW_ESYS, "No space left on device"), never a
 * SIGBUS. The crc is stored last, after the payload, and len before it:
 * a record cut short by a crash fails its crc.
 *
 * Durability (fsync policy):
 *   NONE      survives a crash of the process (kill -9: the data is in the
 *             page cache); a power loss may lose what the kernel had not
 *             written back yet (typically the last ~30 s).
 *   INTERVAL  msync(MS_SYNC) of the dirty range at most every interval_ns
 *             (from mw__jnl_tick and append): a power loss loses at most
 *             the last interval.
 *   ALWAYS    msync(MS_SYNC) of the record before append returns: what was
 *             appended survives a power loss.
 *
 * Recovery at open: the records are scanned and each crc checked; the first
 * record that is torn (len reaches past the file, crc mismatch, bad kind,
 * an OUT seq not one more than the previous OUT record, the first one being
 * out_first; IN records may carry any seq, as append allows), or nonzero
 * bytes after the last record (an append cut before its len) ends the good
 * part: the rest is zeroed (truncated to the last good record), with a
 * warning naming the byte offset (mw__jnl_recovered tells the caller). A
 * header with a bad magic/version/crc is refused (MW_ECORRUPT, offset 0);
 * a file whose session field differs from the one asked for is refused
 * (MW_EINVAL "journal ... belongs to session X").
 *
 * Threads: one thread at a time per journal (the session layer holds its
 * lock). No allocation per record in steady state: the sparse index of
 * outbound records (one entry every MW__JNL_INDEX_EVERY records) is
 * allocated in large steps.
 */
#ifndef MW_JOURNAL_IMPL_H
#define MW_JOURNAL_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mw_err.h"

typedef struct mw__jnl mw__jnl_t;

enum { MW__JNL_OUT = 1, MW__JNL_IN = 2 };
enum { MW__JNL_FSYNC_NONE = 0, MW__JNL_FSYNC_INTERVAL = 1, MW__JNL_FSYNC_ALWAYS = 2 };
#define MW__JNL_SESSION_MAX 31 /* bytes of a session id: [A-Za-z0-9_.-], 1..31 */
#define MW__JNL_INDEX_EVERY 256

typedef struct mw__jnl_opts {
    const char *dir;          /* must exist */
    const char *session;      /* validated: mw__jnl_valid_session */
    int fsync;                /* MW__JNL_FSYNC_* */
    int64_t fsync_interval_ns;/* INTERVAL: default 100 ms when 0 */
    bool keep_old;            /* keep the files of earlier epochs at reset */
    size_t grow_bytes;        /* file growth step; 0: 1 MiB */
} mw__jnl_opts_t;

typedef struct mw__jnl_stats {
    uint64_t bytes;           /* record bytes in the current epoch */
    uint64_t records;
    uint64_t fsyncs;          /* msync/fdatasync calls made */
    uint64_t epoch;
} mw__jnl_stats_t;

/* True if s is a usable session id (also a safe file name part). */
bool mw__jnl_valid_session(const char *s);

/* Opens (or creates, epoch 1) the newest journal of o->session in o->dir,
 * recovering a torn tail. 0, MW_EINVAL (bad id, other session's file),
 * MW_ECORRUPT (bad header), MW_ESYS (I/O; also a journal already open in
 * another process or journal object: one writer per file, flock), MW_ENOMEM;
 * text in err. */
int mw__jnl_open(mw__jnl_t **out, const mw__jnl_opts_t *o, mw_err_t *err);
void mw__jnl_close(mw__jnl_t *j); /* syncs per policy, unmaps, closes; NULL ok */

/* Byte offset where recovery cut a torn/corrupt tail, or -1 if none. */
int64_t mw__jnl_recovered(const mw__jnl_t *j);

/* Appends one record. kind OUT: seq must be mw__jnl_out_next (it becomes
 * seq + 1). kind IN: any seq (inbound records are for replay only).
 * len 1..2^30 (0 marks the end of the records, so it is refused).
 * 0, MW_ESYS (disk full, msync failed: text in the journal's error),
 * MW_EINVAL (wrong seq, kind or len), MW_ENOMEM (index growth). On any
 * error nothing was appended (out_next is unchanged). */
int mw__jnl_append(mw__jnl_t *j, int kind, uint64_t seq, const void *payload, uint32_t len);

/* Takes back the OUT record seq if it is the last one appended (since open
 * or reset): zeroed as if never written, out_next = seq again. For a
 * message the connection could not encode (nothing of it was written). 0 or
 * MW_EINVAL. */
int mw__jnl_drop_last(mw__jnl_t *j, uint64_t seq);

uint64_t mw__jnl_out_next(const mw__jnl_t *j);  /* last OUT seq + 1 (out_first if none) */
uint64_t mw__jnl_out_first(const mw__jnl_t *j); /* first OUT seq still in the journal */
uint64_t mw__jnl_in_last(const mw__jnl_t *j);  /* highest IN seq in the file, 0 if none */
uint64_t mw__jnl_in_next(const mw__jnl_t *j);
uint64_t mw__jnl_in_seen(const mw__jnl_t *j);
/* In-place header words (a plain aligned 8-byte store each; no fsync). */
void mw__jnl_set_in_seen(mw__jnl_t *j, uint64_t v);
void mw__jnl_set_in_next(mw__jnl_t *j, uint64_t v);

/* Reading outbound records from a number on (resend). A cursor stays valid
 * across appends. seek: 0, or MW_ERANGE when seq < out_first or seq >
 * out_next. next: 0 with *seq, *payload and *len set (the payload points into
 * the mapping: valid until the next append, reset or close), or MW_EAGAIN
 * at the end. */
typedef struct mw__jnl_cur { uint64_t off; uint64_t seq; } mw__jnl_cur_t;
int mw__jnl_seek(mw__jnl_t *j, uint64_t seq, mw__jnl_cur_t *cur);
int mw__jnl_next(mw__jnl_t *j, mw__jnl_cur_t *cur, uint64_t *seq, const uint8_t **payload, uint32_t *len);

/* New epoch: numbering starts again at 1 in a fresh file, in_next = 1; the
 * old file is kept or removed per keep_old. 0 or MW_ESYS. */
int mw__jnl_reset(mw__jnl_t *j);

/* INTERVAL policy: syncs if the interval has passed and something is dirty.
 * Returns the number of syncs done (0/1). Cheap when nothing to do. */
int mw__jnl_tick(mw__jnl_t *j, uint64_t now_ns);
int mw__jnl_sync(mw__jnl_t *j); /* sync now (any policy) */

void mw__jnl_stats(const mw__jnl_t *j, mw__jnl_stats_t *st);
const char *mw__jnl_last_error(const mw__jnl_t *j);
const char *mw__jnl_path(const mw__jnl_t *j);

/* Reads every record of the newest journal of session in dir, in file
 * order, read-only (no recovery writes; stops at the first bad record and
 * says where in err with MW_ECORRUPT only if the header is bad). fn
 * returns false to stop. 0 (also when the session has no journal yet: fn
 * is not called), or the error. Works while a writer has the file open. */
typedef bool (*mw__jnl_replay_fn)(void *ud, int kind, uint64_t seq, const uint8_t *payload, uint32_t len);
int mw__jnl_replay(const char *dir, const char *session, mw__jnl_replay_fn fn, void *ud, mw_err_t *err);

/* crc32c (Castagnoli), software, table driven (SSE4.2 when available).
 * crc is the result for the bytes before p (0 to start), so a checksum can
 * be computed in pieces. Any thread, no allocation. */
uint32_t mw__crc32c(uint32_t crc, const void *p, size_t n);
/* The portable table-driven version, and whether mw__crc32c uses the CPU's
 * crc32 instruction instead (tests compare the two). */
uint32_t mw__crc32c_sw(uint32_t crc, const void *p, size_t n);
bool mw__crc32c_hw(void);

#endif
