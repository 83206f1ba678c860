# Included by _book.pyx: the Delta value type and its two encodings.

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer

cdef enum:
    DELTA_MAGIC = 0xD1        # format byte: "delta, layout 1"
    FLAG_SNAPSHOT = 1


cdef inline int _parse_change(object item, int pp, int sp, Py_ssize_t index,
                              ap_change *out) except -1:
    """One (side, price, size) triple -> *out, validated."""
    cdef object side, price, size
    if type(item) is tuple and PyTuple_GET_SIZE(item) == 3:
        side = (<tuple>item)[0]
        price = (<tuple>item)[1]
        size = (<tuple>item)[2]
    else:
        try:
            if isinstance(item, (str, bytes)):
                raise TypeError
            side, price, size = item
        except (TypeError, ValueError):
            raise BookError(f"changes[{index}] must be a (side, price, size) triple, "
                            f"not {item!r}", "changes") from None
    out.side = _parse_side(side, index)
    out.price = _parse_price(price, pp, index)
    out.size = _parse(size, sp, "size", index)
    return 0


cdef inline int _parse_level(object item, int pp, int sp, int side, ap_change *out) except -1:
    """One (price, size) pair of a snapshot side -> *out, validated."""
    cdef object price, size
    if type(item) is tuple and PyTuple_GET_SIZE(item) == 2:
        price = (<tuple>item)[0]
        size = (<tuple>item)[1]
    elif type(item) is list and len(<list>item) == 2:
        price = (<list>item)[0]
        size = (<list>item)[1]
    else:
        try:
            price, size = item
        except (TypeError, ValueError):
            raise BookError(f"level must be a (price, size) pair, not {item!r}",
                            "level") from None
    out.side = side
    out.price = _parse_price(price, pp, -1)
    out.size = _parse(size, sp, "size", -1)
    return 0


def _decode_delta(data):
    """Pickle support: ``Delta.decode`` as a module-level function."""
    return Delta.decode(data)


cdef inline const char *_utf8(str text, Py_ssize_t *size) except NULL:
    # The str's own UTF-8 buffer (kept by CPython; ASCII text needs no copy at all).
    return PyUnicode_AsUTF8AndSize(text, size)


