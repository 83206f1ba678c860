"""The collectors' fast WebSocket frame parser (exchanges/_fastws.py) against a real server.

Every message must arrive exactly as with stock ``websockets``: frames of every length class,
text and binary, split at every byte boundary, fragmented messages, pings answered in between,
the closing handshake with its code, and the size limit enforced (1009).  With a handler
(direct dispatch) messages are handed over inside the socket read, in order, and whatever
follows a hand-over (False or an exception) is returned by the next ``recv_batch``.
"""
from __future__ import annotations

import asyncio
import random
import time

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame
from websockets.protocol import State

from alphapulse.exchanges._fastws import FAST, READ_BUFFER, FastClientConnection, FastClientProtocol

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


# ---- recv_batch(handler): direct dispatch from the socket read ------------------------------
def _scripted(*writes: bytes, pause: float = 0.1):  # noqa: ANN202 - a websockets handler
    """A server handler that, for each client message, writes the next chunk of ``writes``
    in one ``transport.write`` (``pause`` later: the client is waiting by then)."""
    async def handler(ws: ServerConnection) -> None:
        for chunk in writes:
            await ws.recv()
            await asyncio.sleep(pause)
            ws.transport.write(chunk)
        await ws.wait_closed()
    return handler


async def _batch(ws: FastClientConnection, handler: object) -> list[tuple[bytes, int]]:
    """recv_batch(handler), failing instead of hanging when a message went missing."""
    return await asyncio.wait_for(ws.recv_batch(handler), 5)  # type: ignore[arg-type]


def _url(server: object) -> str:
    return f"ws://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}"  # type: ignore[attr-defined]


def _payloads(first: int, n: int) -> list[bytes]:
    return [f'{{"seq":{i}}}'.encode() for i in range(first, first + n)]


async def test_handler_runs_inside_the_socket_read_not_in_a_task() -> None:
    sent = _payloads(0, 50)
    calls: list[tuple[bytes, int, object]] = []

    def handler(data: bytes, ts: int) -> bool:
        calls.append((data, ts, asyncio.current_task()))
        return data != sent[-1]

    async with serve(_scripted(_raw(sent)), "127.0.0.1", 0, compression=None) as server:
        async with connect(_url(server), compression=None, max_queue=None,
                           create_connection=FastClientConnection) as ws:
            await ws.send("go")
            assert await _batch(ws, handler) == []   # all handed over, nothing queued
            assert not ws._stamps and not ws.recv_messages.frames.queue
    assert [data for data, _, _ in calls] == sent
    # Called from the transport's read callback (no task is running there), not from the
    # awaiting task after a wake-up: no task step, no loop turn per message.
    assert {task for _, _, task in calls} == {None}
    assert len({ts for _, ts, _ in calls}) == 1        # one TCP write, one socket read


async def test_handler_false_queues_the_rest_of_the_read_for_the_next_call() -> None:
    first, second = _payloads(0, 10), _payloads(10, 5)
    handled: list[tuple[bytes, int]] = []

    def handler(data: bytes, ts: int) -> bool:
        handled.append((data, ts))
        return data not in (first[3], second[-1])      # hand over mid-read, then at the end

    async with serve(_scripted(_raw(first), _raw(second)), "127.0.0.1", 0,
                     compression=None) as server:
        async with connect(_url(server), compression=None, max_queue=None,
                           create_connection=FastClientConnection) as ws:
            await ws.send("go")
            queued = await _batch(ws, handler)
            await ws.send("go")
            assert await _batch(ws, handler) == []
            assert not ws._stamps
    assert [data for data, _ in handled] == first[:4] + second
    assert [data for data, _ in queued] == first[4:]   # in order, none lost, none twice
    read_ts = handled[0][1]
    assert {ts for _, ts in queued} == {read_ts}       # stamped with their socket read


async def test_handler_exception_is_raised_in_the_waiting_task() -> None:
    first, second = _payloads(0, 10), _payloads(10, 3)
    handled: list[bytes] = []

    def handler(data: bytes, ts: int) -> bool:
        handled.append(data)
        if data == first[3]:
            raise RuntimeError("sink bug")
        return data != second[-1]

    async with serve(_scripted(_raw(first), _raw(second)), "127.0.0.1", 0,
                     compression=None) as server:
        async with connect(_url(server), compression=None, max_queue=None,
                           create_connection=FastClientConnection) as ws:
            await ws.send("go")
            with pytest.raises(RuntimeError, match="sink bug"):
                await _batch(ws, handler)
            # Raised once, the connection still open and receiving, nothing left armed.
            assert ws.protocol.state is State.OPEN
            assert ws._handler is None and ws._handler_exc is None
            assert ws.recv_messages.frames.get_waiter is None
            queued = await _batch(ws, handler)
            await ws.send("go")
            assert await _batch(ws, handler) == []
    assert [data for data, _ in queued] == first[4:]
    assert handled == first[:4] + second


