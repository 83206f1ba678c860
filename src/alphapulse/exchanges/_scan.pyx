# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled scanners for the hottest Coinbase and Binance.US frames: scan, validate, apply.

Each scanner takes one raw frame and either handles it *completely* (the book is updated and
the BookUpdate event is built) or returns None having changed nothing, and the caller then
runs the general orjson path on the same frame.  A frame is handled only when it is
byte-for-byte the canonical shape the exchange writes (compact JSON, this key order, strings
of printable ASCII without escapes, integers without sign, fraction or exponent), every
number text is one the book accepts, and the parser state says the general path would take
its in-order fast branch.  So the scanners only ever skip work, never decide anything: every
rejection, gap and resync still comes from the general path.

Coinbase Advanced Trade ``l2_data`` update (``"client_id":""`` after the channel optional)::

    {"channel":"l2_data","timestamp":"2026-08-09T21:05:48.505350477Z","sequence_num":14,
     "events":[{"type":"update","product_id":"BTC-USD","updates":[{"side":"bid",
     "event_time":"...","price_level":"65062.5","new_quantity":"0.00583"}]}]}

Binance.US ``depthUpdate``, bare or inside a combined-stream ``{"stream":"...","data":...}``::

    {"e":"depthUpdate","E":1618677408921,"s":"BTCUSDT","U":372026686,"u":372026687,
     "b":[["60511.37000000","0.00904000"]],"a":[]}

The number texts go straight from the frame into the book's parse buffer (``_book.pxd``),
through the same ``ap_parse_decimal`` the book applies to ``str`` input.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython.list cimport PyList_Append
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.stdint cimport int64_t
from libc.stdlib cimport realloc
from libc.string cimport memchr, memcmp, memcpy

from alphapulse._book cimport AP_DEC_OK, OrderBook, ap_change, ap_parse_decimal, ap_side_best

from ._hotpath import rfc3339_ns

ctypedef unsigned char uchar

cdef str LIVE = "live"
cdef bytes CB_PREFIX = b'{"channel":"l2_data","'
cdef bytes CB_TRADES = b'{"channel":"market_trades","'
cdef bytes BN_COMBINED = b'{"stream":"'
cdef bytes BN_PREFIX = b'{"e":"depthUpdate","E":'

# One parse buffer for every book (the GIL serialises callers: no Python code runs between
# filling it and copying it into the book's own scratch once the whole frame is good).
cdef ap_change *_buf = NULL
cdef Py_ssize_t _buf_cap = 0

# Last timestamp text -> ns: Coinbase stamps many consecutive frames alike.
cdef char _ts_text[40]
cdef Py_ssize_t _ts_len = 0
cdef long long _ts_ns = 0


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


cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        int type
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef *d_member
    ctypedef struct PyTypeObject:
        Py_ssize_t tp_dictoffset
        object (*tp_alloc)(PyTypeObject *, Py_ssize_t)
    int T_OBJECT_EX


cdef class EventMaker:
    """``EventMaker(BookUpdate)(exchange, symbol, native_symbol, delta, ts_event, ts_recv)``
    builds the frozen, slotted event by writing its six slots directly (a dataclass
    ``__init__`` costs six ``object.__setattr__`` calls; ``_hotpath.new_book_event`` six
    generic attribute stores).  A class of any other layout is simply called."""

    cdef object cls
    cdef Py_ssize_t offsets[6]
    cdef readonly bint direct    # slots written directly (else the class is called)

    def __init__(self, type cls not None):
        names = ("exchange", "symbol", "native_symbol", "delta", "ts_event", "ts_recv")
        self.cls = cls
        self.direct = getattr(cls, "__slots__", None) == names and \
            (<PyTypeObject *>cls).tp_dictoffset == 0
        for i, name in enumerate(names if self.direct else ()):
            descr = cls.__dict__.get(name)
            if type(descr).__name__ != "member_descriptor" or \
                    (<PyMemberDescrObject *>descr).d_member.type != T_OBJECT_EX:
                self.direct = False
                break
            self.offsets[i] = (<PyMemberDescrObject *>descr).d_member.offset

    cdef object build(self, object exchange, object symbol, object native, object delta,
                      object ts_event, object ts_recv):
        cdef object obj, value
        cdef tuple values
        cdef Py_ssize_t i
        if not self.direct:
            return self.cls(exchange, symbol, native, delta, ts_event, ts_recv)
        obj = (<PyTypeObject *>self.cls).tp_alloc(<PyTypeObject *>self.cls, 0)   # zeroed slots
        values = (exchange, symbol, native, delta, ts_event, ts_recv)
        for i in range(6):
            value = values[i]
            Py_INCREF(value)                 # the slot owns a reference, as a setattr would
            (<PyObject **>(<char *><PyObject *>obj + self.offsets[i]))[0] = <PyObject *>value
        return obj

    def __call__(self, exchange, symbol, native_symbol, delta, ts_event, ts_recv):
        return self.build(exchange, symbol, native_symbol, delta, ts_event, ts_recv)


