"""The Coinbase collector against the Coinbase replay server on loopback: real sockets, real
WebSocket handshakes, the live code path; faults injected by the server."""
from __future__ import annotations

import socket
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from alphapulse.capture import read_frames
from alphapulse.events import Gap
from alphapulse.exchanges import get_collector
from alphapulse.exchanges.coinbase import EXCHANGE_URL, CoinbaseCollector, CoinbaseParser
from alphapulse.replay import Faults, ReplayServer, serve

from _collector_helpers import all_books_live, assert_truth, run_until_drained, tob, trade_ids, truth

AT_REAL = "coinbase/advanced-trade-btcusd-ethusd-2026-08-09.jsonl"
EXCHANGE_REAL = "coinbase/exchange-feed-level2-ticker-matches-2021-04-17-a.jsonl"
EXCHANGE_PRODUCTS = ["SKL-USD", "DASH-BTC", "BAND-BTC", "NU-GBP", "SKL-GBP", "CRV-EUR"]


async def collect(path: Path | list[Path], sock: socket.socket, *, faults: Faults | None = None,
                  symbols: list[str] | None = None, timeout: float = 60,
                  settle: float = 0.6, **options: Any
                  ) -> tuple[CoinbaseCollector, list, ReplayServer]:
    """Serve ``path``, run a collector against it until everything sent was processed."""
    events: list = []
    async with serve("coinbase", path, max_rate=True, faults=faults, sock=sock) as server:
        options.setdefault("backoff_initial", 0.05)
        collector = CoinbaseCollector(symbols or ["BTC-USD"], url=server.ws_url,
                                      sink=events.append, **options)
        await run_until_drained(
            server, collector, timeout=timeout, settle=settle,
            live=lambda: all_books_live(collector) and not collector.parser.pending_resync)
    return collector, events, server


def test_registry_and_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_collector("coinbase") is CoinbaseCollector
    assert CoinbaseCollector.parser_class is CoinbaseParser
    c = CoinbaseCollector(["BTC-USD"])
    assert c.url == "wss://advanced-trade-ws.coinbase.com" and c.feed == "advanced_trade"
    assert [orjson.loads(m)["channel"] for m in c.subscribe_messages()] == [
        "level2", "market_trades", "heartbeats"]
    c = CoinbaseCollector(["BTC-USD"], feed="exchange")
    assert c.url == EXCHANGE_URL and c.feed == "exchange"
    assert orjson.loads(c.subscribe_messages()[0])["channels"] == [
        "level2_batch", "matches", "heartbeat"]
    monkeypatch.setenv("ALPHAPULSE_COINBASE_WS_URL", "ws://127.0.0.1:9/")
    assert CoinbaseCollector(["BTC-USD"]).url == "ws://127.0.0.1:9/"
    with pytest.raises(ValueError):
        CoinbaseCollector(["BTC-USD"], feed="fix")


@pytest.mark.parametrize("name", ["coinbase-clean", "arb-coinbase"])
async def test_generated_clean(fixtures_dir: Path, loopback_socket: socket.socket,
                               name: str) -> None:
    t = truth(fixtures_dir, name)
    c, events, server = await collect(fixtures_dir / "generated" / f"{name}.jsonl",
                                      loopback_socket)
    s = c.stats
    assert s["gaps"] == s["resyncs"] == s["reconnects"] == 0 and s["rejected"] == {}
    assert s["trades"] == t["trades"] and s["snapshots"] == 1
    assert_truth(c, t)
    ids = trade_ids(events)
    assert ids == sorted(set(ids))


async def test_generated_gap_resyncs(fixtures_dir: Path, loopback_socket: socket.socket) -> None:
    t = truth(fixtures_dir, "coinbase-gap")
    c, events, server = await collect(fixtures_dir / "generated" / "coinbase-gap.jsonl",
                                      loopback_socket)
    s = c.stats
    assert [e.reason for e in events if isinstance(e, Gap)] == ["sequence"]
    assert s["resyncs"] == 1 and s["snapshots"] == 2 and s["reconnects"] == 0
    assert s["trades"] == t["trades"]
    assert_truth(c, t)


@pytest.mark.parametrize("fault", ["drop_messages", "duplicate_messages", "reorder_messages"])
async def test_one_bad_message_is_one_gap(fixtures_dir: Path, loopback_socket: socket.socket,
                                          fault: str) -> None:
    t = truth(fixtures_dir, "coinbase-clean")
    frames = read_frames(fixtures_dir / "generated" / "coinbase-clean.jsonl")
    index = next(i for i in range(2000, 3000) if b'"l2_data"' in frames[i])
    c, events, server = await collect(fixtures_dir / "generated" / "coinbase-clean.jsonl",
                                      loopback_socket, faults=Faults(**{fault: {index}}))
    assert [e.reason for e in events if isinstance(e, Gap)] == ["sequence"]
    assert c.stats["resyncs"] == 1 and c.stats["snapshots"] == 2
    assert c.stats["trades"] == t["trades"]
    assert_truth(c, t)


