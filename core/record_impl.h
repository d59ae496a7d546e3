/* record_impl.h - the recorder (opts.tr.record_path puts it in a Clt's
 * stack; the file format is in mw_record.h). */
#ifndef MW_RECORD_IMPL_H
#define MW_RECORD_IMPL_H

#include "mw_record.h"

/* Wraps inner (ownership passes, also on failure); creates/truncates path.
 * label: free text stored in the header (may be NULL). */
int mw__record_wrap(mw_stream_t **out, mw_stream_t *inner, const char *path, const char *label,
                   mw_err_t *err);

#endif