async def test_fragmented_message_keeps_its_place_while_the_handler_is_on() -> None:
    raw = (_frame(b"a") + _frame(b"frag-", fin=False) + _frame(b"", opcode=0x9)
           + _frame(b"ment", opcode=0x0) + _frame(b"b") + _frame(b"c"))
    handled: list[bytes] = []

    def handler(data: bytes, ts: int) -> bool:
        handled.append(data)
        return True

    async with serve(_scripted(raw), "127.0.0.1", 0, compression=None) as server:
        async with connect(_url(server), compression=None, max_queue=None,
                           create_connection=FastClientConnection) as ws:
            await ws.send("go")
            batch = await _batch(ws, handler)
    # "b" and "c" came after the fragmented message: they queue behind it, not overtake it.
    assert handled == [b"a"]
    assert [data for data, _ in batch] == [b"frag-ment", b"b", b"c"]


async def test_simple_frames_after_an_empty_buffer_skip_frame_parse(
        monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[tuple[int, bool]] = []                # client side: (opcode, fin)
    original = Frame.parse

    def counting(*args: object, mask: bool, **kw: object):  # noqa: ANN202 - a generator
        frame = yield from original(*args, mask=mask, **kw)
        if not mask:                                   # the server parses masked frames
            parsed.append((frame.opcode.value, frame.fin))
        return frame

    monkeypatch.setattr(Frame, "parse", staticmethod(counting))
    messages = _payloads(0, 30)

    async def handler(ws: ServerConnection) -> None:
        for i, m in enumerate(messages):               # one frame per socket read
            ws.transport.write(_frame(m))
            if i == 10:
                ws.transport.write(_frame(b"hi", opcode=0x9))
            if i == 20:
                ws.transport.write(_frame(b"fr", fin=False) + _frame(b"ag", opcode=0x0))
            await asyncio.sleep(0.005)
        await ws.close()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        got: list[bytes] = []
        async with connect(_url(server), compression=None,
                           create_connection=FastClientConnection) as ws:
            with pytest.raises(ConnectionClosed):
                while True:
                    got += [data for data, _ in await ws.recv_batch()]
    assert got == messages[:21] + [b"frag"] + messages[21:]
    # Only the ping, the fragments and the close went through websockets' parser.
    assert sorted(parsed) == [(0x0, True), (0x1, False), (0x8, True), (0x9, True)]


async def test_messages_larger_than_the_read_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    original = FastClientConnection.buffer_updated

    def counting(self: FastClientConnection, nbytes: int) -> None:
        reads.append(nbytes)
        original(self, nbytes)

    monkeypatch.setattr(FastClientConnection, "buffer_updated", counting)
    rng = random.Random(3)
    messages: list[str | bytes] = [rng.randbytes(READ_BUFFER * 2 + 12345), *MESSAGES[:20],
                                   rng.randbytes(READ_BUFFER - 3), *MESSAGES[20:]]
    async with serve(_split_writer(_raw(messages), 1 << 22), "127.0.0.1", 0,
                     compression=None) as server:
        got, _ = await _collect(_url(server), len(messages), max_size=1 << 21)
    assert got == messages                             # the reused buffer never leaks through
    if type(asyncio.get_running_loop()).__module__.startswith("uvloop"):
        # uvloop reads into its own buffer and calls data_received: it takes the buffered
        # path only for protocols that are not asyncio.Protocol subclasses.
        assert not reads
    else:
        assert len(reads) > 2 and max(reads) <= READ_BUFFER   # recv_into our buffer


@pytest.mark.parametrize("scenario", [
    test_handler_runs_inside_the_socket_read_not_in_a_task,
    test_handler_false_queues_the_rest_of_the_read_for_the_next_call,
    test_handler_exception_is_raised_in_the_waiting_task,
    test_fragmented_message_keeps_its_place_while_the_handler_is_on,
    test_messages_larger_than_the_read_buffer,
], ids=lambda f: f.__name__.removeprefix("test_"))
def test_under_uvloop(scenario: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server runs the collectors on uvloop: its transport calls the BufferedProtocol
    methods and the read callbacks its own way."""
    uvloop = pytest.importorskip("uvloop")
    args = (monkeypatch,) if scenario is test_messages_larger_than_the_read_buffer else ()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario(*args))  # type: ignore[operator]
