/* mw_serdes.h - serializers behind one ops table, chosen by name at run time.
 *
 *   "text"     one JSON object per message: {"type":"new_order","order_id":7,...}
 *   "fixed"    fixed-size little-endian packed layout, 2-byte tag first
 *   "msgpack"  a msgpack map {"type": name, field: value, ...}
 *              (flag MW_SERDES_MSGPACK_ARRAY: an array [tag, value, ...])
 *
 * The wire format of each is specified in README.md ("Wire formats").
 *
 * encode writes one message payload (no framing) into out[0..cap) and returns
 * its length, or MW_ETOOBIG when it does not fit, or MW_ERANGE when the struct
 * holds a value the format cannot carry (a non-finite double in text, an ENUM
 * >= its count, a BOOL byte that is neither 0 nor 1) or MW_EUTF8 (a CHARS field
 * that is not valid UTF-8). Values are checked before space, so a bad value is
 * reported as such even with a small buffer.
 *
 * decode reads exactly one framed payload in[0..len) (borrowed: not kept
 * after the call), looks the type up in the protocol, fills *msg_out (all
 * bytes of the struct are written; CHARS are NUL-padded) and sets *schema_out.
 * It returns len on success, or a specific error:
 *   MW_ETRUNC    the payload ends inside the message
 *   MW_EPROTO    syntax error (not JSON / not msgpack / bad escape)
 *   MW_ETAG      unknown type name or tag
 *   MW_EFIELD    unknown or duplicate field
 *   MW_EMISSING  a field is missing
 *   MW_ETYPE     a value of the wrong type for its field
 *   MW_ERANGE    a number out of its field's range (or an ENUM >= n)
 *   MW_ETOOBIG   a string longer than its CHARS/BYTES field, or the struct is
 *                larger than msg_cap
 *   MW_EUTF8     invalid UTF-8 in a string
 *   MW_ETRAILING bytes after the message
 * with a sentence in sd->err naming the field ("field \"qty\": 70000 is out of
 * range for u16"). On error *msg_out is unspecified.
 *
 * msgpack decodes either form (map or array) whatever the flag; the flag picks
 * what encode writes. The decoder reads the bytes in place (no object tree,
 * no allocation); a declared element count that the bytes do not back (e.g.
 * "array of 4 billion" in 5 bytes) is MW_ETRUNC after reading those bytes
 * only. When a message has several faults, framing ones (truncated,
 * malformed, trailing bytes) are reported first. A field may not be named
 * "type" (text and msgpack use that key for the message name).
 *
 * Neither encode nor decode allocates. A serdes object holds per-direction
 * state (msgpack's duplicate-field bitmap, the one-entry schema cache), so
 * give each thread its own; "text" and "fixed" follow the same rule.
 */
#ifndef MW_SERDES_H
#define MW_SERDES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "mw_api.h"
#include "mw_err.h"
#include "mw_frame.h"
#include "mw_schema.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mw_serdes mw_serdes_t;

enum {
    MW_SERDES_MSGPACK_ARRAY = 1 /* msgpack: array form [tag, v1, v2, ...] */
};

typedef struct mw_serdes_ops {
    const char *name;
    mw_frame_kind_t default_frame; /* framing on byte streams (TCP, TLS) */
    bool text;                     /* WebSocket: text frames (else binary) */
    int (*init)(mw_serdes_t *sd);  /* may allocate; NULL if stateless */
    void (*fini)(mw_serdes_t *sd);
    ssize_t (*encode)(mw_serdes_t *sd, const mw_schema_t *s, const void *msg,
                      uint8_t *out, size_t cap);
    ssize_t (*decode)(mw_serdes_t *sd, const uint8_t *in, size_t len,
                      const mw_protocol_t *p, const mw_schema_t **schema_out,
                      void *msg_out, size_t msg_cap);
} mw_serdes_ops_t;

struct mw_serdes {
    const mw_serdes_ops_t *ops;
    unsigned flags;
    void *state;
    /* one-entry tag -> schema cache for decoders (a stream usually carries
     * one type at a time) */
    const mw_protocol_t *c_proto;
    const mw_schema_t *c_schema;
    unsigned c_tag;
    mw_err_t err;
};

/* mw_serdes_find returns the ops named "text", "fixed" or "msgpack" (also
 * "msgpack-array"), or NULL. */
MW_API const mw_serdes_ops_t *mw_serdes_find(const char *name);

/* mw_serdes_init sets sd up for the named serdes ("msgpack-array" is
 * "msgpack" with MW_SERDES_MSGPACK_ARRAY). Returns 0, MW_EINVAL for an
 * unknown name (text in sd->err), or MW_ENOMEM. Allocates for msgpack. */
MW_API int mw_serdes_init(mw_serdes_t *sd, const char *name, unsigned flags);
/* Releases what init allocated; safe on a zeroed or already-finished sd. */
MW_API void mw_serdes_fini(mw_serdes_t *sd);

static inline ssize_t mw_serdes_encode(mw_serdes_t *sd, const mw_schema_t *s, const void *msg,
                                       uint8_t *out, size_t cap) {
    return sd->ops->encode(sd, s, msg, out, cap);
}

static inline ssize_t mw_serdes_decode(mw_serdes_t *sd, const uint8_t *in, size_t len,
                                       const mw_protocol_t *p, const mw_schema_t **schema_out,
                                       void *msg_out, size_t msg_cap) {
    return sd->ops->decode(sd, in, len, p, schema_out, msg_out, msg_cap);
}

static inline const char *mw_serdes_name(const mw_serdes_t *sd) { return sd->ops->name; }
static inline const char *mw_serdes_last_error(const mw_serdes_t *sd) { return mw_err_text(&sd->err); }

#ifdef __cplusplus
}
#endif

#endif
