"""Issue 7, scenario 6: hostile exchange input, fuzzed with hypothesis.

For each exchange's sans-IO parser (the code the collectors run) over its clean capture:

* invalid frames (truncated copies of real frames, garbage, wrong JSON types) inserted anywhere
  are each rejected and counted exactly once, and the books and trades end exactly as in the
  clean run;
* arbitrarily mutated copies of real frames (byte flips, splices) never make ``feed`` raise.

And for the book: random batches mixing valid and hostile levels (bad decimals, too many digits,
negative sizes, junk sides) leave ``OrderBook`` equal to the reference model
(tests/book_reference.py) whether the batch was accepted or refused.
``ALPHAPULSE_STRESS_EXAMPLES`` raises the examples (long form: 2000).
"""
from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphapulse import OrderBook
from alphapulse.capture import read_frames
from alphapulse.errors import BookError
from alphapulse.events import Trade
from alphapulse.exchanges import get_parser

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from book_reference import ReferenceBook, ReferenceError_  # noqa: E402

EXAMPLES = int(os.environ.get("ALPHAPULSE_STRESS_EXAMPLES", "25"))
CAPTURES = {"coinbase": "coinbase-clean", "kraken": "kraken-clean", "binanceus": "binanceus-clean"}
FIXTURES = Path(os.environ.get("ALPHAPULSE_FIXTURES",
                               Path(__file__).resolve().parents[3] / "shared" / "fixtures"))
FRAMES_USED = 1500          # a prefix of each capture keeps each example fast
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))


@cache
def _frames(exchange: str) -> tuple[bytes, ...]:
    frames = read_frames(FIXTURES / "generated" / f"{CAPTURES[exchange]}.jsonl")
    return tuple(bytes(f) if not isinstance(f, str) else f.encode() for f in frames[:FRAMES_USED])


def _run(exchange: str, frames: list[bytes]):
    trades: list[tuple[str, str]] = []

    def sink(event) -> None:
        if isinstance(event, Trade):
            trades.append((event.symbol, event.trade_id))

    parser = get_parser(exchange)(sink=sink)
    for frame in frames:
        parser.feed(frame, 1)                     # must never raise
        take = getattr(parser, "take_resyncs", None)
        if take is not None:
            for symbol in take():
                parser.resume_offline(symbol)
    return parser, trades


@cache
def _clean(exchange: str):
    parser, trades = _run(exchange, list(_frames(exchange)))
    assert trades and parser.books
    return {k: b.copy() for k, b in parser.books.items()}, trades, dict(parser.rejected)


_JUNK = st.sampled_from([b"", b"NaN", b"[]", b"{}", b"null", b"\x00\xff\xfe", b"[1,2,3]",
                         b'"string"', b"{" * 2000, b'{"channel":', b"1e999999", b"\xef\xbb\xbf{"])


def _invalid(frames: tuple[bytes, ...]):
    truncated = st.tuples(st.integers(0, len(frames) - 1), st.floats(0.05, 0.9)).map(
        lambda t: frames[t[0]][: max(1, int(len(frames[t[0]]) * t[1]))].rstrip(b"}]"))
    return st.one_of(_JUNK, truncated)


@pytest.mark.parametrize("exchange", list(CAPTURES))
def test_invalid_frames_each_rejected_once_books_unchanged(exchange: str) -> None:
    frames = _frames(exchange)
    books, trades, rejected0 = _clean(exchange)

    @given(st.lists(st.tuples(st.integers(1, len(frames)), _invalid(frames)), min_size=1,
                    max_size=8))
    @FUZZ
    def check(inserts) -> None:
        stream = list(frames)
        for pos, junk in sorted(inserts, reverse=True):
            stream.insert(pos, junk)
        parser, got = _run(exchange, stream)
        assert sum(parser.rejected.values()) - sum(rejected0.values()) == len(inserts), \
            parser.rejected
        assert got == trades
        assert {k: b for k, b in parser.books.items()} == books

    check()


@pytest.mark.parametrize("exchange", list(CAPTURES))
def test_mutated_frames_never_raise(exchange: str) -> None:
    frames = _frames(exchange)

    @given(st.lists(st.tuples(st.integers(0, len(frames) - 1), st.integers(0, 10_000),
                              st.binary(max_size=6)), min_size=1, max_size=20))
    @FUZZ
    def check(mutations) -> None:
        stream = list(frames[:400])
        for idx, at, patch in mutations:
            frame = frames[idx]
            at %= len(frame)
            stream.insert(min(idx, len(stream)), frame[:at] + patch + frame[at + len(patch):])
        parser, _ = _run(exchange, stream)          # no exception escapes
        assert all(n > 0 for n in parser.rejected.values())
        for book in parser.books.values():
            assert book.bid_count >= 0 and book.ask_count >= 0

    check()


_PRICE = st.one_of(st.integers(1, 10**6).map(lambda n: f"{n / 100:.2f}"),
                   st.sampled_from(["0", "-1.00", "NaN", "1e5", "1.001", "", " 1", "9" * 30,
                                    "1.0000000000000", "+5", "0x10"]))
_SIZE = st.one_of(st.integers(0, 10**9).map(lambda n: f"{n / 10**8:.8f}"),
                  st.sampled_from(["-0.1", "inf", "1.123456789", "0.00000000", "", "1,0"]))
_SIDE = st.sampled_from(["bid", "ask", "buy", "sell", "offer", "BID", "x", ""])


@given(st.lists(st.lists(st.tuples(_SIDE, _PRICE, _SIZE), min_size=1, max_size=6),
                max_size=40))
@FUZZ
def test_book_equals_reference_under_hostile_levels(batches) -> None:
    book = OrderBook("BTC-USD", 2, 8)
    ref = ReferenceBook(2, 8)
    for batch in batches:
        try:
            ref.apply(batch)
            ok = True
        except (ReferenceError_, ValueError, KeyError):
            ok = False
        try:
            book.apply(batch)
            assert ok, f"book accepted what the reference refused: {batch}"
        except BookError:
            assert not ok, f"book refused what the reference accepted: {batch}"
        assert book.bids() == ref.levels("bid") and book.asks() == ref.levels("ask")