async def test_dropped_connection_no_duplicate_trades(fixtures_dir: Path,
                                                      loopback_socket: socket.socket) -> None:
    t = truth(fixtures_dir, "coinbase-clean")
    faults = Faults(drop_connection_at={1500, 3500}, lose_on_disconnect=40)
    c, events, server = await collect(fixtures_dir / "generated" / "coinbase-clean.jsonl",
                                      loopback_socket, faults=faults)
    s = c.stats
    assert s["reconnects"] == 2 and s["disconnects"] == {"dropped": 2}
    assert server.connections == 3
    assert [e.reason for e in events if isinstance(e, Gap)] == ["reconnect", "reconnect"]
    # trades missed while away come back in the resubscribe's market_trades snapshot
    ids = trade_ids(events)
    assert ids == sorted(set(ids)) and len(ids) == t["trades"]
    assert_truth(c, t)


async def test_silent_feed_is_replaced(fixtures_dir: Path, loopback_socket: socket.socket) -> None:
    t = truth(fixtures_dir, "coinbase-clean")
    c, events, server = await collect(
        fixtures_dir / "generated" / "coinbase-clean.jsonl", loopback_socket,
        faults=Faults(silent_at=2500), stale_after={"*": 0.6}, settle=1.5)
    assert c.stats["disconnects"] == {"stale": 1}
    ids = trade_ids(events)
    assert ids == sorted(set(ids)) and len(ids) == t["trades"]
    assert_truth(c, t)


async def test_hostile_frames_counted_book_correct(fixtures_dir: Path, tmp_path: Path,
                                                   loopback_socket: socket.socket) -> None:
    t = truth(fixtures_dir, "coinbase-clean")
    frames = read_frames(fixtures_dir / "generated" / "coinbase-clean.jsonl")
    hostile = [
        b'{"channel":"l2_data","sequence_num":', b"[1,2]", b"NaN",
        b'{"channel":"l2_data","timestamp":"2026-11-27T10:00:00Z","sequence_num":1,"events":'
        b'[{"type":"update","product_id":"BTC-USD","updates":[{"side":"bid","event_time":"x",'
        b'"price_level":"96000.00","new_quantity":"-4"}]}]}',
        b'{"channel":"l2_data","timestamp":"2026-11-27T10:00:00Z","sequence_num":1,"events":'
        b'[{"type":"update","product_id":"BTC-USD","updates":[{"side":"bid","event_time":"x",'
        b'"price_level":"NaN","new_quantity":"1"}]}]}',
    ]
    for k, frame in enumerate(hostile):
        frames.insert(1000 + 300 * k, frame)
    capture = tmp_path / "hostile.jsonl"
    capture.write_bytes(b"\n".join(frames) + b"\n")
    c, events, server = await collect(capture, loopback_socket)
    s = c.stats
    assert s["rejected"] == {"bad_json": 2, "malformed": 1, "bad_size": 1, "bad_price": 1}
    assert s["gaps"] == 0 and s["reconnects"] == 0 and s["trades"] == t["trades"]
    assert_truth(c, t)


async def test_real_advanced_trade_capture(fixtures_dir: Path,
                                           loopback_socket: socket.socket) -> None:
    c, events, server = await collect(fixtures_dir / AT_REAL, loopback_socket,
                                      symbols=["BTC-USD", "ETH-USD"])
    s = c.stats
    assert s["gaps"] == 0 and s["rejected"] == {} and s["trades"] == 47 + 32
    assert tob(c, "BTC-USD") == (Decimal("65083.66"), Decimal("65083.67"))
    assert tob(c, "ETH-USD") == (Decimal("1919.28"), Decimal("1919.38"))


async def test_real_exchange_feed_capture(fixtures_dir: Path,
                                          loopback_socket: socket.socket) -> None:
    frames = read_frames(fixtures_dir / EXCHANGE_REAL)
    match = [i for i, f in enumerate(frames) if b'"type":"match"' in f][30]
    c, events, server = await collect(fixtures_dir / EXCHANGE_REAL, loopback_socket,
                                      symbols=EXCHANGE_PRODUCTS, feed="exchange",
                                      faults=Faults(drop_messages={match}))
    s = c.stats
    assert c.parser.protocol == "exchange"
    # the dropped match is the one gap (Exchange level2 has no sequence to show more)
    assert [(e.reason, e.missed) for e in events if isinstance(e, Gap)] == [("trade_id", 1)]
    assert s["trades"] == 76 and s["snapshots"] == 6 and s["rejected"] == {}
    assert tob(c, "SKL-USD") == (Decimal("0.7902"), Decimal("0.7911"))
    assert tob(c, "DASH-BTC") == (Decimal("0.00619316"), Decimal("0.00619947"))
