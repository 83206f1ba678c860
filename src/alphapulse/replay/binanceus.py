"""The exchange side of Binance.US market streams and the REST depth snapshot, from a capture.

Written from binance-us-api-docs (protocols.md §4) and the captures, never from
``alphapulse.exchanges``.

* WebSocket: ``/stream?streams=<s1>/<s2>`` sends combined frames ``{"stream", "data"}``;
  ``/ws/<s1>/<s2>`` sends bare events.  Stream names are lower case (``btcusd@depth@100ms``,
  ``@depth``, ``@trade``, ``@aggTrade``, ``@bookTicker``, ``@kline_1m``).  Live
  ``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` / ``SET_PROPERTY`` requests are
  answered (``{"result": null, "id": n}``).  No application heartbeat: the server's WebSocket
  pings are the keepalive, as on the real endpoint.
* REST: ``GET /api/v3/depth?symbol=X&limit=N`` (and the old ``/api/v1/depth``) returns
  ``{"lastUpdateId", "bids", "asks"}`` of the market *now*: the book model kept from the
  capture's REST body and the depth events after it.  Asked before the capture's own body went
  by, it answers with that body (a snapshot a little ahead of the stream, which the alignment
  rules handle, as when the real REST answer is faster than the stream).  Request weight is
  counted per minute and reported in ``X-MBX-USED-WEIGHT-1M``; over 1200 the answer is 429.

A capture's REST body names no symbol; it belongs to the symbol whose depth events bridge its
``lastUpdateId`` (``U <= lastUpdateId+1 <= u``), else to the nearest preceding depth event's.
"""
from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import orjson

from ._server import Market, ReplayExchange, ReplayServer, Session

__all__ = ["EXCHANGE", "BinanceUSReplay"]

WEIGHT_LIMIT = 1200
_KINDS = {"depthUpdate": "depth", "trade": "trade", "aggTrade": "aggTrade", "kline": "kline"}


def _stream_kind(name: str) -> tuple[str, str] | None:
    """``"btcusd@depth@100ms"`` -> ("BTCUSD", "depth"); None for streams we cannot serve."""
    native, _, rest = name.partition("@")
    kind = rest.split("@")[0]
    if kind.startswith("kline_"):
        kind = "kline"
    if not native or kind not in ("depth", "trade", "aggTrade", "bookTicker", "kline"):
        return None
    return native.upper(), kind


def _weight(limit: int) -> int:
    return 1 if limit <= 100 else 5 if limit <= 500 else 10 if limit <= 1000 else 50


class BinanceUSMarket(Market):
    """Per-symbol book (price -> (price text, qty text)) and its lastUpdateId."""

    def __init__(self, replay: BinanceUSReplay) -> None:
        self.replay = replay
        self.books: dict[str, tuple[dict[Decimal, tuple[str, str]], dict[Decimal, tuple[str, str]]]] = {}
        self.last_id: dict[str, int] = {}

    def copy(self) -> BinanceUSMarket:
        other = BinanceUSMarket(self.replay)
        other.books = {s: (dict(b), dict(a)) for s, (b, a) in self.books.items()}
        other.last_id = dict(self.last_id)
        return other

    def apply(self, index: int, frame: bytes) -> None:
        info = self.replay.info[index]
        if info is None:
            return
        kind, native = info
        data = self.replay.data[index]
        try:
            if kind == "rest" and native not in self.books:
                self.books[native] = ({}, {})
                self._levels(native, data["bids"], data["asks"])
                self.last_id[native] = data["lastUpdateId"]
            elif kind == "depth" and native in self.books and data["u"] > self.last_id[native]:
                self._levels(native, data["b"], data["a"])
                self.last_id[native] = data["u"]
        except (KeyError, TypeError, ValueError, ArithmeticError):
            pass                                   # a hostile test frame: the market ignores it

    def _levels(self, native: str, bids: list[Any], asks: list[Any]) -> None:
        for side, levels in zip(self.books[native], (bids, asks)):
            for price, qty in levels:
                key = Decimal(price)
                if Decimal(qty) == 0:
                    side.pop(key, None)
                else:
                    side[key] = (price, qty)

    def snapshot(self, native: str, limit: int) -> bytes | None:
        if native not in self.books:
            body = self.replay.first_snapshot.get(native)
            if body is None:
                return None
            return orjson.dumps({"lastUpdateId": body["lastUpdateId"],
                                 "bids": body["bids"][:limit], "asks": body["asks"][:limit]})
        bids, asks = self.books[native]
        return orjson.dumps({
            "lastUpdateId": self.last_id[native],
            "bids": [list(bids[k]) for k in sorted(bids, reverse=True)[:limit]],
            "asks": [list(asks[k]) for k in sorted(asks)[:limit]]})


