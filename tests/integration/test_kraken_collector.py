"""The Kraken collector against the Kraken replay server on loopback: real sockets, real
WebSocket handshakes, the live code path; faults injected by the server."""
from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from alphapulse.capture import read_frames
from alphapulse.events import BookSnapshot, BookUpdate, Gap, Trade
from alphapulse.exchanges import get_collector
from alphapulse.exchanges.kraken import KrakenCollector, KrakenParser
from alphapulse.replay import Faults, ReplayServer, serve
from alphapulse.symbols import from_native

from _collector_helpers import run_until_drained, truth

GENERATED = ("kraken-clean", "arb-kraken")


async def collect(path: Path, sock: socket.socket, *, faults: Faults | None = None,
                  symbols: list[str] | None = None, timeout: float = 60,
                  **options: Any) -> tuple[KrakenCollector, list, ReplayServer]:
    """Serve ``path``, run a collector against it until everything sent was processed."""
    events: list = []
    async with serve("kraken", path, max_rate=True, faults=faults, sock=sock) as server:
        options.setdefault("backoff_initial", 0.05)
        collector = KrakenCollector(symbols or ["BTC-USD"], url=server.ws_url,
                                    sink=events.append, **options)
        await run_until_drained(server, collector, timeout=timeout, settle=0.6)
    return collector, events, server


def book_events(events: list) -> list:
    return [e for e in events if isinstance(e, (BookSnapshot, BookUpdate))]


def test_registry() -> None:
    assert get_collector("kraken") is KrakenCollector
    assert KrakenCollector.parser_class is KrakenParser


@pytest.mark.parametrize("name", GENERATED)
async def test_generated_capture_end_to_end(fixtures_dir: Path, loopback_socket: socket.socket,
                                            name: str) -> None:
    t = truth(fixtures_dir, name)
    c, events, server = await collect(fixtures_dir / "generated" / f"{name}.jsonl",
                                      loopback_socket)
    s = c.stats
    assert (s["checksum_ok"], s["checksum_failed"]) == (t["checksums"], 0)
    assert s["trades"] == t["trades"] and s["gaps"] == 0 and s["rejected"] == {}
    assert s["reconnects"] == 0 and c.state("BTC-USD") == "live"
    book = c.books["BTC-USD"]
    assert book.depth == t["depth"]                  # from the subscribe ack
    assert (book.best_bid()[0], book.best_ask()[0]) == (t["final_best_bid"], t["final_best_ask"])
    assert book.checksum() == t["final_checksum"]
    ids = [int(e.trade_id) for e in events if isinstance(e, Trade)]
    assert ids == list(range(ids[0], ids[0] + len(ids)))


@pytest.mark.parametrize("rel, checksums, depth", [
    ("kraken/v2-book-btcusd-depth10-2023-07-30.jsonl", 510, 10),
    ("kraken/v1-book-xbtusd-depth10-2023-08-30.jsonl", 979, 10),
    ("kraken-doc/book-checksum-example.jsonl", 1, 10),
])
async def test_real_captures_every_checksum_matches(fixtures_dir: Path,
                                                    loopback_socket: socket.socket, rel: str,
                                                    checksums: int, depth: int) -> None:
    c, _, _ = await collect(fixtures_dir / rel, loopback_socket)
    assert c.protocol == ("v1" if "/v1-" in rel else "v2")      # chosen by the replay's URL
    s = c.stats
    assert (s["checksum_ok"], s["checksum_failed"], s["gaps"]) == (checksums, 0, 0)
    assert s["rejected"] == {}
    offline = KrakenParser()
    for frame in read_frames(fixtures_dir / rel):
        offline.feed(frame, 1)
    assert c.books["BTC-USD"] == offline.books["BTC-USD"]
    assert c.books["BTC-USD"].depth == depth


async def test_v1_trades_on_ten_pairs(fixtures_dir: Path, loopback_socket: socket.socket) -> None:
    path = fixtures_dir / "kraken" / "v1-trade-10pairs-2021-04-17.jsonl"
    pairs = {json.loads(f)[-1] for f in read_frames(path) if f.startswith(b"[")}
    symbols = sorted(from_native("kraken", p, variant="v1").symbol for p in pairs)
    c, events, _ = await collect(path, loopback_socket, symbols=symbols)
    trades = [e for e in events if isinstance(e, Trade)]
    assert len(trades) == 10 and c.stats["rejected"] == {}
    assert {t.native_symbol for t in trades} <= pairs


