"""The compiled Coinbase / Binance.US scanners (``exchanges/_scan.pyx``) against the orjson path.

The scanners may only skip work: on every frame sequence, generated, mutated byte by byte,
or captured, a parser with the scanner must emit exactly the events, build exactly the books
and count exactly the stats of the same parser with the scanner switched off (the module's
``_scan_l2`` / ``_scan_depth`` set to None, the test-oracle switch).  Other tests check that
the scanner really takes the canonical frames, so agreement is not agreement by disuse.
"""
from __future__ import annotations

import dataclasses
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphapulse._book import Delta
from alphapulse.capture import read_frames
from alphapulse.events import BookUpdate
from alphapulse.exchanges import binanceus as binance_module
from alphapulse.exchanges import coinbase as coinbase_module
from alphapulse.exchanges._scan import EventMaker, binance_depth_update, coinbase_l2_update
from alphapulse.exchanges._scanned import MAKE_BOOK_UPDATE
from alphapulse.exchanges.binanceus import BinanceUSParser
from alphapulse.exchanges.coinbase import CoinbaseParser
from alphapulse.exchanges.parser import FeedParser

SETTINGS = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
Frames = list[tuple[str, bytes]]        # ("ws" | "rest:<SYMBOL>", frame)


# ---- running both paths ----------------------------------------------------------------------

def _run(make: Callable[[list], FeedParser], frames: Frames) -> tuple[list, dict, dict]:
    events: list = []
    parser = make(events)
    for kind, frame in frames:
        if kind.startswith("rest:"):
            parser.rest_symbol = kind[5:]              # type: ignore[attr-defined]
            parser.feed(frame, 7)
            parser.rest_symbol = None                  # type: ignore[attr-defined]
        else:
            parser.feed(frame, 7)
        for symbol in parser.take_resyncs():
            parser.resume_offline(symbol)
    books = {s: (b.sequence, b.bids(), b.asks()) for s, b in parser.books.items()}
    stats = parser.stats()
    stats["states"] = {s: parser.state(s) for s in parser.books}
    return events, books, stats


def assert_same(monkeypatch: pytest.MonkeyPatch, module: Any, names: tuple[str, ...],
                make: Callable[[list], FeedParser], frames: Frames) -> list:
    """Both paths on ``frames``; returns the (identical) events."""
    fast = _run(make, frames)
    with monkeypatch.context() as m:
        for name in names:
            m.setattr(module, name, None)
        slow = _run(make, frames)
    assert fast[0] == slow[0]
    assert fast[1] == slow[1]
    assert fast[2] == slow[2]
    return fast[0]


def coinbase(events: list) -> CoinbaseParser:
    return CoinbaseParser(["BTC-USD", "ETH-USD"], sink=events.append, max_levels=40)


def binance(events: list) -> BinanceUSParser:
    return BinanceUSParser(["BTC-USDT", "ETH-USD"], sink=events.append, max_levels=40)


# ---- generators ------------------------------------------------------------------------------

ODD_PRICES = ("0", "0.00", "-100.00", "100.001", "100.0010", "1e2", " 100", "+100", "1.",
              ".5", "", "NaN", "99999999999999999999", "01", "\u00e9")


def _price(rng: random.Random, mid: int, side: int) -> str:
    if rng.random() < 0.02:
        return rng.choice(ODD_PRICES)
    return f"{(mid + side * rng.randint(0, 40)) / 100:.2f}"


def _trade(rng: random.Random, seq: int, ts: str) -> dict[str, str]:
    """A trade, fields in either order Coinbase has used, now and then odd."""
    odd = rng.random() < 0.15
    tid = rng.choice(("0012", "", "x1", "1" * 19, str(seq - 3))) if odd else str(seq * 10)
    product = rng.choice(("BTC-USD", "ETH-USD", "DOGE-USD")) if odd else "BTC-USD"
    fields = [("product_id", product),
              ("trade_id", tid),
              ("price", rng.choice(ODD_PRICES) if odd else "100.01"),
              ("size", rng.choice(("0", "0.000", ".5", "5.", "1.2.3")) if odd else "0.1"),
              ("time", rng.choice((ts, "2026-11-27T10:00:02+00:00", "x")) if odd else ts),
              ("side", rng.choice(("BUY", "SELL", "buy", "UNKNOWN")) if odd else "SELL")]
    if rng.random() < 0.5:
        fields[0], fields[1] = fields[1], fields[0]
        fields[4], fields[5] = fields[5], fields[4]
    return dict(fields)


