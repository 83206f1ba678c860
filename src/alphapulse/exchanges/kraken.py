"""Kraken spot WebSocket: v2 (default, ``wss://ws.kraken.com/v2``) and v1 (``wss://ws.kraken.com``).

Facts (shared/docs/protocols.md §3, §3b): v2 sends prices and sizes as JSON *numbers* and a
CRC32 ``checksum`` on every book message, snapshot included, over the top 10 asks then bids
formatted at the pair's precision (``instrument`` channel).  v1 sends strings and a ``"c"``
checksum on updates only, over the strings as received.  Both: apply the whole message, then
truncate each side to the subscribed depth (Kraken sends no deletes for levels that fall out).

This module is the parser's dispatch and shared book handling plus the collector; the two
protocols live in ``_kraken_v2`` / ``_kraken_v1`` (mixins of :class:`KrakenParser`) and the exact
number text and timestamps in ``_kraken_text``.  The hottest frames (one symbol's v2 or v1 book
update) are scanned, applied, checksummed and turned into a BookUpdate by one compiled call
(``_hotpath.apply_book_update`` / ``apply_v1_book_update``); everything else is decoded with
orjson.
"""
from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import orjson

from .._book import Delta
from ..errors import ProtocolError
from ..events import BookUpdate
from ..symbols import Instrument, from_native, instrument
from ._kraken_text import MAX_LEVELS, decimals, rfc3339_ns  # noqa: F401 - re-exported
from ._kraken_v1 import KrakenV1Mixin, _epoch_text_ns  # noqa: F401 - re-exported
from ._kraken_v2 import KrakenV2Mixin
from .base import _FRAME_ERRORS, LIVE, FeedParser, MarketDataCollector, make_book_update
from .parser import HOTPATH_MISSING

try:  # the compiled scanners for the hottest frame shapes; a missing build is a loud error
    from ._hotpath import apply_book_update as _apply_v2
    from ._hotpath import apply_v1_book_update as _apply_v1
    from ._hotpath import book_update_symbol as _v2_key
    from ._hotpath import v1_book_pair as _v1_key
    from ._hotpath import scan_book_update as _scan  # noqa: F401 - for the scanner tests
    from ._hotpath import scan_v1_book_update as _scan_v1  # noqa: F401
    from ._hotpath import scan_trade_update as _scan_trade
except ImportError as exc:
    raise ImportError(HOTPATH_MISSING) from exc
# Test-oracle switch, not a fallback: setting ``_apply_v2`` / ``_apply_v1`` / ``_scan_trade``
# to None (the unit tests monkeypatch them) routes the same frames through the pure-Python
# paths (``KrakenV2Mixin.fast_update``, the decoded v1 path, the decoded trade path), so both
# are checked against each other.  ``_scan`` / ``_scan_v1`` (the scanners alone) are exported
# for the scanner tests.
if make_book_update is BookUpdate:      # the events changed shape: the C event builder is off
    _apply_v2 = _apply_v1 = None

__all__ = ["KrakenCollector", "KrakenParser", "rfc3339_ns"]

_V2_DEPTHS = (10, 25, 100, 500, 1000)
loads = orjson.loads


class _Sym:
    """Per-pair parse state, built once per subscription (not per frame)."""

    __slots__ = ("inst", "book", "depth", "pp", "sp", "v1", "meta")

    def __init__(self, inst: Instrument, v1: bool) -> None:
        self.inst, self.v1 = inst, v1
        self.book: Any = None
        self.depth = 0
        self.pp, self.sp = inst.price_precision, inst.size_precision
        # what the compiled path needs to build this pair's BookUpdate events
        self.meta = (BookUpdate, "kraken", inst.symbol, inst.native)


