/* mw_ws.h - WebSocket (RFC 6455) options (mw_clt_opts.tr.ws,
 * mw_svc_opts.tr.ws) for ws:// and wss://, the close codes, and the client
 * wrapper a replayed WebSocket recording is read through (mw_record.h).
 * Over WebSocket one msgwire message is exactly one WebSocket message, text
 * or binary per the serdes, with no length prefix anywhere.
 */
#ifndef MW_WS_H
#define MW_WS_H

#include <stdbool.h>
#include <stdint.h>

#include "mw_api.h"
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

/* Fills the defaults (a Clt's or Svc's opts_init does it for opts.tr.ws). */
MW_API void mw_ws_opts_init(mw_ws_opts_t *o);

/* Wraps a connected stream (TCP or TLS, or a replay opened with mw_record.h
 * and flags MW_WS_REPLAY; ownership passes, also on failure), as a client.
 * The client queues its upgrade request at once (none with MW_WS_REPLAY).
 * Returns 0, MW_EINVAL (bad options) or MW_ENOMEM, text in err. */
MW_API int mw_ws_client_wrap(mw_stream_t **out, mw_stream_t *inner, const mw_ws_opts_t *o, mw_err_t *err);

#ifdef __cplusplus
}
#endif

#endif
