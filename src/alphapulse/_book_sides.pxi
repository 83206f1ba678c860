# Included by _book.pyx: building a side from snapshot levels, and diff().

cdef struct _keyed:
    int64_t key
    int64_t size
    Py_ssize_t order


cdef int _cmp_keyed(const void *a, const void *b) noexcept nogil:
    cdef const _keyed *x = <const _keyed *>a
    cdef const _keyed *y = <const _keyed *>b
    if x.key != y.key:
        return -1 if x.key < y.key else 1
    return -1 if x.order < y.order else (1 if x.order > y.order else 0)


cdef int _build_side(const ap_change *lv, Py_ssize_t n, ap_side *out,
                     Py_ssize_t depth) noexcept nogil:
    """A fresh side from snapshot levels: zero sizes skipped, a repeated price keeps its last
    size, best `depth` kept.  Returns -1 on allocation failure (out left empty)."""
    cdef Py_ssize_t m = 0, i, j, cap, lo
    cdef int64_t *keys
    cdef int64_t *sizes
    cdef int64_t t
    cdef bint ascending = True, descending = True
    cdef _keyed *tmp
    out.keys = NULL
    out.sizes = NULL
    out.lo = out.hi = out.cap = 0
    for i in range(n):
        if lv[i].size != 0:
            m += 1
    cap = 2 * m + 16
    keys = <int64_t *>malloc(<size_t>cap * sizeof(int64_t))
    sizes = <int64_t *>malloc(<size_t>cap * sizeof(int64_t))
    if keys == NULL or sizes == NULL:
        free(keys)
        free(sizes)
        return -1
    lo = (cap - m) // 4
    j = lo
    for i in range(n):
        if lv[i].size != 0:
            keys[j] = lv[i].price if lv[i].side == 0 else -lv[i].price
            sizes[j] = lv[i].size
            if j > lo:
                if keys[j] <= keys[j - 1]:
                    ascending = False
                if keys[j] >= keys[j - 1]:
                    descending = False
            j += 1
    if not ascending and descending:
        # Exchanges send best first, i.e. descending keys: reverse in place.
        i = lo
        j = lo + m - 1
        while i < j:
            t = keys[i]; keys[i] = keys[j]; keys[j] = t
            t = sizes[i]; sizes[i] = sizes[j]; sizes[j] = t
            i += 1
            j -= 1
    elif not ascending:
        tmp = <_keyed *>malloc(<size_t>(m if m else 1) * sizeof(_keyed))
        if tmp == NULL:
            free(keys)
            free(sizes)
            return -1
        for i in range(m):
            tmp[i].key = keys[lo + i]
            tmp[i].size = sizes[lo + i]
            tmp[i].order = i
        qsort(tmp, <size_t>m, sizeof(_keyed), _cmp_keyed)
        j = lo
        for i in range(m):
            if i + 1 < m and tmp[i + 1].key == tmp[i].key:
                continue    # a later duplicate follows: it wins
            keys[j] = tmp[i].key
            sizes[j] = tmp[i].size
            j += 1
        free(tmp)
        m = j - lo
    out.keys = keys
    out.sizes = sizes
    out.cap = cap
    out.lo = lo
    out.hi = lo + m
    ap_side_truncate(out, depth)
    return 0



def diff(OrderBook before not None, OrderBook after not None):
    """The minimal Delta that turns ``before`` into ``after`` (same precisions required):
    one change per level whose size differs, size ``"0"`` for levels only in ``before``.
    Its sequence is ``after.sequence``; ``before.apply(d.changes) == after``."""
    if (before.price_precision != after.price_precision
            or before.size_precision != after.size_precision):
        raise BookError("diff needs books with the same precisions", "price_precision")
    cdef Delta d = after._new_delta(
        ap_side_count(&before.side[0]) + ap_side_count(&after.side[0])
        + ap_side_count(&before.side[1]) + ap_side_count(&after.side[1]), False)
    cdef Py_ssize_t n = 0, i, j, s
    cdef ap_side *x
    cdef ap_side *y
    cdef int64_t kx, ky
    for s in range(2):
        x = &before.side[s]
        y = &after.side[s]
        i = x.hi - 1
        j = y.hi - 1
        # Walk both sides from the best level down, like a merge.
        while i >= x.lo or j >= y.lo:
            if j < y.lo or (i >= x.lo and x.keys[i] > y.keys[j]):
                kx = x.keys[i]
                d.prices[n] = kx if s == 0 else -kx
                d.sizes[n] = 0
                n += 1
                i -= 1
            elif i < x.lo or y.keys[j] > x.keys[i]:
                ky = y.keys[j]
                d.prices[n] = ky if s == 0 else -ky
                d.sizes[n] = y.sizes[j]
                n += 1
                j -= 1
            else:
                if x.sizes[i] != y.sizes[j]:
                    ky = y.keys[j]
                    d.prices[n] = ky if s == 0 else -ky
                    d.sizes[n] = y.sizes[j]
                    n += 1
                i -= 1
                j -= 1
        if s == 0:
            d.n_bids = n
    d.n = n
    return d
