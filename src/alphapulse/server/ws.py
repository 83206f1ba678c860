"""``/ws``: channel subscriptions with per-client bounded send queues and a slow-client deadline.

Protocol (docs/websocket.md has the full text and a client):

* client -> server, JSON text frames:
  ``{"op": "subscribe", "channels": [...], "encoding": "json" | "binary"}``,
  ``{"op": "unsubscribe", "channels": [...]}``, ``{"op": "snapshot", "channel": "book:..."}``,
  ``{"op": "options", "batch": true}`` (or ``/ws?batch=1``), ``{"op": "ping"}``
  (handled by :class:`._ws_control.ControlMixin`).
* channels: ``book:<exchange>:<symbol>``, ``trades:<exchange>:<symbol>``, ``arbitrage:<symbol>``,
  ``bbo:<symbol>``.
* server -> client: ``subscribed`` / ``unsubscribed`` / ``error`` / ``pong`` acknowledgements, and
  per channel ``snapshot`` then ``delta`` messages (each with the book's ``sequence``; a delta
  always carries the previous message's sequence + 1), ``gap``, ``trade``, ``arbitrage``, ``bbo``.
  With ``"encoding": "binary"`` book snapshots and deltas go as binary frames: the
  :mod:`alphapulse.wire` record (``wire.decode(frame)`` gives the BookSnapshot/BookUpdate back,
  the same bytes strategies read from the rings); everything else stays JSON.

Fan-out never blocks the hub: :meth:`WsFanout.on_event` serialises (and frames) each event once
per encoding and appends the shared message to every subscribed client's queue: O(1) per client,
no await.  One loop callback per burst then writes each client's queue to its transport in one
``write`` (:mod:`._ws_send_queue`, :mod:`._ws_conn`).  A client is dropped from every channel at
once and closed with 1008 when its queue overflows, or when it has taken nothing of what waits
for it for ``slow_client_s`` seconds (:mod:`._ws_slow_clients`); the others never notice.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from .._book import OrderBook
from .. import wire
from ..events import BookSnapshot, BookUpdate, Gap, Trade
from ._ws_conn import Conn, Message
from ._ws_control import (MAX_CHANNELS_PER_CLIENT, MAX_CLIENT_MESSAGE, ControlMixin,
                          book_message)
from ._ws_send_queue import CLOSE_POLICY, SendQueueMixin, _Client
from ._ws_slow_clients import SLOW_CLIENT_S, SlowClientsMixin

__all__ = ["WsFanout", "book_message", "CLOSE_POLICY", "MAX_CLIENT_MESSAGE",
           "MAX_CHANNELS_PER_CLIENT", "SLOW_CLIENT_S"]


class WsFanout(SendQueueMixin, SlowClientsMixin, ControlMixin):
    """The WebSocket side of the hub: a subscriber (``on_event``) and the ``/ws`` endpoint.

    ``slow_client_s``: a client that has had data waiting (bytes we gave it still in the
    transport buffer or unsent in the kernel) and has not taken any of it (the kernel's count of
    acknowledged bytes did not move) for this long is closed with 1008, whatever the traffic
    level; so is one that reads but has stayed behind for ``BEHIND_FACTOR`` times as long.
    Without transport access (another ASGI server) "behind" is a non-empty queue or a
    suspended send, and the first rule applies to it."""

    def __init__(self, *, exchanges: Iterable[str], symbols: Iterable[str],
                 books: Callable[[str, str], OrderBook | None], queue_size: int = 4096,
                 metrics: Any = None, bbo: Callable[[str], dict | None] | None = None,
                 slow_client_s: float = SLOW_CLIENT_S) -> None:
        self._exchanges = tuple(exchanges)
        self._symbols = tuple(symbols)
        self._books = books
        self._bbo = bbo
        self._queue_size = queue_size
        self._metrics = metrics
        self._slow_s = slow_client_s
        # A tick costs ~2 µs per client (buffer size + one ioctl) and stalls the loop that
        # long: 4 a second keeps it under 0.5 % of a core with 500 clients; detection lands
        # within two ticks of the deadline.  (10 a second measured a few ms worse p99.)
        self._tick_s = max(0.02, min(0.25, slow_client_s / 8))
        self._subs: dict[str, dict[_Client, str]] = {}
        self._clients: set[_Client] = set()
        self._last_bbo: dict[str, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dirty: list[_Client] = []
        self._flush_handle: asyncio.Handle | None = None
        self._watch_handle: asyncio.TimerHandle | None = None
        # channel -> (book, sequence, snapshot message): subscribers at the same sequence share
        # one encoding (500 clients connecting at once would otherwise build 500 copies).
        self._snapshot_cache: dict[str, tuple[Any, int, Message]] = {}
        self.stats = {"clients": 0, "messages_out": 0, "messages_in": 0, "overflow_closed": 0,
                      "deadline_closed": 0, "slow_closed": 0, "connections": 0}
        if metrics is not None:
            self._out_counter = metrics.websocket_messages.labels(direction="out")
            self._in_counter = metrics.websocket_messages.labels(direction="in")

    def _bbo_of(self, symbol: str) -> dict | None:
        return self._bbo(symbol) if self._bbo is not None else None

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
                    event.ts_recv)), lambda: wire.encode(event, time.time_ns()))
            self._maybe_bbo(event.symbol)
        elif isinstance(event, Trade):
            channel = f"trades:{event.exchange}:{event.symbol}"
            targets = self._subs.get(channel)
            if targets:
                self._fan(targets, lambda: orjson.dumps({
                    "type": "trade", "channel": channel, "exchange": event.exchange,
                    "symbol": event.symbol, "price": event.price, "size": event.size,
                    "side": event.side, "trade_id": event.trade_id,
                    "ts_event": event.ts_event, "ts_recv": event.ts_recv}), None)
        elif isinstance(event, Gap):
            symbols = (event.symbol,) if event.symbol else self._symbols
            for sym in symbols:
                channel = f"book:{event.exchange}:{sym}"
                targets = self._subs.get(channel)
                if targets:
                    self._fan(targets, lambda c=channel, s=sym: orjson.dumps({
                        "type": "gap", "channel": c, "exchange": event.exchange, "symbol": s,
                        "reason": event.reason, "detail": event.detail, "missed": event.missed,
                        "ts_recv": event.ts_recv}), None)

    def on_opportunity(self, symbol: str, payload: dict[str, Any]) -> None:
        """Publish an arbitrage opportunity (opened/closed) on ``arbitrage:<symbol>``."""
        channel = f"arbitrage:{symbol}"
        targets = self._subs.get(channel)
        if targets:
            self._fan(targets, lambda: orjson.dumps(
                {"type": "arbitrage", "channel": channel, **payload},
                option=orjson.OPT_NON_STR_KEYS), None)

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
                                                default=str), None)

    def _fan(self, targets: dict[_Client, str], as_json: Callable[[], bytes],
             as_binary: Callable[[], bytes] | None) -> None:
        text: Message | None = None
        data: Message | None = None
        overflowed = None
        for client, encoding in targets.items():
            if encoding == "binary" and as_binary is not None:
                if data is None:
                    data = Message(as_binary(), False)
                msg = data
            else:
                if text is None:
                    text = Message(as_json())
                msg = text
            if not self._push(client, msg):
                overflowed = overflowed or []
                overflowed.append(client)
        if overflowed:
            for client in overflowed:     # after the loop: this drops them from ``targets``
                self._overflow(client)

    # --- the endpoint -------------------------------------------------------------------------

    async def endpoint(self, websocket: WebSocket) -> None:
        """The ``/ws`` handler: accept, then read control messages while a task sends."""
        await websocket.accept()
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        client = _Client(websocket, self._queue_size, Conn.of_current_task())
        client.batch = websocket.query_params.get("batch") in ("1", "true")
        self._clients.add(client)
        if self._watch_handle is None:
            self._watch_handle = self._loop.call_later(self._tick_s, self._watch)
        self.stats["connections"] += 1
        self.stats["clients"] = len(self._clients)
        if self._metrics is not None:
            self._metrics.websocket_clients.set(len(self._clients))
        sender = client.sender = asyncio.create_task(self._send_loop(client))
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
                if not client.slow:
                    self._metrics.websocket_disconnects.labels(reason="client").inc()

