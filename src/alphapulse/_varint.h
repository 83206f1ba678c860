/* Compact integers for the binary Delta encoding.
 *
 * Every number is written as "mantissa * 10**tz": scaled exchange numbers are full of decimal
 * trailing zeros (a 0.1 tick at precision 8 is 10000000, a size of 4.0 is 400000000), so the
 * low `tzbits` bits of the first byte carry tz and the mantissa follows.  Price mantissas are
 * zigzag deltas from the previous level (usually a few ticks: tzbits 3, tz 0..7, leaving 4
 * mantissa bits in the first byte); sizes are absolute and often round (tzbits 4, tz 0..15,
 * 3 mantissa bits: 4.0, 0.5 or 0.001 at precision 8 take one byte).  Layout of one number:
 *   byte 0: [cont:1][mantissa low (7 - tzbits) bits][tz:tzbits]
 *   then, if cont, mantissa >> (7 - tzbits) as LEB128 (so up to 64 + 4 bits in all).
 */
#ifndef ALPHAPULSE_VARINT_H
#define ALPHAPULSE_VARINT_H

#include <stdint.h>
#include <stddef.h>

#define AP_VARINT_MAX 11   /* bytes one number can take */
#define AP_PRICE_TZBITS 3
#define AP_SIZE_TZBITS 4

static inline uint64_t ap_zigzag(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }
static inline int64_t ap_unzigzag(uint64_t u) { return (int64_t)(u >> 1) ^ -(int64_t)(u & 1); }

static inline size_t ap_put_uvarint(unsigned char *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (unsigned char)v;
    return n;
}

/* Reads an LEB128 uint64 from p[0:len]; returns bytes used, 0 on truncation or overflow. */
static inline size_t ap_get_uvarint(const unsigned char *p, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    for (size_t i = 0; i < len && i < 10; i++) {
        uint64_t b = p[i];
        if (i == 9 && b > 1) return 0;
        v |= (b & 0x7F) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return i + 1;
        }
    }
    return 0;
}

/* Split v into (mantissa, tz) with v == mantissa * 10**tz and tz <= max_tz. */
static inline void ap_split_tz(uint64_t v, unsigned max_tz, uint64_t *mantissa, unsigned *tz)
{
    unsigned t = 0;
    if (v != 0) {
        while (t < max_tz && v % 10 == 0) {
            v /= 10;
            t++;
        }
    }
    *mantissa = v;
    *tz = t;
}

static inline size_t ap_put_number(unsigned char *p, uint64_t mantissa, unsigned tz,
                                   unsigned tzbits)
{
    unsigned mbits = 7 - tzbits;
    unsigned char first = (unsigned char)(((mantissa & ((1u << mbits) - 1)) << tzbits) | tz);
    uint64_t rest = mantissa >> mbits;
    if (rest == 0) {
        p[0] = first;
        return 1;
    }
    p[0] = first | 0x80;
    return 1 + ap_put_uvarint(p + 1, rest);
}

/* Returns bytes used, 0 on truncated/overlong input. */
static inline size_t ap_get_number(const unsigned char *p, size_t len, unsigned tzbits,
                                   uint64_t *mantissa, unsigned *tz)
{
    uint64_t rest = 0;
    size_t used = 1;
    unsigned mbits = 7 - tzbits;
    if (len < 1) return 0;
    *tz = p[0] & ((1u << tzbits) - 1);
    if (p[0] & 0x80) {
        size_t k = ap_get_uvarint(p + 1, len - 1, &rest);
        if (k == 0 || rest > (UINT64_MAX >> mbits)) return 0;
        used += k;
    }
    *mantissa = (rest << mbits) | ((p[0] >> tzbits) & ((1u << mbits) - 1));
    return used;
}

/* mantissa * 10**tz as int64 when it fits in [lo, hi]; returns 0 on overflow. */
static inline int ap_scale_signed(int64_t mantissa, unsigned tz, int64_t *out)
{
    for (unsigned k = 0; k < tz; k++) {
        if (mantissa > INT64_MAX / 10 || mantissa < INT64_MIN / 10) return 0;
        mantissa *= 10;
    }
    *out = mantissa;
    return 1;
}

#endif
