"""The Binance.US collector against the Binance.US replay server on loopback: the stream and
the REST depth snapshot on one port, real sockets, the live code path; faults injected by the
server (dropped connection, silence, HTTP 429)."""
from __future__ import annotations

import asyncio
import json
import socket
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from alphapulse.capture import read_frames
from alphapulse.events import Gap
from alphapulse.exchanges import get_collector
from alphapulse.exchanges._http import WeightLimiter, http_get
from alphapulse.exchanges.binanceus import BinanceUSCollector, BinanceUSParser
from alphapulse.replay import Faults, ReplayServer, serve

from _collector_helpers import all_books_live, assert_truth, run_until_drained, tob, trade_ids, truth

REAL = {  # SOURCES.md: file -> (symbol, best bid, best ask)
    "2021-04-17-btcusdt": ("BTC-USDT", "60484.72", "60494.05"),
    "2021-04-17-bchusdt": ("BCH-USDT", "1052.39", "1054.13"),
    "2021-04-17-ethbusd": ("ETH-BUSD", "2361.24", "2365.45"),
    "2021-04-17-usdtusd": ("USDT-USD", "1.0010", "1.0011"),
    "2021-10-12-omgbusd": ("OMG-BUSD", "13.7307", "13.7728"),
    "2021-10-12-zrxusdt": ("ZRX-USDT", "0.9947", "0.9978"),
}


async def collect(path: Path | list[Path], sock: socket.socket, *, faults: Faults | None = None,
                  symbols: list[str] | None = None, timeout: float = 60, settle: float = 0.8,
                  url_path: str = "", **options: Any
                  ) -> tuple[BinanceUSCollector, list, ReplayServer]:
    """Serve ``path``; run a collector until everything sent was processed and books are live."""
    events: list = []
    async with serve("binanceus", path, max_rate=True, faults=faults, sock=sock) as server:
        options.setdefault("backoff_initial", 0.05)
        options.setdefault("snapshot_retry", 0.05)
        url = server.ws_url.rstrip("/") + url_path
        collector = BinanceUSCollector(symbols or ["BTC-USD"], url=url,
                                       rest_url=server.rest_url, sink=events.append, **options)
        # every frame sent plus every REST body that was answered (errors are not fed)
        await run_until_drained(
            server, collector, timeout=timeout, settle=settle,
            expected=lambda: server.messages_sent + collector.rest_requests - sum(
                collector.rest_errors.values()),
            live=lambda: all_books_live(collector))
    return collector, events, server


def test_registry_and_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_collector("binanceus") is BinanceUSCollector
    assert BinanceUSCollector.parser_class is BinanceUSParser
    c = BinanceUSCollector(["BTC-USD", "ETH-USDT"])
    assert c.url == ("wss://stream.binance.us:9443/stream?streams=btcusd@depth@100ms/"
                     "btcusd@trade/ethusdt@depth@100ms/ethusdt@trade")
    assert c.rest_url == "https://api.binance.us" and c.max_lifetime < 24 * 3600
    monkeypatch.setenv("ALPHAPULSE_BINANCEUS_WS_URL", "ws://127.0.0.1:9")
    monkeypatch.setenv("ALPHAPULSE_BINANCEUS_REST_URL", "http://127.0.0.1:9")
    c = BinanceUSCollector(["BTC-USD"], trade_stream="aggTrade")
    assert c.url == "ws://127.0.0.1:9/stream?streams=btcusd@depth@100ms/btcusd@aggTrade"
    assert c.rest_url == "http://127.0.0.1:9"
    with pytest.raises(ValueError):
        BinanceUSCollector(["BTC-USD"], depth_stream="depth5")


async def test_generated_clean(fixtures_dir: Path, loopback_socket: socket.socket) -> None:
    t = truth(fixtures_dir, "binanceus-clean")
    c, events, server = await collect(fixtures_dir / "generated" / "binanceus-clean.jsonl",
                                      loopback_socket)
    s = c.stats
    assert s["gaps"] == s["resyncs"] == s["reconnects"] == 0 and s["rejected"] == {}
    assert s["trades"] == t["trades"] and s["snapshots"] == 1 and s["rest_requests"] == 1
    assert_truth(c, t)
    assert server.rest_requests == 1


async def test_generated_gap_resyncs_from_new_snapshot(fixtures_dir: Path,
                                                       loopback_socket: socket.socket) -> None:
    t = truth(fixtures_dir, "binanceus-gap")
    c, events, server = await collect(fixtures_dir / "generated" / "binanceus-gap.jsonl",
                                      loopback_socket)
    gaps = [e for e in events if isinstance(e, Gap)]
    assert [(g.reason, g.missed) for g in gaps] == [("sequence", 3)]
    s = c.stats
    assert s["resyncs"] == 1 and s["snapshots"] == 2 and s["rest_requests"] == 2
    assert s["reconnects"] == 0 and s["trades"] == t["trades"]
    assert_truth(c, t)


