"""OrderBook / Delta / diff: behaviour, formatting, errors, encodings (example-based).

The property-based comparison with the dict reference model is in test_book_properties.py,
the Kraken checksum fixtures in test_book_kraken_checksum.py.
"""
from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from alphapulse import BookError, Delta, OrderBook, SequenceError, diff
from alphapulse.book import ASK, BID, format_decimal, ladder, normalize_side, parse_decimal, \
    precision_of


def make_book(depth: int = 0) -> OrderBook:
    book = OrderBook("BTC-USD", 2, 8, exchange="coinbase", depth=depth)
    book.snapshot([("100.00", "1"), ("99.50", "2"), ("99.00", "3")],
                  [("100.50", "1.5"), ("101.00", "0.5"), ("102.25", "0.00000001")])
    return book


def state(book: OrderBook) -> tuple:
    return book.bids(), book.asks(), book.sequence


# --- construction and formatting ----------------------------------------------------------

def test_empty_book() -> None:
    book = OrderBook()
    assert (book.price_precision, book.size_precision, book.depth, book.sequence) == (8, 8, 0, 0)
    assert book.best_bid() is None and book.best_ask() is None
    assert book.spread() is None and book.mid() is None
    assert not book.crossed and len(book) == 0 and book.bids() == [] and book.checksum() == 0
    bp, bs, ap, az = book.top(10)
    assert bp.dtype == np.int64 and len(bp) == len(ap) == 0


@pytest.mark.parametrize("kwargs,field", [
    ({"price_precision": 19}, "price_precision"), ({"size_precision": -1}, "size_precision"),
    ({"price_precision": 2.0}, "price_precision"), ({"depth": -1}, "depth"),
])
def test_constructor_validates(kwargs: dict, field: str) -> None:
    with pytest.raises(BookError) as info:
        OrderBook("X", **kwargs)
    assert info.value.field == field


def test_levels_leave_at_exact_precision() -> None:
    book = make_book()
    assert book.best_bid() == ("100.00", "1.00000000")
    assert book.best_ask() == ("100.50", "1.50000000")
    assert book.bids(2) == [("100.00", "1.00000000"), ("99.50", "2.00000000")]
    assert book.asks() == [("100.50", "1.50000000"), ("101.00", "0.50000000"),
                           ("102.25", "0.00000001")]
    assert book.spread() == "0.50" and book.mid() == "100.250"
    assert book.bid_count == 3 and book.ask_count == 3 and len(book) == 6
    assert book.get("bid", "99.5") == "2.00000000" and book.get("ask", "99.5") is None


@pytest.mark.parametrize("text,scaled", [
    ("65061.91", 6506191), (b"65061.91", 6506191), ("65061.9100000", 6506191), ("7", 700),
    (".5", 50), ("5.", 500), ("+1.25", 125), ("1e2", 10000), ("1.5E-1", 15), ("-0", 0),
    (12, 1200), (0.1, 10), ("0000012.3", 1230), ("0e-5000", 0), ("0.000e99999", 0),
])
def test_parse_accepts(text: object, scaled: int) -> None:
    assert parse_decimal(text, 2) == scaled


@pytest.mark.parametrize("text,reason", [
    ("1.001", "precision"), ("-1", "negative"), ("nan", "finite"), ("inf", "finite"),
    ("-Infinity", "finite"), ("", "not a decimal"), ("1,5", "not a decimal"),
    (" 1", "not a decimal"), ("1 ", "not a decimal"), ("1e", "not a decimal"), (".", "not a decimal"),
    ("1.2.3", "not a decimal"), ("0x10", "not a decimal"), ("1e400", "range"),
    ("99999999999999999999", "range"), (None, "not a decimal"), (True, "not a decimal"),
    (float("nan"), "finite"), (-3, "negative"), ("١٢", "not a decimal"), ("1_000", "not a decimal"), ("1e-5000", "precision"),
])
def test_parse_rejects(text: object, reason: str) -> None:
    with pytest.raises(BookError, match=reason) as info:
        parse_decimal(text, 2)
    assert info.value.field == "value"


