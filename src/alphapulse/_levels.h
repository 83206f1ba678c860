/* One side of an L2 book: a sorted sequence of (key, size) levels stored in fixed-size chunks,
 * best level at the END of the last chunk.
 *
 * Why this shape: almost every exchange update touches the first few levels, so with the best
 * level last an insert or delete near the top moves only the handful of entries above it in
 * the last chunk, and top-N reads are a short walk backwards (no tree, no re-sort).  Chunks
 * of AP_CHUNK levels bound the cost of a change far from the top: Coinbase sends 46,000-level
 * books and changes deep inside them; a flat array would memmove tens of kilobytes for those,
 * a chunk moves at most AP_CHUNK entries plus a few pointers.  Dropping the worst levels
 * after a depth truncation frees whole chunks from the front.
 *
 * Keys sort ascending: bids use key = price (best = highest = last), asks use key = -price
 * (best = lowest price = highest key = last).  Prices are positive, so -price never overflows.
 *
 * Allocation only happens when a chunk splits (or the chunk index grows); ap_side_reserve()
 * secures chunks and index room for a whole batch up front, so batches stay all-or-nothing
 * even if malloc fails.
 */
#ifndef ALPHAPULSE_LEVELS_H
#define ALPHAPULSE_LEVELS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef AP_CHUNK
#define AP_CHUNK 128   /* levels per chunk; tests build with -DAP_CHUNK=4 to exercise splits */
#endif

typedef struct ap_chunk {
    int64_t keys[AP_CHUNK];
    int64_t sizes[AP_CHUNK];
    struct ap_chunk *next_free;
} ap_chunk;

/* Free chunks shared by every book in the process (the GIL serialises access): splits take
 * from it, emptied chunks return to it, and batches reserve from it up front, so steady-state
 * updates never call malloc.  Trimmed to AP_POOL_KEEP after batches. */
#define AP_POOL_KEEP 256
static ap_chunk *ap_pool_head = NULL;
static Py_ssize_t ap_pool_count = 0;

static inline ap_chunk *ap_pool_take(void)
{
    if (ap_pool_head) {
        ap_chunk *c = ap_pool_head;
        ap_pool_head = c->next_free;
        ap_pool_count--;
        return c;
    }
    return (ap_chunk *)malloc(sizeof(ap_chunk));
}

static inline void ap_pool_give(ap_chunk *c)
{
    if (ap_pool_count < AP_POOL_KEEP) {
        c->next_free = ap_pool_head;
        ap_pool_head = c;
        ap_pool_count++;
    } else {
        free(c);
    }
}

static inline int ap_pool_reserve(Py_ssize_t n)
{
    while (ap_pool_count < n) {
        ap_chunk *c = (ap_chunk *)malloc(sizeof(ap_chunk));
        if (!c) return -1;
        c->next_free = ap_pool_head;
        ap_pool_head = c;
        ap_pool_count++;
    }
    return 0;
}

static inline void ap_pool_trim(void)
{
    while (ap_pool_count > AP_POOL_KEEP) {
        ap_chunk *c = ap_pool_head;
        ap_pool_head = c->next_free;
        ap_pool_count--;
        free(c);
    }
}

typedef struct {
    ap_chunk **ch;       /* chunks in ascending key order */
    int64_t *maxkey;     /* last (largest) key of each chunk: the search index */
    int32_t *len;        /* levels used in each chunk (>= 1) */
    Py_ssize_t nch, cap; /* chunks in use, capacity of the three index arrays */
    Py_ssize_t count;    /* levels in all chunks */
} ap_side;

static inline Py_ssize_t ap_side_count(const ap_side *s) { return s->count; }

static inline void ap_side_free(ap_side *s)
{
    for (Py_ssize_t c = 0; c < s->nch; c++) ap_pool_give(s->ch[c]);
    free(s->ch);
    free(s->maxkey);
    free(s->len);
    memset(s, 0, sizeof(*s));
}

static inline int ap_side_grow_index(ap_side *s, Py_ssize_t need)
{
    if (s->cap >= need) return 0;
    Py_ssize_t cap = s->cap ? s->cap : 4;
    while (cap < need) cap *= 2;
    ap_chunk **ch = (ap_chunk **)realloc(s->ch, (size_t)cap * sizeof(*ch));
    if (!ch) return -1;
    s->ch = ch;
    int64_t *mk = (int64_t *)realloc(s->maxkey, (size_t)cap * sizeof(*mk));
    if (!mk) return -1;
    s->maxkey = mk;
    int32_t *ln = (int32_t *)realloc(s->len, (size_t)cap * sizeof(*ln));
    if (!ln) return -1;
    s->len = ln;
    s->cap = cap;
    return 0;
}

/* Guarantee that `extra` more inserts need no allocation.  Every split needs one chunk and
 * one index slot; a split leaves AP_CHUNK/2 free slots, so `extra` inserts split at most
 * nch + extra / (AP_CHUNK/2) + 1 times (and never more than `extra` times). */
