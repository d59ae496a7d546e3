/* ws_impl.h - internals shared by the WebSocket files and the tests. Not
 * installed.
 *
 * WebSocket (RFC 6455): a sans-I/O codec, the HTTP/1.1 upgrade
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
 * the same way. msgwire's mw__conn uses these, so over WebSocket one msgwire
 * message is exactly one WebSocket message, with no length prefix anywhere.
 *
 * Record view, for tools that handle bytes (echo servers, the Autobahn
 * client): read yields whole records of
 *     u32 big-endian length, payload
 * one per message, as many as fit per read, and writev takes the same records
 * and sends each as one message, text or binary per mw__ws_set_text (or per
 * record with MW_WS_RECORD_OPCODE). writev consumes whole records only (a
 * record cut off at the end of the input is left for the next call) and
 * returns the bytes of records consumed. A record larger than the caller's
 * read buffer is handed over in pieces by successive reads (a buffer of
 * max_msg + 5 bytes never sees that).
 *
 * A read that returned messages may leave more frames buffered in the
 * stream: read while mw__stream_pending() > 0 before waiting on the fd. read
 * and writev may run on two threads at once (the transmit side is under a
 * spinlock, since reads queue pongs and close replies too).
 *
 * Failures close the connection with the RFC close code and return:
 *   MW_EPROTO  (1002 protocol error)     MW_EUTF8  (1007 invalid UTF-8 in text)
 *   MW_ETOOBIG (1009 message too big)    MW_ECLOSED (peer closed: 1000 etc.)
 * with a sentence in the stream's err. A handshake failure answers an HTTP
 * error status (400, 426 with Sec-WebSocket-Version: 13, 431) to a client and
 * fails the stream with MW_EPROTO.
 *
 *   ws_codec.c      frame headers, masking, UTF-8 (sans-I/O)
 *   ws_handshake.c  the HTTP/1.1 upgrade request/response (sans-I/O)
 *   ws.c            the stream: ops table, construction, handshake driver,
 *                   public helpers (ping, close, getters)
 *   ws_rx.c         the reading half: frames -> messages (readmsg, pending,
 *                   the record view's read)
 *   ws_tx.c         the writing half: messages -> frames (writemsgs, the
 *                   record view's writev, control frames, the tx buffer)
 *
 * The sans-I/O functions take (ptr, len) and fill a caller-owned struct;
 * nothing there touches an fd or allocates. Parsed fields are views into the
 * caller's head buffer (or into the strings passed in), valid while those
 * live.
 */
#ifndef MW_WS_IMPL_H
#define MW_WS_IMPL_H

#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf_impl.h"
#include "lock_impl.h"
#include "mw_ws.h"
#include "stream_impl.h"

/* ---- codec ------------------------------------------------------------------ */
typedef struct mw__ws_hdr {
    bool fin;
    uint8_t rsv;     /* RSV1..3 bits as 0..7 */
    uint8_t opcode;
    bool masked;
    uint8_t mask[4];
    uint64_t len;    /* payload length */
    size_t hdr_len;  /* bytes of header (2..14) */
} mw__ws_hdr_t;

/* Parses one frame header. expect_masked: true on a server (client frames
 * must be masked), false on a client. Returns hdr_len (> 0), MW_EAGAIN (need
 * more bytes), MW_EPROTO or MW_ETOOBIG (len > max_len). Never reads past
 * in+len. */
ssize_t mw__ws_hdr_decode(const uint8_t *in, size_t len, bool expect_masked, uint64_t max_len,
                         mw__ws_hdr_t *h);
/* Writes a header for a payload of len bytes into out (>= 14 bytes); mask
 * NULL for unmasked. Returns the header length. */
size_t mw__ws_hdr_encode(uint8_t *out, bool fin, int opcode, uint64_t len, const uint8_t mask[4]);
/* XORs p[0..n) with mask, starting at mask offset `off` (for payloads masked
 * in pieces). */
void mw__ws_mask(uint8_t *p, size_t n, const uint8_t mask[4], size_t off);

