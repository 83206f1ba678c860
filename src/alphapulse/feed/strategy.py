"""The strategy's side of the feed: :func:`attach` and the :class:`Feed` it returns.

The Feed owns the control connection and this strategy's ring reader; :class:`~.mirrors.Mirrors`
turns records into events and keeps the mirror books.  How a blocked read waits (spin, then
sleep on a futex) is the latency knob, see ``spin_us`` and :data:`BUSY_POLL`.
"""
from __future__ import annotations

import asyncio
import math
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from .. import ring
from .._book import OrderBook
from ..errors import AlphaPulseError, FeedError, ProducerGone, RingOverrun
from ..wire import decode, ts_pub
from .mirrors import FeedEvent, Key, Mirrors
from .protocol import (CONTROL_SOCKET, DEFAULT_CAPACITY, feed_dir, format_channel,
                       parse_channel, recv_message, send_message)

BUSY_POLL: Final = math.inf
"""``attach(..., spin_us=BUSY_POLL)``: the low-latency mode; a blocked read never sleeps."""

DEFAULT_SPIN_US: Final = 50.0
DEFAULT_WARM_US: Final = 100.0
"""In the busy-poll mode, an idle feed re-decodes its last record this often (see ``warm_us``)."""
_BUSY_SPIN_NS: Final = 1 << 62     # "forever": each wait is bounded by its own deadline
_WAIT_SLICE_S: Final = 0.1         # next() waits in slices: signals and deadlines stay live


def _spin_ns(spin_us: float) -> int:
    if spin_us != spin_us or spin_us < 0:
        raise ValueError(f"spin_us must be >= 0 (or BUSY_POLL), got {spin_us!r}")
    return _BUSY_SPIN_NS if math.isinf(spin_us) else int(spin_us * 1000)


