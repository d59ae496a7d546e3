/* fuzz_serdes.h - the body shared by the serdes targets fuzz_serdes_<name>.c,
 * each of which defines FUZZ_SERDES (the decoder under test) and includes
 * this file.
 *
 * The input is one payload for the decoder, decoded with the protocol of
 * tests/util/test_proto.h (every field kind). Round-trip property: whatever
 * decodes re-encodes in every serdes (text, fixed, msgpack, msgpack-array;
 * text refuses only non-finite doubles, with MW_ERANGE), decodes back to
 * the same struct field by field (doubles bit for bit), and encodes again
 * to the same bytes. A decode error is one of the documented codes, with a
 * sentence in the serdes' error text. */
#ifndef MW_FUZZ_SERDES_H
#define MW_FUZZ_SERDES_H

#include "fuzz.h"

#include <math.h>
#include <string.h>

#include "mw_err.h"
#include "mw_serdes.h"
#include "test_proto.h"
#include "serdes_impl.h"

static const char *const fz_names[] = {"text", "fixed", "msgpack", "msgpack-array"};
#define FZ_N 4

static mw_serdes_t fz_sd[FZ_N];
static uint8_t *fz_msg[2];
static bool fz_ready;

static void fz_init(void) {
    if (fz_ready) return;
    for (int i = 0; i < FZ_N; i++)
        FUZZ_CHECK(mw_serdes_init(&fz_sd[i], fz_names[i], 0) == 0, "init %s", fz_names[i]);
    /* Exactly the protocol's size, so a write past it is caught. */
    for (int i = 0; i < 2; i++) FUZZ_CHECK((fz_msg[i] = malloc(test_protocol.max_size)), "malloc");
    fz_ready = true;
}

static int fz_index(const char *name) {
    for (int i = 0; i < FZ_N; i++)
        if (strcmp(name, fz_names[i]) == 0) return i;
    FUZZ_CHECK(0, "unknown serdes %s", name);
    return 0;
}

static bool fz_decode_error(ssize_t r) {
    return r == MW_ETRUNC || r == MW_EPROTO || r == MW_ETAG || r == MW_EFIELD || r == MW_EMISSING ||
           r == MW_ETYPE || r == MW_ERANGE || r == MW_ETOOBIG || r == MW_EUTF8 || r == MW_ETRAILING;
}

static bool fz_has_nonfinite(const mw_schema_t *s, const void *m) {
    for (unsigned i = 0; i < s->nfields; i++) {
        const mw_field_t *f = &s->fields[i];
        double d;
        if (f->kind != MW_FK_F64) continue;
        memcpy(&d, (const char *)m + f->offset, sizeof d);
        if (!isfinite(d)) return true;
    }
    return false;
}

/* Field by field; doubles bit for bit (any NaN equals any NaN: formats may
 * not keep a payload). */
static void fz_same(const mw_schema_t *s, const void *a, const void *b, const char *via) {
    for (unsigned i = 0; i < s->nfields; i++) {
        const mw_field_t *f = &s->fields[i];
        const char *pa = (const char *)a + f->offset, *pb = (const char *)b + f->offset;
        if (f->kind == MW_FK_F64) {
            double x, y;
            memcpy(&x, pa, 8);
            memcpy(&y, pb, 8);
            if (isnan(x) && isnan(y)) continue;
        }
        FUZZ_CHECK(memcmp(pa, pb, f->size) == 0, "%s.%s differs after a round trip through %s", s->name,
                   f->name, via);
    }
}

static void fz_round_trip(const mw_schema_t *s, const void *m) {
    size_t cap = 0;
    for (int i = 0; i < FZ_N; i++) {
        size_t n = mw__serdes_max_len(&fz_sd[i], s);
        if (n > cap) cap = n;
    }
    uint8_t *out = malloc(cap), *again = malloc(cap);
    FUZZ_CHECK(out && again, "malloc");
    for (int i = 0; i < FZ_N; i++) {
        mw_serdes_t *sd = &fz_sd[i];
        ssize_t n = mw_serdes_encode(sd, s, m, out, cap);
        if (i == 0 && fz_has_nonfinite(s, m)) {
            FUZZ_CHECK(n == MW_ERANGE, "text encoded a non-finite double: %zd", n);
            continue;
        }
        FUZZ_CHECK(n > 0, "%s cannot encode what was decoded: %s (%s)", fz_names[i], mw_errname((int)n),
                   mw_serdes_last_error(sd));
        FUZZ_CHECK((size_t)n <= mw__serdes_max_len(sd, s), "%s wrote %zd over its max_len", fz_names[i], n);
        const mw_schema_t *s2 = NULL;
        memset(fz_msg[1], 0xA5, test_protocol.max_size);
        ssize_t r = mw_serdes_decode(sd, out, (size_t)n, &test_protocol, &s2, fz_msg[1], test_protocol.max_size);
        FUZZ_CHECK(r == n, "%s cannot decode its own encoding: %s (%s): %.*s", fz_names[i], mw_errname((int)r),
                   mw_serdes_last_error(sd), (int)n, (const char *)out);
        FUZZ_CHECK(s2 && s2->tag == s->tag, "%s decoded another type", fz_names[i]);
        fz_same(s, m, fz_msg[1], fz_names[i]);
        ssize_t n2 = mw_serdes_encode(sd, s, fz_msg[1], again, cap);
        FUZZ_CHECK(n2 == n && memcmp(out, again, (size_t)n) == 0, "%s encodes the round-tripped struct differently",
                   fz_names[i]);
    }
    free(out);
    free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_init();
    mw_serdes_t *sd = &fz_sd[fz_index(FUZZ_SERDES)];
    const mw_schema_t *s = NULL;
    ssize_t r = mw_serdes_decode(sd, data, size, &test_protocol, &s, fz_msg[0], test_protocol.max_size);
    if (r < 0) {
        FUZZ_CHECK(fz_decode_error(r), "undocumented decode error %s", mw_errname((int)r));
        FUZZ_CHECK(mw_serdes_last_error(sd)[0], "no error text for %s", mw_errname((int)r));
        return 0;
    }
    FUZZ_CHECK(r == (ssize_t)size && s, "decode returned %zd for %zu bytes", r, size);
    fz_round_trip(s, fz_msg[0]);
    return 0;
}

#endif
