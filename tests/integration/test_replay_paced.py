"""The paced, looping fake exchange (replay/paced.py + replay/loop.py) with the real collectors.

Each exchange's collector connects to a PacedReplayServer with its normal code path, gets the
capture once, then several looped passes at a set rate: its book must stay live and equal to the
capture's end state at every pass boundary (the restore frame plus the renumbered stream),
with no gap, no checksum failure, no rejection, no duplicate trade, and the trades repeated up
to the asked trade share.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from alphapulse import OrderBook
from alphapulse.events import BookSnapshot, BookUpdate, Gap, Rejected, Trade
from alphapulse.exchanges import get_collector, get_parser
from alphapulse.capture import read_frames
from alphapulse.replay.paced import paced

CAPTURES = {"coinbase": "coinbase-clean", "kraken": "kraken-clean",
            "binanceus": "binanceus-clean"}


def _end_book(exchange: str, path: Path) -> OrderBook:
    """The book after the whole capture, by the exchange's own parser (sans-IO)."""
    parser = get_parser(exchange)(["BTC-USD"])
    for frame in read_frames(path):
        parser.feed(frame, 1)
    return parser.books["BTC-USD"]


@contextlib.asynccontextmanager
async def _looping_collector(exchange: str, server: Any) -> AsyncIterator[Any]:
    """A collector on ``server`` whose session has reached the looped phase (first pass sent)."""
    collector = get_collector(exchange)(["BTC-USD"], url=server.ws_url, rest_url=server.rest_url)
    task = asyncio.create_task(collector.run())
    try:
        for _ in range(400):
            if server.looping:
                break
            await asyncio.sleep(0.05)
        assert server.looping == 1, server.error
        yield collector
    finally:
        await collector.stop()
        task.cancel()


def _worst_step_back(times: list[int]) -> int:
    """How far the furthest-behind time is behind one before it."""
    top, worst = times[0], 0
    for t in times:
        worst, top = max(worst, top - t), max(top, t)
    return worst


@pytest.mark.parametrize("exchange", sorted(CAPTURES))
async def test_collector_follows_looped_passes(exchange: str, fixtures_dir: Path) -> None:
    path = fixtures_dir / "generated" / f"{CAPTURES[exchange]}.jsonl"
    events: list[object] = []
    # Heartbeats while idle first (Coinbase numbers them on the same sequence as the loop).
    async with paced(exchange, [path], trade_share=0.2, heartbeat_interval=0.05) as server:
        collector = get_collector(exchange)(["BTC-USD"], url=server.ws_url,
                                            rest_url=server.rest_url, sink=events.append)
        task = asyncio.create_task(collector.run())
        try:
            await server.wait_done(30)
            for _ in range(200):                   # the first pass has reached the collector
                if server.looping:
                    break
                await asyncio.sleep(0.05)
            assert server.looping == 1, server.error
            await asyncio.sleep(0.3)                # idle at rate 0: a few heartbeats
            truth = _end_book(exchange, path)
            for _ in range(200):                    # the collector has read the whole pass
                if collector.books.get("BTC-USD") == truth:
                    break
                await asyncio.sleep(0.05)
            first_pass = len(events)
            server.rate = 20_000
            while server.counters["passes"] < 4:
                await asyncio.sleep(0.05)
            server.rate = 0
            await asyncio.sleep(0.3)                # the last chunk drains
        finally:
            await collector.stop()
            task.cancel()
    stats = collector.stats
    looped = events[first_pass:]
    assert stats["gaps"] == 0 and stats["resyncs"] == 0, stats
    assert not stats["rejected"] and not [e for e in looped if isinstance(e, (Gap, Rejected))]
    assert stats.get("checksum_failed", 0) == 0
    trades = [e for e in looped if isinstance(e, Trade)]
    books = [e for e in looped if isinstance(e, BookUpdate)]
    assert not [e for e in looped if isinstance(e, BookSnapshot)]
    assert len(trades) == server.counters["trades"] and len(books) == server.counters["books"]
    ids = [int(t.trade_id) for t in trades]
    assert ids == sorted(set(ids)) and ids == list(range(ids[0], ids[0] + len(ids)))
    assert 0.17 < len(trades) / (len(trades) + len(books)) < 0.23
    # Time keeps moving forward over the passes as it did within the capture: no trade is
    # further behind an earlier one than in the capture itself (the passes shift their times).
    captured = [e.ts_event for e in events[:first_pass] if isinstance(e, Trade)]
    assert _worst_step_back([t.ts_event for t in trades]) <= _worst_step_back(captured)
    assert trades[-1].ts_event > max(captured) or exchange == "coinbase"   # one instant there
    # Every pass ends at the capture's end state: check it at the end of a whole pass.
    assert collector.state("BTC-USD") == "live"
    assert not collector.books["BTC-USD"].crossed


