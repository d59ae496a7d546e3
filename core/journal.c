/* journal.c - the session journal (format and rules in journal_impl.h).
 *
 * The whole file is one MAP_SHARED mapping; records are written by memcpy
 * into it, so an append is a few stores and a checksum: no syscall unless
 * the file must grow (every grow_bytes) or the fsync policy asks for one.
 * Space is posix_fallocate'd before it is mapped, so a store never lands on
 * a hole the file system cannot fill (that would be SIGBUS on a full disk).
 *
 * State kept beside the mapping: where the records end, the next OUT
 * number, and a sparse index (the offset of every MW__JNL_INDEX_EVERY-th
 * OUT record) so a resend from any number starts at most that many records
 * before it. The index array is allocated with room to spare and doubles,
 * so appends allocate O(log n) times over a journal's life.
 *
 * New files are written under a .tmp name and renamed, so a crash while
 * creating leaves no half-written header under the journal's name.
 */
#include "journal_impl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mw_clock.h"
#include "err_impl.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the journal is little-endian and mapped as is");

#define HDR_SIZE 4096u
#define REC_HDR 24u
#define H_VERSION 4
#define H_EPOCH 8
#define H_CREATED 16
#define H_SESSION 24
#define H_CRC 56
#define H_IN_NEXT 64
#define H_IN_SEEN 72
#define H_OUT_FIRST 80
#define VERSION 1u
#define DEFAULT_GROW ((size_t)1 << 20)
#define DEFAULT_INTERVAL_NS (100 * MW_NS_PER_MS)
#define INDEX_MIN 1024u                /* 256 Ki OUT records before the first realloc */
#define LEN_MAX ((uint32_t)1 << 30)    /* largest payload */
#define OUT_FIRST_MAX ((uint64_t)1 << 62)
#define EPOCH_MAX UINT32_MAX           /* epochs are %06u in file names */

struct mw__jnl {
    uint8_t *map;
    size_t size;        /* file size = mapped length, a multiple of page */
    uint64_t end;       /* offset of the first byte after the last record */
    uint64_t last_off;  /* offset of the record appended last here (0: none since open/reset) */
    uint64_t in_last;   /* the highest IN seq in the file (0: none) */
    uint64_t out_first, out_next;
    uint64_t records;
    uint64_t *idx;      /* idx[k]: offset of OUT record out_first + k * EVERY */
    size_t idx_n, idx_cap;
    int fsync;
    uint64_t interval_ns;
    uint64_t synced;    /* record bytes below this were synced */
    bool hdr_dirty;     /* in_next/in_seen stored since the last sync */
    uint64_t last_sync_ns;
    uint64_t fsyncs;
    int64_t recovered;
    uint64_t epoch;
    size_t grow, page;
    uint64_t warm;      /* pages below this offset were faulted in ahead (warm_ahead) */
    bool keep_old;
    int fd;
    mw_err_t err;
    char session[MW__JNL_SESSION_MAX + 1];
    char *dir;
    char path[PATH_MAX];
};

/* ---- small helpers ---------------------------------------------------------- */

static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void wr16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static uint64_t pad8(uint64_t n) { return (n + 7u) & ~(uint64_t)7u; }
static uint64_t rec_size(uint32_t len) { return REC_HDR + pad8(len); }

/* Like mw__err_set_errno, but always MW_ESYS (a full disk is not "invalid
 * argument" or "out of memory" to the caller of append). */
__attribute__((format(printf, 3, 4))) static int sys_err(mw_err_t *e, int errnum, const char *fmt, ...) {
    if (!e) return MW_ESYS;
    va_list ap;
    va_start(ap, fmt);
    mw__err_vset(e, MW_ESYS, fmt, ap);
    va_end(ap);
    size_t n = strlen(e->text);
    char eb[128];
    const char *s = strerror_r(errnum, eb, sizeof eb);
    snprintf(e->text + n, sizeof e->text - n, ": %s", s);
    return MW_ESYS;
}

