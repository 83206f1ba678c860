# Included by _hotpath.pyx: Kraken v2's trade update, one trade, as Kraken writes it:
#
#   {"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"sell",
#    "price":96512.1,"qty":0.00026603,"ord_type":"market","trade_id":90000001,
#    "timestamp":"2026-11-27T10:00:00.221587Z"}]}
#
# Taken only when it is exactly that (compact, this key order, one trade, unsigned plain
# decimals without exponent, strings of printable ASCII without escapes, a canonical
# timestamp): then the general path would emit the same trade from the same texts.

cdef bytes TRADE_PREFIX = b'{"channel":"trade","type":"update","data":[{"symbol":"'
cdef str S_BUY = "buy"
cdef str S_SELL = "sell"


cdef inline Py_ssize_t _ascii_text(const char *p, Py_ssize_t pos, Py_ssize_t end) noexcept:
    """From just after an opening quote: the closing quote of a non-empty string of printable
    ASCII without escapes, or -1."""
    cdef Py_ssize_t i = pos
    while i < end and p[i] != 34:
        if p[i] < 32 or p[i] > 126 or p[i] == 92:
            return -1
        i += 1
    return i if i < end and i > pos else -1


cdef inline Py_ssize_t _unsigned_decimal(const char *p, Py_ssize_t pos, Py_ssize_t end) noexcept:
    """End of a JSON number at pos without sign or exponent, or -1."""
    cdef Py_ssize_t i = _number(p, pos, end), k
    if i < 0 or p[pos] == 45:
        return -1
    for k in range(pos, i):
        if p[k] == 101 or p[k] == 69:
            return -1
    return i


def scan_trade_update(bytes frame not None):
    """``(symbol, side, price, qty, trade_id, ts_event)`` of a canonical one-trade v2 update
    (symbol, price and qty as bytes, side ``"buy"``/``"sell"``, the rest ints), else None."""
    cdef const char *p = PyBytes_AS_STRING(frame)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(frame), n = len(TRADE_PREFIX)
    cdef Py_ssize_t pos, sym, sym_end, price, price_end, qty, qty_end, tid, ts
    cdef long long trade_id = 0, ts_ns
    cdef str side
    if end < n or memcmp(p, PyBytes_AS_STRING(TRADE_PREFIX), <size_t>n) != 0:
        return None
    sym = n
    sym_end = _ascii_text(p, sym, end)
    if sym_end < 0 or not _lit(p, sym_end, end, b'","side":"', 10):
        return None
    pos = sym_end + 10
    if _lit(p, pos, end, b'buy","price":', 13):
        side, price = S_BUY, pos + 13
    elif _lit(p, pos, end, b'sell","price":', 14):
        side, price = S_SELL, pos + 14
    else:
        return None
    price_end = _unsigned_decimal(p, price, end)
    if price_end < 0 or not _lit(p, price_end, end, b',"qty":', 7):
        return None
    qty = price_end + 7
    qty_end = _unsigned_decimal(p, qty, end)
    if qty_end < 0 or not _lit(p, qty_end, end, b',"ord_type":"', 13):
        return None
    pos = _ascii_text(p, qty_end + 13, end)
    if pos < 0 or not _lit(p, pos, end, b'","trade_id":', 13):
        return None
    tid = pos = pos + 13
    if pos < end and p[pos] == 48 and pos + 1 < end and 48 <= p[pos + 1] <= 57:
        return None                     # a leading zero: not JSON
    while pos < end and 48 <= p[pos] <= 57 and pos - tid < 18:
        trade_id = trade_id * 10 + (p[pos] - 48)
        pos += 1
    if pos == tid or not _lit(p, pos, end, b',"timestamp":"', 14):
        return None
    ts = pos + 14
    pos = _ascii_text(p, ts, end)
    if pos < 0 or pos + 4 != end or not _lit(p, pos, end, b'"}]}', 4):
        return None
    ts_ns = _rfc3339_ns(p + ts, pos - ts)
    if ts_ns < 0:
        return None
    return (PyBytes_FromStringAndSize(p + sym, sym_end - sym), side,
            PyBytes_FromStringAndSize(p + price, price_end - price),
            PyBytes_FromStringAndSize(p + qty, qty_end - qty), trade_id, ts_ns)
