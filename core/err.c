/* err.c - error codes, error text and the log hook. */
#include "mw_err.h"
#include "err_impl.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

static const struct { const char *name, *text; } errtab[] = {
    {"MW_OK", "success"},
    {"MW_EAGAIN", "not now (would block)"},
    {"MW_ETIMEDOUT", "timed out"},
    {"MW_ECLOSED", "connection closed"},
    {"MW_EINVAL", "invalid argument"},
    {"MW_ENOMEM", "out of memory"},
    {"MW_ETOOBIG", "too big"},
    {"MW_EPROTO", "protocol error (malformed input)"},
    {"MW_ETRUNC", "truncated message"},
    {"MW_ETAG", "unknown message type"},
    {"MW_EFIELD", "unknown or duplicate field"},
    {"MW_EMISSING", "missing field"},
    {"MW_ETYPE", "wrong value type for field"},
    {"MW_ERANGE", "value out of range"},
    {"MW_ETRAILING", "trailing bytes after message"},
    {"MW_EUTF8", "invalid UTF-8"},
    {"MW_ESYS", "system error"},
    {"MW_ECONNREFUSED", "connection refused"},
    {"MW_ERESOLVE", "name resolution failed"},
    {"MW_ETLS", "TLS error"},
    {"MW_EFULL", "capacity reached"},
    {"MW_ESTATE", "invalid state for operation"},
    {"MW_ENOTSUP", "not supported"},
    {"MW_ESLOW", "slow consumer (send queue full too long)"},
    {"MW_ECORRUPT", "journal damaged"},
    {"MW_ESESSION", "session error"},
};

const char *mw_strerror(int code) {
    if (code > 0) code = 0;
    if (code <= MW__ELAST) return "unknown error";
    return errtab[-code].text;
}

const char *mw_errname(int code) {
    if (code > 0) code = 0;
    if (code <= MW__ELAST) return "MW_E?";
    return errtab[-code].name;
}

int mw__err_from_errno(int e) {
    switch (e) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
    case EINPROGRESS: return MW_EAGAIN;
    case ECONNREFUSED: return MW_ECONNREFUSED;
    case EPIPE:
    case ECONNRESET:
    case ECONNABORTED:
    case ENOTCONN: return MW_ECLOSED;
    case ETIMEDOUT: return MW_ETIMEDOUT;
    case ENOMEM:
    case ENOBUFS: return MW_ENOMEM;
    case EINVAL: return MW_EINVAL;
    default: return MW_ESYS;
    }
}

int mw__err_vset(mw_err_t *err, int code, const char *fmt, va_list ap) {
    if (err) {
        err->code = code;
        vsnprintf(err->text, sizeof err->text, fmt, ap);
    }
    return code;
}

int mw__err_set(mw_err_t *err, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    mw__err_vset(err, code, fmt, ap);
    va_end(ap);
    return code;
}

int mw__err_set_errno(mw_err_t *err, int errnum, const char *fmt, ...) {
    int code = mw__err_from_errno(errnum);
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        mw__err_vset(err, code, fmt, ap);
        va_end(ap);
        size_t n = strlen(err->text);
        char eb[128];
        const char *s = strerror_r(errnum, eb, sizeof eb); /* GNU variant */
        snprintf(err->text + n, sizeof err->text - n, ": %s", s);
    }
    return code;
}

void mw__err_copy(mw_err_t *dst, const mw_err_t *src) {
    if (!dst || !src || dst == src) return;
    dst->code = src->code;
    memcpy(dst->text, src->text, sizeof dst->text);
}

const char *mw_err_text(const mw_err_t *err) {
    if (!err || err->code == 0) return "";
    return err->text[0] ? err->text : mw_strerror(err->code);
}

/* The hook is set rarely and read on error paths; atomics keep readers on
 * other threads well-defined without a lock. */
static _Atomic(mw_log_fn) log_fn;
static void *_Atomic log_ud;
static atomic_int log_level = MW_LOG_INFO;

void mw_log_set(mw_log_fn fn, void *ud, int max_level) {
    atomic_store(&log_ud, ud);
    atomic_store(&log_level, max_level);
    atomic_store(&log_fn, fn);
}

int mw__log_enabled(int level) {
    return atomic_load_explicit(&log_fn, memory_order_relaxed) != NULL &&
           level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

void mw__logf(int level, const char *fmt, ...) {
    mw_log_fn fn = atomic_load(&log_fn);
    if (!fn || level > atomic_load(&log_level)) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fn(atomic_load(&log_ud), level, msg);
}
