"""Property-based tests: OrderBook against the plain dict reference model, step by step.

Each random program of snapshots, single updates, batches and bad batches runs on the
compiled book and on ``ReferenceBook``; after every step both must show the same levels,
tops, crossed flag, checksum and sequence.  Every delta the book returns is also applied to
a mirror book (directly and after a binary and a JSON round trip), which must stay equal, and
through ``apply_delta_top``, which must report exactly the steps that moved the top of book.
"""
from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from book_reference import ReferenceBook, ReferenceError_
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphapulse import BookError, Delta, OrderBook, diff
from alphapulse.book import format_decimal

SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
PROGRAM_SETTINGS = settings(SETTINGS, max_examples=60)
PRECISIONS = st.sampled_from([(0, 0), (1, 8), (2, 8), (8, 8), (2, 3), (5, 8)])


def spell(scaled: int, precision: int, style: int) -> str | bytes:
    """Decimal text for scaled/10**precision in one of several valid spellings."""
    text = format_decimal(scaled, precision)
    if style == 1:
        text = text + ("0" if "." in text else ".0") + "00"
    elif style == 2:
        text = "00" + text
    elif style == 3:
        text = str(Decimal(scaled).scaleb(-precision))   # may be "1E-8"
    elif style == 4:
        return text.encode()
    return text


@st.composite
def level_text(draw, precision: int, lo: int, hi: int) -> str | bytes:
    return spell(draw(st.integers(lo, hi)), precision, draw(st.integers(0, 4)))


BAD_PRICES = ["-1", "abc", "nan", "inf", "", "1.2.3", "0", "1e999", " 1"]
BAD_SIZES = ["-1", "x", "nan", "-inf", "1e999", "1,0"]


@st.composite
def changes(draw, pp: int, sp: int, max_size: int = 12) -> list[tuple]:
    n = draw(st.integers(0, max_size))
    side = st.sampled_from(["bid", "ask", "buy", "sell", "offer", 0, 1])
    out = []
    for _ in range(n):
        price = draw(level_text(pp, 1, 40))
        size = draw(st.one_of(st.just("0"), level_text(sp, 0, 5)))
        out.append((draw(side), price, size))
    return out


