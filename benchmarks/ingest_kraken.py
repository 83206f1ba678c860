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

import asyncio
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
FIXTURES = Path(os.environ.get("ALPHAPULSE_FIXTURES", HERE.parents[1] / "shared" / "fixtures"))

from _ingest_common import (  # noqa: E402
    feed_handler, interleaved, loop_runner, noop, offline_symbols, orjson_runner, parse_args, pin,
    print_header, time_feed)
from _kraken_stream import generate  # noqa: E402

from alphapulse.capture import read_frames  # noqa: E402
from alphapulse.exchanges.kraken import KrakenParser  # noqa: E402


MIN_TIME = 0.2          # seconds of passes per timing


def alphapulse_runner(frames: list[bytes], book_msgs: int):  # noqa: ANN201
    def run() -> float:
        parser = KrakenParser(sink=lambda e: None)
        dt = time_feed(parser.feed, frames)
        assert parser.checksum_failed == 0 and not parser.rejected, parser.stats()
        assert parser.updates + parser.snapshots == book_msgs, parser.stats()
        return dt
    run()                                               # warm caches
    return run


def _cryptofeed_kraken(depth: int):  # noqa: ANN202
    from cryptofeed.defines import L2_BOOK
    from cryptofeed.exchanges import Kraken

    # Offline: give cryptofeed's own symbol parser a minimal AssetPairs answer (no network).
    offline_symbols(Kraken, {"result": {"XXBTZUSD": {"wsname": "XBT/USD"}}})
    return Kraken(symbols=["BTC-USD"], channels=[L2_BOOK], callbacks={L2_BOOK: noop},
                  checksum_validation=True, max_depth=depth)


def cryptofeed_runner(frames: list[bytes], depth: int, loop: asyncio.AbstractEventLoop):  # noqa: ANN201
    texts = [f.decode() for f in frames]              # what its websocket layer hands it
    feed = _cryptofeed_kraken(depth)
    return loop_runner(lambda: feed_handler(feed.message_handler, texts), loop)


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
    args = parse_args(__doc__, "generated stream: book updates")
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
    print_header(f"Kraken book ingest, one core ({where}), median of {args.repeat} interleaved rounds",
                 ["stream", "book msgs", "AlphaPulse msgs/s", "cryptofeed 2.4.1 msgs/s",
                  "AlphaPulse / cryptofeed", "orjson.loads alone msgs/s",
                  "AlphaPulse cost in orjson.loads"])
    loop = asyncio.new_event_loop()
    for label, ours, theirs, depth in rows:
        n_book = sum(1 for f in ours if is_book(f))
        mine = alphapulse_runner(ours, n_book)
        t_oj, t_me, cost = interleaved(orjson_runner(ours), mine, args.repeat, MIN_TIME)
        oj = f"{len(ours) / t_oj:,.0f}"
        if theirs is not None:
            t_me2, t_cf, ratio = interleaved(mine, cryptofeed_runner(theirs, depth, loop), args.repeat,
                                          MIN_TIME)
            print(f"| {label} | {n_book:,} | {n_book / t_me:,.0f} | {n_book / t_cf:,.0f} | "
                  f"{ratio:.2f}x | {oj} | {cost:.1f}x |")
        else:
            print(f"| {label} | {n_book:,} | {n_book / t_me:,.0f} | n/a (v1 only) | — | {oj} | "
                  f"{cost:.1f}x |")
    loop.close()


if __name__ == "__main__":
    main()
