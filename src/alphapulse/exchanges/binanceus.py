"""Binance.US: ``<symbol>@depth@100ms`` diffs aligned on the REST depth snapshot, and trades.

The alignment of the diffs on the snapshot (buffer, drop ``u <= lastUpdateId``, straddle, then
``U == previous u + 1``, else Gap and a new snapshot; protocols.md §4) is the state machine of
``_binanceus_sync.DepthSyncParser``, which :class:`BinanceUSParser` extends with the frame
parsing, the books' native names and the in-order fast path.  The collector fetches the
snapshots off the read loop, within Binance's request-weight budget.

Frames arrive bare (``/ws/<stream>``) or wrapped (``/stream?streams=...`` gives
``{"stream", "data"}``); both are accepted.  ``@trade`` and ``@aggTrade`` are both understood:
``m`` true means the buyer was the maker, so the taker sold.  Binance.US cuts every connection
after 24 h; the collector reconnects on its own before that (``max_lifetime``).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar
from urllib.parse import urlsplit

import orjson
from websockets.asyncio.client import ClientConnection

from .._book import OrderBook
from ..errors import ProtocolError
from ..events import Event
from ..symbols import from_native, instrument, stream_name
from ._binanceus_sync import DepthSyncParser
from ._http import WeightLimiter, http_get
from ._scanned import MAKE_BOOK_UPDATE, deliver
from .base import _FRAME_ERRORS, LIVE, FeedParser, MarketDataCollector, make_book_update
from .parser import HOTPATH_MISSING

try:  # the compiled scanner for the hottest frame; a missing build is a loud error
    from ._scan import binance_depth_update as _scan_depth
    from ._scan import binance_trade as _scan_trade
except ImportError as exc:
    raise ImportError(HOTPATH_MISSING) from exc
# Test-oracle switch, not a fallback: setting ``_scan_depth`` to None (the unit tests
# monkeypatch it) sends every frame through the orjson path, so both paths are compared.

__all__ = ["BinanceUSCollector", "BinanceUSParser", "snapshot_weight"]

log = logging.getLogger("alphapulse.exchanges.binanceus")
_loads = orjson.loads
_IGNORED_EVENTS = frozenset({"kline", "24hrTicker", "24hrMiniTicker", "bookTicker"})


def snapshot_weight(limit: int) -> int:
    """REQUEST_WEIGHT of ``/api/v3/depth`` for ``limit`` (rest-api.md)."""
    return 1 if limit <= 100 else 5 if limit <= 500 else 10 if limit <= 1000 else 50


class BinanceUSParser(DepthSyncParser):
    """Sans-IO Binance.US parser: stream frames and REST depth bodies in, books out.

    Depth events in order on a live book are applied here (by the compiled scanner, or the
    inline branch of ``_depth``); every other depth event and every REST body goes to the
    alignment state machine of :class:`DepthSyncParser` (``rest_symbol`` names a body's book).
    """

    exchange: ClassVar[str] = "binanceus"

    def __init__(self, symbols: Iterable[str] | None = None, *,
                 sink: Callable[[Event], None] | None = None, depth: int = 0,
                 max_levels: int = 20_000, max_buffer: int = 10_000, **kwargs: Any) -> None:
        super().__init__(symbols, sink=sink, depth=depth, max_levels=max_levels,
                         max_buffer=max_buffer, **kwargs)
        self._natives: dict[Any, OrderBook | None] = {}
        self._scan_natives: dict[bytes, tuple[OrderBook, str]] = {}   # for ``_scan_depth``
        self._trade_kind: dict[str, str] = {}
        self.ignored_trades = 0
        self._subscribed = {inst.native: inst for inst in
                            (instrument(self.exchange, s) for s in self.symbols or ())}

    def feed(self, frame: bytes | str, ts_recv: int | None = None) -> None:
        # The hottest frame (an in-order depthUpdate of a live book) is scanned and applied in
        # C; anything the scanner does not fully recognise takes the general path below.
        if type(frame) is bytes and _scan_depth is not None:
            if ts_recv is None:
                ts_recv = time.time_ns()
            hit = _scan_depth(frame, self._scan_natives, self._states, self._last_u,
                              self._bridge, self.max_levels, MAKE_BOOK_UPDATE, ts_recv)
            if hit is not None:
                deliver(self, hit, "depth", ts_recv)
                return
            trade = _scan_trade(frame)           # validated in C but for the symbol
            if trade is not None:
                self.messages += 1
                try:
                    self._emit_trade(self._book(trade[0]), *trade, ts_recv)
                except _FRAME_ERRORS as exc:
                    self.frame_error(exc, ts_recv)
                return
        FeedParser.feed(self, frame, ts_recv)

    def parse(self, frame: bytes | str, ts_recv: int) -> None:
        msg = _loads(frame)
        if type(msg) is not dict:
            raise ProtocolError("malformed", "frame is not a JSON object")
        if "stream" in msg and "data" in msg:
            msg = msg["data"]
            if type(msg) is not dict:
                raise ProtocolError("malformed", "combined frame data is not an object")
        kind = msg.get("e")
        if kind == "depthUpdate":
            self._depth(msg, ts_recv)
        elif kind == "trade" or kind == "aggTrade":
            self._trade(msg, kind, ts_recv)
        elif "lastUpdateId" in msg:
            self._snapshot(msg, ts_recv)
        elif kind in _IGNORED_EVENTS or (kind is None and "B" in msg and "A" in msg):
            self.touch("bookTicker" if kind is None else kind)
        elif kind is None and "id" in msg and ("result" in msg or "error" in msg):
            self.touch("control")                    # answer to SUBSCRIBE / LIST_...
            if msg.get("error"):
                raise ProtocolError("exchange_error", str(msg["error"])[:200])
        elif kind is None and "code" in msg:
            raise ProtocolError("exchange_error", f"{msg.get('code')}: {msg.get('msg')}")
        else:
            raise ProtocolError("unknown_type", f"event {kind!r:.40}")

    # ---- books ----------------------------------------------------------------------------
    def _book(self, native: Any) -> OrderBook:
        try:
            book = self._natives[native]
        except KeyError:
            book = self._new_book(native)
        except TypeError:
            raise ProtocolError("unknown_symbol", f"symbol {native!r:.40}") from None
        if book is None:
            raise ProtocolError("unknown_symbol", f"symbol {native!r:.40}")
        return book

    def _new_book(self, native: Any) -> OrderBook | None:
        if type(native) is not str or not native.isalnum() or len(native) > 20:
            raise ProtocolError("unknown_symbol", f"symbol {native!r:.40}")
        try:
            # Subscribed symbols first: a concatenated native (USDTUSD) is ambiguous alone.
            inst = self._subscribed.get(native) or from_native("binanceus", native)
        except ValueError:
            inst = None
        book = self.book_for(inst) if inst is not None and self.wants(inst.symbol) else None
        if len(self._natives) < 10_000:
            self._natives[native] = book
        if book is not None and native.isascii():
            self._scan_natives[native.encode()] = (book, self.natives[book.symbol])
        return book

    def _depth(self, msg: dict[str, Any], ts_recv: int) -> None:
        book = self._book(msg["s"])
        first, final, event_ms = msg["U"], msg["u"], msg["E"]
        if type(first) is not int or type(final) is not int or not 0 <= first <= final:
            raise ProtocolError("bad_update_id", f"U={first!r:.30} u={final!r:.30}")
        if type(event_ms) is not int:
            raise ProtocolError("bad_timestamp", f"E={event_ms!r:.30}")
        bids, asks = msg["b"], msg["a"]
        if type(bids) is not list or type(asks) is not list:
            raise ProtocolError("malformed", "depthUpdate b/a are not lists")
        if len(bids) + len(asks) > self.max_levels:
            raise ProtocolError("too_many_levels", f"{len(bids) + len(asks)} levels")
        changes = [("bid", p, q) for p, q in bids]
        if asks:
            changes += [("ask", p, q) for p, q in asks]
        activity = self.activity
        activity["depth"] = activity.get("depth", 0) + 1
        symbol = book.symbol
        if first == self._last_u.get(symbol, -2) + 1 and self._states.get(symbol) == LIVE \
                and symbol not in self._bridge:
            # In order on a live book (the usual case): apply without the general path.
            delta = book.apply(changes)
            self._last_u[symbol] = final
            self.updates += 1
            self.sink(make_book_update("binanceus", symbol, self.natives[symbol], delta,
                                       event_ms * 1_000_000, ts_recv))
            if book.crossed:
                self.gap(symbol, "crossed", f"best bid {book.best_bid()} >= best ask "
                         f"{book.best_ask()}", -1, ts_recv)
            return
        self._sync_depth(book, first, final, changes, event_ms * 1_000_000, ts_recv)

    # ---- trades ---------------------------------------------------------------------------
    def _trade(self, msg: dict[str, Any], kind: str, ts_recv: int) -> None:
        book = self._book(msg["s"])
        tid = msg["t"] if kind == "trade" else msg["a"]
        price, size, maker, ts_ms = msg["p"], msg["q"], msg["m"], msg["T"]
        if type(tid) is not int or tid < 0:
            raise ProtocolError("bad_trade_id", f"trade id {tid!r:.30}")
        if type(price) is not str or type(size) is not str or type(maker) is not bool \
                or type(ts_ms) is not int:
            raise ProtocolError("wrong_type", "trade p/q must be strings, m a bool, T an int")
        for name, text in (("price", price), ("size", size)):
            body = text.replace(".", "", 1)
            if not (body.isdigit() and body.isascii() and body.strip("0")):
                raise ProtocolError(f"bad_{name}", f"{name} {text!r:.40}")
        self._emit_trade(book, msg["s"], kind, tid, price, size, "sell" if maker else "buy",
                         ts_ms * 1_000_000, ts_recv)

    def _emit_trade(self, book: OrderBook, native: str, kind: str, tid: int, price: str,
                    size: str, side: str, ts_event: int, ts_recv: int) -> None:
        """Emit one validated trade (``on_trade`` dedupes by id and counts id jumps)."""
        symbol = book.symbol
        self.touch(kind)
        if self._trade_kind.setdefault(symbol, kind) != kind:
            self.ignored_trades += 1        # @trade and @aggTrade ids are different chains
            return
        self.on_trade(symbol, native, price, size, side, str(tid), ts_event, ts_recv, tid)


class BinanceUSCollector(MarketDataCollector):
    """Binance.US depth + trades over one combined stream, REST snapshots off the read loop.

    Options: ``depth_stream`` (``"depth@100ms"`` | ``"depth"``), ``trade_stream``
    (``"trade"`` | ``"aggTrade"``), ``snapshot_limit`` (1000), ``weight_budget`` (REST weight
    per minute we allow ourselves, of Binance's 1200), ``rest_timeout``, ``ban_backoff``
    (seconds to wait after an HTTP 418), ``snapshot_retry`` (first retry delay after a failed
    snapshot request).
    """

    name: ClassVar[str] = "binanceus"
    parser_class: ClassVar[type[FeedParser]] = BinanceUSParser
    default_url: ClassVar[str] = "wss://stream.binance.us:9443"
    url_env: ClassVar[str] = "ALPHAPULSE_BINANCEUS_WS_URL"
    default_rest_url: ClassVar[str | None] = "https://api.binance.us"
    rest_url_env: ClassVar[str | None] = "ALPHAPULSE_BINANCEUS_REST_URL"
    # No application heartbeat; quiet symbols can go a minute without a depth change.
    stale_after_default: ClassVar[dict[str, float]] = {"*": 120.0}

    def __init__(self, symbols: list[str], *, depth_stream: str = "depth@100ms",
                 trade_stream: str = "trade", snapshot_limit: int = 1000,
                 weight_budget: int = 600, rest_timeout: float = 10.0,
                 ban_backoff: float = 300.0, snapshot_retry: float = 1.0,
                 max_lifetime: float | None = 23.5 * 3600, **kwargs: Any) -> None:
        if depth_stream not in ("depth@100ms", "depth"):
            raise ValueError(f"depth_stream must be 'depth@100ms' or 'depth', not {depth_stream!r}")
        if trade_stream not in ("trade", "aggTrade"):
            raise ValueError(f"trade_stream must be 'trade' or 'aggTrade', not {trade_stream!r}")
        if not 1 <= snapshot_limit <= 5000:
            raise ValueError("snapshot_limit must be within 1..5000")
        super().__init__(symbols, max_lifetime=max_lifetime, **kwargs)
        self.insts = [instrument("binanceus", s) for s in self.symbols]
        self.depth_stream, self.trade_stream = depth_stream, trade_stream
        self.snapshot_limit, self.rest_timeout = snapshot_limit, rest_timeout
        self.snapshot_retry = snapshot_retry
        self.limiter = WeightLimiter(weight_budget, ban_backoff=ban_backoff)
        self.url = self._stream_url(self.url)
        self.rest_requests = 0
        self.rest_errors: dict[str, int] = {}
        self._wanted: dict[str, None] = {}          # symbols whose snapshot is due (ordered)
        self._worker: asyncio.Task[None] | None = None

    def _stream_url(self, url: str) -> str:
        streams = "/".join(f"{stream_name(i)}@{kind}" for i in self.insts
                           for kind in (self.depth_stream, self.trade_stream))
        parts = urlsplit(url)
        if parts.query or parts.path.startswith("/ws/"):
            return url                               # the caller spelled it out
        path = parts.path.rstrip("/")
        if not path.endswith("/stream"):
            path += "/stream"
        return f"{parts.scheme}://{parts.netloc}{path}?streams={streams}"

    @property
    def stats(self) -> dict[str, Any]:
        out = super().stats
        out.update(rest_requests=self.rest_requests, rest_errors=dict(self.rest_errors),
                   rest_blocked_for=round(self.limiter.blocked_for, 3))
        return out

    def subscribe_messages(self) -> list[str | bytes]:
        return []                                    # the streams are named in the URL

    async def on_connected(self, ws: ClientConnection) -> None:
        await super().on_connected(ws)
        if self._worker is not None:
            self._worker.cancel()
        self._wanted = dict.fromkeys(i.symbol for i in self.insts)
        self._worker = asyncio.get_running_loop().create_task(self._snapshots(ws))

    async def resync(self, ws: ClientConnection, symbols: dict[str, str]) -> None:
        """A new snapshot for each symbol, on the same connection (events keep buffering)."""
        for symbol in symbols:
            for s in ([i.symbol for i in self.insts] if not symbol else [symbol]):
                self._wanted[s] = None
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._snapshots(ws))

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        await super().stop()

    async def _snapshots(self, ws: ClientConnection) -> None:
        """Fetch due snapshots one at a time, within the weight budget, until none is due."""
        failures = 0
        weight = snapshot_weight(self.snapshot_limit)
        while self._wanted and self._ws is ws:
            symbol = next(iter(self._wanted))
            native = instrument("binanceus", symbol).native
            await self.limiter.acquire(weight)
            url = (f"{self.rest_url.rstrip('/')}/api/v3/depth?symbol={native}"
                   f"&limit={self.snapshot_limit}")
            self.rest_requests += 1
            try:
                resp = await http_get(url, timeout=self.rest_timeout)
            except (OSError, TimeoutError, ValueError) as exc:
                self.rest_errors["network"] = self.rest_errors.get("network", 0) + 1
                log.warning("binanceus: snapshot %s failed: %s", native, exc)
                resp = None
            if resp is not None:
                self.limiter.observe(resp)
                if resp.status == 200:
                    if self._ws is not ws:
                        return                       # that connection is gone
                    self._wanted.pop(symbol, None)
                    failures = 0
                    parser = self.parser
                    parser.rest_symbol = symbol      # type: ignore[attr-defined]
                    try:
                        self.feed_rest(resp.body)
                    finally:
                        parser.rest_symbol = None    # type: ignore[attr-defined]
                    continue
                key = str(resp.status)
                self.rest_errors[key] = self.rest_errors.get(key, 0) + 1
                log.warning("binanceus: snapshot %s: HTTP %d %s", native, resp.status,
                            resp.body[:200].decode("utf-8", "replace"))
                if resp.status in (429, 418):
                    continue                         # the limiter now waits Retry-After
            failures += 1
            await asyncio.sleep(min(30.0, self.snapshot_retry * 2 ** (failures - 1)))
