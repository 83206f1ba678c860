"""Strategies attached by name to a publisher in another process, through real rings.

The publisher process (``_feed_procs.publisher_main``) does what the server does: live books,
events into a real ``ShmPublisher``, its control socket.  Strategy processes attach with
``alphapulse.feed.attach`` and report their mirrors, which must equal the publisher's books.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import signal
import socket
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from alphapulse import feed as feedmod
from alphapulse.errors import ProducerGone
from alphapulse.events import BookSnapshot, BookUpdate, Trade
from alphapulse.server.shm import FeedNameInUse, ShmPublisher

from _feed_procs import BOOKS, publisher_main, strategy_main

ALL = [(e, s) for e, s, _ in BOOKS]


class Publisher:
    def __init__(self, spawn: Any, name: str, directory: Path) -> None:
        self.conn, child = spawn.Pipe()
        self.proc = spawn.Process(target=publisher_main, args=(name, str(directory), child),
                                  daemon=True)
        self.proc.start()
        child.close()
        assert self.conn.poll(30), "publisher did not start"
        tag, self.pid = self.conn.recv()
        assert tag == "ready"

    def call(self, *command: Any, timeout: float = 60) -> Any:
        self.conn.send(command)
        assert self.conn.poll(timeout), f"publisher did not answer {command[0]!r}"
        return self.conn.recv()

    def stop(self) -> None:
        if self.proc.is_alive():
            try:
                self.call("stop", timeout=10)
            except (AssertionError, OSError, EOFError):
                pass
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


def start_strategy(spawn: Any, name: str, directory: Path, channels: list[str],
                   expect: list[tuple[str, str]], *, capacity: int = 1 << 22,
                   slow_s: float = 0.0, slow_events: int = 0,
                   spin_us: float = 50.0) -> tuple[Any, Any, Any]:
    out, targets = spawn.Queue(), spawn.Queue()
    proc = spawn.Process(target=strategy_main, daemon=True,
                         args=(name, str(directory), channels, expect, capacity, slow_s,
                               slow_events, out, targets, spin_us))
    proc.start()
    tag, pid, ring_path = out.get(timeout=30)
    assert tag == "attached" and pid == proc.pid
    return proc, out, targets


@pytest.fixture
def publisher(spawn, shm_dir):
    pub = Publisher(spawn, "t1", shm_dir)
    yield pub
    pub.stop()


def test_mirrors_equal_publisher_books_and_slow_strategy_recovers(spawn, shm_dir, publisher):
    fast = start_strategy(spawn, "t1", shm_dir, ["book:*:*", "trades:*:*"], ALL)
    filtered = start_strategy(spawn, "t1", shm_dir, ["book:kraken:BTC-USD"],
                              [("kraken", "BTC-USD")])
    # A 64 KiB ring and 2 ms per event for its first 400 events: it must fall behind.
    slow = start_strategy(spawn, "t1", shm_dir, ["book:kraken:*", "trades:kraken:*"],
                          [("kraken", "BTC-USD"), ("kraken", "ETH-USD")],
                          capacity=1 << 16, slow_s=0.002, slow_events=400)
    tag, state, stats = publisher.call("run", 12000, 8000)
    assert tag == "state"
    goal = {key: value[0] for key, value in state.items()}
    results = {}
    for label, (proc, out, targets) in {"fast": fast, "filtered": filtered, "slow": slow}.items():
        targets.put(goal)
        results[label] = out.get(timeout=60)
        proc.join(10)
    for label, (tag, books, fstats, notices) in results.items():
        assert tag == "done", label
        for key, mirror in books.items():
            # Sequence, CRC32 (the server's checksum rule) and every level identical.
            assert mirror == state[key], (label, key)
        assert fstats["checksum_ok"] > 0, label
        assert fstats["checksum_failed"] == 0 and fstats["sequence_errors"] == 0, label
    # The filtered strategy got only its book (plus nothing else).
    assert set(results["filtered"][1]) == {("kraken", "BTC-USD")}
    assert results["filtered"][2]["trades"] == 0
    # The fast ones never lost anything; the slow one was told and recovered by itself.
    for label in ("fast", "filtered"):
        assert results[label][2]["overruns"] == 0 and results[label][2]["missed"] == 0, label
        assert results[label][3] == []
    slow_stats, slow_notices = results["slow"][2], results["slow"][3]
    assert slow_stats["overruns"] >= 1 and slow_stats["missed"] > 0
    assert ("overrun", slow_stats["missed"]) in slow_notices or slow_stats["overruns"] > 1
    assert slow_stats["snapshots"] > 2   # its first two, then fresh ones after the overrun
    assert results["fast"][2]["trades"] > 0
    pub_stats = stats
    assert pub_stats["dropped"] == slow_stats["missed"]
    assert pub_stats["overruns"] == slow_stats["overruns"]


def test_killed_publisher_reported_within_a_second(spawn, shm_dir, publisher):
    # In the busy-poll mode: a reader that never sleeps must still notice the death.
    proc, out, _targets = start_strategy(spawn, "t1", shm_dir, ["book:*:*"], ALL,
                                         spin_us=feedmod.BUSY_POLL)
    victim, vout, _ = start_strategy(spawn, "t1", shm_dir, ["trades:*:*"], [])
    rings = sorted(p.name for p in shm_dir.glob("alphapulse-t1/*.ring"))
    assert len(rings) == 2
    # A strategy killed with SIGKILL: its ring is freed by the publisher (socket EOF).
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(5)
    publisher.call("run", 200, 5000)
    deadline = time.monotonic() + 5
    while len(list(shm_dir.glob("alphapulse-t1/*.ring"))) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(list(shm_dir.glob("alphapulse-t1/*.ring"))) == 1
    _, pstats = publisher.call("stats")
    assert [s["pid"] for s in pstats["subscribers"]] == [proc.pid]
    # Now the publisher dies: the strategy must say so within a second.
    killed_at = time.time()
    os.kill(publisher.pid, signal.SIGKILL)
    tag, when, message = out.get(timeout=10)
    assert tag == "gone"
    assert "died" in message and "'t1'" in message
    assert when - killed_at < 1.0
    proc.join(5)


def test_async_iteration_and_control_requests(shm_dir, publisher):
    async def main() -> dict[str, Any]:
        # heartbeats=True: the loop below also wakes when the market is quiet.
        with feedmod.attach("t1", ["book:coinbase:BTC-USD"], directory=shm_dir,
                            heartbeats=True) as feed:
            assert oct(stat.S_IMODE(os.stat(feed.ring_path).st_mode)) == "0o600"
            assert "trades:kraken:BTC-USD" not in feed.available()   # no trade yet
            seen: dict[str, int] = {"snapshot": 0, "update": 0, "trade": 0}
            loop = asyncio.get_running_loop()
            run = loop.run_in_executor(None, publisher.call, "run", 2000, 20000)
            resubscribed = False
            deadline = time.monotonic() + 60
            async for event in feed:
                assert time.monotonic() < deadline
                if isinstance(event, BookSnapshot):
                    seen["snapshot"] += 1
                elif isinstance(event, BookUpdate):
                    seen["update"] += 1
                    assert (event.exchange, event.symbol) == ("coinbase", "BTC-USD")
                elif isinstance(event, Trade):
                    seen["trade"] += 1
                if run.done() and not resubscribed:
                    _, state, _ = run.result()
                    assert "trades:kraken:BTC-USD" in feed.available()
                    channels = feed.subscribe(["trades:*:*", "book:kraken:ETH-USD"])
                    assert channels == ["book:coinbase:BTC-USD", "book:kraken:ETH-USD",
                                        "trades:*:*"]
                    resubscribed = True
                if resubscribed and feed.synced("kraken", "ETH-USD"):
                    break
            key = ("kraken", "ETH-USD")
            assert (feed.book(*key).sequence, feed.book(*key).checksum()) == state[key][:2]
            # An explicit resync: the book goes stale and comes back with a snapshot.
            feed.resync("coinbase", "BTC-USD")
            assert feed.book("coinbase", "BTC-USD") is None
            async for event in feed:
                if isinstance(event, BookSnapshot) and event.exchange == "coinbase":
                    break
                assert time.monotonic() < deadline
            assert feed.book("coinbase", "BTC-USD").checksum() == state[("coinbase", "BTC-USD")][1]
            with pytest.raises(feedmod.FeedError, match="bad channel"):
                feed.request({"op": "subscribe", "channels": ["nope"]})
            return seen

    seen = asyncio.run(main())
    assert seen["snapshot"] >= 1 and seen["update"] > 100


def test_gap_makes_mirror_stale_until_fresh_snapshot(shm_dir, publisher):
    with feedmod.attach("t1", ["book:kraken:BTC-USD"], directory=shm_dir) as feed:
        while not feed.synced("kraken", "BTC-USD"):
            feed.next(timeout=5)
        assert feed.server_alive
        time.sleep(0.3)   # the publisher beats every 0.1 s here
        feed.poll()
        assert feed.stats["heartbeats"] >= 1 and feed.heartbeat_age < 5
        publisher.call("gap", "kraken", "BTC-USD")
        event = feed.next(timeout=5)
        assert type(event).__name__ == "Gap"
        assert feed.book("kraken", "BTC-USD") is None
        event = feed.next(timeout=5)   # the publisher's book stayed live: snapshot at once
        assert isinstance(event, BookSnapshot)
        assert feed.synced("kraken", "BTC-USD")
        assert feed.stats["checksum_ok"] >= 1   # every fresh snapshot comes with its CRC
    # A gap for a whole exchange (symbol ""): every book of it.
    with feedmod.attach("t1", ["book:*:*"], directory=shm_dir) as feed:
        while not all(feed.synced(*key) for key in ALL):
            feed.next(timeout=5)
        publisher.call("gap", "kraken", "")
        event = feed.next(timeout=5)
        assert type(event).__name__ == "Gap" and event.symbol == ""
        assert [feed.synced(*key) for key in ALL] == [False, False, True]
        deadline = time.monotonic() + 10
        while not all(feed.synced(*key) for key in ALL):
            assert time.monotonic() < deadline
            feed.next(timeout=1)


def test_layout_permissions_and_name_in_use(shm_dir, publisher):
    d = shm_dir / "alphapulse-t1"
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE((d / "control.sock").stat().st_mode) == 0o600
    info = json.loads((d / "server.json").read_text())
    assert info["pid"] == publisher.pid
    with pytest.raises(FeedNameInUse, match="live server pid"):
        ShmPublisher("t1", directory=shm_dir).start()
    # Killed hard: its directory stays behind, with a ring ...
    with feedmod.attach("t1", ["book:*:*"], directory=shm_dir):
        pass
    leftover = d / "sub-99-1.ring"
    leftover.write_bytes(b"x")
    os.kill(publisher.pid, signal.SIGKILL)
    publisher.proc.join(5)
    with pytest.raises(feedmod.FeedError, match="no AlphaPulse server named 't1'"):
        feedmod.attach("t1", ["book:*:*"], directory=shm_dir)
    # ... which the next start with that name cleans.
    pub = ShmPublisher("t1", directory=shm_dir)
    pub.start()
    try:
        assert not leftover.exists()
        assert sorted(p.name for p in d.iterdir()) == ["control.sock", "server.json"]
    finally:
        pub.close()
    assert not d.exists()


def test_busy_poll_mode(shm_dir, publisher):
    """spin_us=BUSY_POLL: every event arrives, mirrors equal the publisher's books, a timed
    next() still returns on time, and the mode can be left (and re-entered) at run time."""
    with pytest.raises(ValueError, match="spin_us"):
        feedmod.attach("t1", ["book:*:*"], directory=shm_dir, spin_us=-1)
    with feedmod.attach("t1", ["book:*:*", "trades:*:*"], directory=shm_dir,
                        spin_us=feedmod.BUSY_POLL) as feed:
        assert feed.busy_poll and feed.spin_us == feedmod.BUSY_POLL
        assert feed._reader.spin_ns > 10**15          # the reader spins, never sleeps
        while not all(feed.synced(*key) for key in ALL):
            assert feed.next(timeout=5) is not None
        started = time.monotonic()
        assert feed.next(timeout=0.2) is None          # nothing published: a timeout
        assert 0.15 < time.monotonic() - started < 2.0
        # Idle, it keeps the decode path warm: the last record decoded every warm_us.
        assert feed.warm_us == feedmod.DEFAULT_WARM_US
        warmed = []
        real_decode = feedmod.strategy.decode
        feedmod.strategy.decode = lambda record: warmed.append(record)
        try:
            assert feed.next(timeout=0.1) is None
            feed.warm_us = 0                           # off: a plain spin until the deadline
            before = len(warmed)
            started = time.monotonic()
            assert feed.next(timeout=0.1) is None
            assert 0.05 < time.monotonic() - started < 2.0
        finally:
            feedmod.strategy.decode = real_decode
            feed.warm_us = feedmod.DEFAULT_WARM_US
        assert before >= 10 and len(warmed) == before, (before, len(warmed))
        assert all(type(r) is bytes and r for r in warmed)      # records it had read
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            run = pool.submit(publisher.call, "run", 3000, 20000)
            updates = 0
            deadline = time.monotonic() + 60
            while not run.done():
                updates += type(feed.next(timeout=0.05)) is BookUpdate
                assert time.monotonic() < deadline
            _, state, _ = run.result()
        while any(feed.book(*key).sequence != state[key][0] for key in ALL):
            assert feed.next(timeout=5) is not None
        for key in ALL:
            assert (feed.book(*key).sequence, feed.book(*key).checksum()) == state[key][:2]
        assert updates > 1000
        assert feed.stats["overruns"] == 0 and feed.stats["sequence_errors"] == 0
        feed.spin_us = 0
        assert not feed.busy_poll and feed._reader.spin_ns == 0

        # async for in the busy-poll mode polls cooperatively: the loop's other tasks still run.
        async def main() -> int:
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.001)
                    ticks += 1

            task = asyncio.create_task(ticker())
            feed.spin_us = feedmod.BUSY_POLL
            # The feed is idle for 0.2 s (busy-polling), then a resync brings a snapshot.
            asyncio.get_running_loop().call_later(0.2, feed.resync, "kraken", "BTC-USD")
            async for event in feed:
                if isinstance(event, BookSnapshot) and event.exchange == "kraken":
                    break
            task.cancel()
            return ticks

        assert asyncio.run(main()) >= 10          # the ticker ran while the feed was polled
        assert feed.synced("kraken", "BTC-USD")


def test_attach_errors(shm_dir):
    with pytest.raises(feedmod.FeedError, match="no AlphaPulse server named 'nobody'"):
        feedmod.attach("nobody", ["book:*:*"], directory=shm_dir)
    with pytest.raises(ValueError, match="bad channel"):
        feedmod.attach("nobody", ["book:kraken"], directory=shm_dir)
    started = time.monotonic()
    with pytest.raises(feedmod.FeedError):
        feedmod.attach("nobody", ["book:*:*"], directory=shm_dir, wait=0.3)
    assert time.monotonic() - started >= 0.3


def test_producer_gone_is_the_ring_error():
    # Strategies catch ProducerGone from the feed exactly as from a ring.
    assert issubclass(feedmod.FeedError, ConnectionError)
    assert issubclass(ProducerGone, OSError)


async def test_server_rings_carry_a_book_event_before_the_opportunity_it_opens(
        shm_dir, fixtures_dir):
    """The whole server (arb captures -> collectors -> hub): the shm publisher is the hub's
    first subscriber, so a strategy's ring holds the book event that opened an arbitrage
    opportunity before the opportunity itself (the detector runs after the publisher)."""
    from alphapulse.replay import serve
    from alphapulse.server.config import load_config
    from alphapulse.server.runtime import Runtime
    from alphapulse.wire import Arbitrage

    socks = {}
    for exchange in ("kraken", "coinbase"):
        # Listening but not served yet: the collectors' handshakes wait until we attached.
        sock = socket.create_server(("127.0.0.1", 0))
        socks[exchange] = sock
    ports = {e: s.getsockname()[1] for e, s in socks.items()}
    config = load_config({
        "exchanges": "kraken,coinbase", "symbols": "BTC-USD", "port": "0", "name": "arbring",
        "shm_dir": str(shm_dir), "kraken_ws_url": f"ws://127.0.0.1:{ports['kraken']}/v2",
        "coinbase_ws_url": f"ws://127.0.0.1:{ports['coinbase']}/"}, env={})
    runtime = Runtime(config)
    await runtime.open()
    try:
        feed = await asyncio.to_thread(feedmod.attach, "arbring",
                                       ["book:*:BTC-USD", "arbitrage:BTC-USD"],
                                       directory=shm_dir)
        with feed:
            async with contextlib.AsyncExitStack() as replays:
                for exchange, sock in socks.items():
                    capture = fixtures_dir / "generated" / f"arb-{exchange}.jsonl"
                    await replays.enter_async_context(serve(exchange, [capture], speed=50.0,
                                                            sock=sock))
                book_recv: set[int] = set()
                opportunities = []
                deadline = time.monotonic() + 30
                async for event in feed:
                    assert time.monotonic() < deadline, (len(book_recv), opportunities)
                    if isinstance(event, (BookSnapshot, BookUpdate)):
                        book_recv.add(event.ts_recv)
                    elif isinstance(event, Arbitrage):
                        opportunities.append(event)
                        # The book event that opened it is already on this ring, ahead of it.
                        assert event.ts_recv in book_recv, event.data
                        break
    finally:
        await runtime.close()
    assert opportunities and opportunities[0].symbol == "BTC-USD"
