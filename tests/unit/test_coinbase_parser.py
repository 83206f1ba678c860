"""CoinbaseParser (sans-IO) against every Coinbase capture, plus hand-made edge cases.

What a correct consumer concludes from each capture is in fixtures/README.md, SOURCES.md and
the *.truth.json files; the expected numbers below are copied from there, not from our code.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from alphapulse.capture import read_frames
from alphapulse.errors import ProtocolError
from alphapulse.events import BookSnapshot, BookUpdate, Gap, Rejected, Trade
from alphapulse.exchanges import get_parser
from alphapulse.exchanges.coinbase import CoinbaseParser, iso_ns

AT_REAL = "coinbase/advanced-trade-btcusd-ethusd-2026-08-09.jsonl"
EXCHANGE_REAL = "coinbase/exchange-feed-level2-ticker-matches-2021-04-17-a.jsonl"


def run(frames: list[bytes], **kwargs: Any) -> tuple[CoinbaseParser, list]:
    """Feed frames as ``verify`` does (offline: carry on after a gap)."""
    events: list = []
    parser = CoinbaseParser(sink=events.append, **kwargs)
    for frame in frames:
        parser.feed(frame, 1)
        for symbol in parser.take_resyncs():
            parser.resume_offline(symbol)
    return parser, events


def top(parser: CoinbaseParser, symbol: str) -> tuple[Decimal, Decimal]:
    book = parser.books[symbol]
    return Decimal(book.best_bid()[0]), Decimal(book.best_ask()[0])


def truth(fixtures_dir: Path, name: str) -> dict:
    return json.loads((fixtures_dir / "generated" / f"{name}.truth.json").read_text())


def test_registered() -> None:
    assert get_parser("coinbase") is CoinbaseParser


@pytest.mark.parametrize("name", ["coinbase-clean", "arb-coinbase"])
def test_generated_clean(fixtures_dir: Path, name: str) -> None:
    t = truth(fixtures_dir, name)
    parser, events = run(read_frames(fixtures_dir / "generated" / f"{name}.jsonl"))
    s = parser.stats()
    assert s["messages"] == t["messages"]
    assert s["trades"] == t["trades"]
    assert s["gaps"] == s["resyncs"] == 0 and s["rejected"] == {}
    assert top(parser, "BTC-USD") == (Decimal(t["final_best_bid"]), Decimal(t["final_best_ask"]))
    assert parser.protocol == "advanced_trade"
    # one BookUpdate per l2 update message, sequences rising by one
    seqs = [e.delta.sequence for e in events if isinstance(e, (BookSnapshot, BookUpdate))]
    assert seqs == list(range(1, len(seqs) + 1))


def test_generated_gap_is_one_gap(fixtures_dir: Path) -> None:
    t = truth(fixtures_dir, "coinbase-gap")
    parser, events = run(read_frames(fixtures_dir / "generated" / "coinbase-gap.jsonl"))
    gaps = [e for e in events if isinstance(e, Gap)]
    assert len(gaps) == 1 and parser.stats()["resyncs"] == 1
    gap = gaps[0]
    assert (gap.symbol, gap.reason, gap.missed) == ("", "sequence", 1)
    assert str(t["injected_gap"]["dropped_sequence_num"]) in gap.detail
    assert parser.stats()["trades"] == t["trades"]


def test_gap_requests_a_connection_wide_resync(fixtures_dir: Path) -> None:
    parser = CoinbaseParser()
    for frame in read_frames(fixtures_dir / "generated" / "coinbase-gap.jsonl"):
        parser.feed(frame, 1)
        if parser.pending_resync:
            break
    assert parser.take_resyncs() == {"": "sequence"}
    assert parser.state("BTC-USD") == "resyncing"
    # updates are not applied to a book being rebuilt; a new snapshot makes it live again
    updates_before = parser.updates
    parser.feed(b'{"channel":"l2_data","timestamp":"2026-11-27T10:00:00Z","sequence_num":1252,'
                b'"events":[{"type":"update","product_id":"BTC-USD","updates":[{"side":"bid",'
                b'"event_time":"2026-11-27T10:00:00Z","price_level":"1.00","new_quantity":"1"}]}]}')
    assert parser.updates == updates_before
    parser.feed(b'{"channel":"l2_data","timestamp":"2026-11-27T10:00:00Z","sequence_num":1253,'
                b'"events":[{"type":"snapshot","product_id":"BTC-USD","updates":[{"side":"bid",'
                b'"event_time":"2026-11-27T10:00:00Z","price_level":"10.00","new_quantity":"1"},'
                b'{"side":"offer","event_time":"2026-11-27T10:00:00Z","price_level":"11.00",'
                b'"new_quantity":"2"}]}]}')
    assert parser.state("BTC-USD") == "live"
    assert parser.books["BTC-USD"].best_ask() == ("11.00", "2.00000000")


@pytest.mark.parametrize("fault", ["drop", "duplicate", "reorder"])
def test_one_fault_one_gap(fixtures_dir: Path, fault: str) -> None:
    frames = read_frames(fixtures_dir / "generated" / "coinbase-clean.jsonl")
    i = 2000
    if fault == "drop":
        del frames[i]
    elif fault == "duplicate":
        frames.insert(i, frames[i])
    else:
        frames[i], frames[i + 1] = frames[i + 1], frames[i]
    parser, events = run(frames)
    assert [e.reason for e in events if isinstance(e, Gap)] == ["sequence"]
    assert parser.stats()["resyncs"] == 1


def test_real_advanced_trade_capture(fixtures_dir: Path) -> None:
    # SOURCES.md: sequence_num 0..1029 without a gap; 47 + 32 live trades; final tops
    parser, events = run(read_frames(fixtures_dir / AT_REAL))
    s = parser.stats()
    assert s["messages"] == 1030 and s["gaps"] == 0 and s["rejected"] == {}
    trades = [e for e in events if isinstance(e, Trade)]
    assert sum(t.symbol == "BTC-USD" for t in trades) == 47
    assert sum(t.symbol == "ETH-USD" for t in trades) == 32
    assert top(parser, "BTC-USD") == (Decimal("65083.66"), Decimal("65083.67"))
    assert top(parser, "ETH-USD") == (Decimal("1919.28"), Decimal("1919.38"))
    # the snapshot's asks come from side "offer" (cryptofeed builds them from "ask": empty)
    snaps = {e.symbol: e for e in events if isinstance(e, BookSnapshot)}
    assert parser.books["BTC-USD"].ask_count > 10_000 and len(snaps) == 2
    assert not any(parser.books[s].crossed for s in parser.books)


def test_real_trade_side_is_the_takers(fixtures_dir: Path) -> None:
    # market_trades `side` is the maker's: a SELL print lifts the offer (taker bought)
    parser, events = run(read_frames(fixtures_dir / AT_REAL))
    trades = [e for e in events if isinstance(e, Trade)]
    raw = {}
    for frame in read_frames(fixtures_dir / AT_REAL):
        msg = orjson.loads(frame)
        if msg["channel"] == "market_trades":
            for ev in msg["events"]:
                raw.update({t["trade_id"]: t["side"] for t in ev["trades"]})
    for t in trades:
        assert t.side == {"SELL": "buy", "BUY": "sell"}[raw[t.trade_id]]
    ids = [int(t.trade_id) for t in trades if t.symbol == "BTC-USD"]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_real_exchange_feed_capture(fixtures_dir: Path) -> None:
    parser, events = run(read_frames(fixtures_dir / EXCHANGE_REAL))
    s = parser.stats()
    assert parser.protocol == "exchange"
    assert s["messages"] == 6732 and s["snapshots"] == 6 and s["updates"] == 6557
    assert s["trades"] == 77 and s["gaps"] == 0 and s["rejected"] == {}
    assert top(parser, "SKL-USD") == (Decimal("0.7902"), Decimal("0.7911"))
    assert top(parser, "DASH-BTC") == (Decimal("0.00619316"), Decimal("0.00619947"))
    assert not any(b.crossed for b in parser.books.values())


def test_exchange_feed_trade_id_gap_and_duplicate(fixtures_dir: Path) -> None:
    frames = read_frames(fixtures_dir / EXCHANGE_REAL)
    matches = [i for i, f in enumerate(frames) if b'"type":"match"' in f]
    dropped = frames.pop(matches[10])
    parser, events = run(frames)
    gaps = [e for e in events if isinstance(e, Gap)]
    assert [(g.reason, g.missed) for g in gaps] == [("trade_id", 1)]
    assert str(orjson.loads(dropped)["trade_id"]) in gaps[0].detail
    # a repeated match is dropped (trade ids dedupe), its stale `sequence` is not an error
    frames.insert(matches[20], frames[matches[20] - 1])
    parser, events = run(frames)
    assert parser.stats()["trades"] == 76


def test_trade_dedupe_across_reconnect() -> None:
    def trades_frame(seq: int, kind: str, ids: list[int]) -> bytes:
        trades = [{"product_id": "BTC-USD", "trade_id": str(i), "price": "10.00", "size": "1",
                   "time": "2026-08-09T21:05:42.514318Z", "side": "BUY"} for i in ids]
        return orjson.dumps({"channel": "market_trades", "timestamp": "2026-08-09T21:05:48Z",
                             "sequence_num": seq, "events": [{"type": kind, "trades": trades}]})

    events: list = []
    parser = CoinbaseParser(["BTC-USD"], sink=events.append)
    parser.feed(trades_frame(0, "snapshot", [5, 4, 3]))     # history: anchors, not emitted
    parser.feed(trades_frame(1, "update", [6]))
    parser.feed(trades_frame(2, "update", [7]))
    parser.connection_lost()
    parser.feed(trades_frame(0, "snapshot", [9, 8, 7, 6]))  # new connection: 8, 9 were missed
    parser.feed(trades_frame(1, "update", [9, 10]))           # 9 again: a duplicate
    parser.feed(trades_frame(2, "snapshot", [13, 12]))      # 11 is gone for good
    ids = [int(e.trade_id) for e in events if isinstance(e, Trade)]
    assert ids == [6, 7, 8, 9, 10, 12, 13]
    gaps = [e for e in events if isinstance(e, Gap)]
    assert [(g.reason, g.missed) for g in gaps] == [("trade_id", 1)]
    assert parser.duplicates == 1


def test_iso_ns() -> None:
    base = int(datetime(2026, 8, 9, 21, 5, 42, tzinfo=timezone.utc).timestamp()) * 10**9
    assert iso_ns("2026-08-09T21:05:42Z") == base
    assert iso_ns("2026-08-09T21:05:42.514318Z") == base + 514_318_000
    assert iso_ns("2026-08-09T21:05:42.5+00:00") == base + 500_000_000
    assert iso_ns("2026-11-27T10:00:00.123456789Z") % 1_000_000_000 == 123456789
    for bad in ("yesterday", 12, "2026-13-27T10:00:00Z", "2026-11-27T10:00:00.12x4Z", None):
        with pytest.raises(ProtocolError):
            iso_ns(bad)


def _l2(seq: int, updates: Any, kind: str = "update", product: Any = "BTC-USD") -> bytes:
    return orjson.dumps({"channel": "l2_data", "timestamp": "2026-11-27T10:00:00Z",
                         "sequence_num": seq, "events": [{"type": kind, "product_id": product,
                                                          "updates": updates}]})


def _lv(side: str, price: Any, qty: Any) -> dict:
    return {"side": side, "event_time": "2026-11-27T10:00:00Z", "price_level": price,
            "new_quantity": qty}


HOSTILE = [
    (b'{"channel":"l2_data","sequence_num":', "bad_json"),
    (b"[1,2,3]", "malformed"),
    (b'"hello"', "malformed"),
    (b'{"channel":"l2_data","timestamp":"x","sequence_num":"7","events":[]}', "bad_sequence"),
    (_l2(1, [_lv("bid", "NaN", "1")]), "bad_price"),
    (_l2(1, [_lv("bid", "10.00", "-1")]), "bad_size"),
    (_l2(1, [_lv("bid", ["10.00"], "1")]), "bad_price"),
    (_l2(1, [_lv("bid", "10.001", "1")]), "bad_price"),
    (_l2(1, [_lv("middle", "10.00", "1")]), "bad_side"),
    (_l2(1, {"side": "bid"}), "malformed"),
    (_l2(1, [_lv("bid", "10.00", "1")], product="DOGE-USD"), "unknown_symbol"),
    (_l2(1, [_lv("bid", "10.00", "1")], product=["BTC-USD"]), "unknown_symbol"),
    (_l2(1, [_lv("bid", "10.00", "1")] * 5001), "too_many_levels"),
    (_l2(1, [_lv("bid", "10.00", "1")], kind="delta"), "unknown_type"),
    (b'{"channel":"l2_data","timestamp":"2026-11-27T10:00:00Z","sequence_num":1,"events":[{}]}',
     "malformed"),
    (b'{"channel":"nonsense","timestamp":"2026","sequence_num":1,"events":[]}',
     "unknown_channel"),
    (b'{"channel":"l2_data","timestamp":12,"sequence_num":1,"events":[]}', "bad_timestamp"),
    (b'{"channel":"market_trades","timestamp":"2026-11-27T10:00:00Z","sequence_num":1,'
     b'"events":[{"type":"update","trades":[{"product_id":"BTC-USD","trade_id":"1","price":'
     b'"-3","size":"1","time":"2026-11-27T10:00:00Z","side":"BUY"}]}]}', "bad_price"),
    (b'{"channel":"market_trades","timestamp":"2026-11-27T10:00:00Z","sequence_num":1,'
     b'"events":[{"type":"update","trades":[{"product_id":"BTC-USD","trade_id":1,"price":'
     b'"3","size":"1","time":"2026-11-27T10:00:00Z","side":"BUY"}]}]}', "wrong_type"),
    (b'{"type":"l2update","product_id":"BTC-USD","changes":[["buy","nan","1"]],'
     b'"time":"2026-11-27T10:00:00Z"}', "bad_price"),
    (b'{"type":"match","trade_id":-1,"side":"buy","size":"1","price":"1","product_id":'
     b'"BTC-USD","sequence":1,"time":"2026-11-27T10:00:00Z"}', "bad_trade_id"),
    (b'{"type":"error","message":"Failed to subscribe","reason":"no"}', "exchange_error"),
    (b"{" * 100_000, "bad_json"),
]


@pytest.mark.parametrize("frame,reason", HOSTILE, ids=[r for _, r in HOSTILE])
def test_hostile_frames_rejected_book_intact(frame: bytes, reason: str) -> None:
    events: list = []
    parser = CoinbaseParser(["BTC-USD"], sink=events.append, max_levels=5000)
    parser.feed(_l2(0, [_lv("bid", "10.00", "1"), _lv("offer", "11.00", "2")], "snapshot"))
    before = parser.books["BTC-USD"].copy()
    parser.feed(frame)
    assert parser.rejected == {reason: 1}
    assert [e.reason for e in events if isinstance(e, Rejected)] == [reason]
    assert parser.books["BTC-USD"] == before
    # the feed carries on: the next frame in sequence applies
    parser.feed(_l2(2 if frame.startswith(b'{"channel"') and b'"sequence_num":1' in frame
                    else 1, [_lv("bid", "10.50", "3")]))
    assert parser.books["BTC-USD"].best_bid() == ("10.50", "3.00000000")
    assert parser.stats()["gaps"] == 0
