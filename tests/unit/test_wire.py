"""The record envelope (alphapulse.wire): exact round trips, layout, and hostile input."""
from __future__ import annotations

import ast
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphapulse import _wire, wire
from alphapulse._book import Delta, OrderBook
from alphapulse.errors import ProtocolError
from alphapulse.events import BookSnapshot, BookUpdate, Gap, Trade

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
short_names = st.sampled_from(["kraken", "coinbase", "binanceus", "", "ü-exchange"])
symbols = st.sampled_from(["BTC-USD", "ETH-USD", "", "X" * 255])
i64 = st.integers(-(2**63), 2**63 - 1)
ts = st.integers(0, 2**63 - 1)


@st.composite
def decimals(draw: st.DrawFn, precision: int, positive: bool = False) -> str:
    whole = draw(st.integers(1 if positive else 0, 10**9))
    frac = draw(st.integers(0, 10**precision - 1)) if precision else 0
    return f"{whole}.{frac:0{precision}d}" if precision else str(whole)


@st.composite
def trades(draw: st.DrawFn) -> Trade:
    return Trade(draw(short_names), draw(symbols), draw(names), draw(decimals(2)),
                 draw(decimals(8)), draw(st.sampled_from(["buy", "sell"])),
                 draw(st.text(max_size=40)), draw(ts), draw(ts))


@st.composite
def deltas(draw: st.DrawFn, snapshot: bool) -> Delta:
    pp, sp = draw(st.integers(0, 8)), draw(st.integers(0, 8))
    n = draw(st.integers(0, 12))
    changes = []
    for _ in range(n):
        side = draw(st.sampled_from(["bid", "ask"]))
        size = "0" if not snapshot and draw(st.booleans()) else draw(decimals(sp))
        if snapshot and size.strip("0.") == "":
            size = "1"
        changes.append((side, draw(decimals(pp, positive=True)), size))
    if snapshot:   # a snapshot lists each price once per side
        seen: dict[tuple[str, str], tuple[str, str, str]] = {}
        for c in changes:
            seen[(c[0], c[1])] = c
        changes = list(seen.values())
    return Delta(changes, sequence=draw(st.integers(0, 2**40)), is_snapshot=snapshot,
                 exchange=draw(short_names), symbol=draw(symbols), price_precision=pp,
                 size_precision=sp)


@st.composite
def book_events(draw: st.DrawFn) -> BookSnapshot | BookUpdate:
    snapshot = draw(st.booleans())
    cls = BookSnapshot if snapshot else BookUpdate
    return cls(draw(short_names), draw(symbols), draw(names), draw(deltas(snapshot)),
               draw(ts), draw(ts))


gaps = st.builds(Gap, short_names, symbols, st.text(max_size=30), st.text(max_size=300),
                 st.integers(-1, 2**62), ts)
checksums = st.builds(wire.Checksum, short_names, symbols, st.integers(0, 2**64 - 1),
                      st.integers(0, 2**32 - 1), ts)
