/* test_record.c - recording a stream and replaying it: a TCP session over
 * 127.0.0.1 and an in-process pair with forced read boundaries replay with
 * the same chunks, boundaries, timestamps and total, then MW_ECLOSED; small
 * caller buffers split chunks but never merge them; corrupt recordings (bad
 * magic, wrong version, a header cut anywhere, the last record cut at every
 * byte, length 0, length over 16 MiB) are MW_EPROTO with the byte offset in
 * the text; writes to a replay are discarded and counted; label and start
 * time round-trip. */
#include "mw_test.h"

#include "mw_clock.h"
#include "mw_record.h"
#include "mw_stream.h"
#include "mw_tcp.h"
#include "clock_impl.h"
#include "record_impl.h"
#include "stream_impl.h"
#include "tcp_impl.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAIT_NS (5 * MW_NS_PER_S)
#define MAXREADS 512
#define BIG (256 * 1024)

/* What the live session's reads returned. */
typedef struct chunks {
    int n;
    size_t len[MAXREADS];
    size_t off[MAXREADS]; /* into data */
    uint64_t ts[MAXREADS];
    uint8_t *data;
    size_t total;
} chunks_t;

static void chunks_init(chunks_t *c) {
    memset(c, 0, sizeof *c);
    c->data = malloc(4 * BIG);
    assert_non_null(c->data);
}

static uint8_t pattern(size_t i) { return (uint8_t)((i * 2654435761u) >> 13); }

static void tmp_path(char *buf, size_t cap) {
    snprintf(buf, cap, "/tmp/mw_test_record_XXXXXX");
    int fd = mkstemp(buf);
    assert_true(fd >= 0);
    close(fd);
}

static uint64_t rx_time(mw_stream_t *s) {
    uint64_t ts = 1;
    assert_int_equal(mw__stream_rx_time(s, &ts), 0);
    return ts;
}

/* Reads from the recorder until `want` more bytes arrived, logging each read. */
static void live_read(mw_stream_t *rec, chunks_t *c, size_t want) {
    uint64_t deadline = mw__deadline_in(NULL, WAIT_NS);
    size_t end = c->total + want;
    while (c->total < end) {
        assert_true(c->n < MAXREADS);
        ssize_t r = mw__stream_read(rec, c->data + c->total, 4 * BIG - c->total);
        if (r == MW_EAGAIN) {
            assert_false(mw__deadline_passed(NULL, deadline));
            assert_true(mw__stream_wait(rec, MW_WANT_READ, mw__deadline_left(NULL, deadline)) > 0);
            continue;
        }
        if (r <= 0) fail_msg("read: %s (%s)", mw_errname((int)r), mw_stream_last_error(rec));
        c->len[c->n] = (size_t)r;
        c->off[c->n] = c->total;
        c->ts[c->n] = mw_replay_last_ts(rec);
        assert_true(c->ts[c->n] > 0);
        assert_true(c->n == 0 || c->ts[c->n] >= c->ts[c->n - 1]);
        assert_int_equal(rx_time(rec), c->ts[c->n]);
        c->total += (size_t)r;
        c->n++;
    }
    assert_int_equal(c->total, end); /* no read ran past the chunk */
}

static ssize_t read_settled(mw_stream_t *s, void *dst, size_t cap) {
    uint64_t deadline = mw__deadline_in(NULL, WAIT_NS);
    for (;;) {
        ssize_t r = mw__stream_read(s, dst, cap);
        if (r != MW_EAGAIN) return r;
        assert_false(mw__deadline_passed(NULL, deadline));
        assert_true(mw__stream_wait(s, MW_WANT_READ, mw__deadline_left(NULL, deadline)) > 0);
    }
}

static mw_stream_t *replay_open(const char *path) {
    mw_stream_t *s = NULL;
    mw_err_t err = {0};
    int rc = mw_replay_open(&s, path, &err);
    if (rc != 0) fail_msg("replay %s: %s", path, mw_err_text(&err));
    return s;
}

/* Replays path with buffers of `cap` bytes and checks it against the live
 * reads: each chunk comes back whole (cap large) or split in cap-sized
 * pieces, never merged with the next, with its timestamp. */
