/* Compiled by test_schema: must compile as is and fail with -DWRONG_*. */
#include "test_proto.h"

struct not_in_protocol { int x; };

int typed_call(mw_serdes_t *sd, uint8_t *out, size_t cap);
int typed_call(mw_serdes_t *sd, uint8_t *out, size_t cap) {
    ping_t p = {1, 2};
    all_kinds_t a;
    memset(&a, 0, sizeof a);
#if defined(WRONG_ENCODE)
    return (int)all_kinds_encode(sd, &p, out, cap);
#elif defined(WRONG_GENERIC)
    struct not_in_protocol n = {0};
    return MW_SCHEMA_OF(&n, TEST_MSGS)->tag;
#else
    return (int)(all_kinds_encode(sd, &a, out, cap) + ping_encode(sd, &p, out, cap) +
                 MW_SCHEMA_OF(&p, TEST_MSGS)->tag);
#endif
}
