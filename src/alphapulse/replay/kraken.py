"""The exchange side of Kraken's WebSocket, v1 and v2, serving a capture.

Written from Kraken's documents and the captures (shared/docs/protocols.md §3, §3b), never from
``alphapulse.exchanges``.  On connect: the ``status`` (v2) / ``systemStatus`` (v1) frame.
Subscribe / unsubscribe / ping are answered as Kraken does (one ack per symbol, ``req_id`` /
``reqid`` echoed).  Capture control frames (acks, status, pong) are never replayed; data frames
go to the clients subscribed to their channel and symbol.  A client that subscribes after the
capture's own snapshot went by (resubscribe after a checksum failure, reconnect) gets a fresh
snapshot rendered from the market model, with its checksum computed here from the rules.
"""
from __future__ import annotations

import copy
import json
import re
import zlib
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import orjson

from ._server import Market, ReplayExchange, ReplayServer, Session

__all__ = ["EXCHANGE", "KrakenReplay"]

_V1_TS = re.compile(rb'"(\d{9,10}\.\d+)"')
_V2_TS = re.compile(rb'"timestamp":"([^"]+)"')
_CONTROL_EVENTS = ("systemStatus", "subscriptionStatus", "pong", "heartbeat")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _crc_part(text: str) -> str:
    return text.replace(".", "").lstrip("0")


class _Book:
    """One pair's book as the exchange holds it: price -> (price text, qty text, extra)."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.bids: dict[Decimal, tuple[Any, ...]] = {}
        self.asks: dict[Decimal, tuple[Any, ...]] = {}

    def set(self, side: dict[Decimal, tuple[Any, ...]], level: tuple[Any, ...]) -> None:
        price, qty = Decimal(str(level[0])), Decimal(str(level[1]))
        if qty == 0:
            side.pop(price, None)
        else:
            side[price] = level

    def truncate(self) -> None:
        if self.depth:
            for side, best_first in ((self.bids, True), (self.asks, False)):
                for price in sorted(side, reverse=best_first)[self.depth:]:
                    del side[price]

    def top(self, n: int = 0) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        bids = [self.bids[p] for p in sorted(self.bids, reverse=True)]
        asks = [self.asks[p] for p in sorted(self.asks)]
        return (bids[:n], asks[:n]) if n else (bids, asks)


class KrakenMarket(Market):
    """Books per native symbol, kept from the capture's frames (v1 strings / v2 decimals)."""

    def __init__(self, replay: KrakenReplay) -> None:
        self.replay = replay
        self.books: dict[str, _Book] = {}

    def copy(self) -> KrakenMarket:
        other = KrakenMarket(self.replay)
        other.books = copy.deepcopy(self.books)
        return other

    def apply(self, index: int, frame: bytes) -> None:
        kind = self.replay.kinds[index]
        if kind is None or kind[0] != "book":
            return
        native, snapshot = kind[1], kind[2]
        if self.replay.v1:
            msg = json.loads(frame)
            book = self.books.setdefault(native, _Book(self.replay.depths.get(native, 0)))
            for payload in msg[1:-2]:
                if snapshot:
                    book.bids.clear()
                    book.asks.clear()
                for key, side in (("as", book.asks), ("bs", book.bids), ("a", book.asks),
                                  ("b", book.bids)):
                    for level in payload.get(key, ()):
                        book.set(side, tuple(level[:3]))
            book.truncate()
            return
        msg = json.loads(frame, parse_float=Decimal, parse_int=Decimal)
        for entry in msg["data"]:
            sym = entry["symbol"]
            book = self.books.get(sym)
            if book is None or snapshot:
                book = self.books[sym] = _Book(self.replay.depths.get(sym, 0))
            for level in entry.get("bids", ()):
                book.set(book.bids, (level["price"], level["qty"]))
            for level in entry.get("asks", ()):
                book.set(book.asks, (level["price"], level["qty"]))
            book.truncate()

    # ---- rendering ------------------------------------------------------------------------
    def checksum(self, native: str) -> int:
        bids, asks = self.books[native].top(10)
        if self.replay.v1:
            parts = [_crc_part(p) + _crc_part(q) for p, q, *_ in asks + bids]
        else:
            pp, sp = self.replay.precision(native)
            parts = [_crc_part(f"{p:.{pp}f}") + _crc_part(f"{q:.{sp}f}")
                     for p, q in asks + bids]
        return zlib.crc32("".join(parts).encode())

    def snapshot_frame(self, native: str, channel_id: int | None = None) -> bytes:
        book = self.books[native]
        bids, asks = book.top(book.depth)
        if self.replay.v1:
            payload = {"as": [list(lv) for lv in asks], "bs": [list(lv) for lv in bids]}
            return orjson.dumps([channel_id, payload, f"book-{book.depth}", native])
        pp, sp = self.replay.precision(native)

        def levels(side: list[tuple[Any, ...]]) -> str:
            # Kraken writes numbers at full precision (trailing zeros): build the text here.
            return ",".join(f'{{"price":{p:.{pp}f},"qty":{q:.{sp}f}}}' for p, q in side)

        return (f'{{"channel":"book","type":"snapshot","data":[{{"symbol":"{native}",'
                f'"bids":[{levels(bids)}],"asks":[{levels(asks)}],'
                f'"checksum":{self.checksum(native)},"timestamp":"{_now()}"}}]}}').encode()


