/* fuzz_serdes_fixed.c - the "fixed" decoder, with the round-trip property of
 * fuzz_serdes.h through every serdes. */
#define FUZZ_SERDES "fixed"
#include "fuzz_serdes.h"
