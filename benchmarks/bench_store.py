"""Per-trade cost of the trade store's ingest path (pytest-benchmark, one process).

    .venv/bin/python -m pytest benchmarks/bench_store.py --benchmark-only -q

Each round feeds TRADES synthetic trades (three exchanges, BTC-like prices with 2 or 1
decimals walking in small steps so runs of equal prices occur, 8-decimal sizes, ~10 trades/s
per exchange) through ``TradeStore.on_event`` into a fresh store: the hub's call, packing,
the rate marks, the finest bar and the folds into the wider bars at each minute.  Divide the
round time by TRADES for the cost per trade.  ``wrapped`` uses a store small enough that every
trade evicts the oldest (the steady state of a long-running server).
"""
from __future__ import annotations

import random

import pytest

from alphapulse.events import Trade
from alphapulse.server.store import TradeStore

TRADES = 10_000
EXCHANGES = (("coinbase", "BTC-USD", 2), ("kraken", "BTC/USD", 1), ("binanceus", "BTCUSD", 2))


def _trades() -> list[Trade]:
    rng = random.Random(7)
    ts = 1_795_773_600_000_000_000
    ticks = [9_905_000, 965_030, 9_651_294]          # price x 10**decimals, per exchange
    out = []
    for i in range(TRADES):
        k = rng.randrange(3)
        exchange, native, decimals = EXCHANGES[k]
        ticks[k] += rng.choice((-3, -1, 0, 0, 0, 1, 3))
        whole, frac = divmod(ticks[k], 10**decimals)
        ts += rng.randrange(1, 66_000_000)             # ~30 trades/s in total
        out.append(Trade(exchange, "BTC-USD", native, f"{whole}.{frac:0{decimals}d}",
                         f"0.{rng.randrange(1, 10**8):08d}", rng.choice(("buy", "sell")),
                         str(i), ts, ts + 150_000_000))
    return out


@pytest.fixture(scope="module")
def trades() -> list[Trade]:
    return _trades()


@pytest.mark.parametrize("capacity", [100_000, 1000], ids=["growing", "wrapped"])
def test_on_event(benchmark, trades, capacity):
    def run(store: TradeStore) -> None:
        on_event = store.on_event
        for trade in trades:
            on_event(trade)

    benchmark.extra_info["trades_per_round"] = TRADES
    benchmark.pedantic(run, setup=lambda: ((TradeStore(capacity),), {}), rounds=30)
