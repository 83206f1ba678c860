"""TEMPLATE: copy to ``exchanges/<name>.py`` to add an exchange (see docs/adding-an-exchange.md).

It is a complete, working collector for a made-up exchange whose feed looks like this (it is
exercised by tests/unit/test_template.py, so the template cannot rot):

    -> {"op":"subscribe","channels":["book","trades"],"symbols":["BTC_USD"]}
    <- {"type":"subscribed","channel":"book","symbol":"BTC_USD"}
    <- {"type":"snapshot","symbol":"BTC_USD","seq":7,"ts":1732700000123,"bids":[["96500.1","0.5"]],"asks":[["96500.2","1.25"]]}
    <- {"type":"update","symbol":"BTC_USD","seq":8,"ts":1732700000150,"changes":[["bid","96500.1","0"]]}
    <- {"type":"trade","symbol":"BTC_USD","id":991,"price":"96500.2","size":"0.01","taker":"buy","ts":1732700000151}
    <- {"type":"heartbeat"}

Replace every ``EXAMPLE`` bit with the real exchange's protocol, keep the shape.  Rules:
  * ``parse`` never does I/O and never blocks; raise ``ProtocolError(reason, detail)`` on
    anything malformed (``feed`` counts, logs once per reason, and carries on);
  * prices and sizes stay decimal *text* end to end (``orjson`` gives floats for JSON numbers:
    see exchanges/kraken.py for taking the exact text from the raw frame);
  * integrity: whatever the exchange gives (sequence numbers, checksums, update ids) is checked
    on every message; a failure calls ``self.gap(...)``, which marks the book ``resyncing`` and
    queues a resync that the collector performs (``resync()``) or ``verify`` simulates;
  * trades with an integer id go through ``on_trade(..., seq=id)`` (dedupe + gap counting).
"""
from __future__ import annotations

from typing import Any

import orjson

from ..errors import ProtocolError
from ..symbols import Instrument
from .base import LIVE, FeedParser, MarketDataCollector

__all__ = ["ExampleCollector", "ExampleParser"]

# EXAMPLE: the symbol table.  Either add the exchange to alphapulse/symbols.py (one
# _CONVENTIONS row + _PRECISIONS rows) or, as here, keep it in this module by overriding
# FeedParser.instrument / instrument_for_native.  Precisions must be what the exchange uses.
_PAIRS = {"BTC-USD": ("BTC_USD", 1, 8), "ETH-USD": ("ETH_USD", 2, 8)}
_BY_NATIVE = {native: symbol for symbol, (native, _, _) in _PAIRS.items()}


class ExampleParser(FeedParser):
    """Sans-IO: frames in -> books + events out.  One instance per collector (and per verify)."""

    exchange = "example"

    def __init__(self, symbols: Any = None, **kwargs: Any) -> None:
        super().__init__(symbols, **kwargs)
        self._seq: dict[str, int] = {}            # per-connection state: reset below

    def instrument(self, symbol: str) -> Instrument:
        try:
            native, pp, sp = _PAIRS[symbol.upper()]
        except KeyError:
            raise ValueError(f"example: unknown symbol {symbol!r}") from None
        base, quote = symbol.upper().split("-")
        return Instrument(self.exchange, symbol.upper(), native, base, quote, pp, sp)

    def instrument_for_native(self, native: str) -> Instrument:
        try:
            return self.instrument(_BY_NATIVE[native])
        except KeyError:
            raise ValueError(f"example: unknown native symbol {native!r}") from None

    def reset_connection(self) -> None:
        self._seq.clear()                         # a new connection restarts the sequence

    def parse(self, frame: bytes | str, ts_recv: int) -> None:
        msg = orjson.loads(frame)                 # JSONDecodeError -> rejected "bad_json"
        if type(msg) is not dict:
            raise ProtocolError("unexpected_message", repr(msg)[:80])
        kind = msg.get("type")
        self.touch(kind if isinstance(kind, str) else "?")   # feeds the staleness deadlines
        if kind in ("heartbeat", "subscribed"):
            return
        if kind not in ("snapshot", "update", "trade"):
            raise ProtocolError("unknown_type", str(kind)[:40])
        try:
            inst = self.instrument_for_native(msg["symbol"])
        except ValueError as exc:
            raise ProtocolError("unknown_symbol", str(exc)) from None
        if not self.wants(inst.symbol):
            raise ProtocolError("unknown_symbol", inst.native)
        ts_event = int(msg["ts"]) * 1_000_000    # EXAMPLE: ms -> ns
        if kind == "trade":
            side = msg["taker"]
            if side not in ("buy", "sell"):
                raise ProtocolError("bad_side", str(side)[:20])
            self.on_trade(inst.symbol, inst.native, _text(msg["price"]), _text(msg["size"]),
                          side, str(msg["id"]), ts_event, ts_recv, seq=int(msg["id"]))
            return
        book = self.book_for(inst)
        seq = msg["seq"]
        if type(seq) is not int:
            raise ProtocolError("bad_sequence", repr(seq)[:40])
        if kind == "snapshot":
            self.apply_snapshot(book, [(_text(p), _text(q)) for p, q in msg["bids"]],
                                [(_text(p), _text(q)) for p, q in msg["asks"]], ts_event, ts_recv)
            self._seq[inst.symbol] = seq
            return
        if self.state(inst.symbol) != LIVE:
            return                                # waiting for the (re)snapshot
        last = self._seq.get(inst.symbol)
        if last is not None and seq <= last:
            self.duplicates += 1                  # replayed/duplicated message: already applied
            return
        if last is not None and seq != last + 1:
            self.gap(inst.symbol, "sequence", f"seq {last + 1}..{seq - 1} missed", seq - last - 1,
                     ts_recv)
            return
        self._seq[inst.symbol] = seq
        changes = [(side, _text(p), _text(q)) for side, p, q in msg["changes"]]
        self.apply_update(book, changes, ts_event, ts_recv)   # BookError -> rejected, unchanged


def _text(value: Any) -> str:
    if type(value) is not str:
        raise ProtocolError("wrong_type", f"decimal string expected, got {type(value).__name__}")
    return value


class ExampleCollector(MarketDataCollector):
    """The IO half: URLs, subscribe messages, how to resync one book."""

    name = "example"
    parser_class = ExampleParser
    default_url = "wss://stream.example.invalid/ws"
    url_env = "ALPHAPULSE_EXAMPLE_WS_URL"
    stale_after_default = {"*": 10.0, "heartbeat": 15.0}

    def subscribe_messages(self) -> list[str | bytes]:
        natives = [self.parser.instrument(s).native for s in self.symbols]
        return [orjson.dumps({"op": "subscribe", "channels": ["book", "trades"],
                              "symbols": natives})]

    async def resync(self, ws: Any, symbols: dict[str, str]) -> None:
        if "" in symbols:                        # connection-wide trouble: reconnect
            return await super().resync(ws, symbols)
        natives = [self.parser.instrument(s).native for s in symbols]
        await ws.send(orjson.dumps({"op": "unsubscribe", "channels": ["book"], "symbols": natives}))
        await ws.send(orjson.dumps({"op": "subscribe", "channels": ["book"], "symbols": natives}))
