/* One side of an L2 book: parallel sorted int64 arrays (key, size), best level at the END.
 *
 * Why this shape: almost every exchange update touches the first few levels, so with the best
 * level last an insert or delete near the top moves only the handful of entries above it, and
 * top-N reads are a contiguous walk backwards from the end (no tree, no re-sort).  The live
 * block [lo, hi) floats inside a buffer of `cap` slots with slack at both ends: an insert or
 * delete shifts whichever part of the block is shorter, so a change far from the top of a
 * 46,000-level Coinbase book is just as cheap, and dropping the worst levels after a depth
 * truncation is `lo += k` (no move at all).
 *
 * Keys sort ascending: bids use key = price (best = highest = last), asks use key = -price
 * (best = lowest price = highest key = last).  Prices are positive, so -price never overflows.
 */
#ifndef ALPHAPULSE_LEVELS_H
#define ALPHAPULSE_LEVELS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t *keys;
    int64_t *sizes;
    Py_ssize_t lo, hi, cap;
} ap_side;

#define AP_SIDE_MIN_CAP 16

static inline Py_ssize_t ap_side_count(const ap_side *s) { return s->hi - s->lo; }

static void ap_side_free(ap_side *s)
{
    free(s->keys);
    free(s->sizes);
    s->keys = s->sizes = NULL;
    s->lo = s->hi = s->cap = 0;
}

/* Move the block into a buffer of new_cap slots (new_cap >= count), a quarter of the slack
 * below it and three quarters above: inserts at the top are the common case.  Returns -1 on
 * allocation failure with the side untouched. */
static int ap_side_relayout(ap_side *s, Py_ssize_t new_cap)
{
    Py_ssize_t n = ap_side_count(s);
    Py_ssize_t new_lo = (new_cap - n) / 4;
    if (new_cap == s->cap && s->keys != NULL) {
        memmove(s->keys + new_lo, s->keys + s->lo, (size_t)n * sizeof(int64_t));
        memmove(s->sizes + new_lo, s->sizes + s->lo, (size_t)n * sizeof(int64_t));
    } else {
        int64_t *k = (int64_t *)malloc((size_t)new_cap * sizeof(int64_t));
        int64_t *z = (int64_t *)malloc((size_t)new_cap * sizeof(int64_t));
        if (k == NULL || z == NULL) {
            free(k);
            free(z);
            return -1;
        }
        if (n) {
            memcpy(k + new_lo, s->keys + s->lo, (size_t)n * sizeof(int64_t));
            memcpy(z + new_lo, s->sizes + s->lo, (size_t)n * sizeof(int64_t));
        }
        free(s->keys);
        free(s->sizes);
        s->keys = k;
        s->sizes = z;
        s->cap = new_cap;
    }
    s->lo = new_lo;
    s->hi = new_lo + n;
    return 0;
}

/* Guarantee that `extra` more inserts need no allocation: after this, cap >= 2 * (count +
 * extra) + MIN, and relayouts inside that budget only move data.  Batches call it before
 * mutating anything, which is what makes them all-or-nothing even if malloc fails. */
static int ap_side_reserve(ap_side *s, Py_ssize_t extra)
{
    Py_ssize_t need = 2 * (ap_side_count(s) + extra) + AP_SIDE_MIN_CAP;
    if (s->cap >= need) return 0;
    return ap_side_relayout(s, need);
}

/* Re-centre (or grow) when the end we want to shift into is full; *i follows the block. */
static int ap_side_make_room(ap_side *s, Py_ssize_t *i)
{
    Py_ssize_t old_lo = s->lo;
    Py_ssize_t need = 2 * (ap_side_count(s) + 1) + AP_SIDE_MIN_CAP;
    if (ap_side_relayout(s, s->cap >= need ? s->cap : need) < 0) return -1;
    *i += s->lo - old_lo;
    return 0;
}

/* Index of the first key >= key in [lo, hi] (hi when every key is smaller).  Gallops down from
 * the top because that is where updates land; falls back to binary search in the bracket. */
