"""Which book deltas make the feed's top 1%, and why: each one's delay put on a stage or a stall.

Runs benchmarks/feed_latency.py's publisher (the Kraken capture through the real parser into a
real ShmPublisher, jittered arrivals) and a diagnostic strategy: the feed's busy-poll loop
written in Python (poll, then re-decode the last record every 100 µs, as ``Feed.next`` does in
C), reading the clock between polls, so every moment its CPU was away shows as a gap.  The
thread's CPU time, involuntary context switches and page faults do not show those: the
hypervisor's stalls count as the thread's CPU time on this VM.

For each delta in the top 1% (frame receipt -> mirror updated) the largest excess over its
stage's median names the cause:

- publisher: receipt -> publication (parse, book, route) took longer: a stall on its CPU, or cold
- strategy away: its CPU was away while the record sat in the ring (the gaps it saw)
- queued: it was still busy with an earlier record (itself late, usually by a stall)
- strategy work: decode + mirror apply took longer (a stall during it: hot it is ~2.3 µs)
- wake, other: none of the above

    .venv/bin/python benchmarks/feed_blame.py [--runs 3] [--seconds 3] [--rate 2000]
"""
from __future__ import annotations

import argparse
import array
import gc
import multiprocessing
import os
import tempfile
import time
from collections import Counter

import numpy as np
from feed_latency import CHANNELS, Rows, Stamped, publisher

MIN_GAP_NS = 5_000
WARM_NS = 100_000


def strategy(rate: int, seconds: float, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """One run: per-delta (ts_recv, ts_pub, t_read, t_done), the strategy's gaps (start, end)
    and the garbage collections it ran."""
    from alphapulse import feed as apfeed
    from alphapulse.events import BookUpdate
    from alphapulse.wire import decode

    ctx = multiprocessing.get_context("spawn")
    directory = tempfile.mkdtemp(prefix="ap-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=publisher, daemon=True,
                       args=("ring", directory, rate, seconds, child, False, "jitter", seed))
    proc.start()
    assert parent.recv() == "ready"
    rows = Rows(int(rate * seconds * 4) + 1024)
    gaps = array.array("q", bytes(16 * int(seconds * 20_000)))
    n_gaps, collections = 0, [0]
    gc.callbacks.append(lambda phase, _info: collections.__setitem__(0, collections[0] + (phase == "start")))
    clock = time.time_ns
    try:
        with apfeed.attach("bench", CHANNELS, directory=directory, spin_us=apfeed.BUSY_POLL) as f:
            stamped = f._reader = Stamped(f._reader)
            parent.send("go")
            poll, idle = f.poll, 0
            prev = clock()
            warm_at = prev + WARM_NS
            while True:
                event = poll()
                now = clock()
                # Away: a poll that took longer than polling does, up to the read if it got one
                # (decoding and applying the record is work, not a gap).
                seen = now if event is None else stamped.t
                if seen - prev > MIN_GAP_NS and n_gaps < len(gaps) // 2:
                    gaps[2 * n_gaps], gaps[2 * n_gaps + 1] = prev, seen
                    n_gaps += 1
                if event is None:
                    if now >= warm_at:
                        if f._last:
                            decode(f._last)
                        warm_at = now + WARM_NS
                        idle += 1
                        if idle % 1000 == 0 and parent.poll():
                            break
                        now = clock()
                elif type(event) is BookUpdate:
                    rows.add(event.ts_recv, f.last_ts_pub, stamped.t, now)
                    now = clock()
                prev = now
        parent.recv()
        parent.send("stop")
    finally:
        gc.callbacks.pop()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
        import shutil
        shutil.rmtree(directory, ignore_errors=True)
    spans = np.frombuffer(gaps, dtype=np.int64, count=2 * n_gaps).reshape(-1, 2).copy()
    return rows.array(), spans, collections[0]


def away(spans: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Per interval [lo, hi): how long the strategy's CPU was away during it (ns)."""
    starts, ends = spans[:, 0], spans[:, 1]
    out = np.zeros(len(lo), dtype=np.int64)
    for j in range(len(lo)):
        i = int(np.searchsorted(ends, lo[j], side="right"))
        while i < len(starts) and starts[i] < hi[j]:
            out[j] += min(ends[i], hi[j]) - max(starts[i], lo[j])
            i += 1
    return out


def blame(rows: np.ndarray, spans: np.ndarray) -> list[str]:
    """The cause of each top-1% delta (see the module docstring)."""
    recv, pub, read, done = rows.T
    total = done - recv
    prev_done = np.concatenate(([recv[0]], done[:-1]))
    server, wake, local = pub - recv, read - pub, done - read
    excess_server = server - np.median(server)
    excess_wake = wake - np.median(wake)
    excess_local = local - np.median(local)
    waited = away(spans, np.maximum(pub, prev_done), read)
    queued = np.clip(prev_done - pub, 0, None)
    causes = []
    for j in np.flatnonzero(total >= np.percentile(total, 99)):
        stalled = min(excess_wake[j], waited[j])
        behind = min(excess_wake[j] - stalled, queued[j])
        parts = {"publisher": excess_server[j], "strategy away": stalled, "queued": behind,
                 "strategy work": excess_local[j],
                 "wake, other": excess_wake[j] - stalled - behind}
        causes.append(max(parts, key=lambda k: parts[k]))
    return causes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rate", type=int, default=2000)
    args = ap.parse_args()
    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f} rate={args.rate} "
          f"seconds={args.seconds:g} runs={args.runs}")
    print()
    print("| run | deltas | p50 µs | p99 µs | strategy CPU away | gaps ≥20 µs /s | collections "
          "| top 1%: publisher | strategy away | queued | strategy work | wake, other |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    totals: Counter[str] = Counter()
    for seed in range(args.runs):
        rows, spans, collections = strategy(args.rate, args.seconds, seed)
        total = rows[:, 3] - rows[:, 0]
        span = int(rows[-1, 3] - rows[0, 3])
        causes = Counter(blame(rows, spans))
        totals.update(causes)
        lengths = spans[:, 1] - spans[:, 0]
        print(f"| {seed} | {len(rows):,} | {np.percentile(total, 50) / 1e3:.1f} | "
              f"{np.percentile(total, 99) / 1e3:.1f} | {100 * lengths.sum() / span:.1f}% | "
              f"{(lengths >= 20_000).sum() / (span / 1e9):,.0f} | {collections} | "
              + " | ".join(str(causes[k]) for k in ("publisher", "strategy away", "queued",
                                                      "strategy work", "wake, other")) + " |",
              flush=True)
    n = sum(totals.values())
    print()
    print("top 1% over all runs: " + ", ".join(
        f"{k} {v} ({100 * v / n:.0f}%)" for k, v in totals.most_common()))


if __name__ == "__main__":
    main()
