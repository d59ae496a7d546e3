/* mw_ws.h - WebSocket (RFC 6455): a sans-I/O codec, the HTTP/1.1 upgrade
 * handshake, and a stream decorator over TCP or TLS, client and server.
 *
 * ---- Codec (no I/O, no allocation) -------------------------------------------
 * Frames are parsed header-first; the payload length is checked against the
 * caller's maximum before anything is buffered. Violations are MW_EPROTO
 * (reserved bits without an extension, unknown opcode, fragmented or >125-byte
 * control frame, wrong masking for the side, non-minimal length encoding,
 * 64-bit length with the top bit set) or MW_ETOOBIG (over max).
 *
 * ---- Stream decorator ----------------------------------------------------------
 * The WebSocket stream is a message stream (mw_stream.h): readmsg returns one
 * WebSocket message per call (fragments reassembled, control frames handled
 * inside: pings answered with pongs, pongs noted, close answered) and
 * writemsgs sends each iovec as one message, text or binary per MW_MSG_TEXT.
 * One socket read can bring many messages: pending() is then > 0 and they
 * are read without waiting. A client masks with fresh random keys; a server
 * never masks. Accepted messages may wait in the stream's own buffer while
 * the socket is full: want() then reports MW_WANT_WRITE, and a writemsgs with
 * no messages (or a writev with iovcnt 0) pushes them on (0 when all are
 * out, MW_EAGAIN otherwise). Pongs and close replies produced by reads queue
 * the same way. msgwire's mw_conn uses these, so over WebSocket one msgwire
 * message is exactly one WebSocket message, with no length prefix anywhere.
 *
 * Record view, for tools that handle bytes (echo servers, the Autobahn
 * client): read yields whole records of
 *     u32 big-endian length, payload
 * one per message, as many as fit per read, and writev takes the same records
 * and sends each as one message, text or binary per mw_ws_set_text (or per
 * record with MW_WS_RECORD_OPCODE). writev consumes whole records only (a
 * record cut off at the end of the input is left for the next call) and
 * returns the bytes of records consumed. A record larger than the caller's
 * read buffer is handed over in pieces by successive reads (a buffer of
 * max_msg + 5 bytes never sees that).
 *
 * A read that returned messages may leave more frames buffered in the
 * stream: read while mw_stream_pending() > 0 before waiting on the fd. read
 * and writev may run on two threads at once (the transmit side is under a
 * spinlock, since reads queue pongs and close replies too).
 *
 * Failures close the connection with the RFC close code and return:
 *   MW_EPROTO  (1002 protocol error)     MW_EUTF8  (1007 invalid UTF-8 in text)
 *   MW_ETOOBIG (1009 message too big)    MW_ECLOSED (peer closed: 1000 etc.)
 * with a sentence in the stream's err. A handshake failure answers an HTTP
 * error status (400, 426 with Sec-WebSocket-Version: 13, 431) to a client and
 * fails the stream with MW_EPROTO.
 */
#ifndef MW_WS_H
#define MW_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mw_err.h"
#include "mw_stream.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    MW_WS_CONT = 0x0, MW_WS_TEXT = 0x1, MW_WS_BINARY = 0x2,
    MW_WS_CLOSE = 0x8, MW_WS_PING = 0x9, MW_WS_PONG = 0xA
};

enum {
    MW_WS_CLOSE_NORMAL = 1000, MW_WS_CLOSE_GOING_AWAY = 1001, MW_WS_CLOSE_PROTOCOL = 1002,
    MW_WS_CLOSE_UNSUPPORTED = 1003, MW_WS_CLOSE_NO_STATUS = 1005, MW_WS_CLOSE_ABNORMAL = 1006,
    MW_WS_CLOSE_BAD_DATA = 1007, MW_WS_CLOSE_POLICY = 1008, MW_WS_CLOSE_TOO_BIG = 1009,
    MW_WS_CLOSE_EXTENSION = 1010, MW_WS_CLOSE_INTERNAL = 1011
};

/* ---- codec ------------------------------------------------------------------ */
typedef struct mw_ws_hdr {
    bool fin;
    uint8_t rsv;     /* RSV1..3 bits as 0..7 */
    uint8_t opcode;
    bool masked;
    uint8_t mask[4];
    uint64_t len;    /* payload length */
    size_t hdr_len;  /* bytes of header (2..14) */
} mw_ws_hdr_t;

/* Parses one frame header. expect_masked: true on a server (client frames
 * must be masked), false on a client. Returns hdr_len (> 0), MW_EAGAIN (need
 * more bytes), MW_EPROTO or MW_ETOOBIG (len > max_len). Never reads past
 * in+len. */
ssize_t mw_ws_hdr_decode(const uint8_t *in, size_t len, bool expect_masked, uint64_t max_len,
                         mw_ws_hdr_t *h);
