/* make_seeds.c - writes the seed corpora under tests/fuzz/corpus/<target>/
 * (`make fuzz-seeds`). Seeds are small, valid inputs made with the
 * library's own encoders, so each target starts from the formats' happy
 * paths and libFuzzer mutates from there. Files are named seed-*; inputs
 * that once found a bug are committed beside them as regress-* and are
 * never rewritten here. Usage: make_seeds CORPUS_DIR */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "journal_impl.h"
#include "mw_conn.h"
#include "mw_err.h"
#include "mw_frame.h"
#include "mw_stream.h"
#include "mw_ws.h"
#include "test_proto.h"
#include "ws_impl.h"
#include "conn_impl.h"
#include "frame_impl.h"
#include "stream_impl.h"

static const char *root;

static void die(const char *what) {
    fprintf(stderr, "make_seeds: %s\n", what);
    exit(1);
}

/* Writes corpus/<target>/seed-<name>: the selector byte (if sel >= 0), then p. */
static void seed(const char *target, const char *name, int sel, const void *p, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) die(path);
    snprintf(path, sizeof path, "%s/%s/seed-%s", root, target, name);
    FILE *f = fopen(path, "wb");
    if (!f) die(path);
    if (sel >= 0) fputc(sel, f);
    if (n && fwrite(p, 1, n, f) != n) die(path);
    if (fclose(f) != 0) die(path);
}

typedef struct out {
    uint8_t b[16384];
    size_t n;
} out_t;

static void put(out_t *o, const void *p, size_t n) {
    if (o->n + n > sizeof o->b) die("seed too large");
    memcpy(o->b + o->n, p, n);
    o->n += n;
}

/* ---- frame ---------------------------------------------------------------- */

static void frames(void) {
    static const char *const names[] = {"none", "u16", "u32", "line", "fixed"};
    for (int kind = 0; kind < 5; kind++) {
        for (int mi = 0; mi < 4; mi += 2) { /* default max, and 16 */
            int fixed = 5, sel = kind + 5 * mi + 20 * (fixed - 1);
            mw__framer_t f;
            if (mw__framer_init(&f, kind, mi ? 16 : 0, fixed) != 0) die("framer");
            out_t o = {.n = 0};
            const char *msgs[] = {"hello", "", "x\n", "12345678901234567"};
            for (int i = 0; i < 4; i++) {
                ssize_t r = mw__frame_encode(&f, msgs[i], strlen(msgs[i]), o.b + o.n, sizeof o.b - o.n);
                if (r > 0) o.n += (size_t)r;
            }
            char name[32];
            snprintf(name, sizeof name, "%s-max%d", names[kind], mi ? 16 : 0);
            seed("frame", name, sel, o.b, o.n);
        }
    }
    seed("frame", "u32-huge", 2, "\xff\xff\xff\xff" "abc", 7);
    seed("frame", "u16-partial", 1, "\x00\x10" "abc", 5);
}

/* ---- WebSocket frames ------------------------------------------------------- */

static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};

static void ws_frame(out_t *o, bool fin, int op, const void *p, size_t n, bool masked) {
    uint8_t h[14];
    size_t hl = mw__ws_hdr_encode(h, fin, op, n, masked ? mask : NULL);
    put(o, h, hl);
    size_t at = o->n;
    put(o, p, n);
    if (masked) mw__ws_mask(o->b + at, n, mask, 0);
}

static void ws_codec(void) {
    for (int m = 0; m < 2; m++) {
        out_t o = {.n = 0};
        ws_frame(&o, true, MW_WS_TEXT, "Hello", 5, m);
        seed("ws_codec", m ? "text-masked" : "text", m, o.b, o.n);
        o.n = 0;
        static uint8_t big[300];
        memset(big, 'a', sizeof big);
        ws_frame(&o, false, MW_WS_BINARY, big, 200, m);
        seed("ws_codec", m ? "len16-masked" : "len16", m | 0x80, o.b, o.n);
        o.n = 0;
        uint8_t h[14];
        size_t hl = mw__ws_hdr_encode(h, true, MW_WS_BINARY, 70000, m ? mask : NULL);
        seed("ws_codec", m ? "len64-masked" : "len64", m, h, hl);
        o.n = 0;
        ws_frame(&o, true, MW_WS_CLOSE, "\x03\xe8" "bye", 5, m);
        seed("ws_codec", m ? "close-masked" : "close", m, o.b, o.n);
        o.n = 0;
        ws_frame(&o, true, MW_WS_PING, "p", 1, m);
        seed("ws_codec", m ? "ping-masked" : "ping", m, o.b, o.n);
    }
    const char utf8[] = "\x81\x0d" "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80xyz";
    seed("ws_codec", "utf8", 0x80, utf8, sizeof utf8 - 1);
}

