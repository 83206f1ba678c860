# Included by _scan.pyx (uses _scan_common.pxi and _scan_event.pxi): the Binance.US
# scanners.  ``depthUpdate`` (applied when it continues a live book's update ids) and
# ``trade`` / ``aggTrade`` (validated, returned as a tuple), bare or combined-stream.

cdef bytes BN_COMBINED = b'{"stream":"'
cdef bytes BN_PREFIX = b'{"e":"depthUpdate","E":'


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
