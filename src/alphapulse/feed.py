"""A strategy's attachment to a running AlphaPulse server, over shared memory.

::

    import alphapulse.feed

    with alphapulse.feed.attach("default", ["book:kraken:BTC-USD", "trades:*:BTC-USD"]) as feed:
        for event in feed:                       # or: async for event in feed
            if isinstance(event, alphapulse.BookUpdate):
                book = feed.book(event.exchange, event.symbol)   # the mirror, already updated
                print(book.best_bid(), book.best_ask())

How it works: the server (``alphapulse.server.shm.ShmPublisher``) keeps a directory
``<shm dir>/alphapulse-<name>/`` (mode 0700) holding a Unix-domain control socket.  ``attach``
connects to it and asks for channels; the server creates a ring (``alphapulse.ring``, SPSC, drop
policy, mode 0600) for this process alone, writes a snapshot of every subscribed book into it,
and from then on writes each matching event as a ``alphapulse.wire`` record.  The server never
waits for a strategy: when this ring is full it drops records, and the ring tells us exactly how
many (``Overrun``).  The server then writes a fresh snapshot of each of our books before any
further delta of it, so the mirrors recover by themselves; periodic ``Checksum`` records prove a
mirror equals the server's book.  If the server dies, iteration raises ``ProducerGone`` within
a fraction of a second; if it shuts down cleanly, iteration ends.

Channels: ``book:<exchange>:<symbol>``, ``trades:<exchange>:<symbol>`` and
``arbitrage:<symbol>``; ``*`` matches any exchange or symbol.

This module is also the control protocol's home (the server imports the constants from here):
requests and replies are single-line JSON objects over the socket::

    {"op": "attach", "channels": [...], "capacity": 4194304, "client": "top_of_book"}
        -> {"ok": true, "ring": "sub-1-4242.ring", "id": 1, "channels": [...],
            "server_pid": 4141, "heartbeat_ms": 250}
    {"op": "subscribe" | "unsubscribe", "channels": [...]}  -> {"ok": true, "channels": [...]}
    {"op": "resync", "books": [["kraken", "BTC-USD"]] | null} -> {"ok": true}
    {"op": "channels"}                                -> {"ok": true, "available": [...]}
    any error                                         -> {"ok": false, "error": "..."}
"""
from __future__ import annotations

import asyncio
import collections
import json
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from . import ring
from ._book import OrderBook
from .errors import AlphaPulseError, ProducerGone, RingOverrun, SequenceError
from .events import BookSnapshot, BookUpdate, Gap, Trade
from .wire import Arbitrage, Checksum, Control, Heartbeat, decode, ts_pub

__all__ = ["Feed", "FeedError", "Overrun", "Resync", "attach", "feed_dir", "parse_channel",
           "Arbitrage"]

# --- the control protocol (shared with alphapulse.server.shm) ----------------------------------

DIR_PREFIX: Final = "alphapulse-"
CONTROL_SOCKET: Final = "control.sock"
SERVER_INFO: Final = "server.json"
RING_SUFFIX: Final = ".ring"
MAX_MESSAGE: Final = 64 * 1024
DEFAULT_CAPACITY: Final = 1 << 22          # 4 MiB per strategy: ~50k book deltas of slack
MIN_CAPACITY: Final = 1 << 16
MAX_CAPACITY: Final = 1 << 28
CHANNEL_KINDS: Final = ("book", "trades", "arbitrage")
WILDCARD: Final = "*"


class FeedError(AlphaPulseError, ConnectionError):
    """Could not attach to, or talk to, the named server's feed."""