/* ---- handshake ----------------------------------------------------------------- */

static const char sample_key[] = "dGhlIHNhbXBsZSBub25jZQ==";

static size_t request(char *out, size_t cap, const char *path, const char *proto, const char *extra) {
    mw_ws_opts_t o;
    mw_ws_opts_init(&o);
    o.path = path;
    o.subprotocol = proto;
    o.extra_headers = extra;
    o.origin = extra ? "http://example.com" : NULL;
    ssize_t n = mw__ws_request_build(out, cap, &o, "127.0.0.1:7001", sample_key);
    if (n <= 0) die("request");
    return (size_t)n;
}

static size_t response(char *out, size_t cap, const char *proto) {
    mw__ws_str_t key = {sample_key, sizeof sample_key - 1}, p = {proto, proto ? strlen(proto) : 0};
    ssize_t n = mw__ws_response_build(out, cap, 101, key, p);
    if (n <= 0) die("response");
    return (size_t)n;
}

static void handshakes(void) {
    char b[2048];
    size_t n = request(b, sizeof b, "/", NULL, NULL);
    seed("ws_handshake", "request", 0x00, b, n);
    n = request(b, sizeof b, "/ws?x=1", "chat, superchat", "X-A: b\r\n");
    seed("ws_handshake", "request-path-proto", 0x02 | 0x04, b, n);
    n = response(b, sizeof b, NULL);
    seed("ws_handshake", "response", 0x00, b, n);
    n = response(b, sizeof b, "chat");
    seed("ws_handshake", "response-proto", 0x40, b, n);
    const char lf[] = "HTTP/1.1 101 OK\nUpgrade: websocket\nConnection: upgrade\n\n";
    seed("ws_handshake", "response-lf", 0x80, lf, sizeof lf - 1);
    ssize_t e = mw__ws_response_build(b, sizeof b, 426, (mw__ws_str_t){0}, (mw__ws_str_t){0});
    seed("ws_handshake", "response-426", 0x00, b, (size_t)e);
}

/* ---- WebSocket stream ------------------------------------------------------------ */

static void ws_streams(void) {
    out_t o = {.n = 0};
    char b[2048];
    /* server: the client's request, then masked frames */
    size_t n = request(b, sizeof b, "/", "chat", NULL);
    put(&o, b, n);
    ws_frame(&o, true, MW_WS_TEXT, "{\"a\":1}", 7, true);
    ws_frame(&o, false, MW_WS_BINARY, "abc", 3, true);
    ws_frame(&o, true, MW_WS_PING, "hi", 2, true);
    ws_frame(&o, true, MW_WS_CONT, "def", 3, true);
    ws_frame(&o, true, MW_WS_PONG, "", 0, true);
    ws_frame(&o, true, MW_WS_CLOSE, "\x03\xe8", 2, true);
    seed("ws_stream", "server", 0x01, o.b, o.n);
    seed("ws_stream", "server-chunk1-small", 0x01 | (1 << 2) | (1 << 5) | 0x80, o.b, o.n);
    /* client after the harness's 101: unmasked frames */
    o.n = 0;
    ws_frame(&o, true, MW_WS_TEXT, "hello", 5, false);
    ws_frame(&o, false, MW_WS_TEXT, "\xc3", 1, false);
    ws_frame(&o, true, MW_WS_CONT, "\xa9", 1, false);
    ws_frame(&o, true, MW_WS_PING, "", 0, false);
    ws_frame(&o, true, MW_WS_BINARY, "\x00\x01\x02", 3, false);
    ws_frame(&o, true, MW_WS_CLOSE, "\x03\xe9" "going", 7, false);
    seed("ws_stream", "client", 0x00, o.b, o.n);
    seed("ws_stream", "client-chunk3", 0x00 | (3 << 2) | 0x80, o.b, o.n);
    /* client replaying: the 101 and frames */
    out_t r = {.n = 0};
    n = response(b, sizeof b, NULL);
    put(&r, b, n);
    put(&r, o.b, o.n);
    seed("ws_stream", "client-replay", 0x02, r.b, r.n);
}

