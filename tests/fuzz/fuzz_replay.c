/* fuzz_replay.c - the record/replay reader (mw_record.h), from memory and
 * from a descriptor.
 *
 * Input: one byte (read buffer size, memory or memfd), then the recording
 * file. Properties: the header is accepted or refused with MW_EPROTO and a
 * text naming the offset; a replay hands out at most the record bytes the
 * file holds, never more than the caller's buffer, and ends with MW_ECLOSED
 * or MW_EPROTO, which then stay; writes are discarded and counted. */
#include "fuzz.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mw_err.h"
#include "mw_record.h"
#include "stream_impl.h"

static const size_t caps[] = {4096, 1, 7, 64};

static int open_fd(mw_stream_t **s, const uint8_t *p, size_t n, mw_err_t *err) {
    int fd = memfd_create("fuzz_replay", MFD_CLOEXEC);
    FUZZ_CHECK(fd >= 0, "memfd_create");
    FUZZ_CHECK(n == 0 || write(fd, p, n) == (ssize_t)n, "memfd write");
    return mw_replay_open_fd(s, fd, err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_in_t in = {data, size};
    unsigned sel = fuzz_byte(&in);
    mw_stream_t *s = NULL;
    mw_err_t err = {0};
    int rc = (sel & 4) ? open_fd(&s, in.p, in.n, &err) : mw_replay_open_mem(&s, in.p, in.n, &err);
    if (rc != 0) {
        FUZZ_CHECK(rc == MW_EPROTO && !s, "open: %s", mw_errname(rc));
        FUZZ_CHECK(strstr(mw_err_text(&err), " at offset "), "text \"%s\"", mw_err_text(&err));
        return 0;
    }
    FUZZ_CHECK(in.n >= 18, "a header in %zu bytes", in.n);
    size_t cap = caps[sel & 3];
    uint8_t *buf = malloc(cap);
    FUZZ_CHECK(buf, "malloc");
    size_t total = 0;
    ssize_t r = 0;
    for (size_t i = 0; i <= in.n; i++) {
        r = mw__stream_read(s, buf, cap);
        if (r <= 0) break;
        FUZZ_CHECK((size_t)r <= cap, "read %zd into %zu", r, cap);
        total += (size_t)r;
    }
    FUZZ_CHECK(r == MW_ECLOSED || r == MW_EPROTO, "replay ended with %zd", r);
    FUZZ_CHECK(total <= in.n - 18, "%zu bytes out of a %zu-byte file", total, in.n);
    if (r == MW_EPROTO) FUZZ_CHECK(strstr(mw_stream_last_error(s), " at offset "), "text");
    FUZZ_CHECK(mw__stream_read(s, buf, cap) == r, "end is not sticky");
    FUZZ_CHECK(mw__stream_write(s, "abc", 3) == 3 && mw_replay_bytes_discarded(s) == 3, "write");
    free(buf);
    mw_stream_free(s);
    return 0;
}
