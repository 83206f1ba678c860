"""The collector framework: a sans-IO parser base and the asyncio ``MarketDataCollector``.

How to implement an exchange (notes for whoever adds one; the long form with a checklist is
``docs/adding-an-exchange.md`` and the annotated skeleton is ``exchanges/_template.py``):

1. Subclass :class:`FeedParser` (no I/O in it).  Set ``exchange = "<name>"`` and implement
   ``parse(frame, ts_recv)``: decode the frame (``orjson.loads`` accepts bytes), then call the
   helpers, never the sink or the book directly:
   - ``self.touch(channel)`` on every frame (a counter the staleness watchdog samples);
   - ``self.instrument(symbol)`` / ``self.instrument_for_native(native)`` for symbols (default:
     the tables in ``alphapulse.symbols``; override to keep a new exchange's table local);
   - ``self.book_for(instrument)`` to get/create the symbol's book (precisions from it);
   - ``self.apply_snapshot(book, bids, asks, ts_event, ts_recv)`` (goes ``live``) and
     ``self.apply_update(book, changes, ts_event, ts_recv, verify=None)`` (counts, emits
     BookUpdate, a crossed book is a gap); skip updates while ``self.state(symbol)`` is not
     ``"live"`` (waiting for the resync snapshot);
   - ``self.on_trade(...)`` (dedupes by integer trade id, counts a jump as a ``trade_id`` gap);
   - ``self.gap(symbol, reason, ...)`` when data was missed: emits Gap, marks the symbol
     ``resyncing`` and queues a resync that the IO layer (or ``verify``) acts on;
   - raise ``ProtocolError(reason, detail)`` for anything malformed: ``feed`` counts it under
     ``rejected[reason]``, logs once per reason (rate limited), emits Rejected and carries on.
   Override ``reset_connection()`` to drop per-connection state (sequence counters...).
   ``feed`` also turns BookError, bad JSON, KeyError/TypeError/IndexError/ValueError into
   rejections, so a hostile frame can never stop the loop.
2. Subclass :class:`MarketDataCollector`: set ``name``, ``parser_class``, ``default_url``,
   ``url_env`` (and ``default_rest_url`` / ``rest_url_env``), ``stale_after_default``; implement
   ``subscribe_messages()`` (frames sent after every connect) and, if the exchange can resync one
   symbol without reconnecting, ``async resync(ws, symbols)`` (default: reconnect).
   REST work (Binance snapshot) goes in a task started from ``on_connected(ws)``; feed its body to
   the parser with ``self.feed_rest(body)`` so recording and counting stay in one place.
3. Register it in ``exchanges/__init__.py`` (one line), add ``replay/<name>.py`` and fixtures.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from .._book import OrderBook
from ..events import Event
from ._fastws import FastClientConnection
from .parser import (  # noqa: F401 - re-exported: exchanges import these from .base
    _FRAME_ERRORS,
    LIVE,
    RESYNCING,
    SYNCING,
    FeedParser,
    LogLimiter,
    _discard,
    make_book_update,
)

__all__ = ["LIVE", "RESYNCING", "SYNCING", "Backoff", "FeedParser", "LogLimiter",
           "MarketDataCollector", "make_book_update"]

log = logging.getLogger("alphapulse.exchanges")


class Backoff:
    """Capped exponential backoff with full jitter (AWS architecture blog's "full jitter")."""

    def __init__(self, initial: float = 0.5, cap: float = 30.0, *, rng: random.Random | None = None):
        self.initial, self.cap, self.attempt = initial, cap, 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.initial * (2 ** min(self.attempt, 30)))
        self.attempt += 1
        # Never 0: a tight reconnect loop against a refusing host helps nobody.
        return max(self.initial / 10, self._rng.uniform(0, ceiling))

    def reset(self) -> None:
        self.attempt = 0


