"""BinanceUSParser (sans-IO) against every Binance.US capture, plus the alignment edge cases.

Expected numbers are those of fixtures/SOURCES.md and the *.truth.json files.
"""
from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from alphapulse.capture import read_frames
from alphapulse.events import BookSnapshot, BookUpdate, Gap, Rejected, Trade
from alphapulse.exchanges import get_parser
from alphapulse.exchanges.binanceus import BinanceUSParser, snapshot_weight
from alphapulse.symbols import from_native, instrument

# SOURCES.md: file -> (symbol, depth events, aggTrades, best bid, best ask)
REAL = {
    "2021-04-17-atomusdt": ("ATOM-USDT", 31, 0, "25.157", "25.201"),
    "2021-04-17-bchusdt": ("BCH-USDT", 158, 6, "1052.39", "1054.13"),
    "2021-04-17-btcusdt": ("BTC-USDT", 187, 5, "60484.72", "60494.05"),
    "2021-04-17-busdusd": ("BUSD-USD", 6, 0, "0.9999", "1.0000"),
    "2021-04-17-ethbusd": ("ETH-BUSD", 106, 0, "2361.24", "2365.45"),
    "2021-04-17-omgusd": ("OMG-USD", 60, 0, "9.5423", "9.5559"),
    "2021-04-17-usdtusd": (None, 11, 4, "1.0010", "1.0011"),
    "2021-04-17-xlmusdt": ("XLM-USDT", 144, 1, "0.60082", "0.60197"),
    "2021-04-17-zenusd": ("ZEN-USD", 26, 0, "121.2730", "121.7210"),
    "2021-04-17-zrxusd": ("ZRX-USD", 78, 2, "2.0827", "2.0882"),
    "2021-10-12-compusdt": ("COMP-USDT", 107, 0, "296.92", "297.46"),
    "2021-10-12-crvusdt": ("CRV-USDT", 29, 0, "2.643", "2.648"),
    "2021-10-12-omgbusd": ("OMG-BUSD", 159, 11, "13.7307", "13.7728"),
    "2021-10-12-zrxusdt": ("ZRX-USDT", 41, 0, "0.9947", "0.9978"),
}


def run(frames: list[bytes], symbols: list[str] | None = None,
        **kwargs: Any) -> tuple[BinanceUSParser, list]:
    events: list = []
    parser = BinanceUSParser(symbols, sink=events.append, **kwargs)
    for frame in frames:
        parser.feed(frame, 1)
        for symbol in parser.take_resyncs():
            parser.resume_offline(symbol)
    return parser, events


def only_book(parser: BinanceUSParser):
    (book,) = parser.books.values()
    return book


def truth(fixtures_dir: Path, name: str) -> dict:
    return json.loads((fixtures_dir / "generated" / f"{name}.truth.json").read_text())


def test_registered_and_weights() -> None:
    assert get_parser("binanceus") is BinanceUSParser
    assert [snapshot_weight(n) for n in (100, 101, 500, 1000, 5000)] == [1, 5, 5, 10, 50]


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_capture_syncs_without_gap(fixtures_dir: Path, name: str) -> None:
    symbol, depth_events, agg, bid, ask = REAL[name]
    parser, events = run(read_frames(fixtures_dir / "binanceus" / f"{name}.jsonl"))
    s = parser.stats()
    assert s["gaps"] == 0 and s["rejected"] == {} and s["snapshots"] == 1
    assert s["dropped_before_snapshot"] == 1                     # "drop 1"
    assert s["updates"] == depth_events - 1 and s["trades"] == agg
    book = only_book(parser)
    if symbol is not None:
        assert book.symbol == symbol
    assert (Decimal(book.best_bid()[0]), Decimal(book.best_ask()[0])) == (Decimal(bid),
                                                                          Decimal(ask))
    assert parser.state(book.symbol) == "live" and not book.crossed


def test_usdtusd_with_subscribed_symbol(fixtures_dir: Path) -> None:
    # USDTUSD alone is ambiguous (USDT-USD or USD-TUSD): the subscription decides
    parser, _ = run(read_frames(fixtures_dir / "binanceus" / "2021-04-17-usdtusd.jsonl"),
                    ["USDT-USD"])
    assert list(parser.books) == ["USDT-USD"] and parser.stats()["gaps"] == 0


