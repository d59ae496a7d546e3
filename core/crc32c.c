/* crc32c.c - CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the
 * journal's record checksum.
 *
 * Two implementations with the same result: a portable slice-by-8 table
 * walk (eight bytes per step, eight 1 KiB tables built once), and on x86-64
 * the SSE4.2 crc32 instruction, chosen at first use when the CPU has it.
 * The choice is made once (pthread_once) and kept in a function pointer.
 */
#include "journal_impl.h"

#include <pthread.h>
#include <string.h>

#define POLY 0x82F63B78u

static uint32_t tab[8][256];

static void tab_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (POLY & (0u - (c & 1u)));
        tab[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++) tab[t][i] = (tab[t - 1][i] >> 8) ^ tab[0][tab[t - 1][i] & 0xffu];
}

static uint32_t crc_sw(uint32_t crc, const uint8_t *p, size_t n) {
    crc = ~crc;
    while (n && ((uintptr_t)p & 7u)) {
        crc = tab[0][(crc ^ *p++) & 0xffu] ^ (crc >> 8);
        n--;
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8); /* little-endian hosts only (journal_impl.h) */
        uint32_t lo = crc ^ (uint32_t)w, hi = (uint32_t)(w >> 32);
        crc = tab[7][lo & 0xffu] ^ tab[6][(lo >> 8) & 0xffu] ^ tab[5][(lo >> 16) & 0xffu] ^ tab[4][lo >> 24] ^
              tab[3][hi & 0xffu] ^ tab[2][(hi >> 8) & 0xffu] ^ tab[1][(hi >> 16) & 0xffu] ^ tab[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) crc = tab[0][(crc ^ *p++) & 0xffu] ^ (crc >> 8);
    return ~crc;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_HW 1
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t n) {
    uint64_t c = ~crc;
    while (n && ((uintptr_t)p & 7u)) {
        c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
        n--;
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        n -= 8;
    }
    while (n--) c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    return ~(uint32_t)c;
}
#endif

static uint32_t (*crc_fn)(uint32_t, const uint8_t *, size_t);
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
    tab_init();
    crc_fn = crc_sw;
#ifdef HAVE_HW
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) crc_fn = crc_hw;
#endif
}

uint32_t mw__crc32c(uint32_t crc, const void *p, size_t n) {
    pthread_once(&crc_once, crc_init);
    return crc_fn(crc, p, n);
}

uint32_t mw__crc32c_sw(uint32_t crc, const void *p, size_t n) {
    pthread_once(&crc_once, crc_init);
    return crc_sw(crc, p, n);
}

bool mw__crc32c_hw(void) {
    pthread_once(&crc_once, crc_init);
    return crc_fn != crc_sw;
}