def feed_dir(name: str = "default", directory: str | os.PathLike[str] | None = None) -> Path:
    """The directory of server ``name``: ``<directory>/alphapulse-<name>``.

    ``directory`` defaults to ``$ALPHAPULSE_SHM_DIR``, else /dev/shm (the server's --shm-dir)."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"bad feed name {name!r}")
    base = Path(directory) if directory is not None else Path(
        os.environ.get("ALPHAPULSE_SHM_DIR") or ring.DEFAULT_DIR)
    return base / f"{DIR_PREFIX}{name}"


def parse_channel(text: str) -> tuple[str, str, str]:
    """``"book:kraken:BTC-USD"`` -> ``("book", "kraken", "BTC-USD")``;
    ``"arbitrage:BTC-USD"`` -> ``("arbitrage", "*", "BTC-USD")``.  ValueError names the problem."""
    if not isinstance(text, str):
        raise ValueError(f"channel must be a string, got {text!r}")
    parts = text.split(":")
    if parts[0] == "arbitrage" and len(parts) == 2 and parts[1]:
        return ("arbitrage", WILDCARD, parts[1])
    if len(parts) != 3 or parts[0] not in ("book", "trades") or not parts[1] or not parts[2]:
        raise ValueError(f"bad channel {text!r}: expected book:<exchange>:<symbol>, "
                         "trades:<exchange>:<symbol> or arbitrage:<symbol> ('*' matches any)")
    return (parts[0], parts[1], parts[2])


def format_channel(key: tuple[str, str, str]) -> str:
    kind, exchange, symbol = key
    return f"arbitrage:{symbol}" if kind == "arbitrage" else f"{kind}:{exchange}:{symbol}"


def send_message(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(json.dumps(message, separators=(",", ":")).encode() + b"\n")


# --- notices -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Overrun:
    """This strategy fell behind: the server dropped ``missed`` records for it.

    Every mirror in ``books`` is out of sync until its fresh snapshot, which the server sends
    by itself (``feed.book()`` returns None meanwhile); trades in the gap are lost."""

    missed: int
    books: tuple[tuple[str, str], ...]
    ts: int


@dataclass(frozen=True, slots=True)
class Resync:
    """One mirror left sync (``reason``: "sequence", "checksum", "gap"); a fresh snapshot follows."""

    exchange: str
    symbol: str
    reason: str
    detail: str
    ts: int


FeedEvent = Trade | BookSnapshot | BookUpdate | Gap | Arbitrage | Overrun | Resync


# --- the feed ------------------------------------------------------------------------------------

class Feed:
    """An attached feed: iterate it (blocking or ``async for``) and read its mirror books.

    Create it with :func:`attach`.  Not thread-safe: read it from one thread (or one task)."""

    def __init__(self, name: str, sock: socket.socket, reply: dict[str, Any], directory: Path,
                 *, heartbeats: bool = False, spin_us: float = 50.0) -> None:
        self.name = name
        self.directory = directory
        self._sock = sock
        self.server_pid: int = int(reply.get("server_pid", 0))
        self.subscriber_id: int = int(reply.get("id", 0))
        self.channels: list[str] = list(reply.get("channels", []))
        self.heartbeat_interval = float(reply.get("heartbeat_ms", 250)) / 1000.0
        self.ring_path = directory / str(reply["ring"])
        self._reader = ring.attach(self.ring_path, timeout=5.0, spin_us=spin_us)
        self._books: dict[tuple[str, str], OrderBook] = {}
        self._stale: set[tuple[str, str]] = set()
        self._pending: collections.deque[FeedEvent] = collections.deque()
        self._yield_heartbeats = heartbeats
        self._ended = False
        self._missed = 0
        self._executor: ThreadPoolExecutor | None = None
        self.last_heartbeat_ns = time.time_ns()
        self._last = b""
        self.closed_reason: str | None = None
        self.stats: dict[str, int] = dict.fromkeys((
            "records", "trades", "snapshots", "updates", "skipped", "gaps", "arbitrage",
            "heartbeats", "overruns", "missed", "resyncs", "sequence_errors", "checksum_ok",
            "checksum_failed"), 0)

    # --- mirrors ---------------------------------------------------------------------------

    def book(self, exchange: str, symbol: str) -> OrderBook | None:
        """The mirror of the server's book, or None before its first snapshot and while it is
        out of sync (after an overrun, a gap or a failed check, until the fresh snapshot)."""
        key = (exchange, symbol)
        return None if key in self._stale else self._books.get(key)

    def synced(self, exchange: str, symbol: str) -> bool:
        key = (exchange, symbol)
        return key in self._books and key not in self._stale

    @property
    def books(self) -> dict[tuple[str, str], OrderBook]:
        """Every mirror that is in sync, by (exchange, symbol)."""
        return {k: b for k, b in self._books.items() if k not in self._stale}

    def _mark_stale(self, keys: Iterable[tuple[str, str]]) -> None:
        self._stale.update(k for k in keys if k in self._books)

    # --- records -> events -----------------------------------------------------------------

    def _handle(self, record: bytes) -> FeedEvent | None:
        self.stats["records"] += 1
        event = decode(record)
        cls = type(event)
        if cls is BookUpdate:
            key = (event.exchange, event.symbol)
            book = self._books.get(key)
            if book is None or key in self._stale:
                self.stats["skipped"] += 1     # waiting for this book's snapshot
                return None
            try:
                book.apply_delta(event.delta)
            except SequenceError as exc:
                self.stats["sequence_errors"] += 1
                return self._resync(key, "sequence", str(exc))
            self.stats["updates"] += 1
            return event
        if cls is Trade:
            self.stats["trades"] += 1
            return event
        if cls is BookSnapshot:
            self._snapshot(event)
            return event
        if cls is Checksum:
            self._check(event)
            return None
        if cls is Heartbeat:
            self.stats["heartbeats"] += 1
            self.last_heartbeat_ns = event.ts_pub
            return event if self._yield_heartbeats else None
        if cls is Gap:
            self.stats["gaps"] += 1
            # The server's book is being rebuilt; the server sends a fresh snapshot once it is
            # live again (at once if the gap did not concern the book, e.g. missed trades).
            if event.symbol:
                self._mark_stale([(event.exchange, event.symbol)])
            else:
                self._mark_stale([k for k in self._books if k[0] == event.exchange])
            return event
        if cls is Arbitrage:
            self.stats["arbitrage"] += 1
            return event
        if cls is Control:
            if event.kind == "skipped":   # follows an overrun notice: what else we missed
                self._missed += int(event.detail or 0)
            elif event.kind == "bye":
                self.closed_reason = event.detail or "server shut down"
        return None

    def _snapshot(self, event: BookSnapshot) -> None:
        key = (event.exchange, event.symbol)
        delta = event.delta
        book = self._books.get(key)
        if (book is None or book.price_precision != delta.price_precision
                or book.size_precision != delta.size_precision):
            book = OrderBook(event.symbol, delta.price_precision, delta.size_precision,
                             exchange=event.exchange)
            self._books[key] = book
        book.apply_delta(delta)   # a snapshot delta replaces the whole book
        self._stale.discard(key)
        self.stats["snapshots"] += 1

    def _check(self, event: Checksum) -> None:
        key = (event.exchange, event.symbol)
        book = self._books.get(key)
        if book is None or key in self._stale or book.sequence != event.sequence:
            return
        if book.checksum() == event.checksum:
            self.stats["checksum_ok"] += 1
            return
        self.stats["checksum_failed"] += 1
        self._pending.append(self._resync(
            key, "checksum", f"mirror CRC32 differs from the server's {event.checksum} "
                             f"at sequence {event.sequence}"))

    def _resync(self, key: tuple[str, str], reason: str, detail: str) -> Resync:
        self._stale.add(key)
        self.stats["resyncs"] += 1
        self.request({"op": "resync", "books": [list(key)]})
        return Resync(key[0], key[1], reason, detail, time.time_ns())

    def _take_overrun(self) -> Overrun | None:
        missed = self._missed
        if not missed:
            return None
        self._missed = 0
        self.stats["overruns"] += 1
        self.stats["missed"] += missed
        return Overrun(missed, tuple(self._books), time.time_ns())

    # --- reading ---------------------------------------------------------------------------

    def poll(self) -> FeedEvent | None:
        """The next event if one is ready, else None (never blocks).

        Raises ProducerGone when the server died; returns None for good once it closed."""
        pending = self._pending
        if pending:
            return pending.popleft()
        read, handle = self._reader.read, self._handle
        while True:
            try:
                record = read()
            except RingOverrun as exc:
                # The server dropped records for us; it re-snapshots all our books by itself.
                # Its first record after the gap says how many more it skipped on purpose.
                self._missed += exc.missed
                self._stale.update(self._books)
                continue
            except ProducerGone as exc:
                return self._take_overrun() or self._gone(exc)
            if record is None:
                return self._take_overrun()
            self._last = record
            event = handle(record)
            if self._missed:
                if event is not None:
                    pending.append(event)
                return self._take_overrun()
            if pending:     # a checksum failure queued a notice
                if event is not None:
                    pending.append(event)
                return pending.popleft()
            if event is not None:
                return event

    def _gone(self, exc: ProducerGone) -> None:
        if self._reader.writer_closed:
            self._ended = True
            self.closed_reason = self.closed_reason or "server closed the feed"
            return None
        raise ProducerGone(f"AlphaPulse server {self.name!r} (pid {self.server_pid}) died: "
                           f"{exc}") from exc

    def next(self, timeout: float | None = None) -> FeedEvent | None:
        """The next event, waiting up to ``timeout`` seconds (None: forever); None on timeout
        or when the server closed the feed (then ``ended`` is True)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        wait = self._reader.wait
        while True:
            event = self.poll()
            if event is not None or self._ended:
                return event
            if deadline is None:
                wait(0.1)
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                wait(min(left, 0.1))

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
        return max(0.0, (time.time_ns() - self.last_heartbeat_ns) / 1e9)

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
            # Cheap cooperative polling first (bursts cost no thread hand-off) ...
            until = time.monotonic() + 0.0005
            ready = False
            while time.monotonic() < until:
                await asyncio.sleep(0)
                if reader.backlog or not reader.writer_alive:
                    ready = True
                    break
            if not ready:   # ... then park a helper thread in the futex wait, in slices.
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix="alphapulse-feed")
                await loop.run_in_executor(self._executor, reader.wait, 0.05, 0)

    # --- control requests ------------------------------------------------------------------

    def request(self, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """Send one control request and return the server's reply (FeedError on failure)."""
        try:
            self._sock.settimeout(timeout)
            send_message(self._sock, message)
            reply = _recv_line(self._sock)
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
        books = None if exchange is None else [[exchange, symbol]]
        self._mark_stale(self._books if books is None else [(exchange, symbol)])  # type: ignore[list-item]
        self.request({"op": "resync", "books": books})

    def available(self) -> list[str]:
        """The channels the server has data for right now."""
        return list(self.request({"op": "channels"})["available"])

    # --- lifetime --------------------------------------------------------------------------

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
                f"books={len(self._books)} stale={len(self._stale)}>")


