"""Redis Streams against a real redis-server: ids, duplicates, outage buffering, --source redis."""
from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from alphapulse import OrderBook
from alphapulse.events import BookSnapshot, BookUpdate, Trade
from alphapulse.server.config import load_config
from alphapulse.server.hub import BookMirror, Hub
from alphapulse.server.redis_streams import RedisReader, RedisWriter, book_key, trades_key
from alphapulse.server.runtime import Runtime
from alphapulse.server.store import TradeStore

pytestmark = pytest.mark.redis

T0 = 1_764_230_400_000_000_000   # 2025-11-27T08:00:00Z in ns


def _trade(i: int, *, ms: int | None = None, exchange: str = "coinbase") -> Trade:
    ts = T0 + (i if ms is None else ms) * 1_000_000
    return Trade(exchange, "BTC-USD", "BTC-USD", f"{96500 + i}.10", "0.01000000",
                 "buy" if i % 2 else "sell", str(1000 + i), ts, ts + 50_000)


def _prefix(request: pytest.FixtureRequest) -> str:
    return f"t{abs(hash(request.node.nodeid)) % 10**8}-{time.monotonic_ns()}"


async def _drain(writer: RedisWriter, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while writer.buffered and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert writer.buffered == 0, writer.health()


async def test_trades_written_once_even_when_repeated(redis_url: str,
                                                      request: pytest.FixtureRequest) -> None:
    prefix = _prefix(request)
    writer = RedisWriter(redis_url, prefix=prefix, batch_size=50, batch_timeout_ms=5)
    await writer.start()
    try:
        trades = [_trade(i, ms=i // 3) for i in range(200)]   # three trades per millisecond
        for t in trades:
            writer.on_event(t)
        for t in trades[150:]:           # a reconnect re-delivers the last 50
            writer.on_event(t)
        await _drain(writer)
    finally:
        await writer.stop()
    assert writer.stats["skipped"] == 50

    # A restarted server (fresh writer, no local state) re-sends 20 already stored trades:
    # Redis refuses them by id, and they are counted, not stored.
    again = RedisWriter(redis_url, prefix=prefix, batch_size=50, batch_timeout_ms=5)
    await again.start()
    try:
        await asyncio.sleep(0.05)
        for t in trades[180:] + [_trade(200, ms=70)]:
            again.on_event(t)
        await _drain(again)
    finally:
        await again.stop()

    r = aioredis.from_url(redis_url)
    try:
        key = trades_key(prefix, "coinbase", "BTC-USD")
        entries = await r.xrange(key)
        assert len(entries) == 201
        ids = [e[0].decode() for e in entries]
        assert ids[0] == f"{T0 // 1_000_000}-1000" and ids[-1] == f"{T0 // 1_000_000 + 70}-1200"
        assert [e[1][b"trade_id"].decode() for e in entries] == [str(1000 + i) for i in range(201)]
        assert entries[5][1][b"price"] == b"96505.10"
    finally:
        await r.aclose()
    # The restarted writer learned the stream's end on connect and skipped the repeats locally,
    # or had them refused by Redis; either way each is counted and none was stored.
    assert again.stats["skipped"] + again.stats["duplicates"] == 20
    assert again.stats["written"] == 1


async def test_redis_refuses_an_id_below_the_top(redis_url: str,
                                                 request: pytest.FixtureRequest) -> None:
    """The server-side guard itself: a writer that cannot know the stream's end (it never
    read it) still cannot store a repeat."""
    prefix = _prefix(request)
    first = RedisWriter(redis_url, prefix=prefix, batch_timeout_ms=5)
    await first.start()
    for i in range(10):
        first.on_event(_trade(i))
    await _drain(first)
    await first.stop()
    blind = RedisWriter(redis_url, prefix=prefix, batch_timeout_ms=5)
    await blind.start()
    try:
        await asyncio.sleep(0.05)
        blind._streams.clear()          # forget what connect() learned
        for i in range(5, 10):
            blind.on_event(_trade(i))
        await _drain(blind)
    finally:
        await blind.stop()
    assert blind.stats["duplicates"] == 5 and blind.stats["written"] == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    """A redis-server this test may kill and restart (port, [process])."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    port = _free_port()
    procs: list[subprocess.Popen[bytes]] = []
    yield port, procs
    for p in procs:
        p.kill()
        p.wait(timeout=10)


def _start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


async def test_outage_buffers_within_bound_then_catches_up(
        private_redis: tuple[int, list[subprocess.Popen[bytes]]], tmp_path: Path) -> None:
    port, procs = private_redis
    url = f"redis://127.0.0.1:{port}/0"
    writer = RedisWriter(url, prefix="outage", batch_size=20, batch_timeout_ms=5,
                         buffer_limit=100)
    await writer.start()           # Redis is not there yet: the writer keeps retrying
    try:
        for i in range(150):
            writer.on_event(_trade(i))
        await asyncio.sleep(0.3)
        health = writer.health()
        assert health["connected"] is False and health["last_error"]
        assert health["buffered"] == 100 and health["dropped"] == 50   # bounded, counted

        procs.append(await asyncio.to_thread(_start_redis, port, tmp_path))
        await _drain(writer, timeout=10)
        assert writer.connected
        for i in range(150, 160):          # live again
            writer.on_event(_trade(i))
        await _drain(writer)
    finally:
        await writer.stop()
    r = aioredis.from_url(url)
    try:
        entries = await r.xrange(trades_key("outage", "coinbase", "BTC-USD"))
    finally:
        await r.aclose()
    # The 50 oldest were dropped; the 100 buffered and the 10 later ones arrived, in order.
    assert [int(e[1][b"trade_id"]) - 1000 for e in entries] == list(range(50, 160))


def _book_events(exchange: str = "kraken") -> tuple[list[object], OrderBook]:
    book = OrderBook("BTC-USD", 1, 8, exchange=exchange)
    events: list[object] = []
    snap = book.snapshot([("96500.0", "1"), ("96499.5", "2")], [("96501.0", "1.5"), ("96502.0", "3")])
    events.append(BookSnapshot(exchange, "BTC-USD", "BTC/USD", snap, T0, T0 + 1))
    for i in range(1, 40):
        delta = book.update("bid" if i % 2 else "ask",
                            f"{96500 - i * 0.5:.1f}" if i % 2 else f"{96501 + i * 0.5:.1f}",
                            f"{i}.25")
        events.append(BookUpdate(exchange, "BTC-USD", "BTC/USD", delta, T0 + i * 1_000_000,
                                 T0 + i * 1_000_000 + 1))
    return events, book


async def test_reader_rebuilds_books_and_trades(redis_url: str,
                                                request: pytest.FixtureRequest) -> None:
    prefix = _prefix(request)
    events, book = _book_events()
    writer = RedisWriter(redis_url, prefix=prefix, batch_timeout_ms=5, checkpoint_s=0.1,
                         books=lambda e, s: book if e == "kraken" else None)
    await writer.start()
    for ev in events[:20]:
        writer.on_event(ev)
    for i in range(30):
        writer.on_event(_trade(i, exchange="kraken"))
    await _drain(writer)

    hub, mirror, store = Hub(), BookMirror(), TradeStore(1000)
    hub.subscribe(mirror)
    hub.subscribe(store)
    reader = RedisReader(redis_url, exchanges=["kraken"], symbols=["BTC-USD"],
                         sink=hub.publish, prefix=prefix, block_ms=50,
                         have_sequence=lambda e, s: getattr(mirror.book(e, s), "sequence", None))
    await reader.start()
    try:
        for ev in events[20:]:           # written while the reader follows the stream
            writer.on_event(ev)
        await _drain(writer)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            mirrored = mirror.book("kraken", "BTC-USD")
            if mirrored is not None and mirrored.sequence == book.sequence \
                    and store.count("kraken", "BTC-USD") == 30:
                break
            await asyncio.sleep(0.02)
    finally:
        await reader.stop()
        await writer.stop()
    mirrored = mirror.book("kraken", "BTC-USD")
    assert mirrored is not None and mirrored == book and mirrored.checksum() == book.checksum()
    assert mirror.sequence_errors == 0
    assert {t.trade_id for t in store.recent("kraken", "BTC-USD", 100)} == {
        str(1000 + i) for i in range(30)}
    assert store.count("kraken", "BTC-USD") == 30
    assert reader.stats["bad_entries"] == 0
    r = aioredis.from_url(redis_url)
    try:
        kinds = [f[b"kind"] for _, f in await r.xrange(book_key(prefix, "kraken", "BTC-USD"))]
    finally:
        await r.aclose()
    assert kinds[0] == b"snapshot" and kinds.count(b"delta") == 39


async def test_source_redis_serves_the_same_trades(redis_url: str,
                                                   request: pytest.FixtureRequest,
                                                   loopback_socket: socket.socket) -> None:
    """A second server with --source redis answers /trades and /book with the same data."""
    prefix = _prefix(request)
    events, book = _book_events("coinbase")
    trades = [_trade(i) for i in range(25)]
    await _write(redis_url, prefix, [*events, *trades], books=lambda e, s: book)
    async with _source_server(redis_url, prefix, loopback_socket) as client:
        deadline = time.monotonic() + 5
        while True:
            got = (await client.get("/trades/BTC-USD",
                                    params={"exchange": "coinbase", "limit": 100})).json()
            if len(got.get("data", ())) == 25 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert sorted(t["trade_id"] for t in got["data"]) == sorted(t.trade_id for t in trades)
        assert {t["price"] for t in got["data"]} == {t.price for t in trades}
        served = (await client.get("/book/BTC-USD", params={"exchange": "coinbase"})).json()
        assert served["sequence"] == book.sequence
        assert served["checksum"] == book.checksum()
        health = (await client.get("/health")).json()
        assert health["redis"]["role"] == "source" and health["redis"]["connected"] is True


async def _write(url: str, prefix: str, events: list[Any],
                 books: Callable[[str, str], OrderBook | None] | None = None) -> None:
    """Write ``events`` through a RedisWriter under the server prefix of name ``prefix``."""
    writer = RedisWriter(url, prefix=f"alphapulse:{prefix}", batch_timeout_ms=5, books=books)
    await writer.start()
    for event in events:
        writer.on_event(event)
    await _drain(writer)
    await writer.stop()


@contextlib.asynccontextmanager
async def _source_server(url: str, name: str, sock: socket.socket
                         ) -> AsyncIterator[httpx.AsyncClient]:
    """A ``--source redis`` server (coinbase BTC-USD) on ``sock``, and an HTTP client to it."""
    config = load_config({"source": "redis", "redis_url": url, "name": name,
                          "exchanges": "coinbase", "symbols": "BTC-USD", "port": "0"}, env={})
    runtime = Runtime(config, sock=sock)
    await runtime.open()
    try:
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            yield client
    finally:
        await runtime.close()


async def test_collectors_to_redis_to_a_second_server(redis_url: str, fixtures_dir: Path,
                                                      request: pytest.FixtureRequest,
                                                      loopback_socket: socket.socket) -> None:
    """Server A (collector -> Redis) and server B (--source redis) serve the same trades and
    the same book, checksum for checksum, as the capture's truth file says."""
    from alphapulse.replay import serve

    prefix = _prefix(request)
    truth = json.loads((fixtures_dir / "generated" / "kraken-clean.truth.json").read_text())
    async with serve("kraken", [fixtures_dir / "generated" / "kraken-clean.jsonl"],
                     speed=200.0) as replay:
        config_a = load_config({"exchanges": "kraken", "symbols": "BTC-USD", "port": "0",
                                "redis_url": redis_url, "name": prefix,
                                "kraken_ws_url": replay.ws_url, "batch_timeout_ms": "5"}, env={})
        a = Runtime(config_a)
        await a.open()
        try:
            await replay.wait_done(timeout=30)
            deadline = time.monotonic() + 10
            while a.redis_writer.buffered or a.book("kraken", "BTC-USD") is None:
                assert time.monotonic() < deadline, a.redis_writer.health()
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
            final = a.book("kraken", "BTC-USD")
            assert final is not None and final.checksum() == truth["final_checksum"]
            sequence = final.sequence
        finally:
            await a.close()
    r = aioredis.from_url(redis_url)
    try:
        key = trades_key(f"alphapulse:{prefix}", "kraken", "BTC-USD")
        assert await r.xlen(key) == truth["trades"]
    finally:
        await r.aclose()

    config_b = load_config({"source": "redis", "redis_url": redis_url, "name": prefix,
                            "exchanges": "kraken", "symbols": "BTC-USD", "port": "0"}, env={})
    b = Runtime(config_b, sock=loopback_socket)
    await b.open()
    try:
        base = f"http://127.0.0.1:{loopback_socket.getsockname()[1]}"
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            deadline = time.monotonic() + 10
            while True:
                book = await client.get("/book/BTC-USD", params={"exchange": "kraken"})
                trades = (await client.get("/trades/BTC-USD", params={
                    "exchange": "kraken", "limit": 10000})).json()
                if (book.status_code == 200 and book.json()["sequence"] == sequence
                        and len(trades["data"]) == truth["trades"]):
                    break
                assert time.monotonic() < deadline, (book.text[:200], len(trades["data"]))
                await asyncio.sleep(0.05)
            assert book.json()["checksum"] == truth["final_checksum"]
            assert book.json()["best_bid"][0] == truth["final_best_bid"]
    finally:
        await b.close()


# --- /health with Redis down: the data source (503) vs a scale-out writer (200 degraded) --------

async def _health_until(client: httpx.AsyncClient, done: Any, timeout: float = 10.0
                        ) -> httpx.Response:
    """GET /health until ``done(response)``; the last response (asserts it came in time)."""
    deadline = time.monotonic() + timeout
    while True:
        response = await client.get("/health")
        if done(response) or time.monotonic() > deadline:
            assert done(response), (response.status_code, response.text[:600])
            return response
        await asyncio.sleep(0.1)


def _redis_state(response: httpx.Response) -> str | None:
    return (response.json().get("redis") or {}).get("state")


async def test_health_503_when_the_redis_source_is_down(
        private_redis: tuple[int, list[subprocess.Popen[bytes]]], tmp_path: Path,
        request: pytest.FixtureRequest, loopback_socket: socket.socket) -> None:
    """--source redis: Redis is where the data comes from, so with it down /health is 503
    ("unhealthy", redis state "down"); it is 200 again once Redis is back."""
    port, procs = private_redis
    url = f"redis://127.0.0.1:{port}/0"
    procs.append(await asyncio.to_thread(_start_redis, port, tmp_path))
    prefix = _prefix(request)
    await _write(url, prefix, [_trade(i) for i in range(10)])
    async with _source_server(url, prefix, loopback_socket) as client:
        up = await _health_until(client, lambda r: r.status_code == 200)
        assert up.json()["status"] == "ok" and _redis_state(up) == "up"
        assert up.json()["redis"]["role"] == "source"

        procs.pop().kill()                                   # the data source goes away
        down = await _health_until(client, lambda r: r.status_code == 503)
        body = down.json()
        assert body["status"] == "unhealthy" and body["healthy"] is False
        assert body["redis"]["role"] == "source" and body["redis"]["state"] == "down"
        assert any("redis source" in p for p in body["problems"]), body["problems"]

        procs.append(await asyncio.to_thread(_start_redis, port, tmp_path))
        back = await _health_until(client, lambda r: r.status_code == 200)
        assert back.json()["status"] == "ok" and _redis_state(back) == "up"


async def test_health_200_degraded_when_the_redis_writer_is_down(
        private_redis: tuple[int, list[subprocess.Popen[bytes]]], tmp_path: Path,
        fixtures_dir: Path, request: pytest.FixtureRequest,
        loopback_socket: socket.socket) -> None:
    """--redis-url beside the exchanges: with Redis down the local data path still serves, so
    /health stays 200 with status "degraded" and redis state "down" (and "ok" once it is back)."""
    from alphapulse.replay import serve

    port, procs = private_redis
    url = f"redis://127.0.0.1:{port}/0"
    procs.append(await asyncio.to_thread(_start_redis, port, tmp_path))
    # Slow enough that the collector keeps receiving for the whole test (fresh data: healthy).
    async with serve("kraken", [fixtures_dir / "generated" / "kraken-clean.jsonl"],
                     speed=6.0) as replay:
        config = load_config({"exchanges": "kraken", "symbols": "BTC-USD", "port": "0",
                              "redis_url": url, "name": _prefix(request),
                              "kraken_ws_url": replay.ws_url, "batch_timeout_ms": "5"}, env={})
        runtime = Runtime(config, sock=loopback_socket)
        await runtime.open()
        try:
            base = f"http://127.0.0.1:{loopback_socket.getsockname()[1]}"
            async with httpx.AsyncClient(base_url=base, timeout=5) as client:
                up = await _health_until(
                    client, lambda r: r.status_code == 200 and r.json()["status"] == "ok")
                assert _redis_state(up) == "up" and up.json()["redis"]["role"] == "writer"

                procs.pop().kill()
                down = await _health_until(client, lambda r: _redis_state(r) == "down")
                body = down.json()
                assert down.status_code == 200, body
                assert body["status"] == "degraded" and body["healthy"] is True
                assert any("redis writer" in p for p in body["problems"]), body["problems"]
                book = await client.get("/book/BTC-USD", params={"exchange": "kraken"})
                assert book.status_code == 200 and book.json()["checksum"]   # still serving

                procs.append(await asyncio.to_thread(_start_redis, port, tmp_path))
                await _health_until(
                    client, lambda r: r.status_code == 200 and r.json()["status"] == "ok")
        finally:
            await runtime.close()


async def test_stop_returns_while_reads_and_writes_are_in_flight(
        redis_url: str, request: pytest.FixtureRequest) -> None:
    """Stopping never cancels inside a redis-py command (which can swallow the cancellation
    and leave the task pending for ever): a blocked XREAD or a flush in flight ends first."""
    prefix = _prefix(request)
    for round_ in range(10):
        reader = RedisReader(redis_url, exchanges=["kraken"], symbols=["BTC-USD"],
                             sink=lambda event: None, prefix=prefix, block_ms=200)
        writer = RedisWriter(redis_url, prefix=prefix, batch_timeout_ms=1)
        await reader.start()
        await writer.start()
        for i in range(200):
            writer.on_event(_trade(round_ * 1000 + i, exchange="kraken"))
        await asyncio.sleep(0.05 + 0.013 * round_)      # stop at varying points of a read
        await asyncio.wait_for(asyncio.gather(reader.stop(), writer.stop()), timeout=5)
