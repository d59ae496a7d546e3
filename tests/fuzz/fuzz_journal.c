/* fuzz_journal.c - opening a session journal whose records are arbitrary
 * bytes (core/journal_impl.h).
 *
 * Input: one selector byte, then the body of the file: the bytes after a
 * valid 4096-byte header written here. Selector bits 0-1: the header's
 * out_first (1, 2, 1000, 2^40); bit 2: the file keeps the input's exact
 * length (else it is padded with zeros to a page); bit 3: the next input
 * byte names a header byte (0..63, or out_first) to overwrite with the one
 * after it.
 *
 * Properties: a damaged header is MW_ECORRUPT (checksummed part) or opens;
 * a valid header always opens; recovery cuts at an 8-byte boundary within
 * the body, where the records read back end; every OUT record from
 * out_first on reads back in order with no gap; replay sees the same
 * records; appends after recovery work and a reopen finds nothing more to
 * cut. Files live in one temporary directory per process, removed at exit. */
#include "fuzz.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal_impl.h"
#include "mw_err.h"

#define HDR 4096u

static char dir[64];
static char path[128];

static void cleanup(void) {
    unlink(path);
    rmdir(dir);
}

static void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static void write_file(const uint8_t *hdr, const uint8_t *body, size_t n, bool exact) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    FUZZ_CHECK(fd >= 0, "create %s", path);
    FUZZ_CHECK(write(fd, hdr, HDR) == (ssize_t)HDR, "write header");
    FUZZ_CHECK(n == 0 || write(fd, body, n) == (ssize_t)n, "write body");
    if (!exact) FUZZ_CHECK(ftruncate(fd, (off_t)(HDR + ((n + 4095) & ~(size_t)4095))) == 0, "pad");
    close(fd);
}

typedef struct count {
    uint64_t n, out;
} count_t;

