/* mw_transport.h - the options of a URL's stream stack (mw_clt_opts.tr,
 * mw_svc_opts.tr): tcp:// is TCP, tls:// TLS over TCP, ws:// WebSocket over
 * TCP, wss:// WebSocket over TLS over TCP; the same program talks any scheme
 * by changing only the URL. A client may also record every byte it reads
 * (mw_record.h).
 */
#ifndef MW_TRANSPORT_H
#define MW_TRANSPORT_H

#include "mw_tls.h"
#include "mw_ws.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The strings these options point to are used again at every connect or
 * accept (not copied): keep them alive as long as the Clt or Svc. A
 * record_path containing "%u" gets the connect number (1, 2, ...) there,
 * so each connection of an endpoint records to a file of its own. */
typedef struct mw_transport_opts {
    mw_tls_opts_t tls;       /* tls:// and wss:// */
    mw_ws_opts_t ws;         /* ws:// and wss:// (path/host default from the URL) */
    const char *record_path; /* client: record every byte read to this file */
} mw_transport_opts_t;

#ifdef __cplusplus
}
#endif

#endif
