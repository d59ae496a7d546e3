/* fuzz_serdes_text.c - the "text" decoder, with the round-trip property of
 * fuzz_serdes.h through every serdes. */
#define FUZZ_SERDES "text"
#include "fuzz_serdes.h"
