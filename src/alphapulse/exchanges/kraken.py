"""Kraken spot WebSocket: v2 (default, ``wss://ws.kraken.com/v2``) and v1 (``wss://ws.kraken.com``).

Facts (shared/docs/protocols.md §3, §3b): v2 sends prices and sizes as JSON *numbers* and a
CRC32 ``checksum`` on every book message, snapshot included, over the top 10 asks then bids
formatted at the pair's precision (``instrument`` channel).  v1 sends strings and a ``"c"``
checksum on updates only, over the strings as received.  Both: apply the whole message, then
truncate each side to the subscribed depth (Kraken sends no deletes for levels that fall out).

Exactness: orjson turns JSON numbers into floats, so the level texts are taken from the raw
frame by a narrow regex (``"price":<num>,"qty":<num>``) and mapped back to the decoded levels
by count and key order; the book parses the text itself (trailing zeros are fine, digits beyond
the precision are an error).  Frames whose numbers the regex cannot account for fall back to
Decimal parsing of the permissive form, then to float formatting only where provably exact
(|x| * 10**p < 10**15, where every double formats back to its unique decimal at p places).
"""
from __future__ import annotations

import re
import time
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import orjson

from .._book import Delta
from ..errors import ProtocolError
from ..symbols import Instrument, from_native, instrument
from ._kraken_v1 import KrakenV1Mixin, _epoch_text_ns  # noqa: F401 - re-exported
from .base import _FRAME_ERRORS, LIVE, FeedParser, MarketDataCollector, make_book_update
from .parser import HOTPATH_MISSING

try:  # the compiled scanners for the hottest frame shapes; a missing build is a loud error
    from ._hotpath import scan_book_update as _scan
    from ._hotpath import scan_v1_book_update as _scan_v1
except ImportError as exc:
    raise ImportError(HOTPATH_MISSING) from exc
# Test-oracle switch, not a fallback: setting ``_scan`` / ``_scan_v1`` to None (the unit tests
# monkeypatch them) routes the same frames through the pure-Python bytes.find path, so both
# paths are checked against each other.

__all__ = ["KrakenCollector", "KrakenParser"]

_LEVEL = re.compile(rb'"price":(-?\d+(?:\.\d+)?),"qty":(-?\d+(?:\.\d+)?)[,}]')
_LEVEL_LOOSE = re.compile(rb'"price"\s*:\s*([^,}\s]+)\s*,\s*"qty"\s*:\s*([^,}\s]+)')
_V2_DEPTHS = (10, 25, 100, 500, 1000)
# The hottest shape, exactly as Kraken writes it: one symbol's book update.  The fast path
# slices it with bytes.find instead of decoding it; anything else takes the general path.
_FAST_PREFIX = b'{"channel":"book","type":"update","data":[{"symbol":"'
_FAST_SUFFIX = b'"}]}'
_FRAC_SCALE = (10**9, 10**8, 10**7, 10**6, 10**5, 10**4, 10**3, 10**2, 10, 1)
_SECOND_CACHE: dict[bytes, int] = {}
_EPOCH_CACHE: dict[str, int] = {}
loads = orjson.loads


def rfc3339_ns(text: str) -> int:
    """``2023-07-30T15:29:58.343415Z`` -> ns since epoch (cached per minute: hot path)."""
    if len(text) >= 20 and text[-1] == "Z" and text[16] == ":" and text[19] in ".Z":
        base = _EPOCH_CACHE.get(text[:16])
        if base is None:
            base = int(datetime.fromisoformat(text[:16] + ":00+00:00").timestamp()) * 10**9
            if len(_EPOCH_CACHE) > 4096:
                _EPOCH_CACHE.clear()
            _EPOCH_CACHE[text[:16]] = base
        frac = text[20:-1]
        if len(_SECOND_CACHE) > 4096:
            _SECOND_CACHE.clear()
        _SECOND_CACHE[text[:19].encode()] = base + int(text[17:19]) * 10**9
        return base + int(text[17:19]) * 10**9 + (int(frac.ljust(9, "0")[:9]) if frac else 0)
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(dt.timestamp()) * 10**9 + dt.microsecond * 1000