@pytest.mark.parametrize("native, symbol", [
    ("USDTUSD", "USDT-USD"), ("usdtusd", "USDT-USD"), ("BUSDUSD", "BUSD-USD"),
    ("USDCUSDT", "USDC-USDT"), ("TUSDUSD", "TUSD-USD"), ("ETHBUSD", "ETH-BUSD"),
    ("ZRXUSDT", "ZRX-USDT"), ("BTCUSD", "BTC-USD")])
def test_native_symbols_split_by_the_listed_pairs(native: str, symbol: str) -> None:
    # the listed pairs (exchangeInfo's baseAsset/quoteAsset) decide, not the longest suffix
    inst = from_native("binanceus", native)
    assert inst.symbol == symbol and inst.native == native.upper()
    assert instrument("binanceus", symbol).native == native.upper()


def test_usdtusd_capture_without_subscription(fixtures_dir: Path) -> None:
    # verify (no symbol list) names the book from the listed pair
    parser, _ = run(read_frames(fixtures_dir / "binanceus" / "2021-04-17-usdtusd.jsonl"))
    assert list(parser.books) == ["USDT-USD"] and parser.stats()["gaps"] == 0


def test_all_real_captures_concatenated(fixtures_dir: Path) -> None:
    # several symbols in one stream: each REST body finds its owner by its update ids
    frames = [f for name in sorted(REAL) for f in
              read_frames(fixtures_dir / "binanceus" / f"{name}.jsonl")]
    parser, _ = run(frames)
    assert parser.stats()["gaps"] == 0 and parser.stats()["snapshots"] == len(REAL)
    assert len(parser.books) == len(REAL)


@pytest.mark.parametrize("name", ["binanceus-clean", "binanceus-gap"])
def test_generated(fixtures_dir: Path, name: str) -> None:
    t = truth(fixtures_dir, name)
    parser, events = run(read_frames(fixtures_dir / "generated" / f"{name}.jsonl"))
    s = parser.stats()
    assert s["messages"] == t["messages"] and s["trades"] == t["trades"]
    book = parser.books["BTC-USD"]
    assert (Decimal(book.best_bid()[0]), Decimal(book.best_ask()[0])) == (
        Decimal(t["final_best_bid"]), Decimal(t["final_best_ask"]))
    assert s["dropped_before_snapshot"] == 2          # README: events 1-2 dropped
    gaps = [e for e in events if isinstance(e, Gap)]
    if t["injected_gap"] is None:
        assert gaps == [] and s["resyncs"] == 0
    else:
        assert len(gaps) == 1 and s["resyncs"] == 1
        g = t["injected_gap"]
        assert gaps[0].missed == g["dropped_u"] - g["dropped_U"] + 1
        assert f"{g['dropped_U']}..{g['dropped_u']}" in gaps[0].detail
    seqs = [e.delta.sequence for e in events if isinstance(e, (BookSnapshot, BookUpdate))]
    assert seqs == list(range(1, len(seqs) + 1))


@pytest.mark.parametrize("fault", ["drop", "duplicate", "reorder"])
def test_one_fault_one_gap(fixtures_dir: Path, fault: str) -> None:
    frames = read_frames(fixtures_dir / "generated" / "binanceus-clean.jsonl")
    depth = [i for i, f in enumerate(frames) if b"depthUpdate" in f]
    i = depth[2000]
    if fault == "drop":
        del frames[i]
    elif fault == "duplicate":
        frames.insert(i, frames[i])
    else:
        j = depth[2001]
        frames[i], frames[j] = frames[j], frames[i]
    parser, events = run(frames)
    assert [e.reason for e in events if isinstance(e, Gap)] == ["sequence"]


def _depth(first: int, final: int, bids: Any = (), asks: Any = (), symbol: Any = "BTCUSD",
           combined: bool = True) -> bytes:
    data = {"e": "depthUpdate", "E": 1618677415724, "s": symbol, "U": first, "u": final,
            "b": list(bids), "a": list(asks)}
    if combined:
        return orjson.dumps({"stream": "btcusd@depth@100ms", "data": data})
    return orjson.dumps(data)


def _snap(last_id: int, bids: Any = (("10.00", "1"),), asks: Any = (("11.00", "1"),)) -> bytes:
    return orjson.dumps({"lastUpdateId": last_id, "bids": list(bids), "asks": list(asks)})