class Feed:
    """An attached feed: iterate it (blocking or ``async for``) and read its mirror books.

    Create it with :func:`attach`.  Not thread-safe: read it from one thread (or one task)."""

    def __init__(self, name: str, sock: socket.socket, reply: dict[str, Any], directory: Any,
                 *, heartbeats: bool = False, spin_us: float = DEFAULT_SPIN_US) -> None:
        self.name = name
        self.directory = directory
        self._sock = sock
        self.server_pid: int = int(reply.get("server_pid", 0))
        self.subscriber_id: int = int(reply.get("id", 0))
        self.channels: list[str] = list(reply.get("channels", []))
        self.heartbeat_interval = float(reply.get("heartbeat_ms", 250)) / 1000.0
        self.ring_path = directory / str(reply["ring"])
        self._reader = ring.attach(self.ring_path, timeout=5.0, spin_us=0)
        self._spin_us = 0.0
        self.spin_us = spin_us
        self.warm_us = DEFAULT_WARM_US
        self._mirrors = Mirrors(lambda key: self.request({"op": "resync", "books": [list(key)]}),
                                heartbeats=heartbeats)
        self.stats = self._mirrors.stats
        self._ended = False
        self._executor: ThreadPoolExecutor | None = None
        self._last = b""

    # --- latency mode -----------------------------------------------------------------------

    @property
    def spin_us(self) -> float:
        """How long a blocked read spins (µs) before it sleeps on the futex; settable.

        Waking a sleeping process costs a scheduler wake-up (tens of µs on a VM, see README);
        spinning costs CPU.  :data:`BUSY_POLL` never sleeps: this process keeps one core busy
        and holds the GIL while it waits in :meth:`next` (signals are still delivered within
        0.1 s), so use it from the thread that reads the feed, on a machine with a core to
        spare next to the server's."""
        return self._spin_us

    @spin_us.setter
    def spin_us(self, value: float) -> None:
        self._reader.spin_ns = _spin_ns(value)
        self._spin_us = float(value)

    @property
    def busy_poll(self) -> bool:
        """True in the low-latency mode (``spin_us=BUSY_POLL``)."""
        return math.isinf(self._spin_us)

    warm_us: float
    """Busy-poll mode only: while :meth:`next` finds nothing, every ``warm_us`` µs it decodes
    the last record again and drops the result (0: never).  At exchange rates a record comes
    every few ms, and meanwhile the decode path falls out of the CPU caches (other processes
    run on the sibling core), so the next record costs several times its hot decode; this
    keeps it warm for ~3 µs of the already spinning core every 100 µs.  Measured on the 2-core
    VM (benchmarks/feed_latency.py): p50 frame -> strategy 234 -> 127 µs at 200 msg/s and
    58 -> 30 µs at 2,000 msg/s."""

    # --- mirrors ----------------------------------------------------------------------------

    def book(self, exchange: str, symbol: str) -> OrderBook | None:
        """The mirror of the server's book, or None before its first snapshot and while it is
        out of sync (after an overrun, a gap or a failed check, until the fresh snapshot)."""
        return self._mirrors.book((exchange, symbol))

    def synced(self, exchange: str, symbol: str) -> bool:
        return self._mirrors.book((exchange, symbol)) is not None

    @property
    def books(self) -> dict[Key, OrderBook]:
        """Every mirror that is in sync, by (exchange, symbol)."""
        stale = self._mirrors.stale
        return {k: b for k, b in self._mirrors.books.items() if k not in stale}

    @property
    def closed_reason(self) -> str | None:
        """Why the server closed this feed (its goodbye), once it did."""
        return self._mirrors.closed_reason

    @property
    def last_heartbeat_ns(self) -> int:
        return self._mirrors.last_heartbeat_ns

    # --- reading ----------------------------------------------------------------------------

    def poll(self) -> FeedEvent | None:
        """The next event if one is ready, else None (never blocks).

        Raises ProducerGone when the server died; returns None for good once it closed."""
        mirrors = self._mirrors
        pending = mirrors.pending
        if pending:
            return pending.popleft()
        read, handle = self._reader.read, mirrors.handle
        while True:
            try:
                record = read()
            except RingOverrun as exc:
                # The server dropped records for us; it re-snapshots all our books by itself.
                # Its first record after the gap says how many more it skipped on purpose.
                mirrors.overrun(exc.missed)
                continue
            except ProducerGone as exc:
                return mirrors.take_overrun() or self._gone(exc)
            if record is None:
                return mirrors.take_overrun()
            self._last = record
            event = handle(record)
            if mirrors.missed:
                if event is not None:
                    pending.append(event)
                return mirrors.take_overrun()
            if pending:     # a checksum failure queued a notice
                if event is not None:
                    pending.append(event)
                return pending.popleft()
            if event is not None:
                return event

    def _gone(self, exc: ProducerGone) -> None:
        if self._reader.writer_closed:
            self._ended = True
            if self._mirrors.closed_reason is None:
                self._mirrors.closed_reason = "server closed the feed"
            return None
        raise ProducerGone(f"AlphaPulse server {self.name!r} (pid {self.server_pid}) died: "
                           f"{exc}") from exc

    def next(self, timeout: float | None = None) -> FeedEvent | None:
        """The next event, waiting up to ``timeout`` seconds (None: forever); None on timeout
        or when the server closed the feed (then ``ended`` is True).  While it waits it spins
        for ``spin_us`` and then sleeps (or only spins, with :data:`BUSY_POLL`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        wait, poll = self._reader.wait, self.poll
        if self.busy_poll and self.warm_us > 0:
            return self._next_warm(deadline)
        while True:
            event = poll()
            if event is not None or self._ended:
                return event
            if deadline is None:
                wait(_WAIT_SLICE_S)
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                wait(min(left, _WAIT_SLICE_S))

    def _next_warm(self, deadline: float | None) -> FeedEvent | None:
        """next() in the busy-poll mode: spin in slices of ``warm_us``, warming in between."""
        wait, poll, monotonic = self._reader.wait, self.poll, time.monotonic
        slice_s = self.warm_us / 1e6
        while True:
            event = poll()
            if event is not None or self._ended:
                return event
            if deadline is not None and monotonic() >= deadline:
                return None
            if not wait(slice_s) and self._last:
                decode(self._last)      # the result is dropped: only the caches matter

    @property
    def last_ts_pub(self) -> int:
        """When the server published the record behind the last event (ns; 0 before any)."""
        return ts_pub(self._last) if self._last else 0

    @property
    def server_alive(self) -> bool:
        """The server process runs and has not closed this feed (checked now, via the ring)."""
        return not self._reader.closed and self._reader.writer_alive

    @property
    def heartbeat_age(self) -> float:
        """Seconds since the server's last heartbeat was read: above a few heartbeat intervals
        while ``server_alive``, the server is hung or this strategy is not reading."""
        return max(0.0, (time.time_ns() - self._mirrors.last_heartbeat_ns) / 1e9)

    @property
    def ended(self) -> bool:
        """True once the server closed the feed cleanly and everything was read."""
        return self._ended

    def __iter__(self) -> Iterator[FeedEvent]:
        """Blocking iteration; ends when the server shuts down cleanly, raises ProducerGone if
        it dies."""
        while True:
            event = self.next()
            if event is None:
                return
            yield event

    def __aiter__(self) -> AsyncIterator[FeedEvent]:
        """``async for event in feed``: never blocks the event loop."""
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[FeedEvent]:
        loop = asyncio.get_running_loop()
        reader = self._reader
        while True:
            event = self.poll()
            if event is not None:
                yield event
                continue
            if self._ended:
                return
            # Cheap cooperative polling first (bursts cost no thread hand-off; in the busy-poll
            # mode only this, the loop's other tasks still run between polls) ...
            spin_s = min(max(self._spin_us / 1e6, 0.0005), 0.05)
            until = time.monotonic() + spin_s
            ready = False
            while time.monotonic() < until:
                await asyncio.sleep(0)
                if reader.backlog or not reader.writer_alive:
                    ready = True
                    break
            if not ready and not self.busy_poll:   # ... then park a helper thread in the futex
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix="alphapulse-feed")
                await loop.run_in_executor(self._executor, reader.wait, 0.05, 0)

    # --- control requests -------------------------------------------------------------------

    def request(self, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """Send one control request and return the server's reply (FeedError on failure)."""
        try:
            self._sock.settimeout(timeout)
            send_message(self._sock, message)
            reply = recv_message(self._sock)
        except OSError as exc:
            raise FeedError(f"control request to server {self.name!r} failed: {exc}") from exc
        if not reply.get("ok"):
            raise FeedError(f"server {self.name!r} refused {message.get('op')!r}: "
                            f"{reply.get('error')}")
        return reply

    def subscribe(self, channels: Iterable[str]) -> list[str]:
        """Add channels (books get a snapshot first); returns the full channel list."""
        channels = [format_channel(parse_channel(c)) for c in channels]
        self.channels = list(self.request({"op": "subscribe", "channels": channels})["channels"])
        return self.channels

    def unsubscribe(self, channels: Iterable[str]) -> list[str]:
        channels = [format_channel(parse_channel(c)) for c in channels]
        self.channels = list(self.request({"op": "unsubscribe", "channels": channels})["channels"])
        return self.channels

    def resync(self, exchange: str | None = None, symbol: str | None = None) -> None:
        """Ask for fresh snapshots (of one book, or of all of them)."""
        mirrors = self._mirrors
        if exchange is None:
            mirrors.mark_stale(mirrors.books)
            self.request({"op": "resync", "books": None})
        else:
            mirrors.mark_stale([(exchange, str(symbol))])
            self.request({"op": "resync", "books": [[exchange, symbol]]})

    def available(self) -> list[str]:
        """The channels the server has data for right now."""
        return list(self.request({"op": "channels"})["available"])

    # --- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Detach: the server frees this strategy's ring at once.  Idempotent."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        self._reader.close()
        self._sock.close()

    def __enter__(self) -> Feed:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<Feed {self.name!r} server_pid={self.server_pid} channels={self.channels} "
                f"books={len(self._mirrors.books)} stale={len(self._mirrors.stale)}>")


