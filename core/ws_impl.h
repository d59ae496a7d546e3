/* ws_impl.h - internals shared by ws_codec.c, ws_handshake.c, ws.c and the
 * tests: the sans-I/O HTTP/1.1 upgrade handshake. Not installed.
 *
 * Every function takes (ptr, len) and fills a caller-owned struct; nothing
 * here touches an fd or allocates. Parsed fields are views into the caller's
 * head buffer (or into the strings passed in), valid while those live.
 */
#ifndef MW_WS_IMPL_H
#define MW_WS_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mw_ws.h"

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
 * accept (from mw_ws_accept_key; NULL: not checked), a subprotocol only if it is one of the
 * comma-separated offered ones, no extensions. Returns 0 or MW_EPROTO. */
int mw__ws_response_parse(const char *head, size_t len, const char *accept, const char *offered,
                          mw__ws_resp_t *r);

/* The reason phrase for the statuses above ("Bad Request"). */
const char *mw__ws_status_text(int status);

#endif
