/* certs.c - the one certificate set for every test that needs TLS (see
 * mw_test_cert in mw_test.h for the names), made once per process with the
 * openssl command line in a fresh temporary directory and removed at exit.
 * Nothing secret is checked in. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    "extendedKeyUsage = serverAuth\n"
    "[wrong_ext]\n"
    "basicConstraints = CA:FALSE\n"
    "subjectAltName = DNS:wrong.example\n"
    "extendedKeyUsage = serverAuth\n"
    "[cli_ext]\n"
    "basicConstraints = CA:FALSE\n"
    "extendedKeyUsage = clientAuth\n"
    "[ca]\n"
    "default_ca = tca\n"
    "[tca]\n"
    "database = index.txt\n"
    "new_certs_dir = .\n"
    "serial = serial\n"
    "default_md = sha256\n"
    "policy = pol\n"
    "unique_subject = no\n"
    "[pol]\n"
    "commonName = supplied\n";

/* The expired certificate comes from `openssl ca` (OpenSSL 3.0's `x509 -req`
 * has no -not_before; `ca` takes any -startdate/-enddate): srv.pem's key and
 * names, signed by the valid test CA, both dates in the past, so the only
 * fault is the expiry. The whole set takes about 0.15 s. */
static const char gen_sh[] =
    "set -e\n"
    "K='-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes'\n"
    "R='openssl req -config x.cnf'\n"
    "S='openssl x509 -req -CA ca.pem -CAkey ca.key -days 30 -extfile x.cnf'\n"
    "$R -x509 $K -keyout ca.key -out ca.pem -days 30 -subj '/CN=msgwire test CA' -extensions ca_ext\n"
    "$R -x509 $K -keyout other.key -out other.pem -days 30 -subj '/CN=an untrusted CA' -extensions ca_ext\n"
    "$R -new $K -keyout srv.key -out srv.csr -subj /CN=localhost\n"
    "$S -in srv.csr -set_serial 2 -extensions srv_ext -out srv.pem\n"
    "$R -new $K -keyout wrong.key -out wrong.csr -subj /CN=wrong.example\n"
    "$S -in wrong.csr -set_serial 3 -extensions wrong_ext -out wrong.pem\n"
    "$R -new $K -keyout cli.key -out cli.csr -subj '/CN=msgwire test client'\n"
    "$S -in cli.csr -set_serial 4 -extensions cli_ext -out cli.pem\n"
    "$R -x509 $K -keyout self.key -out self.pem -days 30 -subj /CN=localhost -extensions srv_ext\n"
    ": > index.txt\n"
    "echo 10 > serial\n"
    "openssl ca -batch -notext -config x.cnf -cert ca.pem -keyfile ca.key -in srv.csr \\\n"
    "    -out expired.pem -startdate 20200101000000Z -enddate 20200102000000Z -extensions srv_ext\n"
    "openssl verify -CAfile ca.pem srv.pem wrong.pem cli.pem\n"
    "if openssl verify -CAfile ca.pem expired.pem; then exit 1; fi\n";

static char dir[64];
static int made; /* 0 not yet, 1 made, -1 failed */

static void remove_dir(void) { mw_tmpdir_remove(dir); }

/* One path per name for the life of the process: options that keep the
 * pointer (a Svc reads its cert_file again at every accept) stay valid. */
const char *mw_test_cert(const char *name) {
    static struct { char name[32]; char path[128]; } seen[32];
    static int nseen;
    if (!made) {
        const char *const files[][2] = {{"x.cnf", cnf}, {"gen.sh", gen_sh}};
        made = mw_tmpdir_script(dir, sizeof dir, "certs", files, 2, "gen.sh") == 0 ? 1 : -1;
        if (made == 1) atexit(remove_dir);
    }
    if (made < 0) fail_msg("could not make test certificates with the openssl command line");
    for (int i = 0; i < nseen; i++)
        if (strcmp(seen[i].name, name) == 0) return seen[i].path;
    if (nseen == 32 || strlen(name) >= sizeof seen[0].name) fail_msg("mw_test_cert: too many names or \"%s\" too long", name);
    snprintf(seen[nseen].name, sizeof seen[0].name, "%s", name);
    snprintf(seen[nseen].path, sizeof seen[0].path, "%s/%s", dir, name);
    return seen[nseen++].path;
}
