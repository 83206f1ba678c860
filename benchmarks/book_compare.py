"""One table: our OrderBook vs the `order-book` C package (cryptofeed's) vs SortedDict.

    .venv/bin/python benchmarks/book_compare.py [--updates 200000] [--repeat 5] [--quick]

Streams: a generated one (1000 levels a side, updates concentrated near the top, ~15%
deletions, fixed seed) and two real ones (Coinbase BTC-USD with its 46,000-level snapshot;
Kraken v2 depth 25).  All contenders run interleaved in the same process, repeat times,
and the median is reported (writes run round-robin across contenders).  Time is this thread's CPU time (``time.thread_time``), not
wall time, so other processes on a busy machine do not inflate it (they still cost cache).

Contenders
- ours update(): one Python call per level, decimal text in (the exact path).
- ours apply(): one call per exchange message (1-20 levels), decimal text in.
- order-book float: ``side[float] = float`` / ``del``; prices pre-converted outside the timer
  (its best case, and inexact).  order-book float(text): the same with ``float(text)`` timed
  (same input as ours, still inexact).  order-book Decimal: ``side[Decimal(text)] =
  Decimal(text)`` as cryptofeed does it (exact, conversion timed).
- SortedDict float: sortedcontainers with pre-converted float keys (bids negated).
Reads: top of book and top 10 of both sides, in steady state and right after each
insert/delete (timed as (update + read) - update over the same updates).
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import time
import timeit
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


def ob_single_float_text(ob: order_book.OrderBook, changes: list) -> None:
    bids, asks = ob.bids, ob.asks
    for side_name, price, size in changes:
        side = bids if side_name == "bid" else asks
        p, s = float(price), float(size)
        if s:
            side[p] = s
        elif p in side:
            del side[p]


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

def median_time(fn, repeat: int, setup=None) -> float:
    """Median CPU time of fn(setup()) (or fn()), setup excluded."""
    times = []
    for _ in range(repeat):
        state = setup() if setup is not None else None
        gc.collect()
        gc.disable()
        try:
            t0 = time.thread_time()
            fn(state) if setup is not None else fn()
            times.append(time.thread_time() - t0)
        finally:
            gc.enable()
    return statistics.median(times)


def per_call_ns(stmt: str, env: dict, calls: int, repeat: int) -> float:
    """Median ns per execution of ``stmt`` (timeit: compiled inline, no wrapper call)."""
    timer = timeit.Timer(stmt, globals=env, timer=time.thread_time)
    return statistics.median(timer.repeat(repeat, calls)) / calls * 1e9


def write_rates(st: book_streams.Stream, repeat: int) -> dict[str, float]:
    """Level updates per second; the book is built from the snapshot outside the timer."""
    changes = st.changes
    pre = preconvert(changes)
    n = len(changes)
    runs = {
        "ours update() (text)": (lambda b: ours_single(b, changes), lambda: ours_build(st)),
        "ours apply() per message (text)": (lambda b: ours_batch(b, st.messages),
                                            lambda: ours_build(st)),
        "order-book float (pre-converted)": (lambda b: ob_single_float(b, pre),
                                             lambda: ob_build(st, float)),
        "order-book float(text)": (lambda b: ob_single_float_text(b, changes),
                                   lambda: ob_build(st, float)),
        "order-book Decimal(text)": (lambda b: ob_single_decimal(b, changes),
                                     lambda: ob_build(st, Decimal)),
        "SortedDict float (pre-converted)": (lambda b: sd_single(b, pre), lambda: sd_build(st)),
    }
    # Round-robin: every repeat times each contender once, so a burst of load from other
    # processes hits all of them alike; the median per contender is reported.
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, (run, setup) in runs.items():
            times[name].append(median_time(run, 1, setup))
    return {name: n / statistics.median(t) for name, t in times.items()}


def read_costs(st: book_streams.Stream, repeat: int, n_after: int = 20000) -> dict:
    """ns per read: (top-of-book, top-10 steady, top-10 right after an insert/delete)."""
    changes = [c for c in st.changes[:n_after]]
    pre = preconvert(changes)
    ours = ours_build(st)
    out = np.zeros((4, 10), dtype=np.int64)
    ob = ob_build(st, float)
    sd_bids, sd_asks = sd_build(st)

    env = {"ours": ours, "out": out, "ob": ob, "sd_bids": sd_bids, "sd_asks": sd_asks,
           "bi": ob.bids.index, "ai": ob.asks.index}
    calls = 20000
    results = {
        "ours best_bid()+best_ask() (str)": (
            per_call_ns("ours.best_bid(); ours.best_ask()", env, calls, repeat),
            per_call_ns("ours.bids(10); ours.asks(10)", env, calls, repeat), None),
        "ours bbo() / top(10) (numpy)": (
            per_call_ns("ours.bbo()", env, calls, repeat),
            per_call_ns("ours.top(10)", env, calls, repeat), None),
        "ours top_into(out) (prealloc)": (
            None, per_call_ns("ours.top_into(out)", env, calls, repeat), None),
        "order-book index(0) / index(0..9)": (
            per_call_ns("bi(0); ai(0)", env, calls, repeat),
            per_call_ns("[bi(i) for i in range(10)]; [ai(i) for i in range(10)]", env, calls,
                        repeat), None),
        "SortedDict peekitem / items()[:10]": (
            per_call_ns("sd_bids.peekitem(0); sd_asks.peekitem(0)", env, calls, repeat),
            per_call_ns("sd_bids.items()[:10]; sd_asks.items()[:10]", env, calls, repeat),
            None),
    }

    # Right after each insert/delete: (update + read) - update, over the same updates, on a
    # fresh book each run (built outside the timer).
    def after(build, update_only, update_read) -> float:
        # Paired: each repeat times both loops back to back; the median of the differences.
        diffs = []
        for _ in range(max(repeat, 5)):
            base = median_time(update_only, 1, build)
            both = median_time(update_read, 1, build)
            diffs.append(both - base)
        return max(statistics.median(diffs), 0.0) / len(changes) * 1e9

    def ours_u(b: OrderBook) -> None:
        update = b.update
        for s, p, z in changes:
            update(s, p, z)

    def ours_ur_top(b: OrderBook) -> None:
        update, top = b.update, b.top
        for s, p, z in changes:
            update(s, p, z)
            top(10)

    def ours_ur_into(b: OrderBook) -> None:
        update, top_into = b.update, b.top_into
        for s, p, z in changes:
            update(s, p, z)
            top_into(out)

    def ours_ur_str(b: OrderBook) -> None:
        update, bids, asks = b.update, b.bids, b.asks
        for s, p, z in changes:
            update(s, p, z)
            bids(10)
            asks(10)

    def ob_ur(o: order_book.OrderBook) -> None:
        bids, asks = o.bids, o.asks
        bi, ai = bids.index, asks.index
        for is_bid, price, size in pre:
            side = bids if is_bid else asks
            if size:
                side[price] = size
            elif price in side:
                del side[price]
            [bi(i) for i in range(10)]
            [ai(i) for i in range(10)]

    def sd_ur(book: tuple[SortedDict, SortedDict]) -> None:
        b, a = book
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

    build_ours = lambda: ours_build(st)  # noqa: E731
    for name, run in (("ours bbo() / top(10) (numpy)", ours_ur_top),
                      ("ours top_into(out) (prealloc)", ours_ur_into),
                      ("ours best_bid()+best_ask() (str)", ours_ur_str)):
        results[name] = results[name][:2] + (after(build_ours, ours_u, run),)
    results["order-book index(0) / index(0..9)"] = \
        results["order-book index(0) / index(0..9)"][:2] + (
            after(lambda: ob_build(st, float), lambda o: ob_single_float(o, pre), ob_ur),)
    results["SortedDict peekitem / items()[:10]"] = \
        results["SortedDict peekitem / items()[:10]"][:2] + (
            after(lambda: sd_build(st), lambda b: sd_single(b, pre), sd_ur),)
    return results


MEMORY_BUILDERS = {
    "ours": lambda st: ours_build(st),
    "order-book (float)": lambda st: ob_build(st, float),
    "order-book (Decimal)": lambda st: ob_build(st, Decimal),
    "SortedDict (float)": lambda st: sd_build(st),
}


def memory_child(name: str, copies: int) -> None:
    """Run in a fresh interpreter: RSS growth while holding `copies` books, per book."""
    st = book_streams.generated(1000)
    build = MEMORY_BUILDERS[name]
    build(st)                       # warm up imports and caches
    gc.collect()
    proc = psutil.Process()
    before = proc.memory_info().rss
    held = [build(st) for _ in range(copies)]
    gc.collect()
    print((proc.memory_info().rss - before) / len(held))


def memory_per_book(copies: int = 200) -> dict[str, float]:
    out = {}
    for name in MEMORY_BUILDERS:
        result = subprocess.run([sys.executable, __file__, "--memory-child", name,
                                 "--copies", str(copies)],
                                capture_output=True, text=True, check=True)
        out[name] = float(result.stdout.strip().splitlines()[-1])
    return out


def fmt_rate(r: float) -> str:
    return f"{r / 1e6:.2f} M/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="generated stream only")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--copies", type=int, default=200, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.copies)
        return

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

    for st in streams[:2]:
        print(f"\n## Read cost, ns per read, both sides ({st.name})\n")
        print("| read | top of book | top 10 steady | top 10 right after insert/delete |")
        print("|---|---|---|---|")
        for name, (tob, top10, after) in read_costs(st, args.repeat).items():
            cells = [f"{v:.0f}" if v is not None else "-" for v in (tob, top10, after)]
            print(f"| {name} | " + " | ".join(cells) + " |")

    st = streams[0]
    print(f"\n## Memory per book ({len(st.bids)} + {len(st.asks)} levels; RSS growth per "
          f"book while holding 200, each structure in a fresh interpreter)\n")
    print("| structure | KiB per book | bytes per level |")
    print("|---|---|---|")
    levels = len(st.bids) + len(st.asks)
    for name, size in memory_per_book().items():
        print(f"| {name} | {size / 1024:.0f} | {size / levels:.0f} |")
    print(f"\n(ours holds {ours_build(st).nbytes / 1024:.0f} KiB of C arrays per book by its own "
          f"count (`nbytes`): 2 x int64 per level in chunks of 128 levels, filled 3/4 by a snapshot)")


if __name__ == "__main__":
    main()
