"""An endless continuation of a capture, for load tests: the capture's stream, looped.

After one normal pass a client's book is at the capture's end state *E*; the stream part of the
capture (every book update after the book's snapshot, and the trades among them) takes a book
from its start state *S* to *E*.  Each further pass is a *restore* frame (an ordinary update in
the exchange's own format: the levels of *E* that *S* lacks deleted, the levels of *S* set) that
brings *E* back to *S*, then the stream frames again, so every frame describes the book exactly
as the first time: Kraken's checksums stay right without recomputing them, no book is ever
crossed.  Sequence numbers (Coinbase ``sequence_num``, Binance.US ``U``/``u``) and trade ids are
renumbered so that each pass continues the previous one with no gap and no duplicate, and
trade timestamps (Kraken's ``timestamp``, Binance.US's ``E``/``T``) move forward by the
capture's span each pass, as an exchange's clock would: a trade is never older than the ones
before it by more than within the capture itself.

The frames are the bytes the client's session was actually sent in the first pass (so the
session's own rewriting, e.g. Binance's combined-stream wrapping, is kept), cut into templates:
byte pieces around integer slots.  :meth:`Looper.chunk` renders the next frames as ready-made
unmasked WebSocket text frames into one buffer, a few hundred at a time, so a paced writer can
hand large slices of it to the transport.  ``trade_share`` repeats trade frames (each copy with
its own id) until trades are that fraction of the messages.

Supported: Coinbase Advanced Trade, Kraken v2, Binance.US (raw or combined streams).
"""
from __future__ import annotations

import functools
import re
from itertools import accumulate
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from ._server import ReplayServer, Session

__all__ = ["Chunk", "Looper", "build_looper"]

OTHER, BOOK, TRADE = 0, 1, 2
# slot kinds: next sequence, next trade id, id + offset, time + the passes' shift
_SEQ, _TRADE_ID, _UID, _TIME = 0, 1, 2, 3

_CB_SEQ = re.compile(rb'"sequence_num"\s*:\s*(\d+)')
_CB_TRADE = re.compile(rb'"trade_id"\s*:\s*"(\d+)"')
_KR_TRADE = re.compile(rb'"trade_id"\s*:\s*(\d+)')
_BN_U = re.compile(rb'"[Uu]"\s*:\s*(\d+)')
_BN_TRADE = re.compile(rb'"t"\s*:\s*(\d+)')
_BN_TIME = re.compile(rb'"[ET]"\s*:\s*(\d+)')
_KR_TIME = re.compile(rb'"timestamp"\s*:\s*"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6})Z"')


@dataclass(frozen=True, slots=True)
class _Template:
    pieces: tuple[bytes, ...]      # len(slots) + 1 byte pieces
    slots: tuple[int, ...]         # slot kinds
    values: tuple[int, ...]        # the capture's value in each slot (used by _UID, _TIME)
    kind: int                      # BOOK / TRADE
    trades: int                    # trades in the frame

    @property
    def top_trade_id(self) -> int:
        """The highest trade id in the frame (0 without one)."""
        return max((v for slot, v in zip(self.slots, self.values) if slot == _TRADE_ID),
                   default=0)


@dataclass(frozen=True, slots=True)
class Chunk:
    """Rendered frames: ``buf[ends[i-1]:ends[i]]`` is frame ``i`` (header included)."""

    buf: bytes
    ends: list[int]
    trades: list[int]              # cumulative trades after frame i
    books: list[int]               # cumulative book messages after frame i


Pattern = tuple[re.Pattern[bytes], int] | tuple[re.Pattern[bytes], int, Callable[[bytes], int]]


def _template(frame: bytes, patterns: Sequence[Pattern], kind: int, trades: int = 1) -> _Template:
    """``frame`` cut around each pattern's group 1 (read as an int, or by the pattern's own
    reader: Kraken's timestamp text)."""
    found = sorted((m.start(1), m.end(1), p[1], (p[2] if len(p) > 2 else int)(m.group(1)))
                   for p in patterns for m in p[0].finditer(frame))
    pieces, slots, values, pos = [], [], [], 0
    for start, end, slot, value in found:
        pieces.append(frame[pos:start])
        slots.append(slot)
        values.append(value)
        pos = end
    pieces.append(frame[pos:])
    return _Template(tuple(pieces), tuple(slots), tuple(values), kind,
                     trades if kind == TRADE else 0)


