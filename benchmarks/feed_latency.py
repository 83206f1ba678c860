"""Strategy latency over the shared-memory feed: exchange frame receipt -> the strategy's event.

A publisher process replays the Kraken capture through the real parser (checksums verified,
book applied) into a real ``ShmPublisher``, stamping ``ts_recv = time.time_ns()`` as each
frame is "received"; a strategy in this process attaches by name and, for every BookUpdate,
records ``time.time_ns() - ts_recv`` after its mirror book has been updated.  So the figure is
parse + book + encode + ring + wake-up + decode + mirror apply: everything but the network and
the server hub's other subscribers (in the server the shm publisher is the hub's first
subscriber, so they add nothing; benchmarks/server_pipeline.py measures them).

The anchor carries the same wire records over a Unix-domain SOCK_SEQPACKET socket (one send per
record, a blocking recv, same decode and mirror apply): the usual way to do local IPC.

    .venv/bin/python benchmarks/feed_latency.py [--rates 200,2000,20000] [--seconds 3] [--repeat 3]
                                                [--spin 50,busy] [--pin]
    .venv/bin/python benchmarks/feed_stages.py                # each stage alone, hot and cold
    .venv/bin/python benchmarks/feed_blame.py                 # why the top 1% are late
    .venv/bin/python benchmarks/feed_tail.py                  # the machine's floor under it
    .venv/bin/python benchmarks/feed_latency.py --envelope    # the record envelope alone

``--spin``: the strategy's spin before it sleeps on the futex, µs; ``busy`` is the low-latency
mode (``alphapulse.feed.BUSY_POLL``: never sleep).  Each row gives p50/p99/p99.9/max, the
count of deltas that took 1 ms or more (a process or vCPU not scheduled: counted, not hidden),
the strategy's CPU share (busy-poll wants 100%; less means it did not have a core to itself)
and the host's steal time.  A second table splits the latency: server (receipt -> ts_pub:
parse, book, checksum, route), wake (ts_pub -> the strategy has the record: encode, ring or
socket, wake-up or spin) and strategy (decode + mirror apply).

``--arrivals``: when the publisher releases frame k.  ``jitter`` (default): at a uniformly random
instant of its own 1/rate slot, so frames come at random phases, as from a network.  ``paced``: at
exactly start + k/rate, phase-locked to the clock; on a VM whose host interrupts each vCPU every
millisecond (20-50 µs, see benchmarks/feed_tail.py) the run's random start phase then decides
whether every frame or none meets that interrupt, and p99 swings between runs.  Each event's
latency runs from its own ts_recv, so queueing behind an earlier frame counts.

The strategy records into a preallocated, pre-touched array: appending tuples would allocate per
delta and so add page faults and garbage collections to the process being measured.  Prints
markdown.
"""
from __future__ import annotations

import argparse
import array
import math
import multiprocessing
import os
import socket
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

CAPTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "generated" / "kraken-clean.jsonl"
CHANNELS = ["book:kraken:BTC-USD", "trades:kraken:BTC-USD"]


# --- the publisher process -------------------------------------------------------------------

def release_times(rate: int, seconds: float, arrivals: str, seed: int) -> np.ndarray:
    """Frame k's release time in seconds from the start (see ``--arrivals``)."""
    slots = np.arange(int(rate * seconds), dtype=np.float64)
    if arrivals == "jitter":
        slots += np.random.default_rng(seed).random(len(slots))
    elif arrivals != "paced":
        raise ValueError(f"unknown arrivals {arrivals!r}")
    return slots / rate


