/* test_msgs.c - the message stream the end-to-end tests send and check. */
#include "test_proto.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

const mw_schema_t *test_make_msg(uint64_t i, test_msg_t *m) {
    static const double f64s[] = {0.0,    -0.0,       -1.5, 3.141592653589793, 1e300, -2.2250738585072014e-308,
                                  123456789.125, 5e-324, 1.0 / 3.0, -123456.0625};
    static const char *const syms[] = {"", "A", "ABCDEFGH", "\xc3\xa9\xe2\x82\xacx", "q\"\\\x01", "sym"};
    memset(m, 0, sizeof *m);
    if (i % 4 == 3) {
        m->ping.seq = i;
        m->ping.sent_ns = i * UINT64_C(0x9E3779B97F4A7C15);
        return ping_schema();
    }
    all_kinds_t *a = &m->all_kinds;
    switch (i % 5) {
    case 0:
        a->i8 = INT8_MIN, a->i16 = INT16_MIN, a->i32 = INT32_MIN, a->i64 = INT64_MIN;
        break; /* unsigned fields stay 0 */
    case 1:
        a->i8 = INT8_MAX, a->i16 = INT16_MAX, a->i32 = INT32_MAX, a->i64 = INT64_MAX;
        a->u8 = UINT8_MAX, a->u16 = UINT16_MAX, a->u32 = UINT32_MAX, a->u64 = UINT64_MAX;
        break;
    default:
        a->i8 = (int8_t)(uint8_t)(i * 37u);
        a->i16 = (int16_t)(uint16_t)(i * 4099u);
        a->i32 = (int32_t)(uint32_t)(i * 2654435761u);
        a->i64 = (int64_t)(i * UINT64_C(0x9E3779B97F4A7C15));
        a->u8 = (uint8_t)(i * 13u);
        a->u16 = (uint16_t)(i * 40503u);
        a->u32 = (uint32_t)(i * 2246822519u);
        a->u64 = i * UINT64_C(0xC2B2AE3D27D4EB4F);
        break;
    }
    a->f64 = i % 2 ? f64s[i % (sizeof f64s / sizeof f64s[0])] : (double)i * 0.25 - 100.0;
    a->flag = (i / 2) % 2;
    const char *sym = syms[i % (sizeof syms / sizeof syms[0])];
    memcpy(a->sym, sym, strlen(sym)); /* "ABCDEFGH" fills all 8 bytes, no NUL */
    for (int k = 0; k < 4; k++) a->raw[k] = (uint8_t)(i * 31u + (unsigned)k * 85u);
    a->side = (uint8_t)(i % 3);
    return all_kinds_schema();
}

#define CMP(field, fmt)                                                                         \
    if (got->field != want->field) {                                                            \
        snprintf(why, cap, "msg %" PRIu64 ": " #field " is %" fmt ", sent %" fmt, i,            \
                 got->field, want->field);                                                      \
        return false;                                                                           \
    }

static bool same_all_kinds(uint64_t i, const all_kinds_t *got, const all_kinds_t *want, char *why,
                           size_t cap) {
    CMP(i8, PRId8) CMP(i16, PRId16) CMP(i32, PRId32) CMP(i64, PRId64)
    CMP(u8, PRIu8) CMP(u16, PRIu16) CMP(u32, PRIu32) CMP(u64, PRIu64)
    CMP(flag, "d") CMP(side, PRIu8)
    if (memcmp(&got->f64, &want->f64, sizeof got->f64) != 0) { /* bit-exact: -0.0 too */
        snprintf(why, cap, "msg %" PRIu64 ": f64 is %.17g, sent %.17g", i, got->f64, want->f64);
        return false;
    }
    if (memcmp(got->sym, want->sym, sizeof got->sym) != 0) {
        snprintf(why, cap, "msg %" PRIu64 ": sym is \"%.8s\", sent \"%.8s\"", i, got->sym, want->sym);
        return false;
    }
    if (memcmp(got->raw, want->raw, sizeof got->raw) != 0) {
        snprintf(why, cap, "msg %" PRIu64 ": raw differs", i);
        return false;
    }
    return true;
}

static bool same_ping(uint64_t i, const ping_t *got, const ping_t *want, char *why, size_t cap) {
    CMP(seq, PRIu64) CMP(sent_ns, PRIu64)
    return true;
}

bool test_check_echo(uint64_t i, const mw_schema_t *s, const void *msg, char *why, size_t cap) {
    test_msg_t want;
    const mw_schema_t *ws = test_make_msg(i, &want);
    if (!s || s->tag != ws->tag) {
        snprintf(why, cap, "msg %" PRIu64 ": got type %s, sent %s", i, s ? s->name : "(none)", ws->name);
        return false;
    }
    if (ws->tag == ping_TAG) return same_ping(i, msg, &want.ping, why, cap);
    return same_all_kinds(i, msg, &want.all_kinds, why, cap);
}
