/* test_journal.c - the session journal (core/journal_impl.h): crc32c test
 * vectors; session ids; append, reopen, seek and read back; in_next and
 * in_seen across a reopen; a torn or corrupt tail cut at the last good
 * record (truncated mid-record, a flipped payload byte, a garbage length,
 * an out-of-sequence record, bytes after the end) with a warning naming
 * the byte offset, and appending continues there; bad headers and other
 * sessions' files refused; reset with and without the old file; fsync
 * counts per policy (a fake clock for INTERVAL); a process killed with
 * SIGKILL while appending loses nothing it reported; a full file system
 * (RLIMIT_FSIZE) is MW_ESYS from append, never a signal; read-only replay;
 * no allocation per append.
 *
 * Every test works in its own mkdtemp directory, removed afterwards. */
#include "mw_test.h"

#include "journal_impl.h"
#include "mw_clock.h"
#include "mw_err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define HDR 4096u
#define PAYLOAD_MAX 128

/* ---- fixture: a fresh directory per test -------------------------------------- */

typedef struct fx {
    char dir[64];
} fx_t;

static int fx_setup(void **state) {
    fx_t *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/mw_journal_XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int fx_teardown(void **state) {
    fx_t *f = *state;
    DIR *d = opendir(f->dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2]))) continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", f->dir, de->d_name);
            unlink(p);
        }
        closedir(d);
    }
    int rc = rmdir(f->dir);
    free(f);
    return rc;
}

static mw__jnl_opts_t opts(const fx_t *f, const char *session) {
    return (mw__jnl_opts_t){.dir = f->dir, .session = session};
}

static mw__jnl_t *open_ok(const mw__jnl_opts_t *o) {
    mw__jnl_t *j = NULL;
    mw_err_t err = {0};
    int rc = mw__jnl_open(&j, o, &err);
    if (rc != 0) fail_msg("mw__jnl_open: %s: %s", mw_errname(rc), mw_err_text(&err));
    assert_non_null(j);
    return j;
}

static void path_of(char *buf, size_t cap, const fx_t *f, const char *session, unsigned epoch) {
    snprintf(buf, cap, "%s/%s.%06u.mwj", f->dir, session, epoch);
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* A payload that depends on seq and kind: 1..97 bytes. */
static uint32_t payload_for(int kind, uint64_t seq, uint8_t *buf) {
    uint32_t len = 1 + (uint32_t)((seq * 37 + (uint64_t)kind * 11) % 97);
    for (uint32_t i = 0; i < len; i++) buf[i] = (uint8_t)(seq * 131 + i * 7 + (uint64_t)kind);
    return len;
}

static void append_ok(mw__jnl_t *j, int kind, uint64_t seq) {
    uint8_t b[PAYLOAD_MAX];
    uint32_t len = payload_for(kind, seq, b);
    int rc = mw__jnl_append(j, kind, seq, b, len);
    if (rc != 0) fail_msg("append %d/%" PRIu64 ": %s: %s", kind, seq, mw_errname(rc), mw__jnl_last_error(j));
}

/* Appends OUT records up to out_next + n - 1; returns the offset where each
 * record starts (offs[k] for the k-th appended), if offs is not NULL. */
static void append_out(mw__jnl_t *j, uint64_t n, uint64_t *offs) {
    for (uint64_t k = 0; k < n; k++) {
        mw__jnl_stats_t st;
        mw__jnl_stats(j, &st);
        if (offs) offs[k] = HDR + st.bytes;
        append_ok(j, MW__JNL_OUT, mw__jnl_out_next(j));
    }
}

/* Reads OUT records from `from` to the end and checks each payload and
 * that the numbers run on without a gap up to out_next - 1. */
static void check_out_from(mw__jnl_t *j, uint64_t from) {
    mw__jnl_cur_t cur;
    assert_int_equal(mw__jnl_seek(j, from, &cur), 0);
    uint64_t want = from, seq;
    const uint8_t *p;
    uint32_t len;
    int rc;
    while ((rc = mw__jnl_next(j, &cur, &seq, &p, &len)) == 0) {
        uint8_t b[PAYLOAD_MAX];
        uint32_t l = payload_for(MW__JNL_OUT, seq, b);
        if (seq != want || len != l || memcmp(p, b, l) != 0)
            fail_msg("record %" PRIu64 " (len %u) where %" PRIu64 " (len %u) was expected", seq, len, want, l);
        want++;
    }
    assert_int_equal(rc, MW_EAGAIN);
    assert_int_equal(want, mw__jnl_out_next(j));
}

static void file_patch(const char *path, uint64_t off, const void *p, size_t n) {
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, p, n, (off_t)off), (ssize_t)n);
    close(fd);
}

static void file_read(const char *path, uint64_t off, void *p, size_t n) {
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, p, n, (off_t)off), (ssize_t)n);
    close(fd);
}

/* ---- log capture: the recovery warning ---------------------------------------------- */

static char logged[1024];
static int logged_level = -1;
static void log_hook(void *ud, int level, const char *msg) {
    (void)ud;
    logged_level = level;
    snprintf(logged, sizeof logged, "%s", msg);
}

/* ---- crc32c --------------------------------------------------------------------------- */