/* Incremental UTF-8 validation across fragments. */
typedef struct mw__utf8_state { uint32_t state; } mw__utf8_state_t;
static inline void mw__utf8_init(mw__utf8_state_t *u) { u->state = 0; }
/* Feeds bytes; false as soon as they cannot be valid UTF-8. */
bool mw__utf8_feed(mw__utf8_state_t *u, const uint8_t *p, size_t n);
/* True if the input so far ended on a character boundary. */
static inline bool mw__utf8_complete(const mw__utf8_state_t *u) { return u->state == 0; }

/* ---- handshake (sans-I/O) ------------------------------------------------------ */
/* Sec-WebSocket-Accept for a key: base64(SHA-1(key + GUID)) into out (29 bytes
 * incl. NUL). */
void mw__ws_accept_key(const char *key, size_t key_len, char out[29]);

/* Wraps a connected stream as a server (ownership passes, also on failure):
 * it waits for the client's upgrade request. Reads return MW_EAGAIN until the
 * handshake completes (mw__stream_handshake drives it and returns 1 then). */
int mw__ws_server_wrap(mw_stream_t **out, mw_stream_t *inner, const mw_ws_opts_t *o, mw_err_t *err);

/* Record view: the records written from now on (without an opcode byte)
 * are text messages (else binary). Writer side. No effect on writemsgs,
 * whose flags say it per call. */
void mw__ws_set_text(mw_stream_t *s, bool text);

/* Sends a ping with up to 125 bytes of payload. 0, MW_EAGAIN, MW_EINVAL, error. */
int mw__ws_ping(mw_stream_t *s, const void *data, size_t n);
/* Starts the close handshake with a code and reason (<= 123 bytes). Further
 * writes fail with MW_ECLOSED; reads drain until the peer's close. Returns 0
 * (also when already started), MW_EINVAL (a code that may not be sent, a
 * reason too long or not UTF-8), MW_ESTATE before the handshake completes,
 * or the stream's error. */
int mw__ws_close(mw_stream_t *s, uint16_t code, const char *reason);
/* The close code received from the peer (0 if none yet), and sent by us. */
int mw__ws_peer_close_code(const mw_stream_t *s);
int mw__ws_sent_close_code(const mw_stream_t *s);
/* Pongs received (counts, for tests and keep-alive logic). */
uint64_t mw__ws_pongs(const mw_stream_t *s);
/* The subprotocol agreed on, or "". The request path (server side). */
const char *mw__ws_subprotocol(const mw_stream_t *s);
const char *mw__ws_path(const mw_stream_t *s);
bool mw__is_ws(const mw_stream_t *s);


typedef struct mw__ws_str {
    const char *p;
    size_t n;
} mw__ws_str_t;

/* Finds the end of an HTTP head (the empty line; CRLF or bare LF endings) in
 * p[0..len). *scan is where the previous call stopped (start with 0), so
 * feeding a head one byte at a time costs O(n) in total. Returns the head
 * length including the empty line (> 0), MW_EAGAIN when it is not complete
 * yet, or MW_ETOOBIG when the head is (or would be) longer than max. Bytes
 * after the head are not looked at. */
ssize_t mw__ws_head_end(const uint8_t *p, size_t len, size_t max, size_t *scan);

/* A fresh Sec-WebSocket-Key: base64 of 16 RAND_bytes, NUL terminated.
 * Returns 0 or MW_ESYS when the random generator fails. */
int mw__ws_key_new(char out[25]);

/* True if key is a valid Sec-WebSocket-Key: base64 of exactly 16 bytes. */
bool mw__ws_key_valid(const char *key, size_t n);

/* Writes the client's upgrade request into out. host is the Host value; the
 * path, Origin, subprotocols and extra header lines come from o. Returns the
 * length, MW_ETOOBIG (cap too small) or MW_EINVAL (a value with CR/LF, a
 * path not starting with '/', extra headers not ending in CRLF). */
ssize_t mw__ws_request_build(char *out, size_t cap, const mw_ws_opts_t *o, const char *host,
                             const char *key);

/* Server: whether the first bytes of a request head, before it is complete,
 * can still become an HTTP/1.1 request line ("METHOD /target HTTP/1.x").
 * Returns NULL while they can (any prefix of a valid line, including none),
 * otherwise a static text saying what they look like instead (a TLS
 * ClientHello, binary, a malformed line): the server answers 400 at once
 * instead of waiting for a head that will never be valid. Looks at no more
 * than the first 256 bytes. */
