"""What one wakeup costs on this machine: the anchor for the server's CPU at low message rates.

At ~2,000 msgs/s the server mostly sleeps; its CPU is then set less by the work per message than
by what each wakeup costs (the scheduler, the event loop's turn, and code that runs slower
after its caches went cold).  Two measurements, no AlphaPulse server involved:

* ``sleep``: a fixed piece of real work (one Kraken v2 book update: parse, apply, CRC32
  verified) after sleeping ``gap`` ms, for several gaps: the work's median time (how much
  slower it runs cold) and the process CPU per iteration (work + the wakeup itself).
* ``loop``: an event loop (asyncio, and uvloop when installed) whose one protocol receives
  one small message per wakeup over loopback TCP from a writer process at ``--rate``
  messages/s and does nothing with it: the reader's CPU per wakeup.  This is the floor
  under any asyncio server's cost per socket read here.

    flock /tmp/ap-bench.lock .venv/bin/python benchmarks/wakeup_cost.py [--seconds 3] [--rate 2000]

Prints two markdown tables.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import multiprocessing as mp
import socket
import statistics
import time
from pathlib import Path

from alphapulse.capture import read_frames
from alphapulse.exchanges import get_parser

FIXTURE = (Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "generated"
           / "kraken-clean.jsonl")


def _kraken_frames() -> tuple[bytes, list[bytes]]:
    """The capture's first book snapshot and the book updates after it, as raw frames."""
    snapshot, updates = None, []
    for frame in read_frames(FIXTURE):
        if b'"channel":"book"' not in frame:
            continue
        if b'"type":"snapshot"' in frame:
            snapshot, updates = frame, []
        elif snapshot is not None:
            updates.append(frame)
    assert snapshot is not None and updates, "no Kraken v2 book in the capture"
    return snapshot, updates


def sleep_rows(seconds: float, gaps_ms: list[float]) -> list[tuple[float, float, float, float]]:
    """(gap ms, work median µs, work p90 µs, process CPU per iteration µs) per gap."""
    snapshot, updates = _kraken_frames()
    rows = []
    for gap_ms in gaps_ms:
        parser = get_parser("kraken")(symbols=["BTC-USD"], sink=lambda event: None)
        parser.feed(snapshot, time.time_ns())
        works, n = [], 0
        cpu0, end = time.process_time(), time.monotonic() + seconds
        while time.monotonic() < end:
            if gap_ms:
                time.sleep(gap_ms / 1e3)
            frame = updates[n % len(updates)]
            if n and n % len(updates) == 0:        # start the capture's updates over
                parser.feed(snapshot, time.time_ns())
            t = time.perf_counter_ns()
            parser.feed(frame, t)
            works.append(time.perf_counter_ns() - t)
            n += 1
        cpu = (time.process_time() - cpu0) / n * 1e6
        works.sort()
        rows.append((gap_ms, statistics.median(works) / 1e3, works[int(0.9 * len(works))] / 1e3,
                     cpu))
        assert parser.checksum_failed == 0 and parser.checksum_ok > 0
    return rows


def _writer(port: int, rate: float, seconds: float) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    period, message = 1.0 / rate, b"x" * 100
    t_next, end = time.monotonic(), time.monotonic() + seconds
    while t_next < end:
        t_next += period
        delay = t_next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        sock.sendall(message)
    sock.close()


class _Sink(asyncio.Protocol):
    def __init__(self, done: asyncio.Future) -> None:
        self.done, self.reads = done, 0

    def data_received(self, data: bytes) -> None:
        self.reads += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def _read_all(listener: socket.socket, rate: float, seconds: float) -> tuple[int, float]:
    loop = asyncio.get_running_loop()
    writer = mp.get_context("spawn").Process(
        target=_writer, args=(listener.getsockname()[1], rate, seconds))
    writer.start()
    conn, _ = await loop.sock_accept(listener)
    done = loop.create_future()
    transport, sink = await loop.connect_accepted_socket(lambda: _Sink(done), conn)
    cpu0 = time.process_time()
    await done
    cpu = time.process_time() - cpu0
    transport.close()
    writer.join()
    return sink.reads, cpu


def loop_row(name: str, rate: float, seconds: float) -> tuple[str, int, float, float]:
    """(loop, reads, reads/s, reader CPU per read µs) for one event loop implementation."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    try:
        if name == "uvloop":
            import uvloop
            reads, cpu = uvloop.run(_read_all(listener, rate, seconds))
        else:
            reads, cpu = asyncio.run(_read_all(listener, rate, seconds))
    finally:
        listener.close()
    return name, reads, reads / seconds, cpu / max(reads, 1) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rate", type=float, default=2000.0, help="loop: messages/s")
    ap.add_argument("--gaps-ms", default="0,0.5,2,10")
    args = ap.parse_args()

    rows = sleep_rows(args.seconds, [float(g) for g in args.gaps_ms.split(",")])
    hot = rows[0][1]
    print("| sleep before the work, ms | work median µs | work p90 µs | vs no sleep | "
          "CPU per iteration µs |")
    print("|---:|---:|---:|---:|---:|")
    for gap, median, p90, cpu in rows:
        print(f"| {gap:g} | {median:.1f} | {p90:.1f} | {median / hot:.2f}x | {cpu:.1f} |")

    loops = ["asyncio"]
    if importlib.util.find_spec("uvloop") is not None:
        loops.append("uvloop")
    print()
    print("| event loop | reads | reads/s | reader CPU per read µs |")
    print("|---|---:|---:|---:|")
    for name in loops:
        name, reads, per_s, cpu = loop_row(name, args.rate, args.seconds)
        print(f"| {name} | {reads:,} | {per_s:,.0f} | {cpu:.1f} |")


if __name__ == "__main__":
    main()
