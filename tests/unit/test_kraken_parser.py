"""The sans-IO Kraken parser on every Kraken capture, and on hostile input."""
from __future__ import annotations

import json
import zlib
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from alphapulse.capture import read_frames
from alphapulse.events import BookSnapshot, BookUpdate, Gap, Rejected, Trade
from alphapulse.exchanges import get_parser
import alphapulse.exchanges.kraken as kraken_module
from alphapulse.exchanges.kraken import KrakenParser, rfc3339_ns

SCANNER, SCANNER_V1 = kraken_module._scan, kraken_module._scan_v1


@pytest.fixture(autouse=True, params=["compiled", "python"])
def fast_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with the compiled scanner and with the pure-Python fast path."""
    if request.param == "compiled":
        if SCANNER is None:
            pytest.skip("alphapulse.exchanges._hotpath is not built")
    else:
        monkeypatch.setattr(kraken_module, "_apply_v2", None)
        monkeypatch.setattr(kraken_module, "_apply_v1", None)
        monkeypatch.setattr(kraken_module, "_scan_trade", None)
    return request.param


def run(frames: list[bytes], parser: KrakenParser | None = None) -> tuple[KrakenParser, list]:
    events: list = []
    parser = parser or KrakenParser(sink=events.append)
    if parser.sink is not events.append:
        parser.sink = events.append
    for frame in frames:
        parser.feed(frame, 1)
    return parser, events


def truth(fixtures_dir: Path, name: str) -> dict:
    return json.loads((fixtures_dir / "generated" / f"{name}.truth.json").read_text())


def test_registry_gives_the_kraken_parser() -> None:
    assert get_parser("kraken") is KrakenParser


def test_documented_checksum_example(fixtures_dir: Path) -> None:
    parser, events = run(read_frames(fixtures_dir / "kraken-doc" / "book-checksum-example.jsonl"))
    assert parser.checksum_ok == 1 and parser.checksum_failed == 0
    book = parser.books["BTC-USD"]
    assert book.checksum() == 3310070434
    assert book.best_bid() == ("45283.5", "0.10000000")
    assert book.best_ask() == ("45285.2", "0.00100000")
    assert isinstance(events[0], BookSnapshot) and events[0].native_symbol == "BTC/USD"


def test_v2_capture_with_stripped_zeros_verifies_every_checksum(fixtures_dir: Path) -> None:
    parser, _ = run(read_frames(fixtures_dir / "kraken" / "v2-book-btcusd-depth10-2023-07-30.jsonl"))
    assert (parser.checksum_ok, parser.checksum_failed) == (510, 0)
    assert (parser.snapshots, parser.updates, parser.gaps) == (1, 509, 0)
    assert parser.books["BTC-USD"].depth == 10          # learned from the snapshot size
    assert parser.protocol == "v2"


def test_v1_book_capture_verifies_every_checksum(fixtures_dir: Path) -> None:
    parser, events = run(read_frames(fixtures_dir / "kraken" / "v1-book-xbtusd-depth10-2023-08-30.jsonl"))
    assert (parser.checksum_ok, parser.checksum_failed, parser.updates) == (979, 0, 979)
    assert parser.protocol == "v1" and not parser.rejected
    book = parser.books["BTC-USD"]
    assert (book.price_precision, book.size_precision, book.depth) == (5, 8, 10)
    assert book.best_bid() == ("27139.30000", "17.39936238")
    assert book.best_ask() == ("27139.40000", "0.01106822")
    assert all(e.native_symbol == "XBT/USD" for e in events if isinstance(e, BookUpdate))


def test_v1_trades(fixtures_dir: Path) -> None:
    parser, events = run(read_frames(fixtures_dir / "kraken" / "v1-trade-10pairs-2021-04-17.jsonl"))
    trades = [e for e in events if isinstance(e, Trade)]
    assert len(trades) == parser.trades == 10
    assert not parser.rejected
    assert {t.side for t in trades} <= {"buy", "sell"}
    # Text kept exactly as Kraken wrote it, and XBT normalised to BTC.
    frames = read_frames(fixtures_dir / "kraken" / "v1-trade-10pairs-2021-04-17.jsonl")
    first = json.loads(next(f for f in frames if f.startswith(b"[")))
    assert trades[0].price == first[1][0][0] and trades[0].size == first[1][0][1]
    assert all("XBT" not in t.symbol for t in trades)


@pytest.mark.parametrize("name", ["kraken-clean", "arb-kraken"])
def test_generated_captures_match_their_truth(fixtures_dir: Path, name: str) -> None:
    t = truth(fixtures_dir, name)
    frames = read_frames(fixtures_dir / "generated" / f"{name}.jsonl")
    parser, events = run(frames)
    assert parser.messages == t["messages"] == len(frames)
    assert (parser.checksum_ok, parser.checksum_failed) == (t["checksums"], 0)
    assert parser.trades == t["trades"] and parser.gaps == 0 and not parser.rejected
    book = parser.books["BTC-USD"]
    assert (book.price_precision, book.size_precision, book.depth) == (
        t["price_precision"], t["qty_precision"], t["depth"])
    assert book.best_bid()[0] == t["final_best_bid"]
    assert book.best_ask()[0] == t["final_best_ask"]
    assert book.checksum() == t["final_checksum"]
    sequences = [e.delta.sequence for e in events if isinstance(e, (BookSnapshot, BookUpdate))]
    assert sequences == list(range(1, len(sequences) + 1))


def test_corrupt_checksum_is_reported_once_at_its_index(fixtures_dir: Path) -> None:
    t = truth(fixtures_dir, "kraken-corrupt")
    parser = KrakenParser()
    events: list = []
    parser.sink = events.append
    failed_at = None
    for frame in read_frames(fixtures_dir / "generated" / "kraken-corrupt.jsonl"):
        before = parser.checksum_ok
        parser.feed(frame, 1)
        if parser.checksum_failed and failed_at is None:
            failed_at = before            # book messages verified before the bad one
            assert parser.take_resyncs() == {"BTC-USD": "checksum"}
            assert parser.state("BTC-USD") == "resyncing"
    assert failed_at == t["corrupted_update_index"]
    assert parser.checksum_failed == 1 and parser.gaps == 1 and parser.resyncs == 1
    gaps = [e for e in events if isinstance(e, Gap)]
    assert [(g.symbol, g.reason) for g in gaps] == [("BTC-USD", "checksum")]
    # While resyncing, updates are not applied (no fresh snapshot arrived in the capture).
    assert parser.updates == t["corrupted_update_index"] - 1


def test_resync_snapshot_makes_the_book_live_and_keeps_the_sequence_rising(fixtures_dir: Path) -> None:
    frames = read_frames(fixtures_dir / "generated" / "kraken-clean.jsonl")
    parser, events = run(frames[:50])
    seq = parser.books["BTC-USD"].sequence
    parser.gap("BTC-USD", "checksum", "test", -1, 1)
    assert parser.state("BTC-USD") == "resyncing"
    parser.feed(frames[60], 1)                       # an update: ignored while resyncing
    assert parser.books["BTC-USD"].sequence == seq
    parser.feed(frames[2], 1)                        # a snapshot: live again
    assert parser.state("BTC-USD") == "live"
    assert parser.books["BTC-USD"].sequence == seq + 1
    assert parser.take_resyncs() == {}


def _book_frame(kind: str, bids: str, asks: str, checksum: int, symbol: str = "BTC/USD") -> bytes:
    return (f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{symbol}","bids":[{bids}],'
            f'"asks":[{asks}],"checksum":{checksum},"timestamp":"2026-11-27T10:00:00.5Z"}}]}}'
            ).encode()


def _crc(asks: list[tuple[str, str]], bids: list[tuple[str, str]]) -> int:
    text = "".join(p.replace(".", "").lstrip("0") + q.replace(".", "").lstrip("0")
                   for p, q in asks + bids)
    return zlib.crc32(text.encode())


def test_numbers_beyond_double_precision_stay_exact() -> None:
    # 17 significant digits: a float would round them; the text path keeps them.
    instrument = orjson.dumps({"channel": "instrument", "type": "snapshot", "data": {
        "assets": [], "pairs": [{"symbol": "BTC/USD", "price_precision": 1, "qty_precision": 8}]}})
    bid, ask = ("96512.2", "987654321.98765432"), ("96512.3", "0.00000001")
    frame = _book_frame("snapshot", f'{{"price":{bid[0]},"qty":{bid[1]}}}',
                        f'{{"price":{ask[0]},"qty":{ask[1]}}}', _crc([ask], [bid]))
    assert repr(float(bid[1])) != bid[1]               # the float cannot hold it
    parser, _ = run([instrument, frame])
    assert parser.checksum_ok == 1, parser.rejected
    assert parser.books["BTC-USD"].best_bid() == bid


def test_other_layouts_take_the_general_path() -> None:
    parser, _ = run([b'{"channel":"instrument","type":"snapshot","data":{"pairs":[{"symbol":"BTC/USD",'
                     b'"price_precision":1,"qty_precision":8}]}}'])
    asks, bids = [("100.5", "1.00000000")], [("100.0", "2.50000000")]
    spaced = orjson.dumps({"channel": "book", "type": "snapshot", "data": [{
        "symbol": "BTC/USD", "checksum": _crc(asks, bids),
        "asks": [{"qty": 1.0, "price": 100.5}], "bids": [{"qty": 2.5, "price": 100.0}]}]},
        option=orjson.OPT_INDENT_2)
    parser.feed(spaced, 1)
    assert parser.checksum_ok == 1, parser.rejected
    assert parser.books["BTC-USD"].best_ask() == asks[0]


@pytest.mark.parametrize("frame, reason", [
    (b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD"', "bad_json"),
    (b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":NaN,"qty":1}],'
     b'"asks":[],"checksum":1}]}', "bad_json"),
    (b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":NaN,"qty":1}],'
     b'"asks":[],"checksum":1,"timestamp":"2026-11-27T10:00:00.5Z"}]}', "nan"),
    (b'{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":[{"price":NaN,"qty":1}],'
     b'"asks":[],"checksum":1}]}', "bad_json"),
    (b'{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":"1.0","qty":"1"}],'
     b'"asks":[],"checksum":1}]}', "wrong_type"),
    (b'{"channel":"book","type":"update","data":"oops"}', "malformed"),
    (b'{"channel":"book","type":"snapshot","data":[{"symbol":"DOGE/EUR","bids":[],"asks":[],"checksum":0}]}',
     "unknown_symbol"),
    (b'{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"up","price":1.0,"qty":1.0,'
     b'"ord_type":"market","trade_id":1,"timestamp":"2026-11-27T10:00:00.1Z"}]}', "bad_side"),
    (b'{"channel":"nonsense"}', "unknown_channel"),
    (b'[1,2,3]', "malformed"),
    (b'"just a string"', "unexpected_message"),
    (b'{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":[' +
     b",".join([b'{"price":1.0,"qty":1.0}'] * 6000) + b'],"asks":[],"checksum":0}]}', "too_many_levels"),
    # the canonical update shape too: the scanners stop at MAX_LEVELS, the general path rejects
    (_book_frame("update", ",".join(['{"price":1.0,"qty":1.0}'] * 5001), "", 0), "too_many_levels"),
])
def test_hostile_frames_are_rejected_and_counted(frame: bytes, reason: str,
                                                 fixtures_dir: Path, fast_path: str) -> None:
    if reason == "nan":   # the scanner refuses non-JSON numbers; the Python path leaves it to the book
        reason = "bad_json" if fast_path == "compiled" else "bad_price"
    frames = read_frames(fixtures_dir / "generated" / "kraken-clean.jsonl")
    events: list = []
    parser = KrakenParser(["BTC-USD"], sink=events.append)
    for f in frames[:3]:
        parser.feed(f, 1)
    good = parser.books["BTC-USD"].copy()
    parser.feed(frame, 1)
    assert parser.rejected == {reason: 1}, parser.rejected
    assert isinstance(events[-1], Rejected) and events[-1].reason == reason
    assert parser.books["BTC-USD"] == good              # untouched
    for f in frames[3:200]:                             # and the parser carries on
        parser.feed(f, 1)
    assert parser.checksum_failed == 0 and parser.checksum_ok > 100


def test_negative_size_in_the_fast_path_is_rejected_and_the_book_kept(fixtures_dir: Path) -> None:
    frames = read_frames(fixtures_dir / "generated" / "kraken-clean.jsonl")
    parser, _ = run(frames[:3])
    good = parser.books["BTC-USD"].copy()
    parser.feed(_book_frame("update", '{"price":96512.2,"qty":-1.0}', "", 0), 1)
    assert parser.rejected == {"bad_size": 1}
    assert parser.books["BTC-USD"] == good


def test_trade_ids_dedupe_and_gaps() -> None:
    def trade(tid: int) -> bytes:
        return (b'{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"sell",'
                b'"price":96512.1,"qty":0.00026603,"ord_type":"market","trade_id":%d,'
                b'"timestamp":"2026-11-27T10:00:00.221587Z"}]}' % tid)
    parser, events = run([trade(1), trade(2), trade(2), trade(5)])
    trades = [e for e in events if isinstance(e, Trade)]
    assert [t.trade_id for t in trades] == ["1", "2", "5"]
    assert trades[0].price == "96512.1" and trades[0].size == "0.00026603"
    assert trades[0].side == "sell" and trades[0].ts_event == rfc3339_ns("2026-11-27T10:00:00.221587Z")
    assert parser.duplicates == 1
    gaps = [e for e in events if isinstance(e, Gap)]
    assert [(g.reason, g.missed) for g in gaps] == [("trade_id", 2)]


def test_crossed_book_is_a_gap() -> None:
    asks, bids = [("100.0", "1.00000000")], [("100.0", "1.00000000")]
    frame = _book_frame("snapshot", '{"price":100.0,"qty":1.00000000}',
                        '{"price":101.0,"qty":1.00000000}', _crc([("101.0", "1.00000000")], bids))
    parser, _ = run([frame])
    assert parser.state("BTC-USD") == "live"
    upd = _book_frame("update", "", '{"price":101.0,"qty":0.0},{"price":100.0,"qty":1.00000000}',
                      _crc(asks, bids))
    parser.feed(upd, 1)
    assert parser.books["BTC-USD"].crossed
    assert parser.take_resyncs() == {"BTC-USD": "crossed"}


@pytest.mark.parametrize("text", ["2023-07-30T15:29:58.343415Z", "2026-01-01T00:00:00Z",
                                  "2026-11-27T10:00:00.5Z", "2024-02-29T23:59:59.999999999Z",
                                  "2025-06-01T12:00:00.123+00:00"])
def test_rfc3339(text: str) -> None:
    if SCANNER is not None and "+" not in text:
        from alphapulse.exchanges._hotpath import rfc3339_ns as compiled
        assert compiled(text.encode()) == rfc3339_ns(text)
    dt = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)
    frac = text.split(".")[1].rstrip("Z").split("+")[0] if "." in text else ""
    expected = int(dt.replace(microsecond=0).timestamp()) * 10**9 + int(frac.ljust(9, "0")[:9] or 0)
    assert rfc3339_ns(text) == expected


def test_connection_lost_marks_live_books_and_counts_a_gap(fixtures_dir: Path) -> None:
    parser, events = run(read_frames(fixtures_dir / "generated" / "kraken-clean.jsonl")[:20])
    parser.connection_lost(1)
    assert parser.state("BTC-USD") == "resyncing"
    assert [(e.reason, e.symbol) for e in events if isinstance(e, Gap)] == [("reconnect", "BTC-USD")]
    assert parser.take_resyncs() == {}                  # reconnecting resubscribes anyway


def test_scanner_and_python_paths_agree_on_every_v2_frame(fixtures_dir: Path) -> None:
    if SCANNER is None:
        pytest.skip("alphapulse.exchanges._hotpath is not built")
    frames = []
    for rel in ("generated/kraken-clean.jsonl", "generated/arb-kraken.jsonl",
                "kraken/v2-book-btcusd-depth10-2023-07-30.jsonl"):
        frames += read_frames(fixtures_dir / rel)
    scanned = [f for f in frames if SCANNER(f) is not None]
    assert len(scanned) > 10_000
    for f in scanned:
        symbol, changes, checksum, ts = SCANNER(f)
        obj = json.loads(f)["data"][0]
        assert symbol.decode() == obj["symbol"] and checksum == obj["checksum"]
        assert ts == rfc3339_ns(obj["timestamp"])
        assert [(s, float(p), float(q)) for s, p, q in changes] == [
            ("bid", lv["price"], lv["qty"]) for lv in obj["bids"]] + [
            ("ask", lv["price"], lv["qty"]) for lv in obj["asks"]]


@pytest.mark.parametrize("mutation", [
    lambda f: f.replace(b'"price":', b'"price": '), lambda f: f + b" ",
    lambda f: f.replace(b'"qty":', b'"qty":"', 1), lambda f: f.replace(b"}]}", b"}],}"),
    lambda f: f.replace(b'"checksum":', b'"checksum":-'), lambda f: f[:-1],
    lambda f: f.replace(b'Z"', b'+00:00"'), lambda f: f.replace(b'"price":9', b'"price":09', 1),
])
def test_scanner_refuses_anything_but_the_canonical_shape(fixtures_dir: Path, mutation) -> None:  # noqa: ANN001
    if SCANNER is None:
        pytest.skip("alphapulse.exchanges._hotpath is not built")
    frame = next(f for f in read_frames(fixtures_dir / "generated" / "kraken-clean.jsonl")
                 if f.startswith(b'{"channel":"book","type":"update"') and b'"price":9' in f)
    assert SCANNER(frame) is not None
    assert SCANNER(mutation(frame)) is None


def test_v1_scanner_agrees_with_the_decoded_frames(fixtures_dir: Path) -> None:
    if SCANNER is None:
        pytest.skip("alphapulse.exchanges._hotpath is not built")
    scan_v1 = SCANNER_V1
    frames = read_frames(fixtures_dir / "kraken" / "v1-book-xbtusd-depth10-2023-08-30.jsonl")
    n = 0
    for f in frames:
        got = scan_v1(f)
        msg = json.loads(f)
        if not (isinstance(msg, list) and "c" in msg[-3]):
            assert got is None
            continue
        n += 1
        pair, name, changes, crc, ts = got
        assert (pair, name, crc) == (msg[-1], msg[-2], int(msg[-3]["c"]))
        want = [("ask" if k == "a" else "bid", lv[0].encode(), lv[1].encode())
                for payload in msg[1:-2] for k, levels in payload.items() if k in "ab"
                for lv in levels]
        assert changes == want
        stamps = [lv[2] for payload in msg[1:-2] for k, v in payload.items() if k in "ab" for lv in v]
        assert ts == max(kraken_module._epoch_text_ns(t) for t in stamps)
    assert n == 979
    bad = b'[336,{"b":[["27119.9","13.5","1693415330.6"]],"c":"35"},"book-10","XBT/USD"]'
    assert scan_v1(bad) is not None
    for mutated in (bad.replace(b'"13.5"', b'13.5'), bad.replace(b'"c":"35"', b'"c":35'),
                    bad + b" ", bad.replace(b'"27119.9"', b'"27119.9x"'),
                    bad.replace(b'"b":', b'"x":'), bad.replace(b',"c":"35"', b"")):
        assert scan_v1(mutated) is None


def test_mutated_frames_never_escape_feed(fixtures_dir: Path) -> None:
    """Seeded fuzz: byte flips, cuts and splices of real v1/v2 frames.  ``feed`` must count
    each frame exactly once, never raise, and never leave a live book crossed."""
    import random

    rng = random.Random(20261128)
    sources = {
        "v2": read_frames(fixtures_dir / "generated" / "kraken-clean.jsonl"),
        "v1": read_frames(fixtures_dir / "kraken" / "v1-book-xbtusd-depth10-2023-08-30.jsonl"),
    }
    for name, frames in sources.items():
        parser = KrakenParser(sink=lambda e: None)
        snapshot_at = 2 if name == "v2" else 3
        for f in frames[: snapshot_at + 1]:
            parser.feed(f, 1)
        pool = [f for f in frames if f.startswith((b'{"channel":"book"', b"[")) and len(f) > 40]
        for n in range(1500):
            frame = bytearray(rng.choice(pool))
            kind = rng.randrange(4)
            i = rng.randrange(len(frame))
            if kind == 0:
                frame[i] = rng.choice(b'0123456789.-+eE,:{}[]"x \\\x00\xff')
            elif kind == 1:
                del frame[i: i + rng.randrange(1, 12)]
            elif kind == 2:
                frame[i:i] = frame[rng.randrange(len(frame)):][:rng.randrange(1, 20)]
            else:
                frame = frame[:i]
            before = parser.messages
            parser.feed(bytes(frame), 1)
            assert parser.messages == before + 1
            book = parser.books["BTC-USD"]
            assert not (parser.state("BTC-USD") == "live" and book.crossed)
            if n % 100 == 99:                         # resync now and then, as the collector would
                parser.take_resyncs()
                parser.feed(frames[snapshot_at], 1)
