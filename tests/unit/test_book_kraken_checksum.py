"""Every Kraken checksum in the fixtures matches ``OrderBook.checksum()``.

The captures are parsed here with a few lines of local code (numbers kept as their exact
JSON text via ``parse_float=str``); the real protocol parser lives in alphapulse.exchanges.
Book rules (protocols.md §3, §3b): apply every level of a message, then truncate each side
to the subscribed depth, then compare the CRC of the top 10.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from book_reference import ReferenceBook

from alphapulse import OrderBook


def _lines(path: Path) -> Iterator[dict | list]:
    with path.open() as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line, parse_float=str, parse_int=str)


def _v2_changes(data: dict) -> list[tuple[str, str, str]]:
    return ([("bid", lv["price"], lv["qty"]) for lv in data["bids"]]
            + [("ask", lv["price"], lv["qty"]) for lv in data["asks"]])


def replay_v2(path: Path, depth: int, precisions: tuple[int, int] | None = None
              ) -> tuple[OrderBook, list[tuple[int, int, int]]]:
    """Feed a v2 capture into a book; returns it and (update index, ours, theirs) per
    checksum carried (index -1 for snapshots)."""
    book: OrderBook | None = None
    if precisions:
        book = OrderBook("BTC/USD", *precisions, exchange="kraken", depth=depth)
    results = []
    update_index = 0
    for msg in _lines(path):
        if not isinstance(msg, dict):
            continue
        if msg.get("channel") == "instrument":
            pair = msg["data"]["pairs"][0]
            book = OrderBook(pair["symbol"], int(pair["price_precision"]),
                             int(pair["qty_precision"]), exchange="kraken", depth=depth)
            continue
        if msg.get("channel") != "book":
            continue
        assert book is not None, "book message before the instrument message"
        for data in msg["data"]:
            if msg["type"] == "snapshot":
                book.snapshot([(lv["price"], lv["qty"]) for lv in data["bids"]],
                              [(lv["price"], lv["qty"]) for lv in data["asks"]])
                index = -1
            else:
                book.apply(_v2_changes(data))
                index = update_index
                update_index += 1
            results.append((index, book.checksum(), int(data["checksum"])))
    assert book is not None
    return book, results


def test_documented_example(fixtures_dir: Path) -> None:
    (msg,) = list(_lines(fixtures_dir / "kraken-doc" / "book-checksum-example.jsonl"))
    data = msg["data"][0]
    book = OrderBook("BTC/USD", 1, 8, exchange="kraken", depth=10)
    book.snapshot([(lv["price"], lv["qty"]) for lv in data["bids"]],
                  [(lv["price"], lv["qty"]) for lv in data["asks"]])
    assert int(data["checksum"]) == 3310070434
    assert book.checksum() == 3310070434


def test_v2_capture_all_510(fixtures_dir: Path) -> None:
    path = fixtures_dir / "kraken" / "v2-book-btcusd-depth10-2023-07-30.jsonl"
    book, results = replay_v2(path, depth=10, precisions=(1, 8))
    assert len(results) == 510
    mismatches = [(i, ours, theirs) for i, ours, theirs in results if ours != theirs]
    assert mismatches == []
    assert not book.crossed and book.bid_count == book.ask_count == 10


def test_v2_capture_fails_without_truncation(fixtures_dir: Path) -> None:
    """Negative control: the test can fail.  Without the depth limit most checksums break."""
    path = fixtures_dir / "kraken" / "v2-book-btcusd-depth10-2023-07-30.jsonl"
    _, results = replay_v2(path, depth=0, precisions=(1, 8))
    assert sum(ours == theirs for _, ours, theirs in results) < 100


def test_v2_capture_matches_reference_model(fixtures_dir: Path) -> None:
    """The independent dict + zlib model agrees on every message, level by level."""
    path = fixtures_dir / "kraken" / "v2-book-btcusd-depth10-2023-07-30.jsonl"
    book = OrderBook("BTC/USD", 1, 8, depth=10)
    ref = ReferenceBook(1, 8, depth=10)
    for msg in _lines(path):
        for data in msg["data"]:
            if msg["type"] == "snapshot":
                levels = ([(lv["price"], lv["qty"]) for lv in data["bids"]],
                          [(lv["price"], lv["qty"]) for lv in data["asks"]])
                book.snapshot(*levels)
                ref.snapshot(*levels)
            else:
                book.apply(_v2_changes(data))
                ref.apply(_v2_changes(data))
            assert (book.bids(), book.asks()) == (ref.bids(), ref.asks())
            assert book.checksum() == ref.checksum() == int(data["checksum"])


@pytest.mark.parametrize("name", ["kraken-clean", "arb-kraken"])
def test_generated_captures(fixtures_dir: Path, name: str) -> None:
    truth = json.loads((fixtures_dir / "generated" / f"{name}.truth.json").read_text())
    book, results = replay_v2(fixtures_dir / "generated" / f"{name}.jsonl", truth["depth"])
    assert len(results) == truth["checksums"]
    assert [r for r in results if r[1] != r[2]] == []
    assert (book.price_precision, book.size_precision) == \
        (truth["price_precision"], truth["qty_precision"])
    assert book.best_bid()[0] == truth["final_best_bid"]
    assert book.best_ask()[0] == truth["final_best_ask"]
    assert book.checksum() == truth["final_checksum"]


def test_generated_corrupt_capture_is_caught(fixtures_dir: Path) -> None:
    truth = json.loads((fixtures_dir / "generated" / "kraken-corrupt.truth.json").read_text())
    _, results = replay_v2(fixtures_dir / "generated" / "kraken-corrupt.jsonl", truth["depth"])
    # The truth file counts book messages from 0 (the snapshot is message 0).
    bad = [position for position, (_, ours, theirs) in enumerate(results) if ours != theirs]
    assert bad == [truth["corrupted_update_index"]]


def replay_v1(path: Path, depth: int) -> tuple[OrderBook, int, int]:
    """v1 frames: ``[chan, {"as","bs"}, "book-10", pair]`` snapshots and
    ``[chan, {"a"}, {"b", "c"}, "book-10", pair]`` updates; levels are
    ``[price, volume, timestamp(, "r")]`` strings.  Returns (book, matched, total)."""
    book = OrderBook("XBT/USD", 5, 8, exchange="kraken", depth=depth)
    matched = total = 0
    for msg in _lines(path):
        if not isinstance(msg, list):
            continue
        payloads = [part for part in msg[1:-2] if isinstance(part, dict)]
        if any("as" in part or "bs" in part for part in payloads):
            snap = payloads[0]
            book.snapshot([(lv[0], lv[1]) for lv in snap.get("bs", [])],
                          [(lv[0], lv[1]) for lv in snap.get("as", [])])
            continue
        changes = []
        checksum = None
        for part in payloads:
            changes += [("ask", lv[0], lv[1]) for lv in part.get("a", [])]
            changes += [("bid", lv[0], lv[1]) for lv in part.get("b", [])]
            checksum = part.get("c", checksum)
        book.apply(changes)
        if checksum is not None:
            total += 1
            matched += book.checksum() == int(checksum)
    return book, matched, total


def test_v1_capture_all_979(fixtures_dir: Path) -> None:
    path = fixtures_dir / "kraken" / "v1-book-xbtusd-depth10-2023-08-30.jsonl"
    book, matched, total = replay_v1(path, depth=10)
    assert (matched, total) == (979, 979)
    assert not book.crossed


def test_checksum_detects_a_one_unit_change() -> None:
    book = OrderBook("BTC/USD", 1, 8, depth=10)
    book.snapshot([("100.0", "1")], [("100.1", "1")])
    before = book.checksum()
    book.update("bid", "100.0", "1.00000001")
    assert book.checksum() != before
