/* mode.c - run mode names. */
#include "mw_mode.h"

#include <string.h>

#include "mw_err.h"

static const char *const names[] = {"spin", "blocking", "event"};

int mw_mode_parse(const char *name) {
    for (int i = 0; i < 3; i++)
        if (name && strcmp(name, names[i]) == 0) return i;
    return MW_EINVAL;
}

const char *mw_mode_name(mw_mode_t m) { return (unsigned)m < 3 ? names[m] : "?"; }