MAX_LEVELS = 5000   # per message; Kraken's deepest subscription is 1000 a side


def _exact(value: Any, precision: int) -> bytes:
    """A decoded JSON number as text at ``precision`` -- only when that is provably its value.

    Below 10**15 units of the last place a double is closer to its decimal than to any other
    decimal with ``precision`` places, so formatting recovers it; the round trip check refuses
    numbers with digits beyond the precision.
    """
    if type(value) is int:
        return str(value).encode()
    if type(value) is not float:
        raise ProtocolError("wrong_type", f"number expected, got {type(value).__name__}")
    if not abs(value) < 10.0 ** (15 - precision):
        raise ProtocolError("inexact_number", repr(value))
    text = f"{value:.{precision}f}"
    if float(text) != value:
        raise ProtocolError("inexact_number", f"{value!r} has digits beyond {precision} places")
    return text.encode()


def _decimals(text: str) -> int:
    _, dot, frac = text.partition(".")
    return len(frac) if dot else 0


class _Sym:
    """Per-pair parse state, built once per subscription (not per frame)."""

    __slots__ = ("inst", "book", "depth", "pp", "sp", "v1")

    def __init__(self, inst: Instrument, v1: bool) -> None:
        self.inst, self.v1 = inst, v1
        self.book: Any = None
        self.depth = 0
        self.pp, self.sp = inst.price_precision, inst.size_precision