class KrakenParser(KrakenV1Mixin, KrakenV2Mixin, FeedParser):
    """Sans-IO Kraken parser; tells v1 from v2 per frame (arrays / ``event`` vs ``channel``)."""

    exchange = "kraken"

    def __init__(self, symbols: Any = None, *, depth: int = 0, **kwargs: Any) -> None:
        super().__init__(symbols, depth=0, **kwargs)
        self.want_depth = depth          # 0: learn it from the ack / channel name / snapshot
        self._syms: dict[str, _Sym] = {}
        self._fast_syms: dict[bytes, _Sym] = {}             # v2 native bytes -> state
        self._v1_syms: dict[str, _Sym] = {}                 # v1 native -> state
        self._v1_fast: dict[bytes, _Sym] = {}               # v1 native bytes -> state
        self._precisions: dict[str, tuple[int, int]] = {}   # v2 native -> from `instrument`
        self._depths: dict[str, int] = {}                   # native -> subscribed depth
        self.protocol: str | None = None
        self.activity["book"] = 0

    # ---- dispatch -------------------------------------------------------------------------
    def feed(self, frame: bytes | str, ts_recv: int | None = None) -> None:
        # The hot shapes (a live book's v2 / v1 update) skip the generic dispatch, and are
        # inlined on purpose: at ~300k messages/s each Python call level is a few percent.
        # Anything the compiled call does not accept (another shape, a book not live) takes
        # the general path below, which decides about it.
        if type(frame) is bytes:
            st = None
            key = _v2_key(frame)
            if key is not None:
                st = self._fast_syms.get(key)
                apply = _apply_v2
                if apply is None and st is not None:     # the pure-Python twin (tests)
                    if ts_recv is None:
                        ts_recv = time.time_ns()
                    self.messages += 1
                    try:
                        if self.fast_update(frame, ts_recv):
                            return
                    except _FRAME_ERRORS as exc:
                        self.frame_error(exc, ts_recv)
                        return
                    self.messages -= 1
            elif _scan_trade is not None and (trade := _scan_trade(frame)) is not None:
                st = self._fast_syms.get(trade[0])
                if st is not None:                # a pair the general path has registered
                    if ts_recv is None:
                        ts_recv = time.time_ns()
                    self._fast_trade(st, trade, ts_recv)
                    return
            elif _apply_v1 is not None and (key := _v1_key(frame)) is not None:
                st = self._v1_fast.get(key)
                apply = _apply_v1
            if (st is not None and apply is not None and st.book is not None
                    and self._states.get(st.inst.symbol) == LIVE):
                if ts_recv is None:
                    ts_recv = time.time_ns()
                try:
                    done = apply(frame, st.book, st.meta, ts_recv)
                except _FRAME_ERRORS as exc:      # BookError: the book is unchanged
                    self.messages += 1
                    self.activity["book"] += 1
                    self.frame_error(exc, ts_recv)
                    return
                if done is not None:              # (event, crc matched, exchange crc, crossed)
                    self.messages += 1
                    self.activity["book"] += 1
                    if st.v1:
                        self.protocol = "v1"
                    if done[1]:
                        self.checksum_ok += 1
                    elif not self._check(st, st.book, done[2], ts_recv):
                        return
                    self.updates += 1
                    self.sink(done[0])
                    if done[3]:
                        self._crossed(st, ts_recv)
                    return
        FeedParser.feed(self, frame, ts_recv)

    def _fast_trade(self, st: _Sym, trade: tuple[Any, ...], ts_recv: int) -> None:
        """A scanned one-trade update: what ``FeedParser.feed`` -> ``parse`` -> ``_v2_levels``
        do with it, without decoding the JSON."""
        self.messages += 1
        self.protocol = "v2"
        activity = self.activity
        activity["trade"] = activity.get("trade", 0) + 1
        _, side, price, qty, tid, ts_event = trade
        try:
            self.on_trade(st.inst.symbol, st.inst.native, price.decode(), qty.decode(), side,
                          str(tid), ts_event, ts_recv, seq=tid)
        except _FRAME_ERRORS as exc:
            self.frame_error(exc, ts_recv)

    def parse(self, frame: bytes | str, ts_recv: int) -> None:
        if type(frame) is str:
            frame = frame.encode()
        obj = loads(frame)
        if type(obj) is list:
            self.protocol = "v1"
            return self._v1_data(obj, ts_recv)
        if type(obj) is not dict:
            raise ProtocolError("unexpected_message", repr(obj)[:120])
        channel = obj.get("channel")
        if channel == "book":
            self.touch("book")
            return self._v2_levels(obj, frame, ts_recv, True)
        if channel == "trade":
            self.touch("trade")
            return self._v2_levels(obj, frame, ts_recv, False)
        if channel is not None:
            self.protocol = "v2"
            self.touch(channel)
            if channel == "instrument":
                self._v2_instrument(obj)
            elif channel not in ("heartbeat", "status", "ticker", "ohlc"):
                raise ProtocolError("unknown_channel", str(channel)[:60])
            return None
        if "method" in obj:
            self.protocol = "v2"
            return self._v2_ack(obj, ts_recv)
        if "event" in obj:
            self.protocol = "v1"
            return self._v1_event(obj, ts_recv)
        raise ProtocolError("unknown_message", frame[:120].decode(errors="replace"))

    # ---- symbols and books ----------------------------------------------------------------
    def _sym(self, native: Any, v1: bool, ts_recv: int) -> _Sym | None:
        key = ("1" if v1 else "2") + str(native)
        st = self._syms.get(key)
        if st is not None:
            return st
        if type(native) is not str:
            raise ProtocolError("malformed", f"symbol {native!r}")
        try:
            inst = from_native("kraken", native, variant="v1" if v1 else None)
        except ValueError as exc:
            raise ProtocolError("unknown_symbol", str(exc)) from None
        if not self.wants(inst.symbol):
            self.reject("unknown_symbol", native, ts_recv)
            return None
        st = self._syms[key] = _Sym(inst, v1)
        if v1:
            self._v1_fast[native.encode()] = st
        else:
            self._fast_syms[native.encode()] = st
        if not v1 and native in self._precisions:
            st.pp, st.sp = self._precisions[native]
        return st

    def _ensure_book(self, st: _Sym, depth: int, snapshot_texts: list[tuple[bytes, bytes]]) -> Any:
        """The book for a snapshot, rebuilt (sequence kept) if precision or depth changed."""
        if st.v1 and snapshot_texts:
            # v1 writes every string at the pair's width; the checksum is over those strings.
            st.pp = max(decimals(p.decode()) for p, _ in snapshot_texts)
            st.sp = max(decimals(q.decode()) for _, q in snapshot_texts)
        depth = self._depths.get(st.inst.native) or self.want_depth or depth
        book = st.book
        if book is None or (book.price_precision, book.size_precision, book.depth) != (
                st.pp, st.sp, depth):
            old = book
            inst = Instrument(st.inst.exchange, st.inst.symbol, st.inst.native, st.inst.base,
                              st.inst.quote, st.pp, st.sp)
            self.books.pop(inst.symbol, None)
            self.depth = depth
            book = self.book_for(inst)
            if old is not None:       # keep the per-book sequence rising across the rebuild
                book.apply_delta(Delta((), sequence=old.sequence, is_snapshot=True,
                                       price_precision=st.pp, size_precision=st.sp))
            st.book, st.depth = book, depth
        return book

    def _update(self, st: _Sym, book: Any, changes: list, checksum: Any, ts_event: int,
                ts_recv: int) -> None:
        delta = book.apply(changes)         # BookError (bad/negative number): book unchanged
        if book.checksum() == checksum:
            self.checksum_ok += 1
        elif not self._check(st, book, checksum, ts_recv):
            return
        self.updates += 1
        symbol = st.inst.symbol
        self.sink(make_book_update("kraken", symbol, st.inst.native, delta, ts_event, ts_recv))
        if book.crossed:
            self._crossed(st, ts_recv)

    def _crossed(self, st: _Sym, ts_recv: int) -> None:
        book = st.book
        self.gap(st.inst.symbol, "crossed", f"bid {book.best_bid()} >= ask {book.best_ask()}",
                 -1, ts_recv)

    def _check(self, st: _Sym, book: Any, checksum: Any, ts_recv: int) -> bool:
        if type(checksum) is str:           # v1 sends the CRC as a decimal string
            checksum = int(checksum)
        if type(checksum) is not int:
            raise ProtocolError("bad_checksum_field", repr(checksum)[:40])
        mine = book.checksum()
        if mine == checksum:
            self.checksum_ok += 1
            return True
        self.checksum_failed += 1
        self.gap(st.inst.symbol, "checksum", f"book crc {mine} != exchange {checksum}", -1,
                 ts_recv)
        return False


