/* msgpack_impl.h - internals shared by msgpack_enc.c and msgpack_dec.c. */
#ifndef MW_MSGPACK_IMPL_H
#define MW_MSGPACK_IMPL_H

#include "mw_serdes.h"

/* Sets sd->err to "msgpack: field "<name>": <fmt...>" and returns code. */
__attribute__((format(printf, 4, 5)))
int mw__mp_ferr(mw_serdes_t *sd, const mw_field_t *f, int code, const char *fmt, ...);

/* The encoder: ops->encode of the "msgpack" serdes. */
ssize_t mw__mp_encode(mw_serdes_t *sd, const mw_schema_t *s, const void *msg, uint8_t *out,
                      size_t cap);

#endif
