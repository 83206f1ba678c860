"""The exchange side of Coinbase's WebSocket feeds, serving a capture.

Written from protocols.md §1-2 and the captures, never from ``alphapulse.exchanges``.  Which of
the two protocols to speak is told by the capture itself: Advanced Trade frames carry
``channel``/``sequence_num``/``events``, Exchange-feed frames only ``type``.

Advanced Trade:

* one subscribe message per channel (``{"type":"subscribe","product_ids":[...],
  "channel":"level2"}``), answered by a ``subscriptions`` frame listing everything the client
  holds; ``level2`` data goes out as ``l2_data``;
* ``sequence_num`` is this connection's own counter: 0 on every new connection, +1 per frame
  sent, across channels.  Capture frames keep their relative numbering, so a hole in the
  capture (``coinbase-gap``) or a frame dropped by a fault switch still shows as a jump, and a
  reordered frame as a step back;
* a client that subscribes after the capture's own snapshot went by (reconnect, resubscribe
  after a gap) gets a snapshot of the market *now*: ``l2_data`` rendered from the book model,
  ``market_trades`` with the last 100 trades, newest first;
* after the capture, ``heartbeats`` frames once a second.

Exchange feed: ``{"type":"subscribe","product_ids":[...],"channels":[...]}`` → a
``subscriptions`` frame; ``level2``/``level2_batch`` deliver ``snapshot`` then ``l2update``,
``matches`` delivers ``last_match`` then ``match``; a late subscriber gets a rendered snapshot
and ``last_match``; idle ``heartbeat`` frames carry ``last_trade_id``.
"""
from __future__ import annotations

import re
import time
from collections import deque
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import orjson

from ._server import Market, ReplayExchange, ReplayServer, Session

__all__ = ["EXCHANGE", "CoinbaseReplay"]

_SEQ = re.compile(rb'"sequence_num"\s*:\s*\d+')
AT_CHANNELS = {"level2": "l2_data", "market_trades": "market_trades", "heartbeats": "heartbeats",
               "ticker": "ticker", "ticker_batch": "ticker_batch", "candles": "candles",
               "status": "status"}
_AT_FRAME_TO_SUB = {v: k for k, v in AT_CHANNELS.items()}
EXCHANGE_CHANNELS = ("level2", "level2_batch", "matches", "ticker", "heartbeat", "status")
_EX_TYPE_TO_SUB = {"snapshot": ("level2", "level2_batch"), "l2update": ("level2", "level2_batch"),
                   "match": ("matches",), "last_match": ("matches",), "ticker": ("ticker",),
                   "heartbeat": ("heartbeat",)}


def _zero(qty: str) -> bool:
    return not str(qty).strip("0.")