class KrakenSession(Session):
    market: KrakenMarket

    def __init__(self, server: ReplayServer, ws: Any) -> None:
        super().__init__(server, ws)
        self.replay: KrakenReplay = server.exchange  # type: ignore[assignment]
        self.subs: set[tuple[str, str]] = set()      # (channel, native)
        self.started: set[str] = set()               # natives whose book this client has

    async def on_open(self) -> None:
        cid = 10**15 + self.server.connections
        if self.replay.v1:
            await self.send(orjson.dumps({"connectionID": cid, "event": "systemStatus",
                                          "status": "online", "version": "1.9.1"}))
        else:
            await self.send(orjson.dumps({"channel": "status", "type": "update", "data": [
                {"api_version": "v2", "connection_id": cid, "system": "online",
                 "version": "2.0.9"}]}))

    async def on_message(self, message: str | bytes) -> None:
        try:
            msg = orjson.loads(message)
        except orjson.JSONDecodeError:
            await self.send(orjson.dumps({"error": "Malformed request", "success": False}))
            return
        if not isinstance(msg, dict):
            return
        if self.replay.v1:
            await self._v1(msg)
        else:
            await self._v2(msg)

    # ---- v2 -------------------------------------------------------------------------------
    async def _v2(self, msg: dict[str, Any]) -> None:
        method, req_id = msg.get("method"), msg.get("req_id")
        time_in = _now()

        def ack(**fields: Any) -> bytes:
            out = {"method": method, **fields, "time_in": time_in, "time_out": _now()}
            if req_id is not None:
                out["req_id"] = req_id
            return orjson.dumps(out)

        if method == "ping":
            await self.send(ack())
            return
        params = msg.get("params") or {}
        channel = params.get("channel")
        if method not in ("subscribe", "unsubscribe") or channel not in (
                "book", "trade", "instrument", "heartbeat"):
            await self.send(ack(error=f"Unsupported request {method}/{channel}", success=False))
            return
        if channel == "instrument":
            self._toggle(method, ("instrument", ""))
            await self.send(ack(result={"channel": "instrument", "snapshot": True}, success=True))
            if method == "subscribe" and self.replay.instrument_frame is not None:
                await self.send(self.replay.instrument_frame)
            self.start_stream()
            return
        for native in params.get("symbol") or []:
            if native not in self.replay.symbols:
                await self.send(ack(error=f"Currency pair not supported {native}",
                                    success=False, symbol=native))
                continue
            result: dict[str, Any] = {"channel": channel, "symbol": native}
            if channel == "book":
                result.update(depth=self.replay.depths.get(native, 10), snapshot=True)
            else:
                result.update(snapshot=bool(params.get("snapshot", False)))
            self._toggle(method, (channel, native))
            await self.send(ack(result=result, success=True))
            if channel == "book":
                self.started.discard(native)
                if method == "subscribe" and native in self.market.books:
                    await self.send(self.market.snapshot_frame(native))
                    self.started.add(native)
        self.start_stream()

    # ---- v1 -------------------------------------------------------------------------------
    async def _v1(self, msg: dict[str, Any]) -> None:
        event, reqid = msg.get("event"), msg.get("reqid")
        if event == "ping":
            await self.send(orjson.dumps({"event": "pong", "reqid": reqid}))
            return
        sub = msg.get("subscription") or {}
        name = sub.get("name")
        if event not in ("subscribe", "unsubscribe") or name not in ("book", "trade"):
            await self.send(orjson.dumps({"errorMessage": "Unsupported event", "event": "error",
                                          "reqid": reqid, "status": "error"}))
            return
        for native in msg.get("pair") or []:
            base = {"event": "subscriptionStatus", "pair": native, "reqid": reqid}
            if native not in self.replay.symbols:
                await self.send(orjson.dumps({**base, "errorMessage": "Currency pair not "
                                              "supported", "status": "error",
                                              "subscription": sub}))
                continue
            depth = self.replay.depths.get(native, 10)
            channel_name = f"book-{depth}" if name == "book" else "trade"
            subscription = {"depth": depth, "name": "book"} if name == "book" else {"name": name}
            cid = self.replay.channel_ids.get((channel_name, native), 0)
            self._toggle(event, (name, native))
            status = "subscribed" if event == "subscribe" else "unsubscribed"
            await self.send(orjson.dumps({"channelID": cid, "channelName": channel_name, **base,
                                          "status": status, "subscription": subscription}))
            if name == "book":
                self.started.discard(native)
                if event == "subscribe" and native in self.market.books:
                    await self.send(self.market.snapshot_frame(native, cid))
                    self.started.add(native)
        self.start_stream()

    def _toggle(self, method: str, key: tuple[str, str]) -> None:
        if method == "subscribe":
            self.subs.add(key)
        else:
            self.subs.discard(key)

    # ---- streaming ------------------------------------------------------------------------
    def outgoing(self, index: int, frame: bytes) -> tuple[bytes, ...]:
        kind = self.replay.kinds[index]
        if kind is None:
            return ()
        channel, native, snapshot = kind
        if channel == "heartbeat":
            return (frame,) if self.subs else ()
        if (channel, native) not in self.subs:
            return ()
        if channel == "book":
            if snapshot:
                self.started.add(native)
            elif native not in self.started:
                return ()                 # no snapshot yet: updates would be meaningless
        return (frame,)

    def idle_frame(self) -> bytes | None:
        if not self.subs:
            return None
        return b'{"event":"heartbeat"}' if self.replay.v1 else b'{"channel":"heartbeat"}'


