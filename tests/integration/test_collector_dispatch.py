"""The collectors' read loop with direct dispatch (``MarketDataCollector._session`` over
``FastClientConnection.recv_batch(handler)``) against the replay servers on loopback.

Most messages are parsed inside the socket read; a resync hands control back to the task, and
what arrives meanwhile queues up and is drained by the task afterwards.  Whatever the path,
every frame the server sent must be recorded and parsed exactly once, in the order sent.
"""
from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from alphapulse.events import Gap
from alphapulse.exchanges import get_collector
from alphapulse.exchanges._fastws import FastClientConnection
from alphapulse.replay import serve
from alphapulse.replay._server import Session

from _collector_helpers import all_books_live, assert_truth, run_until_drained, truth


class _Frames:
    """A recorder stand-in: what the collector recorded, in order."""

    def __init__(self) -> None:
        self.frames: list[tuple[bytes, int]] = []

    def write(self, frame: bytes, ts_recv: int, source: str = "ws") -> None:
        self.frames.append((bytes(frame), ts_recv))


@pytest.mark.parametrize("exchange, capture", [("kraken", "kraken-corrupt"),
                                               ("coinbase", "coinbase-gap")])
async def test_every_frame_once_and_in_order_across_a_resync(
        fixtures_dir: Path, loopback_socket: socket.socket, monkeypatch: pytest.MonkeyPatch,
        exchange: str, capture: str) -> None:
    sent: list[bytes] = []
    server_send = Session.send

    async def send(self: Session, frame: bytes | str) -> None:
        sent.append(frame if isinstance(frame, bytes) else frame.encode())
        await server_send(self, frame)

    monkeypatch.setattr(Session, "send", send)
    batches: list[int] = []                         # sizes of what the task itself drained
    recv_batch = FastClientConnection.recv_batch

    async def counting(self: FastClientConnection, handler: Any = None) -> list:
        batch = await recv_batch(self, handler)
        batches.append(len(batch))
        return batch

    monkeypatch.setattr(FastClientConnection, "recv_batch", counting)

    class SlowResync(get_collector(exchange)):      # type: ignore[misc, valid-type]
        async def resync(self, ws: Any, symbols: dict[str, str]) -> None:
            await asyncio.sleep(0.05)               # the feed goes on: frames queue meanwhile
            await super().resync(ws, symbols)

    recorded = _Frames()
    events: list = []
    async with serve(exchange, fixtures_dir / "generated" / f"{capture}.jsonl", max_rate=True,
                     sock=loopback_socket) as server:
        c = SlowResync(["BTC-USD"], url=server.ws_url, sink=events.append, recorder=recorded,
                       backoff_initial=0.05)
        await run_until_drained(server, c, timeout=60, settle=0.6,
                                live=lambda: all_books_live(c) and not c.parser.pending_resync)
    s = c.stats
    assert s["resyncs"] == 1 and s["snapshots"] == 2 and s["reconnects"] == 0
    assert [e.reason for e in events if isinstance(e, Gap)] == [
        "checksum" if exchange == "kraken" else "sequence"]
    assert max(batches) > 1                         # the resync's backlog came through the task
    frames = [f for f, _ in recorded.frames]
    # Exactly what was sent, in order (a heartbeat sent as the collector stopped may be
    # missing at the end), each parsed once.
    assert frames == sent[:len(frames)] and len(frames) >= len(sent) - 1
    assert s["messages"] == len(frames)
    stamps = [ts for _, ts in recorded.frames]
    assert stamps == sorted(stamps)
    assert c.last_message_ts == stamps[-1] / 1e9
    assert_truth(c, truth(fixtures_dir, capture))