/* ---- serdes and the message connection -------------------------------------------- */

static const char *const serdes_names[] = {"text", "fixed", "msgpack", "msgpack-array"};
static const char *const serdes_targets[] = {"serdes_text", "serdes_fixed", "serdes_msgpack",
                                             "serdes_msgpack_array"};

static void serdes(void) {
    for (int i = 0; i < 4; i++) {
        mw_serdes_t sd;
        if (mw_serdes_init(&sd, serdes_names[i], 0) != 0) die("serdes");
        for (uint64_t k = 0; k < 10; k++) {
            test_msg_t m;
            const mw_schema_t *s = test_make_msg(k, &m);
            uint8_t b[4096];
            ssize_t n = mw_serdes_encode(&sd, s, &m, b, sizeof b);
            if (n <= 0) die("encode");
            char name[32];
            snprintf(name, sizeof name, "%s-%02u", s->name, (unsigned)k);
            seed(serdes_targets[i], name, -1, b, (size_t)n);
        }
        heartbeat_t h = {.unused = true};
        uint8_t b[256];
        ssize_t n = heartbeat_encode(&sd, &h, b, sizeof b);
        if (n <= 0) die("encode");
        seed(serdes_targets[i], "heartbeat", -1, b, (size_t)n);
        mw_serdes_fini(&sd);
    }
    const char ws[] = " { \"type\" : \"ping\" , \"sent_ns\" : 1e3 , \"seq\" : 7 } ";
    seed("serdes_text", "ping-spaces", -1, ws, sizeof ws - 1);
}

/* The bytes mw__conn sends for messages 0..5 in serdes i, framing sel's. */
static void conns(void) {
    static const char *const conn_serdes[] = {"fixed", "text", "msgpack", "msgpack-array"};
    static const int frames[] = {MW_FRAME_AUTO, MW_FRAME_U16BE, MW_FRAME_U32BE, MW_FRAME_LINE};
    for (int i = 0; i < 4; i++) {
        for (int fr = 0; fr < 3; fr++) {
            mw_stream_t *a, *b;
            if (mw__pair_new(&a, &b, 65536, 0) != 0) die("pair");
            mw_conn_opts_t o;
            mw__conn_opts_init(&o);
            o.serdes = conn_serdes[i];
            o.frame = frames[fr];
            o.max_msg = 512;
            o.rx_buf = o.tx_buf = 2 * 512 + 64;
            mw__conn_t c;
            mw_err_t err = {0};
            if (mw__conn_init(&c, a, &test_protocol, &o, &err) != 0) die(mw_err_text(&err));
            for (uint64_t k = 0; k < 6; k++) {
                test_msg_t m;
                const mw_schema_t *s = test_make_msg(k, &m);
                if (mw__conn_send(&c, s, &m) != 0) die(mw__conn_last_error(&c));
            }
            uint8_t buf[16384];
            ssize_t n = mw__stream_read(b, buf, sizeof buf);
            if (n <= 0) die("conn read");
            char name[48];
            snprintf(name, sizeof name, "%s-%s", conn_serdes[i], fr ? mw__frame_kind_name(frames[fr]) : "auto");
            seed("conn", name, i | fr << 2, buf, (size_t)n);
            mw__conn_fini(&c);
            mw_stream_free(b);
        }
    }
}

/* ---- recordings ------------------------------------------------------------------- */

static void le(out_t *o, uint64_t v, int n) {
    for (int i = 0; i < n; i++) {
        uint8_t c = (uint8_t)(v >> (8 * i));
        put(o, &c, 1);
    }
}

