"""Direct dispatch's front door (``FastClientConnection.data_received`` ->
``_wsframes.dispatch_frames``): a read's leading simple frames skip websockets entirely, and
every message still arrives once and in order, whatever the split of the stream into reads,
whatever sits between the simple frames, and whenever the handler hands back."""
from __future__ import annotations

import asyncio
import random

import pytest
from test_fastws import _batch, _frame, _scripted, _url
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.protocol import Protocol

from alphapulse.exchanges._fastws import FAST, FastClientConnection

pytestmark = pytest.mark.skipif(not FAST, reason="websockets major version not supported")


def _websockets_reads(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """From now on, every client read that reaches websockets' own parser, in order."""
    fed: list[bytes] = []
    original = Protocol.receive_data

    def counting(self: Protocol, data: bytes) -> None:
        if isinstance(self, ClientProtocol):
            fed.append(bytes(data))
        original(self, data)

    monkeypatch.setattr(Protocol, "receive_data", counting)
    return fed


async def test_simple_frames_never_reach_websockets(monkeypatch: pytest.MonkeyPatch) -> None:

    payloads = [b'{"seq":%d}' % i for i in range(40)]
    first = b"".join(_frame(p) for p in payloads[:20])
    second = b"".join(_frame(p) for p in payloads[20:30])
    ping = _frame(b"hi", 0x9)
    third = b"".join(_frame(p) for p in payloads[30:])
    handled: list[bytes] = []

    def handler(data: bytes, ts: int) -> bool:
        handled.append(data)
        return data not in (payloads[19], payloads[-1])    # the end of each write

    async with serve(_scripted(first, second + ping + third), "127.0.0.1", 0,
                     compression=None) as server:
        async with connect(_url(server), compression=None, max_queue=None,
                           create_connection=FastClientConnection) as ws:
            fed = _websockets_reads(monkeypatch)
            await ws.send("go")
            assert await _batch(ws, handler) == []
            assert fed == []                    # 20 frames: websockets saw none of them
            await ws.send("go")
            assert await _batch(ws, handler) == []
    assert handled == payloads
    # From the ping on, the read went to websockets (which answered it); the frames after
    # the ping were still handed over in order.
    assert fed[:1] == [ping + third]


@pytest.mark.parametrize("cut", [1, 3, 5, 40])    # inside the header, the length, the payload
async def test_a_frame_split_across_reads_is_completed_by_the_front_door(
        monkeypatch: pytest.MonkeyPatch, cut: int) -> None:

    payloads = [b'{"seq":%d,"pad":"%s"}' % (i, b"p" * 150) for i in range(6)]
    raw = b"".join(_frame(p) for p in payloads)
    split = len(_frame(payloads[0])) * 2 + cut              # inside the third frame

    async def writer(ws: ServerConnection) -> None:
        await ws.recv()
        ws.transport.write(raw[:split])
        await asyncio.sleep(0.1)
        ws.transport.write(raw[split:])
        await ws.wait_closed()

    handled: list[bytes] = []

    def handler(data: bytes, ts: int) -> bool:
        handled.append(data)
        return data != payloads[-1]

    async with serve(writer, "127.0.0.1", 0, compression=None) as server:
        async with connect(_url(server), compression=None, max_queue=None,
                           create_connection=FastClientConnection) as ws:
            fed = _websockets_reads(monkeypatch)
            await ws.send("go")
            assert await _batch(ws, handler) == []
            seen_by_websockets = list(fed)
    assert handled == payloads
    # Only the first read's unfinished frame went to websockets' buffer; the second read
    # too only while that frame's length was not known yet (a 4-byte header here).
    partial = raw[len(_frame(payloads[0])) * 2:split]
    assert seen_by_websockets == ([partial] if cut >= 4 else [partial, raw[split:]])


def _traffic(rng: random.Random, n: int) -> tuple[bytes, list[bytes]]:
    """Raw server bytes (simple frames, 16-bit lengths, pings, fragmented messages) and the
    messages a client must end up with, in order."""
    raw, messages = [], []
    for i in range(n):
        roll = rng.random()
        body = b'{"n":%d,"pad":"%s"}' % (i, b"p" * rng.choice([0, 5, 120, 130, 3000]))
        if roll > 0.7:
            # Binary bytes that look like frame headers: a read starting inside this
            # payload must not be mistaken for the start of a frame.
            body += bytes(rng.choice(b"\x81\x82\x03\x7e\x00") for _ in range(rng.randrange(40)))
        if roll < 0.08:
            raw.append(_frame(b"ka", 0x9))
        if roll < 0.15:                         # fragmented: websockets reassembles it
            cut = rng.randrange(len(body))
            raw.append(_frame(body[:cut], 0x1, fin=False) + _frame(body[cut:], 0x0))
        else:
            raw.append(_frame(body, rng.choice([0x1, 0x2])))
        messages.append(body)
    return b"".join(raw), messages


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1500, 1 << 20])
async def test_every_message_once_in_order_at_every_split(chunk: int) -> None:
    rng = random.Random(chunk)
    raw, expected = _traffic(rng, 400)

    async def writer(ws: ServerConnection) -> None:
        for i in range(0, len(raw), chunk):
            ws.transport.write(raw[i:i + chunk])
            if i % (chunk * 8) == 0:
                await asyncio.sleep(0)          # really arrives in many reads
        await ws.close()

    got: list[bytes] = []

    def handler(data: bytes, ts: int) -> bool:
        got.append(data)
        if rng.random() < 0.05:
            raise RuntimeError("sink bug")      # the task sees it and carries on
        return rng.random() > 0.1               # hand back now and then

    async with serve(writer, "127.0.0.1", 0, compression=None) as server:
        async with connect(_url(server), compression=None, max_queue=None,
                           create_connection=FastClientConnection) as ws:
            with pytest.raises(ConnectionClosed):
                while True:
                    try:
                        batch = await asyncio.wait_for(ws.recv_batch(handler), 10)
                    except RuntimeError:
                        continue
                    got += [data for data, _ in batch]
    assert got == expected


@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_every_message_once_in_order_under_uvloop(chunk: int) -> None:
    """uvloop (the server's default loop) hands data_received bytes its own way."""
    uvloop = pytest.importorskip("uvloop")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(test_every_message_once_in_order_at_every_split(chunk))
