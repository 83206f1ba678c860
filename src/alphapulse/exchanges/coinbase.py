"""Coinbase: Advanced Trade WebSocket (the default) and the legacy Exchange feed.

Advanced Trade (``wss://advanced-trade-ws.coinbase.com``, protocols.md §1):

* one subscribe message per channel: ``level2``, ``market_trades``, ``heartbeats`` (the last
  keeps quiet subscriptions from being closed after 60-90 s);
* every frame is ``{"channel", "timestamp", "sequence_num", "events"}``; ``sequence_num`` is ONE
  counter per connection across all channels, from 0, +1 per frame.  A jump (or a step back:
  a duplicated or reordered frame) means some frame of *some* channel was lost or is stale, so
  every book on the connection is rebuilt (level2 is unsubscribed and subscribed again, which
  brings fresh snapshots) and exactly one Gap is reported per incident;
* ``l2_data`` events: ``snapshot`` / ``update`` with ``updates: [{side: "bid"|"offer",
  price_level, new_quantity}]`` (absolute sizes, ``"0"`` deletes);
* ``market_trades``: ``side`` is the MAKER's side (the capture shows SELL prints at the offer),
  so the taker side we publish is the opposite.  Trades are deduplicated by ``trade_id`` across
  reconnects; the snapshot of recent trades sent on (re)subscribe fills a reconnect's hole
  (trades newer than the last one seen are emitted) and a hole it cannot fill is a gap.

The Exchange feed (``wss://ws-feed.exchange.coinbase.com``) is handled by the mixin in
``_coinbase_exchange.py``; the parser recognises each frame's protocol by itself, the collector
picks the subscribe dialect from ``feed=`` or the URL.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import orjson
from websockets.asyncio.client import ClientConnection

from .._book import OrderBook
from ..errors import ProtocolError
from ..events import Event
from ..symbols import from_native, instrument
from ._coinbase_exchange import ExchangeFeedMixin, _check_decimal, iso_ns
from ._scanned import MAKE_BOOK_UPDATE, deliver
from .base import _FRAME_ERRORS, LIVE, RESYNCING, FeedParser, MarketDataCollector, \
    make_book_update
from .parser import HOTPATH_MISSING

try:  # the compiled scanner for the hottest frame; a missing build is a loud error
    from ._scan import coinbase_l2_snapshot as _scan_snapshot
    from ._scan import coinbase_l2_update as _scan_l2
    from ._scan import coinbase_trades as _scan_trades
except ImportError as exc:
    raise ImportError(HOTPATH_MISSING) from exc
# Test-oracle switch, not a fallback: setting ``_scan_l2`` to None (the unit tests monkeypatch
# it) sends every frame through the orjson path, so both paths are checked against each other.

__all__ = ["ADVANCED_TRADE_URL", "EXCHANGE_URL", "CoinbaseCollector", "CoinbaseParser",
           "iso_ns"]

ADVANCED_TRADE_URL = "wss://advanced-trade-ws.coinbase.com"
EXCHANGE_URL = "wss://ws-feed.exchange.coinbase.com"
_MAKER_TO_TAKER = {"BUY": "sell", "SELL": "buy"}
_IGNORED_CHANNELS = frozenset({"ticker", "ticker_batch", "candles", "status"})
_loads = orjson.loads

class CoinbaseParser(ExchangeFeedMixin, FeedParser):
    """Sans-IO Coinbase parser (Advanced Trade and Exchange feed frames, told apart per frame).

    ``max_levels`` bounds one message's level count (the real BTC-USD snapshot has 46,000);
    ``max_trades`` one message's trade count.  Larger arrays are rejected as hostile.
    """

    exchange: ClassVar[str] = "coinbase"

    def __init__(self, symbols: Iterable[str] | None = None, *,
                 sink: Callable[[Event], None] | None = None, depth: int = 0,
                 max_levels: int = 500_000, max_trades: int = 10_000, **kwargs: Any) -> None:
        super().__init__(symbols, sink=sink, depth=depth, **kwargs)
        self.max_levels, self.max_trades = max_levels, max_trades
        self._expected: int | None = None          # next sequence_num on this connection
        self._hole: tuple[int, int] | None = None  # numbers skipped by the last jump
        self._products: dict[Any, OrderBook | None] = {}
        self._scan_products: dict[bytes, tuple[OrderBook, str]] = {}   # for ``_scan_l2``
        self._last_ts: tuple[Any, int] = ("", 0)          # last l2 timestamp text -> ns
        self.sequence_anomalies = 0
        self.protocol: str | None = None            # "advanced_trade" | "exchange", as seen
        self._init_exchange_feed()
        self._subscribed = {inst.native: inst for inst in
                            (instrument(self.exchange, s) for s in self.symbols or ())}

    # ---- FeedParser hooks -----------------------------------------------------------------
    def reset_connection(self) -> None:
        self._expected = None                      # a new connection counts from 0 again
        self._hole = None
        self._reset_exchange_feed()

    def resume_offline(self, symbol: str) -> None:
        if symbol:
            super().resume_offline(symbol)
        else:                                       # a connection-wide gap: every book
            for name in list(self.books):
                super().resume_offline(name)

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        out["sequence_anomalies"] = self.sequence_anomalies
        return out

    def feed(self, frame: bytes | str, ts_recv: int | None = None) -> None:
        # The hottest frame (an in-order l2_data update of a live book) is scanned and applied
        # in C; anything the scanner does not fully recognise takes the general path below.
        expected = self._expected
        if expected is not None and type(frame) is bytes and _scan_l2 is not None:
            if ts_recv is None:
                ts_recv = time.time_ns()
            hit = _scan_l2(frame, expected, self._scan_products, self._states, self.max_levels,
                           MAKE_BOOK_UPDATE, ts_recv)
            if hit is not None:
                self._expected = expected + 1
                self.protocol = "advanced_trade"
                deliver(self, hit, "level2", ts_recv)
                return
            # A full-book snapshot (46,000 levels for BTC-USD): scanned into the (price, size)
            # pairs the general path would build, without decoding every level's dict.
            snap = _scan_snapshot(frame, expected, self.max_levels)
            if snap is not None:
                self.messages += 1
                self._expected = expected + 1
                self.protocol = "advanced_trade"
                self.touch("level2")
                try:
                    self._snapshot(self._product(snap[0]), snap[2], snap[3], snap[1], ts_recv)
                except _FRAME_ERRORS as exc:
                    self.frame_error(exc, ts_recv)
                return
            trades = _scan_trades(frame, expected, self.max_trades)
            if trades is not None:          # validated in C but for the product ids
                self.messages += 1
                self._expected = expected + 1
                self.protocol = "advanced_trade"
                self.touch("market_trades")
                try:
                    parsed = [(self._product(t[0]).symbol, *t) for t in trades]  # type: ignore
                    self._emit_trades(parsed, "update", ts_recv)
                except _FRAME_ERRORS as exc:
                    self.frame_error(exc, ts_recv)
                return
        FeedParser.feed(self, frame, ts_recv)

    def parse(self, frame: bytes | str, ts_recv: int) -> None:
        msg = _loads(frame)
        if type(msg) is not dict:
            raise ProtocolError("malformed", "frame is not a JSON object")
        channel = msg.get("channel")
        if channel is None:
            self.protocol = "exchange"
            self._exchange_frame(msg, ts_recv)
            return
        self.protocol = "advanced_trade"
        seq = msg.get("sequence_num")
        if type(seq) is int and seq == self._expected:
            self._expected = seq + 1                # in order: the usual case, inline
        elif not self._sequence_ok(seq, ts_recv):
            return
        events = msg["events"]
        if type(events) is not list:
            raise ProtocolError("malformed", "events is not a list")
        if channel == "l2_data":
            activity = self.activity
            activity["level2"] = activity.get("level2", 0) + 1
            ts = msg["timestamp"]
            if ts == self._last_ts[0]:
                ts_event = self._last_ts[1]
            else:
                ts_event = iso_ns(ts)
                self._last_ts = (ts, ts_event)
            if len(events) == 1 and self._fast_update(events[0], ts_event, ts_recv):
                return
            for event in events:
                self._l2_event(event, ts_event, ts_recv)
        elif channel == "market_trades":
            self.touch("market_trades")
            for event in events:
                self._trades_event(event, ts_recv)
        elif channel == "heartbeats":
            self.touch("heartbeats")
        elif channel == "subscriptions":
            self.touch("subscriptions")
        elif channel in _IGNORED_CHANNELS:
            self.touch(channel)
        else:
            raise ProtocolError("unknown_channel", f"channel {channel!r:.40}")

    # ---- sequence_num ---------------------------------------------------------------------
    def _sequence_ok(self, seq: Any, ts_recv: int) -> bool:
        """Check the connection-wide counter; False when the frame must be skipped."""
        if type(seq) is not int or seq < 0:
            raise ProtocolError("bad_sequence", f"sequence_num {seq!r:.40}")
        expected = self._expected
        if expected is None or seq == expected:
            self._expected = seq + 1
            return True
        self.sequence_anomalies += 1
        if seq > expected:
            # Frames expected..seq-1 of some channel are lost: every book is suspect.  The
            # counter follows the feed, so the reordered straggler that may follow is stale.
            self._expected = seq + 1
            self._hole = (expected, seq - 1)
            self._connection_gap(f"sequence_num {expected}..{seq - 1} missed", seq - expected,
                                 ts_recv)
            return True
        hole = self._hole
        if hole is not None and hole[0] <= seq <= hole[1]:
            return False            # a straggler of the jump already reported: same incident
        # A step back: a duplicated or reordered frame.  Its content is stale by definition;
        # if the books are not already being rebuilt, they cannot be trusted either.
        self._connection_gap(f"sequence_num {seq} after {expected - 1} (duplicate or out of "
                             "order)", -1, ts_recv)
        return False

    def _connection_gap(self, detail: str, missed: int, ts_recv: int) -> None:
        if self.books and all(self.state(s) == RESYNCING for s in self.books):
            return                                 # one incident, one gap
        self.gap("", "sequence", detail, missed, ts_recv)

    # ---- level2 ---------------------------------------------------------------------------
    def _product(self, product: Any) -> OrderBook | None:
        """The book for a product id, or None (rejected) when it is not ours."""
        try:
            book = self._products[product]
        except KeyError:
            pass
        except TypeError:
            raise ProtocolError("unknown_symbol", f"product_id {product!r:.40}") from None
        else:
            if book is None:        # known and not ours (cached): rejected every time
                raise ProtocolError("unknown_symbol", f"product_id {product!r:.40}")
            return book
        if type(product) is not str or len(product) > 40:
            raise ProtocolError("unknown_symbol", f"product_id {product!r:.40}")
        try:
            # Subscribed symbols first: a concatenated native (USDTUSD) is ambiguous alone.
            inst = self._subscribed.get(product) or from_native("coinbase", product)
        except ValueError:
            inst = None
        book = self.book_for(inst) if inst is not None and self.wants(inst.symbol) else None
        if len(self._products) < 10_000:            # hostile ids must not grow this forever
            self._products[product] = book
        if book is not None and product.isascii():
            self._scan_products[product.encode()] = (book, self.natives[book.symbol])
        if book is None:
            raise ProtocolError("unknown_symbol", f"product_id {product!r:.40}")
        return book

    def _live(self, symbol: str) -> bool:
        return self._states.get(symbol) == LIVE

    def _fast_update(self, event: Any, ts_event: int, ts_recv: int) -> bool:
        """The hottest shape (one product's update for a live book), without the layers of
        the general path; False hands the event to the general path."""
        if type(event) is not dict or event.get("type") != "update":
            return False
        product = event.get("product_id")
        book = self._products.get(product) if type(product) is str else None
        if book is None:
            return False
        updates = event["updates"]
        symbol = book.symbol
        if type(updates) is not list or len(updates) > self.max_levels or \
                self._states.get(symbol) != LIVE:
            return False
        delta = book.apply([(u["side"], u["price_level"], u["new_quantity"]) for u in updates])
        self.updates += 1
        self.sink(make_book_update("coinbase", symbol, self.natives[symbol], delta, ts_event,
                                   ts_recv))
        if book.crossed:
            self.gap(symbol, "crossed", f"best bid {book.best_bid()} >= best ask "
                     f"{book.best_ask()}", -1, ts_recv)
        return True

    def _l2_event(self, event: dict[str, Any], ts_event: int, ts_recv: int) -> None:
        book = self._product(event["product_id"])
        assert book is not None
        updates = event["updates"]
        if type(updates) is not list:
            raise ProtocolError("malformed", "l2_data updates is not a list")
        if len(updates) > self.max_levels:
            raise ProtocolError("too_many_levels", f"{len(updates)} levels in one event")
        kind = event["type"]
        if kind == "update":
            if self._states.get(book.symbol) != LIVE:
                return                              # waiting for the (re)snapshot
            changes = [(u["side"], u["price_level"], u["new_quantity"]) for u in updates]
            self.apply_update(book, changes, ts_event, ts_recv)
        elif kind == "snapshot":
            bids, asks = [], []
            for u in updates:
                side = u["side"]
                level = (u["price_level"], u["new_quantity"])
                if side == "bid":
                    bids.append(level)
                elif side == "offer" or side == "ask":
                    asks.append(level)
                else:
                    raise ProtocolError("bad_side", f"side {side!r:.20}")
            self._snapshot(book, bids, asks, ts_event, ts_recv)
        else:
            raise ProtocolError("unknown_type", f"l2_data event type {kind!r:.40}")

    def _snapshot(self, book: OrderBook | None, bids: list[Any], asks: list[Any], ts_event: int,
                  ts_recv: int) -> None:
        assert book is not None
        self.apply_snapshot(book, bids, asks, ts_event, ts_recv)
        if self.check_crossed and book.crossed:
            self.gap(book.symbol, "crossed", "snapshot is crossed", -1, ts_recv)

    # ---- market_trades --------------------------------------------------------------------
    def _trades_event(self, event: dict[str, Any], ts_recv: int) -> None:
        trades = event["trades"]
        if type(trades) is not list:
            raise ProtocolError("malformed", "market_trades trades is not a list")
        if len(trades) > self.max_trades:
            raise ProtocolError("too_many_trades", f"{len(trades)} trades in one event")
        kind = event["type"]
        if kind not in ("update", "snapshot"):
            raise ProtocolError("unknown_type", f"market_trades event type {kind!r:.40}")
        self._emit_trades([self._trade(t) for t in trades], kind, ts_recv)

    def _emit_trades(self, parsed: list[tuple[Any, ...]], kind: str, ts_recv: int) -> None:
        """Emit one event's trades, all validated (``_trade``'s tuples) before any is."""
        parsed.sort(key=_trade_key)                 # snapshots come newest first
        last_trade = self._last_trade
        known = {p[0]: last_trade.get(p[0]) for p in parsed} if kind == "snapshot" else None
        for symbol, native, price, size, side, tid, ts_event, seq in parsed:
            if known is not None:
                # Recent history sent on (re)subscribe: on first contact it only anchors the
                # id chain; after a reconnect the ids beyond the last one seen were missed
                # while away and are emitted now (on_trade dedupes the rest).
                last = known[symbol]
                if last is None or seq is None:
                    if seq is not None:
                        last_trade[symbol] = max(last_trade.get(symbol, seq), seq)
                    continue
                if seq <= last:
                    continue
            self.on_trade(symbol, native, price, size, side, tid, ts_event, ts_recv, seq)

    def _trade(self, t: dict[str, Any]) -> tuple[Any, ...]:
        book = self._product(t["product_id"])
        assert book is not None
        side = _MAKER_TO_TAKER.get(t["side"])
        if side is None:
            raise ProtocolError("bad_side", f"trade side {t['side']!r:.20}")
        price, size, tid = t["price"], t["size"], t["trade_id"]
        if type(price) is not str or type(size) is not str or type(tid) is not str:
            raise ProtocolError("wrong_type", "trade price/size/trade_id must be strings")
        _check_decimal(price, "price", positive=True)
        _check_decimal(size, "size", positive=True)
        seq = int(tid) if tid.isdigit() and tid.isascii() and len(tid) < 19 else None
        return (book.symbol, t["product_id"], price, size, side, tid, iso_ns(t["time"]), seq)


def _trade_key(parsed: tuple[Any, ...]) -> int:
    return parsed[7] if parsed[7] is not None else -1


class CoinbaseCollector(MarketDataCollector):
    """Coinbase market data: Advanced Trade by default, the Exchange feed with
    ``feed="exchange"`` (or a URL containing ``ws-feed``).

    Options: ``feed`` (``"advanced_trade"`` | ``"exchange"``), ``level2_channel`` for the
    Exchange feed (``"level2_batch"``, public; ``"level2"`` needs authentication today).
    """

    name: ClassVar[str] = "coinbase"
    parser_class: ClassVar[type[FeedParser]] = CoinbaseParser
    default_url: ClassVar[str] = ADVANCED_TRADE_URL
    url_env: ClassVar[str] = "ALPHAPULSE_COINBASE_WS_URL"
    # Both protocols send >= 1 frame/s once heartbeats are subscribed.
    stale_after_default: ClassVar[dict[str, float]] = {"*": 10.0}

    def __init__(self, symbols: list[str], *, url: str | None = None,
                 feed: str | None = None, level2_channel: str = "level2_batch",
                 **kwargs: Any) -> None:
        if feed not in (None, "advanced_trade", "exchange"):
            raise ValueError(f"feed must be 'advanced_trade' or 'exchange', not {feed!r}")
        if feed == "exchange" and url is None and not os.environ.get(self.url_env):
            url = EXCHANGE_URL
        self.level2_channel = level2_channel
        super().__init__(symbols, url=url, **kwargs)
        self.feed = feed or ("exchange" if "ws-feed" in self.url else "advanced_trade")

    @property
    def _natives(self) -> list[str]:
        return [from_native("coinbase", s).native for s in self.symbols]

    def subscribe_messages(self) -> list[str | bytes]:
        products = self._natives
        # str, so they go out as text frames (bytes would be sent as binary frames)
        if self.feed == "exchange":
            return [orjson.dumps({"type": "subscribe", "product_ids": products, "channels": [
                self.level2_channel, "matches", "heartbeat"]}).decode()]
        return [orjson.dumps({"type": "subscribe", "product_ids": products, "channel": ch}
                             ).decode() for ch in ("level2", "market_trades", "heartbeats")]

    async def resync(self, ws: ClientConnection, symbols: dict[str, str]) -> None:
        """Rebuild books on the same connection: unsubscribe and subscribe level2 again,
        which makes the exchange send fresh snapshots (the connection's counter goes on)."""
        if "" in symbols:
            products = self._natives
        else:
            products = [self.parser.natives.get(s) or from_native("coinbase", s).native
                        for s in symbols]
        for kind in ("unsubscribe", "subscribe"):
            if self.feed == "exchange":
                msg = {"type": kind, "product_ids": products, "channels": [self.level2_channel]}
            else:
                msg = {"type": kind, "product_ids": products, "channel": "level2"}
            await ws.send(orjson.dumps(msg).decode())
