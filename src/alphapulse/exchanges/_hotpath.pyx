# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled hot-path helpers for the collectors: narrow scanners for the hottest Kraken frames,
the fused scan + apply + checksum + event call built on them, and a cheap constructor for the
frozen book events.  No I/O; the only package module used is the book's C contract
(``alphapulse._book``'s .pxd: its decimal parser, scratch buffer and memoised checksum).

``scan_book_update`` takes a v2 book update for one symbol, exactly as Kraken writes it::

    {"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":29423.0,
     "qty":2.54902601}],"asks":[],"checksum":434883881,"timestamp":"2023-07-30T15:30:01.581227Z"}]}

It returns the exact number *texts* (never floats), the checksum and the timestamp text, or
None for anything that is not byte-for-byte this shape (other key order, whitespace, several
symbols, strings for numbers, invalid JSON...), which the caller then parses the general way.
Every number must match JSON's number grammar; its value is checked later by the book.
``scan_v1_book_update`` does the same for v1's array frames (``_hotpath_v1.pxi``).
``scan_trade_update`` takes a v2 one-trade update the same way (``_hotpath_trade.pxi``).
``apply_book_update`` / ``apply_v1_book_update`` are what the Kraken parser calls: the same
scans, with the levels parsed straight into the book (no per-level Python objects), applied,
the checksum verified and the BookUpdate built (``_hotpath_events.pxi``) in one call.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_Append
from cpython.object cimport PyObject, PyObject_GenericSetAttr, PyTypeObject
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.stdint cimport int64_t
from libc.stdlib cimport realloc
from libc.string cimport memcmp

from alphapulse._book cimport (AP_DEC_OK, Delta, OrderBook, ap_change, ap_parse_decimal,
                               ap_side_best)


# Where a scanner found one level's number texts: offsets into the frame.  The scanners fill
# one module-wide buffer (the GIL serialises them and nothing else runs between a scan and
# its use), so a frame costs no allocation unless it has more levels than any before it.
# Past MAX_LEVELS a frame is not taken (the general path rejects it as too_many_levels, as
# kraken's MAX_LEVELS says), which also bounds the buffer.
cdef enum:
    MAX_LEVELS = 5000

ctypedef struct _span:
    Py_ssize_t price, price_len, size, size_len
    int side

cdef _span *_spans = NULL
cdef Py_ssize_t _spans_cap = 0
cdef Py_ssize_t _n_spans = 0


cdef int _push(int side, Py_ssize_t price, Py_ssize_t price_len, Py_ssize_t size,
               Py_ssize_t size_len) except -1:
    """Record one level; 1 when the frame has too many levels to take."""
    global _spans, _spans_cap, _n_spans
    cdef _span *grown
    cdef Py_ssize_t cap
    if _n_spans >= MAX_LEVELS:
        return 1
    if _n_spans == _spans_cap:
        cap = 2 * _spans_cap if _spans_cap else 64
        grown = <_span *>realloc(_spans, <size_t>cap * sizeof(_span))
        if grown == NULL:
            raise MemoryError()
        _spans = grown
        _spans_cap = cap
    _spans[_n_spans].side = side
    _spans[_n_spans].price = price
    _spans[_n_spans].price_len = price_len
    _spans[_n_spans].size = size
    _spans[_n_spans].size_len = size_len
    _n_spans += 1
    return 0


cdef list _changes(const char *p):
    """The scanned levels as ``(side, price bytes, size bytes)`` tuples."""
    cdef list out = []
    cdef Py_ssize_t i
    cdef _span *sp
    for i in range(_n_spans):
        sp = &_spans[i]
        PyList_Append(out, (S_BID if sp.side == 0 else S_ASK,
                            PyBytes_FromStringAndSize(p + sp.price, sp.price_len),
                            PyBytes_FromStringAndSize(p + sp.size, sp.size_len)))
    return out

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


