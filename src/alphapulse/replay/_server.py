"""The fake-exchange machinery shared by every ``replay/<exchange>.py``.

A capture is one market timeline.  The server keeps a *cursor* into it (how far the market has
got) and a *market model* at that cursor (the exchange's view of its books), so that a client
that subscribes late, resubscribes after a checksum failure or reconnects after a drop gets a
fresh snapshot of the market *now*, exactly as from the real exchange, and then the rest of the
capture.  The exchange modules supply three small things:

* ``Market``: the exchange-side state (``apply(index, frame)``, ``copy()``), e.g. books kept
  from the capture's own frames, able to render a snapshot frame;
* ``Session``: one client connection: greeting frame, answers to subscribe messages, which
  capture frames this client gets (``outgoing``), the idle heartbeat;
* ``ReplayExchange``: glue: ``ws_path``, frame times for ``--speed``, REST answers.

Plain ``websockets`` serves both the WebSocket and (through ``process_request``) any REST path,
on the same port.  Fault switches come from :mod:`alphapulse.replay.faults`.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .faults import Faults

__all__ = ["Market", "ReplayExchange", "ReplayServer", "Session"]

log = logging.getLogger("alphapulse.replay")


class Market:
    """Exchange-side state at the cursor.  The default keeps nothing."""

    def apply(self, index: int, frame: bytes) -> None:
        pass

    def copy(self) -> Market:
        return self


class Session:
    """One client connection, from the exchange's side.  Subclasses implement the protocol."""

    def __init__(self, server: ReplayServer, ws: ServerConnection) -> None:
        self.server = server
        self.ws = ws
        self.market: Market = server.market.copy()
        self.cursor = server.position
        self.streaming = False
        self.stalled = False

    async def on_open(self) -> None:
        """Send the greeting (e.g. Kraken's status frame)."""

    async def on_message(self, message: str | bytes) -> None:
        """Answer one client message (subscribe, ping...).  Call ``start_stream()`` once the
        client subscribed to something."""

    def outgoing(self, index: int, frame: bytes) -> Sequence[bytes | str]:
        """What this client receives for capture frame ``index`` (nothing if unsubscribed)."""
        return (frame,)

    def idle_frame(self) -> bytes | str | None:
        """Sent about once a second after the capture ended (the exchange's heartbeat)."""
        return None

    def start_stream(self) -> None:
        if not self.streaming:
            self.streaming = True
            self.server._start_stream(self)

    async def send(self, frame: bytes | str) -> None:
        """Send one text frame (bytes are sent as text, as the exchange does)."""
        self.server.messages_sent += 1
        if isinstance(frame, bytes):
            await self.ws.send(frame, text=True)
        else:
            await self.ws.send(frame)


class ReplayExchange:
    """Per-exchange glue.  ``frames`` are the capture, ``times`` their receive times if known."""

    name: ClassVar[str] = ""
    ws_path: ClassVar[str] = "/"
    session_class: ClassVar[type[Session]] = Session
    market_class: ClassVar[type[Market]] = Market

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames

    def new_market(self) -> Market:
        return self.market_class()

    def frame_time(self, index: int, frame: bytes) -> float | None:
        """The exchange timestamp of a frame in seconds, for ``--speed`` pacing (None: unknown)."""
        return None

    def http(self, path: str, query: dict[str, str],
             market: Market) -> tuple[int, dict[str, str], bytes] | None:
        """Answer a REST request (status, headers, body), or None for 404."""
        return None