class KrakenReplay(ReplayExchange):
    """Reads the capture once: protocol, per-frame (channel, symbol, snapshot), depths,
    precisions, v1 channel ids."""

    name = "kraken"
    session_class = KrakenSession

    def __init__(self, frames: list[bytes]) -> None:
        super().__init__(frames)
        self.kinds: list[tuple[str, str, bool] | None] = []
        self.symbols: set[str] = set()
        self.depths: dict[str, int] = {}
        self.precisions: dict[str, tuple[int, int]] = {}
        self._decimals: dict[str, list[int]] = {}
        self.channel_ids: dict[tuple[str, str], int] = {}
        self.instrument_frame: bytes | None = None
        self.v1 = False
        for frame in frames:
            self.kinds.append(self._classify(frame))
        self.ws_path = "/" if self.v1 else "/v2"  # type: ignore[misc]

    def new_market(self) -> KrakenMarket:
        return KrakenMarket(self)

    def precision(self, native: str) -> tuple[int, int]:
        if native in self.precisions:
            return self.precisions[native]
        pp, sp = self._decimals.get(native, [1, 8])
        return pp, sp

    def _classify(self, frame: bytes) -> tuple[str, str, bool] | None:
        try:
            msg = orjson.loads(frame)
        except orjson.JSONDecodeError:
            return None
        if isinstance(msg, list) and len(msg) >= 4:
            self.v1 = True
            name, native = msg[-2], msg[-1]
            self.symbols.add(native)
            channel = "book" if name.startswith("book") else name
            self.channel_ids.setdefault((name, native), msg[0])
            snapshot = channel == "book" and ("as" in msg[1] or "bs" in msg[1])
            if snapshot:
                self.depths.setdefault(native, int(name[5:]) if name[5:].isdigit() else
                                       max(len(msg[1].get("as", ())), len(msg[1].get("bs", ()))))
            return channel, native, snapshot
        if not isinstance(msg, dict):
            return None
        if msg.get("event") in _CONTROL_EVENTS:
            self.v1 = True
            if msg.get("event") == "subscriptionStatus" and str(
                    msg.get("channelName", "")).startswith("book-"):
                self.depths[msg["pair"]] = int(msg["channelName"][5:])
            return ("heartbeat", "", False) if msg.get("event") == "heartbeat" else None
        if msg.get("method") == "subscribe":
            result = msg.get("result") or {}
            if result.get("channel") == "book" and isinstance(result.get("depth"), int):
                self.depths[result["symbol"]] = result["depth"]
            return None
        channel = msg.get("channel")
        if channel == "instrument":
            self.instrument_frame = frame
            for pair in (msg.get("data") or {}).get("pairs", ()):
                self.precisions[pair["symbol"]] = (pair["price_precision"], pair["qty_precision"])
            return None                   # served on subscribe, not in the stream
        if channel == "heartbeat":
            return "heartbeat", "", False
        if channel in ("book", "trade"):
            data = msg.get("data") or [{}]
            native = data[0].get("symbol", "")
            self.symbols.add(native)
            snapshot = channel == "book" and msg.get("type") == "snapshot"
            if channel == "book":
                self._learn_decimals(native, frame)
                if snapshot:
                    self.depths.setdefault(native, max(len(data[0].get("bids", ())),
                                                       len(data[0].get("asks", ()))))
            return channel, native, snapshot
        return None                       # status and anything else: not replayed

    def _learn_decimals(self, native: str, frame: bytes) -> None:
        # Without an instrument frame, the widest number text is the precision (a capture
        # re-serialised without trailing zeros still shows it somewhere).
        best = self._decimals.setdefault(native, [0, 0])
        for i, key in enumerate((rb'"price":\d+\.(\d+)', rb'"qty":\d+\.(\d+)')):
            for frac in re.findall(key, frame):
                best[i] = max(best[i], len(frac))

    def frame_time(self, index: int, frame: bytes) -> float | None:
        if self.v1:
            m = _V1_TS.search(frame)
            return float(m.group(1)) if m else None
        m = _V2_TS.search(frame)
        if not m:
            return None
        return datetime.fromisoformat(m.group(1).decode().replace("Z", "+00:00")).timestamp()


EXCHANGE = KrakenReplay
