"""The collectors' fast WebSocket frame parser (exchanges/_fastws.py) against a real server.

Every message must arrive exactly as with stock ``websockets``: frames of every length class,
text and binary, split at every byte boundary, fragmented messages, pings answered in between,
the closing handshake with its code, and the size limit enforced (1009).
"""
from __future__ import annotations

import asyncio
import random
import time

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from alphapulse.exchanges._fastws import FAST, FastClientConnection, FastClientProtocol

pytestmark = pytest.mark.skipif(not FAST, reason="websockets major version not supported")


def _frame(payload: bytes, opcode: int = 0x1, fin: bool = True) -> bytes:
    head = bytes(((0x80 if fin else 0) | opcode,))
    n = len(payload)
    if n < 126:
        return head + bytes((n,)) + payload
    if n < 1 << 16:
        return head + b"\x7e" + n.to_bytes(2, "big") + payload
    return head + b"\x7f" + n.to_bytes(8, "big") + payload


MESSAGES: list[str | bytes] = [
    "a", "", "x" * 125, "y" * 126, "z" * 65535, "w" * 70_000, b"\x00\x01binary", "é ü ✓",
    *(f'{{"seq":{i},"pad":"{"p" * (i * 7 % 300)}"}}' for i in range(300)),
]


def _raw(messages: list[str | bytes]) -> bytes:
    return b"".join(_frame(m if isinstance(m, bytes) else m.encode(),
                           0x2 if isinstance(m, bytes) else 0x1) for m in messages)


async def _collect(url: str, n: int, *, fast: bool = True, **kw: object) -> tuple[list, object]:
    extra = {"create_connection": FastClientConnection} if fast else {}
    got: list[str | bytes] = []
    async with connect(url, compression=None, max_queue=None, **extra, **kw) as ws:  # type: ignore[arg-type]
        assert isinstance(ws, ClientConnection)
        kind = type(ws.protocol)
        for _ in range(n):
            got.append(await ws.recv())
    return got, kind


def _split_writer(raw: bytes, chunk: int):  # noqa: ANN202 - a websockets handler
    """A server handler writing ``raw`` in ``chunk``-byte pieces, then waiting for the close."""
    async def handler(ws: ServerConnection) -> None:
        for i in range(0, len(raw), chunk):
            ws.transport.write(raw[i:i + chunk])
            if chunk < 64 and i % 512 == 0:
                await asyncio.sleep(0)          # really arrives in pieces
        await ws.wait_closed()
    return handler


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 20])
async def test_same_messages_at_every_split(chunk: int) -> None:
    async with serve(_split_writer(_raw(MESSAGES), chunk), "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        got, kind = await _collect(f"ws://127.0.0.1:{port}", len(MESSAGES), max_size=1 << 20)
    assert kind is FastClientProtocol
    assert got == MESSAGES


async def test_fragments_pings_and_close_in_between() -> None:
    async def handler(ws: ServerConnection) -> None:
        ws.transport.write(_frame(b"one") + _frame(b"frag-", fin=False)
                           + _frame(b"", opcode=0x9)            # a ping inside a fragmented msg
                           + _frame(b"ment", opcode=0x0) + _frame(b"two"))
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 5)                          # the client answered
        await ws.send(["it", "er", "able"])                      # fragmented by websockets
        ws.transport.write(_frame(b"last"))
        await ws.close(4001, "bye")

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        got = []
        async with connect(f"ws://127.0.0.1:{port}", compression=None,
                           create_connection=FastClientConnection) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    got.append(await ws.recv())
    assert got == ["one", "frag-ment", "two", "iterable", "last"]
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
    assert closed.value.rcvd.reason == "bye"


async def test_size_limit_still_enforced() -> None:
    async def handler(ws: ServerConnection) -> None:
        ws.transport.write(_frame(b"ok") + _frame(b"x" * 5000))
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", compression=None, max_size=1000,
                           create_connection=FastClientConnection) as ws:
            assert await ws.recv() == "ok"
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
    assert closed.value.sent is not None and closed.value.sent.code == 1009