cdef object _event(EventMaker make, OrderBook book, object native, object delta,
                   long long ts_event, object ts_recv):
    """``(make(...), crossed)``; crossed as ``OrderBook.crossed`` says it."""
    cdef int64_t bk, bz, ak, az
    ev = make.build(book.exchange, book.symbol, native, delta, ts_event, ts_recv)
    return ev, bool(ap_side_best(&book.side[0], &bk, &bz) and
                    ap_side_best(&book.side[1], &ak, &az) and bk >= -ak)


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


# ---- Coinbase Advanced Trade -------------------------------------------------------------

cdef long long _timestamp(const uchar *p, Py_ssize_t n):
    """RFC 3339 text -> ns (``_hotpath.rfc3339_ns``, whose accepted forms all mean the same
    under ``iso_ns``), or -1; the last text is remembered."""
    global _ts_len, _ts_ns
    cdef long long ns
    if n == _ts_len and memcmp(p, _ts_text, <size_t>n) == 0:
        return _ts_ns
    # years past 2261 overflow int64 ns there, not in iso_ns: leave them to the general path
    if n < 4 or memcmp(p, b"2262", 4) >= 0:
        return -1
    ns = rfc3339_ns(PyBytes_FromStringAndSize(<const char *>p, n))
    if ns >= 0 and n <= 40:
        memcpy(_ts_text, p, <size_t>n)
        _ts_len, _ts_ns = n, ns
    return ns


cdef Py_ssize_t _cb_level(const uchar *p, Py_ssize_t pos, Py_ssize_t end, int side,
                          _level *out) noexcept:
    """``{"side":..,"event_time":..,"price_level":..,"new_quantity":..}`` (the side is in the
    text; ``side`` is unused): index after it, or -1."""
    cdef Py_ssize_t q
    if not _at(p, pos, end, b'{"side":"', 9):
        return -1
    pos += 9
    if _at(p, pos, end, b'bid"', 4):
        out.side, pos = 0, pos + 4
    elif _at(p, pos, end, b'offer"', 6):
        out.side, pos = 1, pos + 6
    elif _at(p, pos, end, b'ask"', 4):
        out.side, pos = 1, pos + 4
    else:
        return -1
    if not _at(p, pos, end, b',"event_time":"', 15):
        return -1
    q = _close(p, pos + 15, end)
    if q < 0 or not _at(p, q, end, b'","price_level":"', 17):
        return -1
    out.price = q + 17
    out.price_end = q = _close(p, q + 17, end)
    if q < 0 or not _at(p, q, end, b'","new_quantity":"', 18):
        return -1
    out.size = q + 18
    out.size_end = q = _close(p, q + 18, end)
    if q < 0 or not _at(p, q, end, b'"}', 2):
        return -1
    return q + 2


