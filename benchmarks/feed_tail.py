"""The machine's floor under the feed's tail: how often, and for how long, a vCPU is away.

A process that spins on one CPU and reads the clock in a loop sees every moment the CPU ran
something else (an interrupt, the hypervisor, another tenant's vCPU) as a gap between two reads.
A busy-polling strategy is that process: a record published during a gap waits for the gap's
remainder, and a record being parsed or decoded when a gap starts waits for all of it.  So per
CPU and per ``--window`` this prints the share of time away, the gaps per second by length, the
period they repeat at (a fixed tick shows as 1 ms or 4 ms) and, for a record arriving at a
random instant, the remainder of the gap it lands in at p99 / p99.9: a latency no software on
that CPU can avoid.  Both CPUs spin at once, as the publisher and the strategy would run.

The last columns replay the path through these gaps: a frame arrives at a random instant, the
publisher's CPU (CPU 0's gaps) needs ``--work`` µs for it, then the strategy's (CPU 1's) waits
out any gap it is in and needs its own µs; p50 / p99 of that, for the work measured per stage
in benchmarks/feed_latency.py (p50s: ~12 µs publisher, ~9 µs strategy, cold caches) and for
the hot work of benchmarks/feed_stages.py (~4 + ~2.5 µs), which no real feed gets.

    .venv/bin/python benchmarks/feed_tail.py [--seconds 30] [--window 3] [--work 12,9]

Measured on the 2-vCPU Firecracker VM (nested, KVM clock): each vCPU is away ~3-5% of the time
in ~1,260 gaps per second: a host interrupt every 1.000 ms (median 26 µs) and the guest's own
250 Hz tick (median 45 µs, p99 ~210 µs), plus host preemption episodes of 0.1-2 ms.  A record
arriving at a random instant waits 16-41 µs or more for 1% of instants (per 3 s window), and the
replay gives p99 59-106 µs for the measured work and 40-87 µs even for the hot work: on this
VM a p99 under 50 µs frame -> strategy is out of reach whatever the feed does.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from typing import Any

import numpy as np

MIN_GAP_NS = 5_000   # a clock loop iteration is ~0.1 µs: anything above this is time away


def spin(cpu: int, seconds: float, conn: Any) -> None:
    """Spin on ``cpu`` reading the clock; send back the start and (offset, length) of each gap."""
    os.sched_setaffinity(0, {cpu})
    clock = time.perf_counter_ns
    gaps = np.zeros((int(seconds * 20_000), 2), dtype=np.int64)   # pre-touched: no faults
    gaps += 1
    n, limit = 0, len(gaps)
    start = prev = clock()
    end = start + int(seconds * 1e9)
    while prev < end:
        now = clock()
        if now - prev > MIN_GAP_NS and n < limit:
            gaps[n, 0], gaps[n, 1] = prev - start, now - prev
            n += 1
        prev = now
    conn.send((start, gaps[:n]))


def remainder_quantile(lengths: np.ndarray, span_ns: int, share: float) -> float:
    """The x (µs) such that a random instant has probability ``share`` of waiting longer than x
    for the CPU to come back (a gap of length L holds L - x such instants)."""
    if np.clip(lengths, 0, None).sum() / span_ns <= share:
        return 0.0
    lo, hi = 0, int(lengths.max())
    while hi - lo > 500:
        mid = (lo + hi) // 2
        if np.clip(lengths - mid, 0, None).sum() / span_ns > share:
            lo = mid
        else:
            hi = mid
    return hi / 1000


def finish(starts: np.ndarray, ends: np.ndarray, t: float, work: float) -> float:
    """When ``work`` ns of CPU started at ``t`` are done on a CPU away during the sorted gaps."""
    i = int(np.searchsorted(ends, t, side="right"))   # the first gap that ends after t
    while i < len(starts):
        if starts[i] <= t:           # t falls inside gap i: the CPU comes back at its end
            t = float(ends[i])
        elif starts[i] >= t + work:
            break
        else:
            work -= starts[i] - t
            t = float(ends[i])
        i += 1
    return t + work


def replay(pub: np.ndarray, strat: np.ndarray, lo: int, hi: int, work: tuple[float, float],
           samples: int = 20_000) -> tuple[float, float]:
    """p50 / p99 (µs) of frame -> strategy for frames arriving at random in [lo, hi)."""
    rng = np.random.default_rng(1)
    ps, pe = pub[:, 0], pub[:, 0] + pub[:, 1]
    ss, se = strat[:, 0], strat[:, 0] + strat[:, 1]
    out = []
    for t in rng.uniform(lo, hi, samples):
        published = finish(ps, pe, t, work[0] * 1000)
        out.append(finish(ss, se, published, work[1] * 1000) - t)
    p50, p99 = np.percentile(out, [50, 99]) / 1000
    return float(p50), float(p99)


def period_us(starts: np.ndarray) -> str:
    """The most common spacing between gaps, to 10 µs, with its share."""
    if len(starts) < 3:
        return "-"
    spacing = np.round(np.diff(starts) / 10_000).astype(np.int64)
    values, counts = np.unique(spacing, return_counts=True)
    top = int(np.argmax(counts))
    return f"{values[top] * 10:,} µs ({100 * counts[top] / len(spacing):.0f}%)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--window", type=float, default=3.0, help="seconds per row (a feed run's length)")
    ap.add_argument("--work", default="12,9", help="publisher,strategy µs of CPU per frame (replay)")
    ap.add_argument("--hot", default="4,2.5", help="the same, hot (replay)")
    args = ap.parse_args()
    ctx = multiprocessing.get_context("spawn")
    cpus = sorted(os.sched_getaffinity(0))
    pipes, procs = [], []
    for cpu in cpus:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=spin, args=(cpu, args.seconds, child), daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    received = [p.recv() for p in pipes]
    for proc in procs:
        proc.join()
    origin = max(start for start, _ in received)   # one clock (monotonic) for every CPU
    results = [np.column_stack((gaps[:, 0] + start - origin, gaps[:, 1])) for start, gaps in received]
    window = int(args.window * 1e9)
    work = tuple(float(x) for x in args.work.split(","))
    hot = tuple(float(x) for x in args.hot.split(","))
    replays = [(replay(results[0], results[-1], w * window, (w + 1) * window, work),
                replay(results[0], results[-1], w * window, (w + 1) * window, hot))
               for w in range(int(args.seconds / args.window))]
    print(f"cpus={cpus} load={os.getloadavg()[0]:.2f} seconds={args.seconds:g} "
          f"window={args.window:g} s")
    print()
    print("| cpu | window | away | gaps/s 5-20 µs | 20-50 | 50-100 | 100 µs-1 ms | ≥1 ms "
          f"| common spacing | remainder p99 µs | p99.9 µs | replay {args.work} µs: p50 / p99 "
          f"| replay hot {args.hot} µs: p50 / p99 |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for cpu, gaps in zip(cpus, results):
        for w in range(int(args.seconds / args.window)):
            mask = (gaps[:, 0] >= w * window) & (gaps[:, 0] < (w + 1) * window)
            starts, lengths = gaps[mask, 0], gaps[mask, 1]
            counts = np.histogram(lengths, bins=[0, 20_000, 50_000, 100_000, 1_000_000, 2**62])[0]
            per_s = " | ".join(f"{c / args.window:,.0f}" for c in counts)
            print(f"| {cpu} | {w} | {100 * lengths.sum() / window:.1f}% | {per_s} | "
                  f"{period_us(starts)} | {remainder_quantile(lengths, window, 0.01):.0f} | "
                  f"{remainder_quantile(lengths, window, 0.001):.0f} | "
                  f"{replays[w][0][0]:.1f} / {replays[w][0][1]:.1f} | "
                  f"{replays[w][1][0]:.1f} / {replays[w][1][1]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
