/* mw_err.h - error codes, per-object error text and the optional log hook.
 *
 * Every fallible msgwire function returns an int (or ssize_t for counts):
 * >= 0 is success, a negative MW_E* code is the outcome otherwise. MW_EAGAIN
 * ("not now": would block, partial frame, transmit buffer full) is a normal
 * outcome: it is never logged and never formatted into error text.
 *
 * Objects that can fail for reasons worth explaining (streams, serdes,
 * clients, services) keep an mw_err_t. The text is written only on failure,
 * so the hot path pays nothing for it. Thread-safety: an mw_err_t belongs to
 * its object; read it from the thread that got the error.
 */
#ifndef MW_ERR_H
#define MW_ERR_H

#include <stddef.h>

#include "mw_api.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    MW_OK = 0,
    MW_EAGAIN = -1,        /* not now: would block, need more bytes, tx full */
    MW_ETIMEDOUT = -2,     /* a deadline passed */
    MW_ECLOSED = -3,       /* the peer left, or the object was closed */
    MW_EINVAL = -4,        /* bad argument or configuration */
    MW_ENOMEM = -5,        /* allocation failed (only at set-up time) */
    MW_ETOOBIG = -6,       /* does not fit: output buffer, or a length over the maximum */
    MW_EPROTO = -7,        /* malformed input: framing or syntax */
    MW_ETRUNC = -8,        /* input ends inside a message */
    MW_ETAG = -9,          /* unknown message type tag or name */
    MW_EFIELD = -10,       /* unknown or duplicate field */
    MW_EMISSING = -11,     /* a required field is missing */
    MW_ETYPE = -12,        /* a value of the wrong type for its field */
    MW_ERANGE = -13,       /* a number out of range for its field, or not finite */
    MW_ETRAILING = -14,    /* bytes after the end of a message */
    MW_EUTF8 = -15,        /* invalid UTF-8 */
    MW_ESYS = -16,         /* an operating-system error; see the object's error text */
    MW_ECONNREFUSED = -17, /* connection refused */
    MW_ERESOLVE = -18,     /* a host name could not be resolved */
    MW_ETLS = -19,         /* TLS failure */
    MW_EFULL = -20,        /* a capacity limit (connections, slots) was reached */
    MW_ESTATE = -21,       /* the object is not in a state that allows the call */
    MW_ENOTSUP = -22,      /* not supported by this backend or build */
    MW_ESLOW = -23,        /* the peer does not read: its send queue stayed full too long */
    MW_ECORRUPT = -24,     /* a journal file is damaged (bad header or checksum) */
    MW_ESESSION = -25,     /* a session rule was broken: logon rejected, numbers that
                              cannot be, resend impossible, logout by the peer */
    MW__ELAST = -26
};

/* mw_strerror returns a static, human-readable text for an MW_E* code:
 * "success" for 0 and for positive values (success counts), "unknown error"
 * for negative values that are not MW_E* codes. Never NULL, never allocates,
 * any thread. */
MW_API const char *mw_strerror(int code);

/* mw_errname returns the symbol name of a code ("MW_EAGAIN"), static. */
MW_API const char *mw_errname(int code);

#define MW_ERR_TEXT_MAX 256

/* Last-error record embedded in objects. */
typedef struct mw_err {
    int code;                   /* last MW_E* code, 0 if none */
    char text[MW_ERR_TEXT_MAX]; /* "connect 127.0.0.1:7001: Connection refused" */
} mw_err_t;

static inline void mw_err_clear(mw_err_t *err) {
    if (err) { err->code = 0; err->text[0] = '\0'; }
}

/* mw_err_text returns the text, or mw_strerror(code) when no text was set,
 * or "" when there is no error. Never NULL. */
MW_API const char *mw_err_text(const mw_err_t *err);

/* ---- Log hook ------------------------------------------------------------
 * Library code never prints. Diagnostics (connection closed because of bad
 * input, reconnect scheduled, ...) go to an optional process-wide hook that
 * is NULL by default. The hook may be called from any msgwire thread; it must
 * be thread-safe. Set it before starting threads. */
enum { MW_LOG_ERROR = 0, MW_LOG_WARN = 1, MW_LOG_INFO = 2, MW_LOG_DEBUG = 3 };
typedef void (*mw_log_fn)(void *ud, int level, const char *msg);
MW_API void mw_log_set(mw_log_fn fn, void *ud, int max_level);

#ifdef __cplusplus
}
#endif

#endif