def _kraken_us(text: bytes) -> int:
    """``2026-11-27T10:00:00.221587`` (UTC) -> µs since the epoch."""
    whole = datetime.fromisoformat(text[:19].decode()).replace(tzinfo=timezone.utc)
    return int(whole.timestamp()) * 1_000_000 + int(text[20:])


def _kraken_text(us: int) -> bytes:
    """The inverse of :func:`_kraken_us`."""
    seconds, frac = divmod(us, 1_000_000)
    return b"%s.%06d" % (_second_text(seconds), frac)


@functools.lru_cache(maxsize=1024)
def _second_text(seconds: int) -> bytes:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S").encode()


def _time_shift(stream: list[_Template], gap: int) -> int:
    """How far a pass moves the stream's times: its span plus ``gap`` (same unit)."""
    times = [v for t in stream for slot, v in zip(t.slots, t.values) if slot == _TIME]
    return max(times) - min(times) + gap if times else 0


def _ws_header(n: int) -> bytes:
    """Header of an unmasked, final text frame of ``n`` payload bytes (RFC 6455 §5.2)."""
    if n < 126:
        return bytes((0x81, n))
    if n < 1 << 16:
        return b"\x81\x7e" + n.to_bytes(2, "big")
    return b"\x81\x7f" + n.to_bytes(8, "big")


class Looper:
    """Renders passes of ``restore + stream`` forever, numbering slots as it goes."""

    def __init__(self, restore: list[_Template], stream: list[_Template], *, seq: int = 0,
                 trade_id: int = 0, uid_step: int = 0, trade_share: float | None = None,
                 time_shift: int = 0,
                 time_text: Callable[[int], bytes] = lambda v: b"%d" % v) -> None:
        if not any(t.kind == BOOK for t in stream):
            raise ValueError("the capture has no book updates to loop")
        self.templates = restore + _repeat_trades(stream, trade_share)
        self.seq, self.trade_id = seq, trade_id
        self.uid_step = uid_step
        self.time_shift, self.time_text = time_shift, time_text
        self.passes = 1                 # the first pass was the capture itself
        self._pos = 0
        book = sum(1 for t in self.templates if t.kind == BOOK)
        self.trade_share = sum(t.trades for t in self.templates) / max(1, len(self.templates))
        self.book_frames = book
        # An object whose ``seq`` is the connection's next sequence number, shared with the
        # session's own frames (Coinbase heartbeats): read before and written after each chunk.
        self.numbering: Any = None
        plans = {id(t): _plan(t) for t in self.templates}     # trade copies share theirs
        self._plans = [plans[id(t)] for t in self.templates]
        self._trades = [t.trades for t in self.templates]
        self._books = [int(t.kind == BOOK) for t in self.templates]
        self._headers: dict[int, bytes] = {}                  # payload size -> frame header

    def chunk(self, n: int = 256) -> Chunk:
        """The next ``n`` frames (crossing into the next pass when one ends)."""
        out: list[bytes] = []
        sizes: list[int] = []
        trades: list[int] = []
        books: list[int] = []
        plans, headers, i = self._plans, self._headers, self._pos
        if self.numbering is not None:       # the session may have numbered frames since
            self.seq = self.numbering.seq
        seq, trade_id, off = self.seq, self.trade_id, self.passes * self.uid_step
        later, time_text = self.passes * self.time_shift, self.time_text
        left = n
        while left > 0:
            if i == len(plans):
                i = 0
                self.passes += 1
                off = self.passes * self.uid_step
                later = self.passes * self.time_shift
            stop = min(len(plans), i + left)
            for how, fmt, arg in plans[i:stop]:
                if how == _FIXED:
                    out.append(fmt)
                    sizes.append(arg)
                    continue
                if how == _ONE_SEQ:
                    payload = fmt % seq
                    seq += 1
                elif how == _UIDS:
                    payload = fmt % tuple([value + off for value in arg])
                else:
                    values = []
                    for slot, value in arg:
                        if slot == _SEQ:
                            values.append(seq)
                            seq += 1
                        elif slot == _TRADE_ID:
                            values.append(trade_id)
                            trade_id += 1
                        elif slot == _TIME:
                            values.append(time_text(value + later))
                        else:
                            values.append(value + off)
                    payload = fmt % tuple(values)
                size = len(payload)
                header = headers.get(size)
                if header is None:
                    header = headers[size] = _ws_header(size)
                out.append(header)
                out.append(payload)
                sizes.append(len(header) + size)
            trades += self._trades[i:stop]
            books += self._books[i:stop]
            left -= stop - i
            i = stop
        self._pos, self.seq, self.trade_id = i, seq, trade_id
        if self.numbering is not None:
            self.numbering.seq = seq
        return Chunk(b"".join(out), list(accumulate(sizes)), list(accumulate(trades)),
                     list(accumulate(books)))


