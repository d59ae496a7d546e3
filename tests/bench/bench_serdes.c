/* bench_serdes.c - encode+decode round trips per second of each serdes on a
 * typical 64-byte order message, beside msgpack-c's own plain usage on the
 * same fields as the reference; then text with one 4 KiB BYTES field.
 *
 *   bench_serdes [scale] [serdes]    scale 1: runs of ~0.5 CPU-s; a serdes
 *                                    name: only it (and the reference)
 *
 * Each measurement runs N messages, N chosen so it lasts about 0.5 s (scale
 * with argv[1], e.g. `bench_serdes 0.2`), is repeated 5 times and the median
 * is reported. The 5 rounds interleave the serdes (round 1 of each, then
 * round 2, ...), so the ratios compare runs made at the same moments. Time is
 * the thread's CPU time, so other processes on the core do not count; the
 * wall/CPU ratio printed at the end says how busy the machine was (1.00: the
 * numbers are also wall-clock throughput). Round trip: set order_id, encode
 * into a buffer, decode it back, check order_id. Encode only: set order_id,
 * encode. Decode only: decode one encoded message again and again. Run
 * pinned to one core (`make bench-serdes` does taskset -c 1).
 *
 * The reference does what a msgpack-c user writes by hand: msgpack_sbuffer +
 * msgpack_packer to pack the map, msgpack_unpacked + msgpack_unpack_next to
 * parse it (a fresh zone per message: that is how msgpack_unpack_next works),
 * then reads the fields from the msgpack_object with type checks but without
 * the range, UTF-8, duplicate and missing-field checks the serdes make.
 */
#include "mw_clock.h"
#include "mw_serdes.h"

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ORDER_FIELDS(F)        \
    F(U64, order_id)           \
    F(U64, client_id)          \
    F(CHARS, symbol, 8)        \
    F(I64, price)              \
    F(U32, qty)                \
    F(ENUM, side, 2)           \
    F(ENUM, ord_type, 4)       \
    F(ENUM, tif, 4)            \
    F(BOOL, ioc)               \
    F(U64, ts)                 \
    F(F64, stop_px)            \
    F(U32, account)            \
    F(U16, venue)
MW_MESSAGE(order, 1, ORDER_FIELDS)
#define BLOB_FIELDS(F) \
    F(U64, id)         \
    F(BYTES, data, 4096)
MW_MESSAGE(blob, 2, BLOB_FIELDS)
#define BENCH_MSGS(M) M(order) M(blob)
MW_PROTOCOL(bench, BENCH_MSGS)

_Static_assert(order_FIXED_SIZE == 64, "the benchmark message is 64 bytes in the fixed layout");

#define REPEATS 5
#define WIRE_CAP 1024

enum { RT, ENC, DEC, NKINDS }; /* encode+decode, encode only, decode only */

typedef struct codec {
    const char *name;
    bool ref; /* msgpack-c plain usage, not a serdes */
    mw_serdes_t sd;
    uint8_t out[WIRE_CAP];
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
    msgpack_unpacked up;
} codec_t;

/* ---- the reference: msgpack-c by hand ------------------------------------ */

static void ref_key(msgpack_packer *pk, const char *k) {
    size_t n = strlen(k);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, k, n);
}

static void ref_pack(msgpack_packer *pk, const order_t *m) {
    size_t symlen = strnlen(m->symbol, sizeof m->symbol);
    msgpack_pack_map(pk, 14);
    ref_key(pk, "type"), ref_key(pk, "order");
    ref_key(pk, "order_id"), msgpack_pack_uint64(pk, m->order_id);
    ref_key(pk, "client_id"), msgpack_pack_uint64(pk, m->client_id);
    ref_key(pk, "symbol"), msgpack_pack_str(pk, symlen), msgpack_pack_str_body(pk, m->symbol, symlen);
    ref_key(pk, "price"), msgpack_pack_int64(pk, m->price);
    ref_key(pk, "qty"), msgpack_pack_uint32(pk, m->qty);
    ref_key(pk, "side"), msgpack_pack_uint8(pk, m->side);
    ref_key(pk, "ord_type"), msgpack_pack_uint8(pk, m->ord_type);
    ref_key(pk, "tif"), msgpack_pack_uint8(pk, m->tif);
    ref_key(pk, "ioc"), m->ioc ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    ref_key(pk, "ts"), msgpack_pack_uint64(pk, m->ts);
    ref_key(pk, "stop_px"), msgpack_pack_double(pk, m->stop_px);
    ref_key(pk, "account"), msgpack_pack_uint32(pk, m->account);
    ref_key(pk, "venue"), msgpack_pack_uint16(pk, m->venue);
}

static bool key_is(const msgpack_object *k, const char *name) {
    size_t n = strlen(name);
    return k->via.str.size == n && memcmp(k->via.str.ptr, name, n) == 0;
}

