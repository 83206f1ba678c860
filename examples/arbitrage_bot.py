"""Print cross-exchange arbitrage opportunities as they open and close, with their latency.

Start a server (offline demo: two exchanges replayed, Coinbase priced above Kraken), then::

    alphapulse-server --demo
    python examples/arbitrage_bot.py                      # BTC-USD on ws://127.0.0.1:3001/ws
    python examples/arbitrage_bot.py ETH-USD --url ws://host:3001/ws

It subscribes to the server's ``arbitrage:<symbol>`` WebSocket channel (after printing what is
already open, from ``GET /arbitrage/<symbol>``).  Two latencies are shown for each opening:
``detect`` is the server's own (from receiving the exchange frame that opened it to
detection), ``here`` adds the trip to this process (same host: same clock).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.request
from typing import Any

import websockets


def show(opp: dict[str, Any], live: bool = True) -> None:
    """One line per event: what to buy where, what to sell where, the edge, the timing."""
    route = (f"{opp['symbol']}: buy {opp['buy_exchange']} @ {opp['buy_price']} "
             f"-> sell {opp['sell_exchange']} @ {opp['sell_price']}")
    if opp["status"] == "open":
        here = (f", here {(time.time_ns() - opp['trigger_ts_recv']) / 1e3:.0f} us" if live
                else " (opened before we connected)")
        print(f"OPEN   #{opp['id']} {route}  size {opp['size']}  "
              f"net {opp['net_bps']:.1f} bps (gross {opp['gross_bps']:.1f}, "
              f"walk {opp['walk_size']} @ {opp['walk_net_bps']:.1f} bps)  "
              f"detect {opp['latency_s'] * 1e6:.0f} us{here}", flush=True)
    else:
        print(f"CLOSED #{opp['id']} {route}  after {opp['duration_s']:.3f} s "
              f"({opp['close_reason']}; peak net {opp['peak_net_bps']:.1f} bps, "
              f"{opp['updates']} updates)", flush=True)


def already_open(ws_url: str, symbol: str) -> list[dict[str, Any]]:
    """Opportunities open right now, from the HTTP API on the same host and port."""
    http = ws_url.replace("ws://", "http://").replace("wss://", "https://").rsplit("/ws", 1)[0]
    with urllib.request.urlopen(f"{http}/arbitrage/{symbol}?limit=50", timeout=5) as resp:
        data = json.load(resp)["data"]
    return [opp for opp in data if opp["status"] == "open"]


async def main(ws_url: str, symbol: str) -> None:
    while True:
        try:
            async with websockets.connect(ws_url) as ws:
                await ws.send(json.dumps({"op": "subscribe", "channels": [f"arbitrage:{symbol}"]}))
                for opp in already_open(ws_url, symbol):
                    show(opp, live=False)
                async for message in ws:
                    msg = json.loads(message)
                    if msg.get("type") == "arbitrage":
                        show(msg)
                    elif msg.get("type") == "error":
                        raise SystemExit(f"server refused: {msg}")
        except (OSError, websockets.ConnectionClosed) as exc:
            print(f"connection lost ({exc}); retrying in 1 s", flush=True)
            await asyncio.sleep(1.0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("symbol", nargs="?", default="BTC-USD")
    parser.add_argument("--url", default="ws://127.0.0.1:3001/ws")
    args = parser.parse_args()
    try:
        asyncio.run(main(args.url, args.symbol))
    except KeyboardInterrupt:
        pass