class _Reconnect(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MarketDataCollector:
    """Connect, subscribe, read, verify, resync, reconnect: forever until :meth:`stop`.

    ``sink`` receives every Event in order, synchronously from the read loop (keep it fast).
    ``stale_after`` maps a channel name (``"*"`` = any frame) to seconds without data after
    which the connection is declared dead and replaced; the transport ping (``ping_interval``
    / ``ping_timeout``) catches dead sockets, the staleness deadline catches live sockets whose
    data stopped.  ``max_lifetime`` reconnects proactively (Binance.US cuts at 24 h).
    """

    name: ClassVar[str] = ""
    parser_class: ClassVar[type[FeedParser]] = FeedParser
    default_url: ClassVar[str] = ""
    url_env: ClassVar[str] = ""
    default_rest_url: ClassVar[str | None] = None
    rest_url_env: ClassVar[str | None] = None
    stale_after_default: ClassVar[Mapping[str, float]] = {"*": 30.0}

    def __init__(self, symbols: list[str], *, url: str | None = None,
                 rest_url: str | None = None, sink: Callable[[Event], None] | None = None,
                 depth: int = 0, ping_interval: float | None = 20.0,
                 ping_timeout: float | None = 20.0, stale_after: Mapping[str, float] | None = None,
                 backoff_initial: float = 0.5, backoff_max: float = 30.0,
                 open_timeout: float = 10.0, max_lifetime: float | None = None,
                 max_frame: int = 16 << 20, close_timeout: float = 2.0, recorder: Any = None,
                 **options: Any) -> None:
        if not symbols:
            raise ValueError("symbols: at least one symbol is required")
        self.symbols = list(symbols)
        self.url = url or os.environ.get(self.url_env or "-", "") or self.default_url
        env_rest = os.environ.get(self.rest_url_env, "") if self.rest_url_env else ""
        self.rest_url = rest_url or env_rest or self.default_rest_url
        self.sink = sink or _discard
        self.depth = depth
        self.options = options
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.stale_after = dict(self.stale_after_default if stale_after is None else stale_after)
        self.open_timeout, self.max_lifetime, self.max_frame = open_timeout, max_lifetime, max_frame
        self.recorder = recorder
        self.close_timeout = close_timeout
        self.backoff = Backoff(backoff_initial, backoff_max)
        self.parser = self.make_parser()
        self.reconnects = 0
        self.disconnects: dict[str, int] = {}
        self.connected = False
        self._last_ts = 0                       # ns, ts_recv of the last message
        self._ws: ClientConnection | None = None
        self._stopping = asyncio.Event()
        self._close_reason: str | None = None

    # ---- hooks ----------------------------------------------------------------------------
    def make_parser(self) -> FeedParser:
        return self.parser_class(self.symbols, sink=self.sink, depth=self.depth, **self.options)

    def subscribe_messages(self) -> list[str | bytes]:  # pragma: no cover - abstract
        raise NotImplementedError

    async def on_connected(self, ws: ClientConnection) -> None:
        """Sends ``subscribe_messages()``.  Override to add REST work (start it as a task)."""
        for message in self.subscribe_messages():
            await ws.send(message)

    async def resync(self, ws: ClientConnection, symbols: dict[str, str]) -> None:
        """Rebuild these books.  Default: a new connection resubscribes and resnapshots all."""
        raise _Reconnect("resync")

    # ---- public face ----------------------------------------------------------------------
    @property
    def books(self) -> dict[str, OrderBook]:
        return self.parser.books

    def state(self, symbol: str) -> str:
        return self.parser.state(symbol)

    @property
    def last_message_ts(self) -> float:
        """``ts_recv`` of the last message received, seconds since the epoch (0.0: none)."""
        return self._last_ts / 1e9

    @property
    def stats(self) -> dict[str, Any]:
        out = self.parser.stats()
        out.update(connected=self.connected, last_message_ts=self.last_message_ts,
                   reconnects=self.reconnects, disconnects=dict(self.disconnects))
        return out

    def feed_rest(self, body: bytes, ts_recv: int | None = None) -> None:
        """Hand a REST response body to the parser (recorded like a frame)."""
        ts_recv = ts_recv or time.time_ns()
        if self.recorder is not None:
            self.recorder.write(body, ts_recv, source="rest")
        self.parser.feed(body, ts_recv)
        if self.parser.pending_resync and self._ws is not None:
            asyncio.get_running_loop().create_task(self._resync_soon(self._ws))

    async def stop(self) -> None:
        self._stopping.set()
        ws = self._ws
        if ws is not None:
            await ws.close()

    async def run(self) -> None:
        """Run until :meth:`stop`.  Never raises for network or protocol trouble."""
        self._stopping.clear()
        while not self._stopping.is_set():
            reason = await self._connect_once()
            if self._stopping.is_set():
                break
            self.reconnects += 1
            self.disconnects[reason] = self.disconnects.get(reason, 0) + 1
            planned = reason == "lifetime"          # we left first: routine, back at once
            self.parser.connection_lost(planned=planned)
            delay = 0.0 if planned else self.backoff.next_delay()
            log.info("%s: reconnecting in %.2fs (%s)", self.name, delay, reason)
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
            except TimeoutError:
                pass

    # ---- internals ------------------------------------------------------------------------
    async def _connect_once(self) -> str:
        self._close_reason = None
        try:
            async with connect(self.url, ping_interval=self.ping_interval,
                               ping_timeout=self.ping_timeout, open_timeout=self.open_timeout,
                               close_timeout=self.close_timeout, max_size=self.max_frame, compression=None,
                               max_queue=None, create_connection=FastClientConnection) as ws:
                self._ws, self.connected = ws, True
                watchdog = asyncio.get_running_loop().create_task(self._watchdog(ws))
                try:
                    await self._session(ws)
                finally:
                    watchdog.cancel()
                    self._ws, self.connected = None, False
            return self._close_reason or "closed"
        except _Reconnect as exc:
            return exc.reason
        except ConnectionClosed as exc:
            if self._close_reason:
                return self._close_reason
            sent = exc.sent
            if sent is not None and sent.code == 1011 and exc.rcvd is None:
                return "ping_timeout"
            return "closed" if exc.rcvd is not None else "dropped"
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            log.warning("%s: connect to %s failed: %s", self.name, self.url, exc)
            return "connect_failed"
        except Exception:  # noqa: BLE001 - a bug in a sink or hook must not end the collector
            log.exception("%s: unexpected error in the read loop; reconnecting", self.name)
            return "error"
        finally:
            self._ws, self.connected = None, False

    async def _session(self, ws: FastClientConnection) -> None:
        parser, feed, recorder = self.parser, self.parser.feed, self.recorder
        snapshots_before = parser.snapshots
        backoff = self.backoff

        def on_frame(frame: bytes, ts: int) -> bool:
            """Record and parse one message; False when the task must act (a resync)."""
            nonlocal snapshots_before
            self._last_ts = ts
            if recorder is not None:
                recorder.write(frame, ts)
            feed(frame, ts)
            if snapshots_before >= 0 and parser.snapshots > snapshots_before:
                backoff.reset()                 # a connection that synced is a healthy one
                snapshots_before = -1
            return not parser._pending           # pending_resync, without a property call

        await self.on_connected(ws)
        # Direct dispatch: while this task waits in recv_batch, each message is parsed and
        # published from the socket read that delivered it (no future, no task step, no second
        # loop turn per read).  The task wakes only for what needs an await (a resync), for
        # messages that were queued meanwhile (returned in the batch, each stamped at its
        # socket read), and for the end of the connection.  A sink/hook exception raised in
        # on_frame comes back here from recv_batch, and _connect_once reconnects ("error").
        recv_batch = ws.recv_batch
        while True:
            for frame, ts in await recv_batch(on_frame):
                if not on_frame(frame, ts):
                    await self._resync_pending(ws)
            if parser.pending_resync:
                await self._resync_pending(ws)

    async def _resync_pending(self, ws: ClientConnection) -> None:
        # take_resyncs() may come back empty: _resync_soon (after a REST body) took them.
        symbols = self.parser.take_resyncs()
        if symbols:
            await self.resync(ws, symbols)

    async def _resync_soon(self, ws: ClientConnection) -> None:
        try:
            await self._resync_pending(ws)
        except _Reconnect as exc:
            self._close_reason = exc.reason
            await ws.close()

    async def _watchdog(self, ws: ClientConnection) -> None:
        """Samples the parser's per-channel frame counters; a channel whose counter has not
        moved for its deadline (counted from connect) makes the connection stale."""
        parser = self.parser
        started = time.monotonic()
        deadlines = self.stale_after
        period = min([0.5, *(v / 4 for v in deadlines.values())])

        def count(channel: str) -> int:
            return parser.messages if channel == "*" else parser.activity.get(channel, 0)

        seen = {ch: count(ch) for ch in deadlines}
        changed = dict.fromkeys(deadlines, started)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for channel, limit in deadlines.items():
                n = count(channel)
                if n != seen[channel]:
                    seen[channel], changed[channel] = n, now
                elif now - changed[channel] > limit:
                    self._close_reason = "stale" if channel == "*" else f"stale_{channel}"
                    log.warning("%s: no %s for %.1fs; reconnecting", self.name,
                                "data" if channel == "*" else f"{channel} data", limit)
                    ws.transport.abort()        # the feed is dead: no polite close handshake
                    return
            if self.max_lifetime is not None and now - started > self.max_lifetime:
                self._close_reason = "lifetime"
                await ws.close()
                return