def coinbase_frames(rng: random.Random, n: int) -> list[bytes]:
    """Subscriptions ack, BTC-USD snapshot, then updates (mostly canonical, some odd)."""
    ts = "2026-11-27T10:00:00.123456789Z"
    out = [orjson.dumps({"channel": "subscriptions", "timestamp": ts, "sequence_num": 0,
                         "events": [{"subscriptions": {"level2": ["BTC-USD"]}}]})]
    snap = [{"side": s, "event_time": ts, "price_level": _price(rng, 10_000 + k * 50, k),
             "new_quantity": "1.5"} for s, k in (("bid", -1), ("offer", 1)) for _ in range(8)]
    out.append(orjson.dumps({"channel": "l2_data", "timestamp": ts, "sequence_num": 1,
                             "events": [{"type": "snapshot", "product_id": "BTC-USD",
                                         "updates": snap}]}))
    seq = 2
    for _ in range(n):
        ups = []
        for _ in range(rng.choice((0, 1, 1, 2, 10))):
            side = rng.choice(("bid", "offer", "offer", "ask", "buy"))
            qty = rng.choice(("0", "0.25", "3", "0.123456789", "-1", "1e-3", "nan", ""))
            ups.append({"side": side, "event_time": ts,
                        "price_level": _price(rng, 10_000, -1 if side == "bid" else 1),
                        "new_quantity": qty if rng.random() < 0.2 else "0.5"})
        msg: dict[str, Any] = {"channel": "l2_data"}
        if rng.random() < 0.1:
            msg["client_id"] = ""
        msg.update(timestamp=rng.choice((ts, ts, "2026-11-27T10:00:01.5Z", "2026-11-27T10:00:02Z",
                                         "2026-11-27T10:00:02+00:00", "9999-01-01T00:00:00Z")),
                   sequence_num=seq, events=[{"type": "update", "product_id": rng.choice(
                       ("BTC-USD", "BTC-USD", "ETH-USD", "DOGE-USD")), "updates": ups}])
        if rng.random() < 0.08:                         # a resnapshot, maybe crossed / odd
            msg["events"][0]["type"] = "snapshot"
        seq += rng.choice((1, 1, 1, 1, 1, 1, 1, 0, 2))
        if rng.random() < 0.25:
            msg["channel"] = "market_trades"
            msg["events"] = [{"type": rng.choice(("update", "update", "snapshot")),
                              "trades": [_trade(rng, seq, ts) for _ in range(rng.choice(
                                  (0, 1, 1, 1, 2, 5)))]}]
        out.append(orjson.dumps(msg))
    return out


def _binance_trade(rng: random.Random, k: int) -> dict[str, Any]:
    """A @trade or @aggTrade event (now and then odd), keys in either documented order."""
    odd = rng.random() < 0.2
    kind = rng.choice(("trade", "trade", "aggTrade"))
    data: dict[str, Any] = {"e": kind, "E": 1764230400000 + k,
                            "s": rng.choice(("BTCUSDT", "ETHUSD", "XYZ")) if odd else "BTCUSDT"}
    ident = rng.choice((-1, "7", 1.5, 10**19, k)) if odd else 500 + k // 2
    data["t" if kind == "trade" else "a"] = ident
    data["p"] = rng.choice(ODD_PRICES) if odd else "100.01000000"
    data["q"] = rng.choice(("0", ".5", "5.", "1.2.3", 3)) if odd else "0.5"
    if kind == "aggTrade":
        data.update(f=k, l=k)
    elif rng.random() < 0.5:
        data.update(b=88, a=50)
    data["T"] = rng.choice((1764230400000, "1", None, 10**17)) if odd else 1764230400000 + k
    data["m"] = rng.choice((True, False, 1, "true")) if odd else rng.random() < 0.5
    data["M"] = True
    if rng.random() < 0.3:
        data = dict(reversed(list(data.items())))
    return data


def binance_frames(rng: random.Random, n: int) -> Frames:
    """BTCUSDT's REST snapshot, then depth events bare or combined (a few out of order)."""
    uid = 1000
    snap = {"lastUpdateId": uid,
            "bids": [[_price(rng, 10_000, -1), "1.00000000"] for _ in range(8)],
            "asks": [[_price(rng, 10_050, 1), "1.00000000"] for _ in range(8)]}
    out: Frames = [("rest:BTC-USDT", orjson.dumps(snap))]
    for k in range(n):
        levels = rng.choice((0, 1, 1, 2, 10))
        b, a = [], []
        for _ in range(levels):
            qty = rng.choice(("0.00000000", "0.5", "2", "-1", "0.000000001", "x"))
            if rng.random() < 0.5:
                b.append([_price(rng, 10_000, -1), qty if rng.random() < 0.2 else "0.5"])
            else:
                a.append([_price(rng, 10_000, 1), qty if rng.random() < 0.2 else "0.5"])
        first = uid + 1 + rng.choice((0, 0, 0, 0, 0, 0, 0, 1, -1))
        data = {"e": "depthUpdate", "E": 1764230400000 + k,
                "s": rng.choice(("BTCUSDT", "BTCUSDT", "BTCUSDT", "ETHUSD", "XYZ")),
                "U": first, "u": first + max(levels, 1) - 1, "b": b, "a": a}
        uid = data["u"]
        if rng.random() < 0.25:
            data = _binance_trade(rng, k)
        frame = data if rng.random() < 0.5 else {"stream": "btcusdt@depth@100ms", "data": data}
        out.append(("ws", orjson.dumps(frame)))
    return out


