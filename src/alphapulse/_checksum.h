/* Kraken's book checksum (CRC32 over the top 10 asks then the top 10 bids, each price and size
 * written as the plain digits of its scaled integer), kept incrementally per book.
 *
 * Why: the collector verifies a checksum after every message, and a from-scratch checksum
 * formats 40 numbers and CRCs ~300 bytes, which was the largest single cost of a Kraken book
 * message.  Most messages change one or two levels of one side, so this cache keeps, per
 * side, the last top-10 levels, their digit text and its CRC:
 *
 *   - a side whose top 10 did not change costs a 10-level comparison and nothing else, and
 *     when neither side changed the last checksum is returned as it is;
 *   - a change at level j keeps the text of levels 0..j-1; levels after it that only moved (an
 *     insert or delete above them shifts them) reuse their cached text instead of being
 *     formatted again, so a typical message formats one or two numbers, not forty;
 *   - the changed side's ~150 bytes are CRC'd again in one slicing-by-8 pass.  (Restarting
 *     from the changed level would need the CRC register at every level boundary, i.e. CRC
 *     ~15 bytes at a time, mostly in the byte-wise tail loop; one pass keeps it simple and
 *     the cost small next to the formatting it saves);
 *   - asks and bids are CRC'd separately and joined with zlib's crc32_combine identity,
 *     crc(A || B) = (crc(A) * x^(8|B|) mod P) ^ crc(B), so an ask change never re-CRCs the
 *     bids and vice versa (x^(8n) mod P comes from a table; one branch-free GF(2) multiply
 *     joins them, and is skipped while the asks and the bids text length stay the same).
 *
 * The cache is a pure memo of the levels it was computed from (it compares every cached key
 * and size with the book's current top before trusting anything), so no mutation path has to
 * invalidate it and a stale cache is impossible by construction.  Keys are the book's side keys
 * (bids: price, asks: -price; both descending best first); the text of a key is the digits of
 * its absolute value, which is exactly Kraken's "remove the '.', strip leading zeros" rule
 * applied to the value printed at the book's precision.
 */
#ifndef ALPHAPULSE_CHECKSUM_H
#define ALPHAPULSE_CHECKSUM_H

#include <stdint.h>
#include <string.h>

#include "_crc32.h"
#include "_decimal.h"

#define AP_CK_LEVELS 10
/* two numbers per level, at most 19 digits each */
#define AP_CK_LEVEL_MAX 38
#define AP_CK_TEXT (AP_CK_LEVELS * AP_CK_LEVEL_MAX)
/* Text buffers have one level's worth of slack so a level is copied with a fixed-size memcpy
 * (a few inline moves instead of a libc call per level). */
#define AP_CK_BUF (AP_CK_TEXT + AP_CK_LEVEL_MAX + 2)

typedef struct {
    int64_t key[AP_CK_LEVELS];
    int64_t size[AP_CK_LEVELS];
    uint32_t crc;                        /* CRC-32 of text[0:off[n]] */
    uint16_t off[AP_CK_LEVELS + 1];      /* text of level i is text[off[i]:off[i + 1]] */
    int n;                               /* levels cached; -1 = nothing cached yet */
    char text[AP_CK_BUF];
} ap_ck_side;

typedef struct {
    ap_ck_side side[2];                  /* indexed like the book: 0 = bids, 1 = asks */
    uint32_t value;                      /* the checksum of both sides as cached */
    uint32_t asks_shifted;               /* crc(asks) * x^(8 * shift_len) mod P */
    int shift_len;                       /* bids text length asks_shifted is for; -1 none */
} ap_ck;

static inline void ap_ck_reset(ap_ck *ck)
{
    ck->side[0].n = -1;
    ck->side[1].n = -1;
    ck->value = 0;
    ck->asks_shifted = 0;
    ck->shift_len = -1;
}

/* x^(8n) mod P (reflected) for n = 0..AP_CK_TEXT: the CRC "append n zero bytes" operator. */
static uint32_t ap_ck_xpow8[AP_CK_TEXT + 1];

