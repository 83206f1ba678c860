"""The /ws control protocol against a live server fed by a Kraken replay: acknowledgements,
errors that leave the connection usable, unsubscribe taking effect in order."""
from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

from alphapulse.replay import serve
from alphapulse.server.config import load_config
from alphapulse.server.runtime import Runtime

BOOK = "book:kraken:BTC-USD"


async def _next(ws: ClientConnection, kind: str, timeout: float = 5) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            msg = orjson.loads(await ws.recv())
            if msg["type"] == kind:
                return msg


async def test_control_messages_and_unsubscribe(fixtures_dir: Path,
                                                loopback_socket: socket.socket) -> None:
    async with serve("kraken", [fixtures_dir / "generated" / "kraken-clean.jsonl"],
                     speed=40.0) as replay:
        config = load_config({"exchanges": "kraken", "symbols": "BTC-USD,ETH-USD",
                              "kraken_ws_url": replay.ws_url}, env={})
        runtime = Runtime(config, sock=loopback_socket)
        await runtime.open()
        try:
            port = loopback_socket.getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
                await ws.send('{"op": "ping", "id": 42}')
                assert (await _next(ws, "pong"))["id"] == 42
                for bad, reason in [("not json", "bad_json"), ("[1, 2]", "bad_message"),
                                    ('{"op": "dance"}', "bad_op"),
                                    ('{"op": "subscribe"}', "bad_channels"),
                                    ('{"op": "subscribe", "channels": ["book:kraken"]}',
                                     "bad_channel"),
                                    ('{"op": "subscribe", "channels": ["trades:kraken:DOGE-USD"]}',
                                     "bad_channel"),
                                    ('{"op": "subscribe", "channels": ["bbo:BTC-USD"], '
                                     '"encoding": "xml"}', "bad_encoding"),
                                    ('{"op": "options", "batch": "yes"}', "bad_option"),
                                    ('{"op": "snapshot", "channel": "trades:kraken:BTC-USD"}',
                                     "bad_channel")]:
                    await ws.send(bad)
                    error = await _next(ws, "error")
                    assert error["reason"] == reason, (bad, error)
                    assert error["detail"]
                # Still usable after every error.
                await ws.send(orjson.dumps({"op": "subscribe",
                                            "channels": [BOOK, "trades:kraken:BTC-USD"]}).decode())
                ack = await _next(ws, "subscribed")
                assert ack["channels"] == [BOOK, "trades:kraken:BTC-USD"]
                snapshot = await _next(ws, "snapshot")
                first = (await _next(ws, "delta"))["sequence"]
                assert first == snapshot["sequence"] + 1
                # ETH-USD is configured but the capture has none: the book is not synced yet.
                await ws.send('{"op": "subscribe", "channels": ["book:kraken:ETH-USD"]}')
                assert (await _next(ws, "syncing"))["channel"] == "book:kraken:ETH-USD"

                await ws.send(orjson.dumps({"op": "unsubscribe", "channels": [BOOK]}).decode())
                after_ack = False
                async with asyncio.timeout(20):
                    while True:
                        try:
                            msg = orjson.loads(await asyncio.wait_for(ws.recv(), 0.5))
                        except TimeoutError:
                            if replay.done:
                                break
                            continue
                        if msg["type"] == "unsubscribed":
                            assert msg["channels"] == [BOOK]
                            after_ack = True
                        elif msg["type"] in ("delta", "snapshot"):
                            # In order: nothing of the book follows the acknowledgement.
                            assert not after_ack, msg
                assert after_ack
            assert runtime.ws.stats["messages_in"] == 13
        finally:
            await runtime.close()
