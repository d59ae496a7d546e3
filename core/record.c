/* record.c - the recording decorator and the replay stream.
 *
 * Both streams start with the same `tap_t` so the getters work on either.
 * Replay reads the file through buffered stdio rather than loading it: a
 * recording of a long session can be large, and a chunk is copied straight
 * from the stdio buffer into the caller's buffer. The file size is taken at
 * open, so a record cut short by the end of the file is reported before any
 * of its bytes is handed out (never a half chunk followed by an error).
 */
#include "mw_record.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mw_clock.h"
#include "err_impl.h"
#include "record_impl.h"
#include "stream_impl.h"

#define MAGIC_LEN 8
#define HDR_FIXED 18 /* magic, wall ns, label length */
#define REC_HDR 12   /* monotonic ns, length */
#define LABEL_MAX 65535u
#define VERSION 1

static const uint8_t magic[MAGIC_LEN] = {'M', 'W', 'R', 'E', 'C', 0, VERSION, 0};

typedef struct tap {
    mw_stream_t base;
    uint64_t last_ts;    /* monotonic ns of the chunk the last read returned */
    uint64_t start_wall; /* from the header */
    uint64_t discarded;  /* replay: bytes written and dropped */
    char *label;         /* NUL-terminated, never NULL */
    FILE *f;
    char *path;
} tap_t;

typedef struct rec {
    tap_t t;
    bool failed; /* a write to the file failed: recording stopped */
} rec_t;

typedef struct replay {
    tap_t t;
    uint64_t size; /* file size at open */
    uint64_t off;  /* file offset of the next unread byte */
    uint64_t at;   /* file offset of the current record */
    uint32_t left; /* bytes of the current chunk not yet returned */
    int end;       /* sticky: 0, MW_ECLOSED or MW_EPROTO */
} replay_t;

static const mw__stream_ops_t rec_ops, replay_ops;