class KrakenCollector(MarketDataCollector):
    """Kraken books (checksum-verified) and trades.  ``protocol`` "v2" (default) or "v1"; when
    not given it follows the URL: a path ending in ``/v2`` is v2, anything else v1."""

    name = "kraken"
    parser_class = KrakenParser
    default_url = "wss://ws.kraken.com/v2"
    url_env = "ALPHAPULSE_KRAKEN_WS_URL"
    # Kraken sends data or a heartbeat about every second once subscribed.
    stale_after_default = {"*": 10.0}

    def __init__(self, symbols: list[str], *, depth: int = 10, protocol: str | None = None,
                 trades: bool = True, **kwargs: Any) -> None:
        super().__init__(symbols, depth=depth, **kwargs)
        if protocol is None:
            protocol = "v2" if urlsplit(self.url).path.rstrip("/").endswith("v2") else "v1"
        if protocol not in ("v1", "v2"):
            raise ValueError(f"protocol must be 'v1' or 'v2', not {protocol!r}")
        if protocol == "v2" and depth not in _V2_DEPTHS:
            raise ValueError(f"depth must be one of {_V2_DEPTHS} for Kraken v2, not {depth}")
        self.protocol = protocol
        self.trades = trades
        self._req_id = 0
        variant = "v1" if protocol == "v1" else None
        self.natives = [instrument("kraken", s, variant=variant).native for s in self.symbols]

    def _msg(self, method: str, channel: str, natives: list[str] | None, **params: Any) -> bytes:
        self._req_id += 1
        if self.protocol == "v2":
            p: dict[str, Any] = {"channel": channel, **params}
            if natives is not None:
                p["symbol"] = natives
            return orjson.dumps({"method": method, "params": p, "req_id": self._req_id})
        sub: dict[str, Any] = {"name": channel, **params}
        return orjson.dumps({"event": method, "pair": natives, "subscription": sub,
                             "reqid": self._req_id})

    def subscribe_messages(self) -> list[str | bytes]:
        if self.protocol == "v2":
            out = [self._msg("subscribe", "instrument", None, snapshot=True),
                   self._msg("subscribe", "book", self.natives, depth=self.depth, snapshot=True)]
            if self.trades:
                out.append(self._msg("subscribe", "trade", self.natives, snapshot=False))
            return out
        out = [self._msg("subscribe", "book", self.natives, depth=self.depth)]
        if self.trades:
            out.append(self._msg("subscribe", "trade", self.natives))
        return out

    async def resync(self, ws: Any, symbols: dict[str, str]) -> None:
        """Unsubscribe and resubscribe the affected books: a fresh snapshot, same connection."""
        if "" in symbols:
            return await super().resync(ws, symbols)
        variant = "v1" if self.protocol == "v1" else None
        natives = [instrument("kraken", s, variant=variant).native for s in symbols]
        if self.protocol == "v2":
            await ws.send(self._msg("unsubscribe", "book", natives, depth=self.depth))
            await ws.send(self._msg("subscribe", "book", natives, depth=self.depth,
                                    snapshot=True))
        else:
            await ws.send(self._msg("unsubscribe", "book", natives, depth=self.depth))
            await ws.send(self._msg("subscribe", "book", natives, depth=self.depth))