static void check_replay(const char *path, const chunks_t *c, size_t cap) {
    mw_stream_t *s = replay_open(path);
    assert_int_equal(mw__stream_fd(s), -1);
    assert_int_equal(mw__stream_want(s), 0);
    assert_int_equal(mw__stream_handshake(s), 1); /* no handshake to drive */
    assert_int_equal(mw__stream_pending(s), 0);
    uint8_t *buf = malloc(cap);
    assert_non_null(buf);
    size_t total = 0;
    for (int i = 0; i < c->n; i++) {
        for (size_t done = 0; done < c->len[i];) {
            size_t expect = c->len[i] - done < cap ? c->len[i] - done : cap;
            ssize_t r = mw__stream_read(s, buf, cap);
            assert_int_equal(r, (ssize_t)expect);
            assert_memory_equal(buf, c->data + c->off[i] + done, expect);
            assert_int_equal(mw_replay_last_ts(s), c->ts[i]);
            assert_int_equal(rx_time(s), c->ts[i]);
            done += expect;
            total += expect;
        }
    }
    assert_int_equal(total, c->total);
    assert_int_equal(mw__stream_read(s, buf, cap), MW_ECLOSED);
    assert_int_equal(mw__stream_read(s, buf, cap), MW_ECLOSED);
    free(buf);
    mw_stream_free(s);
}

/* ---- record and replay ----------------------------------------------------- */

static void test_record_tcp_session_replays_same_chunks_and_timestamps(void **state) {
    (void)state;
    char path[64];
    tmp_path(path, sizeof path);
    mw__listener_t *l = NULL;
    mw_err_t err = {0};
    assert_int_equal(mw__tcp_listen(&l, "127.0.0.1", "0", NULL, &err), 0);
    char port[8], label[64];
    snprintf(port, sizeof port, "%d", mw__listener_port(l));
    snprintf(label, sizeof label, "tcp://127.0.0.1:%s", port);
    mw_stream_t *cli = NULL, *srv = NULL, *rec = NULL;
    assert_int_equal(mw__tcp_connect(&cli, "127.0.0.1", port, NULL, WAIT_NS, &err), 0);
    uint64_t deadline = mw__deadline_in(NULL, WAIT_NS);
    int rc;
    while ((rc = mw__listener_accept(l, &srv, NULL)) == MW_EAGAIN)
        assert_false(mw__deadline_passed(NULL, deadline));
    assert_int_equal(rc, 0);
    uint64_t wall0 = mw_wall_ns();
    assert_int_equal(mw__record_wrap(&rec, cli, path, label, &err), 0);
    uint64_t wall1 = mw_wall_ns();
    assert_int_equal(mw_replay_last_ts(rec), 0);
    assert_string_equal(mw_replay_label(rec), label);
    assert_int_equal(mw__stream_handshake(rec), 1); /* forwarded to TCP, connected */

    /* The peer writes each chunk only after the last one was read whole. */
    static const size_t sizes[] = {1, 17, 1000, 3, 70000, 2, 4096, 5};
    chunks_t c;
    chunks_init(&c);
    uint8_t *out = malloc(BIG);
    assert_non_null(out);
    size_t sent = 0;
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        for (size_t i = 0; i < sizes[k]; i++) out[i] = pattern(sent + i);
        assert_int_equal(mw__stream_write_all(srv, out, sizes[k], WAIT_NS), 0);
        sent += sizes[k];
        live_read(rec, &c, sizes[k]);
    }
    /* Writes go to the peer unrecorded. */
    assert_int_equal(mw__stream_write_all(rec, "ping", 4, WAIT_NS), 0);
    char pong[4];
    assert_int_equal(read_settled(srv, pong, 4), 4);
    assert_memory_equal(pong, "ping", 4);
    mw_stream_free(srv);
    assert_int_equal(read_settled(rec, out, BIG), MW_ECLOSED);
    mw_stream_free(rec);
    assert_true(c.n >= (int)(sizeof sizes / sizeof sizes[0]));
    for (size_t i = 0; i < c.total; i++) assert_int_equal(c.data[i], pattern(i));

    check_replay(path, &c, BIG);
    mw_stream_t *s = replay_open(path);
    assert_string_equal(mw_replay_label(s), label);
    assert_true(mw_replay_start_wall_ns(s) >= wall0 && mw_replay_start_wall_ns(s) <= wall1);
    assert_int_equal(mw_replay_bytes_discarded(s), 0);
    mw_stream_free(s);
    free(out);
    free(c.data);
    mw__listener_free(l);
    unlink(path);
}

