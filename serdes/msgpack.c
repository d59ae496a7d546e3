/* msgpack.c - PLACEHOLDER, being replaced in this session. */
#include "mw_serdes.h"
static ssize_t enc(mw_serdes_t *sd, const mw_schema_t *s, const void *m, uint8_t *o, size_t c) {
    (void)sd; (void)s; (void)m; (void)o; (void)c; return MW_ENOTSUP; }
static ssize_t dec(mw_serdes_t *sd, const uint8_t *in, size_t len, const mw_protocol_t *p,
                   const mw_schema_t **so, void *mo, size_t mc) {
    (void)sd; (void)in; (void)len; (void)p; (void)so; (void)mo; (void)mc; return MW_ENOTSUP; }
const mw_serdes_ops_t mw_serdes_msgpack_ops = {"msgpack", MW_FRAME_U32BE, false, NULL, NULL, enc, dec};