heartbeats = st.builds(wire.Heartbeat, st.integers(0, 2**31 - 1), st.integers(0, 2**64 - 1), ts)
controls = st.builds(wire.Control, st.text(max_size=20), st.text(max_size=200), ts)
json_values = st.recursive(st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.text(max_size=10)
                           | st.floats(allow_nan=False, allow_infinity=False),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
arbitrages = st.builds(wire.Arbitrage, symbols, st.dictionaries(st.text(max_size=8), json_values,
                                                                max_size=6), ts, ts)
records = st.one_of(trades(), book_events(), gaps, checksums, heartbeats, controls, arbitrages)


@settings(max_examples=250, deadline=None)
@given(records, ts)
def test_decode_inverts_encode(record: wire.Record, ts_pub: int) -> None:
    data = wire.encode(record, ts_pub)
    assert wire.decode(data) == record
    # ... and the bytes come back identical from what was decoded (the other direction).
    assert wire.encode(wire.decode(data), wire.ts_pub(data)) == data
    # Any bytes-like form decodes the same.
    assert wire.decode(memoryview(data)) == record
    assert wire.decode(bytearray(data)) == record


@settings(max_examples=200, deadline=None)
@given(st.one_of(trades(), book_events(), gaps), ts)
def test_header_fields(event: Trade | BookSnapshot | BookUpdate | Gap, ts_pub: int) -> None:
    data = wire.encode(event, ts_pub)
    h = wire.header(data)
    assert (h.exchange, h.symbol, h.ts_recv, h.ts_pub) == (event.exchange, event.symbol,
                                                           event.ts_recv, ts_pub)
    assert wire.ts_pub(data) == ts_pub
    assert wire.record_type(data) == h.type
    expected = {Trade: wire.RecordType.TRADE, BookSnapshot: wire.RecordType.BOOK_SNAPSHOT,
                BookUpdate: wire.RecordType.BOOK_DELTA, Gap: wire.RecordType.GAP}[type(event)]
    assert h.type == expected


def test_layout_is_the_documented_one() -> None:
    book = OrderBook("BTC-USD", 1, 8, exchange="kraken")
    book.snapshot([("65000.1", "0.5")], [("65001.0", "0.3")])
    delta = book.update("bid", "65000.2", "0.1")
    event = BookUpdate("kraken", "BTC-USD", "BTC/USD", delta, 11, 22)
    data = wire.encode(event, 33)
    assert data[:5] == bytes((0xA1, 3, 6, 7, 7))
    assert struct.unpack_from("<qqq", data, 5) == (11, 22, 33)
    assert data[29:49] == b"krakenBTC-USDBTC/USD"
    assert data[49:] == delta.encode()
    # The server's WebSocket binary frames go through encode_book: the same bytes.
    assert wire.encode_book("delta", "kraken", "BTC-USD", delta, 11, 22, 33, "BTC/USD") == data


def test_trade_layout_is_the_documented_one() -> None:
    t = Trade("binanceus", "ETH-USD", "ETHUSD", "3012.55", "0.0100", "sell", "id-ü", 11, 22)
    data = wire.encode(t, 33)
    names, tid = b"binanceusETH-USDETHUSD", "id-ü".encode()
    assert data == (struct.pack("<BBBBBqqq", 0xA1, 1, 9, 7, 6, 11, 22, 33) + names
                    + struct.pack("<BBBH", 1, 7, 6, len(tid)) + b"3012.550.0100" + tid)


def test_large_snapshot_record() -> None:
    # Past the encoder's stack buffer: the same bytes, the same delta back.
    snap = Delta([("bid", f"{100000 - i}.5", "1.25") for i in range(2000)]
                 + [("ask", f"{100001 + i}.5", "0.5") for i in range(2000)],
                 sequence=7, is_snapshot=True, exchange="kraken", symbol="BTC-USD",
                 price_precision=1, size_precision=2)
    event = BookSnapshot("kraken", "BTC-USD", "BTC/USD", snap, 1, 2)
    data = wire.encode(event, 3)
    assert data[49:] == snap.encode() and len(data) > 4000
    assert wire.decode(data) == event


@pytest.mark.parametrize("trade, error", [
    (Trade("kraken", "BTC-USD", "BTC/USD", "1٫5", "1", "buy", "", 0, 0), UnicodeEncodeError),
    (Trade("kraken", "BTC-USD", "BTC/USD", "1", "1" * 256, "buy", "", 0, 0), ValueError),
    (Trade("kraken", "BTC-USD", "BTC/USD", "1", "1", "buy", "t" * 65536, 0, 0), ValueError),
    (Trade("k" * 256, "BTC-USD", "BTC/USD", "1", "1", "buy", "", 0, 0), ValueError),
    (Trade("kraken", "BTC-USD", "BTC/USD", "1", "1", "buy", "", 2**63, 0), OverflowError),
])
def test_unencodable_trades_raise(trade: Trade, error: type[Exception]) -> None:
    with pytest.raises(error):
        wire.encode(trade, 0)


def _python_decode(data: bytes) -> wire.Record:
    """wire.decode without its compiled fast path (the oracle)."""
    fast, wire._decode_event = wire._decode_event, lambda _: None
    try:
        return wire.decode(data)
    finally:
        wire._decode_event = fast


@settings(max_examples=300, deadline=None)
@given(st.one_of(trades(), book_events()), ts, st.data())
def test_compiled_decode_agrees_with_the_python_path(event: Trade | BookSnapshot | BookUpdate,
                                                     ts_pub: int, data: st.DataObject) -> None:
    record = wire.encode(event, ts_pub)
    assert _wire.decode_event(record) == _python_decode(record) == event
    # Damaged: the compiled path either declines (None) or agrees; it never raises.
    i = data.draw(st.integers(0, len(record) - 1))
    damaged = data.draw(st.sampled_from([
        record[:i], record[:i] + bytes((record[i] ^ data.draw(st.integers(1, 255)),)) + record[i + 1:],
        record + b"\x00"]))
    fast = _wire.decode_event(damaged)
    if fast is not None:
        assert fast == _python_decode(damaged)


def test_stub_names_what_the_encoder_module_offers() -> None:
    stub = ast.parse(Path(_wire.__file__).with_name("_wire.pyi").read_text())
    names = {n.name for n in stub.body if isinstance(n, ast.FunctionDef)}
    names |= {n.target.id for n in stub.body if isinstance(n, ast.AnnAssign)}  # type: ignore[union-attr]
    assert names == {n for n in dir(_wire) if not n.startswith("_")}


def test_trade_text_is_exact() -> None:
    t = Trade("coinbase", "BTC-USD", "BTC-USD", "65061.910000", "0.00100000", "sell", "987654321",
              1, 2)
    data = wire.encode(t, 3)
    assert b"65061.910000" in data and b"0.00100000" in data
    back = wire.decode(data)
    assert back.price == "65061.910000" and back.size == "0.00100000" and back.side == "sell"


def test_encode_book_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="snapshot"):
        wire.encode_book("trade", "kraken", "BTC-USD", Delta(), 0, 0, 0)