class BinanceUSSession(Session):
    def __init__(self, server: ReplayServer, ws: Any) -> None:
        super().__init__(server, ws)
        self.replay: BinanceUSReplay = server.exchange  # type: ignore[assignment]
        self.streams: dict[tuple[str, str], str] = {}   # (NATIVE, kind) -> stream name asked
        self.combined = True

    async def on_open(self) -> None:
        path = getattr(self.ws.request, "path", "/") if self.ws.request else "/"
        route, _, query = path.partition("?")
        names: list[str] = []
        if route.rstrip("/") == "/stream":
            self.combined = True
            for item in query.split("&"):
                key, _, value = item.partition("=")
                if key == "streams":
                    names = [n for n in value.split("/") if n]
        elif route.startswith("/ws"):
            self.combined = False
            names = [n for n in route[3:].split("/") if n]
        self._add(names)
        if self.streams:
            self.start_stream()

    def _add(self, names: list[str]) -> list[str]:
        bad = []
        for name in names:
            key = _stream_kind(name)
            if key is None:
                bad.append(name)
            else:
                self.streams[key] = name
        return bad

    async def on_message(self, message: str | bytes) -> None:
        try:
            msg = orjson.loads(message)
        except orjson.JSONDecodeError:
            msg = None
        if not isinstance(msg, dict) or not isinstance(msg.get("id"), (int, str)):
            await self.send(orjson.dumps({"error": {"code": 3, "msg": "Invalid JSON"}}))
            return
        method, params, rid = msg.get("method"), msg.get("params") or [], msg["id"]
        if method in ("SUBSCRIBE", "UNSUBSCRIBE") and isinstance(params, list) and all(
                isinstance(p, str) for p in params):
            if method == "SUBSCRIBE":
                bad = self._add(params)
                if bad:
                    await self.send(orjson.dumps({"error": {"code": 2, "msg": f"Invalid request: "
                                                  f"unknown stream {bad[0]}"}, "id": rid}))
                    return
                self.start_stream()
            else:
                for name in params:
                    key = _stream_kind(name)
                    if key is not None:
                        self.streams.pop(key, None)
            await self.send(orjson.dumps({"result": None, "id": rid}))
        elif method == "LIST_SUBSCRIPTIONS":
            await self.send(orjson.dumps({"result": sorted(self.streams.values()), "id": rid}))
        elif method == "SET_PROPERTY" and isinstance(params, list) and len(params) == 2 \
                and params[0] == "combined" and isinstance(params[1], bool):
            self.combined = params[1]
            await self.send(orjson.dumps({"result": None, "id": rid}))
        else:
            await self.send(orjson.dumps({"error": {"code": 2, "msg": "Invalid request"},
                                          "id": rid}))

    def outgoing(self, index: int, frame: bytes) -> tuple[bytes, ...]:
        info = self.replay.info[index]
        if info is None:
            return ()
        kind, native = info
        if kind == "raw":                          # unparseable (hostile tests): to everyone
            return (frame,) if self.streams else ()
        name = self.streams.get((native, kind))
        if name is None:
            return ()
        wrapped = self.replay.wrapped[index]
        if self.combined:
            if wrapped == name:
                return (frame,)
            return (b'{"stream":"%s","data":%s}' % (name.encode(), self.replay.raw_data(index)),)
        return (self.replay.raw_data(index) if wrapped else frame,)


