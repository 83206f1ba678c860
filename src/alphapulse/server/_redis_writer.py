"""The Redis writer: a hub subscriber that appends trades and book entries to Redis Streams.

Entry ids are explicit and strictly increasing per stream, so Redis itself refuses a repeat:

* trades: ``<ms>-<trade_id>`` where ``ms`` is the trade's exchange time in milliseconds and
  ``trade_id`` the exchange's numeric trade id (every feed we collect numbers its trades
  per symbol, increasing).  A trade delivered again after a reconnect (Coinbase, for one,
  replays recent trades on subscribe) has an id <= the stream's last id: the writer skips it
  locally, and after a restart Redis rejects it ("equal or smaller than the target stream top
  item"), which the writer counts as a duplicate.  ``ms`` is clamped to be non-decreasing
  so an exchange clock that steps back cannot reorder the stream.  Feeds without trade ids
  (Kraken v1) get a per-millisecond counter instead: no dedupe is possible there.
* book entries: ``<ms>-<2 * sequence>`` for snapshots and deltas, ``<ms>-<2 * sequence + 1>`` for
  the periodic checkpoints (a full book taken after delta ``sequence``); the book's sequence
  only grows within a process, and ``ms`` (clamped) grows across restarts.

Each stream is trimmed with ``MAXLEN ~``.  Outage: entries wait in a bounded buffer
(``redis_buffer``); when it is full the oldest are dropped and counted.  A background task
flushes every ``batch_timeout_ms`` or ``buffer_size`` entries with one pipelined round trip,
and reconnects with backoff; health reports it.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from .._book import Delta, OrderBook
from ..events import BookSnapshot, BookUpdate, Trade
from ._redis_keys import _parse_id, book_key, trades_key
from ._redis_tasks import _BACKOFF, _end

# The public module's name, so logging configured for it keeps covering the writer.
log = logging.getLogger("alphapulse.server.redis_streams")

_MS = 1_000_000


class _Stream:
    """The last id written to one stream (to keep ids increasing and skip repeats locally)."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = (0, 0)

    def next_id(self, ms: int, seq: int | None) -> tuple[int, int] | None:
        """The id for an entry at ``ms`` with sequence ``seq`` (None: a counter), or None when
        it is not after the last one (a duplicate or a stale repeat)."""
        last_ms, last_seq = self.last
        if seq is None:
            new = (ms, 0) if ms > last_ms else (last_ms, last_seq + 1)
        else:
            new = (max(ms, last_ms), seq)
            if new <= self.last:
                return None
        self.last = new
        return new


