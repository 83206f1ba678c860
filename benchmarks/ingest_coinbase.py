"""Coinbase ingest: messages/s through parse + normalise + book, beside cryptofeed 2.4.1.

    .venv/bin/python benchmarks/ingest_coinbase.py [--n 50000] [--repeat 5] [--cpu 1]

Pinned to one CPU.  AlphaPulse: ``CoinbaseParser.feed`` (the collector's own code: the
compiled scanner of ``exchanges/_scan.pyx`` for canonical l2_data updates and snapshots, orjson
for every other frame, ``sequence_num`` check, normalised Trade / BookUpdate events to a no-op
sink, the Cython book).  cryptofeed 2.4.1: ``Coinbase.message_handler`` (its Advanced Trade handler) fed the same
frames offline with no-op callbacks, awaited in a loop as its connection layer does.  Medians of
``--repeat`` runs, each on a fresh parser/feed.

Rows: the generated fixture (l2_data + market_trades), the real Advanced Trade capture (two
full-book snapshots of 46,000 and 23,334 levels, then updates), and generated l2_data update
streams with 1 and 10 levels per message (the shapes the issue quotes).  Note: cryptofeed
2.4.1 builds a snapshot's ask side from ``side == 'ask'`` while Advanced Trade says
``"offer"``, so its books have no asks after a snapshot (protocols.md §1); it still does the
same parsing work, so the throughput comparison stands, but its books are wrong.
"""
from __future__ import annotations

import asyncio
import os
import random
import sys
from collections.abc import Callable
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
FIXTURES = Path(os.environ.get("ALPHAPULSE_FIXTURES", HERE.parents[1] / "shared" / "fixtures"))

from _ingest_common import (  # noqa: E402
    bench_orjson, feed_handler, interleaved_rates, loop_runner, noop, offline_symbols, parse_args,
    pin, print_header, time_feed)

from alphapulse.capture import read_frames  # noqa: E402
from alphapulse.exchanges.coinbase import CoinbaseParser  # noqa: E402


MIN_TIME = 0.3          # seconds of passes per timing


def generate(n: int, levels: int, seed: int = 7) -> list[bytes]:
    """A subscriptions ack, one 1,000-level snapshot, then ``n`` l2_data updates of
    ``levels`` levels each near the top (prices 2 decimals, sizes 8), as Advanced Trade sends."""
    rng = random.Random(seed)
    ts = "2026-11-27T10:00:00.000000000Z"
    mid = 9_651_250
    frames = [orjson.dumps({"channel": "subscriptions", "timestamp": ts, "sequence_num": 0,
                            "events": [{"subscriptions": {"level2": ["BTC-USD"]}}]})]
    snap = [{"side": side, "event_time": ts, "price_level": f"{(mid + sign * (i + 1)) / 100:.2f}",
             "new_quantity": f"{rng.randint(1, 10**8) / 1e8:.8f}"}
            for side, sign in (("bid", -1), ("offer", 1)) for i in range(500)]
    frames.append(orjson.dumps({"channel": "l2_data", "timestamp": ts, "sequence_num": 1,
                                "events": [{"type": "snapshot", "product_id": "BTC-USD",
                                            "updates": snap}]}))
    for k in range(n):
        ups = []
        for _ in range(levels):
            side = rng.choice(("bid", "offer"))
            off = rng.randint(1, 60)
            price = (mid - off) if side == "bid" else (mid + off)
            qty = "0" if rng.random() < 0.2 else f"{rng.randint(1, 10**8) / 1e8:.8f}"
            ups.append({"side": side, "event_time": ts, "price_level": f"{price / 100:.2f}",
                        "new_quantity": qty})
        frames.append(orjson.dumps({"channel": "l2_data", "timestamp": ts, "sequence_num": k + 2,
                                    "events": [{"type": "update", "product_id": "BTC-USD",
                                                "updates": ups}]}))
    return frames


def runner_alphapulse(frames: list[bytes], symbols: list[str]) -> Callable[[], float]:
    """One timed pass over ``frames`` with a fresh parser (warmed once)."""
    def run() -> float:
        parser = CoinbaseParser(symbols, sink=lambda e: None)
        dt = time_feed(parser.feed, frames)
        assert parser.gaps == 0 and not parser.rejected, parser.stats()
        return dt
    run()
    return run


def _cryptofeed(symbols: list[str]):  # noqa: ANN202
    from cryptofeed.defines import L2_BOOK, TRADES
    from cryptofeed.exchanges import Coinbase

    # Offline: feed cryptofeed's own symbol parser a minimal product list (no network).
    products = [{"base_currency_id": s.split("-")[0], "quote_currency_id": s.split("-")[1],
                 "quote_increment": "0.01", "product_id": s} for s in symbols]
    offline_symbols(Coinbase, {"products": products})
    return Coinbase(symbols=symbols, channels=[L2_BOOK, TRADES],
                    callbacks={L2_BOOK: noop, TRADES: noop})


def runner_cryptofeed(frames: list[bytes], symbols: list[str]) -> Callable[[], float]:
    """One timed pass over ``frames`` with a fresh cryptofeed feed (warmed once)."""
    texts = [f.decode() for f in frames]              # what its websocket layer hands it
    loop = asyncio.new_event_loop()        # kept for the whole process (a benchmark script)

    async def drive() -> float:
        return await feed_handler(_cryptofeed(symbols).message_handler, texts)

    return loop_runner(drive, loop)


def main() -> None:
    args = parse_args(__doc__, "generated stream: update messages")
    where = pin(args.cpu)
    import logging
    logging.disable(logging.WARNING)     # cryptofeed warns on every ticker/heartbeat frame
    real = [f for f in read_frames(FIXTURES / "coinbase" /
                                   "advanced-trade-btcusd-ethusd-2026-08-09.jsonl")]
    rows = [
        ("fixture generated/coinbase-clean (l2_data + market_trades)",
         read_frames(FIXTURES / "generated" / "coinbase-clean.jsonl"), ["BTC-USD"]),
        ("fixture coinbase/advanced-trade 2026-08-09 (2 full snapshots + 1,028 frames)",
         real, ["BTC-USD", "ETH-USD"]),
        ("generated l2_data updates, 1 level/msg", generate(args.n, 1), ["BTC-USD"]),
        ("generated l2_data updates, 10 levels/msg", generate(args.n, 10), ["BTC-USD"]),
    ]
    print_header(f"Coinbase Advanced Trade ingest, one core ({where}), median of {args.repeat} "
                 "alternating rounds (ratio = median of per-round ratios)",
                 ["stream", "msgs", "AlphaPulse msgs/s", "cryptofeed 2.4.1 msgs/s", "ratio"])
    for label, frames, symbols in rows:
        mine, cf, ratio = interleaved_rates(runner_alphapulse(frames, symbols),
                                            runner_cryptofeed(frames, symbols), len(frames),
                                            args.repeat, MIN_TIME)
        print(f"| {label} | {len(frames):,} | {mine:,.0f} | {cf:,.0f} | {ratio:.2f}x |")
    for levels in (1, 10):
        oj = bench_orjson(rows[2 if levels == 1 else 3][1], args.repeat, MIN_TIME)
        print(f"| orjson.loads alone, {levels} level(s)/msg (ceiling reference) | | {oj:,.0f} "
              f"| | |")


if __name__ == "__main__":
    main()