async def test_corrupt_checksum_resyncs_once(fixtures_dir: Path,
                                             loopback_socket: socket.socket) -> None:
    t = truth(fixtures_dir, "kraken-corrupt")
    c, events, _ = await collect(fixtures_dir / "generated" / "kraken-corrupt.jsonl",
                                 loopback_socket)
    s = c.stats
    assert s["checksum_failed"] == 1 and s["gaps"] == 1 and s["resyncs"] == 1
    assert s["snapshots"] == 2 and s["reconnects"] == 0      # resubscribed on the same socket
    gap_at = next(i for i, e in enumerate(events) if isinstance(e, Gap))
    assert events[gap_at].reason == "checksum"
    assert len(book_events(events[:gap_at])) == t["corrupted_update_index"]
    # After the fresh snapshot every checksum matches again and the book ends right.
    assert isinstance(book_events(events[gap_at:])[0], BookSnapshot)
    book = c.books["BTC-USD"]
    assert (book.best_bid()[0], book.best_ask()[0]) == (t["final_best_bid"], t["final_best_ask"])
    assert book.checksum() == t["final_checksum"] and c.state("BTC-USD") == "live"
    sequences = [e.delta.sequence for e in book_events(events)]
    assert sequences == sorted(set(sequences))            # per-book sequence keeps rising


async def test_connection_dropped_mid_stream(fixtures_dir: Path,
                                             loopback_socket: socket.socket) -> None:
    t = truth(fixtures_dir, "kraken-clean")
    c, events, server = await collect(fixtures_dir / "generated" / "kraken-clean.jsonl",
                                      loopback_socket, faults=Faults(drop_connection_at={2000}))
    s = c.stats
    assert server.connections == 2
    assert s["reconnects"] == 1 and s["disconnects"] == {"dropped": 1}
    assert s["gaps"] == 1 and s["snapshots"] == 2 and s["checksum_failed"] == 0
    assert [e.reason for e in events if isinstance(e, Gap)] == ["reconnect"]
    ids = [e.trade_id for e in events if isinstance(e, Trade)]
    assert len(ids) == len(set(ids)) == t["trades"]        # none duplicated, none lost
    book = c.books["BTC-USD"]
    assert (book.best_bid()[0], book.best_ask()[0]) == (t["final_best_bid"], t["final_best_ask"])


async def test_missed_trades_while_away_are_a_gap(fixtures_dir: Path,
                                                  loopback_socket: socket.socket) -> None:
    path = fixtures_dir / "generated" / "kraken-clean.jsonl"
    frames = read_frames(path)
    lost = sum(1 for f in frames[2000:2100] if f.startswith(b'{"channel":"trade"'))
    assert lost > 0
    c, events, _ = await collect(path, loopback_socket,
                                 faults=Faults(drop_connection_at={2000}, lose_on_disconnect=100))
    gaps = [(e.reason, e.missed) for e in events if isinstance(e, Gap)]
    assert gaps == [("reconnect", -1), ("trade_id", lost)]
    assert c.stats["trades"] == truth(fixtures_dir, "kraken-clean")["trades"] - lost
    assert c.stats["checksum_failed"] == 0


async def test_silent_server_trips_the_staleness_deadline(fixtures_dir: Path,
                                                          loopback_socket: socket.socket) -> None:
    t = truth(fixtures_dir, "kraken-clean")
    c, _, server = await collect(fixtures_dir / "generated" / "kraken-clean.jsonl",
                                 loopback_socket, faults=Faults(silent_at=3000),
                                 stale_after={"*": 0.5})
    s = c.stats
    assert s["disconnects"] == {"stale": 1} and server.connections == 2
    assert s["checksum_failed"] == 0 and s["trades"] == t["trades"]
    assert c.books["BTC-USD"].best_ask()[0] == t["final_best_ask"]


