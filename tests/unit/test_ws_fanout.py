"""The /ws fan-out without a server: pre-encoded frames as a real WebSocket client parses
them, batching, and the slow-client watchdog on the ASGI fallback path (no transport access)."""
from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from websockets.frames import Opcode
from websockets.protocol import Protocol, Side, State

from alphapulse import OrderBook
from alphapulse.events import BookUpdate
from alphapulse.server._ws_conn import Message, text_frame
from alphapulse.server.ws import WsFanout, _Client

CHANNEL = "book:kraken:BTC-USD"


def _parse(data: bytes) -> list[tuple[Opcode, bytes]]:
    # What websockets' own client does with the bytes.
    client = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)
    client.receive_data(data)
    return [(f.opcode, bytes(f.data)) for f in client.events_received()]


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_frames_parse_as_one_message(size: int) -> None:
    payload = b"x" * size
    assert _parse(Message(payload).frame()) == [(Opcode.TEXT, payload)]
    assert _parse(Message(payload, text=False).frame()) == [(Opcode.BINARY, payload)]


def test_batched_queue_is_arrays_of_json_between_binary_frames() -> None:
    from collections import deque
    queue = deque([Message(b'{"a":1}'), Message(b'{"a":2}'), Message(b"\x01", text=False),
                   Message(b'{"a":3}')])
    frames = _parse(WsFanout._batched(queue))
    assert frames == [(Opcode.TEXT, b'[{"a":1},{"a":2}]'), (Opcode.BINARY, b"\x01"),
                      (Opcode.TEXT, b'{"a":3}')]
    assert orjson.loads(frames[0][1]) == [{"a": 1}, {"a": 2}]
    assert text_frame(b"x") == Message(b"x").frame()


class _StuckWs:
    """An ASGI WebSocket whose sends never complete: the client stopped reading."""

    def __init__(self) -> None:
        self.closed: tuple[int, str] | None = None

    async def send(self, message: dict) -> None:
        await asyncio.Event().wait()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


async def test_watchdog_closes_a_stuck_client_on_the_asgi_path() -> None:
    book = OrderBook("BTC-USD", 1, 8, exchange="kraken")
    book.snapshot([("100.0", "1")], [("101.0", "1")])
    fanout = WsFanout(exchanges=["kraken"], symbols=["BTC-USD"], books=lambda e, s: book,
                      slow_client_s=0.3)
    fanout._loop = asyncio.get_running_loop()
    stuck, fine = _Client(_StuckWs(), 4096), _Client(_StuckWs(), 4096)   # type: ignore[arg-type]
    for client in (stuck, fine):
        fanout._clients.add(client)
        client.channels[CHANNEL] = "json"
        fanout._subs.setdefault(CHANNEL, {})[client] = "json"
    stuck.sender = asyncio.create_task(fanout._send_loop(stuck))
    fanout._watch()
    t0 = time.monotonic()
    delta = book.update("bid", "100.0", "2")
    fanout.on_event(BookUpdate("kraken", "BTC-USD", "XBT/USD", delta, 1, 2))
    fine.queue.clear()          # this one "sent" it (no sender task: nothing is pending)
    async with asyncio.timeout(5):
        while not stuck.closing:
            await asyncio.sleep(0.02)
    assert 0.3 <= time.monotonic() - t0 < 1.0
    assert not fine.closing
    assert fanout.stats["deadline_closed"] == fanout.stats["slow_closed"] == 1
    assert "took nothing for" in stuck.close_reason
    assert CHANNEL not in stuck.channels and stuck not in fanout._subs[CHANNEL]
    stuck.sender.cancel()
    if fanout._watch_handle is not None:
        fanout._watch_handle.cancel()