static void replays(void) {
    out_t o = {.n = 0};
    put(&o, "MWREC\0\1\0", 8);
    le(&o, 1700000000000000000ull, 8);
    le(&o, 14, 2);
    put(&o, "tcp://1.2.3.4:5", 14);
    const char *chunks[] = {"hello", "world!", "\x00\x00\x00\x05" "abcde"};
    const size_t lens[] = {5, 6, 9};
    for (int i = 0; i < 3; i++) {
        le(&o, 1000 + (uint64_t)i, 8);
        le(&o, lens[i], 4);
        put(&o, chunks[i], lens[i]);
    }
    seed("replay", "three-chunks", 0, o.b, o.n);
    seed("replay", "three-chunks-fd-cap1", 4 | 1, o.b, o.n);
    seed("replay", "truncated", 2, o.b, o.n - 3);
    seed("replay", "header-only", 3, o.b, 18 + 14);
}

/* ---- URLs ---------------------------------------------------------------------------- */

static void urls(void) {
    static const char *const u[] = {
        "tcp://127.0.0.1:7001", "tls://example.com:443", "ws://localhost/feed?x=1", "wss://[::1]:9443/ws",
        "ws://h:80", "tcp://[fe80::1%25eth0]:1", "WS://Host.Example:0/a/b/c", "tcp://host",
        "tls://user@h:1", "ws://h/#frag", "tcp://h:65536", "ws://[::1/x",
    };
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) {
        char name[16];
        snprintf(name, sizeof name, "%02zu", i);
        seed("url", name, -1, u[i], strlen(u[i]));
    }
}

/* ---- journal: selector byte, then the records after the header ------------------ */

static void jrec(out_t *o, int kind, uint64_t seq, const char *payload) {
    uint8_t r[24 + 64] = {0};
    uint32_t len = (uint32_t)strlen(payload);
    if (len > 64) die("journal payload");
    memcpy(r, &len, 4);
    memcpy(r + 8, &seq, 8);
    r[16] = (uint8_t)kind;
    memcpy(r + 24, payload, len);
    uint32_t crc = mw__crc32c(0, r + 8, 16 + len);
    memcpy(r + 4, &crc, 4);
    put(o, r, 24 + ((len + 7u) & ~7u));
}

static void journals(void) {
    out_t o = {.n = 0};
    seed("journal", "empty", 0, "", 0);
    jrec(&o, MW__JNL_OUT, 1, "\x01\x00order-1");
    jrec(&o, MW__JNL_IN, 1, "\x02\x00ack");
    jrec(&o, MW__JNL_OUT, 2, "\x01\x00order-2 with a longer payload");
    jrec(&o, MW__JNL_OUT, 3, "x");
    seed("journal", "four-records", 0, o.b, o.n);
    seed("journal", "four-records-exact", 4, o.b, o.n);
    seed("journal", "torn-last", 4, o.b, o.n - 5);
    uint8_t hd[2] = {10, 0x55}; /* header byte 10 overwritten */
    out_t h = {.n = 0};
    put(&h, hd, 2);
    put(&h, o.b, o.n);
    seed("journal", "header-damaged", 8, h.b, h.n);
    out_t g = o;
    static const uint8_t zeros[40] = {0};
    put(&g, zeros, sizeof zeros);
    put(&g, "\x07", 1);
    seed("journal", "garbage-after-end", 0, g.b, g.n);
    out_t t = {.n = 0};
    jrec(&t, MW__JNL_OUT, 1000, "a");
    jrec(&t, MW__JNL_OUT, 1001, "bb");
    jrec(&t, MW__JNL_OUT, 1003, "gap");
    seed("journal", "out-first-1000-gap", 2, t.b, t.n);
    out_t m = {.n = 0};
    for (uint64_t s = 1; s <= 400; s++) {
        jrec(&m, MW__JNL_OUT, s, "o");
        if (s % 50 == 0) jrec(&m, MW__JNL_IN, s, "i");
    }
    seed("journal", "400-records", 0, m.b, m.n);
}

int main(int argc, char **argv) {
    if (argc != 2) die("usage: make_seeds CORPUS_DIR");
    root = argv[1];
    if (mkdir(root, 0755) != 0 && errno != EEXIST) die(root);
    frames();
    ws_codec();
    handshakes();
    ws_streams();
    serdes();
    conns();
    replays();
    urls();
    journals();
    return 0;
}
