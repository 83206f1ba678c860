"""The /ws control protocol against a live server fed by a Kraken replay: acknowledgements,
errors that leave the connection usable, unsubscribe taking effect in order; the slow-client
deadline at low traffic."""
from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

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


async def test_slow_client_deadline_at_low_traffic(fixtures_dir: Path,
                                                   loopback_socket: socket.socket) -> None:
    """A client that stops reading is closed (1008) by the time-based deadline even when the
    traffic is far too low for its queue ever to overflow (~20 messages/s against a queue of
    4096: the old queue-only rule needed minutes).  Another client is unaffected."""
    async with serve("kraken", [fixtures_dir / "generated" / "kraken-clean.jsonl"],
                     speed=0.5) as replay:
        config = load_config({"exchanges": "kraken", "symbols": "BTC-USD",
                              "kraken_ws_url": replay.ws_url, "ws_slow_client_s": "1.0"}, env={})
        runtime = Runtime(config, sock=loopback_socket)
        await runtime.open()
        try:
            url = f"ws://127.0.0.1:{loopback_socket.getsockname()[1]}/ws"
            subscribe = orjson.dumps({"op": "subscribe", "channels": [BOOK]}).decode()
            async with connect(url) as healthy:
                await healthy.send(subscribe)
                await _next(healthy, "snapshot", timeout=10)
                # The stalled client: a 4 KiB receive buffer, and after the subscription it never
                # reads (its library stops taking data from the socket after one message).
                raw = socket.socket()
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                raw.connect(loopback_socket.getsockname())
                stalled = await connect(url, sock=raw, max_queue=1)
                await stalled.send(subscribe)
                t0 = time.monotonic()
                async with asyncio.timeout(10):
                    while runtime.ws.stats["deadline_closed"] == 0:
                        await asyncio.sleep(0.05)
                closed_after = time.monotonic() - t0
                assert closed_after < 5.0, closed_after
                assert runtime.ws.stats["overflow_closed"] == 0      # the clock did it, not the queue
                assert runtime.ws.stats["slow_closed"] == 1
                assert runtime.health()["websocket"]["slow_clients_closed"] == 1
                # The healthy client keeps receiving deltas in sequence.
                seq = (await _next(healthy, "delta"))["sequence"]
                for _ in range(5):
                    nxt = (await _next(healthy, "delta"))["sequence"]
                    assert nxt == seq + 1
                    seq = nxt
                # The stalled client, reading again, finds its backlog and then the 1008 close.
                with contextlib.suppress(ConnectionClosed):
                    async with asyncio.timeout(10):
                        async for _ in stalled:
                            pass
                code, reason = stalled.close_code, stalled.close_reason or ""
                assert code == 1008, (code, reason)
                assert "took nothing for" in reason and "KiB unsent" in reason, reason
            metrics = runtime.metrics.render()[0].decode()
            assert 'alphapulse_websocket_disconnects_total{reason="slow_client"} 1.0' in metrics
        finally:
            await runtime.close()
