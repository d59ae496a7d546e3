/* mw_conn.h - the options and statistics of a message connection (a stream
 * plus framing, serdes and buffers: the engine under every Clt and Svc
 * connection; serdes/conn_impl.h).
 *
 * Memory is held only while it is used: the rx and tx buffers come from a
 * per-thread pool when data arrives or a message is sent, 4 KiB at first,
 * and grow, up to rx_buf / tx_buf, only when a message (or a full read)
 * needs more; an idle event-mode connection holds no buffer, and steady
 * state allocates nothing.
 */
#ifndef MW_CONN_H
#define MW_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "mw_err.h"
#include "mw_frame.h"
#include "mw_serdes.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { MW_DIR_TX = 1, MW_DIR_RX = 2, MW_DIR_BOTH = 3 };
enum { MW_CONN_TX_LOCK = 1, MW_CONN_RX_TIMESTAMPS = 2 };
#define MW_FRAME_AUTO (-1)

typedef struct mw_conn_opts {
    const char *serdes;  /* "fixed" (default), "text", "msgpack", "msgpack-array" */
    int frame;           /* MW_FRAME_* or MW_FRAME_AUTO: the serdes' default.
                            MW_FRAME_FIXED frames are exactly max_msg bytes (for
                            protocols of one fixed-size message); MW_FRAME_NONE
                            only on message streams (WebSocket: there framing is
                            always the stream's messages, whatever is asked) */
    uint32_t max_msg;    /* largest payload sent or accepted; default 65536 */
    uint32_t rx_buf;     /* most rx buffer bytes (it grows to this on demand); default
                            256 KiB, at least one max frame */
    uint32_t tx_buf;     /* most tx buffer bytes: the send queue's capacity (it grows to
                            this on demand); default 256 KiB, at least one max frame */
    unsigned flags;      /* MW_CONN_* */
} mw_conn_opts_t;

/* Called for every message sent (after it is accepted) or received (before
 * it is delivered). For logging and counting; keep it cheap. */
typedef void (*mw_conn_hook_fn)(void *ud, const mw_schema_t *s, const void *msg);

typedef struct mw_conn_stats {
    uint64_t msgs_out, bytes_out, msgs_in, bytes_in;
    /* Buffer memory the connection holds now: rx + tx buffer capacity plus
     * the decode scratch; 0 for an idle event-mode connection (see above).
     * Read from another thread than the connection's, it is a snapshot. */
    uint64_t buffer_bytes;
} mw_conn_stats_t;

#ifdef __cplusplus
}
#endif

#endif
