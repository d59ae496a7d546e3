/* fuzz_serdes_msgpack_array.c - the "msgpack-array" decoder, with the round-trip property of
 * fuzz_serdes.h through every serdes. */
#define FUZZ_SERDES "msgpack-array"
#include "fuzz_serdes.h"
