# Included by _scan.pyx (uses _scan_common.pxi and _scan_event.pxi): the Coinbase Advanced
# Trade scanners.  ``l2_data`` update (applied), ``l2_data`` snapshot (levels returned as text
# pairs), ``market_trades`` update (trades validated, returned as tuples).  Every frame's head
# must carry ``sequence_num == expected``: the counter is the parser's, and a frame out of
# order is the general path's business.

cdef bytes CB_PREFIX = b'{"channel":"l2_data","'
cdef bytes CB_TRADES = b'{"channel":"market_trades","'

# Last timestamp text -> ns: Coinbase stamps many consecutive frames alike.
cdef char _ts_text[40]
cdef Py_ssize_t _ts_len = 0
cdef long long _ts_ns = 0


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
