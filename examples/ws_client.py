"""A remote client: subscribe over WebSocket, keep a verified book, print arbitrage signals.

    alphapulse-server --demo
    python examples/ws_client.py                               # kraken BTC-USD + arbitrage
    python examples/ws_client.py --exchange coinbase --url ws://127.0.0.1:3001/ws

The book is proved, not trusted: every delta must continue the previous sequence (else the
client asks for a fresh snapshot), and every few seconds the book's CRC32 is compared with the
server's (``GET /book/{symbol}`` returns the checksum at a sequence).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.request

import websockets

from alphapulse import OrderBook


def server_checksum(http: str, exchange: str, symbol: str) -> tuple[int, int]:
    url = f"{http}/book/{symbol}?exchange={exchange}&depth=10"
    with urllib.request.urlopen(url, timeout=2) as resp:
        body = json.load(resp)
    return body["sequence"], body["checksum"]


async def run(url: str, exchange: str, symbol: str, seconds: float) -> None:
    channel = f"book:{exchange}:{symbol}"
    http = url.replace("ws://", "http://").rsplit("/ws", 1)[0]
    book: OrderBook | None = None
    verified = mismatched = 0
    next_check = time.monotonic() + 2
    deadline = time.monotonic() + seconds if seconds else float("inf")
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"op": "subscribe",
                                  "channels": [channel, f"arbitrage:{symbol}"]}))
        while time.monotonic() < deadline:
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=1)
            except TimeoutError:
                continue
            messages = json.loads(raw)
            for msg in messages if isinstance(messages, list) else [messages]:
                kind = msg.get("type")
                if kind == "snapshot":
                    book = OrderBook(symbol, msg["price_precision"], msg["size_precision"],
                                     exchange=exchange)
                    book.snapshot(msg["bids"], msg["asks"])
                    seq = msg["sequence"]
                    print(f"snapshot seq={seq} bid={book.best_bid()} ask={book.best_ask()}")
                elif kind == "delta" and book is not None:
                    if msg["sequence"] != seq + 1:
                        print(f"sequence break {seq} -> {msg['sequence']}: asking for a snapshot")
                        book = None
                        await ws.send(json.dumps({"op": "snapshot", "channel": channel}))
                        continue
                    book.apply(msg["changes"])
                    seq = msg["sequence"]
                elif kind == "gap":
                    print(f"gap on {msg['channel']}: {msg['reason']} (the server resyncs)")
                elif kind == "arbitrage":
                    print(f"arbitrage {msg['status']}: buy {msg['buy_exchange']} "
                          f"{msg['buy_price']} sell {msg['sell_exchange']} {msg['sell_price']} "
                          f"net {msg['net_bps']:.1f} bps")
            if book is not None and time.monotonic() >= next_check:
                next_check = time.monotonic() + 2
                # Compare only when the server is at our sequence; otherwise try next time.
                server_seq, crc = await asyncio.to_thread(server_checksum, http, exchange, symbol)
                if server_seq == seq:
                    ok = crc == book.checksum()
                    verified += ok
                    mismatched += not ok
                    print(f"seq={seq} bid={book.best_bid()} ask={book.best_ask()} "
                          f"checksum {'matches' if ok else 'DIFFERS'} ({crc})")
    print(f"checksums verified: {verified}, mismatched: {mismatched}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="ws://127.0.0.1:3001/ws")
    parser.add_argument("--exchange", default="kraken")
    parser.add_argument("--symbol", default="BTC-USD")
    parser.add_argument("--seconds", type=float, default=0, help="stop after N s (0: never)")
    args = parser.parse_args()
    asyncio.run(run(args.url, args.exchange, args.symbol, args.seconds))


if __name__ == "__main__":
    main()
