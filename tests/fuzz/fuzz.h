/* fuzz.h - shared by the libFuzzer targets in tests/fuzz (one target per
 * fuzz_<name>.c). Each target defines LLVMFuzzerTestOneInput; it is linked
 * either with libFuzzer (clang, `make fuzz`) or with replay_main.c (any CC,
 * `make test`, which replays tests/fuzz/corpus/<name>).
 *
 * A target checks properties with FUZZ_CHECK: a violated property prints
 * where and why and aborts, which libFuzzer reports as a crash and saves the
 * input. Targets keep no state between inputs except lazily built,
 * reachable objects (serdes states), so any input replays alone.
 */
#ifndef MW_FUZZ_H
#define MW_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond, ...)                                                                 \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "%s:%d: property failed: %s: ", __FILE__, __LINE__, #cond);        \
            fprintf(stderr, __VA_ARGS__);                                                     \
            fputc('\n', stderr);                                                              \
            abort();                                                                          \
        }                                                                                     \
    } while (0)

/* Takes the input's leading bytes as parameters: 0 once it is used up. */
typedef struct fuzz_in {
    const uint8_t *p;
    size_t n;
} fuzz_in_t;

static inline unsigned fuzz_byte(fuzz_in_t *in) {
    if (in->n == 0) return 0;
    in->n--;
    return *in->p++;
}

#endif
