"""One ``/ws`` client's bounded send queue and the writer that empties it.

A mixin of :class:`alphapulse.server.ws.WsFanout`.  :meth:`SendQueueMixin._push` appends a
shared, pre-encoded message to the client's queue (O(1), no await) and schedules one loop
callback, :meth:`SendQueueMixin._flush`, for everything fanned out until the loop comes round:
it writes each client's whole queue to its transport in one ``write`` (:mod:`._ws_conn`).  The
client's own task (:meth:`SendQueueMixin._send_loop`) only takes over while its transport is
paused, sends the close frame, and drives the ASGI ``send`` when there is no transport access.
"""
from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from ._ws_conn import Conn, Message, text_frame

CLOSE_POLICY = 1008
CLOSE_TIMEOUT_S = 5.0
MAX_BATCH = 1000
# A full queue closes a client only if its socket is full too (the sender is stuck in a send):
# a burst the loop has not yet had time to send (a collector parsing a backlog of frames) is
# not the client's fault.  Past this multiple of the limit it is closed regardless (memory).
HARD_LIMIT_FACTOR = 8
_NO_CONN = Conn()


class _Client:
    """One connection: its queue, its subscriptions and the task that drains the queue."""

    __slots__ = ("ws", "conn", "queue", "limit", "wake", "channels", "closing", "close_reason",
                 "sent", "batch", "in_send", "pending", "stuck_since", "behind_since", "acked",
                 "sender", "slow")

    def __init__(self, ws: WebSocket, limit: int, conn: Conn = _NO_CONN) -> None:
        self.ws = ws
        self.conn = conn
        self.queue: deque[Message] = deque()
        self.limit = limit
        self.wake = asyncio.Event()
        self.channels: dict[str, str] = {}     # channel -> encoding
        self.closing = False
        self.close_reason = ""
        self.sent = 0
        self.batch = False     # JSON messages queued together go out as one array frame
        self.in_send = False   # the transport is paused (or an ASGI send is suspended)
        self.pending = False   # in the fan-out's list of clients to flush
        self.stuck_since: float | None = None   # first tick that saw data waiting, none taken
        self.behind_since: float | None = None  # first tick of the current undrained stretch
        self.acked = -1                          # the kernel's acked-byte count at the last tick
        self.sender: asyncio.Task[None] | None = None
        self.slow = False      # closed by the server for being too slow


