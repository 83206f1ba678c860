"""The compiled Kraken v2 trade scanner (``_hotpath.scan_trade_update``) against the decoded
path.  It may only skip work: the parser must emit the same trades, gaps and rejections and
count the same stats with it as with it switched off (``kraken._scan_trade = None``), on the
captures and on generated and damaged trade frames; and it must really take Kraken's own
shape, so agreement is not agreement by disuse."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import alphapulse.exchanges.kraken as kraken_module
from alphapulse.capture import read_frames
from alphapulse.exchanges._hotpath import scan_trade_update
from alphapulse.exchanges._kraken_text import rfc3339_ns, trade_texts
from alphapulse.exchanges.kraken import KrakenParser

CAPTURES = ("generated/kraken-clean.jsonl", "generated/kraken-corrupt.jsonl",
            "generated/arb-kraken.jsonl")


def _trade(symbol: str = "BTC/USD", side: str = "sell", price: str = "96512.1",
           qty: str = "0.00026603", ord_type: str = "market", tid: str = "90000001",
           ts: str = "2026-11-27T10:00:00.221587Z") -> bytes:
    return (f'{{"channel":"trade","type":"update","data":[{{"symbol":"{symbol}","side":"{side}",'
            f'"price":{price},"qty":{qty},"ord_type":"{ord_type}","trade_id":{tid},'
            f'"timestamp":"{ts}"}}]}}').encode()


def test_takes_every_captured_trade_update_with_the_decoded_values(fixtures_dir: Path) -> None:
    n = 0
    for rel in CAPTURES:
        for frame in read_frames(fixtures_dir / rel):
            if not frame.startswith(b'{"channel":"trade","type":"update"'):
                continue
            got = scan_trade_update(frame)
            assert got is not None, frame
            data = json.loads(frame)["data"]
            t = data[0]
            assert got == (t["symbol"].encode(), t["side"], *trade_texts(frame, data)[0],
                           t["trade_id"], rfc3339_ns(t["timestamp"]))
            n += 1
    assert n > 400


@pytest.mark.parametrize("frame", [
    _trade(price="-96512.1"), _trade(qty="1e-5"), _trade(qty="0.5E2"), _trade(price="096512.1"),
    _trade(price='"96512.1"'), _trade(side="Sell"), _trade(side="buy "), _trade(tid="-1"),
    _trade(tid="012"), _trade(tid="1234567890123456789"), _trade(tid="1.0"),
    _trade(ts="2026-11-27T10:00:00.221587+00:00"), _trade(ts="2026-11-27 10:00:00Z"),
    _trade(symbol="BTC\\/USD"), _trade(symbol="BTC/USD\u00e9"), _trade(symbol=""),
    _trade(ord_type='mar\\"ket'), _trade(ord_type="mar\tket"),
    _trade() + b" ", _trade()[:-1], _trade().replace(b"}]}", b"},{}]}"),
    _trade().replace(b'"type":"update"', b'"type":"snapshot"'),
    _trade().replace(b'"qty":', b'"qty": '),
])
def test_refuses_anything_but_the_canonical_shape(frame: bytes) -> None:
    assert scan_trade_update(_trade()) is not None
    assert scan_trade_update(frame) is None


def _run(frames: list[bytes], monkeypatch: pytest.MonkeyPatch, compiled: bool) -> tuple:
    with monkeypatch.context() as m:
        if not compiled:
            m.setattr(kraken_module, "_scan_trade", None)
        events: list = []
        parser = KrakenParser(["BTC-USD", "ETH-USD"], sink=events.append)
        for frame in frames:
            parser.feed(frame, 7)
        # activity: the per-channel frame counts the collector's staleness watchdog reads
        return events, parser.stats(), dict(parser.activity), parser.protocol


def _assert_same(frames: list[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run(frames, monkeypatch, True) == _run(frames, monkeypatch, False)


def test_paths_agree_on_every_capture(fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for rel in CAPTURES:
        _assert_same(read_frames(fixtures_dir / rel), monkeypatch)


_TEXT = st.text(alphabet="0123456789.-eE+\"x ", min_size=1, max_size=10)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["BTC/USD", "ETH/USD", "XRP/USD", "BTC/EUR"]),
                          st.sampled_from(["buy", "sell", "bid"]),
                          st.one_of(st.just("96512.1"), _TEXT), st.one_of(st.just("0.5"), _TEXT),
                          st.one_of(st.integers(0, 30).map(str), _TEXT)), max_size=30))
def test_paths_agree_on_generated_trades(monkeypatch: pytest.MonkeyPatch, trades: list) -> None:
    # Dedupe, id gaps, unknown and unwanted pairs, bad sides and numbers: the same outcome.
    _assert_same([_trade(symbol=s, side=d, price=p, qty=q, tid=t) for s, d, p, q, t in trades],
                 monkeypatch)


def test_paths_agree_on_damaged_captured_trades(fixtures_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(20261129)
    trades = [f for f in read_frames(fixtures_dir / CAPTURES[0]) if b'"channel":"trade"' in f]
    frames = []
    for _ in range(2000):
        frame = bytearray(rng.choice(trades))
        i = rng.randrange(len(frame))
        frame[i] = rng.choice(b'0123456789.-+eE,:{}[]"x \\\x00\xff')
        frames.append(bytes(frame))
    _assert_same(trades[:50] + frames, monkeypatch)
