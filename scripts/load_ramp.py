"""``scripts/load-test ramp``: message-rate ramp into one running server (issue 7 scenario 1).

The load driver is kept off the measured path: each exchange is a paced, looping fake exchange
(``python -m alphapulse.replay.paced``) in its own process, whose looped frames are pre-built
WebSocket frames written in large slices at the asked rate; the server's collectors connect to
those URLs with their normal code path.  The controller (this process) only sets rates over
HTTP, reads the server's counters, and runs a *raw* shared-memory probe: a strategy ring whose
records it does not decode, reading just the header's ``ts_recv`` and ``ts_pub`` (the server's
frame receipt and publication times) of every trade and book record.

For each target rate (messages/s in total, split evenly over the three exchanges, trades
``--trade-share`` of them): warm up, then measure a window: ingested trades/s and book
messages/s (the server's own counters), p50/p99/max receipt-to-publication over every record in
the window, the server's CPU % and RSS (with its children in ``--processes 2``), the driver's
CPU % (replay processes + this one) and the frames the driver could not send on time.  The ramp
stops after the first step whose p99 exceeds the budget or whose ingested rate falls below 90 %
of the target (the server, or the driver, saturated); the highest *sustained* step is the
highest within the budget that ingested at least 97 % of its target.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any

import numpy as np
import psutil

from alphapulse import feed as feedmod
from alphapulse.errors import ProducerGone, RingOverrun
from loadlib import CAPTURES, FIXTURES, Server

SUSTAINED = 0.97       # a step keeps up when it ingests at least this share of the target
# wire.py's record header: magic, type, 3 name lengths, ts_event, ts_recv, ts_pub (int64 LE).
_KIND_AT, _TS_RECV_AT = 1, 13
_TIMES_AT = _TS_RECV_AT + np.arange(16)          # the bytes of ts_recv and ts_pub
_TRADE, _SNAPSHOT, _DELTA = 1, 2, 3
# Between polls of an empty ring.  A wakeup costs ~100 µs of cold caches here whatever it does,
# so the probe reads rarely, a thousand records or so at a time at the rates measured, and
# only copies them (take() decodes them between the windows, so each wakeup stays short).
_POLL_S = 0.02


class RawProbe(threading.Thread):
    """A shared-memory strategy that keeps (ts_recv, ts_pub - ts_recv) of every book/trade
    record, without decoding the records (so it keeps up with the server at any rate)."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.missed = 0
        self._lock = threading.Lock()
        self._batches: list[tuple[bytes, np.ndarray]] = []    # records read, their sizes
        empty = np.empty(0, dtype=np.int64)
        self._kept = empty, empty     # (ts_recv, latency) of records after the last window
        self.stop_flag = threading.Event()
        self.attached = threading.Event()
        self.drained_ns = 0            # time.time_ns() when the ring was last found empty
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:   # noqa: BLE001 - reported by the controller
            self.error = exc
            self.attached.set()

    def _run(self) -> None:
        f = feedmod.attach(self.server.name, ["book:*:*", "trades:*:*"],
                           directory=self.server.shm, wait=60, capacity=1 << 26)
        reader = f._reader        # the raw ring: no decoding (the Feed's own reader)
        buf = bytearray(reader.max_record)      # any record fits: never refused for its size
        view = memoryview(buf)
        lengths = np.empty(1 << 16, dtype=np.int64)
        self.attached.set()
        with f:
            while not self.stop_flag.is_set():
                try:
                    n = reader.read_many_into(buf, lengths)
                except RingOverrun as exc:
                    self.missed += exc.missed
                    continue
                except ProducerGone:
                    return
                if not n:
                    self.drained_ns = time.time_ns()
                    # Poll, never sleep on the ring's futex: a sleeping reader makes the
                    # server's every write a FUTEX_WAKE syscall, which would load the
                    # server with the probe's cost rather than its own.  The times are
                    # stamped by the server, so reading them later changes nothing.
                    time.sleep(_POLL_S)
                    continue
                # Only copied here, decoded by take() between the measured windows.
                sizes = lengths[:n].copy()
                batch = view[:int(sizes.sum())].tobytes()
                with self._lock:
                    self._batches.append((batch, sizes))

    def take(self, t0_ns: int, t1_ns: int) -> np.ndarray:
        """Latencies (ns) of the records received in [t0, t1]; forgets everything before t1."""
        deadline = time.monotonic() + 1.0
        while self.drained_ns <= t1_ns and self.is_alive() and time.monotonic() < deadline:
            time.sleep(_POLL_S)           # what the server published by t1 has been read
        with self._lock:
            batches, self._batches = self._batches, []
        recv, lat = _receipt_and_latency(
            np.frombuffer(b"".join(b for b, _ in batches), dtype=np.uint8),
            np.concatenate([sizes for _, sizes in batches] or [np.empty(0, np.int64)]))
        recv, lat = np.concatenate([self._kept[0], recv]), np.concatenate([self._kept[1], lat])
        keep = recv > t1_ns
        self._kept = recv[keep], lat[keep]
        return lat[(recv >= t0_ns) & (recv <= t1_ns)]


