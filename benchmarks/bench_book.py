"""Per-call costs of the order book (pytest-benchmark), with the anchors beside them.

    .venv/bin/python -m pytest benchmarks/bench_book.py --benchmark-group-by=group -q

Writes cycle through the generated realistic stream (1000 levels a side, updates near the
top, ~15% deletions), so each call does a different, realistic change.
"""
from __future__ import annotations

import itertools
import os
import sys
from decimal import Decimal

import numpy as np
import order_book
import pytest
from sortedcontainers import SortedDict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import book_streams  # noqa: E402

from alphapulse import Delta, OrderBook, diff  # noqa: E402

STREAM = book_streams.generated(30_000)


@pytest.fixture
def book() -> OrderBook:
    b = OrderBook("BTC-USD", 2, 8, exchange="coinbase")
    b.snapshot(STREAM.bids, STREAM.asks)
    return b


@pytest.fixture
def ob() -> order_book.OrderBook:
    o = order_book.OrderBook()
    for p, s in STREAM.bids:
        o.bids[float(p)] = float(s)
    for p, s in STREAM.asks:
        o.asks[float(p)] = float(s)
    return o


# --- writes --------------------------------------------------------------------------------

@pytest.mark.benchmark(group="write: one level")
def test_ours_update_text(benchmark, book: OrderBook) -> None:
    changes = itertools.cycle(STREAM.changes)
    update = book.update

    def step() -> None:
        side, price, size = next(changes)
        update(side, price, size)
    benchmark(step)


@pytest.mark.benchmark(group="write: one level")
def test_order_book_float_setitem(benchmark, ob: order_book.OrderBook) -> None:
    pre = itertools.cycle([(s == "bid", float(p), float(z)) for s, p, z in STREAM.changes])
    bids, asks = ob.bids, ob.asks

    def step() -> None:
        is_bid, price, size = next(pre)
        side = bids if is_bid else asks
        if size:
            side[price] = size
        elif price in side:
            del side[price]
    benchmark(step)


@pytest.mark.benchmark(group="write: one level")
def test_sorteddict_float_setitem(benchmark) -> None:
    bids = SortedDict({-float(p): float(s) for p, s in STREAM.bids})
    asks = SortedDict({float(p): float(s) for p, s in STREAM.asks})
    pre = itertools.cycle([(s == "bid", float(p), float(z)) for s, p, z in STREAM.changes])

    def step() -> None:
        is_bid, price, size = next(pre)
        side, key = (bids, -price) if is_bid else (asks, price)
        if size:
            side[key] = size
        else:
            side.pop(key, None)
    benchmark(step)


@pytest.mark.benchmark(group="write: one exchange message (1-20 levels)")
def test_ours_apply_message(benchmark, book: OrderBook) -> None:
    messages = itertools.cycle(STREAM.messages)
    apply = book.apply
    benchmark(lambda: apply(next(messages)))


@pytest.mark.benchmark(group="write: 1000 levels in one call")
def test_ours_apply_1000(benchmark, book: OrderBook) -> None:
    chunks = itertools.cycle([STREAM.changes[i:i + 1000]
                              for i in range(0, len(STREAM.changes) - 1000, 1000)])
    apply = book.apply
    benchmark(lambda: apply(next(chunks)))


@pytest.mark.benchmark(group="write: 1000 levels in one call")
def test_ours_apply_scaled_1000(benchmark, book: OrderBook) -> None:
    def arrays(chunk):
        return (np.array([s == "ask" for s, _, _ in chunk], dtype=np.int64),
                np.array([int(Decimal(p) * 100) for _, p, _ in chunk], dtype=np.int64),
                np.array([int(Decimal(z) * 10**8) for _, _, z in chunk], dtype=np.int64))
    chunks = itertools.cycle([arrays(STREAM.changes[i:i + 1000])
                              for i in range(0, len(STREAM.changes) - 1000, 1000)])
    benchmark(lambda: book.apply_scaled(*next(chunks)))


@pytest.mark.benchmark(group="write: snapshot")
def test_ours_snapshot_coinbase_46000(benchmark) -> None:
    cb = book_streams.coinbase()
    b = OrderBook("BTC-USD", 2, 8)
    benchmark(b.snapshot, cb.bids, cb.asks)


