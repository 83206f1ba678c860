"""The ``--source redis`` reader: XREAD the streams the writer filled and publish their events.

``decode_entry`` turns one stream entry back into the Event it was written from;
``RedisReader`` follows every trades and book stream and hands those events to the hub.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .._book import Delta
from ..events import BookSnapshot, BookUpdate, Trade
from ._redis_keys import _parse_id, book_key, trades_key
from ._redis_tasks import _BACKOFF, _end

# The public module's name, so logging configured for it keeps covering the reader.
log = logging.getLogger("alphapulse.server.redis_streams")


def _text(fields: dict[bytes, bytes], name: bytes) -> str:
    return fields[name].decode()


def decode_entry(key: str, fields: dict[bytes, bytes],
                 have_sequence: Callable[[str, str], int | None]) -> Any | None:
    """The Event an entry stands for (None for a checkpoint the reader's book already has)."""
    if b"delta" not in fields:
        return Trade(_text(fields, b"exchange"), _text(fields, b"symbol"),
                     _text(fields, b"native_symbol"), _text(fields, b"price"),
                     _text(fields, b"size"), _text(fields, b"side"),  # type: ignore[arg-type]
                     _text(fields, b"trade_id"), int(fields[b"ts_event"]),
                     int(fields[b"ts_recv"]))
    kind = fields[b"kind"]
    delta = Delta.decode(fields[b"delta"])
    exchange, symbol = _text(fields, b"exchange"), _text(fields, b"symbol")
    args = (exchange, symbol, _text(fields, b"native_symbol"), delta,
            int(fields[b"ts_event"]), int(fields[b"ts_recv"]))
    if kind == b"delta":
        return BookUpdate(*args)
    if kind == b"checkpoint" and have_sequence(exchange, symbol) == delta.sequence:
        return None
    return BookSnapshot(*args)


class RedisReader:
    """``--source redis``: XREAD the streams and publish their events into the hub.

    Trades are read from the start of each stream (what MAXLEN kept), so the API serves the
    same history; each book stream starts at its latest snapshot or checkpoint.  An outage is
    survived: the reader retries with backoff and resumes after the last id it read.
    """

    def __init__(self, url: str, *, exchanges: Iterable[str], symbols: Iterable[str],
                 sink: Callable[[Any], None], prefix: str = "alphapulse",
                 have_sequence: Callable[[str, str], int | None] = lambda e, s: None,
                 metrics: Any = None, block_ms: int = 500, count: int = 1000) -> None:
        self.url = url
        self.prefix = prefix
        self._sink = sink
        self._have_sequence = have_sequence
        self._metrics = metrics
        self._block_ms = block_ms
        self._count = count
        self._positions: dict[str, str] = {}
        self._book_keys: list[str] = []
        for ex in exchanges:
            for sym in symbols:
                self._positions[trades_key(prefix, ex, sym)] = "0-0"
                self._book_keys.append(book_key(prefix, ex, sym))
        self._client: aioredis.Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.connected = False
        self.last_error = ""
        self.stats = {"entries": 0, "errors": 0, "bad_entries": 0}

    def health(self) -> dict[str, Any]:
        return {"connected": self.connected, "last_error": self.last_error, **self.stats}

    async def start(self) -> None:
        # XREAD blocks for block_ms on the server, so a reply (maybe empty) is due within that:
        # a read timeout a few seconds beyond it tells a silent Redis (half-open connection,
        # a frozen host) from an idle stream, and health turns to "down" instead of hanging.
        self._client = aioredis.from_url(self.url, socket_timeout=self._block_ms / 1000 + 5.0,
                                         socket_connect_timeout=2.0)
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="redis-reader")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True            # a blocked XREAD returns within block_ms
            await _end(task, self._block_ms / 1000 + 1.0)
        if self._client is not None:
            await self._client.aclose()

    async def _start_book(self, key: str) -> str:
        """Where to start reading a book stream: its latest snapshot/checkpoint ("0-0" if none
        is in reach, "$"-like the last id if the stream has only deltas)."""
        assert self._client is not None
        cursor = "+"
        while True:
            page = await self._client.xrevrange(key, max=cursor, count=500)
            if not page:
                return "0-0"
            for entry_id, fields in page:
                if fields.get(b"kind") in (b"snapshot", b"checkpoint"):
                    ms, seq = _parse_id(entry_id)
                    # XREAD returns entries strictly after the given id.
                    return f"{ms}-{seq - 1}" if seq else f"{ms - 1}-{2**64 - 1}"
            last_ms, last_seq = _parse_id(page[-1][0])
            if len(page) < 500:
                return "0-0"
            cursor = f"({last_ms}-{last_seq}"

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping:
            try:
                assert self._client is not None
                await self._client.ping()
                for key in self._book_keys:
                    if key not in self._positions:
                        self._positions[key] = await self._start_book(key)
                if not self.connected:
                    log.warning("redis source connected")
                self.connected = True
                attempt = 0
                while not self._stopping:
                    reply = await self._client.xread(self._positions, count=self._count,
                                                     block=self._block_ms)
                    for key, entries in reply or ():
                        name = key.decode() if isinstance(key, bytes) else key
                        for entry_id, fields in entries:
                            self._positions[name] = (entry_id.decode()
                                                     if isinstance(entry_id, bytes) else entry_id)
                            self._publish(name, fields)
                    # Let the API and the WebSocket senders run between large catch-up reads.
                    await asyncio.sleep(0)
            except (RedisError, OSError) as exc:
                if self.connected:
                    log.warning("redis source unavailable: %s", exc)
                self.connected = False
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.stats["errors"] += 1
                await asyncio.sleep(_BACKOFF[min(attempt, len(_BACKOFF) - 1)])
                attempt += 1

    def _publish(self, key: str, fields: dict[bytes, bytes]) -> None:
        try:
            event = decode_entry(key, fields, self._have_sequence)
        except (KeyError, ValueError) as exc:
            self.stats["bad_entries"] += 1
            log.debug("skipping bad entry in %s: %s", key, exc)
            return
        self.stats["entries"] += 1
        if event is not None:
            self._sink(event)
