"""The record envelope: one market-data event as bytes, on the shared-memory rings and in binary
WebSocket frames.

Every record starts with the same 29-byte little-endian header, then three short UTF-8 names,
then a payload whose form depends on the record type::

    offset  size  field
    0       1     magic/version (0xA1)
    1       1     record type (RecordType)
    2       1     len(exchange)   \\
    3       1     len(symbol)      > bytes each, 0..255
    4       1     len(native)     /
    5       8     ts_event  (int64 ns, the exchange's time; 0 when unknown)
    13      8     ts_recv   (int64 ns, when the server received the frame)
    21      8     ts_pub    (int64 ns, when the publisher encoded the record)
    29      ...   exchange, symbol, native_symbol (the names, back to back)
    ...     ...   payload

    TRADE           u8 side (0 buy, 1 sell; the taker's) u8 len(price) u8 len(size)
                    u16 len(trade_id), then the texts: exact decimal text, as the exchange sent it
    BOOK_SNAPSHOT   Delta.encode()  (is_snapshot set; it carries the book's sequence)
    BOOK_DELTA      Delta.encode()
    GAP             i64 missed, u8 len(reason), u16 len(detail), texts
    CHECKSUM        u64 sequence, u32 CRC32 of the publisher's book at that sequence
                    (``OrderBook.checksum()``, Kraken's rule over the top 10 levels)
    ARBITRAGE       JSON object (an opportunity's ``to_dict()``); symbol in the header
    HEARTBEAT       i32 publisher pid, u64 records dropped for this reader so far
    CONTROL         u8 len(kind), then kind and detail text ("hello", "resync", "bye", ...)

Names are inline rather than ids from a table the publisher announces: a record then means the
same thing on any ring, in any WebSocket frame, after any overrun, with no state to lose.  The
cost is measured (benchmarks/feed_latency.py --envelope): about 20 bytes per record for Kraken's
"kraken"/"BTC-USD"/"BTC/USD", and no time, because both ends cache the name block (the encoder
per name triple, the decoder per distinct byte string), so no string is built per record.

``encode``/``decode`` are exact inverses: ``decode(encode(x, ts_pub)) == x`` for every event and
record value, and ``encode(decode(b), ts_pub(b)) == b`` for every record.  Encoding is compiled
(``_wire.pyx``: the whole record written into one buffer; book and trade records, the server's
hot path, with no intermediate object at all); decoding is a struct unpack plus slices; there is
no per-record dict.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final, NamedTuple

from ._book import Delta
from ._wire import decode_event as _decode_event
from ._wire import decode_names as _decode_names
from ._wire import encode_book as _encode_book
from ._wire import encode_record as _encode_record
from ._wire import encode_trade as _encode_trade
from ._wire import use_event_classes
from .errors import ProtocolError
from .events import BookSnapshot, BookUpdate, Gap, Trade, fast_constructor, new_trade

__all__ = [
    "MAGIC", "HEADER_SIZE", "RecordType", "Header", "Heartbeat", "Checksum", "Arbitrage",
    "Control", "Record", "encode", "decode", "encode_book", "header", "record_type", "ts_pub",
]

MAGIC: Final = 0xA1   # high nibble "A", low nibble the layout version (1)


class RecordType(IntEnum):
    """The ``type`` byte of a record."""

    TRADE = 1
    BOOK_SNAPSHOT = 2
    BOOK_DELTA = 3
    GAP = 4
    CHECKSUM = 5
    ARBITRAGE = 6
    HEARTBEAT = 7
    CONTROL = 8


# Plain ints for the hot paths (IntEnum attribute access and comparisons cost more).
TRADE: Final = 1
BOOK_SNAPSHOT: Final = 2
BOOK_DELTA: Final = 3
GAP: Final = 4
CHECKSUM: Final = 5
ARBITRAGE: Final = 6
HEARTBEAT: Final = 7
CONTROL: Final = 8

_HDR = struct.Struct("<BBBBBqqq")
HEADER_SIZE: Final = _HDR.size                      # 29
_TRADE_FIXED = struct.Struct("<BBBH")
_GAP = struct.Struct("<qBH")
_CHECKSUM = struct.Struct("<QI")
_HEARTBEAT = struct.Struct("<iQ")
_TS_PUB = struct.Struct("<q")

_SIDES: Final = ("buy", "sell")


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The publisher is alive (sent to an idle reader every few hundred ms)."""

    server_pid: int
    dropped: int          # records the publisher dropped for this reader so far
    ts_pub: int


@dataclass(frozen=True, slots=True)
class Checksum:
    """The publisher's book ``exchange``/``symbol`` had this CRC32 at ``sequence``."""

    exchange: str
    symbol: str
    sequence: int
    checksum: int
    ts_pub: int


@dataclass(frozen=True, slots=True)
class Arbitrage:
    """A cross-exchange opportunity opened or closed (``data`` is its ``to_dict()``)."""

    symbol: str
    data: dict[str, Any]
    ts_event: int
    ts_recv: int