def attach(name: str = "default", channels: Iterable[str] = ("book:*:*", "trades:*:*"), *,
           directory: str | os.PathLike[str] | None = None, capacity: int = DEFAULT_CAPACITY,
           timeout: float = 5.0, wait: float = 0.0, heartbeats: bool = False,
           spin_us: float = DEFAULT_SPIN_US, client: str | None = None) -> Feed:
    """Attach to the running server ``name`` and subscribe to ``channels``.

    ``directory``: the server's shm directory (default ``$ALPHAPULSE_SHM_DIR`` or /dev/shm).
    ``capacity``: this strategy's ring size in bytes (a power of two, 64 KiB .. 256 MiB).
    ``wait``: seconds to wait for the server to appear (0: fail at once).
    ``heartbeats``: also yield the server's Heartbeat records.
    ``spin_us``: how long a blocked read spins before sleeping on the futex (latency vs CPU);
    :data:`BUSY_POLL` is the low-latency mode: never sleep (one core, see ``Feed.spin_us``).

    Raises FeedError (no such server, or it refused the request) or ValueError (bad channel).
    """
    keys = [format_channel(parse_channel(c)) for c in channels]
    if not keys:
        raise ValueError("at least one channel is needed")
    _spin_ns(spin_us)   # a bad value fails before anything is attached
    where = feed_dir(name, directory)
    path = where / CONTROL_SOCKET
    deadline = time.monotonic() + wait
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(timeout)
            sock.connect(str(path))
            break
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            if time.monotonic() >= deadline:
                raise FeedError(f"no AlphaPulse server named {name!r} is running ({path}: "
                                f"{exc.strerror}); start one with `alphapulse-server --name "
                                f"{name}`") from exc
            time.sleep(0.05)
        except OSError as exc:
            sock.close()
            raise FeedError(f"cannot connect to server {name!r} at {path}: {exc}") from exc
    try:
        send_message(sock, {"op": "attach", "channels": keys, "capacity": capacity,
                            "client": client or os.path.basename(sys.argv[0] or "python")})
        reply = recv_message(sock)
        if not reply.get("ok"):
            raise FeedError(f"server {name!r} refused to attach: {reply.get('error')}")
        return Feed(name, sock, reply, where, heartbeats=heartbeats, spin_us=spin_us)
    except BaseException as exc:
        sock.close()
        if isinstance(exc, OSError) and not isinstance(exc, AlphaPulseError):
            raise FeedError(f"attaching to server {name!r} failed: {exc}") from exc
        raise