@cython.freelist(64)
cdef class Delta:
    """A set of level changes that takes a book from one sequence number to the next.

    ``changes`` lists ``(side, price, size)`` as decimal strings, bid changes first, then ask
    changes, each side in application order; size ``"0"`` deletes a level.  A snapshot delta
    (``is_snapshot``) replaces the whole book instead.  ``encode()``/``decode()`` give the
    compact binary form used on the shared-memory rings and binary WebSocket frames;
    ``to_json()``/``from_json()`` the JSON form.  Both are exact inverses.
    """

    def __cinit__(self):
        # Kept minimal: every book update allocates one Delta.  Whoever creates a Delta sets
        # the header fields (__init__, _decode, OrderBook._new_delta/update).
        self.prices = &self._inline[0]
        self.sizes = &self._inline[4]

    def __dealloc__(self):
        if self.prices != &self._inline[0]:
            free(self.prices)

    def __init__(self, changes=(), *, sequence=0, is_snapshot=False, exchange="", symbol="",
                 price_precision=8, size_precision=8):
        """Build a delta from ``(side, price, size)`` text triples (validated like a book
        update; side ``"bid"``/``"ask"``/``"buy"``/``"sell"``/``"offer"``/0/1)."""
        _check_precision(price_precision, "price_precision")
        _check_precision(size_precision, "size_precision")
        if self.n or self.prices != &self._inline[0]:
            raise TypeError("Delta is immutable")
        cdef list items = list(changes)
        cdef Py_ssize_t n = len(items), i, nb = 0, na = 0
        cdef ap_change *tmp = <ap_change *>malloc(<size_t>(n if n else 1) * sizeof(ap_change))
        if tmp == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                _parse_change(items[i], price_precision, size_precision, i, &tmp[i])
                if tmp[i].side == 0:
                    nb += 1
            self._alloc(n)
            for i in range(n):
                if tmp[i].side == 0:
                    self.prices[na] = tmp[i].price
                    self.sizes[na] = tmp[i].size
                    na += 1
            for i in range(n):
                if tmp[i].side == 1:
                    self.prices[na] = tmp[i].price
                    self.sizes[na] = tmp[i].size
                    na += 1
        finally:
            free(tmp)
        self.n = n
        self.n_bids = nb
        self.sequence = sequence
        self.is_snapshot = bool(is_snapshot)
        self.exchange = str(exchange)
        self.symbol = str(symbol)
        self.price_precision = price_precision
        self.size_precision = size_precision

    cdef int _alloc(self, Py_ssize_t n) except -1:
        """Room for n changes (called once, on a fresh delta)."""
        cdef int64_t *buf
        if n <= 4:
            return 0
        buf = <int64_t *>malloc(<size_t>(2 * n) * sizeof(int64_t))
        if buf == NULL:
            raise MemoryError()
        self.prices = buf
        self.sizes = buf + n
        return 0

    def __len__(self):
        return self.n

    @property
    def changes(self):
        """``[(side, price, size), ...]`` as strings; bids first, then asks."""
        cdef list out = []
        cdef Py_ssize_t i
        for i in range(self.n):
            out.append((S_BID if i < self.n_bids else S_ASK,
                        _fmt(self.prices[i], self.price_precision),
                        _fmt(self.sizes[i], self.size_precision)))
        return out

    @property
    def bids(self):
        """Bid changes as ``[(price, size), ...]`` strings, in application order."""
        return self._levels(0, self.n_bids)

    @property
    def asks(self):
        """Ask changes as ``[(price, size), ...]`` strings, in application order."""
        return self._levels(self.n_bids, self.n)

    def _levels(self, Py_ssize_t start, Py_ssize_t stop):
        cdef list out = []
        cdef Py_ssize_t i
        for i in range(start, stop):
            out.append((_fmt(self.prices[i], self.price_precision),
                        _fmt(self.sizes[i], self.size_precision)))
        return out

    def to_arrays(self):
        """``(sides uint8, prices int64, sizes int64)`` numpy arrays (scaled), no strings."""
        cdef cnp.npy_intp dims[1]
        dims[0] = self.n
        sides = cnp.PyArray_ZEROS(1, dims, cnp.NPY_UINT8, 0)
        prices = cnp.PyArray_EMPTY(1, dims, cnp.NPY_INT64, 0)
        sizes = cnp.PyArray_EMPTY(1, dims, cnp.NPY_INT64, 0)
        if self.n:
            memset(<uint8_t *>cnp.PyArray_DATA(sides) + self.n_bids, 1,
                   <size_t>(self.n - self.n_bids))
            memcpy(cnp.PyArray_DATA(prices), self.prices, <size_t>self.n * sizeof(int64_t))
            memcpy(cnp.PyArray_DATA(sizes), self.sizes, <size_t>self.n * sizeof(int64_t))
        return sides, prices, sizes

    def __eq__(self, other):
        if not isinstance(other, Delta):
            return NotImplemented
        cdef Delta o = <Delta>other
        return (self.n == o.n and self.n_bids == o.n_bids and self.sequence == o.sequence
                and self.is_snapshot == o.is_snapshot and self.exchange == o.exchange
                and self.symbol == o.symbol and self.price_precision == o.price_precision
                and self.size_precision == o.size_precision
                and memcmp(self.prices, o.prices, <size_t>self.n * sizeof(int64_t)) == 0
                and memcmp(self.sizes, o.sizes, <size_t>self.n * sizeof(int64_t)) == 0)

    __hash__ = None

    def __repr__(self):
        kind = "snapshot" if self.is_snapshot else "delta"
        shown = self.changes[:4]
        more = f", ... {self.n - 4} more" if self.n > 4 else ""
        return (f"<Delta {kind} {self.exchange}:{self.symbol} seq={self.sequence} "
                f"{self.n} change(s) {shown}{more}>")

    def __reduce__(self):
        return (_decode_delta, (self.encode(),))

    # --- binary form ------------------------------------------------------------------
    #  0xD1 | flags | price_precision | size_precision | uvarint sequence
    #  | uvarint len + exchange utf-8 | uvarint len + symbol utf-8
    #  | uvarint n_bids | uvarint n_asks
    #  | per change: number(zigzag(price - previous price)) number(size)
    # "number" is _varint.h's mantissa/trailing-zeros form (3 tz bits for prices, 4 for sizes).  The previous price runs across
    # both sides (starting at 0), so a snapshot's first ask is a small step from its best bid.

    def encode(self):
        """The compact binary form (bytes); ``Delta.decode`` is its exact inverse."""
        cdef unsigned char stackbuf[512]
        cdef unsigned char *p = stackbuf
        cdef Py_ssize_t bound = self._encoded_max()
        if bound > 512:
            p = <unsigned char *>malloc(<size_t>bound)
            if p == NULL:
                raise MemoryError()
        try:
            return (<char *>p)[:self._encode_into(p)]
        finally:
            if p != stackbuf:
                free(p)

    cdef Py_ssize_t _encoded_max(self) except -1:
        """An upper bound of ``_encode_into``'s output size."""
        cdef Py_ssize_t le, ls
        _utf8(self.exchange, &le)
        _utf8(self.symbol, &ls)
        return 4 + 3 * 10 + le + ls + self.n * 2 * AP_VARINT_MAX

    cdef Py_ssize_t _encode_into(self, unsigned char *p) except -1:
        """Write the binary form to ``p`` (room for ``_encoded_max()`` bytes); its length.
        Record encoders (``_wire.pyx``) write it straight after their envelope."""
        cdef Py_ssize_t le, ls, i
        cdef const char *ex = _utf8(self.exchange, &le)
        cdef const char *sy = _utf8(self.symbol, &ls)
        cdef size_t pos = 4
        cdef int64_t prev = 0, d
        cdef uint64_t m
        cdef unsigned tz = 0
        p[0] = DELTA_MAGIC
        p[1] = FLAG_SNAPSHOT if self.is_snapshot else 0
        p[2] = <unsigned char>self.price_precision
        p[3] = <unsigned char>self.size_precision
        pos += ap_put_uvarint(p + pos, <uint64_t>self.sequence)
        pos += ap_put_uvarint(p + pos, <uint64_t>le)
        memcpy(p + pos, ex, <size_t>le)
        pos += <size_t>le
        pos += ap_put_uvarint(p + pos, <uint64_t>ls)
        memcpy(p + pos, sy, <size_t>ls)
        pos += <size_t>ls
        pos += ap_put_uvarint(p + pos, <uint64_t>self.n_bids)
        pos += ap_put_uvarint(p + pos, <uint64_t>(self.n - self.n_bids))
        for i in range(self.n):
            d = self.prices[i] - prev
            prev = self.prices[i]
            tz = 0
            while tz < 7 and d != 0 and d % 10 == 0:
                d = d // 10
                tz += 1
            pos += ap_put_number(p + pos, ap_zigzag(d), tz, AP_PRICE_TZBITS)
            ap_split_tz(<uint64_t>self.sizes[i], 15, &m, &tz)
            pos += ap_put_number(p + pos, m, tz, AP_SIZE_TZBITS)
        return <Py_ssize_t>pos

    @staticmethod
    def decode(data):
        """Parse ``encode()`` output (bytes, bytearray or memoryview) back into a Delta.

        Raises ``BookError(field="delta")`` on anything malformed or truncated."""
        cdef Py_buffer view
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            return _decode(<const unsigned char *>view.buf, <size_t>view.len)
        finally:
            PyBuffer_Release(&view)

    # --- JSON form --------------------------------------------------------------------

    def to_json(self):
        """A JSON-ready dict: exchange, symbol, sequence, snapshot, precisions, and
        ``bids``/``asks`` as ``[[price, size], ...]`` decimal strings."""
        return {
            "exchange": self.exchange,
            "symbol": self.symbol,
            "sequence": self.sequence,
            "snapshot": bool(self.is_snapshot),
            "price_precision": self.price_precision,
            "size_precision": self.size_precision,
            "bids": [list(level) for level in self._levels(0, self.n_bids)],
            "asks": [list(level) for level in self._levels(self.n_bids, self.n)],
        }

    @staticmethod
    def from_json(obj):
        """Inverse of ``to_json()``; raises ``BookError`` naming the bad key."""
        if not isinstance(obj, dict):
            raise BookError(f"delta JSON must be an object, not {type(obj).__name__}", "delta")
        for key in ("sequence", "price_precision", "size_precision", "bids", "asks"):
            if key not in obj:
                raise BookError(f"delta JSON lacks {key!r}", key)
        seq = obj["sequence"]
        if not isinstance(seq, int) or isinstance(seq, bool) or not -2**63 <= seq < 2**63:
            raise BookError(f"sequence must be an int64, not {seq!r}", "sequence")
        bids, asks = obj["bids"], obj["asks"]
        if not isinstance(bids, list) or not isinstance(asks, list):
            raise BookError("bids and asks must be lists of [price, size]", "bids")
        changes = []
        for side, levels in ((S_BID, bids), (S_ASK, asks)):
            for level in levels:
                if not isinstance(level, (list, tuple)) or len(level) != 2:
                    raise BookError(f"{side} level must be [price, size], not {level!r}",
                                    "level")
                changes.append((side, level[0], level[1]))
        exchange, symbol = obj.get("exchange", ""), obj.get("symbol", "")
        if not isinstance(exchange, str) or not isinstance(symbol, str):
            raise BookError("exchange and symbol must be strings", "symbol")
        return Delta(changes, sequence=seq, is_snapshot=bool(obj.get("snapshot", False)),
                     exchange=exchange, symbol=symbol,
                     price_precision=obj["price_precision"],
                     size_precision=obj["size_precision"])