@dataclass(frozen=True, slots=True)
class Control:
    """A message from the publisher about the stream itself ("hello", "resync", "bye", ...)."""

    kind: str
    detail: str
    ts_pub: int


Record = Trade | BookSnapshot | BookUpdate | Gap | Checksum | Arbitrage | Heartbeat | Control


class Header(NamedTuple):
    """The envelope fields of a record (``header(data)``)."""

    type: int
    exchange: str
    symbol: str
    native_symbol: str
    ts_event: int
    ts_recv: int
    ts_pub: int


# --- fast event construction -----------------------------------------------------------------

_trade = new_trade
_update = fast_constructor(BookUpdate)
_snapshot = fast_constructor(BookSnapshot)
use_event_classes(BookUpdate, BookSnapshot, Trade)


# --- name blocks (both caches live in _wire) ---------------------------------------------------

def _split_names(block: bytes, le: int, ls: int) -> tuple[str, str, str]:
    names = _decode_names(block, le, ls)       # None only when a name is not UTF-8
    if names is None:
        try:
            for part in (block[:le], block[le:le + ls], block[le + ls:]):
                part.decode()
        except UnicodeDecodeError as exc:
            raise ProtocolError("wire_format", f"names are not UTF-8: {exc}") from None
    return names  # type: ignore[return-value]


# --- encoding ----------------------------------------------------------------------------------

def encode_book(kind: str | int, exchange: str, symbol: str, delta: Delta, ts_event: int,
                ts_recv: int, ts_pub_: int, native: str = "") -> bytes:
    """A book record from its parts: ``kind`` "snapshot"/"delta" (or the RecordType)."""
    if kind == "snapshot" or kind == BOOK_SNAPSHOT:
        code = BOOK_SNAPSHOT
    elif kind == "delta" or kind == BOOK_DELTA:
        code = BOOK_DELTA
    else:
        raise ValueError(f"book record kind must be 'snapshot' or 'delta', got {kind!r}")
    return _encode_book(code, exchange, symbol, native, delta, ts_event, ts_recv, ts_pub_)


def _encode_gap(g: Gap, ts_pub_: int) -> bytes:
    reason, detail = g.reason.encode(), g.detail.encode()
    if len(reason) > 255:
        raise ValueError(f"gap reason longer than 255 bytes: {g.reason!r}")
    detail = _clip(detail, 65535)
    return _encode_record(GAP, g.exchange, g.symbol, "", 0, g.ts_recv, ts_pub_, b"".join((
        _GAP.pack(g.missed, len(reason), len(detail)), reason, detail)))


def _clip(text: bytes, limit: int) -> bytes:
    """Cut free text at ``limit`` bytes on a character boundary (details are for humans)."""
    if len(text) <= limit:
        return text
    return text[:limit].decode(errors="ignore").encode()


def encode(obj: Record, ts_pub: int = 0) -> bytes:
    """The record for an event (Trade, BookSnapshot, BookUpdate, Gap) or a wire value.

    ``ts_pub`` is the publication time (``time.time_ns()``) stamped into the header; the wire
    values Heartbeat/Checksum/Control carry their own."""
    cls = type(obj)
    if cls is BookUpdate:
        return _encode_book(BOOK_DELTA, obj.exchange, obj.symbol, obj.native_symbol, obj.delta,
                            obj.ts_event, obj.ts_recv, ts_pub)
    if cls is Trade:
        return _encode_trade(obj.exchange, obj.symbol, obj.native_symbol, obj.price, obj.size,
                             obj.side, obj.trade_id, obj.ts_event, obj.ts_recv, ts_pub)
    if cls is BookSnapshot:
        return _encode_book(BOOK_SNAPSHOT, obj.exchange, obj.symbol, obj.native_symbol,
                            obj.delta, obj.ts_event, obj.ts_recv, ts_pub)
    if cls is Gap:
        return _encode_gap(obj, ts_pub)
    if cls is Checksum:
        return _encode_record(CHECKSUM, obj.exchange, obj.symbol, "", 0, 0, obj.ts_pub,
                              _CHECKSUM.pack(obj.sequence, obj.checksum))
    if cls is Heartbeat:
        return _encode_record(HEARTBEAT, "", "", "", 0, 0, obj.ts_pub,
                              _HEARTBEAT.pack(obj.server_pid, obj.dropped))
    if cls is Control:
        kind = obj.kind.encode()
        if len(kind) > 255:
            raise ValueError(f"control kind longer than 255 bytes: {obj.kind!r}")
        return _encode_record(CONTROL, "", "", "", 0, 0, obj.ts_pub,
                              bytes((len(kind),)) + kind + obj.detail.encode())
    if cls is Arbitrage:
        body = json.dumps(obj.data, separators=(",", ":"), allow_nan=False).encode()
        return _encode_record(ARBITRAGE, "", obj.symbol, "", obj.ts_event, obj.ts_recv, ts_pub,
                              body)
    raise TypeError(f"cannot encode {cls.__name__} as a wire record")