bool mw__jnl_valid_session(const char *s) {
    if (!s) return false;
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                  c == '.' || c == '-';
        if (!ok || n >= MW__JNL_SESSION_MAX) return false;
    }
    return n > 0 && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static int make_path(char *buf, size_t cap, const char *dir, const char *session, uint64_t epoch, mw_err_t *e) {
    int n = snprintf(buf, cap, "%s/%s.%06u.mwj", dir, session, (unsigned)epoch);
    if (n < 0 || (size_t)n + 5 > cap) /* room for ".tmp" too */
        return mw__err_set(e, MW_EINVAL, "journal: directory name too long: %.64s...", dir);
    return 0;
}

/* Epoch of a file name "<session>.<digits>.mwj" (6 or more digits), 0 if the
 * name is not a journal of this session. */
static uint64_t name_epoch(const char *name, const char *session) {
    size_t sl = strlen(session);
    if (strncmp(name, session, sl) != 0 || name[sl] != '.') return 0;
    const char *p = name + sl + 1;
    uint64_t v = 0;
    size_t digits = 0;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > EPOCH_MAX) return 0;
    }
    if (digits < 6 || strcmp(p, ".mwj") != 0) return 0;
    return v;
}

/* Newest epoch of session in dir into *epoch (0 if none). */
static int newest_epoch(const char *dir, const char *session, uint64_t *epoch, mw_err_t *e) {
    *epoch = 0;
    DIR *d = opendir(dir);
    if (!d) return sys_err(e, errno, "journal: opening directory %s", dir);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint64_t v = name_epoch(de->d_name, session);
        if (v > *epoch) *epoch = v;
    }
    closedir(d);
    return 0;
}

/* ---- header and records -------------------------------------------------------- */

static void header_make(uint8_t *h, uint64_t epoch, const char *session) {
    memset(h, 0, HDR_SIZE);
    memcpy(h, "MWJ1", 4);
    wr32(h + H_VERSION, VERSION);
    wr64(h + H_EPOCH, epoch);
    wr64(h + H_CREATED, mw_wall_ns());
    memcpy(h + H_SESSION, session, strlen(session));
    wr32(h + H_CRC, mw__crc32c(0, h, H_CRC));
    wr64(h + H_IN_NEXT, 1);
    wr64(h + H_IN_SEEN, 1);
    wr64(h + H_OUT_FIRST, 1);
}

static int header_check(const uint8_t *h, const char *path, const char *session, uint64_t epoch, mw_err_t *e) {
    const char *why = NULL;
    if (memcmp(h, "MWJ1", 4) != 0) why = "magic is not MWJ1";
    else if (rd32(h + H_CRC) != mw__crc32c(0, h, H_CRC)) why = "header checksum mismatch";
    else if (rd32(h + H_VERSION) != VERSION) why = "unknown version";
    else if (memchr(h + H_SESSION, 0, MW__JNL_SESSION_MAX + 1) == NULL) why = "session name not terminated";
    else if (rd64(h + H_EPOCH) != epoch) why = "epoch differs from the file name";
    else if (rd64(h + H_OUT_FIRST) == 0 || rd64(h + H_OUT_FIRST) > OUT_FIRST_MAX) why = "out_first out of range";
    if (why) return mw__err_set(e, MW_ECORRUPT, "journal %s: bad header at offset 0: %s", path, why);
    const char *owner = (const char *)h + H_SESSION;
    if (strcmp(owner, session) != 0)
        return mw__err_set(e, MW_EINVAL, "journal %s belongs to session %s", path, owner);
    return 0;
}

/* Checks the record at off of a file of size bytes. Returns its size, 0 at
 * the end of the records (len 0), or -1 with why filled in. want_out is the
 * number the next OUT record must carry. */
static int64_t rec_check(const uint8_t *m, uint64_t size, uint64_t off, uint64_t want_out, char *why, size_t cap) {
    uint64_t room = size - off;
    if (room < 4) return 0; /* no len fits: the end (nonzero bytes there are caught by the caller) */
    uint32_t len = rd32(m + off);
    if (len == 0) return 0;
    if (room < REC_HDR || len > LEN_MAX || rec_size(len) > room) {
        snprintf(why, cap, "record length %" PRIu32 " reaches past the end of the file", len);
        return -1;
    }
    const uint8_t *r = m + off;
    if (rd32(r + 4) != mw__crc32c(0, r + 8, 16 + (size_t)len)) {
        snprintf(why, cap, "record checksum mismatch");
        return -1;
    }
    uint16_t kind = rd16(r + 16);
    if ((kind != MW__JNL_OUT && kind != MW__JNL_IN) || rd16(r + 18) != 0 || rd32(r + 20) != 0) {
        snprintf(why, cap, "bad record kind %u", kind);
        return -1;
    }
    if (kind == MW__JNL_OUT && rd64(r + 8) != want_out) {
        snprintf(why, cap, "outbound record %" PRIu64 " where %" PRIu64 " was next", rd64(r + 8), want_out);
        return -1;
    }
    return (int64_t)rec_size(len);
}