class ReplayServer:
    """Serves one capture as a fake exchange on loopback.  Use ``async with`` or start/close."""

    def __init__(self, exchange: ReplayExchange, *, host: str = "127.0.0.1", port: int = 0,
                 speed: float | None = None, max_rate: bool = False,
                 faults: Faults | None = None, sock: socket.socket | None = None,
                 times: Sequence[int | None] | None = None, grace: float = 0.05,
                 heartbeat_interval: float = 1.0) -> None:
        if speed is not None and speed <= 0:
            raise ValueError("speed must be > 0")
        self.exchange = exchange
        self.frames = exchange.frames
        self.host, self.port, self.sock = host, port, sock
        self.speed = 1.0 if speed is None else speed
        self.max_rate = max_rate
        self.faults = faults or Faults()
        self.grace, self.heartbeat_interval = grace, heartbeat_interval
        self.market: Market = exchange.new_market()
        self.position = 0
        self.fired: set[tuple[str, int]] = set()
        self.connections = 0
        self.frames_sent = 0            # capture frames sent (all connections)
        self.messages_sent = 0          # everything sent: greetings, acks, snapshots, frames
        self.rest_requests = 0
        self.sessions: set[Session] = set()
        self._times = self._frame_times(times)
        self._server: Server | None = None
        self._done = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- lifecycle ------------------------------------------------------------------------
    async def start(self) -> ReplayServer:
        kwargs: dict[str, Any] = dict(process_request=self._process_request, compression=None,
                                      max_size=1 << 20, ping_interval=20, ping_timeout=20)
        if self.sock is not None:
            self._server = await serve(self._handler, sock=self.sock, **kwargs)
        else:
            self._server = await serve(self._handler, self.host, self.port, **kwargs)
        sockname = next(iter(self._server.sockets)).getsockname()
        self.host, self.port = sockname[0], sockname[1]
        if not self.frames:
            self._done.set()
        return self

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for session in list(self.sessions):
            if session.stalled:              # it reads nothing: a close handshake cannot finish
                session.ws.transport.abort()
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2)
            except (TimeoutError, asyncio.TimeoutError):
                for session in list(self.sessions):
                    session.ws.transport.abort()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def serve_forever(self) -> None:
        assert self._server is not None, "start() first"
        await self._server.serve_forever()

    async def __aenter__(self) -> ReplayServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def wait_done(self, timeout: float | None = None) -> None:
        """Until every capture frame has been served (to some connection)."""
        await asyncio.wait_for(self._done.wait(), timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}{self.exchange.ws_path}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ---- HTTP -----------------------------------------------------------------------------
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        self.rest_requests += 1
        url = urlsplit(request.path)
        query = dict(parse_qsl(url.query))
        n = self.rest_requests
        if n <= len(self.faults.rest_errors):
            status = self.faults.rest_errors[n - 1]
            body = b'{"code":-1003,"msg":"Too many requests; replay fault %d."}' % status
            return self._response(connection, status, {"Retry-After": str(self.faults.retry_after)},
                                  body)
        answer = self.exchange.http(url.path, query, self.market)
        if answer is None:
            return self._response(connection, 404, {}, b'{"code":-1,"msg":"not found"}')
        status, headers, body = answer
        return self._response(connection, status, headers, body)

    @staticmethod
    def _response(connection: ServerConnection, status: int, headers: dict[str, str],
                  body: bytes) -> Response:
        resp = connection.respond(status, "")
        resp.body = body
        resp.headers = Headers([(k, v) for k, v in resp.headers.raw_items()
                                if k.lower() not in ("content-length", "content-type")])
        resp.headers["Content-Type"] = "application/json"
        resp.headers["Content-Length"] = str(len(body))
        for k, v in headers.items():
            resp.headers[k] = v
        return resp

    # ---- WebSocket ------------------------------------------------------------------------
    async def _handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        session = self.exchange.session_class(self, ws)
        self.sessions.add(session)
        try:
            await session.on_open()
            async for message in ws:
                await session.on_message(message)
        except ConnectionClosed:
            pass
        finally:
            self.sessions.discard(session)
            lose = self.faults.lose_on_disconnect
            if lose and self.position < len(self.frames) and session.streaming:
                # The market moves on while the client is away: those frames are lost to it.
                end = min(len(self.frames), self.position + lose)
                for i in range(self.position, end):
                    self.market.apply(i, self.frames[i])
                self.position = end
                if end == len(self.frames):
                    self._done.set()

    def _start_stream(self, session: Session) -> None:
        task = asyncio.get_running_loop().create_task(self._stream(session))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _frame_times(self, times: Sequence[int | None] | None) -> list[float | None]:
        out: list[float | None] = []
        last: float | None = None
        for i, frame in enumerate(self.frames):
            t: float | None = None
            if times is not None and times[i] is not None:
                t = times[i] / 1e9  # type: ignore[operator]
            if t is None:
                try:
                    t = self.exchange.frame_time(i, frame)
                except Exception:  # noqa: BLE001 - a capture's odd frame must not stop replay
                    t = None
            last = t if t is not None else last
            out.append(last)
        return out

    def _sent(self, session: Session, index: int, out: Sequence[bytes | str]) -> None:
        """What ``session`` was sent for capture frame ``index`` (a hook; the paced server
        keeps it to loop the capture)."""

    async def _after_capture(self, session: Session) -> None:
        """The capture is over for ``session``: stay open and idle, as the exchange does."""
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            idle = session.idle_frame()
            if idle is not None:
                await session.send(idle)

    async def _drop(self, session: Session) -> None:
        if self.faults.abrupt:
            session.ws.transport.abort()
        else:
            await session.ws.close(1001, "replay fault: going away")

    async def _stream(self, session: Session) -> None:
        ws, frames, faults, fired = session.ws, self.frames, self.faults, self.fired
        n = len(frames)
        try:
            await asyncio.sleep(self.grace)   # let the client's other subscribe messages land
            held: Sequence[bytes | str] | None = None
            wall0, t0 = time.monotonic(), None
            sent_since_yield = 0
            while session.cursor < n:
                i = session.cursor
                if (i in faults.drop_connection_at and ("drop", i) not in fired) or faults.roll():
                    fired.add(("drop", i))
                    await self._drop(session)
                    return
                if faults.stall_at == i and ("stall", i) not in fired:
                    fired.add(("stall", i))
                    session.stalled = True
                    ws.transport.pause_reading()     # pings go unanswered from now on
                    await ws.wait_closed()
                    return
                if faults.silent_at == i and ("silent", i) not in fired:
                    fired.add(("silent", i))
                    if faults.silent_for is None:
                        await ws.wait_closed()
                        return
                    await asyncio.sleep(faults.silent_for)
                    wall0, t0 = time.monotonic(), None
                if not self.max_rate:
                    t = self._times[i]
                    if t is not None:
                        if t0 is None:
                            t0, wall0 = t, time.monotonic()
                        delay = wall0 + (t - t0) / self.speed - time.monotonic()
                        if delay > 0:
                            await asyncio.sleep(delay)
                frame = frames[i]
                session.market.apply(i, frame)
                session.cursor = i + 1
                if session.cursor > self.position:
                    self.position, self.market = session.cursor, session.market
                if session.cursor == n:
                    self._done.set()
                if i in faults.drop_messages and ("dropmsg", i) not in fired:
                    fired.add(("dropmsg", i))
                    continue
                out = session.outgoing(i, frame)
                self._sent(session, i, out)
                if i in faults.reorder_messages and ("reorder", i) not in fired and i + 1 < n:
                    fired.add(("reorder", i))
                    held = out
                    continue
                if i in faults.duplicate_messages and ("dup", i) not in fired:
                    fired.add(("dup", i))
                    out = [*out, *out]
                for item in out:
                    await session.send(item)
                    self.frames_sent += 1
                if held is not None:
                    for item in held:
                        await session.send(item)
                        self.frames_sent += 1
                    held = None
                sent_since_yield += 1
                if sent_since_yield >= 64:   # stay fair to clients in the same event loop
                    sent_since_yield = 0
                    await asyncio.sleep(0)
            await self._after_capture(session)
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            log.exception("replay stream failed")
            with contextlib.suppress(Exception):
                await ws.close(1011, "replay error")