def test_format_decimal() -> None:
    assert format_decimal(6506190, 2) == "65061.90"
    assert format_decimal(5, 8) == "0.00000005"
    assert format_decimal(-5, 3) == "-0.005"
    assert format_decimal(42, 0) == "42"
    assert format_decimal(2**63 - 1, 18) == "9.223372036854775807"


# --- writes --------------------------------------------------------------------------------

@pytest.mark.parametrize("side", ["bid", "buy", 0, b"bid", BID])
def test_bid_side_spellings(side: object) -> None:
    book = OrderBook("X", 2, 8)
    book.update(side, "1", "1")
    assert book.bid_count == 1 and book.ask_count == 0


@pytest.mark.parametrize("side", ["ask", "sell", "offer", 1, b"offer", ASK])
def test_ask_side_spellings(side: object) -> None:
    book = OrderBook("X", 2, 8)
    book.update(side, "1", "1")
    assert book.ask_count == 1 and book.bid_count == 0


def test_update_returns_effective_delta_and_counts_sequence() -> None:
    book = make_book()
    assert book.sequence == 1
    d = book.update("bid", "100.10", "4")
    assert d.changes == [("bid", "100.10", "4.00000000")] and d.sequence == 2 == book.sequence
    assert (d.exchange, d.symbol, d.price_precision, d.size_precision) == \
        ("coinbase", "BTC-USD", 2, 8)
    assert not d.is_snapshot
    d = book.update("ask", "100.75", "0")           # deleting a missing level: no change
    assert len(d) == 0 and d.sequence == 3
    d = book.update("bid", "100.10", "4.0")         # same size: no change
    assert len(d) == 0
    d = book.update("sell", "100.50", "0")
    assert d.changes == [("ask", "100.50", "0.00000000")]
    assert book.best_ask() == ("101.00", "0.50000000")


def test_apply_batch_lists_changes_bids_first() -> None:
    book = make_book()
    d = book.apply([("ask", "100.25", "2"), ("bid", "99.00", "0"), ("bid", "99.75", "1"),
                    ("ask", "105", "0")])
    assert d.changes == [("bid", "99.00", "0.00000000"), ("bid", "99.75", "1.00000000"),
                         ("ask", "100.25", "2.00000000")]
    assert d.bids == [("99.00", "0.00000000"), ("99.75", "1.00000000")]
    assert book.sequence == 2


def test_snapshot_any_order_duplicates_and_zeros() -> None:
    book = OrderBook("X", 1, 2)
    d = book.snapshot([("1.0", "1"), ("3.0", "1"), ("2.0", "1"), ("3.0", "2"), ("4.0", "0")],
                      [("9", "1"), ("5", "1"), ("7", "1")])
    assert book.bids() == [("3.0", "2.00"), ("2.0", "1.00"), ("1.0", "1.00")]
    assert book.asks() == [("5.0", "1.00"), ("7.0", "1.00"), ("9.0", "1.00")]
    assert d.is_snapshot and d.sequence == 1 and len(d) == 6
    book.snapshot([], [])
    assert len(book) == 0 and book.sequence == 2


def test_depth_truncation_reports_dropped_levels() -> None:
    book = OrderBook("X", 1, 8, depth=3)
    book.snapshot([(str(p), "1") for p in range(10, 0, -1)], [(str(p), "1") for p in range(11, 30)])
    assert [p for p, _ in book.bids()] == ["10.0", "9.0", "8.0"]
    assert [p for p, _ in book.asks()] == ["11.0", "12.0", "13.0"]
    d = book.apply([("bid", "9.5", "2"), ("ask", "10.5", "1")])
    assert d.changes == [("bid", "9.5", "2.00000000"), ("bid", "8.0", "0.00000000"),
                         ("ask", "10.5", "1.00000000"), ("ask", "13.0", "0.00000000")]
    assert [p for p, _ in book.bids()] == ["10.0", "9.5", "9.0"]
    d = book.update("bid", "11", "1")
    assert d.changes == [("bid", "11.0", "1.00000000"), ("bid", "9.0", "0.00000000")]
    assert book.crossed   # 11.0 bid >= 10.5 ask: kept, but reported


