"""Trade store and HTTP API: ingest cost, memory, OHLCV per request, request latency.

    .venv/bin/python benchmarks/http_api_bench.py [--trades 100000] [--repeat 5] [--requests 2000]

Part 1, ingest.  ``TradeStore.add`` (packed record + five incremental OHLCV bars with exact
Decimal arithmetic) per trade, and the memory each stored trade costs (tracemalloc), against the
anchor a plain implementation would use: ``Trade`` objects in a ``deque(maxlen)`` (no bars).

Part 2, OHLCV per request.  Ours: read the incrementally maintained 1m bars (``limit=1000``).
Anchor: the original service's approach, rebuilding bars from up to 10,000 stored trades on each
request (here with exact Decimals, as correctness requires).

Part 3, HTTP.  The real app in uvicorn on a loopback socket, in its own process, and one
keep-alive client sending requests back to back; p50/p99 latency per endpoint in ms and the
resulting requests/s.  Each figure is a median over ``--repeat`` runs.
"""
from __future__ import annotations

import argparse
import collections
import http.client
import socket
import statistics
import subprocess
import sys
import time
import tracemalloc
from decimal import Decimal
from typing import Any

import uvicorn

from alphapulse import OrderBook
from alphapulse.events import Trade
from alphapulse.server.app import build_app
from alphapulse.server.metrics import Metrics
from alphapulse.server.store import INTERVALS, TradeStore

BASE = 1_800_000_000 * 10**9


def make_trades(n: int) -> list[Trade]:
    return [Trade("coinbase", "BTC-USD", "BTC-USD", f"{96000 + i % 97}.{i % 100:02d}",
                  f"0.{(i * 7919) % 10**8:08d}", "buy" if i % 3 else "sell", str(10**9 + i),
                  BASE + i * 50_000_000, BASE + i * 50_000_000 + 30_000) for i in range(n)]


def ingest(trades: list[Trade], repeat: int) -> dict[str, float]:
    ours, anchor = [], []
    for _ in range(repeat):
        store = TradeStore(len(trades))
        t0 = time.perf_counter()
        for t in trades:
            store.add(t)
        ours.append((time.perf_counter() - t0) / len(trades) * 1e6)
        ring: collections.deque[Trade] = collections.deque(maxlen=len(trades))
        t0 = time.perf_counter()
        for t in trades:
            ring.append(t)
        anchor.append((time.perf_counter() - t0) / len(trades) * 1e6)

    # Memory: the store keeps packed records (the Trade objects can go); the anchor keeps the
    # Trade objects themselves, built here from fresh strings as a collector would build them.
    def fresh(t: Trade) -> Trade:
        return Trade(t.exchange, t.symbol, t.native_symbol, (t.price + "_")[:-1],
                     (t.size + "_")[:-1], t.side, (t.trade_id + "_")[:-1], t.ts_event + 1,
                     t.ts_recv + 1)

    tracemalloc.start()
    store = TradeStore(len(trades))
    base = tracemalloc.get_traced_memory()[0]
    for t in trades:
        store.add(t)
    ours_bytes = (tracemalloc.get_traced_memory()[0] - base) / len(trades)
    tracemalloc.stop()
    del store
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    ring = collections.deque((fresh(t) for t in trades), maxlen=len(trades))
    anchor_bytes = (tracemalloc.get_traced_memory()[0] - base) / len(trades)
    tracemalloc.stop()
    del ring
    return {"ours_us": statistics.median(ours), "anchor_us": statistics.median(anchor),
            "ours_bytes": ours_bytes, "anchor_bytes": anchor_bytes}


def recompute_bars(trades: list[Trade], width: int) -> list[tuple[Any, ...]]:
    """The original's per-request approach: group the stored trades into bars again."""
    bars: dict[int, list[Any]] = {}
    for t in trades:
        start = t.ts_event - t.ts_event % width
        p, s = Decimal(t.price), Decimal(t.size)
        bar = bars.get(start)
        if bar is None:
            bars[start] = [p, p, p, p, s, 1]
        else:
            bar[1] = max(bar[1], p)
            bar[2] = min(bar[2], p)
            bar[3] = p
            bar[4] += s
            bar[5] += 1
    return [(k, *v) for k, v in sorted(bars.items())]


def ohlcv(trades: list[Trade], repeat: int) -> dict[str, float]:
    store = TradeStore(len(trades))
    for t in trades:
        store.add(t)
    last_10k = store.trades("coinbase", "BTC-USD", limit=10_000)
    ours, anchor = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(100):
            bars = store.ohlcv("coinbase", "BTC-USD", "1m", limit=1000)
            [b.to_json("1m") for b in bars]
        ours.append((time.perf_counter() - t0) / 100 * 1e3)
        t0 = time.perf_counter()
        recompute_bars(store.trades("coinbase", "BTC-USD", limit=10_000), INTERVALS["1m"])
        anchor.append((time.perf_counter() - t0) * 1e3)
    assert last_10k
    return {"ours_ms": statistics.median(ours), "anchor_ms": statistics.median(anchor)}


