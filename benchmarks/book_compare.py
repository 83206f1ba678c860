"""One table: our OrderBook vs the `order-book` C package (cryptofeed's) vs SortedDict.

    .venv/bin/python benchmarks/book_compare.py [--updates 200000] [--repeat 5] [--quick]

Streams: a generated one (1000 levels a side, updates concentrated near the top, ~15%
deletions, fixed seed) and two real ones (Coinbase BTC-USD with its 46,000-level snapshot;
Kraken v2 depth 25).  All contenders run interleaved in the same process, repeat times,
and the median is reported.  Time is this thread's CPU time (``time.thread_time``), not
wall time, so other processes on a busy machine do not inflate it (they still cost cache).

Contenders
- ours update(): one Python call per level, decimal text in (the exact path).
- ours apply(): one call per exchange message (1-20 levels), decimal text in.
- order-book float: ``side[float] = float`` / ``del``; prices pre-converted outside the timer
  (its best case, and inexact).  order-book Decimal: ``side[Decimal(text)] = Decimal(text)``
  as cryptofeed does it (exact, conversion timed).
- SortedDict float: sortedcontainers with pre-converted float keys (bids negated).
Reads: top of book and top 10 of both sides, in steady state and right after each
insert/delete (timed as (update + read) - update over the same updates).
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from decimal import Decimal

import numpy as np
import order_book
import psutil
from sortedcontainers import SortedDict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import book_streams  # noqa: E402

from alphapulse import OrderBook  # noqa: E402


# --- contenders: build, single-level loop, batch loop, reads -----------------------------

def ours_build(st: book_streams.Stream) -> OrderBook:
    book = OrderBook("BTC-USD", st.price_precision, st.size_precision, depth=st.depth)
    book.snapshot(st.bids, st.asks)
    return book


def ours_single(book: OrderBook, changes: list) -> None:
    update = book.update
    for side, price, size in changes:
        update(side, price, size)


def ours_batch(book: OrderBook, messages: list) -> None:
    apply = book.apply
    for message in messages:
        apply(message)


def ob_build(st: book_streams.Stream, conv) -> order_book.OrderBook:
    ob = order_book.OrderBook(max_depth=st.depth) if st.depth else order_book.OrderBook()
    for price, size in st.bids:
        ob.bids[conv(price)] = conv(size)
    for price, size in st.asks:
        ob.asks[conv(price)] = conv(size)
    return ob


def ob_single_float(ob: order_book.OrderBook, pre: list) -> None:
    bids, asks = ob.bids, ob.asks
    for is_bid, price, size in pre:
        side = bids if is_bid else asks
        if size:
            side[price] = size
        elif price in side:
            del side[price]


def ob_single_decimal(ob: order_book.OrderBook, changes: list) -> None:
    bids, asks = ob.bids, ob.asks
    for side_name, price, size in changes:
        side = bids if side_name == "bid" else asks
        p, s = Decimal(price), Decimal(size)
        if s:
            side[p] = s
        elif p in side:
            del side[p]


def sd_build(st: book_streams.Stream) -> tuple[SortedDict, SortedDict]:
    bids = SortedDict({-float(p): float(s) for p, s in st.bids})
    asks = SortedDict({float(p): float(s) for p, s in st.asks})
    return bids, asks


def sd_single(book: tuple[SortedDict, SortedDict], pre: list) -> None:
    bids, asks = book
    for is_bid, price, size in pre:
        if is_bid:
            if size:
                bids[-price] = size
            else:
                bids.pop(-price, None)
        else:
            if size:
                asks[price] = size
            else:
                asks.pop(price, None)


def preconvert(changes: list) -> list:
    return [(side == "bid", float(price), float(size)) for side, price, size in changes]


# --- timing -------------------------------------------------------------------------------

def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            t0 = time.thread_time()
            fn()
            times.append(time.thread_time() - t0)
        finally:
            gc.enable()
    return statistics.median(times)


def per_call_ns(fn, calls: int, repeat: int) -> float:
    def loop() -> None:
        for _ in range(calls):
            fn()
    return median_time(loop, repeat) / calls * 1e9


def write_rates(st: book_streams.Stream, repeat: int) -> dict[str, float]:
    changes = st.changes
    pre = preconvert(changes)
    n = len(changes)
    runs = {
        "ours update() (text)": lambda: ours_single(ours_build(st), changes),
        "ours apply() per message (text)": lambda: ours_batch(ours_build(st), st.messages),
        "order-book float (pre-converted)": lambda: ob_single_float(ob_build(st, float), pre),
        "order-book Decimal(text)": lambda: ob_single_decimal(ob_build(st, Decimal), changes),
        "SortedDict float (pre-converted)": lambda: sd_single(sd_build(st), pre),
    }
    builds = {
        "ours update() (text)": lambda: ours_build(st),
        "ours apply() per message (text)": lambda: ours_build(st),
        "order-book float (pre-converted)": lambda: ob_build(st, float),
        "order-book Decimal(text)": lambda: ob_build(st, Decimal),
        "SortedDict float (pre-converted)": lambda: sd_build(st),
    }
    rates = {}
    for name, run in runs.items():
        # subtract the snapshot build so only the updates are timed
        total = median_time(run, repeat)
        build = median_time(builds[name], repeat)
        rates[name] = n / max(total - build, 1e-9)
    return rates


def read_costs(st: book_streams.Stream, repeat: int, n_after: int = 20000) -> dict:
    """ns per read: (top-of-book, top-10 steady, top-10 right after an insert/delete)."""
    changes = [c for c in st.changes[:n_after]]
    pre = preconvert(changes)
    ours = ours_build(st)
    out = np.zeros((4, 10), dtype=np.int64)
    ob = ob_build(st, float)
    sd_bids, sd_asks = sd_build(st)

    def ob_top10() -> None:
        bi, ai = ob.bids.index, ob.asks.index
        [bi(i) for i in range(10)]
        [ai(i) for i in range(10)]

    def sd_top10() -> None:
        sd_bids.items()[:10]
        sd_asks.items()[:10]

    results = {}
    calls = 20000
    results["ours best_bid()+best_ask() (str)"] = (
        per_call_ns(lambda: (ours.best_bid(), ours.best_ask()), calls, repeat),
        per_call_ns(lambda: (ours.bids(10), ours.asks(10)), calls, repeat), None)
    results["ours bbo() / top(10) (numpy)"] = (
        per_call_ns(ours.bbo, calls, repeat), per_call_ns(lambda: ours.top(10), calls, repeat),
        None)
    results["ours top_into(out) (prealloc)"] = (
        None, per_call_ns(lambda: ours.top_into(out), calls, repeat), None)
    results["order-book index(0) / index(0..9)"] = (
        per_call_ns(lambda: (ob.bids.index(0), ob.asks.index(0)), calls, repeat),
        per_call_ns(ob_top10, calls, repeat), None)
    results["SortedDict peekitem / items()[:10]"] = (
        per_call_ns(lambda: (sd_bids.peekitem(0), sd_asks.peekitem(0)), calls, repeat),
        per_call_ns(sd_top10, calls, repeat), None)

    # Right after each insert/delete: (update + read) - update, over the same updates.
    def after(update_only, update_read) -> float:
        base = median_time(update_only, repeat)
        both = median_time(update_read, repeat)
        return max(both - base, 0.0) / len(changes) * 1e9

    def ours_u() -> None:
        b = ours_build(st)
        for s, p, z in changes:
            b.update(s, p, z)

    def ours_ur(read) -> callable:
        def run() -> None:
            b = ours_build(st)
            for s, p, z in changes:
                b.update(s, p, z)
                read(b)
        return run

    def ob_u() -> None:
        ob_single_float(ob_build(st, float), pre)

    def ob_ur() -> None:
        o = ob_build(st, float)
        bids, asks = o.bids, o.asks
        for is_bid, price, size in pre:
            side = bids if is_bid else asks
            if size:
                side[price] = size
            elif price in side:
                del side[price]
            [bids.index(i) for i in range(10)]
            [asks.index(i) for i in range(10)]

    def sd_u() -> None:
        sd_single(sd_build(st), pre)

    def sd_ur() -> None:
        b, a = sd_build(st)
        for is_bid, price, size in pre:
            if is_bid:
                if size:
                    b[-price] = size
                else:
                    b.pop(-price, None)
            else:
                if size:
                    a[price] = size
                else:
                    a.pop(price, None)
            b.items()[:10]
            a.items()[:10]

    results["ours bbo() / top(10) (numpy)"] = results["ours bbo() / top(10) (numpy)"][:2] + (
        after(ours_u, ours_ur(lambda b: b.top(10))),)
    results["ours top_into(out) (prealloc)"] = results["ours top_into(out) (prealloc)"][:2] + (
        after(ours_u, ours_ur(lambda b: b.top_into(out))),)
    results["ours best_bid()+best_ask() (str)"] = \
        results["ours best_bid()+best_ask() (str)"][:2] + (
            after(ours_u, ours_ur(lambda b: (b.bids(10), b.asks(10)))),)
    results["order-book index(0) / index(0..9)"] = \
        results["order-book index(0) / index(0..9)"][:2] + (after(ob_u, ob_ur),)
    results["SortedDict peekitem / items()[:10]"] = \
        results["SortedDict peekitem / items()[:10]"][:2] + (after(sd_u, sd_ur),)
    return results


def memory_per_book(st: book_streams.Stream, copies: int = 40) -> dict[str, float]:
    """Bytes per book: RSS growth while holding `copies` books built from the snapshot."""
    proc = psutil.Process()
    out = {}
    builders = {
        "ours": lambda: ours_build(st),
        "order-book (float)": lambda: ob_build(st, float),
        "order-book (Decimal)": lambda: ob_build(st, Decimal),
        "SortedDict (float)": lambda: sd_build(st),
    }
    for name, build in builders.items():
        gc.collect()
        before = proc.memory_info().rss
        held = [build() for _ in range(copies)]
        gc.collect()
        out[name] = (proc.memory_info().rss - before) / copies
        del held
    out["ours (nbytes, C arrays)"] = ours_build(st).nbytes
    return out


def fmt_rate(r: float) -> str:
    return f"{r / 1e6:.2f} M/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="generated stream only")
    args = parser.parse_args()

    streams = [book_streams.generated(args.updates)]
    if not args.quick:
        streams += [book_streams.coinbase(), book_streams.kraken()]
    anchor = "order-book float (pre-converted)"
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores\n")
    print("## Level updates per second (median of", args.repeat, "runs)\n")
    header = "| contender | " + " | ".join(s.name for s in streams) + " |"
    print(header)
    print("|---" * (len(streams) + 1) + "|")
    all_rates = [write_rates(st, args.repeat) for st in streams]
    for name in all_rates[0]:
        cells = []
        for rates in all_rates:
            cells.append(f"{fmt_rate(rates[name])} ({rates[name] / rates[anchor]:.2f}x)")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\n(ratios are vs `{anchor}`; updates per stream: "
          + ", ".join(f"{len(s.changes):,}" for s in streams) + ")\n")

    st = streams[0]
    print(f"## Read cost, ns per read, both sides ({st.name})\n")
    print("| read | top of book | top 10 steady | top 10 right after insert/delete |")
    print("|---|---|---|---|")
    for name, (tob, top10, after) in read_costs(st, args.repeat).items():
        cells = [f"{v:.0f}" if v is not None else "-" for v in (tob, top10, after)]
        print(f"| {name} | " + " | ".join(cells) + " |")

    print(f"\n## Memory per book ({st.name}: {len(st.bids)} + {len(st.asks)} levels)\n")
    print("| structure | bytes per book |")
    print("|---|---|")
    for name, size in memory_per_book(st).items():
        print(f"| {name} | {size / 1024:.0f} KiB |")


if __name__ == "__main__":
    main()
