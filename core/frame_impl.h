/* frame_impl.h - sans-I/O frame codecs (the kinds are in mw_frame.h).
 *
 * The codecs never touch a file descriptor and never allocate. A length read
 * from the wire is checked against max_len before the caller reserves anything,
 * so a hostile 4 GiB prefix costs nothing but an MW_ETOOBIG.
 */
#ifndef MW_FRAME_IMPL_H
#define MW_FRAME_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mw_frame.h"

typedef struct mw__framer {
    mw_frame_kind_t kind;
    uint32_t max_len;   /* largest payload accepted or produced */
    uint32_t fixed_len; /* MW_FRAME_FIXED only */
} mw__framer_t;

/* mw__framer_init checks and stores a configuration. max_len 0 means the
 * kind's natural maximum (65535 for U16BE, 16 MiB otherwise). Returns 0 or
 * MW_EINVAL (U16BE with max_len > 65535, FIXED with fixed_len 0 or
 * fixed_len > max_len, unknown kind). */
int mw__framer_init(mw__framer_t *f, mw_frame_kind_t kind, uint32_t max_len, uint32_t fixed_len);

/* Name <-> kind: "none", "u16", "u32", "line", "fixed". Parse returns the kind
 * or MW_EINVAL. */
int mw__frame_kind_parse(const char *name);
const char *mw__frame_kind_name(mw_frame_kind_t kind);

/* mw__frame_decode finds the first frame in in[0..len).
 * On success returns the bytes the frame occupies (header + payload + trailer,
 * > 0) and sets *payload / *plen to the payload inside `in` (borrowed).
 * Returns MW_EAGAIN if the input holds no complete frame yet, MW_ETOOBIG if the
 * declared length (or, for LINE, the bytes seen without a newline) exceeds
 * max_len: the stream is then unusable and should be closed.
 * Never reads outside in[0..len). For NONE, len == 0 gives MW_EAGAIN. */
ssize_t mw__frame_decode(const mw__framer_t *f, const uint8_t *in, size_t len,
                        const uint8_t **payload, size_t *plen);

/* mw__frame_decode for a caller that retries as more bytes arrive: *scanned
 * (start at 0) remembers how far a LINE search got, so each retry only looks
 * at the new bytes. Set it back to 0 after consuming a frame (a successful
 * decode does so itself). Other kinds ignore it. */
ssize_t mw__frame_decode_resume(const mw__framer_t *f, const uint8_t *in, size_t len, size_t *scanned,
                               const uint8_t **payload, size_t *plen);

/* Bytes before and after the payload on the wire. */
static inline size_t mw__frame_prefix_len(const mw__framer_t *f) {
    return f->kind == MW_FRAME_U16BE ? 2u : f->kind == MW_FRAME_U32BE ? 4u : 0u;
}
static inline size_t mw__frame_suffix_len(const mw__framer_t *f) {
    return f->kind == MW_FRAME_LINE ? 1u : 0u;
}

/* Zero-copy send: reserve prefix + payload + suffix, encode the payload at
 * out + prefix_len, then call mw__frame_seal with the payload length: it writes
 * the prefix and suffix. Returns prefix + plen + suffix, or MW_ETOOBIG
 * (plen > max_len) or MW_EINVAL (FIXED and plen != fixed_len; LINE and the
 * payload holds '\n'). */
ssize_t mw__frame_seal(const mw__framer_t *f, uint8_t *out, size_t plen);

/* mw__frame_encode copies payload into out with its framing. Returns the total
 * bytes written, MW_ETOOBIG if it does not fit in cap or plen > max_len, or
 * MW_EINVAL as for mw__frame_seal. */
ssize_t mw__frame_encode(const mw__framer_t *f, const void *payload, size_t plen,
                        uint8_t *out, size_t cap);

#endif
