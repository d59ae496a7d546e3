/* serdes.c - the serdes registry: names to ops tables, init, fini. The
 * helpers the implementations share are in field.c, so that the registry
 * depends on the serializers and they do not depend on it. */
#include "mw_serdes.h"
#include "err_impl.h"
#include "serdes_impl.h"

#include <string.h>

const mw_serdes_ops_t *mw_serdes_find(const char *name) {
    if (!name) return NULL;
    if (strcmp(name, "text") == 0) return &mw__serdes_text_ops;
    if (strcmp(name, "fixed") == 0) return &mw__serdes_fixed_ops;
    if (strcmp(name, "msgpack") == 0 || strcmp(name, "msgpack-array") == 0)
        return &mw__serdes_msgpack_ops;
    return NULL;
}

int mw__serdes_init_ops(mw_serdes_t *sd, const mw_serdes_ops_t *ops, unsigned flags) {
    memset(sd, 0, sizeof *sd);
    if (!ops) return mw__err_set(&sd->err, MW_EINVAL, "no serdes given");
    sd->ops = ops;
    sd->flags = flags;
    return ops->init ? ops->init(sd) : 0;
}

int mw_serdes_init(mw_serdes_t *sd, const char *name, unsigned flags) {
    const mw_serdes_ops_t *ops = mw_serdes_find(name);
    if (!ops) {
        memset(sd, 0, sizeof *sd);
        return mw__err_set(&sd->err, MW_EINVAL,
                          "unknown serdes \"%s\" (expected text, fixed, msgpack or msgpack-array)",
                          name ? name : "(null)");
    }
    if (strcmp(name, "msgpack-array") == 0) flags |= MW_SERDES_MSGPACK_ARRAY;
    return mw__serdes_init_ops(sd, ops, flags);
}

void mw_serdes_fini(mw_serdes_t *sd) {
    if (sd->ops && sd->ops->fini) sd->ops->fini(sd);
    sd->state = NULL;
}

size_t mw__serdes_max_len(const mw_serdes_t *sd, const mw_schema_t *s) {
    if (sd->ops == &mw__serdes_fixed_ops) return s->fixed_size;
    /* JSON worst case: every byte of text escaped as \u00XX (6), numbers up
     * to 24 characters, the member names and punctuation. msgpack is always
     * smaller than this bound. */
    size_t n = 16 + s->name_len;
    for (unsigned i = 0; i < s->nfields; i++) {
        const mw_field_t *f = &s->fields[i];
        n += f->name_len + 4;
        switch (f->kind) {
        case MW_FK_CHARS: n += 2 + 6u * f->size; break;
        case MW_FK_BYTES: n += 2 + 2u * f->size; break;
        default: n += 26; break;
        }
    }
    return n;
}
