"""Binance.US ingest: depth messages/s through parse + normalise + book, beside cryptofeed 2.4.1.

    .venv/bin/python benchmarks/ingest_binanceus.py [--n 50000] [--repeat 5] [--cpu 1]

Pinned to one CPU.  AlphaPulse: ``BinanceUSParser.feed`` (the collector's own code: the
compiled ``depthUpdate`` scanner of ``exchanges/_scan.pyx``, orjson for any other frame, the
``U``/``u`` chain, a BookUpdate event to a no-op sink, the Cython book), fed the REST
snapshot body and then the combined-stream depth frames.  cryptofeed 2.4.1:
``BinanceUS.message_handler`` fed the same frames offline with a no-op callback; its REST
snapshot call is answered from the same body in memory (no network), so both start from the
same book and apply the same diffs.  Only ``depthUpdate`` frames are counted and compared
(cryptofeed 2.4.1 handles ``@aggTrade`` but not ``@trade``).  Medians of ``--repeat`` runs.
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
    bench_orjson, feed_handler, interleaved_rates, loop_runner, offline_symbols, parse_args, pin,
    print_header, time_feed)

from alphapulse.capture import read_frames  # noqa: E402
from alphapulse.exchanges.binanceus import BinanceUSParser  # noqa: E402
from alphapulse.symbols import from_native  # noqa: E402


MIN_TIME = 0.3          # seconds of passes per timing


def generate(n: int, levels: int, seed: int = 11) -> tuple[dict[str, bytes], list[bytes]]:
    """A 1,000-level REST snapshot and ``n`` chained depth events of ``levels`` levels."""
    rng = random.Random(seed)
    mid, uid = 9_651_250, 4_200_000_000
    snap = {"lastUpdateId": uid,
            "bids": [[f"{(mid - i - 1) / 100:.2f}", f"{rng.randint(1, 10**8) / 1e8:.8f}"]
                     for i in range(500)],
            "asks": [[f"{(mid + i + 1) / 100:.2f}", f"{rng.randint(1, 10**8) / 1e8:.8f}"]
                     for i in range(500)]}
    frames = []
    for k in range(n):
        b, a = [], []
        for _ in range(levels):
            off = rng.randint(1, 60)
            qty = "0.00000000" if rng.random() < 0.2 else f"{rng.randint(1, 10**8) / 1e8:.8f}"
            if rng.random() < 0.5:
                b.append([f"{(mid - off) / 100:.2f}", qty])
            else:
                a.append([f"{(mid + off) / 100:.2f}", qty])
        data = {"e": "depthUpdate", "E": 1764230400000 + k, "s": "BTCUSD", "U": uid + 1,
                "u": uid + levels, "b": b, "a": a}
        uid += levels
        frames.append(orjson.dumps({"stream": "btcusd@depth@100ms", "data": data}))
    return {"BTCUSD": orjson.dumps(snap)}, frames


def from_fixture(paths: list[Path]) -> tuple[dict[str, bytes], list[bytes]]:
    """Combined depth frames (bare ones wrapped, as a combined stream sends them) and each
    symbol's REST body; events older than the snapshot are dropped (both libraries would)."""
    snaps: dict[str, bytes] = {}
    frames: list[bytes] = []
    for path in paths:
        pending: list[tuple[int, bytes]] = []
        last_id = None
        for frame in read_frames(path):
            msg = orjson.loads(frame)
            data = msg.get("data", msg)
            if "lastUpdateId" in msg:
                last_id = msg["lastUpdateId"]
                snap_body = frame
                continue
            if data.get("e") != "depthUpdate":
                continue
            wrapped = frame if "stream" in msg else orjson.dumps(
                {"stream": f"{data['s'].lower()}@depth@100ms", "data": data})
            pending.append((data["u"], wrapped))
            symbol = data["s"]
        assert last_id is not None
        snaps[symbol] = snap_body
        frames += [f for u, f in pending if u > last_id]
    return snaps, frames