cdef Py_ssize_t _cb_head(const uchar *p, Py_ssize_t end, long long expected, bytes channel,
                         const char *kind, Py_ssize_t kind_len, Py_ssize_t *t0,
                         Py_ssize_t *t1):
    """A frame's head (``channel`` is its prefix up to the second key) with ``sequence_num ==
    expected`` and one event starting ``{"type":"`` + ``kind``: index after ``kind`` (``t0``,
    ``t1``: the timestamp text), or -1."""
    cdef Py_ssize_t pos = PyBytes_GET_SIZE(channel), q
    cdef long long seq
    if not _at(p, 0, end, PyBytes_AS_STRING(channel), pos):
        return -1
    if _at(p, pos, end, b'client_id":"', 12):
        q = _close(p, pos + 12, end)
        if q < 0 or not _at(p, q, end, b'","', 3):
            return -1
        pos = q + 3
    if not _at(p, pos, end, b'timestamp":"', 12):
        return -1
    t0[0] = pos + 12
    t1[0] = q = _close(p, pos + 12, end)
    if q < 0 or not _at(p, q, end, b'","sequence_num":', 17):
        return -1
    q = _uint(p, q + 17, end, &seq)
    if q < 0 or seq != expected or not _at(p, q, end, b',"events":[{"type":"', 20) or \
            not _at(p, q + 20, end, kind, kind_len):
        return -1
    return q + 20 + kind_len


cdef inline Py_ssize_t _cb_tail(const uchar *p, Py_ssize_t pos, Py_ssize_t end) noexcept:
    """After the updates array: the frame must end with its event, events and object."""
    return 0 if pos >= 0 and pos + 3 == end and _at(p, pos, end, b'}]}', 3) else -1


def coinbase_l2_update(bytes frame not None, long long expected, dict products not None,
                       dict states not None, Py_ssize_t max_levels, EventMaker make not None,
                       object ts_recv):
    """Apply a canonical one-product ``l2_data`` update whose ``sequence_num`` is
    ``expected``, for a product in ``products`` (product id bytes -> ``(book, native)``)
    whose book is live in ``states``.  Returns ``(BookUpdate, crossed)`` built by ``make``
    (``make_book_update``'s signature), or None having changed nothing."""
    cdef const uchar *p = <const uchar *>PyBytes_AS_STRING(frame)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(frame), pos, q, t0, t1, n = 0
    cdef long long ts
    cdef tuple entry
    cdef OrderBook book
    pos = _cb_head(p, end, expected, CB_PREFIX, b'update","product_id":"', 22, &t0, &t1)
    q = _close(p, pos, end) if pos >= 0 else -1
    if q < 0 or not _at(p, q, end, b'","updates":[', 13):
        return None
    entry = _entry(p, pos, q, products)
    if entry is None:
        return None
    book = <OrderBook>entry[0]
    if states.get(book.symbol) != LIVE:
        return None
    # Python runs in _timestamp (and a collection could run other code): before the levels
    # fill the shared buffer, so nothing can run between filling it and applying it.
    ts = _timestamp(p + t0, t1 - t0)
    if ts < 0:
        return None
    pos = _levels(p, q + 13, end, _cb_level, 0, max_levels, book, None, None, &n)
    if _cb_tail(p, pos, end) != 0:
        return None
    return _event(make, book, entry[1], _apply(book, n), ts, ts_recv)


def coinbase_l2_snapshot(bytes frame not None, long long expected, Py_ssize_t max_levels):
    """A canonical one-product ``l2_data`` snapshot whose ``sequence_num`` is ``expected``
    and whose sides are all ``bid`` / ``offer`` / ``ask``: ``(product_id, ts_event, bids,
    asks)`` with the levels as ``(price, size)`` str pairs in frame order (what the general
    path hands ``OrderBook.snapshot``), or None."""
    cdef const uchar *p = <const uchar *>PyBytes_AS_STRING(frame)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(frame), pos, q, t, t0, t1, n = 0
    cdef long long ts
    cdef list bids = [], asks = []
    pos = _cb_head(p, end, expected, CB_PREFIX, b'snapshot","product_id":"', 24, &t0,
                   &t1)
    q = _close(p, pos, end) if pos >= 0 else -1
    if q < 0 or not _at(p, q, end, b'","updates":[', 13):
        return None
    t = _levels(p, q + 13, end, _cb_level, 0, max_levels, None, bids, asks, &n)
    ts = _timestamp(p + t0, t1 - t0) if _cb_tail(p, t, end) == 0 else -1
    if ts < 0:
        return None
    return _text(p, pos, q), ts, bids, asks


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


