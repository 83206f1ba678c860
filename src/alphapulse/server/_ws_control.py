"""``/ws`` client -> server messages: subscribe, unsubscribe, snapshot, options, ping.

A mixin of :class:`alphapulse.server.ws.WsFanout` (kept apart so each module stays readable):
it validates every control message, answers it through the client's own send queue (so the
acknowledgement is ordered with the market data), and maintains the channel -> clients index
the fan-out iterates.  Protocol text: docs/websocket.md.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson

from .. import wire
from ._ws_conn import Message

if TYPE_CHECKING:
    from ._ws_send_queue import _Client

MAX_CLIENT_MESSAGE = 64 * 1024
MAX_CHANNELS_PER_CLIENT = 1024


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


class ControlMixin:
    """The control half of the fan-out; the host class provides the attributes below."""

    _exchanges: tuple[str, ...]
    _symbols: tuple[str, ...]
    _subs: dict[str, dict[_Client, str]]
    _metrics: Any
    _in_counter: Any
    _snapshot_cache: dict[str, tuple[Any, int, Message]]
    stats: dict[str, int]

    # provided by WsFanout
    def _reply(self, client: _Client, obj: dict[str, Any]) -> None: ...
    def _push_msg(self, client: _Client, msg: Message) -> None: ...
    def _books(self, exchange: str, symbol: str) -> Any: ...
    def _bbo_of(self, symbol: str) -> dict | None: ...

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
            if client.closing:      # the acknowledgement itself overflowed the queue
                return
            client.channels[channel] = encoding
            self._subs.setdefault(channel, {})[client] = encoding
            if channel.startswith("book:"):
                # Enqueued right now, on the loop: the next delta the hub fans out to this client
                # is exactly the book's next sequence.
                self._send_snapshot(client, channel, encoding)
            elif channel.startswith("bbo:"):
                bbo = self._bbo_of(channel[4:])
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

    def _drop_subscriptions(self, client: _Client) -> None:
        for channel in client.channels:
            targets = self._subs.get(channel)
            if targets is not None:
                targets.pop(client, None)
                if not targets:
                    del self._subs[channel]
        client.channels.clear()

    def _send_snapshot(self, client: _Client, channel: str, encoding: str) -> None:
        _, exchange, symbol = channel.split(":")
        book = self._books(exchange, symbol)
        if book is None:
            # Not synced yet: the collector's own snapshot will reach this subscriber.
            self._reply(client, {"type": "syncing", "channel": channel})
            return
        if encoding == "binary":
            self._push_msg(client, Message(wire.encode_book(
                "snapshot", exchange, symbol, book.snapshot_delta(), 0, 0, time.time_ns()), False))
            return
        cached = self._snapshot_cache.get(channel)
        if cached is None or cached[0] is not book or cached[1] != book.sequence:
            msg = Message(orjson.dumps(book_message(channel, exchange, symbol,
                                                    book.snapshot_delta(), 0, 0)))
            cached = self._snapshot_cache[channel] = (book, book.sequence, msg)
        self._push_msg(client, cached[2])