static inline int ap_side_reserve(ap_side *s, Py_ssize_t extra)
{
    Py_ssize_t splits = s->nch + extra / (AP_CHUNK / 2) + 1;
    if (splits > extra + 1) splits = extra + 1;
    if (ap_side_grow_index(s, s->nch + splits) < 0) return -1;
    return ap_pool_reserve(splits);
}

/* First index in keys[0, n) with key >= key (n when none); gallops down from the top,
 * where updates land. */
static inline Py_ssize_t ap_chunk_lower_bound(const int64_t *keys, Py_ssize_t n, int64_t key)
{
    Py_ssize_t b = n, l, step = 1;
    for (;;) {
        Py_ssize_t p = b - step;
        if (p < 0) {
            l = 0;
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

/* First chunk whose max key >= key, or the last chunk when key is above all of them.
 * The last chunk's max is known to be >= key past the first test, so the search over the
 * others may fall through to it. */
static inline Py_ssize_t ap_side_chunk_for(const ap_side *s, int64_t key)
{
    Py_ssize_t last = s->nch - 1;
    if (s->maxkey[last] < key) return last;
    return ap_chunk_lower_bound(s->maxkey, last, key);
}

static inline void ap_side_remove_chunk(ap_side *s, Py_ssize_t c)
{
    ap_pool_give(s->ch[c]);
    Py_ssize_t tail = s->nch - c - 1;
    memmove(s->ch + c, s->ch + c + 1, (size_t)tail * sizeof(*s->ch));
    memmove(s->maxkey + c, s->maxkey + c + 1, (size_t)tail * sizeof(*s->maxkey));
    memmove(s->len + c, s->len + c + 1, (size_t)tail * sizeof(*s->len));
    s->nch--;
}

/* Insert a fresh chunk at index c (index capacity and a chunk must be available). */
static inline ap_chunk *ap_side_insert_chunk(ap_side *s, Py_ssize_t c)
{
    if (ap_side_grow_index(s, s->nch + 1) < 0) return NULL;
    ap_chunk *k = ap_pool_take();
    if (!k) return NULL;
    Py_ssize_t tail = s->nch - c;
    memmove(s->ch + c + 1, s->ch + c, (size_t)tail * sizeof(*s->ch));
    memmove(s->maxkey + c + 1, s->maxkey + c, (size_t)tail * sizeof(*s->maxkey));
    memmove(s->len + c + 1, s->len + c, (size_t)tail * sizeof(*s->len));
    s->ch[c] = k;
    s->len[c] = 0;
    s->nch++;
    return k;
}

/* Set the level at key to size (0 deletes).  Returns 0 when nothing changed, 1 when the book
 * changed, -1 when an insert could not allocate (side untouched). */
static inline int ap_side_set(ap_side *s, int64_t key, int64_t size)
{
    if (s->nch == 0) {
        if (size == 0) return 0;
        ap_chunk *k = ap_side_insert_chunk(s, 0);
        if (!k) return -1;
        k->keys[0] = key;
        k->sizes[0] = size;
        s->len[0] = 1;
        s->maxkey[0] = key;
        s->count = 1;
        return 1;
    }
    Py_ssize_t c = ap_side_chunk_for(s, key);
    ap_chunk *k = s->ch[c];
    Py_ssize_t n = s->len[c];
    Py_ssize_t i = ap_chunk_lower_bound(k->keys, n, key);
    if (i < n && k->keys[i] == key) {
        if (size != 0) {
            if (k->sizes[i] == size) return 0;
            k->sizes[i] = size;
            return 1;
        }
        memmove(k->keys + i, k->keys + i + 1, (size_t)(n - i - 1) * sizeof(int64_t));
        memmove(k->sizes + i, k->sizes + i + 1, (size_t)(n - i - 1) * sizeof(int64_t));
        s->count--;
        if (--s->len[c] == 0) {
            ap_side_remove_chunk(s, c);
            return 1;
        }
        s->maxkey[c] = k->keys[s->len[c] - 1];
        /* Merge into the previous chunk when both are sparse, so chunks stay dense. */
        if (c > 0 && s->len[c - 1] + s->len[c] <= AP_CHUNK / 2) {
            ap_chunk *p = s->ch[c - 1];
            Py_ssize_t pn = s->len[c - 1];
            memcpy(p->keys + pn, k->keys, (size_t)s->len[c] * sizeof(int64_t));
            memcpy(p->sizes + pn, k->sizes, (size_t)s->len[c] * sizeof(int64_t));
            s->len[c - 1] += s->len[c];
            s->maxkey[c - 1] = s->maxkey[c];
            ap_side_remove_chunk(s, c);
        }
        return 1;
    }
    if (size == 0) return 0;
    if (n == AP_CHUNK) {
        /* Split: the upper half moves to a new chunk after c. */
        ap_chunk *u = ap_side_insert_chunk(s, c + 1);
        if (!u) return -1;
        Py_ssize_t half = AP_CHUNK / 2;
        memcpy(u->keys, k->keys + half, (size_t)(AP_CHUNK - half) * sizeof(int64_t));
        memcpy(u->sizes, k->sizes + half, (size_t)(AP_CHUNK - half) * sizeof(int64_t));
        s->len[c + 1] = (int32_t)(AP_CHUNK - half);
        s->maxkey[c + 1] = s->maxkey[c];
        s->len[c] = (int32_t)half;
        s->maxkey[c] = k->keys[half - 1];
        if (i > half) {
            c++;
            i -= half;
            k = u;
        }
        n = s->len[c];
    }
    memmove(k->keys + i + 1, k->keys + i, (size_t)(n - i) * sizeof(int64_t));
    memmove(k->sizes + i + 1, k->sizes + i, (size_t)(n - i) * sizeof(int64_t));
    k->keys[i] = key;
    k->sizes[i] = size;
    s->len[c]++;
    if (i == n) s->maxkey[c] = key;
    s->count++;
    return 1;
}

/* Size at key, 0 when absent. */
static inline int64_t ap_side_get(const ap_side *s, int64_t key)
{
    if (s->nch == 0) return 0;
    Py_ssize_t c = ap_side_chunk_for(s, key);
    const ap_chunk *k = s->ch[c];
    Py_ssize_t i = ap_chunk_lower_bound(k->keys, s->len[c], key);
    return (i < s->len[c] && k->keys[i] == key) ? k->sizes[i] : 0;
}

/* Best level; returns 0 when the side is empty. */
static inline int ap_side_best(const ap_side *s, int64_t *key, int64_t *size)
{
    if (s->nch == 0) return 0;
    const ap_chunk *k = s->ch[s->nch - 1];
    Py_ssize_t n = s->len[s->nch - 1];
    *key = k->keys[n - 1];
    *size = k->sizes[n - 1];
    return 1;
}

/* Copy the best n levels (all when n < 0 or n > count), best first, into keys/sizes
 * (either may be NULL).  Returns how many were copied. */
static inline Py_ssize_t ap_side_top(const ap_side *s, Py_ssize_t n, int64_t *keys, int64_t *sizes)
{
    if (n < 0 || n > s->count) n = s->count;
    Py_ssize_t j = 0;
    for (Py_ssize_t c = s->nch - 1; c >= 0 && j < n; c--) {
        const ap_chunk *k = s->ch[c];
        for (Py_ssize_t i = s->len[c] - 1; i >= 0 && j < n; i--, j++) {
            if (keys) keys[j] = k->keys[i];
            if (sizes) sizes[j] = k->sizes[i];
        }
    }
    return j;
}

/* Replace the side's levels with keys/sizes (ascending keys, sizes > 0), chunks 3/4 full.
 * Returns -1 on allocation failure with the side untouched. */
static inline int ap_side_assign(ap_side *s, const int64_t *keys, const int64_t *sizes, Py_ssize_t n)
{
    ap_side fresh;
    memset(&fresh, 0, sizeof(fresh));
    Py_ssize_t per = AP_CHUNK * 3 / 4;
    Py_ssize_t nch = (n + per - 1) / per;
    if (ap_side_grow_index(&fresh, nch ? nch : 1) < 0) {
        ap_side_free(&fresh);
        return -1;
    }
    for (Py_ssize_t c = 0; c < nch; c++) {
        ap_chunk *k = ap_pool_take();
        if (!k) {
            ap_side_free(&fresh);
            return -1;
        }
        Py_ssize_t start = c * per, m = n - start < per ? n - start : per;
        memcpy(k->keys, keys + start, (size_t)m * sizeof(int64_t));
        memcpy(k->sizes, sizes + start, (size_t)m * sizeof(int64_t));
        fresh.ch[c] = k;
        fresh.len[c] = (int32_t)m;
        fresh.maxkey[c] = keys[start + m - 1];
        fresh.nch = c + 1;
    }
    fresh.count = n;
    ap_side_free(s);
    *s = fresh;
    return 0;
}

/* Keep the best `depth` levels (depth 0 = unlimited); returns how many were dropped and, when
 * `dropped` is not NULL, writes their keys there, worst first. */
static inline Py_ssize_t ap_side_truncate(ap_side *s, Py_ssize_t depth, int64_t *dropped)
{
    if (depth <= 0 || s->count <= depth) return 0;
    Py_ssize_t excess = s->count - depth, done = 0;
    while (done < excess) {
        ap_chunk *k = s->ch[0];
        Py_ssize_t n = s->len[0], take = excess - done < n ? excess - done : n;
        if (dropped) memcpy(dropped + done, k->keys, (size_t)take * sizeof(int64_t));
        done += take;
        if (take == n) {
            ap_side_remove_chunk(s, 0);
        } else {
            memmove(k->keys, k->keys + take, (size_t)(n - take) * sizeof(int64_t));
            memmove(k->sizes, k->sizes + take, (size_t)(n - take) * sizeof(int64_t));
            s->len[0] = (int32_t)(n - take);
        }
    }
    s->count -= excess;
    return excess;
}

/* Bytes held (chunks and index). */
static inline Py_ssize_t ap_side_nbytes(const ap_side *s)
{
    return s->nch * (Py_ssize_t)sizeof(ap_chunk)
           + s->cap * (Py_ssize_t)(sizeof(ap_chunk *) + sizeof(int64_t) + sizeof(int32_t));
}

#endif