const char *mw__ws_request_start_bad(const uint8_t *p, size_t len);

typedef struct mw__ws_req {
    mw__ws_str_t method, target, host, key, origin, version;
    mw__ws_str_t protocol; /* the subprotocol accepted (empty: none) */
    const char *why;       /* static text: why the status is not 101 */
} mw__ws_req_t;

/* Parses and validates a client's upgrade request head (as found by
 * mw__ws_head_end). expect_path: only this path is accepted (NULL: any; the
 * query string is ignored). accept_proto: the subprotocol the server speaks,
 * chosen when the client offers it (NULL: decline all). Returns 101 when the
 * upgrade may proceed, otherwise the HTTP status to answer: 400 malformed or
 * missing/invalid fields, 404 path, 405 method, 426 version. */
int mw__ws_request_parse(const char *head, size_t len, const char *expect_path,
                         const char *accept_proto, mw__ws_req_t *r);

/* Writes the server's answer: for 101 the upgrade response with
 * Sec-WebSocket-Accept computed from key and the subprotocol (if any); for an
 * error status a complete response with Connection: close (426 adds
 * Sec-WebSocket-Version: 13, 405 adds Allow: GET). Returns the length or
 * MW_ETOOBIG. */
ssize_t mw__ws_response_build(char *out, size_t cap, int status, mw__ws_str_t key,
                              mw__ws_str_t protocol);

typedef struct mw__ws_resp {
    int status;            /* the status code, 0 if the status line was malformed */
    mw__ws_str_t reason;   /* the reason phrase */
    mw__ws_str_t protocol; /* the subprotocol the server chose (empty: none) */
    const char *why;       /* static text when the result is MW_EPROTO */
} mw__ws_resp_t;

/* Parses and validates the server's response to our request: status 101,
 * Upgrade: websocket, Connection: upgrade, Sec-WebSocket-Accept equal to
 * accept (from mw__ws_accept_key; NULL: not checked), a subprotocol only if it is one of the
 * comma-separated offered ones, no extensions. Returns 0 or MW_EPROTO. */
int mw__ws_response_parse(const char *head, size_t len, const char *accept, const char *offered,
                          mw__ws_resp_t *r);

/* The reason phrase for the statuses above ("Bad Request"). */
const char *mw__ws_status_text(int status);

/* ---- the stream (ws.c, ws_rx.c, ws_tx.c) ------------------------------------ */

#define MW__WS_CTRL_MAX 125
#define MW__WS_HDR_MAX 14
#define MW__WS_MASK_POOL 512

enum { MW__WS_HS_WAIT, MW__WS_HS_DONE, MW__WS_HS_FAILED };

typedef struct mw__ws {
    mw_stream_t base;
    bool server;
    unsigned flags;
    size_t max_msg, max_header;
    uint64_t max_frame;
    size_t rhs; /* record view: record header size, 4 or 5 with MW_WS_RECORD_OPCODE */

    /* handshake */
    atomic_bool ready;
    atomic_bool inner_up; /* the inner stream's own handshake (TCP connect, TLS) is done */
    int hs;
    size_t hs_scan;
    char accept[29];     /* client: the Sec-WebSocket-Accept we expect */
    char *offered;       /* client: subprotocols offered */
    char *expect_path;   /* server */
    char *accept_proto;  /* server */
    char proto[128];
    char path[1024];

    /* rx half: the reading thread only */
    mw__buf_t rx;
    size_t rx_need; /* bytes from rx.rd that must be present to go on */
    int rx_err;     /* sticky: every later read returns it */
    mw__ws_hdr_t fh; /* the frame being streamed into reasm */
    bool in_frame, in_msg, deliver;
    size_t frame_left, frame_off;
    uint8_t msg_op;
    uint8_t *reasm;
    size_t reasm_len, deliver_off;
    mw__utf8_state_t utf8;
    int peer_code;
    uint64_t pongs;

    /* tx half: under lock */
    mw__lock_t lock;
    mw__lock_t *slk; /* the owner's lock once shared (mw__stream_share_lock): used instead of lock */
    atomic_bool tx_held; /* tx bytes or a pending control frame: want() WRITE */
    mw__buf_t tx;
    int tx_err;    /* sticky result of writes (I/O or protocol failure) */
    int tx_io_err; /* the inner stream failed: nothing can be flushed */
    bool text;     /* record view: records without an opcode byte are text */
    bool close_queued;
    int sent_code;
    bool pong_pending, close_pending; /* control frames waiting for room in tx */
    uint8_t pong[MW__WS_CTRL_MAX], closef[MW__WS_CTRL_MAX];
    size_t pong_len, close_len;
    size_t pool_pos;
    uint8_t pool[MW__WS_MASK_POOL];
} mw__ws_t;