static bool on_rec(void *ud, int kind, uint64_t seq, const uint8_t *p, uint32_t len) {
    (void)seq;
    (void)p;
    count_t *c = ud;
    FUZZ_CHECK(kind == MW__JNL_OUT || kind == MW__JNL_IN, "kind %d", kind);
    FUZZ_CHECK(len > 0, "len 0");
    c->n++;
    c->out += kind == MW__JNL_OUT;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/mw_fuzz_journal_XXXXXX");
        FUZZ_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
        snprintf(path, sizeof path, "%s/fz.000001.mwj", dir);
        atexit(cleanup);
    }
    fuzz_in_t in = {data, size};
    unsigned sel = fuzz_byte(&in);
    static const uint64_t firsts[] = {1, 2, 1000, (uint64_t)1 << 40};
    uint64_t out_first = firsts[sel & 3];
    uint8_t hdr[HDR] = {0};
    memcpy(hdr, "MWJ1", 4);
    hdr[4] = 1;
    wr64(hdr + 8, 1);
    memcpy(hdr + 24, "fz", 2);
    uint32_t crc = mw__crc32c(0, hdr, 56);
    memcpy(hdr + 56, &crc, 4);
    wr64(hdr + 64, 5);
    wr64(hdr + 72, 6);
    wr64(hdr + 80, out_first);
    int damaged = -1;
    if (sel & 8) {
        unsigned at = fuzz_byte(&in) % 88, x = fuzz_byte(&in);
        if (hdr[at] != (uint8_t)x) damaged = (int)at;
        hdr[at] = (uint8_t)x;
        memcpy(&out_first, hdr + 80, 8);
    }
    write_file(hdr, in.p, in.n, sel & 4);

    mw__jnl_opts_t o = {.dir = dir, .session = "fz", .grow_bytes = 4096};
    mw__jnl_t *j = NULL;
    mw_err_t err = {0};
    int rc = mw__jnl_open(&j, &o, &err);
    if (damaged >= 0 && damaged < 60) /* bytes 0..55 and their crc */
        FUZZ_CHECK(rc == MW_ECORRUPT, "damaged header byte %d opened: %s", damaged, mw_errname(rc));
    if (rc != 0) {
        FUZZ_CHECK(rc == MW_ECORRUPT && damaged >= 0 && (damaged < 60 || damaged >= 80), "open: %s: %s",
                   mw_errname(rc), mw_err_text(&err));
        FUZZ_CHECK(strstr(err.text, "offset 0"), "text %s", err.text);
        FUZZ_CHECK(mw__jnl_replay(dir, "fz", on_rec, NULL, &err) == MW_ECORRUPT, "replay of a bad header");
        unlink(path);
        return 0;
    }
    FUZZ_CHECK(out_first >= 1, "out_first 0 accepted");
    mw__jnl_stats_t st;
    mw__jnl_stats(j, &st);
    int64_t cut = mw__jnl_recovered(j);
    if (cut >= 0) {
        FUZZ_CHECK(cut >= HDR && cut <= (int64_t)(HDR + in.n) && cut % 8 == 0, "cut at %lld", (long long)cut);
        FUZZ_CHECK((uint64_t)cut == HDR + st.bytes, "cut %lld, records end at %llu", (long long)cut,
                   (unsigned long long)(HDR + st.bytes));
    } else {
        FUZZ_CHECK(HDR + st.bytes <= HDR + ((in.n + 4095) & ~(size_t)4095), "records past the body");
    }
    FUZZ_CHECK(mw__jnl_out_first(j) == out_first, "out_first");
    uint64_t next = mw__jnl_out_next(j);
    FUZZ_CHECK(next >= out_first, "out_next %llu", (unsigned long long)next);
    if (damaged < 64 || damaged >= 72) FUZZ_CHECK(mw__jnl_in_next(j) == 5, "in_next");

    /* every OUT record, in order, from every index step */
    mw__jnl_cur_t cur;
    FUZZ_CHECK(mw__jnl_seek(j, out_first, &cur) == 0, "seek out_first");
    uint64_t want = out_first, seq;
    const uint8_t *p;
    uint32_t len;
    while (mw__jnl_next(j, &cur, &seq, &p, &len) == 0) {
        FUZZ_CHECK(seq == want, "record %llu where %llu", (unsigned long long)seq, (unsigned long long)want);
        FUZZ_CHECK(len > 0 && p != NULL, "payload");
        want++;
    }
    FUZZ_CHECK(want == next, "read up to %llu of %llu", (unsigned long long)want, (unsigned long long)next);
    FUZZ_CHECK(mw__jnl_seek(j, next + 1, &cur) == MW_ERANGE, "seek past the end");
    if (out_first > 1) FUZZ_CHECK(mw__jnl_seek(j, out_first - 1, &cur) == MW_ERANGE, "seek before the start");

    count_t c = {0, 0};
    FUZZ_CHECK(mw__jnl_replay(dir, "fz", on_rec, &c, &err) == 0, "replay: %s", err.text);
    FUZZ_CHECK(c.n == st.records && c.out == next - out_first, "replay saw %llu records", (unsigned long long)c.n);

    FUZZ_CHECK(mw__jnl_append(j, MW__JNL_OUT, next, "abc", 3) == 0, "append: %s", mw__jnl_last_error(j));
    FUZZ_CHECK(mw__jnl_append(j, MW__JNL_IN, 77, "de", 2) == 0, "append in: %s", mw__jnl_last_error(j));
    mw__jnl_close(j);
    j = NULL;
    FUZZ_CHECK(mw__jnl_open(&j, &o, &err) == 0, "reopen: %s", err.text);
    FUZZ_CHECK(mw__jnl_recovered(j) == -1, "second cut at %lld", (long long)mw__jnl_recovered(j));
    FUZZ_CHECK(mw__jnl_out_next(j) == next + 1, "out_next after reopen");
    mw__jnl_close(j);
    unlink(path);
    return 0;
}