class SendQueueMixin:
    """The queue -> socket half of the fan-out; the host class provides the attributes below."""

    _loop: asyncio.AbstractEventLoop | None
    _dirty: list[_Client]
    _flush_handle: asyncio.Handle | None
    _metrics: Any
    _out_counter: Any
    stats: dict[str, int]

    if TYPE_CHECKING:   # provided by SlowClientsMixin
        def _overflow(self, client: _Client) -> None: ...

    def _push(self, client: _Client, msg: Message) -> bool:
        """Queue ``msg`` for ``client``; False when the queue is full (the caller drops it)."""
        queue = client.queue
        n = len(queue)
        if n >= client.limit and (client.in_send or n >= client.limit * HARD_LIMIT_FACTOR):
            return False
        queue.append(msg)
        if not client.conn.fast:
            client.wake.set()
        elif not client.pending:
            client.pending = True
            self._dirty.append(client)
            if self._flush_handle is None:
                # One callback for everything fanned out until the loop comes round: a burst of
                # events reaches each client in one write, and the hub never waits for a socket.
                self._flush_handle = self._loop.call_soon(self._flush)
        return True

    def _reply(self, client: _Client, obj: dict[str, Any]) -> None:
        self._push_msg(client, Message(orjson.dumps(obj)))

    def _push_msg(self, client: _Client, msg: Message) -> None:
        """Queue a message for one client (replies, snapshots); full queue: the client is closed."""
        if not client.closing and not self._push(client, msg):
            self._overflow(client)

    def _flush(self) -> None:
        self._flush_handle = None
        dirty, self._dirty = self._dirty, []
        sent = 0
        for client in dirty:
            client.pending = False
            if not client.closing and not client.in_send:
                sent += self._write(client)
        if sent:
            self._count(sent)

    def _write(self, client: _Client) -> int:
        """Everything queued for a fast-path client, in one transport write; messages written."""
        conn = client.conn
        queue = client.queue
        if not queue:
            return 0
        ready = conn.ready()
        if ready == 0:
            # Above the transport's high-water mark: the client's task waits for it to resume.
            client.in_send = True
            client.wake.set()
            return 0
        if ready < 0:
            queue.clear()           # closing: the endpoint is about to end
            return 0
        n = len(queue)
        if client.batch and n > 1:
            data = self._batched(queue)
        elif n == 1:
            data = queue[0].frame()
        else:
            data = b"".join([m.frame() for m in queue])
        queue.clear()
        conn.write(data)
        client.sent += n
        return n

    @staticmethod
    def _batched(queue: deque[Message]) -> bytes:
        """Runs of JSON messages as array frames (at most MAX_BATCH each); binary as they are."""
        frames: list[bytes] = []
        run: list[bytes] = []
        for msg in queue:
            if msg.text:
                run.append(msg.payload)
                if len(run) < MAX_BATCH:
                    continue
            if run:
                frames.append(text_frame(b"[" + b",".join(run) + b"]") if len(run) > 1
                              else text_frame(run[0]))
                run = []
            if not msg.text:
                frames.append(msg.frame())
        if run:
            frames.append(text_frame(b"[" + b",".join(run) + b"]") if len(run) > 1
                          else text_frame(run[0]))
        return b"".join(frames)

    def _count(self, n: int) -> None:
        # Counted once per flush: a Prometheus inc per message costs as much as the send itself.
        self.stats["messages_out"] += n
        if self._metrics is not None:
            self._out_counter.inc(n)

    async def _send_loop(self, client: _Client) -> None:
        """Per-client task: closes, and sends whatever the flush callback could not."""
        conn = client.conn
        queue = client.queue
        try:
            while True:
                if client.closing:
                    if not conn.fast:
                        # The close frame may wait behind a full socket buffer; bound the wait.
                        await asyncio.wait_for(
                            client.ws.close(CLOSE_POLICY, client.close_reason[:120]),
                            CLOSE_TIMEOUT_S)
                    return
                if queue:
                    if not conn.fast:
                        await self._send_asgi(client)
                        continue
                    if not conn.writable():
                        client.in_send = True
                        await conn.wait_writable()
                    client.in_send = False
                    sent = self._write(client)
                    if sent:
                        self._count(sent)
                    elif queue and not conn.open():
                        queue.clear()
                    continue
                client.wake.clear()
                await client.wake.wait()
        except (WebSocketDisconnect, RuntimeError, OSError, asyncio.TimeoutError):
            # Disconnected or the close timed out; the endpoint cleans up.
            client.closing = True

    async def _send_asgi(self, client: _Client) -> None:
        """Drain the queue through the ASGI ``send`` (no transport access)."""
        ws, queue = client.ws, client.queue
        sent = 0
        while queue:
            msg = queue.popleft()
            n = 1
            if msg.text:
                payload = msg.payload
                if client.batch and queue and queue[0].text:
                    # Everything JSON that is waiting, as one frame.
                    parts = [payload]
                    while queue and queue[0].text and len(parts) < MAX_BATCH:
                        parts.append(queue.popleft().payload)
                    payload = b"[" + b",".join(parts) + b"]"
                    n = len(parts)
                client.in_send = True
                await ws.send({"type": "websocket.send", "text": payload.decode()})
            else:
                client.in_send = True
                await ws.send({"type": "websocket.send", "bytes": msg.payload})
            client.in_send = False
            sent += n
            client.sent += n
            if sent >= 64:
                self._count(sent)
                sent = 0
                await asyncio.sleep(0)   # fairness: a long backlog must not hog the loop
        if sent:
            self._count(sent)