# How Looper.chunk renders a template, chosen once per template so that the common frames cost
# one %-format each (the driver's CPU is taken from the server it measures): the whole frame
# ready (no slot: Kraken's book updates), one sequence number (Coinbase's), only id offsets
# (Binance.US's U/u), or any mix of slots (trades).
_FIXED, _ONE_SEQ, _UIDS, _MIXED = range(4)
_Plan = tuple[int, bytes, Any]


def _format(t: _Template) -> bytes:
    """The payload as a bytes %-format: ``%d`` in each slot, ``%s`` for times (their text)."""
    pieces = [piece.replace(b"%", b"%%") for piece in t.pieces]
    parts = [pieces[0]]
    for slot, piece in zip(t.slots, pieces[1:]):
        parts.append(b"%s" if slot == _TIME else b"%d")
        parts.append(piece)
    return b"".join(parts)


def _plan(t: _Template) -> _Plan:
    if not t.slots:
        frame = _ws_header(len(t.pieces[0])) + t.pieces[0]
        return _FIXED, frame, len(frame)
    if t.slots == (_SEQ,):
        return _ONE_SEQ, _format(t), None
    if all(slot == _UID for slot in t.slots):
        return _UIDS, _format(t), t.values
    return _MIXED, _format(t), tuple(zip(t.slots, t.values))


def _repeat_trades(stream: list[_Template], share: float | None) -> list[_Template]:
    """Repeat trade frames (spread evenly, Bresenham-style) until trades are ``share`` of all."""
    trades = sum(1 for t in stream if t.kind == TRADE)
    if not share or not trades:
        return list(stream)
    others = len(stream) - trades
    per_trade = max(1.0, share * others / ((1.0 - share) * trades))
    out, acc = [], 0.0
    for t in stream:
        if t.kind != TRADE:
            out.append(t)
            continue
        acc += per_trade
        copies = int(acc)
        acc -= copies
        out.extend([t] * copies)
    return out


def _as_bytes(frame: bytes | str) -> bytes:
    return frame.encode() if isinstance(frame, str) else frame


def _sent_frames(recorded: dict[int, Sequence[bytes | str]], start: int, n: int,
                 kind_of: Any) -> list[tuple[int, int, bytes]]:
    out = []
    for i in range(start, n):
        kind = kind_of(i)
        if kind == OTHER:
            continue
        for frame in recorded.get(i, ()):
            out.append((i, kind, _as_bytes(frame)))
    return out


def _diff(end: dict[Decimal, Any], start: dict[Decimal, Any],
          qty: Any) -> list[tuple[Decimal, Any | None]]:
    """(price, level of ``start`` or None to delete) turning ``end`` into ``start``; deletions
    first, so a depth-limited client never holds more levels than either state."""
    dels: list[tuple[Decimal, Any | None]] = [(p, None) for p in end if p not in start]
    sets = [(p, lv) for p, lv in start.items() if p not in end or qty(end[p]) != qty(lv)]
    return dels + sets


# ---- Kraken v2 -------------------------------------------------------------------------------

def _start_and_end_markets(rep: Any, frames: Sequence[bytes], start: int) -> tuple[Any, Any]:
    """The exchange's market model after frame ``start - 1`` and after the last frame."""
    s_market, e_market = rep.new_market(), rep.new_market()
    for i, frame in enumerate(frames):
        if i < start:
            s_market.apply(i, frame)
        e_market.apply(i, frame)
    return s_market, e_market


