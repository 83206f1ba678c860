/* CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320): the same function as zlib.crc32,
 * which is what Kraken's book checksum uses.  Slicing-by-8 (eight 256-entry tables, 8 KiB):
 * the top-10 checksum string is ~300-400 bytes, computed on every Kraken message, and the
 * byte-at-a-time loop's serial dependency made it the larger half of checksum(). */
#ifndef ALPHAPULSE_CRC32_H
#define ALPHAPULSE_CRC32_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>

static uint32_t ap_crc32_table[8][256];

static inline void ap_crc32_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        ap_crc32_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = ap_crc32_table[0][i];
        for (int t = 1; t < 8; t++) {
            c = ap_crc32_table[0][c & 0xFF] ^ (c >> 8);
            ap_crc32_table[t][i] = c;
        }
    }
}

/* Advance a raw CRC register (no pre/post inversion) over data[0:n]: the building block of
 * the incremental book checksum (_checksum.h), which keeps registers at level boundaries. */
static inline uint32_t ap_crc32_update(uint32_t c, const char *data, size_t n)
{
    const unsigned char *p = (const unsigned char *)data;
    while (n >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        lo = __builtin_bswap32(lo);
        hi = __builtin_bswap32(hi);
#endif
        lo ^= c;
        c = ap_crc32_table[7][lo & 0xFF] ^ ap_crc32_table[6][(lo >> 8) & 0xFF]
            ^ ap_crc32_table[5][(lo >> 16) & 0xFF] ^ ap_crc32_table[4][lo >> 24]
            ^ ap_crc32_table[3][hi & 0xFF] ^ ap_crc32_table[2][(hi >> 8) & 0xFF]
            ^ ap_crc32_table[1][(hi >> 16) & 0xFF] ^ ap_crc32_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    if (n >= 4) {            /* the checksum CRCs one ~15-byte level at a time: halve the tail */
        uint32_t w;
        memcpy(&w, p, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        w = __builtin_bswap32(w);
#endif
        w ^= c;
        c = ap_crc32_table[3][w & 0xFF] ^ ap_crc32_table[2][(w >> 8) & 0xFF]
            ^ ap_crc32_table[1][(w >> 16) & 0xFF] ^ ap_crc32_table[0][w >> 24];
        p += 4;
        n -= 4;
    }
    while (n--) c = ap_crc32_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c;
}

static inline uint32_t ap_crc32(const char *data, size_t n)
{
    return ap_crc32_update(0xFFFFFFFFu, data, n) ^ 0xFFFFFFFFu;
}

#endif
