/* mw_stream.h - a stream: TCP, TLS, WebSocket, or a recording being
 * replayed (mw_record.h). Users hold one only to replay a recording through
 * a Clt (mw_clt_open_stream takes ownership) or to free one they did not
 * hand over; the ops and the stack are msgwire's own (stream_impl.h).
 */
#ifndef MW_STREAM_H
#define MW_STREAM_H

#include "mw_api.h"
#include "mw_err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mw_stream mw_stream_t;

/* Closes and frees the stream and every stream under it. NULL is a no-op. */
MW_API void mw_stream_free(mw_stream_t *s);
/* The text of the stream's last error ("" if none). Never NULL. */
MW_API const char *mw_stream_last_error(const mw_stream_t *s);

#ifdef __cplusplus
}
#endif

#endif
