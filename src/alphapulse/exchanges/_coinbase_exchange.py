"""Coinbase's legacy *Exchange* feed (``wss://ws-feed.exchange.coinbase.com``), parser half.

A mixin for :class:`alphapulse.exchanges.coinbase.CoinbaseParser`, which tells the two Coinbase
protocols apart frame by frame (Advanced Trade frames carry ``channel``, Exchange frames only
``type``), so one parser reads either capture and ``verify`` needs no flag.

Integrity rules of this feed (protocols.md §2), which differ from Advanced Trade's:

* level2 / level2_batch messages (``snapshot``, ``l2update``) carry **no** sequence number:
  a lost l2update cannot be detected from the feed itself;
* ``match`` messages carry ``trade_id``, which runs +1 per product: a jump is a trade gap,
  a repeat is a duplicate (dropped);
* ``sequence`` is a per-product counter shared with the whole order flow, so on ``matches`` and
  ``ticker`` it jumps by hundreds (normal); it must only never go backwards.

Also here: :func:`iso_ns`, the RFC 3339 parser both protocols use for exchange timestamps.
"""
from __future__ import annotations

import calendar
from typing import TYPE_CHECKING, Any

from ..errors import ProtocolError

if TYPE_CHECKING:
    from .._book import OrderBook

__all__ = ["ExchangeFeedMixin", "iso_ns"]

_SECONDS: dict[str, int] = {}


_SCALE = tuple(10 ** (9 - n) for n in range(10))     # fraction digits -> ns multiplier


def iso_ns(text: Any) -> int:
    """``"2026-08-09T21:05:42.514318Z"`` (0-9 fraction digits, ``Z`` or ``+00:00``) -> int ns.

    The whole-second prefix is cached: a feed's timestamps share it for a second at a time,
    so the usual cost is one dict lookup and one ``int()`` of the fraction.
    """
    base = _SECONDS.get(text[:19]) if type(text) is str else None
    if base is None:
        base = _seconds(text)
    # the common form first: ".<1-9 digits>Z"
    if text[19:20] == "." and text[-1:] == "Z":
        frac = text[20:-1]
        if 0 < len(frac) <= 9 and frac.isdigit() and frac.isascii():
            return base + int(frac) * _SCALE[len(frac)]
    tail = text[19:]
    if tail == "Z" or tail == "+00:00":
        return base
    if tail[:1] == "." and tail.endswith("+00:00"):
        frac = tail[1:-6]
        if 0 < len(frac) <= 9 and frac.isdigit() and frac.isascii():
            return base + int(frac) * _SCALE[len(frac)]
    raise ProtocolError("bad_timestamp", f"not an RFC 3339 UTC time: {text!r:.60}")


def _seconds(text: Any) -> int:
    """The epoch ns of ``text``'s whole second (validated), cached."""
    if type(text) is not str or len(text) < 20 or text[10] != "T" or not text.isascii():
        raise ProtocolError("bad_timestamp", f"not an RFC 3339 UTC time: {text!r:.60}")
    head = text[:19]
    try:
        y, mo, d = int(head[0:4]), int(head[5:7]), int(head[8:10])
        h, mi, s = int(head[11:13]), int(head[14:16]), int(head[17:19])
        if head[4] + head[7] + head[13] + head[16] != "--::" or not (
                1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 61):
            raise ValueError(head)
        base = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) * 1_000_000_000
    except ValueError:
        raise ProtocolError("bad_timestamp", f"not an RFC 3339 UTC time: {text!r:.60}") \
            from None
    if len(_SECONDS) > 4096:            # bounded: a long run sees a new second every second
        _SECONDS.clear()
    _SECONDS[head] = base
    return base


_TAKER = {"buy": "sell", "sell": "buy"}     # Exchange `match.side` is the MAKER's side