def mutate(frame: bytes, rng: random.Random) -> bytes:
    """One byte-level change: replace, delete, insert, truncate, or a JSON-legal rewrite."""
    i = rng.randrange(len(frame))
    op = rng.randrange(7)
    junk = rng.choice(b' "\\,:{}[]0123456789.-eE\x00\xff\x01a\t')
    if op == 0:
        return frame[:i] + bytes([junk]) + frame[i + 1:]
    if op == 1:
        return frame[:i] + frame[i + 1:]
    if op == 2:
        return frame[:i] + bytes([junk]) + frame[i:]
    if op == 3:
        return frame[:i]
    if op == 4:                                   # same JSON, other bytes
        return frame.replace(b":", b": ", 1) if rng.random() < 0.5 else frame + b" "
    if op == 5:                                   # an escape that decodes to the same text
        j = frame.find(b'"', i)
        if j > 0 and frame[j + 1:j + 2].isalnum():
            return frame[:j + 1] + b"\\u%04x" % frame[j + 1] + frame[j + 2:]
        return frame
    return frame[:i] + frame[i:].replace(b"0", b"00", 1)    # leading zeros, longer texts


# ---- the scanners are really used ------------------------------------------------------------

def test_canonical_coinbase_update_is_taken_by_the_scanner(fixtures_dir: Path) -> None:
    frames = read_frames(fixtures_dir / "generated" / "coinbase-clean.jsonl")
    seen: list = []
    parser = CoinbaseParser(["BTC-USD"], sink=seen.append)
    calls = {"hit": 0}
    real = coinbase_module._scan_l2

    def counting(*args: Any) -> Any:
        out = real(*args)
        calls["hit"] += out is not None
        return out

    coinbase_module._scan_l2 = counting
    try:
        for f in frames:
            parser.feed(f, 1)
    finally:
        coinbase_module._scan_l2 = real
    assert calls["hit"] == parser.updates > 4000


def test_real_snapshots_are_taken_by_the_scanner(fixtures_dir: Path) -> None:
    frames = read_frames(fixtures_dir / "coinbase" /
                         "advanced-trade-btcusd-ethusd-2026-08-09.jsonl")
    parser = CoinbaseParser(["BTC-USD", "ETH-USD"])
    taken = []
    for f in frames:
        if parser._expected is not None and f.startswith(b'{"channel":"l2_data"') \
                and b'"type":"snapshot"' in f[:200]:
            taken.append(coinbase_module._scan_snapshot(f, parser._expected, 10**6))
        parser.feed(f, 1)
    assert len(taken) == parser.snapshots >= 2
    assert all(t is not None and len(t[2]) + len(t[3]) > 20_000 for t in taken)
    assert len(parser.books["BTC-USD"]) > 40_000


@pytest.mark.parametrize("name", ["generated/coinbase-clean.jsonl",
                                  "coinbase/advanced-trade-btcusd-ethusd-2026-08-09.jsonl"])
def test_trade_updates_are_taken_by_the_scanner(fixtures_dir: Path, name: str) -> None:
    parser = CoinbaseParser(["BTC-USD", "ETH-USD"])
    scanned = 0
    for f in read_frames(fixtures_dir / name):
        if parser._expected is not None and f.startswith(b'{"channel":"market_trades"') \
                and b'"type":"update"' in f[:150]:
            hit = coinbase_module._scan_trades(f, parser._expected, 100)
            assert hit, f
            scanned += len(hit)
        parser.feed(f, 1)
    assert scanned > 50 and parser.trades >= scanned


@pytest.mark.parametrize("name", ["generated/binanceus-clean.jsonl",
                                  "binanceus/2021-04-17-btcusdt.jsonl"])
def test_binance_trades_are_taken_by_the_scanner(fixtures_dir: Path, name: str) -> None:
    frames = [f for f in read_frames(fixtures_dir / name) if b'rade","E":' in f]
    hits = [binance_module._scan_trade(f) for f in frames]
    assert len(frames) >= 5 and None not in hits
    parser = BinanceUSParser()
    for f in read_frames(fixtures_dir / name):
        parser.feed(f, 1)
    assert parser.trades == len({(h[0], h[2]) for h in hits})


