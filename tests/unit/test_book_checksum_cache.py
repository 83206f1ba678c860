"""The memoised Kraken checksum (``_checksum.h``) always equals a from-scratch recomputation.

``OrderBook.checksum()`` keeps, per book, the last top-10 levels with their digit text and
per-side CRCs, and redoes only what changed.  These properties drive random operation
sequences (snapshots, batches, single updates, deletes of the top levels, truncation by depth,
copies, precision edge cases up to 19-digit numbers) and compare after every step with the
documented rule computed here from scratch: the reference book's (``Decimal``) top 10 asks
then bids, printed at the pair's precision, '.' removed, leading zeros stripped, through a
pure-Python table CRC-32 (and ``zlib.crc32``, which must agree with it).
"""
from __future__ import annotations

import zlib

from book_reference import ReferenceBook
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphapulse import OrderBook
from alphapulse.book import format_decimal

SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
INT64_MAX = 2**63 - 1


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    return table


TABLE = _crc_table()


def crc32_py(data: bytes) -> int:
    """CRC-32 (IEEE, reflected), one byte at a time: shares nothing with the C tables."""
    c = 0xFFFFFFFF
    for b in data:
        c = TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def expected(ref: ReferenceBook, levels: int = 10) -> int:
    """Kraken's rule from scratch over the reference book's formatted levels."""
    text = "".join(p.replace(".", "").lstrip("0") + q.replace(".", "").lstrip("0")
                   for side in (ref.asks(levels), ref.bids(levels)) for p, q in side)
    data = text.encode("ascii")
    crc = crc32_py(data)
    assert crc == zlib.crc32(data)
    return crc


# Precision pairs with the edge cases: 0 decimals (no '.'), 18 decimals (every digit after the
# point, values below 10), and Kraken's usual ones.
PRECISIONS = st.sampled_from([(0, 0), (1, 8), (2, 8), (5, 8), (8, 8), (18, 18), (0, 18),
                              (18, 0)])


@st.composite
def scaled_values(draw, precision: int, positive: bool) -> int:
    """Scaled ints that exercise the digit text: tiny (one digit, leading zeros in the decimal
    form), round (trailing zeros kept), and 19-digit ones near the int64 limit."""
    lo = 1 if positive else 0
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.integers(lo, 20))
    if kind == 1:
        return draw(st.integers(lo, 60)) * 10 ** draw(st.integers(0, min(precision, 6)))
    if kind == 2:
        return draw(st.integers(INT64_MAX - 200, INT64_MAX))
    return draw(st.integers(lo, 10**12))


@st.composite
def programs(draw) -> tuple[int, int, int, list]:
    pp, sp = draw(PRECISIONS)
    depth = draw(st.sampled_from([0, 0, 10, 11, 12, 25]))
    # A small price grid so levels collide, move in and out of the top 10 and get deleted.
    base = draw(st.sampled_from([1, 1000, 10**15, INT64_MAX - 100]))
    grid = st.integers(0, 40).map(lambda k: base + k if base < INT64_MAX - 100 else base + k)
    size = scaled_values(sp, positive=True)
    size_or_zero = st.one_of(st.just(0), size)

    def level() -> st.SearchStrategy:
        return st.tuples(grid, size)

    ops = []
    for _ in range(draw(st.integers(1, 20))):
        kind = draw(st.sampled_from(["snapshot", "apply", "apply", "update", "update",
                                     "delete_top", "copy", "levels"]))
        if kind == "snapshot":
            ops.append((kind, draw(st.lists(level(), max_size=30)),
                        draw(st.lists(level(), max_size=30))))
        elif kind == "apply":
            ops.append((kind, draw(st.lists(
                st.tuples(st.sampled_from(["bid", "ask"]), grid, size_or_zero), max_size=8))))
        elif kind == "update":
            ops.append((kind, draw(st.sampled_from(["bid", "ask"])), draw(grid),
                        draw(size_or_zero)))
        elif kind == "delete_top":
            ops.append((kind, draw(st.sampled_from(["bid", "ask"])), draw(st.integers(1, 4))))
        elif kind == "levels":
            ops.append((kind, draw(st.integers(1, 13))))
        else:
            ops.append((kind,))
    return pp, sp, depth, ops


