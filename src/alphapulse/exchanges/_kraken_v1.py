"""Kraken WebSocket v1 (``wss://ws.kraken.com``): the array-framed protocol, as a mixin of
:class:`alphapulse.exchanges.kraken.KrakenParser` (split out to keep modules small).

v1 facts (shared/docs/protocols.md §3b): data frames are ``[channelID, payload(s), channelName,
pair]``; prices, volumes and times are strings; book snapshots carry ``"as"``/``"bs"``, updates
``"a"``/``"b"`` (a level may end in ``"r"``, a republish) with the CRC32 ``"c"`` in the last
payload, computed over the strings as received; trades are ``[price, volume, time, side,
orderType, misc]`` with the taker's side ``b``/``s`` and no trade id.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ProtocolError
from .base import LIVE

if TYPE_CHECKING:
    from .kraken import _Sym

__all__ = ["KrakenV1Mixin"]


def _epoch_text_ns(text: str) -> int:
    """v1's ``"1693415330.621700"`` -> ns."""
    sec, _, frac = text.partition(".")
    return int(sec) * 10**9 + (int(frac.ljust(9, "0")[:9]) if frac else 0)


def _v1_level(lv: list) -> tuple[str, str, str]:
    price, size, stamp = lv[0], lv[1], lv[2]
    if type(price) is not str or type(size) is not str or type(stamp) is not str:
        raise ProtocolError("wrong_type", "v1 price/volume/time must be strings")
    return price, size, stamp


class KrakenV1Mixin:
    """v1 handling; relies on KrakenParser's ``_sym``, ``_ensure_book``, ``_update``."""

    _v1_syms: dict[str, Any]
    _depths: dict[str, int]
    _states: dict[str, str]
    activity: dict[str, int]

    def _v1_event(self, obj: dict, ts_recv: int) -> None:
        event = obj["event"]
        self.touch(event)
        if event == "subscriptionStatus":
            if obj.get("status") == "error":
                self.reject("subscribe_error", str(obj.get("errorMessage"))[:200], ts_recv)
                return
            name, pair = obj.get("channelName", ""), obj.get("pair")
            if isinstance(name, str) and name.startswith("book-") and isinstance(pair, str):
                self._depths[pair] = int(name[5:])
        elif event not in ("heartbeat", "systemStatus", "pong", "ping"):
            raise ProtocolError("unknown_event", str(event)[:60])

    def _v1_data(self, msg: list, ts_recv: int) -> None:
        if len(msg) < 4 or type(msg[-1]) is not str or type(msg[-2]) is not str:
            raise ProtocolError("malformed", "v1 array frame")
        name, native = msg[-2], msg[-1]
        st = self._v1_syms.get(native)
        if st is None:
            st = self._sym(native, True, ts_recv)
            if st is None:
                return
            self._v1_syms[native] = st
        if name[:4] == "book":
            self.activity["book"] += 1
            first = msg[1]
            if type(first) is dict and ("as" in first or "bs" in first):
                self._v1_snapshot(st, name, first, ts_recv)
            else:
                self._v1_update(st, msg, ts_recv)
        elif name == "trade":
            self.touch("trade")
            self._v1_trades(st, msg[1], ts_recv)
        else:
            self.touch(name)

    def _v1_snapshot(self, st: _Sym, name: str, payload: dict, ts_recv: int) -> None:
        asks = [_v1_level(lv) for lv in payload.get("as", ())]
        bids = [_v1_level(lv) for lv in payload.get("bs", ())]
        depth = int(name[5:]) if name[5:].isdigit() else max(len(bids), len(asks))
        book = self._ensure_book(st, depth, [(p.encode(), q.encode()) for p, q, _ in asks + bids])
        stamp = max((t for _, _, t in asks + bids), default="")
        self.apply_snapshot(book, [(p, q) for p, q, _ in bids], [(p, q) for p, q, _ in asks],
                            _epoch_text_ns(stamp) if stamp else ts_recv, ts_recv)

    def _v1_update(self, st: _Sym, msg: list, ts_recv: int) -> None:
        """``[chanID, {"a": [...]}, {"b": [...], "c": "crc"}, "book-N", pair]``: levels are
        ``[price, volume, timestamp(, "r")]`` strings; "c" rides in the last payload."""
        book = st.book
        if book is None or self._states.get(st.inst.symbol) != LIVE:
            return
        changes: list = []
        append = changes.append
        checksum = None
        stamp = ""
        for payload in msg[1:-2]:
            for key, value in payload.items():
                if key == "c":
                    checksum = value
                    continue
                side = "ask" if key == "a" else "bid" if key == "b" else None
                if side is None:
                    raise ProtocolError("unknown_field", f"v1 book key {key!r}")
                for lv in value:
                    price, size, t = lv[0], lv[1], lv[2]
                    if type(price) is not str or type(size) is not str or type(t) is not str:
                        raise ProtocolError("wrong_type", "v1 levels are strings")
                    append((side, price, size))
                    if t > stamp:               # same width: text order is time order
                        stamp = t
        if type(checksum) is not str or not checksum.isdigit():
            raise ProtocolError("missing_checksum", "v1 book update without a valid 'c'")
        self._update(st, book, changes, int(checksum), _epoch_text_ns(stamp) if stamp else ts_recv,
                     ts_recv)

    def _v1_trades(self, st: _Sym, trades: list, ts_recv: int) -> None:
        for t in trades:
            price, size, stamp, side = t[0], t[1], t[2], t[3]
            if type(price) is not str or type(size) is not str:
                raise ProtocolError("wrong_type", "v1 trade price/volume must be strings")
            if side not in ("b", "s"):
                raise ProtocolError("bad_side", str(side)[:20])
            if price.startswith("-") or size.startswith("-"):
                raise ProtocolError("negative", "trade price/volume")
            # v1 trades carry no id: nothing to dedupe on.
            self.on_trade(st.inst.symbol, st.inst.native, price, size,
                          "buy" if side == "b" else "sell", "", _epoch_text_ns(stamp), ts_recv)