# The six keys of a market_trades trade, in any order, each once (other keys: general path).
cdef tuple TRADE_KEYS = (b'"product_id":"', b'"trade_id":"', b'"price":"', b'"size":"',
                         b'"time":"', b'"side":"')


cdef Py_ssize_t _cb_trade(const uchar *p, Py_ssize_t pos, Py_ssize_t end, list out) except -2:
    """One trade object from its ``{``, validated as ``CoinbaseParser._trade`` validates it
    (all but the product, which the caller resolves), appended to ``out`` as ``(product_id,
    price, size, taker side, trade_id, ts_event, seq or None)``: index after ``}``, or -1."""
    cdef Py_ssize_t start[6]
    cdef Py_ssize_t stop[6]
    cdef int k, seen = 0
    cdef Py_ssize_t i
    cdef long long ts, seq = 0
    cdef bytes key
    if pos >= end or p[pos] != 123:
        return -1
    pos += 1
    while True:
        for k in range(6):
            key = <bytes>TRADE_KEYS[k]
            if _at(p, pos, end, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key)):
                break
        else:
            return -1
        if seen & (1 << k):
            return -1
        seen |= 1 << k
        start[k] = pos + PyBytes_GET_SIZE(key)
        stop[k] = pos = _close(p, start[k], end)
        if pos < 0:
            return -1
        pos += 1
        if pos < end and p[pos] == 44:
            pos += 1
            continue
        if pos < end and p[pos] == 125 and seen == 63:
            break
        return -1
    if _at(p, start[5], end, b'BUY"', 4) and stop[5] == start[5] + 3:
        side = "sell"                      # the maker's side: the taker sold
    elif _at(p, start[5], end, b'SELL"', 5) and stop[5] == start[5] + 4:
        side = "buy"
    else:
        return -1
    if not _plain_decimal(p, start[2], stop[2]) or not _plain_decimal(p, start[3], stop[3]):
        return -1
    ts = _timestamp(p + start[4], stop[4] - start[4])
    if ts < 0:
        return -1
    seq_obj = None                  # int(trade_id) for 1-18 ASCII digits (leading 0s too)
    if 0 < stop[1] - start[1] < 19:
        for i in range(start[1], stop[1]):
            if not 48 <= p[i] <= 57:
                break
            seq = seq * 10 + (p[i] - 48)
        else:
            seq_obj = seq
    PyList_Append(out, (_text(p, start[0], stop[0]), _text(p, start[2], stop[2]),
                        _text(p, start[3], stop[3]), side, _text(p, start[1], stop[1]), ts,
                        seq_obj))
    return pos + 1


def coinbase_trades(bytes frame not None, long long expected, Py_ssize_t max_trades):
    """A canonical ``market_trades`` update (one event) whose ``sequence_num`` is
    ``expected`` and whose trades all pass ``CoinbaseParser._trade``'s checks but the
    product's: a list of ``(product_id, price, size, taker side, trade_id, ts_event, seq)``
    in frame order, or None."""
    cdef const uchar *p = <const uchar *>PyBytes_AS_STRING(frame)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(frame), pos, t0, t1
    cdef list out = []
    pos = _cb_head(p, end, expected, CB_TRADES, b'update","trades":[', 18, &t0, &t1)
    if pos < 0:
        return None
    if pos < end and p[pos] == 93:
        pos += 1
    else:
        while len(out) < max_trades:
            pos = _cb_trade(p, pos, end, out)
            if pos < 0:
                return None
            if pos < end and p[pos] == 44:
                pos += 1
                continue
            break
        if pos >= end or p[pos] != 93:
            return None
        pos += 1
    return out if _cb_tail(p, pos, end) == 0 else None


# ---- Binance.US ----------------------------------------------------------------------------

