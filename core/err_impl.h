/* err_impl.h - setting error text and logging, for msgwire's own code. */
#ifndef MW_ERR_IMPL_H
#define MW_ERR_IMPL_H

#include <stdarg.h>

#include "mw_err.h"

/* mw__err_from_errno maps an errno value to the closest MW_E* code:
 * EAGAIN/EWOULDBLOCK/EINPROGRESS -> MW_EAGAIN, ECONNREFUSED -> MW_ECONNREFUSED,
 * EPIPE/ECONNRESET/ECONNABORTED/ENOTCONN -> MW_ECLOSED, ETIMEDOUT -> MW_ETIMEDOUT,
 * ENOMEM/ENOBUFS -> MW_ENOMEM, EINVAL -> MW_EINVAL, anything else -> MW_ESYS. */
int mw__err_from_errno(int errnum);

/* mw__err_set formats text into err (if err is not NULL) and returns code, so
 * a failing path can end with `return mw__err_set(&s->err, MW_EPROTO, ...)`.
 * Text longer than MW_ERR_TEXT_MAX - 1 is truncated. Does not allocate. */
int mw__err_set(mw_err_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int mw__err_vset(mw_err_t *err, int code, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));

/* mw__err_set_errno: like mw__err_set, appending ": <strerror(errnum)>" and
 * using mw__err_from_errno(errnum) as the code. Returns that code. */
int mw__err_set_errno(mw_err_t *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* mw__err_copy copies code and text from src to dst (either may be NULL). */
void mw__err_copy(mw_err_t *dst, const mw_err_t *src);

/* Internal: format and deliver only if a hook is set and level allows. */
int mw__log_enabled(int level);
void mw__logf(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
