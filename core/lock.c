/* lock.c - the per-thread lock counter of sanitizer builds (lock_impl.h). */
#include "lock_impl.h"

#ifdef MW_SANITIZED
_Thread_local unsigned long mw__locks_taken;
#else
/* ISO C wants a translation unit to declare something. */
typedef int mw__lock_unused_t;
#endif
