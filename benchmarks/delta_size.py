"""Bytes per book update: full book as JSON vs our JSON delta vs our binary delta.

    .venv/bin/python benchmarks/delta_size.py [--updates 100000]

Every exchange message of each stream is applied with ``OrderBook.apply``; the Delta it
returns is measured as compact JSON (``json.dumps(delta.to_json())``, no spaces) and as
``delta.encode()``.  The "full book" alternative (what the original design published on
every update) is the whole book as compact JSON with the same header fields, sampled on
every k-th message.  Sizes are per message (one exchange message = one Delta) and per level
change.  The second table repeats the generated stream with the book truncated to several
depths, because the full-book size grows with depth while a delta does not.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import book_streams  # noqa: E402

from alphapulse import OrderBook  # noqa: E402


def compact(obj: object) -> int:
    return len(json.dumps(obj, separators=(",", ":")).encode())


def measure(st: book_streams.Stream, depth: int, samples: int = 200) -> dict[str, float]:
    book = OrderBook("BTC-USD", st.price_precision, st.size_precision, exchange="coinbase",
                     depth=depth)
    book.snapshot(st.bids, st.asks)
    every = max(1, len(st.messages) // samples)
    full, js, binary, levels = [], [], [], 0
    for i, message in enumerate(st.messages):
        delta = book.apply(message)
        levels += len(delta)
        js.append(compact(delta.to_json()))
        binary.append(len(delta.encode()))
        if i % every == 0:
            full.append(compact({"exchange": book.exchange, "symbol": book.symbol,
                                 "sequence": book.sequence, "bids": book.bids(),
                                 "asks": book.asks()}))
    n = len(st.messages)
    return {
        "levels": len(book),
        "full": statistics.mean(full),
        "json": sum(js) / n,
        "binary": sum(binary) / n,
        "json_per_level": sum(js) / max(levels, 1),
        "binary_per_level": sum(binary) / max(levels, 1),
        "changes_per_message": levels / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=100_000)
    args = parser.parse_args()
    generated = book_streams.generated(args.updates)
    streams = [(generated, 0), (book_streams.coinbase(), 0), (book_streams.kraken(), 25)]

    print("## Bytes per update (one exchange message = one Delta)\n")
    print("| stream | book levels | full book JSON | JSON delta | binary delta "
          "| full / JSON | full / binary | binary saves vs full | binary per level change |")
    print("|---|---|---|---|---|---|---|---|---|")
    for st, depth in streams:
        r = measure(st, depth)
        print(f"| {st.name} | {r['levels']:,} | {r['full']:,.0f} B | {r['json']:.0f} B "
              f"| {r['binary']:.1f} B | {r['full'] / r['json']:,.0f}x "
              f"| {r['full'] / r['binary']:,.0f}x | {100 * (1 - r['binary'] / r['full']):.3f}% "
              f"| {r['binary_per_level']:.1f} B ({r['changes_per_message']:.1f} changes/msg) |")

    print(f"\n## How it depends on depth ({generated.name}, book truncated to depth)\n")
    print("| depth | full book JSON | JSON delta | binary delta | full / binary |")
    print("|---|---|---|---|---|")
    for depth in (10, 25, 100, 500, 1000):
        r = measure(generated, depth)
        print(f"| {depth} | {r['full']:,.0f} B | {r['json']:.0f} B | {r['binary']:.1f} B "
              f"| {r['full'] / r['binary']:,.0f}x |")


if __name__ == "__main__":
    main()