@st.composite
def programs(draw) -> tuple[int, int, int, list]:
    pp, sp = draw(PRECISIONS)
    depth = draw(st.sampled_from([0, 0, 1, 3, 5]))
    steps = []
    for _ in range(draw(st.integers(1, 15))):
        kind = draw(st.sampled_from(["snapshot", "update", "apply", "apply", "bad"]))
        if kind == "snapshot":
            bids = [(draw(level_text(pp, 1, 40)), draw(level_text(sp, 0, 5)))
                    for _ in range(draw(st.integers(0, 15)))]
            asks = [(draw(level_text(pp, 1, 40)), draw(level_text(sp, 0, 5)))
                    for _ in range(draw(st.integers(0, 15)))]
            steps.append(("snapshot", bids, asks))
        elif kind == "update":
            steps.append(("update", draw(changes(pp, sp, 1).filter(len))[0]))
        elif kind == "apply":
            steps.append(("apply", draw(changes(pp, sp))))
        else:
            good = draw(changes(pp, sp))
            bad = draw(st.one_of(
                st.tuples(st.just("bid"), st.sampled_from(BAD_PRICES), st.just("1")),
                st.tuples(st.just("ask"), st.just("1"), st.sampled_from(BAD_SIZES)),
                st.tuples(st.sampled_from(["mid", "", 2]), st.just("1"), st.just("1")),
                st.tuples(st.just("bid"), st.just("1." + "0" * pp + "1"), st.just("1")),
            ))
            steps.append(("bad", good[: len(good) // 2] + [bad] + good[len(good) // 2:]))
    return pp, sp, depth, steps


def assert_same(book: OrderBook, ref: ReferenceBook) -> None:
    assert book.bids() == ref.bids()
    assert book.asks() == ref.asks()
    assert book.best_bid() == ref.best_bid() and book.best_ask() == ref.best_ask()
    assert book.crossed == ref.crossed
    assert book.checksum() == ref.checksum()
    assert book.sequence == ref.sequence
    assert len(book) == len(ref.sides["bid"]) + len(ref.sides["ask"])
    bp, bs, ap, az = book.top(3)
    scale_p, scale_s = 10 ** book.price_precision, 10 ** book.size_precision
    assert bp.tolist() == [int(Decimal(p) * scale_p) for p, _ in ref.bids(3)]
    assert az.tolist() == [int(Decimal(s) * scale_s) for _, s in ref.asks(3)]


@PROGRAM_SETTINGS
@given(programs())
def test_book_matches_reference_after_every_step(program) -> None:
    pp, sp, depth, steps = program
    book = OrderBook("T", pp, sp, exchange="x", depth=depth)
    ref = ReferenceBook(pp, sp, depth)
    mirror = OrderBook("T", pp, sp)           # no depth: it must follow the deltas alone
    wire_mirror = OrderBook("T", pp, sp)
    top_mirror = OrderBook("T", pp, sp)
    for step in steps:
        kind = step[0]
        if kind == "bad":
            before = (book.bids(), book.asks(), book.sequence)
            with pytest.raises(BookError) as info:
                book.apply(step[1])
            with pytest.raises(ReferenceError_) as ref_info:
                ref.apply(step[1])
            assert info.value.field in ("price", "size", "side")
            assert (book.bids(), book.asks(), book.sequence) == before
            assert_same(book, ref)
            continue
        if kind == "snapshot":
            delta = book.snapshot(step[1], step[2])
            ref.snapshot(step[1], step[2])
            assert delta.is_snapshot
        elif kind == "update":
            delta = book.update(*step[1])
            ref.update(*step[1])
        else:
            delta = book.apply(step[1])
            ref.apply(step[1])
        assert delta.sequence == book.sequence
        assert_same(book, ref)
        top_before = mirror.bbo()
        mirror.apply_delta(delta)
        assert mirror == book and mirror.sequence == book.sequence
        top = top_mirror.apply_delta_top(delta)
        assert top == (None if book.bbo() == top_before else book.bbo())
        assert top_mirror == book and top_mirror.sequence == book.sequence
        wire_mirror.apply_delta(Delta.decode(delta.encode()))
        wire_mirror_json = Delta.from_json(delta.to_json())
        assert wire_mirror_json == delta
        assert wire_mirror == book


@st.composite
def book_pairs(draw) -> tuple[OrderBook, OrderBook]:
    pp, sp = draw(PRECISIONS)
    books = []
    for _ in range(2):
        book = OrderBook("T", pp, sp)
        levels = draw(st.lists(st.tuples(st.sampled_from([0, 1]), st.integers(1, 30),
                                         st.integers(1, 9)), max_size=30))
        book.snapshot([(format_decimal(p, pp), format_decimal(s, sp)) for side, p, s in levels
                       if side == 0],
                      [(format_decimal(p, pp), format_decimal(s, sp)) for side, p, s in levels
                       if side == 1])
        books.append(book)
    return books[0], books[1]


@SETTINGS
@given(book_pairs())
def test_diff_applies_and_is_minimal(pair) -> None:
    before, after = pair
    d = diff(before, after)
    assert d.sequence == after.sequence
    patched = before.copy()
    patched.apply(d.changes)
    assert patched == after
    for name in ("bids", "asks"):
        old, new = dict(getattr(before, name)()), dict(getattr(after, name)())
        differing = {p for p in old.keys() | new.keys() if old.get(p) != new.get(p)}
        assert len(getattr(d, name)) == len(differing)
    # Through apply_delta when the sequence continues.
    after.sequence = before.sequence + 1
    patched = before.copy()
    patched.apply_delta(diff(before, after))
    assert patched == after


INT64 = st.integers(1, 2**63 - 1)


@st.composite
def deltas(draw) -> Delta:
    pp, sp = draw(st.integers(0, 18)), draw(st.integers(0, 18))
    n = draw(st.integers(0, 20))
    price = st.one_of(INT64, st.integers(1, 10**6), st.integers(1, 100).map(lambda x: x * 10**7))
    size = st.one_of(st.integers(0, 2**63 - 1), st.integers(0, 100).map(lambda x: x * 10**8),
                     st.just(0))
    chg = [(draw(st.sampled_from(["bid", "ask"])), format_decimal(draw(price), pp),
            format_decimal(draw(size), sp)) for _ in range(n)]
    return Delta(chg, sequence=draw(st.integers(-2**63, 2**63 - 1)),
                 is_snapshot=draw(st.booleans()), exchange=draw(st.text(max_size=12)),
                 symbol=draw(st.text(max_size=12)), price_precision=pp, size_precision=sp)


@SETTINGS
@given(deltas())
def test_encode_decode_round_trip(delta: Delta) -> None:
    raw = delta.encode()
    back = Delta.decode(raw)
    assert back == delta
    assert back.changes == delta.changes and back.encode() == raw
    assert Delta.from_json(delta.to_json()) == delta


@SETTINGS
@given(deltas(), st.data())
def test_decode_never_crashes_on_corruption(delta: Delta, data) -> None:
    raw = bytearray(delta.encode())
    if not raw:
        return
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        Delta.decode(bytes(raw[:cut]))
    except BookError as exc:
        assert exc.field == "delta"


@SETTINGS
@given(st.integers(1, 8), st.lists(st.tuples(st.integers(1, 200), st.integers(1, 5)),
                                   max_size=60), st.lists(st.integers(1, 200), max_size=20))
def test_depth_limit_keeps_exactly_the_best_n(depth, levels, later) -> None:
    book = OrderBook("T", 0, 0, depth=depth)
    book.snapshot([(str(p), str(s)) for p, s in levels], [])
    prices = sorted({p for p, _ in levels}, reverse=True)
    assert [int(p) for p, _ in book.bids()] == prices[:depth]
    for p in later:
        book.update("bid", str(p), "1")
        prices = sorted(set(prices[:depth]) | {p}, reverse=True)
        assert [int(x) for x, _ in book.bids()] == prices[:depth]
        assert book.bid_count == min(depth, len(prices))
    bp = book.top(0)[0]
    assert isinstance(bp, np.ndarray) and len(bp) == book.bid_count


@settings(SETTINGS, max_examples=10)
@given(st.sampled_from([0, 150, 700]), st.randoms(use_true_random=False))
def test_large_books_across_chunk_boundaries(depth, rnd) -> None:
    """Books of thousands of levels (sides are stored in chunks of 128): random wide batches
    split, merge and truncate chunks; the book must still equal the reference every step.
    (Hypothesis picks the seed; plain random makes the bulk data cheaply.)"""
    book = OrderBook("T", 0, 0, depth=depth)
    ref = ReferenceBook(0, 0, depth)
    mirror = OrderBook("T", 0, 0)
    levels = [(rnd.randint(1, 3000), rnd.randint(1, 9)) for _ in range(rnd.randint(500, 1500))]
    bids = [(str(p), str(s)) for p, s in levels if p <= 1500]
    asks = [(str(p), str(s)) for p, s in levels if p > 1500]
    mirror.apply_delta(book.snapshot(bids, asks))
    ref.snapshot(bids, asks)
    for _ in range(rnd.randint(1, 6)):
        changes = [(rnd.choice(["bid", "ask"]), str(rnd.randint(1, 3000)), str(rnd.randint(0, 3)))
                   for _ in range(rnd.randint(0, 400))]
        mirror.apply_delta(book.apply(changes))
        ref.apply(changes)
        assert book.bids() == ref.bids() and book.asks() == ref.asks()
        assert book.checksum() == ref.checksum() and mirror == book
    clone = book.copy()
    assert clone == book and diff(clone, book).changes == []
