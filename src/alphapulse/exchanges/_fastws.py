"""A faster frame parser for the collectors' ``websockets`` client connections.

``websockets`` parses every incoming frame through a chain of generator-based coroutines
(``Frame.parse`` -> three ``read_exact`` calls, an ``Opcode`` enum lookup, ``frame.check()``),
about 5-8 µs per frame in CPython; at tens of thousands of exchange messages per second that
is one of the largest costs of the server's read loop (see ``scripts/load-test ramp`` and the
README's profile notes).  Exchange feeds are almost only *simple* frames: final, unmasked,
text or binary, no extension, a 7- or 16-bit length.  :class:`FastClientProtocol` slices every
complete simple frame straight out of the reader's buffer in one loop and hands it to
``recv_frame`` exactly as ``websockets`` would; anything else (control frames, fragments, RSV
bits, 64-bit lengths, an oversized payload, an incomplete frame at end of stream) goes through
the unchanged ``websockets`` path, so pings, pongs, the closing handshake, limits and errors
behave as before.

Use ``connect(..., create_connection=FastClientConnection)``.  Written against websockets 13-17
(``Protocol.parse``'s structure, ``StreamReader.buffer``); a different major version falls back
to the stock classes (:data:`FAST` is False).

:meth:`FastClientConnection.recv_batch` is the collectors' read call: it returns every complete
message already received, each with the ``time.time_ns()`` of the socket read that delivered
its last frame, so a read loop pays one ``await`` per socket read instead of one per message
(``recv()``'s future, queue and coroutine frames cost about as much as parsing the frame).
Given a *handler*, it goes further: while the caller waits, every complete message is handed
to ``handler(payload, ts_recv)`` synchronously inside ``data_received`` (direct dispatch), so a
socket read costs no future, no task step and no second event-loop turn; the handler returns
False (or raises) to hand control back to the waiting task, which then does whatever needs an
``await`` and calls ``recv_batch`` again.  At ~2,000 msgs/s the server does one socket read per
message or two, and that hop was a large share of its CPU (``scripts/load-test ramp
--tick-ms 0.5``; README).  While a handler waits, a socket read that starts between messages
skips ``websockets`` for its leading simple frames altogether (:mod:`._wsframes`, compiled):
no buffer copy, no ``Frame`` objects, no event list; the rest of the read takes the path above.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Generator
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.client import ClientProtocol
from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.frames import BINARY, CONT, TEXT, CloseCode, Frame
from websockets.protocol import Protocol, State

from ._wsframes import HEAD_PARTIAL, dispatch_frames, simple_missing, slice_frames

__all__ = ["FAST", "FastClientConnection", "FastClientProtocol", "FrameHandler"]

#: ``handler(payload, ts_recv) -> keep_going``: see :meth:`FastClientConnection.recv_batch`.
FrameHandler = Callable[[bytes, int], bool]

FAST = websockets.__version__.split(".")[0] in {"13", "14", "15", "16", "17"}


class _FastFrames(Protocol):
    """``Protocol.parse`` with a fast loop for complete simple frames in front of it."""

    # True while parse() waits for the rest of the simple frame at the head of the buffer
    # and holds nothing of it but the buffered bytes (the connection may complete it).
    awaiting_simple = False

    def _simple_frames(self) -> bool:
        """Take every complete simple frame at the head of the buffer; True if any."""
        buf = self.reader.buffer
        if len(buf) < 2 or self.extensions or self.current_size is not None:
            return False
        limit = self.max_message_size
        taken, frames = slice_frames(buf, -1 if limit is None else limit)
        if not taken:
            return False
        # What recv_frame does with a final text/binary frame when no fragmented message is in
        # progress (checked above): append it to the events.
        self.events += [Frame(TEXT if is_text else BINARY, payload) for is_text, payload in frames]
        del buf[:taken]
        return True

    def _simple_missing(self) -> int:
        """``_wsframes.simple_missing`` of the buffer, at this connection's size limit."""
        limit = self.max_message_size
        return simple_missing(self.reader.buffer, -1 if limit is None else limit)

    def _waiting_for_simple(self) -> bool:
        """The buffer starts with a simple frame, within the size limit, not complete yet."""
        if self.reader.eof or self.extensions or self.current_size is not None:
            return False
        missing = self._simple_missing()
        return missing > 0 or missing == HEAD_PARTIAL

    def parse(self) -> Generator[None]:
        # The structure and error handling of websockets' Protocol.parse, with the fast loop
        # tried first on every step.
        try:
            while True:
                if self._simple_frames():
                    continue
                if not self.reader.buffer:
                    if (yield from self.reader.at_eof()):
                        raise EOFError("unexpected end of stream")
                    # New data after an empty buffer (the usual case at low rates: each read
                    # brings a frame or two): the fast loop first, not Frame.parse.
                    continue
                if self._waiting_for_simple():
                    self.awaiting_simple = True
                    yield                       # more data will complete it
                    self.awaiting_simple = False
                    continue
                max_size = None
                if self.max_message_size is not None:
                    if self.current_size is None:
                        max_size = self.max_message_size
                    else:
                        max_size = self.max_message_size - self.current_size
                if self.max_fragment_size is not None:
                    max_size = self.max_fragment_size if max_size is None else min(
                        max_size, self.max_fragment_size)
                frame = yield from Frame.parse(self.reader.read_exact, mask=False,
                                               max_size=max_size, extensions=self.extensions)
                self.recv_frame(frame)
        except ProtocolError as exc:
            self.fail(CloseCode.PROTOCOL_ERROR, str(exc))
            self.parser_exc = exc
        except EOFError as exc:
            self.fail(CloseCode.ABNORMAL_CLOSURE, str(exc))
            self.parser_exc = exc
        except UnicodeDecodeError as exc:
            self.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
            self.parser_exc = exc
        except PayloadTooBig as exc:
            exc.set_current_size(self.current_size)
            self.fail(CloseCode.MESSAGE_TOO_BIG, str(exc))
            self.parser_exc = exc
        except Exception as exc:  # noqa: BLE001 - as websockets: fail the connection
            self.logger.error("parser failed", exc_info=True)
            self.fail(CloseCode.INTERNAL_ERROR)
            self.parser_exc = exc
        yield
        raise AssertionError("parse() shouldn't step after error")


