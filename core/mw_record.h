/* mw_record.h - record every byte a stream reads, and replay a recording as
 * a stream, so a captured session re-runs deterministically through the same
 * framing, WebSocket and serdes code (tests, backtests).
 *
 * Place the recorder where the bytes are plain: over TCP, or over TLS (it
 * records the decrypted bytes), and under WebSocket. A replayed WebSocket
 * session is read by a WebSocket client wrapped with MW_WS_REPLAY (it neither
 * sends its upgrade request nor checks the accept key, which was bound to the
 * live session's random key).
 *
 * File format (all integers little-endian):
 *   header  8 bytes  "MWREC\0\1\0"   magic, format version 1, reserved 0
 *           8 bytes  u64 wall-clock ns at the start of the recording
 *           2 bytes  u16 n, then n bytes of UTF-8 label (e.g. the URL)
 *   record  8 bytes  u64 monotonic ns when the read returned
 *           4 bytes  u32 length L (1 .. 16 MiB)
 *           L bytes  exactly what that read() returned
 *   The records follow until the end of the file. A record cut short by the
 *   end of the file, a bad magic, an unknown version or a length of 0 or over
 *   16 MiB is a corrupt recording: MW_EPROTO with the byte offset in the text.
 *
 * Writes through a recorder go to the inner stream unrecorded (the recording
 * is of what was received). Records are written with stdio buffering and
 * flushed on close; a crash may lose the tail.
 */
#ifndef MW_RECORD_H
#define MW_RECORD_H

#include <stdbool.h>
#include <stdint.h>

#include "mw_api.h"
#include "mw_err.h"
#include "mw_stream.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MW_RECORD_MAX_CHUNK (16u * 1024 * 1024)

/* Opens a recording as a stream: each read returns the next recorded chunk
 * (split if the caller's buffer is smaller, never merged, so read boundaries
 * are reproduced), then MW_ECLOSED at the end. Writes are accepted and
 * discarded (counted). fd() is -1: poll it with the direct selector or call it
 * directly. The header is validated here (MW_EPROTO on corruption). */
MW_API int mw_replay_open(mw_stream_t **out, const char *path, mw_err_t *err);

/* mw_replay_open for a recording already open as fd, a regular file read
 * from its start (the offset is reset). The stream owns fd from this call on:
 * it is closed when the stream is freed, and at once on failure. Error text
 * names the recording "fd N". MW_EINVAL for fd < 0 or a file that is not
 * regular, MW_EPROTO on corruption, MW_ESYS, MW_ENOMEM. */
MW_API int mw_replay_open_fd(mw_stream_t **out, int fd, mw_err_t *err);

/* mw_replay_open for a recording held in memory: data[0..len) is read in
 * place, not copied, so it must stay valid and unchanged until the stream is
 * freed. Error text names the recording "in memory". MW_EPROTO on
 * corruption, MW_ESYS, MW_ENOMEM. Allocates the stream. */
MW_API int mw_replay_open_mem(mw_stream_t **out, const void *data, size_t len, mw_err_t *err);

/* Monotonic timestamp of the chunk the last read returned (replay and record
 * streams; a Clt over a replay reports it as mw_clt_rx_time_ns). */
MW_API uint64_t mw_replay_last_ts(const mw_stream_t *s);
/* Wall-clock start and label from the header. */
MW_API uint64_t mw_replay_start_wall_ns(const mw_stream_t *s);
MW_API const char *mw_replay_label(const mw_stream_t *s);
MW_API uint64_t mw_replay_bytes_discarded(const mw_stream_t *s);

#ifdef __cplusplus
}
#endif

#endif
