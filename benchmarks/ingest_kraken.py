"""Kraken ingest: book messages/s through parse + normalise + book, every checksum verified.

    .venv/bin/python benchmarks/ingest_kraken.py [--n 50000] [--repeat 5] [--cpu 1]

Pinned to one CPU.  Each round runs both sides back to back (interleaved), so load from other
processes on a shared machine hits both alike; ratios are medians of per-round ratios.  For each stream: AlphaPulse's ``KrakenParser.feed`` (the collector's own
code: exact number text, OrderBook apply + truncate, CRC32 compare, a BookUpdate event to a
no-op sink) and, side by side in the same run, cryptofeed 2.4.1's ``Kraken.message_handler``
fed the same messages offline with ``checksum_validation=True`` and a no-op callback.

cryptofeed 2.4.1 speaks only Kraken's v1 protocol (``wss://ws.kraken.com``; its handler reads
``msg['event']`` from every JSON object, so a v2 frame raises KeyError): it is compared on the
v1 rendering of the same market, and the v2 rows have no cryptofeed number.  Medians of
``--repeat`` runs; each run feeds the whole stream to a fresh parser and asserts that every
checksum matched.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
FIXTURES = Path(os.environ.get("ALPHAPULSE_FIXTURES", HERE.parents[1] / "shared" / "fixtures"))

from _kraken_stream import generate  # noqa: E402

from alphapulse.capture import read_frames  # noqa: E402
from alphapulse.exchanges.kraken import KrakenParser  # noqa: E402


def pin(cpu: int) -> str:
    try:
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    except (AttributeError, OSError) as exc:
        return f"not pinned ({exc})"


def timed(run, min_time: float = 0.2) -> float:  # noqa: ANN001
    """Seconds per pass of ``run`` (repeated until ``min_time`` elapsed)."""
    passes, total = 0, 0.0
    while total < min_time:
        total += run()
        passes += 1
    return total / passes


def alphapulse_runner(frames: list[bytes], book_msgs: int):  # noqa: ANN201
    def run() -> float:
        parser = KrakenParser(sink=lambda e: None)
        feed = parser.feed
        t0 = time.perf_counter()
        for f in frames:
            feed(f, 1)
        dt = time.perf_counter() - t0
        assert parser.checksum_failed == 0 and not parser.rejected, parser.stats()
        assert parser.updates + parser.snapshots == book_msgs, parser.stats()
        return dt
    run()                                               # warm caches
    return run


def _cryptofeed_kraken(depth: int):  # noqa: ANN202
    from cryptofeed.defines import L2_BOOK
    from cryptofeed.exchanges import Kraken
    from cryptofeed.symbols import Symbols

    # Offline: give cryptofeed's own symbol parser a minimal AssetPairs answer (no network).
    Symbols.set(Kraken.id, *Kraken._parse_symbol_data({"result": {"XXBTZUSD": {"wsname": "XBT/USD"}}}))

    async def noop(*args: object) -> None:
        pass

    return Kraken(symbols=["BTC-USD"], channels=[L2_BOOK], callbacks={L2_BOOK: noop},
                  checksum_validation=True, max_depth=depth)


def cryptofeed_runner(frames: list[bytes], depth: int, loop: asyncio.AbstractEventLoop):  # noqa: ANN201
    texts = [f.decode() for f in frames]              # what its websocket layer hands it
    feed = _cryptofeed_kraken(depth)

    async def drive() -> float:
        handler = feed.message_handler
        t0 = time.perf_counter()
        for msg in texts:
            await handler(msg, None, 1.0)
        return time.perf_counter() - t0

    def run() -> float:
        return loop.run_until_complete(drive())
    run()
    return run


def orjson_runner(frames: list[bytes]):  # noqa: ANN201
    def run() -> float:
        loads = orjson.loads
        t0 = time.perf_counter()
        for f in frames:
            loads(f)
        return time.perf_counter() - t0
    return run


def interleaved(a, b, repeat: int) -> tuple[float, float, float]:  # noqa: ANN001
    """Median seconds per pass of a and b, and the median of the per-round ratios b/a.

    Alternating the two in every round keeps a shared machine's load drift out of the ratio.
    """
    ta, tb, ratios = [], [], []
    for _ in range(repeat):
        x, y = timed(a), timed(b)
        ta.append(x)
        tb.append(y)
        ratios.append(y / x)
    return statistics.median(ta), statistics.median(tb), statistics.median(ratios)


def load_generated(n: int) -> tuple[list[bytes], list[bytes]]:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "alphapulse-bench"
    v2p, v1p = cache / f"kraken-v2-{n}.jsonl", cache / f"kraken-v1-{n}.jsonl"
    if not (v2p.exists() and v1p.exists()):
        v2, v1 = generate(n)
        cache.mkdir(parents=True, exist_ok=True)
        v2p.write_bytes(b"\n".join(v2) + b"\n")
        v1p.write_bytes(b"\n".join(v1) + b"\n")
    return read_frames(v2p), read_frames(v1p)


def is_book(frame: bytes) -> bool:
    return frame.startswith(b'{"channel":"book"') or (frame.startswith(b"[") and b'"book-' in frame)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50_000, help="generated stream: book updates")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cpu", type=int, default=os.cpu_count() - 1 if os.cpu_count() else 0)
    args = ap.parse_args()
    where = pin(args.cpu)
    gen_v2, gen_v1 = load_generated(args.n)
    clean = [f for f in read_frames(FIXTURES / "generated" / "kraken-clean.jsonl") if is_book(f)]
    real_v2 = read_frames(FIXTURES / "kraken" / "v2-book-btcusd-depth10-2023-07-30.jsonl")
    real_v1 = read_frames(FIXTURES / "kraken" / "v1-book-xbtusd-depth10-2023-08-30.jsonl")
    # instrument frame first so precisions come from the instrument channel, as live
    instrument = read_frames(FIXTURES / "generated" / "kraken-clean.jsonl")[1]
    rows = [
        ("generated v2 stream, depth 25", [instrument, *gen_v2], None, 25),
        ("generated v1 stream (same market), depth 25", gen_v1, gen_v1, 25),
        ("fixture generated/kraken-clean (v2 book msgs), depth 25", [instrument, *clean], None, 25),
        ("fixture kraken/v2-book 2023-07-30, depth 10", real_v2, None, 10),
        ("fixture kraken/v1-book 2023-08-30, depth 10", real_v1, real_v1, 10),
    ]
    print(f"Kraken book ingest, one core ({where}), median of {args.repeat} interleaved rounds; "
          f"python {sys.version.split()[0]}")
    print()
    print("| stream | book msgs | AlphaPulse msgs/s | cryptofeed 2.4.1 msgs/s | AlphaPulse / cryptofeed "
          "| orjson.loads alone msgs/s | AlphaPulse cost in orjson.loads |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    loop = asyncio.new_event_loop()
    for label, ours, theirs, depth in rows:
        n_book = sum(1 for f in ours if is_book(f))
        mine = alphapulse_runner(ours, n_book)
        t_oj, t_me, cost = interleaved(orjson_runner(ours), mine, args.repeat)
        oj = f"{len(ours) / t_oj:,.0f}"
        if theirs is not None:
            t_me2, t_cf, ratio = interleaved(mine, cryptofeed_runner(theirs, depth, loop), args.repeat)
            print(f"| {label} | {n_book:,} | {n_book / t_me:,.0f} | {n_book / t_cf:,.0f} | "
                  f"{ratio:.2f}x | {oj} | {cost:.1f}x |")
        else:
            print(f"| {label} | {n_book:,} | {n_book / t_me:,.0f} | n/a (v1 only) | — | {oj} | "
                  f"{cost:.1f}x |")
    loop.close()


if __name__ == "__main__":
    main()
