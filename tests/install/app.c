/* An outside program: built by test_install against an installed msgwire with
 * nothing but `pkg-config --cflags --libs msgwire`. It declares its own message,
 * round-trips it through every serdes, and echoes it over loopback TCP. */
#include <msgwire/mw_clt.h>
#include <msgwire/mw_svc.h>
#include <stdio.h>
#include <string.h>

#define QUOTE_FIELDS(F) F(U64, id) F(CHARS, sym, 8) F(F64, px) F(ENUM, side, 2)
MW_MESSAGE(quote, 7, QUOTE_FIELDS)
#define APP_MSGS(M) M(quote)
MW_PROTOCOL(app, APP_MSGS)

static int roundtrip(const char *name) {
    mw_serdes_t sd;
    if (mw_serdes_init(&sd, name, 0) < 0) return 1;
    quote_t q = {42, "EURUSD", 1.0825, 1}, back;
    uint8_t buf[256];
    const mw_schema_t *s;
    ssize_t n = quote_encode(&sd, &q, buf, sizeof buf);
    int bad = n <= 0 || mw_serdes_decode(&sd, buf, (size_t)n, &app_protocol, &s, &back, sizeof back) != n ||
              s->tag != quote_TAG || back.id != 42 || strcmp(back.sym, "EURUSD") || back.px != 1.0825;
    mw_serdes_fini(&sd);
    return bad;
}

int main(void) {
    if (roundtrip("fixed") || roundtrip("text") || roundtrip("msgpack")) {
        puts("serdes round trip failed");
        return 1;
    }
    mw_err_t err;
    mw_svc_t *svc;
    if (mw_svc_listen(&svc, "tcp://127.0.0.1:0", &app_protocol, NULL, &err) < 0) {
        printf("listen: %s\n", err.text);
        return 1;
    }
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", mw_svc_port(svc));
    mw_clt_t *clt;
    if (mw_clt_connect(&clt, url, &app_protocol, NULL, &err) < 0) {
        printf("connect: %s\n", err.text);
        return 1;
    }
    quote_t q = {7, "AAPL", 189.5, 0};
    app_msg_t m;
    const mw_schema_t *s;
    mw_conn_id_t id;
    int ok = MW_CLT_SEND(clt, &q, APP_MSGS) == 0 &&
             mw_svc_recv_busywait_timeout(svc, &id, &s, &m, sizeof m, 5 * MW_NS_PER_S) == 0 &&
             mw_svc_send_to(svc, id, s, &m) == 0 &&
             mw_clt_recv_busywait_timeout(clt, &s, &m, sizeof m, 5 * MW_NS_PER_S) == 0 &&
             m.quote.id == 7 && m.quote.px == 189.5;
    mw_clt_free(clt);
    mw_svc_free(svc);
    puts(ok ? "ok" : "echo failed");
    return ok ? 0 : 1;
}