static inline void ap_ck_init(void)
{
    uint32_t c = 0x80000000u;            /* x^0 */
    for (int n = 0; n <= AP_CK_TEXT; n++) {
        ap_ck_xpow8[n] = c;
        c = ap_crc32_table[0][c & 0xFF] ^ (c >> 8);   /* times x^8: one zero byte */
    }
}

/* a * b mod P, both reflected (zlib's multmodp). */
static inline uint32_t ap_crc32_multmodp(uint32_t a, uint32_t b)
{
    /* Branch-free: a's bits are data, and 32 unpredictable branches cost more than the
     * arithmetic. */
    uint32_t p = 0;
    for (int k = 31; k >= 0; k--) {
        p ^= b & (0u - ((a >> k) & 1u));
        b = (b >> 1) ^ (0xEDB88320u & (0u - (b & 1u)));
    }
    return p;
}

/* Bring one side's cache up to date with its current top m levels (keys/sizes best first).
 * Returns 0 when they are the cached ones (nothing to do), 1 when the cache changed. */
static inline int ap_ck_side_sync(ap_ck_side *c, const int64_t *key, const int64_t *size, int m)
{
    int old_n = c->n < 0 ? 0 : c->n;
    int j = 0, lim = m < old_n ? m : old_n;
    if (c->n >= 0) {
        while (j < lim && c->key[j] == key[j] && c->size[j] == size[j]) j++;
        if (j == m && m == old_n) return 0;          /* top unchanged */
    } else {
        c->off[0] = 0;
    }
    /* New text for levels j..m-1 goes to a scratch buffer first: it may reuse old text that
     * sits where the new text lands. */
    char buf[AP_CK_BUF];
    uint16_t len[AP_CK_LEVELS];
    size_t pos = 0;
    int o = j;
    for (int i = j; i < m; i++) {
        /* Old levels are in the same descending key order: walk them alongside. */
        while (o < old_n && c->key[o] > key[i]) o++;
        size_t start = pos;
        if (o < old_n && c->key[o] == key[i] && c->size[o] == size[i]) {
            memcpy(buf + pos, c->text + c->off[o], AP_CK_LEVEL_MAX);   /* fixed size: inline */
            pos += (size_t)(c->off[o + 1] - c->off[o]);
        } else {
            pos += (size_t)ap_format_digits(key[i], buf + pos);
            pos += (size_t)ap_format_digits(size[i], buf + pos);
        }
        len[i] = (uint16_t)(pos - start);
    }
    memcpy(c->text + c->off[j], buf, pos);
    size_t at = c->off[j];
    for (int i = j; i < m; i++) {
        at += len[i];
        c->key[i] = key[i];
        c->size[i] = size[i];
        c->off[i + 1] = (uint16_t)at;
    }
    c->crc = ap_crc32(c->text, at);
    c->n = m;
    return 1;
}

/* Join the two sides' CRCs into the checksum: crc(asks text || bids text).  The multiply by
 * x^(8|bids|) is redone only when the asks or the length of the bids text changed. */
static inline uint32_t ap_ck_join(ap_ck *ck, int asks_changed)
{
    const ap_ck_side *a = &ck->side[1], *b = &ck->side[0];
    int len_b = b->off[b->n];
    if (asks_changed || len_b != ck->shift_len) {
        ck->asks_shifted = ap_crc32_multmodp(ap_ck_xpow8[len_b], a->crc);
        ck->shift_len = len_b;
    }
    ck->value = ck->asks_shifted ^ b->crc;
    return ck->value;
}

/* The checksum of a book whose top levels per side are bk/bz (bids, nb of them) and ak/az
 * (asks, na), keys best first: the cached value when neither side's top changed. */
static inline uint32_t ap_ck_checksum(ap_ck *ck, const int64_t *bk, const int64_t *bz, int nb,
                                      const int64_t *ak, const int64_t *az, int na)
{
    int bids_changed = ap_ck_side_sync(&ck->side[0], bk, bz, nb);
    int asks_changed = ap_ck_side_sync(&ck->side[1], ak, az, na);
    return (bids_changed | asks_changed) ? ap_ck_join(ck, asks_changed) : ck->value;
}

#endif