def test_crossed() -> None:
    book = make_book()
    assert not book.crossed
    book.update("bid", "100.50", "1")
    assert book.crossed and book.spread() == "0.00"
    book.update("bid", "100.60", "1")
    assert book.spread() == "-0.10"


# --- bad input leaves the book unchanged -----------------------------------------------------

@pytest.mark.parametrize("change,field", [
    (("bid", "100.001", "1"), "price"), (("bid", "-1", "1"), "price"), (("bid", "0", "1"), "price"),
    (("bid", "1", "-1"), "size"), (("bid", "1", "nan"), "size"), (("bid", "inf", "1"), "price"),
    (("bid", "abc", "1"), "price"), (("bid", "1", "0.000000001"), "size"), (("mid", "1", "1"), "side"),
    (("bid", "1"), "changes"), ("bid", "changes"),
])
def test_bad_change_leaves_book_unchanged(change: object, field: str) -> None:
    book = make_book(depth=4)
    before = state(book)
    with pytest.raises(BookError) as info:
        book.apply([("bid", "99.90", "7"), ("ask", "100.40", "0"), change])
    assert info.value.field == field
    assert "changes[2]" in str(info.value)
    assert state(book) == before
    if isinstance(change, tuple) and len(change) == 3:
        with pytest.raises(BookError):
            book.update(*change)
        assert state(book) == before


def test_bad_snapshot_leaves_book_unchanged() -> None:
    book = make_book()
    before = state(book)
    with pytest.raises(BookError, match=r"asks\[1\]") as info:
        book.snapshot([("1", "1")], [("2", "1"), ("3", "x")])
    assert info.value.field == "size"
    assert state(book) == before


# --- reads -----------------------------------------------------------------------------------

def test_top_and_top_into() -> None:
    book = make_book()
    bp, bs, ap, az = book.top(2)
    assert bp.tolist() == [10000, 9950] and bs.tolist() == [100000000, 200000000]
    assert ap.tolist() == [10050, 10100] and az.tolist() == [150000000, 50000000]
    assert [len(a) for a in book.top(0)] == [3, 3, 3, 3]
    out = np.full((4, 5), -1, dtype=np.int64)
    assert book.top_into(out) == (3, 3)
    assert out[0].tolist() == [10000, 9950, 9900, 0, 0]
    assert out[2].tolist() == [10050, 10100, 10225, 0, 0]
    with pytest.raises(BookError):
        book.top_into(np.zeros((3, 5), dtype=np.int64))
    fp = book.top_float(1)
    assert fp[0].tolist() == [100.0] and fp[3].tolist() == [1.5]
    assert book.bbo() == (10000, 100000000, 10050, 150000000)


def test_copy_eq_pickle() -> None:
    book = make_book(depth=5)
    clone = book.copy()
    assert clone == book and clone is not book and clone.sequence == book.sequence
    assert clone.depth == 5 and clone.symbol == "BTC-USD" and clone.exchange == "coinbase"
    clone.update("bid", "1", "1")
    assert clone != book
    for other in (pickle.loads(pickle.dumps(book)), copy.deepcopy(book), copy.copy(book)):
        assert other == book and other.sequence == book.sequence and other.depth == 5
    assert book != OrderBook("BTC-USD", 3, 8)
    assert "BTC-USD" in repr(book) and "100.00" in ladder(book)
    assert book.nbytes > 0


# --- deltas ----------------------------------------------------------------------------------

def test_apply_delta_sequence_rules() -> None:
    book = make_book()
    mirror = OrderBook("BTC-USD", 2, 8)
    mirror.apply_delta(book.snapshot_delta())
    assert mirror == book and mirror.sequence == book.sequence == 1
    d1 = book.update("bid", "99.99", "1")
    d2 = book.apply([("ask", "100.50", "0"), ("bid", "100", "5")])
    with pytest.raises(SequenceError) as info:
        mirror.apply_delta(d2)
    assert info.value.field == "sequence" and mirror.sequence == 1
    mirror.apply_delta(d1)
    mirror.apply_delta(d2)
    assert mirror == book and mirror.sequence == 3
    with pytest.raises(BookError):
        OrderBook("BTC-USD", 3, 8).apply_delta(d1)


