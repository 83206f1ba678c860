"""WebSocket fan-out under load: replay servers -> server -> N WebSocket clients.

The server (collectors + hub + uvicorn, one process) runs here; the clients run in a second
process so they do not share the server's event loop.  Every client subscribes to the book
channels of the chosen exchanges and records, for each delta, ``time.time_ns() - ts_recv``
(frame receipt at the server -> JSON decoded at the client; same host clock).

    .venv/bin/python benchmarks/ws_fanout.py --clients 100 --speed 20 [--batch] \
        [--exchanges kraken,coinbase,binanceus] [--seconds 8]

Prints one markdown row: clients, book messages/s into the server, deltas delivered/s in
total, delivery latency p50/p99/max, slow clients closed.
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import time
from pathlib import Path

import numpy as np
import orjson

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "generated"
CAPTURES = {"kraken": "kraken-clean", "coinbase": "coinbase-clean",
            "binanceus": "binanceus-clean"}


def _clients(port: int, n: int, channels: list[str], batch: bool, seconds: float,
             out: multiprocessing.Queue) -> None:
    from websockets.asyncio.client import connect

    async def one(lat: list[int]) -> None:
        url = f"ws://127.0.0.1:{port}/ws" + ("?batch=1" if batch else "")
        async with connect(url, max_size=1 << 24, max_queue=None) as ws:
            await ws.send(orjson.dumps({"op": "subscribe", "channels": channels}).decode())
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.5)
                except asyncio.TimeoutError:
                    continue
                now = time.time_ns()
                msg = orjson.loads(raw)
                for m in msg if isinstance(msg, list) else (msg,):
                    if m.get("type") == "delta":
                        lat.append(now - m["ts_recv"])

    async def main() -> None:
        lats: list[list[int]] = [[] for _ in range(n)]
        await asyncio.gather(*(one(lat) for lat in lats), return_exceptions=True)
        out.put([x for lat in lats for x in lat])

    asyncio.run(main())


async def run(args: argparse.Namespace) -> None:
    from alphapulse.replay import serve
    from alphapulse.server.config import load_config
    from alphapulse.server.runtime import Runtime

    exchanges = args.exchanges.split(",")
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    replays = []
    flags = {"exchanges": args.exchanges, "symbols": "BTC-USD", "log_level": "warning"}
    for ex in exchanges:
        server = serve(ex, [FIXTURES / f"{CAPTURES[ex]}.jsonl"], speed=args.speed)
        await server.start()
        replays.append(server)
        flags[f"{ex}_ws_url"] = server.ws_url
        if ex == "binanceus":
            flags["binanceus_rest_url"] = server.rest_url
    runtime = Runtime(load_config(flags, env={}), sock=sock)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    channels = [f"book:{ex}:BTC-USD" for ex in exchanges]
    proc = ctx.Process(target=_clients, args=(port, args.clients, channels, args.batch,
                                              args.seconds, out))
    await runtime.open()
    proc.start()
    events0 = runtime.hub.events
    sent0 = runtime.ws.stats["messages_out"]
    t0 = time.monotonic()
    lat = np.array(await asyncio.to_thread(out.get), dtype=np.int64) / 1e6
    elapsed = time.monotonic() - t0
    ingested = runtime.hub.events - events0
    sent = runtime.ws.stats["messages_out"] - sent0
    await asyncio.to_thread(proc.join)
    await runtime.close()
    for r in replays:
        await r.close()
    if len(lat) == 0:
        print("no deltas delivered")
        return
    print(f"| {args.clients} | {'yes' if args.batch else 'no'} | {ingested / elapsed:,.0f} | "
          f"{sent / elapsed:,.0f} | {len(lat) / elapsed:,.0f} | {np.percentile(lat, 50):.2f} | "
          f"{np.percentile(lat, 99):.2f} | {lat.max():.1f} | "
          f"{runtime.ws.stats['overflow_closed']} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--speed", type=float, default=20.0)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--batch", action="store_true")
    ap.add_argument("--exchanges", default="kraken")
    args = ap.parse_args()
    print("| clients | batch | events/s in | messages sent/s | deltas received/s | p50 ms | "
          "p99 ms | max ms | closed slow |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