async def test_dead_peer_trips_the_ping_timeout(fixtures_dir: Path,
                                                loopback_socket: socket.socket) -> None:
    t = truth(fixtures_dir, "kraken-clean")
    c, _, _ = await collect(fixtures_dir / "generated" / "kraken-clean.jsonl", loopback_socket,
                            faults=Faults(stall_at=3000), ping_interval=0.2, ping_timeout=0.3,
                            close_timeout=0.2, stale_after={"*": 60})
    s = c.stats
    assert s["disconnects"] == {"ping_timeout": 1}
    assert s["checksum_failed"] == 0 and s["trades"] == t["trades"]
    assert c.books["BTC-USD"].best_bid()[0] == t["final_best_bid"]


def _index_where(frames: list[bytes], start: int, fault: str) -> int:
    """First book update index >= start whose drop/reorder breaks exactly one checksum."""
    for i in range(start, len(frames) - 1):
        if not frames[i].startswith(b'{"channel":"book","type":"update"'):
            continue
        if fault == "reorder" and not frames[i + 1].startswith(b'{"channel":"book","type":"update"'):
            continue
        altered = frames[:i] + ([frames[i + 1], frames[i]] if fault == "reorder" else []) + \
            frames[i + (2 if fault == "reorder" else 1):]
        p = KrakenParser()
        for f in altered[: i + 3]:
            p.feed(f, 1)
        if p.checksum_failed == 1:
            return i
    raise AssertionError("no suitable frame")


@pytest.mark.parametrize("fault", ["drop", "reorder"])
async def test_lost_or_reordered_update_is_one_gap_and_one_resync(
        fixtures_dir: Path, loopback_socket: socket.socket, fault: str) -> None:
    t = truth(fixtures_dir, "kraken-clean")
    path = fixtures_dir / "generated" / "kraken-clean.jsonl"
    i = _index_where(read_frames(path), 1500, fault)
    faults = Faults(drop_messages={i}) if fault == "drop" else Faults(reorder_messages={i})
    c, events, _ = await collect(path, loopback_socket, faults=faults)
    s = c.stats
    assert (s["checksum_failed"], s["gaps"], s["resyncs"], s["snapshots"]) == (1, 1, 1, 2)
    assert [e.reason for e in events if isinstance(e, Gap)] == ["checksum"]
    book = c.books["BTC-USD"]
    assert (book.best_bid()[0], book.best_ask()[0]) == (t["final_best_bid"], t["final_best_ask"])


async def test_duplicated_trade_is_not_counted_twice(fixtures_dir: Path,
                                                     loopback_socket: socket.socket) -> None:
    path = fixtures_dir / "generated" / "kraken-clean.jsonl"
    frames = read_frames(path)
    i = next(k for k in range(1000, len(frames)) if frames[k].startswith(b'{"channel":"trade"'))
    c, _, _ = await collect(path, loopback_socket, faults=Faults(duplicate_messages={i}))
    s = c.stats
    assert s["duplicates"] == 1 and s["trades"] == truth(fixtures_dir, "kraken-clean")["trades"]
    assert s["gaps"] == 0 and s["checksum_failed"] == 0


async def test_recorded_frames_verify_like_the_original(fixtures_dir: Path, tmp_path: Path,
                                                        loopback_socket: socket.socket) -> None:
    from alphapulse.capture import Recorder, read_capture
    from alphapulse.verify import verify

    t = truth(fixtures_dir, "kraken-clean")
    recorder = Recorder(tmp_path, "kraken")
    c, _, _ = await collect(fixtures_dir / "generated" / "kraken-clean.jsonl", loopback_socket,
                            recorder=recorder)
    recorder.close()
    records = [r for p in recorder.files for r in read_capture(p)]
    assert len(records) == c.stats["messages"]
    assert all(r.ts_recv and r.source == "ws" for r in records)
    assert [r.ts_recv for r in records] == sorted(r.ts_recv for r in records)
    result = verify("kraken", recorder.files)
    assert result.consistent
    s = result.summary
    assert (s["checksum_ok"], s["trades"]) == (t["checksums"], t["trades"])
    assert s["top"]["BTC-USD"] == {"bid": t["final_best_bid"], "ask": t["final_best_ask"]}