def test_apply_delta_top_reports_only_top_changes() -> None:
    book = make_book()
    mirror = OrderBook("BTC-USD", 2, 8)
    assert mirror.apply_delta_top(book.snapshot_delta()) == mirror.bbo() != (0, 0, 0, 0)
    top = mirror.bbo()
    below = book.update("bid", "1.00", "1")                  # far below the best bid
    assert mirror.apply_delta_top(below) is None and mirror == book
    bid_px, bid_sz, ask_px, ask_sz = top
    changes = [
        [("bid", format_decimal(bid_px, 2), "7")],           # size at the best bid
        [("bid", format_decimal(bid_px + 1, 2), "1")],       # a better bid
        [("ask", format_decimal(ask_px - 1, 2), "2")],       # a better ask
        [("ask", format_decimal(ask_px - 1, 2), "0")],       # ... taken out again
    ]
    for change in changes:
        before = mirror.bbo()
        assert mirror.apply_delta_top(book.apply(change)) == mirror.bbo() != before
    # The sequence rules are apply_delta's: a skipped delta raises and changes nothing.
    book.update("bid", "2.00", "1")
    skipped = book.update("bid", format_decimal(bid_px + 5, 2), "1")
    before = (mirror.bbo(), mirror.sequence)
    with pytest.raises(SequenceError):
        mirror.apply_delta_top(skipped)
    assert (mirror.bbo(), mirror.sequence) == before
    with pytest.raises(BookError):
        OrderBook("BTC-USD", 3, 8).apply_delta_top(below)
    # Emptying a side is a change; its price and size read 0, as in bbo().
    empty = OrderBook("BTC-USD", 2, 8)
    empty.apply_delta_top(book.snapshot_delta())
    book.apply([("ask", p, "0") for p, _ in book.asks()])
    assert empty.apply_delta_top(book.snapshot_delta())[2:] == (0, 0)


def test_diff_is_minimal_and_applies() -> None:
    before = make_book()
    after = before.copy()
    after.apply([("bid", "100.00", "1.5"), ("bid", "99.00", "0"), ("ask", "103", "1")])
    d = diff(before, after)
    assert d.changes == [("bid", "100.00", "1.50000000"), ("bid", "99.00", "0.00000000"),
                         ("ask", "103.00", "1.00000000")]
    assert d.sequence == after.sequence
    before.apply_delta(d)
    assert before == after
    assert len(diff(after, after)) == 0


def test_delta_constructor_and_encodings() -> None:
    d = Delta([("sell", "100.5", "1"), ("bid", "99", "2"), ("ask", "101", "0")], sequence=7,
              exchange="kraken", symbol="BTC/USD", price_precision=1, size_precision=8)
    assert d.changes == [("bid", "99.0", "2.00000000"), ("ask", "100.5", "1.00000000"),
                         ("ask", "101.0", "0.00000000")]
    raw = d.encode()
    assert isinstance(raw, bytes) and Delta.decode(raw) == d
    assert Delta.decode(memoryview(bytearray(raw))) == d
    js = d.to_json()
    assert js == {"exchange": "kraken", "symbol": "BTC/USD", "sequence": 7, "snapshot": False,
                  "price_precision": 1, "size_precision": 8,
                  "bids": [["99.0", "2.00000000"]],
                  "asks": [["100.5", "1.00000000"], ["101.0", "0.00000000"]]}
    assert Delta.from_json(js) == d
    assert pickle.loads(pickle.dumps(d)) == d
    sides, prices, sizes = d.to_arrays()
    assert sides.tolist() == [0, 1, 1] and prices.tolist() == [990, 1005, 1010]
    assert sizes.tolist() == [200000000, 100000000, 0]
    assert d != Delta()
    with pytest.raises(BookError):
        Delta([("bid", "1.05", "1")], price_precision=1)


