"""Server ingest pipeline: capture frames -> real parser + book -> hub -> every subscriber.

Measures, on one core, how many exchange messages per second the single-process server path
handles (parse, verify, apply, then trade store + OHLCV, arbitrage detector with consolidated
books, WebSocket fan-out, metrics) and the frame-receipt-to-publication latency of each event
(``ts_recv`` -> after the last subscriber), with and without WebSocket subscribers queued.

    .venv/bin/python benchmarks/server_pipeline.py [--repeat 5] [--clients 0,50]

Prints a markdown table.  Subscribed "clients" are in-memory queues (the fan-out's cost,
without sockets); delivery over real sockets is the load script's job.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import numpy as np

from alphapulse.capture import read_frames
from alphapulse.exchanges import get_parser
from alphapulse.server.config import load_config
from alphapulse.server.runtime import Runtime
from alphapulse.server.ws import _Client

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "generated"
CAPTURES = {"kraken": "kraken-clean", "coinbase": "coinbase-clean",
            "binanceus": "binanceus-clean"}


class _NullWs:
    async def send(self, message: object) -> None:   # never called: nobody drains
        pass


def run_once(exchange: str, frames: list[bytes], clients: int) -> tuple[float, np.ndarray]:
    config = load_config({"exchanges": exchange, "symbols": "BTC-USD",
                          "ws_queue_size": "1000000"}, env={})
    runtime = Runtime(config)
    latencies: list[int] = []
    append = latencies.append
    now_ns = time.time_ns

    class Measure:
        """After the last subscriber, as the metrics' own timing."""

        def on_event(self, event: object) -> None:
            ts_recv = getattr(event, "ts_recv", 0)
            if ts_recv:
                append(now_ns() - ts_recv)

    for sub in (runtime.store, runtime.detector, runtime.ws, runtime.metrics, Measure()):
        runtime.hub.subscribe(sub)
    for i in range(clients):
        client = _Client(_NullWs(), 1_000_000)   # type: ignore[arg-type]
        for channel in (f"book:{exchange}:BTC-USD", f"trades:{exchange}:BTC-USD"):
            client.channels[channel] = "json"
            runtime.ws._subs.setdefault(channel, {})[client] = "json"
    parser = get_parser(exchange)(["BTC-USD"], sink=runtime.hub.publish)
    feed = parser.feed
    started = time.perf_counter()
    for frame in frames:
        feed(frame, time.time_ns())
    elapsed = time.perf_counter() - started
    return len(frames) / elapsed, np.array(latencies, dtype=np.int64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--clients", default="0,50")
    args = ap.parse_args()
    print("| exchange | WS clients | messages/s (median) | events | p50 µs | p99 µs | max µs |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for exchange, name in CAPTURES.items():
        frames = read_frames(FIXTURES / f"{name}.jsonl")
        for clients in (int(c) for c in args.clients.split(",")):
            rates, lats = [], []
            for _ in range(args.repeat):
                rate, lat = run_once(exchange, frames, clients)
                rates.append(rate)
                lats.append(lat)
            lat = np.concatenate(lats) / 1000
            print(f"| {exchange} | {clients} | {statistics.median(rates):,.0f} | "
                  f"{len(lats[0]):,} | {np.percentile(lat, 50):.1f} | "
                  f"{np.percentile(lat, 99):.1f} | {lat.max():.0f} |")


if __name__ == "__main__":
    asyncio.run(asyncio.sleep(0))   # a loop exists for asyncio.Event users
    main()