cdef Py_ssize_t _levels(const char *p, Py_ssize_t pos, Py_ssize_t end, int side) except -2:
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
        if _push(side, pos, a - pos, a + 7, b - a - 7):
            return -1
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


cdef Py_ssize_t _scan_v2(const char *p, Py_ssize_t end, Py_ssize_t *symbol_len,
                         unsigned long long *crc_out, long long *ts_out) except -2:
    """Scan a canonical v2 book update into the span buffer.  Returns the symbol's offset
    (its length in *symbol_len), or -1 when the frame is not exactly that shape."""
    global _n_spans
    cdef Py_ssize_t n = len(PREFIX), pos, s0, t0, sym
    cdef unsigned long long crc = 0
    _n_spans = 0
    if end < n or memcmp(p, PyBytes_AS_STRING(PREFIX), <size_t>n) != 0:
        return -1
    pos = sym = n
    while pos < end and p[pos] != 34 and p[pos] != 92:
        pos += 1
    if pos == sym or not _lit(p, pos, end, b'","bids":[', 10):
        return -1
    symbol_len[0] = pos - sym
    pos = _levels(p, pos + 10, end, 0)
    if pos < 0 or not _lit(p, pos, end, b',"asks":[', 9):
        return -1
    pos = _levels(p, pos + 9, end, 1)
    if pos < 0 or not _lit(p, pos, end, b',"checksum":', 12):
        return -1
    pos += 12
    s0 = pos
    while pos < end and 48 <= p[pos] <= 57 and pos - s0 < 11:
        crc = crc * 10 + <unsigned long long>(p[pos] - 48)
        pos += 1
    if pos == s0 or not _lit(p, pos, end, b',"timestamp":"', 14):
        return -1
    pos += 14
    t0 = pos
    while pos < end and p[pos] != 34 and p[pos] != 92:
        pos += 1
    if pos == t0 or pos + 4 != end or not _lit(p, pos, end, b'"}]}', 4):
        return -1
    ts_out[0] = _rfc3339_ns(p + t0, pos - t0)
    if ts_out[0] < 0:
        return -1
    crc_out[0] = crc
    return sym


def scan_book_update(bytes frame not None):
    """``(symbol, changes, checksum, ts_event)`` for a canonical v2 book update, else None.

    ``symbol`` is bytes; ``changes`` a list of ``(side, price, qty)`` with side
    ``"bid"``/``"ask"`` and the number texts as bytes; ``checksum`` an int; ``ts_event`` the
    timestamp in ns (the frame is refused unless it is ``YYYY-MM-DDTHH:MM:SS[.f]Z``).
    """
    cdef const char *p = PyBytes_AS_STRING(frame)
    cdef Py_ssize_t symbol_len = 0
    cdef unsigned long long crc = 0
    cdef long long ts = 0
    cdef Py_ssize_t sym = _scan_v2(p, PyBytes_GET_SIZE(frame), &symbol_len, &crc, &ts)
    if sym < 0:
        return None
    return PyBytes_FromStringAndSize(p + sym, symbol_len), _changes(p), crc, ts


def book_update_symbol(bytes frame not None):
    """The symbol (bytes) of a frame that starts like a canonical v2 book update, else None:
    the parser's dispatch key, cheaper than ``startswith`` + ``find`` on the bytes."""
    cdef const char *p = PyBytes_AS_STRING(frame)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(frame), n = len(PREFIX), pos
    if end < n or memcmp(p, PyBytes_AS_STRING(PREFIX), <size_t>n) != 0:
        return None
    pos = n
    while pos < end and p[pos] != 34:
        pos += 1
    if pos >= end:
        return None
    return PyBytes_FromStringAndSize(p + n, pos - n)


def v1_book_pair(bytes frame not None):
    """The pair (bytes) of a frame shaped like a v1 data array (``[...,"PAIR"]``), else None:
    the parser's dispatch key for v1 book updates."""
    cdef const char *p = PyBytes_AS_STRING(frame)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(frame), pos
    if end < 4 or p[0] != 91 or p[end - 1] != 93 or p[end - 2] != 34:
        return None
    pos = end - 3
    while pos > 0 and p[pos] != 34:
        pos -= 1
    if pos <= 0:
        return None
    return PyBytes_FromStringAndSize(p + pos + 1, end - pos - 3)