@pytest.mark.parametrize("mutate", [
    lambda raw: raw[:-1], lambda raw: raw + b"\x00", lambda raw: b"\x00" + raw[1:],
    lambda raw: raw[:1] + b"\x02" + raw[2:], lambda raw: raw[:2] + b"\x13" + raw[3:],
    lambda raw: raw[:3], lambda raw: b"",
])
def test_decode_rejects_corrupt_data(mutate) -> None:
    raw = Delta([("bid", "99", "2"), ("ask", "101", "3")], price_precision=1).encode()
    with pytest.raises(BookError) as info:
        Delta.decode(mutate(raw))
    assert info.value.field == "delta"


def test_decode_rejects_huge_counts_without_allocating() -> None:
    header = bytes([0xD1, 0, 2, 8, 0, 0, 0]) + b"\xff\xff\xff\xff\x0f" + b"\x00"
    with pytest.raises(BookError, match="count"):
        Delta.decode(header)


def test_binary_delta_is_compact() -> None:
    book = OrderBook("BTC-USD", 2, 8, exchange="coinbase")
    book.snapshot([(f"{65000 - i * 0.01:.2f}", "0.5") for i in range(1000)],
                  [(f"{65000.01 + i * 0.01:.2f}", "4") for i in range(1000)])
    raw = book.snapshot_delta().encode()
    assert len(raw) < 2 * 2000 + 40      # one-tick steps and round sizes: 2 bytes a level
    assert Delta.decode(raw) == book.snapshot_delta()


# --- helpers ---------------------------------------------------------------------------------

def test_helpers() -> None:
    assert normalize_side("offer") == "ask" and normalize_side(0) == "bid"
    assert normalize_side(b"buy") == "bid"
    with pytest.raises(BookError):
        normalize_side("long")
    assert precision_of("0.01") == 2 and precision_of("1") == 0 and precision_of("0.00001000") == 5
    assert precision_of("1e-05") == 5 and precision_of("0.5") == 1 and precision_of("10") == 0


def test_large_book_inserts_far_from_top() -> None:
    """A 46,000-level side (Coinbase's BTC-USD snapshot size) with changes at the bottom,
    middle and top stays sorted and exact."""
    n = 46_000
    book = OrderBook("BTC-USD", 2, 8)
    book.snapshot([(format_decimal(6_000_000 - i, 2), "1") for i in range(n)], [])
    for price in ("0.01", "30000.005"[:-1], "59999.99", "60000.01", "45000.00"):
        book.update("bid", price, "2")
    book.update("bid", format_decimal(6_000_000 - n + 1, 2), "0")   # the worst level
    prices = [int(p.replace(".", "")) for p, _ in book.bids()]
    assert prices == sorted(prices, reverse=True) and len(prices) == len(set(prices))
    assert book.bid_count == n + 3  # four new levels, one deleted
    assert book.best_bid() == ("60000.01", "2.00000000")
    assert book.get("bid", "0.01") == "2.00000000"


def test_apply_scaled_matches_text_apply_and_validates() -> None:
    text, scaled = make_book(depth=4), make_book(depth=4)
    d1 = text.apply([("bid", "99.75", "1"), ("ask", "100.50", "0"), ("ask", "100.25", "2")])
    d2 = scaled.apply_scaled([0, 1, 1], [9975, 10050, 10025], [10**8, 0, 2 * 10**8])
    assert scaled == text and d1.changes == d2.changes and scaled.sequence == text.sequence
    before = state(scaled)
    for sides, prices, sizes, field in (([2], [1], [1], "side"), ([0], [0], [1], "price"),
                                        ([0], [1], [-1], "size"), ([0, 1], [1], [1], "changes")):
        with pytest.raises(BookError) as info:
            scaled.apply_scaled(np.array(sides), np.array(prices), np.array(sizes))
        assert info.value.field == field
        assert state(scaled) == before
