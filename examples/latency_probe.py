"""Measure end-to-end latency from frame receipt (the server's ``ts_recv``) to this strategy.

::

    alphapulse-server --demo
    python examples/latency_probe.py --seconds 10

For every book update and trade, three figures (same host, same clock):

* ``total``   now - ts_recv: the exchange frame's arrival to this process having the event
  (its mirror book already updated);
* ``server``  ts_pub - ts_recv: parsing, the book, the hub and its other subscribers;
* ``ring``    now - ts_pub: encoding hand-off, the ring, waking this process, decoding.

Prints p50 / p90 / p99 / p99.9 / max in microseconds.  ``--spin-us`` trades CPU for wake-up
latency (how long a blocked read spins before sleeping on the futex).
"""
from __future__ import annotations

import argparse
import sys
import time

from alphapulse import feed as apfeed
from alphapulse.events import BookUpdate, Trade


def percentiles(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    values = sorted(values)
    n = len(values)

    def at(q: float) -> float:
        return values[min(n - 1, int(q * n))] / 1000.0   # ns -> us

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "p99.9": at(0.999),
            "max": values[-1] / 1000.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("channels", nargs="*", default=["book:*:*", "trades:*:*"])
    parser.add_argument("--name", default="default")
    parser.add_argument("--shm-dir", default=None)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--spin-us", type=float, default=50.0)
    args = parser.parse_args()

    total: list[int] = []
    server: list[int] = []
    ring: list[int] = []
    try:
        with apfeed.attach(args.name, args.channels, directory=args.shm_dir, wait=5,
                           spin_us=args.spin_us) as feed:
            end = time.monotonic() + args.seconds
            while time.monotonic() < end:
                event = feed.next(timeout=max(0.0, end - time.monotonic()))
                now = time.time_ns()
                if type(event) is BookUpdate or type(event) is Trade:
                    total.append(now - event.ts_recv)
                    server.append(feed.last_ts_pub - event.ts_recv)
                    ring.append(now - feed.last_ts_pub)
                elif event is None and feed.ended:
                    break
            overruns = feed.stats["overruns"]
    except (apfeed.FeedError, OSError) as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{len(total)} events in {args.seconds:g} s, {overruns} overruns")
    print(f"{'':8} {'p50':>9} {'p90':>9} {'p99':>9} {'p99.9':>9} {'max':>9}   (us)")
    for label, values in (("total", total), ("server", server), ("ring", ring)):
        p = percentiles(values)
        if p:
            print(f"{label:8} " + " ".join(f"{p[k]:9.1f}" for k in ("p50", "p90", "p99", "p99.9",
                                                                      "max")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