def _now_text() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class CoinbaseMarket(Market):
    """The exchange's view at the cursor: books, recent trades, per-product sequence."""

    def __init__(self, replay: CoinbaseReplay) -> None:
        self.replay = replay
        self.books: dict[str, dict[str, dict[Decimal, tuple[str, str]]]] = {}
        self.trades: dict[str, deque[dict[str, Any]]] = {}
        self.sequence: dict[str, int] = {}
        self.timestamp: str | None = None

    def copy(self) -> CoinbaseMarket:
        other = CoinbaseMarket(self.replay)
        other.books = {p: {s: dict(levels) for s, levels in b.items()} for p, b in self.books.items()}
        other.trades = {p: deque(t, maxlen=100) for p, t in self.trades.items()}
        other.sequence = dict(self.sequence)
        other.timestamp = self.timestamp
        return other

    def _set(self, product: str, side: str, price: str, qty: str, reset: bool = False) -> None:
        book = self.books.setdefault(product, {"bid": {}, "ask": {}})
        levels = book["bid" if side in ("bid", "buy") else "ask"]
        key = Decimal(price)
        if _zero(qty):
            levels.pop(key, None)
        else:
            levels[key] = (price, qty)

    def apply(self, index: int, frame: bytes) -> None:
        msg = self.replay.parsed[index]
        if not isinstance(msg, dict):
            return
        try:
            self._apply(msg)
        except (KeyError, TypeError, ValueError, ArithmeticError, AttributeError):
            pass                                # a hostile test frame: the market ignores it

    def _apply(self, msg: dict[str, Any]) -> None:
        if self.replay.advanced:
            self.timestamp = msg.get("timestamp", self.timestamp)
            channel = msg.get("channel")
            for event in msg.get("events") or ():
                if channel == "l2_data":
                    product = event["product_id"]
                    if event.get("type") == "snapshot":
                        self.books[product] = {"bid": {}, "ask": {}}
                    for u in event.get("updates", ()):
                        self._set(product, u["side"], u["price_level"], u["new_quantity"])
                elif channel == "market_trades":
                    for t in sorted(event.get("trades", ()), key=lambda t: int(t["trade_id"])):
                        self.trades.setdefault(t["product_id"], deque(maxlen=100)).append(t)
            return
        kind, product = msg.get("type"), msg.get("product_id")
        if "time" in msg:
            self.timestamp = msg["time"]
        if isinstance(msg.get("sequence"), int):
            self.sequence[product] = msg["sequence"]
        if kind == "snapshot":
            self.books[product] = {"bid": {}, "ask": {}}
            for side, key in (("bid", "bids"), ("ask", "asks")):
                for price, qty, *_ in msg.get(key, ()):
                    self._set(product, side, price, qty)
        elif kind == "l2update":
            for side, price, qty in msg.get("changes", ()):
                self._set(product, side, price, qty)
        elif kind in ("match", "last_match"):
            self.trades.setdefault(product, deque(maxlen=100)).append(msg)

    def levels(self, product: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        book = self.books[product]
        bids = [book["bid"][k] for k in sorted(book["bid"], reverse=True)]
        asks = [book["ask"][k] for k in sorted(book["ask"])]
        return bids, asks


class CoinbaseSession(Session):
    market: CoinbaseMarket

    def __init__(self, server: ReplayServer, ws: Any) -> None:
        super().__init__(server, ws)
        self.replay: CoinbaseReplay = server.exchange  # type: ignore[assignment]
        self.subs: dict[str, set[str]] = {}            # subscribe channel -> products
        self.ready: set[str] = set()                   # products whose L2 snapshot was sent
        self.seq = 0                                   # next sequence_num (Advanced Trade)
        self._last: tuple[int, int] | None = None      # (index, highest capture seq)
        self._beat = 0

    # ---- client messages ------------------------------------------------------------------
    async def on_message(self, message: str | bytes) -> None:
        try:
            msg = orjson.loads(message)
        except orjson.JSONDecodeError:
            msg = None
        if not isinstance(msg, dict) or msg.get("type") not in ("subscribe", "unsubscribe"):
            await self._error("Failed to parse message", "expected a subscribe message")
            return
        products = msg.get("product_ids") or []
        if not isinstance(products, list) or not all(isinstance(p, str) for p in products):
            await self._error("Failed to subscribe", "product_ids must be a list of strings")
            return
        unknown = [p for p in products if p not in self.replay.products]
        if unknown:
            await self._error("Failed to subscribe", f"{unknown[0]} is not a valid product")
            return
        if self.replay.advanced:
            channel = msg.get("channel")
            if "channels" in msg or channel not in AT_CHANNELS:
                await self._error("Failed to subscribe", f"unknown channel {channel!r}")
                return
            channels = [channel]
        else:
            channels = [c["name"] if isinstance(c, dict) else c for c in msg.get("channels") or []]
            if "channel" in msg or not channels or any(c not in EXCHANGE_CHANNELS
                                                       for c in channels):
                await self._error("Failed to subscribe", f"unknown channels {channels!r}")
                return
        subscribe = msg["type"] == "subscribe"
        for channel in channels:
            held = self.subs.setdefault(channel, set())
            if subscribe:
                held.update(products or (["heartbeats"] if channel == "heartbeats" else []))
            else:
                held.difference_update(products)
                if channel in ("level2", "level2_batch"):
                    self.ready.difference_update(products)
        await self._ack()
        if subscribe:
            for channel in channels:
                for product in products:
                    for frame in self._late_snapshot(channel, product):
                        await self.send(self._number(frame))
        self.start_stream()

    async def _error(self, message: str, reason: str) -> None:
        await self.send(orjson.dumps({"type": "error", "message": message, "reason": reason}))

    async def _ack(self) -> None:
        subs = {c: sorted(p) for c, p in self.subs.items() if p}
        if self.replay.advanced:
            await self.send(self._number(orjson.dumps({
                "channel": "subscriptions", "timestamp": self._ts(), "sequence_num": 0,
                "events": [{"subscriptions": subs}]})))
        else:
            await self.send(orjson.dumps({"type": "subscriptions", "channels": [
                {"name": c, "product_ids": p} for c, p in subs.items()]}))

    def _ts(self) -> str:
        return self.market.timestamp or _now_text()

    def _late_snapshot(self, channel: str, product: str) -> list[bytes]:
        """Frames a subscriber gets when the capture's own snapshot is already past."""
        m, ts = self.market, self._ts()
        if channel in ("level2", "level2_batch") and product in m.books:
            self.ready.add(product)
            bids, asks = m.levels(product)
            if self.replay.advanced:
                updates = [{"side": side, "event_time": ts, "price_level": p, "new_quantity": q}
                           for side, levels in (("bid", bids), ("offer", asks))
                           for p, q in levels]
                return [orjson.dumps({"channel": "l2_data", "timestamp": ts, "sequence_num": 0,
                                      "events": [{"type": "snapshot", "product_id": product,
                                                  "updates": updates}]})]
            return [orjson.dumps({"type": "snapshot", "product_id": product,
                                  "bids": [list(lv) for lv in bids],
                                  "asks": [list(lv) for lv in asks], "time": ts})]
        if channel in ("market_trades", "matches") and m.trades.get(product):
            if self.replay.advanced:
                recent = list(reversed(m.trades[product]))
                return [orjson.dumps({"channel": "market_trades", "timestamp": ts,
                                      "sequence_num": 0, "events": [{"type": "snapshot",
                                                                     "trades": recent}]})]
            last = dict(m.trades[product][-1], type="last_match")
            return [orjson.dumps(last)]
        return []

    # ---- numbering (Advanced Trade) -------------------------------------------------------
    def _number(self, frame: bytes, bump: int = 0) -> bytes:
        if not self.replay.advanced:
            return frame
        n = self.seq + bump
        self.seq = n + 1
        return _SEQ.sub(b'"sequence_num":%d' % n, frame, count=1)

    def _bump(self, index: int) -> int:
        """Numbers the client must see skipped before capture frame ``index``: frames a fault
        switch withheld, and holes in the capture's own numbering."""
        seqs = self.replay.seqs
        cap_seq, last = seqs[index], self._last
        if last is None:
            self._last = (index, cap_seq if cap_seq is not None else -1)
            return 0
        last_index, top = last
        if index <= last_index:
            return 0
        withheld = sum(1 for j in range(last_index + 1, index) if self._wants(j))
        hole = 0
        if cap_seq is not None and cap_seq > top:
            if top >= 0:
                # numbers between the highest seen and this one that no frame of the
                # capture carries (frames withheld in between are counted above)
                between = sum(1 for j in range(last_index + 1, index)
                              if seqs[j] is not None and top < seqs[j] < cap_seq)
                hole = cap_seq - top - 1 - between
            top = cap_seq
        self._last = (index, top)
        return withheld + hole

    def _wants(self, index: int) -> bool:
        info = self.replay.info[index]
        return info is not None and info[0] != "raw" and bool(self._filter(index, info,
                                                                         peek=True))

    # ---- streaming ------------------------------------------------------------------------
    def outgoing(self, index: int, frame: bytes) -> tuple[bytes, ...]:
        info = self.replay.info[index]
        bump = self._bump(index) if self.replay.advanced else 0
        if info is None:
            return ()
        out = self._filter(index, info, peek=False)
        if out is None:
            return ()
        if info[0] == "raw":
            self.seq += bump                    # not numbered: it is not even JSON
            return (out,)
        return (self._number(out, bump),)

    def _filter(self, index: int, info: tuple[str, frozenset[str]], *,
                peek: bool) -> bytes | None:
        frame_kind, products = info
        frame = self.replay.frames[index]
        if frame_kind == "raw":                 # unparseable (hostile tests): to everyone
            return frame if any(self.subs.values()) else None
        if self.replay.advanced:
            sub = _AT_FRAME_TO_SUB.get(frame_kind)
            held = self.subs.get(sub or "", set())
            if sub is None or not held:
                return None
            if frame_kind == "heartbeats" or not products:
                return frame
            if frame_kind != "l2_data":
                return frame if products & held else None
            msg = self.replay.parsed[index]
            keep = []
            for event in msg["events"]:
                product = event.get("product_id")
                if product not in held:
                    continue
                if event.get("type") == "snapshot":
                    if not peek:
                        self.ready.add(product)
                elif product not in self.ready:
                    continue                    # no snapshot yet: updates are meaningless
                keep.append(event)
            if not keep:
                return None
            if len(keep) == len(msg["events"]):
                return frame
            return orjson.dumps(dict(msg, events=keep))
        (product,) = products or ("",)
        subs = _EX_TYPE_TO_SUB.get(frame_kind)
        if subs is None or not any(product in self.subs.get(s, ()) for s in subs):
            return None
        if frame_kind == "snapshot" and not peek:
            self.ready.add(product)
        elif frame_kind == "l2update" and product not in self.ready:
            return None
        return frame

    def idle_frame(self) -> bytes | None:
        self._beat += 1
        if self.replay.advanced:
            if not self.subs.get("heartbeats"):
                return None
            now = datetime.now(timezone.utc)
            return self._number(orjson.dumps({
                "channel": "heartbeats", "timestamp": _now_text(), "sequence_num": 0,
                "events": [{"current_time": now.strftime("%Y-%m-%d %H:%M:%S.%f000 +0000 UTC"),
                            "heartbeat_counter": self._beat}]}))
        held = sorted(self.subs.get("heartbeat", ()))
        if not held:
            return None
        product = held[self._beat % len(held)]
        trades = self.market.trades.get(product)
        return orjson.dumps({"type": "heartbeat", "sequence": self.market.sequence.get(product, 0),
                             "last_trade_id": trades[-1]["trade_id"] if trades else 0,
                             "product_id": product, "time": _now_text()})


class CoinbaseReplay(ReplayExchange):
    """Reads the capture once: protocol, products, each frame's kind/products/sequence_num."""

    name = "coinbase"
    session_class = CoinbaseSession

    def __init__(self, frames: list[bytes]) -> None:
        super().__init__(frames)
        self.parsed: list[Any] = []
        self.info: list[tuple[str, frozenset[str]] | None] = []
        self.seqs: list[int | None] = []
        self.products: set[str] = set()
        self.advanced = any(b'"channel"' in f[:200] for f in frames[:50])
        for frame in frames:
            try:
                msg = orjson.loads(frame)
            except orjson.JSONDecodeError:
                msg = None
            self.parsed.append(msg)
            self.info.append(self._classify(msg))
            seq = msg.get("sequence_num") if isinstance(msg, dict) else None
            self.seqs.append(seq if isinstance(seq, int) else None)

    def new_market(self) -> CoinbaseMarket:
        return CoinbaseMarket(self)

    def _classify(self, msg: Any) -> tuple[str, frozenset[str]] | None:
        if not isinstance(msg, dict):
            return "raw", frozenset()
        if self.advanced:
            channel = msg.get("channel")
            if channel in (None, "subscriptions"):
                return None                     # acks come from the session, not the capture
            found: set[str] = set()
            for event in msg.get("events") or ():
                if isinstance(event, dict):
                    if isinstance(event.get("product_id"), str):
                        found.add(event["product_id"])
                    for key in ("trades", "tickers", "candles"):
                        found.update(x["product_id"] for x in event.get(key) or ()
                                     if isinstance(x, dict) and "product_id" in x)
            self.products.update(found)
            return channel, frozenset(found)
        kind, product = msg.get("type"), msg.get("product_id")
        if kind not in _EX_TYPE_TO_SUB or not isinstance(product, str):
            return None
        self.products.add(product)
        return kind, frozenset((product,))

    def frame_time(self, index: int, frame: bytes) -> float | None:
        msg = self.parsed[index]
        if not isinstance(msg, dict):
            return None
        text = msg.get("timestamp") or msg.get("time")
        if not isinstance(text, str) or len(text) < 19:
            return None
        head = time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
        frac = text[20:].rstrip("Z").split("+")[0] if text[19:20] == "." else ""
        return float(datetime(*head[:6], tzinfo=timezone.utc).timestamp()) + (
            float("0." + frac) if frac.isdigit() else 0.0)


EXCHANGE = CoinbaseReplay