class FastClientProtocol(ClientProtocol, _FastFrames):
    """``ClientProtocol`` (handshake unchanged) whose frame parsing is :class:`_FastFrames`'s:
    ``ClientProtocol.parse`` ends in ``super().parse()``, which the MRO resolves to it."""


#: Size of each connection's receive buffer (asyncio's own read size).
READ_BUFFER = 256 * 1024


class FastClientConnection(ClientConnection, asyncio.BufferedProtocol):
    """A ``ClientConnection`` whose protocol parses frames with :class:`FastClientProtocol`
    and which can hand over every buffered message at once (:meth:`recv_batch`), or each
    message as it is read (:meth:`recv_batch` with a handler).

    Every data frame put into websockets' message assembler gets a receive stamp (the
    ``time.time_ns()`` of the ``data_received`` call that delivered it) in :attr:`_stamps`,
    kept parallel to the assembler's frame queue: the stamps of frames the assembler has
    taken off the queue are the oldest ``len(_stamps) - len(queue)`` ones.  ``recv()`` keeps
    working unchanged (stamps it consumes are dropped at the next read).  A message handed to
    a direct-dispatch handler never enters the queue and gets no stamp.

    It is an ``asyncio.BufferedProtocol``: the transport reads into one preallocated buffer
    (``recv_into``) instead of ``recv(256 KiB)``, whose 256 KiB allocation (above glibc's
    mmap threshold) cost ~20 µs per socket read here (more than parsing a frame).  uvloop
    (the server's default loop) calls ``data_received`` on any ``asyncio.Protocol`` subclass,
    as this is, and reads into its own preallocated buffer in C, which avoids that cost."""

    def __init__(self, protocol: ClientProtocol, *args: Any, **kwargs: Any) -> None:
        if FAST and type(protocol) is ClientProtocol:
            # The factory in websockets' connect() builds a plain ClientProtocol; nothing has
            # been received yet, so its parser can be restarted as the fast one.
            protocol.__class__ = FastClientProtocol
            protocol.parser = protocol.parse()
            next(protocol.parser)
        super().__init__(protocol, *args, **kwargs)
        self._stamps: deque[int] = deque()
        self._read_ts = 0
        # Direct dispatch: set only while recv_batch(handler) waits (see there).
        self._handler: FrameHandler | None = None
        self._handler_exc: BaseException | None = None
        self._read_buffer = memoryview(bytearray(READ_BUFFER))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        # websockets copies what it is given into its reader's buffer (bytearray +=), so the
        # read buffer is free again when this returns.
        self.data_received(self._read_buffer[:nbytes])  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        # One clock read per socket read: every frame it completes was received now.
        if not FAST:
            super().data_received(data)
            return
        ts = self._read_ts = time.time_ns()
        if self._stamps:
            self._trim_stamps()
        handler = self._handler
        if handler is not None and self._between_messages():
            # Direct dispatch's front door: the read's leading simple frames go from the
            # transport's bytes to the handler, without websockets' buffer copy, Frame
            # objects or event list; whatever follows them takes websockets' path, in order.
            protocol = self.protocol
            limit = protocol.max_message_size
            limit = -1 if limit is None else limit
            buf = protocol.reader.buffer
            if buf:
                # The last read ended inside a simple frame (large writes rarely end on a
                # frame boundary): complete it from this read and hand it over first.
                need = protocol._simple_missing()
                if need <= 0 or need > len(data):        # its length not known yet: rare
                    super().data_received(data)
                    return
                buf += data[:need]
                data = data[need:]
                _, stop = dispatch_frames(buf, handler, ts, limit)
                del buf[:]
                if stop is not None:
                    self._hand_back(stop)
                    if data:
                        super().data_received(data)
                    return
            taken, stop = dispatch_frames(data, handler, ts, limit)
            if stop is not None:
                self._hand_back(stop)
            if taken == len(data):
                return
            data = data[taken:]
        super().data_received(data)

    def _between_messages(self) -> bool:
        """Nothing queued or half-assembled, and nothing buffered but (possibly) the start of
        a simple frame: the next bytes can be handed over as they are (the connection open,
        no extension to undo)."""
        protocol = self.protocol
        return (protocol.state is State.OPEN
                and (not protocol.reader.buffer or protocol.awaiting_simple)
                and protocol.current_size is None and not protocol.extensions
                and not self.recv_messages.frames.queue)

    def _hand_back(self, stop: bool | Exception) -> None:
        """The handler returned False or raised: what follows queues up for the waiting task,
        which wakes (and re-raises the handler's exception, if any)."""
        if stop is not False:
            # Raising here would reach the transport and abort the connection from inside
            # websockets; the task decides instead (the collector reconnects).
            self._handler_exc = stop
        self._handler = None
        waiter = self.recv_messages.frames.get_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def process_event(self, event: Any) -> None:
        handler = self._handler
        if (handler is not None and type(event) is Frame and event.fin
                and (event.opcode is TEXT or event.opcode is BINARY)
                and not self.recv_messages.frames.queue):
            # A whole message, nothing queued before it (order kept): straight to the handler.
            # Control frames and fragments never get here: websockets handles the former,
            # the assembler the latter, exactly as without a handler.
            data = event.data
            try:
                keep = handler(data if type(data) is bytes else bytes(data), self._read_ts)
            except Exception as exc:  # noqa: BLE001 - re-raised in the waiting task
                self._hand_back(exc)
                return
            if not keep:
                self._hand_back(False)
            return
        super().process_event(event)
        if FAST and type(event) is Frame and (event.opcode is TEXT or event.opcode is BINARY
                                     or event.opcode is CONT):
            self._stamps.append(self._read_ts)

    def _trim_stamps(self) -> None:
        """Drop the stamps of frames the assembler has already taken (by ``recv()``)."""
        stamps = self._stamps
        for _ in range(len(stamps) - len(self.recv_messages.frames)):
            stamps.popleft()

    async def recv_batch(self, handler: FrameHandler | None = None) -> list[tuple[bytes, int]]:
        """Wait for at least one message; return every complete message received so far.

        Each item is ``(payload bytes, ts_recv)`` with ``ts_recv`` the ``time.time_ns()`` of
        the socket read that delivered the message's last frame.  Text frames are not UTF-8
        decoded (as ``recv(decode=False)``).  Raises ``ConnectionClosed`` like ``recv()``
        once the connection is closed and every message received before has been returned;
        pings, pongs and the closing handshake are handled by websockets as for ``recv()``.
        Cancelling it is as safe as cancelling ``recv()``.

        With a ``handler``, and nothing queued yet, it first waits with direct dispatch on:
        each complete single-frame message is passed to ``handler(payload, ts_recv)`` from
        ``data_received`` itself, in order, and is not returned.  The call returns when the
        handler returns False (``[]``: the caller has work that needs an ``await``), when a
        message had to be queued (a fragmented one; returned as without a handler), or at
        the end of the stream (``ConnectionClosed``).  An exception the handler raised is
        re-raised here, in the caller's task; the connection itself is left open.  Messages
        that arrive while no ``recv_batch(handler)`` is waiting are queued and returned by
        the next call, before any later message reaches the handler.
        """
        if not FAST:                            # unknown assembler internals: one at a time
            return [(await self.recv(decode=False), time.time_ns())]
        assembler = self.recv_messages
        frames = assembler.frames
        if handler is not None and not frames.queue and not assembler.closed:
            # Wait the way SimpleQueue.get() does (its waiter is resolved by a queued frame,
            # and failed with EOFError at the end of the stream) but with the handler on;
            # process_event resolves the same waiter to hand over.
            if frames.get_waiter is not None:
                raise RuntimeError("recv_batch: another coroutine is already receiving")
            waiter = frames.get_waiter = asyncio.get_running_loop().create_future()
            self._handler = handler
            try:
                await waiter
            except EOFError:
                pass                            # the end: recv() below raises ConnectionClosed
            finally:
                self._handler = None
                frames.get_waiter = None
                waiter.cancel()
            exc = self._handler_exc
            if exc is not None:
                self._handler_exc = None
                raise exc
            if not frames.queue and not assembler.closed:
                return []                       # handed over by the handler
        # The first message goes through recv(): it waits, reassembles fragments and turns
        # the end of the stream or an assembler error into websockets' exceptions.
        data = await self.recv(decode=False)
        stamps = self._stamps
        queue = frames.queue
        taken = len(stamps) - len(queue)        # frames recv() took; the last one ends `data`
        for _ in range(taken - 1):
            stamps.popleft()
        batch = [(data, stamps.popleft())]
        # Then every complete single-frame message at the head of the queue, synchronously;
        # a fragmented one stops the drain and is left to the next recv().
        while queue:
            frame = queue[0]
            if not frame.fin or frame.opcode is CONT:
                break
            queue.popleft()
            batch.append((bytes(frame.data), stamps.popleft()))
        assembler.maybe_resume()
        return batch