def _kraken(server: ReplayServer, session: Session, recorded: dict[int, Sequence[bytes | str]],
            share: float | None) -> Looper:
    rep: Any = server.exchange
    if rep.v1:
        raise ValueError("looping supports Kraken v2 captures only")
    frames, kinds = server.frames, rep.kinds
    snaps = [i for i, k in enumerate(kinds) if k is not None and k[0] == "book" and k[2]]
    if not snaps:
        raise ValueError("the capture has no book snapshot")
    start = max(snaps) + 1
    s_market, e_market = _start_and_end_markets(rep, frames, start)

    def kind_of(i: int) -> int:
        k = kinds[i]
        return OTHER if k is None else BOOK if k[0] == "book" else TRADE if k[0] == "trade" \
            else OTHER

    stream, top = [], 0
    for _, kind, frame in _sent_frames(recorded, start, len(frames), kind_of):
        if kind == TRADE:
            t = _template(frame, [(_KR_TRADE, _TRADE_ID), (_KR_TIME, _TIME, _kraken_us)], TRADE,
                          frame.count(b'"trade_id"'))
            top = max(top, t.top_trade_id)
            stream.append(t)
        else:
            stream.append(_template(frame, (), BOOK))
    restore = []
    for native, s_book in s_market.books.items():
        e_book = e_market.books.get(native)
        if e_book is None:
            continue
        pp, sp = rep.precision(native)

        def levels(end: dict[Decimal, Any], begin: dict[Decimal, Any]) -> str:
            return ",".join(
                f'{{"price":{p:.{pp}f},"qty":{(0 if lv is None else lv[1]):.{sp}f}}}'
                for p, lv in _diff(end, begin, lambda lv: lv[1]))

        restore.append(_template((
            f'{{"channel":"book","type":"update","data":[{{"symbol":"{native}",'
            f'"bids":[{levels(e_book.bids, s_book.bids)}],'
            f'"asks":[{levels(e_book.asks, s_book.asks)}],'
            f'"checksum":{s_market.checksum(native)},'
            f'"timestamp":"2026-01-01T00:00:00.000000Z"}}]}}').encode(), (), BOOK))
    return Looper(restore, stream, trade_id=top + 1, trade_share=share,
                  time_shift=_time_shift(stream, 1_000_000), time_text=_kraken_text)


# ---- Coinbase Advanced Trade -------------------------------------------------------------------

def _coinbase(server: ReplayServer, session: Any, recorded: dict[int, Sequence[bytes | str]],
              share: float | None) -> Looper:
    rep: Any = server.exchange
    if not rep.advanced:
        raise ValueError("looping supports Coinbase Advanced Trade captures only")
    frames, info, parsed = server.frames, rep.info, rep.parsed
    snaps = [i for i, msg in enumerate(parsed)
             if info[i] is not None and info[i][0] == "l2_data"
             and any(e.get("type") == "snapshot" for e in msg.get("events") or ())]
    if not snaps:
        raise ValueError("the capture has no level2 snapshot")
    start = max(snaps) + 1
    s_market, e_market = _start_and_end_markets(rep, frames, start)

    def kind_of(i: int) -> int:
        k = info[i]
        return OTHER if k is None else BOOK if k[0] == "l2_data" else \
            TRADE if k[0] == "market_trades" else OTHER

    stream, top = [], 0
    for i, kind, frame in _sent_frames(recorded, start, len(frames), kind_of):
        if kind == TRADE:
            n = sum(len(e.get("trades") or ()) for e in parsed[i].get("events") or ())
            t = _template(frame, [(_CB_SEQ, _SEQ), (_CB_TRADE, _TRADE_ID)], TRADE, n)
            top = max(top, t.top_trade_id)
            stream.append(t)
        else:
            stream.append(_template(frame, [(_CB_SEQ, _SEQ)], BOOK))
    restore = []
    ts = "2026-01-01T00:00:00.000000000Z"
    for product, s_book in s_market.books.items():
        e_book = e_market.books.get(product)
        if e_book is None:
            continue
        updates = [{"side": name, "event_time": ts, "price_level": (e_book[side][p] if lv is None else lv)[0],
                    "new_quantity": "0" if lv is None else lv[1]}
                   for side, name in (("bid", "bid"), ("ask", "offer"))
                   for p, lv in _diff(e_book[side], s_book[side], lambda lv: Decimal(lv[1]))]
        frame = orjson.dumps({"channel": "l2_data", "timestamp": ts, "sequence_num": 0,
                              "events": [{"type": "update", "product_id": product,
                                          "updates": updates}]})
        restore.append(_template(frame, [(_CB_SEQ, _SEQ)], BOOK))
    looper = Looper(restore, stream, seq=session.seq, trade_id=top + 1, trade_share=share)
    looper.numbering = session
    return looper