def _receipt_and_latency(raw: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ts_recv, ts_pub - ts_recv) of the trade and book-delta records among the records packed
    back to back at the start of ``raw`` (``lengths``: their sizes), in whole-array steps."""
    starts = np.cumsum(lengths) - lengths
    kinds = raw[starts + _KIND_AT]
    starts = starts[(kinds == _TRADE) | (kinds == _DELTA)]
    times = raw[starts[:, None] + _TIMES_AT].view("<i8")      # rows: ts_recv, ts_pub
    return times[:, 0], times[:, 1] - times[:, 0]


class Replays:
    """The three paced fake exchanges, one process each."""

    def __init__(self, trade_share: float, tick: float = 0.002) -> None:
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.urls: dict[str, dict[str, str]] = {}
        for exchange, name in CAPTURES.items():
            self.procs[exchange] = subprocess.Popen(
                [sys.executable, "-m", "alphapulse.replay.paced", exchange,
                 str(FIXTURES / f"{name}.jsonl"), "--trade-share", str(trade_share),
                 "--tick", str(tick)],
                stdout=subprocess.PIPE, text=True)
        for exchange, proc in self.procs.items():
            assert proc.stdout is not None
            self.urls[exchange] = json.loads(proc.stdout.readline())

    def _get(self, exchange: str, query: str) -> dict[str, Any]:
        url = f"{self.urls[exchange]['rest_url']}/_load/{query}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.loads(resp.read())   # type: ignore[no-any-return]

    def set_rate(self, total: float) -> None:
        for exchange in self.procs:
            self._get(exchange, f"rate?msgs={total / len(self.procs):.3f}")

    def stats(self) -> dict[str, dict[str, Any]]:
        return {exchange: self._get(exchange, "stats") for exchange in self.procs}

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


_COUNTED = ("alphapulse_trades_processed_total{", "alphapulse_book_updates_total{",
            "alphapulse_gaps_total{", "alphapulse_rejected_messages_total{",
            "alphapulse_exchange_reconnects_total{")


def _counters(port: int) -> tuple[list[float], float]:
    """The server's trades, book updates, gaps, rejected messages and reconnects so far (its
    /metrics), and when they were read."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    totals = [0.0] * len(_COUNTED)
    for line in text.splitlines():
        for i, prefix in enumerate(_COUNTED):
            if line.startswith(prefix):
                totals[i] += float(line.rsplit(" ", 1)[1])
    return totals, time.monotonic()