def test_alignment_rules() -> None:
    parser, events = run([
        _depth(95, 99, [("9.00", "1")]),          # u <= lastUpdateId: dropped
        _depth(100, 101, [("10.00", "2")]),       # U == lastUpdateId: straddles, applied
        _snap(100),
        _depth(102, 104, [], [("11.00", "0")], combined=False),   # bare frame, U == prev u+1
    ])
    book = parser.books["BTC-USD"]
    assert book.bids() == [("10.00000000", "2.00000000")] and book.asks() == []
    assert parser.stats()["gaps"] == 0 and parser.dropped_before_snapshot == 1


def test_snapshot_older_than_stream_is_refetched_without_gap() -> None:
    parser = BinanceUSParser()
    parser.feed(_depth(200, 205), 1)
    parser.feed(_snap(150), 1)                    # 151..199 in neither: useless
    assert parser.state("BTC-USD") == "syncing" and parser.stats()["gaps"] == 0
    assert parser.take_resyncs() == {"BTC-USD": "stale_snapshot"}
    assert parser.snapshot_retries == 1
    parser.rest_symbol = "BTC-USD"
    parser.feed(_snap(203), 1)
    assert parser.state("BTC-USD") == "live" and parser.updates == 1


def test_snapshot_before_any_event_waits_for_its_symbol() -> None:
    parser, _ = run([_snap(100), _depth(101, 102, [("10.50", "1")])])
    assert parser.state("BTC-USD") == "live"
    assert parser.books["BTC-USD"].best_bid() == ("10.50000000", "1.00000000")


def test_live_gap_buffers_until_new_snapshot() -> None:
    parser = BinanceUSParser(["BTC-USD"])
    for frame in (_depth(100, 101), _snap(100), _depth(102, 103), _depth(110, 111)):
        parser.feed(frame, 1)
    assert parser.gaps == 1 and parser.take_resyncs() == {"BTC-USD": "sequence"}
    parser.feed(_depth(112, 115, [("10.20", "5")]), 1)
    assert parser.state("BTC-USD") == "resyncing"
    parser.rest_symbol = "BTC-USD"
    parser.feed(_snap(113), 1)                    # bridges the buffered 112..115
    assert parser.state("BTC-USD") == "live" and parser.gaps == 1
    assert parser.books["BTC-USD"].best_bid() == ("10.20000000", "5.00000000")


@pytest.mark.parametrize("first_after, missed", [(103, 0), (101, 0), (107, 3)])
def test_planned_reconnect_is_a_resync_and_a_gap_only_when_ids_were_missed(
        first_after: int, missed: int) -> None:
    # Binance.US cuts connections at 24 h, so the collector leaves first (max_lifetime):
    # routine, a resync; a gap only if update ids fell between the two streams.
    events: list = []
    parser = BinanceUSParser(["BTC-USD"], sink=events.append)
    for frame in (_depth(100, 101), _snap(100), _depth(102, 103)):
        parser.feed(frame, 1)
    assert parser.state("BTC-USD") == "live" and parser.resyncs == 0
    parser.connection_lost(2, planned=True)
    assert parser.gaps == 0 and parser.resyncs == 0 and not parser.take_resyncs()
    assert parser.state("BTC-USD") == "resyncing"
    parser.feed(_depth(first_after, 108, [("10.20", "5")]), 3)     # the new connection
    parser.rest_symbol = "BTC-USD"
    parser.feed(_snap(106), 3)
    gaps = [e for e in events if isinstance(e, Gap)]
    assert parser.state("BTC-USD") == "live" and parser.resyncs == 1
    assert parser.books["BTC-USD"].best_bid() == ("10.20000000", "5.00000000")
    if missed:
        assert parser.gaps == 1 and [(g.reason, g.missed) for g in gaps] == [("reconnect", 3)]
    else:
        assert parser.gaps == 0 and gaps == []


def test_unplanned_reconnect_is_a_gap() -> None:
    parser = BinanceUSParser(["BTC-USD"])
    for frame in (_depth(100, 101), _snap(100), _depth(102, 103)):
        parser.feed(frame, 1)
    parser.connection_lost(2)
    assert parser.gaps == 1 and parser.resyncs == 1