async def test_same_as_stock_websockets_on_random_traffic() -> None:
    rng = random.Random(7)
    messages: list[str | bytes] = [
        rng.choice([lambda: "t" * rng.randrange(0, 400), lambda: bytes(rng.randrange(256)
                                                                       for _ in range(50))])()
        for _ in range(2000)]
    raw = _raw(messages)

    async def handler(ws: ServerConnection) -> None:
        i = 0
        while i < len(raw):
            step = rng.randrange(1, 4000)
            ws.transport.write(raw[i:i + step])
            i += step
            await asyncio.sleep(0)
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        url = f"ws://127.0.0.1:{port}"
        fast, _ = await _collect(url, len(messages))
        stock, kind = await _collect(url, len(messages), fast=False)
    assert kind is not FastClientProtocol
    assert fast == stock == messages


# ---- recv_batch: the collectors' read call --------------------------------------------------
async def _collect_batches(url: str, n: int, **kw: object) -> list[list[tuple[bytes, int]]]:
    batches: list[list[tuple[bytes, int]]] = []
    async with connect(url, compression=None, max_queue=None,
                       create_connection=FastClientConnection, **kw) as ws:  # type: ignore[arg-type]
        assert isinstance(ws, FastClientConnection)
        while sum(map(len, batches)) < n:
            batches.append(await ws.recv_batch())
    return batches


@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
async def test_recv_batch_same_messages_at_every_split(chunk: int) -> None:
    async with serve(_split_writer(_raw(MESSAGES), chunk), "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        before = time.time_ns()
        batches = await _collect_batches(f"ws://127.0.0.1:{port}", len(MESSAGES),
                                         max_size=1 << 20)
        after = time.time_ns()
    flat = [item for batch in batches for item in batch]
    assert [data for data, _ in flat] == [m if isinstance(m, bytes) else m.encode()
                                          for m in MESSAGES]
    stamps = [ts for _, ts in flat]
    assert stamps == sorted(stamps) and before <= stamps[0] and stamps[-1] <= after
    if chunk == 1 << 20:
        assert max(map(len, batches)) > 1       # buffered messages come out together


async def test_recv_batch_stamps_the_socket_read_not_the_handover() -> None:
    async def handler(ws: ServerConnection) -> None:
        ws.transport.write(_frame(b"a") + _frame(b"b"))
        await asyncio.sleep(0.15)
        ws.transport.write(_frame(b"c") + _frame(b"d", fin=False) + _frame(b"e", opcode=0x0))
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", compression=None,
                           create_connection=FastClientConnection) as ws:
            assert await ws.recv() == "a"       # recv() and recv_batch() mix
            await asyncio.sleep(0.4)            # everything else is buffered by now
            handover = time.time_ns()
            got = await ws.recv_batch()
            got += await ws.recv_batch()        # the fragmented message comes on its own
    assert [data for data, _ in got] == [b"b", b"c", b"de"]
    (_, t_b), (_, t_c), (_, t_de) = got
    assert t_c - t_b >= 100_000_000             # two socket reads 150 ms apart
    assert t_de == t_c                          # delivered by the same read
    assert t_de < handover - 200_000_000        # stamped on arrival, not when handed over


async def test_recv_batch_pings_fragments_and_close() -> None:
    async def handler(ws: ServerConnection) -> None:
        ws.transport.write(_frame(b"one") + _frame(b"frag-", fin=False)
                           + _frame(b"", opcode=0x9)
                           + _frame(b"ment", opcode=0x0) + _frame(b"two"))
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 5)
        await ws.send(["it", "er", "able"])
        ws.transport.write(_frame(b"last"))
        await ws.close(4001, "bye")

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        got: list[bytes] = []
        async with connect(f"ws://127.0.0.1:{port}", compression=None,
                           create_connection=FastClientConnection) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    got += [data for data, _ in await ws.recv_batch()]
            assert not ws._stamps                # nothing left behind
    assert got == [b"one", b"frag-ment", b"two", b"iterable", b"last"]
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
