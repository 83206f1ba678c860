"""The connection underneath a ``/ws`` client: pre-encoded frames, backlog, a close that cannot hang.

Starlette hands :mod:`alphapulse.server.ws` an ASGI ``WebSocket``; every ``send`` goes through
the ASGI send chain, the uvicorn protocol and the ``websockets`` state machine (~15 µs a message
in CPython).  With 500 clients that is 7 ms of CPU per market-data message, before anything
reaches a socket.  A server-to-client data frame is the same bytes for every client (servers do
not mask), so the fan-out encodes each message once, frames it once (:func:`text_frame`), and
writes the frame to each client's asyncio transport directly: one ``transport.write`` per client
per loop iteration, whatever the number of messages waiting.

That needs uvicorn's ``websockets-sansio`` protocol object (the default with ``websockets``
installed), found from the task running the endpoint.  Anything else (another server, another
protocol implementation, Starlette's TestClient) gets ``fast = False`` and the fan-out keeps
using the ASGI ``send`` path: slower, same behaviour.

The same access answers the questions the slow-client watchdog asks: has this client taken
everything we gave it, and is it taking anything at all?  A client that stops reading is
invisible for a while: first its own kernel receive buffer fills, then our kernel send buffer,
then the transport's user-space buffer.  :meth:`Conn.backlog` is the transport buffer plus the
bytes the kernel holds but could not send yet (``SIOCOUTQNSD``: the peer's receive window is
closed); on a healthy connection both are zero almost always, on a stalled one they only grow.
:meth:`Conn.acked` is the kernel's count of bytes the peer acknowledged: it stops moving the
moment a stalled client's window closes, whatever the traffic.
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import socket
import struct
import sys
from typing import Any

from websockets.protocol import Protocol, State

log = logging.getLogger(__name__)

# Linux <linux/sockios.h>: bytes in the send queue not yet sent (SIOCOUTQ - in flight).
SIOCOUTQNSD = 0x894B
_HAVE_IOCTL = sys.platform.startswith("linux")
_INT = struct.Struct("i")
# Linux struct tcp_info: 8 one-byte fields, 24 u32, pacing_rate, max_pacing_rate, bytes_acked.
_TCP_INFO_LEN = 128
_BYTES_ACKED = struct.Struct("=Q")
_BYTES_ACKED_AT = 120


def _frame(first: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return bytes((first, 126)) + n.to_bytes(2, "big") + payload
    return bytes((first, 127)) + n.to_bytes(8, "big") + payload


def text_frame(payload: bytes) -> bytes:
    """A complete, unmasked, unfragmented text frame (RFC 6455 §5.2) holding ``payload``."""
    return _frame(0x81, payload)


class Message:
    """One outgoing message, encoded once and shared by every client it goes to."""

    __slots__ = ("payload", "text", "_frame")

    def __init__(self, payload: bytes, text: bool = True) -> None:
        self.payload = payload
        self.text = text
        self._frame: bytes | None = None

    def frame(self) -> bytes:
        """The complete WebSocket frame, built by the first client that needs it."""
        frame = self._frame
        if frame is None:
            frame = self._frame = _frame(0x81 if self.text else 0x82, self.payload)
        return frame


def _uvicorn_protocol() -> Any:
    """The uvicorn protocol whose ``run_asgi`` task is running us, or None.

    uvicorn does not put its transport in the ASGI scope; the endpoint runs inside the task
    ``run_asgi`` created, whose outermost coroutine frame has the protocol as ``self``."""
    task = asyncio.current_task()
    coro = task.get_coro() if task is not None else None
    frame = getattr(coro, "cr_frame", None)
    if frame is None or getattr(coro, "__qualname__", "").rsplit(".", 1)[-1] != "run_asgi":
        return None
    return frame.f_locals.get("self")


class Conn:
    """Direct access to one client's transport, when the server is uvicorn + websockets-sansio.

    Only ever used from the event loop thread.  ``fast`` False: nothing here is usable and
    every method degrades to "unknown" (0 backlog, writable)."""

    __slots__ = ("fast", "transport", "_proto", "_ws", "_fd")

    def __init__(self, proto: Any = None) -> None:
        self.fast = False
        self.transport: Any = None
        self._proto: Any = None
        self._ws: Protocol | None = None
        self._fd = -1
        if proto is None:
            return
        transport = getattr(proto, "transport", None)
        conn = getattr(proto, "conn", None)
        if (transport is None or not isinstance(conn, Protocol)
                or not isinstance(getattr(proto, "writable", None), asyncio.Event)
                or not hasattr(proto, "close_sent") or not hasattr(proto, "close_timer")):
            return
        self._proto, self._ws, self.transport = proto, conn, transport
        sock = transport.get_extra_info("socket")
        self._fd = sock.fileno() if sock is not None and _HAVE_IOCTL else -1
        self.fast = True

    @classmethod
    def of_current_task(cls) -> Conn:
        """The connection of the uvicorn task running the caller (``fast`` False if none)."""
        return cls(_uvicorn_protocol())

    # --- state ------------------------------------------------------------------------------

    def open(self) -> bool:
        """True while data frames may still be written (no close sent or received)."""
        return (self._ws is not None and self._ws.state is State.OPEN
                and not self._proto.close_sent and not self.transport.is_closing())

    def writable(self) -> bool:
        """False while the transport is paused (its buffer is above the high-water mark)."""
        return self._proto is None or self._proto.writable.is_set()

    def ready(self) -> int:
        """1: write now; 0: paused (wait for :meth:`wait_writable`); -1: closing or closed.

        One call on the fan-out's per-client path instead of :meth:`open` + :meth:`writable`."""
        proto = self._proto
        if proto.close_sent or self._ws.state is not State.OPEN or self.transport.is_closing():
            return -1
        return 1 if proto.writable.is_set() else 0

    async def wait_writable(self) -> None:
        """Until the transport resumes (or the connection is lost: uvicorn sets it then too)."""
        if self._proto is not None:
            await self._proto.writable.wait()

    def kernel_unsent(self) -> int:
        """Bytes in the kernel send queue not yet sent: the peer's window is closed."""
        if self._fd < 0:
            return 0
        try:
            return _INT.unpack(fcntl.ioctl(self._fd, SIOCOUTQNSD, b"\0\0\0\0"))[0]
        except OSError:          # closed under us, or a kernel without SIOCOUTQNSD
            self._fd = -1
            return 0

    def acked(self) -> int:
        """Bytes the peer has acknowledged so far (``tcpi_bytes_acked``), -1 when unknown.

        A client that stopped reading acknowledges nothing more once its window is closed (the
        kernel's zero-window probes carry no data): this does not move."""
        if self._fd < 0:
            return -1
        try:
            info = self.transport.get_extra_info("socket").getsockopt(
                socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
        except (OSError, AttributeError):
            return -1
        if len(info) < _BYTES_ACKED_AT + 8:      # a kernel older than 4.1
            return -1
        return _BYTES_ACKED.unpack_from(info, _BYTES_ACKED_AT)[0]

    def backlog(self) -> int:
        """Bytes given to this connection that the client has not taken yet (0 when drained)."""
        if not self.fast:
            return 0
        return self.transport.get_write_buffer_size() + self.kernel_unsent()

    # --- writing ----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Append complete frames to the transport (never blocks; buffers what the socket refuses)."""
        self.transport.write(data)

    def close_now(self, code: int, reason: str, abort_after: float) -> None:
        """Queue a close frame behind whatever is buffered and give up after ``abort_after`` s.

        The same steps as uvicorn's own ``websocket.close``, minus its wait for a paused
        transport to resume: a stalled client's transport never resumes, and the close must not
        wait for it.  The client reads the close frame after its backlog; if it never reads,
        the connection is aborted."""
        proto = self._proto
        if proto is None or proto.close_sent or self.transport.is_closing():
            return
        try:
            self._ws.send_close(code, reason)
        except Exception:       # the peer closed first: nothing left to say
            self.transport.abort()
            return
        self.transport.write(b"".join(self._ws.data_to_send()))
        proto.close_sent = True
        proto.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        if proto.read_paused:
            proto.read_paused = False
            self.transport.resume_reading()
        # The peer's close reply cancels this timer and closes cleanly (uvicorn's handle_close).
        proto.close_timer = asyncio.get_running_loop().call_later(abort_after,
                                                                  self.transport.abort)