def run_program(program, check_every: bool, checks: list[bool] | None = None) -> None:
    pp, sp, depth, ops = program
    book = OrderBook("T", pp, sp, depth=depth)
    ref = ReferenceBook(pp, sp, depth)
    fp = lambda v: format_decimal(v, pp)  # noqa: E731
    fs = lambda v: format_decimal(v, sp)  # noqa: E731
    for step, op in enumerate(ops):
        kind = op[0]
        if kind == "snapshot":
            bids = [(fp(p), fs(q)) for p, q in op[1]]
            asks = [(fp(p), fs(q)) for p, q in op[2]]
            book.snapshot(bids, asks)
            ref.snapshot(bids, asks)
        elif kind == "apply":
            changes = [(s, fp(p), fs(q)) for s, p, q in op[1]]
            book.apply(changes)
            ref.apply(changes)
        elif kind == "update":
            book.update(op[1], fp(op[2]), fs(op[3]))
            ref.update(op[1], fp(op[2]), fs(op[3]))
        elif kind == "delete_top":
            top = ref.bids(op[2]) if op[1] == "bid" else ref.asks(op[2])
            changes = [(op[1], p, "0") for p, _ in top]
            book.apply(changes)
            ref.apply(changes)
        elif kind == "copy":
            book = book.copy()          # a copy starts with a cold memo
        elif kind == "levels":
            # other depths take the uncached path; the cached one must not be disturbed
            assert book.checksum(op[1]) == expected(ref, op[1])
        if check_every or (checks is not None and checks[step % len(checks)]):
            assert book.checksum() == expected(ref), (step, op)
    assert book.checksum() == expected(ref)
    assert book.checksum() == book.copy().checksum()


@SETTINGS
@given(programs())
def test_cached_checksum_equals_recomputation_after_every_step(program) -> None:
    run_program(program, check_every=True)


@SETTINGS
@given(programs(), st.lists(st.booleans(), min_size=1, max_size=7))
def test_cached_checksum_across_several_unchecked_steps(program, checks) -> None:
    """The memo may see many changes at once (checksums are not taken after every message in
    every caller): it still compares every level, so it cannot go stale."""
    run_program(program, check_every=False, checks=checks)


def test_documented_example_through_the_cache() -> None:
    """Kraken's documented example, then the same book reached by updates from an empty one,
    then after a deep change and back: the memo gives the documented value each time."""
    bids = [("45283.5", "0.10000000"), ("45283.4", "1.54582015"), ("45282.1", "0.10000000"),
            ("45281.0", "0.10000000"), ("45280.3", "1.54592586"), ("45279.0", "0.07990000"),
            ("45277.6", "0.03310103"), ("45277.5", "0.30000000"), ("45277.3", "1.54602737"),
            ("45276.6", "0.15445238")]
    asks = [("45285.2", "0.00100000"), ("45286.4", "1.54571953"), ("45286.6", "1.54571109"),
            ("45289.6", "1.54560911"), ("45290.2", "0.15890660"), ("45291.8", "1.54553491"),
            ("45294.7", "0.04454749"), ("45296.1", "0.35380000"), ("45297.5", "0.09945542"),
            ("45299.5", "0.18772827")]
    book = OrderBook("BTC/USD", 1, 8, depth=10)
    book.snapshot(bids, asks)
    assert book.checksum() == 3310070434
    grown = OrderBook("BTC/USD", 1, 8, depth=10)
    for i, ((bp, bq), (ap, aq)) in enumerate(zip(bids, asks)):
        grown.update("bid", bp, bq)
        grown.update("ask", ap, aq)
        assert grown.checksum() == crc32_py(
            "".join(p.replace(".", "").lstrip("0") + q.replace(".", "").lstrip("0")
                    for p, q in sorted(asks[:i + 1]) + bids[:i + 1]).encode())
    assert grown.checksum() == 3310070434
    grown.update("bid", "45276.6", "1")
    assert grown.checksum() != 3310070434
    grown.update("bid", "45276.6", "0.15445238")
    assert grown.checksum() == 3310070434