static void test_journal_crc32c_vectors(void **state) {
    (void)state;
    assert_int_equal(mw__crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(mw__crc32c_sw(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(mw__crc32c(0, "", 0), 0);
    /* RFC 3720 B.4 */
    uint8_t b[32];
    memset(b, 0, sizeof b);
    assert_int_equal(mw__crc32c(0, b, 32), 0x8A9136AAu);
    memset(b, 0xff, sizeof b);
    assert_int_equal(mw__crc32c(0, b, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++) b[i] = (uint8_t)i;
    assert_int_equal(mw__crc32c(0, b, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++) b[i] = (uint8_t)(31 - i);
    assert_int_equal(mw__crc32c(0, b, 32), 0x113FDB5Cu);
    /* the fast path equals the tables at every alignment and length, and
     * pieces chain */
    uint8_t r[300];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof r; i++) r[i] = (uint8_t)((x = x * 1103515245u + 12345u) >> 16);
    for (size_t off = 0; off < 9; off++)
        for (size_t n = 0; n + off <= sizeof r; n += 1 + n / 8) {
            uint32_t whole = mw__crc32c_sw(0, r + off, n);
            assert_int_equal(mw__crc32c(0, r + off, n), whole);
            size_t half = n / 3;
            assert_int_equal(mw__crc32c(mw__crc32c(0, r + off, half), r + off + half, n - half), whole);
        }
    print_message("crc32c: %s\n", mw__crc32c_hw() ? "SSE4.2 instruction" : "tables (slice-by-8)");
}

/* ---- session ids ----------------------------------------------------------------------- */

static void test_journal_session_ids_validated(void **state) {
    fx_t *f = *state;
    const char *good[] = {"T1", "a", "gw-01.trader_7", "0123456789012345678901234567890", "..a", "a..b"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) assert_true(mw__jnl_valid_session(good[i]));
    const char *bad[] = {"", ".", "..", "../x", "a/b", "/etc", "a b", "a\nb", "x\\y", "caf\xc3\xa9",
                         "01234567890123456789012345678901" /* 32 */};
    assert_false(mw__jnl_valid_session(NULL));
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_false(mw__jnl_valid_session(bad[i]));
        mw__jnl_opts_t o = opts(f, bad[i]);
        mw__jnl_t *j = (mw__jnl_t *)&o; /* must be set to NULL */
        mw_err_t err = {0};
        assert_int_equal(mw__jnl_open(&j, &o, &err), MW_EINVAL);
        assert_null(j);
        assert_non_null(strstr(err.text, "invalid session id"));
    }
    DIR *d = opendir(f->dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *de; (de = readdir(d)) != NULL;) n += de->d_name[0] != '.';
    closedir(d);
    assert_int_equal(n, 0); /* nothing was created */
}

static void test_journal_missing_dir_is_esys(void **state) {
    fx_t *f = *state;
    char dir[128];
    snprintf(dir, sizeof dir, "%s/nope", f->dir);
    mw__jnl_opts_t o = {.dir = dir, .session = "T1"};
    mw__jnl_t *j = NULL;
    mw_err_t err = {0};
    assert_int_equal(mw__jnl_open(&j, &o, &err), MW_ESYS);
    assert_non_null(strstr(err.text, "nope"));
    assert_non_null(strstr(err.text, "No such file"));
}

/* ---- round trip ------------------------------------------------------------------------ */

static void test_journal_append_reopen_seek_round_trip(void **state) {
    fx_t *f = *state;
    mw__jnl_opts_t o = opts(f, "T1");
    o.grow_bytes = 4096; /* many grows (and moves of the mapping) */
    mw__jnl_t *j = open_ok(&o);
    char path[256];
    path_of(path, sizeof path, f, "T1", 1);
    assert_string_equal(mw__jnl_path(j), path);
    assert_int_equal(mw__jnl_out_first(j), 1);
    assert_int_equal(mw__jnl_out_next(j), 1);
    assert_int_equal(mw__jnl_recovered(j), -1);
    mw__jnl_cur_t cur;
    uint64_t seq;
    const uint8_t *p;
    uint32_t len;
    assert_int_equal(mw__jnl_seek(j, 1, &cur), 0);
    assert_int_equal(mw__jnl_next(j, &cur, &seq, &p, &len), MW_EAGAIN);
    uint64_t in = 1000;
    for (int i = 0; i < 1000; i++) {
        append_ok(j, MW__JNL_OUT, mw__jnl_out_next(j));
        if (i % 7 == 3) append_ok(j, MW__JNL_IN, in++);
    }
    /* the cursor made on the empty journal sees what came since */
    assert_int_equal(mw__jnl_next(j, &cur, &seq, &p, &len), 0);
    assert_int_equal(seq, 1);
    mw__jnl_stats_t st;
    mw__jnl_stats(j, &st);
    assert_int_equal(st.records, 1000 + (in - 1000));
    assert_int_equal(st.epoch, 1);
    uint64_t bytes = st.bytes;
    mw__jnl_close(j);

    j = open_ok(&o);
    assert_int_equal(mw__jnl_recovered(j), -1);
    assert_int_equal(mw__jnl_out_next(j), 1001);
    mw__jnl_stats(j, &st);
    assert_int_equal(st.bytes, bytes);
    assert_int_equal(st.records, 1000 + (in - 1000));
    const uint64_t from[] = {1, 2, 255, 256, 257, 258, 511, 512, 513, 769, 999, 1000, 1001};
    for (size_t i = 0; i < sizeof from / sizeof *from; i++) check_out_from(j, from[i]);
    assert_int_equal(mw__jnl_seek(j, 0, &cur), MW_ERANGE);
    assert_non_null(strstr(mw__jnl_last_error(j), "not in [1, 1001]"));
    assert_int_equal(mw__jnl_seek(j, 1002, &cur), MW_ERANGE);
    /* a cursor at the end stays valid across appends (and mapping moves) */
    assert_int_equal(mw__jnl_seek(j, 1001, &cur), 0);
    assert_int_equal(mw__jnl_next(j, &cur, &seq, &p, &len), MW_EAGAIN);
    for (int i = 0; i < 300; i++) append_ok(j, MW__JNL_OUT, mw__jnl_out_next(j));
    for (uint64_t want = 1001; want < 1301; want++) {
        assert_int_equal(mw__jnl_next(j, &cur, &seq, &p, &len), 0);
        assert_int_equal(seq, want);
    }
    assert_int_equal(mw__jnl_next(j, &cur, &seq, &p, &len), MW_EAGAIN);
    check_out_from(j, 1);
    mw__jnl_close(j);
    mw__jnl_close(NULL);
}

static void test_journal_append_rejects_bad_arguments(void **state) {
    fx_t *f = *state;
    mw__jnl_opts_t o = opts(f, "T1");
    mw__jnl_t *j = open_ok(&o);
    append_ok(j, MW__JNL_OUT, 1);
    uint8_t b[8] = {1};
    assert_int_equal(mw__jnl_append(j, MW__JNL_OUT, 3, b, 8), MW_EINVAL);
    assert_non_null(strstr(mw__jnl_last_error(j), "outbound record 3 appended where 2 is next"));
    assert_int_equal(mw__jnl_append(j, MW__JNL_OUT, 1, b, 8), MW_EINVAL);
    assert_int_equal(mw__jnl_append(j, MW__JNL_OUT, 2, b, 0), MW_EINVAL);
    assert_int_equal(mw__jnl_append(j, 3, 2, b, 8), MW_EINVAL);
    assert_int_equal(mw__jnl_append(j, 0, 2, b, 8), MW_EINVAL);
    mw__jnl_stats_t st;
    mw__jnl_stats(j, &st);
    assert_int_equal(st.records, 1);
    assert_int_equal(mw__jnl_out_next(j), 2);
    mw__jnl_close(j);
    mw_err_t err = {0};
    o.fsync = 7;
    assert_int_equal(mw__jnl_open(&j, &o, &err), MW_EINVAL);
}

static void test_journal_in_words_persist_across_reopen(void **state) {
    fx_t *f = *state;
    mw__jnl_opts_t o = opts(f, "T1");
    mw__jnl_t *j = open_ok(&o);
    assert_int_equal(mw__jnl_in_next(j), 1);
    assert_int_equal(mw__jnl_in_seen(j), 1);
    mw__jnl_set_in_seen(j, 42);
    mw__jnl_set_in_next(j, 41);
    append_ok(j, MW__JNL_OUT, 1);
    mw__jnl_close(j);
    j = open_ok(&o);
    assert_int_equal(mw__jnl_in_seen(j), 42);
    assert_int_equal(mw__jnl_in_next(j), 41);
    mw__jnl_set_in_next(j, 42);
    mw__jnl_close(j);
    j = open_ok(&o);
    assert_int_equal(mw__jnl_in_next(j), 42);
    assert_int_equal(mw__jnl_out_next(j), 2);
    assert_int_equal(mw__jnl_recovered(j), -1);
    mw__jnl_close(j);
}

static void test_journal_opens_the_newest_epoch_ignoring_other_names(void **state) {
    fx_t *f = *state;
    mw__jnl_opts_t o = opts(f, "T1");
    o.keep_old = true;
    mw__jnl_t *j = open_ok(&o);
    append_ok(j, MW__JNL_OUT, 1);
    assert_int_equal(mw__jnl_reset(j), 0);
    assert_int_equal(mw__jnl_reset(j), 0);
    append_ok(j, MW__JNL_OUT, 1);
    append_ok(j, MW__JNL_OUT, 2);
    mw__jnl_close(j);
    /* names that are not this session's journals */
    const char *decoys[] = {"T1.000009.mwj.tmp", "T10.000007.mwj", "T1.7.mwj", "T1.000008.mwjx", "xT1.000009.mwj",
                            "T1.00000a.mwj"};
    for (size_t i = 0; i < sizeof decoys / sizeof *decoys; i++) {
        char p[256];
        snprintf(p, sizeof p, "%s/%s", f->dir, decoys[i]);
        int fd = open(p, O_CREAT | O_WRONLY, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "junk", 4), 4);
        close(fd);
    }
    j = open_ok(&o);
    mw__jnl_stats_t st;
    mw__jnl_stats(j, &st);
    assert_int_equal(st.epoch, 3);
    assert_int_equal(mw__jnl_out_next(j), 3);
    mw__jnl_close(j);
}

/* ---- recovery -------------------------------------------------------------------------- */

enum { N_REC = 40 };

typedef enum damage { CUT_FILE, FLIP_PAYLOAD, GARBAGE_LEN, OUT_OF_SEQUENCE, BYTES_AFTER_END, FLIP_CRC } damage_t;

/* Writes N_REC OUT records, damages the file, reopens it: the journal ends
 * at expect_k (records [0, expect_k) kept), the warning names the offset,
 * appending continues, and a third open finds nothing to cut. */
static void damage_and_recover(const fx_t *f, damage_t how, uint64_t k, uint64_t arg) {
    mw__jnl_opts_t o = opts(f, "T1");
    o.grow_bytes = 8192;
    mw__jnl_t *j = open_ok(&o);
    uint64_t offs[N_REC + 1];
    append_out(j, N_REC, offs);
    mw__jnl_stats_t st;
    mw__jnl_stats(j, &st);
    offs[N_REC] = HDR + st.bytes;
    char path[256];
    snprintf(path, sizeof path, "%s", mw__jnl_path(j));
    mw__jnl_close(j);

    uint64_t expect_k = k; /* records kept */
    uint64_t at = offs[k];
    uint8_t b[8];
    switch (how) {
    case CUT_FILE: /* k is the last record; cut arg bytes into it */
        assert_int_equal(truncate(path, (off_t)(offs[k] + arg)), 0);
        break;
    case FLIP_PAYLOAD:
        file_read(path, at + 24 + arg, b, 1);
        b[0] ^= 0x20;
        file_patch(path, at + 24 + arg, b, 1);
        break;
    case FLIP_CRC:
        file_read(path, at + 4, b, 1);
        b[0] ^= 1;
        file_patch(path, at + 4, b, 1);
        break;
    case GARBAGE_LEN: {
        uint32_t len = (uint32_t)arg;
        file_patch(path, at, &len, 4);
        break;
    }
    case OUT_OF_SEQUENCE: { /* a whole, checksummed record with the wrong number */
        uint8_t r[24 + PAYLOAD_MAX];
        file_read(path, at, r, 24);
        uint32_t len;
        memcpy(&len, r, 4);
        file_read(path, at, r, 24 + len);
        uint64_t seq = k + arg; /* record k carries k + 1 */
        memcpy(r + 8, &seq, 8);
        uint32_t crc = mw__crc32c(0, r + 8, 16 + len);
        memcpy(r + 4, &crc, 4);
        file_patch(path, at, r, 24 + len);
        break;
    }
    case BYTES_AFTER_END:
        expect_k = N_REC;
        at = offs[N_REC];
        file_patch(path, at + arg, "\x01", 1);
        break;
    }

    logged[0] = '\0';
    mw_log_set(log_hook, NULL, MW_LOG_DEBUG);
    j = open_ok(&o);
    mw_log_set(NULL, NULL, MW_LOG_INFO);
    if (mw__jnl_recovered(j) != (int64_t)at)
        fail_msg("damage %d at record %" PRIu64 " (+%" PRIu64 "): recovered %" PRId64 ", expected %" PRIu64, how, k,
                 arg, mw__jnl_recovered(j), at);
    char want[300];
    snprintf(want, sizeof want, "journal %s: ", path);
    assert_non_null(strstr(logged, want));
    snprintf(want, sizeof want, "at byte offset %" PRIu64 ":", at);
    assert_non_null(strstr(logged, want));
    assert_int_equal(logged_level, MW_LOG_WARN);
    assert_int_equal(mw__jnl_out_next(j), expect_k + 1);
    check_out_from(j, 1);
    /* the cut tail is zero: appending goes on where the good part ends */
    mw__jnl_stats(j, &st);
    assert_int_equal(HDR + st.bytes, at);
    append_out(j, 5, NULL);
    mw__jnl_close(j);
    j = open_ok(&o);
    assert_int_equal(mw__jnl_recovered(j), -1);
    assert_int_equal(mw__jnl_out_next(j), expect_k + 6);
    check_out_from(j, 1);
    mw__jnl_close(j);
    assert_int_equal(unlink(path), 0);
}

static void test_journal_torn_tail_cut_at_last_good_record(void **state) {
    fx_t *f = *state;
    /* the file ends inside the last record: in the len, the crc, the seq,
     * the kind, the payload */
    const uint64_t cuts[] = {1, 3, 4, 7, 8, 15, 16, 23, 24, 25};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) damage_and_recover(f, CUT_FILE, N_REC - 1, cuts[i]);
    damage_and_recover(f, FLIP_PAYLOAD, N_REC - 1, 0);
    damage_and_recover(f, FLIP_PAYLOAD, 17, 0);
    damage_and_recover(f, FLIP_PAYLOAD, 0, 0);
    damage_and_recover(f, FLIP_CRC, 5, 0);
    damage_and_recover(f, GARBAGE_LEN, 20, 0xfffffff0u);
    damage_and_recover(f, GARBAGE_LEN, 20, 1u << 20);
    damage_and_recover(f, GARBAGE_LEN, 20, 3);
    damage_and_recover(f, GARBAGE_LEN, N_REC - 1, 8192);
    damage_and_recover(f, OUT_OF_SEQUENCE, 10, 0);   /* a duplicate of the previous number */
    damage_and_recover(f, OUT_OF_SEQUENCE, 10, 2);   /* a gap */
    damage_and_recover(f, BYTES_AFTER_END, 0, 0);    /* an append killed before its len */
    damage_and_recover(f, BYTES_AFTER_END, 0, 4000); /* on a later page */
}

/* Cutting the file exactly at a record boundary loses nothing and cuts
 * nothing. */
static void test_journal_cut_at_record_boundary_is_clean(void **state) {
    fx_t *f = *state;
    mw__jnl_opts_t o = opts(f, "T1");
    mw__jnl_t *j = open_ok(&o);
    uint64_t offs[10];
    append_out(j, 10, offs);
    char path[256];
    snprintf(path, sizeof path, "%s", mw__jnl_path(j));
    mw__jnl_close(j);
    assert_int_equal(truncate(path, (off_t)offs[9]), 0);
    j = open_ok(&o);
    assert_int_equal(mw__jnl_recovered(j), -1);
    assert_int_equal(mw__jnl_out_next(j), 10);
    check_out_from(j, 1);
    mw__jnl_close(j);
}

static void test_journal_bad_header_is_ecorrupt(void **state) {
    fx_t *f = *state;
    mw__jnl_opts_t o = opts(f, "T1");
    mw__jnl_t *j = open_ok(&o);
    append_out(j, 3, NULL);
    mw__jnl_close(j);
    char path[256];
    path_of(path, sizeof path, f, "T1", 1);
    static const struct { uint64_t off; uint8_t x; const char *why; } bad[] = {
        {0, 'X', "magic"}, {3, '2', "magic"}, {5, 1, "checksum"}, {9, 1, "checksum"}, {30, 'z', "checksum"},
        {56, 0x55, "checksum"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint8_t old;
        file_read(path, bad[i].off, &old, 1);
        file_patch(path, bad[i].off, &bad[i].x, 1);
        mw_err_t err = {0};
        j = NULL;
        assert_int_equal(mw__jnl_open(&j, &o, &err), MW_ECORRUPT);
        assert_null(j);
        assert_non_null(strstr(err.text, "offset 0"));
        assert_non_null(strstr(err.text, bad[i].why));
        assert_non_null(strstr(err.text, path));
        file_patch(path, bad[i].off, &old, 1);
    }
    /* out_first 0 (outside the checksum) */
    uint64_t zero = 0, one;
    file_read(path, 80, &one, 8);
    file_patch(path, 80, &zero, 8);
    mw_err_t err = {0};
    assert_int_equal(mw__jnl_open(&j, &o, &err), MW_ECORRUPT);
    file_patch(path, 80, &one, 8);
    /* a file shorter than a header */
    assert_int_equal(truncate(path, 100), 0);
    assert_int_equal(mw__jnl_open(&j, &o, &err), MW_ECORRUPT);
    assert_non_null(strstr(err.text, "offset 0"));
    assert_int_equal(mw__jnl_replay(f->dir, "T1", NULL, NULL, &err), MW_ECORRUPT);
}

static void test_journal_other_sessions_file_is_refused(void **state) {
    fx_t *f = *state;
    mw__jnl_opts_t o = opts(f, "T1");
    mw__jnl_t *j = open_ok(&o);
    append_out(j, 3, NULL);
    mw__jnl_close(j);
    char p1[256], p2[256];
    path_of(p1, sizeof p1, f, "T1", 1);
    path_of(p2, sizeof p2, f, "T2", 1);
    assert_int_equal(rename(p1, p2), 0);
    o.session = "T2";
    mw_err_t err = {0};
    assert_int_equal(mw__jnl_open(&j, &o, &err), MW_EINVAL);
    char want[300];
    snprintf(want, sizeof want, "journal %s belongs to session T1", p2);
    assert_string_equal(err.text, want);
    assert_int_equal(mw__jnl_replay(f->dir, "T2", NULL, NULL, &err), MW_EINVAL);
}

/* ---- reset ----------------------------------------------------------------------------- */

static void reset_case(const fx_t *f, bool keep_old) {
    mw__jnl_opts_t o = opts(f, "R");
    o.keep_old = keep_old;
    mw__jnl_t *j = open_ok(&o);
    append_out(j, 10, NULL);
    mw__jnl_set_in_next(j, 7);
    mw__jnl_set_in_seen(j, 8);
    assert_int_equal(mw__jnl_reset(j), 0);
    char p1[256], p2[256];
    path_of(p1, sizeof p1, f, "R", 1);
    path_of(p2, sizeof p2, f, "R", 2);
    assert_string_equal(mw__jnl_path(j), p2);
    assert_int_equal(exists(p1), keep_old);
    assert_true(exists(p2));
    assert_int_equal(mw__jnl_out_first(j), 1);
    assert_int_equal(mw__jnl_out_next(j), 1);
    assert_int_equal(mw__jnl_in_next(j), 1);
    assert_int_equal(mw__jnl_in_seen(j), 1);
    mw__jnl_stats_t st;
    mw__jnl_stats(j, &st);
    assert_int_equal(st.epoch, 2);
    assert_int_equal(st.records, 0);
    assert_int_equal(st.bytes, 0);
    mw__jnl_cur_t cur;
    assert_int_equal(mw__jnl_seek(j, 2, &cur), MW_ERANGE);
    append_out(j, 4, NULL);
    check_out_from(j, 1);
    mw__jnl_close(j);
    j = open_ok(&o);
    assert_string_equal(mw__jnl_path(j), p2);
    assert_int_equal(mw__jnl_out_next(j), 5);
    check_out_from(j, 1);
    mw__jnl_close(j);
}

static void test_journal_reset_keeps_old_file(void **state) { reset_case(*state, true); }
static void test_journal_reset_removes_old_file(void **state) { reset_case(*state, false); }

/* ---- fsync policies ------------------------------------------------------------------- */

static uint64_t fsyncs(const mw__jnl_t *j) {
    mw__jnl_stats_t st;
    mw__jnl_stats(j, &st);
    return st.fsyncs;
}

static void test_journal_fsync_counts_per_policy(void **state) {
    fx_t *f = *state;
    mw__jnl_opts_t o = opts(f, "N");
    mw__jnl_t *j = open_ok(&o);
    append_out(j, 500, NULL);
    mw__jnl_set_in_next(j, 3);
    assert_int_equal(mw__jnl_tick(j, mw_now_ns() + 3600 * MW_NS_PER_S), 0);
    assert_int_equal(fsyncs(j), 0);
    assert_int_equal(mw__jnl_sync(j), 0); /* by request, any policy */
    assert_int_equal(fsyncs(j), 1);
    assert_int_equal(mw__jnl_sync(j), 0); /* nothing new: no call */
    assert_int_equal(fsyncs(j), 1);
    mw__jnl_close(j);

    o = opts(f, "A");
    o.fsync = MW__JNL_FSYNC_ALWAYS;
    j = open_ok(&o);
    uint64_t before = fsyncs(j);
    append_out(j, 100, NULL);
    assert_int_equal(fsyncs(j) - before, 100);
    mw__jnl_close(j);

    o = opts(f, "I");
    o.fsync = MW__JNL_FSYNC_INTERVAL;
    o.fsync_interval_ns = 30 * MW_NS_PER_S; /* the real clock never gets there during the test */
    j = open_ok(&o);
    uint64_t t0 = mw_now_ns();
    assert_int_equal(fsyncs(j), 0);
    assert_int_equal(mw__jnl_tick(j, t0 + MW_NS_PER_S), 0); /* nothing dirty */
    append_out(j, 1000, NULL);
    assert_int_equal(fsyncs(j), 0);
    assert_int_equal(mw__jnl_tick(j, t0 + MW_NS_PER_S), 0); /* interval not passed */
    uint64_t t1 = t0 + 31 * MW_NS_PER_S;
    assert_int_equal(mw__jnl_tick(j, t1), 1);
    assert_int_equal(mw__jnl_tick(j, t1 + 1), 0);
    append_out(j, 1000, NULL); /* appends see the real clock: before t1 */
    assert_int_equal(mw__jnl_tick(j, t1 + 29 * MW_NS_PER_S), 0);
    assert_int_equal(mw__jnl_tick(j, t1 + 30 * MW_NS_PER_S), 1);
    mw__jnl_set_in_seen(j, 9); /* the header words count as dirty */
    assert_int_equal(mw__jnl_tick(j, t1 + 61 * MW_NS_PER_S), 1);
    assert_int_equal(mw__jnl_tick(j, t1 + 200 * MW_NS_PER_S), 0);
    assert_int_equal(fsyncs(j), 3);
    mw__jnl_close(j);

    /* INTERVAL from append: a tiny interval syncs at most once per append */
    o = opts(f, "I2");
    o.fsync = MW__JNL_FSYNC_INTERVAL;
    o.fsync_interval_ns = 1;
    j = open_ok(&o);
    append_out(j, 20, NULL);
    assert_true(fsyncs(j) >= 1 && fsyncs(j) <= 20);
    mw__jnl_close(j);
}

/* ---- kill -9 while appending -------------------------------------------------------------- */

/* The child appends up to `limit` records and writes the last number after
 * every `every` records to the pipe; the parent kills it mid-stream. */
static void child_append(const fx_t *f, int wfd, uint64_t limit, uint64_t every) {
    mw__jnl_opts_t o = opts(f, "K");
    o.grow_bytes = 64 * 1024;
    mw__jnl_t *j = NULL;
    if (mw__jnl_open(&j, &o, NULL) != 0) _exit(10);
    uint8_t b[PAYLOAD_MAX];
    for (uint64_t s = 1; s <= limit; s++) {
        uint32_t len = payload_for(MW__JNL_OUT, s, b);
        if (mw__jnl_append(j, MW__JNL_OUT, s, b, len) != 0) _exit(11);
        if (s % every == 0 && write(wfd, &s, sizeof s) != sizeof s) _exit(12);
    }
    _exit(13); /* never killed: the parent did not keep up */
}

static void test_journal_survives_sigkill_mid_append(void **state) {
    fx_t *f = *state;
    for (int round = 0; round < 6; round++) {
        int pfd[2];
        assert_int_equal(pipe(pfd), 0);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(pfd[0]);
            child_append(f, pfd[1], 10000000, 500);
        }
        close(pfd[1]);
        uint64_t last = 0, s;
        uint64_t dl = mw_now_ns() + 20 * MW_NS_PER_S;
        /* let it run for a number of reports that varies per round */
        uint64_t want = 5000 + (uint64_t)round * 3000;
        while (last < want && mw_now_ns() < dl) {
            struct pollfd p = {.fd = pfd[0], .events = POLLIN};
            if (poll(&p, 1, 100) > 0) {
                ssize_t r = read(pfd[0], &s, sizeof s);
                if (r != sizeof s) break;
                last = s;
            }
        }
        /* then a little more, so the kill lands mid-append, not right
         * after a report (the reader's wake-up tends to stop the child) */
        uint64_t spin_until = mw_now_ns() + (uint64_t)(round * 113 + 7) * MW_NS_PER_US;
        while (mw_now_ns() < spin_until) {
        }
        assert_int_equal(kill(pid, SIGKILL), 0);
        int st = 0;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        while (read(pfd[0], &s, sizeof s) == sizeof s) last = s; /* reported before it died */
        close(pfd[0]);
        if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
            fail_msg("the child %s %d", WIFEXITED(st) ? "exited with" : "died of signal",
                     WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        assert_true(last >= want);

        mw__jnl_opts_t o = opts(f, "K");
        o.grow_bytes = 64 * 1024;
        mw__jnl_t *j = open_ok(&o);
        if (mw__jnl_out_next(j) <= last)
            fail_msg("reported %" PRIu64 " but the journal ends before %" PRIu64, last, mw__jnl_out_next(j));
        check_out_from(j, 1); /* contiguous, every payload intact */
        print_message("round %d: killed after %" PRIu64 " reported, %" PRIu64 " in the journal, recovered %" PRId64
                      "\n",
                      round, last, mw__jnl_out_next(j) - 1, mw__jnl_recovered(j));
        append_out(j, 3, NULL);
        mw__jnl_close(j);
        char path[256];
        path_of(path, sizeof path, f, "K", 1);
        assert_int_equal(unlink(path), 0);
    }
}

/* ---- a full file system ------------------------------------------------------------------- */

static void test_journal_disk_full_is_esys_not_a_signal(void **state) {
    fx_t *f = *state;
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        mw__jnl_opts_t o = opts(f, "F");
        o.grow_bytes = 64 * 1024;
        mw__jnl_t *j = NULL;
        if (mw__jnl_open(&j, &o, NULL) != 0) _exit(10);
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {.rlim_cur = 4096 + 3 * 64 * 1024, .rlim_max = RLIM_INFINITY};
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(11);
        uint8_t b[PAYLOAD_MAX];
        uint64_t s = 1;
        int rc = 0;
        for (; s < 1000000; s++) {
            uint32_t len = payload_for(MW__JNL_OUT, s, b);
            if ((rc = mw__jnl_append(j, MW__JNL_OUT, s, b, len)) != 0) break;
        }
        if (rc != MW_ESYS) _exit(12);
        char msg[256];
        snprintf(msg, sizeof msg, "%s", mw__jnl_last_error(j));
        /* still refused, still no signal; what was appended reads back */
        uint32_t len = payload_for(MW__JNL_OUT, s, b);
        if (mw__jnl_append(j, MW__JNL_OUT, s, b, len) != MW_ESYS) _exit(13);
        if (mw__jnl_out_next(j) != s) _exit(14);
        mw__jnl_close(j);
        uint64_t n = s - 1;
        if (write(pfd[1], &n, sizeof n) != sizeof n) _exit(15);
        size_t ml = strlen(msg);
        if (write(pfd[1], msg, ml) != (ssize_t)ml) _exit(16);
        _exit(0);
    }
    close(pfd[1]);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    uint64_t n = 0;
    char msg[300] = {0};
    ssize_t r = read(pfd[0], &n, sizeof n);
    ssize_t ml = read(pfd[0], msg, sizeof msg - 1);
    close(pfd[0]);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("the child %s %d", WIFEXITED(st) ? "exited with" : "died of signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    assert_int_equal(r, sizeof n);
    assert_true(ml > 0);
    print_message("full after %" PRIu64 " records: %s\n", n, msg);
    assert_non_null(strstr(msg, "File too large"));
    assert_non_null(strstr(msg, "F.000001.mwj"));
    assert_true(n > 1000);
    mw__jnl_opts_t o = opts(f, "F");
    mw__jnl_t *j = open_ok(&o);
    assert_int_equal(mw__jnl_recovered(j), -1);
    assert_int_equal(mw__jnl_out_next(j), n + 1);
    check_out_from(j, 1);
    mw__jnl_close(j);
}

/* ---- replay ----------------------------------------------------------------------------- */

typedef struct seen {
    int n, stop_at;
    int kind[64];
    uint64_t seq[64];
    bool payload_ok;
} seen_t;

static bool on_rec(void *ud, int kind, uint64_t seq, const uint8_t *p, uint32_t len) {
    seen_t *s = ud;
    uint8_t b[PAYLOAD_MAX];
    uint32_t l = payload_for(kind, seq, b);
    if (l != len || memcmp(b, p, l) != 0) s->payload_ok = false;
    if (s->n < 64) {
        s->kind[s->n] = kind;
        s->seq[s->n] = seq;
    }
    s->n++;
    return s->n != s->stop_at;
}

static void test_journal_replay_reads_in_order_and_stops_at_a_bad_record(void **state) {
    fx_t *f = *state;
    mw_err_t err = {0};
    seen_t s = {.payload_ok = true};
    assert_int_equal(mw__jnl_replay(f->dir, "P", on_rec, &s, &err), 0); /* no journal yet */
    assert_int_equal(s.n, 0);
    assert_int_equal(mw__jnl_replay(f->dir, "../P", on_rec, &s, &err), MW_EINVAL);

    mw__jnl_opts_t o = opts(f, "P");
    mw__jnl_t *j = open_ok(&o);
    uint64_t offs[30];
    int kinds[30];
    uint64_t seqs[30];
    for (int i = 0; i < 30; i++) {
        mw__jnl_stats_t st;
        mw__jnl_stats(j, &st);
        offs[i] = HDR + st.bytes;
        kinds[i] = i % 3 == 2 ? MW__JNL_IN : MW__JNL_OUT;
        seqs[i] = kinds[i] == MW__JNL_IN ? 500 + (uint64_t)i : mw__jnl_out_next(j);
        append_ok(j, kinds[i], seqs[i]);
    }
    char path[256];
    snprintf(path, sizeof path, "%s", mw__jnl_path(j));
    /* while the writer has it open */
    s = (seen_t){.payload_ok = true};
    assert_int_equal(mw__jnl_replay(f->dir, "P", on_rec, &s, &err), 0);
    assert_int_equal(s.n, 30);
    mw__jnl_close(j);
    s = (seen_t){.payload_ok = true};
    assert_int_equal(mw__jnl_replay(f->dir, "P", on_rec, &s, &err), 0);
    assert_int_equal(s.n, 30);
    assert_true(s.payload_ok);
    for (int i = 0; i < 30; i++) {
        assert_int_equal(s.kind[i], kinds[i]);
        assert_int_equal(s.seq[i], seqs[i]);
    }
    s = (seen_t){.payload_ok = true, .stop_at = 4};
    assert_int_equal(mw__jnl_replay(f->dir, "P", on_rec, &s, &err), 0);
    assert_int_equal(s.n, 4);

    /* a corrupt record 20: replay stops before it and writes nothing */
    uint8_t x;
    file_read(path, offs[20] + 25, &x, 1);
    x ^= 0xff;
    file_patch(path, offs[20] + 25, &x, 1);
    struct stat st0, st1;
    assert_int_equal(stat(path, &st0), 0);
    uint8_t *before = malloc((size_t)st0.st_size), *after = malloc((size_t)st0.st_size);
    assert_non_null(before);
    assert_non_null(after);
    file_read(path, 0, before, (size_t)st0.st_size);
    s = (seen_t){.payload_ok = true};
    assert_int_equal(mw__jnl_replay(f->dir, "P", on_rec, &s, &err), 0);
    assert_int_equal(s.n, 20);
    assert_true(s.payload_ok);
    assert_int_equal(stat(path, &st1), 0);
    assert_int_equal(st1.st_size, st0.st_size);
    file_read(path, 0, after, (size_t)st0.st_size);
    assert_memory_equal(before, after, (size_t)st0.st_size);
    free(before);
    free(after);
}

/* ---- allocation -------------------------------------------------------------------------- */

static void test_journal_steady_state_appends_allocate_nothing(void **state) {
    fx_t *f = *state;
    assert_true(mw_alloc_counting_works());
    mw__jnl_opts_t o = opts(f, "M");
    mw__jnl_t *j = open_ok(&o);
    uint8_t b[64];
    memset(b, 0x5a, sizeof b);
    for (uint64_t s = 1; s <= 100; s++) assert_int_equal(mw__jnl_append(j, MW__JNL_OUT, s, b, sizeof b), 0);
    uint64_t before = mw_alloc_count();
    for (uint64_t s = 101; s <= 100100; s++) {
        int rc = mw__jnl_append(j, s % 5 ? MW__JNL_OUT : MW__JNL_IN, s % 5 ? mw__jnl_out_next(j) : s, b, sizeof b);
        if (rc != 0) fail_msg("append: %s", mw__jnl_last_error(j));
        mw__jnl_set_in_seen(j, s);
        mw__jnl_set_in_next(j, s);
    }
    mw__jnl_cur_t cur;
    uint64_t seq;
    const uint8_t *p;
    uint32_t len;
    assert_int_equal(mw__jnl_seek(j, 5000, &cur), 0);
    for (int i = 0; i < 1000; i++) assert_int_equal(mw__jnl_next(j, &cur, &seq, &p, &len), 0);
    uint64_t after = mw_alloc_count();
    if (after != before) fail_msg("%" PRIu64 " allocations over 100,000 appends", after - before);
    mw__jnl_close(j);
}

int main(void) {
#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_journal_crc32c_vectors),
        T(test_journal_session_ids_validated),
        T(test_journal_missing_dir_is_esys),
        T(test_journal_append_reopen_seek_round_trip),
        T(test_journal_append_rejects_bad_arguments),
        T(test_journal_in_words_persist_across_reopen),
        T(test_journal_opens_the_newest_epoch_ignoring_other_names),
        T(test_journal_torn_tail_cut_at_last_good_record),
        T(test_journal_cut_at_record_boundary_is_clean),
        T(test_journal_bad_header_is_ecorrupt),
        T(test_journal_other_sessions_file_is_refused),
        T(test_journal_reset_keeps_old_file),
        T(test_journal_reset_removes_old_file),
        T(test_journal_fsync_counts_per_policy),
        T(test_journal_survives_sigkill_mid_append),
        T(test_journal_disk_full_is_esys_not_a_signal),
        T(test_journal_replay_reads_in_order_and_stops_at_a_bad_record),
        T(test_journal_steady_state_appends_allocate_nothing),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