def _recv_line(sock: socket.socket) -> dict[str, Any]:
    chunks = bytearray()
    while not chunks.endswith(b"\n"):
        chunk = sock.recv(MAX_MESSAGE)
        if not chunk:
            raise ConnectionResetError("server closed the control connection")
        chunks += chunk
        if len(chunks) > MAX_MESSAGE:
            raise FeedError("control reply too long")
    reply = json.loads(chunks)
    if type(reply) is not dict:
        raise FeedError(f"control reply is not an object: {reply!r}")
    return reply


def attach(name: str = "default", channels: Iterable[str] = ("book:*:*", "trades:*:*"), *,
           directory: str | os.PathLike[str] | None = None, capacity: int = DEFAULT_CAPACITY,
           timeout: float = 5.0, wait: float = 0.0, heartbeats: bool = False,
           spin_us: float = 50.0, client: str | None = None) -> Feed:
    """Attach to the running server ``name`` and subscribe to ``channels``.

    ``directory``: the server's shm directory (default ``$ALPHAPULSE_SHM_DIR`` or /dev/shm).
    ``capacity``: this strategy's ring size in bytes (a power of two, 64 KiB .. 256 MiB).
    ``wait``: seconds to wait for the server to appear (0: fail at once).
    ``heartbeats``: also yield the server's Heartbeat records.
    ``spin_us``: how long a blocked read spins before sleeping (latency vs CPU).

    Raises FeedError (no such server, or it refused the request) or ValueError (bad channel).
    """
    keys = [format_channel(parse_channel(c)) for c in channels]
    if not keys:
        raise ValueError("at least one channel is needed")
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
        reply = _recv_line(sock)
        if not reply.get("ok"):
            raise FeedError(f"server {name!r} refused to attach: {reply.get('error')}")
        return Feed(name, sock, reply, where, heartbeats=heartbeats, spin_us=spin_us)
    except BaseException as exc:
        sock.close()
        if isinstance(exc, OSError) and not isinstance(exc, AlphaPulseError):
            raise FeedError(f"attaching to server {name!r} failed: {exc}") from exc
        raise