class BinanceUSReplay(ReplayExchange):
    """Reads the capture once: each frame's kind and symbol, the REST bodies' owners."""

    name = "binanceus"
    session_class = BinanceUSSession

    def __init__(self, frames: list[bytes]) -> None:
        super().__init__(frames)
        self.info: list[tuple[str, str] | None] = []
        self.data: list[Any] = []
        self.wrapped: list[str | None] = []        # the stream name of a combined frame
        self.first_snapshot: dict[str, dict[str, Any]] = {}
        self._minute = (0, 0)                      # (minute number, weight used)
        depth_events: list[tuple[int, str, int, int]] = []
        for index, frame in enumerate(frames):
            try:
                msg = orjson.loads(frame)
            except orjson.JSONDecodeError:
                msg = None
            stream = None
            if isinstance(msg, dict) and isinstance(msg.get("stream"), str) and "data" in msg:
                stream, msg = msg["stream"], msg["data"]
            self.wrapped.append(stream)
            self.data.append(msg)
            info = self._classify(msg, stream)
            self.info.append(info)
            if info is not None and info[0] == "depth":
                depth_events.append((index, info[1], msg["U"], msg["u"]))
        for index, msg in enumerate(self.data):
            if self.info[index] == ("rest", ""):
                owner = self._owner(index, msg["lastUpdateId"], depth_events)
                self.info[index] = ("rest", owner) if owner else None
                if owner:
                    self.first_snapshot.setdefault(owner, msg)
        self.symbols = {info[1] for info in self.info if info is not None and info[1]}

    @staticmethod
    def _classify(msg: Any, stream: str | None) -> tuple[str, str] | None:
        if not isinstance(msg, dict):
            return "raw", ""                       # not an event (hostile tests): passed on
        if "lastUpdateId" in msg and isinstance(msg["lastUpdateId"], int):
            return "rest", ""
        symbol = msg.get("s")
        kind = _KINDS.get(msg.get("e", ""))
        if kind is None and "B" in msg and "A" in msg and "u" in msg:
            kind = "bookTicker"
        if stream is not None:
            parsed = _stream_kind(stream)
            if parsed is not None:
                return parsed[1], parsed[0]
        if kind is None or not isinstance(symbol, str):
            return None
        if kind == "depth" and not (isinstance(msg.get("U"), int) and isinstance(msg.get("u"), int)):
            return None
        return kind, symbol.upper()

    def _owner(self, index: int, last_id: int,
               events: list[tuple[int, str, int, int]]) -> str | None:
        for _, native, first, final in events:
            if first <= last_id + 1 <= final:
                return native
        before = [native for i, native, _, _ in events if i < index]
        after = [native for i, native, _, _ in events if i > index]
        return before[-1] if before else (after[0] if after else None)

    def raw_data(self, index: int) -> bytes:
        return orjson.dumps(self.data[index])

    def new_market(self) -> BinanceUSMarket:
        return BinanceUSMarket(self)

    def frame_time(self, index: int, frame: bytes) -> float | None:
        msg = self.data[index]
        if isinstance(msg, dict) and isinstance(msg.get("E"), int):
            return float(msg["E"]) / 1000.0
        return None

    def http(self, path: str, query: dict[str, str],
             market: Market) -> tuple[int, dict[str, str], bytes] | None:
        if path not in ("/api/v3/depth", "/api/v1/depth"):
            return None
        limit_text = query.get("limit", "100")
        limit = int(limit_text) if limit_text.isdigit() else -1
        if not 1 <= limit <= 5000:
            return 400, {}, b'{"code":-1100,"msg":"Illegal characters found in parameter \'limit\'."}'
        minute = int(time.monotonic() // 60)
        used = (self._minute[1] if self._minute[0] == minute else 0) + _weight(limit)
        self._minute = (minute, used)
        headers = {"X-MBX-USED-WEIGHT-1M": str(used)}
        if used > WEIGHT_LIMIT:
            return 429, {**headers, "Retry-After": str(60 - int(time.monotonic()) % 60)}, \
                b'{"code":-1003,"msg":"Too many requests."}'
        symbol = query.get("symbol", "")
        if symbol not in self.symbols:
            return 400, headers, b'{"code":-1121,"msg":"Invalid symbol."}'
        body = market.snapshot(symbol, limit)  # type: ignore[attr-defined]
        if body is None:
            return 503, headers, b'{"code":-1001,"msg":"Internal error; unable to process your request."}'
        return 200, headers, body


EXCHANGE = BinanceUSReplay