def test_canonical_binance_updates_are_taken_by_the_scanner(fixtures_dir: Path) -> None:
    frames = read_frames(fixtures_dir / "binanceus" / "2021-04-17-btcusdt.jsonl")
    parser = BinanceUSParser(["BTC-USDT"])
    parser.rest_symbol = "BTC-USDT"
    parser.feed(frames[0], 1)
    parser.rest_symbol = None
    before = parser.updates
    for f in frames[1:]:
        parser.feed(f, 1)
    last_u, states, bridge = parser._last_u, parser._states, parser._bridge
    canonical = orjson.dumps({"e": "depthUpdate", "E": 1, "s": "BTCUSDT",
                              "U": last_u["BTC-USDT"] + 1, "u": last_u["BTC-USDT"] + 1,
                              "b": [["1.00", "2"]], "a": []})
    assert parser.updates > before
    hit = binance_depth_update(canonical, parser._scan_natives, states, last_u, bridge, 10,
                               MAKE_BOOK_UPDATE, 5)
    assert hit is not None and hit[0].delta.changes == [("bid", "1.00000000", "2.00000000")]


def test_scanners_refuse_what_they_do_not_recognise() -> None:
    make = MAKE_BOOK_UPDATE
    assert coinbase_l2_update(b'{"channel":"l2_data"}', 0, {}, {}, 10, make, 0) is None
    assert coinbase_l2_update(b"", 0, {}, {}, 10, make, 0) is None
    assert binance_depth_update(b'{"e":"depthUpdate"', {}, {}, {}, set(), 10, make, 0) is None
    assert binance_depth_update(b"[]", {}, {}, {}, set(), 10, make, 0) is None


def test_event_maker_builds_the_same_event_as_the_dataclass() -> None:
    delta = Delta([("bid", "1.5", "2")], symbol="BTC-USD", price_precision=2)
    native = "".join(["BTC", "-USD"])               # a fresh object: its count is ours
    refs = sys.getrefcount(native)
    event = MAKE_BOOK_UPDATE("coinbase", "BTC-USD", native, delta, 10**18, 7)
    assert type(event) is BookUpdate and MAKE_BOOK_UPDATE.direct
    assert event == BookUpdate("coinbase", "BTC-USD", native, delta, 10**18, 7)
    grown = sys.getrefcount(native) - refs      # (pytest's rewriting keeps temporaries)
    assert grown == 1
    assert event.native_symbol is native
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.symbol = "X"                          # type: ignore[misc]
    del event
    assert sys.getrefcount(native) == refs

    @dataclasses.dataclass
    class Other:                                    # another layout: simply called
        exchange: str
        symbol: str
        native_symbol: str
        delta: Any
        ts_event: int
        ts_recv: int

    other = EventMaker(Other)
    assert not other.direct and other("a", "b", "c", None, 1, 2) == Other("a", "b", "c", None,
                                                                          1, 2)


# ---- equivalence -----------------------------------------------------------------------------

GENERATED = {
    "coinbase": (coinbase_module, ("_scan_l2", "_scan_snapshot", "_scan_trades"), coinbase,
                 lambda rng, n: [("ws", f) for f in coinbase_frames(rng, n)]),
    "binanceus": (binance_module, ("_scan_depth", "_scan_trade"), binance, binance_frames),
}


@pytest.mark.parametrize("exchange", sorted(GENERATED))
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60),
       rate=st.sampled_from((0.0, 0.05, 0.3)))
def test_paths_agree_on_generated_and_mutated_frames(monkeypatch: pytest.MonkeyPatch,
                                                     exchange: str, seed: int, n: int,
                                                     rate: float) -> None:
    module, name, make, generate = GENERATED[exchange]
    rng = random.Random(seed)
    frames = generate(rng, n)
    keep = 2 if exchange == "coinbase" else 1     # the ack and the snapshot stay intact
    frames = frames[:keep] + [("ws", mutate(f, rng)) if rng.random() < rate else (k, f)
                              for k, f in frames[keep:]]
    assert_same(monkeypatch, module, name, make, frames)


CAPTURES = {
    "coinbase": (coinbase_module, ("_scan_l2", "_scan_snapshot", "_scan_trades"), CoinbaseParser,
                 ("coinbase/*.jsonl", "generated/*coinbase*.jsonl")),
    "binanceus": (binance_module, ("_scan_depth", "_scan_trade"), BinanceUSParser,
                  ("binanceus/*.jsonl", "generated/binanceus*.jsonl")),
}


@pytest.mark.parametrize("exchange", sorted(CAPTURES))
def test_paths_agree_on_every_capture(fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                      exchange: str) -> None:
    module, name, parser_class, patterns = CAPTURES[exchange]
    paths = sorted(p for pattern in patterns for p in fixtures_dir.glob(pattern))
    assert len(paths) >= 4
    for path in paths:
        frames = [("ws", f) for f in read_frames(path)]
        events = assert_same(monkeypatch, module, name,
                             lambda ev: parser_class(sink=ev.append), frames)
        assert events, path