def publisher(transport: str, directory: str, rate: int, seconds: float, conn: Any,
              pin: bool = False, arrivals: str = "jitter", seed: int = 0) -> None:
    if pin:     # the server's core; the strategy takes the other one
        os.sched_setaffinity(0, {0})
    from alphapulse import wire
    from alphapulse.capture import read_frames
    from alphapulse.exchanges import get_parser
    from alphapulse.server.shm import ShmPublisher

    frames = read_frames(CAPTURE)
    state: dict[str, Any] = {}
    pub = None
    if transport == "ring":
        pub = ShmPublisher("bench", directory=directory,
                           books=lambda e, s: state["parser"].books.get(s))
        pub.start()
        sink = pub.on_event
        poll = pub.poll
    else:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        path = os.path.join(directory, "anchor.sock")
        listener.bind(path)
        listener.listen(1)
        conn.send("ready")
        peer, _ = listener.accept()
        send, encode, now_ns = peer.send, wire.encode, time.time_ns

        def sink(event: Any) -> None:
            send(encode(event, now_ns()))

        def poll(timeout: float = 0.0) -> None:
            time.sleep(timeout)

    def new_parser() -> Any:
        state["parser"] = get_parser("kraken")(["BTC-USD"], sink=sink)
        return state["parser"].feed

    feed = new_parser()
    if transport == "ring":
        conn.send("ready")
    while not conn.poll():
        poll(0.005)
    conn.recv()   # "go": the strategy is attached
    due = release_times(rate, seconds, arrivals, seed).tolist()
    start = time.perf_counter()
    sent = 0
    i = 0
    clock = time.time_ns
    while sent < len(due):
        now = time.perf_counter() - start
        while sent < len(due) and due[sent] <= now:
            if i == len(frames):
                feed, i = new_parser(), 0
            feed(frames[i], clock())
            i += 1
            sent += 1
        poll(0.0)
        if sent < len(due):
            left = due[sent] - (time.perf_counter() - start)
            if left > 0:
                time.sleep(left)
    conn.send(("done", sent))
    conn.recv()
    if pub is not None:
        pub.close()


# --- the strategy (this process) -------------------------------------------------------------

class Stamped:
    """The feed's ring reader, noting when each record was read (before decode/mirror apply):
    splits the hop into transport/wake-up and strategy work.  Costs ~0.2 µs per read."""

    def __init__(self, reader: Any) -> None:
        self._reader, self.t = reader, 0

    def read(self) -> Any:
        record = self._reader.read()
        if record is not None:
            self.t = time.time_ns()
        return record

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


