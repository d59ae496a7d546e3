/* mw_proxy.h - a TCP proxy on 127.0.0.1 for fault tests: it forwards bytes
 * both ways between each client it accepts and 127.0.0.1:<upstream port>,
 * and on request cuts a connection in the middle of whatever it is
 * forwarding (a frame, a TLS record, a WebSocket message): it passes on only
 * part of the next chunk, then resets both sides.
 *
 * One thread per proxy. The upstream port may change at any time (a server
 * restarted on a new port); a client that arrives while nothing listens
 * there is closed at once (it reconnects later). */
#ifndef MW_PROXY_H
#define MW_PROXY_H

#include <stdbool.h>
#include <stdint.h>

typedef struct mw_proxy mw_proxy_t;

/* Starts a proxy to 127.0.0.1:upstream_port; *port gets its own port.
 * Fails the test on error. */
mw_proxy_t *mw_proxy_start(int upstream_port, int *port);
void mw_proxy_set_upstream(mw_proxy_t *p, int upstream_port);
/* Asks for a cut: the next chunk read on any connection is forwarded only in
 * part (at least 1 byte short, at most all but one byte dropped), then both
 * sides of that connection are reset. A connection idle in both directions
 * is not cut until something flows. */
void mw_proxy_cut(mw_proxy_t *p);
/* Cuts done so far, connections accepted so far. */
uint64_t mw_proxy_cuts(const mw_proxy_t *p);
uint64_t mw_proxy_accepted(const mw_proxy_t *p);
/* Stops the thread and closes every socket. NULL is a no-op. */
void mw_proxy_stop(mw_proxy_t *p);

#endif