@pytest.mark.parametrize("fault", ["drop_messages", "duplicate_messages", "reorder_messages"])
async def test_one_bad_message_is_one_gap(fixtures_dir: Path, loopback_socket: socket.socket,
                                          fault: str) -> None:
    t = truth(fixtures_dir, "binanceus-clean")
    frames = read_frames(fixtures_dir / "generated" / "binanceus-clean.jsonl")
    index = next(i for i in range(2000, 3000) if b"depthUpdate" in frames[i])
    c, events, server = await collect(fixtures_dir / "generated" / "binanceus-clean.jsonl",
                                      loopback_socket, faults=Faults(**{fault: {index}}))
    assert [e.reason for e in events if isinstance(e, Gap)] == ["sequence"]
    assert c.stats["resyncs"] == 1 and c.stats["snapshots"] == 2
    assert_truth(c, t)


async def test_snapshot_429_is_honoured(fixtures_dir: Path,
                                        loopback_socket: socket.socket) -> None:
    t = truth(fixtures_dir, "binanceus-clean")
    started = time.monotonic()
    c, events, server = await collect(fixtures_dir / "generated" / "binanceus-clean.jsonl",
                                      loopback_socket, faults=Faults(rest_errors=(429, 429),
                                                                     retry_after=1))
    s = c.stats
    assert s["rest_errors"] == {"429": 2} and s["rest_requests"] == 3
    assert time.monotonic() - started >= 2.0          # Retry-After: 1 s, twice
    assert s["gaps"] == 0 and s["snapshots"] == 1 and s["trades"] == t["trades"]
    assert_truth(c, t)


async def test_dropped_connection_resyncs_without_duplicates(
        fixtures_dir: Path, loopback_socket: socket.socket) -> None:
    t = truth(fixtures_dir, "binanceus-clean")
    c, events, server = await collect(fixtures_dir / "generated" / "binanceus-clean.jsonl",
                                      loopback_socket,
                                      faults=Faults(drop_connection_at={1500, 3500}))
    s = c.stats
    assert s["reconnects"] == 2 and s["disconnects"] == {"dropped": 2}
    assert s["snapshots"] == 3 and s["rest_requests"] == 3
    ids = trade_ids(events)
    assert ids == sorted(set(ids)) and len(ids) == t["trades"]     # nothing lost, no repeats
    assert [e.reason for e in events if isinstance(e, Gap)] == ["reconnect", "reconnect"]
    assert_truth(c, t)


async def test_trades_lost_while_away_are_a_gap(fixtures_dir: Path,
                                                loopback_socket: socket.socket) -> None:
    t = truth(fixtures_dir, "binanceus-clean")
    c, events, server = await collect(fixtures_dir / "generated" / "binanceus-clean.jsonl",
                                      loopback_socket,
                                      faults=Faults(drop_connection_at={2000},
                                                    lose_on_disconnect=200))
    ids = trade_ids(events)
    assert ids == sorted(set(ids))
    missed = sum(g.missed for g in events if isinstance(g, Gap) and g.reason == "trade_id")
    assert missed > 0 and len(ids) + missed == t["trades"]
    assert_truth(c, t)


async def test_silent_feed_is_replaced(fixtures_dir: Path, loopback_socket: socket.socket) -> None:
    t = truth(fixtures_dir, "binanceus-clean")
    c, events, server = await collect(
        fixtures_dir / "generated" / "binanceus-clean.jsonl", loopback_socket,
        faults=Faults(silent_at=2500), stale_after={"*": 0.6}, settle=1.5)
    assert c.stats["disconnects"] == {"stale": 1}
    ids = trade_ids(events)
    assert ids == sorted(set(ids)) and len(ids) == t["trades"]
    assert_truth(c, t)


async def test_raw_stream_path(fixtures_dir: Path, loopback_socket: socket.socket) -> None:
    # /ws/<stream>/<stream> sends bare events: the same parser takes them
    t = truth(fixtures_dir, "binanceus-clean")
    c, events, server = await collect(fixtures_dir / "generated" / "binanceus-clean.jsonl",
                                      loopback_socket,
                                      url_path="/ws/btcusd@depth@100ms/btcusd@trade")
    assert c.stats["gaps"] == 0 and c.stats["trades"] == t["trades"]
    assert_truth(c, t)


async def test_real_captures_many_symbols(fixtures_dir: Path,
                                          loopback_socket: socket.socket) -> None:
    paths = [fixtures_dir / "binanceus" / f"{name}.jsonl" for name in REAL]
    symbols = [sym for sym, _, _ in REAL.values()]
    c, events, server = await collect(paths, loopback_socket, symbols=symbols,
                                      trade_stream="aggTrade")
    s = c.stats
    assert s["gaps"] == 0 and s["rejected"] == {} and s["snapshots"] == len(REAL)
    assert s["trades"] == 5 + 6 + 4 + 11
    for sym, bid, ask in REAL.values():
        assert tob(c, sym) == (Decimal(bid), Decimal(ask)), sym


