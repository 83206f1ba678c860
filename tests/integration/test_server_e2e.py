"""The whole server on loopback: replay servers on the fixtures -> collectors -> hub -> /ws + HTTP.

A WebSocket client applies snapshot + deltas (JSON for two books, the binary encoding for the
third) and ends with books equal to the server's, checksum for checksum; a stalled client is
closed with 1008 while another keeps receiving every delta in sequence.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import socket
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from alphapulse import OrderBook, wire
from alphapulse.replay import serve
from alphapulse.server.config import load_config
from alphapulse.server.runtime import Runtime

CAPTURES = {"kraken": "kraken-clean", "coinbase": "coinbase-clean",
            "binanceus": "binanceus-clean"}
SPEED = 150.0     # the ~2-3 minute captures play in about a second or two
BOOKS = [f"book:{ex}:BTC-USD" for ex in CAPTURES]


def _truth(fixtures_dir: Path, exchange: str) -> dict[str, Any]:
    return json.loads((fixtures_dir / "generated" / f"{CAPTURES[exchange]}.truth.json").read_text())


@contextlib.asynccontextmanager
async def running_server(fixtures_dir: Path, sock: socket.socket,
                         **settings: str) -> AsyncIterator[tuple[Runtime, list[Any]]]:
    async with contextlib.AsyncExitStack() as stack:
        replays = []
        # The tests' own WebSocket clients share this loop with three replays at 150x and are
        # starved for seconds at a time: generous slow-client limits unless a test sets them.
        flags: dict[str, str] = {"exchanges": ",".join(CAPTURES), "symbols": "BTC-USD",
                                 "port": "0", "ws_slow_client_s": "60",
                                 "ws_queue_size": "65536", **settings}
        for exchange, name in CAPTURES.items():
            server = await stack.enter_async_context(
                serve(exchange, [fixtures_dir / "generated" / f"{name}.jsonl"], speed=SPEED))
            replays.append(server)
            flags[f"{exchange}_ws_url"] = server.ws_url
        flags["binanceus_rest_url"] = replays[-1].rest_url
        runtime = Runtime(load_config(flags, env={}), sock=sock)
        await runtime.open()
        try:
            yield runtime, replays
        finally:
            await runtime.close()


class MirrorClient:
    """Applies what /ws sends to local books and checks continuity on every message."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.books: dict[str, OrderBook] = {}
        self.sequence: dict[str, int] = {}
        self.deltas: dict[str, int] = {}
        self.trades: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.refusals: list[dict[str, Any]] = []
        self.bbo: list[dict[str, Any]] = []

    def on_message(self, raw: str | bytes) -> None:
        if isinstance(raw, bytes):
            delta = wire.decode(raw).delta     # the wire record around Delta.encode()
            channel = f"book:{delta.exchange}:{delta.symbol}"
            if delta.is_snapshot:
                self.books[channel] = OrderBook(delta.symbol, delta.price_precision,
                                                delta.size_precision, exchange=delta.exchange)
            self.books[channel].apply_delta(delta)   # raises SequenceError on a break
            self.sequence[channel] = delta.sequence
            self.deltas[channel] = self.deltas.get(channel, 0) + (not delta.is_snapshot)
            return
        msg = orjson.loads(raw)
        for one in msg if isinstance(msg, list) else [msg]:   # a batch frame is an array
            self._on_json(one)

    def _on_json(self, msg: dict[str, Any]) -> None:
        kind, channel = msg["type"], msg.get("channel", "")
        if kind == "snapshot":
            book = OrderBook(msg["symbol"], msg["price_precision"], msg["size_precision"],
                             exchange=msg["exchange"])
            book.snapshot(msg["bids"], msg["asks"])
            self.books[channel] = book
            self.sequence[channel] = msg["sequence"]
        elif kind == "delta":
            if msg["sequence"] != self.sequence[channel] + 1:
                self.errors.append(f"{channel}: {msg['sequence']} after {self.sequence[channel]}")
            self.books[channel].apply([tuple(c) for c in msg["changes"]])
            self.sequence[channel] = msg["sequence"]
            self.deltas[channel] = self.deltas.get(channel, 0) + 1
        elif kind == "trade":
            self.trades.append(msg)
        elif kind == "error":
            self.refusals.append(msg)
        elif kind == "bbo":
            self.bbo.append(msg)

    async def pump(self, until: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; client at {self.sequence}")
            try:
                self.on_message(await asyncio.wait_for(self.ws.recv(), min(remaining, 0.5)))
            except asyncio.TimeoutError:
                pass


def _in_sync(runtime: Runtime, client: MirrorClient, replays: list[Any]) -> bool:
    if not all(r.done for r in replays):
        return False
    for channel in BOOKS:
        _, exchange, symbol = channel.split(":")
        book = runtime.book(exchange, symbol)
        if book is None or client.sequence.get(channel) != book.sequence:
            return False
    return True


async def test_ws_client_books_match_the_server(fixtures_dir: Path, tmp_path: Path,
                                                loopback_socket: socket.socket) -> None:
    record = tmp_path / "rec"
    async with running_server(fixtures_dir, loopback_socket,
                              record_dir=str(record)) as (runtime, replays):
        port = loopback_socket.getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/ws", max_size=1 << 22) as ws:
            await ws.send(orjson.dumps({"op": "subscribe", "encoding": "json",
                                        "channels": [BOOKS[0], BOOKS[2], "bbo:BTC-USD",
                                                     "trades:kraken:BTC-USD"]}).decode())
            await ws.send(orjson.dumps({"op": "subscribe", "encoding": "binary",
                                        "channels": [BOOKS[1]]}).decode())
            await ws.send('{"op": "subscribe", "channels": ["book:ftx:BTC-USD"]}')
            client = MirrorClient(ws)
            await client.pump(lambda: _in_sync(runtime, client, replays), timeout=30)

            assert client.errors == []
            assert [(r["reason"], r["channel"]) for r in client.refusals] == [
                ("bad_channel", "book:ftx:BTC-USD")]
            assert "unknown exchange 'ftx'" in client.refusals[0]["detail"]
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
                for channel in BOOKS:
                    _, exchange, symbol = channel.split(":")
                    mine = client.books[channel]
                    served = (await http.get(f"/book/{symbol}",
                                             params={"exchange": exchange, "depth": 1000})).json()
                    assert served["sequence"] == client.sequence[channel]
                    assert mine.checksum() == served["checksum"], channel
                    assert mine == runtime.book(exchange, symbol), channel
                    truth = _truth(fixtures_dir, exchange)
                    # Exact decimals (Binance.US books print at 8 decimals, the truth at 2).
                    assert Decimal(mine.best_bid()[0]) == Decimal(truth["final_best_bid"])
                    assert Decimal(mine.best_ask()[0]) == Decimal(truth["final_best_ask"])
                    assert client.deltas[channel] > 100, channel     # it really streamed
                assert client.books[BOOKS[0]].checksum() == _truth(fixtures_dir,
                                                                   "kraken")["final_checksum"]
                # Trades on the channel are the tail of what the store holds, in order.
                stored = (await http.get("/trades/BTC-USD",
                                         params={"exchange": "kraken", "limit": 10000})).json()
                stored_ids = [t["trade_id"] for t in stored["data"]]
            # The consolidated best bid/offer: only changes are sent, and the last one is the
            # best over the three final books.
            assert len(client.bbo) > 10
            tops = [(m["bid"], m["ask"]) for m in client.bbo[1:]]   # [0]: sent on subscribe
            assert all(a != b for a, b in zip(tops, tops[1:]))
            best_bid = max((runtime.book(ex, "BTC-USD").best_bid() for ex in CAPTURES),
                           key=lambda lv: Decimal(lv[0]))
            assert Decimal(client.bbo[-1]["bid"]["price"]) == Decimal(best_bid[0])
            got = [t["trade_id"] for t in client.trades]
            assert got and set(got) <= set(stored_ids)
            assert got == sorted(got, key=int)
            # A fresh snapshot on request carries the current sequence.
            await ws.send(orjson.dumps({"op": "snapshot", "channel": BOOKS[0]}).decode())
            while True:
                msg = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
                if msg["type"] == "snapshot":
                    break
            assert msg["sequence"] == runtime.book("kraken", "BTC-USD").sequence
        assert runtime.ws.stats["messages_out"] > 300
        assert runtime.hub.errors == {}
        frames = {ex: r.frames_sent for ex, r in zip(CAPTURES, replays)}
    # --record: every frame each collector received is in its file, flushed at shutdown.
    for exchange in CAPTURES:
        files = list(record.glob(f"{exchange}-*.jsonl"))
        assert len(files) == 1, files
        lines = files[0].read_bytes().count(b"\n")
        assert lines >= frames[exchange] > 1000, (exchange, lines, frames[exchange])


def _healthy_client(url: str, channels: list[str], out: Any) -> None:
    """Runs in its own process (its own core and loop, as a real remote client would): mirrors
    the books until the stream has been idle for 2 s, then reports what it ended with."""
    async def main() -> dict[str, Any]:
        async with connect(url, max_size=1 << 22) as ws:
            await ws.send(orjson.dumps({"op": "subscribe", "channels": channels}).decode())
            client = MirrorClient(ws)
            while True:
                try:
                    client.on_message(await asyncio.wait_for(ws.recv(), 2.0))
                except asyncio.TimeoutError:
                    if client.sequence:
                        break
            return {"errors": client.errors, "deltas": sum(client.deltas.values()),
                    "books": {c: (client.sequence[c], b.checksum())
                              for c, b in client.books.items()}}

    try:
        out.put(asyncio.run(main()))
    except Exception as exc:   # report, so the test fails with the reason
        out.put({"exception": repr(exc)})


async def test_stalled_client_closed_1008_others_unaffected(
        fixtures_dir: Path, loopback_socket: socket.socket) -> None:
    async with running_server(fixtures_dir, loopback_socket,
                              ws_queue_size="1024", ws_send_buffer="65536") as (runtime, replays):
        port = loopback_socket.getsockname()[1]
        url = f"ws://127.0.0.1:{port}/ws"
        subscribe = orjson.dumps({"op": "subscribe", "channels": BOOKS}).decode()
        # The stalled client: a tiny receive buffer and no reads, so the server's side backs up.
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", port))
        stalled = await connect(url, sock=raw, max_queue=2)
        await stalled.send(subscribe)
        # The healthy client reads in another process, batch mode.
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        healthy = ctx.Process(target=_healthy_client, args=(url + "?batch=1", BOOKS, out))
        healthy.start()
        try:
            report = await asyncio.to_thread(out.get, True, 60)
        finally:
            await asyncio.to_thread(healthy.join, 10)
        assert "exception" not in report, report
        assert runtime.ws.stats["overflow_closed"] == 1     # the stalled one, and only it
        assert report["errors"] == []                        # every delta in sequence
        assert report["deltas"] > 1000
        assert all(r.done for r in replays)
        for channel in BOOKS:
            _, exchange, symbol = channel.split(":")
            book = runtime.book(exchange, symbol)
            assert report["books"][channel] == (book.sequence, book.checksum()), channel
        # The stalled client, once it reads again, finds the policy close after its backlog.
        code = reason = None
        try:
            async with asyncio.timeout(10):
                while True:
                    await stalled.recv()
        except ConnectionClosed as exc:
            code, reason = exc.rcvd.code if exc.rcvd else None, exc.rcvd.reason if exc.rcvd else ""
        finally:
            await stalled.close()
        assert code == 1008
        assert "send queue overflow" in reason
        metrics = runtime.metrics.render()[0].decode()
        assert 'alphapulse_websocket_disconnects_total{reason="slow_client"} 1.0' in metrics