class ExchangeFeedMixin:
    """Frame handlers of the Exchange feed; the host class is a ``FeedParser``."""

    # provided by CoinbaseParser / FeedParser
    _product: Any
    touch: Any
    gap: Any
    apply_snapshot: Any
    apply_update: Any
    on_trade: Any
    _last_trade: dict[str, int]
    max_levels: int

    def _init_exchange_feed(self) -> None:
        self._sequence: dict[str, int] = {}          # product -> last `sequence` seen

    def _reset_exchange_feed(self) -> None:
        self._sequence.clear()

    def _exchange_frame(self, msg: dict[str, Any], ts_recv: int) -> None:
        kind = msg.get("type")
        if kind == "l2update":
            self.touch("level2")
            book = self._exchange_book(msg)
            if book is None or not self._live(book.symbol):
                return
            changes = msg["changes"]
            if type(changes) is not list:
                raise ProtocolError("malformed", "l2update.changes is not a list")
            if len(changes) > self.max_levels:
                raise ProtocolError("too_many_levels", f"{len(changes)} changes")
            self.apply_update(book, changes, iso_ns(msg["time"]), ts_recv)
        elif kind == "snapshot":
            self.touch("level2")
            book = self._exchange_book(msg)
            if book is None:
                return
            bids, asks = msg["bids"], msg["asks"]
            if type(bids) is not list or type(asks) is not list:
                raise ProtocolError("malformed", "snapshot bids/asks are not lists")
            if len(bids) + len(asks) > self.max_levels:
                raise ProtocolError("too_many_levels", f"{len(bids) + len(asks)} levels")
            ts = iso_ns(msg["time"]) if "time" in msg else ts_recv
            self.apply_snapshot(book, bids, asks, ts, ts_recv)
        elif kind == "match" or kind == "last_match":
            self.touch("matches")
            self._exchange_match(msg, kind == "last_match", ts_recv)
        elif kind == "heartbeat":
            self.touch("heartbeat")
        elif kind == "ticker":
            self.touch("ticker")
            self._check_sequence(msg, ts_recv)
        elif kind == "subscriptions":
            self.touch("subscriptions")
        elif kind == "error":
            raise ProtocolError("exchange_error", f"{msg.get('message')}: {msg.get('reason')}")
        else:
            raise ProtocolError("unknown_type", f"type {kind!r:.40}")

    def _exchange_book(self, msg: dict[str, Any]) -> OrderBook | None:
        return self._product(msg["product_id"])  # type: ignore[no-any-return]

    def _check_sequence(self, msg: dict[str, Any], ts_recv: int) -> bool:
        """False (and rejected) when ``sequence`` went backwards: a stale or replayed frame."""
        product, seq = msg.get("product_id"), msg.get("sequence")
        if type(seq) is not int or type(product) is not str:
            raise ProtocolError("bad_sequence", f"sequence {seq!r:.40}")
        last = self._sequence.get(product)
        if last is not None and seq < last:
            raise ProtocolError("stale_sequence", f"{product} sequence {seq} after {last}")
        self._sequence[product] = seq
        return True

    def _exchange_match(self, msg: dict[str, Any], history: bool, ts_recv: int) -> None:
        book = self._exchange_book(msg)
        if book is None:
            return
        symbol = book.symbol
        tid = msg["trade_id"]
        if type(tid) is not int or tid < 0:
            raise ProtocolError("bad_trade_id", f"trade_id {tid!r:.40}")
        side = _TAKER.get(msg["side"])
        if side is None:
            raise ProtocolError("bad_side", f"match side {msg['side']!r:.20}")
        price, size = msg["price"], msg["size"]
        if type(price) is not str or type(size) is not str:
            raise ProtocolError("wrong_type", "match price/size must be decimal strings")
        _check_decimal(price, "price", positive=True)
        _check_decimal(size, "size", positive=True)
        ts_event = iso_ns(msg["time"])
        self._check_sequence(msg, ts_recv)
        if history:
            # `last_match` repeats the latest trade on (re)subscribe: it only anchors the
            # trade-id chain, unless we already had one and it is news to us.
            last = self._last_trade.get(symbol)
            if last is None or tid <= last:
                self._last_trade[symbol] = max(tid, last or 0)
                return
        self.on_trade(symbol, msg["product_id"], price, size, side, str(tid), ts_event,
                      ts_recv, tid)

    def _live(self, symbol: str) -> bool:  # pragma: no cover - provided by the host
        raise NotImplementedError


def _check_decimal(text: str, name: str, *, positive: bool) -> None:
    """Trade prices/sizes never reach a book, so check them here: plain non-negative decimals."""
    body = text.replace(".", "", 1)
    if not body.isdigit() or not body.isascii():
        raise ProtocolError(f"bad_{name}", f"{name} {text!r:.40} is not a decimal number")
    if positive and not body.strip("0"):
        raise ProtocolError(f"bad_{name}", f"{name} {text!r:.40} must be positive")
