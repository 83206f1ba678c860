# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled hot-path helpers for the collectors: narrow scanners for the hottest Kraken frames
and a cheap constructor for the frozen book events.  No I/O, no package imports.

``scan_book_update`` takes a v2 book update for one symbol, exactly as Kraken writes it::

    {"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":29423.0,
     "qty":2.54902601}],"asks":[],"checksum":434883881,"timestamp":"2023-07-30T15:30:01.581227Z"}]}

It returns the exact number *texts* (never floats), the checksum and the timestamp text, or
None for anything that is not byte-for-byte this shape (other key order, whitespace, several
symbols, strings for numbers, invalid JSON...), which the caller then parses the general way.
Every number must match JSON's number grammar; its value is checked later by the book.
``scan_v1_book_update`` does the same for v1's array frames.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_Append
from libc.string cimport memcmp

cdef bytes PREFIX = b'{"channel":"book","type":"update","data":[{"symbol":"'
cdef str S_BID = "bid"
cdef str S_ASK = "ask"


cdef inline bint _lit(const char *p, Py_ssize_t pos, Py_ssize_t end, const char *lit,
                      Py_ssize_t n) noexcept:
    return pos + n <= end and memcmp(p + pos, lit, <size_t>n) == 0


cdef inline Py_ssize_t _number(const char *p, Py_ssize_t pos, Py_ssize_t end) noexcept:
    """End of a JSON number starting at pos, or -1."""
    cdef Py_ssize_t i = pos
    if i < end and p[i] == 45:
        i += 1
    if i >= end or not (48 <= p[i] <= 57):
        return -1
    if p[i] == 48:
        i += 1
    else:
        while i < end and 48 <= p[i] <= 57:
            i += 1
    if i < end and p[i] == 46:
        i += 1
        if i >= end or not (48 <= p[i] <= 57):
            return -1
        while i < end and 48 <= p[i] <= 57:
            i += 1
    if i < end and (p[i] == 101 or p[i] == 69):
        i += 1
        if i < end and (p[i] == 43 or p[i] == 45):
            i += 1
        if i >= end or not (48 <= p[i] <= 57):
            return -1
        while i < end and 48 <= p[i] <= 57:
            i += 1
    return i


cdef Py_ssize_t _levels(const char *p, Py_ssize_t pos, Py_ssize_t end, str side,
                        list out) except -2:
    """Parse ``{"price":N,"qty":N},...]`` from pos (just after '['); returns the index after
    ']' or -1 when the text is not in the canonical shape."""
    cdef Py_ssize_t a, b
    if pos < end and p[pos] == 93:
        return pos + 1
    while True:
        if not _lit(p, pos, end, b'{"price":', 9):
            return -1
        pos += 9
        a = _number(p, pos, end)
        if a < 0 or not _lit(p, a, end, b',"qty":', 7):
            return -1
        b = _number(p, a + 7, end)
        if b < 0 or b >= end or p[b] != 125:
            return -1
        PyList_Append(out, (side, PyBytes_FromStringAndSize(p + pos, a - pos),
                            PyBytes_FromStringAndSize(p + a + 7, b - a - 7)))
        pos = b + 1
        if pos < end and p[pos] == 44:
            pos += 1
            continue
        if pos < end and p[pos] == 93:
            return pos + 1
        return -1


cdef inline int _digits(const char *p, Py_ssize_t pos, int n) noexcept:
    """n decimal digits at pos as an int, or -1."""
    cdef int v = 0, k
    for k in range(n):
        if not (48 <= p[pos + k] <= 57):
            return -1
        v = v * 10 + (p[pos + k] - 48)
    return v


