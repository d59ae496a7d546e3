/* field.c - helpers the serializers share (field access by kind, ranges,
 * UTF-8 validation, kind names): a leaf under every serdes file. */
#include "mw_schema.h"
#include "serdes_impl.h"

#include <string.h>

const char *mw_fkind_name(int kind) {
    static const char *names[] = {"i8", "i16", "i32", "i64", "u8", "u16", "u32",
                                  "u64", "f64", "bool", "chars", "bytes", "enum"};
    return kind >= 0 && kind <= MW_FK_ENUM ? names[kind] : "?";
}

bool mw__fkind_is_signed(int k) { return k >= MW_FK_I8 && k <= MW_FK_I64; }
bool mw__fkind_is_unsigned(int k) {
    return (k >= MW_FK_U8 && k <= MW_FK_U64) || k == MW_FK_BOOL || k == MW_FK_ENUM;
}

int64_t mw__fkind_min(int k) {
    switch (k) {
    case MW_FK_I8: return INT8_MIN;
    case MW_FK_I16: return INT16_MIN;
    case MW_FK_I32: return INT32_MIN;
    case MW_FK_I64: return INT64_MIN;
    default: return 0;
    }
}

uint64_t mw__fkind_max(const mw_field_t *f) {
    switch (f->kind) {
    case MW_FK_I8: return INT8_MAX;
    case MW_FK_I16: return INT16_MAX;
    case MW_FK_I32: return INT32_MAX;
    case MW_FK_I64: return INT64_MAX;
    case MW_FK_U8: return UINT8_MAX;
    case MW_FK_U16: return UINT16_MAX;
    case MW_FK_U32: return UINT32_MAX;
    case MW_FK_U64: return UINT64_MAX;
    case MW_FK_BOOL: return 1;
    case MW_FK_ENUM: return f->limit - 1u;
    default: return 0;
    }
}

int64_t mw__field_get_i64(const mw_field_t *f, const void *msg) {
    const char *p = (const char *)msg + f->offset;
    switch (f->kind) {
    case MW_FK_I8: { int8_t v; memcpy(&v, p, 1); return v; }
    case MW_FK_I16: { int16_t v; memcpy(&v, p, 2); return v; }
    case MW_FK_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case MW_FK_I64: { int64_t v; memcpy(&v, p, 8); return v; }
    default: return (int64_t)mw__field_get_u64(f, msg);
    }
}

uint64_t mw__field_get_u64(const mw_field_t *f, const void *msg) {
    const char *p = (const char *)msg + f->offset;
    switch (f->kind) {
    case MW_FK_U8:
    case MW_FK_ENUM: { uint8_t v; memcpy(&v, p, 1); return v; }
    /* Read a bool's byte, not a bool: a corrupt value (not 0/1) must be seen. */
    case MW_FK_BOOL: { uint8_t v; memcpy(&v, p, 1); return v; }
    case MW_FK_U16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case MW_FK_U32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case MW_FK_U64: { uint64_t v; memcpy(&v, p, 8); return v; }
    default: return (uint64_t)mw__field_get_i64(f, msg);
    }
}

void mw__field_set_i64(const mw_field_t *f, void *msg, int64_t v) {
    char *p = (char *)msg + f->offset;
    switch (f->kind) {
    case MW_FK_I8: { int8_t x = (int8_t)v; memcpy(p, &x, 1); break; }
    case MW_FK_I16: { int16_t x = (int16_t)v; memcpy(p, &x, 2); break; }
    case MW_FK_I32: { int32_t x = (int32_t)v; memcpy(p, &x, 4); break; }
    case MW_FK_I64: memcpy(p, &v, 8); break;
    default: mw__field_set_u64(f, msg, (uint64_t)v); break;
    }
}

void mw__field_set_u64(const mw_field_t *f, void *msg, uint64_t v) {
    char *p = (char *)msg + f->offset;
    switch (f->kind) {
    case MW_FK_U8:
    case MW_FK_ENUM:
    case MW_FK_BOOL: { uint8_t x = (uint8_t)v; memcpy(p, &x, 1); break; }
    case MW_FK_U16: { uint16_t x = (uint16_t)v; memcpy(p, &x, 2); break; }
    case MW_FK_U32: { uint32_t x = (uint32_t)v; memcpy(p, &x, 4); break; }
    case MW_FK_U64: memcpy(p, &v, 8); break;
    default: mw__field_set_i64(f, msg, (int64_t)v); break;
    }
}

/* Well-formed UTF-8 (Unicode Table 3-7), by lead byte 0xc0..0xff: the
 * sequence length (0: never a lead byte) and the range of the second byte,
 * which rules out overlongs, surrogates and code points over U+10FFFF. The
 * other continuation bytes are 0x80..0xbf. */
static const struct { uint8_t len, lo, hi; } utf8_lead[64] = {
    [0x02 ... 0x1f] = {2, 0x80, 0xbf},
    [0x20] = {3, 0xa0, 0xbf},
    [0x21 ... 0x2c] = {3, 0x80, 0xbf},
    [0x2d] = {3, 0x80, 0x9f},
    [0x2e ... 0x2f] = {3, 0x80, 0xbf},
    [0x30] = {4, 0x90, 0xbf},
    [0x31 ... 0x33] = {4, 0x80, 0xbf},
    [0x34] = {4, 0x80, 0x8f},
};

bool mw__utf8_valid(const uint8_t *p, size_t n) {
    size_t i = 0;
    for (;;) {
        /* ASCII eight bytes at a time, then byte by byte up to a lead byte */
        for (uint64_t x; n - i >= 8; i += 8) {
            memcpy(&x, p + i, 8);
            if (x & 0x8080808080808080ull) break;
        }
        while (i < n && p[i] < 0x80) i++;
        if (i == n) return true;
        uint8_t c = p[i];
        if (c < 0xc0) return false;
        unsigned len = utf8_lead[c - 0xc0].len;
        if (len == 0 || n - i < len) return false;
        if (p[i + 1] < utf8_lead[c - 0xc0].lo || p[i + 1] > utf8_lead[c - 0xc0].hi) return false;
        for (unsigned k = 2; k < len; k++)
            if ((p[i + k] & 0xc0) != 0x80) return false;
        i += len;
    }
}