async def test_hostile_frames_counted_book_correct(fixtures_dir: Path, tmp_path: Path,
                                                   loopback_socket: socket.socket) -> None:
    t = truth(fixtures_dir, "binanceus-clean")
    frames = read_frames(fixtures_dir / "generated" / "binanceus-clean.jsonl")
    hostile = [b'{"e":"depthUpdate","E":1,"s":"BTCUSD","U":', b"[[[]]]",
               b'{"e":"trade","E":1,"s":"BTCUSD","t":"x","p":"1","q":"1","T":1,"m":true}',
               b'{"e":"trade","E":1,"s":"BTCUSD","t":1,"p":"NaN","q":"1","T":1,"m":true}',
               b'{"stream":"btcusd@trade","data":{"e":"trade","E":1,"s":"BTCUSD","t":5,'
               b'"p":"1.5","q":"-2","T":1,"m":false}}']
    for k, frame in enumerate(hostile):
        frames.insert(1000 + 300 * k, frame)
    capture = tmp_path / "hostile.jsonl"
    capture.write_bytes(b"\n".join(frames) + b"\n")
    c, events, server = await collect(capture, loopback_socket)
    assert c.stats["rejected"] == {"bad_json": 1, "malformed": 1, "bad_trade_id": 1,
                                   "bad_price": 1, "bad_size": 1}
    assert c.stats["gaps"] == 0 and c.stats["trades"] == t["trades"]
    assert_truth(c, t)


async def test_http_client_and_limiter(fixtures_dir: Path, loopback_socket: socket.socket) -> None:
    async with serve("binanceus", fixtures_dir / "generated" / "binanceus-clean.jsonl",
                     sock=loopback_socket, faults=Faults(rest_errors=(418,),
                                                         retry_after=2)) as server:
        limiter = WeightLimiter(25, ban_backoff=7)
        first = await http_get(f"{server.rest_url}/api/v3/depth?symbol=BTCUSD&limit=1000")
        limiter.observe(first)
        assert first.status == 418 and 6.9 < limiter.blocked_for <= 7
        ok = await http_get(f"{server.rest_url}/api/v3/depth?symbol=BTCUSD&limit=5")
        assert ok.status == 200 and ok.headers["x-mbx-used-weight-1m"] == "1"
        body = json.loads(ok.body)
        assert body["lastUpdateId"] == 4200000005 and len(body["bids"]) == 5
        bad = await http_get(f"{server.rest_url}/api/v3/depth?symbol=NOPE")
        assert bad.status == 400 and json.loads(bad.body)["code"] == -1121
    fresh = WeightLimiter(25)
    assert fresh.delay(10, now=0.0) == 0.0
    fresh._spent = [(0.0, 10), (1.0, 10)]
    assert fresh.delay(10, now=2.0) == pytest.approx(58.0)     # budget 25 per minute


async def test_lifetime_reconnect_is_routine(fixtures_dir: Path,
                                             loopback_socket: socket.socket) -> None:
    # Binance.US cuts connections at 24 h: the collector leaves first (max_lifetime), then
    # resubscribes and resnapshots; no trade is repeated and the book ends right.
    t = truth(fixtures_dir, "binanceus-clean")
    events: list = []
    async with serve("binanceus", fixtures_dir / "generated" / "binanceus-clean.jsonl",
                     speed=80.0, sock=loopback_socket) as server:
        c = BinanceUSCollector(["BTC-USD"], url=server.ws_url, rest_url=server.rest_url,
                               sink=events.append, max_lifetime=1.0, backoff_initial=0.05,
                               snapshot_retry=0.05)
        task = asyncio.create_task(c.run())
        try:
            await server.wait_done(60)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not (
                    c.state("BTC-USD") == "live" and c.connected and c._wanted == {}):
                await asyncio.sleep(0.05)
        finally:
            await c.stop()
            await asyncio.wait_for(task, 10)
    s = c.stats
    assert s["disconnects"].get("lifetime", 0) >= 1 and set(s["disconnects"]) == {"lifetime"}
    assert s["snapshots"] >= s["reconnects"] >= 1 and s["rejected"] == {}
    ids = trade_ids(events)
    assert ids == sorted(set(ids))
    assert_truth(c, t)
    # routine: each switch is a resync; a gap only for ids really missed meanwhile (the
    # replay keeps streaming while we reconnect), never the unconditional "connection lost"
    gaps = [e for e in events if isinstance(e, Gap)]
    assert s["resyncs"] >= s["disconnects"]["lifetime"] and len(gaps) == s["gaps"]
    assert all(g.reason in ("reconnect", "trade_id") and g.missed > 0 for g in gaps), gaps
