"""The shared replay machinery (replay/_server.py, faults.py) with a minimal exchange."""
from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from alphapulse.replay import Faults, Market, ReplayExchange, ReplayServer, Session


class EchoSession(Session):
    async def on_message(self, message: str | bytes) -> None:
        if message == "go":
            self.start_stream()

    def idle_frame(self) -> str:
        return "idle"


class CountMarket(Market):
    def __init__(self) -> None:
        self.applied = 0

    def apply(self, index: int, frame: bytes) -> None:
        self.applied += 1

    def copy(self) -> "CountMarket":
        other = CountMarket()
        other.applied = self.applied
        return other


class Toy(ReplayExchange):
    name = "toy"
    session_class = EchoSession
    market_class = CountMarket

    def http(self, path, query, market):  # noqa: ANN001, ANN201
        if path == "/api/v3/depth":
            return 200, {"X-Used": "1"}, b'{"applied":%d,"symbol":"%s"}' % (
                market.applied, query.get("symbol", "").encode())
        return None


def toy(n: int, sock: socket.socket, **kw) -> ReplayServer:  # noqa: ANN003
    frames = [b'{"i":%d}' % i for i in range(n)]
    return ReplayServer(Toy(frames), sock=sock, max_rate=True, heartbeat_interval=0.05, **kw)


async def read_all(url: str, n: int) -> list[str]:
    got: list[str] = []
    async with connect(url) as ws:
        await ws.send("go")
        while len(got) < n:
            got.append(await ws.recv())
    return got


def http_get(url: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


async def test_frames_then_idle_heartbeats(loopback_socket: socket.socket) -> None:
    async with toy(20, loopback_socket) as server:
        got = await read_all(server.ws_url, 23)
        await server.wait_done(5)
    assert got[:20] == ['{"i":%d}' % i for i in range(20)]
    assert got[20:] == ["idle"] * 3                   # open and idle after the last frame
    assert server.frames_sent == 20 and server.connections == 1


async def test_drop_duplicate_reorder(loopback_socket: socket.socket) -> None:
    faults = Faults(drop_messages={2}, duplicate_messages={5}, reorder_messages={7})
    async with toy(10, loopback_socket, faults=faults) as server:
        got = await read_all(server.ws_url, 10)
    idx = [int(s[5:-1]) for s in got]
    assert idx == [0, 1, 3, 4, 5, 5, 6, 8, 7, 9]
    assert server.market.applied == 10               # the market saw every frame


async def test_drop_connection_resumes_where_it_left(loopback_socket: socket.socket) -> None:
    async with toy(10, loopback_socket, faults=Faults(drop_connection_at={4})) as server:
        with pytest.raises(ConnectionClosed):
            await read_all(server.ws_url, 10)
        got = await read_all(server.ws_url, 6)
    assert got == ['{"i":%d}' % i for i in range(4, 10)]
    assert server.connections == 2


async def test_lose_on_disconnect_moves_the_market_on(loopback_socket: socket.socket) -> None:
    faults = Faults(drop_connection_at={3}, lose_on_disconnect=4)
    async with toy(10, loopback_socket, faults=faults) as server:
        with pytest.raises(ConnectionClosed):
            await read_all(server.ws_url, 10)
        await asyncio.sleep(0.05)
        got = await read_all(server.ws_url, 3)
    assert got == ['{"i":7}', '{"i":8}', '{"i":9}']


async def test_rest_errors_then_answers(loopback_socket: socket.socket) -> None:
    async with toy(5, loopback_socket, faults=Faults(rest_errors=(429, 418, 503),
                                                      retry_after=7)) as server:
        url = f"{server.rest_url}/api/v3/depth?symbol=BTCUSD&limit=1000"
        answers = [await asyncio.to_thread(http_get, url) for _ in range(4)]
        missing = await asyncio.to_thread(http_get, f"{server.rest_url}/nope")
    assert [a[0] for a in answers] == [429, 418, 503, 200]
    assert answers[0][1]["Retry-After"] == "7"
    assert answers[3][2] == b'{"applied":0,"symbol":"BTCUSD"}'
    assert answers[3][1]["Content-Type"] == "application/json" and answers[3][1]["X-Used"] == "1"
    assert missing[0] == 404 and server.rest_requests == 5


async def test_random_drops_are_seeded_and_survivable(loopback_socket: socket.socket) -> None:
    async with toy(200, loopback_socket, faults=Faults(drop_probability=0.05, seed=3)) as server:
        received: list[str] = []
        for _ in range(100):
            try:
                async with connect(server.ws_url) as ws:
                    await ws.send("go")
                    while len(received) < 200:
                        received.append(await ws.recv())
                break
            except ConnectionClosed:
                continue
    assert [int(s[5:-1]) for s in received] == list(range(200))   # nothing lost or repeated
    assert server.connections > 2


def test_fault_spec_errors() -> None:
    with pytest.raises(ValueError, match="expected one of"):
        Faults.parse("drop_everything=1")
    with pytest.raises(ValueError):
        Faults(drop_probability=2.0)