cdef inline int _bad(str why) except -1:
    raise BookError(f"bad binary delta: {why}", "delta")


cdef Delta _decode(const unsigned char *p, size_t length):
    cdef size_t pos = 4, k
    cdef uint64_t u = 0, n_bids = 0, n_asks = 0, m = 0
    cdef unsigned tz = 0
    cdef int64_t prev = 0, d = 0, size = 0
    cdef Py_ssize_t i, n
    cdef Delta out
    if length < 4:
        _bad("shorter than its header")
    if p[0] != DELTA_MAGIC:
        _bad(f"format byte 0x{p[0]:02x}, expected 0x{DELTA_MAGIC:02x}")
    if p[1] & ~FLAG_SNAPSHOT:
        _bad(f"unknown flags 0x{p[1]:02x}")
    if p[2] > 18 or p[3] > 18:
        _bad("precision above 18")
    out = Delta.__new__(Delta)
    out.is_snapshot = p[1] & FLAG_SNAPSHOT
    out.price_precision = p[2]
    out.size_precision = p[3]
    k = ap_get_uvarint(p + pos, length - pos, &u)
    if k == 0:
        _bad("truncated sequence")
    pos += k
    out.sequence = <int64_t>u
    for i in range(2):
        k = ap_get_uvarint(p + pos, length - pos, &u)
        if k == 0 or u > length - pos - k:
            _bad("truncated name")
        pos += k
        try:
            name = (<char *>p)[pos:pos + u].decode("utf-8")
        except UnicodeDecodeError:
            _bad("name is not UTF-8")
        if i == 0:
            out.exchange = name
        else:
            out.symbol = name
        pos += u
    k = ap_get_uvarint(p + pos, length - pos, &n_bids)
    if k == 0:
        _bad("truncated count")
    pos += k
    k = ap_get_uvarint(p + pos, length - pos, &n_asks)
    if k == 0:
        _bad("truncated count")
    pos += k
    # Each change takes at least two bytes: refuse counts the data cannot hold before
    # allocating anything (a corrupt count must not become a huge malloc).
    if n_bids > (length - pos) // 2 or n_asks > (length - pos) // 2 - n_bids:
        _bad("change count exceeds the data")
    n = <Py_ssize_t>(n_bids + n_asks)
    out._alloc(n)
    for i in range(n):
        k = ap_get_number(p + pos, length - pos, AP_PRICE_TZBITS, &m, &tz)
        if k == 0:
            _bad(f"truncated price of change {i}")
        pos += k
        if not ap_scale_signed(ap_unzigzag(m), tz, &d):
            _bad(f"price of change {i} out of range")
        if (d > 0 and prev > INT64_MAX - d) or prev + d <= 0:
            _bad(f"price of change {i} out of range")
        prev += d
        k = ap_get_number(p + pos, length - pos, AP_SIZE_TZBITS, &m, &tz)
        if k == 0:
            _bad(f"truncated size of change {i}")
        pos += k
        if m > <uint64_t>INT64_MAX or not ap_scale_signed(<int64_t>m, tz, &size):
            _bad(f"size of change {i} out of range")
        out.prices[i] = prev
        out.sizes[i] = size
    if pos != length:
        _bad(f"{length - pos} trailing byte(s)")
    out.n = n
    out.n_bids = <Py_ssize_t>n_bids
    return out