def test_url_and_protocol_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    assert KrakenCollector(["BTC-USD"]).url == "wss://ws.kraken.com/v2"
    assert KrakenCollector(["BTC-USD"]).protocol == "v2"
    monkeypatch.setenv("ALPHAPULSE_KRAKEN_WS_URL", "ws://127.0.0.1:9/")
    c = KrakenCollector(["BTC-USD"])
    assert (c.url, c.protocol) == ("ws://127.0.0.1:9/", "v1")
    assert c.natives == ["XBT/USD"]                     # v1 writes XBT
    c = KrakenCollector(["BTC-USD"], url="wss://ws.kraken.com/v2")   # explicit wins
    assert (c.url, c.protocol, c.natives) == ("wss://ws.kraken.com/v2", "v2", ["BTC/USD"])
    assert KrakenCollector(["BTC-USD"], protocol="v2").protocol == "v2"
    with pytest.raises(ValueError, match="depth"):
        KrakenCollector(["BTC-USD"], url="wss://x/v2", depth=7)
    msgs = [json.loads(m) for m in KrakenCollector(["ETH-USD"], url="wss://x/v2", depth=25)
            .subscribe_messages()]
    assert [m["params"]["channel"] for m in msgs] == ["instrument", "book", "trade"]
    assert msgs[1]["params"] == {"channel": "book", "depth": 25, "snapshot": True,
                                 "symbol": ["ETH/USD"]}


async def test_unreachable_exchange_backs_off_and_counts(loopback_socket: socket.socket) -> None:
    port = loopback_socket.getsockname()[1]
    loopback_socket.close()                             # nothing listens there any more
    c = KrakenCollector(["BTC-USD"], url=f"ws://127.0.0.1:{port}/v2", backoff_initial=0.01,
                        backoff_max=0.05)
    task = asyncio.create_task(c.run())
    while c.reconnects < 3:
        await asyncio.sleep(0.01)
    await c.stop()
    await asyncio.wait_for(task, 5)
    assert set(c.stats["disconnects"]) == {"connect_failed"} and not c.stats["connected"]


async def test_a_crashing_sink_does_not_end_the_collector(fixtures_dir: Path,
                                                          loopback_socket: socket.socket) -> None:
    calls = {"n": 0}

    def sink(event: object) -> None:
        calls["n"] += 1
        if calls["n"] == 100:
            raise RuntimeError("subscriber bug")

    async with serve("kraken", fixtures_dir / "generated" / "kraken-clean.jsonl", max_rate=True,
                     sock=loopback_socket) as server:
        c = KrakenCollector(["BTC-USD"], url=server.ws_url, sink=sink, backoff_initial=0.01)
        task = asyncio.create_task(c.run())
        while c.stats["checksum_ok"] < 1000:
            await asyncio.sleep(0.02)
        await c.stop()
        await asyncio.wait_for(task, 10)
    assert c.stats["disconnects"] == {"error": 1} and c.stats["checksum_failed"] == 0


@pytest.mark.parametrize("fault", ["drop", "silent"])
async def test_v1_feed_survives_faults_with_a_fresh_v1_snapshot(
        fixtures_dir: Path, loopback_socket: socket.socket, fault: str) -> None:
    path = fixtures_dir / "kraken" / "v1-book-xbtusd-depth10-2023-08-30.jsonl"
    faults = Faults(drop_connection_at={600}) if fault == "drop" else Faults(silent_at=600)
    c, events, _ = await collect(path, loopback_socket, faults=faults, stale_after={"*": 0.5})
    s = c.stats
    assert s["reconnects"] == 1 and s["checksum_failed"] == 0
    assert s["disconnects"] == ({"dropped": 1} if fault == "drop" else {"stale": 1})
    assert s["snapshots"] == 2 and c.protocol == "v1"
    snap = [e for e in events if isinstance(e, BookSnapshot)][1]
    assert snap.native_symbol == "XBT/USD" and len(snap.delta) == 20
    offline = KrakenParser()
    for frame in read_frames(path):
        offline.feed(frame, 1)
    assert c.books["BTC-USD"].bids() == offline.books["BTC-USD"].bids()
    assert c.books["BTC-USD"].asks() == offline.books["BTC-USD"].asks()
