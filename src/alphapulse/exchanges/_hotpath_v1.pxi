# Included by _hotpath.pyx: the Kraken v1 book update scanner (array frames, strings).

cdef inline Py_ssize_t _plain_string(const char *p, Py_ssize_t pos, Py_ssize_t end) noexcept:
    """pos at an opening quote of a string without escapes: index of the closing quote or -1."""
    if pos >= end or p[pos] != 34:
        return -1
    pos += 1
    while pos < end and p[pos] != 34:
        if p[pos] == 92 or p[pos] < 32:
            return -1
        pos += 1
    return pos if pos < end else -1


cdef long long _epoch_ns(const char *p, Py_ssize_t n) noexcept:
    """v1's ``"1693415330.621700"`` -> ns, or -1."""
    cdef long long sec = 0, frac = 0
    cdef Py_ssize_t i = 0, k = 0
    while i < n and 48 <= p[i] <= 57 and i < 12:
        sec = sec * 10 + (p[i] - 48)
        i += 1
    if i == 0:
        return -1
    if i < n:
        if p[i] != 46:
            return -1
        i += 1
        while i < n and k < 9:
            if not (48 <= p[i] <= 57):
                return -1
            frac = frac * 10 + (p[i] - 48)
            i += 1
            k += 1
        if i != n or k == 0:
            return -1
    while k < 9:
        frac *= 10
        k += 1
    return sec * 1000000000 + frac


cdef Py_ssize_t _scan_v1(const char *p, Py_ssize_t end, Py_ssize_t *pair_len,
                         Py_ssize_t *name_at, Py_ssize_t *name_len, long long *crc_out,
                         long long *ts_out) except -2:
    """Scan a v1 book update into the span buffer.  Returns the pair's offset (its length in
    *pair_len, the channel name's offset and length in *name_at/*name_len) or -1 when the
    frame is not exactly that shape."""
    global _n_spans
    cdef Py_ssize_t pos = 0, a, b, c, d
    cdef int side
    cdef long long ts = -1, t
    cdef long long crc = -1
    _n_spans = 0
    if end < 10 or p[0] != 91:
        return -1
    pos = 1
    while pos < end and 48 <= p[pos] <= 57:
        pos += 1
    if pos == 1 or pos >= end or p[pos] != 44:
        return -1
    pos += 1
    while pos < end and p[pos] == 123:                # one payload object per iteration
        pos += 1
        while True:
            if _lit(p, pos, end, b'"a":[', 5):
                side = 1
            elif _lit(p, pos, end, b'"b":[', 5):
                side = 0
            elif _lit(p, pos, end, b'"c":"', 5):
                a = pos + 4
                b = _plain_string(p, a, end)
                if b < 0 or b - a - 1 < 1 or b - a - 1 > 10:
                    return -1
                crc = 0
                for c in range(a + 1, b):
                    if not (48 <= p[c] <= 57):
                        return -1
                    crc = crc * 10 + (p[c] - 48)
                pos = b + 1
                side = -1
            else:
                return -1
            if side >= 0:
                pos += 5
                if pos < end and p[pos] == 93:
                    pos += 1
                else:
                    while True:                       # [ "p","v","t"(,"r") ]
                        if pos >= end or p[pos] != 91:
                            return -1
                        a = pos + 1
                        b = _plain_string(p, a, end)
                        if b < 0 or _number(p, a + 1, b) != b or b + 1 >= end or p[b + 1] != 44:
                            return -1
                        c = _plain_string(p, b + 2, end)
                        if c < 0 or _number(p, b + 3, c) != c or c + 1 >= end or p[c + 1] != 44:
                            return -1
                        d = _plain_string(p, c + 2, end)
                        if d < 0:
                            return -1
                        t = _epoch_ns(p + c + 3, d - c - 3)
                        if t < 0:
                            return -1
                        if t > ts:
                            ts = t
                        if _push(side, a + 1, b - a - 1, b + 3, c - b - 3):
                            return -1
                        pos = d + 1
                        if _lit(p, pos, end, b',"r"', 4):     # republished level flag
                            pos += 4
                        if pos >= end or p[pos] != 93:
                            return -1
                        pos += 1
                        if pos < end and p[pos] == 44:
                            pos += 1
                            continue
                        if pos < end and p[pos] == 93:
                            pos += 1
                            break
                        return -1
            if pos < end and p[pos] == 44:
                pos += 1
                continue
            if pos < end and p[pos] == 125:
                pos += 1
                break
            return -1
        if pos < end and p[pos] == 44:
            pos += 1
        else:
            return -1
    if crc < 0 or _n_spans == 0:
        return -1
    a = pos                                           # "book-N","PAIR"]
    b = _plain_string(p, a, end)
    if b < 0 or not _lit(p, a, end, b'"book-', 6) or b + 1 >= end or p[b + 1] != 44:
        return -1
    c = _plain_string(p, b + 2, end)
    if c < 0 or c + 2 != end or p[c + 1] != 93:
        return -1
    name_at[0] = a + 1
    name_len[0] = b - a - 1
    pair_len[0] = c - b - 3
    crc_out[0] = crc
    ts_out[0] = ts
    return b + 3


def scan_v1_book_update(bytes frame not None):
    """``(pair, channel_name, changes, checksum, ts_event)`` for a v1 book update, else None.

    Shape: ``[id,{"a":[[p,v,t(,"r")],...]}(,{"b":[...]}),... "c":"crc"},"book-N","PAIR"]``
    with every level a list of plain strings; ``changes`` holds ``(side, price, volume)`` text
    (bytes) in message order, ``ts_event`` is the latest level time in ns.  Snapshots
    (``"as"``/``"bs"``) and anything unusual return None.
    """
    cdef const char *p = PyBytes_AS_STRING(frame)
    cdef Py_ssize_t pair_len = 0, name_at = 0, name_len = 0
    cdef long long crc = 0, ts = 0
    cdef Py_ssize_t pair = _scan_v1(p, PyBytes_GET_SIZE(frame), &pair_len, &name_at,
                                    &name_len, &crc, &ts)
    if pair < 0:
        return None
    return (PyBytes_FromStringAndSize(p + pair, pair_len).decode(),
            PyBytes_FromStringAndSize(p + name_at, name_len).decode(), _changes(p), crc, ts)
