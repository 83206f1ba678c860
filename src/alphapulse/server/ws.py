"""``/ws``: channel subscriptions with per-client bounded send queues.

Protocol (docs/websocket.md has the full text and a client):

* client -> server, JSON text frames:
  ``{"op": "subscribe", "channels": [...], "encoding": "json" | "binary"}``,
  ``{"op": "unsubscribe", "channels": [...]}``, ``{"op": "snapshot", "channel": "book:..."}``,
  ``{"op": "options", "batch": true}`` (or ``/ws?batch=1``), ``{"op": "ping"}``.
* channels: ``book:<exchange>:<symbol>``, ``trades:<exchange>:<symbol>``, ``arbitrage:<symbol>``,
  ``bbo:<symbol>``.
* server -> client: ``subscribed`` / ``unsubscribed`` / ``error`` / ``pong`` acknowledgements, and
  per channel ``snapshot`` then ``delta`` messages (each with the book's ``sequence``; a delta
  always carries the previous message's sequence + 1), ``gap``, ``trade``, ``arbitrage``, ``bbo``.
  With ``"encoding": "binary"`` book snapshots and deltas go as binary frames: the
  :mod:`alphapulse.wire` record (``wire.decode(frame)`` gives the BookSnapshot/BookUpdate back,
  the same bytes strategies read from the rings); everything else stays JSON.

Fan-out never blocks the hub: :meth:`WsFanout.on_event` serialises each event once per encoding
and appends it to every subscribed client's queue.  A client whose queue is full is dropped from
every channel at once and closed with 1008 ("send queue overflow"); the others never notice.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from .._book import OrderBook
from .. import wire
from ..events import BookSnapshot, BookUpdate, Gap, Trade

log = logging.getLogger(__name__)

CLOSE_POLICY = 1008
MAX_CLIENT_MESSAGE = 64 * 1024
MAX_CHANNELS_PER_CLIENT = 1024
CLOSE_TIMEOUT_S = 5.0
MAX_BATCH = 1000
# A full queue closes a client only if its socket is full too (the sender is stuck in a send):
# a burst the loop has not yet had time to send (a collector parsing a backlog of frames) is
# not the client's fault.  Past this multiple of the limit it is closed regardless (memory).
HARD_LIMIT_FACTOR = 8


class _Client:
    """One connection: its queue, its subscriptions and the task that drains the queue."""

    __slots__ = ("ws", "queue", "limit", "wake", "channels", "closing", "close_reason", "sent",
                 "batch", "in_send")

    def __init__(self, ws: WebSocket, limit: int) -> None:
        self.ws = ws
        self.queue: deque[str | bytes] = deque()
        self.limit = limit
        self.wake = asyncio.Event()
        self.channels: dict[str, str] = {}     # channel -> encoding
        self.closing = False
        self.close_reason = ""
        self.sent = 0
        self.batch = False     # JSON messages queued together go out as one array frame
        self.in_send = False   # True while the sender is suspended in a send: the socket is full


def _levels(delta: Any) -> tuple[list[list[str]], list[list[str]]]:
    bids: list[list[str]] = []
    asks: list[list[str]] = []
    for side, price, size in delta.changes:
        (bids if side == "bid" else asks).append([price, size])
    # A snapshot Delta lists each side best first (the book's own order): kept as is.
    return bids, asks


def book_message(channel: str, exchange: str, symbol: str, delta: Any, ts_event: int,
                 ts_recv: int) -> dict[str, Any]:
    """The JSON form of a book snapshot or delta on ``channel``."""
    if delta.is_snapshot:
        bids, asks = _levels(delta)
        return {"type": "snapshot", "channel": channel, "exchange": exchange, "symbol": symbol,
                "sequence": delta.sequence, "price_precision": delta.price_precision,
                "size_precision": delta.size_precision, "bids": bids, "asks": asks,
                "ts_event": ts_event, "ts_recv": ts_recv}
    return {"type": "delta", "channel": channel, "exchange": exchange, "symbol": symbol,
            "sequence": delta.sequence, "changes": [list(c) for c in delta.changes],
            "ts_event": ts_event, "ts_recv": ts_recv}


class WsFanout:
    """The WebSocket side of the hub: a subscriber (``on_event``) and the ``/ws`` endpoint."""

    def __init__(self, *, exchanges: Iterable[str], symbols: Iterable[str],
                 books: Callable[[str, str], OrderBook | None], queue_size: int = 4096,
                 metrics: Any = None, bbo: Callable[[str], dict | None] | None = None) -> None:
        self._exchanges = tuple(exchanges)
        self._symbols = tuple(symbols)
        self._books = books
        self._bbo = bbo
        self._queue_size = queue_size
        self._metrics = metrics
        self._subs: dict[str, dict[_Client, str]] = {}
        self._clients: set[_Client] = set()
        self._last_bbo: dict[str, Any] = {}
        self.stats = {"clients": 0, "messages_out": 0, "messages_in": 0, "overflow_closed": 0,
                      "connections": 0}
        if metrics is not None:
            self._out_counter = metrics.websocket_messages.labels(direction="out")
            self._in_counter = metrics.websocket_messages.labels(direction="in")

    # --- channels -----------------------------------------------------------------------------

    def channels(self) -> list[str]:
        """Every channel a client may subscribe to."""
        out = []
        for ex in self._exchanges:
            for sym in self._symbols:
                out += [f"book:{ex}:{sym}", f"trades:{ex}:{sym}"]
        for sym in self._symbols:
            out += [f"arbitrage:{sym}", f"bbo:{sym}"]
        return out

    def _check_channel(self, channel: Any) -> str | None:
        """None when ``channel`` is valid, else the reason."""
        if not isinstance(channel, str):
            return "channel must be a string"
        parts = channel.split(":")
        if parts[0] in ("book", "trades") and len(parts) == 3:
            if parts[1] not in self._exchanges:
                return f"unknown exchange {parts[1]!r} (serving: {', '.join(self._exchanges)})"
            if parts[2] not in self._symbols:
                return f"unknown symbol {parts[2]!r} (serving: {', '.join(self._symbols)})"
            return None
        if parts[0] in ("arbitrage", "bbo") and len(parts) == 2:
            return None if parts[1] in self._symbols else f"unknown symbol {parts[1]!r}"
        return ("channel must be book:<exchange>:<symbol>, trades:<exchange>:<symbol>, "
                "arbitrage:<symbol> or bbo:<symbol>")

    # --- hub subscriber -----------------------------------------------------------------------

    def on_event(self, event: Any) -> None:
        """Serialise ``event`` once per encoding and enqueue it for every subscriber."""
        if not self._subs:
            return
        if isinstance(event, BookUpdate | BookSnapshot):
            channel = f"book:{event.exchange}:{event.symbol}"
            targets = self._subs.get(channel)
            if targets:
                self._fan(targets, lambda: orjson.dumps(book_message(
                    channel, event.exchange, event.symbol, event.delta, event.ts_event,
                    event.ts_recv)).decode(), lambda: wire.encode(event, time.time_ns()))
            self._maybe_bbo(event.symbol)
        elif isinstance(event, Trade):
            channel = f"trades:{event.exchange}:{event.symbol}"
            targets = self._subs.get(channel)
            if targets:
                self._fan(targets, lambda: orjson.dumps({
                    "type": "trade", "channel": channel, "exchange": event.exchange,
                    "symbol": event.symbol, "price": event.price, "size": event.size,
                    "side": event.side, "trade_id": event.trade_id,
                    "ts_event": event.ts_event, "ts_recv": event.ts_recv}).decode(), None)
        elif isinstance(event, Gap):
            symbols = (event.symbol,) if event.symbol else self._symbols
            for sym in symbols:
                channel = f"book:{event.exchange}:{sym}"
                targets = self._subs.get(channel)
                if targets:
                    self._fan(targets, lambda c=channel: orjson.dumps({
                        "type": "gap", "channel": c, "exchange": event.exchange, "symbol": sym,
                        "reason": event.reason, "detail": event.detail, "missed": event.missed,
                        "ts_recv": event.ts_recv}).decode(), None)

    def on_opportunity(self, symbol: str, payload: dict[str, Any]) -> None:
        """Publish an arbitrage opportunity (opened/closed) on ``arbitrage:<symbol>``."""
        channel = f"arbitrage:{symbol}"
        targets = self._subs.get(channel)
        if targets:
            self._fan(targets, lambda: orjson.dumps(
                {"type": "arbitrage", "channel": channel, **payload},
                option=orjson.OPT_NON_STR_KEYS).decode(), None)

    def _maybe_bbo(self, symbol: str) -> None:
        channel = f"bbo:{symbol}"
        targets = self._subs.get(channel)
        if not targets or self._bbo is None:
            return
        bbo = self._bbo(symbol)
        if bbo is None:
            return
        # Ages change on every call; only a new best bid or offer is news.
        top = (bbo.get("bid"), bbo.get("ask"))
        if top == self._last_bbo.get(symbol):
            return
        self._last_bbo[symbol] = top
        self._fan(targets, lambda: orjson.dumps({"type": "bbo", "channel": channel, **bbo},
                                                default=str).decode(), None)

    def _fan(self, targets: dict[_Client, str], as_json: Callable[[], str],
             as_binary: Callable[[], bytes] | None) -> None:
        text: str | None = None
        data: bytes | None = None
        overflowed = None
        for client, encoding in targets.items():
            if encoding == "binary" and as_binary is not None:
                if data is None:
                    data = as_binary()
                msg: str | bytes = data
            else:
                if text is None:
                    text = as_json()
                msg = text
            n = len(client.queue)
            if n >= client.limit and (client.in_send or n >= client.limit * HARD_LIMIT_FACTOR):
                overflowed = overflowed or []
                overflowed.append(client)
                continue
            client.queue.append(msg)
            client.wake.set()
        if overflowed:
            for client in overflowed:
                self._overflow(client)

    def _overflow(self, client: _Client) -> None:
        """Drop a client that cannot keep up: out of every channel now, closed with 1008."""
        self._drop_subscriptions(client)
        client.queue.clear()
        client.closing = True
        client.close_reason = f"send queue overflow ({client.limit} messages): client too slow"
        client.wake.set()
        self.stats["overflow_closed"] += 1
        if self._metrics is not None:
            self._metrics.websocket_disconnects.labels(reason="slow_client").inc()

    def _drop_subscriptions(self, client: _Client) -> None:
        for channel in client.channels:
            targets = self._subs.get(channel)
            if targets is not None:
                targets.pop(client, None)
                if not targets:
                    del self._subs[channel]
        client.channels.clear()

    # --- the endpoint -------------------------------------------------------------------------

    async def endpoint(self, websocket: WebSocket) -> None:
        """The ``/ws`` handler: accept, then read control messages while a task sends."""
        await websocket.accept()
        client = _Client(websocket, self._queue_size)
        client.batch = websocket.query_params.get("batch") in ("1", "true")
        self._clients.add(client)
        self.stats["connections"] += 1
        self.stats["clients"] = len(self._clients)
        if self._metrics is not None:
            self._metrics.websocket_clients.set(len(self._clients))
        sender = asyncio.create_task(self._send_loop(client))
        reason = "client"
        try:
            while not client.closing:
                receive = asyncio.ensure_future(websocket.receive())
                done, _ = await asyncio.wait({receive, sender}, return_when=asyncio.FIRST_COMPLETED)
                if receive not in done:
                    receive.cancel()
                    break
                message = receive.result()
                if message["type"] == "websocket.disconnect":
                    break
                self._on_client_message(client, message.get("text") or message.get("bytes"))
        except WebSocketDisconnect:
            pass
        finally:
            self._drop_subscriptions(client)
            if client.closing:
                reason = "slow_client" if client.close_reason.startswith("send queue") else "policy"
            if not sender.done():
                sender.cancel()
            try:
                await sender
            except (asyncio.CancelledError, Exception):
                pass
            self._clients.discard(client)
            self.stats["clients"] = len(self._clients)
            if self._metrics is not None:
                self._metrics.websocket_clients.set(len(self._clients))
                if reason == "client":
                    self._metrics.websocket_disconnects.labels(reason="client").inc()

    def _count_sent(self, client: _Client, n: int) -> None:
        client.sent += n
        self.stats["messages_out"] += n
        if self._metrics is not None:
            self._out_counter.inc(n)

    async def _send_loop(self, client: _Client) -> None:
        ws = client.ws
        queue = client.queue
        try:
            while True:
                sent = 0
                while queue:
                    msg = queue.popleft()
                    if isinstance(msg, str):
                        if client.batch and queue and isinstance(queue[0], str):
                            # Everything JSON that is waiting, as one frame: one send instead
                            # of many is what lets hundreds of clients keep up.
                            parts = [msg]
                            while queue and isinstance(queue[0], str) and len(parts) < MAX_BATCH:
                                parts.append(queue.popleft())
                            msg = "[" + ",".join(parts) + "]"
                            n = len(parts)
                        else:
                            n = 1
                        client.in_send = True
                        await ws.send({"type": "websocket.send", "text": msg})
                    else:
                        n = 1
                        client.in_send = True
                        await ws.send({"type": "websocket.send", "bytes": msg})
                    client.in_send = False
                    sent += n
                    if sent >= 64:
                        self._count_sent(client, sent)
                        sent = 0
                        await asyncio.sleep(0)   # fairness: a long backlog must not hog the loop
                # Counted once per drained batch: a Prometheus inc per message costs as much
                # as the send itself.
                if sent:
                    self._count_sent(client, sent)
                if client.closing:
                    # The close frame may wait behind a full socket buffer; bound the wait.
                    await asyncio.wait_for(ws.close(CLOSE_POLICY, client.close_reason[:120]),
                                           CLOSE_TIMEOUT_S)
                    return
                client.wake.clear()
                await client.wake.wait()
        except (WebSocketDisconnect, RuntimeError, OSError, asyncio.TimeoutError):
            # Disconnected or the close timed out; the endpoint cleans up.
            client.closing = True

    def _reply(self, client: _Client, obj: dict[str, Any]) -> None:
        if len(client.queue) >= client.limit * HARD_LIMIT_FACTOR:
            self._overflow(client)
            return
        client.queue.append(orjson.dumps(obj).decode())
        client.wake.set()

    def _on_client_message(self, client: _Client, raw: str | bytes | None) -> None:
        self.stats["messages_in"] += 1
        if self._metrics is not None:
            self._in_counter.inc()
        if raw is None or len(raw) > MAX_CLIENT_MESSAGE:
            self._reply(client, {"type": "error", "reason": "bad_message",
                                 "detail": f"messages are JSON objects under {MAX_CLIENT_MESSAGE} bytes"})
            return
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._reply(client, {"type": "error", "reason": "bad_json", "detail": "not JSON"})
            return
        if not isinstance(msg, dict):
            self._reply(client, {"type": "error", "reason": "bad_message",
                                 "detail": "expected a JSON object"})
            return
        op = msg.get("op")
        if op == "ping":
            self._reply(client, {"type": "pong", "id": msg.get("id")})
        elif op == "options":
            batch = msg.get("batch")
            if not isinstance(batch, bool):
                self._reply(client, {"type": "error", "reason": "bad_option", "op": op,
                                     "detail": "'batch' must be true or false"})
                return
            client.batch = batch
            self._reply(client, {"type": "options", "batch": batch})
        elif op in ("subscribe", "unsubscribe"):
            channels = msg.get("channels")
            if isinstance(channels, str):
                channels = [channels]
            if not isinstance(channels, list) or not channels:
                self._reply(client, {"type": "error", "reason": "bad_channels", "op": op,
                                     "detail": "'channels' must be a non-empty list"})
                return
            encoding = msg.get("encoding", "json")
            if encoding not in ("json", "binary"):
                self._reply(client, {"type": "error", "reason": "bad_encoding", "op": op,
                                     "detail": "'encoding' must be 'json' or 'binary'"})
                return
            for channel in channels:
                problem = self._check_channel(channel)
                if problem:
                    self._reply(client, {"type": "error", "reason": "bad_channel", "op": op,
                                         "channel": channel, "detail": problem})
                    return
            if op == "subscribe":
                self._subscribe(client, channels, encoding)
            else:
                self._unsubscribe(client, channels)
        elif op == "snapshot":
            channel = msg.get("channel")
            if self._check_channel(channel) or not str(channel).startswith("book:"):
                self._reply(client, {"type": "error", "reason": "bad_channel", "op": op,
                                     "channel": channel, "detail": "snapshot needs a book channel"})
                return
            self._send_snapshot(client, channel, client.channels.get(channel, "json"))
        else:
            self._reply(client, {"type": "error", "reason": "bad_op",
                                 "detail": "op must be subscribe, unsubscribe, snapshot, options or ping"})

    def _subscribe(self, client: _Client, channels: list[str], encoding: str) -> None:
        if len(client.channels) + len(channels) > MAX_CHANNELS_PER_CLIENT:
            self._reply(client, {"type": "error", "reason": "too_many_channels",
                                 "detail": f"at most {MAX_CHANNELS_PER_CLIENT} per connection"})
            return
        self._reply(client, {"type": "subscribed", "channels": channels, "encoding": encoding})
        for channel in channels:
            client.channels[channel] = encoding
            self._subs.setdefault(channel, {})[client] = encoding
            if channel.startswith("book:"):
                # Enqueued right now, on the loop: the next delta the hub fans out to this client
                # is exactly the book's next sequence.
                self._send_snapshot(client, channel, encoding)
            elif channel.startswith("bbo:") and self._bbo is not None:
                bbo = self._bbo(channel[4:])
                if bbo is not None:
                    self._reply(client, {"type": "bbo", "channel": channel, **bbo})

    def _unsubscribe(self, client: _Client, channels: list[str]) -> None:
        for channel in channels:
            client.channels.pop(channel, None)
            targets = self._subs.get(channel)
            if targets is not None:
                targets.pop(client, None)
                if not targets:
                    del self._subs[channel]
        self._reply(client, {"type": "unsubscribed", "channels": channels})

    def _send_snapshot(self, client: _Client, channel: str, encoding: str) -> None:
        _, exchange, symbol = channel.split(":")
        book = self._books(exchange, symbol)
        if book is None:
            # Not synced yet: the collector's own snapshot will reach this subscriber.
            self._reply(client, {"type": "syncing", "channel": channel})
            return
        delta = book.snapshot_delta()
        if encoding == "binary":
            if len(client.queue) >= client.limit * HARD_LIMIT_FACTOR:
                self._overflow(client)
                return
            client.queue.append(wire.encode_book("snapshot", exchange, symbol, delta, 0, 0,
                                                 time.time_ns()))
            client.wake.set()
        else:
            self._reply(client, book_message(channel, exchange, symbol, delta, 0, 0))
