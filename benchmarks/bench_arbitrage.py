"""Per-call costs of the cross-exchange layer (pytest-benchmark).

    .venv/bin/python -m pytest benchmarks/bench_arbitrage.py --benchmark-only -q

The table-producing script with the 3 x 20 market and the latency percentiles is
``benchmarks/arbitrage_bench.py``; these are the single calls behind it.
"""
from __future__ import annotations

from typing import Any

import pytest

from alphapulse import BookSnapshot, BookUpdate, OrderBook
from alphapulse.arbitrage import ArbitrageDetector

T0 = 1_800_000_000_000_000_000


def _venue(exchange: str, pp: int, mid: float, gap: float = 0.0) -> tuple[OrderBook, BookSnapshot]:
    book = OrderBook("BTC-USD", pp, 8, exchange=exchange)
    bids = [(f"{mid - k:.{pp}f}", "0.5") for k in range(1, 26)]
    asks = [(f"{mid + gap + k:.{pp}f}", "0.5") for k in range(1, 26)]
    return book, BookSnapshot(exchange, "BTC-USD", "BTC-USD", book.snapshot(bids, asks), T0, T0)


def _detector() -> tuple[ArbitrageDetector, dict[str, OrderBook]]:
    det = ArbitrageDetector(clock=lambda: T0, max_age_s=3600.0)
    books = {}
    for exchange, pp, gap in (("kraken", 1, 0.0), ("coinbase", 2, 5000.0), ("binanceus", 2, 0.0)):
        books[exchange], snap = _venue(exchange, pp, 100_000.0, gap)
        det.on_event(snap)
    return det, books


def _cycle(book: OrderBook, changes: list[list[tuple[str, str, str]]]) -> list[BookUpdate]:
    """Deltas that bring the book back where it started, repeated (sequence numbers rise)."""
    out = []
    for _ in range(2000):
        for change in changes:
            out.append(BookUpdate("coinbase", "BTC-USD", "BTC-USD", book.apply(change), T0, T0))
    return out


def _run(benchmark: Any, det: ArbitrageDetector, events: list[BookUpdate]) -> None:
    it = iter(events)
    benchmark.pedantic(lambda: det.on_event(next(it)), rounds=len(events) // 2, iterations=1,
                       warmup_rounds=0)


def test_update_below_the_top(benchmark: Any) -> None:
    det, books = _detector()
    events = _cycle(books["coinbase"], [[("bid", "99990.00", "1")], [("bid", "99990.00", "0.5")]])
    _run(benchmark, det, events)


def test_update_changing_the_top_no_cross(benchmark: Any) -> None:
    det, books = _detector()
    events = _cycle(books["coinbase"], [[("bid", "99999.50", "1")], [("bid", "99999.50", "0")]])
    _run(benchmark, det, events)


@pytest.mark.parametrize("opens", [2])
def test_update_opening_then_closing(benchmark: Any, opens: int) -> None:
    det, books = _detector()
    # Coinbase's bid above Kraken's and Binance.US's asks: two opportunities open, then close.
    events = _cycle(books["coinbase"], [[("bid", "103000.00", "0.1")], [("bid", "103000.00", "0")]])
    _run(benchmark, det, events)
    assert det.opened >= opens


def test_update_moving_the_top_of_open_opportunities(benchmark: Any) -> None:
    det, books = _detector()
    # Coinbase's bid stays above Kraken's and Binance.US's asks while its size changes: every
    # update moves a top of book and re-checks both open opportunities (the demo's common case).
    events = _cycle(books["coinbase"], [[("bid", "103000.00", "0.1")], [("bid", "103000.00", "0.2")]])
    _run(benchmark, det, events)
    assert det.opened == 2 and det.closed == 0