/* Reads one unsigned field; false if the value is not a non-negative int. */
static bool ref_uint(const msgpack_object *v, uint64_t *out) {
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER) return false;
    *out = v->via.u64;
    return true;
}

static bool ref_field(order_t *m, const msgpack_object *k, const msgpack_object *v) {
    uint64_t u = 0;
    if (key_is(k, "type")) return v->type == MSGPACK_OBJECT_STR && v->via.str.size == 5;
    if (key_is(k, "order_id")) return ref_uint(v, &m->order_id);
    if (key_is(k, "client_id")) return ref_uint(v, &m->client_id);
    if (key_is(k, "symbol")) {
        if (v->type != MSGPACK_OBJECT_STR || v->via.str.size > sizeof m->symbol) return false;
        memcpy(m->symbol, v->via.str.ptr, v->via.str.size);
        return true;
    }
    if (key_is(k, "price")) {
        if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) return m->price = v->via.i64, true;
        return ref_uint(v, &u) && (m->price = (int64_t)u, true);
    }
    if (key_is(k, "qty")) return ref_uint(v, &u) && (m->qty = (uint32_t)u, true);
    if (key_is(k, "side")) return ref_uint(v, &u) && (m->side = (uint8_t)u, true);
    if (key_is(k, "ord_type")) return ref_uint(v, &u) && (m->ord_type = (uint8_t)u, true);
    if (key_is(k, "tif")) return ref_uint(v, &u) && (m->tif = (uint8_t)u, true);
    if (key_is(k, "ioc")) return v->type == MSGPACK_OBJECT_BOOLEAN && (m->ioc = v->via.boolean, true);
    if (key_is(k, "ts")) return ref_uint(v, &m->ts);
    if (key_is(k, "stop_px")) return v->type == MSGPACK_OBJECT_FLOAT64 && (m->stop_px = v->via.f64, true);
    if (key_is(k, "account")) return ref_uint(v, &u) && (m->account = (uint32_t)u, true);
    if (key_is(k, "venue")) return ref_uint(v, &u) && (m->venue = (uint16_t)u, true);
    return false;
}

static int ref_unpack(msgpack_unpacked *up, const uint8_t *in, size_t len, order_t *m) {
    size_t off = 0;
    if (msgpack_unpack_next(up, (const char *)in, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len)
        return MW_EPROTO;
    const msgpack_object *o = &up->data;
    if (o->type != MSGPACK_OBJECT_MAP) return MW_ETYPE;
    memset(m, 0, sizeof *m);
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR || !ref_field(m, &kv->key, &kv->val)) return MW_ETYPE;
    }
    return (int)len;
}

/* ---- one interface over both --------------------------------------------- */

/* Encodes *m; returns the wire bytes (the codec's buffer) and sets *len, or
 * NULL with *len holding the error code. */
static const uint8_t *encode(codec_t *c, const order_t *m, ssize_t *len) {
    if (c->ref) {
        msgpack_sbuffer_clear(&c->sbuf);
        ref_pack(&c->pk, m);
        *len = (ssize_t)c->sbuf.size;
        return (const uint8_t *)c->sbuf.data;
    }
    *len = order_encode(&c->sd, m, c->out, sizeof c->out);
    return *len > 0 ? c->out : NULL;
}

static ssize_t decode(codec_t *c, const uint8_t *in, size_t len, order_t *m) {
    if (c->ref) return ref_unpack(&c->up, in, len, m);
    const mw_schema_t *s;
    return mw_serdes_decode(&c->sd, in, len, &bench_protocol, &s, m, sizeof *m);
}

static void die(codec_t *c, const char *what, ssize_t rc) {
    fprintf(stderr, "bench_serdes: %s: %s failed: %s (%s)\n", c->name, what, mw_errname((int)rc),
            c->ref ? "msgpack-c" : mw_serdes_last_error(&c->sd));
    exit(1);
}

static volatile uint64_t sink;
static uint64_t wall_total, cpu_total;

