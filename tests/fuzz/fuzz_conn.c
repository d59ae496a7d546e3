/* fuzz_conn.c - the message connection (conn_impl.h): framing + serdes over an
 * in-process pair, with the fuzz input as the peer's bytes.
 *
 * Input: one byte (serdes, framing, read chunk size, recv or pump), then the
 * peer's bytes; protocol tests/util/test_proto.h. Every message received is
 * sent back (the echo must be accepted or refused by the encoder). Once the
 * input is read, the peer closes. Properties: no crash, leak or hang; the
 * connection ends with MW_ECLOSED, MW_ETRUNC or a decode/framing error with
 * a text, never MW_EAGAIN after the close; messages delivered <= bytes in. */
#include "fuzz.h"

#include <string.h>

#include "mw_conn.h"
#include "mw_err.h"
#include "mw_stream.h"
#include "test_proto.h"
#include "conn_impl.h"
#include "stream_impl.h"

static const char *const serdes[] = {"fixed", "text", "msgpack", "msgpack-array"};
static const int frames[] = {MW_FRAME_AUTO, MW_FRAME_U16BE, MW_FRAME_U32BE, MW_FRAME_LINE};
static const size_t chunks[] = {0, 1, 3, 17};

typedef struct run {
    mw_stream_t *peer;
    size_t msgs;
} run_t;

static void drain(mw_stream_t *peer) {
    uint8_t tmp[512];
    while (mw__stream_read(peer, tmp, sizeof tmp) > 0) {}
}

static bool on_msg(void *ud, mw__conn_t *c, const mw_schema_t *s, const void *msg) {
    run_t *r = ud;
    r->msgs++;
    int rc = mw__conn_send(c, s, msg);
    FUZZ_CHECK(rc == 0 || rc == MW_EAGAIN || rc == MW_ERANGE || rc == MW_EUTF8 || rc == MW_ECLOSED || rc == MW_ETOOBIG ||
                   rc == MW_EINVAL,
               "echo: %s: %s", mw_errname(rc), mw__conn_last_error(c));
    drain(r->peer);
    return true;
}

/* One step: > 0 progress, MW_EAGAIN, or the end (another negative code). */
static int step(mw__conn_t *c, run_t *r, bool pump, test_msg_t *m) {
    if (pump) {
        bool more;
        ssize_t n = mw__conn_pump(c, on_msg, r, 4, &more);
        return n > 0 ? 1 : n == 0 ? MW_EAGAIN : (int)n;
    }
    const mw_schema_t *s;
    int rc = mw__conn_recv(c, &s, m, sizeof *m);
    if (rc == 0) on_msg(r, c, s, m);
    return rc == 0 ? 1 : rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_in_t in = {data, size};
    unsigned sel = fuzz_byte(&in);
    mw_stream_t *a, *peer;
    FUZZ_CHECK(mw__pair_new(&a, &peer, in.n + 4096, chunks[(sel >> 4) & 3]) == 0, "pair");
    mw_conn_opts_t o;
    mw__conn_opts_init(&o);
    o.serdes = serdes[sel & 3];
    o.frame = frames[(sel >> 2) & 3];
    o.max_msg = (sel & 0x40) ? 64 : 512;
    o.rx_buf = o.tx_buf = 2 * o.max_msg + 64; /* small: compaction is exercised */
    mw__conn_t c;
    mw_err_t err = {0};
    FUZZ_CHECK(mw__conn_init(&c, a, &test_protocol, &o, &err) == 0, "init: %s", mw_err_text(&err));
    if (in.n) FUZZ_CHECK(mw__stream_write(peer, in.p, in.n) == (ssize_t)in.n, "peer write");
    run_t r = {peer, 0};
    test_msg_t *m = malloc(sizeof *m);
    FUZZ_CHECK(m, "malloc");
    bool pump = sel & 0x80, closed = false;
    int rc = 0;
    for (size_t i = 0; i < 2 * in.n + 16; i++) {
        rc = step(&c, &r, pump, m);
        if (rc > 0) continue;
        if (rc != MW_EAGAIN) break;
        FUZZ_CHECK(!closed, "MW_EAGAIN after the peer closed");
        mw__stream_close(peer);
        closed = true;
    }
    FUZZ_CHECK(rc < 0 && rc != MW_EAGAIN, "the connection neither ended nor failed: %d", rc);
    FUZZ_CHECK(rc == MW_ECLOSED || mw__conn_last_error(&c)[0], "no error text for %s", mw_errname(rc));
    FUZZ_CHECK(r.msgs <= in.n, "%zu messages from %zu bytes", r.msgs, in.n);
    free(m);
    mw__conn_fini(&c);
    mw_stream_free(peer);
    return 0;
}