@pytest.mark.parametrize("exchange", sorted(CAPTURES))
async def test_pass_boundary_restores_the_capture_end_state(exchange: str,
                                                            fixtures_dir: Path) -> None:
    """A parser fed the capture then exactly N looped passes holds the capture's end book."""
    from alphapulse.replay.loop import build_looper

    path = fixtures_dir / "generated" / f"{CAPTURES[exchange]}.jsonl"
    truth = _end_book(exchange, path)
    async with paced(exchange, [path]) as server, \
            _looping_collector(exchange, server) as collector:
        (session,) = server.sessions
        for _ in range(200):                        # the collector has read the whole pass
            book = collector.books.get("BTC-USD")
            if book is not None and book == truth:
                break
            await asyncio.sleep(0.05)
        end = collector.books["BTC-USD"].copy()
    assert end == truth
    # Offline: render two passes and feed them to a parser already at the end state.
    parser = collector.parser
    looper = build_looper(server, session, server.last_recorded)
    n = len(looper.templates)
    chunk = looper.chunk(2 * n)
    for i, stop in enumerate(chunk.ends):
        begin = chunk.ends[i - 1] if i else 0
        frame = chunk.buf[begin:stop]
        payload = frame[2:] if frame[1] < 126 else frame[4:] if frame[1] == 126 else frame[10:]
        parser.feed(payload, 1)
    assert parser.stats()["gaps"] == 0 and not parser.stats()["rejected"]
    assert parser.books["BTC-USD"] == end


async def test_rate_control_over_http(fixtures_dir: Path) -> None:
    path = fixtures_dir / "generated" / "kraken-clean.jsonl"
    async with paced("kraken", [path]) as server:
        def get(q: str) -> dict:
            with urllib.request.urlopen(f"{server.rest_url}/_load/{q}", timeout=5) as resp:
                return json.loads(resp.read())
        assert (await asyncio.to_thread(get, "rate?msgs=1234"))["rate"] == 1234
        stats = await asyncio.to_thread(get, "stats")
        assert stats["rate"] == 1234 and stats["frames"] == 0 and stats["cpu_s"] > 0
        with pytest.raises(urllib.error.HTTPError):
            await asyncio.to_thread(get, "rate?msgs=-1")


def test_sub_millisecond_tick_on_uvloop_sleeps_a_millisecond(fixtures_dir: Path) -> None:
    """uvloop rounds timers to the nearest millisecond: a 0.5 ms sleep there would be none and
    the driver would spin, taking the CPU from the server it loads.  The paced process runs on
    uvloop (``main``), so its ticks must still be whole-millisecond sleeps: at most ~1,000/s."""
    from alphapulse import eventloop

    path = fixtures_dir / "generated" / "kraken-clean.jsonl"

    async def run() -> dict:
        async with paced("kraken", [path], tick=0.0005) as server, \
                _looping_collector("kraken", server):
            server.rate = 5_000
            await asyncio.sleep(0.2)
            before, t0 = dict(server.counters), time.monotonic()
            await asyncio.sleep(1.0)
            after, t1 = dict(server.counters), time.monotonic()
        return {k: (after[k] - before[k]) / (t1 - t0) for k in ("ticks", "frames")}

    rates = eventloop.run(run(), "uvloop")
    assert 300 < rates["ticks"] < 1_050, rates
    assert 4_000 < rates["frames"] < 6_000, rates
