"""Shared harness of the ``ingest_*.py`` benchmarks: CPU pinning, timed passes, interleaved
rounds with per-round ratio medians, the orjson ceiling, cryptofeed's offline no-op setup and
the markdown table header.

Not a benchmark itself (no ``bench_`` prefix, so pytest does not collect it).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

Runner = Callable[[], float]          # one timed pass, returns seconds


def pin(cpu: int) -> str:
    """Pin this process to ``cpu``; returns a note for the table title."""
    try:
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    except (AttributeError, OSError) as exc:
        return f"not pinned ({exc})"


def parse_args(doc: str, n_help: str) -> argparse.Namespace:
    """The common command line: ``--n`` (generated stream size), ``--repeat``, ``--cpu``."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--n", type=int, default=50_000, help=n_help)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cpu", type=int, default=os.cpu_count() - 1 if os.cpu_count() else 0)
    return ap.parse_args()


def timed(run: Runner, min_time: float) -> float:
    """Seconds per pass of ``run`` (repeated until ``min_time`` elapsed)."""
    passes, total = 0, 0.0
    while total < min_time:
        total += run()
        passes += 1
    return total / passes


def rounds(a: Runner, b: Runner, repeat: int, min_time: float) -> list[tuple[float, float]]:
    """``repeat`` rounds of (seconds per pass of a, of b), the two back to back in each round.

    Alternating the two in every round keeps a shared machine's load drift out of the ratio.
    """
    return [(timed(a, min_time), timed(b, min_time)) for _ in range(repeat)]


def interleaved(a: Runner, b: Runner, repeat: int,
                min_time: float) -> tuple[float, float, float]:
    """Median seconds per pass of a and b, and the median of the per-round ratios b/a."""
    rs = rounds(a, b, repeat, min_time)
    return (statistics.median(x for x, _ in rs), statistics.median(y for _, y in rs),
            statistics.median(y / x for x, y in rs))


def interleaved_rates(ours: Runner, theirs: Runner, n: int, repeat: int,
                      min_time: float) -> tuple[float, float, float]:
    """Median msgs/s of each (``n`` messages per pass) and the median of the per-round
    ratios ours/theirs (in msgs/s)."""
    rs = [(n / x, n / y) for x, y in rounds(ours, theirs, repeat, min_time)]
    return (statistics.median(a for a, _ in rs), statistics.median(b for _, b in rs),
            statistics.median(a / b for a, b in rs))


def orjson_runner(frames: Sequence[bytes]) -> Runner:
    """One timed pass of ``orjson.loads`` over ``frames``: the parsing ceiling."""
    def run() -> float:
        loads = orjson.loads
        t0 = time.perf_counter()
        for f in frames:
            loads(f)
        return time.perf_counter() - t0
    return run


def bench_orjson(frames: Sequence[bytes], repeat: int, min_time: float) -> float:
    """Median msgs/s of ``orjson.loads`` alone over ``repeat`` timed passes."""
    run = orjson_runner(frames)
    return statistics.median(len(frames) / timed(run, min_time) for _ in range(repeat))


def time_feed(feed: Callable[[bytes, int], Any], frames: Sequence[bytes]) -> float:
    """Seconds to push every frame through a parser's ``feed`` (ts_recv fixed: no clock read)."""
    t0 = time.perf_counter()
    for f in frames:
        feed(f, 1)
    return time.perf_counter() - t0


async def feed_handler(handler: Callable[..., Awaitable[Any]], texts: Sequence[str]) -> float:
    """Seconds to await cryptofeed's ``message_handler`` on every text frame, as its
    connection layer does."""
    t0 = time.perf_counter()
    for msg in texts:
        await handler(msg, None, 1.0)
    return time.perf_counter() - t0


def loop_runner(drive: Callable[[], Awaitable[float]], loop: asyncio.AbstractEventLoop) -> Runner:
    """A runner that runs the coroutine ``drive()`` on ``loop``; warmed once."""
    def run() -> float:
        return loop.run_until_complete(drive())
    run()
    return run


async def noop(*args: object, **kwargs: object) -> None:
    """cryptofeed callback that does nothing: only its parsing and book work is timed."""


def offline_symbols(feed_class: Any, data: dict) -> None:
    """Give cryptofeed's own symbol parser ``data`` (a minimal exchange answer): no network."""
    from cryptofeed.symbols import Symbols

    Symbols.set(feed_class.id, *feed_class._parse_symbol_data(data))


def print_header(title: str, columns: Sequence[str]) -> None:
    """The table title (plus the Python version), a blank line and the markdown header; the
    first column is left-aligned, the numbers right-aligned."""
    print(f"{title}; python {sys.version.split()[0]}")
    print()
    print("| " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * (len(columns) - 1))