/* Records a pair whose reads return at most 7 bytes; fills c. */
static void record_pair(const char *path, chunks_t *c, size_t nbytes, const char *label) {
    mw_stream_t *a = NULL, *b = NULL, *rec = NULL;
    assert_int_equal(mw__pair_new(&a, &b, 4096, 7), 0);
    mw_err_t err = {0};
    assert_int_equal(mw__record_wrap(&rec, a, path, label, &err), 0);
    uint8_t buf[1024];
    assert_true(nbytes <= sizeof buf);
    for (size_t i = 0; i < nbytes; i++) buf[i] = pattern(i);
    assert_int_equal(mw__stream_write(b, buf, nbytes), (ssize_t)nbytes);
    live_read(rec, c, nbytes);
    assert_int_equal(mw__stream_write(rec, "xy", 2), 2);
    assert_int_equal(mw__stream_read(b, buf, sizeof buf), 2);
    mw_stream_free(b);
    assert_int_equal(mw__stream_read(rec, buf, sizeof buf), MW_ECLOSED);
    mw_stream_free(rec);
}

static void test_record_pair_chunks_replay_split_but_never_merged(void **state) {
    (void)state;
    char path[64];
    tmp_path(path, sizeof path);
    chunks_t c;
    chunks_init(&c);
    record_pair(path, &c, 100, NULL);
    assert_int_equal(c.n, 15); /* 14 x 7 + 2 */
    for (int i = 0; i < 14; i++) assert_int_equal(c.len[i], 7);
    assert_int_equal(c.len[14], 2);
    check_replay(path, &c, 4096); /* whole chunks */
    check_replay(path, &c, 7);
    check_replay(path, &c, 3);    /* 3, 3, 1 per chunk; never 3 across two */
    check_replay(path, &c, 1);
    mw_stream_t *s = replay_open(path);
    assert_string_equal(mw_replay_label(s), "");
    mw_stream_free(s);
    free(c.data);
    unlink(path);
}

static void test_record_writes_to_replay_are_discarded_and_counted(void **state) {
    (void)state;
    char path[64];
    tmp_path(path, sizeof path);
    chunks_t c;
    chunks_init(&c);
    record_pair(path, &c, 10, "w");
    mw_stream_t *s = replay_open(path);
    assert_int_equal(mw__stream_write(s, "0123456789", 10), 10);
    struct iovec iov[2] = {{"abcde", 5}, {"fghijk", 6}};
    assert_int_equal(mw__stream_writev(s, iov, 2), 11);
    assert_int_equal(mw_replay_bytes_discarded(s), 21);
    uint8_t buf[16];
    assert_int_equal(mw__stream_read(s, buf, sizeof buf), 7); /* reads are unaffected */
    assert_memory_equal(buf, c.data, 7);
    assert_int_equal(mw__stream_read(s, buf, sizeof buf), 3);
    assert_int_equal(mw__stream_read(s, buf, sizeof buf), MW_ECLOSED);
    mw__stream_close(s);
    mw__stream_close(s); /* idempotent */
    assert_int_equal(mw__stream_write(s, "z", 1), MW_ECLOSED);
    assert_int_equal(mw_replay_bytes_discarded(s), 21);
    mw_stream_free(s);
    free(c.data);
    unlink(path);
}