static void put_le(uint8_t *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static void tap_fini(tap_t *t) {
    if (t->f) fclose(t->f);
    t->f = NULL;
    free(t->label);
    free(t->path);
}

static const tap_t *tap_of(const mw_stream_t *s) {
    for (; s; s = s->inner)
        if (s->ops == &rec_ops || s->ops == &replay_ops) return (const tap_t *)s;
    return NULL;
}

static int tap_rx_time(const mw_stream_t *s, uint64_t *ns) {
    *ns = ((const tap_t *)s)->last_ts;
    return 0;
}

/* ---- recorder ------------------------------------------------------------- */

static void rec_stop(rec_t *r, const char *what) {
    r->failed = true;
    mw__logf(MW_LOG_WARN, "recording %s: %s: %s; recording stopped", r->t.path, what,
             strerror(errno));
}

static void rec_append(rec_t *r, const void *p, size_t n, uint64_t ts) {
    uint8_t h[REC_HDR];
    put_le(h, ts, 8);
    put_le(h + 8, n, 4);
    if (fwrite(h, 1, sizeof h, r->t.f) != sizeof h || fwrite(p, 1, n, r->t.f) != n)
        rec_stop(r, "write");
}

static ssize_t rec_read(mw_stream_t *s, void *dst, size_t cap) {
    rec_t *r = (rec_t *)s;
    if (cap > MW_RECORD_MAX_CHUNK) cap = MW_RECORD_MAX_CHUNK; /* one read, one record */
    ssize_t n = mw__stream_read(s->inner, dst, cap);
    if (n > 0) {
        r->t.last_ts = mw_now_ns();
        if (r->t.f && !r->failed) rec_append(r, dst, (size_t)n, r->t.last_ts);
    } else if (n != MW_EAGAIN) {
        mw__err_copy(&s->err, &s->inner->err);
    }
    return n;
}

static ssize_t rec_writev(mw_stream_t *s, const struct iovec *iov, int iovcnt) {
    ssize_t n = mw__stream_writev(s->inner, iov, iovcnt);
    if (n < 0 && n != MW_EAGAIN) mw__err_copy(&s->err, &s->inner->err);
    return n;
}

static int rec_want(const mw_stream_t *s) { return mw__stream_want(s->inner); }
static int rec_fd(const mw_stream_t *s) { return mw__stream_fd(s->inner); }

static void rec_close(mw_stream_t *s) {
    rec_t *r = (rec_t *)s;
    mw__stream_close(s->inner);
    if (!r->t.f) return;
    if (fclose(r->t.f) != 0 && !r->failed) rec_stop(r, "close");
    r->t.f = NULL;
}

static void rec_free(mw_stream_t *s) {
    rec_close(s);
    mw_stream_free(s->inner);
    tap_fini((tap_t *)s);
    free(s);
}

static int rec_handshake(mw_stream_t *s) {
    int r = mw__stream_handshake(s->inner);
    if (r < 0 && r != MW_EAGAIN) mw__err_copy(&s->err, &s->inner->err);
    return r;
}

static size_t rec_pending(const mw_stream_t *s) { return mw__stream_pending(s->inner); }

static const mw__stream_ops_t rec_ops = {
    .name = "record",
    .read = rec_read,
    .writev = rec_writev,
    .want = rec_want,
    .fd = rec_fd,
    .close = rec_close,
    .free = rec_free,
    .handshake = rec_handshake,
    .pending = rec_pending,
    .rx_time = tap_rx_time,
};

static int write_header(rec_t *r, mw_err_t *err) {
    size_t n = strlen(r->t.label);
    uint8_t h[HDR_FIXED];
    memcpy(h, magic, MAGIC_LEN);
    put_le(h + 8, r->t.start_wall, 8);
    put_le(h + 16, n, 2);
    if (fwrite(h, 1, sizeof h, r->t.f) != sizeof h || fwrite(r->t.label, 1, n, r->t.f) != n)
        return mw__err_set_errno(err, errno, "recording %s: write", r->t.path);
    return 0;
}

int mw__record_wrap(mw_stream_t **out, mw_stream_t *inner, const char *path, const char *label,
                   mw_err_t *err) {
    assert(out && inner && path);
    *out = NULL;
    if (!label) label = "";
    if (strlen(label) > LABEL_MAX) {
        mw_stream_free(inner);
        return mw__err_set(err, MW_EINVAL, "recording %s: label over %u bytes", path, LABEL_MAX);
    }
    rec_t *r = calloc(1, sizeof *r);
    if (r) {
        r->t.label = strdup(label);
        r->t.path = strdup(path);
    }
    if (!r || !r->t.label || !r->t.path) {
        if (r) tap_fini(&r->t);
        free(r);
        mw_stream_free(inner);
        return mw__err_set(err, MW_ENOMEM, "recording %s: out of memory", path);
    }
    r->t.base.ops = &rec_ops;
    r->t.base.inner = inner;
    r->t.start_wall = mw_wall_ns();
    r->t.f = fopen(path, "wbe");
    int rc = r->t.f ? write_header(r, err)
                    : mw__err_set_errno(err, errno, "recording %s: open", path);
    if (rc < 0) {
        rec_free(&r->t.base);
        return rc;
    }
    *out = &r->t.base;
    return 0;
}

/* ---- replay ----------------------------------------------------------------- */

static int corrupt(mw_err_t *err, const char *path, const char *what, uint64_t off) {
    return mw__err_set(err, MW_EPROTO, "recording %s: %s at offset %llu", path, what,
                      (unsigned long long)off);
}

/* Reads exactly n bytes at p->off; a short read is corruption at `at`. */
static int take(replay_t *p, void *dst, size_t n, const char *what, uint64_t at, mw_err_t *err) {
    if (p->size - p->off < n || fread(dst, 1, n, p->t.f) != n)
        return corrupt(err, p->t.path, what, at);
    p->off += n;
    return 0;
}

static int read_header(replay_t *p, mw_err_t *err) {
    uint8_t h[HDR_FIXED];
    const char *path = p->t.path;
    if (take(p, h, MAGIC_LEN, "truncated header", 0, err) < 0) return MW_EPROTO;
    if (memcmp(h, magic, 5) != 0 || h[5] != 0) return corrupt(err, path, "bad magic", 0);
    if (h[6] != VERSION) {
        char what[48];
        snprintf(what, sizeof what, "unsupported format version %u", h[6]);
        return corrupt(err, path, what, 6);
    }
    if (h[7] != 0) return corrupt(err, path, "bad reserved byte", 7);
    if (take(p, h + 8, 10, "truncated header", 8, err) < 0) return MW_EPROTO;
    p->t.start_wall = get_le(h + 8, 8);
    size_t n = (size_t)get_le(h + 16, 2);
    p->t.label = malloc(n + 1);
    if (!p->t.label) return mw__err_set(err, MW_ENOMEM, "recording %s: out of memory", path);
    p->t.label[n] = '\0';
    if (take(p, p->t.label, n, "truncated label", HDR_FIXED, err) < 0) return MW_EPROTO;
    if (memchr(p->t.label, '\0', n)) return corrupt(err, path, "NUL in label", HDR_FIXED);
    return 0;
}

/* Starts the next record: MW_ECLOSED at the end of the file, MW_EPROTO. */
static int next_record(replay_t *p) {
    uint64_t at = p->off;
    if (at == p->size) return MW_ECLOSED;
    uint8_t h[REC_HDR];
    const char *what = "truncated record";
    if (take(p, h, sizeof h, what, at, &p->t.base.err) < 0) return MW_EPROTO;
    uint32_t len = (uint32_t)get_le(h + 8, 4);
    if (len == 0) return corrupt(&p->t.base.err, p->t.path, "record length 0", at);
    if (len > MW_RECORD_MAX_CHUNK) {
        char w[64];
        snprintf(w, sizeof w, "record length %u over %u", len, MW_RECORD_MAX_CHUNK);
        return corrupt(&p->t.base.err, p->t.path, w, at);
    }
    if (p->size - p->off < len) return corrupt(&p->t.base.err, p->t.path, what, at);
    p->t.last_ts = get_le(h, 8);
    p->left = len;
    p->at = at;
    return 0;
}

static ssize_t replay_read(mw_stream_t *s, void *dst, size_t cap) {
    replay_t *p = (replay_t *)s;
    assert(cap > 0);
    if (p->end) return p->end;
    if (p->left == 0) {
        int rc = next_record(p);
        if (rc < 0) return p->end = rc;
    }
    size_t n = cap < p->left ? cap : p->left;
    /* Fails only if the file shrank since open. */
    if (take(p, dst, n, "truncated record", p->at, &s->err) < 0) return p->end = MW_EPROTO;
    p->left -= (uint32_t)n;
    return (ssize_t)n;
}

static ssize_t replay_writev(mw_stream_t *s, const struct iovec *iov, int iovcnt) {
    replay_t *p = (replay_t *)s;
    if (!p->t.f) return mw__err_set(&s->err, MW_ECLOSED, "recording %s: closed", p->t.path);
    size_t n = 0;
    for (int i = 0; i < iovcnt; i++) n += iov[i].iov_len;
    p->t.discarded += n;
    return (ssize_t)n;
}

static int replay_want(const mw_stream_t *s) {
    (void)s;
    return 0;
}

static int replay_fd(const mw_stream_t *s) {
    (void)s;
    return -1;
}

static void replay_close(mw_stream_t *s) {
    replay_t *p = (replay_t *)s;
    if (p->t.f) fclose(p->t.f);
    p->t.f = NULL;
    if (p->end != MW_EPROTO) p->end = MW_ECLOSED;
}

static void replay_free(mw_stream_t *s) {
    if (!s) return;
    tap_fini((tap_t *)s);
    free(s);
}

static const mw__stream_ops_t replay_ops = {
    .name = "replay",
    .read = replay_read,
    .writev = replay_writev,
    .want = replay_want,
    .fd = replay_fd,
    .close = replay_close,
    .free = replay_free,
    .rx_time = tap_rx_time,
};

/* Checks that f is a regular file, takes its size and reads the header from
 * its start. */
static int replay_stat(replay_t *p, mw_err_t *err) {
    const char *path = p->t.path;
    struct stat st;
    if (fstat(fileno(p->t.f), &st) != 0)
        return mw__err_set_errno(err, errno, "recording %s: stat", path);
    if (!S_ISREG(st.st_mode))
        return mw__err_set(err, MW_EINVAL, "recording %s: not a regular file", path);
    p->size = (uint64_t)st.st_size;
    if (fseeko(p->t.f, 0, SEEK_SET) != 0) /* a descriptor handed in may be anywhere */
        return mw__err_set_errno(err, errno, "recording %s: seek", path);
    return read_header(p, err);
}

static int replay_file(replay_t *p, const char *path, mw_err_t *err) {
    p->t.f = fopen(path, "rbe");
    if (!p->t.f) return mw__err_set_errno(err, errno, "recording %s: open", path);
    return replay_stat(p, err);
}

/* Allocates a replay stream named `name` (used in error text). */
static replay_t *replay_new(const char *name, mw_err_t *err) {
    replay_t *p = calloc(1, sizeof *p);
    if (p) p->t.path = strdup(name);
    if (!p || !p->t.path) {
        free(p);
        mw__err_set(err, MW_ENOMEM, "recording %s: out of memory", name);
        return NULL;
    }
    p->t.base.ops = &replay_ops;
    return p;
}

/* Hands p out on success, frees it on failure. */
static int replay_done(replay_t *p, int rc, mw_stream_t **out) {
    if (rc < 0) {
        replay_free(&p->t.base);
        return rc;
    }
    *out = &p->t.base;
    return 0;
}

int mw_replay_open(mw_stream_t **out, const char *path, mw_err_t *err) {
    assert(out && path);
    *out = NULL;
    replay_t *p = replay_new(path, err);
    if (!p) return MW_ENOMEM;
    return replay_done(p, replay_file(p, path, err), out);
}

int mw_replay_open_fd(mw_stream_t **out, int fd, mw_err_t *err) {
    assert(out);
    *out = NULL;
    char name[32];
    snprintf(name, sizeof name, "fd %d", fd);
    replay_t *p = replay_new(name, err);
    if (!p) {
        if (fd >= 0) close(fd);
        return MW_ENOMEM;
    }
    int rc;
    if (fd < 0) {
        rc = mw__err_set(err, MW_EINVAL, "recording %s: bad descriptor", name);
    } else if (!(p->t.f = fdopen(fd, "rb"))) {
        rc = mw__err_set_errno(err, errno, "recording %s: open", name);
        close(fd);
    } else {
        rc = replay_stat(p, err);
    }
    return replay_done(p, rc, out);
}

int mw_replay_open_mem(mw_stream_t **out, const void *data, size_t len, mw_err_t *err) {
    assert(out && (data || len == 0));
    *out = NULL;
    static char empty[1];
    replay_t *p = replay_new("in memory", err);
    if (!p) return MW_ENOMEM;
    /* "r" mode never writes through the pointer; fmemopen just is not const. */
    p->t.f = fmemopen(len ? (void *)(uintptr_t)data : empty, len, "r");
    int rc = p->t.f ? 0 : mw__err_set_errno(err, errno, "recording in memory: open");
    if (rc == 0) {
        p->size = len;
        rc = read_header(p, err);
    }
    return replay_done(p, rc, out);
}

/* ---- getters ---------------------------------------------------------------- */

uint64_t mw_replay_last_ts(const mw_stream_t *s) {
    const tap_t *t = tap_of(s);
    return t ? t->last_ts : 0;
}

uint64_t mw_replay_start_wall_ns(const mw_stream_t *s) {
    const tap_t *t = tap_of(s);
    return t ? t->start_wall : 0;
}

const char *mw_replay_label(const mw_stream_t *s) {
    const tap_t *t = tap_of(s);
    return t && t->label ? t->label : "";
}

uint64_t mw_replay_bytes_discarded(const mw_stream_t *s) {
    const tap_t *t = tap_of(s);
    return t ? t->discarded : 0;
}
