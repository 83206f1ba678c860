"""Exact L2 order book on scaled int64 (the compiled core behind ``alphapulse.OrderBook``).

Prices and sizes enter as decimal text and live as ``value * 10**precision`` in sorted int64
(key, size) chunks per side (see ``_levels.h`` for the layout and why the best level sits at
the end).  Nothing here ever converts a price to a binary float before deciding which level
it is.  Every mutating call validates all of its input before touching the book, so a bad
batch leaves the book exactly as it was.

No asyncio and no other package module: only ``alphapulse.errors``.
"""
cimport cython
cimport numpy as cnp
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.stdint cimport INT64_MAX, int64_t, uint8_t, uint64_t
from libc.stdlib cimport free, malloc, qsort
from libc.string cimport memcmp, memcpy, memmove, memset

from alphapulse.errors import BookError, SequenceError

cnp.import_array()
ap_crc32_init()
ap_ck_init()


cdef extern from "Python.h":
    bint PyUnicode_IS_COMPACT_ASCII(object o)
    void *PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    const char *PyUnicode_AsUTF8AndSize(object o, Py_ssize_t *size) except NULL


BID = 0
ASK = 1
cdef str S_BID = "bid"
cdef str S_ASK = "ask"
cdef tuple SIDE_NAMES = (S_BID, S_ASK)
cdef int64_t POW10[19]
POW10[0] = 1
for _i in range(1, 19):
    POW10[_i] = POW10[_i - 1] * 10


include "_book_text.pxi"
include "_delta.pxi"
include "_book_sides.pxi"


def _restore_book(symbol, price_precision, size_precision, exchange, depth, data):
    """Pickle support."""
    book = OrderBook(symbol, price_precision, size_precision, exchange=exchange, depth=depth)
    book.apply_delta(Delta.decode(data))
    return book


cdef inline void _top(OrderBook book, int64_t *t) noexcept:
    """Best bid key and size, best ask key and size (asks keyed negated), 0 for an empty side:
    what ``bbo()`` reports and ``apply_delta_top`` compares."""
    t[0] = t[1] = t[2] = t[3] = 0
    ap_side_best(&book.side[0], &t[0], &t[1])
    ap_side_best(&book.side[1], &t[2], &t[3])