static void test_record_label_and_start_time_round_trip(void **state) {
    (void)state;
    char path[64];
    tmp_path(path, sizeof path);
    char *label = malloc(70000);
    assert_non_null(label);
    size_t n = 0;
    while (n + 4 < 3000) n += (size_t)sprintf(label + n, "wss://h\xc3\xa9/");
    mw_stream_t *a = NULL, *b = NULL, *rec = NULL;
    assert_int_equal(mw__pair_new(&a, &b, 64, 0), 0);
    uint64_t wall0 = mw_wall_ns();
    assert_int_equal(mw__record_wrap(&rec, a, path, label, NULL), 0);
    uint64_t wall1 = mw_wall_ns();
    assert_string_equal(mw_replay_label(rec), label);
    uint64_t start = mw_replay_start_wall_ns(rec);
    assert_true(start >= wall0 && start <= wall1);
    mw_stream_free(rec);
    mw_stream_free(b);
    mw_stream_t *s = replay_open(path);
    assert_string_equal(mw_replay_label(s), label);
    assert_int_equal(mw_replay_start_wall_ns(s), start);
    uint8_t buf[8];
    assert_int_equal(mw__stream_read(s, buf, sizeof buf), MW_ECLOSED); /* no records */
    mw_stream_free(s);

    /* A label over 65535 bytes is refused; the inner stream is freed. */
    memset(label, 'x', 65536);
    label[65536] = '\0';
    assert_int_equal(mw__pair_new(&a, &b, 64, 0), 0);
    mw_err_t err = {0};
    assert_int_equal(mw__record_wrap(&rec, a, path, label, &err), MW_EINVAL);
    assert_null(rec);
    mw_stream_free(b);
    /* So is a path that cannot be created, with the path in the text. */
    assert_int_equal(mw__pair_new(&a, &b, 64, 0), 0);
    assert_int_equal(mw__record_wrap(&rec, a, "/nonexistent/dir/rec", "x", &err), MW_ESYS);
    assert_non_null(strstr(mw_err_text(&err), "/nonexistent/dir/rec"));
    mw_stream_free(b);
    assert_int_equal(mw_replay_open(&s, "/nonexistent/dir/rec", &err), MW_ESYS);
    assert_null(s);
    free(label);
    unlink(path);
}

static void test_record_rx_time_and_forwarding(void **state) {
    (void)state;
    char path[64];
    tmp_path(path, sizeof path);
    mw_stream_t *a = NULL, *b = NULL, *rec = NULL;
    assert_int_equal(mw__pair_new(&a, &b, 64, 0), 0);
    uint64_t ts = 1;
    assert_int_equal(mw__stream_rx_time(a, &ts), MW_ENOTSUP);
    assert_int_equal(mw__record_wrap(&rec, a, path, "ctl", NULL), 0);
    assert_int_equal(rx_time(rec), 0);
    assert_int_equal(mw__stream_handshake(rec), 1);
    assert_int_equal(mw__stream_pending(rec), 0);
    assert_false(mw__stream_is_msg(rec));
    assert_int_equal(mw__stream_fd(rec), -1);
    assert_int_equal(mw__stream_want(rec), mw__stream_want(a));
    uint64_t t0 = mw_now_ns();
    assert_int_equal(mw__stream_write(b, "abc", 3), 3);
    uint8_t buf[8];
    assert_int_equal(mw__stream_read(rec, buf, sizeof buf), 3);
    assert_true(rx_time(rec) >= t0 && rx_time(rec) <= mw_now_ns());
    assert_int_equal(mw__stream_read(rec, buf, sizeof buf), MW_EAGAIN); /* not recorded */
    mw_stream_free(rec);
    mw_stream_free(b);
    mw_stream_t *s = replay_open(path);
    assert_int_equal(rx_time(s), 0);
    assert_false(mw__stream_is_msg(s));
    assert_int_equal(mw__stream_read(s, buf, sizeof buf), 3);
    assert_true(rx_time(s) >= t0);
    assert_int_equal(mw__stream_read(s, buf, sizeof buf), MW_ECLOSED);
    mw_stream_free(s);
    unlink(path);
}

/* ---- corrupt recordings -------------------------------------------------------- */

typedef struct file {
    uint8_t *p;
    size_t n;
} file_t;

