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
    """A fresh side (into a zeroed *out) from snapshot levels: zero sizes skipped, a repeated
    price keeps its last size, best `depth` kept.  Returns -1 on allocation failure."""
    cdef Py_ssize_t m = 0, i, j
    cdef int64_t *keys
    cdef int64_t *sizes
    cdef int64_t t
    cdef bint ascending = True, descending = True
    cdef _keyed *tmp
    cdef int rc
    for i in range(n):
        if lv[i].size != 0:
            m += 1
    keys = <int64_t *>malloc(<size_t>(m + 1) * sizeof(int64_t))
    sizes = <int64_t *>malloc(<size_t>(m + 1) * sizeof(int64_t))
    if keys == NULL or sizes == NULL:
        free(keys)
        free(sizes)
        return -1
    j = 0
    for i in range(n):
        if lv[i].size != 0:
            keys[j] = lv[i].price if lv[i].side == 0 else -lv[i].price
            sizes[j] = lv[i].size
            if j > 0:
                if keys[j] <= keys[j - 1]:
                    ascending = False
                if keys[j] >= keys[j - 1]:
                    descending = False
            j += 1
    if not ascending and descending:
        # Exchanges send best first, i.e. descending keys: reverse in place.
        i = 0
        j = m - 1
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
            tmp[i].key = keys[i]
            tmp[i].size = sizes[i]
            tmp[i].order = i
        qsort(tmp, <size_t>m, sizeof(_keyed), _cmp_keyed)
        j = 0
        for i in range(m):
            if i + 1 < m and tmp[i + 1].key == tmp[i].key:
                continue    # a later duplicate follows: it wins
            keys[j] = tmp[i].key
            sizes[j] = tmp[i].size
            j += 1
        free(tmp)
        m = j
    # Keep the best `depth` (the highest keys, at the end).
    i = m - depth if 0 < depth < m else 0
    memset(out, 0, sizeof(ap_side))
    rc = ap_side_assign(out, keys + i, sizes + i, m - i)
    free(keys)
    free(sizes)
    return rc


cdef inline void _reverse(int64_t *a, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i = 0, j = n - 1
    cdef int64_t t
    while i < j:
        t = a[i]; a[i] = a[j]; a[j] = t
        i += 1
        j -= 1


cdef int64_t *_best_first(const ap_side *s) except? NULL:
    """All levels of a side as one malloc'd array: keys[0:n] best first, sizes[n:2n]."""
    cdef Py_ssize_t n = ap_side_count(s)
    cdef int64_t *buf = <int64_t *>malloc(<size_t>(2 * n + 1) * sizeof(int64_t))
    if buf == NULL:
        raise MemoryError()
    ap_side_top(s, n, buf, buf + n)
    return buf


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
    cdef Py_ssize_t n = 0, i, j, s, nx, ny
    cdef int64_t *x = NULL
    cdef int64_t *y = NULL
    cdef int64_t kx, ky
    try:
        for s in range(2):
            nx = ap_side_count(&before.side[s])
            ny = ap_side_count(&after.side[s])
            x = _best_first(&before.side[s])
            y = _best_first(&after.side[s])
            i = j = 0
            # Walk both sides from the best level down, like a merge (keys descending).
            while i < nx or j < ny:
                if j >= ny or (i < nx and x[i] > y[j]):
                    kx = x[i]
                    d.prices[n] = kx if s == 0 else -kx
                    d.sizes[n] = 0
                    n += 1
                    i += 1
                elif i >= nx or y[j] > x[i]:
                    ky = y[j]
                    d.prices[n] = ky if s == 0 else -ky
                    d.sizes[n] = y[ny + j]
                    n += 1
                    j += 1
                else:
                    if x[nx + i] != y[ny + j]:
                        ky = y[j]
                        d.prices[n] = ky if s == 0 else -ky
                        d.sizes[n] = y[ny + j]
                        n += 1
                    i += 1
                    j += 1
            free(x)
            free(y)
            x = y = NULL
            if s == 0:
                d.n_bids = n
    finally:
        free(x)
        free(y)
    d.n = n
    return d
