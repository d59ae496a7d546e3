/* ws_codec.c - the RFC 6455 frame header codec, masking, incremental UTF-8
 * validation and the Sec-WebSocket-Accept key. No I/O, no allocation (except
 * inside OpenSSL for absurdly long keys). */
#include "mw_ws.h"
#include "ws_impl.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <string.h>

/* ---- frame header ------------------------------------------------------------ */

static bool known_opcode(unsigned op) { return op <= MW_WS_BINARY || (op >= MW_WS_CLOSE && op <= MW_WS_PONG); }

/* Checks are made as soon as the byte they need is present, so a bad header
 * fails on its first bad byte rather than when 14 bytes have arrived. */
ssize_t mw__ws_hdr_decode(const uint8_t *in, size_t len, bool expect_masked, uint64_t max_len,
                         mw__ws_hdr_t *h) {
    if (len < 1) return MW_EAGAIN;
    unsigned op = in[0] & 0x0Fu;
    bool fin = in[0] & 0x80u, ctl = op & 0x8u;
    if ((in[0] & 0x70u) || !known_opcode(op) || (ctl && !fin)) return MW_EPROTO;
    if (len < 2) return MW_EAGAIN;
    bool masked = in[1] & 0x80u;
    unsigned l7 = in[1] & 0x7Fu;
    if (masked != expect_masked || (ctl && l7 > 125)) return MW_EPROTO;
    size_t ext = l7 == 126 ? 2 : l7 == 127 ? 8 : 0;
    uint64_t n = l7;
    if (ext == 8 && len >= 3 && (in[2] & 0x80u)) return MW_EPROTO;
    if (ext) {
        if (len < 2 + ext) return MW_EAGAIN;
        n = 0;
        for (size_t i = 0; i < ext; i++) n = n << 8 | in[2 + i];
        if (n < (ext == 2 ? 126u : 65536u)) return MW_EPROTO; /* not the shortest encoding */
    }
    /* Control frames are bounded by 125 above; max_len limits data frames. */
    if (!ctl && n > max_len) return MW_ETOOBIG;
    size_t hl = 2 + ext + (masked ? 4 : 0);
    if (len < hl) return MW_EAGAIN;
    h->fin = fin;
    h->rsv = 0;
    h->opcode = (uint8_t)op;
    h->masked = masked;
    if (masked) memcpy(h->mask, in + 2 + ext, 4);
    else memset(h->mask, 0, 4);
    h->len = n;
    h->hdr_len = hl;
    return (ssize_t)hl;
}

size_t mw__ws_hdr_encode(uint8_t *out, bool fin, int opcode, uint64_t len, const uint8_t mask[4]) {
    size_t k = 2;
    out[0] = (uint8_t)((fin ? 0x80u : 0) | ((unsigned)opcode & 0x0Fu));
    uint8_t mbit = mask ? 0x80u : 0;
    if (len < 126) {
        out[1] = (uint8_t)(mbit | len);
    } else if (len <= 0xFFFFu) {
        out[1] = mbit | 126u;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        k = 4;
    } else {
        out[1] = mbit | 127u;
        for (int i = 0; i < 8; i++) out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        k = 10;
    }
    if (mask) {
        memcpy(out + k, mask, 4);
        k += 4;
    }
    return k;
}

/* XOR in memory order is independent of endianness: the 8-byte pattern is
 * the mask laid out twice from offset `off`, loaded and stored with memcpy so
 * alignment never matters. */
void mw__ws_mask(uint8_t *p, size_t n, const uint8_t mask[4], size_t off) {
    uint8_t m8[8];
    for (int i = 0; i < 8; i++) m8[i] = mask[(off + (size_t)i) & 3];
    uint64_t m;
    memcpy(&m, m8, 8);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        uint64_t v[4];
        memcpy(v, p + i, 32);
        v[0] ^= m, v[1] ^= m, v[2] ^= m, v[3] ^= m;
        memcpy(p + i, v, 32);
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        v ^= m;
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++) p[i] ^= m8[i & 7];
}

/* ---- UTF-8 ---------------------------------------------------------------------
 * A DFA over byte classes. States name what the next byte must be, so the
 * first byte that cannot continue a valid sequence moves to REJ at once:
 * overlongs (C0, C1, E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and code
 * points over U+10FFFF (F4 90.., F5..FF) all fail on the byte that decides. */
enum { ACC = 0, REJ, C1, C2, C3, SE0, SED, SF0, SF4, NSTATES };
enum { K_ASCII, K_80, K_90, K_A0, K_BAD, K_C2, K_E0, K_E1, K_ED, K_F0, K_F1, K_F4, NCLASSES };