static file_t slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    file_t fl = {malloc(1 << 16), 0};
    assert_non_null(fl.p);
    fl.n = fread(fl.p, 1, 1 << 16, f);
    fclose(f);
    return fl;
}

static void spill(const char *path, const uint8_t *p, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void expect_open_fails(const char *path, const char *what, unsigned long long off) {
    mw_stream_t *s = (mw_stream_t *)&s;
    mw_err_t err = {0};
    assert_int_equal(mw_replay_open(&s, path, &err), MW_EPROTO);
    assert_null(s);
    char text[96];
    snprintf(text, sizeof text, "%s at offset %llu", what, off);
    if (!strstr(mw_err_text(&err), text) || !strstr(mw_err_text(&err), path))
        fail_msg("got \"%s\", want \"%s\"", mw_err_text(&err), text);
}

/* Opens, reads `good` whole chunks of c, then expects MW_EPROTO (sticky). */
static void expect_read_fails(const char *path, const chunks_t *c, int good, const char *what,
                              unsigned long long off) {
    mw_stream_t *s = replay_open(path);
    uint8_t buf[64];
    for (int i = 0; i < good; i++) {
        assert_int_equal(mw__stream_read(s, buf, sizeof buf), (ssize_t)c->len[i]);
        assert_memory_equal(buf, c->data + c->off[i], c->len[i]);
    }
    assert_int_equal(mw__stream_read(s, buf, sizeof buf), MW_EPROTO);
    char text[96];
    snprintf(text, sizeof text, "%s at offset %llu", what, off);
    if (!strstr(mw_stream_last_error(s), text))
        fail_msg("got \"%s\", want \"%s\"", mw_stream_last_error(s), text);
    assert_int_equal(mw__stream_read(s, buf, sizeof buf), MW_EPROTO);
    mw_stream_free(s);
}

static void test_record_corrupt_recordings_are_eproto_with_offset(void **state) {
    (void)state;
    char path[64], bad[64];
    tmp_path(path, sizeof path);
    tmp_path(bad, sizeof bad);
    chunks_t c;
    chunks_init(&c);
    record_pair(path, &c, 20, "lbl"); /* chunks 7, 7, 6 */
    assert_int_equal(c.n, 3);
    file_t f = slurp(path);
    const size_t hdr = 18 + 3;
    const size_t rec1 = hdr, rec2 = rec1 + 12 + 7, rec3 = rec2 + 12 + 7;
    assert_int_equal(f.n, rec3 + 12 + 6);
    assert_memory_equal(f.p, "MWREC\0\1\0", 8);
    uint8_t *g = malloc(f.n);
    assert_non_null(g);

    memcpy(g, f.p, f.n);
    g[0] = 'X';
    spill(bad, g, f.n);
    expect_open_fails(bad, "bad magic", 0);

    memcpy(g, f.p, f.n);
    g[6] = 2;
    spill(bad, g, f.n);
    expect_open_fails(bad, "version 2", 6);

    memcpy(g, f.p, f.n);
    g[7] = 1;
    spill(bad, g, f.n);
    expect_open_fails(bad, "reserved byte", 7);

    for (size_t cut = 0; cut < hdr; cut++) {
        spill(bad, f.p, cut);
        expect_open_fails(bad, cut < 18 ? "truncated header" : "truncated label",
                          cut < 8 ? 0 : cut < 18 ? 8 : 18);
    }
    /* Cut at a record boundary: a shorter, valid recording. */
    spill(bad, f.p, rec3);
    chunks_t two = c;
    two.n = 2;
    two.total = 14;
    check_replay(bad, &two, 64);
    /* Cut anywhere inside the last record. */
    for (size_t cut = rec3 + 1; cut < f.n; cut++) {
        spill(bad, f.p, cut);
        expect_read_fails(bad, &c, 2, "truncated record", rec3);
    }
    /* Length 0, and over 16 MiB, in the second record. */
    memcpy(g, f.p, f.n);
    memset(g + rec2 + 8, 0, 4);
    spill(bad, g, f.n);
    expect_read_fails(bad, &c, 1, "record length 0", rec2);
    uint32_t over = MW_RECORD_MAX_CHUNK + 1;
    for (int i = 0; i < 4; i++) g[rec2 + 8 + i] = (uint8_t)(over >> (8 * i));
    spill(bad, g, f.n);
    expect_read_fails(bad, &c, 1, "record length 16777217 over 16777216", rec2);
    /* The maximum length itself is valid; here the bytes are missing. */
    uint32_t max = MW_RECORD_MAX_CHUNK;
    for (int i = 0; i < 4; i++) g[rec2 + 8 + i] = (uint8_t)(max >> (8 * i));
    spill(bad, g, f.n);
    expect_read_fails(bad, &c, 1, "truncated record", rec2);

    free(g);
    free(f.p);
    free(c.data);
    unlink(bad);
    unlink(path);
}

/* Reads s to the end with a 64-byte buffer; checks the chunks against c. */
static void check_chunks(mw_stream_t *s, const chunks_t *c) {
    uint8_t buf[64];
    for (int i = 0; i < c->n; i++) {
        assert_int_equal(mw__stream_read(s, buf, sizeof buf), (ssize_t)c->len[i]);
        assert_memory_equal(buf, c->data + c->off[i], c->len[i]);
        assert_int_equal(mw_replay_last_ts(s), c->ts[i]);
    }
    assert_int_equal(mw__stream_read(s, buf, sizeof buf), MW_ECLOSED);
}

static void test_record_replay_opens_from_fd_and_from_memory(void **state) {
    (void)state;
    char path[64];
    tmp_path(path, sizeof path);
    chunks_t c;
    chunks_init(&c);
    record_pair(path, &c, 20, "mem");
    file_t f = slurp(path);
    mw_err_t err = {0};
    mw_stream_t *s = NULL;

    assert_int_equal(mw_replay_open_mem(&s, f.p, f.n, &err), 0);
    assert_string_equal(mw_replay_label(s), "mem");
    check_chunks(s, &c);
    mw_stream_free(s);
    /* Cut inside the last record: the two before it, then MW_EPROTO. */
    assert_int_equal(mw_replay_open_mem(&s, f.p, f.n - 1, &err), 0);
    uint8_t buf[64];
    assert_int_equal(mw__stream_read(s, buf, sizeof buf), 7);
    assert_int_equal(mw__stream_read(s, buf, sizeof buf), 7);
    assert_int_equal(mw__stream_read(s, buf, sizeof buf), MW_EPROTO);
    assert_non_null(strstr(mw_stream_last_error(s), "in memory: truncated record at offset"));
    mw_stream_free(s);
    assert_int_equal(mw_replay_open_mem(&s, f.p, 0, &err), MW_EPROTO);
    assert_null(s);
    assert_non_null(strstr(mw_err_text(&err), "in memory: truncated header at offset 0"));

    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(lseek(fd, 5, SEEK_SET), 5); /* read from the start anyway */
    assert_int_equal(mw_replay_open_fd(&s, fd, &err), 0);
    check_chunks(s, &c);
    mw_stream_free(s); /* closes fd */
    assert_int_equal(fcntl(fd, F_GETFD), -1);

    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(mw_replay_open_fd(&s, p[0], &err), MW_EINVAL);
    assert_null(s);
    assert_non_null(strstr(mw_err_text(&err), "not a regular file"));
    assert_int_equal(fcntl(p[0], F_GETFD), -1); /* closed on failure too */
    close(p[1]);
    assert_int_equal(mw_replay_open_fd(&s, -1, &err), MW_EINVAL);
    assert_null(s);

    free(f.p);
    free(c.data);
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_tcp_session_replays_same_chunks_and_timestamps),
        cmocka_unit_test(test_record_pair_chunks_replay_split_but_never_merged),
        cmocka_unit_test(test_record_writes_to_replay_are_discarded_and_counted),
        cmocka_unit_test(test_record_label_and_start_time_round_trip),
        cmocka_unit_test(test_record_rx_time_and_forwarding),
        cmocka_unit_test(test_record_corrupt_recordings_are_eproto_with_offset),
        cmocka_unit_test(test_record_replay_opens_from_fd_and_from_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
