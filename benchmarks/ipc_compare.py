"""One table: alphapulse's shared-memory ring against multiprocessing.Queue, faster-fifo and
pyzmq PUSH/PULL over ipc://, measured side by side in the same run, on the same message sizes.

For every transport and size (64 B, 256 B):
  * one-way latency between two processes at a paced 100k msgs/s: the producer stamps
    time.perf_counter_ns() (CLOCK_MONOTONIC, one clock for the whole machine) into the payload,
    the consumer subtracts on arrival; each side uses its transport's natural blocking receive;
  * maximum throughput: the producer sends as fast as the transport takes messages, the
    consumer times first to last arrival.

Rounds are interleaved (round 1 of every transport, then round 2 ...) so slow drifts of a shared
host hit all transports alike; the table gives the median over rounds and the min-max spread.
This host moves its vCPUs around and pauses them for milliseconds now and then, so p99.9 is
host noise and is not reported.  A transport that cannot sustain the paced rate on two cores
(mp.Queue; pyzmq, whose I/O threads compete with two busy processes) shows queueing delay in
its latency columns, not its unloaded latency.

    .venv/bin/python benchmarks/ipc_compare.py            # ~1-2 minutes
    .venv/bin/python benchmarks/ipc_compare.py --long     # more rounds and messages
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

TRANSPORTS = ["ring", "ring-batch", "faster-fifo", "mp.Queue", "zmq"]
SIZES = [64, 256]
RATE = 100_000                     # paced latency test, msgs/s
BATCH = 256


@dataclass
class Plan:
    rounds: int
    latency_msgs: int
    warmup: int
    throughput_msgs: dict[str, int] = field(default_factory=dict)


def plan(long: bool) -> Plan:
    scale = 4 if long else 1
    return Plan(
        rounds=7 if long else 3,
        latency_msgs=20_000 * scale,
        warmup=2_000,
        throughput_msgs={"ring": 1_000_000 * scale, "ring-batch": 2_000_000 * scale,
                         "faster-fifo": 200_000 * scale, "mp.Queue": 100_000 * scale,
                         "zmq": 200_000 * scale},
    )


# ---- transport ends (opened inside the worker processes) ---------------------------------

def _ring_path(tag: str) -> str:
    from alphapulse import ring
    return str(ring.DEFAULT_DIR / f"alphapulse-bench-{os.getppid()}-{tag}")


def _zmq_addr(tag: str) -> str:
    return f"ipc://{tempfile.gettempdir()}/alphapulse-bench-{os.getppid()}-{tag}.sock"


class Tx:
    def __init__(self, transport: str, tag: str, mpq, ffq) -> None:
        self.transport = transport
        self.close = lambda: None
        if transport.startswith("ring"):
            from alphapulse import ring
            self.w = ring.create(_ring_path(tag), 1 << 22)
            self.send = self._ring_send
            self.close = lambda: (self.w.close(), self.w.unlink())
        elif transport == "zmq":
            import zmq
            self.ctx = zmq.Context()
            self.sock = self.ctx.socket(zmq.PUSH)
            self.sock.connect(_zmq_addr(tag))
            self.send = self.sock.send
            self.close = lambda: (self.sock.close(linger=1000), self.ctx.term())
        elif transport == "mp.Queue":
            self.send = mpq.put
        else:
            self.send = ffq.put

    def _ring_send(self, msg: bytes) -> None:
        write = self.w.write
        while not write(msg):
            pass

    def ready(self) -> None:
        if self.transport.startswith("ring"):
            while not self.w.reader_attached:
                time.sleep(0.0005)

    def blast(self, msg: bytes, n: int) -> None:
        """Send ``n`` copies as fast as the transport takes them."""
        if self.transport == "ring":
            write = self.w.write
            for _ in range(n):
                while not write(msg):
                    pass
        elif self.transport == "ring-batch":
            batch = [msg] * BATCH
            write_many = self.w.write_many
            left = n
            while left:
                chunk = batch if left >= BATCH else batch[:left]
                k = write_many(chunk)
                while k < len(chunk):
                    k += write_many(chunk[k:])
                left -= len(chunk)
        else:
            send = self.send
            for _ in range(n):
                send(msg)

    def paced(self, size: int, n: int) -> None:
        """Send ``n`` stamped messages at RATE msgs/s (busy-waiting between sends)."""
        buf = bytearray(size)
        stamp = struct.Struct("<q").pack_into
        # The ring's own call, not the retrying wrapper: a 4 MiB ring never fills at this rate
        # (a False would show up as a missing message and stall the consumer, not skew times).
        send = self.w.write if self.transport.startswith("ring") else self.send
        clock = time.perf_counter_ns
        interval = 1_000_000_000 // RATE
        next_t = clock() + interval
        for _ in range(n):
            while clock() < next_t:
                pass
            stamp(buf, 0, clock())         # stamp last, then straight into the transport
            send(buf)
            next_t += interval


class Rx:
    def __init__(self, transport: str, tag: str, mpq, ffq) -> None:
        self.transport = transport
        self.close = lambda: None
        if transport.startswith("ring"):
            from alphapulse import ring
            self.r = ring.attach(_ring_path(tag), timeout=30)
            self.close = self.r.close
        elif transport == "zmq":
            import zmq
            self.ctx = zmq.Context()
            self.sock = self.ctx.socket(zmq.PULL)
            self.sock.bind(_zmq_addr(tag))
            self.close = lambda: (self.sock.close(linger=0), self.ctx.term())
        self.mpq, self.ffq = mpq, ffq

    def receiver(self):
        """A function returning a list of >= 1 messages, blocking until there is one."""
        if self.transport == "ring":
            rb = self.r.read_blocking
            return lambda: [rb()]
        if self.transport == "ring-batch":
            rm, wait = self.r.read_many, self.r.wait

            def batch() -> list[bytes]:
                while True:
                    got = rm(BATCH)
                    if got:
                        return got
                    wait(None)
            return batch
        if self.transport == "zmq":
            recv = self.sock.recv
            return lambda: [recv()]
        get = self.mpq.get if self.transport == "mp.Queue" else self.ffq.get
        return lambda: [get()]

    def latencies(self, n: int, warmup: int) -> np.ndarray:
        out = [0] * (n + warmup)
        clock = time.perf_counter_ns
        from_bytes = int.from_bytes
        if self.transport == "ring-batch":
            recv = self.receiver()
            i = 0
            while i < n + warmup:
                msgs = recv()
                now = clock()
                for msg in msgs:
                    out[i] = now - from_bytes(msg[:8], "little")
                    i += 1
        else:
            # The transport's own blocking receive, and the clock read right after it.
            if self.transport == "ring":
                get = self.r.read_blocking
            elif self.transport == "zmq":
                get = self.sock.recv
            else:
                get = self.mpq.get if self.transport == "mp.Queue" else self.ffq.get
            for i in range(n + warmup):
                msg = get()
                out[i] = clock() - from_bytes(msg[:8], "little")
        return np.array(out[warmup:], dtype=np.int64)

    def count(self, n: int) -> float:
        """Receive ``n`` messages; msgs/s from the first arrival to the last."""
        got = 0
        if self.transport == "ring":
            read = self.r.read
            while read() is None:
                pass
            t0 = time.perf_counter()
            got = 1
            while got < n:
                if read() is not None:
                    got += 1
        elif self.transport == "ring-batch":
            rm = self.r.read_many
            while got == 0:
                got = len(rm(1024))
            t0 = time.perf_counter()
            while got < n:
                got += len(rm(1024))
        else:
            recv = self.receiver()
            recv()
            t0 = time.perf_counter()
            got = 1
            while got < n:
                got += len(recv())
        return (n - 1) / (time.perf_counter() - t0)


def producer(conn, mpq, ffq) -> None:
    while (cmd := conn.recv()) is not None:
        kind, transport, size, n, tag = cmd
        tx = Tx(transport, tag, mpq, ffq)
        conn.send("open")
        conn.recv()                                   # consumer is attached
        tx.ready()
        if kind == "latency":
            tx.paced(size, n)
        else:
            tx.blast(b"m" * size, n)
        conn.send("done")
        conn.recv()                                   # consumer has everything
        tx.close()


def consumer(conn, mpq, ffq) -> None:
    while (cmd := conn.recv()) is not None:
        kind, transport, size, n, warmup, tag = cmd
        rx = Rx(transport, tag, mpq, ffq)
        conn.send("ready")
        result = rx.latencies(n, warmup) if kind == "latency" else rx.count(n)
        conn.send(result)
        rx.close()


# ---- orchestration -----------------------------------------------------------------------

def run_one(pc, cc, kind: str, transport: str, size: int, n: int, warmup: int, tag: str):
    total = n + warmup if kind == "latency" else n
    pc.send((kind, transport, size, total, tag))
    assert pc.recv() == "open"
    cc.send((kind, transport, size, n if kind == "latency" else total,
             warmup if kind == "latency" else 0, tag))
    assert cc.recv() == "ready"
    pc.send("go")
    result = cc.recv()
    assert pc.recv() == "done"
    pc.send("finish")
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--long", action="store_true", help="more rounds and messages")
    ap.add_argument("--rounds", type=int, help="override the number of rounds")
    ap.add_argument("--transports", default=",".join(TRANSPORTS))
    ap.add_argument("--json", help="also write the raw per-round numbers here")
    args = ap.parse_args(argv)
    p = plan(args.long)
    if args.rounds:
        p.rounds = args.rounds
    transports = args.transports.split(",")

    import faster_fifo
    ctx = mp.get_context("spawn")
    mpq = ctx.Queue()
    ffq = faster_fifo.Queue(max_size_bytes=64 << 20)
    pc, pchild = ctx.Pipe()
    cc, cchild = ctx.Pipe()
    prod = ctx.Process(target=producer, args=(pchild, mpq, ffq), daemon=True)
    cons = ctx.Process(target=consumer, args=(cchild, mpq, ffq), daemon=True)
    prod.start()
    cons.start()

    lat: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    thr: dict[tuple[str, int], list[float]] = {}
    started = time.monotonic()
    try:
        for rnd in range(p.rounds):
            for size in SIZES:
                for t in transports:
                    tag = f"{t}-{size}-{rnd}"
                    d = run_one(pc, cc, "latency", t, size, p.latency_msgs, p.warmup, tag + "-l")
                    q = np.percentile(d, [50, 90, 99]) / 1000.0
                    lat.setdefault((t, size), []).append(tuple(q))
                    rate = run_one(pc, cc, "throughput", t, size, p.throughput_msgs[t], 0, tag + "-t")
                    thr.setdefault((t, size), []).append(rate)
            print(f"round {rnd + 1}/{p.rounds} done ({time.monotonic() - started:.0f} s)",
                  file=sys.stderr)
    finally:
        pc.send(None)
        cc.send(None)
        prod.join(10)
        cons.join(10)

    def cell(values: list[float], fmt: str) -> str:
        med = statistics.median(values)
        return f"{med:{fmt}} ({min(values):{fmt}}–{max(values):{fmt}})"

    print(f"\n{p.rounds} interleaved rounds; latency at {RATE // 1000}k msgs/s paced, "
          f"{p.latency_msgs} msgs/round; median (min–max over rounds)\n")
    print("| transport | size | p50 µs | p90 µs | p99 µs | throughput M msgs/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for size in SIZES:
        for t in transports:
            rows = lat[(t, size)]
            print(f"| {t} | {size} B | {cell([r[0] for r in rows], '.2f')} | "
                  f"{cell([r[1] for r in rows], '.2f')} | {cell([r[2] for r in rows], '.2f')} | "
                  f"{cell([x / 1e6 for x in thr[(t, size)]], '.2f')} |")
    if "faster-fifo" in transports:
        print("\nRatios against faster-fifo (medians): p50 = its p50 / ours, throughput = ours / its\n")
        print("| transport | size | p50 ratio | throughput ratio |")
        print("|---|---:|---:|---:|")
        for size in SIZES:
            ff_p50 = statistics.median(r[0] for r in lat[("faster-fifo", size)])
            ff_thr = statistics.median(thr[("faster-fifo", size)])
            for t in transports:
                if t == "faster-fifo":
                    continue
                p50 = statistics.median(r[0] for r in lat[(t, size)])
                print(f"| {t} | {size} B | {ff_p50 / p50:.3g}x | "
                      f"{statistics.median(thr[(t, size)]) / ff_thr:.3g}x |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"latency_us": {f"{t}/{s}": v for (t, s), v in lat.items()},
                       "throughput": {f"{t}/{s}": v for (t, s), v in thr.items()}}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
