/* mw_api.h - MW_API marks the functions the shared library exports.
 *
 * The library is built with -fvisibility=hidden: a function is part of the
 * ABI only when an installed header declares it with MW_API. Everything else
 * (the mw__ functions declared in the *_impl.h headers, which are not
 * installed) stays inside libmsgwire.so. tests/test_surface.c checks that the
 * exported set is exactly what the installed headers declare.
 */
#ifndef MW_API_H
#define MW_API_H

#if defined(__GNUC__) || defined(__clang__)
#define MW_API __attribute__((visibility("default")))
#else
#define MW_API
#endif

#endif