cdef class OrderBook:
    """An exact L2 order book for one instrument.

    Prices and sizes go in as decimal text (``"65061.91"``, ``b"0.001"``) and come out as
    strings with exactly ``price_precision`` / ``size_precision`` decimals; inside they are
    int64 scaled by ``10**precision``.  Sides are ``"bid"``/``"ask"`` (also ``"buy"``,
    ``"sell"``, ``"offer"``, ``BID``=0, ``ASK``=1).  Every mutating call is all-or-nothing:
    on ``BookError`` the book is unchanged.  ``depth`` > 0 keeps only the best ``depth``
    levels per side (as Kraken subscriptions require).  A crossed book is kept (exchanges do
    send transient crosses) but reported by ``crossed``.
    """

    def __cinit__(self):
        memset(self.side, 0, sizeof(self.side))
        self.scratch = NULL
        self.scratch_cap = 0
        ap_ck_reset(&self.ck)
        self.sequence = 0
        self.exchange = ""
        self.symbol = ""
        self.price_precision = 8
        self.size_precision = 8
        self.depth = 0

    def __init__(self, symbol="", price_precision=8, size_precision=8, *, exchange="",
                 depth=0):
        _check_precision(price_precision, "price_precision")
        _check_precision(size_precision, "size_precision")
        if not isinstance(depth, int) or depth < 0:
            raise BookError(f"depth must be an int >= 0 (0 = unlimited), not {depth!r}",
                            "depth")
        self.symbol = str(symbol)
        self.exchange = str(exchange)
        self.price_precision = price_precision
        self.size_precision = size_precision
        self.depth = depth

    def __dealloc__(self):
        ap_side_free(&self.side[0])
        ap_side_free(&self.side[1])
        free(self.scratch)

    # --- internals --------------------------------------------------------------------

    cdef int _reserve_scratch(self, Py_ssize_t n) except -1:
        cdef ap_change *p
        if n <= self.scratch_cap:
            return 0
        n = max(n, 2 * self.scratch_cap, 64)
        p = <ap_change *>malloc(<size_t>n * sizeof(ap_change))
        if p == NULL:
            raise MemoryError()
        free(self.scratch)
        self.scratch = p
        self.scratch_cap = n
        return 0

    cdef void _trim_scratch(self) noexcept:
        # A 46,000-level snapshot needs a 1 MB scratch once; do not keep it per book.
        if self.scratch_cap > 1024:
            free(self.scratch)
            self.scratch = NULL
            self.scratch_cap = 0

    cdef Py_ssize_t _parse_changes(self, object changes) except -1:
        """Validate every change into the scratch buffer; returns how many."""
        cdef object seq = changes if type(changes) is list or type(changes) is tuple \
            else list(changes)
        cdef Py_ssize_t n = len(seq), i
        self._reserve_scratch(n)
        if type(seq) is list:
            for i in range(n):
                _parse_change(<object>PyList_GET_ITEM(seq, i), self.price_precision,
                              self.size_precision, i, &self.scratch[i])
        else:
            for i in range(n):
                _parse_change(<object>PyTuple_GET_ITEM(seq, i), self.price_precision,
                              self.size_precision, i, &self.scratch[i])
        return n

    cdef Delta _new_delta(self, Py_ssize_t capacity, bint snapshot):
        cdef Delta d = Delta.__new__(Delta)
        d._alloc(capacity)
        d.sequence = self.sequence
        d.is_snapshot = snapshot
        d.exchange = self.exchange
        d.symbol = self.symbol
        d.price_precision = self.price_precision
        d.size_precision = self.size_precision
        return d

    cdef Delta _apply_parsed(self, Py_ssize_t count, bint want_delta):
        """Apply scratch[0:count] (already validated), truncate, and (optionally) return the
        effective changes.  Everything that can fail happens before the first mutation."""
        cdef Py_ssize_t k[2]
        cdef Py_ssize_t room[2]
        cdef Py_ssize_t used[2]
        cdef Py_ssize_t i, s, dropped, base
        cdef int rc
        cdef ap_change *c
        cdef ap_side *sd
        cdef Delta d = None
        k[0] = k[1] = used[0] = used[1] = 0
        for i in range(count):
            k[self.scratch[i].side] += 1
        for s in range(2):
            if ap_side_reserve(&self.side[s], k[s]) < 0:
                raise MemoryError()
            room[s] = k[s]
            if self.depth and ap_side_count(&self.side[s]) + k[s] > self.depth:
                room[s] += ap_side_count(&self.side[s]) + k[s] - self.depth
        if want_delta:
            d = self._new_delta(room[0] + room[1], False)
        for i in range(count):
            c = &self.scratch[i]
            rc = ap_side_set(&self.side[c.side], c.price if c.side == 0 else -c.price, c.size)
            if rc and want_delta:
                # bids fill the delta from the front, asks from room[0] on (compacted below)
                base = 0 if c.side == 0 else room[0]
                d.prices[base + used[c.side]] = c.price
                d.sizes[base + used[c.side]] = c.size
                used[c.side] += 1
        if self.depth:
            for s in range(2):
                sd = &self.side[s]
                if not want_delta:
                    ap_side_truncate(sd, self.depth, NULL)
                    continue
                base = (0 if s == 0 else room[0]) + used[s]
                # dropped keys land straight in the delta's price slots (worst first)
                dropped = ap_side_truncate(sd, self.depth, d.prices + base)
                for i in range(base, base + dropped):
                    if s == 1:
                        d.prices[i] = -d.prices[i]
                    d.sizes[i] = 0
                used[s] += dropped
        ap_pool_trim()
        if want_delta:
            if used[1] and room[0] != used[0]:
                memmove(d.prices + used[0], d.prices + room[0], <size_t>used[1] * sizeof(int64_t))
                memmove(d.sizes + used[0], d.sizes + room[0], <size_t>used[1] * sizeof(int64_t))
            d.n = used[0] + used[1]
            d.n_bids = used[0]
        return d

    cdef int _replace(self, ap_change *levels, Py_ssize_t n_bids, Py_ssize_t n_asks) except -1:
        """Swap in both sides built from levels[0:n_bids] (bids) and the asks after them."""
        cdef ap_side nb, na
        if _build_side(levels, n_bids, &nb, self.depth) < 0:
            raise MemoryError()
        if _build_side(levels + n_bids, n_asks, &na, self.depth) < 0:
            ap_side_free(&nb)
            raise MemoryError()
        ap_side_free(&self.side[0])
        ap_side_free(&self.side[1])
        self.side[0] = nb
        self.side[1] = na
        return 0

    # --- writes -----------------------------------------------------------------------

    def snapshot(self, bids, asks):
        """Replace the whole book with ``bids``/``asks`` (iterables of ``(price, size)``
        text pairs, any order; size 0 entries skipped; a repeated price keeps its last size),
        truncated to ``depth``.  Returns the snapshot Delta of the new book."""
        cdef list bl = list(bids)
        cdef list al = list(asks)
        cdef Py_ssize_t nb = len(bl), na = len(al), i
        cdef str name = "bids"
        self._reserve_scratch(nb + na)
        try:
            for i in range(nb):
                _parse_level(bl[i], self.price_precision, self.size_precision, 0,
                             &self.scratch[i])
            name = "asks"
            for i in range(na):
                _parse_level(al[i], self.price_precision, self.size_precision, 1,
                             &self.scratch[nb + i])
        except BookError as exc:
            raise BookError(f"{name}[{i}]: {exc}", exc.field) from None
        self._replace(self.scratch, nb, na)
        self._trim_scratch()
        self.sequence += 1
        return self.snapshot_delta()

    def update(self, side, price, size):
        """Set one level (size ``"0"`` deletes it); returns the effective Delta (empty when
        nothing changed).  Sequence +1."""
        cdef int s = _parse_side(side, -1)
        cdef int64_t p = _parse_price(price, self.price_precision, -1)
        cdef int64_t z = _parse(size, self.size_precision, "size", -1)
        cdef ap_side *sd = &self.side[s]
        cdef int rc
        cdef Py_ssize_t dropped = 0
        # The Delta first (its inline room holds the change plus the one level a depth limit
        # can push out), so nothing can fail after the book has changed.
        cdef Delta d = Delta.__new__(Delta)
        rc = ap_side_set(sd, p if s == 0 else -p, z)
        if rc < 0:
            raise MemoryError()
        if rc:
            d._inline[0] = p
            d._inline[4] = z
            d.n = 1
            if self.depth:
                # The book held <= depth levels before, so one insert drops at most one.
                dropped = ap_side_truncate(sd, self.depth, &d._inline[1])
                if dropped:
                    if s == 1:
                        d._inline[1] = -d._inline[1]
                    d._inline[5] = 0
                    d.n = 2
        d.n_bids = d.n if s == 0 else 0
        self.sequence += 1
        d.sequence = self.sequence
        d.exchange = self.exchange
        d.symbol = self.symbol
        d.price_precision = self.price_precision
        d.size_precision = self.size_precision
        return d

    def apply(self, changes):
        """Apply a batch of ``(side, price, size)`` changes, all or nothing, as one sequence
        step; then truncate to ``depth``.  Returns the effective changes, including levels
        dropped by truncation (size ``"0"``)."""
        return self._apply_scratch(self._parse_changes(changes))

    cdef Delta _apply_scratch(self, Py_ssize_t count):
        """``apply`` of scratch[0:count], already validated (compiled feed scanners fill the
        scratch themselves through ``_reserve_scratch`` and call this)."""
        self.sequence += 1
        try:
            return self._apply_parsed(count, True)
        except BaseException:
            self.sequence -= 1
            raise

    def apply_scaled(self, sides, prices, sizes):
        """Batch from scaled int arrays (numpy or any int sequence): ``sides`` 0=bid 1=ask,
        prices > 0 and sizes >= 0 already multiplied by ``10**precision``.  Same semantics as
        ``apply`` without any text parsing (for feeds that decode binary data)."""
        cdef const int64_t[::1] pr = cnp.PyArray_FROMANY(prices, cnp.NPY_INT64, 1, 1,
                                                         cnp.NPY_ARRAY_IN_ARRAY)
        cdef const int64_t[::1] sz = cnp.PyArray_FROMANY(sizes, cnp.NPY_INT64, 1, 1,
                                                         cnp.NPY_ARRAY_IN_ARRAY)
        cdef const int64_t[::1] sd = cnp.PyArray_FROMANY(sides, cnp.NPY_INT64, 1, 1,
                                                         cnp.NPY_ARRAY_IN_ARRAY)
        cdef Py_ssize_t n = pr.shape[0], i
        if sz.shape[0] != n or sd.shape[0] != n:
            raise BookError("sides, prices and sizes must have the same length", "changes")
        self._reserve_scratch(n)
        for i in range(n):
            if sd[i] != 0 and sd[i] != 1:
                raise BookError(f"changes[{i}]: side {sd[i]} is not 0 or 1", "side")
            if pr[i] <= 0:
                raise BookError(f"changes[{i}]: price {pr[i]} must be positive", "price")
            if sz[i] < 0:
                raise BookError(f"changes[{i}]: size {sz[i]} is negative", "size")
            self.scratch[i].side = <int>sd[i]
            self.scratch[i].price = pr[i]
            self.scratch[i].size = sz[i]
        self.sequence += 1
        try:
            return self._apply_parsed(n, True)
        except BaseException:
            self.sequence -= 1
            raise

    def apply_delta(self, Delta delta not None):
        """Apply a Delta from another copy of this book.  A snapshot delta replaces the
        book; any other must carry ``sequence == self.sequence + 1`` (else SequenceError,
        book unchanged).  Afterwards ``self.sequence == delta.sequence``."""
        self._apply_delta(delta)

    def apply_delta_top(self, Delta delta not None):
        """``apply_delta(delta)``, then the new ``bbo()`` if the delta changed the top of book
        (a best price or size on either side), else None.  For mirrors that act only on top
        changes: the common delta below the top builds no tuple."""
        cdef int64_t before[4]
        cdef int64_t after[4]
        _top(self, before)
        self._apply_delta(delta)
        _top(self, after)
        if memcmp(before, after, sizeof(before)) == 0:
            return None
        return (after[0], after[1], -after[2], after[3])

    cdef int _apply_delta(self, Delta delta) except -1:
        cdef Py_ssize_t i
        if delta.price_precision != self.price_precision:
            raise BookError(f"delta price_precision {delta.price_precision} != book's "
                            f"{self.price_precision}", "price_precision")
        if delta.size_precision != self.size_precision:
            raise BookError(f"delta size_precision {delta.size_precision} != book's "
                            f"{self.size_precision}", "size_precision")
        if not delta.is_snapshot and delta.sequence != self.sequence + 1:
            raise SequenceError(f"delta sequence {delta.sequence} does not follow book "
                                f"sequence {self.sequence}", "sequence")
        self._reserve_scratch(delta.n)
        for i in range(delta.n):
            self.scratch[i].side = 0 if i < delta.n_bids else 1
            self.scratch[i].price = delta.prices[i]
            self.scratch[i].size = delta.sizes[i]
        if delta.is_snapshot:
            self._replace(self.scratch, delta.n_bids, delta.n - delta.n_bids)
            self._trim_scratch()
        else:
            self._apply_parsed(delta.n, False)
        self.sequence = delta.sequence
        return 0

    def snapshot_delta(self):
        """The whole book as a snapshot Delta (best levels first) at the current sequence."""
        cdef Py_ssize_t nb = ap_side_count(&self.side[0]), na = ap_side_count(&self.side[1])
        cdef Delta d = self._new_delta(nb + na, True)
        cdef Py_ssize_t i, j = 0
        cdef ap_side *sd = &self.side[0]
        ap_side_top(sd, nb, d.prices, d.sizes)
        ap_side_top(&self.side[1], na, d.prices + nb, d.sizes + nb)
        for j in range(nb, nb + na):
            d.prices[j] = -d.prices[j]
        d.n = nb + na
        d.n_bids = nb
        return d

    # ---- reads: nothing here allocates per level except the list-of-strings helpers

    # --- top of book ------------------------------------------------------------------

    def best_bid(self):
        """``(price, size)`` strings of the best bid, or None when the side is empty."""
        cdef int64_t k, z
        if not ap_side_best(&self.side[0], &k, &z):
            return None
        return (_fmt(k, self.price_precision), _fmt(z, self.size_precision))

    def best_ask(self):
        """``(price, size)`` strings of the best ask, or None when the side is empty."""
        cdef int64_t k, z
        if not ap_side_best(&self.side[1], &k, &z):
            return None
        return (_fmt(-k, self.price_precision), _fmt(z, self.size_precision))

    def bbo(self):
        """``(bid_price, bid_size, ask_price, ask_size)`` as scaled ints (0 for an empty side):
        the cheapest top-of-book read, no strings."""
        cdef int64_t t[4]
        _top(self, t)
        return (t[0], t[1], -t[2], t[3])

    def spread(self):
        """Best ask minus best bid as a price string (negative when crossed), or None."""
        cdef int64_t bk, bz, ak, az
        if not ap_side_best(&self.side[0], &bk, &bz) or not ap_side_best(&self.side[1], &ak, &az):
            return None
        return _fmt(-ak - bk, self.price_precision)

    def mid(self):
        """(best bid + best ask) / 2, exact, with one decimal more than the price precision
        (``"100.05"`` -> ``"100.050"``), or None when a side is empty."""
        cdef int64_t bk, bz, ak, az
        if not ap_side_best(&self.side[0], &bk, &bz) or not ap_side_best(&self.side[1], &ak, &az):
            return None
        total = (<object>bk + <object>(-ak)) * 5
        if self.price_precision + 1 <= 18 and total <= INT64_MAX:
            return _fmt(<int64_t>total, self.price_precision + 1)
        digits = str(total).rjust(self.price_precision + 2, "0")
        return digits[:-(self.price_precision + 1)] + "." + digits[-(self.price_precision + 1):]

    @property
    def crossed(self):
        """True when best bid >= best ask (the book is then not a valid market)."""
        cdef int64_t bk, bz, ak, az
        return (ap_side_best(&self.side[0], &bk, &bz) and ap_side_best(&self.side[1], &ak, &az)
                and bk >= -ak)

    @property
    def bid_count(self):
        """Number of bid levels."""
        return ap_side_count(&self.side[0])

    @property
    def ask_count(self):
        """Number of ask levels."""
        return ap_side_count(&self.side[1])

    def __len__(self):
        return ap_side_count(&self.side[0]) + ap_side_count(&self.side[1])

    # --- depth ------------------------------------------------------------------------

    def _side_levels(self, int s, Py_ssize_t n):
        cdef ap_side *sd = &self.side[s]
        cdef Py_ssize_t count = ap_side_count(sd), i
        cdef list out = []
        cdef int64_t stack[128]
        cdef int64_t *buf = stack
        if n <= 0 or n > count:
            n = count
        if n > 64:
            buf = <int64_t *>malloc(<size_t>(2 * n) * sizeof(int64_t))
            if buf == NULL:
                raise MemoryError()
        try:
            ap_side_top(sd, n, buf, buf + n)
            for i in range(n):
                out.append((_fmt(buf[i] if s == 0 else -buf[i], self.price_precision),
                            _fmt(buf[n + i], self.size_precision)))
        finally:
            if buf != stack:
                free(buf)
        return out

    def bids(self, Py_ssize_t n=0):
        """The best ``n`` bids (all when n is 0), best first, as ``(price, size)`` strings."""
        return self._side_levels(0, n)

    def asks(self, Py_ssize_t n=0):
        """The best ``n`` asks (all when n is 0), best first, as ``(price, size)`` strings."""
        return self._side_levels(1, n)

    def get(self, side, price):
        """Size at ``price`` on ``side`` as a string, or None when there is no such level."""
        cdef int s = _parse_side(side, -1)
        cdef int64_t p = _parse_price(price, self.price_precision, -1)
        cdef int64_t z = ap_side_get(&self.side[s], p if s == 0 else -p)
        return _fmt(z, self.size_precision) if z else None

    def top(self, Py_ssize_t n):
        """``(bid_prices, bid_sizes, ask_prices, ask_sizes)``: numpy int64 arrays of the best
        ``n`` levels per side (fewer when a side is shorter; all when n is 0), best first,
        scaled by ``10**precision``.  No per-level Python objects."""
        cdef cnp.npy_intp dims[1]
        cdef ap_side *sd
        cdef int64_t *pp
        cdef int64_t *zp
        cdef Py_ssize_t m, i, s
        cdef list out = [None, None, None, None]
        for s in range(2):
            sd = &self.side[s]
            m = ap_side_count(sd)
            if 0 < n < m:
                m = n
            dims[0] = m
            prices = cnp.PyArray_EMPTY(1, dims, cnp.NPY_INT64, 0)
            sizes = cnp.PyArray_EMPTY(1, dims, cnp.NPY_INT64, 0)
            pp = <int64_t *>cnp.PyArray_DATA(prices)
            zp = <int64_t *>cnp.PyArray_DATA(sizes)
            ap_side_top(sd, m, pp, zp)
            if s == 1:
                for i in range(m):
                    pp[i] = -pp[i]
            out[2 * s] = prices
            out[2 * s + 1] = sizes
        return tuple(out)

    def top_into(self, cnp.ndarray out not None):
        """Fill a preallocated C-contiguous int64 array of shape ``(4, n)`` with rows bid
        prices, bid sizes, ask prices, ask sizes (scaled, best first, zero-padded); returns
        ``(bid_levels, ask_levels)`` written.  Allocation-free: the fastest top-N read."""
        if (cnp.PyArray_TYPE(out) != cnp.NPY_INT64 or cnp.PyArray_NDIM(out) != 2
                or cnp.PyArray_DIM(out, 0) != 4 or not cnp.PyArray_IS_C_CONTIGUOUS(out)
                or not cnp.PyArray_ISWRITEABLE(out)):
            raise BookError("out must be a writeable C-contiguous int64 array of shape (4, n)",
                            "out")
        cdef Py_ssize_t n = cnp.PyArray_DIM(out, 1), m, i, s
        cdef int64_t *base = <int64_t *>cnp.PyArray_DATA(out)
        cdef int64_t *pp
        cdef int64_t *zp
        cdef ap_side *sd
        cdef Py_ssize_t written[2]
        for s in range(2):
            sd = &self.side[s]
            pp = base + 2 * s * n
            zp = pp + n
            m = ap_side_top(sd, n, pp, zp)
            if s == 1:
                for i in range(m):
                    pp[i] = -pp[i]
            if m < n:
                memset(pp + m, 0, <size_t>(n - m) * sizeof(int64_t))
                memset(zp + m, 0, <size_t>(n - m) * sizeof(int64_t))
            written[s] = m
        return written[0], written[1]

    def top_float(self, Py_ssize_t n):
        """Like ``top`` but float64 in natural units (for plotting and numeric models; the
        book itself never uses these)."""
        bp, bs, ap, az = self.top(n)
        ps = float(POW10[self.price_precision])
        zs = float(POW10[self.size_precision])
        return bp / ps, bs / zs, ap / ps, az / zs

    # --- integrity ----------------------------------------------------------------------

    def checksum(self, Py_ssize_t levels=10):
        """Kraken's book CRC32 (WebSocket v2 rule) over the top ``levels`` (10) per side: asks
        ascending then bids descending, each price and size printed at the book's precision with
        the '.' and leading zeros removed, concatenated.  Two copies of a book agree on it.

        The default (10 levels) goes through a per-book memo of the last top levels, their
        text and per-side CRCs (``_checksum.h``): a message that changed one level formats one
        level and CRCs one side again; other ``levels`` are computed from scratch."""
        cdef char stackbuf[1024]
        cdef int64_t stacklv[48]
        cdef char *buf = stackbuf
        cdef int64_t *lv = stacklv
        cdef size_t length = 0
        cdef Py_ssize_t i, m, s
        cdef uint32_t crc
        if levels == AP_CK_LEVELS:
            return self._checksum10()
        if levels < 0:
            raise BookError("levels must be >= 0", "levels")
        if levels > 12:
            buf = <char *>malloc(<size_t>levels * 2 * 2 * 20 + 1)
            lv = <int64_t *>malloc(<size_t>levels * 2 * sizeof(int64_t))
            if buf == NULL or lv == NULL:
                free(buf)
                free(lv)
                raise MemoryError()
        for s in (1, 0):
            m = ap_side_top(&self.side[s], levels, lv, lv + levels)
            for i in range(m):
                length += <size_t>ap_format_digits(lv[i], buf + length)
                length += <size_t>ap_format_digits(lv[levels + i], buf + length)
        crc = ap_crc32(buf, length)
        if buf != stackbuf:
            free(buf)
            free(lv)
        return crc

    cdef uint32_t _checksum10(self) noexcept:
        """The top-10 checksum through the per-book memo (``_checksum.h``): only the levels
        that changed since the last call are formatted and CRC'd again."""
        cdef int64_t lv[4 * AP_CK_LEVELS]
        cdef Py_ssize_t nb = ap_side_top(&self.side[0], AP_CK_LEVELS, lv, lv + AP_CK_LEVELS)
        cdef Py_ssize_t na = ap_side_top(&self.side[1], AP_CK_LEVELS, lv + 2 * AP_CK_LEVELS,
                                         lv + 3 * AP_CK_LEVELS)
        return ap_ck_checksum(&self.ck, lv, lv + AP_CK_LEVELS, <int>nb,
                              lv + 2 * AP_CK_LEVELS, lv + 3 * AP_CK_LEVELS, <int>na)

    # --- copies and comparison ------------------------------------------------------------

    def copy(self):
        """An independent copy (same levels, precisions, depth, sequence)."""
        cdef OrderBook b = OrderBook.__new__(OrderBook)
        cdef Py_ssize_t s, n
        b.symbol = self.symbol
        b.exchange = self.exchange
        b.price_precision = self.price_precision
        b.size_precision = self.size_precision
        b.depth = self.depth
        b.sequence = self.sequence
        cdef int64_t *buf
        cdef int rc
        for s in range(2):
            n = ap_side_count(&self.side[s])
            buf = <int64_t *>malloc(<size_t>(2 * n + 1) * sizeof(int64_t))
            if buf == NULL:
                raise MemoryError()
            # best first -> ascending keys, as ap_side_assign wants them
            ap_side_top(&self.side[s], n, buf + n, buf)
            _reverse(buf, n)
            _reverse(buf + n, n)
            rc = ap_side_assign(&b.side[s], buf + n, buf, n)
            free(buf)
            if rc < 0:
                raise MemoryError()
        return b

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    def __eq__(self, other):
        """Same levels on both sides at the same precisions (sequence and names ignored)."""
        if not isinstance(other, OrderBook):
            return NotImplemented
        cdef OrderBook o = <OrderBook>other
        cdef Py_ssize_t s, n
        cdef int64_t *x
        cdef int64_t *y
        cdef bint same
        if (self.price_precision != o.price_precision
                or self.size_precision != o.size_precision):
            return False
        for s in range(2):
            n = ap_side_count(&self.side[s])
            if n != ap_side_count(&o.side[s]):
                return False
            x = _best_first(&self.side[s])
            try:
                y = _best_first(&o.side[s])
            except MemoryError:
                free(x)
                raise
            same = memcmp(x, y, <size_t>(2 * n) * sizeof(int64_t)) == 0
            free(x)
            free(y)
            if not same:
                return False
        return True

    __hash__ = None

    @property
    def nbytes(self):
        """Bytes this book holds in C memory (level chunks and their index, scratch buffer)."""
        return (ap_side_nbytes(&self.side[0]) + ap_side_nbytes(&self.side[1])
                + self.scratch_cap * sizeof(ap_change))

    def __sizeof__(self):
        return object.__sizeof__(self) + self.nbytes

    def __reduce__(self):
        return (_restore_book, (self.symbol, self.price_precision, self.size_precision,
                                self.exchange, self.depth, self.snapshot_delta().encode()))

    def __repr__(self):
        bid = self.best_bid()
        ask = self.best_ask()
        return (f"<OrderBook {self.exchange}:{self.symbol} seq={self.sequence} "
                f"bids={self.bid_count} asks={self.ask_count} "
                f"best={bid[0] if bid else None}/{ask[0] if ask else None}"
                f"{' CROSSED' if self.crossed else ''}>")