# ---- Binance.US --------------------------------------------------------------------------------

def _binanceus(server: ReplayServer, session: Any, recorded: dict[int, Sequence[bytes | str]],
               share: float | None) -> Looper:
    rep: Any = server.exchange
    info, data = rep.info, rep.data
    rest = {native: i for i, k in reversed(list(enumerate(info)))
            if k is not None and k[0] == "rest" for native in (k[1],)}
    if len(rest) != 1:
        raise ValueError("looping needs exactly one symbol with a REST snapshot in the capture")
    (native, rest_index), = rest.items()
    body = data[rest_index]
    last_id = body["lastUpdateId"]
    state: tuple[dict[Decimal, tuple[str, str]], dict[Decimal, tuple[str, str]]] = ({}, {})

    def apply(bids: list[Any], asks: list[Any]) -> None:
        for side, levels in zip(state, (bids, asks)):
            for price, qty in levels:
                if Decimal(qty) == 0:
                    side.pop(Decimal(price), None)
                else:
                    side[Decimal(price)] = (price, qty)

    # S: the REST body plus the events the client buffered before it (those after its id);
    # the stream: every later depth event (and the trades after the REST answer).
    apply(body["bids"], body["asks"])
    start = rest_index + 1
    for i in range(rest_index):
        if info[i] == ("depth", native) and data[i]["u"] > last_id:
            apply(data[i]["b"], data[i]["a"])
    s_state = (dict(state[0]), dict(state[1]))

    def kind_of(i: int) -> int:
        k = info[i]
        if k is None or k[1] != native:
            return OTHER
        return BOOK if k[0] == "depth" and data[i]["u"] > last_id else \
            TRADE if k[0] == "trade" else OTHER

    stream, top, first_u, last_u = [], 0, None, None
    for i, kind, frame in _sent_frames(recorded, start, len(rep.frames), kind_of):
        if kind == TRADE:
            t = _template(frame, [(_BN_TRADE, _TRADE_ID), (_BN_TIME, _TIME)], TRADE)
            top = max(top, t.top_trade_id)
        else:
            t = _template(frame, [(_BN_U, _UID)], BOOK)
            apply(data[i]["b"], data[i]["a"])
            first_u = data[i]["U"] if first_u is None else first_u
            last_u = data[i]["u"]
        stream.append(t)
    if first_u is None or last_u is None:
        raise ValueError("the capture has no depth events after its REST snapshot")
    levels = [[[end[p][0], "0.00000000"] if lv is None else list(lv)
               for p, lv in _diff(end, begin, lambda lv: Decimal(lv[1]))]
              for end, begin in zip(state, s_state)]
    event = {"e": "depthUpdate", "E": 0, "s": native, "U": first_u - 1, "u": first_u - 1,
             "b": levels[0], "a": levels[1]}
    name = session.streams.get((native, "depth"))
    frame = orjson.dumps({"stream": name, "data": event} if session.combined else event)
    restore = [_template(frame, [(_BN_U, _UID)], BOOK)]
    # pass p: restore at first_u - 1 + p*step, the stream at its ids + p*step: continuous.
    return Looper(restore, stream, trade_id=top + 1, uid_step=last_u - first_u + 2,
                  trade_share=share, time_shift=_time_shift(stream, 1_000))


_BUILDERS = {"kraken": _kraken, "coinbase": _coinbase, "binanceus": _binanceus}


def build_looper(server: ReplayServer, session: Session,
                 recorded: dict[int, Sequence[bytes | str]],
                 trade_share: float | None = None) -> Looper:
    """A :class:`Looper` continuing what ``session`` was sent (``recorded``: capture index ->
    the frames the session sent for it) after the capture's last frame."""
    builder = _BUILDERS.get(server.exchange.name)
    if builder is None:
        raise ValueError(f"looping is not supported for {server.exchange.name!r}")
    return builder(server, session, recorded, trade_share)