/* ---- syncing ---------------------------------------------------------------------- */

static bool dirty(const mw__jnl_t *j) { return j->hdr_dirty || j->synced < j->end; }

/* msync(MS_SYNC) of what changed since the last sync: the header page if
 * in_next/in_seen moved, and the records written since. One call. */
static int sync_dirty(mw__jnl_t *j) {
    if (!dirty(j)) return 0;
    uint64_t lo = j->hdr_dirty ? 0 : j->synced & ~(uint64_t)(j->page - 1);
    uint64_t hi = j->end > HDR_SIZE ? j->end : HDR_SIZE;
    j->fsyncs++;
    if (msync(j->map + lo, (size_t)(hi - lo), MS_SYNC) != 0)
        return sys_err(&j->err, errno, "journal %s: msync", j->path);
    j->synced = j->end;
    j->hdr_dirty = false;
    return 0;
}

static int interval_sync(mw__jnl_t *j, uint64_t now) {
    if (!dirty(j) || now < j->last_sync_ns || now - j->last_sync_ns < j->interval_ns) return 0;
    j->last_sync_ns = now;
    int rc = sync_dirty(j);
    return rc < 0 ? rc : 1;
}

/* ---- files ------------------------------------------------------------------------ */

typedef struct file {
    int fd;
    uint8_t *map;
    size_t size;
} file_t;

static void file_drop(file_t *f) {
    if (f->map) munmap(f->map, f->size);
    if (f->fd >= 0) close(f->fd);
    f->map = NULL;
    f->fd = -1;
}

/* One writer per journal file: a second mw__jnl_open of the same session
 * (another process, or another object in this one) would interleave
 * records. The lock goes with the descriptor. */
static int lock(int fd, const char *path, mw_err_t *e) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) return 0;
    if (errno == EWOULDBLOCK)
        return mw__err_set(e, MW_ESYS, "journal %s is open elsewhere (another process or journal object)", path);
    return sys_err(e, errno, "journal %s: flock", path);
}

/* Writes a fresh journal for epoch under path (via path.tmp + rename) and
 * maps it. */
static int file_create(mw__jnl_t *j, const char *path, uint64_t epoch, file_t *f) {
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    f->fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (f->fd < 0) return sys_err(&j->err, errno, "journal: creating %s", tmp);
    f->size = HDR_SIZE + j->grow;
    uint8_t h[HDR_SIZE];
    header_make(h, epoch, j->session);
    const char *what = "locking";
    int e = flock(f->fd, LOCK_EX | LOCK_NB) == 0 ? 0 : errno;
    if (e == 0) {
        what = "allocating";
        e = posix_fallocate(f->fd, 0, (off_t)f->size);
    }
    if (e == 0) {
        what = "writing";
        ssize_t w = pwrite(f->fd, h, HDR_SIZE, 0);
        e = w == (ssize_t)HDR_SIZE ? 0 : w < 0 ? errno : EIO;
    }
    if (e == 0 && j->fsync != MW__JNL_FSYNC_NONE) {
        what = "syncing";
        e = fdatasync(f->fd) == 0 ? 0 : errno;
    }
    if (e == 0) {
        what = "renaming";
        e = rename(tmp, path) == 0 ? 0 : errno;
    }
    if (e != 0) {
        sys_err(&j->err, e, "journal: %s %s", what, tmp);
        close(f->fd);
        f->fd = -1;
        unlink(tmp);
        return MW_ESYS;
    }
    if (j->fsync != MW__JNL_FSYNC_NONE) { /* the new name survives a power loss */
        int dfd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
    }
    f->map = mmap(NULL, f->size, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        int rc = sys_err(&j->err, errno, "journal %s: mmap", path);
        file_drop(f);
        return rc;
    }
    return 0;
}

