/* CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320): the same function as zlib.crc32,
 * which is what Kraken's book checksum uses.  Table-driven, slicing by one byte: the input is
 * at most a few hundred bytes (top 10 levels a side), so a bigger table would not pay. */
#ifndef ALPHAPULSE_CRC32_H
#define ALPHAPULSE_CRC32_H

#include <stdint.h>
#include <stddef.h>

static uint32_t ap_crc32_table[256];
static int ap_crc32_ready = 0;

static void ap_crc32_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        ap_crc32_table[i] = c;
    }
    ap_crc32_ready = 1;
}

static inline uint32_t ap_crc32(const char *data, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    const unsigned char *p = (const unsigned char *)data;
    for (size_t i = 0; i < n; i++) c = ap_crc32_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

#endif