/* The tx half's lock, for the rx side and the helpers: the shared one or
 * the stream's own. */
static inline void mw__ws_tx_lock(mw__ws_t *w) { mw__lock(w->slk ? w->slk : &w->lock); }
static inline void mw__ws_tx_unlock(mw__ws_t *w) { mw__unlock(w->slk ? w->slk : &w->lock); }
/* The same for the tx operations (writev, writemsgs): none once shared,
 * as their caller holds the shared lock. */
static inline void mw__ws_txop_lock(mw__ws_t *w) {
    if (!w->slk) mw__lock(&w->lock);
}
static inline void mw__ws_txop_unlock(mw__ws_t *w) {
    if (!w->slk) mw__unlock(&w->lock);
}
static inline bool mw__ws_ready(const mw__ws_t *w) {
    return atomic_load_explicit(&w->ready, memory_order_acquire);
}

/* dst = src XOR mask (from mask offset off), or a plain copy without a mask. */
static inline void mw__ws_xor_copy(uint8_t *d, const uint8_t *s, size_t n, const uint8_t *mask, size_t off) {
    if (!mask) {
        memcpy(d, s, n);
        return;
    }
    /* the mask as a word in memory order, starting at mask byte off % 4 */
    uint32_t m32;
    memcpy(&m32, mask, 4);
    unsigned sh = (unsigned)(off & 3) * 8;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (sh) m32 = m32 >> sh | m32 << (32 - sh);
#else
    if (sh) m32 = m32 << sh | m32 >> (32 - sh);
#endif
    uint64_t m = (uint64_t)m32 << 32 | m32;
    uint8_t m8[8];
    memcpy(m8, &m, 8);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) { /* two words per turn: half the loop overhead */
        uint64_t v[2];
        memcpy(v, s + i, 16);
        v[0] ^= m, v[1] ^= m;
        memcpy(d + i, v, 16);
    }
    if (i + 8 <= n) {
        uint64_t v;
        memcpy(&v, s + i, 8);
        v ^= m;
        memcpy(d + i, &v, 8);
        i += 8;
    }
    for (; i < n; i++) d[i] = s[i] ^ m8[i & 7];
}

/* A close code that may be sent (RFC 6455 7.4 plus the IANA additions). */
bool mw__ws_close_code_ok(unsigned c);

/* ws.c: drives the handshake; 1 done, MW_EAGAIN, or the error. Reader side. */
int mw__ws_hs_drive(mw__ws_t *w);

/* ws_rx.c (reader side) */
ssize_t mw__ws_fill(mw__ws_t *w);
ssize_t mw__ws_read(mw_stream_t *s, void *dst, size_t cap);
ssize_t mw__ws_readmsg(mw_stream_t *s, void *dst, size_t cap, int flags, int *oflags);
size_t mw__ws_pending(const mw_stream_t *s);

/* ws_tx.c; the functions taking w expect the tx lock held. */
void mw__ws_upd_held(mw__ws_t *w);
int mw__ws_tx_fail(mw__ws_t *w, int code);
int mw__ws_put_frame(mw__ws_t *w, unsigned op, const uint8_t *p, size_t n);
int mw__ws_flush_tx(mw__ws_t *w);
void mw__ws_queue_ctrl(mw__ws_t *w, unsigned op, const uint8_t *p, size_t n);
void mw__ws_send_close(mw__ws_t *w, unsigned code, const char *reason);
ssize_t mw__ws_writev(mw_stream_t *s, const struct iovec *iov, int iovcnt);
ssize_t mw__ws_writemsgs(mw_stream_t *s, const struct iovec *msgs, int n, int flags);

#endif