# --- reads ---------------------------------------------------------------------------------

@pytest.mark.benchmark(group="read: top of book")
def test_ours_best_bid_str(benchmark, book: OrderBook) -> None:
    benchmark(book.best_bid)


@pytest.mark.benchmark(group="read: top of book")
def test_ours_bbo_ints(benchmark, book: OrderBook) -> None:
    benchmark(book.bbo)


@pytest.mark.benchmark(group="read: top of book")
def test_order_book_index0(benchmark, ob: order_book.OrderBook) -> None:
    benchmark(ob.bids.index, 0)


@pytest.mark.benchmark(group="read: top 10 both sides")
def test_ours_top10_numpy(benchmark, book: OrderBook) -> None:
    benchmark(book.top, 10)


@pytest.mark.benchmark(group="read: top 10 both sides")
def test_ours_top_into(benchmark, book: OrderBook) -> None:
    out = np.zeros((4, 10), dtype=np.int64)
    benchmark(book.top_into, out)


@pytest.mark.benchmark(group="read: top 10 both sides")
def test_ours_top10_strings(benchmark, book: OrderBook) -> None:
    benchmark(lambda: (book.bids(10), book.asks(10)))


@pytest.mark.benchmark(group="read: top 10 both sides")
def test_order_book_top10(benchmark, ob: order_book.OrderBook) -> None:
    bi, ai = ob.bids.index, ob.asks.index
    benchmark(lambda: ([bi(i) for i in range(10)], [ai(i) for i in range(10)]))


@pytest.mark.benchmark(group="read: top 10 right after an update")
def test_ours_update_then_top10(benchmark, book: OrderBook) -> None:
    changes = itertools.cycle(STREAM.changes)

    def step() -> None:
        book.update(*next(changes))
        book.top(10)
    benchmark(step)


@pytest.mark.benchmark(group="read: top 10 right after an update")
def test_order_book_update_then_top10(benchmark, ob: order_book.OrderBook) -> None:
    pre = itertools.cycle([(s == "bid", float(p), float(z)) for s, p, z in STREAM.changes])
    bids, asks = ob.bids, ob.asks

    def step() -> None:
        is_bid, price, size = next(pre)
        side = bids if is_bid else asks
        if size:
            side[price] = size
        elif price in side:
            del side[price]
        [bids.index(i) for i in range(10)]
        [asks.index(i) for i in range(10)]
    benchmark(step)


# --- integrity and encodings ---------------------------------------------------------------

@pytest.mark.benchmark(group="checksum and codecs")
def test_ours_checksum_unchanged(benchmark, book: OrderBook) -> None:
    """The memo's best case: the top 10 did not move since the last checksum."""
    benchmark(book.checksum)


@pytest.mark.benchmark(group="checksum and codecs")
def test_ours_apply_message_then_checksum(benchmark, book: OrderBook) -> None:
    """What a Kraken collector does per message: apply it, then the (memoised) checksum;
    compare with ``test_ours_apply_message`` for the checksum's share."""
    messages = itertools.cycle(STREAM.messages)
    apply, checksum = book.apply, book.checksum

    def step() -> None:
        apply(next(messages))
        checksum()
    benchmark(step)


@pytest.mark.benchmark(group="checksum and codecs")
def test_ours_checksum_from_scratch(benchmark, book: OrderBook) -> None:
    """The same rule without the memo (any depth other than 10 is computed from scratch)."""
    benchmark(book.checksum, 9)


@pytest.mark.benchmark(group="checksum and codecs")
def test_ours_encode_message_delta(benchmark, book: OrderBook) -> None:
    delta = book.apply(STREAM.messages[0])
    benchmark(delta.encode)


@pytest.mark.benchmark(group="checksum and codecs")
def test_ours_decode_message_delta(benchmark, book: OrderBook) -> None:
    raw = book.apply(STREAM.messages[0]).encode()
    benchmark(Delta.decode, raw)


@pytest.mark.benchmark(group="checksum and codecs")
def test_ours_diff_after_message(benchmark, book: OrderBook) -> None:
    after = book.copy()
    after.apply(STREAM.messages[0])
    benchmark(diff, book, after)