def runner_alphapulse(snaps: dict[str, bytes], frames: list[bytes]) -> Callable[[], float]:
    """One timed pass: snapshot bodies (untimed), then the depth frames."""
    symbols = [from_native("binanceus", s).symbol for s in snaps]

    def run() -> float:
        parser = BinanceUSParser(symbols, sink=lambda e: None)
        feed = parser.feed
        for native, body in snaps.items():       # the collector does this off the read loop
            parser.rest_symbol = from_native("binanceus", native).symbol
            feed(body, 1)
        parser.rest_symbol = None
        dt = time_feed(feed, frames)
        assert parser.gaps == 0 and not parser.rejected and parser.updates == len(frames), \
            parser.stats()
        return dt
    run()
    return run


def _cryptofeed(snaps: dict[str, bytes]):  # noqa: ANN202
    from cryptofeed.defines import L2_BOOK
    from cryptofeed.exchanges import BinanceUS

    info = {"symbols": [{"symbol": n, "baseAsset": from_native("binanceus", n).base,
                         "quoteAsset": from_native("binanceus", n).quote,
                         "filters": [{"tickSize": "0.01"}]} for n in snaps]}
    offline_symbols(BinanceUS, info)

    async def count(*args: object, **kwargs: object) -> None:
        calls[0] += 1

    calls = [0]
    feed = BinanceUS(symbols=[from_native("binanceus", n).symbol for n in snaps],
                     channels=[L2_BOOK], callbacks={L2_BOOK: count})

    class OfflineHTTP:                      # its REST snapshot, answered from memory
        async def read(self, url: str, **kwargs: object) -> str:
            native = url.split("symbol=")[1].split("&")[0]
            return snaps[native].decode()

    feed.http_conn = OfflineHTTP()
    return feed, calls


def runner_cryptofeed(snaps: dict[str, bytes], frames: list[bytes]) -> Callable[[], float]:
    """One timed pass with a fresh cryptofeed feed; its snapshot fetch untimed."""
    texts = [f.decode() for f in frames]
    loop = asyncio.new_event_loop()        # kept for the whole process (a benchmark script)

    async def drive() -> float:
        feed, calls = _cryptofeed(snaps)
        for native in snaps:                    # its snapshot fetch, outside the timing
            await feed._snapshot(native)
        dt = await feed_handler(feed.message_handler, texts)
        # every diff reached its book (no silent reset): one callback per snapshot and diff
        assert calls[0] == len(snaps) + len(texts), (calls[0], len(snaps), len(texts))
        return dt

    return loop_runner(drive, loop)


def main() -> None:
    args = parse_args(__doc__, "generated stream: depth events")
    where = pin(args.cpu)
    import logging
    logging.disable(logging.WARNING)
    real = sorted((FIXTURES / "binanceus").glob("*.jsonl"))
    rows = [
        ("fixture generated/binanceus-clean (depth events)",
         from_fixture([FIXTURES / "generated" / "binanceus-clean.jsonl"])),
        (f"fixtures binanceus/ real, {len(real)} symbols", from_fixture(real)),
        ("generated depth events, 1 level/msg", generate(args.n, 1)),
        ("generated depth events, 10 levels/msg", generate(args.n, 10)),
    ]
    print_header(f"Binance.US depth ingest, one core ({where}), median of {args.repeat} "
                 "alternating rounds (ratio = median of per-round ratios)",
                 ["stream", "depth msgs", "AlphaPulse msgs/s", "cryptofeed 2.4.1 msgs/s", "ratio"])
    for label, (snaps, frames) in rows:
        mine, cf, ratio = interleaved_rates(runner_alphapulse(snaps, frames),
                                            runner_cryptofeed(snaps, frames), len(frames),
                                            args.repeat, MIN_TIME)
        print(f"| {label} | {len(frames):,} | {mine:,.0f} | {cf:,.0f} | {ratio:.2f}x |")
    for label, (snaps, frames) in rows[2:]:
        print(f"| orjson.loads alone, {label.split(', ')[1]} (ceiling reference) | | "
              f"{bench_orjson(frames, args.repeat, MIN_TIME):,.0f} | | |")


if __name__ == "__main__":
    main()