static const uint8_t utf8_class[256] = {
    /* 00..7F */
    [0x00] = K_ASCII, /* the rest of 00..7F are K_ASCII (0) by default */
    /* 80..8F */
    [0x80] = K_80, K_80, K_80, K_80, K_80, K_80, K_80, K_80, K_80, K_80, K_80, K_80, K_80, K_80, K_80, K_80,
    /* 90..9F */
    [0x90] = K_90, K_90, K_90, K_90, K_90, K_90, K_90, K_90, K_90, K_90, K_90, K_90, K_90, K_90, K_90, K_90,
    /* A0..BF */
    [0xA0] = K_A0, K_A0, K_A0, K_A0, K_A0, K_A0, K_A0, K_A0, K_A0, K_A0, K_A0, K_A0, K_A0, K_A0, K_A0, K_A0,
    [0xB0] = K_A0, K_A0, K_A0, K_A0, K_A0, K_A0, K_A0, K_A0, K_A0, K_A0, K_A0, K_A0, K_A0, K_A0, K_A0, K_A0,
    /* C0..DF */
    [0xC0] = K_BAD, K_BAD, K_C2, K_C2, K_C2, K_C2, K_C2, K_C2, K_C2, K_C2, K_C2, K_C2, K_C2, K_C2, K_C2, K_C2,
    [0xD0] = K_C2, K_C2, K_C2, K_C2, K_C2, K_C2, K_C2, K_C2, K_C2, K_C2, K_C2, K_C2, K_C2, K_C2, K_C2, K_C2,
    /* E0..EF */
    [0xE0] = K_E0, K_E1, K_E1, K_E1, K_E1, K_E1, K_E1, K_E1, K_E1, K_E1, K_E1, K_E1, K_E1, K_ED, K_E1, K_E1,
    /* F0..FF */
    [0xF0] = K_F0, K_F1, K_F1, K_F1, K_F4, K_BAD, K_BAD, K_BAD, K_BAD, K_BAD, K_BAD, K_BAD, K_BAD, K_BAD,
    K_BAD, K_BAD,
};

#define R REJ
static const uint8_t utf8_next[NSTATES][NCLASSES] = {
    /*         ASCII 80  90   A0   BAD C2  E0   E1  ED   F0   F1  F4 */
    [ACC] = {ACC, R, R, R, R, C1, SE0, C2, SED, SF0, C3, SF4},
    [REJ] = {R, R, R, R, R, R, R, R, R, R, R, R},
    [C1] = {R, ACC, ACC, ACC, R, R, R, R, R, R, R, R},
    [C2] = {R, C1, C1, C1, R, R, R, R, R, R, R, R},
    [C3] = {R, C2, C2, C2, R, R, R, R, R, R, R, R},
    [SE0] = {R, R, R, C1, R, R, R, R, R, R, R, R},
    [SED] = {R, C1, C1, R, R, R, R, R, R, R, R, R},
    [SF0] = {R, R, C2, C2, R, R, R, R, R, R, R, R},
    [SF4] = {R, C2, R, R, R, R, R, R, R, R, R, R},
};
#undef R

bool mw__utf8_feed(mw__utf8_state_t *u, const uint8_t *p, size_t n) {
    uint32_t s = u->state;
    size_t i = 0;
    while (i < n) {
        if (s == ACC) { /* ASCII runs, 8 bytes at a time */
            while (i + 8 <= n) {
                uint64_t v;
                memcpy(&v, p + i, 8);
                if (v & UINT64_C(0x8080808080808080)) break;
                i += 8;
            }
            if (i == n) break;
        }
        s = utf8_next[s][utf8_class[p[i++]]];
        if (s == REJ) break;
    }
    u->state = s;
    return s != REJ;
}

/* ---- Sec-WebSocket-Accept ---------------------------------------------------- */

static const char WS_GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

void mw__ws_accept_key(const char *key, size_t key_len, char out[29]) {
    unsigned char md[SHA_DIGEST_LENGTH];
    unsigned char buf[128];
    size_t g = sizeof WS_GUID - 1;
    if (key_len <= sizeof buf - g) {
        memcpy(buf, key, key_len);
        memcpy(buf + key_len, WS_GUID, g);
        SHA1(buf, key_len + g, md);
    } else { /* not a valid key anyway; hash it without a fixed-size copy */
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        unsigned int mdn = 0;
        if (!c || !EVP_DigestInit_ex(c, EVP_sha1(), NULL) || !EVP_DigestUpdate(c, key, key_len) ||
            !EVP_DigestUpdate(c, WS_GUID, g) || !EVP_DigestFinal_ex(c, md, &mdn))
            memset(md, 0, sizeof md);
        EVP_MD_CTX_free(c);
    }
    EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH);
    out[28] = '\0';
}
