"""Where a strategy's latency goes, stage by stage, in one process (no IPC, no scheduler).

Table 1, hot: every stage of the path from an exchange frame to a strategy's mirror, run back
to back over the Kraken capture (so caches and branch predictors are warm):
parse + book + checksum verify (the collector), encode (the shm publisher), ring write, ring
read, decode, mirror apply (the strategy).

Table 2, warmth: the first stage (frame -> first event out of the Kraken parser) right after the
previous frame vs after the process idled (slept, or spun in a loop) for a while.  At realistic
exchange rates a frame arrives every few ms, so this is the cost the server pays per frame; on
a shared machine other processes evict the caches meanwhile.

    .venv/bin/python benchmarks/feed_stages.py
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CAPTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "generated" / "kraken-clean.jsonl"


def _us(values: list[int], q: float) -> float:
    return float(np.percentile(values, q)) / 1000


def hot() -> None:
    from alphapulse import OrderBook, ring, wire
    from alphapulse.capture import read_frames
    from alphapulse.events import BookSnapshot, BookUpdate
    from alphapulse.exchanges import get_parser

    frames = read_frames(CAPTURE)
    events: list[Any] = []
    parser = get_parser("kraken")(["BTC-USD"], sink=events.append)
    parse: list[int] = []
    for frame in frames:
        t0 = time.perf_counter_ns()
        parser.feed(frame, time.time_ns())
        parse.append(time.perf_counter_ns() - t0)
    updates = [e for e in events if type(e) is BookUpdate]
    snap = next(e for e in events if type(e) is BookSnapshot)
    stages: dict[str, list[int]] = {k: [] for k in (
        "encode (publisher)", "ring write", "ring read", "decode (strategy)", "mirror apply")}
    directory = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    writer = ring.create(os.path.join(directory, "r"), 1 << 22, policy="drop")
    reader = ring.attach(os.path.join(directory, "r"))
    book = OrderBook("BTC-USD", snap.delta.price_precision, snap.delta.size_precision)
    book.apply_delta(snap.delta)
    clock = time.perf_counter_ns
    try:
        for event in updates:
            t0 = clock()
            data = wire.encode(event, time.time_ns())
            t1 = clock()
            writer.write(data)
            t2 = clock()
            record = reader.read()
            t3 = clock()
            decoded = wire.decode(record)
            t4 = clock()
            book.apply_delta(decoded.delta)
            t5 = clock()
            for key, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                stages[key].append(value)
    finally:
        reader.close()
        writer.close()
        writer.unlink()
        os.rmdir(directory)
    print("| stage (hot, back to back) | p50 µs | p99 µs |")
    print("|---|---:|---:|")
    print(f"| parse + book + checksum verify, per frame (collector) | {_us(parse, 50):.2f} | "
          f"{_us(parse, 99):.2f} |")
    for key, values in stages.items():
        print(f"| {key} | {_us(values, 50):.2f} | {_us(values, 99):.2f} |")
    total = sum(_us(v, 50) for v in stages.values()) + _us(parse, 50)
    print(f"| sum of the p50s | {total:.1f} | |")


def warmth() -> None:
    from alphapulse.capture import read_frames
    from alphapulse.exchanges import get_parser

    frames = read_frames(CAPTURE)[:400]
    first: list[int] = []

    def sink(_event: Any) -> None:
        if not first:
            first.append(time.time_ns())

    parser = get_parser("kraken")(["BTC-USD"], sink=sink)
    print("| idle before each frame | while idle | frame -> first event p50 µs | p90 µs |")
    print("|---|---|---:|---:|")
    for gap_ms in (0.0, 0.5, 1.0, 5.0, 25.0):
        for how in (("sleep", "spin") if gap_ms else ("-",)):
            out = []
            for frame in frames:
                if gap_ms:
                    until = time.perf_counter() + gap_ms / 1000
                    if how == "sleep":
                        time.sleep(gap_ms / 1000)
                    while time.perf_counter() < until:
                        pass
                first.clear()
                ts = time.time_ns()
                parser.feed(frame, ts)
                if first:
                    out.append(first[0] - ts)
            print(f"| {gap_ms:g} ms | {how} | {_us(out, 50):.1f} | {_us(out, 90):.1f} |",
                  flush=True)


def main() -> None:
    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f}")
    hot()
    print()
    warmth()


if __name__ == "__main__":
    main()