class _State:
    def __init__(self, trades: list[Trade]) -> None:
        self.store = TradeStore()
        for t in trades:
            self.store.add(t)
        self.metrics = Metrics()
        self.metrics.bind_store(self.store.sizes)
        self.exchanges, self.symbols = ("coinbase",), ("BTC-USD",)
        self.arbitrage = self.ws_endpoint = None
        book = OrderBook("BTC-USD", 2, 8, exchange="coinbase")
        book.snapshot([(f"{96000 - i * 0.01:.2f}", "0.5") for i in range(200)],
                      [(f"{96001 + i * 0.01:.2f}", "0.5") for i in range(200)])
        self._books = {"coinbase": {"BTC-USD": book}}

    def books(self, exchange: str) -> dict[str, OrderBook]:
        return self._books.get(exchange, {})

    def consolidated(self, symbol: str) -> None:
        return None

    def health(self) -> dict[str, Any]:
        return {"healthy": True}

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


def serve(fd: int, n_trades: int) -> None:
    """The server process: the app over a ``_State`` on the inherited listening socket."""
    uvicorn.run(build_app(_State(make_trades(n_trades))), fd=fd, log_level="warning",
                access_log=False)


def http_latency(trades: list[Trade], requests: int, repeat: int) -> dict[str, tuple[float, ...]]:
    # The server runs in its own process: a client thread in the same interpreter would share
    # the GIL with the event loop and measure mostly lock hand-offs.
    # uvicorn wraps an inherited fd as AF_UNIX, so asyncio never sets TCP_NODELAY on the
    # connections; set it on the listener (Linux copies it to accepted sockets), else Nagle +
    # delayed ACK add ~40 ms to every response written in two parts (headers, body).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-fd", str(sock.fileno()), "--trades", str(len(trades))],
        pass_fds=[sock.fileno()])
    deadline = time.monotonic() + 60
    while True:
        try:
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            probe.request("GET", "/health")
            probe.getresponse().read()
            probe.close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the server process did not start") from None
            time.sleep(0.1)
    urls = {
        "/health": "/health",
        "/trades/{symbol}/recent (limit 100)": "/trades/BTC-USD/recent?limit=100",
        "/trades/{symbol} (limit 10000)": "/trades/BTC-USD?limit=10000",
        "/ohlcv/{symbol} (1m, limit 1000)": "/ohlcv/BTC-USD?interval=1m&limit=1000",
        "/book/{symbol} (depth 10)": "/book/BTC-USD?depth=10",
        "/trades/{symbol}?limit=0 (400)": "/trades/BTC-USD?limit=0",
        "/metrics": "/metrics",
    }
    results: dict[str, tuple[float, ...]] = {}
    try:
        for name, url in urls.items():
            n = requests if "10000" not in url else max(20, requests // 50)
            p50s, p99s, rates = [], [], []
            for _ in range(repeat):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                samples = []
                t_all = time.perf_counter()
                for _ in range(n):
                    t0 = time.perf_counter()
                    conn.request("GET", url)
                    response = conn.getresponse()
                    response.read()
                    samples.append(time.perf_counter() - t0)
                rates.append(n / (time.perf_counter() - t_all))
                conn.close()
                samples.sort()
                p50s.append(samples[len(samples) // 2] * 1e3)
                p99s.append(samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1e3)
            results[name] = (statistics.median(p50s), statistics.median(p99s),
                             statistics.median(rates))
    finally:
        proc.terminate()
        proc.wait(10)
        sock.close()
    return results


def print_ingest(r: dict[str, float], args: argparse.Namespace) -> None:
    print(f"## Trade store ingest ({args.trades:,} trades, median of {args.repeat})\n")
    print("| | per trade | memory per stored trade |")
    print("|---|---:|---:|")
    print(f"| TradeStore.add (packed + 5 exact OHLCV bars) | {r['ours_us']:.2f} µs | "
          f"{r['ours_bytes']:.0f} B |")
    print(f"| anchor: Trade objects in a deque (no bars) | {r['anchor_us']:.2f} µs | "
          f"{r['anchor_bytes']:.0f} B |")
    print(f"| ratio | {r['ours_us'] / r['anchor_us']:.1f}x the time | "
          f"{r['ours_bytes'] / r['anchor_bytes']:.2f}x the memory |\n")


def print_ohlcv(o: dict[str, float]) -> None:
    print("## OHLCV per request (1m bars)\n")
    print("| | per request |")
    print("|---|---:|")
    print(f"| incremental bars, limit 1000 | {o['ours_ms']:.3f} ms |")
    print(f"| anchor: recompute from 10,000 stored trades (original approach) | "
          f"{o['anchor_ms']:.2f} ms |")
    print(f"| ratio | {o['anchor_ms'] / o['ours_ms']:.0f}x faster |\n")


def print_http(h: dict[str, tuple[float, ...]], args: argparse.Namespace) -> None:
    print(f"## HTTP over loopback (uvicorn, one keep-alive client, median of {args.repeat})\n")
    print("| endpoint | p50 ms | p99 ms | req/s |")
    print("|---|---:|---:|---:|")
    for name, (p50, p99, rate) in h.items():
        print(f"| {name} | {p50:.2f} | {p99:.2f} | {rate:,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trades", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--parts", default="ingest,ohlcv,http",
                        help="comma-separated subset of ingest, ohlcv, http")
    parser.add_argument("--serve-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fd is not None:
        serve(args.serve_fd, args.trades)
        return
    trades = make_trades(args.trades)

    parts = set(args.parts.split(","))
    if "ingest" in parts:
        print_ingest(ingest(trades, args.repeat), args)
    if "ohlcv" in parts:
        print_ohlcv(ohlcv(trades, args.repeat))
    if "http" in parts:
        print_http(http_latency(trades, args.requests, args.repeat), args)


if __name__ == "__main__":
    main()
