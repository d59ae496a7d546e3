/* fuzz_serdes_msgpack.c - the "msgpack" decoder, with the round-trip property of
 * fuzz_serdes.h through every serdes. */
#define FUZZ_SERDES "msgpack"
#include "fuzz_serdes.h"