cdef long long _rfc3339_ns(const char *p, Py_ssize_t n) noexcept:
    """``YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`` -> ns since the epoch (UTC), or -1 for other forms."""
    cdef int y, mo, d, h, mi, sec, k
    cdef long long frac = 0, days, era, yoe, doy, doe
    if n < 20 or p[4] != 45 or p[7] != 45 or p[10] != 84 or p[13] != 58 or p[16] != 58 \
            or p[n - 1] != 90:
        return -1
    y, mo, d = _digits(p, 0, 4), _digits(p, 5, 2), _digits(p, 8, 2)
    h, mi, sec = _digits(p, 11, 2), _digits(p, 14, 2), _digits(p, 17, 2)
    if y < 1970 or not (1 <= mo <= 12) or not (1 <= d <= 31) or h < 0 or h > 23 or mi < 0 \
            or mi > 59 or sec < 0 or sec > 60:
        return -1
    if n > 20:
        if p[19] != 46 or n - 21 < 1 or n - 21 > 9:
            return -1
        for k in range(20, n - 1):
            if not (48 <= p[k] <= 57):
                return -1
            frac = frac * 10 + (p[k] - 48)
        for k in range(n - 21, 9):
            frac *= 10
    elif p[19] != 90:
        return -1
    # days from civil (H. Hinnant's algorithm), exact for the proleptic Gregorian calendar
    if mo <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (mo + (-3 if mo > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    return ((days * 86400 + h * 3600 + mi * 60 + sec) * 1000000000) + frac


def rfc3339_ns(bytes text not None):
    """``2023-07-30T15:29:58.343415Z`` -> ns since the epoch, or -1 for any other form."""
    return _rfc3339_ns(PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text))


def scan_book_update(bytes frame not None):
    """``(symbol, changes, checksum, ts_event)`` for a canonical v2 book update, else None.

    ``symbol`` is bytes; ``changes`` a list of ``(side, price, qty)`` with side
    ``"bid"``/``"ask"`` and the number texts as bytes; ``checksum`` an int; ``ts_event`` the
    timestamp in ns (the frame is refused unless it is ``YYYY-MM-DDTHH:MM:SS[.f]Z``).
    """
    cdef long long ts
    cdef const char *p = PyBytes_AS_STRING(frame)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(frame)
    cdef Py_ssize_t n = len(PREFIX), pos, s0, t0
    cdef unsigned long long crc = 0
    cdef list changes = []
    if end < n or memcmp(p, PyBytes_AS_STRING(PREFIX), <size_t>n) != 0:
        return None
    pos = s0 = n
    while pos < end and p[pos] != 34 and p[pos] != 92:
        pos += 1
    if pos == s0 or not _lit(p, pos, end, b'","bids":[', 10):
        return None
    symbol = PyBytes_FromStringAndSize(p + s0, pos - s0)
    pos = _levels(p, pos + 10, end, S_BID, changes)
    if pos < 0 or not _lit(p, pos, end, b',"asks":[', 9):
        return None
    pos = _levels(p, pos + 9, end, S_ASK, changes)
    if pos < 0 or not _lit(p, pos, end, b',"checksum":', 12):
        return None
    pos += 12
    s0 = pos
    while pos < end and 48 <= p[pos] <= 57 and pos - s0 < 11:
        crc = crc * 10 + <unsigned long long>(p[pos] - 48)
        pos += 1
    if pos == s0 or not _lit(p, pos, end, b',"timestamp":"', 14):
        return None
    pos += 14
    t0 = pos
    while pos < end and p[pos] != 34 and p[pos] != 92:
        pos += 1
    if pos == t0 or pos + 4 != end or not _lit(p, pos, end, b'"}]}', 4):
        return None
    ts = _rfc3339_ns(p + t0, pos - t0)
    if ts < 0:
        return None
    return symbol, changes, crc, ts


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


def scan_v1_book_update(bytes frame not None):
    """``(pair, channel_name, changes, checksum, ts_event)`` for a v1 book update, else None.

    Shape: ``[id,{"a":[[p,v,t(,"r")],...]}(,{"b":[...]}),... "c":"crc"},"book-N","PAIR"]``
    with every level a list of plain strings; ``changes`` holds ``(side, price, volume)`` text
    (bytes) in message order, ``ts_event`` is the latest level time in ns.  Snapshots
    (``"as"``/``"bs"``) and anything unusual return None.
    """
    cdef const char *p = PyBytes_AS_STRING(frame)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(frame), pos = 0, a, b, c, d
    cdef list changes = []
    cdef object side
    cdef long long ts = -1, t
    cdef long long crc = -1
    cdef int field
    if end < 10 or p[0] != 91:
        return None
    pos = 1
    while pos < end and 48 <= p[pos] <= 57:
        pos += 1
    if pos == 1 or pos >= end or p[pos] != 44:
        return None
    pos += 1
    while pos < end and p[pos] == 123:                # one payload object per iteration
        pos += 1
        while True:
            if _lit(p, pos, end, b'"a":[', 5):
                side = S_ASK
            elif _lit(p, pos, end, b'"b":[', 5):
                side = S_BID
            elif _lit(p, pos, end, b'"c":"', 5):
                a = pos + 4
                b = _plain_string(p, a, end)
                if b < 0 or b - a - 1 < 1 or b - a - 1 > 10:
                    return None
                crc = 0
                for c in range(a + 1, b):
                    if not (48 <= p[c] <= 57):
                        return None
                    crc = crc * 10 + (p[c] - 48)
                pos = b + 1
                side = None
            else:
                return None
            if side is not None:
                pos += 5
                if pos < end and p[pos] == 93:
                    pos += 1
                else:
                    while True:                       # [ "p","v","t"(,"r") ]
                        if pos >= end or p[pos] != 91:
                            return None
                        a = pos + 1
                        b = _plain_string(p, a, end)
                        if b < 0 or _number(p, a + 1, b) != b or b + 1 >= end or p[b + 1] != 44:
                            return None
                        c = _plain_string(p, b + 2, end)
                        if c < 0 or _number(p, b + 3, c) != c or c + 1 >= end or p[c + 1] != 44:
                            return None
                        d = _plain_string(p, c + 2, end)
                        if d < 0:
                            return None
                        t = _epoch_ns(p + c + 3, d - c - 3)
                        if t < 0:
                            return None
                        if t > ts:
                            ts = t
                        PyList_Append(changes, (side, PyBytes_FromStringAndSize(p + a + 1, b - a - 1),
                                                PyBytes_FromStringAndSize(p + b + 3, c - b - 3)))
                        pos = d + 1
                        if _lit(p, pos, end, b',"r"', 4):     # republished level flag
                            pos += 4
                        if pos >= end or p[pos] != 93:
                            return None
                        pos += 1
                        if pos < end and p[pos] == 44:
                            pos += 1
                            continue
                        if pos < end and p[pos] == 93:
                            pos += 1
                            break
                        return None
            if pos < end and p[pos] == 44:
                pos += 1
                continue
            if pos < end and p[pos] == 125:
                pos += 1
                break
            return None
        if pos < end and p[pos] == 44:
            pos += 1
        else:
            return None
    if crc < 0 or not changes:
        return None
    a = pos                                           # "book-N","PAIR"]
    b = _plain_string(p, a, end)
    if b < 0 or not _lit(p, a, end, b'"book-', 6) or b + 1 >= end or p[b + 1] != 44:
        return None
    c = _plain_string(p, b + 2, end)
    if c < 0 or c + 2 != end or p[c + 1] != 93:
        return None
    return (PyBytes_FromStringAndSize(p + b + 3, c - b - 3).decode(),
            PyBytes_FromStringAndSize(p + a + 1, b - a - 1).decode(), changes, crc, ts)


from cpython.object cimport PyObject_GenericSetAttr

cdef str A_EXCHANGE = "exchange", A_SYMBOL = "symbol", A_NATIVE = "native_symbol"
cdef str A_DELTA = "delta", A_TS_EVENT = "ts_event", A_TS_RECV = "ts_recv"


def new_book_event(type cls, exchange, symbol, native_symbol, delta, ts_event, ts_recv):
    """``cls(exchange, symbol, native_symbol, delta, ts_event, ts_recv)`` for the frozen,
    slotted BookUpdate/BookSnapshot dataclasses, set slot by slot from C (the dataclass
    ``__init__`` costs six Python-level ``object.__setattr__`` calls per event)."""
    obj = cls.__new__(cls)
    PyObject_GenericSetAttr(obj, A_EXCHANGE, exchange)
    PyObject_GenericSetAttr(obj, A_SYMBOL, symbol)
    PyObject_GenericSetAttr(obj, A_NATIVE, native_symbol)
    PyObject_GenericSetAttr(obj, A_DELTA, delta)
    PyObject_GenericSetAttr(obj, A_TS_EVENT, ts_event)
    PyObject_GenericSetAttr(obj, A_TS_RECV, ts_recv)
    return obj