static inline Py_ssize_t ap_side_lower_bound(const ap_side *s, int64_t key)
{
    const int64_t *keys = s->keys;
    Py_ssize_t b = s->hi, l, step = 1;
    for (;;) {
        Py_ssize_t p = b - step;
        if (p < s->lo) {
            l = s->lo;
            break;
        }
        if (keys[p] >= key) {
            b = p;
            step <<= 1;
        } else {
            l = p + 1;
            break;
        }
    }
    while (l < b) {
        Py_ssize_t m = l + ((b - l) >> 1);
        if (keys[m] >= key) b = m;
        else l = m + 1;
    }
    return l;
}

static int ap_side_insert_at(ap_side *s, Py_ssize_t i, int64_t key, int64_t size)
{
    Py_ssize_t left = i - s->lo, right = s->hi - i;
    if (right <= left || s->keys == NULL) {
        if (s->keys == NULL || s->hi == s->cap) {
            if (ap_side_make_room(s, &i) < 0) return -1;
        }
        memmove(s->keys + i + 1, s->keys + i, (size_t)right * sizeof(int64_t));
        memmove(s->sizes + i + 1, s->sizes + i, (size_t)right * sizeof(int64_t));
        s->hi++;
    } else {
        if (s->lo == 0) {
            if (ap_side_make_room(s, &i) < 0) return -1;
        }
        memmove(s->keys + s->lo - 1, s->keys + s->lo, (size_t)left * sizeof(int64_t));
        memmove(s->sizes + s->lo - 1, s->sizes + s->lo, (size_t)left * sizeof(int64_t));
        s->lo--;
        i--;
    }
    s->keys[i] = key;
    s->sizes[i] = size;
    return 0;
}

static inline void ap_side_remove_at(ap_side *s, Py_ssize_t i)
{
    Py_ssize_t left = i - s->lo, right = s->hi - i - 1;
    if (left < right) {
        memmove(s->keys + s->lo + 1, s->keys + s->lo, (size_t)left * sizeof(int64_t));
        memmove(s->sizes + s->lo + 1, s->sizes + s->lo, (size_t)left * sizeof(int64_t));
        s->lo++;
    } else {
        memmove(s->keys + i, s->keys + i + 1, (size_t)right * sizeof(int64_t));
        memmove(s->sizes + i, s->sizes + i + 1, (size_t)right * sizeof(int64_t));
        s->hi--;
    }
}

/* Set the level at key to size (0 deletes).  Returns 0 when nothing changed, 1 when the book
 * changed, -1 when an insert could not allocate (side untouched). */
static inline int ap_side_set(ap_side *s, int64_t key, int64_t size)
{
    Py_ssize_t i = s->keys == NULL ? s->hi : ap_side_lower_bound(s, key);
    if (i < s->hi && s->keys[i] == key) {
        if (size == 0) {
            ap_side_remove_at(s, i);
            return 1;
        }
        if (s->sizes[i] == size) return 0;
        s->sizes[i] = size;
        return 1;
    }
    if (size == 0) return 0;
    if (ap_side_insert_at(s, i, key, size) < 0) return -1;
    return 1;
}

/* Size at key, 0 when absent. */
static inline int64_t ap_side_get(const ap_side *s, int64_t key)
{
    if (s->keys == NULL) return 0;
    Py_ssize_t i = ap_side_lower_bound(s, key);
    return (i < s->hi && s->keys[i] == key) ? s->sizes[i] : 0;
}

/* Keep the best `depth` levels (depth 0 = unlimited); returns how many were dropped.  The
 * dropped entries stay readable at [lo - dropped, lo) until the next mutation. */
static inline Py_ssize_t ap_side_truncate(ap_side *s, Py_ssize_t depth)
{
    Py_ssize_t n = ap_side_count(s);
    if (depth <= 0 || n <= depth) return 0;
    s->lo += n - depth;
    return n - depth;
}

#endif
