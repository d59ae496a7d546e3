/* mw_tls.h - TLS options (mw_clt_opts.tr.tls, mw_svc_opts.tr.tls) for
 * tls:// and wss://. Clients verify the server's certificate chain and host
 * name by default (the system CA store, or ca_file); skipping verification
 * needs the loudly named insecure_skip_verify, meant for tests.
 */
#ifndef MW_TLS_H
#define MW_TLS_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mw_tls_opts {
    const char *ca_file;   /* PEM CA bundle to verify the peer; NULL: system store (client) */
    const char *cert_file; /* PEM certificate chain: required for servers, optional client cert */
    const char *key_file;  /* PEM private key for cert_file */
    bool verify_client;    /* server: require and verify a client certificate (needs ca_file) */
    bool insecure_skip_verify; /* client: DO NOT verify the server (tests only) */
    const char *server_name;   /* client: SNI and name to verify; NULL: the URL host */
} mw_tls_opts_t;

#ifdef __cplusplus
}
#endif

#endif