cdef Py_ssize_t _bn_level(const uchar *p, Py_ssize_t pos, Py_ssize_t end, int side,
                          _level *out) noexcept:
    """``["price","qty"]``: index after it, or -1."""
    cdef Py_ssize_t q
    if not _at(p, pos, end, b'["', 2):
        return -1
    out.side, out.price = side, pos + 2
    out.price_end = q = _close(p, pos + 2, end)
    if q < 0 or not _at(p, q, end, b'","', 3):
        return -1
    out.size = q + 3
    out.size_end = q = _close(p, q + 3, end)
    if q < 0 or not _at(p, q, end, b'"]', 2):
        return -1
    return q + 2


cdef inline Py_ssize_t _bn_unwrap(const uchar *p, Py_ssize_t end, Py_ssize_t *tail) noexcept:
    """Where the event object starts: 0 for a bare frame, after ``{"stream":"..","data":``
    for a combined one (``tail`` 1: its closing brace), or -1."""
    cdef Py_ssize_t q
    tail[0] = 0
    if not _at(p, 0, end, PyBytes_AS_STRING(BN_COMBINED), 11):
        return 0
    q = _close(p, 11, end)
    if q < 0 or not _at(p, q, end, b'","data":', 9):
        return -1
    tail[0] = 1
    return q + 9


def binance_depth_update(bytes frame not None, dict symbols not None, dict states not None,
                         dict last_u not None, set bridge not None, Py_ssize_t max_levels,
                         EventMaker make not None, object ts_recv):
    """Apply a canonical ``depthUpdate`` (bare or combined-stream) for a symbol in
    ``symbols`` (native bytes -> ``(book, native)``) whose book is live in ``states``, not
    bridging a snapshot (``bridge``), and whose ``U`` follows ``last_u[symbol]``; then
    ``last_u[symbol] = u``.  Returns ``(BookUpdate, crossed)`` built by ``make``, or None
    having changed nothing."""
    cdef const uchar *p = <const uchar *>PyBytes_AS_STRING(frame)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(frame), pos = 0, q, n = 0, tail = 0
    cdef long long event_ms, first, final
    cdef tuple entry
    cdef PyObject *last
    cdef OrderBook book
    pos = _bn_unwrap(p, end, &tail)
    if pos < 0 or not _at(p, pos, end, PyBytes_AS_STRING(BN_PREFIX), 23):
        return None
    q = _uint(p, pos + 23, end, &event_ms)
    # E * 1_000_000 must stay an int64 (Python's int would not overflow: leave it to it)
    if q < 0 or event_ms > 9223372036854 or not _at(p, q, end, b',"s":"', 6):
        return None
    pos = q + 6
    q = _close(p, pos, end)
    if q < 0 or not _at(p, q, end, b'","U":', 6):
        return None
    entry = _entry(p, pos, q, symbols)
    if entry is None:
        return None
    book = <OrderBook>entry[0]
    q = _uint(p, q + 6, end, &first)
    if q < 0 or not _at(p, q, end, b',"u":', 5):
        return None
    q = _uint(p, q + 5, end, &final)
    if q < 0 or first > final or not _at(p, q, end, b',"b":[', 6):
        return None
    last = PyDict_GetItem(last_u, book.symbol)
    if last == NULL or type(<object>last) is not int or <object>last + 1 != first \
            or states.get(book.symbol) != LIVE or book.symbol in bridge:
        return None
    q = _levels(p, q + 6, end, _bn_level, 0, max_levels, book, None, None, &n)
    if q < 0 or not _at(p, q, end, b',"a":[', 6):
        return None
    q = _levels(p, q + 6, end, _bn_level, 1, max_levels, book, None, None, &n)
    if q < 0 or q + 1 + tail != end or p[q] != 125 or (tail and p[q + 1] != 125):
        return None
    out = _event(make, book, entry[1], _apply(book, n), event_ms * 1000000, ts_recv)
    last_u[book.symbol] = final
    return out


# A trade event's keys (one byte each): what the parser reads, and what it may ignore.
cdef enum:
    K_E, K_EVENT_TIME, K_SYMBOL, K_TID, K_AGG_ID, K_PRICE, K_QTY, K_TIME, K_MAKER, K_IGNORED