# --- decoding ----------------------------------------------------------------------------------

def _bad(detail: str) -> ProtocolError:
    return ProtocolError("wire_format", detail)


def decode(data: bytes | bytearray | memoryview) -> Record:
    """The event or wire value a record stands for (exact inverse of ``encode``).

    Raises ProtocolError(reason="wire_format") on anything that is not a well-formed record."""
    if type(data) is not bytes:
        data = bytes(data)
    event = _decode_event(data)          # compiled: well-formed trade and book records
    if event is not None:
        return event
    try:
        magic, kind, le, ls, ln, ts_event, ts_recv, ts_pub_ = _HDR.unpack_from(data)
    except struct.error:
        raise _bad(f"record of {len(data)} bytes is shorter than the {HEADER_SIZE}-byte header") from None
    if magic != MAGIC:
        raise _bad(f"bad magic/version byte {magic:#04x} (expected {MAGIC:#04x})")
    body = HEADER_SIZE + le + ls + ln
    if body > len(data):
        raise _bad(f"names run past the end of a {len(data)}-byte record")
    exchange, symbol, native = _split_names(data[HEADER_SIZE:body], le, ls)
    try:
        if kind == BOOK_DELTA or kind == BOOK_SNAPSHOT:
            delta = Delta.decode(data[body:])   # a bytes copy decodes faster than a view
            if delta.is_snapshot != (kind == BOOK_SNAPSHOT):
                raise _bad("book record type and the delta's snapshot flag disagree")
            make = _update if kind == BOOK_DELTA else _snapshot
            return make(exchange, symbol, native, delta, ts_event, ts_recv)
        if kind == TRADE:
            side, lp, lsz, lt = _TRADE_FIXED.unpack_from(data, body)
            p = body + _TRADE_FIXED.size
            if p + lp + lsz + lt != len(data) or side > 1:
                raise _bad("trade payload lengths do not match the record")
            return _trade(exchange, symbol, native, data[p:p + lp].decode("ascii"),
                         data[p + lp:p + lp + lsz].decode("ascii"), _SIDES[side],
                         data[p + lp + lsz:].decode(), ts_event, ts_recv)
        if kind == GAP:
            missed, lr, ld = _GAP.unpack_from(data, body)
            p = body + _GAP.size
            if p + lr + ld != len(data):
                raise _bad("gap payload lengths do not match the record")
            return Gap(exchange, symbol, data[p:p + lr].decode(), data[p + lr:].decode(),
                       missed, ts_recv)
        if kind == CHECKSUM:
            if len(data) != body + _CHECKSUM.size:
                raise _bad("checksum record has the wrong length")
            sequence, crc = _CHECKSUM.unpack_from(data, body)
            return Checksum(exchange, symbol, sequence, crc, ts_pub_)
        if kind == HEARTBEAT:
            if len(data) != body + _HEARTBEAT.size:
                raise _bad("heartbeat record has the wrong length")
            pid, dropped = _HEARTBEAT.unpack_from(data, body)
            return Heartbeat(pid, dropped, ts_pub_)
        if kind == CONTROL:
            lk = data[body]
            return Control(data[body + 1:body + 1 + lk].decode(), data[body + 1 + lk:].decode(),
                           ts_pub_)
        if kind == ARBITRAGE:
            obj = json.loads(data[body:])
            if type(obj) is not dict:
                raise _bad("arbitrage payload is not a JSON object")
            return Arbitrage(symbol, obj, ts_event, ts_recv)
    except ProtocolError:
        raise
    except (ValueError, IndexError, struct.error) as exc:   # BookError is a ValueError too
        raise _bad(f"malformed {_type_name(kind)} payload: {exc}") from None
    raise _bad(f"unknown record type {kind}")


def _type_name(kind: int) -> str:
    try:
        return RecordType(kind).name.lower()
    except ValueError:
        return f"type-{kind}"


def header(data: bytes | bytearray | memoryview) -> Header:
    """The envelope fields without decoding the payload."""
    magic, kind, le, ls, ln, ts_event, ts_recv, ts_pub_ = _HDR.unpack_from(data)
    if magic != MAGIC:
        raise _bad(f"bad magic/version byte {magic:#04x} (expected {MAGIC:#04x})")
    body = HEADER_SIZE + le + ls + ln
    if body > len(data):
        raise _bad(f"names run past the end of a {len(data)}-byte record")
    names = _split_names(bytes(data[HEADER_SIZE:body]), le, ls)
    return Header(kind, *names, ts_event, ts_recv, ts_pub_)


def record_type(data: bytes | bytearray | memoryview) -> int:
    """The type byte (a RecordType value) of a record."""
    return data[1]


def ts_pub(data: bytes | bytearray | memoryview) -> int:
    """The publication time stamped in a record's header (ns)."""
    return _TS_PUB.unpack_from(data, 21)[0]
