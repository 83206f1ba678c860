"""``/ws``: channel subscriptions with per-client bounded send queues and a slow-client deadline.

Protocol (docs/websocket.md has the full text and a client):

* client -> server, JSON text frames:
  ``{"op": "subscribe", "channels": [...], "encoding": "json" | "binary"}``,
  ``{"op": "unsubscribe", "channels": [...]}``, ``{"op": "snapshot", "channel": "book:..."}``,
  ``{"op": "options", "batch": true}`` (or ``/ws?batch=1``), ``{"op": "ping"}``
  (handled by :class:`._ws_control.ControlMixin`).
* channels: ``book:<exchange>:<symbol>``, ``trades:<exchange>:<symbol>``, ``arbitrage:<symbol>``,
  ``bbo:<symbol>``.
* server -> client: ``subscribed`` / ``unsubscribed`` / ``error`` / ``pong`` acknowledgements, and
  per channel ``snapshot`` then ``delta`` messages (each with the book's ``sequence``; a delta
  always carries the previous message's sequence + 1), ``gap``, ``trade``, ``arbitrage``, ``bbo``.
  With ``"encoding": "binary"`` book snapshots and deltas go as binary frames: the
  :mod:`alphapulse.wire` record (``wire.decode(frame)`` gives the BookSnapshot/BookUpdate back,
  the same bytes strategies read from the rings); everything else stays JSON.

Fan-out never blocks the hub: :meth:`WsFanout.on_event` serialises (and frames) each event once
per encoding and appends the shared message to every subscribed client's queue: O(1) per client,
no await.  One loop callback per burst then writes each client's queue to its transport in one
``write`` (:mod:`._ws_conn`); a per-client task only takes over while that client's transport is
paused.  A client is dropped from every channel at once and closed with 1008 when its queue
overflows, or when it has taken nothing of what waits for it for ``slow_client_s`` seconds (the
watchdog); the others never notice.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from .._book import OrderBook
from .. import wire
from ..events import BookSnapshot, BookUpdate, Gap, Trade
from ._ws_conn import Conn, Message, text_frame
from ._ws_control import (MAX_CHANNELS_PER_CLIENT, MAX_CLIENT_MESSAGE, ControlMixin,
                          book_message)

__all__ = ["WsFanout", "book_message", "CLOSE_POLICY", "MAX_CLIENT_MESSAGE",
           "MAX_CHANNELS_PER_CLIENT", "SLOW_CLIENT_S"]

log = logging.getLogger(__name__)

CLOSE_POLICY = 1008
CLOSE_TIMEOUT_S = 5.0
# A client closed for being slow gets its backlog then the 1008 close frame if it reads again
# within this long; then the connection is aborted (what it pins in the kernel is freed).
ABORT_AFTER_S = 30.0
MAX_BATCH = 1000
# A full queue closes a client only if its socket is full too (the sender is stuck in a send):
# a burst the loop has not yet had time to send (a collector parsing a backlog of frames) is
# not the client's fault.  Past this multiple of the limit it is closed regardless (memory).
HARD_LIMIT_FACTOR = 8
SLOW_CLIENT_S = 2.0          # default deadline: data waiting, none of it taken for this long
# A client that reads, but never catches up, is closed once it has been behind (socket not
# drained at any watchdog tick) for this many deadlines.
BEHIND_FACTOR = 4
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


class WsFanout(ControlMixin):
    """The WebSocket side of the hub: a subscriber (``on_event``) and the ``/ws`` endpoint.

    ``slow_client_s``: a client that has had data waiting (bytes we gave it still in the
    transport buffer or unsent in the kernel) and has not taken any of it (the kernel's count of
    acknowledged bytes did not move) for this long is closed with 1008, whatever the traffic
    level; so is one that reads but has stayed behind for ``BEHIND_FACTOR`` times as long.
    Without transport access (another ASGI server) "behind" is a non-empty queue or a
    suspended send, and the first rule applies to it."""

    def __init__(self, *, exchanges: Iterable[str], symbols: Iterable[str],
                 books: Callable[[str, str], OrderBook | None], queue_size: int = 4096,
                 metrics: Any = None, bbo: Callable[[str], dict | None] | None = None,
                 slow_client_s: float = SLOW_CLIENT_S) -> None:
        self._exchanges = tuple(exchanges)
        self._symbols = tuple(symbols)
        self._books = books
        self._bbo = bbo
        self._queue_size = queue_size
        self._metrics = metrics
        self._slow_s = slow_client_s
        # A tick costs ~2 µs per client (buffer size + one ioctl) and stalls the loop that
        # long: 4 a second keeps it under 0.5 % of a core with 500 clients; detection lands
        # within two ticks of the deadline.  (10 a second measured a few ms worse p99.)
        self._tick_s = max(0.02, min(0.25, slow_client_s / 8))
        self._subs: dict[str, dict[_Client, str]] = {}
        self._clients: set[_Client] = set()
        self._last_bbo: dict[str, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dirty: list[_Client] = []
        self._flush_handle: asyncio.Handle | None = None
        self._watch_handle: asyncio.TimerHandle | None = None
        # channel -> (book, sequence, snapshot message): subscribers at the same sequence share
        # one encoding (500 clients connecting at once would otherwise build 500 copies).
        self._snapshot_cache: dict[str, tuple[Any, int, Message]] = {}
        self.stats = {"clients": 0, "messages_out": 0, "messages_in": 0, "overflow_closed": 0,
                      "deadline_closed": 0, "slow_closed": 0, "connections": 0}
        if metrics is not None:
            self._out_counter = metrics.websocket_messages.labels(direction="out")
            self._in_counter = metrics.websocket_messages.labels(direction="in")

    def _bbo_of(self, symbol: str) -> dict | None:
        return self._bbo(symbol) if self._bbo is not None else None

    # --- hub subscriber -----------------------------------------------------------------------

    def on_event(self, event: Any) -> None:
        """Serialise ``event`` once per encoding and enqueue it for every subscriber."""
        if not self._subs:
            return
        if isinstance(event, BookUpdate | BookSnapshot):
            channel = f"book:{event.exchange}:{event.symbol}"
            targets = self._subs.get(channel)
            if targets:
                self._fan(targets, lambda: orjson.dumps(book_message(
                    channel, event.exchange, event.symbol, event.delta, event.ts_event,
                    event.ts_recv)), lambda: wire.encode(event, time.time_ns()))
            self._maybe_bbo(event.symbol)
        elif isinstance(event, Trade):
            channel = f"trades:{event.exchange}:{event.symbol}"
            targets = self._subs.get(channel)
            if targets:
                self._fan(targets, lambda: orjson.dumps({
                    "type": "trade", "channel": channel, "exchange": event.exchange,
                    "symbol": event.symbol, "price": event.price, "size": event.size,
                    "side": event.side, "trade_id": event.trade_id,
                    "ts_event": event.ts_event, "ts_recv": event.ts_recv}), None)
        elif isinstance(event, Gap):
            symbols = (event.symbol,) if event.symbol else self._symbols
            for sym in symbols:
                channel = f"book:{event.exchange}:{sym}"
                targets = self._subs.get(channel)
                if targets:
                    self._fan(targets, lambda c=channel, s=sym: orjson.dumps({
                        "type": "gap", "channel": c, "exchange": event.exchange, "symbol": s,
                        "reason": event.reason, "detail": event.detail, "missed": event.missed,
                        "ts_recv": event.ts_recv}), None)

    def on_opportunity(self, symbol: str, payload: dict[str, Any]) -> None:
        """Publish an arbitrage opportunity (opened/closed) on ``arbitrage:<symbol>``."""
        channel = f"arbitrage:{symbol}"
        targets = self._subs.get(channel)
        if targets:
            self._fan(targets, lambda: orjson.dumps(
                {"type": "arbitrage", "channel": channel, **payload},
                option=orjson.OPT_NON_STR_KEYS), None)

    def _maybe_bbo(self, symbol: str) -> None:
        channel = f"bbo:{symbol}"
        targets = self._subs.get(channel)
        if not targets or self._bbo is None:
            return
        bbo = self._bbo(symbol)
        if bbo is None:
            return
        # Ages change on every call; only a new best bid or offer is news.
        top = (bbo.get("bid"), bbo.get("ask"))
        if top == self._last_bbo.get(symbol):
            return
        self._last_bbo[symbol] = top
        self._fan(targets, lambda: orjson.dumps({"type": "bbo", "channel": channel, **bbo},
                                                default=str), None)

    def _fan(self, targets: dict[_Client, str], as_json: Callable[[], bytes],
             as_binary: Callable[[], bytes] | None) -> None:
        text: Message | None = None
        data: Message | None = None
        overflowed = None
        for client, encoding in targets.items():
            if encoding == "binary" and as_binary is not None:
                if data is None:
                    data = Message(as_binary(), False)
                msg = data
            else:
                if text is None:
                    text = Message(as_json())
                msg = text
            if not self._push(client, msg):
                overflowed = overflowed or []
                overflowed.append(client)
        if overflowed:
            for client in overflowed:     # after the loop: this drops them from ``targets``
                self._overflow(client)

    # --- queue -> socket ----------------------------------------------------------------------

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

    # --- slow clients -------------------------------------------------------------------------

    def _overflow(self, client: _Client) -> None:
        """Drop a client whose queue is full: out of every channel now, closed with 1008."""
        if client.closing:
            return
        self.stats["overflow_closed"] += 1
        self._close_slow(client, f"send queue overflow ({client.limit} messages): "
                                 f"client too slow")

    def _watch(self) -> None:
        """Watchdog tick: close every client that stopped taking data, or stays behind."""
        self._watch_handle = None
        now = time.monotonic()
        late = []
        for client in self._clients:
            if client.closing:
                continue
            conn = client.conn
            if conn.fast:
                if not conn.open():      # closed by the peer: the endpoint is ending it
                    continue
                backlog = conn.backlog()
                drained = backlog == 0
            else:
                backlog = 0
                drained = not client.queue and not client.in_send
            if drained:
                # The common case, and the cheap one: no TCP_INFO query.
                client.stuck_since = client.behind_since = None
                continue
            acked = conn.acked() if conn.fast else -1
            if client.behind_since is None:
                # First tick behind: counted as stuck from now until a later tick sees progress.
                client.behind_since = client.stuck_since = now
            elif acked >= 0 and acked != client.acked:
                client.stuck_since = None
            elif client.stuck_since is None:
                client.stuck_since = now
            client.acked = acked
            stuck = now - client.stuck_since if client.stuck_since is not None else 0.0
            behind = now - client.behind_since
            if stuck >= self._slow_s:
                late.append((client, f"took nothing for {stuck:.1f} s", backlog))
            elif behind >= self._slow_s * BEHIND_FACTOR:
                late.append((client, f"not drained for {behind:.1f} s", backlog))
        for client, what, backlog in late:
            self.stats["deadline_closed"] += 1
            self._close_slow(client, f"client too slow: {what}, {len(client.queue)} messages "
                                     f"dropped, {backlog // 1024} KiB unsent")
        if self._clients and self._loop is not None and not self._loop.is_closed():
            self._watch_handle = self._loop.call_later(self._tick_s, self._watch)

    def _close_slow(self, client: _Client, reason: str) -> None:
        """Out of every channel now; closed with 1008 and ``reason`` without waiting for it."""
        self._drop_subscriptions(client)
        client.queue.clear()
        client.closing = True
        client.slow = True
        client.close_reason = reason
        self.stats["slow_closed"] += 1
        if self._metrics is not None:
            self._metrics.websocket_disconnects.labels(reason="slow_client").inc()
        log.info("ws client closed (1008): %s", reason)
        if client.conn.fast:
            # The close frame goes behind what the transport holds; the sender may be parked on
            # a paused transport that will never resume, so it is cancelled, not woken.
            client.conn.close_now(CLOSE_POLICY, reason[:120], ABORT_AFTER_S)
            if client.sender is not None:
                client.sender.cancel()
        else:
            client.wake.set()

    # --- the endpoint -------------------------------------------------------------------------

    async def endpoint(self, websocket: WebSocket) -> None:
        """The ``/ws`` handler: accept, then read control messages while a task sends."""
        await websocket.accept()
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        client = _Client(websocket, self._queue_size, Conn.of_current_task())
        client.batch = websocket.query_params.get("batch") in ("1", "true")
        self._clients.add(client)
        if self._watch_handle is None:
            self._watch_handle = self._loop.call_later(self._tick_s, self._watch)
        self.stats["connections"] += 1
        self.stats["clients"] = len(self._clients)
        if self._metrics is not None:
            self._metrics.websocket_clients.set(len(self._clients))
        sender = client.sender = asyncio.create_task(self._send_loop(client))
        try:
            while not client.closing:
                receive = asyncio.ensure_future(websocket.receive())
                done, _ = await asyncio.wait({receive, sender}, return_when=asyncio.FIRST_COMPLETED)
                if receive not in done:
                    receive.cancel()
                    break
                message = receive.result()
                if message["type"] == "websocket.disconnect":
                    break
                self._on_client_message(client, message.get("text") or message.get("bytes"))
        except WebSocketDisconnect:
            pass
        finally:
            self._drop_subscriptions(client)
            if not sender.done():
                sender.cancel()
            try:
                await sender
            except (asyncio.CancelledError, Exception):
                pass
            self._clients.discard(client)
            self.stats["clients"] = len(self._clients)
            if self._metrics is not None:
                self._metrics.websocket_clients.set(len(self._clients))
                if not client.slow:
                    self._metrics.websocket_disconnects.labels(reason="client").inc()

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