class KrakenParser(KrakenV1Mixin, FeedParser):
    """Sans-IO Kraken parser; tells v1 from v2 per frame (arrays / ``event`` vs ``channel``)."""

    exchange = "kraken"

    def __init__(self, symbols: Any = None, *, depth: int = 0, **kwargs: Any) -> None:
        super().__init__(symbols, depth=0, **kwargs)
        self.want_depth = depth          # 0: learn it from the ack / channel name / snapshot
        self._syms: dict[str, _Sym] = {}
        self._fast_syms: dict[bytes, _Sym] = {}             # v2 native bytes -> state
        self._v1_syms: dict[str, _Sym] = {}                 # v1 native -> state
        self._precisions: dict[str, tuple[int, int]] = {}   # v2 native -> from `instrument`
        self._depths: dict[str, int] = {}                   # native -> subscribed depth
        self.protocol: str | None = None
        self.activity["book"] = 0

    # ---- dispatch -------------------------------------------------------------------------
    def feed(self, frame: bytes | str, ts_recv: int | None = None) -> None:
        # The hot shapes (a v2 / v1 book update) skip the generic dispatch; everything here is
        # inlined on purpose: at ~200k messages/s each Python call level is a few percent.
        if type(frame) is bytes:
            if frame.startswith(_FAST_PREFIX):
                if _scan is not None:
                    scanned = _scan(frame)
                    st = self._fast_syms.get(scanned[0]) if scanned is not None else None
                    if st is not None:
                        self.messages += 1
                        self.activity["book"] += 1
                        if ts_recv is None:
                            ts_recv = time.time_ns()
                        if self._states.get(st.inst.symbol) != LIVE:
                            return              # not synced yet, or waiting for a resync snapshot
                        book = st.book
                        try:
                            delta = book.apply(scanned[1])   # BookError: book unchanged
                            if book.checksum() == scanned[2]:
                                self.checksum_ok += 1
                            elif not self._check(st, book, scanned[2], ts_recv):
                                return
                            self.updates += 1
                            self.sink(make_book_update("kraken", st.inst.symbol, st.inst.native,
                                                       delta, scanned[3], ts_recv))
                            if book.crossed:
                                self.gap(st.inst.symbol, "crossed", f"bid {book.best_bid()} >= "
                                         f"ask {book.best_ask()}", -1, ts_recv)
                        except _FRAME_ERRORS as exc:
                            self.frame_error(exc, ts_recv)
                        return
                else:
                    self.messages += 1
                    if ts_recv is None:
                        ts_recv = time.time_ns()
                    try:
                        if self._fast_update(frame, ts_recv):
                            return
                    except _FRAME_ERRORS as exc:
                        self.frame_error(exc, ts_recv)
                        return
                    self.messages -= 1
            elif frame[:1] == b"[" and _scan_v1 is not None:
                scanned = _scan_v1(frame)
                if scanned is not None:
                    st = self._v1_syms.get(scanned[0])
                    if st is not None and st.book is not None:
                        self.messages += 1
                        if ts_recv is None:
                            ts_recv = time.time_ns()
                        self.protocol = "v1"
                        self.activity["book"] += 1
                        try:
                            self._apply_scanned(st, scanned[2], scanned[3], scanned[4], ts_recv)
                        except _FRAME_ERRORS as exc:
                            self.frame_error(exc, ts_recv)
                        return
        FeedParser.feed(self, frame, ts_recv)

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
        if not v1:
            self._fast_syms[native.encode()] = st
        if not v1 and native in self._precisions:
            st.pp, st.sp = self._precisions[native]
        return st

    def _ensure_book(self, st: _Sym, depth: int, snapshot_texts: list[tuple[bytes, bytes]]) -> Any:
        """The book for a snapshot, rebuilt (sequence kept) if precision or depth changed."""
        if st.v1 and snapshot_texts:
            # v1 writes every string at the pair's width; the checksum is over those strings.
            st.pp = max(_decimals(p.decode()) for p, _ in snapshot_texts)
            st.sp = max(_decimals(q.decode()) for _, q in snapshot_texts)
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

    # ---- v2 -------------------------------------------------------------------------------
    def _texts(self, frame: bytes, entries: list[Any]) -> list:
        """Exact (price, qty) texts of every book level in ``entries``, in document order."""
        found = _LEVEL.findall(frame)
        want = 0
        for e in entries:
            want += len(e["bids"]) + len(e["asks"])
        if want > MAX_LEVELS:
            raise ProtocolError("too_many_levels", f"{want} levels in one message")
        if len(found) == want:
            return found
        loose = _LEVEL_LOOSE.findall(frame)
        if len(loose) == want:
            try:
                return [(self._num(p), self._num(q)) for p, q in loose]
            except (InvalidOperation, ValueError):
                pass
        # Unusual layout (other key order...): the decoded floats, only where provably exact.
        out = []
        for e in entries:
            st = self._syms.get("2" + str(e["symbol"]))
            pp, sp = (st.pp, st.sp) if st else self._precisions.get(e["symbol"], (8, 8))
            for key in e:
                if key in ("bids", "asks"):
                    out += [(_exact(lv["price"], pp), _exact(lv["qty"], sp)) for lv in e[key]]
        return out

    @staticmethod
    def _num(text: bytes) -> bytes:
        if text[:1] == b'"':
            raise ValueError("quoted number")
        value = Decimal(text.decode())
        if not value.is_finite():
            raise ValueError("not finite")
        return format(value, "f").encode()

    def _v2_levels(self, obj: dict, frame: bytes, ts_recv: int, is_book: bool) -> None:
        self.protocol = "v2"
        data = obj["data"]
        if type(data) is not list:
            raise ProtocolError("malformed", "data is not a list")
        if is_book:
            texts = self._texts(frame, data)
            snapshot = obj["type"] == "snapshot"
            pos = 0
            for entry in data:
                n = len(entry["bids"]) + len(entry["asks"])
                self._v2_book(entry, texts, pos, snapshot, ts_recv)
                pos += n
            return
        texts = self._trade_texts(frame, data)
        for (price, qty), t in zip(texts, data):
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

    def _trade_texts(self, frame: bytes, data: list) -> list:
        if len(data) > MAX_LEVELS:
            raise ProtocolError("too_many_levels", f"{len(data)} trades in one message")
        found = _LEVEL.findall(frame)
        if len(found) == len(data):
            return found
        loose = _LEVEL_LOOSE.findall(frame)
        if len(loose) == len(data):
            try:
                return [(self._num(p), self._num(q)) for p, q in loose]
            except (InvalidOperation, ValueError):
                pass
        return [(_exact(t["price"], 8), _exact(t["qty"], 8)) for t in data]

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

    def _apply_scanned(self, st: _Sym, changes: list, checksum: int, ts_event: int,
                       ts_recv: int) -> None:
        """Apply one scanned update (v1 or v2), verify its CRC, emit BookUpdate."""
        symbol = st.inst.symbol
        if self._states.get(symbol) != LIVE:
            return                          # not synced yet, or waiting for the resync snapshot
        book = st.book
        delta = book.apply(changes)         # BookError (bad/negative number): book unchanged
        if book.checksum() == checksum:
            self.checksum_ok += 1
        elif not self._check(st, book, checksum, ts_recv):
            return
        self.updates += 1
        self.sink(make_book_update("kraken", symbol, st.inst.native, delta, ts_event, ts_recv))
        if book.crossed:
            self.gap(symbol, "crossed", f"bid {book.best_bid()} >= ask {book.best_ask()}", -1,
                     ts_recv)

    def _fast_update(self, frame: bytes, ts_recv: int) -> bool:
        """A canonical v2 book update without decoding JSON.  False: use the general path.

        Only frames made of exactly the expected literal skeleton take this path; their number
        texts are then validated by the book's strict decimal parser (BookError -> rejected).
        """
        i = frame.find(b'","bids":[', 53)
        if i < 0 or not frame.endswith(_FAST_SUFFIX):
            return False
        st = self._fast_syms.get(frame[53:i])
        if st is None:
            return False
        j = frame.find(b'],"asks":[', i)
        k = frame.find(b'],"checksum":', j)
        t = frame.find(b',"timestamp":"', k)
        if j < 0 or k < 0 or t < 0:
            return False
        self.activity["book"] += 1
        book = st.book
        symbol = st.inst.symbol
        if self._states.get(symbol) != LIVE:
            return True
        changes = []
        seg = frame[i + 10:j]
        if seg:
            if seg[:9] != b'{"price":' or seg[-1:] != b"}":
                return False
            for item in seg[9:-1].split(b'},{"price":'):
                p, _, q = item.partition(b',"qty":')
                changes.append(("bid", p, q))
        seg = frame[j + 10:k]
        if seg:
            if seg[:9] != b'{"price":' or seg[-1:] != b"}":
                return False
            for item in seg[9:-1].split(b'},{"price":'):
                p, _, q = item.partition(b',"qty":')
                changes.append(("ask", p, q))
        stamp = frame[t + 14:-4]
        base = _SECOND_CACHE.get(stamp[:19])
        if base is None or stamp[19:20] != b"." or stamp[-1:] != b"Z":
            ts_event = rfc3339_ns(stamp.decode())
        else:
            frac = stamp[20:-1]
            ts_event = base + int(frac) * _FRAC_SCALE[len(frac)]
        delta = book.apply(changes)         # BookError (bad/negative number): book unchanged
        if book.checksum() == int(frame[k + 13:t]):
            self.checksum_ok += 1
        elif not self._check(st, book, int(frame[k + 13:t]), ts_recv):
            return True
        self.updates += 1
        self.sink(make_book_update("kraken", symbol, st.inst.native, delta, ts_event, ts_recv))
        if book.crossed:
            self.gap(symbol, "crossed", f"bid {book.best_bid()} >= ask {book.best_ask()}", -1,
                     ts_recv)
        return True

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
            self.gap(symbol, "crossed", f"bid {book.best_bid()} >= ask {book.best_ask()}", -1,
                     ts_recv)

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

    # ---- v1 -------------------------------------------------------------------------------
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
