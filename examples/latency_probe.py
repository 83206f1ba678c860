"""Measure end-to-end latency from frame receipt (the server's ``ts_recv``) to this strategy.

::

    alphapulse-server --demo
    python examples/latency_probe.py --seconds 10

For every book update and trade, three figures (same host, same clock):

* ``total``   now - ts_recv: the exchange frame's arrival to this process having the event
  (its mirror book already updated);
* ``server``  ts_pub - ts_recv: parsing, the book, the hub and its other subscribers;
* ``ring``    now - ts_pub: encoding hand-off, the ring, waking this process, decoding.

Prints p50 / p90 / p99 / p99.9 / max in microseconds, and how many events took 1 ms or more
(on a shared or virtual machine those are the process or the vCPU not being scheduled: they are
counted apart, not hidden).  ``--spin-us`` trades CPU for wake-up latency (how long a blocked read
spins before sleeping on the futex); ``--busy-poll`` is the low-latency mode (never sleep: one
core for this process)::

    python examples/latency_probe.py --seconds 20                # default: spin 50 µs, then sleep
    python examples/latency_probe.py --seconds 20 --busy-poll    # alphapulse.feed.BUSY_POLL
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
    parser.add_argument("--spin-us", type=float, default=apfeed.DEFAULT_SPIN_US,
                        help="spin this long before sleeping when no event is ready")
    parser.add_argument("--busy-poll", action="store_true",
                        help="never sleep (spin_us=BUSY_POLL): lowest latency, one core busy")
    args = parser.parse_args()
    spin = apfeed.BUSY_POLL if args.busy_poll else args.spin_us

    total: list[int] = []
    server: list[int] = []
    ring: list[int] = []
    try:
        with apfeed.attach(args.name, args.channels, directory=args.shm_dir, wait=5,
                           spin_us=spin) as feed:
            cpu0 = time.process_time()
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
            cpu = (time.process_time() - cpu0) / args.seconds
    except (apfeed.FeedError, OSError) as exc:
        print(exc, file=sys.stderr)
        return 2
    mode = "busy-poll" if args.busy_poll else f"spin {args.spin_us:g} us then sleep"
    print(f"{len(total)} events in {args.seconds:g} s, {overruns} overruns, mode: {mode}, "
          f"this process used {100 * cpu:.0f}% of a core")
    print(f"{'':8} {'p50':>9} {'p90':>9} {'p99':>9} {'p99.9':>9} {'max':>9} {'>=1ms':>7}   (us)")
    for label, values in (("total", total), ("server", server), ("ring", ring)):
        p = percentiles(values)
        if p:
            slow = sum(v >= 1_000_000 for v in values)
            print(f"{label:8} " + " ".join(f"{p[k]:9.1f}" for k in ("p50", "p90", "p99", "p99.9",
                                                                      "max")) + f" {slow:7d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