cdef bytes BN_TRADE_KEYS = b"eEstapqTm"       # index = the K_ constant
cdef bytes BN_TRADE_IGNORED = b"Mbfl"          # best match, order ids, first/last trade ids


def binance_trade(bytes frame not None, long long max_time_ms=9223372036854):
    """A canonical ``trade`` / ``aggTrade`` event (bare or combined; flat object, keys in any
    order, each once) passing every check of ``BinanceUSParser._trade`` but the symbol's:
    ``(native symbol, kind, trade id, price, size, taker side, ts_event)``, or None."""
    cdef const uchar *p = <const uchar *>PyBytes_AS_STRING(frame)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(frame), pos, tail, q, k
    cdef Py_ssize_t start[K_IGNORED + 1]          # value text spans; -1: an integer
    cdef Py_ssize_t stop[K_IGNORED + 1]
    cdef long long ints[K_IGNORED + 1]
    cdef int seen = 0, maker = -1
    cdef const char *keys = PyBytes_AS_STRING(BN_TRADE_KEYS)
    pos = _bn_unwrap(p, end, &tail)
    if pos < 0 or pos >= end or p[pos] != 123:
        return None
    pos += 1
    while True:                                  # "k":value, one-letter keys only
        if not (pos + 4 < end and p[pos] == 34 and p[pos + 2] == 34 and p[pos + 3] == 58):
            return None
        for k in range(K_IGNORED):
            if p[pos + 1] == <uchar>keys[k]:
                break
        else:
            if memchr(PyBytes_AS_STRING(BN_TRADE_IGNORED), p[pos + 1], 4) == NULL:
                return None
            k = K_IGNORED
        if k < K_IGNORED:
            if seen & (1 << k):
                return None
            seen |= 1 << k
        pos += 4
        if p[pos] == 34:                         # a string
            q = _close(p, pos + 1, end)
            if q < 0:
                return None
            start[k], stop[k], pos = pos + 1, q, q + 1
        elif _at(p, pos, end, b"true", 4) or _at(p, pos, end, b"false", 5):
            if k == K_MAKER:
                maker = p[pos] == 116
            elif k != K_IGNORED:
                return None
            pos += 4 if p[pos] == 116 else 5
        else:
            q = _uint(p, pos, end, &ints[k])
            if q < 0 or k == K_MAKER:
                return None
            start[k] = stop[k] = -1              # marks an int
            pos = q
        if pos < end and p[pos] == 44:
            pos += 1
            continue
        if pos < end and p[pos] == 125:
            break
        return None
    if pos + 1 + tail != end or (tail and p[pos + 1] != 125):
        return None
    # e, E, s, p, q, T and m present (the id below); m a bool (checked above)
    if (seen & 0b111100111) != 0b111100111 or maker < 0:
        return None
    for k in (K_E, K_SYMBOL, K_PRICE, K_QTY):
        if start[k] < 0:
            return None
    for k in (K_EVENT_TIME, K_TIME):
        if start[k] != -1:
            return None
    if _at(p, start[K_E], end, b'trade"', 6) and stop[K_E] == start[K_E] + 5:
        kind, k = "trade", K_TID
    elif _at(p, start[K_E], end, b'aggTrade"', 9) and stop[K_E] == start[K_E] + 8:
        kind, k = "aggTrade", K_AGG_ID
    else:
        return None
    if not seen & (1 << k) or start[k] != -1 or ints[K_TIME] > max_time_ms or \
            not _plain_decimal(p, start[K_PRICE], stop[K_PRICE]) or \
            not _plain_decimal(p, start[K_QTY], stop[K_QTY]):
        return None
    return (_text(p, start[K_SYMBOL], stop[K_SYMBOL]), kind, ints[k],
            _text(p, start[K_PRICE], stop[K_PRICE]), _text(p, start[K_QTY], stop[K_QTY]),
            "sell" if maker else "buy", ints[K_TIME] * 1000000)