def test_encode_rejects_non_records() -> None:
    with pytest.raises(TypeError, match="dict"):
        wire.encode({"type": "trade"}, 0)   # type: ignore[arg-type]
    with pytest.raises(ValueError, match="side"):
        wire.encode(Trade("kraken", "BTC-USD", "BTC/USD", "1", "1", "bid", "", 0, 0), 0)  # type: ignore[arg-type]


def _sample() -> bytes:
    return wire.encode(Trade("kraken", "BTC-USD", "BTC/USD", "1.5", "2", "buy", "7", 1, 2), 3)


@pytest.mark.parametrize("mutate, match", [
    (lambda b: b[:10], "shorter"),
    (lambda b: b"\x00" + b[1:], "magic"),
    (lambda b: b[:1] + b"\x63" + b[2:], "unknown record type"),
    (lambda b: b[:2] + b"\xff" + b[3:], "names run past"),
    (lambda b: b + b"x", "lengths"),
    (lambda b: b[:-1], "lengths"),
])
def test_malformed_records_raise_protocol_error(mutate, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ProtocolError, match=match) as info:
        wire.decode(mutate(_sample()))
    assert info.value.reason == "wire_format"


@pytest.mark.parametrize("record", [
    wire.encode(Trade("kraken", "BTC-USD", "BTC/USD", "1.5", "2", "buy", "7", 1, 2), 3),
    wire.encode(Gap("kraken", "BTC-USD", "checksum", "", -1, 2), 3),
])
def test_names_that_are_not_utf8_are_a_wire_format_error(record: bytes) -> None:
    bad = record[:29] + b"\xff" + record[30:]          # the exchange name's first byte
    with pytest.raises(ProtocolError, match="names are not UTF-8") as info:
        wire.decode(bad)
    assert info.value.reason == "wire_format"
    assert _wire.decode_names(bad[29:29 + 20], 6, 7) is None


def test_book_flag_mismatch_and_bad_delta() -> None:
    snap = Delta([("bid", "1", "1")], sequence=1, is_snapshot=True, price_precision=0,
                 size_precision=0)
    data = wire.encode_book("snapshot", "x", "y", snap, 0, 0, 0)
    lying = data[:1] + bytes((wire.RecordType.BOOK_DELTA,)) + data[2:]
    with pytest.raises(ProtocolError, match="snapshot flag"):
        wire.decode(lying)
    with pytest.raises(ProtocolError, match="book_delta"):
        wire.decode(lying[:29 + 2] + b"\xff\xff\xff")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_random_bytes_never_crash(data: bytes) -> None:
    try:
        wire.decode(bytes((wire.MAGIC,)) + data)
    except ProtocolError:
        pass


def test_name_caches_are_bounded() -> None:
    for i in range(_wire.NAME_CACHE_MAX + 10):
        g = Gap("x", f"S{i}", "r", "", -1, 0)
        assert wire.decode(wire.encode(g, 0)) == g
    encoded, decoded = _wire.name_cache_sizes()
    assert encoded <= _wire.NAME_CACHE_MAX
    assert decoded <= _wire.NAME_CACHE_MAX