def test_trades_taker_side_and_dedupe() -> None:
    def trade(tid: int, maker: bool, kind: str = "trade") -> bytes:
        data = {"e": kind, "E": 1, "s": "BTCUSD", "p": "10.5", "q": "0.1", "T": 123,
                "m": maker, "M": True, "t" if kind == "trade" else "a": tid}
        return orjson.dumps({"stream": f"btcusd@{kind}", "data": data})

    parser, events = run([trade(1, True), trade(2, False), trade(2, False), trade(4, True),
                          trade(77, True, "aggTrade")])
    trades = [e for e in events if isinstance(e, Trade)]
    assert [(t.trade_id, t.side) for t in trades] == [("1", "sell"), ("2", "buy"), ("4", "sell")]
    assert trades[0].ts_event == 123_000_000 and trades[0].price == "10.5"
    assert parser.duplicates == 1 and parser.ignored_trades == 1
    assert [(g.reason, g.missed) for g in events if isinstance(g, Gap)] == [("trade_id", 1)]


HOSTILE = [
    (b'{"stream":"btcusd@depth@100ms","data":{"e":"depthUpdate"', "bad_json"),
    (b"[]", "malformed"),
    (b'{"stream":"x","data":[1]}', "malformed"),
    (_depth(102, 102, [("NaN", "1")]), "bad_price"),
    (_depth(102, 102, [("10.00", "-1")]), "bad_size"),
    (_depth(102, 102, [("10.00", "1", "extra")]), "malformed"),
    (_depth(102, 102, [("10.00", None)]), "bad_size"),
    (_depth(True, 102), "bad_update_id"),
    (_depth(103, 102), "bad_update_id"),
    (_depth(102, 102, symbol="DOGEUSD"), "unknown_symbol"),
    (_depth(102, 102, symbol={"a": 1}), "unknown_symbol"),
    (_depth(102, 102, [("10.00", "1")] * 30_000), "too_many_levels"),
    (orjson.dumps({"e": "trade", "E": 1, "s": "BTCUSD", "t": 5, "p": 10.5, "q": "1", "T": 1,
                   "m": True}), "wrong_type"),
    (orjson.dumps({"e": "trade", "E": 1, "s": "BTCUSD", "t": 5, "p": "-10", "q": "1", "T": 1,
                   "m": True}), "bad_price"),
    (orjson.dumps({"e": "trade", "E": 1, "s": "BTCUSD", "t": "5", "p": "10", "q": "1", "T": 1,
                   "m": True}), "bad_trade_id"),
    (b'{"code":-1121,"msg":"Invalid symbol."}', "exchange_error"),
    (b'{"e":"somethingNew","s":"BTCUSD"}', "unknown_type"),
    (b'{"lastUpdateId":"x","bids":[],"asks":[]}', "bad_update_id"),
]


@pytest.mark.parametrize("frame,reason", HOSTILE, ids=[r for _, r in HOSTILE])
def test_hostile_frames_rejected_book_intact(frame: bytes, reason: str) -> None:
    events: list = []
    parser = BinanceUSParser(["BTC-USD"], sink=events.append)
    parser.feed(_depth(100, 101), 1)
    parser.feed(_snap(101), 1)
    before = parser.books["BTC-USD"].copy()
    parser.feed(frame, 1)
    assert parser.rejected == {reason: 1}
    assert [e.reason for e in events if isinstance(e, Rejected)] == [reason]
    assert parser.books["BTC-USD"] == before
    parser.feed(_depth(102, 103, [("10.50", "3")]), 1)       # the chain carries on
    assert parser.books["BTC-USD"].best_bid() == ("10.50000000", "3.00000000")
    assert parser.gaps == 0 and parser.state("BTC-USD") == "live"


def test_late_snapshot_for_a_live_book_is_ignored() -> None:
    parser = BinanceUSParser(["BTC-USD"])
    for frame in (_depth(100, 101), _snap(100), _depth(102, 103, [("10.20", "5")])):
        parser.feed(frame, 1)
    parser.rest_symbol = "BTC-USD"
    parser.feed(_snap(101, bids=[("9.00", "1")]), 1)      # older than the live book
    assert parser.stale_snapshots == 1 and parser.state("BTC-USD") == "live"
    assert parser.books["BTC-USD"].best_bid() == ("10.20000000", "5.00000000")
    parser.feed(_depth(104, 104, [("10.30", "1")]), 1)    # the chain carries on
    assert parser.gaps == 0 and parser.books["BTC-USD"].best_bid()[0] == "10.30000000"