class RedisWriter:
    """Hub subscriber writing trades and book deltas (+ periodic checkpoints) to Redis Streams."""

    def __init__(self, url: str, *, prefix: str = "alphapulse", maxlen: int = 1_000_000,
                 batch_size: int = 1000, batch_timeout_ms: int = 100, buffer_limit: int = 100_000,
                 checkpoint_s: float = 10.0,
                 books: Callable[[str, str], OrderBook | None] | None = None,
                 metrics: Any = None) -> None:
        self.url = url
        self.prefix = prefix
        self.maxlen = maxlen
        self.batch_size = batch_size
        self.batch_timeout = batch_timeout_ms / 1000
        self.buffer_limit = buffer_limit
        self.checkpoint_ns = int(checkpoint_s * 1e9)
        self._books = books
        self._metrics = metrics
        self._buffer: deque[tuple[str, str, dict[str, Any]]] = deque()
        self._streams: dict[str, _Stream] = {}
        self._last_checkpoint: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._client: aioredis.Redis | None = None
        self.connected = False
        self.last_error = ""
        self.stats = {"written": 0, "duplicates": 0, "dropped": 0, "errors": 0, "batches": 0,
                      "skipped": 0}

    # --- hub subscriber (synchronous, never blocks) -------------------------------------------

    def on_event(self, event: Any) -> None:
        if isinstance(event, Trade):
            key = trades_key(self.prefix, event.exchange, event.symbol)
            seq = int(event.trade_id) if event.trade_id.isdigit() else None
            entry_id = self._stream(key).next_id(event.ts_event // _MS, seq)
            if entry_id is None:
                self.stats["skipped"] += 1
                return
            self._append(key, entry_id, {
                "exchange": event.exchange, "symbol": event.symbol,
                "native_symbol": event.native_symbol, "price": event.price, "size": event.size,
                "side": event.side, "trade_id": event.trade_id,
                "ts_event": event.ts_event, "ts_recv": event.ts_recv})
        elif isinstance(event, BookUpdate | BookSnapshot):
            key = book_key(self.prefix, event.exchange, event.symbol)
            kind = "snapshot" if isinstance(event, BookSnapshot) else "delta"
            entry_id = self._stream(key).next_id(event.ts_event // _MS, 2 * event.delta.sequence)
            if entry_id is None:
                self.stats["skipped"] += 1
                return
            self._append(key, entry_id, self._book_fields(event, kind, event.delta))
            now = event.ts_recv
            if kind == "snapshot":
                self._last_checkpoint[key] = now
            elif now - self._last_checkpoint.get(key, 0) >= self.checkpoint_ns:
                self._last_checkpoint[key] = now
                self._checkpoint(key, event)

    def _checkpoint(self, key: str, event: Any) -> None:
        book = self._books(event.exchange, event.symbol) if self._books else None
        if book is None or book.sequence != event.delta.sequence:
            return
        entry_id = self._stream(key).next_id(event.ts_event // _MS, 2 * book.sequence + 1)
        if entry_id is not None:
            self._append(key, entry_id, self._book_fields(event, "checkpoint", book.snapshot_delta()))

    @staticmethod
    def _book_fields(event: Any, kind: str, delta: Delta) -> dict[str, Any]:
        return {"kind": kind, "exchange": event.exchange, "symbol": event.symbol,
                "native_symbol": event.native_symbol, "delta": delta.encode(),
                "ts_event": event.ts_event, "ts_recv": event.ts_recv}

    def _stream(self, key: str) -> _Stream:
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _Stream()
        return stream

    def _append(self, key: str, entry_id: tuple[int, int], fields: dict[str, Any]) -> None:
        if len(self._buffer) >= self.buffer_limit:
            self._buffer.popleft()   # keep the freshest data; the loss is counted
            self.stats["dropped"] += 1
            if self._metrics is not None:
                self._metrics.redis_dropped.inc()
        self._buffer.append((key, f"{entry_id[0]}-{entry_id[1]}", fields))
        if len(self._buffer) >= self.batch_size:
            self._wake.set()

    # --- background flushing ------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def health(self) -> dict[str, Any]:
        return {"connected": self.connected, "buffered": len(self._buffer),
                "last_error": self.last_error, **self.stats}

    async def start(self) -> None:
        self._client = aioredis.from_url(self.url, socket_timeout=2.0,
                                         socket_connect_timeout=2.0)
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="redis-writer")

    async def stop(self, flush_timeout: float = 2.0) -> None:
        """Flush what is buffered (bounded by ``flush_timeout``), then close."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            self._wake.set()
            await _end(task, flush_timeout)
        if self._client is not None:
            if self.connected and self._buffer:
                try:
                    await asyncio.wait_for(self._flush_all(), flush_timeout)
                except (asyncio.TimeoutError, RedisError, OSError):
                    pass
            await self._client.aclose()
            self._client = None

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping:
            try:
                if not self.connected:
                    await self._connect()
                    attempt = 0
                await self._flush_all()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.batch_timeout)
                except asyncio.TimeoutError:
                    pass
                self._wake.clear()
            except (RedisError, OSError) as exc:
                self._set_connected(False, exc)
                await asyncio.sleep(_BACKOFF[min(attempt, len(_BACKOFF) - 1)])
                attempt += 1

    async def _connect(self) -> None:
        assert self._client is not None
        await self._timed("ping", self._client.ping())
        # After a restart, learn where each stream we have buffered for ends, so repeats are
        # skipped locally instead of costing a rejected command each.
        for key in {k for k, _, _ in self._buffer} | set(self._streams):
            last = await self._timed("xrevrange", self._client.xrevrange(key, count=1))
            if last:
                stream = self._stream(key)
                stream.last = max(stream.last, _parse_id(last[0][0]))
        self._set_connected(True)

    def _set_connected(self, up: bool, exc: BaseException | None = None) -> None:
        if up != self.connected:
            log.warning("redis %s%s", "connected" if up else "unavailable",
                        f": {exc}" if exc else "")
        self.connected = up
        if exc is not None:
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.stats["errors"] += 1
        if self._metrics is not None:
            self._metrics.redis_connected.set(1 if up else 0)

    async def _flush_all(self) -> None:
        while self._buffer:
            await self._flush_batch()

    async def _flush_batch(self) -> None:
        assert self._client is not None
        batch = [self._buffer[i] for i in range(min(self.batch_size, len(self._buffer)))]
        pipe = self._client.pipeline(transaction=False)
        for key, entry_id, fields in batch:
            pipe.xadd(key, fields, id=entry_id, maxlen=self.maxlen, approximate=True)
        started = time.perf_counter()
        results = await pipe.execute(raise_on_error=False)
        elapsed = time.perf_counter() - started
        # Only now, after the round trip succeeded, do the entries leave the buffer (entries
        # appended meanwhile are behind them; drops only ever remove from the front).
        for _ in range(min(len(batch), len(self._buffer))):
            self._buffer.popleft()
        ok = dup = 0
        for result in results:
            if isinstance(result, ResponseError):
                if "equal or smaller" in str(result):
                    dup += 1
                else:
                    raise result
            elif isinstance(result, BaseException):
                raise result
            else:
                ok += 1
        self.stats["written"] += ok
        self.stats["duplicates"] += dup
        self.stats["batches"] += 1
        if self._metrics is not None:
            self._metrics.redis_latency.labels(op="xadd_batch").observe(elapsed)
            self._metrics.redis_operations.labels(op="xadd", result="ok").inc(ok)
            if dup:
                self._metrics.redis_operations.labels(op="xadd", result="duplicate").inc(dup)
            self._metrics.redis_buffered.set(len(self._buffer))

    async def _timed(self, op: str, coro: Any) -> Any:
        started = time.perf_counter()
        try:
            result = await coro
        except (RedisError, OSError):
            if self._metrics is not None:
                self._metrics.redis_operations.labels(op=op, result="error").inc()
            raise
        if self._metrics is not None:
            self._metrics.redis_operations.labels(op=op, result="ok").inc()
            self._metrics.redis_latency.labels(op=op).observe(time.perf_counter() - started)
        return result
