/* certs.c - one certificate set for every test that needs TLS: a CA, a
 * server certificate for localhost/127.0.0.1 signed by it, and an unrelated
 * CA, made once per process with the openssl command line and removed at
 * exit. */
#include <stdio.h>
#include <stdlib.h>

#include "mw_test.h"

static const char cnf[] =
    "[req]\n"
    "distinguished_name = dn\n"
    "prompt = no\n"
    "[dn]\n"
    "CN = unused\n"
    "[ca_ext]\n"
    "basicConstraints = critical,CA:TRUE\n"
    "keyUsage = critical,keyCertSign,cRLSign\n"
    "subjectKeyIdentifier = hash\n"
    "[srv_ext]\n"
    "basicConstraints = CA:FALSE\n"
    "subjectAltName = DNS:localhost,IP:127.0.0.1\n"
    "extendedKeyUsage = serverAuth\n";

static const char gen_sh[] =
    "set -e\n"
    "K='-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes'\n"
    "R='openssl req -config x.cnf'\n"
    "$R -x509 $K -keyout ca.key -out ca.pem -days 30 -subj '/CN=msgwire test CA' -extensions ca_ext\n"
    "$R -x509 $K -keyout other.key -out other.pem -days 30 -subj '/CN=an untrusted CA' -extensions ca_ext\n"
    "$R -new $K -keyout srv.key -out srv.csr -subj /CN=localhost\n"
    "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -set_serial 2 -days 30 \\\n"
    "    -extfile x.cnf -extensions srv_ext -out srv.pem\n"
    "openssl verify -CAfile ca.pem srv.pem\n";

static char dir[64];
static int made; /* 0 not yet, 1 made, -1 failed */

static void remove_dir(void) { mw_tmpdir_remove(dir); }

const char *mw_test_cert(const char *name) {
    static char buf[8][128];
    static int next;
    if (!made) {
        const char *const files[][2] = {{"x.cnf", cnf}, {"gen.sh", gen_sh}};
        made = mw_tmpdir_script(dir, sizeof dir, "certs", files, 2, "gen.sh") == 0 ? 1 : -1;
        if (made == 1) atexit(remove_dir);
    }
    if (made < 0) fail_msg("could not make test certificates with the openssl command line");
    char *p = buf[next++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    return p;
}
