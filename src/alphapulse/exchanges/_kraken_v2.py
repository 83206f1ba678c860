"""Kraken WebSocket v2 (``wss://ws.kraken.com/v2``): the decoded-JSON path, as a mixin of
:class:`alphapulse.exchanges.kraken.KrakenParser` (split out to keep modules small).

v2 facts (shared/docs/protocols.md §3): objects with ``channel`` and ``type``; prices and sizes
are JSON numbers (their exact text comes from ``_kraken_text``); every book message, snapshot
included, carries a CRC32 ``checksum`` over the top 10 asks then bids at the pair's precision
(``instrument`` channel); trades carry integer ``trade_id``s.  The hottest frame, a one-symbol
book update, normally never reaches this module: ``KrakenParser.feed`` hands it to the compiled
``_hotpath.apply_book_update``.  ``fast_update`` here is the same step in pure Python, kept as
the test oracle for it.
"""
from __future__ import annotations

from typing import Any

from ..errors import ProtocolError
from ._kraken_text import (FRAC_SCALE, MAX_LEVELS, SECOND_CACHE, level_texts, rfc3339_ns,
                           trade_texts)
from .parser import LIVE

__all__ = ["KrakenV2Mixin"]


class KrakenV2Mixin:
    """v2 handling; relies on KrakenParser's ``_sym``, ``_ensure_book``, ``_update``, ``_check``."""

    _syms: dict[str, Any]
    _fast_syms: dict[bytes, Any]
    _precisions: dict[str, tuple[int, int]]
    _depths: dict[str, int]
    _states: dict[str, str]
    activity: dict[str, int]

    def _precision_of(self, native: Any) -> tuple[int, int]:
        st = self._syms.get("2" + str(native))
        return (st.pp, st.sp) if st else self._precisions.get(native, (8, 8))

    def _v2_levels(self, obj: dict, frame: bytes, ts_recv: int, is_book: bool) -> None:
        self.protocol = "v2"
        data = obj["data"]
        if type(data) is not list:
            raise ProtocolError("malformed", "data is not a list")
        if is_book:
            texts = level_texts(frame, data, self._precision_of)
            snapshot = obj["type"] == "snapshot"
            pos = 0
            for entry in data:
                n = len(entry["bids"]) + len(entry["asks"])
                self._v2_book(entry, texts, pos, snapshot, ts_recv)
                pos += n
            return
        for (price, qty), t in zip(trade_texts(frame, data), data):
            st = self._sym(t["symbol"], False, ts_recv)
            if st is None:
                continue
            side = t["side"]
            if side not in ("buy", "sell"):
                raise ProtocolError("bad_side", str(side)[:20])
            tid = t["trade_id"]
            if type(tid) is not int:
                raise ProtocolError("bad_trade_id", repr(tid)[:40])
            if qty[:1] == b"-" or price[:1] == b"-":
                raise ProtocolError("negative", "trade price/qty")
            self.on_trade(st.inst.symbol, st.inst.native, price.decode(), qty.decode(), side,
                          str(tid), rfc3339_ns(t["timestamp"]), ts_recv, seq=tid)

    def _v2_book(self, entry: dict, texts: list, pos: int, snapshot: bool, ts_recv: int) -> None:
        st = self._sym(entry["symbol"], False, ts_recv)
        if st is None:
            return
        # Map the document-ordered texts to sides by the decoded dict's (document) key order.
        bids: list = []
        asks: list = []
        for key in entry:
            if key == "bids":
                k = len(entry["bids"])
                bids = texts[pos:pos + k]
                pos += k
            elif key == "asks":
                k = len(entry["asks"])
                asks = texts[pos:pos + k]
                pos += k
        checksum = entry["checksum"]
        stamp = entry.get("timestamp")
        ts_event = rfc3339_ns(stamp) if stamp else ts_recv
        if snapshot:
            book = self._ensure_book(st, max(len(bids), len(asks)), [])
            self.apply_snapshot(book, bids, asks, ts_event, ts_recv)
            self._check(st, book, checksum, ts_recv)
            return
        book = st.book
        if book is None or self._states.get(st.inst.symbol) != LIVE:
            return                      # not synced yet, or waiting for the resync snapshot
        changes = [("bid", p, q) for p, q in bids]
        changes += [("ask", p, q) for p, q in asks]
        self._update(st, book, changes, checksum, ts_event, ts_recv)

    def fast_update(self, frame: bytes, ts_recv: int) -> bool:
        """A canonical v2 book update without decoding JSON.  False: use the general path.

        The pure-Python twin of ``_hotpath.apply_book_update`` (tests run every frame through
        both).  Only frames made of exactly the expected literal skeleton take this path; their
        number texts are then validated by the book's strict decimal parser (BookError ->
        rejected).
        """
        i = frame.find(b'","bids":[', 53)
        if i < 0 or not frame.endswith(b'"}]}'):
            return False
        st = self._fast_syms.get(frame[53:i])
        if st is None:
            return False
        j = frame.find(b'],"asks":[', i)
        k = frame.find(b'],"checksum":', j)
        t = frame.find(b',"timestamp":"', k)
        if j < 0 or k < 0 or t < 0 or frame.count(b'{"price":', i, k) > MAX_LEVELS:
            return False                # (too many levels: the general path rejects it)
        self.activity["book"] += 1
        book = st.book
        if self._states.get(st.inst.symbol) != LIVE:
            return True
        changes = []
        for side, seg in (("bid", frame[i + 10:j]), ("ask", frame[j + 10:k])):
            if seg:
                if seg[:9] != b'{"price":' or seg[-1:] != b"}":
                    return False
                for item in seg[9:-1].split(b'},{"price":'):
                    p, _, q = item.partition(b',"qty":')
                    changes.append((side, p, q))
        stamp = frame[t + 14:-4]
        base = SECOND_CACHE.get(stamp[:19])
        if base is None or stamp[19:20] != b"." or stamp[-1:] != b"Z":
            ts_event = rfc3339_ns(stamp.decode())
        else:
            frac = stamp[20:-1]
            ts_event = base + int(frac) * FRAC_SCALE[len(frac)]
        self._update(st, book, changes, int(frame[k + 13:t]), ts_event, ts_recv)
        return True

    def _v2_instrument(self, obj: dict) -> None:
        data = obj.get("data")
        pairs = data.get("pairs", ()) if type(data) is dict else ()
        for pair in pairs:
            native = pair.get("symbol")
            pp, sp = pair.get("price_precision"), pair.get("qty_precision")
            if type(native) is not str or type(pp) is not int or type(sp) is not int:
                continue
            if not (0 <= pp <= 18 and 0 <= sp <= 18):
                continue
            self._precisions[native] = (pp, sp)
            st = self._syms.get("2" + native)
            if st is not None and (st.pp, st.sp) != (pp, sp):
                st.pp, st.sp = pp, sp
                if st.book is not None:       # the book was formatted wrongly: rebuild it
                    self.gap(st.inst.symbol, "precision", f"instrument says {pp}/{sp}", -1, 0)

    def _v2_ack(self, obj: dict, ts_recv: int) -> None:
        method = obj.get("method")
        if method in ("pong", "unsubscribe"):
            return
        result = obj.get("result") or {}
        if obj.get("success") is False:
            self.reject("subscribe_error", str(obj.get("error"))[:200], ts_recv)
            return
        if method == "subscribe" and result.get("channel") == "book":
            depth, native = result.get("depth"), result.get("symbol")
            if type(depth) is int and type(native) is str:
                self._depths[native] = depth
