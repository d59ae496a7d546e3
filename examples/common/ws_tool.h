/* ws_tool.h - the echo engine shared by the WebSocket tools (ws_echo,
 * ws_autobahn): a buffer of opcode records (MW_WS_RECORD_OPCODE) read from a
 * WebSocket stream and written back to it, message for message, with the
 * same opcode.
 *
 * The stream must be a WebSocket stream wrapped with MW_WS_RECORD_OPCODE, so
 * every read yields records of u8 opcode, u32 BE length, payload, and every
 * write takes the same records. A record that does not fit the buffer's free
 * space arrives in pieces; the buffer grows (once, up to max_msg + 5 bytes)
 * so that any one message fits whole, because writes take whole records only.
 *
 * Nothing here blocks: ws_echo_pump moves what it can and returns; the
 * caller waits for ws_echo_events() and calls it again. One thread per
 * ws_echo_t.
 */
#ifndef WS_TOOL_H
#define WS_TOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mw_stream.h"

#define WS_TOOL_REC_HDR 5 /* u8 opcode + u32 BE length */

/* Called once per whole message read, before it is echoed. p is borrowed:
 * valid until the callback returns. */
typedef void (*ws_echo_msg_fn)(void *ud, unsigned opcode, const uint8_t *p, size_t n);

typedef struct ws_echo {
    uint8_t *p;
    size_t cap, max;          /* current capacity; largest (max_msg + 5) */
    size_t off, scan, len;    /* [off, scan): whole records to echo; [scan, len): a record arriving */
    bool echo;                /* false: messages are reported and dropped */
    int werr;                 /* first write error (echoing stops); 0 if none */
    uint64_t msgs, bytes;     /* messages / payload bytes read */
    ws_echo_msg_fn on_msg;    /* optional */
    void *ud;
} ws_echo_t;

/* Allocates a small buffer (grown on demand up to max_msg + 5 bytes).
 * Returns 0 or MW_ENOMEM. */
int ws_echo_init(ws_echo_t *e, size_t max_msg);
/* Frees the buffer; safe to call twice. */
void ws_echo_fini(ws_echo_t *e);

/* Writes pending echoes and reads more messages until neither can make
 * progress. Returns 0 (wait for ws_echo_events, then call again) or the
 * stream's read result that ended the session: MW_ECLOSED when the peer
 * closed (see mw__ws_peer_close_code), MW_EPROTO / MW_EUTF8 / MW_ETOOBIG when
 * the stream failed the connection (see mw__ws_sent_close_code), or another
 * MW_E* from the transport. A write error does not end the pump: echoing
 * stops (werr is set) and reading goes on until the stream reports why. */
int ws_echo_pump(ws_echo_t *e, mw_stream_t *s);

/* The MW_WANT_* readiness to wait for before the next ws_echo_pump. */
int ws_echo_events(const ws_echo_t *e, const mw_stream_t *s);

/* Pushes bytes the stream holds (a close reply, the last echoes) without
 * waiting: 0 when all are out (or cannot go out any more), MW_EAGAIN when
 * the socket must become writable first. */
int ws_tool_flush(mw_stream_t *s);

/* Like ws_tool_flush, waiting with poll up to timeout_ns. Returns 0 or
 * MW_ETIMEDOUT. */
int ws_tool_flush_wait(mw_stream_t *s, int64_t timeout_ns);

/* Reads and discards raw bytes from the stream under the WebSocket layer
 * (TLS or TCP) until the peer closes its end or timeout_ns passes (waiting
 * with poll): the polite end of a connection after the close frames, so the
 * last frame is not lost to a reset. Returns 0 or MW_ETIMEDOUT. */
int ws_tool_drain_wait(mw_stream_t *ws, int64_t timeout_ns);

/* "normal", "going away", "protocol error", ... for a close code; "" if
 * unknown. */
const char *ws_tool_code_name(int code);

#endif