def _problems(port: int) -> dict[str, float]:
    """Every gap, rejection and reconnect series of the server (labels -> count)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {name: float(value) for name, value in
            (line.rsplit(" ", 1) for line in text.splitlines()
             if line.startswith(_COUNTED[2:]))}


def _wait_looping(replays: Replays, server: Server, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"the server exited with {server.proc.returncode}")
        stats = replays.stats()
        errors = [s["error"] for s in stats.values() if s["error"]]
        if errors:
            raise RuntimeError(errors[0])
        if all(s["looping"] for s in stats.values()):
            return
        time.sleep(0.2)
    raise RuntimeError("the collectors did not finish the first pass of the captures")


def _step(rate: float, replays: Replays, server: Server, probe: RawProbe, warm: float,
          seconds: float) -> dict[str, Any]:
    replays.set_rate(rate)
    time.sleep(warm)
    me = psutil.Process()
    drv0 = replays.stats()
    me0 = me.cpu_times()
    cpu0, cpu_t0 = server.cpu_seconds(), time.monotonic()
    c0 = _counters(server.port)
    t0 = time.time_ns()
    time.sleep(seconds)
    t1 = time.time_ns()
    c1 = _counters(server.port)
    cpu1, cpu_t1 = server.cpu_seconds(), time.monotonic()
    me1 = me.cpu_times()
    drv1 = replays.stats()
    wall = c1[1] - c0[1]
    # CPU over its own interval: a saturated server answers /metrics late, and that wait
    # falls inside the CPU samples but outside the counters' interval.
    cpu_wall = cpu_t1 - cpu_t0
    trades, books, gaps, rejected, reconnects = (b - a for a, b in zip(c0[0], c1[0]))
    lat = probe.take(t0, t1) / 1e3
    driver_cpu = sum(drv1[e]["cpu_s"] - drv0[e]["cpu_s"] for e in drv0) + \
        (me1.user + me1.system - me0.user - me0.system)
    sent = sum((drv1[e]["frames"] - drv0[e]["frames"]) / (drv1[e]["t"] - drv0[e]["t"])
               for e in drv0)
    skipped = sum(drv1[e]["skipped"] - drv0[e]["skipped"] for e in drv0)
    row = {"target": rate,
           "trades_per_s": round(trades / wall), "book_msgs_per_s": round(books / wall),
           "gaps": int(gaps), "rejected": int(rejected), "reconnects": int(reconnects),
           "sent_per_s": round(sent), "skipped": skipped,
           "records": int(lat.size), "probe_missed": probe.missed,
           "p50_us": round(float(np.percentile(lat, 50)), 1) if lat.size else float("nan"),
           "p99_us": round(float(np.percentile(lat, 99)), 1) if lat.size else float("nan"),
           "max_us": round(float(lat.max()), 1) if lat.size else float("nan"),
           "cpu_pct": round(100 * (cpu1 - cpu0) / cpu_wall, 1),
           "driver_cpu_pct": round(100 * driver_cpu / cpu_wall, 1),
           "rss_mib": round(server.rss() / 2**20, 1)}
    row["ingested_per_s"] = row["trades_per_s"] + row["book_msgs_per_s"]
    return row


def ramp(args: argparse.Namespace) -> dict[str, Any]:
    """Run the ramp; print the markdown table; return the raw rows."""
    rates = [float(r) for r in args.rates.split(",")]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir="/dev/shm") as shm, contextlib.ExitStack() as stack:
        replays = Replays(args.trade_share, args.tick_ms / 1000)
        stack.callback(replays.stop)
        extra = ["--processes", str(args.processes)] if args.processes != 1 else []
        server = Server({e: u["ws_url"] for e, u in replays.urls.items()},
                        replays.urls["binanceus"]["rest_url"], shm, f"ramp{os.getpid()}", extra)
        stack.callback(server.stop)
        probe = RawProbe(server)
        probe.start()
        stack.callback(probe.stop_flag.set)
        _wait_looping(replays, server)
        if not probe.attached.wait(60) or probe.error is not None:
            raise RuntimeError(f"the probe could not attach: {probe.error!r}")
        for rate in rates:
            row = _step(rate, replays, server, probe, args.warmup, args.seconds)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            if row["p99_us"] > args.budget_us or row["ingested_per_s"] < 0.9 * rate:
                break
        replays.set_rate(0)
        problems = _problems(server.port)
        if problems:
            print(f"server gaps/rejections/reconnects: {problems}", file=sys.stderr)
    # Sustained: within the latency budget and keeping up (a server that ingests less than
    # what is sent is accumulating a backlog in the socket buffers, whatever its p99 says).
    ok = [r for r in rows if r["p99_us"] <= args.budget_us
          and r["ingested_per_s"] >= SUSTAINED * r["target"]]
    best = max(ok, key=lambda r: r["ingested_per_s"]) if ok else None
    mode = "two processes" if args.processes == 2 else "one process"
    print(f"Server: {mode}; trade share {args.trade_share:g}; {args.seconds:g} s per step\n")
    print("| target msgs/s | ingested % | trades/s | book msgs/s | p50 µs | p99 µs | max µs "
          "| server CPU % | RSS MiB | driver CPU % |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['target']:,.0f} | {100 * r['ingested_per_s'] / r['target']:.1f} | "
              f"{r['trades_per_s']:,} | {r['book_msgs_per_s']:,} | "
              f"{r['p50_us']} | {r['p99_us']} | {r['max_us']:,} | {r['cpu_pct']} | "
              f"{r['rss_mib']} | {r['driver_cpu_pct']} |")
    if best:
        print(f"\nhighest sustained with p99 <= {args.budget_us:g} µs: {best['trades_per_s']:,} "
              f"trades/s + {best['book_msgs_per_s']:,} book msgs/s "
              f"(target {best['target']:,.0f} msgs/s)")
    return {"processes": args.processes, "trade_share": args.trade_share, "steps": rows,
            "best": best, "problems": problems}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rates", default="5000,10000,20000,40000,60000,80000",
                   help="target messages/s in total, one step each")
    p.add_argument("--trade-share", type=float, default=1 / 6,
                   help="fraction of the messages that are trades (1/6: 10k of 60k)")
    p.add_argument("--seconds", type=float, default=5.0, help="measured window per step")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before each window")
    p.add_argument("--budget-us", type=float, default=1000.0)
    p.add_argument("--tick-ms", type=float, default=2.0,
                   help="the fake exchanges write what is due every this many ms")
    p.add_argument("--processes", type=int, choices=(1, 2), default=1,
                   help="the server's --processes (2: collectors in their own process)")
