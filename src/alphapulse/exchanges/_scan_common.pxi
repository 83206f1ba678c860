# Included by _scan.pyx: the byte-scanning primitives every scanner shares.  The shared parse
# buffer; literal / string / integer matchers over a frame; number-text checks and decoding
# into the book's ``ap_change`` form; the level-array walker each exchange plugs its level
# reader into.  No exchange's format is known here: each returns -1 / False / None outside
# the canonical shape, and the caller then leaves the frame to the general path.

# One parse buffer for every book (the GIL serialises callers: no Python code runs between
# filling it and copying it into the book's own scratch once the whole frame is good).
cdef ap_change *_buf = NULL
cdef Py_ssize_t _buf_cap = 0


cdef int _room(Py_ssize_t n) except -1:
    global _buf, _buf_cap
    cdef Py_ssize_t cap
    cdef ap_change *p
    if n <= _buf_cap:
        return 0
    cap = max(n, 2 * _buf_cap, 64)
    p = <ap_change *>realloc(_buf, <size_t>cap * sizeof(ap_change))
    if p == NULL:
        raise MemoryError()
    _buf, _buf_cap = p, cap
    return 0


cdef inline bint _at(const uchar *p, Py_ssize_t pos, Py_ssize_t end, const char *lit,
                     Py_ssize_t n) noexcept:
    return pos + n <= end and memcmp(p + pos, lit, <size_t>n) == 0


cdef inline Py_ssize_t _close(const uchar *p, Py_ssize_t pos, Py_ssize_t end) noexcept:
    """From just after an opening quote: the closing quote of a string of printable ASCII
    without escapes (its text is then exactly what a JSON decoder returns), or -1."""
    cdef uchar c
    while pos < end:
        c = p[pos]
        if c == 34:
            return pos
        if c == 92 or c < 32 or c > 126:
            return -1
        pos += 1
    return -1


cdef inline Py_ssize_t _uint(const uchar *p, Py_ssize_t pos, Py_ssize_t end,
                             long long *out) noexcept:
    """A JSON integer of 1-18 digits without sign or leading zero: index after it, or -1.
    (A fraction or exponent after the digits fails the caller's next literal.)"""
    cdef Py_ssize_t start = pos
    cdef long long v = 0
    if pos >= end or p[pos] < 48 or p[pos] > 57 or (p[pos] == 48 and pos + 1 < end
                                                    and 48 <= p[pos + 1] <= 57):
        return -1
    while pos < end and 48 <= p[pos] <= 57:
        v = v * 10 + (p[pos] - 48)
        pos += 1
        if pos - start > 18:
            return -1
    out[0] = v
    return pos


ctypedef struct _level:           # one level's side and number texts, as spans of the frame
    int side
    Py_ssize_t price, price_end, size, size_end


cdef inline bint _decode(const uchar *p, const _level *lv, int pp, int sp,
                         ap_change *out) noexcept:
    """The level's numbers parsed as the book parses text (a price must be positive)."""
    out.side = lv.side
    return (ap_parse_decimal(<const char *>p + lv.price, <size_t>(lv.price_end - lv.price), pp,
                             &out.price) == AP_DEC_OK and out.price != 0 and
            ap_parse_decimal(<const char *>p + lv.size, <size_t>(lv.size_end - lv.size), sp,
                             &out.size) == AP_DEC_OK)


cdef inline str _text(const uchar *p, Py_ssize_t start, Py_ssize_t stop):
    return PyUnicode_DecodeASCII(<const char *>p + start, stop - start, NULL)


cdef object _apply(OrderBook book, Py_ssize_t n):
    """``book.apply`` of the n changes in the shared buffer (already validated)."""
    book._reserve_scratch(n)
    if n:
        memcpy(book.scratch, _buf, <size_t>n * sizeof(ap_change))
    return book._apply_scratch(n)


cdef tuple _entry(const uchar *p, Py_ssize_t pos, Py_ssize_t q, dict table):
    """``table``'s ``(book, native)`` for the symbol text ``p[pos:q]``, or None."""
    cdef PyObject *hit = PyDict_GetItem(table, PyBytes_FromStringAndSize(<const char *>p + pos,
                                                                         q - pos))
    return None if hit == NULL else <tuple>hit


cdef bint _plain_decimal(const uchar *p, Py_ssize_t pos, Py_ssize_t end) noexcept:
    """``_check_decimal(text, positive=True)``: digits with at most one ``.``, not all zero."""
    cdef bint dot = False, nonzero = False, digit = False
    cdef Py_ssize_t i
    for i in range(pos, end):
        if p[i] == 46 and not dot:
            dot = True
        elif 48 <= p[i] <= 57:
            digit = True
            nonzero = nonzero or p[i] != 48
        else:
            return False
    return digit and nonzero


ctypedef Py_ssize_t (*level_fn)(const uchar *p, Py_ssize_t pos, Py_ssize_t end, int side,
                                _level *out) noexcept


cdef Py_ssize_t _levels(const uchar *p, Py_ssize_t pos, Py_ssize_t end, level_fn one, int side,
                        Py_ssize_t max_levels, OrderBook book, list bids, list asks,
                        Py_ssize_t *count) except -2:
    """A JSON array of levels from just after ``[``, each read by ``one``; at most
    ``max_levels`` in all (``count`` holds how many came before).  With a ``book`` the levels
    are parsed into the buffer after those; without, ``(price, size)`` str pairs are appended
    to ``bids`` / ``asks`` (a snapshot: the book parses them).  Index after ``]``, or -1."""
    cdef Py_ssize_t n = count[0]
    cdef _level lv
    if pos < end and p[pos] == 93:
        return pos + 1
    while n < max_levels:
        pos = one(p, pos, end, side, &lv)
        if pos < 0:
            return -1
        if book is not None:
            _room(n + 1)
            if not _decode(p, &lv, book.price_precision, book.size_precision, &_buf[n]):
                return -1
        else:
            PyList_Append(bids if lv.side == 0 else asks,
                          (_text(p, lv.price, lv.price_end), _text(p, lv.size, lv.size_end)))
        n += 1
        if pos < end and p[pos] == 44:
            pos += 1
        elif pos < end and p[pos] == 93:
            count[0] = n
            return pos + 1
        else:
            return -1
    return -1