def _steal() -> tuple[int, int]:
    """Host-wide (steal, total) jiffies from /proc/stat: time the hypervisor ran someone else."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


class Rows:
    """Per-delta rows of four int64 stamps, stored in place in a preallocated buffer."""

    def __init__(self, capacity: int) -> None:
        self._buf = array.array("q", bytes(32 * capacity))   # copied in: every page touched
        self.n = 0

    def add(self, ts_recv: int, ts_pub: int, t_read: int, t_done: int) -> None:
        buf, i = self._buf, 4 * self.n
        buf[i], buf[i + 1], buf[i + 2], buf[i + 3] = ts_recv, ts_pub, t_read, t_done
        self.n += 1

    def array(self) -> np.ndarray:
        return np.frombuffer(self._buf, dtype=np.int64, count=4 * self.n).reshape(-1, 4).copy()


def run(transport: str, rate: int, seconds: float, spin_us: float,
        pin: bool = False, arrivals: str = "jitter", seed: int = 0) -> dict[str, Any]:
    """Per book delta, in ns: ``total`` frame receipt -> strategy (mirror updated), ``server``
    receipt -> publication (ts_pub), ``wake`` publication -> record read by the strategy,
    ``local`` read -> decoded and applied; plus ``cpu`` (strategy CPU share) and ``steal``."""
    from alphapulse import OrderBook, wire
    from alphapulse import feed as apfeed
    from alphapulse.events import BookSnapshot, BookUpdate

    ctx = multiprocessing.get_context("spawn")
    directory = tempfile.mkdtemp(prefix="ap-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=publisher, daemon=True,
                       args=(transport, directory, rate, seconds, child, pin, arrivals, seed))
    proc.start()
    if pin:
        os.sched_setaffinity(0, {1})
    assert parent.recv() == "ready"
    rows = Rows(int(rate * seconds * 4) + 1024)   # a frame holds one or two book deltas
    append, clock = rows.add, time.time_ns
    cpu0, steal0 = time.process_time(), _steal()
    wall0 = time.monotonic()
    try:
        if transport == "ring":
            with apfeed.attach("bench", CHANNELS, directory=directory, spin_us=spin_us) as f:
                stamped = f._reader = Stamped(f._reader)
                parent.send("go")
                nxt = f.next
                while True:
                    event = nxt(0.2)
                    if type(event) is BookUpdate:
                        append(event.ts_recv, f.last_ts_pub, stamped.t, clock())
                    elif event is None and parent.poll():
                        break
                assert f.stats["overruns"] == 0, "the strategy fell behind"
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            sock.connect(os.path.join(directory, "anchor.sock"))
            sock.settimeout(0.2)
            parent.send("go")
            books: dict[tuple[str, str], Any] = {}
            recv, decode, ts_pub = sock.recv, wire.decode, wire.ts_pub
            while True:
                try:
                    data = recv(1 << 16)
                    t_read = clock()
                    event = decode(data)
                except TimeoutError:
                    if parent.poll():
                        break
                    continue
                cls = type(event)
                if cls is BookUpdate:
                    books[(event.exchange, event.symbol)].apply_delta(event.delta)
                    append(event.ts_recv, ts_pub(data), t_read, clock())
                elif cls is BookSnapshot:
                    d = event.delta
                    book = OrderBook(event.symbol, d.price_precision, d.size_precision)
                    book.apply_delta(d)
                    books[(event.exchange, event.symbol)] = book
            sock.close()
        wall = time.monotonic() - wall0
        cpu = (time.process_time() - cpu0) / wall
        steal1 = _steal()
        parent.recv()
        parent.send("stop")
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
        import shutil
        shutil.rmtree(directory, ignore_errors=True)
        if pin:
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    a = rows.array()
    total_j = max(1, steal1[1] - steal0[1])
    return {"total": a[:, 3] - a[:, 0], "server": a[:, 1] - a[:, 0], "wake": a[:, 2] - a[:, 1],
            "local": a[:, 3] - a[:, 2], "cpu": cpu, "steal": (steal1[0] - steal0[0]) / total_j}


# --- the envelope alone ----------------------------------------------------------------------

def envelope() -> None:
    """Inline names (our envelope) vs a u16 channel id from an announced table: size and time."""
    from alphapulse import wire
    from alphapulse._book import Delta
    from alphapulse.capture import read_frames
    from alphapulse.events import BookUpdate, Trade
    from alphapulse.exchanges import get_parser

    events: list[Any] = []
    parser = get_parser("kraken")(["BTC-USD"], sink=events.append)
    for frame in read_frames(CAPTURE):
        parser.feed(frame, time.time_ns())
    events = [e for e in events if type(e) in (BookUpdate, Trade)]
    ids_hdr = struct.Struct("<BBHqqq")
    table = {("kraken", "BTC-USD", "BTC/USD"): 1}
    names = {1: ("kraken", "BTC-USD", "BTC/USD")}

    def ids_encode(e: Any) -> bytes:   # the alternative: books only, same payload
        return ids_hdr.pack(0xA1, 3, table[(e.exchange, e.symbol, e.native_symbol)],
                            e.ts_event, e.ts_recv, 0) + e.delta.encode()

    def ids_decode(b: bytes) -> Any:
        _m, _t, cid, te, tr, _tp = ids_hdr.unpack_from(b)
        ex, sym, nat = names[cid]
        return BookUpdate(ex, sym, nat, Delta.decode(memoryview(b)[ids_hdr.size:]), te, tr)

    books = [e for e in events if type(e) is BookUpdate]
    rows = []
    for label, enc, dec, sample in (
            ("inline names (wire.py), book delta", lambda e: wire.encode(e, 1), wire.decode, books),
            ("u16 channel id + table, book delta", ids_encode, ids_decode, books),
            ("inline names (wire.py), trade", lambda e: wire.encode(e, 1), wire.decode,
             [e for e in events if type(e) is Trade])):
        data = [enc(e) for e in sample]
        enc_t, dec_t = [], []
        for _ in range(5):
            t0 = time.perf_counter_ns()
            for e in sample:
                enc(e)
            t1 = time.perf_counter_ns()
            for d in data:
                dec(d)
            t2 = time.perf_counter_ns()
            enc_t.append((t1 - t0) / len(sample))
            dec_t.append((t2 - t1) / len(sample))
        rows.append((label, statistics.mean(len(d) for d in data), statistics.median(enc_t),
                     statistics.median(dec_t)))
    print("| envelope | mean bytes | encode ns (median of 5) | decode ns (median of 5) |")
    print("|---|---:|---:|---:|")
    for label, size, e, d in rows:
        print(f"| {label} | {size:.1f} | {e:,.0f} | {d:,.0f} |")


def _spin(text: str) -> float:
    return math.inf if text.strip() in ("busy", "inf") else float(text)


def _spin_label(transport: str, spin: float) -> str:
    if transport == "unix":
        return "-"
    return "busy-poll" if math.isinf(spin) else f"{spin:g}"


OUTLIER_NS = 1_000_000   # >= 1 ms: a stalled vCPU or a preempted process, not the feed's work


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="2000", help="frames per second, comma-separated")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--spin", default="50,busy",
                    help="strategy spin before sleeping, µs, comma-separated ('busy' = BUSY_POLL)")
    ap.add_argument("--pin", action="store_true",
                    help="pin the publisher to CPU 0 and the strategy to CPU 1")
    ap.add_argument("--arrivals", choices=("jitter", "paced"), default="jitter",
                    help="frame release times: random phase in each 1/rate slot, or exactly k/rate")
    ap.add_argument("--envelope", action="store_true", help="only the envelope comparison")
    args = ap.parse_args()
    if args.envelope:
        envelope()
        return
    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f} python={sys.version.split()[0]} "
          f"pin={args.pin} arrivals={args.arrivals} seconds={args.seconds:g} repeat={args.repeat}")
    main_rows, stage_rows = [], []
    for rate in (int(r) for r in args.rates.split(",")):
        anchor: dict[str, float] = {}
        for transport, spin in [("unix", 0.0)] + [("ring", _spin(x)) for x in args.spin.split(",")]:
            runs = [run(transport, rate, args.seconds, spin, args.pin, args.arrivals, seed)
                    for seed in range(args.repeat)]

            def med(key: str, q: float) -> float:   # median over the runs of a percentile, µs
                return statistics.median(float(np.percentile(r[key], q)) for r in runs) / 1000

            n = sum(len(r["total"]) for r in runs)
            outliers = sum(int((r["total"] >= OUTLIER_NS).sum()) for r in runs)
            p50, p99 = med("total", 50), med("total", 99)
            if transport == "unix":
                anchor = {"p50": p50, "p99": p99}
            label = "unix socket (anchor)" if transport == "unix" else "shm ring (alphapulse.feed)"
            spin_label = _spin_label(transport, spin)
            main_rows.append(
                f"| {label} | {spin_label} | {rate:,} | {n:,} | {p50:.1f} | {p99:.1f} | "
                f"{med('total', 99.9):.1f} | {max(int(r['total'].max()) for r in runs) / 1000:,.0f} | "
                f"{outliers} ({100 * outliers / max(n, 1):.2f}%) | "
                f"{p50 / anchor['p50']:.2f}x | {p99 / anchor['p99']:.2f}x | "
                f"{100 * statistics.median(r['cpu'] for r in runs):.0f}% | "
                f"{100 * statistics.median(r['steal'] for r in runs):.1f}% |")
            stage_rows.append(
                f"| {label} | {spin_label} | {rate:,} | {med('server', 50):.1f} / "
                f"{med('server', 99):.1f} | {med('wake', 50):.1f} / {med('wake', 99):.1f} | "
                f"{med('local', 50):.1f} / {med('local', 99):.1f} |")
            print(main_rows[-1], flush=True)
    print()
    print("| transport | strategy spin µs | rate msg/s | deltas | p50 µs | p99 µs | p99.9 µs "
          "| max µs | ≥1 ms (share) | p50 vs anchor | p99 vs anchor | strategy CPU | steal |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(main_rows))
    print()
    print("Where it goes (p50 / p99 µs, medians over the runs): server = frame receipt -> "
          "publication (parse, book, checksum verify, route); wake = publication -> record "
          "read by the strategy (encode, transport, wake-up or spin); strategy = read -> "
          "decoded and applied to the mirror")
    print()
    print("| transport | strategy spin µs | rate msg/s | server | wake | strategy |")
    print("|---|---:|---:|---:|---:|---:|")
    print("\n".join(stage_rows))


if __name__ == "__main__":
    main()