static int file_check(mw__jnl_t *j, const char *path, uint64_t epoch, file_t *f) {
    struct stat st;
    uint8_t h[HDR_SIZE];
    int rc = lock(f->fd, path, &j->err);
    if (rc != 0) return rc;
    if (fstat(f->fd, &st) != 0) return sys_err(&j->err, errno, "journal %s: fstat", path);
    if ((uint64_t)st.st_size < HDR_SIZE || pread(f->fd, h, HDR_SIZE, 0) != (ssize_t)HDR_SIZE)
        return mw__err_set(&j->err, MW_ECORRUPT, "journal %s: bad header at offset 0: the file has only %jd bytes",
                          path, (intmax_t)st.st_size);
    if ((rc = header_check(h, path, j->session, epoch, &j->err)) != 0) return rc;
    f->size = ((size_t)st.st_size + j->page - 1) & ~(j->page - 1);
    int e = f->size > (size_t)st.st_size
                ? posix_fallocate(f->fd, st.st_size, (off_t)(f->size - (size_t)st.st_size)) : 0;
    return e ? sys_err(&j->err, e, "journal %s: allocating", path) : 0;
}

/* Opens an existing journal read-write, locks it, checks its header and
 * maps it (the size rounded up to whole pages). */
static int file_open(mw__jnl_t *j, const char *path, uint64_t epoch, file_t *f) {
    f->fd = open(path, O_RDWR | O_CLOEXEC);
    if (f->fd < 0) return sys_err(&j->err, errno, "journal: opening %s", path);
    int rc = file_check(j, path, epoch, f);
    if (rc == 0) {
        f->map = mmap(NULL, f->size, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
        if (f->map == MAP_FAILED) {
            f->map = NULL;
            rc = sys_err(&j->err, errno, "journal %s: mmap", path);
        }
    }
    if (rc) file_drop(f);
    return rc;
}

/* ---- the index ---------------------------------------------------------------------- */

static int idx_reserve(mw__jnl_t *j, size_t want) {
    if (want <= j->idx_cap) return 0;
    size_t cap = j->idx_cap ? j->idx_cap : INDEX_MIN;
    while (cap < want) cap *= 2;
    uint64_t *p = realloc(j->idx, cap * sizeof *p);
    if (!p) return mw__err_set(&j->err, MW_ENOMEM, "journal %s: index of %zu entries", j->path, cap);
    j->idx = p;
    j->idx_cap = cap;
    return 0;
}

/* ---- open: scan and recover --------------------------------------------------------- */

/* Last nonzero byte at or after off, + 1; off if none. */
static uint64_t nonzero_end(const uint8_t *m, uint64_t off, uint64_t size) {
    uint64_t e = size;
    while (e > off && (e & 7u)) {
        if (m[e - 1]) return e;
        e--;
    }
    while (e >= off + 8) {
        if (rd64(m + e - 8)) break;
        e -= 8;
    }
    while (e > off && !m[e - 1]) e--;
    return e;
}

static void cut(mw__jnl_t *j, uint64_t off, const char *why) {
    uint64_t hi = nonzero_end(j->map, off, j->size);
    if (hi > off) memset(j->map + off, 0, (size_t)(hi - off));
    if (j->fsync != MW__JNL_FSYNC_NONE && hi > off) {
        uint64_t lo = off & ~(uint64_t)(j->page - 1);
        j->fsyncs++;
        (void)msync(j->map + lo, (size_t)(hi - lo), MS_SYNC);
    }
    j->recovered = (int64_t)off;
    mw__logf(MW_LOG_WARN, "journal %s: %s at byte offset %" PRIu64 ": cut there (%" PRIu64 " bytes cleared)",
             j->path, why, off, hi - off);
}

static int scan(mw__jnl_t *j) {
    uint64_t off = HDR_SIZE, want = j->out_first;
    char why[128];
    int64_t r;
    while ((r = rec_check(j->map, j->size, off, want, why, sizeof why)) > 0) {
        if (rd16(j->map + off + 16) == MW__JNL_IN && rd64(j->map + off + 8) > j->in_last)
            j->in_last = rd64(j->map + off + 8);
        if (rd16(j->map + off + 16) == MW__JNL_OUT) {
            if ((want - j->out_first) % MW__JNL_INDEX_EVERY == 0) {
                if (idx_reserve(j, j->idx_n + 1) != 0) return MW_ENOMEM;
                j->idx[j->idx_n++] = off;
            }
            want++;
        }
        j->records++;
        off += (uint64_t)r;
    }
    j->end = off;
    j->out_next = want;
    if (r < 0) cut(j, off, why);
    else if (nonzero_end(j->map, off, j->size) > off) cut(j, off, "nonzero bytes after the last record");
    return idx_reserve(j, j->idx_n * 2 > INDEX_MIN ? j->idx_n * 2 : INDEX_MIN);
}

static void install(mw__jnl_t *j, const file_t *f, const char *path, uint64_t epoch) {
    j->fd = f->fd;
    j->map = f->map;
    j->size = f->size;
    j->epoch = epoch;
    j->end = HDR_SIZE;
    j->warm = 0;
    j->last_off = 0;
    j->in_last = 0;
    j->out_first = rd64(f->map + H_OUT_FIRST);
    j->out_next = j->out_first;
    j->records = 0;
    j->idx_n = 0;
    j->hdr_dirty = false;
    j->recovered = -1;
    snprintf(j->path, sizeof j->path, "%s", path);
}

static void jnl_free(mw__jnl_t *j) {
    if (j->map) munmap(j->map, j->size);
    if (j->fd >= 0) close(j->fd);
    free(j->idx);
    free(j->dir);
    free(j);
}

int mw__jnl_open(mw__jnl_t **out, const mw__jnl_opts_t *o, mw_err_t *err) {
    *out = NULL;
    if (!o || !o->dir || !o->session) return mw__err_set(err, MW_EINVAL, "journal: no directory or session id");
    if (!mw__jnl_valid_session(o->session))
        return mw__err_set(err, MW_EINVAL, "journal: invalid session id \"%.40s\" (1 to %d of A-Z a-z 0-9 _ . -)",
                          o->session, MW__JNL_SESSION_MAX);
    if (o->fsync < MW__JNL_FSYNC_NONE || o->fsync > MW__JNL_FSYNC_ALWAYS || o->fsync_interval_ns < 0)
        return mw__err_set(err, MW_EINVAL, "journal: bad fsync policy %d", o->fsync);
    mw__jnl_t *j = calloc(1, sizeof *j);
    if (!j || !(j->dir = strdup(o->dir))) {
        free(j);
        return mw__err_set(err, MW_ENOMEM, "journal: out of memory");
    }
    j->fd = -1;
    j->page = (size_t)sysconf(_SC_PAGESIZE);
    size_t g = o->grow_bytes ? o->grow_bytes : DEFAULT_GROW;
    j->grow = (g + j->page - 1) & ~(j->page - 1);
    j->fsync = o->fsync;
    j->interval_ns = (uint64_t)(o->fsync_interval_ns ? o->fsync_interval_ns : DEFAULT_INTERVAL_NS);
    j->keep_old = o->keep_old;
    j->recovered = -1;
    snprintf(j->session, sizeof j->session, "%s", o->session);

    char path[PATH_MAX];
    file_t f = {.fd = -1};
    uint64_t epoch;
    int rc = newest_epoch(j->dir, j->session, &epoch, &j->err);
    if (rc == 0) rc = make_path(path, sizeof path, j->dir, j->session, epoch ? epoch : 1, &j->err);
    if (rc == 0) rc = epoch ? file_open(j, path, epoch, &f) : file_create(j, path, 1, &f);
    if (rc == 0) {
        install(j, &f, path, epoch ? epoch : 1);
        rc = epoch ? scan(j) : idx_reserve(j, INDEX_MIN);
    }
    if (rc != 0) {
        mw__err_copy(err, &j->err);
        jnl_free(j);
        return rc;
    }
    j->synced = j->end;
    j->last_sync_ns = mw_now_ns();
    *out = j;
    return 0;
}

void mw__jnl_close(mw__jnl_t *j) {
    if (!j) return;
    if (j->fsync != MW__JNL_FSYNC_NONE) (void)sync_dirty(j);
    jnl_free(j);
}

int64_t mw__jnl_recovered(const mw__jnl_t *j) { return j->recovered; }

/* ---- append ---------------------------------------------------------------------------- */

/* Makes room for need more bytes: allocates the blocks first, then maps them. */
static int grow(mw__jnl_t *j, uint64_t need) {
    uint64_t add = (need + j->grow - 1) / j->grow * j->grow;
    uint64_t nsize = j->size + add;
    if (nsize > (uint64_t)INT64_MAX || nsize > SIZE_MAX)
        return mw__err_set(&j->err, MW_ESYS, "journal %s: file would exceed %" PRIu64 " bytes", j->path, nsize);
    int e = posix_fallocate(j->fd, (off_t)j->size, (off_t)add);
    if (e) return sys_err(&j->err, e, "journal %s: growing to %" PRIu64 " bytes", j->path, nsize);
    void *m = mremap(j->map, j->size, (size_t)nsize, MREMAP_MAYMOVE);
    if (m == MAP_FAILED) return sys_err(&j->err, errno, "journal %s: mremap to %" PRIu64 " bytes", j->path, nsize);
    j->map = m;
    j->size = (size_t)nsize;
    return 0;
}

/* The first store to each page of a shared file mapping is a write fault
 * (the file system marks the page dirty): microseconds, on the sending
 * thread, once every ~45 records of a 64-byte message, which was the
 * session's p99. The pages ahead of the end are faulted in a window at a
 * time by one madvise instead, and the file is grown a chunk ahead, so
 * neither lands on a record most of the time. Best effort: if either
 * fails, the stores fault as before, and append grows (and reports a full
 * disk) when it must. */
#define WARM_AHEAD ((uint64_t)128 * 1024)
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static int grow(mw__jnl_t *j, uint64_t need);

static __attribute__((noinline)) void warm_ahead(mw__jnl_t *j) {
    uint64_t from = j->end & ~(uint64_t)(j->page - 1);
    if (j->warm > from) from = j->warm;
    if (from + WARM_AHEAD > j->size) { /* grow now, not when a record needs it */
        mw_err_t keep = j->err; /* a failure here is not this append's */
        if (grow(j, from + WARM_AHEAD - j->size) != 0) j->err = keep;
    }
    uint64_t to = from + WARM_AHEAD < j->size ? from + WARM_AHEAD : j->size;
    if (to > from) (void)madvise(j->map + from, (size_t)(to - from), MADV_POPULATE_WRITE);
    j->warm = to;
}

int mw__jnl_append(mw__jnl_t *j, int kind, uint64_t seq, const void *payload, uint32_t len) {
    bool out = kind == MW__JNL_OUT;
    if (out && seq != j->out_next)
        return mw__err_set(&j->err, MW_EINVAL, "journal %s: outbound record %" PRIu64 " appended where %" PRIu64
                          " is next", j->path, seq, j->out_next);
    if (!out && kind != MW__JNL_IN) return mw__err_set(&j->err, MW_EINVAL, "journal %s: record kind %d", j->path, kind);
    if (len == 0 || len > LEN_MAX)
        return mw__err_set(&j->err, MW_EINVAL, "journal %s: payload of %" PRIu32 " bytes (1 to %" PRIu32 ")",
                          j->path, len, LEN_MAX);
    uint64_t rs = rec_size(len);
    if (j->end + rs + WARM_AHEAD / 2 > j->warm) warm_ahead(j); /* half the window used */
    if (rs > j->size - j->end) {
        int rc = grow(j, rs);
        if (rc) return rc;
    }
    bool indexed = out && (seq - j->out_first) % MW__JNL_INDEX_EVERY == 0;
    if (indexed && j->idx_n == j->idx_cap && idx_reserve(j, j->idx_n + 1) != 0) return MW_ENOMEM;
    if (j->fsync == MW__JNL_FSYNC_INTERVAL) { /* the records before this one */
        int rc = interval_sync(j, mw_now_ns());
        if (rc < 0) return rc;
    }

    uint8_t *r = j->map + j->end;
    wr64(r + 8, seq);
    wr16(r + 16, (uint16_t)kind);
    wr16(r + 18, 0);
    wr32(r + 20, 0);
    wr64(r + rs - 8, 0); /* the zero padding (< 8 bytes) lies in the last word */
    memcpy(r + REC_HDR, payload, len);
    wr32(r, len);
    uint32_t crc = mw__crc32c(0, r + 8, 16 + (size_t)len);
    /* The crc goes in last: a process killed before this store leaves a
     * record that fails its check. Stores to the mapping are in the page
     * cache at once; only the compiler could reorder them. */
    atomic_signal_fence(memory_order_release);
    wr32(r + 4, crc);

    j->end += rs;
    if (j->fsync == MW__JNL_FSYNC_ALWAYS) {
        int rc = sync_dirty(j);
        if (rc < 0) { /* not durable: take it back, so an error means "not appended" */
            j->end -= rs;
            memset(r, 0, (size_t)rs);
            return rc;
        }
    }
    if (indexed) j->idx[j->idx_n++] = j->end - rs;
    j->last_off = j->end - rs;
    if (!out && seq > j->in_last) j->in_last = seq;
    j->records++;
    if (out) j->out_next++;
    return 0;
}

int mw__jnl_drop_last(mw__jnl_t *j, uint64_t seq) {
    uint64_t off = j->last_off;
    if (!off || seq + 1 != j->out_next || rd16(j->map + off + 16) != MW__JNL_OUT || rd64(j->map + off + 8) != seq)
        return mw__err_set(&j->err, MW_EINVAL, "journal %s: record %" PRIu64 " is not the last one appended", j->path,
                          seq);
    uint64_t rs = j->end - off;
    memset(j->map + off, 0, (size_t)rs);
    if (j->fsync != MW__JNL_FSYNC_NONE && j->synced > off) { /* it reached the disk: so does its removal */
        uint64_t lo = off & ~(uint64_t)(j->page - 1);
        j->fsyncs++;
        (void)msync(j->map + lo, (size_t)(off + rs - lo), MS_SYNC);
    }
    if (j->synced > off) j->synced = off;
    j->end = off;
    j->last_off = 0;
    if ((seq - j->out_first) % MW__JNL_INDEX_EVERY == 0 && j->idx_n) j->idx_n--;
    j->records--;
    j->out_next--;
    return 0;
}

/* ---- numbers ------------------------------------------------------------------------------ */

uint64_t mw__jnl_out_next(const mw__jnl_t *j) { return j->out_next; }
uint64_t mw__jnl_out_first(const mw__jnl_t *j) { return j->out_first; }
uint64_t mw__jnl_in_last(const mw__jnl_t *j) { return j->in_last; }
uint64_t mw__jnl_in_next(const mw__jnl_t *j) { return __atomic_load_n((uint64_t *)(j->map + H_IN_NEXT), __ATOMIC_RELAXED); }
uint64_t mw__jnl_in_seen(const mw__jnl_t *j) { return __atomic_load_n((uint64_t *)(j->map + H_IN_SEEN), __ATOMIC_RELAXED); }

/* One aligned 8-byte store each: a process killed at any point leaves the
 * old or the new value, never a mix. */
void mw__jnl_set_in_seen(mw__jnl_t *j, uint64_t v) {
    __atomic_store_n((uint64_t *)(j->map + H_IN_SEEN), v, __ATOMIC_RELAXED);
    j->hdr_dirty = true;
}

void mw__jnl_set_in_next(mw__jnl_t *j, uint64_t v) {
    __atomic_store_n((uint64_t *)(j->map + H_IN_NEXT), v, __ATOMIC_RELAXED);
    j->hdr_dirty = true;
}

/* ---- reading --------------------------------------------------------------------------------- */

int mw__jnl_seek(mw__jnl_t *j, uint64_t seq, mw__jnl_cur_t *cur) {
    if (seq < j->out_first || seq > j->out_next)
        return mw__err_set(&j->err, MW_ERANGE, "journal %s: record %" PRIu64 " is not in [%" PRIu64 ", %" PRIu64 "]",
                          j->path, seq, j->out_first, j->out_next);
    cur->seq = seq;
    cur->off = seq == j->out_next ? j->end : j->idx[(seq - j->out_first) / MW__JNL_INDEX_EVERY];
    return 0;
}

int mw__jnl_next(mw__jnl_t *j, mw__jnl_cur_t *cur, uint64_t *seq, const uint8_t **payload, uint32_t *len) {
    uint64_t off = cur->off;
    /* Records below end were checked at open or written here; a cursor
     * from before a reset may point anywhere, so stay on 8-byte records. */
    while (off >= HDR_SIZE && (off & 7u) == 0 && off < j->end && j->end - off >= REC_HDR) {
        const uint8_t *r = j->map + off;
        uint32_t l = rd32(r);
        uint64_t s = rd64(r + 8);
        if (l == 0) break;
        if (rd16(r + 16) == MW__JNL_OUT && s == cur->seq) {
            *seq = s;
            *payload = r + REC_HDR;
            *len = l;
            cur->off = off + rec_size(l);
            cur->seq = s + 1;
            return 0;
        }
        off += rec_size(l);
    }
    if (off <= j->end) cur->off = off;
    return MW_EAGAIN;
}

/* ---- reset ---------------------------------------------------------------------------------- */

int mw__jnl_reset(mw__jnl_t *j) {
    if (j->epoch >= EPOCH_MAX) return mw__err_set(&j->err, MW_ESYS, "journal %s: no epoch after this one", j->path);
    char path[PATH_MAX];
    file_t f = {.fd = -1};
    int rc = make_path(path, sizeof path, j->dir, j->session, j->epoch + 1, &j->err);
    if (rc == 0 && j->keep_old && j->fsync != MW__JNL_FSYNC_NONE) rc = sync_dirty(j);
    if (rc == 0) rc = file_create(j, path, j->epoch + 1, &f);
    if (rc != 0) return rc;
    munmap(j->map, j->size);
    close(j->fd);
    if (!j->keep_old && unlink(j->path) != 0)
        mw__logf(MW_LOG_WARN, "journal %s: removing the old epoch: %s", j->path, strerror(errno));
    install(j, &f, path, j->epoch + 1);
    j->synced = j->end;
    return 0;
}

/* ---- durability -------------------------------------------------------------------------------- */

int mw__jnl_tick(mw__jnl_t *j, uint64_t now_ns) {
    if (j->fsync != MW__JNL_FSYNC_INTERVAL) return 0;
    return interval_sync(j, now_ns);
}

int mw__jnl_sync(mw__jnl_t *j) { return sync_dirty(j); }

void mw__jnl_stats(const mw__jnl_t *j, mw__jnl_stats_t *st) {
    st->bytes = j->end - HDR_SIZE;
    st->records = j->records;
    st->fsyncs = j->fsyncs;
    st->epoch = j->epoch;
}

const char *mw__jnl_last_error(const mw__jnl_t *j) { return mw_err_text(&j->err); }
const char *mw__jnl_path(const mw__jnl_t *j) { return j->path; }

/* ---- replay ---------------------------------------------------------------------------------- */

int mw__jnl_replay(const char *dir, const char *session, mw__jnl_replay_fn fn, void *ud, mw_err_t *err) {
    if (!dir || !mw__jnl_valid_session(session))
        return mw__err_set(err, MW_EINVAL, "journal: invalid session id \"%.40s\"", session ? session : "(null)");
    uint64_t epoch;
    char path[PATH_MAX];
    int rc = newest_epoch(dir, session, &epoch, err);
    if (rc != 0 || epoch == 0) return rc; /* no journal yet: nothing to replay */
    if ((rc = make_path(path, sizeof path, dir, session, epoch, err)) != 0) return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sys_err(err, errno, "journal: opening %s", path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = sys_err(err, errno, "journal %s: fstat", path);
        close(fd);
        return rc;
    }
    if ((uint64_t)st.st_size < HDR_SIZE) {
        close(fd);
        return mw__err_set(err, MW_ECORRUPT, "journal %s: bad header at offset 0: the file has only %jd bytes", path,
                          (intmax_t)st.st_size);
    }
    size_t size = (size_t)st.st_size;
    const uint8_t *m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return sys_err(err, errno, "journal %s: mmap", path);
    rc = header_check(m, path, session, epoch, err);
    uint64_t off = HDR_SIZE, want = rd64(m + H_OUT_FIRST);
    char why[128];
    int64_t r;
    while (rc == 0 && (r = rec_check(m, size, off, want, why, sizeof why)) > 0) {
        const uint8_t *p = m + off;
        int kind = rd16(p + 16);
        if (kind == MW__JNL_OUT) want++;
        off += (uint64_t)r;
        if (!fn(ud, kind, rd64(p + 8), p + REC_HDR, rd32(p))) break;
    }
    munmap((void *)m, size);
    return rc;
}