/* Writes a header for a payload of len bytes into out (>= 14 bytes); mask
 * NULL for unmasked. Returns the header length. */
size_t mw_ws_hdr_encode(uint8_t *out, bool fin, int opcode, uint64_t len, const uint8_t mask[4]);
/* XORs p[0..n) with mask, starting at mask offset `off` (for payloads masked
 * in pieces). */
void mw_ws_mask(uint8_t *p, size_t n, const uint8_t mask[4], size_t off);

/* Incremental UTF-8 validation across fragments. */
typedef struct mw_utf8_state { uint32_t state; } mw_utf8_state_t;
static inline void mw_utf8_init(mw_utf8_state_t *u) { u->state = 0; }
/* Feeds bytes; false as soon as they cannot be valid UTF-8. */
bool mw_utf8_feed(mw_utf8_state_t *u, const uint8_t *p, size_t n);
/* True if the input so far ended on a character boundary. */
static inline bool mw_utf8_complete(const mw_utf8_state_t *u) { return u->state == 0; }

/* ---- handshake (sans-I/O) ------------------------------------------------------ */
/* Sec-WebSocket-Accept for a key: base64(SHA-1(key + GUID)) into out (29 bytes
 * incl. NUL). */
void mw_ws_accept_key(const char *key, size_t key_len, char out[29]);

typedef struct mw_ws_opts {
    const char *host;         /* client: Host header (default: the URL host:port) */
    const char *path;         /* client: request target; default "/" */
    const char *origin;       /* client: Origin header; NULL: none */
    const char *subprotocol;  /* client: Sec-WebSocket-Protocol offered;
                                 server: the one it accepts (NULL: any offered is declined) */
    const char *extra_headers;/* client: raw "Name: value\r\n" lines appended to the request */
    const char *expect_path;  /* server: only this path is accepted (404 otherwise); NULL: any */
    uint32_t max_msg;         /* largest message (reassembled); default 16 MiB */
    uint32_t max_frame;       /* largest frame; default max_msg */
    uint32_t max_header;      /* largest handshake head; default 8 KiB */
    bool text;                /* record view: records are text messages (else binary) */
    unsigned flags;           /* MW_WS_* below */
} mw_ws_opts_t;

enum {
    MW_WS_RECORD_OPCODE = 1, /* records are u8 opcode (1 text / 2 binary), u32 BE length, payload */
    MW_WS_NO_AUTO_PONG = 2,  /* do not answer pings (tests) */
    MW_WS_REPLAY = 4         /* client over a replayed recording (mw_record.h): sends no
                                upgrade request and does not check Sec-WebSocket-Accept */
};

void mw_ws_opts_init(mw_ws_opts_t *o);

/* Wraps a connected stream (TCP or TLS; ownership passes, also on failure).
 * The client queues its upgrade request at once; the server waits for one.
 * Reads return MW_EAGAIN until the handshake completes (mw_stream_handshake
 * drives it and returns 1 then). */
int mw_ws_client_wrap(mw_stream_t **out, mw_stream_t *inner, const mw_ws_opts_t *o, mw_err_t *err);
int mw_ws_server_wrap(mw_stream_t **out, mw_stream_t *inner, const mw_ws_opts_t *o, mw_err_t *err);

/* Record view: the records written from now on (without an opcode byte)
 * are text messages (else binary). Writer side. No effect on writemsgs,
 * whose flags say it per call. */
void mw_ws_set_text(mw_stream_t *s, bool text);

/* Sends a ping with up to 125 bytes of payload. 0, MW_EAGAIN, MW_EINVAL, error. */
int mw_ws_ping(mw_stream_t *s, const void *data, size_t n);
/* Starts the close handshake with a code and reason (<= 123 bytes). Further
 * writes fail with MW_ECLOSED; reads drain until the peer's close. Returns 0
 * (also when already started), MW_EINVAL (a code that may not be sent, a
 * reason too long or not UTF-8), MW_ESTATE before the handshake completes,
 * or the stream's error. */
int mw_ws_close(mw_stream_t *s, uint16_t code, const char *reason);
/* The close code received from the peer (0 if none yet), and sent by us. */
int mw_ws_peer_close_code(const mw_stream_t *s);
int mw_ws_sent_close_code(const mw_stream_t *s);
/* Pongs received (counts, for tests and keep-alive logic). */
uint64_t mw_ws_pongs(const mw_stream_t *s);
/* The subprotocol agreed on, or "". The request path (server side). */
const char *mw_ws_subprotocol(const mw_stream_t *s);
const char *mw_ws_path(const mw_stream_t *s);
bool mw_is_ws(const mw_stream_t *s);

#ifdef __cplusplus
}
#endif

#endif