static uint64_t cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * MW_NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* Runs n iterations of kind; returns the CPU ns they took. */
static uint64_t run(codec_t *c, int kind, uint64_t n, const order_t *tmpl) {
    order_t m = *tmpl, back;
    ssize_t len;
    uint8_t fixed_wire[WIRE_CAP];
    const uint8_t *w = encode(c, &m, &len);
    memcpy(fixed_wire, w, (size_t)len); /* the reference reuses its buffer */
    uint64_t acc = 0, w0 = mw_now_ns(), t0 = cpu_ns();
    switch (kind) {
    case RT:
        for (uint64_t i = 0; i < n; i++) {
            m.order_id = i;
            if (!(w = encode(c, &m, &len))) die(c, "encode", len);
            ssize_t rc = decode(c, w, (size_t)len, &back);
            if (rc != len || back.order_id != i) die(c, "round trip", rc);
        }
        break;
    case ENC:
        for (uint64_t i = 0; i < n; i++) {
            m.order_id = i;
            if (!(w = encode(c, &m, &len))) die(c, "encode", len);
            acc += (uint64_t)len + w[len - 1];
        }
        break;
    case DEC:
        for (uint64_t i = 0; i < n; i++) {
            ssize_t rc = decode(c, fixed_wire, (size_t)len, &back);
            if (rc != len) die(c, "decode", rc);
            acc += back.qty;
        }
        break;
    }
    uint64_t dt = cpu_ns() - t0;
    wall_total += mw_now_ns() - w0, cpu_total += dt;
    sink += acc;
    return dt;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Iterations of kind that take about target_ns. */
static uint64_t calibrate(codec_t *c, int kind, const order_t *m, double target_ns) {
    uint64_t n = 1000, dt;
    while ((dt = run(c, kind, n, m)) < 50 * MW_NS_PER_MS) n *= 2;
    return (uint64_t)((double)n * target_ns / (double)dt) + 1;
}

/* ---- text with a 4 KiB BYTES field: hex in bulk, each way ---------------- */

static blob_t blob_in, blob_out;
static uint8_t blob_wire[16384];

static uint64_t run_blob(mw_serdes_t *sd, int kind, uint64_t n, size_t *wire) {
    ssize_t len = blob_encode(sd, &blob_in, blob_wire, sizeof blob_wire);
    if (len <= 0) {
        fprintf(stderr, "bench_serdes: blob: encode failed: %s\n", mw_serdes_last_error(sd));
        exit(1);
    }
    *wire = (size_t)len;
    uint64_t acc = 0, w0 = mw_now_ns(), t0 = cpu_ns();
    for (uint64_t i = 0; i < n; i++) {
        const mw_schema_t *s;
        if (kind == ENC) {
            blob_in.id = i;
            acc += (uint64_t)blob_encode(sd, &blob_in, blob_wire, sizeof blob_wire);
        } else if (mw_serdes_decode(sd, blob_wire, (size_t)len, &bench_protocol, &s, &blob_out,
                                    sizeof blob_out) != len) {
            fprintf(stderr, "bench_serdes: blob: decode failed: %s\n", mw_serdes_last_error(sd));
            exit(1);
        }
        acc += blob_out.data[i % sizeof blob_out.data];
    }
    uint64_t dt = cpu_ns() - t0;
    wall_total += mw_now_ns() - w0, cpu_total += dt;
    sink += acc;
    return dt;
}

/* Median ns per message of encode (ENC) or decode (DEC) of the blob. */
static double measure_blob(mw_serdes_t *sd, int kind, double target_ns, size_t *wire) {
    uint64_t n = 100, dt;
    while ((dt = run_blob(sd, kind, n, wire)) < 50 * MW_NS_PER_MS) n *= 2;
    n = (uint64_t)((double)n * target_ns / (double)dt) + 1;
    double ns[REPEATS];
    for (int r = 0; r < REPEATS; r++) ns[r] = (double)run_blob(sd, kind, n, wire) / (double)n;
    qsort(ns, REPEATS, sizeof ns[0], cmp_double);
    return ns[REPEATS / 2];
}

static void bench_blob(double target_ns) {
    mw_serdes_t sd;
    if (mw_serdes_init(&sd, "text", 0) != 0) exit(1);
    for (size_t i = 0; i < sizeof blob_in.data; i++) blob_in.data[i] = (uint8_t)(i * 131 + 7);
    size_t wire = 0;
    double enc = measure_blob(&sd, ENC, target_ns, &wire);
    double dec = measure_blob(&sd, DEC, target_ns, &wire);
    if (memcmp(blob_in.data, blob_out.data, sizeof blob_in.data) != 0) {
        fprintf(stderr, "bench_serdes: blob: data differs after a round trip\n");
        exit(1);
    }
    fprintf(stderr, "  measured text 4 KiB BYTES\n");
    printf("text, one 4 KiB BYTES field (hex): %zu wire bytes; MB/s = 10^6 wire bytes per CPU-s\n",
           wire);
    printf("%-16s %12s %12s %12s %12s\n", "", "enc ns", "enc MB/s", "dec ns", "dec MB/s");
    printf("%-16s %12.0f %12.0f %12.0f %12.0f\n", "text 4 KiB", enc, (double)wire / enc * 1e3, dec,
           (double)wire / dec * 1e3);
    mw_serdes_fini(&sd);
}

/* One encode+decode, every field compared: proves the codec is correct
 * before it is timed. Returns the wire size. */
static ssize_t check(codec_t *c, const order_t *m) {
    ssize_t len;
    const uint8_t *w = encode(c, m, &len);
    if (!w) die(c, "encode", len);
    order_t back;
    memset(&back, 0, sizeof back);
    ssize_t rc = decode(c, w, (size_t)len, &back);
    if (rc != len) die(c, "decode", rc);
    const mw_schema_t *s = order_schema();
    for (unsigned i = 0; i < s->nfields; i++) {
        const mw_field_t *f = &s->fields[i];
        if (memcmp((const char *)m + f->offset, (const char *)&back + f->offset, f->size) != 0) {
            fprintf(stderr, "bench_serdes: %s: field %s differs after a round trip\n", c->name, f->name);
            exit(1);
        }
    }
    return len;
}

static void codec_open(codec_t *c, const char *name) {
    memset(c, 0, sizeof *c);
    c->name = name;
    if (strcmp(name, "msgpack-c plain") == 0) {
        c->ref = true;
        msgpack_sbuffer_init(&c->sbuf);
        msgpack_packer_init(&c->pk, &c->sbuf, msgpack_sbuffer_write);
        msgpack_unpacked_init(&c->up);
        return;
    }
    int rc = mw_serdes_init(&c->sd, name, 0);
    if (rc != 0) die(c, "init", rc);
}

static void codec_close(codec_t *c) {
    if (c->ref) {
        msgpack_sbuffer_destroy(&c->sbuf);
        msgpack_unpacked_destroy(&c->up);
    } else {
        mw_serdes_fini(&c->sd);
    }
}

int main(int argc, char **argv) {
    static const char *const names[] = {"msgpack-c plain", "text", "fixed", "msgpack", "msgpack-array"};
    enum { NC = sizeof names / sizeof names[0] };
    double scale = argc > 1 ? atof(argv[1]) : 1.0;
    if (scale <= 0) scale = 1.0;
    double target_ns = 0.5e9 * scale;
    const char *only = argc > 2 ? argv[2] : NULL; /* one serdes (and the reference) */

    order_t m;
    memset(&m, 0, sizeof m);
    m.order_id = 1000001, m.client_id = 42, m.price = 1234500, m.qty = 300;
    memcpy(m.symbol, "AAPL", 4);
    m.side = 1, m.ord_type = 2, m.tif = 0, m.ioc = true;
    m.ts = UINT64_C(1718000000123456789), m.stop_px = 123.25, m.account = 77, m.venue = 3;

    /* Rounds interleave the codecs, so a busy spell on the core hits all of
     * them alike; each figure is the median of its REPEATS rounds. */
    static codec_t c[NC];
    bool on[NC];
    uint64_t iters[NC][NKINDS];
    double ns[NC][NKINDS], runs[NC][NKINDS][REPEATS];
    ssize_t wire[NC];
    for (int i = 0; i < NC; i++) {
        on[i] = i == 0 || !only || strcmp(only, names[i]) == 0;
        if (!on[i]) continue;
        codec_open(&c[i], names[i]);
        wire[i] = check(&c[i], &m);
        for (int k = 0; k < NKINDS; k++) iters[i][k] = calibrate(&c[i], k, &m, target_ns);
    }
    for (int r = 0; r < REPEATS; r++)
        for (int i = 0; i < NC; i++)
            for (int k = 0; on[i] && k < NKINDS; k++)
                runs[i][k][r] = (double)run(&c[i], k, iters[i][k], &m) / (double)iters[i][k];
    for (int i = 0; i < NC; i++) {
        for (int k = 0; on[i] && k < NKINDS; k++) {
            qsort(runs[i][k], REPEATS, sizeof runs[i][k][0], cmp_double);
            ns[i][k] = runs[i][k][REPEATS / 2];
        }
        if (on[i]) codec_close(&c[i]);
    }

    printf("serdes round trip, %d-byte order message (fixed layout), median of %d interleaved runs of ~%.2f CPU-s\n",
           (int)order_FIXED_SIZE, REPEATS, target_ns / 1e9);
    printf("%-16s %6s %14s %12s %12s %10s %10s\n", "serdes", "wire B", "enc+dec ns", "msgs/s",
           "vs msgpack-c", "enc ns", "dec ns");
    for (int i = 0; i < NC; i++)
        if (on[i])
            printf("%-16s %6zd %14.1f %12.0f %11.2fx %10.1f %10.1f\n", names[i], wire[i], ns[i][RT],
                   1e9 / ns[i][RT], ns[0][RT] / ns[i][RT], ns[i][ENC], ns[i][DEC]);
    printf("vs msgpack-c: msgpack-c plain enc+dec ns / this enc+dec ns (> 1 is faster)\n\n");
    if (!only || strcmp(only, "text") == 0) bench_blob(target_ns);
    printf("wall/CPU time %.2f%s\n", (double)wall_total / (double)cpu_total,
           (double)wall_total > 1.1 * (double)cpu_total ? ": the core was shared, expect noise" : "");
    return 0;
}