include "_hotpath_v1.pxi"
include "_hotpath_trade.pxi"
include "_hotpath_events.pxi"


# ---- scan + apply + verify in one call ------------------------------------------------------
# The collector's hottest step, fused: the scanned number texts are parsed straight into the
# book's scratch buffer (no per-level bytes or tuples), applied as one batch, the checksum is
# taken through the book's memo and the BookUpdate event is built, all before returning to
# Python.  The book's own parser does the parsing, so what is accepted is exactly what
# ``OrderBook.apply`` accepts; on any invalid number the same levels go through
# ``OrderBook.apply`` as text, which raises its usual BookError (book unchanged).

cdef tuple _apply_spans(const char *p, OrderBook book, unsigned long long crc, long long ts,
                        tuple meta, object ts_recv):
    cdef Py_ssize_t n = _n_spans, i
    cdef int pp = book.price_precision, sp = book.size_precision
    cdef bint bad = False
    cdef ap_change *c
    cdef _span *s
    cdef int64_t bk, bz, ak, az
    cdef Delta delta
    book._reserve_scratch(n)
    for i in range(n):
        c = &book.scratch[i]
        s = &_spans[i]
        c.side = s.side
        if (ap_parse_decimal(p + s.price, <size_t>s.price_len, pp, &c.price) != AP_DEC_OK
                or c.price == 0
                or ap_parse_decimal(p + s.size, <size_t>s.size_len, sp, &c.size) != AP_DEC_OK):
            bad = True
            break
    if bad:
        delta = book.apply(_changes(p))
    else:
        delta = book._apply_scratch(n)
    cdef unsigned long long mine = book._checksum10()
    cdef bint crossed = (ap_side_best(&book.side[0], &bk, &bz)
                         and ap_side_best(&book.side[1], &ak, &az) and bk >= -ak)
    event = _new_event(<type>meta[0], meta[1], meta[2], meta[3], delta, ts, ts_recv)
    return event, mine == crc, crc, crossed


def apply_book_update(bytes frame not None, OrderBook book not None, tuple meta not None,
                      ts_recv):
    """Scan a canonical v2 book update (see ``scan_book_update``), apply it to ``book`` and
    verify its checksum, in one call.

    ``meta`` is ``(event_class, exchange, symbol, native_symbol)`` for the BookUpdate.  Returns
    ``(event, checksum_matched, exchange_checksum, crossed)``, or None (book untouched) when
    the frame is not exactly the canonical shape; raises BookError (book untouched) for an
    invalid number.  The caller has looked the book up by the frame's symbol.
    """
    cdef const char *p = PyBytes_AS_STRING(frame)
    cdef Py_ssize_t symbol_len = 0
    cdef unsigned long long crc = 0
    cdef long long ts = 0
    if _scan_v2(p, PyBytes_GET_SIZE(frame), &symbol_len, &crc, &ts) < 0:
        return None
    return _apply_spans(p, book, crc, ts, meta, ts_recv)


def apply_v1_book_update(bytes frame not None, OrderBook book not None, tuple meta not None,
                         ts_recv):
    """``apply_book_update`` for a v1 book update (see ``scan_v1_book_update``): the book's
    precisions are the widths of the strings as received, so the same checksum applies."""
    cdef const char *p = PyBytes_AS_STRING(frame)
    cdef Py_ssize_t pair_len = 0, name_at = 0, name_len = 0
    cdef long long crc = 0, ts = 0
    if _scan_v1(p, PyBytes_GET_SIZE(frame), &pair_len, &name_at, &name_len, &crc, &ts) < 0:
        return None
    return _apply_spans(p, book, <unsigned long long>crc, ts, meta, ts_recv)
